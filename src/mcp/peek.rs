//! What telemetry reads of a request body: the JSON-RPC method and id, the name or URI a
//! call is about, and the trace context a 2026-07-28 client may carry in `params._meta`
//! (SEP-414; the MCP OpenTelemetry conventions). Lenient where [`super::request`] is
//! strict: nothing is decided on it, it only labels metrics and spans, so a body it cannot
//! read is simply one without MCP facts.
//!
//! Every request of a proxy with telemetry on passes through here, so this is a scanner,
//! not a deserializer: it walks the JSON text (RFC 8259) once, reads the few members it
//! wants in place, and skips the rest (a tool's `arguments` may be most of the body) with
//! `memchr` over strings, allocating nothing unless a wanted string has escapes. On
//! well-formed JSON it reads what a `serde_json` derive reads (a test holds it to one over
//! generated bodies): member names compared unescaped, `null` taken as absent, and a
//! wanted member repeated or of the wrong type makes the body unreadable. Where it is
//! more lenient: raw control characters inside strings pass, and an array where an object
//! is wanted is not read by position. Stricter: nesting past 128 levels is unreadable.

use std::borrow::Cow;

use super::scan::Scan;

/// The facts of one JSON-RPC message.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Peek<'a> {
    pub(crate) method: Option<Cow<'a, str>>,
    /// The id as JSON text (`7`, `"abc"`).
    pub(crate) id: Option<&'a str>,
    /// What a call is about: `params.name` (`tools/call`, `prompts/get`), else `params.uri`
    /// (`resources/read`); the 2026-07-28 revision repeats it in `Mcp-Name`.
    pub(crate) subject: Option<Cow<'a, str>>,
    /// `params._meta.traceparent` (unescaped), with where its JSON string (quotes included)
    /// lies in the body, so that it can be rewritten.
    pub(crate) traceparent: Option<(Cow<'a, str>, (usize, usize))>,
    pub(crate) tracestate: Option<Cow<'a, str>>,
    /// `params.clientInfo.name` (`initialize`).
    pub(crate) client_name: Option<Cow<'a, str>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`: the revision a 2026-07-28
    /// request states for itself (it has no `initialize` to have agreed one).
    pub(crate) protocol_version: Option<Cow<'a, str>>,
}

/// Reads `body`; `None` when it is not one JSON object (a batch, not JSON, not UTF-8).
pub(crate) fn peek(body: &[u8]) -> Option<Peek<'_>> {
    // One UTF-8 check of the whole body (fast on ASCII): every slice taken below starts
    // and ends at an ASCII delimiter, so each is a `str` without another check.
    let bom = if body.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let json = std::str::from_utf8(body.get(bom..)?).ok()?;
    let mut scan = Scan { json, at: 0 };
    let mut found = Found::default();
    scan.object(TOP, |scan, key| found.message(scan, key))?;
    scan.space();
    if scan.at != json.len() {
        return None; // more after the object: not one JSON value
    }
    let traceparent = found.traceparent.get().map(|(value, (from, to))| (value, (from + bom, to + bom)));
    Some(Peek {
        method: found.method.get(),
        id: found.id.get(),
        subject: found.name.get().or(found.uri.get()),
        traceparent,
        tracestate: found.tracestate.get(),
        client_name: found.client_name.get(),
        protocol_version: found.protocol_version.get(),
    })
}

/// How deep containers may nest (the message itself is one level), as `serde_json` bounds
/// what it reads: the scanner recurses, so this bounds its stack too.
const TOP: u32 = 128;

/// A wanted member, read at most once: a second makes the body unreadable, as a derived
/// deserializer's "duplicate field" does. `null` is recorded as present but absent.
struct Once<T>(Option<Option<T>>);

impl<T> Default for Once<T> {
    fn default() -> Self {
        Once(None)
    }
}

impl<T> Once<T> {
    fn set(&mut self, value: Option<T>) -> Option<()> {
        self.0.replace(value).is_none().then_some(())
    }

    fn get(self) -> Option<T> {
        self.0.flatten()
    }
}

/// What the scan has found: the members of the message, of `params`, of `params._meta`
/// and of `params.clientInfo`.
#[derive(Default)]
struct Found<'a> {
    method: Once<Cow<'a, str>>,
    id: Once<&'a str>,
    params: Once<()>,
    name: Once<Cow<'a, str>>,
    uri: Once<Cow<'a, str>>,
    meta: Once<()>,
    traceparent: Once<(Cow<'a, str>, (usize, usize))>,
    tracestate: Once<Cow<'a, str>>,
    client_info: Once<()>,
    client_name: Once<Cow<'a, str>>,
    protocol_version: Once<Cow<'a, str>>,
}

impl<'a> Found<'a> {
    fn message(&mut self, scan: &mut Scan<'a>, key: &str) -> Option<()> {
        const DEPTH: u32 = TOP - 1;
        match key {
            "method" => self.method.set(scan.string_or_null()?),
            "id" => {
                let raw = scan.value_text(DEPTH)?;
                self.id.set((raw != "null").then_some(raw))
            }
            "params" => {
                let object = scan.object_or_null(DEPTH, |scan, key| self.params_member(scan, key))?;
                self.params.set(object.then_some(()))
            }
            _ => scan.skip(DEPTH),
        }
    }

