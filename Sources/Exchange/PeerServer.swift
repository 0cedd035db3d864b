import Archive
import DICOM
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Ledger
import Logging
import NIOCore
import NIOSSL
import PKI
import ServiceLifecycle

/// A request on the peer port: it knows the TLS channel, hence the client's certificate.
public struct PeerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    /// The configured peer the client certificate names, set by `PeerAuthentication` before any route.
    var peer: Peer?

    func authenticatedPeer() throws -> Peer {
        guard let peer else { throw HTTPError(.forbidden, message: "a client certificate of a configured peer is required") }
        return peer
    }

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The TLS identity of the node and whom it trusts.
public struct TLSIdentity: Sendable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    /// Our certificate chain and key; throws with the file it could not use.
    func load() throws -> ([NIOSSLCertificate], NIOSSLPrivateKey) {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificatePath) } catch {
            throw ExchangeError("cannot read the TLS certificate \(certificatePath): \(error)")
        }
        guard !chain.isEmpty else { throw ExchangeError("no certificate in \(certificatePath)") }
        do { return (chain, try NIOSSLPrivateKey(file: keyPath, format: .pem)) } catch {
            throw ExchangeError("cannot read the TLS key \(keyPath): \(error)")
        }
    }

    /// The common name of our certificate: our node name as peers see it.
    public func commonName() throws -> String {
        let (chain, _) = try load()
        return try PeerIdentity.commonName(chain[0])
    }
}

enum PeerIdentity {
    static func commonName(_ certificate: NIOSSLCertificate) throws -> String {
        guard let name = try CertificateInfo.commonName(ofDER: certificate.toDERBytes()) else {
            throw ExchangeError("the certificate has no common name")
        }
        return name
    }

    /// Every distinct CA certificate of the configured peers.
    static func trustRoots(_ peers: [Peer]) -> [NIOSSLCertificate] {
        var seen = Set<[UInt8]>()
        var roots: [NIOSSLCertificate] = []
        for p in peers {
            for c in (try? NIOSSLCertificate.fromPEMBytes(Array(p.caPEM.utf8))) ?? [] {
                if let der = try? c.toDERBytes(), seen.insert(der).inserted { roots.append(c) }
            }
        }
        return roots
    }
}

/// The peer API, over mutually authenticated TLS on the peer port:
///
///     GET  /registry/documents?patientId=ID[&issuer=I] | ?studyInstanceUID=UID [&format=ebrim]
///                                                   find document entries (ITI-18 in spirit)
///     GET  /documents/{uniqueId}                     the manifest itself (ITI-43 in spirit)
///     GET  /documents/{uniqueId}/entry[?format=ebrim] its document entry
///     GET  /documents/{uniqueId}/instances           the instances it commits to, with their SHA-256
///     GET  /studies/{study}[/series/{series}[/instances/{sop}]]
///                                                   WADO-RS: multipart/related; type="application/dicom"
///     POST /witness/cosignature                      a peer's cosignature of one of our checkpoints
///     and the ledger's endpoints (/checkpoint, /tile/..., /entry/N, /proof/...).
///
/// The TLS handshake refuses a client without a certificate of a configured peer's CA; a client
/// whose certificate names no configured peer is refused with 403 before any route. Which studies
/// a peer sees is the policy's decision, made again at every request.
public final class PeerServer: @unchecked Sendable {
    let archive: Archive
    let settings: ExchangeSettings
    let identity: TLSIdentity
    let port: Int
    /// The address the peer API listens on (every interface by default; tests use the loopback).
    let host: String
    let policy: any AccessPolicy
    let verifierKey: String
    let logger: Logger
    let registry: PeerRegistry
    let documents: DocumentEntries
    let auditor: AccessAuditor
    /// Idle timeout, connection caps, header and body limits, TLS handshake timeout.
    let limits: HTTPServerLimits
    private var task: Task<Void, Never>?
    private var group: ServiceGroup?
    private let done = DispatchSemaphore(value: 0)
    /// The CA certificates trusted when the server started (a new CA needs a restart).
    public private(set) var trustedCAs: [[UInt8]] = []

