//! The Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>), of a
//! [`Snapshot`], named the way OpenTelemetry's Prometheus exporter names the same
//! instruments (<https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/>),
//! so that ToolHive's dashboards find `toolhive_mcp_requests_total` and
//! `mcp_server_operation_duration_seconds_bucket` where they expect them:
//! - names and label names: every character outside `[a-zA-Z0-9_:]` (label names:
//!   `[a-zA-Z0-9_]`) becomes `_`, so `mcp.method.name` is `mcp_method_name`;
//! - the unit becomes a suffix (`s` → `_seconds`; annotations such as `{request}` none);
//! - counters end in `_total`; histograms are `_bucket` (cumulative, with `le="+Inf"`),
//!   `_sum` and `_count`; up-down counters and gauges are `gauge`s.
//!
//! Every family has `# HELP` and `# TYPE` (promtool's lint wants both); families without
//! series are left out.

use std::fmt::Write as _;

use crate::telemetry::data::{Family, Kind, Point, Snapshot};

/// The exposition of `snapshot`.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    for family in &snapshot.families {
        if !family.series.is_empty() {
            render_family(&mut out, family);
        }
    }
    out
}

fn render_family(out: &mut String, family: &Family) {
    let mut name = String::with_capacity(family.name.len() + 16);
    push_name(&mut name, family.name, true);
    let suffix = unit_suffix(family.unit, family.kind);
    if !suffix.is_empty() && !name.ends_with(suffix) {
        name.push_str(suffix);
    }
    let kind = match family.kind {
        Kind::Counter => {
            if !name.ends_with("_total") {
                name.push_str("_total");
            }
            "counter"
        }
        Kind::UpDown | Kind::Gauge => "gauge",
        Kind::Histogram(_) => "histogram",
    };
    out.push_str("# HELP ");
    out.push_str(&name);
    out.push(' ');
    push_help(out, family.help);
    out.push_str("\n# TYPE ");
    out.push_str(&name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');

    for series in &family.series {
        let labels = &series.labels;
        match (&series.point, family.kind) {
            (Point::Histogram { count, sum, buckets }, Kind::Histogram(bounds)) => {
                let mut cumulative = 0u64;
                for (i, n) in buckets.iter().enumerate() {
                    cumulative += n;
                    let le = match bounds.get(i) {
                        Some(bound) => float(*bound),
                        // One bucket more than bounds: the last is +Inf.
                        None => "+Inf".to_owned(),
                    };
                    sample(out, &name, "_bucket", labels, Some(&le), &cumulative.to_string());
                }
                if buckets.len() <= bounds.len() {
                    // A malformed point (too few buckets) still gets its +Inf bucket, which
                    // the format requires and which must equal the count.
                    sample(out, &name, "_bucket", labels, Some("+Inf"), &count.to_string());
                }
                sample(out, &name, "_sum", labels, None, &float(*sum));
                sample(out, &name, "_count", labels, None, &count.to_string());
            }
            (Point::Count(n), _) => sample(out, &name, "", labels, None, &n.to_string()),
            (Point::Level(n), _) => sample(out, &name, "", labels, None, &n.to_string()),
            (Point::Gauge(v), _) => sample(out, &name, "", labels, None, &float(*v)),
            // A histogram point in a family of another kind: nothing sensible to print.
            (Point::Histogram { .. }, _) => {}
        }
    }
}

/// One sample line: `name{labels,le="…"} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let le = le.map(|le| ("le", le));
        for (key, value) in labels.iter().map(|(k, v)| (*k, v.as_str())).chain(le) {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            push_name(out, key, false);
            out.push_str("=\"");
            push_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// The suffix OpenTelemetry's Prometheus exporter adds for a UCUM unit; annotations in
/// braces add none.
fn unit_suffix(unit: &str, kind: Kind) -> &'static str {
    match unit {
        "s" => "_seconds",
        "ms" => "_milliseconds",
        "By" => "_bytes",
        "1" if matches!(kind, Kind::Gauge) => "_ratio",
        _ => "",
    }
}

/// A metric name (`:` allowed) or a label name: invalid characters become `_`, and a
/// leading digit gets a `_` before it.
fn push_name(out: &mut String, name: &str, metric: bool) {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        let valid = c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
        out.push(if valid { c } else { '_' });
    }
}

