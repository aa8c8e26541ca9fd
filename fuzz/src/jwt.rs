//! The JWT path of incoming authentication, up to and past signature verification:
//! `bearer_token`, `JwtValidator::looks_like_jwt`, and the whole `JwtValidator::validate`
//! (header rules, key choice, signature, claims and their RFC 7519 types) against a real
//! `JwksCache` loaded from a loopback JWKS server.
//!
//! Input, two shapes:
//! - starts with `{`: `HEADER_JSON \n CLAIMS_JSON` — both are base64url-encoded and signed
//!   with the test key, so the fuzzer reaches the claim checks behind the signature;
//! - anything else: the token itself (also tried as an `Authorization` header value).
//!
//! Invariants: nothing panics; a header jsonwebtoken's `decode_header` cannot decode (the
//! validator decodes it with its own types, so this is a second opinion; restricted to the
//! parameters RFC 7515 registers) is refused; and whenever
//! a token is accepted, an independent re-check of the decoded header and payload agrees that it
//! should be: ES256 with our key, no key-carrying header, an access-token `typ`, the right
//! issuer and audience, a numeric unexpired `exp`, numeric `nbf`/`iat`, and
//! `looks_like_jwt` (so a token is never routed to the JWT path by one rule and the
//! introspection path by the other).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use serde_json::{Value, json};
use thv::internals::{ControlClient, JwksCache, JwtValidator, bearer_token};

pub const ISSUER: &str = "https://idp.fuzz.example";
pub const AUDIENCE: &str = "https://mcp.fuzz.example/mcp";
pub const KID: &str = "fuzz-es256";
const LEEWAY: u64 = 60;

struct Harness {
    rt: tokio::runtime::Runtime,
    validator: JwtValidator,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Serves `body` as `application/json` to every request, forever, on a loopback port.
fn serve_json(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    port
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            // Keys that must never verify anything: symmetric, encryption-only.
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        ]});
        let port = serve_json(jwks.to_string());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/jwks")).unwrap();
        let client = ControlClient::new(None).expect("control client");
        let (cache, _) = rt.block_on(JwksCache::load(client, url)).expect("the loopback JWKS loads");
        let cache: Arc<JwksCache> = cache;
        let validator = JwtValidator::new(cache, Some(ISSUER), &[AUDIENCE.to_owned()], LEEWAY);
        Harness { rt, validator, key, rng }
    })
}

/// Signs `header` and `claims` (any bytes) with the test key: a token whose signature is
/// valid whatever its content.
pub fn sign(header: &[u8], claims: &[u8]) -> String {
    let h = harness();
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = h.key.sign(&h.rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(sig.as_ref()))
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn part(token: &str, i: usize) -> Option<Value> {
    let p = token.split('.').nth(i)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok()?;
    // Lossy: serde_json does not check UTF-8 inside strings it skips, so the validator
    // accepts a claims set with invalid UTF-8 in a claim nobody reads (harmless).
    serde_json::from_str(&String::from_utf8_lossy(&bytes)).ok()
}

/// Whether jsonwebtoken's `decode_header`, an independent implementation, decodes the
/// token's header restricted to the parameters RFC 7515 §4.1 registers (the validator's
/// own header type ignores other specifications' parameters, jsonwebtoken types some of
/// them): a header it cannot decode must never be accepted.
fn jws_header_decodes(token: &str) -> bool {
    const JWS: [&str; 11] = ["alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit"];
    let Some(Value::Object(mut header)) = part(token, 0) else {
        return jsonwebtoken::decode_header(token).is_ok();
    };
    header.retain(|k, _| JWS.contains(&k.as_str()));
    let restricted = format!("{}.e30.x", b64(Value::Object(header).to_string().as_bytes()));
    jsonwebtoken::decode_header(&restricted).is_ok()
}

pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let h = harness();
    let token = if data.first() == Some(&b'{') {
        let (header, claims) = match data.iter().position(|b| *b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b"{}"[..]),
        };
        sign(header, claims)
    } else {
        let text = String::from_utf8_lossy(data).into_owned();
        // The same bytes as an Authorization header value.
        if let Ok(value) = http::HeaderValue::from_bytes(data) {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            if let Ok(t) = bearer_token(&headers) {
                assert!(!t.is_empty() && !t.contains(char::is_whitespace), "bearer_token gave {t:?}");
            }
        }
        text
    };

    let looks = JwtValidator::looks_like_jwt(&token);
    let second_opinion = jws_header_decodes(&token);
    let result = h.rt.block_on(h.validator.validate(&token));
    if !second_opinion {
        assert!(result.is_err(), "accepted a header jsonwebtoken cannot decode: {token:?}");
    }
    let Ok(claims) = result else { return };

    // Accepted: check independently that it should have been.
    assert!(looks, "an accepted token that looks_like_jwt rejects: {token:?}");
    let raw_header = part(&token, 0).expect("accepted header is JSON");
    assert_eq!(raw_header.get("alg").and_then(Value::as_str), Some("ES256"), "{token:?}");
    for carried in ["jku", "x5u", "jwk", "x5c"] {
        assert!(raw_header.get(carried).is_none_or(Value::is_null), "accepted with {carried}: {token:?}");
    }
    if let Some(kid) = raw_header.get("kid").and_then(Value::as_str) {
        assert_eq!(kid, KID, "accepted with another key's kid");
    }
    if let Some(typ) = raw_header.get("typ").and_then(Value::as_str) {
        let typ = typ.to_ascii_lowercase();
        assert!(matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt"), "typ {typ}");
    }
    if let Some(crit) = raw_header.get("crit") {
        // The one extension the validator understands (RFC 7797 `b64`, and only `true`).
        assert_eq!(crit, &json!(["b64"]), "accepted a token with crit {crit}");
    }
    let payload = part(&token, 1).expect("accepted payload is JSON");
    assert_eq!(payload.get("iss").and_then(Value::as_str), Some(ISSUER), "issuer of {payload}");
    let aud_ok = match payload.get("aud") {
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(aud_ok, "audience of {payload}");
    let slack = 5.0; // the test's own clock reading differs a little from the validator's
    let exp = payload.get("exp").and_then(Value::as_f64).expect("accepted without a numeric exp");
    assert!(exp.is_finite() && exp + LEEWAY as f64 + slack >= now(), "expired exp {exp}");
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted with a non-numeric nbf");
        assert!(nbf <= now() + LEEWAY as f64 + slack, "nbf {nbf} in the future");
    }
    if let Some(iat) = payload.get("iat") {
        assert!(iat.as_f64().is_some_and(f64::is_finite), "accepted with a non-numeric iat {iat}");
    }
    // The accessors the authenticator uses must not panic either.
    let _ = claims.expires_at();
    let _ = claims.scopes();
}
