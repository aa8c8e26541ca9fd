//! Persistent HTTP/1.1 connections to the target (RFC 9112 §9.3).
//!
//! The proxy talks to exactly one origin, so it does not need hyper-util's general pool,
//! which per request hashes a pool key, formats a `Host` value and spawns a task to wait
//! until the connection is idle again. Here idle connections sit on a stack (the most
//! recently used, whose socket and buffers are warm, is taken first). A connection goes
//! back on the stack when the response body it carries has been read to the end; a body
//! dropped early closes the connection, because the rest of that response would still be
//! on the wire.
//!
//! HTTP/1.1 only, as nginx's `proxy_http_version 1.1`: every MCP server speaks it, and
//! one request per connection keeps a slow stream from delaying anyone else's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service as _;
use tracing::debug;

use super::idle::{IdleStack, spawn_reaper};

/// The sending half of one connection to the target.
pub(crate) type Sender = http1::SendRequest<Full<Bytes>>;

/// Why no connection to the target could be opened.
pub(crate) type ConnectError = Box<dyn std::error::Error + Send + Sync>;

/// The connections to the target. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/` of the target: what the connector dials.
    origin: Uri,
    idle: IdleStack<Sender>,
}

/// A connection ready for one request.
pub(crate) struct Checkout {
    pub(crate) sender: Sender,
    /// Whether it served a request before: only then may a request it could not even
    /// start be retried on another (the server may have closed it while it was idle).
    pub(crate) reused: bool,
}

impl Pool {
    /// A pool dialling `origin` through `connector`. Inside a Tokio runtime it also starts
    /// a task that closes connections idle for too long.
    pub(crate) fn new(connector: HttpsConnector<HttpConnector>, origin: Uri) -> Pool {
        let shared = Arc::new(Shared { connector, origin, idle: IdleStack::default() });
        spawn_reaper(Arc::downgrade(&shared), |s| &s.idle, Sender::is_closed);
        Pool { shared }
    }

    /// An idle connection that is still open, or a new one.
    pub(crate) async fn checkout(&self) -> Result<Checkout, ConnectError> {
        // Bounded: each turn removes one entry, and the stack holds at most MAX_IDLE.
        loop {
            // Its own statement: the lock is released before any await.
            let Some(mut sender) = self.shared.idle.pop() else { break };
            if sender.is_closed() {
                continue;
            }
            // A connection comes back the moment its response body ends; hyper's task for
            // it may not have turned idle yet, which takes one more poll of that task.
            if sender.ready().await.is_ok() {
                return Ok(Checkout { sender, reused: true });
            }
        }
        // Boxed: the connector's future (DNS, TCP, TLS) is kilobytes, and inline it would
        // make every request's future that much larger to move around; connecting is rare.
        Box::pin(self.connect()).await
    }

    /// Opens a new connection.
    async fn connect(&self) -> Result<Checkout, ConnectError> {
        let io = self.shared.connector.clone().call(self.shared.origin.clone()).await?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "connection to the MCP server ended");
            }
        });
        Ok(Checkout { sender, reused: false })
    }

    /// Wraps a response body so that its connection comes back when the body is complete.
    pub(crate) fn body(&self, body: Incoming, sender: Sender) -> UpstreamBody {
        let mut body = UpstreamBody { inner: body, checkin: Some((sender, self.shared.clone())) };
        if body.inner.is_end_stream() {
            body.check_in();
        }
        body
    }
}

impl Shared {
    fn check_in(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle.push(sender);
        }
    }
}

/// A response body from the target whose connection returns to the pool once the body
/// has been read to its end.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    checkin: Option<(Sender, Arc<Shared>)>,
}

impl UpstreamBody {
    fn check_in(&mut self) {
        if let Some((sender, pool)) = self.checkin.take() {
            pool.check_in(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.check_in(),
            // A Content-Length body is over with its last byte; the server side may not
            // poll again once `is_end_stream` says so.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.check_in(),
            Poll::Ready(Some(Err(_))) => this.checkin = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
