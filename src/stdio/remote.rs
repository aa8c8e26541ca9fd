//! The bridge's side towards the MCP server (MCP 2025-11-25 Transports §Streamable HTTP):
//! every message POSTed with `Accept: application/json, text/event-stream`; a JSON answer
//! or an event stream relayed message by message; `Mcp-Session-Id` and
//! `MCP-Protocol-Version` kept from the `initialize` exchange and sent on every later
//! request; the operator's `--remote-forward-headers*` on every request; the GET listen
//! stream; the session ended with DELETE.
//!
//! An event stream that ends or breaks before its answer is resumed with `Last-Event-ID`
//! where the server gave event ids (§Resumability and Redelivery); a session the server
//! lost is replaced ([`super::session`]); `auto` falls back to the legacy transport
//! ([`super::legacy`]).
//!
//! Requests go through the proxy's own upstream client ([`Upstream`], the same pooled
//! HTTP/1.1 connections and TLS) and, with `--remote-auth*`, through [`Outbound::send`]
//! (token, renewal after 401, step-up). What the server sends back is read with bounded
//! memory: a JSON body or one event may be at most the message limit.

use std::str::FromStr as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::{debug, info};

use super::legacy::Legacy;
use super::lines::Output;
use super::message::{ClientMessage, error_answer, one_line, read_server, same_id};
use crate::config::{StdioConfig, Transport};
use crate::error::Error;
use crate::mcp::events::{EventReader, TooLarge};
use crate::outbound::{Outbound, SendError, Unavailable};
use crate::proxy::forward::Upstream;
use crate::proxy::headers::ForwardHeaders;
use crate::proxy::pool::UpstreamBody;

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
pub(super) const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// How often one event stream is resumed with `Last-Event-ID` before the bridge gives up
/// on it, and the pause before the first try (doubled for each next one).
const MAX_RESUMES: u32 = 5;
const RESUME_PAUSE: Duration = Duration::from_millis(100);

/// How long a replayed `initialize` may take when `--upstream-timeout` is 0.
pub(super) const REPLAY_LIMIT: Duration = Duration::from_secs(30);

/// What `auto` found the server to speak.
const UNDECIDED: u8 = 0;
const STREAMABLE: u8 = 1;
const LEGACY: u8 = 2;

/// How often a request waiting for the OAuth login looks again (the login has no
/// notification to wait on; the wait itself is bounded by `--remote-auth-timeout`).
const LOGIN_POLL: Duration = Duration::from_millis(100);

