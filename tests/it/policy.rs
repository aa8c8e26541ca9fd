//! The MCP policy end to end with the official Rust SDK on both sides: an `rmcp` client
//! talks to an `rmcp` server through `thv proxy --authz-config … --audit-config …`, in both
//! of the server's response modes (SSE and JSON); the audit file is read back line by line;
//! and every bad policy, tools or audit file stops the proxy at startup, naming the flag.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Map, Value, json};

use crate::support::idp::{idp, key, sign};
use crate::support::mcp_server::{McpServer, Mode};
use crate::support::{Thv, run_thv};

const STEP: Duration = Duration::from_secs(20);

/// `add` and `countdown` may be called; `echo` is forbidden outright; everything else
/// (`session`) is denied by default.
const AUTHZ_YAML: &str = r#"version: "1.0"
type: cedarv1
cedar:
  policies:
    - permit(principal, action == Action::"call_tool", resource == Tool::"add");
    - permit(principal, action == Action::"call_tool", resource == Tool::"echo");
    - permit(principal, action == Action::"call_tool", resource == Tool::"countdown");
    - forbid(principal, action == Action::"call_tool", resource == Tool::"echo");
  entities_json: "[]"
"#;

/// An argument value that must never appear in the proxy's own log.
const ARGUMENT: &str = "argument-value-9f41";

/// A fresh directory of this test's own under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thv-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut).await.unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// One session of the SDK client through the proxy: the filtered list, a permitted call and
/// two refused ones.
async fn session(url: &str) {
    let config = ClientConfig::new(ClientCapabilities::default(), Implementation::new("thv-it-policy", "1.0.0"));
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let client = within("initialize", config.serve(transport)).await.expect("initialize through the proxy");
    let tools = within("tools/list", client.list_tools(None)).await.expect("tools/list");
    let mut names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["add", "countdown"], "the list shows exactly what the policy permits");
    let sum = within(
        "add",
        client.call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 2, "b": 3})))),
    )
    .await
    .expect("a permitted call");
    assert_eq!(sum.content[0].as_text().unwrap().text, "5");
    for denied in ["echo", "session"] {
        let refused = within(
            denied,
            client.call_tool(CallToolRequestParams::new(denied).with_arguments(args(json!({"text": ARGUMENT})))),
        )
        .await;
        match refused {
            Err(_) => {}
            Ok(result) => assert_eq!(result.is_error, Some(true), "{denied} must be refused: {result:?}"),
        }
    }
    let _ = within("close", client.cancel()).await;
}

