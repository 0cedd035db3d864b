import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func posixWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, bytes, count)
    #else
    return Darwin.write(fd, bytes, count)
    #endif
}

/// IHE ATNA / DICOM PS3.15 Annex A.5 ("Audit Trail Message Format Profile") audit messages for
/// access decisions.
///
/// One `AuditMessage` (A.5.1 schema, RFC 3881 style XML, no namespace) per `AuditRecord`. The
/// event chosen per action:
///
/// | action                             | EventID (DCM)                                   | EventActionCode | PS3.15     |
/// |------------------------------------|-------------------------------------------------|-----------------|------------|
/// | `query`, `c-find`                  | 110112 "Query"                                  | E               | A.5.3.10   |
/// | `retrieve-instances`, `c-get`, `c-move` | 110102 "Begin Transferring DICOM Instances" | E               | A.5.3.3    |
/// | `retrieve-document`                | 110106 "Export"                                 | R               | A.5.3.4    |
/// | anything else                      | 110103 "DICOM Instances Accessed"               | R               | A.5.3.6    |
///
/// The record is written when access is decided, before anything is sent: so a retrieve is a
/// *beginning* of a transfer (110102), not its completion (110104). A KOS manifest document
/// handed to a peer bridge leaves this site's security domain: Data Export (110106), with the
/// roles IHE ITI-43 uses for a repository (requester = Destination, this node = Source).
///
/// EventOutcomeIndicator: 0 ("nominal success") when allowed; 4 ("minor failure", which the
/// current A.5.1 schema leaves to the reporting application's definition) when denied — here it
/// means "refused by the consent policy; nothing was sent". 8 and 12 are not used: a denial is the
/// bridge working as intended, not a failure of it. The reason is in EventOutcomeDescription.
///
/// Participants:
/// - the requester, `UserIsRequestor="true"`: a peer bridge by node name; a workstation by AE
///   title (UserID and `AlternativeUserID="AETITLES=..."`, A.5.2.1) with its host as
///   NetworkAccessPointID (type 2 for an IP address, 1 for a machine name). Its RoleIDCode is
///   110152 "Destination Role ID" for a retrieve (it receives the data), 110153 "Source Role ID"
///   for a query (A.5.3.10: the process issuing the query is the source). For a C-MOVE the
///   requester is not necessarily the move destination (which `AuditRecord` does not carry): it
///   appears as a requesting participant without a role code.
/// - this node, `UserIsRequestor="false"`: 110153 "Source Role ID" when it sends data, 110152
///   "Destination Role ID" when it answers a query.
/// - AuditSourceIdentification: AuditSourceID = this node's name, AuditSourceTypeCode 4
///   ("Application Server process tier in a multi-tier system", RFC 3881).
/// - the study: ParticipantObjectTypeCode 2 (system object), role 3 (report), ID type
///   (110180, DCM, "Study Instance UID"); and ParticipantObjectDetail type/value pairs (value
///   base64, as the schema wants) "Action", "Decision" (allowed/denied), "Reason", "Grant" (when
///   there is one) and "BreakGlass" (when used).
/// - the patient: type 1 (person), role 1 (patient), ID type (2, RFC-3881, "Patient Number"),
///   ParticipantObjectID the patient ID with its issuer in HL7 v2 CX form (`ID^^^&OID&ISO` when
///   the issuer is an OID, `ID^^^ISSUER` otherwise; `^&~\|` in the parts escaped HL7-style).
/// - break-glass: PurposeOfUse (ETREAT, 2.16.840.1.113883.5.8, "Emergency Treatment") and
///   EventTypeCode (110127, DCM, "Emergency Override Started").
///
/// The message is a single line: line breaks and tabs inside values are written as character
/// references, characters XML 1.0 cannot carry are replaced by U+FFFD.
public enum ATNAMessage {
    struct Code {
        let code: String
        let system: String
        let text: String
    }

    struct Event {
        let id: Code
        let actionCode: String
        let requesterRole: Code?
        let nodeRole: Code
    }

    static let source = Code(code: "110153", system: "DCM", text: "Source Role ID")
    static let destination = Code(code: "110152", system: "DCM", text: "Destination Role ID")
    static let studyUIDType = Code(code: "110180", system: "DCM", text: "Study Instance UID")
    static let patientNumber = Code(code: "2", system: "RFC-3881", text: "Patient Number")
    static let emergencyOverride = Code(code: "110127", system: "DCM", text: "Emergency Override Started")
    static let emergencyTreatment = Code(code: "ETREAT", system: "2.16.840.1.113883.5.8", text: "Emergency Treatment")
    static let applicationServer = Code(code: "4", system: "RFC-3881", text: "Application Server process tier in a multi-tier system")

