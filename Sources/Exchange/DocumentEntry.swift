// The XDS DocumentEntry of a bridge's imaging manifest (IHE XDS-I.b KOS), as JSON for our peers
// and as ebRIM 3.0 for XDS tools.
//
// References (IHE ITI TF-3 Rev. 17, "Metadata used in Document Sharing profiles"):
//   4.2.3.1.7  data types (CX, CXi, DTM, SHA1, OID, Field)
//   4.2.3.2    DocumentEntry attributes (Table 4.2.3.2-1) and their ebRIM coding
//   4.2.5.2    objectType UUIDs; classification scheme UUIDs are given in each 4.2.3.2.x section
// and IHE RAD TF-3 4.68.4.1.2.3 (RAD-68, XDS-I.b manifest metadata: mimeType application/dicom,
// formatCode 1.2.840.10008.5.1.4.1.1.88.59 in coding scheme 1.2.840.10008.2.6.1).
// The UUIDs below were checked against the IHE text (IHE/publications, ITI/TF/Volume3/ch-4.2.html)
// and against IPF's Vocabulary.java (oehf/ipf, commons/ihe/xds).

import Crypto
import Foundation
import Ledger

// MARK: - Codes

/// A coded value as XDS carries it: code (ebRIM nodeRepresentation), coding scheme (the
/// `codingScheme` Slot, usually an OID) and display name (the Classification's Name).
public struct Code: Codable, Hashable, Sendable {
    public var code: String
    public var scheme: String
    public var display: String

    public init(code: String, scheme: String, display: String) {
        self.code = code
        self.scheme = scheme
        self.display = display
    }

    public init(_ code: String, _ scheme: String, _ display: String) {
        self.init(code: code, scheme: scheme, display: display)
    }
}

extension Code {
    /// Coding scheme OIDs used by the defaults.
    public enum Scheme {
        /// IHE XDS classCode value set ("IMAGES", "REPORTS", ...), as used by MHD, MADO and the
        /// European EEHRxF document categories.
        public static let iheClassCode = "1.3.6.1.4.1.19376.1.2.6.1"
        public static let loinc = "2.16.840.1.113883.6.1"
        public static let snomedCT = "2.16.840.1.113883.6.96"
        /// HL7 v3 Confidentiality (U, L, M, N, R, V).
        public static let hl7Confidentiality = "2.16.840.1.113883.5.25"
        /// DICOM UID Registry, the coding scheme of the XDS-I.b formatCode (RAD TF-3 4.68.4.1.2.3.2).
        public static let dicomUIDRegistry = "1.2.840.10008.2.6.1"
    }

    /// XDS-I.b formatCode of a KOS manifest: the Key Object Selection Document Storage SOP Class
    /// UID in the DICOM UID Registry scheme (RAD TF-3 4.68.4.1.2.3.2, assertion RAD68-022).
    public static let kosFormat = Code("1.2.840.10008.5.1.4.1.1.88.59", Scheme.dicomUIDRegistry,
                                       "Key Object Selection Document")
}

/// The affinity-domain codes of a DocumentEntry. Each deployment's affinity domain decides these;
/// the defaults are values that XDS-I / MHD imaging deployments commonly use.
public struct DocumentEntryCodes: Codable, Sendable, Equatable {
    public var classCode: Code
    public var typeCode: Code
    public var confidentialityCode: Code
    public var practiceSettingCode: Code
    public var healthcareFacilityTypeCode: Code

    /// - classCode `IMAGES` in the IHE XDS classCode system 1.3.6.1.4.1.19376.1.2.6.1: the value
    ///   IHE MADO and the EU imaging guides use for imaging manifests (REPORTS is for reports).
    /// - typeCode LOINC `18748-4` "Diagnostic imaging study": the type MADO gives a DICOM KOS
    ///   manifest's DocumentReference; a member of LOINC Imaging Document Codes
    ///   (value set 1.3.6.1.4.1.12009.10.2.5).
    /// - confidentialityCode `N` "normal" in HL7 v3 Confidentiality 2.16.840.1.113883.5.25, the
    ///   value ITI TF-3 4.2.3.2.5 uses in its example and recommends drawing from.
    /// - practiceSettingCode SNOMED CT `394914008` "Radiology" (qualifier, clinical specialty).
    /// - healthcareFacilityTypeCode SNOMED CT `722171005` "Diagnostic imaging department", the
    ///   facility type MADO implementations use for imaging manifests.
    public init(
        classCode: Code = Code("IMAGES", Code.Scheme.iheClassCode, "Images"),
        typeCode: Code = Code("18748-4", Code.Scheme.loinc, "Diagnostic imaging study"),
        confidentialityCode: Code = Code("N", Code.Scheme.hl7Confidentiality, "normal"),
        practiceSettingCode: Code = Code("394914008", Code.Scheme.snomedCT, "Radiology"),
        healthcareFacilityTypeCode: Code = Code("722171005", Code.Scheme.snomedCT, "Diagnostic imaging department")
    ) {
        self.classCode = classCode
        self.typeCode = typeCode
        self.confidentialityCode = confidentialityCode
        self.practiceSettingCode = practiceSettingCode
        self.healthcareFacilityTypeCode = healthcareFacilityTypeCode
    }

