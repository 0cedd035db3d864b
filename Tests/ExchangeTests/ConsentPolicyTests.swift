import Archive
import Consent
import Foundation
import GRDB
import Ledger
import Logging
import Testing
@testable import Exchange

/// The consent policy over a real archive: enrolment, grants, revocations, expiry, scope,
/// break-glass, and the site's policy for patients who enrolled no key.
@Suite(.serialized) struct ConsentPolicyTests {
    static let registered: Void = {
        Archive.registerMigrations { LedgerStore.registerMigrations(&$0) }
        ExchangeSchema.registered
    }()

    let archive: Archive
    let dir: URL

    init() throws {
        Self.registered
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("consent-\(UUID().uuidString)")
        archive = try Archive(home: dir, logger: Logger(label: "test"))
        try archive.database.write { db in
            for (n, pid) in ["P-ENROLLED", "P-OPEN"].enumerated() {
                try db.execute(sql: "INSERT INTO patient (id, patient_id) VALUES (?, ?)", arguments: [n + 1, pid])
                for s in 1...2 {
                    try db.execute(sql: "INSERT INTO study (patient_ref, study_instance_uid, last_received_at) VALUES (?, ?, '')",
                                   arguments: [n + 1, "1.2.3.\(n + 1).\(s)"])
                }
            }
        }
    }

    func peer(_ name: String, share: SharePolicy = .none) -> Peer {
        Peer(name: name, url: "https://x", caPEM: "", verifierKey: "", share: share)
    }

    func decide(_ policy: ConsentPolicy, _ peer: Peer, _ pid: String, _ study: String, breakGlass: String? = nil,
                at time: Date = Date()) throws -> AccessDecision {
        try policy.decide(StudyAccessRequest(peer: peer, studyInstanceUID: study, patientID: pid, issuerOfPatientID: "",
                                             action: "query", breakGlassReason: breakGlass, time: time))
    }

    @Test func onlyTheEnrolledPatientsValidGrantsOpenTheirStudies() throws {
        defer { archive.close(); try? FileManager.default.removeItem(at: dir) }
        let store = ConsentStore(archive: archive)
        let policy = ConsentPolicy(consents: store, breakGlassEnabled: false)
        let key = PatientKeyPair.generate()
        // Not enrolled: the site's policy for the peer decides.
        #expect(try decide(policy, peer("node-b", share: .all), "P-ENROLLED", "1.2.3.1.1").allowed)
        #expect(try !decide(policy, peer("node-b"), "P-ENROLLED", "1.2.3.1.1").allowed)
        try store.enroll(patientID: "P-ENROLLED", publicKey: key.publicKey)
        // Enrolled: even `share all` no longer opens the studies.
        #expect(try !decide(policy, peer("node-b", share: .all), "P-ENROLLED", "1.2.3.1.1").allowed)

        let grant = try ConsentGrant.sign(patientId: "P-ENROLLED", grantee: "node-b", scope: .study("1.2.3.1.1"),
                                          expires: Date().addingTimeInterval(3600), with: key)
        let recorded = try store.submit(grant.encodedDocument())
        #expect(recorded.id == grant.id)
        let allowed = try decide(policy, peer("node-b"), "P-ENROLLED", "1.2.3.1.1")
        #expect(allowed.allowed && allowed.grant == grant.id)
        #expect(try !decide(policy, peer("node-b"), "P-ENROLLED", "1.2.3.1.2").allowed, "another study of the patient")
        #expect(try !decide(policy, peer("node-c"), "P-ENROLLED", "1.2.3.1.1").allowed, "another grantee")
        #expect(try !decide(policy, peer("node-b"), "P-ENROLLED", "1.2.3.1.1", at: Date().addingTimeInterval(7200)).allowed,
                "after expiry")

        let revocation = try ConsentRevocation.sign(grant: grant.id, with: key)
        _ = try store.submit(revocation.encodedDocument())
        #expect(try !decide(policy, peer("node-b"), "P-ENROLLED", "1.2.3.1.1").allowed, "after revocation")
        #expect(try store.list(patientID: "P-ENROLLED").map(\.status) == ["revoked"])

        // The ledger names the patient by keyed hash only.
        let entries = try archive.database.read { try Data.fetchAll($0, sql: "SELECT entry FROM ledger_entries") }
        #expect(entries.count == 3)
        for e in entries { #expect(!String(decoding: e, as: UTF8.self).contains("P-ENROLLED")) }
    }

    @Test func submitRefusesWhatItCannotTrustAndRecordsNothing() throws {
        defer { archive.close(); try? FileManager.default.removeItem(at: dir) }
        let store = ConsentStore(archive: archive)
        let key = PatientKeyPair.generate(), other = PatientKeyPair.generate()
        try store.enroll(patientID: "P-ENROLLED", publicKey: key.publicKey)
        let byOther = try ConsentGrant.sign(patientId: "P-ENROLLED", grantee: "node-b", scope: .all,
                                            expires: Date().addingTimeInterval(3600), with: other)
        #expect(throws: ExchangeError.self) { try store.submit(byOther.encodedDocument()) }
        let notEnrolled = try ConsentGrant.sign(patientId: "P-OPEN", grantee: "node-b", scope: .all,
                                                expires: Date().addingTimeInterval(3600), with: key)
        #expect(throws: ExchangeError.self) { try store.submit(notEnrolled.encodedDocument()) }
        let expired = try ConsentGrant.sign(patientId: "P-ENROLLED", grantee: "node-b", scope: .all,
                                            expires: Date().addingTimeInterval(2), issued: Date().addingTimeInterval(-10), with: key)
        #expect(throws: ExchangeError.self) { try store.submit(expired.encodedDocument(), now: Date().addingTimeInterval(5)) }
        var tampered = String(decoding: try ConsentGrant.sign(patientId: "P-ENROLLED", grantee: "node-b", scope: .all,
                                                              expires: Date().addingTimeInterval(3600), with: key).encodedDocument(), as: UTF8.self)
        tampered = tampered.replacingOccurrences(of: "node-b", with: "node-x")
        #expect(throws: ExchangeError.self) { try store.submit(Data(tampered.utf8)) }
        #expect(try store.list(patientID: nil).isEmpty)
        #expect(throws: ExchangeError.self) { try store.enroll(patientID: "NOT-HERE", publicKey: key.publicKey) }
    }

    @Test func breakGlassOnlyWhereEnabled() throws {
        defer { archive.close(); try? FileManager.default.removeItem(at: dir) }
        let store = ConsentStore(archive: archive)
        try store.enroll(patientID: "P-ENROLLED", publicKey: PatientKeyPair.generate().publicKey)
        let off = ConsentPolicy(consents: store, breakGlassEnabled: false)
        let on = ConsentPolicy(consents: store, breakGlassEnabled: true)
        #expect(try !decide(off, peer("node-b"), "P-ENROLLED", "1.2.3.1.1", breakGlass: "ER").allowed)
        let d = try decide(on, peer("node-b"), "P-ENROLLED", "1.2.3.1.1", breakGlass: "unconscious patient in ER")
        #expect(d.allowed && d.breakGlass && d.reason.contains("unconscious patient in ER"))
        var equivocating = peer("node-b", share: .all)
        equivocating.equivocation = "two roots"
        #expect(try !decide(on, equivocating, "P-OPEN", "1.2.3.2.1", breakGlass: "ER").allowed)
    }
}
