// Ledger events: what the log's entries say, in a canonical text encoding (docs/ledger.md).
//
//     dicom-bridge/event/v<version> <type>\n
//     <key> <value>\n          (the type's keys, each once, in the type's fixed order)
//
// Keys are [a-z0-9-]+. Values are non-empty printable ASCII (0x20 to 0x7E) without leading or
// trailing spaces. There is exactly one encoding of each event: `decode` rejects anything that
// `encode` would not have written byte for byte. Events never carry patient-identifying data.

import Foundation

public enum LedgerEventError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a canonical event encoding.
    case malformed(String)
    /// A well-formed event of a type or version this code does not know.
    case unknownType(type: String, version: Int)
    /// A field value outside its type's rules.
    case invalidField(key: String, value: String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(why): return "malformed ledger event: \(why)"
        case let .unknownType(type, version): return "unknown ledger event type \(type) version \(version)"
        case let .invalidField(key, value, reason): return "ledger event field \(key) \"\(value)\": \(reason)"
        }
    }
}

/// An event in its generic form: type, version and ordered key/value lines.
public struct EventRecord: Hashable, Sendable {
    public static let prefix = "dicom-bridge/event/v"

    public let type: String
    public let version: Int
    public let fields: [Field]

    public struct Field: Hashable, Sendable {
        public let key: String
        public let value: String
    }

    public init(type: String, version: Int, fields: [(String, String)]) throws {
        guard EventRecord.isKey(type) else { throw LedgerEventError.malformed("type \"\(type)\"") }
        guard version >= 1 else { throw LedgerEventError.malformed("version \(version)") }
        for (k, v) in fields {
            guard EventRecord.isKey(k) else { throw LedgerEventError.malformed("key \"\(k)\"") }
            guard EventRecord.isValue(v) else {
                throw LedgerEventError.invalidField(key: k, value: v, reason: "not printable ASCII without outer spaces")
            }
        }
        self.type = type
        self.version = version
        self.fields = fields.map { Field(key: $0.0, value: $0.1) }
    }

    public func encode() -> Data {
        var s = "\(EventRecord.prefix)\(version) \(type)\n"
        for f in fields { s += "\(f.key) \(f.value)\n" }
        return Data(s.utf8)
    }

    /// Parses the generic form; the result re-encodes to exactly `data`.
    public static func parse(_ data: some DataProtocol) throws -> EventRecord {
        let bytes = Array(data)
        guard bytes.last == 0x0A else { throw LedgerEventError.malformed("does not end in a newline") }
        let lines = bytes.dropLast().split(separator: 0x0A, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        let header = lines[0].split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard header.count == 2, header[0].hasPrefix(prefix), let version = Int(header[0].dropFirst(prefix.count)) else {
            throw LedgerEventError.malformed("header \"\(lines[0])\"")
        }
        var fields: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let space = line.firstIndex(of: " ") else { throw LedgerEventError.malformed("line \"\(line)\"") }
            fields.append((String(line[..<space]), String(line[line.index(after: space)...])))
        }
        let record = try EventRecord(type: header[1], version: version, fields: fields)
        guard record.encode() == Data(bytes) else { throw LedgerEventError.malformed("not in canonical form") }
        return record
    }

    /// The values of exactly `keys`, in that order, or an error naming the first difference.
    func values(_ keys: [String]) throws -> [String] {
        guard fields.map(\.key) == keys else {
            throw LedgerEventError.malformed("\(type) v\(version) wants keys \(keys.joined(separator: ", ")), has \(fields.map(\.key).joined(separator: ", "))")
        }
        return fields.map(\.value)
    }

    static func isKey(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }

    static func isValue(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { (0x20...0x7E).contains($0) } && s.utf8.first != 0x20 && s.utf8.last != 0x20
    }
}

