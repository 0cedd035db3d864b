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
    }
}
