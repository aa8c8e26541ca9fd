//! Raw command-line flags, compatible with ToolHive's `thv proxy` (cobra/pflag).
//!
//! This module only *parses*; every rule that relates flags to each other, reads a file
//! or the environment, or checks a value beyond its type lives in [`crate::config`]
//! (ripgrep's "low args → high args" split).
//!
//! Compatibility shims for pflag behaviour that clap does not have by default:
//! - booleans accept `--flag`, `--flag=true` and `--flag=false` ([`go_bool`]);
//! - string slices (`--remote-auth-scopes`) split on commas *and* repeat;
//! - string arrays (`--allowed-origins`) repeat but never split;
//! - durations use Go syntax (`30s`, `2m30s`, `1h`), see [`values::parse_go_duration`];
//! - opaque values (client IDs, secrets, the bearer token, the audience) may start with `-`:
//!   pflag takes the next argument as a flag's value whatever it looks like, and a random
//!   base64url secret starts with `-` one time in 64.

mod exchange;
mod forward;
mod grant;
mod stdio;
mod telemetry;
pub(crate) mod values;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub(crate) use exchange::TokenExchangeArgs;
pub(crate) use forward::ForwardArgs;
pub(crate) use grant::GrantArgs;
pub use stdio::ProxyCommand;
pub(crate) use stdio::StdioArgs;
pub(crate) use telemetry::TelemetryArgs;

/// `thv`: the command line.
#[derive(Debug, Parser)]
#[command(
    name = "thv",
    version,
    about = "ToolHive (thv): a fast, safe, transparent proxy for MCP servers",
    propagate_version = true
)]
pub struct Cli {
    /// Enable debug mode (also set by the TOOLHIVE_DEBUG environment variable)
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", default_value = "false", require_equals = true,
          value_parser = go_bool)]
    pub(crate) debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `thv`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a transparent proxy for an MCP server with authentication support
    #[command(long_about = PROXY_LONG_ABOUT)]
    Proxy(ProxyCommand),
}

const PROXY_LONG_ABOUT: &str = "\
Create a transparent HTTP proxy that forwards requests to an MCP server endpoint.

The proxy forwards Streamable HTTP and legacy HTTP+SSE traffic unchanged (server-sent
events are streamed event by event), protects its own endpoint against DNS rebinding and
foreign browser origins, and answers GET /health locally.

Authentication modes:
  1. No authentication: simple transparent forwarding
  2. Outgoing authentication: authenticate to remote MCP servers using OAuth/OIDC
  3. Incoming authentication: protect the proxy endpoint with OIDC validation
  4. Bidirectional: both incoming and outgoing authentication, or incoming
     authentication with each user's token exchanged for the target's (RFC 8693,
     --token-exchange-url)

OAuth client secret sources, in order of precedence:
  1. --remote-auth-client-secret flag (not recommended for production)
  2. --remote-auth-client-secret-file flag
  3. TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET environment variable
(the token exchange secret likewise: --token-exchange-client-secret, then
--token-exchange-client-secret-file, then TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET)

`thv proxy stdio SERVER_NAME --target-uri URL` serves the target to a stdio MCP client
instead (see `thv proxy stdio --help`); `stdio` is therefore not a valid SERVER_NAME.

Example:
  thv proxy my-server --target-uri http://localhost:8080/mcp";

/// Flags of `thv proxy`, grouped as ToolHive groups them.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Name of the MCP server (shown in the startup message); `stdio` is reserved for
    /// `thv proxy stdio`
    #[arg(value_name = "SERVER_NAME", required = true)]
    pub(crate) server_name: String,

    #[command(flatten)]
    pub listen: ListenArgs,

    #[command(flatten)]
    pub oidc: OidcArgs,

    #[command(flatten)]
    pub remote_auth: RemoteAuthArgs,

    #[command(flatten)]
    pub(crate) token_exchange: TokenExchangeArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
}

