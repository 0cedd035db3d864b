import ArgumentParser
import Bridge
import Exchange
import Foundation
import Ledger
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct LedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "The tamper-evident ledger: checkpoints, entries, proofs and verification.",
        subcommands: [Checkpoint.self, Key.self, Show.self, Prove.self, Verify.self])

    struct Checkpoint: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the latest signed checkpoint (a C2SP signed note).")
        @OptionGroup var home: HomeOptions
        func run() throws {
            let r = try LedgerReader(home: home.resolved)
            defer { r.close() }
            guard let cp = try r.latestCheckpoint() else { throw fail("no checkpoint signed yet") }
            FileHandle.standardOutput.write(Data(cp.signedNote.utf8))
        }
    }

    struct Key: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the node's verifier key (<name>+<key id>+<base64>).")
        @OptionGroup var home: HomeOptions
        func run() throws {
            let r = try LedgerReader(home: home.resolved)
            defer { r.close() }
            print(try r.verifierKey())
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show ledger entries.")
        @OptionGroup var home: HomeOptions
        @Option(help: "First entry index.") var from: UInt64 = 0
        @Option(help: "Most entries to show.") var count: Int = 100
        @Option(help: "Only entries of this type (e.g. instance-anchored).") var type: String?
        @Option(help: "Only entries naming this SOP Instance UID.") var sop: String?
        @Flag(help: "Print JSON: index, type, fields, leafHash and the raw entry (base64).") var json = false

        func run() throws {
            let r = try LedgerReader(home: home.resolved)
            defer { r.close() }
            let entries = try r.entries(from: from, count: count, type: type, sop: sop)
            if json { return try printJSON(entries) }
            for e in entries {
                let summary = e.fields["sop-instance-uid"].map { "sop \($0) sha256 \(e.fields["sha256"] ?? "")" } ?? ""
                print("\(e.index)\t\(e.type) v\(e.version)\t\(summary)")
            }
        }
    }

    struct Prove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "An RFC 9162 inclusion proof for an entry, or a consistency proof between two tree sizes.",
            discussion: "Proofs are against checkpoints the node has signed.")
        @OptionGroup var home: HomeOptions
        @Option(help: "The entry's index.") var index: UInt64?
        @Option(help: "The instance's SOP Instance UID (its current version).") var sop: String?
        @Option(help: "The stored object's SHA-256.") var sha256: String?
        @Option(parsing: .upToNextOption, help: "Two tree sizes: OLD NEW.") var consistency: [UInt64] = []
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            let chosen = [index != nil, sop != nil, sha256 != nil, !consistency.isEmpty].filter { $0 }.count
            guard chosen == 1 else { throw ValidationError("give exactly one of --index, --sop, --sha256 or --consistency OLD NEW") }
            if !consistency.isEmpty && consistency.count != 2 { throw ValidationError("--consistency takes two sizes: OLD NEW") }
        }

        func run() throws {
            let r = try LedgerReader(home: home.resolved)
            defer { r.close() }
            if consistency.count == 2 {
                let p = try r.proveConsistency(consistency[0], consistency[1])
                if json { return try printJSON(p) }
                print("consistency \(p.size1) -> \(p.size2)")
                p.proof.forEach { print($0) }
                return
            }
            let selector: LedgerReader.Selector = index.map { .index($0) } ?? sop.map { .sop($0) } ?? .sha256(sha256!)
            let p = try r.prove(selector)
            if json { return try printJSON(p) }
            print("entry \(p.index) in tree of size \(p.treeSize)\nleaf hash \(p.leafHash)")
            p.proof.forEach { print($0) }
            print(p.checkpoint, terminator: "")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the tree from the entries and check every kept checkpoint against it.",
            discussion: "With --url and --verifier-key, verify a remote node's whole log from its tiles instead.")
        @OptionGroup var home: HomeOptions
        @Option(help: "A node's ledger URL (its HTTP endpoints), to verify from its tiles alone.") var url: String?
        @Option(name: .customLong("verifier-key"), help: "That node's verifier key.") var verifierKey: String?
        @Option(help: "A checkpoint of that node seen before (a file, as `ledger checkpoint` prints it): the log must be consistent with it.")
        var previous: String?
        @Flag(help: "Print JSON.") var json = false

        struct Result: Codable { var ok: Bool; var treeSize: UInt64?; var checkpoints: Int?; var error: String? }

        func validate() throws {
            if (url == nil) != (verifierKey == nil) { throw ValidationError("--url and --verifier-key go together") }
            if previous != nil && url == nil { throw ValidationError("--previous goes with --url") }
        }

        func run() throws {
            if let url, let verifierKey { return try verifyRemote(url: url, key: verifierKey) }
            let r = try LedgerReader(home: home.resolved)
            defer { r.close() }
            do {
                let (size, n) = try r.verifyLedger()
                if json { try printJSON(Result(ok: true, treeSize: size, checkpoints: n)) }
                else { print("ledger OK: \(size) entries, \(n) signed checkpoints, all consistent") }
            } catch {
                if json { try printJSON(Result(ok: false, error: "\(error)")) }
                throw fail("ledger verification failed: \(error)")
            }
        }
    }
}

