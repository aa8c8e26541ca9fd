//! `thv proxy stdio` driven by the official Rust SDK's client against the real rmcp server
//! and the legacy HTTP+SSE server: initialize, tools, progress, sessions, a restarted server.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use http::Method;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam};
use rmcp::service::NotificationContext;
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use super::{Bridge, SSE, request, within};
use crate::support::THV;
use crate::support::legacy_sse::LegacySseServer;
use crate::support::mcp_server::{McpServer, Mode, SERVER_NAME, TOOL_NAMES};
use crate::support::upstream::{ScriptedUpstream, Seen, reply};

/// Records the progress notifications the bridge relays.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<f64>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().expect("progress lock").push(params.progress);
    }
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("thv-it-stdio", "1.0.0"))
    }
}

/// The real SDK client, over the bridge's stdin/stdout, against the real server.
async fn rmcp_client_through_the_bridge(mode: Mode) {
    let server = McpServer::start(mode).await.expect("start the MCP server");
    let mut cmd = tokio::process::Command::new(THV);
    cmd.args(["proxy", "stdio", "it", "--target-uri", &server.url()]).env_remove("TOOLHIVE_DEBUG");
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().expect("spawn thv proxy stdio");
    let recorder = Recorder::default();
    let client = within("initialize", recorder.clone().serve(transport)).await.expect("initialize via the bridge");
    let info = client.peer_info().expect("initialize result");
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some(SERVER_NAME));
    assert_eq!(info.protocol_version.as_str(), "2025-11-25");

    let tools = within("tools/list", client.list_all_tools()).await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOL_NAMES);

    let call = |name: &'static str, args: Value| {
        let Value::Object(args) = args else { unreachable!() };
        client.call_tool(CallToolRequestParams::new(name).with_arguments(args))
    };
    let text = |r: rmcp::model::CallToolResult| r.content[0].as_text().expect("text").text.clone();
    assert_eq!(text(within("add", call("add", json!({"a": 2, "b": 40}))).await.expect("add")), "42");
    let done = within("countdown", call("countdown", json!({"steps": 3, "delay_ms": 20}))).await.expect("countdown");
    assert_eq!(text(done), "countdown of 3 steps finished");
    // rmcp runs notification handlers as tasks of their own, so they may finish out of
    // order; the order on the wire is checked by the raw-line tests.
    let mut progress = recorder.progress.lock().expect("progress lock").clone();
    progress.sort_by(f64::total_cmp);
    assert_eq!(progress, [1.0, 2.0, 3.0], "every progress notification relayed");
    let session = text(within("session", call("session", json!({}))).await.expect("session"));
    match mode {
        Mode::Sse => assert_ne!(session, "none", "the server's Mcp-Session-Id is sent back"),
        Mode::Json => assert_eq!(session, "none"),
    }
    let error = within("unknown tool", call("nope", json!({}))).await.expect_err("an unknown tool is an error");
    assert!(error.to_string().contains("-32602"), "the server's own error answer: {error}");
    within("close", client.cancel()).await.expect("close the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_over_stdio_sse_mode() {
    rmcp_client_through_the_bridge(Mode::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_over_stdio_json_mode() {
    rmcp_client_through_the_bridge(Mode::Json).await;
}

/// The real SDK client through the bridge, spawned with `args`: initialize, tools/list and
/// tools/call (with progress). Returns the client, still open.
async fn sdk_client(args: &[String]) -> rmcp::service::RunningService<RoleClient, Recorder> {
    let mut cmd = tokio::process::Command::new(THV);
    cmd.args(["proxy", "stdio", "it"]).args(args).env_remove("TOOLHIVE_DEBUG");
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().expect("spawn thv proxy stdio");
    let client = within("initialize", Recorder::default().serve(transport)).await.expect("initialize via the bridge");
    let info = client.peer_info().expect("initialize result");
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some(SERVER_NAME));
    let tools = within("tools/list", client.list_all_tools()).await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOL_NAMES);
    assert_eq!(call_text(&client, "add", json!({"a": 2, "b": 40})).await, "42");
    client
}

