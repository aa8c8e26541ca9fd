//! Outgoing authentication against a scripted authorization server: the cases that need
//! control over every answer (hostile callbacks, revoked tokens, dead refresh tokens),
//! static bearer tokens and their precedence, and the token store. The full discovery chain
//! runs against the official conformance suite (`interop/outbound`) and a real IdP with a
//! real browser (`interop/browser`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::support::Thv;
use crate::support::auth_server::{DEVICE_GRANT, manual_endpoint_flags};
use crate::support::upstream::{ScriptedUpstream, reply};

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) use crate::support::auth_server::form;

pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An MCP upstream that accepts only the bearer tokens in `accepted`.
pub(crate) async fn protected_upstream(accepted: Arc<Mutex<HashSet<String>>>) -> ScriptedUpstream {
    ScriptedUpstream::start(move |seen| {
        let token = seen
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        if token.is_some_and(|t| accepted.lock().unwrap().contains(&t)) {
            reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#)
        } else {
            reply(401, &[("www-authenticate", r#"Bearer error="invalid_token""#)], "")
        }
    })
    .await
}

/// A scripted token endpoint: each grant answers the next scripted reply.
pub(crate) struct TokenServer {
    pub(crate) server: ScriptedUpstream,
    replies: Arc<Mutex<Vec<(u16, String)>>>,
}

impl TokenServer {
    pub(crate) async fn start() -> TokenServer {
        let replies: Arc<Mutex<Vec<(u16, String)>>> = Arc::new(Mutex::new(Vec::new()));
        let r = replies.clone();
        let server = ScriptedUpstream::start(move |seen| {
            if seen.uri.path() != "/token" {
                return reply(404, &[], "");
            }
            let mut r = r.lock().unwrap();
            let (status, body) = if r.is_empty() { (500, "{}".to_owned()) } else { r.remove(0) };
            reply(status, &[("content-type", "application/json")], &body)
        })
        .await;
        TokenServer { server, replies }
    }

    pub(crate) fn push(&self, status: u16, body: serde_json::Value) {
        self.replies.lock().unwrap().push((status, body.to_string()));
    }

    pub(crate) fn grants(&self) -> Vec<Vec<(String, String)>> {
        self.server.seen().iter().filter(|s| s.uri.path() == "/token").map(form).collect()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits for the n-th authorization URL the proxy prints (1-based).
fn authorization_url(thv: &Thv, n: usize) -> url::Url {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let log = thv.stderr();
        let urls: Vec<&str> = log
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("http://127.0.0.1") && l.contains("/authorize?"))
            .collect();
        if let Some(url) = urls.get(n - 1) {
            return url::Url::parse(url).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no authorization URL #{n} in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn query(url: &url::Url, name: &str) -> String {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

pub(crate) async fn health(thv: &Thv) -> String {
    let v: serde_json::Value = client().get(thv.url("/health")).send().await.unwrap().json().await.unwrap();
    v["outgoing_auth"].as_str().unwrap_or_default().to_owned()
}

/// Plays the browser for the n-th login: answers the callback with the right state and
/// waits (bounded) until the proxy reports it is authenticated.
pub(crate) async fn complete_login(thv: &Thv, callback_port: u16, n: usize) {
    let url = authorization_url(thv, n);
    let callback = format!("http://127.0.0.1:{callback_port}/callback?code=code-{n}&state={}", query(&url, "state"));
    client().get(callback).send().await.unwrap();
    wait_authenticated(thv).await;
}

pub(crate) async fn wait_authenticated(thv: &Thv) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while health(thv).await != "authenticated" {
        assert!(std::time::Instant::now() < deadline, "the login did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn call(thv: &Thv) -> reqwest::Response {
    client()
        .post(thv.url("/mcp"))
        .header("authorization", "Bearer the-clients-own-token")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap()
}

/// Starts thv in manual-endpoint mode against `as_server`, with the browser skipped.
pub(crate) fn start_manual(upstream: &ScriptedUpstream, as_server: &ScriptedUpstream, extra: &[&str]) -> (Thv, u16) {
    let port = free_port();
    let flags = manual_endpoint_flags(as_server, port, "30s");
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Every flow runs at debug level, so the secret checks cover the chattiest logs.
    args.push("--debug");
    args.extend_from_slice(extra);
    let thv = Thv::start(&upstream.url("/mcp"), &args);
    (thv, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_state_first_and_accepts_one_callback() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned()])));
    let up = protected_upstream(accepted.clone()).await;
    let tokens = TokenServer::start().await;
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "bearer", "expires_in": 3600, "refresh_token": "rt-1"}));
    let (thv, port) = start_manual(&up, &tokens.server, &["--remote-auth-store=false"]);

    // Requests wait with 503 while the user has not logged in.
    let resp = call(&thv).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(health(&thv).await, "login-pending");

    let url = authorization_url(&thv, 1);
    let (state, challenge) = (query(&url, "state"), query(&url, "code_challenge"));
    assert_eq!(query(&url, "code_challenge_method"), "S256");
    assert_eq!(query(&url, "resource"), up.url("/mcp"), "RFC 8707 resource = the target");
    assert_eq!(query(&url, "redirect_uri"), format!("http://localhost:{port}/callback"));
    assert!(state.len() >= 43, "state carries at least 256 bits");
    let callback = |q: &str| client().get(format!("http://127.0.0.1:{port}/callback?{q}")).send();

    // A forged error with the wrong state is ignored: the login goes on.
    assert_eq!(callback("error=access_denied&state=forged").await.unwrap().status(), 400);
    assert_eq!(callback("code=stolen&state=forged").await.unwrap().status(), 400);
    assert_eq!(health(&thv).await, "login-pending");
    assert!(tokens.grants().is_empty(), "no code was redeemed for a wrong state");

    let ok = callback(&format!("code=the-code&state={state}")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    // A replayed callback finds nobody listening, or is refused.
    let replay = callback(&format!("code=the-code&state={state}")).await;
    assert!(replay.is_err() || replay.unwrap().status() != 200);

    wait_authenticated(&thv).await;
    let grants = tokens.grants();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(field(g, "grant_type"), Some("authorization_code"));
    assert_eq!(field(g, "code"), Some("the-code"));
    assert_eq!(field(g, "client_id"), Some("cid"), "a public client names itself in the form");
    assert_eq!(field(g, "resource"), Some(up.url("/mcp").as_str()));
    let verifier = field(g, "code_verifier").unwrap();
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
    assert_eq!(expected, challenge, "the verifier matches the S256 challenge");

    let resp = call(&thv).await;
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.headers["authorization"], "Bearer tok-1", "the proxy's token replaces the client's");
    for secret in ["tok-1", "rt-1", "the-code", verifier] {
        assert!(!thv.stderr().contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_401_refreshes_once_and_a_dead_refresh_token_means_a_new_login() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned()])));
    let up = protected_upstream(accepted.clone()).await;
    let tokens = TokenServer::start().await;
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}));
    let (thv, port) = start_manual(&up, &tokens.server, &["--remote-auth-store=false"]);
    complete_login(&thv, port, 1).await;
    assert_eq!(call(&thv).await.status(), 200);

    // The upstream stops accepting tok-1: one refresh, one retry, and the client never
    // sees the 401.
    accepted.lock().unwrap().clear();
    accepted.lock().unwrap().insert("tok-2".into());
    tokens.push(200, serde_json::json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-2"}));
    assert_eq!(call(&thv).await.status(), 200);
    let refresh = tokens.grants().last().cloned().unwrap();
    assert_eq!(field(&refresh, "grant_type"), Some("refresh_token"));
    assert_eq!(field(&refresh, "refresh_token"), Some("rt-1"));
    assert_eq!(field(&refresh, "resource"), Some(up.url("/mcp").as_str()), "RFC 8707 §2.2: resource on refresh too");

    // Now the refresh token dies: the proxy starts a new login instead of failing forever.
    accepted.lock().unwrap().clear();
    accepted.lock().unwrap().insert("tok-3".into());
    tokens.push(400, serde_json::json!({"error": "invalid_grant"}));
    tokens.push(200, serde_json::json!({"access_token": "tok-3", "token_type": "Bearer", "expires_in": 3600}));
    let pending = tokio::spawn({
        let url = thv.url("/mcp");
        async move { client().post(url).body("{}").send().await.unwrap().status() }
    });
    let second = authorization_url(&thv, 2);
    client()
        .get(format!("http://127.0.0.1:{port}/callback?code=c2&state={}", query(&second, "state")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), pending).await.unwrap().unwrap(),
        200,
        "the request that hit the dead token waited for the new login"
    );
    assert_eq!(call(&thv).await.status(), 200);
    assert_eq!(health(&thv).await, "authenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_login_survives_a_restart_without_a_browser() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned(), "tok-2".to_owned()])));
    let up = protected_upstream(accepted).await;
    let tokens = TokenServer::start().await;
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}));
    tokens.push(200, serde_json::json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}));
    let store = std::env::temp_dir().join(format!("thv-outbound-store-{}", std::process::id()));
    let store_arg = store.to_str().unwrap().to_owned();
    {
        let (thv, port) = start_manual(&up, &tokens.server, &["--remote-auth-store-dir", &store_arg]);
        complete_login(&thv, port, 1).await;
    }
    use std::os::unix::fs::PermissionsExt;
    let files: Vec<_> = std::fs::read_dir(&store).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one login, and its lock released: {files:?}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o700);

    let (thv, _) = start_manual(&up, &tokens.server, &["--remote-auth-store-dir", &store_arg]);
    thv.wait_for_stderr("resumed the saved login");
    assert_eq!(call(&thv).await.status(), 200);
    assert!(!thv.stderr().contains("/authorize?"), "no browser login on the second start");
    let refresh = tokens.grants().last().cloned().unwrap();
    assert_eq!(field(&refresh, "refresh_token"), Some("rt-1"));
    std::fs::remove_dir_all(&store).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_bearer_tokens_follow_flag_file_env_precedence() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let dir = std::env::temp_dir().join(format!("thv-bearer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "  from-file \n").unwrap();
    let file = file.to_str().unwrap();

    let sent = |thv: &Thv| {
        let thv_url = thv.url("/mcp");
        async move {
            client().post(thv_url).header("authorization", "Bearer client").body("{}").send().await.unwrap();
        }
    };
    let thv = Thv::start(&up.url("/mcp"), &["--remote-auth-bearer-token", "from-flag", "--debug"]);
    sent(&thv).await;
    assert!(!thv.stderr().contains("from-flag"), "the token is never logged");
    drop(thv);
    let thv = Thv::start(&up.url("/mcp"), &["--remote-auth-bearer-token-file", file]);
    sent(&thv).await;
    drop(thv);
    let mut child = std::process::Command::new(crate::support::THV)
        .args(["proxy", "s", "--target-uri", &up.url("/mcp"), "--port", "0"])
        .env("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN", "from-env")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let port: u16 = line.split("on port ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    client().post(format!("http://127.0.0.1:{port}/mcp")).body("{}").send().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let auth: Vec<String> = up.seen().iter().map(|s| s.headers["authorization"].to_str().unwrap().to_owned()).collect();
    assert_eq!(auth, ["Bearer from-flag", "Bearer from-file", "Bearer from-env"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_token_store_only_costs_a_warning() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned()])));
    let up = protected_upstream(accepted).await;
    let tokens = TokenServer::start().await;
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}));
    // A regular file where the store directory should be: every save fails.
    let blocker = std::env::temp_dir().join(format!("thv-store-blocker-{}", std::process::id()));
    std::fs::write(&blocker, "not a directory").unwrap();
    let store = blocker.join("store");
    let (thv, port) = start_manual(&up, &tokens.server, &["--remote-auth-store-dir", store.to_str().unwrap()]);
    complete_login(&thv, port, 1).await;
    assert_eq!(call(&thv).await.status(), 200);
    thv.wait_for_stderr("could not save the login");
    assert!(!thv.stderr().contains("rt-1"));
    std::fs::remove_file(&blocker).unwrap();
}

