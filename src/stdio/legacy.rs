//! The legacy HTTP+SSE transport (MCP 2024-11-05 Transports §HTTP with SSE), for servers
//! that do not speak Streamable HTTP: a GET on the target opens an event stream whose first
//! `endpoint` event names the URL to POST each message to; every message from the server,
//! answers included, arrives on that one stream.
//!
//! The bridge opens the stream on the first message (with `--transport sse`, a target URL
//! ending in `/sse`, or when `auto` met 404 or 405 on its first Streamable HTTP POST),
//! POSTs to the endpoint, and a task of its own relays the stream's messages to stdout in
//! order. Requests whose answers are still due when the stream ends get an error answer;
//! the next message opens a new stream, and a new stream (the server restarted) starts
//! with the client's `initialize` replayed, its answer dropped. Memory is bounded as for Streamable HTTP: one
//! event at most the message limit, and at most [`MAX_PENDING`] requests waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::BodyExt as _;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::lines::Output;
use super::message::{error_answer, one_line, read_client, read_server, same_id};
use super::remote::{Asked, ERROR_BODY_LIMIT, Remote, is_event_stream, lock, read_bounded};
use crate::mcp::events::{Event, EventReader, TooLarge};
use crate::proxy::pool::UpstreamBody;
use crate::proxy::respond::UPSTREAM_UNAVAILABLE;

/// Requests waiting for their answer on the stream at most; more are refused.
const MAX_PENDING: usize = 1024;

/// How long the stream may take to name its endpoint when `--upstream-timeout` is 0.
const ENDPOINT_LIMIT: Duration = Duration::from_secs(30);

/// The legacy transport's state.
#[derive(Default)]
pub(crate) struct Legacy {
    /// The open stream, if any.
    open: tokio::sync::Mutex<Option<Arc<Stream>>>,
    /// A stream was open before: a new one is a new session, to be initialized again.
    opened_before: AtomicBool,
    /// Ends the streams' tasks (end of the session).
    pub(crate) stop: CancellationToken,
}

/// One event stream, shared with the task that reads it.
struct Stream {
    /// The endpoint it named: where messages are POSTed.
    endpoint: Uri,
    /// Requests POSTed whose answers have not arrived yet.
    pending: Mutex<Vec<Box<RawValue>>>,
    /// The id of a replayed `initialize`, whose answer the client must not see.
    swallow: Mutex<Option<Box<RawValue>>>,
}

impl Stream {
    fn forget(&self, id: &RawValue) {
        lock(&self.pending).retain(|p| p.get() != id.get());
    }
}

impl Remote {
    /// POSTs a message to the legacy endpoint, opening the stream first if needed.
    /// `Ok(true)` for a request: its answer is relayed by the stream's task.
    ///
    /// A 404 from the endpoint means the server lost the session (it restarted): the
    /// stream is opened anew, the client's `initialize` replayed there, and the message
    /// POSTed once more, as for Streamable HTTP ([`super::session`]).
    pub(super) async fn post_legacy(
        &self,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
        asked: Option<&Asked<'_>>,
        may_replay: bool,
    ) -> Result<bool, String> {
        let mut stream = self.legacy_stream().await?;
        let mut resp = self.post_to(&stream, body.clone(), extra, asked).await?;
        if resp.status() == StatusCode::NOT_FOUND && may_replay {
            drop(resp);
            self.legacy_lost(&stream).await;
            stream = self.legacy_stream().await?;
            resp = self.post_to(&stream, body, extra, asked).await?;
        }
        if !resp.status().is_success() {
            asked.inspect(|a| stream.forget(a.id));
            return self.refused(resp, asked).await;
        }
        // The body ("Accepted") carries nothing; read so the connection can be reused.
        let _ = read_bounded(resp.into_body(), ERROR_BODY_LIMIT).await;
        Ok(asked.is_some())
    }

    /// POSTs to a stream's endpoint; a request is pending on the stream from before
    /// the POST (its answer may come before the POST's own response).
    async fn post_to(
        &self,
        stream: &Stream,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
        asked: Option<&Asked<'_>>,
    ) -> Result<Response<UpstreamBody>, String> {
        if let Some(asked) = asked {
            let mut pending = lock(&stream.pending);
            if pending.len() >= MAX_PENDING {
                return Err(format!("{MAX_PENDING} requests already wait for their answers from the MCP server"));
            }
            pending.push(asked.id.to_owned());
        }
        self.send_to(&stream.endpoint, Method::POST, body, extra).await.inspect_err(|_| {
            asked.inspect(|a| stream.forget(a.id));
        })
    }

    /// Forgets a stream whose session the server lost, unless a newer one replaced it.
    async fn legacy_lost(&self, stream: &Arc<Stream>) {
        let mut open = self.legacy.open.lock().await;
        if open.as_ref().is_some_and(|o| Arc::ptr_eq(o, stream)) {
            *open = None;
        }
    }

