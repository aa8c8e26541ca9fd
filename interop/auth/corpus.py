"""Hostile JWT corpus for thv incoming auth, minted at test time with `jwcrypto`.

Nothing here shares code with the Rust verifier. Keys are generated fresh on every run; the
proxy is pointed at `KeyHost`, a minimal issuer on 127.0.0.1 that serves OIDC discovery, RFC 8414
metadata and the public JWKS of the keys below (plus decoy URLs that count how often anything
dereferenced the `jku`/`x5u` values a token carried - that count must stay 0).

The JWKS served (all public; private halves stay in this process):
    rsa-good  RSA-2048  alg RS256  use sig      <- signs the valid controls
    rsa-good-2 RSA-2048 alg RS256  use sig      <- a second RS256 key: a kid-less token is ambiguous
    rsa-pss   RSA-2048  alg PS256  use sig
    ec-good   P-256     alg ES256  use sig
    ed-good   Ed25519   alg EdDSA  use sig
    rsa-small RSA-1024  alg RS256  use sig      <- RFC 7518 §3.3: must never verify anything
    rsa-enc   RSA-2048  use enc                 <- RFC 7517 §4.2: not a signature key
    rsa-ops   RSA-2048  key_ops ["encrypt"]     <- RFC 7517 §4.3: not a verification key
The attacker's own keys (`attacker-rsa`, `attacker-ec`) are not in the JWKS.

Every case carries the reference it comes from (mcp-auth-requirements.md §3.6 "Negative corpus",
§2.8, Part 4 items 46/52/53/54) and what is expected: `refuse` (401 invalid_token, upstream never
reached) or `accept` (a valid control - proves the refusals are not just "everything fails").

`python corpus.py --list` prints the case names and references without a proxy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import base64url_decode, base64url_encode, json_encode
from jwcrypto.jwa import JWA

TOKEN_TTL = 300
# Relative to the proxy's default 60 s leeway: well inside it, and well beyond it.
WITHIN_LEEWAY = 20
BEYOND_LEEWAY = 150


@dataclass
class Case:
    name: str
    expect: str  # "refuse" | "accept"
    token: str
    ref: str
    note: str = ""


@dataclass
class KeyMaterial:
    keys: dict[str, jwk.JWK] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> KeyMaterial:
        m = cls()
        m.keys["rsa-good"] = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-good", alg="RS256", use="sig")
        m.keys["rsa-good-2"] = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-good-2", alg="RS256", use="sig")
        m.keys["rsa-pss"] = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-pss", alg="PS256", use="sig")
        m.keys["ec-good"] = jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-good", alg="ES256", use="sig")
        m.keys["ed-good"] = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed-good", alg="EdDSA", use="sig")
        m.keys["rsa-small"] = jwk.JWK.generate(kty="RSA", size=1024, kid="rsa-small", alg="RS256", use="sig")
        m.keys["rsa-enc"] = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-enc", use="enc")
        m.keys["rsa-ops"] = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-ops", key_ops=["encrypt"])
        m.keys["attacker-rsa"] = jwk.JWK.generate(kty="RSA", size=2048, kid="attacker-rsa", alg="RS256", use="sig")
        m.keys["attacker-ec"] = jwk.JWK.generate(kty="EC", crv="P-256", kid="attacker-ec", alg="ES256", use="sig")
        return m

    def public_jwks(self, include_unusable: bool = True) -> dict[str, Any]:
        names = ["rsa-good", "rsa-good-2", "rsa-pss", "ec-good", "ed-good"]
        if include_unusable:
            names += ["rsa-small", "rsa-enc", "rsa-ops"]
        return {"keys": [self.keys[n].export_public(as_dict=True) for n in names]}


# ------------------------------------------------------------------------------------------------
# Low-level minting. `raw_jws` signs exactly the bytes given (header/payload may be any bytes, so
# duplicate members, non-objects, b64:false lies etc. are possible); the signature comes from
# jwcrypto's JWA engines.


def b64(data: bytes | str) -> str:
    return base64url_encode(data.encode() if isinstance(data, str) else data)


def unconstrained(key: jwk.JWK) -> jwk.JWK:
    """The same key material without `use`/`key_ops`, so jwcrypto signs with a key the JWKS says
    must not verify anything (what an attacker holding such a key could do)."""
    material = {k: v for k, v in key.export_private(as_dict=True).items() if k not in ("use", "key_ops")}
    return jwk.JWK(**material)


def sign_bytes(alg: str, key: jwk.JWK, signing_input: bytes) -> bytes:
    return JWA.signing_alg(alg).sign(key, signing_input)


def raw_jws(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, alg: str, key: jwk.JWK) -> str:
    h = header if isinstance(header, bytes) else json_encode(header).encode()
    p = payload if isinstance(payload, bytes) else json_encode(payload).encode()
    signing_input = f"{b64(h)}.{b64(p)}".encode()
    return f"{signing_input.decode()}.{b64(sign_bytes(alg, key, signing_input))}"


def jwcrypto_jws(header: dict[str, Any], claims: dict[str, Any], key: jwk.JWK) -> str:
    """The well-formed path: jwcrypto's JWS object, as a third-party issuer would produce it."""
    token = jws.JWS(json_encode(claims).encode())
    token.add_signature(key, alg=header["alg"], protected=json_encode(header))
    return token.serialize(compact=True)


