// consent-bench: the latency the consent check adds to a peer request, with a large consent
// ledger (goal: under 1 ms added at p95).
//
//   swift build -c release --package-path Benchmarks/consent
//   Benchmarks/consent/.build/release/consent-bench [--quick] [--json FILE] [options]
//
// 1. Opens a bridge home's archive in a fresh directory (--dir, default /var/tmp) with the
//    ledger's and the exchange's migrations registered, as `dicom-bridge init` does.
// 2. Populates it: --patients patients with one study each (rows inserted with GRDB, as a C-STORE
//    would index them), a patient key enrolled for each (ConsentStore.enroll), then --grants
//    grants signed with the patients' keys (ConsentGrant.sign, the document `consent grant`
//    writes) and revocations of --revoke (a fraction) of them (ConsentRevocation.sign), each
//    recorded with ConsentStore.submit: one write transaction and one ledger entry per document.
//    Grantees node-1...node-20, scope one study or all, a third of them expired by now.
// 3. Measures ConsentPolicy.decide (the patient's key, then the grant lookup) and
//    ConfiguredSharingPolicy.decide (site policy only, no lookup: the baseline) for --calls random
//    (peer, study) pairs, each call timed alone, the two policies alternating on the same pair.
// Prints p50/p95/p99 of each, the added latency at p95, and whether the goal is met. No assertion
// on timings anywhere: --check-goal makes the exit status 3 when the goal is missed.

import Archive
import Consent
import Exchange
import Foundation
import GRDB
import Ledger
import Logging

// MARK: Options

struct Options {
    var patients = 10_000
    var grants = 100_000
    var revokeFraction = 0.10
    var calls = 10_000
    var peers = 20
    var dir = "/var/tmp"
    var populationSync = "OFF"
    var seed: UInt64 = 42
    var keep = false
    var json: String?
    var checkGoal = false
    var quick = false

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
        var explicit: Set<String> = []
        while let a = args.popFirst() {
            explicit.insert(a)
            switch a {
            case "--patients": o.patients = number(Int.self, value(a), "--patients: a number")
            case "--grants": o.grants = number(Int.self, value(a), "--grants: a number")
            case "--revoke": o.revokeFraction = number(Double.self, value(a), "--revoke: a fraction, e.g. 0.1")
            case "--calls": o.calls = number(Int.self, value(a), "--calls: a number")
            case "--peers": o.peers = number(Int.self, value(a), "--peers: a number")
            case "--dir": o.dir = value(a)
            case "--population-sync":
                o.populationSync = value(a).uppercased()
                guard ["OFF", "NORMAL", "FULL"].contains(o.populationSync) else { fail("--population-sync: OFF, NORMAL or FULL") }
            case "--seed": o.seed = number(UInt64.self, value(a), "--seed: a number")
            case "--keep": o.keep = true
            case "--json": o.json = value(a)
            case "--check-goal": o.checkGoal = true
            case "--quick": o.quick = true
            case "-h", "--help":
                print("""
                    usage: consent-bench [--patients N (10000)] [--grants N (100000)] [--revoke FRACTION (0.1)]
                                         [--calls N (10000)] [--peers N (20)] [--dir DIR (/var/tmp)]
                                         [--population-sync OFF|NORMAL|FULL (OFF)] [--seed N (42)]
                                         [--keep] [--json FILE] [--check-goal] [--quick]
                      --quick            1,000 patients, 10,000 grants, 2,000 calls
                      --population-sync  PRAGMA synchronous while populating (the archive runs with FULL:
                                         one fsync per document; OFF makes 100,000 documents take a
                                         minute instead of many). Measurement is read-only: unaffected.
                      --keep             keep the home (its path is printed)
                      --check-goal       exit 3 when the added latency at p95 is 1 ms or more
                    """)
                exit(0)
            default: fail("unknown argument \(a)")
            }
        }
        if o.quick {
            if !explicit.contains("--patients") { o.patients = 1_000 }
            if !explicit.contains("--grants") { o.grants = 10_000 }
            if !explicit.contains("--calls") { o.calls = 2_000 }
        }
        guard o.patients > 0, o.grants >= 0, o.calls > 0, o.peers > 0, (0...1).contains(o.revokeFraction) else {
            fail("--patients, --calls and --peers must be positive, --revoke between 0 and 1")
        }
        return o
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("consent-bench: \(message)\n".utf8))
    exit(2)
}

func log(_ message: String) { FileHandle.standardError.write(Data("[consent \(clock())] \(message)\n".utf8)) }

