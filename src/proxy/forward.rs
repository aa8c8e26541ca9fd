//! Sending a request to the target and classifying what went wrong (pingora's idea: every
//! failure records which side caused it).
//!
//! The upstream client is hyper's pooled client over rustls (HTTP/1.1, and HTTP/2 when an
//! https target offers it by ALPN). Request bodies are already buffered (bounded by
//! `--max-request-body`); response bodies are streamed back untouched.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Target;

/// How long an idle pooled connection to the target is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most idle connections kept to the target: enough for steady load, while a burst of
/// clients does not leave hundreds of idle upstream connections behind.
const POOL_MAX_IDLE: usize = 256;

/// Which side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client that sent the request.
    Client,
    /// The MCP server behind the proxy.
    Upstream,
}

/// Why a request could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The request body is larger than `--max-request-body`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The client stopped sending its body, or sent it too slowly.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// No connection to the target could be made.
    #[error("cannot connect to the MCP server: {0}")]
    Connect(String),
    /// The target did not answer in time.
    #[error("the MCP server did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after it was made (reset, closed early, garbage).
    #[error("the MCP server closed the connection or answered invalid HTTP: {0}")]
    Broken(String),
}

impl ForwardError {
    /// Which side is to blame.
    pub fn side(&self) -> Side {
        match self {
            ForwardError::BodyTooLarge { .. } | ForwardError::BodyRead(_) => Side::Client,
            ForwardError::Connect(_) | ForwardError::Timeout(_) | ForwardError::Broken(_) => Side::Upstream,
        }
    }
}

/// The pooled client that talks to the target.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: Scheme,
    authority: http::uri::Authority,
    query: Option<String>,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
}

/// Failure to set up TLS for an https target.
#[derive(Debug, thiserror::Error)]
#[error("--target-uri: no trusted CA certificates found on this machine ({0}); install the ca-certificates package")]
pub struct TlsSetupError(io::Error);

impl Upstream {
    /// Builds the client for `target`.
    pub fn new(
        target: &Target,
        connect_timeout: Duration,
        response_timeout: Option<Duration>,
    ) -> Result<Upstream, TlsSetupError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let tls = match HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(e) if target.scheme == Scheme::HTTPS => return Err(TlsSetupError(e)),
            // A plain-http target needs no trust store; TLS is never attempted.
            Err(_) => HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let connector = tls.https_or_http().enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            client,
            scheme: target.scheme.clone(),
            authority: target.authority.clone(),
            query: target.query.clone(),
            connect_timeout,
            response_timeout,
        })
    }

    /// The target URI for a request that came in for `path_and_query`: same path and
    /// query, on the target's origin, with the target's own query (if any) prepended.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        let pq = match (&self.query, path_and_query) {
            (None, Some(pq)) => pq.clone(),
            (None, None) => PathAndQuery::from_static("/"),
            (Some(tq), pq) => {
                let path = pq.map_or("/", PathAndQuery::path);
                let merged = match pq.and_then(PathAndQuery::query) {
                    Some(q) if !q.is_empty() => format!("{path}?{tq}&{q}"),
                    _ => format!("{path}?{tq}"),
                };
                PathAndQuery::try_from(merged).unwrap_or_else(|_| PathAndQuery::from_static("/"))
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
    }

    /// The `Host` value to send: the target's authority.
    pub fn host_header(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(self.authority.as_str())
            .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"))
    }

    /// Sends `req` and waits for the response headers (bounded by the response timeout).
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ForwardError> {
        let call = self.client.request(req);
        let result = match self.response_timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| ForwardError::Timeout(limit))?,
            None => call.await,
        };
        result.map_err(|e| self.classify(&e))
    }

    fn classify(&self, err: &hyper_util::client::legacy::Error) -> ForwardError {
        let io_kind = source_chain(err).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind));
        if err.is_connect() {
            return match io_kind {
                Some(io::ErrorKind::TimedOut) => ForwardError::Timeout(self.connect_timeout),
                _ => ForwardError::Connect(describe(err, io_kind)),
            };
        }
        ForwardError::Broken(describe(err, io_kind))
    }
}

/// A short, single-line reason: the io error kind where there is one (no addresses or
/// internals beyond what helps the user).
fn describe(err: &hyper_util::client::legacy::Error, io_kind: Option<io::ErrorKind>) -> String {
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(io::ErrorKind::ConnectionAborted) => "connection aborted".to_owned(),
        Some(io::ErrorKind::UnexpectedEof) => "connection closed before a complete response".to_owned(),
        _ => source_chain(err).last().map(ToString::to_string).unwrap_or_else(|| err.to_string()),
    }
}

fn source_chain<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(target: &str) -> Upstream {
        let inv = crate::cli::Invocation::parse_from(["thv", "proxy", "s", "--target-uri", target]).unwrap();
        let cfg = crate::config::Config::from_invocation(&inv, &crate::config::ProcessEnvironment).unwrap();
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Upstream::new(&cfg.target, Duration::from_secs(1), None).unwrap()
    }

    #[test]
    fn uris_keep_path_and_query() {
        let up = upstream("http://127.0.0.1:3000/mcp");
        let pq = |s: &'static str| PathAndQuery::from_static(s);
        assert_eq!(up.uri_for(Some(&pq("/mcp?x=1&y=%2F"))).to_string(), "http://127.0.0.1:3000/mcp?x=1&y=%2F");
        assert_eq!(
            up.uri_for(Some(&pq("/messages?sessionId=a"))).to_string(),
            "http://127.0.0.1:3000/messages?sessionId=a"
        );
        assert_eq!(up.uri_for(None).to_string(), "http://127.0.0.1:3000/");
        assert_eq!(up.host_header(), "127.0.0.1:3000");
    }

    #[test]
    fn target_query_is_merged() {
        let up = upstream("https://api.example.com/mcp?key=k");
        let pq = |s: &'static str| PathAndQuery::from_static(s);
        assert_eq!(up.uri_for(Some(&pq("/mcp"))).to_string(), "https://api.example.com/mcp?key=k");
        assert_eq!(up.uri_for(Some(&pq("/mcp?a=1"))).to_string(), "https://api.example.com/mcp?key=k&a=1");
    }
}
