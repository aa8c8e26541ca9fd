//! Protection every local MCP server needs (MCP 2025-11-25 Transports §Security Warning):
//!
//! - **DNS rebinding.** On a loopback bind, a request whose `Host` is not one of the
//!   proxy's own names is refused: a web page on `evil.example` that rebinds its name to
//!   127.0.0.1 still sends `Host: evil.example`.
//! - **Origin.** A browser request (it carries `Origin`) is allowed only from the proxy's
//!   own origins or those added with `--allowed-origins`; others get 403 with a JSON-RPC
//!   error, as the specification requires. Requests without `Origin` (every non-browser
//!   client) pass.
//! - **CORS.** Preflights from allowed origins are answered here, so browser-based MCP
//!   clients (e.g. MCP Inspector) work; ToolHive forwards them upstream (ToolHive #4297).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};

use crate::net::{authority_host, bracket_ipv6, host_part, normalize_origin};
use crate::proxy::respond::{self, INVALID_REQUEST, Local};

/// Request headers a browser MCP client may send (Fetch §CORS protocol).
const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name";
/// Response headers a browser MCP client must be able to read.
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The Host and Origin policy, fixed at startup.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// Host names (lowercase, IPv6 in brackets) accepted in `Host`; `None` when the proxy
    /// does not listen on loopback and so cannot be rebound to.
    allowed_hosts: Option<Vec<String>>,
    /// Normalised origins allowed to call the proxy from a browser.
    allowed_origins: Vec<String>,
}

/// What a request's addressing says about it.
enum HostVerdict {
    Ours,
    /// Not a valid `Host` or request target: 400.
    Malformed(&'static str),
    /// Another host's, or ambiguous: 403.
    Foreign,
}

/// The outcome of the checks for a request that may proceed.
pub(crate) enum Verdict {
    /// Forward it; `Some(origin)` means CORS headers must be added to the response.
    Proceed(Option<HeaderValue>),
    /// Answer with this response and stop (boxed: refusals are rare, and the common
    /// `Proceed` stays small).
    Answer(Box<Local>),
}

impl Guard {
    /// `loopback` says whether the listen address is a loopback one; `listen_host` is the
    /// `--host` value; `port` the bound port; `extra_origins` the normalised
    /// `--allowed-origins`.
    pub(crate) fn new(loopback: bool, listen_host: &str, port: u16, extra_origins: &[String]) -> Guard {
        let listen_host = bracket_ipv6(&listen_host.to_ascii_lowercase());
        let mut own = vec![format!("http://{listen_host}:{port}")];
        if loopback {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                own.push(format!("http://{name}:{port}"));
            }
        }
        let mut allowed_origins: Vec<String> = own.into_iter().chain(extra_origins.iter().cloned()).collect();
        allowed_origins.sort();
        allowed_origins.dedup();
        let allowed_hosts = loopback.then(|| {
            let mut hosts =
                vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned(), listen_host.clone()];
            // A name someone put in --allowed-origins is a name they reach the proxy by.
            hosts.extend(
                extra_origins.iter().filter_map(|o| o.split_once("://").map(|(_, rest)| host_part(rest).to_owned())),
            );
            hosts.sort();
            hosts.dedup();
            hosts
        });
        Guard { allowed_hosts, allowed_origins }
    }

    /// The request's addressing, then the DNS-rebinding check: `Some(refusal)` for a
    /// malformed `Host` or request target (400, RFC 9112 §3.2, §3.2.3) or a foreign one (403).
    pub(crate) fn check_host<B>(&self, req: &Request<B>) -> Option<Local> {
        let message = match self.host_verdict(req) {
            HostVerdict::Ours => return None,
            HostVerdict::Malformed(why) => {
                return Some(respond::jsonrpc_error(StatusCode::BAD_REQUEST, INVALID_REQUEST, why, None));
            }
            HostVerdict::Foreign => "Host not allowed (DNS rebinding protection)",
        };
        Some(respond::jsonrpc_error(StatusCode::FORBIDDEN, INVALID_REQUEST, message, None))
    }

    /// The Origin check and CORS preflight.
    pub(crate) fn check_origin<B>(&self, req: &Request<B>) -> Verdict {
        let origin = match single_origin(req.headers()) {
            Ok(None) => return Verdict::Proceed(None),
            Ok(Some(origin)) if self.origin_allowed(origin) => origin.clone(),
            _ => {
                let refusal =
                    respond::jsonrpc_error(StatusCode::FORBIDDEN, INVALID_REQUEST, "Origin not allowed", None);
                return Verdict::Answer(Box::new(refusal));
            }
        };
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return Verdict::Answer(Box::new(preflight(&origin, req.headers())));
        }
        Verdict::Proceed(Some(origin))
    }

    /// The names (lowercase) a client may use in `Host`, when the check is on.
    pub(crate) fn allowed_hosts(&self) -> Option<&[String]> {
        self.allowed_hosts.as_deref()
    }

    fn host_verdict<B>(&self, req: &Request<B>) -> HostVerdict {
        let uri = req.uri();
        // Authority-form belongs to CONNECT alone (RFC 9112 §3.2.3), which is refused later
        // with its own answer; on any other method it names no resource.
        if uri.scheme().is_none() && uri.authority().is_some() && req.method() != Method::CONNECT {
            return HostVerdict::Malformed("request target in authority form is only for CONNECT");
        }
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let first = hosts.next();
        // Two Host fields are a request smuggling shape; a checker that reads only one of
        // them can be fooled.
        if hosts.next().is_some() {
            return HostVerdict::Foreign;
        }
        // Parsed whole, whatever the bind: the value is reflected into X-Forwarded-Host and
        // the OAuth metadata, so nothing past a valid authority may ride along with it.
        let host = match first.map(|h| h.to_str().ok().and_then(authority_host)) {
            Some(Some(host)) => Some(host),
            Some(None) => return HostVerdict::Malformed("Host header is not a valid host[:port] (RFC 9112 §3.2)"),
            None => None,
        };
        let Some(allowed) = &self.allowed_hosts else { return HostVerdict::Ours };
        let is_ours = |host: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(host));
        // In absolute form the target's authority is the host (RFC 9112 §3.2.2): check it
        // as well, or `GET http://evil.example/ HTTP/1.1` with `Host: localhost` would pass.
        if let Some(authority) = uri.authority()
            && !authority_host(authority.as_str()).is_some_and(is_ours)
        {
            return HostVerdict::Foreign;
        }
        match host {
            Some(h) if is_ours(h) => HostVerdict::Ours,
            None if uri.authority().is_some() => HostVerdict::Ours,
            _ => HostVerdict::Foreign,
        }
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else { return false };
        normalize_origin(origin).is_ok_and(|o| self.allowed_origins.contains(&o))
    }
}

