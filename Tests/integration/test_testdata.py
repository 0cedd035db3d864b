"""The test data itself: the generator, the committed small files, and the facts about the wire
that the bridge tests rely on (DCMTK's storescu and pynetdicom send a file's dataset bytes as
they are). None of these tests need the dicom-bridge binary."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pydicom
import pytest

import harness
from harness import part10

GENERATE = os.path.join(harness.TESTDATA, "generate.py")


def _files(folder):
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.join(root, n) for n in names if n.endswith(".dcm")]
    return sorted(out)


def test_generator_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = ["--patients", "2", "--studies", "1", "--series", "2", "--instances", "2", "--transfer-syntax", "mixed"]
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        subprocess.run([sys.executable, GENERATE, str(out), "--seed", seed] + args, check=True, capture_output=True)
    fa, fb = _files(a), _files(b)
    assert [os.path.relpath(p, a) for p in fa] == [os.path.relpath(p, b) for p in fb]
    for x, y in zip(fa, fb):
        assert open(x, "rb").read() == open(y, "rb").read(), "%s differs between two runs" % x
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    # Another seed: disjoint UIDs and patient IDs.
    ma = json.loads((a / "manifest.json").read_text(encoding="utf-8"))
    mc = json.loads((c / "manifest.json").read_text(encoding="utf-8"))
    for key in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "AccessionNumber"):
        assert not {f[key] for f in ma["files"]} & {f[key] for f in mc["files"]}, key


def test_manifest_matches_files(corpus_factory):
    folder, manifest = corpus_factory(patients=5, studies=2, series=3, instances=1)
    files = manifest["files"]
    assert manifest["counts"] == {"patients": 5, "studies": 10, "series": 30, "instances": 30}
    assert sorted(os.path.join(folder, f["path"]) for f in files) == _files(folder)
    assert {f["transfer_syntax_uid"] for f in files} == {
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
    assert {f["Modality"] for f in files} >= {"CT", "MR", "CR", "DX", "US", "SC"}
    assert {f["charset_profile"] for f in files} == {"latin1", "utf8", "iso2022jp", "greek", "ascii"}
    assert len({f["SOPInstanceUID"] for f in files}) == len(files)
    for f in files:
        path = os.path.join(folder, f["path"])
        data = open(path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
        info = part10.parse(data)
        assert info["dataset_offset"] == f["dataset_offset"]
        assert info["transfer_syntax_uid"] == f["transfer_syntax_uid"]
        ds = pydicom.dcmread(path)
        for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
                    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SOPInstanceUID",
                    "SOPClassUID", "InstanceNumber"):
            assert str(ds.get(key, "")) == f[key], (f["path"], key)
        assert str(ds.get("BodyPartExamined", "")) == f["BodyPartExamined"]
        for uid_key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert f[uid_key].startswith("2.25.") and len(f[uid_key]) <= 64


def test_character_sets(corpus_factory):
    """Names are stored encoded in their Specific Character Set and decode back to the manifest's
    Unicode (pydicom); the raw bytes are what that character set says."""
    folder, manifest = corpus_factory(patients=5, studies=1, series=1, instances=1)
    seen = {}
    for f in manifest["files"]:
        ds = pydicom.dcmread(os.path.join(folder, f["path"]))
        raw = ds.get_item("PatientName").value
        seen[f["charset_profile"]] = (f["SpecificCharacterSet"], raw, f["PatientName"])
        assert str(ds.PatientName) == f["PatientName"]
    cs, raw, name = seen["latin1"]
    assert cs == "ISO_IR 100" and raw.rstrip(b" ") == name.encode("latin-1") and not name.isascii()
    cs, raw, name = seen["utf8"]
    assert cs == "ISO_IR 192" and raw.rstrip(b" ") == name.encode("utf-8") and not name.isascii()
    cs, raw, name = seen["greek"]
    assert cs == "ISO_IR 126" and raw.rstrip(b" ") == name.encode("iso8859-7")
    cs, raw, name = seen["iso2022jp"]
    assert cs == "\\ISO 2022 IR 87" and b"\x1b$B" in raw and "=" in name  # escapes to JIS X 0208
    cs, raw, name = seen["ascii"]
    assert cs == "" and name.isascii()


def test_small_files_match_their_manifest(small_files):
    for path, entry in small_files.items():
        data = open(path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        info = part10.parse(data)
        assert info["transfer_syntax_uid"] == entry["transfer_syntax_uid"]
        assert info["media_storage_sop_instance_uid"] == entry["SOPInstanceUID"]
        r = harness.run([harness.DCMTK_BIN + "/dcmdump", "-q", path])
        assert r.returncode == 0, r.stderr
    total = sum(os.path.getsize(p) for p in small_files)
    assert total < 1024 * 1024, "committed test files should stay small (%d bytes)" % total
    syntaxes = {e["transfer_syntax_uid"] for e in small_files.values()}
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"} <= syntaxes


@pytest.mark.skipif(shutil.which("opj_compress") is None, reason="opj_compress (libopenjp2-tools) not installed")
def test_small_files_are_reproducible():
    r = harness.run([sys.executable, os.path.join(harness.TESTDATA, "make_small.py"), "--check"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


# -- the wire, against DCMTK's storescp in bit-preserving mode -------------------------------------

def _received_for(scp, sent):
    uid = sent["media_storage_sop_instance_uid"]
    found = [p for p in scp.received() if uid in os.path.basename(p)]
    assert len(found) == 1, "storescp received %d files for %s" % (len(found), uid)
    return part10.read(found[0])


def _assert_wire_identical(scp, paths, expect_identical=lambda p: True):
    for path in paths:
        sent = part10.read(path)
        got = _received_for(scp, sent)
        assert got["transfer_syntax_uid"] == sent["transfer_syntax_uid"], path
        if expect_identical(path):
            assert got["dataset"] == sent["dataset"], "%s:\n%s" % (
                path, part10.describe_difference(sent["dataset"], got["dataset"]))
        else:
            assert got["dataset"] != sent["dataset"], "%s: expected DCMTK to re-encode it" % path


def test_storescu_as_is_sends_dataset_bytes_unchanged(storescp_factory, small_files, corpus_factory, tmp_path):
    """storescu -xf testdata/storescu.cfg AsIs: every file in its own transfer syntax, its dataset
    bytes unchanged; except sequences of undefined length, which DCMTK re-encodes with explicit
    lengths (so that file arrives as one pass of dcmconv makes it)."""
    scp = storescp_factory()
    _, manifest = folder_manifest = corpus_factory()
    folder = folder_manifest[0]
    paths = list(small_files) + [os.path.join(folder, f["path"]) for f in manifest["files"]]
    r = harness.storescu(scp.port, scp.ae_title, paths)
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_wire_identical(scp, paths, lambda p: small_files.get(p, {}).get("dcmtk_sends_identically", True))
    undefined = os.path.join(harness.TESTDATA, "ct_undefined_lengths.dcm")
    got = _received_for(scp, part10.read(undefined))
    assert got["dataset"] == harness.dcmtk_wire_dataset(undefined, str(tmp_path))


def test_pynetdicom_sends_dataset_bytes_unchanged(storescp_factory, small_files, corpus_factory):
    """pynetdicom's send_c_store(path) sends the file's dataset bytes as they are, whatever they
    are (undefined lengths included)."""
    scp = storescp_factory()
    folder, manifest = corpus_factory()
    paths = list(small_files) + [os.path.join(folder, f["path"]) for f in manifest["files"]]
    statuses = harness.pynetdicom_store(scp.port, scp.ae_title, paths)
    assert all(s == 0 for s in statuses.values()), statuses
    _assert_wire_identical(scp, paths)


def test_storescu_default_proposals_reencode(storescp_factory, tmp_path):
    """Why the suite sends with the AsIs profile: with storescu's default proposals an Implicit VR
    file goes out as Explicit VR, a deflated one inflated, and compressed ones not at all."""
    scp = storescp_factory()
    implicit = os.path.join(harness.TESTDATA, "ct_implicit_le.dcm")
    deflated = os.path.join(harness.TESTDATA, "sc_deflated.dcm")
    r = harness.storescu(scp.port, scp.ae_title, [implicit, deflated], as_is=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _received_for(scp, part10.read(implicit))["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    assert _received_for(scp, part10.read(deflated))["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    jpeg = os.path.join(harness.TESTDATA, "ct_jpeg_lossless.dcm")
    r = harness.storescu(scp.port, scp.ae_title, [jpeg], as_is=False)
    assert r.returncode != 0 and "unable to convert" in r.stderr, r.stdout + r.stderr
    assert not [p for p in scp.received() if part10.read(jpeg)["media_storage_sop_instance_uid"] in p]


@pytest.mark.orthanc
def test_orthanc_sends_dataset_bytes_unchanged(storescp_factory, orthanc_factory, small_files, corpus_factory,
                                               tmp_path):
    """Orthanc 1.10 (on DCMTK) C-STOREs each instance in the transfer syntax it was uploaded in,
    dataset bytes unchanged except undefined-length sequences (re-encoded like dcmconv)."""
    scp = storescp_factory()
    orthanc = orthanc_factory(modalities={"scp": [scp.ae_title, "127.0.0.1", scp.port]})
    folder, manifest = corpus_factory()
    paths = list(small_files) + [os.path.join(folder, f["path"]) for f in manifest["files"]]
    ids = [orthanc.upload(p)["ID"] for p in paths]
    job = orthanc.store_to("scp", ids)
    assert job.get("FailedInstancesCount", 0) == 0, job
    _assert_wire_identical(scp, paths, lambda p: small_files.get(p, {}).get("dcmtk_sends_identically", True))
    undefined = os.path.join(harness.TESTDATA, "ct_undefined_lengths.dcm")
    assert _received_for(scp, part10.read(undefined))["dataset"] == harness.dcmtk_wire_dataset(undefined, str(tmp_path))
