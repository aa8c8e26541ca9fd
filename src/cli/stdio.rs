//! `thv proxy stdio`'s flags, and how `thv proxy` tells it from the HTTP proxy.

use clap::{ArgMatches, Args, FromArgMatches};

use super::{ProxyArgs, RemoteAuthArgs};

/// `thv proxy`: the HTTP proxy (`thv proxy SERVER_NAME …`), or the stdio bridge
/// (`thv proxy stdio SERVER_NAME …`). `stdio` is therefore a reserved SERVER_NAME.
///
/// Written by hand rather than derived: clap's derive cannot make a positional argument
/// and a subcommand alternatives (the HTTP proxy's required SERVER_NAME and
/// `--target-uri` would be demanded of `stdio` too), while the builder can
/// (`args_conflicts_with_subcommands` with `subcommand_negates_reqs`).
#[derive(Debug)]
pub enum ProxyCommand {
    /// `thv proxy SERVER_NAME --target-uri URL`: the transparent HTTP proxy.
    Http(Box<ProxyArgs>),
    /// `thv proxy stdio SERVER_NAME --target-uri URL`: a stdio MCP server bridged to it.
    Stdio(Box<StdioArgs>),
}

impl FromArgMatches for ProxyCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        match matches.subcommand() {
            Some(("stdio", sub)) => Ok(ProxyCommand::Stdio(Box::new(StdioArgs::from_arg_matches(sub)?))),
            _ => Ok(ProxyCommand::Http(Box::new(ProxyArgs::from_arg_matches(matches)?))),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = ProxyCommand::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for ProxyCommand {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        ProxyArgs::augment_args(cmd)
            .subcommand(
                StdioArgs::augment_args(clap::Command::new("stdio")).about(STDIO_ABOUT).long_about(STDIO_LONG_ABOUT),
            )
            // Else `help` would be a second reserved SERVER_NAME; `--help` stays.
            .disable_help_subcommand(true)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        ProxyCommand::augment_args(cmd)
    }
}

const STDIO_ABOUT: &str = "Serve a remote MCP server to a stdio client (e.g. Claude Desktop)";

const STDIO_LONG_ABOUT: &str = "\
Serve a remote MCP server (Streamable HTTP, or the legacy HTTP+SSE transport) to a client
that speaks MCP over stdio.

Each newline-delimited JSON-RPC message read on stdin is POSTed to --target-uri; the
server's answers (JSON or server-sent events) and the messages of its listen stream are
written to stdout, one per line. stdout carries nothing else: logs go to stderr. The
--remote-auth* flags mean what they mean for `thv proxy`. End of input or SIGTERM ends the
session (DELETE) and exits 0.

Example:
  thv proxy stdio my-server --target-uri https://api.example.com/mcp --remote-auth";

/// Flags of `thv proxy stdio`.
#[derive(Debug, Args)]
pub struct StdioArgs {
    /// Name of the MCP server (shown in the log)
    #[arg(value_name = "SERVER_NAME", required = true)]
    pub(crate) server_name: String,

    /// URI of the target MCP server (e.g., https://api.example.com/mcp) (required)
    #[arg(long, value_name = "URL", required = true)]
    pub(crate) target_uri: String,

    /// Largest JSON-RPC message accepted on stdin or from the server (e.g. 8MiB, 512KiB);
    /// larger ones are refused with a JSON-RPC error
    #[arg(long, value_name = "SIZE", default_value = "8MiB")]
    pub(crate) max_request_body: String,

    /// How long to wait for the target's response headers (Go duration; 0 waits forever)
    #[arg(long, value_name = "DURATION", default_value = "5m", allow_hyphen_values = true)]
    pub(crate) upstream_timeout: String,

    /// How to speak to the server: auto (Streamable HTTP, falling back to the legacy
    /// HTTP+SSE transport when the first POST is answered 404 or 405; a URL ending in /sse
    /// is legacy from the start), streamable-http, or sse (the legacy transport)
    #[arg(long, value_name = "TRANSPORT", default_value = "auto")]
    pub(crate) transport: String,

    #[command(flatten)]
    pub remote_auth: RemoteAuthArgs,
}
