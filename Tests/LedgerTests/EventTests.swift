import Foundation
import Testing
@testable import Ledger

@Suite struct EventTests {
    static let golden = """
        dicom-bridge/event/v1 instance-anchored
        sop-instance-uid 1.2.826.0.1.3680043.8.498.1
        study-instance-uid 1.2.826.0.1.3680043.8.498.2
        series-instance-uid 1.2.826.0.1.3680043.8.498.3
        sop-class-uid 1.2.840.10008.5.1.4.1.1.2
        sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        size 524288
        transfer-syntax-uid 1.2.840.10008.1.2.1
        calling-ae-title CT SCANNER 1
        received 2025-03-04T05:06:07.089Z

        """

    func sample(ae: String = "CT SCANNER 1", sha: String = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") throws -> InstanceAnchored {
        try InstanceAnchored(
            sopInstanceUID: "1.2.826.0.1.3680043.8.498.1", studyInstanceUID: "1.2.826.0.1.3680043.8.498.2",
            seriesInstanceUID: "1.2.826.0.1.3680043.8.498.3", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
            sha256: sha, size: 524_288, transferSyntaxUID: "1.2.840.10008.1.2.1", callingAETitle: ae,
            receivedAt: Timestamp.parseRFC3339("2025-03-04T05:06:07.089Z")!)
    }

    @Test func encodesToTheDocumentedGoldenBytes() throws {
        let event = LedgerEvent.instanceAnchored(try sample())
        #expect(String(decoding: event.encode(), as: UTF8.self) == Self.golden)
        #expect(event.type == "instance-anchored")
        #expect(event.version == 1)
        #expect(try LedgerEvent.decode(Data(Self.golden.utf8)) == event)
    }

    @Test func normalisesOnConstruction() throws {
        // Outer spaces of an AE title are not significant; hex case is not either.
        let a = try sample(ae: "  CT SCANNER 1   ", sha: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08")
        #expect(a == (try sample()))
        #expect(a.callingAETitle == "CT SCANNER 1")
        #expect(a.receivedMillis == 1_741_064_767_089)
    }

    @Test func rejectsInvalidFields() {
        #expect(throws: LedgerEventError.self) { try sample(ae: "") }
        #expect(throws: LedgerEventError.self) { try sample(ae: "SEVENTEEN_CHARS_X") }
        #expect(throws: LedgerEventError.self) { try sample(ae: "BACK\\SLASH") }
        #expect(throws: LedgerEventError.self) { try sample(ae: "NEW\nLINE") }
        #expect(throws: LedgerEventError.self) { try sample(sha: "abc") }
        #expect(throws: LedgerEventError.self) { try sample(sha: String(repeating: "g", count: 64)) }
        #expect(throws: LedgerEventError.self) {
            try InstanceAnchored(sopInstanceUID: "1.2.3 ", studyInstanceUID: "1", seriesInstanceUID: "1", sopClassUID: "1",
                                 sha256: String(repeating: "0", count: 64), size: 0, transferSyntaxUID: "1", callingAETitle: "A",
                                 receivedMillis: 0)
        }
        #expect(throws: LedgerEventError.self) {
            try InstanceAnchored(sopInstanceUID: String(repeating: "1", count: 65), studyInstanceUID: "1", seriesInstanceUID: "1",
                                 sopClassUID: "1", sha256: String(repeating: "0", count: 64), size: 0, transferSyntaxUID: "1",
                                 callingAETitle: "A", receivedMillis: 0)
        }
    }

    @Test func decodeAcceptsOnlyTheCanonicalForm() throws {
        let g = Self.golden
        let variants = [
            String(g.dropLast()),  // no final newline
            g + "\n",  // trailing blank line
            g.replacingOccurrences(of: "size 524288", with: "size 0524288"),
            g.replacingOccurrences(of: "size 524288", with: "size +524288"),
            g.replacingOccurrences(of: "sha256 9f", with: "sha256 9F"),
            g.replacingOccurrences(of: "sha256 9f", with: "sha256  9f"),
            g.replacingOccurrences(of: ".089Z", with: "Z"),
            g.replacingOccurrences(of: ".089Z", with: ".089+00:00"),
            g.replacingOccurrences(of: "2025-03-04", with: "2025-02-30"),
            g.replacingOccurrences(of: "calling-ae-title CT SCANNER 1", with: "calling-ae-title CT SCANNER 1 "),
            g.replacingOccurrences(of: "\n", with: "\r\n"),
            g.replacingOccurrences(of: "event/v1", with: "event/v01"),
            g.replacingOccurrences(of: "sop-class-uid", with: "SOP-class-uid"),
            // fields out of order
            g.replacingOccurrences(of: "size 524288\ntransfer-syntax-uid 1.2.840.10008.1.2.1",
                                   with: "transfer-syntax-uid 1.2.840.10008.1.2.1\nsize 524288"),
            // an extra field (e.g. someone adding a patient name) is refused
            g + "patient-name DOE^JOHN\n",
            "",
            "\n",
        ]
        for v in variants {
            #expect(throws: LedgerEventError.self, "\(v.debugDescription)") { try LedgerEvent.decode(Data(v.utf8)) }
        }
        #expect(throws: LedgerEventError.unknownType(type: "instance-anchored", version: 2)) {
            try LedgerEvent.decode(Data(g.replacingOccurrences(of: "event/v1", with: "event/v2").utf8))
        }
        #expect(throws: LedgerEventError.unknownType(type: "consent-granted", version: 2)) {
            try LedgerEvent.decode(Data("dicom-bridge/event/v2 consent-granted\nscope all\n".utf8))
        }
        // The generic form still reads unknown types.
        let record = try EventRecord.parse(Data("dicom-bridge/event/v1 consent-granted\nscope all\n".utf8))
        #expect(record.fields == [EventRecord.Field(key: "scope", value: "all")])
    }

    @Test func timestamps() {
        #expect(Timestamp.rfc3339(millis: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.rfc3339(millis: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp.rfc3339(millis: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(Timestamp.rfc3339(millis: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.rfc3339(millis: -62_167_219_200_000) == "0000-01-01T00:00:00.000Z")
        for ms: Int64 in [0, -1, 1, 951_782_400_000, 1_741_064_767_089, 4_107_542_400_123, -62_167_219_200_000, 253_402_300_799_999] {
            #expect(Timestamp.parseMillis(Timestamp.rfc3339(millis: ms)) == ms)
        }
        for bad in ["1900-02-29T00:00:00.000Z", "2001-13-01T00:00:00.000Z", "2001-01-01T24:00:00.000Z",
                    "2001-01-01T00:00:60.000Z", "2001-01-01 00:00:00.000Z", "2001-01-01T00:00:00.000z", "2001-1-01T00:00:00.000Z"] {
            #expect(Timestamp.parseMillis(bad) == nil, "\(bad)")
        }
        // Dates round to the nearest millisecond and survive the trip.
        let d = Date(timeIntervalSince1970: 1_700_000_000.1234)
        #expect(Timestamp.rfc3339(d) == "2023-11-14T22:13:20.123Z")
        #expect(Timestamp.millis(Timestamp.date(millis: 1_700_000_000_123)) == 1_700_000_000_123)
    }

    @Test func eventsGoIntoTheLog() throws {
        let db = try makeLedgerDatabase()
        let event = LedgerEvent.instanceAnchored(try sample())
        let index = try db.write { try LedgerStore.append([event.encode()], in: $0) }
        let stored = try #require(try db.read { try LedgerStore.entry(at: index[0], $0) })
        #expect(try LedgerEvent.decode(stored) == event)
    }
}
