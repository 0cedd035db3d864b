"""The ledger seen from outside: every stored instance anchored exactly once, proofs and signed
checkpoints that an independent verifier (this file: RFC 9162 and signed-note written out in
Python, Ed25519 from the `cryptography` package) accepts, tampering detected and named, and no
patient data in any entry. Drives the real binary."""

import base64
import hashlib
import json
import os
import sqlite3
import struct
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import harness

pytestmark = [pytest.mark.bridge, pytest.mark.netns]


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(l: bytes, r: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + l + r).digest()


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list) -> bytes:
    """RFC 9162 2.1.3.2."""
    assert index < size
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list, root: bytes) -> bool:
    """RFC 9162 2.1.3.2, as a yes/no answer (any malformed input is a no)."""
    if not 0 <= index < size or len(leaf) != 32 or len(root) != 32 or any(len(p) != 32 for p in proof):
        return False
    try:
        return root_from_inclusion(index, size, leaf, proof) == root
    except AssertionError:
        return False


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list) -> bool:
    """RFC 9162 2.1.4.2, written from the RFC: True when `proof` shows the tree of size2 with
    root2 extends the tree of size1 with root1. A proof from the empty tree is meaningless
    (refused); between equal sizes the proof is empty and the roots equal."""
    if size1 <= 0 or size1 > size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    # 1. an empty path fails
    if not proof or any(len(p) != 32 for p in proof) or len(root1) != 32:
        return False
    path = list(proof)
    # 2. first an exact power of 2: prepend first_hash
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # 3.
    fn, sn = size1 - 1, size2 - 1
    # 4. right-shift both while LSB(fn) is set
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return fr == root1 and sr == root2 and sn == 0


