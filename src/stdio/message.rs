//! The JSON-RPC 2.0 the bridge reads (MCP 2025-11-25 Basic §Messages): what a client's line
//! is, what a server's message answers, and the bridge's own error answers.
//!
//! Messages pass through as they are: a line read is POSTed byte for byte, a server's
//! message is written byte for byte unless it spans several lines (a pretty-printed JSON
//! body), when only the whitespace between tokens is taken out. Nothing is re-serialized,
//! so member order, number spelling and unknown members survive.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::mcp::peek;
use crate::mcp::request::PARSE_ERROR;
use crate::proxy::respond::INVALID_REQUEST;

/// What a client's line is.
#[derive(Debug)]
pub(crate) struct ClientMessage {
    /// The id of a request, as raw JSON (for the bridge's own answers).
    pub(crate) id: Option<Box<RawValue>>,
    /// `None` for a response (the client answering a server's request).
    pub(crate) method: Option<String>,
    /// `params.name` (`tools/call`, `prompts/get`) or `params.uri` (`resources/read`):
    /// the 2026-07-28 revision repeats it in `Mcp-Name`.
    pub(crate) name: Option<String>,
    /// The revision a 2026-07-28 request states in its `_meta`, for `MCP-Protocol-Version`.
    pub(crate) protocol_version: Option<String>,
}

impl ClientMessage {
    /// A request: the client waits for an answer with its id.
    pub(crate) fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }
}

/// Why a line is not a message, as the error answer says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: i32,
    pub(crate) message: &'static str,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

/// Reads a client's line (JSON-RPC 2.0 §4, §5.1: not JSON is a parse error, JSON that is
/// not one request, notification or response is an invalid request).
pub(crate) fn read_client(line: &[u8]) -> Result<ClientMessage, Refusal> {
    const NOT_JSON: Refusal = Refusal { code: PARSE_ERROR, message: "Parse error: the line is not JSON" };
    // serde_json does not check the UTF-8 of members it skips.
    let text = std::str::from_utf8(line).map_err(|_| NOT_JSON)?;
    let first = text.trim_start().as_bytes().first();
    if first == Some(&b'[') {
        serde_json::from_str::<IgnoredAny>(text).map_err(|_| NOT_JSON)?;
        return Err(Refusal {
            code: INVALID_REQUEST,
            message: "Invalid Request: JSON-RPC batches are not part of MCP since 2025-06-18; send one message per line",
        });
    }
    if first != Some(&b'{') {
        serde_json::from_str::<IgnoredAny>(text).map_err(|_| NOT_JSON)?;
        return Err(Refusal { code: INVALID_REQUEST, message: "Invalid Request: a message is a JSON object" });
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            Refusal { code: INVALID_REQUEST, message: "Invalid Request: a member has the wrong type" }
        } else {
            NOT_JSON
        }
    })?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(Refusal { code: INVALID_REQUEST, message: "Invalid Request: \"jsonrpc\" must be \"2.0\"" });
    }
    let id = env.id.filter(|id| id.get() != "null").map(ToOwned::to_owned);
    if env.method.is_none() && id.is_none() {
        return Err(Refusal { code: INVALID_REQUEST, message: "Invalid Request: neither a method nor an id" });
    }
    // What the 2026-07-28 revision repeats in headers, read as telemetry reads it.
    let (name, protocol_version) = match peek::peek(line) {
        Some(p) => (p.subject.map(Cow::into_owned), p.protocol_version.map(Cow::into_owned)),
        None => (None, None),
    };
    Ok(ClientMessage { id, method: env.method.map(Cow::into_owned), name, protocol_version })
}

/// What the bridge needs of a server's message.
#[derive(Debug, Default)]
pub(crate) struct ServerMessage {
    /// The id of a response (no method), parsed for comparison.
    pub(crate) answers: Option<Value>,
    /// `result.protocolVersion` (an `initialize` result).
    pub(crate) protocol_version: Option<String>,
}

