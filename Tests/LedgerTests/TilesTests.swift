import Foundation
import GRDB
import Testing
@testable import Ledger

/// Entries of varied lengths (0 to 299 bytes of padding) so bundles are not uniform.
func tileTestEntries(_ range: Range<Int>) -> [Data] {
    range.map { Data(("entry \($0) " + String(repeating: "x", count: ($0 * 37) % 300)).utf8) }
}

/// A log in SQLite with signed checkpoints, served the way the bridge's HTTP endpoints serve it:
/// "checkpoint" is the latest signed note, tiles are cut for that checkpoint's size.
final class TiledLog: @unchecked Sendable {
    static let origin = "bridge.example/log"
    let db: DatabaseQueue
    let signer: NoteSigner
    private var clock = Date(timeIntervalSince1970: 1_700_000_000)

    init() throws {
        db = try makeLedgerDatabase()
        signer = try NoteSigner(name: TiledLog.origin, seed: [UInt8](repeating: 7, count: 32))
    }

    /// Appends entries in batches and signs a checkpoint of the result.
    @discardableResult
    func grow(_ entries: [Data], batch: Int = 100) throws -> Checkpoint {
        for start in stride(from: 0, to: entries.count, by: batch) {
            let slice = Array(entries[start..<min(start + batch, entries.count)])
            try db.write { db throws in _ = try LedgerStore.append(slice, in: db) }
        }
        return try sign()
    }

    @discardableResult
    func sign() throws -> Checkpoint {
        clock += 1
        let now = clock
        try db.write { db throws in _ = try CheckpointSigner.signIfGrown(in: db, signer: signer, origin: TiledLog.origin, now: now) }
        return try db.read { db throws in try #require(try LedgerStore.latestCheckpoint(db)).checkpoint }
    }

    func serve(_ path: String) throws -> Data {
        try db.read { db throws -> Data in
            guard let cp = try LedgerStore.latestCheckpoint(db) else { throw TileError.notFound(path: path, treeSize: 0) }
            if path == "checkpoint" { return Data(cp.signedNote.utf8) }
            return try TileServer.content(TilePath.parse(path), treeSize: cp.size, db)
        }
    }
}

@Suite struct TilesTests {
    // MARK: Paths

    @Test func pathsAreWrittenAsTlogWritesThem() {
        #expect(TilePath.hashes(level: 0, index: 0, width: 256).path == "tile/0/000")
        #expect(TilePath.hashes(level: 0, index: 999, width: 256).path == "tile/0/999")
        #expect(TilePath.hashes(level: 1, index: 1000, width: 256).path == "tile/1/x001/000")
        // The spec's and tlog's example: 1234067 is x001/x234/067.
        #expect(TilePath.hashes(level: 4, index: 1_234_067, width: 1).path == "tile/4/x001/x234/067.p/1")
        #expect(TilePath.hashes(level: 63, index: 1_234_067, width: 256).path == "tile/63/x001/x234/067")
        #expect(TilePath.entries(index: 5, width: 112).path == "tile/entries/005.p/112")
        #expect(TilePath.entries(index: 123_456_789, width: 256).path == "tile/entries/x123/x456/789")
        #expect(TilePath.entries(index: .max, width: 255).path == "tile/entries/x018/x446/x744/x073/x709/x551/615.p/255")
    }

    @Test func pathsRoundTrip() throws {
        var indexes: [UInt64] = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 999_999, 1_000_000, 1_234_067, .max, .max - 1]
        var x: UInt64 = 1
        for _ in 0..<64 { indexes.append(x); indexes.append(x &- 1); x = x &* 3 &+ 1 }
        for n in indexes {
            for width in [1, 2, 112, 255, 256] {
                for tile in [TilePath.entries(index: n, width: width)] + [0, 1, 7, 63].map({ TilePath.hashes(level: $0, index: n, width: width) }) {
                    #expect(try TilePath.parse(tile.path) == tile, "\(tile.path)")
                }
            }
        }
    }