    public static let defaults = DocumentEntryCodes()
}

// MARK: - Vocabulary

/// XDS vocabulary constants (ITI TF-3 4.2.3.2.x and 4.2.5.2).
public enum XDSVocabulary {
    public static let stableDocumentEntry = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
    public static let onDemandDocumentEntry = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"

    public static let authorScheme = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    public static let classCodeScheme = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    public static let confidentialityCodeScheme = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    public static let eventCodeListScheme = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
    public static let formatCodeScheme = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    public static let healthcareFacilityTypeCodeScheme = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    public static let practiceSettingCodeScheme = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    public static let typeCodeScheme = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"

    public static let patientIdIdentificationScheme = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    public static let uniqueIdIdentificationScheme = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

    public static let referenceIdListSlot = "urn:ihe:iti:xds:2013:referenceIdList"
    public static let accessionReferenceType = "urn:ihe:iti:xds:2013:accession"
    public static let studyInstanceUIDReferenceType = "urn:ihe:iti:xds:2016:studyInstanceUID"

    public static let approved = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    public static let deprecated = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"

    public static let classificationObjectType = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
    public static let externalIdentifierObjectType = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"

    public static let rimNamespace = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    public static let queryNamespace = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
    public static let responseSuccess = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
}

// MARK: - DocumentEntry

public struct DocumentEntry: Codable, Sendable, Equatable {
    /// "urn:uuid:…", UUID version 5 (RFC 9562 §5.5, SHA-1 name-based) of `uniqueId` in the RFC 9562
    /// OID namespace 6ba7b812-9dad-11d1-80b4-00c04fd430c8; see `DocumentEntry.entryUUID(forUniqueId:)`.
    public var entryUUID: String
    /// The KOS SOP Instance UID.
    public var uniqueId: String
    /// CX in the affinity domain: "ID^^^&<affinity OID>&ISO".
    public var patientId: String
    /// CX as the source knows it.
    public var sourcePatientId: String
    public var mimeType: String
    public var formatCode: Code
    /// SHA-1 of the document bytes, lowercase hex (ITI TF-3 4.2.3.2.10; case-insensitive there).
    public var hash: String
    public var size: Int64
    public var repositoryUniqueId: String
    /// "urn:oid:…", when the node belongs to an XCA community.
    public var homeCommunityId: String?
    /// DTM, UTC, YYYYMMDDHHMMSS.
    public var creationTime: String
    /// DTM, from Study Date / Study Time; nil when the study date is unknown.
    public var serviceStartTime: String?
    public var classCode: Code
    public var typeCode: Code
    public var confidentialityCode: Code
    public var practiceSettingCode: Code
    public var healthcareFacilityTypeCode: Code
    public var title: String
    public var languageCode: String
    /// CXi values: accession number and Study Instance UID.
    public var referenceIdList: [String]
    public var availabilityStatus: String
    /// "PID-3|…", "PID-5|…", "PID-7|…", "PID-8|…"; present only when asked for (patient data).
    public var sourcePatientInfo: [String]?

    // dicom-bridge extensions (JSON only, not ebRIM)
    public var studyInstanceUID: String
    public var ledgerIndex: UInt64?
    public var sha256: String
    public var retrieveURL: String?