extension LedgerCommand.Verify {
    func verifyRemote(url: String, key: String) throws {
        let base = url.hasSuffix("/") ? url : url + "/"
        do {
            let verifier = try RemoteLogVerifier(verifierKey: key, fetch: { path in try HTTPFetch.get(base + path) })
            var earlier: Checkpoint?
            if let previous {
                let text = try String(contentsOfFile: previous, encoding: .utf8)
                earlier = try Checkpoint.parse(SignedNote.open(text, verifiers: [NoteVerifier(verifierKey: key)]).text)
            }
            let report = try verifier.verify(previous: earlier)
            if json { try printJSON(Result(ok: true, treeSize: report.entries, checkpoints: 1)) }
            else {
                print("remote ledger OK: \(report.entries) entries recomputed from \(report.hashTiles) hash tiles and "
                      + "\(report.entryBundles) entry bundles match the checkpoint signed by \(key.split(separator: "+").first ?? "")"
                      + (earlier.map { ", consistent with the earlier checkpoint of size \($0.size)" } ?? ""))
            }
        } catch {
            if json { try printJSON(Result(ok: false, error: "\(error)")) }
            throw fail("remote ledger verification failed: \(error)")
        }
    }
}

struct VerifyStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-hash every stored object against the index and the ledger; name every missing or altered one.")
    @OptionGroup var home: HomeOptions
    @Flag(help: "Print JSON.") var json = false

    struct Result: Codable { var checked: Int; var problems: [LedgerReader.Problem] }

    func run() throws {
        let r = try LedgerReader(home: home.resolved)
        defer { r.close() }
        var bar: Progress?
        let (checked, problems) = try r.verifyStore { done, total in
            if bar == nil { bar = Progress(total: total, label: "verify", quiet: json) }
            bar?.advance()
        }
        bar?.finish()
        if json { try printJSON(Result(checked: checked, problems: problems)) }
        else {
            for p in problems { FileHandle.standardError.write(Data("\(p)\n".utf8)) }
            print("\(checked) stored objects checked, \(problems.count) problem(s)")
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }
}

/// A blocking HTTP GET for the CLI (the ledger endpoints are plain read-only HTTP).
enum HTTPFetch {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func get(_ url: String) throws -> Data {
        guard let u = URL(string: url) else { throw Failure(description: "bad URL \(url)") }
        final class Box: @unchecked Sendable { var result: Result<Data, Error> = .failure(Failure(description: "no answer")) }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        var request = URLRequest(url: u)
        request.timeoutInterval = 30
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error { box.result = .failure(error) }
            else if let http = response as? HTTPURLResponse, http.statusCode != 200 {
                box.result = .failure(Failure(description: "\(url): HTTP \(http.statusCode)"))
            } else { box.result = .success(data ?? Data()) }
            done.signal()
        }.resume()
        done.wait()
        return try box.result.get()
    }
}
