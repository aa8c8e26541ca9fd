//! The Cedar decision table (`--authz-config`): policy sets × requests in ToolHive's entity
//! model, each decided by the proxy's authorizer and checked against the decision ToolHive's
//! semantics give (written by hand below). The table, with the exact Cedar request each row
//! evaluated, is written to `target/cedar-crosscheck.json`; `interop/policy/cedar_crosscheck.py`
//! replays every row through cedarpy (Cedar's Python binding) and compares.

use std::path::PathBuf;

use serde_json::{Value, json};
use thv::internals::{CedarConfig, CedarRequest, cedar_explain};

/// A policy set: the config's policies, `entities_json`, extra `cedar` options.
struct Set {
    name: &'static str,
    policies: &'static [&'static str],
    entities: &'static str,
    options: Value,
    server: Option<&'static str>,
    yaml: bool,
    cases: Vec<Case>,
}

impl Set {
    fn new(name: &'static str, policies: &'static [&'static str], cases: Vec<Case>) -> Set {
        Set { name, policies, entities: "[]", options: json!({}), server: None, yaml: false, cases }
    }

    fn config_text(&self) -> String {
        let mut cedar = json!({ "policies": self.policies, "entities_json": self.entities });
        if let (Some(cedar), Some(options)) = (cedar.as_object_mut(), self.options.as_object()) {
            cedar.extend(options.clone());
        }
        let config = json!({ "version": "1.0", "type": "cedarv1", "cedar": cedar });
        if self.yaml {
            // JSON is YAML; flow style keeps the policies' quotes intact.
            format!("# {}\n{}\n", self.name, config)
        } else {
            config.to_string()
        }
    }
}

/// One request and the decision ToolHive's semantics give it.
#[derive(Clone)]
struct Case {
    subject: Option<&'static str>,
    claims: Value,
    action: &'static str,
    resource: String,
    args: Option<Value>,
    annotations: Option<Value>,
    expect: bool,
}

fn case(action: &'static str, resource: &str) -> Case {
    Case {
        subject: Some("alice"),
        claims: json!({ "sub": "alice" }),
        action,
        resource: resource.to_owned(),
        args: None,
        annotations: None,
        expect: false,
    }
}

fn call(tool: &str) -> Case {
    case("call_tool", tool)
}
fn prompt(name: &str) -> Case {
    case("get_prompt", name)
}
fn read(uri: &str) -> Case {
    case("read_resource", uri)
}

impl Case {
    fn allow(mut self) -> Case {
        self.expect = true;
        self
    }
    fn deny(mut self) -> Case {
        self.expect = false;
        self
    }
    fn who(mut self, subject: &'static str) -> Case {
        self.subject = Some(subject);
        self.claims = json!({ "sub": subject });
        self
    }
    fn anonymous(mut self) -> Case {
        self.subject = None;
        self.claims = json!({});
        self
    }
    /// Adds claims (merged over `sub`).
    fn claims(mut self, claims: Value) -> Case {
        if let (Some(base), Some(more)) = (self.claims.as_object_mut(), claims.as_object()) {
            base.extend(more.clone());
        }
        self
    }
    fn args(mut self, args: Value) -> Case {
        self.args = Some(args);
        self
    }
    fn annotations(mut self, annotations: Value) -> Case {
        self.annotations = Some(annotations);
        self
    }
}

fn docs_basics() -> Set {
    Set::new(
        "docs-basics",
        &[
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather");"#,
            r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"greeting");"#,
            r#"permit(principal, action == Action::"read_resource", resource == Resource::"data");"#,
            r#"permit(principal == Client::"user123", action == Action::"call_tool", resource);"#,
            r#"permit(principal, action == Action::"read_resource", resource == Resource::"file:///etc/passwd");"#,
        ],
        vec![
            call("weather").allow(),
            call("weather").anonymous().allow(),
            call("Weather").deny(),
            call("weather ").deny(),
            call("calc").deny(),
            call("calc").who("user123").allow(),
            call("calc").who("User123").deny(),
            prompt("greeting").allow(),
            prompt("weather").deny(),
            read("data").allow(),
            read("file:///etc/passwd").allow(),
            read("file:///etc/passwd/").deny(),
            read("file:///etc/shadow").deny(),
            call("greeting").deny(),
            prompt("greeting").who("user123").allow(),
            read("data").anonymous().allow(),
            call("").deny(),
            call("weather").args(json!({ "city": "Paris" })).allow(),
        ],
    )
}

