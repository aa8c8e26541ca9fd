//! Request heads on the own engine: where one ends in the client's buffer ([`head_end`]),
//! what the MCP policy and telemetry read of it (the spans [`super::request::classify`]
//! recorded there, as the views they take), and the fields the proxy adds to the head the
//! target gets: the policy's `Mcp-Name` and the body's length ([`finish_head`]), the trace
//! context telemetry adds, an exchanged token ([`add_field`]). (The
//! operator's own fields, `--remote-forward-headers*`, are written by [`super::request`];
//! their test is here, beside the head's other additions.)

use std::net::SocketAddr;

use super::body;
use super::request::{McpFields, Plan};
use crate::policy::Head;
use crate::telemetry::{self, Propagate};

/// The request target's path, without its query.
fn path<'a>(buf: &'a [u8], plan: &Plan) -> &'a str {
    // The own engine takes plain ASCII targets only.
    std::str::from_utf8(path_bytes(buf, plan)).unwrap_or_default()
}

/// The request target without its query.
fn path_bytes<'a>(buf: &'a [u8], plan: &Plan) -> &'a [u8] {
    let target = Plan::part(buf, plan.target).unwrap_or_default();
    target.split(|&b| b == b'?').next().unwrap_or_default()
}

/// What the MCP policy reads.
pub(super) fn mcp<'a>(buf: &'a [u8], plan: &Plan, peer: SocketAddr) -> Head<'a> {
    let fields = plan.mcp.as_deref().unwrap_or(&McpFields::NONE);
    let part = |span: Option<(usize, usize)>| span.and_then(|s| Plan::part(buf, s));
    Head {
        http_method: plan.method.as_str(),
        path: path(buf, plan),
        peer: peer.ip(),
        user_agent: part(fields.user_agent),
        request_id: part(fields.request_id),
        mcp_method: part(fields.method),
        mcp_name: part(fields.name),
        repeated: fields.repeated,
    }
}

/// What a sampled span reads of the head.
pub(super) fn telemetry<'a>(buf: &'a [u8], plan: &Plan) -> telemetry::Head<'a> {
    let fields = plan.mcp.as_deref().unwrap_or(&McpFields::NONE);
    let part = |span: Option<(usize, usize)>| span.and_then(|s| Plan::part(buf, s));
    telemetry::Head {
        path: path_bytes(buf, plan),
        tracestate: part(fields.tracestate),
        session: part(fields.session),
        protocol: part(fields.protocol),
    }
}

/// The length of the head at the start of `buf` (through its empty line), once it is
/// all there. `scanned` carries the search position from one call to the next.
pub(super) fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    // Back up over a line end that may have been cut in two by the previous read.
    // (All of it when `scanned` is past the end, which it never is.)
    let tail = buf.get(scanned.saturating_sub(2)..).unwrap_or(buf);
    *scanned = buf.len();
    // One pass over the line ends: an empty line follows `\n` as `\r\n` or, for
    // httparse, a bare `\n` (such heads go to hyper, but they end here all the same).
    memchr::memchr_iter(b'\n', tail).find_map(|i| {
        let after = tail.get(i..)?.strip_prefix(b"\n")?;
        let body = after.strip_prefix(b"\n").or_else(|| after.strip_prefix(b"\r\n"))?;
        // `body` is a suffix of `buf`: never `None`.
        buf.len().checked_sub(body.len())
    })
}

/// Adds the trace context the target gets (telemetry tracing): the proxy's `traceparent`,
/// and the `tracestate` that goes with the trace it continues (the client's header, or the
/// body's own when `_meta` won).
pub(super) fn trace_fields(out: &mut Vec<u8>, propagate: &Propagate, client_state: Option<&[u8]>) {
    out.extend_from_slice(b"traceparent: ");
    out.extend_from_slice(&propagate.traceparent);
    out.extend_from_slice(b"\r\n");
    let state = match &propagate.meta_state {
        Some(state) => state.as_deref().map(str::as_bytes),
        None => client_state,
    };
    if let Some(state) = state {
        out.extend_from_slice(b"tracestate: ");
        out.extend_from_slice(state);
        out.extend_from_slice(b"\r\n");
    }
}

