// ledger-bench: how fast the ledger appends, proves and verifies, at a large tree.
//
//   swift run -c release --package-path Benchmarks/ledger ledger-bench [options]
//
// 1. Build a log in SQLite the way the archive keeps it (WAL, synchronous=FULL, one write
//    transaction per batch of 256 entries of ~300 bytes) until it has --entries entries or
//    --budget seconds have passed; report appends/s (time inside the write transactions, and
//    wall time including making the entries).
// 2. At that size N: inclusion proofs of random leaves in the tree of N, consistency proofs from
//    random sizes to N, each timed alone (inside one read transaction, and each in its own
//    `read`, as an HTTP request would be); then the verification of each proof.
// 3. Tile serving: random full level-0 tiles, entry bundles and level-1 tiles.
// Prints a table of figures and goals; --json writes them.

import Foundation
import GRDB
import Ledger

// MARK: Options

struct Options {
    var entries = 10_000_000
    var budget = 180.0
    var batch = 256
    var entrySize = 300
    var samples = 20_000
    var dir = "/var/tmp"
    var reuse: String?
    var keep = false
    var json: String?
    var remoteVerify = false
    var synchronous = "FULL"
    var prototype = false
    var mmapMB = 0
    var cacheMB = 0

    static func parse() -> Options {
        var o = Options()
        var args = CommandLine.arguments.dropFirst()
        func value(_ name: String) -> String {
            guard let v = args.popFirst() else { fail("\(name) needs a value") }
            return v
        }
        func number<T: LosslessStringConvertible>(_: T.Type, _ s: String, _ what: String) -> T {
            guard let v = T(s) else { fail(what) }
            return v
        }
        while let a = args.popFirst() {
            switch a {
            case "--entries": o.entries = number(Int.self, value(a), "--entries: a number")
            case "--budget": o.budget = number(Double.self, value(a), "--budget: seconds")
            case "--batch": o.batch = number(Int.self, value(a), "--batch: a number")
            case "--entry-size": o.entrySize = number(Int.self, value(a), "--entry-size: bytes")
            case "--samples": o.samples = number(Int.self, value(a), "--samples: a number")
            case "--dir": o.dir = value(a)
            case "--reuse": o.reuse = value(a)
            case "--keep": o.keep = true
            case "--json": o.json = value(a)
            case "--remote-verify": o.remoteVerify = true
            case "--prototype-append": o.prototype = true
            case "--mmap": o.mmapMB = number(Int.self, value(a), "--mmap: megabytes")
            case "--cache": o.cacheMB = number(Int.self, value(a), "--cache: megabytes")
            case "--synchronous":
                o.synchronous = value(a).uppercased()
                guard ["OFF", "NORMAL", "FULL", "EXTRA"].contains(o.synchronous) else { fail("--synchronous: OFF, NORMAL, FULL or EXTRA") }
            case "--quick": o.entries = 1_000_000; o.samples = 5000
            case "-h", "--help":
                print("""
                    usage: ledger-bench [--entries N (10000000)] [--budget SECONDS (180)] [--batch N (256)]
                                        [--entry-size BYTES (300)] [--samples N (20000)] [--dir DIR (/var/tmp)]
                                        [--reuse DB] [--keep] [--json FILE] [--remote-verify] [--quick]
                                        [--synchronous OFF|NORMAL|FULL (FULL, as the archive)] [--prototype-append]
                                        [--mmap MB (0)] [--cache MB (0: SQLite's 2 MB)]
                      --budget    stop building the log after this long, whatever its size
                      --reuse DB  measure proofs on an existing ledger database (no appends)
                      --keep      keep the database built (its path is printed)
                      --remote-verify  also verify the whole log from its tiles (RemoteLogVerifier)
                      --quick     1,000,000 entries, 5,000 samples
                      --mmap, --cache  PRAGMA mmap_size and cache_size on every connection
                      --prototype-append  build the log with PrototypeAppend (raw sqlite3 binding and an
                                  in-memory frontier; checked against LedgerStore.verifyIntegrity
                                  first) instead of LedgerStore.append, to see what append could do
                    """)
                exit(0)
            default: fail("unknown argument \(a)")
            }
        }
        return o
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("ledger-bench: \(message)\n".utf8))
    exit(2)
}

func log(_ message: String) { FileHandle.standardError.write(Data("\(message)\n".utf8)) }

// MARK: Timing

@inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

struct Stats: Encodable {
    let count: Int
    let meanMicros: Double
    let p50Micros: Double
    let p99Micros: Double
    let maxMicros: Double

