//! One JSON-RPC message (a JSON body, or one SSE event's data) that may be the answer to
//! a list request, and its filtered form (JSON-RPC 2.0 §5 for responses and ids, RFC 8259
//! for JSON, MCP 2025-11-25 for the list results; fail-closed rules after ToolHive's
//! `pkg/authz/response_filter.go`).
//!
//! Lean by design: the message is read into borrowed, unparsed pieces (`&RawValue`), only
//! the items of `result.<field>` are parsed, and only that array is rebuilt and spliced
//! into the original bytes. Everything else — `nextCursor`, `_meta`, unknown members, the
//! id, the whitespace — stays byte for byte, and an answer whose items all stay as they
//! were is not touched at all.

use std::borrow::Cow;

use serde::de;
use serde_json::Value;
use serde_json::value::RawValue;

use super::id::Id;
use super::json::{Members, Top};
use super::{Judge, ListKind};
use crate::mcp::strict::Strict;

/// The UTF-8 byte order mark, which a client strips before parsing (WHATWG Encoding,
/// "UTF-8 decode"), so it must be stripped here too or a list behind it would go unread.
pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The refusal's message: generic on purpose (ToolHive #6066: the reason may name items).
const REFUSAL: &str = "the MCP server's list answer could not be read by the proxy's policy";

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Not the answer to the list request: pass it as it is.
    Unchanged,
    /// The answer, with the items the judge refused removed (and others changed).
    Rewritten(Vec<u8>),
    /// The answer could not be read: this JSON-RPC error goes in its place.
    Refused(Vec<u8>),
}

/// Rewrites one JSON-RPC message (one JSON body, or one SSE event's data) if it is the
/// success response to the list request with JSON-RPC id `id` (the raw JSON text of the
/// id). See [`Target`] for which messages count as that response.
pub fn rewrite_message(message: &[u8], id: &str, kind: ListKind, judge: &dyn Judge) -> Message {
    Target::new(id, kind).rewrite(message, judge)
}

/// The request a list answer answers.
pub(super) struct Target {
    /// The id's JSON text, echoed in a refusal (`null` if it was not JSON).
    raw_id: String,
    id: Id,
    /// The list the request asked for; `None`: any list a response carries.
    kind: Option<ListKind>,
}

/// A message that counts as the answer but cannot be read.
struct Unreadable;

impl<E: de::Error> From<E> for Unreadable {
    fn from(_: E) -> Unreadable {
        Unreadable
    }
}

impl Target {
    pub(super) fn new(id: &str, kind: ListKind) -> Target {
        let id = id.trim_matches(is_json_space);
        match serde_json::from_str::<&RawValue>(id) {
            Ok(raw) => Target { raw_id: raw.get().to_owned(), id: Id::of(raw.get()), kind: Some(kind) },
            Err(_) => Target { raw_id: "null".to_owned(), id: Id::Any, kind: Some(kind) },
        }
    }

    /// Every response that carries a list, whatever its id and list.
    pub(super) fn any() -> Target {
        Target { raw_id: "null".to_owned(), id: Id::Any, kind: None }
    }

