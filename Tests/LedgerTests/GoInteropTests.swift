// Checks the Ledger module against Go's golang.org/x/mod/sumdb/note and sumdb/tlog: a signed
// checkpoint, inclusion and consistency proofs and the C2SP tiles of a log written by this module
// are handed (as JSON) to Tests/interop/tlogcheck, a Go program built here from source in GOPATH
// mode, offline. Debian: apt-get install golang-go golang-golang-x-mod-dev. Without them the test
// is skipped, saying so, except under CI (CI=true), where it fails.

import Foundation
import Testing
@testable import Ledger

enum GoToolchain {
    /// GOPATH holding golang.org/x/mod (Debian's golang-golang-x-mod-dev puts it here).
    static let gopath = ProcessInfo.processInfo.environment["LEDGER_INTEROP_GOPATH"] ?? "/usr/share/gocode"

    static let go: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let candidates = path.split(separator: ":").map { "\($0)/go" } + ["/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static let missing: Comment = "needs go and golang.org/x/mod in GOPATH (apt-get install golang-go golang-golang-x-mod-dev)"

    /// Under CI (CI=true) the test runs whatever is installed, and fails on the first line when Go
    /// is missing: a green CI run has run it. Elsewhere its absence skips, saying so.
    static var runnable: Bool {
        available || ["true", "1", "yes"].contains((ProcessInfo.processInfo.environment["CI"] ?? "").lowercased())
    }

    static var available: Bool {
        go != nil && FileManager.default.fileExists(atPath: gopath + "/src/golang.org/x/mod/sumdb/tlog/tlog.go")
            && FileManager.default.fileExists(atPath: gopath + "/src/golang.org/x/mod/sumdb/note/note.go")
    }

    /// Tests/interop/tlogcheck, found from this file (symlinks resolved, for scratch packages).
    static var sourceDir: URL {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("interop/tlogcheck")
    }

    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["GO111MODULE"] = "off"
        env["GOPATH"] = gopath
        env["GOFLAGS"] = ""
        env["GOPROXY"] = "off"
        env["GOCACHE"] = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-interop-gocache").path
        return env
    }

    /// Builds tlogcheck once per test process.
    static let checker: Result<String, InteropError> = {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-interop-\(getpid())/tlogcheck").path
        do {
            let r = try run(go!, ["build", "-o", out, "."], in: sourceDir)
            return r.status == 0 ? .success(out) : .failure(.buildFailed(r.stderr + r.stdout))
        } catch {
            return .failure(.buildFailed("\(error)"))
        }
    }()

    struct Outcome { let status: Int32; let stdout: String; let stderr: String }

    /// Runs a program to completion; its output goes to temporary files, read afterwards.
    static func run(_ executable: String, _ arguments: [String], in dir: URL? = nil) throws -> Outcome {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-interop-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let outURL = tmp.appendingPathComponent("stdout"), errURL = tmp.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = environment
        if let dir { p.currentDirectoryURL = dir }
        p.standardOutput = out
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        try out.close()
        try err.close()
        return Outcome(status: p.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
                       stderr: try String(contentsOf: errURL, encoding: .utf8))
    }
}

enum InteropError: Error, Sendable { case buildFailed(String) }

/// The JSON tlogcheck reads.
struct InteropInput: Codable {
    struct Inclusion: Codable {
        var index: UInt64
        var treeSize: UInt64
        var leafHash: String
        var proof: [String]
        var root: String?
        var entry: String?
    }
    struct Consistency: Codable {
        var size1: UInt64
        var size2: UInt64
        var root1: String
        var root2: String
        var proof: [String]
    }
    var verifierKey: String
    var signedCheckpoint: String
    var inclusion: [Inclusion]
    var consistency: [Consistency]
    var tiles: [String: String]?
}

@Suite(.serialized) struct GoInteropTests {
    /// A log of 1000 entries (four level-0 tiles, the last partial; a partial level-1 tile)
    /// checkpointed at 700 and then at 1000, with proofs from the ledger and the tiles of 1000.
    static func makeInput() throws -> InteropInput {
        let log = try TiledLog()
        let all = tileTestEntries(0..<1000)
        let cp700 = try log.grow(Array(all[..<700]))
        let cp = try log.grow(Array(all[700...]))
        let note = String(decoding: try log.serve("checkpoint"), as: UTF8.self)
        return try log.db.read { db throws in
            var inclusion: [InteropInput.Inclusion] = []
            for index in [UInt64(0), 1, 2, 127, 255, 256, 511, 512, 699, 700, 767, 768, 998, 999] {
                let proof = try LedgerStore.inclusionProof(index: index, size: cp.size, db)
                inclusion.append(.init(index: index, treeSize: cp.size, leafHash: RFC6962.leafHash(all[Int(index)]).base64,
                                       proof: proof.map(\.base64), entry: all[Int(index)].base64EncodedString()))
            }
            for (index, size) in [(UInt64(0), UInt64(1)), (0, 2), (1, 2), (5, 700), (699, 700), (256, 257), (300, 513)] {
                let proof = try LedgerStore.inclusionProof(index: index, size: size, db)
                inclusion.append(.init(index: index, treeSize: size, leafHash: RFC6962.leafHash(all[Int(index)]).base64,
                                       proof: proof.map(\.base64), root: try LedgerStore.rootHash(size: size, db).base64))
            }
            var consistency: [InteropInput.Consistency] = []
            for (size1, size2) in [(UInt64(1), UInt64(1000)), (2, 1000), (255, 1000), (256, 1000), (257, 1000), (700, 1000),
                                   (999, 1000), (1000, 1000), (1, 2), (3, 7), (256, 512), (300, 700), (512, 513), (700, 700)] {
                let proof = try LedgerStore.consistencyProof(from: size1, to: size2, db)
                consistency.append(.init(size1: size1, size2: size2, root1: try LedgerStore.rootHash(size: size1, db).base64,
                                         root2: try LedgerStore.rootHash(size: size2, db).base64, proof: proof.map(\.base64)))
            }
            #expect(consistency[5].root1 == cp700.rootHash.base64)
            var tiles: [String: String] = [:]
            for tile in TilePath.hashTiles(treeSize: cp.size) {
                tiles[tile.path] = try TileServer.content(tile, treeSize: cp.size, db).base64EncodedString()
            }
            return InteropInput(verifierKey: log.signer.verifierKey, signedCheckpoint: note, inclusion: inclusion,
                                consistency: consistency, tiles: tiles)
        }
    }