/// Adds the CORS response headers for an allowed browser origin.
pub(crate) fn add_cors(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a CORS preflight from an allowed origin. Any `Mcp-Param-*` header the
/// browser asks for is allowed too (MCP 2026-07-28 §Request Metadata).
fn preflight(origin: &HeaderValue, req_headers: &HeaderMap) -> Local {
    let mut resp = respond::empty(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    let params: Vec<&str> = req_headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| name.len() > 10 && name[..10].eq_ignore_ascii_case("mcp-param-"))
        .collect();
    let allow = if params.is_empty() {
        HeaderValue::from_static(ALLOW_HEADERS)
    } else {
        HeaderValue::try_from(format!("{ALLOW_HEADERS}, {}", params.join(", ")))
            .unwrap_or(HeaderValue::from_static(ALLOW_HEADERS))
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    resp
}

/// The request's `Origin`: `Ok(None)` if absent, `Err` if sent more than once (a browser
/// never does; it is an attempt to confuse a checker that reads only the first).
fn single_origin(headers: &HeaderMap) -> Result<Option<&HeaderValue>, ()> {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/mcp");
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    /// The checks as the request path applies them: the Host check, then the Origin check
    /// and CORS preflight.
    fn check<B>(g: &Guard, req: &Request<B>) -> Verdict {
        match g.check_host(req) {
            Some(refusal) => Verdict::Answer(Box::new(refusal)),
            None => g.check_origin(req),
        }
    }

    fn status(v: Verdict) -> Option<StatusCode> {
        match v {
            Verdict::Proceed(_) => None,
            Verdict::Answer(r) => Some(r.status()),
        }
    }

    #[test]
    fn loopback_bind_refuses_foreign_hosts() {
        let g = Guard::new(true, "127.0.0.1", 8080, &[]);
        for ok in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST", "127.0.0.1"] {
            assert_eq!(status(check(&g, &req(&[("host", ok)]))), None, "{ok}");
        }
        for bad in ["evil.example:8080", "evil.example", "127.0.0.1.nip.io:8080", "localhost.evil:8080"] {
            assert_eq!(status(check(&g, &req(&[("host", bad)]))), Some(StatusCode::FORBIDDEN), "{bad}");
        }
        assert_eq!(status(check(&g, &req(&[]))), Some(StatusCode::FORBIDDEN), "no Host at all");
        assert_eq!(status(check(&g, &req(&[("host", "")]))), Some(StatusCode::BAD_REQUEST), "an empty Host");
        let two = req(&[("host", "localhost:8080"), ("host", "evil.example")]);
        assert_eq!(status(check(&g, &two)), Some(StatusCode::FORBIDDEN), "duplicate Host");
        let absolute =
            Request::builder().uri("http://evil.example/mcp").header("host", "localhost:8080").body(()).unwrap();
        assert_eq!(
            status(check(&g, &absolute)),
            Some(StatusCode::FORBIDDEN),
            "absolute-form target names another host"
        );
        let absolute_ok =
            Request::builder().uri("http://127.0.0.1:8080/mcp").header("host", "127.0.0.1:8080").body(()).unwrap();
        assert_eq!(status(check(&g, &absolute_ok)), None);
    }

    #[test]
    fn public_bind_skips_the_host_check_but_not_origins() {
        let g = Guard::new(false, "0.0.0.0", 8080, &["https://app.example".into()]);
        assert_eq!(status(check(&g, &req(&[("host", "mcp.example.com")]))), None);
        assert_eq!(status(check(&g, &req(&[("host", "x"), ("origin", "https://app.example")]))), None);
        assert_eq!(
            status(check(&g, &req(&[("host", "x"), ("origin", "https://evil.example")]))),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn origins() {
        let g = Guard::new(true, "127.0.0.1", 8080, &["http://localhost:6274".into()]);
        let h = ("host", "localhost:8080");
        for ok in [
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "HTTP://LOCALHOST:8080",
            "http://[::1]:8080",
            "http://localhost:6274",
        ] {
            assert_eq!(status(check(&g, &req(&[h, ("origin", ok)]))), None, "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost:8081",
            "https://localhost:8080",
            "null",
            "http://u@localhost:8080",
            "http://localhost:8080\u{1}",
        ] {
            let Ok(value) = HeaderValue::from_str(bad) else { continue };
            let mut r = req(&[h]);
            r.headers_mut().insert(header::ORIGIN, value);
            assert_eq!(status(check(&g, &r)), Some(StatusCode::FORBIDDEN), "{bad}");
        }
        let two = req(&[h, ("origin", "http://localhost:8080"), ("origin", "http://localhost:8080")]);
        assert_eq!(status(check(&g, &two)), Some(StatusCode::FORBIDDEN), "two Origin headers");
        // The extra origin's host is also an accepted Host.
        assert_eq!(status(check(&g, &req(&[("host", "localhost:6274")]))), None);
    }

    #[test]
    fn preflight_is_answered_locally() {
        let g = Guard::new(true, "127.0.0.1", 8080, &[]);
        let mut r = req(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://localhost:8080"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, mcp-session-id, Mcp-Param-Region"),
        ]);
        *r.method_mut() = Method::OPTIONS;
        let Verdict::Answer(resp) = check(&g, &r) else { panic!("preflight must be answered") };
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], "http://localhost:8080");
        let allow = h["access-control-allow-headers"].to_str().unwrap();
        for name in [
            "Authorization",
            "Content-Type",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Last-Event-ID",
            "Mcp-Param-Region",
        ] {
            assert!(allow.contains(name), "{allow} lacks {name}");
        }
        assert!(h["access-control-expose-headers"].to_str().unwrap().contains("WWW-Authenticate"));
    }

    #[test]
    fn malformed_hosts_and_authority_form_are_bad_requests() {
        let g = Guard::new(true, "127.0.0.1", 8080, &[]);
        for bad in ["[::1]@evil.example", "[::1]evil", "[::1].evil.example:443", "[::1]:8080:80"] {
            assert_eq!(status(check(&g, &req(&[("host", bad)]))), Some(StatusCode::BAD_REQUEST), "{bad}");
        }
        // Parsed on a public bind too, where no name is refused.
        let public = Guard::new(false, "0.0.0.0", 8080, &[]);
        assert_eq!(status(check(&public, &req(&[("host", "[::1]@evil.example")]))), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(check(&public, &req(&[("host", "mcp.example.com:443")]))), None);
        let authority_form = Request::builder().method("POST").uri("127.0.0.1:8080").header("host", "127.0.0.1:8080");
        assert_eq!(status(check(&g, &authority_form.body(()).unwrap())), Some(StatusCode::BAD_REQUEST));
    }
}
