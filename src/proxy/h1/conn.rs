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
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::Response;
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tracing::{debug, warn};

use super::FastPath;
use super::body::{self, Decoder};
use super::request::{self, Classified, INLINE_BODY, Method, Plan};
use super::response::{self, Exchange, Parsed};
use super::rewind::Rewound;
use super::upstream::ConnectFailure;
use crate::inbound::LastToken;
use crate::mcp::sse::EndpointRewrite;
use crate::proxy::deadline::{Deadlines, Event, Watchdog};
use crate::proxy::forward::ForwardError;
use crate::proxy::respond::{self, ProxyBody};
use crate::proxy::{BODY_READ_TIMEOUT, Proxy, proxy_origin_of};

/// Reads go through a stack buffer of this size.
const READ_CHUNK: usize = 16 * 1024;
/// A connection's buffer is kept between requests up to this capacity.
const KEEP_BUFFER: usize = 16 * 1024;
/// Largest response head accepted from the target (hyper's client allows ~400 KiB).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;
/// Sends of one request when reused connections turn out dead (as on the hyper path).
const MAX_ATTEMPTS: usize = 3;

/// How the own path left a connection.
pub enum Outcome {
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
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    proxy: &Proxy,
    fast: &FastPath,
    deadlines: &Deadlines,
    watchdog: &mut Watchdog,
    max_head: usize,
) -> Outcome {
    let flags = Flags::default();
    let conn = Conn {
        client,
        peer,
        proxy,
        fast,
        deadlines,
        flags: &flags,
        buf: Vec::new(),
        released: false,
        max_head,
        last_token: None,
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
    proxy: &'a Proxy,
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
}

/// When a request started and its path (no query: it may carry secrets), kept only
/// when debug logging is on.
type Started = Option<(Instant, String)>;

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
    BadBody(body::BodyError),
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
            // Checked before the buffer is touched: a request that ended early (the client
            // closed, or its body timed out) left fewer bytes than its head announced.
            if !keep || plan.close || self.flags.draining.load(Ordering::Relaxed) {
                let _ = self.client.shutdown().await;
                return Outcome::Closed;
            }
            let used = if std::mem::take(&mut self.released) { 0 } else { plan.head_len + plan.body_len };
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
        let s = &*self.proxy.shared;
        let rules = request::Rules {
            hosts: s.guard.allowed_hosts(),
            max_body: s.max_body,
            consume_authorization: s.inbound.is_some(),
            describe_client: s.describe_client,
            upstream_host: &self.fast.upstream_host,
            client_ip: self.peer.ip(),
        };
        // Where the search for the head's end resumes: a head that trickles in byte by
        // byte is scanned once in all, and parsed once it is whole, not at every read.
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(&self.buf, &mut scanned) {
                return match request::classify(&self.buf[..end], &rules) {
                    Classified::Fast(plan) => Next::Request(plan),
                    Classified::Fallback | Classified::Partial => Next::Fallback,
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

    /// Serves one request; whether the connection may carry another.
    async fn serve(&mut self, plan: &mut Plan) -> bool {
        let started = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            let target = &self.buf[plan.target.0..plan.target.1];
            let path = target.split(|&b| b == b'?').next().unwrap_or_default();
            (Instant::now(), String::from_utf8_lossy(path).into_owned())
        });
        let total = plan.head_len + plan.body_len;
        if self.buf.len() < total {
            // Sized once from Content-Length (already within --max-request-body).
            self.buf.reserve_exact(total - self.buf.len());
            let read = read_until(&mut self.client, &mut self.buf, total);
            match self.deadlines.within(BODY_READ_TIMEOUT, read).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => {
                    let err = ForwardError::BodyRead(format!("no complete body within {BODY_READ_TIMEOUT:?}"));
                    let resp = self.proxy.rescue(&err, &[]);
                    self.answer(resp, plan, started, true).await;
                    return false;
                }
            }
        }
        let s = &*self.proxy.shared;
        if let Some(inbound) = &s.inbound {
            let value = plan.authorization.map(|(from, to)| &self.buf[from..to]);
            match inbound.authenticator.authenticate_on_connection(value.into_iter(), &mut self.last_token).await {
                Ok(identity) => debug!(subject = %identity.subject, "authenticated"),
                Err(rejection) => {
                    let host = self.client_authority(plan);
                    let resp = respond::auth_rejection(rejection, &inbound.resource, host);
                    return self.answer(resp, plan, started, false).await;
                }
            }
        }
        let body = if plan.body_len <= INLINE_BODY {
            plan.upstream_head.extend_from_slice(&self.buf[plan.head_len..total]);
            &[][..]
        } else {
            &self.buf[plan.head_len..total]
        };
        let exchange = Exchange { get: plan.method == Method::Get, close: plan.close };
        let sent = exchange_head(self.fast, &plan.upstream_head, body, plan.method, exchange);
        let sent = match self.fast.response_timeout {
            Some(limit) => self.deadlines.within(limit, sent).await.unwrap_or(Err(ForwardError::Timeout(limit))),
            None => sent.await,
        };
        match sent {
            Ok((upstream, received, head)) => self.relay(upstream, received, head, plan, started).await,
            Err(e) => {
                let resp = self.proxy.rescue(&e, &self.buf[plan.head_len..total]);
                self.answer(resp, plan, started, false).await
            }
        }
    }

    /// Sends a response the proxy made itself.
    async fn answer(&mut self, resp: Response<ProxyBody>, plan: &Plan, started: Started, force_close: bool) -> bool {
        let close = force_close || plan.close || self.flags.draining.load(Ordering::Relaxed);
        let status = resp.status().as_u16();
        let out = serialize_local(resp, close);
        let ok = self.client.write_all(&out).await.is_ok();
        self.log(plan, started, status);
        ok && !close
    }

    /// Passes the target's response on as it arrives.
    async fn relay(
        &mut self,
        mut upstream: TcpStream,
        received: Vec<u8>,
        head: response::Plan,
        plan: &Plan,
        started: Started,
    ) -> bool {
        let s = &*self.proxy.shared;
        if head.bearer_challenge {
            s.hint_remote_auth();
        }
        let mut out = head.head;
        let draining = self.flags.draining.load(Ordering::Relaxed);
        if draining && !plan.close {
            // The head was made before the drain was known; say it now.
            out.truncate(out.len() - 2);
            out.extend_from_slice(b"connection: close\r\n\r\n");
        }
        let mut decoder = Decoder::new(head.framing);
        let mut rewrite = (head.event_stream && plan.method == Method::Get)
            .then(|| EndpointRewrite::new(s.upstream_origins.clone(), proxy_origin_of(self.client_host(plan))));
        let mut reusable = head.reusable;
        let tail = &received[head.head_len..];
        match emit(&mut decoder, tail, &mut out, head.chunked, &mut rewrite) {
            Ok(used) => reusable &= used == tail.len(),
            Err(e) => return self.broke_off(&e, &[]).await,
        }
        drop(received);
        if !decoder.is_done() {
            if self.client.write_all(&out).await.is_err() {
                return false;
            }
            out.clear();
            let mut stop: Option<Pin<Box<WaitForCancellationFutureOwned>>> = head.event_stream.then(|| {
                let token = if plan.method == Method::Get { &s.stops.listening } else { &s.stops.all };
                Box::pin(token.clone().cancelled_owned())
            });
            if head.event_stream {
                // A stream may stay open for hours: hold no buffer between events.
                out = Vec::new();
                if self.buf.len() == plan.head_len + plan.body_len {
                    self.buf = Vec::new();
                    self.released = true;
                }
            }
            let pipelined_limit = self.max_head + plan.head_len + plan.body_len;
            loop {
                let woke = poll_fn(|cx| {
                    if let Some(stop) = stop.as_mut()
                        && stop.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(Wake::Stopped);
                    }
                    // A client that hangs up ends the exchange (and releases the target's
                    // stream); bytes it sends meanwhile are its next request, kept bounded.
                    while self.buf.len() < pipelined_limit {
                        match poll_read_with(&mut self.client, cx, |data| self.buf.extend_from_slice(data)) {
                            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Wake::ClientGone),
                            Poll::Ready(Ok(_)) => {}
                            Poll::Pending => break,
                        }
                    }
                    let mut bad = None;
                    let read = poll_read_with(&mut upstream, cx, |data| {
                        match emit(&mut decoder, data, &mut out, head.chunked, &mut rewrite) {
                            Ok(used) => reusable &= used == data.len(),
                            Err(e) => bad = Some(e),
                        }
                    });
                    Poll::Ready(match (ready!(read), bad) {
                        (_, Some(e)) => Wake::BadBody(e),
                        (Ok(0), None) => Wake::UpstreamEof,
                        (Ok(_), None) => Wake::Data,
                        (Err(e), None) => Wake::UpstreamError(e),
                    })
                })
                .await;
                match woke {
                    Wake::Data => {}
                    Wake::UpstreamEof => {
                        if let Err(e) = decoder.finish_at_eof() {
                            return self.broke_off(&e, &out).await;
                        }
                        reusable = false;
                        let start = out.len();
                        if let Some(rest) = rewrite.take().map(EndpointRewrite::into_remainder) {
                            out.extend_from_slice(&rest);
                        }
                        if head.chunked {
                            body::frame_chunk(&mut out, start);
                            out.extend_from_slice(body::LAST_CHUNK);
                        }
                    }
                    Wake::UpstreamError(e) => return self.broke_off(&e, &out).await,
                    // What is past a framing error is not passed on.
                    Wake::BadBody(e) => return self.broke_off(&e, &[]).await,
                    Wake::ClientGone => return false,
                    Wake::Stopped => {
                        // Shutdown: end the stream cleanly at an event boundary the target made.
                        if head.chunked {
                            out.extend_from_slice(body::LAST_CHUNK);
                        }
                        let _ = self.client.write_all(&out).await;
                        self.log(plan, started, head.status);
                        return false;
                    }
                }
                if !out.is_empty() {
                    if self.client.write_all(&out).await.is_err() {
                        return false;
                    }
                    out.clear();
                    if head.event_stream {
                        out = Vec::new();
                    }
                }
                if decoder.is_done() {
                    break;
                }
            }
        }
        if !out.is_empty() && self.client.write_all(&out).await.is_err() {
            return false;
        }
        if reusable {
            self.fast.pool.check_in(upstream);
        }
        self.log(plan, started, head.status);
        !draining
    }

    /// The target's response ended early or broke its framing: the client gets what came
    /// before (`sent_on`) and then a closed connection, so an incomplete body never looks
    /// complete. Always `false`: the connection cannot carry another request.
    async fn broke_off(&mut self, why: &(dyn std::fmt::Display + Sync), sent_on: &[u8]) -> bool {
        warn!(upstream = %self.proxy.shared.target_display, error = %why, "the MCP server's response broke off");
        if !sent_on.is_empty() {
            let _ = self.client.write_all(sent_on).await;
        }
        false
    }

    /// The `host[:port]` the client used, or the listen address.
    fn client_authority<'b>(&'b self, plan: &Plan) -> &'b str {
        self.client_host(plan)
            .filter(|h| !h.is_empty() && !h.contains(['/', '"', ' ', '\\']))
            .unwrap_or(&self.proxy.shared.local_authority)
    }

    fn client_host(&self, plan: &Plan) -> Option<&str> {
        std::str::from_utf8(&self.buf[plan.host.0..plan.host.1]).ok()
    }

    /// One line per request at debug level (method, path without query, status, time).
    fn log(&self, plan: &Plan, started: Started, status: u16) {
        if let Some((at, path)) = started {
            debug!(method = %plan.method.as_str(), path, status, elapsed = ?at.elapsed(), "request");
        }
    }
}

