import ArgumentParser
import Bridge
import Foundation

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the bridge: the DICOM SCP (C-ECHO, C-STORE) and the ledger.",
        discussion: "A home that does not exist yet is initialised first. Stops cleanly on SIGTERM or SIGINT.")

    @OptionGroup var home: HomeOptions
    @OptionGroup var server: ServerOptions

    func run() throws {
        let home = home.resolved
        if !home.exists {
            var config = BridgeConfiguration()
            try config.applyEnvironment()
            server.apply(to: &config)
            _ = try Setup.initialize(home: home, configuration: config)
        }
        let config = try Setup.configuration(home: home) { server.apply(to: &$0) }
        let logger = BridgeLogging.logger(level: config.logLevel)
        do {
            let bridge = try BridgeServer(home: home, configuration: config, logger: logger)
            try bridge.runUntilSignalled()
        } catch {
            logger.critical("cannot serve: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counts, disk use and the last instance received.")

    @OptionGroup var home: HomeOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let home = home.resolved
        let archive = try Setup.openArchive(home: home)
        defer { archive.close() }
        let s = try archive.status()
        if json {
            try printJSON(s)
            return
        }
        print("Home:       \(home.url.path)")
        print("Patients:   \(s.patients)")
        print("Studies:    \(s.studies)")
        print("Series:     \(s.series)")
        print("Instances:  \(s.instances)" + (s.storedVersions > s.instances ? " (\(s.storedVersions) versions stored)" : ""))
        print("Disk use:   \(ByteCountFormatter.string(fromByteCount: s.storedBytes, countStyle: .file))")
        if let last = s.lastReceivedAt {
            print("Last received: \(last) from \(s.lastCallingAETitle ?? "?")")
        } else {
            print("Last received: never")
        }
    }
}
