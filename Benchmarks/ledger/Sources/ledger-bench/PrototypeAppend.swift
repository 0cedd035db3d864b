// A prototype of a faster LedgerStore.append, to measure what the append path could do. NOT the
// Ledger module's code: it writes the same rows (checked with LedgerStore.verifyIntegrity before
// it is measured), but
//   - binds with the sqlite3 C API on GRDB's connection instead of StatementArguments, and
//   - keeps the tree's frontier (the roots of the perfect subtrees covering the leaves so far,
//     at most 64 hashes, read once per batch) instead of looking siblings up in a dictionary and
//     the database: appending leaf n only ever needs the frontier.

import Foundation
import GRDB
import GRDBSQLite
import Ledger

enum PrototypeAppend {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func append(_ entries: [Data], in db: Database) throws {
        guard db.isInsideTransaction else { throw Failure(description: "not in a transaction") }
        if entries.isEmpty { return }
        let size = UInt64(try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM ledger_entries") ?? 0)
        let stored = UInt64(try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(stored_index) + 1, 0) FROM ledger_hashes") ?? 0)
        guard stored == MerkleTree.storedHashCount(size) else { throw Failure(description: "\(stored) stored hashes for \(size) entries") }

        // The frontier of the tree of `size` leaves, largest subtree first.
        var frontier: [(level: Int, hash: MerkleHash)] = []
        var start: UInt64 = 0
        var nodes: [(Int, UInt64)] = []
        for level in stride(from: 63, through: 0, by: -1) where size >> UInt64(level) & 1 == 1 {
            nodes.append((level, start >> UInt64(level)))
            start += 1 << UInt64(level)
        }
        let hashes = try LedgerStore.hashReader(db).readHashes(nodes.map { MerkleTree.storedHashIndex(level: $0.0, n: $0.1) })
        frontier = zip(nodes, hashes).map { ($0.0.0, $0.1) }

        let conn = db.sqliteConnection
        var insertEntry: OpaquePointer?
        var insertHash: OpaquePointer?
        func check(_ rc: CInt, _ what: String) throws {
            guard rc == SQLITE_OK || rc == SQLITE_DONE else {
                throw Failure(description: "\(what): \(String(cString: sqlite3_errmsg(conn)))")
            }
        }
        try check(sqlite3_prepare_v2(conn, "INSERT INTO ledger_entries (leaf_index, entry, leaf_hash) VALUES (?, ?, ?)", -1, &insertEntry, nil), "prepare")
        defer { sqlite3_finalize(insertEntry) }
        try check(sqlite3_prepare_v2(conn, "INSERT INTO ledger_hashes (stored_index, hash) VALUES (?, ?)", -1, &insertHash, nil), "prepare")
        defer { sqlite3_finalize(insertHash) }

        func putHash(_ at: UInt64, _ h: MerkleHash) throws {
            sqlite3_bind_int64(insertHash, 1, Int64(at))
            try h.bytes.withUnsafeBytes { b in
                sqlite3_bind_blob(insertHash, 2, b.baseAddress, 32, nil)  // SQLITE_STATIC: valid until step
                try check(sqlite3_step(insertHash), "insert hash")
            }
            sqlite3_reset(insertHash)
        }

        for (offset, entry) in entries.enumerated() {
            let n = size + UInt64(offset)
            let leaf = RFC6962.leafHash(entry)
            sqlite3_bind_int64(insertEntry, 1, Int64(n))
            try entry.withUnsafeBytes { e in
                try leaf.bytes.withUnsafeBytes { l in
                    sqlite3_bind_blob(insertEntry, 2, e.baseAddress ?? UnsafeRawPointer(bitPattern: 1), CInt(e.count), nil)
                    sqlite3_bind_blob(insertEntry, 3, l.baseAddress, 32, nil)
                    try check(sqlite3_step(insertEntry), "insert entry")
                }
            }
            sqlite3_reset(insertEntry)
            var at = MerkleTree.storedHashIndex(level: 0, n: n)
            try putHash(at, leaf)
            var h = leaf
            var level = 0
            while let last = frontier.last, last.level == level {
                frontier.removeLast()
                h = RFC6962.nodeHash(last.hash, h)
                level += 1
                at += 1
                try putHash(at, h)
            }
            frontier.append((level, h))
        }
    }
}

/// A prototype `HashReader` reading all requested hashes with one statement
/// (`WHERE stored_index IN (…)`), instead of one statement execution per hash.
struct BatchedHashReader: HashReader {
    let db: Database

    func readHashes(_ indexes: [UInt64]) throws -> [MerkleHash] {
        if indexes.isEmpty { return [] }
        let sql = "SELECT stored_index, hash FROM ledger_hashes WHERE stored_index IN (" + Array(repeating: "?", count: indexes.count).joined(separator: ",") + ")"
        let statement = try db.cachedStatement(sql: sql)
        var found: [Int64: MerkleHash] = [:]
        let rows = try Row.fetchCursor(statement, arguments: StatementArguments(indexes.map { Int64($0) }))
        while let row = try rows.next() {
            let raw: Data = row[1]
            guard let h = MerkleHash(bytes: raw) else { throw PrototypeAppend.Failure(description: "bad hash") }
            found[row[0]] = h
        }
        return try indexes.map { i in
            guard let h = found[Int64(i)] else { throw MerkleError.missingHash(index: i) }
            return h
        }
    }
}