fn claims() -> Set {
    Set::new(
        "claims",
        &[
            r#"permit(principal, action == Action::"call_tool", resource) when { principal has claim_roles && principal.claim_roles.contains("admin") };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather") when { context has claim_name && context.claim_name == "John Doe" };"#,
            r#"permit(principal, action == Action::"get_prompt", resource) when { principal has claim_email_verified && principal.claim_email_verified == true };"#,
            r#"permit(principal, action == Action::"read_resource", resource) when { principal has claim_level && principal.claim_level.greaterThanOrEqual(decimal("3.0")) };"#,
            r#"forbid(principal, action, resource) when { context has claim_suspended && context.claim_suspended == true };"#,
            r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"team") when { principal has claim_org && principal.claim_org has team && principal.claim_org.team like "plat*" };"#,
            r#"permit(principal, action == Action::"read_resource", resource == Resource::"exact") when { context has claim_level && context.claim_level == decimal("2.5") };"#,
        ],
        vec![
            call("x").claims(json!({ "roles": ["admin"] })).allow(),
            call("x").claims(json!({ "roles": ["user", "admin"] })).allow(),
            call("x").claims(json!({ "roles": ["user"] })).deny(),
            call("x").claims(json!({ "roles": "admin" })).deny(), // contains() on a string: error
            call("x").deny(),
            call("x").claims(json!({ "roles": [] })).deny(),
            call("x").claims(json!({ "roles": ["admin"], "suspended": true })).deny(),
            call("x").claims(json!({ "roles": ["admin"], "suspended": false })).allow(),
            call("x").claims(json!({ "roles": ["admin"], "suspended": "true" })).allow(),
            call("x").claims(json!({ "roles": ["admin", 1, null, {"a": 1}] })).allow(),
            call("weather").claims(json!({ "name": "John Doe" })).allow(),
            call("weather").claims(json!({ "name": "john doe" })).deny(),
            call("weather").claims(json!({ "name": 5 })).deny(),
            call("other").claims(json!({ "name": "John Doe" })).deny(),
            prompt("p").claims(json!({ "email_verified": true })).allow(),
            prompt("p").claims(json!({ "email_verified": "true" })).deny(),
            prompt("p").claims(json!({ "email_verified": false })).deny(),
            prompt("p").deny(),
            read("r").claims(json!({ "level": 3 })).allow(),
            read("r").claims(json!({ "level": 2.9999 })).deny(),
            read("r").claims(json!({ "level": 2.99999 })).deny(), // truncated to 2.9999
            read("r").claims(json!({ "level": 10 })).allow(),
            read("r").claims(json!({ "level": "5" })).deny(), // a string: the method errors
            read("r").claims(json!({ "level": 1e15 })).deny(), // beyond decimal: dropped
            read("r").claims(json!({ "level": -4 })).deny(),
            read("exact").claims(json!({ "level": 2.5 })).allow(),
            read("exact").claims(json!({ "level": 2.50001 })).allow(), // truncated to 2.5000
            prompt("team").claims(json!({ "org": { "team": "platform" } })).allow(),
            prompt("team").claims(json!({ "org": { "team": "sales" } })).deny(),
            prompt("team").claims(json!({ "org": "platform" })).deny(), // `has` on a string: error
            prompt("team").claims(json!({ "org": { "team": null } })).deny(),
            prompt("team").claims(json!({ "org": { "team": { "deep": 1 } } })).deny(),
        ],
    )
}

