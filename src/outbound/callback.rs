//! The loopback redirect endpoint of the authorization-code flow (RFC 8252 §7.3, §8.3).
//!
//! It listens on loopback only and accepts exactly one valid callback: `state` is compared
//! in constant time *before* anything else in the query is trusted, so a local process
//! cannot abort a login with a forged `error=` (ToolHive checks `error` first, PR #6238).
//! The RFC 9207 `iss` parameter is checked next, then `error`, then `code`. The browser gets
//! a small HTML page with strict security headers; after the first valid callback the
//! listener closes, so a replayed or second callback finds nobody.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::oauth::pkce::constant_time_eq;

/// What the callback must carry to be accepted.
#[derive(Debug, Clone)]
pub(crate) struct Expectation {
    pub(crate) state: String,
    /// The issuer the login was started with (RFC 9207 §2.4), if known.
    pub(crate) issuer: Option<String>,
    /// Whether the server promised to send `iss`.
    pub(crate) iss_required: bool,
}

/// How a login ended at the callback.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallbackError {
    #[error("the authorization server answered with an error: {0}")]
    Denied(String),
    #[error("the authorization response came from another issuer (RFC 9207 iss mismatch)")]
    IssuerMismatch,
    #[error("the login was not completed within {0:?}")]
    TimedOut(Duration),
    #[error("the callback port {port} is not available ({reason}); choose another with --remote-auth-callback-port")]
    PortBusy { port: u16, reason: String },
}

/// A bound callback listener.
pub(crate) struct Callback {
    listener: TcpListener,
    /// `http://localhost:PORT/callback`, as registered.
    pub(crate) redirect_uri: String,
}

impl Callback {
    /// Binds `127.0.0.1:port`. With `fixed` (a pre-registered client, whose redirect URI
    /// the server knows) the port must be free; otherwise a free port is used instead.
    pub(crate) async fn bind(port: u16, fixed: bool) -> Result<Callback, CallbackError> {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(l) => l,
            Err(e) if fixed => return Err(CallbackError::PortBusy { port, reason: e.to_string() }),
            Err(e) => {
                warn!(port, error = %e, "the callback port is busy; using a free one for this dynamically registered client");
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                    .await
                    .map_err(|e| CallbackError::PortBusy { port: 0, reason: e.to_string() })?
            }
        };
        let port = listener.local_addr().map_err(|e| CallbackError::PortBusy { port, reason: e.to_string() })?.port();
        // `localhost` as ToolHive registers it: pre-registered clients already know it.
        Ok(Callback { listener, redirect_uri: format!("http://localhost:{port}/callback") })
    }

    /// Serves until one valid callback arrives or `timeout` passes; returns the code.
    pub(crate) async fn wait(self, expect: Expectation, timeout: Duration) -> Result<String, CallbackError> {
        let (tx, mut rx) = mpsc::channel::<Result<String, CallbackError>>(1);
        let expect = Arc::new(expect);
        let done = Arc::new(Mutex::new(false));
        let accept = async {
            loop {
                let Ok((stream, peer)) = self.listener.accept().await else { continue };
                if !peer.ip().is_loopback() {
                    continue;
                }
                let (tx, expect, done) = (tx.clone(), expect.clone(), done.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (tx, expect, done) = (tx.clone(), expect.clone(), done.clone());
                        async move { Ok::<_, Infallible>(handle(req, &expect, &done, &tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        };
        tokio::select! {
            result = rx.recv() => result.unwrap_or(Err(CallbackError::TimedOut(timeout))),
            () = accept => Err(CallbackError::TimedOut(timeout)),
            () = tokio::time::sleep(timeout) => Err(CallbackError::TimedOut(timeout)),
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    expect: &Expectation,
    done: &Mutex<bool>,
    tx: &mpsc::Sender<Result<String, CallbackError>>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/callback" {
        return page(StatusCode::NOT_FOUND, "Not found", "This address only receives the login callback.");
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // 1. state, before anything else is believed.
    if !get("state").is_some_and(|s| constant_time_eq(s.as_bytes(), expect.state.as_bytes())) {
        debug!("ignoring a callback with a wrong or missing state");
        return page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "This login link is not the one the proxy is waiting for.",
        );
    }
    {
        let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return page(StatusCode::GONE, "Already logged in", "This login was already completed.");
        }
        *done = true;
    }
    // 2. RFC 9207: the response must come from the issuer the login went to.
    let iss_ok = match (get("iss"), &expect.issuer) {
        (Some(iss), Some(issuer)) => iss == issuer,
        (Some(_), None) => true,
        (None, _) => !expect.iss_required,
    };
    let outcome = if !iss_ok {
        Err(CallbackError::IssuerMismatch)
    } else if let Some(error) = get("error") {
        let description = get("error_description")
            .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        Err(CallbackError::Denied(format!("{error}{description}")))
    } else if let Some(code) = get("code").filter(|c| !c.is_empty()) {
        Ok(code.to_owned())
    } else {
        Err(CallbackError::Denied("no authorization code in the callback".to_owned()))
    };
    let resp = match &outcome {
        Ok(_) => page(StatusCode::OK, "Logged in", "You can close this window and return to your MCP client."),
        Err(_) => page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The authorization server did not grant access. See the proxy's log.",
        ),
    };
    let _ = tx.send(outcome).await;
    resp
}

/// A minimal page; fixed text only (nothing from the query is reflected), with headers
/// that forbid scripts, framing and referrer leaks.
fn page(status: StatusCode, title: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1><p>{message}</p></body></html>"
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
