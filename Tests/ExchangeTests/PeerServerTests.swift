import Archive
import AsyncHTTPClient
import DICOM
import Foundation
import GRDB
import Ledger
import Logging
import NIOCore
import NIOSSL
import PKI
import Testing
@testable import Exchange

// MARK: - In-process bridge nodes for the exchange tests

/// A port free on 127.0.0.1 at the moment of asking.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw ExchangeError("no free port") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A TCP listener on 127.0.0.1 that never accepts: connections complete (the kernel's backlog)
/// and then hear nothing, like a peer that hangs.
final class SilentListener {
    let fd: Int32
    let port: Int
    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok, listen(fd, 16) == 0 else { throw ExchangeError("cannot listen") }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }
    deinit { close(fd) }
}

final class Recorded<T>: @unchecked Sendable {
    private var items: [T] = []
    private let lock = NSLock()
    func append(_ t: T) { lock.lock(); items.append(t); lock.unlock() }
    var all: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

/// The consortium's CA for the tests, and a second one nobody trusts.
enum TestPKI {
    static let ca = try! CertificateAuthority.create(commonName: "exchange tests CA")
    static let otherCA = try! CertificateAuthority.create(commonName: "someone else's CA")

    static func issue(_ name: String, by authority: CertificateAndKey = ca, in dir: URL) throws -> TLSIdentity {
        let pair = try CertificateAuthority(certificatePEM: authority.certificatePEM, privateKeyPEM: authority.privateKeyPEM)
            .issue(name: name, hosts: ["localhost", "127.0.0.1"])
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let cert = dir.appendingPathComponent(name + ".crt"), key = dir.appendingPathComponent(name + ".key")
        try Data(pair.certificatePEM.utf8).write(to: cert)
        try Data(pair.privateKeyPEM.utf8).write(to: key)
        return TLSIdentity(certificatePath: cert.path, keyPath: key.path)
    }
}

/// A Part 10 file of a few attributes (explicit VR little endian), enough to be indexed.
func part10(study: String, series: String, sop: String, number: Int, patientID: String, padding: Int = 0) -> Data {
    var ds = Data()
    func element(_ group: UInt16, _ elem: UInt16, _ vr: String, _ value: String) {
        var v = Array(value.utf8)
        if v.count % 2 == 1 { v.append(vr == "UI" ? 0 : 0x20) }
        ds.append(contentsOf: [UInt8(group & 0xFF), UInt8(group >> 8), UInt8(elem & 0xFF), UInt8(elem >> 8)])
        ds.append(contentsOf: Array(vr.utf8))
        if vr == "OB" {
            ds.append(contentsOf: [0, 0])
            ds.append(contentsOf: withUnsafeBytes(of: UInt32(v.count).littleEndian, Array.init))
        } else {
            ds.append(contentsOf: withUnsafeBytes(of: UInt16(v.count).littleEndian, Array.init))
        }
        ds.append(contentsOf: v)
    }
    let ct = "1.2.840.10008.5.1.4.1.1.2"
    element(0x0008, 0x0016, "UI", ct)
    element(0x0008, 0x0018, "UI", sop)
    element(0x0008, 0x0020, "DA", "20240301")
    element(0x0008, 0x0060, "CS", "CT")
    element(0x0010, 0x0010, "PN", "Test^Patient")
    element(0x0010, 0x0020, "LO", patientID)
    element(0x0020, 0x000D, "UI", study)
    element(0x0020, 0x000E, "UI", series)
    element(0x0020, 0x0011, "IS", "1")
    element(0x0020, 0x0013, "IS", String(number))
    if padding > 0 { element(0x0029, 0x1010, "OB", String(repeating: "x", count: padding)) }
    let meta = FileMetaInformation(sopClassUID: ct, sopInstanceUID: sop, transferSyntaxUID: TransferSyntax.explicitVRLittleEndian,
                                   sourceAETitle: "TEST")
    return Data(meta.encoded()) + ds
}

/// A bridge node in this process: archive, ledger key, TLS identity and, once started, its peer API.
final class TestNode: @unchecked Sendable {
    let name: String
    let dir: URL
    let archive: Archive
    let signer: NoteSigner
    let identity: TLSIdentity
    let settings: ExchangeSettings
    let logger: Logger
    let atna = Recorded<AuditRecord>()
    private(set) var port = 0
    private var server: PeerServer?

