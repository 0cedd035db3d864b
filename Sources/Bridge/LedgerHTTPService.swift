import Archive
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
    private var task: Task<Void, Never>?
    private var group: ServiceGroup?
    private let done = DispatchSemaphore(value: 0)
    private let ready = DispatchSemaphore(value: 0)

    init(archive: Archive, port: Int, verifierKey: String, logger: Logger) {
        self.archive = archive
        self.port = port
        self.verifierKey = verifierKey
        self.logger = logger
    }

    static func text(_ s: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json<T: Encodable>(_ value: T) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let archive = self.archive
        let key = verifierKey
        router.get("/checkpoint") { _, _ -> Response in
            guard let cp = try await archive.database.read({ try LedgerStore.latestCheckpoint($0) }) else {
                return Self.text("no checkpoint signed yet\n", status: .notFound)
            }
            return Self.text(cp.signedNote)
        }
        router.get("/key") { _, _ in Self.text(key + "\n") }
        router.get("/tile/**") { request, _ -> Response in
            let path = String(request.uri.path.dropFirst())  // "tile/..."
            do {
                let tile = try TilePath.parse(path)
                let data = try await archive.database.read { db -> Data in
                    guard let cp = try LedgerStore.latestCheckpoint(db) else { throw HTTPError(.notFound) }
                    return try TileServer.content(tile, treeSize: cp.size, db)
                }
                return Response(status: .ok, headers: [.contentType: "application/octet-stream",
                                                       .cacheControl: path.contains(".p/") ? "no-cache" : "max-age=31536000, immutable"],
                                body: .init(byteBuffer: ByteBuffer(bytes: data)))
            } catch let e as HTTPError {
                throw e
            } catch {
                return Self.text("\(error)\n", status: .notFound)
            }
        }
        router.get("/proof/inclusion") { request, _ -> Response in
            let q = request.uri.queryParameters
            let reader = LedgerReader(archive: archive, key: key)
            let selector: LedgerReader.Selector
            if let i = q.get("index", as: UInt64.self) { selector = .index(i) }
            else if let s = q.get("sop") { selector = .sop(s) }
            else if let h = q.get("sha256") { selector = .sha256(h) }
            else { return Self.text("give index, sop or sha256\n", status: .badRequest) }
            do { return try Self.json(try reader.prove(selector)) } catch {
                return Self.text("\(error)\n", status: .notFound)
            }
        }
        router.get("/proof/consistency") { request, _ -> Response in
            let q = request.uri.queryParameters
            guard let from = q.get("from", as: UInt64.self), let to = q.get("to", as: UInt64.self) else {
                return Self.text("give from and to\n", status: .badRequest)
            }
            do { return try Self.json(try LedgerReader(archive: archive, key: key).proveConsistency(from, to)) } catch {
                return Self.text("\(error)\n", status: .notFound)
            }
        }
        return router
    }

    func start() {
        var httpLogger = logger
        httpLogger.logLevel = max(logger.logLevel, .warning)  // Hummingbird's own per-request lines stay quiet
        let app = Application(
            router: router(),
            configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: "dicom-bridge"),
            onServerRunning: { [logger, port, ready] _ in
                logger.notice("ledger HTTP endpoints serving", metadata: ["port": "\(port)"])
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