/// A log entry's meaning. New kinds (manifest published, consent, access, peer receipt) become
/// new cases with their own type name and version.
public enum LedgerEvent: Hashable, Sendable {
    case instanceAnchored(InstanceAnchored)
    case manifestPublished(ManifestPublished)
    case receivedFromPeer(ReceivedFromPeer)
    case patientEnrolled(PatientEnrolled)
    case consentGranted(ConsentGranted)
    case consentRevoked(ConsentRevoked)
    case access(AccessRecorded)

    var record: EventRecord {
        switch self {
        case let .instanceAnchored(e): return e.record
        case let .manifestPublished(e): return e.record
        case let .receivedFromPeer(e): return e.record
        case let .patientEnrolled(e): return e.record
        case let .consentGranted(e): return e.record
        case let .consentRevoked(e): return e.record
        case let .access(e): return e.record
        }
    }

    public var type: String { record.type }
    public var version: Int { record.version }
    public func encode() -> Data { record.encode() }

    /// Decodes a canonical encoding; throws `unknownType` for a well-formed event of another type
    /// or version, and `malformed` / `invalidField` for anything not exactly canonical.
    public static func decode(_ data: some DataProtocol) throws -> LedgerEvent {
        let bytes = Data(data)
        let record = try EventRecord.parse(bytes)
        let event: LedgerEvent
        switch (record.type, record.version) {
        case (InstanceAnchored.type, InstanceAnchored.version): event = .instanceAnchored(try InstanceAnchored(record))
        case (ManifestPublished.type, ManifestPublished.version): event = .manifestPublished(try ManifestPublished(record))
        case (ReceivedFromPeer.type, ReceivedFromPeer.version): event = .receivedFromPeer(try ReceivedFromPeer(record))
        case (PatientEnrolled.type, PatientEnrolled.version): event = .patientEnrolled(try PatientEnrolled(record))
        case (ConsentGranted.type, ConsentGranted.version): event = .consentGranted(try ConsentGranted(record))
        case (ConsentRevoked.type, ConsentRevoked.version): event = .consentRevoked(try ConsentRevoked(record))
        case (AccessRecorded.type, AccessRecorded.version): event = .access(try AccessRecorded(record))
        default: throw LedgerEventError.unknownType(type: record.type, version: record.version)
        }
        // Values are canonical too: no "0524288", no upper-case hex.
        guard event.encode() == bytes else { throw LedgerEventError.malformed("not in canonical form") }
        return event
    }
}

/// "instance-anchored" v1: one DICOM instance was stored, bit for bit, with this SHA-256.
///
///     dicom-bridge/event/v1 instance-anchored
///     sop-instance-uid <UID>
///     study-instance-uid <UID>
///     series-instance-uid <UID>
///     sop-class-uid <UID>
///     sha256 <64 lowercase hex digits: SHA-256 of the stored file's bytes>
///     size <decimal byte count of the stored file, no leading zeroes>
///     transfer-syntax-uid <UID>
///     calling-ae-title <AE title, 1 to 16 characters, no backslash, outer spaces removed>
///     received <RFC 3339 UTC with milliseconds, YYYY-MM-DDTHH:MM:SS.mmmZ>
///
/// UIDs: 1 to 64 characters of digits and "." (DICOM PS3.5 section 9.1).
public struct InstanceAnchored: Hashable, Sendable {
    public static let type = "instance-anchored"
    public static let version = 1
    static let keys = [
        "sop-instance-uid", "study-instance-uid", "series-instance-uid", "sop-class-uid", "sha256", "size",
        "transfer-syntax-uid", "calling-ae-title", "received",
    ]

    public let sopInstanceUID: String
    public let studyInstanceUID: String
    public let seriesInstanceUID: String
    public let sopClassUID: String
    /// SHA-256 of the stored bytes, 64 lowercase hex digits.
    public let sha256: String
    /// Size of the stored bytes.
    public let size: UInt64
    public let transferSyntaxUID: String
    public let callingAETitle: String
    /// Time received, whole milliseconds since 1970-01-01T00:00:00Z.
    public let receivedMillis: Int64
    public var receivedAt: Date { Timestamp.date(millis: receivedMillis) }