    fn params_member(&mut self, scan: &mut Scan<'a>, key: &str) -> Option<()> {
        const DEPTH: u32 = TOP - 2;
        match key {
            "name" => self.name.set(scan.string_or_null()?),
            "uri" => self.uri.set(scan.string_or_null()?),
            "_meta" => {
                let object = scan.object_or_null(DEPTH, |scan, key| self.meta_member(scan, key))?;
                self.meta.set(object.then_some(()))
            }
            "clientInfo" => {
                let object = scan.object_or_null(DEPTH, |scan, key| match key {
                    "name" => self.client_name.set(scan.string_or_null()?),
                    _ => scan.skip(DEPTH - 1),
                })?;
                self.client_info.set(object.then_some(()))
            }
            _ => scan.skip(DEPTH),
        }
    }

    fn meta_member(&mut self, scan: &mut Scan<'a>, key: &str) -> Option<()> {
        const DEPTH: u32 = TOP - 3;
        match key {
            // Any JSON value is a member; only a string is a trace context.
            "traceparent" => match scan.next()? {
                b'"' => {
                    let s = scan.string()?;
                    // The one string the proxy rewrites: checked as strictly as a JSON parser
                    // would (no raw control characters), so that a rewrite never turns a body
                    // the server would refuse into one it accepts.
                    if s.token.bytes().any(|b| b < 0x20) {
                        return None;
                    }
                    let at = (s.from, s.from + s.token.len());
                    self.traceparent.set(Some((s.value()?, at)))
                }
                _ => {
                    scan.skip(DEPTH)?;
                    self.traceparent.set(None)
                }
            },
            "tracestate" => self.tracestate.set(scan.string_or_null()?),
            "io.modelcontextprotocol/protocolVersion" => self.protocol_version.set(scan.string_or_null()?),
            _ => scan.skip(DEPTH),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    use super::*;

    /// The reference: the same facts read by `serde_json` derives (what the scanner replaced),
    /// with an array where an object is wanted refused rather than read by position.
    fn reference(body: &[u8]) -> Option<Peek<'_>> {
        #[derive(Deserialize)]
        struct Message<'a> {
            #[serde(borrow, default)]
            id: Option<&'a RawValue>,
            #[serde(borrow, default)]
            method: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            params: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow, default)]
            name: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            uri: Option<Cow<'a, str>>,
            #[serde(borrow, default, rename = "_meta")]
            meta: Option<&'a RawValue>,
            #[serde(borrow, default, rename = "clientInfo")]
            client_info: Option<&'a RawValue>,
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
            #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
            protocol_version: Option<Cow<'a, str>>,
        }
        fn object<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Result<Option<T>, ()> {
            match raw {
                Some(raw) if raw.get().starts_with('{') => serde_json::from_str(raw.get()).map(Some).map_err(drop),
                Some(_) => Err(()),
                None => Ok(None),
            }
        }
        let json = std::str::from_utf8(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)).ok()?;
        if json.trim_ascii_start().as_bytes().first() != Some(&b'{') {
            return None;
        }
        let m: Message<'_> = serde_json::from_str(json).ok()?;
        let p: Option<Params<'_>> = object(m.params).ok()?;
        let (name, uri, meta, client) = match p {
            Some(p) => (p.name, p.uri, object::<Meta<'_>>(p.meta).ok()?, object::<ClientInfo<'_>>(p.client_info).ok()?),
            None => (None, None, None, None),
        };
        let (traceparent, tracestate, protocol_version) = match meta {
            Some(meta) => {
                (meta.traceparent.and_then(|raw| string_at(raw, body)), meta.tracestate, meta.protocol_version)
            }
            None => (None, None, None),
        };
        let id = m.id.map(RawValue::get).filter(|id| *id != "null");
        Some(Peek {
            method: m.method,
            id,
            subject: name.or(uri),
            traceparent,
            tracestate,
            client_name: client.and_then(|c| c.name),
            protocol_version,
        })
    }

    /// A JSON string's value and where its token (quotes included) lies in `body`.
    fn string_at<'a>(raw: &'a RawValue, body: &'a [u8]) -> Option<(Cow<'a, str>, (usize, usize))> {
        let token = raw.get();
        let start = (token.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
        let value = serde_json::from_str::<Cow<'a, str>>(token).ok()?;
        Some((value, (start, start + token.len())))
    }

    #[test]
    fn a_call_with_trace_context_is_read_with_the_offset() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=b"}}}"#;
        let p = peek(body).unwrap();
        assert_eq!(p.method.as_deref(), Some("tools/call"));
        assert_eq!(p.id, Some("7"));
        assert_eq!(p.subject.as_deref(), Some("echo"));
        let (tp, (from, to)) = p.traceparent.clone().unwrap();
        assert_eq!(&body[from..to], format!("\"{tp}\"").as_bytes());
        assert_eq!(p.tracestate.as_deref(), Some("a=b"));
        assert_eq!(Some(p), reference(body));
        let discover = br#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(peek(discover).unwrap().protocol_version.as_deref(), Some("2026-07-28"));
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"claude","version":"1"}}}"#;
        assert_eq!(peek(init).unwrap().client_name.as_deref(), Some("claude"));
        let read = br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#;
        assert_eq!(peek(read).unwrap().subject.as_deref(), Some("file:///a"), "a resource is its URI");
        let bom = b"\xEF\xBB\xBF{\"params\":{\"_meta\":{\"traceparent\":\"x\"}}}";
        let (_, (from, to)) = peek(bom).unwrap().traceparent.unwrap();
        assert_eq!(&bom[from..to], b"\"x\"", "offsets count the BOM");
    }

    #[test]
    fn unreadable_bodies_have_no_facts() {
        for body in [
            &b"[{}]"[..],
            b"\xff{",
            b"",
            b"{",
            br#"{"method":"a"} x"#,
            br#"{"method":"a","method":"b"}"#,
            br#"{"method":5}"#,
            br#"{"params":{"name":1}}"#,
            br#"{"params":["a"]}"#,
            br#"{"id":01}"#,
            br#"{"id":1.}"#,
            br#"{"x":tru}"#,
            br#"{"x":"\q"}"#,
            br#"{"x":[1,]}"#,
            br#"{"x":{"a":1,}}"#,
        ] {
            assert_eq!(peek(body), None, "{}", String::from_utf8_lossy(body));
            assert_eq!(reference(body), None, "the reference agrees: {}", String::from_utf8_lossy(body));
        }
        let p = peek(br#"{"id":null,"method":"notifications/initialized"}"#).unwrap();
        assert_eq!(p.id, None);
        let raw_control = b"{\"params\":{\"_meta\":{\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x0c\"}}}";
        assert_eq!(peek(raw_control), None, "a raw control character in the rewritten string: not JSON");
        let escaped = br#"{"method":"x","params":{"_meta":{"traceparent":"\u0030-a"}}}"#;
        let (value, (from, to)) = peek(escaped).unwrap().traceparent.unwrap();
        assert_eq!(value, "0-a", "an escaped value is read as the server reads it");
        assert_eq!(&escaped[from..to], br#""\u0030-a""#);
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(peek(deep.as_bytes()), None, "nesting is bounded (serde's skipping is not)");
        let fine = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(peek(fine.as_bytes()), Some(Peek::default()));
    }

    /// Random well-formed bodies built from the members the scanner wants (and others), in
    /// every type, repeated, escaped, spaced and nested: the scanner reads what serde reads.
    #[test]
    fn the_scanner_reads_what_serde_reads() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        };
        const KEYS: [&str; 12] = [
            "method",
            "id",
            "params",
            "name",
            "uri",
            "_meta",
            "clientInfo",
            "traceparent",
            "tracestate",
            "arguments",
            "jsonrpc",
            "m\\u0065thod",
        ];
        const STRINGS: [&str; 7] = [
            "tools/call",
            "",
            "a\\\"b",
            "\\u00e9t\\u00e9",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "é ☃",
            "x\\/y",
        ];
        fn value(next: &mut impl FnMut(u64) -> u64, depth: u32, out: &mut String) {
            let space = |next: &mut dyn FnMut(u64) -> u64, out: &mut String| {
                out.push_str([" ", "", "", "\n\t", "\r\n "][next(5) as usize]);
            };
            match next(if depth == 0 { 6 } else { 8 }) {
                0 => out.push_str("null"),
                1 => out.push_str(["true", "false"][next(2) as usize]),
                2 => out.push_str(["0", "-1", "3.25", "1e9", "-0.5E-3", "12345678901234567890"][next(6) as usize]),
                3..=5 => {
                    out.push('"');
                    out.push_str(STRINGS[next(STRINGS.len() as u64) as usize]);
                    out.push('"');
                }
                6 => {
                    out.push('[');
                    for i in 0..next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        space(next, out);
                        value(next, depth - 1, out);
                    }
                    out.push(']');
                }
                _ => object(next, depth - 1, out),
            }
        }
        fn object(next: &mut impl FnMut(u64) -> u64, depth: u32, out: &mut String) {
            out.push('{');
            for i in 0..next(5) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(["", " ", "\n"][next(3) as usize]);
                out.push('"');
                out.push_str(KEYS[next(KEYS.len() as u64) as usize]);
                out.push_str(["\":", "\" : "][next(2) as usize]);
                value(next, depth, out);
            }
            out.push('}');
        }
        let (mut read, mut total) = (0, 0);
        for _ in 0..30_000 {
            let mut body = String::new();
            object(&mut next, 4, &mut body);
            let expected = reference(body.as_bytes());
            assert_eq!(peek(body.as_bytes()), expected, "{body}");
            total += 1;
            read += usize::from(expected.is_some_and(|p| p.method.is_some() || p.traceparent.is_some()));
        }
        assert!(read > total / 20, "the generator reaches the wanted members: {read} of {total}");
    }
}