/// MCP-aware policy: authorization, tool filtering, audit (ToolHive's `thv run` flags).
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Path to the authorization configuration file (Cedar policies, ToolHive's format,
    /// JSON or YAML); lists are filtered by the same policies
    #[arg(long, value_name = "PATH")]
    pub(crate) authz_config: Option<String>,

    /// Filter MCP server tools (comma-separated list of the server's tool names)
    #[arg(long, value_name = "NAMES", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) tools: Vec<String>,

    /// Path to a JSON file containing overrides for MCP server tools names and descriptions
    #[arg(long, value_name = "PATH")]
    pub(crate) tools_override: Option<String>,

    /// Enable audit logging with default configuration
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true, value_parser = go_bool)]
    pub(crate) enable_audit: bool,

    /// Path to the audit configuration file (implies --enable-audit)
    #[arg(long, value_name = "PATH")]
    pub(crate) audit_config: Option<String>,
}

/// Where the proxy listens and where it forwards to.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Host for the HTTP proxy to listen on (IP or hostname)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port for the HTTP proxy to listen on (host port); 0 picks a free port
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16), allow_negative_numbers = true)]
    pub(crate) port: u16,

    /// URI for the target MCP server (e.g., http://localhost:8080/mcp) (required)
    #[arg(long, value_name = "URL", required = true)]
    pub target_uri: String,

    /// Additional browser Origin allowed to call the proxy (repeatable; the proxy's own
    /// origins are always allowed)
    #[arg(long = "allowed-origins", value_name = "ORIGIN", action = ArgAction::Append)]
    pub(crate) allowed_origins: Vec<String>,

    /// Largest request body the proxy accepts (e.g. 8MiB, 512KiB, 1048576); larger
    /// requests get 413
    #[arg(long, value_name = "SIZE", default_value = "8MiB")]
    pub(crate) max_request_body: String,

    /// How long to wait for the target's response headers before answering 504 (Go
    /// duration; 0 waits forever). Streams are never cut once they started.
    #[arg(long, value_name = "DURATION", default_value = "5m", allow_hyphen_values = true)]
    pub(crate) upstream_timeout: String,

    /// Most client connections served at once; more wait in the listen backlog
    #[arg(long, value_name = "N", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,

    /// Largest request head (request line and headers) accepted; larger ones get 431
    #[arg(long, value_name = "SIZE", default_value = "64KiB")]
    pub(crate) max_header_size: String,

    /// How long a client may take to send a request head (slow clients are cut off); it
    /// also bounds how long an idle keep-alive connection is kept
    #[arg(long, value_name = "DURATION", default_value = "30s", allow_hyphen_values = true)]
    pub(crate) header_timeout: String,

    /// How long a graceful shutdown waits for in-flight requests before it ends them
    #[arg(long, value_name = "DURATION", default_value = "10s", allow_hyphen_values = true)]
    pub(crate) shutdown_timeout: String,
}

/// Incoming authentication: the proxy as an OAuth 2.1 resource server.
#[derive(Debug, Args)]
pub struct OidcArgs {
    /// OIDC issuer URL (e.g., https://accounts.google.com)
    #[arg(long, value_name = "URL")]
    pub(crate) oidc_issuer: Option<String>,

    /// Expected audience for the token
    #[arg(long, value_name = "AUDIENCE", allow_hyphen_values = true)]
    pub(crate) oidc_audience: Option<String>,

    /// URL to fetch the JWKS from
    #[arg(long, value_name = "URL")]
    pub(crate) oidc_jwks_url: Option<String>,

    /// URL for token introspection endpoint
    #[arg(long, value_name = "URL")]
    pub(crate) oidc_introspection_url: Option<String>,

    /// OIDC client ID
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub(crate) oidc_client_id: Option<String>,

    /// OIDC client secret (optional, for introspection; env TOOLHIVE_OIDC_CLIENT_SECRET)
    #[arg(long, value_name = "SECRET", allow_hyphen_values = true)]
    pub(crate) oidc_client_secret: Option<String>,

    /// Scopes a token must carry (comma-separated, repeatable)
    #[arg(long, value_name = "SCOPES", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) oidc_scopes: Vec<String>,

    /// Explicit resource URL for OAuth discovery endpoint (RFC 9728)
    #[arg(long, value_name = "URL")]
    pub(crate) resource_url: Option<String>,

    /// Clock skew tolerated when checking token times (exp, nbf)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_flag, allow_hyphen_values = true)]
    pub(crate) oidc_leeway: Duration,

    /// PEM file of extra CA certificates to trust for the IdP (JWKS, discovery, introspection)
    #[arg(long, value_name = "PATH")]
    pub oidc_ca_bundle: Option<String>,

