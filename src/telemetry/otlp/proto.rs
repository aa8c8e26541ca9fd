//! The OTLP protobuf messages the exporter sends, and the encoders from the telemetry's own
//! data ([`crate::telemetry::data`]) to request bodies.
//!
//! The messages are written by hand with `prost`'s derive: only the fields the proxy sets,
//! with the field numbers and wire types of opentelemetry-proto v1
//! (`collector/{trace,metrics}/v1/*_service.proto`, `trace/v1/trace.proto`,
//! `metrics/v1/metrics.proto`, `common/v1/common.proto`, `resource/v1/resource.proto`).
//! Leaving fields out is safe: proto3 readers treat an absent field as its default, and the
//! field numbers are the wire contract (OTLP spec, "Protocol Details": opentelemetry.io/docs/specs/otlp/).
//! Proto enums are `int32` varints on the wire, so enum fields are plain `i32` here with the
//! values as constants, instead of derived enumeration types nobody else would use.

use prost::Message as _;

use crate::telemetry::data::{self, Family, Kind, Point, Resource, Snapshot, Span};

/// The instrumentation scope of everything the proxy emits.
const SCOPE_NAME: &str = "thv";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

// `Span.SpanKind` (trace.proto).
pub(crate) const SPAN_KIND_SERVER: i32 = 2;
pub(crate) const SPAN_KIND_CLIENT: i32 = 3;
// `Status.StatusCode` (trace.proto).
pub(crate) const STATUS_CODE_OK: i32 = 1;
pub(crate) const STATUS_CODE_ERROR: i32 = 2;
// `AggregationTemporality` (metrics.proto).
pub(crate) const AGGREGATION_TEMPORALITY_CUMULATIVE: i32 = 2;
// `SpanFlags` (trace.proto): the low byte is the W3C trace-flags byte.
pub(crate) const SPAN_FLAGS_SAMPLED: u32 = 0x01;
pub(crate) const SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
pub(crate) const SPAN_FLAGS_CONTEXT_IS_REMOTE: u32 = 0x200;

// ---- collector/trace/v1/trace_service.proto ----

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) resource_spans: Vec<ResourceSpans>,
}

// ---- trace/v1/trace.proto ----

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub(crate) resource: Option<ProtoResource>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub(crate) schema_url: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub(crate) scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) spans: Vec<ProtoSpan>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(crate) trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) parent_span_id: Vec<u8>,
    #[prost(fixed32, tag = "16")]
    pub(crate) flags: u32,
    #[prost(string, tag = "5")]
    pub(crate) name: String,
    /// `SpanKind`.
    #[prost(int32, tag = "6")]
    pub(crate) kind: i32,
    #[prost(fixed64, tag = "7")]
    pub(crate) start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub(crate) end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub(crate) attributes: Vec<ProtoKeyValue>,
    #[prost(message, optional, tag = "15")]
    pub(crate) status: Option<ProtoStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoStatus {
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// `StatusCode`.
    #[prost(int32, tag = "3")]
    pub(crate) code: i32,
}

// ---- common/v1/common.proto, resource/v1/resource.proto ----

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoKeyValue {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AnyValue {
    #[prost(oneof = "AnyValueKind", tags = "1, 2, 3, 4")]
    pub(crate) value: Option<AnyValueKind>,
}

/// `AnyValue.value`, the scalar kinds only (arrays, maps and bytes are never sent).
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum AnyValueKind {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, tag = "2")]
    pub(crate) version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoResource {
    #[prost(message, repeated, tag = "1")]
    pub(crate) attributes: Vec<ProtoKeyValue>,
}

// ---- collector/metrics/v1/metrics_service.proto, metrics/v1/metrics.proto ----

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportMetricsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub(crate) resource: Option<ProtoResource>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ScopeMetrics {
    #[prost(message, optional, tag = "1")]
    pub(crate) scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) metrics: Vec<Metric>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Metric {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(string, tag = "2")]
    pub(crate) description: String,
    #[prost(string, tag = "3")]
    pub(crate) unit: String,
    #[prost(oneof = "MetricData", tags = "5, 7, 9")]
    pub(crate) data: Option<MetricData>,
}

