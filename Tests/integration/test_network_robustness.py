"""The DICOM port under silent connections, half-sent association requests, a C++ exception inside
the shim, and garbled AE titles (issue 12).

- Association set-up runs off the accept thread: a modality's C-ECHO is answered within 1 s (its
  own ACSE/DIMSE timeouts are set to 1 s, so the peer itself enforces the bound) while 12 silent
  connections and 12 half A-ASSOCIATE-RQs are held open; the flood is closed after the ACSE timeout.
- At most 64 connections are in set-up at once: the next one is closed as soon as it is accepted.
- An exception thrown inside the shim's C-STORE handling (test hook DICOM_BRIDGE_TEST_THROW_IN_STORE,
  test only) aborts that association; the next association stores; the process lives.
- AE titles from the network are escaped (\\xNN) in log lines.
"""

import os
import socket
import struct
import time

import pytest

import harness
from harness import part10

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"


# -- raw PDUs (PS3.8 9.3) ----------------------------------------------------------------------

def _item(item_type, value):
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def associate_rq(called_ae, calling_ae):
    """An A-ASSOCIATE-RQ proposing Verification in Implicit VR Little Endian. AE titles are bytes,
    padded with spaces to 16."""
    def ae(b):
        assert len(b) <= 16
        return b + b" " * (16 - len(b))

    pc = _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, VERIFICATION.encode()) + _item(0x40, IMPLICIT_LE.encode()))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + ae(called_ae) + ae(calling_ae) + bytes(32)
            + _item(0x10, APP_CONTEXT.encode()) + pc + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return s