func clock() -> String {
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss"
    return f.string(from: Date())
}

@inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// SplitMix64: the same population and the same requests for the same --seed.
struct Random: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct Stats: Encodable {
    let count: Int
    let meanMicros: Double
    let p50Micros: Double
    let p95Micros: Double
    let p99Micros: Double
    let maxMicros: Double

    init(_ nanos: [UInt64]) {
        let s = nanos.sorted()
        count = s.count
        meanMicros = Double(s.reduce(0, +)) / Double(max(s.count, 1)) / 1000
        func q(_ p: Double) -> Double { s.isEmpty ? 0 : Double(s[min(s.count - 1, Int(Double(s.count) * p))]) / 1000 }
        p50Micros = q(0.5)
        p95Micros = q(0.95)
        p99Micros = q(0.99)
        maxMicros = s.isEmpty ? 0 : Double(s.last!) / 1000
    }
}

// MARK: StudyAccessRequest

func makeRequest(peer: Peer, study: String, patientID: String, time: Date) -> StudyAccessRequest {
    StudyAccessRequest(peer: peer, studyInstanceUID: study, patientID: patientID, issuerOfPatientID: "", action: "query", time: time)
}

// MARK: Population

struct Population {
    var studies: [(uid: String, patientID: String)] = []
    var grants = 0
    var grantsExpired = 0
    var grantsAll = 0
    var revocations = 0
    var ledgerEntries = 0
    var rowsSeconds = 0.0
    var enrollSeconds = 0.0
    var signSeconds = 0.0
    var submitSeconds = 0.0
}

func populate(_ archive: Archive, _ o: Options, _ rng: inout Random) throws -> Population {
    var p = Population()
    let store = ConsentStore(archive: archive)
    try archive.database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(o.populationSync)") }

    // Patients and studies, as the index holds them after C-STORE (one study per patient).
    var t = now()
    try archive.database.write { db in
        for n in 1...o.patients {
            let pid = String(format: "PAT-%06d", n)
            let uid = "1.2.826.0.1.3680043.10.543.\(o.seed).\(n)"
            try db.execute(sql: "INSERT INTO patient (id, patient_id) VALUES (?, ?)", arguments: [n, pid])
            try db.execute(sql: "INSERT INTO study (patient_ref, study_instance_uid, study_date, last_received_at) VALUES (?, ?, '20250101', ?)",
                           arguments: [n, uid, "2025-01-01T00:00:00Z"])
            p.studies.append((uid, pid))
        }
    }
    p.rowsSeconds = Double(now() - t) / 1e9
    log("\(o.patients) patients and studies inserted (\(String(format: "%.1f", p.rowsSeconds)) s)")

    // A key per patient.
    t = now()
    var keys: [PatientKeyPair] = []
    keys.reserveCapacity(o.patients)
    for (_, pid) in p.studies {
        let key = PatientKeyPair.generate()
        try store.enroll(patientID: pid, publicKey: key.publicKey)
        keys.append(key)
    }
    p.enrollSeconds = Double(now() - t) / 1e9
    log("\(o.patients) patient keys enrolled (\(String(format: "%.1f", p.enrollSeconds)) s)")

    // Grants: every patient in turn, a random grantee, scope and expiry. An expired grant is
    // recorded as of a time before its expiry (submit refuses a grant expired when it arrives).
    let current = ConsentTime.wholeSeconds(Date())
    var grantIDs: [(id: String, key: Int)] = []
    grantIDs.reserveCapacity(o.grants)
    var lastReport = now()
    for g in 0..<o.grants {
        let who = g % o.patients
        let grantee = "node-\(Int.random(in: 1...o.peers, using: &rng))"
        let all = Bool.random(using: &rng)
        let expired = Int.random(in: 0..<3, using: &rng) == 0
        // Issued g seconds apart, so that no two grants have the same content (ids derive from it).
        let issued = current.addingTimeInterval(-Double(g) - (expired ? Double(Int.random(in: 30...400, using: &rng)) * 86_400 : 0))
        let expires = expired ? current.addingTimeInterval(-Double(Int.random(in: 1...29, using: &rng)) * 86_400)
                              : current.addingTimeInterval(Double(Int.random(in: 1...730, using: &rng)) * 86_400)
        var s = now()
        let grant = try ConsentGrant.sign(patientId: p.studies[who].patientID, grantee: grantee,
                                          scope: all ? .all : .study(p.studies[who].uid), expires: expires, issued: issued,
                                          with: keys[who])
        let document = grant.encodedDocument()
        p.signSeconds += Double(now() - s) / 1e9
        s = now()
        _ = try store.submit(document, now: issued)
        p.submitSeconds += Double(now() - s) / 1e9
        grantIDs.append((grant.id, who))
        p.grants += 1
        if expired { p.grantsExpired += 1 }
        if all { p.grantsAll += 1 }
        if now() - lastReport > 10_000_000_000 {
            lastReport = now()
            log("  \(g + 1) of \(o.grants) grants recorded")
        }
    }
    log("\(p.grants) grants recorded (\(p.grantsAll) of all studies, \(p.grantsExpired) expired by now): signing "
        + String(format: "%.1f s, submitting %.1f s (%.0f µs each)", p.signSeconds, p.submitSeconds,
                 p.submitSeconds * 1e6 / Double(max(p.grants, 1))))

    // Revocations of a random fraction of the grants.
    grantIDs.shuffle(using: &rng)
    let revoke = Int((Double(grantIDs.count) * o.revokeFraction).rounded())
    var revokeSign = 0.0, revokeSubmit = 0.0
    for (id, who) in grantIDs.prefix(revoke) {
        var s = now()
        let document = try ConsentRevocation.sign(grant: id, with: keys[who]).encodedDocument()
        revokeSign += Double(now() - s) / 1e9
        s = now()
        _ = try store.submit(document)
        revokeSubmit += Double(now() - s) / 1e9
        p.revocations += 1
    }
    p.signSeconds += revokeSign
    p.submitSeconds += revokeSubmit
    log("\(p.revocations) revocations recorded: " + String(format: "signing %.1f s, submitting %.1f s", revokeSign, revokeSubmit))

    try archive.database.writeWithoutTransaction { db in
        try db.execute(sql: "PRAGMA synchronous = FULL")  // as the archive runs
        try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
    }
    p.ledgerEntries = try archive.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM ledger_entries") ?? 0 }
    return p
}

