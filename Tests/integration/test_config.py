"""Configuration precedence, as README.md's Configuration section says: HOME/config.json, overridden
by environment variables (DICOM_BRIDGE_*), overridden by flags; the built-in default when none
says anything. Each layer is observed on the running server: which port DCMTK's echoscu reaches,
which called AE title it accepts, and whether an info-level line reaches the log."""

import json
import os
import re
import shutil

import pytest

import harness

GETSCU = harness.DCMTK_BIN + "/getscu"

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

DEFAULT_PORT = 11112  # README: "port 11112"; free inside the private network namespace
DEFAULT_AE = "DICOM_BRIDGE"
INFO_LINE = "association accepted"  # logged at info level for every admitted association


def child_env(extra):
    """This environment without any DICOM_BRIDGE_* setting (the product's), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_BRIDGE_") or k == "DICOM_BRIDGE_TEST_NETNS"}
    env.update(extra)
    return env


def serve(bridge, flags=(), env=None):
    """Start `serve --home H [flags]` (no --port unless in flags) with the given environment and
    wait for its "listening" line; returns the text of that line."""
    start = bridge.log_size()
    bridge._start([bridge.binary, "serve", "--home", bridge.home] + [str(f) for f in flags], env=child_env(env or {}))
    bridge.wait_for_log("listening for DICOM associations", start=start)
    text = bridge.log_text()[start:]
    return next(line for line in text.splitlines() if "listening for DICOM associations" in line)


def rewrite_config(bridge, **changes):
    """Edit config.json: a value of None removes the key (so the built-in default applies)."""
    path = os.path.join(bridge.home, "config.json")
    with open(path) as f:
        config = json.load(f)
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    with open(path, "w") as f:
        json.dump(config, f)


# Each layer: what config.json, the environment and the flags say, and what the server must use.
# The ports of the layers below the winning one are given too, so the test sees that the server
# is NOT there.
LAYERS = ["default", "config", "environment", "flag"]


@pytest.mark.parametrize("layer", LAYERS)
def test_flag_over_environment_over_config_over_default(bridge_factory, layer):
    ports = {"config": harness.free_port(), "environment": harness.free_port(), "flag": harness.free_port(),
             "default": DEFAULT_PORT}
    titles = {"default": DEFAULT_AE, "config": "CFG_AE", "environment": "ENV_AE", "flag": "FLAG_AE"}
    # Log level: info (the default) shows INFO_LINE, notice hides it; the layers alternate.
    levels = {"default": "info", "config": "notice", "environment": "info", "flag": "notice"}

    b = bridge_factory(known_aes=("ECHOSCU",), start=False, ae_title=titles["config"], port=ports["config"])
    if layer == "default":
        rewrite_config(b, port=None, aeTitle=None, logLevel=None)
    else:
        rewrite_config(b, logLevel=levels["config"])
    env, flags = {}, []
    if layer in ("environment", "flag"):
        env = {"DICOM_BRIDGE_PORT": str(ports["environment"]), "DICOM_BRIDGE_AE_TITLE": titles["environment"],
               "DICOM_BRIDGE_LOG_LEVEL": levels["environment"]}
    if layer == "flag":
        flags = ["--port", ports["flag"], "--ae-title", titles["flag"], "--log-level", levels["flag"]]
    line = serve(b, flags, env)

    port, title, level = ports[layer], titles[layer], levels[layer]
    assert "port=%d" % port in line and "ae-title=%s" % title in line, line

    # The winning port and AE title answer.
    before = b.log_size()
    r = harness.echoscu(port, title, calling_ae="ECHOSCU")
    assert r.returncode == 0, "%s layer: echo to %s at %d failed:\n%s" % (layer, title, port, r.stdout + r.stderr)
    # The admission is logged before the A-ASSOCIATE-AC goes out, so it is in the log by now when
    # the level lets it through; only the level decides whether it shows.
    shown = INFO_LINE in b.log_text()[before:]
    assert shown == (level == "info"), "%s layer: log level should be %s, log:\n%s" % (layer, level, b.log_text()[before:])

    # Nothing listens on the lower layers' ports; their AE titles are not ours.
    lower = LAYERS[:LAYERS.index(layer)]
    for other in lower:
        if ports[other] != port:
            r = harness.echoscu(ports[other], titles[other], calling_ae="ECHOSCU")
            assert r.returncode != 0, "%s layer: something answered on the %s port %d" % (layer, other, ports[other])
            assert "Connection refused" in r.stdout + r.stderr, r.stdout + r.stderr
        r = harness.echoscu(port, titles[other], calling_ae="ECHOSCU")
        assert r.returncode != 0 and "Called AE Title Not Recognized" in r.stdout + r.stderr, \
            "%s layer: the %s AE title %s was accepted:\n%s" % (layer, other, titles[other], r.stdout + r.stderr)


def test_invalid_environment_value_is_refused_with_its_name(bridge_factory):
    """A setting that cannot be read is an error naming it, not a silent fallback to the file."""
    b = bridge_factory(known_aes=(), start=False)
    r = harness.run([b.binary, "serve", "--home", b.home], env=child_env({"DICOM_BRIDGE_PORT": "eleven"}), timeout=60)
    assert r.returncode != 0
    assert "DICOM_BRIDGE_PORT='eleven' is not a number" in r.stdout + r.stderr, r.stdout + r.stderr


# -- audit.syslog: ATNA messages to the local syslog ----------------------------------------------

# Runs the bridge in a mount namespace of its own whose /dev is a fresh tmpfs holding the usual
# device nodes (bind-mounted from the real /dev) and, as /dev/log, the test's syslog socket: glibc's
# syslog(3) writes to /dev/log and nowhere else. Nothing changes outside that namespace.
WITH_DEV_LOG = r'''
set -eu
sock="$1"; scratch="$2"; shift 2
mkdir -p "$scratch/dev"
mount --bind /dev "$scratch/dev"
mount -t tmpfs -o mode=755 dev-with-log /dev
for n in null zero full random urandom tty; do
  if [ -e "$scratch/dev/$n" ]; then touch "/dev/$n"; mount --bind "$scratch/dev/$n" "/dev/$n"; fi
done
if [ -d "$scratch/dev/shm" ]; then mkdir /dev/shm; mount --bind "$scratch/dev/shm" /dev/shm; fi
ln -s /proc/self/fd /dev/fd
touch /dev/log
mount --bind "$sock" /dev/log
exec "$@"
'''

SYSLOG_LINE = re.compile(r"^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d dicom-bridge-atna\[(\d+)\]: (.*)$", re.S)
LOG_AUTHPRIV, LOG_WARNING, LOG_NOTICE = 10, 4, 5


def test_audit_syslog_sends_the_same_messages_as_the_file(bridge_factory, tmp_path):
    """audit.file and audit.syslog in config.json: each access decision (a workstation's C-GET,
    allowed; another's, refused) is one line in the file and one datagram on /dev/log from ident
    dicom-bridge-atna with the bridge's PID, facility authpriv, severity notice when allowed and
    warning when denied, carrying exactly the file's XML."""
    import socket as socketlib

    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs unshare and mount (util-linux) to give the bridge its own /dev/log")
    sock_path = str(tmp_path / "log.sock")
    receiver = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
    receiver.bind(sock_path)
    receiver.settimeout(30)
    try:
        b = bridge_factory(known_aes=("STORESCU", "GETSCU"), start=False)
        b.cli("ae", "add", "NORETRIEVE", "--host", "127.0.0.1", "--no-retrieve")
        audit_file = os.path.join(b.home, "audit.log")
        rewrite_config(b, audit={"file": audit_file, "syslog": True})
        start = b.log_size()
        b._start(["unshare", "-m", "--", "sh", "-c", WITH_DEV_LOG, "sh", sock_path, str(tmp_path / "ns"),
                  b.binary, "serve", "--home", b.home], env=child_env({}))
        b.wait_for_log("listening for DICOM associations", start=start)

        sample = os.path.join(harness.TESTDATA, "ct_explicit_le.dcm")
        r = harness.storescu(b.port, b.ae_title, [sample])
        assert r.returncode == 0, r.stdout + r.stderr
        (study,) = [row["study_instance_uid"] for row in b.query("SELECT study_instance_uid FROM study")]
        outdir = str(tmp_path / "got")
        os.makedirs(outdir)
        get = [GETSCU, "-S", "-aec", b.ae_title, "-to", "20", "-ta", "20", "-td", "60", "-od", outdir,
               "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=%s" % study, "127.0.0.1", str(b.port)]
        r = harness.run(get[:1] + ["-aet", "GETSCU"] + get[1:], timeout=120)
        assert r.returncode == 0 and os.listdir(outdir), r.stdout + r.stderr
        harness.run(get[:1] + ["-aet", "NORETRIEVE"] + get[1:], timeout=120)  # refused 0124, audited

        datagrams = [receiver.recv(65536).decode("utf-8") for _ in range(2)]
    finally:
        receiver.close()

    with open(audit_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) == 2, lines
    expected = [("GETSCU", "allowed", LOG_NOTICE), ("NORETRIEVE", "denied", LOG_WARNING)]
    for datagram, line, (caller, decision, severity) in zip(datagrams, lines, expected):
        m = SYSLOG_LINE.match(datagram)
        assert m, "not a syslog(3) datagram from ident dicom-bridge-atna: %r" % datagram[:200]
        priority, pid, message = int(m.group(1)), int(m.group(2)), m.group(3)
        assert (priority >> 3, priority & 7) == (LOG_AUTHPRIV, severity), (caller, priority)
        assert pid == b.proc.pid, (pid, b.proc.pid)
        assert message == line, "syslog and file differ:\n%s\n%s" % (message, line)
        assert 'UserID="%s"' % caller in line and 'EventOutcomeIndicator="%s"' % ("0" if decision == "allowed" else "4") in line