    static func check(_ input: InteropInput) throws -> GoToolchain.Outcome {
        let checker = try GoToolchain.checker.get()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-interop-\(getpid())-\(UUID().uuidString).json")
        try JSONEncoder().encode(input).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try GoToolchain.run(checker, [file.path])
    }

    static func flipBase64(_ s: String, byte: Int = 0) -> String {
        var b = Array(Data(base64Encoded: s)!)
        b[byte] ^= 0x01
        return Data(b).base64EncodedString()
    }

    @Test(.enabled(if: GoToolchain.runnable, GoToolchain.missing))
    func goVerifiesTheLedgersNotesProofsAndTiles() throws {
        try #require(GoToolchain.available, GoToolchain.missing)
        let input = try Self.makeInput()
        // LEDGER_INTEROP_JSON=<file> keeps the input, to run tlogcheck on it by hand.
        if let keep = ProcessInfo.processInfo.environment["LEDGER_INTEROP_JSON"] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(input).write(to: URL(fileURLWithPath: keep))
        }
        let r = try Self.check(input)
        #expect(r.status == 0, "tlogcheck: \(r.stderr)")
        #expect(r.stdout.hasPrefix("ok: bridge.example/log size 1000, signature by bridge.example/log+"), "\(r.stdout)")
        #expect(r.stdout.contains("21 inclusion and 14 consistency proofs"), "\(r.stdout)")
    }

    @Test(.enabled(if: GoToolchain.runnable, GoToolchain.missing))
    func goRejectsBrokenInput() throws {
        try #require(GoToolchain.available, GoToolchain.missing)
        let good = try Self.makeInput()
        var cases: [(String, InteropInput, String)] = []

        var input = good
        input.inclusion[4].proof[2] = Self.flipBase64(input.inclusion[4].proof[2], byte: 17)
        cases.append(("flipped inclusion proof byte", input, "FAIL: inclusion[4] (index 255, tree size 1000): tlog.CheckRecord: invalid transparency proof"))

        input = good
        input.consistency[5].proof[0] = Self.flipBase64(input.consistency[5].proof[0])
        cases.append(("flipped consistency proof byte", input, "FAIL: consistency[5] (700 to 1000): tlog.CheckTree: invalid transparency proof"))

        input = good
        input.inclusion[0].proof.removeLast()
        cases.append(("short inclusion proof", input, "FAIL: inclusion[0] (index 0, tree size 1000): tlog.CheckRecord"))

        input = good
        input.inclusion[3].leafHash = Self.flipBase64(input.inclusion[3].leafHash)
        cases.append(("wrong leaf hash", input, "FAIL: inclusion[3] (index 127, tree size 1000): tlog.RecordHash(entry)"))

        input = good
        input.consistency[0].root1 = input.consistency[1].root1
        cases.append(("wrong old root", input, "FAIL: consistency[0] (1 to 1000): tlog.CheckTree"))

        input = good
        input.signedCheckpoint = input.signedCheckpoint.replacingOccurrences(of: "\n1000\n", with: "\n1001\n")
        cases.append(("altered checkpoint text", input, "FAIL: signed checkpoint: note.Open: invalid signature for key bridge.example/log"))

        input = good
        input.verifierKey = try NoteSigner.generate(name: "bridge.example/log").verifierKey
        cases.append(("another key", input, "FAIL: signed checkpoint: note.Open: note has no verifiable signatures"))

        input = good
        input.tiles!["tile/0/001"] = Self.flipBase64(input.tiles!["tile/0/001"]!, byte: 100)
        cases.append(("tampered tile", input, "FAIL: tiles: "))

        for (name, input, want) in cases {
            let r = try Self.check(input)
            #expect(r.status == 1, "\(name): exit \(r.status), stdout \(r.stdout), stderr \(r.stderr)")
            #expect(r.stderr.hasPrefix(want), "\(name): \(r.stderr)")
        }
    }
}
