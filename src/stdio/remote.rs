//! The bridge's side towards the MCP server (MCP 2025-11-25 Transports §Streamable HTTP):
//! every message POSTed with `Accept: application/json, text/event-stream`; a JSON answer
//! or an event stream relayed message by message; `Mcp-Session-Id` and
//! `MCP-Protocol-Version` kept from the `initialize` exchange and sent on every later
//! request; the operator's `--remote-forward-headers*` on every request; the GET listen
//! stream; the session ended with DELETE.
//!
//! Requests go through the proxy's own upstream client ([`Upstream`], the same pooled
//! HTTP/1.1 connections and TLS) and, with `--remote-auth*`, through [`Outbound::send`]
//! (token, renewal after 401, step-up). What the server sends back is read with bounded
//! memory: a JSON body or one event may be at most the message limit.

use std::str::FromStr as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::{debug, info};

use super::lines::Output;
use super::message::{ClientMessage, error_answer, one_line, read_server, same_id};
use crate::config::StdioConfig;
use crate::error::Error;
use crate::mcp::events::{EventReader, TooLarge};
use crate::outbound::{Outbound, SendError, Unavailable};
use crate::proxy::forward::Upstream;
use crate::proxy::headers::ForwardHeaders;
use crate::proxy::pool::UpstreamBody;

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// How often a request waiting for the OAuth login looks again (the login has no
/// notification to wait on; the wait itself is bounded by `--remote-auth-timeout`).
const LOGIN_POLL: Duration = Duration::from_millis(100);

/// The most of a non-2xx body read to look for a JSON-RPC answer in it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The MCP server as the bridge sees it.
pub(crate) struct Remote {
    upstream: Upstream,
    outbound: Option<Outbound>,
    login_timeout: Option<Duration>,
    /// The MCP endpoint, origin-form, and the `Host` it is sent with.
    uri: Uri,
    host: HeaderValue,
    /// `--target-uri`, for the log.
    pub(crate) target: String,
    max_message: usize,
    /// How long a JSON answer may take to arrive once its headers did.
    body_timeout: Option<Duration>,
    session: Mutex<Option<HeaderValue>>,
    protocol_version: Mutex<Option<HeaderValue>>,
    /// The target asked for a token without any `--remote-auth*`: said once.
    auth_hint_given: AtomicBool,
    /// `--remote-forward-headers*`, set on every request.
    forward: Option<ForwardHeaders>,
    pub(crate) out: Output,
}

/// The request a relay answers, when it is one.
pub(crate) struct Asked<'a> {
    pub(crate) id: &'a RawValue,
    /// `initialize`: its result names the protocol version for later requests.
    pub(crate) initialize: bool,
}

impl Remote {
    /// Builds the upstream client and starts the login, if any. Needs the runtime.
    pub(crate) fn new(config: &StdioConfig, out: Output) -> Result<Remote, Error> {
        let upstream = Upstream::new(&config.target, config.connect_timeout, config.upstream_timeout)?;
        let outbound = config.outbound.as_ref().map(|c| Outbound::new(c, &config.target, None)).transpose()?;
        if let Some(outbound) = &outbound {
            outbound.start();
        }
        let path = PathAndQuery::from_str(&config.target.endpoint_path).unwrap_or(PathAndQuery::from_static("/"));
        Ok(Remote {
            uri: upstream.uri_for(Some(&path)),
            host: upstream.host_header().clone(),
            upstream,
            outbound,
            login_timeout: config.login_timeout(),
            target: config.target.display(),
            max_message: config.max_message,
            body_timeout: config.upstream_timeout,
            session: Mutex::new(None),
            protocol_version: Mutex::new(None),
            auth_hint_given: AtomicBool::new(false),
            forward: config.forward.clone(),
            out,
        })
    }

    /// Whether the server gave a session id.
    pub(crate) fn has_session(&self) -> bool {
        lock(&self.session).is_some()
    }

    /// POSTs a client's message and relays what comes back. `Ok(true)` when the answer to
    /// `asked` was among it; `Err` says what failed (the caller answers the client).
    pub(crate) async fn post(
        &self,
        msg: &ClientMessage,
        body: Bytes,
        asked: Option<Asked<'_>>,
    ) -> Result<bool, String> {
        let mut extra = Vec::new();
        // MCP 2026-07-28 repeats the method and name in headers; earlier servers ignore them.
        if let Some(value) = msg.method.as_deref().and_then(header_value) {
            extra.push((MCP_METHOD, value));
        }
        if let Some(value) = msg.name.as_deref().and_then(header_value) {
            extra.push((MCP_NAME, value));
        }
        let resp = self.send(Method::POST, body, extra).await?;
        self.relay(resp, asked.as_ref()).await
    }

