//! Quick-start demo, part 1: a real MCP server to put `thv` in front of.
//!
//! It is the official Rust SDK (`rmcp`) serving Streamable HTTP at `/mcp` on 127.0.0.1, with
//! the tools `add`, `echo`, `countdown` and `session`: the very server the integration tests
//! use (`tests/it/support/mcp_server.rs`, included below), so the demo shows tested behaviour.
//!
//! ```text
//! cargo run --example demo_server -- --port 3000          # SSE responses, with sessions
//! cargo run --example demo_server -- --port 3000 --json   # stateless, JSON responses
//! ```
//!
//! The first line on stdout names the endpoint (`--port 0` picks a free port, which
//! `scripts/demo.sh` reads from there). Stops on Ctrl-C or SIGTERM.

// The tests use more of the module (session counts, accessors) than this program does.
#[allow(dead_code)]
#[path = "../tests/it/support/mcp_server.rs"]
mod mcp_server;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use mcp_server::{McpServer, Mode, TOOL_NAMES};

/// A demo MCP server (Streamable HTTP) on 127.0.0.1.
#[derive(Debug, Parser)]
struct Args {
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Answer with plain JSON bodies and no sessions, instead of SSE streams with sessions
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match serve(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain: what failed, then why.
            eprintln!("demo_server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mode = if args.json { Mode::Json } else { Mode::Sse };
    // Loopback only: a demo server has no business being reachable from the network.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let server = McpServer::bind(addr, mode).await.with_context(|| format!("cannot listen on {addr}"))?;

    let style = match mode {
        Mode::Sse => "SSE responses, sessions on",
        Mode::Json => "JSON responses, stateless",
    };
    println!("Demo MCP server listening on {} ({style}; tools: {})", server.url(), TOOL_NAMES.join(", "));

    stop_requested().await?;
    println!("Demo MCP server stopping");
    server.shutdown().await.context("shutting down")?;
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (`scripts/demo.sh` stops us with it).
async fn stop_requested() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("cannot listen for Ctrl-C")?;
    Ok(())
}
