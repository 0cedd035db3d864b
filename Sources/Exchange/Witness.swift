import Archive
import Foundation
import Ledger
import Logging

/// Witnessing: every `witnessIntervalSeconds`, fetch each peer's checkpoint, verify it (its key,
/// consistency with every checkpoint of it seen before), and cosign it (C2SP tlog-cosignature),
/// handing the cosignature back to the peer. A peer showing two histories is reported loudly
/// and marked as equivocating (see `peer list` and `status`).
public final class Witness: @unchecked Sendable {
    let archive: Archive
    let identity: TLSIdentity
    let cosigner: CosignatureSigner
    let interval: Double
    let logger: Logger
    let registry: PeerRegistry
    private var task: Task<Void, Never>?
    /// The CA certificates (DER) the peer server trusts; a change asks for a restart.
    let trustedCAs: @Sendable () -> [[UInt8]]

    public init(archive: Archive, identity: TLSIdentity, cosigner: CosignatureSigner, interval: Double, logger: Logger,
                trustedCAs: @escaping @Sendable () -> [[UInt8]]) {
        self.archive = archive
        self.identity = identity
        self.cosigner = cosigner
        self.interval = interval
        self.logger = logger
        self.trustedCAs = trustedCAs
        registry = PeerRegistry(archive: archive)
    }

    public func start() {
        task = Task.detached { [self] in
            var warnedCAs = false
            while !Task.isCancelled {
                await round()
                if !warnedCAs, let peers = try? registry.list() {
                    let now = Set(PeerIdentity.trustRoots(peers).compactMap { try? $0.toDERBytes() })
                    if !now.isSubset(of: Set(trustedCAs())) {
                        warnedCAs = true
                        logger.warning("a peer was added with a CA the running peer API does not trust yet: restart serve to accept its requests")
                    }
                }
                try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            }
        }
    }

    public func stop() {
        task?.cancel()
        task = nil
    }

    /// One round over every peer; errors are kept per peer (`peer list`) and logged.
    public func round() async {
        guard let peers = try? registry.list() else { return }
        for peer in peers {
            if peer.equivocation != nil { continue }  // reported once; nothing more is trusted from it
            do {
                try await witness(peer)
                try registry.noteWitnessed(peer.name, error: nil)
            } catch let e as PeerEquivocation {
                logger.critical("\(e)")
            } catch {
                try? registry.noteWitnessed(peer.name, error: "\(error)")
                logger.warning("cannot witness a peer's ledger", metadata: ["peer": "\(peer.name)", "error": "\(error)"])
            }
        }
    }

    public func witness(_ peer: Peer) async throws {
        let client = try PeerClient(peer: peer, identity: identity, connections: 1)
        do {
            // Verified and consistent with all we saw: cosign it and give the peer our cosignature.
            let (checkpoint, _) = try await PeerLedgerVerifier(registry: registry, logger: logger).verifyCurrentCheckpoint(client)
            let line = try cosigner.cosign(checkpoint: checkpoint, timestamp: UInt64(Date().timeIntervalSince1970)).line
            try await client.post("/witness/cosignature", body: line)
            try registry.markCosigned(peer.name, size: checkpoint.size)
            await client.shutdown()
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
