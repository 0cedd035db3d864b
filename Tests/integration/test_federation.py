"""Federation in DICOM (docs/access.md, "Federation in DICOM"), driven through the real binary on
loopback with DCMTK's findscu and getscu as the workstation:

1. C-FIND at SERIES and IMAGE level on bridge B also answers the series and instances of a study
   that peer A lets B see: exactly those A holds (A's own C-FIND answer, A's index), NEARLINE,
   Retrieve AE Title = B; a study A does not let B see gives nothing, and A audits the denial;
2. a C-GET on B of a study held at A: B fetches it (verified) and delivers A's files as stored;
3. a peer that accepts the connection and never answers (TLS handshake done, request read, no
   byte of answer; or a bare TCP accept) does not hold the C-FIND beyond
   `federationTimeoutSeconds`: the answer holds exactly the local and shared studies, and the
   final response's Error Comment names the silent peers.

Sites are exchange nodes of the node_factory fixture; the patient's key, grants and the
scenario come from test_consent.py.
"""

import os
import re
import tempfile
import time

import pytest

import harness

import pydicom  # noqa: E402

import test_consent as consent

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

FINDSCU = harness.DCMTK_BIN + "/findscu"
GETSCU = harness.DCMTK_BIN + "/getscu"
KOS_SOP_CLASS = consent.KOS_SOP_CLASS
FEDERATION_TIMEOUT = 3  # seconds, federationTimeoutSeconds of the querying node
# What a C-FIND may take beyond the federation timeout on a loaded 2-core machine running a debug
# build: the local query, TLS to the answering peer, DIMSE. Without the timeout the silent TLS
# peer would hold the query for the HTTP client's read timeout (120 s).
SLACK = 30


def study_corpus(corpus_factory, seed):
    """Two studies of one patient, two series of two instances each (explicit VR LE):
    (patient entry, {study: [paths]})."""
    folder, manifest = corpus_factory(patients=1, studies=2, series=2, instances=2, seed=seed,
                                      transfer_syntax="explicit")
    files = manifest["files"]
    studies = {}
    for f in files:
        studies.setdefault(f["StudyInstanceUID"], []).append(os.path.join(folder, f["path"]))
    assert len(studies) == 2 and len({f["PatientID"] for f in files}) == 1
    return files[0], studies


def findscu(node, workdir, level, keys, calling_ae="FINDSCU"):
    """A Study Root C-FIND with findscu -d: (answers as datasets, final status, Error Comment or
    None, output)."""
    out = tempfile.mkdtemp(prefix="findscu-", dir=str(workdir))
    cmd = [FINDSCU, "-d", "-S", "-aet", calling_ae, "-aec", node.ae_title, "-to", "60", "-ta", "60", "-td", "120",
           "-X", "-od", out, "-k", "0008,0052=" + level]
    for k in keys:
        cmd += ["-k", k]
    r = harness.run(cmd + ["127.0.0.1", str(node.port)], timeout=240)
    text = r.stdout + r.stderr
    assert r.returncode == 0, "findscu failed:\n%s" % text[-3000:]
    statuses = re.findall(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", text)
    comments = re.findall(r"\(0000,0902\) LO \[([^\]]*)\]", text)
    answers = [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))]
    return answers, (int(statuses[-1], 16) if statuses else None), (comments[-1].rstrip() if comments else None), text


def series_of(node, study):
    """{Series Instance UID: {SOP Instance UID: SHA-256}} of a study in a node's index."""
    out = {}
    for row in node.query(
            "SELECT se.series_instance_uid AS series, i.sop_instance_uid AS sop, i.sha256 FROM instance i"
            " JOIN series se ON se.id = i.series_ref JOIN study s ON s.id = se.study_ref"
            " WHERE s.study_instance_uid = ? AND i.is_current = 1", study):
        out.setdefault(row["series"], {})[row["sop"]] = row["sha256"]
    return out


def without_retrieve_fields(ds):
    """A C-FIND answer's attributes other than where and how soon it can be retrieved."""
    return {el.keyword: str(el.value) for el in ds
            if el.keyword not in ("RetrieveAETitle", "InstanceAvailability", "SpecificCharacterSet")}


@pytest.fixture
def granted(consent_scenario, corpus_factory):
    """Sites A and B; A holds two studies of patient P (two series each), published; P enrolled
    at A and granted study1 to B. -> (a, b, entry, study1, study2, grant id)."""
    (a, b), entry, (study1, study2), p = consent_scenario(names=("site-a", "site-b"), seed=621)
    gid = consent.grant_at(a, p, "site-b", study=study1)
    return a, b, entry, study1, study2, gid


@pytest.fixture
def consent_scenario(node_factory, corpus_factory, tmp_path):
    """test_consent's scenario with studies of two series: make(names, seed, before_start, enroll)."""

    def make(names=("site-a", "site-b"), seed=621, before_start=None, enroll=True):
        nodes = consent.make_sites(node_factory, names, before_start)
        a = nodes[0]
        entry, studies = study_corpus(corpus_factory, seed)
        consent.push_and_publish(a, studies)
        patient = consent.Patient(a, tmp_path / ("patient-%d" % seed), entry["PatientID"])
        if enroll:
            patient.enroll(a)
        return nodes, entry, sorted(studies), patient

    return make


