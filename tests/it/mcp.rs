//! MCP through `thv`, end to end with the official Rust SDK on both sides: an `rmcp` client
//! talks to an `rmcp` Streamable HTTP server (`support::mcp_server`) only through the proxy.
//!
//! Covered, in both of the server's response modes (SSE and plain JSON): initialize,
//! `tools/list`, `tools/call`, JSON-RPC errors, 1 MiB payloads, progress notifications
//! streamed while the call is still running, and many clients at once. In SSE mode also:
//! sessions (the server's `Mcp-Session-Id` used across calls, concurrent calls on one
//! session, the session ended by DELETE) and resuming a broken stream with `Last-Event-ID`.
//! A few tests speak raw HTTP to pin down what the SDK hides: content types, session
//! headers and status codes as they come out of the proxy.
//!
//! Everything binds and talks to 127.0.0.1, and every wait is bounded.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam,
    ProtocolVersion,
};
use rmcp::service::{NotificationContext, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::Thv;
use crate::support::mcp_server::{McpServer, Mode, SERVER_NAME, TOOL_NAMES};

/// The bound on every single wait in this file (startup, one MCP exchange, one HTTP request).
const STEP: Duration = Duration::from_secs(20);

/// The protocol version rmcp's client asks for in `initialize`, and the server accepts.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// Awaits `fut`, failing the test if it takes longer than [`STEP`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut).await.unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

/// A real MCP server and a `thv proxy --debug` in front of it.
struct Proxied {
    server: McpServer,
    thv: Thv,
}

impl Proxied {
    async fn start(mode: Mode) -> Proxied {
        let server = McpServer::start(mode).await.expect("start the MCP server");
        let target = server.url();
        // Thv::start blocks while it waits for the startup line; keep it off the runtime.
        let thv = within("thv startup", tokio::task::spawn_blocking(move || Thv::start(&target, &["--debug"])))
            .await
            .expect("thv startup task");
        Proxied { server, thv }
    }

    /// The MCP endpoint as clients see it: the proxy's port, the server's path.
    fn mcp_url(&self) -> String {
        self.thv.url("/mcp")
    }
}

/// Who the test client says it is.
fn client_config() -> ClientConfig {
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("thv-it", "1.0.0"))
}

/// Initializes an rmcp client (any handler) against `url`.
async fn connect<H: ClientHandler>(handler: H, url: &str) -> RunningService<RoleClient, H> {
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    within("initialize", handler.serve(transport)).await.unwrap_or_else(|e| panic!("initialize via {url}: {e}"))
}

/// `tools/call` with JSON arguments.
async fn call<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    tool: &'static str,
    args: Value,
) -> Result<CallToolResult, ServiceError> {
    let Value::Object(args) = args else { panic!("tool arguments must be a JSON object") };
    within(tool, client.call_tool(CallToolRequestParams::new(tool).with_arguments(args))).await
}

/// The single text block of a successful tool result.
fn text(result: &CallToolResult) -> &str {
    assert_ne!(result.is_error, Some(true), "tool reported an error: {result:?}");
    assert_eq!(result.content.len(), 1, "expected exactly one content block: {result:?}");
    &result.content[0].as_text().unwrap_or_else(|| panic!("not a text block: {result:?}")).text
}

