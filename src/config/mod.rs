//! Validated configuration: the one step from raw flags ([`crate::cli`]) to typed values.
//!
//! Everything that can be checked before the first request is checked here, so that a
//! mistake stops the program at startup with a one-line message that names the flag and
//! says how to fix it. This is also the only module that reads the environment
//! (through [`Environment`], so tests can inject it).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use secrecy::SecretString;
use url::Url;

use crate::cli::{Command, Invocation, ProxyArgs};

/// How long the proxy waits for a TCP (and TLS) connection to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A startup error: which flag (or variable) is wrong, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    /// The flag or environment variable at fault, e.g. `--target-uri`.
    pub flag: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ConfigError {
    fn new(flag: impl Into<String>, problem: impl Into<String>) -> Self {
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
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The validated configuration of one `thv proxy` run.
#[derive(Debug, Clone)]
pub struct Config {
    /// SERVER_NAME, used in the startup message.
    pub server_name: String,
    /// The listen socket (port 0 = pick a free one).
    pub listen: SocketAddr,
    /// The `--host` value as the user wrote it (used in the URL shown to clients).
    pub listen_host: String,
    /// The upstream MCP server.
    pub target: Target,
    /// Browser origins allowed in addition to the proxy's own (normalised).
    pub extra_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub max_request_body: usize,
    /// Deadline for the target's response headers; `None` waits forever.
    pub upstream_timeout: Option<Duration>,
    /// Deadline for connecting to the target.
    pub connect_timeout: Duration,
    /// Grace period of a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// Largest request head, in bytes.
    pub max_header_size: usize,
    /// Deadline for a request head (slowloris bound, idle keep-alive bound).
    pub header_timeout: Duration,
    /// `--debug` or `TOOLHIVE_DEBUG`.
    pub debug: bool,
    /// Incoming authentication (`--oidc-*`); `None` when the proxy accepts everyone.
    pub inbound: Option<InboundConfig>,
    /// Outgoing authentication (`--remote-auth*`); `None` when requests go as they came.
    pub outbound: Option<OutboundConfig>,
    /// Plain requests take the own HTTP/1.1 path where it applies (`THV_HTTP1=hyper`
    /// sends everything through hyper, e.g. to compare the two).
    pub own_http1: bool,
}

/// How the proxy authenticates to the target.
#[derive(Clone)]
pub enum OutboundConfig {
    /// A static token (`--remote-auth-bearer-token[-file]`, `TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN`).
    Bearer(SecretString),
    /// OAuth 2.1 authorization code with PKCE.
    OAuth(Box<OAuthConfig>),
}

impl fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundConfig::Bearer(_) => f.write_str("Bearer([REDACTED])"),
            OutboundConfig::OAuth(c) => f.debug_tuple("OAuth").field(&c.endpoints).finish(),
        }
    }
}

/// Where the authorization server's endpoints come from.
#[derive(Debug, Clone)]
pub enum OAuthEndpoints {
    /// Discovered from the target (RFC 9728 → RFC 8414 / OIDC).
    Discover,
    /// `--remote-auth-issuer`: discovered from this issuer.
    Issuer(String),
    /// `--remote-auth-authorize-url` and `--remote-auth-token-url`.
    Manual { authorize: Url, token: Url },
}

/// Validated `--remote-auth*` settings.
#[derive(Clone)]
pub struct OAuthConfig {
    pub endpoints: OAuthEndpoints,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub client_metadata_url: Option<String>,
    /// Scopes the user asked for; empty means "as the server says" (MCP scope selection).
    pub scopes: Vec<String>,
    pub callback_port: u16,
    pub skip_browser: bool,
    pub timeout: Duration,
    /// The RFC 8707 resource: `--remote-auth-resource` or the canonical target URI.
    pub resource: String,
    /// Where tokens are kept between runs; `None` keeps them in memory only.
    pub store_dir: Option<std::path::PathBuf>,
    /// `$BROWSER`, how to open the authorization page.
    pub browser: Option<String>,
}

