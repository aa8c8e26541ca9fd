//! The Cedar authorizer behind `--authz-config FILE`: who may call which tool, get which
//! prompt, read which resource. ToolHive's `cedarv1` authorizer
//! (`pkg/authz/authorizers/cedar/core.go`, `entity.go`; `docs/authz.md`), on AWS's own Cedar
//! implementation instead of cedar-go:
//!
//! - `config`: the file (ToolHive's `{"version", "type": "cedarv1", "cedar": {...}}`, JSON
//!   or YAML by extension), parsed and checked once at startup;
//! - `model`: the entities and context of one request, ToolHive's model rule for rule;
//! - `index`: what the policies can see, so a request builds only that (startup work);
//! - `cache`: decisions remembered by their exact inputs;
//! - here: the decision. Default deny, `forbid` beats `permit` (Cedar), and, as in ToolHive's
//!   `IsAuthorized`, a request during which any policy fails to evaluate is denied even if
//!   another permits it: an unguarded `principal.claim_x` in a `forbid` fails closed.
//!   Anything that cannot be built into a Cedar request is a denial, never a panic.
//!
//! Per request the policies are not touched: the principal, action and resource entities
//! and the context are built (only the attributes some policy names), joined with the
//! `entities_json` base, and evaluated against the policies that admit the action.

mod cache;
mod config;
mod index;
mod model;

use std::collections::HashSet;
use std::path::Path;

use cedar_policy::{
    Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression,
};
use serde_json::{Map, Value, json};

use cache::{DecisionCache, KeyBytes};
pub(crate) use config::AuthzConfigError;
use index::Visible;
use model::{ClaimOptions, Encode, Parts};

/// Loads `--authz-config FILE` (JSON, or YAML for `.yaml`/`.yml`, as in ToolHive) and
/// parses and checks every policy once.
pub(crate) fn load(path: &Path) -> Result<Authorizer, AuthzConfigError> {
    config::load(path)
}

/// The same from text (`yaml` picks the format); `source` names it in errors.
pub(crate) fn from_text(text: &str, yaml: bool, source: &str) -> Result<Authorizer, AuthzConfigError> {
    config::from_text(text, yaml, source)
}

/// The three MCP operations ToolHive authorizes (lists are filtered through these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    CallTool,
    GetPrompt,
    ReadResource,
}

impl Action {
    const ALL: [Action; 3] = [Action::CallTool, Action::GetPrompt, Action::ReadResource];