# == 1. SERIES and IMAGE level: exactly the source's series and instances ============================

def test_federated_find_at_series_and_image_level(granted, tmp_path):
    a, b, entry, study1, study2, gid = granted
    held = series_of(a, study1)
    assert len(held) == 3, "A should hold study1's two series and its manifest's: %s" % held
    series_keys = ["0020,000D=" + study1, "0020,000E", "0008,0060", "0020,0011", "0020,1209", "0008,0054",
                   "0008,0056"]

    # SERIES: B answers A's series of study1, every one NEARLINE, retrievable from B.
    answers, status, comment, out = findscu(b, tmp_path, "SERIES", series_keys)
    assert status == 0x0000 and comment is None, (status, comment, out[-3000:])
    got = {str(ds.SeriesInstanceUID): ds for ds in answers}
    assert len(got) == len(answers), "a series answered twice:\n" + out[-3000:]
    assert set(got) == set(held), "B answered series %s, A holds %s" % (sorted(got), sorted(held))
    for uid, ds in got.items():
        assert str(ds.StudyInstanceUID) == study1, ds
        assert str(ds.get("InstanceAvailability", "")) == "NEARLINE", ds
        assert str(ds.get("RetrieveAETitle", "")) == b.ae_title, ds
        assert int(ds.NumberOfSeriesRelatedInstances) == len(held[uid]), ds
    # ... attribute for attribute what A itself answers (but where and how soon).
    at_a, status_a, _, out_a = findscu(a, tmp_path, "SERIES", series_keys)
    assert status_a == 0x0000, out_a[-3000:]
    assert {str(ds.SeriesInstanceUID): without_retrieve_fields(ds) for ds in at_a} == \
        {uid: without_retrieve_fields(ds) for uid, ds in got.items()}
    assert all(str(ds.InstanceAvailability) == "ONLINE" and str(ds.RetrieveAETitle) == a.ae_title for ds in at_a)

    # IMAGE: for each series, exactly its instances at A.
    classes = {}
    for series, sops in held.items():
        image_keys = ["0020,000D=" + study1, "0020,000E=" + series, "0008,0018", "0008,0016", "0020,0013",
                      "0008,0054", "0008,0056"]
        answers, status, comment, out = findscu(b, tmp_path, "IMAGE", image_keys)
        assert status == 0x0000 and comment is None, (status, comment, out[-3000:])
        got_sops = sorted(str(ds.SOPInstanceUID) for ds in answers)
        assert got_sops == sorted(sops), "series %s: B answered %s, A holds %s" % (series, got_sops, sorted(sops))
        for ds in answers:
            assert str(ds.SeriesInstanceUID) == series and str(ds.StudyInstanceUID) == study1, ds
            assert str(ds.InstanceAvailability) == "NEARLINE" and str(ds.RetrieveAETitle) == b.ae_title, ds
            classes[str(ds.SOPInstanceUID)] = str(ds.SOPClassUID)
        at_a, _, _, _ = findscu(a, tmp_path, "IMAGE", image_keys)
        assert sorted(sorted(without_retrieve_fields(ds).items()) for ds in at_a) == \
            sorted(sorted(without_retrieve_fields(ds).items()) for ds in answers)
    # (the manifest is one of them, with its SOP class)
    assert classes == {r["sop_instance_uid"]: r["sop_class_uid"] for r in a.study_instances(study1)}
    assert list(classes.values()).count(KOS_SOP_CLASS) == 1, classes

    # A study A does not let B see (no grant for study2): no series, no instance; A audits the
    # denied query with its reason.
    before = {e["ledgerIndex"] for e in harness.access_events(a)}
    answers, status, comment, out = findscu(b, tmp_path, "SERIES", ["0020,000D=" + study2, "0020,000E"])
    assert answers == [] and status == 0x0000, out[-3000:]
    for series in series_of(a, study2):
        answers, status, comment, out = findscu(b, tmp_path, "IMAGE", ["0020,000D=" + study2, "0020,000E=" + series,
                                                                        "0008,0018"])
        assert answers == [] and status == 0x0000, out[-3000:]
    denied = [e for e in harness.access_events(a) if e["ledgerIndex"] not in before]
    assert [(e["requester"], e["study"], e["action"], e["outcome"], e["reason"]) for e in denied] == [
        ("node:site-b", study2, "query", "denied", "no valid grant from the patient for site-b and this study")], denied
    # B holds nothing of either study: the answers came from A.
    assert b.study_instances(study1) == [] and b.study_instances(study2) == []


# == 2. C-GET of a remote study ======================================================================

def getscu(node, folder, study):
    """getscu -d +B (files written as received) of a study from node: (result, received paths)."""
    os.makedirs(str(folder))
    cmd = [GETSCU, "-d", "-S", "+B", "-aet", "GETSCU", "-aec", node.ae_title, "-od", str(folder), "-to", "60",
           "-ta", "60", "-td", "180", "-k", "0008,0052=STUDY", "-k", "0020,000D=" + study, "127.0.0.1", str(node.port)]
    r = harness.run(cmd, timeout=300)
    return r, sorted(os.path.join(str(folder), f) for f in os.listdir(str(folder)))


