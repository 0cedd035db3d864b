"""Receive: C-ECHO and C-STORE from DCMTK, pynetdicom and Orthanc; every instance stored bit for bit,
content-addressed by SHA-256 and indexed. Drives the real binary (skipped when it is not built)."""

import os

import pytest

import harness
from harness import part10

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

SMALL = sorted(n for n in os.listdir(harness.TESTDATA) if n.endswith(".dcm"))
UNDEFINED_LENGTHS = "ct_undefined_lengths.dcm"  # DCMTK re-encodes its sequences (testdata/README.md)


# -- associations ----------------------------------------------------------------------------------

def test_echoscu_from_known_ae(bridge):
    r = harness.echoscu(bridge.port, bridge.ae_title, calling_ae="ECHOSCU")
    assert r.returncode == 0, r.stdout + r.stderr


def test_unknown_calling_ae_rejected_until_added(bridge):
    r = harness.echoscu(bridge.port, bridge.ae_title, calling_ae="STRANGER")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Association Rejected" in out and "Calling AE Title Not Recognized" in out, out
    assert "STRANGER" in bridge.log_text() and "rejected" in bridge.log_text()

    bridge.add_ae("STRANGER", host="127.0.0.1")  # a running serve sees it at once
    r = harness.echoscu(bridge.port, bridge.ae_title, calling_ae="STRANGER")
    assert r.returncode == 0, r.stdout + r.stderr

    bridge.remove_ae("STRANGER")
    r = harness.echoscu(bridge.port, bridge.ae_title, calling_ae="STRANGER")
    assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stdout + r.stderr


def test_wrong_called_ae_rejected(bridge):
    r = harness.echoscu(bridge.port, "NOT_THE_BRIDGE", calling_ae="ECHOSCU")
    assert r.returncode != 0
    assert "Called AE Title Not Recognized" in r.stdout + r.stderr, r.stdout + r.stderr


def test_accept_any_admits_unknown_ae(bridge_factory):
    b = bridge_factory(known_aes=(), serve_args=("--accept-any",))
    r = harness.echoscu(b.port, b.ae_title, calling_ae="ANYONE")
    assert r.returncode == 0, r.stdout + r.stderr


# -- C-STORE from DCMTK's storescu: every transfer syntax --------------------------------------------

@pytest.fixture(scope="module")
def stored_by_storescu(module_bridge_factory, tmp_path_factory):
    """One bridge that received every committed test file from storescu (AsIs profile)."""
    b = module_bridge_factory()
    paths = [os.path.join(harness.TESTDATA, n) for n in SMALL]
    r = harness.storescu(b.port, b.ae_title, paths, calling_ae="STORESCU")
    assert r.returncode == 0, r.stdout + r.stderr
    return b, str(tmp_path_factory.mktemp("wire"))


@pytest.mark.parametrize("name", SMALL)
def test_storescu_file_stored_bit_for_bit(stored_by_storescu, name):
    b, workdir = stored_by_storescu
    path = os.path.join(harness.TESTDATA, name)
    expected = harness.dcmtk_wire_dataset(path, workdir) if name == UNDEFINED_LENGTHS else None
    row = harness.check_stored(b, path, expected_dataset=expected)
    assert row["calling_ae_title"] == "STORESCU"


def test_storescu_status_counts(stored_by_storescu, small_files):
    b, _ = stored_by_storescu
    s = b.status()
    n = len(small_files)
    assert s["instances"] == n
    assert s["patients"] == len({e["PatientID"] for e in small_files.values()})
    assert s["studies"] == len({e["StudyInstanceUID"] for e in small_files.values()})
    assert s["series"] == len({e["SeriesInstanceUID"] for e in small_files.values()})
    stored = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(b.home, "store")) for f in files]
    assert len(stored) == n, stored


# -- C-STORE from pynetdicom ------------------------------------------------------------------------

def test_pynetdicom_files_stored_bit_for_bit(bridge, small_files):
    """send_c_store(path) puts the file's own dataset bytes on the wire, undefined lengths included."""
    paths = list(small_files)
    statuses = harness.pynetdicom_store(bridge.port, bridge.ae_title, paths, calling_ae="PYNETDICOM")
    assert all(s == 0 for s in statuses.values()), statuses
    for p in paths:
        row = harness.check_stored(bridge, p)
        assert row["calling_ae_title"] == "PYNETDICOM"


def test_identical_resend_is_a_noop(bridge):
    path = os.path.join(harness.TESTDATA, "ct_explicit_le.dcm")
    for _ in range(2):
        statuses = harness.pynetdicom_store(bridge.port, bridge.ae_title, [path])
        assert list(statuses.values()) == [0]
    uid = part10.read(path)["media_storage_sop_instance_uid"]
    assert len(bridge.instances(uid, current_only=False)) == 1
    harness.check_stored(bridge, path)
    assert bridge.status()["instances"] == 1


