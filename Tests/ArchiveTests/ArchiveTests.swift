import Crypto
import DICOM
import Foundation
import GRDB
import Logging
import Testing
@testable import Archive

/// A fresh home in a temporary folder.
func temporaryHome() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("archive-test-" + UUID().uuidString)
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func attributes(sop: String, study: String = "1.2.3", series: String = "1.2.3.1", patient: String = "PID1") -> InstanceAttributes {
    var a = InstanceAttributes()
    a.sopInstanceUID = sop
    a.sopClassUID = "1.2.840.10008.5.1.4.1.1.2"
    a.studyInstanceUID = study
    a.seriesInstanceUID = series
    a.patientID = patient
    a.patientName = "Doe^Jane"
    a.modality = "CT"
    return a
}

/// Receives `payload` as the dataset of one instance and commits it.
func receive(_ archive: Archive, sop: String, payload: [UInt8], attrs: InstanceAttributes? = nil, ae: String = "MOD") throws -> StoreOutcome {
    let incoming = try archive.beginReceive(sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: sop,
                                            transferSyntaxUID: "1.2.840.10008.1.2.1", callingAETitle: ae)
    payload.withUnsafeBytes { _ = incoming.write($0) }
    return try archive.commit(incoming, attributes: attrs ?? attributes(sop: sop))
}

let logger = Logger(label: "test")