/// The length of the head at the start of `buf` (through its empty line), once it is
/// all there. `scanned` carries the search position from one call to the next.
fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    // Back up over a line end that may have been cut in two by the previous read.
    let from = scanned.saturating_sub(2);
    *scanned = buf.len();
    // One pass over the line ends: an empty line follows `\n` as `\r\n` or, for
    // httparse, a bare `\n` (such heads go to hyper, but they end here all the same).
    memchr::memchr_iter(b'\n', &buf[from..]).map(|i| from + i).find_map(|i| match buf.get(i + 1) {
        Some(b'\n') => Some(i + 2),
        Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

/// Checks out a connection, sends the request and reads the response head.
async fn exchange_head(
    fast: &FastPath,
    head: &[u8],
    body: &[u8],
    method: Method,
    exchange: Exchange,
) -> Result<(TcpStream, Vec<u8>, response::Plan), ForwardError> {
    let mut attempt = 1;
    loop {
        let (mut upstream, reused) = fast.pool.checkout().await.map_err(|e| match e {
            ConnectFailure::TimedOut => ForwardError::Timeout(fast.connect_timeout),
            ConnectFailure::Io(e) => ForwardError::Connect(crate::proxy::forward::describe(&e)),
        })?;
        let retry = reused && attempt < MAX_ATTEMPTS;
        if let Err(e) = write_request(&mut upstream, head, body).await {
            // Not written: the target cannot have acted on it.
            if retry {
                attempt += 1;
                continue;
            }
            return Err(ForwardError::Broken(crate::proxy::forward::describe(&e)));
        }
        let mut received = Vec::new();
        match read_response_head(&mut upstream, &mut received, exchange).await {
            Ok(plan) => return Ok((upstream, received, plan)),
            // A reused connection the target closed while the request was on its way:
            // sent again only when doing it twice is harmless (RFC 9112 §9.3.1.1).
            Err(HeadError::Closed) if retry && method.idempotent() => attempt += 1,
            Err(HeadError::Closed) => {
                return Err(ForwardError::Broken("connection closed before a complete response".into()));
            }
            Err(HeadError::Io(e)) if retry && method.idempotent() && received.is_empty() => {
                debug!(error = %e, "a reused connection to the MCP server failed; sending again");
                attempt += 1;
            }
            Err(HeadError::Io(e)) => return Err(ForwardError::Broken(crate::proxy::forward::describe(&e))),
            Err(HeadError::Invalid(why)) => return Err(ForwardError::Broken(why.to_owned())),
        }
    }
}

enum HeadError {
    /// Closed before a byte of the response.
    Closed,
    Io(io::Error),
    Invalid(&'static str),
}

async fn read_response_head(
    upstream: &mut TcpStream,
    received: &mut Vec<u8>,
    exchange: Exchange,
) -> Result<response::Plan, HeadError> {
    // Bounded: every turn reads at least one byte, and the head is at most MAX_RESPONSE_HEAD.
    loop {
        let n = poll_fn(|cx| poll_read_with(upstream, cx, |data| received.extend_from_slice(data)))
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if received.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Invalid("connection closed before a complete response")
            });
        }
        loop {
            match response::parse(received, exchange) {
                Parsed::Complete(plan) => return Ok(plan),
                Parsed::Partial if received.len() > MAX_RESPONSE_HEAD => {
                    return Err(HeadError::Invalid("response head too large"));
                }
                Parsed::Partial => break,
                Parsed::Informational(len) => {
                    received.drain(..len);
                    if received.is_empty() {
                        break;
                    }
                }
                Parsed::Invalid(why) => return Err(HeadError::Invalid(why)),
            }
        }
    }
}