/// `Metric.data`, the aggregations the proxy has.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum MetricData {
    #[prost(message, tag = "5")]
    Gauge(Gauge),
    #[prost(message, tag = "7")]
    Sum(Sum),
    #[prost(message, tag = "9")]
    Histogram(Histogram),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Gauge {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<NumberDataPoint>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Sum {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<NumberDataPoint>,
    /// `AggregationTemporality`.
    #[prost(int32, tag = "2")]
    pub(crate) aggregation_temporality: i32,
    #[prost(bool, tag = "3")]
    pub(crate) is_monotonic: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Histogram {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<HistogramDataPoint>,
    /// `AggregationTemporality`.
    #[prost(int32, tag = "2")]
    pub(crate) aggregation_temporality: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NumberDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub(crate) attributes: Vec<ProtoKeyValue>,
    #[prost(fixed64, tag = "2")]
    pub(crate) start_time_unix_nano: u64,
    #[prost(fixed64, tag = "3")]
    pub(crate) time_unix_nano: u64,
    #[prost(oneof = "NumberValue", tags = "4, 6")]
    pub(crate) value: Option<NumberValue>,
}

/// `NumberDataPoint.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum NumberValue {
    #[prost(double, tag = "4")]
    AsDouble(f64),
    #[prost(sfixed64, tag = "6")]
    AsInt(i64),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistogramDataPoint {
    #[prost(message, repeated, tag = "9")]
    pub(crate) attributes: Vec<ProtoKeyValue>,
    #[prost(fixed64, tag = "2")]
    pub(crate) start_time_unix_nano: u64,
    #[prost(fixed64, tag = "3")]
    pub(crate) time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    pub(crate) count: u64,
    #[prost(double, optional, tag = "5")]
    pub(crate) sum: Option<f64>,
    /// Per-bucket counts (not cumulative), one more than `explicit_bounds`.
    #[prost(fixed64, repeated, tag = "6")]
    pub(crate) bucket_counts: Vec<u64>,
    #[prost(double, repeated, tag = "7")]
    pub(crate) explicit_bounds: Vec<f64>,
}

// ---- encoders ----

/// The body of a `POST /v1/traces`: one resource, one scope, these spans.
pub(crate) fn encode_traces(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource_of(resource)),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans: spans.iter().map(span_of).collect() }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// The body of a `POST /v1/metrics`: every family of the snapshot, cumulative since
/// `start_unix_nanos` (the process start), read at `time_unix_nanos`.
pub(crate) fn encode_metrics(resource: &Resource, snapshot: &Snapshot) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource_of(resource)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: snapshot.families.iter().filter_map(|f| metric_of(f, snapshot)).collect(),
            }],
        }],
    }
    .encode_to_vec()
}

fn scope() -> InstrumentationScope {
    InstrumentationScope { name: SCOPE_NAME.to_owned(), version: SCOPE_VERSION.to_owned() }
}

fn resource_of(resource: &Resource) -> ProtoResource {
    ProtoResource { attributes: resource.attributes.iter().map(key_value_of).collect() }
}

fn key_value_of(kv: &data::KeyValue) -> ProtoKeyValue {
    let value = match &kv.value {
        data::Value::Str(s) => AnyValueKind::String(s.clone().into_owned()),
        data::Value::Int(i) => AnyValueKind::Int(*i),
        data::Value::Bool(b) => AnyValueKind::Bool(*b),
    };
    ProtoKeyValue { key: kv.key.clone().into_owned(), value: Some(AnyValue { value: Some(value) }) }
}

fn span_of(span: &Span) -> ProtoSpan {
    // Only sampled spans are ever finished and exported. Whether the parent is remote is
    // known from the kind: a server span is the first span of the request in this process,
    // so its parent (if any) came in a `traceparent` header; a client span's parent is the
    // proxy's own server span.
    let remote_parent = span.kind == data::SpanKind::Server && span.parent_span_id.is_some();
    let flags = SPAN_FLAGS_SAMPLED
        | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE
        | if remote_parent { SPAN_FLAGS_CONTEXT_IS_REMOTE } else { 0 };
    let status = match &span.status {
        // An absent status means UNSET (trace.proto `Span.status`): no bytes spent on it.
        data::Status::Unset => None,
        data::Status::Ok => Some(ProtoStatus { message: String::new(), code: STATUS_CODE_OK }),
        data::Status::Error(message) => Some(ProtoStatus { message: message.clone(), code: STATUS_CODE_ERROR }),
    };
    ProtoSpan {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        trace_state: span.trace_state.clone().unwrap_or_default(),
        // A root span's parent is empty bytes, not eight zeros (trace.proto `parent_span_id`).
        parent_span_id: span.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags,
        name: span.name.clone(),
        kind: match span.kind {
            data::SpanKind::Server => SPAN_KIND_SERVER,
            data::SpanKind::Client => SPAN_KIND_CLIENT,
        },
        start_time_unix_nano: span.start_unix_nanos,
        end_time_unix_nano: span.end_unix_nanos,
        attributes: span.attributes.iter().map(key_value_of).collect(),
        status,
    }
}

