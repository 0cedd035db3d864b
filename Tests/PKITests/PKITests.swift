import Foundation
import PKI
import SwiftASN1
import Testing
import X509

@Suite struct CertificateAuthorityTests {
    static let ca = try! CertificateAuthority.create(commonName: "Test consortium CA", organization: "Test Consortium")
    static let otherCA = try! CertificateAuthority.create(commonName: "Other CA")

    @Test func caIsSelfSignedP256WithCAExtensions() throws {
        let cert = try PEM.certificate(fromPEM: Self.ca.certificatePEM)
        #expect(cert.subject == cert.issuer)
        #expect(cert.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(cert.publicKey.isValidSignature(cert.signature, for: cert))
        let bc = try #require(cert.extensions[oid: .X509ExtensionID.basicConstraints])
        #expect(bc.critical)
        #expect(try cert.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        let ku = try #require(cert.extensions[oid: .X509ExtensionID.keyUsage])
        #expect(ku.critical)
        let usage = try #require(try cert.extensions.keyUsage)
        #expect(usage.keyCertSign && usage.cRLSign && !usage.digitalSignature)
        #expect(try cert.extensions.subjectKeyIdentifier != nil)
        let validity = cert.notValidAfter.timeIntervalSince(cert.notValidBefore)
        #expect(abs(validity - (CertificateAuthority.days(3650) + CertificateAuthority.clockSkewAllowance)) < 5)

        let summary = try CertificateInfo.describe(certificatePEM: Self.ca.certificatePEM)
        #expect(summary.isCA && summary.selfSigned)
        #expect(summary.commonName == "Test consortium CA")
        #expect(summary.keyAlgorithm == "ECDSA P-256")
        #expect(Self.ca.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
    }

