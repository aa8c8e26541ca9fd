//! The target (`--target-uri`): the upstream MCP server, checked once at startup.

use std::fmt;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use url::Url;

use super::ConfigError;
use crate::net::is_local_host;

/// The upstream MCP server named by `--target-uri`.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub(crate) scheme: Scheme,
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

/// Parses and checks `--target-uri`.
pub(super) fn parse_target(raw: &str) -> Result<Target, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

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
}
