//! Sending a request to the target and classifying what went wrong (pingora's idea: every
//! failure records which side caused it).
//!
//! Requests go over the [`pool`](super::pool) of HTTP/1.1 connections, through rustls for
//! an https target. Request bodies are already buffered (bounded by `--max-request-body`);
//! response bodies are streamed back untouched.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;

use super::deadline::Deadlines;
use super::policy;
use super::pool::{Pool, UpstreamBody};
use crate::config::Target;
use crate::telemetry::metrics::{Count, Metrics};

/// How many times a request is sent when reused connections turn out to be closed before
/// it could even start (the server closed them while idle). Never retried once started.
const MAX_ATTEMPTS: usize = 3;

/// Which side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The client that sent the request.
    Client,
    /// The MCP server behind the proxy.
    Upstream,
    /// The token exchange server (`--token-exchange-url`).
    Exchange,
}

/// Why a request could not be completed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// The request body is larger than `--max-request-body`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The client stopped sending its body (closed, reset).
    #[error("could not read the request body: {}", describe(&**.0))]
    BodyRead(#[source] Cause),
    /// The client sent its body too slowly.
    #[error("could not read the request body: no complete body within {0:?}")]
    BodySlow(Duration),
    /// The client's body broke its own framing (a malformed chunk size or chunk end).
    #[error("the request body is malformed: {}", describe(&**.0))]
    BodyMalformed(#[source] Cause),
    /// No connection to the target could be made.
    #[error("cannot connect to the MCP server: {}", describe(&**.0))]
    Connect(#[source] Cause),
    /// The target did not answer in time.
    #[error("the MCP server did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after it was made: said in the same words by both engines
    /// (the client reads `how`; `detail`, the engine's own wording, goes to the log).
    #[error("the MCP server {how}")]
    Broken { how: Broke, detail: String },
    /// The client's token could not be exchanged for the target (RFC 8693).
    #[error(transparent)]
    Exchange(crate::exchange::Failure),
}

/// What an error came from, kept for its source chain (the messages read it through
/// [`describe`], so both engines word the same failure the same way).
pub(crate) type Cause = Box<dyn StdError + Send + Sync>;

/// How a target's connection failed once made: one vocabulary for both engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Broke {
    ClosedEarly,
    Reset,
    InvalidResponse,
    /// A `101 Switching Protocols`: the client's `Upgrade` is never forwarded (hop-by-hop),
    /// so none is ever asked for, and relaying one would announce a tunnel that does not
    /// exist.
    Upgrade,
    Failed,
}

impl Broke {
    /// What an I/O failure on the target's connection was, whichever engine saw it.
    fn of_io(kind: Option<io::ErrorKind>) -> Broke {
        match kind {
            Some(io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => Broke::Reset,
            Some(io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe) => Broke::ClosedEarly,
            _ => Broke::Failed,
        }
    }
}

impl std::fmt::Display for Broke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broke::ClosedEarly => "closed the connection before a complete response",
            Broke::Reset => "reset the connection",
            Broke::InvalidResponse => "answered invalid HTTP",
            Broke::Upgrade => "answered 101 Switching Protocols, which nobody asked for",
            Broke::Failed => "connection failed",
        })
    }
}

impl ForwardError {
    /// A failure of the target's connection, classified from an I/O error.
    pub(crate) fn broken_io(err: &io::Error) -> ForwardError {
        ForwardError::Broken { how: Broke::of_io(Some(err.kind())), detail: describe(err) }
    }

    /// A failure of the target's connection as hyper's client reports it.
    fn broken_hyper(err: &hyper::Error) -> ForwardError {
        let how = if err.is_incomplete_message() {
            Broke::ClosedEarly
        } else if err.is_parse() || err.is_parse_status() {
            Broke::InvalidResponse
        } else {
            Broke::of_io(io_kind(err))
        };
        ForwardError::Broken { how, detail: describe(err) }
    }

