"""Exchange claims of docs/exchange.md and docs/access.md not covered by test_exchange.py, against
real peers on loopback (sites of one consortium CA, DCMTK's storescp as the forward destination):

1. `GET /registry/documents`: every field of the document entry is what the manifest and the study
   say (uniqueId = the KOS, patientId in the affinity domain, SHA-1/SHA-256/size of the stored KOS
   file, repository = nodeOID, referenceIdList, the ledger entry that anchors it, ...), only the
   studies of the patient asked for, only studies with a manifest;
2. `fetch --study S --forward AE`: the verified study arrives at the AE (storescp) as A stores it;
3. `fetch --patient ID`: every shared study of that patient, nothing of another patient;
4. access events are deduplicated within 60 s: identical requests give one event (each still
   decided and logged), another study, action or outcome its own event.

One module-wide scenario: site A holds two patients' studies, P1 two published ones, P2 one
published and one not (no manifest: not offered); A shares all with B and with C (C is only used
by the deduplication test, whose counts other tests' requests must not touch).
"""

import hashlib
import json
import os
import subprocess
import time
import urllib.parse
import uuid

import pytest

import harness
from harness import part10

import test_consent as consent
from conftest import _NodeFactory

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
FETCH_TIMEOUT = 120


class Scenario:
    pass


@pytest.fixture(scope="module")
def sites(request, bridge_bin, netns, tmp_path_factory, corpus_factory):
    base = tmp_path_factory.mktemp("exchange-fetch")
    pki = harness.PKI(bridge_bin, os.path.join(str(base), "pki"))
    factory = _NodeFactory(base, bridge_bin, lambda name="consortium": pki)
    scp = harness.StoreSCP(os.path.join(str(base), "storescp", "received"), harness.free_port(),
                           log_path=os.path.join(str(base), "storescp.log"))
    failed_before = request.session.testsfailed
    try:
        a, b, c = factory("site-a"), factory("site-b"), factory("site-c")
        for peer in (b, c):
            a.add_peer(peer, share="all")
            peer.add_peer(a)
        os.makedirs(os.path.dirname(scp.outdir), exist_ok=True)
        scp.start()
        b.add_ae("STORESCP", host="127.0.0.1", port=scp.port)
        for n in (a, b, c):
            n.start()
        folder, manifest = corpus_factory(patients=2, studies=2, series=1, instances=2, seed=631,
                                          transfer_syntax="explicit")
        s = Scenario()
        s.a, s.b, s.c, s.scp = a, b, c, scp
        s.files = manifest["files"]
        s.patients = sorted({f["PatientID"] for f in s.files})
        s.studies = {}  # patient -> sorted studies
        s.paths = {}  # study -> [paths]
        s.first = {}  # study -> a file entry (study attributes)
        for f in s.files:
            s.studies.setdefault(f["PatientID"], set()).add(f["StudyInstanceUID"])
            s.paths.setdefault(f["StudyInstanceUID"], []).append(os.path.join(folder, f["path"]))
            s.first.setdefault(f["StudyInstanceUID"], f)
        s.studies = {p: sorted(v) for p, v in s.studies.items()}
        p1, p2 = s.patients
        s.unpublished = s.studies[p2][1]
        consent.push_and_publish(a, {st: s.paths[st] for st in s.paths if st != s.unpublished})
        r = harness.storescu(a.port, a.ae_title, s.paths[s.unpublished])
        assert r.returncode == 0, r.stderr[-2000:]
        s.entries = {}
        for st in s.paths:
            if st != s.unpublished:
                s.entries[st] = a.publish_manifest(st)  # already published: the current entry
        yield s
    finally:
        problems = factory.close(request.session.testsfailed > failed_before)
        scp.stop()
        if request.session.testsfailed > failed_before:
            scp.dump_log()
    assert not problems, "; ".join(problems)


def registry(requester, source, **query):
    rc, code, body, err = harness.peer_request(requester, source, "/registry/documents?" + urllib.parse.urlencode(query))
    assert (rc, code) == (0, 200), "registry %s: curl %d, HTTP %d %r %s" % (query, rc, code, body, err)
    return json.loads(body)


def hl7(s):
    return s.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\").replace("~", "\\R\\")


def dtm(rfc3339):
    """'2026-12-03T21:40:00.123Z' -> '20261203214000'."""
    return rfc3339[:19].replace("-", "").replace("T", "").replace(":", "")


# == 1. the registry's document entries ================================================================

