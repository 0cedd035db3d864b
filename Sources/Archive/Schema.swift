import GRDB

/// The index schema, as named, ordered migrations (never edited once shipped: add a new one).
enum Schema {
    static func register(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v1-index") { db in
            try db.execute(sql: """
                CREATE TABLE patient (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL,
                    issuer_of_patient_id TEXT NOT NULL DEFAULT '',
                    patient_name TEXT NOT NULL DEFAULT '',
                    patient_birth_date TEXT NOT NULL DEFAULT '',
                    patient_sex TEXT NOT NULL DEFAULT '',
                    specific_character_set TEXT NOT NULL DEFAULT '',
                    UNIQUE (patient_id, issuer_of_patient_id)
                );
                CREATE TABLE study (
                    id INTEGER PRIMARY KEY,
                    patient_ref INTEGER NOT NULL REFERENCES patient(id),
                    study_instance_uid TEXT NOT NULL UNIQUE,
                    study_date TEXT NOT NULL DEFAULT '',
                    study_time TEXT NOT NULL DEFAULT '',
                    accession_number TEXT NOT NULL DEFAULT '',
                    study_id TEXT NOT NULL DEFAULT '',
                    study_description TEXT NOT NULL DEFAULT '',
                    referring_physician_name TEXT NOT NULL DEFAULT '',
                    specific_character_set TEXT NOT NULL DEFAULT '',
                    last_received_at TEXT NOT NULL
                );
                CREATE INDEX study_patient ON study(patient_ref);
                CREATE INDEX study_date_time ON study(study_date, study_time);
                CREATE INDEX study_accession ON study(accession_number);
                CREATE TABLE series (
                    id INTEGER PRIMARY KEY,
                    study_ref INTEGER NOT NULL REFERENCES study(id),
                    series_instance_uid TEXT NOT NULL UNIQUE,
                    modality TEXT NOT NULL DEFAULT '',
                    series_number TEXT NOT NULL DEFAULT '',
                    series_description TEXT NOT NULL DEFAULT '',
                    body_part_examined TEXT NOT NULL DEFAULT ''
                );
                CREATE INDEX series_study ON series(study_ref);
                CREATE INDEX series_modality ON series(modality);
                CREATE TABLE instance (
                    id INTEGER PRIMARY KEY,
                    series_ref INTEGER NOT NULL REFERENCES series(id),
                    sop_instance_uid TEXT NOT NULL,
                    sop_class_uid TEXT NOT NULL,
                    instance_number TEXT NOT NULL DEFAULT '',
                    transfer_syntax_uid TEXT NOT NULL,
                    sha256 TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    path TEXT NOT NULL,
                    calling_ae_title TEXT NOT NULL,
                    received_at TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    is_current INTEGER NOT NULL,
                    UNIQUE (sop_instance_uid, sha256)
                );
                CREATE INDEX instance_series ON instance(series_ref, is_current);
                CREATE INDEX instance_sop ON instance(sop_instance_uid, is_current);
                CREATE INDEX instance_sha ON instance(sha256);
                CREATE INDEX instance_received ON instance(received_at);
                CREATE TABLE application_entity (
                    ae_title TEXT PRIMARY KEY,
                    host TEXT,
                    port INTEGER,
                    description TEXT NOT NULL DEFAULT '',
                    added_at TEXT NOT NULL
                );
                """)
        }
        QueryIndex.register(&migrator)
        migrator.registerMigration("v2-ae-permissions") { db in
            // Who may query and retrieve, and to which destinations a calling AE may move.
            try db.execute(sql: """
                ALTER TABLE application_entity ADD COLUMN may_store INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE application_entity ADD COLUMN may_query INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE application_entity ADD COLUMN may_retrieve INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE application_entity ADD COLUMN move_destinations TEXT NOT NULL DEFAULT '*';
                """)
        }
        migrator.registerMigration("v3-ledger-index") { db in
            // Where each stored version is anchored in the ledger (its leaf index), for proofs by
            // SOP Instance UID or hash without scanning the log.
            try db.execute(sql: "ALTER TABLE instance ADD COLUMN ledger_index INTEGER")
        }
    }
}
