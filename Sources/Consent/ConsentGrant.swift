import Crypto
import Foundation

/// What a grant covers: one study (by Study Instance UID) or all of the patient's studies.
/// In a document: `{"study": "<UID>"}` or the string `"all"`.
public enum ConsentScope: Codable, Hashable, Sendable, CustomStringConvertible {
    case study(String)
    case all

    /// `all` or `study:<UID>` (the form of the ledger's consent-granted `scope`).
    public var description: String {
        switch self {
        case .all: return "all"
        case .study(let uid): return "study:\(uid)"
        }
    }

    /// Whether the scope includes the study `studyInstanceUID`.
    public func covers(studyInstanceUID: String) -> Bool {
        switch self {
        case .all: return true
        case .study(let uid): return uid == studyInstanceUID
        }
    }

    var json: ConsentJSON {
        switch self {
        case .all: return .string("all")
        case .study(let uid): return .object(["study": .string(uid)])
        }
    }

    init(json: ConsentJSON) throws {
        switch json {
        case .string("all"):
            self = .all
        case .object(let members):
            guard members.count == 1, case .string(let uid)? = members["study"] else {
                throw ConsentError.invalidField("scope", "expected {\"study\": \"<Study Instance UID>\"} or \"all\"")
            }
            self = .study(uid)
        default:
            throw ConsentError.invalidField("scope", "expected {\"study\": \"<Study Instance UID>\"} or \"all\"")
        }
        try ConsentFields.checkScope(self)
    }

    private enum CodingKeys: String, CodingKey { case study }

    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let s = try? single.decode(String.self) {
            guard s == "all" else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "scope must be \"all\" or {\"study\": UID}"))
            }
            self = .all
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self = .study(try c.decode(String.self, forKey: .study))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .all:
            var c = encoder.singleValueContainer()
            try c.encode("all")
        case .study(let uid):
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(uid, forKey: .study)
        }
    }
}

/// A patient's signed consent for one grantee node to receive their images (docs/consent.md):
///
///     {"type":"dicom-bridge-consent-grant","version":1,"id":"g-<32 hex>",
///      "patientId":"...","issuerOfPatientId":"..." (omitted when absent),
///      "patientKey":"<base64 of the 32-byte Ed25519 public key>","grantee":"<node name>",
///      "scope":{"study":"<UID>"} or "all","purpose":"<HL7 v3 PurposeOfUse code>",
///      "issued":"YYYY-MM-DDTHH:MM:SSZ","expires":"YYYY-MM-DDTHH:MM:SSZ",
///      "signature":"<base64 of the 64-byte Ed25519 signature>"}
///
/// - `id` = "g-" + the first 32 lowercase hex digits of SHA-256(JCS(document without `id` and
///   `signature`)).
/// - `signature` = Ed25519 by the patient's key over JCS(document without `signature`)
///   (`canonicalBody()`), where JCS is RFC 8785.
///
/// `verify()` checks the fields, the id and the signature against the stated `patientKey`; whether
/// that key belongs to the patient (enrolment) is for the bridge to decide. Decoding with `Codable`
/// checks the type, version and time formats but not the id or signature: use
/// `ConsentDocument.parse` for documents from outside.
public struct ConsentGrant: Codable, Hashable, Sendable {
    public static let documentType = "dicom-bridge-consent-grant"
    public static let version = 1
    public static let idPrefix = "g-"

    public let id: String
    /// Patient ID (0010,0020) as the sites' archives hold it.
    public let patientId: String
    /// Issuer of Patient ID (0010,0021), when the Patient ID needs one to be unique.
    public let issuerOfPatientId: String?
    /// Base64 of the patient's 32-byte Ed25519 public key.
    public let patientKey: String
    /// The node name (certificate CN) that may receive the images.
    public let grantee: String
    public let scope: ConsentScope
    /// An HL7 v3 PurposeOfUse code (`PurposeOfUse.codes`).
    public let purpose: String
    /// When it was signed (whole seconds, UTC).
    public let issued: Date
    /// When it stops being in force (whole seconds, UTC): in force while `now < expires`.
    public let expires: Date
    /// Base64 of the 64-byte Ed25519 signature.
    public let signature: String

