//! One client connection on the own HTTP/1.1 path.
//!
//! A request is served in one task, start to end: its head parsed where it lies in the
//! connection's buffer, its body read whole (bounded), the policy steps run, the target's
//! request written in one system call on a pooled connection, and the target's response
//! relayed as it arrives. No header map is built for either message, and no channel
//! stands between the client's connection and the target's. The first request this path
//! does not take (see [`request`](super::request)) hands the connection, with the bytes
//! already read, to hyper for the rest of its life.
//!
//! Memory follows the traffic: reads go through a stack buffer into buffers sized to what
//! arrived, and while a response streams (an SSE stream may stay open for hours) the
//! connection holds no buffer at all between events.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tracing::debug;

use super::FastPath;
use super::emit::EmitError;
use super::heads::{self, head_end};
use super::io::{exchange_head, poll_read_with, read_until, serialize_local};
use super::request::{self, Classified, INLINE_BODY, McpFields, Method, Plan};
use super::response::Exchange;
use super::rewind::Rewound;
use crate::inbound::LastToken;
use crate::policy::{Admission, Admitted, Tap, Ticket};
use crate::proxy::deadline::{Deadlines, Event, Watchdog};
use crate::proxy::forward::ForwardError;
use crate::proxy::policy::{self, BODY_READ_TIMEOUT, Policy, Record};
use crate::proxy::respond::Local;
use crate::telemetry::Observation;

mod relay;

/// A connection's buffer is kept between requests up to this capacity.
const KEEP_BUFFER: usize = 16 * 1024;

/// How the own path left a connection.
pub(crate) enum Outcome {
    Closed,
    /// hyper takes over; `true` when a graceful shutdown has already begun.
    Fallback(Rewound, bool),
}

/// Shared between the connection's task and its watchdog poll.
#[derive(Default)]
struct Flags {
    /// A graceful shutdown began: answer what is in progress with `Connection: close`.
    draining: AtomicBool,
    /// Waiting for a request with nothing received: may be closed at once.
    idle: AtomicBool,
}

/// Serves `client` until it closes, or hands it to hyper.
pub(crate) async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    policy: &Policy,
    fast: &FastPath,
    deadlines: &Deadlines,
    watchdog: &mut Watchdog,
    max_head: usize,
) -> Outcome {
    let flags = Flags::default();
    let conn = Conn {
        client,
        peer,
        policy,
        fast,
        deadlines,
        flags: &flags,
        buf: Vec::new(),
        released: false,
        max_head,
        last_token: None,
        status: 0,
        sent: 0,
        observed: None,
        spare_fields: None,
    };
    let mut run = std::pin::pin!(conn.run());
    poll_fn(|cx| {
        match watchdog.poll_event(cx) {
            Poll::Ready(Event::Idle) => {
                debug!(%peer, "no complete request head within the header timeout; closed");
                return Poll::Ready(Outcome::Closed);
            }
            Poll::Ready(Event::Drain) => {
                flags.draining.store(true, Ordering::Relaxed);
                if flags.idle.load(Ordering::Relaxed) {
                    return Poll::Ready(Outcome::Closed);
                }
            }
            Poll::Pending => {}
        }
        run.as_mut().poll(cx)
    })
    .await
}

struct Conn<'a> {
    client: TcpStream,
    peer: SocketAddr,
    /// Every rule: the engine asks, and keeps none of its own.
    policy: &'a Policy,
    fast: &'a FastPath,
    deadlines: &'a Deadlines,
    flags: &'a Flags,
    /// Received and not yet served: the current request, and whatever the client sent
    /// after it.
    buf: Vec<u8>,
    /// The current request's bytes were dropped from `buf` already (see `relay`).
    released: bool,
    max_head: usize,
    /// The token this connection's last authenticated request carried (incoming auth).
    last_token: Option<LastToken>,
    /// The current exchange's answer so far, for its record: status (0 before any) and
    /// body bytes passed to the client.
    status: u16,
    sent: u64,
    /// The current exchange as telemetry follows it (boxed: one pointer without telemetry).
    observed: Option<Box<Observation>>,
    /// The previous request's [`McpFields`], reused by the next (see `classify_reusing`).
    spare_fields: Option<Box<McpFields>>,
}

