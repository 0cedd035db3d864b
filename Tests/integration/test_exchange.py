"""Exchange between bridges (issue 5), driven through the real binary on loopback: nodes with
certificates from one CA made by `dicom-bridge pki`, studies pushed with DCMTK's storescu, the
XDS-I.b manifest (a KOS in the study, anchored in the ledger), `fetch` over the mutual-TLS peer
API proving every byte against the source's ledger, and what must be refused: altered files, an
edited manifest, a rewritten ledger (equivocation), a man in the middle, a peer the site does not
share with, clients without a certificate of a configured peer.

Nodes are made by the node_factory fixture (conftest.py): homes, ports and certificates of their
own; peers are added before `serve` starts (a running serve trusts the CAs known at its start).
"""

import glob
import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import time

import pytest

import harness
from harness import part10

import pydicom  # noqa: E402

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

FINDSCU = harness.DCMTK_BIN + "/findscu"
MOVESCU = harness.DCMTK_BIN + "/movescu"
DCIODVFY = "/usr/bin/dciodvfy"
OPENSSL = "/usr/bin/openssl"
KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
FETCH_TIMEOUT = 60  # seconds; a fetch of these small studies takes a few
EM_DASH = "\u2014"


# == helpers ========================================================================================

def make_study(corpus_factory, seed, series=2, instances=5, **options):
    """One generated study of one patient: (paths, manifest entries, Study Instance UID)."""
    folder, manifest = corpus_factory(patients=1, studies=1, series=series, instances=instances, seed=seed,
                                      **options)
    files = manifest["files"]
    studies = {f["StudyInstanceUID"] for f in files}
    assert len(studies) == 1
    return [os.path.join(folder, f["path"]) for f in files], files, studies.pop()


def push(node, paths):
    r = harness.storescu(node.port, node.ae_title, paths)
    assert r.returncode == 0, "storescu to %s failed:\n%s\n%s" % (node.ae_title, r.stdout[-2000:], r.stderr[-2000:])
    assert node.wait_for_instances(len(paths)) >= len(paths)


def publish(node, study):
    """`manifest --study` on a running node; waits until its signed checkpoint covers the entry."""
    entry = node.publish_manifest(study)
    assert entry["studyInstanceUID"] == study, entry
    assert isinstance(entry.get("ledgerIndex"), int), entry
    node.wait_for_checkpoint(entry["ledgerIndex"] + 1)
    return entry


def connect(source, dest, share="all"):
    """source shares with dest (`peer add dest --share`); dest knows source (to fetch from it)."""
    source.add_peer(dest, share=share)
    dest.add_peer(source)


def error_of(r, report):
    """The reason a failed fetch gave: the JSON "error" and standard error."""
    parts = []
    if isinstance(report, dict) and report.get("error"):
        parts.append(str(report["error"]))
    parts.append(r.stderr)
    return "\n".join(parts)


def assert_fetch_failed(r, report):
    assert r.returncode != 0, "fetch exited 0 but should have failed:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])
    assert isinstance(report, dict) and report.get("error"), \
        "fetch --json printed no JSON object with \"error\":\nstdout: %s\nstderr: %s" % (r.stdout[-2000:], r.stderr[-2000:])
    assert "error:" in r.stderr, "no \"error: ...\" on standard error: %s" % r.stderr[-2000:]
    return error_of(r, report)


def assert_fetched(r, report):
    assert r.returncode == 0, "fetch exited %d:\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    assert isinstance(report, dict) and "studies" in report, r.stdout[-3000:]
    return report


def assert_nothing_of(node, study):
    rows = node.study_instances(study)
    assert rows == [], "%s indexed %d instances of the refused study %s" % (node.node_name, len(rows), study)
    received = [e for e in node.ledger_entries() if e["type"] == "received-from-peer"
                and e["fields"].get("study-instance-uid") == study]
    assert received == [], "received-from-peer entries for a refused study: %s" % received[:3]


def staged_files(node):
    return glob.glob(os.path.join(node.home, "fetch", "**", "*.dcm"), recursive=True)


