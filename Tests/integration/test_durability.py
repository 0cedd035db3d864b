"""Nothing acknowledged is ever lost: SIGKILL during concurrent stores, a full disk, broken
associations and bad datasets, each answered with the right DIMSE status while the bridge keeps
serving. Drives the real binary with pynetdicom over loopback.

Every C-STORE's outcome is recorded (status, no response, exception) and the tests assert exactly
which instances were acknowledged, that each of those is stored bit for bit and indexed, and that
each of the others is absent, or stored whole because the bridge committed it just before the
response was lost (the one in flight on each association at a SIGKILL)."""

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage, Verification

import harness
from harness import part10
from test_network_limits import RawAssociation

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

CALLING = "PYNETDICOM"  # known to the bridge fixtures, from 127.0.0.1


def ct(rows=64, study=None, series=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientName = "Durable^Test"
    ds.PatientID = "DUR-1"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = os.urandom(rows * rows * 2)
    return ds


def wire_bytes(ds):
    """The dataset bytes pynetdicom puts on the wire for ds (Explicit VR Little Endian)."""
    return encode(ds, False, True)


def associate(port, *contexts, calling=CALLING):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for c in contexts or (CTImageStorage,):
        ae.add_requested_context(c, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="BRIDGE")
    assert assoc.is_established, "no association with the bridge"
    return assoc


def status_of(rsp):
    """The Status of a C-STORE response, or None when there was none (connection lost)."""
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def stored_rows(bridge):
    return {r["sop_instance_uid"]: (r["sha256"], r["path"]) for r in bridge.instances()}


def assert_stored_as_sent(bridge, ds):
    """Exactly one current index row for ds, with its study and series; the file it points at
    hashes to the row's sha256 (its name) and holds the dataset bytes that were sent."""
    rows = bridge.instances(ds.SOPInstanceUID)
    assert len(rows) == 1, "%s: %d current index rows" % (ds.SOPInstanceUID, len(rows))
    row = rows[0]
    path = bridge.stored_path(row)
    assert harness.sha256_file(path) == row["sha256"] == os.path.basename(path).split(".")[0]
    stored = part10.read(path)
    assert stored["media_storage_sop_instance_uid"] == ds.SOPInstanceUID
    assert stored["dataset"] == wire_bytes(ds), "%s not stored bit for bit" % ds.SOPInstanceUID
    indexed = bridge.query(
        "SELECT s.study_instance_uid AS study, se.series_instance_uid AS series FROM instance i"
        " JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref WHERE i.id = ?", row["id"])
    assert indexed == [{"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID}], indexed


def assert_absent(bridge, uid):
    assert bridge.instances(uid, current_only=False) == [], "%s was stored" % uid


def assert_consistent(bridge):
    """Every row's file exists and hashes to its sha256; nothing is left in tmp/."""
    for row in bridge.query("SELECT sha256, path FROM instance"):
        assert harness.sha256_file(os.path.join(bridge.home, row["path"])) == row["sha256"], row["path"]
    assert os.listdir(os.path.join(bridge.home, "tmp")) == []


def assert_ledger_covers_index(bridge):
    anchored = bridge.query("SELECT COUNT(*) AS n FROM instance WHERE ledger_index IS NULL")[0]["n"]
    entries = bridge.query("SELECT COUNT(*) AS n FROM ledger_entries")[0]["n"]
    versions = bridge.query("SELECT COUNT(*) AS n FROM instance")[0]["n"]
    assert anchored == 0 and entries == versions, (anchored, entries, versions)
    r = bridge.cli("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def log_lines(bridge, needle, start=0):
    return [line for line in bridge.log_text()[start:].splitlines() if needle in line]


def test_sigkill_during_concurrent_stores_loses_nothing_acknowledged(bridge_factory):
    b = bridge_factory()
    study = generate_uid()
    tmp = os.path.join(b.home, "tmp")

    # One association stalls half-way through a dataset: at the kill, its temporary file is
    # certainly in tmp/, and start-up recovery must remove it.
    stalled_ds = ct(rows=256)
    stalled = RawAssociation(b.port)
    try:
        _sigkill_during_concurrent_stores(b, study, tmp, stalled, stalled_ds)
    finally:
        stalled.close()  # else a SIGTERM waits for the stalled transfer (dimseTimeoutSeconds)


def _sigkill_during_concurrent_stores(b, study, tmp, stalled, stalled_ds):
    stalled.send_store(stalled_ds, pdu_length=16384, stop_after=60_000)
    deadline = time.monotonic() + 30
    while not os.listdir(tmp):  # created when the C-STORE begins (the bytes are buffered)
        assert time.monotonic() < deadline, "the stalled C-STORE's temporary file did not appear"
        time.sleep(0.05)

    killed = threading.Event()
    outcomes = {n: [] for n in range(4)}  # sender -> [(dataset, status or None, exception or None)]
    failures = {}

    def sender(n):
        try:
            assoc = associate(b.port)
        except Exception as e:  # recorded, asserted below
            failures[n] = "could not associate: %r" % e
            return
        for _ in range(400):
            if killed.is_set():
                break
            ds = ct(rows=128, study=study)
            try:
                rsp = assoc.send_c_store(ds)
            except Exception as e:  # recorded, asserted below
                outcomes[n].append((ds, None, repr(e)))
                break
            outcomes[n].append((ds, status_of(rsp), None))
            if status_of(rsp) != 0x0000:
                break
        if assoc.is_established:
            assoc.release()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()

    def acknowledged_count():
        return sum(1 for o in outcomes.values() for _, st, _ in list(o) if st == 0)

    deadline = time.monotonic() + 60
    while acknowledged_count() < 40 and time.monotonic() < deadline and not failures:
        time.sleep(0.05)
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    killed.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a sender did not end after the kill"
    stalled.close()
    assert failures == {}, failures
    left_in_tmp = sorted(os.listdir(tmp))

    acknowledged, in_flight = {}, {}
    for n, sent in outcomes.items():
        for i, (ds, st, exc) in enumerate(sent):
            assert exc is None, "sender %d: C-STORE #%d raised %s" % (n, i, exc)
            if st == 0x0000:
                acknowledged[ds.SOPInstanceUID] = ds
            else:
                # Only the last C-STORE of an association, the one the kill cut, has no success:
                # no response at all (the bridge never answered a failure here).
                assert i == len(sent) - 1 and st is None, "sender %d: C-STORE #%d of %d answered %s" % (
                    n, i, len(sent), st if st is None else "%04X" % st)
                in_flight[ds.SOPInstanceUID] = ds
    assert len(acknowledged) >= 40, "the senders did not get far enough before the kill"
    assert len(in_flight) <= 4

    log_start = b.log_size()
    b.start()  # recovery runs at start
    # Exactly what the kill left in tmp/ was completed (committed, not yet moved) or removed.
    assert stalled_ds.SOPInstanceUID not in acknowledged and len(left_in_tmp) >= 1
    b.wait_for_log("recovered the store after an unclean stop", start=log_start)
    m = re.search(r"completed=(\d+) removed-temporary-files=(\d+) .*recovered the store after an unclean stop",
                  b.log_text()[log_start:])
    assert m, log_lines(b, "recovered the store", log_start)
    completed, removed = int(m.group(1)), int(m.group(2))
    assert completed + removed == len(left_in_tmp) and removed >= 1, (completed, removed, left_in_tmp)

    for ds in acknowledged.values():
        assert_stored_as_sent(b, ds)
    # Not acknowledged: the stalled one is absent; one cut by the kill is absent, or whole and
    # indexed (committed just before the kill, its response lost). Nothing else is in the study.
    assert_absent(b, stalled_ds.SOPInstanceUID)
    explained = []
    for uid, ds in in_flight.items():
        if b.instances(uid):
            assert_stored_as_sent(b, ds)
            explained.append(uid)
    in_study = {r["sop_instance_uid"] for r in b.study_instances(study)}
    assert in_study == set(acknowledged) | set(explained), "stored but never sent: %s" % sorted(
        in_study - set(acknowledged) - set(explained))
    assert_consistent(b)
    assert_ledger_covers_index(b)
    # And it serves again.
    assoc = associate(b.port)
    ds = ct()
    assert status_of(assoc.send_c_store(ds)) == 0x0000
    assoc.release()
    assert_stored_as_sent(b, ds)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # pynetdicom's reactor sees the cut
def test_broken_association_mid_transfer_keeps_nothing_and_server_keeps_serving(bridge):
    assoc = associate(bridge.port)
    big = ct(rows=1024)  # 2 MiB of pixel data
    assoc_socket = assoc.dul.socket
    sent = {"n": 0, "cut": False}
    real_send = assoc_socket.send

    # Cut the TCP connection after ~600 KB of the dataset went out. (pynetdicom's DUL thread
    # calls this; the OSError tells it the transport closed.)
    def cutting_send(data, *args):
        sent["n"] += len(data)
        if sent["n"] > 600_000:
            sent["cut"] = True
            assoc_socket.socket.shutdown(socket.SHUT_RDWR)
            raise OSError("cut by the test")
        return real_send(data, *args)

    log_start = bridge.log_size()
    assoc_socket.send = cutting_send
    assoc.dimse_timeout = 5  # pynetdicom waits that long for the response that cannot come
    rsp = assoc.send_c_store(big)
    assert sent["cut"], "the transfer was not cut"
    assert status_of(rsp) is None, "a response to a C-STORE whose dataset never arrived: %r" % rsp
    assoc.abort()
    # The bridge noticed, logged it for this instance, and kept nothing.
    bridge.wait_for_log("C-STORE interrupted: the association broke during the transfer; nothing kept",
                        start=log_start)
    lines = log_lines(bridge, "nothing kept", log_start)
    assert len(lines) == 1 and "sop-instance-uid=%s " % big.SOPInstanceUID in lines[0], lines
    bridge.wait_for_log("association ended abnormally", start=log_start)
    ended = log_lines(bridge, "association ended abnormally", log_start)
    assert len(ended) == 1 and "reason=dataset reception failed" in ended[0], ended
    assert_absent(bridge, big.SOPInstanceUID)
    assert_consistent(bridge)
    other = associate(bridge.port)
    ds = ct()
    assert status_of(other.send_c_store(ds)) == 0x0000
    other.release()
    assert_stored_as_sent(bridge, ds)


def write_raw(path: Path, meta_sop_instance: str, dataset_bytes: bytes):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = meta_sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.3.4"
    from pydicom.filewriter import write_file_meta_info
    from pydicom.filebase import DicomBytesIO
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + buf.getvalue() + dataset_bytes)


@pytest.fixture
def chunked():
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's dataset bytes as they are
    yield
    _config.STORE_SEND_CHUNKED_DATASET = old


def test_malformed_dataset_is_answered_c000(bridge, tmp_path, chunked):
    uid = generate_uid()
    # A tag followed by a length that runs past the end: not parseable.
    garbage = bytes.fromhex("08001800") + b"UI" + (200).to_bytes(2, "little") + b"1.2.3" + b"\xff" * 7
    path = tmp_path / "bad.dcm"
    write_raw(path, uid, garbage)
    assoc = associate(bridge.port)
    status = assoc.send_c_store(str(path))
    assert status.Status == 0xC000
    assert assoc.send_c_store(ct()).Status == 0  # same association keeps working
    assoc.release()
    assert uid not in stored_rows(bridge)
    assert_consistent(bridge)


def test_dataset_not_matching_the_request_is_answered_a900(bridge, tmp_path, chunked):
    ds = ct()
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    path = tmp_path / "mismatch.dcm"
    other = generate_uid()
    write_raw(path, other, buf.getvalue())  # the request says `other`, the dataset says ds.SOPInstanceUID
    assoc = associate(bridge.port)
    status = assoc.send_c_store(str(path))
    assert status.Status == 0xA900
    assoc.release()
    rows = stored_rows(bridge)
    assert other not in rows and ds.SOPInstanceUID not in rows
    assert_consistent(bridge)


def test_unknown_sop_class_is_refused_at_negotiation(bridge):
    ae = AE(ae_title=CALLING)
    ae.add_requested_context("1.2.826.0.1.3680043.10.999.1", ExplicitVRLittleEndian)  # not a storage class
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", bridge.port, ae_title="BRIDGE")
    assert assoc.is_established
    accepted = {c.abstract_syntax for c in assoc.accepted_contexts}
    rejected = {c.abstract_syntax for c in assoc.rejected_contexts}
    assert "1.2.826.0.1.3680043.10.999.1" in rejected
    assert CTImageStorage in accepted
    assoc.release()


def test_unknown_transfer_syntax_is_refused_at_negotiation(bridge):
    ae = AE(ae_title=CALLING)
    ae.add_requested_context(CTImageStorage, "1.2.826.0.1.3680043.10.999.2")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", bridge.port, ae_title="BRIDGE")
    assert assoc.is_established
    assert [c.result for c in assoc.rejected_contexts] == [0x04]  # transfer syntaxes not supported
    assoc.release()


FULL_DISK_FITTING = 3  # instances that fit on the small disk; the next one does not
INSTANCE_ROWS = 1024  # 2 MiB of pixel data each


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_is_answered_a700_and_nothing_acknowledged_is_lost(bridge_bin, netns, tmp_path):
    """The home on a tmpfs sized, once the bridge has started, to hold exactly the next
    FULL_DISK_FITTING instances plus half of one more (the index and ledger writes of three commits
    take far less): those are acknowledged, the next one is answered A700 with its Error Comment
    and leaves nothing behind, and after a restart every acknowledged instance is still there."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    harness.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    b = None
    try:
        b = harness.Bridge(bridge_bin, str(mnt / "home"), harness.free_port(),
                           log_path=str(tmp_path / "bridge.log"))  # the log is not on the small disk
        b.init()
        b.add_ae(CALLING, host="127.0.0.1")
        b.start()
        datasets = [ct(rows=INSTANCE_ROWS) for _ in range(FULL_DISK_FITTING + 1)]
        size = len(wire_bytes(datasets[0]))
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        limit = used + FULL_DISK_FITTING * size + size // 2
        harness.run(["mount", "-o", "remount,size=%d" % limit, str(mnt)], check=True)

        log_start = b.log_size()
        assoc = associate(b.port)
        responses = [assoc.send_c_store(ds) for ds in datasets]
        statuses = [status_of(r) for r in responses]
        assert statuses == [0x0000] * FULL_DISK_FITTING + [0xA700], ["%04X" % s if s is not None else None
                                                                     for s in statuses]
        assert str(responses[-1].get("ErrorComment", "")) == "out of disk space"
        assert status_of(assoc.send_c_echo()) == 0x0000  # still serving on the same association
        assoc.release()
        full = datasets[-1]
        lines = log_lines(b, "out of disk space", log_start)
        assert len(lines) == 1, lines
        assert "C-STORE refused: out of disk space; nothing kept" in lines[0]
        assert "sop-instance-uid=%s " % full.SOPInstanceUID in lines[0], lines[0]
        for ds in datasets[:-1]:
            assert_stored_as_sent(b, ds)
        assert_absent(b, full.SOPInstanceUID)
        assert_consistent(b)

        # Space again, and a restart: nothing acknowledged is lost, the refused one can be sent again.
        harness.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        b.restart()
        for ds in datasets[:-1]:
            assert_stored_as_sent(b, ds)
        assert_absent(b, full.SOPInstanceUID)
        assert_consistent(b)
        assert_ledger_covers_index(b)
        assoc = associate(b.port)
        assert status_of(assoc.send_c_store(full)) == 0x0000
        assoc.release()
        assert_stored_as_sent(b, full)
    finally:
        if b:
            b.stop()
        harness.run(["umount", "-l", str(mnt)])
