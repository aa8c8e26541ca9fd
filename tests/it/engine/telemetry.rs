//! The differential table with telemetry on (`--otel-endpoint`, `--otel-sampling-rate 1`,
//! the Prometheus path): trace context passed on alike by both engines — a client's
//! `traceparent` continued under the proxy's own span, `params._meta.traceparent` winning
//! over the header and rewritten to agree with it, a bad one replaced — and, once every
//! case has run through both, the same Prometheus counts from both.

use super::cases::FLAGS;
use super::diff::{Body, Sent, Status, TargetBody, TargetBodyHas, TargetHas, TargetLacks, TargetNoValue, TargetTrace};
use super::diff::{Case, Engine, case, run, start_pair};
use super::wire::{Answer, OK, Target};
use crate::support::scrape_metrics;

/// `POST /mcp` with `$fields` and the JSON-RPC body `$body`.
macro_rules! rpc {
    ($fields:expr, $body:expr) => {
        concat!(
            "POST /mcp HTTP/1.1\r\n{H}",
            $fields,
            "Content-Type: application/json\r\nContent-Length: {LEN}\r\n\r\n",
            $body
        )
    };
}

/// The W3C specification's example: trace `4bf92f35…`, the client's span `00f067aa…`.
macro_rules! client_tp {
    () => {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    };
}
/// Another trace in the body's `_meta`, same client span.
macro_rules! meta_tp {
    () => {
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    };
}

/// Sets `{LEN}` to the body's length (the body follows the head).
fn sized(send: &str) -> &'static str {
    let body_len = send.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Box::leak(send.replace("{LEN}", &body_len.to_string()).into_boxed_str())
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#;

/// A JSON answer of the server's.
fn json_answer(body: &str) -> Answer {
    let raw =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    Answer::Keep(Box::leak(raw.into_boxed_str()))
}

