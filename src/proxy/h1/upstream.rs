//! Persistent plain-HTTP/1.1 connections to the target for the own path (RFC 9112 §9.3),
//! kept on an [`IdleStack`]. Whether one is still usable is read from the readiness tokio
//! already tracks: a socket the target closed (or wrote to unasked) has turned readable,
//! and is dropped without a system call in the common case of a live one.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::proxy::idle::{IdleStack, spawn_reaper};

/// The target's connections. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RawPool {
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port` dialled.
    authority: String,
    connect_timeout: Duration,
    idle: IdleStack<TcpStream>,
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    TimedOut,
    Io(io::Error),
}

impl RawPool {
    /// A pool dialling `authority`; inside a runtime it also starts the idle reaper.
    pub(crate) fn new(authority: String, connect_timeout: Duration) -> RawPool {
        let shared = Arc::new(Shared { authority, connect_timeout, idle: IdleStack::default() });
        // Dead ones are found at checkout, where it costs no system call.
        spawn_reaper(Arc::downgrade(&shared), |s| &s.idle, |_| false);
        RawPool { shared }
    }

    /// A live idle connection (`true`: reused) or a new one.
    pub(crate) async fn checkout(&self) -> Result<(TcpStream, bool), ConnectFailure> {
        // Bounded: each turn removes an entry, and there are at most MAX_IDLE.
        loop {
            let Some(stream) = self.shared.idle.pop() else { break };
            if still_open(&stream) {
                return Ok((stream, true));
            }
        }
        Box::pin(self.connect()).await.map(|s| (s, false))
    }

    /// A new connection, never a pooled one.
    async fn connect(&self) -> Result<TcpStream, ConnectFailure> {
        let s = &self.shared;
        let stream = tokio::time::timeout(s.connect_timeout, TcpStream::connect(&s.authority))
            .await
            .map_err(|_| ConnectFailure::TimedOut)?
            .map_err(ConnectFailure::Io)?;
        // Small writes (one SSE event, one request) must leave at once.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Returns a connection whose last response was read to its end.
    pub(crate) fn check_in(&self, stream: TcpStream) {
        self.shared.idle.push(stream);
    }
}

/// Whether an idle connection can carry a request: it must not have turned readable
/// (closed by the target, or bytes nobody asked for). Readiness is tokio's record of the
/// last epoll events; when it says readable, one non-blocking read tells which.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        // A short read of the previous response can leave the readiness set; a read
        // that would block clears it and shows the socket is fine.
        Poll::Ready(Ok(())) => {
            matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}
