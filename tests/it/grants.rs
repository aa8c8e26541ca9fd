//! Outgoing auth without a browser (`--remote-auth-grant-type client_credentials` and
//! `jwt-bearer`) against a scripted authorization server: the fault cases the conformance
//! scenarios (`interop/outbound`, which cover the happy paths) cannot script. A refused
//! grant is reported as the server said it, once, and never replaced by another grant;
//! tokens are obtained again before they expire; the assertion file is read for each
//! token request; no credential or token reaches the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::outbound::{
    TokenServer, call, complete_login, field, form, health, protected_upstream, start_manual, wait_authenticated,
};
use crate::support::Thv;
use crate::support::auth_server::AuthServer;
use crate::support::upstream::{ScriptedUpstream, reply};

fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("thv-it-grants-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

async fn wait_health(thv: &Thv, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while health(thv).await != want {
        assert!(std::time::Instant::now() < deadline, "health never became {want}:\n{}", thv.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_no_browser_and_no_secrets(thv: &Thv, secrets: &[&str]) {
    let log = thv.stderr();
    assert!(!log.contains("/authorize") && !log.contains("Waiting for the login"), "no browser login:\n{log}");
    assert_not_logged(thv, secrets);
}

/// client_credentials with a secret the server takes only in the form (its metadata lists
/// client_secret_post alone), discovered from an issuer without an authorization endpoint
/// or PKCE; a token about to expire is replaced by a new grant, not kept or refreshed, and
/// so is one the MCP server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_posts_the_secret_and_gets_a_new_token_before_expiry() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["cc-tok-1".to_owned(), "cc-tok-2".to_owned()])));
    let up = protected_upstream(accepted.clone()).await;
    let server = AuthServer::start(serde_json::json!({
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }))
    .await;
    server.push(200, serde_json::json!({"access_token": "cc-tok-1", "token_type": "Bearer", "expires_in": 4}));
    server.push(200, serde_json::json!({"access_token": "cc-tok-2", "token_type": "Bearer", "expires_in": 3600}));
    let secret = temp_file("cc-secret", "the-cc-secret\n");
    let thv = Thv::start(
        &up.url("/mcp"),
        &[
            "--remote-auth-issuer",
            &server.issuer(),
            "--remote-auth-grant-type",
            "client_credentials",
            "--remote-auth-client-id",
            "workload",
            "--remote-auth-client-secret-file",
            secret.to_str().unwrap(),
            "--remote-auth-store=false",
            "--debug",
        ],
    );
    wait_authenticated(&thv).await;
    assert_eq!(call(&thv).await.status(), 200);
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1);
    let (first, authorization) = &requests[0];
    assert_eq!(field(first, "grant_type"), Some("client_credentials"));
    assert_eq!(field(first, "client_id"), Some("workload"));
    assert_eq!(field(first, "client_secret"), Some("the-cc-secret"), "client_secret_post");
    assert_eq!(field(first, "resource"), Some(up.url("/mcp").as_str()), "RFC 8707");
    assert_eq!(field(first, "scope"), None, "no OIDC default scopes for a workload");
    assert_eq!(authorization, &None);

    // A quarter of the 4 s lifetime before expiry, the next request gets a new token (the
    // margins leave a busy machine 3 s for the first request).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(call(&thv).await.status(), 200);
    let requests = server.token_requests();
    assert_eq!(requests.len(), 2, "one new grant");
    assert_eq!(field(&requests[1].0, "grant_type"), Some("client_credentials"));
    let seen_tokens: Vec<String> = up
        .seen()
        .iter()
        .filter_map(|s| s.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(seen_tokens.last().map(String::as_str), Some("Bearer cc-tok-2"));

    // The MCP server stops accepting cc-tok-2: its 401 leads to one new grant and one retry,
    // which the client never sees.
    accepted.lock().unwrap().clear();
    accepted.lock().unwrap().insert("cc-tok-3".into());
    server.push(200, serde_json::json!({"access_token": "cc-tok-3", "token_type": "Bearer", "expires_in": 3600}));
    assert_eq!(call(&thv).await.status(), 200);
    let requests = server.token_requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(field(&requests[2].0, "grant_type"), Some("client_credentials"));
    assert_no_browser_and_no_secrets(&thv, &["the-cc-secret", "cc-tok-1", "cc-tok-2", "cc-tok-3"]);
}

/// A grant the server's grant_types_supported does not list is refused at login, naming
/// the grant and the server; nothing is asked of the token endpoint, no other grant tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_the_server_does_not_offer_is_an_error_naming_it() {
    let up = protected_upstream(Arc::default()).await;
    let server = AuthServer::start(serde_json::json!({
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "authorization_endpoint": "http://127.0.0.1:1/authorize",
        "code_challenge_methods_supported": ["S256"],
    }))
    .await;
    let secret = temp_file("unlisted-secret", "s3cret");
    let thv = Thv::start(
        &up.url("/mcp"),
        &[
            "--remote-auth-issuer",
            &server.issuer(),
            "--remote-auth-grant-type",
            "client_credentials",
            "--remote-auth-client-id",
            "workload",
            "--remote-auth-client-secret-file",
            secret.to_str().unwrap(),
        ],
    );
    wait_health(&thv, "login-failed").await;
    let resp = call(&thv).await;
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("client_credentials") && body.contains(&server.issuer()), "{body}");
    assert!(server.token_requests().is_empty(), "no token request, no fallback");
    assert_no_browser_and_no_secrets(&thv, &["s3cret"]);
}

/// jwt-bearer: the assertion file is read for every token request (a rotated token is
/// used), and an `invalid_grant` is surfaced with the server's words, once: no retry, no
/// other grant, until the re-login backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_reads_the_assertion_each_time_and_surfaces_invalid_grant_once() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["wif-tok-1".to_owned(), "wif-tok-2".to_owned()])));
    let up = protected_upstream(accepted).await;
    let server = AuthServer::start(serde_json::json!({
        "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
    }))
    .await;
    server.push(200, serde_json::json!({"access_token": "wif-tok-1", "token_type": "Bearer", "expires_in": 4}));
    server.push(200, serde_json::json!({"access_token": "wif-tok-2", "token_type": "Bearer", "expires_in": 4}));
    server.push(400, serde_json::json!({"error": "invalid_grant", "error_description": "JWT assertion is expired"}));
    let assertion = temp_file("assertion", "eyJ.first-projected-token.sig\n");
    let thv = Thv::start(
        &up.url("/mcp"),
        &[
            "--remote-auth-issuer",
            &server.issuer(),
            "--remote-auth-grant-type",
            "jwt-bearer",
            "--remote-auth-assertion-file",
            assertion.to_str().unwrap(),
            "--debug",
        ],
    );
    wait_authenticated(&thv).await;
    // The kubelet rotates the token; the next token request presents the new one.
    std::fs::write(&assertion, "eyJ.second-projected-token.sig").unwrap();
    assert_eq!(call(&thv).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(call(&thv).await.status(), 200);
    // The third grant is refused.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let resp = call(&thv).await;
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("invalid_grant") && body.contains("JWT assertion is expired"), "{body}");
    // Later requests get the same answer without asking the server again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call(&thv).await.status(), 503);
    let requests = server.token_requests();
    assert_eq!(requests.len(), 3, "no retry after invalid_grant");
    let assertions: Vec<_> =
        requests.iter().map(|(f, _)| field(f, "assertion").unwrap_or_default().to_owned()).collect();
    assert_eq!(
        assertions,
        ["eyJ.first-projected-token.sig", "eyJ.second-projected-token.sig", "eyJ.second-projected-token.sig"]
    );
    for (f, authorization) in &requests {
        assert_eq!(field(f, "grant_type"), Some("urn:ietf:params:oauth:grant-type:jwt-bearer"), "never another grant");
        assert_eq!((field(f, "client_id"), authorization), (None, &None), "no client authentication configured");
    }
    assert_eq!(health(&thv).await, "login-failed");
    assert!(thv.stderr().contains("JWT assertion is expired"));
    assert_no_browser_and_no_secrets(
        &thv,
        &["first-projected-token", "second-projected-token", "wif-tok-1", "wif-tok-2"],
    );
}

