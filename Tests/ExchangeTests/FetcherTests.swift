import Archive
import Foundation
import GRDB
import Ledger
import Testing
@testable import Exchange

/// Fetching a study from a peer (an in-process node serving its peer API) and proving every byte
/// against the peer's ledger; a lying peer is refused and nothing of its study is stored.
@Suite(.serialized) struct FetcherTests {
    struct Pair {
        let source: TestNode
        let dest: TestNode
        let study: String
        let manifest: PublishedManifest
        func stop() { source.stop(); dest.stop() }
        func fetcher() -> Fetcher { Fetcher(archive: dest.archive, home: dest.dir, identity: dest.identity, logger: dest.logger) }
        func request(concurrency: Int = 4) -> Exchange.FetchRequest {
            var r = Exchange.FetchRequest(peer: source.name, studyInstanceUID: study)
            r.concurrency = concurrency
            return r
        }
        var heldAtDestination: Int {
            get throws {
                try dest.archive.database.read { db in
                    try Int.fetchOne(db, sql: """
                        SELECT COUNT(*) FROM instance i JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref
                        WHERE s.study_instance_uid = ?
                        """, arguments: [study])
                } ?? 0
            }
        }
    }

    /// A source holding one published study (and another, so that its ledger has two entries).
    func pair(instances: Int = 3) async throws -> Pair {
        let source = try TestNode("source.test")
        let dest = try TestNode("dest.test")
        _ = try source.publish(try source.storeStudy(patientID: "PID-OTHER", count: 1))
        let study = try source.storeStudy(patientID: "PID-1", count: instances)
        let manifest = try source.publish(study)
        try source.signCheckpoint()
        try source.add(dest)
        try await source.startServer()
        try dest.add(source)
        return Pair(source: source, dest: dest, study: study, manifest: manifest)
    }

    @Test func aFetchedStudyIsStoredBitForBitWithItsManifest() async throws {
        let p = try await pair()
        defer { p.stop() }
        let report = try await p.fetcher().fetch(p.request())
        #expect(report.peer == "source.test")
        #expect(report.instances == 3)
        let fetched = try #require(report.studies.first)
        #expect(fetched.studyInstanceUID == p.study)
        #expect(fetched.manifest == p.manifest.sopInstanceUID)
        #expect(fetched.manifestLedgerIndex == p.manifest.ledgerIndex)
        #expect(fetched.resumed == 0)
        #expect(fetched.paths.count == 4)  // three instances and the manifest
        let expected = try p.source.instanceBytes(study: p.study)
        #expect(expected.count == 3)
        #expect(try p.dest.instanceBytes(study: p.study) == expected)
        // Each marked as received from that peer.
        let origins = try await p.dest.archive.database.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT calling_ae_title FROM instance")
        }
        #expect(origins == [PeerOrigin.prefix + "source.test"])
    }

    @Test func aListOfInstanceHashesOtherThanTheLedgerAnchorsIsRefused() async throws {
        let p = try await pair()
        defer { p.stop() }
        // The source lies about one instance's hash (the manifest and its ledger entry are intact).
        try await p.source.archive.database.write { db in
            try db.execute(sql: "UPDATE manifest_instance SET sha256 = ? WHERE rowid = (SELECT max(rowid) FROM manifest_instance)",
                           arguments: [String(repeating: "ab", count: 32)])
        }
        let error = try await #require(throws: FetchRejected.self) { try await p.fetcher().fetch(p.request()) }
        #expect(error.study == p.study)
        #expect(error.reason.contains("the peer's list of 3 instance hashes has Merkle root"), "\(error)")
        #expect(try p.heldAtDestination == 0)
    }

    @Test func anInstanceOtherThanDeclaredIsRefusedAndNothingIsStored() async throws {
        let p = try await pair()
        defer { p.stop() }
        // The list (whose Merkle root covers hashes only) declares one instance a byte shorter than
        // it is: the download, with the right hash, is bigger than declared.
        let last = try #require(try p.source.members(p.manifest).last)
        try await p.source.archive.database.write { db in
            try db.execute(sql: "UPDATE manifest_instance SET size = size - 1 WHERE sop_instance_uid = ?", arguments: [last.sopInstanceUID])
        }
        let error = try await #require(throws: FetchRejected.self) { try await p.fetcher().fetch(p.request(concurrency: 1)) }
        #expect(error.reason.contains("instance \(last.sopInstanceUID) arrived with SHA-256 \(last.sha256) (\(last.size) bytes)"), "\(error)")
        #expect(error.reason.contains("(\(last.size - 1) bytes)"), "\(error)")
        #expect(try p.heldAtDestination == 0)
    }

    @Test func aCheckpointInconsistentWithOneSeenBeforeIsEquivocation() async throws {
        let p = try await pair()
        defer { p.stop() }
        // The destination saw, earlier, a tree of size 1 with another root than the peer's now.
        let forged = Checkpoint(origin: "source.test", size: 1, rootHash: try #require(MerkleHash(base64: Data(repeating: 7, count: 32).base64EncodedString())))
        try PeerRegistry(archive: p.dest.archive).record("source.test", forged, signedNote: forged.text())
        let error = try await #require(throws: PeerEquivocation.self) { try await p.fetcher().fetch(p.request()) }
        #expect(error.peer == "source.test")
        #expect(error.evidence.contains("does not extend the one of size 1"), "\(error.evidence)")
        let peer = try #require(try PeerRegistry(archive: p.dest.archive).peer("source.test"))
        #expect(peer.equivocation != nil)
        #expect(try p.heldAtDestination == 0)
        // And nothing more is taken from it.
        await #expect(throws: PeerEquivocation.self) { try await p.fetcher().fetch(p.request()) }
    }

    @Test func anInterruptedFetchResumesFromWhatItVerified() async throws {
        let p = try await pair()
        defer { p.stop() }
        let members = try p.source.members(p.manifest)
        let last = try #require(members.last)
        // The source's copy of the last instance is damaged: the fetch verifies the others, then fails on it.
        let path = try p.source.storedPath(sha256: last.sha256)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        var damaged = original
        damaged[damaged.count - 1] ^= 0xFF
        try damaged.write(to: URL(fileURLWithPath: path))
        let error = try await #require(throws: FetchRejected.self) { try await p.fetcher().fetch(p.request(concurrency: 1)) }
        #expect(error.reason.contains("instance \(last.sopInstanceUID) arrived with SHA-256"), "\(error)")
        #expect(try p.heldAtDestination == 0)
        // Repaired at the source: the next fetch keeps the two verified earlier and downloads only the last.
        try original.write(to: URL(fileURLWithPath: path))
        let report = try await p.fetcher().fetch(p.request(concurrency: 1))
        #expect(report.studies.first?.resumed == members.count - 1)
        #expect(report.instances == members.count)
        #expect(try p.dest.instanceBytes(study: p.study) == (try p.source.instanceBytes(study: p.study)))
    }

    @Test func aStagedFileThatNoLongerVerifiesIsFetchedAgain() async throws {
        let p = try await pair()
        defer { p.stop() }
        let members = try p.source.members(p.manifest)
        // A previous attempt left a file named by the first instance's hash, but with other bytes.
        let staging = p.dest.dir.appendingPathComponent("fetch/source.test").appendingPathComponent(p.study)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        try Data("not the instance".utf8).write(to: staging.appendingPathComponent(members[0].sha256 + ".dcm"))
        let report = try await p.fetcher().fetch(p.request())
        #expect(report.studies.first?.resumed == 0)
        #expect(try p.dest.instanceBytes(study: p.study) == (try p.source.instanceBytes(study: p.study)))
    }
}
