import Archive
import Foundation
import GRDB
import Ledger
import Logging

/// Records every access decision: an "access" event on the ledger (the patient by keyed hash
/// only) and a message in the site's ATNA audit log (file or syslog), and a log line.
///
/// A peer's fetch asks for each instance; one access event per peer, study, action, outcome and
/// reason per minute stands for them (the first request of a burst), so that the audit trail says what
/// happened without one ledger entry per file.
public final class AccessAuditor: @unchecked Sendable {
    let archive: Archive
    let logger: Logger
    let atna: (@Sendable (AuditRecord) -> Void)?
    private let recent = LockedValue<[String: Date]>([:])
    static let burst: TimeInterval = 60

    public init(archive: Archive, logger: Logger, atna: (@Sendable (AuditRecord) -> Void)?) {
        self.archive = archive
        self.logger = logger
        self.atna = atna
    }

    public func record(_ r: AuditRecord) {
        let requester: String
        switch r.requester {
        case .node(let name): requester = "node:" + name
        case .ae(let title, _): requester = "ae:" + title
        }
        // The reason too: a refusal for another reason (a break-glass attempt after an ordinary
        // refusal, a revoked grant) is an event of its own, not hidden in the burst.
        let key = "\(requester)|\(r.studyInstanceUID)|\(r.action)|\(r.allowed)|\(r.breakGlass)|\(r.reason)"
        let repeated = recent.withLock { map -> Bool in
            if map.count > 10_000 { map = map.filter { r.time.timeIntervalSince($0.value) < Self.burst } }
            if let last = map[key], r.time.timeIntervalSince(last) < Self.burst { return true }
            map[key] = r.time
            return false
        }
        let meta: Logger.Metadata = ["requester": "\(requester)", "study-instance-uid": "\(r.studyInstanceUID)", "action": "\(r.action)",
                                     "reason": "\(r.reason)", "grant": "\(r.grant ?? "none")"]
        if r.breakGlass {
            logger.warning("BREAK-GLASS access", metadata: meta)
        } else if r.allowed {
            logger.info("access allowed", metadata: meta)
        } else {
            logger.warning("access denied", metadata: meta)
        }
        if repeated { return }
        do {
            try archive.database.write { db in
                let hash = try ConsentStore.patientHash(r.patientID, db)
                let event = try AccessRecorded(requester: requester, studyInstanceUID: r.studyInstanceUID, patient: hash, action: r.action,
                                               allowed: r.allowed, reason: r.reason, grant: r.grant, breakGlass: r.breakGlass, time: r.time)
                _ = try LedgerStore.append([event.encode()], in: db)
            }
        } catch {
            logger.error("cannot record an access event in the ledger", metadata: ["error": "\(error)"])
        }
        atna?(r)
    }
}

/// An access event as `audit` lists it.
public struct AccessEntry: Codable, Sendable, Equatable {
    public var time: String
    public var requester: String
    public var study: String
    public var action: String
    public var outcome: String
    public var reason: String
    public var grant: String?
    public var breakGlass: Bool
    /// The node whose ledger holds it.
    public var site: String
    public var ledgerIndex: UInt64

    enum CodingKeys: String, CodingKey { case time, requester, study, action, outcome, reason, grant, breakGlass, site, ledgerIndex }

    /// `grant` is written as null when there is none (scripts read the key in every event).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(time, forKey: .time)
        try c.encode(requester, forKey: .requester)
        try c.encode(study, forKey: .study)
        try c.encode(action, forKey: .action)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(reason, forKey: .reason)
        if let grant { try c.encode(grant, forKey: .grant) } else { try c.encodeNil(forKey: .grant) }
        try c.encode(breakGlass, forKey: .breakGlass)
        try c.encode(site, forKey: .site)
        try c.encode(ledgerIndex, forKey: .ledgerIndex)
    }
}

extension AccessAuditor {
    /// Access events of this node's ledger, optionally only those of one patient.
    public static func entries(archive: Archive, site: String, patientID: String?) throws -> [AccessEntry] {
        try archive.database.read { db in
            let hash = try patientID.map { try ConsentStore.patientHash($0, db) }
            var out: [AccessEntry] = []
            let rows = try Row.fetchCursor(db, sql: "SELECT leaf_index, entry FROM ledger_entries WHERE CAST(entry AS TEXT) LIKE 'dicom-bridge/event/v1 access\n%' ESCAPE '!' ORDER BY leaf_index")
            while let row = try rows.next() {
                guard case .access(let e)? = try? LedgerEvent.decode(row["entry"] as Data) else { continue }
                if let hash, e.patient != hash { continue }
                out.append(AccessEntry(time: Timestamp.rfc3339(millis: e.timeMillis), requester: e.requester, study: e.studyInstanceUID,
                                       action: e.action, outcome: e.allowed ? "allowed" : "denied", reason: e.reason, grant: e.grant,
                                       breakGlass: e.breakGlass, site: site, ledgerIndex: UInt64(row["leaf_index"] as Int64)))
            }
            return out
        }
    }
}
