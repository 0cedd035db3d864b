"""Helpers for the integration suite: the bridge under test, its peers (DCMTK, pynetdicom,
Orthanc) and checks on what the bridge stored. Fixtures that use them are in conftest.py.

Every server here binds to all interfaces (the bridge, DCMTK's storescp, Orthanc's DICOM port),
so the suite runs inside a private network namespace: Tests/integration/run.sh does that.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTDATA = os.path.join(REPO_ROOT, "testdata")
sys.path.insert(0, TESTDATA)
import part10  # noqa: E402

# Always DCMTK's tools by absolute path: pynetdicom installs console scripts of the same names.
DCMTK_BIN = "/usr/bin"
STORESCU = DCMTK_BIN + "/storescu"
ECHOSCU = DCMTK_BIN + "/echoscu"
STORESCP = DCMTK_BIN + "/storescp"
DCMCONV = DCMTK_BIN + "/dcmconv"
ORTHANC = "/usr/sbin/Orthanc"
STORESCU_CFG = os.path.join(TESTDATA, "storescu.cfg")  # profile AsIs: send every file as stored
DEFAULT_BRIDGE_BIN = os.path.join(REPO_ROOT, ".build", "debug", "dicom-bridge")
LISTENING_TIMEOUT = 30.0
COMMAND_TIMEOUT = 300

_ports_handed_out = set()


def free_port():
    """A TCP port free on 127.0.0.1 now, never the same twice in one test session."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise RuntimeError("no free port")


def wait_for_port(port, timeout=30.0, proc=None, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %.0f s" % (host, port, timeout))


def _netns_inode(pid):
    try:
        return os.stat("/proc/%s/ns/net" % pid).st_ino
    except OSError:
        return None


def in_private_netns():
    """True when this process runs in a network namespace of its own (as run.sh arranges): its
    namespace differs from PID 1's, or (when that cannot be read) it has no interface but lo.
    DICOM_BRIDGE_TEST_NETNS=1 (set by run.sh after `unshare -n`) also says so."""
    if os.environ.get("DICOM_BRIDGE_TEST_NETNS") == "1":
        return True
    mine, init = _netns_inode("self"), _netns_inode(1)
    if mine is not None and init is not None:
        return mine != init
    try:
        return set(os.listdir("/sys/class/net")) <= {"lo"}
    except OSError:
        return False


def run(cmd, timeout=COMMAND_TIMEOUT, check=False, env=None, **kw):
    """subprocess.run with text output captured; the command line is kept on the result."""
    r = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace",
                       timeout=timeout, env=env, **kw)
    r.cmdline = " ".join(map(str, cmd))
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (r.cmdline, r.returncode, r.stdout, r.stderr))
    return r


def sha256_file(path):
    return part10.sha256_file(path)


def _tail(path, limit=20000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "(no log: %s)" % e
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


class ManagedProcess:
    """A server subprocess with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    name = "process"

    def __init__(self, log_path):
        self.log_path = log_path
        self.proc = None
        self._log = None

    def _start(self, cmd, cwd=None, env=None):
        self._log = open(self.log_path, "ab")
        self._log.write(("$ %s\n" % " ".join(map(str, cmd))).encode())
        self._log.flush()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_for_log(self, needle, timeout=LISTENING_TIMEOUT, start=0):
        """Wait until the log (from byte `start` on) contains needle; fail if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                if needle.encode() in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before logging %r; log:\n%s"
                                   % (self.name, self.proc.returncode, needle, _tail(self.log_path)))
            if time.monotonic() > deadline:
                raise TimeoutError("%s did not log %r within %.0f s; log:\n%s"
                                   % (self.name, needle, timeout, _tail(self.log_path)))
            time.sleep(0.05)

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def stop(self, timeout=20.0):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                with open(self.log_path, "ab") as f:
                    f.write(b"\n[harness] did not stop within %d s of SIGTERM: killed\n" % int(timeout))
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def dump_log(self, out=sys.stderr):
        out.write("\n===== %s log (%s) =====\n%s\n===== end of %s log =====\n"
                  % (self.name, self.log_path, _tail(self.log_path), self.name))