    /// Validates every field. `sha256` may be given in either case (stored lowercase);
    /// `callingAETitle` loses leading and trailing spaces (not significant in DICOM);
    /// `receivedAt` is rounded to the nearest millisecond.
    public init(
        sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String, sopClassUID: String,
        sha256: String, size: UInt64, transferSyntaxUID: String, callingAETitle: String, receivedAt: Date
    ) throws {
        try self.init(
            sopInstanceUID: sopInstanceUID, studyInstanceUID: studyInstanceUID, seriesInstanceUID: seriesInstanceUID,
            sopClassUID: sopClassUID, sha256: sha256, size: size, transferSyntaxUID: transferSyntaxUID,
            callingAETitle: callingAETitle, receivedMillis: Timestamp.millis(receivedAt))
    }

    public init(
        sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String, sopClassUID: String,
        sha256: String, size: UInt64, transferSyntaxUID: String, callingAETitle: String, receivedMillis: Int64
    ) throws {
        self.sopInstanceUID = try EventField.uid("sop-instance-uid", sopInstanceUID)
        self.studyInstanceUID = try EventField.uid("study-instance-uid", studyInstanceUID)
        self.seriesInstanceUID = try EventField.uid("series-instance-uid", seriesInstanceUID)
        self.sopClassUID = try EventField.uid("sop-class-uid", sopClassUID)
        self.transferSyntaxUID = try EventField.uid("transfer-syntax-uid", transferSyntaxUID)
        self.sha256 = try EventField.sha256("sha256", sha256)
        let ae = String(callingAETitle.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
        guard (1...16).contains(ae.utf8.count), ae.utf8.allSatisfy({ (0x20...0x7E).contains($0) && $0 != 0x5C }) else {
            throw LedgerEventError.invalidField(key: "calling-ae-title", value: callingAETitle, reason: "not an AE title")
        }
        self.size = size
        self.callingAETitle = ae
        self.receivedMillis = try EventField.checkMillis("received", receivedMillis)
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(InstanceAnchored.keys)
        guard let size = UInt64(v[5]) else { throw LedgerEventError.invalidField(key: "size", value: v[5], reason: "not a byte count") }
        guard let ms = Timestamp.parseMillis(v[8]) else {
            throw LedgerEventError.invalidField(key: "received", value: v[8], reason: "not YYYY-MM-DDTHH:MM:SS.mmmZ")
        }
        try self.init(
            sopInstanceUID: v[0], studyInstanceUID: v[1], seriesInstanceUID: v[2], sopClassUID: v[3], sha256: v[4],
            size: size, transferSyntaxUID: v[6], callingAETitle: v[7], receivedMillis: ms)
    }

    var record: EventRecord {
        // Every value was validated in init, so this cannot fail.
        try! EventRecord(type: InstanceAnchored.type, version: InstanceAnchored.version, fields: Array(zip(InstanceAnchored.keys, [
            sopInstanceUID, studyInstanceUID, seriesInstanceUID, sopClassUID, sha256, String(size),
            transferSyntaxUID, callingAETitle, Timestamp.rfc3339(millis: receivedMillis),
        ])))
    }

    public func encode() -> Data { record.encode() }
}

/// Validation shared by the event types: each returns the canonical value or throws naming the key.
enum EventField {
    static func uid(_ key: String, _ v: String) throws -> String {
        guard (1...64).contains(v.utf8.count), v.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2E }) else {
            throw LedgerEventError.invalidField(key: key, value: v, reason: "not a UID (1 to 64 digits and dots)")
        }
        return v
    }

    static func sha256(_ key: String, _ v: String) throws -> String {
        let hash = v.lowercased()
        guard hash.utf8.count == 64, Hex.decode(hash) != nil else {
            throw LedgerEventError.invalidField(key: key, value: v, reason: "not 64 hex digits")
        }
        return hash
    }

    static func count(_ key: String, _ v: String) throws -> UInt64 {
        guard let n = UInt64(v), String(n) == v else { throw LedgerEventError.invalidField(key: key, value: v, reason: "not a count") }
        return n
    }

    static func time(_ key: String, _ v: String) throws -> Int64 {
        guard let ms = Timestamp.parseMillis(v) else {
            throw LedgerEventError.invalidField(key: key, value: v, reason: "not YYYY-MM-DDTHH:MM:SS.mmmZ")
        }
        return ms
    }

    static func millis(_ key: String, _ date: Date) throws -> Int64 {
        try checkMillis(key, Timestamp.millis(date))
    }

    /// Years 0000 to 9999, so that the time has the fixed RFC 3339 form.
    static func checkMillis(_ key: String, _ ms: Int64) throws -> Int64 {
        guard (-62_167_219_200_000...253_402_300_799_999).contains(ms) else {
            throw LedgerEventError.invalidField(key: key, value: String(ms), reason: "year outside 0000 to 9999")
        }
        return ms
    }

    /// A node name (the CN of its certificate, the name of its ledger key): 1 to 128 characters
    /// of letters, digits and `.-_:`.
    static func nodeName(_ key: String, _ v: String) throws -> String {
        guard (1...128).contains(v.utf8.count),
              v.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || [0x2E, 0x2D, 0x5F, 0x3A].contains($0) }) else {
            throw LedgerEventError.invalidField(key: key, value: v, reason: "not a node name (letters, digits, . - _ :)")
        }
        return v
    }
}

