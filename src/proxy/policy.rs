//! The one request policy that both engines call — the own HTTP/1.1 path ([`super::h1`])
//! and hyper's ([`super`]) — at the same three points:
//!
//! 1. **a request head is accepted**: the Host and Origin guard ([`super::guard`]), the
//!    local routes ([`local_route`]), incoming authentication, the request's header rules
//!    ([`super::headers`], with the operator's own fields, [`Policy::forward`]) and outgoing
//!    credentials, among them the incoming token exchanged for the target's
//!    ([`Policy::exchange`], RFC 8693);
//! 2. **a response head comes from the target**: its header rules, event-stream handling
//!    ([`Policy::event_stream`]), the hint on the first OAuth challenge
//!    ([`Policy::upstream_answered`]), and whether a failed send may be repeated
//!    ([`may_send_again`]);
//! 3. **an exchange is finished**: one [`Record`] per request, which feeds the `--debug`
//!    line today and is where metrics and audit will read from.
//!
//! Failures become answers in one place, [`Policy::rescue`] (with [`super::respond`]).
//! The engines move bytes and keep no rule of their own: where an engine needs a fact
//! (the client's authority, which stop ends a stream), it asks [`Policy`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::StatusCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::forward::{ForwardError, Side};
use super::guard::Guard;
use super::headers::ForwardHeaders;
use super::respond::{self, INVALID_REQUEST, Local, REQUEST_REFUSED, UPSTREAM_UNAVAILABLE};
use super::{Inbound, StreamStops};
use crate::config::Config;
use crate::exchange::Failure;
use crate::inbound::bearer::bearer_token_of;
use crate::inbound::metadata::WELL_KNOWN;
use crate::inbound::{Identity, LastToken};
use crate::mcp::jsonrpc;
use crate::mcp::sse::EndpointRewrite;
use crate::oauth::challenge::BearerError;
use crate::policy::McpPolicy;
use crate::telemetry::metrics::Count;
use crate::telemetry::{Observation, Telemetry};

/// How long a client may take to send a request body once its headers arrived. Slower
/// uploads tie up a buffer; MCP messages are small.
pub(crate) const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The fixed facts every rule is judged against, made once at startup and shared by both
/// engines (the own engine's explicit context: it sees nothing else of the proxy).
pub(crate) struct Policy {
    pub(crate) guard: Guard,
    /// `--max-request-body`.
    pub(crate) max_body: usize,
    /// `--max-header-size`.
    pub(crate) max_head: usize,
    /// Whether the target may learn about the client (`X-Forwarded-*`).
    pub(crate) describe_client: bool,
    /// Header fields the operator configured for the target (`--remote-forward-headers*`).
    pub(crate) forward: Option<ForwardHeaders>,
    /// Origins of the target as a legacy SSE server might spell them.
    upstream_origins: Vec<String>,
    stops: StreamStops,
    /// Incoming authentication, when configured.
    pub(crate) inbound: Option<Inbound>,
    /// The target as the user reads it, for messages.
    pub(crate) target_display: String,
    /// `host:port` the proxy listens on, for requests without a usable `Host`.
    local_authority: String,
    /// Whether the remote-auth hint was logged.
    auth_hint_given: AtomicBool,
    /// MCP-aware policy (authorization, tool filtering, audit), when configured.
    pub(crate) mcp: Option<McpPolicy>,
    /// Metrics and traces, when configured.
    pub(crate) telemetry: Option<Arc<Telemetry>>,
}

/// A route the proxy answers itself, never forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalRoute {
    /// `/.well-known/oauth-protected-resource[/…]` (RFC 9728 §3).
    ProtectedResourceMetadata,
    /// `/health`.
    Health,
}

/// The proxy's local route for a request path (without its query), if any.
pub(crate) fn local_route(path: &str) -> Option<LocalRoute> {
    if path.starts_with(WELL_KNOWN) {
        Some(LocalRoute::ProtectedResourceMetadata)
    } else if path == "/health" {
        Some(LocalRoute::Health)
    } else {
        None
    }
}

/// Whether a request head is larger than `--max-header-size`: the own engine counts its
/// bytes as they arrive; hyper's reads in chunks and lets heads of up to about twice its
/// buffer limit through, so its requests are measured here, field by field as they were
/// sent (`name: value` and a line end each, the request line, the empty line).
pub(crate) fn head_too_large<B>(req: &http::Request<B>, max: usize) -> bool {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len() + uri.scheme_str().map_or(0, |s| s.len() + 3));
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + fields + 2 > max
}

