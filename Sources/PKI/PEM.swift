import Foundation
import SwiftASN1
import X509

/// Reading certificates and private keys from PEM text and files.
public enum PEM {
    /// Every `CERTIFICATE` block of `pem`, in order (other blocks, such as keys, are skipped).
    /// Throws ``PKIError/noCertificate(source:)`` when there is none.
    public static func certificates(fromPEM pem: String, source: String = "the text") throws -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw PKIError.noCertificate(source: source)
        }
        var out: [Certificate] = []
        for (i, doc) in documents.enumerated() where doc.discriminator == "CERTIFICATE" {
            do {
                out.append(try Certificate(pemDocument: doc))
            } catch {
                throw PKIError.unreadable(source: "certificate #\(i + 1) of \(source)", reason: "\(error)")
            }
        }
        guard !out.isEmpty else { throw PKIError.noCertificate(source: source) }
        return out
    }

    /// The first `CERTIFICATE` block of `pem`.
    public static func certificate(fromPEM pem: String, source: String = "the text") throws -> Certificate {
        try certificates(fromPEM: pem, source: source)[0]
    }

    /// A private key in PEM: PKCS#8 (`PRIVATE KEY`, as this module writes), SEC1 (`EC PRIVATE KEY`)
    /// or PKCS#1 (`RSA PRIVATE KEY`).
    public static func privateKey(fromPEM pem: String, source: String = "the text") throws -> Certificate.PrivateKey {
        let documents = (try? PEMDocument.parseMultiple(pemString: pem)) ?? []
        guard let doc = documents.first(where: { $0.discriminator.hasSuffix("PRIVATE KEY") }) else {
            if documents.contains(where: { $0.discriminator == "ENCRYPTED PRIVATE KEY" }) {
                throw PKIError.unreadable(source: source, reason: "encrypted private keys are not supported; decrypt it first (openssl pkey)")
            }
            throw PKIError.unreadable(source: source, reason: "no PEM private key (-----BEGIN PRIVATE KEY-----) in it")
        }
        if doc.discriminator == "ENCRYPTED PRIVATE KEY" {
            throw PKIError.unreadable(source: source, reason: "encrypted private keys are not supported; decrypt it first (openssl pkey)")
        }
        do {
            return try Certificate.PrivateKey(pemDocument: doc)
        } catch {
            throw PKIError.unreadable(source: source, reason: "not a supported private key (\(error))")
        }
    }

    /// The PEM text (`-----BEGIN CERTIFICATE-----` ...) of a certificate, ending with a newline.
    public static func pem(of certificate: Certificate) throws -> String {
        try certificate.serializeAsPEM().pemString + "\n"
    }

    /// The DER encoding of a certificate.
    public static func der(of certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    /// Reads a whole file as UTF-8 text; ``PKIError/fileNotFound(_:)`` when it does not exist.
    public static func readFile(_ path: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw PKIError.fileNotFound(path) }
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PKIError.unreadable(source: path, reason: "\(error.localizedDescription)")
        }
    }

    /// Every certificate in a PEM file.
    public static func certificates(atPath path: String) throws -> [Certificate] {
        try certificates(fromPEM: readFile(path), source: path)
    }

    /// The private key in a PEM file.
    public static func privateKey(atPath path: String) throws -> Certificate.PrivateKey {
        try privateKey(fromPEM: readFile(path), source: path)
    }
}