def self_signed_cert_b64(key: jwk.JWK) -> str:
    private = key.get_op_key("sign")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    import base64

    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


# ------------------------------------------------------------------------------------------------


def build_cases(issuer: str, audience: str, keys: KeyMaterial, decoy_base: str) -> list[Case]:
    now = int(time.time())
    K = keys.keys

    def claims(**overrides: Any) -> dict[str, Any]:
        base = {
            "iss": issuer,
            "sub": "corpus-user",
            "aud": audience,
            "iat": now,
            "exp": now + TOKEN_TTL,
            "jti": str(uuid.uuid4()),
            "scope": "mcp:tools",
            "client_id": "corpus",
        }
        for k, v in overrides.items():
            if v is _DROP:
                base.pop(k, None)
            else:
                base[k] = v
        return base

    def hdr(alg: str = "RS256", kid: str | None = "rsa-good", **extra: Any) -> dict[str, Any]:
        h: dict[str, Any] = {"alg": alg, "typ": "at+jwt"}
        if kid is not None:
            h["kid"] = kid
        h.update(extra)
        return h

    def good(**overrides: Any) -> str:
        return jwcrypto_jws(hdr(), claims(**overrides), K["rsa-good"])

    cases: list[Case] = []

    def refuse(name: str, token: str, ref: str, note: str = "") -> None:
        cases.append(Case(name, "refuse", token, ref, note))

    def accept(name: str, token: str, ref: str, note: str = "") -> None:
        cases.append(Case(name, "accept", token, ref, note))

    # ---- valid controls --------------------------------------------------------------------
    accept("control_rs256", good(), "§2.8")
    accept("control_ps256", jwcrypto_jws(hdr("PS256", "rsa-pss"), claims(), K["rsa-pss"]), "§2.8 item 2 (PS*)")
    accept("control_es256", jwcrypto_jws(hdr("ES256", "ec-good"), claims(), K["ec-good"]), "§2.8 item 2 (ES*)")
    accept("control_eddsa", jwcrypto_jws(hdr("EdDSA", "ed-good"), claims(), K["ed-good"]), "§2.8 item 2 (EdDSA)")
    accept("control_aud_array_with_ours", good(aud=["urn:other", audience]), "§3.6 aud array containing ours")
    accept("control_typ_jwt", jwcrypto_jws(hdr(typ="JWT"), claims(), K["rsa-good"]), "§2.8 item 6 typ JWT")
    accept(
        "control_typ_application_at_jwt",
        jwcrypto_jws(hdr(typ="application/at+jwt"), claims(), K["rsa-good"]),
        "§2.8 item 6",
    )
    no_typ = hdr()
    no_typ.pop("typ")
    accept("control_typ_absent", jwcrypto_jws(no_typ, claims(), K["rsa-good"]), "§2.8 item 6 typ absent")
    accept("control_exp_within_leeway", good(exp=now - WITHIN_LEEWAY), "§3.6 expired within leeway (60 s default)")
    accept("control_nbf_within_leeway", good(nbf=now + WITHIN_LEEWAY), "§2.8 item 9 nbf − leeway")
    accept("control_nbf_past", good(nbf=now - 60), "§2.8 item 9")
    accept("control_exp_fractional", good(exp=now + TOKEN_TTL + 0.5), "§2.8 item 9 NumericDate may be non-integer")

    # ---- algorithm attacks (item 52) -----------------------------------------------------------
    unsigned = f"{b64(json_encode({'alg': 'none', 'typ': 'at+jwt'}))}.{b64(json_encode(claims()))}."
    refuse("alg_none_empty_signature", unsigned, "§3.6 alg:none; RFC 9068 §4")
    refuse(
        "alg_none_with_kid_and_signature",
        f"{b64(json_encode({'alg': 'none', 'kid': 'rsa-good'}))}.{b64(json_encode(claims()))}."
        + good().split(".")[2],
        "§3.6 alg:none",
    )
    for variant in ("None", "NONE", "nOnE"):
        refuse(
            f"alg_{variant}_case_variant",
            f"{b64(json_encode({'alg': variant, 'typ': 'at+jwt'}))}.{b64(json_encode(claims()))}.",
            "§2.8 item 2 alg is case-sensitive; none rejected",
        )
    pub_pem = K["rsa-good"].export_to_pem()
    pub_jwk_json = K["rsa-good"].export_public().encode()
    for label, secret in (
        ("pem", pub_pem),
        ("pem_no_newline", pub_pem.rstrip(b"\n")),
        ("jwk_json", pub_jwk_json),
        ("modulus_bytes", base64url_decode(K["rsa-good"].export_public(as_dict=True)["n"])),
    ):
        hmac_key = jwk.JWK(kty="oct", k=b64(secret))
        refuse(
            f"hs256_with_rsa_public_key_{label}",
            raw_jws(hdr("HS256"), claims(), "HS256", hmac_key),
            "§3.6 HS256 signed with the RSA public key (CVE-2015-9235)",
        )
    ec_pem = K["ec-good"].export_to_pem()
    refuse(
        "hs256_with_ec_public_key_pem",
        raw_jws(hdr("HS256", "ec-good"), claims(), "HS256", jwk.JWK(kty="oct", k=b64(ec_pem))),
        "§3.6 HMAC with a JWKS public key",
    )
    refuse("hs512_random_secret", raw_jws(hdr("HS512", None), claims(), "HS512", jwk.JWK.generate(kty="oct", size=512)),
           "§2.8 item 2 only asymmetric algorithms")
    refuse(
        "alg_lowercase_rs256",
        raw_jws(hdr("rs256"), claims(), "RS256", K["rsa-good"]),
        "§2.8 item 2 alg is case-sensitive",
    )
    refuse(
        "ps256_with_rs256_only_key",
        raw_jws(hdr("PS256", "rsa-good"), claims(), "PS256", K["rsa-good"]),
        "RFC 8725 §3.1 each key with exactly one algorithm (JWK alg RS256)",
    )
    refuse(
        "rs512_with_rs256_only_key",
        raw_jws(hdr("RS512", "rsa-good"), claims(), "RS512", K["rsa-good"]),
        "RFC 8725 §3.1 each key with exactly one algorithm (JWK alg RS256)",
    )
    refuse(
        "es256_header_on_rsa_kid",
        raw_jws(hdr("ES256", "rsa-good"), claims(), "ES256", K["attacker-ec"]),
        "§2.8 item 3 key kty must fit alg",
    )
    refuse(
        "rs256_header_on_ec_kid",
        raw_jws(hdr("RS256", "ec-good"), claims(), "RS256", K["attacker-rsa"]),
        "§2.8 item 3 key kty must fit alg",
    )
    refuse(
        "eddsa_header_on_rsa_kid",
        raw_jws(hdr("EdDSA", "rsa-good"), claims(), "EdDSA", jwk.JWK.generate(kty="OKP", crv="Ed25519")),
        "§2.8 item 3 key kty must fit alg",
    )
    refuse(
        "duplicate_alg_header_last_none",
        raw_jws(
            b'{"alg":"RS256","typ":"at+jwt","kid":"rsa-good","alg":"none"}', json_encode(claims()).encode(), "RS256", K["rsa-good"]
        ),
        "§2.8 item 1 duplicate members: reject, or last wins (=none)",
    )

    # ---- key-source headers (item 53) ----------------------------------------------------------
    attacker_pub = K["attacker-rsa"].export_public(as_dict=True)
    refuse(
        "jwk_header_embedded_attacker_key",
        raw_jws(hdr("RS256", "attacker-rsa", jwk=attacker_pub), claims(), "RS256", K["attacker-rsa"]),
        "§3.6 jwk header (CVE-2018-0114)",
    )
    refuse(
        "jwk_header_without_kid",
        raw_jws(hdr("RS256", None, jwk=attacker_pub), claims(), "RS256", K["attacker-rsa"]),
        "§3.6 jwk header",
    )
    refuse(
        "jku_header_attacker_jwks",
        raw_jws(hdr("RS256", "attacker-rsa", jku=f"{decoy_base}/decoy/jku.json"), claims(), "RS256", K["attacker-rsa"]),
        "§3.6 jku header (SSRF, RFC 8725 §3.10)",
    )
    refuse(
        "x5u_header_attacker_cert",
        raw_jws(hdr("RS256", "attacker-rsa", x5u=f"{decoy_base}/decoy/x5u.pem"), claims(), "RS256", K["attacker-rsa"]),
        "§3.6 x5u header",
    )
    refuse(
        "x5c_header_self_signed",
        raw_jws(hdr("RS256", None, x5c=[self_signed_cert_b64(K["attacker-rsa"])]), claims(), "RS256", K["attacker-rsa"]),
        "§3.6 x5c header",
    )
    refuse(
        "jku_header_on_validly_signed_token",
        raw_jws(hdr(jku=f"{decoy_base}/decoy/jku-valid.json"), claims(), "RS256", K["rsa-good"]),
        "issue #3 item 3: jku/x5u/jwk/x5c headers rejected",
    )
    refuse(
        "x5u_header_on_validly_signed_token",
        raw_jws(hdr(x5u=f"{decoy_base}/decoy/x5u-valid.pem"), claims(), "RS256", K["rsa-good"]),
        "issue #3 item 3",
    )
    refuse(
        "jwk_header_on_validly_signed_token",
        raw_jws(hdr(jwk=K["rsa-good"].export_public(as_dict=True)), claims(), "RS256", K["rsa-good"]),
        "issue #3 item 3",
    )
    refuse(
        "x5c_header_on_validly_signed_token",
        raw_jws(hdr(x5c=[self_signed_cert_b64(K["attacker-rsa"])]), claims(), "RS256", K["rsa-good"]),
        "issue #3 item 3",
    )
    refuse(
        "crit_unknown_extension",
        raw_jws(hdr(crit=["foo"], foo="bar"), claims(), "RS256", K["rsa-good"]),
        "§3.6 crit:[\"foo\"]; RFC 7515 §4.1.11",
    )
    refuse(
        "crit_names_absent_header",
        raw_jws(hdr(crit=["exp"]), claims(), "RS256", K["rsa-good"]),
        "RFC 7515 §4.1.11 crit lists a parameter not present",
    )
    refuse(
        "crit_empty_list",
        raw_jws(hdr(crit=[]), claims(), "RS256", K["rsa-good"]),
        "RFC 7515 §4.1.11 crit MUST NOT be empty",
    )
    refuse(
        "b64_false_crit",
        raw_jws(hdr(b64=False, crit=["b64"]), claims(), "RS256", K["rsa-good"]),
        "§3.6 b64:false",
        "signature is valid over the ordinary base64url signing input; a verifier that ignores b64 accepts it",
    )

    # ---- claims (item 46) ----------------------------------------------------------------------
    refuse("wrong_iss", good(iss="http://127.0.0.1:1/evil"), "§3.6 wrong iss")
    refuse("iss_trailing_slash", good(iss=issuer + "/"), "§2.8 item 7 exact iss")
    refuse("iss_missing", good(iss=_DROP), "§2.8 item 7")
    refuse("iss_array", good(iss=[issuer]), "§2.8 item 7 iss is a string")
    refuse("wrong_aud", good(aud="http://127.0.0.1:9/other"), "§3.6 wrong aud")
    refuse("aud_missing", good(aud=_DROP), "§3.6 missing aud; RFC 8725 §3.9")
    refuse("aud_trailing_slash", good(aud=audience + "/"), "§2.8 item 8 exact compare")
    refuse("aud_array_without_ours", good(aud=["urn:a", "http://127.0.0.1:9/other"]), "§2.8 item 8")
    refuse("aud_empty_array", good(aud=[]), "§2.8 item 8")
    refuse("aud_case_changed", good(aud=audience.upper()), "§2.8 item 8 exact compare")
    dup_aud_payload = (
        json_encode(claims(aud=audience))[:-1] + ',"aud":"http://127.0.0.1:9/other"}'
    ).encode()
    refuse(
        "duplicate_aud_members_last_foreign",
        raw_jws(hdr(), dup_aud_payload, "RS256", K["rsa-good"]),
        "§3.6 duplicate aud members (reject, or last wins = foreign)",
    )
    refuse("expired_beyond_leeway", good(exp=now - BEYOND_LEEWAY), "§3.6 expired beyond leeway")
    refuse("expired_long_ago", good(iat=now - 7200, exp=now - 3600), "§3.6 expired")
    refuse("nbf_in_future", good(nbf=now + 3600), "§3.6 future nbf")
    refuse("nbf_beyond_leeway", good(nbf=now + BEYOND_LEEWAY), "§2.8 item 9")
    refuse("exp_missing", good(exp=_DROP), "§3.6 missing exp; RFC 9068 §2.2")
    refuse("exp_string", good(exp=str(now + TOKEN_TTL)), "§3.6 string exp")
    refuse("exp_null", good(exp=None), "§2.8 item 9 non-numeric")
    refuse("exp_bool", good(exp=True), "§2.8 item 9 non-numeric")
    refuse("exp_object", good(exp={"t": now + TOKEN_TTL}), "§2.8 item 9 non-numeric")
    refuse("nbf_string", good(nbf="0"), "item 46 non-numeric dates rejected")
    refuse("iat_string", good(iat=str(now)), "item 46 non-numeric dates rejected")

    # ---- typ (§2.8 item 6) ---------------------------------------------------------------------
    refuse("typ_dpop_jwt", jwcrypto_jws(hdr(typ="dpop+jwt"), claims(), K["rsa-good"]), "§3.6 typ dpop+jwt")
    refuse("typ_logout_jwt", jwcrypto_jws(hdr(typ="logout+jwt"), claims(), K["rsa-good"]), "§2.8 item 6")
    refuse("typ_id_token_style_jwe", jwcrypto_jws(hdr(typ="JOSE+JSON"), claims(), K["rsa-good"]), "§2.8 item 6 anything else")

    # ---- signature and shape (item 54, §2.8 items 1 and 5) -----------------------------------
    g = good()
    h, p, s = g.split(".")
    sig = bytearray(base64url_decode(s))
    sig[len(sig) // 2] ^= 0x01
    refuse("bad_signature_bitflip", f"{h}.{p}.{b64(bytes(sig))}", "§3.6 bad signature")
    refuse("signature_from_other_token", f"{h}.{p}.{good(sub='someone-else').split('.')[2]}", "§3.6 bad signature")
    tampered = b64(json_encode(claims(sub="admin", scope="mcp:tools mcp:admin")))
    refuse("payload_tampered", f"{h}.{tampered}.{s}", "§3.6 bad signature")
    refuse("signature_empty", f"{h}.{p}.", "§3.6 bad signature")
    refuse("truncated_signature", g[:-10], "§3.6 truncated")
    refuse("truncated_two_segments", f"{h}.{p}", "§3.6 truncated")
    refuse("four_segments", f"{g}.{s}", "§3.6 4-segment token")
    refuse("five_segments_jwe_shape", f"{b64(json_encode({'alg': 'RSA-OAEP', 'enc': 'A256GCM', 'kid': 'rsa-enc'}))}.AAAA.BBBB.CCCC.DDDD",
           "§3.6 5-segment token (JWE)")
    refuse("padded_base64_signature", f"{h}.{p}.{s}{'=' * (-len(s) % 4) or '=='}", "§3.6 padded base64")
    refuse("padded_base64_payload", f"{h}.{p}{'=' * (-len(p) % 4) or '=='}.{s}", "§3.6 padded base64")
    refuse("standard_base64_alphabet", f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}" if ("-" in s or "_" in s)
           else f"{h}.{p}.{s}+/", "§2.8 item 1 base64url only")
    refuse("header_not_json", f"{b64('not json')}.{p}.{s}", "§2.8 item 1")
    refuse("header_json_array", raw_jws(b'["RS256"]', json_encode(claims()).encode(), "RS256", K["rsa-good"]), "§2.8 item 1")
    refuse("claims_json_array", raw_jws(hdr(), b"[1,2,3]", "RS256", K["rsa-good"]), "§2.8 item 1 claims must be an object")
    refuse("claims_not_utf8", raw_jws(hdr(), b'{"iss":"\xff\xfe"}', "RS256", K["rsa-good"]), "§2.8 item 1 UTF-8")
    refuse("empty_token_segments", "..", "§2.8 item 1")
    ec_token = jwcrypto_jws(hdr("ES256", "ec-good"), claims(), K["ec-good"])
    eh, ep, es = ec_token.split(".")
    raw_sig = base64url_decode(es)
    der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    refuse("es256_der_encoded_signature", f"{eh}.{ep}.{b64(der)}", "§3.6 DER-encoded ES256 signature; RFC 7518 §3.4")
    refuse("es256_zero_signature", f"{eh}.{ep}.{b64(bytes(64))}", "§2.8 item 5 r=s=0 (CVE-2022-21449)")
    refuse("es256_r_zero", f"{eh}.{ep}.{b64(bytes(32) + raw_sig[32:])}", "§2.8 item 5 r=0")
    refuse("es256_short_signature", f"{eh}.{ep}.{b64(raw_sig[:63])}", "RFC 7518 §3.4 exactly 64 bytes")
    r, s_int = decode_dss_signature(der)
    n_p256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    refuse("es256_s_plus_order", f"{eh}.{ep}.{b64(r.to_bytes(32, 'big') + (s_int + n_p256).to_bytes(33, 'big'))}",
           "RFC 7518 §3.4 out-of-range s, wrong length")
    refuse(
        "rsa_1024_bit_key",
        raw_jws(hdr("RS256", "rsa-small"), claims(), "RS256", K["rsa-small"]),
        "§3.6 1024-bit RSA key; RFC 7518 §3.3",
    )
    refuse("rsa_key_use_enc", raw_jws(hdr("RS256", "rsa-enc"), claims(), "RS256", unconstrained(K["rsa-enc"])),
           "§2.8 item 3 skip keys with use:enc")
    refuse("rsa_key_ops_without_verify", raw_jws(hdr("RS256", "rsa-ops"), claims(), "RS256", unconstrained(K["rsa-ops"])),
           "§2.8 item 3 skip keys whose key_ops lack verify")

    # ---- key selection (item 47) ---------------------------------------------------------------
    refuse("unknown_kid", raw_jws(hdr(kid="no-such-kid"), claims(), "RS256", K["rsa-good"]), "§3.6 unknown kid")
    refuse("unknown_kid_attacker_key", raw_jws(hdr("RS256", "attacker-rsa"), claims(), "RS256", K["attacker-rsa"]),
           "§3.6 unknown kid")
    refuse("no_kid_attacker_key", raw_jws(hdr("RS256", None), claims(), "RS256", K["attacker-rsa"]),
           "§3.6 no kid with several keys")
    refuse("no_kid_two_keys", raw_jws(hdr("RS256", None), claims(), "RS256", K["rsa-good"]),
           "§3.6 'no kid with two keys'",
           "signed by rsa-good; the JWKS holds two usable RS256 keys (rsa-good, rsa-good-2), so a kid-less "
           "token does not say which one to use")
    refuse("kid_path_traversal", raw_jws(hdr(kid="../../../../dev/null"), claims(), "RS256", K["rsa-good"]),
           "§2.8 item 3 kid is opaque (RFC 8725 §3.10)")
    refuse("kid_sql_injection", raw_jws(hdr(kid="x' OR '1'='1"), claims(), "RS256", K["rsa-good"]),
           "§2.8 item 3 kid is opaque")
    refuse("kid_not_string", raw_jws(hdr(kid=12345), claims(), "RS256", K["rsa-good"]), "RFC 7515 §4.1.4 kid is a string")

    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


