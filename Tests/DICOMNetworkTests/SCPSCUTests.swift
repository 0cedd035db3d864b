import DICOM
import Foundation
import Testing
@testable import DICOMNetwork

let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let ctImageStorage = "1.2.840.10008.5.1.4.1.1.2"

/// A port free on 127.0.0.1 at the moment of asking (the kernel's next ephemeral port).
func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard bound else { throw DcmtkError(message: "no free port") }
    return UInt16(bigEndian: addr.sin_port)
}

/// The dataset of a Part 10 file: what follows the File Meta group (PS3.10 7.1).
func datasetBytes(ofPart10 data: Data) -> Data {
    let bytes = [UInt8](data)
    // Preamble (128), "DICM" (4), then (0002,0000) UL: tag 4, VR 2, length 2, value 4.
    let groupLength = Int(bytes[140]) | Int(bytes[141]) << 8 | Int(bytes[142]) << 16 | Int(bytes[143]) << 24
    return data.subdata(in: (144 + groupLength)..<data.count)
}

final class Recorder<T>: @unchecked Sendable {
    private var items: [T] = []
    private let lock = NSLock()
    func append(_ t: T) { lock.lock(); items.append(t); lock.unlock() }
    var all: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

/// A sink that keeps every byte it is given.
final class MemorySink: StoreSink {
    let request: StoreRequest
    let done: (StoreRequest, Data, Bool) -> Void
    var bytes = Data()
    init(_ request: StoreRequest, done: @escaping (StoreRequest, Data, Bool) -> Void) {
        self.request = request
        self.done = done
    }
    func write(_ chunk: UnsafeRawBufferPointer) -> Bool { bytes.append(contentsOf: chunk); return true }
    func finish(received: Bool) -> StatusReply { done(request, bytes, received); return .success }
}

/// The services behind a test SCP: admits AE titles from a list, keeps what it was sent.
final class TestService: SCPDelegate, @unchecked Sendable {
    let admitted: Set<String>
    let associations = Recorder<AssociationInfo>()
    let echoes = Recorder<AssociationInfo>()
    let stored = Recorder<(StoreRequest, Data, Bool)>()
    var refuseStores: StatusReply?

    init(admitted: Set<String>) { self.admitted = admitted }

    func associationRequested(_ info: AssociationInfo) -> AssociationDecision {
        associations.append(info)
        return admitted.contains(info.callingAETitle) ? .accept : .rejectCallingAENotRecognized
    }
    func associationEnded(_ info: AssociationInfo, aborted: Bool, reason: String) {}
    func echo(_ info: AssociationInfo) -> DIMSEStatus { echoes.append(info); return .success }
    func storeBegin(_ info: AssociationInfo, _ request: StoreRequest) -> Result<StoreSink, StatusReply> {
        if let refuseStores { return .failure(refuseStores) }
        return .success(MemorySink(request) { [stored] in stored.append(($0, $1, $2)) })
    }
}

/// One C-FIND answered from a fixed list of patient names.
final class ListQuery: FindQuery {
    var names: [String]
    let ended: (Bool) -> Void
    init(_ names: [String], ended: @escaping (Bool) -> Void) { self.names = names; self.ended = ended }
    func next(into response: Dataset) -> FindStep {
        guard !names.isEmpty else { return .done(.success) }
        try? response.set(.queryRetrieveLevel, "PATIENT")
        try? response.set(.patientName, names.removeFirst())
        return .match(DIMSEStatus(0xFF00))
    }
    func end(cancelled: Bool) { ended(cancelled) }
}

final class FileRetrieval: Retrieval {
    let destination: RetrieveDestination?
    let files: [RetrieveFile]
    let results: Recorder<(Int, DIMSEStatus, String?)>
    let ends: Recorder<RetrieveCounts>
    init(destination: RetrieveDestination?, files: [RetrieveFile], results: Recorder<(Int, DIMSEStatus, String?)>, ends: Recorder<RetrieveCounts>) {
        self.destination = destination
        self.files = files
        self.results = results
        self.ends = ends
    }
    func subOperationEnded(index: Int, status: DIMSEStatus, error: String?) { results.append((index, status, error)) }
    func end(counts: RetrieveCounts, cancelled: Bool) { ends.append(counts) }
}

/// Query/Retrieve: keeps the identifiers it was sent (as PatientID / StudyInstanceUID / level).
final class TestQR: QueryRetrieveDelegate, @unchecked Sendable {
    let finds = Recorder<(sopClass: String, level: String?, patientID: String?, calling: String)>()
    let findEnds = Recorder<Bool>()
    let retrieves = Recorder<(sopClass: String, study: String?, destination: String?)>()
    let results = Recorder<(Int, DIMSEStatus, String?)>()
    let ends = Recorder<RetrieveCounts>()
    var names = ["Alpha^One", "Beta^Two"]
    var moveTarget: RetrieveDestination?
    var files: [RetrieveFile] = []

