//! What the MCP policy and telemetry read of a request head on hyper's path (the own
//! engine's views of its buffer are [`super::h1::heads`]), and the header names the proxy
//! sets on it.

use std::net::SocketAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

/// MCP 2026-07-28's request fields that repeat the body's method and name.
const MCP_METHOD: &str = "mcp-method";
pub(super) const MCP_NAME: &str = "mcp-name";
/// A client's request id, for the audit log.
const X_REQUEST_ID: &str = "x-request-id";
/// The W3C trace context fields (Trace Context §3.2).
pub(super) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(super) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// What a sampled span reads of the head.
pub(super) fn telemetry_head<'a>(uri: &'a Uri, h: &'a HeaderMap) -> crate::telemetry::Head<'a> {
    let one = |name: &str| h.get(name).map(HeaderValue::as_bytes);
    crate::telemetry::Head {
        path: uri.path().as_bytes(),
        tracestate: one("tracestate"),
        session: one("mcp-session-id"),
        protocol: one("mcp-protocol-version"),
    }
}

/// What the MCP policy reads: the first `Mcp-Method` and `Mcp-Name`, and whether either
/// came twice (the server might read the other).
pub(super) fn mcp_head<'a>(
    method: &'a Method,
    uri: &'a Uri,
    h: &'a HeaderMap,
    peer: SocketAddr,
) -> crate::policy::Head<'a> {
    let one = |name: &str| {
        let mut values = h.get_all(name).iter();
        let first = values.next().map(HeaderValue::as_bytes);
        (first, values.next().is_some())
    };
    let (mcp_method, twice_method) = one(MCP_METHOD);
    let (mcp_name, twice_name) = one(MCP_NAME);
    crate::policy::Head {
        http_method: method.as_str(),
        path: uri.path(),
        peer: peer.ip(),
        user_agent: h.get(header::USER_AGENT).map(HeaderValue::as_bytes),
        request_id: h.get(X_REQUEST_ID).map(HeaderValue::as_bytes),
        mcp_method,
        mcp_name,
        repeated: twice_method || twice_name,
    }
}
