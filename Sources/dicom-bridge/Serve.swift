import ArgumentParser
import Archive
import Bridge
import Exchange

import Foundation

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the bridge: the DICOM SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET), the ledger, manifests of complete studies and, with a TLS identity, the peer API and the witness of peers' ledgers.",
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
        let peers = try PeerRegistry(archive: archive).list()
        let manifests = try ManifestPublisher.publishedStudyCount(archive)
        let peerStatus = peers.map {
            PeerStatus(name: $0.name, equivocating: $0.equivocation != nil, lastWitnessedAt: $0.lastWitnessedAt, lastError: $0.lastError)
        }
        if json {
            try printJSON(StatusReport(archive: s, manifests: manifests, peers: peerStatus))
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
        print("Manifests:  \(manifests) studies published")
        for p in peerStatus {
            if p.equivocating {
                print("Peer \(p.name): !! EQUIVOCATING: it showed two inconsistent ledger histories; nothing is accepted from it (see `peer list`)")
            } else {
                print("Peer \(p.name): " + (p.lastWitnessedAt.map { "witnessed \($0)" } ?? "not witnessed yet") + (p.lastError.map { ", last error: \($0)" } ?? ""))
            }
        }
    }

    struct PeerStatus: Codable { var name: String; var equivocating: Bool; var lastWitnessedAt: String?; var lastError: String? }

    /// The archive's counts, flat as before, with the exchange's state beside them.
    struct StatusReport: Encodable {
        var archive: ArchiveStatus
        var manifests: Int
        var peers: [PeerStatus]

        enum Keys: String, CodingKey { case manifests, peers }

        func encode(to encoder: any Encoder) throws {
            try archive.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(manifests, forKey: .manifests)
            try c.encode(peers, forKey: .peers)
        }
    }
}