// MARK: Main

struct PolicyResult: Encodable {
    let policy: String
    let latency: Stats
    let allowed: Int
    let denied: Int
}

struct Report: Encodable {
    let benchmark = "consent"
    let started: String
    let patients: Int
    let grants: Int
    let grantsAllStudies: Int
    let grantsExpired: Int
    let revocations: Int
    let ledgerEntries: Int
    let populationSync: String
    let populationSeconds: [String: Double]
    let calls: Int
    let peers: Int
    let consent: PolicyResult
    let baseline: PolicyResult
    let addedP50Micros: Double
    let addedP95Micros: Double
    let addedP99Micros: Double
    let goalMicros = 1000.0
    let goalMet: Bool
}

let o = Options.parse()
var rng = Random(state: o.seed)
_ = ExchangeSchema.registered
Archive.registerMigrations { LedgerStore.registerMigrations(&$0) }

let home = URL(fileURLWithPath: o.dir).appendingPathComponent("consent-bench-\(getpid())-\(UUID().uuidString.prefix(8))")
let started = ISO8601DateFormatter().string(from: Date())
log("home \(home.path): \(o.patients) patients, \(o.grants) grants, \(Int(o.revokeFraction * 100)) % revoked, \(o.calls) calls")
var population = Population()
var report: Report?
do {
    let archive = try Archive(home: home, logger: Logger(label: "consent-bench"))
    defer {
        archive.close()
        if o.keep { log("kept \(home.path)") } else { try? FileManager.default.removeItem(at: home) }
    }
    let t0 = now()
    population = try populate(archive, o, &rng)
    let populationWall = Double(now() - t0) / 1e9
    log("population done: \(population.ledgerEntries) ledger entries, " + String(format: "%.1f s", populationWall))

    let consent = ConsentPolicy(consents: ConsentStore(archive: archive), breakGlassEnabled: false)
    let baseline = ConfiguredSharingPolicy()
    let peers = (1...o.peers).map { Peer(name: "node-\($0)", url: "https://127.0.0.1:1", caPEM: "", verifierKey: "", share: .all) }
    func pair() -> StudyAccessRequest {
        let s = population.studies[Int.random(in: 0..<population.studies.count, using: &rng)]
        return makeRequest(peer: peers[Int.random(in: 0..<peers.count, using: &rng)], study: s.uid, patientID: s.patientID, time: Date())
    }
    // Warm-up: the readers' connections, prepared statements and page cache.
    for _ in 0..<min(1000, o.calls) {
        let r = pair()
        _ = try consent.decide(r)
        _ = try baseline.decide(r)
    }
    var consentNanos: [UInt64] = [], baselineNanos: [UInt64] = []
    consentNanos.reserveCapacity(o.calls)
    baselineNanos.reserveCapacity(o.calls)
    var consentAllowed = 0, baselineAllowed = 0
    for i in 0..<o.calls {
        let r = pair()
        func timeConsent() throws {
            let s = now()
            let d = try consent.decide(r)
            consentNanos.append(now() - s)
            if d.allowed { consentAllowed += 1 }
        }
        func timeBaseline() throws {
            let s = now()
            let d = try baseline.decide(r)
            baselineNanos.append(now() - s)
            if d.allowed { baselineAllowed += 1 }
        }
        if i % 2 == 0 { try timeConsent(); try timeBaseline() } else { try timeBaseline(); try timeConsent() }
    }
    let c = Stats(consentNanos), b = Stats(baselineNanos)
    report = Report(
        started: started, patients: o.patients, grants: population.grants, grantsAllStudies: population.grantsAll,
        grantsExpired: population.grantsExpired, revocations: population.revocations, ledgerEntries: population.ledgerEntries,
        populationSync: o.populationSync,
        populationSeconds: ["indexRows": population.rowsSeconds, "enroll": population.enrollSeconds, "sign": population.signSeconds,
                            "submit": population.submitSeconds, "wall": populationWall],
        calls: o.calls, peers: o.peers,
        consent: PolicyResult(policy: "ConsentPolicy", latency: c, allowed: consentAllowed, denied: o.calls - consentAllowed),
        baseline: PolicyResult(policy: "ConfiguredSharingPolicy", latency: b, allowed: baselineAllowed, denied: o.calls - baselineAllowed),
        addedP50Micros: c.p50Micros - b.p50Micros, addedP95Micros: c.p95Micros - b.p95Micros, addedP99Micros: c.p99Micros - b.p99Micros,
        goalMet: c.p95Micros - b.p95Micros < 1000)
} catch {
    fail("\(error)")
}

