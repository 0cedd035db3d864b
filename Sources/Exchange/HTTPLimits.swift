import Archive
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOSSL
import NIOTLS

/// What one HTTP server of the bridge (the ledger port, the peer port) allows a client, so that
/// idle, slow or greedy HTTP clients can never take the file descriptors, memory or threads that
/// DICOM and the store need.
///
/// - A connection with no request in progress (or a request whose next part does not come) is
///   closed after `idleTimeoutSeconds`.
/// - At most `maxConnections` connections are open at once, at most `maxConnectionsPerClient`
///   from one remote address; a connection beyond either cap is closed as soon as it is accepted
///   (its descriptor is released at once), and the refusals are logged (at most every 10 s).
/// - A request head larger than `maxHeaderBytes` is answered 431 and the connection closed; a
///   request announcing a body larger than `maxBodyBytes` is answered 413 before any of the body
///   is read, and a (chunked) body that grows beyond it closes the connection: nothing buffers it.
/// - On the TLS port, a connection that has not completed its handshake within
///   `tlsHandshakeTimeoutSeconds` is closed.
public struct HTTPServerLimits: Sendable, Equatable {
    public var idleTimeoutSeconds: Int = 60
    public var maxConnections: Int = 512
    public var maxConnectionsPerClient: Int = 32
    public var maxHeaderBytes: Int = 16 * 1024
    public var maxBodyBytes: Int = 1 << 20
    public var tlsHandshakeTimeoutSeconds: Int = 10

    public init() {}

    public init(idleTimeoutSeconds: Int, maxConnections: Int, maxConnectionsPerClient: Int, maxHeaderBytes: Int,
                maxBodyBytes: Int, tlsHandshakeTimeoutSeconds: Int) {
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.maxConnections = maxConnections
        self.maxConnectionsPerClient = maxConnectionsPerClient
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.tlsHandshakeTimeoutSeconds = tlsHandshakeTimeoutSeconds
    }

    /// The HTTP/1.1 channel: idle timeout, header limits, the request guard (body limit, 431/413).
    func http1Configuration() -> HTTP1Channel.Configuration {
        let maxBody = maxBodyBytes
        return HTTP1Channel.Configuration(
            additionalChannelHandlers: [HTTPRequestGuard(maxBodyBytes: maxBody)],
            idleTimeout: .seconds(Int64(idleTimeoutSeconds)),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: maxHeaderBytes, maxHeaderListSize: maxHeaderBytes,
                                            maxHeaderFieldCount: 200))
    }

    /// A plain HTTP/1.1 server with these limits (the ledger's read-only port).
    public func plainServer(name: String, logger: Logger) -> HTTPServerBuilder {
        let limiter = ConnectionLimiter(server: name, maxTotal: maxConnections, maxPerClient: maxConnectionsPerClient, logger: logger)
        let http1 = http1Configuration()
        return HTTPServerBuilder { responder in
            LimitedChildChannel(base: HTTP1Channel(responder: responder, configuration: http1), limiter: limiter, afterSetup: { _ in })
        }
    }

    /// An HTTP/1.1 server over TLS with these limits and a handshake timeout (the peer API).
    public func tlsServer(tlsConfiguration: TLSConfiguration, name: String, logger: Logger) -> HTTPServerBuilder {
        let limiter = ConnectionLimiter(server: name, maxTotal: maxConnections, maxPerClient: maxConnectionsPerClient, logger: logger)
        let http1 = http1Configuration()
        let handshakeTimeout = TimeAmount.seconds(Int64(tlsHandshakeTimeoutSeconds))
        return HTTPServerBuilder { responder in
            let tls = try TLSChannel(HTTP1Channel(responder: responder, configuration: http1), tlsConfiguration: tlsConfiguration)
            return LimitedChildChannel(base: tls, limiter: limiter, afterSetup: { channel in
                // Right after the TLS handler: it sees the handshake-completed event that handler fires.
                let sync = channel.pipeline.syncOperations
                let ssl = try sync.handler(type: NIOSSLServerHandler.self)
                try sync.addHandler(TLSHandshakeTimeoutHandler(timeout: handshakeTimeout), position: .after(ssl))
            })
        }
    }
}

/// Counts the open connections of one server, in total and per remote address.
final class ConnectionLimiter: Sendable {
    private struct State {
        var total = 0
        var perClient: [String: Int] = [:]
        /// Per reason (the server's cap, a client's cap): refusals since its last log line, and when that was.
        var refusedSinceReport: [Bool: Int] = [:]
        var lastReport: [Bool: ContinuousClock.Instant] = [:]
    }

    let server: String
    let maxTotal: Int
    let maxPerClient: Int
    let logger: Logger
    private let state = LockedValue(State())