/// The assertion key also authenticates the browser login's token requests: the code
/// exchange and the refresh each carry a new private_key_jwt assertion (RFC 7523 §2.2)
/// that verifies with the public key, names the client, and is meant for the token
/// endpoint (no issuer is known with manual endpoints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assertion_key_authenticates_the_code_exchange_and_the_refresh() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, KeyPair};
    let (key, public, pem_body) = p256_key("key.pem");

    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned()])));
    let up = protected_upstream(accepted.clone()).await;
    let tokens = TokenServer::start().await;
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}));
    let (thv, port) = start_manual(
        &up,
        &tokens.server,
        &["--remote-auth-store=false", "--remote-auth-client-assertion-key-file", key.to_str().unwrap()],
    );
    complete_login(&thv, port, 1).await;
    // The upstream stops accepting tok-1: a refresh, with a new assertion.
    accepted.lock().unwrap().insert("tok-2".into());
    accepted.lock().unwrap().remove("tok-1");
    tokens.push(200, serde_json::json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}));
    assert_eq!(call(&thv).await.status(), 200);

    let grants = tokens.grants();
    assert_eq!(
        grants.iter().map(|g| field(g, "grant_type").unwrap()).collect::<Vec<_>>(),
        ["authorization_code", "refresh_token"]
    );
    let mut jtis = HashSet::new();
    for grant in &grants {
        assert_eq!(
            field(grant, "client_assertion_type"),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert_eq!(field(grant, "client_id"), Some("cid"));
        assert_eq!(field(grant, "client_secret"), None);
        let jwt = field(grant, "client_assertion").expect("a client assertion");
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        aws_lc_rs::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public.public_key().as_ref())
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap())
            .expect("the assertion verifies with the client's public key");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("cid"), Some("cid")));
        assert_eq!(claims["aud"].as_str(), Some(tokens.server.url("/token").as_str()));
        assert!(jtis.insert(claims["jti"].as_str().unwrap().to_owned()), "a fresh jti each time");
    }
    assert_not_logged(&thv, &[&pem_body[..40], "tok-1", "tok-2", "rt-1"]);
}