/// Decodes target bytes into `out`, framed for the client; the bytes that belonged to
/// the body.
fn emit(
    decoder: &mut Decoder,
    input: &[u8],
    out: &mut Vec<u8>,
    chunked: bool,
    rewrite: &mut Option<EndpointRewrite>,
) -> Result<usize, body::BodyError> {
    let start = out.len();
    let used = decoder.decode(input, out)?;
    if let Some(scan) = rewrite.as_mut() {
        if out.len() > start {
            let data = Bytes::copy_from_slice(&out[start..]);
            out.truncate(start);
            let (passed, finished) = scan.feed(data);
            out.extend_from_slice(&passed);
            if finished {
                *rewrite = None;
            }
        }
        if decoder.is_done()
            && let Some(scan) = rewrite.take()
        {
            out.extend_from_slice(&scan.into_remainder());
        }
    }
    if chunked {
        body::frame_chunk(out, start);
        if decoder.is_done() {
            out.extend_from_slice(body::LAST_CHUNK);
        }
    }
    Ok(used)
}

/// Writes head and body; one system call when the body was inlined behind the head.
async fn write_request(upstream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    if body.is_empty() {
        return upstream.write_all(head).await;
    }
    let (mut head_at, mut body_at) = (0, 0);
    while head_at < head.len() || body_at < body.len() {
        let slices = [io::IoSlice::new(&head[head_at..]), io::IoSlice::new(&body[body_at..])];
        let mut n = upstream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len() - head_at);
        head_at += from_head;
        n -= from_head;
        body_at += n;
    }
    Ok(())
}

