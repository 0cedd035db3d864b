#!/usr/bin/env python3
"""Deterministic generator of a synthetic DICOM corpus (no PHI: every patient is invented).

    python3 testdata/generate.py OUTDIR --patients 3 --studies 2 --series 2 --instances 3 \
        [--seed 1] [--transfer-syntax implicit|explicit|big|deflated|mixed] [--ct-size]
        [--modalities CT,MR,CR,DX,US,SC] [--matrix N] [--undefined-lengths]

writes OUTDIR/PAT000/ST00/SE00/IM0000.dcm ... (Part 10 files) and OUTDIR/manifest.json, which
lists every file with its size, SHA-256, dataset offset and dataset SHA-256, and the attributes a
PACS index needs (decoded to Unicode), so that tests can compute expected answers on their own.

The same arguments always give byte-identical files (for a given pydicom version): randomness
comes from random.Random(seed) and every UID is 2.25.<UUID derived from SHA-256 of the seed and
the instance's position>, so different seeds give disjoint UIDs, patient IDs and accession numbers.

Patients cycle through character-set profiles: Latin-1 (ISO_IR 100), UTF-8 (ISO_IR 192), Japanese
(\\ISO 2022 IR 87, with escape sequences), Greek (ISO_IR 126) and plain ASCII (no Specific
Character Set), in that order, so --patients 3 already covers Latin-1, UTF-8 and ISO 2022.

Studies cycle through the modalities (default CT, MR, CR, DX, US, SC); a study with 3 or more
series ends with a Secondary Capture series, so some studies hold two modalities. Images are
small (32x32) unless --matrix or --ct-size is given. --ct-size makes every image 512x512 (CT:
16-bit, 512 KiB of pixel data) and, unless --modalities is given, generates CT only.

Files are written so that DCMTK's storescu puts exactly the file's dataset bytes on the wire
(see testdata/README.md): sequences and items have explicit lengths (DCMTK re-encodes undefined
ones), and deflated datasets are deflated as DCMTK deflates them. --undefined-lengths writes
undefined-length sequences and items instead, for tests of what a re-encoding sender does.
"""

import argparse
import array
import hashlib
import json
import math
import os
import random
import sys
import uuid

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import part10  # noqa: E402

FORMAT_VERSION = 1
IMPLEMENTATION_CLASS_UID = "2.25.98137413474190137207137164853815466371"  # this generator's
IMPLEMENTATION_VERSION_NAME = "DBTESTGEN_1"

TRANSFER_SYNTAXES = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
}
MIXED_ORDER = ["explicit", "implicit", "big", "deflated"]

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",        # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",        # MR Image Storage
    "CR": "1.2.840.10008.5.1.4.1.1.1",        # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",      # Digital X-Ray Image Storage - For Presentation
    "US": "1.2.840.10008.5.1.4.1.1.6.1",      # Ultrasound Image Storage
    "SC": "1.2.840.10008.5.1.4.1.1.7",        # Secondary Capture Image Storage
}
DEFAULT_MODALITIES = ["CT", "MR", "CR", "DX", "US", "SC"]
BODY_PARTS = {
    "CT": ["CHEST", "ABDOMEN", "HEAD"],
    "MR": ["HEAD", "KNEE", "LSPINE"],
    "CR": ["CHEST", "HAND"],
    "DX": ["CHEST", "FOOT"],
    "US": ["ABDOMEN", "THYROID"],
    "SC": [""],  # absent: an index must cope with missing optional attributes
}
STUDY_TITLES = {"CT": "CT Thorax", "MR": "MR Kopf", "CR": "Roentgen Thorax", "DX": "DX Fuss",
                "US": "Sono Abdomen", "SC": "Befund"}
SERIES_TITLES = {"CT": ["Axial 1.0", "Axial 5.0", "Coronal MPR"], "MR": ["T1 SE tra", "T2 TSE tra", "FLAIR"],
                 "CR": ["PA", "LAT"], "DX": ["AP", "Oblique"], "US": ["B-mode", "Doppler"],
                 "SC": ["Report page", "Screenshot"]}

