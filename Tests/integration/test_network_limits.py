"""The DICOM network limits of `dicom-bridge serve` that README.md's Configuration table claims:
`maxAssociations` (more at once are rejected as transient, "local limit exceeded"),
`dimseTimeoutSeconds` (an idle or stalled association is aborted) and `maxPDU` (the largest PDU we
receive, declared in the A-ASSOCIATE-AC). Seen from the wire: pynetdicom, and a minimal upper-layer
client written here (raw PDUs over a socket) where a test needs to misbehave exactly."""

import json
import os
import socket
import struct
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

import harness

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

CALLING = "PYNETDICOM"  # known to the bridge_factory's bridges, from 127.0.0.1


def configured_bridge(bridge_factory, init_args=(), **config):
    """A bridge initialised with init_args, with `config` written into its config.json, started."""
    b = bridge_factory(init_args=init_args, start=False)
    path = os.path.join(b.home, "config.json")
    with open(path) as f:
        c = json.load(f)
    c.update(config)
    with open(path, "w") as f:
        json.dump(c, f)
    return b.start()


def request_association(port, calling=CALLING):
    """(pynetdicom association, (result, source, reason) of an A-ASSOCIATE-RJ or None)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    rejection = {}

    def on_acse_recv(event):
        p = event.primitive
        if getattr(p, "result", None) in (0x01, 0x02):  # an A-ASSOCIATE-RJ (not an AC, not an A-ABORT)
            rejection["rj"] = (p.result, p.result_source, p.diagnostic)

    assoc = ae.associate("127.0.0.1", port, ae_title="BRIDGE", evt_handlers=[(evt.EVT_ACSE_RECV, on_acse_recv)])
    return assoc, rejection.get("rj")


def ct_dataset(pixel_bytes=100_000):
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "NETLIMIT"
    ds.Modality = "CT"
    ds.PixelData = os.urandom(pixel_bytes)
    ds["PixelData"].VR = "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # for pynetdicom's choice of context
    return ds


def encode(ds, implicit):
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


# -- a minimal DICOM upper-layer client (PS3.8 9.3): it sends exactly the PDUs a test asks for ------

def _item(item_type, body):
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def store_command(sop_instance_uid, message_id=1):
    """A C-STORE-RQ command set (Implicit VR Little Endian, with its Command Group Length)."""
    cmd = Dataset()
    cmd.AffectedSOPClassUID = CTImageStorage
    cmd.CommandField = 0x0001
    cmd.MessageID = message_id
    cmd.Priority = 0
    cmd.CommandDataSetType = 0x0000
    cmd.AffectedSOPInstanceUID = sop_instance_uid
    cmd.CommandGroupLength = 0
    cmd.CommandGroupLength = len(encode(cmd, True)) - 12  # everything after (0000,0000) itself
    return encode(cmd, True)


class RawAssociation:
    """One association proposing CT Image Storage in Explicit VR Little Endian (context 1)."""

    def __init__(self, port, calling=CALLING, called="BRIDGE", max_pdu=16384, expect_ac=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + b"\0" * 32
        body += _item(0x10, b"1.2.840.10008.3.1.1.1")
        body += _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, CTImageStorage.encode())
                      + _item(0x40, ExplicitVRLittleEndian.encode()))
        body += _item(0x50, _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, b"1.2.826.0.1.3680043.10.999"))
        self.sock.sendall(struct.pack(">BBI", 0x01, 0, len(body)) + body)
        pdu_type, ac = self.recv_pdu()
        self.pdu_type = pdu_type
        # An A-ASSOCIATE-RJ: (result, source, reason/diag.)
        self.rejection = tuple(ac[1:4]) if pdu_type == 0x03 else None
        self.max_pdu, self.context_result = None, None
        if not expect_ac and pdu_type != 0x02:
            return
        assert pdu_type == 0x02, "expected an A-ASSOCIATE-AC, got PDU type %r" % pdu_type
        i = 68  # protocol version, reserved, called, calling, reserved: then the items
        while i < len(ac):
            item_type, _, length = struct.unpack(">BBH", ac[i:i + 4])
            value = ac[i + 4:i + 4 + length]
            if item_type == 0x21 and value[0] == 1:
                self.context_result = value[2]
            elif item_type == 0x50:
                j = 0
                while j < len(value):
                    sub_type, _, sub_length = struct.unpack(">BBH", value[j:j + 4])
                    if sub_type == 0x51:
                        self.max_pdu = struct.unpack(">I", value[j + 4:j + 8])[0]
                    j += 4 + sub_length
            i += 4 + length
        assert self.context_result == 0, "CT Image Storage not accepted (result %r)" % self.context_result

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def recv_pdu(self):
        """(PDU type, body), or (None, None) when the bridge closed the connection."""
        head = self._recv_exact(6)
        if head is None:
            return None, None
        pdu_type, _, length = struct.unpack(">BBI", head)
        return pdu_type, self._recv_exact(length)

    @staticmethod
    def p_data(data, command=False, last=True):
        """One P-DATA-TF PDU holding one PDV of context 1; its PDU length is len(data) + 6."""
        control = (1 if command else 0) | (2 if last else 0)
        pdv = struct.pack(">IBB", len(data) + 2, 1, control) + data
        return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv

    def send_store(self, ds, pdu_length, stop_after=None):
        """Sends a C-STORE-RQ: its command, then its dataset in P-DATA-TF PDUs whose PDU length
        is pdu_length (the last one may be shorter). stop_after: send only that many dataset
        bytes (no last fragment), then nothing more."""
        self.sock.sendall(self.p_data(store_command(ds.SOPInstanceUID), command=True))
        data = encode(ds, False)
        chunk = pdu_length - 6
        end = len(data) if stop_after is None else stop_after
        for start in range(0, end, chunk):
            piece = data[start:min(start + chunk, end)]
            self.sock.sendall(self.p_data(piece, last=(stop_after is None and start + chunk >= len(data))))

    def release(self):
        self.sock.sendall(struct.pack(">BBIHH", 0x05, 0, 4, 0, 0))  # A-RELEASE-RQ
        assert self.recv_pdu()[0] == 0x06, "no A-RELEASE-RP"  # A-RELEASE-RP
        self.close()

    def close(self):
        self.sock.close()


def store_status(rsp_body):
    """The Status (0000,0900) of a C-STORE-RSP command PDV (P-DATA-TF body)."""
    pdv_length, _, control = struct.unpack(">IBB", rsp_body[:6])
    assert control & 1, "expected a command PDV"
    cmd = rsp_body[6:4 + pdv_length]
    i = 0
    while i < len(cmd):
        group, element, length = struct.unpack("<HHI", cmd[i:i + 8])
        if (group, element) == (0x0000, 0x0900):
            return struct.unpack("<H", cmd[i + 8:i + 10])[0]
        i += 8 + length
    raise AssertionError("no Status in the response")


def assert_not_stored(bridge, uid):
    assert bridge.instances(uid, current_only=False) == [], "%s was stored" % uid
    assert os.listdir(os.path.join(bridge.home, "tmp")) == [], "a temporary file was left behind"


def assert_stores(bridge):
    """The bridge serves a new association and stores (bit for bit) what it receives."""
    assoc, rj = request_association(bridge.port)
    assert assoc.is_established, "the bridge no longer accepts associations (%s)" % (rj,)
    ds = ct_dataset(1000)
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status and status.Status == 0x0000
    rows = bridge.instances(ds.SOPInstanceUID)
    assert len(rows) == 1
    with open(bridge.stored_path(rows[0]), "rb") as f:
        assert f.read().endswith(encode(ds, False))


# == maxAssociations ===================================================================================

LOCAL_LIMIT_EXCEEDED = (0x02, 0x03, 0x02)  # rejected-transient, service-provider (presentation), local-limit-exceeded


def probe(port):
    """A raw association request: (RawAssociation, or None when rejected; the A-ASSOCIATE-RJ's
    (result, source, reason) or None). Read from the wire, whatever the bridge does next."""
    raw = RawAssociation(port, expect_ac=False)
    if raw.pdu_type == 0x02:
        return raw, None
    raw.close()
    assert raw.pdu_type == 0x03, "expected an A-ASSOCIATE-AC or -RJ, got PDU type %r" % raw.pdu_type
    return None, raw.rejection


def test_max_associations_rejects_the_next_one_transiently_and_admits_again_after_one_closes(bridge_factory):
    b = configured_bridge(bridge_factory, init_args=("--max-associations", 2))
    first, rj1 = request_association(b.port)
    second, rj2 = request_association(b.port)
    assert first.is_established and second.is_established, (rj1, rj2)
    assert first.send_c_echo().Status == 0 and second.send_c_echo().Status == 0

    log_start = b.log_size()
    for _ in range(2):  # a refused request does not take a place either
        third, rj = probe(b.port)
        assert third is None and rj == LOCAL_LIMIT_EXCEEDED, "A-ASSOCIATE-RJ (result, source, reason) %s" % (rj,)
    b.wait_for_log("too many concurrent associations", start=log_start)
    # DCMTK's echoscu reads the same rejection.
    r = harness.echoscu(b.port, "BRIDGE", calling_ae="ECHOSCU")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Rejected Transient" in out and "Reason: Local Limit Exceeded" in out, out
    assert first.send_c_echo().Status == 0  # the two admitted ones are still served

    first.release()
    # The place is free once the bridge has ended that association (it logs "released" first,
    # then gives the place back): retry until admitted, every refusal meanwhile being the same.
    deadline = time.monotonic() + 30
    while True:
        again, rj = probe(b.port)
        if again is not None:
            break
        assert rj == LOCAL_LIMIT_EXCEEDED, rj
        assert time.monotonic() < deadline, "no association admitted within 30 s of releasing one"
        time.sleep(0.1)
    # And the limit still holds with the new one.
    fourth, rj = probe(b.port)
    assert fourth is None and rj == LOCAL_LIMIT_EXCEEDED, rj
    assert second.send_c_echo().Status == 0
    again.release()
    second.release()


# == dimseTimeoutSeconds =================================================================================

DIMSE_TIMEOUT = 3


def test_stalled_transfer_is_aborted_after_dimse_timeout_and_the_bridge_keeps_serving(bridge_factory):
    b = configured_bridge(bridge_factory, dimseTimeoutSeconds=DIMSE_TIMEOUT)
    raw = RawAssociation(b.port)
    ds = ct_dataset()
    log_start = b.log_size()
    raw.send_store(ds, pdu_length=16384, stop_after=30_000)  # a third of the dataset, then silence
    stalled = time.monotonic()
    # Meanwhile other associations are served.
    assert_stores(b)
    try:
        pdu_type, body = raw.recv_pdu()  # the socket's timeout (60 s) bounds the wait
    except socket.timeout:
        pytest.fail("the stalled association was not aborted within 60 s (dimseTimeoutSeconds %d)" % DIMSE_TIMEOUT)
    waited = time.monotonic() - stalled
    assert pdu_type == 0x07, "expected an A-ABORT, got PDU type %r" % pdu_type
    # It was the DIMSE timeout that ended it, not something sooner.
    assert waited >= DIMSE_TIMEOUT - 1, "aborted after %.1f s, before dimseTimeoutSeconds %d" % (waited, DIMSE_TIMEOUT)
    raw.close()
    b.wait_for_log("reason=dataset reception failed: DIMSE No data available (timeout in non-blocking mode)",
                   start=log_start)
    log = b.log_text()[log_start:]
    assert "C-STORE interrupted: the association broke during the transfer; nothing kept" in log
    assert ds.SOPInstanceUID in log.split("nothing kept")[0].rsplit("\n", 1)[-1]
    assert_not_stored(b, ds.SOPInstanceUID)
    assert_stores(b)


def test_idle_association_is_aborted_after_dimse_timeout(bridge_factory):
    b = configured_bridge(bridge_factory, dimseTimeoutSeconds=DIMSE_TIMEOUT)
    log_start = b.log_size()
    raw = RawAssociation(b.port)
    opened = time.monotonic()
    try:
        pdu_type, _ = raw.recv_pdu()
    except socket.timeout:
        pytest.fail("the idle association was not aborted within 60 s (dimseTimeoutSeconds %d)" % DIMSE_TIMEOUT)
    waited = time.monotonic() - opened
    assert pdu_type == 0x07, "expected an A-ABORT, got PDU type %r" % pdu_type
    assert waited >= DIMSE_TIMEOUT - 1, "aborted after %.1f s, before dimseTimeoutSeconds %d" % (waited, DIMSE_TIMEOUT)
    raw.close()
    b.wait_for_log("reason=idle timeout", start=log_start)
    assert_stores(b)


# == maxPDU =============================================================================================

MAX_PDU = 20000  # not a default of anyone's


def test_max_pdu_is_declared_in_the_associate_ac(bridge_factory):
    b = configured_bridge(bridge_factory, init_args=("--max-pdu", MAX_PDU))
    assoc, rj = request_association(b.port)
    assert assoc.is_established, rj
    assert assoc.acceptor.maximum_length == MAX_PDU
    # pynetdicom fragments what it sends to that size; a dataset of many PDUs arrives whole.
    ds = ct_dataset(5 * MAX_PDU)
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    with open(b.stored_path(b.instances(ds.SOPInstanceUID)[0]), "rb") as f:
        assert f.read().endswith(encode(ds, False))
    raw = RawAssociation(b.port)
    assert raw.max_pdu == MAX_PDU
    raw.close()


def test_pdu_of_exactly_max_pdu_is_received(bridge_factory):
    b = configured_bridge(bridge_factory, init_args=("--max-pdu", MAX_PDU))
    raw = RawAssociation(b.port)
    ds = ct_dataset(3 * MAX_PDU)
    raw.send_store(ds, pdu_length=MAX_PDU)
    pdu_type, body = raw.recv_pdu()
    assert pdu_type == 0x04, "expected the C-STORE-RSP, got PDU type %r" % pdu_type
    assert store_status(body) == 0x0000
    raw.sock.sendall(struct.pack(">BBIHH", 0x05, 0, 4, 0, 0))  # A-RELEASE-RQ
    assert raw.recv_pdu()[0] == 0x06  # A-RELEASE-RP
    raw.close()
    rows = b.instances(ds.SOPInstanceUID)
    assert len(rows) == 1
    with open(b.stored_path(rows[0]), "rb") as f:
        assert f.read().endswith(encode(ds, False))


def test_pdu_larger_than_max_pdu_aborts_the_association_and_keeps_nothing(bridge_factory):
    """A P-DATA-TF one byte longer than the Maximum Length the bridge declared breaks PS3.8
    D.1: the bridge aborts the association (A-ABORT), keeps nothing of that C-STORE, says why in
    its log, and goes on serving."""
    b = configured_bridge(bridge_factory, init_args=("--max-pdu", MAX_PDU))
    raw = RawAssociation(b.port)
    log_start = b.log_size()
    ds = ct_dataset(3 * MAX_PDU)
    raw.send_store(ds, pdu_length=MAX_PDU + 1, stop_after=MAX_PDU + 1 - 6)  # one PDU, then wait
    pdu_type, _ = raw.recv_pdu()
    assert pdu_type == 0x07, "expected an A-ABORT, got PDU type %r" % pdu_type
    raw.close()
    b.wait_for_log("DUL Illegal PDU Length %d.  Max expected %d" % (MAX_PDU + 1, MAX_PDU), start=log_start)
    log = b.log_text()[log_start:]
    assert "C-STORE interrupted: the association broke during the transfer; nothing kept" in log
    assert "association ended abnormally" in log
    assert_not_stored(b, ds.SOPInstanceUID)
    assert_stores(b)