/// A new EC P-256 key in a PEM file: the file, the key pair and the PEM's base64 body.
fn p256_key(name: &str) -> (std::path::PathBuf, aws_lc_rs::signature::EcdsaKeyPair, String) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let body = STANDARD.encode(pkcs8.as_ref());
    let file = temp_file(name, &format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"));
    (file, pair, body)
}

/// A key the server's metadata rules out (its algorithm is not listed) is an error at
/// login naming both, before any token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_algorithm_the_server_does_not_list_is_an_error_naming_it() {
    let up = protected_upstream(Arc::default()).await;
    let server = AuthServer::start(serde_json::json!({
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256"],
    }))
    .await;
    let (key, _, _) = p256_key("es256.pem");
    let thv = Thv::start(
        &up.url("/mcp"),
        &[
            "--remote-auth-issuer",
            &server.issuer(),
            "--remote-auth-grant-type",
            "client_credentials",
            "--remote-auth-client-id",
            "workload",
            "--remote-auth-client-assertion-key-file",
            key.to_str().unwrap(),
        ],
    );
    wait_health(&thv, "login-failed").await;
    let body = call(&thv).await.text().await.unwrap();
    assert!(body.contains("ES256") && body.contains("RS256, PS256") && body.contains(&server.issuer()), "{body}");
    assert!(server.token_requests().is_empty());
}

