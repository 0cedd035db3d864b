import Foundation
import GRDB

/// What `status` reports.
public struct ArchiveStatus: Codable, Sendable {
    public var patients: Int
    public var studies: Int
    public var series: Int
    public var instances: Int
    /// Current and older versions together.
    public var storedVersions: Int
    public var storedBytes: Int64
    public var lastReceivedAt: String?
    public var lastCallingAETitle: String?
}

extension Archive {
    public func status() throws -> ArchiveStatus {
        try database.read { db in
            let counts = try Row.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM patient) AS patients,
                       (SELECT COUNT(*) FROM study) AS studies,
                       (SELECT COUNT(*) FROM series) AS series,
                       (SELECT COUNT(*) FROM instance WHERE is_current = 1) AS instances,
                       (SELECT COUNT(*) FROM instance) AS versions,
                       (SELECT COALESCE(SUM(size), 0) FROM instance) AS bytes
                """)!
            let last = try Row.fetchOne(db, sql: "SELECT received_at, calling_ae_title FROM instance ORDER BY received_at DESC LIMIT 1")
            return ArchiveStatus(patients: counts["patients"], studies: counts["studies"], series: counts["series"],
                                 instances: counts["instances"], storedVersions: counts["versions"],
                                 storedBytes: counts["bytes"], lastReceivedAt: last?["received_at"],
                                 lastCallingAETitle: last?["calling_ae_title"])
        }
    }
}

extension Archive {
    /// Whether the index holds a study.
    public func hasStudy(_ studyInstanceUID: String) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM study WHERE study_instance_uid = ?)", arguments: [studyInstanceUID]) ?? false
        }
    }

    /// The Patient ID and Issuer of Patient ID of a study held here.
    public func patient(ofStudy studyInstanceUID: String) throws -> (id: String, issuer: String)? {
        try database.read { db in
            try Row.fetchOne(db, sql: """
                SELECT p.patient_id, p.issuer_of_patient_id FROM study s JOIN patient p ON p.id = s.patient_ref
                WHERE s.study_instance_uid = ?
                """, arguments: [studyInstanceUID]).map { ($0["patient_id"], $0["issuer_of_patient_id"]) }
        }
    }
}
