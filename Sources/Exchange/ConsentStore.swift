import Archive
import Consent
import Crypto
import Foundation
import GRDB
import Ledger

/// One grant as `consent list` shows it: the patient by keyed hash, never by ID.
public struct GrantStatus: Codable, Sendable, Equatable {
    public enum Scope: Codable, Sendable, Equatable {
        case study(String), all

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .all: try c.encode("all")
            case .study(let uid): try c.encode(["study": uid])
            }
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self), s == "all" { self = .all; return }
            self = .study(try c.decode([String: String].self)["study"] ?? "")
        }
    }

    public var id: String
    public var patientKeyHash: String
    public var grantee: String
    public var scope: Scope
    public var purpose: String
    public var expires: String
    /// valid, expired or revoked.
    public var status: String
    public var revokedBy: String?
    public var recorded: String
    public var ledgerIndex: UInt64
}

/// What a submitted document did.
public struct SubmitResult: Codable, Sendable {
    public var id: String
    /// grant or revocation.
    public var kind: String
    public var ledgerIndex: UInt64
}

/// Patients' keys, grants and revocations at this site, in the index database, each recorded on
/// the ledger (patients by a keyed hash of their ID under a secret of the site, never the ID).
public struct ConsentStore: Sendable {
    let database: DatabasePool

    public init(archive: Archive) { database = archive.database }

    static func siteSecret(_ db: Database) throws -> Data {
        guard let secret = try Data.fetchOne(db, sql: "SELECT secret FROM site_secret WHERE id = 1") else {
            throw ExchangeError("the site secret is missing from the index")
        }
        return secret
    }

    /// The keyed hash naming a patient on ledgers and in lists (Patient ID only: issuers differ
    /// between sites' systems, and the ledger must match one patient across a site's studies).
    static func patientHash(_ patientID: String, _ db: Database) throws -> String {
        PatientIdentity.keyedHash(patientId: patientID, issuer: nil, siteSecret: try siteSecret(db))
    }

    public func patientHash(_ patientID: String) throws -> String {
        try database.read { try Self.patientHash(patientID, $0) }
    }