    /// Allow an IdP on plain http:// or a private network address (loopback http:// is
    /// always allowed)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true, value_parser = go_bool)]
    pub(crate) oidc_allow_insecure: bool,

    /// How long an introspection result is reused (never beyond the token's exp; 0
    /// asks the IdP every time)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_flag, allow_hyphen_values = true)]
    pub(crate) oidc_introspection_cache_ttl: Duration,
}

/// Outgoing authentication: the proxy as an OAuth 2.1 client of the target.
#[derive(Debug, Args)]
pub struct RemoteAuthArgs {
    /// Enable OAuth/OIDC authentication to remote MCP server
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true, value_parser = go_bool)]
    pub(crate) remote_auth: bool,

    /// OAuth/OIDC issuer URL for remote server authentication (e.g., https://accounts.google.com)
    #[arg(long, value_name = "URL", conflicts_with_all = ["remote_auth_authorize_url", "remote_auth_token_url"])]
    pub(crate) remote_auth_issuer: Option<String>,

    /// OAuth authorization endpoint URL (alternative to --remote-auth-issuer for non-OIDC OAuth)
    #[arg(long, value_name = "URL")]
    pub(crate) remote_auth_authorize_url: Option<String>,

    /// OAuth token endpoint URL (alternative to --remote-auth-issuer for non-OIDC OAuth)
    #[arg(long, value_name = "URL")]
    pub(crate) remote_auth_token_url: Option<String>,

    /// OAuth client ID for remote server authentication
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub(crate) remote_auth_client_id: Option<String>,

    /// OAuth client secret for remote server authentication (optional for PKCE)
    #[arg(long, value_name = "SECRET", conflicts_with = "remote_auth_client_secret_file", allow_hyphen_values = true)]
    pub(crate) remote_auth_client_secret: Option<String>,

    /// Path to file containing OAuth client secret (alternative to --remote-auth-client-secret)
    #[arg(long, value_name = "PATH")]
    pub remote_auth_client_secret_file: Option<String>,

    /// OAuth scopes to request for remote server authentication (defaults: OIDC uses
    /// 'openid,profile,email')
    #[arg(long, value_name = "SCOPES", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) remote_auth_scopes: Vec<String>,

    /// Skip opening browser for remote server OAuth flow
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true, value_parser = go_bool)]
    pub(crate) remote_auth_skip_browser: bool,

    /// Timeout for OAuth authentication flow (e.g., 30s, 1m, 2m30s)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_flag, allow_hyphen_values = true)]
    pub(crate) remote_auth_timeout: Duration,

    /// Port for OAuth callback server during remote authentication
    #[arg(long, value_name = "PORT", default_value_t = 8666,
          value_parser = clap::value_parser!(u16).range(1024..))]
    pub(crate) remote_auth_callback_port: u16,

    /// Resource indicator (RFC 8707) to request tokens for; defaults to the target URI
    #[arg(long, value_name = "URI")]
    pub(crate) remote_auth_resource: Option<String>,

    /// Static bearer token for the remote server (env TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN)
    #[arg(long, value_name = "TOKEN", conflicts_with = "remote_auth_bearer_token_file", allow_hyphen_values = true)]
    pub(crate) remote_auth_bearer_token: Option<String>,

    /// Path to a file containing a static bearer token for the remote server
    #[arg(long, value_name = "PATH")]
    pub remote_auth_bearer_token_file: Option<String>,

    /// URL of this client's Client ID Metadata Document, used as client ID when the
    /// authorization server supports it (MCP 2025-11-25)
    #[arg(long, value_name = "URL")]
    pub(crate) remote_auth_client_metadata_url: Option<String>,

    /// Keep the refresh token and registered client on disk (0600) so a restart needs no
    /// new login
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "true", require_equals = true, value_parser = go_bool)]
    pub(crate) remote_auth_store: bool,

    /// Directory of the token store (default: $XDG_STATE_HOME/thv or ~/.local/state/thv)
    #[arg(long, value_name = "DIR")]
    pub(crate) remote_auth_store_dir: Option<String>,

    // Extra header fields for the target and extra authorization request parameters.
    #[command(flatten)]
    pub(crate) forward: ForwardArgs,
    #[command(flatten)]
    pub(crate) grant: GrantArgs,
}

