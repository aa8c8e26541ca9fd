//! Transparent forwarding: what goes in comes out, byte for byte, except what RFC 9110
//! and the MCP security rules say a proxy must change.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::timeout;

use crate::support::Thv;
use crate::support::upstream::{ScriptedUpstream, closed_port, paced_stream, reply};

const STEP: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_path_query_body_and_mcp_headers_pass_unchanged() {
    let up = ScriptedUpstream::start(|_| {
        reply(
            200,
            &[("content-type", "application/json"), ("mcp-session-id", "sess-1"), ("set-cookie", "a=b")],
            r#"{"ok":true}"#,
        )
    })
    .await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
    let resp = client()
        .post(thv.url("/mcp/sub?x=1&y=%2Fz&y=2"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "sess-1")
        .header("MCP-Protocol-Version", "2025-11-25")
        .header("last-event-id", "ev-9")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "x")
        .header("mcp-param-region", "=?base64?ZXU=?=")
        .header("cookie", "c=d")
        .header("x-custom", "kept")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["mcp-session-id"], "sess-1");
    assert_eq!(resp.headers()["set-cookie"], "a=b");
    assert_eq!(resp.text().await.unwrap(), r#"{"ok":true}"#);

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri.path_and_query().unwrap().as_str(), "/mcp/sub?x=1&y=%2Fz&y=2");
    assert_eq!(s.body, Bytes::from(body));
    for (name, value) in [
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", "sess-1"),
        ("mcp-protocol-version", "2025-11-25"),
        ("last-event-id", "ev-9"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "x"),
        ("mcp-param-region", "=?base64?ZXU=?="),
        ("cookie", "c=d"),
        ("x-custom", "kept"),
    ] {
        assert_eq!(s.headers.get(name).map(|v| v.to_str().unwrap()), Some(value), "{name}");
    }
    assert_eq!(s.headers["host"], up.addr.to_string(), "Host is the target's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_are_removed_both_ways_and_forwarded_fields_are_ours() {
    let up = ScriptedUpstream::start(|_| {
        reply(
            200,
            &[("connection", "x-up-hop"), ("x-up-hop", "1"), ("keep-alive", "timeout=5"), ("x-up-end", "kept")],
            "ok",
        )
    })
    .await;
    let thv = Thv::start(&up.url("/"), &[]);
    let resp = client()
        .get(thv.url("/"))
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "secret")
        .header("proxy-authorization", "Basic abc")
        .header("te", "trailers")
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .send()
        .await
        .expect("send");
    assert!(resp.headers().get("x-up-hop").is_none());
    assert!(resp.headers().get("keep-alive").is_none());
    assert_eq!(resp.headers()["x-up-end"], "kept");
    let s = &up.seen()[0];
    for gone in ["x-client-hop", "proxy-authorization", "te", "forwarded"] {
        assert!(s.headers.get(gone).is_none(), "{gone} must not reach the target");
    }
    // A local target learns who the client is, from the proxy, not from the client.
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-forwarded-host"], format!("127.0.0.1:{}", thv.port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_bodies_are_relayed_exactly() {
    let up = ScriptedUpstream::start(|seen| {
        let code: u16 = seen.uri.path().trim_start_matches('/').parse().unwrap_or(500);
        match code {
            202 => reply(202, &[], ""),
            405 => reply(405, &[("allow", "POST")], ""),
            c => reply(
                c,
                &[("content-type", "application/json")],
                &format!(r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":-1,"message":"{c}"}}}}"#),
            ),
        }
    })
    .await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    for code in [202u16, 400, 401, 403, 404, 405, 406, 415, 500, 503] {
        let resp = client().post(thv.url(&format!("/{code}"))).body("{}").send().await.expect("send");
        assert_eq!(resp.status().as_u16(), code);
        let allow = resp.headers().get("allow").cloned();
        let text = resp.text().await.unwrap();
        match code {
            202 => assert_eq!(text, ""),
            405 => {
                assert_eq!(text, "");
                assert_eq!(allow.unwrap(), "POST");
            }
            c => assert!(text.contains(&format!(r#""message":"{c}""#)), "{c}: {text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_batches_are_forwarded_not_rejected() {
    let up = ScriptedUpstream::start(|s| {
        reply(200, &[("content-type", "application/json")], std::str::from_utf8(&s.body).unwrap())
    })
    .await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let resp =
        client().post(thv.url("/mcp")).header("content-type", "application/json").body(batch).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_one_by_one_while_the_stream_is_open() {
    let (tx_slot, rx_slot) = std::sync::mpsc::channel();
    let tx_slot = std::sync::Mutex::new(Some(tx_slot));
    let up = ScriptedUpstream::start(move |_| {
        let (resp, events) = paced_stream(4);
        if let Some(slot) = tx_slot.lock().unwrap().take() {
            slot.send(events).unwrap();
        }
        resp
    })
    .await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let resp = client().get(thv.url("/mcp")).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let events = rx_slot.recv_timeout(STEP).expect("upstream got the request");
    let mut body = resp.bytes_stream();

    // The priming event (id, empty data, retry) passes byte-identical.
    let first = b"id: 1\nretry: 500\ndata:\n\n";
    events.send(Bytes::from_static(first)).await.unwrap();
    let got = timeout(STEP, body.next()).await.expect("first event arrives while the stream is open").unwrap().unwrap();
    assert_eq!(&got[..], first);

    // The second event is only written after the client saw the first: had the proxy
    // buffered, this would never arrive and the timeout would fail the test.
    let second =
        b": comment\nid: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
    events.send(Bytes::from_static(second)).await.unwrap();
    let got = timeout(STEP, body.next()).await.expect("second event arrives before the stream ends").unwrap().unwrap();
    assert_eq!(&got[..], second);

    drop(events);
    let end = timeout(STEP, body.next()).await.expect("stream ends when the upstream ends it");
    assert!(end.is_none(), "clean end of stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_endpoint_is_rewritten_to_the_proxy_origin() {
    let up = ScriptedUpstream::start(|s| {
        if s.method == "GET" {
            let port = s.headers["host"].to_str().unwrap().rsplit(':').next().unwrap().to_owned();
            reply(
                200,
                &[("content-type", "text/event-stream")],
                &format!("event: endpoint\ndata: http://127.0.0.1:{port}/messages?sessionId=abc\n\n"),
            )
        } else {
            reply(202, &[], "")
        }
    })
    .await;
    let thv = Thv::start(&up.url("/sse"), &[]);
    let text = client().get(thv.url("/sse")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, format!("event: endpoint\ndata: http://127.0.0.1:{}/messages?sessionId=abc\n\n", thv.port));
    let resp = client()
        .post(thv.url("/messages?sessionId=abc"))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(up.seen()[1].uri.path_and_query().unwrap().as_str(), "/messages?sessionId=abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_limit_get_413() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let thv = Thv::start(&up.url("/mcp"), &["--max-request-body", "1KiB"]);
    let at_limit = "x".repeat(1024);
    assert_eq!(client().post(thv.url("/mcp")).body(at_limit).send().await.unwrap().status(), 200);
    let over = r#"{"jsonrpc":"2.0","id":42,"method":"x","params":""#.to_owned() + &"x".repeat(1024) + "\"}";
    let resp = client().post(thv.url("/mcp")).body(over.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    // Without Content-Length (chunked) the limit still holds, and the id is not known.
    let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(over.into_bytes())]);
    let resp = client().post(thv.url("/mcp")).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.seen().len(), 1, "oversized bodies never reach the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_and_foreign_origins_are_refused_and_cors_works() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let thv = Thv::start(&up.url("/mcp"), &["--allowed-origins", "http://localhost:6274"]);
    let c = client();
    let resp = c.post(thv.url("/mcp")).header("host", "evil.example").body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = c.post(thv.url("/mcp")).header("origin", "http://evil.example").body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert!(up.seen().is_empty(), "refused requests never reach the target");

    let own = format!("http://localhost:{}", thv.port);
    for origin in [own.as_str(), "http://localhost:6274"] {
        let resp = c.post(thv.url("/mcp")).header("origin", origin).body("{}").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{origin}");
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        assert!(resp.headers()["access-control-expose-headers"].to_str().unwrap().contains("Mcp-Session-Id"));
    }
    let resp = c
        .request(reqwest::Method::OPTIONS, thv.url("/mcp"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, mcp-session-id")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.headers()["access-control-allow-headers"].to_str().unwrap().contains("Mcp-Session-Id"));
    assert_eq!(up.seen().len(), 2, "the preflight is answered by the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_target_state_and_is_never_forwarded() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "upstream")).await;
    let thv = Thv::start(&up.url("/mcp"), &[]);
    let resp = client().get(thv.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["target_reachable"], true);
    assert_eq!(v["server"], "test-server");
    let resp = client().get(thv.url("/.well-known/oauth-protected-resource/mcp")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(up.seen().is_empty());

    let down = Thv::start(&format!("http://127.0.0.1:{}/mcp", closed_port()), &[]);
    let resp = client().get(down.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["target_reachable"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_one_line_per_request_without_secrets() {
    let up = ScriptedUpstream::start(|_| reply(200, &[], "ok")).await;
    let thv = Thv::start(&up.url("/mcp"), &["--debug"]);
    client()
        .post(thv.url("/mcp?token=query-secret"))
        .header("authorization", "Bearer header-secret-token")
        .header("cookie", "session=cookie-secret")
        .body("{}")
        .send()
        .await
        .unwrap();
    let log = thv.wait_for_stderr("path=\"/mcp\"");
    assert!(log.contains("method=POST") && log.contains("status=200"), "{log}");
    for secret in ["query-secret", "header-secret-token", "cookie-secret"] {
        assert!(!log.contains(secret), "{secret} leaked into: {log}");
    }
}
