#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from testdata/ (run by Tests/fuzz/run).

  file/         every testdata/*.dcm as it is, plus an imaging manifest (KOS) with its evidence
  stored/       the dataset part of each, after one byte choosing its transfer syntax (fuzz_stored.cpp)
  association/  PDU streams a peer sends: A-ASSOCIATE-RQ, P-DATA-TF with C-ECHO, C-STORE (each
                transfer syntax family, fragmented PDVs), C-FIND, C-MOVE, C-GET, C-CANCEL,
                A-RELEASE-RQ and A-ABORT

usage: make_seeds.py TESTDATA_DIR OUT_DIR
"""
import io
import os
import struct
import sys

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

# The selector byte of fuzz_stored.cpp: index of the transfer syntax in its table.
STORED_TS = {
    "1.2.840.10008.1.2": 0, "1.2.840.10008.1.2.1": 1, "1.2.840.10008.1.2.2": 2, "1.2.840.10008.1.2.1.99": 3,
    "1.2.840.10008.1.2.4.50": 4, "1.2.840.10008.1.2.4.51": 5, "1.2.840.10008.1.2.4.57": 6,
    "1.2.840.10008.1.2.4.70": 7, "1.2.840.10008.1.2.4.80": 8, "1.2.840.10008.1.2.4.81": 9,
    "1.2.840.10008.1.2.5": 10, "1.2.840.10008.1.2.4.90": 11, "1.2.840.10008.1.2.4.91": 12,
}


def split_part10(data):
    """(transfer syntax UID, dataset bytes) of a Part 10 file."""
    assert data[128:132] == b"DICM"
    pos, ts = 132, None
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        el = struct.unpack_from("<H", data, pos + 2)[0]
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length, head = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", data, pos + 6)[0], 8
        value = data[pos + head:pos + head + length]
        if el == 0x0010:
            ts = value.rstrip(b"\0 ").decode()
        pos += head + length
    return ts, data[pos:]


def manifest():
    """A small XDS-I.b imaging manifest (KOS) with a Current Requested Procedure Evidence Sequence."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.10"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.11"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.12"
    ds.Modality = "KO"
    ds.PatientName = "Fuzz^Seed"
    ds.PatientID = "SEED1"
    sop = Dataset()
    sop.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    sop.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.13"
    series = Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.14"
    series.RetrieveAETitle = "BRIDGE"
    series.RetrieveURL = "https://bridge.example/wado/studies/1.2.826.0.1.3680043.8.498.11"
    series.ReferencedSOPSequence = Sequence([sop])
    study = Dataset()
    study.StudyInstanceUID = ds.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


# ---- PDUs (PS3.8 9.3) --------------------------------------------------------------------------

def item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(contexts, calling=b"FUZZ_SCU", called=b"FUZZ_SCP", roles=()):
    """contexts: [(abstract syntax, [transfer syntaxes])]; roles: [(abstract syntax, scu, scp)]."""
    body = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + bytes(32)
    body += item(0x10, b"1.2.840.10008.3.1.1.1")
    for i, (abstract, tss) in enumerate(contexts):
        pc = struct.pack(">BBBB", 2 * i + 1, 0, 0, 0) + item(0x30, abstract.encode())
        pc += b"".join(item(0x40, ts.encode()) for ts in tss)
        body += item(0x20, pc)
    user = item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.8.498.1")
    for uid, scu, scp in roles:
        user += item(0x54, struct.pack(">H", len(uid)) + uid.encode() + bytes([scu, scp]))
    user += item(0x55, b"FUZZ_SEED")
    body += item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


def p_data(pcid, payload, command, max_fragment=8000):
    """P-DATA-TF PDUs carrying `payload` in fragments, the last one flagged."""
    out, chunks = b"", [payload[i:i + max_fragment] for i in range(0, len(payload), max_fragment)] or [b""]
    for n, chunk in enumerate(chunks):
        header = (1 if command else 0) | (2 if n == len(chunks) - 1 else 0)
        pdv = struct.pack(">IBB", len(chunk) + 2, pcid, header) + chunk
        out += struct.pack(">BBI", 4, 0, len(pdv)) + pdv
    return out


def command(fields):
    """A command set (implicit VR little endian, group 0000) from [(element, VR kind, value)]."""
    body = b""
    for el, kind, value in sorted(fields):
        if kind == "US":
            v = struct.pack("<H", value)
        else:
            v = value.encode()
            if len(v) % 2:
                v += b"\0" if kind == "UI" else b" "
        body += struct.pack("<HHI", 0, el, len(v)) + v
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def implicit(ds):
    from pydicom.filebase import DicomBytesIO
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    write_dataset(out, ds)
    return out.getvalue()


RELEASE = struct.pack(">BBI", 5, 0, 4) + bytes(4)
ABORT = struct.pack(">BBI", 7, 0, 4) + bytes([0, 0, 0, 0])
VERIFICATION = "1.2.840.10008.1.1"
FIND, MOVE, GET = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3"


def echo(pcid, msg_id=1):
    return p_data(pcid, command([(0x0002, "UI", VERIFICATION), (0x0100, "US", 0x0030), (0x0110, "US", msg_id),
                                 (0x0800, "US", 0x0101)]), True)


def store(pcid, sop_class, sop_instance, dataset, msg_id=2):
    cmd = command([(0x0002, "UI", sop_class), (0x0100, "US", 0x0001), (0x0110, "US", msg_id), (0x0700, "US", 0),
                   (0x0800, "US", 0x0000), (0x1000, "UI", sop_instance)])
    return p_data(pcid, cmd, True) + p_data(pcid, dataset, False)


def query(level="STUDY", charset="ISO_IR 100"):
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    ds.PatientName = "Fuzz*"
    ds.PatientID = ""
    ds.StudyInstanceUID = ""
    ds.StudyDate = "20200101-"
    return implicit(ds)


def find(pcid, msg_id=3, identifier=None):
    cmd = command([(0x0002, "UI", FIND), (0x0100, "US", 0x0020), (0x0110, "US", msg_id), (0x0700, "US", 0),
                   (0x0800, "US", 0x0000)])
    return p_data(pcid, cmd, True) + p_data(pcid, identifier or query(), False)


def cancel(pcid, msg_id):
    return p_data(pcid, command([(0x0100, "US", 0x0FFF), (0x0120, "US", msg_id), (0x0800, "US", 0x0101)]), True)


def retrieve(pcid, sop_class, field, msg_id, destination=None):
    fields = [(0x0002, "UI", sop_class), (0x0100, "US", field), (0x0110, "US", msg_id), (0x0700, "US", 0),
              (0x0800, "US", 0x0000)]
    if destination:
        fields.append((0x0600, "AE", destination))
    return p_data(pcid, command(fields), True) + p_data(pcid, query("STUDY"), False)


def main():
    testdata, out = sys.argv[1], sys.argv[2]
    for d in ("file", "stored", "association"):
        os.makedirs(os.path.join(out, d), exist_ok=True)

    def put(kind, name, data):
        with open(os.path.join(out, kind, name), "wb") as f:
            f.write(data)

    files = {}
    for name in sorted(os.listdir(testdata)):
        if not name.endswith(".dcm"):
            continue
        with open(os.path.join(testdata, name), "rb") as f:
            data = f.read()
        files[name] = data
        put("file", name, data)
        ts, dataset = split_part10(data)
        if ts in STORED_TS:
            put("stored", name, bytes([STORED_TS[ts]]) + dataset)
            put("stored", "to_implicit_" + name, bytes([STORED_TS[ts] | 0x10]) + dataset)
    kos = manifest()
    put("file", "kos_manifest.dcm", kos)
    put("stored", "kos_manifest", bytes([1]) + split_part10(kos)[1])

    import pydicom
    ct = ImplicitVRLittleEndian
    put("association", "echo_release", associate_rq([(VERIFICATION, [ct])]) + echo(1) + RELEASE)
    put("association", "echo_abort", associate_rq([(VERIFICATION, [ct])]) + echo(1) + ABORT)
    for name, data in files.items():
        ts, dataset = split_part10(data)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        contexts = [(VERIFICATION, [ct]), (ds.SOPClassUID, [ts])]
        put("association", "store_" + name.replace(".dcm", ""),
            associate_rq(contexts) + store(3, ds.SOPClassUID, ds.SOPInstanceUID, dataset) + RELEASE)
    ds = pydicom.dcmread(io.BytesIO(files["ct_explicit_le.dcm"]), stop_before_pixels=True)
    _, ct_dataset = split_part10(files["ct_explicit_le.dcm"])
    everything = [(VERIFICATION, [ct]), (ds.SOPClassUID, [ExplicitVRLittleEndian]), (FIND, [ct]), (MOVE, [ct]),
                  (GET, [ct])]
    put("association", "store_refused",
        associate_rq(everything) + store(3, ds.SOPClassUID, ds.SOPInstanceUID, ct_dataset, msg_id=0xdead) + RELEASE)
    put("association", "find_release", associate_rq(everything) + find(5) + RELEASE)
    put("association", "find_iso2022", associate_rq(everything) +
        find(5, identifier=query("SERIES", "\\ISO 2022 IR 87")) + RELEASE)
    put("association", "find_cancel", associate_rq(everything) + find(5, msg_id=7) + cancel(5, 7) + RELEASE)
    put("association", "move", associate_rq(everything) + retrieve(7, MOVE, 0x0021, 8, "DEST") + RELEASE)
    put("association", "move_unknown", associate_rq(everything) + retrieve(7, MOVE, 0x0021, 8, "NOWHERE") + RELEASE)
    put("association", "get", associate_rq(everything + [("1.2.840.10008.5.1.4.1.1.2", [ExplicitVRLittleEndian])],
                                           roles=[("1.2.840.10008.5.1.4.1.1.2", 0, 1)])
        + retrieve(9, GET, 0x0010, 9) + RELEASE)
    put("association", "mixed", associate_rq(everything) + echo(1) +
        store(3, ds.SOPClassUID, ds.SOPInstanceUID, ct_dataset) + find(5) + echo(1, 4) + RELEASE)
    put("association", "bad_context", associate_rq([("1.2.3.4", ["1.2.3"]), (VERIFICATION, ["9.9"])]) + RELEASE)


if __name__ == "__main__":
    main()
