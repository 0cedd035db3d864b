// C2SP tlog-tiles (c2sp.org/tlog-tiles): the log served as static, cacheable resources.
//
//     tile/<L>/<N>[.p/<W>]         hash tile: W (256 when full) consecutive hashes at tree
//                                  level 8·L, hash i being MTH(D[(N·256 + i)·256^L : (N·256 + i + 1)·256^L])
//     tile/entries/<N>[.p/<W>]     entry bundle: entries N·256 ..< N·256 + W, each as a
//                                  big-endian uint16 length followed by the entry bytes
//
// <N> is written in zero-padded 3-digit groups, every group but the last prefixed with "x"
// (1234067 is x001/x234/067), exactly as golang.org/x/mod/sumdb/tlog writes it. <L> is 0 to 63
// and <W> 1 to 255, decimal without leading zeroes; ".p/<W>" is only for partial tiles. For a
// tree of size s, level L has floor(s / 256^(L+1)) full tiles and, when floor(s / 256^L) mod 256
// is not 0, one partial tile of that width after them. Nothing else exists for that tree.

import Foundation
import GRDB

/// The address of a tile or entry bundle of a tiled log.
public enum TilePath: Hashable, Sendable, CustomStringConvertible {
    /// Hash tile `index` at tile level `level` (tree level 8·level); `width` hashes, 256 when full.
    case hashes(level: Int, index: UInt64, width: Int)
    /// Entry bundle `index` (entries index·256 ..< index·256 + width); `width` 256 when full.
    case entries(index: UInt64, width: Int)

    /// Tile height: each tile spans 8 tree levels.
    public static let height = 8
    /// Hashes (or entries) in a full tile.
    public static let fullWidth = 256
    /// Largest tile level a path may name (c2sp.org/tlog-tiles).
    public static let maxLevel = 63

    public var index: UInt64 {
        switch self {
        case let .hashes(_, index, _), let .entries(index, _): return index
        }
    }

    public var width: Int {
        switch self {
        case let .hashes(_, _, width), let .entries(_, width): return width
        }
    }

    public var isPartial: Bool { width != TilePath.fullWidth }

    /// The level-0 hash tile whose hashes are the leaf hashes of this bundle's entries (for an
    /// entry bundle), or the tile itself.
    public var hashTile: TilePath {
        switch self {
        case .hashes: return self
        case let .entries(index, width): return .hashes(level: 0, index: index, width: width)
        }
    }

    /// The path, relative to the log's prefix: "tile/0/x001/234.p/7", "tile/entries/000".
    public var path: String {
        let kind: String
        switch self {
        case let .hashes(level, _, _): kind = String(level)
        case .entries: kind = "entries"
        }
        var n = index
        var groups = [threeDigits(n % 1000)]
        while n >= 1000 {
            n /= 1000
            groups.append("x" + threeDigits(n % 1000))
        }
        let partial = isPartial ? ".p/\(width)" : ""
        return "tile/\(kind)/" + groups.reversed().joined(separator: "/") + partial
    }

    public var description: String { path }

    private func threeDigits(_ v: UInt64) -> String {
        let s = String(v)
        return String(repeating: "0", count: 3 - s.count) + s
    }

    /// Parses a tile path (without the log's prefix or a leading "/"). Only the canonical form
    /// `path` writes is accepted: anything else throws `TileError.malformedPath`.
    public static func parse(_ path: String) throws -> TilePath {
        func bad() -> TileError { .malformedPath(path) }
        let bytes = Array(path.utf8)
        guard bytes.count <= 200, bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else { throw bad() }
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts[0] == "tile" else { throw bad() }
        var width = fullWidth
        if parts[parts.count - 2].hasSuffix(".p") {
            guard parts.count >= 4, let w = decimal(parts[parts.count - 1]), w >= 1, w < UInt64(fullWidth) else { throw bad() }
            width = Int(w)
            parts[parts.count - 2].removeLast(2)
            parts.removeLast()
        }
        var n: UInt64 = 0
        let groups = parts[2...]
        for (i, group) in zip(groups.indices, groups) {
            let last = i == groups.endIndex - 1
            let digits = last ? Substring(group) : (group.hasPrefix("x") ? group.dropFirst() : "")
            guard digits.utf8.count == 3, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                  let v = UInt64(digits)
            else { throw bad() }
            let (times, o1) = n.multipliedReportingOverflow(by: 1000)
            let (sum, o2) = times.addingReportingOverflow(v)
            guard !o1, !o2 else { throw bad() }
            n = sum
        }
        let tile: TilePath
        if parts[1] == "entries" {
            tile = .entries(index: n, width: width)
        } else {
            guard let level = decimal(parts[1]), level <= UInt64(maxLevel) else { throw bad() }
            tile = .hashes(level: Int(level), index: n, width: width)
        }
        // Leading "x000" groups and the like parse but are not canonical.
        guard tile.path == path else { throw bad() }
        return tile
    }

