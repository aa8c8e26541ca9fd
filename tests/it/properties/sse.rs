//! Property tests for `SseBody`: a stream passes byte for byte, and the legacy `endpoint`
//! event is rewritten to the proxy, however the upstream's chunks cut the stream.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use thv::internals::{EndpointRewrite, SseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::config;

const UPSTREAM: [&str; 2] = ["http://127.0.0.1:3000", "http://localhost:3000"];
const PROXY: &str = "http://127.0.0.1:9999";

/// Sends `chunks` as a chunked `text/event-stream` body through `SseBody` (a real hyper
/// `Incoming` over an in-memory pipe) and returns what comes out.
fn through_sse_body(rt: &tokio::runtime::Runtime, chunks: &[&[u8]]) -> Vec<u8> {
    let rewrite = EndpointRewrite::new(UPSTREAM.iter().map(|s| (*s).to_owned()).collect(), PROXY.to_owned());
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        response.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        response.extend_from_slice(c);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    rt.block_on(async move {
        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = server_io.read(&mut buf).await.unwrap();
                assert!(n > 0);
                head.extend_from_slice(&buf[..n]);
            }
            server_io.write_all(&response).await.unwrap();
            let _ = server_io.read(&mut buf).await;
        });
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client_io)).await.unwrap();
        let conn = tokio::spawn(conn);
        let request = http::Request::get("/sse").header("host", "127.0.0.1:3000").body(Empty::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = SseBody::new(response.into_body(), CancellationToken::new(), Some(rewrite));
        let out = body.collect().await.unwrap().to_bytes().to_vec();
        drop(sender);
        let _ = conn.await;
        server.abort();
        out
    })
}

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// One SSE event block that never names the upstream.
fn block() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[a-z ]{0,10}".prop_map(|c| format!(":{c}")),
        "[0-9]{1,4}".prop_map(|n| format!("id: {n}")),
        "[0-9]{1,4}".prop_map(|n| format!("retry: {n}")),
        prop_oneof![Just("message"), Just("endpoint"), Just("ping")].prop_map(|e| format!("event: {e}")),
        "[ -~]{0,30}".prop_filter("no upstream URL", |d| !d.contains("3000")).prop_map(|d| format!("data: {d}")),
    ];
    (prop::collection::vec((line, eol()), 1..4), eol())
        .prop_map(|(lines, end)| lines.into_iter().map(|(l, e)| format!("{l}{e}")).collect::<String>() + end)
}

/// Cuts `s` at the given fractions of its length.
fn cut<'a>(s: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (s.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(&s[at..p]);
        at = p;
    }
    out.push(&s[at..]);
    out
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn sse_streams_without_an_upstream_endpoint_pass_byte_for_byte(
        blocks in prop::collection::vec(block(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stream = blocks.concat().into_bytes();
        let out = through_sse_body(&rt, &cut(&stream, &cuts));
        prop_assert!(out == stream, "{:?} → {:?}", String::from_utf8_lossy(&stream), String::from_utf8_lossy(&out));
    }

    #[test]
    fn the_legacy_endpoint_is_rewritten_however_the_stream_is_cut(
        before in prop::collection::vec("[a-z ]{0,10}".prop_map(|c| format!(":{c}\n\n")), 0..3),
        origin in prop::sample::select(&["http://127.0.0.1:3000", "HTTP://LOCALHOST:3000", "http://localhost:3000"][..]),
        path in "(/[a-z]{1,8}){0,2}(\\?sessionId=[0-9a-f]{1,8})?",
        e1 in eol(),
        e2 in eol(),
        after in "[a-z ]{0,20}",
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A CR then an LF would be one CRLF line end, not a blank line.
        let e2 = if e1 == "\r" && e2 == "\n" { "\r\n" } else { e2 };
        let head = before.concat();
        let stream = format!("{head}event: endpoint{e1}data: {origin}{path}{e1}{e2}data: {after}\n\n");
        let path = if path.is_empty() { "/".to_owned() } else { path };
        let want = format!("{head}event: endpoint\ndata: {PROXY}{path}\n\ndata: {after}\n\n");
        let whole = through_sse_body(&rt, &[stream.as_bytes()]);
        let pieces = through_sse_body(&rt, &cut(stream.as_bytes(), &cuts));
        prop_assert_eq!(String::from_utf8_lossy(&whole), want.as_str());
        prop_assert_eq!(whole, pieces);
    }
}

#[test]
fn sse_stream_ending_in_a_lone_cr_passes_unchanged() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(through_sse_body(&rt, &[b": comment\r"]), b": comment\r");
}
