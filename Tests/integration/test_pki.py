"""`dicom-bridge pki`: the consortium CA and node certificates, checked with OpenSSL.

init-ca + issue through the real CLI, then `openssl verify` / `openssl x509 -text`, file modes,
refusals, `pki show`, and a real mutual-TLS handshake between `openssl s_server` and curl /
`openssl s_client` with the issued certificates (servers bind 127.0.0.1 only).
"""

import json
import os
import shutil
import stat
import subprocess

import pytest

import harness

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")

pytestmark = [pytest.mark.bridge,
              pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")]


def pki(bridge_bin, *args, check=True):
    return harness.run([bridge_bin, "pki", *map(str, args)], timeout=120, check=check)


def openssl(*args, check=False, **kw):
    return harness.run([OPENSSL, *map(str, args)], timeout=60, check=check, **kw)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def pki_dir(bridge_bin, tmp_path_factory):
    """ca/ (the consortium CA), other-ca/ (a stranger), certs/ with node-a (three hosts),
    node-b (default hosts) and rogue (issued by other-ca)."""
    d = tmp_path_factory.mktemp("pki")
    pki(bridge_bin, "init-ca", "--out", d / "ca", "--name", "Test consortium CA", "--organization", "Test Consortium")
    pki(bridge_bin, "init-ca", "--out", d / "other-ca", "--name", "Other CA", "--days", 30)
    pki(bridge_bin, "issue", "--ca", d / "ca", "--name", "node-a", "--host", "node-a.example.org",
        "--host", "127.0.0.1", "--host", "::1", "--out", d / "certs")
    pki(bridge_bin, "issue", "--ca", d / "ca", "--name", "node-b", "--out", d / "certs", "--days", 10)
    pki(bridge_bin, "issue", "--ca", d / "other-ca", "--name", "rogue", "--out", d / "certs")
    return d


def test_files_and_modes(pki_dir):
    for name in ("ca/ca.key", "other-ca/ca.key", "certs/node-a.key", "certs/node-b.key", "certs/rogue.key"):
        assert mode(pki_dir / name) == 0o600, name
    for name in ("ca/ca.crt", "certs/node-a.crt"):
        assert mode(pki_dir / name) == 0o644, name
    assert mode(pki_dir / "ca") == 0o700
    assert sorted(os.listdir(pki_dir / "certs")) == sorted(
        ["node-a.crt", "node-a.key", "node-b.crt", "node-b.key", "rogue.crt", "rogue.key"])
    # Each key is the certificate's.
    for node in ("node-a", "node-b"):
        from_cert = openssl("x509", "-noout", "-pubkey", "-in", pki_dir / "certs" / (node + ".crt"), check=True).stdout
        from_key = openssl("pkey", "-pubout", "-in", pki_dir / "certs" / (node + ".key"), check=True).stdout
        assert from_cert == from_key


def test_openssl_verifies_against_the_ca(pki_dir):
    for node in ("node-a", "node-b"):
        crt = pki_dir / "certs" / (node + ".crt")
        r = openssl("verify", "-CAfile", pki_dir / "ca" / "ca.crt", crt)
        assert r.returncode == 0 and r.stdout.strip() == "%s: OK" % crt, r.stdout + r.stderr
        # As both a TLS server and a TLS client.
        for purpose in ("sslserver", "sslclient"):
            r = openssl("verify", "-purpose", purpose, "-CAfile", pki_dir / "ca" / "ca.crt", crt)
            assert r.returncode == 0, r.stdout + r.stderr


def test_openssl_rejects_another_cas_certificate(pki_dir):
    r = openssl("verify", "-CAfile", pki_dir / "ca" / "ca.crt", pki_dir / "certs" / "rogue.crt")
    assert r.returncode != 0
    assert "OK" not in r.stdout
    r = openssl("verify", "-CAfile", pki_dir / "other-ca" / "ca.crt", pki_dir / "certs" / "node-a.crt")
    assert r.returncode != 0


def test_node_certificate_profile(pki_dir):
    text = openssl("x509", "-noout", "-text", "-in", pki_dir / "certs" / "node-a.crt", check=True).stdout
    assert "Subject: O = Test Consortium, CN = node-a" in text
    assert "Issuer: O = Test Consortium, CN = Test consortium CA" in text
    assert "DNS:node-a.example.org, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text
    assert "X509v3 Authority Key Identifier" in text and "X509v3 Subject Key Identifier" in text
    assert "Public Key Algorithm: id-ecPublicKey" in text and "NIST CURVE: P-256" in text
    assert "Signature Algorithm: ecdsa-with-SHA256" in text
    serial = openssl("x509", "-noout", "-serial", "-in", pki_dir / "certs" / "node-a.crt", check=True).stdout
    serial = serial.strip().split("=", 1)[1]
    assert len(serial) == 40 and int(serial[0], 16) < 8, serial   # 20 bytes, positive

    default = openssl("x509", "-noout", "-text", "-in", pki_dir / "certs" / "node-b.crt", check=True).stdout
    assert "DNS:localhost, IP Address:127.0.0.1\n" in default


def test_ca_certificate_profile(pki_dir):
    text = openssl("x509", "-noout", "-text", "-in", pki_dir / "ca" / "ca.crt", check=True).stdout
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in text
    assert "X509v3 Subject Key Identifier" in text
    assert "Public Key Algorithm: id-ecPublicKey" in text


def test_existing_files_are_kept_unless_forced(bridge_bin, pki_dir, tmp_path):
    before = (pki_dir / "ca" / "ca.crt").read_bytes()
    r = pki(bridge_bin, "init-ca", "--out", pki_dir / "ca", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr and "--force" in r.stderr
    assert (pki_dir / "ca" / "ca.crt").read_bytes() == before

    r = pki(bridge_bin, "issue", "--ca", pki_dir / "ca", "--name", "node-a", "--out", pki_dir / "certs", check=False)
    assert r.returncode != 0 and "node-a.crt already exists" in r.stderr

    # --force replaces, keeping the key private.
    shutil.copytree(pki_dir / "certs", tmp_path / "certs")
    old = (tmp_path / "certs" / "node-a.crt").read_bytes()
    os.chmod(tmp_path / "certs" / "node-a.key", 0o644)
    pki(bridge_bin, "issue", "--ca", pki_dir / "ca", "--name", "node-a", "--out", tmp_path / "certs", "--force")
    assert (tmp_path / "certs" / "node-a.crt").read_bytes() != old
    assert mode(tmp_path / "certs" / "node-a.key") == 0o600


def test_errors_are_clear(bridge_bin, pki_dir, tmp_path):
    r = pki(bridge_bin, "issue", "--ca", tmp_path / "missing", "--name", "x", "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "missing does not exist" in r.stderr

    # A CA key that is not the CA certificate's.
    shutil.copy(pki_dir / "ca" / "ca.crt", tmp_path / "ca.crt")
    shutil.copy(pki_dir / "other-ca" / "ca.key", tmp_path / "ca.key")
    r = pki(bridge_bin, "issue", "--ca", tmp_path, "--name", "x", "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "does not match" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()

    # A node certificate is not a CA.
    os.makedirs(tmp_path / "fake")
    shutil.copy(pki_dir / "certs" / "node-b.crt", tmp_path / "fake" / "ca.crt")
    shutil.copy(pki_dir / "certs" / "node-b.key", tmp_path / "fake" / "ca.key")
    r = pki(bridge_bin, "issue", "--ca", tmp_path / "fake", "--name", "x", "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "not a CA certificate" in r.stderr, r.stderr

    for bad in (["--name", "../escape"], ["--name", "ok", "--host", "bad host"], ["--name", "ok", "--days", "0"]):
        r = pki(bridge_bin, "issue", "--ca", pki_dir / "ca", "--out", tmp_path / "o", *bad, check=False)
        assert r.returncode != 0 and r.stderr.strip(), bad

    r = pki(bridge_bin, "show", tmp_path / "nothing.crt", check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr
    (tmp_path / "garbage.crt").write_text("not a certificate\n")
    r = pki(bridge_bin, "show", tmp_path / "garbage.crt", check=False)
    assert r.returncode != 0 and "no PEM certificate" in r.stderr


def test_show(bridge_bin, pki_dir):
    crt = pki_dir / "certs" / "node-a.crt"
    r = pki(bridge_bin, "show", crt)
    assert "common name:  node-a" in r.stdout
    assert "DNS:node-a.example.org, IP:127.0.0.1, IP:::1" in r.stdout
    assert "serverAuth, clientAuth" in r.stdout
    fingerprint = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", crt, check=True).stdout
    assert fingerprint.strip().split("=", 1)[1] in r.stdout

    r = pki(bridge_bin, "show", crt, "--ca", pki_dir / "ca" / "ca.crt")
    assert "chain:        OK" in r.stdout
    r = pki(bridge_bin, "show", crt, "--ca", pki_dir / "ca")          # the CA folder works too
    assert "chain:        OK" in r.stdout

    r = pki(bridge_bin, "show", crt, "--ca", pki_dir / "other-ca" / "ca.crt", check=False)
    assert r.returncode == 1 and "NOT VALID" in r.stdout and "does not verify" in r.stderr

    j = json.loads(pki(bridge_bin, "show", crt, "--json", "--ca", pki_dir / "ca" / "ca.crt").stdout)
    assert j["commonName"] == "node-a" and j["chainValid"] is True and j["isCA"] is False
    assert j["dnsNames"] == ["node-a.example.org"] and j["ipAddresses"] == ["127.0.0.1", "::1"]
    assert j["extendedKeyUsage"] == ["serverAuth", "clientAuth"] and j["keyAlgorithm"] == "ECDSA P-256"
    serial = openssl("x509", "-noout", "-serial", "-in", crt, check=True).stdout.strip().split("=", 1)[1]
    assert j["serialNumber"] == serial
    assert j["notAfter"].endswith("Z")

    r = pki(bridge_bin, "show", pki_dir / "certs" / "rogue.crt", "--json", "--ca", pki_dir / "ca" / "ca.crt", check=False)
    assert r.returncode == 1
    j = json.loads(r.stdout)
    assert j["chainValid"] is False and j["chainError"]

    ca = json.loads(pki(bridge_bin, "show", pki_dir / "ca" / "ca.crt", "--json").stdout)
    assert ca["isCA"] is True and ca["selfSigned"] is True and ca["pathLengthConstraint"] == 0


def test_help_texts(bridge_bin):
    out = harness.run([bridge_bin, "pki", "--help"], check=True).stdout
    for sub in ("init-ca", "issue", "show"):
        assert sub in out
    out = " ".join(harness.run([bridge_bin, "pki", "issue", "--help"], check=True).stdout.split())
    assert "--host" in out and "--force" in out and "serverAuth and clientAuth" in out


# -- mutual TLS ------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(pki_dir, tmp_path):
    """`openssl s_server` on 127.0.0.1 with node-a's certificate, requiring a client certificate
    from the consortium CA."""
    port = harness.free_port()
    log = open(tmp_path / "s_server.log", "w")
    proc = subprocess.Popen(
        [OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % port,
         "-cert", pki_dir / "certs" / "node-a.crt", "-key", pki_dir / "certs" / "node-a.key",
         "-CAfile", pki_dir / "ca" / "ca.crt", "-Verify", "1", "-verify_return_error", "-www"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        harness.wait_for_port(port, timeout=15, proc=proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def curl(pki_dir, port, client, host="127.0.0.1", ca="ca"):
    cmd = [CURL, "-sS", "--max-time", "20", "--cacert", pki_dir / ca / "ca.crt"]
    if client:
        cmd += ["--cert", pki_dir / "certs" / (client + ".crt"), "--key", pki_dir / "certs" / (client + ".key")]
    if host != "127.0.0.1":
        cmd += ["--resolve", "%s:%d:127.0.0.1" % (host, port)]
    return harness.run(cmd + ["https://%s:%d/" % (host, port)], timeout=60)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_mutual_tls_with_curl(pki_dir, tls_server):
    port = tls_server
    ok = curl(pki_dir, port, "node-b")
    assert ok.returncode == 0, ok.stderr
    assert "s_server" in ok.stdout or "Ciphers" in ok.stdout, ok.stdout[:500]
    # The DNS name SAN is good for the server too.
    by_name = curl(pki_dir, port, "node-b", host="node-a.example.org")
    assert by_name.returncode == 0, by_name.stderr
    # A name the certificate does not carry.
    wrong = curl(pki_dir, port, "node-b", host="elsewhere.example.org")
    assert wrong.returncode != 0
    # A client certificate from another CA, or none at all, is refused by the server.
    rogue = curl(pki_dir, port, "rogue")
    assert rogue.returncode != 0, rogue.stdout[:500]
    anonymous = curl(pki_dir, port, None)
    assert anonymous.returncode != 0
    # The client does not trust a server it cannot chain to its CA.
    distrust = curl(pki_dir, port, "node-b", ca="other-ca")
    assert distrust.returncode != 0


def test_mutual_tls_with_s_client(pki_dir, tls_server):
    port = tls_server

    def s_client(client):
        return harness.run(
            [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", pki_dir / "ca" / "ca.crt",
             "-verify_return_error", "-verify_ip", "127.0.0.1",
             "-cert", pki_dir / "certs" / (client + ".crt"), "-key", pki_dir / "certs" / (client + ".key"),
             "-ign_eof"],
            input="GET / HTTP/1.0\r\n\r\n", timeout=60)

    ok = s_client("node-b")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr
    assert "Verify return code: 0 (ok)" in ok.stdout
    assert "HTTP/1.0 200 ok" in ok.stdout
    rogue = s_client("rogue")
    assert "HTTP/1.0 200 ok" not in rogue.stdout
