use std::sync::Arc;
use std::time::Duration;

use super::table::{CARDINALITY_LIMIT, MAX_VALUE_BYTES, OVERFLOW_KEY};
use super::*;

fn facts(mcp_method: Option<&str>, status: u16, millis: u64) -> RequestFacts<'_> {
    RequestFacts { http_method: "POST", status, mcp_method, resource_id: None, duration: Duration::from_millis(millis) }
}

fn family<'a>(snapshot: &'a Snapshot, name: &str) -> &'a Family {
    snapshot.families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no family {name}"))
}

fn label<'a>(series: &'a Series, key: &str) -> Option<&'a str> {
    series.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
}

fn count(series: &Series) -> u64 {
    match series.point {
        Point::Count(n) => n,
        Point::Histogram { count, .. } => count,
        ref other => panic!("not a count: {other:?}"),
    }
}

#[test]
fn counts_per_label_set() {
    let m = Metrics::new("fetch", "streamable-http");
    for _ in 0..3 {
        m.request(&facts(Some("tools/list"), 200, 1));
    }
    m.request(&facts(Some("tools/list"), 404, 1));
    let call = RequestFacts { resource_id: Some("echo"), ..facts(Some("tools/call"), 200, 1) };
    m.request(&call);
    let s = m.snapshot(&[]);
    let requests = &family(&s, "toolhive_mcp_requests").series;
    assert_eq!(requests.len(), 3);
    let ok = requests
        .iter()
        .find(|r| label(r, "status_code") == Some("200") && label(r, "mcp_method") == Some("tools/list"));
    let ok = ok.unwrap();
    assert_eq!(count(ok), 3);
    assert_eq!(label(ok, "status"), Some("success"));
    assert_eq!(label(ok, "server"), Some("fetch"));
    assert_eq!(label(ok, "transport"), Some("streamable-http"));
    assert_eq!(label(ok, "method"), Some("POST"));
    assert_eq!(label(ok, "mcp_resource_id"), Some(""));
    let refused = requests.iter().find(|r| label(r, "status_code") == Some("404")).unwrap();
    assert_eq!((count(refused), label(refused, "status")), (1, Some("error")));

    let calls = &family(&s, "toolhive_mcp_tool_calls").series;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (label(&calls[0], "tool"), label(&calls[0], "status"), count(&calls[0])),
        (Some("echo"), Some("success"), 1)
    );

    // The semantic-convention histogram: attributes only where they apply.
    let ops = &family(&s, "mcp.server.operation.duration").series;
    let tool_op = ops.iter().find(|o| label(o, "mcp.method.name") == Some("tools/call")).unwrap();
    assert_eq!(label(tool_op, "gen_ai.operation.name"), Some("execute_tool"));
    assert_eq!(label(tool_op, "gen_ai.tool.name"), Some("echo"));
    assert_eq!(label(tool_op, "error.type"), None);
    assert_eq!(label(tool_op, "network.protocol.version"), Some("1.1"));
    let list_op = ops.iter().find(|o| label(o, "mcp.method.name") == Some("tools/list")).unwrap();
    assert_eq!((label(list_op, "gen_ai.operation.name"), count(list_op)), (None, 4), "a 4xx is not an error.type");
}

#[test]
fn server_errors_and_prompts_get_their_attributes() {
    let m = Metrics::new("s", "sse");
    m.request(&RequestFacts { resource_id: Some("greet"), ..facts(Some("prompts/get"), 502, 1) });
    m.request(&facts(None, 202, 1));
    m.request(&RequestFacts { http_method: "GET", ..facts(Some("sse_connection"), 200, 1) });
    let s = m.snapshot(&[]);
    let ops = &family(&s, "mcp.server.operation.duration").series;
    assert_eq!(ops.len(), 1, "no operation for a body-less request or the SSE stream");
    assert_eq!(label(&ops[0], "error.type"), Some("502"));
    assert_eq!(label(&ops[0], "gen_ai.prompt.name"), Some("greet"));
    let methods: Vec<_> = family(&s, "toolhive_mcp_requests").series.iter().map(|r| label(r, "mcp_method")).collect();
    assert_eq!(methods, [Some("prompts/get"), Some(""), Some("sse_connection")]);
}