/// Whether a request whose send failed may be sent again on another connection: only
/// when not a byte of it was written, so the target cannot have acted on it. A request
/// that was written is never repeated, whatever its method: the target may have acted
/// (RFC 9110 §9.2.2 allows repeating idempotent ones, but MCP's GET opens a stream and its
/// DELETE ends a session, and a client can rely on seeing each request at most once).
pub(crate) fn may_send_again(written: bool, reused: bool) -> bool {
    !written && reused
}

/// Whether a `Content-Type` value is `text/event-stream`: its media type, without
/// parameters or surrounding whitespace (RFC 9110 §8.3.1), in any case.
pub(crate) fn is_event_stream(content_type: &[u8]) -> bool {
    // Every response's content type is asked this: its length is checked first, so the
    // common `application/json` is told apart without scanning it.
    let Some((media, rest)) = content_type.trim_ascii_start().split_at_checked(17) else { return false };
    media.eq_ignore_ascii_case(b"text/event-stream") && matches!(rest.trim_ascii_start().first(), None | Some(b';'))
}

/// Whether an event stream answering a GET (`is_get`) or another method is a standalone
/// stream: it never ends on its own, may be a legacy HTTP+SSE stream (its `endpoint` event
/// rewritten), loses any `Content-Length`, and ends as soon as shutdown starts. Only a
/// GET's is (MCP Streamable HTTP: a POST's stream ends with its response).
pub(crate) fn standalone_stream(is_get: bool) -> bool {
    is_get
}

/// The field that tells nginx-style intermediaries in front of the proxy not to buffer an
/// event stream (MCP 2026-07-28 Transports §Receiving Messages), added when absent.
pub(crate) const NO_BUFFERING: (&str, &str) = ("x-accel-buffering", "no");

/// What an event stream from the target gets on its way to the client.
pub(crate) struct EventStream {
    /// Ends the stream cleanly at shutdown: standalone GET streams when shutdown starts
    /// (they never end on their own), answers to POSTs when the grace period is over.
    pub(crate) stop: CancellationToken,
    /// The legacy HTTP+SSE `endpoint` event names the proxy instead of the target (only a
    /// GET stream can be a legacy stream).
    pub(crate) rewrite: Option<EndpointRewrite>,
    /// A standalone GET stream never ends on its own: any `Content-Length` goes.
    pub(crate) drop_length: bool,
}

/// One finished exchange, as both engines report it.
pub(crate) struct Record<'a> {
    pub(crate) method: &'a str,
    /// The path without its query (a query may carry secrets); empty when the request
    /// line is not logged (nothing else reads it).
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) started: Instant,
    /// Response body bytes passed to the client (payload, without chunk framing).
    pub(crate) bytes: u64,
}

impl Policy {
    /// The policy for `config`, now that the proxy listens on `port`.
    pub(crate) fn new(
        config: &Config,
        port: u16,
        stops: StreamStops,
        inbound: Option<Inbound>,
        mcp: Option<McpPolicy>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Policy {
        let listen = config.listen.ip();
        Policy {
            guard: Guard::new(listen.is_loopback(), &config.listen_host, port, &config.extra_origins),
            max_body: config.max_request_body,
            max_head: config.max_header_size,
            describe_client: config.target.is_local,
            forward: config.forward.clone(),
            upstream_origins: upstream_origins(config),
            stops,
            inbound,
            target_display: config.target.display(),
            local_authority: if listen.is_ipv6() { format!("[{listen}]:{port}") } else { format!("{listen}:{port}") },
            auth_hint_given: AtomicBool::new(false),
            mcp,
            telemetry,
        }
    }

    /// The `host[:port]` the client used (a `Host` the guard has parsed), or the listen
    /// address: for the OAuth metadata and challenges that name the proxy.
    pub(crate) fn client_authority<'a>(&'a self, host: Option<&'a str>) -> &'a str {
        host.filter(|h| crate::net::authority_host(h).is_some()).unwrap_or(&self.local_authority)
    }

    /// Incoming authentication of a request by its `Authorization` values, when
    /// configured: the client's identity (`None` without incoming auth), or `Err`, the
    /// answer (401/403/400/503, RFC 6750 §3, RFC 9728 §5.1). On a connection that
    /// remembers its `last` accepted token, the same token again costs one comparison.
    pub(crate) async fn authenticate<'a>(
        &self,
        authorization: impl Iterator<Item = &'a [u8]>,
        last: Option<&mut Option<LastToken>>,
        client_host: Option<&[u8]>,
    ) -> Result<Option<Arc<Identity>>, Local> {
        let Some(inbound) = &self.inbound else { return Ok(None) };
        let verdict = match last {
            Some(last) => inbound.authenticator.authenticate_on_connection(authorization, last).await,
            None => inbound.authenticator.authenticate(authorization).await,
        };
        match verdict {
            Ok(identity) => {
                debug!(subject = %identity.subject, "authenticated");
                if let Some(t) = &self.telemetry {
                    t.metrics().count(Count::InboundAccepted);
                }
                Ok(Some(identity))
            }
            Err(rejection) => {
                if let Some(t) = &self.telemetry {
                    t.metrics().count(Count::InboundRefused(rejection.metric_reason()));
                }
                // Read only now: an accepted request never needs it.
                let host = client_host.and_then(|h| std::str::from_utf8(h).ok());
                Err(respond::auth_rejection(rejection, &inbound.resource, self.client_authority(host)))
            }
        }
    }

