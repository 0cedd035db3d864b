import Foundation
import GRDB
import Testing
@testable import Ledger

/// A fetch that serves `log` but lets a test change what comes back for one path.
final class TamperingFetch: @unchecked Sendable {
    let log: TiledLog
    var tamper: [String: (Data) -> Data] = [:]
    var fetched: [String] = []

    init(_ log: TiledLog) { self.log = log }

    func fetch(_ path: String) throws -> Data {
        fetched.append(path)
        let data = try log.serve(path)
        return tamper[path].map { $0(data) } ?? data
    }

    func verifier(key: String? = nil, origin: String? = nil) throws -> RemoteLogVerifier {
        try RemoteLogVerifier(verifierKey: key ?? log.signer.verifierKey, origin: origin, fetch: fetch)
    }
}

/// Flips the low bit of byte `at`.
func flip(_ data: Data, at: Int) -> Data {
    var d = data
    d[d.startIndex + at] ^= 0x01
    return d
}

@Suite struct TilesRemoteLogTests {
    @Test func aWholeLogVerifiesFromTilesAlone() throws {
        let log = try TiledLog()
        let all = tileTestEntries(0..<1000)
        let cp = try log.grow(all)
        let remote = TamperingFetch(log)
        var seen: [Data] = []
        let report = try remote.verifier().verify(onEntry: { i, e in
            #expect(i == UInt64(seen.count))
            seen.append(e)
        })
        #expect(report.checkpoint == cp)
        #expect(report.signatures.map(\.name) == [TiledLog.origin])
        #expect(report.hashTiles == 5)
        #expect(report.entryBundles == 4)
        #expect(report.entries == 1000)
        #expect(seen == all)
        #expect(Set(remote.fetched) == Set(["checkpoint"] + (TilePath.hashTiles(treeSize: 1000) + TilePath.entryBundles(treeSize: 1000)).map(\.path)))
        #expect(remote.fetched.count == 1 + 5 + 4)
        #expect(report.bytesFetched == remote.fetched.reduce(0) { $0 + ((try? log.serve($1).count) ?? 0) })
        #expect(report.consistentWith == nil)
    }

    @Test func everySizeAroundTileBoundariesVerifiesAndIsConsistentWithEveryEarlierCheckpoint() throws {
        let log = try TiledLog()
        var checkpoints: [Checkpoint] = []
        var size = 0
        for next in [1, 2, 3, 255, 256, 257, 300, 511, 512, 513, 767, 768, 1000] {
            checkpoints.append(try log.grow(tileTestEntries(size..<next)))
            size = next
            let verifier = try TamperingFetch(log).verifier()
            #expect(try verifier.verify().entries == UInt64(next))
            for previous in checkpoints {
                #expect(try verifier.verify(previous: previous).consistentWith == previous)
            }
            // The empty tree is a prefix of every tree.
            let empty = Checkpoint(origin: TiledLog.origin, size: 0, rootHash: RFC6962.emptyRoot)
            #expect(try verifier.verify(previous: empty).entries == UInt64(next))
        }
    }

    @Test func threeTileLevels() throws {
        // 65536 + 300 entries: level 0 has 257 full tiles and a partial one, level 1 one full tile
        // and a partial one of width 1, level 2 a partial tile of width 1.
        let log = try TiledLog()
        let small = (0..<65_836).map { Data("e\($0)".utf8) }
        let first = try log.grow(Array(small[..<65_000]), batch: 5000)
        let cp = try log.grow(Array(small[65_000...]), batch: 5000)
        #expect(TilePath.hashTiles(level: 1, treeSize: cp.size) == [.hashes(level: 1, index: 0, width: 256), .hashes(level: 1, index: 1, width: 1)])
        #expect(TilePath.hashTiles(level: 2, treeSize: cp.size) == [.hashes(level: 2, index: 0, width: 1)])
        let report = try TamperingFetch(log).verifier().verify(previous: first)
        #expect(report.hashTiles == 258 + 2 + 1)
        #expect(report.entries == 65_836)
    }

    @Test func emptyLog() throws {
        let log = try TiledLog()
        let cp = try log.sign()
        #expect(cp.size == 0)
        let remote = TamperingFetch(log)
        let report = try remote.verifier().verify(previous: cp)
        #expect(report.entries == 0 && report.hashTiles == 0 && report.entryBundles == 0)
        #expect(remote.fetched == ["checkpoint"])
    }

    // MARK: Tampering names what did not match

