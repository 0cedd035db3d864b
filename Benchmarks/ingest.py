#!/usr/bin/env python3
"""Ingest benchmark: C-STORE throughput of `dicom-bridge serve` against DCMTK's storescp (the
raw ceiling: files written, no index, no fsync) and Orthanc (the durable peer: SQLite index,
fsync of every instance), all fed the same corpus by DCMTK's storescu over 1 and over 4
associations, in the same run.

    Benchmarks/ingest.py                 1,000 instances, 1 run of each measurement
    Benchmarks/ingest.py --quick         200 instances, a fast check
    Benchmarks/ingest.py --repeat 3 --json results.json

Everything runs inside a private network namespace (`unshare -n`, loopback only): storescp and
Orthanc listen on every interface, and nothing here should be reachable from outside. The
script re-executes itself there. Needs root (or CAP_SYS_ADMIN) for that.

See Benchmarks/README.md for what is measured and how.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import corpus  # noqa: E402

STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
ORTHANC = "/usr/sbin/Orthanc"
NETNS_ENV = "DICOM_BRIDGE_BENCH_NETNS"
# The bridge's default largest PDU. storescp's and Orthanc's defaults (16 KiB) are raised to it
# so that every server receives the same PDU framing.
MAX_PDU = 116794
BRIDGE_PORT, STORESCP_PORT, ORTHANC_DICOM_PORT, ORTHANC_HTTP_PORT = 11112, 11113, 14242, 18042
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("storescp", "bridge", "orthanc")
# Not run unless named in --servers: the bridge with DICOM_BRIDGE_BENCHMARK_NO_ANCHORING=1, which
# skips the ledger's commit hook, to measure what anchoring costs.
OPTIONAL_SERVERS = ("bridge-no-anchoring",)
LABELS = {"storescp": "storescp (DCMTK)", "bridge": "dicom-bridge", "orthanc": "Orthanc",
          "bridge-no-anchoring": "bridge, no anchor"}


def log(msg):
    print("[ingest %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Processes and CPU accounting


def _stat(pid):
    """(ppid, state, utime+stime, cutime+cstime) in clock ticks, or None once the pid is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[1]), rest[0], int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def _children():
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s:
                kids.setdefault(s[0], []).append(int(name))
    return kids


def tree_cpu_seconds(pid):
    """CPU seconds (user + system, every thread) of a process, of the children it has reaped
    (cutime/cstime), and of its descendants still alive or not yet reaped (zombies keep their
    counters). A child is either reaped or listed, never both, so nothing is counted twice once
    the tree is quiet, which is when this is called."""
    kids = _children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        s = _stat(p)
        if s:
            total += s[2] + s[3]
        todo.extend(kids.get(p, []))
    return total / CLK_TCK


def system_busy_seconds():
    """CPU seconds the whole machine spent busy (every CPU, /proc/stat), steal included."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def listening(port):
    """Whether a TCP socket listens on `port` in this network namespace (no connection made:
    storescp --fork would fork a child for a probe)."""
    want = ":%04X" % port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_until(pred, timeout, what, proc=None, logfile=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise BenchError("%s: the server exited (status %s) before it was ready%s"
                             % (what, proc.returncode, _tail(logfile)))
        time.sleep(0.02)
    raise BenchError("%s: not ready after %ds%s" % (what, timeout, _tail(logfile)))


def _tail(path, lines=15):
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "\n--- last lines of %s ---\n%s" % (path, "".join(f.readlines()[-lines:]))


def dcmtk_env():
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"  # DCMTK 3.6.7 as Debian builds it leaves Nagle on otherwise
    return env


def stop(proc, timeout=60):
    """SIGTERM, wait; SIGKILL the process group (ours: started with start_new_session) if stuck."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:  # leftovers of storescp --fork (children of a group we created)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# The three servers. Each: start(dir) -> called AE, port; count() -> instances held; stop().