/// Initialize, list and call through the proxy, asserting concrete values at each step.
async fn initialize_list_call(mode: Mode) {
    let setup = Proxied::start(mode).await;
    let client = connect(client_config(), &setup.mcp_url()).await;

    let info = client.peer_info().expect("initialize result");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
    assert_eq!(info.protocol_version.as_str(), PROTOCOL_VERSION);
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some(SERVER_NAME));
    assert!(info.capabilities.tools.is_some(), "server should advertise tools: {info:?}");

    let tools = within("tools/list", client.list_tools(None)).await.expect("tools/list");
    let mut names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, TOOL_NAMES);
    let add = tools.tools.iter().find(|t| t.name == "add").expect("add is listed");
    let props = add.input_schema.get("properties").and_then(Value::as_object).expect("add has an input schema");
    assert!(props.contains_key("a") && props.contains_key("b"), "add's schema: {:?}", add.input_schema);

    assert_eq!(text(&call(&client, "add", json!({"a": 2, "b": 40})).await.expect("add")), "42");
    assert_eq!(text(&call(&client, "add", json!({"a": -7, "b": 3})).await.expect("add")), "-4");
    // Non-ASCII, quotes, newlines and an SSE-looking line must all survive the byte relay.
    let tricky = "héllo \"proxy\" ✓\ndata: not an event\n\n";
    assert_eq!(text(&call(&client, "echo", json!({"text": tricky})).await.expect("echo")), tricky);

    within("close", client.cancel()).await.expect("close the client");
    // --debug logs one line per forwarded request; MCP clients POST to /mcp.
    let log = setup.thv.stderr();
    assert!(log.lines().any(|l| l.contains("POST") && l.contains("/mcp")), "no request lines in thv's log:\n{log}");
}

#[tokio::test]
async fn sse_mode_initialize_list_and_call_through_thv() {
    initialize_list_call(Mode::Sse).await;
}

#[tokio::test]
async fn json_mode_initialize_list_and_call_through_thv() {
    initialize_list_call(Mode::Json).await;
}

/// A JSON-RPC error from the server reaches the client intact (code and message).
#[tokio::test]
async fn tool_errors_pass_through_thv() {
    for mode in [Mode::Sse, Mode::Json] {
        let setup = Proxied::start(mode).await;
        let client = connect(client_config(), &setup.mcp_url()).await;
        let err = call(&client, "add", json!({"a": i64::MAX, "b": 1})).await.expect_err("overflow must fail");
        let ServiceError::McpError(data) = err else { panic!("{mode:?}: expected a JSON-RPC error, got {err:?}") };
        assert_eq!(data.code.0, -32602, "{mode:?}: invalid params");
        assert_eq!(data.message, format!("{} + 1 overflows a 64-bit integer", i64::MAX));

        let err = call(&client, "no_such_tool", json!({})).await.expect_err("unknown tool must fail");
        assert!(matches!(err, ServiceError::McpError(_)), "{mode:?}: expected a JSON-RPC error, got {err:?}");
        within("close", client.cancel()).await.expect("close the client");
    }
}

/// A 1 MiB tool argument and result (one SSE event of that size in SSE mode) cross the proxy
/// byte for byte, including multi-byte characters that straddle every chunk boundary.
#[tokio::test]
async fn large_payloads_pass_through_thv() {
    // 3-byte and 2-byte UTF-8 characters, so chunk boundaries fall inside characters.
    let big: String = "ü→ MCP ".repeat(1 << 17);
    assert!(big.len() > 1 << 20);
    for mode in [Mode::Sse, Mode::Json] {
        let setup = Proxied::start(mode).await;
        let client = connect(client_config(), &setup.mcp_url()).await;
        let result = call(&client, "echo", json!({"text": big})).await.expect("echo");
        assert!(text(&result) == big, "{mode:?}: the 1 MiB echo came back different");
        within("close", client.cancel()).await.expect("close the client");
    }
}

/// One client, one session, many calls in flight at once: each answer reaches the call it
/// belongs to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_one_session_through_thv() {
    let setup = Proxied::start(Mode::Sse).await;
    let client = connect(client_config(), &setup.mcp_url()).await;
    let calls = (0..10i64).map(|i| {
        let client = &client;
        async move { (i, call(client, "add", json!({"a": i, "b": i * i})).await) }
    });
    for (i, result) in futures_util::future::join_all(calls).await {
        assert_eq!(text(&result.expect("add")), (i + i * i).to_string(), "call {i}");
    }
    assert_eq!(setup.server.session_count().await, 1, "all calls should share the one session");
    within("close", client.cancel()).await.expect("close the client");
}

