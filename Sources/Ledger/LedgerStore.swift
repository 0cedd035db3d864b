// The log in SQLite, next to whatever else the caller keeps in the same database, so that one
// transaction commits both. Tables (see docs/ledger.md):
//
//   ledger_entries      leaf_index -> entry bytes and its leaf hash SHA-256(0x00 || entry)
//   ledger_hashes       stored_index (MerkleTree.storedHashIndex) -> hash; write-once
//   ledger_checkpoints  every signed checkpoint: origin, size, root, the signed note, time
//
// Triggers refuse UPDATE and DELETE on all three: the log is append-only.

import Foundation
import GRDB

public enum LedgerStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A size or index beyond the current tree.
    case beyondTree(requested: UInt64, treeSize: UInt64)
    /// `append` needs the caller's transaction.
    case notInTransaction
    /// Stored rows that do not fit together; the log has been damaged or tampered with.
    case corrupt(String)
    /// A checkpoint whose root is not the root of the log at its size.
    case checkpointMismatch(size: UInt64, checkpointRoot: MerkleHash, logRoot: MerkleHash)

    public var description: String {
        switch self {
        case let .beyondTree(requested, size): return "\(requested) is beyond the tree size \(size)"
        case .notInTransaction: return "ledger append must run inside a transaction"
        case let .corrupt(why): return "ledger is corrupt: \(why)"
        case let .checkpointMismatch(size, cp, log):
            return "checkpoint root \(cp.hex) at size \(size) is not the log's root \(log.hex)"
        }
    }
}

/// A checkpoint as stored: the parsed checkpoint, its signed note and when it was saved.
public struct StoredCheckpoint: Hashable, Sendable {
    public let id: Int64
    public let checkpoint: Checkpoint
    public let signedNote: String
    public let time: Date
    public var size: UInt64 { checkpoint.size }
    public var rootHash: MerkleHash { checkpoint.rootHash }
}

public enum LedgerStore {
    /// Registers the "ledger_v1" migration, creating the ledger_ tables.
    public static func registerMigrations(_ migrator: inout DatabaseMigrator) {
        // Idempotent: the bridge and a test may both register the ledger in one process.
        guard !migrator.migrations.contains("ledger_v1") else { return }
        migrator.registerMigration("ledger_v1") { db in
            try db.execute(sql: """
                CREATE TABLE ledger_entries (
                    leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0),
                    entry BLOB NOT NULL,
                    leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32)
                );
                CREATE TABLE ledger_hashes (
                    stored_index INTEGER PRIMARY KEY CHECK (stored_index >= 0),
                    hash BLOB NOT NULL CHECK (length(hash) = 32)
                );
                CREATE TABLE ledger_checkpoints (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    origin TEXT NOT NULL,
                    size INTEGER NOT NULL CHECK (size >= 0),
                    root BLOB NOT NULL CHECK (length(root) = 32),
                    note TEXT NOT NULL,
                    created_at TEXT NOT NULL
                );
                CREATE INDEX ledger_checkpoints_size ON ledger_checkpoints (size);
                """)
            for table in ["ledger_entries", "ledger_hashes", "ledger_checkpoints"] {
                for op in ["UPDATE", "DELETE"] {
                    try db.execute(sql: """
                        CREATE TRIGGER \(table)_no_\(op.lowercased()) BEFORE \(op) ON \(table)
                        BEGIN SELECT RAISE(ABORT, '\(table) is append-only'); END;
                        """)
                }
            }
        }
    }

    // MARK: Appending

    /// Appends `entries` as the next leaves, inside the caller's transaction; returns their leaf
    /// indexes. Stores each entry, its leaf hash and only the new stored hashes it creates
    /// (about two per entry), reading at most log2(n) earlier hashes.
    @discardableResult
    public static func append(_ entries: [Data], in db: Database) throws -> [UInt64] {
        guard db.isInsideTransaction else { throw LedgerStoreError.notInTransaction }
        if entries.isEmpty { return [] }
        let size = try treeSize(db)
        let stored = try count(db, "SELECT COALESCE(MAX(stored_index) + 1, 0) FROM ledger_hashes")
        guard stored == MerkleTree.storedHashCount(size) else {
            throw LedgerStoreError.corrupt("\(stored) stored hashes for \(size) entries, want \(MerkleTree.storedHashCount(size))")
        }
        guard UInt64(entries.count) <= MerkleTree.maxSize - size else {
            throw LedgerStoreError.beyondTree(requested: size + UInt64(entries.count), treeSize: MerkleTree.maxSize)
        }
        // Hashes written by this batch, so appending does not read back what it just wrote.
        var written: [UInt64: MerkleHash] = [:]
        let fromDB = DatabaseHashReader(db: db)
        let reader = HashReaderFunc { indexes in
            try indexes.map { i in try written[i] ?? fromDB.readHashes([i])[0] }
        }
        let insertEntry = try db.cachedStatement(sql: "INSERT INTO ledger_entries (leaf_index, entry, leaf_hash) VALUES (?, ?, ?)")
        let insertHash = try db.cachedStatement(sql: "INSERT INTO ledger_hashes (stored_index, hash) VALUES (?, ?)")
        var indexes: [UInt64] = []
        indexes.reserveCapacity(entries.count)
        for (offset, entry) in entries.enumerated() {
            let n = size + UInt64(offset)
            let leaf = RFC6962.leafHash(entry)
            let hashes = try MerkleTree.storedHashes(n: n, leafHash: leaf, reader: reader)
            try insertEntry.execute(arguments: [Int64(n), entry, leaf.data])
            var at = MerkleTree.storedHashIndex(level: 0, n: n)
            for h in hashes {
                try insertHash.execute(arguments: [Int64(at), h.data])
                written[at] = h
                at += 1
            }
            indexes.append(n)
        }
        return indexes
    }