    public init(
        entryUUID: String, uniqueId: String, patientId: String, sourcePatientId: String,
        mimeType: String = "application/dicom", formatCode: Code = .kosFormat,
        hash: String, size: Int64, repositoryUniqueId: String, homeCommunityId: String? = nil,
        creationTime: String, serviceStartTime: String?,
        codes: DocumentEntryCodes = .defaults,
        title: String, languageCode: String = "en-US", referenceIdList: [String],
        availabilityStatus: String = XDSVocabulary.approved, sourcePatientInfo: [String]? = nil,
        studyInstanceUID: String, ledgerIndex: UInt64? = nil, sha256: String, retrieveURL: String? = nil
    ) {
        self.entryUUID = entryUUID
        self.uniqueId = uniqueId
        self.patientId = patientId
        self.sourcePatientId = sourcePatientId
        self.mimeType = mimeType
        self.formatCode = formatCode
        self.hash = hash
        self.size = size
        self.repositoryUniqueId = repositoryUniqueId
        self.homeCommunityId = homeCommunityId
        self.creationTime = creationTime
        self.serviceStartTime = serviceStartTime
        self.classCode = codes.classCode
        self.typeCode = codes.typeCode
        self.confidentialityCode = codes.confidentialityCode
        self.practiceSettingCode = codes.practiceSettingCode
        self.healthcareFacilityTypeCode = codes.healthcareFacilityTypeCode
        self.title = title
        self.languageCode = languageCode
        self.referenceIdList = referenceIdList
        self.availabilityStatus = availabilityStatus
        self.sourcePatientInfo = sourcePatientInfo
        self.studyInstanceUID = studyInstanceUID
        self.ledgerIndex = ledgerIndex
        self.sha256 = sha256
        self.retrieveURL = retrieveURL
    }

    public var codes: DocumentEntryCodes {
        DocumentEntryCodes(classCode: classCode, typeCode: typeCode, confidentialityCode: confidentialityCode,
                           practiceSettingCode: practiceSettingCode,
                           healthcareFacilityTypeCode: healthcareFacilityTypeCode)
    }

    /// Sorted keys, no escaped slashes: the same entry always encodes to the same bytes.
    /// A new encoder each time (JSONEncoder is not Sendable).
    public static var jsonEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static var jsonDecoder: JSONDecoder { JSONDecoder() }

    /// The RFC 9562 name-space ID for ISO OIDs (Appendix A / RFC 4122 Appendix C).
    public static let oidNamespace: [UInt8] = [
        0x6b, 0xa7, 0xb8, 0x12, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
    ]

    /// "urn:uuid:" + UUIDv5(OID namespace, uniqueId): the same KOS UID gives the same entryUUID on
    /// every node and after every restart; anyone can recompute it (e.g. Python
    /// `uuid.uuid5(uuid.NAMESPACE_OID, uid)`).
    public static func entryUUID(forUniqueId uniqueId: String) -> String {
        "urn:uuid:" + XDSIdentifiers.uuidV5(namespace: oidNamespace, name: uniqueId)
    }
}

// MARK: - Input

public enum AvailabilityStatus: String, Codable, Sendable {
    case approved = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    /// A manifest replaced by a newer one (RAD-68 replacement, ITI TF-3 4.2.2.2).
    case deprecated = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
}

/// Everything needed to build a DocumentEntry for one KOS manifest.
public struct DocumentEntryInput: Sendable {
    /// The document itself, or its digests and size when the bytes are not at hand.
    public enum Document: Sendable, Equatable {
        case bytes(Data)
        /// Hex digests (any case) and the size in bytes.
        case digests(sha1: String, sha256: String, size: Int64)
    }

    public var document: Document
    /// The KOS SOP Instance UID: the DocumentEntry's uniqueId.
    public var kosSOPInstanceUID: String
    public var studyInstanceUID: String
    /// Patient ID (0010,0020) as the source knows it.
    public var patientID: String
    /// Issuer of Patient ID (0010,0021): an OID, or a local namespace name.
    public var issuerOfPatientID: String?
    /// Universal Entity ID (0040,0032) of the Issuer of Patient ID Qualifiers Sequence, if ISO.
    public var issuerOfPatientIDUniversalEntityID: String?
    /// The affinity domain's patient identifier domain OID (XAD-PID assigning authority).
    public var affinityDomainOID: String
    /// The patient's ID in the affinity domain, when it differs from `patientID` (e.g. after a PIX
    /// query); nil means `patientID` is already the affinity-domain ID.
    public var affinityDomainPatientID: String?
    /// The node's OID: repositoryUniqueId, and the fallback assigning authority for a patient ID or
    /// accession number whose issuer is unknown.
    public var nodeOID: String
    /// OID or "urn:oid:…" of the node's XCA community, if any.
    public var homeCommunityID: String?
    public var codes: DocumentEntryCodes
    /// Study Date (0008,0020), DA.
    public var studyDate: String?
    /// Study Time (0008,0030), TM.
    public var studyTime: String?
    /// Timezone Offset From UTC (0008,0201), "+HHMM" / "-HHMM". Without it, Study Date/Time are
    /// taken as UTC already (DICOM gives no zone; the caller may know the site's).
    public var timezoneOffsetFromUTC: String?
    /// Study Description (0008,1030): the title.
    public var studyDescription: String?
    /// Accession Number (0008,0050).
    public var accessionNumber: String?
    /// OID of the accession number's issuer (Issuer of Accession Number Sequence); nodeOID otherwise.
    public var accessionNumberIssuerOID: String?
    /// When the manifest was created (creationTime).
    public var creationDate: Date
    public var status: AvailabilityStatus
    public var ledgerIndex: UInt64?
    public var retrieveURL: String?
    public var languageCode: String
    /// Include sourcePatientInfo (PID-3/5/7/8). Off by default: it is patient data.
    public var includeSourcePatientInfo: Bool
    /// Patient's Name (0010,0010), PN, for PID-5.
    public var patientName: String?
    /// Patient's Birth Date (0010,0030), DA, for PID-7.
    public var patientBirthDate: String?
    /// Patient's Sex (0010,0040), CS, for PID-8.
    public var patientSex: String?

