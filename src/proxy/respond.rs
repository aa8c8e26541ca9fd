//! The one place where failures become HTTP responses (linkerd2-proxy's "rescue" idea),
//! and the response body type every route returns.
//!
//! Errors that a JSON-RPC client will read carry a JSON-RPC 2.0 error object (JSON-RPC
//! 2.0 §5.1), echoing the request `id` when the request was a single JSON-RPC request, so
//! MCP clients can match the failure to their pending call instead of timing out.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use serde_json::value::RawValue;

use super::policy::{self, Record};
use super::pool::UpstreamBody;
use crate::inbound::metadata::ProtectedResource;
use crate::inbound::{IdpTrouble, Rejection};
use crate::mcp::sse::SseBody;
use crate::oauth::challenge::BearerError;
use crate::policy::Tap;
use crate::telemetry::Observation;

/// JSON-RPC "Invalid Request" (JSON-RPC 2.0 §5.1); also what MCP servers use for a
/// refused `Origin`.
pub(crate) const INVALID_REQUEST: i32 = -32600;
/// Implementation-defined server error (JSON-RPC 2.0 reserves -32000..-32099): the
/// proxy could not get an answer from the MCP server.
pub(crate) const UPSTREAM_UNAVAILABLE: i32 = -32000;
/// Implementation-defined server error: the proxy refused the request itself.
pub(crate) const REQUEST_REFUSED: i32 = -32001;

/// The body of every response the proxy sends.
///
/// An enum rather than a boxed trait object: the hot path (an upstream body passed
/// through) then costs no allocation and no dynamic dispatch.
pub(crate) enum ProxyBody {
    /// A response the proxy made itself.
    Local(Full<Bytes>),
    /// An upstream body passed through frame by frame.
    Upstream(UpstreamBody),
    /// An upstream event stream, watched for shutdown and legacy `endpoint` events. Boxed:
    /// its scanner would make every response ~90 bytes larger, and hyper moves responses
    /// (and their bodies) several times per request.
    Sse(Box<SseBody<UpstreamBody>>),
    /// A list answer filtered by the MCP policy.
    List(Box<super::rewrite::ListBody>),
    /// Any of the above, read by the audit log as it passes (`--enable-audit`).
    Audited(Box<Audited>),
    /// Any of the above, its bytes counted and the exchange recorded when hyper drops it
    /// (finished, or the client gone): only while records are read ([`policy::recording`]).
    Recorded(Box<Recorded>),
}

/// A response body the audit log reads the start of; its event is logged when it ends.
pub(crate) struct Audited {
    body: ProxyBody,
    tap: Tap,
}

impl Audited {
    pub(crate) fn new(body: ProxyBody, tap: Tap) -> Audited {
        Audited { body, tap }
    }
}

/// A response body whose exchange is recorded when it ends.
pub(crate) struct Recorded {
    body: ProxyBody,
    method: http::Method,
    path: String,
    status: u16,
    started: Instant,
    bytes: u64,
    /// The exchange as telemetry follows it.
    observed: Option<Box<Observation>>,
}

impl Recorded {
    /// Wraps `resp`'s body so that the exchange started at `started` is recorded when it ends.
    pub(crate) fn wrap(
        resp: Response<ProxyBody>,
        method: http::Method,
        path: String,
        started: Instant,
        mut observed: Option<Box<Observation>>,
    ) -> Response<ProxyBody> {
        let status = resp.status().as_u16();
        if let Some(observed) = observed.as_mut()
            && resp.headers().get(http::header::CONTENT_TYPE).is_some_and(|ct| policy::is_event_stream(ct.as_bytes()))
        {
            observed.event_stream();
        }
        resp.map(|body| {
            ProxyBody::Recorded(Box::new(Recorded { body, method, path, status, started, bytes: 0, observed }))
        })
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        policy::finished(
            &Record {
                method: self.method.as_str(),
                path: &self.path,
                status: self.status,
                started: self.started,
                bytes: self.bytes,
            },
            self.observed.take(),
        );
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Local(full) => Pin::new(full).poll_frame(cx).map_err(|never| match never {}),
            ProxyBody::Upstream(incoming) => Pin::new(incoming).poll_frame(cx),
            ProxyBody::Sse(sse) => Pin::new(&mut **sse).poll_frame(cx),
            ProxyBody::List(list) => Pin::new(&mut **list).poll_frame(cx),
            ProxyBody::Audited(audited) => {
                let frame = Pin::new(&mut audited.body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    audited.tap.observe(data);
                }
                frame
            }
            ProxyBody::Recorded(recorded) => {
                let frame = Pin::new(&mut recorded.body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    recorded.bytes = recorded.bytes.saturating_add(data.len() as u64);
                    if let Some(observed) = recorded.observed.as_mut().filter(|o| o.reads_answer()) {
                        observed.answer_bytes(data);
                    }
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local(full) => full.is_end_stream(),
            ProxyBody::Upstream(incoming) => incoming.is_end_stream(),
            ProxyBody::Sse(sse) => sse.is_end_stream(),
            ProxyBody::List(list) => list.is_end_stream(),
            ProxyBody::Audited(audited) => audited.body.is_end_stream(),
            ProxyBody::Recorded(recorded) => recorded.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local(full) => full.size_hint(),
            ProxyBody::Upstream(incoming) => incoming.size_hint(),
            ProxyBody::Sse(sse) => sse.size_hint(),
            ProxyBody::List(list) => list.size_hint(),
            ProxyBody::Audited(audited) => audited.body.size_hint(),
            ProxyBody::Recorded(recorded) => recorded.body.size_hint(),
        }
    }
}

/// An answer the proxy makes itself, whole: the one local-answer type of both engines.
/// hyper's renders it as a response ([`Local::into_response`]); the own engine writes it
/// on the wire itself (`h1::io::serialize_local`).
pub(crate) struct Local(Response<Bytes>);

impl Local {
    fn new(status: StatusCode, body: Bytes) -> Local {
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        Local(resp)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.0.status()
    }

