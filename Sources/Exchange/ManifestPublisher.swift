import Archive
import Crypto
import DICOM
import DICOMNetwork
import Foundation
import GRDB
import Ledger
import Logging

/// A manifest this node published.
public struct PublishedManifest: Codable, Sendable, Equatable {
    public var studyInstanceUID: String
    public var sopInstanceUID: String
    public var sha256: String
    public var sha1: String
    public var size: Int64
    public var instanceCount: Int
    public var instancesRoot: String
    public var replaces: String?
    public var ledgerIndex: UInt64
    public var createdAt: String
    public var isCurrent: Bool

    init(row: Row) {
        studyInstanceUID = row["study_instance_uid"]
        sopInstanceUID = row["sop_instance_uid"]
        sha256 = row["sha256"]
        sha1 = row["sha1"]
        size = row["size"]
        instanceCount = row["instance_count"]
        instancesRoot = row["instances_root"]
        replaces = row["replaces"]
        ledgerIndex = UInt64(row["ledger_index"] as Int64)
        createdAt = row["created_at"]
        isCurrent = (row["is_current"] as Int) != 0
    }
}

/// One instance a manifest commits to.
public struct ManifestMember: Codable, Sendable, Equatable {
    public var seriesInstanceUID: String
    public var sopInstanceUID: String
    public var sopClassUID: String
    public var sha256: String
    public var size: Int64
    public var transferSyntaxUID: String
}

/// Builds, stores and anchors XDS-I.b imaging manifests: one per complete study, a new one
/// (replacing the old, both kept in the ledger) whenever the study's set of instances changes.
public final class ManifestPublisher: @unchecked Sendable {
    let archive: Archive
    let settings: ExchangeSettings
    let logger: Logger
    /// One publication at a time: two could otherwise both replace the same manifest.
    private let lock = NSLock()

    public init(archive: Archive, settings: ExchangeSettings, logger: Logger) {
        self.archive = archive
        self.settings = settings
        self.logger = logger
    }

    /// Studies that had no new instance for `studyCompleteSeconds` and whose manifest (if any)
    /// predates their last instance.
    public func studiesDue(now: Date = Date()) throws -> [String] {
        let cutoff = Timestamp.rfc3339(now.addingTimeInterval(-settings.studyCompleteSeconds))
        return try archive.database.read { db in
            try String.fetchAll(db, sql: """
                SELECT s.study_instance_uid FROM study s
                LEFT JOIN manifest m ON m.study_instance_uid = s.study_instance_uid AND m.is_current = 1
                WHERE (m.id IS NULL OR s.last_received_at > m.covers_through) AND s.last_received_at <= ?
                ORDER BY s.last_received_at
                """, arguments: [cutoff])
        }
    }