    public init(
        document: Document, kosSOPInstanceUID: String, studyInstanceUID: String,
        patientID: String, issuerOfPatientID: String? = nil, issuerOfPatientIDUniversalEntityID: String? = nil,
        affinityDomainOID: String, affinityDomainPatientID: String? = nil,
        nodeOID: String, homeCommunityID: String? = nil, codes: DocumentEntryCodes = .defaults,
        studyDate: String? = nil, studyTime: String? = nil, timezoneOffsetFromUTC: String? = nil,
        studyDescription: String? = nil, accessionNumber: String? = nil, accessionNumberIssuerOID: String? = nil,
        creationDate: Date, status: AvailabilityStatus = .approved, ledgerIndex: UInt64? = nil,
        retrieveURL: String? = nil, languageCode: String = "en-US",
        includeSourcePatientInfo: Bool = false, patientName: String? = nil,
        patientBirthDate: String? = nil, patientSex: String? = nil
    ) {
        self.document = document
        self.kosSOPInstanceUID = kosSOPInstanceUID
        self.studyInstanceUID = studyInstanceUID
        self.patientID = patientID
        self.issuerOfPatientID = issuerOfPatientID
        self.issuerOfPatientIDUniversalEntityID = issuerOfPatientIDUniversalEntityID
        self.affinityDomainOID = affinityDomainOID
        self.affinityDomainPatientID = affinityDomainPatientID
        self.nodeOID = nodeOID
        self.homeCommunityID = homeCommunityID
        self.codes = codes
        self.studyDate = studyDate
        self.studyTime = studyTime
        self.timezoneOffsetFromUTC = timezoneOffsetFromUTC
        self.studyDescription = studyDescription
        self.accessionNumber = accessionNumber
        self.accessionNumberIssuerOID = accessionNumberIssuerOID
        self.creationDate = creationDate
        self.status = status
        self.ledgerIndex = ledgerIndex
        self.retrieveURL = retrieveURL
        self.languageCode = languageCode
        self.includeSourcePatientInfo = includeSourcePatientInfo
        self.patientName = patientName
        self.patientBirthDate = patientBirthDate
        self.patientSex = patientSex
    }
}

extension DocumentEntry {
    /// The title used when the study has no description.
    public static let defaultTitle = "Imaging manifest"

