import Crypto
import Foundation
import SwiftASN1
import X509

/// What `pki show` prints about a certificate.
public struct CertificateSummary: Codable, Sendable, Equatable {
    /// The subject as an RFC 4514 string, e.g. `CN=hospital-a,O=Consortium`.
    public var subject: String
    /// The subject's common name: for a node certificate, the node name.
    public var commonName: String?
    public var issuer: String
    /// The serial number in upper-case hex, as `openssl x509 -serial` prints it.
    public var serialNumber: String
    public var notBefore: Date
    public var notAfter: Date
    /// The SANs as `DNS:name` and `IP:address` (others as their X.509 description).
    public var subjectAlternativeNames: [String]
    public var dnsNames: [String]
    public var ipAddresses: [String]
    /// SHA-256 of the DER certificate, upper-case hex pairs joined by ':' (as `openssl x509
    /// -fingerprint -sha256` prints it).
    public var sha256Fingerprint: String
    /// e.g. `ECDSA P-256`.
    public var keyAlgorithm: String
    public var isCA: Bool
    public var pathLengthConstraint: Int?
    public var keyUsage: [String]
    /// e.g. `serverAuth`, `clientAuth`.
    public var extendedKeyUsage: [String]
    public var selfSigned: Bool
}

/// Reading what a certificate says.
public enum CertificateInfo {
    /// A summary of the first certificate in `certificatePEM`.
    public static func describe(certificatePEM: String) throws -> CertificateSummary {
        try describe(PEM.certificate(fromPEM: certificatePEM))
    }

    public static func describe(_ certificate: Certificate) throws -> CertificateSummary {
        let ext = certificate.extensions
        var sans: [String] = [], dns: [String] = [], ips: [String] = []
        for name in (try? ext.subjectAlternativeNames) ?? SubjectAlternativeNames() {
            switch name {
            case .dnsName(let d): dns.append(d); sans.append("DNS:\(d)")
            case .ipAddress(let octets):
                let ip = IPAddress.format(octets.bytes); ips.append(ip); sans.append("IP:\(ip)")
            case .rfc822Name(let e): sans.append("email:\(e)")
            case .uniformResourceIdentifier(let u): sans.append("URI:\(u)")
            default: sans.append("\(name)")
            }
        }
        var isCA = false
        var pathLength: Int?
        if case .isCertificateAuthority(let max)? = try? ext.basicConstraints { isCA = true; pathLength = max }
        let fingerprint = SHA256.hash(data: try PEM.der(of: certificate)).map { String(format: "%02X", $0) }
            .joined(separator: ":")
        return CertificateSummary(
            subject: certificate.subject.description,
            commonName: commonName(of: certificate),
            issuer: certificate.issuer.description,
            serialNumber: certificate.serialNumber.bytes.map { String(format: "%02X", $0) }.joined(),
            notBefore: certificate.notValidBefore,
            notAfter: certificate.notValidAfter,
            subjectAlternativeNames: sans, dnsNames: dns, ipAddresses: ips,
            sha256Fingerprint: fingerprint,
            keyAlgorithm: keyAlgorithm(certificate.publicKey),
            isCA: isCA, pathLengthConstraint: pathLength,
            keyUsage: ((try? ext.keyUsage) ?? nil).map(keyUsageNames) ?? [],
            extendedKeyUsage: ((try? ext.extendedKeyUsage) ?? nil).map { $0.map { "\($0)" } } ?? [],
            selfSigned: certificate.issuer == certificate.subject
                && certificate.publicKey.isValidSignature(certificate.signature, for: certificate))
    }

    /// The subject's (last) common name, or nil when it has none.
    public static func commonName(of certificate: Certificate) -> String? {
        certificate.subject.attributeStrings(.RDNAttributeType.commonName).last
    }

    /// The common name of the first certificate in `pem`: the node name, for a node certificate.
    public static func commonName(ofPEM pem: String) throws -> String? {
        commonName(of: try PEM.certificate(fromPEM: pem))
    }

    /// The common name of a DER certificate (as TLS libraries hand over a peer's certificate,
    /// e.g. NIOSSLCertificate.toDERBytes()).
    public static func commonName(ofDER der: [UInt8]) throws -> String? {
        do {
            return commonName(of: try Certificate(derEncoded: der))
        } catch {
            throw PKIError.unreadable(source: "the DER certificate", reason: "\(error)")
        }
    }

    static func keyAlgorithm(_ key: Certificate.PublicKey) -> String {
        if P256.Signing.PublicKey(key) != nil { return "ECDSA P-256" }
        if P384.Signing.PublicKey(key) != nil { return "ECDSA P-384" }
        if P521.Signing.PublicKey(key) != nil { return "ECDSA P-521" }
        if Curve25519.Signing.PublicKey(key) != nil { return "Ed25519" }
        let d = key.description  // "RSA2048.PublicKey"
        if d.hasPrefix("RSA") { return "RSA " + d.dropFirst(3).replacingOccurrences(of: ".PublicKey", with: "") + " bits" }
        return d
    }

    static func keyUsageNames(_ ku: KeyUsage) -> [String] {
        var out: [String] = []
        if ku.digitalSignature { out.append("digitalSignature") }
        if ku.nonRepudiation { out.append("nonRepudiation") }
        if ku.keyEncipherment { out.append("keyEncipherment") }
        if ku.dataEncipherment { out.append("dataEncipherment") }
        if ku.keyAgreement { out.append("keyAgreement") }
        if ku.keyCertSign { out.append("keyCertSign") }
        if ku.cRLSign { out.append("cRLSign") }
        if ku.encipherOnly { out.append("encipherOnly") }
        if ku.decipherOnly { out.append("decipherOnly") }
        return out
    }
}
