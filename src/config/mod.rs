//! Validated configuration: the one step from raw flags ([`crate::cli`]) to typed values.
//!
//! Everything that can be checked before the first request is checked here, so that a
//! mistake stops the program at startup with a one-line message that names the flag and
//! says how to fix it. This is also the only module that reads the environment
//! (through [`Environment`], so tests can inject it).
//!
//! One file per group of flags: [`target`] (`--target-uri`), [`inbound`] (`--oidc-*`),
//! [`outbound`] (`--remote-auth*`), [`forward`] (`--remote-forward-headers*`, the
//! authorization request's extras), [`exchange`] (`--token-exchange-*`), [`policy`]
//! (`--authz-config`, `--tools*`, audit), [`telemetry`] (`--otel-*`, `--log-format`); the
//! listener's flags and the rules across groups are here. Address rules are
//! [`crate::net`]'s, value syntaxes [`crate::cli::values`]'.

mod exchange;
mod forward;
mod grant;
mod inbound;
mod outbound;
mod policy;
mod stdio;
mod target;
mod telemetry;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use secrecy::SecretString;

pub(crate) use exchange::ExchangeConfig;
pub(crate) use grant::{AssertionFileError, DpopMode, Grant, IdJagConfig, Unattended, read_assertion};
pub(crate) use inbound::{CONSENT_FLAG, CREDENTIAL_FLAGS};
pub(crate) use inbound::{InboundConfig, IntrospectionConfig};
pub use outbound::OutboundConfig;
pub(crate) use outbound::{OAuthConfig, OAuthEndpoints};
pub(crate) use policy::PolicyConfig;
pub(crate) use stdio::{StdioConfig, Transport};
pub(crate) use target::Target;
pub(crate) use telemetry::{DIAGNOSTICS_PORT, Diagnostics, TelemetryConfig};

use crate::cli::values::{parse_go_duration, parse_size};
use crate::cli::{Command, Invocation, ProxyArgs, ProxyCommand};
use crate::net::normalize_origin;
use crate::oauth::http::UrlRefusal;
use crate::proxy::headers::ForwardHeaders;

/// How long the proxy waits for a TCP (and TLS) connection to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A startup error: which flag (or variable) is wrong, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    /// The flag or environment variable at fault, e.g. `--target-uri`.
    pub(crate) flag: String,
    /// What is wrong and how to fix it.
    pub(crate) problem: String,
}

impl ConfigError {
    pub(crate) fn new(flag: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { flag: flag.into(), problem: problem.into() }
    }
}

/// Where configuration may come from besides flags. Production uses the process
/// environment; tests pass a map.
pub trait Environment {
    /// The value of variable `name`, if set and valid Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An environment with no variables: tests must not see the real one.
#[cfg(test)]
pub(crate) struct NoEnv;

#[cfg(test)]
impl Environment for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// The validated configuration of one `thv proxy` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// SERVER_NAME, used in the startup message.
    pub server_name: String,
    /// The listen socket (port 0 = pick a free one).
    pub(crate) listen: SocketAddr,
    /// The `--host` value as the user wrote it (used in the URL shown to clients).
    pub(crate) listen_host: String,
    /// The upstream MCP server.
    pub target: Target,
    /// Browser origins allowed in addition to the proxy's own (normalised).
    pub extra_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub max_request_body: usize,
    /// Deadline for the target's response headers; `None` waits forever.
    pub upstream_timeout: Option<Duration>,
    /// Deadline for connecting to the target.
    pub(crate) connect_timeout: Duration,
    /// Grace period of a graceful shutdown.
    pub(crate) shutdown_timeout: Duration,
    /// Most client connections served at once.
    pub(crate) max_connections: usize,
    /// Largest request head, in bytes.
    pub(crate) max_header_size: usize,
    /// Deadline for a request head (slowloris bound, idle keep-alive bound).
    pub(crate) header_timeout: Duration,
    /// `--debug` or `TOOLHIVE_DEBUG`.
    pub(crate) debug: bool,
    /// Incoming authentication (`--oidc-*`); `None` when the proxy accepts everyone.
    pub inbound: Option<InboundConfig>,
    /// Outgoing authentication (`--remote-auth*`); `None` when requests go as they came.
    pub outbound: Option<OutboundConfig>,
    /// Header fields added to every request for the target (`--remote-forward-headers*`);
    /// `None` costs nothing.
    pub(crate) forward: Option<ForwardHeaders>,
    /// RFC 8693 exchange of the incoming token (`--token-exchange-*`); `None` costs nothing.
    pub(crate) exchange: Option<ExchangeConfig>,
    /// MCP-aware policy (`--authz-config`, `--tools*`, audit); `None` costs nothing.
    pub(crate) policy: Option<PolicyConfig>,
    /// Metrics and traces (`--otel-*`); `None` costs nothing.
    pub(crate) telemetry: Option<TelemetryConfig>,
    /// `--log-format json`.
    pub(crate) log_json: bool,
    /// Warnings about the flags, logged once the logger exists (it needs `debug`).
    pub(crate) warnings: Vec<&'static str>,
    /// Plain requests take the own HTTP/1.1 path where it applies (`THV_HTTP1=hyper`
    /// sends everything through hyper, e.g. to compare the two).
    pub(crate) own_http1: bool,
}