/// "manifest-published" v1: this node published an XDS-I.b imaging manifest (a DICOM Key Object
/// Selection document) for a study, and commits to the exact set of instances it references.
///
///     dicom-bridge/event/v1 manifest-published
///     study-instance-uid <UID>
///     manifest-sop-instance-uid <UID of the KOS>
///     manifest-sha256 <SHA-256 of the stored KOS Part 10 file>
///     manifest-size <bytes of that file>
///     instance-count <number of instances the manifest references>
///     instances-root <RFC 6962 Merkle tree hash over the instances' SHA-256 values: each leaf is
///                     the 32 raw bytes of one stored file's SHA-256, leaves in ascending byte order>
///     replaces <UID of the manifest this one replaces, or "none">
///     published <RFC 3339 UTC with milliseconds>
public struct ManifestPublished: Hashable, Sendable {
    public static let type = "manifest-published"
    public static let version = 1
    static let keys = ["study-instance-uid", "manifest-sop-instance-uid", "manifest-sha256", "manifest-size",
                       "instance-count", "instances-root", "replaces", "published"]

    public let studyInstanceUID: String
    public let manifestSOPInstanceUID: String
    public let manifestSHA256: String
    public let manifestSize: UInt64
    public let instanceCount: UInt64
    public let instancesRoot: String
    /// The replaced manifest's SOP Instance UID, nil for a study's first manifest.
    public let replaces: String?
    public let publishedMillis: Int64
    public var publishedAt: Date { Timestamp.date(millis: publishedMillis) }

    public init(studyInstanceUID: String, manifestSOPInstanceUID: String, manifestSHA256: String, manifestSize: UInt64,
                instanceCount: UInt64, instancesRoot: String, replaces: String?, publishedAt: Date) throws {
        try self.init(studyInstanceUID: studyInstanceUID, manifestSOPInstanceUID: manifestSOPInstanceUID,
                      manifestSHA256: manifestSHA256, manifestSize: manifestSize, instanceCount: instanceCount,
                      instancesRoot: instancesRoot, replaces: replaces,
                      publishedMillis: try EventField.millis("published", publishedAt))
    }

