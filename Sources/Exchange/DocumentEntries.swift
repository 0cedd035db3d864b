import Archive
import Foundation
import GRDB
import Ledger

/// The XDS document entries of the manifests this node published, built from the index.
public struct DocumentEntries: Sendable {
    let archive: Archive
    let settings: ExchangeSettings

    public init(archive: Archive, settings: ExchangeSettings) {
        self.archive = archive
        self.settings = settings
    }

    /// Studies of a patient (by Patient ID, and Issuer of Patient ID when given) that have a manifest.
    public func studies(patientID: String, issuer: String?) throws -> [String] {
        try archive.database.read { db in
            var sql = """
                SELECT DISTINCT s.study_instance_uid FROM study s JOIN patient p ON p.id = s.patient_ref
                JOIN manifest m ON m.study_instance_uid = s.study_instance_uid
                WHERE p.patient_id = ?
                """
            var args: [any DatabaseValueConvertible] = [patientID]
            if let issuer { sql += " AND p.issuer_of_patient_id = ?"; args.append(issuer) }
            return try String.fetchAll(db, sql: sql + " ORDER BY s.study_date, s.study_instance_uid", arguments: StatementArguments(args))
        }
    }

    public func hasManifest(study: String) throws -> Bool {
        try archive.database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM manifest WHERE study_instance_uid = ?)", arguments: [study]) ?? false
        }
    }

    /// The entry of the study's current manifest (and, with `includeReplaced`, the deprecated ones).
    public func entries(study: String, includeReplaced: Bool = false) throws -> [DocumentEntry] {
        let manifests = try archive.database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM manifest WHERE study_instance_uid = ? \(includeReplaced ? "" : "AND is_current = 1") ORDER BY id DESC",
                             arguments: [study]).map(PublishedManifest.init(row:))
        }
        return try manifests.map { try entry($0) }
    }

    public func entry(_ m: PublishedManifest) throws -> DocumentEntry {
        let row = try archive.database.read { db in
            try Row.fetchOne(db, sql: """
                SELECT s.*, p.patient_id, p.issuer_of_patient_id FROM study s JOIN patient p ON p.id = s.patient_ref
                WHERE s.study_instance_uid = ?
                """, arguments: [m.studyInstanceUID])
        }
        guard let row else { throw ExchangeError("no study \(m.studyInstanceUID)") }
        func nonEmpty(_ s: String) -> String? { s.isEmpty ? nil : s }
        let base = settings.publicURL.hasSuffix("/") ? String(settings.publicURL.dropLast()) : settings.publicURL
        let created = Timestamp.parseMillis(m.createdAt).map { Timestamp.date(millis: $0) } ?? Date()
        let input = DocumentEntryInput(
            document: .digests(sha1: m.sha1, sha256: m.sha256, size: m.size),
            kosSOPInstanceUID: m.sopInstanceUID, studyInstanceUID: m.studyInstanceUID,
            patientID: row["patient_id"], issuerOfPatientID: nonEmpty(row["issuer_of_patient_id"]),
            affinityDomainOID: settings.affinityDomainOID, nodeOID: settings.nodeOID, codes: settings.codes,
            studyDate: nonEmpty(row["study_date"]), studyTime: nonEmpty(row["study_time"]),
            studyDescription: nonEmpty(row["study_description"]), accessionNumber: nonEmpty(row["accession_number"]),
            creationDate: created, status: m.isCurrent ? .approved : .deprecated, ledgerIndex: m.ledgerIndex,
            retrieveURL: "\(base)/documents/\(m.sopInstanceUID)")
        return DocumentEntry(input)
    }
}