    public init(_ input: DocumentEntryInput) {
        let sha1: String
        let sha256: String
        let size: Int64
        switch input.document {
        case .bytes(let data):
            sha1 = XDSIdentifiers.hex(Insecure.SHA1.hash(data: data))
            sha256 = XDSIdentifiers.hex(SHA256.hash(data: data))
            size = Int64(data.count)
        case .digests(let s1, let s256, let n):
            sha1 = s1.lowercased()
            sha256 = s256.lowercased()
            size = n
        }

        let uid = input.kosSOPInstanceUID.dicomTrimmed
        let studyUID = input.studyInstanceUID.dicomTrimmed
        let localID = input.patientID.dicomTrimmed
        let affinityID = input.affinityDomainPatientID?.dicomTrimmed.nonEmpty ?? localID
        let sourcePatientId = XDSIdentifiers.sourcePatientCX(
            id: localID, issuer: input.issuerOfPatientID, universalEntityID: input.issuerOfPatientIDUniversalEntityID,
            fallbackOID: input.nodeOID)

        var references: [String] = []
        if let accession = input.accessionNumber?.dicomTrimmed.nonEmpty {
            let issuer = input.accessionNumberIssuerOID?.dicomTrimmed.nonEmpty ?? input.nodeOID
            references.append(XDSIdentifiers.cxi(id: accession, assigningAuthorityOID: issuer,
                                                 type: XDSVocabulary.accessionReferenceType))
        }
        if !studyUID.isEmpty {
            // ITI TF-3 Table 4.2.3.1.7-2: only CXi.1 and CXi.5 for a Study Instance UID.
            references.append("\(studyUID)^^^^\(XDSVocabulary.studyInstanceUIDReferenceType)")
        }

        var patientInfo: [String]? = nil
        if input.includeSourcePatientInfo {
            var lines = ["PID-3|" + sourcePatientId]
            if let name = input.patientName.flatMap(XDSIdentifiers.xpn) { lines.append("PID-5|" + name) }
            if let birth = input.patientBirthDate.flatMap(XDSIdentifiers.dicomDate) { lines.append("PID-7|" + birth) }
            if let sex = input.patientSex?.dicomTrimmed.uppercased(), ["M", "F", "O"].contains(sex) {
                lines.append("PID-8|" + sex)
            }
            patientInfo = lines
        }

        let home = input.homeCommunityID?.dicomTrimmed.nonEmpty.map { $0.hasPrefix("urn:oid:") ? $0 : "urn:oid:" + $0 }

        self.init(
            entryUUID: DocumentEntry.entryUUID(forUniqueId: uid),
            uniqueId: uid,
            patientId: XDSIdentifiers.cx(id: affinityID, assigningAuthorityOID: input.affinityDomainOID),
            sourcePatientId: sourcePatientId,
            hash: sha1, size: size,
            repositoryUniqueId: input.nodeOID,
            homeCommunityId: home,
            creationTime: XDSIdentifiers.dtm(input.creationDate),
            serviceStartTime: XDSIdentifiers.serviceTime(date: input.studyDate, time: input.studyTime,
                                                         offset: input.timezoneOffsetFromUTC),
            codes: input.codes,
            title: XDSIdentifiers.title(input.studyDescription),
            languageCode: input.languageCode,
            referenceIdList: references,
            availabilityStatus: input.status.rawValue,
            sourcePatientInfo: patientInfo,
            studyInstanceUID: studyUID,
            ledgerIndex: input.ledgerIndex,
            sha256: sha256,
            retrieveURL: input.retrieveURL)
    }
}

// MARK: - HL7 / XDS encodings

