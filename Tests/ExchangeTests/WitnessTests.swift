import Archive
import Foundation
import GRDB
import Ledger
import Logging
import Testing
@testable import Exchange

/// Witnessing a peer's ledger: cosign what verifies, mark a peer that shows two histories, and
/// keep a network failure as an error, never as equivocation.
@Suite(.serialized) struct WitnessTests {
    func witness(of node: TestNode) throws -> Witness {
        Witness(archive: node.archive, identity: node.identity, cosigner: try CosignatureSigner(privateKey: node.signer.privateKey),
                interval: 3600, logger: node.logger, trustedCAs: { [] })
    }

    func cosignatures(at node: TestNode) throws -> [String] {
        try node.archive.database.read { db in
            try Row.fetchAll(db, sql: "SELECT witness, size FROM cosignature ORDER BY size").map { "\($0["witness"] as String)@\($0["size"] as Int64)" }
        }
    }

    /// A source with a signed checkpoint over two entries, serving; the witness configured with it.
    func setUp() async throws -> (source: TestNode, witness: TestNode, size: UInt64) {
        let source = try TestNode("source.test")
        let witness = try TestNode("witness.test")
        _ = try source.publish(try source.storeStudy(count: 1))
        _ = try source.publish(try source.storeStudy(count: 2))
        let size = try source.signCheckpoint()
        try source.add(witness)
        try await source.startServer()
        try witness.add(source)
        return (source, witness, size)
    }

    @Test func aValidCheckpointIsCosignedAndTheCosignatureHandedBack() async throws {
        let (source, node, size) = try await setUp()
        defer { source.stop(); node.stop() }
        try await witness(of: node).round()
        #expect(try cosignatures(at: source) == ["witness.test@\(size)"])
        let peer = try #require(try PeerRegistry(archive: node.archive).peer("source.test"))
        #expect(peer.equivocation == nil)
        #expect(peer.lastError == nil)
        #expect(peer.lastWitnessedAt != nil)
        let seen = try PeerRegistry(archive: node.archive).checkpoints(of: "source.test")
        #expect(seen.map(\.size) == [size])
        let cosigned = try await node.archive.database.read { db in
            try Bool.fetchOne(db, sql: "SELECT cosigned FROM peer_checkpoint WHERE peer = 'source.test' AND size = ?", arguments: [Int64(size)])
        }
        #expect(cosigned == true)
    }

    @Test func twoRootsForOneSizeAreMarkedAsEquivocation() async throws {
        let (source, node, size) = try await setUp()
        defer { source.stop(); node.stop() }
        // The witness saw, before, another root signed for the same size.
        let other = Checkpoint(origin: "source.test", size: size, rootHash: try #require(MerkleHash(base64: Data(repeating: 9, count: 32).base64EncodedString())))
        try PeerRegistry(archive: node.archive).record("source.test", other, signedNote: other.text())
        try await witness(of: node).round()
        let peer = try #require(try PeerRegistry(archive: node.archive).peer("source.test"))
        let evidence = try #require(peer.equivocation, "not marked as equivocating")
        #expect(evidence.contains("two roots signed for size \(size)"), "\(evidence)")
        #expect(try cosignatures(at: source).isEmpty, "cosigned a checkpoint that conflicts with one seen")
    }

    @Test func aNetworkErrorIsKeptAsTheLastErrorNotAsEquivocation() async throws {
        let node = try TestNode("witness.test")
        defer { node.stop() }
        // A peer at a port nobody listens on.
        let ghost = try NoteSigner.generate(name: "ghost.test")
        try PeerRegistry(archive: node.archive).add(
            Peer(name: "ghost.test", url: "https://127.0.0.1:\(try freeLoopbackPort())", caPEM: TestPKI.ca.certificatePEM,
                 verifierKey: ghost.verifierKey, share: .none), replace: false)
        try await witness(of: node).round()
        let peer = try #require(try PeerRegistry(archive: node.archive).peer("ghost.test"))
        #expect(peer.equivocation == nil)
        #expect(peer.lastError?.contains("cannot reach peer ghost.test") == true, "\(peer.lastError ?? "no error kept")")
        #expect(peer.lastWitnessedAt == nil)
    }

    @Test func aCheckpointSignedByAnotherKeyIsAnErrorAndNotCosigned() async throws {
        let (source, node, _) = try await setUp()
        defer { source.stop(); node.stop() }
        // The witness was given another key for the source.
        var peer = source.asPeer()
        peer.verifierKey = try NoteSigner.generate(name: "source.test").verifierKey
        try PeerRegistry(archive: node.archive).add(peer, replace: true)
        try await witness(of: node).round()
        let after = try #require(try PeerRegistry(archive: node.archive).peer("source.test"))
        #expect(after.lastError?.contains("is not signed by its configured key") == true, "\(after.lastError ?? "no error kept")")
        #expect(after.equivocation == nil)
        #expect(try cosignatures(at: source).isEmpty)
    }
}
