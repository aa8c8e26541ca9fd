//! ToolHive's Cedar entity model, built per request: which attributes the principal, the
//! resource and the context carry, and how JSON claim and argument values become Cedar
//! values. Follows ToolHive's `pkg/authz/authorizers/cedar/core.go` (`AuthorizeWithJWTClaims`,
//! `preprocessClaims`, `preprocessArguments`, `normalizeMultiValuedClaims`,
//! `addMultiValuedClaimSets`, `extractGroups`, `authorizeToolCall` / `authorizePromptGet` /
//! `authorizeResourceRead`) and `entity.go` (`convertToCedarValueAtDepth`,
//! `CreateEntitiesForRequest`), rule for rule, so a policy written for ToolHive decides the
//! same here.
//!
//! The walk is written once, generic over an [`Encode`]r: the decision path encodes
//! `RestrictedExpression`s, `explain` encodes Cedar's JSON value format from the very same
//! walk, so the request the cedarpy cross-check replays is the one that was decided.

use serde_json::{Map, Value};

use super::index::Visible;
use super::{Action, ToolAnnotations};

/// How deep maps and arrays inside a claim are converted (entity.go `maxClaimNestingDepth`):
/// claims may come from a token the proxy did not verify, so recursion needs a bound.
const MAX_NESTING_DEPTH: usize = 10;

/// The claims ToolHive reads group membership from when `group_claim_name` is not set (or
/// is absent from the token), in order (core.go `defaultGroupClaimNames`).
const DEFAULT_GROUP_CLAIMS: [&str; 3] = ["groups", "roles", "cognito:groups"];

/// The `cedar` options of the config file that shape the entity model.
#[derive(Debug, Default)]
pub(super) struct ClaimOptions {
    /// `group_claim_name`: tried before the defaults; a dotted path reaches nested claims.
    pub(super) group_claim_name: String,
    /// `role_claim_name`: its values are added to the groups (same entity type).
    pub(super) role_claim_name: String,
    /// `multi_valued_claims`: exposed as a space-joined `claim_<name>` plus a `claimset_<name>` set.
    pub(super) multi_valued_claims: Vec<String>,
}

/// A sink for Cedar values. The decision path builds `RestrictedExpression`s, `explain`
/// builds Cedar's JSON entity/context format.
pub(super) trait Encode {
    type Value: Clone;
    fn string(s: &str) -> Self::Value;
    fn boolean(b: bool) -> Self::Value;
    /// A Cedar `decimal` of `units` ten-thousandths (Cedar's fixed four decimal places).
    fn decimal(units: i64) -> Self::Value;
    fn set(items: Vec<Self::Value>) -> Self::Value;
    /// `None` when the encoder refuses the record (it never does for a JSON object's keys,
    /// which are unique); the attribute is then skipped, like any value Cedar cannot hold.
    fn record(fields: Vec<(String, Self::Value)>) -> Option<Self::Value>;
}

/// What the request entities hold, before they are encoded into Cedar's types.
pub(super) struct Parts<V> {
    /// `claim_<name>` for every claim, plus `claimset_<name>` for the multi-valued ones:
    /// the principal's attributes, and (with the arguments) the context.
    pub(super) claims: Vec<(String, V)>,
    /// The principal's parents: group and role names (entity type set by `group_entity_type`).
    pub(super) groups: Vec<String>,
    /// `arg_<name>` (or `arg_<name>_present`): on the resource and in the context.
    pub(super) arguments: Vec<(String, V)>,
    /// The resource's own attributes besides the arguments (annotations, name, feature ...).
    pub(super) resource: Vec<(String, V)>,
}

impl<V: Clone> Parts<V> {
    /// The context record: claims, then arguments (core.go `mergeContexts(claimsMap, attrsMap)`;
    /// the prefixes keep the two apart).
    pub(super) fn context(&self) -> impl Iterator<Item = (String, V)> + '_ {
        self.claims.iter().chain(&self.arguments).cloned()
    }

    /// The resource's attributes. ToolHive merges annotations, arguments, then the standard
    /// attributes (later wins); the `arg_` prefix means none of them can collide.
    pub(super) fn resource_attrs(&self) -> impl Iterator<Item = (String, V)> + '_ {
        self.resource.iter().chain(&self.arguments).cloned()
    }
}

/// One request as [`parts`] sees it.
pub(super) struct Request<'a> {
    pub(super) claims: &'a Map<String, Value>,
    pub(super) action: Action,
    pub(super) resource: &'a str,
    pub(super) arguments: Option<&'a Map<String, Value>>,
    pub(super) annotations: Option<&'a ToolAnnotations>,
}