async fn call_text(
    client: &rmcp::service::RunningService<RoleClient, Recorder>,
    name: &'static str,
    args: Value,
) -> String {
    let Value::Object(args) = args else { unreachable!() };
    let result = within(name, client.call_tool(CallToolRequestParams::new(name).with_arguments(args)))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    result.content[0].as_text().expect("text").text.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_by_flag_by_url_and_by_auto_fallback_on_404_and_405() {
    let server = LegacySseServer::start().await;
    for (path, extra) in [
        ("/mcp", &["--transport", "sse"][..]),
        ("/sse", &[][..]),
        ("/mcp", &[][..]), // auto: POST /mcp is 405
        ("/old", &[][..]), // auto: POST /old is 404
    ] {
        let before = server.posts();
        let mut args = vec!["--target-uri".to_owned(), server.url(path)];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let client = sdk_client(&args).await;
        let done = call_text(&client, "countdown", json!({"steps": 2, "delay_ms": 10})).await;
        assert_eq!(done, "countdown of 2 steps finished", "{path} {extra:?}");
        within("close", client.cancel()).await.expect("close the client");
        // initialize, initialized, tools/list, add, countdown: all to the legacy endpoint.
        assert!(server.posts() - before >= 5, "{path} {extra:?}: {} POSTs", server.posts() - before);
    }
    // Streamable HTTP only: the 405 is an error answer, not a fallback.
    let mut bridge = Bridge::start(&server.url("/mcp"), &["--transport", "streamable-http"]);
    bridge.send_json(&request(1, "ping", json!({})));
    let answer = bridge.next();
    assert!(answer["error"]["message"].as_str().unwrap().contains("HTTP 405"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_endpoint_on_another_origin_is_refused() {
    let upstream = ScriptedUpstream::start(|seen: Seen| match seen.method {
        Method::GET => reply(200, &[SSE], "event: endpoint\ndata: http://203.0.113.9/messages\n\n"),
        _ => reply(202, &[], ""),
    })
    .await;
    let mut bridge = Bridge::start(&upstream.url("/sse"), &[]);
    bridge.send_json(&request(1, "ping", json!({})));
    let answer = bridge.next();
    assert!(answer["error"]["message"].as_str().unwrap().contains("another origin"), "{answer}");
    assert!(upstream.seen().iter().all(|s| s.method == Method::GET), "nothing was POSTed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_met_with_the_clients_initialize_replayed() {
    let server = McpServer::start(Mode::Sse).await.expect("start the MCP server");
    let addr = server.addr();
    let client = sdk_client(&["--target-uri".to_owned(), server.url()]).await;
    let first = call_text(&client, "session", json!({})).await;
    within("shutdown", server.shutdown()).await.expect("stop the MCP server");
    let server = McpServer::bind(addr, Mode::Sse).await.expect("start it again on the same port");
    // The new server knows no session: the bridge opens one and retries, unseen.
    assert_eq!(call_text(&client, "add", json!({"a": 1, "b": 2})).await, "3");
    let second = call_text(&client, "session", json!({})).await;
    assert_ne!(first, second, "a new session");
    assert_eq!(server.session_count().await, 1, "one new session, not one per request");
    let tools = within("tools/list", client.list_all_tools()).await.expect("tools/list after the restart");
    assert_eq!(tools.len(), TOOL_NAMES.len());
    within("close", client.cancel()).await.expect("close the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_server_that_forgot_its_sessions_is_met_with_the_clients_initialize_replayed() {
    let server = LegacySseServer::start().await;
    let client = sdk_client(&["--target-uri".to_owned(), server.url("/sse")]).await;
    for round in 1..=2 {
        server.forget_sessions().await;
        // The stream's end or the endpoint's 404, whichever the bridge meets first, leads
        // to a new stream with the client's initialize replayed, unseen by the client.
        assert_eq!(call_text(&client, "add", json!({"a": round, "b": 2})).await, (round + 2).to_string());
        assert_eq!(server.streams(), 1 + round as usize, "round {round}: one new stream");
    }
    let tools = within("tools/list", client.list_all_tools()).await.expect("tools/list after the restarts");
    assert_eq!(tools.len(), TOOL_NAMES.len());
    within("close", client.cancel()).await.expect("close the client");
}