/// The authorization request's extras (Slack's `user_scope`, Google's `access_type`, Auth0's
/// `audience`) go on the browser's URL only, never on the token request; the operator's
/// header fields go to the target beside the proxy's token, and to nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_extras_and_forwarded_fields_with_oauth() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned()])));
    let up = protected_upstream(accepted).await;
    let tokens = TokenServer::start().await;
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}));
    let (thv, port) = start_manual(
        &up,
        &tokens.server,
        &[
            "--remote-auth-store=false",
            "--remote-auth-scopes",
            "chat:write,users:read",
            "--remote-auth-scope-param-name",
            "user_scope",
            "--remote-auth-authorize-param",
            "access_type=offline",
            "--remote-auth-authorize-param",
            "audience=https://api.example.com/",
            "--remote-forward-headers",
            "X-Api-Key=fwd-key-s3cret",
        ],
    );
    let url = authorization_url(&thv, 1);
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(field(&pairs, "user_scope"), Some("chat:write users:read"));
    assert_eq!(field(&pairs, "scope"), None, "the scopes go under the configured name only");
    assert_eq!(field(&pairs, "access_type"), Some("offline"));
    assert_eq!(field(&pairs, "audience"), Some("https://api.example.com/"));
    assert_eq!(field(&pairs, "client_id"), Some("cid"));
    assert_eq!(pairs.iter().filter(|(k, _)| k == "state").count(), 1);
    complete_login(&thv, port, 1).await;
    let grant = tokens.grants().pop().unwrap();
    assert_eq!(field(&grant, "grant_type"), Some("authorization_code"));
    for extra in ["user_scope", "scope", "access_type", "audience"] {
        assert_eq!(field(&grant, extra), None, "{extra} is the authorization request's only");
    }
    assert!(tokens.server.seen().iter().all(|s| !s.headers.contains_key("x-api-key")), "not for the AS");

    assert_eq!(call(&thv).await.status(), 200);
    let seen = up.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.headers["authorization"], "Bearer tok-1");
    assert_eq!(last.headers["x-api-key"], "fwd-key-s3cret");
    assert!(!thv.stderr().contains("fwd-key-s3cret"), "a forwarded value leaked into the log");
}