    /// Sends one request to the MCP endpoint with the session's headers and, when
    /// configured, the proxy's token.
    pub(crate) async fn send(
        &self,
        method: Method,
        body: Bytes,
        extra: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Response<UpstreamBody>, String> {
        let accept = if method == Method::GET { "text/event-stream" } else { "application/json, text/event-stream" };
        let mut req = Request::new(());
        *req.method_mut() = method.clone();
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(ACCEPT, HeaderValue::from_static(accept));
        if method == Method::POST {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(session) = lock(&self.session).clone() {
            headers.insert(MCP_SESSION_ID, session);
        }
        if let Some(version) = lock(&self.protocol_version).clone() {
            headers.insert(MCP_PROTOCOL_VERSION, version);
        }
        for (name, value) in extra {
            headers.insert(name, value);
        }
        // The proxy's rule: the operator's fields win over any of the same name.
        if let Some(fields) = &self.forward {
            fields.apply(headers);
        }
        let (parts, ()) = req.into_parts();
        let resp = match &self.outbound {
            None => {
                self.upstream.send_timed(Request::from_parts(parts, Full::new(body))).await.map_err(|e| e.to_string())
            }
            Some(outbound) => {
                self.wait_for_login(outbound).await?;
                outbound.send(parts, body, |req| self.upstream.send_timed(req)).await.map_err(|e| match e {
                    SendError::Unavailable(why) => unavailable(&why),
                    SendError::Upstream(e) => e.to_string(),
                })
            }
        }?;
        if resp.status().is_success()
            && let Some(id) = resp.headers().get(MCP_SESSION_ID)
        {
            let mut session = lock(&self.session);
            if session.as_ref() != Some(id) {
                debug!("the MCP server opened a session");
                *session = Some(id.clone());
            }
        }
        Ok(resp)
    }

    /// Waits, bounded by `--remote-auth-timeout`, until a token can be had.
    async fn wait_for_login(&self, outbound: &Outbound) -> Result<(), String> {
        let Some(limit) = self.login_timeout else { return Ok(()) };
        let deadline = Instant::now() + limit;
        loop {
            match outbound.authorization().await {
                Ok(_) => return Ok(()),
                Err(why @ Unavailable::Failed(_)) => return Err(unavailable(&why)),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(LOGIN_POLL).await,
                Err(_) => {
                    return Err(format!(
                        "no login to the MCP server within {limit:?} (--remote-auth-timeout); finish the login in the browser (the URL, and a device login's code, are in the log) and retry"
                    ));
                }
            }
        }
    }

    /// Relays a response's messages to stdout, in order. `Ok(true)` once the answer to
    /// `asked` was relayed (the rest of an event stream is then not waited for).
    pub(crate) async fn relay(&self, resp: Response<UpstreamBody>, asked: Option<&Asked<'_>>) -> Result<bool, String> {
        let status = resp.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(false);
        }
        if !status.is_success() {
            return self.refused(resp, asked).await;
        }
        let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" => {
                let body = self.read_json(resp).await?;
                self.deliver(&body, asked).await
            }
            "text/event-stream" => self.relay_events(resp.into_body(), asked).await,
            "" if resp.headers().get(CONTENT_LENGTH).is_some_and(|l| l == "0") => Ok(false),
            _ => Err(format!(
                "the MCP server answered with {:?}, neither JSON nor an event stream",
                truncate(content_type)
            )),
        }
    }

    /// Reads a JSON body, bounded in size and time.
    async fn read_json(&self, resp: Response<UpstreamBody>) -> Result<Bytes, String> {
        let read = read_bounded(resp.into_body(), self.max_message);
        let read = match self.body_timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| format!("the MCP server's answer did not arrive within {limit:?}"))?,
            None => read.await,
        };
        read.map_err(|e| match e {
            Read::TooLarge => "the MCP server's answer is larger than --max-request-body".to_owned(),
            Read::Broken(e) => format!("the MCP server's answer broke off: {e}"),
        })
    }

    /// Relays an event stream's messages until it ends, or until the answer to `asked`.
    pub(crate) async fn relay_events(&self, mut body: UpstreamBody, asked: Option<&Asked<'_>>) -> Result<bool, String> {
        let mut reader = EventReader::new(self.max_message);
        let mut events = Vec::new();
        loop {
            let Some(frame) = body.frame().await else { return Ok(false) };
            let frame = frame.map_err(|e| format!("the MCP server's event stream broke off: {e}"))?;
            let Ok(data) = frame.into_data() else { continue };
            reader.feed(&data, &mut events).map_err(|TooLarge| {
                "the MCP server sent an event larger than --max-request-body; the stream was dropped".to_owned()
            })?;
            for event in events.drain(..) {
                // Priming events (an id and empty data) and other event types carry no message.
                if !event.is_message() || event.data.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if self.deliver(&event.data, asked).await? {
                    return Ok(true);
                }
            }
        }
    }

    /// Writes one server message to stdout; true when it is the answer to `asked`.
    async fn deliver(&self, message: &[u8], asked: Option<&Asked<'_>>) -> Result<bool, String> {
        let Some(read) = read_server(message) else {
            return Err("the MCP server sent a message that is not JSON".to_owned());
        };
        let answered = match (asked, &read.answers) {
            (Some(asked), Some(id)) => same_id(id, asked.id),
            _ => false,
        };
        if answered
            && asked.is_some_and(|a| a.initialize)
            && let Some(version) = read.protocol_version.as_deref().and_then(header_value)
        {
            *lock(&self.protocol_version) = Some(version);
        }
        self.out.line(one_line(message).into_owned()).await;
        Ok(answered)
    }

    /// A non-2xx answer: relayed when its body is the JSON-RPC answer to `asked`,
    /// otherwise described.
    async fn refused(&self, resp: Response<UpstreamBody>, asked: Option<&Asked<'_>>) -> Result<bool, String> {
        let status = resp.status();
        let challenged = resp.headers().contains_key(http::header::WWW_AUTHENTICATE);
        if let (Some(asked), Ok(body)) = (asked, read_bounded(resp.into_body(), ERROR_BODY_LIMIT).await)
            && read_server(&body).and_then(|m| m.answers).is_some_and(|id| same_id(&id, asked.id))
        {
            self.out.line(one_line(&body).into_owned()).await;
            return Ok(true);
        }
        let mut why = format!("the MCP server answered HTTP {}", status.as_u16());
        if status == StatusCode::NOT_FOUND && lock(&self.session).take().is_some() {
            why.push_str(": the session has ended; the client must initialize again");
        } else if status == StatusCode::UNAUTHORIZED && self.outbound.is_none() {
            why.push_str(": it wants a token; pass --remote-auth to log in (or a bearer token)");
            if challenged && !self.auth_hint_given.swap(true, Ordering::Relaxed) {
                info!("the MCP server asks for an OAuth token: add --remote-auth to let thv log in");
            }
        }
        Err(why)
    }

    /// Ends the session (DELETE), bounded by `limit`. A server without sessions, or one
    /// that does not allow clients to end them (405), needs nothing.
    pub(crate) async fn end_session(&self, limit: Duration) {
        if !self.has_session() {
            return;
        }
        match tokio::time::timeout(limit, self.send(Method::DELETE, Bytes::new(), Vec::new())).await {
            Ok(Ok(resp)) => debug!(status = resp.status().as_u16(), "session ended"),
            Ok(Err(why)) => info!("ending the session failed: {why}"),
            Err(_) => info!("the MCP server did not confirm the end of the session within {limit:?}"),
        }
    }

    /// The bridge's error answer to `id`.
    pub(crate) async fn answer_error(&self, id: &RawValue, code: i32, message: &str) {
        self.out.line(error_answer(Some(id), code, message)).await;
    }
}

