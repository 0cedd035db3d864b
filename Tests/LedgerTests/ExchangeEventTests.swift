import Foundation
import Testing
@testable import Ledger

@Suite struct ExchangeEventTests {
    static let manifestGolden = """
        dicom-bridge/event/v1 manifest-published
        study-instance-uid 1.2.826.0.1.3680043.8.498.2
        manifest-sop-instance-uid 2.25.1234
        manifest-sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        manifest-size 1652
        instance-count 3
        instances-root ea7a9aaade7e848c5363e3bacb2b246c5af5e3113b435a90ff411970ebb53580
        replaces none
        published 2026-11-25T10:57:29.123Z

        """

    static let receivedGolden = """
        dicom-bridge/event/v1 received-from-peer
        sop-instance-uid 1.2.826.0.1.3680043.8.498.1
        study-instance-uid 1.2.826.0.1.3680043.8.498.2
        series-instance-uid 1.2.826.0.1.3680043.8.498.3
        sop-class-uid 1.2.840.10008.5.1.4.1.1.2
        sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        size 524288
        transfer-syntax-uid 1.2.840.10008.1.2.1
        peer node-a
        peer-manifest-entry 17
        received 2026-11-25T10:57:29.123Z

        """

    @Test func manifestPublishedRoundTripsThroughItsGoldenBytes() throws {
        let event = try ManifestPublished(
            studyInstanceUID: "1.2.826.0.1.3680043.8.498.2", manifestSOPInstanceUID: "2.25.1234",
            manifestSHA256: "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", manifestSize: 1652,
            instanceCount: 3, instancesRoot: "ea7a9aaade7e848c5363e3bacb2b246c5af5e3113b435a90ff411970ebb53580",
            replaces: nil, publishedAt: Timestamp.parseRFC3339("2026-11-25T10:57:29.123Z")!)
        #expect(String(decoding: event.encode(), as: UTF8.self) == Self.manifestGolden)
        #expect(try LedgerEvent.decode(Data(Self.manifestGolden.utf8)) == .manifestPublished(event))
        let replacing = Self.manifestGolden.replacingOccurrences(of: "replaces none", with: "replaces 2.25.99")
        guard case .manifestPublished(let r) = try LedgerEvent.decode(Data(replacing.utf8)) else { Issue.record("wrong type"); return }
        #expect(r.replaces == "2.25.99")
    }

    @Test func receivedFromPeerRoundTripsAndRejectsNonCanonicalForms() throws {
        let event = try ReceivedFromPeer(
            sopInstanceUID: "1.2.826.0.1.3680043.8.498.1", studyInstanceUID: "1.2.826.0.1.3680043.8.498.2",
            seriesInstanceUID: "1.2.826.0.1.3680043.8.498.3", sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", size: 524_288,
            transferSyntaxUID: "1.2.840.10008.1.2.1", peer: "node-a", peerManifestEntry: 17,
            receivedAt: Timestamp.parseRFC3339("2026-11-25T10:57:29.123Z")!)
        #expect(String(decoding: event.encode(), as: UTF8.self) == Self.receivedGolden)
        #expect(try LedgerEvent.decode(Data(Self.receivedGolden.utf8)) == .receivedFromPeer(event))
        for bad in [("peer-manifest-entry 17", "peer-manifest-entry 017"), ("peer node-a", "peer node a"),
                    ("size 524288", "size -1")] {
            #expect(throws: LedgerEventError.self) {
                try LedgerEvent.decode(Data(Self.receivedGolden.replacingOccurrences(of: bad.0, with: bad.1).utf8))
            }
        }
    }

    @Test func instancesRootIsTheRFC6962RootOfTheSortedHashes() throws {
        for n in [0, 1, 2, 3, 5, 8, 13] {
            let hashes = (0..<n).map { i in Hex.encode(Array(RFC6962.leafHash(Data("instance \(i)".utf8)).bytes)) }
            var store = MemoryHashStore()
            for h in hashes.sorted() { _ = try store.append(Hex.decode(h)!) }
            let expected = try MerkleTree.treeHash(size: store.size, reader: store)
            // The order given does not matter: leaves are sorted.
            #expect(try ManifestPublished.instancesRoot(sha256s: hashes.reversed()) == expected.hex)
            #expect(try ManifestPublished.instancesRoot(sha256s: hashes.map { $0.uppercased() }) == expected.hex)
        }
        let a = try ManifestPublished.instancesRoot(sha256s: [String(repeating: "a", count: 64)])
        let b = try ManifestPublished.instancesRoot(sha256s: [String(repeating: "b", count: 64)])
        #expect(a != b)
        #expect(throws: LedgerEventError.self) { try ManifestPublished.instancesRoot(sha256s: ["zz"]) }
    }
}