    /// Whether the client's `Authorization` is the proxy's own (incoming auth is on): it is
    /// consumed here and never forwarded (MCP Security Best Practices §Token Passthrough).
    pub(crate) fn consumes_authorization(&self) -> bool {
        self.inbound.is_some()
    }

    /// Whether validated tokens are exchanged for the target (`--token-exchange-*`): the
    /// one check an engine makes when they are not.
    pub(crate) fn exchanges(&self) -> bool {
        self.inbound.as_ref().is_some_and(|i| i.exchange.is_some())
    }

    /// The field the exchanged token goes in, when tokens are exchanged and it is not
    /// `Authorization`: a client's own field of that name is not forwarded.
    pub(crate) fn exchange_field(&self) -> Option<&http::HeaderName> {
        let header = self.inbound.as_ref()?.exchange.as_ref()?.header();
        (header != http::header::AUTHORIZATION).then_some(header)
    }

    /// Step 5, continued: the `authorization` value `who` was authenticated by, exchanged
    /// for the target's token (RFC 8693): the field and value the target gets instead, or
    /// the answer (401 when the exchange server refused the token, with a challenge as
    /// for any refused token; 503 with `Retry-After` when it could not be used), a
    /// JSON-RPC error echoing `body`'s id, made by [`Self::rescue`]; a refusal is audited
    /// as incoming authentication's are, with the request's `head` (made only then).
    pub(crate) async fn exchange<'h>(
        &self,
        authorization: &[u8],
        who: Option<&Identity>,
        body: &[u8],
        client_host: Option<&[u8]>,
        head: impl FnOnce() -> crate::policy::Head<'h>,
    ) -> Result<(&http::HeaderName, http::HeaderValue), Local> {
        // Boxed: the exchange's HTTP call is a large future, which every request of both
        // engines would otherwise carry (and move) whether or not tokens are exchanged.
        let answer = Box::pin(self.exchange_token(authorization, who, body, client_host)).await;
        if let (Err(answer), Some(mcp)) = (&answer, &self.mcp) {
            mcp.refused(&head(), answer.status().as_u16());
        }
        answer
    }

    async fn exchange_token(
        &self,
        authorization: &[u8],
        who: Option<&Identity>,
        body: &[u8],
        client_host: Option<&[u8]>,
    ) -> Result<(&http::HeaderName, http::HeaderValue), Local> {
        let (Some(inbound), Some(who)) = (&self.inbound, who) else {
            return Err(self.rescue(&ForwardError::Exchange(Failure::Refused("no identity".to_owned())), body, None));
        };
        let Some(exchanger) = &inbound.exchange else {
            return Err(self.rescue(
                &ForwardError::Exchange(Failure::Unavailable("not configured".to_owned())),
                body,
                None,
            ));
        };
        // Authenticated, so exactly one well-formed bearer value.
        let exchanged = match bearer_token_of(std::iter::once(authorization)) {
            Ok(subject) => exchanger.exchanged(subject, who).await,
            Err(_) => Err(Failure::Refused("malformed".to_owned())),
        };
        match exchanged {
            Ok(value) => Ok((exchanger.header(), value)),
            Err(failure) => {
                let mut resp = self.rescue(&ForwardError::Exchange(failure), body, None);
                if resp.status() == StatusCode::UNAUTHORIZED {
                    // RFC 9110 §15.5.2: a 401 carries a challenge; this one is the proxy's
                    // own (RFC 6750 §3.1 invalid_token), pointing at its metadata.
                    let host = client_host.and_then(|h| std::str::from_utf8(h).ok());
                    let description = "the token cannot be exchanged for the MCP server";
                    let challenge = inbound.resource.challenge(
                        self.client_authority(host),
                        Some(BearerError::InvalidToken),
                        Some(description),
                    );
                    if let Ok(value) = http::HeaderValue::try_from(challenge) {
                        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
                    }
                    Err(resp)
                } else {
                    Err(respond::with_retry_after(resp, 5))
                }
            }
        }
    }

    /// The event-stream handling for a response to a GET (`is_get`) or another method,
    /// for a client that addressed the proxy as `client_host`.
    pub(crate) fn event_stream(&self, is_get: bool, client_host: Option<&str>) -> EventStream {
        if standalone_stream(is_get) {
            let origin = client_host.map(|h| format!("http://{h}")).unwrap_or_default();
            EventStream {
                stop: self.stops.listening.clone(),
                rewrite: Some(EndpointRewrite::new(self.upstream_origins.clone(), origin)),
                drop_length: true,
            }
        } else {
            EventStream { stop: self.stops.all.clone(), rewrite: None, drop_length: false }
        }
    }

    /// The target answered `status`; `bearer_challenge` says whether a 401 asked for an
    /// OAuth bearer token. Without remote auth the proxy stays transparent and relays it;
    /// the first time, it says once which flag would let the proxy log in. (Noticed on real
    /// traffic rather than probed at startup: a probe would open sessions on servers that
    /// need no login.)
    pub(crate) fn upstream_answered(&self, status: u16, bearer_challenge: bool) {
        if status == 401 && bearer_challenge && !self.auth_hint_given.swap(true, Ordering::Relaxed) {
            warn!(upstream = %self.target_display, "the MCP server asks for an OAuth token: restart with --remote-auth to let the proxy log in for your clients");
        }
    }

    /// The target's response broke off after its head: the client gets a closed
    /// connection (each engine's own way), and the operator this line (with the request's
    /// trace id when it is traced, as on its request line).
    pub(crate) fn broke_off(&self, why: &dyn std::fmt::Display, observed: Option<&Observation>) {
        let trace_id = observed.and_then(Observation::sampled_trace_id);
        warn!(upstream = %self.target_display, error = %why, trace_id = trace_id.as_deref(), "the MCP server's response broke off");
    }

    /// Turns a failure into the response the client gets, and logs it once (with the
    /// request's trace id when `observed` is traced).
    pub(crate) fn rescue(&self, err: &ForwardError, body: &[u8], observed: Option<&Observation>) -> Local {
        match err.side() {
            Side::Upstream => {
                let detail = err.detail().unwrap_or_default();
                let trace_id = observed.and_then(Observation::sampled_trace_id);
                warn!(upstream = %self.target_display, error = %err, detail, trace_id = trace_id.as_deref(), "request to the MCP server failed");
                if let (ForwardError::Connect(_), Some(t)) = (err, &self.telemetry) {
                    t.metrics().count(Count::UpstreamConnectFailure);
                }
            }
            Side::Client => {
                let trace_id = observed.and_then(Observation::sampled_trace_id);
                debug!(error = %err, trace_id = trace_id.as_deref(), "request refused");
            }
            // Logged by the exchanger, with what the operator needs to know.
            Side::Exchange => {}
        }
        let id = jsonrpc::request_id(body);
        let (status, code, message) = match err {
            ForwardError::BodyTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                format!("request body is larger than the proxy's limit of {limit} bytes (see --max-request-body)"),
            ),
            ForwardError::BodyRead(_) | ForwardError::BodySlow(_) => {
                (StatusCode::REQUEST_TIMEOUT, INVALID_REQUEST, err.to_string())
            }
            ForwardError::BodyMalformed(_) => (StatusCode::BAD_REQUEST, INVALID_REQUEST, err.to_string()),
            ForwardError::Timeout(_) => {
                (StatusCode::GATEWAY_TIMEOUT, UPSTREAM_UNAVAILABLE, format!("{err} ({})", self.target_display))
            }
            ForwardError::Connect(_) | ForwardError::Broken { .. } => {
                (StatusCode::BAD_GATEWAY, UPSTREAM_UNAVAILABLE, format!("{err} ({})", self.target_display))
            }
            // Fixed texts: the exchange server's own words go to the log only.
            ForwardError::Exchange(Failure::Refused(_)) => (
                StatusCode::UNAUTHORIZED,
                REQUEST_REFUSED,
                "the token cannot be exchanged for the MCP server: the token exchange server refused it".to_owned(),
            ),
            ForwardError::Exchange(Failure::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                UPSTREAM_UNAVAILABLE,
                "the token cannot be exchanged for the MCP server now: the token exchange server is unavailable; retry later".to_owned(),
            ),
        };
        respond::jsonrpc_error(status, code, &message, id.as_deref())
    }
}