def alter_byte(path, offset_from_end=None, offset=None):
    """Flip one byte of a stored file (store files may be read-only)."""
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    pos = offset if offset is not None else size - (offset_from_end or 1)
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x01]))


def kos_row(node, entry):
    rows = node.instances(entry["uniqueId"])
    assert len(rows) == 1, "the manifest %s is not stored once on %s: %s" % (entry["uniqueId"], node.node_name, rows)
    assert rows[0]["sop_class_uid"] == KOS_SOP_CLASS
    return rows[0]


def image_rows(node, study):
    return [r for r in node.study_instances(study) if r["sop_class_uid"] != KOS_SOP_CLASS]


class OpenSSLServer(harness.ManagedProcess):
    """`openssl s_server -www` with a given certificate: a man in the middle."""

    name = "openssl s_server"

    def __init__(self, cert, key, port, log_path):
        super().__init__(log_path)
        self.cert, self.key, self.port = cert, key, port

    def start(self):
        self._start([OPENSSL, "s_server", "-cert", self.cert, "-key", self.key, "-accept", str(self.port), "-www"])
        harness.wait_for_port(self.port, proc=self.proc)
        return self


# == fixtures ========================================================================================

@pytest.fixture
def pair(node_factory):
    """Site A sharing everything with site B; both started."""
    a = node_factory("site-a")
    b = node_factory("site-b")
    connect(a, b, share="all")
    a.start()
    b.start()
    return a, b


@pytest.fixture
def published(pair, corpus_factory):
    """A study of 10 instances (mixed transfer syntaxes) pushed into A, its manifest published."""
    a, b = pair
    paths, files, study = make_study(corpus_factory, seed=501)
    push(a, paths)
    entry = publish(a, study)
    return a, b, study, files, entry


# == 1. fetch: bit for bit, in the ledger, served to a workstation ===================================

def findscu_study(node, study, workdir):
    out = tempfile.mkdtemp(prefix="findscu-", dir=str(workdir))
    cmd = [FINDSCU, "-S", "-aet", "FINDSCU", "-aec", node.ae_title, "-to", "20", "-ta", "20", "-X", "-od", out,
           "-k", "0008,0052=STUDY", "-k", "0020,000D=" + study, "-k", "0020,1208", "-k", "0010,0020",
           "127.0.0.1", str(node.port)]
    r = harness.run(cmd, timeout=120)
    assert r.returncode == 0, "findscu failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-2000:])
    return [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))]


