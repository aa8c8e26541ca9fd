//! Decisions of [`super::Authorizer`] on ToolHive's entity model. The same requests, and
//! many more, are replayed through cedarpy by `tests/it/authz_table.rs`.

use serde_json::{Map, Value, json};

use super::*;

fn authorizer(policies: &[&str]) -> Authorizer {
    authorizer_with(policies, "[]", json!({}))
}

fn authorizer_with(policies: &[&str], entities: &str, extra: Value) -> Authorizer {
    let mut cedar = json!({"policies": policies, "entities_json": entities});
    if let (Some(cedar), Value::Object(extra)) = (cedar.as_object_mut(), extra) {
        cedar.extend(extra);
    }
    let config = json!({"version": "1.0", "type": "cedarv1", "cedar": cedar}).to_string();
    match from_text(&config, false, "test.json") {
        Ok(authorizer) => authorizer,
        Err(e) => panic!("{e}"),
    }
}

fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn call(authorizer: &Authorizer, subject: Option<&str>, claims: Value, tool: &str, args: Option<Value>) -> bool {
    let claims = map(claims);
    let args = args.map(map);
    authorizer.allows(&Principal { subject, claims: &claims }, Action::CallTool, tool, args.as_ref(), None)
}

const WEATHER: &str = r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather");"#;

#[test]
fn authorizer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authorizer>();
}

#[test]
fn default_deny_and_exact_resource_match() {
    let a = authorizer(&[WEATHER]);
    assert!(call(&a, Some("alice"), json!({}), "weather", None));
    assert!(!call(&a, Some("alice"), json!({}), "weather2", None));
    let claims = Map::new();
    let who = Principal { subject: Some("alice"), claims: &claims };
    assert!(!a.allows(&who, Action::GetPrompt, "weather", None, None), "other action: default deny");
}

#[test]
fn forbid_beats_permit() {
    let a = authorizer(&[
        r#"permit(principal, action, resource);"#,
        r#"forbid(principal == Client::"mallory", action == Action::"call_tool", resource);"#,
    ]);
    assert!(call(&a, Some("alice"), json!({}), "anything", None));
    assert!(!call(&a, Some("mallory"), json!({}), "anything", None));
}

#[test]
fn an_evaluation_error_denies_like_toolhive() {
    // ToolHive's IsAuthorized denies when any policy errored, even if another permits.
    let a = authorizer(&[
        r#"permit(principal, action, resource);"#,
        r#"forbid(principal, action, resource) when { principal.claim_banned == true };"#,
    ]);
    assert!(!call(&a, Some("alice"), json!({}), "t", None), "missing claim: the forbid errors → deny");
    assert!(call(&a, Some("alice"), json!({"banned": false}), "t", None));
    assert!(!call(&a, Some("alice"), json!({"banned": true}), "t", None));
}

#[test]
fn claims_of_each_type_on_principal_and_context() {
    let a = authorizer(&[
        r#"permit(principal, action, resource) when { principal.claim_name == "Ann" && context.claim_name == "Ann" };"#,
        r#"permit(principal, action, resource) when { context.claim_admin == true };"#,
        r#"permit(principal, action, resource) when { principal.claim_level == decimal("3.0") };"#,
        r#"permit(principal, action, resource) when { principal.claim_roles.contains("ops") };"#,
        r#"permit(principal, action, resource) when { context.claim_org.team == "core" };"#,
    ]);
    // Each request carries only its claim; every other policy errors on the missing attribute,
    // so wrap each in its own authorizer-level check by giving all claims but one neutral.
    let neutral = json!({"name": "x", "admin": false, "level": 0, "roles": [], "org": {"team": "x"}});
    assert!(!call(&a, Some("u"), neutral.clone(), "t", None));
    for (key, value) in [
        ("name", json!("Ann")),
        ("admin", json!(true)),
        ("level", json!(3)),
        ("roles", json!(["dev", "ops"])),
        ("org", json!({"team": "core"})),
    ] {
        let mut claims = neutral.clone();
        claims[key] = value;
        assert!(call(&a, Some("u"), claims, "t", None), "claim {key}");
    }
}

