import Foundation
import Testing
@testable import Ledger

/// The example keys and note of golang.org/x/mod/sumdb/note (note_test.go).
enum GoNoteVectors {
    static let peterPrivate = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let peterVerifier = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let enochVerifier = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
    static let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let peterSig = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    static let enochSig = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
}

@Suite struct NoteTests {
    typealias V = GoNoteVectors

    @Test func goKeysParseAndAgree() throws {
        let signer = try NoteSigner(privateKey: V.peterPrivate)
        #expect(signer.name == "PeterNeumann")
        #expect(signer.keyID == 0xc74f_20a3)
        #expect(signer.verifierKey == V.peterVerifier)
        #expect(signer.privateKey == V.peterPrivate)
        let verifier = try NoteVerifier(verifierKey: V.peterVerifier)
        #expect(verifier.keyID == 0xc74f_20a3)
        #expect(verifier.verifierKey == V.peterVerifier)
        #expect(try NoteVerifier(verifierKey: V.enochVerifier).keyID == 0xaf0c_fe78)
    }

    @Test func goSignedNoteOpens() throws {
        let verifier = try NoteVerifier(verifierKey: V.peterVerifier)
        let opened = try verifier.open(V.text + "\n" + V.peterSig)
        #expect(opened.text == V.text)
        #expect(opened.verified.map(\.name) == ["PeterNeumann"])
        #expect(opened.verified[0].line == V.peterSig)
    }

    #if !canImport(Darwin)  // Apple's CryptoKit randomizes Ed25519; BoringSSL is RFC 8032 deterministic.
    @Test func signingReproducesGoByteForByte() throws {
        let signer = try NoteSigner(privateKey: V.peterPrivate)
        #expect(try signer.sign(V.text) == V.text + "\n" + V.peterSig)
    }
    #endif

    @Test func openWithSeveralKeys() throws {
        let peter = try NoteVerifier(verifierKey: V.peterVerifier)
        let enoch = try NoteVerifier(verifierKey: V.enochVerifier)
        let note = V.text + "\n" + V.peterSig + V.enochSig
        let one = try SignedNote.open(note, verifiers: [peter])
        #expect(one.verified.map(\.name) == ["PeterNeumann"])
        #expect(one.unverified.map(\.name) == ["EnochRoot"])
        let both = try SignedNote.open(note, verifiers: [peter, enoch])
        #expect(both.verified.map(\.name) == ["PeterNeumann", "EnochRoot"])
        #expect(both.unverified.isEmpty)
        #expect(throws: NoteError.unverifiedNote(signatures: both.verified)) { try SignedNote.open(note, verifiers: []) }
        #expect(throws: NoteError.ambiguousKey(name: "EnochRoot", keyID: 0xaf0c_fe78)) {
            try SignedNote.open(V.text + "\n" + V.enochSig, verifiers: [enoch, peter, enoch])
        }
        // An unused duplicate does not matter.
        _ = try SignedNote.open(V.text + "\n" + V.peterSig, verifiers: [enoch, peter, enoch])
        // Repeated and unknown signatures.
        let sig60 = V.enochSig.index(V.enochSig.startIndex, offsetBy: 60)
        let enochABCD = V.enochSig[..<sig60] + "ABCD" + V.enochSig[sig60...]
        let messy = try SignedNote.open(V.text + "\n" + V.peterSig + V.peterSig + V.enochSig + V.enochSig + enochABCD, verifiers: [peter])
        #expect(messy.verified.count == 1)
        #expect(messy.unverified.map(\.line) == [V.enochSig, String(enochABCD)])
    }

    @Test func rejectsBadSignaturesAndMalformedNotes() throws {
        let peter = try NoteVerifier(verifierKey: V.peterVerifier)
        let at60 = V.peterSig.index(V.peterSig.startIndex, offsetBy: 60)
        let corrupted = V.peterSig[..<at60] + "ABCD" + V.peterSig[at60...]
        #expect(throws: NoteError.invalidSignature(name: "PeterNeumann", keyID: 0xc74f_20a3)) {
            try peter.open(V.text + "\n" + corrupted)
        }
        #expect(throws: NoteError.invalidSignature(name: "PeterNeumann", keyID: 0xc74f_20a3)) {
            try peter.open(V.text.replacingOccurrences(of: "cryptography", with: "cryptographY") + "\n" + V.peterSig)
        }
        let bad = [
            V.text,
            V.text + "\n",
            V.text + "\n" + String(V.peterSig.dropLast()),
            "\u{01}" + V.text + "\n" + V.peterSig,
            V.text + "\n" + "\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            V.text + "\n" + V.peterSig + "Unexpected line.\n",
            V.text + "\n" + String(repeating: V.peterSig, count: 101),
            V.text + "\n" + "- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            V.text + "\n" + "\u{2014} PeterNeumann \n",
            V.text + "\n" + "\u{2014} PeterNeumann AAAA\n",
            V.text + "\r\n" + V.peterSig,
        ]
        for note in bad {
            #expect(throws: NoteError.self, "\(note.debugDescription)") { try peter.open(note) }
        }
        // Invalid UTF-8 off the wire.
        #expect(throws: NoteError.malformedNote("not UTF-8")) {
            try SignedNote.open(data: [0xFF] + Array((V.text + "\n" + V.peterSig).utf8), verifiers: [peter])
        }
        _ = try SignedNote.open(data: Data((V.text + "\n" + V.peterSig).utf8), verifiers: [peter])
        // 100 signatures are accepted.
        _ = try peter.open(V.text + "\n" + String(repeating: V.peterSig, count: 100))
    }

    @Test func manglingsOfKeyStringsAreRejected() throws {
        // As Go's TestNewVerifier/TestNewSigner: every proper substring and every single-byte
        // change of a key string must be rejected.
        for (key, parse) in [
            (V.peterVerifier, { (s: String) throws in _ = try NoteVerifier(verifierKey: s) }),
            (V.peterPrivate, { (s: String) throws in _ = try NoteSigner(privateKey: s) }),
        ] {
            try parse(key)
            let b = Array(key.utf8)
            for i in 0...b.count {
                for j in (i + 1)..<(b.count + 1) where !(i == 0 && j == b.count) {
                    #expect(throws: (any Error).self) { try parse(String(decoding: b[i..<j], as: UTF8.self)) }
                }
            }
            for i in b.indices {
                var c = b
                c[i] &+= 1
                #expect(throws: (any Error).self, "\(String(decoding: c, as: UTF8.self))") { try parse(String(decoding: c, as: UTF8.self)) }
            }
        }
        #expect(throws: NoteError.keyIDMismatch(name: "PeterNeumann", stated: 0xcc46_9956, computed: 0xc74f_20a3)) {
            try NoteVerifier(verifierKey: "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        }
    }

    @Test func generatedKeysRoundTrip() throws {
        let signer = try NoteSigner.generate(name: "hospital.example/bridge")
        let again = try NoteSigner(privateKey: signer.privateKey)
        #expect(again.verifierKey == signer.verifierKey)
        #expect(again.keyID == signer.keyID)
        let verifier = try NoteVerifier(verifierKey: signer.verifierKey)
        #expect(verifier.keyID == signer.keyID)
        let note = try again.sign("hello\n")
        #expect(try verifier.open(note).text == "hello\n")
        #expect(throws: NoteError.invalidName("bad name")) { try NoteSigner.generate(name: "bad name") }
        #expect(throws: NoteError.invalidName("a+b")) { try NoteSigner.generate(name: "a+b") }
        #expect(throws: NoteError.self) { try signer.sign("no newline") }
        #expect(throws: NoteError.self) { try signer.sign("tab\there\n") }
    }
}