    init(_ name: String) throws {
        ConsentPolicyTests.registered
        self.name = name
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("node-\(name)-\(UUID().uuidString)")
        var logger = Logger(label: "test.\(name)")
        logger.logLevel = .critical
        self.logger = logger
        archive = try Archive(home: dir, logger: logger)
        signer = try NoteSigner.generate(name: name)
        identity = try TestPKI.issue(name, in: dir.appendingPathComponent("tls"))
        settings = ExchangeSettings(nodeName: name, aeTitle: "AE_" + String(name.prefix(8)).uppercased().replacingOccurrences(of: ".", with: "_"),
                                    nodeOID: "1.2.826.0.1.3680043.10.777", affinityDomainOID: "1.2.826.0.1.3680043.10.777",
                                    publicURL: "https://localhost:1", studyCompleteSeconds: 0, witnessIntervalSeconds: 30,
                                    codes: .defaults)
    }

    var url: String { "https://localhost:\(port)" }

    /// This node as another node configures it.
    func asPeer(share: SharePolicy = .all) -> Peer {
        Peer(name: name, url: url, caPEM: TestPKI.ca.certificatePEM, verifierKey: signer.verifierKey, share: share)
    }

    func add(_ other: TestNode, share: SharePolicy = .all) throws {
        try PeerRegistry(archive: archive).add(other.asPeer(share: share), replace: true)
    }

    /// Stores `count` instances of a new study; returns its Study Instance UID.
    @discardableResult
    func storeStudy(patientID: String = "PID-1", count: Int = 3, padding: Int = 2000) throws -> String {
        let study = "1.2.826.0.1.3680043.10.777." + String(UInt32.random(in: 1...UInt32.max))
        for n in 1...count {
            let bytes = part10(study: study, series: study + ".1", sop: study + ".1.\(n)", number: n, patientID: patientID,
                               padding: padding + n)
            let tmp = dir.appendingPathComponent("incoming-\(UUID().uuidString).dcm")
            try bytes.write(to: tmp)
            let (attributes, _) = try AttributeReader.read(path: tmp.path)
            _ = try archive.commitVerifiedFile(at: tmp.path, sha256: try FileDigest.sha256(path: tmp.path), size: Int64(bytes.count),
                                               transferSyntaxUID: TransferSyntax.explicitVRLittleEndian, sourceName: "MODALITY",
                                               origin: .dicom, attributes: attributes)
        }
        return study
    }

    func publish(_ study: String) throws -> PublishedManifest {
        try #require(try ManifestPublisher(archive: archive, settings: settings, logger: logger).publish(study: study))
    }

    func members(_ manifest: PublishedManifest) throws -> [ManifestMember] {
        try ManifestPublisher(archive: archive, settings: settings, logger: logger).members(of: manifest.sopInstanceUID)
    }

    /// Signs a checkpoint over the ledger as it is; returns its size.
    @discardableResult
    func signCheckpoint() throws -> UInt64 {
        try archive.database.write { db in
            _ = try CheckpointSigner.signIfGrown(in: db, signer: signer, origin: name, now: Date())
            return UInt64(try LedgerStore.checkpoints(db).last?.size ?? 0)
        }
    }

    /// Starts the peer API. Its start waits on a semaphore: run it off Swift's cooperative threads.
    func startServer(policy: any AccessPolicy = ConfiguredSharingPolicy()) async throws {
        try await offload { [self] in try startServerBlocking(policy: policy) }
    }

    private func startServerBlocking(policy: any AccessPolicy) throws {
        port = try freeLoopbackPort()
        let atna = self.atna
        let server = PeerServer(archive: archive, settings: settings, identity: identity, port: port, policy: policy,
                                verifierKey: signer.verifierKey,
                                auditor: AccessAuditor(archive: archive, logger: logger, atna: { atna.append($0) }),
                                logger: logger, host: "127.0.0.1")
        try server.start()
        self.server = server
    }

