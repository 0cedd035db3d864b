import Archive
import Exchange
import Foundation
import Ledger
import Logging

/// Publishes the manifest of each study once it is complete (no new instance for
/// `studyCompleteSeconds`), and a replacing one when a study changes later.
final class ManifestService: BackgroundService, @unchecked Sendable {
    let publisher: ManifestPublisher
    let logger: Logger
    let period: Double
    private let periodic = PeriodicThread()

    init(publisher: ManifestPublisher, studyCompleteSeconds: Double, logger: Logger) {
        self.publisher = publisher
        self.logger = logger
        period = max(0.5, min(5, studyCompleteSeconds / 4))
    }

    func start() {
        periodic.start(name: "manifests", interval: period) { [self] in
            do {
                for study in try publisher.studiesDue() {
                    do { try publisher.publish(study: study) } catch {
                        logger.error("cannot publish a study's manifest", metadata: ["study-instance-uid": "\(study)", "error": "\(error)"])
                    }
                }
            } catch {
                logger.error("cannot look for complete studies", metadata: ["error": "\(error)"])
            }
        }
    }

    func stop() { periodic.stop() }
}

/// The peer API over mutual TLS and the witness of the peers' ledgers.
final class PeerServices: BackgroundService, @unchecked Sendable {
    let server: PeerServer
    let witness: Witness
    let logger: Logger

    init(server: PeerServer, witness: Witness, logger: Logger) {
        self.server = server
        self.witness = witness
        self.logger = logger
    }

    func start() {
        do { try server.start() } catch {
            logger.critical("the peer API is not served", metadata: ["error": "\(error)"])
        }
        witness.start()
    }

    func stop() {
        witness.stop()
        server.stop()
    }
}
