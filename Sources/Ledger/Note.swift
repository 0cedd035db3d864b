// Signed notes, C2SP signed-note (c2sp.org/signed-note), with Ed25519 keys (signature type 0x01)
// encoded as golang.org/x/mod/sumdb/note encodes them.
//
//     <text, ending in "\n">
//     \n
//     — <key name> <base64(4-byte big-endian key ID || signature)>\n    (one or more)
//
// The "—" is U+2014 EM DASH (bytes E2 80 94), followed by a space.

import Crypto
import Foundation

/// A signature line of a note, parsed but not necessarily verified.
public struct NoteSignature: Hashable, Sendable {
    public let name: String
    public let keyID: UInt32
    /// base64(keyID || signature), as on the line.
    public let base64: String

    /// The signature line, "— name base64\n".
    public var line: String { "\u{2014} \(name) \(base64)\n" }

    /// The signature bytes after the 4-byte key ID.
    public var signatureBytes: [UInt8] { Array((Base64.decode(base64) ?? []).dropFirst(4)) }

    init(name: String, keyID: UInt32, signature: [UInt8]) {
        self.name = name
        self.keyID = keyID
        self.base64 = Base64.encode(NoteKey.bigEndian(keyID) + signature)
    }

    init(name: String, keyID: UInt32, base64: String) {
        self.name = name
        self.keyID = keyID
        self.base64 = base64
    }
}

/// Something that verifies note signatures of one key, identified by name and key ID.
public protocol NoteVerifying: Sendable {
    var name: String { get }
    var keyID: UInt32 { get }
    /// Whether `signature` (the bytes after the key ID) is a valid signature of the note text.
    func verify(text: [UInt8], signature: [UInt8]) -> Bool
}

/// Something that signs note text with one key.
public protocol NoteSigning: Sendable {
    var name: String { get }
    var keyID: UInt32 { get }
    /// The signature bytes (without the key ID) over the note text.
    func signature(text: [UInt8]) throws -> [UInt8]
}

/// A note whose signatures were checked against known keys.
public struct OpenedNote: Sendable {
    /// The note text, final newline included, blank separator line excluded.
    public let text: String
    /// Signatures by known keys, each verified.
    public let verified: [NoteSignature]
    /// Signatures by keys not known to the verifier; ignored, as the spec requires.
    public let unverified: [NoteSignature]
}

public enum NoteError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a well-formed signed note (or note text to be signed).
    case malformedNote(String)
    /// A key string that is not well-formed.
    case malformedKey(String)
    /// A key of a signature type this code does not implement.
    case unknownAlgorithm(UInt8)
    /// The key ID in a key string is not the one its name and key imply.
    case keyIDMismatch(name: String, stated: UInt32, computed: UInt32)
    /// A key name that is empty or contains a space or "+".
    case invalidName(String)
    /// A known key's signature does not verify: the note is rejected as a whole.
    case invalidSignature(name: String, keyID: UInt32)
    /// No signature in the note is by a known key. The signatures found are attached.
    case unverifiedNote(signatures: [NoteSignature])
    /// Two known keys share a name and key ID.
    case ambiguousKey(name: String, keyID: UInt32)

    public var description: String {
        switch self {
        case let .malformedNote(why): return "malformed note: \(why)"
        case let .malformedKey(why): return "malformed key: \(why)"
        case let .unknownAlgorithm(alg): return "unknown signature algorithm \(alg)"
        case let .keyIDMismatch(name, stated, computed):
            return "key \(name)+\(NoteKey.hex8(stated)): key ID should be \(NoteKey.hex8(computed))"
        case let .invalidName(name): return "invalid key name \"\(name)\""
        case let .invalidSignature(name, id): return "invalid signature for key \(name)+\(NoteKey.hex8(id))"
        case let .unverifiedNote(sigs):
            return "note has no signature by a known key (signed by: \(sigs.map { "\($0.name)+\(NoteKey.hex8($0.keyID))" }.joined(separator: ", ")))"
        case let .ambiguousKey(name, id): return "ambiguous key \(name)+\(NoteKey.hex8(id))"
        }
    }
}

/// Parsing, signing and opening signed notes with any keys.
public enum SignedNote {
    /// Verifiers must accept at least 16 signatures; more than this many make a note malformed.
    public static let maxSignatures = 100
    static let sigPrefix: [UInt8] = [0xE2, 0x80, 0x94, 0x20]  // "— "

