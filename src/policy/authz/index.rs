//! What the loaded policies can see, worked out once at startup so that a decision builds
//! and evaluates no more than it must (a tools/call pays for authorization on every request).
//! ToolHive has no counterpart (cedar-go evaluates every policy on the whole model); the
//! decisions are the same, which the cedarpy cross-check replays on the whole model:
//!
//! - per action, only the policies whose scope admits it. A policy scoped to another action
//!   is false for this request without evaluating anything (the action entity the proxy
//!   builds has no parents, so `action in [...]` is plain membership), and cannot error;
//! - which attributes any policy names. Cedar reads an attribute only by
//!   a literal name (`principal.claim_x`, `resource["arg_y"]`, `has`), and compares entities
//!   by uid, so an attribute no policy names cannot change a decision; it is not built.
//!   The one way to see every key is the context record as a whole (`context == {...}`),
//!   and a policy set that does that gets every attribute.
//!
//! The names are every string of every policy's JSON form (Cedar's own parse, unescaped):
//! a superset of the attribute names, which is all the argument above needs.

/// The policies' own names, looked up on every decision: a fast hasher, since nothing a
/// client sends is ever inserted (no flooding).
type Names = std::collections::HashSet<String, foldhash::fast::RandomState>;

use cedar_policy::{ActionConstraint, PolicySet};
use serde_json::Value;

use super::Action;

/// The attributes the policies name (claims and arguments also without their prefixes).
#[derive(Debug, Default)]
pub(super) struct Visible {
    /// Every name: the resource's own attributes (`name`, `readOnlyHint` ...) are looked up here.
    names: Names,
    /// `claim_<name>` named: the claim's value is built.
    claims: Names,
    /// `claimset_<name>` named.
    claim_sets: Names,
    /// `arg_<name>` named.
    arguments: Names,
    /// `arg_<name>_present` named.
    present: Names,
}

impl Visible {
    pub(super) fn attribute(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub(super) fn claim(&self, name: &str) -> bool {
        self.claims.contains(name)
    }

    pub(super) fn claim_set(&self, name: &str) -> bool {
        self.claim_sets.contains(name)
    }

    pub(super) fn argument(&self, name: &str) -> bool {
        self.arguments.contains(name)
    }

    pub(super) fn present(&self, name: &str) -> bool {
        self.present.contains(name)
    }
}

/// The policies admitting each action, in [`Action::index`] order, ids kept.
pub(super) fn split_by_action(policies: &PolicySet) -> Result<[PolicySet; 3], String> {
    let mut sets = [PolicySet::new(), PolicySet::new(), PolicySet::new()];
    for policy in policies.policies() {
        let admitted: Vec<Action> = match policy.action_constraint() {
            ActionConstraint::Any => Action::ALL.to_vec(),
            ActionConstraint::Eq(uid) => Action::ALL.into_iter().filter(|a| a.id() == uid.id().unescaped()).collect(),
            ActionConstraint::In(uids) => {
                Action::ALL.into_iter().filter(|a| uids.iter().any(|uid| a.id() == uid.id().unescaped())).collect()
            }
        };
        for action in admitted {
            sets[action.index()].add(policy.clone()).map_err(|e| e.to_string())?;
        }
    }
    Ok(sets)
}

/// The attributes the policies can name; `None` when a policy uses the whole context record.
pub(super) fn visible(policies: &PolicySet) -> Result<Option<Visible>, String> {
    let mut names = Names::default();
    let mut whole_context = false;
    for policy in policies.policies() {
        let json = policy.to_json().map_err(|e| e.to_string())?;
        collect(&json, &mut names, &mut whole_context);
    }
    if whole_context {
        return Ok(None);
    }
    let mut visible = Visible::default();
    for name in &names {
        if let Some(claim) = name.strip_prefix("claim_") {
            visible.claims.insert(claim.to_owned());
        } else if let Some(claim) = name.strip_prefix("claimset_") {
            visible.claim_sets.insert(claim.to_owned());
        } else if let Some(argument) = name.strip_prefix("arg_") {
            if let Some(present) = argument.strip_suffix("_present") {
                visible.present.insert(present.to_owned());
            }
            visible.arguments.insert(argument.to_owned());
        }
    }
    visible.names = names;
    Ok(Some(visible))
}

fn is_context(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.len() == 1 && o.get("Var").and_then(Value::as_str) == Some("context"))
}

/// Every string of the policy's JSON (keys too), and whether `context` appears other than
/// as the record an attribute is read from or tested with `has`.
fn collect(value: &Value, names: &mut Names, whole_context: &mut bool) {
    match value {
        Value::String(s) => {
            names.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, names, whole_context)),
        Value::Object(members) => {
            if is_context(value) {
                *whole_context = true;
                return;
            }
            for (key, member) in members {
                names.insert(key.clone());
                match member.as_object() {
                    Some(access) if (key == "." || key == "has") && access.get("left").is_some_and(is_context) => {
                        access.iter().filter(|(k, _)| *k != "left").for_each(|(_, v)| collect(v, names, whole_context));
                    }
                    _ => collect(member, names, whole_context),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::Policy;

    fn set(texts: &[&str]) -> PolicySet {
        let mut set = PolicySet::new();
        for (i, text) in texts.iter().enumerate() {
            let policy = Policy::parse(Some(cedar_policy::PolicyId::new(format!("policy{i}"))), text);
            set.add(policy.expect("parses")).expect("adds");
        }
        set
    }

    #[test]
    fn names_are_collected_with_prefixes_stripped() {
        let policies = set(&[
            r#"permit(principal, action, resource) when { principal.claim_roles.contains("a") && context has claim_x };"#,
            r#"permit(principal, action, resource) when { resource["arg_a b"] == "x" || resource has arg_opts_present };"#,
            r#"permit(principal, action, resource) when { context.claimset_scp.contains("r") && context.claim_org.team == "t" };"#,
        ]);
        let visible = visible(&policies).expect("analyses").expect("no whole context");
        assert!(visible.claim("roles") && visible.claim("x") && visible.claim("org"));
        assert!(!visible.claim("team") && !visible.claim("sub"));
        assert!(visible.claim_set("scp") && !visible.claim_set("roles"));
        assert!(visible.argument("a b") && visible.present("opts") && !visible.argument("b"));
        assert!(visible.attribute("arg_a b") && visible.attribute("contains") && !visible.attribute("name"));
    }

    #[test]
    fn the_whole_context_turns_pruning_off() {
        for text in [
            r#"permit(principal, action, resource) when { context == {} };"#,
            r#"permit(principal, action, resource) when { [context].contains({"a": 1}) };"#,
            r#"permit(principal, action, resource) when { {"k": context}.k has claim_x };"#,
        ] {
            assert!(visible(&set(&[text])).expect("analyses").is_none(), "{text}");
        }
    }

    #[test]
    fn policies_are_split_by_the_actions_they_admit() {
        let policies = set(&[
            r#"permit(principal, action, resource);"#,
            r#"permit(principal, action == Action::"call_tool", resource);"#,
            r#"permit(principal, action in [Action::"get_prompt", Action::"read_resource"], resource);"#,
        ]);
        let [tools, prompts, resources] = split_by_action(&policies).expect("splits");
        let ids = |s: &PolicySet| {
            let mut ids: Vec<String> = s.policies().map(|p| p.id().to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&tools), ["policy0", "policy1"]);
        assert_eq!(ids(&prompts), ["policy0", "policy2"]);
        assert_eq!(ids(&resources), ["policy0", "policy2"]);
    }
}
