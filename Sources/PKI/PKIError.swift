import Foundation

/// What went wrong with a certificate, a key or their files. `description` is meant for people:
/// it names the file or value and says what was expected.
public enum PKIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text holds no PEM `CERTIFICATE` block (`source` names the file or says "the text").
    case noCertificate(source: String)
    /// A PEM block or its DER content could not be read.
    case unreadable(source: String, reason: String)
    /// The private key is not the one whose public key the certificate carries.
    case keyDoesNotMatchCertificate(certificate: String, key: String)
    /// The certificate given as the CA is not a CA (no basicConstraints CA:true).
    case notACertificateAuthority(subject: String)
    /// A node name that cannot be a certificate's common name and a file name.
    case invalidNodeName(String, reason: String)
    /// A host that is neither a DNS name nor an IPv4/IPv6 address.
    case invalidHost(String)
    /// A validity period that is not positive.
    case invalidValidity(days: Int)
    /// A file that is needed does not exist.
    case fileNotFound(String)
    /// A file would be overwritten (pass `overwrite: true`, `--force` on the command line).
    case fileExists(String)
    /// A file could not be written.
    case writeFailed(path: String, reason: String)
    /// The certificate does not chain to the CA, or it or the CA is not valid now.
    case untrusted(subject: String, reasons: [String])

    public var description: String {
        switch self {
        case .noCertificate(let source):
            return "no PEM certificate (-----BEGIN CERTIFICATE-----) in \(source)"
        case .unreadable(let source, let reason):
            return "cannot read \(source): \(reason)"
        case .keyDoesNotMatchCertificate(let certificate, let key):
            return "the private key \(key) does not match the certificate \(certificate) (its public key differs)"
        case .notACertificateAuthority(let subject):
            return "the certificate \(subject) is not a CA certificate (basicConstraints CA:TRUE missing)"
        case .invalidNodeName(let name, let reason):
            return "invalid node name '\(name)': \(reason)"
        case .invalidHost(let host):
            return "invalid host '\(host)': give a DNS name (letters, digits, '-', '.', optionally '*.' first) or an IPv4/IPv6 address"
        case .invalidValidity(let days):
            return "invalid validity of \(days) days: it must be at least 1 day"
        case .fileNotFound(let path):
            return "\(path) does not exist"
        case .fileExists(let path):
            return "\(path) already exists (use --force to overwrite it)"
        case .writeFailed(let path, let reason):
            return "cannot write \(path): \(reason)"
        case .untrusted(let subject, let reasons):
            return "\(subject) is not trusted: " + (reasons.isEmpty ? "no chain to the CA" : reasons.joined(separator: "; "))
        }
    }
}
