//! The trace id in the log, alike on both engines (a whole `thv` process per engine, with
//! `--log-format json`): a request refused before its body is read, and a request whose
//! call to the target fails, each log the trace their span is exported with — the client's
//! when it sent one. The trace context itself, through both engines, is in `telemetry.rs`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::Thv;

/// A request refused before its body is read is still traced: its `--debug` lines, the
/// refusal and the request line, carry its trace id. Two refusals: a body larger than
/// `--max-request-body` (hyper's engine judges it on both settings), and a body cut short
/// by the client (each engine's own body read).
#[tokio::test]
async fn a_request_refused_before_its_body_logs_its_trace_id() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let flags = [
        "--debug",
        "--log-format",
        "json",
        "--otel-endpoint",
        "http://127.0.0.1:9",
        "--otel-sampling-rate",
        "0",
        "--max-request-body",
        "64",
    ];
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}"}}}}"#, "x".repeat(100));
    for (engine, env) in [("own", &[][..]), ("hyper", &[("THV_HTTP1", "hyper")][..])] {
        // Never contacted: the request is refused first.
        let mut thv = Thv::start_env("http://127.0.0.1:9/mcp", &flags, env);
        let resp = reqwest::Client::new()
            .post(thv.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
            .body(big.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{engine}");
        // Ten bytes of the twenty announced, then the client stops sending.
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", thv.port)).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             traceparent: 00-{TRACE}-00f067aa0ba902b7-01\r\ncontent-length: 20\r\n\r\n{{\"jsonrpc\":"
        );
        raw.write_all(head.as_bytes()).await.unwrap();
        raw.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer)).await;
        thv.terminate();
        assert!(thv.wait_exit(Duration::from_secs(10)).success());
        let stderr = thv.stderr();
        let lines: Vec<serde_json::Value> =
            stderr.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).collect();
        for message in ["request refused", "request"] {
            let traced: Vec<_> = lines.iter().filter(|l| l["message"] == message).map(|l| &l["trace_id"]).collect();
            assert_eq!(
                traced,
                [TRACE, TRACE],
                "{engine}: both refusals carry the client's trace on {message:?}:\n{stderr}"
            );
        }
    }
}

/// With `--log-format json`, the line that says a traced request's call to the target
/// failed carries the request's `trace_id`, as its request line does, on both engines: the
/// client's trace when it sent one, else the proxy's new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_logs_the_requests_trace_id_on_both_engines() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    // A port that refuses: every call to the target fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://127.0.0.1:{}/mcp", closed.local_addr().unwrap().port());
    drop(closed);
    let flags = ["--log-format", "json", "--otel-endpoint", "http://127.0.0.1:9", "--otel-sampling-rate", "1"];
    for (engine, env) in [("own", &[][..]), ("hyper", &[("THV_HTTP1", "hyper")][..])] {
        let mut thv = Thv::start_env(&target, &flags, env);
        for traceparent in [Some(format!("00-{TRACE}-00f067aa0ba902b7-01")), None] {
            let mut req = reqwest::Client::new()
                .post(thv.url("/mcp"))
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
                .timeout(Duration::from_secs(10));
            if let Some(tp) = &traceparent {
                req = req.header("traceparent", tp);
            }
            assert_eq!(req.send().await.unwrap().status(), 502, "{engine}");
        }
        thv.terminate();
        assert!(thv.wait_exit(Duration::from_secs(10)).success());
        let stderr = thv.stderr();
        let failed: Vec<serde_json::Value> = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["message"] == "request to the MCP server failed")
            .collect();
        assert_eq!(failed.len(), 2, "{engine}: one line per failed call:\n{stderr}");
        assert_eq!(failed[0]["trace_id"], TRACE, "{engine}: the client's trace, continued:\n{stderr}");
        let own = failed[1]["trace_id"].as_str().unwrap_or_default();
        assert!(own.len() == 32 && own != TRACE, "{engine}: the proxy's own new trace:\n{stderr}");
    }
}
