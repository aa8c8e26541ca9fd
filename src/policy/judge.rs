//! The judge of listed items ([`super::filter::Judge`]) for one client: Cedar's call, get
//! or read decision on each item by the server's name, the tool view's allow-list and
//! overrides, and the annotations the server's own tool list gives, remembered for later
//! calls.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use super::authz::{Action, Authorizer, ToolAnnotations};
use super::filter::{Judge, ListKind};
use super::principal;
use super::tools::ToolView;
use crate::inbound::Identity;

/// Judges listed items for one client.
pub(super) struct ListJudge {
    pub(super) authz: Option<Arc<Authorizer>>,
    pub(super) tools: Option<Arc<ToolView>>,
    pub(super) annotations: Arc<RwLock<HashMap<String, ToolAnnotations>>>,
    pub(super) who: Option<Arc<Identity>>,
}

impl ListJudge {
    /// Remembers a tool's annotations from the server's own list, for later calls.
    fn learn(&self, name: &str, annotations: &ToolAnnotations) {
        // A tool listed without annotations is known too: it has no hints.
        if self.annotations.read().ok().and_then(|a| a.get(name).cloned()).as_ref() == Some(annotations) {
            return;
        }
        if let Ok(mut cache) = self.annotations.write() {
            cache.insert(name.to_owned(), annotations.clone());
        }
    }
}

impl Judge for ListJudge {
    /// Only the tool view renames or redescribes.
    fn may_change(&self) -> bool {
        self.tools.is_some()
    }

    fn keep(&self, kind: ListKind, item: &mut Map<String, Value>) -> bool {
        let field = match kind {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        };
        let Some(id) = item.get(field).and_then(Value::as_str).map(str::to_owned) else { return false };
        if let Some(authz) = &self.authz {
            let principal = principal(self.who.as_ref());
            let allowed = match kind {
                ListKind::Tools => {
                    let annotations = ToolAnnotations::from_tool(item).unwrap_or_default();
                    self.learn(&id, &annotations);
                    authz.allows(&principal, Action::CallTool, &id, None, Some(&annotations))
                }
                ListKind::Prompts => authz.allows(&principal, Action::GetPrompt, &id, None, None),
                ListKind::Resources | ListKind::ResourceTemplates => {
                    authz.allows(&principal, Action::ReadResource, &id, None, None)
                }
            };
            if !allowed {
                return false;
            }
        }
        match (&self.tools, kind) {
            (Some(view), ListKind::Tools) => view.present(item),
            _ => true,
        }
    }
}