    /// The Cedar action's id: `Action::"call_tool"` ...
    pub(crate) fn id(self) -> &'static str {
        match self {
            Action::CallTool => "call_tool",
            Action::GetPrompt => "get_prompt",
            Action::ReadResource => "read_resource",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Who asks: `None` subject = no incoming auth → principal `Client::"anonymous"`, no claims.
pub(crate) struct Principal<'a> {
    pub(crate) subject: Option<&'a str>,
    pub(crate) claims: &'a Map<String, Value>,
}

/// A tool's annotations, as the *server's* tools/list said (never the client's: a client
/// could otherwise mark a destructive tool read-only; annotations.go "Trust Boundary").
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ToolAnnotations {
    pub(crate) read_only: Option<bool>,
    pub(crate) destructive: Option<bool>,
    pub(crate) idempotent: Option<bool>,
    pub(crate) open_world: Option<bool>,
}

impl ToolAnnotations {
    /// The hints of one tool object of a tools/list result (`tool["annotations"]`). `None`
    /// when it has no boolean hint at all (annotation_cache.go `hasAnyHint`); a hint of
    /// another type counts as unset.
    pub(crate) fn from_tool(tool: &Map<String, Value>) -> Option<ToolAnnotations> {
        let annotations = tool.get("annotations")?.as_object()?;
        let hint = |name: &str| annotations.get(name).and_then(Value::as_bool);
        let parsed = ToolAnnotations {
            read_only: hint("readOnlyHint"),
            destructive: hint("destructiveHint"),
            idempotent: hint("idempotentHint"),
            open_world: hint("openWorldHint"),
        };
        (parsed != ToolAnnotations::default()).then_some(parsed)
    }
}

/// The loaded policies and everything a decision needs that does not change per request.
pub(crate) struct Authorizer {
    /// The policies whose scope admits each action, in [`Action::index`] order.
    policies: [PolicySet; 3],
    /// The attributes some policy names; `None` (a policy reads the whole context): all.
    visible: Option<Visible>,
    /// Whether any policy can read a tool's annotations (worked out once).
    reads_annotations: bool,
    /// `entities_json`, parsed once; request entities replace base entities of the same uid,
    /// as ToolHive's merge into one map does.
    base: Entities,
    engine: cedar_policy::Authorizer,
    options: ClaimOptions,
    /// Parsed once: `Client`, `Tool`, `Prompt`, `Resource`, the group type, `MCP`.
    types: Types,
    /// `Action::"call_tool"` ... with their `operation` attribute (entity.go `CreateActionEntity`).
    actions: [(EntityUid, Entity); 3],
    /// `MCP::"<server>"`, the resources' parent when a server name is set (entity.go).
    server: Option<EntityUid>,
    cache: DecisionCache,
}

struct Types {
    client: EntityTypeName,
    resources: [EntityTypeName; 3],
    group: EntityTypeName,
    mcp: EntityTypeName,
}

/// Why a request could not be built into Cedar's types; always a denial.
#[derive(Debug)]
struct Unbuildable(String);

impl<E: std::fmt::Display> From<E> for Unbuildable {
    fn from(error: E) -> Self {
        Unbuildable(error.to_string())
    }
}

/// A decision with what Cedar said about it, for `explain`.
struct Verdict {
    allowed: bool,
    reasons: Vec<String>,
    errors: Vec<String>,
}

impl Authorizer {
    fn new(policies: &PolicySet, base: Entities, options: ClaimOptions, group_type: &str) -> Result<Self, String> {
        let name = |s: &str| s.parse::<EntityTypeName>().map_err(|e| format!("entity type {s:?}: {e}"));
        let types = Types {
            client: name("Client")?,
            resources: [name("Tool")?, name("Prompt")?, name("Resource")?],
            group: name(group_type)?,
            mcp: name("MCP")?,
        };
        let action_type = name("Action")?;
        let action = |a: Action| -> Result<(EntityUid, Entity), String> {
            let uid = EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.id()));
            let attrs = [("operation".to_owned(), RestrictedExpression::new_string(a.id().to_owned()))];
            let entity = Entity::new_with_tags(uid.clone(), attrs, [], []).map_err(|e| e.to_string())?;
            Ok((uid, entity))
        };
        let actions = [action(Action::CallTool)?, action(Action::GetPrompt)?, action(Action::ReadResource)?];
        let visible = index::visible(policies)?;
        let reads_annotations = visible.as_ref().is_none_or(|v| {
            ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"].iter().any(|a| v.attribute(a))
        });
        Ok(Authorizer {
            policies: index::split_by_action(policies)?,
            visible,
            reads_annotations,
            base,
            engine: cedar_policy::Authorizer::new(),
            options,
            types,
            actions,
            server: None,
            cache: DecisionCache::new(),
        })
    }

    /// Scopes the resources to one MCP server: they get the parent `MCP::"<name>"`, so
    /// `resource in MCP::"github"` matches, as under ToolHive's runner (its `serverName`).
    /// An empty name means unscoped.
    pub(crate) fn with_server_name(mut self, name: &str) -> Self {
        self.server =
            (!name.is_empty()).then(|| EntityUid::from_type_name_and_id(self.types.mcp.clone(), EntityId::new(name)));
        self
    }

    /// Whether any policy can read a tool's annotations (`readOnlyHint` …): then a call to
    /// a tool whose annotations are not known yet cannot be decided as written.
    pub(crate) fn reads_annotations(&self) -> bool {
        self.reads_annotations
    }

    /// May `who` do `action` on `resource` (a tool or prompt name, or a resource URI, used
    /// verbatim as the entity id), with these arguments and (for a tool) these annotations?
    pub(crate) fn allows(
        &self,
        who: &Principal<'_>,
        action: Action,
        resource: &str,
        arguments: Option<&Map<String, Value>>,
        annotations: Option<&ToolAnnotations>,
    ) -> bool {
        let request = model::Request { claims: who.claims, action, resource, arguments, annotations };
        let Some(subject) = subject(who) else {
            return false;
        };
        let key = self.cache_key(subject, &request);
        if let Some(allowed) = self.cache.get(&key) {
            return allowed;
        }
        match self.decide(who, &request, false) {
            Ok(verdict) => {
                self.cache.insert(key, verdict.allowed);
                verdict.allowed
            }
            Err(_) => false,
        }
    }

    /// Everything the Cedar request of `allows` is made of, as unambiguous bytes: the
    /// principal, action and resource, the (pruned) attributes, the groups. The server
    /// scope, the policies and `entities_json` are fixed for the authorizer's life.
    fn cache_key(&self, subject: &str, request: &model::Request<'_>) -> Vec<u8> {
        let parts = model::parts::<KeyBytes>(&self.options, self.visible.as_ref(), request);
        let mut key = Vec::with_capacity(256);
        key.push(request.action.index() as u8);
        KeyBytes::push_str(&mut key, subject);
        KeyBytes::push_str(&mut key, request.resource);
        for section in [&parts.claims, &parts.arguments, &parts.resource] {
            key.extend_from_slice(&(section.len() as u64).to_le_bytes());
            for (name, value) in section {
                KeyBytes::push_str(&mut key, name);
                key.extend_from_slice(value);
            }
        }
        key.extend_from_slice(&(parts.groups.len() as u64).to_le_bytes());
        for group in &parts.groups {
            KeyBytes::push_str(&mut key, group);
        }
        key
    }

    /// The Cedar request behind `allows`'s decision, for the cedarpy cross-check: principal,
    /// action and resource uids (Cedar syntax, and as `{"type", "id"}` under `uids`), the
    /// context and the entity list in Cedar's JSON formats (base `entities_json` plus the
    /// request's entities), and Cedar's reasons and errors. It is ToolHive's whole model:
    /// `allows` evaluates the same request less the claim and argument attributes that no
    /// policy names (`index`), so a replay of this request checks that pruning too.
    pub(crate) fn explain(
        &self,
        who: &Principal<'_>,
        action: Action,
        resource: &str,
        arguments: Option<&Map<String, Value>>,
        annotations: Option<&ToolAnnotations>,
    ) -> (bool, Value) {
        let request = model::Request { claims: who.claims, action, resource, arguments, annotations };
        let verdict = match self.decide(who, &request, true) {
            Ok(verdict) => verdict,
            Err(Unbuildable(reason)) => return (false, json!({ "unbuildable": reason })),
        };
        let Some(subject) = subject(who) else {
            return (false, json!({ "unbuildable": "empty subject" }));
        };
        let parts = model::parts::<JsonValues>(&self.options, None, &request);
        let (principal, resource_uid) = self.uids(subject, action, resource);
        let (action_uid, action_entity) = &self.actions[action.index()];
        let request_entities = [
            self.principal_json(&principal, &parts),
            action_entity.to_json_value().unwrap_or(Value::Null),
            self.resource_json(&resource_uid, &parts),
        ];
        let replaced = [&principal, action_uid, &resource_uid];
        let mut entities: Vec<Value> = self
            .base
            .iter()
            .filter(|entity| !replaced.contains(&&entity.uid()))
            .map(|entity| entity.to_json_value().unwrap_or(Value::Null))
            .collect();
        entities.extend(request_entities);
        let uid_json = |uid: &EntityUid| json!({ "type": uid.type_name().to_string(), "id": uid.id().unescaped() });
        let request = json!({
            "principal": principal.to_string(),
            "action": action_uid.to_string(),
            "resource": resource_uid.to_string(),
            "uids": {
                "principal": uid_json(&principal),
                "action": uid_json(action_uid),
                "resource": uid_json(&resource_uid),
            },
            "context": Value::Object(parts.context().collect()),
            "entities": entities,
            "reasons": verdict.reasons,
            "errors": verdict.errors,
        });
        (verdict.allowed, request)
    }

    fn uids(&self, subject: &str, action: Action, resource: &str) -> (EntityUid, EntityUid) {
        let principal = EntityUid::from_type_name_and_id(self.types.client.clone(), EntityId::new(subject));
        let resource =
            EntityUid::from_type_name_and_id(self.types.resources[action.index()].clone(), EntityId::new(resource));
        (principal, resource)
    }

    fn decide(
        &self,
        who: &Principal<'_>,
        request: &model::Request<'_>,
        detailed: bool,
    ) -> Result<Verdict, Unbuildable> {
        // ToolHive: a token without `sub` has no principal (ErrMissingPrincipal) → deny.
        let subject = subject(who).ok_or_else(|| Unbuildable("empty subject".to_owned()))?;
        let parts = model::parts::<Expressions>(&self.options, self.visible.as_ref(), request);
        let (principal_uid, resource_uid) = self.uids(subject, request.action, request.resource);
        let parents: HashSet<EntityUid> = parts
            .groups
            .iter()
            .map(|group| EntityUid::from_type_name_and_id(self.types.group.clone(), EntityId::new(group)))
            .collect();
        let principal = Entity::new_with_tags(principal_uid.clone(), parts.claims.iter().cloned(), parents, [])?;
        let resource = Entity::new_with_tags(resource_uid.clone(), parts.resource_attrs(), self.server.clone(), [])?;
        let (action_uid, action_entity) = &self.actions[request.action.index()];
        let request_entities = [principal, action_entity.clone(), resource];
        let entities = if self.base.is_empty() {
            Entities::from_entities(request_entities, None)?
        } else {
            self.base.clone().upsert_entities(request_entities, None)?
        };
        let context = Context::from_pairs(parts.context())?;
        let cedar_request = Request::new(principal_uid, action_uid.clone(), resource_uid, context, None)?;
        let policies = &self.policies[request.action.index()];
        let response = self.engine.is_authorized(&cedar_request, policies, &entities);
        let diagnostics = response.diagnostics();
        let failed = diagnostics.errors().next().is_some();
        let verdict = Verdict {
            allowed: response.decision() == Decision::Allow && !failed,
            reasons: if detailed { diagnostics.reason().map(ToString::to_string).collect() } else { Vec::new() },
            errors: if detailed { diagnostics.errors().map(ToString::to_string).collect() } else { Vec::new() },
        };
        Ok(verdict)
    }

    fn principal_json(&self, uid: &EntityUid, parts: &Parts<Value>) -> Value {
        let parents: Vec<Value> =
            parts.groups.iter().map(|group| json!({ "type": self.types.group.to_string(), "id": group })).collect();
        entity_json(uid, parts.claims.iter().cloned().collect(), parents)
    }

    fn resource_json(&self, uid: &EntityUid, parts: &Parts<Value>) -> Value {
        let parents: Vec<Value> = self
            .server
            .iter()
            .map(|server| json!({ "type": server.type_name().to_string(), "id": server.id().unescaped() }))
            .collect();
        entity_json(uid, parts.resource_attrs().collect(), parents)
    }
}

