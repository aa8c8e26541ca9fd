//! MCP list answers (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) rewritten so a client sees only the items it may use
//! (ToolHive's `pkg/authz/response_filter.go`, with its fail-closed rules; MCP 2025-11-25
//! Server Features for the list results; JSON-RPC 2.0 for responses and ids).
//!
//! This module owns the interface and the streaming adapter both proxy engines drive
//! ([`ListRewrite`]); [`message`] rewrites one JSON-RPC message (reading it with [`json`],
//! matching ids with [`id`]), [`sse`] an event stream event by event. Which items stay is not decided here: a [`Judge`] decides (Cedar,
//! `--tools`, `--tools-override`).
//!
//! The rule everywhere: a list the proxy cannot read goes to the client as a JSON-RPC
//! error, never as it came. What is not a list answer passes as it came.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod id;
mod json;
mod message;
mod sse;

pub use message::{Message, rewrite_message};

use message::Target;
use sse::EventStream;

/// The list a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] =
        [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates];

    /// For a JSON-RPC method name: "tools/list", "prompts/list", "resources/list",
    /// "resources/templates/list". Exact match: MCP method names are case-sensitive.
    pub fn of_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    /// The result field holding the items: "tools", "prompts", "resources",
    /// "resourceTemplates".
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }
}

/// Decides each listed item: `false` removes it; it may also change the item in place
/// (rename a tool, replace its description). An item whose JSON has a duplicate member
/// name anywhere never reaches the judge (the whole answer is refused), so what the judge
/// sees is what any client would read.
pub trait Judge: Send + Sync {
    fn keep(&self, kind: ListKind, item: &mut Map<String, Value>) -> bool;

    /// Whether `keep` may change an item it keeps. When it cannot, a kept item is passed as
    /// the server wrote it without comparing it to a copy first (a list of a hundred tools
    /// is otherwise copied whole once more).
    fn may_change(&self) -> bool {
        true
    }
}

/// The answer held more bytes at once than the rewriter may hold (a JSON body, or one SSE
/// event). The rewriter fails closed: from then on it gives nothing but this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the MCP server's list answer holds more than {limit} bytes at once (a JSON body or one event), the most the proxy's policy filter reads"
)]
pub struct TooLarge {
    limit: usize,
}

impl TooLarge {
    /// The limit that was passed.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The streaming adapter both proxy engines drive, answering one list request.
pub struct ListRewrite {
    target: Target,
    judge: Arc<dyn Judge>,
    limit: usize,
    body: Body,
}

enum Body {
    /// A JSON body, held whole until the end (a list is one message).
    Json(BytesMut),
    Events(EventStream),
    /// The limit was passed: failed closed for good. Whether the answer is an event stream.
    Failed {
        event_stream: bool,
    },
}

impl ListRewrite {
    /// `event_stream`: the answer is `text/event-stream` (else a JSON body). `limit`: most
    /// bytes held at once (a JSON body, or one SSE event); past it the rewriter fails
    /// closed. `id` is the request's JSON-RPC id as the client sent it.
    pub fn new(
        event_stream: bool,
        id: Box<RawValue>,
        kind: ListKind,
        judge: Arc<dyn Judge>,
        limit: usize,
    ) -> ListRewrite {
        let body = if event_stream { Body::Events(EventStream::default()) } else { Body::Json(BytesMut::new()) };
        // The id is only ever read again as text (to match answers, to echo in a refusal).
        let id: Box<str> = id.into();
        ListRewrite { target: Target::new(&id, kind), judge, limit, body }
    }

    /// For an event stream that answers no one request (a standalone GET stream): every
    /// response event that carries a list (`result.tools`, `prompts`, `resources` or
    /// `resourceTemplates`) is filtered, whatever its id.
    pub fn any_list(judge: Arc<dyn Judge>, limit: usize) -> ListRewrite {
        ListRewrite { target: Target::any(), judge, limit, body: Body::Events(EventStream::default()) }
    }

    /// Takes the next bytes of the answer's payload (already de-chunked); returns what may
    /// go to the client now. JSON: nothing until [`finish`](Self::finish). SSE: every
    /// complete event as soon as its blank line arrives — events that are not the answer
    /// unchanged, the answer re-serialised — and no event reordered or held past its end.
    pub fn feed(&mut self, data: Bytes) -> Result<Bytes, TooLarge> {
        let too_large = TooLarge { limit: self.limit };
        let out = match &mut self.body {
            Body::Failed { .. } => return Err(too_large),
            Body::Json(held) if held.len().saturating_add(data.len()) > self.limit => Err(too_large),
            Body::Json(held) => {
                held.extend_from_slice(&data);
                Ok(Bytes::new())
            }
            Body::Events(events) => events.feed(data, &self.target, &*self.judge, self.limit),
        };
        if out.is_err() {
            // Nothing held is of use any more.
            self.body = Body::Failed { event_stream: self.is_event_stream() };
        }
        out
    }

    /// The end of the answer: the rewritten JSON body, or whatever the event stream still
    /// held (an incomplete last event; filtered like the others, because some clients,
    /// the Go SDK's among them, dispatch it at the end of the stream).
    pub fn finish(self) -> Result<Bytes, TooLarge> {
        match self.body {
            Body::Failed { .. } => Err(TooLarge { limit: self.limit }),
            Body::Json(held) => {
                let held = held.freeze();
                Ok(match self.target.rewrite(&held, &*self.judge) {
                    Message::Unchanged => held,
                    Message::Rewritten(body) | Message::Refused(body) => Bytes::from(body),
                })
            }
            Body::Events(events) => events.finish(&self.target, &*self.judge, self.limit),
        }
    }

