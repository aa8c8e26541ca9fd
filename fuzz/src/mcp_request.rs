//! The MCP policy's request step (`thv::policy::McpPolicy::admit` over
//! `thv::mcp::request`): what a request body asks for, and whether it may reach the server.
//!
//! Input: byte 0 picks which 2026-07-28 headers the client sends (none, `Mcp-Method`,
//! `Mcp-Name`, both, or one of them twice), the rest up to the first `\n` is the header
//! text (method and name split at the first space), the rest the body.
//!
//! Invariants, read back with an independent parser (`serde_json::Value`):
//! - nothing panics;
//! - a forwarded body is one JSON-RPC object (never a batch, never unreadable);
//! - a forwarded `tools/call` names a tool the fixture permits, by the server's name
//!   (`echo`, or `add` for the client's `sum`), never `rm` (forbidden), `hidden`
//!   (outside `--tools`) or anything else (default deny);
//! - a forwarded `prompts/get` or `resources/read` is one the fixture permits;
//! - a forwarded request's `Mcp-Name` and `Mcp-Method`, when sent, say what its body says;
//! - every refusal is a 4xx, or a 200 carrying the unknown-tool error.

use std::sync::OnceLock;

use std::collections::HashMap;
use serde_json::value::RawValue;
use thv::internals::{PolicyProbe, Probed};

const AUTHZ: &str = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
  "permit(principal, action == Action::\"call_tool\", resource == Tool::\"echo\");",
  "permit(principal, action == Action::\"call_tool\", resource == Tool::\"add\");",
  "permit(principal, action == Action::\"call_tool\", resource == Tool::\"rm\");",
  "forbid(principal, action == Action::\"call_tool\", resource == Tool::\"rm\");",
  "permit(principal, action == Action::\"get_prompt\", resource == Prompt::\"greet\");",
  "permit(principal, action == Action::\"read_resource\", resource == Resource::\"file:///ok\");"
], "entities_json": "[]"}}"#;
const OVERRIDES: &str = r#"{"toolsOverride": {"add": {"name": "sum"}}}"#;

fn probe() -> &'static PolicyProbe {
    static PROBE: OnceLock<PolicyProbe> = OnceLock::new();
    PROBE.get_or_init(|| PolicyProbe::new(AUTHZ, &["echo", "add", "rm"], OVERRIDES).expect("the fixture is valid"))
}

pub fn run(data: &[u8]) {
    if data.is_empty() || data.len() > crate::MAX_INPUT {
        return;
    }
    let (mode, rest) = (data[0] % 6, &data[1..]);
    let (fields, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&rest[..0], rest),
    };
    let (method, name) = match fields.iter().position(|&b| b == b' ') {
        Some(i) => (&fields[..i], &fields[i + 1..]),
        None => (fields, fields),
    };
    let (mcp_method, mcp_name, repeated) = match mode {
        0 => (None, None, false),
        1 => (Some(method), None, false),
        2 => (None, Some(name), false),
        3 => (Some(method), Some(name), false),
        4 => (Some(method), None, true),
        _ => (None, Some(name), true),
    };
    match probe().admit(mcp_method, mcp_name, repeated, body) {
        Probed::Answered(status, answer) => {
            let tool_not_found = status == 200 && String::from_utf8_lossy(&answer).contains("tool not found");
            assert!((400..500).contains(&status) || tool_not_found, "refused with {status}");
            // Syntax only: an id the client sent is echoed as it was, however large.
            assert!(serde_json::from_slice::<Box<RawValue>>(&answer).is_ok(), "the refusal is JSON");
        }
        Probed::Forwarded { body: forwarded, mcp_name: sent_name, .. } => {
            let trimmed = forwarded.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&forwarded);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            // Members as raw JSON: a number too large for an f64 is still JSON.
            let object: HashMap<String, Box<RawValue>> =
                serde_json::from_slice(trimmed).expect("a forwarded body is one JSON-RPC object");
            assert!(!repeated || (mcp_method.is_none() && mcp_name.is_none()), "repeated headers were forwarded");
            let text = |raw: &RawValue| serde_json::from_str::<String>(raw.get()).ok();
            let body_method = object.get("method").and_then(|m| text(m));
            let body_method = body_method.as_deref();
            if let Some(m) = mcp_method {
                assert_eq!(Some(m.trim_ascii()), body_method.map(str::as_bytes), "Mcp-Method disagrees with the body");
            }
            let params: Option<HashMap<String, Box<RawValue>>> =
                object.get("params").and_then(|p| serde_json::from_str(p.get()).ok());
            let field = |k: &str| params.as_ref().and_then(|p| p.get(k)).and_then(|v| text(v));
            let named = match body_method {
                Some("tools/call") => {
                    let name = field("name").expect("a forwarded call names its tool");
                    assert!(name == "echo" || name == "add", "a call to {name:?} was forwarded");
                    Some(name)
                }
                Some("prompts/get") => {
                    let name = field("name").expect("a forwarded get names its prompt");
                    assert_eq!(name, "greet", "a get of another prompt was forwarded");
                    Some(name)
                }
                Some("resources/read") => {
                    let uri = field("uri").expect("a forwarded read names its resource");
                    assert_eq!(uri, "file:///ok", "a read of another resource was forwarded");
                    Some(uri)
                }
                _ => None,
            };
            if let Some(sent) = sent_name {
                assert_eq!(Some(sent.trim_ascii()), named.as_deref().map(str::as_bytes), "Mcp-Name disagrees with the body");
            }
        }
    }
}