    public init(archive: Archive, settings: ExchangeSettings, identity: TLSIdentity, port: Int, policy: any AccessPolicy,
                verifierKey: String, auditor: AccessAuditor, logger: Logger, host: String = "0.0.0.0",
                limits: HTTPServerLimits = HTTPServerLimits()) {
        self.auditor = auditor
        self.limits = limits
        self.host = host
        self.archive = archive
        self.settings = settings
        self.identity = identity
        self.port = port
        self.policy = policy
        self.verifierKey = verifierKey
        self.logger = logger
        registry = PeerRegistry(archive: archive)
        documents = DocumentEntries(archive: archive, settings: settings)
    }

    func tlsConfiguration() throws -> TLSConfiguration {
        let (chain, key) = try identity.load()
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        let roots = PeerIdentity.trustRoots(try registry.list())
        trustedCAs = roots.compactMap { try? $0.toDERBytes() }
        // Client certificates are required and must chain to a configured peer's CA; with no
        // peer configured there is nobody to trust, and every handshake fails.
        tls.certificateVerification = .noHostnameVerification
        tls.trustRoots = .certificates(roots)
        tls.minimumTLSVersion = .tlsv12
        return tls
    }

    /// The configured peer a request comes from, by its certificate's common name.
    func peer(of context: PeerRequestContext) async throws -> Peer {
        guard let cert = try await context.channel.nioSSL_peerCertificate().get() else {
            throw HTTPError(.forbidden, message: "a client certificate is required")
        }
        let name = try PeerIdentity.commonName(cert)
        let registry = self.registry
        guard let peer = try await offload({ try registry.peer(name) }) else {
            logger.warning("peer request refused: the certificate names no configured peer", metadata: ["certificate-cn": "\(name)"])
            throw HTTPError(.forbidden, message: "no peer named \(name) is configured here")
        }
        return peer
    }

    /// The policy's decision for one study, at this moment, audited (ledger, ATNA log, log line).
    func decide(_ peer: Peer, study: String, action: String, request: Request) throws -> AccessDecision {
        let row = try archive.database.read { db in
            try Row.fetchOne(db, sql: """
                SELECT p.patient_id, p.issuer_of_patient_id FROM study s JOIN patient p ON p.id = s.patient_ref
                WHERE s.study_instance_uid = ?
                """, arguments: [study])
        }
        guard let row else { return .deny("no such study") }
        let breakGlass = request.headers[Self.breakGlassHeader].map { String($0.prefix(200)) }
        let now = Date()
        let decision = try policy.decide(StudyAccessRequest(peer: peer, studyInstanceUID: study, patientID: row["patient_id"],
                                                            issuerOfPatientID: row["issuer_of_patient_id"], action: action,
                                                            breakGlassReason: breakGlass, time: now))
        auditor.record(AuditRecord(time: now, requester: .node(peer.name), auditSource: settings.nodeName, studyInstanceUID: study,
                                   patientID: row["patient_id"], issuerOfPatientID: row["issuer_of_patient_id"], action: action,
                                   allowed: decision.allowed, reason: decision.reason, grant: decision.grant,
                                   breakGlass: decision.breakGlass))
        return decision
    }

    /// The header a fetch sends to invoke break-glass, with the stated reason (ASCII).
    public static let breakGlassHeader = HTTPField.Name("X-Dicom-Bridge-Break-Glass")!