#[test]
fn normalises_unknown_methods() {
    assert_eq!(vocab::mcp_method(Some("tools/call")), "tools/call");
    assert_eq!(vocab::mcp_method(Some("notifications/tasks/status")), "notifications/tasks/status");
    assert_eq!(vocab::mcp_method(Some("server/discover")), "server/discover");
    assert_eq!(vocab::mcp_method(Some("tools/call2")), "other");
    assert_eq!(vocab::mcp_method(Some("")), "other");
    assert_eq!(vocab::mcp_method(None), "");
    assert_eq!(vocab::http_method("BREW"), "_OTHER");
    let m = Metrics::new("s", "sse");
    for i in 0..50 {
        m.request(&RequestFacts { http_method: &format!("X{i}"), ..facts(Some(&format!("made/up/{i}")), 200, 1) });
    }
    let s = m.snapshot(&[]);
    let requests = &family(&s, "toolhive_mcp_requests").series;
    assert_eq!(requests.len(), 1);
    assert_eq!((label(&requests[0], "mcp_method"), label(&requests[0], "method")), (Some("other"), Some("_OTHER")));
    assert_eq!(count(&requests[0]), 50);
}

#[test]
fn truncates_label_values_on_a_char_boundary() {
    let long = "é".repeat(100); // 200 bytes
    let cut = table::truncate(&long);
    assert_eq!(cut.len(), MAX_VALUE_BYTES);
    let odd = format!("a{long}"); // a boundary falls at 129: cut to 127
    assert_eq!(table::truncate(&odd).len(), MAX_VALUE_BYTES - 1);
    assert_eq!(table::truncate("short"), "short");

    let m = Metrics::new(&"s".repeat(300), "sse");
    m.request(&RequestFacts { resource_id: Some(&odd), ..facts(Some("resources/read"), 200, 1) });
    m.request(&RequestFacts {
        resource_id: Some(&format!("{odd}different tail")),
        ..facts(Some("resources/read"), 200, 1)
    });
    let s = m.snapshot(&[]);
    let requests = &family(&s, "toolhive_mcp_requests").series;
    assert_eq!(requests.len(), 1, "values equal after the cut are one series");
    assert_eq!(label(&requests[0], "mcp_resource_id").unwrap().len(), MAX_VALUE_BYTES - 1);
    assert_eq!(label(&requests[0], "server").unwrap().len(), MAX_VALUE_BYTES);
}

#[test]
fn overflows_past_the_cardinality_limit() {
    let m = Metrics::new("s", "streamable-http");
    let names: Vec<String> = (0..CARDINALITY_LIMIT + 5).map(|i| format!("tool-{i}")).collect();
    for name in &names[..CARDINALITY_LIMIT] {
        m.request(&RequestFacts { resource_id: Some(name), ..facts(Some("tools/call"), 200, 1) });
    }
    assert_eq!(m.tool_calls.len(), CARDINALITY_LIMIT);
    let s = m.snapshot(&[]);
    assert!(family(&s, "toolhive_mcp_tool_calls").series.iter().all(|c| label(c, OVERFLOW_KEY).is_none()));

    for name in &names[CARDINALITY_LIMIT..] {
        m.request(&RequestFacts { resource_id: Some(name), ..facts(Some("tools/call"), 200, 1) });
    }
    // A set seen before the limit keeps counting in its own series.
    m.request(&RequestFacts { resource_id: Some(&names[0]), ..facts(Some("tools/call"), 200, 1) });
    assert_eq!(m.tool_calls.len(), CARDINALITY_LIMIT, "nothing stored past the limit");
    let s = m.snapshot(&[]);
    let calls = &family(&s, "toolhive_mcp_tool_calls").series;
    assert_eq!(calls.len(), CARDINALITY_LIMIT + 1);
    let overflow = calls.last().unwrap();
    assert_eq!(overflow.labels, vec![(OVERFLOW_KEY, "true".to_owned())]);
    assert_eq!(count(overflow), 5);
    assert_eq!(count(&calls[0]), 2);
    assert_eq!(calls.iter().map(count).sum::<u64>(), CARDINALITY_LIMIT as u64 + 6, "no observation lost");
}