/// The most of a non-2xx body read to look for a JSON-RPC answer in it.
pub(super) const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The MCP server as the bridge sees it.
pub(crate) struct Remote {
    pub(super) upstream: Upstream,
    outbound: Option<Outbound>,
    login_timeout: Option<Duration>,
    /// The MCP endpoint, origin-form, and the `Host` it is sent with.
    pub(super) uri: Uri,
    host: HeaderValue,
    /// `--target-uri`, for the log.
    pub(crate) target: String,
    pub(super) max_message: usize,
    /// How long a JSON answer may take to arrive once its headers did.
    pub(super) body_timeout: Option<Duration>,
    pub(super) session: Mutex<Option<HeaderValue>>,
    pub(super) protocol_version: Mutex<Option<HeaderValue>>,
    /// The target asked for a token without any `--remote-auth*`: said once.
    auth_hint_given: AtomicBool,
    /// `--remote-forward-headers*`, set on every request.
    forward: Option<ForwardHeaders>,
    pub(crate) out: Output,
    /// `--transport`, and (for `auto`) what the server turned out to speak.
    transport: Transport,
    decided: AtomicU8,
    /// The legacy HTTP+SSE transport's stream and endpoint.
    pub(super) legacy: std::sync::Arc<Legacy>,
    /// The client's `initialize`, replayed when the server has lost the session, and
    /// whether `notifications/initialized` followed it.
    pub(super) init: Mutex<Option<Bytes>>,
    pub(super) initialized: AtomicBool,
    /// One replay at a time: requests that failed together share one new session.
    pub(super) reinit: tokio::sync::Mutex<()>,
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
            transport: config.transport,
            decided: AtomicU8::new(if config.transport == Transport::Sse { LEGACY } else { UNDECIDED }),
            legacy: std::sync::Arc::new(Legacy::default()),
            init: Mutex::new(None),
            initialized: AtomicBool::new(false),
            reinit: tokio::sync::Mutex::new(()),
        })
    }

    /// The session id the server gave, if any.
    pub(crate) fn session(&self) -> Option<HeaderValue> {
        lock(&self.session).clone()
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
        // A 2026-07-28 request states its revision in `_meta`, and the header must say the
        // same (it may have no session, hence no version agreed at `initialize`).
        if let Some(value) = msg.protocol_version.as_deref().and_then(header_value) {
            extra.push((MCP_PROTOCOL_VERSION, value));
        }
        let initialize = msg.method.as_deref() == Some("initialize");
        if initialize {
            *lock(&self.init) = Some(body.clone());
        } else if msg.method.as_deref() == Some("notifications/initialized") {
            self.initialized.store(true, Ordering::Release);
        }
        if self.decided.load(Ordering::Acquire) == LEGACY {
            return self.post_legacy(body, &extra, asked.as_ref(), !initialize).await;
        }
        let sent_session = lock(&self.session).clone();
        let resp = self.send(Method::POST, body.clone(), &extra).await?;
        let status = resp.status();
        if self.transport == Transport::Auto && self.decided.load(Ordering::Acquire) == UNDECIDED {
            // mcp-remote's `http-first`: a server without a Streamable HTTP endpoint here
            // answers the POST 404 or 405; one with a session to lose has none yet.
            if matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) && sent_session.is_none() {
                drop(resp);
                info!(target = %self.target, "the MCP server answered HTTP {} to a Streamable HTTP POST; trying the legacy HTTP+SSE transport", status.as_u16());
                return self.post_legacy(body, &extra, asked.as_ref(), !initialize).await.map_err(|why| {
                    format!("the MCP server answered HTTP {} to Streamable HTTP, and the legacy HTTP+SSE transport failed too: {why}", status.as_u16())
                });
            }
            if status.is_success() {
                self.decided.store(STREAMABLE, Ordering::Release);
            }
        }
        // MCP 2025-11-25 §Session Management: 404 to a request with a session id means the
        // session is gone (a restarted server); the client must initialize anew. The bridge
        // does that for the client, which already has its answer, and retries once.
        if status == StatusCode::NOT_FOUND && sent_session.is_some() && !initialize && lock(&self.init).is_some() {
            drop(resp);
            self.reinitialize(sent_session.as_ref()).await.map_err(|why| {
                format!("the MCP server lost the session (HTTP 404), and initializing a new one failed: {why}")
            })?;
            let resp = self.send(Method::POST, body, &extra).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err("the MCP server answered HTTP 404 again, in the session initialized anew after it had lost the old one; the request was not retried again".to_owned());
            }
            return self.relay(resp, asked.as_ref()).await;
        }
        self.relay(resp, asked.as_ref()).await
    }

    /// Marks the server as speaking the legacy transport (its stream gave an endpoint).
    pub(super) fn legacy_confirmed(&self) {
        self.decided.store(LEGACY, Ordering::Release);
    }

    /// Sends one request to the MCP endpoint with the session's headers and, when
    /// configured, the proxy's token.
    pub(crate) async fn send(
        &self,
        method: Method,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Response<UpstreamBody>, String> {
        self.send_to(&self.uri, method, body, extra).await
    }

    /// [`Remote::send`] to another path of the server (the legacy transport's endpoint).
    pub(super) async fn send_to(
        &self,
        uri: &Uri,
        method: Method,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Response<UpstreamBody>, String> {
        let accept = if method == Method::GET { "text/event-stream" } else { "application/json, text/event-stream" };
        let mut req = Request::new(());
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri.clone();
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
            headers.insert(name.clone(), value.clone());
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
                    SendError::Unavailable(why) => why.to_string(),
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
                Err(why @ Unavailable::Failed(_)) => return Err(why.to_string()),
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
    pub(super) async fn read_json(&self, resp: Response<UpstreamBody>) -> Result<Bytes, String> {
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
    ///
    /// A stream that ends or breaks first is resumed where the server gave event ids
    /// (MCP 2025-11-25 Transports §Resumability and Redelivery: a GET with
    /// `Last-Event-ID`, on which the server replays what followed that event), at most
    /// [`MAX_RESUMES`] times with a pause that doubles. Without an id a request's stream
    /// that ends early is an error: the answer cannot be had any more.
    pub(crate) async fn relay_events(&self, mut body: UpstreamBody, asked: Option<&Asked<'_>>) -> Result<bool, String> {
        let mut reader = EventReader::new(self.max_message);
        let mut events = Vec::new();
        let mut resumes = 0;
        loop {
            let broke = loop {
                let Some(frame) = body.frame().await else { break None };
                let data = match frame {
                    Err(e) => break Some(format!("the MCP server's event stream broke off: {e}")),
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                };
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
            };
            let Some(last_id) = reader.last_event_id().and_then(header_value) else {
                return match (broke, asked) {
                    (Some(why), _) => Err(format!("{why}; it gave no event id to resume it from")),
                    (None, Some(_)) => Err("the MCP server ended its event stream without a response to this request, and gave no event id to resume it from".to_owned()),
                    (None, None) => Ok(false),
                };
            };
            if resumes == MAX_RESUMES {
                return Err(format!(
                    "the MCP server's event stream ended early {} times; it was not resumed again",
                    MAX_RESUMES + 1
                ));
            }
            tokio::time::sleep(RESUME_PAUSE * 2u32.pow(resumes)).await;
            resumes += 1;
            debug!(resumes, "resuming the MCP server's event stream with Last-Event-ID");
            let resp = self.send(Method::GET, Bytes::new(), &[(LAST_EVENT_ID, last_id)]).await?;
            if !resp.status().is_success() || !is_event_stream(&resp) {
                return Err(format!(
                    "the MCP server's event stream ended early, and resuming it with Last-Event-ID was answered HTTP {}",
                    resp.status().as_u16()
                ));
            }
            body = resp.into_body();
            reader = reader.resumed();
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
    pub(super) async fn refused(
        &self,
        resp: Response<UpstreamBody>,
        asked: Option<&Asked<'_>>,
    ) -> Result<bool, String> {
        let status = resp.status();
        let challenged = resp.headers().contains_key(http::header::WWW_AUTHENTICATE);
        if let (Some(asked), Ok(body)) = (asked, read_bounded(resp.into_body(), ERROR_BODY_LIMIT).await)
            && read_server(&body).and_then(|m| m.answers).is_some_and(|id| same_id(&id, asked.id))
        {
            self.out.line(one_line(&body).into_owned()).await;
            return Ok(true);
        }
        let mut why = format!("the MCP server answered HTTP {}", status.as_u16());
        // With an initialize to replay, the session is kept: the next request that meets
        // the 404 opens a new one.
        if status == StatusCode::NOT_FOUND && lock(&self.init).is_none() && lock(&self.session).take().is_some() {
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
        self.legacy.stop.cancel();
        if !self.has_session() {
            return;
        }
        match tokio::time::timeout(limit, self.send(Method::DELETE, Bytes::new(), &[])).await {
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

/// Whether a response is an event stream.
pub(super) fn is_event_stream(resp: &Response<UpstreamBody>) -> bool {
    let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/event-stream")
}

/// Why reading a body stopped.
pub(super) enum Read {
    TooLarge,
    Broken(hyper::Error),
}

/// Reads a whole body of at most `max` bytes.
pub(super) async fn read_bounded(mut body: UpstreamBody, max: usize) -> Result<Bytes, Read> {
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

/// A header value for a name from a message; `None` for what a header cannot carry as is.
pub(super) fn header_value(value: &str) -> Option<HeaderValue> {
    (value.len() <= 1024 && value.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