fn assert_not_logged(thv: &Thv, secrets: &[&str]) {
    let log = thv.stderr();
    for secret in secrets {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// A scripted enterprise IdP whose token endpoint answers every exchange with an ID-JAG
/// carrying `claims`.
async fn idp(claims: serde_json::Value) -> ScriptedUpstream {
    ScriptedUpstream::start(move |_| {
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let jag = format!("{}.{}.c2ln", part(serde_json::json!({"alg": "ES256", "typ": "oauth-id-jag+jwt"})), part(claims.clone()));
        let body = serde_json::json!({"access_token": jag, "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag", "token_type": "N_A"});
        reply(200, &[("content-type", "application/json")], &body.to_string())
    })
    .await
}

/// id-jag: the ID token is exchanged at the IdP (RFC 8693, with the IdP client's secret)
/// for an ID-JAG for the authorization server and the MCP server; one meant for another
/// audience is not presented: the login fails naming the claim, and the authorization
/// server is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_jag_is_checked_before_it_is_presented() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["jag-tok".to_owned()])));
    let up = protected_upstream(accepted).await;
    let server = AuthServer::start(serde_json::json!({
        "grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
    }))
    .await;
    server.push(200, serde_json::json!({"access_token": "jag-tok", "token_type": "Bearer", "expires_in": 3600}));
    let resource = up.url("/mcp");
    let id_token = temp_file("id-token", "eyJ.the-users-id-token.sig");
    let start = |idp: &ScriptedUpstream| {
        Thv::start_env(
            &up.url("/mcp"),
            &[
                "--remote-auth-issuer",
                &server.issuer(),
                "--remote-auth-grant-type",
                "id-jag",
                "--remote-auth-client-id",
                "mcp-client",
                "--remote-auth-idp-token-url",
                &idp.url("/token"),
                "--remote-auth-idp-client-id",
                "idp-client",
                "--remote-auth-subject-token-file",
                id_token.to_str().unwrap(),
                "--debug",
            ],
            &[("TOOLHIVE_REMOTE_AUTH_IDP_CLIENT_SECRET", "idp-secret")],
        )
    };

    let wrong =
        idp(serde_json::json!({"aud": "https://elsewhere.example", "resource": resource, "client_id": "mcp-client"}))
            .await;
    let thv = start(&wrong);
    wait_health(&thv, "login-failed").await;
    let body = call(&thv).await.text().await.unwrap();
    assert!(body.contains("aud") && body.contains("https://elsewhere.example"), "{body}");
    assert!(server.token_requests().is_empty(), "an ID-JAG for someone else is never presented");
    drop(thv);

    let good = idp(serde_json::json!({"aud": server.issuer(), "resource": resource, "client_id": "mcp-client"})).await;
    let thv = start(&good);
    wait_authenticated(&thv).await;
    assert_eq!(call(&thv).await.status(), 200);
    let exchange = good.seen().into_iter().next().expect("an exchange at the IdP");
    let f = form(&exchange);
    assert_eq!(field(&f, "grant_type"), Some("urn:ietf:params:oauth:grant-type:token-exchange"));
    assert_eq!(field(&f, "subject_token"), Some("eyJ.the-users-id-token.sig"));
    assert_eq!(field(&f, "subject_token_type"), Some("urn:ietf:params:oauth:token-type:id_token"));
    assert_eq!(field(&f, "requested_token_type"), Some("urn:ietf:params:oauth:token-type:id-jag"));
    assert_eq!(field(&f, "audience"), Some(server.issuer().as_str()));
    assert_eq!(field(&f, "resource"), Some(resource.as_str()));
    let basic = exchange.headers.get("authorization").unwrap().to_str().unwrap().to_owned();
    assert_eq!(basic, format!("Basic {}", STANDARD.encode("idp-client:idp-secret")));
    let requests = server.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(field(&requests[0].0, "grant_type"), Some("urn:ietf:params:oauth:grant-type:jwt-bearer"));
    assert!(field(&requests[0].0, "assertion").is_some_and(|a| a.ends_with(".c2ln")), "the ID-JAG is the assertion");
    assert_not_logged(&thv, &["the-users-id-token", "idp-secret", "jag-tok", "c2ln"]);
}