def test_fetch_stores_the_study_bit_for_bit_and_serves_it(node_factory, corpus_factory, storescp_factory, tmp_path):
    a = node_factory("site-a")
    b = node_factory("site-b")
    connect(a, b, share="all")
    scp = storescp_factory(ae_title="STORESCP")
    b.add_ae("STORESCP", host="127.0.0.1", port=scp.port)
    a.start()
    b.start()
    paths, files, study = make_study(corpus_factory, seed=501)
    push(a, paths)
    entry = publish(a, study)

    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetched(r, report)
    a_files = a.study_files(study)
    assert len(a_files) == len(files) + 1, "A should hold the study's instances and its manifest KOS"
    assert report["peer"] == a.node_name
    assert report["checkpointSize"] > entry["ledgerIndex"]
    [s] = report["studies"]
    assert s["studyInstanceUID"] == study
    assert s["manifest"] == entry["uniqueId"]
    assert s["manifestLedgerIndex"] == entry["ledgerIndex"]
    assert s["instances"] in (len(files), len(files) + 1), s
    assert s["resumed"] == 0
    assert report["bytes"] > 0 and report["seconds"] > 0

    # B holds A's Part 10 files bit for bit, the manifest included, and they are the report's paths.
    b_files = b.study_files(study)
    assert b_files == a_files, "B's copies differ from A's files:\nonly on A %s\nonly on B %s" % (
        sorted(set(a_files.items()) - set(b_files.items())), sorted(set(b_files.items()) - set(a_files.items())))
    assert sorted(harness.sha256_file(os.path.join(b.home, p)) for p in s["paths"]) == sorted(a_files.values())
    for row in b.study_instances(study):
        digest = harness.sha256_file(b.stored_path(row))
        assert digest == row["sha256"]

    # B's ledger: one received-from-peer entry per fetched instance, with its SHA-256.
    received = [e for e in b.ledger_entries() if e["type"] == "received-from-peer"]
    by_sop = {}
    for e in received:
        f = e["fields"]
        assert f["sop-instance-uid"] not in by_sop, "two received-from-peer entries for %s" % f["sop-instance-uid"]
        by_sop[f["sop-instance-uid"]] = f
    image_uids = {f["SOPInstanceUID"] for f in files}
    assert image_uids <= set(by_sop), "no received-from-peer entry for %s" % sorted(image_uids - set(by_sop))
    assert set(by_sop) <= set(a_files), "received-from-peer entries of instances not in the study"
    for uid, f in by_sop.items():
        assert f["sha256"] == a_files[uid]
        assert f["peer"] == a.node_name
        assert f["study-instance-uid"] == study
        assert int(f["peer-manifest-entry"]) == entry["ledgerIndex"]

    # A workstation finds the study on B (STUDY level) and pulls it; the datasets are A's.
    answers = findscu_study(b, study, tmp_path)
    assert [str(x.StudyInstanceUID) for x in answers] == [study]
    assert int(answers[0].NumberOfStudyRelatedInstances) == len(a_files)
    assert str(answers[0].PatientID) == files[0]["PatientID"]
    r = harness.run([MOVESCU, "-S", "-aet", "MOVESCU", "-aec", b.ae_title, "-aem", "STORESCP", "-to", "20", "-ta", "20",
                     "-k", "0008,0052=STUDY", "-k", "0020,000D=" + study, "127.0.0.1", str(b.port)], timeout=180)
    assert r.returncode == 0, "movescu failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-2000:])
    received_files = {}
    for p in scp.received():
        info = part10.read(p)
        received_files[info["media_storage_sop_instance_uid"]] = info
    assert set(received_files) == set(a_files), "pulled %s, A holds %s" % (sorted(received_files), sorted(a_files))
    for row in a.study_instances(study):
        stored = part10.read(a.stored_path(row))
        got = received_files[row["sop_instance_uid"]]
        assert got["transfer_syntax_uid"] == stored["transfer_syntax_uid"]
        assert got["dataset"] == stored["dataset"], "%s: dataset pulled from B differs from A's:\n%s" % (
            row["sop_instance_uid"], part10.describe_difference(stored["dataset"], got["dataset"], "A", "pulled from B"))


# == 2. the manifest ==================================================================================