class Bridge(ManagedProcess):
    """One dicom-bridge home and (when started) its `serve` process."""

    name = "dicom-bridge"

    def __init__(self, binary, home, port, ae_title="BRIDGE", log_path=None):
        super().__init__(log_path or (home.rstrip("/") + ".log"))
        self.binary = binary
        self.home = home
        self.port = port
        self.ae_title = ae_title
        self.host = "127.0.0.1"
        self.http_port = free_port()  # the ledger's HTTP endpoints
        self.peer_port = free_port()  # the peer API (mutual TLS), when the node has a certificate
        self.node_name = None  # set by init_node
        self.tls_cert = self.tls_key = self.ca_crt = None

    # -- the CLI -----------------------------------------------------------------------------
    def cli(self, *args, check=True, timeout=COMMAND_TIMEOUT, home=True):
        cmd = [self.binary] + [str(a) for a in args]
        if home:
            cmd += ["--home", self.home]
        return run(cmd, timeout=timeout, check=check)

    def init(self, *extra):
        # A study's manifest is published (and stored in the study) only when a test asks for it:
        # a day without new instances unless the caller gives its own --study-complete-seconds.
        if not any(str(e).startswith("--study-complete-seconds") for e in extra):
            extra = extra + ("--study-complete-seconds", 86400)
        return self.cli("init", "--ae-title", self.ae_title, "--port", self.port, "--http-port", self.http_port, *extra)

    # -- exchange with peer bridges (issue 5) --------------------------------------------------
    @property
    def public_url(self):
        return "https://127.0.0.1:%d" % self.peer_port

    def init_node(self, node_name, tls_cert, tls_key, ca_crt=None, *extra):
        """init with an identity for the peer API: node name (= the certificate's CN), peer port,
        certificate and key, public URL https://127.0.0.1:<peer_port>."""
        self.node_name, self.tls_cert, self.tls_key, self.ca_crt = node_name, tls_cert, tls_key, ca_crt
        return self.init("--node-name", node_name, "--peer-port", self.peer_port, "--tls-cert", tls_cert,
                         "--tls-key", tls_key, "--public-url", self.public_url, *extra)

    def ledger_key(self):
        return self.cli("ledger", "key").stdout.strip()

    def add_peer(self, other, share=None, name=None, url=None, ca=None, verifier_key=None, check=True):
        """peer add: `other` (a Bridge made with init_node) unless name/url/ca/verifier_key say otherwise."""
        args = ["peer", "add", name or other.node_name, "--url", url or other.public_url,
                "--ca", ca or other.ca_crt, "--verifier-key", verifier_key or other.ledger_key()]
        if share:
            args += ["--share", share]
        return self.cli(*args, check=check)

    def peers(self):
        """{name: row} of `peer list --json`."""
        return {p["name"]: p for p in json.loads(self.cli("peer", "list", "--json").stdout)}

    def publish_manifest(self, study):
        """`manifest --study UID --json`: the document entry (dict)."""
        return json.loads(self.cli("manifest", "--study", study, "--json").stdout)

    def fetch(self, peer, study=None, patient=None, extra=(), timeout=COMMAND_TIMEOUT):
        """`fetch --json`; returns (CompletedProcess, parsed JSON or None)."""
        args = ["fetch", "--peer", peer, "--json"]
        if study:
            args += ["--study", study]
        if patient:
            args += ["--patient", patient]
        r = self.cli(*(args + list(extra)), check=False, timeout=timeout)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            report = None
        return r, report

    def fetch_command(self, peer, study, extra=()):
        """The command line of a `fetch --json` (to run it in the background)."""
        return [self.binary, "fetch", "--peer", peer, "--study", study, "--json"] + [str(e) for e in extra] \
            + ["--home", self.home]

    def checkpoint_size(self):
        r = self.cli("ledger", "checkpoint", check=False)
        lines = r.stdout.split("\n")
        return int(lines[1]) if r.returncode == 0 and len(lines) > 1 and lines[1].isdigit() else -1

    def wait_for_checkpoint(self, size, timeout=20.0):
        """Wait until the signed checkpoint covers at least `size` entries (needs serve)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.checkpoint_size()
            if got >= size:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError("%s: checkpoint size %d after %.0f s, want >= %d" % (self.home, got, timeout, size))
            time.sleep(0.1)

    def ledger_entries(self):
        return json.loads(self.cli("ledger", "show", "--json", "--count", "1000000").stdout)

    def study_instances(self, study):
        """Current index rows of a study's instances (with sha256 and path)."""
        return self.query(
            "SELECT i.* FROM instance i JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref"
            " WHERE s.study_instance_uid = ? AND i.is_current = 1", study)

    def study_files(self, study):
        """{SOP Instance UID: SHA-256 of the stored file, read from the disk} of a study."""
        return {r["sop_instance_uid"]: sha256_file(self.stored_path(r)) for r in self.study_instances(study)}

    def add_ae(self, name, host=None, port=None):
        args = ["ae", "add", name]
        if host:
            args += ["--host", host]
        if port:
            args += ["--port", port]
        return self.cli(*args)

    def remove_ae(self, name):
        return self.cli("ae", "remove", name)

    def status(self):
        r = self.cli("status", "--json")
        return json.loads(r.stdout)

    # -- the server ----------------------------------------------------------------------------
    def start(self, *extra, timeout=LISTENING_TIMEOUT):
        """Start `serve` and wait for its "listening" log line."""
        assert not self.running, "already running"
        start = self.log_size()
        self._start([self.binary, "serve", "--home", self.home, "--port", str(self.port)] + [str(e) for e in extra])
        self.wait_for_log("listening", timeout=timeout, start=start)
        return self

    def restart(self, *extra):
        self.stop()
        return self.start(*extra)

    # -- the index and the store --------------------------------------------------------------
    def db(self):
        """A read-only connection to index.sqlite (rows as sqlite3.Row)."""
        uri = "file:%s?mode=ro" % os.path.join(self.home, "index.sqlite")
        con = sqlite3.connect(uri, uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def query(self, sql, *params):
        con = self.db()
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def instances(self, sop_instance_uid=None, current_only=True):
        sql = "SELECT * FROM instance"
        where, params = [], []
        if sop_instance_uid is not None:
            where.append("sop_instance_uid = ?")
            params.append(sop_instance_uid)
        if current_only:
            where.append("is_current = 1")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.query(sql, *params)

    def stored_path(self, row):
        return os.path.join(self.home, row["path"])

    def wait_for_instances(self, count, timeout=30.0):
        """Wait until the index holds at least `count` current instances (stores are acknowledged
        only after the commit, so this is mostly immediate)."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.query("SELECT COUNT(*) AS n FROM instance WHERE is_current = 1")[0]["n"]
            if n >= count or time.monotonic() > deadline:
                return n
            time.sleep(0.1)


class PKI:
    """A consortium CA made with `dicom-bridge pki init-ca`, issuing node certificates with
    `pki issue` (CN = node name; SANs localhost and 127.0.0.1 unless hosts are given)."""

    def __init__(self, binary, folder):
        self.binary = binary
        self.folder = str(folder)
        run([binary, "pki", "init-ca", "--out", self.folder], check=True)
        self.ca_crt = os.path.join(self.folder, "ca.crt")
        self.ca_key = os.path.join(self.folder, "ca.key")
        for f in (self.ca_crt, self.ca_key):
            assert os.path.isfile(f), "pki init-ca wrote no %s" % f

    def issue(self, name, hosts=()):
        """(certificate path, key path) of a new node certificate."""
        out = os.path.join(self.folder, "nodes")
        cmd = [self.binary, "pki", "issue", "--ca", self.folder, "--name", name, "--out", out]
        for h in hosts:
            cmd += ["--host", h]
        run(cmd, check=True)
        crt, key = os.path.join(out, name + ".crt"), os.path.join(out, name + ".key")
        for f in (crt, key):
            assert os.path.isfile(f), "pki issue wrote no %s" % f
        return crt, key


def curl_peer(url, ca=None, cert=None, key=None, timeout=20):
    """curl an HTTPS URL of a peer API: (exit code, HTTP status or 0, body, stderr)."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}"]
    if ca:
        cmd += ["--cacert", ca]
    if cert:
        cmd += ["--cert", cert, "--key", key]
    r = run(cmd + [url], timeout=timeout + 10)
    body, _, code = r.stdout.rpartition("\n")
    return r.returncode, int(code) if code.strip().isdigit() else 0, body, r.stderr


