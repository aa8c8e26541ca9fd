//! The body of a `POST /v1/traces` (OTLP/HTTP, binary protobuf), written straight from the
//! telemetry's finished spans: `ExportTraceServiceRequest { resource_spans: [ResourceSpans
//! { resource, scope_spans: [ScopeSpans { scope, spans }] }] }` of opentelemetry-proto v1
//! (`collector/trace/v1/trace_service.proto`, `trace/v1/trace.proto`).
//!
//! Spans are the one body that grows with traffic, so they skip [`super::proto`]'s derived
//! messages: those would copy every string of every span into an owned message, then
//! measure each nested message again at every level of nesting. Here each span is measured
//! once and written once, with the same field numbers, wire types and field order as the
//! derived `ProtoSpan` (a test holds the two to the same bytes), and the small resource
//! and scope still go through `prost`.

use prost::Message as _;
use prost::encoding::{WireType, encoded_len_varint, key_len};

use super::encode::{resource_of, scope};
use super::proto::{
    SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE, SPAN_FLAGS_CONTEXT_IS_REMOTE, SPAN_FLAGS_SAMPLED, SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER, STATUS_CODE_ERROR, STATUS_CODE_OK,
};
use crate::telemetry::data::{KeyValue, Resource, Span, SpanKind, Status, Value};

/// The body of a `POST /v1/traces`: one resource, one scope, these spans.
pub(crate) fn encode_traces(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    let resource = resource_of(resource).encode_to_vec();
    let scope = scope().encode_to_vec();
    // Each span measured once: the length goes in front of it and into every total.
    let lens: Vec<usize> = spans.iter().map(span_len).collect();
    let spans_len: usize = lens.iter().map(|&len| delimited_len(2, len)).sum();
    // ScopeSpans { scope = 1, spans = 2 }, ResourceSpans { resource = 1, scope_spans = 2 }.
    let scope_spans = delimited_len(1, scope.len()) + spans_len;
    let resource_spans = delimited_len(1, resource.len()) + delimited_len(2, scope_spans);
    let mut out = Vec::with_capacity(delimited_len(1, resource_spans));
    // ExportTraceServiceRequest.resource_spans = 1.
    head(1, resource_spans, &mut out);
    bytes_field(1, &resource, &mut out);
    head(2, scope_spans, &mut out);
    bytes_field(1, &scope, &mut out);
    for (span, &len) in spans.iter().zip(&lens) {
        head(2, len, &mut out);
        write_span(span, &mut out);
    }
    debug_assert_eq!(out.len(), out.capacity(), "the lengths measured are the lengths written");
    out
}

/// `Span.flags`: sampled (only sampled spans are ever finished), and whether the parent is
/// remote. A server span is the first span of the request in this process, so its parent
/// (if any) came from the client; a client span's parent is the proxy's own server span.
fn flags(span: &Span) -> u32 {
    let remote_parent = span.kind == SpanKind::Server && span.parent_span_id.is_some();
    SPAN_FLAGS_SAMPLED | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | if remote_parent { SPAN_FLAGS_CONTEXT_IS_REMOTE } else { 0 }
}

fn kind(span: &Span) -> u64 {
    match span.kind {
        SpanKind::Server => SPAN_KIND_SERVER as u64,
        SpanKind::Client => SPAN_KIND_CLIENT as u64,
    }
}

/// `Status { message = 2, code = 3 }`; `None` for UNSET, which is an absent status
/// (trace.proto `Span.status`): no bytes spent on it.
fn status(span: &Span) -> Option<(&str, u64)> {
    match &span.status {
        Status::Unset => None,
        Status::Ok => Some(("", STATUS_CODE_OK as u64)),
        Status::Error(message) => Some((message, STATUS_CODE_ERROR as u64)),
    }
}

fn status_len((message, code): (&str, u64)) -> usize {
    str_len(2, message) + key_len(3) + encoded_len_varint(code)
}

// Span fields, in the order of their numbers (as prost writes them): trace_id = 1,
// span_id = 2, trace_state = 3, parent_span_id = 4, name = 5, kind = 6, start = 7 and
// end = 8 (fixed64), attributes = 9, status = 15, flags = 16 (fixed32). Empty strings and
// absent fields are left out, as proto3 encoders do.

fn span_len(span: &Span) -> usize {
    delimited_len(1, 16)
        + delimited_len(2, 8)
        + str_len(3, span.trace_state.as_deref().unwrap_or_default())
        + span.parent_span_id.map_or(0, |_| delimited_len(4, 8))
        + str_len(5, &span.name)
        + key_len(6)
        + encoded_len_varint(kind(span))
        + 2 * (key_len(7) + 8)
        + span.attributes.iter().map(|kv| delimited_len(9, key_value_len(kv))).sum::<usize>()
        + status(span).map_or(0, |s| delimited_len(15, status_len(s)))
        + key_len(16)
        + 4
}

fn write_span(span: &Span, out: &mut Vec<u8>) {
    bytes_field(1, &span.trace_id, out);
    bytes_field(2, &span.span_id, out);
    str_field(3, span.trace_state.as_deref().unwrap_or_default(), out);
    if let Some(parent) = &span.parent_span_id {
        bytes_field(4, parent, out);
    }
    str_field(5, &span.name, out);
    key(6, WireType::Varint, out);
    varint(kind(span), out);
    key(7, WireType::SixtyFourBit, out);
    out.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    key(8, WireType::SixtyFourBit, out);
    out.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
    for kv in &span.attributes {
        head(9, key_value_len(kv), out);
        write_key_value(kv, out);
    }
    if let Some(s @ (message, code)) = status(span) {
        head(15, status_len(s), out);
        str_field(2, message, out);
        key(3, WireType::Varint, out);
        varint(code, out);
    }
    key(16, WireType::ThirtyTwoBit, out);
    out.extend_from_slice(&flags(span).to_le_bytes());
}