    @Test func issuedCertificateHasNodeProfile() throws {
        let node = try CertificateAuthority.issue(
            caCertificatePEM: Self.ca.certificatePEM, caPrivateKeyPEM: Self.ca.privateKeyPEM, name: "hospital-a",
            hosts: ["bridge.Hospital-A.org", "10.1.2.3", "::1", "[fe80::1]", "localhost", "bridge.hospital-a.org"])
        let cert = try PEM.certificate(fromPEM: node.certificatePEM)
        let caCert = try PEM.certificate(fromPEM: Self.ca.certificatePEM)
        #expect(CertificateInfo.commonName(of: cert) == "hospital-a")
        #expect(try CertificateInfo.commonName(ofPEM: node.certificatePEM) == "hospital-a")
        #expect(try CertificateInfo.commonName(ofDER: PEM.der(of: cert)) == "hospital-a")
        #expect(cert.issuer == caCert.subject)

        let sans = Array(try #require(try cert.extensions.subjectAlternativeNames))
        #expect(sans == [
            .dnsName("bridge.hospital-a.org"),
            .ipAddress(ASN1OctetString(contentBytes: [10, 1, 2, 3])),
            .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))),
            .ipAddress(ASN1OctetString(contentBytes: ArraySlice([0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1]))),
            .dnsName("localhost"),
        ])
        let eku = Array(try #require(try cert.extensions.extendedKeyUsage))
        #expect(eku == [.serverAuth, .clientAuth])
        let ku = try #require(cert.extensions[oid: .X509ExtensionID.keyUsage])
        #expect(ku.critical)
        #expect(try cert.extensions.keyUsage == KeyUsage(digitalSignature: true))
        #expect(try cert.extensions.basicConstraints == .notCertificateAuthority)
        #expect(try cert.extensions.authorityKeyIdentifier?.keyIdentifier == caCert.extensions.subjectKeyIdentifier?.keyIdentifier)
        #expect(try cert.extensions.subjectKeyIdentifier == SubjectKeyIdentifier(hash: cert.publicKey))
        #expect(cert.serialNumber.bytes.count == 20)
        #expect(cert.serialNumber.bytes.first! & 0x80 == 0)
        #expect(cert.notValidBefore < Date().addingTimeInterval(-60))
        #expect(try cert.extensions.subjectAlternativeNames != nil)

        let summary = try CertificateInfo.describe(certificatePEM: node.certificatePEM)
        #expect(summary.subjectAlternativeNames == ["DNS:bridge.hospital-a.org", "IP:10.1.2.3", "IP:::1", "IP:fe80::1", "DNS:localhost"])
        #expect(summary.ipAddresses == ["10.1.2.3", "::1", "fe80::1"])
        #expect(summary.extendedKeyUsage == ["serverAuth", "clientAuth"])
        #expect(!summary.isCA && !summary.selfSigned)
        #expect(summary.subject == "CN=hospital-a,O=Test Consortium")
        #expect(summary.serialNumber.count == 40)
        #expect(summary.sha256Fingerprint.split(separator: ":").count == 32)
    }

    @Test func defaultHostsAreLocalhostAndLoopback() throws {
        let ca = try CertificateAuthority(certificatePEM: Self.ca.certificatePEM, privateKeyPEM: Self.ca.privateKeyPEM)
        let node = try ca.issue(name: "node1")
        #expect(try CertificateInfo.describe(certificatePEM: node.certificatePEM).subjectAlternativeNames == ["DNS:localhost", "IP:127.0.0.1"])
    }

    @Test func issuedCertificateVerifiesAgainstItsCAOnly() async throws {
        let node = try CertificateAuthority.issue(caCertificatePEM: Self.ca.certificatePEM, caPrivateKeyPEM: Self.ca.privateKeyPEM, name: "n")
        let chain = try await ChainVerification.verifyChain(leafPEM: node.certificatePEM, caPEM: Self.ca.certificatePEM)
        #expect(chain.count == 2)
        #expect(chain.last == (try PEM.certificate(fromPEM: Self.ca.certificatePEM)))

        await #expect(throws: PKIError.self) {
            try await ChainVerification.verifyChain(leafPEM: node.certificatePEM, caPEM: Self.otherCA.certificatePEM)
        }
        // Both CAs in one bundle: found through the right one.
        let bundle = Self.otherCA.certificatePEM + Self.ca.certificatePEM
        #expect(try PEM.certificates(fromPEM: bundle).count == 2)
        _ = try await ChainVerification.verifyChain(leafPEM: node.certificatePEM, caPEM: bundle)
    }

    @Test func expiredCertificateDoesNotVerify() async throws {
        let ca = try CertificateAuthority(certificatePEM: Self.ca.certificatePEM, privateKeyPEM: Self.ca.privateKeyPEM)
        let old = try ca.issue(name: "old", validity: CertificateAuthority.days(1), now: Date().addingTimeInterval(-3 * 86_400))
        await #expect(throws: PKIError.self) {
            try await ChainVerification.verifyChain(leafPEM: old.certificatePEM, caPEM: Self.ca.certificatePEM)
        }
    }

    @Test func pemRoundTrip() throws {
        let cert = try PEM.certificate(fromPEM: Self.ca.certificatePEM)
        #expect(try PEM.pem(of: cert) == Self.ca.certificatePEM)
        #expect(try Certificate(derEncoded: PEM.der(of: cert)) == cert)
        let key = try PEM.privateKey(fromPEM: Self.ca.privateKeyPEM)
        #expect(key.publicKey == cert.publicKey)
        // Text around and between blocks, and a key block in between, are skipped.
        let mixed = "leaf:\n" + Self.ca.certificatePEM + Self.ca.privateKeyPEM + "\nroot:\n" + Self.otherCA.certificatePEM
        let certs = try PEM.certificates(fromPEM: mixed)
        #expect(certs.count == 2)
        #expect(certs[1] == (try PEM.certificate(fromPEM: Self.otherCA.certificatePEM)))
        #expect(throws: PKIError.noCertificate(source: "the text")) { try PEM.certificates(fromPEM: "nothing here") }
    }

    @Test func mismatchedKeyIsRefused() throws {
        #expect(throws: PKIError.keyDoesNotMatchCertificate(certificate: "the CA certificate", key: "the CA key")) {
            try CertificateAuthority(certificatePEM: Self.ca.certificatePEM, privateKeyPEM: Self.otherCA.privateKeyPEM)
        }
        let node = try CertificateAuthority.issue(caCertificatePEM: Self.ca.certificatePEM, caPrivateKeyPEM: Self.ca.privateKeyPEM, name: "n")
        #expect(throws: PKIError.self) {
            try CertificateAuthority(certificatePEM: node.certificatePEM, privateKeyPEM: node.privateKeyPEM)
        }
    }

    @Test func badNamesAndHostsAreRefused() throws {
        let ca = try CertificateAuthority(certificatePEM: Self.ca.certificatePEM, privateKeyPEM: Self.ca.privateKeyPEM)
        for name in ["", "../x", "a b", "-x", ".hidden", String(repeating: "a", count: 65)] {
            #expect(throws: PKIError.self) { try ca.issue(name: name) }
        }
        for host in ["", "bad host", "-a.org", "a..b", "under_score.org", "1.2.3.4:80"] {
            #expect(throws: PKIError.self) { try ca.issue(name: "n", hosts: [host]) }
        }
        #expect(throws: PKIError.invalidValidity(days: 0)) { try ca.issue(name: "n", validity: 60) }
    }

    @Test func filesAreWrittenWithModesAndNotOverwritten() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pki-test-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crt = dir + "/sub/n.crt", key = dir + "/sub/n.key"
        try PKIFiles.write(Self.ca, certificatePath: crt, keyPath: key)
        func mode(_ p: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: p)[.posixPermissions] as? NSNumber)?.intValue ?? -1
        }
        #expect(try mode(key) == 0o600)
        #expect(try mode(crt) == 0o644)
        #expect(try String(contentsOfFile: crt, encoding: .utf8) == Self.ca.certificatePEM)
        #expect(throws: PKIError.fileExists(crt)) { try PKIFiles.write(Self.otherCA, certificatePath: crt, keyPath: key) }
        #expect(try String(contentsOfFile: key, encoding: .utf8) == Self.ca.privateKeyPEM)
        try PKIFiles.write(Self.otherCA, certificatePath: crt, keyPath: key, overwrite: true)
        #expect(try String(contentsOfFile: key, encoding: .utf8) == Self.otherCA.privateKeyPEM)
        #expect(try mode(key) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/sub").sorted() == ["n.crt", "n.key"])
        #expect(throws: PKIError.fileNotFound(dir + "/nope/ca.crt")) { try CertificateAuthority(directory: dir + "/nope") }
    }
}