/// Parsed command line plus the names of the flags the user actually gave.
///
/// Knowing which flags were *given* (rather than defaulted) lets `config` refuse
/// flags whose feature is not available instead of silently ignoring them.
#[derive(Debug)]
pub struct Invocation {
    pub cli: Cli,
    /// Long names (without `--`) of flags set on the command line or via their env var.
    pub given: BTreeSet<String>,
}

impl Invocation {
    /// Parses `argv` (including the program name).
    pub fn parse_from<I, T>(argv: I) -> Result<Invocation, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(argv)?;
        let given = given_flags(&matches);
        let cli = Cli::from_arg_matches(&matches)?;
        Ok(Invocation { cli, given })
    }
}

/// Collects the long names of every flag that came from the command line or the
/// environment, descending into the subcommand. Positionals and argument groups are not
/// flags and are skipped.
fn given_flags(matches: &ArgMatches) -> BTreeSet<String> {
    let mut given = BTreeSet::new();
    let mut level = Some((Cli::command(), matches));
    while let Some((cmd, m)) = level {
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let id = arg.get_id().as_str();
            let explicit = m.try_contains_id(id).unwrap_or(false)
                && matches!(m.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
            if explicit {
                given.insert(long.to_owned());
            }
        }
        level = m.subcommand().and_then(|(name, sub)| cmd.find_subcommand(name).cloned().map(|c| (c, sub)));
    }
    given
}

/// pflag's boolean syntax: `true`/`false` and the other spellings Go's `strconv.ParseBool`
/// accepts.
fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("invalid boolean value {other:?}: use true or false")),
    }
}