def test_manifest_is_a_valid_kos_referencing_exactly_the_study(node_factory, corpus_factory):
    a = node_factory("site-a")
    a.start()
    paths, files, study = make_study(corpus_factory, seed=502)
    push(a, paths)
    entry = publish(a, study)
    row = kos_row(a, entry)
    path = a.stored_path(row)

    # The document entry describes the stored KOS file.
    assert entry["sha256"] == harness.sha256_file(path)
    with open(path, "rb") as f:
        data = f.read()
    assert entry["hash"].lower() == hashlib.sha1(data).hexdigest()
    assert int(entry["size"]) == len(data)
    assert files[0]["PatientID"] in entry["sourcePatientId"] or files[0]["PatientID"] in entry["patientId"], entry
    assert study in str(entry["referenceIdList"]), entry["referenceIdList"]

    # The ledger anchors it.
    [e] = [e for e in a.ledger_entries() if e["type"] == "manifest-published"]
    assert e["index"] == entry["ledgerIndex"]
    assert e["fields"]["manifest-sop-instance-uid"] == entry["uniqueId"]
    assert e["fields"]["manifest-sha256"] == entry["sha256"]
    assert int(e["fields"]["instance-count"]) == len(files)

    # dicom3tools: no error.
    r = harness.run([DCIODVFY, path], timeout=60)
    errors = [line for line in (r.stdout + r.stderr).splitlines() if "Error" in line]
    assert errors == [], "dciodvfy reports errors in the manifest:\n" + "\n".join(errors)

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == KOS_SOP_CLASS and ds.Modality == "KO"
    assert ds.StudyInstanceUID == study
    assert ds.PatientID == files[0]["PatientID"]
    referenced, series_items = set(), []
    for st in ds.CurrentRequestedProcedureEvidenceSequence:
        assert st.StudyInstanceUID == study
        for se in st.ReferencedSeriesSequence:
            series_items.append(se)
            for sop in se.ReferencedSOPSequence:
                assert sop.ReferencedSOPInstanceUID not in referenced
                referenced.add(sop.ReferencedSOPInstanceUID)
    assert referenced == {f["SOPInstanceUID"] for f in files}
    assert {se.SeriesInstanceUID for se in series_items} == {f["SeriesInstanceUID"] for f in files}
    for se in series_items:
        assert se.get("RetrieveAETitle") == a.ae_title, "Retrieve AE Title %r, want %r" % (se.get("RetrieveAETitle"), a.ae_title)
        url = str(se.get("RetrieveURL", ""))
        assert url.startswith(a.public_url), "Retrieve URL %r does not point at A's peer URL %s" % (url, a.public_url)


# == 3. tampering ====================================================================================

def test_altered_instance_is_refused(published):
    a, b, study, files, entry = published
    victim = image_rows(a, study)[3]
    alter_byte(a.stored_path(victim), offset_from_end=2)
    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    msg = assert_fetch_failed(r, report)
    assert victim["sop_instance_uid"] in msg, "the message does not name the altered instance:\n" + msg
    assert re.search(r"sha-?256", msg, re.I), "the message does not say which hash did not match:\n" + msg
    assert_nothing_of(b, study)


