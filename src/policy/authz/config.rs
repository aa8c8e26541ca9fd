//! The `--authz-config` file: ToolHive's authorization config (`pkg/authz/authorizers/config.go`
//! `LoadConfig` / `Validate`, `cedar/core.go` `Factory` and `NewCedarAuthorizer`), read and
//! checked once at startup.
//!
//! ```yaml
//! version: "1.0"          # required, any non-empty string (ToolHive checks no value)
//! type: cedarv1           # the only type here; ToolHive's `httpv1` PDP is not supported
//! cedar:
//!   policies: ['permit(principal, action == Action::"call_tool", resource == Tool::"weather");']
//!   entities_json: "[]"   # optional
//!   group_claim_name: ...  role_claim_name: ...  group_entity_type: ...  multi_valued_claims: [...]
//! ```
//!
//! As in ToolHive: `.yaml`/`.yml` is YAML, `.json` or no extension is JSON, any other
//! extension is refused; keys match exactly or else case-insensitively and unknown keys are
//! ignored (Go's `encoding/json`); each list entry is one policy. Stricter than ToolHive,
//! where it would only fail later or silently: a policy whose scope names an action other
//! than the three MCP ones is refused (ToolHive never asks about any other, so such a policy
//! could never apply), and `primary_upstream_provider` (the embedded auth server's claim
//! source, which this proxy does not have; ToolHive would deny every request) is refused.
//!
//! Errors name the file, the policy (1-based, of how many), the line:column within that
//! policy's text and Cedar's reason, quoting at most the offending line of the policy.

use std::path::Path;

use cedar_policy::{ActionConstraint, Entities, EntityTypeName, Policy, PolicyId, PolicySet};
use serde_json::{Map, Value};

use super::model::ClaimOptions;
use super::{Action, Authorizer};

/// The one authorizer type this proxy implements (cedar/core.go `ConfigType`).
const CEDAR_TYPE: &str = "cedarv1";

/// The default group entity type (entity.go `EntityTypeTHVGroup`).
const DEFAULT_GROUP_TYPE: &str = "THVGroup";

/// Longest quoted excerpt or reason, so a pathological line cannot flood the log.
const MAX_QUOTE_CHARS: usize = 160;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthzConfigError {
    #[error("{source_name}: cannot read the authorization config: {error}")]
    Read { source_name: String, error: std::io::Error },
    #[error("{source_name}: unsupported file format {extension:?} (supported: .json, .yaml, .yml)")]
    Format { source_name: String, extension: String },
    #[error("{source_name}: invalid {format}: {reason}")]
    Syntax { source_name: String, format: &'static str, reason: String },
    #[error("{source_name}: {field}: {problem}")]
    Field { source_name: String, field: &'static str, problem: String },
    #[error("{source_name}: unsupported authorization type {found:?} (supported: \"cedarv1\")")]
    Type { source_name: String, found: String },
    #[error("{source_name}: cedar.policies: at least one policy is required")]
    NoPolicies { source_name: String },
    #[error("{source_name}: cedar policy {index} of {count}, at {line}:{column}: {reason}: `{excerpt}`")]
    Policy {
        source_name: String,
        index: usize,
        count: usize,
        line: usize,
        column: usize,
        reason: String,
        excerpt: String,
    },
    #[error(
        "{source_name}: cedar policy {index} of {count}, at {line}:{column}: unknown action {action} \
         (ToolHive's actions: Action::\"call_tool\", Action::\"get_prompt\", Action::\"read_resource\"): `{excerpt}`"
    )]
    UnknownAction {
        source_name: String,
        index: usize,
        count: usize,
        line: usize,
        column: usize,
        action: String,
        excerpt: String,
    },
    #[error("{source_name}: cedar.entities_json: {reason}")]
    Entities { source_name: String, reason: String },
}

/// Loads `--authz-config FILE`; the format follows the extension, as in ToolHive.
pub(super) fn load(path: &Path) -> Result<Authorizer, AuthzConfigError> {
    let source_name = path.display().to_string();
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let yaml = match extension.as_str() {
        "yaml" | "yml" => true,
        "json" | "" => false,
        _ => return Err(AuthzConfigError::Format { source_name, extension: format!(".{extension}") }),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| AuthzConfigError::Read { source_name: source_name.clone(), error })?;
    from_text(&text, yaml, &source_name)
}

