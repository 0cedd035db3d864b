import Archive
import Foundation
import GRDB
import Ledger
import Logging

/// Anchors every stored instance in the ledger, in the archive's commit transaction, and signs a
/// checkpoint covering new entries every `checkpointIntervalSeconds`.
final class LedgerService: BackgroundService, @unchecked Sendable {
    let archive: Archive
    let signer: NoteSigner
    let origin: String
    let interval: Double
    let logger: Logger
    private let periodic = PeriodicThread()

    /// The ledger's tables live in the index database; register once per process, before any archive opens.
    static let registered: Void = Archive.registerMigrations { LedgerStore.registerMigrations(&$0) }

    init(home: Home, configuration: BridgeConfiguration, archive: Archive, logger: Logger) throws {
        self.archive = archive
        signer = try NodeKey.loadOrCreate(home: home, name: configuration.nodeName)
        guard signer.name == configuration.nodeName else {
            throw ConfigurationError("nodeName is '\(configuration.nodeName)' but the node key in \(home.nodeKeyFile.path) is for '\(signer.name)': the name is fixed when the home is made")
        }
        origin = configuration.nodeName
        interval = configuration.checkpointIntervalSeconds
        self.logger = logger
    }

    /// Appends an "instance anchored" entry for each new instance or version, in the commit's transaction.
    var commitHook: Archive.CommitHook { Self.anchoringHook }

    /// The hook every archive that stores instances runs (serve, and the CLI's fetch and manifest).
    static let anchoringHook: Archive.CommitHook = { db, outcomes in
        do {
            let entries = try outcomes.map { outcome -> Data in
                let i = outcome.instance
                let a = i.attributes
                if case let .peer(name, manifestEntry) = i.origin {
                    return try ReceivedFromPeer(
                        sopInstanceUID: a.sopInstanceUID, studyInstanceUID: a.studyInstanceUID,
                        seriesInstanceUID: a.seriesInstanceUID, sopClassUID: a.sopClassUID, sha256: i.sha256,
                        size: UInt64(i.size), transferSyntaxUID: i.transferSyntaxUID, peer: name,
                        peerManifestEntry: manifestEntry, receivedAt: i.receivedAt
                    ).encode()
                }
                return try InstanceAnchored(
                    sopInstanceUID: a.sopInstanceUID, studyInstanceUID: a.studyInstanceUID,
                    seriesInstanceUID: a.seriesInstanceUID, sopClassUID: a.sopClassUID, sha256: i.sha256,
                    size: UInt64(i.size), transferSyntaxUID: i.transferSyntaxUID, callingAETitle: i.callingAETitle,
                    receivedAt: i.receivedAt
                ).encode()
            }
            let indices = try LedgerStore.append(entries, in: db)
            for (outcome, index) in zip(outcomes, indices) {
                try db.execute(sql: "UPDATE instance SET ledger_index = ? WHERE sop_instance_uid = ? AND sha256 = ?",
                               arguments: [Int64(index), outcome.instance.attributes.sopInstanceUID, outcome.instance.sha256])
            }
        }
    }

    /// Signs a checkpoint if the log grew. Returns the new signed note, if any.
    @discardableResult
    func checkpoint() throws -> String? {
        try archive.database.write { db in
            try CheckpointSigner.signIfGrown(in: db, signer: signer, origin: origin, now: Date())
        }
    }

    func start() {
        do { try checkpoint() } catch { logger.critical("cannot sign a ledger checkpoint", metadata: ["error": "\(error)"]) }
        periodic.start(name: "ledger-checkpoints", interval: interval) { [self] in
            do {
                if let note = try checkpoint() {
                    let cp = try? Checkpoint.parse(String(note.prefix(while: { $0 != "\u{2014}" })).trimmingCharacters(in: .newlines) + "\n")
                    logger.debug("signed a ledger checkpoint", metadata: ["size": "\(cp?.size ?? 0)"])
                }
            } catch {
                logger.critical("cannot sign a ledger checkpoint", metadata: ["error": "\(error)"])
            }
        }
    }

    func stop() {
        guard periodic.stop() else { return }
        // A last checkpoint, so that a clean stop leaves every entry covered.
        do { try checkpoint() } catch { logger.error("cannot sign the final ledger checkpoint", metadata: ["error": "\(error)"]) }
    }
}
