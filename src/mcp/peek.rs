//! What telemetry reads of a request body: the JSON-RPC method and id, the name or URI a
//! call is about, and the trace context a 2026-07-28 client may carry in `params._meta`
//! (SEP-414; the MCP OpenTelemetry conventions). Lenient where [`super::request`] is
//! strict: nothing is decided on it, it only labels metrics and spans, so a body it cannot
//! read is simply one without MCP facts.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The facts of one JSON-RPC message.
#[derive(Debug, Default)]
pub(crate) struct Peek<'a> {
    pub(crate) method: Option<Cow<'a, str>>,
    /// The id as JSON text (`7`, `"abc"`).
    pub(crate) id: Option<&'a str>,
    /// What a call is about: [`Params::subject`].
    pub(crate) subject: Option<Cow<'a, str>>,
    /// `params._meta.traceparent` (unescaped), with where its JSON string (quotes included)
    /// lies in the body, so that it can be rewritten.
    pub(crate) traceparent: Option<(Cow<'a, str>, (usize, usize))>,
    pub(crate) tracestate: Option<Cow<'a, str>>,
    /// `params.clientInfo.name` (`initialize`).
    pub(crate) client_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
}

/// A request's `params`, as far as anyone outside the body's owner reads them.
#[derive(Deserialize)]
pub(crate) struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "_meta")]
    meta: Option<Meta<'a>>,
    #[serde(borrow, default, rename = "clientInfo")]
    client_info: Option<ClientInfo<'a>>,
}

impl<'a> Params<'a> {
    /// What a call is about: `params.name` (`tools/call`, `prompts/get`), else `params.uri`
    /// (`resources/read`); the 2026-07-28 revision repeats it in `Mcp-Name`.
    pub(crate) fn subject(self) -> Option<Cow<'a, str>> {
        self.name.or(self.uri)
    }
}

#[derive(Deserialize)]
struct ClientInfo<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    traceparent: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tracestate: Option<Cow<'a, str>>,
}

/// Reads `body`; `None` when it is not one JSON object (a batch, not JSON, not UTF-8).
pub(crate) fn peek(body: &[u8]) -> Option<Peek<'_>> {
    // One UTF-8 check of the whole body (fast on ASCII), then a reader that checks nothing
    // again: from bytes, serde_json would validate every key it reads on its own.
    let json = std::str::from_utf8(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)).ok()?;
    if json.trim_ascii_start().as_bytes().first() != Some(&b'{') {
        return None;
    }
    let m: Message<'_> = serde_json::from_str(json).ok()?;
    let (meta, client_name, subject) = match m.params {
        Some(mut p) => (p.meta.take(), p.client_info.take().and_then(|c| c.name), p.subject()),
        None => (None, None, None),
    };
    let (traceparent, tracestate) = match meta {
        Some(meta) => (meta.traceparent.and_then(|raw| string_at(raw, body)), meta.tracestate),
        None => (None, None),
    };
    let id = m.id.map(RawValue::get).filter(|id| *id != "null");
    Some(Peek { method: m.method, id, subject, traceparent, tracestate, client_name })
}

/// A JSON string's value and where its token (quotes included) lies in `body`.
fn string_at<'a>(raw: &'a RawValue, body: &'a [u8]) -> Option<(Cow<'a, str>, (usize, usize))> {
    let token = raw.get();
    // Where the borrowed token lies in the body: both are views of the same buffer.
    let start = (token.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(token.len())?;
    if body.get(start..end) != Some(token.as_bytes()) {
        return None;
    }
    let value = match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(plain) if !plain.contains('\\') => Cow::Borrowed(plain),
        _ => Cow::Owned(serde_json::from_str::<String>(token).ok()?),
    };
    Some((value, (start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_with_trace_context_is_read_with_the_offset() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=b"}}}"#;
        let p = peek(body).unwrap();
        assert_eq!(p.method.as_deref(), Some("tools/call"));
        assert_eq!(p.id, Some("7"));
        assert_eq!(p.subject.as_deref(), Some("echo"));
        let (tp, (from, to)) = p.traceparent.unwrap();
        assert_eq!(&body[from..to], format!("\"{tp}\"").as_bytes());
        assert_eq!(p.tracestate.as_deref(), Some("a=b"));
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"claude","version":"1"}}}"#;
        assert_eq!(peek(init).unwrap().client_name.as_deref(), Some("claude"));
        let read = br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#;
        assert_eq!(peek(read).unwrap().subject.as_deref(), Some("file:///a"), "a resource is its URI");
    }

    #[test]
    fn unreadable_bodies_have_no_facts() {
        assert!(peek(b"[{}]").is_none());
        assert!(peek(b"\xff{").is_none());
        assert!(peek(b"").is_none());
        let p = peek(br#"{"id":null,"method":"notifications/initialized"}"#).unwrap();
        assert_eq!(p.id, None);
        let escaped = br#"{"method":"x","params":{"_meta":{"traceparent":"\u0030-a"}}}"#;
        let (value, (from, to)) = peek(escaped).unwrap().traceparent.unwrap();
        assert_eq!(value, "0-a", "an escaped value is read as the server reads it");
        assert_eq!(&escaped[from..to], br#""\u0030-a""#);
    }
}
