import CDcmtk
import DICOM
import Foundation

/// What the SCP knows of an association.
public struct AssociationInfo: Sendable, CustomStringConvertible {
    public var id: UInt32
    public var callingAETitle: String
    public var calledAETitle: String
    public var peerHost: String
    public var peerMaxPDU: UInt32
    /// The AE titles as the peer sent them, escaped for a log line (see LogEscape).
    public let loggableCallingAETitle: String
    public let loggableCalledAETitle: String

    init(_ c: cdcm_association_info) {
        id = c.id
        callingAETitle = fixedString(c.calling_ae).trimmingCharacters(in: .whitespaces)
        calledAETitle = fixedString(c.called_ae).trimmingCharacters(in: .whitespaces)
        peerHost = fixedString(c.peer_host)
        peerMaxPDU = c.max_pdu
        loggableCallingAETitle = LogEscape.escape(bytes: AssociationInfo.trimmed(fixedBytes(c.calling_ae)), limit: 16)
        loggableCalledAETitle = LogEscape.escape(bytes: AssociationInfo.trimmed(fixedBytes(c.called_ae)), limit: 16)
    }

    private static func trimmed(_ b: [UInt8]) -> ArraySlice<UInt8> {
        var s = b[...]
        while s.first == 0x20 { s = s.dropFirst() }
        while s.last == 0x20 { s = s.dropLast() }
        return s
    }

    /// For log lines: every value the peer sent is escaped (non-printable bytes as \xNN) and bounded.
    public var description: String {
        "#\(id) \(loggableCallingAETitle)@\(LogEscape.escape(peerHost, limit: 64)) -> \(loggableCalledAETitle)"
    }
}

/// The answer to an association request (PS3.8 9.3.4).
public enum AssociationDecision: Sendable {
    case accept
    case rejectCallingAENotRecognized
    case rejectCalledAENotRecognized
    case rejectNoReason
    case rejectLocalLimitExceeded

    var c: cdcm_association_decision {
        switch self {
        case .accept: CDCM_ACCEPT
        case .rejectCallingAENotRecognized: CDCM_REJECT_CALLING_AE_NOT_RECOGNIZED
        case .rejectCalledAENotRecognized: CDCM_REJECT_CALLED_AE_NOT_RECOGNIZED
        case .rejectNoReason: CDCM_REJECT_NO_REASON
        case .rejectLocalLimitExceeded: CDCM_REJECT_LOCAL_LIMIT_EXCEEDED
        }
    }
}

/// A C-STORE request before its dataset.
public struct StoreRequest: Sendable {
    public var sopClassUID: String
    public var sopInstanceUID: String
    public var transferSyntaxUID: String
    public var messageID: UInt16
    public var moveOriginatorAETitle: String
}

/// A DIMSE status and its Error Comment (0000,0902), sent back to the peer: never patient data.
public struct StatusReply: Error, Sendable {
    public var status: DIMSEStatus
    public var errorComment: String?

    public init(_ status: DIMSEStatus, _ errorComment: String? = nil) {
        self.status = status
        self.errorComment = errorComment
    }

    public static let success = StatusReply(.success)
}

/// Where a C-STORE's dataset goes, byte for byte as received.
public protocol StoreSink: AnyObject {
    /// Returns false after a write error; the rest of the dataset is then discarded.
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool
    /// The dataset is complete (`received`) or its reception failed (the association is aborting).
    func finish(received: Bool) -> StatusReply
}

/// The services behind the SCP. Called on association threads (never the Swift concurrency pool);
/// calls may block, and several run at once.
public protocol SCPDelegate: AnyObject, Sendable {
    func associationRequested(_ info: AssociationInfo) -> AssociationDecision
    func associationEnded(_ info: AssociationInfo, aborted: Bool, reason: String)
    func echo(_ info: AssociationInfo) -> DIMSEStatus
    /// Returns a sink for the dataset, or a refusal status to answer after discarding it.
    func storeBegin(_ info: AssociationInfo, _ request: StoreRequest) -> Result<StoreSink, StatusReply>
}

public struct SCPConfiguration: Sendable {
    public var aeTitle: String
    public var port: UInt16
    public var maxPDU: UInt32 = 116_794
    public var maxAssociations: UInt32 = 16
    /// Time a new connection has to send its A-ASSOCIATE-RQ; it is closed after that.
    public var acseTimeoutSeconds: Int32 = 10
    public var dimseTimeoutSeconds: Int32 = 120
    /// Connections still in association set-up at once; more are closed as soon as accepted.
    public var maxNegotiating: UInt32 = 64

    public init(aeTitle: String, port: UInt16) {
        self.aeTitle = aeTitle
        self.port = port
    }
}

/// The DICOM SCP: one listening port, one thread per association, DIMSE dispatched to a delegate.
///
/// The delegate goes into the C context slot retained (Unmanaged.passRetained); every callback is
/// a capture-free closure that recovers it; it is released exactly once, in `deinit`, after the
/// accept loop and every association have ended.
public final class SCP: @unchecked Sendable {
    private let handle: OpaquePointer
    private let context: Unmanaged<DelegateBox>
    private let configuration: SCPConfiguration
    private var thread: Thread?
    private let stopped = DispatchSemaphore(value: 0)
    private let runError = LockedBox<DcmtkError?>(nil)

