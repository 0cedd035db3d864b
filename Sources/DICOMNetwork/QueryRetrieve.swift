import CDcmtk
import DICOM
import Foundation

/// One C-FIND in progress.
public enum FindStep {
    /// `response` holds a match; answer Pending with this status (FF00, or FF01).
    case match(DIMSEStatus)
    /// No more matches: the final status.
    case done(StatusReply)
}

public protocol FindQuery: AnyObject {
    /// Fills `response` with the next match, or says the query is done.
    func next(into response: Dataset) -> FindStep
    /// The query ended, normally or by C-CANCEL.
    func end(cancelled: Bool)
}

/// Where a C-MOVE sends its sub-operations.
public struct RetrieveDestination: Sendable {
    public var aeTitle: String
    public var host: String
    public var port: UInt16

    public init(aeTitle: String, host: String, port: UInt16) {
        self.aeTitle = aeTitle
        self.host = host
        self.port = port
    }
}

/// One stored instance to send.
public struct RetrieveFile: Sendable {
    public var path: String
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var transferSyntaxUID: String

    public init(path: String, sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String) {
        self.path = path
        self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID
        self.transferSyntaxUID = transferSyntaxUID
    }
}

public struct RetrieveCounts: Sendable {
    public var remaining: Int
    public var completed: Int
    public var failed: Int
    public var warning: Int

    public init(remaining: Int, completed: Int, failed: Int, warning: Int) {
        self.remaining = remaining
        self.completed = completed
        self.failed = failed
        self.warning = warning
    }

    init(_ c: cdcm_retrieve_counts) {
        self.init(remaining: Int(c.remaining), completed: Int(c.completed), failed: Int(c.failed), warning: Int(c.warning))
    }
}

/// One C-MOVE or C-GET in progress.
public protocol Retrieval: AnyObject {
    var destination: RetrieveDestination? { get }
    var files: [RetrieveFile] { get }
    /// A sub-operation ended with this C-STORE status, or could not be sent (`error`).
    func subOperationEnded(index: Int, status: DIMSEStatus, error: String?)
    func end(counts: RetrieveCounts, cancelled: Bool)
}

/// The Query/Retrieve services behind the SCP (PS3.4 annex C). Called on association threads.
public protocol QueryRetrieveDelegate: AnyObject, Sendable {
    func findBegin(_ info: AssociationInfo, sopClassUID: String, identifier: Dataset) -> Result<FindQuery, StatusReply>
    /// `moveDestination` is the C-MOVE destination AE title, nil for a C-GET.
    func retrieveBegin(_ info: AssociationInfo, sopClassUID: String, identifier: Dataset,
                       moveDestination: String?) -> Result<Retrieval, StatusReply>
}

/// The Query/Retrieve Information Model SOP classes (PS3.4 C.6).
public enum QueryRetrieveSOPClass {
    public static let patientRootFind = "1.2.840.10008.5.1.4.1.2.1.1"
    public static let patientRootMove = "1.2.840.10008.5.1.4.1.2.1.2"
    public static let patientRootGet = "1.2.840.10008.5.1.4.1.2.1.3"
    public static let studyRootFind = "1.2.840.10008.5.1.4.1.2.2.1"
    public static let studyRootMove = "1.2.840.10008.5.1.4.1.2.2.2"
    public static let studyRootGet = "1.2.840.10008.5.1.4.1.2.2.3"

    public static func isPatientRoot(_ uid: String) -> Bool {
        uid == patientRootFind || uid == patientRootMove || uid == patientRootGet
    }
}

extension SCP {
    final class FindBox {
        let query: FindQuery
        init(_ q: FindQuery) { query = q }
    }

    final class RetrievalBox {
        let retrieval: Retrieval
        let files: [RetrieveFile]
        init(_ r: Retrieval) {
            retrieval = r
            files = r.files
        }
    }

    static func installQueryRetrieve(_ callbacks: inout cdcm_scp_callbacks) {
        callbacks.find_begin = { ctx, info, sopClass, identifier, status in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            guard let qr = box.queryRetrieve else { return nil }
            let result = qr.findBegin(AssociationInfo(info!.pointee), sopClassUID: String(cString: sopClass!),
                                      identifier: Dataset(borrowing: identifier!))
            switch result {
            case .success(let q): return Unmanaged.passRetained(FindBox(q)).toOpaque()
            case .failure(let reply):
                SCP.fill(status!, reply)
                return nil
            }
        }
        callbacks.find_next = { _, query, response, status in
            let box = Unmanaged<FindBox>.fromOpaque(query!).takeUnretainedValue()
            switch box.query.next(into: Dataset(borrowing: response!)) {
            case .match(let pending):
                status!.pointee.status = pending.code
                return 1
            case .done(let final):
                SCP.fill(status!, final)
                return 0
            }
        }
        callbacks.find_end = { _, query, cancelled in
            // Retained in find_begin; this is its one release.
            let box = Unmanaged<FindBox>.fromOpaque(query!).takeRetainedValue()
            box.query.end(cancelled: cancelled != 0)
        }
        callbacks.retrieve_begin = { ctx, info, sopClass, identifier, moveDestination, destination, count, status in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            guard let qr = box.queryRetrieve else { return nil }
            let result = qr.retrieveBegin(AssociationInfo(info!.pointee), sopClassUID: String(cString: sopClass!),
                                          identifier: Dataset(borrowing: identifier!),
                                          moveDestination: moveDestination.map { String(cString: $0).trimmingCharacters(in: .whitespaces) })
            switch result {
            case .success(let r):
                let rbox = RetrievalBox(r)
                count!.pointee = rbox.files.count
                if let d = r.destination {
                    setFixedString(&destination!.pointee.ae_title, d.aeTitle)
                    setFixedString(&destination!.pointee.host, d.host)
                    destination!.pointee.port = d.port
                }
                return Unmanaged.passRetained(rbox).toOpaque()
            case .failure(let reply):
                SCP.fill(status!, reply)
                return nil
            }
        }
        callbacks.retrieve_item = { _, retrieval, index, item in
            let box = Unmanaged<RetrievalBox>.fromOpaque(retrieval!).takeUnretainedValue()
            guard index < box.files.count else { return 1 }
            let f = box.files[index]
            setFixedString(&item!.pointee.path, f.path)
            setFixedString(&item!.pointee.sop_class_uid, f.sopClassUID)
            setFixedString(&item!.pointee.sop_instance_uid, f.sopInstanceUID)
            setFixedString(&item!.pointee.transfer_syntax_uid, f.transferSyntaxUID)
            return 0
        }
        callbacks.retrieve_result = { _, retrieval, index, status, error in
            let box = Unmanaged<RetrievalBox>.fromOpaque(retrieval!).takeUnretainedValue()
            box.retrieval.subOperationEnded(index: index, status: DIMSEStatus(status), error: error.map { String(cString: $0) })
        }
        callbacks.retrieve_end = { _, retrieval, counts, cancelled in
            let box = Unmanaged<RetrievalBox>.fromOpaque(retrieval!).takeRetainedValue()
            box.retrieval.end(counts: RetrieveCounts(counts!.pointee), cancelled: cancelled != 0)
        }
    }
}