    /// A decimal without sign or leading zeroes.
    private static func decimal(_ s: String) -> UInt64? {
        guard !s.isEmpty, s.utf8.count <= 19, s.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              s == "0" || !s.hasPrefix("0")
        else { return nil }
        return UInt64(s)
    }

    // MARK: The tiles of a tree

    /// Number of hashes a tree of `treeSize` leaves has at tree level 8·level.
    static func hashesAtTileLevel(_ level: Int, treeSize: UInt64) -> UInt64 {
        guard (0...maxLevel).contains(level) else { return 0 }
        let shift = height * level
        return shift >= 64 ? 0 : treeSize >> UInt64(shift)
    }

    /// The hash tiles at `level` of the tree of `treeSize` leaves: the full ones, then the partial
    /// one if any.
    public static func hashTiles(level: Int, treeSize: UInt64) -> [TilePath] {
        tiles(count: hashesAtTileLevel(level, treeSize: treeSize)).map { .hashes(level: level, index: $0.index, width: $0.width) }
    }

    /// Every hash tile of the tree of `treeSize` leaves, level 0 first.
    public static func hashTiles(treeSize: UInt64) -> [TilePath] {
        var out: [TilePath] = []
        var level = 0
        while hashesAtTileLevel(level, treeSize: treeSize) > 0 {
            out += hashTiles(level: level, treeSize: treeSize)
            level += 1
        }
        return out
    }

    /// Every entry bundle of the tree of `treeSize` leaves.
    public static func entryBundles(treeSize: UInt64) -> [TilePath] {
        tiles(count: treeSize).map { .entries(index: $0.index, width: $0.width) }
    }

    /// The tile of the tree of `treeSize` leaves at (`level`, `index`), full or partial; nil if
    /// that tree has no such tile. Level -1 stands for the entry bundles.
    public static func tile(level: Int, index: UInt64, treeSize: UInt64) -> TilePath? {
        let count = hashesAtTileLevel(max(level, 0), treeSize: treeSize)
        let full = count >> 8
        let width: Int
        if index < full {
            width = fullWidth
        } else if index == full, count & 0xFF != 0 {
            width = Int(count & 0xFF)
        } else {
            return nil
        }
        return level < 0 ? .entries(index: index, width: width) : .hashes(level: level, index: index, width: width)
    }

    private static func tiles(count: UInt64) -> [(index: UInt64, width: Int)] {
        var out = (0..<(count >> 8)).map { (index: $0, width: fullWidth) }
        if count & 0xFF != 0 { out.append((count >> 8, Int(count & 0xFF))) }
        return out
    }
}

public enum TileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a canonical tile path.
    case malformedPath(String)
    /// A well-formed path that names nothing in the tree served (of `treeSize` leaves).
    case notFound(path: String, treeSize: UInt64)
    /// An entry longer than an entry bundle can carry (65535 bytes).
    case entryTooLong(index: UInt64, length: Int)
    /// Bytes that are not an entry bundle of `count` entries.
    case malformedBundle(String)
    /// Tile data that is not `width` hashes.
    case malformedTile(path: String, length: Int)

    public var description: String {
        switch self {
        case let .malformedPath(p): return "malformed tile path \"\(p)\""
        case let .notFound(p, size): return "\(p) is not a tile of the tree of size \(size)"
        case let .entryTooLong(i, n): return "entry \(i) has \(n) bytes; an entry bundle holds at most 65535"
        case let .malformedBundle(why): return "malformed entry bundle: \(why)"
        case let .malformedTile(p, n): return "tile \(p) has \(n) bytes, want a multiple of 32 matching its width"
        }
    }
}

/// Entry bundles: each entry as a big-endian uint16 length, then its bytes.
public enum EntryBundle {
    public static func encode(_ entries: [Data], firstIndex: UInt64 = 0) throws -> Data {
        var out = Data()
        out.reserveCapacity(entries.reduce(0) { $0 + 2 + $1.count })
        for (i, e) in entries.enumerated() {
            guard e.count <= 0xFFFF else { throw TileError.entryTooLong(index: firstIndex + UInt64(i), length: e.count) }
            out.append(UInt8(e.count >> 8))
            out.append(UInt8(e.count & 0xFF))
            out.append(e)
        }
        return out
    }

