"""The ledger as an outside verifier sees it: only the RUNNING binary's HTTP endpoints (C2SP
/checkpoint, hash tiles, entry bundles, /proof/*) and its CLI, checked by code that shares nothing
with the product: Go's golang.org/x/mod/sumdb/note and sumdb/tlog (Tests/interop/tlogcheck, mode
`served`, built here offline in GOPATH mode) and the Python verifier of test_ledger.py (RFC 9162
proofs, tiles recomputed from the leaves). The node receives 300 instances from DCMTK's storescu
in three batches, so that it has signed checkpoints of sizes 100, 256 (a full tile) and 300
(a full and a partial level-0 tile, a partial level-1 tile)."""

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

import harness
from test_ledger import (entry_bundle_paths, expected_tiles, leaf_hash, mth, open_note, parse_entry_bundle,
                         root_from_inclusion, verify_consistency, verify_inclusion)

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

GO = "/usr/bin/go"
GOPATH = "/usr/share/gocode"  # Debian's golang-golang-x-mod-dev
TLOGCHECK_SRC = os.path.join(harness.REPO_ROOT, "Tests", "interop", "tlogcheck")
BATCHES = (100, 256, 300)


def go_env(cache):
    env = dict(os.environ)
    env.update(GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="", GOPROXY="off", GOCACHE=cache)
    return env


