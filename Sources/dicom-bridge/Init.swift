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

    func apply(to config: inout BridgeConfiguration) {
        if let aeTitle { config.aeTitle = aeTitle }
        if let port { config.port = port }
        if let httpPort { config.httpPort = httpPort }
        if let maxPDU { config.maxPDU = maxPDU }
        if let maxAssociations { config.maxAssociations = maxAssociations }
        if acceptAny { config.acceptAny = true }
        if let logLevel { config.logLevel = logLevel }
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