    pub(crate) fn headers(&self) -> &http::HeaderMap {
        self.0.headers()
    }

    pub(crate) fn headers_mut(&mut self) -> &mut http::HeaderMap {
        self.0.headers_mut()
    }

    pub(crate) fn body(&self) -> &Bytes {
        self.0.body()
    }

    /// As hyper's engine sends it.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        self.0.map(|body| ProxyBody::Local(Full::new(body)))
    }
}

impl From<Local> for Response<ProxyBody> {
    fn from(local: Local) -> Self {
        local.into_response()
    }
}

/// A response with a JSON body.
pub(crate) fn json(status: StatusCode, body: String) -> Local {
    let mut resp = Local::new(status, Bytes::from(body));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON-RPC error response. `id` is the raw JSON of the request id, echoed verbatim so
/// that large integers survive; `None` omits the member (notifications, batches,
/// requests the proxy could not read).
pub(crate) fn jsonrpc_error(status: StatusCode, code: i32, message: &str, id: Option<&RawValue>) -> Local {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_owned());
    let body = match id {
        Some(id) => format!(r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":{message}}}}}"#, id.get()),
        None => format!(r#"{{"jsonrpc":"2.0","error":{{"code":{code},"message":{message}}}}}"#),
    };
    json(status, body)
}

/// A response with no body.
pub(crate) fn empty(status: StatusCode) -> Local {
    Local::new(status, Bytes::new())
}

/// The answer to a request refused by incoming authentication (RFC 6750 §3, RFC 9728
/// §5.1): 401 with a challenge that points to the proxy's metadata, 400 for unusable
/// credentials, 403 for missing scope, 503 when the IdP cannot be asked.
pub(crate) fn auth_rejection(rejection: Rejection, resource: &ProtectedResource, host: &str) -> Local {
    let (status, error, description) = match rejection {
        Rejection::Missing => (StatusCode::UNAUTHORIZED, None, "this MCP server requires a bearer token"),
        Rejection::Malformed => (
            StatusCode::BAD_REQUEST,
            Some(BearerError::InvalidRequest),
            "send exactly one Authorization: Bearer header with a token",
        ),
        Rejection::Invalid(failure) => {
            (StatusCode::UNAUTHORIZED, Some(BearerError::InvalidToken), failure.description())
        }
        Rejection::InsufficientScope => (
            StatusCode::FORBIDDEN,
            Some(BearerError::InsufficientScope),
            "the token lacks a scope this MCP server requires",
        ),
        Rejection::Unavailable(trouble) => {
            let description = match trouble {
                IdpTrouble::Unreachable => "the authorization server cannot be reached to check the token",
                IdpTrouble::BadAnswer => "the authorization server did not answer usably when asked about the token",
                IdpTrouble::CredentialsRefused => {
                    "the authorization server refuses the proxy's credentials for checking tokens; the proxy's operator must fix them"
                }
            };
            let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": description});
            let resp = json(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
            // Retrying helps only when the server may come back by itself.
            return match trouble {
                IdpTrouble::CredentialsRefused => resp,
                IdpTrouble::Unreachable | IdpTrouble::BadAnswer => with_retry_after(resp, 5),
            };
        }
    };
    let body = serde_json::json!({
        "error": error.map_or("unauthorized", BearerError::as_str),
        "error_description": description,
    });
    let mut resp = json(status, body.to_string());
    let challenge = resource.challenge(host, error, error.map(|_| description));
    if let Ok(value) = HeaderValue::try_from(challenge) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    resp
}

/// Adds `Retry-After` (seconds).
pub(crate) fn with_retry_after(mut resp: Local, seconds: u32) -> Local {
    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_json(resp: Local) -> serde_json::Value {
        let bytes = resp.into_response().into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn jsonrpc_error_echoes_large_ids_exactly() {
        let id = RawValue::from_string("12345678901234567890123".to_owned()).unwrap();
        let resp = jsonrpc_error(StatusCode::BAD_GATEWAY, UPSTREAM_UNAVAILABLE, "down \"now\"", Some(&id));
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let bytes = resp.body().clone();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""id":12345678901234567890123"#), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["message"], "down \"now\"");
    }

    #[tokio::test]
    async fn jsonrpc_error_without_id_omits_it() {
        let v = body_json(jsonrpc_error(StatusCode::FORBIDDEN, INVALID_REQUEST, "Origin not allowed", None)).await;
        assert_eq!(v, serde_json::json!({"jsonrpc":"2.0","error":{"code":-32600,"message":"Origin not allowed"}}));
    }

    /// hyper moves each response (head and body) several times on its way out; an event
    /// stream's state lives behind a box so that the common case stays small.
    #[test]
    fn a_response_body_stays_small() {
        assert!(std::mem::size_of::<ProxyBody>() <= 64, "{}", std::mem::size_of::<ProxyBody>());
    }
}
