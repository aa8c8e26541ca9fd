//! The device flow (`--remote-auth-grant-type device_code`, RFC 8628) against a scripted
//! authorization server: the faults a real one (oidc-provider with Chromium, in
//! `interop/browser`) does not produce on demand: no device authorization endpoint,
//! `access_denied`, `expired_token`, `slow_down`, and nobody approving within
//! `--remote-auth-timeout`. Requests wait with 503 + `Retry-After` meanwhile; the device
//! code and the tokens never reach the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::outbound::{call, field, form, health, protected_upstream, wait_authenticated};
use crate::support::Thv;
use crate::support::auth_server::{AuthServer, DEVICE_CODE, DEVICE_GRANT, Script, USER_CODE};
use crate::support::upstream::ScriptedUpstream;

/// An authorization server with (or without) a device authorization endpoint, listing the
/// device grant and refresh; its token endpoint answers the scripted replies in turn, then
/// `authorization_pending`.
pub(crate) async fn device_server(with_device_endpoint: bool) -> AuthServer {
    listing(with_device_endpoint, &["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]).await
}

/// As [`device_server`], with `grants` as its `grant_types_supported`.
async fn listing(with_device_endpoint: bool, grants: &[&str]) -> AuthServer {
    AuthServer::with(Script {
        device: with_device_endpoint,
        when_empty: (400, serde_json::json!({"error": "authorization_pending"})),
        ..Script::metadata(serde_json::json!({"grant_types_supported": grants}))
    })
    .await
}

fn start_thv(server: &AuthServer, upstream: &ScriptedUpstream, extra: &[&str]) -> Thv {
    start_thv_env(server, upstream, &[&["--remote-auth-skip-browser"][..], extra].concat(), &[])
}

fn start_thv_env(server: &AuthServer, upstream: &ScriptedUpstream, extra: &[&str], env: &[(&str, &str)]) -> Thv {
    let issuer = server.issuer();
    let mut args = vec!["--remote-auth-issuer", &issuer];
    args.extend(DEVICE_GRANT);
    args.extend(["--remote-auth-store=false", "--debug"]);
    args.extend_from_slice(extra);
    let env = [&[("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET", "device-secret")][..], env].concat();
    Thv::start_env(&upstream.url("/mcp"), &args, &env)
}

async fn wait_health(thv: &Thv, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while health(thv).await != want {
        assert!(Instant::now() < deadline, "health never became {want}:\n{}", thv.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The login failed; a request is told why (503, the reason in the JSON-RPC error).
async fn failed_with(thv: &Thv, within: Duration) -> String {
    wait_health(thv, "login-failed", within).await;
    let resp = call(thv).await;
    assert_eq!(resp.status(), 503);
    resp.text().await.unwrap()
}

fn assert_not_logged(thv: &Thv, secrets: &[&str]) {
    let log = thv.stderr();
    for secret in secrets {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// A server without `device_authorization_endpoint`: an error at login naming the server
/// and what it lacks; nothing asked of the token endpoint, no other grant tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_device_endpoint_is_an_error_naming_it() {
    let up = protected_upstream(Arc::default()).await;
    let server = device_server(false).await;
    let thv = start_thv(&server, &up, &[]);
    let body = failed_with(&thv, Duration::from_secs(10)).await;
    assert!(body.contains(&server.issuer()) && body.contains("no device authorization endpoint"), "{body}");
    assert!(server.requests("/token").is_empty() && server.requests("/device").is_empty());
}

/// The user refuses: requests wait with 503 + Retry-After while the server says
/// `authorization_pending`, then the login fails with `access_denied` and polling stops.
/// The device authorization request carries the client's authentication (secret basic, as
/// at the token endpoint), the scope and RFC 8707 `resource`; the user is shown the URI,
/// the code and the URI with the code, and the device code is never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_ends_the_login() {
    let up = protected_upstream(Arc::default()).await;
    let server = device_server(true).await;
    server.push(400, serde_json::json!({"error": "authorization_pending"}));
    server.push(400, serde_json::json!({"error": "access_denied", "error_description": "the user said no"}));
    let thv = start_thv(&server, &up, &["--remote-auth-scopes", "mcp:tools"]);
    let shown = thv.wait_for_stderr("which carries the code");
    assert!(shown.contains(&format!("enter the code {USER_CODE}:\n  {}/activate\n", server.issuer())), "{shown}");
    assert!(shown.contains(&format!("{}/activate?user_code={USER_CODE}", server.issuer())), "{shown}");
    let pending = call(&thv).await;
    assert_eq!(pending.status(), 503);
    assert!(pending.headers().contains_key("retry-after"));
    assert!(pending.text().await.unwrap().contains("logging in"));

    let body = failed_with(&thv, Duration::from_secs(10)).await;
    assert!(body.contains("access_denied") && body.contains("the user said no"), "{body}");
    let device = &server.requests("/device")[0];
    let f = form(device);
    assert_eq!((field(&f, "scope"), field(&f, "client_id")), (Some("mcp:tools"), None));
    assert_eq!(field(&f, "resource"), Some(up.url("/mcp").as_str()), "RFC 8707");
    let basic = base64::engine::general_purpose::STANDARD.encode("device-client:device-secret");
    assert_eq!(device.headers.get("authorization").unwrap().to_str().unwrap(), format!("Basic {basic}"));
    let polls = server.requests("/token");
    assert_eq!(polls.len(), 2, "no poll after access_denied");
    for poll in &polls {
        let f = form(poll);
        assert_eq!(field(&f, "grant_type"), Some("urn:ietf:params:oauth:grant-type:device_code"));
        assert_eq!(field(&f, "device_code"), Some(DEVICE_CODE));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.requests("/token").len(), 2, "still none");
    assert_not_logged(&thv, &[DEVICE_CODE, "device-secret"]);
}

/// A server whose grant_types_supported leaves out the device grant: the existing refusal,
/// naming the grant and the server, before any device authorization request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_not_listing_the_device_grant_is_refused() {
    let up = protected_upstream(Arc::default()).await;
    let server = listing(true, &["authorization_code", "refresh_token"]).await;
    let thv = start_thv(&server, &up, &[]);
    let body = failed_with(&thv, Duration::from_secs(10)).await;
    assert!(body.contains("urn:ietf:params:oauth:grant-type:device_code") && body.contains(&server.issuer()), "{body}");
    assert!(server.requests("/device").is_empty() && server.requests("/token").is_empty());
}

/// `expired_token` ends the login with a message that says a new login shows a new code.
/// Without --remote-auth-skip-browser, `$BROWSER` is started with the URI that carries the
/// code (no shell: the script gets it as its one argument).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_ends_the_login() {
    let up = protected_upstream(Arc::default()).await;
    let server = device_server(true).await;
    server.push(400, serde_json::json!({"error": "expired_token"}));
    let dir = std::env::temp_dir().join(format!("thv-it-device-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opened = dir.join("opened");
    let script = dir.join("browser.sh");
    // Written aside, then renamed: the test never reads a half-written file.
    let o = opened.display();
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s' \"$1\" > '{o}.tmp' && mv '{o}.tmp' '{o}'\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let thv = start_thv_env(&server, &up, &[], &[("BROWSER", script.to_str().unwrap())]);
    let body = failed_with(&thv, Duration::from_secs(10)).await;
    assert!(body.contains("expired") && body.contains("new code"), "{body}");
    assert_eq!(server.requests("/token").len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !opened.exists() {
        assert!(Instant::now() < deadline, "$BROWSER was not started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = std::fs::read_to_string(&opened).unwrap();
    assert_eq!(url, format!("{}/activate?user_code={USER_CODE}", server.issuer()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Nobody approves: polling stops at --remote-auth-timeout (the code would last 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_ends_at_the_login_timeout() {
    let up = protected_upstream(Arc::default()).await;
    let server = device_server(true).await;
    let thv = start_thv(&server, &up, &["--remote-auth-timeout", "3s"]);
    let body = failed_with(&thv, Duration::from_secs(10)).await;
    assert!(body.contains("not approved within 3s"), "{body}");
    let polls = server.requests("/token").len();
    assert!((1..=3).contains(&polls), "one poll a second for 3 s: {polls}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.requests("/token").len(), polls, "no poll after the timeout");
}

/// `slow_down` adds 5 s to the interval for every later poll (RFC 8628 §3.5); the approved
/// login's token then reaches the MCP server, and is not logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_adds_five_seconds() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["device-tok".to_owned()])));
    let up = protected_upstream(accepted).await;
    let server = device_server(true).await;
    server.push(400, serde_json::json!({"error": "slow_down"}));
    server.push(400, serde_json::json!({"error": "authorization_pending"}));
    server.push(
        200,
        serde_json::json!({"access_token": "device-tok", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "device-rt"}),
    );
    let thv = start_thv(&server, &up, &[]);
    let started = Instant::now();
    wait_health(&thv, "login-pending", Duration::from_secs(5)).await;
    let deadline = started + Duration::from_secs(25);
    while health(&thv).await != "authenticated" {
        assert!(Instant::now() < deadline, "not approved:\n{}", thv.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_authenticated(&thv).await;
    let at = server.token_times();
    assert_eq!(at.len(), 3);
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    // 1 s, then 6 s after slow_down, and 6 s again: the slower pace stays.
    assert!(gaps.iter().all(|g| (5.9..8.0).contains(g)), "gaps {gaps:?}");
    assert_eq!(call(&thv).await.status(), 200);
    let used = up.seen().iter().filter_map(|s| s.headers.get("authorization").cloned()).last();
    assert_eq!(used.unwrap().to_str().unwrap(), "Bearer device-tok");
    let log = thv.stderr();
    assert!(log.contains("slow_down") && log.contains("polls=3"), "{log}");
    assert_not_logged(&thv, &[DEVICE_CODE, "device-tok", "device-rt", "device-secret"]);
}
