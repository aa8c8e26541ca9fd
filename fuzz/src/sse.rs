//! The SSE scanner and legacy `endpoint` rewriter (`thv::mcp::sse`), driven through its
//! public surface: a real `hyper::body::Incoming` (an HTTP/1.1 chunked response over an
//! in-memory pipe) wrapped in `SseBody` with an `EndpointRewrite`, exactly as the proxy
//! wraps an upstream `text/event-stream`.
//!
//! Input: byte 0 picks the proxy origin (absolute or empty = make the URL relative) and
//! seeds the chunking; the rest is the upstream stream.
//!
//! Invariants:
//! - chunking never matters: the stream cut into fuzzer-chosen pieces comes out exactly as
//!   the same stream sent in one piece;
//! - transparency: a stream that never names an upstream origin comes out byte for byte;
//! - a stream that was changed contained an `endpoint` event and now names the proxy;
//! - rewriting is idempotent: the output sent through again comes out unchanged.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use thv::internals::{EndpointRewrite, SseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const UPSTREAM: [&str; 2] = ["http://127.0.0.1:3000", "http://localhost:3000"];
pub const PROXY: &str = "http://127.0.0.1:9999";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

/// Sends `chunks` as the chunked body of a `text/event-stream` response and returns what
/// `SseBody` passes on.
pub fn through_sse_body(chunks: &[&[u8]], proxy_origin: &str) -> Vec<u8> {
    let rewrite = EndpointRewrite::new(UPSTREAM.iter().map(|s| (*s).to_owned()).collect(), proxy_origin.to_owned());
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        response.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        response.extend_from_slice(c);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    runtime().block_on(async move {
        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = server_io.read(&mut buf).await.expect("read request");
                assert!(n > 0, "client closed before sending its request");
                head.extend_from_slice(&buf[..n]);
            }
            server_io.write_all(&response).await.expect("write response");
            server_io.shutdown().await.ok();
            // Keep the pipe open until the client is done with it.
            let _ = server_io.read(&mut buf).await;
        });
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client_io)).await.expect("handshake");
        let conn = tokio::spawn(conn);
        let request = http::Request::get("/sse").header("host", "127.0.0.1:3000").body(Empty::new()).unwrap();
        let response = sender.send_request(request).await.expect("response head");
        let body = SseBody::new(response.into_body(), CancellationToken::new(), Some(rewrite));
        let out = body.collect().await.expect("the stream ends cleanly").to_bytes().to_vec();
        drop(sender);
        let _ = conn.await;
        server.abort();
        out
    })
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Cuts `stream` into pieces of 1..=`max` bytes chosen by a small PRNG seeded by `seed`.
pub fn cut(stream: &[u8], seed: u8, max: usize) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max + 1).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

pub fn run(data: &[u8]) {
    let Some((&control, stream)) = data.split_first() else { return };
    if stream.len() > 16 * 1024 {
        return; // well below the 64 KiB scan limit, so the limit never decides
    }
    let proxy = if control & 1 == 0 { PROXY } else { "" };
    let max_piece = if control & 2 == 0 { 7 } else { 97 };

    let whole = through_sse_body(&[stream], proxy);
    let pieces = cut(stream, control, max_piece);
    let chunked = through_sse_body(&pieces, proxy);
    assert!(
        whole == chunked,
        "chunking changed the output:\n whole:   {:?}\n chunked: {:?}",
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&chunked)
    );

    let names_upstream = UPSTREAM.iter().any(|o| contains_ci(stream, o.as_bytes()));
    if !names_upstream {
        assert!(
            whole == stream || crate::sse::known_lone_cr(stream, &whole),
            "a stream without an upstream URL was changed:\n in:  {:?}\n out: {:?}",
            String::from_utf8_lossy(stream),
            String::from_utf8_lossy(&whole)
        );
    }
    if whole != stream && !known_lone_cr(stream, &whole) {
        assert!(contains_ci(stream, b"endpoint"), "changed a stream that has no endpoint event");
        assert!(
            proxy.is_empty() || contains_ci(&whole, proxy.as_bytes()),
            "changed the stream but does not name the proxy"
        );
    }

    let again = through_sse_body(&[&whole], proxy);
    assert!(
        again == whole || known_lone_cr(&whole, &again),
        "rewriting is not idempotent:\n once:  {:?}\n twice: {:?}",
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&again)
    );
}

/// Formerly a known issue (an LF appended to a stream ending in a lone CR); fixed, so no
/// output differs from its input this way any more. Kept so the regression seed keeps its
/// meaning: it must now always be false.
pub fn known_lone_cr(_input: &[u8], _output: &[u8]) -> bool {
    false
}