    init(_ nanos: [UInt64]) {
        let s = nanos.sorted()
        count = s.count
        meanMicros = Double(s.reduce(0, +)) / Double(max(s.count, 1)) / 1000
        func q(_ p: Double) -> Double { s.isEmpty ? 0 : Double(s[min(s.count - 1, Int(Double(s.count) * p))]) / 1000 }
        p50Micros = q(0.5)
        p99Micros = q(0.99)
        maxMicros = s.isEmpty ? 0 : Double(s.last!) / 1000
    }
}

/// SplitMix64: reproducible samples.
struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: UInt64) -> UInt64 { next() % n }
}

/// An entry of exactly `size` bytes (at least 64), unique per index, event-like text:
/// "dicom-bridge/event/v1 bench\nindex <20 digits>\npad xxx…\n".
func makeEntry(_ i: UInt64, size: Int) -> Data {
    let head = Array("dicom-bridge/event/v1 bench\nindex ".utf8)
    var b = [UInt8](repeating: UInt8(ascii: "x"), count: max(size, 64))
    b.replaceSubrange(0..<head.count, with: head)
    var v = i
    for k in stride(from: head.count + 19, through: head.count, by: -1) {
        b[k] = UInt8(ascii: "0") + UInt8(v % 10)
        v /= 10
    }
    let tail = Array("\npad ".utf8)
    b.replaceSubrange((head.count + 20)..<(head.count + 20 + tail.count), with: tail)
    b[b.count - 1] = UInt8(ascii: "\n")
    return Data(b)
}

// MARK: Main

