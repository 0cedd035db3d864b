import Archive
import Crypto
import Foundation
import GRDB
import Ledger

/// What the `ledger` and `verify` commands read and check.
public struct LedgerReader: Sendable {
    let archive: Archive
    let key: String

    public init(archive: Archive, key: String) {
        self.archive = archive
        self.key = key
    }

    public func close() { archive.close() }

    public func verifierKey() throws -> String { key }

    public func latestCheckpoint() throws -> StoredCheckpoint? {
        try archive.database.read { try LedgerStore.latestCheckpoint($0) }
    }

    public struct Entry: Codable {
        public var index: UInt64
        public var type: String
        public var version: Int
        public var fields: [String: String]
        public var leafHash: String
        public var entry: String  // base64 of the raw entry bytes
    }

    /// Entries from `from`, at most `count`, optionally only those naming `sop` or of `type`.
    public func entries(from: UInt64, count: Int, type: String?, sop: String?) throws -> [Entry] {
        try archive.database.read { db in
            var out: [Entry] = []
            let rows = try Row.fetchCursor(db, sql: "SELECT leaf_index, entry FROM ledger_entries WHERE leaf_index >= ? ORDER BY leaf_index",
                                           arguments: [Int64(from)])
            while let row = try rows.next(), out.count < count {
                let data: Data = row["entry"]
                let record = try EventRecord.parse(data)
                if let type, record.type != type { continue }
                let fields = Dictionary(record.fields.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
                if let sop, fields["sop-instance-uid"] != sop { continue }
                out.append(Entry(index: UInt64(row["leaf_index"] as Int64), type: record.type, version: record.version,
                                 fields: fields, leafHash: RFC6962.leafHash(data).base64, entry: data.base64EncodedString()))
            }
            return out
        }
    }

    public struct InclusionProof: Codable {
        public var index: UInt64
        public var treeSize: UInt64
        public var leafHash: String
        public var proof: [String]
        public var checkpoint: String
    }

    public enum Selector: Sendable { case index(UInt64), sop(String), sha256(String) }

    /// An inclusion proof against the latest checkpoint the node has signed.
    public func prove(_ selector: Selector) throws -> InclusionProof {
        try archive.database.read { db in
            guard let cp = try LedgerStore.latestCheckpoint(db) else { throw ExchangeError("no signed checkpoint yet") }
            let index: UInt64
            switch selector {
            case .index(let i): index = i
            case .sop(let uid):
                guard let i = try Int64.fetchOne(db, sql: "SELECT ledger_index FROM instance WHERE sop_instance_uid = ? AND is_current = 1",
                                                 arguments: [uid]) else { throw ExchangeError("no anchored instance with SOP Instance UID \(uid)") }
                index = UInt64(i)
            case .sha256(let h):
                guard let i = try Int64.fetchOne(db, sql: "SELECT ledger_index FROM instance WHERE sha256 = ? AND ledger_index IS NOT NULL",
                                                 arguments: [h.lowercased()]) else { throw ExchangeError("no anchored instance with SHA-256 \(h)") }
                index = UInt64(i)
            }
            guard index < cp.size else {
                throw ExchangeError("entry \(index) is not yet covered by a signed checkpoint (size \(cp.size)); try again in a moment")
            }
            guard let leaf = try LedgerStore.leafHash(at: index, db) else { throw ExchangeError("no entry \(index)") }
            let proof = try LedgerStore.inclusionProof(index: index, size: cp.size, db)
            return InclusionProof(index: index, treeSize: cp.size, leafHash: leaf.base64, proof: proof.map(\.base64),
                                  checkpoint: cp.signedNote)
        }
    }

    /// An inclusion proof of entry `index` against the signed checkpoint of size `size`.
    public func prove(_ index: UInt64, size: UInt64) throws -> InclusionProof {
        try archive.database.read { db in
            guard let cp = try LedgerStore.checkpoints(db).last(where: { $0.size == size }) else {
                throw ExchangeError("the node signed no checkpoint of size \(size)")
            }
            guard index < size, let leaf = try LedgerStore.leafHash(at: index, db) else {
                throw ExchangeError("entry \(index) is not covered by the checkpoint of size \(size)")
            }
            let proof = try LedgerStore.inclusionProof(index: index, size: size, db)
            return InclusionProof(index: index, treeSize: size, leafHash: leaf.base64, proof: proof.map(\.base64),
                                  checkpoint: cp.signedNote)
        }
    }

    public struct ConsistencyProof: Codable {
        public var size1: UInt64
        public var size2: UInt64
        public var proof: [String]
        public var checkpoint1: String?
        public var checkpoint2: String?
    }

    public func proveConsistency(_ size1: UInt64, _ size2: UInt64) throws -> ConsistencyProof {
        try archive.database.read { db in
            guard size1 <= size2 else { throw ExchangeError("the old size must not exceed the new size") }
            let signed = try LedgerStore.checkpoints(db)
            guard let cp2 = signed.last(where: { $0.size == size2 }) else {
                throw ExchangeError("the node signed no checkpoint of size \(size2); sizes signed: \(Self.sizes(signed))")
            }
            let cp1 = signed.last(where: { $0.size == size1 })
            let proof = try LedgerStore.consistencyProof(from: size1, to: size2, db)
            return ConsistencyProof(size1: size1, size2: size2, proof: proof.map(\.base64), checkpoint1: cp1?.signedNote,
                                    checkpoint2: cp2.signedNote)
        }
    }

    public static func sizes(_ cps: [StoredCheckpoint]) -> String {
        let s = cps.map(\.size)
        return s.count <= 6 ? s.map(String.init).joined(separator: ", ") : "\(s.first!) ... \(s.last!) (\(s.count) checkpoints)"
    }

    /// Recomputes the tree from the entries and checks every kept checkpoint, root and signature.
    public func verifyLedger() throws -> (size: UInt64, checkpoints: Int) {
        let key = try verifierKey()
        let verifier = try NoteVerifier(verifierKey: key)
        return try archive.database.read { db in
            let size = try LedgerStore.verifyIntegrity(db)
            let cps = try LedgerStore.checkpoints(db)
            var previous: StoredCheckpoint?
            for cp in cps {
                do { _ = try SignedNote.open(cp.signedNote, verifiers: [verifier]) } catch {
                    throw ExchangeError("checkpoint of size \(cp.size) (id \(cp.id)) has no valid signature by \(key): \(error)")
                }
                if let p = previous, p.size == cp.size, p.rootHash != cp.rootHash {
                    throw ExchangeError("two different roots signed for size \(cp.size)")
                }
                previous = cp
            }
            return (size, cps.count)
        }
    }

    public struct Problem: Codable, CustomStringConvertible {
        public var sopInstanceUID: String
        public var sha256: String
        public var path: String
        public var problem: String
        public var description: String { "\(path): \(problem) (SOP Instance UID \(sopInstanceUID))" }
    }

    /// Re-hashes every stored object against the index and checks it is anchored in the ledger.
    public func verifyStore(progress: (Int, Int) -> Void) throws -> (checked: Int, problems: [Problem]) {
        let rows = try archive.database.read { db in
            try Row.fetchAll(db, sql: "SELECT sop_instance_uid, sha256, path, size, ledger_index FROM instance ORDER BY id")
        }
        let anchored: [UInt64: String] = try archive.database.read { db in
            var map: [UInt64: String] = [:]
            let cursor = try Row.fetchCursor(db, sql: "SELECT leaf_index, entry FROM ledger_entries")
            while let row = try cursor.next() {
                if case .instanceAnchored(let e)? = try? LedgerEvent.decode(row["entry"] as Data) {
                    map[UInt64(row["leaf_index"] as Int64)] = e.sha256
                }
            }
            return map
        }
        var problems: [Problem] = []
        for (n, row) in rows.enumerated() {
            let sop: String = row["sop_instance_uid"], sha: String = row["sha256"], path: String = row["path"]
            func report(_ what: String) { problems.append(Problem(sopInstanceUID: sop, sha256: sha, path: path, problem: what)) }
            let full = archive.absolutePath(path)
            if FileManager.default.isReadableFile(atPath: full) {
                let got = try FileDigest.sha256(path: full)
                if got != sha { report("altered: its SHA-256 is \(got), the index and the ledger say \(sha)") }
            } else {
                report("missing: the file is not in the store")
            }
            if let idx = row["ledger_index"] as Int64? {
                if anchored[UInt64(idx)] != sha { report("the ledger entry \(idx) does not anchor this hash") }
            } else {
                report("not anchored in the ledger")
            }
            progress(n + 1, rows.count)
        }
        return (rows.count, problems)
    }
}