/// The audit lines of a file, each parsed.
fn audit_lines(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_client_sees_and_calls_only_what_the_policy_permits_and_every_call_is_audited() {
    for mode in [Mode::Sse, Mode::Json] {
        let dir = scratch(&format!("policy-{mode:?}"));
        let authz = write(&dir, "authz.yaml", AUTHZ_YAML);
        let log = dir.join("audit.ndjson").to_str().unwrap().to_owned();
        let audit = write(
            &dir,
            "audit.json",
            &json!({"component": "it", "logFile": log, "includeRequestData": true}).to_string(),
        );
        let server = McpServer::start(mode).await.expect("start the MCP server");
        let target = server.url();
        let flags = ["--authz-config", authz.as_str(), "--audit-config", audit.as_str()].map(str::to_owned);
        let mut thv = within(
            "thv startup",
            tokio::task::spawn_blocking(move || {
                Thv::start(&target, &flags.iter().map(String::as_str).collect::<Vec<_>>())
            }),
        )
        .await
        .unwrap();
        session(&thv.url("/mcp")).await;
        // Each denial is one info line with subject, method and name, and never the call's
        // arguments (the proxy runs without --debug here).
        let stderr = thv.wait_for_stderr("name=\"session\"");
        for name in ["echo", "session"] {
            let line = stderr
                .lines()
                .find(|l| l.contains("denied by the authorization policy") && l.contains(&format!("name=\"{name}\"")))
                .unwrap_or_else(|| panic!("{mode:?}: no denial line for {name} in: {stderr}"));
            assert!(
                line.contains("INFO")
                    && line.contains("subject=\"anonymous\"")
                    && line.contains("method=\"tools/call\""),
                "{line}"
            );
        }
        assert!(!stderr.contains(ARGUMENT), "{mode:?}: a call's arguments reached the log: {stderr}");
        // The queue is written at shutdown at the latest: stop, then read.
        thv.terminate();
        let status = tokio::task::spawn_blocking(move || thv.wait_exit(Duration::from_secs(15))).await.unwrap();
        assert!(status.success(), "{mode:?}: thv exited with {status}");

        let mode_bits = std::fs::metadata(&log).expect("the audit file exists").permissions().mode() & 0o777;
        assert_eq!(mode_bits, 0o600, "{mode:?}: the audit file is private");
        let raw = std::fs::read_to_string(&log).unwrap();
        for secret in ["Bearer", "authorization", "Authorization"] {
            assert!(!raw.contains(secret), "{mode:?}: {secret:?} in the audit log");
        }
        let lines = audit_lines(&log);
        let of = |ty: &str| lines.iter().filter(|l| l["type"] == ty).collect::<Vec<_>>();
        assert_eq!(of("mcp_initialize").len(), 1, "{mode:?}: {lines:#?}");
        assert_eq!(of("mcp_tools_list").len(), 1, "{mode:?}");
        let calls = of("mcp_tool_call");
        let outcome = |name: &str| {
            calls.iter().find(|l| l["target"]["name"] == name).map(|l| l["outcome"].as_str().unwrap_or("").to_owned())
        };
        assert_eq!(outcome("add").as_deref(), Some("success"), "{mode:?}: {calls:#?}");
        assert_eq!(outcome("echo").as_deref(), Some("denied"), "{mode:?}");
        assert_eq!(outcome("session").as_deref(), Some("denied"), "{mode:?}");
        for line in &lines {
            for field in ["audit_id", "type", "logged_at", "outcome", "component", "source", "subjects", "target"] {
                assert!(line.get(field).is_some(), "{mode:?}: {field} missing in {line}");
            }
            assert_eq!(line["component"], "it");
            assert_eq!(line["source"]["type"], "network");
            assert_eq!(line["source"]["value"], "127.0.0.1");
            assert_eq!(line["subjects"]["user"], "anonymous");
        }
        let add = calls.iter().find(|l| l["target"]["name"] == "add").unwrap();
        assert_eq!(add["data"]["request"]["params"]["arguments"], json!({"a": 2, "b": 3}), "{mode:?}: request data");
        server.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Policies on the token's claims and on the server's annotations: an admin may call any
/// tool; anyone else only tools the server marks `readOnlyHint` (`echo`).
const CLAIMS_AND_ANNOTATIONS: &str = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
  "permit(principal, action == Action::\"call_tool\", resource) when { principal.claim_role == \"admin\" };",
  "permit(principal, action == Action::\"call_tool\", resource) when { resource has readOnlyHint && resource.readOnlyHint };"
], "entities_json": "[]"}}"#;

