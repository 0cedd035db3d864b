// Verifying a whole tiled log (c2sp.org/tlog-tiles) from the outside, trusting nothing but the
// log's verifier key: the signed checkpoint, every hash tile, every entry bundle.
//
//   1. fetch "checkpoint", open the signed note with the key, parse the checkpoint;
//   2. level 0: fetch every hash tile and its entry bundle; each entry's leaf hash
//      SHA-256(0x00 ‖ entry) must be the tile's hash at its position;
//   3. level L ≥ 1: each hash in a tile must be the root of the full tile below it
//      (hash i of tile N covers tile N·256 + i of level L − 1);
//   4. the root computed from the tiles must be the checkpoint's root;
//   5. with a previous checkpoint: the root of the first previous.size entries, computed from the
//      same tiles, must be the previous root (and the RFC 6962 consistency proof cut from the
//      tiles must verify between the two checkpoints).
//
// Steps 2 and 3 tie every hash of every tile to a hash one level up, and step 4 ties the top to
// the signed root, so every tile and every entry is authenticated. Memory is one 32-byte hash per
// full level-0 tile plus the tiles above level 0 (1/256 of the tree's hashes).

import Foundation

/// What `RemoteLogVerifier.verify` checked.
public struct RemoteLogReport: Sendable {
    /// The verified checkpoint.
    public let checkpoint: Checkpoint
    /// The signed note as fetched.
    public let signedNote: String
    /// Signatures by the verifier key (verified).
    public let signatures: [NoteSignature]
    /// Hash tiles fetched and verified (all levels).
    public let hashTiles: Int
    /// Entry bundles fetched and verified.
    public let entryBundles: Int
    /// Entries whose leaf hashes were recomputed (the tree size).
    public let entries: UInt64
    /// Bytes fetched, checkpoint included.
    public let bytesFetched: Int
    /// The previous checkpoint the log was found consistent with, if one was given.
    public let consistentWith: Checkpoint?
}

/// Why a remote log did not verify. Each case names what did not match.
public enum RemoteLogError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `fetch` threw for this path.
    case fetchFailed(path: String, reason: String)
    /// The checkpoint note did not open with the verifier key.
    case note(NoteError)
    /// The note text is not a checkpoint.
    case checkpoint(CheckpointError)
    /// The checkpoint is for another log.
    case originMismatch(expected: String, got: String)
    /// A hash tile is not `width` hashes long.
    case tileLength(tile: String, got: Int, want: Int)
    /// An entry bundle that does not parse as `width` length-prefixed entries.
    case malformedBundle(bundle: String, reason: String)
    /// Entry `index` does not hash to the leaf hash in its level-0 tile.
    case entryMismatch(index: UInt64, bundle: String, tile: String, entryHash: MerkleHash, tileHash: MerkleHash)
    /// Hash `position` of `tile` is not the root of the full tile `childTile` below it.
    case tileMismatch(tile: String, position: Int, tileHash: MerkleHash, childTile: String, childRoot: MerkleHash)
    /// The root computed from `tiles` is not the checkpoint's root.
    case rootMismatch(size: UInt64, checkpointRoot: MerkleHash, tilesRoot: MerkleHash, tiles: [String])
    /// The previous checkpoint is for another log.
    case previousOriginMismatch(previous: String, current: String)
    /// The log is now smaller than the previous checkpoint.
    case treeShrank(previousSize: UInt64, size: UInt64)
    /// The log's first `previousSize` entries do not have the previous checkpoint's root.
    case inconsistent(previousSize: UInt64, previousRoot: MerkleHash, tilesRoot: MerkleHash)
    /// The consistency proof cut from the tiles did not verify (cannot happen when the roots
    /// matched; kept so that no failure goes unnamed).
    case consistencyProof(previousSize: UInt64, size: UInt64, error: MerkleError)

    public var description: String {
        switch self {
        case let .fetchFailed(path, reason): return "fetching \(path) failed: \(reason)"
        case let .note(e): return "checkpoint: \(e)"
        case let .checkpoint(e): return "checkpoint: \(e)"
        case let .originMismatch(expected, got): return "checkpoint origin is \"\(got)\", want \"\(expected)\""
        case let .tileLength(tile, got, want): return "tile \(tile) has \(got) bytes, want \(want)"
        case let .malformedBundle(bundle, reason): return "entry bundle \(bundle): \(reason)"
        case let .entryMismatch(index, bundle, tile, entryHash, tileHash):
            return "entry \(index) in \(bundle) hashes to \(entryHash.hex), but \(tile) has \(tileHash.hex)"
        case let .tileMismatch(tile, position, tileHash, child, childRoot):
            return "hash \(position) of \(tile) is \(tileHash.hex), but the root of \(child) is \(childRoot.hex)"
        case let .rootMismatch(size, cp, tiles, paths):
            return "root of size \(size) from tiles \(paths.joined(separator: ", ")) is \(tiles.hex), but the checkpoint says \(cp.hex)"
        case let .previousOriginMismatch(previous, current):
            return "previous checkpoint is of \"\(previous)\", this one of \"\(current)\""
        case let .treeShrank(previous, size): return "tree size \(size) is smaller than the previous checkpoint's \(previous)"
        case let .inconsistent(size, previous, tiles):
            return "root of the first \(size) entries is \(tiles.hex), but the previous checkpoint says \(previous.hex)"
        case let .consistencyProof(s1, s2, e): return "consistency proof from \(s1) to \(s2): \(e)"
        }
    }
}

