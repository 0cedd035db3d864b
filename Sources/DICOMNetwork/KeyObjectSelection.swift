import CDcmtk
import Foundation

/// One instance an imaging manifest references.
public struct ManifestInstance: Sendable, Hashable {
    public var sopClassUID: String
    public var sopInstanceUID: String

    public init(sopClassUID: String, sopInstanceUID: String) {
        self.sopClassUID = sopClassUID
        self.sopInstanceUID = sopInstanceUID
    }
}

/// One series of the manifest's study and where its instances can be retrieved from.
public struct ManifestSeries: Sendable, Hashable {
    public var seriesInstanceUID: String
    /// Retrieve AE Title (0008,0054); empty: absent.
    public var retrieveAETitle: String
    /// Retrieve Location UID (0040,E011): for XDS-I.b, the Imaging Document Source's unique ID; empty: absent.
    public var retrieveLocationUID: String
    /// Retrieve URL (0008,1190), e.g. a WADO-RS series URL; empty: absent.
    public var retrieveURL: String
    /// At least one.
    public var instances: [ManifestInstance]

    public init(seriesInstanceUID: String, retrieveAETitle: String = "", retrieveLocationUID: String = "",
                retrieveURL: String = "", instances: [ManifestInstance]) {
        self.seriesInstanceUID = seriesInstanceUID
        self.retrieveAETitle = retrieveAETitle
        self.retrieveLocationUID = retrieveLocationUID
        self.retrieveURL = retrieveURL
        self.instances = instances
    }
}

/// What an IHE XDS-I.b Imaging Manifest (a Key Object Selection document, PS3.3 A.35.4) says:
/// its own identity, the patient and study it belongs to, and the instances it references.
/// Strings are UTF-8 (Specific Character Set "ISO_IR 192"); empty means "no value" (type 2
/// attributes are then written empty). Dates are DICOM DA (YYYYMMDD), times TM (HHMMSS).
public struct ImagingManifestRequest: Sendable {
    // The manifest itself.
    public var sopInstanceUID: String
    public var seriesInstanceUID: String
    public var seriesNumber: Int32 = 1
    public var instanceNumber: Int32 = 1
    public var contentDate: String
    public var contentTime: String
    public var manufacturer: String = "dicom-bridge"
    public var institutionName: String = ""
    // Patient.
    public var patientName: String = ""
    public var patientID: String = ""
    public var issuerOfPatientID: String = ""
    public var patientBirthDate: String = ""
    public var patientSex: String = ""
    // Study.
    public var studyInstanceUID: String
    public var studyDate: String = ""
    public var studyTime: String = ""
    public var referringPhysicianName: String = ""
    public var studyID: String = ""
    public var accessionNumber: String = ""
    public var studyDescription: String = ""
    /// What is referenced; at least one series with at least one instance.
    public var series: [ManifestSeries]

    public init(sopInstanceUID: String, seriesInstanceUID: String, contentDate: String, contentTime: String,
                studyInstanceUID: String, series: [ManifestSeries]) {
        self.sopInstanceUID = sopInstanceUID
        self.seriesInstanceUID = seriesInstanceUID
        self.contentDate = contentDate
        self.contentTime = contentTime
        self.studyInstanceUID = studyInstanceUID
        self.series = series
    }
}

/// Key Object Selection documents built by DCMTK's dcmsr.
public enum KeyObjectSelection {
    /// The SOP Class of a Key Object Selection Document.
    public static let sopClassUID = "1.2.840.10008.5.1.4.1.1.88.59"

    /// Encodes `request` as a Key Object Selection Document (TID 2010, title (113030, DCM,
    /// "Manifest")): the dataset in Explicit VR Little Endian, without preamble or File Meta
    /// group, for the caller to prefix with its own (`FileMetaInformation`, SOP Class
    /// `sopClassUID`, transfer syntax 1.2.840.10008.1.2.1). The same request gives the same bytes.
    /// Throws `DcmtkError` when DCMTK refuses a value or the request references nothing.
    public static func encodeManifest(_ request: ImagingManifestRequest) throws -> Data {
        let strings = CStrings()
        var series: [cdcm_kos_series] = []
        var instanceArrays: [UnsafeMutableBufferPointer<cdcm_kos_instance>] = []
        defer { instanceArrays.forEach { $0.deallocate() } }
        for s in request.series {
            let instances = UnsafeMutableBufferPointer<cdcm_kos_instance>.allocate(capacity: max(s.instances.count, 1))
            instanceArrays.append(instances)
            for (i, instance) in s.instances.enumerated() {
                instances[i] = cdcm_kos_instance(sop_class_uid: strings[instance.sopClassUID],
                                                 sop_instance_uid: strings[instance.sopInstanceUID])
            }
            series.append(cdcm_kos_series(
                series_instance_uid: strings[s.seriesInstanceUID], retrieve_ae_title: strings[s.retrieveAETitle],
                retrieve_location_uid: strings[s.retrieveLocationUID], retrieve_url: strings[s.retrieveURL],
                instances: UnsafePointer(instances.baseAddress), instance_count: s.instances.count))
        }

        final class Sink { var data = Data() }
        let sink = Sink()
        try series.withUnsafeBufferPointer { seriesBuffer in
            var r = cdcm_kos_request()
            r.sop_instance_uid = strings[request.sopInstanceUID]
            r.series_instance_uid = strings[request.seriesInstanceUID]
            r.series_number = request.seriesNumber
            r.instance_number = request.instanceNumber
            r.content_date = strings[request.contentDate]
            r.content_time = strings[request.contentTime]
            r.manufacturer = strings[request.manufacturer]
            r.institution_name = strings[request.institutionName]
            r.specific_character_set = strings["ISO_IR 192"]
            r.patient_name = strings[request.patientName]
            r.patient_id = strings[request.patientID]
            r.issuer_of_patient_id = strings[request.issuerOfPatientID]
            r.patient_birth_date = strings[request.patientBirthDate]
            r.patient_sex = strings[request.patientSex]
            r.study_instance_uid = strings[request.studyInstanceUID]
            r.study_date = strings[request.studyDate]
            r.study_time = strings[request.studyTime]
            r.referring_physician_name = strings[request.referringPhysicianName]
            r.study_id = strings[request.studyID]
            r.accession_number = strings[request.accessionNumber]
            r.study_description = strings[request.studyDescription]
            r.series = seriesBuffer.baseAddress
            r.series_count = seriesBuffer.count
            try withExtendedLifetime(sink) {
                try dcmtk { err in
                    cdcm_kos_encode_manifest(&r, { context, bytes, length in
                        let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
                        sink.data.append(bytes!.assumingMemoryBound(to: UInt8.self), count: length)
                    }, Unmanaged.passUnretained(sink).toOpaque(), err)
                }
            }
        }
        return withExtendedLifetime(strings) { sink.data }
    }
}

/// NUL-terminated copies of Swift strings that live as long as this object: for C structs of pointers.
private final class CStrings {
    private var pointers: [UnsafeMutablePointer<CChar>] = []

    subscript(_ value: String) -> UnsafePointer<CChar> {
        let p = strdup(value)!
        pointers.append(p)
        return UnsafePointer(p)
    }

    deinit { pointers.forEach { free($0) } }
}
