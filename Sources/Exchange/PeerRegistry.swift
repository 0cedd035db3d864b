import Archive
import Foundation
import GRDB
import Ledger

/// Whether a peer may see this site's studies of patients who enrolled no key (issue 6 adds
/// patients' own grants on top). Nothing leaves a site unless the site or the patient said so.
public enum SharePolicy: String, Codable, Sendable, CaseIterable {
    case none, all
}

/// A peer bridge as configured here.
public struct Peer: Codable, Sendable, Equatable {
    /// The peer's node name: the common name of its certificate and the name of its ledger key.
    public var name: String
    /// The base URL of its peer API (https://host:port).
    public var url: String
    /// PEM of the CA its certificate chains to.
    public var caPEM: String
    /// Its ledger's note verifier key.
    public var verifierKey: String
    public var share: SharePolicy
    public var addedAt: String
    /// Evidence that the peer showed two different histories; nil while it has not.
    public var equivocation: String?
    public var lastWitnessedAt: String?
    public var lastError: String?

    public init(name: String, url: String, caPEM: String, verifierKey: String, share: SharePolicy, addedAt: String = "",
                equivocation: String? = nil, lastWitnessedAt: String? = nil, lastError: String? = nil) {
        self.name = name
        self.url = url
        self.caPEM = caPEM
        self.verifierKey = verifierKey
        self.share = share
        self.addedAt = addedAt
        self.equivocation = equivocation
        self.lastWitnessedAt = lastWitnessedAt
        self.lastError = lastError
    }

    init(row: Row) {
        self.init(name: row["name"], url: row["url"], caPEM: row["ca_pem"], verifierKey: row["verifier_key"],
                  share: SharePolicy(rawValue: row["share"]) ?? .none, addedAt: row["added_at"],
                  equivocation: row["equivocation"], lastWitnessedAt: row["last_witnessed_at"], lastError: row["last_error"])
    }
}

/// A checkpoint of a peer's ledger that we verified (signature by its key) and kept.
public struct SeenCheckpoint: Sendable, Equatable {
    public var size: UInt64
    public var rootHash: String  // base64, as in the checkpoint
    public var signedNote: String
}

/// The peers table and the checkpoints seen of each peer. Stored in the index database, so that
/// `peer add` takes effect on a running `serve` at once.
public struct PeerRegistry: Sendable {
    let database: DatabasePool

    public init(archive: Archive) { database = archive.database }

    static func now() -> String { Timestamp.rfc3339(Date()) }

