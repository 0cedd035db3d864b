import Archive
import Crypto
import Foundation
import GRDB
import Ledger
import Logging
import NIOCore

/// What `fetch` asks for.
public struct FetchRequest: Sendable {
    public var peer: String
    public var studyInstanceUID: String?
    public var patientID: String?
    public var issuerOfPatientID: String?
    /// Instances downloaded at once.
    public var concurrency: Int = 8
    /// Emergency access: the stated reason, sent to the source, honoured only where its
    /// configuration enables break-glass, and audited there.
    public var breakGlassReason: String?

    public init(peer: String, studyInstanceUID: String? = nil, patientID: String? = nil, issuerOfPatientID: String? = nil) {
        self.peer = peer
        self.studyInstanceUID = studyInstanceUID
        self.patientID = patientID
        self.issuerOfPatientID = issuerOfPatientID
    }
}

public struct FetchedStudy: Codable, Sendable {
    public var studyInstanceUID: String
    public var manifest: String
    public var manifestLedgerIndex: UInt64
    public var instances: Int
    public var bytes: Int64
    /// Instances already verified by an earlier, interrupted fetch (or already held here).
    public var resumed: Int
    /// Stored paths (relative to the home) of the study's instances, the manifest included.
    public var paths: [String]
}

public struct FetchReport: Codable, Sendable {
    public var peer: String
    public var checkpointSize: UInt64
    public var studies: [FetchedStudy]
    public var instances: Int
    public var bytes: Int64
    public var seconds: Double
    public var megabytesPerSecond: Double
}

/// A fetch that found something wrong: the study is refused and nothing of it is indexed.
public struct FetchRejected: Error, CustomStringConvertible, Sendable {
    public let study: String
    public let reason: String
    public var description: String { "study \(study) REJECTED: \(reason); nothing of it was stored" }
}

/// Fetches studies from a peer and proves every byte against the peer's ledger:
///
/// 1. the peer's checkpoint is signed by its key and consistent with every one seen before;
/// 2. the registry names the study's manifest and the ledger entry that published it; that
///    entry is in the checkpoint's tree (inclusion proof);
/// 3. the manifest's bytes have the SHA-256 the entry anchors, and the list of instance hashes
///    the peer gives has the Merkle root the entry anchors;
/// 4. each instance is downloaded (several at once) into `fetch/` in the home, hashed on the way
///    in, and kept only if its SHA-256 is the listed one; an interrupted fetch resumes from what
///    it kept;
/// 5. only when everything verified is the study stored and indexed, each instance with a
///    "received from peer" ledger entry.
public final class Fetcher: @unchecked Sendable {
    let archive: Archive
    let identity: TLSIdentity
    let logger: Logger
    let stagingRoot: URL
    /// Bytes known so far and bytes to fetch, for a progress bar.
    public var progress: (@Sendable (_ done: Int64, _ total: Int64) -> Void)?

    public init(archive: Archive, home: URL, identity: TLSIdentity, logger: Logger) {
        self.archive = archive
        self.identity = identity
        self.logger = logger
        stagingRoot = home.appendingPathComponent("fetch")
    }

    public func fetch(_ request: FetchRequest) async throws -> FetchReport {
        let registry = PeerRegistry(archive: archive)
        guard let peer = try registry.peer(request.peer) else {
            throw ExchangeError("no peer named \(request.peer) (see `dicom-bridge peer list`)")
        }
        let client = try PeerClient(peer: peer, identity: identity, connections: request.concurrency)
        if let reason = request.breakGlassReason {
            let ascii = String(reason.unicodeScalars.map { (0x20...0x7E).contains($0.value) ? Character($0) : "?" }.prefix(200))
            client.extraHeaders.append((PeerServer.breakGlassHeader.rawName, ascii))
        }
        do {
            let report = try await fetch(request, client: client, registry: registry)
            await client.shutdown()
            return report
        } catch {
            await client.shutdown()
            throw error
        }
    }