    // MARK: Reading

    /// Number of entries in the log.
    public static func treeSize(_ db: Database) throws -> UInt64 {
        try count(db, "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM ledger_entries")
    }

    private static func count(_ db: Database, _ sql: String) throws -> UInt64 {
        let v = try Int64.fetchOne(db, sql: sql) ?? 0
        guard let n = UInt64(exactly: v) else { throw LedgerStoreError.corrupt("negative index in \(sql)") }
        return n
    }

    /// The root of the tree of the first `size` entries (size <= treeSize).
    public static func rootHash(size: UInt64, _ db: Database) throws -> MerkleHash {
        try checkSize(size, db)
        return try MerkleTree.treeHash(size: size, reader: DatabaseHashReader(db: db))
    }

    /// The root of the whole log.
    public static func rootHash(_ db: Database) throws -> MerkleHash {
        try rootHash(size: treeSize(db), db)
    }

    /// The entry at leaf `index`, or nil beyond the end of the log.
    public static func entry(at index: UInt64, _ db: Database) throws -> Data? {
        guard index < MerkleTree.maxSize else { return nil }
        return try Data.fetchOne(db, sql: "SELECT entry FROM ledger_entries WHERE leaf_index = ?", arguments: [Int64(index)])
    }

    /// The stored leaf hash of leaf `index`, or nil beyond the end of the log.
    public static func leafHash(at index: UInt64, _ db: Database) throws -> MerkleHash? {
        guard index < MerkleTree.maxSize,
              let raw = try Data.fetchOne(db, sql: "SELECT leaf_hash FROM ledger_entries WHERE leaf_index = ?", arguments: [Int64(index)])
        else { return nil }
        guard let h = MerkleHash(bytes: raw) else { throw LedgerStoreError.corrupt("leaf hash \(index) is not 32 bytes") }
        return h
    }

    /// Inclusion proof of leaf `index` in the tree of `size` entries (index < size <= treeSize).
    public static func inclusionProof(index: UInt64, size: UInt64, _ db: Database) throws -> [MerkleHash] {
        try checkSize(size, db)
        return try MerkleTree.inclusionProof(index: index, size: size, reader: DatabaseHashReader(db: db))
    }

    /// Consistency proof from the tree of `size1` entries to that of `size2` (0 < size1 <= size2 <= treeSize).
    public static func consistencyProof(from size1: UInt64, to size2: UInt64, _ db: Database) throws -> [MerkleHash] {
        try checkSize(size2, db)
        return try MerkleTree.consistencyProof(from: size1, to: size2, reader: DatabaseHashReader(db: db))
    }

    /// A `HashReader` over the stored hashes, for `MerkleTree`'s functions.
    public static func hashReader(_ db: Database) -> any HashReader { DatabaseHashReader(db: db) }

    private static func checkSize(_ size: UInt64, _ db: Database) throws {
        let treeSize = try treeSize(db)
        guard size <= treeSize else { throw LedgerStoreError.beyondTree(requested: size, treeSize: treeSize) }
    }

    // MARK: Checkpoints

    /// Stores a signed checkpoint note (the caller signed it; signatures are not checked here).
    /// Its text must parse as a checkpoint whose root is the log's root at its size.
    @discardableResult
    public static func saveCheckpoint(signedNote: String, time: Date, _ db: Database) throws -> StoredCheckpoint {
        let checkpoint = try Checkpoint.parse(SignedNote.parse(signedNote).text)
        let root = try rootHash(size: checkpoint.size, db)
        guard root == checkpoint.rootHash else {
            throw LedgerStoreError.checkpointMismatch(size: checkpoint.size, checkpointRoot: checkpoint.rootHash, logRoot: root)
        }
        try db.execute(
            sql: "INSERT INTO ledger_checkpoints (origin, size, root, note, created_at) VALUES (?, ?, ?, ?, ?)",
            arguments: [checkpoint.origin, Int64(checkpoint.size), checkpoint.rootHash.data, signedNote, Timestamp.rfc3339(time)])
        return StoredCheckpoint(id: db.lastInsertedRowID, checkpoint: checkpoint, signedNote: signedNote, time: time)
    }

