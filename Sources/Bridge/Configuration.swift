import DICOM
import Foundation

/// The bridge's configuration: `config.json` in the home, overridden by environment variables
/// (DICOM_BRIDGE_*), overridden in turn by command-line flags.
public struct BridgeConfiguration: Codable, Sendable, Equatable {
    /// Our AE title.
    public var aeTitle: String = "DICOM_BRIDGE"
    /// The DICOM port.
    public var port: Int = 11112
    /// Largest PDU we receive.
    public var maxPDU: Int = 116_794
    /// Associations served at once; more are rejected as transient (local limit exceeded).
    public var maxAssociations: Int = 16
    /// Admit every calling AE title (first-time set-up only: logged loudly).
    public var acceptAny: Bool = false
    /// Seconds an association may stay idle (or stall in a transfer) before it is aborted.
    public var dimseTimeoutSeconds: Int = 120
    /// trace, debug, info, notice, warning, error.
    public var logLevel: String = "info"
    /// How often a signed checkpoint covers new ledger entries.
    public var checkpointIntervalSeconds: Double = 1
    /// The ledger's origin line and the name in the node's signing key.
    public var nodeName: String = "dicom-bridge.local"
    /// The port of the ledger's read-only HTTP endpoints (tlog-tiles); 0 turns them off.
    public var httpPort: Int = 8787
    /// Most matches one C-FIND returns (0: no limit); a query that would return more is answered
    /// A700 after this many, asking the user to narrow it.
    public var maxQueryMatches: Int = 10_000

    public init() {}