    init(server: String, maxTotal: Int, maxPerClient: Int, logger: Logger) {
        self.server = server
        self.maxTotal = max(1, maxTotal)
        self.maxPerClient = max(1, min(maxPerClient, maxTotal))
        self.logger = logger
    }

    var openConnections: Int { state.withLock { $0.total } }

    /// Takes a place for a new connection from `client`; nil if admitted, else why not.
    func admit(_ client: String) -> String? {
        let (refusal, report) = state.withLock { s -> (String?, Int?) in
            let mine = s.perClient[client, default: 0]
            let refusal: String
            let serverCap = s.total >= maxTotal
            if serverCap {
                refusal = "the server's connection cap (\(maxTotal)) is reached"
            } else if mine >= maxPerClient {
                refusal = "this client's connection cap (\(maxPerClient)) is reached"
            } else {
                s.total += 1
                s.perClient[client] = mine + 1
                return (nil, nil)
            }
            let refused = s.refusedSinceReport[serverCap, default: 0] + 1
            let now = ContinuousClock.now
            if let last = s.lastReport[serverCap], now - last < .seconds(10) {
                s.refusedSinceReport[serverCap] = refused
                return (refusal, nil)
            }
            s.lastReport[serverCap] = now
            s.refusedSinceReport[serverCap] = 0
            return (refusal, refused)
        }
        if let refusal, let report {
            logger.warning("HTTP connection refused: \(refusal)", metadata: [
                "server": "\(server)", "client": "\(client)", "refused-since-last-report": "\(report)",
                "open-connections": "\(openConnections)"])
        }
        return refusal
    }

    func release(_ client: String) {
        state.withLock { s in
            s.total -= 1
            let left = s.perClient[client, default: 1] - 1
            s.perClient[client] = left > 0 ? left : nil
        }
    }
}

/// A child channel that first takes a place in the limiter: beyond a cap, the connection is
/// closed as soon as it is registered (the rest of the pipeline is built so that Hummingbird's
/// handling finds the channel it expects, and ends at once).
struct LimitedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let limiter: ConnectionLimiter
    let afterSetup: @Sendable (any Channel) throws -> Void

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let client = channel.remoteAddress?.ipAddress ?? "unknown"
        let refusal = limiter.admit(client)
        if refusal == nil {
            let limiter = self.limiter
            channel.closeFuture.whenComplete { _ in limiter.release(client) }
        } else {
            do { try channel.pipeline.syncOperations.addHandler(CloseAtOnceHandler()) } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }
        let afterSetup = self.afterSetup
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            if refusal == nil { try afterSetup(channel) }
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Closes its channel as soon as it is active and lets nothing it receives through.
final class CloseAtOnceHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.close(promise: nil) }
    }

    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// Closes a TLS connection whose handshake has not completed within the timeout.
final class TLSHandshakeTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let timeout: TimeAmount
    private var scheduled: Scheduled<Void>?
    private var completed = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { schedule(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancel() }

    func channelActive(context: ChannelHandlerContext) {
        schedule(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            completed = true
            cancel()
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func schedule(_ context: ChannelHandlerContext) {
        guard scheduled == nil, !completed else { return }
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            scheduled = nil
            if !completed { context.close(promise: nil) }
        }
    }

    private func cancel() {
        scheduled?.cancel()
        scheduled = nil
    }
}

/// Between the HTTP codec and Hummingbird: refuses a request head that overflows the header
/// limit (431) and a body beyond the body limit (413 when the head announces it, else the
/// connection is closed when the body grows beyond it), without reading the body on.
final class HTTPRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let maxBodyBytes: Int
    private var bodyBytes = 0
    private var refusing = false

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refusing else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            bodyBytes = 0
            if let length = head.headerFields[.contentLength], let n = Int(length), n > maxBodyBytes {
                refuse(context, status: .contentTooLarge, message: "the request body is larger than \(maxBodyBytes) bytes\n")
                return
            }
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            if bodyBytes > maxBodyBytes {
                // The head went on to the router, which may be answering: just close.
                refusing = true
                context.close(promise: nil)
                return
            }
        case .end:
            break
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parse = error as? HTTPParserError, parse == .headerOverflow {
            guard !refusing else { return }
            refuse(context, status: .requestHeaderFieldsTooLarge, message: "the request header is too large\n")
            return
        }
        context.fireErrorCaught(error)
    }

    /// Answers `status` with Connection: close and closes; nothing more is read.
    private func refuse(_ context: ChannelHandlerContext, status: HTTPResponse.Status, message: String) {
        refusing = true
        let body = ByteBuffer(string: message)
        let head = HTTPResponse(status: status, headerFields: [
            .connection: "close", .contentType: "text/plain; charset=utf-8", .contentLength: "\(body.readableBytes)"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
