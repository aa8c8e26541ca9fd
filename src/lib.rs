//! `thv`: a fast, safe, drop-in implementation of ToolHive's `thv proxy`, a transparent
//! HTTP proxy in front of an MCP (Model Context Protocol) server.
//!
//! Layers, from the command line inwards:
//! - `cli` parses raw flags (ToolHive-compatible), `config` validates them in one step;
//! - `server` binds, serves connections and shuts down gracefully;
//! - `proxy` is the request path: guard, local routes, forwarding, responses;
//! - `inbound` checks the tokens of the proxy's own clients (OAuth resource server);
//! - `outbound` logs in to the target and keeps its tokens (OAuth client);
//! - `oauth` is the protocol layer underneath both (metadata, tokens, challenges);
//! - `mcp` holds the little MCP knowledge a transparent proxy needs;
//! - `policy` is MCP-aware policy: Cedar authorization, tool filtering, audit;
//! - `telemetry` is logs, metrics (Prometheus, OTLP) and traces;
//! - `stdio` is `thv proxy stdio`: a stdio MCP client bridged to the target.

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

mod cli;
mod config;
mod error;
mod exchange;
mod inbound;
#[doc(hidden)]
pub mod internals;
mod mcp;
mod net;
mod oauth;
mod outbound;
mod policy;
mod proxy;
mod server;
mod stdio;
mod telemetry;

pub use cli::Invocation;
pub use error::Error;

use config::{Config, ProcessEnvironment, Run, StdioConfig};

/// Validates the command line, then runs the proxy (or the stdio bridge) until it is told
/// to stop.
pub fn run(invocation: &Invocation) -> Result<(), Error> {
    match Run::from_invocation(invocation, &ProcessEnvironment)? {
        Run::Http(config) => run_http(*config),
        Run::Stdio(config) => run_stdio(*config),
    }
}

/// `thv proxy stdio`. Its own runtime shutdown: the threads that own stdin and stdout may
/// be blocked in a read or a write the client will never complete, and must not hold the
/// exit (the issue asks for an exit within a second of end of input).
fn run_stdio(config: StdioConfig) -> Result<(), Error> {
    telemetry::init(config.debug, false);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Few messages at a time: two workers are plenty, and one would make a slow login or
    // DNS lookup on the runtime thread stall the relay.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads().clamp(1, 2))
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let outcome = runtime.block_on(stdio::run(config));
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome
}

fn run_http(config: Config) -> Result<(), Error> {
    telemetry::init(config.debug, config.log_json);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // rustls needs one process-wide crypto provider; installing it twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match worker_threads() {
        // One worker: a single-threaded runtime, as an nginx worker is. The work-stealing
        // scheduler would add cross-thread wake-ups (the accept loop runs on the main
        // thread) and per-batch bookkeeping, for no parallelism. This is the common sidecar
        // shape: a container limited to one CPU.
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .map_err(Error::Io)?;
    runtime.block_on(server::serve(config))
}

/// Tokio's rule for the number of workers: `TOKIO_WORKER_THREADS` when it is a positive
/// number, else the CPUs this process may use (cgroup quota and affinity included).
fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(std::num::NonZeroUsize::get))
        .unwrap_or(1)
}