    /// The open stream, or one opened now; a stream that replaces an earlier one starts
    /// with the client's `initialize` replayed.
    async fn legacy_stream(&self) -> Result<Arc<Stream>, String> {
        let mut slot = self.legacy.open.lock().await;
        if let Some(stream) = slot.as_ref() {
            return Ok(stream.clone());
        }
        let resp = self.send(Method::GET, Bytes::new(), &[]).await?;
        if resp.status() != StatusCode::OK || !is_event_stream(&resp) {
            return Err(format!(
                "the MCP server answered HTTP {} to the GET that opens the legacy HTTP+SSE event stream",
                resp.status().as_u16()
            ));
        }
        let mut body = resp.into_body();
        let mut reader = EventReader::new(self.max_message);
        let mut events = Vec::new();
        let limit = self.body_timeout.unwrap_or(ENDPOINT_LIMIT);
        let named = tokio::time::timeout(limit, async {
            loop {
                let Some(frame) = body.frame().await else {
                    return Err("the legacy event stream ended before naming its endpoint".to_owned());
                };
                let frame = frame.map_err(|e| format!("the legacy event stream broke off: {e}"))?;
                let Ok(data) = frame.into_data() else { continue };
                reader.feed(&data, &mut events).map_err(|TooLarge| {
                    "the legacy event stream sent an event larger than --max-request-body".to_owned()
                })?;
                if let Some(at) = events.iter().position(|e| e.name.as_deref() == Some("endpoint")) {
                    // Nothing was POSTed yet, so nothing before the endpoint is an answer.
                    let endpoint = events.drain(..=at).next_back().map(|e| e.data).unwrap_or_default();
                    return Ok(endpoint);
                }
                // Bounded: events before the endpoint are not kept.
                events.clear();
            }
        })
        .await
        .map_err(|_| format!("the legacy event stream named no endpoint within {limit:?}"))??;
        let stream = Arc::new(Stream {
            endpoint: self.resolve_endpoint(&named)?,
            pending: Mutex::new(Vec::new()),
            swallow: Mutex::new(None),
        });
        self.legacy_confirmed();
        let task = relay_stream(
            body,
            reader,
            events,
            self.out.clone(),
            stream.clone(),
            self.legacy.clone(),
            self.target.clone(),
        );
        tokio::spawn(task);
        if self.legacy.opened_before.swap(true, Ordering::AcqRel) {
            self.replay_legacy(&stream).await?;
        } else {
            info!(target = %self.target, "speaking the legacy HTTP+SSE transport");
        }
        *slot = Some(stream.clone());
        Ok(stream)
    }

    /// Replays the client's `initialize` (and `notifications/initialized`) on a new
    /// stream; its answer is dropped by the stream's task.
    async fn replay_legacy(&self, stream: &Stream) -> Result<(), String> {
        let Some(init) = lock(&self.init).clone() else { return Ok(()) };
        *lock(&stream.swallow) = read_client(&init).ok().and_then(|m| m.id);
        let resp = self.send_to(&stream.endpoint, Method::POST, init, &[]).await?;
        if !resp.status().is_success() {
            return Err(format!("the MCP server answered HTTP {} to the replayed initialize", resp.status().as_u16()));
        }
        if self.initialized.load(Ordering::Acquire) {
            let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
            self.send_to(&stream.endpoint, Method::POST, note, &[]).await?;
        }
        warn!(target = %self.target, "the legacy event stream was opened anew; the client's initialize was replayed");
        Ok(())
    }

    /// The endpoint event's URL, resolved against the target. Another origin is refused:
    /// the bridge's token and header fields go to `--target-uri`'s origin only.
    fn resolve_endpoint(&self, data: &[u8]) -> Result<Uri, String> {
        let data = std::str::from_utf8(data).map_err(|_| "the legacy endpoint is not UTF-8".to_owned())?.trim();
        let base = url::Url::parse(&self.target).map_err(|e| format!("--target-uri: {e}"))?;
        let joined = base.join(data).map_err(|e| format!("the legacy endpoint {data:?} is not a URL: {e}"))?;
        if joined.origin() != base.origin() {
            return Err(format!(
                "the MCP server named a legacy endpoint on another origin ({}); thv sends only to --target-uri's origin",
                joined.origin().ascii_serialization()
            ));
        }
        let pq = match joined.query() {
            Some(q) => format!("{}?{q}", joined.path()),
            None => joined.path().to_owned(),
        };
        let pq = PathAndQuery::try_from(pq).map_err(|e| format!("the legacy endpoint {data:?}: {e}"))?;
        Ok(self.upstream.uri_for(Some(&pq)))
    }
}

/// Relays the legacy stream's messages in order until it ends; then answers what is still
/// pending with an error and lets the next message open a new stream.
async fn relay_stream(
    mut body: UpstreamBody,
    mut reader: EventReader,
    mut events: Vec<Event>,
    out: Output,
    stream: Arc<Stream>,
    legacy: Arc<Legacy>,
    target: String,
) {
    let why = loop {
        for event in events.drain(..) {
            if !event.is_message() || event.data.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Some(read) = read_server(&event.data) else {
                warn!(target = %target, "the MCP server sent a message that is not JSON; it was dropped");
                continue;
            };
            if let Some(id) = &read.answers {
                let mut swallow = lock(&stream.swallow);
                if swallow.as_deref().is_some_and(|s| same_id(id, s)) {
                    *swallow = None;
                    continue;
                }
                drop(swallow);
                lock(&stream.pending).retain(|p| !same_id(id, p));
            }
            out.line(one_line(&event.data).into_owned()).await;
        }
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = legacy.stop.cancelled() => return,
        };
        let data = match frame {
            None => break "the MCP server closed its legacy event stream".to_owned(),
            Some(Err(e)) => break format!("the MCP server's legacy event stream broke off: {e}"),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        if reader.feed(&data, &mut events) == Err(TooLarge) {
            break "the MCP server sent an event larger than --max-request-body; the stream was dropped".to_owned();
        }
    };
    warn!(target = %target, "{why}");
    {
        let mut open = legacy.open.lock().await;
        if open.as_ref().is_some_and(|o| Arc::ptr_eq(o, &stream)) {
            *open = None;
        }
    }
    let pending = std::mem::take(&mut *lock(&stream.pending));
    for id in pending {
        out.line(error_answer(Some(&id), UPSTREAM_UNAVAILABLE, &format!("{why} before answering this request"))).await;
    }
}
