//! The differential table with token exchange on (RFC 8693, `--token-exchange-*`): the
//! exchanged token in place of the client's, in `Authorization` or in the field
//! `--token-exchange-header-name` names, and every fault of the exchange server answered
//! alike by both engines (see `diff.rs`). The exchange server here is an in-process fake
//! that fails on purpose, picked by the subject token's `sub`; the real exchange
//! (oidc-provider with an RFC 8693 grant) is `interop/auth/exchange.mjs`'s.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::cases::{FLAGS, post};
use super::diff::{BodyHas, ClientHas, ClientStarts, Sent, Status, TargetHas, TargetLacks, TargetNoValue};
use super::diff::{Case, Engine, case, run, start_pair};
use super::wire::{OK, Target};
use crate::support::idp::{idp, key, sign};
use crate::support::upstream::{ScriptedUpstream, reply};

const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `proxy:s3cret` as HTTP Basic credentials.
const CLIENT: &str = "Basic cHJveHk6czNjcmV0";

/// The `sub` of a JWT, unverified (the fake trusts the proxy, which verified it).
fn sub_of(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    claims["sub"].as_str().unwrap_or_default().to_owned()
}

/// The fake exchange server: RFC 8693's answer for `alice` and `bob`, and for the other
/// subjects the fault their name says.
async fn exchange_server() -> ScriptedUpstream {
    ScriptedUpstream::start(|seen| {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&seen.body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let json = [("content-type", "application/json")];
        if seen.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(CLIENT) {
            return reply(401, &json, r#"{"error":"invalid_client"}"#);
        }
        if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
            || field("subject_token_type") != ACCESS_TOKEN
            || field("requested_token_type") != ACCESS_TOKEN
            || field("audience") != "upstream"
            || field("scope") != "mcp:read mcp:write"
        {
            return reply(400, &json, r#"{"error":"invalid_request"}"#);
        }
        match sub_of(field("subject_token")).as_str() {
            sub @ ("alice" | "bob") => {
                let body = json!({"access_token": format!("exchanged-{sub}"), "token_type": "Bearer",
                    "issued_token_type": ACCESS_TOKEN, "expires_in": 300});
                reply(200, &json, &body.to_string())
            }
            "refused" => reply(400, &json, r#"{"error":"invalid_grant","error_description":"subject revoked"}"#),
            "boom" => reply(500, &json, r#"{"error":"server_error"}"#),
            "garbage" => reply(200, &[("content-type", "text/html")], "<html>login</html>"),
            "noissued" => reply(200, &json, r#"{"access_token":"x","token_type":"Bearer"}"#),
            _ => reply(400, &json, r#"{"error":"invalid_grant"}"#),
        }
    })
    .await
}

/// The tokens of one proxy, one per subject the fake knows.
fn tokens(engine: &mut Engine<'_>, issuer: &str, key: &EncodingKey) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for (var, sub) in [
        ("{ALICE}", "alice"),
        ("{BOB}", "bob"),
        ("{REFUSED}", "refused"),
        ("{BOOM}", "boom"),
        ("{GARBAGE}", "garbage"),
        ("{NOISSUED}", "noissued"),
    ] {
        let claims = json!({"iss": issuer, "aud": engine.thv.url("/mcp"), "sub": sub, "exp": now + 600, "iat": now});
        engine.vars.push((var, sign(key, &claims)));
    }
}

/// A JSON-RPC request with id 7, with `$fields`.
macro_rules! ping_with {
    ($fields:literal) => {
        concat!(
            "POST /mcp HTTP/1.1\r\n{H}",
            $fields,
            "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n",
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#
        )
    };
}

#[rustfmt::skip]
fn replace_cases() -> Vec<Case> {
    vec![
        case("exchange: alice", post!("Authorization: Bearer {ALICE}\r\n"), OK,
            &[Status(200), Sent(1), TargetHas("authorization", "Bearer exchanged-alice"), TargetNoValue("eyJ")]),
        case("exchange: alice again (cached)", post!("Authorization: Bearer {ALICE}\r\n"), OK,
            &[Status(200), Sent(1), TargetHas("authorization", "Bearer exchanged-alice")]),
        case("exchange: bob", "GET /mcp HTTP/1.1\r\n{H}Authorization: Bearer {BOB}\r\n\r\n", OK,
            &[Status(200), Sent(1), TargetHas("authorization", "Bearer exchanged-bob"), TargetNoValue("eyJ")]),
        case("exchange: no token is incoming auth's 401", post!(""), OK,
            &[Status(401), Sent(0), ClientStarts("www-authenticate", "Bearer ")]),
        case("exchange: invalid_grant", ping_with!("Authorization: Bearer {REFUSED}\r\n"), OK,
            &[Status(401), Sent(0), ClientStarts("www-authenticate", "Bearer "), BodyHas(r#""id":7"#),
              BodyHas(r#""code":-32001"#), BodyHas("refused it")]),
        case("exchange: server error", ping_with!("Authorization: Bearer {BOOM}\r\n"), OK,
            &[Status(503), Sent(0), ClientHas("retry-after", "5"), BodyHas(r#""id":7"#), BodyHas(r#""code":-32000"#)]),
        case("exchange: garbage", post!("Authorization: Bearer {GARBAGE}\r\n"), OK,
            &[Status(503), Sent(0), BodyHas(r#""code":-32000"#)]),
        case("exchange: no issued_token_type", post!("Authorization: Bearer {NOISSUED}\r\n"), OK,
            &[Status(503), Sent(0), BodyHas(r#""code":-32000"#)]),
    ]
}

#[rustfmt::skip]
fn custom_header_cases() -> Vec<Case> {
    vec![
        case("exchange header: alice, a forged field replaced",
            post!("Authorization: Bearer {ALICE}\r\nX-Upstream-Token: Bearer forged\r\n"), OK,
            &[Status(200), Sent(1), TargetHas("x-upstream-token", "Bearer exchanged-alice"),
              TargetLacks("authorization"), TargetNoValue("forged"), TargetNoValue("eyJ")]),
        case("exchange header: invalid_grant", post!("Authorization: Bearer {REFUSED}\r\n"), OK,
            &[Status(401), Sent(0)]),
    ]
}

const EXCHANGE_FLAGS: [&str; 8] = [
    "--token-exchange-client-id",
    "proxy",
    "--token-exchange-client-secret",
    "s3cret",
    "--token-exchange-audience",
    "upstream",
    "--token-exchange-scopes",
    "mcp:read,mcp:write",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_is_applied_and_its_faults_answered_alike_by_both_engines() {
    let (key, jwk) = key();
    let idp = idp(jwk).await;
    let issuer = format!("http://{}", idp.addr);
    let sts = exchange_server().await;
    let target = Target::start().await;
    let sts_url = sts.url("/token");
    let mut flags = FLAGS.to_vec();
    flags.extend(["--oidc-issuer", &issuer, "--token-exchange-url", &sts_url]);
    flags.extend(EXCHANGE_FLAGS);
    let upstream = format!("http://{}/mcp", target.addr);

    let (own, hyper) = start_pair(&upstream, &flags);
    let mut engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    for engine in &mut engines {
        tokens(engine, &issuer, &key);
    }
    let cases = replace_cases();
    let mut failures = run("token exchange", &target, &engines, &cases).await;
    // Each proxy exchanged alice's token once for her two requests (cached by digest).
    let subjects: Vec<String> = sts
        .seen()
        .iter()
        .map(|s| url::form_urlencoded::parse(&s.body).find(|(k, _)| k == "subject_token").map(|(_, t)| sub_of(&t)))
        .map(Option::unwrap_or_default)
        .collect();
    let alice = subjects.iter().filter(|s| *s == "alice").count();
    assert_eq!(alice, 2, "one exchange of alice's token per proxy");
    let secret_logged = [&own, &hyper].iter().any(|t| {
        let log = t.stderr();
        log.contains("s3cret") || log.contains("exchanged-") || log.contains("eyJ")
    });
    assert!(!secret_logged, "the client secret or an exchanged token reached the log");

    flags.extend(["--token-exchange-header-name", "X-Upstream-Token"]);
    let (own, hyper) = start_pair(&upstream, &flags);
    let mut engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    for engine in &mut engines {
        tokens(engine, &issuer, &key);
    }
    let custom = custom_header_cases();
    failures.extend(run("token exchange, own header", &target, &engines, &custom).await);
    assert!(
        failures.is_empty(),
        "{} differential cases; failures:\n{}",
        cases.len() + custom.len(),
        failures.join("\n")
    );
}
