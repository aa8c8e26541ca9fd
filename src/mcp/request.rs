//! What one client message asks for, read from the request body the server will act on
//! (JSON-RPC 2.0 §4–§6; MCP 2025-11-25 Basic §Messages, 2026-07-28 Transports §Headers).
//!
//! Only called when an MCP-aware policy is configured: without one the proxy never parses
//! a body it forwards. The reading is strict where leniency would open a blind spot:
//! - a field given twice (`{"method":"ping","method":"tools/call"}`, or twice in the
//!   arguments at any depth) is refused, because the server's parser might keep the other
//!   copy;
//! - a body that is not UTF-8 is refused (RFC 8259 §8.1), even where the bytes lie in a
//!   member the proxy does not read;
//! - a batch (a JSON array) is reported as such, never looked into (see [`Body::Batch`]);
//! - anything that is not one JSON-RPC object is [`Body::Unreadable`].
//!
//! The 2026-07-28 revision repeats the method and the name in `Mcp-Method` and `Mcp-Name`
//! headers so that intermediaries need not parse bodies. This proxy decides on the body
//! anyway (a header is a hint a client can forge) and refuses a request whose headers
//! disagree with it ([`headers_agree`]), as a 2026-07-28 server must (error -32020).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::strict::Strict;

/// JSON-RPC "Parse error" (JSON-RPC 2.0 §5.1).
pub(crate) const PARSE_ERROR: i32 = -32700;
/// JSON-RPC "Invalid params" (JSON-RPC 2.0 §5.1); also MCP's answer to an unknown tool.
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// MCP 2026-07-28: the `Mcp-Method`/`Mcp-Name` headers disagree with the body.
pub(crate) const HEADER_MISMATCH: i32 = -32020;

/// A request body, as far as policy needs it.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    /// No body (GET, DELETE, an empty POST).
    Empty,
    /// One JSON-RPC object.
    Message(Message<'a>),
    /// A JSON array: a JSON-RPC batch (MCP 2025-03-26 only; removed in 2025-06-18).
    Batch,
    /// Not JSON, not an object, a field given twice, or a field of the wrong type.
    Unreadable,
}

/// One JSON-RPC object: a request, a notification, or a response from the client.
#[derive(Debug, Deserialize)]
pub(crate) struct Message<'a> {
    /// Raw JSON text, echoed exactly in the proxy's own answers.
    #[serde(borrow, default)]
    pub(crate) id: Option<&'a RawValue>,
    /// `None` for a response (a client answering a server's request).
    #[serde(borrow, default)]
    pub(crate) method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) params: Option<&'a RawValue>,
}

/// What a message asks the server to do, for the methods policy decides on.
#[derive(Debug, PartialEq)]
pub(crate) enum Ask<'a> {
    /// `tools/call`: the tool's name and its arguments.
    CallTool { name: Cow<'a, str>, arguments: Option<Map<String, Value>> },
    /// `prompts/get`.
    GetPrompt { name: Cow<'a, str>, arguments: Option<Map<String, Value>> },
    /// `resources/read`.
    ReadResource { uri: Cow<'a, str> },
    /// Any other method, a notification or a response: policy lets it pass.
    Other,
}

impl<'a> Body<'a> {
    /// Reads `bytes`. Leading whitespace (and a UTF-8 BOM, which some clients send) is
    /// skipped to tell an array from an object.
    pub(crate) fn read(bytes: &'a [u8]) -> Body<'a> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // serde_json does not check the UTF-8 of members it skips.
        let Ok(text) = std::str::from_utf8(bytes) else { return Body::Unreadable };
        match text.bytes().find(|b| !b.is_ascii_whitespace()) {
            None => Body::Empty,
            Some(b'[') => Body::Batch,
            Some(b'{') => match serde_json::from_str::<Message<'a>>(text) {
                Ok(message) => Body::Message(message),
                Err(_) => Body::Unreadable,
            },
            Some(_) => Body::Unreadable,
        }
    }
}

impl<'a> Message<'a> {
    /// The id, unless absent or `null` (a notification).
    pub(crate) fn id(&self) -> Option<&'a RawValue> {
        self.id.filter(|id| id.get() != "null")
    }

    /// What the message asks for. `Err` when a decided-on method's params cannot be read
    /// the way the server will read them (a missing or non-string `name`, say): such a
    /// request is refused, never passed as `Other`.
    pub(crate) fn ask(&self) -> Result<Ask<'a>, ()> {
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
            #[serde(default)]
            arguments: Option<Unique>,
        }
        #[derive(Deserialize)]
        struct Uri<'a> {
            #[serde(borrow)]
            uri: Cow<'a, str>,
        }
        match self.method.as_deref() {
            Some("tools/call") => {
                let p: Named<'a> = serde_json::from_str(params_of(self.params)).map_err(|_| ())?;
                Ok(Ask::CallTool { name: p.name, arguments: p.arguments.map(|u| u.0) })
            }
            Some("prompts/get") => {
                let p: Named<'a> = serde_json::from_str(params_of(self.params)).map_err(|_| ())?;
                Ok(Ask::GetPrompt { name: p.name, arguments: p.arguments.map(|u| u.0) })
            }
            Some("resources/read") => {
                let p: Uri<'a> = serde_json::from_str(params_of(self.params)).map_err(|_| ())?;
                Ok(Ask::ReadResource { uri: p.uri })
            }
            _ => Ok(Ask::Other),
        }
    }
}

