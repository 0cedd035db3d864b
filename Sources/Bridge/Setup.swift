import Archive
import DICOM
import Exchange
import Foundation
import Logging

public struct InitResult: Codable, Sendable {
    public var home: String
    public var aeTitle: String
    public var port: Int
    public var verifierKey: String?
}

public enum Setup {
    /// Creates a home: config.json, the index database and store folders, the node signing key.
    public static func initialize(home: Home, configuration: BridgeConfiguration) throws -> InitResult {
        var configuration = configuration
        // The node's own OID, made once: XDS repositoryUniqueId and Retrieve Location UID.
        if configuration.nodeOID.isEmpty { configuration.nodeOID = UID.generate() }
        try configuration.validate()
        try FileManager.default.createDirectory(at: home.url, withIntermediateDirectories: true)
        try home.saveConfiguration(configuration)
        LedgerService.registered
        ExchangeSchema.registered
        let archive = try Archive(home: home.url, logger: Logger(label: "dicom-bridge.init"))
        archive.close()
        let verifier = try NodeKey.loadOrCreate(home: home, name: configuration.nodeName).verifierKey
        return InitResult(home: home.url.path, aeTitle: configuration.aeTitle, port: configuration.port, verifierKey: verifier)
    }

    /// The configuration of a command: config.json, then the environment, then `override`.
    public static func configuration(home: Home, override: (inout BridgeConfiguration) -> Void) throws -> BridgeConfiguration {
        var config = try home.loadConfiguration()
        try config.applyEnvironment()
        override(&config)
        try config.validate()
        return config
    }

    /// Opens the archive of an existing home, for commands other than serve.
    public static func openArchive(home: Home) throws -> Archive {
        guard home.exists else {
            throw ConfigurationError("no bridge home at \(home.url.path): run `dicom-bridge init --home \(home.url.path)` first")
        }
        LedgerService.registered
        ExchangeSchema.registered
        let archive = try Archive(home: home.url, logger: Logger(label: "dicom-bridge"))
        // Whatever a command stores (a fetched study, a manifest) is anchored like a received instance.
        archive.setCommitHook(LedgerService.anchoringHook)
        return archive
    }
}

public enum BridgeLogging {
    private static let once: Void = ()
    nonisolated(unsafe) private static var bootstrapped = false

    /// Logs go to standard error, one line per event, with metadata as key=value.
    public static func logger(level: String) -> Logger {
        if !bootstrapped {
            bootstrapped = true
            LoggingSystem.bootstrap { label in StreamLogHandler.standardError(label: label) }
        }
        var logger = Logger(label: "dicom-bridge")
        logger.logLevel = Logger.Level(rawValue: level) ?? .info
        return logger
    }
}