# -- a generated corpus: the index -----------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_in_bridge(module_bridge_factory, corpus_factory):
    folder, manifest = corpus_factory(patients=5, studies=2, series=2, instances=2, seed=11)
    b = module_bridge_factory()
    paths = [os.path.join(folder, f["path"]) for f in manifest["files"]]
    r = harness.storescu(b.port, b.ae_title, paths)
    assert r.returncode == 0, r.stdout + r.stderr
    return b, folder, manifest


def test_corpus_counts(corpus_in_bridge):
    b, _, manifest = corpus_in_bridge
    s = b.status()
    for k in ("patients", "studies", "series", "instances"):
        assert s[k] == manifest["counts"][k], (k, s)


def test_corpus_stored_bit_for_bit(corpus_in_bridge):
    b, folder, manifest = corpus_in_bridge
    for f in manifest["files"]:
        row = harness.check_stored(b, os.path.join(folder, f["path"]))
        assert row["transfer_syntax_uid"] == f["transfer_syntax_uid"]


HIERARCHY_SQL = """
    SELECT i.sop_instance_uid, i.sop_class_uid, i.instance_number, i.transfer_syntax_uid,
           se.series_instance_uid, se.modality, se.series_number, se.series_description, se.body_part_examined,
           st.study_instance_uid, st.study_date, st.study_time, st.accession_number, st.study_id,
           st.study_description, st.referring_physician_name,
           p.patient_id, p.patient_name, p.patient_birth_date, p.patient_sex
    FROM instance i JOIN series se ON i.series_ref = se.id JOIN study st ON se.study_ref = st.id
         JOIN patient p ON st.patient_ref = p.id
    WHERE i.is_current = 1"""

ASCII_COLUMNS = {
    "sop_class_uid": "SOPClassUID", "instance_number": "InstanceNumber",
    "transfer_syntax_uid": "transfer_syntax_uid", "series_instance_uid": "SeriesInstanceUID",
    "modality": "Modality", "series_number": "SeriesNumber", "body_part_examined": "BodyPartExamined",
    "study_instance_uid": "StudyInstanceUID", "study_date": "StudyDate", "study_time": "StudyTime",
    "accession_number": "AccessionNumber", "study_id": "StudyID", "patient_id": "PatientID",
    "patient_birth_date": "PatientBirthDate", "patient_sex": "PatientSex",
}


def test_corpus_hierarchy_in_index(corpus_in_bridge):
    b, _, manifest = corpus_in_bridge
    rows = {r["sop_instance_uid"]: r for r in b.query(HIERARCHY_SQL)}
    assert len(rows) == len(manifest["files"])
    for f in manifest["files"]:
        r = rows[f["SOPInstanceUID"]]
        for column, key in ASCII_COLUMNS.items():
            assert r[column] == f[key], (f["path"], column, r[column], f[key])


TEXT_COLUMNS = {"patient_name": "PatientName", "study_description": "StudyDescription",
                "referring_physician_name": "ReferringPhysicianName", "series_description": "SeriesDescription"}


@pytest.mark.parametrize("profile", ["latin1", "utf8", "greek", "ascii", "iso2022jp"])
def test_corpus_text_decoded_to_utf8(corpus_in_bridge, profile):
    """The index holds names and descriptions decoded from the Specific Character Set."""
    b, _, manifest = corpus_in_bridge
    rows = {r["sop_instance_uid"]: r for r in b.query(HIERARCHY_SQL)}
    files = [f for f in manifest["files"] if f["charset_profile"] == profile]
    assert files
    for f in files:
        r = rows[f["SOPInstanceUID"]]
        for column, key in TEXT_COLUMNS.items():
            assert r[column] == f[key], (f["path"], column, r[column], f[key])


# -- Orthanc pushes a study -------------------------------------------------------------------------

@pytest.mark.orthanc
def test_orthanc_pushes_studies(bridge_factory, orthanc_factory, corpus_factory, small_files, tmp_path):
    """Orthanc (itself on DCMTK) sends every instance in the transfer syntax it was stored in, so
    the bridge keeps the uploaded dataset bytes; only undefined-length sequences get re-encoded."""
    folder, manifest = corpus_factory(patients=2, studies=2, series=2, instances=3, seed=21)
    paths = [os.path.join(folder, f["path"]) for f in manifest["files"]] + list(small_files)
    b = bridge_factory(known_aes=("ORTHANC",))
    orthanc = orthanc_factory(ae_title="ORTHANC", modalities={"bridge": [b.ae_title, "127.0.0.1", b.port]})
    studies = set()
    for p in paths:
        answer = orthanc.upload(p)
        assert answer["Status"] in ("Success", "AlreadyStored"), answer
        studies.add(answer["ParentStudy"])
    assert orthanc.post("/modalities/bridge/echo", {}) in ({}, None)
    job = orthanc.store_to("bridge", sorted(studies))
    assert job.get("FailedInstancesCount", 0) == 0 and job.get("InstancesCount") == len(paths), job

    s = b.status()
    assert s["instances"] == len(paths)
    assert s["studies"] == len(studies)
    for p in paths:
        expected = (harness.dcmtk_wire_dataset(p, str(tmp_path)) if os.path.basename(p) == UNDEFINED_LENGTHS
                    else None)
        row = harness.check_stored(b, p, expected_dataset=expected)
        assert row["calling_ae_title"] == "ORTHANC"