// KeyValue { key = 1, value = 2: AnyValue { string_value = 1, bool_value = 2, int_value = 3 } }.
// The one-of member is written whatever its value (an empty string is still a string).

fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Str(s) => delimited_len(1, s.len()),
        Value::Bool(_) => key_len(2) + 1,
        Value::Int(i) => key_len(3) + encoded_len_varint(*i as u64),
    }
}

fn key_value_len(kv: &KeyValue) -> usize {
    str_len(1, &kv.key) + delimited_len(2, any_value_len(&kv.value))
}

fn write_key_value(kv: &KeyValue, out: &mut Vec<u8>) {
    str_field(1, &kv.key, out);
    head(2, any_value_len(&kv.value), out);
    match &kv.value {
        Value::Str(s) => bytes_field(1, s.as_bytes(), out),
        Value::Bool(b) => {
            key(2, WireType::Varint, out);
            varint(u64::from(*b), out);
        }
        Value::Int(i) => {
            key(3, WireType::Varint, out);
            varint(*i as u64, out);
        }
    }
}

// ---- the wire format (protobuf encoding: varints and keys) ----

/// A base-128 varint: prost's `encode_varint`, written here for a `Vec` so that it inlines
/// (it was a quarter of the export thread's work per span).
#[inline]
fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field's key: its number and wire type, as a varint.
#[inline]
fn key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    varint(u64::from(tag) << 3 | wire_type as u64, out);
}

// ---- length-delimited fields ----

/// The bytes of a length-delimited field whose contents are `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A string field, left out when empty.
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() { 0 } else { delimited_len(tag, s.len()) }
}

/// The key and length of a length-delimited field; its `len` bytes follow.
fn head(tag: u32, len: usize, out: &mut Vec<u8>) {
    key(tag, WireType::LengthDelimited, out);
    varint(len as u64, out);
}

fn bytes_field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    head(tag, bytes.len(), out);
    out.extend_from_slice(bytes);
}

fn str_field(tag: u32, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        bytes_field(tag, s.as_bytes(), out);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::telemetry::otlp::encode::{SCOPE_VERSION, key_value_of, scope};
    use crate::telemetry::otlp::proto::*;

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

    /// The spans as `prost`'s derived messages would encode them: the reference the direct
    /// writer is held to, byte for byte.
    fn reference(resource: &Resource, spans: &[Span]) -> Vec<u8> {
        let span_of = |span: &Span| ProtoSpan {
            trace_id: span.trace_id.to_vec(),
            span_id: span.span_id.to_vec(),
            trace_state: span.trace_state.clone().unwrap_or_default(),
            parent_span_id: span.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: flags(span),
            name: span.name.clone(),
            kind: kind(span) as i32,
            start_time_unix_nano: span.start_unix_nanos,
            end_time_unix_nano: span.end_unix_nanos,
            attributes: span.attributes.iter().map(key_value_of).collect(),
            status: status(span).map(|(message, code)| ProtoStatus { message: message.to_owned(), code: code as i32 }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource_of(resource)),
                scope_spans: vec![ScopeSpans { scope: Some(scope()), spans: spans.iter().map(span_of).collect() }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn varints_and_keys_are_prosts() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            varint(value, &mut ours);
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(ours, theirs, "{value}");
        }
        for tag in [1, 15, 16, 2047, 2048, (1 << 29) - 1] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            key(tag, WireType::LengthDelimited, &mut ours);
            prost::encoding::encode_key(tag, WireType::LengthDelimited, &mut theirs);
            assert_eq!(ours, theirs, "{tag}");
        }
    }

    #[test]
    fn spans_are_written_as_the_derived_messages_would_encode_them() {
        let resource = Resource { attributes: vec![KeyValue::str("service.name", "thv-proxy")] };
        let mut root = sample_span();
        root.parent_span_id = None;
        root.trace_state = None;
        root.kind = SpanKind::Client;
        root.status = Status::Ok;
        let mut bare = sample_span();
        bare.attributes.clear();
        bare.name.clear();
        bare.status = Status::Unset;
        // Lengths past one varint byte (a 200-byte attribute, a batch over 16 KiB), negative
        // and large integers, an empty string value, `false`.
        let mut odd = sample_span();
        odd.attributes.extend([
            KeyValue::str("long", "x".repeat(200)),
            KeyValue::int("negative", -5),
            KeyValue::int("big", i64::MAX),
            KeyValue::str("empty", ""),
            KeyValue { key: Cow::Borrowed("no"), value: Value::Bool(false) },
        ]);
        let many: Vec<Span> = (0..60).map(|_| odd.clone()).collect();
        for spans in [vec![], vec![sample_span()], vec![root, bare, odd], many] {
            assert_eq!(encode_traces(&resource, &spans), reference(&resource, &spans), "{} spans", spans.len());
        }
        let empty = Resource::default();
        assert_eq!(encode_traces(&empty, &[sample_span()]), reference(&empty, &[sample_span()]));
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
        let req = ExportTraceServiceRequest::decode(encode_traces(&Resource::default(), &[span]).as_slice()).unwrap();
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
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
        let mut bytes = Vec::new();
        write_span(&span, &mut bytes);
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
}