/// The spellings of the target's origin a legacy SSE server may use in its `endpoint`
/// event: the configured one, and for a loopback target every loopback name.
fn upstream_origins(config: &Config) -> Vec<String> {
    let t = &config.target;
    let scheme = t.scheme.as_str().to_ascii_lowercase();
    let host = t.authority.host().to_ascii_lowercase();
    let port = t.authority.port_u16();
    let with_port = |h: &str| match port {
        Some(p) => format!("{scheme}://{h}:{p}"),
        None => format!("{scheme}://{h}"),
    };
    let mut origins = vec![with_port(&host)];
    let loopback = crate::net::is_loopback_host(&host);
    if loopback {
        for alias in ["localhost", "127.0.0.1", "[::1]"] {
            origins.push(with_port(alias));
        }
    }
    origins.sort();
    origins.dedup();
    origins
}

/// An exchange is finished: one line at debug level, the same from both engines (with the
/// trace id when the request is traced), and its observation for metrics and spans.
pub(crate) fn finished(record: &Record<'_>, mut observed: Option<Box<Observation>>) {
    if logging_requests() {
        // A request refused before its body was read has its trace decided here.
        let trace_id = observed.as_deref_mut().map(Observation::settle_trace).and_then(Observation::sampled_trace_id);
        debug!(
            method = %record.method,
            path = record.path,
            status = record.status,
            elapsed = ?record.started.elapsed(),
            bytes = record.bytes,
            trace_id = trace_id.as_deref(),
            "request"
        );
    }
    if let Some(observed) = observed {
        observed.finish(record.status, record.bytes);
    }
}

