//! The bodies the exporter POSTs: the telemetry's own data ([`crate::telemetry::data`])
//! encoded as the OTLP protobuf messages of [`super::proto`] (OTLP/HTTP, binary protobuf;
//! opentelemetry.io/docs/specs/otlp/#otlphttp).

use prost::Message as _;

use super::proto::*;
use crate::telemetry::data::{self, Family, Kind, Point, Resource, Snapshot, Span};

/// The instrumentation scope of everything the proxy emits.
const SCOPE_NAME: &str = "thv";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

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
