import ArgumentParser
import Consent
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `dicom-bridge consent ...`: patients' keys, grants and revocations (docs/consent.md).
struct ConsentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consent",
        abstract: "Patients' consent: Ed25519 keys, signed grants and revocations (docs/consent.md).",
        discussion: """
            A patient holds an Ed25519 key. A grant, signed with it, lets one node (certificate CN) receive \
            the patient's images (one study or all) for a purpose until a time; a revocation, signed with \
            the same key, ends a grant. keygen, grant and revoke need no bridge home: they only make files.

            Typical use:
              dicom-bridge consent keygen --out patient/
              dicom-bridge consent grant --key patient/patient.key --patient-id PAT-001 \\
                  --to hospital-b --study 1.2.840.113619.2.55.3 --expires 2027-01-31T12:00:00Z --out g.json
              dicom-bridge consent revoke --key patient/patient.key --grant g-<id> --out r.json
            """,
        subcommands: [Keygen.self, Grant.self, Revoke.self, Enroll.self, Submit.self, List.self]
    )

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a patient key pair: writes DIR/patient.key (PKCS#8 PEM, mode 0600) and DIR/patient.pub (SPKI PEM).",
            discussion: """
                The files are standard PEM, as OpenSSL writes Ed25519 keys: `openssl pkey -in patient.key \
                -pubout` prints patient.pub. Keys made by `openssl genpkey -algorithm ed25519` work too. \
                Existing files are never replaced unless --force is given.
                """)

        static let privateKeyFileName = "patient.key"
        static let publicKeyFileName = "patient.pub"

        @Option(help: ArgumentHelp("The folder to write patient.key and patient.pub to (created if missing, mode 0700).", valueName: "dir"))
        var out: String
        @Flag(help: "Overwrite an existing patient.key and patient.pub.")
        var force = false

        func run() throws {
            try reportingErrors {
                let keyPath = (out as NSString).appendingPathComponent(Self.privateKeyFileName)
                let pubPath = (out as NSString).appendingPathComponent(Self.publicKeyFileName)
                if !force {
                    for p in [keyPath, pubPath] where FileManager.default.fileExists(atPath: p) {
                        throw ValidationError("\(p) exists (use --force to replace it)")
                    }
                }
                if !FileManager.default.fileExists(atPath: out) {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true,
                                                            attributes: [.posixPermissions: 0o700])
                }
                let pair = PatientKeyPair.generate()
                try writePrivateFile(keyPath, Data(pair.privateKeyPEM.utf8), mode: 0o600, replace: force)
                try writePrivateFile(pubPath, Data(pair.publicKeyPEM.utf8), mode: 0o644, replace: force)
                print("wrote \(keyPath) (mode 0600) and \(pubPath)")
                print("patientKey \(pair.publicKey.base64)")
                print("Keep \(keyPath) secret: whoever holds it can grant access to the patient's images.")
            }
        }
    }

    struct Grant: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a grant with a patient's key; prints the grant's id.",
            discussion: """
                Writes a grant document (JSON, docs/consent.md; mode 0600: it holds the Patient ID) that lets \
                node NODE receive the patient's images, of one study (--study) or all (--all), for a purpose, \
                until --expires. Prints the grant's id, alone on one line. Needs no bridge home: give the \
                file to the bridge that holds the images.
                """)

        @Option(help: ArgumentHelp("The patient's private key (PKCS#8 PEM).", valueName: "file"))
        var key: String
        @Option(name: .customLong("patient-id"), help: ArgumentHelp("The Patient ID (0010,0020) at the site that holds the images.", valueName: "id"))
        var patientId: String
        @Option(help: ArgumentHelp("The Issuer of Patient ID (0010,0021), when needed.", valueName: "issuer"))
        var issuer: String?
        @Option(name: .customLong("to"), help: ArgumentHelp("The node that may receive the images: its name (certificate CN).", valueName: "node"))
        var grantee: String
        @Option(help: ArgumentHelp("The Study Instance UID the grant covers.", valueName: "uid"))
        var study: String?
        @Flag(help: "Cover all of the patient's studies.")
        var all = false
        @Option(help: ArgumentHelp("When the grant ends: ISO 8601 with a time zone, e.g. 2027-01-31T12:00:00Z or 2027-01-31T13:00:00+01:00.", valueName: "time"))
        var expires: String
        @Option(help: ArgumentHelp("An HL7 v3 PurposeOfUse code (TREAT, ETREAT, HPAYMT, HRESCH, PATRQT, ...).", valueName: "code"))
        var purpose: String = PurposeOfUse.defaultCode
        @Option(help: ArgumentHelp("The grant file to write.", valueName: "file"))
        var out: String

        func validate() throws {
            guard (study != nil) != all else { throw ValidationError("give exactly one of --study UID and --all") }
        }

        func run() throws {
            try reportingErrors {
                let expiry = try ConsentTime.parse(expires)
                _ = try PurposeOfUse.validate(purpose)
                let pair = try readPatientKey(key)
                let grant = try ConsentGrant.sign(patientId: patientId, issuerOfPatientId: issuer, grantee: grantee,
                                                  scope: study.map(ConsentScope.study) ?? .all, purpose: purpose,
                                                  expires: expiry, with: pair)
                try grant.verify()
                try writePrivateFile(out, grant.encodedDocument(), mode: 0o600, replace: true)
                print(grant.id)
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a revocation of a grant with the patient's key; prints the revocation's id.",
            discussion: """
                Writes a revocation document (JSON, docs/consent.md) ending the grant GRANT_ID, signed with \
                the key that signed the grant. Prints the revocation's id, alone on one line. Needs no bridge \
                home: give the file to the bridge that holds the grant.
                """)

        @Option(help: ArgumentHelp("The patient's private key (PKCS#8 PEM).", valueName: "file"))
        var key: String
        @Option(help: ArgumentHelp("The id of the grant to end (g-...).", valueName: "grant-id"))
        var grant: String
        @Option(help: ArgumentHelp("The revocation file to write.", valueName: "file"))
        var out: String

        func run() throws {
            try reportingErrors {
                let pair = try readPatientKey(key)
                let revocation = try ConsentRevocation.sign(grant: grant, with: pair)
                try revocation.verify()
                try writePrivateFile(out, revocation.encodedDocument(), mode: 0o644, replace: true)
                print(revocation.id)
            }
        }
    }
}

