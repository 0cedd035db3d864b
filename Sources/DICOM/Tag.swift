/// A DICOM data element tag, (group,element), PS3.5 7.1.
public struct Tag: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    public init(rawValue: UInt32) {
        self.init(UInt16(rawValue >> 16), UInt16(rawValue & 0xffff))
    }

    public var rawValue: UInt32 { UInt32(group) << 16 | UInt32(element) }

    public static func < (a: Tag, b: Tag) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        "(" + hex4(group) + "," + hex4(element) + ")"
    }
}

func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: 4 - s.count) + s
}

/// The attributes the bridge reads and writes, by their PS3.6 keywords.
extension Tag {
    public static let specificCharacterSet = Tag(0x0008, 0x0005)
    public static let sopClassUID = Tag(0x0008, 0x0016)
    public static let sopInstanceUID = Tag(0x0008, 0x0018)
    public static let studyDate = Tag(0x0008, 0x0020)
    public static let seriesDate = Tag(0x0008, 0x0021)
    public static let studyTime = Tag(0x0008, 0x0030)
    public static let accessionNumber = Tag(0x0008, 0x0050)
    public static let queryRetrieveLevel = Tag(0x0008, 0x0052)
    public static let retrieveAETitle = Tag(0x0008, 0x0054)
    public static let instanceAvailability = Tag(0x0008, 0x0056)
    public static let modality = Tag(0x0008, 0x0060)
    public static let modalitiesInStudy = Tag(0x0008, 0x0061)
    public static let referringPhysicianName = Tag(0x0008, 0x0090)
    public static let studyDescription = Tag(0x0008, 0x1030)
    public static let seriesDescription = Tag(0x0008, 0x103E)
    public static let patientName = Tag(0x0010, 0x0010)
    public static let patientID = Tag(0x0010, 0x0020)
    public static let issuerOfPatientID = Tag(0x0010, 0x0021)
    public static let patientBirthDate = Tag(0x0010, 0x0030)
    public static let patientSex = Tag(0x0010, 0x0040)
    public static let bodyPartExamined = Tag(0x0018, 0x0015)
    public static let studyInstanceUID = Tag(0x0020, 0x000D)
    public static let seriesInstanceUID = Tag(0x0020, 0x000E)
    public static let studyID = Tag(0x0020, 0x0010)
    public static let seriesNumber = Tag(0x0020, 0x0011)
    public static let instanceNumber = Tag(0x0020, 0x0013)
    public static let numberOfPatientRelatedStudies = Tag(0x0020, 0x1200)
    public static let numberOfPatientRelatedSeries = Tag(0x0020, 0x1202)
    public static let numberOfPatientRelatedInstances = Tag(0x0020, 0x1204)
    public static let numberOfStudyRelatedSeries = Tag(0x0020, 0x1206)
    public static let numberOfStudyRelatedInstances = Tag(0x0020, 0x1208)
    public static let numberOfSeriesRelatedInstances = Tag(0x0020, 0x1209)
    public static let pixelData = Tag(0x7FE0, 0x0010)
}
