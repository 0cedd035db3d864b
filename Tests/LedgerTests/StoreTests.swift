import Foundation
import GRDB
import Testing
@testable import Ledger

func makeLedgerDatabase() throws -> DatabaseQueue {
    let queue = try DatabaseQueue()
    var migrator = DatabaseMigrator()
    LedgerStore.registerMigrations(&migrator)
    try migrator.migrate(queue)
    return queue
}

func entries(_ range: Range<Int>) -> [Data] { range.map { Data("entry \($0)".utf8) } }

@Suite struct StoreTests {
    @Test func emptyLog() throws {
        let db = try makeLedgerDatabase()
        try db.read { db throws in
            #expect(try LedgerStore.treeSize(db) == 0)
            #expect(try LedgerStore.rootHash(db) == RFC6962.emptyRoot)
            #expect(try LedgerStore.entry(at: 0, db) == nil)
            #expect(try LedgerStore.latestCheckpoint(db) == nil)
            #expect(try LedgerStore.verifyIntegrity(db) == 0)
        }
    }

    @Test func knownRootsFromTheStore() throws {
        let db = try makeLedgerDatabase()
        try db.write { db throws in
            for (i, input) in RFC6962Vectors.leafInputs.enumerated() {
                #expect(try LedgerStore.append([Data(input)], in: db) == [UInt64(i)])
            }
        }
        try db.read { db throws in
            for size in 0...8 {
                #expect(try LedgerStore.rootHash(size: UInt64(size), db).hex == RFC6962Vectors.roots[size])
            }
            #expect(try LedgerStore.entry(at: 3, db) == Data(RFC6962Vectors.leafInputs[3]))
            #expect(try LedgerStore.leafHash(at: 3, db)?.hex == RFC6962Vectors.leafHashes[3])
        }
    }

