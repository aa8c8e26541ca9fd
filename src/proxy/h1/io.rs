//! The own path's socket work, below the connection's state machine ([`conn`](super::conn)):
//! sending the target a request on a pooled connection (again on a fresh one when a reused
//! one turns out dead) and reading its response head, reading the client's body in place,
//! reads through a stack buffer, and the proxy's own responses put on the wire.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use super::FastPath;
use super::response::{self, Exchange, Parsed};
use super::upstream::ConnectFailure;
use crate::proxy::forward::{Broke, ForwardError};
use crate::proxy::policy;
use crate::proxy::respond::Local;
use crate::telemetry::metrics::Count;

/// Reads go through a stack buffer of this size.
const READ_CHUNK: usize = 16 * 1024;
/// Largest response head accepted from the target (hyper's client allows ~400 KiB).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;
/// Sends of one request when reused connections turn out dead (as on the hyper path).
const MAX_ATTEMPTS: usize = 3;

/// Checks out a connection, sends the request and reads the response head.
pub(super) async fn exchange_head(
    fast: &FastPath,
    head: &[u8],
    body: &[u8],
    exchange: Exchange,
) -> Result<(TcpStream, Vec<u8>, response::Plan), ForwardError> {
    // The sends after the first that dead reused connections may cost.
    let mut resends = 1..MAX_ATTEMPTS;
    loop {
        let (mut upstream, reused) = fast.pool.checkout().await.map_err(|e| match e {
            ConnectFailure::TimedOut => ForwardError::Timeout(fast.connect_timeout),
            ConnectFailure::Io(e) => ForwardError::Connect(Box::new(e)),
        })?;
        if let Err(e) = write_request(&mut upstream, head, body).await {
            if policy::may_send_again(e.written, reused) && resends.next().is_some() {
                debug!(error = %e.error, "a reused connection to the MCP server was dead; sending on another");
                if let Some(metrics) = &fast.metrics {
                    metrics.count(Count::UpstreamRetry);
                }
                continue;
            }
            return Err(ForwardError::broken_io(&e.error));
        }
        // Written: whatever happens now, it is not sent again (the target may have acted).
        let mut received = Vec::new();
        let plan = read_response_head(&mut upstream, &mut received, exchange).await?;
        return Ok((upstream, received, plan));
    }
}

/// A target connection that broke while its response head was read.
fn broke(how: Broke, detail: &str) -> ForwardError {
    ForwardError::Broken { how, detail: detail.to_owned() }
}

async fn read_response_head(
    upstream: &mut TcpStream,
    received: &mut Vec<u8>,
    exchange: Exchange,
) -> Result<response::Plan, ForwardError> {
    // Bounded: every turn reads at least one byte, and the head is at most MAX_RESPONSE_HEAD.
    loop {
        let n = poll_fn(|cx| poll_read_with(upstream, cx, |data| received.extend_from_slice(data)))
            .await
            .map_err(|e| ForwardError::broken_io(&e))?;
        if n == 0 {
            let detail =
                if received.is_empty() { "closed before any answer" } else { "closed within the response head" };
            return Err(broke(Broke::ClosedEarly, detail));
        }
        loop {
            match response::parse(received, exchange) {
                Parsed::Complete(plan) => return Ok(plan),
                Parsed::Partial if received.len() > MAX_RESPONSE_HEAD => {
                    return Err(broke(Broke::InvalidResponse, "response head too large"));
                }
                Parsed::Partial => break,
                Parsed::Informational(len) => {
                    if len > received.len() {
                        return Err(broke(Broke::InvalidResponse, "interim response past the bytes read"));
                    }
                    received.drain(..len);
                    if received.is_empty() {
                        break;
                    }
                }
                Parsed::Invalid(why) => return Err(broke(Broke::InvalidResponse, why)),
                Parsed::Upgrade => return Err(broke(Broke::Upgrade, "101")),
            }
        }
    }
}

/// Why a request was not sent whole, and whether any of it was written.
struct WriteFailure {
    error: io::Error,
    written: bool,
}

/// Writes head and body: one system call when the body was inlined behind the head, or
/// is empty.
async fn write_request(upstream: &mut TcpStream, head: &[u8], body: &[u8]) -> Result<(), WriteFailure> {
    // What is still to write of each.
    let (mut head_left, mut body_left) = (head, body);
    while !head_left.is_empty() || !body_left.is_empty() {
        let written = head_left.len() < head.len();
        let fail = |error| WriteFailure { error, written };
        let n =
            upstream.write_vectored(&[io::IoSlice::new(head_left), io::IoSlice::new(body_left)]).await.map_err(fail)?;
        if n == 0 {
            return Err(fail(io::ErrorKind::WriteZero.into()));
        }
        (head_left, body_left) = match head_left.split_at_checked(n) {
            Some((_, rest)) => (rest, body_left),
            None => {
                // The rest of the head went, and some of the body.
                let rest = n.checked_sub(head_left.len()).and_then(|into_body| body_left.get(into_body..));
                (&[][..], rest.ok_or_else(|| fail(io::Error::other("more bytes written than given")))?)
            }
        };
    }
    Ok(())
}

/// Reads from `stream` into `buf` until it holds `total` bytes. Its capacity is
/// already reserved, so the body is read in place, not through the stack buffer.
pub(super) async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, total: usize) -> io::Result<()> {
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
pub(super) fn poll_read_with(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    take: impl FnOnce(&[u8]),
) -> Poll<io::Result<usize>> {
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

/// A local answer on the wire (status line, its fields, length, date, body), and the
/// body's length.
pub(super) fn serialize_local(resp: &Local, close: bool) -> (Vec<u8>, usize) {
    use std::io::Write as _;
    let body = resp.body();
    let status = resp.status();
    let mut out = Vec::with_capacity(body.len().saturating_add(256));
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    super::body::content_length_line(&mut out, body.len());
    response::write_date(&mut out);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    (out, body.len())
}
