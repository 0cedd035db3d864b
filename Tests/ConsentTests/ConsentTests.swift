import Consent
import Foundation
import Testing

/// RFC 8032 §7.1 test 1.
let rfc8032Seed = Data(hex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
let rfc8032Public = Data(hex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
let rfc8032EmptySignature = Data(hex: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")

extension Data {
    init(hex: String) {
        var bytes = [UInt8]()
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { bytes.append(UInt8(String([a, b]), radix: 16)!) }
        self.init(bytes)
    }
}

func utc(_ s: String) -> Date { try! ConsentTime.parse(s) }

@Suite struct KeyTests {
    @Test func pemRoundTrip() throws {
        let pair = PatientKeyPair.generate()
        #expect(pair.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"))
        #expect(pair.publicKeyPEM.hasPrefix("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"))
        let again = try PatientKeyPair(pem: pair.privateKeyPEM)
        #expect(again.publicKeyRaw == pair.publicKeyRaw)
        #expect(again.privateKeyPEM == pair.privateKeyPEM)
        let pub = try PatientPublicKey(pem: pair.publicKeyPEM)
        #expect(pub.raw == pair.publicKeyRaw)
        #expect(pub.pem == pair.publicKeyPEM)
        #expect(try PatientPublicKey(base64: pub.base64) == pub)
        #expect(try PatientPublicKey(raw: pub.raw) == pub)
    }

    /// A key made by `openssl genpkey -algorithm ed25519` and its `openssl pkey -pubout`.
    @Test func readsOpenSSLKeys() throws {
        let key = """
            -----BEGIN PRIVATE KEY-----
            MC4CAQAwBQYDK2VwBCIEIC+KL2gsbG8aMEY1QU0oLiyJ0vTGsq984Ns1t1LA0MF7
            -----END PRIVATE KEY-----

            """
        let pub = """
            -----BEGIN PUBLIC KEY-----
            MCowBQYDK2VwAyEA+lkEX6ao6CnzS7s8tFfC8JrCai5YALAIbRGBKVdN/b8=
            -----END PUBLIC KEY-----

            """
        let pair = try PatientKeyPair(pem: key)
        #expect(pair.privateKeyPEM == key)
        #expect(pair.publicKeyPEM == pub)
        #expect(pair.publicKeyRaw == Data(hex: "fa59045fa6a8e829f34bbb3cb457c2f09ac26a2e5800b0086d118129574dfdbf"))
    }

    @Test func rfc8032Vector() throws {
        let pair = try PatientKeyPair(seed: rfc8032Seed)
        #expect(pair.publicKeyRaw == rfc8032Public)
        #expect(pair.publicKey.isValidSignature(rfc8032EmptySignature, for: Data()))
        #expect(!pair.publicKey.isValidSignature(rfc8032EmptySignature, for: Data([0])))
        #expect(pair.publicKey.isValidSignature(try pair.signature(for: Data("x".utf8)), for: Data("x".utf8)))
    }

    @Test func refusesOtherPEM() throws {
        let pair = PatientKeyPair.generate()
        #expect(throws: ConsentError.self) { try PatientKeyPair(pem: pair.publicKeyPEM) }
        #expect(throws: ConsentError.self) { try PatientPublicKey(pem: pair.privateKeyPEM) }
        #expect(throws: ConsentError.self) { try PatientKeyPair(pem: "not a key") }
        // A P-256 PKCS#8 key: right label, wrong algorithm.
        let p256 = """
            -----BEGIN PRIVATE KEY-----
            MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgD6iSJW7wUsP0myWF
            W+u7ICnI1AOLlQqBBMuXwcpjEEyhRANCAARYyYfiGcCe7Sx4dAjPiyn/RBBqeaCV
            6WXG4I9J6rWICb4O58xRV48eOl+AHZQBnEaiocbtl70Xn71B27n+esTD
            -----END PRIVATE KEY-----
            """
        #expect(throws: ConsentError.self) { try PatientKeyPair(pem: p256) }
        #expect(throws: ConsentError.self) { try PatientPublicKey(base64: "AAAA") }
    }
}

@Suite struct TimeTests {
    @Test func parsesZonesAndFormatsUTC() throws {
        #expect(ConsentTime.format(utc("2027-01-31T12:00:00Z")) == "2027-01-31T12:00:00Z")
        #expect(ConsentTime.format(utc("2027-01-31T13:00:00+01:00")) == "2027-01-31T12:00:00Z")
        #expect(ConsentTime.format(utc("2027-01-31T07:00:00-0500")) == "2027-01-31T12:00:00Z")
        #expect(ConsentTime.format(utc("2027-01-31T12:00Z")) == "2027-01-31T12:00:00Z")
        #expect(ConsentTime.format(utc("2027-01-31t12:00:00.999z")) == "2027-01-31T12:00:00Z")
        #expect(ConsentTime.format(utc("2028-02-29T00:00:00Z")) == "2028-02-29T00:00:00Z")
        #expect(utc("1970-01-01T00:00:00Z").timeIntervalSince1970 == 0)
        #expect(utc("2000-03-01T00:00:00Z").timeIntervalSince1970 == 951_868_800)
    }

    @Test func refusesTimesWithoutZone() {
        #expect(throws: ConsentError.timeWithoutZone("2027-01-31T12:00:00")) { try ConsentTime.parse("2027-01-31T12:00:00") }
        #expect(throws: ConsentError.timeWithoutZone("2027-01-31")) { try ConsentTime.parse("2027-01-31") }
        for bad in ["2027-02-29T00:00:00Z", "2027-13-01T00:00:00Z", "2027-01-31T24:00:00Z", "2027-01-31T12:00:60Z",
                    "2027-01-31 12:00:00Z", "tomorrow", "2027-01-31T12:00:00Zx", "2027-01-31T12:00:00+1"] {
            #expect(throws: ConsentError.self, "\(bad)") { try ConsentTime.parse(bad) }
        }
    }

    @Test func documentTimesAreStrict() throws {
        #expect(try ConsentTime.parseDocumentTime("2027-01-31T12:00:00Z") == utc("2027-01-31T12:00:00Z"))
        for bad in ["2027-01-31T12:00:00.000Z", "2027-01-31T12:00:00+00:00", "2027-01-31t12:00:00Z", "2027-01-31T12:00Z"] {
            #expect(throws: ConsentError.self, "\(bad)") { try ConsentTime.parseDocumentTime(bad) }
        }
    }
}

@Suite struct GrantTests {
    static let pair = try! PatientKeyPair(seed: rfc8032Seed)
    static let issued = utc("2026-01-01T00:00:00Z")
    static let expires = utc("2027-01-31T12:00:00Z")

    static func grant(scope: ConsentScope = .study("1.2.3.4"), key: PatientKeyPair = pair) throws -> ConsentGrant {
        try ConsentGrant.sign(patientId: "PAT-001", issuerOfPatientId: "HOSP-A", grantee: "hospital-b", scope: scope,
                              purpose: "TREAT", expires: expires, issued: issued, with: key)
    }

    /// Known answer, computed independently with Python (json.dumps(sort_keys=True,
    /// separators=(",", ":")), hashlib, cryptography's Ed25519).
    @Test func knownAnswer() throws {
        let g = try Self.grant()
        #expect(g.id == "g-212cf2f23064f7754500ccb80b718d4a")
        #expect(g.patientKey == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
        #expect(String(decoding: g.canonicalBody(), as: UTF8.self) == #"{"expires":"2027-01-31T12:00:00Z","grantee":"hospital-b","id":"g-212cf2f23064f7754500ccb80b718d4a","issued":"2026-01-01T00:00:00Z","issuerOfPatientId":"HOSP-A","patientId":"PAT-001","patientKey":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=","purpose":"TREAT","scope":{"study":"1.2.3.4"},"type":"dicom-bridge-consent-grant","version":1}"#)
        // Ed25519 is deterministic (RFC 8032); the Python signature verifies either way.
        let python = "38iN+ZZ+mit9dJ9rZ9odq1UTj7v1sdo13RoZBqYMxTZoP9jfHJJGwRqOauM4LjSSWso55Scmyx1ev9yCnSHCAQ=="
        #expect(Self.pair.publicKey.isValidSignature(Data(base64Encoded: python)!, for: g.canonicalBody()))
        let fromPython = ConsentGrant(id: g.id, patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId,
                                      patientKey: g.patientKey, grantee: g.grantee, scope: g.scope, purpose: g.purpose,
                                      issued: g.issued, expires: g.expires, signature: python)
        try fromPython.verify()

        let r = try ConsentRevocation.sign(grant: g.id, issued: utc("2026-02-01T00:00:00Z"), with: Self.pair)
        #expect(r.id == "r-4b64e5e0867b9970bac11468040cfab6")
        try r.verify()
        let rPython = "aUnEI1z7EYNPDyvYdBSDJ11ntsqlipQ4iXv0a14k2WRf8fZZJafbj8/VJymp0xmRi/Expz8yXeOxlhspCUz0Cg=="
        try ConsentRevocation(id: r.id, grant: r.grant, patientKey: r.patientKey, issued: r.issued, signature: rPython).verify()
    }

    @Test func signVerifyRoundTrip() throws {
        let pair = PatientKeyPair.generate()
        for scope in [ConsentScope.study("1.2.840.113619.2.55.3.1"), .all] {
            let g = try ConsentGrant.sign(patientId: "PAT 7", grantee: "node-b.example:1", scope: scope, purpose: "ETREAT",
                                          expires: Date().addingTimeInterval(86_400), with: pair)
            try g.verify()
            #expect(g.id.hasPrefix("g-") && g.id.count == 34)
            #expect(g.issuerOfPatientId == nil)
            #expect(g.patientKey == pair.publicKey.base64)
            #expect(try ConsentDocument.parse(g.encodedDocument()) == .grant(g))
            #expect(try ConsentDocument.parse(JCS.canonicalize(g.jsonValue)) == .grant(g))
            #expect(!String(decoding: g.encodedDocument(), as: UTF8.self).contains("issuerOfPatientId"))
            // Codable uses the same members.
            let decoded = try JSONDecoder().decode(ConsentGrant.self, from: JSONEncoder().encode(g))
            #expect(decoded == g)
            try decoded.verify()
        }
    }

    /// Changing a field invalidates the id; an attacker who also recomputes the id still fails the
    /// signature.
    @Test func tamperedFieldsFail() throws {
        let g = try Self.grant()
        let tampered: [ConsentGrant] = [
            ConsentGrant(id: g.id, patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId, patientKey: g.patientKey,
                         grantee: "hospital-evil", scope: g.scope, purpose: g.purpose, issued: g.issued, expires: g.expires,
                         signature: g.signature),
            ConsentGrant(id: g.id, patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId, patientKey: g.patientKey,
                         grantee: g.grantee, scope: g.scope, purpose: g.purpose, issued: g.issued,
                         expires: utc("2099-01-01T00:00:00Z"), signature: g.signature),
            ConsentGrant(id: g.id, patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId, patientKey: g.patientKey,
                         grantee: g.grantee, scope: .all, purpose: g.purpose, issued: g.issued, expires: g.expires,
                         signature: g.signature),
            ConsentGrant(id: g.id, patientId: g.patientId, issuerOfPatientId: nil, patientKey: g.patientKey,
                         grantee: g.grantee, scope: g.scope, purpose: g.purpose, issued: g.issued, expires: g.expires,
                         signature: g.signature),
        ]
        for t in tampered {
            #expect(throws: ConsentError.wrongId(stated: g.id, computed: t.computedId())) { try t.verify() }
            let withId = ConsentGrant(id: t.computedId(), patientId: t.patientId, issuerOfPatientId: t.issuerOfPatientId,
                                      patientKey: t.patientKey, grantee: t.grantee, scope: t.scope, purpose: t.purpose,
                                      issued: t.issued, expires: t.expires, signature: t.signature)
            #expect(throws: ConsentError.badSignature) { try withId.verify() }
        }
    }

    @Test func wrongIdFails() throws {
        let g = try Self.grant()
        let other = "g-" + String(repeating: "0", count: 32)
        let bad = ConsentGrant(id: other, patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId,
                               patientKey: g.patientKey, grantee: g.grantee, scope: g.scope, purpose: g.purpose,
                               issued: g.issued, expires: g.expires, signature: g.signature)
        #expect(throws: ConsentError.wrongId(stated: other, computed: g.id)) { try bad.verify() }
        let text = String(decoding: g.encodedDocument(), as: UTF8.self).replacingOccurrences(of: g.id, with: other)
        #expect(throws: ConsentError.wrongId(stated: other, computed: g.id)) { try ConsentDocument.parse(Data(text.utf8)) }
        let malformed = String(decoding: g.encodedDocument(), as: UTF8.self).replacingOccurrences(of: g.id, with: "g-1")
        #expect(throws: ConsentError.self) { try ConsentDocument.parse(Data(malformed.utf8)) }
    }

    /// `verify()` checks the signature against the stated patientKey: another key's signature
    /// fails; a grant wholly made by another key verifies (whether that key is the patient's is the
    /// bridge's enrolment check).
    @Test func signatureIsCheckedAgainstStatedKey() throws {
        let mallory = PatientKeyPair.generate()
        let byMallory = try Self.grant(key: mallory)
        try byMallory.verify()
        #expect(byMallory.patientKey == mallory.publicKey.base64)

        let g = try Self.grant()
        // The patient's key stated, Mallory's signature (over the same body).
        let forged = ConsentGrant(id: g.id, patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId,
                                  patientKey: g.patientKey, grantee: g.grantee, scope: g.scope, purpose: g.purpose,
                                  issued: g.issued, expires: g.expires,
                                  signature: try mallory.signature(for: g.canonicalBody()).base64EncodedString())
        #expect(throws: ConsentError.badSignature) { try forged.verify() }
        // Mallory's key stated (id recomputed), the patient's signature.
        let swapped = ConsentGrant(id: "", patientId: g.patientId, issuerOfPatientId: g.issuerOfPatientId,
                                   patientKey: mallory.publicKey.base64, grantee: g.grantee, scope: g.scope,
                                   purpose: g.purpose, issued: g.issued, expires: g.expires, signature: g.signature)
        let swappedWithId = ConsentGrant(id: swapped.computedId(), patientId: g.patientId,
                                         issuerOfPatientId: g.issuerOfPatientId, patientKey: mallory.publicKey.base64,
                                         grantee: g.grantee, scope: g.scope, purpose: g.purpose, issued: g.issued,
                                         expires: g.expires, signature: g.signature)
        #expect(throws: ConsentError.badSignature) { try swappedWithId.verify() }
    }

    @Test func tamperedFileFails() throws {
        let text = String(decoding: try Self.grant().encodedDocument(), as: UTF8.self)
        for (from, to) in [("hospital-b", "hospital-c"), ("2027-01-31T12:00:00Z", "2099-01-31T12:00:00Z"),
                           ("{\n    \"study\": \"1.2.3.4\"\n  }", "\"all\""), ("TREAT", "HRESCH")] {
            let changed = text.replacingOccurrences(of: from, with: to)
            #expect(changed != text, "\(from)")
            #expect(throws: ConsentError.self, "\(from)") { try ConsentDocument.parse(Data(changed.utf8)) }
        }
    }

    @Test func expiryMustBeInTheFuture() throws {
        let now = Date()
        #expect(throws: ConsentError.self) {
            try ConsentGrant.sign(patientId: "P", grantee: "n", scope: .all, expires: now.addingTimeInterval(-60), with: Self.pair)
        }
        #expect(throws: ConsentError.self) {
            try ConsentGrant.sign(patientId: "P", grantee: "n", scope: .all, expires: now, issued: now, with: Self.pair)
        }
    }

    @Test func refusesInvalidFields() {
        let far = Date().addingTimeInterval(3600)
        let cases: [(String, String?, String, ConsentScope, String)] = [
            ("", nil, "n", .all, "TREAT"),
            ("P", "", "n", .all, "TREAT"),
            ("P\\Q", nil, "n", .all, "TREAT"),
            (String(repeating: "x", count: 65), nil, "n", .all, "TREAT"),
            ("P", nil, "bad node", .all, "TREAT"),
            ("P", nil, "n", .study("1..2"), "TREAT"),
            ("P", nil, "n", .study("1.2.a"), "TREAT"),
            ("P", nil, "n", .all, "treat"),
            ("P", nil, "n", .all, "SELLIT"),
        ]
        for (pid, issuer, grantee, scope, purpose) in cases {
            #expect(throws: ConsentError.self, "\(pid) \(String(describing: issuer)) \(grantee) \(scope) \(purpose)") {
                try ConsentGrant.sign(patientId: pid, issuerOfPatientId: issuer, grantee: grantee, scope: scope,
                                      purpose: purpose, expires: far, with: Self.pair)
            }
        }
    }

    @Test func documentErrors() throws {
        let g = try Self.grant()
        guard case .object(var m) = g.jsonValue else { Issue.record("not an object"); return }
        func parse(_ v: ConsentJSON) throws -> ConsentDocument { try ConsentDocument.parse(JCS.canonicalize(v)) }

        #expect(throws: ConsentError.self) { try ConsentDocument.parse(Data("{".utf8)) }
        #expect(throws: ConsentError.notAnObject) { try ConsentDocument.parse(Data("[]".utf8)) }
        var t = m; t["type"] = .string("something-else")
        #expect(throws: ConsentError.unknownType("\"something-else\"")) { try parse(.object(t)) }
        t = m; t["version"] = .integer(2)
        #expect(throws: ConsentError.unsupportedVersion("2")) { try parse(.object(t)) }
        t = m; t["version"] = .string("1")
        #expect(throws: ConsentError.unsupportedVersion("\"1\"")) { try parse(.object(t)) }
        t = m; t["note"] = .string("hi")
        #expect(throws: ConsentError.unexpectedMember("note")) { try parse(.object(t)) }
        t = m; t["grantee"] = nil
        #expect(throws: ConsentError.missingMember("grantee")) { try parse(.object(t)) }
        t = m; t["expires"] = .string("2027-01-31T13:00:00+01:00")
        #expect(throws: ConsentError.invalidTime("2027-01-31T13:00:00+01:00", "expected RFC 3339 UTC to the second, YYYY-MM-DDTHH:MM:SSZ")) {
            try parse(.object(t))
        }
        t = m; t["scope"] = .string("everything")
        #expect(throws: ConsentError.self) { try parse(.object(t)) }
        t = m; t["signature"] = .string("AAAA")
        #expect(throws: ConsentError.self) { try parse(.object(t)) }
        m["purpose"] = .string("NOPE")
        #expect(throws: ConsentError.unknownPurpose("NOPE")) { try parse(.object(m)) }
        for e in [ConsentError.badSignature, .unknownPurpose("X"), .timeWithoutZone("2027-01-01T00:00:00")] {
            #expect(!e.description.isEmpty)
        }
        #expect(ConsentError.unknownPurpose("X").description.contains("HRESCH"))
    }

    @Test func permits() throws {
        let g = try Self.grant()
        #expect(g.permits(grantee: "hospital-b", studyInstanceUID: "1.2.3.4", at: utc("2026-06-01T00:00:00Z")))
        #expect(!g.permits(grantee: "hospital-c", studyInstanceUID: "1.2.3.4", at: utc("2026-06-01T00:00:00Z")))
        #expect(!g.permits(grantee: "hospital-b", studyInstanceUID: "1.2.3.5", at: utc("2026-06-01T00:00:00Z")))
        #expect(!g.permits(grantee: "hospital-b", studyInstanceUID: "1.2.3.4", at: Self.expires))
        #expect(g.isExpired(at: Self.expires))
        #expect(ConsentScope.all.covers(studyInstanceUID: "9.9"))
        #expect(ConsentScope.study("1.2").description == "study:1.2")
    }
}