    static func event(for action: String) -> Event {
        switch action.lowercased() {
        case "query", "c-find":
            return Event(id: Code(code: "110112", system: "DCM", text: "Query"), actionCode: "E",
                         requesterRole: source, nodeRole: destination)
        case "retrieve-instances", "c-get":
            return Event(id: Code(code: "110102", system: "DCM", text: "Begin Transferring DICOM Instances"), actionCode: "E",
                         requesterRole: destination, nodeRole: source)
        case "c-move":
            return Event(id: Code(code: "110102", system: "DCM", text: "Begin Transferring DICOM Instances"), actionCode: "E",
                         requesterRole: nil, nodeRole: source)
        case "retrieve-document":
            return Event(id: Code(code: "110106", system: "DCM", text: "Export"), actionCode: "R",
                         requesterRole: destination, nodeRole: source)
        default:
            return Event(id: Code(code: "110103", system: "DCM", text: "DICOM Instances Accessed"), actionCode: "R",
                         requesterRole: nil, nodeRole: source)
        }
    }

    /// One DICOM PS3.15 A.5 audit message for `r`, on one line, with an XML declaration.
    public static func xml(_ r: AuditRecord) -> String {
        let ev = event(for: r.action)
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        x += "<AuditMessage>"

        // Event
        x += "<EventIdentification EventActionCode=\"\(ev.actionCode)\" EventDateTime=\"\(dateTime(r.time))\""
        x += " EventOutcomeIndicator=\"\(r.allowed ? "0" : "4")\">"
        x += coded("EventID", ev.id)
        if r.breakGlass { x += coded("EventTypeCode", emergencyOverride) }
        if !r.reason.isEmpty { x += "<EventOutcomeDescription>\(escape(r.reason))</EventOutcomeDescription>" }
        if r.breakGlass { x += coded("PurposeOfUse", emergencyTreatment) }
        x += "</EventIdentification>"

        // The requester
        switch r.requester {
        case .node(let name):
            x += "<ActiveParticipant UserID=\"\(escape(name))\" UserIsRequestor=\"true\">"
        case .ae(let title, let host):
            x += "<ActiveParticipant UserID=\"\(escape(title))\" AlternativeUserID=\"\(escape("AETITLES=" + title))\" UserIsRequestor=\"true\""
            if !host.isEmpty {
                x += " NetworkAccessPointID=\"\(escape(host))\" NetworkAccessPointTypeCode=\"\(isIPAddress(host) ? "2" : "1")\""
            }
            x += ">"
        }
        if let role = ev.requesterRole { x += coded("RoleIDCode", role) }
        x += "</ActiveParticipant>"

        // A C-MOVE's destination: the process receiving the data (A.5.3.3).
        if let destination = r.moveDestination {
            x += "<ActiveParticipant UserID=\"\(escape(destination))\" AlternativeUserID=\"\(escape("AETITLES=" + destination))\" UserIsRequestor=\"false\">"
            x += coded("RoleIDCode", self.destination)
            x += "</ActiveParticipant>"
        }

        // This node
        x += "<ActiveParticipant UserID=\"\(escape(r.auditSource))\" UserIsRequestor=\"false\">"
        x += coded("RoleIDCode", ev.nodeRole)
        x += "</ActiveParticipant>"

        x += "<AuditSourceIdentification AuditSourceID=\"\(escape(r.auditSource))\">"
        x += coded("AuditSourceTypeCode", applicationServer)
        x += "</AuditSourceIdentification>"

        // The study, with the decision
        x += "<ParticipantObjectIdentification ParticipantObjectID=\"\(escape(r.studyInstanceUID))\""
        x += " ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">"
        x += coded("ParticipantObjectIDTypeCode", studyUIDType)
        x += detail("Action", r.action)
        x += detail("Decision", r.allowed ? "allowed" : "denied")
        x += detail("Reason", r.reason)
        if let grant = r.grant { x += detail("Grant", grant) }
        if r.breakGlass { x += detail("BreakGlass", "true") }
        x += "</ParticipantObjectIdentification>"

        // The patient
        x += "<ParticipantObjectIdentification ParticipantObjectID=\"\(escape(cx(r.patientID, issuer: r.issuerOfPatientID)))\""
        x += " ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">"
        x += coded("ParticipantObjectIDTypeCode", patientNumber)
        x += "</ParticipantObjectIdentification>"

        x += "</AuditMessage>"
        return x
    }

    static func coded(_ element: String, _ c: Code) -> String {
        "<\(element) csd-code=\"\(escape(c.code))\" codeSystemName=\"\(escape(c.system))\" originalText=\"\(escape(c.text))\"/>"
    }

