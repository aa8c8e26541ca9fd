//! Logs: human-readable lines on stderr through `tracing`. Info by default; `--debug` (or
//! `TOOLHIVE_DEBUG`) adds one line per request. Token and header values are never logged
//! at any level: log fields are chosen explicitly, never whole requests.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(debug: bool) {
    let filter = if debug { "thv=debug,warn" } else { "thv=info,warn" };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(EnvFilter::new(filter))
        .try_init();
}
