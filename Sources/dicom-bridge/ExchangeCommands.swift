import ArgumentParser
import Archive
import Bridge
import DICOM
import DICOMNetwork
import Exchange
import Foundation
import Logging

struct PeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Peer bridges: who they are (URL, CA, ledger key) and what this site shares with them.",
        discussion: """
            A peer is known by its node name: the common name of its certificate and the name of its \
            ledger key. A running `serve` sees changes at once; a CA it did not trust when it started \
            needs a restart of serve to be accepted for incoming requests.
            """,
        subcommands: [Add.self, List.self, Remove.self, Share.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a peer bridge.")
        @OptionGroup var home: HomeOptions
        @Argument(help: "The peer's node name (its certificate's common name).") var name: String
        @Option(help: "Its peer API URL, https://host:port.") var url: String
        @Option(help: "The CA certificate (PEM) its certificate chains to.") var ca: String
        @Option(name: .customLong("verifier-key"), help: "Its ledger verifier key (`dicom-bridge ledger key` on the peer).")
        var verifierKey: String
        @Option(help: "What it may see of patients who enrolled no key here: none (default) or all.")
        var share: SharePolicy = .none
        @Flag(help: "Replace a peer of that name.") var replace = false

        func run() throws {
            guard let pem = FileManager.default.contents(atPath: ca) else { throw fail("cannot read the CA file \(ca)") }
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            do {
                try PeerRegistry(archive: archive).add(
                    Peer(name: name, url: url, caPEM: String(decoding: pem, as: UTF8.self), verifierKey: verifierKey, share: share),
                    replace: replace)
            } catch let e as ExchangeError { throw fail(e.description) }
            print("Added peer \(name) at \(url), sharing \(share.rawValue)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the peers, their last witnessed checkpoint, and any equivocation.")
        @OptionGroup var home: HomeOptions
        @Flag(help: "Print JSON.") var json = false

        struct Row: Codable {
            var name: String
            var url: String
            var share: String
            var verifierKey: String
            var checkpointsSeen: Int
            var lastSize: UInt64?
            var lastWitnessedAt: String?
            var lastError: String?
            var equivocating: Bool
            var equivocation: String?
        }

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            let registry = PeerRegistry(archive: archive)
            let rows = try registry.list().map { p -> Row in
                let seen = try registry.checkpoints(of: p.name)
                return Row(name: p.name, url: p.url, share: p.share.rawValue, verifierKey: p.verifierKey, checkpointsSeen: seen.count,
                           lastSize: seen.last?.size, lastWitnessedAt: p.lastWitnessedAt, lastError: p.lastError,
                           equivocating: p.equivocation != nil, equivocation: p.equivocation)
            }
            if json { return try printJSON(rows) }
            if rows.isEmpty { print("No peers. Add one with `dicom-bridge peer add`."); return }
            for r in rows {
                print("\(r.name)  \(r.url)  share=\(r.share)  checkpoints seen: \(r.checkpointsSeen)"
                      + (r.lastSize.map { ", last size \($0)" } ?? "") + (r.lastWitnessedAt.map { ", witnessed \($0)" } ?? ""))
                if r.equivocating { print("  !! EQUIVOCATING: \(r.equivocation!.prefix(while: { $0 != "\n" }))") }
                if let e = r.lastError { print("  last error: \(e)") }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a peer (and what was seen of its ledger).")
        @OptionGroup var home: HomeOptions
        @Argument(help: "The peer's node name.") var name: String

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            guard try PeerRegistry(archive: archive).remove(name) else { throw fail("no peer named \(name)") }
            print("Removed peer \(name)")
        }
    }

    struct Share: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set what a peer may see of patients who enrolled no key: none or all.")
        @OptionGroup var home: HomeOptions
        @Argument(help: "The peer's node name.") var name: String
        @Argument(help: "none or all.") var share: SharePolicy

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            do { try PeerRegistry(archive: archive).setShare(name, share) } catch let e as ExchangeError { throw fail(e.description) }
            print("Peer \(name) now sees \(share.rawValue)")
        }
    }
}

