import Archive
import DICOM
import DICOMNetwork
import Foundation

/// Reads what the index needs from a received file (parsing stops before the pixel data).
enum AttributeReader {
    struct Unreadable: Error { let reason: String }

    static func read(path: String) throws -> (InstanceAttributes, charsetWarning: String?) {
        let ds: Dataset
        do {
            ds = try Dataset.load(path: path, untilPixelData: true)
        } catch {
            throw Unreadable(reason: "\(error)")
        }
        var warning: String?
        let charset = ds.string(.specificCharacterSet) ?? ""
        if !charset.isEmpty {
            do { try ds.convertToUTF8() } catch {
                warning = "cannot decode Specific Character Set '\(charset)': \(error); indexed as received"
            }
        }
        func s(_ t: Tag) -> String { (ds.string(t) ?? "").trimmingCharacters(in: .whitespaces) }
        var a = InstanceAttributes()
        a.specificCharacterSet = charset
        a.patientName = s(.patientName)
        a.patientID = s(.patientID)
        a.issuerOfPatientID = s(.issuerOfPatientID)
        a.patientBirthDate = s(.patientBirthDate)
        a.patientSex = s(.patientSex)
        a.studyInstanceUID = s(.studyInstanceUID)
        a.studyDate = s(.studyDate)
        a.studyTime = s(.studyTime)
        a.accessionNumber = s(.accessionNumber)
        a.studyID = s(.studyID)
        a.studyDescription = s(.studyDescription)
        a.referringPhysicianName = s(.referringPhysicianName)
        a.seriesInstanceUID = s(.seriesInstanceUID)
        a.modality = s(.modality)
        a.seriesNumber = s(.seriesNumber)
        a.seriesDescription = s(.seriesDescription)
        a.bodyPartExamined = s(.bodyPartExamined)
        a.sopInstanceUID = s(.sopInstanceUID)
        a.sopClassUID = s(.sopClassUID)
        a.instanceNumber = s(.instanceNumber)
        return (a, warning)
    }
}
