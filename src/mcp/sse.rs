//! Server-sent event streams passing through the proxy (WHATWG HTML §9.2 "Server-sent
//! events"; MCP 2025-11-25 Transports §Streamable HTTP and 2024-11-05 §HTTP with SSE).
//!
//! [`SseBody`] forwards every upstream frame as soon as it arrives, byte for byte, with
//! two exceptions:
//!
//! 1. **Legacy `endpoint` event.** An HTTP+SSE server (MCP 2024-11-05) opens its GET
//!    stream with an `endpoint` event naming the URL to POST messages to. If that URL is
//!    absolute and points at the upstream origin, SDK clients would either bypass the proxy
//!    or refuse the endpoint because its origin differs from the stream's. So the first
//!    event that carries data is examined, and an absolute upstream URL is rewritten to the
//!    proxy's origin. Relative endpoints pass unchanged. After that first event the body is
//!    a pure pass-through.
//! 2. **Shutdown.** Event streams never end on their own. When the proxy shuts down, a
//!    stream is ended cleanly (a proper end of the chunked body) at a frame boundary
//!    instead of being cut mid-event.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How much of a stream's head is held while looking for the legacy `endpoint` event.
/// Real servers send it in the first write; past this much the stream is not legacy.
const ENDPOINT_SCAN_LIMIT: usize = 64 * 1024;

/// An upstream `text/event-stream` body on its way to the client.
pub struct SseBody<B = Incoming> {
    inner: B,
    rewrite: Option<EndpointRewrite>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl<B> SseBody<B> {
    /// Wraps `inner`. The stream ends cleanly when `stop` is cancelled. With `rewrite`,
    /// the legacy `endpoint` event is rewritten as described in the module docs.
    pub fn new(inner: B, stop: CancellationToken, rewrite: Option<EndpointRewrite>) -> Self {
        SseBody { inner, rewrite, stop: Box::pin(stop.cancelled_owned()), done: false }
    }
}

impl<B> Body for SseBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.stop.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    // Whatever was held back while scanning still belongs to the client.
                    return match this.rewrite.take().map(EndpointRewrite::into_remainder) {
                        Some(rest) if !rest.is_empty() => Poll::Ready(Some(Ok(Frame::data(rest)))),
                        _ => Poll::Ready(None),
                    };
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Some(rewrite) = this.rewrite.as_mut() else {
                return Poll::Ready(Some(Ok(frame)));
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
            };
            let (out, finished) = rewrite.feed(data);
            if finished {
                this.rewrite = None;
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            // Nothing complete yet: poll the upstream again (it registered no waker).
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Rewrites an absolute upstream URL in the legacy `endpoint` event to the proxy's origin.
pub struct EndpointRewrite {
    /// Origins (`scheme://host:port`, lowercase) that count as "the upstream".
    upstream_origins: Vec<String>,
    /// What to put in their place (`http://host:port` as the client addressed the proxy),
    /// or empty to make the URL relative.
    proxy_origin: String,
    /// Bytes received but not yet passed on (an incomplete event).
    held: BytesMut,
}

impl EndpointRewrite {
    /// `upstream_origins` are compared case-insensitively; `proxy_origin` replaces them.
    pub fn new(upstream_origins: Vec<String>, proxy_origin: String) -> Self {
        EndpointRewrite { upstream_origins, proxy_origin, held: BytesMut::new() }
    }

    /// Takes the next chunk of the stream. Returns what may be sent on now and whether the
    /// scan is over (the first data-carrying event was seen, or the limit was reached).
    #[doc(hidden)] // public for the fuzz targets
    pub(crate) fn feed(&mut self, data: Bytes) -> (Bytes, bool) {
        if self.held.is_empty() {
            // Common case: the chunk holds whole events. Scan it in place, zero-copy.
            return self.scan(data);
        }
        self.held.extend_from_slice(&data);
        let held = std::mem::take(&mut self.held).freeze();
        self.scan(held)
    }

    fn scan(&mut self, buf: Bytes) -> (Bytes, bool) {
        let mut pos = 0;
        while let Some(end) = block_end(&buf[pos..]) {
            let block = &buf[pos..pos + end];
            if let Some(event) = Event::parse(block) {
                // The first event with data decides: rewrite it if it is an upstream
                // `endpoint`, then stop scanning for good.
                let rewritten = event.is_endpoint().then(|| self.rewrite_block(block, &event)).flatten();
                let out = match rewritten {
                    None => buf,
                    Some(new_block) => {
                        let mut out = BytesMut::with_capacity(buf.len() + self.proxy_origin.len());
                        out.extend_from_slice(&buf[..pos]);
                        out.extend_from_slice(&new_block);
                        out.extend_from_slice(&buf[pos + end..]);
                        out.freeze()
                    }
                };
                return (out, true);
            }
            pos += end;
        }
        if buf.len() - pos > ENDPOINT_SCAN_LIMIT {
            return (buf, true);
        }
        // Pass on the complete (data-less) blocks; hold the incomplete tail.
        self.held.extend_from_slice(&buf[pos..]);
        (buf.slice(..pos), false)
    }

    /// The rewritten block, or `None` if the endpoint is relative or elsewhere.
    fn rewrite_block(&self, block: &[u8], event: &Event<'_>) -> Option<Vec<u8>> {
        let url = std::str::from_utf8(event.data_line?).ok()?;
        let rest = self.upstream_origins.iter().find_map(|origin| {
            let head = url.get(..origin.len())?;
            let tail = &url[origin.len()..];
            (head.eq_ignore_ascii_case(origin) && (tail.is_empty() || tail.starts_with(['/', '?']))).then_some(tail)
        })?;
        let rest = if rest.is_empty() { "/" } else { rest };
        let mut out = Vec::with_capacity(block.len() + self.proxy_origin.len());
        for line in Lines(block) {
            if line.is_empty() {
                continue;
            }
            if event.data_line.is_some_and(|d| same_slice(d, field_value(line))) && line.starts_with(b"data") {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(self.proxy_origin.as_bytes());
                out.extend_from_slice(rest.as_bytes());
            } else {
                out.extend_from_slice(line);
            }
            out.push(b'\n');
        }
        out.push(b'\n');
        Some(out)
    }

    /// What is left when the stream ends. A block ended by a lone CR at the very end is
    /// complete now that no LF can follow, so it still gets its chance to be rewritten;
    /// otherwise the bytes go out exactly as received.
    #[doc(hidden)] // public for the fuzz targets
    pub(crate) fn into_remainder(mut self) -> Bytes {
        let held = std::mem::take(&mut self.held).freeze();
        if held.last() != Some(&b'\r') {
            return held;
        }
        let mut probe = BytesMut::from(&held[..]);
        probe.extend_from_slice(b"\n");
        let (out, _) = self.scan(probe.freeze());
        let unchanged = out.len() == held.len() + 1 && out[..held.len()] == held[..];
        if unchanged || !self.held.is_empty() { held } else { out }
    }
}

/// The fields of one event block that matter here.
struct Event<'a> {
    event_type: Option<&'a [u8]>,
    /// The value of the only `data` line; `None` if there were several.
    data_line: Option<&'a [u8]>,
}

impl<'a> Event<'a> {
    /// Parses a block; `None` if it carries no data (only comments, `id`, `retry`), which
    /// a client would not dispatch.
    fn parse(block: &'a [u8]) -> Option<Event<'a>> {
        let mut event_type = None;
        let mut data_lines = 0;
        let mut data_line = None;
        for (i, line) in Lines(block).enumerate() {
            // A UTF-8 byte order mark may open the stream (WHATWG SSE §9.2.5).
            let line = if i == 0 { line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line) } else { line };
            if line.is_empty() || line[0] == b':' {
                continue;
            }
            let name = line.split(|b| *b == b':').next().unwrap_or(line);
            match name {
                b"event" => event_type = Some(field_value(line)),
                b"data" => {
                    data_lines += 1;
                    data_line = Some(field_value(line));
                }
                _ => {}
            }
        }
        (data_lines > 0).then_some(Event { event_type, data_line: if data_lines == 1 { data_line } else { None } })
    }

