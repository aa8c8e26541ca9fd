//! DPoP (RFC 9449, `--remote-auth-dpop`) against a scripted authorization server and MCP
//! server that both demand a nonce: the proxy's token request is resent once with the
//! authorization server's nonce (§8), its first request to the MCP server once with the MCP
//! server's (§9), and every request after carries `Authorization: DPoP` and a fresh proof
//! (its own `jti`, the request's `htm` and `htu`, the token's `ath`) signed by the key in its
//! `jwk`. Both engines are run (the default and `THV_HTTP1=hyper`, as `engine::diff`'s
//! pairs); with outgoing auth both send through the one place credentials are added
//! (`Outbound::send`). The happy path against the official suite
//! is interop/outbound's `auth/dpop` and `auth/dpop-nonce`.

use std::collections::HashSet;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::outbound::{client, health, wait_authenticated};
use crate::support::Thv;
use crate::support::auth_server::{AuthServer, Script, TokenHandler};
use crate::support::upstream::{ScriptedUpstream, Seen, reply};

const TOKEN: &str = "dpop-bound-token-7f3a";
const AS_NONCE: &str = "as-nonce-1";
const RS_NONCE: &str = "rs-nonce-1";

/// The proof of `seen`, verified as RFC 9449 §4.3 says (header, signature by its own
/// `jwk`); its claims, or why it is not valid.
fn proof_claims(seen: &Seen) -> Result<Value, String> {
    let proof = seen.headers.get("dpop").ok_or("no DPoP header")?.to_str().map_err(|e| e.to_string())?;
    let parts: Vec<&str> = proof.split('.').collect();
    let [head, body, signature] = parts[..] else { return Err("not a JWS".into()) };
    let decode = |s: &str| -> Result<Value, String> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    };
    let header = decode(head)?;
    if header["typ"] != "dpop+jwt" || header["alg"] != "ES256" || header["jwk"].get("d").is_some() {
        return Err(format!("bad header {header}"));
    }
    let coordinate =
        |k: &str| URL_SAFE_NO_PAD.decode(header["jwk"][k].as_str().unwrap_or_default()).unwrap_or_default();
    let point = [vec![4u8], coordinate("x"), coordinate("y")].concat();
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(format!("{head}.{body}").as_bytes(), &signature)
        .map_err(|_| "the signature does not verify with the jwk")?;
    decode(body)
}

fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// An authorization server whose metadata lists `algs` (when given) and whose token endpoint
/// wants the nonce before it issues a DPoP token.
async fn auth_server(algs: Option<Value>) -> AuthServer {
    let mut metadata = serde_json::json!({"grant_types_supported": ["client_credentials"]});
    if let Some(algs) = algs {
        metadata["dpop_signing_alg_values_supported"] = algs;
    }
    let token: TokenHandler = Box::new(|seen| {
        let json = ("content-type", "application/json");
        match proof_claims(seen) {
            Ok(claims) if claims["nonce"] == AS_NONCE => {
                let body = serde_json::json!({"access_token": TOKEN, "token_type": "DPoP", "expires_in": 3600});
                reply(200, &[json], &body.to_string())
            }
            Ok(_) => reply(400, &[json, ("dpop-nonce", AS_NONCE)], r#"{"error":"use_dpop_nonce"}"#),
            Err(e) => reply(
                400,
                &[json],
                &serde_json::json!({"error": "invalid_dpop_proof", "error_description": e}).to_string(),
            ),
        }
    });
    AuthServer::with(Script { token: Some(token), ..Script::metadata(metadata) }).await
}

/// An MCP server that takes the DPoP token with a valid proof carrying its nonce.
async fn mcp_server() -> ScriptedUpstream {
    ScriptedUpstream::start(|seen| {
        let authorized =
            seen.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("DPoP {TOKEN}"));
        match proof_claims(&seen) {
            Ok(claims) if authorized && claims["nonce"] == RS_NONCE => {
                reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
            }
            Ok(_) if authorized => {
                reply(401, &[("www-authenticate", r#"DPoP error="use_dpop_nonce""#), ("dpop-nonce", RS_NONCE)], "")
            }
            _ => reply(401, &[("www-authenticate", r#"DPoP error="invalid_token""#)], ""),
        }
    })
    .await
}

fn flags(issuer: &str, dpop: &'static str) -> Vec<String> {
    [
        "--remote-auth-issuer",
        issuer,
        "--remote-auth-grant-type",
        "client_credentials",
        "--remote-auth-client-id",
        "workload",
        "--remote-auth-client-secret",
        "the-client-secret",
        "--remote-auth-dpop",
        dpop,
        "--remote-auth-store=false",
        "--debug",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn post(thv: &Thv, query: &str) -> reqwest::Response {
    client()
        .post(thv.url(&format!("/mcp{query}")))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_send_a_fresh_proof_per_request_and_honour_both_nonces_once() {
    // Each engine gets its own servers: the token requests and resends are counted per proxy.
    for (engine, env) in [("own", &[][..]), ("hyper", &[("THV_HTTP1", "hyper")][..])] {
        let rs = mcp_server().await;
        let auth = auth_server(Some(serde_json::json!(["RS256", "ES256"]))).await;
        let args = flags(&auth.issuer(), "auto");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let thv = &Thv::start_env(&rs.url("/mcp"), &args, env);
        wait_authenticated(thv).await;
        // Two proofs at the token endpoint: the first without a nonce, answered with one.
        let token_requests: Vec<Seen> = auth.seen().iter().filter(|s| s.uri.path() == "/token").cloned().collect();
        assert_eq!(token_requests.len(), 2, "{engine}: one token request, one resend with the nonce");
        let first = proof_claims(&token_requests[0]).unwrap();
        assert!(first.get("nonce").is_none() && first.get("ath").is_none(), "{engine}: {first}");
        assert_eq!((first["htm"].as_str(), first["htu"].as_str()), (Some("POST"), Some(auth.url("/token").as_str())));
        for query in ["", "?session=1", ""] {
            assert_eq!(post(thv, query).await.status(), 200, "{engine}:\n{}", thv.stderr());
        }
        // Discovery's probe goes without credentials (and without a proof: no login yet).
        let (sent, probes): (Vec<Seen>, Vec<Seen>) =
            rs.seen().into_iter().partition(|s| s.headers.contains_key("authorization"));
        assert!(probes.iter().all(|s| !s.headers.contains_key("dpop")), "{engine}");
        assert_eq!(sent.len(), 4, "{engine}: three requests and one resend with the MCP server's nonce");
        let mut jtis = HashSet::new();
        for (i, seen) in sent.iter().enumerate() {
            assert_eq!(seen.headers["authorization"], format!("DPoP {TOKEN}").as_str(), "{engine} #{i}");
            let claims = proof_claims(seen).unwrap_or_else(|e| panic!("{engine} #{i}: {e}"));
            assert_eq!(claims["htm"], "POST");
            assert_eq!(claims["htu"].as_str(), Some(rs.url("/mcp").as_str()), "{engine} #{i}: no query in htu");
            assert_eq!(claims["ath"].as_str(), Some(ath(TOKEN).as_str()));
            assert_eq!(claims["nonce"].as_str(), if i == 0 { None } else { Some(RS_NONCE) }, "{engine} #{i}");
            assert!(jtis.insert(claims["jti"].as_str().unwrap().to_owned()), "{engine}: a jti used twice");
        }
        let log = thv.stderr();
        for secret in [TOKEN, "the-client-secret", "eyJ"] {
            assert!(!log.contains(secret), "{engine}: {secret:?} in the log:\n{log}");
        }
    }
}

/// `always` with a server that lists no DPoP algorithm the proxy signs with: the login
/// fails, naming the server, and no token is requested; `auto` with the same server logs
/// in with bearer tokens and sends no proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_refuses_a_server_without_es256_and_auto_falls_back_to_bearer() {
    let auth = auth_server(Some(serde_json::json!(["RS256"]))).await;
    let issuer = auth.issuer();
    let rs = mcp_server().await;
    let args = flags(&issuer, "always");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let thv = Thv::start(&rs.url("/mcp"), &args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health(&thv).await != "login-failed" {
        assert!(std::time::Instant::now() < deadline, "the login did not fail:\n{}", thv.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = thv.stderr();
    assert!(log.contains(&format!("the authorization server {issuer} does not support DPoP")), "{log}");
    assert!(auth.seen().iter().all(|s| s.uri.path() != "/token"), "no token request");

    // auto: the server's token endpoint gets no proof, so it refuses with invalid_dpop_proof;
    // the point is that none was sent.
    let args = flags(&issuer, "auto");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = auth.seen().len();
    let thv = Thv::start(&rs.url("/mcp"), &args);
    thv.wait_for_stderr("invalid_dpop_proof");
    let token_requests: Vec<Seen> =
        auth.seen()[before..].iter().filter(|s| s.uri.path() == "/token").cloned().collect();
    assert!(!token_requests.is_empty());
    assert!(token_requests.iter().all(|s| !s.headers.contains_key("dpop")), "auto without ES256 sends no proof");
}

/// The JWK thumbprint (RFC 7638) of the key a request's proof was made with.
fn proof_key(seen: &Seen) -> String {
    let proof = seen.headers["dpop"].to_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(proof.split('.').next().unwrap()).unwrap()).unwrap();
    let jwk = &header["jwk"];
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// The DPoP key is kept with a browser login in the 0600 store: after a restart the saved
/// refresh token is presented with a proof of the same key, and the new token is bound to
/// it. A saved login whose key is gone is not resumed (a new login, with a new key). The
/// key is never in the log. (`always` with flag-given endpoints: there is no metadata.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_kept_with_the_login_and_proves_the_resumed_refresh() {
    use crate::outbound::{TokenServer, complete_login, field, start_manual};
    use std::os::unix::fs::PermissionsExt;

    let rs = ScriptedUpstream::start(|seen| {
        let dpop =
            seen.headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("DPoP "));
        if dpop && proof_claims(&seen).is_ok() {
            reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        } else {
            reply(401, &[("www-authenticate", r#"DPoP error="invalid_token""#)], "")
        }
    })
    .await;
    let tokens = TokenServer::start().await;
    let token = |n: u32| serde_json::json!({"access_token": format!("dpop-at-{n}"), "token_type": "DPoP", "expires_in": 3600, "refresh_token": format!("dpop-rt-{n}")});
    tokens.push(200, token(1));
    tokens.push(200, token(2));
    let store = std::env::temp_dir().join(format!("thv-dpop-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let store_arg = store.to_str().unwrap().to_owned();
    let extra = ["--remote-auth-store-dir", &store_arg, "--remote-auth-dpop", "always"];
    {
        let (thv, port) = start_manual(&rs, &tokens.server, &extra);
        complete_login(&thv, port, 1).await;
        assert_eq!(post(&thv, "").await.status(), 200, "{}", thv.stderr());
    }
    let files: Vec<_> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let key = saved["dpop_key"].as_str().expect("the key is saved with the login").to_owned();

    let (thv, _) = start_manual(&rs, &tokens.server, &extra);
    thv.wait_for_stderr("resumed the saved login");
    assert_eq!(post(&thv, "").await.status(), 200, "{}", thv.stderr());
    let token_requests: Vec<Seen> = tokens.server.seen().into_iter().filter(|s| s.uri.path() == "/token").collect();
    assert_eq!(token_requests.len(), 2);
    assert_eq!(field(&crate::outbound::form(&token_requests[1]), "refresh_token"), Some("dpop-rt-1"));
    assert_eq!(
        proof_key(&token_requests[0]),
        proof_key(&token_requests[1]),
        "the refresh is proven with the login's key"
    );
    let used = rs.seen().into_iter().filter(|s| s.headers.contains_key("dpop")).last().unwrap();
    assert_eq!(used.headers["authorization"], "DPoP dpop-at-2");
    assert_eq!(proof_key(&used), proof_key(&token_requests[0]));
    let log = thv.stderr();
    for secret in [key.as_str(), "dpop-at-", "dpop-rt-", "eyJ"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    drop(thv);

    // Without its key the saved login is not resumed: the refresh token is not even sent.
    let mut keyless = saved.clone();
    keyless.as_object_mut().unwrap().remove("dpop_key");
    std::fs::write(&files[0], keyless.to_string()).unwrap();
    let (thv, _) = start_manual(&rs, &tokens.server, &extra);
    thv.wait_for_stderr("has no DPoP key");
    assert_eq!(
        tokens.server.seen().iter().filter(|s| s.uri.path() == "/token").count(),
        2,
        "no refresh without the key"
    );
    std::fs::remove_dir_all(&store).unwrap();
}

/// `auto` needs both sides: an authorization server that lists ES256 is not enough when the
/// MCP server's 401 offers only `Bearer` (and its metadata lists no DPoP), since a bound
/// token would be refused there. No proof goes to the token endpoint (this one then
/// refuses, which is the point: none was sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_wants_the_mcp_server_to_take_dpop_too() {
    let auth = auth_server(Some(serde_json::json!(["ES256"]))).await;
    let issuer = auth.issuer();
    let rs =
        ScriptedUpstream::start(|_| reply(401, &[("www-authenticate", r#"Bearer error="invalid_token""#)], "")).await;
    let args = flags(&issuer, "auto");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let thv = Thv::start(&rs.url("/mcp"), &args);
    thv.wait_for_stderr("invalid_dpop_proof");
    let token_requests: Vec<Seen> = auth.seen().into_iter().filter(|s| s.uri.path() == "/token").collect();
    assert!(!token_requests.is_empty());
    assert!(token_requests.iter().all(|s| !s.headers.contains_key("dpop")), "a Bearer-only resource: no proof");
}
