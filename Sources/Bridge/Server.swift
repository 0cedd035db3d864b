import Archive
import Exchange
import DICOM
import DICOMNetwork
import Foundation
import Ledger
import Logging

/// What `dicom-bridge serve` runs: the archive, the DICOM SCP, the ledger's checkpoint signer.
public final class BridgeServer: @unchecked Sendable {
    public let home: Home
    public let configuration: BridgeConfiguration
    let logger: Logger
    public let archive: Archive
    let auditor: AccessAuditor
    private var scp: SCP?
    private var federation: FederatedQuery?
    private var services: [any BackgroundService] = []

    public init(home: Home, configuration: BridgeConfiguration, logger: Logger) throws {
        var configuration = configuration
        if configuration.nodeOID.isEmpty {
            // A home made before manifests existed: give the node its OID once, for good.
            var saved = try home.loadConfiguration()
            saved.nodeOID = UID.generate()
            try home.saveConfiguration(saved)
            configuration.nodeOID = saved.nodeOID
        }
        self.home = home
        self.configuration = configuration
        self.logger = logger
        DcmtkDictionary.initialize(logLevel: configuration.logLevel == "trace" ? 1 : 4)
        LedgerService.registered
        ExchangeSchema.registered
        archive = try Archive(home: home.url, logger: logger)
        auditor = AccessAuditor(archive: archive, logger: logger, atna: BridgeServer.atnaSink(configuration, logger))
        let ledger = try LedgerService(home: home, configuration: configuration, archive: archive, logger: logger)
        if ProcessInfo.processInfo.environment["DICOM_BRIDGE_BENCHMARK_NO_ANCHORING"] == "1" {
            // Only for measuring what anchoring costs (Benchmarks/): never in production.
            logger.critical("BENCHMARK MODE: DICOM_BRIDGE_BENCHMARK_NO_ANCHORING=1, instances are NOT anchored in the ledger")
        } else {
            archive.setCommitHook(ledger.commitHook)
        }
        services.append(ledger)
        // HTTP never takes the descriptors DICOM and the store need (FileDescriptorBudget.swift).
        let peerAPI = configuration.tlsCert != nil && configuration.tlsKey != nil && configuration.peerPort > 0
        let httpServers = (configuration.httpPort > 0 ? 1 : 0) + (peerAPI ? 1 : 0)
        let budget = FileDescriptorBudget.establish(maxAssociations: configuration.maxAssociations)
        let httpLimits = budget.httpLimits(configuration, servers: httpServers)
        budget.log(logger, httpServers: httpServers, perServer: httpLimits.maxConnections, configured: configuration.httpMaxConnections)
        if configuration.httpPort > 0 {
            services.append(LedgerHTTPService(archive: archive, port: configuration.httpPort,
                                              verifierKey: ledger.signer.verifierKey, logger: logger, limits: httpLimits))
        }
        let settings = configuration.exchangeSettings
        services.append(ManifestService(publisher: ManifestPublisher(archive: archive, settings: settings, logger: logger),
                                        studyCompleteSeconds: configuration.studyCompleteSeconds, logger: logger))
        if let cert = configuration.tlsCert, let key = configuration.tlsKey, configuration.peerPort > 0 {
            let identity = TLSIdentity(certificatePath: cert, keyPath: key)
            let cn = try identity.commonName()
            if cn != configuration.nodeName {
                throw ConfigurationError("the TLS certificate \(cert) is for '\(cn)', but this node is '\(configuration.nodeName)' (nodeName): peers identify a node by both")
            }
            let server = PeerServer(archive: archive, settings: settings, identity: identity, port: configuration.peerPort,
                                    policy: ConsentPolicy(consents: ConsentStore(archive: archive), breakGlassEnabled: configuration.breakGlass),
                                    verifierKey: ledger.signer.verifierKey, auditor: auditor, logger: logger, limits: httpLimits)
            let witness = Witness(archive: archive, identity: identity,
                                  cosigner: try CosignatureSigner(privateKey: ledger.signer.privateKey),
                                  interval: configuration.witnessIntervalSeconds, logger: logger,
                                  trustedCAs: { [server] in server.trustedCAs })
            services.append(PeerServices(server: server, witness: witness, logger: logger))
        } else {
            logger.notice("no TLS identity configured (tlsCert, tlsKey): the peer API is not served")
        }
    }