def still_open(s):
    """True when the bridge has neither closed nor answered this connection."""
    s.setblocking(False)
    try:
        data = s.recv(1, socket.MSG_PEEK)
        return False  # closed (b"") or answered
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def wait_closed_by_peer(s, timeout):
    """Wait until the bridge closes the connection (EOF or reset); returns True if it did."""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(4096)
            if data == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def open_flood(port, silent=12, half=12, called_ae="BRIDGE"):
    socks = []
    rq = associate_rq(called_ae.encode(), b"ECHOSCU")
    for _ in range(silent):
        socks.append(connect(port))
    for _ in range(half):
        s = connect(port)
        s.sendall(rq[: len(rq) // 2])
        socks.append(s)
    return socks


def pynetdicom_echo(port, called_ae, calling_ae="PYNETDICOM", timeout=1):
    """C-ECHO with every pynetdicom timeout at `timeout` seconds. Returns the status or None."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(VERIFICATION)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return getattr(status, "Status", None) if status else None
    finally:
        assoc.release()


def echoscu_1s(port, called_ae):
    """DCMTK's echoscu with its connection, ACSE and DIMSE timeouts at 1 s."""
    return harness.run([harness.ECHOSCU, "-aet", "ECHOSCU", "-aec", called_ae, "-to", "1", "-ta", "1", "-td", "1",
                        "127.0.0.1", str(port)], timeout=60)


def two_instances(small_files):
    """Two committed test files with distinct SOP Instance UIDs."""
    seen = {}
    for p in sorted(small_files):
        uid = part10.read(p)["media_storage_sop_instance_uid"]
        if uid not in seen.values():
            seen[p] = uid
        if len(seen) == 2:
            break
    return list(seen.items())


# -- association set-up off the accept thread ----------------------------------------------------

def test_echo_answered_within_1s_beside_silent_and_half_open_connections(bridge, small_files):
    flood = open_flood(bridge.port)
    try:
        # The peers' own timeouts are 1 s: the echo must come back within that, the flood held open.
        r = echoscu_1s(bridge.port, bridge.ae_title)
        assert r.returncode == 0, "echoscu (1 s timeouts) beside 24 idle connections failed:\n" + r.stdout + r.stderr
        assert pynetdicom_echo(bridge.port, bridge.ae_title, timeout=1) == 0x0000
        assert all(still_open(s) for s in flood), "the flood was not held open during the echoes"

        # The bridge then stores normally.
        path, uid = two_instances(small_files)[0]
        r = harness.storescu(bridge.port, bridge.ae_title, [path])
        assert r.returncode == 0, r.stdout + r.stderr
        harness.check_stored(bridge, path)

        # The flood is closed once the ACSE timeout (default 10 s) has passed.
        for s in flood:
            assert wait_closed_by_peer(s, 40), "a connection that never sent its request was not closed"
    finally:
        for s in flood:
            s.close()
    assert bridge.running


def test_acse_timeout_is_configurable(bridge_factory, monkeypatch):
    monkeypatch.setenv("DICOM_BRIDGE_ACSE_TIMEOUT", "2")
    b = bridge_factory()
    s = connect(b.port)
    try:
        started = time.monotonic()
        assert wait_closed_by_peer(s, 30)
        waited = time.monotonic() - started
        # Closed by the 2 s ACSE timeout, not by the default 10 s one.
        assert waited < 8, "closed after %.1f s" % waited
    finally:
        s.close()
    r = harness.echoscu(b.port, b.ae_title)
    assert r.returncode == 0, r.stdout + r.stderr


def test_connections_beyond_the_set_up_cap_are_closed_at_once(bridge_factory, monkeypatch):
    # A long ACSE timeout: nothing the bridge closes below is closed by that timeout.
    monkeypatch.setenv("DICOM_BRIDGE_ACSE_TIMEOUT", "120")
    b = bridge_factory()
    flood = open_flood(b.port, silent=64, half=0)
    extra = None
    try:
        extra = connect(b.port)
        # The 65th connection in set-up is closed as soon as it is accepted...
        assert wait_closed_by_peer(extra, 20), "a connection beyond the cap of 64 in set-up was not refused"
        # ...while the 64 are held (they have 120 s to send a request).
        assert all(still_open(s) for s in flood)
        assert pynetdicom_echo(b.port, b.ae_title, timeout=5) is None
    finally:
        for s in flood:
            s.close()
        if extra:
            extra.close()
    # Once the flood has gone, modalities are served again.
    deadline = time.monotonic() + 30
    while pynetdicom_echo(b.port, b.ae_title, timeout=5) != 0x0000:
        assert time.monotonic() < deadline, "C-ECHO not answered after the flood ended"
        time.sleep(0.2)
    assert b.running


# -- no exception crosses a thread --------------------------------------------------------------

def test_exception_in_store_aborts_only_its_association(bridge_factory, small_files, monkeypatch):
    (bad_path, bad_uid), (good_path, good_uid) = two_instances(small_files)
    monkeypatch.setenv("DICOM_BRIDGE_TEST_THROW_IN_STORE", bad_uid)
    b = bridge_factory()

    r = harness.storescu(b.port, b.ae_title, [bad_path])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Association Aborted" in out or "Peer aborted Association" in out, out
    b.wait_for_log("test hook DICOM_BRIDGE_TEST_THROW_IN_STORE; association aborted", timeout=20)
    assert b.instances(bad_uid) == []

    assert b.running
    r = harness.storescu(b.port, b.ae_title, [good_path])
    assert r.returncode == 0, r.stdout + r.stderr
    harness.check_stored(b, good_path)
    r = harness.echoscu(b.port, b.ae_title)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b.running


# -- logs are safe to read --------------------------------------------------------------------

def test_garbled_calling_ae_is_escaped_in_the_log(bridge):
    garbled = b"EV\x01L\x1b[31m"
    start = bridge.log_size()
    s = connect(bridge.port)
    try:
        s.sendall(associate_rq(bridge.ae_title.encode(), garbled))
        s.settimeout(20)
        answer = s.recv(10)
        # A-ASSOCIATE-RJ: permanent, service user, calling AE title not recognized.
        assert answer[:1] == b"\x03" and answer[7:10] == b"\x01\x01\x03", answer
    finally:
        s.close()
    bridge.wait_for_log("calling AE title not known", timeout=20, start=start)
    with open(bridge.log_path, "rb") as f:
        f.seek(start)
        log = f.read()
    line = next(l for l in log.splitlines() if b"calling AE title not known" in l)
    assert rb"EV\x01L\x1b[31m" in line, line
    for control in (b"\x01", b"\x1b"):
        assert control not in log, "raw control byte %r in the log: %r" % (control, log)
