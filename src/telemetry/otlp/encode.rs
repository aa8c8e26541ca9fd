//! The bodies the exporter POSTs: the telemetry's own data ([`crate::telemetry::data`])
//! encoded as the OTLP protobuf messages of [`super::proto`] (OTLP/HTTP, binary protobuf;
//! opentelemetry.io/docs/specs/otlp/#otlphttp).

use prost::Message as _;

use super::proto::*;
use crate::telemetry::data::{self, Family, Kind, Point, Resource, Snapshot};

/// The instrumentation scope of everything the proxy emits.
const SCOPE_NAME: &str = "thv";
pub(super) const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

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

pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope { name: SCOPE_NAME.to_owned(), version: SCOPE_VERSION.to_owned() }
}

pub(super) fn resource_of(resource: &Resource) -> ProtoResource {
    ProtoResource { attributes: resource.attributes.iter().map(key_value_of).collect() }
}

pub(super) fn key_value_of(kv: &data::KeyValue) -> ProtoKeyValue {
    let value = match &kv.value {
        data::Value::Str(s) => AnyValueKind::String(s.clone().into_owned()),
        data::Value::Int(i) => AnyValueKind::Int(*i),
        data::Value::Bool(b) => AnyValueKind::Bool(*b),
    };
    ProtoKeyValue { key: kv.key.clone().into_owned(), value: Some(AnyValue { value: Some(value) }) }
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
mod tests {
    use super::*;
    use crate::telemetry::data::{KeyValue, Series};

    fn resource() -> Resource {
        Resource { attributes: vec![KeyValue::str("service.name", "thv-proxy")] }
    }

    fn str_value(s: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(AnyValueKind::String(s.to_owned())) })
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
