//! Hostile HTTP from clients: request smuggling shapes, oversized heads, slow and idle
//! connections, malformed targets. Each gets a defined answer (a 4xx status or a closed
//! connection), and the upstream never sees an ambiguous request.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Thv;
use crate::support::upstream::{ScriptedUpstream, reply};

/// What came back on a raw connection.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Status(u16),
    Closed,
}

/// Sends `raw` on a fresh connection and reads the status line (bounded).
async fn send_raw(port: u16, raw: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let _ = stream.write_all(raw).await;
    read_status(&mut stream, Duration::from_secs(10)).await
}

async fn read_status(stream: &mut TcpStream, limit: Duration) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let deadline = tokio::time::Instant::now() + limit;
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Answer::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no answer within {limit:?}; got {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    Answer::Status(line.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status code"))
}

fn refused(answer: &Answer) -> bool {
    matches!(answer, Answer::Closed) || matches!(answer, Answer::Status(s) if (400..500).contains(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_or_forwarded_unambiguously() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let host = format!("Host: 127.0.0.1:{}\r\n", thv.port);
    let cases: Vec<(&str, String)> = vec![
        (
            "duplicate Content-Length",
            format!("POST /mcp HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ),
        ("obs-fold", format!("POST /mcp HTTP/1.1\r\n{host}X-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{{}}")),
        (
            "bare CR inside a header value",
            format!("POST /mcp HTTP/1.1\r\n{host}X-A: a\rb\r\nContent-Length: 2\r\n\r\n{{}}"),
        ),
        ("space before the colon", format!("POST /mcp HTTP/1.1\r\n{host}Content-Length : 2\r\n\r\n{{}}")),
        (
            "invalid chunk size",
            format!("POST /mcp HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ),
    ];
    for (name, raw) in &cases {
        let answer = send_raw(thv.port, raw.as_bytes()).await;
        assert!(refused(&answer), "{name}: {answer:?}");
    }
    assert!(up.seen().is_empty(), "no malformed request reached the upstream: {:?}", up.seen());

    // A bare LF ends a line (RFC 9112 §2.2 lets a recipient accept it): two clean fields
    // reach the upstream, re-serialised with CRLF, never a value with a line break in it.
    let raw = format!("POST /mcp HTTP/1.1\r\n{host}X-A: a\nX-B: c\r\nContent-Length: 2\r\n\r\n{{}}");
    let answer = send_raw(thv.port, raw.as_bytes()).await;
    if answer == Answer::Status(200) {
        let seen = up.seen().pop().unwrap();
        assert_eq!((seen.headers["x-a"].as_bytes(), seen.headers["x-b"].as_bytes()), (&b"a"[..], &b"c"[..]));
    } else {
        assert!(refused(&answer), "{answer:?}");
    }
    let before = up.seen().len();

    // Content-Length beside Transfer-Encoding: the chunked body wins (RFC 9112 §6.3) and the
    // upstream gets one unambiguous framing, the body's real length.
    let raw = format!(
        "POST /mcp HTTP/1.1\r\n{host}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let answer = send_raw(thv.port, raw.as_bytes()).await;
    if answer == Answer::Status(200) {
        let seen = &up.seen()[before];
        assert_eq!(&seen.body[..], b"hello");
        assert_eq!(seen.headers["content-length"], "5");
        assert!(seen.headers.get("transfer-encoding").is_none());
    } else {
        assert!(refused(&answer), "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_malformed_targets_get_4xx() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let thv = Thv::start(&up.url("/mcp"), &["--max-header-size", "16KiB"]);
    let host = format!("Host: 127.0.0.1:{}\r\n", thv.port);
    let big_header = format!("GET /mcp HTTP/1.1\r\n{host}X-Big: {}\r\n\r\n", "a".repeat(32 * 1024));
    let answer = send_raw(thv.port, big_header.as_bytes()).await;
    assert!(matches!(answer, Answer::Status(431) | Answer::Closed), "{answer:?}");
    let big_uri = format!("GET /mcp?{} HTTP/1.1\r\n{host}\r\n", "q".repeat(70 * 1024));
    assert!(refused(&send_raw(thv.port, big_uri.as_bytes()).await));
    let mut bad_utf8 = b"GET /mcp/\xff\xfe HTTP/1.1\r\n".to_vec();
    bad_utf8.extend_from_slice(host.as_bytes());
    bad_utf8.extend_from_slice(b"\r\n");
    assert!(refused(&send_raw(thv.port, &bad_utf8).await));
    let connect = "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n";
    assert!(refused(&send_raw(thv.port, connect.as_bytes()).await));
    let absolute = format!("GET http://evil.example/mcp HTTP/1.1\r\n{host}\r\n");
    assert_eq!(send_raw(thv.port, absolute.as_bytes()).await, Answer::Status(403));
    let spoofed = "GET /mcp HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    assert_eq!(send_raw(thv.port, spoofed.as_bytes()).await, Answer::Status(403));
    assert!(up.seen().is_empty(), "{:?}", up.seen());

    // Percent-encoding is the upstream's business: an invalid escape passes unchanged.
    let raw = format!("GET /mcp/%zz?a=%G1 HTTP/1.1\r\n{host}\r\n");
    assert_eq!(send_raw(thv.port, raw.as_bytes()).await, Answer::Status(200));
    assert_eq!(up.seen()[0].uri.path_and_query().unwrap().as_str(), "/mcp/%zz?a=%G1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_cannot_hold_the_proxy() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let thv = Thv::start(&up.url("/mcp"), &["--header-timeout", "1s", "--max-connections", "4"]);
    // Slowloris: a head that never ends is cut off.
    let mut slow = TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
    slow.write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    let answer = read_status(&mut slow, Duration::from_secs(10)).await;
    assert!(matches!(answer, Answer::Closed | Answer::Status(408)), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "cut off after the header timeout");

    // A flood of idle connections fills every slot, but they are closed after the header
    // timeout, and a real request is then served.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap());
    }
    let started = Instant::now();
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
        .get(thv.url("/mcp"))
        .send()
        .await
        .expect("served once idle connections were reaped");
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(12));
    drop(idle);
}

/// `--header-timeout` bounds waiting for a request head, including the idle time of a
/// keep-alive connection between requests; it never cuts a response in progress, however
/// long it streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_timeout_closes_idle_keep_alive_connections_but_never_a_stream() {
    use crate::support::upstream::{raw_upstream, read_head, write_raw};
    const EVENTS: usize = 6;
    let (addr, _task) = raw_upstream(|mut s| async move {
        read_head(&mut s).await;
        write_raw(&mut s, b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        // 6 events 400 ms apart: the stream lasts 2.4 s, over twice the header timeout.
        for i in 0..EVENTS {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let event = format!("data: {i}\n\n");
            write_raw(&mut s, format!("{:x}\r\n{event}\r\n", event.len()).as_bytes()).await;
        }
        write_raw(&mut s, b"0\r\n\r\n").await;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &["--header-timeout", "1s"]);
    let mut conn = TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
    conn.write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !got.ends_with(b"0\r\n\r\n") {
        match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await.expect("the stream ends") {
            Ok(0) | Err(_) => panic!("the stream was cut: {}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    for i in 0..EVENTS {
        assert!(text.contains(&format!("data: {i}\n\n")), "event {i} missing: {text}");
    }
    // Now idle between requests: closed about one header timeout later.
    let idle = Instant::now();
    let answer = read_status(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(answer, Answer::Closed);
    let waited = idle.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");
}
