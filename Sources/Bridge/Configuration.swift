import DICOM
import Exchange
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
    /// Seconds a new DICOM connection has to send its association request before it is closed.
    public var acseTimeoutSeconds: Int = 10
    /// trace, debug, info, notice, warning, error.
    public var logLevel: String = "info"
    /// How often a signed checkpoint covers new ledger entries.
    public var checkpointIntervalSeconds: Double = 1
    /// The ledger's origin line and the name in the node's signing key.
    public var nodeName: String = "dicom-bridge.local"
    /// The port of the ledger's read-only HTTP endpoints (tlog-tiles); 0 turns them off.
    public var httpPort: Int = 8787
    /// Seconds an HTTP connection (ledger and peer port) may stay without a request before it is closed.
    public var httpIdleTimeoutSeconds: Int = 60
    /// Most connections one HTTP server (ledger port, peer port) holds open at once; lowered at
    /// start to what the open-file limit leaves after the reserve for DICOM and the store.
    public var httpMaxConnections: Int = 512
    /// Most connections one remote address may hold open on one HTTP server.
    public var httpMaxConnectionsPerClient: Int = 32
    /// Largest HTTP request head (request line and header fields); a larger one is answered 431.
    public var httpMaxHeaderBytes: Int = 16_384
    /// Largest HTTP request body; a larger one is refused (413) without being read.
    public var httpMaxBodyBytes: Int = 1_048_576
    /// Seconds a connection to the peer port has to complete its TLS handshake before it is closed.
    public var tlsHandshakeTimeoutSeconds: Int = 10
    /// Most matches one C-FIND returns (0: no limit); a query that would return more is answered
    /// A700 after this many, asking the user to narrow it.
    public var maxQueryMatches: Int = 10_000

    // Exchange with peer bridges.
    /// The port of the peer API (mutual TLS); served only with a TLS certificate and key.
    public var peerPort: Int = 8443
    /// PEM certificate of this node (`pki issue`), its common name being `nodeName`.
    public var tlsCert: String?
    /// PEM private key of that certificate.
    public var tlsKey: String?
    /// The peer API's URL as peers reach it; default https://localhost:<peerPort>.
    public var publicURL: String?
    /// Seconds without a new instance after which a study is complete and its manifest published.
    public var studyCompleteSeconds: Double = 60
    /// Seconds between two rounds of witnessing (and cosigning) the peers' ledgers.
    public var witnessIntervalSeconds: Double = 30
    /// The node's OID: XDS repositoryUniqueId and manifests' Retrieve Location UID (made at init).
    public var nodeOID: String = ""
    /// The XDS affinity domain's patient ID assigning authority (default: the node's OID).
    public var affinityDomainOID: String = ""
    /// Institution Name written in manifests.
    public var institutionName: String = ""
    /// XDS codes of the document entries (classCode, typeCode, confidentialityCode, ...).
    public var documentCodes: DocumentEntryCodes = .defaults
    /// Seconds a federated C-FIND waits for the peers; one that does not answer in time is skipped.
    public var federationTimeoutSeconds: Double = 5
    /// Whether a peer may invoke emergency ("break-glass") access here: flagged and audited.
    public var breakGlass: Bool = false
    /// Where ATNA audit messages (DICOM PS3.15 A.5) go besides the ledger.
    public var audit: AuditSettings = AuditSettings()

    public struct AuditSettings: Codable, Sendable, Equatable {
        /// A file that receives one audit message per line.
        public var file: String?
        /// Send each audit message to the local syslog (facility authpriv).
        public var syslog: Bool = false
        public init() {}
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            file = try c.decodeIfPresent(String.self, forKey: .file)
            syslog = try c.decodeIfPresent(Bool.self, forKey: .syslog) ?? false
        }
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case aeTitle, port, maxPDU, maxAssociations, acceptAny, dimseTimeoutSeconds, acseTimeoutSeconds, logLevel,
             checkpointIntervalSeconds, nodeName, maxQueryMatches, httpPort, peerPort, tlsCert, tlsKey, publicURL,
             studyCompleteSeconds, witnessIntervalSeconds, nodeOID, affinityDomainOID, institutionName, documentCodes, breakGlass, audit,
             federationTimeoutSeconds, httpIdleTimeoutSeconds, httpMaxConnections, httpMaxConnectionsPerClient,
             httpMaxHeaderBytes, httpMaxBodyBytes, tlsHandshakeTimeoutSeconds
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
        acseTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .acseTimeoutSeconds) ?? d.acseTimeoutSeconds
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? d.logLevel
        checkpointIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .checkpointIntervalSeconds) ?? d.checkpointIntervalSeconds
        nodeName = try c.decodeIfPresent(String.self, forKey: .nodeName) ?? d.nodeName
        maxQueryMatches = try c.decodeIfPresent(Int.self, forKey: .maxQueryMatches) ?? d.maxQueryMatches
        httpPort = try c.decodeIfPresent(Int.self, forKey: .httpPort) ?? d.httpPort
        httpIdleTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .httpIdleTimeoutSeconds) ?? d.httpIdleTimeoutSeconds
        httpMaxConnections = try c.decodeIfPresent(Int.self, forKey: .httpMaxConnections) ?? d.httpMaxConnections
        httpMaxConnectionsPerClient = try c.decodeIfPresent(Int.self, forKey: .httpMaxConnectionsPerClient) ?? d.httpMaxConnectionsPerClient
        httpMaxHeaderBytes = try c.decodeIfPresent(Int.self, forKey: .httpMaxHeaderBytes) ?? d.httpMaxHeaderBytes
        httpMaxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .httpMaxBodyBytes) ?? d.httpMaxBodyBytes
        tlsHandshakeTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .tlsHandshakeTimeoutSeconds) ?? d.tlsHandshakeTimeoutSeconds
        peerPort = try c.decodeIfPresent(Int.self, forKey: .peerPort) ?? d.peerPort
        tlsCert = try c.decodeIfPresent(String.self, forKey: .tlsCert)
        tlsKey = try c.decodeIfPresent(String.self, forKey: .tlsKey)
        publicURL = try c.decodeIfPresent(String.self, forKey: .publicURL)
        studyCompleteSeconds = try c.decodeIfPresent(Double.self, forKey: .studyCompleteSeconds) ?? d.studyCompleteSeconds
        witnessIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .witnessIntervalSeconds) ?? d.witnessIntervalSeconds
        nodeOID = try c.decodeIfPresent(String.self, forKey: .nodeOID) ?? d.nodeOID
        affinityDomainOID = try c.decodeIfPresent(String.self, forKey: .affinityDomainOID) ?? d.affinityDomainOID
        institutionName = try c.decodeIfPresent(String.self, forKey: .institutionName) ?? d.institutionName
        documentCodes = try c.decodeIfPresent(DocumentEntryCodes.self, forKey: .documentCodes) ?? d.documentCodes
        breakGlass = try c.decodeIfPresent(Bool.self, forKey: .breakGlass) ?? d.breakGlass
        federationTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .federationTimeoutSeconds) ?? d.federationTimeoutSeconds
        audit = try c.decodeIfPresent(AuditSettings.self, forKey: .audit) ?? d.audit
    }

    /// What the exchange needs, with defaults filled in.
    public var exchangeSettings: ExchangeSettings {
        ExchangeSettings(nodeName: nodeName, aeTitle: aeTitle, nodeOID: nodeOID,
                         affinityDomainOID: affinityDomainOID.isEmpty ? nodeOID : affinityDomainOID,
                         publicURL: publicURL ?? "https://localhost:\(peerPort)", studyCompleteSeconds: studyCompleteSeconds,
                         witnessIntervalSeconds: witnessIntervalSeconds, codes: documentCodes, institutionName: institutionName)
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
        guard (1...3600).contains(acseTimeoutSeconds) else { throw ConfigurationError("acseTimeoutSeconds \(acseTimeoutSeconds) is out of range 1-3600") }
        guard (1...86_400).contains(httpIdleTimeoutSeconds) else { throw ConfigurationError("httpIdleTimeoutSeconds \(httpIdleTimeoutSeconds) is out of range 1-86400") }
        guard (1...1_000_000).contains(httpMaxConnections) else { throw ConfigurationError("httpMaxConnections \(httpMaxConnections) is out of range 1-1000000") }
        guard (1...1_000_000).contains(httpMaxConnectionsPerClient) else { throw ConfigurationError("httpMaxConnectionsPerClient \(httpMaxConnectionsPerClient) is out of range 1-1000000") }
        guard (1024...1_048_576).contains(httpMaxHeaderBytes) else { throw ConfigurationError("httpMaxHeaderBytes \(httpMaxHeaderBytes) is out of range 1024-1048576") }
        guard (1024...(1 << 30)).contains(httpMaxBodyBytes) else { throw ConfigurationError("httpMaxBodyBytes \(httpMaxBodyBytes) is out of range 1024-1073741824") }
        guard (1...600).contains(tlsHandshakeTimeoutSeconds) else { throw ConfigurationError("tlsHandshakeTimeoutSeconds \(tlsHandshakeTimeoutSeconds) is out of range 1-600") }
        guard maxQueryMatches >= 0 else { throw ConfigurationError("maxQueryMatches must be 0 (no limit) or more") }
        guard (0...65535).contains(peerPort) else { throw ConfigurationError("peerPort \(peerPort) is out of range 0-65535 (0 turns it off)") }
        guard peerPort == 0 || (peerPort != port && peerPort != httpPort) else { throw ConfigurationError("peerPort must differ from port and httpPort") }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ConfigurationError("tlsCert and tlsKey go together: give both or neither") }
        guard studyCompleteSeconds >= 0 else { throw ConfigurationError("studyCompleteSeconds must be 0 or more") }
        guard witnessIntervalSeconds > 0 else { throw ConfigurationError("witnessIntervalSeconds must be positive") }
        guard nodeOID.isEmpty || UID.isValid(nodeOID) else { throw ConfigurationError("nodeOID '\(nodeOID)' is not an OID") }
        guard affinityDomainOID.isEmpty || UID.isValid(affinityDomainOID) else { throw ConfigurationError("affinityDomainOID '\(affinityDomainOID)' is not an OID") }
        guard checkpointIntervalSeconds > 0 else { throw ConfigurationError("checkpointIntervalSeconds must be positive") }
        guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
            throw ConfigurationError("logLevel '\(logLevel)' is not one of trace, debug, info, notice, warning, error")
        }
    }

    /// Applies DICOM_BRIDGE_AE_TITLE, _PORT, _MAX_PDU, _MAX_ASSOCIATIONS, _ACCEPT_ANY, _LOG_LEVEL,
    /// _DIMSE_TIMEOUT, _ACSE_TIMEOUT, _CHECKPOINT_INTERVAL, _NODE_NAME.
    public mutating func applyEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws {
        func int(_ key: String) throws -> Int? {
            guard let v = env[key] else { return nil }
            guard let i = Int(v) else { throw ConfigurationError("\(key)='\(v)' is not a number") }
            return i
        }
        func double(_ key: String) throws -> Double? {
            guard let v = env[key] else { return nil }
            guard let d = Double(v) else { throw ConfigurationError("\(key)='\(v)' is not a number") }
            return d
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = env[key] else { return nil }
            switch v.lowercased() {
            case "1", "true", "yes": return true
            case "0", "false", "no", "": return false
            default: throw ConfigurationError("\(key)='\(v)' is not one of 1, true, yes, 0, false, no")
            }
        }
        if let v = env["DICOM_BRIDGE_AE_TITLE"] { aeTitle = v }
        if let v = try int("DICOM_BRIDGE_PORT") { port = v }
        if let v = try int("DICOM_BRIDGE_MAX_PDU") { maxPDU = v }
        if let v = try int("DICOM_BRIDGE_MAX_ASSOCIATIONS") { maxAssociations = v }
        if let v = try int("DICOM_BRIDGE_DIMSE_TIMEOUT") { dimseTimeoutSeconds = v }
        if let v = try int("DICOM_BRIDGE_ACSE_TIMEOUT") { acseTimeoutSeconds = v }
        if let v = try bool("DICOM_BRIDGE_ACCEPT_ANY") { acceptAny = v }
        if let v = env["DICOM_BRIDGE_LOG_LEVEL"] { logLevel = v }
        if let v = try double("DICOM_BRIDGE_CHECKPOINT_INTERVAL") { checkpointIntervalSeconds = v }
        if let v = env["DICOM_BRIDGE_NODE_NAME"] { nodeName = v }
        if let v = try int("DICOM_BRIDGE_MAX_QUERY_MATCHES") { maxQueryMatches = v }
        if let v = try int("DICOM_BRIDGE_HTTP_PORT") { httpPort = v }
        if let v = try int("DICOM_BRIDGE_HTTP_IDLE_TIMEOUT") { httpIdleTimeoutSeconds = v }
        if let v = try int("DICOM_BRIDGE_HTTP_MAX_CONNECTIONS") { httpMaxConnections = v }
        if let v = try int("DICOM_BRIDGE_HTTP_MAX_CONNECTIONS_PER_CLIENT") { httpMaxConnectionsPerClient = v }
        if let v = try int("DICOM_BRIDGE_TLS_HANDSHAKE_TIMEOUT") { tlsHandshakeTimeoutSeconds = v }
        if let v = try int("DICOM_BRIDGE_PEER_PORT") { peerPort = v }
        if let v = env["DICOM_BRIDGE_TLS_CERT"] { tlsCert = v }
        if let v = env["DICOM_BRIDGE_TLS_KEY"] { tlsKey = v }
        if let v = env["DICOM_BRIDGE_PUBLIC_URL"] { publicURL = v }
        if let v = try double("DICOM_BRIDGE_STUDY_COMPLETE_SECONDS") { studyCompleteSeconds = v }
        if let v = try double("DICOM_BRIDGE_WITNESS_INTERVAL") { witnessIntervalSeconds = v }
        if let v = try bool("DICOM_BRIDGE_BREAK_GLASS") { breakGlass = v }
        if let v = env["DICOM_BRIDGE_AUDIT_FILE"] { audit.file = v }
        if let v = try bool("DICOM_BRIDGE_AUDIT_SYSLOG") { audit.syslog = v }
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
