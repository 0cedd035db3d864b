import GRDB

/// The indexes the C-FIND engine relies on, beyond those of "v1-index" (study_date_time,
/// study_accession, series_study, series_modality, instance_series, instance_sop and the UNIQUE
/// constraints on patient_id + issuer and on the UIDs).
///
/// To be registered after "v1-index", from `Schema.register`. Registering it twice is harmless.
public enum QueryIndex {
    public static let migrationIdentifier = "v2-query-indexes"

    public static func register(_ migrator: inout DatabaseMigrator) {
        guard !migrator.migrations.contains(migrationIdentifier) else { return }
        migrator.registerMigration(migrationIdentifier) { db in
            try db.execute(sql: """
                -- Patient's Name and Referring Physician's Name: case-insensitive prefix ranges
                -- (ASCII NOCASE) narrow the rows that dicom_pn_match then checks exactly.
                CREATE INDEX query_patient_name ON patient(patient_name COLLATE NOCASE);
                CREATE INDEX query_study_referring_physician ON study(referring_physician_name COLLATE NOCASE);
                CREATE INDEX query_patient_birth_date ON patient(patient_birth_date);
                CREATE INDEX query_study_id ON study(study_id);
                -- Modalities in Study: studies that have a series of a modality, without visiting
                -- the series table.
                CREATE INDEX query_series_modality_study ON series(modality, study_ref);
                """)
        }
    }
}

extension Archive {
    /// Registers the query engine's migrations (see `QueryIndex`).
    public static func registerQueryMigrations(_ migrator: inout DatabaseMigrator) {
        QueryIndex.register(&migrator)
    }
}
