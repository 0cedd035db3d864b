import Foundation
import FoundationXML
import Logging
import Testing

@testable import Exchange

@Suite("ATNATests")
struct ATNATests {
    // 2024-03-05 06:07:08.250 UTC
    static let time = Date(timeIntervalSince1970: 1_709_618_828.25)
    static let studyUID = "1.2.826.0.1.3680043.8.498.100"
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let schema = repo.appendingPathComponent("testdata/audit/dicom-audit-message.rng").path

    static func record(
        requester: AuditRecord.Requester = .node("bridge-b"), action: String = "retrieve-instances", allowed: Bool = true,
        reason: String = "consent grant", grant: String? = "g-123", breakGlass: Bool = false,
        patientID: String = "PAT001", issuer: String = "2.16.840.1.113883.3.999", source: String = "bridge-a"
    ) -> AuditRecord {
        AuditRecord(time: time, requester: requester, auditSource: source, studyInstanceUID: studyUID, patientID: patientID,
                    issuerOfPatientID: issuer, action: action, allowed: allowed, reason: reason, grant: grant, breakGlass: breakGlass)
    }

    static func parse(_ xml: String) throws -> XMLElement {
        let doc = try XMLDocument(data: Data(xml.utf8), options: [])
        return try #require(doc.rootElement())
    }

    static func nodes(_ root: XMLElement, _ path: String) throws -> [XMLElement] {
        try root.nodes(forXPath: path).compactMap { $0 as? XMLElement }
    }

    static func attr(_ e: XMLElement?, _ name: String) -> String? {
        e?.attribute(forName: name)?.stringValue
    }

    static func details(_ root: XMLElement) throws -> [String: String] {
        var out: [String: String] = [:]
        for d in try nodes(root, "/AuditMessage/ParticipantObjectIdentification/ParticipantObjectDetail") {
            let value = try #require(Data(base64Encoded: attr(d, "value") ?? ""))
            out[attr(d, "type") ?? ""] = String(decoding: value, as: UTF8.self)
        }
        return out
    }

    // MARK: xmllint

    static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// (valid, xmllint's output), or nil when xmllint is missing outside CI. In CI (CI=true) a
    /// missing xmllint fails the test.
    static func validate(_ xml: String) throws -> (Bool, String)? {
        guard let xmllint = which("xmllint") else {
            let ci = ProcessInfo.processInfo.environment["CI"] == "true"
            #expect(!ci, "xmllint is required in CI (Debian: libxml2-utils)")
            return nil
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atna-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("message.xml")
        try Data(xml.utf8).write(to: file)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: xmllint)
        p.arguments = ["--noout", "--relaxng", schema, file.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus == 0, String(decoding: out, as: UTF8.self))
    }

    static func expectValid(_ xml: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard let (ok, out) = try validate(xml) else { return }
        #expect(ok, "does not validate against the DICOM audit message schema: \(out)\n\(xml)", sourceLocation: sourceLocation)
    }

    // MARK: tests

    @Test func allowedRetrieveByPeerNode() throws {
        let xml = ATNAMessage.xml(Self.record())
        #expect(!xml.contains("\n"))
        let root = try Self.parse(xml)
        #expect(root.name == "AuditMessage")
        let ev = try #require(Self.nodes(root, "/AuditMessage/EventIdentification").first)
        #expect(Self.attr(ev, "EventActionCode") == "E")
        #expect(Self.attr(ev, "EventOutcomeIndicator") == "0")
        #expect(Self.attr(ev, "EventDateTime") == "2024-03-05T06:07:08.250Z")
        let id = try Self.nodes(root, "/AuditMessage/EventIdentification/EventID").first
        #expect(Self.attr(id, "csd-code") == "110102")
        #expect(Self.attr(id, "codeSystemName") == "DCM")
        #expect(Self.attr(id, "originalText") == "Begin Transferring DICOM Instances")
        #expect(try Self.nodes(root, "/AuditMessage/EventIdentification/PurposeOfUse").isEmpty)

        let participants = try Self.nodes(root, "/AuditMessage/ActiveParticipant")
        #expect(participants.count == 2)
        #expect(Self.attr(participants[0], "UserID") == "bridge-b")
        #expect(Self.attr(participants[0], "UserIsRequestor") == "true")
        #expect(Self.attr(participants[0], "NetworkAccessPointID") == nil)
        #expect(Self.attr(try Self.nodes(participants[0], "RoleIDCode").first, "csd-code") == "110152")
        #expect(Self.attr(participants[1], "UserID") == "bridge-a")
        #expect(Self.attr(participants[1], "UserIsRequestor") == "false")
        #expect(Self.attr(try Self.nodes(participants[1], "RoleIDCode").first, "csd-code") == "110153")

        let source = try Self.nodes(root, "/AuditMessage/AuditSourceIdentification").first
        #expect(Self.attr(source, "AuditSourceID") == "bridge-a")

        let objects = try Self.nodes(root, "/AuditMessage/ParticipantObjectIdentification")
        #expect(objects.count == 2)
        let study = objects[0], patient = objects[1]
        #expect(Self.attr(study, "ParticipantObjectID") == Self.studyUID)
        #expect(Self.attr(study, "ParticipantObjectTypeCode") == "2")
        #expect(Self.attr(study, "ParticipantObjectTypeCodeRole") == "3")
        #expect(Self.attr(try Self.nodes(study, "ParticipantObjectIDTypeCode").first, "csd-code") == "110180")
        #expect(Self.attr(patient, "ParticipantObjectID") == "PAT001^^^&2.16.840.1.113883.3.999&ISO")
        #expect(Self.attr(patient, "ParticipantObjectTypeCode") == "1")
        #expect(Self.attr(patient, "ParticipantObjectTypeCodeRole") == "1")
        let patientType = try Self.nodes(patient, "ParticipantObjectIDTypeCode").first
        #expect(Self.attr(patientType, "csd-code") == "2")
        #expect(Self.attr(patientType, "codeSystemName") == "RFC-3881")
        #expect(Self.attr(patientType, "originalText") == "Patient Number")

        let details = try Self.details(root)
        #expect(details == ["Action": "retrieve-instances", "Decision": "allowed", "Reason": "consent grant", "Grant": "g-123"])
        try Self.expectValid(xml)
    }

