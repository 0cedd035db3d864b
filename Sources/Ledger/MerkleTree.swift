import Foundation

// Tree math for an append-only RFC 6962 / RFC 9162 Merkle log whose hashes are kept in one dense,
// write-once sequence, in the manner of golang.org/x/mod/sumdb/tlog (Crosby and Wallach,
// "Efficient Data Structures for Tamper-Evident Logging", section 3.3).
//
// Coordinates: the hash at (level L, n) is the root of the perfect subtree over leaves
// [n * 2^L, (n + 1) * 2^L). Level 0 holds the leaf hashes. Appending leaf k stores its leaf hash
// and then, for each subtree that leaf completes, that subtree's root, lowest level first: leaf k
// completes one subtree for each trailing 1 bit of k.

/// Reads stored hashes by their linear stored-hash index (see `MerkleTree.storedHashIndex`).
public protocol HashReader {
    /// The hashes at `indexes`, in the same order; throws if any is missing.
    func readHashes(_ indexes: [UInt64]) throws -> [MerkleHash]
}

/// A `HashReader` made of a closure.
public struct HashReaderFunc: HashReader {
    let body: ([UInt64]) throws -> [MerkleHash]
    public init(_ body: @escaping ([UInt64]) throws -> [MerkleHash]) { self.body = body }
    public func readHashes(_ indexes: [UInt64]) throws -> [MerkleHash] { try body(indexes) }
}

/// A Merkle log kept in memory: the stored hashes in stored-hash index order.
public struct MemoryHashStore: HashReader, Sendable {
    public private(set) var hashes: [MerkleHash] = []
    public private(set) var size: UInt64 = 0

    public init() {}

    /// Appends one entry; returns its leaf index.
    @discardableResult
    public mutating func append(_ entry: some DataProtocol) throws -> UInt64 {
        try append(leafHash: RFC6962.leafHash(entry))
    }

    @discardableResult
    public mutating func append(leafHash: MerkleHash) throws -> UInt64 {
        hashes += try MerkleTree.storedHashes(n: size, leafHash: leafHash, reader: self)
        size += 1
        return size - 1
    }

    public func readHashes(_ indexes: [UInt64]) throws -> [MerkleHash] {
        try indexes.map { i in
            guard i < UInt64(hashes.count) else { throw MerkleError.missingHash(index: i) }
            return hashes[Int(i)]
        }
    }
}

/// Everything that can go wrong with tree math and proofs. A proof that does not verify is
/// always one of these errors, never a crash.
public enum MerkleError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A leaf index at or beyond the tree size.
    case indexOutOfRange(index: UInt64, size: UInt64)
    /// Tree sizes that admit no proof (size1 = 0, size1 > size2, beyond `MerkleTree.maxSize`).
    case invalidSizes(size1: UInt64, size2: UInt64, reason: String)
    /// A proof with the wrong number of hashes for its index and sizes.
    case wrongProofSize(got: Int, want: Int)
    /// A hash that is not 32 bytes long.
    case malformedHash(length: Int)
    /// The proof is well-formed but leads to another root: `expected` is the root given to the
    /// verifier, `calculated` the root the proof computes.
    case rootMismatch(expected: [UInt8], calculated: [UInt8])
    /// A `HashReader` did not have a hash the tree needs.
    case missingHash(index: UInt64)
    /// A `HashReader` answered with the wrong number of hashes.
    case readerCount(got: Int, want: Int)

    public var description: String {
        switch self {
        case let .indexOutOfRange(index, size): return "leaf index \(index) is not below tree size \(size)"
        case let .invalidSizes(s1, s2, reason): return "tree sizes \(s1) and \(s2): \(reason)"
        case let .wrongProofSize(got, want): return "proof has \(got) hashes, want \(want)"
        case let .malformedHash(length): return "hash has \(length) bytes, want 32"
        case let .rootMismatch(expected, calculated):
            return "calculated root \(Hex.encode(calculated)) does not match expected root \(Hex.encode(expected))"
        case let .missingHash(index): return "stored hash \(index) is missing"
        case let .readerCount(got, want): return "hash reader returned \(got) hashes, want \(want)"
        }
    }
}

public enum MerkleTree {
    /// The largest tree size this code stores or proves (so stored-hash indexes fit in SQLite's Int64).
    public static let maxSize: UInt64 = 1 << 62

    // MARK: Stored-hash indexing

