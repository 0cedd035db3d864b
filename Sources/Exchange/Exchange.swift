import Foundation

/// An error of the exchange, with a message for operators (never patient data above debug).
public struct ExchangeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What the exchange needs from the bridge's configuration.
public struct ExchangeSettings: Sendable {
    /// The node's name: its ledger origin and the common name of its certificate.
    public var nodeName: String
    /// The bridge's own AE title (Retrieve AE Title in manifests).
    public var aeTitle: String
    /// The node's OID: XDS repositoryUniqueId and the manifests' Retrieve Location UID.
    public var nodeOID: String
    /// The XDS affinity domain's assigning authority OID (patientId is written in its form).
    public var affinityDomainOID: String
    /// The peer API's base URL as peers reach it (https://host:port), for Retrieve URLs.
    public var publicURL: String
    /// Seconds without a new instance after which a study is complete and gets its manifest.
    public var studyCompleteSeconds: Double
    /// Seconds between two rounds of witnessing the peers' ledgers.
    public var witnessIntervalSeconds: Double
    /// XDS codes of the document entries.
    public var codes: DocumentEntryCodes
    /// Institution Name for manifests (empty: omitted).
    public var institutionName: String

    public init(nodeName: String, aeTitle: String, nodeOID: String, affinityDomainOID: String, publicURL: String,
                studyCompleteSeconds: Double, witnessIntervalSeconds: Double, codes: DocumentEntryCodes,
                institutionName: String = "") {
        self.nodeName = nodeName
        self.aeTitle = aeTitle
        self.nodeOID = nodeOID
        self.affinityDomainOID = affinityDomainOID
        self.publicURL = publicURL
        self.studyCompleteSeconds = studyCompleteSeconds
        self.witnessIntervalSeconds = witnessIntervalSeconds
        self.codes = codes
        self.institutionName = institutionName
    }
}

/// Runs blocking work (SQLite through GRDB's synchronous API, file reads) on a Dispatch thread and
/// awaits it, so that Swift's few cooperative threads never block: a blocked cooperative thread
/// can keep the task that would release a database reader from ever resuming.
public func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try body() }) }
    }
}