    /// Binds a patient's key to a patient this site holds images of. Returns the ledger index.
    @discardableResult
    public func enroll(patientID: String, publicKey: PatientPublicKey, now: Date = Date()) throws -> UInt64 {
        try database.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM patient WHERE patient_id = ?)", arguments: [patientID]) == true else {
                throw ExchangeError("this site holds no images of that patient: enroll a patient at the site that holds the images")
            }
            let hash = try Self.patientHash(patientID, db)
            let event = try PatientEnrolled(patient: hash, patientKeySHA256: publicKey.sha256Hex, enrolledAt: now)
            let index = try LedgerStore.append([event.encode()], in: db)[0]
            try db.execute(sql: """
                INSERT INTO patient_key (patient_hash, public_key, key_sha256, enrolled_at, ledger_index) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(patient_hash) DO UPDATE SET public_key = excluded.public_key, key_sha256 = excluded.key_sha256,
                    enrolled_at = excluded.enrolled_at, ledger_index = excluded.ledger_index
                """, arguments: [hash, publicKey.base64, publicKey.sha256Hex, Timestamp.rfc3339(now), Int64(index)])
            return index
        }
    }

    /// Records a signed grant or revocation. Refuses, recording nothing, a bad signature, a key
    /// not enrolled for that patient, a grant already expired, a revocation of an unknown grant.
    public func submit(_ data: Data, now: Date = Date()) throws -> SubmitResult {
        let document: ConsentDocument
        do { document = try ConsentDocument.parse(data) } catch { throw ExchangeError("refused: \(error)") }
        let documentSHA = Hex.encode(SHA256.hash(data: data))
        return try database.write { db in
            switch document {
            case .grant(let g):
                let hash = try Self.patientHash(g.patientId, db)
                guard let enrolled = try String.fetchOne(db, sql: "SELECT public_key FROM patient_key WHERE patient_hash = ?", arguments: [hash]) else {
                    throw ExchangeError("refused: no key is enrolled here for that patient (consent enroll)")
                }
                guard enrolled == g.patientKey else {
                    throw ExchangeError("refused: the grant is signed by a key that is not the one enrolled for that patient")
                }
                guard g.expires > now else { throw ExchangeError("refused: the grant expired at \(Timestamp.rfc3339(g.expires))") }
                if try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM consent_grant WHERE id = ?)", arguments: [g.id]) == true {
                    throw ExchangeError("refused: grant \(g.id) is already recorded")
                }
                let scope: String
                let study: String?
                switch g.scope {
                case .all: scope = "all"; study = nil
                case .study(let uid): scope = "study:" + uid; study = uid
                }
                let event = try ConsentGranted(grant: g.id, patient: hash, grantee: g.grantee, scope: scope, purpose: g.purpose,
                                               expires: g.expires, documentSHA256: documentSHA, recordedAt: now)
                let index = try LedgerStore.append([event.encode()], in: db)[0]
                try db.execute(sql: """
                    INSERT INTO consent_grant (id, patient_hash, grantee, study, purpose, expires_at, issued_at, document,
                                               recorded_at, ledger_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [g.id, hash, g.grantee, study, g.purpose, Timestamp.rfc3339(g.expires), Timestamp.rfc3339(g.issued),
                                     String(decoding: data, as: UTF8.self), Timestamp.rfc3339(now), Int64(index)])
                return SubmitResult(id: g.id, kind: "grant", ledgerIndex: index)
            case .revocation(let r):
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT g.patient_hash, g.revoked_by, k.public_key FROM consent_grant g
                    LEFT JOIN patient_key k ON k.patient_hash = g.patient_hash WHERE g.id = ?
                    """, arguments: [r.grant]) else {
                    throw ExchangeError("refused: no grant \(r.grant) is recorded here")
                }
                let grantKey = try String.fetchOne(db, sql: "SELECT document FROM consent_grant WHERE id = ?", arguments: [r.grant])
                    .flatMap { try? ConsentDocument.parse(Data($0.utf8)) }
                guard case .grant(let g)? = grantKey, g.patientKey == r.patientKey else {
                    throw ExchangeError("refused: the revocation is not signed by the key that signed the grant")
                }
                if let by = row["revoked_by"] as String? { throw ExchangeError("refused: grant \(r.grant) was already revoked by \(by)") }
                let event = try ConsentRevoked(revocation: r.id, grant: r.grant, patient: row["patient_hash"], documentSHA256: documentSHA,
                                               recordedAt: now)
                let index = try LedgerStore.append([event.encode()], in: db)[0]
                try db.execute(sql: "UPDATE consent_grant SET revoked_by = ?, revoked_at = ? WHERE id = ?",
                               arguments: [r.id, Timestamp.rfc3339(now), r.grant])
                return SubmitResult(id: r.id, kind: "revocation", ledgerIndex: index)
            }
        }
    }

    public func list(patientID: String?, now: Date = Date()) throws -> [GrantStatus] {
        try database.read { db in
            var sql = "SELECT * FROM consent_grant"
            var args: [any DatabaseValueConvertible] = []
            if let patientID {
                sql += " WHERE patient_hash = ?"
                args.append(try Self.patientHash(patientID, db))
            }
            let nowText = Timestamp.rfc3339(now)
            return try Row.fetchAll(db, sql: sql + " ORDER BY recorded_at, id", arguments: StatementArguments(args)).map { row in
                let expires: String = row["expires_at"]
                let revokedBy: String? = row["revoked_by"]
                let study: String? = row["study"]
                return GrantStatus(id: row["id"], patientKeyHash: row["patient_hash"], grantee: row["grantee"],
                                   scope: study.map { .study($0) } ?? .all, purpose: row["purpose"], expires: expires,
                                   status: revokedBy != nil ? "revoked" : (expires > nowText ? "valid" : "expired"),
                                   revokedBy: revokedBy, recorded: row["recorded_at"], ledgerIndex: UInt64(row["ledger_index"] as Int64))
            }
        }
    }

    /// Whether the patient enrolled a key here, and if so the grant that lets `grantee` see
    /// `study` now (nil when none does); when none does, why the latest grant that would have
    /// (same grantee, scope covering the study) no longer does: expired or revoked (nil if none).
    func decision(patientID: String, grantee: String, study: String, now: Date) throws
        -> (enrolled: Bool, grant: String?, patientHash: String, lapsed: String?) {
        try database.read { db in
            let hash = try Self.patientHash(patientID, db)
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM patient_key WHERE patient_hash = ?)", arguments: [hash]) == true else {
                return (false, nil, hash, nil)
            }
            let nowText = Timestamp.rfc3339(now)
            let grant = try String.fetchOne(db, sql: """
                SELECT id FROM consent_grant INDEXED BY consent_grant_lookup
                WHERE patient_hash = ? AND grantee = ? AND (study IS NULL OR study = ?) AND expires_at > ? AND revoked_by IS NULL
                ORDER BY expires_at DESC LIMIT 1
                """, arguments: [hash, grantee, study, nowText])
            if grant != nil { return (true, grant, hash, nil) }
            let lapsed = try Row.fetchOne(db, sql: """
                SELECT id, expires_at, revoked_by FROM consent_grant
                WHERE patient_hash = ? AND grantee = ? AND (study IS NULL OR study = ?)
                ORDER BY recorded_at DESC, id DESC LIMIT 1
                """, arguments: [hash, grantee, study]).map { row -> String in
                let id: String = row["id"]
                if let by = row["revoked_by"] as String? { return "grant \(id) was revoked by \(by)" }
                return "grant \(id) expired at \(row["expires_at"] as String)"
            }
            return (true, nil, hash, lapsed)
        }
    }
}
