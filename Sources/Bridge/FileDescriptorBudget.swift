import Exchange
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the process's file descriptors are shared out, so that HTTP clients can never take the
/// ones DICOM and the store need.
///
/// At start `serve` raises its soft open-file limit (RLIMIT_NOFILE) to the hard limit and logs
/// both. It keeps a reserve for everything but inbound HTTP:
///
///     reserve = descriptors already open at start
///             + 256                        the index (SQLite, WAL, readers), the store's files and
///                                          temporary files, the ledger, outbound TLS connections
///                                          (witness, fetch, federation), the event loops
///             + 8 × maxAssociations        each DICOM association: its socket, the file being
///                                          received and its temporary file, C-MOVE/C-GET
///                                          sub-associations, connections still negotiating
///
/// and the rest is shared evenly between the HTTP servers (ledger port, peer port): each one's
/// connection cap is `httpMaxConnections`, lowered to its share (never below 8).
public struct FileDescriptorBudget: Sendable, Equatable {
    /// The soft open-file limit the process runs with (after raising it).
    public let limit: Int
    /// The hard limit (nil: unlimited).
    public let hardLimit: Int?
    /// The soft limit before it was raised.
    public let limitAtStart: Int
    /// Descriptors open when the budget was made.
    public let openAtStart: Int
    /// What is kept for DICOM, the store and outbound connections (see above).
    public let reserve: Int

    public static let fixedReserve = 256
    public static let perAssociation = 8
    /// No HTTP server gets fewer connections than this, whatever the limit.
    public static let minimumPerServer = 8

    public init(limit: Int, hardLimit: Int?, limitAtStart: Int, openAtStart: Int, maxAssociations: Int) {
        self.limit = limit
        self.hardLimit = hardLimit
        self.limitAtStart = limitAtStart
        self.openAtStart = openAtStart
        reserve = openAtStart + Self.fixedReserve + Self.perAssociation * maxAssociations
    }

    /// Descriptors left for inbound HTTP connections, all servers together.
    public var forHTTP: Int { max(0, limit - reserve) }

    /// The connection cap of each of `servers` HTTP servers, `configured` at most.
    public func connectionsPerServer(configured: Int, servers: Int) -> Int {
        guard servers > 0 else { return configured }
        return max(Self.minimumPerServer, min(configured, forHTTP / servers))
    }

    /// Raises the soft limit to the hard limit and measures what is open.
    public static func establish(maxAssociations: Int) -> FileDescriptorBudget {
        var rl = rlimit()
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &rl) == 0 else {
            return FileDescriptorBudget(limit: 1024, hardLimit: 1024, limitAtStart: 1024, openAtStart: openDescriptors(),
                                        maxAssociations: maxAssociations)
        }
        let unlimited = rlim_t.max  // RLIM_INFINITY (~0), which Swift cannot import as a literal
        let before = rl.rlim_cur
        let hard: Int? = rl.rlim_max == unlimited ? nil : Int(rl.rlim_max)
        // An unlimited hard limit cannot be the soft one on Linux (fs.nr_open bounds it).
        let target = rl.rlim_max == unlimited ? rlim_t(systemMaximum()) : rl.rlim_max
        if rl.rlim_cur != unlimited, rl.rlim_cur < target {
            var raised = rl
            raised.rlim_cur = target
            if setrlimit(resource, &raised) == 0 { rl = raised }
        }
        let soft = rl.rlim_cur == unlimited ? systemMaximum() : Int(rl.rlim_cur)
        let atStart = before == unlimited ? soft : Int(before)
        return FileDescriptorBudget(limit: soft, hardLimit: hard, limitAtStart: atStart, openAtStart: openDescriptors(),
                                    maxAssociations: maxAssociations)
    }

    /// The kernel's bound on a process's descriptors (fs.nr_open), 1,048,576 if unknown.
    static func systemMaximum() -> Int {
        if let text = try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8),
           let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return n }
        return 1 << 20
    }

    /// Descriptors open now (entries of /proc/self/fd; 0 where there is no /proc).
    static func openDescriptors() -> Int {
        let n = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return max(0, n - 1)  // the directory listing's own descriptor
    }

    /// The limits of each HTTP server of `configuration` under this budget.
    public func httpLimits(_ configuration: BridgeConfiguration, servers: Int) -> HTTPServerLimits {
        let perServer = connectionsPerServer(configured: configuration.httpMaxConnections, servers: servers)
        return HTTPServerLimits(idleTimeoutSeconds: configuration.httpIdleTimeoutSeconds, maxConnections: perServer,
                                maxConnectionsPerClient: min(configuration.httpMaxConnectionsPerClient, perServer),
                                maxHeaderBytes: configuration.httpMaxHeaderBytes, maxBodyBytes: configuration.httpMaxBodyBytes,
                                tlsHandshakeTimeoutSeconds: configuration.tlsHandshakeTimeoutSeconds)
    }

    /// One log line: what the process has and how it is shared.
    public func log(_ logger: Logger, httpServers: Int, perServer: Int, configured: Int) {
        var metadata: Logger.Metadata = [
            "open-file-limit": "\(limit)", "hard-limit": "\(hardLimit.map(String.init) ?? "unlimited")",
            "limit-at-start": "\(limitAtStart)", "open-at-start": "\(openAtStart)",
            "reserved-for-dicom-and-store": "\(reserve)", "http-servers": "\(httpServers)",
            "http-connections-per-server": "\(perServer)"]
        if limit > limitAtStart { metadata["raised"] = "yes" }
        logger.notice("file descriptors budgeted", metadata: metadata)
        if httpServers > 0, perServer < configured {
            logger.warning("""
                the open-file limit \(limit) leaves \(forHTTP) descriptors for HTTP after the reserve of \(reserve): \
                each HTTP server holds at most \(perServer) connections (httpMaxConnections is \(configured)); \
                raise the limit (e.g. LimitNOFILE= in the systemd unit) to allow more
                """)
        }
    }
}