/// Validated incoming-authentication settings: the proxy as an OAuth 2.1 resource server.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// `--oidc-issuer`, exactly as given (compared byte for byte with `iss`).
    pub issuer: Option<String>,
    /// `--oidc-jwks-url`; when absent the JWKS URL comes from the issuer's metadata.
    pub jwks_url: Option<Url>,
    /// `--oidc-introspection-url` and how to authenticate to it.
    pub introspection: Option<IntrospectionConfig>,
    /// `--oidc-audience`; when absent the resource URL is the audience.
    pub audience: Option<String>,
    /// `--resource-url`; when absent the proxy's own URL (as the client addressed it).
    pub resource_url: Option<Url>,
    /// `--oidc-scopes`: scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// `--oidc-leeway`.
    pub leeway: Duration,
    /// `--oidc-ca-bundle`, read at startup.
    pub ca_bundle: Option<Vec<u8>>,
    /// `--oidc-allow-insecure`.
    pub allow_insecure: bool,
}

/// Where and how to introspect opaque tokens (RFC 7662).
#[derive(Clone)]
pub struct IntrospectionConfig {
    pub url: Url,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// Google's tokeninfo dialect.
    pub google: bool,
    /// `--oidc-introspection-cache-ttl`.
    pub cache_ttl: Duration,
}

impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[REDACTED]"))
            .field("google", &self.google)
            .finish()
    }
}

/// The upstream MCP server named by `--target-uri`.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host[:port]` of the target, also sent as the `Host` header.
    pub authority: Authority,
    /// The MCP endpoint path on the target (`/` when the URI has none). The proxy mirrors
    /// the target's URL space, so clients use this same path on the proxy.
    pub endpoint_path: String,
    /// A query string carried by the target URI, merged into every forwarded request.
    pub query: Option<String>,
    /// Whether the target is on this machine or a private network, so that
    /// `X-Forwarded-*` headers may be sent to it (they are withheld from third parties,
    /// ToolHive #5567).
    pub is_local: bool,
}

impl Target {
    /// The target URI as the user should read it (`scheme://authority/path[?query]`).
    pub fn display(&self) -> String {
        match &self.query {
            Some(q) => format!("{}://{}{}?{}", self.scheme, self.authority, self.endpoint_path, q),
            None => format!("{}://{}{}", self.scheme, self.authority, self.endpoint_path),
        }
    }