    /// Signs a new grant with the patient's key. `issued` (default: now) and `expires` are rounded
    /// down to whole seconds; `expires` must be after `issued` (`ConsentError.expiryNotInFuture`).
    public static func sign(patientId: String, issuerOfPatientId: String? = nil, grantee: String,
                            scope: ConsentScope, purpose: String = PurposeOfUse.defaultCode, expires: Date,
                            issued: Date = Date(), with key: PatientKeyPair) throws -> ConsentGrant {
        var grant = ConsentGrant(id: "", patientId: patientId, issuerOfPatientId: issuerOfPatientId,
                                 patientKey: key.publicKey.base64, grantee: grantee, scope: scope, purpose: purpose,
                                 issued: ConsentTime.wholeSeconds(issued), expires: ConsentTime.wholeSeconds(expires),
                                 signature: "")
        try grant.checkFields()
        grant = grant.with(id: grant.computedId())
        let signature = try key.signature(for: grant.canonicalBody())
        return grant.with(signature: signature.base64EncodedString())
    }

    /// A grant as stated (not checked: call `verify()`).
    public init(id: String, patientId: String, issuerOfPatientId: String?, patientKey: String, grantee: String,
                scope: ConsentScope, purpose: String, issued: Date, expires: Date, signature: String) {
        self.id = id
        self.patientId = patientId
        self.issuerOfPatientId = issuerOfPatientId
        self.patientKey = patientKey
        self.grantee = grantee
        self.scope = scope
        self.purpose = purpose
        self.issued = issued
        self.expires = expires
        self.signature = signature
    }

    func with(id: String? = nil, signature: String? = nil) -> ConsentGrant {
        ConsentGrant(id: id ?? self.id, patientId: patientId, issuerOfPatientId: issuerOfPatientId,
                     patientKey: patientKey, grantee: grantee, scope: scope, purpose: purpose, issued: issued,
                     expires: expires, signature: signature ?? self.signature)
    }

    /// The document as a JSON object, with or without `id` and `signature`.
    func json(id includeId: Bool = true, signature includeSignature: Bool = true) -> ConsentJSON {
        var m: [String: ConsentJSON] = [
            "type": .string(Self.documentType),
            "version": .integer(Int64(Self.version)),
            "patientId": .string(patientId),
            "patientKey": .string(patientKey),
            "grantee": .string(grantee),
            "scope": scope.json,
            "purpose": .string(purpose),
            "issued": .string(ConsentTime.format(issued)),
            "expires": .string(ConsentTime.format(expires)),
        ]
        if let issuerOfPatientId { m["issuerOfPatientId"] = .string(issuerOfPatientId) }
        if includeId { m["id"] = .string(id) }
        if includeSignature { m["signature"] = .string(signature) }
        return .object(m)
    }

    /// The JSON document.
    public var jsonValue: ConsentJSON { json() }

    /// The bytes the signature covers: JCS (RFC 8785) of the document without `signature`.
    public func canonicalBody() -> Data { JCS.canonicalize(json(signature: false)) }

    /// The id the content gives: "g-" + first 32 hex digits of SHA-256(JCS(document without `id`
    /// and `signature`)).
    public func computedId() -> String {
        ConsentFields.derivedId(prefix: Self.idPrefix, JCS.canonicalize(json(id: false, signature: false)))
    }

    /// The document as written to files: readable JSON (members in canonical order) and a newline.
    public func encodedDocument() -> Data { JCS.pretty(json()) }

    /// Checks the fields, that `id` is the one the content gives, and the signature against
    /// `patientKey`. Throws `ConsentError`.
    public func verify() throws {
        try checkFields()
        try ConsentFields.checkId(id, prefix: Self.idPrefix)
        let computed = computedId()
        guard id == computed else { throw ConsentError.wrongId(stated: id, computed: computed) }
        let key = try PatientPublicKey(base64: patientKey)
        let sig = try ConsentFields.signatureBytes(signature)
        guard key.isValidSignature(sig, for: canonicalBody()) else { throw ConsentError.badSignature }
    }

    /// Whether the grant is in force at `date` for `grantee` and the study: it names that
    /// grantee, its scope covers the study, and `date < expires`. (Signature, enrolment and
    /// revocation are checked elsewhere.)
    public func permits(grantee: String, studyInstanceUID: String, at date: Date = Date()) -> Bool {
        self.grantee == grantee && scope.covers(studyInstanceUID: studyInstanceUID) && date < expires
    }