    init(studyInstanceUID: String, manifestSOPInstanceUID: String, manifestSHA256: String, manifestSize: UInt64,
         instanceCount: UInt64, instancesRoot: String, replaces: String?, publishedMillis: Int64) throws {
        self.studyInstanceUID = try EventField.uid("study-instance-uid", studyInstanceUID)
        self.manifestSOPInstanceUID = try EventField.uid("manifest-sop-instance-uid", manifestSOPInstanceUID)
        self.manifestSHA256 = try EventField.sha256("manifest-sha256", manifestSHA256)
        self.manifestSize = manifestSize
        self.instanceCount = instanceCount
        self.instancesRoot = try EventField.sha256("instances-root", instancesRoot)
        self.replaces = try replaces.map { try EventField.uid("replaces", $0) }
        self.publishedMillis = publishedMillis
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(Self.keys)
        try self.init(studyInstanceUID: v[0], manifestSOPInstanceUID: v[1], manifestSHA256: v[2],
                      manifestSize: try EventField.count("manifest-size", v[3]),
                      instanceCount: try EventField.count("instance-count", v[4]), instancesRoot: v[5],
                      replaces: v[6] == "none" ? nil : v[6], publishedMillis: try EventField.time("published", v[7]))
    }

    var record: EventRecord {
        try! EventRecord(type: Self.type, version: Self.version, fields: Array(zip(Self.keys, [
            studyInstanceUID, manifestSOPInstanceUID, manifestSHA256, String(manifestSize), String(instanceCount),
            instancesRoot, replaces ?? "none", Timestamp.rfc3339(millis: publishedMillis),
        ])))
    }

    public func encode() -> Data { record.encode() }

    /// The `instances-root` of a set of SHA-256 values (hex): leaves are the raw 32 bytes, sorted.
    public static func instancesRoot(sha256s: [String]) throws -> String {
        let leaves = try sha256s.map { h -> [UInt8] in
            guard let bytes = Hex.decode(h.lowercased()), bytes.count == 32 else {
                throw LedgerEventError.invalidField(key: "instances-root", value: h, reason: "not 64 hex digits")
            }
            return bytes
        }.sorted { $0.lexicographicallyPrecedes($1) }
        return MerkleTree.rootHash(leaves: leaves.map { Data($0) }).hex
    }
}

/// "received-from-peer" v1: an instance fetched from a peer bridge, verified against the peer's
/// ledger, was stored here bit for bit.
///
///     dicom-bridge/event/v1 received-from-peer
///     sop-instance-uid, study-instance-uid, series-instance-uid, sop-class-uid <UIDs>
///     sha256 <SHA-256 of the stored bytes>
///     size <bytes>
///     transfer-syntax-uid <UID>
///     peer <the peer's node name>
///     peer-manifest-entry <index of the peer's manifest-published entry this was verified against>
///     received <RFC 3339 UTC with milliseconds>
public struct ReceivedFromPeer: Hashable, Sendable {
    public static let type = "received-from-peer"
    public static let version = 1
    static let keys = ["sop-instance-uid", "study-instance-uid", "series-instance-uid", "sop-class-uid", "sha256",
                       "size", "transfer-syntax-uid", "peer", "peer-manifest-entry", "received"]

    public let sopInstanceUID: String
    public let studyInstanceUID: String
    public let seriesInstanceUID: String
    public let sopClassUID: String
    public let sha256: String
    public let size: UInt64
    public let transferSyntaxUID: String
    public let peer: String
    public let peerManifestEntry: UInt64
    public let receivedMillis: Int64

    public init(sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String, sopClassUID: String,
                sha256: String, size: UInt64, transferSyntaxUID: String, peer: String, peerManifestEntry: UInt64,
                receivedAt: Date) throws {
        try self.init(sopInstanceUID: sopInstanceUID, studyInstanceUID: studyInstanceUID, seriesInstanceUID: seriesInstanceUID,
                      sopClassUID: sopClassUID, sha256: sha256, size: size, transferSyntaxUID: transferSyntaxUID, peer: peer,
                      peerManifestEntry: peerManifestEntry, receivedMillis: try EventField.millis("received", receivedAt))
    }