    public func add(_ peer: Peer, replace: Bool) throws {
        try Self.validate(peer)
        try database.write { db in
            if try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM peer WHERE name = ?)", arguments: [peer.name]) == true {
                guard replace else { throw ExchangeError("peer \(peer.name) is already configured (remove it first, or use --replace)") }
                // A new key or CA is a new identity: what was seen of the old one no longer applies.
                try db.execute(sql: "UPDATE peer SET url = ?, ca_pem = ?, verifier_key = ?, share = ? WHERE name = ?",
                               arguments: [peer.url, peer.caPEM, peer.verifierKey, peer.share.rawValue, peer.name])
                return
            }
            try db.execute(sql: "INSERT INTO peer (name, url, ca_pem, verifier_key, share, added_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [peer.name, peer.url, peer.caPEM, peer.verifierKey, peer.share.rawValue, Self.now()])
        }
    }

    static func validate(_ peer: Peer) throws {
        guard let url = URL(string: peer.url), url.scheme == "https", url.host != nil else {
            throw ExchangeError("peer URL '\(peer.url)' must be https://host[:port]")
        }
        let verifier: NoteVerifier
        do { verifier = try NoteVerifier(verifierKey: peer.verifierKey) } catch {
            throw ExchangeError("verifier key '\(peer.verifierKey)' is not a note verifier key: \(error)")
        }
        guard verifier.name == peer.name else {
            throw ExchangeError("the verifier key is for '\(verifier.name)', not for peer '\(peer.name)' (the peer's node name)")
        }
        guard peer.caPEM.contains("-----BEGIN CERTIFICATE-----") else { throw ExchangeError("the CA file holds no PEM certificate") }
    }

    @discardableResult
    public func remove(_ name: String) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "DELETE FROM peer_checkpoint WHERE peer = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM peer WHERE name = ?", arguments: [name])
            return db.changesCount > 0
        }
    }

    public func setShare(_ name: String, _ share: SharePolicy) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE peer SET share = ? WHERE name = ?", arguments: [share.rawValue, name])
            guard db.changesCount > 0 else { throw ExchangeError("no peer named \(name)") }
        }
    }

    public func list() throws -> [Peer] {
        try database.read { db in try Row.fetchAll(db, sql: "SELECT * FROM peer ORDER BY name").map(Peer.init(row:)) }
    }

    public func peer(_ name: String) throws -> Peer? {
        try database.read { db in try Row.fetchOne(db, sql: "SELECT * FROM peer WHERE name = ?", arguments: [name]).map(Peer.init(row:)) }
    }

    public func checkpoints(of name: String) throws -> [SeenCheckpoint] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT size, root_hash, signed_note FROM peer_checkpoint WHERE peer = ? ORDER BY size",
                             arguments: [name]).map {
                SeenCheckpoint(size: UInt64($0["size"] as Int64), rootHash: $0["root_hash"], signedNote: $0["signed_note"])
            }
        }
    }

    /// Keeps a verified checkpoint. Two different roots for one size are equivocation: recorded
    /// (both signed notes are the evidence) and thrown.
    public func record(_ peer: String, _ cp: Checkpoint, signedNote: String) throws {
        let conflict: String? = try database.write { db in
            if let root = try String.fetchOne(db, sql: "SELECT root_hash FROM peer_checkpoint WHERE peer = ? AND size = ?",
                                              arguments: [peer, Int64(cp.size)]) {
                if root == cp.rootHash.base64 { return nil }
                let old = try String.fetchOne(db, sql: "SELECT signed_note FROM peer_checkpoint WHERE peer = ? AND size = ?",
                                              arguments: [peer, Int64(cp.size)]) ?? ""
                let evidence = "two roots signed for size \(cp.size): \(root) (seen before) and \(cp.rootHash.base64) (now)\n\(old)\n\(signedNote)"
                try Self.markEquivocation(peer, evidence, db)
                return evidence
            }
            try db.execute(sql: "INSERT INTO peer_checkpoint (peer, size, root_hash, signed_note, seen_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [peer, Int64(cp.size), cp.rootHash.base64, signedNote, Self.now()])
            return nil
        }
        if let conflict { throw PeerEquivocation(peer: peer, evidence: conflict) }
    }

    public func markEquivocation(_ peer: String, evidence: String) throws {
        try database.write { db in try Self.markEquivocation(peer, evidence, db) }
    }

    static func markEquivocation(_ peer: String, _ evidence: String, _ db: Database) throws {
        try db.execute(sql: "UPDATE peer SET equivocation = coalesce(equivocation, ?) WHERE name = ?", arguments: [evidence, peer])
    }

    public func noteWitnessed(_ peer: String, error: String?) throws {
        try database.write { db in
            if let error {
                try db.execute(sql: "UPDATE peer SET last_error = ? WHERE name = ?", arguments: [error, peer])
            } else {
                try db.execute(sql: "UPDATE peer SET last_witnessed_at = ?, last_error = NULL WHERE name = ?", arguments: [Self.now(), peer])
            }
        }
    }

    public func markCosigned(_ peer: String, size: UInt64) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE peer_checkpoint SET cosigned = 1 WHERE peer = ? AND size = ?", arguments: [peer, Int64(size)])
        }
    }
}

/// A peer showed two histories that cannot both be true.
public struct PeerEquivocation: Error, CustomStringConvertible, Sendable {
    public let peer: String
    public let evidence: String
    public var description: String {
        "peer \(peer) EQUIVOCATES: its ledger shows a history inconsistent with one it signed before (\(evidence.prefix(while: { $0 != "\n" })))"
    }
}