impl Config {
    /// Validates a parsed command line against `env`.
    pub fn from_invocation(inv: &Invocation, env: &dyn Environment) -> Result<Config, ConfigError> {
        let Command::Proxy(ProxyCommand::Http(args)) = &inv.cli.command else {
            return Err(ConfigError::new("stdio", "is `thv proxy stdio`, which has a configuration of its own"));
        };
        let debug = debug_on(inv, env);
        let mut config = from_proxy_args(args, debug)?;
        config.inbound = inbound::inbound_config(&args.oidc, env)?;
        config.outbound =
            outbound::outbound_config(&args.remote_auth, &inv.given, env, &config.target, &mut config.warnings)?;
        config.forward = forward::forward_headers(&args.remote_auth.forward, config.outbound.as_ref(), env)?;
        config.exchange = exchange::exchange_config(
            &args.token_exchange,
            &inv.given,
            env,
            config.inbound.as_ref(),
            config.outbound.is_some(),
        )?;
        // The exchanged token's field is the proxy's for every request: an operator's fixed
        // value for it would be silently overwritten.
        if let (Some(exchange), Some(forward)) = (&config.exchange, &config.forward)
            && forward.replaces(exchange.header.as_str())
        {
            return Err(ConfigError::new(
                "--remote-forward-headers",
                format!(
                    "sets {}, which carries the exchanged token (--token-exchange-header-name); forward another field or drop it",
                    exchange.header
                ),
            ));
        }
        config.policy = policy::policy_config(
            &args.policy,
            &config.server_name,
            config.target.endpoint_path.ends_with("/sse"),
            config.inbound.is_some(),
            &mut config.warnings,
        )?;
        config.log_json = telemetry::log_json(&args.telemetry)?;
        config.telemetry = telemetry::telemetry_config(
            &args.telemetry,
            &inv.given,
            env,
            &config.server_name,
            config.target.endpoint_path.ends_with("/sse"),
            &mut config.warnings,
        )?;
        config.own_http1 = match env.var("THV_HTTP1").as_deref().map(str::trim) {
            None | Some("" | "own") => true,
            Some("hyper") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    "THV_HTTP1",
                    format!("{other:?} is not an HTTP/1.1 engine; use `own` (the default) or `hyper`"),
                ));
            }
        };
        Ok(config)
    }
}

/// The configuration of a run: the HTTP proxy or the stdio bridge.
#[derive(Debug)]
pub(crate) enum Run {
    Http(Box<Config>),
    Stdio(Box<StdioConfig>),
}

impl Run {
    /// Validates a parsed command line against `env`, whichever command it is.
    pub(crate) fn from_invocation(inv: &Invocation, env: &dyn Environment) -> Result<Run, ConfigError> {
        match &inv.cli.command {
            Command::Proxy(ProxyCommand::Stdio(args)) => {
                StdioConfig::from_args(args, &inv.given, debug_on(inv, env), env).map(|c| Run::Stdio(Box::new(c)))
            }
            Command::Proxy(ProxyCommand::Http(_)) => Config::from_invocation(inv, env).map(|c| Run::Http(Box::new(c))),
        }
    }
}