    /// The `host:port` to open a TCP connection to (default port filled in).
    pub fn socket_authority(&self) -> String {
        let default_port = if self.scheme == Scheme::HTTPS { 443 } else { 80 };
        format!("{}:{}", self.authority.host(), self.authority.port_u16().unwrap_or(default_port))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl Config {
    /// Validates a parsed command line against `env`.
    pub fn from_invocation(inv: &Invocation, env: &dyn Environment) -> Result<Config, ConfigError> {
        let Command::Proxy(args) = &inv.cli.command;
        let debug = inv.cli.debug || env.var("TOOLHIVE_DEBUG").is_some_and(|v| is_truthy(&v));
        let mut config = from_proxy_args(args, debug)?;
        config.inbound = inbound_config(&args.oidc, env)?;
        config.outbound = outbound_config(&args.remote_auth, &inv.given, env, &config.target)?;
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

fn from_proxy_args(args: &ProxyArgs, debug: bool) -> Result<Config, ConfigError> {
    let server_name = args.server_name.trim().to_owned();
    if server_name.is_empty() {
        return Err(ConfigError::new(
            "SERVER_NAME",
            "must not be empty; name the MCP server, e.g. `thv proxy my-server …`",
        ));
    }
    let listen_ip = resolve_host(&args.listen.host)?;
    let target = parse_target(&args.listen.target_uri)?;
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
        own_http1: true,
    })
}

/// Remote-auth flags that only mean something when OAuth to the target is on.
const OAUTH_ONLY_FLAGS: &[&str] = &[
    "remote-auth-client-secret",
    "remote-auth-client-secret-file",
    "remote-auth-scopes",
    "remote-auth-skip-browser",
    "remote-auth-timeout",
    "remote-auth-callback-port",
    "remote-auth-resource",
    "remote-auth-client-metadata-url",
    "remote-auth-store",
    "remote-auth-store-dir",
];

/// Validates the `--remote-auth*` flags. Secret precedence (ToolHive's): flag, then
/// file (trimmed, must not be empty), then environment variable.
fn outbound_config(
    args: &crate::cli::RemoteAuthArgs,
    given: &BTreeSet<String>,
    env: &dyn Environment,
    target: &Target,
) -> Result<Option<OutboundConfig>, ConfigError> {
    let bearer = resolve_secret(
        &args.remote_auth_bearer_token,
        ("--remote-auth-bearer-token-file", &args.remote_auth_bearer_token_file),
        env.var("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN"),
    )?;
    let oauth_on = args.remote_auth
        || [
            &args.remote_auth_client_id,
            &args.remote_auth_issuer,
            &args.remote_auth_authorize_url,
            &args.remote_auth_token_url,
        ]
        .iter()
        .any(|v| non_empty(v).is_some());
    if let Some(token) = bearer {
        if oauth_on {
            tracing::warn!(
                "a static bearer token is configured: it is used as is and the OAuth flags are ignored (ToolHive's precedence)"
            );
        }
        return Ok(Some(OutboundConfig::Bearer(token)));
    }
    if !oauth_on {
        if let Some(flag) = OAUTH_ONLY_FLAGS.iter().find(|f| given.contains(**f)) {
            return Err(ConfigError::new(
                format!("--{flag}"),
                "has no effect without --remote-auth; add --remote-auth to log in to the MCP server",
            ));
        }
        return Ok(None);
    }
    let endpoint_url = |flag: &str, raw: &str| -> Result<Url, ConfigError> {
        let url = Url::parse(raw).map_err(|e| ConfigError::new(flag, format!("{raw:?} is not a valid URL ({e})")))?;
        crate::oauth::http::UrlPolicy::default().check(&url).map_err(|why| ConfigError::new(flag, why))?;
        Ok(url)
    };
    let endpoints = match (
        non_empty(&args.remote_auth_issuer),
        non_empty(&args.remote_auth_authorize_url),
        non_empty(&args.remote_auth_token_url),
    ) {
        (Some(issuer), None, None) => {
            endpoint_url("--remote-auth-issuer", issuer)?;
            OAuthEndpoints::Issuer(issuer.to_owned())
        }
        (None, Some(authorize), Some(token)) => OAuthEndpoints::Manual {
            authorize: endpoint_url("--remote-auth-authorize-url", authorize)?,
            token: endpoint_url("--remote-auth-token-url", token)?,
        },
        (None, Some(_), None) => {
            return Err(ConfigError::new("--remote-auth-token-url", "is required with --remote-auth-authorize-url"));
        }
        (None, None, Some(_)) => {
            return Err(ConfigError::new("--remote-auth-authorize-url", "is required with --remote-auth-token-url"));
        }
        (None, None, None) => OAuthEndpoints::Discover,
        (Some(_), _, _) => {
            return Err(ConfigError::new(
                "--remote-auth-issuer",
                "cannot be combined with --remote-auth-authorize-url/--remote-auth-token-url; choose one approach",
            ));
        }
    };
    let client_id = non_empty(&args.remote_auth_client_id).map(str::to_owned);
    if matches!(endpoints, OAuthEndpoints::Manual { .. }) && client_id.is_none() {
        return Err(ConfigError::new(
            "--remote-auth-client-id",
            "is required with manual endpoints: without an issuer there is no registration endpoint to register a client at",
        ));
    }
    let client_secret = resolve_secret(
        &args.remote_auth_client_secret,
        ("--remote-auth-client-secret-file", &args.remote_auth_client_secret_file),
        env.var("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET"),
    )?;
    let client_metadata_url = non_empty(&args.remote_auth_client_metadata_url)
        .map(|raw| {
            let url = Url::parse(raw).map_err(|e| {
                ConfigError::new("--remote-auth-client-metadata-url", format!("{raw:?} is not a valid URL ({e})"))
            })?;
            if url.scheme() != "https" || url.path().len() <= 1 {
                return Err(ConfigError::new(
                    "--remote-auth-client-metadata-url",
                    "must be an https URL with a path (MCP 2025-11-25 §Client ID Metadata Documents)",
                ));
            }
            Ok(raw.to_owned())
        })
        .transpose()?;
    let resource = match non_empty(&args.remote_auth_resource) {
        Some(raw) => {
            let url = Url::parse(raw).map_err(|e| {
                ConfigError::new("--remote-auth-resource", format!("{raw:?} is not an absolute URI ({e})"))
            })?;
            if url.fragment().is_some() {
                return Err(ConfigError::new("--remote-auth-resource", "must not contain a #fragment (RFC 8707 §2)"));
            }
            raw.to_owned()
        }
        None => canonical_resource(target),
    };
    let scopes: Vec<String> =
        args.remote_auth_scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let scopes = if scopes.is_empty() && matches!(endpoints, OAuthEndpoints::Issuer(_)) {
        ["openid", "profile", "email"].map(str::to_owned).to_vec()
    } else {
        scopes
    };
    let store_dir = if args.remote_auth_store {
        match non_empty(&args.remote_auth_store_dir) {
            Some(dir) => Some(std::path::PathBuf::from(dir)),
            None => env
                .var("XDG_STATE_HOME")
                .filter(|v| v.starts_with('/'))
                .map(|d| std::path::PathBuf::from(d).join("thv"))
                .or_else(|| {
                    env.var("HOME")
                        .filter(|h| !h.is_empty())
                        .map(|h| std::path::PathBuf::from(h).join(".local/state/thv"))
                }),
        }
    } else {
        None
    };
    Ok(Some(OutboundConfig::OAuth(Box::new(OAuthConfig {
        endpoints,
        client_id,
        client_secret,
        client_metadata_url,
        scopes,
        callback_port: args.remote_auth_callback_port,
        skip_browser: args.remote_auth_skip_browser,
        timeout: if args.remote_auth_timeout.is_zero() { Duration::from_secs(300) } else { args.remote_auth_timeout },
        resource,
        store_dir,
        browser: env.var("BROWSER"),
    }))))
}

/// The canonical URI of the target for RFC 8707 (MCP 2025-11-25 §Canonical Server URI):
/// lowercase scheme and host, no fragment, no trailing slash on a bare origin.
fn canonical_resource(target: &Target) -> String {
    let scheme = target.scheme.as_str().to_ascii_lowercase();
    let authority = target.authority.as_str().to_ascii_lowercase();
    let path = if target.endpoint_path == "/" { "" } else { target.endpoint_path.as_str() };
    match &target.query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
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

/// Validates the `--oidc-*` flags. Incoming auth is on when any of issuer, JWKS URL or
/// introspection URL is given (ToolHive's rule).
fn inbound_config(args: &crate::cli::OidcArgs, env: &dyn Environment) -> Result<Option<InboundConfig>, ConfigError> {
    let issuer = non_empty(&args.oidc_issuer);
    let jwks = non_empty(&args.oidc_jwks_url);
    let introspection = non_empty(&args.oidc_introspection_url);
    if issuer.is_none() && jwks.is_none() && introspection.is_none() {
        for (given, flag) in [
            (&args.oidc_audience, "--oidc-audience"),
            (&args.resource_url, "--resource-url"),
            (&args.oidc_client_id, "--oidc-client-id"),
            (&args.oidc_client_secret, "--oidc-client-secret"),
        ] {
            if non_empty(given).is_some() {
                return Err(ConfigError::new(
                    flag,
                    "has no effect without --oidc-issuer, --oidc-jwks-url or --oidc-introspection-url; add one of them",
                ));
            }
        }
        if !args.oidc_scopes.is_empty() {
            return Err(ConfigError::new(
                "--oidc-scopes",
                "has no effect without --oidc-issuer, --oidc-jwks-url or --oidc-introspection-url; add one of them",
            ));
        }
        return Ok(None);
    }
    let policy = crate::oauth::http::UrlPolicy { allow_insecure: args.oidc_allow_insecure, block_internal: false };
    let idp_url = |flag: &str, raw: &str| -> Result<Url, ConfigError> {
        let url = Url::parse(raw).map_err(|e| ConfigError::new(flag, format!("{raw:?} is not a valid URL ({e})")))?;
        policy.check(&url).map_err(|why| ConfigError::new(flag, why))?;
        Ok(url)
    };
    if let Some(issuer) = issuer {
        idp_url("--oidc-issuer", issuer)?;
    }
    let jwks_url = jwks.map(|raw| idp_url("--oidc-jwks-url", raw)).transpose()?;
    let audience = non_empty(&args.oidc_audience).map(str::to_owned);
    let introspection = match introspection {
        None => None,
        Some(raw) => {
            let url = idp_url("--oidc-introspection-url", raw)?;
            let google = raw.trim_end_matches('/') == crate::oauth::introspection::GOOGLE_TOKENINFO;
            if google && audience.is_none() {
                return Err(ConfigError::new(
                    "--oidc-audience",
                    "is required with Google's tokeninfo endpoint: without it any Google token for any app would be accepted; set it to your OAuth client ID",
                ));
            }
            let client_secret = non_empty(&args.oidc_client_secret)
                .map(str::to_owned)
                .or_else(|| env.var("TOOLHIVE_OIDC_CLIENT_SECRET").filter(|v| !v.trim().is_empty()))
                .map(SecretString::from);
            let client_id = non_empty(&args.oidc_client_id).map(str::to_owned);
            if client_secret.is_some() && client_id.is_none() {
                return Err(ConfigError::new(
                    "--oidc-client-id",
                    "is required when a client secret is given: introspection authenticates as that client",
                ));
            }
            Some(IntrospectionConfig {
                url,
                client_id,
                client_secret,
                google,
                cache_ttl: args.oidc_introspection_cache_ttl,
            })
        }
    };
    let resource_url = non_empty(&args.resource_url)
        .map(|raw| {
            let url = Url::parse(raw).map_err(|e| {
                ConfigError::new(
                    "--resource-url",
                    format!(
                        "{raw:?} is not a valid URL ({e}); use the URL clients use, e.g. https://mcp.example.com/mcp"
                    ),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.fragment().is_some() {
                return Err(ConfigError::new(
                    "--resource-url",
                    format!("{raw:?} must be an http(s) URL with a host and no #fragment (RFC 8707 §2)"),
                ));
            }
            Ok(url)
        })
        .transpose()?;
    let required_scopes: Vec<String> =
        args.oidc_scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if required_scopes.iter().any(|s| s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')) {
        return Err(ConfigError::new(
            "--oidc-scopes",
            "scopes are single tokens without spaces or quotes; separate them with commas",
        ));
    }
    if args.oidc_leeway > Duration::from_secs(600) {
        return Err(ConfigError::new(
            "--oidc-leeway",
            "more than 10m would accept long-expired tokens; clocks should agree within a minute",
        ));
    }
    let ca_bundle = non_empty(&args.oidc_ca_bundle)
        .map(|path| {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::new("--oidc-ca-bundle", format!("cannot read {path:?}: {e}")))?;
            crate::oauth::http::ControlClient::new(Some(&pem))
                .map_err(|why| ConfigError::new("--oidc-ca-bundle", format!("{path:?} {why}")))?;
            Ok(pem)
        })
        .transpose()?;
    Ok(Some(InboundConfig {
        issuer: issuer.map(str::to_owned),
        jwks_url,
        introspection,
        audience,
        resource_url,
        required_scopes,
        leeway: args.oidc_leeway,
        ca_bundle,
        allow_insecure: args.oidc_allow_insecure,
    }))
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

/// Parses and checks `--target-uri`.
fn parse_target(raw: &str) -> Result<Target, ConfigError> {
    let flag = "--target-uri";
    let raw = raw.trim();
    let example = "use a URL such as http://localhost:8080/mcp";
    if raw.is_empty() {
        return Err(ConfigError::new(flag, format!("must not be empty; {example}")));
    }
    if raw.contains('#') {
        return Err(ConfigError::new(flag, format!("{raw:?} has a #fragment, which HTTP never sends; remove it")));
    }
    let uri: Uri =
        raw.parse().map_err(|e| ConfigError::new(flag, format!("{raw:?} is not a valid URL ({e}); {example}")))?;
    let scheme = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::HTTP,
        Some(s) if s.eq_ignore_ascii_case("https") => Scheme::HTTPS,
        Some(s) => {
            return Err(ConfigError::new(
                flag,
                format!("{raw:?} has scheme {s:?}; only http:// and https:// targets are supported"),
            ));
        }
        None => return Err(ConfigError::new(flag, format!("{raw:?} has no scheme; {example}"))),
    };
    let authority =
        uri.authority().cloned().ok_or_else(|| ConfigError::new(flag, format!("{raw:?} has no host; {example}")))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::new(
            flag,
            format!(
                "{raw:?} carries credentials in the URL; remove them (they would be sent to the target in clear and logged)"
            ),
        ));
    }
    if authority.host().is_empty() {
        return Err(ConfigError::new(flag, format!("{raw:?} has no host; {example}")));
    }
    // http::Uri is lenient about ports and hosts (":99999", ":abc", "217.0.0.1000"
    // pass, and the default port would be used silently); the WHATWG parser is not.
    if Url::parse(raw).is_err() {
        return Err(ConfigError::new(flag, format!("{raw:?} has an invalid host or port; {example}")));
    }
    if authority.port_u16() == Some(0) {
        return Err(ConfigError::new(flag, format!("{raw:?} has port 0; name the port the MCP server listens on")));
    }
    let path_and_query = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let endpoint_path =
        if path_and_query.path().is_empty() { "/".to_owned() } else { path_and_query.path().to_owned() };
    let query = path_and_query.query().filter(|q| !q.is_empty()).map(str::to_owned);
    let is_local = is_local_host(authority.host());
    Ok(Target { scheme, authority, endpoint_path, query, is_local })
}

/// Whether a host name or IP literal is this machine or a private network: loopback,
/// RFC 1918 / unique-local, link-local, `localhost`, single-label names (containers,
/// compose services) and the reserved internal suffixes.
pub fn is_local_host(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                    || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local fe80::/10
            }
        };
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    !name.contains('.') || [".localhost", ".local", ".internal", ".lan", ".home.arpa"].iter().any(|s| name.ends_with(s))
}

/// Normalises a browser origin (`scheme://host[:port]`) the way browsers serialise it:
/// lowercase scheme and host, default port dropped. Paths, queries, userinfo and
/// non-HTTP schemes are refused.
pub fn normalize_origin(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if !raw.contains("://") {
        return Err("is not an origin (scheme://host[:port])");
    }
    let url = Url::parse(raw).map_err(|_| "has an invalid host or port")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https");
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err("must be scheme://host[:port] with no path, query or credentials");
    }
    // Serialised as a browser sends it (WHATWG URL: lowercase, default port dropped,
    // IP addresses canonical), so that comparison is plain string equality.
    Ok(url.origin().ascii_serialization())
}