@Suite struct RevocationTests {
    @Test func roundTripAndTamper() throws {
        let pair = PatientKeyPair.generate()
        let g = try ConsentGrant.sign(patientId: "P", grantee: "n", scope: .all, expires: Date().addingTimeInterval(60), with: pair)
        let r = try ConsentRevocation.sign(grant: g.id, with: pair)
        try r.verify()
        #expect(r.id.hasPrefix("r-") && r.id.count == 34)
        #expect(try ConsentDocument.parse(r.encodedDocument()) == .revocation(r))
        #expect(try JSONDecoder().decode(ConsentRevocation.self, from: JSONEncoder().encode(r)) == r)

        let text = String(decoding: r.encodedDocument(), as: UTF8.self)
        let other = "g-" + String(repeating: "a", count: 32)
        #expect(throws: ConsentError.self) { try ConsentDocument.parse(Data(text.replacingOccurrences(of: g.id, with: other).utf8)) }
        let otherKey = PatientKeyPair.generate()
        let forged = ConsentRevocation(id: r.id, grant: r.grant, patientKey: r.patientKey, issued: r.issued,
                                       signature: try otherKey.signature(for: r.canonicalBody()).base64EncodedString())
        #expect(throws: ConsentError.badSignature) { try forged.verify() }
        #expect(throws: ConsentError.self) { try ConsentRevocation.sign(grant: "not-a-grant", with: pair) }
    }
}