func runBenchmark() throws {
    let options = Options.parse()
    var results: [String: Any] = [:]
    var rows: [(String, String, String, String)] = []  // metric, measured, goal, verdict

    var config = Configuration()
    let synchronous = options.synchronous
    let (mmapMB, cacheMB) = (options.mmapMB, options.cacheMB)
    config.prepareDatabase { db in
        try db.execute(sql: "PRAGMA synchronous = \(synchronous)")  // FULL: as the archive's index
        if mmapMB > 0 { try db.execute(sql: "PRAGMA mmap_size = \(mmapMB * 1_048_576)") }
        if cacheMB > 0 { try db.execute(sql: "PRAGMA cache_size = -\(cacheMB * 1024)") }
    }
    let workDir: URL
    let dbPath: String
    if let reuse = options.reuse {
        dbPath = reuse
        workDir = URL(fileURLWithPath: reuse).deletingLastPathComponent()
    } else {
        workDir = URL(fileURLWithPath: options.dir).appendingPathComponent("ledger-bench-\(getpid())")
        try FileManager.default.createDirectory(at: workDir, withIntermediateDirectories: true)
        dbPath = workDir.appendingPathComponent("ledger.sqlite").path
    }
    let pool = try DatabasePool(path: dbPath, configuration: config)
    // GRDB's pool sets synchronous=NORMAL on its writer when it enables WAL: set it again, as the archive does.
    try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
    var migrator = DatabaseMigrator()
    LedgerStore.registerMigrations(&migrator)
    try migrator.migrate(pool)

    // 1. Appends.
    if options.prototype {
        // The prototype must write exactly what LedgerStore.append writes: build 70,000 entries
        // in odd batches and let verifyIntegrity recompute every hash from the entries.
        let check = try DatabaseQueue()
        try migrator.migrate(check)
        var mem = MemoryHashStore()
        var n: UInt64 = 0
        for batch in [1, 2, 255, 256, 257, 1000, 4096, 64_133] {
            let entries = (0..<UInt64(batch)).map { makeEntry(n + $0, size: options.entrySize) }
            try check.write { db in try PrototypeAppend.append(entries, in: db) }
            for e in entries { try mem.append(e) }
            n += UInt64(batch)
        }
        let (size, root) = try check.read { db in (try LedgerStore.verifyIntegrity(db), try LedgerStore.rootHash(db)) }
        guard size == n, root == (try MerkleTree.treeHash(size: n, reader: mem)) else { fail("the append prototype wrote another log") }
        log("append prototype checked: \(n) entries, verifyIntegrity passes, root matches")
    }
    if options.reuse == nil {
        log("building the log in \(dbPath): up to \(options.entries) entries of \(options.entrySize) bytes, batches of \(options.batch), \(Int(options.budget)) s at most")
        var size: UInt64 = 0
        var inTransactions: UInt64 = 0
        let start = now()
        var lastReport = start
        var lastSize: UInt64 = 0
        var windows: [(size: UInt64, rate: Double)] = []
        while size < UInt64(options.entries) && Double(now() - start) / 1e9 < options.budget {
            let n = min(options.batch, options.entries - Int(size))
            let batch = (0..<UInt64(n)).map { makeEntry(size + $0, size: options.entrySize) }
            let t0 = now()
            if options.prototype {
            try pool.write { db in try PrototypeAppend.append(batch, in: db) }
        } else {
            try pool.write { db in _ = try LedgerStore.append(batch, in: db) }
        }
            inTransactions += now() - t0
            size += UInt64(n)
            if now() - lastReport > 10_000_000_000 {
                let rate = Double(size - lastSize) / (Double(now() - lastReport) / 1e9)
                windows.append((size, rate))
                log(String(format: "  %10d entries, %.0f s, last 10 s: %.0f appends/s", size, Double(now() - start) / 1e9, rate))
                lastReport = now()
                lastSize = size
            }
        }
        let wall = Double(now() - start) / 1e9
        let rate = Double(size) / (Double(inTransactions) / 1e9)
        let wallRate = Double(size) / wall
        results["appends"] = [
            "entries": size, "entrySize": options.entrySize, "batch": options.batch, "seconds": wall,
            "appendsPerSecond": rate, "appendsPerSecondWall": wallRate,
            "windows": windows.map { ["size": $0.size, "appendsPerSecond": $0.rate] },
        ]
        let budgetNote = size < UInt64(options.entries) ? " (budget reached: \(size) of \(options.entries))" : ""
        rows.append(("\(options.prototype ? "PROTOTYPE " : "")appends/s, batches of \(options.batch) × \(options.entrySize) B, synchronous=\(options.synchronous)\(budgetNote)",
                     String(format: "%.0f", rate), "≥ 200,000", rate >= 200_000 ? "met" : "MISSED"))
        rows.append(("  the same, wall clock incl. making the entries", String(format: "%.0f", wallRate), "", ""))
        if let first = windows.first, let last = windows.last {
            rows.append(("  first 10 s window / last window (at size)", String(format: "%.0f / %.0f (%d)", first.rate, last.rate, last.size), "", ""))
        }
        let signer = try NoteSigner.generate(name: "bench.example/log")
        let t0 = now()
        try pool.write { db in _ = try CheckpointSigner.signIfGrown(in: db, signer: signer, origin: signer.name, now: Date()) }
        rows.append(("sign a checkpoint of the whole tree (root + Ed25519 + store)", String(format: "%.0f µs", Double(now() - t0) / 1000), "", ""))
        _ = try pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
    }

    let treeSize = try pool.read { try LedgerStore.treeSize($0) }
    guard treeSize >= 2 else { fail("the log has \(treeSize) entries") }
    let fileBytes = (try? FileManager.default.attributesOfItem(atPath: dbPath)[.size] as? Int) ?? 0
    log("tree size \(treeSize), database \(fileBytes / 1_000_000) MB")
    results["treeSize"] = treeSize
    results["databaseBytes"] = fileBytes

    // 2. Proofs.
    var rng = Random(state: 42)
    let samples = options.samples
    let indexes = (0..<samples).map { _ in rng.below(treeSize) }
    let sizes1 = (0..<samples).map { _ in 1 + rng.below(treeSize - 1) }  // 1 ..< N
    let root = try pool.read { try LedgerStore.rootHash(size: treeSize, $0) }

    // Generation, all in one read transaction.
    var inclusionProofs: [[MerkleHash]] = []
    var consistencyProofs: [[MerkleHash]] = []
    var tInclusion: [UInt64] = [], tConsistency: [UInt64] = []
    try pool.read { db in
        for i in indexes {
            let t0 = now()
            let p = try LedgerStore.inclusionProof(index: i, size: treeSize, db)
            tInclusion.append(now() - t0)
            inclusionProofs.append(p)
        }
        for s1 in sizes1 {
            let t0 = now()
            let p = try LedgerStore.consistencyProof(from: s1, to: treeSize, db)
            tConsistency.append(now() - t0)
            consistencyProofs.append(p)
        }
    }
    // Generation, each proof in its own read (what one HTTP request costs the database).
    var tInclusionOwnRead: [UInt64] = [], tConsistencyOwnRead: [UInt64] = []
    for i in indexes.prefix(samples / 4) {
        let t0 = now()
        _ = try pool.read { try LedgerStore.inclusionProof(index: i, size: treeSize, $0) }
        tInclusionOwnRead.append(now() - t0)
    }
    for s1 in sizes1.prefix(samples / 4) {
        let t0 = now()
        _ = try pool.read { try LedgerStore.consistencyProof(from: s1, to: treeSize, $0) }
        tConsistencyOwnRead.append(now() - t0)
    }
    // PROTOTYPE: all of a proof's hashes in one query (SELECT … WHERE stored_index IN (…)).
    var tInclusionBatched: [UInt64] = [], tConsistencyBatched: [UInt64] = []
    try pool.read { db in
        let reader = BatchedHashReader(db: db)
        for (k, i) in indexes.enumerated() {
            let t0 = now()
            let p = try MerkleTree.inclusionProof(index: i, size: treeSize, reader: reader)
            tInclusionBatched.append(now() - t0)
            if k < 100 && p != inclusionProofs[k] { fail("the batched reader made another proof") }
        }
        for (k, s1) in sizes1.enumerated() {
            let t0 = now()
            let p = try MerkleTree.consistencyProof(from: s1, to: treeSize, reader: reader)
            tConsistencyBatched.append(now() - t0)
            if k < 100 && p != consistencyProofs[k] { fail("the batched reader made another proof") }
        }
    }
    // What verification needs besides the proofs: leaf hashes and old roots (not timed).
    let (leafHashes, roots1) = try pool.read { db in
        (try indexes.map { try LedgerStore.leafHash(at: $0, db)! }, try sizes1.map { try LedgerStore.rootHash(size: $0, db) })
    }
    var tVerifyInclusion: [UInt64] = [], tVerifyConsistency: [UInt64] = []
    for k in 0..<samples {
        let t0 = now()
        try MerkleTree.verifyInclusion(index: indexes[k], size: treeSize, leafHash: leafHashes[k], proof: inclusionProofs[k], root: root)
        tVerifyInclusion.append(now() - t0)
    }
    for k in 0..<samples {
        let t0 = now()
        try MerkleTree.verifyConsistency(size1: sizes1[k], size2: treeSize, proof: consistencyProofs[k], root1: roots1[k], root2: root)
        tVerifyConsistency.append(now() - t0)
    }
    // A broken proof must fail (and fails as fast).
    var broken = inclusionProofs[0]
    broken[0] = RFC6962.emptyRoot
    if (try? MerkleTree.verifyInclusion(index: indexes[0], size: treeSize, leafHash: leafHashes[0], proof: broken, root: root)) != nil {
        fail("a broken proof verified")
    }

    func add(_ name: String, _ key: String, _ t: [UInt64], goal: Double?) {
        let s = Stats(t)
        results[key] = s
        let verdict = goal.map { s.p50Micros < $0 ? "met" : "MISSED" } ?? ""
        rows.append((name, String(format: "p50 %.1f µs, p99 %.1f µs, mean %.1f µs", s.p50Micros, s.p99Micros, s.meanMicros),
                     goal.map { String(format: "< %.0f µs", $0) } ?? "", verdict))
    }
    let meanProof = Double(inclusionProofs.reduce(0) { $0 + $1.count }) / Double(samples)
    let meanCProof = Double(consistencyProofs.reduce(0) { $0 + $1.count }) / Double(samples)
    add(String(format: "inclusion proof, generate (%.1f hashes, one read txn)", meanProof), "inclusionGenerate", tInclusion, goal: 100)
    add("  the same, each in its own pool.read", "inclusionGenerateOwnRead", tInclusionOwnRead, goal: nil)
    add(String(format: "consistency proof, generate (%.1f hashes, one read txn)", meanCProof), "consistencyGenerate", tConsistency, goal: 100)
    add("  the same, each in its own pool.read", "consistencyGenerateOwnRead", tConsistencyOwnRead, goal: nil)
    add("  PROTOTYPE: inclusion proof, all hashes in one IN (…) query", "inclusionGenerateBatched", tInclusionBatched, goal: nil)
    add("  PROTOTYPE: consistency proof, all hashes in one IN (…) query", "consistencyGenerateBatched", tConsistencyBatched, goal: nil)
    add("inclusion proof, verify", "inclusionVerify", tVerifyInclusion, goal: 50)
    add("consistency proof, verify", "consistencyVerify", tVerifyConsistency, goal: 50)

    // 3. Tiles.
    let tileSamples = min(2000, samples)
    var tTile0: [UInt64] = [], tBundle: [UInt64] = [], tTile1: [UInt64] = []
    let fullTiles0 = treeSize >> 8
    let fullTiles1 = treeSize >> 16
    try pool.read { db in
        for _ in 0..<tileSamples where fullTiles0 > 0 {
            let n = rng.below(fullTiles0)
            var t0 = now()
            _ = try TileServer.content(.hashes(level: 0, index: n, width: 256), treeSize: treeSize, db)
            tTile0.append(now() - t0)
            t0 = now()
            _ = try TileServer.content(.entries(index: n, width: 256), treeSize: treeSize, db)
            tBundle.append(now() - t0)
        }
        for _ in 0..<min(200, tileSamples) where fullTiles1 > 0 {
            let t0 = now()
            _ = try TileServer.content(.hashes(level: 1, index: rng.below(fullTiles1), width: 256), treeSize: treeSize, db)
            tTile1.append(now() - t0)
        }
    }
    add("serve a full level-0 hash tile (256 hashes)", "tileLevel0", tTile0, goal: nil)
    add("serve a full entry bundle (256 entries)", "entryBundle", tBundle, goal: nil)
    if !tTile1.isEmpty { add("serve a full level-1 hash tile", "tileLevel1", tTile1, goal: nil) }

    // 4. Optional: the whole log verified from its tiles.
    if options.remoteVerify {
        let signer = try NoteSigner.generate(name: "bench.example/log")
        let note = try signer.sign(Checkpoint(origin: signer.name, size: treeSize, rootHash: root).text())
        let reader = try pool.makeSnapshot()
        let verifier = try RemoteLogVerifier(verifierKey: signer.verifierKey) { path in
            if path == "checkpoint" { return Data(note.utf8) }
            return try reader.read { try TileServer.content(TilePath.parse(path), treeSize: treeSize, $0) }
        }
        log("verifying all \(treeSize) entries from tiles")
        let t0 = now()
        let report = try verifier.verify()
        let seconds = Double(now() - t0) / 1e9
        results["remoteVerify"] = ["seconds": seconds, "entriesPerSecond": Double(treeSize) / seconds, "bytes": report.bytesFetched]
        rows.append(("verify the whole log from its tiles (serve + verify, in process)",
                     String(format: "%.1f s, %.0f entries/s, %d MB", seconds, Double(treeSize) / seconds, report.bytesFetched / 1_000_000), "", ""))
    }

    // MARK: Report

    var uts = utsname()
    uname(&uts)
    let machine = withUnsafeBytes(of: &uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let pragmas = (options.mmapMB > 0 ? ", mmap_size \(options.mmapMB) MB" : "") + (options.cacheMB > 0 ? ", cache_size \(options.cacheMB) MB" : "")
    print("ledger-bench: tree size \(treeSize)\(pragmas), \(samples) samples, \(ProcessInfo.processInfo.activeProcessorCount) CPUs (\(machine)), database \(fileBytes / 1_000_000) MB on \(dbPath)")
    let w0 = max(rows.map { $0.0.count }.max() ?? 0, 6)
    let w1 = max(rows.map { $0.1.count }.max() ?? 0, 8)
    let w2 = max(rows.map { $0.2.count }.max() ?? 0, 4)
    func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
    print("| \(pad("metric", w0)) | \(pad("measured", w1)) | \(pad("goal", w2)) |        |")
    print("|\(String(repeating: "-", count: w0 + 2))|\(String(repeating: "-", count: w1 + 2))|\(String(repeating: "-", count: w2 + 2))|--------|")
    for r in rows { print("| \(pad(r.0, w0)) | \(pad(r.1, w1)) | \(pad(r.2, w2)) | \(pad(r.3, 6)) |") }

    if let json = options.json {
        func plain(_ v: Any) -> Any {
            if let s = v as? Stats { return ["count": s.count, "meanMicros": s.meanMicros, "p50Micros": s.p50Micros, "p99Micros": s.p99Micros, "maxMicros": s.maxMicros] }
            if let d = v as? [String: Any] { return d.mapValues(plain) }
            if let a = v as? [Any] { return a.map(plain) }
            return v
        }
        let data = try JSONSerialization.data(withJSONObject: plain(results), options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: json))
    }

    if options.reuse == nil {
        if options.keep {
            log("kept \(dbPath)")
        } else {
            try? pool.close()
            try? FileManager.default.removeItem(at: workDir)
        }
    }
}

do { try runBenchmark() } catch { fail("\(error)") }
