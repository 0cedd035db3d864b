import Foundation
import Testing
@testable import Ledger

/// Known answers from transparency-dev/merkle testonly/constants.go: leaf inputs, the node hashes
/// of their 8-leaf tree, and the root of every prefix of it.
enum RFC6962Vectors {
    static let leafInputs: [[UInt8]] = [
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
    ].map { Hex.decode($0)! }

    static let leafHashes = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ]

    static let level1 = [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ]

    static let level2 = [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]

    static let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
}

/// MTH straight from RFC 6962 section 2.1, recursively, as an oracle.
func referenceRoot(_ leaves: ArraySlice<MerkleHash>) -> MerkleHash {
    if leaves.isEmpty { return RFC6962.emptyRoot }
    if leaves.count == 1 { return leaves.first! }
    var k = 1
    while k * 2 < leaves.count { k *= 2 }
    let mid = leaves.startIndex + k
    return RFC6962.nodeHash(referenceRoot(leaves[..<mid]), referenceRoot(leaves[mid...]))
}

@Suite struct HashTests {
    @Test func emptyRootIsSHA256OfNothing() {
        #expect(RFC6962.emptyRoot.hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(RFC6962.emptyRoot.base64 == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
    }

    @Test func leafAndNodeHashesMatchKnownAnswers() {
        let leaves = RFC6962Vectors.leafInputs.map { RFC6962.leafHash($0) }
        #expect(leaves.map(\.hex) == RFC6962Vectors.leafHashes)
        let l1 = stride(from: 0, to: 8, by: 2).map { RFC6962.nodeHash(leaves[$0], leaves[$0 + 1]) }
        #expect(l1.map(\.hex) == RFC6962Vectors.level1)
        let l2 = [RFC6962.nodeHash(l1[0], l1[1]), RFC6962.nodeHash(l1[2], l1[3])]
        #expect(l2.map(\.hex) == RFC6962Vectors.level2)
        #expect(RFC6962.nodeHash(l2[0], l2[1]).hex == RFC6962Vectors.roots[8])
    }

    @Test func treeHashOfEveryPrefixMatchesKnownRoots() throws {
        var store = MemoryHashStore()
        #expect(try MerkleTree.treeHash(size: 0, reader: store).hex == RFC6962Vectors.roots[0])
        for (i, input) in RFC6962Vectors.leafInputs.enumerated() {
            try store.append(input)
            #expect(try MerkleTree.treeHash(size: UInt64(i + 1), reader: store).hex == RFC6962Vectors.roots[i + 1])
        }
        // And again for every earlier size, from the same stored hashes.
        for size in 0...8 {
            #expect(try MerkleTree.treeHash(size: UInt64(size), reader: store).hex == RFC6962Vectors.roots[size])
        }
    }

    @Test func knownProofs() throws {
        var store = MemoryHashStore()
        for input in RFC6962Vectors.leafInputs { try store.append(input) }
        let h = { (s: String) in MerkleHash(hex: s)! }
        // Leaf 0 of 8: sibling leaf 1, then node (1,1), then node (2,1).
        #expect(try MerkleTree.inclusionProof(index: 0, size: 8, reader: store)
            == [h(RFC6962Vectors.leafHashes[1]), h(RFC6962Vectors.level1[1]), h(RFC6962Vectors.level2[1])])
        // Consistency 6 -> 8 and 2 -> 5 (RFC 6962 section 2.1.3's example shapes).
        let p68 = try MerkleTree.consistencyProof(from: 6, to: 8, reader: store)
        #expect(p68 == [h(RFC6962Vectors.level1[2]), h(RFC6962Vectors.level1[3]), h(RFC6962Vectors.level2[0])])
        try MerkleTree.verifyConsistency(size1: 6, size2: 8, proof: p68, root1: h(RFC6962Vectors.roots[6]), root2: h(RFC6962Vectors.roots[8]))
        let p25 = try MerkleTree.consistencyProof(from: 2, to: 5, reader: store)
        #expect(p25 == [h(RFC6962Vectors.level1[1]), h(RFC6962Vectors.leafHashes[4])])
        #expect(throws: MerkleError.self) {
            try MerkleTree.verifyConsistency(size1: 6, size2: 8, proof: p68, root1: h(RFC6962Vectors.roots[5]), root2: h(RFC6962Vectors.roots[8]))
        }
    }

    @Test func encodings() {
        #expect(Base64.encode([]) == "")
        #expect(Base64.encode(Array("f".utf8)) == "Zg==")
        #expect(Base64.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.encode(Array("foo".utf8)) == "Zm9v")
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.decode("Zm9vYg==") == Array("foob".utf8))
        #expect(Base64.decode("Zm9vYmE=") == Array("fooba".utf8))
        for bad in ["Zg", "Zg=", "Zh==", "Zm9=", "Z===", "Zm9v\n", " Zm9v", "Zm=v", "Zm9v====", "Zm-v"] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
        #expect(Hex.decode("00ffAB") == [0, 255, 171])
        #expect(Hex.decode("0") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(MerkleHash(bytes: [UInt8](repeating: 0, count: 31)) == nil)
        #expect(MerkleHash(base64: RFC6962.emptyRoot.base64) == RFC6962.emptyRoot)
        #expect(MerkleHash(hex: RFC6962.emptyRoot.hex.uppercased()) == RFC6962.emptyRoot)
    }

    @Test func hashIsCodableAsBase64() throws {
        let data = try JSONEncoder().encode([RFC6962.emptyRoot])
        #expect(String(decoding: data, as: UTF8.self) == #"["47DEQpj8HBSa+\/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]"#)
        #expect(try JSONDecoder().decode([MerkleHash].self, from: data) == [RFC6962.emptyRoot])
    }
}