    @Test func everyProofOfAFortyLeafLogVerifies() throws {
        let db = try makeLedgerDatabase()
        let all = entries(0..<40)
        try db.write { db throws in _ = try LedgerStore.append(all, in: db) }
        let leaves = all.map { RFC6962.leafHash($0) }
        try db.read { db throws in
            var roots: [MerkleHash] = []
            for size in 0...40 {
                let root = try LedgerStore.rootHash(size: UInt64(size), db)
                #expect(root == referenceRoot(leaves[..<size]))
                roots.append(root)
            }
            for size in UInt64(1)...40 {
                for index in 0..<size {
                    let proof = try LedgerStore.inclusionProof(index: index, size: size, db)
                    try MerkleTree.verifyInclusion(index: index, size: size, leafHash: leaves[Int(index)], proof: proof, root: roots[Int(size)])
                    // The same proof must not verify another leaf or another size.
                    #expect(throws: MerkleError.self) {
                        try MerkleTree.verifyInclusion(index: index, size: size, leafHash: RFC6962.emptyRoot, proof: proof, root: roots[Int(size)])
                    }
                }
                for size1 in 1...size {
                    let proof = try LedgerStore.consistencyProof(from: size1, to: size, db)
                    try MerkleTree.verifyConsistency(size1: size1, size2: size, proof: proof, root1: roots[Int(size1)], root2: roots[Int(size)])
                    if size1 < size {
                        #expect(throws: MerkleError.self) {
                            try MerkleTree.verifyConsistency(size1: size1, size2: size, proof: proof, root1: roots[Int(size1) - 1], root2: roots[Int(size)])
                        }
                    }
                }
            }
            #expect(try LedgerStore.verifyIntegrity(db) == 40)
        }
    }

    @Test func batchesOfAnySizeGiveTheSameLog() throws {
        let all = entries(0..<75)
        let one = try makeLedgerDatabase()
        for e in all { try one.write { db throws in _ = try LedgerStore.append([e], in: db) } }
        for batches in [[75], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20], [32, 32, 11], [0, 7, 0, 64, 4]] {
            let db = try makeLedgerDatabase()
            var start = 0
            for n in batches {
                let indexes = try db.write { db throws in try LedgerStore.append(Array(all[start..<start + n]), in: db) }
                #expect(indexes == (start..<start + n).map(UInt64.init))
                start += n
            }
            for size in UInt64(0)...75 {
                let a = try one.read { try LedgerStore.rootHash(size: size, $0) }
                let b = try db.read { try LedgerStore.rootHash(size: size, $0) }
                #expect(a == b)
            }
            // Identical stored hash tables.
            let h1 = try one.read { try Row.fetchAll($0, sql: "SELECT * FROM ledger_hashes ORDER BY stored_index") }
            let h2 = try db.read { try Row.fetchAll($0, sql: "SELECT * FROM ledger_hashes ORDER BY stored_index") }
            #expect(h1 == h2)
            #expect(UInt64(h1.count) == MerkleTree.storedHashCount(75))
        }
    }

    @Test func appendRollsBackWithTheCallersTransaction() throws {
        let db = try makeLedgerDatabase()
        try db.write { db throws in _ = try LedgerStore.append(entries(0..<3), in: db) }
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try db.write { db throws in
                _ = try LedgerStore.append(entries(3..<10), in: db)
                throw Boom()
            }
        }
        try db.read { db throws in
            #expect(try LedgerStore.treeSize(db) == 3)
            #expect(try LedgerStore.verifyIntegrity(db) == 3)
        }
        #expect(throws: LedgerStoreError.notInTransaction) {
            try db.writeWithoutTransaction { db throws in _ = try LedgerStore.append(entries(0..<1), in: db) }
        }
    }

    @Test func theLogIsAppendOnly() throws {
        let db = try makeLedgerDatabase()
        try db.write { db throws in _ = try LedgerStore.append(entries(0..<4), in: db) }
        for sql in [
            "UPDATE ledger_entries SET entry = x'00' WHERE leaf_index = 1",
            "DELETE FROM ledger_entries WHERE leaf_index = 3",
            "UPDATE ledger_hashes SET hash = zeroblob(32) WHERE stored_index = 0",
            "DELETE FROM ledger_hashes",
        ] {
            #expect(throws: DatabaseError.self, "\(sql)") { try db.write { try $0.execute(sql: sql) } }
        }
    }

    @Test func integrityCheckFindsTampering() throws {
        let db = try makeLedgerDatabase()
        try db.write { db throws in _ = try LedgerStore.append(entries(0..<9), in: db) }
        // Someone with write access drops the guard and edits an entry.
        try db.write { db throws in
            try db.execute(sql: "DROP TRIGGER ledger_entries_no_update")
            try db.execute(sql: "UPDATE ledger_entries SET entry = ? WHERE leaf_index = 4", arguments: [Data("forged".utf8)])
        }
        _ = try db.read { db throws in
            #expect(throws: LedgerStoreError.corrupt("leaf hash 4 is wrong")) { try LedgerStore.verifyIntegrity(db) }
        }
    }

    @Test func sizesBeyondTheTreeAreRefused() throws {
        let db = try makeLedgerDatabase()
        try db.write { db throws in _ = try LedgerStore.append(entries(0..<5), in: db) }
        try db.read { db throws in
            #expect(throws: LedgerStoreError.beyondTree(requested: 6, treeSize: 5)) { try LedgerStore.rootHash(size: 6, db) }
            #expect(throws: LedgerStoreError.beyondTree(requested: 6, treeSize: 5)) { try LedgerStore.inclusionProof(index: 1, size: 6, db) }
            #expect(throws: MerkleError.indexOutOfRange(index: 5, size: 5)) { try LedgerStore.inclusionProof(index: 5, size: 5, db) }
            #expect(throws: LedgerStoreError.beyondTree(requested: 7, treeSize: 5)) { try LedgerStore.consistencyProof(from: 2, to: 7, db) }
            #expect(throws: MerkleError.self) { try LedgerStore.consistencyProof(from: 0, to: 5, db) }
            #expect(try LedgerStore.entry(at: UInt64.max, db) == nil)
        }
    }
}