/// The value encodings of ITI TF-3 Table 4.2.3.1.7-2, and name-based UUIDs.
public enum XDSIdentifiers {
    /// Escapes the HL7 v2 delimiters (| ^ ~ \ &) inside a component, as ITI TF-3 4.2.3.1.7 requires.
    public static func hl7Escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for ch in s {
            switch ch {
            case "\\": out += "\\E\\"
            case "|": out += "\\F\\"
            case "^": out += "\\S\\"
            case "&": out += "\\T\\"
            case "~": out += "\\R\\"
            default: out.append(ch)
            }
        }
        return out
    }

    /// An ISO OID in dot notation, no leading zeros (ITI TF-3 Table 4.2.3.1.7-2, "OID").
    public static func isOID(_ s: String) -> Bool {
        let arcs = s.split(separator: ".", omittingEmptySubsequences: false)
        guard arcs.count >= 2 else { return false }
        for arc in arcs {
            guard !arc.isEmpty, arc.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
            if arc.count > 1 && arc.first == "0" { return false }
        }
        return true
    }

    /// CX "ID^^^&OID&ISO" (patientId form: only CX.1 and CX.4.2/CX.4.3).
    public static func cx(id: String, assigningAuthorityOID: String) -> String {
        "\(hl7Escape(id))^^^&\(assigningAuthorityOID)&ISO"
    }

    /// CXi "ID^^^&OID&ISO^type".
    public static func cxi(id: String, assigningAuthorityOID: String, type: String) -> String {
        "\(hl7Escape(id))^^^&\(assigningAuthorityOID)&ISO^\(type)"
    }

    /// The source's CX: its issuer as OID when there is one ("ID^^^&OID&ISO", with the local
    /// namespace in CX.4.1 when both are known), as namespace ID otherwise ("ID^^^ISSUER"), and the
    /// node's OID when the issuer is unknown.
    public static func sourcePatientCX(id: String, issuer: String?, universalEntityID: String?,
                                       fallbackOID: String) -> String {
        let issuer = issuer?.dicomTrimmed.nonEmpty
        let ueid = universalEntityID?.dicomTrimmed.nonEmpty.flatMap { isOID($0) ? $0 : nil }
        let authority: String
        switch (issuer, ueid) {
        case (let ns?, let oid?) where ns != oid && !isOID(ns): authority = "\(hl7Escape(ns))&\(oid)&ISO"
        case (_, let oid?): authority = "&\(oid)&ISO"
        case (let ns?, nil) where isOID(ns): authority = "&\(ns)&ISO"
        case (let ns?, nil): authority = hl7Escape(ns)
        case (nil, nil): authority = "&\(fallbackOID)&ISO"
        }
        return "\(hl7Escape(id))^^^\(authority)"
    }

    /// DTM, UTC, to the second: YYYYMMDDHHMMSS.
    public static func dtm(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ v: Int, _ width: Int) -> String {
            let digits = String(v)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return pad(c.year!, 4) + pad(c.month!, 2) + pad(c.day!, 2) + pad(c.hour!, 2) + pad(c.minute!, 2) + pad(c.second!, 2)
    }

    /// A DICOM DA ("YYYYMMDD", or ACR-NEMA "YYYY.MM.DD") as DTM "YYYYMMDD"; nil when malformed.
    public static func dicomDate(_ da: String) -> String? {
        let s = da.dicomTrimmed.replacingOccurrences(of: ".", with: "")
        guard s.count == 8, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let month = Int(s.dropFirst(4).prefix(2))!, day = Int(s.suffix(2))!
        guard (1...12).contains(month), (1...31).contains(day) else { return nil }
        return s
    }

    /// A DICOM TM ("HH", "HHMM", "HHMMSS[.F…]", or ACR-NEMA "HH:MM:SS") without fraction; nil when
    /// malformed.
    public static func dicomTime(_ tm: String) -> String? {
        var s = tm.dicomTrimmed.replacingOccurrences(of: ":", with: "")
        if let dot = s.firstIndex(of: ".") { s = String(s[..<dot]) }
        guard [2, 4, 6].contains(s.count), s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let hh = Int(s.prefix(2))!
        let mm = s.count >= 4 ? Int(s.dropFirst(2).prefix(2))! : 0
        let ss = s.count == 6 ? Int(s.suffix(2))! : 0
        guard hh < 24, mm < 60, ss < 61 else { return nil }
        return s
    }

    /// serviceStartTime from Study Date / Study Time: "YYYYMMDD[hh[mm[ss]]]", shifted to UTC when
    /// the Timezone Offset From UTC is given along with a time; nil without a valid date.
    public static func serviceTime(date: String?, time: String?, offset: String?) -> String? {
        guard let day = date.flatMap(dicomDate) else { return nil }
        guard let clock = time.flatMap(dicomTime) else { return day }
        let local = day + clock
        guard let offsetSeconds = offset.flatMap(timezoneOffsetSeconds), offsetSeconds != 0 else { return local }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: offsetSeconds)!
        let digits = Array(local)
        func num(_ from: Int, _ len: Int) -> Int { Int(String(digits[from..<(from + len)]))! }
        var c = DateComponents()
        c.year = num(0, 4); c.month = num(4, 2); c.day = num(6, 2); c.hour = num(8, 2)
        c.minute = clock.count >= 4 ? num(10, 2) : 0
        c.second = clock.count == 6 ? num(12, 2) : 0
        guard let instant = calendar.date(from: c) else { return local }
        return String(dtm(instant).prefix(local.count))
    }

    /// "+HHMM" / "-HHMM" → seconds east of UTC.
    static func timezoneOffsetSeconds(_ s: String) -> Int? {
        let t = s.dicomTrimmed
        guard t.count == 5, let sign = t.first, sign == "+" || sign == "-" else { return nil }
        let digits = t.dropFirst()
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let hh = Int(digits.prefix(2))!, mm = Int(digits.suffix(2))!
        guard hh <= 14, mm < 60 else { return nil }
        return (sign == "-" ? -1 : 1) * (hh * 3600 + mm * 60)
    }

    /// A DICOM PN (alphabetic group) as HL7 XPN: DICOM orders family^given^middle^prefix^suffix,
    /// XPN family^given^middle^suffix^prefix.
    public static func xpn(_ pn: String) -> String? {
        let alphabetic = pn.split(separator: "=", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var parts = alphabetic.split(separator: "^", omittingEmptySubsequences: false)
            .map { String($0).trimmingCharacters(in: .whitespaces) }
        while parts.count < 5 { parts.append("") }
        let xpn = [parts[0], parts[1], parts[2], parts[4], parts[3]].map(hl7Escape)
        var out = xpn.joined(separator: "^")
        while out.hasSuffix("^") { out.removeLast() }
        return out.isEmpty ? nil : out
    }

    /// The title: the study description, or `DocumentEntry.defaultTitle`; under 128 characters
    /// (ITI TF-3 4.2.3.2.24).
    static func title(_ description: String?) -> String {
        guard let d = description?.dicomTrimmed.nonEmpty else { return DocumentEntry.defaultTitle }
        return d.count < 128 ? d : String(d.prefix(127))
    }

    /// UUID version 5 (RFC 9562 §5.5): SHA-1 of namespace bytes + name (UTF-8), version and variant
    /// bits set. Lowercase, without "urn:uuid:".
    public static func uuidV5(namespace: [UInt8], name: String) -> String {
        var hasher = Insecure.SHA1()
        hasher.update(data: namespace)
        hasher.update(data: Array(name.utf8))
        var b = Array(hasher.finalize().prefix(16))
        b[6] = (b[6] & 0x0F) | 0x50
        b[8] = (b[8] & 0x3F) | 0x80
        let h = hex(b)
        let i = h.startIndex
        func part(_ from: Int, _ to: Int) -> Substring { h[h.index(i, offsetBy: from)..<h.index(i, offsetBy: to)] }
        return "\(part(0, 8))-\(part(8, 12))-\(part(12, 16))-\(part(16, 20))-\(part(20, 32))"
    }

    /// The 16 bytes of a textual UUID ("urn:uuid:" prefix allowed); nil when malformed.
    static func uuidBytes(_ s: String) -> [UInt8]? {
        var t = s.lowercased()
        if t.hasPrefix("urn:uuid:") { t.removeFirst(9) }
        let hexDigits = Array(t.replacingOccurrences(of: "-", with: "").utf8)
        guard hexDigits.count == 32 else { return nil }
        var out: [UInt8] = []
        for k in stride(from: 0, to: 32, by: 2) {
            guard let v = UInt8(String(decoding: hexDigits[k..<(k + 2)], as: UTF8.self), radix: 16) else { return nil }
            out.append(v)
        }
        return out
    }

    static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 { Hex.encode(bytes) }
}