/// The principal's id: the subject, `anonymous` without incoming auth; `None` (deny) for an
/// empty subject, which ToolHive treats as a missing principal.
fn subject<'a>(who: &Principal<'a>) -> Option<&'a str> {
    match who.subject {
        None => Some("anonymous"),
        Some("") => None,
        Some(subject) => Some(subject),
    }
}

fn entity_json(uid: &EntityUid, attrs: Map<String, Value>, parents: Vec<Value>) -> Value {
    json!({
        "uid": { "type": uid.type_name().to_string(), "id": uid.id().unescaped() },
        "attrs": attrs,
        "parents": parents,
    })
}

/// The decision path's encoder.
struct Expressions;

impl Encode for Expressions {
    type Value = RestrictedExpression;
    fn string(s: &str) -> RestrictedExpression {
        RestrictedExpression::new_string(s.to_owned())
    }
    fn boolean(b: bool) -> RestrictedExpression {
        RestrictedExpression::new_bool(b)
    }
    fn decimal(units: i64) -> RestrictedExpression {
        RestrictedExpression::new_decimal(model::decimal_literal(units))
    }
    fn set(items: Vec<RestrictedExpression>) -> RestrictedExpression {
        RestrictedExpression::new_set(items)
    }
    fn record(fields: Vec<(String, RestrictedExpression)>) -> Option<RestrictedExpression> {
        RestrictedExpression::new_record(fields).ok()
    }
}

/// `explain`'s encoder: Cedar's JSON value format (decimals as `__extn` escapes).
struct JsonValues;

impl Encode for JsonValues {
    type Value = Value;
    fn string(s: &str) -> Value {
        Value::String(s.to_owned())
    }
    fn boolean(b: bool) -> Value {
        Value::Bool(b)
    }
    fn decimal(units: i64) -> Value {
        json!({ "__extn": { "fn": "decimal", "arg": model::decimal_literal(units) } })
    }
    fn set(items: Vec<Value>) -> Value {
        Value::Array(items)
    }
    fn record(fields: Vec<(String, Value)>) -> Option<Value> {
        Some(Value::Object(fields.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests;