/// The session the server minted at initialize is the one every later call arrives with,
/// and closing the client (an HTTP DELETE through the proxy) ends it on the server.
#[tokio::test]
async fn session_id_is_kept_across_calls_and_ended_by_close() {
    let setup = Proxied::start(Mode::Sse).await;
    let client = connect(client_config(), &setup.mcp_url()).await;
    assert_eq!(setup.server.session_count().await, 1, "initialize through thv should open one session");

    let first = text(&call(&client, "session", json!({})).await.expect("session")).to_owned();
    assert_ne!(first, "none", "the call reached the server without Mcp-Session-Id");
    for _ in 0..3 {
        let again = call(&client, "session", json!({})).await.expect("session");
        assert_eq!(text(&again), first, "the session id changed between calls");
    }
    assert_eq!(text(&call(&client, "add", json!({"a": 1, "b": 1})).await.expect("add")), "2");
    assert_eq!(setup.server.session_count().await, 1, "calls must not open new sessions");

    within("close", client.cancel()).await.expect("close the client");
    within("session end", async {
        while setup.server.session_count().await != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A tool that sends progress notifications while it runs: every notification arrives, in
/// order, and the first one arrives while the call is still running, which only happens if
/// the proxy relays the event stream event by event instead of buffering the response.
async fn progress_is_streamed(mode: Mode) {
    /// Records each progress notification with the moment it arrived.
    #[derive(Clone, Default)]
    struct Recorder {
        seen: Arc<Mutex<Vec<(Instant, ProgressNotificationParam)>>>,
    }
    impl ClientHandler for Recorder {
        async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
            self.seen.lock().expect("progress lock").push((Instant::now(), params));
        }
        fn get_info(&self) -> ClientConfig {
            client_config()
        }
    }

    const STEPS: u32 = 3;
    const DELAY_MS: u64 = 300;
    let setup = Proxied::start(mode).await;
    let recorder = Recorder::default();
    let client = connect(recorder.clone(), &setup.mcp_url()).await;

    let result = call(&client, "countdown", json!({"steps": STEPS, "delay_ms": DELAY_MS})).await.expect("countdown");
    let finished = Instant::now();
    assert_eq!(text(&result), "countdown of 3 steps finished");

    let seen = recorder.seen.lock().expect("progress lock").clone();
    let steps: Vec<(f64, Option<f64>, Option<&str>)> =
        seen.iter().map(|(_, p)| (p.progress, p.total, p.message.as_deref())).collect();
    assert_eq!(
        steps,
        vec![
            (1.0, Some(3.0), Some("step 1 of 3")),
            (2.0, Some(3.0), Some("step 2 of 3")),
            (3.0, Some(3.0), Some("step 3 of 3")),
        ],
        "{mode:?}: progress notifications"
    );
    // The server spends STEPS × DELAY_MS (900 ms) after the first notification before it
    // answers; a buffering proxy would deliver the notification together with the answer.
    let lead = finished.duration_since(seen[0].0);
    assert!(lead >= Duration::from_millis(450), "{mode:?}: first progress only {lead:?} before the result");
    within("close", client.cancel()).await.expect("close the client");
}

#[tokio::test]
async fn sse_mode_progress_notifications_stream_through_thv() {
    progress_is_streamed(Mode::Sse).await;
}

#[tokio::test]
async fn json_mode_progress_notifications_stream_through_thv() {
    // In JSON mode rmcp switches a response to SSE when the tool notifies before answering.
    progress_is_streamed(Mode::Json).await;
}

/// Many clients at once through one proxy: every answer is the right one, and in SSE mode
/// every client keeps its own session.
async fn many_clients(mode: Mode) {
    const CLIENTS: i64 = 20;
    let setup = Proxied::start(mode).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let url = setup.mcp_url();
        tasks.spawn(async move {
            let client = connect(client_config(), &url).await;
            let sum = call(&client, "add", json!({"a": i, "b": 1000 * i})).await.expect("add");
            assert_eq!(text(&sum), (1001 * i).to_string(), "client {i}");
            let echoed = call(&client, "echo", json!({"text": format!("client {i}")})).await.expect("echo");
            assert_eq!(text(&echoed), format!("client {i}"));
            let session = text(&call(&client, "session", json!({})).await.expect("session")).to_owned();
            within("close", client.cancel()).await.expect("close the client");
            session
        });
    }
    let mut sessions = Vec::new();
    while let Some(joined) = within("all clients", tasks.join_next()).await {
        sessions.push(joined.expect("client task"));
    }
    assert_eq!(sessions.len(), CLIENTS as usize);
    match mode {
        Mode::Sse => {
            let mut distinct = sessions.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), sessions.len(), "clients shared a session: {sessions:?}");
            assert!(!sessions.iter().any(|s| s == "none"), "a call arrived without its session: {sessions:?}");
        }
        Mode::Json => assert!(sessions.iter().all(|s| s == "none"), "stateless server saw sessions: {sessions:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_mode_twenty_clients_in_parallel() {
    many_clients(Mode::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_twenty_clients_in_parallel() {
    many_clients(Mode::Json).await;
}

// ---------------------------------------------------------------------------------------
// Raw HTTP through the proxy: what the SDK does not show.
// ---------------------------------------------------------------------------------------

/// The JSON-RPC messages in a response body: the body itself for `application/json`, the
/// `data:` of each event for `text/event-stream` (events without data, such as rmcp's
/// priming event, are skipped).
fn messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("application/json") {
        return vec![serde_json::from_str(body).unwrap_or_else(|e| panic!("bad JSON body ({e}): {body}"))];
    }
    assert!(content_type.starts_with("text/event-stream"), "unexpected content type {content_type}");
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            let data = data.join("\n");
            (!data.trim().is_empty())
                .then(|| serde_json::from_str(&data).unwrap_or_else(|e| panic!("bad event ({e}): {event}")))
        })
        .collect()
}