/// Parses a config from text; `source` names it in errors.
pub(super) fn from_text(text: &str, yaml: bool, source: &str) -> Result<Authorizer, AuthzConfigError> {
    let document: Value = if yaml {
        serde_yaml_ng::from_str(text).map_err(|e| syntax(source, "YAML", &e))?
    } else {
        serde_json::from_str(text).map_err(|e| syntax(source, "JSON", &e))?
    };
    let field_error = |field: &'static str, problem: &str| AuthzConfigError::Field {
        source_name: source.to_owned(),
        field,
        problem: problem.to_owned(),
    };
    let Value::Object(top) = document else {
        return Err(field_error("(top level)", "expected a mapping with version, type and cedar"));
    };
    // config.go `Validate`: version and type must be present; no version value is checked.
    // YAML reads an unquoted `version: 1.0` as a number; Go's decoder refuses it too.
    let version = string_field(&top, "version")
        .map_err(|_| field_error("version", "expected a string, such as \"1.0\" (quoted)"))?;
    if version.is_empty() {
        return Err(field_error("version", "is required"));
    }
    let kind = string_field(&top, "type").map_err(|p| field_error("type", p))?;
    if kind.is_empty() {
        return Err(field_error("type", "is required"));
    }
    if kind != CEDAR_TYPE {
        return Err(AuthzConfigError::Type { source_name: source.to_owned(), found: quote(kind) });
    }
    let cedar = match field(&top, "cedar") {
        Some(Value::Object(cedar)) => cedar,
        None | Some(Value::Null) => return Err(field_error("cedar", "is required (missing 'cedar' field)")),
        Some(_) => return Err(field_error("cedar", "expected a mapping")),
    };
    let policy_texts = string_list(cedar, "policies").map_err(|p| field_error("cedar.policies", p))?;
    if policy_texts.is_empty() {
        return Err(AuthzConfigError::NoPolicies { source_name: source.to_owned() });
    }
    if !string_field(cedar, "primary_upstream_provider")
        .map_err(|p| field_error("cedar.primary_upstream_provider", p))?
        .is_empty()
    {
        return Err(field_error(
            "cedar.primary_upstream_provider",
            "is not supported: it names the claim source of ToolHive's embedded auth server, which this proxy does not have",
        ));
    }
    let mut options = ClaimOptions {
        group_claim_name: string_field(cedar, "group_claim_name")
            .map_err(|p| field_error("cedar.group_claim_name", p))?
            .to_owned(),
        role_claim_name: string_field(cedar, "role_claim_name")
            .map_err(|p| field_error("cedar.role_claim_name", p))?
            .to_owned(),
        multi_valued_claims: string_list(cedar, "multi_valued_claims")
            .map_err(|p| field_error("cedar.multi_valued_claims", p))?
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    // A name listed twice would add its `claimset_` attribute twice (Cedar refuses that).
    let mut seen = std::collections::HashSet::new();
    options.multi_valued_claims.retain(|name| seen.insert(name.clone()));
    let group_type = string_field(cedar, "group_entity_type").map_err(|p| field_error("cedar.group_entity_type", p))?;
    let group_type = check_group_type(group_type).map_err(|p| field_error("cedar.group_entity_type", &p))?;
    let entities_text = string_field(cedar, "entities_json").map_err(|p| field_error("cedar.entities_json", p))?;

    let policies = parse_policies(&policy_texts, source)?;
    let base = parse_entities(entities_text)
        .map_err(|reason| AuthzConfigError::Entities { source_name: source.to_owned(), reason })?;
    Authorizer::new(&policies, base, options, group_type).map_err(|p| field_error("cedar", &p))
}

fn syntax(source: &str, format: &'static str, error: &dyn std::fmt::Display) -> AuthzConfigError {
    AuthzConfigError::Syntax { source_name: source.to_owned(), format, reason: quote(&error.to_string()) }
}

