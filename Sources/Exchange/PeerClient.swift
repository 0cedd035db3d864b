import AsyncHTTPClient
import Foundation
import Ledger
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// A client of one peer's API over mutual TLS: our certificate as the client identity, the
/// peer's CA as the only trust root, and the host name checked against the peer's certificate.
public final class PeerClient: @unchecked Sendable {
    public let peer: Peer
    let client: HTTPClient
    let base: String
    /// Sent with every request (the break-glass header of a fetch).
    public var extraHeaders: [(String, String)] = []

    public init(peer: Peer, identity: TLSIdentity, connections: Int = 8) throws {
        self.peer = peer
        let (chain, key) = try identity.load()
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateChain = chain.map { .certificate($0) }
        tls.privateKey = .privateKey(key)
        let roots: [NIOSSLCertificate]
        do { roots = try NIOSSLCertificate.fromPEMBytes(Array(peer.caPEM.utf8)) } catch {
            throw ExchangeError("the CA configured for peer \(peer.name) cannot be read: \(error)")
        }
        tls.trustRoots = .certificates(roots)
        tls.certificateVerification = .fullVerification
        tls.minimumTLSVersion = .tlsv12
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        config.timeout = .init(connect: .seconds(10), read: .seconds(120))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        base = peer.url.hasSuffix("/") ? String(peer.url.dropLast()) : peer.url
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    public func shutdownSync() {
        try? client.syncShutdown()
    }

    /// GET `path`, the whole body (up to `limit` bytes); throws with the peer's reason for a non-2xx.
    public func get(_ path: String, accept: String? = nil, limit: Int = 64 << 20) async throws -> ByteBuffer {
        let response = try await send(path, method: .GET, accept: accept)
        let body = try await response.body.collect(upTo: limit)
        try check(response, body, path)
        return body
    }

    public func getText(_ path: String) async throws -> String { String(buffer: try await get(path)) }

    public func getJSON<T: Decodable>(_ type: T.Type, _ path: String) async throws -> T {
        let body = try await get(path, accept: "application/json")
        do { return try JSONDecoder().decode(T.self, from: Data(buffer: body)) } catch {
            throw ExchangeError("peer \(peer.name) answered \(path) with something that is not the expected JSON: \(error)")
        }
    }

    public func post(_ path: String, body: String) async throws {
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await execute(request, path)
        let answer = try await response.body.collect(upTo: 1 << 16)
        try check(response, answer, path)
    }

    /// GET streamed: `sink` sees each chunk of a 2xx body.
    public func stream(_ path: String, accept: String?, sink: (ByteBuffer) throws -> Void) async throws {
        let response = try await send(path, method: .GET, accept: accept)
        guard (200..<300).contains(response.status.code) else {
            let body = try await response.body.collect(upTo: 1 << 16)
            try check(response, body, path)
            return
        }
        for try await chunk in response.body { try sink(chunk) }
    }

    func send(_ path: String, method: HTTPMethod, accept: String?) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let accept { request.headers.add(name: "Accept", value: accept) }
        for (name, value) in extraHeaders { request.headers.add(name: name, value: value) }
        return try await execute(request, path)
    }

    func execute(_ request: HTTPClientRequest, _ path: String) async throws -> HTTPClientResponse {
        do {
            return try await client.execute(request, timeout: .seconds(300))
        } catch {
            throw PeerUnreachable(peer: peer.name, url: base, reason: Self.describe(error))
        }
    }

    func check(_ response: HTTPClientResponse, _ body: ByteBuffer, _ path: String) throws {
        guard (200..<300).contains(response.status.code) else {
            struct Problem: Decodable { struct Inner: Decodable { var message: String? }; var error: Inner }
            let text = (try? JSONDecoder().decode(Problem.self, from: Data(buffer: body)).error.message)
                ?? String(buffer: body)
            let reason = text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300)
            if response.status == .forbidden {
                throw PeerRefused(peer: peer.name, reason: reason.isEmpty ? "forbidden" : String(reason))
            }
            throw ExchangeError("peer \(peer.name) answered \(response.status.code) to \(path.prefix(120)): \(reason)")
        }
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? NIOSSLError { return "TLS failure: \(e)" }
        if let e = error as? BoringSSLError { return "TLS failure (the peer's certificate is not from its configured CA, or ours is refused): \(e)" }
        if let e = error as? NIOSSLExtraError { return "TLS failure: \(e)" }
        return "\(error)"
    }
}

/// The peer could not be reached (connection, TLS or timeout): a fetch can resume later.
public struct PeerUnreachable: Error, CustomStringConvertible, Sendable {
    public let peer: String
    public let url: String
    public let reason: String
    public var description: String { "cannot reach peer \(peer) at \(url): \(reason)" }
}