    /// The entries of a bundle that must hold exactly `count` of them, with no bytes left over.
    public static func decode(_ bundle: Data, count: Int) throws -> [Data] {
        let b = [UInt8](bundle)
        var out: [Data] = []
        out.reserveCapacity(count)
        var at = 0
        while at < b.count {
            guard out.count < count else { throw TileError.malformedBundle("\(b.count - at) bytes after entry \(count - 1)") }
            guard at + 2 <= b.count else { throw TileError.malformedBundle("truncated length of entry \(out.count)") }
            let n = Int(b[at]) << 8 | Int(b[at + 1])
            at += 2
            guard at + n <= b.count else {
                throw TileError.malformedBundle("entry \(out.count) claims \(n) bytes, \(b.count - at) left")
            }
            out.append(Data(b[at..<at + n]))
            at += n
        }
        guard out.count == count else { throw TileError.malformedBundle("\(out.count) entries, want \(count)") }
        return out
    }
}

/// Serves the tiles of the log in a `LedgerStore` database.
public enum TileServer {
    /// The content of `tile` for the tree of `treeSize` leaves (the latest signed checkpoint's
    /// size; it must not exceed the log's size). Served: a full tile once the tree covers it; a
    /// partial tile with the width this tree size implies, or with the width the size of an
    /// earlier stored checkpoint implies (c2sp.org/tlog-tiles: logs MUST serve the partial tiles
    /// of every tree size they produced a checkpoint for, so a client holding an older checkpoint
    /// can still fetch its tiles). Anything else throws `TileError.notFound`.
    public static func content(_ tile: TilePath, treeSize: UInt64, _ db: Database) throws -> Data {
        let level: Int  // tile level; entry bundles go with level 0
        switch tile {
        case let .hashes(l, _, _): level = l
        case .entries: level = 0
        }
        guard (0...TilePath.maxLevel).contains(level), (1...TilePath.fullWidth).contains(tile.width),
              try exists(tile, level: level, treeSize: treeSize, db)
        else { throw TileError.notFound(path: tile.path, treeSize: treeSize) }
        let first = tile.index << 8
        switch tile {
        case .hashes:
            return try hashTile(level: level, first: first, width: tile.width, db)
        case .entries:
            let rows = try Row.fetchAll(
                db, sql: "SELECT leaf_index, entry FROM ledger_entries WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
                arguments: [Int64(first), Int64(first) + Int64(tile.width)])
            var entries: [Data] = []
            entries.reserveCapacity(rows.count)
            for (i, row) in rows.enumerated() {
                guard row["leaf_index"] as Int64 == Int64(first) + Int64(i) else {
                    throw LedgerStoreError.corrupt("entry \(first + UInt64(i)) is missing")
                }
                entries.append(row["entry"])
            }
            guard entries.count == tile.width else {
                throw LedgerStoreError.corrupt("entry \(first + UInt64(entries.count)) is missing")
            }
            return try EntryBundle.encode(entries, firstIndex: first)
        }
    }
}

extension TileServer {
    /// The hashes at tree level 8·level, n = first ..< first + width, concatenated. One statement:
    /// at level 0 a range scan over the stored hashes between the first and the last (half of
    /// them are leaf hashes), above it an IN list of the `width` stored indexes.
    static func hashTile(level: Int, first: UInt64, width: Int, _ db: Database) throws -> Data {
        let indexes = (0..<UInt64(width)).map { MerkleTree.storedHashIndex(level: TilePath.height * level, n: first + $0) }
        let rows: RowCursor
        if level == 0 {
            rows = try Row.fetchCursor(db, sql: "SELECT stored_index, hash FROM ledger_hashes WHERE stored_index BETWEEN ? AND ? ORDER BY stored_index",
                                       arguments: [Int64(indexes[0]), Int64(indexes[width - 1])])
        } else {
            let sql = "SELECT stored_index, hash FROM ledger_hashes WHERE stored_index IN ("
                + repeatElement("?", count: width).joined(separator: ",") + ") ORDER BY stored_index"
            rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: StatementArguments(indexes.map { Int64($0) }))
        }
        var out = Data(capacity: width * MerkleHash.size)
        var next = 0  // indexes are increasing, and so are the rows
        while next < width, let row = try rows.next() {
            let at: Int64 = row[0]
            if at < Int64(indexes[next]) { continue }  // a hash of a level inside the tile
            guard at == Int64(indexes[next]) else { throw MerkleError.missingHash(index: indexes[next]) }
            let hash: Data = row[1]
            guard hash.count == MerkleHash.size else { throw LedgerStoreError.corrupt("stored hash \(at) is not 32 bytes") }
            out.append(hash)
            next += 1
        }
        guard next == width else { throw MerkleError.missingHash(index: indexes[next]) }
        return out
    }

    /// Whether the tree of `treeSize` leaves, or an earlier checkpointed tree, has `tile`.
    static func exists(_ tile: TilePath, level: Int, treeSize: UInt64, _ db: Database) throws -> Bool {
        let shift = UInt64(TilePath.height * level)
        // Hashes at this tile level, in full tiles and in this tile, that the tile claims.
        let (first, o1) = tile.index.multipliedReportingOverflow(by: UInt64(TilePath.fullWidth))
        let (covered, o2) = first.addingReportingOverflow(UInt64(tile.width))
        guard !o1, !o2, covered <= TilePath.hashesAtTileLevel(level, treeSize: treeSize) else { return false }
        if !tile.isPartial { return true }
        // Partial: the tree sizes s with floor(s / 256^level) == covered are those implying it.
        if covered == TilePath.hashesAtTileLevel(level, treeSize: treeSize) { return true }
        guard covered <= MerkleTree.maxSize >> shift else { return false }
        let low = covered << shift
        let high = min((covered + 1) << shift, treeSize + 1)
        return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM ledger_checkpoints WHERE size >= ? AND size < ?)",
                                 arguments: [Int64(low), Int64(high)]) ?? false
    }
}

