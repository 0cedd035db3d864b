"""`dicom-bridge consent keygen/grant/revoke`: files a patient app can make and check itself.

Runs the real CLI (no bridge home, no servers), then checks its files with other tools: OpenSSL
for the PEM keys, Python's `cryptography` for the Ed25519 signatures, and a ten-line JCS
(RFC 8785) for the canonical form and the ids, as docs/consent.md describes them.
"""

import base64
import datetime
import hashlib
import json
import os
import shutil
import stat

import pytest

import harness

OPENSSL = shutil.which("openssl")

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives import serialization
    from cryptography.exceptions import InvalidSignature
except ImportError:  # pragma: no cover
    Ed25519PublicKey = None

pytestmark = [pytest.mark.bridge,
              pytest.mark.skipif(Ed25519PublicKey is None, reason="Python's cryptography package is not installed")]

STUDY = "1.2.826.0.1.3680043.8.498.12345"


def consent(bridge_bin, *args, check=True, env=None):
    return harness.run([bridge_bin, "consent", *map(str, args)], timeout=60, check=check, env=env)


def jcs(obj):
    """RFC 8785 for what consent documents hold (strings, integers, objects): keys sorted (the
    documents' keys are ASCII, where UTF-16 and code point order agree), no whitespace, non-ASCII
    as UTF-8. json.dumps escapes controls as \\u00XX like JCS (and DEL as itself)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def expected_id(doc, prefix):
    body = {k: v for k, v in doc.items() if k not in ("id", "signature")}
    return prefix + hashlib.sha256(jcs(body)).hexdigest()[:32]


def verify_document(doc):
    """What a patient app or a bridge does: id from content, signature over JCS without signature."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(doc["patientKey"], validate=True))
    signed = jcs({k: v for k, v in doc.items() if k != "signature"})
    key.verify(base64.b64decode(doc["signature"], validate=True), signed)  # raises InvalidSignature


def in_days(n, fmt="%Y-%m-%dT%H:%M:%SZ"):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=n)).strftime(fmt)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def patient(bridge_bin, tmp_path):
    out = tmp_path / "patient"
    r = consent(bridge_bin, "keygen", "--out", out)
    assert r.stdout.strip(), r.stdout
    return out


def test_keygen_writes_standard_pem(bridge_bin, patient, tmp_path):
    key, pub = patient / "patient.key", patient / "patient.pub"
    assert mode(key) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    der = base64.b64decode("".join(key.read_text().splitlines()[1:-1]))
    assert der[:16] == bytes.fromhex("302e020100300506032b657004220420") and len(der) == 48
    der = base64.b64decode("".join(pub.read_text().splitlines()[1:-1]))
    assert der[:12] == bytes.fromhex("302a300506032b6570032100") and len(der) == 44
    # Python reads both, and they are a pair.
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(private, Ed25519PrivateKey)
    assert private.public_key().public_bytes_raw() == public.public_bytes_raw()
    # Refuses to overwrite without --force.
    kept = key.read_bytes()
    r = consent(bridge_bin, "keygen", "--out", patient, check=False)
    assert r.returncode != 0 and "exists" in r.stderr
    assert key.read_bytes() == kept
    before = pub.read_text()
    consent(bridge_bin, "keygen", "--out", patient, "--force")
    assert pub.read_text() != before and mode(key) == 0o600


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_openssl_derives_the_same_public_key(patient):
    r = harness.run([OPENSSL, "pkey", "-in", str(patient / "patient.key"), "-pubout"], check=True)
    assert r.stdout == (patient / "patient.pub").read_text()


def test_grant_prints_id_and_verifies_in_python(bridge_bin, patient, tmp_path):
    out = tmp_path / "g.json"
    expires = in_days(30)
    r = consent(bridge_bin, "grant", "--key", patient / "patient.key", "--patient-id", "PAT-001",
                "--issuer", "HOSP-A", "--to", "hospital-b", "--study", STUDY, "--expires", expires,
                "--purpose", "ETREAT", "--out", out)
    grant_id = r.stdout.strip()
    assert r.stdout == grant_id + "\n", "just the id on stdout"
    doc = json.loads(out.read_text())
    assert doc["id"] == grant_id
    assert set(doc) == {"type", "version", "id", "patientId", "issuerOfPatientId", "patientKey", "grantee",
                        "scope", "purpose", "issued", "expires", "signature"}
    assert doc["type"] == "dicom-bridge-consent-grant" and doc["version"] == 1
    assert doc["patientId"] == "PAT-001" and doc["issuerOfPatientId"] == "HOSP-A"
    assert doc["grantee"] == "hospital-b" and doc["scope"] == {"study": STUDY} and doc["purpose"] == "ETREAT"
    assert doc["expires"] == expires
    issued = datetime.datetime.strptime(doc["issued"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - issued).total_seconds()) < 120
    pub = serialization.load_pem_public_key((patient / "patient.pub").read_bytes())
    assert base64.b64decode(doc["patientKey"]) == pub.public_bytes_raw()
    assert len(base64.b64decode(doc["signature"])) == 64
    assert mode(out) == 0o600

    assert expected_id(doc, "g-") == grant_id
    verify_document(doc)
    for field, value in [("grantee", "hospital-evil"), ("expires", in_days(3650)), ("scope", "all"),
                         ("purpose", "HMARKT")]:
        tampered = dict(doc, **{field: value})
        with pytest.raises(InvalidSignature):
            verify_document(tampered)
        assert expected_id(tampered, "g-") != grant_id


