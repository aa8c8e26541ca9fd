//! The differential table with incoming auth on: every outcome of a bearer token, and the
//! local routes as an authenticating proxy serves them, through both engines (see
//! `diff.rs`). A scripted IdP serves discovery and one EC key; tokens are signed per
//! proxy, since each one's resource (its default audience) names its own port.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::cases::{FLAGS, post};
use super::diff::{BodyHas, ClientLacks, ClientStarts, Sent, Status, TargetLacks, TargetNoValue};
use super::diff::{Case, Engine, case, run, start_pair};
use super::wire::{OK, Target};
use crate::support::idp::{idp, key, sign};

/// The tokens of one proxy, as placeholders: valid, expired, signed by another key, and
/// one without the required scope.
pub(super) fn tokens(engine: &mut Engine<'_>, issuer: &str, key: &EncodingKey, other: &EncodingKey) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = |exp: u64, scope: &str| {
        json!({"iss": issuer, "aud": engine.thv.url("/mcp"), "sub": "alice", "exp": exp, "iat": now - 7200,
               "scope": scope})
    };
    let made = [
        ("{VALID}", sign(key, &claims(now + 600, "mcp:tools"))),
        ("{EXPIRED}", sign(key, &claims(now - 3600, "mcp:tools"))),
        ("{BADSIG}", sign(other, &claims(now + 600, "mcp:tools"))),
        ("{NOSCOPE}", sign(key, &claims(now + 600, "other"))),
    ];
    engine.vars.extend(made);
}

#[rustfmt::skip]
fn auth_cases() -> Vec<Case> {
    vec![
        case("auth: no token", post!(""), OK,
            &[Status(401), Sent(0), ClientStarts("www-authenticate", "Bearer ")]),
        case("auth: malformed Authorization", post!("Authorization: Bearer a b\r\n"), OK, &[Status(400), Sent(0)]),
        case("auth: bad signature", post!("Authorization: Bearer {BADSIG}\r\n"), OK,
            &[Status(401), Sent(0), ClientStarts("www-authenticate", "Bearer ")]),
        case("auth: expired", post!("Authorization: Bearer {EXPIRED}\r\n"), OK,
            &[Status(401), Sent(0), ClientStarts("www-authenticate", "Bearer ")]),
        case("auth: missing scope", post!("Authorization: Bearer {NOSCOPE}\r\n"), OK,
            &[Status(403), Sent(0), ClientStarts("www-authenticate", "Bearer ")]),
        case("auth: valid", post!("Authorization: Bearer {VALID}\r\n"), OK,
            &[Status(200), Sent(1), TargetLacks("authorization"), TargetNoValue("Bearer")]),
        case("auth: valid GET", "GET /mcp HTTP/1.1\r\n{H}Authorization: Bearer {VALID}\r\n\r\n", OK,
            &[Status(200), Sent(1), TargetLacks("authorization")]),
        case("auth: foreign Host before auth", "GET /mcp HTTP/1.1\r\nHost: evil.example\r\n\r\n", OK,
            &[Status(403), Sent(0), ClientLacks("www-authenticate")]),
        case("auth: RFC 9728 document", "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\n{H}\r\n", OK,
            &[Status(200), Sent(0), BodyHas(r#""resource":"http://127.0.0.1:{PORT}/mcp""#)]),
        case("auth: GET /health without a token", "GET /health HTTP/1.1\r\n{H}\r\n", OK,
            &[Status(200), Sent(0), BodyHas(r#""incoming_auth":true"#)]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_incoming_auth_outcome_is_answered_alike_by_both_engines() {
    let ((key, jwk), (other, _)) = (key(), key());
    let idp = idp(jwk).await;
    let issuer = format!("http://{}", idp.addr);
    let target = Target::start().await;
    let mut flags = FLAGS.to_vec();
    flags.extend(["--oidc-issuer", &issuer, "--oidc-scopes", "mcp:tools"]);
    let (own, hyper) = start_pair(&format!("http://{}/mcp", target.addr), &flags);
    let mut engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    for engine in &mut engines {
        tokens(engine, &issuer, &key, &other);
    }
    let cases = auth_cases();
    let failures = run("incoming auth", &target, &engines, &cases).await;
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
}