class Bridge:
    name = "bridge"
    ae = "BRIDGE"

    def __init__(self, binary, name="bridge", extra_env=None):
        self.binary = binary
        self.name = name
        self.extra_env = extra_env or {}

    def start(self, workdir):
        self.home = os.path.join(workdir, "home")
        self.logfile = os.path.join(workdir, "bridge.log")
        env = dcmtk_env()
        for k in list(env):
            if k.startswith("DICOM_BRIDGE_") and k != NETNS_ENV:
                del env[k]  # only the flags below configure the bridge
        env.update(self.extra_env)
        self.env = env
        r = subprocess.run([self.binary, "init", "--home", self.home, "--ae-title", self.ae,
                            "--port", str(BRIDGE_PORT)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("dicom-bridge init failed: %s" % (r.stderr or r.stdout).strip())
        out = open(self.logfile, "w")
        self.proc = subprocess.Popen([self.binary, "serve", "--home", self.home, "--accept-any",
                                      "--log-level", "warning"],
                                     stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()

        # At --log-level warning the "listening for DICOM associations" line (a notice) is not
        # logged: the listening socket, opened after the archive's start-up recovery, says it.
        wait_until(lambda: listening(BRIDGE_PORT), 60, "dicom-bridge serve", self.proc, self.logfile)
        return self.ae, BRIDGE_PORT

    def finish(self):
        """Stops serve (SIGTERM: a clean stop is part of a good run), then asks `status`."""
        rc = stop(self.proc)
        if rc != 0:
            raise BenchError("dicom-bridge serve exited with status %s on SIGTERM%s" % (rc, _tail(self.logfile)))
        r = subprocess.run([self.binary, "status", "--home", self.home, "--json"], env=self.env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("dicom-bridge status failed: %s" % r.stderr.strip())
        s = json.loads(r.stdout)
        stored = 0
        for _, _, files in os.walk(os.path.join(self.home, "store")):
            stored += sum(1 for f in files if f.endswith(".dcm"))
        self.detail = {"status": s, "storeFiles": stored}
        if s.get("storedVersions", s["instances"]) != s["instances"] or stored != s["instances"]:
            raise BenchError("dicom-bridge: status says %d instances, %s versions, %d files in store/"
                             % (s["instances"], s.get("storedVersions"), stored))
        return s["instances"]

    def abort(self):
        stop(self.proc)


class StoreSCP:
    name = "storescp"
    ae = "STORESCP"

    def __init__(self, bit_preserving):
        self.bit_preserving = bit_preserving

    def start(self, workdir):
        self.out = os.path.join(workdir, "out")
        os.makedirs(self.out)
        self.logfile = os.path.join(workdir, "storescp.log")
        # --fork: one process per association, so that 4 associations are served at once (the
        # single-process mode serves one at a time). Used for the 1-association case too, so
        # that both cases run the same server.
        cmd = [STORESCP, "--fork", "-aet", self.ae, "-pdu", str(MAX_PDU), "-dhl", "-od", self.out]
        if self.bit_preserving:
            cmd.append("+B")
        cmd.append(str(STORESCP_PORT))
        out = open(self.logfile, "w")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dcmtk_env(),
                                     start_new_session=True)
        out.close()
        wait_until(lambda: listening(STORESCP_PORT), 30, "storescp", self.proc, self.logfile)
        return self.ae, STORESCP_PORT

    def finish(self):
        stop(self.proc)
        files = [os.path.join(self.out, f) for f in os.listdir(self.out)]
        empty = [f for f in files if os.path.getsize(f) == 0]
        self.detail = {"files": len(files)}
        if empty:
            raise BenchError("storescp: %d empty files" % len(empty))
        return len(files)

    def abort(self):
        stop(self.proc)


class Orthanc:
    name = "orthanc"
    ae = "ORTHANC"

    def start(self, workdir):
        self.logfile = os.path.join(workdir, "orthanc.log")
        config = {
            "Name": "dicom-bridge-benchmark",
            "StorageDirectory": os.path.join(workdir, "storage"),
            "IndexDirectory": os.path.join(workdir, "index"),
            "DicomAet": self.ae,
            "DicomPort": ORTHANC_DICOM_PORT,
            "HttpPort": ORTHANC_HTTP_PORT,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "UnknownSopClassAccepted": True,
            "MaximumPduLength": MAX_PDU,
            "Plugins": [],
            # Everything else is Orthanc's default, notably: the built-in SQLite index,
            # "SyncStorageArea": true (fsync of every stored file), "StorageCompression": false,
            # "DicomThreadsCount": 4, "ConcurrentJobs": 2, "SaveJobs": true, "OverwriteInstances": false.
        }
        path = os.path.join(workdir, "orthanc.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        out = open(self.logfile, "w")
        self.proc = subprocess.Popen([ORTHANC, path], stdout=out, stderr=subprocess.STDOUT, env=dcmtk_env(),
                                     start_new_session=True, cwd=workdir)
        out.close()

        def ready():
            try:
                self._get("/system")
            except OSError:
                return False
            return listening(ORTHANC_DICOM_PORT)
        wait_until(ready, 60, "Orthanc", self.proc, self.logfile)
        return self.ae, ORTHANC_DICOM_PORT

    def _get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (ORTHANC_HTTP_PORT, path), timeout=10) as r:
            return json.load(r)

    def finish(self):
        stats = self._get("/statistics")
        self.detail = {"statistics": stats}
        rc = stop(self.proc)
        if rc not in (0, None):
            raise BenchError("Orthanc exited with status %s on SIGTERM%s" % (rc, _tail(self.logfile)))
        return int(stats["CountInstances"])

    def abort(self):
        stop(self.proc)


# ---------------------------------------------------------------------------------------------
# One measurement


def wait_for_quiet(max_wait):
    """Waits (up to max_wait s) until the machine has been nearly idle for a second: on a shared
    machine, other work running during a measurement is the largest source of noise."""
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        b0 = system_busy_seconds()
        time.sleep(1.0)
        busy = system_busy_seconds() - b0
        if busy < 0.1 * (os.cpu_count() or 1):
            return True
        if time.monotonic() >= deadline:
            log("  the machine is still busy (%.0f%% of %d CPUs): measuring anyway"
                % (100 * busy / (os.cpu_count() or 1), os.cpu_count() or 1))
            return False
        if not said:
            log("  waiting for the machine to be idle (%.0f%% busy with other work)" % (100 * busy / (os.cpu_count() or 1)))
            said = True


def warm(corpus_dir, manifest):
    """Reads the corpus so that every server is fed from the page cache."""
    for rel in manifest["files"]:
        with open(os.path.join(corpus_dir, rel), "rb") as f:
            while f.read(1 << 20):
                pass


def measure(server, associations, corpus_dir, manifest, scratch, keep, quiet_wait, delete_now):
    n = manifest["instances"]
    workdir = tempfile.mkdtemp(prefix="%s-%da-" % (server.name, associations), dir=scratch)
    ok = False
    try:
        os.sync()  # nothing left to write back from before (the corpus's generation, other runs)
        warm(corpus_dir, manifest)
        if quiet_wait > 0:
            wait_for_quiet(quiet_wait)
        try:
            ae, port = server.start(workdir)
        except BaseException:
            if getattr(server, "proc", None) is not None:
                server.abort()
            raise
        parts = [os.path.join(corpus_dir, "part%d" % p) for p in range(manifest["parts"])]
        shares = [parts] if associations == 1 else [[p] for p in parts]
        if associations not in (1, len(parts)):
            raise BenchError("associations must be 1 or %d" % len(parts))
        try:
            cpu0 = tree_cpu_seconds(server.proc.pid)
            busy0 = system_busy_seconds()
            t0 = time.monotonic()
            clients = []
            for i, share in enumerate(shares):
                lf = open(os.path.join(workdir, "storescu-%d.log" % i), "w")
                cmd = [STORESCU, "-aet", "BENCHSCU", "-aec", ae, "+sd", "+r", "127.0.0.1", str(port)] + share
                clients.append((subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=dcmtk_env()), lf))
            client_cpu, failures = 0.0, []
            for i, (p, lf) in enumerate(clients):
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                lf.close()
                client_cpu += ru.ru_utime + ru.ru_stime
                if p.returncode != 0:
                    failures.append("storescu #%d exited with %d%s" % (i, p.returncode, _tail(lf.name)))
            wall = time.monotonic() - t0
            cpu = tree_cpu_seconds(server.proc.pid) - cpu0
            busy = system_busy_seconds() - busy0
        except BaseException:
            server.abort()
            raise
        held = server.finish()
        if failures:
            raise BenchError("; ".join(failures))
        if held != n:
            raise BenchError("%s holds %d instances after the run, expected %d" % (server.name, held, n))
        ok = True
        return {
            "server": server.name, "associations": associations, "instances": n,
            "seconds": wall, "instancesPerSecond": n / wall, "MBPerSecond": manifest["bytes"] / wall / 1e6,
            "serverCPUSeconds": cpu, "clientCPUSeconds": client_cpu,
            # Everything else the machine did meanwhile (kernel write-back, other users): noise.
            "otherCPUSeconds": max(0.0, busy - cpu - client_cpu), "loadAverage": os.getloadavg()[0],
            "verified": held,
            "detail": getattr(server, "detail", None),
        }
    finally:
        if keep or not ok:
            log("kept %s%s" % (workdir, "" if ok else " (the failed run's home, output and logs)"))
        elif delete_now:
            shutil.rmtree(workdir, ignore_errors=True)
        # Otherwise the run's files stay until the whole benchmark is over: on ext4 without a
        # journal (this machine's disk) creating a file skips every inode freed in the last
        # dirty_expire_centisecs (30 s), one by one, so a run that follows the deletion of the
        # previous run's 1,000+ files pays milliseconds per file for it (seen: 30% of the bridge's
        # CPU in __ext4_new_inode/recently_deleted). The mount's online discard adds to deletes.
        os.sync()  # no write-back of this run left to slow down the next one


# ---------------------------------------------------------------------------------------------
# Report


def summarize(runs, servers, association_counts):
    rows = []
    med = {}
    for a in association_counts:
        for s in servers:
            rs = [r for r in runs if r["server"] == s and r["associations"] == a]
            if not rs:
                continue
            m = {k: statistics.median(r[k] for r in rs)
                 for k in ("seconds", "instancesPerSecond", "MBPerSecond", "serverCPUSeconds", "clientCPUSeconds",
                           "otherCPUSeconds")}
            med[(s, a)] = m
            rows.append({"server": s, "associations": a, "runs": len(rs), **m})
    for row in rows:
        a = row["associations"]
        rs = [r for r in runs if r["server"] == row["server"] and r["associations"] == a]
        row["instancesPerSecondMin"] = min(r["instancesPerSecond"] for r in rs)
        row["instancesPerSecondMax"] = max(r["instancesPerSecond"] for r in rs)
        for ref, key in (("storescp", "vsStorescp"), ("orthanc", "vsOrthanc")):
            # The median of the per-repeat ratios: each compares two runs of the same repeat,
            # which ran a few seconds apart on the same machine state.
            ratios = []
            for r in rs:
                base = [b for b in runs if b["server"] == ref and b["associations"] == a and b["run"] == r["run"]]
                if base:
                    ratios.append(r["instancesPerSecond"] / base[0]["instancesPerSecond"])
            row[key] = statistics.median(ratios) if ratios else None
            row[key + "Min"] = min(ratios) if ratios else None
            row[key + "Max"] = max(ratios) if ratios else None
    return rows


def print_table(rows, manifest, repeat):
    print()
    print("Ingest: %d instances, %.1f MB (%.3f MB each), storescu -> server over loopback; median of %d run%s"
          % (manifest["instances"], manifest["bytes"] / 1e6, manifest["bytes"] / manifest["instances"] / 1e6,
             repeat, "" if repeat == 1 else "s"))
    head = ("server", "assoc", "inst/s", "(min-max)", "MB/s", "server CPU s", "CPU ms/inst", "vs storescp", "vs Orthanc")
    fmt = "%-18s %5s %9s %13s %8s %13s %12s %16s %16s"
    print(fmt % head)
    print("-" * 124)
    for r in rows:
        def ratio(key):
            v = r[key]
            if v is None:
                return "-"
            return "%.2f" % v if r[key + "Min"] == r[key + "Max"] else "%.2f (%.2f-%.2f)" % (v, r[key + "Min"], r[key + "Max"])
        print(fmt % (LABELS[r["server"]], r["associations"], "%.1f" % r["instancesPerSecond"],
                     "%.0f-%.0f" % (r["instancesPerSecondMin"], r["instancesPerSecondMax"]),
                     "%.1f" % r["MBPerSecond"], "%.2f" % r["serverCPUSeconds"],
                     "%.2f" % (1000 * r["serverCPUSeconds"] / manifest["instances"]),
                     ratio("vsStorescp"), ratio("vsOrthanc")))
    print("ratios: the median of the per-repeat ratios (min-max over repeats); servers interleaved, each repeat "
          "starting with the next one")
    print()


def goals(rows):
    out = []
    for r in rows:
        if r["server"] != "bridge":
            continue
        g = {"associations": r["associations"]}
        for key in ("vsStorescpMin", "vsStorescpMax", "vsOrthancMin", "vsOrthancMax"):
            if r.get(key) is not None:
                g[key] = r[key]
        if r["vsStorescp"] is not None:
            g["vsStorescp"] = r["vsStorescp"]
            g["storescpGoalMet"] = r["vsStorescp"] >= 0.9
        if r["vsOrthanc"] is not None:
            g["vsOrthanc"] = r["vsOrthanc"]
            g["orthancGoalMet"] = r["vsOrthanc"] >= 3.0
        out.append(g)
    return out


def print_goals(gs):
    for g in gs:
        parts = []
        if "vsStorescp" in g:
            parts.append("%.2f x storescp (goal >= 0.9: %s)" % (g["vsStorescp"], "met" if g["storescpGoalMet"] else "NOT met"))
        if "vsOrthanc" in g:
            parts.append("%.2f x Orthanc (goal >= 3: %s)" % (g["vsOrthanc"], "met" if g["orthancGoalMet"] else "NOT met"))
        print("dicom-bridge, %d association%s: %s" % (g["associations"], "" if g["associations"] == 1 else "s",
                                                     "; ".join(parts)))


def versions(bridge_bin):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return "unknown (%s)" % e
    v = {"storescu": first_line([STORESCU, "--version"]), "storescp": first_line([STORESCP, "--version"]),
         "orthanc": first_line([ORTHANC, "--version"]), "python": platform.python_version(),
         "kernel": platform.release(), "cpus": os.cpu_count()}
    v["bridgeBinary"] = bridge_bin
    v["bridgeSource"] = git_state()
    snap = os.path.join(os.path.dirname(os.path.dirname(bridge_bin or "/")), "snapshot.json")
    if os.path.exists(snap):
        with open(snap) as f:
            v["bridgeSource"] = dict(json.load(f), snapshot=True)
    if bridge_bin and os.path.exists(bridge_bin):
        v["bridgeBinaryBuilt"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(bridge_bin), datetime.timezone.utc).isoformat()
    return v


def git_state():
    """The checkout's commit and whether the bridge's sources differ from it (read-only git)."""
    try:
        head = subprocess.run(["git", "--no-optional-locks", "-C", REPO, "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", REPO, "status", "--porcelain", "--",
                                "Sources", "CDcmtk", "Package.swift"], capture_output=True, text=True).stdout.strip()
        return {"commit": head, "sourcesModified": bool(dirty)}
    except OSError:
        return {}


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=1000, help="corpus size (default 1000)")
    p.add_argument("--quick", action="store_true", help="200 instances: a fast check")
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the median is reported")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="subset of storescp,bridge,orthanc, in that order by default; bridge-no-anchoring "
                        "(the bridge with DICOM_BRIDGE_BENCHMARK_NO_ANCHORING=1) may be added")
    p.add_argument("--associations", default="1,4", help="association counts: 1, 4 or 1,4")
    p.add_argument("--bridge-bin", help="dicom-bridge binary (default: build .build-bench/release/dicom-bridge)")
    p.add_argument("--no-build", action="store_true", help="do not (re)build the bridge first")
    p.add_argument("--snapshot", action="store_true",
                   help="build from a copy of the working tree (into .build-bench-snapshot): for a tree others are editing")
    p.add_argument("--storescp-normal", action="store_true",
                   help="run storescp without +B (parse and re-encode each dataset) instead of bit-preserving")
    p.add_argument("--corpus-dir", default=os.path.join(HERE, ".corpus"), help="corpus cache (default Benchmarks/.corpus)")
    p.add_argument("--scratch", default="/var/tmp", help="where server homes and outputs go (a disk, not tmpfs)")
    p.add_argument("--keep", action="store_true", help="keep server homes, outputs and logs")
    p.add_argument("--quiet-wait", type=float, default=60, metavar="S",
                   help="before each measurement, wait up to S seconds for the machine to be idle (0: don't)")
    p.add_argument("--check-goal", action="store_true", help="exit 3 when the bridge misses a goal")
    a = p.parse_args(argv)
    if a.quick:
        a.instances = 200
    if a.instances < 4:
        p.error("--instances must be at least 4")
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    for s in a.servers:
        if s not in SERVERS + OPTIONAL_SERVERS:
            p.error("unknown server %r" % s)
    a.associations = [int(x) for x in a.associations.split(",")]
    for x in a.associations:
        if x not in (1, 4):
            p.error("associations must be 1 or 4")
    return a


