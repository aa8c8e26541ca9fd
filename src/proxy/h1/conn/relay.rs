//! The target's answer on the own path ([`super`]'s second half): relayed to the client as
//! it arrives, rewritten where the MCP policy filters a list, and the connection to the
//! target checked back in when its framing allows.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Poll, ready};

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::super::body::{self, Decoder};
use super::super::emit::{EmitError, Readers, emit, refuse};
use super::super::io::poll_read_with;
use super::super::request::{Method, Plan};
use super::super::response;
use super::{Conn, Wake};
use crate::policy::Admitted;
use crate::proxy::rewrite::Rewrite;

impl Conn<'_> {
    /// Passes the target's response on as it arrives.
    pub(super) async fn relay(
        &mut self,
        mut upstream: TcpStream,
        received: Vec<u8>,
        head: response::Plan,
        plan: &Plan,
        admitted: Option<Box<Admitted>>,
    ) -> bool {
        let p = self.policy;
        self.status = head.status;
        p.upstream_answered(head.status, head.bearer_challenge);
        let mut out = head.head;
        let draining = self.flags.draining.load(Ordering::Relaxed);
        if draining && !plan.close {
            // The head was made before the drain was known; say it now, before its empty line.
            let Some(fields) = out.strip_suffix(b"\r\n").map(<[u8]>::len) else { return false };
            out.truncate(fields);
            out.extend_from_slice(b"connection: close\r\n\r\n");
        }
        let mut decoder = Decoder::new(head.framing);
        let stream = head.event_stream.then(|| p.event_stream(plan.method == Method::Get, self.client_host(plan)));
        if let Some(observed) = self.observed.as_mut().filter(|_| head.event_stream) {
            observed.event_stream();
        }
        let (mut rewrite, stop) = match stream {
            Some(stream) => (stream.rewrite.map(Rewrite::endpoint), Some(stream.stop)),
            None => (None, None),
        };
        // Boxed, as the policy's decision: without a policy the state holds one pointer.
        let mut tap = None;
        if let Some(admitted) = admitted {
            let Admitted { list, audit, .. } = *admitted;
            if let Some(list) = list.filter(|_| head.rewrite) {
                rewrite = Some(Rewrite::with_list(list.rewriter(head.event_stream), rewrite));
            }
            tap = self.audited(audit, head.status);
        }
        let mut reusable = head.reusable;
        let mut sent = 0u64;
        let Some(tail) = received.get(head.head_len..) else { return false };
        match emit(
            &mut decoder,
            tail,
            &mut out,
            head.chunked,
            &mut rewrite,
            &mut sent,
            Readers { tap: &mut tap, observed: &mut self.observed },
        ) {
            Ok(used) => reusable &= used == tail.len(),
            Err(EmitError::Refused) => return self.refused(&out, sent).await,
            Err(e) => return self.broke_off(&e, &[]).await,
        }
        drop(received);
        if !decoder.is_done() {
            if self.client.write_all(&out).await.is_err() {
                return false;
            }
            self.sent = sent;
            out.clear();
            let mut stop: Option<Pin<Box<WaitForCancellationFutureOwned>>> =
                stop.map(|token| Box::pin(token.cancelled_owned()));
            if head.event_stream {
                // A stream may stay open for hours: hold no buffer between events.
                out = Vec::new();
                if self.buf.len() == plan.end {
                    self.buf = Vec::new();
                    self.released = true;
                }
            }
            // Saturation changes nothing: no buffer reaches usize::MAX.
            let pipelined_limit = self.max_head.saturating_add(plan.end);
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
                        match emit(
                            &mut decoder,
                            data,
                            &mut out,
                            head.chunked,
                            &mut rewrite,
                            &mut sent,
                            Readers { tap: &mut tap, observed: &mut self.observed },
                        ) {
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
                        if let Some(scan) = rewrite.take() {
                            let refusal = scan.refusal();
                            match scan.finish() {
                                Ok(rest) => {
                                    if let Some(tap) = tap.as_mut() {
                                        tap.observe(&rest);
                                    }
                                    if let Some(observed) = self.observed.as_mut().filter(|o| o.reads_answer()) {
                                        observed.answer_bytes(&rest);
                                    }
                                    out.extend_from_slice(&rest);
                                    sent = sent.saturating_add(rest.len() as u64);
                                }
                                Err(e) => {
                                    let _ = refuse(&e, refusal, &mut out, start, head.chunked, &mut sent);
                                    return self.refused(&out, sent).await;
                                }
                            }
                        }
                        if head.chunked {
                            body::frame_chunk(&mut out, start);
                            out.extend_from_slice(body::LAST_CHUNK);
                        }
                    }
                    Wake::UpstreamError(e) => return self.broke_off(&e, &out).await,
                    Wake::BadBody(EmitError::Refused) => return self.refused(&out, sent).await,
                    // What is past a framing error is not passed on.
                    Wake::BadBody(e) => return self.broke_off(&e, &[]).await,
                    Wake::ClientGone => return false,
                    Wake::Stopped => {
                        // Shutdown: end the stream cleanly at an event boundary the target made.
                        if head.chunked {
                            out.extend_from_slice(body::LAST_CHUNK);
                        }
                        if self.client.write_all(&out).await.is_ok() {
                            self.sent = sent;
                        }
                        return false;
                    }
                }
                if !out.is_empty() {
                    if self.client.write_all(&out).await.is_err() {
                        return false;
                    }
                    self.sent = sent;
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
        self.sent = sent;
        if reusable {
            self.fast.pool.check_in(upstream);
        }
        !draining
    }

    /// The target's response ended early or broke its framing: the client gets what came
    /// before (`sent_on`) and then a closed connection, so an incomplete body never looks
    /// complete. Always `false`: the connection cannot carry another request.
    async fn broke_off(&mut self, why: &(dyn std::fmt::Display + Sync), sent_on: &[u8]) -> bool {
        self.policy.broke_off(why, self.observed.as_deref());
        if !sent_on.is_empty() {
            let _ = self.client.write_all(sent_on).await;
        }
        false
    }

    /// A list answer too large to filter: `out` ends the client's answer with its refusal;
    /// the rest of the target's answer is never read, so neither connection is reused.
    async fn refused(&mut self, out: &[u8], sent: u64) -> bool {
        if self.client.write_all(out).await.is_ok() {
            self.sent = sent;
        }
        false
    }
}