    /// The stored bytes of every instance of `study`, by SOP Instance UID.
    func instanceBytes(study: String) throws -> [String: Data] {
        let rows = try archive.database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT i.sop_instance_uid, i.path FROM instance i JOIN series se ON se.id = i.series_ref
                JOIN study s ON s.id = se.study_ref WHERE s.study_instance_uid = ? AND se.modality != 'KO'
                """, arguments: [study])
        }
        var out: [String: Data] = [:]
        for r in rows { out[r["sop_instance_uid"]] = try Data(contentsOf: URL(fileURLWithPath: archive.absolutePath(r["path"]))) }
        return out
    }

    func storedPath(sha256: String) throws -> String {
        let rel = try archive.database.read { db in try String.fetchOne(db, sql: "SELECT path FROM instance WHERE sha256 = ?", arguments: [sha256]) }
        return archive.absolutePath(try #require(rel))
    }

    /// Stops the peer API and removes the node, on a thread of its own: stopping waits for the
    /// server's task, which must never wait for a cooperative thread this call holds.
    func stop() {
        let server = self.server
        self.server = nil
        let (archive, dir) = (self.archive, self.dir)
        Thread.detachNewThread {
            server?.stop()
            archive.close()
            try? FileManager.default.removeItem(at: dir)
        }
    }
}

// MARK: - The peer API

/// The peer API over mutual TLS, in process, with certificates of a test CA.
@Suite(.serialized) struct PeerServerTests {
    /// An HTTP client trusting the test CA, with or without a client certificate.
    func client(certificate: TLSIdentity?) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(TestPKI.ca.certificatePEM.utf8)))
        if let certificate {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate.certificatePath).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: certificate.keyPath, format: .pem))
        }
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.timeout = .init(connect: .seconds(10), read: .seconds(30))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    func get(_ client: HTTPClient, _ url: String) async throws -> (UInt, String) {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (response.status.code, String(buffer: body))
    }

    @Test func aClientWithoutACertificateOrFromAnotherCAFailsTheHandshake() async throws {
        let source = try TestNode("source.test")
        let dest = try TestNode("dest.test")
        defer { source.stop(); dest.stop() }
        _ = try source.publish(try source.storeStudy(count: 1))
        try source.signCheckpoint()
        try source.add(dest)
        try await source.startServer()
        let stranger = try TestPKI.issue("dest.test", by: TestPKI.otherCA, in: dest.dir.appendingPathComponent("other"))
        for identity in [nil, stranger] as [TLSIdentity?] {
            let c = try client(certificate: identity)
            var failure: (any Error)?
            do { _ = try await get(c, source.url + "/checkpoint") } catch { failure = error }
            try? await c.shutdown()
            let error = try #require(failure, "answered without a valid client certificate (\(identity == nil ? "none" : "other CA"))")
            #expect(error is NIOSSLError || error is BoringSSLError, "not a TLS failure: \(String(reflecting: error))")
        }
        // The same request with the configured peer's certificate is answered: the refusals above were about the certificate.
        let c = try client(certificate: dest.identity)
        let (status, _) = try await get(c, source.url + "/checkpoint")
        try? await c.shutdown()
        #expect(status == 200)
    }

    @Test func aCertificateOfNoConfiguredPeerIsRefusedWith403() async throws {
        let source = try TestNode("source.test")
        let dest = try TestNode("dest.test")
        defer { source.stop(); dest.stop() }
        try source.add(dest)
        try await source.startServer()
        // Same CA, a name the source does not know.
        let unknown = try TestPKI.issue("unknown.test", in: dest.dir.appendingPathComponent("unknown"))
        let c = try client(certificate: unknown)
        let (status, body) = try await get(c, source.url + "/checkpoint")
        let (docStatus, _) = try await get(c, source.url + "/registry/documents?patientId=PID-1")
        try? await c.shutdown()
        #expect(status == 403)
        #expect(docStatus == 403)
        #expect(body.contains("no peer named unknown.test is configured here"), "\(body)")
        #expect(source.atna.all.isEmpty, "no route ran for an unknown peer")
    }

    @Test func aKnownPeerGetsTheSignedCheckpointAndWhatThePolicyShares() async throws {
        let source = try TestNode("source.test")
        let dest = try TestNode("dest.test")
        defer { source.stop(); dest.stop() }
        let shared = try source.storeStudy(patientID: "PID-SHARED")
        let manifest = try source.publish(shared)
        let size = try source.signCheckpoint()
        try source.add(dest, share: .all)
        try await source.startServer()
        let client = try PeerClient(peer: source.asPeer(), identity: dest.identity, connections: 1)
        let note = try await client.getText("/checkpoint")
        let entries = try await client.getJSON([DocumentEntry].self, "/registry/documents?studyInstanceUID=\(shared)")
        let members = try await client.getJSON([ManifestMember].self, "/documents/\(manifest.sopInstanceUID)/instances")
        // The policy changes: the next request is refused, and audited as denied with the reason.
        try PeerRegistry(archive: source.archive).setShare("dest.test", .none)
        var refusal: PeerRefused?
        do { _ = try await client.getJSON([DocumentEntry].self, "/registry/documents?studyInstanceUID=\(shared)") } catch let e as PeerRefused {
            refusal = e
        }
        await client.shutdown()

        let opened = try SignedNote.open(note, verifiers: [try NoteVerifier(verifierKey: source.signer.verifierKey)])
        let checkpoint = try Checkpoint.parse(opened.text)
        #expect(checkpoint.origin == "source.test")
        #expect(checkpoint.size == size)
        #expect(entries.map(\.uniqueId) == [manifest.sopInstanceUID])
        #expect(members == (try source.members(manifest)))
        let refused = try #require(refusal, "a share-none peer got the document entries")
        #expect(refused.reason.contains("site policy: share none with dest.test"), "\(refused)")
        let audit = source.atna.all
        #expect(audit.contains { $0.allowed && $0.studyInstanceUID == shared && $0.requester == .node("dest.test") })
        let denied = try #require(audit.last)
        #expect(!denied.allowed && denied.studyInstanceUID == shared && denied.reason == "site policy: share none with dest.test")
    }

    @Test func aCosignatureIsKeptOnlyWhenItVerifiesWithThePeersKey() async throws {
        let source = try TestNode("source.test")
        let dest = try TestNode("dest.test")
        defer { source.stop(); dest.stop() }
        _ = try source.publish(try source.storeStudy())
        try source.signCheckpoint()
        try source.add(dest)
        try await source.startServer()
        let note = try await source.archive.database.read { db in try #require(try LedgerStore.checkpoints(db).last).signedNote }
        let checkpoint = try Checkpoint.parse(
            try SignedNote.open(note, verifiers: [try NoteVerifier(verifierKey: source.signer.verifierKey)]).text)
        let client = try PeerClient(peer: source.asPeer(), identity: dest.identity, connections: 1)
        // Signed by a key that is not dest's: refused.
        let impostor = try CosignatureSigner.generate(name: "dest.test")
        var refused: (any Error)?
        do { try await client.post("/witness/cosignature", body: try impostor.cosign(checkpoint: checkpoint, timestamp: 1).line) } catch {
            refused = error
        }
        let genuine = try CosignatureSigner(privateKey: dest.signer.privateKey)
        try await client.post("/witness/cosignature", body: try genuine.cosign(checkpoint: checkpoint, timestamp: 1).line)
        await client.shutdown()
        let refusal = try #require(refused, "a cosignature by another key was accepted")
        #expect("\(refusal)".contains("answered 400"), "\(refusal)")
        let kept = try await source.archive.database.read { db in
            try Row.fetchAll(db, sql: "SELECT witness, size FROM cosignature").map { "\($0["witness"] as String)@\($0["size"] as Int64)" }
        }
        #expect(kept == ["dest.test@\(checkpoint.size)"])
    }
}
