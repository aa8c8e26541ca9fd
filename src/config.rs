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
    /// `--debug` or `TOOLHIVE_DEBUG`.
    pub debug: bool,
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

/// Flags whose feature is not in this build yet. Using one stops the program rather
/// than silently ignoring it.
const UNAVAILABLE_FLAGS: &[(&str, &str)] = &[
    ("oidc-issuer", "incoming OIDC authentication"),
    ("oidc-audience", "incoming OIDC authentication"),
    ("oidc-jwks-url", "incoming OIDC authentication"),
    ("oidc-introspection-url", "incoming token introspection"),
    ("oidc-client-id", "incoming token introspection"),
    ("oidc-client-secret", "incoming token introspection"),
    ("oidc-scopes", "incoming scope enforcement"),
    ("resource-url", "RFC 9728 protected resource metadata"),
    ("remote-auth", "outgoing OAuth authentication"),
    ("remote-auth-issuer", "outgoing OAuth authentication"),
    ("remote-auth-authorize-url", "outgoing OAuth authentication"),
    ("remote-auth-token-url", "outgoing OAuth authentication"),
    ("remote-auth-client-id", "outgoing OAuth authentication"),
    ("remote-auth-client-secret", "outgoing OAuth authentication"),
    ("remote-auth-client-secret-file", "outgoing OAuth authentication"),
    ("remote-auth-scopes", "outgoing OAuth authentication"),
    ("remote-auth-skip-browser", "outgoing OAuth authentication"),
    ("remote-auth-timeout", "outgoing OAuth authentication"),
    ("remote-auth-callback-port", "outgoing OAuth authentication"),
    ("remote-auth-resource", "outgoing OAuth authentication"),
    ("remote-auth-bearer-token", "outgoing bearer-token authentication"),
    ("remote-auth-bearer-token-file", "outgoing bearer-token authentication"),
];

impl Config {
    /// Validates a parsed command line against `env`.
    pub fn from_invocation(inv: &Invocation, env: &dyn Environment) -> Result<Config, ConfigError> {
        let Command::Proxy(args) = &inv.cli.command;
        refuse_unavailable(&inv.given, env)?;
        let debug = inv.cli.debug || env.var("TOOLHIVE_DEBUG").is_some_and(|v| is_truthy(&v));
        from_proxy_args(args, debug)
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
        debug,
    })
}

fn refuse_unavailable(given: &BTreeSet<String>, env: &dyn Environment) -> Result<(), ConfigError> {
    for (flag, feature) in UNAVAILABLE_FLAGS {
        if given.contains(*flag) {
            return Err(ConfigError::new(
                format!("--{flag}"),
                format!(
                    "{feature} is not available in this build of thv yet; remove the flag to run a plain transparent proxy"
                ),
            ));
        }
    }
    // ToolHive injects this token whenever the variable is set; ignoring it would send
    // unauthenticated requests the user believes are authenticated.
    if env.var("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN").is_some_and(|v| !v.trim().is_empty()) {
        return Err(ConfigError::new(
            "TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN",
            "outgoing bearer-token authentication is not available in this build of thv yet; unset the variable",
        ));
    }
    Ok(())
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
    let (scheme, rest) = raw.split_once("://").ok_or("is not an origin (scheme://host[:port])")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err("must use http or https"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.bytes().any(|b| b.is_ascii_control() || b == b' ')
    {
        return Err("must be scheme://host[:port] with no path, query or credentials");
    }
    let authority: Authority = rest.parse().map_err(|_| "has an invalid host or port")?;
    let host = authority.host().to_ascii_lowercase();
    Ok(match authority.port() {
        Some(p) if p.as_str() != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
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
        ] {
            let err = config(&["--target-uri", uri], &[]).unwrap_err();
            assert_eq!(err.flag, "--target-uri", "{uri}");
            assert!(err.to_string().contains(needle), "{uri}: {err}");
        }
    }

    #[test]
    fn later_features_are_refused_not_ignored() {
        let err = config(&["--target-uri", "http://x", "--oidc-issuer", "https://idp"], &[]).unwrap_err();
        assert_eq!(err.flag, "--oidc-issuer");
        let err = config(&["--target-uri", "http://x", "--remote-auth-callback-port", "9000"], &[]).unwrap_err();
        assert_eq!(err.flag, "--remote-auth-callback-port");
        let err = config(&["--target-uri", "http://x"], &[("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN", "t")]).unwrap_err();
        assert_eq!(err.flag, "TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN");
        assert!(!err.to_string().contains("t\""), "never echo the secret");
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
        for bad in ["a.example", "ftp://a", "http://u@a", "http://a/path", "http://a?x", "http://"] {
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
