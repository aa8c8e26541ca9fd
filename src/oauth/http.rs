//! The control-plane HTTP client: discovery documents, JWKS, token introspection.
//!
//! Every fetch is bounded in time and size, checks status and content type, follows no
//! redirects (a redirect to another host is how SSRF and issuer confusion start;
//! MCP Security Best Practices §SSRF), and is only ever sent to URLs that passed
//! [`UrlPolicy`]: https, or http on a loopback address, unless the operator opted in.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use url::Url;

use crate::net::{ip_literal, is_loopback_host, is_public};

/// Largest metadata, JWKS or introspection answer accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a control-plane request failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be reached or did not answer in time. Worth retrying.
    #[error("cannot reach {url}: {}", short_reason(source))]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered, but not with what was asked for.
    #[error("{url} answered {what}")]
    BadAnswer { url: String, what: String },
}

impl FetchError {
    /// Whether waiting and trying again may help (the server is not up yet).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, FetchError::Unreachable { .. })
    }
}

/// Which URLs the proxy may fetch from. Operators configure the IdP, so for URLs they
/// give the policy is theirs: https always; plain http and private addresses only on
/// loopback or with explicit consent. URLs *named by a remote server* (metadata of a
/// public MCP server) are untrusted: internal addresses are refused outright, so a
/// server cannot make the proxy probe the user's network (MCP Security Best Practices
/// §SSRF; RFC 9728 §7.7).
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlPolicy {
    /// `--oidc-allow-insecure`: allow http:// and private-network hosts.
    pub allow_insecure: bool,
    /// Refuse loopback, private and link-local hosts (server-named URLs).
    pub block_internal: bool,
}

/// Why [`UrlPolicy`] refused a URL. It states the problem only: which setting would
/// allow the URL is the configuration layer's to say (see [`UrlRefusal::consent_allows`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("{0} has no host")]
    NoHost(String),
    /// A server-named URL pointing at loopback or a private network.
    #[error("{0} points into a private network, which a remote server may not name")]
    Internal(String),
    #[error("{0} uses plain http")]
    PlainHttp(String),
    #[error("{url} has scheme {scheme:?}; use https")]
    Scheme { url: String, scheme: String },
    #[error("{0} is on a private network address")]
    PrivateAddress(String),
    #[error("{0} carries credentials in the URL")]
    Credentials(String),
}

impl UrlRefusal {
    /// Whether the operator's consent (`allow_insecure`) would allow the URL.
    pub(crate) fn consent_allows(&self) -> bool {
        matches!(self, UrlRefusal::PlainHttp(_) | UrlRefusal::PrivateAddress(_))
    }
}

impl UrlPolicy {
    /// Checks `url`.
    pub fn check(&self, url: &Url) -> Result<(), UrlRefusal> {
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(UrlRefusal::NoHost(redact(url)));
        }
        let loopback = is_loopback_host(host);
        // Any address literal that is not public (including IPv4-mapped IPv6 such as
        // [::ffff:169.254.169.254], which no resolver ever sees) is internal.
        let internal_literal = ip_literal(host).is_some_and(|ip| !is_public(ip));
        if self.block_internal && (loopback || internal_literal) {
            return Err(UrlRefusal::Internal(redact(url)));
        }
        match url.scheme() {
            "https" => {}
            "http" if loopback || self.allow_insecure => {}
            "http" => return Err(UrlRefusal::PlainHttp(redact(url))),
            other => return Err(UrlRefusal::Scheme { url: redact(url), scheme: other.to_owned() }),
        }
        if !loopback && !self.allow_insecure && is_private_ip_literal(host) {
            return Err(UrlRefusal::PrivateAddress(redact(url)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefusal::Credentials(redact(url)));
        }
        Ok(())
    }
}

/// `url` without userinfo, query or fragment, for messages.
pub(crate) fn redact(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

fn is_private_ip_literal(host: &str) -> bool {
    ip_literal(host).is_some_and(|ip| !ip.is_loopback() && !is_public(ip))
}

/// A bounded JSON answer.
pub(crate) struct JsonAnswer {
    /// HTTP status.
    pub(crate) status: u16,
    /// The parsed body (`Null` for an empty or non-JSON body of an error answer).
    pub(crate) body: serde_json::Value,
    /// `Cache-Control: max-age`, if the server sent one.
    pub(crate) max_age: Option<Duration>,
    /// A `DPoP-Nonce` header, if the server sent one (RFC 9449 §8).
    pub(crate) dpop_nonce: Option<String>,
}

/// Status and headers of a probe.
pub(crate) struct ProbeAnswer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
}

