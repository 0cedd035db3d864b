import CDcmtk
import DICOM
import Foundation

/// Where an SCU connects.
public struct PeerAddress: Sendable {
    public var host: String
    public var port: UInt16
    public var calledAETitle: String
    public var callingAETitle: String
    public var maxPDU: UInt32 = 116_794
    public var acseTimeoutSeconds: Int32 = 30
    public var dimseTimeoutSeconds: Int32 = 120

    public init(host: String, port: UInt16, calledAETitle: String, callingAETitle: String) {
        self.host = host
        self.port = port
        self.calledAETitle = calledAETitle
        self.callingAETitle = callingAETitle
    }
}

/// A presentation context to propose.
public struct ProposedContext: Sendable, Hashable {
    public var abstractSyntax: String
    public var transferSyntaxes: [String]
    /// Propose the SCP role too: the storage contexts of a C-GET requester (PS3.7 D.3.3.4).
    public var scpRole: Bool

    public init(abstractSyntax: String, transferSyntaxes: [String], scpRole: Bool = false) {
        self.abstractSyntax = abstractSyntax
        self.transferSyntaxes = transferSyntaxes
        self.scpRole = scpRole
    }

    /// The storage contexts a C-GET requester proposes: every common storage class, uncompressed,
    /// plus the compressed syntaxes for the classes that usually travel compressed.
    public static func getStorageContexts(limit: Int) -> [ProposedContext] {
        var count = 0
        guard let list = cdcm_get_storage_sop_classes(&count) else { return [] }
        let classes = (0..<count).compactMap { list[$0].map { String(cString: $0) } }
        let compressed = [TransferSyntax.jpegLosslessSV1, TransferSyntax.jpegBaseline, TransferSyntax.jpegLSLossless,
                          TransferSyntax.jpeg2000Lossless, TransferSyntax.jpeg2000, TransferSyntax.rleLossless,
                          TransferSyntax.jpegExtended, TransferSyntax.jpegLSNearLossless, TransferSyntax.deflatedExplicitVRLittleEndian]
        var out = classes.prefix(limit).map { ProposedContext(abstractSyntax: $0, transferSyntaxes: TransferSyntax.uncompressed, scpRole: true) }
        for c in classes where out.count < limit {
            out.append(ProposedContext(abstractSyntax: c, transferSyntaxes: compressed, scpRole: true))
        }
        return out
    }
}

/// One association we requested. Not thread safe: one association, one user at a time.
public final class Association {
    private var handle: OpaquePointer?

