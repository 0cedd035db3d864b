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

    public init(abstractSyntax: String, transferSyntaxes: [String]) {
        self.abstractSyntax = abstractSyntax
        self.transferSyntaxes = transferSyntaxes
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
                                                  transfer_syntax_count: ctx.transferSyntaxes.count))
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