    func router() -> Router<PeerRequestContext> {
        let router = Router(context: PeerRequestContext.self)
        // Authenticate every request before any route: the certificate must name a configured peer.
        router.middlewares.add(PeerAuthentication(server: self))
        LedgerRoutes.add(to: router, archive: archive, verifierKey: verifierKey)

        router.get("/registry/documents") { [self] request, context -> Response in
            let peer = try context.authenticatedPeer()
            return try await offload { [self] in
            let q = request.uri.queryParameters
            let studies: [String]
            if let study = q.get("studyInstanceUID") {
                studies = [study]
            } else if let pid = q.get("patientId") {
                studies = try documents.studies(patientID: pid, issuer: q.get("issuer"))
            } else {
                return LedgerRoutes.text("give patientId or studyInstanceUID\n", status: .badRequest)
            }
            var entries: [DocumentEntry] = []
            for study in studies {
                let decision = try decide(peer, study: study, action: "query", request: request)
                if decision.allowed {
                    entries += try documents.entries(study: study, includeReplaced: q.get("status") == "all")
                } else if q.get("studyInstanceUID") != nil, try documents.hasManifest(study: study) {
                    // Asked for by its UID: say it is refused rather than pretend it does not exist.
                    throw HTTPError(.forbidden, message: "access to study \(study) denied by the source's policy: \(decision.reason)")
                }
            }
            if q.get("format") == "ebrim" {
                return Response(status: .ok, headers: [.contentType: "application/xml; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: EbRIM.adhocQueryResponse(entries))))
            }
            return try Self.jsonEntries(entries)
            }
        }
        router.get("/documents/:uid") { [self] request, context -> Response in
            let peer = try context.authenticatedPeer()
            return try await offload { [self] in
                let (manifest, path) = try manifestFile(context)
                guard try decide(peer, study: manifest.studyInstanceUID, action: "retrieve-document", request: request).allowed else {
                    throw HTTPError(.forbidden, message: "access denied by the source's policy")
                }
                return try fileResponse(path, contentType: "application/dicom")
            }
        }
        router.get("/documents/:uid/entry") { [self] request, context -> Response in
            let peer = try context.authenticatedPeer()
            return try await offload { [self] in
            let (manifest, _) = try manifestFile(context)
            guard try decide(peer, study: manifest.studyInstanceUID, action: "query", request: request).allowed else {
                throw HTTPError(.forbidden, message: "access denied by the source's policy")
            }
            let entry = try documents.entry(manifest)
            if request.uri.queryParameters.get("format") == "ebrim" {
                return Response(status: .ok, headers: [.contentType: "application/xml; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: EbRIM.adhocQueryResponse([entry]))))
            }
            return try LedgerRoutes.json(entry)
            }
        }
        router.get("/documents/:uid/instances") { [self] request, context -> Response in
            let peer = try context.authenticatedPeer()
            return try await offload { [self] in
                let (manifest, _) = try manifestFile(context)
                guard try decide(peer, study: manifest.studyInstanceUID, action: "query", request: request).allowed else {
                    throw HTTPError(.forbidden, message: "access denied by the source's policy")
                }
                return try LedgerRoutes.json(try ManifestPublisher(archive: archive, settings: settings, logger: logger)
                    .members(of: manifest.sopInstanceUID))
            }
        }
        router.get("/studies/:study") { [self] request, context in
            try await wado(request, context, series: nil, sop: nil)
        }
        router.get("/studies/:study/series/:series") { [self] request, context in
            try await wado(request, context, series: context.parameters.get("series"), sop: nil)
        }
        router.get("/studies/:study/series/:series/instances/:sop") { [self] request, context in
            try await wado(request, context, series: context.parameters.get("series"), sop: context.parameters.get("sop"))
        }
        // Federated C-FIND: the studies (series, instances) matching an identifier that the policy
        // lets this peer see; studies it may not see are left out (and audited as denied).
        router.post("/federation/find") { [self] request, context -> Response in
            let peer = try context.authenticatedPeer()
            let body = try await request.body.collect(upTo: 1 << 20)
            let find: FederatedFindRequest
            do { find = try JSONDecoder().decode(FederatedFindRequest.self, from: Data(buffer: body)) } catch {
                return LedgerRoutes.text("not a federated find request\n", status: .badRequest)
            }
            guard let level = QueryLevel(rawValue: find.level), level != .patient else {
                return LedgerRoutes.text("level must be STUDY, SERIES or IMAGE\n", status: .badRequest)
            }
            return try await offload { [self] in
            let cursor = try archive.find(QueryRequest(model: .studyRoot, level: level, keys: find.queryKeys), maxMatches: 10_000)
            var matches: [[String: String]] = []
            var decided: [String: Bool] = [:]
            while let match = try cursor.next() {
                guard let study = match[.studyInstanceUID] else { continue }
                if decided[study] == nil {
                    // Only studies with a published manifest can be fetched: the others are not offered.
                    decided[study] = try documents.hasManifest(study: study)
                        && decide(peer, study: study, action: "query", request: request).allowed
                }
                guard decided[study] == true else { continue }
                var m: [String: String] = [:]
                for (tag, value) in match.values { m[String(format: "%08X", tag.rawValue)] = value }
                matches.append(m)
            }
            return try LedgerRoutes.json(FederatedFindResponse(peer: settings.nodeName, matches: matches))
            }
        }
        // The access events this node recorded about a patient (for `audit --patient` at another
        // site of the consortium), only to a configured peer.
        router.get("/audit/access") { [self] request, context -> Response in
            _ = try context.authenticatedPeer()
            guard let pid = request.uri.queryParameters.get("patientId") else {
                return LedgerRoutes.text("give patientId\n", status: .badRequest)
            }
            return try await offload { [self] in
                try LedgerRoutes.json(try AccessAuditor.entries(archive: archive, site: settings.nodeName, patientID: String(pid)))
            }
        }
        router.post("/witness/cosignature") { [self] request, context -> Response in
            let peer = try context.authenticatedPeer()
            let body = try await request.body.collect(upTo: 64 * 1024)
            let line = String(buffer: body)
            try await offload { [self] in try acceptCosignature(line, from: peer) }
            return LedgerRoutes.text("ok\n")
        }
        return router
    }

    static func jsonEntries(_ entries: [DocumentEntry]) throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try DocumentEntry.jsonEncoder.encode(entries))))
    }

