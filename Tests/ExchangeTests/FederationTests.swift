import Archive
import DICOM
import Foundation
import Ledger
import Testing
@testable import Exchange

/// Federated C-FIND: every peer asked at once; the answers merged with each match naming its
/// peer; a peer that hangs or cannot be reached is reported, not waited for.
@Suite(.serialized) struct FederationTests {
    func studyKeys() -> [QueryKey] {
        [QueryKey(tag: .patientID, vr: "LO", value: ""), QueryKey(tag: .studyInstanceUID, vr: "UI", value: "")]
    }

    @Test func theAnswersOfSeveralPeersAreMergedEachNamingItsPeer() async throws {
        let a = try TestNode("peer-a.test")
        let b = try TestNode("peer-b.test")
        let asker = try TestNode("asker.test")
        defer { a.stop(); b.stop(); asker.stop() }
        let studyA = try a.storeStudy(patientID: "PID-A", count: 1)
        _ = try a.publish(studyA)
        _ = try a.storeStudy(patientID: "PID-A", count: 1)  // no manifest yet: not offered
        let studyB = try b.storeStudy(patientID: "PID-B", count: 2)
        _ = try b.publish(studyB)
        for node in [a, b] {
            try node.add(asker)
            try await node.startServer()
            try asker.add(node)
        }
        let federation = FederatedQuery(archive: asker.archive, identity: asker.identity, timeout: 20, logger: asker.logger)
        defer { federation.shutdown() }
        let (matches, unanswered) = await federation.find(level: .study, keys: studyKeys())
        #expect(unanswered.isEmpty)
        let found = Set(matches.map { "\($0.peer) \($0.studyInstanceUID ?? "-") \($0.values.first { $0.tag == .patientID }?.value ?? "-")" })
        #expect(found == ["peer-a.test \(studyA) PID-A", "peer-b.test \(studyB) PID-B"])
    }

    @Test func aPeerThatHangsOrIsDownIsReportedAndTheOthersAnswered() async throws {
        let a = try TestNode("peer-a.test")
        let asker = try TestNode("asker.test")
        defer { a.stop(); asker.stop() }
        let study = try a.storeStudy(patientID: "PID-A", count: 1)
        _ = try a.publish(study)
        try a.add(asker)
        try await a.startServer()
        try asker.add(a)
        let silent = try SilentListener()
        let registry = PeerRegistry(archive: asker.archive)
        for (name, port) in [("silent.test", silent.port), ("down.test", try freeLoopbackPort())] {
            try registry.add(Peer(name: name, url: "https://127.0.0.1:\(port)", caPEM: TestPKI.ca.certificatePEM,
                                  verifierKey: try NoteSigner.generate(name: name).verifierKey, share: .none), replace: false)
        }
        let federation = FederatedQuery(archive: asker.archive, identity: asker.identity, timeout: 2, logger: asker.logger)
        defer { federation.shutdown() }
        let (matches, unanswered) = await federation.find(level: .study, keys: studyKeys())
        #expect(unanswered == ["down.test", "silent.test"])
        #expect(matches.map(\.peer) == ["peer-a.test"])
        #expect(matches.first?.studyInstanceUID == study)
    }

    @Test func aPeerThatRefusesIsReportedAndAnEquivocatingOneNotAsked() async throws {
        let a = try TestNode("peer-a.test")
        let b = try TestNode("peer-b.test")
        let asker = try TestNode("asker.test")
        defer { a.stop(); b.stop(); asker.stop() }
        _ = try a.publish(try a.storeStudy(patientID: "PID-A", count: 1))
        _ = try b.publish(try b.storeStudy(patientID: "PID-B", count: 1))
        try a.add(b)  // a trusts the test CA, but does not know the asker: 403
        try await a.startServer()
        try b.add(asker)
        try await b.startServer()
        try asker.add(a)
        try asker.add(b)
        try PeerRegistry(archive: asker.archive).markEquivocation("peer-b.test", evidence: "test")
        let federation = FederatedQuery(archive: asker.archive, identity: asker.identity, timeout: 20, logger: asker.logger)
        defer { federation.shutdown() }
        let (matches, unanswered) = await federation.find(level: .study, keys: studyKeys())
        #expect(matches.isEmpty)
        #expect(unanswered == ["peer-a.test"])
    }
}
