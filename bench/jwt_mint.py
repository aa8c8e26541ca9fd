#!/usr/bin/env python3
"""RS256 keys, a static JWKS and tokens for the bench's JWT rows (needs `cryptography`).

    jwt_mint.py keys DIR                          # DIR/key.pem, DIR/pub.pem, DIR/jwks.json
    jwt_mint.py tokens DIR COUNT ISS AUD OUT      # COUNT distinct tokens, one per line

Every token has its own `jti` (and so its own signature): a validation cache cannot
answer for the "fresh token per request" rows. Tokens are valid for 24 h.
"""

import base64
import json
import multiprocessing
import os
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KID = "bench-1"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keys(d: str) -> None:
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, "jwks.json")):
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(os.path.join(d, "key.pem"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    pub = key.public_key()
    with open(os.path.join(d, "pub.pem"), "wb") as f:
        f.write(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    nums = pub.public_numbers()
    n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID, "n": b64u(n), "e": b64u(e)}]}
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump(jwks, f)


_KEY = None


def _init(d: str) -> None:
    global _KEY
    with open(os.path.join(d, "key.pem"), "rb") as f:
        _KEY = serialization.load_pem_private_key(f.read(), password=None)


def _mint(args):
    start, count, iss, aud, now = args
    header = b64u(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}, separators=(",", ":")).encode())
    out = []
    for i in range(start, start + count):
        claims = {
            "iss": iss,
            "aud": aud,
            "sub": f"user-{i % 1000}",
            "iat": now,
            "nbf": now - 60,
            "exp": now + 86400,
            "jti": f"bench-{now}-{i}",
            "scope": "mcp:tools",
        }
        signing_input = header + "." + b64u(json.dumps(claims, separators=(",", ":")).encode())
        sig = _KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        out.append(signing_input + "." + b64u(sig))
    return out


def tokens(d: str, count: int, iss: str, aud: str, out: str) -> None:
    now = int(time.time())
    procs = max(1, os.cpu_count() or 1)
    chunk = 2000
    jobs = [(s, min(chunk, count - s), iss, aud, now) for s in range(0, count, chunk)]
    tmp = out + ".tmp"
    with multiprocessing.Pool(procs, initializer=_init, initargs=(d,)) as pool, open(tmp, "w") as f:
        for batch in pool.imap(_mint, jobs):
            f.write("\n".join(batch))
            f.write("\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        keys(sys.argv[2])
    elif len(sys.argv) == 7 and sys.argv[1] == "tokens":
        tokens(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    else:
        sys.exit(__doc__)