    /// Publishes the manifest of `study` if its instances changed since the last one (or it has
    /// none). Returns the new manifest, or nil when the current one still describes the study.
    @discardableResult
    public func publish(study: String) throws -> PublishedManifest? {
        lock.lock()
        defer { lock.unlock() }
        let snapshot = try archive.database.read { db in try Self.snapshot(study: study, db) }
        guard let snapshot else { throw ExchangeError("no study \(study) in the archive") }
        let root = try ManifestPublished.instancesRoot(sha256s: snapshot.members.map(\.sha256))
        if let previous = snapshot.previous, previous.instancesRoot == root {
            // Nothing changed (an identical resend, say): the current manifest still holds.
            try archive.database.write { db in
                try db.execute(sql: "UPDATE manifest SET covers_through = ? WHERE sop_instance_uid = ?",
                               arguments: [snapshot.lastReceivedAt, previous.sopInstanceUID])
            }
            return nil
        }
        guard !snapshot.members.isEmpty else { return nil }
        if snapshot.onlyFromPeers {
            // A copy of another site's study: that site publishes its manifest, not us.
            try archive.database.write { db in
                try db.execute(sql: "UPDATE manifest SET covers_through = ? WHERE study_instance_uid = ? AND is_current = 1",
                               arguments: [snapshot.lastReceivedAt, study])
            }
            return nil
        }

        let now = Date()
        let kosUID = UID.generate()
        let bytes = try encode(snapshot, kosUID: kosUID, now: now)
        let sha1 = Hex.encode(Insecure.SHA1.hash(data: bytes))
        let incoming = try archive.beginImport(sopClassUID: UID.keyObjectSelectionDocument, sopInstanceUID: kosUID,
                                               transferSyntaxUID: TransferSyntax.explicitVRLittleEndian,
                                               sourceName: settings.aeTitle, origin: .local)
        bytes.withUnsafeBytes { _ = incoming.write($0) }
        var attributes = snapshot.attributes
        attributes.sopInstanceUID = kosUID
        attributes.sopClassUID = UID.keyObjectSelectionDocument
        attributes.seriesInstanceUID = snapshot.kosSeriesUID
        attributes.modality = "KO"
        attributes.seriesNumber = "9999"
        attributes.seriesDescription = "Imaging manifest (XDS-I.b)"
        attributes.bodyPartExamined = ""
        attributes.instanceNumber = "1"
        let published = LockedValue<PublishedManifest?>(nil)
        let members = snapshot.members
        let replaces = snapshot.previous?.sopInstanceUID
        let outcome = try archive.commit(incoming, attributes: attributes) { db, outcome in
            let stored = outcome.instance
            let event = try ManifestPublished(
                studyInstanceUID: study, manifestSOPInstanceUID: kosUID, manifestSHA256: stored.sha256,
                manifestSize: UInt64(stored.size), instanceCount: UInt64(members.count), instancesRoot: root,
                replaces: replaces, publishedAt: now)
            let index = try LedgerStore.append([event.encode()], in: db)[0]
            let coversThrough = try String.fetchOne(db, sql: "SELECT last_received_at FROM study WHERE study_instance_uid = ?",
                                                    arguments: [study]) ?? ""
            try db.execute(sql: "UPDATE manifest SET is_current = 0 WHERE study_instance_uid = ?", arguments: [study])
            try db.execute(sql: """
                INSERT INTO manifest (study_instance_uid, sop_instance_uid, sha256, sha1, size, instance_count, instances_root,
                                      replaces, ledger_index, created_at, covers_through, is_current)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
                """, arguments: [study, kosUID, stored.sha256, sha1, stored.size, members.count, root, replaces,
                                 Int64(index), Timestamp.rfc3339(now), coversThrough])
            let ref = db.lastInsertedRowID
            for m in members {
                try db.execute(sql: """
                    INSERT INTO manifest_instance (manifest_ref, series_instance_uid, sop_instance_uid, sop_class_uid, sha256, size,
                                                   transfer_syntax_uid) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [ref, m.seriesInstanceUID, m.sopInstanceUID, m.sopClassUID, m.sha256, m.size, m.transferSyntaxUID])
            }
            let row = try Row.fetchOne(db, sql: "SELECT * FROM manifest WHERE id = ?", arguments: [ref])!
            published.withLock { $0 = PublishedManifest(row: row) }
        }
        guard let manifest = published.withLock({ $0 }) else {
            throw ExchangeError("the manifest of study \(study) was not recorded (\(outcome))")
        }
        logger.notice(replaces == nil ? "published the imaging manifest of a complete study" : "published a new imaging manifest: the study changed",
                      metadata: ["study-instance-uid": "\(study)", "manifest": "\(kosUID)", "instances": "\(members.count)",
                                 "ledger-index": "\(manifest.ledgerIndex)", "replaces": "\(replaces ?? "none")"])
        return manifest
    }

    struct Snapshot {
        var attributes: InstanceAttributes
        var lastReceivedAt: String
        var members: [ManifestMember]
        var previous: PublishedManifest?
        var kosSeriesUID: String
        var onlyFromPeers: Bool
    }

    static func snapshot(study: String, _ db: Database) throws -> Snapshot? {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT s.*, p.patient_id, p.issuer_of_patient_id, p.patient_name, p.patient_birth_date, p.patient_sex
            FROM study s JOIN patient p ON p.id = s.patient_ref WHERE s.study_instance_uid = ?
            """, arguments: [study]) else { return nil }
        var a = InstanceAttributes()
        a.specificCharacterSet = "ISO_IR 192"
        a.patientName = row["patient_name"]
        a.patientID = row["patient_id"]
        a.issuerOfPatientID = row["issuer_of_patient_id"]
        a.patientBirthDate = row["patient_birth_date"]
        a.patientSex = row["patient_sex"]
        a.studyInstanceUID = study
        a.studyDate = row["study_date"]
        a.studyTime = row["study_time"]
        a.accessionNumber = row["accession_number"]
        a.studyID = row["study_id"]
        a.studyDescription = row["study_description"]
        a.referringPhysicianName = row["referring_physician_name"]
        let rows = try Row.fetchAll(db, sql: """
            SELECT se.series_instance_uid, i.sop_instance_uid, i.sop_class_uid, i.sha256, i.size, i.transfer_syntax_uid,
                   i.calling_ae_title
            FROM instance i JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref
            WHERE s.study_instance_uid = ? AND i.is_current = 1
              AND i.sop_instance_uid NOT IN (SELECT sop_instance_uid FROM manifest)
            ORDER BY se.series_number + 0, se.series_instance_uid, i.instance_number + 0, i.sop_instance_uid
            """, arguments: [study])
        let members = rows.map {
            ManifestMember(seriesInstanceUID: $0["series_instance_uid"], sopInstanceUID: $0["sop_instance_uid"],
                           sopClassUID: $0["sop_class_uid"], sha256: $0["sha256"], size: $0["size"],
                           transferSyntaxUID: $0["transfer_syntax_uid"])
        }
        let onlyFromPeers = !rows.isEmpty && rows.allSatisfy { ($0["calling_ae_title"] as String).hasPrefix(PeerOrigin.prefix) }
        let previous = try Row.fetchOne(db, sql: "SELECT * FROM manifest WHERE study_instance_uid = ? AND is_current = 1",
                                        arguments: [study]).map(PublishedManifest.init(row:))
        // Manifests of one study share a series of their own.
        let kosSeries = try String.fetchOne(db, sql: """
            SELECT se.series_instance_uid FROM manifest m JOIN instance i ON i.sop_instance_uid = m.sop_instance_uid
            JOIN series se ON se.id = i.series_ref WHERE m.study_instance_uid = ? LIMIT 1
            """, arguments: [study]) ?? UID.generate()
        return Snapshot(attributes: a, lastReceivedAt: row["last_received_at"], members: members, previous: previous,
                        kosSeriesUID: kosSeries, onlyFromPeers: onlyFromPeers)
    }

    /// The KOS as a Part 10 file: our File Meta group, then the dataset dcmsr wrote.
    func encode(_ s: Snapshot, kosUID: String, now: Date) throws -> Data {
        var bySeries: [(String, [ManifestInstance])] = []
        for m in s.members {
            let instance = ManifestInstance(sopClassUID: m.sopClassUID, sopInstanceUID: m.sopInstanceUID)
            if let last = bySeries.indices.last, bySeries[last].0 == m.seriesInstanceUID {
                bySeries[last].1.append(instance)
            } else {
                bySeries.append((m.seriesInstanceUID, [instance]))
            }
        }
        let a = s.attributes
        let base = settings.publicURL.hasSuffix("/") ? String(settings.publicURL.dropLast()) : settings.publicURL
        let (date, time) = Self.dicomDateTime(now)
        var request = ImagingManifestRequest(
            sopInstanceUID: kosUID, seriesInstanceUID: s.kosSeriesUID, contentDate: date, contentTime: time,
            studyInstanceUID: a.studyInstanceUID,
            series: bySeries.map { uid, instances in
                ManifestSeries(seriesInstanceUID: uid, retrieveAETitle: settings.aeTitle, retrieveLocationUID: settings.nodeOID,
                               retrieveURL: "\(base)/studies/\(a.studyInstanceUID)/series/\(uid)", instances: instances)
            })
        request.seriesNumber = 9999
        request.institutionName = settings.institutionName
        request.patientName = a.patientName
        request.patientID = a.patientID
        request.issuerOfPatientID = a.issuerOfPatientID
        request.patientBirthDate = a.patientBirthDate
        request.patientSex = a.patientSex
        request.studyDate = a.studyDate
        request.studyTime = a.studyTime
        request.referringPhysicianName = a.referringPhysicianName
        request.studyID = a.studyID
        request.accessionNumber = a.accessionNumber
        request.studyDescription = a.studyDescription
        let dataset = try KeyObjectSelection.encodeManifest(request)
        var file = Data(FileMetaInformation(sopClassUID: UID.keyObjectSelectionDocument, sopInstanceUID: kosUID,
                                            transferSyntaxUID: TransferSyntax.explicitVRLittleEndian,
                                            sourceAETitle: settings.aeTitle).encoded())
        file.append(dataset)
        return file
    }

    static func dicomDateTime(_ date: Date) -> (String, String) {
        let t = Timestamp.rfc3339(date)  // YYYY-MM-DDTHH:MM:SS.mmmZ
        let c = Array(t)
        let d = String(c[0..<4]) + String(c[5..<7]) + String(c[8..<10])
        let tm = String(c[11..<13]) + String(c[14..<16]) + String(c[17..<19])
        return (d, tm)
    }

    // MARK: Reading

    public func current(study: String) throws -> PublishedManifest? {
        try archive.database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM manifest WHERE study_instance_uid = ? AND is_current = 1", arguments: [study])
                .map(PublishedManifest.init(row:))
        }
    }

    public func manifest(uid: String) throws -> PublishedManifest? {
        try archive.database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM manifest WHERE sop_instance_uid = ?", arguments: [uid]).map(PublishedManifest.init(row:))
        }
    }

    public func members(of manifestUID: String) throws -> [ManifestMember] {
        try archive.database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT mi.* FROM manifest_instance mi JOIN manifest m ON m.id = mi.manifest_ref
                WHERE m.sop_instance_uid = ? ORDER BY mi.rowid
                """, arguments: [manifestUID]).map {
                ManifestMember(seriesInstanceUID: $0["series_instance_uid"], sopInstanceUID: $0["sop_instance_uid"],
                               sopClassUID: $0["sop_class_uid"], sha256: $0["sha256"], size: $0["size"],
                               transferSyntaxUID: $0["transfer_syntax_uid"])
            }
        }
    }
}

/// How an instance fetched from a peer is marked in the index's calling AE column.
public enum PeerOrigin {
    public static let prefix = "peer:"
}

extension ManifestPublisher {
    /// Studies with a current manifest.
    public static func publishedStudyCount(_ archive: Archive) throws -> Int {
        try archive.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM manifest WHERE is_current = 1") } ?? 0
    }
}
