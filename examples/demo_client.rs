//! Quick-start demo, part 2: a real MCP client (the official Rust SDK, `rmcp`) that connects
//! to a Streamable HTTP endpoint, typically `thv` in front of `demo_server`.
//!
//! ```text
//! cargo run --example demo_client -- http://127.0.0.1:PORT/mcp
//! ```
//!
//! It initializes, lists the tools, calls `add`, and runs `countdown`, printing its progress
//! notifications as they stream in. With `--denied TOOL` (repeatable) it also checks that a
//! policy in front of the server (`thv proxy --authz-config`) hides TOOL from the list and
//! refuses a call to it. It checks every answer and exits non-zero, with the reason, if
//! anything fails or takes longer than 30 seconds.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use clap::Parser;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// The longest the whole demo may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Connect to an MCP server over Streamable HTTP, list its tools and call two of them.
#[derive(Debug, Parser)]
struct Args {
    /// The MCP endpoint, e.g. http://127.0.0.1:41234/mcp
    url: String,
    /// A tool the proxy's policy must hide and refuse (repeatable)
    #[arg(long = "denied", value_name = "TOOL")]
    denied: Vec<String>,
}

/// The client side of the session: prints progress notifications as they arrive.
#[derive(Clone)]
struct DemoClient {
    started: Instant,
}

impl ClientHandler for DemoClient {
    async fn on_progress(&self, progress: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        let total = progress.total.map(|t| format!("/{t}")).unwrap_or_default();
        let message = progress.message.as_deref().unwrap_or("");
        let at = self.started.elapsed().as_millis();
        println!("    progress {}{total} at {at:>4} ms  {message}", progress.progress);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("thv-demo-client", env!("CARGO_PKG_VERSION")),
        )
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match tokio::time::timeout(DEADLINE, run(&args.url, &args.denied)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow!("no result from {} within {DEADLINE:?}", args.url)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain: what failed, then why.
            eprintln!("demo_client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, denied: &[String]) -> anyhow::Result<()> {
    let handler = DemoClient { started: Instant::now() };
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let client =
        handler.serve(transport).await.with_context(|| format!("cannot initialize an MCP session at {url}"))?;

    let info = client.peer_info().context("the server sent no initialize result")?;
    let name = info.server_info.as_ref().map_or("an unnamed server", |s| s.name.as_str());
    println!("Connected to {name} at {url} (MCP {})", info.protocol_version.as_str());

    let tools = client.list_tools(None).await.context("tools/list failed")?;
    println!("Tools:");
    for tool in &tools.tools {
        println!("  - {:<10} {}", tool.name, tool.description.as_deref().unwrap_or(""));
    }

    let sum = call(&client, "add", json!({"a": 2, "b": 40})).await?;
    println!("Called add(a=2, b=40) -> {sum}");
    ensure!(sum == "42", "add(2, 40) returned {sum:?}, expected \"42\"");

    println!("Called countdown(steps=3, delay_ms=200):");
    let done = call(&client, "countdown", json!({"steps": 3, "delay_ms": 200})).await?;
    println!("  -> {done}");
    ensure!(done == "countdown of 3 steps finished", "countdown returned {done:?}");

    for tool in denied {
        ensure!(!tools.tools.iter().any(|t| t.name == *tool), "the policy should have hidden {tool} from the list");
        let args = serde_json::Map::from_iter([("text".to_owned(), json!("hi"))]);
        let refused = client.call_tool(CallToolRequestParams::new(tool.clone()).with_arguments(args)).await;
        match refused {
            Err(e) => println!("Called {tool} -> refused by the proxy's policy ({e})"),
            Ok(result) if result.is_error == Some(true) => println!("Called {tool} -> refused: {:?}", result.content),
            Ok(_) => bail!("the policy should have refused a call to {tool}"),
        }
    }

    // Closing also ends the server's session, if it keeps one (an HTTP DELETE).
    client.cancel().await.context("closing the client failed")?;
    println!("OK: every answer was checked; client closed");
    Ok(())
}

/// Calls `tool` and returns the text of its single text block.
async fn call(
    client: &RunningService<RoleClient, DemoClient>,
    tool: &'static str,
    args: Value,
) -> anyhow::Result<String> {
    let Value::Object(args) = args else { bail!("arguments of {tool} must be a JSON object") };
    let result: CallToolResult = client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .with_context(|| format!("tools/call {tool} failed"))?;
    ensure!(result.is_error != Some(true), "{tool} reported an error: {:?}", result.content);
    match result.content.as_slice() {
        [block] => Ok(block.as_text().with_context(|| format!("{tool} answered with non-text content"))?.text.clone()),
        other => bail!("{tool} answered with {} content blocks, expected one", other.len()),
    }
}