fn arguments() -> Set {
    Set::new(
        "arguments",
        &[
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"calculator") when { resource.arg_operation == "add" || resource.arg_operation == "subtract" };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"fetch") when { context has arg_url && context.arg_url like "https://*.example.com/*" };"#,
            r#"forbid(principal, action == Action::"call_tool", resource == Tool::"fetch") when { context has arg_headers_present };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"transfer") when { context has arg_amount && context.arg_amount.lessThanOrEqual(decimal("100.0")) };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"deploy") when { resource has arg_dry_run && resource.arg_dry_run == true };"#,
            r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"summary") when { context has arg_style && ["short", "long"].contains(context.arg_style) };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"search") when { resource.arg_query != "" && !(resource has arg_limit) };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"transfer") when { context.arg_amount == 5 };"#,
        ],
        vec![
            call("calculator").args(json!({ "operation": "add" })).allow(),
            call("calculator").args(json!({ "operation": "subtract" })).allow(),
            call("calculator").args(json!({ "operation": "multiply" })).deny(),
            call("calculator").deny(), // unguarded attribute: error
            call("calculator").args(json!({ "operation": 1 })).deny(),
            call("calculator").args(json!({ "operation": ["add"] })).deny(),
            call("calculator").args(json!({ "operation": "add", "x": null })).allow(),
            call("fetch").args(json!({ "url": "https://api.example.com/v1" })).allow(),
            call("fetch").args(json!({ "url": "https://api.example.com.evil.org/x" })).deny(),
            call("fetch").args(json!({ "url": "https://evil.org/?.example.com/" })).allow(),
            call("fetch").args(json!({ "url": "http://api.example.com/" })).deny(),
            call("fetch").args(json!({ "url": "https://a.example.com/", "headers": { "a": "b" } })).deny(),
            call("fetch").args(json!({ "url": "https://a.example.com/", "headers": null })).deny(),
            call("fetch").deny(),
            call("transfer").args(json!({ "amount": 100 })).allow(),
            call("transfer").args(json!({ "amount": 100.00009 })).allow(),
            call("transfer").args(json!({ "amount": 100.0001 })).deny(),
            call("transfer").args(json!({ "amount": 5 })).allow(), // the Long policy is just false
            call("transfer").args(json!({ "amount": "5" })).deny(),
            call("transfer").deny(),
            call("transfer").args(json!({ "amount": -1e20 })).deny(),
            call("deploy").args(json!({ "dry_run": true })).allow(),
            call("deploy").args(json!({ "dry_run": "true" })).deny(),
            call("deploy").args(json!({ "dry_run": false })).deny(),
            call("deploy").deny(),
            prompt("summary").args(json!({ "style": "short" })).allow(),
            prompt("summary").args(json!({ "style": "medium" })).deny(),
            prompt("summary").args(json!({ "style": 1 })).deny(),
            call("summary").args(json!({ "style": "short" })).deny(),
            call("search").args(json!({ "query": "x" })).allow(),
            call("search").args(json!({ "query": "" })).deny(),
            call("search").args(json!({ "query": "x", "limit": 5 })).deny(),
            call("search").deny(),
            call("search").args(json!({ "query": "x", "": "empty name" })).allow(),
        ],
    )
}

fn annotations() -> Set {
    Set::new(
        "annotations",
        &[
            r#"permit(principal, action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint };"#,
            r#"forbid(principal, action == Action::"call_tool", resource) when { resource has destructiveHint && resource.destructiveHint };"#,
            r#"permit(principal, action == Action::"call_tool", resource) when { principal has claim_groups && principal.claim_groups.contains("writers") && resource has idempotentHint && resource.idempotentHint };"#,
            r#"forbid(principal, action == Action::"call_tool", resource) when { resource has openWorldHint && resource.openWorldHint && !(principal has claim_trusted) };"#,
            r#"permit(principal, action == Action::"get_prompt", resource) when { resource has readOnlyHint };"#,
        ],
        vec![
            call("t").annotations(json!({ "readOnlyHint": true })).allow(),
            call("t").annotations(json!({ "readOnlyHint": false })).deny(),
            call("t").deny(),
            call("t").annotations(json!({})).deny(),
            call("t").annotations(json!({ "readOnlyHint": "true" })).deny(),
            call("t").annotations(json!({ "readOnlyHint": true, "destructiveHint": true })).deny(),
            call("t").annotations(json!({ "readOnlyHint": true, "destructiveHint": false })).allow(),
            call("t").annotations(json!({ "idempotentHint": true })).claims(json!({ "groups": ["writers"] })).allow(),
            call("t").annotations(json!({ "idempotentHint": true })).deny(),
            call("t").annotations(json!({ "idempotentHint": false })).claims(json!({ "groups": ["writers"] })).deny(),
            call("t").annotations(json!({ "readOnlyHint": true, "openWorldHint": true })).deny(),
            call("t")
                .annotations(json!({ "readOnlyHint": true, "openWorldHint": true }))
                .claims(json!({ "trusted": true }))
                .allow(),
            call("t").annotations(json!({ "readOnlyHint": true, "openWorldHint": false })).allow(),
            prompt("t").annotations(json!({ "readOnlyHint": true })).deny(),
            read("t").annotations(json!({ "readOnlyHint": true })).deny(),
            call("t").annotations(json!({ "readOnlyHint": true })).anonymous().allow(),
            call("t").annotations(json!({ "title": "T", "readOnlyHint": true })).allow(),
        ],
    )
}