@Suite struct ArchiveTests {
    @Test func storesBytesUnderTheirHashWithTheFileMetaGroup() throws {
        let home = temporaryHome()
        let archive = try Archive(home: home, logger: logger)
        defer { archive.close() }
        let payload = (0..<100_000).map { UInt8($0 % 251) }
        let outcome = try receive(archive, sop: "1.2.3.4", payload: payload)
        guard case .stored(let i) = outcome else { Issue.record("expected a new instance, got \(outcome)"); return }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: archive.absolutePath(i.path)))
        let hex = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        #expect(hex == i.sha256)
        #expect(i.path.hasSuffix(hex + ".dcm"))
        #expect(Int64(bytes.count) == i.size)
        // The dataset follows the meta group byte for byte.
        #expect(Array(bytes.suffix(payload.count)) == payload)
        #expect(Array(bytes[128..<132]) == Array("DICM".utf8))
        // Nothing left in tmp/.
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.appendingPathComponent("tmp").path).isEmpty)
        let status = try archive.status()
        #expect(status.instances == 1 && status.series == 1 && status.studies == 1 && status.patients == 1)
    }

    @Test func identicalResendIsIdempotent() throws {
        let archive = try Archive(home: temporaryHome(), logger: logger)
        defer { archive.close() }
        let first = try receive(archive, sop: "1.2.3.5", payload: [1, 2, 3, 4])
        let second = try receive(archive, sop: "1.2.3.5", payload: [1, 2, 3, 4])
        guard case .duplicate(let d) = second else { Issue.record("expected a duplicate, got \(second)"); return }
        #expect(d.sha256 == first.instance.sha256)
        #expect(try archive.status().storedVersions == 1)
    }

    @Test func differentBytesKeepBothVersionsAndServeTheNewest() throws {
        let archive = try Archive(home: temporaryHome(), logger: logger)
        defer { archive.close() }
        let v1 = try receive(archive, sop: "1.2.3.6", payload: [1, 2, 3, 4])
        let v2 = try receive(archive, sop: "1.2.3.6", payload: [9, 9, 9, 9])
        guard case .newVersion(let i, let previous) = v2 else { Issue.record("expected a new version, got \(v2)"); return }
        #expect(previous == v1.instance.sha256)
        #expect(i.version == 2)
        let s = try archive.status()
        #expect(s.instances == 1)
        #expect(s.storedVersions == 2)
        let current = try archive.database.read { db in
            try String.fetchAll(db, sql: "SELECT sha256 FROM instance WHERE sop_instance_uid = '1.2.3.6' AND is_current = 1")
        }
        #expect(current == [i.sha256])
        for sha in [v1.instance.sha256, i.sha256] {
            #expect(FileManager.default.fileExists(atPath: archive.absolutePath("store/\(sha.prefix(2))/\(sha).dcm")))
        }
        // The older bytes sent again become the ones served.
        let again = try receive(archive, sop: "1.2.3.6", payload: [1, 2, 3, 4])
        #expect(again == .duplicate(StoredInstance(attributes: again.instance.attributes, sha256: v1.instance.sha256,
                                                   size: again.instance.size, transferSyntaxUID: again.instance.transferSyntaxUID,
                                                   callingAETitle: "MOD", receivedAt: again.instance.receivedAt,
                                                   path: again.instance.path, version: 1)))
        let servedNow = try archive.database.read { db in
            try String.fetchOne(db, sql: "SELECT sha256 FROM instance WHERE sop_instance_uid = '1.2.3.6' AND is_current = 1")
        }
        #expect(servedNow == v1.instance.sha256)
    }

    @Test func concurrentStoresAreGroupCommitted() throws {
        let archive = try Archive(home: temporaryHome(), logger: logger)
        defer { archive.close() }
        let errors = LockedValue<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            do { _ = try receive(archive, sop: "1.2.9.\(i + 1)", payload: Array(repeating: UInt8(i), count: 4096),
                                 attrs: attributes(sop: "1.2.9.\(i + 1)", study: "1.2.9", series: "1.2.9.\(i % 4 + 100)")) }
            catch { errors.withLock { $0.append("\(error)") } }
        }
        #expect(errors.withLock { $0 }.isEmpty)
        let s = try archive.status()
        #expect(s.instances == 64)
        #expect(s.series == 4)
        #expect(s.studies == 1)
    }

    @Test func commitHookRunsInTheSameTransaction() throws {
        struct HookFailure: Error {}
        let archive = try Archive(home: temporaryHome(), logger: logger)
        defer { archive.close() }
        archive.setCommitHook { _, _ in throw HookFailure() }
        #expect(throws: ArchiveError.self) { try receive(archive, sop: "1.2.7.1", payload: [1, 2]) }
        // The hook failed: the index row is not there either, and no file was left behind.
        #expect(try archive.status().instances == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: archive.home.appendingPathComponent("tmp").path).isEmpty)
        let seen = LockedValue<[String]>([])
        archive.setCommitHook { _, outcomes in seen.withLock { $0 += outcomes.map(\.instance.attributes.sopInstanceUID) } }
        _ = try receive(archive, sop: "1.2.7.1", payload: [1, 2])
        _ = try receive(archive, sop: "1.2.7.1", payload: [1, 2])  // duplicate: nothing new for the hook
        #expect(seen.withLock { $0 } == ["1.2.7.1"])
    }

    @Test func startupRemovesUnacknowledgedAndCompletesCommittedStagedFiles() throws {
        let home = temporaryHome()
        var archive: Archive? = try Archive(home: home, logger: logger)
        let stored = try receive(archive!, sop: "1.2.8.1", payload: [5, 6, 7, 8]).instance
        archive!.close()
        archive = nil
        let tmp = home.appendingPathComponent("tmp").path
        // A crash mid-transfer leaves a .part file; a crash after the index commit leaves a staged
        // file whose hash the index holds (simulated by moving the stored file back to tmp/).
        FileManager.default.createFile(atPath: tmp + "/dead.part", contents: Data([1, 2, 3]))
        FileManager.default.createFile(atPath: tmp + "/" + String(repeating: "a", count: 64) + ".x.dcm", contents: Data([1]))
        let final = home.path + "/" + stored.path
        try FileManager.default.moveItem(atPath: final, toPath: tmp + "/\(stored.sha256).deadbeef.dcm")
        let reopened = try Archive(home: home, logger: logger)
        defer { reopened.close() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
        #expect(FileManager.default.fileExists(atPath: final))
    }

    @Test func commitsAreDurableWhenAnswered() throws {
        // WAL with synchronous=FULL: a committed transaction is on disk (GRDB's pool sets NORMAL).
        let archive = try Archive(home: temporaryHome(), logger: logger)
        defer { archive.close() }
        let level = try archive.database.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(level == 2)
        let mode = try archive.database.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    @Test func knownApplicationEntities() throws {
        let archive = try Archive(home: temporaryHome(), logger: logger)
        defer { archive.close() }
        try archive.addApplicationEntity(ApplicationEntity(aeTitle: "CT1", host: "127.0.0.1", port: 104))
        try archive.addApplicationEntity(ApplicationEntity(aeTitle: "CT1", host: "10.0.0.9", port: 11112))
        #expect(try archive.applicationEntities() == [ApplicationEntity(aeTitle: "CT1", host: "10.0.0.9", port: 11112)])
        #expect(try archive.removeApplicationEntity("CT1"))
        #expect(try !archive.removeApplicationEntity("CT1"))
        #expect(try archive.applicationEntity("CT1") == nil)
    }
}
