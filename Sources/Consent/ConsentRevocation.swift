import Foundation

/// A patient's signed revocation of one of their grants (docs/consent.md):
///
///     {"type":"dicom-bridge-consent-revocation","version":1,"id":"r-<32 hex>",
///      "grant":"g-<32 hex>","patientKey":"<base64 of the 32-byte Ed25519 public key>",
///      "issued":"YYYY-MM-DDTHH:MM:SSZ","signature":"<base64 of the 64-byte Ed25519 signature>"}
///
/// `id` and `signature` are derived as for grants (prefix "r-"). A bridge honours it when
/// `patientKey` is the key of the grant it names.
public struct ConsentRevocation: Codable, Hashable, Sendable {
    public static let documentType = "dicom-bridge-consent-revocation"
    public static let version = 1
    public static let idPrefix = "r-"

    public let id: String
    /// The id of the grant it ends.
    public let grant: String
    /// Base64 of the patient's 32-byte Ed25519 public key.
    public let patientKey: String
    /// When it was signed (whole seconds, UTC).
    public let issued: Date
    /// Base64 of the 64-byte Ed25519 signature.
    public let signature: String

    /// Signs a revocation of the grant `grantId` with the patient's key. `issued` defaults to now
    /// (rounded down to a whole second).
    public static func sign(grant grantId: String, issued: Date = Date(), with key: PatientKeyPair) throws -> ConsentRevocation {
        var r = ConsentRevocation(id: "", grant: grantId, patientKey: key.publicKey.base64,
                                  issued: ConsentTime.wholeSeconds(issued), signature: "")
        try r.checkFields()
        r = r.with(id: r.computedId())
        let signature = try key.signature(for: r.canonicalBody())
        return r.with(signature: signature.base64EncodedString())
    }

    /// A revocation as stated (not checked: call `verify()`).
    public init(id: String, grant: String, patientKey: String, issued: Date, signature: String) {
        self.id = id
        self.grant = grant
        self.patientKey = patientKey
        self.issued = issued
        self.signature = signature
    }

    func with(id: String? = nil, signature: String? = nil) -> ConsentRevocation {
        ConsentRevocation(id: id ?? self.id, grant: grant, patientKey: patientKey, issued: issued,
                          signature: signature ?? self.signature)
    }

    func json(id includeId: Bool = true, signature includeSignature: Bool = true) -> ConsentJSON {
        var m: [String: ConsentJSON] = [
            "type": .string(Self.documentType),
            "version": .integer(Int64(Self.version)),
            "grant": .string(grant),
            "patientKey": .string(patientKey),
            "issued": .string(ConsentTime.format(issued)),
        ]
        if includeId { m["id"] = .string(id) }
        if includeSignature { m["signature"] = .string(signature) }
        return .object(m)
    }

    /// The JSON document.
    public var jsonValue: ConsentJSON { json() }

    /// The bytes the signature covers: JCS (RFC 8785) of the document without `signature`.
    public func canonicalBody() -> Data { JCS.canonicalize(json(signature: false)) }

    /// "r-" + first 32 hex digits of SHA-256(JCS(document without `id` and `signature`)).
    public func computedId() -> String {
        ConsentFields.derivedId(prefix: Self.idPrefix, JCS.canonicalize(json(id: false, signature: false)))
    }

    /// The document as written to files: readable JSON (members in canonical order) and a newline.
    public func encodedDocument() -> Data { JCS.pretty(json()) }

    /// Checks the fields, the id and the signature against `patientKey`. Throws `ConsentError`.
    public func verify() throws {
        try checkFields()
        try ConsentFields.checkId(id, prefix: Self.idPrefix)
        let computed = computedId()
        guard id == computed else { throw ConsentError.wrongId(stated: id, computed: computed) }
        let key = try PatientPublicKey(base64: patientKey)
        let sig = try ConsentFields.signatureBytes(signature)
        guard key.isValidSignature(sig, for: canonicalBody()) else { throw ConsentError.badSignature }
    }

    /// The patient's public key.
    public func publicKey() throws -> PatientPublicKey { try PatientPublicKey(base64: patientKey) }

    func checkFields() throws {
        do {
            try ConsentFields.checkId(grant, prefix: ConsentGrant.idPrefix)
        } catch {
            throw ConsentError.invalidField("grant", "not a grant id (g- and 32 lowercase hex digits): \"\(grant)\"")
        }
        _ = try PatientPublicKey(base64: patientKey)
        try ConsentFields.checkWholeSeconds("issued", issued)
    }

    init(members m: [String: ConsentJSON]) throws {
        try ConsentFields.checkMembers(m, required: ["type", "version", "id", "grant", "patientKey", "issued", "signature"],
                                       optional: [])
        self.init(id: try ConsentFields.string(m, "id"), grant: try ConsentFields.string(m, "grant"),
                  patientKey: try ConsentFields.string(m, "patientKey"), issued: try ConsentFields.time(m, "issued"),
                  signature: try ConsentFields.string(m, "signature"))
    }

    private enum CodingKeys: String, CodingKey { case type, version, id, grant, patientKey, issued, signature }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard try c.decode(String.self, forKey: .type) == Self.documentType else {
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "not \(Self.documentType)")
        }
        guard try c.decode(Int.self, forKey: .version) == Self.version else {
            throw DecodingError.dataCorruptedError(forKey: .version, in: c, debugDescription: "unsupported version")
        }
        let issuedString = try c.decode(String.self, forKey: .issued)
        let issued: Date
        do { issued = try ConsentTime.parseDocumentTime(issuedString) } catch {
            throw DecodingError.dataCorruptedError(forKey: .issued, in: c, debugDescription: "\(error)")
        }
        self.init(id: try c.decode(String.self, forKey: .id), grant: try c.decode(String.self, forKey: .grant),
                  patientKey: try c.decode(String.self, forKey: .patientKey), issued: issued,
                  signature: try c.decode(String.self, forKey: .signature))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.documentType, forKey: .type)
        try c.encode(Self.version, forKey: .version)
        try c.encode(id, forKey: .id)
        try c.encode(grant, forKey: .grant)
        try c.encode(patientKey, forKey: .patientKey)
        try c.encode(ConsentTime.format(issued), forKey: .issued)
        try c.encode(signature, forKey: .signature)
    }
}
