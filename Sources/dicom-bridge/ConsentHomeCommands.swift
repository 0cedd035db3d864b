import ArgumentParser
import Bridge
import Consent
import Exchange
import Foundation

// The consent commands that work on a bridge home (keygen, grant and revoke need none).
extension ConsentCommand {
    struct Enroll: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bind a patient's public key to their Patient ID at this site (after the site's own identity checks).",
            discussion: """
                Run it at the site that holds the patient's images. From then on only the patient's own \
                grants open their studies to peers. The ledger records a keyed hash of the ID, never the \
                ID. A running serve applies it at once.
                """)
        @OptionGroup var home: HomeOptions
        @Option(name: .customLong("patient-id"), help: "The Patient ID (0010,0020) as this site's images carry it.") var patientID: String
        @Option(name: .customLong("public-key"), help: "The patient's public key (patient.pub, PEM).") var publicKey: String
        @Flag(help: "Print JSON.") var json = false

        struct Result: Codable { var patientKeyHash: String; var patientKeySHA256: String; var ledgerIndex: UInt64 }

        func run() throws {
            guard let pem = FileManager.default.contents(atPath: publicKey) else { throw fail("cannot read \(publicKey)") }
            let key: PatientPublicKey
            do { key = try PatientPublicKey(pem: String(decoding: pem, as: UTF8.self)) } catch { throw fail("\(publicKey): \(error)") }
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            let store = ConsentStore(archive: archive)
            let index: UInt64
            do { index = try store.enroll(patientID: patientID, publicKey: key) } catch let e as ExchangeError { throw fail(e.description) }
            let result = Result(patientKeyHash: try store.patientHash(patientID), patientKeySHA256: key.sha256Hex, ledgerIndex: index)
            if json { return try printJSON(result) }
            print("Enrolled the patient's key (patient \(result.patientKeyHash.prefix(16))..., ledger entry \(index))")
        }
    }

    struct Submit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a signed grant or revocation at this site; prints its id.",
            discussion: """
                Refused, recording nothing (exit 1), for a bad signature, a key not enrolled for that \
                patient, a grant already expired, or a revocation of an unknown grant. A running serve \
                applies it at once.
                """)
        @OptionGroup var home: HomeOptions
        @Argument(help: "The grant or revocation file (JSON).") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw fail("cannot read \(file)") }
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            let result: SubmitResult
            do { result = try ConsentStore(archive: archive).submit(data) } catch let e as ExchangeError { throw fail(e.description) }
            if json { return try printJSON(result) }
            print(result.id)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the grants recorded here (patients by keyed hash, never ID).")
        @OptionGroup var home: HomeOptions
        @Option(name: .customLong("patient-id"), help: "Only this patient's grants.") var patientID: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let archive = try Setup.openArchive(home: home.resolved)
            defer { archive.close() }
            let grants = try ConsentStore(archive: archive).list(patientID: patientID)
            if json { return try printJSON(grants) }
            if grants.isEmpty { print("No grants."); return }
            for g in grants {
                let scope: String
                switch g.scope { case .all: scope = "all studies"; case .study(let uid): scope = "study \(uid)" }
                print("\(g.id)  \(g.status)  to \(g.grantee), \(scope), purpose \(g.purpose), expires \(g.expires)")
            }
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Access events: every decision on a peer's request and every workstation retrieval.",
        discussion: """
            Read from the ledger. With --patient, a patient's every access at this site and at every \
            configured peer that answers (asked over mutual TLS; a peer that does not answer is named \
            on standard error).
            """)
    @OptionGroup var home: HomeOptions
    @Option(help: "Only the accesses to this Patient ID's studies.") var patient: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let home = home.resolved
        let config = try Setup.configuration(home: home) { _ in }
        let archive = try Setup.openArchive(home: home)
        defer { archive.close() }
        var entries = try AccessAuditor.entries(archive: archive, site: config.nodeName, patientID: patient)
        if let patient, let cert = config.tlsCert, let key = config.tlsKey {
            for peer in try PeerRegistry(archive: archive).list() {
                let client: PeerClient
                do { client = try PeerClient(peer: peer, identity: TLSIdentity(certificatePath: cert, keyPath: key), connections: 1) } catch {
                    FileHandle.standardError.write(Data("warning: no audit from peer \(peer.name): \(error)\n".utf8))
                    continue
                }
                do {
                    let q = patient.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? patient
                    entries += try await client.getJSON([AccessEntry].self, "/audit/access?patientId=\(q)")
                } catch {
                    FileHandle.standardError.write(Data("warning: no audit from peer \(peer.name): \(error)\n".utf8))
                }
                await client.shutdown()
            }
        }
        entries.sort { ($0.time, $0.site) < ($1.time, $1.site) }
        if json { return try printJSON(entries) }
        if entries.isEmpty { print("No access events."); return }
        for e in entries {
            print("\(e.time)  \(e.site)  \(e.requester)  \(e.action)  \(e.outcome)\(e.breakGlass ? " BREAK-GLASS" : "")  study \(e.study)  grant \(e.grant ?? "none")  \(e.reason)")
        }
    }
}
