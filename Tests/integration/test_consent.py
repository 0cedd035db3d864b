"""Consent, audit and federation (issue 6), driven through the real binary on loopback.

Sites A, B (and C) are exchange nodes made by the node_factory fixture (conftest.py): one CA,
certificates, peer ports; each pair of sites adds the other before `serve` starts. A holds two
studies of one synthetic patient P (testdata/generate.py, no PHI), pushed with DCMTK's storescu,
their manifests published with `manifest --study`. The patient's key is made with `consent
keygen`, enrolled at A; grants and revocations are signed with `consent grant/revoke` and recorded
at A with `consent submit`. What is checked:

1. the policy: no grant, denied (and audited as denied); a grant for one study opens that study to
   that node only; revocation and expiry close it again; a grant signed by another key is refused;
2. federation: a workstation's C-FIND on B sees A's granted study as NEARLINE (Retrieve AE = B),
   its C-MOVE gets it byte-identical to A's copy, and both sites audit the access (also Orthanc);
3. `audit --patient` on B shows the events of site A too;
4. no ledger entry of A, B or C holds the patient's ID or name in clear;
5. the ATNA file: one PS3.15 AuditMessage per line (RELAX NG-checked when the schema exists);
6. break-glass: denied where disabled, allowed, flagged and audited where enabled.
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
DENIED = re.compile(r"denied|refused|forbidden|not allowed|no consent|403", re.I)


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


def assert_denied(r, report, what):
    out = "%s\nstdout: %s\nstderr: %s" % (what, r.stdout[-3000:], r.stderr[-3000:])
    assert r.returncode != 0, "fetch should have been denied but exited 0: " + out
    msg = (json.dumps(report) if report else "") + "\n" + r.stdout + "\n" + r.stderr
    assert DENIED.search(msg), "the failure does not say the access was denied: " + out


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

    # Enrolled, no grant: denied, and A audits the denial.
    r, report = b.fetch(a.node_name, study=study1)
    assert_denied(r, report, "B, no grant")
    assert b.study_instances(study1) == []
    denied = events(audit(a), requester="node:site-b", outcome="denied", study=study1)
    assert denied, "A's audit has no denied event of node:site-b for %s:\n%s" % (study1, json.dumps(audit(a), indent=1))
    assert all(e["site"] == "site-a" and e.get("grant") is None for e in denied), denied

    # A grant for study1 to B: B fetches study1, not study2; C is still denied.
    gid = grant_at(a, p, "site-b", study=study1)
    [g] = [g for g in consent_list(a) if g["id"] == gid]
    assert (g["grantee"], g["scope"], g["status"]) == ("site-b", {"study": study1}, "valid"), g
    assert g["purpose"] == "TREAT" and g["patientKeyHash"], g
    assert entry["PatientID"] not in json.dumps(g), g
    assert [x["id"] for x in consent_list(a, entry["PatientID"])] == [gid]

    r, report = b.fetch(a.node_name, study=study1)
    assert_fetched(r, report, "B, granted study1")
    assert b.study_files(study1) == a.study_files(study1)
    allowed = events(audit(a), requester="node:site-b", outcome="allowed", study=study1)
    assert allowed and all(e.get("grant") == gid for e in allowed), allowed

    r, report = b.fetch(a.node_name, study=study2)
    assert_denied(r, report, "B, study2 (not granted)")
    assert b.study_instances(study2) == []
    r, report = c.fetch(a.node_name, study=study1)
    assert_denied(r, report, "C, study1 (granted to B only)")
    assert c.study_instances(study1) == []
    assert events(audit(a), requester="node:site-c", outcome="denied", study=study1)

    # Revoked: B is denied again.
    rid, path = p.revoke(gid)
    assert submit(a, path).stdout.strip() == rid
    [g] = [g for g in consent_list(a) if g["id"] == gid]
    assert g["status"] == "revoked", g
    r, report = b.fetch(a.node_name, study=study1)
    assert_denied(r, report, "B, study1 after revocation")

    # A grant that expires: valid at first, denied and listed as expired afterwards.
    expires = utc_in(4)
    gid2 = grant_at(a, p, "site-c", study=study2, expires=expires)
    [g] = [g for g in consent_list(a) if g["id"] == gid2]
    assert g["status"] == "valid" and instant(g["expires"]) == instant(expires), g
    deadline = datetime.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    time.sleep(max(0.0, (deadline - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.5)
    r, report = c.fetch(a.node_name, study=study2)
    assert_denied(r, report, "C, study2 with an expired grant")
    assert c.study_instances(study2) == []
    [g] = [g for g in consent_list(a) if g["id"] == gid2]
    assert g["status"] == "expired", g

    # Signed by another key (not enrolled for P): refused, nothing recorded.
    mallory = Patient(a, tmp_path / "mallory", entry["PatientID"])
    bad_id, bad_path = mallory.grant("site-b", study=study2)
    r = submit(a, bad_path, check=False)
    assert r.returncode != 0, "consent submit accepted a grant signed by a key not enrolled for P:\n" + r.stdout
    assert bad_id not in [g["id"] for g in consent_list(a)]
    r, report = b.fetch(a.node_name, study=study2)
    assert_denied(r, report, "B, study2 with a grant by a foreign key")

    # A grant already expired when submitted is refused too (signed with 2 s to live).
    gid3, path3 = p.grant("site-b", study=study2, expires=utc_in(2))
    time.sleep(3.2)
    r = submit(a, path3, check=False)
    assert r.returncode != 0, "consent submit accepted an expired grant:\n" + r.stdout
    assert gid3 not in [g["id"] for g in consent_list(a)]


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
    r, report = c.fetch(a.node_name, study=study2)
    assert_denied(r, report, "C, no grant")

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
    r, report = c.fetch(a.node_name, study=study1)
    assert_denied(r, report, "C, no grant")
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
    r, report = b.fetch(a.node_name, study=study2)
    assert_denied(r, report, "B, no grant")
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

    r, report = b.fetch(a.node_name, study=study1, extra=("--break-glass", "ER"))
    assert_denied(r, report, "break-glass at a site where it is off")
    assert b.study_instances(study1) == []

    assert a.stop() == 0
    write_config(a, breakGlass=True)
    a.start()
    r, report = b.fetch(a.node_name, study=study1)
    assert_denied(r, report, "no grant, no break-glass asked")
    r, report = b.fetch(a.node_name, study=study1, extra=("--break-glass", "ER"))
    assert_fetched(r, report, "break-glass where enabled")
    assert b.study_files(study1) == a.study_files(study1)

    seen = audit(a)
    glass = events(seen, requester="node:site-b", study=study1, outcome="allowed", breakGlass=True)
    assert glass, "A's audit has no allowed break-glass event:\n%s" % json.dumps(seen, indent=1)
    assert all("ER" in e["reason"] for e in glass), glass
    assert all(e.get("grant") is None for e in glass), glass
    # The refused attempt (break-glass off) was audited too, not as allowed.
    assert events(seen, requester="node:site-b", study=study1, outcome="denied"), seen
    assert not events(seen, study=study2, outcome="allowed"), seen


def test_federated_find_skips_a_silent_peer_and_says_so(scenario, tmp_path):
    """A peer that does not answer is skipped: B still answers with what A shares (the patient is
    not enrolled, A shares all with B), NEARLINE, and the final response says it may be incomplete."""

    def configure(a, b, c):
        # A shares everything of patients who enrolled no key with B; C is configured on B but
        # never started, so it cannot answer.
        a.cli("peer", "share", b.node_name, "all")
        write_config(b, federationTimeoutSeconds=2)

    nodes, entry, studies, _ = scenario(seed=611, enroll=False, before_start=configure)
    a, b, c = nodes
    c.stop()
    answers, out = findscu_studies(b, tmp_path, entry["PatientID"])
    got = sorted(x.get("StudyInstanceUID") for x in answers)
    assert got == studies, "B's federated C-FIND answered %s, A shares %s\n%s" % (got, studies, out[-3000:])
    assert all(x.get("InstanceAvailability") == "NEARLINE" for x in answers), answers
    assert all(x.get("RetrieveAETitle") == b.ae_title for x in answers), answers
    # The final response's Error Comment (0000,0902): findscu shows it in its debug output.
    r = harness.run([FINDSCU, "-d", "-S", "-aet", "FINDSCU", "-aec", b.ae_title, "-k", "0008,0052=STUDY",
                     "-k", "0010,0020=" + entry["PatientID"], "-k", "0020,000D", "127.0.0.1", str(b.port)], timeout=120)
    debug = r.stdout + r.stderr
    assert "may be incomplete" in debug and c.node_name in debug, debug[-4000:]
    # Site policy decided, and A audited it: allowed for node:B under no grant.
    allowed = [e for e in audit(a) if e["requester"] == "node:" + b.node_name and e["outcome"] == "allowed"]
    assert allowed and all(e["grant"] is None for e in allowed), allowed