    func fetch(_ request: FetchRequest, client: PeerClient, registry: PeerRegistry) async throws -> FetchReport {
        let start = Date()
        let peer = client.peer
        let (checkpoint, _) = try await PeerLedgerVerifier(registry: registry, logger: logger).verifyCurrentCheckpoint(client)
        var query = "/registry/documents?"
        if let study = request.studyInstanceUID {
            query += "studyInstanceUID=" + Self.escape(study)
        } else if let pid = request.patientID {
            query += "patientId=" + Self.escape(pid)
            if let issuer = request.issuerOfPatientID { query += "&issuer=" + Self.escape(issuer) }
        } else {
            throw ExchangeError("give a study or a patient")
        }
        let entries = try await client.getJSON([DocumentEntry].self, query)
        if entries.isEmpty {
            throw ExchangeError(request.studyInstanceUID != nil
                ? "peer \(peer.name) has no published manifest for study \(request.studyInstanceUID!) (not complete yet, or unknown there)"
                : "peer \(peer.name) shares no study of that patient with this node")
        }
        var studies: [FetchedStudy] = []
        for entry in entries {
            studies.append(try await fetchStudy(entry, client: client, checkpoint: checkpoint, concurrency: request.concurrency))
        }
        let seconds = Date().timeIntervalSince(start)
        let bytes = studies.reduce(0) { $0 + $1.bytes }
        return FetchReport(peer: peer.name, checkpointSize: checkpoint.size, studies: studies,
                           instances: studies.reduce(0) { $0 + $1.instances }, bytes: bytes, seconds: seconds,
                           megabytesPerSecond: seconds > 0 ? Double(bytes) / 1e6 / seconds : 0)
    }

