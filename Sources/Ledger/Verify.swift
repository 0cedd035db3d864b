// Proof verification exactly as RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency)
// describe it, after checking the proof has the length its index and sizes imply, so that a
// wrong-length proof is reported as such. A failed proof throws a `MerkleError`.

extension MerkleTree {
    /// Number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves:
    /// the levels below the point where the paths to `index` and `size - 1` part ("inner"),
    /// plus one left sibling for each 1 bit of `index` above it ("border").
    public static func inclusionProofSize(index: UInt64, size: UInt64) -> Int {
        let inner = 64 - (index ^ (size - 1)).leadingZeroBitCount
        return inner + (index >> UInt64(inner)).nonzeroBitCount
    }

    /// Number of hashes in the consistency proof from `size1` to `size2` (0 < size1 < size2):
    /// the inclusion proof of leaf size1 - 1 in the tree of size2, less the levels below the
    /// largest perfect subtree ending at size1 (its root stands in for them), plus that root
    /// unless size1 is a power of two (then the verifier's first root is that root).
    public static func consistencyProofSize(size1: UInt64, size2: UInt64) -> Int {
        if size1 == size2 { return 0 }
        let shift = size1.trailingZeroBitCount
        let seed = size1 == 1 << UInt64(shift) ? 0 : 1
        return seed + inclusionProofSize(index: size1 - 1, size: size2) - shift
    }

    /// The root that an inclusion proof of `leafHash` at `index` implies for a tree of `size`
    /// (RFC 9162 section 2.1.3.2, steps 1 to 4).
    public static func rootFromInclusionProof(index: UInt64, size: UInt64, leafHash: MerkleHash, proof: [MerkleHash]) throws -> MerkleHash {
        // 1. leaf_index must be below tree_size.
        guard index < size else { throw MerkleError.indexOutOfRange(index: index, size: size) }
        let want = inclusionProofSize(index: index, size: size)
        guard proof.count == want else { throw MerkleError.wrongProofSize(got: proof.count, want: want) }
        // 2. fn = leaf_index, sn = tree_size - 1.  3. r = hash.
        var (fn, sn, r) = (index, size - 1, leafHash)
        // 4. For each p in inclusion_path:
        for p in proof {
            // a. sn = 0 means the path is longer than the tree is high.
            if sn == 0 { throw MerkleError.wrongProofSize(got: proof.count, want: want) }
            // b. p is a left sibling if fn is odd or if fn is the last node of its level.
            if fn & 1 == 1 || fn == sn {
                r = RFC6962.nodeHash(p, r)  // SHA-256(0x01 || p || r)
                // ii. climb past levels where the node has no right sibling.
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                r = RFC6962.nodeHash(r, p)  // SHA-256(0x01 || r || p)
            }
            // c.
            fn >>= 1; sn >>= 1
        }
        // 5. (first half) sn must have reached 0.
        guard sn == 0 else { throw MerkleError.wrongProofSize(got: proof.count, want: want) }
        return r
    }

    /// Verifies that `proof` proves `leafHash` is leaf `index` of the tree of `size` leaves whose
    /// root is `root` (RFC 9162 section 2.1.3.2). Throws `MerkleError.rootMismatch` with both
    /// roots if the proof computes another root.
    public static func verifyInclusion(index: UInt64, size: UInt64, leafHash: MerkleHash, proof: [MerkleHash], root: MerkleHash) throws {
        let r = try rootFromInclusionProof(index: index, size: size, leafHash: leafHash, proof: proof)
        guard r == root else { throw MerkleError.rootMismatch(expected: root.bytes, calculated: r.bytes) }
    }

    /// Verifies that `proof` proves the tree of `size1` leaves with root `root1` is a prefix of the
    /// tree of `size2` leaves with root `root2` (RFC 9162 section 2.1.4.2). Requires
    /// 0 < size1 <= size2; for size1 == size2 the proof must be empty and the roots equal.
    public static func verifyConsistency(size1: UInt64, size2: UInt64, proof: [MerkleHash], root1: MerkleHash, root2: MerkleHash) throws {
        try verifyConsistency(size1: size1, size2: size2, proof: proof, root1: root1, root2Bytes: root2.bytes)
    }

