import Crypto
import Foundation
import SwiftASN1
import X509
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A certificate and its private key, both PEM (the key as PKCS#8, `-----BEGIN PRIVATE KEY-----`).
public struct CertificateAndKey: Sendable, Equatable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// The consortium CA: creates itself (a self-signed P-256 certificate) and issues node
/// certificates, used on both sides of the peer API's mutual TLS.
public struct CertificateAuthority: Sendable {
    public static let defaultCommonName = "dicom-bridge consortium CA"
    /// Ten years.
    public static let defaultCAValidity: TimeInterval = days(3650)
    /// Two years.
    public static let defaultNodeValidity: TimeInterval = days(730)
    /// The SANs of a node certificate when no host is given.
    public static let defaultHosts = ["localhost", "127.0.0.1"]
    /// notBefore is this far in the past, so that peers whose clocks run a little behind accept
    /// a certificate issued just now.
    public static let clockSkewAllowance: TimeInterval = 5 * 60
    /// The file names `pki init-ca` writes and `pki issue --ca DIR` reads.
    public static let certificateFileName = "ca.crt"
    public static let privateKeyFileName = "ca.key"

    /// `n` days in seconds.
    public static func days(_ n: Int) -> TimeInterval { TimeInterval(n) * 86_400 }

    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    /// A CA from its certificate and key: the key must match the certificate, and the certificate
    /// must be a CA (basicConstraints CA:TRUE).
    public init(certificate: Certificate, privateKey: Certificate.PrivateKey,
                certificateSource: String = "the CA certificate", keySource: String = "the CA key") throws {
        guard privateKey.publicKey == certificate.publicKey else {
            throw PKIError.keyDoesNotMatchCertificate(certificate: certificateSource, key: keySource)
        }
        guard case .isCertificateAuthority = try? certificate.extensions.basicConstraints else {
            throw PKIError.notACertificateAuthority(subject: "\(certificateSource) (\(certificate.subject))")
        }
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// A CA from PEM text (the first certificate of `certificatePEM` is the CA's).
    public init(certificatePEM: String, privateKeyPEM: String) throws {
        try self.init(certificate: PEM.certificate(fromPEM: certificatePEM, source: "the CA certificate"),
                      privateKey: PEM.privateKey(fromPEM: privateKeyPEM, source: "the CA key"))
    }

    /// A CA from `DIR/ca.crt` and `DIR/ca.key`, as `pki init-ca` writes them.
    public init(directory: String) throws {
        let certPath = (directory as NSString).appendingPathComponent(Self.certificateFileName)
        let keyPath = (directory as NSString).appendingPathComponent(Self.privateKeyFileName)
        try self.init(certificate: PEM.certificates(atPath: certPath)[0], privateKey: PEM.privateKey(atPath: keyPath),
                      certificateSource: certPath, keySource: keyPath)
    }

    /// A new self-signed CA: P-256 ECDSA key, basicConstraints CA:TRUE pathlen:0 (critical),
    /// keyUsage keyCertSign and cRLSign (critical), subjectKeyIdentifier.
    public static func create(commonName: String = defaultCommonName, organization: String? = nil,
                              validity: TimeInterval = defaultCAValidity, now: Date = Date()) throws -> CertificateAndKey {
        let name = commonName.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= 64 else {
            throw PKIError.invalidNodeName(commonName, reason: "a CA name must have 1 to 64 characters")
        }
        guard validity >= 86_400 else { throw PKIError.invalidValidity(days: Int(validity / 86_400)) }
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let publicKey = privateKey.publicKey
        let subject = try DistinguishedName {
            if let organization, !organization.isEmpty { OrganizationName(organization) }
            CommonName(name)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: publicKey)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: randomSerialNumber(), publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-clockSkewAllowance), notValidAfter: now.addingTimeInterval(validity),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: privateKey)
        return CertificateAndKey(certificatePEM: try PEM.pem(of: certificate), privateKeyPEM: key.pemRepresentation + "\n")
    }

    /// A node certificate and its new P-256 key, signed by this CA.
    ///
    /// Subject CN = `name` (how peers identify each other; O copied from the CA when it has one);
    /// SAN = every host, as an iPAddress when it is an IPv4/IPv6 literal, else as a dNSName;
    /// extendedKeyUsage serverAuth and clientAuth; keyUsage digitalSignature (critical);
    /// basicConstraints CA:FALSE; authority and subject key identifiers; a random positive
    /// 20-byte serial. notBefore is ``clockSkewAllowance`` in the past; notAfter is `validity`
    /// from now, but never after the CA's own notAfter. An empty `hosts` gives no SAN extension.
    public func issue(name: String, hosts: [String] = defaultHosts, validity: TimeInterval = defaultNodeValidity,
                      now: Date = Date()) throws -> CertificateAndKey {
        try Self.validateNodeName(name)
        guard validity >= 86_400 else { throw PKIError.invalidValidity(days: Int(validity / 86_400)) }
        guard certificate.notValidAfter > now else {
            throw PKIError.untrusted(subject: "the CA \(certificate.subject)",
                                     reasons: ["it expired on \(Self.format(certificate.notValidAfter))"])
        }
        var names: [GeneralName] = []
        for host in hosts {
            let n = try Self.generalName(forHost: host)
            if !names.contains(n) { names.append(n) }
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let organization = certificate.subject.attributeStrings(.RDNAttributeType.organizationName).first
        let subject = try DistinguishedName {
            if let organization { OrganizationName(organization) }
            CommonName(name)
        }
        let authorityKeyID = (try? certificate.extensions.subjectKeyIdentifier)?.keyIdentifier
            ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            if !names.isEmpty { SubjectAlternativeNames(names) }
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyID)
            SubjectKeyIdentifier(hash: publicKey)
        }
        let notAfter = min(now.addingTimeInterval(validity), certificate.notValidAfter)
        let issued = try Certificate(
            version: .v3, serialNumber: Self.randomSerialNumber(), publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-Self.clockSkewAllowance), notValidAfter: notAfter,
            issuer: certificate.subject, subject: subject, extensions: extensions, issuerPrivateKey: privateKey)
        return CertificateAndKey(certificatePEM: try PEM.pem(of: issued), privateKeyPEM: key.pemRepresentation + "\n")
    }

    /// ``issue(name:hosts:validity:now:)`` with the CA given as PEM text.
    public static func issue(caCertificatePEM: String, caPrivateKeyPEM: String, name: String,
                             hosts: [String] = defaultHosts, validity: TimeInterval = defaultNodeValidity,
                             now: Date = Date()) throws -> CertificateAndKey {
        try CertificateAuthority(certificatePEM: caCertificatePEM, privateKeyPEM: caPrivateKeyPEM)
            .issue(name: name, hosts: hosts, validity: validity, now: now)
    }

    // MARK: - Names

    /// A node name is the certificate's CN and the base of its file names: 1 to 64 characters,
    /// letters, digits, '.', '_' and '-', not starting with '.' or '-'.
    public static func validateNodeName(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count <= 64 else {
            throw PKIError.invalidNodeName(name, reason: "it must have 1 to 64 characters")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard name.allSatisfy({ allowed.contains($0) }) else {
            throw PKIError.invalidNodeName(name, reason: "use only letters, digits, '.', '_' and '-'")
        }
        guard let first = name.first, first != ".", first != "-" else {
            throw PKIError.invalidNodeName(name, reason: "it must not start with '.' or '-'")
        }
    }

    /// The SAN for a host: an iPAddress for an IPv4 or IPv6 literal (IPv6 may be in brackets),
    /// else a dNSName (lowercased; a leading "*." wildcard is allowed).
    public static func generalName(forHost host: String) throws -> GeneralName {
        let h = host.trimmingCharacters(in: .whitespaces)
        if let bytes = IPAddress.parse(h) { return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))) }
        var dns = h.lowercased()
        if dns.hasSuffix(".") { dns.removeLast() }
        guard isValidDNSName(dns) else { throw PKIError.invalidHost(host) }
        return .dnsName(dns)
    }

    static func isValidDNSName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if labels.first == "*" { labels.removeFirst(); if labels.isEmpty { return false } }
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-")
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.allSatisfy { allowed.contains($0) }
                && label.first != "-" && label.last != "-"
        }
    }

    /// 20 random bytes, the first in 0x40...0x7F: positive and exactly 20 bytes long in DER.
    static func randomSerialNumber() -> Certificate.SerialNumber {
        var rng = SystemRandomNumberGenerator()
        var bytes = (0..<20).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        bytes[0] = (bytes[0] & 0x3F) | 0x40
        return Certificate.SerialNumber(bytes: bytes)
    }

    static func format(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }
}

/// IPv4 and IPv6 literals to and from their network-order bytes (as in an iPAddress SAN).
public enum IPAddress {
    /// 4 bytes for an IPv4 literal, 16 for an IPv6 literal (brackets allowed), nil otherwise.
    public static func parse(_ text: String) -> [UInt8]? {
        var s = text
        if s.hasPrefix("[") && s.hasSuffix("]") { s = String(s.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, s, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// The text form of 4 or 16 address bytes; hex for anything else (such as a name constraint's
    /// address and mask).
    public static func format<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let b = Array(bytes)
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family: Int32
        switch b.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return b.map { String(format: "%02x", $0) }.joined()
        }
        let ok = b.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        guard ok else { return b.map { String(format: "%02x", $0) }.joined() }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension DistinguishedName {
    /// The string values of every attribute of the given type, in order.
    func attributeStrings(_ type: ASN1ObjectIdentifier) -> [String] {
        var out: [String] = []
        for rdn in self {
            for attribute in rdn where attribute.type == type {
                out.append(String(attribute.value) ?? attribute.value.description)
            }
        }
        return out
    }
}
