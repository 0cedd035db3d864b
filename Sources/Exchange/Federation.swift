import Archive
import AsyncHTTPClient
import DICOM
import Foundation
import Logging
import NIOCore

/// A C-FIND identifier sent to peers: the level and every key with its VR and value.
public struct FederatedFindRequest: Codable, Sendable {
    public struct Key: Codable, Sendable {
        public var tag: UInt32
        public var vr: String
        public var value: String
    }
    public var level: String
    public var keys: [Key]

    public init(level: QueryLevel, keys: [QueryKey]) {
        self.level = level.rawValue
        self.keys = keys.map { Key(tag: $0.tag.rawValue, vr: $0.vr, value: $0.value) }
    }

    var queryKeys: [QueryKey] { keys.map { QueryKey(tag: Tag(rawValue: $0.tag), vr: $0.vr, value: $0.value) } }
}

/// One peer's matches: attribute values by tag ("GGGGEEEE" hex).
public struct FederatedFindResponse: Codable, Sendable {
    public var peer: String
    public var matches: [[String: String]]
}

/// The remote side of federated C-FIND: what peers hold, may show this node, and answer.
public struct FederatedMatch: Sendable {
    public var peer: String
    public var values: [(tag: Tag, value: String)]
    public var studyInstanceUID: String? { values.first(where: { $0.tag == .studyInstanceUID })?.value }
}

/// Asks every configured peer, in parallel and within `timeout`, for the studies (and their
/// series and instances) matching a C-FIND identifier that it lets this node see. A peer that
/// does not answer in time, or refuses, is skipped and named in `unanswered`.
public struct FederatedQuery: Sendable {
    let archive: Archive
    let identity: TLSIdentity
    let logger: Logger
    let timeout: Double
    /// One client per peer, kept between queries: its TLS connections are reused.
    let clients = PeerClientCache()

    public init(archive: Archive, identity: TLSIdentity, timeout: Double, logger: Logger) {
        self.archive = archive
        self.identity = identity
        self.timeout = timeout
        self.logger = logger
    }

    /// Closes the peers' connections; call when the service stops.
    public func shutdown() { clients.shutdown() }

    public func find(level: QueryLevel, keys: [QueryKey]) async -> (matches: [FederatedMatch], unanswered: [String]) {
        guard let peers = try? PeerRegistry(archive: archive).list().filter({ $0.equivocation == nil }), !peers.isEmpty else { return ([], []) }
        var keys = keys
        if !keys.contains(where: { $0.tag == .studyInstanceUID }) { keys.append(QueryKey(tag: .studyInstanceUID, vr: "UI", value: "")) }
        let body = (try? JSONEncoder().encode(FederatedFindRequest(level: level, keys: keys))) ?? Data()
        let timeout = self.timeout
        return await withTaskGroup(of: (String, FederatedFindResponse?, String?).self) { group in
            for peer in peers {
                group.addTask { [identity, logger, clients] in
                    let client: PeerClient
                    do { client = try clients.client(for: peer, identity: identity) } catch {
                        return (peer.name, nil, "\(error)")
                    }
                    do {
                        let data = try await client.postJSON("/federation/find", body: body, timeoutSeconds: timeout)
                        return (peer.name, try JSONDecoder().decode(FederatedFindResponse.self, from: data), nil)
                    } catch {
                        logger.warning("federated C-FIND: a peer did not answer; its studies are missing from the answer",
                                       metadata: ["peer": "\(peer.name)", "error": "\(error)"])
                        return (peer.name, nil, "\(error)")
                    }
                }
            }
            var matches: [FederatedMatch] = []
            var unanswered: [String] = []
            for await (name, response, _) in group {
                guard let response else { unanswered.append(name); continue }
                for m in response.matches {
                    let values = m.compactMap { k, v -> (tag: Tag, value: String)? in
                        UInt32(k, radix: 16).map { (tag: Tag(rawValue: $0), value: v) }
                    }.sorted { $0.tag.rawValue < $1.tag.rawValue }
                    matches.append(FederatedMatch(peer: name, values: values))
                }
            }
            return (matches, unanswered.sorted())
        }
    }

    /// The peer that holds `study` and lets this node fetch it: the first that lists its manifest.
    public func source(of study: String) async -> String? {
        guard let peers = try? PeerRegistry(archive: archive).list().filter({ $0.equivocation == nil }) else { return nil }
        for peer in peers {
            guard let client = try? PeerClient(peer: peer, identity: identity, connections: 1) else { continue }
            let entries = try? await client.getJSON([DocumentEntry].self, "/registry/documents?studyInstanceUID=\(study)")
            await client.shutdown()
            if let entries, !entries.isEmpty { return peer.name }
        }
        return nil
    }
}

extension PeerClient {
    /// POST a JSON body, the whole answer back; a time limit of its own.
    func postJSON(_ path: String, body: Data, timeoutSeconds: Double) async throws -> Data {
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in extraHeaders { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .milliseconds(Int64(timeoutSeconds * 1000)))
        } catch {
            throw PeerUnreachable(peer: peer.name, url: base, reason: Self.describe(error))
        }
        let answer = try await response.body.collect(upTo: 64 << 20)
        try check(response, answer, path)
        return Data(buffer: answer)
    }
}

/// Clients of the peers, made on first use and kept while the peer's URL and CA stay the same.
final class PeerClientCache: @unchecked Sendable {
    private let clients = LockedValue<[String: PeerClient]>([:])

    /// Closes every client (an HTTP client must be shut down before it is released).
    func shutdown() {
        let all = clients.withLock { map -> [PeerClient] in
            defer { map = [:] }
            return Array(map.values)
        }
        all.forEach { $0.shutdownSync() }
    }

    func client(for peer: Peer, identity: TLSIdentity) throws -> PeerClient {
        try clients.withLock { map in
            if let c = map[peer.name], c.peer.url == peer.url, c.peer.caPEM == peer.caPEM {
                return c
            }
            map[peer.name]?.shutdownSync()
            let c = try PeerClient(peer: peer, identity: identity, connections: 2)
            map[peer.name] = c
            return c
        }
    }
}
