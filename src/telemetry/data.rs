//! The telemetry's own data, as the exporters read it: finished spans ([`Span`]) and a
//! point-in-time copy of every metric ([`Family`]). The request path makes these; the
//! Prometheus exposition ([`super::prometheus`]) and the OTLP encoder ([`super::otlp`])
//! only read them, so neither knows how the other renders.

use std::borrow::Cow;

/// An attribute value (OpenTelemetry `AnyValue`, the kinds the proxy uses).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

/// One attribute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyValue {
    pub(crate) key: Cow<'static, str>,
    pub(crate) value: Value,
}

impl KeyValue {
    pub(crate) fn str(key: &'static str, value: impl Into<Cow<'static, str>>) -> KeyValue {
        KeyValue { key: Cow::Borrowed(key), value: Value::Str(value.into()) }
    }

    pub(crate) fn int(key: &'static str, value: i64) -> KeyValue {
        KeyValue { key: Cow::Borrowed(key), value: Value::Int(value) }
    }
}

/// The attributes of everything the process exports (`service.name`, `--otel-custom-attributes`,
/// `OTEL_RESOURCE_ATTRIBUTES`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Resource {
    pub(crate) attributes: Vec<KeyValue>,
}

/// OpenTelemetry span kinds the proxy makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    /// The proxy answering its client.
    Server,
    /// The proxy's call to the target.
    Client,
}

/// A span's status (OpenTelemetry HTTP semantic conventions: a 5xx is an error, a 4xx is
/// the client's and leaves the server span unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    Unset,
    Ok,
    Error(String),
}

/// A finished span.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_span_id: Option<[u8; 8]>,
    /// W3C `tracestate`, as received.
    pub(crate) trace_state: Option<String>,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) start_unix_nanos: u64,
    pub(crate) end_unix_nanos: u64,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) status: Status,
}

/// What kind of instrument a metric family is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// A monotonic sum (Prometheus `counter`, name ending `_total`).
    Counter,
    /// A sum that goes up and down (OpenTelemetry `UpDownCounter`; Prometheus `gauge`).
    UpDown,
    /// A value read when asked (Prometheus `gauge`).
    Gauge,
    /// A histogram with these upper bounds (the last bucket is `+Inf`).
    Histogram(&'static [f64]),
}

/// One metric and all its series, as read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// The OpenTelemetry instrument name (`toolhive_mcp_requests`,
    /// `mcp.server.operation.duration`); Prometheus names derive from it.
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    /// UCUM unit: `s`, `1`, `{request}`.
    pub(crate) unit: &'static str,
    pub(crate) kind: Kind,
    pub(crate) series: Vec<Series>,
}

/// One label set of a family, and its value.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) point: Point,
}

/// A series' value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Point {
    /// A counter's total.
    Count(u64),
    /// An up-down counter's level.
    Level(i64),
    /// A gauge's reading.
    Gauge(f64),
    /// A histogram: `buckets[i]` counts observations in bucket `i` alone (not cumulative),
    /// one more bucket than the family's bounds (`+Inf`).
    Histogram { count: u64, sum: f64, buckets: Vec<u64> },
}

/// Every metric at one moment, with the time the sums started (the process start).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) start_unix_nanos: u64,
    pub(crate) time_unix_nanos: u64,
    pub(crate) families: Vec<Family>,
}
