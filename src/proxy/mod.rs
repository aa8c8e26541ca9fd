//! The request path: what happens to one request, in order.
//!
//! 1. [`guard`]: the Host check (DNS rebinding).
//! 2. `/.well-known/oauth-protected-resource*`: the proxy's own RFC 9728 document, public
//!    and readable cross-origin; never forwarded.
//! 3. [`guard`]: the Origin check and CORS preflight.
//! 4. `GET /health`, answered locally.
//! 5. Incoming authentication ([`crate::inbound`]), when configured; the client's token
//!    is consumed here and never forwarded (MCP Security Best Practices §Token
//!    Passthrough); with `--token-exchange-*` it is exchanged (RFC 8693, [`crate::exchange`])
//!    for the token the target gets, once the body is read.
//! 6. The request body is read, bounded by `--max-request-body` (413 beyond it).
//! 7. [`headers`]: hop-by-hop fields removed, `X-Forwarded-*` set or withheld, `Host`
//!    becomes the target's, the operator's `--remote-forward-headers*` replace the client's
//!    fields of the same names.
//! 8. [`forward`]: sent to the target with the same method, path and query.
//! 9. The response is relayed: status, headers (minus hop-by-hop) and body unchanged;
//!    event streams go through [`SseBody`](crate::mcp::sse::SseBody).
//!
//! Failures at any step become responses in one place, [`Policy::rescue`].
//!
//! This is hyper's path. Plain MCP requests to an `http://` target run the same steps on
//! the own HTTP/1.1 path, [`h1`]: steps 1–4 by leaving to this path every request they
//! would act on (a malformed or foreign `Host`, any `Origin`, the [`policy::local_route`]s),
//! then step 5 with the same [`Authenticator`], steps 6–9 on raw bytes. Both engines call
//! the one [`policy`] at the same points, and record each exchange the same way.

pub(crate) mod deadline;
pub(crate) mod forward;
pub(crate) mod guard;
pub(crate) mod h1;
pub(crate) mod headers;
pub(crate) mod idle;
pub(crate) mod policy;
pub(crate) mod pool;
pub(crate) mod respond;
pub(crate) mod rewrite;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::exchange::Exchanger;
use crate::inbound::Authenticator;
use crate::inbound::Identity;
use crate::inbound::metadata::ProtectedResource;
use crate::mcp::jsonrpc;
use crate::mcp::sse::SseBody;
use crate::outbound::{Outbound, SendError, Unavailable};
use crate::policy::{Admission, Admitted, ListPlan, McpPolicy, Ticket};
use crate::telemetry::{Observation, Telemetry};
use deadline::Deadlines;
use forward::{ForwardError, Upstream};
use guard::Verdict;
use policy::{BODY_READ_TIMEOUT, LocalRoute, Policy};
use pool::UpstreamBody;
use respond::{Audited, INVALID_REQUEST, Local, ProxyBody, Recorded, UPSTREAM_UNAVAILABLE};
use rewrite::ListBody;

/// How long `/health` waits for a TCP connection to the target.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Signals that end event streams during shutdown.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamStops {
    /// Cancelled when shutdown starts: ends standalone GET event streams, which never
    /// finish on their own.
    pub(crate) listening: CancellationToken,
    /// Cancelled when the grace period is over: ends every remaining stream, including
    /// responses to POSTs that were still in flight.
    pub(crate) all: CancellationToken,
}

/// The proxy service. Cheap to clone: one per connection.
#[derive(Clone)]
pub(crate) struct Proxy {
    shared: Arc<Shared>,
}

struct Shared {
    /// Every rule of the request path, shared with the own HTTP/1.1 engine.
    policy: Policy,
    upstream: Upstream,
    outbound: Option<Outbound>,
    /// The own HTTP/1.1 path, where it applies.
    fast: Option<h1::FastPath>,
    server_name: String,
    target_socket: String,
}

/// How the target's answer goes back to the client.
struct Relay<'a> {
    /// The request was a GET: an event stream answering it is a standalone stream.
    is_get: bool,
    /// The `Host` the client used (the legacy `endpoint` event names the proxy by it).
    client_host: Option<&'a HeaderValue>,
    /// The MCP policy filters a list answer.
    list: Option<ListPlan>,
}

