//! The own HTTP/1.1 path's parsers (`thv::proxy::h1`): which requests it takes and the
//! request it sends on, the response head it writes for the client, and the body decoder.
//!
//! Input: byte 0 picks the part (0 request, 1 response, 2 body); byte 1 a split point or
//! framing; the rest is the message.
//!
//! Invariants:
//! - a request taken by the own path is sent on as exactly one well-formed HTTP/1.1 head
//!   (httparse reads it back whole) with the same method and target, one `Host` (the
//!   target's), no `Transfer-Encoding`, and a `Content-Length` equal to the body read;
//!   bytes after the request (pipelining) never change how it is judged;
//! - a response head written for the client is one well-formed head with the target's
//!   status, no hop-by-hop field but the proxy's own framing, and never two framings;
//! - the body decoder gives the same bytes however the input is split, and what it
//!   re-chunks for the client decodes back to the same bytes.

use thv::internals::body::{self, Decoder, Framing};
use thv::internals::request::{self, Classified, Rules};
use thv::internals::response::{self, Exchange, Parsed};

const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

pub fn run(data: &[u8]) {
    if data.len() < 2 || data.len() > crate::MAX_INPUT {
        return;
    }
    let (mode, knob, rest) = (data[0] % 3, data[1], &data[2..]);
    match mode {
        0 => request_part(knob, rest),
        1 => response_part(knob, rest),
        _ => body_part(knob, rest),
    }
}

fn request_part(knob: u8, raw: &[u8]) {
    let hosts: Vec<String> = HOSTS.iter().map(|h| (*h).to_owned()).collect();
    // Operator-configured fields: one ordinary name, and Authorization (allowed without
    // outgoing auth), which meets the consumed token when incoming auth is on.
    let forward = request::ForwardHeaders::new(vec![
        (http::HeaderName::from_static("x-api-key"), http::HeaderValue::from_static("k")),
        (http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer up")),
    ]);
    let rules = Rules {
        hosts: Some(&hosts),
        max_body: 4096,
        consume_authorization: knob & 1 == 1,
        describe_client: knob & 2 == 2,
        upstream_host: b"up.example:8080",
        client_ip: "127.0.0.1".parse().unwrap(),
        mcp: knob & 4 == 4,
        trace: knob & 12 == 12,
        forward: (knob & 16 == 16).then_some(&forward),
        replaced: (knob & 32 == 32).then_some("x-upstream-token"),
    };
    let Classified::Fast(plan) = request::classify(raw, &rules) else { return };
    assert!(plan.head_len <= raw.len());
    let mut more = raw.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    match request::classify(&more, &rules) {
        Classified::Fast(again) => {
            assert_eq!(again.upstream_head, plan.upstream_head, "pipelined bytes changed the request");
        }
        other => panic!("pipelined bytes changed the verdict: {other:?}"),
    }
    // With an MCP policy the head is left open for it; finished as the policy would when it
    // keeps the client's `Mcp-Name`.
    let mut head = plan.upstream_head.clone();
    if let Some(fields) = plan.mcp.as_deref() {
        let part = |span: Option<(usize, usize)>| span.map(|(a, b)| &raw[a..b]);
        request::finish_head(&mut head, part(fields.name), part(fields.accept_encoding), fields, plan.body_len);
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut sent = httparse::Request::new(&mut headers);
    let n = match sent.parse(&head) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("the target would not read our head: {other:?}"),
    };
    assert_eq!(n, head.len(), "one head, nothing smuggled behind it");
    assert_eq!(sent.method, Some(plan.method.as_str()));
    assert_eq!(sent.path.map(str::as_bytes), Some(&raw[plan.target.0..plan.target.1]));
    let named = |name: &str| sent.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    assert_eq!(named("host"), 1);
    assert_eq!(named("transfer-encoding"), 0);
    assert_eq!(named("connection"), 0);
    if rules.consume_authorization {
        // Only the operator's own field (`--remote-forward-headers`) may be there, never
        // the client's token.
        // (`forward`, above, sets Authorization.)
        let operators = usize::from(rules.forward.is_some());
        assert_eq!(named("authorization"), operators, "the client's token reached the target");
        if operators == 1 {
            let value = sent.headers.iter().find(|h| h.name.eq_ignore_ascii_case("authorization")).map(|h| h.value);
            assert_eq!(value, Some(&b"Bearer up"[..]), "the operator's value, not the client's");
        }
    }
    let forwarded = if rules.describe_client { 1 } else { 0 };
    assert_eq!(named("x-forwarded-for"), forwarded);
    match sent.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")) {
        Some(h) => assert_eq!(std::str::from_utf8(h.value).unwrap(), plan.body_len.to_string()),
        None => assert_eq!(plan.body_len, 0),
    }
    assert!(named("content-length") <= 1);
}

fn response_part(knob: u8, raw: &[u8]) {
    let exchange = Exchange { get: knob & 1 == 1, close: knob & 2 == 2, rewrite: knob & 4 == 4 };
    let Parsed::Complete(plan) = response::parse(raw, exchange) else { return };
    assert!(plan.head_len <= raw.len());
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut out = httparse::Response::new(&mut headers);
    match out.parse(&plan.head) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, plan.head.len()),
        other => panic!("the client would not read our head: {other:?}"),
    }
    assert_eq!(out.code, Some(plan.status));
    let named = |name: &str| out.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    assert_eq!(named("transfer-encoding"), usize::from(plan.chunked));
    assert!(named("content-length") <= 1);
    assert!(!(plan.chunked && named("content-length") == 1), "two framings");
    assert_eq!(named("keep-alive") + named("upgrade") + named("proxy-connection"), 0);
    assert_eq!(named("connection"), usize::from(exchange.close));
}

fn body_part(knob: u8, raw: &[u8]) {
    let framing = match knob % 3 {
        0 => Framing::Chunked,
        1 => Framing::Length(u64::from(knob)),
        _ => Framing::Close,
    };
    let whole = decode(framing, &[raw]);
    let split = usize::from(knob).min(raw.len());
    let parts = decode(framing, &[&raw[..split], &raw[split..]]);
    assert_eq!(whole, parts, "splitting the input changed the body");
    let Ok((data, used, true)) = whole else { return };
    assert!(used <= raw.len());
    if framing == Framing::Chunked {
        let mut framed = Vec::new();
        framed.extend_from_slice(&data);
        body::frame_chunk(&mut framed, 0);
        framed.extend_from_slice(body::LAST_CHUNK);
        let again = decode(Framing::Chunked, &[&framed]);
        assert_eq!(again, Ok((data, framed.len(), true)), "our own chunks do not decode back");
    }
}

/// Data, bytes consumed, and whether the body ended.
fn decode(framing: Framing, parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), body::BodyError> {
    let mut decoder = Decoder::new(framing);
    let (mut out, mut used) = (Vec::new(), 0);
    for part in parts {
        if decoder.is_done() {
            break;
        }
        used += decoder.decode(part, &mut out)?;
    }
    Ok((out, used, decoder.is_done()))
}