/// One POST of a JSON-RPC message, as an MCP client sends it.
async fn post(http: &reqwest::Client, url: &str, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        req = req.header("mcp-session-id", session).header("mcp-protocol-version", PROTOCOL_VERSION);
    }
    within("POST", req.send()).await.expect("POST through thv")
}

/// Reads a response to the end and returns (content type, JSON-RPC messages).
async fn read(resp: reqwest::Response) -> (String, Vec<Value>) {
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = within("response body", resp.text()).await.expect("read body");
    let msgs = messages(&content_type, &body);
    (content_type, msgs)
}

fn initialize_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "raw-http", "version": "1.0.0"}
    }})
}

fn add_request(id: u64, a: i64, b: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "add",
        "arguments": {"a": a, "b": b}
    }})
}

/// The two server modes really differ on the wire, as seen through the proxy: SSE mode
/// answers with an event stream and a session id, JSON mode with a JSON body and none.
#[tokio::test]
async fn server_modes_differ_on_the_wire_through_thv() {
    let http = reqwest::Client::new();
    for (mode, expected_type, has_session) in
        [(Mode::Sse, "text/event-stream", true), (Mode::Json, "application/json", false)]
    {
        let setup = Proxied::start(mode).await;
        let resp = post(&http, &setup.mcp_url(), None, initialize_request()).await;
        assert_eq!(resp.status(), 200, "{mode:?}");
        assert_eq!(resp.headers().contains_key("mcp-session-id"), has_session, "{mode:?}: {:?}", resp.headers());
        let (content_type, msgs) = read(resp).await;
        assert!(content_type.starts_with(expected_type), "{mode:?}: content type {content_type}");
        assert_eq!(msgs.len(), 1, "{mode:?}: {msgs:?}");
        assert_eq!(msgs[0]["id"], 1);
        assert_eq!(msgs[0]["result"]["protocolVersion"], PROTOCOL_VERSION);
        assert_eq!(msgs[0]["result"]["serverInfo"]["name"], SERVER_NAME);
    }
}

