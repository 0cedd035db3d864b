import Crypto
import Foundation

/// How a site names a patient where the Patient ID itself must not appear (ledgers, lists, logs).
public enum PatientIdentity {
    /// Lowercase hex HMAC-SHA256, keyed with the site's secret, of the UTF-8 bytes of
    /// `<issuer>` U+0000 `<patientId>` (an absent issuer is the empty string). Stable for one
    /// secret; unlinkable across sites with different secrets.
    public static func keyedHash(patientId: String, issuer: String?, siteSecret: Data) -> String {
        let message = Data((issuer ?? "").utf8) + Data([0]) + Data(patientId.utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: siteSecret))
        return mac.map { String(format: "%02x", $0) }.joined()
    }
}