/// A saved login is one for its extra authorization parameters: a token issued for one
/// `audience` is not resumed for another (mcp-remote's rule), and is again for the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_login_belongs_to_its_authorize_params() {
    let accepted = Arc::new(Mutex::new(HashSet::from(["tok-1".to_owned(), "tok-2".to_owned(), "tok-3".to_owned()])));
    let up = protected_upstream(accepted).await;
    let tokens = TokenServer::start().await;
    let store = std::env::temp_dir().join(format!("thv-outbound-extras-{}", std::process::id()));
    let store_arg = store.to_str().unwrap().to_owned();
    let with = |audience: &'static str| {
        ["--remote-auth-store-dir", &store_arg, "--remote-auth-authorize-param", audience].map(str::to_owned)
    };
    let start = |audience| {
        let args = with(audience);
        start_manual(&up, &tokens.server, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The login is saved just after the proxy reports it authenticated: wait for the file
    // before the process is killed.
    let logins = || {
        let files = std::fs::read_dir(&store).map(|d| d.filter_map(Result::ok).collect::<Vec<_>>()).unwrap_or_default();
        files.iter().filter(|f| f.file_name().to_string_lossy().ends_with(".json")).count()
    };
    let saved = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while logins() < n {
            assert!(std::time::Instant::now() < deadline, "login #{n} was never saved");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    tokens.push(200, serde_json::json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-a"}));
    {
        let (thv, port) = start("audience=https://a.example/");
        complete_login(&thv, port, 1).await;
        saved(1);
    }
    // Another audience: a browser login of its own, not the saved token.
    tokens.push(200, serde_json::json!({"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-b"}));
    {
        let (thv, port) = start("audience=https://b.example/");
        let url = authorization_url(&thv, 1);
        assert_eq!(query(&url, "audience"), "https://b.example/");
        assert!(!thv.stderr().contains("resumed the saved login"));
        complete_login(&thv, port, 1).await;
        saved(2);
    }
    // The first audience again: its own saved login, no browser.
    tokens.push(200, serde_json::json!({"access_token": "tok-3", "token_type": "Bearer", "expires_in": 3600}));
    let (thv, _) = start("audience=https://a.example/");
    thv.wait_for_stderr("resumed the saved login");
    assert!(!thv.stderr().contains("/authorize?"), "no browser login");
    let refresh = tokens.grants().last().cloned().unwrap();
    assert_eq!(field(&refresh, "refresh_token"), Some("rt-a"), "the first audience's own refresh token");
    drop(thv);
    assert_eq!(logins(), 2, "one file per set of extras");
    std::fs::remove_dir_all(&store).unwrap();
}

/// The store keys a saved login by the configured resource (`--remote-auth-resource`, by
/// default the target URL) while the wire carries the resource the MCP server's RFC 9728
/// document publishes (`Discovery::resource`; here its pathless origin, which covers
/// `/mcp`): the device login's requests carry the published one, the saved file the
/// configured one, and a second start with the same configuration and store resumes the
/// login (one refresh grant, with the published resource; no second device login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_login_is_keyed_by_the_configured_resource_and_sent_with_the_published_one() {
    use crate::device::device_server;
    let server = device_server(true).await;
    let issuer = server.issuer();
    let up = ScriptedUpstream::start(move |seen| {
        let host = seen.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
        if seen.uri.path().starts_with("/.well-known/oauth-protected-resource") {
            let doc = serde_json::json!({"resource": format!("http://{host}"), "authorization_servers": [issuer]});
            return reply(200, &[("content-type", "application/json")], &doc.to_string());
        }
        let token = seen.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if ["Bearer pub-tok-1", "Bearer pub-tok-2"].contains(&token) {
            reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#)
        } else {
            let challenge = format!(r#"Bearer resource_metadata="http://{host}/.well-known/oauth-protected-resource""#);
            reply(401, &[("www-authenticate", &challenge)], "")
        }
    })
    .await;
    let (configured, published) = (up.url("/mcp"), up.url("").trim_end_matches('/').to_owned());
    server.push(
        200,
        serde_json::json!({"access_token": "pub-tok-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "pub-rt-1"}),
    );
    server.push(200, serde_json::json!({"access_token": "pub-tok-2", "token_type": "Bearer", "expires_in": 3600}));
    let store = std::env::temp_dir().join(format!("thv-outbound-published-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let store_arg = store.to_str().unwrap().to_owned();
    let mut flags = vec!["--remote-auth"];
    flags.extend(DEVICE_GRANT);
    flags.extend(["--remote-auth-skip-browser", "--remote-auth-store-dir", &store_arg]);
    let saved = || -> Vec<std::path::PathBuf> {
        let files = std::fs::read_dir(&store).map(|d| d.filter_map(Result::ok).collect::<Vec<_>>()).unwrap_or_default();
        files.iter().map(|f| f.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect()
    };
    {
        let thv = Thv::start(&configured, &flags);
        wait_authenticated(&thv).await;
        assert_eq!(call(&thv).await.status(), 200);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while saved().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the login was never saved:\n{}", thv.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let device = server.requests("/device");
    assert_eq!(device.len(), 1);
    assert_eq!(field(&form(&device[0]), "resource"), Some(published.as_str()), "as published, byte for byte");
    let polls = server.token_requests();
    assert_eq!(polls.len(), 1);
    assert_eq!(field(&polls[0].0, "grant_type"), Some("urn:ietf:params:oauth:grant-type:device_code"));
    assert_eq!(field(&polls[0].0, "resource"), Some(published.as_str()));
    let files = saved();
    assert_eq!(files.len(), 1, "{files:?}");
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(file["resource"].as_str(), Some(configured.as_str()), "the key is the configured resource");
    assert_eq!(file["server"].as_str(), Some(server.issuer().as_str()));

    let thv = Thv::start(&configured, &flags);
    thv.wait_for_stderr("resumed the saved login");
    assert_eq!(call(&thv).await.status(), 200);
    assert_eq!(server.requests("/device").len(), 1, "no second device login");
    let grants = server.token_requests();
    assert_eq!(grants.len(), 2, "one refresh");
    let refresh = &grants[1].0;
    assert_eq!(field(refresh, "grant_type"), Some("refresh_token"));
    assert_eq!(field(refresh, "refresh_token"), Some("pub-rt-1"));
    assert_eq!(field(refresh, "resource"), Some(published.as_str()), "the refresh carries the published one too");
    let last = up.seen().into_iter().filter_map(|s| s.headers.get("authorization").cloned()).last();
    assert_eq!(last.unwrap(), "Bearer pub-tok-2");
    drop(thv);
    std::fs::remove_dir_all(&store).unwrap();
}