    func findBegin(_ info: AssociationInfo, sopClassUID: String, identifier: Dataset) -> Result<FindQuery, StatusReply> {
        finds.append((sopClassUID, identifier.string(.queryRetrieveLevel), identifier.string(.patientID), info.callingAETitle))
        if identifier.string(.patientID) == "REFUSE" { return .failure(StatusReply(.identifierDoesNotMatchSOPClass, "test refusal")) }
        return .success(ListQuery(names) { [findEnds] in findEnds.append($0) })
    }

    func retrieveBegin(_ info: AssociationInfo, sopClassUID: String, identifier: Dataset,
                       moveDestination: String?) -> Result<Retrieval, StatusReply> {
        retrieves.append((sopClassUID, identifier.string(.studyInstanceUID), moveDestination))
        guard let moveTarget, moveDestination == moveTarget.aeTitle else { return .failure(StatusReply(.moveDestinationUnknown)) }
        return .success(FileRetrieval(destination: moveTarget, files: files, results: results, ends: ends))
    }
}

/// The SCP and the SCU of DICOMNetwork against each other, in process, on 127.0.0.1.
@Suite(.serialized) struct SCPSCUTests {
    static let ctFile = repo.appendingPathComponent("testdata/ct_explicit_le.dcm")

    func start(_ service: TestService, qr: QueryRetrieveDelegate? = nil, ae: String = "TEST_SCP") throws -> (SCP, UInt16) {
        DcmtkDictionary.initialize()
        let port = try freePort()
        var config = SCPConfiguration(aeTitle: ae, port: port)
        config.acseTimeoutSeconds = 10
        config.dimseTimeoutSeconds = 30
        let scp = try SCP(configuration: config, delegate: service, queryRetrieve: qr)
        scp.start()
        return (scp, port)
    }

    func address(_ port: UInt16, calling: String = "TEST_SCU", called: String = "TEST_SCP") -> PeerAddress {
        var a = PeerAddress(host: "127.0.0.1", port: port, calledAETitle: called, callingAETitle: calling)
        a.acseTimeoutSeconds = 10
        a.dimseTimeoutSeconds = 30
        return a
    }

    @Test func echoIsAnsweredAndTheSCPSeesWhoCalled() throws {
        let service = TestService(admitted: ["TEST_SCU"])
        let (scp, port) = try start(service)
        defer { scp.stop() }
        let assoc = try Association(peer: address(port), contexts: [
            ProposedContext(abstractSyntax: UID.verification, transferSyntaxes: [TransferSyntax.implicitVRLittleEndian])])
        #expect(try assoc.echo() == .success)
        assoc.release()
        let echoes = service.echoes.all
        #expect(echoes.count == 1)
        #expect(echoes.first?.callingAETitle == "TEST_SCU")
        #expect(echoes.first?.calledAETitle == "TEST_SCP")
        #expect(echoes.first?.peerHost.contains("127.0.0.1") == true)
    }

    @Test func anUnknownCallingAETitleIsRejected() throws {
        let service = TestService(admitted: ["TEST_SCU"])
        let (scp, port) = try start(service)
        defer { scp.stop() }
        let error = try #require(throws: DcmtkError.self) {
            _ = try Association(peer: address(port, calling: "INTRUDER"), contexts: [
                ProposedContext(abstractSyntax: UID.verification, transferSyntaxes: [TransferSyntax.implicitVRLittleEndian])])
        }
        #expect(error.isAssociationRejected, "\(error)")
        #expect(service.associations.all.map(\.callingAETitle) == ["INTRUDER"])
        #expect(service.echoes.all.isEmpty)
    }

