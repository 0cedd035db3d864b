import Crypto
import Foundation

/// A patient's Ed25519 key pair. The files are standard PEM, as OpenSSL writes them:
///
/// - private key: `-----BEGIN PRIVATE KEY-----`, PKCS#8 (RFC 5958 / RFC 8410) whose DER is
///   `302e020100300506032b657004220420` followed by the 32-byte seed (OpenSSL's
///   `openssl genpkey -algorithm ed25519`). A version 2 OneAsymmetricKey that also carries the public
///   key (`3051020101300506032b657004220420` seed `812100` public key) is read too.
/// - public key: `-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo whose DER is
///   `302a300506032b6570032100` followed by the 32-byte public key (`openssl pkey -pubout`).
public struct PatientKeyPair: Sendable {
    /// The 32-byte private seed (RFC 8032).
    private let seed: Data

    static let pkcs8Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70,
                                       0x04, 0x22, 0x04, 0x20]
    static let pkcs8V2Prefix: [UInt8] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70,
                                         0x04, 0x22, 0x04, 0x20]
    static let pkcs8V2PublicKeyTag: [UInt8] = [0x81, 0x21, 0x00]

    /// A new random key pair.
    public static func generate() -> PatientKeyPair {
        PatientKeyPair(key: Curve25519.Signing.PrivateKey())
    }

    init(key: Curve25519.Signing.PrivateKey) { seed = key.rawRepresentation }

    /// From the 32-byte RFC 8032 seed.
    public init(seed: Data) throws {
        guard seed.count == 32 else { throw ConsentError.invalidKey("an Ed25519 private key is 32 bytes, got \(seed.count)") }
        self.seed = Data(seed)
    }

    /// From a PKCS#8 `PRIVATE KEY` PEM (see the type's documentation).
    public init(pem: String) throws {
        let der = try PEMBlock.decode(pem, label: "PRIVATE KEY")
        if der.count == 48, der.starts(with: Self.pkcs8Prefix) {
            try self.init(seed: Data(der[16..<48]))
        } else if der.count == 83, der.starts(with: Self.pkcs8V2Prefix),
                  Array(der[48..<51]) == Self.pkcs8V2PublicKeyTag {
            try self.init(seed: Data(der[16..<48]))
            guard publicKeyRaw == Data(der[51..<83]) else {
                throw ConsentError.invalidKey("the PKCS#8 key's public key does not match its private key")
            }
        } else {
            throw ConsentError.invalidKey("not an Ed25519 PKCS#8 private key (make one with `dicom-bridge consent keygen` or `openssl genpkey -algorithm ed25519`)")
        }
    }

    var privateKey: Curve25519.Signing.PrivateKey {
        // The seed is always 32 bytes (checked in every initializer).
        try! Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    }

    /// PKCS#8 PEM of the private key (one 64-character base64 line).
    public var privateKeyPEM: String { PEMBlock.encode(Data(Self.pkcs8Prefix) + seed, label: "PRIVATE KEY") }

    /// SubjectPublicKeyInfo PEM of the public key.
    public var publicKeyPEM: String { publicKey.pem }

    /// The 32-byte raw public key.
    public var publicKeyRaw: Data { privateKey.publicKey.rawRepresentation }

    public var publicKey: PatientPublicKey { try! PatientPublicKey(raw: publicKeyRaw) }

    /// An Ed25519 signature (64 bytes) of `data`.
    public func signature(for data: Data) throws -> Data {
        do {
            return try privateKey.signature(for: data)
        } catch {
            throw ConsentError.invalidKey("signing failed: \(error)")
        }
    }
}

/// A patient's Ed25519 public key: what a grant's `patientKey` holds (base64 of the 32 raw bytes).
public struct PatientPublicKey: Hashable, Sendable, CustomStringConvertible {
    /// The 32-byte raw public key (RFC 8032).
    public let raw: Data

    static let spkiPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]

    public init(raw: Data) throws {
        guard raw.count == 32 else { throw ConsentError.invalidKey("an Ed25519 public key is 32 bytes, got \(raw.count)") }
        do {
            _ = try Curve25519.Signing.PublicKey(rawRepresentation: raw)
        } catch {
            throw ConsentError.invalidKey("not an Ed25519 public key: \(error)")
        }
        self.raw = Data(raw)
    }

    /// From a SubjectPublicKeyInfo `PUBLIC KEY` PEM.
    public init(pem: String) throws {
        let der = try PEMBlock.decode(pem, label: "PUBLIC KEY")
        guard der.count == 44, der.starts(with: Self.spkiPrefix) else {
            throw ConsentError.invalidKey("not an Ed25519 SubjectPublicKeyInfo public key")
        }
        try self.init(raw: Data(der[12..<44]))
    }

    /// From standard base64 (with padding) of the 32 raw bytes, as in `patientKey`. Only the
    /// canonical encoding is accepted (44 characters, no whitespace).
    public init(base64: String) throws {
        guard let raw = Data(base64Encoded: base64), raw.base64EncodedString() == base64 else {
            throw ConsentError.invalidKey("patientKey is not base64 of 32 bytes")
        }
        try self.init(raw: raw)
    }

    /// Standard base64 of the raw key, with padding: the form of `patientKey`.
    public var base64: String { raw.base64EncodedString() }

    /// SubjectPublicKeyInfo PEM.
    public var pem: String { PEMBlock.encode(Data(Self.spkiPrefix) + raw, label: "PUBLIC KEY") }

    /// Lowercase hex SHA-256 of the raw key (what the ledger's patient-enrolled event records).
    public var sha256Hex: String { SHA256.hash(data: raw).map { String(format: "%02x", $0) }.joined() }

    public var description: String { base64 }

    /// Whether `signature` is a valid Ed25519 signature of `data` by this key.
    public func isValidSignature(_ signature: Data, for data: Data) -> Bool {
        guard signature.count == 64, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
        return key.isValidSignature(signature, for: data)
    }
}

/// RFC 7468 PEM, one block.
enum PEMBlock {
    static func encode(_ der: Data, label: String) -> String {
        let b64 = der.base64EncodedString()
        var lines = ["-----BEGIN \(label)-----"]
        var rest = Substring(b64)
        while !rest.isEmpty {
            lines.append(String(rest.prefix(64)))
            rest = rest.dropFirst(64)
        }
        lines.append("-----END \(label)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    static func decode(_ pem: String, label: String) throws -> Data {
        let lines = pem.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") && $0.hasSuffix("-----") }) else {
            throw ConsentError.invalidKey("no PEM block (-----BEGIN \(label)-----) found")
        }
        let found = String(lines[begin].dropFirst(11).dropLast(5))
        guard found == label else {
            if found == "ENCRYPTED PRIVATE KEY" {
                throw ConsentError.invalidKey("the private key is encrypted; give an unencrypted PKCS#8 key")
            }
            throw ConsentError.invalidKey("expected a \(label) PEM block, found \(found)")
        }
        guard let end = lines[(begin + 1)...].firstIndex(of: "-----END \(label)-----") else {
            throw ConsentError.invalidKey("the PEM block has no -----END \(label)----- line")
        }
        let body = lines[(begin + 1)..<end].joined()
        guard !body.contains(":"), let der = Data(base64Encoded: body), !der.isEmpty else {
            throw ConsentError.invalidKey("the PEM block's base64 is invalid")
        }
        return der
    }
}