class StoreSCP(ManagedProcess):
    """DCMTK's storescp in bit-preserving mode, accepting every transfer syntax it knows."""

    name = "storescp"

    def __init__(self, outdir, port, ae_title="STORESCP", log_path=None):
        super().__init__(log_path or (outdir.rstrip("/") + ".log"))
        self.outdir = outdir
        self.port = port
        self.ae_title = ae_title

    def start(self, *extra):
        os.makedirs(self.outdir, exist_ok=True)
        self._start([STORESCP, "--bit-preserving", "+xa", "-aet", self.ae_title, "-od", self.outdir,
                     "-fe", ".dcm"] + list(extra) + [str(self.port)])
        wait_for_port(self.port, proc=self.proc)
        return self

    def received(self):
        return sorted(os.path.join(self.outdir, n) for n in os.listdir(self.outdir) if n.endswith(".dcm"))


class Orthanc(ManagedProcess):
    """An Orthanc of its own: storage and index in a temporary folder, HTTP and DICOM on free
    ports, no remote access, no authentication."""

    name = "Orthanc"

    def __init__(self, workdir, ae_title="ORTHANC", dicom_port=None, http_port=None, modalities=None):
        super().__init__(os.path.join(workdir, "orthanc.log"))
        self.workdir = workdir
        self.ae_title = ae_title
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        self.modalities = dict(modalities or {})
        self.config_path = os.path.join(workdir, "orthanc.json")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    def config(self):
        return {
            "Name": "dicom-bridge-test",
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "IndexDirectory": os.path.join(self.workdir, "index"),
            "StorageCompression": False,
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckModalityHost": False,
            "DicomModalities": {name: list(v) for name, v in self.modalities.items()},
            "DicomScuTimeout": 30,
            "DicomAssociationCloseDelay": 0,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 4,
            "SaveJobs": False,
            "JobsHistorySize": 100,
            "StableAge": 1,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "OverwriteInstances": True,
        }

    def start(self, timeout=60.0):
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(self.config(), f, indent=2)
        self._start([ORTHANC, self.config_path], cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited with %s; log:\n%s" % (self.proc.returncode, _tail(self.log_path)))
            try:
                self.system = self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError("Orthanc's REST API did not answer within %.0f s; log:\n%s"
                                       % (timeout, _tail(self.log_path)))
                time.sleep(0.2)

    # -- REST ----------------------------------------------------------------------------------
    def request(self, method, path, body=None, content_type="application/json", timeout=120):
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        with self._opener.open(req, timeout=timeout) as r:
            data = r.read()
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def upload(self, path):
        """POST /instances with a Part 10 file; returns Orthanc's answer (ID, ParentStudy, ...)."""
        with open(path, "rb") as f:
            return self.post("/instances", f.read(), content_type="application/dicom")

    def store_to(self, modality, resources, synchronous=True, timeout=300):
        """C-STORE the given Orthanc resources (IDs) to a configured modality."""
        return self.post("/modalities/%s/store" % modality,
                         {"Resources": list(resources), "Synchronous": synchronous}, timeout=timeout)


# -- DCMTK and pynetdicom as peers --------------------------------------------------------------

def echoscu(port, called_ae, calling_ae="ECHOSCU", host="127.0.0.1", extra=()):
    return run([ECHOSCU, "-aet", calling_ae, "-aec", called_ae, "-to", "20", "-ta", "20"] + list(extra)
               + [host, str(port)], timeout=60)


def storescu(port, called_ae, paths, calling_ae="STORESCU", host="127.0.0.1", as_is=True, extra=()):
    """Send files with DCMTK's storescu. as_is: one presentation context per SOP class and
    transfer syntax (testdata/storescu.cfg), so every file travels in its own transfer syntax
    and its dataset bytes go on the wire unchanged (see testdata/README.md). storescu stops at the
    first failed store and exits non-zero (with -nh, "no halt", it would exit 0 regardless)."""
    cmd = [STORESCU, "-aet", calling_ae, "-aec", called_ae, "-to", "20", "-ta", "20"]
    if as_is:
        cmd += ["-xf", STORESCU_CFG, "AsIs"]
    cmd += list(extra) + [host, str(port)] + [str(p) for p in paths]
    return run(cmd)


def pynetdicom_store(port, called_ae, paths, calling_ae="PYNETDICOM", host="127.0.0.1"):
    """Send files (by path: pynetdicom sends the file's dataset bytes without decoding them) on
    one association proposing one context per SOP class and transfer syntax. Returns
    {path: status int or None}."""
    from pynetdicom import AE

    infos = {p: part10.read(p) for p in paths}
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    pairs = []
    for info in infos.values():
        pair = (info["media_storage_sop_class_uid"], info["transfer_syntax_uid"])
        if pair not in pairs:
            pairs.append(pair)
    assert len(pairs) <= 128, "too many presentation contexts for one association"
    for sop_class, ts in pairs:
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise AssertionError("pynetdicom: association with %s:%d (%s) not established" % (host, port, called_ae))
    results = {}
    try:
        for p in paths:
            status = assoc.send_c_store(p)
            results[p] = getattr(status, "Status", None) if status else None
    finally:
        assoc.release()
    return results


def dcmtk_wire_dataset(path, workdir):
    """The dataset bytes DCMTK's storescu puts on the wire for this file in its own transfer
    syntax: the file after one pass through dcmconv (explicit-length sequences and items). For
    every file made by testdata/generate.py this equals the file's own dataset."""
    out = os.path.join(workdir, "dcmconv-" + os.path.basename(path))
    run([DCMCONV, path, out], check=True)
    return part10.read(out)["dataset"]


# -- checks on what the bridge stored ------------------------------------------------------------

def check_stored(bridge, sent_path, expected_dataset=None):
    """Assert that the bridge holds the instance of sent_path, bit for bit, content-addressed.

    - exactly one current index row for its SOP Instance UID;
    - the stored file exists at home/path, its SHA-256 equals the row's sha256 and its file name,
      its size equals the row's size;
    - its File Meta transfer syntax equals the row's and the sent file's;
    - its dataset bytes equal expected_dataset (default: the sent file's dataset bytes).
    Returns the index row.
    """
    sent = part10.read(sent_path)
    uid = sent["media_storage_sop_instance_uid"]
    rows = bridge.instances(uid)
    assert len(rows) == 1, "expected 1 current index row for %s (%s), found %d" % (uid, sent_path, len(rows))
    row = rows[0]
    stored_path = bridge.stored_path(row)
    assert os.path.isfile(stored_path), "index row points at a missing file: %s" % row["path"]
    assert not os.path.isabs(row["path"]), "path should be relative to the home: %s" % row["path"]
    digest = sha256_file(stored_path)
    assert digest == row["sha256"], "stored file's SHA-256 %s != index %s" % (digest, row["sha256"])
    name = os.path.basename(stored_path)
    assert name.split(".")[0] == digest, "stored file %s is not named by its SHA-256 %s" % (name, digest)
    assert os.path.getsize(stored_path) == row["size"]
    stored = part10.read(stored_path)
    assert stored["transfer_syntax_uid"] == row["transfer_syntax_uid"]
    assert stored["transfer_syntax_uid"] == sent["transfer_syntax_uid"], \
        "%s sent as %s, stored as %s" % (sent_path, sent["transfer_syntax_uid"], stored["transfer_syntax_uid"])
    assert row["sop_instance_uid"] == uid
    assert row["sop_class_uid"] == sent["media_storage_sop_class_uid"]
    expected = sent["dataset"] if expected_dataset is None else expected_dataset
    assert stored["dataset"] == expected, "dataset of %s not stored bit for bit:\n%s" % (
        sent_path, part10.describe_difference(expected, stored["dataset"], "expected", "stored"))
    return row



# -- exchange: a node's requests to a peer's API, a peer that never answers, access events ----------

def peer_request(requester, source, path, headers=(), timeout=20):
    """GET `path` on `source`'s peer API as `requester` (its certificate, the source's CA), with
    extra headers ("Name: value"): (curl exit code, HTTP status or 0, body, stderr). The way to
    see what the source itself answers a node, e.g. 403 and its reason."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}", "--cacert", source.ca_crt,
           "--cert", requester.tls_cert, "--key", requester.tls_key]
    for h in headers:
        cmd += ["-H", h]
    r = run(cmd + [source.public_url + path], timeout=timeout + 10)
    body, _, code = r.stdout.rpartition("\n")
    return r.returncode, int(code) if code.strip().isdigit() else 0, body, r.stderr


def access_events(node):
    """`audit --json` of a node: the access events of its own ledger."""
    return json.loads(node.cli("audit", "--json").stdout)


ACCESS_DEDUP_SECONDS = 60  # docs/access.md: one event per requester, study, action, outcome within 60 s


def _event_time(e):
    import datetime

    return datetime.datetime.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def assert_source_refused(source, requester, study, r, report, reason, before, log_from, headers=(), new=True):
    """A fetch by `requester` of `study` that the source refused by its policy, shown by the
    source itself, not by a failed connection:

    - the fetch failed with the refusal the client reports only for an HTTP 403 ("peer X refused:
      access to study S denied by the source's policy: REASON"), with the exact reason;
    - asked again directly with the requester's certificate (and `headers`), the source answers
      403 with that reason;
    - the source's log since byte `log_from` says "access denied" for the requester and study;
    - the source's ledger (`audit --json`) holds a denied "query" event of the requester for the
      study with exactly that reason: new since `before` (the ledger indexes of the events seen
      before the fetch) when `new`, else possibly the first of its 60 s burst (docs/access.md).
    Returns that event."""
    what = "%s fetching %s from %s" % (requester.node_name, study, source.node_name)
    out = "stdout: %s\nstderr: %s" % (r.stdout[-3000:], r.stderr[-3000:])
    assert r.returncode != 0, "%s should have been refused but exited 0:\n%s" % (what, out)
    msg = (str(report.get("error", "")) if isinstance(report, dict) else "") + "\n" + r.stderr
    said = "peer %s refused: access to study %s denied by the source's policy: %s" % (source.node_name, study, reason)
    assert said in msg, "%s: the failure is not the source's refusal %r:\n%s" % (what, said, out)

    rc, code, body, err = peer_request(requester, source, "/registry/documents?studyInstanceUID=" + study, headers=headers)
    assert (rc, code) == (0, 403), "%s: asked directly, the source answered curl %d, HTTP %d %r %s" % (what, rc, code, body, err)
    assert reason in body, "%s: the source's 403 does not give the reason %r: %r" % (what, reason, body)

    with open(source.log_path, "rb") as f:
        f.seek(log_from)
        log = f.read().decode("utf-8", "replace")
    lines = [line for line in log.splitlines() if "access denied" in line and "node:" + requester.node_name in line
             and study in line]
    assert lines, "%s: the source's log has no \"access denied\" line for it:\n%s" % (what, log[-3000:])

    events = access_events(source)
    match = [e for e in events if e["requester"] == "node:" + requester.node_name and e["study"] == study
             and e["action"] == "query" and e["outcome"] == "denied" and e["reason"] == reason]
    fresh = [e for e in match if e["ledgerIndex"] not in before]
    if new:
        assert len(fresh) == 1, "%s: want one new denied event with reason %r on the source's ledger, got %s\nall: %s" % (
            what, reason, fresh, json.dumps(events, indent=1)[-4000:])
        return fresh[0]
    recent = [e for e in match if time.time() - _event_time(e) < ACCESS_DEDUP_SECONDS + 5]
    assert recent, "%s: no denied event with reason %r within the last minute on the source's ledger:\n%s" % (
        what, reason, json.dumps(events, indent=1)[-4000:])
    return recent[-1]


class SilentPeer:
    """A peer that accepts every connection and never answers. With a certificate and key it
    completes the TLS handshake (as the peer named by the certificate) and reads the request,
    then keeps the connection open without a byte of answer; without, it accepts the TCP
    connection and sends nothing at all. Runs in threads of this process; `close()` drops
    everything. `connections` counts the accepted connections, `requests` keeps the first bytes
    each TLS connection received."""

    def __init__(self, cert=None, key=None, port=None):
        import ssl
        import threading

        self.port = port or free_port()
        self.connections = 0
        self.requests = []
        self._held = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._context = None
        if cert:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(cert, key)
            self._context.verify_mode = ssl.CERT_NONE  # asks for no client certificate
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def _accept(self):
        import threading

        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._held.append(conn)
            if self._context is not None:
                threading.Thread(target=self._handshake_and_read, args=(conn,), daemon=True).start()

    def _handshake_and_read(self, conn):
        import ssl

        try:
            conn.settimeout(30)
            tls = self._context.wrap_socket(conn, server_side=True)
            with self._lock:
                self._held.append(tls)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            with self._lock:
                self.requests.append(data)
            self._closed.wait()  # never answer
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            held, self._held = self._held, []
        for s in held:
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(5)