# Character-set profiles: (SpecificCharacterSet value or None, family/given name pairs (whole
# PN strings), referring physicians, a localized study-description suffix).
PROFILES = [
    ("latin1", "ISO_IR 100",
     ["Müller^Jürgen", "Lefèvre^Hélène", "Núñez^José", "Sørensen^Søren", "Åkesson^Åsa",
      "Gonçalves^João", "Brontë^Zoë", "Schäfer^Renée"],
     ["Schäfer^Anna^^Dr.", "Gräßle^Jörg"], " (Übersicht, Befundung für Dr. Weiß)"),
    ("utf8", "ISO_IR 192",
     ["Şahin^Ayşe", "Dvořák^Antonín", "Łukasiewicz^Małgorzata", "Nguyễn^Thị Hương",
      "Ødegård^Øystein", "Kovačević^Željko", "Wang^XiaoDong=王^小東="],
     ["Šimić^Ivan", "Żółkiewski^Stanisław"], " – kontrola žaludku"),
    ("iso2022jp", ["", "ISO 2022 IR 87"],
     ["Yamada^Tarou=山田^太郎=やまだ^たろう", "Suzuki^Hanako=鈴木^花子=すずき^はなこ",
      "Tanaka^Ichiro=田中^一郎=たなか^いちろう"],
     ["Sato^Jiro=佐藤^次郎=さとう^じろう"], " 胸部検査"),
    ("greek", "ISO_IR 126",
     ["Παπαδόπουλος^Γιώργος", "Οικονόμου^Ελένη", "Γεωργίου^Δημήτρης"],
     ["Νικολάου^Μαρία"], " Αξονική θώρακος"),
    ("ascii", None,
     ["Doe^John", "Smith^Jane^Q", "Brown^Alex", "Taylor^Sam"],
     ["House^Gregory^^Dr", "Quinn^Michaela"], ""),
]


def make_uid(seed, *parts):
    """2.25.<UUID as integer>, the UUID (version 4 layout) derived from the seed and parts."""
    digest = hashlib.sha256(("dicom-bridge-testdata/%s/" % seed + "/".join(map(str, parts))).encode()).digest()
    return "2.25.%d" % uuid.UUID(bytes=digest[:16], version=4).int


# ---------------------------------------------------------------------------------------------
# Pixel data (pure Python; cached per shape and slice variant, so large corpora stay fast)

_pixel_cache = {}


def _phantom(rows, cols, variant, maximum):
    """A body-like ellipse with three round inserts whose size depends on the slice, scaled to
    [0, maximum]. Returns a list of ints, row-major."""
    key = ("phantom", rows, cols, variant, maximum)
    if key in _pixel_cache:
        return _pixel_cache[key]
    cy, cx = (rows - 1) / 2.0, (cols - 1) / 2.0
    ry, rx = rows * 0.42, cols * 0.45
    grow = 0.8 + 0.05 * (variant % 8)
    inserts = [(0.38 * rows, 0.35 * cols, 0.07 * rows * grow, 0.95),
               (0.38 * rows, 0.65 * cols, 0.07 * rows * grow, 0.25),
               (0.68 * rows, 0.50 * cols, 0.06 * rows * grow, 0.55)]
    out = []
    for y in range(rows):
        dy = (y - cy) / ry
        row = [0] * cols
        for x in range(cols):
            dx = (x - cx) / rx
            if dx * dx + dy * dy > 1.0:
                v = 0.02 * ((x + y + variant) % 7) / 7.0  # a little non-uniform "air"
            else:
                v = 0.45 + 0.1 * math.sin((x + 3 * variant) * 0.15) * math.cos(y * 0.11)
                for iy, ix, r, level in inserts:
                    if (y - iy) ** 2 + (x - ix) ** 2 < r * r:
                        v = level
                        break
            row[x] = int(v * maximum)
        out.extend(row)
    _pixel_cache[key] = out
    return out


def gray_pixels(rows, cols, bits_allocated, bits_stored, variant, big_endian):
    key = ("gray", rows, cols, bits_allocated, bits_stored, variant % 8, big_endian)
    if key not in _pixel_cache:
        values = _phantom(rows, cols, variant % 8, (1 << bits_stored) - 1)
        if bits_allocated == 8:
            data = bytes(values)
        else:
            a = array.array("H", values)
            if (sys.byteorder == "little") == big_endian:
                a.byteswap()
            data = a.tobytes()
        _pixel_cache[key] = data
    return _pixel_cache[key]