/// Incoming authentication, when configured.
pub(crate) struct Inbound {
    pub(crate) authenticator: Authenticator,
    pub(crate) resource: ProtectedResource,
    /// RFC 8693 exchange of each validated token for the target (`--token-exchange-*`).
    pub(crate) exchange: Option<Exchanger>,
}

impl Proxy {
    /// Builds the service for `config`, now that the proxy listens on `port`.
    pub(crate) fn new(
        config: &Config,
        port: u16,
        stops: StreamStops,
        inbound: Option<Inbound>,
        outbound: Option<Outbound>,
        mcp: Option<McpPolicy>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Result<Proxy, forward::TlsSetupError> {
        let mut upstream = Upstream::new(&config.target, config.connect_timeout, config.upstream_timeout)?;
        let metrics = telemetry.as_ref().map(|t| t.metrics().clone());
        upstream.metrics = metrics.clone();
        let policy = Policy::new(config, port, stops, inbound, mcp, telemetry);
        Ok(Proxy {
            shared: Arc::new(Shared {
                policy,
                upstream,
                outbound,
                fast: h1::FastPath::for_config(config, metrics),
                server_name: config.server_name.clone(),
                target_socket: config.target.socket_authority(),
            }),
        })
    }

    /// The rules both engines apply.
    pub(crate) fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The own HTTP/1.1 path, when it applies to this configuration.
    pub(crate) fn fast_path(&self) -> Option<&h1::FastPath> {
        self.shared.fast.as_ref()
    }

    /// Handles one request from `peer`, waiting no longer than its connection's
    /// `deadlines` allow.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        deadlines: &Deadlines,
    ) -> Response<ProxyBody> {
        let p = &self.shared.policy;
        let record = p.recording().then(|| {
            let path = if policy::logging_requests() { req.uri().path().to_owned() } else { String::new() };
            (Instant::now(), req.method().clone(), path)
        });
        let mut observed = match p.telemetry {
            Some(_) => {
                let traceparent = req.headers().get(views::TRACEPARENT).map(HeaderValue::as_bytes);
                p.observe(req.method().as_str(), peer, traceparent)
            }
            None => None,
        };
        let resp = self.answer(req, peer, deadlines, &mut observed).await;
        match record {
            Some((started, method, path)) => Recorded::wrap(resp, method, path, started, observed),
            None => resp,
        }
    }

