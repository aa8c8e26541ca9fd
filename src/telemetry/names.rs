//! The names a metric label may carry: only tools, prompts and resources the server's own
//! list answers named (`tools/list`, `prompts/list`, `resources/list`). A name a client
//! sends is labelled `other` until the server has listed it, so no client can mint a
//! series per request. The lists are read as they pass to the client, JSON or SSE; a tool
//! the client sees under another name (`--tools-override`) is learned under the server's
//! name, which is the one its calls carry to the server and are labelled with.

use std::collections::HashSet;
use std::sync::Arc;

use foldhash::fast::RandomState;
use std::sync::RwLock;

use serde::Deserialize;

use crate::policy::tools::{Resolved, ToolView};

/// The most names kept per kind: a server's list changing for ever cannot grow memory
/// without bound.
const MOST_NAMES: usize = 10_000;
/// The most of a list answer read to learn from (a larger one teaches nothing).
const MOST_READ: usize = 4 << 20;
/// The label of a name the server has not listed.
pub(crate) const UNLISTED: &str = "other";

/// A vetted label value: a listed name, or [`UNLISTED`].
#[derive(Debug, Clone)]
pub(crate) struct Label(Option<Arc<str>>);

impl Label {
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or(UNLISTED)
    }
}

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    /// The kind a request of `method` is about.
    pub(crate) fn of_method(method: &str) -> Option<Kind> {
        match method {
            "tools/call" => Some(Kind::Tool),
            "prompts/get" => Some(Kind::Prompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some(Kind::Resource),
            _ => None,
        }
    }
}

/// The names learned so far. Every labelled request looks one up: hashed with foldhash,
/// not SipHash, since a set bounded by [`MOST_NAMES`] and filled from the server's own
/// lists has no flooding to resist.
#[derive(Default)]
pub(crate) struct Names {
    tools: RwLock<HashSet<Arc<str>, RandomState>>,
    prompts: RwLock<HashSet<Arc<str>, RandomState>>,
    resources: RwLock<HashSet<Arc<str>, RandomState>>,
}

impl Names {
    fn set(&self, kind: Kind) -> &RwLock<HashSet<Arc<str>, RandomState>> {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
        }
    }

    /// `name` when the server listed it, else [`UNLISTED`]: the set's own copy, so a
    /// request keeps its label past its body without copying the name.
    pub(crate) fn label(&self, kind: Kind, name: &str) -> Label {
        Label(self.set(kind).read().ok().and_then(|s| s.get(name).cloned()))
    }

    fn learn(&self, kind: Kind, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let Ok(mut set) = self.set(kind).write() else { return };
        for name in names {
            if set.len() >= MOST_NAMES {
                break;
            }
            set.insert(name.into());
        }
    }
}

/// A list answer being read as it passes.
pub(crate) struct Learn {
    kind: Kind,
    seen: Vec<u8>,
    overflow: bool,
}

impl Learn {
    /// A reader for the answer to `method`, when it is a list that names things.
    pub(crate) fn for_method(method: &str) -> Option<Learn> {
        let kind = match method {
            "tools/list" => Kind::Tool,
            "prompts/list" => Kind::Prompt,
            "resources/list" => Kind::Resource,
            _ => return None,
        };
        Some(Learn { kind, seen: Vec::new(), overflow: false })
    }

    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.seen.len() + data.len() > MOST_READ {
            self.overflow = true;
            self.seen = Vec::new();
        }
        if !self.overflow {
            self.seen.extend_from_slice(data);
        }
    }

    /// The answer is whole: its names are learned (a tool's as the server names it, when
    /// `tools` shows the client other names).
    pub(crate) fn finish(self, names: &Names, tools: Option<&ToolView>) {
        if self.overflow {
            return;
        }
        let Ok(text) = std::str::from_utf8(&self.seen) else { return };
        let mut found = Vec::new();
        if text.trim_start().starts_with('{') {
            collect(self.kind, text, &mut found);
        } else {
            // An SSE answer: each event's data lines joined make one JSON-RPC message.
            for event in text.split("\n\n").flat_map(|e| e.split("\r\n\r\n")) {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                collect(self.kind, &data.join("\n"), &mut found);
            }
        }
        if let (Kind::Tool, Some(view)) = (self.kind, tools) {
            found = found
                .iter()
                .filter_map(|name| match view.resolve(name) {
                    Resolved::Tool(original) => Some(original.to_owned()),
                    Resolved::Hidden => None,
                })
                .collect();
        }
        names.learn(self.kind, found);
    }
}

#[derive(Deserialize)]
struct Answer {
    result: Option<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    tools: Vec<Item>,
    #[serde(default)]
    prompts: Vec<Item>,
    #[serde(default)]
    resources: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    name: Option<String>,
    uri: Option<String>,
}

fn collect(kind: Kind, json: &str, found: &mut Vec<String>) {
    let Ok(Answer { result: Some(listed) }) = serde_json::from_str::<Answer>(json) else { return };
    match kind {
        Kind::Tool => found.extend(listed.tools.into_iter().filter_map(|i| i.name)),
        Kind::Prompt => found.extend(listed.prompts.into_iter().filter_map(|i| i.name)),
        Kind::Resource => found.extend(listed.resources.into_iter().filter_map(|i| i.uri)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_names_become_labels() {
        let names = Names::default();
        assert_eq!(names.label(Kind::Tool, "echo").as_str(), UNLISTED);
        let mut learn = Learn::for_method("tools/list").unwrap();
        learn.feed(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","#);
        learn.feed(br#""inputSchema":{}},{"name":"add"}]}}"#);
        learn.finish(&names, None);
        assert_eq!(names.label(Kind::Tool, "echo").as_str(), "echo");
        assert_eq!(names.label(Kind::Tool, "add").as_str(), "add");
        assert_eq!(names.label(Kind::Prompt, "echo").as_str(), UNLISTED, "kinds are apart");
    }

    #[test]
    fn an_sse_answer_is_read_too() {
        let names = Names::default();
        let mut learn = Learn::for_method("resources/list").unwrap();
        learn.feed(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"resources\":[{\"uri\":\"file:///a\",\"name\":\"a\"}]}}\n\n");
        learn.finish(&names, None);
        assert_eq!(names.label(Kind::Resource, "file:///a").as_str(), "file:///a");
    }

    #[test]
    fn a_renamed_tool_is_learned_under_the_servers_name() {
        let overrides = serde_json::from_value(serde_json::json!({"add": {"name": "sum"}})).unwrap();
        let view = ToolView::new(&["add".to_owned(), "echo".to_owned()], overrides).unwrap();
        let names = Names::default();
        let mut learn = Learn::for_method("tools/list").unwrap();
        // The list as the client gets it: `add` shown as `sum`.
        learn.feed(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"sum"},{"name":"echo"}]}}"#);
        learn.finish(&names, Some(&view));
        assert_eq!(names.label(Kind::Tool, "add").as_str(), "add", "calls reach the server, and are counted, as add");
        assert_eq!(names.label(Kind::Tool, "echo").as_str(), "echo");
        assert_eq!(
            names.label(Kind::Tool, "sum").as_str(),
            UNLISTED,
            "no call carries the client's name to the server"
        );
    }
}