/// Why reading a body stopped.
enum Read {
    TooLarge,
    Broken(hyper::Error),
}

/// Reads a whole body of at most `max` bytes.
async fn read_bounded(mut body: UpstreamBody, max: usize) -> Result<Bytes, Read> {
    use http_body::Body as _;
    if body.size_hint().lower() > max as u64 {
        return Err(Read::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Read::Broken)?.into_data() else { continue };
        if out.len() + data.len() > max {
            return Err(Read::TooLarge);
        }
        out.extend_from_slice(&data);
    }
    Ok(Bytes::from(out))
}

/// What a request is told when no token can be had (the proxy's wording, for a bridge).
fn unavailable(why: &Unavailable) -> String {
    match why {
        Unavailable::Pending => {
            "thv is logging in to the MCP server; finish the login in the browser (the URL, and a device login's code, are in the log) and retry"
                .to_owned()
        }
        Unavailable::Failed(reason) => {
            format!("thv could not log in to the MCP server ({reason}); it will try again on a later request")
        }
        Unavailable::Retry => {
            "the authorization server of the MCP server is unavailable; thv keeps its login and retries".to_owned()
        }
    }
}

/// A header value for a name from a message; `None` for what a header cannot carry as is.
fn header_value(value: &str) -> Option<HeaderValue> {
    (value.len() <= 1024 && value.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