    /// The engine's own wording of a failure, for the log: more than the client is told.
    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            ForwardError::Broken { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

impl ForwardError {
    /// Which side is to blame.
    pub(crate) fn side(&self) -> Side {
        match self {
            ForwardError::BodyTooLarge { .. }
            | ForwardError::BodyRead(_)
            | ForwardError::BodySlow(_)
            | ForwardError::BodyMalformed(_) => Side::Client,
            ForwardError::Connect(_) | ForwardError::Timeout(_) | ForwardError::Broken { .. } => Side::Upstream,
            ForwardError::Exchange(_) => Side::Exchange,
        }
    }
}

/// The client that talks to the target.
#[derive(Clone)]
pub(crate) struct Upstream {
    pool: Pool,
    host: HeaderValue,
    query: Option<String>,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
    /// Counts resends on another connection (telemetry on).
    pub(crate) metrics: Option<Arc<Metrics>>,
}

/// Failure to set up TLS for an https target.
#[derive(Debug, thiserror::Error)]
#[error("--target-uri: no trusted CA certificates found on this machine ({0}); install the ca-certificates package")]
pub struct TlsSetupError(io::Error);

impl Upstream {
    /// Builds the client for `target`.
    pub(crate) fn new(
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
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let mut origin = http::uri::Parts::default();
        origin.scheme = Some(target.scheme.clone());
        origin.authority = Some(target.authority.clone());
        origin.path_and_query = Some(PathAndQuery::from_static("/"));
        let origin = Uri::from_parts(origin).unwrap_or_else(|_| Uri::from_static("/"));
        Ok(Upstream {
            pool: Pool::new(connector, origin),
            // RFC 9112 §3.2: Host is the target's authority (default port omitted, as the
            // configured URI spells it), never what the client sent.
            host: HeaderValue::from_str(target.authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            query: target.query.clone(),
            connect_timeout,
            response_timeout,
            metrics: None,
        })
    }

    /// The request target for a request that came in for `path_and_query`, in origin-form
    /// (RFC 9112 §3.2.1): same path and query, with the target's own query (if any)
    /// prepended.
    pub(crate) fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
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
        Uri::from(pq)
    }

    /// The `Host` value sent: the target's authority.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends `req` (origin-form URI, `Host` from [`Upstream::host_header`]) and waits for
    /// the response headers, bounded by the response timeout.
    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
        deadlines: &Deadlines,
    ) -> Result<Response<UpstreamBody>, ForwardError> {
        let call = self.send_pooled(req);
        match self.response_timeout {
            Some(limit) => deadlines.within(limit, call).await.map_err(|_| ForwardError::Timeout(limit))?,
            None => call.await,
        }
    }

    /// As [`Upstream::send`], for a caller without a client connection's deadlines (the
    /// stdio bridge sends many requests at once, and a connection's [`Deadlines`] watches
    /// one wait at a time): the response timeout has a timer of its own.
    pub(crate) async fn send_timed(&self, req: Request<Full<Bytes>>) -> Result<Response<UpstreamBody>, ForwardError> {
        let call = self.send_pooled(req);
        match self.response_timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| ForwardError::Timeout(limit))?,
            None => call.await,
        }
    }

    async fn send_pooled(&self, mut req: Request<Full<Bytes>>) -> Result<Response<UpstreamBody>, ForwardError> {
        let mut attempt = 1;
        loop {
            let mut conn = self.pool.checkout().await.map_err(|e| self.classify_connect(e))?;
            let mut failed = match conn.sender.try_send_request(req).await {
                Ok(resp) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(ForwardError::Broken { how: Broke::Upgrade, detail: "101".to_owned() });
                }
                Ok(resp) => return Ok(resp.map(|body| self.pool.body(body, conn.sender))),
                Err(failed) => failed,
            };
            // hyper hands the request back only when not a byte of it was written.
            match failed.take_message() {
                Some(unsent) if policy::may_send_again(false, conn.reused) && attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    if let Some(metrics) = &self.metrics {
                        metrics.count(Count::UpstreamRetry);
                    }
                    req = unsent;
                }
                _ => return Err(ForwardError::broken_hyper(&failed.into_error())),
            }
        }
    }

    fn classify_connect(&self, err: Cause) -> ForwardError {
        match io_kind(&*err) {
            Some(io::ErrorKind::TimedOut) => ForwardError::Timeout(self.connect_timeout),
            _ => ForwardError::Connect(err),
        }
    }
}

/// What a failure while reading the client's body means: the client broke the body's
/// framing (hyper reports a bad chunk as invalid input or data), or the body stopped.
pub(crate) fn client_body_error(err: Cause) -> ForwardError {
    match io_kind(&*err) {
        Some(io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) => ForwardError::BodyMalformed(err),
        _ => ForwardError::BodyRead(err),
    }
}

/// A short, single-line reason: the io error kind where there is one (no addresses or
/// internals beyond what helps the user).
pub(crate) fn describe(err: &(dyn StdError + 'static)) -> String {
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(io::ErrorKind::ConnectionAborted) => "connection aborted".to_owned(),
        Some(io::ErrorKind::UnexpectedEof) => "connection closed before a complete response".to_owned(),
        _ => source_chain(err).last().map(ToString::to_string).unwrap_or_else(|| err.to_string()),
    }
}

/// The kind of the first I/O error in `err`'s source chain.
fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    source_chain(err).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind))
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
        assert_eq!(up.uri_for(Some(&pq("/mcp?x=1&y=%2F"))).to_string(), "/mcp?x=1&y=%2F");
        assert_eq!(up.uri_for(Some(&pq("/messages?sessionId=a"))).to_string(), "/messages?sessionId=a");
        assert_eq!(up.uri_for(None).to_string(), "/");
        assert_eq!(up.host_header(), "127.0.0.1:3000");
    }

    #[test]
    fn target_query_is_merged() {
        let up = upstream("https://api.example.com/mcp?key=k");
        let pq = |s: &'static str| PathAndQuery::from_static(s);
        assert_eq!(up.uri_for(Some(&pq("/mcp"))).to_string(), "/mcp?key=k");
        assert_eq!(up.uri_for(Some(&pq("/mcp?a=1"))).to_string(), "/mcp?key=k&a=1");
        assert_eq!(up.host_header(), "api.example.com");
    }
}