/// HELP text escaping: backslash and line feed.
fn push_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Label value escaping: backslash, double quote and line feed.
fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as Prometheus reads it: shortest round-trip digits, and `+Inf`, `-Inf`, `NaN`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        let mut s = String::new();
        let _ = write!(s, "{v}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::data::Series;

    fn snapshot(families: Vec<Family>) -> Snapshot {
        Snapshot { start_unix_nanos: 0, time_unix_nanos: 0, families }
    }

    #[test]
    fn renders_a_small_registry_exactly() {
        static BOUNDS: [f64; 2] = [0.5, 1.0];
        let families = vec![
            Family {
                name: "toolhive_mcp_requests",
                help: "Total number of MCP requests",
                unit: "{request}",
                kind: Kind::Counter,
                series: vec![Series {
                    labels: vec![("mcp_method", "tools/call".into()), ("status", "success".into())],
                    point: Point::Count(3),
                }],
            },
            Family {
                name: "mcp.server.operation.duration",
                help: "Duration",
                unit: "s",
                kind: Kind::Histogram(&BOUNDS),
                series: vec![Series {
                    labels: vec![("mcp.method.name", "ping".into())],
                    point: Point::Histogram { count: 4, sum: 2.75, buckets: vec![1, 2, 1] },
                }],
            },
            Family { name: "empty", help: "Never shown", unit: "", kind: Kind::Counter, series: vec![] },
            Family {
                name: "thv_outbound_token_expiry",
                help: "Seconds left",
                unit: "s",
                kind: Kind::Gauge,
                series: vec![Series { labels: vec![], point: Point::Gauge(12.5) }],
            },
            Family {
                name: "thv_sse_streams_open",
                help: "Open",
                unit: "{stream}",
                kind: Kind::UpDown,
                series: vec![Series { labels: vec![], point: Point::Level(-1) }],
            },
        ];
        let expected = "\
# HELP toolhive_mcp_requests_total Total number of MCP requests
# TYPE toolhive_mcp_requests_total counter
toolhive_mcp_requests_total{mcp_method=\"tools/call\",status=\"success\"} 3
# HELP mcp_server_operation_duration_seconds Duration
# TYPE mcp_server_operation_duration_seconds histogram
mcp_server_operation_duration_seconds_bucket{mcp_method_name=\"ping\",le=\"0.5\"} 1
mcp_server_operation_duration_seconds_bucket{mcp_method_name=\"ping\",le=\"1\"} 3
mcp_server_operation_duration_seconds_bucket{mcp_method_name=\"ping\",le=\"+Inf\"} 4
mcp_server_operation_duration_seconds_sum{mcp_method_name=\"ping\"} 2.75
mcp_server_operation_duration_seconds_count{mcp_method_name=\"ping\"} 4
# HELP thv_outbound_token_expiry_seconds Seconds left
# TYPE thv_outbound_token_expiry_seconds gauge
thv_outbound_token_expiry_seconds 12.5
# HELP thv_sse_streams_open Open
# TYPE thv_sse_streams_open gauge
thv_sse_streams_open -1
";
        assert_eq!(render(&snapshot(families)), expected);
    }

    #[test]
    fn escapes_label_values_and_help() {
        let families = vec![Family {
            name: "x",
            help: "a \\ b\nc \"q\"",
            unit: "",
            kind: Kind::Gauge,
            series: vec![Series { labels: vec![("v", "a\\b\"c\nd".into())], point: Point::Gauge(f64::INFINITY) }],
        }];
        let expected = "# HELP x a \\\\ b\\nc \"q\"\n# TYPE x gauge\nx{v=\"a\\\\b\\\"c\\nd\"} +Inf\n";
        assert_eq!(render(&snapshot(families)), expected);
    }

    #[test]
    fn sanitises_names_and_formats_floats() {
        let mut out = String::new();
        push_name(&mut out, "9a.b-c:d", true);
        out.push(' ');
        push_name(&mut out, "otel.metric.overflow", false);
        assert_eq!(out, "_9a_b_c:d otel_metric_overflow");
        assert_eq!(
            [float(0.005), float(10.0), float(f64::NAN), float(f64::NEG_INFINITY)],
            ["0.005", "10", "NaN", "-Inf"]
        );
    }
}
