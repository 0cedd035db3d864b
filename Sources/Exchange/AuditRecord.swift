import Foundation

/// One access decision as the audit trail keeps it: on the ledger as an "access" event (patient
/// by keyed hash only) and, with the patient's ID, in the site's own ATNA audit messages.
public struct AuditRecord: Sendable, Equatable, Codable {
    public enum Requester: Sendable, Equatable, Codable {
        /// A peer bridge, by node name.
        case node(String)
        /// A DICOM workstation, by calling AE title, with its network address.
        case ae(String, host: String)
    }

    public var time: Date
    public var requester: Requester
    /// This node's name (the audit source).
    public var auditSource: String
    public var studyInstanceUID: String
    /// The study's patient as the site knows it: for the site's own ATNA log only, never the ledger.
    public var patientID: String
    public var issuerOfPatientID: String
    /// What was asked: query, retrieve-document, retrieve-instances, c-find, c-move, c-get.
    public var action: String
    public var allowed: Bool
    public var reason: String
    public var grant: String?
    public var breakGlass: Bool
    /// A C-MOVE's destination AE title: the process that receives the instances.
    public var moveDestination: String?

    public init(time: Date, requester: Requester, auditSource: String, studyInstanceUID: String, patientID: String,
                issuerOfPatientID: String, action: String, allowed: Bool, reason: String, grant: String?, breakGlass: Bool,
                moveDestination: String? = nil) {
        self.moveDestination = moveDestination
        self.time = time
        self.requester = requester
        self.auditSource = auditSource
        self.studyInstanceUID = studyInstanceUID
        self.patientID = patientID
        self.issuerOfPatientID = issuerOfPatientID
        self.action = action
        self.allowed = allowed
        self.reason = reason
        self.grant = grant
        self.breakGlass = breakGlass
    }
}
