#!/usr/bin/env python3
"""Federation benchmark: the latency of a STUDY-level C-FIND (DCMTK findscu) at a bridge that asks
two peers in parallel (federated C-FIND), against the same C-FIND at a bridge with the same local
data and no peers (local only), in the same run.

    Benchmarks/federation.py                 50 queries at each, 5 patients
    Benchmarks/federation.py --quick         10 queries at each, 2 patients
    Benchmarks/federation.py --repeat 3 --json results.json

Four bridges on one machine: A, B and C (node-a, node-b, node-c; B has A and C as peers, A and C
share all with B) and D (the same studies as B, no TLS identity, no peers: C-FIND is local only).
Each query is timed twice over: as the wall time of a findscu process (start-up and association
included), and inside one association (findscu --repeat, from its log's microsecond time stamps).
Everything runs inside a private network namespace (`unshare -n`, loopback only: the servers
listen on every interface). The script re-executes itself there. Needs root (or CAP_SYS_ADMIN).

See Benchmarks/README.md for what is measured and how.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from ingest import BenchError, _tail, listening, stop, system_busy_seconds, wait_until  # noqa: E402

FINDSCU = "/usr/bin/findscu"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
NETNS_ENV = "DICOM_BRIDGE_BENCH_NETNS"
SCU_AE = "BENCHSCU"
# (DICOM port, HTTP port, peer API port) of each node, inside the namespace.
PORTS = {"a": (11301, 18301, 19301), "b": (11302, 18302, 19302), "c": (11303, 18303, 19303),
         "d": (11304, 18304, 19304)}


def log(msg):
    print("[federation %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def bridge_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("DICOM_BRIDGE_") and k != NETNS_ENV:
            del env[k]  # only the flags below configure the bridge
    env["TCP_NODELAY"] = "1"  # DCMTK 3.6.7 as Debian builds it leaves Nagle on otherwise
    return env


def run(cmd, what=None, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=bridge_env(), **kw)
    if r.returncode != 0:
        raise BenchError("%s failed (status %d): %s" % (what or " ".join(cmd[:3]), r.returncode,
                                                         (r.stderr or r.stdout).strip()[-2000:]))
    return r.stdout


class Node:
    def __init__(self, binary, scratch, letter, ca, tls=True):
        self.binary, self.ca, self.tls = binary, ca, tls
        self.name = "node-" + letter
        self.ae = "BRIDGE_" + letter.upper()
        self.home = os.path.join(scratch, letter.upper())
        self.dicom_port, self.http_port, self.peer_port = PORTS[letter]
        self.url = "https://127.0.0.1:%d" % self.peer_port
        self.proc = None
        self.logfile = self.home + ".log"

    def init(self):
        cmd = [self.binary, "init", "--home", self.home, "--ae-title", self.ae, "--port", str(self.dicom_port),
               "--http-port", str(self.http_port), "--node-name", self.name, "--study-complete-seconds", "86400"]
        if self.tls:
            cmd += ["--peer-port", str(self.peer_port), "--tls-cert", os.path.join(self.ca, self.name + ".crt"),
                    "--tls-key", os.path.join(self.ca, self.name + ".key"), "--public-url", self.url]
        run(cmd, "init " + self.name)
        self.key = run([self.binary, "ledger", "key", "--home", self.home], "ledger key").strip()
        run([self.binary, "ae", "add", SCU_AE, "--home", self.home], "ae add")

    def add_peer(self, other, share=None):
        cmd = [self.binary, "peer", "add", other.name, "--url", other.url, "--ca", os.path.join(self.ca, "ca.crt"),
               "--verifier-key", other.key, "--home", self.home]
        if share:
            cmd += ["--share", share]
        run(cmd, "peer add %s at %s" % (other.name, self.name))

    def start(self):
        # The product's default log level, as a site runs it.
        out = open(self.logfile, "a")
        self.proc = subprocess.Popen([self.binary, "serve", "--home", self.home], stdout=out, stderr=subprocess.STDOUT,
                                     env=bridge_env(), start_new_session=True)
        out.close()
        ports = [self.dicom_port] + ([self.peer_port] if self.tls else [])
        wait_until(lambda: all(listening(p) for p in ports), 60, "dicom-bridge serve (%s)" % self.name, self.proc,
                   self.logfile)

    def stop(self):
        if self.proc is not None:
            rc = stop(self.proc)
            self.proc = None
            if rc != 0:
                raise BenchError("dicom-bridge serve (%s) exited with status %s on SIGTERM%s"
                                 % (self.name, rc, _tail(self.logfile)))

    def abort(self):
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def store(self, files):
        r = subprocess.run([STORESCU, "-aet", SCU_AE, "-aec", self.ae, "127.0.0.1", str(self.dicom_port)] + files,
                           capture_output=True, text=True, env=bridge_env())
        if r.returncode != 0:
            raise BenchError("storescu to %s failed: %s%s" % (self.name, r.stderr.strip()[-2000:], _tail(self.logfile)))

    def publish(self, study):
        run([self.binary, "manifest", "--study", study, "--home", self.home, "--json"], "manifest at " + self.name)


# ---------------------------------------------------------------------------------------------
# The corpus: P patients x 3 studies, study j of every patient at node A, B or C (j = 0, 1, 2)


def make_corpus(scratch, patients):
    out = os.path.join(scratch, "corpus")
    r = subprocess.run([sys.executable, os.path.join(REPO, "testdata", "generate.py"), out, "--patients", str(patients),
                        "--studies", "3", "--series", "1", "--instances", "2", "--seed", "606", "--modalities", "CT"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("testdata/generate.py failed: %s" % (r.stderr or r.stdout).strip()[-2000:])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    studies = {}  # (patient, study uid) -> files, in the generator's order
    order = []
    for entry in manifest["files"]:
        key = (entry["PatientID"], entry["StudyInstanceUID"])
        if key not in studies:
            studies[key] = []
            order.append(key)
        studies[key].append(os.path.join(out, entry["path"]))
    placement = {"a": [], "b": [], "c": []}  # [(patient, study, files)]
    seen = {}
    for pid, uid in order:
        j = seen.get(pid, 0)
        seen[pid] = j + 1
        placement["abc"[j % 3]].append((pid, uid, studies[(pid, uid)]))
    return placement, sorted(seen)


# ---------------------------------------------------------------------------------------------
# One C-FIND


def find_cmd(node, patient_id):
    return [FINDSCU, "-v", "-S", "-aet", SCU_AE, "-aec", node.ae, "127.0.0.1", str(node.dicom_port),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=%s" % patient_id, "-k", "StudyInstanceUID",
            "-k", "InstanceAvailability"]


RESPONSE = re.compile(r"Find Response: \d+ \(Pending\)")
AVAILABILITY = re.compile(r"\(0008,0056\) CS \[(\w+)")


def timed_find(node, patient_id):
    """Wall seconds of one findscu process (start to exit), the number of matches, and their
    Instance Availability values."""
    t0 = time.perf_counter()
    r = subprocess.run(find_cmd(node, patient_id), capture_output=True, text=True, env=bridge_env(), timeout=120)
    wall = time.perf_counter() - t0
    out = r.stdout + r.stderr
    if r.returncode != 0:
        raise BenchError("findscu at %s failed (status %d): %s%s" % (node.name, r.returncode, out.strip()[-2000:],
                                                                      _tail(node.logfile)))
    return wall, len(RESPONSE.findall(out)), AVAILABILITY.findall(out)


def timed_echo(node):
    """Wall seconds of one echoscu process (C-ECHO at the node): the floor every C-FIND pays for
    starting a DCMTK process and an association."""
    t0 = time.perf_counter()
    r = subprocess.run([ECHOSCU, "-aet", SCU_AE, "-aec", node.ae, "127.0.0.1", str(node.dicom_port)],
                       capture_output=True, text=True, env=bridge_env(), timeout=120)
    wall = time.perf_counter() - t0
    return wall if r.returncode == 0 else None


# findscu's log with microsecond time stamps: one association, --repeat K queries, each timed from
# "Sending Find Request" to "Received Final Find Response" (no process start, no association).
LOG_CONFIG = """log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %D{%H:%M:%S.%Q} %p: %m%n
"""
STAMPED = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3})\.(\d{3}) \w+: (.*)$")


def repeated_find(node, patient_id, repeat, log_config):
    """Seconds of each of `repeat` C-FINDs in one association (findscu --repeat), and the number
    of matches of each."""
    cmd = find_cmd(node, patient_id)
    cmd = [cmd[0], "-lc", log_config, "--repeat", str(repeat)] + [x for x in cmd[1:] if x != "-v"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=bridge_env(), timeout=600)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        raise BenchError("findscu --repeat at %s failed (status %d): %s%s" % (node.name, r.returncode, out.strip()[-2000:],
                                                                               _tail(node.logfile)))
    times, counts, start, n = [], [], None, 0
    for line in out.splitlines():
        m = STAMPED.match(line)
        if not m:
            continue
        h, mi, se, ms, us, msg = m.groups()
        t = int(h) * 3600 + int(mi) * 60 + int(se) + int(ms) / 1e3 + int(us) / 1e6
        if msg.startswith("Sending Find Request"):
            start, n = t, 0
        elif RESPONSE.search(msg):
            n += 1
        elif msg.startswith("Received Final Find Response") and start is not None:
            times.append((t - start) % 86400)
            counts.append(n)
            start = None
    if len(times) != repeat:
        raise BenchError("findscu --repeat %d at %s: %d timed queries in its log" % (repeat, node.name, len(times)))
    return times, counts


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def stats(values):
    return {"count": len(values), "p50ms": 1000 * pct(values, 0.5), "p95ms": 1000 * pct(values, 0.95),
            "p99ms": 1000 * pct(values, 0.99), "meanms": 1000 * statistics.mean(values), "maxms": 1000 * max(values),
            "minms": 1000 * min(values)}


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=50, help="C-FINDs at each of B and D per repeat (default 50)")
    p.add_argument("--patients", type=int, default=5, help="patients, 3 studies each: one at each of A, B, C (default 5)")
    p.add_argument("--quick", action="store_true", help="10 queries, 2 patients: a fast check")
    p.add_argument("--repeat", type=int, default=1, help="rounds of queries (same nodes); all are pooled")
    p.add_argument("--warmup", type=int, default=3, help="untimed C-FINDs at each node first (default 3)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--bridge-bin", help="dicom-bridge binary (default: build .build-bench6/release/dicom-bridge)")
    p.add_argument("--no-build", action="store_true", help="do not (re)build the bridge first")
    p.add_argument("--scratch", default="/var/tmp", help="where the homes go")
    p.add_argument("--keep", action="store_true", help="keep the homes and logs")
    p.add_argument("--quiet-wait", type=float, default=0, help="accepted for Benchmarks/run; unused")
    p.add_argument("--snapshot", action="store_true", help="accepted for Benchmarks/run; unused")
    p.add_argument("--check-goal", action="store_true", help="accepted for Benchmarks/run; there is no goal")
    a = p.parse_args(argv)
    if a.quick:
        a.queries, a.patients = 10, 2
    if a.queries < 1 or a.patients < 1:
        p.error("--queries and --patients must be at least 1")
    return a


def prepare(args):
    if args.bridge_bin is None:
        args.bridge_bin = os.environ.get("DICOM_BRIDGE_BENCH_BIN") or os.path.join(REPO, ".build-bench6", "release",
                                                                                    "dicom-bridge")
        if not args.no_build:
            log("building dicom-bridge (release, scratch path .build-bench6)")
            r = subprocess.run(["swift", "build", "-c", "release", "--package-path", REPO, "--scratch-path",
                                os.path.join(REPO, ".build-bench6"), "--product", "dicom-bridge"], cwd=REPO)
            if r.returncode != 0:
                raise BenchError("swift build failed (a tree others are editing: retry, or --no-build)")
    if not os.access(args.bridge_bin, os.X_OK):
        raise BenchError("no dicom-bridge binary at %s" % args.bridge_bin)
    for tool in (FINDSCU, STORESCU):
        if not os.access(tool, os.X_OK):
            raise BenchError("%s is missing (Debian: apt-get install dcmtk)" % tool)


def reexec_in_netns(argv, args):
    env = dict(os.environ)
    env[NETNS_ENV] = "1"
    forwarded = list(argv)
    if "--bridge-bin" not in forwarded:
        forwarded += ["--bridge-bin", args.bridge_bin]
    if "--no-build" not in forwarded:
        forwarded.append("--no-build")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    cmd = unshare + ["sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, os.path.abspath(__file__)] + forwarded
    log("entering a private network namespace (%s): loopback only" % " ".join(unshare))
    try:
        os.execvpe("unshare", cmd, env)
    except OSError as e:
        raise BenchError("cannot run unshare: %s" % e)


def main(argv):
    args = parse_args(argv)
    if os.environ.get(NETNS_ENV) != "1":
        prepare(args)
        reexec_in_netns(argv, args)
        return 1  # not reached
    binary = args.bridge_bin
    scratch = tempfile.mkdtemp(prefix="dicom-bridge-federation-", dir=args.scratch)
    started = datetime.datetime.now(datetime.timezone.utc)
    nodes = []
    ok = False
    try:
        placement, patients = make_corpus(scratch, args.patients)
        ca = os.path.join(scratch, "ca")
        run([binary, "pki", "init-ca", "--out", ca], "pki init-ca")
        for name in ("node-a", "node-b", "node-c"):
            run([binary, "pki", "issue", "--ca", ca, "--name", name, "--out", ca], "pki issue " + name)
        a, b, c = (Node(binary, scratch, x, ca) for x in "abc")
        d = Node(binary, scratch, "d", ca, tls=False)
        nodes = [a, b, c, d]
        for n in nodes:
            n.init()
        # Each side adds the other before serve: a server's TLS trusts the CAs of the peers it has then.
        for peer in (a, c):
            b.add_peer(peer)
            peer.add_peer(b, share="all")
        for n in nodes:
            n.start()
        log("4 nodes serving; sending %d patients' studies (3 each: one at A, B and C; B's also to D)" % len(patients))
        for n, letter in ((a, "a"), (b, "b"), (c, "c"), (d, "b")):
            n.store([f for _, _, files in placement[letter] for f in files])
        for n, letter in ((a, "a"), (b, "b"), (c, "c"), (d, "b")):
            for _, uid, _ in placement[letter]:
                n.publish(uid)

        # Every node answers: B with its study and A's and C's (NEARLINE), D with its own only.
        for pid in patients:
            _, nb, avb = timed_find(b, pid)
            _, nd, avd = timed_find(d, pid)
            if nb != 3 or nd != 1:
                raise BenchError("patient %s: B (federated) answered %d matches (expected 3: its own, A's and C's), "
                                 "D (local) %d (expected 1)%s" % (pid, nb, nd, _tail(b.logfile)))
            log("  %s: B answers %d matches (%s), D %d (%s)" % (pid, nb, ", ".join(avb), nd, ", ".join(avd)))
        for _ in range(args.warmup):
            for pid in patients:
                timed_find(b, pid)
                timed_find(d, pid)

        fed, loc, echo = [], [], []
        busy0, t0 = system_busy_seconds(), time.monotonic()
        for rep in range(args.repeat):
            log("round %d/%d: %d C-FINDs at B (federated) and at D (local), alternating" % (rep + 1, args.repeat, args.queries))
            for i in range(args.queries):
                pid = patients[i % len(patients)]
                order = ((b, fed, 3), (d, loc, 1)) if i % 2 == 0 else ((d, loc, 1), (b, fed, 3))
                for node, into, expected in order:
                    wall, n, _ = timed_find(node, pid)
                    if n != expected:
                        raise BenchError("%s answered %d matches for %s, expected %d%s"
                                         % (node.name, n, pid, expected, _tail(node.logfile)))
                    into.append(wall)
                e = timed_echo(d)
                if e is not None:
                    echo.append(e)
        # The same queries, each timed inside one association.
        log_config = os.path.join(scratch, "findscu-log.cfg")
        with open(log_config, "w") as fh:
            fh.write(LOG_CONFIG)
        fed_in, loc_in = [], []
        per = max(1, -(-args.queries * args.repeat // len(patients)))
        log("%d C-FINDs at each node in one association per patient (findscu --repeat %d)" % (per * len(patients), per))
        for i, pid in enumerate(patients):
            order = ((b, fed_in, 3), (d, loc_in, 1)) if i % 2 == 0 else ((d, loc_in, 1), (b, fed_in, 3))
            for node, into, expected in order:
                times, counts = repeated_find(node, pid, per, log_config)
                if any(c != expected for c in counts):
                    raise BenchError("%s answered %s matches for %s, expected %d each" % (node.name, counts, pid, expected))
                into.extend(times)
        elapsed = time.monotonic() - t0
        busy = system_busy_seconds() - busy0
        for n in nodes:
            n.stop()
        ok = True
    except BaseException:
        args.keep = True  # what the failed run left is for reading
        raise
    finally:
        for n in nodes:
            n.abort()
        if args.keep:
            log("kept %s" % scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    assert ok
    f, l = stats(fed), stats(loc)
    ratio50, ratio95 = f["p50ms"] / l["p50ms"], f["p95ms"] / l["p95ms"]
    print()
    print("Federated C-FIND: STUDY level, findscu -> B (asks A and C in parallel; 3 matches: 1 local, 2 NEARLINE) "
          "and -> D (same local data, no peers; 1 match); %d queries each over %d patients; wall time of the findscu "
          "process" % (len(fed), len(patients)))
    fmt = "%-28s %9s %9s %9s %9s %9s"
    print(fmt % ("node", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms"))
    print("-" * 78)
    rows = [("B, federated (2 peers)", f), ("D, local only", l)]
    e = stats(echo) if echo else None
    if e:
        rows.append(("D, C-ECHO (process+assoc.)", e))
    for label, s in rows:
        print(fmt % (label, "%.1f" % s["p50ms"], "%.1f" % s["p95ms"], "%.1f" % s["p99ms"], "%.1f" % s["meanms"],
                     "%.1f" % s["maxms"]))
    print("federated / local: p50 %.2f x, p95 %.2f x; added by federation: p50 %.1f ms, p95 %.1f ms"
          % (ratio50, ratio95, f["p50ms"] - l["p50ms"], f["p95ms"] - l["p95ms"]))
    fi, li = stats(fed_in), stats(loc_in)
    print()
    print("The same C-FINDs, each timed inside one association (findscu --repeat, its log's time stamps from the "
          "request to the final response): %d at each node" % len(fed_in))
    print(fmt % ("node", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms"))
    print("-" * 78)
    for label, s in (("B, federated (2 peers)", fi), ("D, local only", li)):
        print(fmt % (label, "%.1f" % s["p50ms"], "%.1f" % s["p95ms"], "%.1f" % s["p99ms"], "%.1f" % s["meanms"],
                     "%.1f" % s["maxms"]))
    print("federated / local: p50 %.2f x, p95 %.2f x; added by federation: p50 %.1f ms, p95 %.1f ms"
          % (fi["p50ms"] / li["p50ms"], fi["p95ms"] / li["p95ms"], fi["p50ms"] - li["p50ms"], fi["p95ms"] - li["p95ms"]))
    print("machine busy %.1f CPU s over %.1f s of queries (%d CPUs)" % (busy, elapsed, os.cpu_count() or 1))
    if args.json:
        doc = {"benchmark": "federation", "started": started.isoformat(), "patients": len(patients),
               "queriesPerNode": len(fed), "repeat": args.repeat, "federated": f, "local": l,
               "echo": e, "ratioP50": ratio50,
               "inAssociation": {"federated": fi, "local": li, "ratioP50": fi["p50ms"] / li["p50ms"],
                                 "ratioP95": fi["p95ms"] / li["p95ms"], "federatedSeconds": fed_in,
                                 "localSeconds": loc_in}, "ratioP95": ratio95, "addedP50ms": f["p50ms"] - l["p50ms"],
               "addedP95ms": f["p95ms"] - l["p95ms"], "federatedSeconds": fed, "localSeconds": loc, "echoSeconds": echo,
               "machineBusyCPUSeconds": busy, "queryPhaseSeconds": elapsed,
               "versions": {"bridgeBinary": binary, "findscu": subprocess.run([FINDSCU, "--version"], capture_output=True,
                                                                             text=True).stdout.splitlines()[0:1],
                            "kernel": platform.release(), "cpus": os.cpu_count()}}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
        log("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        log("FAILED: %s" % e)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