/// Builds the parts of one request: ToolHive's whole model with `visible` `None`, else only
/// the attributes some policy names (see `index`). `annotations` count for `call_tool`
/// only, as in ToolHive.
pub(super) fn parts<E: Encode>(
    options: &ClaimOptions,
    visible: Option<&Visible>,
    request: &Request<'_>,
) -> Parts<E::Value> {
    Parts {
        claims: claim_attrs::<E>(options, visible, request.claims),
        groups: groups(options, request.claims),
        arguments: request.arguments.map(|args| argument_attrs::<E>(visible, args)).unwrap_or_default(),
        resource: resource_attrs::<E>(visible, request.action, request.resource, request.annotations),
    }
}

/// core.go `preprocessClaims` over `normalizeMultiValuedClaims`, then `addMultiValuedClaimSets`.
fn claim_attrs<E: Encode>(
    options: &ClaimOptions,
    visible: Option<&Visible>,
    claims: &Map<String, Value>,
) -> Vec<(String, E::Value)> {
    let mut out = Vec::with_capacity(claims.len() + options.multi_valued_claims.len());
    for (name, value) in claims {
        if visible.is_some_and(|v| !v.claim(name)) {
            continue;
        }
        let converted =
            if options.multi_valued_claims.iter().any(|m| m == name) { multi_valued_string::<E>(value) } else { None };
        if let Some(value) = converted.or_else(|| convert::<E>(value, 0)) {
            out.push((format!("claim_{name}"), value));
        }
    }
    for name in &options.multi_valued_claims {
        if visible.is_some_and(|v| !v.claim_set(name)) {
            continue;
        }
        if let Some(tokens) = claims.get(name).and_then(multi_valued_tokens) {
            out.push((format!("claimset_{name}"), E::set(tokens.into_iter().map(E::string).collect())));
        }
    }
    out
}

/// `normalizeMultiValuedClaims`: an array becomes its string elements joined by one space;
/// a string passes through verbatim; any other shape is left to the ordinary conversion.
fn multi_valued_string<E: Encode>(value: &Value) -> Option<E::Value> {
    match value {
        Value::Array(items) => {
            let joined = items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
            Some(E::string(&joined))
        }
        _ => None,
    }
}

/// `addMultiValuedClaimSets`: a string splits on whitespace (Go's `strings.Fields`), an
/// array keeps its string elements; no set for any other shape.
fn multi_valued_tokens(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(s.split_whitespace().collect()),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// core.go `preprocessArguments`: strings, booleans and numbers keep their value under
/// `arg_<name>`; anything else (null, arrays, objects) is only noted as
/// `arg_<name>_present = true`. A number Cedar cannot hold as a decimal is dropped.
fn argument_attrs<E: Encode>(visible: Option<&Visible>, arguments: &Map<String, Value>) -> Vec<(String, E::Value)> {
    let mut out: Vec<(String, E::Value)> = Vec::with_capacity(arguments.len());
    let mut present_keys = false;
    for (name, value) in arguments {
        match value {
            Value::String(_) | Value::Bool(_) | Value::Number(_) => {
                if visible.is_some_and(|v| !v.argument(name)) {
                    continue;
                }
                if let Some(value) = convert::<E>(value, 0) {
                    out.push((format!("arg_{name}"), value));
                }
            }
            Value::Null | Value::Array(_) | Value::Object(_) => {
                if visible.is_some_and(|v| !v.present(name)) {
                    continue;
                }
                present_keys = true;
                out.push((format!("arg_{name}_present"), E::boolean(true)));
            }
        }
    }
    // `{"x": [..], "x_present": "s"}` names `arg_x_present` twice. Go's map keeps whichever
    // its random iteration wrote last; here the later key in the object's order wins, so
    // every key stays unique (Cedar refuses duplicate record keys).
    if present_keys {
        dedup_keep_last(&mut out);
    }
    out
}

fn dedup_keep_last<V>(attrs: &mut Vec<(String, V)>) {
    let mut seen = std::collections::HashSet::with_capacity(attrs.len());
    let mut kept: Vec<(String, V)> = Vec::with_capacity(attrs.len());
    for (key, value) in attrs.drain(..).rev() {
        if seen.insert(key.clone()) {
            kept.push((key, value));
        }
    }
    kept.reverse();
    *attrs = kept;
}

/// The resource's standard attributes (core.go `authorizeToolCall` and friends): for a tool,
/// the server's annotations (entity attributes `readOnlyHint` ... ; annotations.go
/// `AnnotationsToMap`) under `name`/`operation`/`feature`; for a resource, also `uri`.
fn resource_attrs<E: Encode>(
    visible: Option<&Visible>,
    action: Action,
    resource: &str,
    annotations: Option<&ToolAnnotations>,
) -> Vec<(String, E::Value)> {
    let mut out = Vec::with_capacity(8);
    let mut push = |name: &str, value: E::Value| {
        if visible.is_none_or(|v| v.attribute(name)) {
            out.push((name.to_owned(), value));
        }
    };
    if action == Action::CallTool
        && let Some(annotations) = annotations
    {
        let hints = [
            ("readOnlyHint", annotations.read_only),
            ("destructiveHint", annotations.destructive),
            ("idempotentHint", annotations.idempotent),
            ("openWorldHint", annotations.open_world),
        ];
        for (name, hint) in hints {
            if let Some(hint) = hint {
                push(name, E::boolean(hint));
            }
        }
    }
    push("name", E::string(resource));
    if action == Action::ReadResource {
        push("uri", E::string(resource));
    }
    let (operation, feature) = match action {
        Action::CallTool => ("call", "tool"),
        Action::GetPrompt => ("get", "prompt"),
        Action::ReadResource => ("read", "resource"),
    };
    push("operation", E::string(operation));
    push("feature", E::string(feature));
    out
}

/// entity.go `convertToCedarValueAtDepth` on what Go's `encoding/json` makes of a JSON value:
/// strings and booleans as such; every number is a float64 there, hence a Cedar `decimal`
/// (`NewDecimalFromFloat`: ×10⁴, truncated; out of range → dropped); arrays → sets and
/// objects → records (members that convert to nothing are left out); null → dropped.
/// Nesting deeper than [`MAX_NESTING_DEPTH`] is dropped.
pub(super) fn convert<E: Encode>(value: &Value, depth: usize) -> Option<E::Value> {
    if depth > MAX_NESTING_DEPTH {
        return None;
    }
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(E::boolean(*b)),
        Value::String(s) => Some(E::string(s)),
        Value::Number(n) => n.as_f64().and_then(decimal_units).map(E::decimal),
        Value::Array(items) => Some(E::set(items.iter().filter_map(|item| convert::<E>(item, depth + 1)).collect())),
        Value::Object(members) => E::record(
            members.iter().filter_map(|(key, member)| Some((key.clone(), convert::<E>(member, depth + 1)?))).collect(),
        ),
    }
}