/// A `HashReader` over hash tiles: any stored hash of the tree the tiles were cut from, computed
/// from the tile that holds its subtree (Go's tlog.HashFromTile). Holds only the tiles added.
public struct TileHashReader: HashReader, Sendable {
    /// tiles[level][index] = the tile's hashes.
    private var tiles: [Int: [UInt64: [MerkleHash]]] = [:]

    public init() {}

    /// Adds a hash tile's content; throws `TileError.malformedTile` unless it is `width` hashes.
    public mutating func add(_ tile: TilePath, data: Data) throws {
        guard case let .hashes(level, index, width) = tile.hashTile else { return }
        guard data.count == width * MerkleHash.size else { throw TileError.malformedTile(path: tile.path, length: data.count) }
        tiles[level, default: [:]][index] = TileHashReader.hashes(data)
    }

    /// Adds a hash tile's hashes.
    public mutating func add(_ tile: TilePath, hashes: [MerkleHash]) {
        guard case let .hashes(level, index, _) = tile.hashTile else { return }
        tiles[level, default: [:]][index] = hashes
    }

    /// Forgets a tile.
    public mutating func remove(_ tile: TilePath) {
        guard case let .hashes(level, index, _) = tile.hashTile else { return }
        tiles[level]?[index] = nil
    }

    /// The hashes held for the tile at (level, index), if any.
    public func hashes(level: Int, index: UInt64) -> [MerkleHash]? { tiles[level]?[index] }

    /// The hash at tree level `treeLevel`, index `n`: the root of its 2^(treeLevel mod 8) hashes
    /// in the tile at level treeLevel / 8.
    public func hash(treeLevel: Int, n: UInt64) throws -> MerkleHash {
        let level = treeLevel / TilePath.height
        let within = treeLevel % TilePath.height
        let first = n << UInt64(within)
        let index = first >> 8
        let start = Int(first & 0xFF)
        let count = 1 << within
        guard let t = tiles[level]?[index], start + count <= t.count else {
            throw MerkleError.missingHash(index: MerkleTree.storedHashIndex(level: treeLevel, n: n))
        }
        return TileHashReader.subtreeHash(t[start..<start + count])
    }

    public func readHashes(_ indexes: [UInt64]) throws -> [MerkleHash] {
        try indexes.map { i in
            let (level, n) = MerkleTree.splitStoredHashIndex(i)
            return try hash(treeLevel: level, n: n)
        }
    }

    /// The root of a perfect subtree whose leaves (2^k of them) are `hashes`.
    public static func subtreeHash(_ hashes: ArraySlice<MerkleHash>) -> MerkleHash {
        var level = Array(hashes)
        while level.count > 1 {
            level = stride(from: 0, to: level.count, by: 2).map { RFC6962.nodeHash(level[$0], level[$0 + 1]) }
        }
        return level[0]
    }

    /// Splits tile data into hashes (data.count must be a multiple of 32).
    public static func hashes(_ data: Data) -> [MerkleHash] {
        let b = [UInt8](data)
        return stride(from: 0, to: b.count - b.count % MerkleHash.size, by: MerkleHash.size).map { MerkleHash(bytes: b[$0..<$0 + MerkleHash.size])! }
    }
}