def mth(leaves: list) -> bytes:
    """RFC 6962 2.1 MTH over leaf hashes, recursively (split at the largest power of 2 < n)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def tile_index_path(n: int) -> str:
    """C2SP tlog-tiles index: three-digit groups, all but the last prefixed with "x"."""
    groups = []
    while True:
        groups.insert(0, "%03d" % (n % 1000))
        n //= 1000
        if n == 0:
            break
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def expected_tiles(leaves: list) -> dict:
    """Every hash tile (height 8) of the tree over `leaves` (leaf hashes), recomputed from the
    leaves: {"tile/L/N[.p/W]": bytes}. A level-L tile holds the hashes of the complete subtrees of
    2^(8L) leaves, 256 to a tile; the last one is partial (.p/W) unless it is full."""
    tiles = {}
    level_hashes = list(leaves)  # complete nodes at tree height 8L
    level = 0
    while level_hashes:
        for start in range(0, len(level_hashes), 256):
            chunk = level_hashes[start:start + 256]
            path = "tile/%d/%s" % (level, tile_index_path(start // 256))
            if len(chunk) < 256:
                path += ".p/%d" % len(chunk)
            tiles[path] = b"".join(chunk)
        # the complete nodes 8 levels up
        for _ in range(8):
            level_hashes = [node_hash(level_hashes[i], level_hashes[i + 1]) for i in range(0, len(level_hashes) - 1, 2)]
        level += 1
    return tiles


def entry_bundle_paths(size: int) -> list:
    """The C2SP entry bundle paths of a tree of `size` entries."""
    paths = []
    for n in range((size + 255) // 256):
        w = min(256, size - n * 256)
        paths.append("tile/entries/" + tile_index_path(n) + ("" if w == 256 else ".p/%d" % w))
    return paths


def parse_entry_bundle(data: bytes) -> list:
    """An entry bundle: each entry as a big-endian uint16 length followed by its bytes."""
    out, i = [], 0
    while i < len(data):
        assert i + 2 <= len(data), "truncated length in an entry bundle"
        (n,) = struct.unpack(">H", data[i:i + 2])
        assert i + 2 + n <= len(data), "truncated entry in an entry bundle"
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


def open_note(note: str, verifier_key: str):
    """C2SP signed-note: verify the signature by `verifier_key`; return the checkpoint lines."""
    name, key_id_hex, key_b64 = verifier_key.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 0x01
    text, sigs = note.split("\n\n", 1)
    text += "\n"
    for line in sigs.strip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        sig_name, sig_b64 = line[2:].split(" ")
        raw = base64.b64decode(sig_b64)
        if sig_name == name and raw[:4] == bytes.fromhex(key_id_hex):
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], text.encode())  # raises if wrong
            # key ID = SHA-256(name || 0x0A || 0x01 || key)[:4]
            assert hashlib.sha256(name.encode() + b"\n" + key).digest()[:4] == raw[:4]
            origin, size, root = text.rstrip("\n").split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the node's key")


def cosignature_timestamp(note: str, witness_key: str) -> int:
    """C2SP tlog-cosignature, cosignature/v1 (Ed25519), written from the spec: find the line of
    the witness `witness_key` (a vkey of type 0x04, or a plain 0x01 Ed25519 note key, whose
    cosignature key ID is the 0x04 one), verify its Ed25519 signature over
    "cosignature/v1\ntime <t>\n" + the note text, and return t. Raises if missing or wrong."""
    name, _, key_b64 = witness_key.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] in (0x01, 0x04) and len(key) == 33, witness_key
    pub = key[1:]
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + pub).digest()[:4]
    text, sigs = note.split("\n\n", 1)
    text += "\n"
    found = []
    for line in sigs.strip("\n").split("\n"):
        assert line.startswith("\u2014 "), line
        sig_name, sig_b64 = line[2:].split(" ")
        raw = base64.b64decode(sig_b64)
        if sig_name == name and raw[:4] == key_id:
            assert len(raw) == 4 + 8 + 64, "a cosignature/v1 signature is 72 bytes"
            (t,) = struct.unpack(">Q", raw[4:12])
            assert t <= 2**63 - 1
            msg = b"cosignature/v1\ntime " + str(t).encode() + b"\n" + text.encode()
            Ed25519PublicKey.from_public_bytes(pub).verify(raw[12:], msg)  # raises if wrong
            found.append(t)
    assert len(found) == 1, "want exactly one cosignature by %s, found %d" % (name, len(found))
    return found[0]


@pytest.fixture(scope="module")
def anchored(module_bridge_factory, corpus_factory):
    folder, manifest = corpus_factory(patients=3, studies=2, series=2, instances=2, seed=21)
    b = module_bridge_factory()
    paths = [os.path.join(folder, f["path"]) for f in manifest["files"]]
    r = harness.storescu(b.port, b.ae_title, paths)
    assert r.returncode == 0, r.stdout + r.stderr
    # A checkpoint covering every entry is signed within about a second; waiting longer than the
    # timeout fails here (TimeoutError), and a checkpoint of another size fails the assert.
    assert b.wait_for_checkpoint(len(paths), timeout=30) == len(paths)
    return b, manifest


def test_every_instance_anchored_once_with_its_hash(anchored):
    b, manifest = anchored
    entries = json.loads(b.cli("ledger", "show", "--json", "--count", "100000").stdout)
    assert len(entries) == len(manifest["files"])
    by_sop = {e["fields"]["sop-instance-uid"]: e for e in entries}
    for row in b.instances():
        e = by_sop[row["sop_instance_uid"]]
        assert e["type"] == "instance-anchored"
        assert e["fields"]["sha256"] == row["sha256"]
        assert int(e["fields"]["size"]) == row["size"]
        assert e["fields"]["transfer-syntax-uid"] == row["transfer_syntax_uid"]
        assert base64.b64decode(e["leafHash"]) == leaf_hash(base64.b64decode(e["entry"]))


def test_no_patient_data_in_any_entry(anchored):
    b, manifest = anchored
    with sqlite3.connect(os.path.join(b.home, "index.sqlite")) as db:
        blobs = [r[0] for r in db.execute("SELECT entry FROM ledger_entries")]
    names = set()
    for f in manifest["files"]:
        names.add(f["PatientID"].encode())
        for part in f["PatientName"].replace("=", "^").split("^"):
            if len(part) >= 3:
                names.add(part.encode("utf-8"))
    for blob in blobs:
        for n in names:
            assert n not in blob, f"{n!r} found in a ledger entry"


def test_inclusion_proofs_verify_independently(anchored):
    b, _ = anchored
    key = b.cli("ledger", "key").stdout.strip()
    for row in b.instances()[:6]:
        p = json.loads(b.cli("ledger", "prove", "--sop", row["sop_instance_uid"], "--json").stdout)
        origin, size, root = open_note(p["checkpoint"], key)
        assert size == p["treeSize"]
        got = root_from_inclusion(p["index"], size, base64.b64decode(p["leafHash"]), [base64.b64decode(x) for x in p["proof"]])
        assert got == root
        # A flipped bit in the proof does not verify.
        bad = [base64.b64decode(x) for x in p["proof"]]
        if bad:
            bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
            assert root_from_inclusion(p["index"], size, base64.b64decode(p["leafHash"]), bad) != root


def test_checkpoint_served_over_http_is_the_signed_one(anchored):
    b, _ = anchored
    note = b.cli("ledger", "checkpoint").stdout
    served = urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/checkpoint", timeout=10).read().decode()
    assert served == note
    key = urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/key", timeout=10).read().decode().strip()
    assert key == b.cli("ledger", "key").stdout.strip()
    open_note(served, key)


def test_ledger_verify_passes_on_an_untouched_node(anchored):
    b, _ = anchored
    assert "ledger OK" in b.cli("ledger", "verify").stdout
    r = b.cli("verify", "--json")
    assert json.loads(r.stdout)["problems"] == []


def test_altered_and_deleted_files_are_named(bridge):
    paths = [os.path.join(harness.TESTDATA, n) for n in ("ct_explicit_le.dcm", "mr_latin1.dcm", "us_rle.dcm")]
    statuses = harness.pynetdicom_store(bridge.port, bridge.ae_title, paths)
    assert set(statuses.values()) == {0}
    rows = bridge.instances()
    altered, deleted = rows[0], rows[1]
    with open(os.path.join(bridge.home, altered["path"]), "r+b") as f:
        f.seek(400)
        byte = f.read(1)
        f.seek(400)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.unlink(os.path.join(bridge.home, deleted["path"]))
    r = bridge.cli("verify", "--json", check=False)
    assert r.returncode != 0
    problems = {p["sopInstanceUID"]: p["problem"] for p in json.loads(r.stdout)["problems"]}
    assert set(problems) == {altered["sop_instance_uid"], deleted["sop_instance_uid"]}
    assert problems[altered["sop_instance_uid"]].startswith("altered")
    assert problems[deleted["sop_instance_uid"]].startswith("missing")


def test_edited_ledger_entry_is_detected(bridge):
    names = ["ct_explicit_le.dcm", "mr_latin1.dcm", "us_rle.dcm"]
    paths = [os.path.join(harness.TESTDATA, n) for n in names]
    assert set(harness.pynetdicom_store(bridge.port, bridge.ae_title, paths).values()) == {0}
    bridge.stop()
    assert bridge.cli("ledger", "verify").stdout.startswith("ledger OK: 3 entries, ")
    with sqlite3.connect(os.path.join(bridge.home, "index.sqlite")) as db:
        # The append-only triggers refuse edits; an attacker with the file would drop them first.
        triggers = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        assert triggers, "the ledger tables should be protected by triggers"
        try:
            db.execute("UPDATE ledger_entries SET entry = entry || 'x' WHERE leaf_index = 1")
            raise AssertionError("the append-only trigger let an entry be edited")
        except sqlite3.DatabaseError:
            pass
        for t in triggers:
            db.execute(f"DROP TRIGGER {t}")
        db.execute("UPDATE ledger_entries SET entry = replace(entry, 'size ', 'size 9') WHERE leaf_index = 1")
        assert db.total_changes == 1
    r = bridge.cli("ledger", "verify", check=False)
    assert r.returncode != 0
    assert r.stdout == ""
    assert "ledger verification failed: ledger is corrupt: leaf hash 1 is wrong\n" in r.stderr, r.stderr
    r = bridge.cli("ledger", "verify", "--json", check=False)
    assert r.returncode != 0
    assert json.loads(r.stdout) == {"ok": False, "error": "ledger is corrupt: leaf hash 1 is wrong"}


def test_whole_log_verifies_from_tiles_alone(anchored, bridge_factory):
    b, manifest = anchored
    key = b.cli("ledger", "key").stdout.strip()
    url = f"http://127.0.0.1:{b.http_port}"
    r = b.cli("ledger", "verify", "--url", url, "--verifier-key", key, "--json")
    report = json.loads(r.stdout)
    assert report["ok"] and report["treeSize"] == len(manifest["files"])
    # Level-0 tile bytes are the leaf hashes of the entries `ledger show` gives.
    size = report["treeSize"]
    tile = urllib.request.urlopen(f"{url}/tile/0/000" + (f".p/{size}" if size < 256 else ""), timeout=10).read()
    entries = json.loads(b.cli("ledger", "show", "--json", "--count", "256").stdout)
    assert tile == b"".join(base64.b64decode(e["leafHash"]) for e in entries[:256])
    # Another node's key does not verify this log.
    other = bridge_factory(start=False)
    other_key = other.cli("ledger", "key").stdout.strip()
    r = b.cli("ledger", "verify", "--url", url, "--verifier-key", other_key, check=False)
    assert r.returncode != 0 and "no signature by a known key" in r.stderr


def test_remote_log_is_consistent_with_a_checkpoint_seen_before(bridge, tmp_path):
    import time

    def checkpoint_of_size(n):
        deadline = time.time() + 15
        while time.time() < deadline:
            note = bridge.cli("ledger", "checkpoint", check=False).stdout
            if note and int(note.split("\n")[1]) == n:
                return note
            time.sleep(0.2)
        raise AssertionError(f"no checkpoint of size {n}")

    names = ["ct_explicit_le.dcm", "mr_latin1.dcm", "us_rle.dcm", "sc_utf8.dcm"]
    paths = [os.path.join(harness.TESTDATA, n) for n in names]
    assert set(harness.pynetdicom_store(bridge.port, bridge.ae_title, paths[:2]).values()) == {0}
    old = tmp_path / "old.checkpoint"
    old.write_text(checkpoint_of_size(2))
    assert set(harness.pynetdicom_store(bridge.port, bridge.ae_title, paths[2:]).values()) == {0}
    checkpoint_of_size(4)
    key = bridge.cli("ledger", "key").stdout.strip()
    url = f"http://127.0.0.1:{bridge.http_port}"
    r = bridge.cli("ledger", "verify", "--url", url, "--verifier-key", key, "--previous", old)
    assert "consistent with the earlier checkpoint of size 2" in r.stdout
    # A "previous" checkpoint this node never signed is refused.
    forged = tmp_path / "forged.checkpoint"
    forged.write_text(old.read_text().replace("\n2\n", "\n3\n", 1))
    r = bridge.cli("ledger", "verify", "--url", url, "--verifier-key", key, "--previous", forged, check=False)
    assert r.returncode != 0