@Suite struct CheckpointSignerTests {
    @Test func signsOnlyWhenTheLogGrew() throws {
        let db = try makeLedgerDatabase()
        let signer = try NoteSigner.generate(name: "bridge.example/log")
        let verifier = signer.verifier
        let t0 = Date(timeIntervalSince1970: 1_700_000_000.25)

        // No checkpoint yet: the empty tree is signed.
        let first = try db.write { try CheckpointSigner.signIfGrown(in: $0, signer: signer, origin: "bridge.example/log", now: t0) }
        let opened = try verifier.open(#require(first))
        #expect(try Checkpoint.parse(opened.text) == Checkpoint(origin: "bridge.example/log", size: 0, rootHash: RFC6962.emptyRoot))
        #expect(try db.write { try CheckpointSigner.signIfGrown(in: $0, signer: signer, origin: "bridge.example/log", now: t0) } == nil)

        try db.write { db throws in _ = try LedgerStore.append(entries(0..<7), in: db) }
        let t1 = t0.addingTimeInterval(1)
        let second = try #require(try db.write { try CheckpointSigner.signIfGrown(in: $0, signer: signer, origin: "bridge.example/log", now: t1) })
        let cp = try Checkpoint.parse(verifier.open(second).text)
        #expect(cp.size == 7)
        #expect(cp.rootHash == referenceRoot(entries(0..<7).map { RFC6962.leafHash($0) }[...]))
        #expect(try db.write { try CheckpointSigner.signIfGrown(in: $0, signer: signer, origin: "bridge.example/log", now: t1) } == nil)

        try db.read { db throws in
            let latest = try #require(try LedgerStore.latestCheckpoint(db))
            #expect(latest.size == 7)
            #expect(latest.signedNote == second)
            #expect(latest.time == Date(timeIntervalSince1970: 1_700_000_001.25))
            #expect(try LedgerStore.checkpoints(db).map(\.size) == [0, 7])
            // Consistency from the first checkpoint to the latest.
            #expect(try LedgerStore.verifyIntegrity(db) == 7)
        }
    }

    @Test func refusesACheckpointThatIsNotTheLogsRoot() throws {
        let db = try makeLedgerDatabase()
        let signer = try NoteSigner.generate(name: "bridge.example/log")
        try db.write { db throws in _ = try LedgerStore.append(entries(0..<3), in: db) }
        let wrong = try signer.sign(Checkpoint(origin: "bridge.example/log", size: 3, rootHash: RFC6962.emptyRoot).text())
        #expect(throws: LedgerStoreError.self) { try db.write { try LedgerStore.saveCheckpoint(signedNote: wrong, time: Date(), $0) } }
        let beyond = try signer.sign(Checkpoint(origin: "bridge.example/log", size: 4, rootHash: RFC6962.emptyRoot).text())
        #expect(throws: LedgerStoreError.beyondTree(requested: 4, treeSize: 3)) {
            try db.write { try LedgerStore.saveCheckpoint(signedNote: beyond, time: Date(), $0) }
        }
    }

    @Test func refusesToSignAgainAfterTheLogWasRewritten() throws {
        let db = try makeLedgerDatabase()
        let signer = try NoteSigner.generate(name: "bridge.example/log")
        try db.write { db throws in _ = try LedgerStore.append(entries(0..<4), in: db) }
        _ = try db.write { try CheckpointSigner.signIfGrown(in: $0, signer: signer, origin: "bridge.example/log", now: Date()) }
        try db.write { db throws in
            try db.execute(sql: "DROP TRIGGER ledger_hashes_no_update")
            try db.execute(sql: "UPDATE ledger_hashes SET hash = zeroblob(32) WHERE stored_index = 6")
            _ = try LedgerStore.append(entries(4..<5), in: db)
        }
        #expect(throws: LedgerStoreError.self) {
            try db.write { try CheckpointSigner.signIfGrown(in: $0, signer: signer, origin: "bridge.example/log", now: Date()) }
        }
    }
}