fn groups() -> Set {
    let mut set = Set::new(
        "groups-entities",
        &[
            r#"permit(principal in THVGroup::"staff", action == Action::"call_tool", resource);"#,
            r#"permit(principal in THVGroup::"admins", action, resource);"#,
            r#"forbid(principal in THVGroup::"contractors", action == Action::"read_resource", resource) when { resource.uri like "file:///secret/*" };"#,
            r#"permit(principal, action == Action::"read_resource", resource) when { resource.uri like "file:///*" };"#,
            r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"oncall") when { principal has claim_sub && principal.claim_sub == Team::"ops".oncall };"#,
            r#"forbid(principal, action == Action::"call_tool", resource == Tool::"payroll") unless { resource has owner };"#,
        ],
        vec![
            call("x").claims(json!({ "groups": ["eng"] })).allow(),
            call("x").claims(json!({ "groups": ["staff"] })).allow(),
            call("x").claims(json!({ "groups": ["sales"] })).deny(),
            call("x").deny(),
            call("x").claims(json!({ "roles": ["eng"] })).allow(),
            call("x").claims(json!({ "cognito:groups": ["eng"] })).allow(),
            call("x").claims(json!({ "groups": "eng" })).deny(),
            call("x").claims(json!({ "groups": [], "roles": ["eng"] })).deny(), // [] stops the fallback
            prompt("p").claims(json!({ "groups": ["admins"] })).allow(),
            read("file:///secret/k").claims(json!({ "groups": ["contractors"] })).deny(),
            read("file:///secret/k").claims(json!({ "groups": ["eng"] })).allow(),
            read("file:///public/x").claims(json!({ "groups": ["contractors"] })).allow(),
            read("mcp://x").claims(json!({ "groups": ["eng"] })).deny(),
            read("file:///secret/k").claims(json!({ "groups": ["contractors", "admins"] })).deny(),
            prompt("oncall").who("bob").allow(),
            prompt("oncall").who("bob").claims(json!({ "sub": "robert" })).deny(),
            prompt("oncall").deny(),
            call("payroll").claims(json!({ "groups": ["admins"] })).deny(), // entities_json's Tool is replaced
            call("payroll").claims(json!({ "groups": ["eng"] })).deny(),
            call("other").claims(json!({ "groups": ["admins"] })).allow(),
        ],
    );
    set.entities = r#"[
        {"uid": {"type": "THVGroup", "id": "eng"}, "attrs": {}, "parents": [{"type": "THVGroup", "id": "staff"}]},
        {"uid": {"type": "THVGroup", "id": "contractors"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Tool", "id": "payroll"}, "attrs": {"owner": "hr"}, "parents": []},
        {"uid": {"type": "Team", "id": "ops"}, "attrs": {"oncall": "bob"}, "parents": []}
    ]"#;
    set
}

fn group_options() -> Set {
    let mut set = Set::new(
        "group-options",
        &[
            r#"permit(principal in Team::"eng", action == Action::"call_tool", resource);"#,
            r#"permit(principal in Team::"auditor", action == Action::"read_resource", resource);"#,
            r#"forbid(principal in THVGroup::"eng", action, resource);"#,
        ],
        vec![
            call("x").claims(json!({ "realm_access": { "roles": ["eng"] } })).allow(),
            call("x").claims(json!({ "groups": ["eng"] })).allow(),
            call("x").claims(json!({ "realm_access": { "roles": "eng" } })).deny(),
            read("r").claims(json!({ "https://example.com/roles": ["auditor"] })).allow(),
            call("x").claims(json!({ "https://example.com/roles": ["auditor"] })).deny(),
            call("x").claims(json!({ "realm_access.roles": ["eng"] })).allow(),
            call("x").claims(json!({ "realm_access": { "roles": ["x"] }, "groups": ["eng"] })).deny(),
        ],
    );
    set.options = json!({
        "group_claim_name": "realm_access.roles",
        "role_claim_name": "https://example.com/roles",
        "group_entity_type": "Team"
    });
    set.entities = "";
    set
}