    init(sopInstanceUID: String, studyInstanceUID: String, seriesInstanceUID: String, sopClassUID: String,
         sha256: String, size: UInt64, transferSyntaxUID: String, peer: String, peerManifestEntry: UInt64,
         receivedMillis: Int64) throws {
        self.sopInstanceUID = try EventField.uid("sop-instance-uid", sopInstanceUID)
        self.studyInstanceUID = try EventField.uid("study-instance-uid", studyInstanceUID)
        self.seriesInstanceUID = try EventField.uid("series-instance-uid", seriesInstanceUID)
        self.sopClassUID = try EventField.uid("sop-class-uid", sopClassUID)
        self.sha256 = try EventField.sha256("sha256", sha256)
        self.size = size
        self.transferSyntaxUID = try EventField.uid("transfer-syntax-uid", transferSyntaxUID)
        self.peer = try EventField.nodeName("peer", peer)
        self.peerManifestEntry = peerManifestEntry
        self.receivedMillis = receivedMillis
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(Self.keys)
        try self.init(sopInstanceUID: v[0], studyInstanceUID: v[1], seriesInstanceUID: v[2], sopClassUID: v[3],
                      sha256: v[4], size: try EventField.count("size", v[5]), transferSyntaxUID: v[6], peer: v[7],
                      peerManifestEntry: try EventField.count("peer-manifest-entry", v[8]),
                      receivedMillis: try EventField.time("received", v[9]))
    }

    var record: EventRecord {
        try! EventRecord(type: Self.type, version: Self.version, fields: Array(zip(Self.keys, [
            sopInstanceUID, studyInstanceUID, seriesInstanceUID, sopClassUID, sha256, String(size), transferSyntaxUID,
            peer, String(peerManifestEntry), Timestamp.rfc3339(millis: receivedMillis),
        ])))
    }

    public func encode() -> Data { record.encode() }
}

extension EventField {
    /// Free text for the ledger: printable ASCII, anything else replaced by "?", outer spaces
    /// removed, at most 200 characters, "-" when empty.
    public static func text(_ s: String) -> String {
        let ascii = String(s.unicodeScalars.map { (0x20...0x7E).contains($0.value) ? Character($0) : "?" }.prefix(200))
        let trimmed = ascii.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? "-" : trimmed
    }

    static func token(_ key: String, _ v: String) throws -> String {
        guard EventRecord.isValue(v), !v.contains(" ") else {
            throw LedgerEventError.invalidField(key: key, value: v, reason: "not a token (printable ASCII, no spaces)")
        }
        return v
    }
}

/// "patient-enrolled" v1: a patient's Ed25519 key was bound, at this site, to a patient it holds
/// images of. The patient is named only by a keyed hash of the Patient ID (HMAC with a secret of
/// the site), the key only by its SHA-256.
///
///     dicom-bridge/event/v1 patient-enrolled
///     patient <64 hex: HMAC-SHA256 of the patient's identity under the site's secret>
///     patient-key-sha256 <64 hex: SHA-256 of the raw 32-byte public key>
///     enrolled <RFC 3339 UTC with milliseconds>
public struct PatientEnrolled: Hashable, Sendable {
    public static let type = "patient-enrolled"
    public static let version = 1
    static let keys = ["patient", "patient-key-sha256", "enrolled"]
    public let patient: String
    public let patientKeySHA256: String
    public let enrolledMillis: Int64

    public init(patient: String, patientKeySHA256: String, enrolledAt: Date) throws {
        self.patient = try EventField.sha256("patient", patient)
        self.patientKeySHA256 = try EventField.sha256("patient-key-sha256", patientKeySHA256)
        enrolledMillis = try EventField.millis("enrolled", enrolledAt)
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(Self.keys)
        try self.init(patient: v[0], patientKeySHA256: v[1],
                      enrolledAt: Timestamp.date(millis: try EventField.time("enrolled", v[2])))
    }