enum Next {
    Request(Plan),
    Closed,
    Fallback,
}

/// How a streamed response wait ended.
enum Wake {
    /// Upstream bytes were decoded into the output.
    Data,
    UpstreamEof,
    UpstreamError(io::Error),
    BadBody(EmitError),
    ClientGone,
    Stopped,
}

impl Conn<'_> {
    async fn run(mut self) -> Outcome {
        loop {
            let mut plan = match self.next_request().await {
                Next::Request(plan) => plan,
                Next::Closed => return Outcome::Closed,
                Next::Fallback => {
                    let prefix = Bytes::from(std::mem::take(&mut self.buf));
                    let draining = self.flags.draining.load(Ordering::Relaxed);
                    return Outcome::Fallback(Rewound::new(prefix, self.client), draining);
                }
            };
            let busy = self.deadlines.begin();
            let keep = self.serve(&mut plan).await;
            drop(busy);
            self.spare_fields = plan.mcp.take();
            // Checked before the buffer is touched: a request that ended early (the client
            // closed, or its body timed out) left fewer bytes than its head announced.
            if !keep || plan.close || self.flags.draining.load(Ordering::Relaxed) {
                let _ = self.client.shutdown().await;
                return Outcome::Closed;
            }
            let used = if std::mem::take(&mut self.released) { 0 } else { plan.end };
            if used >= self.buf.len() {
                self.buf.clear();
            } else {
                self.buf.drain(..used);
            }
            if self.buf.capacity() > KEEP_BUFFER {
                self.buf.shrink_to(KEEP_BUFFER.max(self.buf.len()));
            }
        }
    }

    /// Waits for a whole request head, and judges it.
    async fn next_request(&mut self) -> Next {
        let p = self.policy;
        let rules = request::Rules {
            hosts: p.guard.allowed_hosts(),
            max_body: p.max_body,
            consume_authorization: p.inbound.is_some(),
            describe_client: p.describe_client,
            upstream_host: &self.fast.upstream_host,
            client_ip: self.peer.ip(),
            // Tracing reads trace context and the session from the head; metrics only the body.
            mcp: p.mcp.is_some() || p.telemetry.as_ref().is_some_and(|t| t.tracing()),
            trace: p.telemetry.as_ref().is_some_and(|t| t.tracing()),
            forward: p.forward.as_ref(),
            replaced: p.exchange_field().map(http::HeaderName::as_str),
        };
        // Where the search for the head's end resumes: a head that trickles in byte by
        // byte is scanned once in all, and parsed once it is whole, not at every read.
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(&self.buf, &mut scanned) {
                // The one point where the engine is chosen; `Why` says why hyper's is.
                return match self
                    .buf
                    .get(..end)
                    .map(|head| request::classify_reusing(head, &rules, self.spare_fields.take()))
                {
                    Some(Classified::Fast(plan)) => Next::Request(plan),
                    Some(Classified::Fallback(why)) => {
                        debug!(?why, "request left to hyper's engine");
                        Next::Fallback
                    }
                    Some(Classified::Partial) | None => Next::Fallback,
                };
            }
            // hyper answers an oversized head (431), as it always did.
            if self.buf.len() >= self.max_head {
                return Next::Fallback;
            }
            let idle = self.buf.is_empty();
            if idle && self.flags.draining.load(Ordering::Relaxed) {
                return Next::Closed;
            }
            self.flags.idle.store(idle, Ordering::Relaxed);
            let read =
                poll_fn(|cx| poll_read_with(&mut self.client, cx, |data| self.buf.extend_from_slice(data))).await;
            self.flags.idle.store(false, Ordering::Relaxed);
            match read {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) => {}
            }
        }
    }

    /// Serves one request, and records it; whether the connection may carry another.
    async fn serve(&mut self, plan: &mut Plan) -> bool {
        let started = self.policy.recording().then(|| {
            let path = policy::logging_requests().then(|| {
                let target = Plan::part(&self.buf, plan.target).unwrap_or_default();
                let path = target.split(|&b| b == b'?').next().unwrap_or_default();
                String::from_utf8_lossy(path).into_owned()
            });
            (Instant::now(), path)
        });
        if self.policy.telemetry.is_some() {
            let traceparent = plan.mcp.as_ref().and_then(|f| f.traceparent).and_then(|s| Plan::part(&self.buf, s));
            self.observed = self.policy.observe(plan.method.as_str(), self.peer, traceparent);
        }
        (self.status, self.sent) = (0, 0);
        let keep = self.exchange(plan).await;
        let observed = self.observed.take();
        if let Some((started, path)) = started
            && self.status != 0
        {
            let (status, bytes) = (self.status, self.sent);
            let path = path.as_deref().unwrap_or_default();
            policy::finished(&Record { method: plan.method.as_str(), path, status, started, bytes }, observed);
        }
        keep
    }

    /// The policy's steps for one request, then the exchange with the target.
    async fn exchange(&mut self, plan: &mut Plan) -> bool {
        if let Some(missing) = plan.end.checked_sub(self.buf.len()).filter(|&n| n > 0) {
            // Sized once from Content-Length (already within --max-request-body).
            self.buf.reserve_exact(missing);
            let read = read_until(&mut self.client, &mut self.buf, plan.end);
            // A body that stops is answered as on hyper's path (408), even when the client
            // has gone and will not read it.
            let err = match self.deadlines.within(BODY_READ_TIMEOUT, read).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(ForwardError::BodyRead(Box::new(e))),
                Err(_) => Some(ForwardError::BodySlow(BODY_READ_TIMEOUT)),
            };
            if let Some(err) = err {
                let observed = self.observed.as_deref_mut().map(Observation::settle_trace);
                let resp = self.policy.rescue(&err, &[], observed);
                self.answer(resp, plan, true).await;
                return false;
            }
        }
        // The whole request is in the buffer now; where it is not, the connection closes.
        let Some(body) = self.buf.get(plan.head_len..plan.end) else { return false };
        let mut who = None;
        if self.policy.consumes_authorization() {
            let value = match plan.authorization {
                Some(span) => match Plan::part(&self.buf, span) {
                    Some(value) => Some(value),
                    None => return false,
                },
                None => None,
            };
            // Fields, not `client_host`: the buffer and the token memo are borrowed apart.
            let host = Plan::part(&self.buf, plan.host);
            match self.policy.authenticate(value.into_iter(), Some(&mut self.last_token), host).await {
                Ok(identity) => who = identity,
                Err(answer) => {
                    if let Some(mcp) = &self.policy.mcp {
                        let head = heads::mcp(&self.buf, plan, self.peer);
                        mcp.refused(&head, answer.status().as_u16());
                    }
                    return self.answer(answer, plan, false).await;
                }
            }
            // The client's token becomes the target's (RFC 8693), before any other step acts.
            if self.policy.exchanges() {
                let value = plan.authorization.and_then(|span| Plan::part(&self.buf, span)).unwrap_or_default();
                let host = Plan::part(&self.buf, plan.host);
                let head = || heads::mcp(&self.buf, plan, self.peer);
                match self.policy.exchange(value, who.as_deref(), body, host, head).await {
                    Ok((name, value)) => heads::add_field(&mut plan.upstream_head, plan.mcp.is_some(), name, &value),
                    Err(answer) => return self.answer(answer, plan, false).await,
                }
            }
        }
        // The MCP policy decides on the whole body; it finishes the upstream head it left open.
        // What it decided is boxed: an exchange without a policy carries one pointer of it,
        // so its state (moved whole at every await) does not grow.
        let mut admitted: Option<Box<Admitted>> = None;
        let mut traced_body = None;
        if let Some(fields) = plan.mcp.as_deref().copied() {
            let mut name = fields.name.and_then(|span| Plan::part(&self.buf, span));
            let (mut encodings, mut len) = (fields.accept_encoding, plan.body_len);
            // Tracing alone opens this path too: the policy's view of the head is made only
            // for the policy.
            if let Some(mcp) = &self.policy.mcp {
                let head = heads::mcp(&self.buf, plan, self.peer);
                match mcp.admit(&head, body, who.as_ref()) {
                    Admission::Answer(answer) => {
                        if let Some(observed) = self.observed.as_mut() {
                            observed.answered_here(body);
                        }
                        return self.answer(answer, plan, false).await;
                    }
                    Admission::Forward(decided) => {
                        // An answer the proxy filters must come readable: no compression.
                        encodings = encodings.filter(|_| decided.list.is_none());
                        admitted = Some(Box::new(decided));
                    }
                }
            }
            if let Some((new_body, original)) = admitted.as_ref().and_then(|a| a.renamed.as_ref()) {
                name = fields.name.map(|_| original.as_bytes());
                len = new_body.len();
            }
            // Telemetry reads the body the target gets, and names the proxy's span to it.
            if let Some(observed) = self.observed.as_mut() {
                let sent = admitted.as_ref().and_then(|a| a.renamed.as_ref()).map_or(body, |(b, _)| b.as_slice());
                let head = || Some(heads::telemetry(&self.buf, plan));
                if let Some(propagate) = observed.read_body(head, sent) {
                    let client_state = fields.tracestate.and_then(|span| Plan::part(&self.buf, span));
                    heads::trace_fields(&mut plan.upstream_head, &propagate, client_state);
                    traced_body = propagate.body_at.map(|at| propagate.in_body(sent, at));
                    len = traced_body.as_ref().map_or(len, Vec::len);
                }
                observed.upstream_started();
            }
            let encodings = encodings.and_then(|span| Plan::part(&self.buf, span));
            heads::finish_head(&mut plan.upstream_head, name, encodings, &fields, len);
        }
        let body = admitted.as_ref().and_then(|a| a.renamed.as_ref()).map_or(body, |(new_body, _)| new_body);
        let body = traced_body.as_deref().unwrap_or(body);
        // Metrics alone need no head fields: the body, read here, says what they count.
        if plan.mcp.is_none()
            && let Some(observed) = self.observed.as_mut()
        {
            // No tracing here (it reads head fields): the body alone is read.
            let _ = observed.read_body(|| None, body);
            observed.upstream_started();
        }
        let separate = if body.len() <= INLINE_BODY {
            plan.upstream_head.extend_from_slice(body);
            &[][..]
        } else {
            body
        };
        let rewrite = admitted.as_ref().is_some_and(|a| a.list.is_some());
        let exchange = Exchange { get: plan.method == Method::Get, close: plan.close, rewrite };
        let sent = exchange_head(self.fast, &plan.upstream_head, separate, exchange);
        let sent = match self.fast.response_timeout {
            Some(limit) => self.deadlines.within(limit, sent).await.unwrap_or(Err(ForwardError::Timeout(limit))),
            None => sent.await,
        };
        match sent {
            Ok((upstream, received, head)) => self.relay(upstream, received, head, plan, admitted).await,
            Err(e) => {
                let resp = self.policy.rescue(&e, body, self.observed.as_deref());
                if let Some(mut tap) = self.audited(admitted.and_then(|a| a.audit), resp.status().as_u16()) {
                    tap.observe(resp.body());
                }
                self.answer(resp, plan, false).await
            }
        }
    }

    /// The exchange's audit event, answered with `status`: completed now, or by the tap
    /// the answer's payload is fed to (dropped when the exchange ends).
    fn audited(&self, ticket: Option<Ticket>, status: u16) -> Option<Box<Tap>> {
        self.policy.mcp.as_ref()?.answering(ticket?, status).map(Box::new)
    }

    /// Sends a response the proxy made itself.
    async fn answer(&mut self, resp: Local, plan: &Plan, force_close: bool) -> bool {
        let close = force_close || plan.close || self.flags.draining.load(Ordering::Relaxed);
        self.status = resp.status().as_u16();
        let (out, body_len) = serialize_local(&resp, close);
        let ok = self.client.write_all(&out).await.is_ok();
        if ok {
            self.sent = body_len as u64;
        }
        ok && !close
    }

    fn client_host(&self, plan: &Plan) -> Option<&str> {
        Plan::part(&self.buf, plan.host).and_then(|host| std::str::from_utf8(host).ok())
    }
}