    /// Position of hash (level, n) in the dense stored-hash sequence.
    ///
    /// Leaf k's hash comes after the hashes stored for leaves 0..<k, which number
    /// `storedHashCount(k)` = 2k - popcount(k); the node (L, n) is stored L places after the leaf
    /// that completes it, k = (n + 1) * 2^L - 1. Requires (n + 1) * 2^L <= `maxSize`.
    public static func storedHashIndex(level: Int, n: UInt64) -> UInt64 {
        let k = (n + 1) << UInt64(level) - 1
        return storedHashCount(k) + UInt64(level)
    }

    /// Inverse of `storedHashIndex`: the (level, n) stored at `index`. Requires index < 2^63.
    public static func splitStoredHashIndex(_ index: UInt64) -> (level: Int, n: UInt64) {
        // storedHashCount(k) = 2k - popcount(k) is strictly increasing; find the last leaf k whose
        // leaf hash is stored at or before `index`. It is at least index/2.
        var k = index / 2
        while storedHashCount(k + 1) <= index { k += 1 }
        let level = Int(index - storedHashCount(k))
        return (level, k >> UInt64(level))
    }

    /// Number of hashes stored for a tree of `size` leaves: 2 * size - popcount(size).
    /// (Each leaf k adds 1 + (trailing 1 bits of k); summed over k < size that is 2 * size - popcount(size).)
    /// Requires size < 2^63.
    public static func storedHashCount(_ size: UInt64) -> UInt64 {
        2 * size - UInt64(size.nonzeroBitCount)
    }

    /// The hashes to store when appending leaf `n` whose entry is `data`, in order, starting at
    /// stored index `storedHashIndex(level: 0, n: n)`: its leaf hash, then the root of every
    /// subtree it completes. Reads the left siblings of those subtrees from `reader`.
    public static func storedHashes(n: UInt64, data: some DataProtocol, reader: some HashReader) throws -> [MerkleHash] {
        try storedHashes(n: n, leafHash: RFC6962.leafHash(data), reader: reader)
    }

    /// Like `storedHashes(n:data:reader:)` with the leaf hash already computed.
    public static func storedHashes(n: UInt64, leafHash: MerkleHash, reader: some HashReader) throws -> [MerkleHash] {
        guard n < maxSize else { throw MerkleError.invalidSizes(size1: n, size2: n, reason: "beyond maximum size") }
        // Leaf n completes the subtree at level L+1 for each of its trailing 1 bits; the left
        // half of that subtree is the node (L, (n >> L) - 1).
        let completed = (n + 1).trailingZeroBitCount
        let siblings = (0..<completed).map { level in storedHashIndex(level: level, n: (n >> UInt64(level)) - 1) }
        let left = try read(siblings, reader)
        var hashes = [leafHash]
        var h = leafHash
        for level in 0..<completed {
            h = RFC6962.nodeHash(left[level], h)
            hashes.append(h)
        }
        return hashes
    }

    // MARK: Tree hashes and proofs (RFC 6962 section 2.1)

    /// MTH(D[0:size]), the root of the tree of the first `size` leaves.
    public static func treeHash(size: UInt64, reader: some HashReader) throws -> MerkleHash {
        guard size <= maxSize else { throw MerkleError.invalidSizes(size1: size, size2: size, reason: "beyond maximum size") }
        if size == 0 { return RFC6962.emptyRoot }
        return try subtreeHashes([(UInt64(0), size)], reader)[0]
    }

    /// PATH(index, D[0:size]) (RFC 6962 section 2.1.1, RFC 9162 section 2.1.3.1): the audit path
    /// for leaf `index` in the tree of `size` leaves, from the leaf's sibling up to the root's child.
    public static func inclusionProof(index: UInt64, size: UInt64, reader: some HashReader) throws -> [MerkleHash] {
        guard size <= maxSize else { throw MerkleError.invalidSizes(size1: size, size2: size, reason: "beyond maximum size") }
        guard index < size else { throw MerkleError.indexOutOfRange(index: index, size: size) }
        // Walk from the root towards the leaf; each step records the subtree not taken.
        var ranges: [(UInt64, UInt64)] = []
        var (lo, hi) = (UInt64(0), size)
        while hi - lo > 1 {
            let k = largestPowerOfTwoBelow(hi - lo)
            if index < lo + k {
                ranges.append((lo + k, hi)); hi = lo + k
            } else {
                ranges.append((lo, lo + k)); lo += k
            }
        }
        return try subtreeHashes(ranges.reversed(), reader)
    }

