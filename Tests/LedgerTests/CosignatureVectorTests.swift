// Known answers for C2SP signed-note and tlog-cosignature (cosignature/v1) computed by an
// independent implementation: testdata/ledger/make_cosignature_vectors.py, written from the
// specifications' text with Python's `cryptography` (OpenSSL's Ed25519). The Swift signers must
// produce exactly those bytes (Ed25519 is deterministic), and the verifiers accept them and refuse
// any one-byte change. See testdata/ledger/README.md.

import Foundation
import Testing
@testable import Ledger

struct CosignatureVectors: Decodable {
    struct Key: Decodable {
        let name: String, seed: String, publicKey: String, keyID: String, verifierKey: String, privateKey: String
    }
    struct Case: Decodable {
        let desc: String, checkpoint: String, timestamp: UInt64, signedNote: String, message: String
        let timestampedSignature: String, signatureLine: String, cosignedNote: String
    }
    let witness: Key
    let log: Key
    let cases: [Case]

    static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../testdata/ledger/cosignature-vectors.json").standardizedFileURL

    static func load() throws -> CosignatureVectors {
        try JSONDecoder().decode(CosignatureVectors.self, from: Data(contentsOf: url))
    }
}

/// Hex decoding written here, not the module's.
func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.utf8.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String(decoding: [a, b], as: UTF8.self), radix: 16)!) }
    return out
}

@Suite struct CosignatureVectorTests {
    @Test func vectorFileIsThere() throws {
        let v = try CosignatureVectors.load()
        #expect(v.cases.count == 3)
    }

    @Test func keysMatchTheIndependentEncoding() throws {
        let v = try CosignatureVectors.load()
        let fromSeed = try CosignatureSigner(name: v.witness.name, seed: hexBytes(v.witness.seed))
        #expect(fromSeed.verifierKey == v.witness.verifierKey)
        #expect(fromSeed.privateKey == v.witness.privateKey)
        #expect(NoteKey.hex8(fromSeed.keyID) == v.witness.keyID)
        #expect(try CosignatureSigner(privateKey: v.witness.privateKey).verifierKey == v.witness.verifierKey)
        #expect(try CosignatureVerifier(verifierKey: v.witness.verifierKey).keyID == fromSeed.keyID)
        let log = try NoteSigner(privateKey: v.log.privateKey)
        #expect(log.verifierKey == v.log.verifierKey)
        #expect(NoteKey.hex8(log.keyID) == v.log.keyID)
    }

    @Test(arguments: [0, 1, 2]) func cosignerProducesExactlyTheVectorBytes(_ i: Int) throws {
        let v = try CosignatureVectors.load()
        let c = v.cases[i]
        let witness = try CosignatureSigner(name: v.witness.name, seed: hexBytes(v.witness.seed))
        // The signed message.
        #expect(CosignatureMessage.bytes(timestamp: c.timestamp, text: Array(c.checkpoint.utf8)) == Array(c.message.utf8), "\(c.desc)")
        // The log's note signature (signed-note, type 0x01).
        #expect(try NoteSigner(privateKey: v.log.privateKey).sign(c.checkpoint) == c.signedNote, "\(c.desc)")
        // The cosignature line, from the checkpoint and from the signed note.
        let sig = try witness.cosign(checkpoint: Checkpoint.parse(c.checkpoint), timestamp: c.timestamp)
        #expect(sig.line == c.signatureLine, "\(c.desc)")
        #expect(sig.signatureBytes == hexBytes(c.timestampedSignature), "\(c.desc)")
        #expect(try witness.cosign(signedNote: c.signedNote, timestamp: c.timestamp) == c.cosignedNote, "\(c.desc)")
    }

    @Test(arguments: [0, 1, 2]) func verifierAcceptsTheVectorAndRefusesEveryByteChanged(_ i: Int) throws {
        let v = try CosignatureVectors.load()
        let c = v.cases[i]
        let wv = try CosignatureVerifier(verifierKey: v.witness.verifierKey)
        let (checkpoint, timestamp) = try wv.verify(signedNote: c.cosignedNote)
        #expect(checkpoint == (try Checkpoint.parse(c.checkpoint)))
        #expect(timestamp == c.timestamp)
        let both = try SignedNote.open(c.cosignedNote, verifiers: [try NoteVerifier(verifierKey: v.log.verifierKey), wv])
        #expect(both.verified.count == 2)
        // Every single-bit change of the timestamped signature is refused.
        let sig = hexBytes(c.timestampedSignature)
        let keyID = try #require(UInt32(v.witness.keyID, radix: 16))
        for byte in sig.indices {
            var bad = sig
            bad[byte] ^= 0x01
            let line = NoteSignature(name: v.witness.name, keyID: keyID, signature: bad).line
            #expect(!wv.verify(text: Array(c.checkpoint.utf8), signature: bad), "\(c.desc): byte \(byte)")
            #expect(throws: NoteError.self, "\(c.desc): byte \(byte)") { try wv.verify(signedNote: c.signedNote + line) }
        }
        // The log's key does not verify the cosignature, nor does the witness key as a note key.
        #expect(throws: NoteError.self) { try NoteVerifier(verifierKey: v.log.verifierKey).open(c.checkpoint + "\n" + c.signatureLine) }
    }
}