/// The tools `user` sees through the proxy, and whether `add` works for them.
async fn as_user(url: &str, token: &str) -> (Vec<String>, bool) {
    let config = ClientConfig::new(ClientCapabilities::default(), Implementation::new("thv-it-claims", "1.0.0"));
    let transport = StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.to_owned())
            .auth_header(token.to_owned()),
    );
    let client = within("initialize", config.serve(transport)).await.expect("initialize with a token");
    let tools = within("tools/list", client.list_tools(None)).await.expect("tools/list");
    let mut names: Vec<String> = tools.tools.iter().map(|t| t.name.to_string()).collect();
    names.sort_unstable();
    let echo = within(
        "echo",
        client.call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "hi"})))),
    )
    .await
    .expect("echo is read-only: anyone may call it");
    assert_eq!(echo.content[0].as_text().unwrap().text, "hi");
    let add = within(
        "add",
        client.call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2})))),
    )
    .await;
    let added = matches!(&add, Ok(r) if r.is_error != Some(true));
    let _ = within("close", client.cancel()).await;
    (names, added)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_on_token_claims_and_server_annotations_decide_what_each_user_sees_and_calls() {
    let (signing, jwk) = key();
    let idp = idp(jwk).await;
    let issuer = format!("http://{}", idp.addr);
    let dir = scratch("policy-claims");
    let authz = write(&dir, "authz.json", CLAIMS_AND_ANNOTATIONS);
    for mode in [Mode::Sse, Mode::Json] {
        let server = McpServer::start(mode).await.expect("start the MCP server");
        let target = server.url();
        let flags = ["--authz-config", authz.as_str(), "--oidc-issuer", issuer.as_str()].map(str::to_owned);
        let thv = within(
            "thv startup",
            tokio::task::spawn_blocking(move || {
                Thv::start(&target, &flags.iter().map(String::as_str).collect::<Vec<_>>())
            }),
        )
        .await
        .unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let token = |sub: &str, role: &str| {
            let claims = json!({"iss": issuer, "aud": thv.url("/mcp"), "sub": sub, "exp": now + 600, "role": role});
            sign(&signing, &claims)
        };
        let (alice, alice_added) = as_user(&thv.url("/mcp"), &token("alice", "reader")).await;
        assert_eq!(alice, ["echo"], "{mode:?}: a reader sees the read-only tools only");
        assert!(!alice_added, "{mode:?}: a reader may not call add");
        let (bob, bob_added) = as_user(&thv.url("/mcp"), &token("bob", "admin")).await;
        assert_eq!(bob, ["add", "countdown", "echo", "session"], "{mode:?}: an admin sees every tool");
        assert!(bob_added, "{mode:?}: an admin may call add");
        server.shutdown().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits (bounded) until `path` holds at least `n` lines.
async fn lines_within(path: &Path, n: usize) -> usize {
    for _ in 0..100 {
        let count = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if count >= n {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_reopened_on_sighup_for_rotation_and_nothing_is_lost() {
    let dir = scratch("policy-rotate");
    let log = dir.join("audit.ndjson");
    let audit = write(&dir, "audit.json", &json!({"logFile": log.to_str().unwrap()}).to_string());
    let server = McpServer::start(Mode::Json).await.expect("start the MCP server");
    let target = server.url();
    let flags = ["--audit-config".to_owned(), audit];
    let mut thv = within(
        "thv startup",
        tokio::task::spawn_blocking(move || Thv::start(&target, &flags.iter().map(String::as_str).collect::<Vec<_>>())),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let ping = |id: u32| {
        http.post(thv.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string())
            .send()
    };
    within("first ping", ping(1)).await.expect("first ping");
    assert_eq!(lines_within(&log, 1).await, 1, "the first event is written");
    let rotated = dir.join("audit.ndjson.1");
    std::fs::rename(&log, &rotated).unwrap();
    let hup = std::process::Command::new("kill").args(["-HUP", &thv.pid().to_string()]).status().unwrap();
    assert!(hup.success());
    // The signal is handled by the running proxy (it must not end it); the next event goes
    // to a new file at the configured path, once the writer has reopened it.
    let (mut reopened, mut sent) = (false, 1);
    for id in 2..40 {
        within("ping", ping(id)).await.expect("the proxy still serves after SIGHUP");
        sent += 1;
        if lines_within(&log, 1).await >= 1 {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "no new audit file after SIGHUP");
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the reopened file is private too");
    thv.terminate();
    let status = tokio::task::spawn_blocking(move || thv.wait_exit(Duration::from_secs(15))).await.unwrap();
    assert!(status.success(), "thv exited with {status}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    let total = old.lines().count() + new.lines().count();
    let pings = old.lines().chain(new.lines()).filter(|l| l.contains("\"type\":\"mcp_ping\"")).count();
    assert_eq!(pings, total, "every line is a ping event: {old}{new}");
    assert_eq!(total, sent, "one event per ping, none lost across the rotation");
    assert!(old.lines().count() >= 1 && new.lines().count() >= 1, "old: {old}\nnew: {new}");
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_policy_tools_or_audit_file_stops_the_proxy_at_startup() {
    let dir = scratch("policy-startup");
    let unparsable = write(
        &dir,
        "bad.json",
        r#"{"version":"1.0","type":"cedarv1","cedar":{"policies":["permit(principal, action, resource);","permit(principal, action == Action::\"call_tool\", resource)\n when { resource.x = };"],"entities_json":"[]"}}"#,
    );
    let unknown_action = write(
        &dir,
        "action.json",
        r#"{"version":"1.0","type":"cedarv1","cedar":{"policies":["permit(principal, action == Action::\"delete_everything\", resource);"],"entities_json":"[]"}}"#,
    );
    let clash = write(&dir, "clash.json", r#"{"toolsOverride": {"a": {"name": "x"}, "b": {"name": "x"}}}"#);
    let audit = write(&dir, "audit.json", r#"{"eventTypes": ["mcp_tool_call", "mcp_teleport"]}"#);
    let cases: &[(&[&str], &[&str])] = &[
        (&["--authz-config", &unparsable], &["--authz-config", "bad.json", "2"]),
        (&["--authz-config", &unknown_action], &["--authz-config", "delete_everything"]),
        (&["--authz-config", "/nonexistent/authz.json"], &["--authz-config", "/nonexistent/authz.json"]),
        (&["--tools-override", &clash], &["--tools-override", "\"x\""]),
        (&["--tools", ","], &["--tools"]),
        (&["--audit-config", &audit], &["--audit-config", "mcp_teleport"]),
    ];
    for (args, needles) in cases {
        let mut argv = vec!["proxy", "srv", "--target-uri", "http://127.0.0.1:9/mcp"];
        argv.extend_from_slice(args);
        let (code, out, err) = run_thv(&argv);
        assert_eq!(code, 1, "thv {argv:?} should fail; stdout: {out}; stderr: {err}");
        assert!(!out.contains("proxy started"), "must fail before serving: {out}");
        for needle in *needles {
            assert!(err.contains(needle), "thv {args:?}: expected {needle:?} in: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