    public func isExpired(at date: Date = Date()) -> Bool { date >= expires }

    /// The patient's public key.
    public func publicKey() throws -> PatientPublicKey { try PatientPublicKey(base64: patientKey) }

    func checkFields() throws {
        try ConsentFields.checkPatientIdentifier("patientId", patientId)
        if let issuerOfPatientId { try ConsentFields.checkPatientIdentifier("issuerOfPatientId", issuerOfPatientId) }
        _ = try PatientPublicKey(base64: patientKey)
        try ConsentFields.checkNodeName("grantee", grantee)
        try ConsentFields.checkScope(scope)
        _ = try PurposeOfUse.validate(purpose)
        try ConsentFields.checkWholeSeconds("issued", issued)
        try ConsentFields.checkWholeSeconds("expires", expires)
        guard expires > issued else {
            throw ConsentError.expiryNotInFuture(expires: ConsentTime.format(expires), issued: ConsentTime.format(issued))
        }
    }

    /// Reads a grant from its members (the object must have been parsed already).
    init(members m: [String: ConsentJSON]) throws {
        try ConsentFields.checkMembers(m, required: ["type", "version", "id", "patientId", "patientKey", "grantee",
                                                     "scope", "purpose", "issued", "expires", "signature"],
                                       optional: ["issuerOfPatientId"])
        try self.init(members: m, scope: ConsentScope(json: m["scope"]!))
    }

    private init(members m: [String: ConsentJSON], scope: ConsentScope) throws {
        self.init(id: try ConsentFields.string(m, "id"),
                  patientId: try ConsentFields.string(m, "patientId"),
                  issuerOfPatientId: m["issuerOfPatientId"] == nil ? nil : try ConsentFields.string(m, "issuerOfPatientId"),
                  patientKey: try ConsentFields.string(m, "patientKey"),
                  grantee: try ConsentFields.string(m, "grantee"),
                  scope: scope,
                  purpose: try ConsentFields.string(m, "purpose"),
                  issued: try ConsentFields.time(m, "issued"),
                  expires: try ConsentFields.time(m, "expires"),
                  signature: try ConsentFields.string(m, "signature"))
    }

    // MARK: Codable (the document's members; times as YYYY-MM-DDTHH:MM:SSZ strings)

    private enum CodingKeys: String, CodingKey {
        case type, version, id, patientId, issuerOfPatientId, patientKey, grantee, scope, purpose, issued, expires, signature
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard try c.decode(String.self, forKey: .type) == Self.documentType else {
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "not \(Self.documentType)")
        }
        guard try c.decode(Int.self, forKey: .version) == Self.version else {
            throw DecodingError.dataCorruptedError(forKey: .version, in: c, debugDescription: "unsupported version")
        }
        func time(_ key: CodingKeys) throws -> Date {
            let s = try c.decode(String.self, forKey: key)
            do { return try ConsentTime.parseDocumentTime(s) } catch {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(error)")
            }
        }
        self.init(id: try c.decode(String.self, forKey: .id),
                  patientId: try c.decode(String.self, forKey: .patientId),
                  issuerOfPatientId: try c.decodeIfPresent(String.self, forKey: .issuerOfPatientId),
                  patientKey: try c.decode(String.self, forKey: .patientKey),
                  grantee: try c.decode(String.self, forKey: .grantee),
                  scope: try c.decode(ConsentScope.self, forKey: .scope),
                  purpose: try c.decode(String.self, forKey: .purpose),
                  issued: try time(.issued), expires: try time(.expires),
                  signature: try c.decode(String.self, forKey: .signature))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.documentType, forKey: .type)
        try c.encode(Self.version, forKey: .version)
        try c.encode(id, forKey: .id)
        try c.encode(patientId, forKey: .patientId)
        try c.encodeIfPresent(issuerOfPatientId, forKey: .issuerOfPatientId)
        try c.encode(patientKey, forKey: .patientKey)
        try c.encode(grantee, forKey: .grantee)
        try c.encode(scope, forKey: .scope)
        try c.encode(purpose, forKey: .purpose)
        try c.encode(ConsentTime.format(issued), forKey: .issued)
        try c.encode(ConsentTime.format(expires), forKey: .expires)
        try c.encode(signature, forKey: .signature)
    }
}