def test_registry_document_entries_describe_the_manifest_and_the_study(sites):
    s = sites
    a, b = s.a, s.b
    with open(os.path.join(a.home, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    node_oid = config["nodeOID"]
    affinity = config.get("affinityDomainOID") or node_oid
    ledger = {e["index"]: e for e in a.ledger_entries()}
    p1, p2 = s.patients

    for patient in (p1, p2):
        entries = registry(b, a, patientId=patient)
        shared = [st for st in s.studies[patient] if st != s.unpublished]
        assert sorted(e["studyInstanceUID"] for e in entries) == shared, \
            "registry for %s: %s, A published %s" % (patient, [e["studyInstanceUID"] for e in entries], shared)
        for e in entries:
            study = e["studyInstanceUID"]
            info = s.first[study]
            [kos] = [r for r in a.study_instances(study) if r["sop_class_uid"] == KOS_SOP_CLASS]
            with open(a.stored_path(kos), "rb") as f:
                data = f.read()
            ds = part10.read(a.stored_path(kos))
            assert ds["media_storage_sop_instance_uid"] == kos["sop_instance_uid"]
            [published] = [x for x in ledger.values() if x["type"] == "manifest-published"
                           and x["fields"]["study-instance-uid"] == study]
            images = [r for r in a.study_instances(study) if r["sop_class_uid"] != KOS_SOP_CLASS]
            fields = published["fields"]
            assert fields["manifest-sop-instance-uid"] == kos["sop_instance_uid"]
            assert fields["manifest-sha256"] == hashlib.sha256(data).hexdigest()
            assert int(fields["manifest-size"]) == len(data) and int(fields["instance-count"]) == len(images)

            references = []
            if info.get("AccessionNumber"):
                references.append("%s^^^&%s&ISO^urn:ihe:iti:xds:2013:accession" % (hl7(info["AccessionNumber"]), node_oid))
            references.append("%s^^^^urn:ihe:iti:xds:2016:studyInstanceUID" % study)
            issuer = info.get("IssuerOfPatientID")
            expected = {
                "entryUUID": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_OID, kos["sop_instance_uid"])),
                "uniqueId": kos["sop_instance_uid"],
                "patientId": "%s^^^&%s&ISO" % (hl7(patient), affinity),
                "sourcePatientId": "%s^^^%s" % (hl7(patient), hl7(issuer)) if issuer else "%s^^^&%s&ISO" % (hl7(patient), node_oid),
                "mimeType": "application/dicom",
                "formatCode": {"code": KOS_SOP_CLASS, "scheme": "1.2.840.10008.2.6.1", "display": "Key Object Selection Document"},
                "hash": hashlib.sha1(data).hexdigest(),
                "size": len(data),
                "repositoryUniqueId": node_oid,
                "creationTime": dtm(fields["published"]),
                "serviceStartTime": info["StudyDate"] + info["StudyTime"].split(".")[0],
                "classCode": {"code": "IMAGES", "scheme": "1.3.6.1.4.1.19376.1.2.6.1", "display": "Images"},
                "typeCode": {"code": "18748-4", "scheme": "2.16.840.1.113883.6.1", "display": "Diagnostic imaging study"},
                "confidentialityCode": {"code": "N", "scheme": "2.16.840.1.113883.5.25", "display": "normal"},
                "practiceSettingCode": {"code": "394914008", "scheme": "2.16.840.1.113883.6.96", "display": "Radiology"},
                "healthcareFacilityTypeCode": {"code": "722171005", "scheme": "2.16.840.1.113883.6.96",
                                               "display": "Diagnostic imaging department"},
                "title": info.get("StudyDescription") or "Imaging manifest",
                "languageCode": "en-US",
                "referenceIdList": references,
                "availabilityStatus": "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",
                "studyInstanceUID": study,
                "ledgerIndex": published["index"],
                "sha256": hashlib.sha256(data).hexdigest(),
                "retrieveURL": "%s/documents/%s" % (a.public_url, kos["sop_instance_uid"]),
            }
            present = {k: v for k, v in e.items() if v is not None}
            assert present == expected, "document entry of %s:\n%s" % (study, "\n".join(
                "%s: served %r, expected %r" % (k, present.get(k), expected.get(k))
                for k in sorted(set(present) | set(expected)) if present.get(k) != expected.get(k)))
            # The same entry by study, by document, and as `manifest --study` prints it.
            assert registry(b, a, studyInstanceUID=study) == [e]
            rc, code, body, err = harness.peer_request(b, a, "/documents/%s/entry" % e["uniqueId"])
            assert (rc, code) == (0, 200) and json.loads(body) == e, (rc, code, body, err)
            assert s.entries[study] == e
            # and the document itself is the stored KOS, byte for byte.
            got = subprocess.run(["curl", "-sS", "--fail", "--max-time", "20", "--cacert", a.ca_crt, "--cert", b.tls_cert,
                                  "--key", b.tls_key, "-o", "-", a.public_url + "/documents/" + e["uniqueId"]],
                                 capture_output=True, timeout=30)
            assert got.returncode == 0 and got.stdout == data, (got.returncode, got.stderr, len(got.stdout))
    # A study without a manifest is not offered, even asked for by its UID.
    assert registry(b, a, studyInstanceUID=s.unpublished) == []