    static func detail(_ type: String, _ value: String) -> String {
        "<ParticipantObjectDetail type=\"\(escape(type))\" value=\"\(Data(value.utf8).base64EncodedString())\"/>"
    }

    /// xs:dateTime in UTC with milliseconds, e.g. 2024-03-05T06:07:08.000Z.
    static func dateTime(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    /// HL7 v2 CX: ID^^^assigning authority. An OID issuer is the universal ID (`&OID&ISO`),
    /// anything else the namespace ID. The HL7 delimiters in either part are escaped.
    static func cx(_ id: String, issuer: String) -> String {
        let id = hl7Escape(id.trimmingCharacters(in: .whitespaces))
        let issuer = issuer.trimmingCharacters(in: .whitespaces)
        if issuer.isEmpty { return id }
        if isOID(issuer) { return "\(id)^^^&\(issuer)&ISO" }
        return "\(id)^^^\(hl7Escape(issuer))"
    }

    static func hl7Escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "\\": out += "\\E\\"
            case "^": out += "\\S\\"
            case "&": out += "\\T\\"
            case "|": out += "\\F\\"
            case "~": out += "\\R\\"
            default: out.append(ch)
            }
        }
        return out
    }

    static func isOID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return false }
        return parts.allSatisfy { p in !p.isEmpty && p.allSatisfy { $0.isASCII && $0.isNumber } && (p == "0" || p.first != "0") }
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return inet_pton(AF_INET, h, &v4) == 1 || inet_pton(AF_INET6, h, &v6) == 1
    }

    /// XML 1.0 escaping, the same as the document entries' (EbRIM.escape).
    static func escape(_ s: String) -> String { EbRIM.escape(s) }
}

/// The site's ATNA audit log: one `ATNAMessage` per access decision, to a file and/or the local
/// syslog.
///
/// File: one message per line (each line a complete XML document, ending in "\n"), appended with
/// O_APPEND by a single write under a lock, so lines from concurrent callers never interleave.
/// A file it creates has mode 0600 (an existing file keeps its mode). Not fsync'ed. If the file
/// cannot be opened, every write tries again (and logs the error).
///
/// Syslog: glibc `openlog`/`syslog`, ident "dicom-bridge-atna", facility LOG_AUTHPRIV, severity
/// NOTICE for an allowed access and WARNING for a denial; the message is the single-line XML.
/// Delivery is the local syslog daemon's (/dev/log); glibc reports no errors, and a daemon may
/// truncate long messages (rsyslog's default limit is 8 KiB). `openlog` is process-wide.
///
/// Errors are logged at error level; `write` never throws or traps.
public final class AuditLog: @unchecked Sendable {
    let path: String?
    let useSyslog: Bool
    let logger: Logger
    private let lock = NSLock()
    private var fd: Int32 = -1

    nonisolated(unsafe) private static let ident: UnsafeMutablePointer<CChar> = strdup("dicom-bridge-atna")!

    public init(file: String?, syslog: Bool, logger: Logger) {
        self.path = file
        self.useSyslog = syslog
        self.logger = logger
        if file != nil {
            lock.lock()
            _ = openIfNeeded()
            lock.unlock()
        }
        if syslog {
            openlog(Self.ident, LOG_PID | LOG_NDELAY, LOG_AUTHPRIV)
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Must be called with the lock held.
    private func openIfNeeded() -> Bool {
        if fd >= 0 { return true }
        guard let path else { return false }
        let f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        if f < 0 {
            let err = String(cString: strerror(errno))
            logger.error("cannot open the ATNA audit log", metadata: ["path": "\(path)", "error": "\(err)"])
            return false
        }
        fd = f
        return true
    }

    public func write(_ r: AuditRecord) {
        let message = ATNAMessage.xml(r)
        if path != nil { append(message) }
        if useSyslog {
            let priority = LOG_AUTHPRIV | (r.allowed ? LOG_NOTICE : LOG_WARNING)
            message.withCString { text in
                withVaList([text]) { vsyslog(priority, "%s", $0) }
            }
        }
    }

    private func append(_ message: String) {
        let line = Array((message + "\n").utf8)
        lock.lock()
        defer { lock.unlock() }
        guard openIfNeeded() else { return }
        var written = 0
        while written < line.count {
            let n = line.withUnsafeBytes { buf in
                posixWrite(fd, buf.baseAddress! + written, buf.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                let err = String(cString: strerror(errno))
                logger.error("cannot write to the ATNA audit log", metadata: ["path": "\(path ?? "")", "error": "\(err)"])
                // A broken descriptor (e.g. the file's filesystem went away): reopen next time.
                close(fd)
                fd = -1
                return
            }
            written += n
        }
    }
}
