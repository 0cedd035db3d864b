import Foundation
import GRDB

/// Writes into the patient / study / series / instance tables.
enum Index {

    /// UTC, RFC 3339 with milliseconds: sorts as text. One formatter, made once (making one per
    /// instance cost more than the SQL).
    static func timestamp(_ date: Date) -> String {
        formatter.withLock { $0.string(from: date) }
    }

    private static let formatter: LockedValue<ISO8601DateFormatter> = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return LockedValue(f)
    }()

    /// Inserts (or finds) one received instance. Same SOP Instance UID and same bytes: a duplicate.
    /// Same SOP Instance UID with other bytes: a new version, made current; both are kept.
    static func insert(_ incoming: StoredInstance, _ db: Database) throws -> StoreOutcome {
        var instance = incoming
        let a = instance.attributes
        let received = timestamp(instance.receivedAt)

        if let row = try Row.fetchOne(db, sql: "SELECT id, version, is_current FROM instance WHERE sop_instance_uid = ? AND sha256 = ?",
                                      arguments: [a.sopInstanceUID, instance.sha256]) {
            instance.version = row["version"]
            if (row["is_current"] as Int) == 0 {
                // An older version sent again is the newest received: serve it again.
                try db.execute(sql: "UPDATE instance SET is_current = 0 WHERE sop_instance_uid = ?", arguments: [a.sopInstanceUID])
                try db.execute(sql: "UPDATE instance SET is_current = 1 WHERE id = ?", arguments: [row["id"] as Int64])
            }
            return .duplicate(instance)
        }

        let patientRef = try upsertPatient(a, db)
        let studyRef = try upsertStudy(a, patientRef: patientRef, received: received, db)
        let seriesRef = try upsertSeries(a, studyRef: studyRef, db)

        let previous = try Row.fetchOne(db, sql: """
            SELECT sha256, version FROM instance WHERE sop_instance_uid = ? ORDER BY version DESC LIMIT 1
            """, arguments: [a.sopInstanceUID])
        let version = ((previous?["version"] as Int?) ?? 0) + 1
        instance.version = version
        if previous != nil {
            try db.execute(sql: "UPDATE instance SET is_current = 0 WHERE sop_instance_uid = ?", arguments: [a.sopInstanceUID])
        }
        try db.execute(sql: """
            INSERT INTO instance (series_ref, sop_instance_uid, sop_class_uid, instance_number, transfer_syntax_uid,
                                  sha256, size, path, calling_ae_title, received_at, version, is_current)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
            """, arguments: [seriesRef, a.sopInstanceUID, a.sopClassUID, a.instanceNumber, instance.transferSyntaxUID,
                             instance.sha256, instance.size, instance.path, instance.callingAETitle, received, version])
        if let previous {
            return .newVersion(instance, previousSHA256: previous["sha256"])
        }
        return .stored(instance)
    }

    private static func upsertPatient(_ a: InstanceAttributes, _ db: Database) throws -> Int64 {
        try db.execute(sql: """
            INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, specific_character_set)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (patient_id, issuer_of_patient_id) DO UPDATE SET
                patient_name = excluded.patient_name, patient_birth_date = excluded.patient_birth_date,
                patient_sex = excluded.patient_sex, specific_character_set = excluded.specific_character_set
            """, arguments: [a.patientID, a.issuerOfPatientID, a.patientName, a.patientBirthDate, a.patientSex, a.specificCharacterSet])
        return try Int64.fetchOne(db, sql: "SELECT id FROM patient WHERE patient_id = ? AND issuer_of_patient_id = ?",
                                  arguments: [a.patientID, a.issuerOfPatientID])!
    }

    private static func upsertStudy(_ a: InstanceAttributes, patientRef: Int64, received: String, _ db: Database) throws -> Int64 {
        try db.execute(sql: """
            INSERT INTO study (patient_ref, study_instance_uid, study_date, study_time, accession_number, study_id,
                               study_description, referring_physician_name, specific_character_set, last_received_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (study_instance_uid) DO UPDATE SET
                patient_ref = excluded.patient_ref, study_date = excluded.study_date, study_time = excluded.study_time,
                accession_number = excluded.accession_number, study_id = excluded.study_id,
                study_description = excluded.study_description,
                referring_physician_name = excluded.referring_physician_name,
                specific_character_set = excluded.specific_character_set, last_received_at = excluded.last_received_at
            """, arguments: [patientRef, a.studyInstanceUID, a.studyDate, a.studyTime, a.accessionNumber, a.studyID,
                             a.studyDescription, a.referringPhysicianName, a.specificCharacterSet, received])
        return try Int64.fetchOne(db, sql: "SELECT id FROM study WHERE study_instance_uid = ?", arguments: [a.studyInstanceUID])!
    }

    private static func upsertSeries(_ a: InstanceAttributes, studyRef: Int64, _ db: Database) throws -> Int64 {
        try db.execute(sql: """
            INSERT INTO series (study_ref, series_instance_uid, modality, series_number, series_description, body_part_examined)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (series_instance_uid) DO UPDATE SET
                study_ref = excluded.study_ref, modality = excluded.modality, series_number = excluded.series_number,
                series_description = excluded.series_description, body_part_examined = excluded.body_part_examined
            """, arguments: [studyRef, a.seriesInstanceUID, a.modality, a.seriesNumber, a.seriesDescription, a.bodyPartExamined])
        return try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE series_instance_uid = ?", arguments: [a.seriesInstanceUID])!
    }
}
