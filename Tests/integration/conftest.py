"""Fixtures of the integration suite (helpers are in harness.py).

    bash Tests/integration/run.sh [pytest args]      # the usual way: in a private network namespace

Fixtures:
    bridge_bin          path of the dicom-bridge binary ($DICOM_BRIDGE_BIN, --bridge-bin, or
                        .build/debug/dicom-bridge); tests using it are skipped when it is missing
    netns               skips a test that starts servers outside a private network namespace

Under CI (CI=true, as .ci/run sets it) nothing skips: every skip, whatever raised it, is reported
as a failure with its reason, so a green CI run has run every test.
    bridge_factory      make(ae_title=..., known_aes=..., serve_args=..., start=True) -> harness.Bridge:
                        init + ae add + serve, waits for "listening"; SIGTERM at teardown, log
                        dumped when the test failed
    bridge              bridge_factory() with the defaults: AE BRIDGE, knows STORESCU, ECHOSCU,
                        PYNETDICOM and ORTHANC (from 127.0.0.1)
    module_bridge_factory   the same, shared by a module's tests
    orthanc_factory     make(modalities={name: [AE, host, port]}) -> harness.Orthanc, started
    storescp_factory    make(ae_title=...) -> harness.StoreSCP (bit-preserving, +xa), started
    pki_factory         make(name) -> harness.PKI: a CA made with `dicom-bridge pki init-ca`
    node_factory        make(node_name, ae_title=..., pki=...) -> harness.Bridge initialised as an
                        exchange node (certificate from pki (default: one shared CA), peer port,
                        public URL https://127.0.0.1:<peer port>), NOT started: add peers, then
                        node.start(); stopped at teardown like bridge_factory's
    small_files         the committed testdata/*.dcm with their testdata/small.json entries
    corpus_factory      make(**generate.py options) -> (folder, manifest), cached per session
"""

import glob
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DEFAULT_KNOWN_AES = ("STORESCU", "ECHOSCU", "PYNETDICOM", "ORTHANC")


def pytest_addoption(parser):
    group = parser.getgroup("dicom-bridge")
    group.addoption("--bridge-bin", default=None,
                    help="the dicom-bridge binary (default: $DICOM_BRIDGE_BIN, else .build/debug/dicom-bridge)")
    group.addoption("--allow-host-network", action="store_true",
                    help="start servers (which bind all interfaces) outside a private network namespace")


def pytest_configure(config):
    config.addinivalue_line("markers", "bridge: needs the dicom-bridge binary (skipped when it is not built)")
    config.addinivalue_line("markers", "orthanc: needs Orthanc (/usr/sbin/Orthanc)")
    config.addinivalue_line("markers", "netns: starts servers; needs a private network namespace (run.sh)")


def pytest_report_header(config):
    return ["dicom-bridge: binary %s; private network namespace: %s; Orthanc: %s; CI: %s"
            % (_bridge_path(config), "yes" if harness.in_private_netns() else "no",
               "yes" if os.access(harness.ORTHANC, os.X_OK) else "missing",
               "yes (a test that cannot run fails)" if in_ci() else "no (missing tools skip, with the reason)")]


