//! Just enough JSON-RPC 2.0 to echo a request's `id` in an error the proxy makes itself.
//!
//! This runs only on the error path: a request that is forwarded successfully is never
//! parsed, so the proxy stays byte-transparent and batches (MCP 2025-03-26) pass through.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The `id` of a single JSON-RPC request, as raw JSON (so `12345678901234567890` and
/// `"abc"` are echoed exactly). `None` for notifications, responses without an id, batches
/// and anything that is not a JSON object.
pub fn request_id(body: &[u8]) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Envelope {
        id: Option<Box<RawValue>>,
        method: Option<serde::de::IgnoredAny>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let env: Envelope = serde_json::from_slice(body).ok()?;
    env.method?;
    env.id.filter(|id| id.get() != "null")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = |s: &str| request_id(s.as_bytes()).map(|r| r.get().to_owned());
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).as_deref(), Some("7"));
        assert_eq!(id(r#" {"id":"a-b","method":"x"}"#).as_deref(), Some(r#""a-b""#));
        assert_eq!(
            id(r#"{"id":123456789012345678901234567890,"method":"x"}"#).as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(id(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), None);
        assert_eq!(id(r#"{"id":null,"method":"x"}"#), None);
        assert_eq!(id(r#"{"id":1,"result":{}}"#), None, "a response is not a request");
        assert_eq!(id(r#"[{"id":1,"method":"x"}]"#), None, "batches get no id");
        assert_eq!(id("not json"), None);
        assert_eq!(id(""), None);
    }
}
