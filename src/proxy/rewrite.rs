//! Answers the proxy changes on their way to the client, the same way on both engines:
//! the legacy HTTP+SSE `endpoint` event ([`EndpointRewrite`]) and MCP list answers
//! filtered by policy ([`ListRewrite`]). The own engine feeds a [`Rewrite`] with each
//! de-chunked piece of the target's body; hyper's wraps the body in a [`ListBody`] (the
//! `endpoint` event is `SseBody`'s there).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::respond::ProxyBody;
use crate::mcp::sse::EndpointRewrite;
use crate::policy::filter::{ListRewrite, TooLarge};

/// A rewrite in progress: the legacy `endpoint` event first, then any list answers. A
/// standalone GET stream may need both (the legacy transport delivers its answers there).
pub(crate) struct Rewrite {
    endpoint: Option<EndpointRewrite>,
    list: Option<Box<ListRewrite>>,
}

impl Rewrite {
    pub(crate) fn endpoint(scan: EndpointRewrite) -> Rewrite {
        Rewrite { endpoint: Some(scan), list: None }
    }

    /// Adds the list filter behind what this rewrite already does.
    pub(crate) fn with_list(list: ListRewrite, before: Option<Rewrite>) -> Rewrite {
        Rewrite { endpoint: before.and_then(|r| r.endpoint), list: Some(Box::new(list)) }
    }

    /// Takes the next piece of the body: what may go to the client now, and whether the
    /// rewrite is over (the rest of the body passes as it is).
    pub(crate) fn feed(&mut self, data: Bytes) -> Result<(Bytes, bool), TooLarge> {
        let data = match &mut self.endpoint {
            Some(scan) => {
                let (passed, finished) = scan.feed(data);
                if finished {
                    self.endpoint = None;
                }
                passed
            }
            None => data,
        };
        match &mut self.list {
            Some(list) => list.feed(data).map(|out| (out, false)),
            None => Ok((data, self.endpoint.is_none())),
        }
    }

    /// What the client gets instead of an answer the rewrite could not hold (a list too
    /// large to filter): the JSON-RPC error for the request, as a body or as one event.
    pub(crate) fn refusal(&self) -> Bytes {
        self.list.as_ref().map(|list| list.refusal()).unwrap_or_default()
    }

    /// The body ended: what the rewrite still holds.
    pub(crate) fn finish(self) -> Result<Bytes, TooLarge> {
        let rest = self.endpoint.map(EndpointRewrite::into_remainder).unwrap_or_default();
        let Some(mut list) = self.list else { return Ok(rest) };
        let held = list.feed(rest)?;
        let last = list.finish()?;
        if held.is_empty() {
            return Ok(last);
        }
        let mut out = Vec::with_capacity(held.len() + last.len());
        out.extend_from_slice(&held);
        out.extend_from_slice(&last);
        Ok(Bytes::from(out))
    }
}

/// hyper's engine: a list answer from the target (or a standalone stream that may carry
/// some), filtered as it passes. An answer the rewriter cannot hold ends with the JSON-RPC
/// error for the request (logged): never an unfiltered list.
pub(crate) struct ListBody {
    /// The body as it would go to the client otherwise (an event stream already watched
    /// for shutdown and the legacy `endpoint` event).
    inner: ProxyBody,
    rewrite: Option<ListRewrite>,
    /// The refusal of a rewriter that `finish` consumed.
    last_refusal: Bytes,
}

impl ListBody {
    pub(crate) fn new(inner: ProxyBody, rewrite: ListRewrite) -> ListBody {
        ListBody { inner, rewrite: Some(rewrite), last_refusal: Bytes::new() }
    }
}

impl Body for ListBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(rewrite) = this.rewrite.as_mut() else { return Poll::Ready(None) };
            let out = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Err(e)) => {
                    this.rewrite = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    rewrite.feed(data)
                }
                None => match this.rewrite.take() {
                    Some(rewrite) => {
                        this.last_refusal = rewrite.refusal();
                        rewrite.finish()
                    }
                    None => Ok(Bytes::new()),
                },
            };
            match out {
                Ok(out) if out.is_empty() && this.rewrite.is_some() => continue,
                Ok(out) if out.is_empty() => return Poll::Ready(None),
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Err(e) => {
                    too_large(&e);
                    // After `finish` the rewriter is gone; its refusal is made before that.
                    let refusal = this.rewrite.take().map(|r| r.refusal()).unwrap_or_else(|| this.last_refusal.clone());
                    return Poll::Ready(Some(Ok(Frame::data(refusal))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rewrite.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The length changes: hyper frames it by chunks.
        SizeHint::default()
    }
}

/// A list answer too large to filter was replaced by an error.
pub(crate) fn too_large(e: &TooLarge) {
    tracing::warn!(error = %e, "a list answer from the MCP server was too large to filter; the client gets an error instead");
}
