//! Telemetry end to end on a real `thv` process: nothing queued is lost at shutdown, the
//! collector's credentials never reach the log, a collector that is down never fails a
//! request, the environment's sampler decides, and configuration that cannot apply is
//! called out. (The real Prometheus, the `opentelemetry-proto` decoder and the outage under
//! load are in `interop/telemetry`; the trace context through both engines in
//! `engine/telemetry.rs`, and the trace id in their log lines in `engine/trace_logs.rs`.)

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

/// `OTEL_TRACES_SAMPLER` decides as the OpenTelemetry specification says: `traceidratio`
/// at 0 drops a trace whatever the client's sampled flag, `parentbased_traceidratio` at 0
/// follows the client's sampled parent. The target's `traceparent` carries the decision, and
/// `--otel-env-vars` puts the named variable on the exported spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_sampler_decides_and_named_variables_become_span_attributes() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (sampler, sampled) in [("traceidratio", false), ("parentbased_traceidratio", true)] {
        let upstream = ScriptedUpstream::start(|_| reply(200, &[("content-type", "application/json")], "{}")).await;
        let collector = ScriptedUpstream::start(|_| reply(200, &[], "")).await;
        let endpoint = format!("http://{}", collector.addr);
        let env = [
            ("OTEL_TRACES_SAMPLER", sampler),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("THV_TEST_DEPLOYMENT", "blue-7"),
        ];
        let flags =
            ["--otel-endpoint", &endpoint, "--otel-env-vars", "THV_TEST_DEPLOYMENT", "--otel-metrics-enabled=false"];
        let mut thv = Thv::start_env(&upstream.url("/mcp"), &flags, &env);
        let resp = reqwest::Client::new()
            .post(thv.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
            .body(CALL)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(resp.status(), 200);
        thv.terminate();
        assert!(thv.wait_exit(Duration::from_secs(10)).success());
        let got = upstream.seen();
        let sent = got[0].headers.get("traceparent").and_then(|v| v.to_str().ok()).expect("a traceparent").to_owned();
        assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sampler}: the client's trace goes on: {sent}");
        assert_eq!(sent.ends_with("-01"), sampled, "{sampler}: the target is told the decision: {sent}");
        let traces: Vec<_> = collector.seen().into_iter().filter(|s| s.uri.path() == "/v1/traces").collect();
        assert_eq!(!traces.is_empty(), sampled, "{sampler}: spans exported only when sampled");
        if sampled {
            let body = &traces[0].body;
            let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
            assert!(
                has(b"environment.THV_TEST_DEPLOYMENT") && has(b"blue-7"),
                "{sampler}: the variable is on the spans"
            );
        }
    }
}

/// `--otel-insecure` cannot turn off certificate checks for an `https://` endpoint: the
/// proxy says so at startup rather than ignore the flag silently.
#[tokio::test]
async fn otel_insecure_with_an_https_endpoint_is_called_out_at_startup() {
    let upstream = ScriptedUpstream::start(|_| reply(200, &[("content-type", "application/json")], "{}")).await;
    let flags = ["--otel-endpoint", "https://127.0.0.1:9", "--otel-insecure"];
    let mut thv = Thv::start_env(&upstream.url("/mcp"), &flags, &[]);
    thv.wait_for_stderr("--otel-insecure has no effect on an https:// OTLP endpoint");
    thv.terminate();
    assert!(thv.wait_exit(Duration::from_secs(10)).success());
}

/// `--tools-override` shows the server's `add` to clients as `sum`. A call of `sum` reaches
/// the server as `add` and is counted under that name (`telemetry::names`: the name the
/// server listed and the call carries to it), by both engines; the client's name and a
/// name nobody listed never become a label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_tool_is_counted_under_the_servers_name_by_both_engines() {
    let upstream = ScriptedUpstream::start(|seen| {
        let msg: serde_json::Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let result = match msg["method"].as_str() {
            Some("tools/list") => serde_json::json!({"tools": [
                {"name": "add", "inputSchema": {"type": "object"}},
                {"name": "echo", "inputSchema": {"type": "object"}},
            ]}),
            _ => serde_json::json!({"content": []}),
        };
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
        reply(200, &[("content-type", "application/json")], &answer.to_string())
    })
    .await;
    let file = std::env::temp_dir().join(format!("thv-it-telemetry-override-{}.json", std::process::id()));
    std::fs::write(&file, r#"{"toolsOverride": {"add": {"name": "sum"}}}"#).unwrap();
    // `--tools` names the server's tools, so that `sum` cannot be one of its own.
    let flags = [
        "--tools",
        "add,echo",
        "--tools-override",
        file.to_str().unwrap(),
        "--otel-enable-prometheus-metrics-path",
        "--diagnostics-port",
        "0",
    ];
    let post = |thv: &Thv, body: String| {
        reqwest::Client::new()
            .post(thv.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
    };
    let tool_call = |name: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#)
    };
    for (engine, env) in [("own", &[][..]), ("hyper", &[("THV_HTTP1", "hyper")][..])] {
        let thv = Thv::start_env(&upstream.url("/mcp"), &flags, env);
        let port = thv.diagnostics_port();
        let before = upstream.seen().len();
        let list = post(&thv, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned()).await.unwrap();
        let listed: serde_json::Value = list.json().await.unwrap();
        let shown: Vec<&str> =
            listed["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(shown, ["sum", "echo"], "{engine}: the client sees the override");
        for (name, answer) in [("sum", "result"), ("sum", "result"), ("made-up", "error")] {
            let resp = post(&thv, tool_call(name)).await.unwrap();
            assert_eq!(resp.status(), 200, "{engine}: {name}");
            let got: serde_json::Value = resp.json().await.unwrap();
            assert!(got.get(answer).is_some(), "{engine}: {name}: {got}");
        }
        let called: Vec<String> = upstream.seen()[before..]
            .iter()
            .filter_map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).ok())
            .filter(|m| m["method"] == "tools/call")
            .map(|m| m["params"]["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        // `made-up` is not among --tools: the proxy refuses it without asking the server.
        assert_eq!(called, ["add", "add"], "{engine}: sum reaches the server as add");

        let text = crate::support::scrape_metrics(port).await;
        let calls: Vec<&str> = text.lines().filter(|l| l.starts_with("toolhive_mcp_tool_calls_total")).collect();
        let labels: Vec<&str> = calls.iter().filter_map(|l| l.split("tool=\"").nth(1)?.split('"').next()).collect();
        assert!(
            calls.iter().any(|l| l.contains(r#"tool="add""#) && l.ends_with(" 2")),
            "{engine}: both calls counted as add:\n{text}"
        );
        let requests = r#"mcp_method="tools/call",mcp_resource_id="add"} 2"#;
        assert!(text.lines().any(|l| l.starts_with("toolhive_mcp_requests_total") && l.ends_with(requests)), "{text}");
        // The refused call is counted as what it was: a tools/call, of a name nobody listed.
        let refused = r#"mcp_method="tools/call",mcp_resource_id="other"} 1"#;
        assert!(text.lines().any(|l| l.starts_with("toolhive_mcp_requests_total") && l.ends_with(refused)), "{text}");
        assert!(labels.iter().all(|l| ["add", "echo", "other"].contains(l)), "{engine}: only listed names: {labels:?}");
        assert!(
            !text.contains(r#""sum""#) && !text.contains(r#""made-up""#),
            "{engine}: no client-chosen name:\n{text}"
        );
    }
    std::fs::remove_file(&file).unwrap();
}