    /// The site's ATNA audit log (file and/or syslog), if configured.
    static func atnaSink(_ configuration: BridgeConfiguration, _ logger: Logger) -> (@Sendable (AuditRecord) -> Void)? {
        guard configuration.audit.file != nil || configuration.audit.syslog else { return nil }
        let log = AuditLog(file: configuration.audit.file, syslog: configuration.audit.syslog, logger: logger)
        return { log.write($0) }
    }

    /// Binds the port and starts serving. Logs one line saying it listens once it accepts associations.
    public func start() throws {
        if configuration.acceptAny {
            logger.warning("""
                ACCEPT-ANY MODE: every calling AE title is admitted. Use this for first-time set-up only; \
                register your modalities with `dicom-bridge ae add` and turn it off.
                """)
        }
        var scpConfig = SCPConfiguration(aeTitle: configuration.aeTitle, port: UInt16(configuration.port))
        scpConfig.maxPDU = UInt32(configuration.maxPDU)
        scpConfig.maxAssociations = UInt32(configuration.maxAssociations)
        scpConfig.dimseTimeoutSeconds = Int32(configuration.dimseTimeoutSeconds)
        scpConfig.acseTimeoutSeconds = Int32(configuration.acseTimeoutSeconds)
        let service = ReceiveService(archive: archive, configuration: configuration, logger: logger)
        let scp: SCP
        do {
            var federation: FederatedQuery?
            var fetcher: Fetcher?
            if let cert = configuration.tlsCert, let key = configuration.tlsKey {
                let identity = TLSIdentity(certificatePath: cert, keyPath: key)
                federation = FederatedQuery(archive: archive, identity: identity, timeout: configuration.federationTimeoutSeconds, logger: logger)
                fetcher = Fetcher(archive: archive, home: home.url, identity: identity, logger: logger)
            }
            let qr = QueryRetrieveService(archive: archive, configuration: configuration, logger: logger, federation: federation,
                                          fetcher: fetcher, auditor: auditor)
            self.federation = federation
            scp = try SCP(configuration: scpConfig, delegate: service, queryRetrieve: qr)
        } catch {
            throw ConfigurationError("cannot listen on port \(configuration.port): \(error)")
        }
        for s in services { s.start() }
        scp.start()
        self.scp = scp
        logger.notice("listening for DICOM associations",
                      metadata: ["ae-title": "\(configuration.aeTitle)", "port": "\(configuration.port)",
                                 "home": "\(home.url.path)", "max-associations": "\(configuration.maxAssociations)"])
    }

    /// Stops accepting, lets associations in progress finish, stops the services, closes the archive.
    public func stop() {
        logger.notice("shutting down: finishing the associations in progress")
        scp?.stop()
        scp = nil
        federation?.shutdown()
        archive.close()  // after the last commit: the final checkpoint below then covers it
        for s in services.reversed() { s.stop() }
        logger.notice("stopped")
    }

    /// Serves until SIGTERM or SIGINT.
    public func runUntilSignalled() throws {
        try start()
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let done = DispatchSemaphore(value: 0)
        let queue = DispatchQueue(label: "signals")
        let sources = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler { done.signal() }
            s.resume()
            return s
        }
        done.wait()
        stop()
        sources.forEach { $0.cancel() }
    }
}

/// A part of `serve` that runs beside the SCP (the checkpoint signer, later the peer witness).
protocol BackgroundService: AnyObject {
    func start()
    func stop()
}
