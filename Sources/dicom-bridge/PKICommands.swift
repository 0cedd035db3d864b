import ArgumentParser
import Foundation
import PKI

struct PKICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "The consortium PKI: a CA, node certificates for the peer API's mutual TLS, and checking them.",
        discussion: """
            Every bridge node has an X.509 certificate issued by the consortium CA. The same certificate \
            serves both sides of mutual TLS on the peer API (serverAuth and clientAuth), and its common \
            name (CN) is the node name peers know it by. These commands need no bridge home.

            Typical use (init-ca once, by the consortium; keep ca/ca.key offline):
              dicom-bridge pki init-ca --out ca/
              dicom-bridge pki issue --ca ca/ --name hospital-a \\
                  --host bridge.hospital-a.org --host 10.1.2.3 --out certs/
              dicom-bridge pki show certs/hospital-a.crt --ca ca/ca.crt
            """,
        subcommands: [InitCA.self, Issue.self, Show.self])

    struct InitCA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init-ca",
            abstract: "Create the consortium CA: writes DIR/ca.crt (certificate) and DIR/ca.key (private key, mode 0600).",
            discussion: """
                The CA has a new P-256 ECDSA key and a self-signed certificate (basicConstraints CA:TRUE, \
                pathlen 0; keyUsage keyCertSign, cRLSign). Distribute ca.crt to every node; keep ca.key \
                secret, ideally offline: whoever holds it can admit nodes to the consortium. Existing \
                files are never replaced unless --force is given.
                """)

        @Option(help: ArgumentHelp("The folder to write ca.crt and ca.key to (created if missing, mode 0700).", valueName: "dir"))
        var out: String
        @Option(help: ArgumentHelp("The CA's common name.", valueName: "name"))
        var name: String = CertificateAuthority.defaultCommonName
        @Option(help: ArgumentHelp("An organization name (O) for the CA; node certificates copy it.", valueName: "org"))
        var organization: String?
        @Option(help: ArgumentHelp("Days the CA certificate is valid.", valueName: "n"))
        var days: Int = 3650
        @Flag(help: "Overwrite an existing ca.crt and ca.key.")
        var force = false

        func validate() throws {
            guard days >= 1 else { throw ValidationError("--days must be at least 1") }
        }

        func run() throws {
            try reportingErrors {
                let certPath = path(out, CertificateAuthority.certificateFileName)
                let keyPath = path(out, CertificateAuthority.privateKeyFileName)
                try refuseExisting([certPath, keyPath], force: force)
                let pair = try CertificateAuthority.create(commonName: name, organization: organization,
                                                           validity: CertificateAuthority.days(days))
                if !FileManager.default.fileExists(atPath: out) {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true,
                                                            attributes: [.posixPermissions: 0o700])
                }
                try PKIFiles.write(pair, certificatePath: certPath, keyPath: keyPath, overwrite: force)
                let summary = try CertificateInfo.describe(certificatePEM: pair.certificatePEM)
                print("wrote \(certPath) and \(keyPath) (mode 0600)")
                print("CA \(summary.subject), valid until \(dateString(summary.notAfter))")
                print("SHA-256 fingerprint \(summary.sha256Fingerprint)")
                print("Keep \(keyPath) secret (ideally offline); give \(certPath) to every node.")
            }
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a node certificate: writes OUT/NODE.crt and OUT/NODE.key (mode 0600), signed by the CA.",
            discussion: """
                Reads the CA from DIR/ca.crt and DIR/ca.key (as init-ca writes them). The node gets a new \
                P-256 key; its certificate has CN = the node name, every --host as a subject alternative \
                name (IPv4/IPv6 literals as IP addresses, others as DNS names; default: localhost and \
                127.0.0.1), extended key usage serverAuth and clientAuth, CA:FALSE. notBefore is 5 minutes \
                in the past (clock skew); notAfter never goes past the CA's. Existing files are never \
                replaced unless --force is given.
                """)

        @Option(help: ArgumentHelp("The CA folder holding ca.crt and ca.key.", valueName: "dir"))
        var ca: String
        @Option(help: ArgumentHelp("The node name: the certificate's CN and the output file names (letters, digits, '.', '_', '-').", valueName: "node"))
        var name: String
        @Option(name: .customLong("host"), help: ArgumentHelp("A DNS name or IP address the node is reached at; repeat for several (default: localhost and 127.0.0.1).", valueName: "name-or-ip"))
        var hosts: [String] = []
        @Option(help: ArgumentHelp("The folder to write NODE.crt and NODE.key to (created if missing).", valueName: "dir"))
        var out: String
        @Option(help: ArgumentHelp("Days the node certificate is valid.", valueName: "n"))
        var days: Int = 730
        @Flag(help: "Overwrite an existing NODE.crt and NODE.key.")
        var force = false

        func validate() throws {
            guard days >= 1 else { throw ValidationError("--days must be at least 1") }
            do { try CertificateAuthority.validateNodeName(name) } catch let e as PKIError { throw ValidationError(e.description) }
            for host in hosts {
                do { _ = try CertificateAuthority.generalName(forHost: host) } catch let e as PKIError { throw ValidationError(e.description) }
            }
        }

        func run() throws {
            try reportingErrors {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: ca, isDirectory: &isDirectory) else {
                    throw PKIError.fileNotFound(ca)
                }
                guard isDirectory.boolValue else {
                    throw ValidationError("--ca takes the CA folder (holding ca.crt and ca.key), not a file: \(ca)")
                }
                let certPath = path(out, name + ".crt")
                let keyPath = path(out, name + ".key")
                try refuseExisting([certPath, keyPath], force: force)
                let authority = try CertificateAuthority(directory: ca)
                let pair = try authority.issue(name: name, hosts: hosts.isEmpty ? CertificateAuthority.defaultHosts : hosts,
                                               validity: CertificateAuthority.days(days))
                try PKIFiles.write(pair, certificatePath: certPath, keyPath: keyPath, overwrite: force)
                let summary = try CertificateInfo.describe(certificatePEM: pair.certificatePEM)
                print("wrote \(certPath) and \(keyPath) (mode 0600)")
                print("node \(summary.commonName ?? name), issued by \(summary.issuer), valid until \(dateString(summary.notAfter))")
                print("names \(summary.subjectAlternativeNames.joined(separator: ", "))")
                print("SHA-256 fingerprint \(summary.sha256Fingerprint)")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a certificate (PEM); with --ca, check that it chains to that CA and is valid now.",
            discussion: """
                Prints subject, node name (CN), issuer, serial, validity, names (SANs), key, usages and the \
                SHA-256 fingerprint of every certificate in FILE. With --ca, the first certificate in FILE \
                is verified against the CA certificate (the others are offered as intermediates): \
                signatures, validity periods and constraints (RFC 5280). Exits 1 when it does not verify.
                """)

        @Argument(help: ArgumentHelp("A PEM certificate file (it may hold several certificates).", valueName: "file"))
        var file: String
        @Option(help: ArgumentHelp("A CA certificate file (PEM), or a CA folder holding ca.crt, to verify against.", valueName: "cafile"))
        var ca: String?
        @Flag(help: "Print JSON: the certificate's fields; with --ca also chainValid, chainError, chain.")
        var json = false

        func run() throws {
            try reportingErrors {
                let certificates = try PEM.certificates(atPath: file)
                let summaries = try certificates.map(CertificateInfo.describe)
                var verification: (ok: Bool, chain: [String], error: String?)?
                var caFile: String?
                if let ca {
                    var isDirectory: ObjCBool = false
                    let caPath = FileManager.default.fileExists(atPath: ca, isDirectory: &isDirectory) && isDirectory.boolValue
                        ? path(ca, CertificateAuthority.certificateFileName) : ca
                    caFile = caPath
                    let roots = try PEM.certificates(atPath: caPath)
                    do {
                        let chain = try ChainVerification.verifyChainBlocking(
                            leafPEM: PEM.readFile(file), caPEM: roots.map(PEM.pem(of:)).joined())
                        verification = (true, chain.map { "\($0.subject)" }, nil)
                    } catch let e as PKIError {
                        if case .untrusted(_, let reasons) = e {
                            verification = (false, [], reasons.joined(separator: "; "))
                        } else { throw e }
                    }
                }
                if json {
                    var object = try jsonObject(summaries[0])
                    if summaries.count > 1 { object["additionalCertificates"] = try summaries.dropFirst().map(jsonObject) }
                    if let verification {
                        object["chainValid"] = verification.ok
                        object["caFile"] = caFile
                        if verification.ok { object["chain"] = verification.chain }
                        if let error = verification.error { object["chainError"] = error }
                    }
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                    FileHandle.standardOutput.write(data + Data("\n".utf8))
                } else {
                    for (i, s) in summaries.enumerated() {
                        if summaries.count > 1 { print("\(i == 0 ? "" : "\n")certificate \(i + 1) of \(summaries.count)") }
                        printSummary(s)
                    }
                    if let verification, let caFile {
                        if verification.ok {
                            print("chain:        OK, valid now: " + verification.chain.joined(separator: " <- "))
                        } else {
                            print("chain:        NOT VALID against \(caFile): \(verification.error ?? "")")
                        }
                    }
                }
                if let verification, !verification.ok {
                    if !json {
                        FileHandle.standardError.write(Data("error: \(file) does not verify against \(caFile ?? "the CA")\n".utf8))
                    }
                    throw ExitCode(1)
                }
            }
        }

        func printSummary(_ s: CertificateSummary) {
            let now = Date()
            let state: String
            if now < s.notBefore { state = "NOT YET VALID" }
            else if now > s.notAfter { state = "EXPIRED" }
            else { state = "valid, expires in \(Int(s.notAfter.timeIntervalSince(now) / 86_400)) days" }
            print("subject:      \(s.subject)")
            print("common name:  \(s.commonName ?? "(none)")")
            print("issuer:       \(s.issuer)\(s.selfSigned ? " (self-signed)" : "")")
            print("serial:       \(s.serialNumber)")
            print("not before:   \(dateString(s.notBefore))")
            print("not after:    \(dateString(s.notAfter)) (\(state))")
            print("names:        \(s.subjectAlternativeNames.isEmpty ? "(none)" : s.subjectAlternativeNames.joined(separator: ", "))")
            print("key:          \(s.keyAlgorithm)")
            print("CA:           \(s.isCA ? "yes" + (s.pathLengthConstraint.map { " (path length \($0))" } ?? "") : "no")")
            print("key usage:    \(s.keyUsage.isEmpty ? "(any)" : s.keyUsage.joined(separator: ", "))")
            print("ext. usage:   \(s.extendedKeyUsage.isEmpty ? "(any)" : s.extendedKeyUsage.joined(separator: ", "))")
            print("SHA-256:      \(s.sha256Fingerprint)")
        }

        func jsonObject(_ s: CertificateSummary) throws -> [String: Any] {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            let data = try encoder.encode(s)
            return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        }
    }
}

private func path(_ directory: String, _ file: String) -> String {
    (directory as NSString).appendingPathComponent(file)
}

private func dateString(_ date: Date) -> String {
    ISO8601DateFormatter().string(from: date)
}

private func refuseExisting(_ paths: [String], force: Bool) throws {
    guard !force else { return }
    for p in paths where FileManager.default.fileExists(atPath: p) { throw PKIError.fileExists(p) }
}