#[test]
fn places_observations_equal_to_a_bound_in_that_bucket() {
    let bounds = &REQUEST_BOUNDS;
    assert_eq!(bounds.bucket(0), 0);
    assert_eq!(bounds.bucket(5_000_000), 0, "5 ms is le=0.005");
    assert_eq!(bounds.bucket(5_000_001), 1);
    assert_eq!(bounds.bucket(75_000_000), 4, "75 ms is le=0.075 despite 0.075 * 1e9 rounding down");
    assert_eq!(bounds.bucket(10_000_000_000), 13, "10 s is le=10");
    assert_eq!(bounds.bucket(10_000_000_001), 14, "+Inf");
    assert_eq!(OPERATION_BOUNDS.bucket(300_000_000_000), 13);

    let m = Metrics::new("s", "sse");
    for millis in [5, 75, 1000, 20_000] {
        m.request(&facts(Some("ping"), 200, millis));
    }
    let s = m.snapshot(&[]);
    let Point::Histogram { count, sum, buckets } = &family(&s, "toolhive_mcp_request_duration").series[0].point else {
        panic!("not a histogram")
    };
    let mut expected = vec![0u64; 15];
    for i in [0, 4, 9, 14] {
        expected[i] = 1;
    }
    assert_eq!((*count, buckets), (4, &expected));
    assert!((sum - 21.08).abs() < 1e-9, "{sum}");
}

#[test]
fn concurrent_increments_sum_correctly() {
    const PER_THREAD: u64 = 10_000;
    let m = Arc::new(Metrics::new("s", "streamable-http"));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let tool = if t % 2 == 0 { "even" } else { "odd" };
                for _ in 0..PER_THREAD {
                    m.request(&RequestFacts { resource_id: Some(tool), ..facts(Some("tools/call"), 200, 1) });
                    m.count(Count::SseEvents(2));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let s = m.snapshot(&[]);
    let requests = &family(&s, "toolhive_mcp_requests").series;
    assert_eq!(requests.iter().map(count).sum::<u64>(), 4 * PER_THREAD);
    let calls = &family(&s, "toolhive_mcp_tool_calls").series;
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| count(c) == 2 * PER_THREAD));
    assert_eq!(count(&family(&s, "thv_sse_events_relayed").series[0]), 8 * PER_THREAD);
}

