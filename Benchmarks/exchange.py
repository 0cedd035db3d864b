#!/usr/bin/env python3
"""Exchange benchmark: `dicom-bridge fetch` of one study from node A to node B over loopback,
with every byte verified against A's ledger, against a plain HTTPS download of the same
instances by `curl` with the same certificates and the same parallelism, in the same run; and
the fetch's peak memory for a small and a large study (it should not grow with the study).

    Benchmarks/exchange.py                 a 1,000-instance study (and a 200-instance one for memory)
    Benchmarks/exchange.py --quick         200 instances (and 50): a fast check
    Benchmarks/exchange.py --repeat 3 --json results.json

Everything runs inside a private network namespace (`unshare -n`, loopback only): the peer API
listens on every interface, and nothing here should be reachable from outside. The script
re-executes itself there. Needs root (or CAP_SYS_ADMIN) for that.

See Benchmarks/README.md for what is measured and how.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
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
import ingest  # noqa: E402  (its process, CPU and readiness helpers)
from ingest import BenchError, _tail, listening, stop, system_busy_seconds, tree_cpu_seconds, wait_until  # noqa: E402

STORESCU = "/usr/bin/storescu"
CURL = "/usr/bin/curl"
NETNS_ENV = "DICOM_BRIDGE_BENCH_NETNS"
# Node A (the source) and node B (the fetcher): DICOM port, ledger HTTP port, peer API port.
PORTS = {"a": (11112, 8787, 8443), "b": (11113, 8788, 8444)}
# The goals: the fetch at 0.8 or more of curl's rate; its peak RSS for the large study at most
# this many times that for the small one ("does not grow with the size of the study").
RATIO_GOAL = 0.8
RSS_GROWTH_LIMIT = 1.25


def log(msg):
    print("[exchange %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Corpus: one study (the ingest corpus has 4 studies per size), the same CT instances


def study_corpus(cache_dir, n, log=log):
    """A one-study corpus of n CT instances (2 series), 512x512, 16 bit, Explicit VR Little
    Endian, ~525 KB each: the instances of Benchmarks/corpus.py, in one study. Generated once
    into <cache>/study-n<N>/ and reused."""
    directory = os.path.join(cache_dir, "study-n%d" % n)
    path = os.path.join(directory, "manifest.json")
    try:
        with open(path) as f:
            m = json.load(f)
        if m.get("format") == corpus.FORMAT_VERSION and m.get("instances") == n and all(
                os.path.isfile(os.path.join(directory, rel)) for rel in m["files"]):
            return directory, m
    except (OSError, ValueError):
        pass
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    log("generating a %d-instance one-study corpus in %s (once; cached)" % (n, directory))
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    rng = np.random.default_rng(20240612 + n)
    base = corpus._phantom(np)
    study_uid = corpus._uid()
    series = [(corpus._uid(), s + 1) for s in range(2)]
    files, total = [], 0
    for i in range(n):
        series_uid, series_number = series[0] if i < (n + 1) // 2 else series[1]
        sop_uid = corpus._uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(corpus.CT_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        meta.TransferSyntaxUID = UID(corpus.EXPLICIT_VR_LITTLE_ENDIAN)
        meta.ImplementationClassUID = UID("2.25.170117154458405385735925425411911457535")
        meta.ImplementationVersionName = "DB_BENCH_1"
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = corpus.CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate, ds.StudyTime = "20240612", "091500"
        ds.AccessionNumber = "XCH%05d" % n
        ds.Modality = "CT"
        ds.Manufacturer = "dicom-bridge benchmark"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Exchange benchmark CT study, %d instances" % n
        ds.SeriesDescription = "Axial %d" % series_number
        ds.PatientName, ds.PatientID = "BENCH^EXCHANGE", "BENCHX%05d" % n
        ds.PatientBirthDate, ds.PatientSex = "19650505", "O"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness, ds.KVP = "1.0", "120"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = str(series_number)
        ds.InstanceNumber = str(i + 1)
        ds.ImagePositionPatient = ["-250.0", "-250.0", "%.1f" % (-i * 1.0)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = study_uid + ".1"
        ds.SliceLocation = "%.1f" % (-i * 1.0)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = corpus.ROWS, corpus.COLUMNS
        ds.PixelSpacing = ["0.976562", "0.976562"]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        noise = rng.normal(0.0, 12.0, size=(corpus.ROWS, corpus.COLUMNS))
        ds.PixelData = np.clip(base + noise, 0, 4095).astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        rel = "CT%06d.dcm" % i
        ds.save_as(os.path.join(directory, rel), enforce_file_format=True)
        files.append(rel)
        total += os.path.getsize(os.path.join(directory, rel))
    m = {"format": corpus.FORMAT_VERSION, "instances": n, "bytes": total, "studyInstanceUID": study_uid,
         "series": 2, "transferSyntax": corpus.EXPLICIT_VR_LITTLE_ENDIAN, "sopClass": corpus.CT_IMAGE_STORAGE,
         "pydicom": pydicom.__version__, "files": files}
    with open(path + ".tmp", "w") as f:
        json.dump(m, f)
    os.replace(path + ".tmp", path)
    return directory, m


# ---------------------------------------------------------------------------------------------
# The two nodes


def bridge_env():
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("DICOM_BRIDGE_") and k != NETNS_ENV:
            del env[k]  # only the flags below configure the bridge
    env["TCP_NODELAY"] = "1"  # for storescu (DCMTK), as in ingest
    return env


def run(cmd, what=None, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=bridge_env(), **kw)
    if r.returncode != 0:
        raise BenchError("%s failed (status %d): %s" % (what or " ".join(cmd[:3]), r.returncode,
                                                         (r.stderr or r.stdout).strip()[-2000:]))
    return r.stdout


class Node:
    def __init__(self, binary, home, name, ports, ca):
        self.binary, self.home, self.name, self.ca = binary, home, name, ca
        self.dicom_port, self.http_port, self.peer_port = ports
        self.url = "https://127.0.0.1:%d" % self.peer_port
        self.proc = None
        self.logfile = home + ".log"

    def init(self, ae):
        run([self.binary, "init", "--home", self.home, "--ae-title", ae, "--port", str(self.dicom_port),
             "--http-port", str(self.http_port), "--node-name", self.name, "--peer-port", str(self.peer_port),
             "--tls-cert", os.path.join(self.ca, self.name + ".crt"), "--tls-key", os.path.join(self.ca, self.name + ".key"),
             "--public-url", self.url, "--study-complete-seconds", "86400"], "init " + self.name)
        self.key = run([self.binary, "ledger", "key", "--home", self.home], "ledger key").strip()

    def add_peer(self, other, share=None):
        cmd = [self.binary, "peer", "add", other.name, "--url", other.url, "--ca", os.path.join(self.ca, "ca.crt"),
               "--verifier-key", other.key, "--home", self.home]
        if share:
            cmd += ["--share", share]
        run(cmd, "peer add %s at %s" % (other.name, self.name))

    def start(self):
        # The product's default log level (info: one line per peer request), as a site runs it.
        out = open(self.logfile, "a")
        self.proc = subprocess.Popen([self.binary, "serve", "--home", self.home], stdout=out, stderr=subprocess.STDOUT,
                                     env=bridge_env(), start_new_session=True)
        out.close()
        wait_until(lambda: listening(self.dicom_port) and listening(self.peer_port), 60,
                   "dicom-bridge serve (%s)" % self.name, self.proc, self.logfile)

    def stop(self):
        if self.proc is not None:
            rc = stop(self.proc)
            self.proc = None
            if rc != 0:
                raise BenchError("dicom-bridge serve (%s) exited with status %s on SIGTERM%s" % (self.name, rc, _tail(self.logfile)))

    def abort(self):
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def status(self):
        return json.loads(run([self.binary, "status", "--home", self.home, "--json"], "status"))

    def checkpoint_size(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/checkpoint" % self.http_port, timeout=10) as r:
            return int(r.read().decode().split("\n")[1])


def curl_base(ca, client):
    return [CURL, "--silent", "--show-error", "--fail", "--cacert", os.path.join(ca, "ca.crt"),
            "--cert", os.path.join(ca, client + ".crt"), "--key", os.path.join(ca, client + ".key")]


def publish(a, study, ca):
    """Publishes the study's manifest at A, waits for a signed checkpoint that covers it, and
    returns its document entry and its instance list (as the peer API gives it to node-b)."""
    entry = json.loads(run([a.binary, "manifest", "--study", study["studyInstanceUID"], "--home", a.home, "--json"],
                           "manifest"))
    index = entry.get("ledgerIndex")
    deadline = time.monotonic() + 30
    while index is not None and a.checkpoint_size() <= index:
        if time.monotonic() > deadline:
            raise BenchError("A's checkpoint does not cover the manifest's ledger entry %s after 30 s" % index)
        time.sleep(0.2)
    r = subprocess.run(curl_base(ca, "node-b") + ["-H", "Accept: application/json",
                                                  "%s/documents/%s/instances" % (a.url, entry["uniqueId"])],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("curl of the manifest's instance list failed: %s" % r.stderr.strip())
    members = json.loads(r.stdout)
    if len(members) != study["instances"]:
        raise BenchError("A's manifest lists %d instances, %d were sent" % (len(members), study["instances"]))
    return entry, members


# ---------------------------------------------------------------------------------------------
# One measurement of each kind


def wait_for_quiet(max_wait):
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        b0 = system_busy_seconds()
        time.sleep(1.0)
        busy = system_busy_seconds() - b0
        if busy < 0.1 * (os.cpu_count() or 1):
            return
        if time.monotonic() >= deadline:
            log("  the machine is still busy (%.0f%% of %d CPUs): measuring anyway" % (100 * busy / (os.cpu_count() or 1), os.cpu_count() or 1))
            return
        if not said:
            log("  waiting for the machine to be idle (%.0f%% busy with other work)" % (100 * busy / (os.cpu_count() or 1)))
            said = True


class Stuck(BenchError):
    pass


def timed(cmd, stdout, a, timeout, errpath):
    """Runs cmd; wall time, its rusage (peak RSS, CPU), A's CPU and everyone else's meanwhile.
    A client still running after `timeout` seconds is killed (BenchError)."""
    os.sync()
    a_cpu0, busy0 = tree_cpu_seconds(a.proc.pid), system_busy_seconds()
    t0_wall, t0 = time.time(), time.monotonic()
    with open(errpath, "w") as err:
        p = subprocess.Popen(cmd, stdout=stdout, stderr=err, env=bridge_env())
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        if time.monotonic() - t0 > timeout:
            p.kill()
            os.wait4(p.pid, 0)
            raise Stuck("%s still running after %d s: killed. A's peer API may have stopped answering (its last log "
                        "lines follow; `gdb -p %d -batch -ex 'thread apply all bt'` on a stuck A shows where)%s"
                        % (os.path.basename(cmd[0]), timeout, a.proc.pid, _tail(a.logfile, 5)))
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    a_cpu = tree_cpu_seconds(a.proc.pid) - a_cpu0
    busy = system_busy_seconds() - busy0
    cpu = ru.ru_utime + ru.ru_stime
    with open(errpath, errors="replace") as f:
        stderr = f.read()
    return {"rc": p.returncode, "stderr": stderr, "seconds": wall, "startedAt": t0_wall,
            "peakRSSMB": ru.ru_maxrss / 1024, "clientCPUSeconds": cpu, "sourceCPUSeconds": a_cpu,
            "otherCPUSeconds": max(0.0, busy - cpu - a_cpu)}


def measure_fetch(b_home, binary, a, study, size_bytes, concurrency, workdir, timeout):
    out_path = os.path.join(workdir, "fetch-%d.json" % study["instances"])
    with open(out_path, "w") as out:
        r = timed([binary, "fetch", "--peer", "node-a", "--study", study["studyInstanceUID"], "--home", b_home,
                   "--json", "--concurrency", str(concurrency)], out, a, timeout, out_path[:-5] + ".stderr")
    with open(out_path) as f:
        text = f.read()
    if r["rc"] != 0:
        raise BenchError("dicom-bridge fetch exited with %d: %s %s" % (r["rc"], text.strip()[-2000:], r["stderr"].strip()[-2000:]))
    report = json.loads(text)
    s = report["studies"][0]
    if report["instances"] != study["instances"] or s["resumed"] != 0 or len(s["paths"]) != study["instances"] + 1:
        raise BenchError("fetch: %d instances (%d resumed, %d paths), expected %d fetched anew"
                         % (report["instances"], s["resumed"], len(s["paths"]), study["instances"]))
    # Where the time went: the staged files keep their mtime when the store renames them in, so
    # the last one written is the end of the download phase; the rest is storing and indexing.
    mtimes = [os.path.getmtime(os.path.join(b_home, p)) for p in s["paths"]]
    r.update({"kind": "fetch", "MBPerSecond": size_bytes / r["seconds"] / 1e6,
              "reportedSeconds": report["seconds"], "reportedMBPerSecond": report["megabytesPerSecond"],
              "reportedBytes": report["bytes"], "downloadPhaseSeconds": max(mtimes) - r["startedAt"]})
    r.pop("stderr")
    return r


def measure_curl(a, ca, study_uid, members, size_bytes, concurrency, workdir, timeout):
    """The baseline: the same instance URLs (with ?sha256=, Accept: application/dicom), node-b's
    certificate, `concurrency` transfers at once. Each body goes to a file in the scratch
    directory (a disk, like B's store; not /dev/null, so that both pay for writing the bytes);
    curl does not fsync, hash or index them."""
    outdir = os.path.join(workdir, "curl-%d" % len(members))
    os.makedirs(outdir)
    config = os.path.join(workdir, "curl-%d.cfg" % len(members))
    with open(config, "w") as f:
        for m in members:
            f.write('url = "%s/studies/%s/series/%s/instances/%s?sha256=%s"\n'
                    % (a.url, study_uid, m["seriesInstanceUID"], m["sopInstanceUID"], m["sha256"]))
            f.write('output = "%s"\n' % os.path.join(outdir, m["sha256"] + ".dcm"))
    r = timed(curl_base(ca, "node-b") + ["--no-progress-meter", "--parallel", "--parallel-immediate", "--parallel-max",
                                         str(concurrency), "-H", "Accept: application/dicom", "--config", config],
              subprocess.DEVNULL, a, timeout, config[:-4] + ".stderr")
    if r["rc"] != 0:
        raise BenchError("curl exited with %d: %s" % (r["rc"], r["stderr"].strip()[-2000:]))
    r.pop("stderr")
    # Checked after the clock stopped: every body is the instance the manifest lists.
    for m in members:
        path = os.path.join(outdir, m["sha256"] + ".dcm")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
        if h.hexdigest() != m["sha256"] or os.path.getsize(path) != m["size"]:
            raise BenchError("curl: %s is not the listed instance %s" % (path, m["sopInstanceUID"]))
    r.update({"kind": "curl", "MBPerSecond": size_bytes / r["seconds"] / 1e6})
    return r


# ---------------------------------------------------------------------------------------------
# Report


def summarize(runs, sizes):
    rows = []
    for n in sizes:
        row = {"instances": n}
        for kind in ("fetch", "curl"):
            rs = [r for r in runs if r["kind"] == kind and r["instances"] == n]
            keys = ["seconds", "MBPerSecond", "peakRSSMB", "clientCPUSeconds", "sourceCPUSeconds", "otherCPUSeconds"]
            if kind == "fetch":
                keys += ["reportedMBPerSecond", "downloadPhaseSeconds"]
            row[kind] = {k: statistics.median(r[k] for r in rs) for k in keys}
            row[kind]["runs"] = len(rs)
        # The median of the per-run ratios (fetch and curl of one repeat ran back to back).
        ratios = [r["ratio"] for r in runs if r["kind"] == "fetch" and r["instances"] == n]
        row["ratio"] = statistics.median(ratios)
        row["ratioMin"], row["ratioMax"] = min(ratios), max(ratios)
        rows.append(row)
    return rows


def print_table(rows, studies, concurrency, repeat):
    print()
    print("Exchange: fetch from node A to node B over loopback (mutual TLS), %d transfers at once; median of %d run%s"
          % (concurrency, repeat, "" if repeat == 1 else "s"))
    fmt = "%-9s %-24s %8s %8s %10s %9s %12s %10s"
    print(fmt % ("study", "client", "seconds", "MB/s", "peak RSS", "CPU s", "source CPU s", "vs curl"))
    print("-" * 97)
    for row in rows:
        st = studies[row["instances"]]
        label = "%d inst" % row["instances"]
        for kind, name in (("fetch", "dicom-bridge fetch"), ("curl", "curl --parallel")):
            r = row[kind]
            print(fmt % (label, name, "%.2f" % r["seconds"], "%.1f" % r["MBPerSecond"], "%.1f MB" % r["peakRSSMB"],
                         "%.2f" % r["clientCPUSeconds"], "%.2f" % r["sourceCPUSeconds"],
                         "%.2f" % row["ratio"] if kind == "fetch" else "-"))
            label = "%.0f MB" % (st["bytes"] / 1e6)
        f = row["fetch"]
        print("%9s fetch: downloading until %.2f s, storing and indexing the rest (%.2f s); its own report: %.1f MB/s"
              % ("", f["downloadPhaseSeconds"], f["seconds"] - f["downloadPhaseSeconds"], f["reportedMBPerSecond"]))
    print()


def goals(rows):
    large = max(rows, key=lambda r: r["instances"])
    g = {"instances": large["instances"], "vsCurl": large["ratio"], "vsCurlMin": large["ratioMin"],
         "vsCurlMax": large["ratioMax"], "vsCurlGoalMet": large["ratio"] >= RATIO_GOAL}
    if len(rows) > 1:
        small = min(rows, key=lambda r: r["instances"])
        growth = large["fetch"]["peakRSSMB"] / small["fetch"]["peakRSSMB"]
        g.update({"smallInstances": small["instances"], "peakRSSMBSmall": small["fetch"]["peakRSSMB"],
                  "peakRSSMBLarge": large["fetch"]["peakRSSMB"], "rssGrowth": growth,
                  "rssGoalMet": growth <= RSS_GROWTH_LIMIT})
    return g


def print_goals(g):
    print("dicom-bridge fetch, %d instances: %.2f x curl, median of the per-run ratios (%.2f-%.2f) (goal >= %.1f: %s)"
          % (g["instances"], g["vsCurl"], g["vsCurlMin"], g["vsCurlMax"], RATIO_GOAL,
             "met" if g["vsCurlGoalMet"] else "NOT met"))
    if "rssGrowth" in g:
        print("peak RSS of the fetch: %.1f MB for %d instances, %.1f MB for %d: x %.2f (goal <= %.2f: %s)"
              % (g["peakRSSMBSmall"], g["smallInstances"], g["peakRSSMBLarge"], g["instances"], g["rssGrowth"],
                 RSS_GROWTH_LIMIT, "met" if g["rssGoalMet"] else "NOT met"))


def versions(bridge_bin):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return "unknown (%s)" % e
    v = {"curl": first_line([CURL, "--version"]), "storescu": first_line([STORESCU, "--version"]),
         "python": platform.python_version(), "kernel": platform.release(), "cpus": os.cpu_count(),
         "bridgeBinary": bridge_bin, "bridgeSource": ingest.git_state()}
    snap = os.path.join(os.path.dirname(os.path.dirname(bridge_bin or "/")), "snapshot.json")
    if os.path.exists(snap):
        with open(snap) as f:
            v["bridgeSource"] = dict(json.load(f), snapshot=True)
    if bridge_bin and os.path.exists(bridge_bin):
        v["bridgeBinaryBuilt"] = datetime.datetime.fromtimestamp(os.path.getmtime(bridge_bin), datetime.timezone.utc).isoformat()
    return v


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=1000, help="instances in the study fetched (default 1000)")
    p.add_argument("--small", type=int, default=200,
                   help="instances in the second, smaller study, for the memory comparison (default 200; 0: none)")
    p.add_argument("--quick", action="store_true", help="200 instances and 50: a fast check")
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the median is reported")
    p.add_argument("--concurrency", type=int, default=8, help="transfers at once, for fetch and curl alike (default 8, fetch's)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--bridge-bin", help="dicom-bridge binary (default: build .build-bench/release/dicom-bridge)")
    p.add_argument("--no-build", action="store_true", help="do not (re)build the bridge first")
    p.add_argument("--snapshot", action="store_true",
                   help="build from a copy of the working tree (into .build-bench-snapshot): for a tree others are editing")
    p.add_argument("--corpus-dir", default=os.path.join(HERE, ".corpus"), help="corpus cache (default Benchmarks/.corpus)")
    p.add_argument("--scratch", default="/var/tmp", help="where node homes and curl's output go (a disk, not tmpfs)")
    p.add_argument("--keep", action="store_true", help="keep node homes, outputs and logs")
    p.add_argument("--quiet-wait", type=float, default=60, metavar="S",
                   help="before each measurement, wait up to S seconds for the machine to be idle (0: don't)")
    p.add_argument("--timeout", type=float, default=600, metavar="S",
                   help="a fetch or curl still running after S seconds is killed and the benchmark fails (default 600)")
    p.add_argument("--check-goal", action="store_true", help="exit 3 when a goal is missed")
    a = p.parse_args(argv)
    if a.quick:
        a.instances, a.small = 200, 50
    if a.instances < 2 or a.small < 0 or a.small >= a.instances:
        p.error("need --instances >= 2 and 0 <= --small < --instances")
    if not 1 <= a.concurrency <= 64:
        p.error("--concurrency must be 1-64 (fetch's limit)")
    return a


def prepare(args):
    """Outside the namespace: build the bridge (as ingest does), generate the corpora."""
    if args.bridge_bin is None:
        args.bridge_bin = os.environ.get("DICOM_BRIDGE_BENCH_BIN") or os.path.join(
            REPO, ".build-bench-snapshot" if args.snapshot else ".build-bench", "release", "dicom-bridge")
        if not args.no_build:
            build(args)
    if not os.access(args.bridge_bin, os.X_OK):
        raise BenchError("no dicom-bridge binary at %s" % args.bridge_bin)
    for tool in (STORESCU, CURL):
        if not os.access(tool, os.X_OK):
            raise BenchError("%s is missing (Debian: apt-get install dcmtk curl)" % tool)
    for n in sizes(args):
        study_corpus(args.corpus_dir, n)
    fs = subprocess.run(["df", "-T", args.scratch], capture_output=True, text=True).stdout.splitlines()[-1].split()
    if fs[1] == "tmpfs":
        log("warning: %s is tmpfs: fsync costs nothing there; use --scratch on a disk" % args.scratch)


def build(args):
    """The release build ingest.py makes: .build-bench, or with --snapshot a copy of the working
    tree taken now (other people's edits during the build cannot break it) into
    .build-bench-snapshot."""
    package, scratch = REPO, ".build-bench"
    if args.snapshot:
        package = os.path.join(args.scratch, "dicom-bridge-bench-source")
        shutil.rmtree(package, ignore_errors=True)
        os.makedirs(package)
        for name in ("Package.swift", "Package.resolved", "Sources", "CDcmtk", "Tests"):
            src = os.path.join(REPO, name)
            if os.path.exists(src):
                (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(package, name))
        scratch = os.path.join(REPO, ".build-bench-snapshot")
        os.makedirs(scratch, exist_ok=True)
        info = dict(ingest.git_state(), takenAt=datetime.datetime.now(datetime.timezone.utc).isoformat())
        with open(os.path.join(scratch, "snapshot.json"), "w") as f:
            json.dump(info, f)
        log("building dicom-bridge from a snapshot of the working tree (%s)" % package)
    else:
        log("building dicom-bridge (release, scratch path .build-bench)")
    r = subprocess.run(["swift", "build", "-c", "release", "--package-path", package, "--scratch-path", scratch,
                        "--product", "dicom-bridge"], cwd=REPO)
    if r.returncode != 0:
        raise BenchError("swift build failed (a tree others are editing: try --snapshot, or --no-build "
                         "to use the binary already built)")


def sizes(args):
    return sorted({args.instances} | ({args.small} if args.small else set()))


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
    if not args.bridge_bin or not os.access(args.bridge_bin, os.X_OK):
        raise BenchError("no dicom-bridge binary at %s" % args.bridge_bin)
    binary = args.bridge_bin
    studies = {}
    for n in sizes(args):
        d, m = study_corpus(args.corpus_dir, n)
        studies[n] = dict(m, directory=d)
    scratch = tempfile.mkdtemp(prefix="dicom-bridge-exchange-", dir=args.scratch)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs, noisy, nodes = [], [], []
    ok = False
    try:
        ca = os.path.join(scratch, "ca")
        run([binary, "pki", "init-ca", "--out", ca], "pki init-ca")
        for name in ("node-a", "node-b"):
            run([binary, "pki", "issue", "--ca", ca, "--name", name, "--out", ca], "pki issue " + name)
        a = Node(binary, os.path.join(scratch, "A"), "node-a", PORTS["a"], ca)
        nodes.append(a)
        a.init("BRIDGE_A")
        run([binary, "ae", "add", "STORESCU", "--home", a.home], "ae add")

        def fresh_b(rep):
            b = Node(binary, os.path.join(scratch, "B%d" % rep), "node-b", PORTS["b"], ca)
            b.init("BRIDGE_B")
            b.add_peer(a)
            return b

        b = fresh_b(1)
        a.add_peer(b, share="all")  # before A starts: its TLS trusts the CAs of the peers it has then
        a.start()
        nodes.append(b)

        log("sending the studies to A (%s instances) with storescu" % " and ".join(str(n) for n in studies))
        for n, st in studies.items():
            r = subprocess.run([STORESCU, "-aet", "STORESCU", "-aec", "BRIDGE_A", "127.0.0.1", str(a.dicom_port)]
                               + [os.path.join(st["directory"], rel) for rel in st["files"]],
                               capture_output=True, text=True, env=bridge_env())
            if r.returncode != 0:
                raise BenchError("storescu to A failed: %s%s" % (r.stderr.strip()[-2000:], _tail(a.logfile)))
        for n, st in studies.items():
            entry, members = publish(a, st, ca)
            st["entry"], st["members"] = entry, members
            st["listedBytes"] = sum(m["size"] for m in members)
            log("  A published the manifest of the %d-instance study (%.1f MB), ledger entry %s"
                % (n, st["listedBytes"] / 1e6, entry.get("ledgerIndex")))

        for rep in range(1, args.repeat + 1):
            if rep > 1:
                b = fresh_b(rep)  # a fresh B: every instance is downloaded again
                nodes.append(b)
                # A new node-b is a new ledger: A would take it for node-b equivocating (and deny
                # it everything) if it kept what it saw of the old one. `peer remove` forgets it.
                run([binary, "peer", "remove", "node-b", "--home", a.home], "peer remove node-b at node-a")
                a.add_peer(b, share="all")
            b.start()
            workdir = os.path.join(scratch, "run%d" % rep)
            os.makedirs(workdir)
            for n, st in studies.items():
                order = ("curl", "fetch") if rep % 2 == 0 else ("fetch", "curl")  # alternate who goes first
                got = {}
                for kind in order:
                    log("run %d/%d: %s, %d instances" % (rep, args.repeat, kind, n))
                    if args.quiet_wait > 0:
                        wait_for_quiet(args.quiet_wait)
                    if kind == "fetch":
                        r = measure_fetch(b.home, binary, a, st, st["listedBytes"], args.concurrency, workdir, args.timeout)
                    else:
                        r = measure_curl(a, ca, st["studyInstanceUID"], st["members"], st["listedBytes"], args.concurrency, workdir,
                                         args.timeout)
                    r.update({"run": rep, "instances": n})
                    log("  %.1f MB/s (%.2f s), peak RSS %.1f MB, CPU %.2f s, A's CPU %.2f s, other %.2f s"
                        % (r["MBPerSecond"], r["seconds"], r["peakRSSMB"], r["clientCPUSeconds"], r["sourceCPUSeconds"],
                           r["otherCPUSeconds"]))
                    if r["otherCPUSeconds"] > 0.15 * r["seconds"] * (os.cpu_count() or 1):
                        log("  warning: the machine was busy with other work during this run (%.2f CPU s): expect noise; "
                            "use --repeat" % r["otherCPUSeconds"])
                        noisy.append(r)
                    got[kind] = r
                    runs.append(r)
                got["fetch"]["ratio"] = got["fetch"]["MBPerSecond"] / got["curl"]["MBPerSecond"]
            b.stop()
            s = b.status()
            want = sum(n + 1 for n in studies)  # every instance and each study's manifest (KOS)
            if s["instances"] != want:
                raise BenchError("B holds %d instances after the run, expected %d" % (s["instances"], want))
        a.stop()
        ok = True
    except BaseException:
        args.keep = True  # what the failed run left is for reading
        raise
    finally:
        for node in nodes:
            node.abort()
        if args.keep or not ok:
            log("kept %s" % scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = summarize(runs, list(studies))
    print_table(rows, studies, args.concurrency, args.repeat)
    g = goals(rows)
    print_goals(g)
    if noisy:
        print("note: %d of %d runs shared the machine with other work (see warnings above)" % (len(noisy), len(runs)))
    if args.json:
        doc = {"benchmark": "exchange", "started": started.isoformat(), "repeat": args.repeat,
               "concurrency": args.concurrency,
               "studies": {str(n): {k: v for k, v in st.items() if k not in ("files", "members", "directory")}
                           for n, st in studies.items()},
               "versions": versions(binary), "results": rows, "goals": g, "runs": runs}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        log("wrote %s" % args.json)
    if args.check_goal and (not g["vsCurlGoalMet"] or not g.get("rssGoalMet", True)):
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