    @Test func badPathsAreRejected() {
        let bad = [
            "", "tile", "tile/", "tile/0", "tile/0/", "/tile/0/000", "tile/0/000/", "tiles/0/000", "Tile/0/000",
            "tile/0/0", "tile/0/00", "tile/0/0000", "tile/0/00a", "tile/0/-01", "tile/0/+01", "tile/0/ 01",
            "tile/00/000", "tile/01/000", "tile/64/000", "tile/-1/000", "tile/+1/000", "tile/1e1/000",
            "tile/18446744073709551616/000", "tile/data/000", "tile/entry/000", "tile/entries", "tile/entries/",
            "tile/0/x000/001", "tile/0/x000/x001/002", "tile/0/001/x002", "tile/0/x1/000", "tile/0/X001/000",
            "tile/0/xx01/000", "tile/0/x001", "tile/0/x001/", "tile/0//000",
            "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/01", "tile/0/000.p/", "tile/0/000.p", "tile/0/000.p/5/",
            "tile/0/000.p/-5", "tile/0/000.p/5.p/3", "tile/0/x001.p/5/000", "tile/0.p/5", "tile/0/000.P/5",
            "tile/entries/000.p/256", "tile/entries/000.p/0", "tile/entries/x000/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/0/000?x=1", "tile/0/000#a", "tile/0/%30%30%30", "tile/0/000\n", "tile/0/٠٠٠",
        ]
        for path in bad {
            #expect(throws: TileError.malformedPath(path), "\(path)") { try TilePath.parse(path) }
        }
    }

    // MARK: Which tiles a tree has