    private static func verifyConsistency(size1: UInt64, size2: UInt64, proof: [MerkleHash], root1: MerkleHash, root2Bytes: [UInt8]) throws {
        if size1 == 0 || size1 > size2 {
            throw MerkleError.invalidSizes(size1: size1, size2: size2, reason: size1 == 0
                ? "consistency with the empty tree is meaningless" : "size1 is larger than size2")
        }
        let want = consistencyProofSize(size1: size1, size2: size2)
        guard proof.count == want else { throw MerkleError.wrongProofSize(got: proof.count, want: want) }
        if size1 == size2 {
            guard root1.bytes == root2Bytes else { throw MerkleError.rootMismatch(expected: root2Bytes, calculated: root1.bytes) }
            return
        }
        // 1. An empty path fails (cannot happen here: want >= 1 when size1 < size2).
        // 2. If first is an exact power of 2, prepend first_hash to the path.
        let path = size1 & (size1 - 1) == 0 ? [root1] + proof : proof
        // 3. fn = first - 1, sn = second - 1.
        var (fn, sn) = (size1 - 1, size2 - 1)
        // 4. Skip the levels below the largest perfect subtree ending at the old tree's last leaf.
        while fn & 1 == 1 { fn >>= 1; sn >>= 1 }
        // 5. fr = sr = the first value in the path.
        var (fr, sr) = (path[0], path[0])
        // 6. For each subsequent value c:
        for c in path.dropFirst() {
            // a.
            if sn == 0 { throw MerkleError.wrongProofSize(got: proof.count, want: want) }
            // b. A left sibling is in both trees; a right one only in the new tree.
            if fn & 1 == 1 || fn == sn {
                fr = RFC6962.nodeHash(c, fr)  // SHA-256(0x01 || c || fr)
                sr = RFC6962.nodeHash(c, sr)  // SHA-256(0x01 || c || sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                sr = RFC6962.nodeHash(sr, c)  // SHA-256(0x01 || sr || c)
            }
            // c.
            fn >>= 1; sn >>= 1
        }
        // 7. fr must equal first_hash, sr second_hash, and sn must be 0.
        guard sn == 0 else { throw MerkleError.wrongProofSize(got: proof.count, want: want) }
        guard fr == root1 else { throw MerkleError.rootMismatch(expected: root1.bytes, calculated: fr.bytes) }
        guard sr.bytes == root2Bytes else { throw MerkleError.rootMismatch(expected: root2Bytes, calculated: sr.bytes) }
    }

    // MARK: Untrusted byte input

    /// `verifyInclusion` for hashes as they arrive off the wire: the leaf hash and every proof
    /// hash must be 32 bytes (else `MerkleError.malformedHash`); a root of another length can
    /// only mismatch.
    public static func verifyInclusion(index: UInt64, size: UInt64, leafHash: [UInt8], proof: [[UInt8]], root: [UInt8]) throws {
        let r = try rootFromInclusionProof(index: index, size: size, leafHash: hash(leafHash), proof: proof.map(hash))
        guard r.bytes == root else { throw MerkleError.rootMismatch(expected: root, calculated: r.bytes) }
    }

    /// `verifyConsistency` for hashes as they arrive off the wire: proof hashes must be 32 bytes,
    /// and so must root1 whenever it is hashed (size1 < size2). Between equal sizes no hashing
    /// takes place and the two roots are only compared byte for byte.
    public static func verifyConsistency(size1: UInt64, size2: UInt64, proof: [[UInt8]], root1: [UInt8], root2: [UInt8]) throws {
        let proof = try proof.map(hash)
        if size1 == size2 && size1 > 0 {
            guard proof.isEmpty else { throw MerkleError.wrongProofSize(got: proof.count, want: 0) }
            guard root1 == root2 else { throw MerkleError.rootMismatch(expected: root2, calculated: root1) }
            return
        }
        try verifyConsistency(size1: size1, size2: size2, proof: proof, root1: hash(root1), root2Bytes: root2)
    }

    private static func hash(_ bytes: [UInt8]) throws -> MerkleHash {
        guard let h = MerkleHash(bytes: bytes) else { throw MerkleError.malformedHash(length: bytes.count) }
        return h
    }
}