/// Completes an upstream head that [`McpFields`] left open: `Mcp-Name` and
/// `Accept-Encoding` as the policy decided (`None`: not sent), the body's length.
pub fn finish_head(
    out: &mut Vec<u8>,
    mcp_name: Option<&[u8]>,
    accept_encoding: Option<&[u8]>,
    fields: &McpFields,
    body_len: usize,
) {
    for (name, value) in [(&b"mcp-name: "[..], mcp_name), (b"accept-encoding: ", accept_encoding)] {
        if let Some(value) = value {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if fields.length_line {
        body::content_length_line(out, body_len);
    }
    out.extend_from_slice(b"\r\n");
}

/// Adds the field `name: value` to an upstream head: at the end of an `open` one (which
/// [`finish_head`] completes later), before the empty line of a finished one.
pub(super) fn add_field(out: &mut Vec<u8>, open: bool, name: &http::HeaderName, value: &http::HeaderValue) {
    let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
    let mut line = Vec::with_capacity(name.len().saturating_add(value.len()).saturating_add(4));
    line.extend_from_slice(name);
    line.extend_from_slice(b": ");
    line.extend_from_slice(value);
    line.extend_from_slice(b"\r\n");
    match out.len().checked_sub(2).filter(|_| !open && out.ends_with(b"\r\n")) {
        Some(at) => {
            out.splice(at..at, line);
        }
        None => out.extend_from_slice(&line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::request::{Classified, Rules, classify};
    use crate::proxy::headers::ForwardHeaders;

    #[test]
    fn configured_fields_replace_the_clients_and_a_consumed_token_is_still_read() {
        use http::{HeaderName, HeaderValue};
        let configured = ForwardHeaders::new(vec![
            (HeaderName::from_static("x-api-key"), HeaderValue::from_static("k1")),
            (HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer upstream")),
        ]);
        let raw = b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-API-Key: forged\r\nAuthorization: Bearer t\r\n\
x-api-key: forged-too\r\nX-Other: 1\r\nContent-Length: 2\r\n\r\n{}";
        for consume in [false, true] {
            let rules = Rules {
                hosts: None,
                max_body: 1000,
                consume_authorization: consume,
                describe_client: false,
                upstream_host: b"up:9",
                client_ip: "127.0.0.1".parse().unwrap(),
                mcp: false,
                trace: false,
                forward: Some(&configured),
                replaced: None,
            };
            let Classified::Fast(p) = classify(raw, &rules) else { panic!("not the own path's") };
            assert_eq!(
                String::from_utf8(p.upstream_head).unwrap(),
                "POST /mcp HTTP/1.1\r\nhost: up:9\r\nX-Other: 1\r\nx-api-key: k1\r\nauthorization: Bearer upstream\r\n\
content-length: 2\r\n\r\n"
            );
            // Incoming auth still reads the client's token, which never reaches the target.
            assert_eq!(p.authorization.and_then(|s| Plan::part(raw, s)), consume.then_some(&b"Bearer t"[..]));
        }
    }

    #[test]
    fn the_end_of_a_head_is_found_however_it_trickles_in() {
        let head = b"POST /mcp HTTP/1.1\r\nhost: x\r\n\r\n{}";
        for step in 1..head.len() {
            let (mut buf, mut scanned, mut found) = (Vec::new(), 0, None);
            for piece in head.chunks(step) {
                buf.extend_from_slice(piece);
                if let Some(end) = head_end(&buf, &mut scanned) {
                    found = Some(end);
                    break;
                }
            }
            assert_eq!(found, Some(head.len() - 2), "pieces of {step}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\nhost: x\n\n", &mut 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: x\r\n", &mut 0), None);
    }

    #[test]
    fn an_exchanged_token_replaces_the_clients_field_in_finished_and_open_heads() {
        use super::super::request::{Classified, Rules, classify};
        let raw = b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Upstream-Token: forged\r\nAuthorization: Bearer in\r\nContent-Length: 2\r\n\r\n{}";
        let hosts = vec!["localhost".to_owned()];
        let mut rules = Rules {
            hosts: Some(&hosts),
            max_body: 1000,
            consume_authorization: true,
            describe_client: false,
            upstream_host: b"up:9",
            client_ip: "127.0.0.1".parse().unwrap(),
            mcp: false,
            trace: false,
            forward: None,
            replaced: Some("x-upstream-token"),
        };
        let value = http::HeaderValue::from_static("Bearer out");
        let name = http::HeaderName::from_static("x-upstream-token");
        let Classified::Fast(mut p) = classify(raw, &rules) else { panic!() };
        add_field(&mut p.upstream_head, false, &name, &value);
        let head = String::from_utf8(p.upstream_head).unwrap();
        assert_eq!(
            head,
            "POST /mcp HTTP/1.1\r\nhost: up:9\r\ncontent-length: 2\r\nx-upstream-token: Bearer out\r\n\r\n"
        );
        rules.mcp = true;
        let Classified::Fast(mut p) = classify(raw, &rules) else { panic!() };
        add_field(&mut p.upstream_head, true, &http::header::AUTHORIZATION, &value);
        let fields = *p.mcp.unwrap();
        finish_head(&mut p.upstream_head, None, None, &fields, 2);
        let head = String::from_utf8(p.upstream_head).unwrap();
        assert_eq!(head, "POST /mcp HTTP/1.1\r\nhost: up:9\r\nauthorization: Bearer out\r\ncontent-length: 2\r\n\r\n");
    }
}