guard let r = report else { fail("no result") }
print()
print("Consent check: \(r.patients) patients (1 study each, all enrolled), \(r.grants) grants "
      + "(\(r.grantsAllStudies) of all studies, \(r.grantsExpired) expired), \(r.revocations) revocations, "
      + "\(r.ledgerEntries) ledger entries; \(r.calls) decisions for random (peer of \(r.peers), study) pairs")
let fmt = { (s: String, a: String, b: String, c: String, d: String, e: String, f: String) -> String in
    s.padding(toLength: 26, withPad: " ", startingAt: 0) + [a, b, c, d, e].map { String(repeating: " ", count: max(0, 10 - $0.count)) + $0 }.joined() + "  " + f
}
print(fmt("policy", "p50 µs", "p95 µs", "p99 µs", "mean µs", "max µs", "allowed"))
print(String(repeating: "-", count: 86))
for p in [r.consent, r.baseline] {
    let l = p.latency
    print(fmt(p.policy, String(format: "%.1f", l.p50Micros), String(format: "%.1f", l.p95Micros), String(format: "%.1f", l.p99Micros),
              String(format: "%.1f", l.meanMicros), String(format: "%.1f", l.maxMicros), "\(p.allowed) of \(l.count)"))
}
print(fmt("added by consent", String(format: "%.1f", r.addedP50Micros), String(format: "%.1f", r.addedP95Micros),
          String(format: "%.1f", r.addedP99Micros), "", "", ""))
print(String(format: "ratio consent / baseline: p50 %.1f x, p95 %.1f x",
             r.consent.latency.p50Micros / max(r.baseline.latency.p50Micros, 0.001),
             r.consent.latency.p95Micros / max(r.baseline.latency.p95Micros, 0.001)))
print(String(format: "added latency at p95: %.1f µs", r.addedP95Micros) + " (goal < 1000 µs: \(r.goalMet ? "met" : "NOT met"))")
print("population (synchronous=\(r.populationSync)): "
      + String(format: "index rows %.1f s, enrolment %.1f s, signing %.1f s, submitting %.1f s, wall %.1f s",
             r.populationSeconds["indexRows"]!, r.populationSeconds["enroll"]!, r.populationSeconds["sign"]!,
             r.populationSeconds["submit"]!, r.populationSeconds["wall"]!))
if let path = o.json {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    do {
        try e.encode(r).write(to: URL(fileURLWithPath: path))
        log("wrote \(path)")
    } catch { fail("cannot write \(path): \(error)") }
}
exit(o.checkGoal && !r.goalMet ? 3 : 0)