    /// Signs `text` (which must end in "\n") with each signer: text, blank line, signature lines.
    public static func sign(_ text: String, signers: [any NoteSigning]) throws -> String {
        try checkText(text)
        let bytes = Array(text.utf8)
        var note = text + "\n"
        for s in signers {
            guard NoteKey.isValidName(s.name) else { throw NoteError.invalidName(s.name) }
            note += NoteSignature(name: s.name, keyID: s.keyID, signature: try s.signature(text: bytes)).line
        }
        return note
    }

    /// Splits a signed note into its text and signature lines without verifying anything.
    public static func parse(_ note: String) throws -> (text: String, signatures: [NoteSignature]) {
        let msg = Array(note.utf8)
        // Valid UTF-8 (a Swift String is) with no ASCII control character but newline.
        guard !msg.contains(where: { $0 < 0x20 && $0 != 0x0A }) else { throw NoteError.malformedNote("control character") }
        // The text ends at the last blank line; signature lines follow it.
        guard let split = lastBlankLine(msg) else { throw NoteError.malformedNote("no blank line before signatures") }
        let text = msg[...split]  // includes the text's final newline
        let sigs = msg[(split + 2)...]
        guard !sigs.isEmpty, sigs.last == 0x0A else { throw NoteError.malformedNote("no signature lines") }
        var signatures: [NoteSignature] = []
        for line in sigs.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false) {
            guard line.starts(with: sigPrefix) else { throw NoteError.malformedNote("signature line does not start with \"— \"") }
            let rest = line.dropFirst(sigPrefix.count)
            guard let space = rest.firstIndex(of: 0x20) else { throw NoteError.malformedNote("signature line without signature") }
            let name = String(decoding: rest[..<space], as: UTF8.self)
            let b64 = String(decoding: rest[(space + 1)...], as: UTF8.self)
            guard NoteKey.isValidName(name), let raw = Base64.decode(b64), raw.count >= 5 else {
                throw NoteError.malformedNote("bad signature line for \"\(name)\"")
            }
            signatures.append(NoteSignature(name: name, keyID: NoteKey.uint32(raw), base64: b64))
            guard signatures.count <= maxSignatures else { throw NoteError.malformedNote("more than \(maxSignatures) signatures") }
        }
        return (String(decoding: text, as: UTF8.self), signatures)
    }

    /// `open` for bytes off the wire: they must be valid UTF-8.
    public static func open(data: some DataProtocol, verifiers: [any NoteVerifying]) throws -> OpenedNote {
        guard let note = String(validating: Array(data), as: UTF8.self) else { throw NoteError.malformedNote("not UTF-8") }
        return try open(note, verifiers: verifiers)
    }

    /// Opens a signed note: every signature by a known key (same name and key ID) must verify,
    /// signatures by unknown keys are set aside, and at least one known key must have signed.
    public static func open(_ note: String, verifiers: [any NoteVerifying]) throws -> OpenedNote {
        let (text, signatures) = try parse(note)
        let textBytes = Array(text.utf8)
        var verified: [NoteSignature] = []
        var unverified: [NoteSignature] = []
        for sig in signatures {
            let known = verifiers.filter { $0.name == sig.name && $0.keyID == sig.keyID }
            guard known.count <= 1 else { throw NoteError.ambiguousKey(name: sig.name, keyID: sig.keyID) }
            guard let v = known.first else {
                if !unverified.contains(sig) { unverified.append(sig) }
                continue
            }
            guard v.verify(text: textBytes, signature: sig.signatureBytes) else {
                throw NoteError.invalidSignature(name: sig.name, keyID: sig.keyID)
            }
            if !verified.contains(where: { $0.name == sig.name && $0.keyID == sig.keyID }) { verified.append(sig) }
        }
        guard !verified.isEmpty else { throw NoteError.unverifiedNote(signatures: unverified) }
        return OpenedNote(text: text, verified: verified, unverified: unverified)
    }

    /// Adds signature lines to a signed note, replacing any existing line by the same key.
    public static func adding(_ signatures: [NoteSignature], to note: String) throws -> String {
        let (text, existing) = try parse(note)
        let kept = existing.filter { old in !signatures.contains { $0.name == old.name && $0.keyID == old.keyID } }
        return text + "\n" + (kept + signatures).map(\.line).joined()
    }

    static func checkText(_ text: String) throws {
        let b = Array(text.utf8)
        guard b.last == 0x0A else { throw NoteError.malformedNote("text does not end in a newline") }
        guard !b.contains(where: { $0 < 0x20 && $0 != 0x0A }) else { throw NoteError.malformedNote("control character in text") }
    }

    /// Index of the first newline of the last "\n\n" in `msg`.
    private static func lastBlankLine(_ msg: [UInt8]) -> Int? {
        var i = msg.count - 2
        while i >= 0 {
            if msg[i] == 0x0A && msg[i + 1] == 0x0A { return i }
            i -= 1
        }
        return nil
    }
}

