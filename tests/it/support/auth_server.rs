//! A scripted OAuth authorization server for the outgoing-auth tests: RFC 8414 metadata
//! (its issuer being the URL it is reached at), a token endpoint that answers scripted
//! replies in turn (or a test's own handler), and optionally an RFC 8628 device
//! authorization endpoint. Every request is recorded. Also the flags that point `thv` at
//! flag-given endpoints instead of metadata (`--remote-auth-authorize-url` and the rest),
//! which the browser-login tests share.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Response;
use serde_json::{Value, json};

use super::upstream::{Body, ScriptedUpstream, Seen, reply};

/// The device code the device authorization endpoint hands out (and which must never be logged).
pub const DEVICE_CODE: &str = "the-device-code-never-logged";
/// The user code the device authorization endpoint hands out.
pub const USER_CODE: &str = "WDJB-MJHT";
/// The client the device-flow tests log in as.
pub const DEVICE_CLIENT: &str = "device-client";
/// The flags of a device-flow login as that client (the issuer or endpoints go beside them).
pub const DEVICE_GRANT: [&str; 4] =
    ["--remote-auth-grant-type", "device_code", "--remote-auth-client-id", DEVICE_CLIENT];

/// A token endpoint of the test's own, for answers that depend on the request.
pub type TokenHandler = Box<dyn Fn(&Seen) -> Response<Body> + Send + Sync>;

/// What the server publishes and how its token endpoint answers.
pub struct Script {
    /// Fields added to the metadata beside `issuer` and `token_endpoint`.
    pub metadata: Value,
    /// Publishes `device_authorization_endpoint` and serves it at `/device`.
    pub device: bool,
    /// The token endpoint's answer once the scripted replies are used up.
    pub when_empty: (u16, Value),
    /// Answers token requests instead of the scripted replies.
    pub token: Option<TokenHandler>,
}

impl Script {
    /// Metadata with `extra` fields; a token endpoint answering the scripted replies, then 500.
    pub fn metadata(extra: Value) -> Script {
        Script { metadata: extra, device: false, when_empty: (500, json!({})), token: None }
    }
}

/// A running scripted authorization server.
pub struct AuthServer {
    pub server: ScriptedUpstream,
    replies: Arc<Mutex<Vec<(u16, Value)>>>,
    token_times: Arc<Mutex<Vec<Instant>>>,
}

/// A token request's form fields and Authorization header.
pub type TokenRequest = (Vec<(String, String)>, Option<String>);

impl AuthServer {
    /// Metadata with `extra` fields, and a token endpoint answering the scripted replies
    /// (500 once they are used up).
    pub async fn start(extra: Value) -> AuthServer {
        AuthServer::with(Script::metadata(extra)).await
    }

    pub async fn with(script: Script) -> AuthServer {
        let Script { metadata: extra, device, when_empty, token } = script;
        let replies: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let token_times: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (r, t) = (replies.clone(), token_times.clone());
        let server = ScriptedUpstream::start(move |seen| {
            let host = seen.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
            let json = [("content-type", "application/json")];
            match seen.uri.path() {
                "/.well-known/oauth-authorization-server" => {
                    let mut metadata = json!({
                        "issuer": format!("http://{host}"),
                        "token_endpoint": format!("http://{host}/token"),
                    });
                    metadata.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                    if device {
                        metadata["device_authorization_endpoint"] = format!("http://{host}/device").into();
                    }
                    reply(200, &json, &metadata.to_string())
                }
                "/device" if device => {
                    let body = json!({
                        "device_code": DEVICE_CODE,
                        "user_code": USER_CODE,
                        "verification_uri": format!("http://{host}/activate"),
                        "verification_uri_complete": format!("http://{host}/activate?user_code={USER_CODE}"),
                        "expires_in": 60,
                        "interval": 1,
                    });
                    reply(200, &json, &body.to_string())
                }
                "/token" => {
                    t.lock().unwrap().push(Instant::now());
                    if let Some(token) = &token {
                        return token(&seen);
                    }
                    let mut r = r.lock().unwrap();
                    let (status, body) = if r.is_empty() { when_empty.clone() } else { r.remove(0) };
                    reply(status, &json, &body.to_string())
                }
                _ => reply(404, &[], ""),
            }
        })
        .await;
        AuthServer { server, replies, token_times }
    }

    /// Queues the token endpoint's next answer.
    pub fn push(&self, status: u16, body: Value) {
        self.replies.lock().unwrap().push((status, body));
    }

    /// `http://127.0.0.1:PORT`, as its metadata names it.
    pub fn issuer(&self) -> String {
        self.server.url("").trim_end_matches('/').to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }

    /// The requests to `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.server.seen().into_iter().filter(|s| s.uri.path() == path).collect()
    }

    /// The token requests so far: form fields and the Authorization header.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.requests("/token")
            .iter()
            .map(|s| (form(s), s.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned())))
            .collect()
    }

    /// When each token request came.
    pub fn token_times(&self) -> Vec<Instant> {
        self.token_times.lock().unwrap().clone()
    }
}

/// A form-encoded body's fields, in order.
pub fn form(seen: &Seen) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&seen.body).into_owned().collect()
}

/// The flags for a browser login against flag-given endpoints on `server` (its `/authorize`
/// and `/token`), as client `cid`, with the browser skipped and the callback on `port`.
pub fn manual_endpoint_flags(server: &ScriptedUpstream, callback_port: u16, timeout: &str) -> Vec<String> {
    [
        "--remote-auth-authorize-url",
        &server.url("/authorize"),
        "--remote-auth-token-url",
        &server.url("/token"),
        "--remote-auth-client-id",
        "cid",
        "--remote-auth-skip-browser",
        "--remote-auth-callback-port",
        &callback_port.to_string(),
        "--remote-auth-timeout",
        timeout,
    ]
    .map(str::to_owned)
    .to_vec()
}