fn parse_duration_flag(value: &str) -> Result<Duration, String> {
    values::parse_go_duration(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Invocation {
        let mut argv = vec!["thv"];
        argv.extend_from_slice(args);
        Invocation::parse_from(argv).expect("parses")
    }

    fn proxy(inv: &Invocation) -> &ProxyArgs {
        match &inv.cli.command {
            Command::Proxy(ProxyCommand::Http(p)) => p,
            Command::Proxy(ProxyCommand::Stdio(_)) => panic!("not the HTTP proxy"),
        }
    }

    #[test]
    fn opaque_values_may_start_with_a_hyphen() {
        let inv = parse(&[
            "proxy",
            "srv",
            "--target-uri",
            "http://localhost:8080",
            "--remote-auth-client-id",
            "-id",
            "--remote-auth-client-secret",
            "-s3cret",
            "--oidc-client-id",
            "-oid",
            "--oidc-client-secret",
            "--looks-like-a-flag",
            "--oidc-audience",
            "-aud",
        ]);
        let p = proxy(&inv);
        assert_eq!(p.remote_auth.remote_auth_client_id.as_deref(), Some("-id"));
        assert_eq!(p.remote_auth.remote_auth_client_secret.as_deref(), Some("-s3cret"));
        assert_eq!(p.oidc.oidc_client_id.as_deref(), Some("-oid"));
        assert_eq!(p.oidc.oidc_client_secret.as_deref(), Some("--looks-like-a-flag"));
        assert_eq!(p.oidc.oidc_audience.as_deref(), Some("-aud"));
        let inv =
            parse(&["proxy", "srv", "--target-uri", "http://localhost:8080", "--remote-auth-bearer-token", "-tok"]);
        assert_eq!(proxy(&inv).remote_auth.remote_auth_bearer_token.as_deref(), Some("-tok"));
    }

    #[test]
    fn defaults_match_toolhive() {
        let inv = parse(&["proxy", "srv", "--target-uri", "http://localhost:8080"]);
        let p = proxy(&inv);
        assert_eq!(p.listen.host, "127.0.0.1");
        assert_eq!(p.listen.port, 0);
        assert_eq!(p.remote_auth.remote_auth_callback_port, 8666);
        assert_eq!(p.remote_auth.remote_auth_timeout, Duration::from_secs(30));
        assert!(!p.remote_auth.remote_auth);
        assert!(!inv.cli.debug);
        assert_eq!(
            inv.given.iter().map(String::as_str).collect::<Vec<_>>(),
            ["target-uri"],
            "defaults must not count as given"
        );
    }

    #[test]
    fn go_style_booleans() {
        for (flag, want) in [
            ("--remote-auth", true),
            ("--remote-auth=true", true),
            ("--remote-auth=false", false),
            ("--remote-auth=0", false),
        ] {
            let inv = parse(&["proxy", "s", "--target-uri", "http://x", flag]);
            assert_eq!(proxy(&inv).remote_auth.remote_auth, want, "{flag}");
        }
        let inv = parse(&["--debug=false", "proxy", "s", "--target-uri", "http://x"]);
        assert!(!inv.cli.debug);
        let inv = parse(&["proxy", "s", "--target-uri", "http://x", "--debug"]);
        assert!(inv.cli.debug, "--debug is global");
    }

    #[test]
    fn scopes_split_on_commas_and_repeat_but_origins_do_not_split() {
        let inv = parse(&[
            "proxy",
            "s",
            "--target-uri",
            "http://x",
            "--remote-auth-scopes",
            "a,b",
            "--remote-auth-scopes=c",
            "--allowed-origins",
            "http://a.example,x",
            "--allowed-origins",
            "http://b.example",
        ]);
        let p = proxy(&inv);
        assert_eq!(p.remote_auth.remote_auth_scopes, ["a", "b", "c"]);
        assert_eq!(p.listen.allowed_origins, ["http://a.example,x", "http://b.example"]);
    }

    #[test]
    fn go_durations() {
        let inv = parse(&["proxy", "s", "--target-uri", "http://x", "--remote-auth-timeout", "2m30s"]);
        assert_eq!(proxy(&inv).remote_auth.remote_auth_timeout, Duration::from_secs(150));
    }

    #[test]
    fn rejects_bad_values_naming_the_flag() {
        for args in [
            &["proxy", "s", "--target-uri", "http://x", "--port", "70000"][..],
            &["proxy", "s", "--target-uri", "http://x", "--remote-auth-callback-port", "80"],
            &["proxy", "s", "--target-uri", "http://x", "--remote-auth-timeout", "soon"],
            &["proxy", "s", "--target-uri", "http://x", "--remote-auth=maybe"],
        ] {
            let mut argv = vec!["thv"];
            argv.extend_from_slice(args);
            let err = Invocation::parse_from(argv).expect_err("must fail").to_string();
            let flag = args.iter().find(|a| a.starts_with("--remote") || **a == "--port").unwrap();
            let flag = flag.split('=').next().unwrap();
            assert!(err.contains(flag), "{err} should name {flag}");
        }
    }

    #[test]
    fn stdio_is_a_subcommand_and_names_still_work() {
        let inv = parse(&["proxy", "stdio", "srv", "--target-uri", "http://x", "--remote-auth-bearer-token", "t"]);
        let Command::Proxy(ProxyCommand::Stdio(s)) = &inv.cli.command else { panic!("{inv:?}") };
        assert_eq!(s.server_name, "srv");
        assert_eq!(s.target_uri, "http://x");
        assert_eq!(s.max_request_body, "8MiB");
        assert_eq!(s.remote_auth.remote_auth_bearer_token.as_deref(), Some("t"));
        assert!(inv.given.contains("remote-auth-bearer-token"), "flags of the subcommand count as given");
        let inv = parse(&["proxy", "my-stdio", "--target-uri", "http://x"]);
        assert_eq!(proxy(&inv).server_name, "my-stdio");
        let inv = parse(&["--debug", "proxy", "stdio", "srv", "--target-uri", "http://x"]);
        assert!(inv.cli.debug);
    }

    #[test]
    fn stdio_needs_its_name_and_target() {
        for (args, needle) in [
            (&["proxy", "stdio", "--target-uri", "http://x"][..], "SERVER_NAME"),
            (&["proxy", "stdio", "srv"], "--target-uri"),
            (&["proxy", "stdio", "srv", "--target-uri", "http://x", "--port", "1"], "--port"),
        ] {
            let mut argv = vec!["thv"];
            argv.extend_from_slice(args);
            let err = Invocation::parse_from(argv).expect_err("must fail").to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn conflicting_secret_sources_are_refused() {
        let argv = [
            "thv",
            "proxy",
            "s",
            "--target-uri",
            "http://x",
            "--remote-auth-client-secret",
            "a",
            "--remote-auth-client-secret-file",
            "/f",
        ];
        assert!(Invocation::parse_from(argv).is_err());
    }
}
