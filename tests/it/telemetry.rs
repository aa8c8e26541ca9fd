//! Telemetry end to end on a real `thv` process: nothing queued is lost at shutdown, the
//! collector's credentials never reach the log, and a collector that is down never fails
//! a request. (The real Prometheus, the `opentelemetry-proto` decoder and the outage under
//! load are in `interop/telemetry`; the trace context through both engines in
//! `engine/telemetry.rs`.)

use std::time::Duration;

use crate::support::Thv;
use crate::support::upstream::{ScriptedUpstream, reply};

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;

async fn call(thv: &Thv) -> u16 {
    let client = reqwest::Client::new();
    let resp = client
        .post(thv.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(CALL)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the proxy answers");
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_spans_and_the_last_metrics_are_exported_at_shutdown() {
    let upstream = ScriptedUpstream::start(|_| reply(200, &[("content-type", "application/json")], "{}")).await;
    let collector = ScriptedUpstream::start(|_| reply(200, &[], "")).await;
    let endpoint = format!("http://{}", collector.addr);
    // Nothing would be exported for a minute: only the shutdown can send it.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "60000"), ("OTEL_METRIC_EXPORT_INTERVAL", "60000")];
    let flags = ["--otel-endpoint", &endpoint, "--otel-sampling-rate", "1", "--otel-headers", "x-api-key=sekrit-value"];
    let mut thv = Thv::start_env(&upstream.url("/mcp"), &flags, &env);
    assert_eq!(call(&thv).await, 200);
    assert!(collector.seen().is_empty(), "nothing exported before the schedule");
    thv.terminate();
    assert!(thv.wait_exit(Duration::from_secs(10)).success());
    let seen = collector.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.uri.path()).collect();
    assert!(paths.contains(&"/v1/traces"), "the queued spans were flushed: {paths:?}");
    assert!(paths.contains(&"/v1/metrics"), "one last metric export: {paths:?}");
    for s in &seen {
        assert_eq!(s.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/x-protobuf"[..]));
        assert_eq!(s.headers.get("x-api-key").map(|v| v.as_bytes()), Some(&b"sekrit-value"[..]));
        assert!(!s.body.is_empty());
    }
    assert!(!thv.stderr().contains("sekrit"), "a header value is never logged");
    let traced = upstream.seen();
    assert!(traced[0].headers.contains_key("traceparent"), "the target got the proxy's trace context");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_fails_no_request_and_stops_no_exit() {
    let upstream = ScriptedUpstream::start(|_| reply(200, &[("content-type", "application/json")], "{}")).await;
    // Port 9 (discard) refuses on loopback.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "50"), ("OTEL_METRIC_EXPORT_INTERVAL", "100")];
    let flags = ["--otel-endpoint", "http://127.0.0.1:9", "--otel-sampling-rate", "1"];
    let mut thv = Thv::start_env(&upstream.url("/mcp"), &flags, &env);
    for _ in 0..20 {
        assert_eq!(call(&thv).await, 200);
    }
    thv.terminate();
    assert!(thv.wait_exit(Duration::from_secs(10)).success());
    let stderr = thv.stderr();
    let warnings = stderr.lines().filter(|l| l.contains("127.0.0.1:9")).count();
    assert!((1..=4).contains(&warnings), "the failing collector is named, and not once per export:\n{stderr}");
}
