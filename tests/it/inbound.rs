//! Incoming authentication against a scripted IdP: challenge and metadata shapes, token
//! passthrough, scopes, key rotation, and the failures a real IdP will not produce on
//! demand (outages, garbage, issuer mismatch). The real-IdP tests (npm `oidc-provider`,
//! the Python SDK's OAuth client, a hostile-token corpus) live in `interop/auth`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::upstream::{ScriptedUpstream, reply};
use crate::support::{Thv, run_thv};

/// An EC P-256 signing key made for this test run, with its public JWK.
struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &str) -> TestKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref(); // 0x04 || x || y
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        TestKey { kid: kid.to_owned(), encoding: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A scripted IdP: discovery, a JWKS the test can replace, an introspection endpoint whose
/// answer the test chooses; counts JWKS fetches.
struct Idp {
    server: ScriptedUpstream,
    jwks: Arc<Mutex<Value>>,
    jwks_fetches: Arc<AtomicUsize>,
    introspection: Arc<Mutex<(u16, Value)>>,
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Idp {
        Idp::start_with_issuer(keys, None).await
    }

    /// `claimed_issuer`: what discovery says the issuer is (default: the real URL).
    async fn start_with_issuer(keys: &[&TestKey], claimed_issuer: Option<&'static str>) -> Idp {
        let jwks = Arc::new(Mutex::new(json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let introspection = Arc::new(Mutex::new((200, json!({"active": false}))));
        let (j, f, i) = (jwks.clone(), jwks_fetches.clone(), introspection.clone());
        let server = ScriptedUpstream::start(move |seen| {
            let issuer = format!("http://{}", seen.headers["host"].to_str().unwrap());
            let json_reply = |status: u16, v: &Value| reply(status, &[("content-type", "application/json")], &v.to_string());
            match seen.uri.path() {
                "/.well-known/openid-configuration" => json_reply(
                    200,
                    &json!({"issuer": claimed_issuer.map_or(issuer.clone(), str::to_owned), "jwks_uri": format!("{issuer}/jwks"), "introspection_endpoint": format!("{issuer}/introspect")}),
                ),
                "/jwks" => {
                    f.fetch_add(1, Ordering::SeqCst);
                    json_reply(200, &j.lock().unwrap())
                }
                "/introspect" => {
                    let (status, body) = i.lock().unwrap().clone();
                    json_reply(status, &body)
                }
                _ => reply(404, &[], ""),
            }
        })
        .await;
        Idp { server, jwks, jwks_fetches, introspection }
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

/// An upstream that records what reached it.
async fn upstream() -> ScriptedUpstream {
    ScriptedUpstream::start(|_| {
        reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
    })
    .await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn claims(thv: &Thv, issuer: &str, extra: Value) -> Value {
    let mut c = json!({"iss": issuer, "aud": thv.url("/mcp"), "sub": "alice", "exp": now() + 300, "iat": now(), "scope": "mcp:tools"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn call(thv: &Thv, token: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(thv.url("/mcp"))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_gets_a_challenge_that_leads_to_the_metadata() {
    let key = TestKey::new("k1");
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer(), "--oidc-scopes", "mcp:tools"]);

    let resp = call(&thv, None).await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let metadata_url = format!("http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp", thv.port);
    assert_eq!(
        challenge,
        format!(r#"Bearer realm="{}", scope="mcp:tools", resource_metadata="{metadata_url}""#, idp.issuer())
    );
    assert!(!challenge.contains("error="), "no error code without credentials (RFC 6750 §3.1)");

    let doc: Value =
        client().get(&metadata_url).header("origin", "https://any.example").send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["resource"], thv.url("/mcp"));
    assert_eq!(doc["authorization_servers"], json!([idp.issuer()]));
    assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    let root = client().get(thv.url("/.well-known/oauth-protected-resource")).send().await.unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(root.headers()["access-control-allow-origin"], "*");
    // A client that reached the proxy as localhost sees localhost in `resource`.
    let doc: Value = client()
        .get(&metadata_url)
        .header("host", format!("localhost:{}", thv.port))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], format!("http://localhost:{}/mcp", thv.port));
    assert!(up.seen().is_empty(), "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_pass_and_never_reach_the_upstream() {
    let key = TestKey::new("k1");
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer(), "--oidc-scopes", "mcp:tools", "--debug"]);
    let token = key.sign(&claims(&thv, &idp.issuer(), json!({})));
    for _ in 0..3 {
        assert_eq!(call(&thv, Some(&token)).await.status(), 200);
    }
    let localhost_aud =
        key.sign(&claims(&thv, &idp.issuer(), json!({"aud": format!("http://localhost:{}/mcp", thv.port)})));
    assert_eq!(call(&thv, Some(&localhost_aud)).await.status(), 200, "every name of this proxy is its audience");
    let seen = up.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|s| s.headers.get("authorization").is_none()),
        "the client's token must not be passed through"
    );
    let log = thv.stderr();
    assert!(log.contains("subject=alice"), "{log}");
    assert!(!log.contains(&token), "tokens are never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_invalid_token() {
    let key = TestKey::new("k1");
    let stranger = TestKey::new("k1"); // same kid, other key: a forged signature
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer()]);
    let iss = idp.issuer();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(&thv, &iss, json!({}))));
    let hs256 = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(
            &h,
            &claims(&thv, &iss, json!({})),
            &EncodingKey::from_secret(key.jwk.to_string().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let with_jku = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        h.jku = Some("https://evil.example/jwks".into());
        jsonwebtoken::encode(&h, &claims(&thv, &iss, json!({})), &key.encoding).unwrap()
    };
    let cases = [
        ("expired", key.sign(&claims(&thv, &iss, json!({"exp": now() - 3600})))),
        ("not yet valid", key.sign(&claims(&thv, &iss, json!({"nbf": now() + 3600})))),
        ("no exp", key.sign(&claims(&thv, &iss, json!({"exp": null})))),
        ("other audience", key.sign(&claims(&thv, &iss, json!({"aud": "https://other.example/mcp"})))),
        ("no audience", key.sign(&claims(&thv, &iss, json!({"aud": null})))),
        ("other issuer", key.sign(&claims(&thv, &iss, json!({"iss": "https://evil.example"})))),
        ("forged signature", stranger.sign(&claims(&thv, &iss, json!({})))),
        ("alg none", unsigned),
        ("HS256 with the public key", hs256),
        ("jku header", with_jku),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (name, token) in &cases {
        let resp = call(&thv, Some(token)).await;
        assert_eq!(resp.status(), 401, "{name}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains(r#"error="invalid_token""#), "{name}: {challenge}");
        assert!(challenge.contains("resource_metadata="), "{name}: {challenge}");
    }
    // Malformed credentials are a bad request, and query-string tokens are never read.
    let resp = client()
        .post(thv.url("/mcp"))
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let good = key.sign(&claims(&thv, &iss, json!({})));
    let resp = client().post(thv.url(&format!("/mcp?access_token={good}"))).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(up.seen().is_empty(), "no refused request reached the upstream");
}

/// A keep-alive connection on the own HTTP/1.1 path remembers its last accepted token:
/// only that exact token passes without a check, and only until the token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reuses_only_its_exact_token_and_only_until_it_expires() {
    let key = TestKey::new("k1");
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer(), "--oidc-leeway", "0s"]);
    let exp = now() + 2;
    let token = key.sign(&claims(&thv, &idp.issuer(), json!({"exp": exp})));
    // The same length, one signature character changed: a forgery a length or prefix
    // comparison would let through.
    let forged = {
        let mut bytes = token.clone().into_bytes();
        let at = bytes.len() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let host = format!("127.0.0.1:{}", thv.port);
    let mut send = async |token: &str| {
        let req = http::Request::post("/mcp")
            .header("host", &host)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            )))
            .unwrap();
        sender.ready().await.expect("one connection throughout");
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await.unwrap().unwrap();
        let status = resp.status().as_u16();
        let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        (status, challenge)
    };
    assert_eq!(send(&token).await, (200, None));
    let (status, challenge) = send(&forged).await;
    assert_eq!(status, 401, "a forged token on a connection that had a good one");
    assert!(challenge.unwrap().contains("invalid_token"));
    assert_eq!(send(&token).await, (200, None), "the good token again");
    // Bounded: exp is two seconds away.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, challenge) = send(&token).await;
    assert_eq!(status, 401, "the remembered token expired");
    assert!(challenge.unwrap().contains("expired"));
    assert_eq!(up.seen().len(), 2, "only the accepted requests reached the upstream");
    drop(sender);
    conn.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scope_gets_403_insufficient_scope() {
    let key = TestKey::new("k1");
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer(), "--oidc-scopes", "mcp:tools,mcp:admin"]);
    let token = key.sign(&claims(&thv, &idp.issuer(), json!({"scope": "mcp:tools"})));
    let resp = call(&thv, Some(&token)).await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#) && challenge.contains(r#"scope="mcp:tools mcp:admin""#),
        "{challenge}"
    );
    let both = key.sign(&claims(&thv, &idp.issuer(), json!({"scope": "mcp:admin mcp:tools other"})));
    assert_eq!(call(&thv, Some(&both)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_picked_up_and_kid_floods_are_rate_limited() {
    let old = TestKey::new("old");
    let idp = Idp::start(&[&old]).await;
    let up = upstream().await;
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer()]);
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1);

    let new = TestKey::new("new");
    *idp.jwks.lock().unwrap() = json!({"keys": [new.jwk.clone(), old.jwk.clone()]});
    let token = new.sign(&claims(&thv, &idp.issuer(), json!({})));
    assert_eq!(call(&thv, Some(&token)).await.status(), 200, "a new kid triggers a refetch");
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 2);

    let flood: Vec<_> = (0..50).map(|i| TestKey::new(&format!("random-{i}"))).collect();
    let calls = flood.iter().map(|k| {
        let token = k.sign(&claims(&thv, &idp.issuer(), json!({})));
        let thv = &thv;
        async move { call(thv, Some(&token)).await.status() }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 401));
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 2, "no refetch within the rate-limit window");

    // An IdP outage keeps the last good keys: a token never seen before (so no verdict of
    // it is cached) still verifies with them.
    let issuer = idp.issuer();
    drop(idp);
    let fresh = new.sign(&claims(&thv, &issuer, json!({"sub": "after-the-outage"})));
    assert_ne!(fresh, token);
    assert_eq!(call(&thv, Some(&fresh)).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_checks_opaque_tokens_and_fails_closed() {
    let key = TestKey::new("k1");
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let intro = format!("{}/introspect", idp.issuer());
    let thv = Thv::start(
        &up.url("/mcp"),
        &[
            "--oidc-issuer",
            &idp.issuer(),
            "--oidc-introspection-url",
            &intro,
            "--oidc-client-id",
            "proxy",
            "--oidc-client-secret",
            "s3cret",
            "--oidc-introspection-cache-ttl",
            "0",
        ],
    );
    *idp.introspection.lock().unwrap() =
        (200, json!({"active": true, "client_id": "svc", "aud": thv.url("/mcp"), "exp": now() + 60}));
    assert_eq!(call(&thv, Some("opaque-1")).await.status(), 200);
    let asked = idp.server.seen().into_iter().find(|s| s.uri.path() == "/introspect").unwrap();
    assert!(asked.headers["authorization"].to_str().unwrap().starts_with("Basic "), "client authentication");
    assert!(std::str::from_utf8(&asked.body).unwrap().contains("token=opaque-1"));

    *idp.introspection.lock().unwrap() = (200, json!({"active": false}));
    assert_eq!(call(&thv, Some("opaque-2")).await.status(), 401);
    *idp.introspection.lock().unwrap() = (200, json!({"active": true, "aud": "https://other.example"}));
    assert_eq!(call(&thv, Some("opaque-3")).await.status(), 401);

    // An endpoint that fails is not a verdict: 503, never a valid identity.
    *idp.introspection.lock().unwrap() = (500, json!({"error": "server_error"}));
    let resp = call(&thv, Some("opaque-4")).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    thv.wait_for_stderr("token introspection failed");
    let body = resp.text().await.unwrap();
    assert!(body.contains("did not answer usably"), "reached, so not 'cannot be reached': {body}");

    // Reached and saying inactive, with a 401 (the MCP TypeScript SDK's demo server does
    // this): a verdict on the token, so the client logs in again instead of retrying.
    *idp.introspection.lock().unwrap() = (401, json!({"active": false}));
    let resp = call(&thv, Some("opaque-5")).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // Refusing the proxy's own credentials: the operator's problem, said to the client
    // and logged as an ERROR that names the flags; no Retry-After (waiting will not fix it).
    *idp.introspection.lock().unwrap() = (401, json!({"error": "invalid_client"}));
    let resp = call(&thv, Some("opaque-6")).await;
    assert_eq!(resp.status(), 503);
    assert!(!resp.headers().contains_key("retry-after"));
    assert!(resp.text().await.unwrap().contains("refuses the proxy's credentials"));
    let log = thv.wait_for_stderr("refuses the proxy's credentials");
    let line = log.lines().find(|l| l.contains("refuses the proxy's credentials")).unwrap();
    assert!(line.contains("ERROR") && line.contains("--oidc-client-secret"), "{line}");
    *idp.introspection.lock().unwrap() = (400, json!({"error": "invalid_client"}));
    assert_eq!(call(&thv, Some("opaque-7")).await.status(), 503);

    assert_eq!(up.seen().len(), 1);
    assert!(!thv.stderr().contains("s3cret"));
    assert!(!thv.stderr().contains("opaque-"), "tokens are never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_introspection_endpoint_is_said_to_be_unreachable() {
    let key = TestKey::new("k1");
    let idp = Idp::start(&[&key]).await;
    let up = upstream().await;
    let intro = format!("http://127.0.0.1:{}/introspect", crate::support::upstream::closed_port());
    let thv = Thv::start(&up.url("/mcp"), &["--oidc-issuer", &idp.issuer(), "--oidc-introspection-url", &intro]);
    let resp = call(&thv, Some("opaque-1")).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(resp.text().await.unwrap().contains("cannot be reached"));
    assert!(up.seen().is_empty());
}

#[test]
fn an_inconsistent_or_missing_idp_stops_startup_naming_the_flag() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = TestKey::new("k1");
    let liar = rt.block_on(Idp::start_with_issuer(&[&key], Some("https://someone-else.example")));
    let (code, out, err) =
        run_thv(&["proxy", "s", "--target-uri", "http://127.0.0.1:9/mcp", "--oidc-issuer", &liar.issuer()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--oidc-issuer") && err.contains("https://someone-else.example"), "{err}");
    assert!(!out.contains("proxy started"));

    let (code, _, err) = run_thv(&[
        "proxy",
        "s",
        "--target-uri",
        "http://127.0.0.1:9/mcp",
        "--oidc-jwks-url",
        &format!("{}/nothing-here", liar.issuer()),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--oidc-jwks-url") && err.contains("404"), "{err}");
    drop(liar);
}