/// The arguments: an object, read with no key given twice at any depth ([`Strict`]).
struct Unique(Map<String, Value>);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Strict::deserialize(d)?.0 {
            Value::Object(map) => Ok(Unique(map)),
            _ => Err(serde::de::Error::custom("arguments must be an object")),
        }
    }
}

/// The params' raw text with the message's lifetime (`null` when absent, which the typed
/// readers refuse).
fn params_of(params: Option<&RawValue>) -> &str {
    params.map_or("null", RawValue::get)
}

/// Whether the 2026-07-28 `Mcp-Method` and `Mcp-Name` headers, where present, say what the
/// body says (MCP 2026-07-28 Transports §Headers: the server rejects a mismatch with 400 and
/// -32020; so does the proxy, before the server sees it). An absent header is the server's
/// to judge: the proxy decides on the body either way.
pub(crate) fn headers_agree(
    mcp_method: Option<&[u8]>,
    mcp_name: Option<&[u8]>,
    message: &Message<'_>,
    ask: &Ask<'_>,
) -> bool {
    let method_ok =
        mcp_method.is_none_or(|m| message.method.as_deref().is_some_and(|b| b.as_bytes() == m.trim_ascii()));
    let name_ok = mcp_name.is_none_or(|n| {
        let body_name = match ask {
            Ask::CallTool { name, .. } | Ask::GetPrompt { name, .. } => Some(name.as_ref()),
            Ask::ReadResource { uri } => Some(uri.as_ref()),
            Ask::Other => None,
        };
        body_name.is_some_and(|b| b.as_bytes() == n.trim_ascii())
    });
    method_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(s: &str) -> Message<'_> {
        match Body::read(s.as_bytes()) {
            Body::Message(m) => m,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn bodies_are_told_apart() {
        assert!(matches!(Body::read(b""), Body::Empty));
        assert!(matches!(Body::read(b" \r\n"), Body::Empty));
        assert!(matches!(Body::read(br#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), Body::Batch));
        assert!(matches!(Body::read(b"\xEF\xBB\xBF[]"), Body::Batch));
        assert!(matches!(Body::read(b"nope"), Body::Unreadable));
        assert!(matches!(Body::read(b"{\"method\":"), Body::Unreadable));
        assert!(matches!(Body::read(b"\"tools/call\""), Body::Unreadable));
        assert!(matches!(Body::read(br#"{"method":1}"#), Body::Unreadable));
        assert!(matches!(Body::read(b"\xEF\xBB\xBF{\"method\":\"ping\"}"), Body::Message(_)));
        // Found by fuzzing: invalid UTF-8 in a member nobody reads was let through.
        assert!(matches!(Body::read(b"{\"x\":\"2.\xd10\",\"method\":\"ping\"}"), Body::Unreadable));
    }

    #[test]
    fn a_field_given_twice_is_unreadable() {
        // serde_json would keep the last; another parser the first. Neither is trusted.
        assert!(matches!(
            Body::read(br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#),
            Body::Unreadable
        ));
        let m = message(r#"{"id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#);
        assert_eq!(m.ask(), Err(()));
        // Arguments too, at any depth, escaped or not: a policy on `path` must see the one
        // path the server will use.
        for args in [
            r#"{"path":"/etc/passwd","path":"/safe"}"#,
            r#"{"path":"/etc/passwd","p\u0061th":"/safe"}"#,
            r#"{"opts":{"a":1,"a":2}}"#,
            r#"{"list":[{"a":1,"a":2}]}"#,
        ] {
            let body = format!(r#"{{"id":1,"method":"tools/call","params":{{"name":"fs","arguments":{args}}}}}"#);
            assert_eq!(message(&body).ask(), Err(()), "{args}");
        }
        let m = message(
            r#"{"id":1,"method":"tools/call","params":{"name":"fs","arguments":{"a":{"b":[1,{"c":null}]},"d":1.5}}}"#,
        );
        let Ok(Ask::CallTool { arguments: Some(args), .. }) = m.ask() else { panic!() };
        assert_eq!(Value::Object(args), serde_json::json!({"a":{"b":[1,{"c":null}]},"d":1.5}));
    }

    #[test]
    fn asks() {
        let m =
            message(r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo","arguments":{"n":1}}}"#);
        assert_eq!(m.id().map(RawValue::get), Some(r#""x""#));
        let Ok(Ask::CallTool { name, arguments }) = m.ask() else { panic!() };
        assert_eq!(name, "echo");
        assert_eq!(arguments.unwrap()["n"], 1);
        let m = message(r#"{"id":2,"method":"prompts/get","params":{"name":"p\u00e9"}}"#);
        assert!(matches!(m.ask(), Ok(Ask::GetPrompt { name, arguments: None }) if name == "pé"));
        let m = message(r#"{"id":3,"method":"resources/read","params":{"uri":"file:///a b"}}"#);
        assert!(matches!(m.ask(), Ok(Ask::ReadResource { uri }) if uri == "file:///a b"));
        for s in [
            r#"{"id":1,"method":"tools/call"}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
            r#"{"id":1,"method":"resources/read","params":{}}"#,
            r#"{"id":1,"method":"prompts/get","params":[]}"#,
        ] {
            assert_eq!(message(s).ask(), Err(()), "{s}");
        }
        assert_eq!(message(r#"{"id":1,"method":"tools/list"}"#).ask(), Ok(Ask::Other));
        assert_eq!(message(r#"{"method":"notifications/initialized"}"#).ask(), Ok(Ask::Other));
        assert_eq!(message(r#"{"id":1,"result":{}}"#).ask(), Ok(Ask::Other));
        assert!(message(r#"{"id":null,"method":"x"}"#).id().is_none());
    }

    #[test]
    fn headers_must_say_what_the_body_says() {
        let m = message(r#"{"id":1,"method":"tools/call","params":{"name":"echo"}}"#);
        let ask = m.ask().unwrap();
        assert!(headers_agree(None, None, &m, &ask));
        assert!(headers_agree(Some(b"tools/call"), Some(b"echo"), &m, &ask));
        assert!(headers_agree(Some(b" tools/call "), None, &m, &ask), "field values are trimmed");
        assert!(!headers_agree(Some(b"tools/list"), None, &m, &ask));
        assert!(!headers_agree(Some(b"tools/call"), Some(b"rm"), &m, &ask));
        assert!(!headers_agree(None, Some(b"Echo"), &m, &ask), "names are exact");
        let m = message(r#"{"id":1,"method":"tools/list"}"#);
        let ask = m.ask().unwrap();
        assert!(!headers_agree(Some(b"tools/list"), Some(b"x"), &m, &ask), "a name where the body has none");
        let m = message(r#"{"id":1,"result":{}}"#);
        assert!(!headers_agree(Some(b"ping"), None, &m, &Ask::Other), "a response has no method");
    }
}