@Suite struct CheckpointTests {
    let root = MerkleHash(base64: "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")!

    @Test func textMatchesTheSpecExample() throws {
        let cp = Checkpoint(origin: "example.com/behind-the-sofa", size: 20_852_163, rootHash: root)
        #expect(cp.text() == "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
        #expect(try Checkpoint.parse(cp.text()) == cp)
        let ext = Checkpoint(origin: "o", size: 0, rootHash: RFC6962.emptyRoot, extensionLines: ["x", "y z"])
        #expect(try Checkpoint.parse(ext.text()) == ext)
    }

    @Test func malformedCheckpointsAreRejected() {
        let r = root.base64
        for text in [
            "o\n1\n\(r)", "o\n1\n", "\n1\n\(r)\n", "o\n01\n\(r)\n", "o\n+1\n\(r)\n", "o\n-1\n\(r)\n", "o\n 1\n\(r)\n",
            "o\n18446744073709551616\n\(r)\n", "o\n1\nAAAA\n", "o\n1\n\(r.dropLast())\n", "o\n1\n\(r)\n\n",
            "o\n1\n\(r)\n\nx\n", "o\t\n1\n\(r)\n", "o\r\n1\n\(r)\n",
        ] {
            #expect(throws: CheckpointError.self, "\(text.debugDescription)") { try Checkpoint.parse(text) }
        }
    }

    @Test func signedCheckpointRoundTripsAndTamperingIsRejected() throws {
        let signer = try NoteSigner.generate(name: "bridge.example/log")
        let verifier = try NoteVerifier(verifierKey: signer.verifierKey)
        let cp = Checkpoint(origin: "bridge.example/log", size: 42, rootHash: root)
        let note = try signer.sign(cp.text())
        #expect(try Checkpoint.parse(verifier.open(note).text) == cp)

        let changedRoot = note.replacingOccurrences(of: root.base64, with: RFC6962.emptyRoot.base64)
        let changedSize = note.replacingOccurrences(of: "\n42\n", with: "\n43\n")
        #expect(throws: NoteError.invalidSignature(name: signer.name, keyID: signer.keyID)) { try verifier.open(changedRoot) }
        #expect(throws: NoteError.invalidSignature(name: signer.name, keyID: signer.keyID)) { try verifier.open(changedSize) }
        // Signed by another key of the same name: an unknown key, so nothing verifies.
        let other = try NoteSigner.generate(name: "bridge.example/log")
        #expect(throws: NoteError.self) { try verifier.open(other.sign(cp.text())) }
        // The right name and key ID with another key's signature.
        let otherSig = try SignedNote.parse(other.sign(cp.text())).signatures[0]
        let forged = cp.text() + "\n" + NoteSignature(name: signer.name, keyID: signer.keyID, signature: otherSig.signatureBytes).line
        #expect(throws: NoteError.invalidSignature(name: signer.name, keyID: signer.keyID)) { try verifier.open(forged) }
    }
}