/// Go's `encoding/json` field matching: the exact key, else a case-insensitive one.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A string field; absent or null is `""`, as a Go string field would be.
fn string_field<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, &'static str> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err("expected a string"),
    }
}

/// A list of strings; absent or null is empty, as a Go `[]string` field would be.
fn string_list<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Vec<&'a str>, &'static str> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|item| item.as_str().ok_or("expected a list of strings")).collect()
        }
        Some(_) => Err("expected a list of strings"),
    }
}

/// core.go `validateGroupEntityType`: empty means `THVGroup`; no namespace; a valid Cedar
/// identifier, decided by Cedar's own parser on the same synthetic policy ToolHive parses.
fn check_group_type(name: &str) -> Result<&str, String> {
    if name.is_empty() {
        return Ok(DEFAULT_GROUP_TYPE);
    }
    if name.contains("::") {
        return Err(format!("{:?} contains \"::\": namespaced entity types are not supported", quote(name)));
    }
    let synthetic = format!("permit(principal in {name}::\"x\", action, resource);");
    // The second check refuses what only parses thanks to the template around it (`A\n`).
    match (Policy::parse(None, &synthetic), name.parse::<EntityTypeName>()) {
        (Ok(_), Ok(_)) => Ok(name),
        _ => Err(format!("{:?} is not a valid Cedar identifier", quote(name))),
    }
}

/// Each entry is one static policy, id `policy<i>` (0-based, as ToolHive names them).
fn parse_policies(texts: &[&str], source: &str) -> Result<PolicySet, AuthzConfigError> {
    let count = texts.len();
    let mut set = PolicySet::new();
    for (i, text) in texts.iter().enumerate() {
        let policy_error = |offset: usize, reason: String| {
            let (line, column, excerpt) = locate(text, offset);
            AuthzConfigError::Policy {
                source_name: source.to_owned(),
                index: i + 1,
                count,
                line,
                column,
                reason: quote(&reason),
                excerpt,
            }
        };
        let policy = Policy::parse(Some(PolicyId::new(format!("policy{i}"))), text).map_err(|errors| {
            let first = errors.iter().next().map(cedar_policy::ffi::DetailedError::from);
            let (offset, reason) = match first {
                Some(detail) => {
                    let label = detail.source_locations.first();
                    let reason = match label.and_then(|l| l.label.as_deref()) {
                        Some(label) => format!("{}; {label}", detail.message),
                        None => detail.message,
                    };
                    (label.map_or(0, |l| l.loc.start), reason)
                }
                None => (0, errors.to_string()),
            };
            policy_error(offset, reason)
        })?;
        check_actions(&policy, text).map_err(|(action, offset)| {
            let (line, column, excerpt) = locate(text, offset);
            AuthzConfigError::UnknownAction {
                source_name: source.to_owned(),
                index: i + 1,
                count,
                line,
                column,
                action,
                excerpt,
            }
        })?;
        set.add(policy).map_err(|e| policy_error(0, e.to_string()))?;
    }
    Ok(set)
}

/// The scope's actions must be ToolHive's three; returns the first other one and where its
/// id appears in the text (best effort: the constraint carries no source position).
fn check_actions(policy: &Policy, text: &str) -> Result<(), (String, usize)> {
    let uids = match policy.action_constraint() {
        ActionConstraint::Any => return Ok(()),
        ActionConstraint::Eq(uid) => vec![uid],
        ActionConstraint::In(uids) => uids,
    };
    for uid in uids {
        let known =
            uid.type_name().to_string() == "Action" && Action::ALL.iter().any(|a| a.id() == uid.id().unescaped());
        if !known {
            let shown = uid.to_string();
            let offset = text
                .find(&shown)
                .or_else(|| text.find(&format!("{:?}", uid.id().unescaped())))
                .or_else(|| text.find("action"))
                .unwrap_or(0);
            return Err((quote(&shown), offset));
        }
    }
    Ok(())
}

/// 1-based line and column (in characters) of a byte offset, and that line, trimmed and
/// shortened: the only part of a policy an error quotes.
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    (line, column, quote(text[line_start..line_end].trim()))
}

