import Archive
import Exchange
import Foundation
import GRDB
import Hummingbird
import Ledger
import Logging
import NIOCore
import ServiceLifecycle

/// Read-only HTTP endpoints of the ledger: the C2SP tlog-tiles layout (`/checkpoint`,
/// `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`) so that anyone can verify the whole log
/// from tiles alone, plus `/key` and proof endpoints for convenience. Nothing here names a patient.
final class LedgerHTTPService: BackgroundService, @unchecked Sendable {
    let archive: Archive
    let port: Int
    let logger: Logger
    let verifierKey: String
    /// Idle timeout, connection caps, header and body limits (see `HTTPServerLimits`).
    let limits: HTTPServerLimits
    private var task: Task<Void, Never>?
    private var group: ServiceGroup?
    private let done = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)

    init(archive: Archive, port: Int, verifierKey: String, logger: Logger, limits: HTTPServerLimits = HTTPServerLimits()) {
        self.archive = archive
        self.limits = limits
        self.port = port
        self.verifierKey = verifierKey
        self.logger = logger
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        LedgerRoutes.add(to: router, archive: archive, verifierKey: verifierKey)
        return router
    }

    func start() {
        var httpLogger = logger
        httpLogger.logLevel = max(logger.logLevel, .warning)  // Hummingbird's own per-request lines stay quiet
        let app = Application(
            router: router(),
            server: limits.plainServer(name: "ledger HTTP", logger: logger),
            configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: "dicom-bridge"),
            onServerRunning: { [logger, port, ready, limits] _ in
                logger.notice("ledger HTTP endpoints serving", metadata: [
                    "port": "\(port)", "max-connections": "\(limits.maxConnections)",
                    "max-connections-per-client": "\(limits.maxConnectionsPerClient)",
                    "idle-timeout-seconds": "\(limits.idleTimeoutSeconds)"])
                ready.signal()
            },
            logger: httpLogger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        self.group = group
        task = Task { [done, logger, port, ready] in
            defer { done.signal() }
            do { try await group.run() } catch {
                logger.critical("the ledger HTTP endpoints stopped", metadata: ["port": "\(port)", "error": "\(error)"])
                ready.signal()
            }
        }
        _ = ready.wait(timeout: .now() + 10)
    }

    func stop() {
        guard task != nil, let group else { return }
        Task { await group.triggerGracefulShutdown() }
        done.wait()
        task = nil
    }
}