def prepare(args):
    """Outside the namespace: build the bridge, generate the corpus."""
    if any(s.startswith("bridge") for s in args.servers):
        if args.bridge_bin is None:
            args.bridge_bin = os.environ.get("DICOM_BRIDGE_BENCH_BIN") or os.path.join(
                REPO, ".build-bench", "release", "dicom-bridge")
            if args.snapshot:
                args.bridge_bin = os.path.join(REPO, ".build-bench-snapshot", "release", "dicom-bridge")
            if not args.no_build:
                package = REPO
                scratch = ".build-bench"
                if args.snapshot:
                    # A copy of the working tree taken now: other people's edits during the build
                    # ("input file ... was modified during the build") cannot break it.
                    package = os.path.join(args.scratch, "dicom-bridge-bench-source")
                    shutil.rmtree(package, ignore_errors=True)
                    os.makedirs(package)
                    for name in os.listdir(REPO):
                        if name in ("Package.swift", "Package.resolved", "Sources", "CDcmtk", "Tests"):
                            src = os.path.join(REPO, name)
                            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(package, name))
                    scratch = os.path.join(REPO, ".build-bench-snapshot")
                    log("building dicom-bridge from a snapshot of the working tree (%s)" % package)
                    info = git_state()
                    info["takenAt"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
                    os.makedirs(scratch, exist_ok=True)
                    with open(os.path.join(scratch, "snapshot.json"), "w") as f:
                        json.dump(info, f)
                else:
                    log("building dicom-bridge (release, scratch path .build-bench)")
                r = subprocess.run(["swift", "build", "-c", "release", "--package-path", package,
                                    "--scratch-path", scratch, "--product", "dicom-bridge"], cwd=REPO)
                if r.returncode != 0:
                    raise BenchError("swift build failed (a tree others are editing: try --snapshot, or --no-build "
                                     "to use the binary already built)")
        if not os.access(args.bridge_bin, os.X_OK):
            raise BenchError("no dicom-bridge binary at %s" % args.bridge_bin)
    for tool in (STORESCU, STORESCP, ORTHANC):
        if not os.access(tool, os.X_OK):
            raise BenchError("%s is missing (Debian: apt-get install dcmtk orthanc)" % tool)
    corpus.ensure(args.corpus_dir, args.instances, log=log)
    fs = subprocess.run(["df", "-T", args.scratch], capture_output=True, text=True).stdout.splitlines()[-1].split()
    if fs[1] == "tmpfs":
        log("warning: %s is tmpfs: fsync costs nothing there; use --scratch on a disk" % args.scratch)


def reexec_in_netns(argv, args):
    env = dict(os.environ)
    env[NETNS_ENV] = "1"
    forwarded = list(argv)
    if args.bridge_bin and "--bridge-bin" not in forwarded:
        forwarded += ["--bridge-bin", args.bridge_bin]
    if "--no-build" not in forwarded:
        forwarded.append("--no-build")
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, os.path.abspath(__file__)] + forwarded
    log("entering a private network namespace (unshare -n): loopback only")
    try:
        os.execvpe("unshare", cmd, env)
    except OSError as e:
        raise BenchError("cannot run unshare -n (root needed): %s" % e)


