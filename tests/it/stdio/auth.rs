//! `thv proxy stdio` with outgoing credentials: static bearer tokens and forwarded header
//! fields (never logged), the device login, and the store's login lock: shared by bridges
//! started at once, waited on while another process holds it, and not waited on for ever.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Bridge, STEP, initialize, request, session_server};
use crate::device::device_server;
use crate::support::auth_server::{AuthServer, DEVICE_CLIENT, DEVICE_GRANT};
use crate::support::upstream::{ScriptedUpstream, closed_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_goes_on_every_request_and_never_to_the_log() {
    let upstream = ScriptedUpstream::start(session_server(false)).await;
    let mut bridge = Bridge::start(&upstream.url("/mcp"), &["--remote-auth-bearer-token", "tok-123", "--debug"]);
    initialize(&mut bridge);
    bridge.send_json(&request(2, "ping", json!({})));
    assert_eq!(bridge.next()["id"], 2);
    bridge.close_stdin();
    assert!(bridge.wait_exit(STEP).0.success());
    let seen = upstream.seen();
    assert!(seen.len() >= 4, "initialize, initialized, ping, DELETE: {seen:?}");
    for s in &seen {
        assert_eq!(s.headers["authorization"], "Bearer tok-123", "{} {}", s.method, String::from_utf8_lossy(&s.body));
    }
    assert!(!bridge.stderr().contains("tok-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_header_fields_go_on_every_request_and_never_to_the_log() {
    let upstream = ScriptedUpstream::start(session_server(false)).await;
    let file = std::env::temp_dir().join(format!("thv-it-stdio-forward-{}", std::process::id()));
    std::fs::write(&file, "file-s3cret-77\n").unwrap();
    let file_ref = format!("X-Api-Key=file:{}", file.display());
    let mut bridge = Bridge::start(
        &upstream.url("/mcp"),
        &[
            "--remote-forward-headers",
            "X-Tenant=acme-s3cret",
            "--remote-forward-headers-secret",
            &file_ref,
            "--remote-auth-bearer-token",
            "tok-456",
            "--debug",
        ],
    );
    initialize(&mut bridge);
    bridge.send_json(&request(2, "ping", json!({})));
    assert_eq!(bridge.next()["id"], 2);
    bridge.close_stdin();
    assert!(bridge.wait_exit(STEP).0.success());
    std::fs::remove_file(&file).unwrap();
    let seen = upstream.seen();
    assert!(seen.len() >= 4, "initialize, initialized, ping, DELETE: {seen:?}");
    for s in &seen {
        let what = format!("{} {}", s.method, String::from_utf8_lossy(&s.body));
        assert_eq!(s.headers["x-tenant"], "acme-s3cret", "{what}");
        assert_eq!(s.headers["x-api-key"], "file-s3cret-77", "{what}");
        assert_eq!(s.headers["authorization"], "Bearer tok-456", "beside the proxy's own auth: {what}");
    }
    let log = bridge.stderr();
    assert!(log.contains("DEBUG"), "{log}");
    for secret in ["acme-s3cret", "file-s3cret-77", "tok-456"] {
        assert!(!log.contains(secret), "{secret} leaked into the log:\n{log}");
    }
}

/// `thv proxy stdio` shares the device login: the bridge shows the code, holds the first
/// request until the login is approved (bounded by --remote-auth-timeout), then sends the
/// token; the device code and the token stay out of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_login_works_for_the_stdio_bridge() {
    use crate::support::auth_server::{DEVICE_CODE, USER_CODE};
    let upstream = ScriptedUpstream::start(session_server(false)).await;
    let server = device_server(true).await;
    server.push(400, json!({"error": "authorization_pending"}));
    server.push(200, json!({"access_token": "stdio-device-tok", "token_type": "Bearer", "expires_in": 3600}));
    let issuer = server.issuer();
    let mut flags = vec!["--remote-auth-issuer", &issuer];
    flags.extend(DEVICE_GRANT);
    flags.extend([
        "--remote-auth-skip-browser",
        "--remote-auth-store=false",
        "--remote-auth-timeout",
        "15s",
        "--debug",
    ]);
    let mut bridge = Bridge::start(&upstream.url("/mcp"), &flags);
    let answer = initialize(&mut bridge);
    assert_eq!(answer["result"]["serverInfo"]["name"], "scripted", "{answer}");
    assert_eq!(server.requests("/token").len(), 2, "one pending poll, then the token");
    let sent: Vec<_> = upstream.seen().iter().filter_map(|s| s.headers.get("authorization").cloned()).collect();
    assert!(!sent.is_empty() && sent.iter().all(|h| h == "Bearer stdio-device-tok"), "{sent:?}");
    bridge.close_stdin();
    assert!(bridge.wait_exit(STEP).0.success());
    let log = bridge.stderr();
    assert!(log.contains(&format!("enter the code {USER_CODE}:")), "{log}");
    assert!(!log.contains(DEVICE_CODE) && !log.contains("stdio-device-tok"), "{log}");
}

/// Two bridges started at once for the same server and store (desktop clients start them
/// together): one runs the browser login, the other waits on the store's lock and resumes
/// the saved login with its refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_started_at_once_share_one_login() {
    use crate::outbound::{TokenServer, protected_upstream};
    use crate::support::auth_server::manual_endpoint_flags;
    let accepted = Arc::new(Mutex::new(std::collections::HashSet::from(["tok-1".to_owned(), "tok-2".to_owned()])));
    let up = protected_upstream(accepted).await;
    let tokens = TokenServer::start().await;
    let first = json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"});
    tokens.push(200, first);
    tokens.push(200, json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let store = std::env::temp_dir().join(format!("thv-it-stdio-lock-{}-{nanos}", std::process::id()));
    let ports = [closed_port(), closed_port()];
    let mut bridges: Vec<Bridge> = ports
        .iter()
        .map(|&port| {
            let mut flags = manual_endpoint_flags(&tokens.server, port, "20s");
            flags.extend(["--remote-auth-store-dir".to_owned(), store.to_str().unwrap().to_owned()]);
            Bridge::start(&up.url("/mcp"), &flags.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect();
    // Whichever took the lock prints the authorization URL; play the browser for it.
    let deadline = Instant::now() + STEP;
    let (winner, url) = loop {
        let found = bridges.iter().enumerate().find_map(|(i, b)| {
            let log = b.stderr();
            let line = log.lines().map(str::trim).find(|l| l.contains("/authorize?"))?.to_owned();
            Some((i, url::Url::parse(&line).expect("an authorization URL")))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no authorization URL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The other waits for it (checked before the login ends, so that it really waited).
    bridges[1 - winner].wait_for_stderr("waiting for its login").await;
    let state = url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).unwrap();
    let callback = format!("http://127.0.0.1:{}/callback?code=code-1&state={state}", ports[winner]);
    reqwest::get(callback).await.expect("the callback");
    for (i, bridge) in bridges.iter_mut().enumerate() {
        bridge.send_json(&request(1, "ping", json!({})));
        let answer = bridge.next();
        assert_eq!(answer["result"]["ok"], true, "bridge {i}: {answer}; stderr:\n{}", bridge.stderr());
    }
    let loser = &bridges[1 - winner];
    assert!(loser.stderr().contains("resumed the saved login"), "{}", loser.stderr());
    assert!(!loser.stderr().contains("/authorize?"), "one browser login, not two");
    let grants: Vec<String> = tokens
        .grants()
        .iter()
        .map(|g| g.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.clone()).unwrap_or_default())
        .collect();
    assert_eq!(grants, ["authorization_code", "refresh_token"]);
    for bridge in &mut bridges {
        bridge.close_stdin();
        assert!(bridge.wait_exit(STEP).0.success());
    }
    let left: Vec<_> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.iter().all(|p| p.extension().is_some_and(|e| e == "json")), "no lock left behind: {left:?}");
    std::fs::remove_dir_all(&store).unwrap();
}

/// The lock file of one login in the store at `dir`: `src/outbound/store.rs` `Store::path`
/// (SHA-256 of the server, the resource and the configured client, each ended by a NUL;
/// the first 16 bytes in hex) with the extension `lock`.
fn login_lock_path(dir: &Path, server: &str, resource: &str, client: &str) -> PathBuf {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [server, resource, client] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    let name: String = h.finish().as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("login-{name}.lock"))
}

/// A bridge whose device login (the scripted server approves at the first poll) finds its
/// lock in the token store held by this (live) process.
struct Held {
    upstream: ScriptedUpstream,
    server: AuthServer,
    store: PathBuf,
    lock: PathBuf,
    /// When the lock file was written.
    written: Instant,
    bridge: Bridge,
}

async fn locked_device_login(timeout: &str) -> Held {
    let upstream = ScriptedUpstream::start(session_server(false)).await;
    let server = device_server(true).await;
    server.push(200, json!({"access_token": "lock-tok", "token_type": "Bearer", "expires_in": 3600}));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let store = std::env::temp_dir().join(format!("thv-it-stdio-held-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&store).unwrap();
    let lock = login_lock_path(&store, &server.issuer(), &upstream.url("/mcp"), DEVICE_CLIENT);
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let written = Instant::now();
    let issuer = server.issuer();
    let mut flags = vec!["--remote-auth-issuer", &issuer];
    flags.extend(DEVICE_GRANT);
    flags.extend(["--remote-auth-skip-browser", "--remote-auth-store-dir", store.to_str().unwrap()]);
    flags.extend(["--remote-auth-timeout", timeout]);
    let bridge = Bridge::start(&upstream.url("/mcp"), &flags);
    Held { upstream, server, store, lock, written, bridge }
}

/// Waits (bounded) until the bridge says it waits on another's login, then a second more:
/// in all that time it asks the authorization server for nothing.
async fn waits_without_logging_in(bridge: &Bridge, server: &AuthServer) -> Instant {
    bridge.wait_for_stderr("waiting for its login").await;
    let waiting = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        server.requests("/device").is_empty() && server.requests("/token").is_empty(),
        "no login while another process holds the lock:\n{}",
        bridge.stderr()
    );
    waiting
}

/// The login done, the bridge answers: the issued token went to the MCP server.
fn answers_with_the_token(bridge: &mut Bridge, upstream: &ScriptedUpstream) {
    let answer = initialize(bridge);
    assert_eq!(answer["result"]["serverInfo"]["name"], "scripted", "{answer}; stderr:\n{}", bridge.stderr());
    let sent: Vec<_> = upstream.seen().iter().filter_map(|s| s.headers.get("authorization").cloned()).collect();
    assert!(!sent.is_empty() && sent.iter().all(|h| h == "Bearer lock-tok"), "{sent:?}");
}

/// A live process's lock on the login is waited on; it goes stale once it is older than
/// --remote-auth-timeout (the holder's own login is bounded by that), and the bridge takes
/// it over and logs in. `stale_after` is the timeout itself, so a lock found at the start
/// of the wait is stale by the wait's end: this, not "logging in here too", is what a
/// bridge waiting on one other process meets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_processs_login_lock_is_waited_on_then_taken_over_when_stale() {
    let Held { upstream, server, store, lock, written, mut bridge } = locked_device_login("3s").await;
    waits_without_logging_in(&bridge, &server).await;
    // The request goes once the wait has ended: a request waits for a login for
    // --remote-auth-timeout from its own arrival, and one sent during the lock's wait would
    // race the rest of that wait plus the device login's first poll (a second later).
    bridge.wait_for_stderr("taking over a stale login lock").await;
    answers_with_the_token(&mut bridge, &upstream);
    let log = bridge.stderr();
    assert!(!log.contains("logging in here too"), "{log}");
    let polled = server.token_times();
    assert_eq!((server.requests("/device").len(), polled.len()), (1, 1), "one login");
    let after = polled[0] - written;
    assert!(after >= Duration::from_secs(3), "logged in {after:?} after the lock was written, before it was 3 s old");
    bridge.close_stdin();
    assert!(bridge.wait_exit(STEP).0.success());
    assert!(!lock.exists(), "the bridge's own lock, taken over, is released");
    std::fs::remove_dir_all(&store).unwrap();
}

/// A lock that stays younger than --remote-auth-timeout (one holder after another, here
/// renewed every 100 ms) is waited on for the timeout, then the bridge logs in beside it
/// with the warning, and leaves the lock to its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_lock_held_past_the_timeout_is_logged_in_beside_with_a_warning() {
    let Held { upstream, server, store, lock, written: _, mut bridge } = locked_device_login("2s").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = std::thread::spawn({
        let (stop, lock) = (stop.clone(), lock.clone());
        move || {
            // Bounded: 300 rounds of 100 ms at most.
            for _ in 0..300 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::fs::write(&lock, std::process::id().to_string()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let waiting = waits_without_logging_in(&bridge, &server).await;
    // As above: the request goes once the wait has ended.
    bridge.wait_for_stderr("logging in here too").await;
    answers_with_the_token(&mut bridge, &upstream);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renewer.join().unwrap();
    let log = bridge.stderr();
    assert!(log.contains("another thv is still logging in after --remote-auth-timeout; logging in here too"), "{log}");
    assert!(!log.contains("taking over a stale login lock"), "{log}");
    let polled = server.token_times();
    assert_eq!(polled.len(), 1, "one login");
    // The wait began before the line was read; the login came after --remote-auth-timeout.
    assert!(polled[0] + Duration::from_millis(100) >= waiting + Duration::from_secs(2), "logged in too early");
    bridge.close_stdin();
    assert!(bridge.wait_exit(STEP).0.success());
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), std::process::id().to_string(), "the holder's lock is left");
    std::fs::remove_dir_all(&store).unwrap();
}
