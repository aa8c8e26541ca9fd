//! A real MCP server behind the legacy HTTP+SSE transport (MCP 2024-11-05 Transports §HTTP
//! with SSE), for the stdio bridge's legacy transport.
//!
//! rmcp 3 has no legacy SSE server any more, so the transport is the thin part written here
//! (as the TypeScript SDK's `SSEServerTransport` does it): a GET opens an event stream whose
//! first event, `endpoint`, names `/messages?sessionId=N`; each POST there is handed to the
//! session and answered 202; every message of the server goes out on the stream. The MCP
//! side is the same rmcp `DemoServer` the Streamable HTTP tests use, over an in-memory pipe.
//!
//! [`LegacySseServer::forget_sessions`] plays a server restart.
//!
//! Routes: GET `/mcp` (a POST there is 405, as an Express app with only `app.get` answers),
//! GET `/sse`, GET `/old` (a POST there is 404). Loopback only; stopped on drop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::mcp_server::DemoServer;

#[derive(Default)]
struct Shared {
    sessions: Mutex<HashMap<usize, WriteHalf<tokio::io::DuplexStream>>>,
    next: AtomicUsize,
    posts: AtomicUsize,
}

pub struct LegacySseServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl LegacySseServer {
    pub async fn start() -> LegacySseServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .route("/mcp", get(open))
            .route("/sse", get(open))
            .route("/old", get(open).fallback(|| async { StatusCode::NOT_FOUND }))
            .route("/messages", post(message))
            .with_state(shared.clone());
        let done = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(done.cancelled_owned()).await;
        });
        LegacySseServer { addr, shared, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Forgets every session, as a restarted server would: their streams end, and POSTs
    /// to their endpoints are answered 404.
    pub async fn forget_sessions(&self) {
        self.shared.sessions.lock().await.clear();
    }

    /// Event streams opened so far.
    pub fn streams(&self) -> usize {
        self.shared.next.load(Ordering::SeqCst)
    }

    /// Messages POSTed to the endpoint so far.
    pub fn posts(&self) -> usize {
        self.shared.posts.load(Ordering::SeqCst)
    }
}

impl Drop for LegacySseServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn open(State(shared): State<Arc<Shared>>) -> Response {
    let id = shared.next.fetch_add(1, Ordering::SeqCst);
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Ok(running) = DemoServer::new().serve(theirs).await {
            let _ = running.waiting().await;
        }
    });
    let (read, write) = tokio::io::split(ours);
    shared.sessions.lock().await.insert(id, write);
    let first = Bytes::from(format!("event: endpoint\ndata: /messages?sessionId={id}\n\n"));
    let lines = BufReader::new(read).lines();
    let stream = futures_util::stream::unfold((Some(first), lines), |(first, mut lines)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, std::io::Error>(first), (None, lines)));
        }
        let line = lines.next_line().await.ok().flatten()?;
        Some((Ok(Bytes::from(format!("event: message\ndata: {line}\n\n"))), (None, lines)))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("response")
}

async fn message(State(shared): State<Arc<Shared>>, uri: Uri, body: Bytes) -> StatusCode {
    let id = uri.query().and_then(|q| q.strip_prefix("sessionId=")).and_then(|n| n.parse::<usize>().ok());
    let mut sessions = shared.sessions.lock().await;
    let Some(session) = id.and_then(|id| sessions.get_mut(&id)) else { return StatusCode::NOT_FOUND };
    shared.posts.fetch_add(1, Ordering::SeqCst);
    let line: Vec<u8> = body.iter().copied().filter(|b| *b != b'\n').chain([b'\n']).collect();
    if session.write_all(&line).await.is_err() {
        return StatusCode::GONE;
    }
    StatusCode::ACCEPTED
}
