"""Nothing acknowledged is ever lost: SIGKILL during concurrent stores, a full disk, broken
associations and bad datasets, each answered with the right DIMSE status while the bridge keeps
serving. Drives the real binary with pynetdicom over loopback."""

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DICOM_BRIDGE_BIN", str(ROOT / ".build" / "debug" / "dicom-bridge"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bridge:
    """A `dicom-bridge serve` process on its own home and port."""

    def __init__(self, home: Path, port: int, *extra: str, log: Path = None):
        self.home, self.port, self.extra = home, port, extra
        self.log = log or home.parent / f"{home.name}.log"
        if not (home / "config.json").exists():
            subprocess.run([BIN, "init", "--home", str(home), "--ae-title", "BRIDGE", "--port", str(port),
                            "--http-port", str(free_port())],
                           check=True, capture_output=True)
        self.proc = None

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([BIN, "serve", "--home", str(self.home), "--accept-any", *self.extra],
                                     stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if "listening for DICOM" in self.log.read_text(errors="replace").split("shutting down")[-1] and self._echo():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("bridge exited:\n" + self.log.read_text(errors="replace"))
            time.sleep(0.1)
        raise RuntimeError("bridge did not start:\n" + self.log.read_text(errors="replace"))

    def _echo(self):
        ae = AE(ae_title="PROBE")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", self.port, ae_title="BRIDGE")
        if not assoc.is_established:
            return False
        ok = assoc.send_c_echo().Status == 0
        assoc.release()
        return ok

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def db(self):
        return sqlite3.connect(self.home / "index.sqlite")


@pytest.fixture
def bridge(tmp_path):
    b = Bridge(tmp_path / "home", free_port()).start()
    yield b
    b.stop()


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


def associate(port, *contexts, calling="SENDER"):
    ae = AE(ae_title=calling)
    for c in contexts or (CTImageStorage,):
        ae.add_requested_context(c, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="BRIDGE")
    assert assoc.is_established
    return assoc


def stored_rows(bridge):
    with bridge.db() as db:
        return {r[0]: (r[1], r[2]) for r in db.execute(
            "SELECT sop_instance_uid, sha256, path FROM instance WHERE is_current = 1")}


def assert_consistent(bridge):
    """Every row's file exists and hashes to its name; nothing is left in tmp/."""
    with bridge.db() as db:
        for sha, path in db.execute("SELECT sha256, path FROM instance"):
            data = (bridge.home / path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sha, path
    assert list((bridge.home / "tmp").iterdir()) == []


def test_sigkill_during_concurrent_stores_loses_nothing_acknowledged(tmp_path):
    b = Bridge(tmp_path / "home", free_port()).start()
    study = generate_uid()
    acknowledged = {}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n):
        try:
            assoc = associate(b.port)
            for _ in range(400):
                if stop.is_set():
                    break
                ds = ct(rows=128, study=study)
                status = assoc.send_c_store(ds)
                if status and status.Status == 0:
                    with lock:
                        acknowledged[ds.SOPInstanceUID] = ds
            assoc.release()
        except Exception:
            pass

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while len(acknowledged) < 40 and time.time() < deadline:
        time.sleep(0.05)
    b.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acknowledged) >= 40, "the senders did not get far enough before the kill"

    b.start()  # recovery runs at start
    try:
        rows = stored_rows(b)
        missing = [uid for uid in acknowledged if uid not in rows]
        assert missing == [], f"{len(missing)} acknowledged instances lost"
        for uid, ds in acknowledged.items():
            stored = pydicom.dcmread(b.home / rows[uid][1])
            assert stored.SOPInstanceUID == uid
            assert stored.PixelData == ds.PixelData
        assert_consistent(b)
        # The log and the index agree: every acknowledged instance has its entry, and the ledger
        # (entries, tree, every checkpoint signed before and after the kill) verifies.
        with b.db() as db:
            unanchored = db.execute("SELECT COUNT(*) FROM instance WHERE ledger_index IS NULL").fetchone()[0]
            entries = db.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0]
            versions = db.execute("SELECT COUNT(*) FROM instance").fetchone()[0]
        assert unanchored == 0 and entries == versions
        r = subprocess.run([BIN, "ledger", "verify", "--home", str(b.home)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        # And it serves again.
        assoc = associate(b.port)
        assert assoc.send_c_store(ct()).Status == 0
        assoc.release()
    finally:
        b.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # pynetdicom's reactor sees the cut
def test_broken_association_mid_transfer_keeps_nothing_and_server_keeps_serving(bridge):
    assoc = associate(bridge.port)
    big = ct(rows=1024)  # 2 MiB of pixel data
    assoc_socket = assoc.dul.socket
    sent = {"n": 0}
    real_send = assoc_socket.send

    # Cut the TCP connection after ~600 KB of the dataset went out.
    def cutting_send(data, *args):
        sent["n"] += len(data)
        if sent["n"] > 600_000:
            assoc_socket.socket.shutdown(socket.SHUT_RDWR)
            raise OSError("cut by the test")
        return real_send(data, *args)

    assoc_socket.send = cutting_send
    try:
        assoc.send_c_store(big)
    except Exception:
        pass
    assoc.abort()
    time.sleep(1)
    assert big.SOPInstanceUID not in stored_rows(bridge)
    assert_consistent(bridge)
    other = associate(bridge.port)
    assert other.send_c_store(ct()).Status == 0
    other.release()
    log = bridge.log.read_text()
    assert "nothing kept" in log or "ended abnormally" in log


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
    ae = AE(ae_title="SENDER")
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
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, "1.2.826.0.1.3680043.10.999.2")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", bridge.port, ae_title="BRIDGE")
    assert assoc.is_established
    assert [c.result for c in assoc.rejected_contexts] == [0x04]  # transfer syntaxes not supported
    assoc.release()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_is_answered_a700_and_nothing_acknowledged_is_lost(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    b = None
    try:
        b = Bridge(mnt / "home", free_port(), log=tmp_path / "bridge.log").start()  # the log is not on the full disk
        filler = mnt / "filler"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 1_500_000))  # leave ~1.5 MB
        assoc = associate(b.port)
        statuses = {}
        sent = {}
        for _ in range(8):
            ds = ct(rows=256)  # ~128 KiB each
            st = assoc.send_c_store(ds)
            statuses[ds.SOPInstanceUID] = st.Status if st else None
            sent[ds.SOPInstanceUID] = ds
        codes = set(statuses.values())
        assert 0xA700 in codes, f"expected A700 once the disk is full, got {codes}"
        assert assoc.send_c_echo().Status == 0  # still serving on the same association
        assoc.release()
        filler.unlink()
        rows = stored_rows(b)
        for uid, code in statuses.items():
            if code == 0:
                assert uid in rows
                assert pydicom.dcmread(b.home / rows[uid][1]).PixelData == sent[uid].PixelData
            else:
                assert uid not in rows
        assert_consistent(b)
        # Space is back: storing works again.
        assoc = associate(b.port)
        assert assoc.send_c_store(ct()).Status == 0
        assoc.release()
        assert "out of disk space" in b.log.read_text() or "No space left" in b.log.read_text()
    finally:
        if b:
            b.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