@Suite struct TreeMathTests {
    @Test func storedHashIndexMatchesTlogLayout() {
        // tlog's layout: leaf 0 at 0, leaf 1 at 1, node (1,0) at 2, leaf 2 at 3, leaf 3 at 4,
        // node (1,1) at 5, node (2,0) at 6, leaf 4 at 7.
        #expect(MerkleTree.storedHashIndex(level: 0, n: 0) == 0)
        #expect(MerkleTree.storedHashIndex(level: 0, n: 1) == 1)
        #expect(MerkleTree.storedHashIndex(level: 1, n: 0) == 2)
        #expect(MerkleTree.storedHashIndex(level: 0, n: 2) == 3)
        #expect(MerkleTree.storedHashIndex(level: 0, n: 3) == 4)
        #expect(MerkleTree.storedHashIndex(level: 1, n: 1) == 5)
        #expect(MerkleTree.storedHashIndex(level: 2, n: 0) == 6)
        #expect(MerkleTree.storedHashIndex(level: 0, n: 4) == 7)
        #expect((0...9).map { MerkleTree.storedHashCount($0) } == [0, 1, 3, 4, 7, 8, 10, 11, 15, 16])
    }

    @Test func splitIsTheInverseOfStoredHashIndex() {
        var seen = Set<UInt64>()
        for level in 0..<8 {
            for n in UInt64(0)..<300 {
                let i = MerkleTree.storedHashIndex(level: level, n: n)
                #expect(seen.insert(i).inserted)
                let (l, m) = MerkleTree.splitStoredHashIndex(i)
                #expect(l == level && m == n)
            }
        }
        for i in UInt64(0)..<2000 {
            let (l, n) = MerkleTree.splitStoredHashIndex(i)
            #expect(MerkleTree.storedHashIndex(level: l, n: n) == i)
        }
        // Large coordinates, near the maximum size.
        let n = MerkleTree.maxSize / 8 - 1
        let (l, m) = MerkleTree.splitStoredHashIndex(MerkleTree.storedHashIndex(level: 3, n: n))
        #expect(l == 3 && m == n)
    }

    @Test func memoryStoreAgreesWithReferenceForManySizes() throws {
        var store = MemoryHashStore()
        var leaves: [MerkleHash] = []
        for i in 0..<130 {
            let entry = Array("entry \(i)".utf8)
            leaves.append(RFC6962.leafHash(entry))
            try store.append(entry)
            #expect(UInt64(store.hashes.count) == MerkleTree.storedHashCount(store.size))
        }
        for size in 0...130 {
            #expect(try MerkleTree.treeHash(size: UInt64(size), reader: store) == referenceRoot(leaves[..<size]))
        }
        // Every inclusion and consistency proof up to 70 leaves verifies, and has the predicted length.
        for size in UInt64(1)...70 {
            let root = try MerkleTree.treeHash(size: size, reader: store)
            for index in 0..<size {
                let proof = try MerkleTree.inclusionProof(index: index, size: size, reader: store)
                #expect(proof.count == MerkleTree.inclusionProofSize(index: index, size: size))
                try MerkleTree.verifyInclusion(index: index, size: size, leafHash: leaves[Int(index)], proof: proof, root: root)
            }
            for size1 in 1...size {
                let proof = try MerkleTree.consistencyProof(from: size1, to: size, reader: store)
                #expect(proof.count == MerkleTree.consistencyProofSize(size1: size1, size2: size))
                let root1 = try MerkleTree.treeHash(size: size1, reader: store)
                try MerkleTree.verifyConsistency(size1: size1, size2: size, proof: proof, root1: root1, root2: root)
            }
        }
    }