    public init(peer: PeerAddress, contexts: [ProposedContext]) throws {
        DcmtkDictionary.initialize()
        // Keep every C string alive for the duration of the call.
        var cStrings: [UnsafeMutablePointer<CChar>] = []
        defer { cStrings.forEach { free($0) } }
        func c(_ s: String) -> UnsafePointer<CChar> {
            let p = strdup(s)!
            cStrings.append(p)
            return UnsafePointer(p)
        }
        var tsArrays: [UnsafeMutablePointer<UnsafePointer<CChar>?>] = []
        defer { tsArrays.forEach { $0.deallocate() } }
        var proposed: [cdcm_proposed_context] = []
        for ctx in contexts {
            let arr = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: ctx.transferSyntaxes.count)
            for (i, ts) in ctx.transferSyntaxes.enumerated() { arr[i] = c(ts) }
            tsArrays.append(arr)
            proposed.append(cdcm_proposed_context(abstract_syntax: c(ctx.abstractSyntax),
                                                  transfer_syntaxes: UnsafePointer(arr),
                                                  transfer_syntax_count: ctx.transferSyntaxes.count,
                                                  scp_role: ctx.scpRole ? 1 : 0))
        }
        var config = cdcm_scu_config()
        config.calling_ae = c(peer.callingAETitle)
        config.called_ae = c(peer.calledAETitle)
        config.host = c(peer.host)
        config.port = peer.port
        config.max_pdu = peer.maxPDU
        config.acse_timeout_seconds = peer.acseTimeoutSeconds
        config.dimse_timeout_seconds = peer.dimseTimeoutSeconds
        var err = cdcm_error()
        guard let h = cdcm_scu_connect(&config, proposed, proposed.count, &err) else { throw DcmtkError(err) }
        handle = h
    }

    deinit {
        if let handle { cdcm_scu_abort(handle) }
    }

    public func echo() throws -> DIMSEStatus {
        var status: UInt16 = 0
        try dcmtk { cdcm_scu_echo(handle, &status, $0) }
        return DIMSEStatus(status)
    }

    /// Sends a Part 10 file by C-STORE, its dataset as stored when a context carries its syntax.
    public func store(path: String) throws -> StatusReply {
        var status = cdcm_status()
        try dcmtk { cdcm_scu_store_file(handle, path, &status, $0) }
        let comment = fixedString(status.error_comment)
        return StatusReply(DIMSEStatus(status.status), comment.isEmpty ? nil : comment)
    }

    /// C-FIND: calls `onMatch` for each match (return true to send C-CANCEL); returns the final status.
    public func find(sopClassUID: String, identifier: Dataset, onMatch: (Dataset) -> Bool) throws -> StatusReply {
        final class Box { let f: (Dataset) -> Bool; init(_ f: @escaping (Dataset) -> Bool) { self.f = f } }
        return try withoutActuallyEscaping(onMatch) { escaping in
            let box = Box(escaping)
            var status = cdcm_status()
            try withExtendedLifetime(box) {
                try dcmtk {
                    cdcm_scu_find(handle, sopClassUID, identifier.handle, { ctx, ds in
                        let box = Unmanaged<Box>.fromOpaque(ctx!).takeUnretainedValue()
                        return box.f(Dataset(borrowing: ds!)) ? 1 : 0
                    }, Unmanaged.passUnretained(box).toOpaque(), &status, $0)
                }
            }
            let comment = fixedString(status.error_comment)
            return StatusReply(DIMSEStatus(status.status), comment.isEmpty ? nil : comment)
        }
    }

    final class ProgressBox {
        let f: (RetrieveCounts) -> Void
        init(_ f: @escaping (RetrieveCounts) -> Void) { self.f = f }
    }

    static let progressTrampoline: cdcm_retrieve_progress = { ctx, c in
        let box = Unmanaged<ProgressBox>.fromOpaque(ctx!).takeUnretainedValue()
        box.f(RetrieveCounts(c!.pointee))
    }

    /// C-MOVE to `destination`; `progress` sees each response's counts.
    public func move(sopClassUID: String, identifier: Dataset, destination: String,
                     progress: @escaping (RetrieveCounts) -> Void) throws -> (StatusReply, RetrieveCounts) {
        try retrieve(progress) { context, status, counts, err in
            cdcm_scu_move(handle, sopClassUID, identifier.handle, destination, Association.progressTrampoline,
                          context, status, counts, err)
        }
    }

    /// C-GET into `directory` (one file per instance, named by its SOP Instance UID).
    public func get(sopClassUID: String, identifier: Dataset, directory: String,
                    progress: @escaping (RetrieveCounts) -> Void) throws -> (StatusReply, RetrieveCounts) {
        try retrieve(progress) { context, status, counts, err in
            cdcm_scu_get(handle, sopClassUID, identifier.handle, directory, Association.progressTrampoline,
                         context, status, counts, err)
        }
    }

    /// Runs a C-MOVE or C-GET shim call with a progress context; returns its final status and counts.
    private func retrieve(
        _ progress: @escaping (RetrieveCounts) -> Void,
        _ call: (UnsafeMutableRawPointer, UnsafeMutablePointer<cdcm_status>, UnsafeMutablePointer<cdcm_retrieve_counts>,
                 UnsafeMutablePointer<cdcm_error>) -> Int32
    ) throws -> (StatusReply, RetrieveCounts) {
        let box = ProgressBox(progress)
        var status = cdcm_status()
        var counts = cdcm_retrieve_counts()
        try withExtendedLifetime(box) {
            try dcmtk { call(Unmanaged.passUnretained(box).toOpaque(), &status, &counts, $0) }
        }
        let comment = fixedString(status.error_comment)
        return (StatusReply(DIMSEStatus(status.status), comment.isEmpty ? nil : comment), RetrieveCounts(counts))
    }

    /// Orderly release.
    public func release() {
        if let handle { cdcm_scu_release(handle) }
        handle = nil
    }

    public func abort() {
        if let handle { cdcm_scu_abort(handle) }
        handle = nil
    }
}
