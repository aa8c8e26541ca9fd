//! The own HTTP/1.1 path against hyper's: the same requests answered alike, a connection
//! handed from one to the other mid-way, pipelined requests, and every framing a target
//! may use for its response. The differential tables — every policy case through both
//! engines, compared byte for byte on both sides and in the request log — are in
//! `cases.rs`, `auth.rs` and `policy.rs` (the MCP policy), run by `diff.rs` over the raw wire of `wire.rs`.

mod auth;
mod cases;
mod diff;
mod exchange;
mod forward;
mod policy;
mod telemetry;
mod trace_logs;
mod wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::support::Thv;
use crate::support::upstream::raw_upstream;

const STEP: Duration = Duration::from_secs(10);

/// An upstream speaking raw HTTP/1.1 with every response framing, keeping each
/// connection alive unless the answer says otherwise. Records every request head.
async fn menu_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    let (addr, _task) = raw_upstream(move |mut s| {
        let log = log.clone();
        async move {
            let mut buf = Vec::new();
            // Bounded: at most 100 requests per connection, each within STEP.
            for _ in 0..100 {
                let Some((head, used)) = read_request(&mut s, &mut buf).await else { return };
                buf.drain(..used);
                log.lock().unwrap().push(head.clone());
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (answer, close): (&[u8], bool) = match path.as_str() {
                    "/json" => (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}", false),
                    "/chunked" => (
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
                        false,
                    ),
                    "/close" => (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end", true),
                    "/continue" => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", false),
                    "/old" => (b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold", true),
                    "/empty" => (b"HTTP/1.1 204 No Content\r\nx-kept: yes\r\n\r\n", false),
                    "/hop" => (
                        b"HTTP/1.1 200 OK\r\nconnection: x-hop\r\nx-hop: secret\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\ncontent-length: 0\r\n\r\n",
                        false,
                    ),
                    "/auth" => (
                        b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"mcp\"\r\ncontent-length: 0\r\n\r\n",
                        false,
                    ),
                    "/sse" => (
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
                          d\r\ndata: first\n\n\r\ne\r\ndata: second\n\n\r\n0\r\n\r\n",
                        false,
                    ),
                    _ => (b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope", false),
                };
                if s.write_all(answer).await.is_err() || close {
                    return;
                }
            }
        }
    })
    .await;
    (addr, heads)
}

/// Reads one request (head and Content-Length body) from `s`, keeping extra bytes in
/// `buf`; `None` when the connection closes first. Bounded by STEP.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0usize);
            if buf.len() >= end + 4 + length {
                return Some((head, end + 4 + length));
            }
        }
        let n = timeout(STEP, s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Status, headers (lowercase, sorted, without `date`) and body of a response.
type Seen = (u16, Vec<(String, String)>, Bytes);

async fn fetch(c: &reqwest::Client, method: reqwest::Method, url: String, origin: Option<&str>) -> Seen {
    let mut req = c.request(method.clone(), &url).header("mcp-session-id", "s-1");
    if method == reqwest::Method::POST {
        req = req.header("content-type", "application/json").body(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#);
    }
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    let resp = timeout(STEP, req.send()).await.expect("answer in time").expect("answer");
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    headers.sort();
    let body = timeout(STEP, resp.bytes()).await.expect("body in time").expect("body");
    (status, headers, body)
}

/// Every request of the list, through one proxy, on a keep-alive client.
async fn answers(thv: &Thv) -> Vec<Seen> {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let own_origin = format!("http://localhost:{}", thv.port);
    let mut seen = Vec::new();
    for path in ["/json", "/chunked", "/close", "/continue", "/old", "/empty", "/hop", "/auth", "/sse", "/missing"] {
        for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::DELETE] {
            seen.push(fetch(&c, method, thv.url(path), None).await);
        }
        // A browser request goes through hyper's path (CORS) on the own engine too; its
        // answer must match apart from the CORS fields naming the proxy's own origin.
        let (status, headers, body) = fetch(&c, reqwest::Method::POST, thv.url(path), Some(&own_origin)).await;
        let headers = headers.into_iter().filter(|(n, _)| n != "access-control-allow-origin").collect();
        seen.push((status, headers, body));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_path_and_hyper_answer_every_framing_alike() {
    let (addr, heads) = menu_upstream().await;
    let target = format!("http://{addr}/mcp");
    let own = Thv::start(&target, &[]);
    let hyper = Thv::start_env(&target, &[], &[("THV_HTTP1", "hyper")]);
    let by_own = answers(&own).await;
    let by_hyper = answers(&hyper).await;
    assert_eq!(by_own.len(), by_hyper.len());
    for (i, (a, b)) in by_own.iter().zip(&by_hyper).enumerate() {
        assert_eq!(a, b, "answer {i} differs: own path vs hyper");
    }
    // The answers themselves, so that both engines being wrong alike fails too.
    let body = |i: usize| std::str::from_utf8(&by_own[i].2).unwrap().to_owned();
    assert_eq!((by_own[0].0, body(0)), (200, r#"{"ok":true}"#.to_owned()));
    assert_eq!(body(4), "hello world", "chunked, with an extension and a trailer");
    assert_eq!(body(8), "until the end", "close-delimited");
    assert_eq!((by_own[12].0, body(12)), (201, "ok".to_owned()), "the interim 100 is skipped");
    assert_eq!(body(16), "old");
    assert_eq!(by_own[20].0, 204);
    let hop = &by_own[24].1;
    assert!(hop.iter().any(|(n, _)| n == "x-kept"), "{hop:?}");
    assert!(!hop.iter().any(|(n, _)| n == "x-hop" || n == "keep-alive" || n == "connection"), "{hop:?}");
    assert_eq!(by_own[28].0, 401);
    assert_eq!(body(32), "data: first\n\ndata: second\n\n");
    assert!(by_own[32].1.contains(&("x-accel-buffering".to_owned(), "no".to_owned())));
    assert_eq!((by_own[36].0, body(36)), (404, "nope".to_owned()));
    // Every request reached the target with its MCP headers.
    let heads = heads.lock().unwrap();
    assert!(heads.iter().all(|h| h.contains("mcp-session-id: s-1\r\n")), "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_take_the_own_path_and_the_rest_hyper() {
    let (addr, heads) = menu_upstream().await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
    let raw = |host: String| {
        format!(
            "POST /json HTTP/1.1\r\nHost: {host}\r\nX-Spelled-So: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    for request in [raw(format!("127.0.0.1:{}", thv.port)), raw(format!("localhost:{}", thv.port))] {
        let mut s = TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        timeout(STEP, s.read_to_end(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&answer));
        assert!(answer.ends_with(b"{\"ok\":true}"));
    }
    // Hop-by-hop fields of the response, read off the wire (an HTTP client library may
    // hide some of them, e.g. `Keep-Alive`).
    let mut s = TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
    let hop = format!("GET /hop HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", thv.port);
    s.write_all(hop.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(STEP, s.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.contains("\r\nx-kept: yes\r\n"), "{answer}");
    for gone in ["keep-alive:", "x-hop:", "connection: x-hop"] {
        assert!(!answer.contains(gone), "{gone} reached the client: {answer}");
    }
    // The own path passes the client's spelling on; hyper would have lowercased it.
    let seen = heads.lock().unwrap().clone();
    assert!(seen.iter().filter(|h| h.starts_with("POST")).all(|h| h.contains("X-Spelled-So: 1\r\n")), "{seen:?}");

    let hyper = Thv::start_env(&format!("http://{addr}/mcp"), &[], &[("THV_HTTP1", "hyper")]);
    let mut s = TcpStream::connect(("127.0.0.1", hyper.port)).await.unwrap();
    s.write_all(raw(format!("127.0.0.1:{}", hyper.port)).as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(STEP, s.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(heads.lock().unwrap().last().unwrap().contains("x-spelled-so: 1\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_moves_to_hyper_mid_way_and_keeps_serving() {
    let (addr, heads) = menu_upstream().await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
    let stream = TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let host = format!("127.0.0.1:{}", thv.port);
    let origin = format!("http://127.0.0.1:{}", thv.port);
    let post = |origin: Option<&str>| {
        let mut req = http::Request::post("/json").header("host", &host).header("x-spelled-so", "1");
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.body(Full::new(Bytes::from_static(b"{}"))).unwrap()
    };
    // 1: the own path. 2: a browser request, hyper's (CORS). 3: hyper again, same socket.
    for (i, origin) in [None, Some(origin.as_str()), None].into_iter().enumerate() {
        sender.ready().await.expect("the connection is still open");
        let resp = timeout(STEP, sender.send_request(post(origin))).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.headers().contains_key("access-control-allow-origin"), origin.is_some(), "request {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"ok\":true}", "request {i}");
    }
    // A local endpoint on the same connection, now hyper's.
    let health = http::Request::get("/health").header("host", &host).body(Full::new(Bytes::new())).unwrap();
    sender.ready().await.expect("the connection is still open");
    let resp = timeout(STEP, sender.send_request(health)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    drop(sender);
    timeout(STEP, conn).await.unwrap().unwrap().unwrap();
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(heads[0].contains("x-spelled-so") && !heads[0].contains("access-control"), "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (addr, heads) = menu_upstream().await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
    let host = format!("127.0.0.1:{}", thv.port);
    let mut s = TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
    let batch = format!(
        "GET /json HTTP/1.1\r\nHost: {host}\r\n\r\nPOST /chunked HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{{}}\
         GET /missing HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(batch.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(STEP, s.read_to_end(&mut answer)).await.expect("all answered, then closed").unwrap();
    let text = String::from_utf8_lossy(&answer);
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing in {text}"));
    // The target's chunks arrive decoded and framed anew by the proxy.
    assert!(at("{\"ok\":true}") < at("hello world\r\n0\r\n\r\n"), "{text}");
    assert!(at("hello world\r\n0\r\n\r\n") < at("HTTP/1.1 404"), "{text}");
    assert!(text.ends_with("nope"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 3, "{text}");
    assert_eq!(heads.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_engine_is_refused_at_startup() {
    let (code, _, stderr) = crate::support::run_thv_env(
        &["proxy", "s", "--target-uri", "http://127.0.0.1:1/mcp"],
        &[("THV_HTTP1", "fast")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("THV_HTTP1") && stderr.contains("hyper"), "{stderr}");
}

/// An upstream whose first connection to get a second request reads it and closes
/// without answering (a server closing an idle connection just as a request arrives);
/// everything else is answered 200 with keep-alive. Records each request line.
async fn closes_one_reused_connection() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = lines.clone();
    let (addr, _task) = raw_upstream(move |mut s| {
        let (log, dropped) = (log.clone(), dropped.clone());
        async move {
            let mut buf = Vec::new();
            // Bounded: at most 100 requests per connection, each within STEP.
            for i in 0..100 {
                let Some((head, used)) = read_request(&mut s, &mut buf).await else { return };
                buf.drain(..used);
                log.lock().unwrap().push(head.lines().next().unwrap_or_default().to_owned());
                if i == 1 && !dropped.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, lines)
}

/// A request the proxy has written to a reused connection is never sent again, whatever
/// its method: the target may have acted on it before closing. The client gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_written_on_a_reused_connection_that_closes_is_not_sent_again() {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE, reqwest::Method::POST] {
        let (addr, lines) = closes_one_reused_connection().await;
        let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
        let first = timeout(STEP, c.request(method.clone(), thv.url("/first")).send()).await.unwrap().unwrap();
        assert_eq!(first.status(), 200);
        first.bytes().await.unwrap();
        let second = timeout(STEP, c.request(method.clone(), thv.url("/second")).send()).await.unwrap().unwrap();
        assert_eq!(second.status(), 502, "{method}");
        let lines = lines.lock().unwrap();
        let sent = lines.iter().filter(|l| l.starts_with(&format!("{method} /second "))).count();
        assert_eq!(sent, 1, "{method}: {lines:?}");
    }
}
