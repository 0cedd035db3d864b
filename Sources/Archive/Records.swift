import Foundation

/// What the index keeps of one received instance: the attributes C-FIND answers on, already
/// decoded to UTF-8 from the dataset's Specific Character Set. The stored file is never touched.
public struct InstanceAttributes: Sendable, Equatable {
    public var specificCharacterSet = ""
    // Patient
    public var patientName = ""
    public var patientID = ""
    public var issuerOfPatientID = ""
    public var patientBirthDate = ""
    public var patientSex = ""
    // Study
    public var studyInstanceUID = ""
    public var studyDate = ""
    public var studyTime = ""
    public var accessionNumber = ""
    public var studyID = ""
    public var studyDescription = ""
    public var referringPhysicianName = ""
    // Series
    public var seriesInstanceUID = ""
    public var modality = ""
    public var seriesNumber = ""
    public var seriesDescription = ""
    public var bodyPartExamined = ""
    // Instance
    public var sopInstanceUID = ""
    public var sopClassUID = ""
    public var instanceNumber = ""

    public init() {}
}

/// An instance as the index holds it once it is durable.
public struct StoredInstance: Sendable, Equatable {
    public var attributes: InstanceAttributes
    public var sha256: String
    public var size: Int64
    public var transferSyntaxUID: String
    public var callingAETitle: String
    public var receivedAt: Date
    /// Path of the stored Part 10 file, relative to the home.
    public var path: String
    /// 1 for the first version of a SOP Instance UID, 2 for the next different bytes, and so on.
    public var version: Int
    /// How the instance came in: decides what the ledger records for it.
    public var origin: InstanceOrigin = .dicom
}

/// Where a stored instance came from.
public enum InstanceOrigin: Sendable, Equatable {
    /// Received by C-STORE (or C-GET) from a DICOM peer: `callingAETitle` names it.
    case dicom
    /// Made by this bridge (an imaging manifest it published).
    case local
    /// Fetched from a peer bridge and verified against the peer's ledger entry `manifestEntry`.
    case peer(name: String, manifestEntry: UInt64)
}

/// What happened to a C-STORE once it is durable.
public enum StoreOutcome: Sendable, Equatable {
    /// A SOP Instance UID seen for the first time.
    case stored(StoredInstance)
    /// The same bytes as a version already held: nothing new was written.
    case duplicate(StoredInstance)
    /// The SOP Instance UID was held with other bytes: both are kept, this one is served.
    case newVersion(StoredInstance, previousSHA256: String)

    public var instance: StoredInstance {
        switch self {
        case .stored(let i), .duplicate(let i), .newVersion(let i, _): i
        }
    }
}

/// Errors of the archive. A struct with a private kind, so that cases can be added.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case outOfSpace, io, database, invalid }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func errno(_ what: String, _ code: Int32 = Foundation.errno) -> ArchiveError {
        let text = String(cString: strerror(code))
        let kind: Kind = (code == ENOSPC || code == EDQUOT) ? .outOfSpace : .io
        return ArchiveError(kind, "\(what): \(text)")
    }
}