    /// The JSON-RPC error that replaces an answer that cannot be read: code -32603
    /// (internal error), the request's id.
    pub(super) fn refusal(&self) -> Vec<u8> {
        format!(r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":"{REFUSAL}"}}}}"#, self.raw_id)
            .into_bytes()
    }

    /// Which messages count as the answer, and what is refused:
    /// - a blank message (no JSON text at all) carries nothing: unchanged;
    /// - not JSON (after a UTF-8 BOM): refused, whatever it is, since a laxer client
    ///   (one that trims more whitespace, say) might still read a list in it;
    /// - an object without a `result` member (a notification, a server request, an error
    ///   response): unchanged, whatever its id — a server request may reuse the client's
    ///   ids;
    /// - an object with a `result` member and duplicate member names: refused (a client's
    ///   parser might take the copy this one did not);
    /// - an object with a `result` member and an id a client could take for this request's
    ///   (see [`Id::may_be`]): the answer. With a non-null `error` as well it is refused
    ///   (some clients read it as a success, ToolHive #5257); a `null` result next to an
    ///   error is an error response; a member `method` changes nothing (a client that
    ///   matches on id and `result` still reads the list);
    /// - a batch (array) with such an answer among its messages: refused (a batch answer
    ///   to one request is off-spec; no partial rewrite);
    /// - anything else (another id, no id, a scalar): unchanged.
    pub(super) fn rewrite(&self, message: &[u8], judge: &dyn Judge) -> Message {
        let body = message.strip_prefix(BOM).unwrap_or(message);
        if body.iter().all(|b| is_json_space(char::from(*b))) {
            return Message::Unchanged;
        }
        match self.filter(body, judge) {
            Ok(None) => Message::Unchanged,
            Ok(Some(rewritten)) => Message::Rewritten(rewritten),
            Err(Unreadable) => Message::Refused(self.refusal()),
        }
    }

    fn filter(&self, body: &[u8], judge: &dyn Judge) -> Result<Option<Vec<u8>>, Unreadable> {
        let top =
            std::str::from_utf8(body).ok().and_then(|text| Some((text, serde_json::from_str::<Top<'_>>(text).ok()?)));
        let Some((text, top)) = top else {
            // On a standalone stream, data that is not JSON is no response (the legacy
            // transport's `endpoint` event is a URL): it passes. An answer must be read.
            return if self.kind.is_none() { Ok(None) } else { Err(Unreadable) };
        };
        match top {
            Top::Other => Ok(None),
            Top::Array(messages) => {
                for m in messages {
                    if let Ok(Top::Object(members)) = serde_json::from_str::<Top<'_>>(m.get())
                        && self.is_answer(&members)?
                    {
                        return Err(Unreadable);
                    }
                }
                Ok(None)
            }
            Top::Object(members) if self.is_answer(&members)? => self.filter_answer(text, &members, judge),
            Top::Object(_) => Ok(None),
        }
    }

    /// Whether a message's members make it the answer (see [`Target::rewrite`]).
    fn is_answer(&self, members: &Members<'_>) -> Result<bool, Unreadable> {
        if members.get("result").is_none() {
            return Ok(false);
        }
        if members.has_duplicates() {
            return Err(Unreadable);
        }
        Ok(members.get("id").is_some_and(|id| self.id.may_be(id.get())))
    }

    fn filter_answer(
        &self,
        text: &str,
        members: &Members<'_>,
        judge: &dyn Judge,
    ) -> Result<Option<Vec<u8>>, Unreadable> {
        let result = members.get("result").ok_or(Unreadable)?;
        if members.get("error").is_some_and(|e| e.get() != "null") {
            return if result.get() == "null" { Ok(None) } else { Err(Unreadable) };
        }
        let fields: Members<'_> = serde_json::from_str(result.get())?;
        if fields.has_duplicates() {
            return Err(Unreadable);
        }
        let (kind, list) = match self.kind {
            Some(kind) => (kind, fields.get(kind.field()).ok_or(Unreadable)?),
            None => {
                let mut present = ListKind::ALL.into_iter().filter_map(|k| fields.get(k.field()).map(|l| (k, l)));
                match (present.next(), present.next()) {
                    (None, _) => return Ok(None),
                    (Some(one), None) => one,
                    // Two lists in one answer are no MCP result: refused, not half-filtered.
                    (Some(_), Some(_)) => return Err(Unreadable),
                }
            }
        };
        let items: Vec<&RawValue> = serde_json::from_str(list.get())?;

        let mut kept: Vec<Cow<'_, str>> = Vec::with_capacity(items.len());
        let mut changed = false;
        for item in items {
            let Strict(Value::Object(mut object)) = serde_json::from_str(item.get())? else {
                return Err(Unreadable);
            };
            let before = judge.may_change().then(|| object.clone());
            if !judge.keep(kind, &mut object) {
                changed = true;
            } else if before.is_none_or(|before| object == before) {
                kept.push(Cow::Borrowed(item.get()));
            } else {
                changed = true;
                kept.push(Cow::Owned(serde_json::to_string(&object).map_err(|_| Unreadable)?));
            }
        }
        if !changed {
            return Ok(None);
        }

        // `list` borrows from `text`: its offset there is where the new array goes. (Checked:
        // were it ever a copy, the arithmetic would point anywhere.)
        let start = (list.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize).ok_or(Unreadable)?;
        let end = start.checked_add(list.get().len()).ok_or(Unreadable)?;
        if text.get(start..end) != Some(list.get()) {
            return Err(Unreadable);
        }
        let (Some(head), Some(tail)) = (text.get(..start), text.get(end..)) else { return Err(Unreadable) };
        let mut out = Vec::with_capacity(text.len());
        out.extend_from_slice(head.as_bytes());
        out.push(b'[');
        for (i, item) in kept.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item.as_bytes());
        }
        out.push(b']');
        out.extend_from_slice(tail.as_bytes());
        Ok(Some(out))
    }
}

/// JSON's insignificant whitespace (RFC 8259 §2).
fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestJudge;
    use super::*;

    fn rewrite(message: &str, id: &str) -> Message {
        rewrite_message(message.as_bytes(), id, ListKind::Tools, &TestJudge)
    }

    fn rewritten(message: &str, id: &str) -> String {
        match rewrite(message, id) {
            Message::Rewritten(out) => String::from_utf8(out).unwrap(),
            other => panic!("expected a rewrite of {message}, got {other:?}"),
        }
    }

    fn refused(message: &[u8]) -> bool {
        matches!(rewrite_message(message, "1", ListKind::Tools, &TestJudge), Message::Refused(_))
    }

    const REFUSAL_1: &str = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"the MCP server's list answer could not be read by the proxy's policy"}}"#;

    #[test]
    fn removes_refused_items_and_keeps_everything_else_byte_for_byte() {
        let answer = r#"{ "jsonrpc" : "2.0", "result": {"nextCursor":"c2", "_meta": {"x": [1, 2]},
  "tools": [ {"name":"a", "inputSchema":{"type":"object"}} , {"name":"top-secret"}, {"name" : "b"} ],
  "ttlMs": 5, "cacheScope": "user", "extra": null}, "id": 1, "unknown": {"k": "v"} }"#;
        assert_eq!(
            rewritten(answer, "1"),
            r#"{ "jsonrpc" : "2.0", "result": {"nextCursor":"c2", "_meta": {"x": [1, 2]},
  "tools": [{"name":"a", "inputSchema":{"type":"object"}},{"name" : "b"}],
  "ttlMs": 5, "cacheScope": "user", "extra": null}, "id": 1, "unknown": {"k": "v"} }"#
        );
    }

    #[test]
    fn an_answer_with_nothing_to_change_is_unchanged() {
        assert_eq!(
            rewrite(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#, "1"),
            Message::Unchanged
        );
        assert_eq!(rewrite(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#, "1"), Message::Unchanged);
    }

    #[test]
    fn a_changed_item_is_re_serialised_and_the_others_are_not() {
        let out = rewritten(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"old","description":"d"},{ "name": "x" }]}}"#,
            "1",
        );
        // The changed item's member order is serde_json's (a feature decides it).
        let (head, tail) = out.split_once(r#"[{"#).unwrap();
        assert_eq!(head, r#"{"jsonrpc":"2.0","id":1,"result":{"tools":"#);
        assert!(tail.ends_with(r#"},{ "name": "x" }]}}"#), "{out}");
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["result"]["tools"][0], serde_json::json!({"name": "new", "description": "d"}));
    }

    #[test]
    fn every_list_kind_reads_its_own_field() {
        for kind in [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates] {
            let field = kind.field();
            let answer = format!(
                r#"{{"jsonrpc":"2.0","id":"q","result":{{"{field}":[{{"name":"secret"}}],"other":[{{"name":"a"}}]}}}}"#
            );
            let out = rewrite_message(answer.as_bytes(), "\"q\"", kind, &TestJudge);
            let expected = answer.replacen(r#"[{"name":"secret"}]"#, "[]", 1);
            assert_eq!(out, Message::Rewritten(expected.into_bytes()), "{kind:?}");
            // The other lists' fields are not this answer's list.
            let other = format!(r#"{{"jsonrpc":"2.0","id":"q","result":{{"{field}":[],"x":[{{"name":"secret"}}]}}}}"#);
            assert_eq!(rewrite_message(other.as_bytes(), "\"q\"", kind, &TestJudge), Message::Unchanged);
        }
    }

    #[test]
    fn messages_that_are_not_the_answer_are_unchanged() {
        for message in [
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":"2","result":{"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":null,"result":{"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","result":{"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"},"result":null}"#,
            r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":2,"result":{}}]"#,
            r#""a string""#,
            "42",
            "null",
            "",
            " \r\n\t",
            "\u{feff}",
        ] {
            assert_eq!(rewrite(message, "1"), Message::Unchanged, "{message}");
        }
    }

    #[test]
    fn error_and_result_together_is_refused_but_a_null_error_is_no_error() {
        let both =
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"},"result":{"tools":[{"name":"secret"}]}}"#;
        assert_eq!(rewrite(both, "1"), Message::Refused(REFUSAL_1.into()));
        let null_error = r#"{"jsonrpc":"2.0","id":1,"error":null,"result":{"tools":[{"name":"secret"}]}}"#;
        assert_eq!(rewritten(null_error, "1"), r#"{"jsonrpc":"2.0","id":1,"error":null,"result":{"tools":[]}}"#);
        let with_method = r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"secret"}]}}"#;
        assert_eq!(rewritten(with_method, "1"), r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[]}}"#);
    }

    #[test]
    fn ids_match_as_a_client_would_match_them() {
        let answer = |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"secret"}}]}}}}"#);
        for (ours, theirs) in [
            ("1", "1"),
            ("1", "1.0"),
            ("1", "1e0"),
            ("1", "10e-1"),
            ("1", r#""1""#),
            ("1", r#"" 1\n""#),
            ("1", r#""0x1""#),
            ("1", r#""+1.""#),
            ("0", r#""""#),
            ("0", "-0"),
            (r#""1""#, "1"),
            (r#""a""#, r#""\u0061""#),
            (r#"  "a" "#, r#""a""#),
            ("not json", "7"),
        ] {
            assert!(matches!(rewrite(&answer(theirs), ours), Message::Rewritten(_)), "{ours} vs {theirs}");
        }
        for (ours, theirs) in [
            ("1", "2"),
            ("1", r#""one""#),
            ("1", r#""1x""#),
            ("1", "true"),
            ("1", "[1]"),
            (r#""a""#, r#""A""#),
            (r#""a""#, "null"),
            ("null", "null"),
        ] {
            assert_eq!(rewrite(&answer(theirs), ours), Message::Unchanged, "{ours} vs {theirs}");
        }
        // The refusal echoes the request's id, not the answer's.
        let refused = rewrite(r#"{"jsonrpc":"2.0","id":"1","result":[]}"#, "1");
        assert_eq!(refused, Message::Refused(REFUSAL_1.into()));
        let refused = rewrite(r#"{"id":"x","result":7}"#, r#""x""#);
        assert_eq!(refused, Message::Refused(REFUSAL_1.replace(r#""id":1"#, r#""id":"x""#).into()));
        let refused = rewrite(r#"{"id":"x","result":7}"#, "not json");
        assert_eq!(refused, Message::Refused(REFUSAL_1.replace(r#""id":1"#, r#""id":null"#).into()));
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        for message in [
            &b"not json"[..],
            b"\xEF\xBB\xBFnot json",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}} trailing",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}{}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[\"\xff\"]}}",
            b"\xC2\xA0{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[]}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":null}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":{\"name\":\"a\"}}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},\"b\"]}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},null]}}",
            b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}]",
        ] {
            assert!(refused(message), "{}", String::from_utf8_lossy(message));
        }
    }

    #[test]
    fn duplicate_member_names_are_refused() {
        for message in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"r\u0065sult":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"id":1,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"secret"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret","name":"ok"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","annotations":{"readOnlyHint":true,"readOnlyHint":false}}]}}"#,
            // Whatever the id: which copy wins is the question.
            r#"{"jsonrpc":"2.0","id":9,"result":{},"x":1,"x":2}"#,
        ] {
            assert!(refused(message.as_bytes()), "{message}");
        }
        // A message without a result cannot be the answer, duplicates or not.
        assert_eq!(rewrite(r#"{"jsonrpc":"2.0","method":"a","method":"b"}"#, "1"), Message::Unchanged);
    }

    #[test]
    fn a_byte_order_mark_is_stripped() {
        let answer = "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}";
        assert_eq!(rewritten(answer, "1"), r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
        assert_eq!(rewrite("\u{feff}{\"jsonrpc\":\"2.0\",\"method\":\"x\"}", "1"), Message::Unchanged);
    }

    #[test]
    fn escapes_and_whitespace_outside_the_array_survive() {
        let answer =
            "{\"id\":1,\"result\":{\"t\\u006fols\":\n[\n{\"name\":\"\\u0073ecret\"}\n]\n,\"s\":\"\\ud83d\\ude00\"}}";
        assert_eq!(rewritten(answer, "1"), "{\"id\":1,\"result\":{\"t\\u006fols\":\n[]\n,\"s\":\"\\ud83d\\ude00\"}}");
    }
}