    func manifestFile(_ context: PeerRequestContext) throws -> (PublishedManifest, String) {
        guard let uid = context.parameters.get("uid"),
              let manifest = try archive.database.read({ db in
                  try Row.fetchOne(db, sql: "SELECT * FROM manifest WHERE sop_instance_uid = ?", arguments: [uid]).map(PublishedManifest.init(row:))
              }) else { throw HTTPError(.notFound, message: "no such document") }
        let path = try archive.database.read { db in
            try String.fetchOne(db, sql: "SELECT path FROM instance WHERE sha256 = ?", arguments: [manifest.sha256])
        }
        guard let path else { throw HTTPError(.notFound, message: "the document's file is not in the store") }
        return (manifest, archive.absolutePath(path))
    }

    func fileResponse(_ path: String, contentType: String) throws -> Response {
        guard let data = FileManager.default.contents(atPath: path) else { throw HTTPError(.internalServerError, message: "cannot read a stored file") }
        return Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// WADO-RS retrieve (PS3.18 10.4): the study's, series' or instance's current instances as
    /// multipart/related; type="application/dicom", each part the stored Part 10 file as is. With
    /// `?sha256=` on an instance, that version of it (what a manifest committed to).
    func wado(_ request: Request, _ context: PeerRequestContext, series: String?, sop: String?) async throws -> Response {
        let peer = try context.authenticatedPeer()
        guard let study = context.parameters.get("study") else { throw HTTPError(.badRequest) }
        let version = request.uri.queryParameters.get("sha256")
        let archive = self.archive
        let paths: [String] = try await offload { [self] in
            guard try decide(peer, study: study, action: "retrieve-instances", request: request).allowed else {
                throw HTTPError(.forbidden, message: "access denied by the source's policy")
            }
            return try archive.database.read { db in
            var sql = """
                SELECT i.path FROM instance i JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref
                WHERE s.study_instance_uid = ?
                """
            var args: [any DatabaseValueConvertible] = [study]
            if let series { sql += " AND se.series_instance_uid = ?"; args.append(series) }
            if let sop { sql += " AND i.sop_instance_uid = ?"; args.append(sop) }
            if let version { sql += " AND i.sha256 = ?"; args.append(version.lowercased()) } else { sql += " AND i.is_current = 1" }
            sql += " ORDER BY se.series_number + 0, i.instance_number + 0, i.id"
            return try String.fetchAll(db, sql: sql, arguments: StatementArguments(args))
            }
        }
        guard !paths.isEmpty else { throw HTTPError(.notFound, message: "no such instance") }
        let accept = request.headers[.accept] ?? ""
        if sop != nil, accept.hasPrefix("application/dicom") {
            let path = archive.absolutePath(paths[0])
            return try await offload { [self] in try fileResponse(path, contentType: "application/dicom") }
        }
        let boundary = "dicom-bridge-" + UUID().uuidString.lowercased()
        let files = paths.map { archive.absolutePath($0) }
        let body = ResponseBody { writer in
            for file in files {
                guard let data = try await offload({ FileManager.default.contents(atPath: file) }) else { throw HTTPError(.internalServerError) }
                try await writer.write(ByteBuffer(string: "--\(boundary)\r\nContent-Type: application/dicom\r\nContent-Length: \(data.count)\r\n\r\n"))
                try await writer.write(ByteBuffer(bytes: data))
                try await writer.write(ByteBuffer(string: "\r\n"))
            }
            try await writer.write(ByteBuffer(string: "--\(boundary)--\r\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "multipart/related; type=\"application/dicom\"; boundary=\(boundary)"], body: body)
    }

    /// Keeps a peer's cosignature of one of our checkpoints, once it verifies with the peer's key.
    func acceptCosignature(_ line: String, from peer: Peer) throws {
        let verifier: CosignatureVerifier
        do { verifier = try CosignatureVerifier(verifierKey: peer.verifierKey) } catch {
            throw HTTPError(.badRequest, message: "the peer's configured key cannot verify cosignatures")
        }
        try archive.database.write { db in
            // The cosignature is over one of our checkpoints: find which by trying the recent ones.
            let line = line.hasSuffix("\n") ? line : line + "\n"
            for cp in try LedgerStore.checkpoints(db).suffix(64).reversed() {
                if let (checkpoint, _) = try? verifier.verify(signedNote: cp.signedNote + line) {
                    try db.execute(sql: """
                        INSERT OR REPLACE INTO cosignature (witness, size, root_hash, signature_line, received_at) VALUES (?, ?, ?, ?, ?)
                        """, arguments: [peer.name, Int64(checkpoint.size), checkpoint.rootHash.base64, line, Timestamp.rfc3339(Date())])
                    return
                }
            }
            throw HTTPError(.badRequest, message: "the cosignature does not verify against any recent checkpoint of ours")
        }
        logger.debug("kept a cosignature", metadata: ["witness": "\(peer.name)"])
    }

    // MARK: Lifecycle

    public func start() throws {
        let tls = try tlsConfiguration()
        var httpLogger = logger
        httpLogger.logLevel = max(logger.logLevel, .warning)
        let ready = DispatchSemaphore(value: 0)
        let app = Application(
            router: router(),
            server: limits.tlsServer(tlsConfiguration: tls, name: "peer API", logger: logger),
            configuration: .init(address: .hostname(host, port: port), serverName: "dicom-bridge"),
            onServerRunning: { [logger, port, trustedCAs, limits] _ in
                logger.notice("peer API serving over mutual TLS", metadata: [
                    "port": "\(port)", "trusted-cas": "\(trustedCAs.count)", "max-connections": "\(limits.maxConnections)",
                    "max-connections-per-client": "\(limits.maxConnectionsPerClient)"])
                ready.signal()
            },
            logger: httpLogger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        self.group = group
        let failed = LockedValue<String?>(nil)
        task = Task { [done, logger, port] in
            defer { done.signal() }
            do { try await group.run() } catch {
                logger.critical("the peer API stopped", metadata: ["port": "\(port)", "error": "\(error)"])
                failed.withLock { $0 = "\(error)" }
                ready.signal()
            }
        }
        _ = ready.wait(timeout: .now() + 10)
        if let error = failed.withLock({ $0 }) { throw ExchangeError("cannot serve the peer API on port \(port): \(error)") }
    }

    public func stop() {
        guard task != nil, let group else { return }
        Task { await group.triggerGracefulShutdown() }
        done.wait()
        task = nil
    }
}

/// Refuses, before any route, a request whose client certificate names no configured peer.
struct PeerAuthentication: RouterMiddleware {
    typealias Context = PeerRequestContext
    let server: PeerServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.peer = try await server.peer(of: context)
        return try await next(request, context)
    }
}