    @Test func aStoredFileReachesTheSinkByteForByte() throws {
        let service = TestService(admitted: ["TEST_SCU"])
        let (scp, port) = try start(service)
        defer { scp.stop() }
        let meta = try FileMetaSummary.read(path: Self.ctFile.path)
        let assoc = try Association(peer: address(port), contexts: [
            ProposedContext(abstractSyntax: meta.sopClassUID, transferSyntaxes: [TransferSyntax.explicitVRLittleEndian])])
        let reply = try assoc.store(path: Self.ctFile.path)
        assoc.release()
        #expect(reply.status == .success)
        let stored = service.stored.all
        try #require(stored.count == 1)
        let (request, bytes, received) = stored[0]
        #expect(received)
        #expect(request.sopInstanceUID == meta.sopInstanceUID)
        #expect(request.sopClassUID == meta.sopClassUID)
        #expect(request.transferSyntaxUID == TransferSyntax.explicitVRLittleEndian)
        let expected = datasetBytes(ofPart10: try Data(contentsOf: Self.ctFile))
        #expect(bytes.count == expected.count)
        #expect(bytes == expected, "the dataset changed on the way")
    }

    @Test func aRefusedStoreAnswersTheDelegatesStatusAndComment() throws {
        let service = TestService(admitted: ["TEST_SCU"])
        service.refuseStores = StatusReply(.outOfResources, "disk full (test)")
        let (scp, port) = try start(service)
        defer { scp.stop() }
        let meta = try FileMetaSummary.read(path: Self.ctFile.path)
        let assoc = try Association(peer: address(port), contexts: [
            ProposedContext(abstractSyntax: meta.sopClassUID, transferSyntaxes: [TransferSyntax.explicitVRLittleEndian])])
        let reply = try assoc.store(path: Self.ctFile.path)
        assoc.release()
        #expect(reply.status == .outOfResources)
        #expect(reply.errorComment == "disk full (test)")
        #expect(service.stored.all.isEmpty)
    }

    @Test func findHandsTheIdentifierToTheDelegateAndReturnsItsMatches() throws {
        let service = TestService(admitted: ["TEST_SCU"])
        let qr = TestQR()
        let (scp, port) = try start(service, qr: qr)
        defer { scp.stop() }
        let assoc = try Association(peer: address(port), contexts: [
            ProposedContext(abstractSyntax: QueryRetrieveSOPClass.patientRootFind, transferSyntaxes: [TransferSyntax.explicitVRLittleEndian])])
        let identifier = Dataset()
        try identifier.set(.queryRetrieveLevel, "PATIENT")
        try identifier.set(.patientID, "PID-0042")
        try identifier.setEmpty(.patientName)
        var names: [String] = []
        let reply = try assoc.find(sopClassUID: QueryRetrieveSOPClass.patientRootFind, identifier: identifier) { match in
            names.append(match.string(.patientName) ?? "<none>")
            return false
        }
        #expect(reply.status == .success)
        #expect(names == ["Alpha^One", "Beta^Two"])
        let refused = Dataset()
        try refused.set(.queryRetrieveLevel, "PATIENT")
        try refused.set(.patientID, "REFUSE")
        let refusal = try assoc.find(sopClassUID: QueryRetrieveSOPClass.patientRootFind, identifier: refused) { _ in false }
        #expect(refusal.status == .identifierDoesNotMatchSOPClass)
        #expect(refusal.errorComment == "test refusal")
        assoc.release()
        let finds = qr.finds.all
        try #require(finds.count == 2)
        #expect(finds[0].sopClass == QueryRetrieveSOPClass.patientRootFind)
        #expect(finds[0].level == "PATIENT")
        #expect(finds[0].patientID == "PID-0042")
        #expect(finds[0].calling == "TEST_SCU")
        #expect(qr.findEnds.all == [false])
    }

