//! Faults on either side of the proxy: a target that refuses, stalls, resets or answers
//! garbage; a client that goes away; a shutdown while streams are open. Each has a
//! defined answer, and the proxy keeps serving afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::timeout;

use crate::support::Thv;
use crate::support::upstream::{
    ScriptedUpstream, closed_port, paced_stream, raw_upstream, read_head, reply, write_raw,
};

const STEP: Duration = Duration::from_secs(10);
const CALL: &str = r#"{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"x"}}"#;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

async fn json_error(resp: reqwest::Response) -> serde_json::Value {
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.expect("JSON-RPC error body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_target_gives_502_with_the_request_id() {
    let thv = Thv::start(&format!("http://127.0.0.1:{}/mcp", closed_port()), &[]);
    let resp = client().post(thv.url("/mcp")).body(CALL).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let v = json_error(resp).await;
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], "call-7");
    assert_eq!(v["error"]["code"], -32000);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("connection refused"), "{message}");
    // A notification has no id to echo.
    let resp = client()
        .post(thv.url("/mcp"))
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(json_error(resp).await.get("id").is_none());
    // One warning per failure, and no stack trace.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = thv.stderr();
    assert_eq!(log.matches("request to the MCP server failed").count(), 2, "{log}");
    assert!(!log.contains("panicked") && !log.contains("backtrace"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_target_gives_504() {
    let (addr, _task) = raw_upstream(|mut s| async move {
        read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    // 300 ms: shorter than the connection watchdog's next look (the header timeout);
    // 1.5 s: longer, so the watchdog expires the wait.
    for (limit, header_timeout) in [(Duration::from_millis(300), "30s"), (Duration::from_millis(1500), "1s")] {
        let upstream_timeout = format!("{}ms", limit.as_millis());
        let args = ["--upstream-timeout", upstream_timeout.as_str(), "--header-timeout", header_timeout];
        let thv = Thv::start(&format!("http://{addr}/mcp"), &args);
        let started = std::time::Instant::now();
        let resp = timeout(STEP, client().post(thv.url("/mcp")).body(CALL).send()).await.expect("answered").unwrap();
        assert_eq!(resp.status(), 504);
        let waited = started.elapsed();
        assert!(waited >= limit && waited < limit + Duration::from_secs(3), "504 after {waited:?} for {limit:?}");
        assert_eq!(json_error(resp).await["id"], "call-7");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_early_close_give_502_and_the_proxy_keeps_serving() {
    let count = Arc::new(Mutex::new(0u32));
    let n = count.clone();
    let (addr, _task) = raw_upstream(move |mut s| {
        let n = n.clone();
        async move {
            if !read_head(&mut s).await {
                return;
            }
            let attempt = {
                let mut n = n.lock().unwrap();
                *n += 1;
                *n
            };
            match attempt {
                1 => write_raw(&mut s, b"this is not HTTP\r\n\r\n").await,
                2 => {} // close without a word
                _ => write_raw(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await,
            }
        }
    })
    .await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
    for _ in 0..2 {
        let resp = client().post(thv.url("/mcp")).body(CALL).send().await.unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(json_error(resp).await["id"], "call-7");
    }
    let resp = client().post(thv.url("/mcp")).body(CALL).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_stream_ends_the_client_stream_and_the_proxy_keeps_serving() {
    let (addr, _task) = raw_upstream(|mut s| async move {
        read_head(&mut s).await;
        write_raw(&mut s, b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        write_raw(&mut s, b"10\r\ndata: one\n\nxxxxx\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Abort with RST: linger 0 then drop.
        let _ = s.set_zero_linger();
        drop(s);
    })
    .await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
    let resp = client().get(thv.url("/mcp")).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let first = timeout(STEP, body.next()).await.expect("first chunk").unwrap().unwrap();
    assert!(first.starts_with(b"data: one"));
    // The stream must end (with an error: the body is incomplete), not hang.
    let mut ended_with_error = false;
    while let Some(item) = timeout(STEP, body.next()).await.expect("stream ends after the reset") {
        if item.is_err() {
            ended_with_error = true;
            break;
        }
    }
    assert!(ended_with_error, "an aborted upstream body must not look complete to the client");
    let health = client().get(thv.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_going_away_releases_the_upstream_stream() {
    let released = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(Some(tx));
    let up = ScriptedUpstream::start(move |_| {
        let (resp, events) = paced_stream(1);
        if let Some(tx) = tx.lock().unwrap().take() {
            tx.send(events).unwrap();
        }
        resp
    })
    .await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let resp = client().get(thv.url("/mcp")).send().await.unwrap();
    let events = rx.recv_timeout(STEP).unwrap();
    let mut body = resp.bytes_stream();
    events.send(Bytes::from_static(b"data: hello\n\n")).await.unwrap();
    timeout(STEP, body.next()).await.unwrap().unwrap().unwrap();
    drop(body);

    // Keep writing until the upstream notices its reader is gone (bounded).
    let flag = released.clone();
    let writer = tokio::spawn(async move {
        for _ in 0..500 {
            if events.send(Bytes::from_static(b": ping\n\n")).await.is_err() {
                flag.store(true, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    timeout(Duration::from_secs(15), writer).await.expect("writer finished").unwrap();
    assert!(released.load(Ordering::SeqCst), "the proxy kept the upstream stream after the client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_cleanly_and_lets_requests_finish() {
    let keep = Arc::new(Mutex::new(Vec::new()));
    let keep2 = keep.clone();
    let up = ScriptedUpstream::start(move |s| {
        if s.method == "GET" {
            let (resp, events) = paced_stream(4);
            let _ = events.try_send(Bytes::from_static(b"id: 1\ndata:\n\n"));
            keep2.lock().unwrap().push(events); // the upstream never ends this stream
            resp
        } else {
            // A slow tool call: answered 1 s later.
            std::thread::sleep(Duration::from_millis(1000));
            reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":"call-7","result":{}}"#)
        }
    })
    .await;
    let mut thv = Thv::start(&up.url("/mcp"), &["--shutdown-timeout", "5s"]);
    let c = client();
    let stream = c.get(thv.url("/mcp")).send().await.unwrap();
    let mut events = stream.bytes_stream();
    timeout(STEP, events.next()).await.expect("priming event").unwrap().unwrap();
    let in_flight = tokio::spawn({
        let url = thv.url("/mcp");
        let c = c.clone();
        async move { c.post(url).body(CALL).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    thv.terminate();
    let terminated = std::time::Instant::now();

    // The open GET stream ends cleanly (no error) instead of being cut.
    let end = timeout(STEP, events.next()).await.expect("stream ended at shutdown");
    assert!(end.is_none(), "expected a clean end of stream, got {end:?}");
    // The request that was in flight completes.
    let answer = timeout(STEP, in_flight).await.expect("in-flight request finished").unwrap();
    assert!(answer.contains(r#""result""#), "{answer}");
    let status = thv.wait_exit(STEP);
    assert_eq!(status.code(), Some(0));
    // Idle keep-alive connections (the client's pool holds some) were told to close at
    // once rather than kept until the 5 s grace period ran out.
    let took = terminated.elapsed();
    assert!(took < Duration::from_secs(4), "exit {took:?} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_pooled_connections_is_not_a_client_error() {
    // Each connection answers one request with keep-alive, then the upstream closes it a
    // moment later, as servers with short idle timeouts do. The proxy must notice the dead
    // pooled connection and open a new one rather than answer 502.
    let (addr, _task) = raw_upstream(|mut s| async move {
        if !read_head(&mut s).await {
            return;
        }
        write_raw(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    })
    .await;
    let thv = Thv::start(&format!("http://{addr}/mcp"), &[]);
    for i in 0..5 {
        let resp = client().post(thv.url("/mcp")).body(CALL).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        // Let the upstream close the pooled connection before the next request.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_unless_a_body_was_cut_short() {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let up = ScriptedUpstream::start(move |seen| {
        if seen.method == http::Method::GET {
            let (resp, events) = paced_stream(1);
            tx.lock().unwrap().send(events).unwrap();
            return resp;
        }
        // Bodies framed by Content-Length, including the empty 202 of a notification.
        if seen.body.windows(6).any(|w| w == b"notify") {
            reply(202, &[], "")
        } else {
            reply(200, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        }
    })
    .await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let c = client();
    for i in 0..10 {
        let body = if i % 2 == 0 { CALL } else { r#"{"jsonrpc":"2.0","method":"notify"}"# };
        let resp = c.post(thv.url("/mcp")).body(body).send().await.unwrap();
        assert_eq!(resp.status(), if i % 2 == 0 { 200 } else { 202 }, "request {i}");
        resp.bytes().await.unwrap();
    }
    let peers: std::collections::HashSet<_> = up.seen().iter().map(|s| s.peer).collect();
    assert_eq!(peers.len(), 1, "ten sequential requests share one upstream connection: {peers:?}");

    // A stream the client abandons half-way: the rest of it is still on that connection,
    // which must never carry another request.
    let resp = c.get(thv.url("/mcp")).send().await.unwrap();
    let events = rx.recv_timeout(STEP).unwrap();
    let mut body = resp.bytes_stream();
    events.send(Bytes::from_static(b"data: first\n\n")).await.unwrap();
    timeout(STEP, body.next()).await.unwrap().unwrap().unwrap();
    drop(body);
    let stream_peer = up.seen().last().unwrap().peer;
    for i in 0..3 {
        let resp = c.post(thv.url("/mcp")).body(CALL).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i} after the abandoned stream");
        resp.bytes().await.unwrap();
    }
    let after: Vec<_> = up.seen().iter().rev().take(3).map(|s| s.peer).collect();
    assert!(!after.contains(&stream_peer), "a connection with an unread body was reused: {after:?}");
    drop(events);
}

/// A target that sends an unrequested second response: right behind the first one, or
/// later while its connection sits idle in the pool. Neither may answer the client's next
/// request: the pool retires a connection with bytes it did not ask for before reusing it
/// (both engines). The stray that arrives between the next request's write and its answer
/// cannot be told apart in HTTP/1.1 (README, "Errors, logs and shutdown").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_responses_never_answer_a_later_request() {
    for delay_ms in [0u64, 150] {
        let (addr, _task) = raw_upstream(move |mut s| async move {
            // Bounded: at most 10 requests per connection.
            for n in 1..=10u32 {
                if !read_head(&mut s).await {
                    return;
                }
                let body = format!("ok-{n}");
                write_raw(
                    &mut s,
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
                )
                .await;
                if n == 1 {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    write_raw(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTRAY").await;
                }
            }
        })
        .await;
        for engine in ["own", "hyper"] {
            let thv = Thv::start_env(&format!("http://{addr}/mcp"), &[], &[("THV_HTTP1", engine)]);
            let c = client();
            for i in 0..3 {
                let resp = c.post(thv.url("/mcp")).body(CALL).send().await.unwrap();
                let body = resp.text().await.unwrap();
                assert!(body.starts_with("ok-"), "{engine}, stray after {delay_ms} ms, request {i}: {body:?}");
                // Let a late stray arrive while the connection is idle in the pool.
                tokio::time::sleep(Duration::from_millis(delay_ms + 100)).await;
            }
        }
    }
}