/// The control-plane client.
#[derive(Clone, Debug)]
pub struct ControlClient {
    client: reqwest::Client,
}

/// Why the control-plane client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("is not a PEM certificate bundle ({0})")]
    NotPem(#[source] reqwest::Error),
    #[error("contains no certificates")]
    NoCertificates,
    #[error("cannot set up TLS ({0})")]
    Tls(#[source] reqwest::Error),
}

impl ControlClient {
    /// Builds the client; `extra_roots` is a PEM bundle of additional trusted CAs.
    pub fn new(extra_roots: Option<&[u8]>) -> Result<ControlClient, ClientSetupError> {
        Self::build(extra_roots, false)
    }

    /// A client for URLs named by a remote server: names that resolve to loopback,
    /// private or link-local addresses are refused at connect time, which also defeats
    /// DNS names pointing inside (RFC 9728 §7.7).
    pub(crate) fn untrusted() -> Result<ControlClient, ClientSetupError> {
        Self::build(None, true)
    }

    fn build(extra_roots: Option<&[u8]>, block_internal: bool) -> Result<ControlClient, ClientSetupError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("thv/", env!("CARGO_PKG_VERSION")))
            // The proxy environment variables are for the data path's users, not the
            // IdP: a stray HTTPS_PROXY must not see introspected tokens.
            .no_proxy();
        if let Some(pem) = extra_roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(ClientSetupError::NotPem)?;
            if certs.is_empty() {
                return Err(ClientSetupError::NoCertificates);
            }
            builder = builder.tls_certs_merge(certs);
        }
        if block_internal {
            builder = builder.dns_resolver(std::sync::Arc::new(PublicOnlyResolver));
        }
        let client = builder.build().map_err(ClientSetupError::Tls)?;
        Ok(ControlClient { client })
    }

    /// GETs a JSON document that must answer 200 with a JSON content type.
    pub(crate) async fn get_json(&self, url: &Url) -> Result<JsonAnswer, FetchError> {
        let req = self.client.get(url.clone()).header(ACCEPT, "application/json");
        let answer = self.send(url, req).await?;
        if answer.status != 200 {
            return Err(FetchError::BadAnswer {
                url: redact(url),
                what: format!("HTTP {} instead of 200", answer.status),
            });
        }
        Ok(answer)
    }

    /// POSTs a form with HTTP Basic client authentication (RFC 6749 §2.3.1: id and secret
    /// are form-encoded before base64) and returns the JSON answer whatever its status.
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        client_auth: Option<(&str, &str)>,
    ) -> Result<JsonAnswer, FetchError> {
        self.post_form_dpop(url, form, client_auth, None).await
    }

    /// [`ControlClient::post_form`] with a `DPoP` proof header (RFC 9449 §5).
    pub(crate) async fn post_form_dpop(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        client_auth: Option<(&str, &str)>,
        proof: Option<&str>,
    ) -> Result<JsonAnswer, FetchError> {
        let mut req = self.client.post(url.clone()).header(ACCEPT, "application/json").form(form);
        if let Some(proof) = proof {
            req = req.header(crate::oauth::dpop::DPOP_HEADER, proof);
        }
        if let Some((id, secret)) = client_auth {
            let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
            let secret: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            req = req.basic_auth(id, Some(secret));
        }
        self.send(url, req).await
    }

    /// POSTs a JSON document and returns the JSON answer whatever its status.
    pub(crate) async fn post_json(&self, url: &Url, body: &serde_json::Value) -> Result<JsonAnswer, FetchError> {
        let req = self.client.post(url.clone()).header(ACCEPT, "application/json").json(body);
        self.send(url, req).await
    }

    /// POSTs an MCP message to see how the server answers (status and headers only; the
    /// body is not read). The message's method also goes in `Mcp-Method`: MCP 2026-07-28
    /// requires it on every POST (and a server may refuse a request without it), while
    /// older servers ignore a header they do not know.
    pub(crate) async fn probe_post(&self, url: &Url, body: &serde_json::Value) -> Result<ProbeAnswer, FetchError> {
        let mut req = self.client.post(url.clone()).header(ACCEPT, "application/json, text/event-stream");
        if let Some(method) = body.get("method").and_then(serde_json::Value::as_str) {
            req = req.header("mcp-method", method);
        }
        let resp = req.json(body).send().await.map_err(|e| FetchError::Unreachable { url: redact(url), source: e })?;
        Ok(ProbeAnswer { status: resp.status().as_u16(), headers: resp.headers().clone() })
    }

    async fn send(&self, url: &Url, req: reqwest::RequestBuilder) -> Result<JsonAnswer, FetchError> {
        let mut resp = req.send().await.map_err(|e| FetchError::Unreachable { url: redact(url), source: e })?;
        let status = resp.status().as_u16();
        let max_age =
            resp.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(parse_max_age);
        let dpop_nonce =
            resp.headers().get(crate::oauth::dpop::NONCE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let json_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .is_some_and(|ct| ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json")));
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| FetchError::Unreachable { url: redact(url), source: e })?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::BadAnswer {
                    url: redact(url),
                    what: format!("more than {MAX_DOCUMENT_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let parsed = if json_type { serde_json::from_slice(&body).ok() } else { None };
        match parsed {
            Some(body) => Ok(JsonAnswer { status, body, max_age, dpop_nonce }),
            None if (200..300).contains(&status) => Err(FetchError::BadAnswer {
                url: redact(url),
                what: if json_type {
                    "invalid JSON".to_owned()
                } else {
                    "a document that is not application/json".to_owned()
                },
            }),
            None => Ok(JsonAnswer { status, body: serde_json::Value::Null, max_age, dpop_nonce }),
        }
    }
}

/// Resolves names and keeps only public addresses.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves only to private or loopback addresses").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn short_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// `max-age` from a `Cache-Control` value (RFC 9111 §5.2.2.1).
pub(crate) fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let (name, v) = d.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok().map(Duration::from_secs))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        let strict = UrlPolicy::default();
        let lax = UrlPolicy { allow_insecure: true, block_internal: false };
        let remote = UrlPolicy { allow_insecure: false, block_internal: true };
        let ok = |p: UrlPolicy, u: &str| p.check(&Url::parse(u).unwrap()).is_ok();
        assert!(ok(strict, "https://idp.example/"));
        assert!(ok(strict, "http://127.0.0.1:8080/"));
        assert!(ok(strict, "http://localhost:8080/"));
        assert!(ok(strict, "http://[::1]:8080/"));
        assert!(!ok(strict, "http://idp.example/"));
        assert!(!ok(strict, "https://10.0.0.5/"));
        assert!(!ok(strict, "https://169.254.169.254/"));
        assert!(!ok(strict, "https://user:pw@idp.example/"));
        assert!(!ok(strict, "ftp://idp.example/"));
        assert!(ok(lax, "http://idp.example/"));
        assert!(ok(remote, "https://as.example/"));
        for internal in [
            "http://127.0.0.1:8080/",
            "https://localhost/",
            "https://10.0.0.1/",
            "https://[fe80::1]/",
            "https://169.254.169.254/",
        ] {
            assert!(!ok(remote, internal), "{internal}");
        }
        assert!(ok(lax, "https://10.0.0.5/"));
    }

    /// Discovery never follows a redirect: a 302 to another host is an answer, not a hop.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
        });
        let client = ControlClient::new(None).unwrap();
        let url = Url::parse(&format!("http://{addr}/.well-known/openid-configuration")).unwrap();
        let err = client.get_json(&url).await.err().expect("a redirect is not a document");
        assert!(err.to_string().contains("302"), "{err}");
    }

    /// The probe names its method in `Mcp-Method` as well as in the body (MCP 2026-07-28
    /// servers check that the two agree).
    #[tokio::test]
    async fn the_probe_names_its_method_in_mcp_method() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The head and the small body: read until the body's closing brace (bounded).
            for _ in 0..64 {
                let n = s.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                if n == 0 || request.ends_with(b"}") {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n").await;
            String::from_utf8_lossy(&request).to_lowercase()
        });
        let client = ControlClient::new(None).unwrap();
        let url = Url::parse(&format!("http://{addr}/mcp")).unwrap();
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
        let answer = client.probe_post(&url, &body).await.unwrap();
        assert_eq!(answer.status, 401);
        let request = tokio::time::timeout(Duration::from_secs(10), seen).await.unwrap().unwrap();
        assert!(request.contains("\r\nmcp-method: initialize\r\n"), "{request}");
    }

    #[test]
    fn max_age() {
        assert_eq!(parse_max_age("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_max_age("no-store"), None);
        assert_eq!(parse_max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
    }
}
