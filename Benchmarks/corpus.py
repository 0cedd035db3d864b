"""The benchmark corpus: CT-sized Part 10 files (512x512, 16 bit, Explicit VR Little Endian).

Generated once per size into a cache directory and reused. Layout:

    <cache>/n<N>/part0 .. part3/   a quarter of the instances each (one association's share)
    <cache>/n<N>/manifest.json     what was generated; a mismatch or a missing file regenerates

Instances are grouped into 2 patients, 4 studies (one per part), 2 series per study; every
SOP Instance UID is unique (2.25 + a UUID) so that a store never sees a duplicate.
"""

import json
import os
import shutil
import uuid

FORMAT_VERSION = 1
PARTS = 4
ROWS = COLUMNS = 512
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def _uid():
    return "2.25." + str(uuid.uuid4().int)


def _split(n, parts):
    """Sizes of `parts` contiguous shares of n, as even as possible."""
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _phantom(np):
    """A water cylinder with a few inserts, in HU + 1024 (so the stored values are unsigned)."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    r = np.hypot(x - COLUMNS / 2, y - ROWS / 2)
    img = np.full((ROWS, COLUMNS), 0.0)          # air: -1024 HU
    img[r < 230] = 1024.0                          # water: 0 HU
    for cx, cy, hu in [(180, 200, 1000), (330, 200, -500), (256, 340, 60)]:
        img[np.hypot(x - cx, y - cy) < 35] = 1024.0 + hu
    return img


def _manifest_path(directory):
    return os.path.join(directory, "manifest.json")


def load(directory):
    try:
        with open(_manifest_path(directory)) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if m.get("format") != FORMAT_VERSION:
        return None
    for rel in m.get("files", []):
        if not os.path.isfile(os.path.join(directory, rel)):
            return None
    return m


def ensure(cache_dir, n, log=print):
    """Returns the manifest of an n-instance corpus under cache_dir, generating it if needed."""
    directory = os.path.join(cache_dir, "n%d" % n)
    m = load(directory)
    if m and m["instances"] == n:
        return directory, m
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    log("generating a %d-instance corpus in %s (once; cached)" % (n, directory))
    shutil.rmtree(directory, ignore_errors=True)
    for p in range(PARTS):
        os.makedirs(os.path.join(directory, "part%d" % p))

    rng = np.random.default_rng(20240611)
    base = _phantom(np)
    patients = [("BENCH^ALPHA", "BENCH0001", "19600101", "F"), ("BENCH^BRAVO", "BENCH0002", "19720315", "M")]
    files, total_bytes = [], 0
    index = 0
    for part, count in enumerate(_split(n, PARTS)):
        name, pid, birth, sex = patients[part % len(patients)]
        study_uid = _uid()
        series = [(_uid(), s + 1) for s in range(2)]
        for i in range(count):
            series_uid, series_number = series[0] if i < (count + 1) // 2 else series[1]
            sop_uid = _uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
            meta.MediaStorageSOPInstanceUID = UID(sop_uid)
            meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
            meta.ImplementationClassUID = UID("2.25.170117154458405385735925425411911457535")
            meta.ImplementationVersionName = "DB_BENCH_1"
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SOPClassUID = CT_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = "20240611"
            ds.StudyTime = "101500"
            ds.AccessionNumber = "ACC%05d" % part
            ds.Modality = "CT"
            ds.Manufacturer = "dicom-bridge benchmark"
            ds.ReferringPhysicianName = ""
            ds.StudyDescription = "Benchmark CT study %d" % part
            ds.SeriesDescription = "Axial %d" % series_number
            ds.PatientName = name
            ds.PatientID = pid
            ds.PatientBirthDate = birth
            ds.PatientSex = sex
            ds.BodyPartExamined = "CHEST"
            ds.SliceThickness = "1.0"
            ds.KVP = "120"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = str(part + 1)
            ds.SeriesNumber = str(series_number)
            ds.InstanceNumber = str(i + 1)
            ds.ImagePositionPatient = ["-250.0", "-250.0", "%.1f" % (-i * 1.0)]
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            ds.FrameOfReferenceUID = study_uid + ".1"
            ds.SliceLocation = "%.1f" % (-i * 1.0)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = ROWS
            ds.Columns = COLUMNS
            ds.PixelSpacing = ["0.976562", "0.976562"]
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.WindowCenter = "40"
            ds.WindowWidth = "400"
            ds.RescaleIntercept = "-1024"
            ds.RescaleSlope = "1"
            noise = rng.normal(0.0, 12.0, size=(ROWS, COLUMNS))
            pixels = np.clip(base + noise, 0, 4095).astype("<u2")
            ds.PixelData = pixels.tobytes()
            ds["PixelData"].VR = "OW"
            rel = os.path.join("part%d" % part, "CT%06d.dcm" % index)
            path = os.path.join(directory, rel)
            ds.save_as(path, enforce_file_format=True)
            files.append(rel)
            total_bytes += os.path.getsize(path)
            index += 1
    m = {"format": FORMAT_VERSION, "instances": n, "parts": PARTS, "bytes": total_bytes,
         "transferSyntax": EXPLICIT_VR_LITTLE_ENDIAN, "sopClass": CT_IMAGE_STORAGE,
         "rows": ROWS, "columns": COLUMNS, "bitsAllocated": 16, "studies": PARTS, "seriesPerStudy": 2,
         "pydicom": pydicom.__version__, "files": files}
    with open(_manifest_path(directory) + ".tmp", "w") as f:
        json.dump(m, f)
    os.replace(_manifest_path(directory) + ".tmp", _manifest_path(directory))
    return directory, m