def test_grant_all_with_offset_and_default_purpose(bridge_bin, patient, tmp_path):
    out = tmp_path / "all.json"
    local = (datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=1))) + datetime.timedelta(days=2))
    local = local.replace(microsecond=0)
    r = consent(bridge_bin, "grant", "--key", patient / "patient.key", "--patient-id", "PAT 7",
                "--to", "node.b_2:x", "--all", "--expires", local.isoformat(), "--out", out)
    doc = json.loads(out.read_text())
    assert doc["id"] == r.stdout.strip()
    assert doc["scope"] == "all" and doc["purpose"] == "TREAT" and "issuerOfPatientId" not in doc
    assert doc["expires"] == local.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    verify_document(doc)


def test_python_made_grant_has_the_documented_form(bridge_bin, tmp_path):
    """A patient app that signs with its own Ed25519 code produces what the CLI produces: same
    canonical form, same id, for an openssl-generated key."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    key_path = tmp_path / "ossl.key"
    harness.run([OPENSSL, "genpkey", "-algorithm", "ed25519", "-out", str(key_path)], check=True)
    out = tmp_path / "g.json"
    r = consent(bridge_bin, "grant", "--key", key_path, "--patient-id", "P1", "--to", "hospital-b",
                "--study", STUDY, "--expires", in_days(1), "--out", out)
    doc = json.loads(out.read_text())
    private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert base64.b64decode(doc["patientKey"]) == private.public_key().public_bytes_raw()
    mine = {k: v for k, v in doc.items() if k not in ("id", "signature")}
    mine["id"] = expected_id(mine, "g-")
    mine["signature"] = base64.b64encode(private.sign(jcs(mine))).decode()
    assert mine["id"] == doc["id"] == r.stdout.strip()
    verify_document(mine)


def test_revoke(bridge_bin, patient, tmp_path):
    g = consent(bridge_bin, "grant", "--key", patient / "patient.key", "--patient-id", "PAT-001",
                "--to", "hospital-b", "--all", "--expires", in_days(10), "--out", tmp_path / "g.json")
    grant_id = g.stdout.strip()
    out = tmp_path / "r.json"
    r = consent(bridge_bin, "revoke", "--key", patient / "patient.key", "--grant", grant_id, "--out", out)
    revocation_id = r.stdout.strip()
    assert r.stdout == revocation_id + "\n"
    doc = json.loads(out.read_text())
    assert set(doc) == {"type", "version", "id", "grant", "patientKey", "issued", "signature"}
    assert doc["type"] == "dicom-bridge-consent-revocation" and doc["version"] == 1
    assert doc["id"] == revocation_id and revocation_id.startswith("r-")
    assert doc["grant"] == grant_id
    assert doc["patientKey"] == json.loads((tmp_path / "g.json").read_text())["patientKey"]
    assert expected_id(doc, "r-") == revocation_id
    verify_document(doc)
    with pytest.raises(InvalidSignature):
        verify_document(dict(doc, grant="g-" + "0" * 32))

    bad = consent(bridge_bin, "revoke", "--key", patient / "patient.key", "--grant", "nonsense",
                  "--out", tmp_path / "r2.json", check=False)
    assert bad.returncode != 0 and not (tmp_path / "r2.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--expires", "2027-01-31T12:00:00"], "time zone"),
    (["--expires", "2027-01-31"], "time zone"),
    (["--expires", "2001-01-31T12:00:00Z"], "future"),
    (["--expires", "next week"], "invalid time"),
    (["--purpose", "SELLIT"], "HRESCH"),
    (["--purpose", "treat"], "TREAT"),
    (["--to", "bad node"], "node name"),
    (["--study", "1.2..3"], "UID"),
])
def test_grant_refusals(bridge_bin, patient, tmp_path, args, message):
    opts = {"--expires": in_days(5), "--purpose": "TREAT", "--to": "hospital-b", "--study": STUDY}
    opts.update(dict(zip(args[::2], args[1::2])))
    out = tmp_path / "g.json"
    cmd = ["grant", "--key", patient / "patient.key", "--patient-id", "PAT-001", "--out", out]
    for k, v in opts.items():
        cmd += [k, v]
    r = consent(bridge_bin, *cmd, check=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert r.stdout == ""
    assert not out.exists()


def test_grant_needs_exactly_one_scope(bridge_bin, patient, tmp_path):
    base = ["grant", "--key", patient / "patient.key", "--patient-id", "P", "--to", "hospital-b",
            "--expires", in_days(1), "--out", tmp_path / "g.json"]
    assert consent(bridge_bin, *base, check=False).returncode != 0
    assert consent(bridge_bin, *base, "--all", "--study", STUDY, check=False).returncode != 0


def test_grant_refuses_a_public_key(bridge_bin, patient, tmp_path):
    r = consent(bridge_bin, "grant", "--key", patient / "patient.pub", "--patient-id", "P", "--to", "n",
                "--all", "--expires", in_days(1), "--out", tmp_path / "g.json", check=False)
    assert r.returncode != 0 and "PRIVATE KEY" in r.stderr


def test_needs_no_home(bridge_bin, tmp_path):
    """keygen/grant/revoke never read or create a bridge home."""
    home = tmp_path / "home"
    env = dict(os.environ, DICOM_BRIDGE_HOME=str(home), HOME=str(tmp_path / "user"))
    consent(bridge_bin, "keygen", "--out", tmp_path / "k", env=env)
    g = consent(bridge_bin, "grant", "--key", tmp_path / "k" / "patient.key", "--patient-id", "P", "--to", "n",
                "--all", "--expires", in_days(1), "--out", tmp_path / "g.json", env=env).stdout.strip()
    consent(bridge_bin, "revoke", "--key", tmp_path / "k" / "patient.key", "--grant", g,
            "--out", tmp_path / "r.json", env=env)
    assert not home.exists() and not (tmp_path / "user").exists()
