//! `thv proxy stdio`: the bridge's settings. The target, the `--remote-auth*` and the
//! `--remote-forward-headers*` flags go through the same rules as for the HTTP proxy
//! ([`super::target`], [`super::outbound`], [`super::forward`]);
//! only the bridge's own limits are checked here.

use std::collections::BTreeSet;
use std::time::Duration;

use super::forward::forward_headers;
use super::outbound::{OutboundConfig, outbound_config};
use super::target::{Target, parse_target};
use super::{CONNECT_TIMEOUT, ConfigError, Environment};
use crate::cli::StdioArgs;
use crate::cli::values::{parse_go_duration, parse_size};
use crate::proxy::headers::ForwardHeaders;

/// How the bridge speaks to the server (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Streamable HTTP; the legacy transport when the first POST is answered 404 or 405
    /// (mcp-remote's `http-first`).
    Auto,
    /// MCP 2025-11-25 Transports §Streamable HTTP only.
    StreamableHttp,
    /// The HTTP+SSE transport of MCP 2024-11-05 (a GET event stream that names the
    /// endpoint to POST to).
    Sse,
}

/// The validated configuration of one `thv proxy stdio` run.
#[derive(Debug, Clone)]
pub(crate) struct StdioConfig {
    /// SERVER_NAME, used in the log.
    pub(crate) server_name: String,
    /// The remote MCP server.
    pub(crate) target: Target,
    /// Largest message, either way (`--max-request-body`).
    pub(crate) max_message: usize,
    /// Deadline for the target's response headers; `None` waits forever.
    pub(crate) upstream_timeout: Option<Duration>,
    /// Deadline for connecting to the target.
    pub(crate) connect_timeout: Duration,
    /// Outgoing authentication (`--remote-auth*`).
    pub(crate) outbound: Option<OutboundConfig>,
    /// Header fields added to every request (`--remote-forward-headers*`).
    pub(crate) forward: Option<ForwardHeaders>,
    /// `--transport`, with `auto` already settled for a URL ending in `/sse`.
    pub(crate) transport: Transport,
    /// `--debug` or `TOOLHIVE_DEBUG`.
    pub(crate) debug: bool,
    /// Warnings about the flags, logged once the logger exists.
    pub(crate) warnings: Vec<&'static str>,
}

impl StdioConfig {
    /// Validates `thv proxy stdio`'s flags against `env`.
    pub(crate) fn from_args(
        args: &StdioArgs,
        given: &BTreeSet<String>,
        debug: bool,
        env: &dyn Environment,
    ) -> Result<StdioConfig, ConfigError> {
        let server_name = args.server_name.trim().to_owned();
        if server_name.is_empty() {
            return Err(ConfigError::new(
                "SERVER_NAME",
                "must not be empty; name the MCP server, e.g. `thv proxy stdio my-server …`",
            ));
        }
        let target = parse_target(&args.target_uri)?;
        let max_message = parse_size(&args.max_request_body)
            .map_err(|why| ConfigError::new("--max-request-body", format!("{:?} {why}", args.max_request_body)))?;
        let upstream_timeout =
            parse_go_duration(&args.upstream_timeout).map_err(|why| ConfigError::new("--upstream-timeout", why))?;
        let transport = match args.transport.trim().to_ascii_lowercase().as_str() {
            // The legacy transport's conventional endpoint; mcp-remote reads it the same way.
            "auto" if target.endpoint_path.ends_with("/sse") => Transport::Sse,
            "auto" => Transport::Auto,
            "streamable-http" => Transport::StreamableHttp,
            "sse" => Transport::Sse,
            other => {
                return Err(ConfigError::new(
                    "--transport",
                    format!("{other:?} is not a transport; use auto, streamable-http or sse"),
                ));
            }
        };
        let mut warnings = Vec::new();
        let outbound = outbound_config(&args.remote_auth, given, env, &target, &mut warnings)?;
        let forward = forward_headers(&args.remote_auth.forward, outbound.as_ref(), env)?;
        Ok(StdioConfig {
            server_name,
            target,
            max_message,
            upstream_timeout: (!upstream_timeout.is_zero()).then_some(upstream_timeout),
            connect_timeout: CONNECT_TIMEOUT,
            outbound,
            forward,
            transport,
            debug,
            warnings,
        })
    }

    /// How long a request may wait for the OAuth login (`--remote-auth-timeout`); `None`
    /// when there is no login to wait for.
    pub(crate) fn login_timeout(&self) -> Option<Duration> {
        match &self.outbound {
            Some(OutboundConfig::OAuth(oauth)) => Some(oauth.timeout),
            Some(OutboundConfig::Bearer(_)) | None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Invocation, ProxyCommand};
    use crate::config::NoEnv;

    fn stdio(args: &[&str]) -> Result<StdioConfig, ConfigError> {
        let mut argv = vec!["thv", "proxy", "stdio"];
        argv.extend_from_slice(args);
        let inv = Invocation::parse_from(argv).expect("parses");
        let Command::Proxy(ProxyCommand::Stdio(a)) = &inv.cli.command else { panic!("not stdio") };
        StdioConfig::from_args(a, &inv.given, false, &NoEnv)
    }

    #[test]
    fn the_outbound_rules_are_the_proxys() {
        let c = stdio(&["srv", "--target-uri", "https://api.example.com/mcp", "--remote-auth"]).unwrap();
        assert!(matches!(c.outbound, Some(OutboundConfig::OAuth(_))));
        assert_eq!(c.login_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(c.max_message, 8 << 20);
        let err = stdio(&["srv", "--target-uri", "http://x", "--remote-auth-callback-port", "9000"]).unwrap_err();
        assert_eq!(err.flag, "--remote-auth-callback-port");
        let err = stdio(&["srv", "--target-uri", "ftp://x"]).unwrap_err();
        assert_eq!(err.flag, "--target-uri");
        let err = stdio(&["srv", "--target-uri", "http://x", "--max-request-body", "lots"]).unwrap_err();
        assert_eq!(err.flag, "--max-request-body");
        let err = stdio(&[" ", "--target-uri", "http://x"]).unwrap_err();
        assert_eq!(err.flag, "SERVER_NAME");
        let err = stdio(&["srv", "--target-uri", "http://x", "--transport", "websocket"]).unwrap_err();
        assert_eq!(err.flag, "--transport");
    }

    #[test]
    fn transports() {
        let t = |args: &[&str]| stdio(args).unwrap().transport;
        assert_eq!(t(&["srv", "--target-uri", "http://x/mcp"]), Transport::Auto);
        assert_eq!(t(&["srv", "--target-uri", "http://x/sse"]), Transport::Sse, "a /sse URL is legacy");
        assert_eq!(
            t(&["srv", "--target-uri", "http://x/sse", "--transport", "streamable-http"]),
            Transport::StreamableHttp
        );
        assert_eq!(t(&["srv", "--target-uri", "http://x/mcp", "--transport", "SSE"]), Transport::Sse);
    }
}