    static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: ".-_"))) ?? s
    }

    func fetchStudy(_ entry: DocumentEntry, client: PeerClient, checkpoint: Checkpoint, concurrency: Int) async throws -> FetchedStudy {
        let peer = client.peer
        let study = entry.studyInstanceUID
        func reject(_ reason: String) -> FetchRejected {
            logger.error("fetched study rejected", metadata: ["peer": "\(peer.name)", "study-instance-uid": "\(study)", "reason": "\(reason)"])
            return FetchRejected(study: study, reason: reason)
        }
        // 2. The manifest's ledger entry, proven in the verified checkpoint.
        guard let index = entry.ledgerIndex else { throw reject("the document entry names no ledger entry") }
        guard index < checkpoint.size else {
            throw reject("the manifest's ledger entry \(index) is not covered by the peer's checkpoint (size \(checkpoint.size)); try again in a moment")
        }
        let entryBytes = Data(buffer: try await client.get("/entry/\(index)", limit: 1 << 16))
        struct Proof: Decodable { var proof: [String]; var treeSize: UInt64 }
        let proof = try await client.getJSON(Proof.self, "/proof/inclusion?index=\(index)&size=\(checkpoint.size)")
        let hashes = proof.proof.compactMap { MerkleHash(base64: $0) }
        do {
            guard hashes.count == proof.proof.count, proof.treeSize == checkpoint.size else { throw ExchangeError("malformed proof") }
            try MerkleTree.verifyInclusion(index: index, size: checkpoint.size, leafHash: RFC6962.leafHash(entryBytes),
                                           proof: hashes, root: checkpoint.rootHash)
        } catch {
            throw reject("the manifest's ledger entry \(index) is not in the peer's signed ledger: \(error)")
        }
        guard case .manifestPublished(let event)? = try? LedgerEvent.decode(entryBytes) else {
            throw reject("ledger entry \(index) is not a manifest-published event")
        }
        guard event.manifestSOPInstanceUID == entry.uniqueId, event.studyInstanceUID == study else {
            throw reject("ledger entry \(index) anchors manifest \(event.manifestSOPInstanceUID) of study \(event.studyInstanceUID), not the document \(entry.uniqueId) offered")
        }

        // 3. The manifest and the list of instances, against the entry.
        let staging = stagingRoot.appendingPathComponent(Self.safeName(peer.name)).appendingPathComponent(Self.safeName(study))
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        let kosBytes = Data(buffer: try await client.get("/documents/\(entry.uniqueId)", accept: "application/dicom"))
        let kosSHA = Hex.encode(SHA256.hash(data: kosBytes))
        guard kosSHA == event.manifestSHA256, UInt64(kosBytes.count) == event.manifestSize else {
            throw reject("the manifest's bytes (SHA-256 \(kosSHA), \(kosBytes.count) bytes) are not those the ledger anchors (SHA-256 \(event.manifestSHA256), \(event.manifestSize) bytes): edited after publication")
        }
        let kosSHA1 = Hex.encode(Insecure.SHA1.hash(data: kosBytes))
        guard kosSHA1 == entry.hash.lowercased(), Int64(kosBytes.count) == entry.size else {
            throw reject("the manifest does not match its document entry's hash and size")
        }
        let members = try await client.getJSON([ManifestMember].self, "/documents/\(entry.uniqueId)/instances")
        let root = try ManifestPublished.instancesRoot(sha256s: members.map(\.sha256))
        guard root == event.instancesRoot, UInt64(members.count) == event.instanceCount else {
            throw reject("the peer's list of \(members.count) instance hashes has Merkle root \(root), the ledger anchors \(event.instanceCount) instances with root \(event.instancesRoot)")
        }
        let kosFile = staging.appendingPathComponent(kosSHA + ".dcm")
        try kosBytes.write(to: kosFile)
        // The manifest's references must be exactly the listed instances.
        let referenced = try ManifestReader.referencedInstances(path: kosFile.path)
        let listed = Set(members.map(\.sopInstanceUID))
        guard referenced == listed else {
            throw reject("the manifest references \(referenced.count) instances, the list has \(listed.count); \(referenced.symmetricDifference(listed).count) differ")
        }

        // 4. The instances, verified on the way in; what an earlier attempt verified is kept.
        var todo: [ManifestMember] = []
        var resumed = 0
        let archive = self.archive
        let held = try await offload {
            Set(try archive.database.read { db in
                try String.fetchAll(db, sql: """
                    SELECT i.sha256 FROM instance i JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref
                    WHERE s.study_instance_uid = ?
                    """, arguments: [study])
            })
        }
        for m in members {
            let file = staging.appendingPathComponent(m.sha256 + ".dcm")
            if held.contains(m.sha256) {
                resumed += 1  // already held here, bit for bit
            } else if FileManager.default.fileExists(atPath: file.path), (try? FileDigest.sha256(path: file.path)) == m.sha256 {
                resumed += 1  // verified (and synced) by an interrupted attempt
            } else {
                todo.append(m)
            }
        }
        let total = members.reduce(Int64(0)) { $0 + $1.size }
        let done = LockedValue<Int64>(total - todo.reduce(Int64(0)) { $0 + $1.size })
        progress?(done.withLock { $0 }, total)
        if resumed > 0 {
            logger.notice("resuming a fetch: instances verified earlier are kept",
                          metadata: ["peer": "\(peer.name)", "study-instance-uid": "\(study)", "kept": "\(resumed)", "to-fetch": "\(todo.count)"])
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func launch() {
                let m = todo[next]
                next += 1
                group.addTask { [self] in
                    try await download(m, study: study, client: client, staging: staging, reject: reject)
                    let d = done.withLock { $0 += m.size; return $0 }
                    progress?(d, total)
                }
            }
            for _ in 0..<min(max(concurrency, 1), todo.count) { launch() }
            while try await group.next() != nil {
                if next < todo.count { launch() }
            }
        }

        // 5. Everything verified: store and index the study, then drop the staging folder.
        let paths = try store(members: members, kos: (kosFile.path, kosSHA, Int64(kosBytes.count)), staging: staging,
                              peer: peer.name, manifestEntry: index)
        try? FileManager.default.removeItem(at: staging)
        logger.notice("fetched and verified a study from a peer",
                      metadata: ["peer": "\(peer.name)", "study-instance-uid": "\(study)", "instances": "\(members.count)",
                                 "manifest-ledger-index": "\(index)", "checkpoint-size": "\(checkpoint.size)"])
        return FetchedStudy(studyInstanceUID: study, manifest: entry.uniqueId, manifestLedgerIndex: index, instances: members.count,
                            bytes: total + Int64(kosBytes.count), resumed: resumed, paths: paths)
    }

    /// Downloads one instance into the staging folder, hashing on the way; keeps it only if its
    /// SHA-256 is the one the manifest committed to.
    func download(_ m: ManifestMember, study: String, client: PeerClient, staging: URL,
                  reject: (String) -> FetchRejected) async throws {
        let final = staging.appendingPathComponent(m.sha256 + ".dcm").path
        let part = staging.appendingPathComponent(m.sha256 + ".part").path
        let fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw ExchangeError("cannot write \(part): \(String(cString: strerror(errno)))") }
        var hasher = SHA256()
        var size: Int64 = 0
        do {
            try await client.stream("/studies/\(study)/series/\(m.seriesInstanceUID)/instances/\(m.sopInstanceUID)?sha256=\(m.sha256)",
                                    accept: "application/dicom") { chunk in
                try chunk.withUnsafeReadableBytes { raw in
                    hasher.update(bufferPointer: raw)
                    var off = 0
                    while off < raw.count {
                        let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                        if n < 0 { if errno == EINTR { continue }; throw ExchangeError("cannot write \(part): \(String(cString: strerror(errno)))") }
                        off += n
                    }
                }
                size += Int64(chunk.readableBytes)
            }
        } catch {
            close(fd)
            unlink(part)
            throw error
        }
        let got = Hex.encode(hasher.finalize())
        guard got == m.sha256, size == m.size else {
            close(fd)
            unlink(part)
            throw reject("instance \(m.sopInstanceUID) arrived with SHA-256 \(got) (\(size) bytes), the peer's ledger anchors \(m.sha256) (\(m.size) bytes): altered at the source or on the way")
        }
        // Durable before it is named as verified, while other downloads go on: storing then has
        // no file to sync, and a resumed fetch can trust every <sha256>.dcm it finds.
        let synced = fdatasync(fd) == 0
        close(fd)
        guard synced else {
            unlink(part)
            throw ExchangeError("cannot sync \(part): \(String(cString: strerror(errno)))")
        }
        if rename(part, final) != 0 { throw ExchangeError("cannot keep \(final)") }
    }

    /// Stores the verified files; several commits in flight so that group commit batches them.
    func store(members: [ManifestMember], kos: (String, String, Int64), staging: URL, peer: String,
               manifestEntry: UInt64) throws -> [String] {
        struct Item { var path: String; var sha: String; var size: Int64; var ts: String }
        let items0 = members.map { Item(path: staging.appendingPathComponent($0.sha256 + ".dcm").path, sha: $0.sha256, size: $0.size, ts: $0.transferSyntaxUID) }
        let items = items0 + [Item(path: kos.0, sha: kos.1, size: kos.2, ts: "1.2.840.10008.1.2.1")]
        let errors = LockedValue<[String]>([])
        let paths = LockedValue<[String]>([])
        let origin = InstanceOrigin.peer(name: peer, manifestEntry: manifestEntry)
        let sourceName = PeerOrigin.prefix + peer
        // Many commits in flight, so that group commit takes them in few transactions: threads of
        // their own (concurrentPerform would run about one per CPU, and each mostly waits).
        let workers = min(32, items.count)
        let group = DispatchGroup()
        for worker in 0..<workers {
            group.enter()
            Thread.detachNewThread { [archive] in
            defer { group.leave() }
            var i = worker
            while i < items.count {
                let item = items[i]
                i += workers
                if !FileManager.default.fileExists(atPath: item.path) {
                    // Held here already (bit for bit): nothing to store.
                    if let p = try? archive.database.read({ db in
                        try String.fetchOne(db, sql: "SELECT path FROM instance WHERE sha256 = ?", arguments: [item.sha])
                    }) { paths.withLock { $0.append(p) } }
                    continue
                }
                do {
                    let (attributes, _) = try AttributeReader.read(path: item.path)
                    let outcome = try archive.commitVerifiedFile(
                        at: item.path, sha256: item.sha, size: item.size, transferSyntaxUID: item.ts, sourceName: sourceName,
                        origin: origin, attributes: attributes, synced: item.path != kos.0)
                    paths.withLock { $0.append(outcome.instance.path) }
                } catch {
                    errors.withLock { $0.append("\(URL(fileURLWithPath: item.path).lastPathComponent): \(error)") }
                }
            }
            }
        }
        group.wait()
        if let first = errors.withLock({ $0.first }) {
            throw ExchangeError("verified instances could not all be stored (\(errors.withLock { $0.count }) failed; first: \(first)); run the fetch again to complete it")
        }
        return paths.withLock { $0 }
    }

    static func safeName(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

}

/// The SHA-256 of a file's bytes, read in 1 MiB chunks (lowercase hex).
enum FileDigest {
    static func sha256(path: String) throws -> String {
        guard let fh = FileHandle(forReadingAtPath: path) else { throw ExchangeError("cannot read \(path)") }
        defer { try? fh.close() }
        var hasher = SHA256()
        while let chunk = try fh.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return Hex.encode(hasher.finalize())
    }
}