    final class DelegateBox {
        let delegate: SCPDelegate
        let queryRetrieve: QueryRetrieveDelegate?
        init(_ d: SCPDelegate, _ qr: QueryRetrieveDelegate?) {
            delegate = d
            queryRetrieve = qr
        }
    }

    /// Opens the listening socket (all interfaces, `configuration.port`). With `queryRetrieve`,
    /// the SCP also offers C-FIND, C-MOVE and C-GET in the Patient and Study Root models.
    public init(configuration: SCPConfiguration, delegate: SCPDelegate, queryRetrieve: QueryRetrieveDelegate? = nil) throws {
        self.configuration = configuration
        context = Unmanaged.passRetained(DelegateBox(delegate, queryRetrieve))
        var callbacks = cdcm_scp_callbacks()
        if queryRetrieve != nil { SCP.installQueryRetrieve(&callbacks) }
        callbacks.association_requested = { ctx, info in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            return box.delegate.associationRequested(AssociationInfo(info!.pointee)).c
        }
        callbacks.association_ended = { ctx, info, aborted, reason in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            // The reason may quote what the peer sent (DCMTK's condition texts): escaped, bounded.
            let text = reason.map { LogEscape.escape(bytes: Array(UnsafeBufferPointer(start: UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self), count: strlen($0))), limit: 512) } ?? ""
            box.delegate.associationEnded(AssociationInfo(info!.pointee), aborted: aborted != 0, reason: text)
        }
        callbacks.echo = { ctx, info in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            return box.delegate.echo(AssociationInfo(info!.pointee)).code
        }
        callbacks.store_begin = { ctx, info, req, status in
            let box = Unmanaged<DelegateBox>.fromOpaque(ctx!).takeUnretainedValue()
            let r = req!.pointee
            let request = StoreRequest(
                sopClassUID: String(cString: r.sop_class_uid), sopInstanceUID: String(cString: r.sop_instance_uid),
                transferSyntaxUID: String(cString: r.transfer_syntax_uid), messageID: r.message_id,
                moveOriginatorAETitle: String(cString: r.move_originator_ae))
            switch box.delegate.storeBegin(AssociationInfo(info!.pointee), request) {
            case .success(let sink):
                return Unmanaged.passRetained(SinkBox(sink)).toOpaque()
            case .failure(let reply):
                SCP.fill(status!, reply)
                return nil
            }
        }
        callbacks.store_data = { _, sink, bytes, length in
            let box = Unmanaged<SinkBox>.fromOpaque(sink!).takeUnretainedValue()
            return box.sink.write(UnsafeRawBufferPointer(start: bytes, count: length)) ? 0 : 1
        }
        callbacks.store_end = { _, sink, received, status in
            // The sink was retained in store_begin; this is its one release.
            let box = Unmanaged<SinkBox>.fromOpaque(sink!).takeRetainedValue()
            SCP.fill(status!, box.sink.finish(received: received != 0))
        }
        var config = cdcm_scp_config()
        config.port = configuration.port
        config.max_pdu = configuration.maxPDU
        config.max_associations = configuration.maxAssociations
        config.acse_timeout_seconds = configuration.acseTimeoutSeconds
        config.dimse_timeout_seconds = configuration.dimseTimeoutSeconds
        config.max_retrieve_pdu = configuration.maxPDU
        config.max_negotiating = configuration.maxNegotiating
        config.callbacks = callbacks
        config.context = context.toOpaque()
        var err = cdcm_error()
        let created: OpaquePointer? = configuration.aeTitle.withCString { ae in
            config.ae_title = ae
            return cdcm_scp_create(&config, &err)
        }
        guard let created else {
            context.release()
            throw DcmtkError(err)
        }
        handle = created
    }

    private final class SinkBox {
        let sink: StoreSink
        init(_ s: StoreSink) { sink = s }
    }

    static func fill(_ status: UnsafeMutablePointer<cdcm_status>, _ reply: StatusReply) {
        status.pointee.status = reply.status.code
        setFixedString(&status.pointee.error_comment, String((reply.errorComment ?? "").prefix(64)))
    }

    /// Starts serving on a dedicated thread (DCMTK's accept loop blocks).
    public func start() {
        let t = Thread { [self] in
            var err = cdcm_error()
            if cdcm_scp_run(self.handle, &err) != 0 { self.runError.set(DcmtkError(err)) }
            self.stopped.signal()
        }
        t.name = "dicom-scp-accept"
        thread = t
        t.start()
    }

    /// Stops accepting, lets the associations in progress end, and waits for them.
    public func stop() {
        cdcm_scp_stop(handle)
        if thread != nil {
            stopped.wait()
            thread = nil
        }
    }

    public var activeAssociations: UInt32 { cdcm_scp_active_associations(handle) }
    public var negotiatingConnections: UInt32 { cdcm_scp_negotiating_connections(handle) }

    deinit {
        stop()
        cdcm_scp_free(handle)
        context.release()
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}
