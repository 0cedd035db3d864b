"""The independent Python ledger verifier (test_ledger.py: RFC 9162 proofs, tiles, signed notes,
cosignatures) checked against published and independently computed known answers, so that the
tests which use it on the running binary rest on something: the 196 language-neutral proof vectors
of transparency-dev/merkle (testdata/merkle, the same files as /work/shared/vectors/merkle), and
the C2SP cosignature vectors of testdata/ledger (regenerated here from their script). No bridge."""

import base64
import glob
import hashlib
import importlib.util
import json
import os

import pytest

import harness
from test_ledger import (cosignature_timestamp, expected_tiles, leaf_hash, mth, node_hash, open_note,
                         verify_consistency, verify_inclusion)

MERKLE = os.path.join(harness.TESTDATA, "merkle")
LEDGER = os.path.join(harness.TESTDATA, "ledger")


def vectors(kind):
    files = sorted(glob.glob(os.path.join(MERKLE, kind, "**", "*.json"), recursive=True))
    return [pytest.param(f, id=os.path.relpath(f, MERKLE)) for f in files]


def b64list(v):
    return [base64.b64decode(x) for x in (v or [])]


def test_the_vector_folders_are_complete():
    assert (len(vectors("inclusion")), len(vectors("consistency"))) == (98, 98)


@pytest.mark.parametrize("path", vectors("inclusion"))
def test_inclusion_vectors(path):
    v = json.load(open(path))
    got = verify_inclusion(v["leafIdx"], v["treeSize"], base64.b64decode(v["leafHash"]), b64list(v["proof"]),
                           base64.b64decode(v["root"]))
    assert got == (not v["wantErr"]), v["desc"]


@pytest.mark.parametrize("path", vectors("consistency"))
def test_consistency_vectors(path):
    v = json.load(open(path))
    got = verify_consistency(v["size1"], v["size2"], base64.b64decode(v["root1"]), base64.b64decode(v["root2"]),
                             b64list(v["proof"]))
    assert got == (not v["wantErr"]), v["desc"]


def test_consistency_of_every_pair_of_a_small_tree():
    """Proofs made by the RFC 6962 2.1.2 PROOF definition (recursive, written here) verify for
    every 0 < m <= n <= 20, and a flipped bit or a wrong root does not."""
    leaves = [leaf_hash(b"%d" % i) for i in range(20)]

    def subproof(m, d, b):
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return subproof(m, d[:k], b) + [mth(d[k:])]
        return subproof(m - k, d[k:], False) + [mth(d[:k])]

    for n in range(1, 21):
        for m in range(1, n + 1):
            proof = subproof(m, leaves[:n], True) if m < n else []
            r1, r2 = mth(leaves[:m]), mth(leaves[:n])
            assert verify_consistency(m, n, r1, r2, proof), (m, n)
            if proof:
                bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:]
                assert not verify_consistency(m, n, r1, r2, bad), (m, n)
                assert not verify_consistency(m, n, r2, r1, proof) or r1 == r2, (m, n)
            assert not verify_consistency(m, n, r1, node_hash(r2, r2), proof), (m, n)


def test_tiles_recomputed_from_leaves_agree_with_mth():
    leaves = [leaf_hash(b"entry %d" % i) for i in range(600)]
    tiles = expected_tiles(leaves)
    assert sorted(tiles) == ["tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2"]
    assert tiles["tile/0/001"] == b"".join(leaves[256:512])
    assert tiles["tile/1/000.p/2"] == mth(leaves[:256]) + mth(leaves[256:512])
    many = expected_tiles([leaf_hash(b"%d" % i) for i in range(256 * 256 + 1)])
    assert "tile/2/000.p/1" in many and "tile/1/000" in many and "tile/0/x001/000" not in many
    assert "tile/0/255" in many and "tile/0/256.p/1" in many


# == C2SP cosignature vectors ======================================================================

def load_generator():
    spec = importlib.util.spec_from_file_location("make_cosignature_vectors",
                                                  os.path.join(LEDGER, "make_cosignature_vectors.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cosignature_vectors_are_what_their_script_computes():
    with open(os.path.join(LEDGER, "cosignature-vectors.json"), encoding="utf-8") as f:
        stored = json.load(f)
    assert stored == load_generator().vectors()
    assert len(stored["cases"]) == 3


def test_cosignature_vectors_verify_with_the_test_verifier():
    v = load_generator().vectors()
    for c in v["cases"]:
        assert open_note(c["cosignedNote"], v["log"]["verifierKey"])[0] == "example.com/behind-the-sofa"
        assert cosignature_timestamp(c["cosignedNote"], v["witness"]["verifierKey"]) == c["timestamp"]
        # a plain 0x01 key string of the same key pair names the same witness
        plain = v["witness"]["verifierKey"].split("+", 2)
        raw = base64.b64decode(plain[2])
        assert cosignature_timestamp(c["cosignedNote"], "%s+00000000+%s" % (plain[0], base64.b64encode(b"\x01" + raw[1:]).decode())) == c["timestamp"]
        # one flipped bit in the timestamped signature, or in the checkpoint text, is refused
        sig = bytes.fromhex(c["timestampedSignature"])
        kid = bytes.fromhex(v["witness"]["keyID"])
        for i in (0, 7, 8, 40, 71):
            bad = bytearray(sig)
            bad[i] ^= 1
            line = "\u2014 %s %s\n" % (v["witness"]["name"], base64.b64encode(kid + bytes(bad)).decode())
            with pytest.raises(Exception):
                cosignature_timestamp(c["signedNote"] + line, v["witness"]["verifierKey"])
        with pytest.raises(Exception):
            cosignature_timestamp(c["cosignedNote"].replace("behind", "Behind", 1), v["witness"]["verifierKey"])
    # The spec's example message, byte for byte.
    assert v["cases"][0]["message"] == ("cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
                                        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    # RFC 8032 7.1 TEST 1: the witness seed's public key.
    assert v["witness"]["publicKey"] == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert hashlib.sha256(v["witness"]["name"].encode() + b"\n\x04" + bytes.fromhex(v["witness"]["publicKey"])).digest()[:4].hex() == v["witness"]["keyID"]
