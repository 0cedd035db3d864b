import ArgumentParser
import Bridge
import Foundation

struct ServerOptions: ParsableArguments {
    @Option(name: .customLong("ae-title"), help: "Our AE title (default DICOM_BRIDGE).")
    var aeTitle: String?

    @Option(help: "The DICOM port (default 11112).")
    var port: Int?

    @Option(name: .customLong("http-port"), help: "Port of the ledger's HTTP endpoints (default 8787; 0: off).")
    var httpPort: Int?

    @Option(name: .customLong("max-pdu"), help: "Largest PDU we receive, 4096-131072.")
    var maxPDU: Int?

    @Option(name: .customLong("max-associations"), help: "Associations served at once.")
    var maxAssociations: Int?

    @Flag(name: .customLong("accept-any"), help: "Admit every calling AE title (first-time set-up only).")
    var acceptAny = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning or error.")
    var logLevel: String?

    @Option(name: .customLong("node-name"), help: "The node's name: its ledger origin and its certificate's common name (fixed when the home is made).")
    var nodeName: String?

    @Option(name: .customLong("peer-port"), help: "Port of the peer API over mutual TLS (default 8443; needs --tls-cert and --tls-key).")
    var peerPort: Int?

    @Option(name: .customLong("tls-cert"), help: "This node's certificate (PEM, from `pki issue`).")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The private key of --tls-cert (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("public-url"), help: "The peer API's URL as peers reach it (default https://localhost:<peer-port>).")
    var publicURL: String?

    @Option(name: .customLong("study-complete-seconds"), help: "Seconds without a new instance before a study's manifest is published (default 60).")
    var studyCompleteSeconds: Double?

    @Option(name: .customLong("witness-interval"), help: "Seconds between two rounds of witnessing the peers' ledgers (default 30).")
    var witnessInterval: Double?

    func apply(to config: inout BridgeConfiguration) {
        if let aeTitle { config.aeTitle = aeTitle }
        if let port { config.port = port }
        if let httpPort { config.httpPort = httpPort }
        if let maxPDU { config.maxPDU = maxPDU }
        if let maxAssociations { config.maxAssociations = maxAssociations }
        if acceptAny { config.acceptAny = true }
        if let logLevel { config.logLevel = logLevel }
        if let nodeName { config.nodeName = nodeName }
        if let peerPort { config.peerPort = peerPort }
        if let tlsCert { config.tlsCert = Self.absolute(tlsCert) }
        if let tlsKey { config.tlsKey = Self.absolute(tlsKey) }
        if let publicURL { config.publicURL = publicURL }
        if let studyCompleteSeconds { config.studyCompleteSeconds = studyCompleteSeconds }
        if let witnessInterval { config.witnessIntervalSeconds = witnessInterval }
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a bridge home: configuration, index database, store and node signing key.")

    @OptionGroup var home: HomeOptions
    @OptionGroup var server: ServerOptions
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let home = home.resolved
        if home.exists { throw fail("a bridge home already exists at \(home.url.path)") }
        var config = BridgeConfiguration()
        server.apply(to: &config)
        try config.validate()
        let result = try Setup.initialize(home: home, configuration: config)
        if json {
            try printJSON(result)
        } else {
            print("Initialised a bridge home at \(home.url.path)")
            print("  AE title \(config.aeTitle), port \(config.port)")
            if let key = result.verifierKey { print("  ledger verifier key: \(key)") }
        }
    }
}
