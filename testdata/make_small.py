#!/usr/bin/env python3
"""Regenerate the small committed test files in testdata/ (and testdata/small.json).

    python3 testdata/make_small.py [--out testdata] [--check]

Uncompressed files are written by generate.py's code (pydicom); compressed ones are made from an
Explicit VR Little Endian original with DCMTK (/usr/bin/dcmcjpeg, dcmcjpls, dcmcrle, always with
--uid-never so that the output is reproducible) and, for JPEG 2000, with OpenJPEG's opj_compress
(Debian package libopenjp2-tools) and pydicom's encapsulate. Every lossless file is decoded again
(dcmdjpeg, dcmdjpls, dcmdrle, opj_decompress) and compared with the original pixels.

Each file is named <modality>_<encoding>.dcm; small.json lists them with their transfer syntax,
UIDs, SHA-256, dataset offset and the decoded (Unicode) attributes. --check regenerates into a
temporary folder and fails unless every file comes out byte-identical to the committed one.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import generate  # noqa: E402
import part10  # noqa: E402

import pydicom  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,  # noqa: E402
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless)

BIN = "/usr/bin"
SEED = 424242
MATRIX = 64

# name, modality, charset profile, how to encode
FILES = [
    ("ct_implicit_le", "CT", "ascii", ("pydicom", ImplicitVRLittleEndian)),
    ("ct_explicit_le", "CT", "latin1", ("pydicom", ExplicitVRLittleEndian)),
    ("mr_explicit_le", "MR", "ascii", ("pydicom", ExplicitVRLittleEndian)),
    ("cr_explicit_be", "CR", "ascii", ("pydicom", ExplicitVRBigEndian)),
    ("dx_explicit_le", "DX", "utf8", ("pydicom", ExplicitVRLittleEndian)),
    ("us_explicit_le", "US", "ascii", ("pydicom", ExplicitVRLittleEndian)),
    ("sc_deflated", "SC", "latin1", ("pydicom", DeflatedExplicitVRLittleEndian)),
    ("mr_latin1", "MR", "latin1", ("pydicom", ExplicitVRLittleEndian)),
    ("sc_utf8", "SC", "utf8", ("pydicom", ExplicitVRLittleEndian)),
    ("cr_iso2022", "CR", "iso2022jp", ("pydicom", ExplicitVRLittleEndian)),
    ("mr_greek", "MR", "greek", ("pydicom", ImplicitVRLittleEndian)),
    # Sequences and items of undefined length: DCMTK re-encodes them on the wire (README.md).
    ("ct_undefined_lengths", "CT", "latin1", ("pydicom-undefined", ExplicitVRLittleEndian)),
    # JPEG baseline (process 1) is 8-bit only: DCMTK rescales the 12-bit CT to 8 bits (and changes
    # Rescale Slope); process 2+4 (extended) keeps 12 bits.
    ("ct_jpeg_baseline", "CT", "latin1", ("dcmtk", [BIN + "/dcmcjpeg", "+eb", "+un"], None)),
    ("sc_jpeg_baseline", "SC", "ascii", ("dcmtk", [BIN + "/dcmcjpeg", "+eb", "+un"], None)),
    ("ct_jpeg_extended", "CT", "ascii", ("dcmtk", [BIN + "/dcmcjpeg", "+ee", "+un"], None)),
    ("ct_jpeg_lossless", "CT", "utf8", ("dcmtk", [BIN + "/dcmcjpeg", "+e1", "+un"], BIN + "/dcmdjpeg")),
    ("ct_jpegls", "CT", "ascii", ("dcmtk", [BIN + "/dcmcjpls", "+el", "+un"], BIN + "/dcmdjpls")),
    ("ct_rle", "CT", "greek", ("dcmtk", [BIN + "/dcmcrle", "+un"], BIN + "/dcmdrle")),
    ("us_rle", "US", "ascii", ("dcmtk", [BIN + "/dcmcrle", "+un"], BIN + "/dcmdrle")),
    ("ct_j2k", "CT", "ascii", ("openjpeg",)),
]


def profile_index(name):
    return [p[0] for p in generate.PROFILES].index(name)


def dataset_for(number, modality, profile):
    """A one-instance corpus plan for this file, via generate.plan with a custom profile."""
    args = generate.parse_args(["unused", "--patients", "1", "--studies", "1", "--series", "1",
                                "--instances", "1", "--seed", str(SEED + number),
                                "--modalities", modality, "--matrix", str(MATRIX)])
    saved = generate.PROFILES
    try:
        generate.PROFILES = [saved[profile_index(profile)]]
        (patient,) = generate.plan(args)
    finally:
        generate.PROFILES = saved
    patient["PatientID"] = "DBTSMALL-%02d" % number
    study = patient["studies"][0]
    series = study["series"][0]
    instance = series["instances"][0]
    return patient, study, series, instance


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


def pixel_bytes(path):
    ds = pydicom.dcmread(path)
    return ds.PixelData


def make_j2k(original, out, tmp):
    """Lossless JPEG 2000 (reversible 5/3) of a 16-bit (12 stored) CT, via opj_compress."""
    opj = shutil.which("opj_compress")
    if opj is None:
        raise RuntimeError("opj_compress not found: apt-get install libopenjp2-tools")
    ds = pydicom.dcmread(original)
    raw = os.path.join(tmp, "frame.rawl")  # .rawl: little-endian raw samples
    with open(raw, "wb") as f:
        f.write(ds.PixelData)
    j2k = os.path.join(tmp, "frame.j2k")    # a bare J2K codestream, as DICOM wants (not JP2)
    run([opj, "-i", raw, "-o", j2k, "-F", "%d,%d,1,%d,u" % (ds.Columns, ds.Rows, ds.BitsStored)])
    with open(j2k, "rb") as f:
        codestream = f.read()
    # Round trip: decode and compare with the original samples.
    back = os.path.join(tmp, "back.rawl")
    run([shutil.which("opj_decompress"), "-i", j2k, "-o", back])
    with open(back, "rb") as f:
        if f.read() != ds.PixelData:
            raise RuntimeError("JPEG 2000 round trip differs from the original pixels")
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.LossyImageCompression = "00"
    ds.save_as(out, enforce_file_format=True)


def make(outdir):
    os.makedirs(outdir, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="small-") as tmp:
        for number, (name, modality, profile, how) in enumerate(FILES):
            patient, study, series, instance = dataset_for(number, modality, profile)
            out = os.path.join(outdir, name + ".dcm")
            kind = how[0]
            if kind.startswith("pydicom"):
                ts = how[1]
                ds = generate.build_dataset(patient, study, series, instance, MATRIX, ts == ExplicitVRBigEndian)
                data = generate.encode(ds, ts, undefined_lengths=(kind == "pydicom-undefined"))
                with open(out, "wb") as f:
                    f.write(data)
            else:
                original = os.path.join(tmp, name + "_original.dcm")
                ds = generate.build_dataset(patient, study, series, instance, MATRIX, False)
                with open(original, "wb") as f:
                    f.write(generate.encode(ds, ExplicitVRLittleEndian))
                if kind == "dcmtk":
                    cmd, decoder = how[1], how[2]
                    run(cmd + [original, out])
                    if decoder:  # lossless: decode and compare the pixels
                        back = os.path.join(tmp, name + "_back.dcm")
                        run([decoder, out, back])
                        if pixel_bytes(back) != pixel_bytes(original):
                            raise RuntimeError("%s: decoded pixels differ from the original" % name)
                else:
                    make_j2k(original, out, tmp)
            entries.append(describe(out, name))
    with open(os.path.join(outdir, "small.json"), "w", encoding="utf-8") as f:
        json.dump({"format": 1, "generator": "testdata/make_small.py", "files": entries}, f,
                  indent=1, ensure_ascii=False)
        f.write("\n")
    return entries


def describe(path, name):
    info = part10.read(path)
    ds = pydicom.dcmread(path)
    entry = {
        "path": os.path.basename(path),
        "size": len(info["bytes"]),
        "sha256": hashlib.sha256(info["bytes"]).hexdigest(),
        "dataset_offset": info["dataset_offset"],
        "dataset_sha256": hashlib.sha256(info["dataset"]).hexdigest(),
        "transfer_syntax_uid": info["transfer_syntax_uid"],
        # DCMTK re-encodes undefined lengths, so only this file is not sent byte-identically.
        "dcmtk_sends_identically": name != "ct_undefined_lengths",
    }
    cs = ds.get("SpecificCharacterSet", "")
    entry["SpecificCharacterSet"] = "\\".join(cs) if isinstance(cs, (list, pydicom.multival.MultiValue)) else cs
    for k in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
              "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
              "ReferringPhysicianName", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
              "BodyPartExamined", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"):
        v = ds.get(k, "")
        entry[k] = str(v) if v is not None else ""
    return entry


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=HERE)
    p.add_argument("--check", action="store_true", help="regenerate elsewhere and compare with --out")
    args = p.parse_args(argv)
    if not args.check:
        for e in make(args.out):
            print("%-26s %7d bytes  %s" % (e["path"], e["size"], e["transfer_syntax_uid"]))
        return 0
    with tempfile.TemporaryDirectory(prefix="small-check-") as d:
        make(d)
        bad = []
        for name in sorted(os.listdir(d)):
            a, b = os.path.join(d, name), os.path.join(args.out, name)
            if not os.path.exists(b) or open(a, "rb").read() != open(b, "rb").read():
                bad.append(name)
        print("all reproducible" if not bad else "differ: " + ", ".join(bad))
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