def rgb_pixels(rows, cols, variant):
    key = ("rgb", rows, cols, variant % 8)
    if key not in _pixel_cache:
        values = _phantom(rows, cols, variant % 8, 255)
        out = bytearray(rows * cols * 3)
        for i, v in enumerate(values):
            x = i % cols
            out[3 * i] = v
            out[3 * i + 1] = (v * 3 // 4 + x) & 0xFF
            out[3 * i + 2] = 255 - v if v else 0
        _pixel_cache[key] = bytes(out)
    return _pixel_cache[key]


# ---------------------------------------------------------------------------------------------
# Datasets

def _code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _date(rng, first_year, last_year):
    return "%04d%02d%02d" % (rng.randint(first_year, last_year), rng.randint(1, 12), rng.randint(1, 28))


def plan(args):
    """The corpus as nested plain dicts (no pydicom objects), fully determined by args."""
    rng = random.Random(args.seed)
    tag = args.seed % 10000
    patients = []
    for p in range(args.patients):
        name_profile = PROFILES[p % len(PROFILES)]
        profile, charset, names, physicians, suffix = name_profile
        name = rng.choice(names)
        sex = rng.choice(["F", "M", "O"]) if p % 7 == 6 else ("F" if p % 2 else "M")
        patient = {
            "profile": profile,
            "SpecificCharacterSet": charset,
            "PatientName": name,
            "PatientID": "DBT%04d-%05d" % (tag, p),
            "PatientBirthDate": _date(rng, 1930, 2015),
            "PatientSex": sex,
            "studies": [],
        }
        for s in range(args.studies):
            modality = args.modalities[(p * args.studies + s) % len(args.modalities)]
            study_time = "%02d%02d%02d" % (rng.randint(7, 19), rng.randint(0, 59), rng.randint(0, 59))
            if s % 2:
                study_time += ".%06d" % rng.randint(0, 999999)
            study = {
                "StudyInstanceUID": make_uid(args.seed, "study", p, s),
                "StudyDate": _date(rng, 2015, 2024),
                "StudyTime": study_time,
                "AccessionNumber": "A%04d%05d%02d" % (tag, p, s),
                "StudyID": str(s + 1),
                "StudyDescription": STUDY_TITLES[modality] + suffix,
                "ReferringPhysicianName": rng.choice(physicians),
                "series": [],
            }
            for e in range(args.series):
                m = "SC" if (args.series >= 3 and e == args.series - 1 and "SC" in args.modalities) else modality
                series = {
                    "SeriesInstanceUID": make_uid(args.seed, "series", p, s, e),
                    "Modality": m,
                    "SeriesNumber": str(e + 1),
                    "SeriesDescription": SERIES_TITLES[m][e % len(SERIES_TITLES[m])],
                    "BodyPartExamined": rng.choice(BODY_PARTS[m]),
                    "FrameOfReferenceUID": make_uid(args.seed, "for", p, s, e),
                    "instances": [],
                }
                for i in range(args.instances):
                    series["instances"].append({
                        "SOPInstanceUID": make_uid(args.seed, "instance", p, s, e, i),
                        "SOPClassUID": SOP_CLASSES[m],
                        "InstanceNumber": str(i + 1),
                        "path": "PAT%03d/ST%02d/SE%02d/IM%04d.dcm" % (p, s, e, i),
                        "index": (p, s, e, i),
                    })
                study["series"].append(series)
            patient["studies"].append(study)
        patients.append(patient)
    return patients


def build_dataset(patient, study, series, instance, matrix, big_endian):
    """A pydicom Dataset for one instance."""
    ds = Dataset()
    m = series["Modality"]
    if patient["SpecificCharacterSet"] is not None:
        ds.SpecificCharacterSet = patient["SpecificCharacterSet"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if m in ("CT", "MR") else (
        ["DERIVED", "SECONDARY"] if m == "SC" else ["ORIGINAL", "PRIMARY"])
    ds.SOPClassUID = instance["SOPClassUID"]
    ds.SOPInstanceUID = instance["SOPInstanceUID"]
    ds.StudyDate = study["StudyDate"]
    ds.SeriesDate = study["StudyDate"]
    ds.ContentDate = study["StudyDate"]
    ds.StudyTime = study["StudyTime"]
    ds.ContentTime = study["StudyTime"]
    ds.AccessionNumber = study["AccessionNumber"]
    ds.Modality = m
    if m == "SC":
        ds.ConversionType = "WSD"
    ds.Manufacturer = "dicom-bridge testdata"
    ds.InstitutionName = "Synthetic Test Hospital"
    ds.ReferringPhysicianName = study["ReferringPhysicianName"]
    ds.StationName = "DBTEST%s" % m
    ds.StudyDescription = study["StudyDescription"]
    ds.ProcedureCodeSequence = Sequence([_code("RPID%s" % m, "99DBTEST", study["StudyDescription"][:64])])
    ds.SeriesDescription = series["SeriesDescription"]
    ds.ReferencedStudySequence = Sequence([])  # an empty sequence: an encoding edge case
    ds.PatientName = patient["PatientName"]
    ds.PatientID = patient["PatientID"]
    ds.IssuerOfPatientID = "DBTEST"
    ds.PatientBirthDate = patient["PatientBirthDate"]
    ds.PatientSex = patient["PatientSex"]
    if series["BodyPartExamined"]:
        ds.BodyPartExamined = series["BodyPartExamined"]
    if m == "CT":
        ds.SliceThickness = "1.0"
        ds.KVP = "120"
        ds.ConvolutionKernel = "STANDARD"
    elif m == "MR":
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = "5.0"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.MagneticFieldStrength = "1.5"
    elif m in ("CR", "DX"):
        ds.ViewPosition = "PA"
    if m == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientPosition = "HFS" if m in ("CT", "MR") else ""
    ds.StudyInstanceUID = study["StudyInstanceUID"]
    ds.SeriesInstanceUID = series["SeriesInstanceUID"]
    ds.StudyID = study["StudyID"]
    ds.SeriesNumber = series["SeriesNumber"]
    ds.InstanceNumber = instance["InstanceNumber"]
    n = int(instance["InstanceNumber"])
    if m in ("CT", "MR"):
        ds.ImagePositionPatient = ["-125.0", "-125.0", "%.1f" % (-50.0 + n * float(ds.SliceThickness))]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = series["FrameOfReferenceUID"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = ds.ImagePositionPatient[2]
    # Image Pixel
    rows = cols = matrix
    ds.Rows = rows
    ds.Columns = cols
    if m == "US":
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = rgb_pixels(rows, cols, n)
        vr = "OB"
    elif m == "SC":
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = gray_pixels(rows, cols, 8, 8, n, big_endian)
        vr = "OB"
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        if m in ("CT", "MR"):
            ds.PixelSpacing = ["%.4f" % (250.0 / cols)] * 2
        else:
            ds.ImagerPixelSpacing = ["%.4f" % (430.0 / cols)] * 2
        if m == "CT":
            ds.RescaleIntercept = "-1024"
            ds.RescaleSlope = "1"
            ds.RescaleType = "HU"
            ds.WindowCenter = "40"
            ds.WindowWidth = "400"
        else:
            ds.WindowCenter = "2048"
            ds.WindowWidth = "4096"
        ds.PixelData = gray_pixels(rows, cols, 16, 12, n, big_endian)
        vr = "OW"
    ds["PixelData"].VR = vr
    # A private block (creator + one element): unknown to every dictionary.
    block = ds.private_block(0x0009, "DICOM_BRIDGE_TEST", create=True)
    block.add_new(0x01, "LO", "synthetic, no PHI")
    return ds


def file_meta(sop_class_uid, sop_instance_uid, transfer_syntax):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


# ---------------------------------------------------------------------------------------------
# Encoding and normalisation

def _set_sequence_lengths(ds, undefined):
    """Explicit lengths (pydicom 3's default, and what DCMTK puts on the wire) or undefined ones
    (what DCMTK re-encodes: see README.md) for every sequence and item."""
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined


def encode(ds, transfer_syntax, undefined_lengths=False):
    """Part 10 bytes for ds in the given transfer syntax. Deflated datasets are deflated by
    pydicom (zlib level 6, raw deflate, a padding NUL when odd), exactly as DCMTK deflates."""
    from pydicom import dcmwrite
    from pydicom.filebase import DicomBytesIO

    _set_sequence_lengths(ds, undefined_lengths)
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, transfer_syntax)
    ds.preamble = b"\x00" * 128
    buf = DicomBytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------

def manifest_entry(patient, study, series, instance, data, transfer_syntax, matrix):
    split = part10.parse(data)
    entry = {
        "path": instance["path"],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "dataset_offset": split["dataset_offset"],
        "dataset_sha256": hashlib.sha256(split["dataset"]).hexdigest(),
        "transfer_syntax_uid": transfer_syntax,
        "charset_profile": patient["profile"],
        "rows": matrix,
        "columns": matrix,
    }
    cs = patient["SpecificCharacterSet"]
    entry["SpecificCharacterSet"] = "\\".join(cs) if isinstance(cs, list) else (cs or "")
    for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        entry[k] = patient[k]
    entry["IssuerOfPatientID"] = "DBTEST"
    for k in ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
              "StudyDescription", "ReferringPhysicianName"):
        entry[k] = study[k]
    for k in ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined"):
        entry[k] = series[k]
    for k in ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"):
        entry[k] = instance[k]
    return entry


def generate(args, out=None):
    """Write the corpus; returns the manifest (also written to OUTDIR/manifest.json)."""
    outdir = args.outdir
    os.makedirs(outdir, exist_ok=True)
    files = []
    counter = 0
    for patient in plan(args):
        for study in patient["studies"]:
            for series in study["series"]:
                for instance in series["instances"]:
                    ts_name = (MIXED_ORDER[counter % len(MIXED_ORDER)] if args.transfer_syntax == "mixed"
                               else args.transfer_syntax)
                    counter += 1
                    ts = TRANSFER_SYNTAXES[ts_name]
                    ds = build_dataset(patient, study, series, instance, args.matrix, ts == ExplicitVRBigEndian)
                    data = encode(ds, ts, args.undefined_lengths)
                    path = os.path.join(outdir, instance["path"])
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(data)
                    files.append(manifest_entry(patient, study, series, instance, data, ts, args.matrix))
                    if out and counter % 500 == 0:
                        print("%d files" % counter, file=out)
    manifest = {
        "format": FORMAT_VERSION,
        "generator": "testdata/generate.py",
        "arguments": {"seed": args.seed, "patients": args.patients, "studies": args.studies,
                      "series": args.series, "instances": args.instances,
                      "transfer_syntax": args.transfer_syntax, "matrix": args.matrix,
                      "modalities": args.modalities, "undefined_lengths": args.undefined_lengths},
        "counts": {
            "patients": len({f["PatientID"] for f in files}),
            "studies": len({f["StudyInstanceUID"] for f in files}),
            "series": len({f["SeriesInstanceUID"] for f in files}),
            "instances": len(files),
        },
        "files": files,
    }
    with open(os.path.join(outdir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return manifest


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("--patients", type=int, default=3)
    p.add_argument("--studies", type=int, default=2, help="studies per patient")
    p.add_argument("--series", type=int, default=2, help="series per study")
    p.add_argument("--instances", type=int, default=3, help="instances per series")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--transfer-syntax", choices=sorted(TRANSFER_SYNTAXES) + ["mixed"], default="explicit",
                   help="mixed: explicit, implicit, big, deflated in turn per instance")
    p.add_argument("--modalities", default=None,
                   help="comma-separated, from %s (default: all; CT with --ct-size)" % ",".join(DEFAULT_MODALITIES))
    p.add_argument("--ct-size", action="store_true", help="512x512 images (CT: 16-bit, ~0.5 MB per file)")
    p.add_argument("--matrix", type=int, default=None, help="rows = columns (default 32; 512 with --ct-size)")
    p.add_argument("--undefined-lengths", action="store_true",
                   help="write sequences and items with undefined length: DCMTK does NOT send these "
                        "byte-identically (it re-encodes them with explicit lengths)")
    args = p.parse_args(argv)
    if args.modalities is None:
        args.modalities = ["CT"] if args.ct_size else list(DEFAULT_MODALITIES)
    else:
        args.modalities = [m.strip().upper() for m in args.modalities.split(",") if m.strip()]
        bad = [m for m in args.modalities if m not in SOP_CLASSES]
        if bad:
            p.error("unknown modalities: %s" % ", ".join(bad))
    if args.matrix is None:
        args.matrix = 512 if args.ct_size else 32
    for name in ("patients", "studies", "series", "instances", "matrix"):
        if getattr(args, name) < 1:
            p.error("--%s must be at least 1" % name)
    return args


def main(argv=None):
    args = parse_args(argv)
    manifest = generate(args, out=sys.stderr)
    c = manifest["counts"]
    print("wrote %d instances (%d patients, %d studies, %d series) to %s"
          % (c["instances"], c["patients"], c["studies"], c["series"], args.outdir))


if __name__ == "__main__":
    main()
