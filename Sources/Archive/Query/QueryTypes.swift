import DICOM
import Foundation

// The public vocabulary of the C-FIND / C-MOVE / C-GET engine (PS3.4 annex C). The network side
// turns a request identifier into a `QueryRequest`, calls `Archive.find`, and turns each
// `QueryMatch` into a pending C-FIND response. See docs/query.md for the matching rules.

/// The Query/Retrieve Information Model of the SOP Class the request came on (PS3.4 C.6.1, C.6.2).
public enum QueryModel: Sendable, Hashable {
    case patientRoot
    case studyRoot

    /// The levels of the model, top down.
    public var levels: [QueryLevel] {
        switch self {
        case .patientRoot: [.patient, .study, .series, .image]
        case .studyRoot: [.study, .series, .image]
        }
    }
}

/// Query/Retrieve Level (0008,0052).
public enum QueryLevel: String, Sendable, Hashable, CaseIterable {
    case patient = "PATIENT"
    case study = "STUDY"
    case series = "SERIES"
    case image = "IMAGE"

    /// 0 for PATIENT down to 3 for IMAGE: the depth of the entity in the hierarchy.
    var rank: Int {
        switch self {
        case .patient: 0
        case .study: 1
        case .series: 2
        case .image: 3
        }
    }

    /// The Unique Key of the level (PS3.4 C.6.1.1 / C.6.2.1).
    public var uniqueKey: Tag {
        switch self {
        case .patient: .patientID
        case .study: .studyInstanceUID
        case .series: .seriesInstanceUID
        case .image: .sopInstanceUID
        }
    }

    /// Parses the value of (0008,0052) (a CS: surrounding spaces are not significant).
    /// Throws A900 when the value names no level.
    public init(dicomValue: String) throws {
        let trimmed = dicomValue.trimmingCharacters(in: QueryText.padding)
        guard let level = QueryLevel(rawValue: trimmed) else {
            throw QueryFailure(.identifierDoesNotMatchSOPClass,
                               "Invalid Query/Retrieve Level (0008,0052) \"\(trimmed)\"", offending: [.queryRetrieveLevel])
        }
        self = level
    }
}

/// One element of a request identifier. `value` is already decoded to UTF-8 from the request's
/// Specific Character Set; "" means universal matching (a return key).
public struct QueryKey: Sendable, Hashable {
    public var tag: Tag
    /// The VR as the request encoded it. Informational: the engine matches by its own dictionary.
    public var vr: String
    public var value: String

    public init(tag: Tag, vr: String = "", value: String = "") {
        self.tag = tag
        self.vr = vr
        self.value = value
    }
}

/// A C-FIND request: the information model (from the SOP Class), the level and the identifier.
public struct QueryRequest: Sendable {
    public var model: QueryModel
    public var level: QueryLevel
    /// Every element of the identifier. (0008,0052) and (0008,0005) may be included: they are
    /// not matched (the level is `level`; the answer is always UTF-8).
    public var keys: [QueryKey]
    /// Combined date-time matching of Study Date + Study Time (PS3.4 C.2.2.2.5.4). The standard
    /// applies it only when the SCU negotiated it in the Query/Retrieve extended negotiation
    /// sub-item (PS3.4 C.5.1.1.2, "Date-time matching"); otherwise date and time are matched
    /// independently. Set it from what was accepted on the association.
    public var combinedDateTimeMatching: Bool

    public init(model: QueryModel, level: QueryLevel, keys: [QueryKey], combinedDateTimeMatching: Bool = false) {
        self.model = model
        self.level = level
        self.keys = keys
        self.combinedDateTimeMatching = combinedDateTimeMatching
    }

    /// Builds a request from a whole identifier, reading the level from its (0008,0052).
    /// Throws A900 when (0008,0052) is missing or names no level.
    public init(model: QueryModel, identifier keys: [QueryKey], combinedDateTimeMatching: Bool = false) throws {
        guard let levelKey = keys.first(where: { $0.tag == .queryRetrieveLevel }) else {
            throw QueryFailure(.identifierDoesNotMatchSOPClass, "Missing Query/Retrieve Level (0008,0052)",
                               offending: [.queryRetrieveLevel])
        }
        self.init(model: model, level: try QueryLevel(dicomValue: levelKey.value), keys: keys,
                  combinedDateTimeMatching: combinedDateTimeMatching)
    }
}

