import Archive
import DICOM
import DICOMNetwork
import Foundation

/// Reads what the index needs from a received file (parsing stops before the pixel data).
public enum AttributeReader {
    public struct Unreadable: Error { public let reason: String }

    public static func read(path: String) throws -> (InstanceAttributes, charsetWarning: String?) {
        let ds: Dataset
        do {
            ds = try Dataset.load(path: path, untilPixelData: true)
        } catch {
            throw Unreadable(reason: "\(error)")
        }
        var warning: String?
        let charset = ds.string(.specificCharacterSet) ?? ""
        var decode: ((Tag) -> String?)?
        if !charset.isEmpty {
            do { try ds.convertToUTF8() } catch {
                if ISO2022JP.handles(charset) {
                    // Debian's DCMTK converts with glibc iconv and refuses ISO 2022 IR 87; its escape
                    // sequences (PS3.5 6.1.2.5.3: ESC $ B, ESC ( B, ESC ( J) are those of ISO-2022-JP.
                    decode = { tag in ds.rawString(tag).flatMap(ISO2022JP.decode) }
                } else {
                    warning = "cannot decode Specific Character Set '\(charset)': \(error); indexed as received"
                }
            }
        }
        func s(_ t: Tag) -> String { ((decode?(t) ?? ds.string(t)) ?? "").trimmingCharacters(in: .whitespaces) }
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

/// ISO 2022 IR 87 (Japanese kanji) text, decoded with iconv's ISO-2022-JP.
enum ISO2022JP {
    static func handles(_ charset: String) -> Bool {
        let terms = charset.split(separator: "\\", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        return terms.contains("ISO 2022 IR 87") && terms.allSatisfy { ["", "ISO 2022 IR 6", "ISO 2022 IR 87", "ISO_IR 6"].contains($0) }
    }

    static func decode(_ bytes: [UInt8]) -> String? {
        guard let cd = Optional(iconv_open("UTF-8", "ISO-2022-JP")), cd != iconv_t(bitPattern: -1) else { return nil }
        defer { iconv_close(cd) }
        var input = bytes.map { CChar(bitPattern: $0) }
        var output = [CChar](repeating: 0, count: bytes.count * 4 + 16)
        var inLeft = input.count
        var outLeft = output.count
        let ok = input.withUnsafeMutableBufferPointer { inBuf -> Bool in
            output.withUnsafeMutableBufferPointer { outBuf -> Bool in
                var inPtr: UnsafeMutablePointer<CChar>? = inBuf.baseAddress
                var outPtr: UnsafeMutablePointer<CChar>? = outBuf.baseAddress
                return iconv(cd, &inPtr, &inLeft, &outPtr, &outLeft) != -1
            }
        }
        guard ok else { return nil }
        return String(decoding: output.prefix(output.count - outLeft).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
