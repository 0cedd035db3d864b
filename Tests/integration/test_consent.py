"""Consent, audit and federation (issue 6), driven through the real binary on loopback.

Sites A, B (and C) are exchange nodes made by the node_factory fixture (conftest.py): one CA,
certificates, peer ports; each pair of sites adds the other before `serve` starts. A holds two
studies of one synthetic patient P (testdata/generate.py, no PHI), pushed with DCMTK's storescu,
their manifests published with `manifest --study`. The patient's key is made with `consent
keygen`, enrolled at A; grants and revocations are signed with `consent grant/revoke` and recorded
at A with `consent submit`. What is checked:

1. the policy: no grant, denied (and audited as denied); a grant for one study opens that study to
   that node only; revocation and expiry close it again; a grant signed by another key is refused.
   A denial is shown by the source itself: the fetch fails with the refusal the client reports only
   for an HTTP 403, the source answers the same node 403 with the reason when asked directly, logs
   "access denied", and its ledger holds the denied access event with exactly that reason;
2. federation: a workstation's C-FIND on B sees A's granted study as NEARLINE (Retrieve AE = B),
   its C-MOVE gets it byte-identical to A's copy, and both sites audit the access (also Orthanc);
3. `audit --patient` on B shows the events of site A too;
4. no ledger entry of A, B or C holds the patient's ID or name in clear;
5. the ATNA file: one PS3.15 AuditMessage per line (RELAX NG-checked when the schema exists);
6. break-glass: denied where disabled (that very attempt audited as a refused break-glass),
   allowed, flagged and audited where enabled.
Federation (C-FIND/C-MOVE/C-GET through the bridge, silent peers) is also in test_federation.py.
"""

import datetime
import json
import os
import re
import sqlite3
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

import harness
from harness import part10

import pydicom  # noqa: E402

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

FINDSCU = harness.DCMTK_BIN + "/findscu"
MOVESCU = harness.DCMTK_BIN + "/movescu"
XMLLINT = "/usr/bin/xmllint"
AUDIT_RNG = os.path.join(harness.TESTDATA, "audit", "dicom-audit-message.rng")
KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
NO_GRANT = "no valid grant from the patient for %s and this study"
BREAK_GLASS_OFF = "break-glass requested but not enabled at this site; "
BREAK_GLASS_HEADER = "X-Dicom-Bridge-Break-Glass"
# A grant's lifetime in the expiry test: long enough to be submitted and used by a fetch of a
# debug build on a loaded machine, short enough to wait for.
GRANT_LIFETIME = 50


# == helpers =========================================================================================