/// `--debug`, or `TOOLHIVE_DEBUG` set to a true value.
fn debug_on(inv: &Invocation, env: &dyn Environment) -> bool {
    inv.cli.debug || env.var("TOOLHIVE_DEBUG").is_some_and(|v| is_truthy(&v))
}

fn from_proxy_args(args: &ProxyArgs, debug: bool) -> Result<Config, ConfigError> {
    let server_name = args.server_name.trim().to_owned();
    if server_name.is_empty() {
        return Err(ConfigError::new(
            "SERVER_NAME",
            "must not be empty; name the MCP server, e.g. `thv proxy my-server …`",
        ));
    }
    if server_name == "stdio" {
        // Only reachable with the name after a flag (`thv proxy --target-uri URL stdio`):
        // in first place `stdio` is the subcommand.
        return Err(ConfigError::new(
            "SERVER_NAME",
            "`stdio` is reserved for `thv proxy stdio SERVER_NAME …`; choose another name",
        ));
    }
    let listen_ip = resolve_host(&args.listen.host)?;
    let target = target::parse_target(&args.listen.target_uri)?;
    let extra_origins = args
        .listen
        .allowed_origins
        .iter()
        .map(|o| {
            normalize_origin(o).map_err(|why| {
                ConfigError::new(
                    "--allowed-origins",
                    format!("{o:?} {why}; give an origin such as https://app.example.com or http://localhost:6274"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_request_body = parse_size(&args.listen.max_request_body)
        .map_err(|why| ConfigError::new("--max-request-body", format!("{:?} {why}", args.listen.max_request_body)))?;
    let upstream_timeout =
        parse_go_duration(&args.listen.upstream_timeout).map_err(|why| ConfigError::new("--upstream-timeout", why))?;
    let shutdown_timeout =
        parse_go_duration(&args.listen.shutdown_timeout).map_err(|why| ConfigError::new("--shutdown-timeout", why))?;
    let max_header_size = parse_size(&args.listen.max_header_size)
        .map_err(|why| ConfigError::new("--max-header-size", format!("{:?} {why}", args.listen.max_header_size)))?;
    // hyper's minimum read buffer; anything smaller could not hold a normal request.
    if !(8192..=(1 << 20)).contains(&max_header_size) {
        return Err(ConfigError::new("--max-header-size", "must be between 8KiB and 1MiB"));
    }
    let header_timeout =
        parse_go_duration(&args.listen.header_timeout).map_err(|why| ConfigError::new("--header-timeout", why))?;
    if header_timeout.is_zero() {
        return Err(ConfigError::new(
            "--header-timeout",
            "must be more than 0: without it one slow client can hold a connection forever",
        ));
    }
    Ok(Config {
        server_name,
        listen: SocketAddr::new(listen_ip, args.listen.port),
        listen_host: args.listen.host.trim().to_owned(),
        target,
        extra_origins,
        max_request_body,
        upstream_timeout: (!upstream_timeout.is_zero()).then_some(upstream_timeout),
        connect_timeout: CONNECT_TIMEOUT,
        shutdown_timeout,
        max_connections: args.listen.max_connections as usize,
        max_header_size,
        header_timeout,
        debug,
        inbound: None,
        outbound: None,
        forward: None,
        exchange: None,
        policy: None,
        telemetry: None,
        log_json: false,
        warnings: Vec::new(),
        own_http1: true,
    })
}

/// A secret from its flag, else its file (trimmed; empty or unreadable is an error that
/// names the file), else its environment variable.
fn resolve_secret(
    flag: &Option<String>,
    file: (&str, &Option<String>),
    env_value: Option<String>,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(value) = non_empty(flag) {
        return Ok(Some(SecretString::from(value.to_owned())));
    }
    if let Some(path) = non_empty(file.1) {
        let content = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(file.0, format!("cannot read {path:?}: {e}")))?;
        let secret = content.trim();
        if secret.is_empty() {
            return Err(ConfigError::new(file.0, format!("{path:?} is empty")));
        }
        return Ok(Some(SecretString::from(secret.to_owned())));
    }
    Ok(env_value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(SecretString::from))
}

/// A URL the policy refused, as a message for `flag` with what the operator can do:
/// `consent` names the flag that allows plain http and private networks, where one does;
/// `credentials` says where credentials go instead of the URL.
pub(crate) fn url_refused(flag: &str, refusal: &UrlRefusal, consent: Option<&str>, credentials: &str) -> ConfigError {
    let advice = match (refusal, consent) {
        (UrlRefusal::Credentials(_), _) => format!("; pass them with {credentials}"),
        (r, Some(consent)) if r.consent_allows() => {
            format!("; use https, or pass {consent} for a trusted private network")
        }
        (UrlRefusal::PlainHttp(_) | UrlRefusal::PrivateAddress(_), _) => "; use https".to_owned(),
        _ => String::new(),
    };
    ConfigError::new(flag, format!("{refusal}{advice}"))
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Resolves `--host` to the address to bind. IP literals (v4 or v6, with or without
/// brackets) are used as they are; names are resolved once, preferring IPv4 as ToolHive
/// does, so `localhost` binds 127.0.0.1.
fn resolve_host(host: &str) -> Result<IpAddr, ConfigError> {
    let host = host.trim();
    if host.is_empty() {
        return Err(ConfigError::new("--host", "must not be empty; use 127.0.0.1 to listen on this machine only"));
    }
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(ip);
    }
    if host.contains([':', '/', ' ']) {
        return Err(ConfigError::new(
            "--host",
            format!(
                "{host:?} is not an IP address or host name; use e.g. 127.0.0.1 (no scheme or port: the port goes in --port)"
            ),
        ));
    }
    let addrs: Vec<SocketAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| {
            ConfigError::new("--host", format!("cannot resolve {host:?} ({e}); use an IP address such as 127.0.0.1"))
        })?
        .collect();
    addrs.iter().find(|a| a.is_ipv4()).or_else(|| addrs.first()).map(SocketAddr::ip).ok_or_else(|| {
        ConfigError::new("--host", format!("{host:?} resolves to no address; use an IP address such as 127.0.0.1"))
    })
}

/// Truthiness of an environment flag such as `TOOLHIVE_DEBUG`.
fn is_truthy(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "t" | "true" | "yes" | "on")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl Environment for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
    }

    pub(crate) fn config(args: &[&str], env: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["thv", "proxy", "srv"];
        argv.extend_from_slice(args);
        let inv = Invocation::parse_from(argv).expect("parses");
        Config::from_invocation(&inv, &MapEnv(env.iter().copied().collect()))
    }

    #[test]
    fn debug_from_flag_or_env() {
        assert!(!config(&["--target-uri", "http://x"], &[]).unwrap().debug);
        assert!(config(&["--target-uri", "http://x"], &[("TOOLHIVE_DEBUG", "true")]).unwrap().debug);
        assert!(config(&["--target-uri", "http://x", "--debug"], &[]).unwrap().debug);
    }

    #[test]
    fn hosts() {
        let c = config(&["--target-uri", "http://x", "--host", "localhost"], &[]).unwrap();
        assert!(c.listen.ip().is_loopback());
        let c = config(&["--target-uri", "http://x", "--host", "::1"], &[]).unwrap();
        assert_eq!(c.listen.ip().to_string(), "::1");
        let err = config(&["--target-uri", "http://x", "--host", "http://0.0.0.0:80"], &[]).unwrap_err();
        assert_eq!(err.flag, "--host");
        let err = config(&["--target-uri", "http://x", "--host", "no-such-host.invalid"], &[]).unwrap_err();
        assert_eq!(err.flag, "--host");
    }

    #[test]
    fn origins_are_checked() {
        let err = config(&["--target-uri", "http://x", "--allowed-origins", "example.com"], &[]).unwrap_err();
        assert_eq!(err.flag, "--allowed-origins");
    }
}