# -- admission: accept-any, and a known AE only from its host ------------------------------------

ACCEPT_ANY_WARNING = ("ACCEPT-ANY MODE: every calling AE title is admitted. Use this for first-time set-up only; "
                      "register your modalities with `dicom-bridge ae add` and turn it off.")


def _log_lines(bridge, start):
    return bridge.log_text()[start:].splitlines()


def test_accept_any_is_logged_loudly_and_only_while_given(bridge_factory):
    """Without --accept-any an unknown AE is rejected and no warning is logged; with it, one
    warning-level line says so before "listening" and the same AE is admitted; the flag is not
    kept: the next serve without it rejects the AE again."""
    b = bridge_factory(known_aes=("ECHOSCU",))
    start = 0
    assert not any("ACCEPT-ANY" in line for line in _log_lines(b, start))
    r = harness.echoscu(b.port, b.ae_title, calling_ae="ANYONE")
    assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stdout + r.stderr, r.stdout + r.stderr

    b.stop()
    start = b.log_size()
    b.start("--accept-any")
    lines = _log_lines(b, start)
    warnings = [i for i, line in enumerate(lines) if "ACCEPT-ANY" in line]
    assert len(warnings) == 1, lines
    line = lines[warnings[0]]
    assert " warning " in line and line.endswith(ACCEPT_ANY_WARNING), line
    listening = [i for i, l in enumerate(lines) if "listening for DICOM associations" in l]
    assert listening and warnings[0] < listening[0], lines
    before = b.log_size()
    r = harness.echoscu(b.port, b.ae_title, calling_ae="ANYONE")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "association accepted (accept-any mode)" in b.log_text()[before:]

    b.stop()
    start = b.log_size()
    b.start()
    assert not any("ACCEPT-ANY" in line for line in _log_lines(b, start))
    r = harness.echoscu(b.port, b.ae_title, calling_ae="ANYONE")
    assert r.returncode != 0 and "Calling AE Title Not Recognized" in r.stdout + r.stderr, r.stdout + r.stderr


def _pynetdicom_echo_from(source_host, port, called_ae, calling_ae):
    """C-ECHO by pynetdicom from a given local address; returns (established, A-ASSOCIATE primitive
    received (None if none), echo status)."""
    from pynetdicom import AE, evt

    received = []
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context("1.2.840.10008.1.1")
    handlers = [(evt.EVT_ACSE_RECV, lambda event: received.append(event.primitive))]
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae, bind_address=(source_host, 0), evt_handlers=handlers)
    status = None
    established = assoc.is_established
    if established:
        s = assoc.send_c_echo()
        status = getattr(s, "Status", None)
        assoc.release()
    answer = next((p for p in received if type(p).__name__ == "A_ASSOCIATE"), None)
    return established, answer, status


def test_known_ae_admitted_only_from_its_host(bridge_factory):
    """`ae add X --host 127.0.0.2`: X calling from 127.0.0.1 is rejected (permanent, service user,
    calling AE title not recognized) and the log says why; from 127.0.0.2 it is admitted. All of
    127/8 is on lo in the private network namespace."""
    b = bridge_factory(known_aes=())
    b.add_ae("HOSTBOUND", host="127.0.0.2")

    before = b.log_size()
    established, answer, _ = _pynetdicom_echo_from("127.0.0.1", b.port, b.ae_title, "HOSTBOUND")
    assert not established
    assert answer is not None, "no A-ASSOCIATE answer received"
    # PS3.8 9.3.4: result 1 rejected-permanent, source 1 service user, reason 3 calling AE title not recognized.
    assert (answer.result, answer.result_source, answer.diagnostic) == (1, 1, 3), \
        (answer.result, answer.result_source, answer.diagnostic)
    log = b.log_text()[before:]
    assert "association rejected: calling AE title known, but from another host" in log, log
    assert "HOSTBOUND@127.0.0.1" in log and "expected-host=127.0.0.2" in log, log

    established, answer, status = _pynetdicom_echo_from("127.0.0.2", b.port, b.ae_title, "HOSTBOUND")
    assert established and status == 0x0000, (established, status)
    assert answer.result == 0