    @Test func aTamperedEntryIsNamed() throws {
        let log = try TiledLog()
        let all = tileTestEntries(0..<1000)
        try log.grow(all)
        let remote = TamperingFetch(log)
        // Entry 300 is the 45th of bundle 1: skip the 44 entries before it and its length.
        let offset = all[256..<300].reduce(0) { $0 + 2 + $1.count } + 2 + 3
        remote.tamper["tile/entries/001"] = { flip($0, at: offset) }
        var tampered = all[300]
        tampered[tampered.startIndex + 3] ^= 0x01
        #expect(throws: RemoteLogError.entryMismatch(index: 300, bundle: "tile/entries/001", tile: "tile/0/001",
                                                     entryHash: RFC6962.leafHash(tampered), tileHash: RFC6962.leafHash(all[300]))) {
            try remote.verifier().verify()
        }
        // And the message says so.
        do { _ = try remote.verifier().verify(); Issue.record("verified") } catch {
            #expect("\(error)".hasPrefix("entry 300 in tile/entries/001 hashes to \(RFC6962.leafHash(tampered).hex), but tile/0/001 has"))
        }
    }

    @Test func aSwappedEntryWithItsLeafHashIsCaughtOneLevelUp() throws {
        let log = try TiledLog()
        let all = tileTestEntries(0..<1000)
        try log.grow(all)
        let remote = TamperingFetch(log)
        // Replace entry 2 by other bytes of the same length, and its leaf hash in tile/0/000 too.
        var other = all[2]
        other[other.startIndex] = UInt8(ascii: "E")
        let offset = all[0..<2].reduce(0) { $0 + 2 + $1.count } + 2
        remote.tamper["tile/entries/000"] = { var d = $0; d[d.startIndex + offset] = UInt8(ascii: "E"); return d }
        remote.tamper["tile/0/000"] = { var d = $0; d.replaceSubrange((d.startIndex + 64)..<(d.startIndex + 96), with: RFC6962.leafHash(other).bytes); return d }
        let honest = try log.db.read { db throws in try LedgerStore.rootHash(size: 256, db) }
        var leaves = all[0..<256].map { RFC6962.leafHash($0) }
        leaves[2] = RFC6962.leafHash(other)
        #expect(throws: RemoteLogError.tileMismatch(tile: "tile/1/000.p/3", position: 0, tileHash: honest,
                                                    childTile: "tile/0/000", childRoot: referenceRoot(leaves[...]))) {
            try remote.verifier().verify()
        }
        // Rewriting the level-1 tile as well moves the problem to the signed root.
        let forgedTile1 = try log.serve("tile/1/000.p/3")
        remote.tamper["tile/1/000.p/3"] = { _ in
            var d = forgedTile1
            d.replaceSubrange(d.startIndex..<(d.startIndex + 32), with: referenceRoot(leaves[...]).bytes)
            return d
        }
        do {
            _ = try remote.verifier().verify()
            Issue.record("verified")
        } catch let RemoteLogError.rootMismatch(size, checkpointRoot, _, tiles) {
            #expect(size == 1000)
            #expect(checkpointRoot == (try log.db.read { db throws in try LedgerStore.rootHash(size: 1000, db) }))
            #expect(tiles == ["tile/1/000.p/3", "tile/0/003.p/232"])
        }
    }

    @Test func malformedTilesAndBundles() throws {
        let log = try TiledLog()
        try log.grow(tileTestEntries(0..<600))
        let remote = TamperingFetch(log)
        remote.tamper["tile/0/001"] = { $0.dropLast() }
        #expect(throws: RemoteLogError.tileLength(tile: "tile/0/001", got: 8191, want: 8192)) { try remote.verifier().verify() }
        remote.tamper = ["tile/entries/002.p/88": { $0 + [0x00] }]
        #expect(throws: RemoteLogError.malformedBundle(bundle: "tile/entries/002.p/88", reason: "1 bytes after entry 87")) { try remote.verifier().verify() }
        remote.tamper = ["tile/entries/000": { $0.dropLast(5) }]
        #expect(throws: RemoteLogError.self) { try remote.verifier().verify() }
        remote.tamper = ["tile/1/000.p/2": { flip($0, at: 40) }]
        #expect(throws: RemoteLogError.self) { try remote.verifier().verify() }
        remote.tamper = ["tile/0/002.p/88": { flip($0, at: 87 * 32) }]
        #expect(throws: RemoteLogError.self) { try remote.verifier().verify() }
        // A fetch that fails is named by its path.
        remote.tamper = [:]
        let failing = try RemoteLogVerifier(verifierKey: log.signer.verifierKey) { path in
            if path == "tile/entries/001" { throw TileError.notFound(path: path, treeSize: 0) }
            return try log.serve(path)
        }
        #expect(throws: RemoteLogError.fetchFailed(path: "tile/entries/001", reason: "tile/entries/001 is not a tile of the tree of size 0")) {
            try failing.verify()
        }
    }

    @Test func theCheckpointMustBeSignedByTheKeyForTheRightLog() throws {
        let log = try TiledLog()
        let cp = try log.grow(tileTestEntries(0..<10))
        let remote = TamperingFetch(log)
        // Another key of the same name.
        let other = try NoteSigner.generate(name: TiledLog.origin)
        #expect(throws: RemoteLogError.note(.unverifiedNote(signatures: [
            NoteSignature(name: TiledLog.origin, keyID: log.signer.keyID, base64: try SignedNote.parse(String(decoding: log.serve("checkpoint"), as: UTF8.self)).signatures[0].base64),
        ]))) { try remote.verifier(key: other.verifierKey).verify() }
        // A re-signed checkpoint with another root: the signature no longer verifies.
        remote.tamper["checkpoint"] = { note in
            let text = String(decoding: note, as: UTF8.self)
            return Data(text.replacingOccurrences(of: cp.rootHash.base64, with: RFC6962.emptyRoot.base64).utf8)
        }
        #expect(throws: RemoteLogError.note(.invalidSignature(name: TiledLog.origin, keyID: log.signer.keyID))) { try remote.verifier().verify() }
        // A checkpoint with a bad root signed by the right key: the tiles do not make that root.
        remote.tamper["checkpoint"] = { _ in Data(try! log.signer.sign(Checkpoint(origin: TiledLog.origin, size: 10, rootHash: RFC6962.emptyRoot).text()).utf8) }
        #expect(throws: RemoteLogError.rootMismatch(size: 10, checkpointRoot: RFC6962.emptyRoot, tilesRoot: cp.rootHash, tiles: ["tile/0/000.p/10"])) {
            try remote.verifier().verify()
        }
        // Signed by the key, but for another origin.
        remote.tamper = [:]
        #expect(throws: RemoteLogError.originMismatch(expected: "elsewhere.example/log", got: TiledLog.origin)) {
            try remote.verifier(origin: "elsewhere.example/log").verify()
        }
        // Not a checkpoint at all.
        remote.tamper["checkpoint"] = { _ in Data(try! log.signer.sign("hello\n").utf8) }
        #expect(throws: RemoteLogError.checkpoint(.malformed("fewer than three lines"))) { try remote.verifier().verify() }
    }

    @Test func aForkOrARewriteIsCaughtAgainstThePreviousCheckpoint() throws {
        let log = try TiledLog()
        let all = tileTestEntries(0..<700)
        let cp500 = try log.grow(Array(all[..<500]))
        let cp700 = try log.grow(Array(all[500...]))
        let verifier = try TamperingFetch(log).verifier()
        #expect(try verifier.verify(previous: cp500).consistentWith == cp500)
        // The same key signing a log whose first 500 entries differ (a fork).
        let fork = try TiledLog()
        var forked = all
        forked[123] = Data("not what was logged".utf8)
        let forkCp500 = try fork.grow(Array(forked[..<500]))
        let forkVerifier = try TamperingFetch(fork).verifier(key: log.signer.verifierKey)
        #expect(try forkVerifier.verify(previous: forkCp500).checkpoint.size == 500)
        #expect(throws: RemoteLogError.inconsistent(previousSize: 500, previousRoot: cp500.rootHash, tilesRoot: forkCp500.rootHash)) {
            try forkVerifier.verify(previous: cp500)
        }
        // A log that shrank, and a previous checkpoint of another log.
        #expect(throws: RemoteLogError.treeShrank(previousSize: 700, size: 500)) { try forkVerifier.verify(previous: cp700) }
        var elsewhere = cp500
        elsewhere.origin = "elsewhere.example/log"
        #expect(throws: RemoteLogError.previousOriginMismatch(previous: "elsewhere.example/log", current: TiledLog.origin)) {
            try verifier.verify(previous: elsewhere)
        }
        // A previous checkpoint of the empty tree must have the empty root.
        let badEmpty = Checkpoint(origin: TiledLog.origin, size: 0, rootHash: cp500.rootHash)
        #expect(throws: RemoteLogError.inconsistent(previousSize: 0, previousRoot: cp500.rootHash, tilesRoot: RFC6962.emptyRoot)) {
            try verifier.verify(previous: badEmpty)
        }
    }
}
