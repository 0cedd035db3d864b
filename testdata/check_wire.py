#!/usr/bin/env python3
"""Does a sender put a file's dataset bytes on the wire unchanged?

    unshare -n sh -c 'ip link set lo up; python3 testdata/check_wire.py FILES_OR_DIRS...'
    python3 testdata/check_wire.py --sender pynetdicom FILES...

Starts DCMTK's /usr/bin/storescp --bit-preserving (+xa: accept every transfer syntax it knows;
it writes the received dataset bytes as they came, after a File Meta group of its own) on a free
loopback port, sends each file with the chosen sender(s), and compares the dataset part of every
sent file (after its File Meta group) with the dataset part of what storescp wrote. Prints one
line per file and sender and exits 1 if any differs.

storescp binds to all interfaces: run this inside a private network namespace (as above).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import part10  # noqa: E402

DCMTK = "/usr/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("storescp did not listen on port %d" % port)


def files_of(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                out += [os.path.join(root, n) for n in sorted(names) if n.endswith(".dcm")]
        else:
            out.append(p)
    return sorted(out)


STORESCU_CFG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "storescu.cfg")


def send_dcmtk(path, port, extra):
    # Default: the AsIs profile (one context per SOP class and transfer syntax), see storescu.cfg.
    extra = extra or ["-xf", STORESCU_CFG, "AsIs"]
    cmd = [DCMTK + "/storescu", "-aet", "WIRETEST", "-aec", "STORESCP"] + extra + ["127.0.0.1", str(port), path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def send_pynetdicom(path, port, extra):
    from pynetdicom import AE
    info = part10.read(path)
    ae = AE(ae_title="WIRETEST")
    ae.add_requested_context(info["media_storage_sop_class_uid"], [info["transfer_syntax_uid"]])
    assoc = ae.associate("127.0.0.1", port, ae_title="STORESCP")
    if not assoc.is_established:
        return False, "association not established"
    try:
        status = assoc.send_c_store(path)
        ok = status is not None and getattr(status, "Status", None) == 0
        return ok, "status %s" % (getattr(status, "Status", None),)
    finally:
        assoc.release()


SENDERS = {"dcmtk": send_dcmtk, "pynetdicom": send_pynetdicom}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+")
    p.add_argument("--sender", choices=sorted(SENDERS) + ["both"], default="both")
    p.add_argument("--storescu-arg", action="append", default=[], help="storescu argument (repeatable) instead of the default -xf testdata/storescu.cfg AsIs")
    p.add_argument("--keep", help="keep storescp's output in this folder")
    args = p.parse_args(argv)
    files = files_of(args.paths)
    senders = sorted(SENDERS) if args.sender == "both" else [args.sender]
    out = args.keep or tempfile.mkdtemp(prefix="wire-")
    os.makedirs(out, exist_ok=True)
    port = free_port()
    scp = subprocess.Popen([DCMTK + "/storescp", "--bit-preserving", "+xa", "-aet", "STORESCP",
                            "-od", out, "-fe", ".dcm", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    failures = 0
    try:
        wait_port(port)
        for path in files:
            sent = part10.read(path)
            for sender in senders:
                ok, detail = SENDERS[sender](path, port, args.storescu_arg)
                label = "%-10s %-40s %s" % (sender, os.path.relpath(path), sent["transfer_syntax_uid"])
                if not ok:
                    print("%s SEND FAILED %s" % (label, detail))
                    failures += 1
                    continue
                received = [os.path.join(out, n) for n in os.listdir(out)
                            if sent["media_storage_sop_instance_uid"] in n]
                if len(received) != 1:
                    print("%s NOT RECEIVED (%s)" % (label, received))
                    failures += 1
                    continue
                got = part10.read(received[0])
                os.unlink(received[0])
                same_ts = got["transfer_syntax_uid"] == sent["transfer_syntax_uid"]
                if same_ts and got["dataset"] == sent["dataset"]:
                    print("%s IDENTICAL (%d dataset bytes)" % (label, len(sent["dataset"])))
                else:
                    failures += 1
                    print("%s DIFFERENT (received as %s)\n    %s" % (label, got["transfer_syntax_uid"],
                          part10.describe_difference(sent["dataset"], got["dataset"]).replace("\n", "\n    ")))
    finally:
        scp.terminate()
        scp.wait(10)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print("%d of %d sends byte-identical" % (len(files) * len(senders) - failures, len(files) * len(senders)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