    /// The policy's steps in order, for hyper's path.
    async fn answer(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        deadlines: &Deadlines,
        observed: &mut Option<Box<Observation>>,
    ) -> Response<ProxyBody> {
        let p = &self.shared.policy;
        if policy::head_too_large(&req, p.max_head) {
            return respond::jsonrpc_error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                INVALID_REQUEST,
                "request head is larger than the proxy's limit (see --max-header-size)",
                None,
            )
            .into();
        }
        if let Some(refusal) = p.guard.check_host(&req) {
            return refusal.into();
        }
        let route = policy::local_route(req.uri().path());
        if route == Some(LocalRoute::ProtectedResourceMetadata) {
            return self.protected_resource_metadata(&req).into();
        }
        let cors = match p.guard.check_origin(&req) {
            Verdict::Proceed(cors) => cors,
            Verdict::Answer(resp) => return (*resp).into(),
        };
        let mut resp = if route == Some(LocalRoute::Health) {
            self.health(req.method()).await.into()
        } else {
            self.authenticate_and_forward(req, peer, deadlines, observed).await
        };
        if let Some(origin) = cors {
            guard::add_cors(resp.headers_mut(), origin);
        }
        resp
    }

    /// Step 5 then the forwarding steps.
    async fn authenticate_and_forward(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        deadlines: &Deadlines,
        observed: &mut Option<Box<Observation>>,
    ) -> Response<ProxyBody> {
        let p = &self.shared.policy;
        let mut who = None;
        let mut subject = None;
        if p.consumes_authorization() {
            let values = req.headers().get_all(header::AUTHORIZATION).iter().map(HeaderValue::as_bytes);
            let host = req.headers().get(header::HOST).map(HeaderValue::as_bytes);
            match p.authenticate(values, None, host).await {
                Ok(identity) => who = identity,
                Err(answer) => {
                    if let Some(mcp) = &p.mcp {
                        mcp.refused(
                            &views::mcp_head(req.method(), req.uri(), req.headers(), peer),
                            answer.status().as_u16(),
                        );
                    }
                    return answer.into();
                }
            }
            // Never forwarded; kept only to be exchanged (exactly one value was accepted).
            let token = req.headers_mut().remove(header::AUTHORIZATION);
            if p.exchanges() {
                subject = token;
            }
        }
        self.forward(req, peer, deadlines, who, subject, observed).await
    }

    /// `/.well-known/oauth-protected-resource[/<mcp path>]` (RFC 9728 §3). Public metadata:
    /// any origin may read it (CORS `*`), and it needs no token.
    fn protected_resource_metadata<B>(&self, req: &Request<B>) -> Local {
        let Some(inbound) = self.shared.policy.inbound.as_ref().filter(|i| i.resource.serves(req.uri().path())) else {
            return respond::json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.to_owned());
        };
        let mut resp = match *req.method() {
            Method::GET | Method::HEAD => {
                respond::json(StatusCode::OK, inbound.resource.document(self.client_authority(req)))
            }
            Method::OPTIONS => respond::empty(StatusCode::NO_CONTENT),
            _ => {
                let mut resp = respond::empty(StatusCode::METHOD_NOT_ALLOWED);
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                resp
            }
        };
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("MCP-Protocol-Version"));
        resp
    }

    /// The `host[:port]` the client used, or the listen address.
    fn client_authority<'a, B>(&'a self, req: &'a Request<B>) -> &'a str {
        self.shared.policy.client_authority(req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        deadlines: &Deadlines,
        who: Option<Arc<Identity>>,
        subject: Option<HeaderValue>,
        observed: &mut Option<Box<Observation>>,
    ) -> Response<ProxyBody> {
        let s = &*self.shared;
        let (mut parts, body) = req.into_parts();
        if parts.method == Method::CONNECT {
            let resp = respond::jsonrpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                INVALID_REQUEST,
                "CONNECT is not supported by this proxy",
                None,
            );
            return resp.into();
        }
        let p = &s.policy;
        let mut body = match read_body(body, p.max_body, deadlines).await {
            Ok(body) => body,
            Err(e) => return p.rescue(&e, &[], observed.as_deref_mut().map(Observation::settle_trace)).into(),
        };
        // The client's token becomes the target's (RFC 8693), before any other step acts.
        if let Some(subject) = subject {
            let host = parts.headers.get(header::HOST).map(HeaderValue::as_bytes);
            match p
                .exchange(subject.as_bytes(), who.as_deref(), &body, host, || {
                    views::mcp_head(&parts.method, &parts.uri, &parts.headers, peer)
                })
                .await
            {
                Ok((name, value)) => parts.headers.insert(name.clone(), value),
                Err(answer) => return answer.into(),
            };
        }
        // The MCP policy decides on the whole body, before anything reaches the target.
        let mut admitted = None;
        if let Some(mcp) = &p.mcp {
            let head = views::mcp_head(&parts.method, &parts.uri, &parts.headers, peer);
            match mcp.admit(&head, &body, who.as_ref()) {
                Admission::Answer(answer) => {
                    if let Some(observed) = observed.as_mut() {
                        observed.answered_here(&body);
                    }
                    return answer.into();
                }
                Admission::Forward(a) => admitted = Some(a),
            }
        }
        let (list, ticket) = match admitted {
            Some(Admitted { renamed, list, audit }) => {
                if list.is_some() {
                    // An answer the proxy filters must come readable: no compression.
                    parts.headers.remove(header::ACCEPT_ENCODING);
                }
                if let Some((renamed, name)) = renamed {
                    body = Bytes::from(renamed);
                    if parts.headers.contains_key(views::MCP_NAME)
                        && let Ok(name) = HeaderValue::from_str(&name)
                    {
                        parts.headers.insert(views::MCP_NAME, name);
                    }
                }
                (list, audit)
            }
            None => (None, None),
        };
        // Telemetry reads the body the target gets, and names the proxy's span to it.
        if let Some(observed) = observed.as_mut() {
            let head = || Some(views::telemetry_head(&parts.uri, &parts.headers));
            if let Some(propagate) = observed.read_body(head, &body) {
                if let Some(at) = propagate.body_at {
                    body = Bytes::from(propagate.in_body(&body, at));
                }
                if let Ok(value) = HeaderValue::from_bytes(&propagate.traceparent) {
                    parts.headers.insert(views::TRACEPARENT, value);
                }
                if let Some(state) = propagate.meta_state {
                    parts.headers.remove(views::TRACESTATE);
                    if let Some(value) = state.and_then(|s| HeaderValue::from_str(&s).ok()) {
                        parts.headers.insert(views::TRACESTATE, value);
                    }
                }
            }
            observed.upstream_started();
        }
        // The target's Host replaces the client's (which is kept for X-Forwarded-Host and
        // the legacy endpoint rewrite): a client can never choose the upstream virtual host.
        let client_host = parts.headers.insert(header::HOST, s.upstream.host_header().clone());
        headers::strip_hop_by_hop(&mut parts.headers);
        // The body is buffered, so the upstream request is framed by its exact length, set
        // by hyper. The client's Content-Length must not survive: with `Transfer-Encoding`
        // beside it (or a second one) it could disagree with the body actually sent, which
        // is how request smuggling starts.
        parts.headers.remove(header::CONTENT_LENGTH);
        headers::set_forwarded(&mut parts.headers, p.describe_client, peer.ip(), client_host.as_ref());
        if let Some(fields) = &p.forward {
            fields.apply(&mut parts.headers);
        }
        let how = Relay { is_get: parts.method == Method::GET, client_host: client_host.as_ref(), list };
        let uri = s.upstream.uri_for(parts.uri.path_and_query());
        let Some(outbound) = &s.outbound else {
            // The client's request parts become the target's (no new header map).
            parts.uri = uri;
            parts.version = Version::HTTP_11;
            parts.extensions.clear();
            let upstream_req = Request::from_parts(parts, Full::new(body.clone()));
            return match s.upstream.send(upstream_req, deadlines).await {
                Ok(resp) => {
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        let lines = resp.headers().get_all(header::WWW_AUTHENTICATE).iter();
                        let bearer = crate::oauth::challenge::find_bearer(lines.filter_map(|v| v.to_str().ok()));
                        p.upstream_answered(401, bearer.is_some());
                    }
                    self.audited(self.relay(resp, how), ticket)
                }
                Err(e) => self.audited(p.rescue(&e, &body, observed.as_deref()).into(), ticket),
            };
        };
        // The proxy authenticates to the target itself: whatever credentials the client
        // sent are for someone else and are not passed on.
        parts.headers.remove(header::AUTHORIZATION);
        parts.uri = uri;
        // Boxed: its retry loop keeps a second request's worth of state, which the
        // unauthenticated path would otherwise carry (and move) on every request.
        let resp =
            Box::pin(self.forward_authenticated(outbound, parts, body, how, deadlines, observed.as_deref())).await;
        self.audited(resp, ticket)
    }

    /// The exchange's audit event, completed with the answer the client gets.
    fn audited(&self, resp: Response<ProxyBody>, ticket: Option<Ticket>) -> Response<ProxyBody> {
        let (Some(mcp), Some(ticket)) = (&self.shared.policy.mcp, ticket) else { return resp };
        match mcp.answering(ticket, resp.status().as_u16()) {
            Some(tap) => resp.map(|body| ProxyBody::Audited(Box::new(Audited::new(body, tap)))),
            None => resp,
        }
    }

    /// Sends with the proxy's own token: [`Outbound::send`] renews it on 401 and steps up
    /// on `403 insufficient_scope`, resending the buffered request; while it has no token
    /// the client gets 503 with `Retry-After`.
    async fn forward_authenticated(
        &self,
        outbound: &Outbound,
        parts: http::request::Parts,
        body: Bytes,
        how: Relay<'_>,
        deadlines: &Deadlines,
        observed: Option<&Observation>,
    ) -> Response<ProxyBody> {
        let upstream = &self.shared.upstream;
        match outbound.send(parts, body.clone(), |req| upstream.send(req, deadlines)).await {
            Ok(resp) => self.relay(resp, how),
            Err(SendError::Upstream(e)) => self.shared.policy.rescue(&e, &body, observed).into(),
            Err(SendError::Unavailable(why)) => login_unavailable(&why, &body).into(),
        }
    }

    /// Passes the target's response on: same status and body, hop-by-hop fields removed;
    /// a list answer filtered by the MCP policy.
    fn relay(&self, resp: Response<UpstreamBody>, how: Relay<'_>) -> Response<ProxyBody> {
        let p = &self.shared.policy;
        let (mut parts, body) = resp.into_parts();
        // The client connection has its own version; an HTTP/1.0 upstream must not
        // downgrade it (hyper would drop keep-alive for a 1.0 response).
        parts.version = Version::HTTP_11;
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::single_content_length(&mut parts.headers);
        let is_event_stream =
            parts.headers.get(header::CONTENT_TYPE).is_some_and(|ct| policy::is_event_stream(ct.as_bytes()));
        // A list answer is filtered; a GET's answer only as an event stream (a standalone
        // stream may carry list answers: see `policy::ListPlan`).
        let list =
            how.list.filter(|_| crate::policy::rewrites(parts.status.as_u16()) && (!how.is_get || is_event_stream));
        let mut body = if is_event_stream {
            let (name, value) = policy::NO_BUFFERING;
            parts.headers.entry(name).or_insert(HeaderValue::from_static(value));
            let stream = p.event_stream(how.is_get, how.client_host.and_then(|h| h.to_str().ok()));
            if stream.drop_length {
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            ProxyBody::Sse(Box::new(SseBody::new(body, stream.stop, stream.rewrite)))
        } else {
            ProxyBody::Upstream(body)
        };
        if let Some(list) = list {
            // Filtered: the length changes.
            parts.headers.remove(header::CONTENT_LENGTH);
            body = ProxyBody::List(Box::new(ListBody::new(body, list.rewriter(is_event_stream))));
        }
        Response::from_parts(parts, body)
    }

    /// `GET /health`: the proxy's own state and whether the target accepts connections.
    async fn health(&self, method: &Method) -> Local {
        if method != Method::GET && method != Method::HEAD {
            let mut resp = respond::empty(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let s = &*self.shared;
        let probe = tokio::time::timeout(HEALTH_PROBE_TIMEOUT, tokio::net::TcpStream::connect(&s.target_socket)).await;
        let reachable = matches!(probe, Ok(Ok(_)));
        let body = serde_json::json!({
            "status": if reachable { "healthy" } else { "unhealthy" },
            "server": s.server_name,
            "target": s.policy.target_display,
            "target_reachable": reachable,
            "outgoing_auth": s.outbound.as_ref().map_or("none", Outbound::status),
            "incoming_auth": s.policy.inbound.is_some(),
            "version": env!("CARGO_PKG_VERSION"),
        });
        let status = if reachable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        respond::json(status, body.to_string())
    }
}

/// 503 while the proxy has no token for the target: MCP clients retry later rather than
/// starting an OAuth flow of their own against the target (ToolHive's reasoning too).
fn login_unavailable(why: &Unavailable, body: &[u8]) -> Local {
    let id = jsonrpc::request_id(body);
    respond::with_retry_after(
        respond::jsonrpc_error(StatusCode::SERVICE_UNAVAILABLE, UPSTREAM_UNAVAILABLE, &why.to_string(), id.as_deref()),
        5,
    )
}

/// Reads the whole request body, refusing more than `limit` bytes (before reading, when
/// `Content-Length` already says so) and bodies that trickle in too slowly.
async fn read_body(mut body: Incoming, limit: usize, deadlines: &Deadlines) -> Result<Bytes, ForwardError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    // hyper has parsed and checked Content-Length; its exact size hint is that length.
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ForwardError::BodyTooLarge { limit });
    }
    let read = async {
        // A small message arrives in one frame and is kept as it is, without a copy. A
        // larger one is gathered into one buffer sized from Content-Length, each frame
        // freed once copied, so memory peaks near the body's size, not twice it.
        let mut first: Option<Bytes> = None;
        let mut gathered: Option<BytesMut> = None;
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| forward::client_body_error(Box::new(e)))?;
            let Ok(data) = frame.into_data() else { continue };
            total += data.len();
            if total > limit {
                return Err(ForwardError::BodyTooLarge { limit });
            }
            match (&mut gathered, first.take()) {
                (Some(buf), _) => buf.extend_from_slice(&data),
                (None, None) => first = Some(data),
                (None, Some(head)) => {
                    let capacity = declared.map_or(head.len() + data.len(), |n| n as usize);
                    let mut buf = BytesMut::with_capacity(capacity.min(limit));
                    buf.extend_from_slice(&head);
                    buf.extend_from_slice(&data);
                    gathered = Some(buf);
                }
            }
        }
        Ok(gathered.map(BytesMut::freeze).or(first).unwrap_or_default())
    };
    deadlines.within(BODY_READ_TIMEOUT, read).await.map_err(|_| ForwardError::BodySlow(BODY_READ_TIMEOUT))?
}