/// The peer's policy refused the request.
public struct PeerRefused: Error, CustomStringConvertible, Sendable {
    public let peer: String
    public let reason: String
    public var description: String { "peer \(peer) refused: \(reason)" }
}

/// Verifies a peer's current checkpoint: signed by its key, for its origin, and consistent with
/// every checkpoint of it seen before (kept in the registry). Two histories are equivocation:
/// recorded with evidence, reported loudly, and thrown.
public struct PeerLedgerVerifier: Sendable {
    let registry: PeerRegistry
    let logger: Logger

    public init(registry: PeerRegistry, logger: Logger) {
        self.registry = registry
        self.logger = logger
    }

    public func verifyCurrentCheckpoint(_ client: PeerClient) async throws -> (Checkpoint, String) {
        let peer = client.peer
        if let evidence = peer.equivocation {
            throw PeerEquivocation(peer: peer.name, evidence: evidence)
        }
        let note = try await client.getText("/checkpoint")
        let verifier = try NoteVerifier(verifierKey: peer.verifierKey)
        let opened: OpenedNote
        do { opened = try SignedNote.open(note, verifiers: [verifier]) } catch {
            throw ExchangeError("peer \(peer.name)'s checkpoint is not signed by its configured key \(peer.verifierKey): \(error)")
        }
        let checkpoint = try Checkpoint.parse(opened.text)
        guard checkpoint.origin == peer.name else {
            throw ExchangeError("peer \(peer.name)'s checkpoint is for another log (origin \(checkpoint.origin))")
        }
        // The note as its key signed it, without witnesses' cosignatures.
        let signedNote = opened.text + "\n" + opened.verified.map(\.line).joined()
        let seen = try registry.checkpoints(of: peer.name)
        do {
            if let larger = seen.last(where: { $0.size > checkpoint.size }) {
                // An older tree than one it showed before: it must still be a prefix of it.
                try await verifyConsistency(client, from: checkpoint.size, fromRoot: checkpoint.rootHash,
                                            to: larger.size, toRoot: MerkleHash(base64: larger.rootHash))
            } else if let previous = seen.last, previous.size < checkpoint.size {
                try await verifyConsistency(client, from: previous.size, fromRoot: MerkleHash(base64: previous.rootHash),
                                            to: checkpoint.size, toRoot: checkpoint.rootHash)
            }
        } catch let e as Inconsistent {
            let evidence = "\(e.reason)\nseen before:\n\(seen.last?.signedNote ?? "")\nnow:\n\(signedNote)"
            try registry.markEquivocation(peer.name, evidence: evidence)
            logger.critical("PEER EQUIVOCATION: a peer's ledger is inconsistent with what it showed before; nothing more is accepted from it",
                            metadata: ["peer": "\(peer.name)", "reason": "\(e.reason)"])
            throw PeerEquivocation(peer: peer.name, evidence: evidence)
        }
        do {
            try registry.record(peer.name, checkpoint, signedNote: signedNote)
        } catch let e as PeerEquivocation {
            logger.critical("PEER EQUIVOCATION: a peer signed two different roots for one tree size; nothing more is accepted from it",
                            metadata: ["peer": "\(peer.name)", "size": "\(checkpoint.size)"])
            throw e
        }
        return (checkpoint, signedNote)
    }

    struct Inconsistent: Error { let reason: String }

    func verifyConsistency(_ client: PeerClient, from size1: UInt64, fromRoot: MerkleHash?, to size2: UInt64,
                           toRoot: MerkleHash?) async throws {
        guard let fromRoot, let toRoot else { throw Inconsistent(reason: "a kept root hash is unreadable") }
        if size1 == 0 { return }
        struct Proof: Decodable { var proof: [String] }
        let proof: Proof
        do { proof = try await client.getJSON(Proof.self, "/proof/consistency?from=\(size1)&to=\(size2)") } catch let e as PeerUnreachable {
            throw e
        } catch {
            throw Inconsistent(reason: "the peer cannot prove its tree of size \(size2) extends the one of size \(size1): \(error)")
        }
        let hashes = proof.proof.compactMap { MerkleHash(base64: $0) }
        guard hashes.count == proof.proof.count else { throw Inconsistent(reason: "malformed consistency proof") }
        do {
            try MerkleTree.verifyConsistency(size1: size1, size2: size2, proof: hashes, root1: fromRoot, root2: toRoot)
        } catch {
            throw Inconsistent(reason: "the tree of size \(size2) does not extend the one of size \(size1) seen before: \(error)")
        }
    }
}
