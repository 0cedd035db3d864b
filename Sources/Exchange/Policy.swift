import Foundation

/// The study a peer asks about, as the policy sees it.
public struct StudyAccessRequest: Sendable {
    public var peer: Peer
    public var studyInstanceUID: String
    public var patientID: String
    public var issuerOfPatientID: String
    /// What the peer does: "query", "retrieve-document", "retrieve-instances".
    public var action: String
}

public struct AccessDecision: Sendable, Equatable {
    public var allowed: Bool
    /// Why, in words for the audit trail and the logs (no patient data).
    public var reason: String
    /// The grant the decision relied on, if any (patients' grants arrive with the consent issue).
    public var grant: String?

    public static func allow(_ reason: String, grant: String? = nil) -> AccessDecision { AccessDecision(allowed: true, reason: reason, grant: grant) }
    public static func deny(_ reason: String) -> AccessDecision { AccessDecision(allowed: false, reason: reason, grant: nil) }
}

/// The one place that decides which peer may see which study. Every peer request goes through it,
/// at the time of the request.
public protocol AccessPolicy: Sendable {
    func decide(_ request: StudyAccessRequest) throws -> AccessDecision
}

/// What the site's configuration allows: a peer configured with `--share all` sees every study,
/// one with `--share none` (the default) sees none. A peer that equivocated sees nothing.
public struct ConfiguredSharingPolicy: AccessPolicy {
    public init() {}

    public func decide(_ request: StudyAccessRequest) throws -> AccessDecision {
        if request.peer.equivocation != nil { return .deny("the peer showed an inconsistent ledger (equivocation)") }
        switch request.peer.share {
        case .all: return .allow("site policy: share all with \(request.peer.name)")
        case .none: return .deny("site policy: share none with \(request.peer.name)")
        }
    }
}
