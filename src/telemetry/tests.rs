//! Unit tests of [`super::Telemetry`] and [`super::Observation`]: active connections, vetted
//! labels, event counting and what a traced request reads of its head.

use super::*;

fn prometheus_only() -> Arc<Telemetry> {
    Telemetry::start(&prometheus_only_config(), "t", None).unwrap()
}

fn prometheus_only_config() -> Box<TelemetryConfig> {
    Box::new(TelemetryConfig {
        service_name: "thv-t".to_owned(),
        sampling_rate: 1.0,
        follow_parent: true,
        traces_url: None,
        metrics_url: None,
        headers: Vec::new(),
        resource: Vec::new(),
        span_env: Vec::new(),
        diagnostics: None,
        export_timeout: Duration::from_secs(1),
        metric_interval: Duration::from_secs(60),
        max_queue: 16,
        max_batch: 16,
        schedule_delay: Duration::from_secs(1),
        transport: "streamable-http",
    })
}

fn head() -> Option<Head<'static>> {
    Some(Head { path: b"/mcp", tracestate: None, session: None, protocol: None })
}

fn open(t: &Arc<Telemetry>, method: &str) -> Box<Observation> {
    t.observe(method, "127.0.0.1:5000".parse().unwrap(), None)
}

fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn requests_in_flight_and_streams_are_active_connections_until_they_end() {
    let t = prometheus_only();
    let call = open(&t, "POST");
    let mut stream = open(&t, "GET");
    stream.event_stream();
    let text = t.render_prometheus();
    let active = lines_of(&text, "toolhive_mcp_active_connections");
    assert!(active.iter().any(|l| l.contains(r#"connection_type="""#) && l.ends_with(" 1")), "{active:?}");
    assert!(active.iter().any(|l| l.contains(r#"connection_type="sse""#) && l.ends_with(" 1")), "{active:?}");
    stream.answer_bytes(b"data: 1\n\ndata: 2\n\n");
    stream.finish(200, 20);
    drop(call); // a client that left: never finished, still closed
    let text = t.render_prometheus();
    assert!(lines_of(&text, "toolhive_mcp_active_connections").iter().all(|l| l.ends_with(" 0")), "{text}");
    assert!(lines_of(&text, "thv_sse_events_relayed_total").iter().any(|l| l.ends_with(" 2")), "{text}");
    let counted = lines_of(&text, "toolhive_mcp_requests_total");
    assert!(counted.iter().any(|l| l.contains(r#"mcp_method="sse_connection""#)), "{counted:?}");
    assert_eq!(counted.len(), 1, "the request that was never answered is not counted: {counted:?}");
}

#[test]
fn a_call_is_labelled_with_its_tool_once_the_server_listed_it() {
    let t = prometheus_only();
    let call = |name: &str| {
        let mut o = open(&t, "POST");
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}"}}}}"#);
        assert!(o.read_body(head, body.as_bytes()).is_none(), "no trace context without tracing");
        o.finish(200, 10);
    };
    call("echo");
    let mut list = open(&t, "POST");
    list.read_body(head, br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    assert!(list.reads_answer());
    list.answer_bytes(br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"}]}}"#);
    list.finish(200, 60);
    call("echo");
    call("invented");
    let text = t.render_prometheus();
    let tools = lines_of(&text, "toolhive_mcp_tool_calls_total");
    assert!(tools.iter().any(|l| l.contains(r#"tool="echo""#) && l.ends_with(" 1")), "{tools:?}");
    assert!(tools.iter().any(|l| l.contains(r#"tool="other""#) && l.ends_with(" 2")), "{tools:?}");
}

/// A tracing proxy exporting to a port that refuses (nothing here reads the spans).
fn traced(rate: f64) -> Arc<Telemetry> {
    let url = url::Url::parse("http://127.0.0.1:9/v1/traces").unwrap();
    let config = TelemetryConfig {
        sampling_rate: rate,
        traces_url: Some(otlp::SignalUrl { url, compression: otlp::Compression::None }),
        ..(*prometheus_only_config()).clone()
    };
    Telemetry::start(&config, "t", None).unwrap()
}

#[test]
fn only_a_sampled_request_reads_the_head_and_keeps_its_tracestate() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let state = || Some(Head { path: b"/mcp", tracestate: Some(b"a=b"), session: Some(b"s1"), protocol: None });
    let mut never = open(&traced(0.0), "POST");
    let p = never.read_body(|| panic!("an unsampled request reads no head fields"), body).unwrap();
    assert!(p.traceparent.ends_with(b"-00"), "the target still gets the (unsampled) context");
    assert_eq!(never.sampled_trace_id(), None);
    let mut always = open(&traced(1.0), "POST");
    let p = always.read_body(state, body).unwrap();
    assert!(p.traceparent.ends_with(b"-01"));
    let t = always.trace.as_ref().unwrap();
    assert_eq!(t.tracestate.as_deref(), Some("a=b"), "the client's tracestate goes with the span");
    assert_ne!(t.server_span, [0; 8]);
    assert_eq!((always.session.as_deref(), always.path.as_str()), (Some("s1"), "/mcp"));
}

#[test]
fn events_are_counted_across_chunks() {
    let (n, tail) = count_events([0; 3], b"data: a\n\ndata: b\n");
    assert_eq!(n, 1);
    let (n, _) = count_events(tail, b"\nid: 3\r\n\r\n");
    assert_eq!(n, 2);
    assert_eq!(count_events([0; 3], b"data: x\r\rdata: y\n").0, 1);
}
