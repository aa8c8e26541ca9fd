//! A scripted OpenID Provider for the tests that need incoming auth without a real IdP:
//! discovery and a JWKS with one EC P-256 key, and tokens signed with it.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::upstream::{ScriptedUpstream, reply};

/// An EC P-256 key with kid `k1`: its signing half and its public JWK.
pub fn key() -> (EncodingKey, Value) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

/// A scripted IdP: OIDC discovery and a JWKS with `jwk`.
pub async fn idp(jwk: Value) -> ScriptedUpstream {
    ScriptedUpstream::start(move |seen| {
        let issuer = format!("http://{}", seen.headers["host"].to_str().unwrap());
        let doc = match seen.uri.path() {
            "/.well-known/openid-configuration" => json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}),
            "/jwks" => json!({"keys": [jwk.clone()]}),
            _ => return reply(404, &[], ""),
        };
        reply(200, &[("content-type", "application/json")], &doc.to_string())
    })
    .await
}

pub fn sign(key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}
