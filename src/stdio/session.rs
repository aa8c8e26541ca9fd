//! Sessions that survive the server (MCP 2025-11-25 Transports §Session Management): a
//! server that answers 404 to a request with the session id has lost the session (it
//! restarted, or ended it); a client must initialize anew. The bridge does that for its
//! client, which already has its `initialize` answer and must not see a second one: it
//! replays the client's captured `initialize` (and `notifications/initialized`), reads
//! and drops the answer, keeps the new `Mcp-Session-Id`, and retries the failed request
//! once ([`Remote::post`]). mcp-remote does the same since its PR #307.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body_util::BodyExt as _;
use serde_json::value::RawValue;
use tracing::warn;

use super::message::read_server;
use super::remote::{MCP_METHOD, REPLAY_LIMIT, Remote, header_value, is_event_stream, lock, read_bounded};
use crate::mcp::events::{EventReader, TooLarge};
use crate::proxy::pool::UpstreamBody;

impl Remote {
    /// Opens a new session with the client's captured `initialize` (and
    /// `notifications/initialized`), unless a request that failed at the same time already
    /// did. The server's answer is read and dropped: the client has one already.
    pub(super) async fn reinitialize(&self, failed: Option<&HeaderValue>) -> Result<(), String> {
        let _one = self.reinit.lock().await;
        {
            let mut session = lock(&self.session);
            if session.is_some() && session.as_ref() != failed {
                return Ok(());
            }
            *session = None;
        }
        // As the first time: the version is what the answer negotiates, not a header of
        // the request (a server may refuse one that differs from what the client asks).
        *lock(&self.protocol_version) = None;
        let Some(init) = lock(&self.init).clone() else { return Err("no initialize to replay".to_owned()) };
        let resp = self.send(Method::POST, init, &[(MCP_METHOD, HeaderValue::from_static("initialize"))]).await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = read_bounded(resp.into_body(), 256).await.unwrap_or_default();
            let body = String::from_utf8_lossy(&body);
            return Err(format!("the MCP server answered HTTP {status} to the replayed initialize: {body:?}"));
        }
        let limit = self.body_timeout.unwrap_or(REPLAY_LIMIT);
        tokio::time::timeout(limit, self.swallow_answer(resp))
            .await
            .map_err(|_| format!("no answer to the replayed initialize within {limit:?}"))??;
        if self.initialized.load(Ordering::Acquire) {
            let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
            let method = HeaderValue::from_static("notifications/initialized");
            let resp = self.send(Method::POST, note, &[(MCP_METHOD, method)]).await?;
            if !resp.status().is_success() {
                return Err(format!(
                    "the MCP server answered HTTP {} to notifications/initialized",
                    resp.status().as_u16()
                ));
            }
        }
        warn!(target = %self.target, "the MCP server had lost the session; the client's initialize was replayed in a new one");
        Ok(())
    }

    /// Reads an answer and drops it (a replayed `initialize`): `Err` when it holds no
    /// JSON-RPC response, or an error response.
    async fn swallow_answer(&self, resp: Response<UpstreamBody>) -> Result<(), String> {
        let fine = |message: &[u8]| match read_server(message) {
            None => Err("the MCP server's answer is not JSON".to_owned()),
            Some(m) if m.answers.is_none() => Ok(false),
            Some(_) if is_error_response(message) => {
                Err("the MCP server answered the replayed initialize with an error".to_owned())
            }
            Some(m) => {
                if let Some(version) = m.protocol_version.as_deref().and_then(header_value) {
                    *lock(&self.protocol_version) = Some(version);
                }
                Ok(true)
            }
        };
        if !is_event_stream(&resp) {
            let body = self.read_json(resp).await?;
            return fine(&body)
                .and_then(|done| if done { Ok(()) } else { Err("no answer to the replayed initialize".to_owned()) });
        }
        let mut body = resp.into_body();
        let mut reader = EventReader::new(self.max_message);
        let mut events = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|e| format!("the answer broke off: {e}"))?.into_data() else { continue };
            reader.feed(&data, &mut events).map_err(|TooLarge| "an event larger than --max-request-body".to_owned())?;
            for event in events.drain(..) {
                if event.is_message() && !event.data.iter().all(u8::is_ascii_whitespace) && fine(&event.data)? {
                    return Ok(());
                }
            }
        }
        Err("the event stream ended without an answer to the replayed initialize".to_owned())
    }
}

/// Whether a JSON-RPC message is an error response.
fn is_error_response(message: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(borrow, default)]
        error: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Reply<'_>>(message).is_ok_and(|r| r.error.is_some())
}