/// Status codes of the Query/Retrieve Service Class this engine produces (PS3.4 C.4.1.1.4
/// table C.4-1 for C-FIND, C.4.2.1.5 / C.4.3.1.4 for C-MOVE / C-GET; same values as DCMTK's
/// STATUS_FIND_* constants in dimse.h).
public enum QueryStatus {
    /// Pending: matches are continuing.
    public static let pending = DIMSEStatus(0xFF00)
    /// Pending: matches are continuing, one or more Optional Keys were not supported for matching.
    public static let pendingUnsupportedOptionalKeys = DIMSEStatus(0xFF01)
    /// Failure: Identifier does not match SOP Class (level missing or invalid, unique keys of
    /// the levels above missing or not single valued).
    public static let identifierDoesNotMatchSOPClass = DIMSEStatus(0xA900)
    /// Failure: Unable to process: a key value the engine cannot parse (bad date or time range).
    public static let unableToProcess = DIMSEStatus(0xC000)
    /// Failure: Unable to process: the index could not be read.
    public static let databaseFailure = DIMSEStatus(0xC001)
    /// Refused: Out of Resources. What the SCP answers when `QueryCursor.limitReached`.
    public static let outOfResources = DIMSEStatus(0xA700)
}

/// Why a request could not be served: the status for the final response, the Error Comment
/// (0000,0902) and the Offending Element (0000,0901) values.
public struct QueryFailure: Error, Sendable, CustomStringConvertible {
    public var status: DIMSEStatus
    public var reason: String
    public var offendingElements: [Tag]

    public init(status: DIMSEStatus, reason: String, offendingElements: [Tag] = []) {
        self.status = status
        self.reason = reason
        self.offendingElements = offendingElements
    }

    enum Kind { case identifierDoesNotMatchSOPClass, unableToProcess, databaseFailure }

    init(_ kind: Kind, _ reason: String, offending: [Tag] = []) {
        let status: DIMSEStatus = switch kind {
        case .identifierDoesNotMatchSOPClass: QueryStatus.identifierDoesNotMatchSOPClass
        case .unableToProcess: QueryStatus.unableToProcess
        case .databaseFailure: QueryStatus.databaseFailure
        }
        self.init(status: status, reason: reason, offendingElements: offending)
    }

    public var description: String { "\(status): \(reason)" }
}

/// One C-FIND match: the response identifier, in ascending tag order. It holds every key of the
/// request (zero length when the engine does not hold the attribute at this level), the unique
/// keys of the level and of the levels above in the model, Query/Retrieve Level (0008,0052) and
/// Specific Character Set (0008,0005) "ISO_IR 192" (every value is UTF-8).
public struct QueryMatch: Sendable {
    public var values: [(tag: Tag, value: String)]

    public init(values: [(tag: Tag, value: String)]) { self.values = values }

    public subscript(tag: Tag) -> String? { values.first(where: { $0.tag == tag })?.value }
}

/// One current instance selected by a C-MOVE / C-GET identifier.
public struct RetrieveItem: Sendable, Hashable {
    /// Absolute path of the stored Part 10 file.
    public var path: String
    public var sopClassUID: String
    public var sopInstanceUID: String
    /// The transfer syntax the file is stored in.
    public var transferSyntaxUID: String
    public var studyInstanceUID: String
    public var seriesInstanceUID: String
    /// SHA-256 (hex) of the stored file, for verification before sending.
    public var sha256: String
    public var size: Int64

    public init(path: String, sopClassUID: String, sopInstanceUID: String, transferSyntaxUID: String,
                studyInstanceUID: String, seriesInstanceUID: String, sha256: String, size: Int64) {
        self.path = path
        self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID
        self.transferSyntaxUID = transferSyntaxUID
        self.studyInstanceUID = studyInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.sha256 = sha256
        self.size = size
    }
}