    var record: EventRecord {
        try! EventRecord(type: Self.type, version: Self.version, fields: Array(zip(Self.keys, [
            patient, patientKeySHA256, Timestamp.rfc3339(millis: enrolledMillis)])))
    }

    public func encode() -> Data { record.encode() }
}

/// "consent-granted" v1: a grant signed by an enrolled patient's key was recorded here.
///
///     dicom-bridge/event/v1 consent-granted
///     grant <grant id>
///     patient <keyed hash, as in patient-enrolled>
///     grantee <node name>
///     scope <"all", or "study:" followed by a Study Instance UID>
///     purpose <HL7 PurposeOfUse code>
///     expires <RFC 3339 UTC with milliseconds>
///     document-sha256 <SHA-256 of the signed grant document as submitted>
///     recorded <RFC 3339 UTC with milliseconds>
public struct ConsentGranted: Hashable, Sendable {
    public static let type = "consent-granted"
    public static let version = 1
    static let keys = ["grant", "patient", "grantee", "scope", "purpose", "expires", "document-sha256", "recorded"]
    public let grant: String
    public let patient: String
    public let grantee: String
    public let scope: String
    public let purpose: String
    public let expiresMillis: Int64
    public let documentSHA256: String
    public let recordedMillis: Int64

    public init(grant: String, patient: String, grantee: String, scope: String, purpose: String, expires: Date,
                documentSHA256: String, recordedAt: Date) throws {
        self.grant = try EventField.token("grant", grant)
        self.patient = try EventField.sha256("patient", patient)
        self.grantee = try EventField.nodeName("grantee", grantee)
        guard scope == "all" || (scope.hasPrefix("study:") && (try? EventField.uid("scope", String(scope.dropFirst(6)))) != nil) else {
            throw LedgerEventError.invalidField(key: "scope", value: scope, reason: "not all or study:<UID>")
        }
        self.scope = scope
        self.purpose = try EventField.token("purpose", purpose)
        expiresMillis = try EventField.millis("expires", expires)
        self.documentSHA256 = try EventField.sha256("document-sha256", documentSHA256)
        recordedMillis = try EventField.millis("recorded", recordedAt)
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(Self.keys)
        try self.init(grant: v[0], patient: v[1], grantee: v[2], scope: v[3], purpose: v[4],
                      expires: Timestamp.date(millis: try EventField.time("expires", v[5])), documentSHA256: v[6],
                      recordedAt: Timestamp.date(millis: try EventField.time("recorded", v[7])))
    }

    var record: EventRecord {
        try! EventRecord(type: Self.type, version: Self.version, fields: Array(zip(Self.keys, [
            grant, patient, grantee, scope, purpose, Timestamp.rfc3339(millis: expiresMillis), documentSHA256,
            Timestamp.rfc3339(millis: recordedMillis)])))
    }

    public func encode() -> Data { record.encode() }
}

/// "consent-revoked" v1: a revocation signed by the patient's key ended a grant.
///
///     dicom-bridge/event/v1 consent-revoked
///     revocation <revocation id>
///     grant <the grant it ends>
///     patient <keyed hash>
///     document-sha256 <SHA-256 of the signed revocation document>
///     recorded <RFC 3339 UTC with milliseconds>
public struct ConsentRevoked: Hashable, Sendable {
    public static let type = "consent-revoked"
    public static let version = 1
    static let keys = ["revocation", "grant", "patient", "document-sha256", "recorded"]
    public let revocation: String
    public let grant: String
    public let patient: String
    public let documentSHA256: String
    public let recordedMillis: Int64

