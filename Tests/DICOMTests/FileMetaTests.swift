import Testing
@testable import DICOM

@Suite struct FileMetaTests {
    @Test func encodesPreamblePrefixAndGroupLength() {
        let meta = FileMetaInformation(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.4",
                                       transferSyntaxUID: TransferSyntax.explicitVRLittleEndian, sourceAETitle: "MODALITY")
        let bytes = meta.encoded()
        #expect(bytes.prefix(128).allSatisfy { $0 == 0 })
        #expect(Array(bytes[128..<132]) == Array("DICM".utf8))
        // (0002,0000) UL, length 4, value = bytes after this element.
        #expect(Array(bytes[132..<140]) == [0x02, 0x00, 0x00, 0x00, 0x55, 0x4C, 0x04, 0x00])
        let groupLength = Int(bytes[140]) | Int(bytes[141]) << 8 | Int(bytes[142]) << 16 | Int(bytes[143]) << 24
        #expect(groupLength == bytes.count - 144)
        #expect(bytes.count % 2 == 0)
    }

    @Test func padsOddValuesAsThePartTenRulesSay() {
        // UIDs pad with NUL, SH and AE with space (PS3.5 6.2).
        let meta = FileMetaInformation(sopClassUID: "1.2.3", sopInstanceUID: "1.2.3.45", transferSyntaxUID: "1.2.840.10008.1.2",
                                       sourceAETitle: "ODD")
        let bytes = meta.encoded()
        let text = String(decoding: bytes.map { $0 == 0 ? UInt8(ascii: "~") : $0 }, as: UTF8.self)
        #expect(text.contains("1.2.3~"))
        #expect(text.contains("1.2.840.10008.1.2~"))
        #expect(text.contains("ODD "))
        #expect(text.contains(UID.implementationClass))
    }

    @Test func omitsSourceAEWhenUnknown() {
        let meta = FileMetaInformation(sopClassUID: "1.2", sopInstanceUID: "1.2", transferSyntaxUID: "1.2", sourceAETitle: nil)
        let bytes = meta.encoded()
        #expect(!bytes.windowed(4).contains([0x02, 0x00, 0x16, 0x00]))
    }
}

@Suite struct VocabularyTests {
    @Test func aeTitles() {
        #expect(AETitle("STORESCU")?.value == "STORESCU")
        #expect(AETitle("  PADDED ")?.value == "PADDED")
        #expect(AETitle("") == nil)
        #expect(AETitle("    ") == nil)
        #expect(AETitle("SEVENTEEN_CHARS_X") == nil)
        #expect(AETitle("BACK\\SLASH") == nil)
        #expect(AETitle("TAB\tX") == nil)
    }

    @Test func uids() {
        #expect(UID.isValid("1.2.840.10008.1.2.1"))
        #expect(UID.isValid(UID.implementationClass))
        #expect(!UID.isValid(""))
        #expect(!UID.isValid("1.02.3"))
        #expect(!UID.isValid("1..2"))
        #expect(!UID.isValid("1.2."))
        #expect(!UID.isValid("1.2.a"))
        #expect(!UID.isValid(String(repeating: "1.", count: 32) + "1"))
    }

    @Test func statusClasses() {
        #expect(DIMSEStatus.success.isSuccess)
        #expect(DIMSEStatus.outOfResources.isFailure)
        #expect(DIMSEStatus.cannotUnderstand.isFailure)
        #expect(DIMSEStatus(0xB000).isWarning)
        #expect(DIMSEStatus(0xFF00).isPending)
        #expect(DIMSEStatus.outOfResources.description == "A700 (Refused: Out of Resources)")
    }
}

extension Array where Element == UInt8 {
    func windowed(_ n: Int) -> [[UInt8]] {
        guard count >= n else { return [] }
        return (0...(count - n)).map { Array(self[$0..<$0 + n]) }
    }
}