@Suite struct PatientIdentityTests {
    @Test func keyedHash() {
        let secret = Data("site-secret".utf8)
        let h = PatientIdentity.keyedHash(patientId: "PAT-001", issuer: "HOSP-A", siteSecret: secret)
        // HMAC-SHA256(key "site-secret", "HOSP-A\0PAT-001"), computed with Python's hmac.
        #expect(h == "f0d35e063950d359bbb1f534d98f3950012f86134300dff611ce8019d99d41d2")
        #expect(PatientIdentity.keyedHash(patientId: "PAT-001", issuer: "HOSP-A", siteSecret: secret) == h)
        #expect(PatientIdentity.keyedHash(patientId: "PAT-001", issuer: nil, siteSecret: secret)
                == "6411e922da8cd2e3831ac2e13b8374e529f9c01700ff932c98636e10c5aca973")
        #expect(PatientIdentity.keyedHash(patientId: "PAT-001", issuer: "HOSP-A", siteSecret: Data("other".utf8)) != h)
        #expect(PatientIdentity.keyedHash(patientId: "PAT-002", issuer: "HOSP-A", siteSecret: secret) != h)
    }
}

@Suite struct PurposeOfUseTests {
    @Test func valueSet() {
        for code in ["TREAT", "ETREAT", "HPAYMT", "HRESCH", "PATRQT", "FAMRQT", "PUBHLTH", "HOPERAT", "CAREMGT", "HMARKT", "HSYSADMIN"] {
            #expect(PurposeOfUse.isKnown(code), "\(code)")
        }
        #expect(PurposeOfUse.codes.count == 59)
        #expect(!PurposeOfUse.isKnown("treat"))
        #expect(PurposeOfUse.defaultCode == "TREAT")
    }
}
