//! A real MCP server: the official Rust SDK (`rmcp`) serving Streamable HTTP at `/mcp` on a
//! loopback port, in-process, with a handful of small tools.
//!
//! The integration tests put `thv` in front of it; `examples/demo_server.rs` includes this
//! same file (`#[path]`), so the Quick-start demo runs exactly the server the tests exercise.
//!
//! Tools:
//! - `add(a, b)`: the sum, as text;
//! - `echo(text)`: the text, unchanged;
//! - `countdown(steps, delay_ms)`: one progress notification per step, `delay_ms` apart, then
//!   a final result, so a single call's SSE response carries several events spread over time;
//! - `session()`: the `Mcp-Session-Id` header the call arrived with, so a test can see what
//!   reached the server through the proxy.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ProgressNotificationParam, RequestMetaObject, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The name the server reports in its `initialize` result.
pub const SERVER_NAME: &str = "thv-demo-server";

/// The tools the server lists, in the order `tools/list` returns them (sorted by name).
pub const TOOL_NAMES: [&str; 4] = ["add", "countdown", "echo", "session"];

/// Upper bounds for `countdown`, so no call can keep a connection busy for long.
const MAX_STEPS: u32 = 100;
const MAX_DELAY_MS: u64 = 2_000;

/// How long [`McpServer::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the server answers a POST that carries a JSON-RPC request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stateful (rmcp's default): `initialize` mints an `Mcp-Session-Id`, and every request is
    /// answered with a `text/event-stream` response.
    Sse,
    /// Stateless: no sessions, and plain `application/json` responses (rmcp switches a
    /// response to SSE only when the tool sends a notification before its result).
    Json,
}

/// Arguments of `add`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// The first addend.
    pub a: i64,
    /// The second addend.
    pub b: i64,
}

/// Arguments of `echo`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `countdown`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CountdownArgs {
    /// How many progress notifications to send (at most 100).
    pub steps: u32,
    /// Pause after each notification, in milliseconds (at most 2000).
    pub delay_ms: u64,
}

/// The MCP server handler: one instance per session (rmcp calls the factory per session).
#[derive(Clone, Debug)]
pub struct DemoServer {
    tool_router: ToolRouter<Self>,
}

impl DemoServer {
    pub fn new() -> Self {
        Self { tool_router: Self::tool_router() }
    }
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl DemoServer {
    #[tool(description = "Add two integers and return the sum")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Result<String, ErrorData> {
        a.checked_add(b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| ErrorData::invalid_params(format!("{a} + {b} overflows a 64-bit integer"), None))
    }

    #[tool(description = "Return the given text unchanged", annotations(read_only_hint = true))]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Send one progress notification per step, delay_ms apart, then finish")]
    async fn countdown(
        &self,
        Parameters(CountdownArgs { steps, delay_ms }): Parameters<CountdownArgs>,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> Result<String, ErrorData> {
        if steps > MAX_STEPS || delay_ms > MAX_DELAY_MS {
            return Err(ErrorData::invalid_params(
                format!("countdown takes at most {MAX_STEPS} steps of at most {MAX_DELAY_MS} ms"),
                None,
            ));
        }
        // Progress goes only to a caller that asked for it with a progress token.
        let token = meta.get_progress_token();
        for step in 1..=steps {
            if let Some(token) = &token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(steps))
                    .with_message(format!("step {step} of {steps}"));
                client
                    .notify_progress(progress)
                    .await
                    .map_err(|e| ErrorData::internal_error(format!("progress notification failed: {e}"), None))?;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        Ok(format!("countdown of {steps} steps finished"))
    }

    #[tool(description = "Report the Mcp-Session-Id this call arrived with, or \"none\"")]
    fn session(&self, Extension(request): Extension<http::request::Parts>) -> String {
        request
            .headers
            .get("mcp-session-id")
            .and_then(|id| id.to_str().ok())
            .map_or_else(|| "none".to_owned(), str::to_owned)
    }
}

// Route through the router built once per session rather than rebuilding it on every call.
#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions("A demo server for thv: try `add`, `echo`, `countdown` and `session`.")
    }
}

/// A running server; dropping it stops it.
pub struct McpServer {
    addr: SocketAddr,
    mode: Mode,
    sessions: Arc<LocalSessionManager>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl McpServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start(mode: Mode) -> io::Result<McpServer> {
        McpServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), mode).await
    }

    /// Starts a server on `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, mode: Mode) -> io::Result<McpServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        // rmcp's defaults already refuse Host headers other than localhost/127.0.0.1/::1, which
        // is what a loopback server should do (and what the proxy must keep working with).
        let config = StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
        let config = match mode {
            Mode::Sse => config,
            Mode::Json => config.with_legacy_session_mode(false).with_json_response(true),
        };
        let sessions = Arc::new(LocalSessionManager::default());
        let service = StreamableHttpService::new(|| Ok(DemoServer::new()), sessions.clone(), config);
        let app = axum::Router::new().nest_service("/mcp", service);
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await }
        });
        Ok(McpServer { addr, mode, sessions, shutdown, task: Some(task) })
    }

    /// The MCP endpoint: `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mode the server was started in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many sessions the server holds right now (always 0 in [`Mode::Json`]).
    pub async fn session_count(&self) -> usize {
        self.sessions.sessions.read().await.len()
    }

    /// Stops accepting connections, ends every session and waits (bounded) for the server task.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.shutdown.cancel();
        let Some(task) = self.task.take() else { return Ok(()) };
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(served)) => served,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "MCP server did not stop in time")),
        }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
