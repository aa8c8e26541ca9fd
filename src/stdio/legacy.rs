//! The legacy HTTP+SSE transport (MCP 2024-11-05 Transports §HTTP with SSE), for servers
//! that do not speak Streamable HTTP: a GET on the target opens an event stream whose first
//! `endpoint` event names the URL to POST each message to; every message from the server,
//! answers included, arrives on that one stream.
//!
//! The bridge opens the stream on the first message (with `--transport sse`, a target URL
//! ending in `/sse`, or when `auto` met 404 or 405 on its first Streamable HTTP POST),
//! POSTs to the endpoint, and a task of its own relays the stream's messages to stdout in
//! order. Requests whose answers are still due when the stream ends get an error answer;
//! the next message opens a new stream. Memory is bounded as for Streamable HTTP: one
//! event at most the message limit, and at most [`MAX_PENDING`] requests waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt as _;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::lines::Output;
use super::message::{error_answer, one_line, read_server, same_id};
use super::remote::{Asked, ERROR_BODY_LIMIT, Remote, is_event_stream, lock, read_bounded};
use crate::mcp::events::{Event, EventReader, TooLarge};
use crate::proxy::pool::UpstreamBody;
use crate::proxy::respond::UPSTREAM_UNAVAILABLE;

/// Requests waiting for their answer on the stream at most; more are refused.
const MAX_PENDING: usize = 1024;

/// How long the stream may take to name its endpoint when `--upstream-timeout` is 0.
const ENDPOINT_LIMIT: Duration = Duration::from_secs(30);

/// The legacy stream's state, shared with the task that reads it.
#[derive(Default)]
pub(crate) struct Legacy {
    /// The endpoint to POST to, while the stream is open.
    endpoint: tokio::sync::Mutex<Option<Uri>>,
    /// Requests POSTed whose answers have not arrived yet.
    pending: Mutex<Vec<Box<RawValue>>>,
    /// Ends the stream's task (end of the session).
    pub(crate) stop: CancellationToken,
}

impl Legacy {
    fn forget(&self, id: &RawValue) {
        lock(&self.pending).retain(|p| p.get() != id.get());
    }
}

impl Remote {
    /// POSTs a message to the legacy endpoint, opening the stream first if needed.
    /// `Ok(true)` for a request: its answer is relayed by the stream's task.
    pub(super) async fn post_legacy(
        &self,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
        asked: Option<&Asked<'_>>,
    ) -> Result<bool, String> {
        let endpoint = self.legacy_endpoint().await?;
        if let Some(asked) = asked {
            let mut pending = lock(&self.legacy.pending);
            if pending.len() >= MAX_PENDING {
                return Err(format!("{MAX_PENDING} requests already wait for their answers from the MCP server"));
            }
            pending.push(asked.id.to_owned());
        }
        let resp = match self.send_to(&endpoint, Method::POST, body, extra).await {
            Ok(resp) => resp,
            Err(why) => {
                asked.inspect(|a| self.legacy.forget(a.id));
                return Err(why);
            }
        };
        if !resp.status().is_success() {
            asked.inspect(|a| self.legacy.forget(a.id));
            return self.refused(resp, asked).await;
        }
        // The body ("Accepted") carries nothing; read so the connection can be reused.
        let _ = read_bounded(resp.into_body(), ERROR_BODY_LIMIT).await;
        Ok(asked.is_some())
    }

    /// The endpoint of the open stream, or of a stream opened now.
    async fn legacy_endpoint(&self) -> Result<Uri, String> {
        let mut slot = self.legacy.endpoint.lock().await;
        if let Some(uri) = slot.as_ref() {
            return Ok(uri.clone());
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
        let uri = self.resolve_endpoint(&named)?;
        info!(target = %self.target, "speaking the legacy HTTP+SSE transport");
        self.legacy_confirmed();
        tokio::spawn(relay_stream(body, reader, events, self.out.clone(), self.legacy.clone(), self.target.clone()));
        *slot = Some(uri.clone());
        Ok(uri)
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
                lock(&legacy.pending).retain(|p| !same_id(id, p));
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
    *legacy.endpoint.lock().await = None;
    let pending = std::mem::take(&mut *lock(&legacy.pending));
    for id in pending {
        out.line(error_answer(Some(&id), UPSTREAM_UNAVAILABLE, &format!("{why} before answering this request"))).await;
    }
}