/// Whether the request line is logged (`--debug`): the path is copied for it only then.
pub(crate) fn logging_requests() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

impl Policy {
    /// Whether finished exchanges are recorded at all: checked once per request, so that
    /// nothing is measured or copied when nobody reads the record.
    pub(crate) fn recording(&self) -> bool {
        self.telemetry.is_some() || logging_requests()
    }

    /// Opens the telemetry of a request, when telemetry is on.
    pub(crate) fn observe(
        &self,
        method: &str,
        peer: std::net::SocketAddr,
        traceparent: Option<&[u8]>,
    ) -> Option<Box<Observation>> {
        self.telemetry.as_ref().map(|t| t.observe(method, peer, traceparent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_routes_and_streams() {
        assert_eq!(local_route("/health"), Some(LocalRoute::Health));
        assert_eq!(local_route("/healthz"), None);
        assert_eq!(
            local_route("/.well-known/oauth-protected-resource/mcp"),
            Some(LocalRoute::ProtectedResourceMetadata)
        );
        assert_eq!(local_route("/mcp"), None);
        assert!(is_event_stream(b" Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream(b"application/json") && !is_event_stream(b"text/event"));
        assert!(is_event_stream(b"text/event-stream ;charset=utf-8"));
        assert!(!is_event_stream(b"text/event-streams"), "the whole media type, not a prefix");
    }

    #[test]
    fn heads_are_measured_as_sent() {
        let req = http::Request::builder().uri("/mcp?x=1").header("host", "127.0.0.1:8080").body(()).unwrap();
        // "GET /mcp?x=1 HTTP/1.1\r\n" + "host: 127.0.0.1:8080\r\n" + "\r\n"
        let exact = "GET /mcp?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n".len();
        assert!(!head_too_large(&req, exact));
        assert!(head_too_large(&req, exact - 1));
    }

    #[test]
    fn a_written_request_is_never_sent_again() {
        assert!(may_send_again(false, true));
        assert!(!may_send_again(true, true));
        assert!(!may_send_again(false, false), "a fresh connection that failed is the target's answer");
    }
}