    public init(revocation: String, grant: String, patient: String, documentSHA256: String, recordedAt: Date) throws {
        self.revocation = try EventField.token("revocation", revocation)
        self.grant = try EventField.token("grant", grant)
        self.patient = try EventField.sha256("patient", patient)
        self.documentSHA256 = try EventField.sha256("document-sha256", documentSHA256)
        recordedMillis = try EventField.millis("recorded", recordedAt)
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(Self.keys)
        try self.init(revocation: v[0], grant: v[1], patient: v[2], documentSHA256: v[3],
                      recordedAt: Timestamp.date(millis: try EventField.time("recorded", v[4])))
    }

    var record: EventRecord {
        try! EventRecord(type: Self.type, version: Self.version, fields: Array(zip(Self.keys, [
            revocation, grant, patient, documentSHA256, Timestamp.rfc3339(millis: recordedMillis)])))
    }

    public func encode() -> Data { record.encode() }
}

/// "access" v1: a decision on a request for a study's images, allowed or denied: a peer bridge's
/// request, or a DICOM workstation's retrieval.
///
///     dicom-bridge/event/v1 access
///     requester <"node:" + node name, or "ae:" + calling AE title>
///     study-instance-uid <UID>
///     patient <keyed hash of the study's patient>
///     action <query, retrieve-document, retrieve-instances, c-move, c-get, ...>
///     outcome <allowed or denied>
///     reason <printable ASCII text>
///     grant <the grant relied on, or none>
///     break-glass <no, or yes>
///     time <RFC 3339 UTC with milliseconds>
public struct AccessRecorded: Hashable, Sendable {
    public static let type = "access"
    public static let version = 1
    static let keys = ["requester", "study-instance-uid", "patient", "action", "outcome", "reason", "grant", "break-glass", "time"]
    public let requester: String
    public let studyInstanceUID: String
    public let patient: String
    public let action: String
    public let allowed: Bool
    public let reason: String
    public let grant: String?
    public let breakGlass: Bool
    public let timeMillis: Int64

    public init(requester: String, studyInstanceUID: String, patient: String, action: String, allowed: Bool, reason: String,
                grant: String?, breakGlass: Bool, time: Date) throws {
        guard requester.hasPrefix("node:") || requester.hasPrefix("ae:"), EventRecord.isValue(requester) else {
            throw LedgerEventError.invalidField(key: "requester", value: requester, reason: "not node:<name> or ae:<AE title>")
        }
        self.requester = requester
        self.studyInstanceUID = try EventField.uid("study-instance-uid", studyInstanceUID)
        self.patient = try EventField.sha256("patient", patient)
        self.action = try EventField.token("action", action)
        self.allowed = allowed
        self.reason = EventField.text(reason)
        self.grant = try grant.map { try EventField.token("grant", $0) }
        self.breakGlass = breakGlass
        timeMillis = try EventField.millis("time", time)
    }

    init(_ record: EventRecord) throws {
        let v = try record.values(Self.keys)
        guard v[4] == "allowed" || v[4] == "denied" else { throw LedgerEventError.invalidField(key: "outcome", value: v[4], reason: "not allowed or denied") }
        guard v[7] == "yes" || v[7] == "no" else { throw LedgerEventError.invalidField(key: "break-glass", value: v[7], reason: "not yes or no") }
        try self.init(requester: v[0], studyInstanceUID: v[1], patient: v[2], action: v[3], allowed: v[4] == "allowed",
                      reason: v[5], grant: v[6] == "none" ? nil : v[6], breakGlass: v[7] == "yes",
                      time: Timestamp.date(millis: try EventField.time("time", v[8])))
    }

    var record: EventRecord {
        try! EventRecord(type: Self.type, version: Self.version, fields: Array(zip(Self.keys, [
            requester, studyInstanceUID, patient, action, allowed ? "allowed" : "denied", reason, grant ?? "none",
            breakGlass ? "yes" : "no", Timestamp.rfc3339(millis: timeMillis)])))
    }

    public func encode() -> Data { record.encode() }
}
