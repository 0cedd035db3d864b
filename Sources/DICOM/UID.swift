import Foundation

/// Well-known UIDs (PS3.6 annex A) and the bridge's own.
public enum UID {
    /// The bridge's Implementation Class UID (PS3.7 D.3.3.2), under the UUID-derived root 2.25 (PS3.5 B.2).
    public static let implementationClass = "2.25.137926803445763014236486185703133123299"
    /// The Implementation Version Name sent with it (at most 16 characters).
    public static let implementationVersionName = "DICOMBRIDGE_01"

    public static let verification = "1.2.840.10008.1.1"
    /// Key Object Selection Document Storage (the XDS-I.b imaging manifest).
    public static let keyObjectSelectionDocument = "1.2.840.10008.5.1.4.1.1.88.59"

    /// Is `uid` a syntactically valid UID (PS3.5 9.1): 1 to 64 characters, digits and dots,
    /// components without a leading zero.
    public static func isValid(_ uid: String) -> Bool {
        guard !uid.isEmpty, uid.utf8.count <= 64 else { return false }
        for component in uid.split(separator: ".", omittingEmptySubsequences: false) {
            guard !component.isEmpty, component.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
            if component.count > 1 && component.first == "0" { return false }
        }
        return true
    }
}

/// Transfer syntaxes (PS3.5 10 and annex A).
public enum TransferSyntax {
    public static let implicitVRLittleEndian = "1.2.840.10008.1.2"
    public static let explicitVRLittleEndian = "1.2.840.10008.1.2.1"
    public static let deflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
    public static let explicitVRBigEndian = "1.2.840.10008.1.2.2"
    public static let jpegBaseline = "1.2.840.10008.1.2.4.50"
    public static let jpegExtended = "1.2.840.10008.1.2.4.51"
    public static let jpegLossless = "1.2.840.10008.1.2.4.57"
    public static let jpegLosslessSV1 = "1.2.840.10008.1.2.4.70"
    public static let jpegLSLossless = "1.2.840.10008.1.2.4.80"
    public static let jpegLSNearLossless = "1.2.840.10008.1.2.4.81"
    public static let jpeg2000Lossless = "1.2.840.10008.1.2.4.90"
    public static let jpeg2000 = "1.2.840.10008.1.2.4.91"
    public static let rleLossless = "1.2.840.10008.1.2.5"

    /// The uncompressed syntaxes every SCP must understand, in our order of preference.
    public static let uncompressed = [explicitVRLittleEndian, implicitVRLittleEndian, explicitVRBigEndian]
}

extension UID {
    /// A new UID under 2.25 (ISO/IEC 9834-8: the decimal value of a random UUID), at most 44 characters.
    public static func generate() -> String {
        let u = UUID().uuid
        var digits = [u.0, u.1, u.2, u.3, u.4, u.5, u.6, u.7, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15]
        var decimal: [Character] = []
        // Repeated division of the 128-bit big-endian number by 10.
        while digits.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in digits.indices {
                let value = remainder * 256 + Int(digits[i])
                digits[i] = UInt8(value / 10)
                remainder = value % 10
            }
            decimal.append(Character(String(remainder)))
        }
        return "2.25." + (decimal.isEmpty ? "0" : String(decimal.reversed()))
    }
}