/// Checks that a server's message is JSON and reads what the bridge needs; `None` for
/// anything that is not JSON (a broken server: the caller answers with an error).
pub(crate) fn read_server(bytes: &[u8]) -> Option<ServerMessage> {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        method: Option<&'a RawValue>,
        #[serde(borrow, default)]
        result: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct InitializeResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: Option<String>,
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if text.trim_start().starts_with('{') {
        let reply: Reply<'_> = serde_json::from_str(text).ok()?;
        let answers = match (reply.method, reply.id) {
            (None, Some(id)) => serde_json::from_str(id.get()).ok(),
            _ => None,
        };
        let protocol_version = reply
            .result
            .and_then(|r| serde_json::from_str::<InitializeResult>(r.get()).ok())
            .and_then(|r| r.protocol_version);
        return Some(ServerMessage { answers, protocol_version });
    }
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    Some(ServerMessage::default())
}

/// A message on one line: `json` itself when it has no line break, else `json` without
/// the whitespace between its tokens (inside strings JSON has no raw line breaks, so the
/// result is the same JSON). `json` must be valid.
pub(crate) fn one_line(json: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        return Cow::Borrowed(json);
    }
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// The bridge's own error answer to `id` (or to no one, `null`, when the id is unknown).
pub(crate) fn error_answer(id: Option<&RawValue>, code: i32, message: &str) -> Vec<u8> {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_owned());
    let id = id.map_or("null", RawValue::get);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#).into_bytes()
}

/// Whether `answers` (a response's parsed id) is the answer to `id` (a request's raw id).
pub(crate) fn same_id(answers: &Value, id: &RawValue) -> bool {
    serde_json::from_str::<Value>(id.get()).is_ok_and(|asked| asked == *answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_lines() {
        let m = read_client(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add"}}"#).unwrap();
        assert!(m.is_request());
        assert_eq!((m.id.unwrap().get(), m.name.as_deref()), ("7", Some("add")));
        let m = read_client(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(!m.is_request() && m.id.is_none());
        let m = read_client(br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#).unwrap();
        assert!(!m.is_request() && m.method.is_none(), "a client's answer to the server");
        for (line, code) in [
            (&b"not json"[..], PARSE_ERROR),
            (b"{\"jsonrpc\":\"2.0\",", PARSE_ERROR),
            (b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}", PARSE_ERROR),
            (b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", INVALID_REQUEST),
            (b"42", INVALID_REQUEST),
            (b"{\"id\":1,\"method\":\"ping\"}", INVALID_REQUEST),
            (b"{\"jsonrpc\":\"2.0\",\"method\":7}", INVALID_REQUEST),
            (b"{\"jsonrpc\":\"2.0\"}", INVALID_REQUEST),
        ] {
            assert_eq!(read_client(line).unwrap_err().code, code, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn server_messages() {
        let m = read_server(br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}"#).unwrap();
        assert_eq!(m.answers, Some(Value::from(1)));
        assert_eq!(m.protocol_version.as_deref(), Some("2025-11-25"));
        assert!(same_id(&m.answers.unwrap(), &RawValue::from_string("1".into()).unwrap()));
        let m = read_server(br#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#).unwrap();
        assert_eq!(m.answers, None, "a server's request answers nothing");
        assert!(read_server(b"<html>").is_none());
        assert!(read_server(b"{\"a\":1} trailing").is_none());
    }

    #[test]
    fn one_line_keeps_strings_and_order() {
        let pretty = b"{\n  \"b\": \"x \\\" \\n y\",\r\n  \"a\": [1, 2]\n}";
        assert_eq!(&*one_line(pretty), br#"{"b":"x \" \n y","a":[1,2]}"#);
        let flat = br#"{"b": 1, "a": 2}"#;
        assert!(matches!(one_line(flat), Cow::Borrowed(_)), "no copy without a line break");
    }

    #[test]
    fn error_answers_are_json() {
        let id = RawValue::from_string("\"a\"".into()).unwrap();
        let v: Value = serde_json::from_slice(&error_answer(Some(&id), -32000, "the \"server\"\nis down")).unwrap();
        assert_eq!((v["id"].as_str(), v["error"]["code"].as_i64()), (Some("a"), Some(-32000)));
        let v: Value = serde_json::from_slice(&error_answer(None, PARSE_ERROR, "x")).unwrap();
        assert!(v["id"].is_null());
    }
}