    fn is_endpoint(&self) -> bool {
        self.event_type == Some(b"endpoint")
    }
}

/// The value of a `name: value` line: after the first colon, minus one leading space.
fn field_value(line: &[u8]) -> &[u8] {
    match line.iter().position(|b| *b == b':') {
        None => &[],
        Some(i) => {
            let v = &line[i + 1..];
            v.strip_prefix(b" ").unwrap_or(v)
        }
    }
}

fn same_slice(a: &[u8], b: &[u8]) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// The length of the first complete event block in `buf` (through its blank line), if
/// there is one. Lines end in CRLF, LF or CR; a CR at the very end of `buf` might be the
/// first half of a CRLF, so it does not count yet.
fn block_end(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut line_start = 0;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', &buf[pos..]) {
        let at = pos + i;
        let next = if buf[at] == b'\r' {
            match buf.get(at + 1) {
                None => return None,
                Some(b'\n') => at + 2,
                Some(_) => at + 1,
            }
        } else {
            at + 1
        };
        if at == line_start {
            return Some(next);
        }
        line_start = next;
        pos = next;
    }
    None
}

/// Lines of a complete block, without their terminators.
struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr2(b'\r', b'\n', self.0) {
            None => (self.0, &[][..]),
            Some(i) => {
                let skip = if self.0[i] == b'\r' && self.0.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                (&self.0[..i], &self.0[i + skip..])
            }
        };
        self.0 = rest;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> EndpointRewrite {
        EndpointRewrite::new(
            vec!["http://127.0.0.1:3000".into(), "http://localhost:3000".into()],
            "http://127.0.0.1:9999".into(),
        )
    }

    /// Feeds `chunks` and returns everything passed on, plus whether the scan finished.
    fn run(chunks: &[&str]) -> (String, bool) {
        let mut rw = rewriter();
        let mut out = Vec::new();
        for chunk in chunks {
            let (bytes, finished) = rw.feed(Bytes::copy_from_slice(chunk.as_bytes()));
            out.extend_from_slice(&bytes);
            if finished {
                return (String::from_utf8(out).unwrap(), true);
            }
        }
        out.extend_from_slice(&rw.into_remainder());
        (String::from_utf8(out).unwrap(), false)
    }

    #[test]
    fn absolute_upstream_endpoint_is_rewritten() {
        let (out, done) = run(&["event: endpoint\ndata: http://127.0.0.1:3000/messages?sessionId=abc\n\n"]);
        assert!(done);
        assert_eq!(out, "event: endpoint\ndata: http://127.0.0.1:9999/messages?sessionId=abc\n\n");
    }

    #[test]
    fn loopback_alias_and_case_are_matched() {
        let (out, _) = run(&["event: endpoint\r\ndata:HTTP://LOCALHOST:3000/m\r\n\r\n: after\n\n"]);
        assert_eq!(out, "event: endpoint\ndata: http://127.0.0.1:9999/m\n\n: after\n\n");
    }

    #[test]
    fn relative_and_foreign_endpoints_pass_unchanged() {
        for input in [
            "event: endpoint\ndata: /messages?sessionId=abc\n\n",
            "event: endpoint\ndata: https://other.example/messages\n\n",
            "event: endpoint\ndata: http://127.0.0.1:30001/m\n\n",
        ] {
            let (out, done) = run(&[input]);
            assert!(done);
            assert_eq!(out, input);
        }
    }

    #[test]
    fn split_across_chunks_and_crlf_boundaries() {
        let whole = "event: endpoint\r\ndata: http://127.0.0.1:3000/messages\r\n\r\n";
        for cut in 1..whole.len() {
            let (out, done) = run(&[&whole[..cut], &whole[cut..]]);
            assert!(done, "cut at {cut}");
            assert_eq!(out, "event: endpoint\ndata: http://127.0.0.1:9999/messages\n\n", "cut at {cut}");
        }
    }

    #[test]
    fn comment_blocks_pass_immediately_and_only_the_first_data_event_counts() {
        let mut rw = rewriter();
        let (out, done) = rw.feed(Bytes::from_static(b": keepalive\n\nevent: endp"));
        assert_eq!(&out[..], b": keepalive\n\n");
        assert!(!done);
        let (out, done) = rw.feed(Bytes::from_static(b"oint\ndata: http://127.0.0.1:3000/x\n\n"));
        assert!(done);
        assert_eq!(&out[..], b"event: endpoint\ndata: http://127.0.0.1:9999/x\n\n");
    }

    #[test]
    fn streamable_http_streams_are_untouched() {
        let input = "id: 1\ndata:\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\"}\n\n";
        let (out, done) = run(&[input]);
        assert!(done, "the priming event ends the scan");
        assert_eq!(out, input);
        let input = "event: message\ndata: {\"url\":\"http://127.0.0.1:3000/x\"}\n\n";
        assert_eq!(run(&[input]).0, input, "message events are never rewritten");
    }

    #[test]
    fn scan_gives_up_past_the_limit() {
        let big = format!(": {}\n", "x".repeat(ENDPOINT_SCAN_LIMIT + 10));
        let (out, done) = run(&[&big]);
        assert!(done);
        assert_eq!(out, big);
    }

    #[test]
    fn byte_order_mark_and_lone_cr_at_the_end() {
        let (out, _) = run(&["\u{feff}event: endpoint\ndata: http://127.0.0.1:3000/m\n\n"]);
        assert_eq!(out, "\u{feff}event: endpoint\ndata: http://127.0.0.1:9999/m\n\n");
        let (out, _) = run(&["event: endpoint\rdata: http://127.0.0.1:3000/m\r\r"]);
        assert_eq!(out, "event: endpoint\ndata: http://127.0.0.1:9999/m\n\n");
        let (out, _) = run(&[": comment\r"]);
        assert_eq!(out, ": comment\r", "nothing is added to a stream that needed no rewrite");
    }

    #[test]
    fn block_boundaries() {
        assert_eq!(block_end(b"a\n\nb"), Some(3));
        assert_eq!(block_end(b"a\r\n\r\nb"), Some(5));
        assert_eq!(block_end(b"a\r\rb"), Some(3));
        assert_eq!(block_end(b"a\r\n\r"), None, "a trailing CR may be half of CRLF");
        assert_eq!(block_end(b"a\nb\n"), None);
        assert_eq!(block_end(b"\n"), Some(1));
    }
}