    /// The stored checkpoint of the largest size (the latest saved among equals), if any.
    public static func latestCheckpoint(_ db: Database) throws -> StoredCheckpoint? {
        try Row.fetchOne(db, sql: "SELECT id, note, created_at FROM ledger_checkpoints ORDER BY size DESC, id DESC LIMIT 1")
            .map(storedCheckpoint)
    }

    /// Every stored checkpoint, oldest first.
    public static func checkpoints(_ db: Database) throws -> [StoredCheckpoint] {
        try Row.fetchAll(db, sql: "SELECT id, note, created_at FROM ledger_checkpoints ORDER BY id").map(storedCheckpoint)
    }

    private static func storedCheckpoint(_ row: Row) throws -> StoredCheckpoint {
        let note: String = row["note"]
        let created: String = row["created_at"]
        guard let time = Timestamp.parseRFC3339(created) else { throw LedgerStoreError.corrupt("checkpoint time \"\(created)\"") }
        let checkpoint = try Checkpoint.parse(SignedNote.parse(note).text)
        return StoredCheckpoint(id: row["id"], checkpoint: checkpoint, signedNote: note, time: time)
    }

    // MARK: Audit

    /// Recomputes the whole log from its entries: every leaf hash, every stored hash, and the
    /// root of every stored checkpoint. Throws `corrupt` or `checkpointMismatch` on the first
    /// disagreement; returns the tree size. Reads every row once; memory is O(log n).
    @discardableResult
    public static func verifyIntegrity(_ db: Database) throws -> UInt64 {
        let entries = try Row.fetchCursor(db, sql: "SELECT leaf_index, entry, leaf_hash FROM ledger_entries ORDER BY leaf_index")
        let hashes = try Row.fetchCursor(db, sql: "SELECT stored_index, hash FROM ledger_hashes ORDER BY stored_index")
        // Roots of the perfect subtrees covering the leaves so far, largest first, with their levels.
        var frontier: [(level: Int, hash: MerkleHash)] = []
        var n: UInt64 = 0
        var storedIndex: UInt64 = 0
        func expect(_ h: MerkleHash) throws {
            guard let row = try hashes.next() else { throw LedgerStoreError.corrupt("stored hash \(storedIndex) is missing") }
            guard row["stored_index"] as Int64 == Int64(storedIndex) else {
                throw LedgerStoreError.corrupt("stored hash \(storedIndex) is missing")
            }
            guard (row["hash"] as Data) == h.data else { throw LedgerStoreError.corrupt("stored hash \(storedIndex) is wrong") }
            storedIndex += 1
        }
        while let row = try entries.next() {
            guard row["leaf_index"] as Int64 == Int64(n) else { throw LedgerStoreError.corrupt("entry \(n) is missing") }
            let leaf = RFC6962.leafHash(row["entry"] as Data)
            guard (row["leaf_hash"] as Data) == leaf.data else { throw LedgerStoreError.corrupt("leaf hash \(n) is wrong") }
            try expect(leaf)
            frontier.append((0, leaf))
            while frontier.count >= 2 && frontier[frontier.count - 2].level == frontier[frontier.count - 1].level {
                let right = frontier.removeLast()
                let left = frontier.removeLast()
                let h = RFC6962.nodeHash(left.hash, right.hash)
                try expect(h)
                frontier.append((right.level + 1, h))
            }
            n += 1
        }
        if try hashes.next() != nil { throw LedgerStoreError.corrupt("stored hashes beyond \(storedIndex)") }
        for cp in try checkpoints(db) {
            guard cp.size <= n else { throw LedgerStoreError.beyondTree(requested: cp.size, treeSize: n) }
            let root = try rootHash(size: cp.size, db)
            guard root == cp.rootHash else {
                throw LedgerStoreError.checkpointMismatch(size: cp.size, checkpointRoot: cp.rootHash, logRoot: root)
            }
        }
        return n
    }
}

/// Reads stored hashes from ledger_hashes by primary key, in batches.
struct DatabaseHashReader: HashReader {
    let db: Database

    /// One query for all the hashes a proof needs (a proof is ~log2(n) hashes; one statement per
    /// hash cost more than the lookups themselves).
    func readHashes(_ indexes: [UInt64]) throws -> [MerkleHash] {
        guard !indexes.isEmpty else { return [] }
        for i in indexes where i > UInt64(Int64.max) { throw MerkleError.missingHash(index: i) }
        var found: [Int64: Data] = [:]
        for start in stride(from: 0, to: indexes.count, by: 500) {
            let chunk = indexes[start..<min(start + 500, indexes.count)]
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            let rows = try Row.fetchCursor(db, sql: "SELECT stored_index, hash FROM ledger_hashes WHERE stored_index IN (\(placeholders))",
                                           arguments: StatementArguments(chunk.map { Int64($0) }))
            while let row = try rows.next() { found[row["stored_index"]] = row["hash"] }
        }
        return try indexes.map { i in
            guard let raw = found[Int64(i)] else { throw MerkleError.missingHash(index: i) }
            guard let h = MerkleHash(bytes: raw) else { throw LedgerStoreError.corrupt("stored hash \(i) is not 32 bytes") }
            return h
        }
    }
}
