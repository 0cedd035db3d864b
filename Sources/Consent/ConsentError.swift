import Foundation

/// Why a consent document, key or time was refused. `description` is a sentence for people.
public enum ConsentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not one strict JSON text (see `JCS.parse`).
    case invalidJSON(String)
    /// The JSON text is not an object.
    case notAnObject
    /// `type` is missing, not a string, or not a consent document type.
    case unknownType(String)
    /// `version` is not the integer 1.
    case unsupportedVersion(String)
    /// A required member is absent.
    case missingMember(String)
    /// A member this type and version does not define.
    case unexpectedMember(String)
    /// A member (or an argument) has the wrong kind of value: (name, reason).
    case invalidField(String, String)
    /// A time is not in the required form: (value, reason).
    case invalidTime(String, String)
    /// A time was given without a time zone (`Z` or `±hh:mm`).
    case timeWithoutZone(String)
    /// The stated `id` is not the one derived from the content.
    case wrongId(stated: String, computed: String)
    /// The Ed25519 signature does not verify against `patientKey`.
    case badSignature
    /// A key (PEM, raw or base64) could not be read.
    case invalidKey(String)
    /// The purpose is not a code of the HL7 v3 PurposeOfUse value set.
    case unknownPurpose(String)
    /// The grant's expiry is not after the time it is issued: (expires, issued).
    case expiryNotInFuture(expires: String, issued: String)

    public var description: String {
        switch self {
        case .invalidJSON(let why): return "not a valid JSON document: \(why)"
        case .notAnObject: return "not a consent document: the JSON value is not an object"
        case .unknownType(let t):
            return "not a consent document: type \(t) (expected \"\(ConsentGrant.documentType)\" or \"\(ConsentRevocation.documentType)\")"
        case .unsupportedVersion(let v): return "unsupported consent document version \(v) (this bridge reads version 1)"
        case .missingMember(let m): return "the document has no \"\(m)\" member"
        case .unexpectedMember(let m): return "the document has a member \"\(m)\" that its type and version do not define"
        case .invalidField(let name, let why): return "invalid \(name): \(why)"
        case .invalidTime(let v, let why): return "invalid time \"\(v)\": \(why)"
        case .timeWithoutZone(let v):
            return "the time \"\(v)\" has no time zone: add Z (UTC) or an offset such as +01:00, e.g. 2027-01-31T12:00:00Z"
        case .wrongId(let stated, let computed):
            return "wrong id: the document says \(stated) but its content gives \(computed) (altered, or not made by this format)"
        case .badSignature: return "the signature does not verify against the document's patientKey (altered, or signed by another key)"
        case .invalidKey(let why): return "invalid key: \(why)"
        case .unknownPurpose(let code):
            return "unknown purpose of use \"\(code)\": use a code of the HL7 v3 PurposeOfUse value set: "
                + PurposeOfUse.codes.keys.sorted().joined(separator: ", ")
        case .expiryNotInFuture(let expires, let issued):
            return "the expiry \(expires) is not after the time of issue \(issued): a grant must expire in the future"
        }
    }
}