/// cedar-go `NewDecimalFromFloat`: `int64(f * 10000)`, refused outside int64's range. Go's
/// check lets exactly 2⁶³ through into an implementation-defined conversion; it is refused here.
fn decimal_units(f: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    let scaled = f * 10_000.0;
    // `as` truncates toward zero, like Go's conversion; NaN is in no range.
    (-LIMIT..LIMIT).contains(&scaled).then_some(scaled as i64)
}

/// `units` ten-thousandths as Cedar's `decimal("…")` literal, which wants one to four digits
/// after the point.
pub(super) fn decimal_literal(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let magnitude = units.unsigned_abs();
    format!("{sign}{}.{:04}", magnitude / 10_000, magnitude % 10_000)
}

/// core.go: groups from `group_claim_name` (or the first default claim that is an array),
/// plus roles from `role_claim_name`, deduplicated in first-seen order.
fn groups(options: &ClaimOptions, claims: &Map<String, Value>) -> Vec<String> {
    let mut found = claim_strings(claims, &options.group_claim_name);
    if found.is_none() {
        found = DEFAULT_GROUP_CLAIMS.iter().find_map(|name| claim_strings(claims, name));
    }
    let mut all = found.unwrap_or_default();
    all.extend(claim_strings(claims, &options.role_claim_name).unwrap_or_default());
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    all.retain(|group| seen.insert(*group));
    all.into_iter().map(str::to_owned).collect()
}