def test_c_get_of_a_remote_study(granted, tmp_path):
    a, b, entry, study1, study2, gid = granted
    b.add_ae("GETSCU", host="127.0.0.1")
    r, received = getscu(b, tmp_path / "got", study1)
    assert r.returncode == 0, "getscu failed:\n" + (r.stdout + r.stderr)[-3000:]
    # Every instance A holds of study1 (the manifest included), datasets as A stores them.
    consent.assert_same_as_at(a, study1, received)
    assert len(received) == len(a.study_instances(study1)), received
    # B fetched it, verified: its copies are A's files bit for bit.
    assert b.study_files(study1) == a.study_files(study1)
    # A audited B's retrieval under the grant; B the workstation's C-GET.
    assert consent.events(harness.access_events(a), requester="node:site-b", study=study1,
                          action="retrieve-instances", outcome="allowed", grant=gid)
    c_get = consent.events(harness.access_events(b), requester="ae:GETSCU", study=study1, action="c-get")
    assert [e["outcome"] for e in c_get] == ["allowed"], c_get
    # study2 (not granted): refused, nothing received, nothing fetched.
    r, received = getscu(b, tmp_path / "got2", study2)
    assert received == [], "C-GET of a study A refuses delivered %s" % received
    assert re.search(r"DIMSE Status\s*:\s*0xa702", r.stdout + r.stderr, re.I), (r.stdout + r.stderr)[-3000:]
    assert b.study_instances(study2) == []


# == 3. a peer that never answers ====================================================================

def test_federated_find_does_not_wait_for_a_silent_peer(node_factory, corpus_factory, tmp_path):
    """B's peers: A (shares all with B), C and D. C completes the TLS handshake as site-c and reads
    the request but never answers; D accepts the TCP connection and sends nothing. B holds one of
    the patient's two studies itself."""
    a = node_factory("site-a")
    b = node_factory("site-b")
    c = node_factory("site-c")  # never started: its certificate is the silent peer's
    d = node_factory("site-d")  # never started
    silent_tls = harness.SilentPeer(cert=c.tls_cert, key=c.tls_key)
    silent_tcp = harness.SilentPeer()
    try:
        a.add_peer(b, share="all")
        b.add_peer(a)
        b.add_peer(c, url=silent_tls.url)
        b.add_peer(d, url=silent_tcp.url)
        consent.write_config(b, federationTimeoutSeconds=FEDERATION_TIMEOUT)
        a.start()
        b.start()
        entry, studies = study_corpus(corpus_factory, seed=622)
        study1, study2 = sorted(studies)
        consent.push_and_publish(a, studies)
        consent.push_and_publish(b, {study2: studies[study2]})

        keys = ["0010,0020=" + entry["PatientID"], "0020,000D", "0008,0054", "0008,0056", "0020,1208"]
        start = time.monotonic()
        answers, status, comment, out = findscu(b, tmp_path, "STUDY", keys)
        took = time.monotonic() - start

        assert status == 0x0000, "final status %r:\n%s" % (status, out[-3000:])
        assert comment == "may be incomplete: no answer from site-c,site-d", out[-3000:]
        assert took < FEDERATION_TIMEOUT + SLACK, "the C-FIND took %.1f s with federationTimeoutSeconds %d" % (
            took, FEDERATION_TIMEOUT)
        # B did ask the silent peers: C read B's request, D accepted B's connection.
        assert silent_tcp.connections >= 1, "B never connected to the silent TCP peer"
        assert any(req.startswith(b"POST /federation/find ") for req in silent_tls.requests), silent_tls.requests
        # Exactly the local study (ONLINE, once) and A's shared one (NEARLINE), both from B.
        got = sorted((str(ds.StudyInstanceUID), str(ds.InstanceAvailability), str(ds.RetrieveAETitle),
                      int(ds.NumberOfStudyRelatedInstances)) for ds in answers)
        assert got == sorted([(study1, "NEARLINE", b.ae_title, len(a.study_instances(study1))),
                              (study2, "ONLINE", b.ae_title, len(b.study_instances(study2)))]), got

        # A decided by its site policy (the patient enrolled no key) and audited B's query.
        shown = consent.events(harness.access_events(a), requester="node:site-b", action="query", outcome="allowed")
        assert {e["study"] for e in shown} == {study1, study2}, shown
        assert all(e["grant"] is None and e["reason"] == "site policy: share all with site-b" for e in shown), shown

        # With the silent peers gone (connection refused at once), the same answer, same comment.
        silent_tls.close()
        silent_tcp.close()
        answers2, status, comment, out = findscu(b, tmp_path, "STUDY", keys)
        assert comment == "may be incomplete: no answer from site-c,site-d", out[-3000:]
        assert sorted(str(ds.StudyInstanceUID) for ds in answers2) == [study1, study2]
    finally:
        silent_tls.close()
        silent_tcp.close()