    /// PROOF(size1, D[0:size2]) (RFC 6962 section 2.1.2, RFC 9162 section 2.1.4.1): the
    /// consistency proof from the tree of `size1` leaves to the tree of `size2` leaves.
    /// Requires 0 < size1 <= size2; the proof between equal sizes is empty.
    public static func consistencyProof(from size1: UInt64, to size2: UInt64, reader: some HashReader) throws -> [MerkleHash] {
        try checkConsistencySizes(size1, size2)
        // SUBPROOF(m, D[lo:hi], b), unrolled; `complete` is b: whether D[lo:hi] is still the
        // whole old tree, whose root the verifier already has.
        var ranges: [(UInt64, UInt64)] = []
        var (lo, hi, complete) = (UInt64(0), size2, true)
        while size1 != hi {
            let k = largestPowerOfTwoBelow(hi - lo)
            if size1 <= lo + k {
                ranges.append((lo + k, hi)); hi = lo + k
            } else {
                ranges.append((lo, lo + k)); lo += k; complete = false
            }
        }
        if !complete { ranges.append((lo, hi)) }
        return try subtreeHashes(ranges.reversed(), reader)
    }

    /// The largest power of two strictly less than n (n >= 2): the split point k of RFC 6962 2.1.
    static func largestPowerOfTwoBelow(_ n: UInt64) -> UInt64 {
        1 << UInt64(63 - (n - 1).leadingZeroBitCount)
    }

    /// The roots of the subtrees D[lo:hi] (lo aligned as in RFC 6962's recursion), with one read.
    /// D[lo:hi] splits into perfect subtrees of decreasing size, one per set bit of hi - lo; its
    /// root is those roots folded from the right: node(p0, node(p1, ... node(pj-1, pj))).
    private static func subtreeHashes(_ ranges: some Collection<(UInt64, UInt64)>, _ reader: some HashReader) throws -> [MerkleHash] {
        var indexes: [UInt64] = []
        var counts: [Int] = []
        for (lo, hi) in ranges {
            var start = lo
            var count = 0
            for level in stride(from: 63, through: 0, by: -1) where (hi - lo) >> UInt64(level) & 1 == 1 {
                indexes.append(storedHashIndex(level: level, n: start >> UInt64(level)))
                start += 1 << UInt64(level)
                count += 1
            }
            counts.append(count)
        }
        let hashes = try read(indexes, reader)
        var out: [MerkleHash] = []
        var next = 0
        for count in counts {
            let parts = hashes[next..<next + count]
            next += count
            out.append(parts.dropLast().reversed().reduce(parts.last!) { right, left in RFC6962.nodeHash(left, right) })
        }
        return out
    }

    private static func read(_ indexes: [UInt64], _ reader: some HashReader) throws -> [MerkleHash] {
        if indexes.isEmpty { return [] }
        let hashes = try reader.readHashes(indexes)
        guard hashes.count == indexes.count else { throw MerkleError.readerCount(got: hashes.count, want: indexes.count) }
        return hashes
    }

    static func checkConsistencySizes(_ size1: UInt64, _ size2: UInt64) throws {
        if size1 == 0 {
            throw MerkleError.invalidSizes(size1: size1, size2: size2, reason: "consistency with the empty tree is meaningless")
        }
        if size1 > size2 { throw MerkleError.invalidSizes(size1: size1, size2: size2, reason: "size1 is larger than size2") }
        if size2 > maxSize { throw MerkleError.invalidSizes(size1: size1, size2: size2, reason: "beyond maximum size") }
    }
}

extension MerkleTree {
    /// RFC 6962 section 2.1 MTH over entries held in memory (the empty tree's hash for none).
    /// For small lists such as a study's instance hashes; the log itself uses stored hashes.
    public static func rootHash(leaves: [Data]) -> MerkleHash {
        guard !leaves.isEmpty else { return RFC6962.emptyRoot }
        var level = leaves.map { RFC6962.leafHash($0) }
        // Pairing left to right and carrying an odd last node up unchanged gives exactly MTH's
        // split at the largest power of two below n.
        while level.count > 1 {
            var next: [MerkleHash] = []
            next.reserveCapacity((level.count + 1) / 2)
            var i = 0
            while i + 1 < level.count {
                next.append(RFC6962.nodeHash(level[i], level[i + 1]))
                i += 2
            }
            if i < level.count { next.append(level[i]) }
            level = next
        }
        return level[0]
    }
}