fn labels_of(labels: &[(&'static str, String)]) -> Vec<ProtoKeyValue> {
    labels
        .iter()
        .map(|(k, v)| ProtoKeyValue {
            key: (*k).to_owned(),
            value: Some(AnyValue { value: Some(AnyValueKind::String(v.clone())) }),
        })
        .collect()
}

/// A family as an OTLP metric, or `None` when it has no series to send (a metric without
/// data points says nothing and some backends reject it).
fn metric_of(family: &Family, snapshot: &Snapshot) -> Option<Metric> {
    let (start, time) = (snapshot.start_unix_nanos, snapshot.time_unix_nanos);
    // A series whose point does not fit the family's kind is a bug on the metrics side;
    // it is left out rather than sent as something a backend would misread.
    let numbers = |start: u64| -> Vec<NumberDataPoint> {
        family
            .series
            .iter()
            .filter_map(|s| {
                let value = match s.point {
                    // OTLP sums are signed; a counter past i64::MAX saturates.
                    Point::Count(n) => NumberValue::AsInt(i64::try_from(n).unwrap_or(i64::MAX)),
                    Point::Level(n) => NumberValue::AsInt(n),
                    Point::Gauge(f) => NumberValue::AsDouble(f),
                    Point::Histogram { .. } => return None,
                };
                Some(NumberDataPoint {
                    attributes: labels_of(&s.labels),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    value: Some(value),
                })
            })
            .collect()
    };
    let data = match family.kind {
        Kind::Counter | Kind::UpDown => {
            let data_points = numbers(start);
            if data_points.is_empty() {
                return None;
            }
            MetricData::Sum(Sum {
                data_points,
                aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
                is_monotonic: family.kind == Kind::Counter,
            })
        }
        Kind::Gauge => {
            // A gauge has no start time (metrics.proto `Gauge`: start_time is optional).
            let data_points = numbers(0);
            if data_points.is_empty() {
                return None;
            }
            MetricData::Gauge(Gauge { data_points })
        }
        Kind::Histogram(bounds) => {
            let data_points: Vec<HistogramDataPoint> = family
                .series
                .iter()
                .filter_map(|s| match &s.point {
                    Point::Histogram { count, sum, buckets } => Some(HistogramDataPoint {
                        attributes: labels_of(&s.labels),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: *count,
                        sum: Some(*sum),
                        bucket_counts: buckets.clone(),
                        explicit_bounds: bounds.to_vec(),
                    }),
                    _ => None,
                })
                .collect();
            if data_points.is_empty() {
                return None;
            }
            MetricData::Histogram(Histogram {
                data_points,
                aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE,
            })
        }
    };
    Some(Metric {
        name: family.name.to_owned(),
        description: family.help.to_owned(),
        unit: family.unit.to_owned(),
        data: Some(data),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::telemetry::data::{KeyValue, Series, SpanKind, Status, Value};

    pub(crate) fn sample_span() -> Span {
        Span {
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            parent_span_id: Some([0x33; 8]),
            trace_state: Some("vendor=x".to_owned()),
            name: "POST /mcp".to_owned(),
            kind: SpanKind::Server,
            start_unix_nanos: 1_700_000_000_000_000_001,
            end_unix_nanos: 1_700_000_000_500_000_000,
            attributes: vec![
                KeyValue::str("mcp.method.name", "tools/call"),
                KeyValue::int("http.response.status_code", 200),
                KeyValue { key: Cow::Borrowed("retry"), value: Value::Bool(true) },
            ],
            status: Status::Error("upstream 502".to_owned()),
        }
    }

    fn resource() -> Resource {
        Resource { attributes: vec![KeyValue::str("service.name", "thv-proxy")] }
    }

    fn str_value(s: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(AnyValueKind::String(s.to_owned())) })
    }

    #[test]
    fn span_round_trips_through_the_wire_format() {
        let bytes = encode_traces(&resource(), &[sample_span()]);
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let res = rs.resource.as_ref().expect("resource");
        assert_eq!(res.attributes, vec![ProtoKeyValue { key: "service.name".into(), value: str_value("thv-proxy") }]);
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope, Some(InstrumentationScope { name: "thv".into(), version: SCOPE_VERSION.into() }));
        let s = &ss.spans[0];
        assert_eq!(s.trace_id, vec![0x11; 16]);
        assert_eq!(s.span_id, vec![0x22; 8]);
        assert_eq!(s.parent_span_id, vec![0x33; 8]);
        assert_eq!(s.trace_state, "vendor=x");
        assert_eq!(s.name, "POST /mcp");
        assert_eq!(s.kind, SPAN_KIND_SERVER);
        assert_eq!(s.flags, SPAN_FLAGS_SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | SPAN_FLAGS_CONTEXT_IS_REMOTE);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(s.end_time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(s.status, Some(ProtoStatus { message: "upstream 502".into(), code: STATUS_CODE_ERROR }));
        let kinds: Vec<_> = s.attributes.iter().map(|kv| kv.value.clone().and_then(|v| v.value)).collect();
        assert_eq!(
            kinds,
            vec![
                Some(AnyValueKind::String("tools/call".into())),
                Some(AnyValueKind::Int(200)),
                Some(AnyValueKind::Bool(true)),
            ]
        );
        assert_eq!(s.attributes.len(), 3, "the attribute list is exactly the span's");
    }

    #[test]
    fn root_client_and_unset_spans() {
        let mut span = sample_span();
        span.parent_span_id = None;
        span.trace_state = None;
        span.kind = SpanKind::Client;
        span.status = Status::Unset;
        let bytes = encode_traces(&Resource::default(), &[span.clone()]);
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.kind, SPAN_KIND_CLIENT);
        assert_eq!(s.flags, SPAN_FLAGS_SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE);
        assert_eq!(s.status, None);
        span.status = Status::Ok;
        let s = span_of(&span);
        assert_eq!(s.status, Some(ProtoStatus { message: String::new(), code: STATUS_CODE_OK }));
    }

    /// The field numbers and wire types are the contract with every collector: checked on
    /// the raw bytes, not only through our own decoder.
    #[test]
    fn span_bytes_use_the_official_field_numbers() {
        let mut span = sample_span();
        span.attributes.clear();
        span.trace_state = None;
        span.status = Status::Unset;
        let bytes = span_of(&span).encode_to_vec();
        // trace_id: field 1, length-delimited (0x0a), 16 bytes.
        assert_eq!(&bytes[..2], &[0x0a, 16]);
        assert_eq!(&bytes[2..18], &[0x11; 16]);
        // span_id: field 2 (0x12), 8 bytes.
        assert_eq!(&bytes[18..20], &[0x12, 8]);
        // parent_span_id: field 4 (0x22).
        assert_eq!(&bytes[28..30], &[0x22, 8]);
        let find = |tag: &[u8]| bytes.windows(tag.len()).position(|w| w == tag).expect("tag present");
        // start_time_unix_nano: field 7, fixed64 (0x39), little-endian.
        let at = find(&[0x39]);
        assert_eq!(&bytes[at + 1..at + 9], &1_700_000_000_000_000_001u64.to_le_bytes());
        // end_time_unix_nano: field 8, fixed64 (0x41).
        let at = find(&[0x41]);
        assert_eq!(&bytes[at + 1..at + 9], &1_700_000_000_500_000_000u64.to_le_bytes());
        // kind: field 6, varint (0x30), SERVER = 2.
        find(&[0x30, 2]);
        // flags: field 16, fixed32: tag (16 << 3 | 5) = 133 = varint 0x85 0x01.
        let at = find(&[0x85, 0x01]);
        assert_eq!(&bytes[at + 2..at + 6], &0x301u32.to_le_bytes());
        // The request wraps it in resource_spans (field 1 of ExportTraceServiceRequest).
        assert_eq!(encode_traces(&Resource::default(), &[span])[0], 0x0a);
    }

    const BOUNDS: &[f64] = &[0.1, 1.0];

    fn family(name: &'static str, help: &'static str, kind: Kind, labeled: bool, point: Point) -> Family {
        let labels = if labeled { vec![("mcp_method", "tools/call".to_owned())] } else { vec![] };
        Family { name, help, unit: "{request}", kind, series: vec![Series { labels, point }] }
    }

    fn snapshot() -> Snapshot {
        let histogram = Point::Histogram { count: 4, sum: 2.25, buckets: vec![1, 2, 1] };
        let mut empty = family("empty", "", Kind::Counter, false, Point::Count(0));
        empty.series.clear();
        Snapshot {
            start_unix_nanos: 1_000,
            time_unix_nanos: 2_000,
            families: vec![
                family("toolhive_mcp_requests", "Requests", Kind::Counter, true, Point::Count(7)),
                family("toolhive_mcp_active_connections", "Open", Kind::UpDown, false, Point::Level(-1)),
                family("process_uptime", "Uptime", Kind::Gauge, false, Point::Gauge(1.5)),
                family("mcp.server.operation.duration", "Duration", Kind::Histogram(BOUNDS), true, histogram),
                empty,
            ],
        }
    }

    #[test]
    fn snapshot_round_trips_through_the_wire_format() {
        let bytes = encode_metrics(&resource(), &snapshot());
        assert_eq!(bytes[0], 0x0a, "resource_metrics is field 1");
        let req = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.resource.as_ref().map(|r| r.attributes.len()), Some(1));
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.scope.as_ref().map(|s| s.name.as_str()), Some("thv"));
        let m = &sm.metrics;
        assert_eq!(m.len(), 4, "the family without series is left out");

        assert_eq!(
            (m[0].name.as_str(), m[0].description.as_str(), m[0].unit.as_str()),
            ("toolhive_mcp_requests", "Requests", "{request}")
        );
        let Some(MetricData::Sum(sum)) = &m[0].data else { panic!("counter is a sum: {:?}", m[0].data) };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, AGGREGATION_TEMPORALITY_CUMULATIVE);
        let p = &sum.data_points[0];
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1_000, 2_000));
        assert_eq!(p.value, Some(NumberValue::AsInt(7)));
        assert_eq!(p.attributes, vec![ProtoKeyValue { key: "mcp_method".into(), value: str_value("tools/call") }]);

        let Some(MetricData::Sum(sum)) = &m[1].data else { panic!("up-down is a sum") };
        assert!(!sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, AGGREGATION_TEMPORALITY_CUMULATIVE);
        assert_eq!(sum.data_points[0].value, Some(NumberValue::AsInt(-1)));

        let Some(MetricData::Gauge(gauge)) = &m[2].data else { panic!("gauge") };
        assert_eq!(gauge.data_points[0].value, Some(NumberValue::AsDouble(1.5)));
        assert_eq!(gauge.data_points[0].time_unix_nano, 2_000);

        let Some(MetricData::Histogram(h)) = &m[3].data else { panic!("histogram") };
        assert_eq!(h.aggregation_temporality, AGGREGATION_TEMPORALITY_CUMULATIVE);
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum), (4, Some(2.25)));
        assert_eq!(p.bucket_counts, vec![1, 2, 1]);
        assert_eq!(p.explicit_bounds, BOUNDS.to_vec());
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (1_000, 2_000));
    }

    #[test]
    fn number_points_use_sfixed64_and_double_tags() {
        let int = NumberDataPoint { value: Some(NumberValue::AsInt(-1)), ..Default::default() }.encode_to_vec();
        // as_int: field 6, wire type 1 (64-bit): 0x31, then -1 as eight 0xff bytes.
        assert_eq!(int, [&[0x31][..], &[0xff; 8]].concat());
        let dbl = NumberDataPoint { value: Some(NumberValue::AsDouble(1.5)), ..Default::default() }.encode_to_vec();
        // as_double: field 4, wire type 1: 0x21.
        assert_eq!(dbl, [&[0x21][..], &1.5f64.to_le_bytes()].concat());
        // bucket_counts: field 6, packed (0x32), two fixed64 = 16 bytes.
        let h = HistogramDataPoint { bucket_counts: vec![1, 2], ..Default::default() }.encode_to_vec();
        assert_eq!(&h[..2], &[0x32, 16]);
    }
}