#[rustfmt::skip]
fn telemetry_cases() -> Vec<Case> {
    let tools = json_answer(r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo","inputSchema":{}}]}}"#);
    vec![
        case("telemetry: a client's trace is continued under the proxy's span", sized(rpc!(concat!("traceparent: ", client_tp!(), "\r\ntracestate: congo=t61rcWkgMzE\r\n"), r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#)), OK,
            &[Status(200), Sent(1), TargetTrace("4bf92f3577b34da6a3ce929d0e0e4736"), TargetHas("tracestate", "congo=t61rcWkgMzE"), TargetBody(CALL)]),
        case("telemetry: a request without trace context starts a trace", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#)), OK,
            &[Status(200), Sent(1), TargetTrace("new"), TargetBody(CALL)]),
        case("telemetry: _meta wins over the header, and both copies agree", sized(rpc!(concat!("traceparent: ", client_tp!(), "\r\n"), concat!(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":""#, meta_tp!(), r#""}}}"#))), OK,
            &[Status(200), Sent(1), TargetTrace("0af7651916cd43dd8448eb211c80319c"), TargetNoValue("4bf92f35"), TargetBodyHas(r#""_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-"#)]),
        case("telemetry: a _meta traceparent alone is continued, with its tracestate", sized(rpc!("", concat!(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":""#, meta_tp!(), r#"","tracestate":"a=b"}}}"#))), OK,
            &[Status(200), Sent(1), TargetTrace("0af7651916cd43dd8448eb211c80319c"), TargetBodyHas(r#""tracestate":"a=b""#), TargetHas("tracestate", "a=b")]),
        case("telemetry: when _meta wins, the header's tracestate goes with the header's trace", sized(rpc!(concat!("traceparent: ", client_tp!(), "\r\ntracestate: congo=t61rcWkgMzE\r\n"), concat!(r#"{"jsonrpc":"2.0","id":8,"method":"ping","params":{"_meta":{"traceparent":""#, meta_tp!(), r#""}}}"#))), OK,
            &[Status(200), Sent(1), TargetTrace("0af7651916cd43dd8448eb211c80319c"), TargetLacks("tracestate")]),
        case("telemetry: a _meta tracestate that would break the head is not sent", sized(rpc!("", concat!(r#"{"jsonrpc":"2.0","id":8,"method":"ping","params":{"_meta":{"traceparent":""#, meta_tp!(), r#"","tracestate":"a=b\r\nx-injected: 1"}}}"#))), OK,
            &[Status(200), Sent(1), TargetTrace("0af7651916cd43dd8448eb211c80319c"), TargetLacks("tracestate"), TargetLacks("x-injected")]),
        case("telemetry: tracestate given twice is kept as sent", sized(rpc!(concat!("traceparent: ", client_tp!(), "\r\ntracestate: a=1\r\ntracestate: b=2\r\n"), r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#)), OK,
            &[Status(200), Sent(1), TargetTrace("4bf92f3577b34da6a3ce929d0e0e4736")]),
        case("telemetry: a malformed traceparent is replaced, not passed on", sized(rpc!("traceparent: 00-zz-garbage-01\r\n", r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#)), OK,
            &[Status(200), Sent(1), TargetTrace("new"), TargetNoValue("garbage")]),
        case("telemetry: an escaped _meta traceparent is read as the server reads it, and rewritten", sized(rpc!("", r#"{"jsonrpc":"2.0","id":9,"method":"ping","params":{"_meta":{"traceparent":"\u0030\u0030-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}}}"#)), OK,
            &[Status(200), Sent(1), TargetTrace("0af7651916cd43dd8448eb211c80319c"), TargetBodyHas(r#""_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-"#)]),
        case("telemetry: an invalid _meta traceparent is left as sent", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"_meta":{"traceparent":"\u0030"}}}"#)), OK,
            &[Status(200), Sent(1), TargetTrace("new"), TargetBody(r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"_meta":{"traceparent":"\u0030"}}}"#)]),
        case("telemetry: a batch passes untouched (telemetry never refuses)", sized(rpc!("", r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#)), OK,
            &[Status(200), Sent(1), TargetBody(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#)]),
        case("telemetry: an unreadable body passes untouched", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"#)), OK,
            &[Status(200), Sent(1), TargetBody(r#"{"jsonrpc":"2.0","id":7,"method":"#)]),
        case("telemetry: a GET stream gets the proxy's trace context too", sized(concat!("GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\ntraceparent: ", client_tp!(), "\r\n\r\n")), OK,
            &[Status(200), Sent(1), TargetTrace("4bf92f3577b34da6a3ce929d0e0e4736"), TargetLacks("content-length")]),
        case("telemetry: the server's tools/list teaches the metrics its tool names", sized(rpc!("", r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#)), tools,
            &[Status(200), Sent(1), TargetTrace("new")]),
        case("telemetry: a listed tool is a label", sized(rpc!("", r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo"}}"#)), OK,
            &[Status(200), Sent(1)]),
        case("telemetry: an unlisted one is not", sized(rpc!("", r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"made-up-by-a-client"}}"#)), OK,
            &[Status(200), Sent(1)]),
        case("telemetry: /metrics on the MCP port is the target's, not the proxy's", "GET /metrics HTTP/1.1\r\n{H}\r\n", OK,
            &[Status(200), Sent(1), Body(r#"{"ok":true}"#)]),
    ]
}

/// The counter lines of `toolhive_mcp_requests_total` and `toolhive_mcp_tool_calls_total`,
/// sorted: what a Prometheus query over them would show.
async fn request_counts(port: u16) -> Vec<String> {
    let text = scrape_metrics(port).await;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("toolhive_mcp_requests_total") || l.starts_with("toolhive_mcp_tool_calls_total"))
        .map(|l| l.replace("server=\"own\"", "server=\"x\"").replace("server=\"hyper\"", "server=\"x\""))
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_and_metrics_are_alike_on_both_engines() {
    let target = Target::start().await;
    let mut flags = FLAGS.to_vec();
    // A collector nobody runs: exports fail (counted), requests never notice.
    flags.extend([
        "--otel-endpoint",
        "http://127.0.0.1:9",
        "--otel-sampling-rate",
        "1",
        "--otel-enable-prometheus-metrics-path",
        "--diagnostics-port",
        "0",
    ]);
    let (own, hyper) = start_pair(&format!("http://{}/mcp", target.addr), &flags);
    let ports = [own.diagnostics_port(), hyper.diagnostics_port()];
    let engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    let cases = telemetry_cases();
    let failures = run("telemetry", &target, &engines, &cases).await;
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
    let (own_counts, hyper_counts) = (request_counts(ports[0]).await, request_counts(ports[1]).await);
    let count = |needle: &str| {
        own_counts.iter().find(|l| l.contains(needle)).map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    };
    // Four calls before the list, and the unlisted name after it.
    assert_eq!(count(r#"mcp_method="tools/call",mcp_resource_id="other""#).as_deref(), Some("5"), "{own_counts:#?}");
    assert_eq!(count(r#"mcp_method="tools/call",mcp_resource_id="echo""#).as_deref(), Some("1"), "{own_counts:#?}");
    assert_eq!(count(r#"tool="echo""#).as_deref(), Some("1"), "{own_counts:#?}");
    assert!(!own_counts.iter().any(|l| l.contains("made-up")), "a client's name never becomes a label");
    assert_eq!(own_counts, hyper_counts, "both engines count the same requests under the same labels");
}

/// Metrics alone (no tracing): the own engine reads no head fields, only the body; both
/// engines must still count alike, and forward the client's trace context untouched.
#[rustfmt::skip]
fn metrics_cases() -> Vec<Case> {
    let tools = json_answer(r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo","inputSchema":{}}]}}"#);
    vec![
        case("metrics: a call before the list", sized(rpc!(concat!("traceparent: ", client_tp!(), "\r\n"), r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo"}}"#)), OK,
            &[Status(200), Sent(1), TargetHas("traceparent", client_tp!())]),
        case("metrics: the server's list", sized(rpc!("", r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#)), tools,
            &[Status(200), Sent(1)]),
        case("metrics: a listed tool", sized(rpc!("", r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo"}}"#)), OK,
            &[Status(200), Sent(1)]),
        case("metrics: an unknown method", sized(rpc!("", r#"{"jsonrpc":"2.0","id":6,"method":"x/made-up"}"#)), OK,
            &[Status(200), Sent(1)]),
        case("metrics: a batch", sized(rpc!("", r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)), OK,
            &[Status(200), Sent(1)]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_alone_count_alike_on_both_engines() {
    let target = Target::start().await;
    let mut flags = FLAGS.to_vec();
    flags.extend(["--otel-enable-prometheus-metrics-path", "--diagnostics-port", "0"]);
    let (own, hyper) = start_pair(&format!("http://{}/mcp", target.addr), &flags);
    let ports = [own.diagnostics_port(), hyper.diagnostics_port()];
    let engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    let cases = metrics_cases();
    let failures = run("metrics", &target, &engines, &cases).await;
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
    let (own_counts, hyper_counts) = (request_counts(ports[0]).await, request_counts(ports[1]).await);
    let has = |needle: &str| own_counts.iter().any(|l| l.contains(needle) && l.ends_with(" 1"));
    assert!(has(r#"mcp_method="tools/call",mcp_resource_id="other""#), "{own_counts:#?}");
    assert!(has(r#"mcp_method="tools/call",mcp_resource_id="echo""#), "{own_counts:#?}");
    assert!(has(r#"mcp_method="other""#), "an unknown method is `other`: {own_counts:#?}");
    assert_eq!(own_counts, hyper_counts, "both engines count the same requests under the same labels");
}