#[test]
fn fixed_counters_connections_and_expiry() {
    let m = Metrics::new("s", "sse");
    m.count(Count::InboundAccepted);
    m.count(Count::InboundRefused("expired"));
    m.count(Count::InboundRefused("expired"));
    m.count(Count::JwksFetch { ok: false });
    m.count(Count::Introspection("inactive"));
    m.count(Count::PolicyDenial("header_mismatch"));
    m.connection(true, true);
    m.connection(true, true);
    m.connection(true, false);
    m.connection(false, true);
    let s = m.snapshot(&[]);
    let value = |name: &str, key: &str, word: &str| {
        let f = family(&s, name);
        f.series.iter().find(|x| label(x, key) == Some(word)).map(count).unwrap()
    };
    assert_eq!(value("thv_inbound_auth", "reason", "ok"), 1);
    assert_eq!(value("thv_inbound_auth", "reason", "expired"), 2);
    assert_eq!(value("thv_inbound_auth", "reason", "scope"), 0, "zeros are exported");
    assert_eq!(family(&s, "thv_inbound_auth").series.len(), 9);
    assert_eq!(value("thv_inbound_jwks_fetches", "result", "error"), 1);
    assert_eq!(value("thv_inbound_introspections", "result", "inactive"), 1);
    assert_eq!(value("thv_policy_denials", "reason", "header_mismatch"), 1);
    let active = &family(&s, "toolhive_mcp_active_connections").series;
    let levels: Vec<_> = active.iter().map(|a| (label(a, "connection_type"), a.point.clone())).collect();
    assert_eq!(levels, [(Some(""), Point::Level(1)), (Some("sse"), Point::Level(1))]);
    assert_eq!(family(&s, "thv_sse_streams_open").series[0].point, Point::Level(1));

    assert!(family(&s, "thv_outbound_token_expiry").series.is_empty());
    m.set_token_expiry(Some(42.5));
    let Point::Gauge(left) = family(&m.snapshot(&[]), "thv_outbound_token_expiry").series[0].point else {
        panic!("a gauge")
    };
    assert!((41.5..=42.5).contains(&left), "read when scraped: {left}");
    m.set_token_expiry(None);
    assert!(family(&m.snapshot(&[]), "thv_outbound_token_expiry").series.is_empty());

    let s = m.snapshot(&exporter_families(3, 1, 0));
    assert_eq!(s.families.last().unwrap().name, "thv_telemetry_export_failures");
    assert_eq!(count(&family(&s, "thv_telemetry_spans_dropped").series[0]), 3);
    assert!(s.time_unix_nanos >= s.start_unix_nanos && s.start_unix_nanos > 0);
}

/// Every family populated, rendered: the text `promtool check metrics` was run on by hand.
/// `THV_WRITE_METRICS=path cargo test --lib full_registry_renders` writes it out.
#[test]
fn full_registry_renders() {
    let m = Metrics::new("fetch \"quoted\"", "streamable-http");
    m.request(&RequestFacts { resource_id: Some("echo"), ..facts(Some("tools/call"), 200, 3) });
    m.request(&RequestFacts { resource_id: Some("greet"), ..facts(Some("prompts/get"), 503, 30) });
    m.request(&facts(Some("weird/thing"), 400, 1));
    m.request(&RequestFacts { http_method: "GET", ..facts(Some("sse_connection"), 200, 1) });
    let names: Vec<String> = (0..CARDINALITY_LIMIT + 1).map(|i| format!("t{i}")).collect();
    for name in &names {
        m.tool_calls.shared([name, "success"]).add(1);
    }
    m.count(Count::InboundAccepted);
    m.count(Count::IntrospectionCacheHit);
    m.count(Count::OutboundLogin { ok: true });
    m.count(Count::OutboundRefresh { ok: false });
    m.count(Count::UpstreamConnectFailure);
    m.count(Count::UpstreamRetry);
    m.connection(true, true);
    m.set_token_expiry(Some(1800.0));
    let text = crate::telemetry::prometheus::render(&m.snapshot(&exporter_families(1, 2, 3)));
    for name in [
        "toolhive_mcp_requests_total{",
        "toolhive_mcp_request_duration_seconds_bucket{",
        "toolhive_mcp_tool_calls_total{server=",
        "toolhive_mcp_tool_calls_total{otel_metric_overflow=\"true\"} 2",
        "toolhive_mcp_active_connections{",
        "mcp_server_operation_duration_seconds_count{",
        "gen_ai_tool_name=\"echo\"",
        "error_type=\"503\"",
        "thv_outbound_token_expiry_seconds 1799.",
        "thv_telemetry_export_failures_total{signal=\"metrics\"} 3",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    if let Some(path) = std::env::var_os("THV_WRITE_METRICS") {
        std::fs::write(path, &text).unwrap();
    }
}