    @Test func tileSetsMatchTheSpecExamples() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level
        // 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and
        // one partial level 2 tile of width 1."
        let tiles = TilePath.hashTiles(treeSize: 70_000)
        #expect(tiles.count == 273 + 1 + 1 + 1 + 1)
        #expect(tiles.filter { if case .hashes(0, _, 256) = $0 { true } else { false } }.count == 273)
        #expect(tiles.contains(.hashes(level: 0, index: 273, width: 112)))
        #expect(tiles.contains(.hashes(level: 1, index: 0, width: 256)))
        #expect(tiles.contains(.hashes(level: 1, index: 1, width: 17)))
        #expect(tiles.contains(.hashes(level: 2, index: 0, width: 1)))
        // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
        // tile of width 1."
        #expect(TilePath.hashTiles(treeSize: 256) == [.hashes(level: 0, index: 0, width: 256), .hashes(level: 1, index: 0, width: 1)])
        #expect(TilePath.hashTiles(treeSize: 0).isEmpty)
        #expect(TilePath.entryBundles(treeSize: 0).isEmpty)
        #expect(TilePath.entryBundles(treeSize: 513) == [.entries(index: 0, width: 256), .entries(index: 1, width: 256), .entries(index: 2, width: 1)])
        #expect(TilePath.hashTiles(level: 7, treeSize: 1 << 62) == [.hashes(level: 7, index: 0, width: 64)])
        #expect(TilePath.hashTiles(level: 8, treeSize: 1 << 62).isEmpty)
        #expect(TilePath.tile(level: 6, index: 3, treeSize: 1 << 62) == .hashes(level: 6, index: 3, width: 256))
        #expect(TilePath.tile(level: 6, index: 1 << 14, treeSize: 1 << 62) == nil)
    }

    // MARK: Serving

    @Test func rootRecomputedFromTilesAloneMatchesTheCheckpoint() throws {
        let log = try TiledLog()
        let all = tileTestEntries(0..<1000)
        let cp = try log.grow(all)
        #expect(cp.size == 1000)
        // Grow the log past the checkpoint: tiles are still cut for the checkpoint's size.
        try log.db.write { db throws in _ = try LedgerStore.append(tileTestEntries(1000..<1100), in: db) }

        let tiles = TilePath.hashTiles(treeSize: cp.size)
        #expect(tiles.map(\.path) == ["tile/0/000", "tile/0/001", "tile/0/002", "tile/0/003.p/232", "tile/1/000.p/3"])
        var reader = TileHashReader()
        var leaves: [MerkleHash] = []
        for tile in tiles {
            let data = try log.serve(tile.path)
            #expect(data.count == tile.width * 32)
            try reader.add(tile, data: data)
        }
        for bundle in TilePath.entryBundles(treeSize: cp.size) {
            let entries = try EntryBundle.decode(log.serve(bundle.path), count: bundle.width)
            #expect(entries == Array(all[Int(bundle.index * 256)..<Int(bundle.index * 256) + bundle.width]))
            leaves += entries.map { RFC6962.leafHash($0) }
        }
        // The level-0 tiles are the leaf hashes; level 1 holds the roots of the full level-0 tiles.
        #expect(leaves.count == 1000)
        for i in 0..<1000 { #expect(try reader.hash(treeLevel: 0, n: UInt64(i)) == leaves[i]) }
        for n in 0..<3 { #expect(try reader.hash(treeLevel: 8, n: UInt64(n)) == referenceRoot(leaves[(n * 256)..<(n * 256 + 256)])) }
        // The root from the tiles alone, the reference MTH of the bundles' entries, the checkpoint.
        #expect(try MerkleTree.treeHash(size: 1000, reader: reader) == cp.rootHash)
        #expect(referenceRoot(leaves[...]) == cp.rootHash)
        // Every earlier root and every proof can be cut from the same tiles.
        try log.db.read { db throws in
            for size in [UInt64(1), 2, 255, 256, 257, 511, 512, 700, 768, 999, 1000] {
                #expect(try MerkleTree.treeHash(size: size, reader: reader) == LedgerStore.rootHash(size: size, db))
            }
            for (index, size) in [(UInt64(0), UInt64(1000)), (255, 1000), (256, 1000), (999, 1000), (517, 1000)] {
                #expect(try MerkleTree.inclusionProof(index: index, size: size, reader: reader) == LedgerStore.inclusionProof(index: index, size: size, db))
            }
            for size1 in [UInt64(1), 200, 256, 300, 512, 768, 999] {
                #expect(try MerkleTree.consistencyProof(from: size1, to: 1000, reader: reader) == LedgerStore.consistencyProof(from: size1, to: 1000, db))
            }
        }
    }

    @Test func fullTilesNeverChangeAndPartialTilesGrowUntilFull() throws {
        let log = try TiledLog()
        try log.grow(tileTestEntries(0..<300))
        let full = try log.serve("tile/0/000")
        let partial = try log.serve("tile/0/001.p/44")
        let bundle = try log.serve("tile/entries/001.p/44")
        try log.grow(tileTestEntries(300..<600))
        #expect(try log.serve("tile/0/000") == full)
        // The wider partial tile (and then the full one) starts with the narrower one's hashes.
        #expect(try log.serve("tile/0/001").prefix(partial.count) == partial)
        #expect(try log.serve("tile/entries/001").prefix(bundle.count) == bundle)
        #expect(try log.serve("tile/0/002.p/88").count == 88 * 32)
        #expect(try log.serve("tile/1/000.p/2").count == 64)
    }

    @Test func onlyTheTilesOfTheCheckpointedTreeAreServed() throws {
        let log = try TiledLog()
        try log.db.write { db throws in
            for path in ["tile/0/000", "tile/0/000.p/1", "tile/entries/000.p/1"] {
                #expect(throws: TileError.notFound(path: path, treeSize: 0)) { try TileServer.content(TilePath.parse(path), treeSize: 0, db) }
            }
        }
        try log.grow(tileTestEntries(0..<1000))
        try log.db.write { db throws in _ = try LedgerStore.append(tileTestEntries(1000..<1100), in: db) }  // not checkpointed
        for path in [
            "tile/0/003",  // full tile 3 needs 1024 entries
            "tile/0/003.p/231", "tile/0/003.p/233", "tile/0/003.p/1",  // only width 232 exists
            "tile/0/004", "tile/0/004.p/76",  // beyond the checkpoint, though in the log
            "tile/0/000.p/5",  // tile 0 is full
            "tile/1/000", "tile/1/000.p/2", "tile/1/000.p/4", "tile/1/001.p/3",
            "tile/2/000", "tile/2/000.p/1", "tile/63/000.p/1",
            "tile/entries/003", "tile/entries/003.p/100", "tile/entries/004.p/76", "tile/entries/000.p/255",
            "tile/0/x001/000",
        ] {
            #expect(throws: TileError.notFound(path: path, treeSize: 1000), "\(path)") { try log.serve(path) }
        }
        // Paths that parse to nothing in any tree.
        try log.db.read { db throws in
            for tile in [TilePath.hashes(level: 64, index: 0, width: 1), .hashes(level: -1, index: 0, width: 1), .hashes(level: .max, index: 0, width: 256),
                         .hashes(level: 0, index: 0, width: 0), .hashes(level: 0, index: 0, width: 257), .entries(index: .max, width: 256)] {
                #expect(throws: TileError.self) { try TileServer.content(tile, treeSize: 1000, db) }
            }
        }
    }

    @Test func partialTilesOfEarlierCheckpointsAreStillServed() throws {
        // tlog-tiles: "Logs MUST serve partial tiles corresponding to tree sizes for which a
        // checkpoint was produced".
        let log = try TiledLog()
        try log.grow(tileTestEntries(0..<300))
        let at300 = try ["tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/001.p/44"].map { ($0, try log.serve($0)) }
        try log.grow(tileTestEntries(300..<600))
        let at600 = try ["tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/002.p/88"].map { ($0, try log.serve($0)) }
        try log.grow(tileTestEntries(600..<1000))
        for (path, data) in at300 + at600 { #expect(try log.serve(path) == data, "\(path)") }
        // No checkpoint had these sizes.
        for path in ["tile/0/001.p/45", "tile/0/001.p/43", "tile/0/002.p/87", "tile/entries/002.p/89", "tile/1/000.p/4", "tile/2/000.p/1"] {
            #expect(throws: TileError.notFound(path: path, treeSize: 1000), "\(path)") { try log.serve(path) }
        }
        // A checkpoint beyond the tree served does not count.
        try log.grow(tileTestEntries(1000..<1100))
        try log.db.read { db throws in
            #expect(throws: TileError.notFound(path: "tile/0/004.p/76", treeSize: 1000)) {
                try TileServer.content(TilePath.parse("tile/0/004.p/76"), treeSize: 1000, db)
            }
            #expect(try TileServer.content(TilePath.parse("tile/0/004.p/76"), treeSize: 1100, db).count == 76 * 32)
        }
    }

    // MARK: Entry bundles

    @Test func entryBundleEncoding() throws {
        let entries = [Data(), Data([0x41]), Data(repeating: 0xAB, count: 300), Data(repeating: 1, count: 0xFFFF)]
        let bundle = try EntryBundle.encode(entries)
        #expect(bundle.prefix(5) == Data([0x00, 0x00, 0x00, 0x01, 0x41]))
        #expect(bundle[5...6] == Data([0x01, 0x2C]))
        #expect(bundle.count == 8 + 0 + 1 + 300 + 0xFFFF)
        #expect(try EntryBundle.decode(bundle, count: 4) == entries)
        #expect(throws: TileError.self) { try EntryBundle.decode(bundle, count: 3) }
        #expect(throws: TileError.self) { try EntryBundle.decode(bundle, count: 5) }
        #expect(throws: TileError.self) { try EntryBundle.decode(bundle.dropLast(), count: 4) }
        #expect(throws: TileError.self) { try EntryBundle.decode(bundle + [0x00], count: 4) }
        #expect(throws: TileError.entryTooLong(index: 11, length: 0x10000)) {
            try EntryBundle.encode([Data(), Data(repeating: 0, count: 0x10000)], firstIndex: 10)
        }
        #expect(try EntryBundle.decode(Data(), count: 0) == [])
    }

    @Test func tileHashReaderRejectsWrongLengthsAndMissingTiles() throws {
        var reader = TileHashReader()
        #expect(throws: TileError.malformedTile(path: "tile/0/000.p/2", length: 63)) {
            try reader.add(.hashes(level: 0, index: 0, width: 2), data: Data(count: 63))
        }
        try reader.add(.hashes(level: 0, index: 0, width: 2), data: Data(count: 64))
        #expect(throws: MerkleError.self) { try reader.hash(treeLevel: 0, n: 2) }
        #expect(throws: MerkleError.self) { try reader.hash(treeLevel: 2, n: 0) }
        #expect(throws: MerkleError.self) { try reader.hash(treeLevel: 8, n: 0) }
        let zero = try #require(MerkleHash(bytes: [UInt8](repeating: 0, count: 32)))
        #expect(try reader.hash(treeLevel: 1, n: 0) == RFC6962.nodeHash(zero, zero))
    }
}