private func readPatientKey(_ path: String) throws -> PatientKeyPair {
    let text: String
    do {
        text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw ValidationError("cannot read the key \(path): \(error.localizedDescription)")
    }
    do {
        return try PatientKeyPair(pem: text)
    } catch let e as ConsentError {
        throw ValidationError("\(path): \(e.description)")
    }
}

/// Writes `data` to `path` with exactly `mode`, never readable by others on the way: a new file is
/// created with that mode (O_EXCL) next to the target and renamed over it when `replace`.
private func writePrivateFile(_ path: String, _ data: Data, mode: mode_t, replace: Bool = false) throws {
    let target = replace ? path + ".tmp-\(getpid())" : path
    let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw ValidationError("cannot create \(target): \(String(cString: strerror(errno)))") }
    var ok = fchmod(fd, mode) == 0
    data.withUnsafeBytes { buffer in
        var offset = 0
        while ok, offset < buffer.count {
            let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n <= 0 { ok = false } else { offset += n }
        }
    }
    ok = ok && fsync(fd) == 0
    let error = errno
    close(fd)
    guard ok else {
        unlink(target)
        throw ValidationError("cannot write \(target): \(String(cString: strerror(error)))")
    }
    if replace, rename(target, path) != 0 {
        let error = errno
        unlink(target)
        throw ValidationError("cannot write \(path): \(String(cString: strerror(error)))")
    }
}
