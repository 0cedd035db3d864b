import Foundation

/// The study a peer asks about, as the policy sees it.
public struct StudyAccessRequest: Sendable {
    public var peer: Peer
    public var studyInstanceUID: String
    public var patientID: String
    public var issuerOfPatientID: String
    /// What the peer does: "query", "retrieve-document", "retrieve-instances".
    public var action: String
    /// An emergency access's stated reason, when the requester invokes break-glass.
    public var breakGlassReason: String?
    public var time: Date = Date()

    public init(peer: Peer, studyInstanceUID: String, patientID: String, issuerOfPatientID: String, action: String,
                breakGlassReason: String? = nil, time: Date = Date()) {
        self.peer = peer
        self.studyInstanceUID = studyInstanceUID
        self.patientID = patientID
        self.issuerOfPatientID = issuerOfPatientID
        self.action = action
        self.breakGlassReason = breakGlassReason
        self.time = time
    }
}

public struct AccessDecision: Sendable, Equatable {
    public var allowed: Bool
    /// Why, in words for the audit trail and the logs (no patient data).
    public var reason: String
    /// The patient's grant the decision relied on, if any.
    public var grant: String?
    /// An emergency access, allowed only where configuration enables it.
    public var breakGlass: Bool = false

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

/// Who decides: for a patient who enrolled a key here, only that patient's valid grants (right
/// grantee, scope covering the study, unexpired, unrevoked at this moment) open their studies to
/// a peer; for a patient not enrolled, the site's policy for that peer (`--share`). Break-glass
/// opens a study only where configuration enables it, flagged and audited with its reason.
public struct ConsentPolicy: AccessPolicy {
    let consents: ConsentStore
    let breakGlassEnabled: Bool

    public init(consents: ConsentStore, breakGlassEnabled: Bool) {
        self.consents = consents
        self.breakGlassEnabled = breakGlassEnabled
    }

    public func decide(_ request: StudyAccessRequest) throws -> AccessDecision {
        let peer = request.peer
        if peer.equivocation != nil { return .deny("the peer showed an inconsistent ledger (equivocation)") }
        let d = try consents.decision(patientID: request.patientID, grantee: peer.name, study: request.studyInstanceUID, now: request.time)
        let refusal: String
        if d.enrolled {
            if let grant = d.grant { return .allow("patient's grant to \(peer.name)", grant: grant) }
            refusal = "no valid grant from the patient for \(peer.name) and this study" + (d.lapsed.map { " (\($0))" } ?? "")
        } else {
            if peer.share == .all { return .allow("site policy: share all with \(peer.name)") }
            refusal = "site policy: share none with \(peer.name)"
        }
        if let reason = request.breakGlassReason {
            guard breakGlassEnabled else { return .deny("break-glass requested but not enabled at this site; \(refusal)") }
            var decision = AccessDecision.allow("BREAK-GLASS: \(reason)")
            decision.breakGlass = true
            return decision
        }
        return .deny(refusal)
    }
}