/// One line, at most [`MAX_QUOTE_CHARS`] characters.
fn quote(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// `entities_json` as cedar-go reads it (entity_map.go `UnmarshalJSON`): empty or `null`
/// is no entities; `attrs` and `parents` may be left out; a later entity with the same uid
/// replaces an earlier one. Then Cedar's own entity JSON parser.
fn parse_entities(text: &str) -> Result<Entities, String> {
    if text.is_empty() {
        return Ok(Entities::empty());
    }
    let list = match serde_json::from_str::<Value>(text).map_err(|e| quote(&e.to_string()))? {
        Value::Null => return Ok(Entities::empty()),
        Value::Array(list) => list,
        _ => return Err("expected a JSON list of entities".to_owned()),
    };
    let mut kept: Vec<Value> = Vec::with_capacity(list.len());
    let mut positions: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for mut entity in list {
        if let Value::Object(members) = &mut entity {
            for (key, empty) in [("attrs", Value::Object(Map::new())), ("parents", Value::Array(Vec::new()))] {
                if members.get(key).is_none_or(Value::is_null) {
                    members.insert(key.to_owned(), empty);
                }
            }
        }
        match uid_key(&entity).and_then(|key| positions.get(&key).copied().map(|at| (key, at))) {
            Some((_, at)) => kept[at] = entity,
            None => {
                if let Some(key) = uid_key(&entity) {
                    positions.insert(key, kept.len());
                }
                kept.push(entity);
            }
        }
    }
    Entities::from_json_value(Value::Array(kept), None).map_err(|error| {
        let detail = cedar_policy::ffi::DetailedError::from(&error);
        quote(&detail.message)
    })
}

/// An entity's `(type, id)`, from `{"type", "id"}` or `{"__entity": {"type", "id"}}`.
fn uid_key(entity: &Value) -> Option<(String, String)> {
    let uid = entity.get("uid")?;
    let uid = uid.get("__entity").unwrap_or(uid);
    Some((uid.get("type")?.as_str()?.to_owned(), uid.get("id")?.as_str()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather");"#;

    fn json_config(policies: &[&str], entities: &str) -> String {
        serde_json::json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": policies, "entities_json": entities}})
            .to_string()
    }

    fn error(text: &str, yaml: bool) -> String {
        match from_text(text, yaml, "authz.json") {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn json_and_yaml_configs_load() {
        assert!(from_text(&json_config(&[POLICY], "[]"), false, "a.json").is_ok());
        let yaml = "version: \"1.0\"\ntype: cedarv1\ncedar:\n  policies:\n    - 'permit(principal, action == Action::\"call_tool\", resource == Tool::\"weather\");'\n  entities_json: \"[]\"\n";
        assert!(from_text(yaml, true, "a.yaml").is_ok());
        // Go's encoding/json: case-insensitive keys, unknown keys ignored, any version.
        let loose = r#"{"Version": "2", "TYPE": "cedarv1", "extra": 1, "cedar": {"Policies": ["permit(principal, action, resource);"]}}"#;
        assert!(from_text(loose, false, "a.json").is_ok());
    }

    #[test]
    fn header_errors_name_the_field() {
        let missing_version = r#"{"type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"]}}"#;
        assert_eq!(error(missing_version, false), "authz.json: version: is required");
        let http = r#"{"version": "1.0", "type": "httpv1", "cedar": {}}"#;
        assert!(error(http, false).contains("unsupported authorization type \"httpv1\""));
        let no_cedar = r#"{"version": "1.0", "type": "cedarv1"}"#;
        assert!(error(no_cedar, false).contains("cedar: is required"));
        let empty = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": []}}"#;
        assert_eq!(error(empty, false), "authz.json: cedar.policies: at least one policy is required");
        assert!(error("{\"version\": ", false).starts_with("authz.json: invalid JSON: EOF while parsing"));
        assert!(error("version: [", true).starts_with("authz.json: invalid YAML"));
        let upstream = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "primary_upstream_provider": "github"}}"#;
        assert!(error(upstream, false).contains("primary_upstream_provider: is not supported"));
        let group = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "group_entity_type": "a::b"}}"#;
        assert!(error(group, false).contains("namespaced"));
        let group = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "group_entity_type": "if"}}"#;
        assert!(error(group, false).contains("not a valid Cedar identifier"));
        let group = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "group_entity_type": "Team\n"}}"#;
        assert!(error(group, false).contains("not a valid Cedar identifier"));
        let version =
            r#"{"version": 1.0, "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"]}}"#;
        assert!(error(version, false).contains("version: expected a string, such as \"1.0\""));
    }

    #[test]
    fn policy_errors_name_index_line_column_and_only_that_line() {
        let bad = "permit(\n  principal,\n  action == Action::\"call_tool\"\n  resource\n) when { SECRET };";
        let message = error(&json_config(&[POLICY, bad], "[]"), false);
        assert!(
            message.starts_with("authz.json: cedar policy 2 of 2, at 4:3: unexpected token `resource`"),
            "{message}"
        );
        assert!(message.ends_with(": `resource`"), "{message}");
        assert!(!message.contains("SECRET") && !message.contains("principal"), "quotes more than the line: {message}");

        let method = "permit(principal, action, resource) when { context.x.nope(1) };";
        let message = error(&json_config(&[method], "[]"), false);
        assert!(message.contains("cedar policy 1 of 1, at 1:44: `nope` is not a valid method"), "{message}");

        let two = "permit(principal, action, resource);\nforbid(principal, action, resource);";
        assert!(error(&json_config(&[two], "[]"), false).contains("policy 1 of 1, at 2:1: unexpected token `forbid`"));
        let template = "permit(principal == ?principal, action, resource);";
        assert!(error(&json_config(&[template], "[]"), false).contains("policy 1 of 1, at 1:"));
    }

    #[test]
    fn unknown_actions_are_refused_by_name() {
        let list = "permit(principal,\n action in [Action::\"call_tool\", Action::\"list_tools\"], resource);";
        let message = error(&json_config(&[POLICY, list], "[]"), false);
        assert!(message.contains("cedar policy 2 of 2, at 2:34: unknown action Action::\"list_tools\""), "{message}");
        let namespaced = "permit(principal, action == MCP::Action::\"call_tool\", resource);";
        assert!(error(&json_config(&[namespaced], "[]"), false).contains("unknown action MCP::Action::\"call_tool\""));
        for ok in [
            "permit(principal, action in [Action::\"get_prompt\", Action::\"read_resource\"], resource);",
            "forbid(principal, action in Action::\"call_tool\", resource);",
        ] {
            assert!(from_text(&json_config(&[ok], ""), false, "a.json").is_ok(), "{ok}");
        }
    }

    #[test]
    fn entities_json_is_read_like_cedar_go() {
        assert!(parse_entities("").is_ok_and(|e| e.is_empty()));
        assert!(parse_entities("null").is_ok_and(|e| e.is_empty()));
        let lenient = r#"[{"uid": {"type": "THVGroup", "id": "eng"}},
                         {"uid": {"__entity": {"type": "THVGroup", "id": "eng"}}, "attrs": {"v": 2}, "parents": null}]"#;
        let parsed = parse_entities(lenient).expect("attrs/parents optional, later duplicate wins");
        assert_eq!(parsed.iter().count(), 1);
        let message = error(&json_config(&[POLICY], "[{\"uid\": 1}]"), false);
        assert!(message.starts_with("authz.json: cedar.entities_json: "), "{message}");
        assert!(error(&json_config(&[POLICY], "{}"), false).contains("expected a JSON list"));
        assert!(error(&json_config(&[POLICY], "[1,"), false).contains("cedar.entities_json: EOF"));
    }

    #[test]
    fn load_picks_the_format_by_extension() {
        let dir = std::env::temp_dir().join(format!("thv-authz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let yaml = dir.join("policy.YML");
        std::fs::write(
            &yaml,
            "version: '1.0'\ntype: cedarv1\ncedar: {policies: ['permit(principal, action, resource);']}\n",
        )
        .expect("write");
        assert!(load(&yaml).is_ok());
        let txt = dir.join("policy.txt");
        std::fs::write(&txt, "{}").expect("write");
        assert!(matches!(load(&txt), Err(AuthzConfigError::Format { .. })));
        assert!(matches!(load(&dir.join("absent.json")), Err(AuthzConfigError::Read { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