    @Test func deniedCMoveByWorkstation() throws {
        let r = Self.record(requester: .ae("WS_01", host: "192.168.1.20"), action: "c-move", allowed: false,
                            reason: "no grant for this requester", grant: nil)
        let xml = ATNAMessage.xml(r)
        let root = try Self.parse(xml)
        let ev = try Self.nodes(root, "/AuditMessage/EventIdentification").first
        #expect(Self.attr(ev, "EventOutcomeIndicator") == "4")
        #expect(Self.attr(try Self.nodes(root, "/AuditMessage/EventIdentification/EventID").first, "csd-code") == "110102")
        #expect(try Self.nodes(root, "/AuditMessage/EventIdentification/EventOutcomeDescription").first?.stringValue
                    == "no grant for this requester")
        let requester = try Self.nodes(root, "/AuditMessage/ActiveParticipant").first
        #expect(Self.attr(requester, "UserID") == "WS_01")
        #expect(Self.attr(requester, "AlternativeUserID") == "AETITLES=WS_01")
        #expect(Self.attr(requester, "NetworkAccessPointID") == "192.168.1.20")
        #expect(Self.attr(requester, "NetworkAccessPointTypeCode") == "2")
        #expect(Self.attr(requester, "UserIsRequestor") == "true")
        let details = try Self.details(root)
        #expect(details["Decision"] == "denied")
        #expect(details["Grant"] == nil)
        try Self.expectValid(xml)
    }

    @Test func cMoveNamesItsDestinationAsTheReceivingProcess() throws {
        var r = Self.record(requester: .ae("WS_01", host: "192.168.1.20"), action: "c-move", grant: nil)
        r.moveDestination = "PACS_RX"
        let xml = ATNAMessage.xml(r)
        let root = try Self.parse(xml)
        let participants = try Self.nodes(root, "/AuditMessage/ActiveParticipant")
        let destination = participants.first { Self.attr($0, "UserID") == "PACS_RX" }
        #expect(Self.attr(destination, "UserIsRequestor") == "false")
        #expect(Self.attr(destination, "AlternativeUserID") == "AETITLES=PACS_RX")
        let role = try destination?.nodes(forXPath: "RoleIDCode").first as? XMLElement
        #expect(Self.attr(role, "csd-code") == "110152")
        try Self.expectValid(xml)
    }

    @Test func eventPerAction() throws {
        let expected: [(String, String, String, String?, String)] = [
            // action, EventID, EventActionCode, requester role, node role
            ("query", "110112", "E", "110153", "110152"),
            ("c-find", "110112", "E", "110153", "110152"),
            ("retrieve-document", "110106", "R", "110152", "110153"),
            ("retrieve-instances", "110102", "E", "110152", "110153"),
            ("c-get", "110102", "E", "110152", "110153"),
            ("c-move", "110102", "E", nil, "110153"),
        ]
        for (action, id, code, requesterRole, nodeRole) in expected {
            for requester in [AuditRecord.Requester.node("bridge-b"), .ae("WS", host: "ws.example.org")] {
                for allowed in [true, false] {
                    let xml = ATNAMessage.xml(Self.record(requester: requester, action: action, allowed: allowed))
                    let root = try Self.parse(xml)
                    #expect(Self.attr(try Self.nodes(root, "/AuditMessage/EventIdentification/EventID").first, "csd-code") == id, "\(action)")
                    #expect(Self.attr(try Self.nodes(root, "/AuditMessage/EventIdentification").first, "EventActionCode") == code, "\(action)")
                    let ps = try Self.nodes(root, "/AuditMessage/ActiveParticipant")
                    #expect(Self.attr(try Self.nodes(ps[0], "RoleIDCode").first, "csd-code") == requesterRole, "\(action)")
                    #expect(Self.attr(try Self.nodes(ps[1], "RoleIDCode").first, "csd-code") == nodeRole, "\(action)")
                    if case .ae = requester { #expect(Self.attr(ps[0], "NetworkAccessPointTypeCode") == "1") }
                    try Self.expectValid(xml)
                }
            }
        }
    }

    @Test func breakGlass() throws {
        let xml = ATNAMessage.xml(Self.record(action: "retrieve-instances", reason: "emergency", grant: nil, breakGlass: true))
        let root = try Self.parse(xml)
        let type = try Self.nodes(root, "/AuditMessage/EventIdentification/EventTypeCode").first
        #expect(Self.attr(type, "csd-code") == "110127")
        #expect(Self.attr(type, "originalText") == "Emergency Override Started")
        let purpose = try Self.nodes(root, "/AuditMessage/EventIdentification/PurposeOfUse").first
        #expect(Self.attr(purpose, "csd-code") == "ETREAT")
        #expect(Self.attr(purpose, "codeSystemName") == "2.16.840.1.113883.5.8")
        #expect(try Self.details(root)["BreakGlass"] == "true")
        try Self.expectValid(xml)
    }

    @Test func escaping() throws {
        let nasty = "a<b>&c\"d'e\tf\ng\u{1}h"
        let r = Self.record(requester: .ae("A&<>\"'", host: "host<1>"), reason: nasty, grant: "g&<", patientID: "P^1&2",
                            issuer: "Hospital & Co", source: "node\"'<&>")
        let xml = ATNAMessage.xml(r)
        #expect(!xml.contains("\n"))
        #expect(!xml.contains("\u{1}"))
        let root = try Self.parse(xml)
        let ps = try Self.nodes(root, "/AuditMessage/ActiveParticipant")
        #expect(Self.attr(ps[0], "UserID") == "A&<>\"'")
        #expect(Self.attr(ps[0], "NetworkAccessPointID") == "host<1>")
        #expect(Self.attr(ps[1], "UserID") == "node\"'<&>")
        #expect(Self.attr(try Self.nodes(root, "/AuditMessage/AuditSourceIdentification").first, "AuditSourceID") == "node\"'<&>")
        #expect(try Self.nodes(root, "/AuditMessage/EventIdentification/EventOutcomeDescription").first?.stringValue
                    == "a<b>&c\"d'e\tf\ng\u{FFFD}h")
        let patient = try Self.nodes(root, "/AuditMessage/ParticipantObjectIdentification")[1]
        #expect(Self.attr(patient, "ParticipantObjectID") == "P\\S\\1\\T\\2^^^Hospital \\T\\ Co")
        let details = try Self.details(root)
        #expect(details["Reason"] == nasty)
        #expect(details["Grant"] == "g&<")
        try Self.expectValid(xml)
    }

    @Test func cxForms() {
        #expect(ATNAMessage.cx("123", issuer: "") == "123")
        #expect(ATNAMessage.cx("123", issuer: "1.2.3") == "123^^^&1.2.3&ISO")
        #expect(ATNAMessage.cx("123", issuer: "HOSP") == "123^^^HOSP")
        #expect(ATNAMessage.cx("a|b~c\\d", issuer: "01.2") == "a\\F\\b\\R\\c\\E\\d^^^01.2")
    }

    /// The schema check can fail: a message without AuditSourceIdentification, or with an
    /// outcome the standard does not define, does not validate.
    @Test func schemaRejectsBrokenMessages() throws {
        let xml = ATNAMessage.xml(Self.record())
        let noSource = try #require(xml.range(of: "<AuditSourceIdentification")).lowerBound
        let end = try #require(xml.range(of: "</AuditSourceIdentification>")).upperBound
        var broken = xml
        broken.removeSubrange(noSource..<end)
        _ = try Self.parse(broken)  // well-formed, just not a DICOM audit message
        if let (ok, _) = try Self.validate(broken) { #expect(!ok) }
        let badOutcome = xml.replacingOccurrences(of: "EventOutcomeIndicator=\"0\"", with: "EventOutcomeIndicator=\"3\"")
        if let (ok, _) = try Self.validate(badOutcome) { #expect(!ok) }
        let noPatientCode = xml.replacingOccurrences(of: "<ParticipantObjectIDTypeCode csd-code=\"2\" codeSystemName=\"RFC-3881\" originalText=\"Patient Number\"/>", with: "")
        #expect(noPatientCode != xml)
        if let (ok, _) = try Self.validate(noPatientCode) { #expect(!ok) }
    }

    @Test func auditLogFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atna-log-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("audit.log").path
        let log = AuditLog(file: path, syslog: false, logger: Logger(label: "test"))
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)

        let count = 200
        DispatchQueue.concurrentPerform(iterations: count) { i in
            log.write(Self.record(reason: String(repeating: "r\(i) ", count: 200)))
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == count + 1)
        #expect(lines.last == "")
        for line in lines.dropLast() {
            #expect(line.hasPrefix("<?xml"))
            #expect(line.hasSuffix("</AuditMessage>"))
            _ = try Self.parse(String(line))
        }
    }

    @Test func auditLogUnwritableFileDoesNotCrash() {
        let log = AuditLog(file: "/nonexistent-dir-\(UUID().uuidString)/audit.log", syslog: false, logger: Logger(label: "test"))
        log.write(Self.record())
    }
}