def in_ci():
    """CI=true (set by .ci/run): a test that cannot run fails, saying why, instead of skipping."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _skip_reason(rep):
    longrepr = rep.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci() and not hasattr(rep, "wasxfail"):
        # Whatever skipped it (a fixture, a skipif mark, pytest.skip in the body): under CI the
        # suite must run every test, so a test that could not run is a failure with the reason.
        rep.outcome = "failed"
        rep.longrepr = "CI=true and this test could not run: %s" % _skip_reason(rep)
    setattr(item, "rep_" + rep.when, rep)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci():
        rep.outcome = "failed"
        rep.longrepr = "CI=true and %s could not be collected: %s" % (collector.nodeid, _skip_reason(rep))


def _test_failed(request):
    node = request.node
    return any(getattr(getattr(node, "rep_" + when, None), "failed", False) for when in ("setup", "call"))


def _bridge_path(config):
    path = config.getoption("--bridge-bin") or os.environ.get("DICOM_BRIDGE_BIN") or harness.DEFAULT_BRIDGE_BIN
    return os.path.abspath(path)


# -- environment ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bridge_bin(pytestconfig):
    path = _bridge_path(pytestconfig)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip("dicom-bridge binary not found at %s: build it (swift build) or set DICOM_BRIDGE_BIN" % path)
    return path


@pytest.fixture(scope="session")
def netns(pytestconfig):
    if not (harness.in_private_netns() or pytestconfig.getoption("--allow-host-network")):
        pytest.skip("starts servers that bind all interfaces: run Tests/integration/run.sh (a private "
                    "network namespace) or pass --allow-host-network")
    return True


@pytest.fixture(scope="session")
def orthanc_available():
    if not os.access(harness.ORTHANC, os.X_OK):
        pytest.skip("Orthanc is not installed (%s): apt-get install orthanc" % harness.ORTHANC)
    return harness.ORTHANC


# -- servers ----------------------------------------------------------------------------------------

class _Servers:
    """Starts servers of one kind under a base folder and stops them all at teardown."""

    def __init__(self, basedir):
        self.basedir = str(basedir)
        self.servers = []

    def next_dir(self, prefix):
        return os.path.join(self.basedir, "%s%d" % (prefix, len(self.servers)))

    def close(self, failed):
        problems = []
        for s in reversed(self.servers):
            rc = s.stop()
            if failed:
                s.dump_log()
            if isinstance(s, harness.Bridge) and rc not in (0, None):
                problems.append("%s (%s) exited %s after SIGTERM" % (s.name, s.home, rc))
                if not failed:
                    s.dump_log()
        self.servers.clear()
        return problems


class _BridgeFactory(_Servers):
    def __init__(self, basedir, binary):
        super().__init__(basedir)
        self.binary = binary

    def __call__(self, ae_title="BRIDGE", known_aes=DEFAULT_KNOWN_AES, known_host="127.0.0.1",
                 serve_args=(), init_args=(), start=True, port=None):
        home = self.next_dir("bridge")
        b = harness.Bridge(self.binary, home, port or harness.free_port(), ae_title=ae_title)
        self.servers.append(b)
        b.init(*init_args)
        for ae in known_aes:
            b.add_ae(ae, host=known_host)
        if start:
            b.start(*serve_args)
        return b


@pytest.fixture
def bridge_factory(request, bridge_bin, netns, tmp_path):
    factory = _BridgeFactory(tmp_path, bridge_bin)
    yield factory
    problems = factory.close(_test_failed(request))
    assert not problems, "; ".join(problems)


@pytest.fixture
def bridge(bridge_factory):
    return bridge_factory()


@pytest.fixture(scope="module")
def module_bridge_factory(request, bridge_bin, netns, tmp_path_factory):
    factory = _BridgeFactory(tmp_path_factory.mktemp("module-bridge"), bridge_bin)
    failed_before = request.session.testsfailed
    yield factory
    problems = factory.close(request.session.testsfailed > failed_before)
    assert not problems, "; ".join(problems)


@pytest.fixture
def pki_factory(bridge_bin, tmp_path):
    made = {}

    def make(name="consortium"):
        if name not in made:
            made[name] = harness.PKI(bridge_bin, os.path.join(str(tmp_path), "pki-" + name))
        return made[name]

    return make


class _NodeFactory(_BridgeFactory):
    def __init__(self, basedir, binary, pki_factory):
        super().__init__(basedir, binary)
        self.pki_factory = pki_factory

    def __call__(self, node_name, ae_title=None, pki=None, known_aes=DEFAULT_KNOWN_AES + ("FINDSCU", "MOVESCU"),
                 init_args=()):
        pki = pki or self.pki_factory()
        cert, key = pki.issue(node_name)
        home = self.next_dir("node-%s-" % node_name)
        b = harness.Bridge(self.binary, home, harness.free_port(),
                           ae_title=ae_title or node_name.upper().replace("-", "_")[:16])
        self.servers.append(b)
        b.init_node(node_name, cert, key, pki.ca_crt, *init_args)
        for ae in known_aes:
            b.add_ae(ae, host="127.0.0.1")
        return b


@pytest.fixture
def node_factory(request, bridge_bin, netns, tmp_path, pki_factory):
    factory = _NodeFactory(tmp_path, bridge_bin, pki_factory)
    yield factory
    problems = factory.close(_test_failed(request))
    assert not problems, "; ".join(problems)


class _OrthancFactory(_Servers):
    def __call__(self, ae_title="ORTHANC", modalities=None):
        o = harness.Orthanc(self.next_dir("orthanc"), ae_title=ae_title, modalities=modalities)
        self.servers.append(o)
        return o.start()


@pytest.fixture
def orthanc_factory(request, orthanc_available, netns, tmp_path):
    factory = _OrthancFactory(tmp_path)
    yield factory
    factory.close(_test_failed(request))


class _StoreSCPFactory(_Servers):
    def __call__(self, ae_title="STORESCP", extra=()):
        d = self.next_dir("storescp")
        s = harness.StoreSCP(os.path.join(d, "received"), harness.free_port(), ae_title=ae_title,
                             log_path=d + ".log")
        self.servers.append(s)
        return s.start(*extra)


@pytest.fixture
def storescp_factory(request, netns, tmp_path):
    factory = _StoreSCPFactory(tmp_path)
    yield factory
    factory.close(_test_failed(request))


# -- test data --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def small_files():
    """{path: small.json entry} for every committed testdata/*.dcm."""
    with open(os.path.join(harness.TESTDATA, "small.json"), encoding="utf-8") as f:
        entries = {e["path"]: e for e in json.load(f)["files"]}
    files = sorted(glob.glob(os.path.join(harness.TESTDATA, "*.dcm")))
    assert files, "no testdata/*.dcm"
    return {p: entries[os.path.basename(p)] for p in files}


@pytest.fixture(scope="session")
def corpus_factory(tmp_path_factory):
    """make(patients=3, studies=2, series=2, instances=2, seed=7, transfer_syntax="mixed", ...)
    -> (folder, manifest); each distinct set of options is generated once per session."""
    cache = {}

    def make(**options):
        opts = dict(patients=3, studies=2, series=2, instances=2, seed=7, transfer_syntax="mixed")
        opts.update(options)
        key = tuple(sorted(opts.items()))
        if key not in cache:
            folder = str(tmp_path_factory.mktemp("corpus"))
            cmd = [sys.executable, os.path.join(harness.TESTDATA, "generate.py"), folder]
            for k, v in sorted(opts.items()):
                flag = "--" + k.replace("_", "-")
                if v is True:
                    cmd.append(flag)
                elif v not in (False, None):
                    cmd += [flag, str(v)]
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
            with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
                cache[key] = (folder, json.load(f))
        return cache[key]

    return make
