//! `thv::mcp::jsonrpc::request_id`: the id echoed in errors the proxy makes itself.
//!
//! Input: a request body.
//!
//! Invariants: never panics; an id is only found in a single JSON object that has a
//! `method`; the id is valid JSON, never `null`, and is exactly the object's `id`.

use serde_json::Value;
use thv::internals::request_id;

pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Some(id) = request_id(data) else { return };
    let raw = id.get();
    assert_ne!(raw, "null");
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    assert_eq!(first, Some(&b'{'), "an id from something that is not an object");
    let id_value: Result<Value, _> = serde_json::from_str(raw);
    // The whole body as a Value may fail where the raw id did not (numbers beyond f64),
    // but when it parses it must agree.
    if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) {
        assert!(body.contains_key("method"), "an id from a message without a method: {raw}");
        if let Ok(id_value) = id_value {
            assert_eq!(body.get("id"), Some(&id_value), "the echoed id is not the request's");
        }
    } else if let Ok(other) = serde_json::from_slice::<Value>(data) {
        panic!("an id from a JSON {other:?} that is not an object");
    }
}
