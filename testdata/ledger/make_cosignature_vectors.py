#!/usr/bin/env python3
"""Known-answer vectors for C2SP signed-note (Ed25519, type 0x01) and tlog-cosignature
(cosignature/v1, Ed25519, type 0x04), computed from the specifications' text alone:

  https://c2sp.org/signed-note        key ID = SHA-256(name || 0x0A || 0x01 || pubkey)[:4],
                                      signature = Ed25519 over the note text
  https://c2sp.org/tlog-cosignature   key ID = SHA-256(name || 0x0A || 0x04 || pubkey)[:4],
                                      signature = u64 big-endian timestamp || Ed25519 signature over
                                      "cosignature/v1\\n" "time <decimal>\\n" <checkpoint note text>

Ed25519 is Python's `cryptography` package (OpenSSL); nothing here comes from dicom-bridge.
Ed25519 (RFC 8032) is deterministic, so the same seeds and messages give the same bytes.

    python3 testdata/ledger/make_cosignature_vectors.py > testdata/ledger/cosignature-vectors.json
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

EM_DASH = "\u2014"

# Fixed seeds: the secret key of RFC 8032 section 7.1 TEST 1 for the witness (so its public key,
# d75a9801..., is the RFC's), and SHA-256("dicom-bridge ledger vector log key") for the log.
WITNESS_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
LOG_SEED = hashlib.sha256(b"dicom-bridge ledger vector log key").digest()
WITNESS_NAME = "witness.example/w1"
LOG_NAME = "example.com/behind-the-sofa"

# Checkpoint texts (C2SP tlog-checkpoint): the spec's example, one with an extension line, and the
# empty tree of another size, each cosigned at the given POSIX time.
CASES = [
    ("spec example checkpoint, the spec's example time",
     LOG_NAME + "\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", 1679315147),
    ("extension line (part of the signed message), timestamp 0",
     LOG_NAME + "\n1\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\nextension line\n", 0),
    ("the largest timestamp allowed, 2^63 - 1",
     LOG_NAME + "\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", 2**63 - 1),
]


def public_key(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name, type_byte, pub):
    return hashlib.sha256(name.encode() + b"\n" + bytes([type_byte]) + pub).digest()[:4]


def b64(b):
    return base64.b64encode(b).decode()


def sign_note(text, name, seed):
    """A signed note: text, blank line, one Ed25519 (0x01) signature line."""
    kid = key_id(name, 0x01, public_key(seed))
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(text.encode())
    return text + "\n" + EM_DASH + " " + name + " " + b64(kid + sig) + "\n"


def cosignature_message(text, timestamp):
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text.encode()


def cosign(text, timestamp, name, seed):
    assert 0 <= timestamp <= 2**63 - 1
    msg = cosignature_message(text, timestamp)
    sig = timestamp.to_bytes(8, "big") + Ed25519PrivateKey.from_private_bytes(seed).sign(msg)
    kid = key_id(name, 0x04, public_key(seed))
    return msg, sig, EM_DASH + " " + name + " " + b64(kid + sig) + "\n"


def vectors():
    wpub, lpub = public_key(WITNESS_SEED), public_key(LOG_SEED)
    wkid, lkid = key_id(WITNESS_NAME, 0x04, wpub), key_id(LOG_NAME, 0x01, lpub)
    out = {
        "description": "C2SP signed-note and tlog-cosignature (cosignature/v1) known answers; see README.md",
        "witness": {
            "name": WITNESS_NAME,
            "seed": WITNESS_SEED.hex(),
            "publicKey": wpub.hex(),
            "keyID": wkid.hex(),
            # vkey and private key strings with type byte 0x04 (signed-note key encodings)
            "verifierKey": "%s+%s+%s" % (WITNESS_NAME, wkid.hex(), b64(b"\x04" + wpub)),
            "privateKey": "PRIVATE+KEY+%s+%s+%s" % (WITNESS_NAME, wkid.hex(), b64(b"\x04" + WITNESS_SEED)),
        },
        "log": {
            "name": LOG_NAME,
            "seed": LOG_SEED.hex(),
            "publicKey": lpub.hex(),
            "keyID": lkid.hex(),
            "verifierKey": "%s+%s+%s" % (LOG_NAME, lkid.hex(), b64(b"\x01" + lpub)),
            "privateKey": "PRIVATE+KEY+%s+%s+%s" % (LOG_NAME, lkid.hex(), b64(b"\x01" + LOG_SEED)),
        },
        "cases": [],
    }
    for desc, text, ts in CASES:
        note = sign_note(text, LOG_NAME, LOG_SEED)
        msg, sig, line = cosign(text, ts, WITNESS_NAME, WITNESS_SEED)
        out["cases"].append({
            "desc": desc,
            "checkpoint": text,
            "timestamp": ts,
            "signedNote": note,                      # the log's note, signed by the log key
            "message": msg.decode(),                 # exactly the bytes the witness signs
            "timestampedSignature": sig.hex(),       # u64 BE timestamp || 64-byte Ed25519 signature
            "signatureLine": line,                   # "— <name> base64(key ID || timestamped_signature)\n"
            "cosignedNote": note + line,             # the log's note with the cosignature appended
        })
    return out


if __name__ == "__main__":
    json.dump(vectors(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
