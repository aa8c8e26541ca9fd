//! Startup failures: everything that stops `thv` before it serves. Each names the flag at
//! fault where there is one; `main` prints it and exits 1 (as cobra does).

use crate::config::ConfigError;
use crate::proxy::forward::TlsSetupError;

/// A failure that ends the program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or environment variable is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen socket could not be opened.
    #[error("{flag}: {problem}")]
    Bind { flag: &'static str, problem: String },
    /// Outgoing authentication could not be set up.
    #[error("--remote-auth: {0}")]
    Outbound(#[from] crate::outbound::OutboundSetupError),
    /// Incoming authentication could not start (IdP unreachable or inconsistent).
    #[error(transparent)]
    Inbound(#[from] crate::inbound::StartupError),
    /// TLS to the target cannot be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The audit log cannot be opened.
    #[error("--audit-config: {0}")]
    Audit(String),
    /// An I/O failure of the process itself.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
}