/// Key names, key IDs and the key string encoding of golang.org/x/mod/sumdb/note.
public enum NoteKey {
    /// Signature type 0x01: Ed25519 over the note text (c2sp.org/signed-note).
    public static let ed25519: UInt8 = 0x01
    /// Signature type 0x04: timestamped Ed25519 cosignature/v1 (c2sp.org/tlog-cosignature).
    public static let cosignatureV1: UInt8 = 0x04

    /// Key ID = first 4 bytes, big-endian, of SHA-256(name || 0x0A || type || public key).
    public static func keyID(name: String, type: UInt8, publicKey: some Collection<UInt8>) -> UInt32 {
        var h = SHA256()
        h.update(data: Array(name.utf8) + [0x0A, type] + Array(publicKey))
        return uint32(Array(h.finalize()))
    }

    /// A key name is non-empty and has no Unicode white space and no "+".
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && !name.unicodeScalars.contains { $0.properties.isWhitespace || $0 == "+" }
    }

    /// Verifier key string: "<name>+<8 hex digits key ID>+<base64(type || public key)>".
    public static func verifierKey(name: String, type: UInt8, publicKey: [UInt8]) -> String {
        "\(name)+\(hex8(keyID(name: name, type: type, publicKey: publicKey)))+\(Base64.encode([type] + publicKey))"
    }

    /// Parses a verifier key string; checks the name and that the key ID matches.
    public static func parseVerifierKey(_ s: String) throws -> (name: String, keyID: UInt32, type: UInt8, key: [UInt8]) {
        let parts = s.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { throw NoteError.malformedKey("want <name>+<key ID>+<key>") }
        let (name, id, key) = try parseParts(name: parts[0], id: parts[1], key: parts[2])
        let computed = keyID(name: name, type: key[0], publicKey: key.dropFirst())
        guard computed == id else { throw NoteError.keyIDMismatch(name: name, stated: id, computed: computed) }
        return (name, id, key[0], Array(key.dropFirst()))
    }

    /// Parses a private key string "PRIVATE+KEY+<name>+<key ID>+<base64(type || seed)>"; the key
    /// ID (of the public key) is checked by the caller, who derives the public key.
    static func parsePrivateKey(_ s: String) throws -> (name: String, keyID: UInt32, type: UInt8, seed: [UInt8]) {
        let parts = s.split(separator: "+", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, parts[0] == "PRIVATE", parts[1] == "KEY" else {
            throw NoteError.malformedKey("want PRIVATE+KEY+<name>+<key ID>+<key>")
        }
        let (name, id, key) = try parseParts(name: parts[2], id: parts[3], key: parts[4])
        return (name, id, key[0], Array(key.dropFirst()))
    }

    private static func parseParts(name: String, id: String, key: String) throws -> (String, UInt32, [UInt8]) {
        guard isValidName(name) else { throw NoteError.invalidName(name) }
        guard id.utf8.count == 8, let raw = Hex.decode(id) else { throw NoteError.malformedKey("key ID \"\(id)\" is not 8 hex digits") }
        guard let k = Base64.decode(key), !k.isEmpty else { throw NoteError.malformedKey("key is not base64") }
        return (name, uint32(raw), k)
    }

    static func hex8(_ v: UInt32) -> String { Hex.encode(bigEndian(v)) }
    static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func uint32(_ b: [UInt8]) -> UInt32 { UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3]) }
}

/// An Ed25519 note signing key (signature type 0x01).
public struct NoteSigner: NoteSigning {
    public let name: String
    public let keyID: UInt32
    let key: Curve25519.Signing.PrivateKey