/// Parses a byte size: a whole number with an optional unit (`B`, `KiB`/`K`, `MiB`/`M`,
/// `GiB`/`G` are powers of 1024; `KB`, `MB`, `GB` powers of 1000).
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().map_err(|_| "is not a size; use e.g. 8MiB or 1048576".to_owned())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("has an unknown unit {other:?}; use B, KiB, MiB or GiB")),
    };
    let bytes = n.checked_mul(mult).filter(|b| *b <= (4u64 << 30)).ok_or("is larger than 4GiB")?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    usize::try_from(bytes).map_err(|_| "is too large for this machine".to_owned())
}

/// Parses a duration in Go's `time.ParseDuration` syntax: one or more decimal numbers,
/// each with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `30s`, `1.5h`, `2m30s`;
/// a bare `0` is zero. Negative durations are refused.
pub fn parse_go_duration(raw: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {raw:?}; use Go syntax such as 30s, 1m or 2m30s");
    let s = raw.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("duration {raw:?} is negative; use a positive value such as 30s"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total_ns += value * scale;
        rest = next;
    }
    if !total_ns.is_finite() || total_ns > (u64::MAX as f64) {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
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

    fn config(args: &[&str], env: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["thv", "proxy", "srv"];
        argv.extend_from_slice(args);
        let inv = Invocation::parse_from(argv).expect("parses");
        Config::from_invocation(&inv, &MapEnv(env.iter().copied().collect()))
    }

    #[test]
    fn target_with_path_names_the_endpoint() {
        let c = config(&["--target-uri", "https://api.example.com/mcp"], &[]).unwrap();
        assert_eq!(c.target.scheme, Scheme::HTTPS);
        assert_eq!(c.target.authority.as_str(), "api.example.com");
        assert_eq!(c.target.endpoint_path, "/mcp");
        assert!(!c.target.is_local);
        assert_eq!(c.target.socket_authority(), "api.example.com:443");
        let c = config(&["--target-uri", "http://localhost:8080"], &[]).unwrap();
        assert_eq!(c.target.endpoint_path, "/");
        assert!(c.target.is_local);
        assert_eq!(c.target.display(), "http://localhost:8080/");
    }

    #[test]
    fn bad_targets_name_the_flag_and_the_fix() {
        for (uri, needle) in [
            ("localhost:8080", "scheme"),
            ("ftp://example.com", "only http"),
            ("", "empty"),
            ("http://", "not a valid URL"),
            ("http://user:pw@example.com/", "credentials"),
            ("http://example.com/mcp#frag", "fragment"),
            ("/mcp", "no scheme"),
            ("http://example.com:99999/mcp", "invalid host or port"),
            ("https://example.com:abc/mcp", "invalid host or port"),
            ("http://217.0.0.1000/mcp", "invalid host or port"),
        ] {
            let err = config(&["--target-uri", uri], &[]).unwrap_err();
            assert_eq!(err.flag, "--target-uri", "{uri}");
            assert!(err.to_string().contains(needle), "{uri}: {err}");
        }
    }

    #[test]
    fn oauth_only_flags_need_remote_auth() {
        let err = config(&["--target-uri", "http://x", "--remote-auth-callback-port", "9000"], &[]).unwrap_err();
        assert_eq!(err.flag, "--remote-auth-callback-port");
        let c =
            config(&["--target-uri", "http://x", "--remote-auth-callback-port", "9000", "--remote-auth"], &[]).unwrap();
        assert!(matches!(c.outbound, Some(OutboundConfig::OAuth(_))));
    }

    #[test]
    fn outbound_modes_and_secret_precedence() {
        use secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("thv-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "  from-file\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let file = file.to_str().unwrap();
        let env = [("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET", "from-env")];
        let secret = |args: &[&str]| match config(args, &env).unwrap().outbound {
            Some(OutboundConfig::OAuth(c)) => c.client_secret.map(|s| s.expose_secret().to_owned()),
            other => panic!("{other:?}"),
        };
        let base = ["--target-uri", "https://api.example.com/mcp", "--remote-auth"];
        assert_eq!(
            secret(&[&base[..], &["--remote-auth-client-secret", "from-flag"]].concat()).as_deref(),
            Some("from-flag")
        );
        assert_eq!(
            secret(&[&base[..], &["--remote-auth-client-secret-file", file]].concat()).as_deref(),
            Some("from-file")
        );
        assert_eq!(secret(&base).as_deref(), Some("from-env"));
        let err = config(&[&base[..], &["--remote-auth-client-secret-file", empty.to_str().unwrap()]].concat(), &[])
            .unwrap_err();
        assert_eq!(err.flag, "--remote-auth-client-secret-file");
        assert!(err.to_string().contains("empty"));
        let err = config(&[&base[..], &["--remote-auth-client-secret-file", "/nonexistent/secret"]].concat(), &[])
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/secret"));

        let c = config(
            &["--target-uri", "https://API.example.com/mcp", "--remote-auth-issuer", "https://idp.example"],
            &[],
        )
        .unwrap();
        let Some(OutboundConfig::OAuth(o)) = c.outbound else { panic!() };
        assert_eq!(o.resource, "https://api.example.com/mcp");
        assert_eq!(o.scopes, ["openid", "profile", "email"], "ToolHive's OIDC default scopes");
        let c = config(&["--target-uri", "http://x"], &[("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN", "tok")]).unwrap();
        assert!(matches!(c.outbound, Some(OutboundConfig::Bearer(_))));
        assert!(!format!("{:?}", c.outbound).contains("tok\""));
        let err = config(&["--target-uri", "http://x", "--remote-auth-authorize-url", "https://a/authorize"], &[])
            .unwrap_err();
        assert_eq!(err.flag, "--remote-auth-token-url");
        let err = config(&["--target-uri", "http://x", "--remote-auth-issuer", "http://idp.example"], &[]).unwrap_err();
        assert_eq!(err.flag, "--remote-auth-issuer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn incoming_auth_settings() {
        let c = config(
            &["--target-uri", "http://x", "--oidc-issuer", "http://127.0.0.1:9000", "--oidc-scopes", "a,b"],
            &[],
        )
        .unwrap();
        let inbound = c.inbound.unwrap();
        assert_eq!(inbound.issuer.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(inbound.required_scopes, ["a", "b"]);
        assert_eq!(inbound.leeway, Duration::from_secs(60));
        assert!(config(&["--target-uri", "http://x"], &[]).unwrap().inbound.is_none());

        let secret = [("TOOLHIVE_OIDC_CLIENT_SECRET", "s3cret")];
        let args = [
            "--target-uri",
            "http://x",
            "--oidc-introspection-url",
            "https://idp.example/introspect",
            "--oidc-client-id",
            "proxy",
        ];
        let inbound = config(&args, &secret).unwrap().inbound.unwrap();
        let intro = inbound.introspection.unwrap();
        assert!(intro.client_secret.is_some(), "the env var is the fallback");
        assert!(!format!("{intro:?}").contains("s3cret"), "Debug never shows the secret");
    }

    #[test]
    fn incoming_auth_errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--oidc-issuer", "http://idp.example"], "--oidc-issuer"),
            (&["--oidc-issuer", "not a url"], "--oidc-issuer"),
            (&["--oidc-jwks-url", "https://10.1.2.3/jwks"], "--oidc-jwks-url"),
            (&["--oidc-introspection-url", "https://oauth2.googleapis.com/tokeninfo"], "--oidc-audience"),
            (&["--oidc-audience", "aud"], "--oidc-audience"),
            (&["--oidc-issuer", "https://idp.example", "--resource-url", "ftp://x"], "--resource-url"),
            (&["--oidc-issuer", "https://idp.example", "--oidc-leeway", "1h"], "--oidc-leeway"),
            (&["--oidc-issuer", "https://idp.example", "--oidc-ca-bundle", "/nonexistent.pem"], "--oidc-ca-bundle"),
        ];
        for (args, flag) in cases {
            let mut full = vec!["--target-uri", "http://x"];
            full.extend_from_slice(args);
            let err = config(&full, &[]).unwrap_err();
            assert_eq!(err.flag, *flag, "{args:?}: {err}");
        }
        let c =
            config(&["--target-uri", "http://x", "--oidc-issuer", "http://idp.example", "--oidc-allow-insecure"], &[]);
        assert!(c.is_ok(), "the opt-in allows a plain-http IdP");
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
    fn origins_are_normalised_and_checked() {
        assert_eq!(normalize_origin("HTTP://LocalHost:80/").unwrap(), "http://localhost");
        assert_eq!(normalize_origin("https://a.example:8443").unwrap(), "https://a.example:8443");
        assert_eq!(normalize_origin("http://[::1]:6274").unwrap(), "http://[::1]:6274");
        assert_eq!(normalize_origin("http://a:080").unwrap(), "http://a");
        assert_eq!(normalize_origin("http://[::ffff:1.2.3.4]").unwrap(), "http://[::ffff:102:304]");
        for bad in [
            "a.example",
            "ftp://a",
            "http://u@a",
            "http://a/path",
            "http://a?x",
            "http://",
            "http://:",
            "http://3[::00ms1]:62",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
        let err = config(&["--target-uri", "http://x", "--allowed-origins", "example.com"], &[]).unwrap_err();
        assert_eq!(err.flag, "--allowed-origins");
    }

    #[test]
    fn local_hosts() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "[::1]",
            "[fd00::1]",
            "localhost",
            "mcp-server",
            "svc.internal",
            "a.localhost",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for public in ["8.8.8.8", "api.example.com", "[2001:db8::1]", "mcp.github.com"] {
            assert!(!is_local_host(public), "{public}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        for bad in ["", "0", "-1", "8XB", "99999GiB", "MiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        for (s, ms) in [
            ("30s", 30_000),
            ("2m30s", 150_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("0", 0),
            ("1h2m3.5s", 3_723_500),
        ] {
            assert_eq!(parse_go_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        assert_eq!(parse_go_duration("1us").unwrap(), Duration::from_micros(1));
        assert_eq!(parse_go_duration("1µs").unwrap(), Duration::from_micros(1));
        for bad in ["", "30", "5 min", "-1s", "s", "1x", ".s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
