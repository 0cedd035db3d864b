// Ed25519 cosignatures, C2SP tlog-cosignature (c2sp.org/tlog-cosignature), "cosignature/v1":
// a note signature line on a checkpoint whose signature is timestamped_signature:
//
//     u64 timestamp (big-endian POSIX seconds, at most 2^63 - 1) || 64-byte Ed25519 signature
//
// over the message
//
//     "cosignature/v1\n" || "time " || <timestamp, decimal, no leading zeroes> || "\n" || <checkpoint note text>
//
// Key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4].

import Crypto
import Foundation

enum CosignatureMessage {
    static func bytes(timestamp: UInt64, text: [UInt8]) -> [UInt8] {
        Array("cosignature/v1\ntime \(timestamp)\n".utf8) + text
    }

    static func bigEndian(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(v >> UInt64(56 - 8 * $0) & 0xFF) } }
    static func uint64(_ b: ArraySlice<UInt8>) -> UInt64 { b.reduce(0) { $0 << 8 | UInt64($1) } }
}

/// A witness's Ed25519 cosigning key (signature type 0x04).
public struct CosignatureSigner: Sendable {
    public let name: String
    public let keyID: UInt32
    let key: Curve25519.Signing.PrivateKey

    public static func generate(name: String) throws -> CosignatureSigner {
        try CosignatureSigner(name: name, key: Curve25519.Signing.PrivateKey())
    }

    public init(name: String, seed: some DataProtocol) throws {
        guard seed.count == 32 else { throw NoteError.malformedKey("Ed25519 seed must be 32 bytes") }
        try self.init(name: name, key: Curve25519.Signing.PrivateKey(rawRepresentation: Array(seed)))
    }

    /// The key from "PRIVATE+KEY+<name>+<key ID>+<base64(0x04 || seed)>", or from a plain
    /// Ed25519 note key (type 0x01) used as a cosigning key, as transparency-dev/formats allows.
    /// The cosignature key ID is always the type 0x04 one.
    public init(privateKey: String) throws {
        let (name, id, type, seed) = try NoteKey.parsePrivateKey(privateKey)
        guard type == NoteKey.cosignatureV1 || type == NoteKey.ed25519 else { throw NoteError.unknownAlgorithm(type) }
        try self.init(name: name, seed: seed)
        let stated = NoteKey.keyID(name: name, type: type, publicKey: key.publicKey.rawRepresentation)
        guard stated == id else { throw NoteError.keyIDMismatch(name: name, stated: id, computed: stated) }
    }

    private init(name: String, key: Curve25519.Signing.PrivateKey) throws {
        guard NoteKey.isValidName(name) else { throw NoteError.invalidName(name) }
        self.name = name
        self.key = key
        self.keyID = NoteKey.keyID(name: name, type: NoteKey.cosignatureV1, publicKey: key.publicKey.rawRepresentation)
    }

    public var privateKey: String {
        "PRIVATE+KEY+\(name)+\(NoteKey.hex8(keyID))+\(Base64.encode([NoteKey.cosignatureV1] + Array(key.rawRepresentation)))"
    }

    /// The vkey "<name>+<key ID>+<base64(0x04 || public key)>".
    public var verifierKey: String {
        NoteKey.verifierKey(name: name, type: NoteKey.cosignatureV1, publicKey: Array(key.publicKey.rawRepresentation))
    }

    public var verifier: CosignatureVerifier { CosignatureVerifier(name: name, keyID: keyID, key: key.publicKey) }

    /// The cosignature of `checkpoint` at `timestamp` (POSIX seconds), as a note signature.
    public func cosign(checkpoint: Checkpoint, timestamp: UInt64) throws -> NoteSignature {
        try cosign(text: Array(checkpoint.text().utf8), timestamp: timestamp)
    }

    /// The signed checkpoint note with this cosignature added (replacing an earlier one by this
    /// key). The note's signatures are not checked here; its text must be a checkpoint.
    public func cosign(signedNote: String, timestamp: UInt64) throws -> String {
        let (text, _) = try SignedNote.parse(signedNote)
        _ = try Checkpoint.parse(text)
        return try SignedNote.adding([cosign(text: Array(text.utf8), timestamp: timestamp)], to: signedNote)
    }

    private func cosign(text: [UInt8], timestamp: UInt64) throws -> NoteSignature {
        guard timestamp <= UInt64(Int64.max) else { throw NoteError.malformedNote("timestamp beyond 2^63 - 1") }
        let sig = try key.signature(for: CosignatureMessage.bytes(timestamp: timestamp, text: text))
        return NoteSignature(name: name, keyID: keyID, signature: CosignatureMessage.bigEndian(timestamp) + Array(sig))
    }
}

/// Verifies cosignature/v1 signatures of one witness key. Usable with `SignedNote.open` next to
/// the log's `NoteVerifier`.
public struct CosignatureVerifier: NoteVerifying {
    public let name: String
    public let keyID: UInt32
    let key: Curve25519.Signing.PublicKey

    /// The key from its vkey "<name>+<key ID>+<base64(0x04 || public key)>", or from a plain
    /// Ed25519 note verifier key (type 0x01) of the same key pair, as transparency-dev/formats
    /// allows. The cosignature key ID is always the type 0x04 one.
    public init(verifierKey: String) throws {
        let (name, _, type, raw) = try NoteKey.parseVerifierKey(verifierKey)
        guard type == NoteKey.cosignatureV1 || type == NoteKey.ed25519 else { throw NoteError.unknownAlgorithm(type) }
        guard raw.count == 32 else { throw NoteError.malformedKey("Ed25519 public key must be 32 bytes") }
        self.init(name: name, keyID: NoteKey.keyID(name: name, type: NoteKey.cosignatureV1, publicKey: raw),
                  key: try Curve25519.Signing.PublicKey(rawRepresentation: raw))
    }

    init(name: String, keyID: UInt32, key: Curve25519.Signing.PublicKey) {
        self.name = name
        self.keyID = keyID
        self.key = key
    }

    public var verifierKey: String {
        NoteKey.verifierKey(name: name, type: NoteKey.cosignatureV1, publicKey: Array(key.rawRepresentation))
    }

    /// `signature` is timestamp (8 bytes) || Ed25519 signature (64 bytes).
    public func verify(text: [UInt8], signature: [UInt8]) -> Bool {
        guard signature.count == 72 else { return false }
        let timestamp = CosignatureMessage.uint64(signature[0..<8])
        guard timestamp <= UInt64(Int64.max) else { return false }
        return key.isValidSignature(signature[8...], for: CosignatureMessage.bytes(timestamp: timestamp, text: text))
    }

    /// Checks this witness's cosignature on a signed checkpoint note; returns the checkpoint and the
    /// cosignature's timestamp. Throws if the note has no cosignature by this key, or a bad one.
    public func verify(signedNote: String) throws -> (checkpoint: Checkpoint, timestamp: UInt64) {
        let opened = try SignedNote.open(signedNote, verifiers: [self])
        let checkpoint = try Checkpoint.parse(opened.text)
        let sig = opened.verified[0].signatureBytes
        return (checkpoint, CosignatureMessage.uint64(sig[0..<8]))
    }
}