def main(argv):
    args = parse_args(argv)
    if os.environ.get(NETNS_ENV) != "1":
        prepare(args)
        reexec_in_netns(argv, args)
        return 1  # not reached
    corpus_dir, manifest = corpus.ensure(args.corpus_dir, args.instances, log=log)
    scratch = tempfile.mkdtemp(prefix="dicom-bridge-ingest-", dir=args.scratch)
    make = {"storescp": lambda: StoreSCP(not args.storescp_normal), "bridge": lambda: Bridge(args.bridge_bin),
            "orthanc": lambda: Orthanc(),
            "bridge-no-anchoring": lambda: Bridge(args.bridge_bin, "bridge-no-anchoring",
                                                  {"DICOM_BRIDGE_BENCHMARK_NO_ANCHORING": "1"})}
    runs, noisy = [], []
    started = datetime.datetime.now(datetime.timezone.utc)
    count = args.repeat * len(args.associations) * len(args.servers)
    need = count * (manifest["bytes"] * 1.2 + 64e6)
    st = os.statvfs(scratch)
    delete_now = st.f_bavail * st.f_frsize < need + 2e9
    if delete_now:
        log("warning: not enough room in %s to keep every run's files until the end (%.1f GB): each run's "
            "files are deleted after it, which slows file creation in the next run on ext4 without a journal"
            % (args.scratch, need / 1e9))
    try:
        for rep in range(args.repeat):
            # Interleaved: each repeat starts with the next server, so that no server always runs
            # first (on a fresh page cache) or last (after the others' write-back).
            order = args.servers[rep % len(args.servers):] + args.servers[:rep % len(args.servers)]
            for a in args.associations:
                for s in order:
                    log("run %d/%d: %s, %d association%s, %d instances"
                        % (rep + 1, args.repeat, s, a, "" if a == 1 else "s", manifest["instances"]))
                    r = measure(make[s](), a, corpus_dir, manifest, scratch, args.keep, args.quiet_wait, delete_now)
                    r["run"] = rep + 1
                    log("  %.1f instances/s, %.1f MB/s, server CPU %.2f s (clients %.2f s, other %.2f s), "
                        "%d instances verified" % (r["instancesPerSecond"], r["MBPerSecond"], r["serverCPUSeconds"],
                                                   r["clientCPUSeconds"], r["otherCPUSeconds"], r["verified"]))
                    if r["otherCPUSeconds"] > 0.15 * r["seconds"] * (os.cpu_count() or 1):
                        log("  warning: the machine was busy with other work during this run (%.2f CPU s "
                            "besides server and clients): expect noise; use --repeat" % r["otherCPUSeconds"])
                        noisy.append(r)
                    runs.append(r)
    except BaseException:
        args.keep = True  # what the failed run left is for reading
        raise
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = summarize(runs, args.servers, args.associations)
    print_table(rows, manifest, args.repeat)
    gs = goals(rows)
    print_goals(gs)
    if noisy:
        print("note: %d of %d runs shared the machine with other work (see warnings above)" % (len(noisy), len(runs)))
    if args.json:
        doc = {
            "benchmark": "ingest", "started": started.isoformat(), "instances": manifest["instances"],
            "corpus": {k: v for k, v in manifest.items() if k != "files"}, "repeat": args.repeat,
            "maxPDU": MAX_PDU, "storescpMode": "normal" if args.storescp_normal else "bit-preserving",
            "versions": versions(args.bridge_bin), "results": rows, "goals": gs, "runs": runs,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        log("wrote %s" % args.json)
    if args.check_goal and any(not g.get("storescpGoalMet", True) or not g.get("orthancGoalMet", True) for g in gs):
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        log("FAILED: %s" % e)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