@pytest.fixture(scope="module")
def tlogcheck(tmp_path_factory):
    """Tests/interop/tlogcheck built from source, offline. A missing Go toolchain fails (.ci/setup
    installs golang-go and golang-golang-x-mod-dev)."""
    out = tmp_path_factory.mktemp("tlogcheck")
    assert os.path.exists(GO), "needs %s (apt-get install golang-go)" % GO
    assert os.path.exists(os.path.join(GOPATH, "src/golang.org/x/mod/sumdb/tlog/tlog.go")), \
        "needs golang.org/x/mod in %s (apt-get install golang-golang-x-mod-dev)" % GOPATH
    binary = str(out / "tlogcheck")
    r = subprocess.run([GO, "build", "-o", binary, "."], cwd=TLOGCHECK_SRC, env=go_env(str(out / "cache")),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    return binary


def run_tlogcheck(binary, *args):
    return subprocess.run([binary, "served"] + [str(a) for a in args], capture_output=True, text=True, timeout=300)


def http_get(url):
    """(status, body bytes) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def served(module_bridge_factory, corpus_factory, tmp_path_factory):
    """A node with 300 entries, its signed checkpoints of sizes 100, 256 and 300 (kept as files),
    and the entries as its entry bundles serve them."""
    folder, manifest = corpus_factory(patients=3, studies=2, series=5, instances=10, seed=61)
    paths = sorted(os.path.join(folder, f["path"]) for f in manifest["files"])
    assert len(paths) == BATCHES[-1]
    b = module_bridge_factory()
    notes, files, done = {}, {}, 0
    keep = tmp_path_factory.mktemp("checkpoints")
    for size in BATCHES:
        r = harness.storescu(b.port, b.ae_title, paths[done:size])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert b.wait_for_checkpoint(size, timeout=60) == size
        notes[size] = b.cli("ledger", "checkpoint").stdout
        files[size] = keep / ("checkpoint-%d" % size)
        files[size].write_text(notes[size])
        done = size
    url = "http://127.0.0.1:%d" % b.http_port
    key = b.ledger_key()
    entries = []
    for p in entry_bundle_paths(BATCHES[-1]):
        status, body = http_get(url + "/" + p)
        assert status == 200, (p, status, body[:200])
        entries += parse_entry_bundle(body)
    return dict(bridge=b, url=url, key=key, notes=notes, files=files, entries=entries,
                leaves=[leaf_hash(e) for e in entries])


# == Go's sumdb/note and sumdb/tlog on the served log ================================================

def test_go_verifies_the_served_checkpoint_tiles_entries_and_proofs(served, tlogcheck):
    s = served
    r = run_tlogcheck(tlogcheck, "-key", s["key"], "-proofs", "-previous", s["files"][100], "-previous", s["files"][256],
                      s["url"])
    assert r.returncode == 0, r.stderr + r.stdout
    name = s["key"].split("+")[0]
    key_id = s["key"].split("+")[1]
    assert r.stdout == ("ok: %s size 300, signed by %s+%s, 0 cosignatures [], 3 tiles, 300 entries in 2 bundles, "
                        "2 consistency proofs, proofs served checked: true\n" % (name, name, key_id))


def test_go_refuses_another_key_and_a_missing_cosignature(served, tlogcheck, bridge_factory):
    s = served
    other = bridge_factory(start=False).ledger_key()
    r = run_tlogcheck(tlogcheck, "-key", other, s["url"])
    assert r.returncode == 1
    assert r.stderr.startswith("FAIL: /checkpoint: note.Open: "), r.stderr
    # A witness that never cosigned this checkpoint (the other node's key as a witness key).
    r = run_tlogcheck(tlogcheck, "-key", s["key"], "-witness", other, s["url"])
    assert r.returncode == 1
    assert r.stderr.startswith("FAIL: /checkpoint: no cosignature by witness %s+" % other.split("+")[0]), r.stderr


# == the Python verifier on the served log ===========================================================

def test_entry_bundles_are_the_ledger_entries(served):
    s = served
    shown = s["bridge"].ledger_entries()
    assert [base64.b64decode(e["entry"]) for e in shown] == s["entries"]
    assert [base64.b64decode(e["leafHash"]) for e in shown] == s["leaves"]
    # Every instance stored is in an entry.
    sops = {e["fields"]["sop-instance-uid"] for e in shown}
    assert sops == {row["sop_instance_uid"] for row in s["bridge"].instances()}
    assert len(sops) == 300


def test_every_tile_recomputed_from_the_leaves(served):
    """Every hash tile (full and partial) of the current tree, and the partial ones of the earlier
    signed checkpoints, is byte for byte the one recomputed from the entries' leaf hashes; the
    roots are MTH of the leaves."""
    s = served
    for size in BATCHES:
        origin, signed_size, root = open_note(s["notes"][size], s["key"])
        assert signed_size == size
        assert mth(s["leaves"][:size]) == root
    want = expected_tiles(s["leaves"])
    assert sorted(want) == ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"]
    for size in (100, 256):  # what a client holding the older checkpoint needs
        want.update(expected_tiles(s["leaves"][:size]))
    assert sorted(want) == ["tile/0/000", "tile/0/000.p/100", "tile/0/001.p/44", "tile/1/000.p/1"]
    for path, data in sorted(want.items()):
        status, body = http_get(s["url"] + "/" + path)
        assert status == 200, (path, status, body[:200])
        assert body == data, path
    # The entry bundles of the earlier checkpoints' trees hold the same entries.
    for size in (100, 256):
        got = []
        for path in entry_bundle_paths(size):
            status, body = http_get(s["url"] + "/" + path)
            assert status == 200, (path, status, body[:200])
            got += parse_entry_bundle(body)
        assert got == s["entries"][:size]
    # A width no checkpoint was signed at is not served, nor a tile beyond the tree.
    for path in ("tile/0/000.p/99", "tile/0/001", "tile/0/002", "tile/1/000", "tile/2/000.p/1"):
        status, body = http_get(s["url"] + "/" + path)
        assert 400 <= status < 500, (path, status)


def test_http_inclusion_proof_of_every_entry_verifies_independently(served):
    s = served
    _, size, root = open_note(s["notes"][300], s["key"])
    status, note = http_get(s["url"] + "/checkpoint")
    assert status == 200 and note.decode() == s["notes"][300]
    for i, leaf in enumerate(s["leaves"]):
        status, body = http_get("%s/proof/inclusion?index=%d" % (s["url"], i))
        assert status == 200, (i, body)
        p = json.loads(body)
        assert (p["index"], p["treeSize"], base64.b64decode(p["leafHash"])) == (i, 300, leaf)
        assert p["checkpoint"] == s["notes"][300]
        proof = [base64.b64decode(x) for x in p["proof"]]
        assert verify_inclusion(i, 300, leaf, proof, root), i
        if proof:
            bad = list(proof)
            bad[-1] = bad[-1][:31] + bytes([bad[-1][31] ^ 0x80])
            assert not verify_inclusion(i, 300, leaf, bad, root)
    # By SOP Instance UID and by SHA-256, and against the earlier checkpoint of size 100.
    _, _, root100 = open_note(s["notes"][100], s["key"])
    rows = s["bridge"].instances()
    for row in rows[:5]:
        for q in ("sop=" + row["sop_instance_uid"], "sha256=" + row["sha256"]):
            status, body = http_get("%s/proof/inclusion?%s" % (s["url"], q))
            assert status == 200, (q, body)
            p = json.loads(body)
            i = p["index"]
            assert row["sop_instance_uid"].encode() in s["entries"][i] and row["sha256"].encode() in s["entries"][i]
            assert verify_inclusion(i, 300, s["leaves"][i], [base64.b64decode(x) for x in p["proof"]], root)
    for i in (0, 1, 63, 99):
        status, body = http_get("%s/proof/inclusion?index=%d&size=100" % (s["url"], i))
        assert status == 200, body
        p = json.loads(body)
        assert p["treeSize"] == 100 and p["checkpoint"] == s["notes"][100]
        assert root_from_inclusion(i, 100, s["leaves"][i], [base64.b64decode(x) for x in p["proof"]]) == root100


def consistency_cases():
    return [(m, n) for n in BATCHES for m in (1, 2, 3, 99, 100, 101, 128, 255, 256, 257, 299, 300) if m <= n]


def test_http_consistency_proofs_verify_independently(served):
    s = served
    roots = {n: open_note(s["notes"][n], s["key"])[2] for n in BATCHES}
    for m, n in consistency_cases():
        status, body = http_get("%s/proof/consistency?from=%d&to=%d" % (s["url"], m, n))
        assert status == 200, (m, n, body)
        p = json.loads(body)
        assert (p["size1"], p["size2"]) == (m, n)
        assert p["checkpoint2"] == s["notes"][n]
        if m in BATCHES:
            assert p["checkpoint1"] == s["notes"][m]
        proof = [base64.b64decode(x) for x in p["proof"]]
        r1 = mth(s["leaves"][:m])
        assert verify_consistency(m, n, r1, roots[n], proof), (m, n)
        if proof:
            bad = [proof[0][:5] + bytes([proof[0][5] ^ 1]) + proof[0][6:]] + proof[1:]
            assert not verify_consistency(m, n, r1, roots[n], bad), (m, n)
            assert not verify_consistency(m, n, r1, roots[n], proof[:-1]), (m, n)
        else:
            assert m == n


def test_cli_prove_consistency_verifies_and_wrong_sizes_error_clearly(served):
    s = served
    b = s["bridge"]
    roots = {n: open_note(s["notes"][n], s["key"])[2] for n in BATCHES}
    for m, n in ((1, 300), (100, 300), (256, 300), (100, 256), (101, 256), (300, 300)):
        p = json.loads(b.cli("ledger", "prove", "--consistency", m, n, "--json").stdout)
        assert (p["size1"], p["size2"], p["checkpoint2"]) == (m, n, s["notes"][n])
        assert verify_consistency(m, n, mth(s["leaves"][:m]), roots[n], [base64.b64decode(x) for x in p["proof"]])
        status, body = http_get("%s/proof/consistency?from=%d&to=%d" % (s["url"], m, n))
        assert status == 200 and json.loads(body) == p
    # Sizes the node never signed, or in the wrong order, or not two of them: a non-zero exit
    # and an error saying which.
    for args, want in (
        ((100, 301), "the node signed no checkpoint of size 301; sizes signed: "),
        ((100, 299), "the node signed no checkpoint of size 299; sizes signed: "),
        ((300, 100), "the old size must not exceed the new size"),
        ((0, 300), "tree sizes 0 and 300: consistency with the empty tree is meaningless"),
        ((100,), "--consistency takes two sizes: OLD NEW"),
    ):
        r = b.cli("ledger", "prove", "--consistency", *args, "--json", check=False)
        assert r.returncode != 0, (args, r.stdout)
        assert want in r.stderr, (args, r.stderr)
        assert r.stdout == "", (args, r.stdout)


def test_proof_endpoints_refuse_malformed_and_oversized_parameters(served):
    s = served
    huge = "9" * 5000
    cases = [
        # inclusion
        ("/proof/inclusion", 400, "give index, sop or sha256"),
        ("/proof/inclusion?index=abc", 400, "give index, sop or sha256"),
        ("/proof/inclusion?index=-1", 400, "give index, sop or sha256"),
        ("/proof/inclusion?index=18446744073709551616", 400, "give index, sop or sha256"),
        ("/proof/inclusion?index=" + huge, 400, "give index, sop or sha256"),
        ("/proof/inclusion?index=300", 404, "entry 300 is not yet covered by a signed checkpoint (size 300)"),
        ("/proof/inclusion?index=18446744073709551615", 404, "is not yet covered by a signed checkpoint"),
        ("/proof/inclusion?index=5&size=7", 404, "the node signed no checkpoint of size 7"),
        ("/proof/inclusion?index=150&size=100", 404, "entry 150 is not covered by the checkpoint of size 100"),
        ("/proof/inclusion?sop=1.2.3.4", 404, "no anchored instance with SOP Instance UID 1.2.3.4"),
        ("/proof/inclusion?sop=" + huge, 404, "no anchored instance with SOP Instance UID"),
        ("/proof/inclusion?sha256=00", 404, "no anchored instance with SHA-256 00"),
        # consistency
        ("/proof/consistency", 400, "give from and to"),
        ("/proof/consistency?from=1", 400, "give from and to"),
        ("/proof/consistency?from=x&to=300", 400, "give from and to"),
        ("/proof/consistency?from=1&to=" + huge, 400, "give from and to"),
        ("/proof/consistency?from=-1&to=300", 400, "give from and to"),
        ("/proof/consistency?from=300&to=100", 404, "the old size must not exceed the new size"),
        ("/proof/consistency?from=1&to=301", 404, "the node signed no checkpoint of size 301"),
        ("/proof/consistency?from=1&to=18446744073709551615", 404, "the node signed no checkpoint of size"),
        ("/proof/consistency?from=0&to=300", 404, "tree sizes 0 and 300: consistency with the empty tree is meaningless"),
    ]
    for path, status, text in cases:
        got, body = http_get(s["url"] + path)
        assert (got, path[:80]) == (status, path[:80]), body[:300]
        assert text in body.decode(), (path[:80], body[:300])
    # A request line far beyond any sane size is refused with a 4xx too, not a dropped connection.
    got, body = http_get(s["url"] + "/proof/inclusion?sop=" + "1" * 200000)
    assert 400 <= got < 500, (got, body[:300])
    # The node still serves afterwards.
    got, body = http_get(s["url"] + "/checkpoint")
    assert got == 200 and body.decode() == s["notes"][300]


# == a witness's cosignature, served by the running log node =========================================

def test_cosignature_served_by_a_running_node_verifies_independently(node_factory, corpus_factory, tlogcheck):
    """Node B witnesses node A (peer exchange, witnessing every second); A's /checkpoint on its
    plain ledger port then carries B's C2SP cosignature/v1, which the spec-written Python code
    (test_ledger.cosignature_timestamp) and Go's note.Open with a cosignature verifier written from
    the spec accept, under B's published key; A's own signature verifies too."""
    import time
    from test_ledger import cosignature_timestamp

    a = node_factory("site-a")
    b = node_factory("site-b")
    a.add_peer(b, share="none")
    b.add_peer(a)
    a.start("--witness-interval", 1)
    folder, manifest = corpus_factory(patients=1, studies=1, series=1, instances=3, seed=62)
    paths = [os.path.join(folder, f["path"]) for f in manifest["files"]]
    r = harness.storescu(a.port, a.ae_title, paths)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert a.wait_for_checkpoint(3, timeout=60) == 3
    started = int(time.time())
    b.start("--witness-interval", 1)

    url = "http://127.0.0.1:%d" % a.http_port
    em_dash_b = "\u2014 " + b.node_name + " "
    deadline = time.monotonic() + 60
    while True:
        status, body = http_get(url + "/checkpoint")
        note = body.decode()
        if status == 200 and any(line.startswith(em_dash_b) for line in note.splitlines()):
            break
        assert time.monotonic() < deadline, "no cosignature by %s on A's checkpoint after 60 s:\n%s" % (b.node_name, note)
        time.sleep(0.2)

    a_key, b_key = a.ledger_key(), b.ledger_key()
    origin, size, root = open_note(note, a_key)
    assert (origin, size) == (a.node_name, 3)
    assert note.startswith(a.cli("ledger", "checkpoint").stdout.split("\n\n")[0] + "\n\n")
    t = cosignature_timestamp(note, b_key)
    assert started - 5 <= t <= int(time.time()) + 5, (started, t)
    # The line's key ID is the cosignature one (0x04), not B's note key ID (0x01).
    line = [l for l in note.splitlines() if l.startswith(em_dash_b)]
    assert len(line) == 1
    raw = base64.b64decode(line[0].split(" ")[2])
    assert raw[:4].hex() != b_key.split("+")[1]
    # A flipped bit anywhere in the cosignature is refused.
    for i in (4, 11, 12, 75):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        tampered = note.replace(line[0], line[0].split(" ")[0] + " " + b.node_name + " " + base64.b64encode(bytes(bad)).decode())
        with pytest.raises(Exception):
            cosignature_timestamp(tampered, b_key)

    # Go, on the running node: checkpoint, cosignature, tiles, entries and proofs.
    r = run_tlogcheck(tlogcheck, "-key", a_key, "-witness", b_key, "-proofs", url)
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.stdout.startswith("ok: %s size 3, signed by %s+%s, 1 cosignatures [%s at " % (
        a.node_name, a.node_name, a_key.split("+")[1], b.node_name)), r.stdout
    assert ", 1 tiles, 3 entries in 1 bundles, 0 consistency proofs, proofs served checked: true\n" in r.stdout, r.stdout
