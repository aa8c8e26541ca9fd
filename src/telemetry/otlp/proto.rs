//! The OTLP protobuf messages the exporter sends (their encoders from the telemetry's own
//! data are [`super::encode`]).
//!
//! The messages are written by hand with `prost`'s derive: only the fields the proxy sets,
//! with the field numbers and wire types of opentelemetry-proto v1
//! (`collector/{trace,metrics}/v1/*_service.proto`, `trace/v1/trace.proto`,
//! `metrics/v1/metrics.proto`, `common/v1/common.proto`, `resource/v1/resource.proto`).
//! Leaving fields out is safe: proto3 readers treat an absent field as its default, and the
//! field numbers are the wire contract (OTLP spec, "Protocol Details": opentelemetry.io/docs/specs/otlp/).
//! Proto enums are `int32` varints on the wire, so enum fields are plain `i32` here with the
//! values as constants, instead of derived enumeration types nobody else would use.

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

// ---- collector/trace/v1/trace_service.proto, trace/v1/trace.proto ----
// Test-only: the exporter writes spans straight to the wire (`super::traces`); the tests
// hold it to these messages and decode what it sent with them.

#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) resource_spans: Vec<ResourceSpans>,
}

#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub(crate) resource: Option<ProtoResource>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub(crate) schema_url: String,
}

#[cfg(test)]
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub(crate) scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) spans: Vec<ProtoSpan>,
}

#[cfg(test)]
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

#[cfg(test)]
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
