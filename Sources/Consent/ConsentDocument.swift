import Crypto
import Foundation

/// A consent document read from outside (a file, a request body), fully checked.
public enum ConsentDocument: Hashable, Sendable {
    case grant(ConsentGrant)
    case revocation(ConsentRevocation)

    /// Parses and checks a grant or revocation: strict JSON (`JCS.parse`), a known `type`, `version`
    /// 1, exactly the members that type defines, field formats (times as YYYY-MM-DDTHH:MM:SSZ), the
    /// id derived from the content, and the Ed25519 signature against the stated `patientKey`.
    /// Throws `ConsentError`.
    public static func parse(_ data: Data) throws -> ConsentDocument {
        guard case .object(let m) = try JCS.parse(data) else { throw ConsentError.notAnObject }
        guard let typeValue = m["type"] else { throw ConsentError.missingMember("type") }
        guard case .string(let type) = typeValue else { throw ConsentError.unknownType("(not a string)") }
        guard type == ConsentGrant.documentType || type == ConsentRevocation.documentType else {
            throw ConsentError.unknownType("\"\(type)\"")
        }
        guard let versionValue = m["version"] else { throw ConsentError.missingMember("version") }
        guard case .integer(let version) = versionValue, version == 1 else {
            throw ConsentError.unsupportedVersion(String(decoding: JCS.canonicalize(versionValue), as: UTF8.self))
        }
        if type == ConsentGrant.documentType {
            let grant = try ConsentGrant(members: m)
            try grant.verify()
            return .grant(grant)
        } else {
            let revocation = try ConsentRevocation(members: m)
            try revocation.verify()
            return .revocation(revocation)
        }
    }

    public var id: String {
        switch self {
        case .grant(let g): return g.id
        case .revocation(let r): return r.id
        }
    }

    public var patientKey: String {
        switch self {
        case .grant(let g): return g.patientKey
        case .revocation(let r): return r.patientKey
        }
    }

    public func encodedDocument() -> Data {
        switch self {
        case .grant(let g): return g.encodedDocument()
        case .revocation(let r): return r.encodedDocument()
        }
    }
}

/// Field rules shared by grants and revocations.
enum ConsentFields {
    static func derivedId(prefix: String, _ canonical: Data) -> String {
        prefix + SHA256.hash(data: canonical).prefix(16).map { String(format: "%02x", $0) }.joined()
    }

    static func checkId(_ id: String, prefix: String) throws {
        let hex = id.utf8.dropFirst(prefix.utf8.count)
        guard id.hasPrefix(prefix), hex.count == 32,
              hex.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw ConsentError.invalidField("id", "expected \(prefix) and 32 lowercase hex digits, got \"\(id)\"")
        }
    }

    static func signatureBytes(_ s: String) throws -> Data {
        guard let sig = Data(base64Encoded: s), sig.count == 64, sig.base64EncodedString() == s else {
            throw ConsentError.invalidField("signature", "not base64 of a 64-byte Ed25519 signature")
        }
        return sig
    }

    /// Patient ID / Issuer of Patient ID: DICOM LO, 1 to 64 characters, no control characters and
    /// no backslash, no leading or trailing spaces.
    static func checkPatientIdentifier(_ name: String, _ v: String) throws {
        guard !v.isEmpty else { throw ConsentError.invalidField(name, "empty (omit an absent issuer instead)") }
        guard v.count <= 64 else { throw ConsentError.invalidField(name, "longer than 64 characters") }
        guard !v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }) else {
            throw ConsentError.invalidField(name, "contains a control character or a backslash")
        }
        guard v.first != " ", v.last != " " else { throw ConsentError.invalidField(name, "has leading or trailing spaces") }
    }

    /// A node name (certificate CN): 1 to 128 of letters, digits, `.`, `-`, `_`, `:`.
    static func checkNodeName(_ name: String, _ v: String) throws {
        guard (1...128).contains(v.utf8.count),
              v.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
                  || [0x2E, 0x2D, 0x5F, 0x3A].contains($0) }) else {
            throw ConsentError.invalidField(name, "not a node name (1 to 128 letters, digits, . - _ :): \"\(v)\"")
        }
    }

    /// A Study Instance UID: 1 to 64 characters, digits separated by single dots.
    static func checkScope(_ scope: ConsentScope) throws {
        guard case .study(let uid) = scope else { return }
        guard (1...64).contains(uid.utf8.count),
              uid.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2E }),
              !uid.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
            throw ConsentError.invalidField("scope", "not a Study Instance UID (1 to 64 digits and dots): \"\(uid)\"")
        }
    }

    static func checkWholeSeconds(_ name: String, _ date: Date) throws {
        guard date.timeIntervalSince1970.rounded(.down) == date.timeIntervalSince1970 else {
            throw ConsentError.invalidField(name, "not a whole second")
        }
        guard date.timeIntervalSince1970 >= 0, date.timeIntervalSince1970 < 253_402_300_800 else {
            throw ConsentError.invalidField(name, "out of range (1970 to 9999)")
        }
    }

    static func checkMembers(_ m: [String: ConsentJSON], required: [String], optional: [String]) throws {
        for name in required where m[name] == nil { throw ConsentError.missingMember(name) }
        let known = Set(required + optional)
        for name in JCS.sortedKeys(m.keys) where !known.contains(name) { throw ConsentError.unexpectedMember(name) }
    }

    static func string(_ m: [String: ConsentJSON], _ name: String) throws -> String {
        guard let v = m[name] else { throw ConsentError.missingMember(name) }
        guard case .string(let s) = v else { throw ConsentError.invalidField(name, "not a string") }
        return s
    }

    static func time(_ m: [String: ConsentJSON], _ name: String) throws -> Date {
        try ConsentTime.parseDocumentTime(try string(m, name))
    }
}