def utc_in(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def instant(text):
    """A UTC time of `consent list` (RFC 3339, with or without a fraction) as a datetime."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text)
    assert m, "not an RFC 3339 UTC time: %r" % text
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)


def consent_cli(node, *args, check=True):
    """`dicom-bridge consent ...` without a home (keygen, grant, revoke)."""
    return harness.run([node.binary, "consent"] + [str(a) for a in args], timeout=60, check=check)


class Patient:
    """P's key pair (consent keygen) and the documents P signs with it."""

    def __init__(self, node, folder, patient_id):
        self.node, self.folder, self.patient_id = node, str(folder), patient_id
        consent_cli(node, "keygen", "--out", self.folder)
        self.key = os.path.join(self.folder, "patient.key")
        self.pub = os.path.join(self.folder, "patient.pub")
        assert os.path.isfile(self.key) and os.path.isfile(self.pub), os.listdir(self.folder)
        self.n = 0

    def _out(self, kind):
        self.n += 1
        return os.path.join(self.folder, "%s-%d.json" % (kind, self.n))

    def grant(self, to, study=None, expires=None, purpose=None, patient_id=None):
        """(grant id, file)."""
        out = self._out("grant")
        args = ["grant", "--key", self.key, "--patient-id", patient_id or self.patient_id, "--to", to]
        args += ["--study", study] if study else ["--all"]
        args += ["--expires", expires or utc_in(86400)]
        if purpose:
            args += ["--purpose", purpose]
        r = consent_cli(self.node, *(args + ["--out", out]))
        gid = r.stdout.strip()
        assert re.fullmatch(r"g-[0-9a-f]{32}", gid), "consent grant printed %r" % r.stdout
        return gid, out

    def revoke(self, grant_id):
        out = self._out("revoke")
        r = consent_cli(self.node, "revoke", "--key", self.key, "--grant", grant_id, "--out", out)
        rid = r.stdout.strip()
        assert re.fullmatch(r"r-[0-9a-f]{32}", rid), "consent revoke printed %r" % r.stdout
        return rid, out

    def enroll(self, site):
        return site.cli("consent", "enroll", "--patient-id", self.patient_id, "--public-key", self.pub)


def submit(site, path, check=True):
    r = site.cli("consent", "submit", path, check=check)
    return r


def grant_at(site, patient, to, study=None, **kw):
    """P signs a grant and it is submitted at `site`; returns its id."""
    gid, path = patient.grant(to, study=study, **kw)
    r = submit(site, path)
    assert r.stdout.strip() == gid, "consent submit printed %r, the grant's id is %s" % (r.stdout, gid)
    return gid


def consent_list(site, patient_id=None):
    args = ["consent", "list", "--json"]
    if patient_id:
        args += ["--patient-id", patient_id]
    return json.loads(site.cli(*args).stdout)


def audit(site, patient_id=None):
    args = ["audit", "--json"]
    if patient_id:
        args += ["--patient", patient_id]
    return json.loads(site.cli(*args).stdout)


def events(site_events, **match):
    return [e for e in site_events if all(e.get(k) == v for k, v in match.items())]


def write_config(node, **values):
    """Merge values into HOME/config.json (before serve starts, or before a restart)."""
    path = os.path.join(node.home, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config.update(values)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def make_sites(node_factory, names, before_start=None):
    """Exchange nodes that all know each other (share none, the default); started."""
    nodes = [node_factory(n) for n in names]
    for x in nodes:
        for y in nodes:
            if x is not y:
                x.add_peer(y)
    if before_start:
        before_start(*nodes)
    for n in nodes:
        n.start()
    return nodes


def patient_corpus(corpus_factory, seed):
    """Two studies (one series of two instances each) of one patient:
    (patient entry dict, {study uid: [paths]})."""
    folder, manifest = corpus_factory(patients=1, studies=2, series=1, instances=2, seed=seed,
                                      transfer_syntax="explicit")
    files = manifest["files"]
    assert len({f["PatientID"] for f in files}) == 1
    studies = {}
    for f in files:
        studies.setdefault(f["StudyInstanceUID"], []).append(os.path.join(folder, f["path"]))
    assert len(studies) == 2
    return files[0], studies


def push_and_publish(node, studies):
    paths = [p for ps in studies.values() for p in ps]
    r = harness.storescu(node.port, node.ae_title, paths)
    assert r.returncode == 0, "storescu failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-2000:])
    assert node.wait_for_instances(len(paths)) >= len(paths)
    for study in studies:
        entry = node.publish_manifest(study)
        assert entry["studyInstanceUID"] == study, entry
        node.wait_for_checkpoint(entry["ledgerIndex"] + 1)


@pytest.fixture
def scenario(node_factory, corpus_factory, tmp_path):
    """make(names=("site-a", "site-b", "site-c"), seed=..., before_start=None, enroll=True)
    -> (nodes, patient entry, [study1, study2], Patient); A holds and published both studies."""

    def make(names=("site-a", "site-b", "site-c"), seed=601, before_start=None, enroll=True):
        nodes = make_sites(node_factory, names, before_start)
        a = nodes[0]
        entry, studies = patient_corpus(corpus_factory, seed)
        push_and_publish(a, studies)
        patient = Patient(a, tmp_path / ("patient-%d" % seed), entry["PatientID"])
        if enroll:
            patient.enroll(a)
        return nodes, entry, sorted(studies), patient

    return make


def refused(source, requester, study, reason, new=True, break_glass=None, holds=False):
    """requester fetches study from source and the source refuses it by its policy with exactly
    `reason` (see harness.assert_source_refused: the 403 and its reason, the log line, the denied
    access event on the source's ledger, new unless `new` is False). Nothing of the study is
    stored unless the requester already held it (`holds`). Returns the access event."""
    before = {e["ledgerIndex"] for e in harness.access_events(source)}
    log_from = source.log_size()
    held = requester.study_files(study)
    extra = ("--break-glass", break_glass) if break_glass else ()
    headers = ("%s: %s" % (BREAK_GLASS_HEADER, break_glass),) if break_glass else ()
    r, report = requester.fetch(source.node_name, study=study, extra=extra)
    event = harness.assert_source_refused(source, requester, study, r, report, reason, before, log_from,
                                          headers=headers, new=new)
    assert event["site"] == source.node_name and event["grant"] is None and event["breakGlass"] is False, event
    assert bool(held) == holds, "%s holds %s before the fetch: %s" % (requester.node_name, study, held)
    assert requester.study_files(study) == held, "a refused fetch changed what %s holds of %s" % (requester.node_name, study)
    return event


def assert_fetched(r, report, what):
    assert r.returncode == 0, "%s: fetch exited %d\nstdout: %s\nstderr: %s" % (
        what, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    return report


def image_uids(paths):
    return {part10.read(p)["media_storage_sop_instance_uid"] for p in paths}


def findscu_studies(node, workdir, patient_id, calling_ae="FINDSCU"):
    """STUDY-level C-FIND (Study Root) on node for a Patient ID; (answers, findscu output)."""
    out = tempfile.mkdtemp(prefix="findscu-", dir=str(workdir))
    cmd = [FINDSCU, "-v", "-S", "-aet", calling_ae, "-aec", node.ae_title, "-to", "30", "-ta", "30", "-X",
           "-od", out, "-k", "0008,0052=STUDY", "-k", "0010,0020=" + patient_id, "-k", "0020,000D",
           "-k", "0008,0054", "-k", "0008,0056", "-k", "0020,1208", "127.0.0.1", str(node.port)]
    r = harness.run(cmd, timeout=120)
    assert r.returncode == 0, "findscu failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-2000:])
    return [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))], r.stdout + r.stderr


def assert_same_as_at(source, study, received_paths):
    """The received files are exactly source's stored instances of the study, dataset for dataset."""
    got = {}
    for p in received_paths:
        info = part10.read(p)
        got[info["media_storage_sop_instance_uid"]] = info
    rows = source.study_instances(study)
    assert set(got) == {r["sop_instance_uid"] for r in rows}, "received %s, %s holds %s" % (
        sorted(got), source.node_name, sorted(r["sop_instance_uid"] for r in rows))
    for row in rows:
        stored = part10.read(source.stored_path(row))
        info = got[row["sop_instance_uid"]]
        assert info["transfer_syntax_uid"] == stored["transfer_syntax_uid"]
        assert info["dataset"] == stored["dataset"], "%s: dataset received differs from %s's:\n%s" % (
            row["sop_instance_uid"], source.node_name,
            part10.describe_difference(stored["dataset"], info["dataset"], source.node_name, "received"))


# == 1. the policy: grants, revocation, expiry, a foreign key ========================================

def test_only_the_patients_valid_grants_open_a_study(scenario, tmp_path):
    (a, b, c), entry, (study1, study2), p = scenario(seed=601)

    # Enrolled, no grant: the source refuses (403 and why), logs and audits the denial.
    first = refused(a, b, study1, NO_GRANT % "site-b")

    # A grant for study2 to C that expires in GRANT_LIFETIME s: C fetches study2 at once, A's
    # files bit for bit, under that grant. (Its expiry is checked further down, when it is due.)
    expires = utc_in(GRANT_LIFETIME)
    gid2 = grant_at(a, p, "site-c", study=study2, expires=expires)
    [g2] = [g for g in consent_list(a) if g["id"] == gid2]
    assert g2["status"] == "valid" and instant(g2["expires"]) == instant(expires), g2
    r, report = c.fetch(a.node_name, study=study2)
    assert_fetched(r, report, "C, study2 under a grant that has not expired yet")
    assert c.study_files(study2) == a.study_files(study2)
    allowed = events(audit(a), requester="node:site-c", outcome="allowed", study=study2)
    assert allowed and all(e.get("grant") == gid2 for e in allowed), allowed

    # A grant for study1 to B: B fetches study1, not study2; C is still refused study1.
    gid = grant_at(a, p, "site-b", study=study1)
    [g] = [g for g in consent_list(a) if g["id"] == gid]
    assert (g["grantee"], g["scope"], g["status"]) == ("site-b", {"study": study1}, "valid"), g
    assert g["purpose"] == "TREAT" and g["patientKeyHash"], g
    assert entry["PatientID"] not in json.dumps(g), g
    assert [x["id"] for x in consent_list(a, entry["PatientID"])] == [gid2, gid]

    r, report = b.fetch(a.node_name, study=study1)
    assert_fetched(r, report, "B, granted study1")
    assert b.study_files(study1) == a.study_files(study1)
    allowed = events(audit(a), requester="node:site-b", outcome="allowed", study=study1)
    assert allowed and all(e.get("grant") == gid for e in allowed), allowed

    refused(a, b, study2, NO_GRANT % "site-b")
    refused(a, c, study1, NO_GRANT % "site-c")

    # Signed by another key (not enrolled for P): refused, nothing recorded.
    mallory = Patient(a, tmp_path / "mallory", entry["PatientID"])
    bad_id, bad_path = mallory.grant("site-b", study=study2)
    r = submit(a, bad_path, check=False)
    assert r.returncode != 0, "consent submit accepted a grant signed by a key not enrolled for P:\n" + r.stdout
    assert "not the one enrolled" in r.stderr, r.stderr
    assert bad_id not in [g["id"] for g in consent_list(a)]
    # (B's refusal of study2 within the minute is the burst's first event, above)
    refused(a, b, study2, NO_GRANT % "site-b", new=False)

    # A grant already expired when submitted is refused too (signed with 2 s to live).
    gid3, path3 = p.grant("site-b", study=study2, expires=utc_in(2))
    time.sleep(3.2)
    r = submit(a, path3, check=False)
    assert r.returncode != 0, "consent submit accepted an expired grant:\n" + r.stdout
    assert "expired" in r.stderr, r.stderr
    assert gid3 not in [g["id"] for g in consent_list(a)]

    rid, path = p.revoke(gid)
    assert submit(a, path).stdout.strip() == rid
    [g] = [g for g in consent_list(a) if g["id"] == gid]
    assert g["status"] == "revoked" and g["revokedBy"] == rid, g
    # Revoked: B is refused study1 again, and the source says by which revocation. Within the
    # minute of B's first refusal of study1, but for another reason: an event of its own.
    assert time.time() - harness._event_time(first) < harness.ACCESS_DEDUP_SECONDS, "the test took too long to show it"
    refused(a, b, study1, NO_GRANT % "site-b" + " (grant %s was revoked by %s)" % (gid, rid), holds=True)

    # C's grant has expired: C is refused study2 (which it holds) from the moment it expired, and
    # the source says which grant lapsed; it is listed as expired.
    deadline = instant(g2["expires"]).timestamp()
    time.sleep(max(0.0, deadline - time.time()) + 1.5)
    refused(a, c, study2, NO_GRANT % "site-c" + " (grant %s expired at %s)" % (gid2, g2["expires"]), holds=True)
    [g2] = [g for g in consent_list(a) if g["id"] == gid2]
    assert g2["status"] == "expired", g2


# == 2. federation: a workstation on B finds and moves A's granted study =============================

def test_workstation_finds_and_moves_a_granted_remote_study(scenario, storescp_factory, tmp_path):
    (a, b), entry, (study1, study2), p = scenario(names=("site-a", "site-b"), seed=602)
    scp = storescp_factory(ae_title="STORESCP")
    b.add_ae("STORESCP", host="127.0.0.1", port=scp.port)
    gid = grant_at(a, p, "site-b", study=study1)

    # C-FIND at B: study1 as remote (NEARLINE, retrieve from B), study2 not at all.
    answers, out = findscu_studies(b, tmp_path, entry["PatientID"])
    by_uid = {}
    for ds in answers:
        by_uid.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    assert set(by_uid) == {study1}, "C-FIND on B answered %s; want only the granted study %s\n%s" % (
        sorted(by_uid), study1, out[-3000:])
    [ds] = by_uid[study1]
    assert str(ds.get("InstanceAvailability", "")) == "NEARLINE", ds
    assert str(ds.get("RetrieveAETitle", "")) == b.ae_title, ds

    # C-MOVE at B to a storescp: fetched from A (verified), delivered byte-identical.
    r = harness.run([MOVESCU, "-S", "-aet", "MOVESCU", "-aec", b.ae_title, "-aem", "STORESCP", "-to", "30",
                     "-ta", "30", "-k", "0008,0052=STUDY", "-k", "0020,000D=" + study1, "127.0.0.1", str(b.port)],
                    timeout=180)
    assert r.returncode == 0, "movescu failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-2000:])
    assert_same_as_at(a, study1, scp.received())

    # Both sites audit it.
    a_events = events(audit(a), requester="node:site-b", study=study1, outcome="allowed")
    assert a_events and all(e.get("grant") == gid for e in a_events), json.dumps(audit(a), indent=1)
    b_events = events(audit(b), requester="ae:MOVESCU", study=study1, action="c-move")
    assert b_events, "B's audit has no c-move event of ae:MOVESCU:\n%s" % json.dumps(audit(b), indent=1)
    assert all(e["outcome"] == "allowed" and e["site"] == "site-b" for e in b_events), b_events

    # Now held by B too: it appears once, as local (ONLINE).
    answers, out = findscu_studies(b, tmp_path, entry["PatientID"])
    got = [(str(ds.StudyInstanceUID), str(ds.get("InstanceAvailability", ""))) for ds in answers]
    assert got == [(study1, "ONLINE")], "after the move B answers %s\n%s" % (got, out[-3000:])


def orthanc_find(o, modality, query):
    qid = o.post("/modalities/%s/query" % modality, {"Level": "Study", "Query": query})["ID"]
    answers = [o.get("/queries/%s/answers/%d/content?simplify" % (qid, i))
               for i in range(len(o.get("/queries/%s/answers" % qid)))]
    return qid, answers


@pytest.mark.orthanc
def test_orthanc_finds_and_retrieves_a_granted_remote_study(scenario, orthanc_factory, tmp_path):
    (a, b), entry, (study1, study2), p = scenario(names=("site-a", "site-b"), seed=603)
    o = orthanc_factory(ae_title="ORTHANC", modalities={"SITEB": [b.ae_title, "127.0.0.1", b.port]})
    b.remove_ae("ORTHANC")
    b.add_ae("ORTHANC", host="127.0.0.1", port=o.dicom_port)
    grant_at(a, p, "site-b", study=study1)

    # (Orthanc drops Retrieve AE Title and Instance Availability from a STUDY-level query: "Tag not
    # allowed for this C-Find level"; findscu checks them in the test above.)
    qid, answers = orthanc_find(o, "SITEB", {"PatientID": entry["PatientID"], "StudyInstanceUID": ""})
    assert [x.get("StudyInstanceUID") for x in answers] == [study1], answers

    o.post("/queries/%s/retrieve" % qid, {"TargetAet": o.ae_title, "Synchronous": True}, timeout=300)
    folder = tmp_path / "from-orthanc"
    folder.mkdir()
    paths = []
    for iid in o.get("/instances"):
        data = o.get("/instances/%s/file" % iid)
        path = folder / ("%s.dcm" % iid)
        path.write_bytes(data)
        paths.append(str(path))
    assert_same_as_at(a, study1, paths)
    assert events(audit(b), requester="ae:ORTHANC", study=study1, action="c-move", outcome="allowed"), audit(b)


# == 3. a patient's audit spans the sites ===========================================================

def test_patient_audit_on_b_includes_site_a(scenario):
    (a, b, c), entry, (study1, study2), p = scenario(seed=604)
    grant_at(a, p, "site-b", study=study1)
    r, report = b.fetch(a.node_name, study=study1)
    assert_fetched(r, report, "B, granted study1")
    refused(a, c, study2, NO_GRANT % "site-c")

    seen = audit(b, entry["PatientID"])
    from_a = events(seen, site="site-a")
    assert from_a, "B's audit --patient shows no event of site-a:\n%s" % json.dumps(seen, indent=1)
    assert events(from_a, requester="node:site-b", study=study1, outcome="allowed"), from_a
    assert events(from_a, requester="node:site-c", study=study2, outcome="denied"), from_a
    assert {e["study"] for e in seen} <= {study1, study2}, seen
    # A's own view of the patient holds the same events of A.
    at_a = {(e["site"], e["ledgerIndex"]) for e in audit(a, entry["PatientID"])}
    assert {(e["site"], e["ledgerIndex"]) for e in from_a} <= at_a, (from_a, at_a)
    # Every event has every field of the contract ("grant": an id or null).
    fields = {"time", "requester", "study", "action", "outcome", "reason", "grant", "breakGlass", "site",
              "ledgerIndex"}
    missing = [(e, sorted(fields - set(e))) for e in seen if not fields <= set(e)]
    assert not missing, "audit events lack fields: %s" % missing[:3]


# == 4. no Patient ID or name in clear on any ledger ==================================================

def needles(entry):
    """The patient's ID and name (whole and by component), as given and uppercase, in the
    spellings a ledger could hold them: UTF-8, Latin-1, JSON-escaped."""
    words = {entry["PatientID"]}
    name = entry["PatientName"]
    words.add(name)
    words.update(part for part in re.split(r"[\^=]", name) if len(part) >= 3)
    words |= {w.upper() for w in words}
    out = set()
    for w in words:
        out.add(w.encode("utf-8"))
        try:
            out.add(w.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        out.add(json.dumps(w)[1:-1].encode("ascii"))
    return out


def test_no_patient_id_or_name_on_any_ledger(scenario, storescp_factory, tmp_path):
    (a, b, c), entry, (study1, study2), p = scenario(seed=605)
    scp = storescp_factory(ae_title="STORESCP")
    b.add_ae("STORESCP", host="127.0.0.1", port=scp.port)
    gid = grant_at(a, p, "site-b", study=study1)
    r, report = b.fetch(a.node_name, study=study1)
    assert_fetched(r, report, "B, granted study1")
    refused(a, c, study1, NO_GRANT % "site-c")
    grant_at(a, p, "site-b", study=study2)
    findscu_studies(b, tmp_path, entry["PatientID"])
    r = harness.run([MOVESCU, "-S", "-aet", "MOVESCU", "-aec", b.ae_title, "-aem", "STORESCP", "-to", "30",
                     "-ta", "30", "-k", "0008,0052=STUDY", "-k", "0020,000D=" + study2, "127.0.0.1", str(b.port)],
                    timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    rid, path = p.revoke(gid)
    submit(a, path)
    audit(b, entry["PatientID"])

    looking_for = needles(entry)
    found = []
    for node in (a, b, c):
        con = sqlite3.connect(os.path.join(node.home, "index.sqlite"), timeout=10)
        try:
            rows = con.execute("SELECT rowid, entry FROM ledger_entries").fetchall()
        finally:
            con.close()
        assert rows or node is c, "%s: no ledger entries" % node.node_name
        for rowid, blob in rows:
            data = blob if isinstance(blob, bytes) else str(blob).encode("utf-8")
            found += ["%s ledger_entries rowid %s holds %r" % (node.node_name, rowid, n) for n in looking_for
                      if n in data]
        shown = node.cli("ledger", "show", "--json", "--count", "1000000").stdout.encode("utf-8")
        found += ["%s `ledger show --json` holds %r" % (node.node_name, n) for n in looking_for if n in shown]
    types = {e["type"] for node in (a, b, c) for e in node.ledger_entries()}
    assert found == [], "the patient's ID or name in clear on a ledger (entry types %s):\n%s" % (
        sorted(types), "\n".join(found[:40]))
    # The scan saw the consent events it is about.
    for t in ("patient-enrolled", "consent-granted", "consent-revoked", "access"):
        assert t in types, "no %s entry on any ledger (types: %s)" % (t, sorted(types))


# == 5. ATNA: the site's audit file =================================================================

def test_atna_audit_file_has_one_message_per_line(scenario):
    log = {}

    def configure(a, b):
        log["path"] = os.path.join(os.path.dirname(a.home), "site-a-audit.log")
        write_config(a, audit={"file": log["path"]})

    (a, b), entry, (study1, study2), p = scenario(names=("site-a", "site-b"), seed=606, before_start=configure)
    refused(a, b, study2, NO_GRANT % "site-b")
    grant_at(a, p, "site-b", study=study1)
    r, report = b.fetch(a.node_name, study=study1)
    assert_fetched(r, report, "B, granted study1")

    path = log["path"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if study1 in text:
            break
        time.sleep(0.2)
    assert os.path.exists(path), "no ATNA file %s" % path
    lines = [line for line in text.split("\n") if line.strip()]
    assert lines, "the ATNA file is empty"
    assert text.endswith("\n"), "the last message is not terminated by a newline"
    for i, line in enumerate(lines):
        root = ET.fromstring(line.encode("utf-8"))
        assert root.tag.rsplit("}", 1)[-1] == "AuditMessage", "line %d: root %s" % (i + 1, root.tag)
    with_study = [line for line in lines if study1 in line]
    assert with_study, "no audit message names %s:\n%s" % (study1, "\n".join(lines))
    assert any(study2 in line for line in lines), "the denied access is not in the ATNA file"
    assert len(events(audit(a))) == len(lines), "%d access events on A's ledger, %d ATNA messages" % (
        len(audit(a)), len(lines))

    if not os.path.exists(AUDIT_RNG):
        pytest.skip("%s is absent: the messages parse, not checked against the schema" % AUDIT_RNG)
    folder = tempfile.mkdtemp(prefix="atna-", dir=os.path.dirname(a.home))
    for i, line in enumerate(lines):
        one = os.path.join(folder, "message-%d.xml" % i)
        with open(one, "w", encoding="utf-8") as f:
            f.write(line + "\n")
        r = harness.run([XMLLINT, "--noout", "--relaxng", AUDIT_RNG, one], timeout=60)
        assert r.returncode == 0, "line %d fails the RELAX NG schema:\n%s\n%s" % (i + 1, r.stderr[-3000:], line)


# == 6. break-glass =================================================================================

def test_break_glass_only_where_enabled(scenario):
    (a, b), entry, (study1, study2), p = scenario(names=("site-a", "site-b"), seed=607)

    # Break-glass where it is off: refused, and that very attempt is audited as a refused
    # break-glass (its own reason), the only event it adds, even right after an ordinary refusal
    # of the same study.
    refused(a, b, study1, NO_GRANT % "site-b")
    before = {e["ledgerIndex"] for e in audit(a)}
    attempt = refused(a, b, study1, BREAK_GLASS_OFF + NO_GRANT % "site-b", break_glass="ER")
    added = [e for e in audit(a) if e["ledgerIndex"] not in before]
    assert added == [attempt], "the refused break-glass attempt added %s" % added

    assert a.stop() == 0
    write_config(a, breakGlass=True)
    a.start()
    # Enabled, but not asked for: an ordinary refusal.
    refused(a, b, study1, NO_GRANT % "site-b")

    before = {e["ledgerIndex"] for e in audit(a)}
    log_from = a.log_size()
    r, report = b.fetch(a.node_name, study=study1, extra=("--break-glass", "ER"))
    assert_fetched(r, report, "break-glass where enabled")
    assert b.study_files(study1) == a.study_files(study1)

    # Every access of that fetch is flagged and audited with the stated reason, once per action.
    glass = [e for e in audit(a) if e["ledgerIndex"] not in before]
    assert sorted(e["action"] for e in glass) == ["query", "retrieve-document", "retrieve-instances"], glass
    for e in glass:
        assert (e["requester"], e["study"], e["outcome"], e["breakGlass"], e["reason"], e["grant"]) == (
            "node:site-b", study1, "allowed", True, "BREAK-GLASS: ER", None), e
    with open(a.log_path, "rb") as f:
        f.seek(log_from)
        log = f.read().decode("utf-8", "replace")
    warnings = [line for line in log.splitlines() if "BREAK-GLASS access" in line and study1 in line]
    assert warnings, "no BREAK-GLASS warning in A's log:\n" + log[-3000:]
    assert not events(audit(a), study=study2, outcome="allowed"), audit(a)