/// core.go `extractGroups`: the claim's string elements if it is an array (even an empty
/// one), `None` when it is absent, null or of another type.
fn claim_strings<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<Vec<&'a str>> {
    match resolve_nested_claim(claims, path)? {
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// core.go `resolveNestedClaim`: an exact top-level key first (URL-style claim names contain
/// dots), then a dotted path through nested objects.
fn resolve_nested_claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    if !path.contains('.') {
        return None;
    }
    let mut segments = path.split('.');
    let mut current = claims.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Encodes into plain JSON, to look at the walk's result.
    struct Plain;
    impl Encode for Plain {
        type Value = Value;
        fn string(s: &str) -> Value {
            json!(s)
        }
        fn boolean(b: bool) -> Value {
            json!(b)
        }
        fn decimal(units: i64) -> Value {
            json!({ "decimal": decimal_literal(units) })
        }
        fn set(items: Vec<Value>) -> Value {
            Value::Array(items)
        }
        fn record(fields: Vec<(String, Value)>) -> Option<Value> {
            Some(Value::Object(fields.into_iter().collect()))
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn as_map(attrs: Vec<(String, Value)>) -> Value {
        Value::Object(attrs.into_iter().collect())
    }

    #[test]
    fn numbers_become_truncated_decimals_like_go() {
        assert_eq!(convert::<Plain>(&json!(3), 0), Some(json!({"decimal": "3.0000"})));
        assert_eq!(convert::<Plain>(&json!(1.23456), 0), Some(json!({"decimal": "1.2345"})));
        assert_eq!(convert::<Plain>(&json!(-0.5), 0), Some(json!({"decimal": "-0.5000"})));
        assert_eq!(convert::<Plain>(&json!(1e15), 0), None, "beyond decimal's range: dropped");
        assert_eq!(convert::<Plain>(&json!(u64::MAX), 0), None);
        assert_eq!(decimal_literal(i64::MIN), "-922337203685477.5808");
        assert_eq!(decimal_literal(7), "0.0007");
    }

    #[test]
    fn nesting_is_cut_at_depth_ten_and_nulls_dropped() {
        let mut deep = json!("leaf");
        for _ in 0..12 {
            deep = json!([deep]);
        }
        let converted = convert::<Plain>(&deep, 0).expect("outer levels stay");
        let mut levels = 0;
        let mut cursor = &converted;
        while let Value::Array(items) = cursor {
            levels += 1;
            match items.first() {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(levels, 11, "depths 0..=10 converted, deeper dropped");
        assert_eq!(convert::<Plain>(&json!([1, null, "a"]), 0), Some(json!([{"decimal": "1.0000"}, "a"])));
        assert_eq!(convert::<Plain>(&json!({"a": null, "b": true}), 0), Some(json!({"b": true})));
    }

    #[test]
    fn arguments_keep_scalars_and_mark_the_rest_present() {
        let args = object(json!({"s": "x", "b": false, "n": 2, "list": [1], "obj": {}, "nil": null}));
        let attrs = as_map(argument_attrs::<Plain>(None, &args));
        assert_eq!(
            attrs,
            json!({
                "arg_s": "x", "arg_b": false, "arg_n": {"decimal": "2.0000"},
                "arg_list_present": true, "arg_obj_present": true, "arg_nil_present": true
            })
        );
        let clash = object(json!({"x": [1], "x_present": "s"}));
        assert_eq!(argument_attrs::<Plain>(None, &clash).len(), 1);
    }

    #[test]
    fn groups_follow_toolhive_precedence() {
        let claims = object(json!({
            "groups": ["eng", "eng", 7, "ops"],
            "roles": ["admin"],
            "realm_access": {"roles": ["kc-admin"]},
            "https://x.example/roles": ["url-role"]
        }));
        let default = ClaimOptions::default();
        assert_eq!(groups(&default, &claims), ["eng", "ops"]);
        let nested = ClaimOptions { group_claim_name: "realm_access.roles".into(), ..ClaimOptions::default() };
        assert_eq!(groups(&nested, &claims), ["kc-admin"]);
        let url = ClaimOptions {
            group_claim_name: "https://x.example/roles".into(),
            role_claim_name: "roles".into(),
            ..ClaimOptions::default()
        };
        assert_eq!(groups(&url, &claims), ["url-role", "admin"]);
        let absent = ClaimOptions { group_claim_name: "missing".into(), ..ClaimOptions::default() };
        assert_eq!(groups(&absent, &claims), ["eng", "ops"], "falls back to the defaults");
        let not_array = object(json!({"groups": "eng"}));
        assert!(groups(&default, &not_array).is_empty());
    }

    #[test]
    fn multi_valued_claims_get_a_string_and_a_set() {
        let options = ClaimOptions { multi_valued_claims: vec!["scp".into(), "scope".into()], ..Default::default() };
        let claims = object(json!({"scp": ["a", 1, "b"], "scope": " x  y ", "other": ["p"]}));
        let attrs = as_map(claim_attrs::<Plain>(&options, None, &claims));
        assert_eq!(
            attrs,
            json!({
                "claim_scp": "a b", "claimset_scp": ["a", "b"],
                "claim_scope": " x  y ", "claimset_scope": ["x", "y"],
                "claim_other": ["p"]
            })
        );
    }

    #[test]
    fn resource_attributes_per_action() {
        let ann = ToolAnnotations { read_only: Some(true), destructive: Some(false), ..Default::default() };
        let tool = as_map(resource_attrs::<Plain>(None, Action::CallTool, "t", Some(&ann)));
        assert_eq!(
            tool,
            json!({"readOnlyHint": true, "destructiveHint": false, "name": "t", "operation": "call", "feature": "tool"})
        );
        let prompt = as_map(resource_attrs::<Plain>(None, Action::GetPrompt, "p", Some(&ann)));
        assert_eq!(prompt, json!({"name": "p", "operation": "get", "feature": "prompt"}));
        let res = as_map(resource_attrs::<Plain>(None, Action::ReadResource, "file:///x", None));
        assert_eq!(res, json!({"name": "file:///x", "uri": "file:///x", "operation": "read", "feature": "resource"}));
    }
}