    /// What to send the client in place of an answer that cannot be filtered (after
    /// [`TooLarge`]): the JSON-RPC error for the request, as a JSON body, or as one event
    /// (the stream only ever stops at an event boundary, so it starts on a fresh line).
    pub fn refusal(&self) -> Bytes {
        let body = self.target.refusal();
        if self.is_event_stream() { Bytes::from(sse::refusal_event(&body)) } else { Bytes::from(body) }
    }

    fn is_event_stream(&self) -> bool {
        matches!(self.body, Body::Events(_) | Body::Failed { event_stream: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses names containing "secret"; renames "old" to "new".
    pub(super) struct TestJudge;

    impl Judge for TestJudge {
        fn keep(&self, _kind: ListKind, item: &mut Map<String, Value>) -> bool {
            match item.get("name").and_then(Value::as_str) {
                Some(name) if name.contains("secret") => false,
                Some("old") => {
                    item.insert("name".into(), Value::from("new"));
                    true
                }
                _ => true,
            }
        }
    }

    fn rewriter(event_stream: bool, limit: usize) -> ListRewrite {
        let id = RawValue::from_string("1".into()).unwrap();
        ListRewrite::new(event_stream, id, ListKind::Tools, Arc::new(TestJudge), limit)
    }

    #[test]
    fn kinds_and_methods() {
        for (method, kind, field) in [
            ("tools/list", ListKind::Tools, "tools"),
            ("prompts/list", ListKind::Prompts, "prompts"),
            ("resources/list", ListKind::Resources, "resources"),
            ("resources/templates/list", ListKind::ResourceTemplates, "resourceTemplates"),
        ] {
            assert_eq!(ListKind::of_method(method), Some(kind));
            assert_eq!(kind.field(), field);
        }
        for other in ["tools/call", "Tools/list", "tools/list ", "", "resources/read"] {
            assert_eq!(ListKind::of_method(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_standalone_stream_has_every_list_answer_filtered_whatever_its_id() {
        let mut rw = ListRewrite::any_list(Arc::new(TestJudge), 1 << 16);
        let stream = concat!(
            "event: endpoint\ndata: /messages?sessionId=1\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":41,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"secret\"}]}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{\"prompts\":[{\"name\":\"secret-p\"}]}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{\"content\":[]}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":43,\"result\":{\"tools\":[],\"prompts\":[]}}\n\n",
        );
        let mut out = rw.feed(Bytes::from_static(stream.as_bytes())).unwrap().to_vec();
        out.extend_from_slice(&rw.finish().unwrap());
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("event: endpoint\ndata: /messages?sessionId=1\n\n"), "{out}");
        assert!(out.contains("list_changed"), "notifications pass: {out}");
        assert!(out.contains(r#"{"name":"a"}"#) && !out.contains("secret"), "{out}");
        assert!(out.contains(r#""id":42,"result":{"content":[]}"#), "other results pass: {out}");
        assert!(out.contains("-32603"), "two lists in one answer are refused: {out}");
    }

    #[test]
    fn json_body_is_held_until_the_end() {
        let mut rw = rewriter(false, 1024);
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"secret"}]}}"#;
        let (a, b) = body.split_at(20);
        assert!(rw.feed(Bytes::copy_from_slice(a)).unwrap().is_empty());
        assert!(rw.feed(Bytes::copy_from_slice(b)).unwrap().is_empty());
        assert_eq!(&rw.finish().unwrap()[..], br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#);
    }

    #[test]
    fn json_body_unchanged_is_the_same_bytes() {
        let mut rw = rewriter(false, 1024);
        let body = "\u{feff} {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n";
        rw.feed(Bytes::from(body)).unwrap();
        assert_eq!(&rw.finish().unwrap()[..], body.as_bytes());
    }

    #[test]
    fn json_body_past_the_limit_fails_closed_for_good() {
        let mut rw = rewriter(false, 10);
        assert!(rw.feed(Bytes::from_static(b"{\"a\":")).is_ok());
        let e = rw.feed(Bytes::from_static(b"123456")).unwrap_err();
        assert_eq!(e.limit(), 10);
        assert!(e.to_string().contains("10 bytes"), "{e}");
        assert!(rw.feed(Bytes::new()).is_err());
        assert_eq!(
            &rw.refusal()[..],
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"the MCP server's list answer could not be read by the proxy's policy"}}"#
        );
        assert!(rw.finish().is_err());
        let mut exact = rewriter(false, 10);
        assert!(exact.feed(Bytes::from_static(b"0123456789")).is_ok(), "the limit itself is allowed");
    }

    #[test]
    fn event_stream_past_the_limit_fails_closed_and_refuses_as_an_event() {
        let mut rw = rewriter(true, 16);
        assert_eq!(&rw.feed(Bytes::from_static(b": ok\n\n")).unwrap()[..], b": ok\n\n");
        assert!(rw.feed(Bytes::from_static(b"data: 0123456789abcdef")).is_err());
        assert!(rw.feed(Bytes::from_static(b"\n\n")).is_err());
        let refusal = rw.refusal();
        assert!(refusal.starts_with(b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\""));
        assert!(refusal.ends_with(b"}\n\n"));
        assert!(rw.finish().is_err());
    }
}