fn unless_missing() -> Set {
    Set::new(
        "unless-missing",
        &[r#"permit(principal, action, resource) unless { principal.claim_blocked };"#],
        vec![
            call("x").claims(json!({ "blocked": false })).allow(),
            call("x").claims(json!({ "blocked": true })).deny(),
            call("x").deny(),
            call("x").claims(json!({ "blocked": "no" })).deny(),
            prompt("x").anonymous().deny(),
            read("x").claims(json!({ "blocked": false })).allow(),
        ],
    )
}

fn patterns() -> Set {
    Set::new(
        "patterns",
        &[
            r#"permit(principal is Client, action in [Action::"get_prompt", Action::"read_resource"], resource) when { resource.name like "public-*" };"#,
            r#"permit(principal, action == Action::"call_tool", resource is Tool) when { resource.name like "*_readonly" };"#,
            r#"forbid(principal, action, resource is Resource) when { resource.uri like "*..*" };"#,
            r#"permit(principal, action == Action::"read_resource", resource) when { resource.uri like "mcp://srv/*" };"#,
            r#"permit(principal, action == Action::"call_tool", resource) when { if principal has claim_tier then principal.claim_tier == "gold" else false };"#,
            r#"permit(principal, action == Action::"read_resource", resource == Resource::"file:///a b/\"q\"\\x?y=1#z");"#,
            r#"permit(principal, action == Action::"get_prompt", resource) when { resource.name like "star\*literal" };"#,
        ],
        vec![
            prompt("public-x").allow(),
            read("public-doc").allow(),
            call("public-x").deny(),
            call("db_readonly").allow(),
            call("db_readonly_not").deny(),
            read("mcp://srv/config:admin").allow(),
            read("mcp://srv/../etc").deny(),
            read("mcp://other/x").deny(),
            call("x").claims(json!({ "tier": "gold" })).allow(),
            call("x").claims(json!({ "tier": "silver" })).deny(),
            call("x").claims(json!({ "tier": 1 })).deny(),
            read("file:///a b/\"q\"\\x?y=1#z").allow(),
            read("file:///a_b/_q__x_y_1_z").deny(),
            prompt("star*literal").allow(),
            prompt("starXliteral").deny(),
            read("").deny(),
            read("public-\n\u{1F600}\t\u{0}").allow(),
            prompt("Public-x").deny(),
        ],
    )
}

fn multi_valued() -> Set {
    let mut set = Set::new(
        "multi-valued-claims",
        &[
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"mail") when { context has claimset_scp && context.claimset_scp.contains("Mail.Read") };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"files") when { context has claim_scope && context.claim_scope like "*files.read*" };"#,
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"both") when { principal has claimset_scope && principal.claimset_scope.containsAll(["a", "b"]) };"#,
        ],
        vec![
            call("mail").claims(json!({ "scp": "Mail.Read User.Read" })).allow(),
            call("mail").claims(json!({ "scp": ["Mail.Read"] })).allow(),
            call("mail").claims(json!({ "scp": "Mail.ReadWrite" })).deny(),
            call("mail").claims(json!({ "scp": ["Mail.ReadWrite", 5] })).deny(),
            call("mail").deny(),
            call("files").claims(json!({ "scope": "openid files.read" })).allow(),
            call("files").claims(json!({ "scope": ["openid", "files.read"] })).allow(),
            call("files").claims(json!({ "scope": ["openid"] })).deny(),
            call("both").claims(json!({ "scope": "b  a c" })).allow(),
            call("both").claims(json!({ "scope": ["a"] })).deny(),
            call("mail").claims(json!({ "scp": 5 })).deny(),
        ],
    );
    set.options = json!({ "multi_valued_claims": ["scp", "scope", "scp"] });
    set
}

const SERVER_POLICIES: &[&str] = &[
    r#"permit(principal, action, resource in MCP::"github") when { principal has claim_sub };"#,
    r#"forbid(principal, action == Action::"call_tool", resource in MCP::"gitlab");"#,
    r#"forbid(principal, action == Action::"call_tool", resource == Tool::"delete_repo");"#,
];

fn server_scoped() -> Set {
    let mut set = Set::new(
        "server-scoped",
        SERVER_POLICIES,
        vec![
            call("x").allow(),
            prompt("x").allow(),
            read("x").allow(),
            call("delete_repo").deny(),
            call("x").anonymous().deny(),
        ],
    );
    set.server = Some("github");
    set
}

fn server_unscoped() -> Set {
    Set::new("server-unscoped", SERVER_POLICIES, vec![call("x").deny(), read("x").deny()])
}

fn anonymous() -> Set {
    Set::new(
        "anonymous",
        &[
            r#"permit(principal == Client::"anonymous", action == Action::"get_prompt", resource);"#,
            r#"forbid(principal == Client::"anonymous", action == Action::"call_tool", resource);"#,
            r#"permit(principal, action == Action::"call_tool", resource);"#,
        ],
        vec![
            prompt("x").anonymous().allow(),
            call("x").anonymous().deny(),
            call("x").allow(),
            prompt("x").deny(),
            prompt("x").who("anonymous").allow(),
            call("x").who("").deny(), // no principal: deny without asking Cedar
            call("x").who("Client::\"x\"").allow(),
            prompt("x").who("a\"b\\c").deny(),
        ],
    )
}