def test_edited_manifest_is_refused(published):
    a, b, study, files, entry = published
    path = a.stored_path(kos_row(a, entry))
    alter_byte(path, offset=os.path.getsize(path) // 2)
    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    msg = assert_fetch_failed(r, report)
    assert "manifest" in msg.lower(), "the message does not name the manifest:\n" + msg
    assert_nothing_of(b, study)


def rewrite_ledger(node):
    """Another history: drop the append-only triggers and delete every ledger entry, stored hash
    and checkpoint of a stopped node."""
    con = sqlite3.connect(os.path.join(node.home, "index.sqlite"), timeout=10)
    try:
        triggers = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'ledger_%'")]
        assert triggers, "no append-only triggers on the ledger tables"
        for t in triggers:
            con.execute('DROP TRIGGER "%s"' % t)
        for table in ("ledger_entries", "ledger_hashes", "ledger_checkpoints"):
            con.execute("DELETE FROM %s" % table)
        con.commit()
    finally:
        con.close()


def test_rewritten_ledger_is_reported_as_equivocation(pair, corpus_factory):
    a, b = pair
    paths, files, study = make_study(corpus_factory, seed=503, series=1, instances=4)
    push(a, paths)
    publish(a, study)
    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetched(r, report)
    seen = b.peers()[a.node_name]
    assert seen["checkpointsSeen"] >= 1 and not seen["equivocating"], seen

    # A rewrites its history: another tree (different entries) under the same name and key.
    assert a.stop() == 0
    rewrite_ledger(a)
    a.start()
    paths2, files2, study2 = make_study(corpus_factory, seed=504, series=2, instances=4)
    push(a, paths2)
    publish(a, study2)
    r, report = b.fetch(a.node_name, study=study2, timeout=FETCH_TIMEOUT)
    msg = assert_fetch_failed(r, report)
    assert "equivocat" in msg.lower(), "the failure does not report equivocation:\n" + msg
    peer = b.peers()[a.node_name]
    assert peer["equivocating"] is True, peer
    assert peer["equivocation"], peer
    assert_nothing_of(b, study2)
    # Nothing more is accepted from it.
    r, report = b.fetch(a.node_name, study=study2, timeout=FETCH_TIMEOUT)
    assert "equivocat" in assert_fetch_failed(r, report).lower()
    assert_nothing_of(b, study2)


def test_man_in_the_middle_is_refused(node_factory, pki_factory, tmp_path):
    a = node_factory("site-a")  # not started: its name, key and CA are what B trusts
    b = node_factory("site-b")
    evil_cert, evil_key = pki_factory("evil").issue("site-a")  # same name, another CA
    mitm = OpenSSLServer(evil_cert, evil_key, harness.free_port(), str(tmp_path / "mitm.log"))
    b.add_peer(a, url="https://127.0.0.1:%d" % mitm.port)
    mitm.start()
    try:
        r, report = b.fetch(a.node_name, study="2.25.1234567")
    finally:
        mitm.stop()
    msg = assert_fetch_failed(r, report)
    assert re.search(r"TLS|certificate|handshake", msg, re.I), "no TLS error named:\n" + msg
    assert b.query("SELECT COUNT(*) AS n FROM instance")[0]["n"] == 0
    assert staged_files(b) == []


# == 4. an interrupted fetch resumes ==================================================================

def test_interrupted_fetch_resumes(pair, corpus_factory):
    a, b = pair
    paths, files, study = make_study(corpus_factory, seed=505, series=4, instances=50, modalities="CT",
                                     matrix=256, transfer_syntax="explicit")
    assert len(paths) == 200
    push(a, paths)
    entry = publish(a, study)

    out = open(os.path.join(b.home, "..", "fetch-interrupted.out"), "w+")
    proc = subprocess.Popen(b.fetch_command(a.node_name, study, extra=("--concurrency", 2)),
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(staged_files(b)) < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the fetch ended before it could be interrupted (%d staged)" % len(staged_files(b))
        assert len(staged_files(b)) >= 12, "no instance staged within 60 s"
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        rc = proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out.seek(0)
    text = out.read()
    out.close()
    assert rc != 0, "the interrupted fetch exited 0:\n" + text[-3000:]
    kept = len(staged_files(b))
    assert 0 < kept < len(paths) + 1, "%d files staged" % kept
    assert b.study_instances(study) == [], "an interrupted fetch indexed part of the study"

    a.stop()
    a.start()
    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetched(r, report)
    [s] = report["studies"]
    assert s["resumed"] > 0, "the second fetch started over: %s" % s
    assert s["manifestLedgerIndex"] == entry["ledgerIndex"]
    assert b.study_files(study) == a.study_files(study)
    assert len(b.study_files(study)) == len(paths) + 1


# == 5. policy and witnessing =========================================================================

def test_share_none_refuses_and_share_all_allows(node_factory, corpus_factory):
    a = node_factory("site-a")
    b = node_factory("site-b")
    c = node_factory("site-c")
    connect(a, b, share="all")
    connect(a, c, share="none")
    peers = a.peers()
    assert peers["site-b"]["share"] == "all" and peers["site-c"]["share"] == "none", peers
    for n in (a, b, c):
        n.start()
    paths, files, study = make_study(corpus_factory, seed=506, series=1, instances=4)
    push(a, paths)
    publish(a, study)

    # A refuses C by its policy: 403 with the reason, logged, audited (not a failed connection).
    before = {e["ledgerIndex"] for e in harness.access_events(a)}
    log_from = a.log_size()
    r, report = c.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetch_failed(r, report)
    harness.assert_source_refused(a, c, study, r, report, "site policy: share none with site-c", before, log_from)
    assert c.query("SELECT COUNT(*) AS n FROM instance")[0]["n"] == 0

    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetched(r, report)
    assert b.study_files(study) == a.study_files(study)


def test_default_share_is_none(node_factory, corpus_factory):
    a = node_factory("site-a")
    b = node_factory("site-b")
    connect(a, b, share=None)
    assert a.peers()["site-b"]["share"] == "none"
    a.start()
    paths, files, study = make_study(corpus_factory, seed=507, series=1, instances=2)
    push(a, paths)
    publish(a, study)
    before = {e["ledgerIndex"] for e in harness.access_events(a)}
    log_from = a.log_size()
    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetch_failed(r, report)
    harness.assert_source_refused(a, b, study, r, report, "site policy: share none with site-b", before, log_from)
    assert b.query("SELECT COUNT(*) AS n FROM instance")[0]["n"] == 0
    # Changing the policy takes effect for the running serve.
    a.cli("peer", "share", "site-b", "all")
    r, report = b.fetch(a.node_name, study=study, timeout=FETCH_TIMEOUT)
    assert_fetched(r, report)
    assert b.study_files(study) == a.study_files(study)


def test_witness_cosigns_the_peer_checkpoint(node_factory, corpus_factory):
    a = node_factory("site-a")
    b = node_factory("site-b")
    connect(a, b, share="none")
    a.start("--witness-interval", 1)
    paths, files, study = make_study(corpus_factory, seed=508, series=1, instances=2)
    push(a, paths)
    a.wait_for_checkpoint(len(paths))
    b.start("--witness-interval", 1)

    deadline = time.monotonic() + 20
    while True:
        seen = b.peers()[a.node_name]
        if seen["checkpointsSeen"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen["checkpointsSeen"] >= 1, seen
    assert seen["lastSize"] >= len(paths), seen
    assert not seen["equivocating"] and not seen.get("lastError"), seen

    url = a.public_url + "/checkpoint"
    while True:
        rc, code, body, err = harness.curl_peer(url, ca=b.ca_crt, cert=b.tls_cert, key=b.tls_key)
        cosigned = [line for line in body.splitlines() if line.startswith(EM_DASH + " " + b.node_name + " ")]
        if cosigned or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rc == 0 and code == 200, (rc, code, err)
    assert body.startswith(a.node_name + "\n"), body
    assert cosigned, "A's checkpoint carries no cosignature of %s:\n%s" % (b.node_name, body)
    assert any(line.startswith(EM_DASH + " " + a.node_name + " ") for line in body.splitlines()), body


# == 6. who may connect ===============================================================================

def test_peer_api_needs_a_client_certificate_of_a_configured_peer(node_factory, pki_factory):
    a = node_factory("site-a")
    b = node_factory("site-b")
    connect(a, b)
    a.start()
    pki = pki_factory()
    url = a.public_url + "/checkpoint"

    # The configured peer: 200 and A's checkpoint.
    rc, code, body, err = harness.curl_peer(url, ca=pki.ca_crt, cert=b.tls_cert, key=b.tls_key)
    assert (rc, code) == (0, 200), (rc, code, body, err)
    assert body.startswith(a.node_name + "\n")

    # No client certificate: the handshake fails, no HTTP answer.
    rc, code, body, err = harness.curl_peer(url, ca=pki.ca_crt)
    assert rc != 0 and code == 0, "without a client certificate: curl %d, HTTP %d %r" % (rc, code, body)

    # A certificate of another CA (even with a configured peer's name): the handshake fails.
    evil_cert, evil_key = pki_factory("evil").issue("site-b")
    rc, code, body, err = harness.curl_peer(url, ca=pki.ca_crt, cert=evil_cert, key=evil_key)
    assert rc != 0 and code == 0, "with another CA's certificate: curl %d, HTTP %d %r" % (rc, code, body)

    # The right CA, a node A does not know: 403.
    x_cert, x_key = pki.issue("site-x")
    rc, code, body, err = harness.curl_peer(url, ca=pki.ca_crt, cert=x_cert, key=x_key)
    assert (rc, code) == (0, 403), "unknown node: curl %d, HTTP %d %r %s" % (rc, code, body, err)
    rc, code, body, err = harness.curl_peer(a.public_url + "/registry/documents?studyInstanceUID=1.2.3",
                                            ca=pki.ca_crt, cert=x_cert, key=x_key)
    assert code == 403, (rc, code, body)
