"""Byte-level helpers for DICOM Part 10 files, with no dependency beyond the standard library.

The integration tests compare *dataset bytes*: everything after the File Meta Information group
(0002,xxxx). The meta group is always Explicit VR Little Endian, whatever the dataset's transfer
syntax, so it can be walked element by element without a dictionary; the (0002,0000) group length
is not trusted (some writers omit it or get it wrong).
"""

import hashlib
import struct

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
# VRs whose Explicit VR header is tag(4) VR(2) reserved(2) length(4); all others have a 2-byte length.
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


class NotPart10(ValueError):
    pass


def split(data):
    """Split Part 10 bytes into (meta_elements, dataset_offset).

    meta_elements maps (group, element) to the raw value bytes of every File Meta element.
    dataset_offset is the index of the first byte after the File Meta group.
    """
    if len(data) < PREAMBLE_LENGTH + 4 or data[PREAMBLE_LENGTH:PREAMBLE_LENGTH + 4] != MAGIC:
        raise NotPart10("no 'DICM' after a 128-byte preamble")
    pos = PREAMBLE_LENGTH + 4
    meta = {}
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = bytes(data[pos + 4:pos + 6])
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            header = 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            header = 8
        if length == 0xFFFFFFFF or pos + header + length > len(data):
            raise NotPart10("malformed File Meta element (%04X,%04X)" % (group, element))
        meta[(group, element)] = bytes(data[pos + header:pos + header + length])
        pos += header + length
    if (0x0002, 0x0010) not in meta:
        raise NotPart10("File Meta has no Transfer Syntax UID (0002,0010)")
    return meta, pos


def _uid(value):
    return value.rstrip(b"\x00 ").decode("ascii")


def read(path):
    """Read a Part 10 file: a dict with the whole bytes, the dataset bytes and key meta values."""
    with open(path, "rb") as f:
        data = f.read()
    return parse(data)


def parse(data):
    meta, offset = split(data)
    return {
        "bytes": data,
        "dataset_offset": offset,
        "dataset": data[offset:],
        "transfer_syntax_uid": _uid(meta[(0x0002, 0x0010)]),
        "media_storage_sop_class_uid": _uid(meta.get((0x0002, 0x0002), b"")),
        "media_storage_sop_instance_uid": _uid(meta.get((0x0002, 0x0003), b"")),
        "source_ae_title": meta.get((0x0002, 0x0016), b"").decode("ascii", "replace").strip(),
        "meta": meta,
    }


def dataset_bytes(path):
    return read(path)["dataset"]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def first_difference(a, b):
    """Index of the first differing byte (or the shorter length), None if equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def describe_difference(a, b, label_a="sent", label_b="received"):
    i = first_difference(a, b)
    if i is None:
        return "identical"
    lo = max(0, i - 16)
    return ("%s has %d bytes, %s has %d; first difference at dataset offset %d (0x%X):\n  %s: %s\n  %s: %s"
            % (label_a, len(a), label_b, len(b), i, i,
               label_a, a[lo:i + 32].hex(" "), label_b, b[lo:i + 32].hex(" ")))