/// Reads from `stream` into `buf` until it holds `total` bytes. Its capacity is
/// already reserved, so the body is read in place, not through the stack buffer.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, total: usize) -> io::Result<()> {
    // Bounded: every turn reads at least one byte or ends.
    while buf.len() < total {
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// One read through a stack buffer; `take` gets the bytes. Nothing stays allocated while
/// the socket is quiet.
fn poll_read_with(stream: &mut TcpStream, cx: &mut Context<'_>, take: impl FnOnce(&[u8])) -> Poll<io::Result<usize>> {
    let mut stack = [const { MaybeUninit::<u8>::uninit() }; READ_CHUNK];
    let mut rb = ReadBuf::uninit(&mut stack);
    ready!(Pin::new(stream).poll_read(cx, &mut rb))?;
    let data = rb.filled();
    let n = data.len();
    if n > 0 {
        take(data);
    }
    Poll::Ready(Ok(n))
}

/// A local response on the wire: status line, its fields, length, date, body.
fn serialize_local(resp: Response<ProxyBody>, close: bool) -> Vec<u8> {
    use std::io::Write as _;
    let (parts, body) = resp.into_parts();
    let body = match body {
        ProxyBody::Local(full) => full.collect().now_or_never().map(|c| c.map(|c| c.to_bytes())),
        _ => None,
    };
    let body = body.and_then(Result::ok).unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", parts.status.as_str(), parts.status.canonical_reason().unwrap_or(""));
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n", body.len());
    response::write_date(&mut out);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_head_is_found_however_it_trickles_in() {
        let head = b"POST /mcp HTTP/1.1\r\nhost: x\r\n\r\n{}";
        for step in 1..head.len() {
            let (mut buf, mut scanned, mut found) = (Vec::new(), 0, None);
            for piece in head.chunks(step) {
                buf.extend_from_slice(piece);
                if let Some(end) = head_end(&buf, &mut scanned) {
                    found = Some(end);
                    break;
                }
            }
            assert_eq!(found, Some(head.len() - 2), "pieces of {step}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\nhost: x\n\n", &mut 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nhost: x\r\n", &mut 0), None);
    }
}
