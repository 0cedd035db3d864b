import Archive
import GRDB

/// The exchange's tables, in the index database (one transaction covers an instance, its ledger
/// entry and a manifest). Named migrations, never edited once shipped.
public enum ExchangeSchema {
    /// Register once per process, before any archive opens (after the ledger's).
    public static let registered: Void = Archive.registerMigrations { register(&$0) }

    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-exchange") { db in
            try db.execute(sql: """
                -- Imaging manifests this node published (KOS documents, stored as instances too).
                CREATE TABLE manifest (
                    id INTEGER PRIMARY KEY,
                    study_instance_uid TEXT NOT NULL,
                    sop_instance_uid TEXT NOT NULL UNIQUE,
                    sha256 TEXT NOT NULL,
                    sha1 TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    instance_count INTEGER NOT NULL,
                    instances_root TEXT NOT NULL,
                    replaces TEXT,
                    ledger_index INTEGER NOT NULL,
                    created_at TEXT NOT NULL,
                    -- the study's last_received_at when the manifest was made, its own import included
                    covers_through TEXT NOT NULL,
                    is_current INTEGER NOT NULL
                );
                CREATE INDEX manifest_study ON manifest(study_instance_uid, is_current);
                -- The instances a manifest commits to (its instances-root is over their sha256).
                CREATE TABLE manifest_instance (
                    manifest_ref INTEGER NOT NULL REFERENCES manifest(id),
                    series_instance_uid TEXT NOT NULL,
                    sop_instance_uid TEXT NOT NULL,
                    sop_class_uid TEXT NOT NULL,
                    sha256 TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    transfer_syntax_uid TEXT NOT NULL,
                    PRIMARY KEY (manifest_ref, sop_instance_uid)
                );
                -- Peer bridges: who they are and how far we trust what they show.
                CREATE TABLE peer (
                    name TEXT PRIMARY KEY,
                    url TEXT NOT NULL,
                    ca_pem TEXT NOT NULL,
                    verifier_key TEXT NOT NULL,
                    share TEXT NOT NULL DEFAULT 'none',
                    added_at TEXT NOT NULL,
                    equivocation TEXT,
                    last_witnessed_at TEXT,
                    last_error TEXT
                );
                -- Every checkpoint of a peer we verified: a later one must be consistent with all.
                CREATE TABLE peer_checkpoint (
                    peer TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    root_hash TEXT NOT NULL,
                    signed_note TEXT NOT NULL,
                    seen_at TEXT NOT NULL,
                    cosigned INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (peer, size)
                );
                -- Cosignatures that peers (witnesses) made of our own checkpoints.
                CREATE TABLE cosignature (
                    witness TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    root_hash TEXT NOT NULL,
                    signature_line TEXT NOT NULL,
                    received_at TEXT NOT NULL,
                    PRIMARY KEY (witness, size)
                );
                """)
        }
        migrator.registerMigration("v5-consent") { db in
            try db.execute(sql: """
                -- The site's secret for keyed hashes of patient IDs (what ledgers and lists show).
                CREATE TABLE site_secret (id INTEGER PRIMARY KEY CHECK (id = 1), secret BLOB NOT NULL);
                INSERT INTO site_secret (id, secret) VALUES (1, randomblob(32));
                -- Patients' keys, by keyed hash of the Patient ID.
                CREATE TABLE patient_key (
                    patient_hash TEXT PRIMARY KEY,
                    public_key TEXT NOT NULL,
                    key_sha256 TEXT NOT NULL,
                    enrolled_at TEXT NOT NULL,
                    ledger_index INTEGER NOT NULL
                );
                -- Grants recorded here (the signed document kept as submitted), and their revocation.
                CREATE TABLE consent_grant (
                    id TEXT PRIMARY KEY,
                    patient_hash TEXT NOT NULL,
                    grantee TEXT NOT NULL,
                    study TEXT,
                    purpose TEXT NOT NULL,
                    expires_at TEXT NOT NULL,
                    issued_at TEXT NOT NULL,
                    document TEXT NOT NULL,
                    revoked_by TEXT,
                    revoked_at TEXT,
                    recorded_at TEXT NOT NULL,
                    ledger_index INTEGER NOT NULL
                );
                CREATE INDEX consent_grant_lookup ON consent_grant(patient_hash, grantee, expires_at);
                """)
        }
    }
}