extension SharePolicy: ExpressibleByArgument {}

struct ManifestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest",
        abstract: "Publish a study's XDS-I.b imaging manifest now, and show its document entry.",
        discussion: """
            `serve` publishes a manifest by itself once a study had no new instance for \
            studyCompleteSeconds. This forces it. A study whose instances did not change since its \
            current manifest keeps that manifest.
            """)

    @OptionGroup var home: HomeOptions
    @Option(help: "The Study Instance UID.") var study: String
    @Flag(help: "Print the document entry as JSON.") var json = false
    @Flag(help: "Print the document entry as an ebRIM ExtrinsicObject (XML).") var ebrim = false

    func run() throws {
        let home = home.resolved
        let config = try Setup.configuration(home: home) { _ in }
        DcmtkDictionary.initialize()
        let archive = try Setup.openArchive(home: home)
        defer { archive.close() }
        var logger = Logger(label: "dicom-bridge")
        logger.logLevel = .warning
        let settings = config.exchangeSettings
        let publisher = ManifestPublisher(archive: archive, settings: settings, logger: logger)
        let published: PublishedManifest?
        do { published = try publisher.publish(study: study) } catch let e as ExchangeError { throw fail(e.description) }
        guard let manifest = try published ?? publisher.current(study: study) else { throw fail("study \(study) has no manifest") }
        let entry = try DocumentEntries(archive: archive, settings: settings).entry(manifest)
        if ebrim { print(EbRIM.adhocQueryResponse([entry])); return }
        if json {
            FileHandle.standardOutput.write(try DocumentEntry.jsonEncoder.encode(entry))
            print()
            return
        }
        print(published == nil ? "Unchanged: the current manifest still describes the study" : "Published a new manifest")
        print("  manifest (KOS) SOP Instance UID: \(manifest.sopInstanceUID)")
        print("  instances: \(manifest.instanceCount), Merkle root \(manifest.instancesRoot)")
        print("  ledger entry: \(manifest.ledgerIndex)" + (manifest.replaces.map { ", replaces \($0)" } ?? ""))
        print("  SHA-256 \(manifest.sha256), \(manifest.size) bytes")
    }
}

struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch studies from a peer bridge, verify every byte against its ledger, store them here.",
        discussion: """
            Checks the peer's signed checkpoint (consistent with all seen before), the manifest's \
            ledger entry (inclusion proof), the manifest's and every instance's SHA-256. Any mismatch \
            rejects the study and stores nothing of it. An interrupted fetch resumes from what it had \
            verified. Exits 0 only when every study was verified and stored.
            """)

    @OptionGroup var home: HomeOptions
    @Option(help: "The peer's node name.") var peer: String
    @Option(help: "The Study Instance UID to fetch.") var study: String?
    @Option(help: "Fetch every study of this Patient ID that the peer shares.") var patient: String?
    @Option(help: "Issuer of Patient ID, with --patient.") var issuer: String?
    @Option(help: "After storing, send the study by C-STORE to this known AE (see `ae add`).") var forward: String?
    @Option(help: "Instances downloaded at once.") var concurrency: Int = 8
    @Option(name: .customLong("break-glass"), help: ArgumentHelp("Emergency access, with its reason: honoured only where the source enables it; flagged and audited there.", valueName: "reason"))
    var breakGlass: String?
    @Flag(help: "Print a JSON report.") var json = false

    func validate() throws {
        guard (study == nil) != (patient == nil) else { throw ValidationError("give exactly one of --study and --patient") }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be 1-64") }
    }

    struct Failure: Codable { var error: String; var peer: String; var study: String? }

    func run() async throws {
        let home = home.resolved
        let config = try Setup.configuration(home: home) { _ in }
        var logger = BridgeLogging.logger(level: json ? "error" : "warning")
        logger.logLevel = json ? .error : .warning
        guard let cert = config.tlsCert, let key = config.tlsKey else {
            throw fail("this node has no TLS identity: set tlsCert and tlsKey (serve --tls-cert --tls-key, or config.json)")
        }
        DcmtkDictionary.initialize()
        let archive = try Setup.openArchive(home: home)
        defer { archive.close() }
        let fetcher = Fetcher(archive: archive, home: home.url, identity: TLSIdentity(certificatePath: cert, keyPath: key), logger: logger)
        let bar = ByteProgress(label: "fetch", quiet: json)
        fetcher.progress = { done, total in bar.update(done, total) }
        var request = FetchRequest(peer: peer, studyInstanceUID: study, patientID: patient, issuerOfPatientID: issuer)
        request.concurrency = concurrency
        request.breakGlassReason = breakGlass
        let report: FetchReport
        do {
            report = try await fetcher.fetch(request)
            bar.finish()
        } catch {
            bar.finish()
            if json { try printJSON(Failure(error: "\(error)", peer: peer, study: study)) }
            throw fail("\(error)")
        }
        if let forward {
            try forwardStudies(report, to: forward, archive: archive, config: config)
        }
        if json { return try printJSON(report) }
        for s in report.studies {
            print("Fetched study \(s.studyInstanceUID) from \(report.peer): \(s.instances) instances verified against ledger entry \(s.manifestLedgerIndex)"
                  + (s.resumed > 0 ? " (\(s.resumed) kept from an earlier attempt)" : ""))
        }
        print(String(format: "%d instances, %.1f MB in %.1f s (%.1f MB/s), checkpoint size %llu", report.instances,
                     Double(report.bytes) / 1e6, report.seconds, report.megabytesPerSecond, report.checkpointSize))
    }

    func forwardStudies(_ report: FetchReport, to ae: String, archive: Archive, config: BridgeConfiguration) throws {
        guard let dest = try archive.applicationEntity(ae), let host = dest.host, let port = dest.port else {
            throw fail("--forward \(ae): not a known AE with host and port (see `dicom-bridge ae add`)")
        }
        let files = report.studies.flatMap(\.paths).map { archive.absolutePath($0) }
        let metas = try files.map { try FileMetaSummary.read(path: $0) }
        var address = PeerAddress(host: host, port: UInt16(port), calledAETitle: ae, callingAETitle: config.aeTitle)
        address.maxPDU = UInt32(config.maxPDU)
        let assoc = try Association(peer: address, contexts: Store.contexts(for: metas))
        var failed = 0
        for f in files {
            let reply = try assoc.store(path: f)
            if !reply.status.isSuccess && !reply.status.isWarning { failed += 1 }
        }
        assoc.release()
        if failed > 0 { throw fail("forwarding to \(ae): \(failed) of \(files.count) instances refused") }
        if !json { print("Forwarded \(files.count) instances to \(ae)") }
    }
}

/// A byte-count progress bar on standard error (a line every 10% when not a terminal).
final class ByteProgress: @unchecked Sendable {
    let label: String
    let quiet: Bool
    private let tty = isatty(STDERR_FILENO) == 1
    private var lastTenth = -1
    private let lock = NSLock()
    private let start = Date()

    init(label: String, quiet: Bool) {
        self.label = label
        self.quiet = quiet
    }

    func update(_ done: Int64, _ total: Int64) {
        guard !quiet else { return }
        lock.lock(); defer { lock.unlock() }
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let rate = Double(done) / 1e6 / max(Date().timeIntervalSince(start), 0.001)
        if tty {
            let filled = Int(30 * fraction)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
            FileHandle.standardError.write(Data(String(format: "\r%@ [%@] %.1f/%.1f MB %.1f MB/s", label, bar, Double(done) / 1e6, Double(total) / 1e6, rate).utf8))
        } else if Int(fraction * 10) != lastTenth {
            lastTenth = Int(fraction * 10)
            FileHandle.standardError.write(Data(String(format: "%@: %.1f/%.1f MB (%d%%)\n", label, Double(done) / 1e6, Double(total) / 1e6, Int(fraction * 100)).utf8))
        }
    }

    func finish() {
        if tty && !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