// MARK: - ebRIM

/// ebRIM 3.0 renderings of DocumentEntries, as an ITI-18 Registry Stored Query response
/// (returnType LeafClass) carries them.
public enum EbRIM {
    /// One `rim:ExtrinsicObject`, with its own xmlns:rim declaration so it stands alone.
    public static func extrinsicObject(_ e: DocumentEntry) -> String {
        extrinsicObject(e, declareNamespace: true, indent: "")
    }

    /// `query:AdhocQueryResponse` (status Success) holding the entries in a `rim:RegistryObjectList`.
    public static func adhocQueryResponse(_ entries: [DocumentEntry]) -> String {
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<query:AdhocQueryResponse xmlns:query=\"\(XDSVocabulary.queryNamespace)\""
        x += " xmlns:rim=\"\(XDSVocabulary.rimNamespace)\" status=\"\(XDSVocabulary.responseSuccess)\">\n"
        x += "  <rim:RegistryObjectList>\n"
        for e in entries { x += extrinsicObject(e, declareNamespace: false, indent: "    ") }
        x += "  </rim:RegistryObjectList>\n"
        x += "</query:AdhocQueryResponse>\n"
        return x
    }

    /// XML-escapes text for element content and attribute values (both quote kinds, and tab/CR/LF
    /// as character references so attribute normalisation keeps them); characters XML 1.0 forbids
    /// become U+FFFD.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t": out += "&#9;"
            case "\n": out += "&#10;"
            case "\r": out += "&#13;"
            default:
                let v = scalar.value
                let allowed = (v >= 0x20 && v <= 0xD7FF) || (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF)
                out.unicodeScalars.append(allowed ? scalar : "\u{FFFD}")
            }
        }
        return out
    }

    static func extrinsicObject(_ e: DocumentEntry, declareNamespace: Bool, indent: String) -> String {
        let id = escape(e.entryUUID)
        var x = indent + "<rim:ExtrinsicObject"
        if declareNamespace { x += " xmlns:rim=\"\(XDSVocabulary.rimNamespace)\"" }
        x += " id=\"\(id)\" lid=\"\(id)\" objectType=\"\(XDSVocabulary.stableDocumentEntry)\""
        x += " status=\"\(escape(e.availabilityStatus))\" mimeType=\"\(escape(e.mimeType))\""
        if let home = e.homeCommunityId { x += " home=\"\(escape(home))\"" }
        x += ">\n"
        let i1 = indent + "  "

        // Slots first, then Name, Classifications, ExternalIdentifiers: the order of
        // RegistryObjectType in rim.xsd.
        var slots: [(String, [String])] = [
            ("creationTime", [e.creationTime]),
            ("hash", [e.hash]),
            ("languageCode", [e.languageCode]),
            ("repositoryUniqueId", [e.repositoryUniqueId]),
        ]
        if let start = e.serviceStartTime { slots.append(("serviceStartTime", [start])) }
        slots.append(("size", [String(e.size)]))
        slots.append(("sourcePatientId", [e.sourcePatientId]))
        if let info = e.sourcePatientInfo, !info.isEmpty { slots.append(("sourcePatientInfo", info)) }
        if !e.referenceIdList.isEmpty { slots.append((XDSVocabulary.referenceIdListSlot, e.referenceIdList)) }
        for (name, values) in slots { x += slot(name, values, indent: i1) }

        x += i1 + "<rim:Name><rim:LocalizedString value=\"\(escape(e.title))\"/></rim:Name>\n"

        let classifications: [(String, String, Code)] = [
            ("classCode", XDSVocabulary.classCodeScheme, e.classCode),
            ("confidentialityCode", XDSVocabulary.confidentialityCodeScheme, e.confidentialityCode),
            ("formatCode", XDSVocabulary.formatCodeScheme, e.formatCode),
            ("healthcareFacilityTypeCode", XDSVocabulary.healthcareFacilityTypeCodeScheme, e.healthcareFacilityTypeCode),
            ("practiceSettingCode", XDSVocabulary.practiceSettingCodeScheme, e.practiceSettingCode),
            ("typeCode", XDSVocabulary.typeCodeScheme, e.typeCode),
        ]
        for (role, scheme, code) in classifications {
            x += i1 + "<rim:Classification id=\"\(childID(e, role))\" classificationScheme=\"\(scheme)\""
            x += " classifiedObject=\"\(id)\" nodeRepresentation=\"\(escape(code.code))\""
            x += " objectType=\"\(XDSVocabulary.classificationObjectType)\">\n"
            x += slot("codingScheme", [code.scheme], indent: i1 + "  ")
            x += i1 + "  <rim:Name><rim:LocalizedString value=\"\(escape(code.display))\"/></rim:Name>\n"
            x += i1 + "</rim:Classification>\n"
        }

        let identifiers: [(String, String, String, String)] = [
            ("patientId", XDSVocabulary.patientIdIdentificationScheme, e.patientId, "XDSDocumentEntry.patientId"),
            ("uniqueId", XDSVocabulary.uniqueIdIdentificationScheme, e.uniqueId, "XDSDocumentEntry.uniqueId"),
        ]
        for (role, scheme, value, name) in identifiers {
            x += i1 + "<rim:ExternalIdentifier id=\"\(childID(e, role))\" identificationScheme=\"\(scheme)\""
            x += " registryObject=\"\(id)\" value=\"\(escape(value))\""
            x += " objectType=\"\(XDSVocabulary.externalIdentifierObjectType)\">\n"
            x += i1 + "  <rim:Name><rim:LocalizedString value=\"\(name)\"/></rim:Name>\n"
            x += i1 + "</rim:ExternalIdentifier>\n"
        }
        x += indent + "</rim:ExtrinsicObject>\n"
        return x
    }

    static func slot(_ name: String, _ values: [String], indent: String) -> String {
        var x = indent + "<rim:Slot name=\"\(escape(name))\"><rim:ValueList>"
        for v in values { x += "<rim:Value>\(escape(v))</rim:Value>" }
        return x + "</rim:ValueList></rim:Slot>\n"
    }

    /// Classification / ExternalIdentifier ids: UUIDv5 of the role name in the entry's own UUID as
    /// namespace, so a response is the same every time it is rendered.
    static func childID(_ e: DocumentEntry, _ role: String) -> String {
        let namespace = XDSIdentifiers.uuidBytes(e.entryUUID) ?? DocumentEntry.oidNamespace
        let name = XDSIdentifiers.uuidBytes(e.entryUUID) == nil ? e.entryUUID + "/" + role : role
        return "urn:uuid:" + XDSIdentifiers.uuidV5(namespace: namespace, name: name)
    }
}

// MARK: - Helpers

extension String {
    /// DICOM values are space-padded (and UI values NUL-padded) to even length.
    fileprivate var dicomTrimmed: String {
        trimmingCharacters(in: CharacterSet.whitespacesAndNewlines.union(CharacterSet(charactersIn: "\0")))
    }

    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