fn yaml() -> Set {
    let mut set = docs_basics();
    set.name = "docs-basics-yaml";
    set.yaml = true;
    set.cases.truncate(6);
    set
}

fn errors_fail_closed() -> Set {
    Set::new(
        "errors-fail-closed",
        &[
            r#"permit(principal, action, resource);"#,
            r#"forbid(principal, action, resource) when { principal.claim_banned == true };"#,
            r#"permit(principal, action == Action::"get_prompt", resource) when { context.arg_x.foo == 1 };"#,
        ],
        vec![
            call("x").claims(json!({ "banned": false })).allow(),
            call("x").claims(json!({ "banned": true })).deny(),
            call("x").deny(),
            prompt("x").claims(json!({ "banned": false })).deny(),
            prompt("x").claims(json!({ "banned": false })).args(json!({ "x": "s" })).deny(),
            prompt("x").claims(json!({ "banned": false })).args(json!({ "x": { "foo": 1 } })).deny(),
            read("x").claims(json!({ "banned": false })).allow(),
        ],
    )
}

/// A policy reading the context record as a whole sees every claim and argument (the proxy
/// then builds them all rather than only those named).
fn whole_context() -> Set {
    Set::new(
        "whole-context",
        &[
            r#"permit(principal, action == Action::"call_tool", resource) when { context == {"claim_sub": "alice", "arg_q": "x"} };"#,
            r#"permit(principal, action == Action::"get_prompt", resource) when { [context].contains({"claim_sub": "bob"}) };"#,
        ],
        vec![
            call("t").args(json!({ "q": "x" })).allow(),
            call("t").args(json!({ "q": "x", "extra": true })).deny(),
            call("t").claims(json!({ "email": "a@example.com" })).args(json!({ "q": "x" })).deny(),
            call("t").deny(),
            prompt("p").who("bob").allow(),
            prompt("p").who("bob").claims(json!({ "n": 1 })).deny(),
        ],
    )
}

fn sets() -> Vec<Set> {
    vec![
        docs_basics(),
        claims(),
        arguments(),
        annotations(),
        groups(),
        group_options(),
        unless_missing(),
        patterns(),
        multi_valued(),
        server_scoped(),
        server_unscoped(),
        anonymous(),
        yaml(),
        errors_fail_closed(),
        whole_context(),
    ]
}

fn table_path() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => manifest.join(dir), // an absolute dir replaces the base
        None => manifest.join("target"),
    };
    target.join("cedar-crosscheck.json")
}

#[test]
fn authz_table_decides_as_toolhive_and_is_written_for_cedarpy() {
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    for set in sets() {
        let text = set.config_text();
        let config = CedarConfig { text: &text, yaml: set.yaml, server_name: set.server };
        for (i, case) in set.cases.iter().enumerate() {
            let name = format!("{}#{}", set.name, i + 1);
            let request = CedarRequest {
                subject: case.subject,
                claims: &case.claims,
                action: case.action,
                resource: &case.resource,
                arguments: case.args.as_ref(),
                annotations: case.annotations.as_ref(),
            };
            let (decision, cedar) = match cedar_explain(&config, &request) {
                Ok(result) => result,
                Err(e) => panic!("{name}: {e}"),
            };
            if decision != case.expect {
                wrong.push(format!("{name}: decided {decision}, ToolHive's semantics give {} ({cedar})", case.expect));
            }
            rows.push(json!({
                "name": name,
                "policies": set.policies,
                "decision": decision,
                "expected": case.expect,
                "request": cedar,
            }));
        }
    }
    assert!(wrong.is_empty(), "{} wrong decisions:\n{}", wrong.len(), wrong.join("\n"));
    assert!(rows.len() >= 150, "only {} rows", rows.len());
    let allowed = rows.iter().filter(|row| row["decision"] == json!(true)).count();
    assert!(
        allowed * 4 > rows.len() && allowed * 4 < rows.len() * 3,
        "a lopsided table: {allowed} of {} allowed",
        rows.len()
    );
    let path = table_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("target dir");
    }
    let table = json!({ "format": "thv-cedar-crosscheck/1", "rows": rows });
    std::fs::write(&path, serde_json::to_vec_pretty(&table).expect("serialise")).expect("write the table");
}
