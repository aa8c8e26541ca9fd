//! Which of the server's tools a client sees, and under which name: `--tools` (an
//! allow-list of the server's own names) and `--tools-override FILE` (new names and
//! descriptions), ToolHive's flags and file format (`pkg/mcp/tool_filter.go`,
//! `pkg/cli/tools_override.go`).
//!
//! A client only ever sees the names of the view; the server only ever sees its own. So a
//! call on a new name goes to the server under the original one, a call on a renamed
//! tool's old name is a call to a tool that does not exist, and so is a call to a tool
//! outside the allow-list. Cedar policies see the server's names: a policy keeps meaning
//! the same tool whatever it is called in front of clients.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// One entry of `toolsOverride`: a new name, a new description, or both.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Override {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
}

/// The tools a client sees.
#[derive(Debug, Default)]
pub(crate) struct ToolView {
    /// `--tools`: the server's names a client may see; `None` is all of them.
    allow: Option<HashSet<String>>,
    /// Server name → its override.
    overrides: HashMap<String, Override>,
    /// New name → server name.
    renamed: HashMap<String, String>,
}

/// What a client's tool name is to the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolved<'a> {
    /// The server's name for it (the same, or the original of a new name).
    Tool(&'a str),
    /// Not a tool of this view: answered as an unknown tool.
    Hidden,
}

impl ToolView {
    /// The view for `--tools` (`allow`, empty = every tool) and `--tools-override`.
    /// Refuses what would make a name mean two tools.
    pub(crate) fn new(allow: &[String], overrides: HashMap<String, Override>) -> Result<ToolView, String> {
        let allow: Option<HashSet<String>> = (!allow.is_empty()).then(|| allow.iter().cloned().collect());
        let mut renamed = HashMap::new();
        for (original, o) in &overrides {
            if original.is_empty() {
                return Err("an override for an empty tool name".to_owned());
            }
            match (&o.name, &o.description) {
                (None, None) => return Err(format!("the override of {original:?} sets neither name nor description")),
                (Some(n), _) if n.trim().is_empty() => {
                    return Err(format!("the override of {original:?} has an empty name"));
                }
                _ => {}
            }
            if let Some(new) = o.name.as_ref().filter(|n| *n != original)
                && let Some(other) = renamed.insert(new.clone(), original.clone())
            {
                return Err(format!("{other:?} and {original:?} are both renamed to {new:?}"));
            }
        }
        // A new name that the server may also have, shown under its own name, would
        // stand for two tools.
        for (new, original) in &renamed {
            let visible = allow.as_ref().is_none_or(|a| a.contains(new));
            let renamed_away = overrides.get(new).is_some_and(|o| o.name.as_deref().is_some_and(|n| n != new));
            if visible && !renamed_away {
                return Err(format!(
                    "{original:?} is renamed to {new:?}, which may also be a tool of the server's own; rename that one too, or choose another name"
                ));
            }
        }
        Ok(ToolView { allow, overrides, renamed })
    }

    /// Whether the view changes anything at all.
    pub(crate) fn is_identity(&self) -> bool {
        self.allow.is_none() && self.overrides.is_empty()
    }

    /// The server's name for the tool a client called `name`.
    pub(crate) fn resolve<'a>(&'a self, name: &'a str) -> Resolved<'a> {
        let original = match self.renamed.get(name) {
            Some(original) => original.as_str(),
            // A tool renamed away is no longer known by its old name.
            None if self.overrides.get(name).is_some_and(|o| o.name.as_deref().is_some_and(|n| n != name)) => {
                return Resolved::Hidden;
            }
            None => name,
        };
        if self.allow.as_ref().is_some_and(|a| !a.contains(original)) {
            return Resolved::Hidden;
        }
        Resolved::Tool(original)
    }

    /// Whether a listed tool (the server's object, with the server's name in `name`) is
    /// shown; when it is, its override is applied in place.
    pub(crate) fn present(&self, tool: &mut Map<String, Value>) -> bool {
        let Some(name) = tool.get("name").and_then(Value::as_str) else { return false };
        if self.allow.as_ref().is_some_and(|a| !a.contains(name)) {
            return false;
        }
        if let Some(o) = self.overrides.get(name) {
            if let Some(new) = &o.name {
                tool.insert("name".to_owned(), Value::String(new.clone()));
            }
            if let Some(description) = &o.description {
                tool.insert("description".to_owned(), Value::String(description.clone()));
            }
        }
        true
    }
}

/// Reads a `--tools-override` file: `{"toolsOverride": {"<server name>": {"name": …,
/// "description": …}}}`.
pub(crate) fn load_overrides(path: &Path) -> Result<HashMap<String, Override>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct File {
        tools_override: Option<HashMap<String, Override>>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a tools override file: {e}", path.display()))?;
    file.tools_override
        .filter(|o| !o.is_empty())
        .ok_or_else(|| format!("{} has no \"toolsOverride\" entries", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(allow: &[&str], overrides: Value) -> Result<ToolView, String> {
        let overrides: HashMap<String, Override> = serde_json::from_value(overrides).unwrap();
        ToolView::new(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>(), overrides)
    }

    #[test]
    fn allow_list_and_renames() {
        let v = view(&["echo", "add"], json!({"add": {"name": "sum", "description": "adds"}})).unwrap();
        assert_eq!(v.resolve("echo"), Resolved::Tool("echo"));
        assert_eq!(v.resolve("sum"), Resolved::Tool("add"));
        assert_eq!(v.resolve("add"), Resolved::Hidden, "the old name of a renamed tool");
        assert_eq!(v.resolve("rm"), Resolved::Hidden, "outside the allow-list");
        let mut tool = json!({"name": "add", "description": "old", "inputSchema": {}}).as_object().unwrap().clone();
        assert!(v.present(&mut tool));
        assert_eq!(Value::Object(tool), json!({"name": "sum", "description": "adds", "inputSchema": {}}));
        let mut tool = json!({"name": "rm"}).as_object().unwrap().clone();
        assert!(!v.present(&mut tool));
        let mut nameless = Map::new();
        assert!(!v.present(&mut nameless), "a tool without a name is not shown");
    }

    #[test]
    fn description_only_and_no_allow_list() {
        let v = view(&[], json!({"echo": {"description": "says it back"}})).unwrap();
        assert!(!v.is_identity());
        assert_eq!(v.resolve("echo"), Resolved::Tool("echo"));
        assert_eq!(v.resolve("anything"), Resolved::Tool("anything"));
        assert!(view(&[], json!({})).unwrap().is_identity());
    }

    #[test]
    fn names_that_would_mean_two_tools_are_refused() {
        assert!(view(&[], json!({"a": {"name": "x"}, "b": {"name": "x"}})).unwrap_err().contains("both renamed"));
        assert!(view(&[], json!({"a": {"name": "b"}})).unwrap_err().contains("server's own"));
        // Swapping two names is fine: each old name is renamed away.
        let v = view(&[], json!({"a": {"name": "b"}, "b": {"name": "a"}})).unwrap();
        assert_eq!(v.resolve("a"), Resolved::Tool("b"));
        assert_eq!(v.resolve("b"), Resolved::Tool("a"));
        // With an allow-list that leaves out `b`, the server's `b` can never be seen.
        assert!(view(&["a"], json!({"a": {"name": "b"}})).is_ok());
        assert!(view(&[], json!({"a": {}})).unwrap_err().contains("neither"));
        assert!(view(&[], json!({"a": {"name": " "}})).unwrap_err().contains("empty name"));
    }
}
