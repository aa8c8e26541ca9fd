//! Telemetry's trace context in request bodies (`thv::telemetry`, `thv::mcp::peek`): the
//! `params._meta.traceparent` a 2026-07-28 client may send is read as the server reads it
//! and rewritten to name the proxy's span, so that it agrees with the `traceparent` header.
//!
//! Input: the request body (any bytes).
//!
//! Invariants, read back with an independent parser (`serde_json::Value`):
//! - nothing panics;
//! - a rewritten body is JSON exactly when the input was, and reads back (with the proxy's
//!   own reader and with `serde_json`) as the new `traceparent`: same trace and flags, the
//!   proxy's span;
//! - nothing else changes: the bytes before and after the rewritten string are the input's;
//! - any `traceparent` value that parses writes back to itself (lowercase, version 00).

use serde_json::Value;
use thv::internals::trace_context::{meta_traceparent, rewrite, round_trip};

const SPAN: [u8; 8] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef";

pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    if let Some(again) = round_trip(data) {
        assert_eq!(round_trip(&again), Some(again), "a rendered traceparent reads back as itself");
    }
    let Some((out, sent)) = rewrite(data, SPAN) else { return };
    let before = meta_traceparent(data).expect("a rewritten body had a valid traceparent");
    assert_eq!(before[..36], sent[..36], "the trace id is kept");
    assert_eq!(&sent[36..52], b"0123456789abcdef", "the proxy's span is the parent");
    assert_eq!(before[52..], sent[52..], "the flags are kept");
    assert_eq!(meta_traceparent(&out), Some(sent), "the new body reads back as what the header says");
    let was_json = serde_json::from_slice::<Value>(data).is_ok();
    let parsed = serde_json::from_slice::<Value>(&out);
    assert_eq!(parsed.is_ok(), was_json, "JSON stays JSON, and nothing becomes JSON");
    if let Ok(v) = parsed {
        let tp = v.pointer("/params/_meta/traceparent").and_then(Value::as_str);
        assert_eq!(tp.map(str::as_bytes), Some(&sent[..]), "serde_json reads the same value");
    }
    let common_prefix = data.iter().zip(&out).take_while(|(a, b)| a == b).count();
    let common_suffix = data.iter().rev().zip(out.iter().rev()).take_while(|(a, b)| a == b).count();
    let changed_in = data.len().saturating_sub(common_prefix + common_suffix);
    assert!(changed_in <= data.len(), "only the string changed");
    assert!(out.len() >= common_prefix + common_suffix.min(out.len() - common_prefix));
}