    @Test func moveSendsTheDelegatesFilesToTheDestination() throws {
        // The destination: a second SCP that keeps what it receives.
        let destination = TestService(admitted: ["TEST_SCP"])
        let (destSCP, destPort) = try start(destination, ae: "TEST_DEST")
        defer { destSCP.stop() }
        let service = TestService(admitted: ["TEST_SCU"])
        let qr = TestQR()
        let meta = try FileMetaSummary.read(path: Self.ctFile.path)
        qr.moveTarget = RetrieveDestination(aeTitle: "TEST_DEST", host: "127.0.0.1", port: destPort)
        qr.files = [RetrieveFile(path: Self.ctFile.path, sopClassUID: meta.sopClassUID, sopInstanceUID: meta.sopInstanceUID,
                                 transferSyntaxUID: meta.transferSyntaxUID)]
        let (scp, port) = try start(service, qr: qr)
        defer { scp.stop() }
        let assoc = try Association(peer: address(port), contexts: [
            ProposedContext(abstractSyntax: QueryRetrieveSOPClass.studyRootMove, transferSyntaxes: [TransferSyntax.explicitVRLittleEndian])])
        let identifier = Dataset()
        try identifier.set(.queryRetrieveLevel, "STUDY")
        try identifier.set(.studyInstanceUID, "1.2.826.0.1.3680043.10.99.1")
        let (reply, counts) = try assoc.move(sopClassUID: QueryRetrieveSOPClass.studyRootMove, identifier: identifier,
                                             destination: "TEST_DEST") { _ in }
        // An unknown destination is the delegate's refusal, passed through.
        let (unknown, _) = try assoc.move(sopClassUID: QueryRetrieveSOPClass.studyRootMove, identifier: identifier,
                                          destination: "NOWHERE") { _ in }
        assoc.release()
        #expect(reply.status == .success)
        #expect(counts.completed == 1 && counts.failed == 0)
        #expect(unknown.status == .moveDestinationUnknown)
        let retrieves = qr.retrieves.all
        #expect(retrieves.map(\.study) == ["1.2.826.0.1.3680043.10.99.1", "1.2.826.0.1.3680043.10.99.1"])
        #expect(retrieves.map(\.destination) == ["TEST_DEST", "NOWHERE"])
        #expect(qr.results.all.map(\.1) == [.success])
        let received = destination.stored.all
        try #require(received.count == 1)
        #expect(received[0].0.sopInstanceUID == meta.sopInstanceUID)
        #expect(received[0].0.moveOriginatorAETitle == "TEST_SCU")
        #expect(received[0].1 == datasetBytes(ofPart10: try Data(contentsOf: Self.ctFile)))
    }
}

/// Reading files and datasets: malformed input is an error, never a half-read dataset.
@Suite struct DatasetTests {
    func write(_ bytes: Data) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ds-\(UUID().uuidString).dcm").path
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func aTestdataFileReadsWithItsAttributes() throws {
        let ds = try Dataset.load(path: SCPSCUTests.ctFile.path)
        let meta = try FileMetaSummary.read(path: SCPSCUTests.ctFile.path)
        #expect(ds.string(.sopInstanceUID) == meta.sopInstanceUID)
        #expect(ds.string(.studyInstanceUID) == "2.25.118777287858591845116696725631294807959")
        #expect(ds.string(.modality) == "CT")
        #expect(ds.string(Tag(0x0011, 0x0010)) == nil)
        #expect(meta.transferSyntaxUID == TransferSyntax.explicitVRLittleEndian)
        #expect(ds.elements.contains { $0.tag == .studyInstanceUID && $0.vr == "UI" })
    }

    @Test func notDICOMIsAnError() throws {
        let path = try write(Data("this is not a DICOM file, only some text long enough to be read\n".utf8))
        defer { unlink(path) }
        #expect(throws: DcmtkError.self) { try Dataset.load(path: path) }
        #expect(throws: DcmtkError.self) { try FileMetaSummary.read(path: path) }
    }

    @Test func aMissingFileIsAnError() {
        #expect(throws: DcmtkError.self) { try Dataset.load(path: "/nonexistent/file.dcm") }
    }

    @Test func aFileCutInsideAnElementIsAnError() throws {
        let whole = try Data(contentsOf: SCPSCUTests.ctFile)
        let dataset = datasetBytes(ofPart10: whole)
        // Cut in the middle of the dataset: an element's value runs past the end of the file.
        let cut = whole.prefix(whole.count - dataset.count + 300)
        let path = try write(Data(cut))
        defer { unlink(path) }
        #expect(throws: DcmtkError.self) { try Dataset.load(path: path, untilPixelData: false) }
    }

    @Test func aValueLongerThanTheFirstBufferIsReadWhole() throws {
        let ds = Dataset()
        let long = String(repeating: "ABCDEFGH", count: 400)  // 3200 characters > the 1 KiB first try
        let imageComments = Tag(0x0020, 0x4000)  // LT: up to 10240 characters
        try ds.set(imageComments, long)
        #expect(ds.string(imageComments) == long)
        #expect(ds.rawString(imageComments).map { String(decoding: $0, as: UTF8.self) } == long)
    }
}