#[test]
fn numbers_are_decimals_as_in_toolhive() {
    // Go decodes every JSON number to float64, which ToolHive hands Cedar as a decimal:
    // `== 3` (a Long) never matches, `<` errors (→ deny); decimal methods work.
    let a = authorizer(&[r#"permit(principal, action, resource) when { context.arg_n == 3 };"#]);
    assert!(!call(&a, Some("u"), json!({}), "t", Some(json!({"n": 3}))));
    let a = authorizer(&[r#"permit(principal, action, resource) when { context.arg_n < 5 };"#]);
    assert!(!call(&a, Some("u"), json!({}), "t", Some(json!({"n": 3}))));
    let a = authorizer(&[r#"permit(principal, action, resource) when { context.arg_n.lessThan(decimal("5.0")) };"#]);
    assert!(call(&a, Some("u"), json!({}), "t", Some(json!({"n": 3}))));
    assert!(call(&a, Some("u"), json!({}), "t", Some(json!({"n": 4.99999}))));
    assert!(!call(&a, Some("u"), json!({}), "t", Some(json!({"n": 5}))));
}

#[test]
fn arguments_on_resource_and_context() {
    let a = authorizer(&[r#"permit(principal, action == Action::"call_tool", resource == Tool::"calc")
           when { resource.arg_op == "add" && context.arg_op == "add" && resource.arg_opts_present };"#]);
    assert!(call(&a, Some("u"), json!({}), "calc", Some(json!({"op": "add", "opts": {"x": 1}}))));
    assert!(!call(&a, Some("u"), json!({}), "calc", Some(json!({"op": "sub", "opts": []}))));
    assert!(!call(&a, Some("u"), json!({}), "calc", Some(json!({"op": "add"}))), "attribute missing → error → deny");
}

#[test]
fn annotations_are_attributes_of_the_tool() {
    let a = authorizer(&[
        r#"permit(principal, action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint };"#,
        r#"forbid(principal, action, resource) when { resource has destructiveHint && resource.destructiveHint };"#,
    ]);
    let claims = Map::new();
    let who = Principal { subject: Some("u"), claims: &claims };
    let read_only = ToolAnnotations { read_only: Some(true), ..ToolAnnotations::default() };
    let destructive = ToolAnnotations { read_only: Some(true), destructive: Some(true), ..ToolAnnotations::default() };
    assert!(a.allows(&who, Action::CallTool, "t", None, Some(&read_only)));
    assert!(!a.allows(&who, Action::CallTool, "t", None, Some(&destructive)));
    assert!(!a.allows(&who, Action::CallTool, "t", None, None));
    let tool = map(json!({"name": "t", "annotations": {"readOnlyHint": true, "openWorldHint": "yes"}}));
    assert_eq!(ToolAnnotations::from_tool(&tool), Some(read_only));
    assert_eq!(ToolAnnotations::from_tool(&map(json!({"annotations": {"title": "T"}}))), None);
}

#[test]
fn anonymous_principal_and_empty_subject() {
    let a = authorizer(&[r#"permit(principal == Client::"anonymous", action, resource);"#]);
    assert!(call(&a, None, json!({}), "t", None));
    assert!(!call(&a, Some("alice"), json!({}), "t", None));
    let open = authorizer(&[r#"permit(principal, action, resource);"#]);
    assert!(!call(&open, Some(""), json!({}), "t", None), "empty sub: no principal → deny");
}

#[test]
fn resource_uris_are_verbatim_entity_ids() {
    let a = authorizer(&[
        r#"permit(principal, action == Action::"read_resource", resource == Resource::"file:///a b/\"q\"\\x?y=1#z");"#,
        r#"permit(principal, action == Action::"read_resource", resource) when { resource.uri like "mcp://srv/*" };"#,
    ]);
    let claims = Map::new();
    let who = Principal { subject: Some("u"), claims: &claims };
    assert!(a.allows(&who, Action::ReadResource, "file:///a b/\"q\"\\x?y=1#z", None, None));
    assert!(!a.allows(&who, Action::ReadResource, "file:///a_b/_q__x_y_1_z", None, None));
    assert!(a.allows(&who, Action::ReadResource, "mcp://srv/config:admin", None, None));
    assert!(!a.allows(&who, Action::ReadResource, "mcp://other/x", None, None));
}

#[test]
fn groups_and_entities_json_hierarchy() {
    let entities = r#"[{"uid": {"type": "THVGroup", "id": "eng"}, "attrs": {}, "parents": [{"type": "THVGroup", "id": "staff"}]}]"#;
    let a = authorizer_with(&[r#"permit(principal in THVGroup::"staff", action, resource);"#], entities, json!({}));
    assert!(call(&a, Some("u"), json!({"groups": ["eng"]}), "t", None));
    assert!(!call(&a, Some("u"), json!({"groups": ["sales"]}), "t", None));
    let custom = authorizer_with(
        &[r#"permit(principal in Team::"eng", action, resource);"#],
        "",
        json!({"group_claim_name": "realm_access.roles", "group_entity_type": "Team"}),
    );
    assert!(call(&custom, Some("u"), json!({"realm_access": {"roles": ["eng"]}}), "t", None));
}

#[test]
fn request_entities_replace_base_entities_and_server_scope() {
    // As in ToolHive's map merge: entities_json cannot add attributes to the request's tool.
    let entities = r#"[{"uid": {"type": "Tool", "id": "weather"}, "attrs": {"owner": "u"}, "parents": []}]"#;
    let a =
        authorizer_with(&[r#"permit(principal, action, resource) when { resource has owner };"#], entities, json!({}));
    assert!(!call(&a, Some("u"), json!({}), "weather", None));
    let scoped = authorizer(&[r#"permit(principal, action, resource in MCP::"github");"#]).with_server_name("github");
    assert!(call(&scoped, Some("u"), json!({}), "t", None));
    let unscoped = authorizer(&[r#"permit(principal, action, resource in MCP::"github");"#]);
    assert!(!call(&unscoped, Some("u"), json!({}), "t", None));
}

#[test]
fn odd_input_never_panics_and_never_allows_by_accident() {
    let a = authorizer(&[r#"permit(principal, action, resource) when { context has arg_x };"#]);
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({"k": [deep]});
    }
    let claims = json!({
        "": "", "weird key \u{0}\n\"": true, "huge": 1e308, "neg": -1e300, "deep": deep,
        "__entity": {"type": "X", "id": "y"}, "mixed": [1, "a", null, {"b": [true]}]
    });
    let args = json!({"x": u64::MAX, "": null, "y": deep});
    for resource in ["", "\u{0}", "Tool::\"x\"", &"z".repeat(10_000)] {
        for subject in [None, Some("::"), Some("\"\\"), Some("")] {
            for action in [Action::CallTool, Action::GetPrompt, Action::ReadResource] {
                let claims = map(claims.clone());
                let who = Principal { subject, claims: &claims };
                let args = map(args.clone());
                // arg_x was out of decimal range, so it was dropped: `has` is false.
                assert!(!a.allows(&who, action, resource, Some(&args), None));
                let (allowed, _) = a.explain(&who, action, resource, Some(&args), None);
                assert!(!allowed);
            }
        }
    }
}

#[test]
fn explain_shows_the_evaluated_request() {
    let a = authorizer(&[WEATHER]);
    let claims = map(json!({"sub": "alice", "n": 1.5, "groups": ["g"]}));
    let args = map(json!({"city": "Paris"}));
    let who = Principal { subject: Some("alice"), claims: &claims };
    let (allowed, request) = a.explain(&who, Action::CallTool, "weather", Some(&args), None);
    assert!(allowed);
    assert_eq!(request["principal"], json!("Client::\"alice\""));
    assert_eq!(request["action"], json!("Action::\"call_tool\""));
    assert_eq!(request["resource"], json!("Tool::\"weather\""));
    assert_eq!(request["context"]["claim_n"], json!({"__extn": {"fn": "decimal", "arg": "1.5000"}}));
    assert_eq!(request["context"]["arg_city"], json!("Paris"));
    assert_eq!(request["reasons"], json!(["policy0"]));
    let entities = request["entities"].as_array().expect("entities");
    assert_eq!(entities.len(), 3);
    assert_eq!(entities[0]["parents"], json!([{"type": "THVGroup", "id": "g"}]));
    assert_eq!(entities[1]["attrs"], json!({"operation": "call_tool"}));
    assert_eq!(entities[2]["attrs"]["arg_city"], json!("Paris"));
    assert_eq!(entities[2]["attrs"]["feature"], json!("tool"));
}

#[test]
fn remembered_decisions_follow_their_inputs() {
    let a = authorizer(&[
        r#"permit(principal, action == Action::"call_tool", resource) when { context has arg_mode && context.arg_mode == "read" };"#,
        r#"forbid(principal in THVGroup::"banned", action, resource);"#,
    ]);
    for _ in 0..3 {
        assert!(call(&a, Some("u"), json!({}), "t", Some(json!({"mode": "read", "noise": 1}))));
        assert!(
            call(&a, Some("u"), json!({}), "t", Some(json!({"mode": "read", "noise": 2}))),
            "unnamed args: same key"
        );
        assert!(!call(&a, Some("u"), json!({}), "t", Some(json!({"mode": "write"}))));
        assert!(!call(&a, Some("u"), json!({"groups": ["banned"]}), "t", Some(json!({"mode": "read"}))));
        assert!(!call(&a, Some("u"), json!({}), "t2", Some(json!({"mode": ["read"]}))));
        assert!(call(&a, Some("v"), json!({}), "t2", Some(json!({"mode": "read"}))));
    }
}

#[test]
fn explain_shows_the_whole_model_while_allows_builds_what_policies_name() {
    let a = authorizer(&[r#"permit(principal, action, resource) when { context.claim_role == "admin" };"#]);
    let claims = map(json!({"role": "admin", "email": "a@example.com"}));
    let args = map(json!({"path": "/tmp"}));
    let who = Principal { subject: Some("alice"), claims: &claims };
    let (allowed, request) = a.explain(&who, Action::CallTool, "t", Some(&args), None);
    assert!(allowed && a.allows(&who, Action::CallTool, "t", Some(&args), None));
    assert_eq!(request["context"], json!({"claim_role": "admin", "claim_email": "a@example.com", "arg_path": "/tmp"}));
    let parts = model::parts::<JsonValues>(
        &a.options,
        a.visible.as_ref(),
        &model::Request {
            claims: &claims,
            action: Action::CallTool,
            resource: "t",
            arguments: Some(&args),
            annotations: None,
        },
    );
    assert_eq!(Value::Object(parts.context().collect()), json!({"claim_role": "admin"}));
    assert!(parts.resource.is_empty(), "no policy names a resource attribute");
}