    /// A new random key for `name`.
    public static func generate(name: String) throws -> NoteSigner {
        try NoteSigner(name: name, key: Curve25519.Signing.PrivateKey())
    }

    /// The key from its 32-byte Ed25519 seed (RFC 8032 private key).
    public init(name: String, seed: some DataProtocol) throws {
        guard seed.count == 32 else { throw NoteError.malformedKey("Ed25519 seed must be 32 bytes") }
        try self.init(name: name, key: Curve25519.Signing.PrivateKey(rawRepresentation: Array(seed)))
    }

    /// The key from its private key string "PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>".
    public init(privateKey: String) throws {
        let (name, id, type, seed) = try NoteKey.parsePrivateKey(privateKey)
        guard type == NoteKey.ed25519 else { throw NoteError.unknownAlgorithm(type) }
        try self.init(name: name, seed: seed)
        guard keyID == id else { throw NoteError.keyIDMismatch(name: name, stated: id, computed: keyID) }
    }

    private init(name: String, key: Curve25519.Signing.PrivateKey) throws {
        guard NoteKey.isValidName(name) else { throw NoteError.invalidName(name) }
        self.name = name
        self.key = key
        self.keyID = NoteKey.keyID(name: name, type: NoteKey.ed25519, publicKey: key.publicKey.rawRepresentation)
    }

    /// "PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>". Keep it secret.
    public var privateKey: String {
        "PRIVATE+KEY+\(name)+\(NoteKey.hex8(keyID))+\(Base64.encode([NoteKey.ed25519] + Array(key.rawRepresentation)))"
    }

    /// "<name>+<key ID>+<base64(0x01 || public key)>".
    public var verifierKey: String {
        NoteKey.verifierKey(name: name, type: NoteKey.ed25519, publicKey: Array(key.publicKey.rawRepresentation))
    }

    public var verifier: NoteVerifier { NoteVerifier(name: name, keyID: keyID, key: key.publicKey) }

    public func signature(text: [UInt8]) throws -> [UInt8] { Array(try key.signature(for: text)) }

    /// The signed note of `text` (which must end in "\n"), signed by this key alone.
    public func sign(_ text: String) throws -> String { try SignedNote.sign(text, signers: [self]) }
}

/// An Ed25519 note verifier key (signature type 0x01).
public struct NoteVerifier: NoteVerifying {
    public let name: String
    public let keyID: UInt32
    let key: Curve25519.Signing.PublicKey

    /// The key from its verifier key string "<name>+<key ID>+<base64(0x01 || public key)>".
    public init(verifierKey: String) throws {
        let (name, id, type, raw) = try NoteKey.parseVerifierKey(verifierKey)
        guard type == NoteKey.ed25519 else { throw NoteError.unknownAlgorithm(type) }
        guard raw.count == 32 else { throw NoteError.malformedKey("Ed25519 public key must be 32 bytes") }
        self.name = name
        self.keyID = id
        self.key = try Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }

    /// The verifier for a 32-byte Ed25519 public key under `name`.
    public init(name: String, publicKey: some DataProtocol) throws {
        guard NoteKey.isValidName(name) else { throw NoteError.invalidName(name) }
        guard publicKey.count == 32 else { throw NoteError.malformedKey("Ed25519 public key must be 32 bytes") }
        let key = try Curve25519.Signing.PublicKey(rawRepresentation: Array(publicKey))
        self.init(name: name, keyID: NoteKey.keyID(name: name, type: NoteKey.ed25519, publicKey: key.rawRepresentation), key: key)
    }

    init(name: String, keyID: UInt32, key: Curve25519.Signing.PublicKey) {
        self.name = name
        self.keyID = keyID
        self.key = key
    }

    public var verifierKey: String {
        NoteKey.verifierKey(name: name, type: NoteKey.ed25519, publicKey: Array(key.rawRepresentation))
    }

    public func verify(text: [UInt8], signature: [UInt8]) -> Bool {
        signature.count == 64 && key.isValidSignature(signature, for: text)
    }

    /// Opens a note that this key must have signed (signatures by other keys are ignored).
    public func open(_ signedNote: String) throws -> OpenedNote {
        try SignedNote.open(signedNote, verifiers: [self])
    }
}