    enum CodingKeys: String, CodingKey {
        case aeTitle, port, maxPDU, maxAssociations, acceptAny, dimseTimeoutSeconds, logLevel,
             checkpointIntervalSeconds, nodeName, maxQueryMatches, httpPort
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = BridgeConfiguration.defaults
        aeTitle = try c.decodeIfPresent(String.self, forKey: .aeTitle) ?? d.aeTitle
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? d.port
        maxPDU = try c.decodeIfPresent(Int.self, forKey: .maxPDU) ?? d.maxPDU
        maxAssociations = try c.decodeIfPresent(Int.self, forKey: .maxAssociations) ?? d.maxAssociations
        acceptAny = try c.decodeIfPresent(Bool.self, forKey: .acceptAny) ?? d.acceptAny
        dimseTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .dimseTimeoutSeconds) ?? d.dimseTimeoutSeconds
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? d.logLevel
        checkpointIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .checkpointIntervalSeconds) ?? d.checkpointIntervalSeconds
        nodeName = try c.decodeIfPresent(String.self, forKey: .nodeName) ?? d.nodeName
        maxQueryMatches = try c.decodeIfPresent(Int.self, forKey: .maxQueryMatches) ?? d.maxQueryMatches
        httpPort = try c.decodeIfPresent(Int.self, forKey: .httpPort) ?? d.httpPort
    }

    static let defaults = BridgeConfiguration()

    /// Checks every value; the message names the setting and says what is allowed.
    public func validate() throws {
        guard AETitle(aeTitle) != nil else { throw ConfigurationError("aeTitle '\(aeTitle)' is not a valid AE title (1 to 16 characters, no backslash)") }
        guard (1...65535).contains(port) else { throw ConfigurationError("port \(port) is out of range 1-65535") }
        guard (0...65535).contains(httpPort) else { throw ConfigurationError("httpPort \(httpPort) is out of range 0-65535 (0 turns it off)") }
        guard httpPort != port else { throw ConfigurationError("httpPort and port must differ (both \(port))") }
        guard (4096...131_072).contains(maxPDU) else { throw ConfigurationError("maxPDU \(maxPDU) is out of range 4096-131072") }
        guard (1...1024).contains(maxAssociations) else { throw ConfigurationError("maxAssociations \(maxAssociations) is out of range 1-1024") }
        guard dimseTimeoutSeconds >= 1 else { throw ConfigurationError("dimseTimeoutSeconds must be at least 1") }
        guard maxQueryMatches >= 0 else { throw ConfigurationError("maxQueryMatches must be 0 (no limit) or more") }
        guard checkpointIntervalSeconds > 0 else { throw ConfigurationError("checkpointIntervalSeconds must be positive") }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ConfigurationError("logLevel '\(logLevel)' is not one of trace, debug, info, notice, warning, error")
        }
    }

    /// Applies DICOM_BRIDGE_AE_TITLE, _PORT, _MAX_PDU, _MAX_ASSOCIATIONS, _ACCEPT_ANY, _LOG_LEVEL,
    /// _DIMSE_TIMEOUT, _CHECKPOINT_INTERVAL, _NODE_NAME.
    public mutating func applyEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws {
        func int(_ key: String) throws -> Int? {
            guard let v = env[key] else { return nil }
            guard let i = Int(v) else { throw ConfigurationError("\(key)='\(v)' is not a number") }
            return i
        }
        if let v = env["DICOM_BRIDGE_AE_TITLE"] { aeTitle = v }
        if let v = try int("DICOM_BRIDGE_PORT") { port = v }
        if let v = try int("DICOM_BRIDGE_MAX_PDU") { maxPDU = v }
        if let v = try int("DICOM_BRIDGE_MAX_ASSOCIATIONS") { maxAssociations = v }
        if let v = try int("DICOM_BRIDGE_DIMSE_TIMEOUT") { dimseTimeoutSeconds = v }
        if let v = env["DICOM_BRIDGE_ACCEPT_ANY"] { acceptAny = ["1", "true", "yes"].contains(v.lowercased()) }
        if let v = env["DICOM_BRIDGE_LOG_LEVEL"] { logLevel = v }
        if let v = env["DICOM_BRIDGE_CHECKPOINT_INTERVAL"], let d = Double(v) { checkpointIntervalSeconds = d }
        if let v = env["DICOM_BRIDGE_NODE_NAME"] { nodeName = v }
        if let v = try int("DICOM_BRIDGE_MAX_QUERY_MATCHES") { maxQueryMatches = v }
        if let v = try int("DICOM_BRIDGE_HTTP_PORT") { httpPort = v }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The home directory of a bridge: configuration, index, store, ledger key.
public struct Home: Sendable {
    public let url: URL

    public init(_ url: URL) { self.url = url.standardizedFileURL }

    /// `--home`, else $DICOM_BRIDGE_HOME, else the per-user data folder ($XDG_DATA_HOME or ~/.local/share).
    public static func resolve(_ path: String?) -> Home {
        if let path, !path.isEmpty { return Home(URL(fileURLWithPath: path)) }
        let env = ProcessInfo.processInfo.environment
        if let h = env["DICOM_BRIDGE_HOME"], !h.isEmpty { return Home(URL(fileURLWithPath: h)) }
        let base = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (FileManager.default.homeDirectoryForCurrentUser.path + "/.local/share")
        return Home(URL(fileURLWithPath: base).appendingPathComponent("dicom-bridge"))
    }

    public var configFile: URL { url.appendingPathComponent("config.json") }
    public var nodeKeyFile: URL { url.appendingPathComponent("node.key") }
    public var indexFile: URL { url.appendingPathComponent("index.sqlite") }
    public var exists: Bool { FileManager.default.fileExists(atPath: configFile.path) }

    public func loadConfiguration() throws -> BridgeConfiguration {
        guard exists else { throw ConfigurationError("no bridge home at \(url.path): run `dicom-bridge init --home \(url.path)` first") }
        let data = try Data(contentsOf: configFile)
        do {
            return try JSONDecoder().decode(BridgeConfiguration.self, from: data)
        } catch {
            throw ConfigurationError("cannot read \(configFile.path): \(error)")
        }
    }

    public func saveConfiguration(_ config: BridgeConfiguration) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try encoder.encode(config).write(to: configFile, options: .atomic)
    }
}
