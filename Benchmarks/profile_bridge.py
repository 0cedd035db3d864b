#!/usr/bin/env python3
"""Where the bridge's time goes during ingest: runs `dicom-bridge serve` fed by storescu, as
Benchmarks/ingest.py does, with a profiler attached to the server for the send phase only.

    Benchmarks/profile_bridge.py --tool perf   --associations 4   # perf record -g (cpu-clock)
    Benchmarks/profile_bridge.py --tool strace --associations 1   # strace -f -c: syscall counts/time
    Benchmarks/profile_bridge.py --tool syncs  --associations 4   # every fsync/fdatasync, by target
    Benchmarks/profile_bridge.py --tool threads                   # CPU seconds per thread

Output (reports, perf.data, logs) goes to --out (default /var/tmp/dicom-bridge-profile). Runs in
a private network namespace like ingest.py. Uses the binary ingest.py builds
(.build-bench/release/dicom-bridge) unless --bridge-bin is given.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402
import ingest  # noqa: E402


def thread_cpu(pid):
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.index("(") + 1:data.rindex(")")]
        rest = data[data.rindex(")") + 2:].split()
        out[int(tid)] = (name, int(rest[11]) / ingest.CLK_TCK, int(rest[12]) / ingest.CLK_TCK)
    return out


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tool", choices=("perf", "strace", "syncs", "threads"), default="perf")
    p.add_argument("--instances", type=int, default=1000)
    p.add_argument("--associations", type=int, choices=(1, 4), default=4)
    p.add_argument("--bridge-bin", default=os.path.join(ingest.REPO, ".build-bench", "release", "dicom-bridge"))
    p.add_argument("--out", default="/var/tmp/dicom-bridge-profile")
    p.add_argument("--scratch", default="/var/tmp")
    a = p.parse_args(argv)
    if os.environ.get(ingest.NETNS_ENV) != "1":
        corpus.ensure(os.path.join(HERE, ".corpus"), a.instances, log=ingest.log)
        env = dict(os.environ, **{ingest.NETNS_ENV: "1"})
        os.execvpe("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                               sys.executable, os.path.abspath(__file__)] + argv, env)
    corpus_dir, manifest = corpus.ensure(os.path.join(HERE, ".corpus"), a.instances)
    os.makedirs(a.out, exist_ok=True)
    # A fresh directory, deleted at the end (not at the start: on ext4 without a journal, files
    # created soon after many were deleted are slow to allocate; see ingest.py).
    import tempfile
    workdir = tempfile.mkdtemp(prefix="dicom-bridge-profile-run-", dir=a.scratch)
    bridge = ingest.Bridge(a.bridge_bin)
    os.sync()
    ingest.warm(corpus_dir, manifest)
    ae, port = bridge.start(workdir)
    pid = bridge.proc.pid
    tag = "%s-%da" % (a.tool, a.associations)
    prof = None
    if a.tool == "perf":
        prof = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-p", str(pid),
                                 "-o", os.path.join(a.out, tag + ".data")], stderr=subprocess.DEVNULL)
    elif a.tool == "strace":
        prof = subprocess.Popen(["strace", "-f", "-c", "-w", "-p", str(pid), "-o", os.path.join(a.out, tag + ".txt")])
    elif a.tool == "syncs":
        prof = subprocess.Popen(["strace", "-f", "-y", "-e", "trace=fsync,fdatasync", "-p", str(pid),
                                 "-o", os.path.join(a.out, tag + ".txt")])
    time.sleep(1.0)
    t0_threads = thread_cpu(pid)
    # Association threads end with their association: sample every 20 ms, keep the last values.
    last, stop_sampling = dict(t0_threads), threading.Event()

    def sample():
        while not stop_sampling.is_set():
            last.update(thread_cpu(pid))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    parts = [os.path.join(corpus_dir, "part%d" % i) for i in range(manifest["parts"])]
    shares = [parts] if a.associations == 1 else [[x] for x in parts]
    t0 = time.monotonic()
    clients = [subprocess.Popen([ingest.STORESCU, "-aet", "BENCHSCU", "-aec", ae, "+sd", "+r", "127.0.0.1", str(port)] + s,
                                env=ingest.dcmtk_env()) for s in shares]
    for c in clients:
        c.wait()
    wall = time.monotonic() - t0
    stop_sampling.set()
    sampler.join()
    last.update(thread_cpu(pid))
    t1_threads = last
    if prof:
        prof.send_signal(signal.SIGINT)
        prof.wait()
    held = bridge.finish()
    print("%d instances in %.2f s: %.1f instances/s (%d verified)" % (manifest["instances"], wall,
                                                                     manifest["instances"] / wall, held))
    if True:  # per-thread CPU, whatever the tool
        rows = []
        for tid, (name, u, s) in t1_threads.items():
            u0, s0 = t0_threads.get(tid, (name, 0, 0))[1:]
            rows.append((u - u0 + s - s0, u - u0, s - s0, tid, name))
        rows.sort(reverse=True)
        print("thread CPU during the send phase (user+sys, user, sys):")
        for r in rows[:12]:
            if r[0] > 0:
                print("  %6.2f %6.2f %6.2f  %d %s" % r)
        print("  (sampled every 20 ms: a thread's last 20 ms before it ended may be missing)")
    if a.tool == "perf":
        data = os.path.join(a.out, tag + ".data")
        for kind, args in (("flat", ["--no-children", "--sort", "dso,symbol"]), ("dso", ["--no-children", "--sort", "dso"])):
            rep = os.path.join(a.out, "%s-%s.txt" % (tag, kind))
            with open(rep, "w") as f:
                subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.5"] + args,
                               stdout=f, stderr=subprocess.DEVNULL)
            print("perf report (%s): %s" % (kind, rep))
    elif a.tool == "strace":
        print(open(os.path.join(a.out, tag + ".txt")).read())
    elif a.tool == "syncs":
        import re
        counts = {}
        for line in open(os.path.join(a.out, tag + ".txt")):
            m = re.search(r"(fsync|fdatasync)\(\d+<([^>]*)>", line)
            if not m:
                continue
            path = m.group(2)
            if path.endswith("/tmp"):
                kind = "tmp/ directory"
            elif re.search(r"/store/[0-9a-f]{2}$", path):
                kind = "store/xx/ directory"
            elif path.endswith(".part"):
                kind = "instance file (tmp/*.part)"
            elif "index.sqlite" in path:
                kind = os.path.basename(path)
            else:
                kind = path
            key = (m.group(1), kind)
            counts[key] = counts.get(key, 0) + 1
        print("syncs during the send phase (%d instances; under strace, so batches are larger than usual):"
              % manifest["instances"])
        for (call, kind), c in sorted(counts.items(), key=lambda kv: -kv[1]):
            print("  %6d %-9s %s" % (c, call, kind))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