    @Test func badArgumentsThrowNeverTrap() throws {
        var store = MemoryHashStore()
        for i in 0..<5 { try store.append(Array("e\(i)".utf8)) }
        #expect(throws: MerkleError.indexOutOfRange(index: 5, size: 5)) { try MerkleTree.inclusionProof(index: 5, size: 5, reader: store) }
        #expect(throws: MerkleError.self) { try MerkleTree.consistencyProof(from: 0, to: 5, reader: store) }
        #expect(throws: MerkleError.self) { try MerkleTree.consistencyProof(from: 4, to: 3, reader: store) }
        #expect(throws: MerkleError.missingHash(index: 14)) { try MerkleTree.treeHash(size: 8, reader: store) }
        #expect(throws: MerkleError.self) { try MerkleTree.treeHash(size: UInt64.max, reader: store) }
        let leaf = RFC6962.leafHash([UInt8]())
        for (index, size) in [(UInt64.max, UInt64.max), (0, UInt64.max), (UInt64.max - 1, UInt64.max), (3, 2), (0, 0)] {
            #expect(throws: MerkleError.self) {
                try MerkleTree.verifyInclusion(index: index, size: size, leafHash: leaf, proof: [leaf, leaf], root: leaf)
            }
        }
        for (s1, s2) in [(UInt64.max, UInt64.max), (1, UInt64.max), (UInt64.max - 1, UInt64.max), (3, 2), (0, 0), (0, 5)] {
            #expect(throws: MerkleError.self) {
                try MerkleTree.verifyConsistency(size1: s1, size2: s2, proof: [leaf, leaf], root1: leaf, root2: leaf)
            }
        }
        // A reader that answers short is an error.
        let short = HashReaderFunc { _ in [] }
        #expect(throws: MerkleError.readerCount(got: 0, want: 1)) { try MerkleTree.treeHash(size: 1, reader: short) }
    }

    @Test func rootMismatchCarriesBothRoots() throws {
        var store = MemoryHashStore()
        for i in 0..<3 { try store.append(Array("e\(i)".utf8)) }
        let proof = try MerkleTree.inclusionProof(index: 1, size: 3, reader: store)
        let leaf = RFC6962.leafHash(Array("e1".utf8))
        let real = try MerkleTree.treeHash(size: 3, reader: store)
        do {
            try MerkleTree.verifyInclusion(index: 1, size: 3, leafHash: leaf, proof: proof, root: RFC6962.emptyRoot)
            Issue.record("verified against the wrong root")
        } catch let MerkleError.rootMismatch(expected, calculated) {
            #expect(expected == RFC6962.emptyRoot.bytes)
            #expect(calculated == real.bytes)
        }
    }
}

// MARK: - The language-neutral vectors of transparency-dev/merkle (testdata/merkle)

let merkleTestdata = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../testdata/merkle").standardizedFileURL

func vectorFiles(_ kind: String) -> [String] {
    let root = merkleTestdata.appendingPathComponent(kind)
    guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
    return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".json") }.map { "\(kind)/\($0)" }.sorted()
}

struct InclusionProbe: Decodable {
    let leafIdx: UInt64, treeSize: UInt64, root: String, leafHash: String, proof: [String]?, desc: String, wantErr: Bool
}

struct ConsistencyProbe: Decodable {
    let size1: UInt64, size2: UInt64, root1: String, root2: String, proof: [String]?, desc: String, wantErr: Bool
}

/// The vectors' own base64 decoding (Go's StdEncoding), independent of the code under test.
func b64(_ s: String) throws -> [UInt8] {
    try #require(Data(base64Encoded: s).map(Array.init), "bad base64 in vector: \(s)")
}

@Suite struct MerkleVectorTests {
    static let inclusionFiles = vectorFiles("inclusion")
    static let consistencyFiles = vectorFiles("consistency")

    @Test func vectorsArePresent() {
        // All of transparency-dev/merkle's inclusion/ and consistency/ cases.
        #expect(Self.inclusionFiles.count == 98)
        #expect(Self.consistencyFiles.count == 98)
    }

    @Test(arguments: vectorFiles("inclusion"))
    func inclusion(_ file: String) throws {
        let p = try JSONDecoder().decode(InclusionProbe.self, from: Data(contentsOf: merkleTestdata.appendingPathComponent(file)))
        let result = Result {
            try MerkleTree.verifyInclusion(index: p.leafIdx, size: p.treeSize, leafHash: b64(p.leafHash),
                                           proof: (p.proof ?? []).map(b64), root: b64(p.root))
        }
        if p.wantErr {
            #expect(throws: MerkleError.self, "\(file): \(p.desc)") { try result.get() }
        } else {
            #expect(throws: Never.self, "\(file): \(p.desc)") { try result.get() }
        }
    }

    @Test(arguments: vectorFiles("consistency"))
    func consistency(_ file: String) throws {
        let p = try JSONDecoder().decode(ConsistencyProbe.self, from: Data(contentsOf: merkleTestdata.appendingPathComponent(file)))
        let result = Result {
            try MerkleTree.verifyConsistency(size1: p.size1, size2: p.size2, proof: (p.proof ?? []).map(b64),
                                             root1: b64(p.root1), root2: b64(p.root2))
        }
        if p.wantErr {
            #expect(throws: MerkleError.self, "\(file): \(p.desc)") { try result.get() }
        } else {
            #expect(throws: Never.self, "\(file): \(p.desc)") { try result.get() }
        }
    }
}