class _Drop:
    pass


_DROP = _Drop()


def self_check(cases: list[Case], keys: KeyMaterial, issuer: str, audience: str) -> list[str]:
    """Independent sanity check with jwcrypto's own verifier: every control must verify."""
    problems = []
    keyset = jwk.JWKSet.from_json(json.dumps(keys.public_jwks(include_unusable=False)))
    for case in cases:
        if case.expect != "accept":
            continue
        try:
            header = json.loads(base64url_decode(case.token.split(".")[0]))
            jwt.JWT(
                jwt=case.token,
                key=keyset,
                algs=[header["alg"]],
                check_claims={"iss": issuer, "aud": audience, "exp": None},
            )
        except Exception as error:  # noqa: BLE001
            problems.append(f"{case.name}: control does not verify with jwcrypto: {error}")
    return problems


# ------------------------------------------------------------------------------------------------


class KeyHost:
    """Minimal issuer on 127.0.0.1: discovery, RFC 8414 metadata, JWKS, counted decoy URLs."""

    def __init__(self, keys: KeyMaterial, include_unusable: bool = True) -> None:
        self.keys = keys
        self.include_unusable = include_unusable
        self.advertised_issuer: str | None = None  # set to make discovery lie about the issuer
        # Scripted RFC 7662 endpoint at POST /introspect: token -> (status, content type, body).
        self.introspection_answers: dict[str, tuple[int, str, str]] = {}
        self.introspection_calls: list[dict[str, str]] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                with host.lock:
                    host.hits[path] = host.hits.get(path, 0) + 1
                if path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
                    self.reply(200, "application/json", json.dumps(host.metadata()))
                elif path == "/jwks":
                    self.reply(200, "application/json", json.dumps(keys.public_jwks(host.include_unusable)))
                elif path.startswith("/decoy/"):
                    # What an attacker would serve: their own key. Dereferencing it at all is the bug.
                    self.reply(200, "application/json", json.dumps({"keys": [keys.keys["attacker-rsa"].export_public(as_dict=True)]}))
                else:
                    self.reply(404, "application/json", '{"error":"not_found"}')

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(errors="replace")))
                with host.lock:
                    host.hits[path] = host.hits.get(path, 0) + 1
                    host.introspection_calls.append(
                        {"authorization": self.headers.get("Authorization") or "", "content_type": self.headers.get("Content-Type") or "",
                         "client_id": form.get("client_id", ""), "client_secret": form.get("client_secret", ""),
                         "token": form.get("token", "")}
                    )
                if path != "/introspect":
                    self.reply(404, "application/json", '{"error":"not_found"}')
                    return
                status, ctype, body = host.introspection_answers.get(form.get("token", ""), (200, "application/json", '{"active":false}'))
                self.reply(status, ctype, body)

            def reply(self, status: int, ctype: str, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def metadata(self) -> dict[str, Any]:
        i = self.issuer
        return {
            "issuer": self.advertised_issuer or i,
            "authorization_endpoint": f"{i}/authorize",
            "token_endpoint": f"{i}/token",
            "jwks_uri": f"{i}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "code_challenge_methods_supported": ["S256"],
        }

    def decoy_hits(self) -> int:
        with self.lock:
            return sum(n for p, n in self.hits.items() if p.startswith("/decoy/"))

    def start(self) -> KeyHost:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print case names, expectations and references")
    parser.add_argument("--json", action="store_true", help="print the minted cases as JSON (with tokens)")
    args = parser.parse_args()
    keys = KeyMaterial.generate()
    issuer, audience = "http://127.0.0.1:1", "http://127.0.0.1:2/mcp"
    cases = build_cases(issuer, audience, keys, "http://127.0.0.1:3")
    problems = self_check(cases, keys, issuer, audience)
    if args.json:
        print(json.dumps([c.__dict__ for c in cases], indent=1))
    else:
        for c in cases:
            print(f"{c.expect:7} {c.name:40} {c.ref}")
        refuse = sum(c.expect == "refuse" for c in cases)
        print(f"{len(cases)} cases: {refuse} must be refused, {len(cases) - refuse} valid controls")
    for p in problems:
        print("SELF-CHECK PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