@Suite struct CosignatureTests {
    @Test func cosignAndVerify() throws {
        let log = try NoteSigner.generate(name: "bridge.example/log")
        let witness = try CosignatureSigner.generate(name: "witness.example/w1")
        let cp = Checkpoint(origin: "bridge.example/log", size: 5, rootHash: RFC6962.leafHash([UInt8]()))
        let note = try log.sign(cp.text())
        let cosigned = try witness.cosign(signedNote: note, timestamp: 1_679_315_147)
        #expect(cosigned.hasPrefix(note))

        let wv = try CosignatureVerifier(verifierKey: witness.verifierKey)
        let (checkpoint, timestamp) = try wv.verify(signedNote: cosigned)
        #expect(checkpoint == cp)
        #expect(timestamp == 1_679_315_147)
        // Log key and witness key together.
        let opened = try SignedNote.open(cosigned, verifiers: [log.verifier, wv])
        #expect(opened.verified.count == 2)
        // The cosignature line is keyID || timestamp || signature.
        let line = try SignedNote.parse(cosigned).signatures[1]
        #expect(line.signatureBytes.count == 72)
        #expect(Array(line.signatureBytes.prefix(8)) == [0, 0, 0, 0, 0x64, 0x18, 0x50, 0xCB])
        // Re-cosigning replaces the earlier cosignature.
        let again = try witness.cosign(signedNote: cosigned, timestamp: 1_679_315_148)
        #expect(try SignedNote.parse(again).signatures.count == 2)
        #expect(try wv.verify(signedNote: again).timestamp == 1_679_315_148)
        // A note verifier with the same key does not accept cosignatures, nor the reverse: the key IDs differ.
        #expect(throws: NoteError.self) { try wv.verify(signedNote: note) }
        #expect(throws: NoteError.self) { try CosignatureVerifier(verifierKey: witness.verifierKey).verify(signedNote: log.sign(cp.text())) }
    }

    @Test func tamperedCosignaturesAreRejected() throws {
        let witness = try CosignatureSigner.generate(name: "witness.example/w1")
        let cp = Checkpoint(origin: "o", size: 1, rootHash: RFC6962.emptyRoot)
        let sig = try witness.cosign(checkpoint: cp, timestamp: 100)
        let good = cp.text() + "\n" + sig.line
        _ = try witness.verifier.verify(signedNote: good)
        // Change the timestamp inside the signature: the message changes, the signature fails.
        var raw = Base64.decode(sig.base64)!
        raw[11] ^= 1
        let bumped = cp.text() + "\n" + NoteSignature(name: sig.name, keyID: sig.keyID, base64: Base64.encode(raw)).line
        #expect(throws: NoteError.invalidSignature(name: witness.name, keyID: witness.keyID)) { try witness.verifier.verify(signedNote: bumped) }
        #expect(throws: NoteError.self) {
            try witness.verifier.verify(signedNote: Checkpoint(origin: "o", size: 2, rootHash: RFC6962.emptyRoot).text() + "\n" + sig.line)
        }
        #expect(throws: NoteError.self) { try witness.cosign(checkpoint: cp, timestamp: UInt64(Int64.max) + 1) }
    }

    @Test func keyEncodings() throws {
        let w = try CosignatureSigner.generate(name: "witness.example/w1")
        #expect(try CosignatureSigner(privateKey: w.privateKey).verifierKey == w.verifierKey)
        #expect(Base64.decode(String(w.verifierKey.split(separator: "+", maxSplits: 2)[2]))![0] == 0x04)
        // A plain Ed25519 note key may serve as a cosigning key; the key ID is the 0x04 one.
        let plain = try NoteSigner(privateKey: GoNoteVectors.peterPrivate)
        let asWitness = try CosignatureSigner(privateKey: GoNoteVectors.peterPrivate)
        let v = try CosignatureVerifier(verifierKey: GoNoteVectors.peterVerifier)
        #expect(asWitness.keyID == v.keyID)
        #expect(asWitness.keyID != plain.keyID)
        // A real tlog-cosignature vkey (transparency-dev/formats note_cosigv1_test.go).
        let remora = try CosignatureVerifier(verifierKey: "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
        #expect(remora.keyID == 0xda77_ade7)
        #expect(throws: NoteError.self) { try NoteVerifier(verifierKey: "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2") }
    }
}
