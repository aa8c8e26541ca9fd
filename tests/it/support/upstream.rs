//! Scripted upstreams for the cases a real MCP server will not produce on demand: header
//! capture, hostile or broken answers, stalls, resets, and streams the test paces itself.
//! The real-server tests live in `mcp.rs` (rmcp) and in the interop suite.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The proxy's end of the connection the request came on.
    pub peer: SocketAddr,
}

pub type Body = BoxBody<Bytes, Infallible>;
type Handler = Arc<dyn Fn(Seen) -> Response<Body> + Send + Sync>;

/// An in-process HTTP/1.1 upstream on 127.0.0.1 whose answers a test scripts.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    /// Starts an upstream that answers every request with `handler`.
    pub async fn start(handler: impl Fn(Seen) -> Response<Body> + Send + Sync + 'static) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { return };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let seen =
                                Seen { method: parts.method, uri: parts.uri, headers: parts.headers, body, peer };
                            log.lock().expect("log").push(seen.clone());
                            Ok::<_, Infallible>(handler(seen))
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        ScriptedUpstream { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A complete response.
pub fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    for (k, v) in headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    resp
}

/// An event-stream response whose chunks the test sends through the returned channel;
/// dropping the sender ends the stream. The `released` receiver yields once the proxy
/// has dropped the stream (the upstream connection was released).
pub fn paced_stream(capacity: usize) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel::<Bytes>(capacity);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
    (resp, tx)
}

/// A raw TCP upstream that runs `script` on each accepted connection: for answers no
/// HTTP library will write (garbage, resets, stalls).
pub async fn raw_upstream<F, Fut>(script: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw upstream");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(script);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    (addr, task)
}

/// Reads a request head from a raw connection (bounded), so a raw script answers only
/// after the proxy has spoken. Returns false if the connection closed first (a bare TCP
/// probe, such as the proxy's startup reachability check).
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await.expect("head in time").expect("read");
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    true
}

/// Writes `bytes` and flushes.
pub async fn write_raw(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