# == 2. fetch --forward ================================================================================

def test_fetch_forward_delivers_the_verified_study(sites):
    s = sites
    a, b = s.a, s.b
    p1, p2 = s.patients
    study = s.studies[p2][0]
    r, report = b.fetch(a.node_name, study=study, extra=("--forward", "STORESCP"), timeout=FETCH_TIMEOUT)
    assert r.returncode == 0, "fetch --forward exited %d:\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    assert [x["studyInstanceUID"] for x in report["studies"]] == [study], report
    assert b.study_files(study) == a.study_files(study)
    # storescp received exactly A's instances of the study, the manifest included, as A stores them.
    consent.assert_same_as_at(a, study, s.scp.received())
    assert len(s.scp.received()) == len(a.study_instances(study))


# == 3. fetch --patient ===============================================================================

def test_fetch_patient_fetches_every_shared_study_of_that_patient_only(sites):
    s = sites
    a, b = s.a, s.b
    p1, p2 = s.patients
    r, report = b.fetch(a.node_name, patient=p1, timeout=FETCH_TIMEOUT)
    assert r.returncode == 0, "fetch --patient exited %d:\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    assert sorted(x["studyInstanceUID"] for x in report["studies"]) == s.studies[p1], report
    for study in s.studies[p1]:
        assert b.study_files(study) == a.study_files(study), study
    # Nothing of P2 came with it (its other study only by the forward test, never the unpublished one).
    assert b.study_instances(s.unpublished) == []
    held = {r["study_instance_uid"] for r in b.query("SELECT study_instance_uid FROM study")}
    assert held <= set(s.studies[p1]) | {s.studies[p2][0]}, held


# == 4. access events: one per requester, study, action, outcome (and reason) per minute ============

def test_access_events_are_deduplicated_within_a_minute(sites):
    s = sites
    a, c = s.a, s.c
    p1, p2 = s.patients
    study1, study2 = s.studies[p1]
    start = time.monotonic()

    def new_events(before):
        return [e for e in harness.access_events(a) if e["ledgerIndex"] not in before]

    def decided_lines(log_from, what, study):
        with open(a.log_path, "rb") as f:
            f.seek(log_from)
            text = f.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if what in line and "node:site-c" in line and study in line]

    def ask(study, status=200):
        rc, code, body, err = harness.peer_request(c, a, "/registry/documents?studyInstanceUID=" + study)
        assert (rc, code) == (0, status), (rc, code, body, err)

    before = {e["ledgerIndex"] for e in harness.access_events(a)}
    log_from = a.log_size()
    ask(study1)
    ask(study1)
    got = new_events(before)
    assert [(e["requester"], e["study"], e["action"], e["outcome"]) for e in got] == [
        ("node:site-c", study1, "query", "allowed")], got
    # Both were decided and logged: the second is left out of the ledger, not out of the decision.
    assert len(decided_lines(log_from, "access allowed", study1)) == 2

    # Another study: its own event.
    ask(study2)
    got = new_events(before)
    assert [(e["study"], e["action"], e["outcome"]) for e in got] == [(study1, "query", "allowed"),
                                                                      (study2, "query", "allowed")], got
    # Another action on the same study: its own event.
    uid = s.entries[study1]["uniqueId"]
    rc, code, body, err = harness.peer_request(c, a, "/documents/%s/instances" % uid)  # a query too
    assert code == 200, (code, body)
    rc, code, body, err = harness.peer_request(c, a, "/documents/%s" % uid)
    assert code == 200, (code, err)
    got = new_events(before)
    assert [(e["study"], e["action"]) for e in got] == [(study1, "query"), (study2, "query"),
                                                        (study1, "retrieve-document")], got

    # Another outcome: the site stops sharing with C, the same request is refused, its own event
    # (once for two refusals); sharing again, the allowed request is within the first one's minute.
    a.cli("peer", "share", "site-c", "none")
    try:
        ask(study1, 403)
        ask(study1, 403)
    finally:
        a.cli("peer", "share", "site-c", "all")
    ask(study1)
    got = new_events(before)
    assert [(e["study"], e["action"], e["outcome"], e["reason"]) for e in got] == [
        (study1, "query", "allowed", "site policy: share all with site-c"),
        (study2, "query", "allowed", "site policy: share all with site-c"),
        (study1, "retrieve-document", "allowed", "site policy: share all with site-c"),
        (study1, "query", "denied", "site policy: share none with site-c")], got
    assert len(decided_lines(log_from, "access denied", study1)) == 2
    assert len(decided_lines(log_from, "access allowed", study1)) == 5
    assert time.monotonic() - start < harness.ACCESS_DEDUP_SECONDS, \
        "the requests were not all within one minute: the test shows nothing about deduplication"