/// The whole session lifecycle by hand: initialize mints an id, calls with it succeed, a
/// DELETE with it ends the session, and the server then answers 404 for it, all through
/// the proxy.
#[tokio::test]
async fn raw_session_lifecycle_with_delete_through_thv() {
    let setup = Proxied::start(Mode::Sse).await;
    let url = setup.mcp_url();
    let http = reqwest::Client::new();

    let resp = post(&http, &url, None, initialize_request()).await;
    assert_eq!(resp.status(), 200);
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("initialize answers with Mcp-Session-Id")
        .to_owned();
    let (_, msgs) = read(resp).await;
    assert_eq!(msgs[0]["result"]["serverInfo"]["name"], SERVER_NAME);

    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let resp = post(&http, &url, Some(&session), initialized).await;
    assert_eq!(resp.status(), 202, "a notification is accepted without a body");

    let resp = post(&http, &url, Some(&session), add_request(2, 3, 4)).await;
    assert_eq!(resp.status(), 200);
    let (content_type, msgs) = read(resp).await;
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let answer = msgs.iter().find(|m| m["id"] == 2).unwrap_or_else(|| panic!("no answer to id 2 in {msgs:?}"));
    assert_eq!(answer["result"]["content"][0]["text"], "7");
    assert_eq!(setup.server.session_count().await, 1);

    let delete = http.delete(&url).header("mcp-session-id", &session).header("mcp-protocol-version", PROTOCOL_VERSION);
    let resp = within("DELETE", delete.send()).await.expect("DELETE through thv");
    assert_eq!(resp.status(), 202, "DELETE ends the session");
    assert_eq!(setup.server.session_count().await, 0);

    let resp = post(&http, &url, Some(&session), add_request(3, 1, 1)).await;
    assert_eq!(resp.status(), 404, "a deleted session is unknown to the server");

    // The request's log line is written once the exchange has ended, just after the answer.
    setup.thv.wait_for_stderr("DELETE");
}

/// An event stream cut mid-call resumes through the proxy: the client reconnects with a GET
/// carrying `Last-Event-ID`, and the server replays what the client missed, up to the result.
#[tokio::test]
async fn interrupted_stream_resumes_with_last_event_id_through_thv() {
    use futures_util::StreamExt as _;

    let setup = Proxied::start(Mode::Sse).await;
    let url = setup.mcp_url();
    let http = reqwest::Client::new();

    let resp = post(&http, &url, None, initialize_request()).await;
    let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("session id").to_owned();
    read(resp).await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&http, &url, Some(&session), initialized).await.status(), 202);

    // Start a 4-step countdown and read its stream only up to the first progress event.
    let countdown = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "countdown",
        "arguments": {"steps": 4, "delay_ms": 250},
        "_meta": {"progressToken": "resume-test"}
    }});
    let resp = post(&http, &url, Some(&session), countdown).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    let last_event_id = within("first progress event", async {
        loop {
            let chunk = stream.next().await.expect("stream ended before any progress").expect("read stream");
            seen.push_str(std::str::from_utf8(&chunk).expect("UTF-8 event stream"));
            let progress_event = seen
                .replace("\r\n", "\n")
                .split("\n\n")
                .find(|e| e.contains("notifications/progress"))
                .map(str::to_owned);
            if let Some(event) = progress_event {
                let id = event.lines().find_map(|l| l.strip_prefix("id:")).expect("progress event has an id");
                break id.trim().to_owned();
            }
        }
    })
    .await;
    // Disconnect, as a client whose connection broke would.
    drop(stream);

    let resume = http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .header("last-event-id", &last_event_id);
    let resp = within("resume GET", resume.send()).await.expect("GET through thv");
    assert_eq!(resp.status(), 200, "resuming after event {last_event_id}");
    let (content_type, msgs) = read(resp).await;
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");

    let progress: Vec<f64> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_f64().expect("numeric progress"))
        .collect();
    assert_eq!(progress.last(), Some(&4.0), "the replay should reach the last step: {msgs:?}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "replayed progress out of order: {progress:?}");
    let result = msgs.last().expect("replayed messages");
    assert_eq!(result["id"], 5, "the replay should end with the call's result: {msgs:?}");
    assert_eq!(result["result"]["content"][0]["text"], "countdown of 4 steps finished");
}