/// Verifies a tiled log served at some prefix, given only its verifier key and a way to fetch
/// paths ("checkpoint", "tile/0/000", "tile/entries/x001/234.p/7", …) under that prefix.
public struct RemoteLogVerifier {
    public let verifier: NoteVerifier
    /// The origin the checkpoint must carry.
    public let origin: String
    let fetch: (String) throws -> Data

    /// `verifierKey` is a note verifier key string; `origin` defaults to the key's name (as in
    /// this project, where the origin is the node name and the key's name). `fetch` returns the
    /// bytes at a path relative to the log's prefix or throws.
    public init(verifierKey: String, origin: String? = nil, fetch: @escaping (String) throws -> Data) throws {
        self.verifier = try NoteVerifier(verifierKey: verifierKey)
        self.origin = origin ?? verifier.name
        self.fetch = fetch
    }

    /// Fetches and verifies the whole log: checkpoint, every tile, every entry; with `previous`,
    /// checks the log still holds that checkpoint's tree as its prefix. `onEntry` sees each entry
    /// (index, bytes) once its leaf hash matched its tile; the tiles are authenticated only when
    /// `verify` returns, so treat entries as provisional until then.
    public func verify(previous: Checkpoint? = nil, onEntry: ((UInt64, Data) throws -> Void)? = nil) throws -> RemoteLogReport {
        var bytes = 0
        func get(_ path: String) throws -> Data {
            let data: Data
            do { data = try fetch(path) } catch { throw RemoteLogError.fetchFailed(path: path, reason: "\(error)") }
            bytes += data.count
            return data
        }

        // 1. The checkpoint.
        let noteData = try get("checkpoint")
        let opened: OpenedNote
        do { opened = try SignedNote.open(data: noteData, verifiers: [verifier]) } catch let e as NoteError { throw RemoteLogError.note(e) }
        let checkpoint: Checkpoint
        do { checkpoint = try Checkpoint.parse(opened.text) } catch let e as CheckpointError { throw RemoteLogError.checkpoint(e) }
        guard checkpoint.origin == origin else { throw RemoteLogError.originMismatch(expected: origin, got: checkpoint.origin) }
        let size = checkpoint.size
        if let previous {
            guard previous.origin == checkpoint.origin else {
                throw RemoteLogError.previousOriginMismatch(previous: previous.origin, current: checkpoint.origin)
            }
            guard previous.size <= size else { throw RemoteLogError.treeShrank(previousSize: previous.size, size: size) }
        }
        guard size <= MerkleTree.maxSize else {
            throw RemoteLogError.checkpoint(.malformed("tree size \(size) is beyond \(MerkleTree.maxSize)"))
        }

        // Level-0 tiles kept for the roots at `size` and at the previous size: those holding
        // hashes below tree level 8 that the roots (and the consistency proof) are made of.
        var keep: Set<UInt64> = []
        for s in [size, previous?.size ?? 0] where s & 0xFF != 0 { keep.insert(s >> 8) }

        // 2 and 3. The tiles, level by level.
        var reader = TileHashReader()
        var hashTiles = 0
        var bundles = 0
        var below: [MerkleHash] = []  // roots of the full tiles of the level below, by index
        var level = 0
        while TilePath.hashesAtTileLevel(level, treeSize: size) > 0 {
            var roots: [MerkleHash] = []
            for tile in TilePath.hashTiles(level: level, treeSize: size) {
                let data = try get(tile.path)
                hashTiles += 1
                guard data.count == tile.width * MerkleHash.size else {
                    throw RemoteLogError.tileLength(tile: tile.path, got: data.count, want: tile.width * MerkleHash.size)
                }
                let hashes = TileHashReader.hashes(data)
                let first = tile.index << 8
                if level == 0 {
                    let bundle = TilePath.entries(index: tile.index, width: tile.width)
                    let raw = try get(bundle.path)
                    bundles += 1
                    let entries: [Data]
                    do { entries = try EntryBundle.decode(raw, count: tile.width) } catch let e as TileError {
                        let reason: String
                        if case let .malformedBundle(why) = e { reason = why } else { reason = "\(e)" }
                        throw RemoteLogError.malformedBundle(bundle: bundle.path, reason: reason)
                    }
                    for (i, entry) in entries.enumerated() {
                        let leaf = RFC6962.leafHash(entry)
                        guard leaf == hashes[i] else {
                            throw RemoteLogError.entryMismatch(index: first + UInt64(i), bundle: bundle.path, tile: tile.path,
                                                               entryHash: leaf, tileHash: hashes[i])
                        }
                    }
                    if let onEntry {
                        for (i, entry) in entries.enumerated() { try onEntry(first + UInt64(i), entry) }
                    }
                } else {
                    for (i, h) in hashes.enumerated() {
                        let child = first + UInt64(i)
                        guard h == below[Int(child)] else {
                            throw RemoteLogError.tileMismatch(tile: tile.path, position: i, tileHash: h,
                                                              childTile: TilePath.hashes(level: level - 1, index: child, width: TilePath.fullWidth).path,
                                                              childRoot: below[Int(child)])
                        }
                    }
                }
                if !tile.isPartial { roots.append(TileHashReader.subtreeHash(hashes[...])) }
                if level > 0 || keep.contains(tile.index) { reader.add(tile, hashes: hashes) }
            }
            below = roots
            level += 1
        }

        // 4. The root.
        let root = try MerkleTree.treeHash(size: size, reader: reader)
        guard root == checkpoint.rootHash else {
            throw RemoteLogError.rootMismatch(size: size, checkpointRoot: checkpoint.rootHash, tilesRoot: root,
                                              tiles: RemoteLogVerifier.rootTiles(size: size).map(\.path))
        }

        // 5. Consistency with the previous checkpoint.
        if let previous {
            let p = previous.size
            let previousRoot = try MerkleTree.treeHash(size: p, reader: reader)
            guard previousRoot == previous.rootHash else {
                throw RemoteLogError.inconsistent(previousSize: p, previousRoot: previous.rootHash, tilesRoot: previousRoot)
            }
            if p > 0 {
                do {
                    let proof = try MerkleTree.consistencyProof(from: p, to: size, reader: reader)
                    try MerkleTree.verifyConsistency(size1: p, size2: size, proof: proof, root1: previous.rootHash, root2: checkpoint.rootHash)
                } catch let e as MerkleError {
                    throw RemoteLogError.consistencyProof(previousSize: p, size: size, error: e)
                }
            }
        }

        return RemoteLogReport(checkpoint: checkpoint, signedNote: String(decoding: noteData, as: UTF8.self),
                               signatures: opened.verified, hashTiles: hashTiles, entryBundles: bundles,
                               entries: size, bytesFetched: bytes, consistentWith: previous)
    }

    /// The tiles whose hashes make the root of the tree of `size` leaves: for each perfect
    /// subtree of the root's decomposition (one per 1 bit of size), the tile that holds it.
    static func rootTiles(size: UInt64) -> [TilePath] {
        var out: [TilePath] = []
        var start: UInt64 = 0
        for treeLevel in stride(from: 63, through: 0, by: -1) where size >> UInt64(treeLevel) & 1 == 1 {
            let level = treeLevel / TilePath.height
            let index = (start >> UInt64(TilePath.height * level)) >> 8
            if let t = TilePath.tile(level: level, index: index, treeSize: size), !out.contains(t) { out.append(t) }
            start += 1 << UInt64(treeLevel)
        }
        return out
    }
}
