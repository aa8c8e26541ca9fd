//! The diagnostics listener: a separate HTTP/1.1 server, on its own port, that serves only
//! `GET /metrics` (and `HEAD`) in the Prometheus text format 0.0.4. It never carries MCP
//! traffic and never logs request contents; it exists so that scraping cannot be confused
//! with, reach, or slow down the proxied endpoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The exposition's media type (text format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A request head must arrive within this, so an idle or slow peer cannot hold a slot.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapers hold one or two connections; anything beyond this is refused by closing it.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to finish its response after the stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until `stop` is cancelled, then lets responses in progress
/// finish (at most [`DRAIN_TIMEOUT`]) and returns. `render` is called once per scrape.
pub(crate) async fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                debug!(error = %e, "diagnostics listener could not accept a connection");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        if connections.len() >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        let (render, stop) = (render.clone(), stop.clone());
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(answer(&req, &*render)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    // Closes an idle keep-alive connection now, or after the response in
                    // progress.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
                }
            }
        });
    }
    drop(listener);
    // Every task ends within DRAIN_TIMEOUT of the stop; the bound is a second guard.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// The response to one request; only the path and method are looked at.
fn answer(req: &Request<Incoming>, render: &(dyn Fn() -> String + Send + Sync)) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "not found: this listener serves /metrics only\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    // HEAD: hyper sends the head (with this body's Content-Length) and leaves the body out.
    let mut resp = Response::new(Full::new(Bytes::from(render())));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    async fn start() -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(|| "# HELP up Up\n# TYPE up gauge\nup 1\n".into());
        let server = tokio::spawn(serve(listener, render, stop.clone()));
        (addr, stop, server)
    }

    /// Sends one request with `Connection: close` and reads the whole response.
    async fn exchange(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        timeout(WAIT, async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request =
                format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        })
        .await
        .expect("response within the timeout")
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let (addr, stop, server) = start().await;

        let ok = exchange(addr, "GET", "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n# HELP up Up\n# TYPE up gauge\nup 1\n"), "{ok}");

        let head = exchange(addr, "HEAD", "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(head.contains("content-length: 34\r\n"), "{head}");

        let missing = exchange(addr, "GET", "/other").await;
        assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");

        let post = exchange(addr, "POST", "/metrics").await;
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{post}");
        assert!(post.contains("allow: GET, HEAD\r\n"), "{post}");

        stop.cancel();
        timeout(WAIT, server).await.expect("stops on cancel").unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }

    #[tokio::test]
    async fn stop_closes_idle_keep_alive_connections() {
        let (addr, stop, server) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut response = Vec::new();
        while !response.ends_with(b"up 1\n") {
            let n = timeout(WAIT, stream.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed before the whole response");
            response.extend_from_slice(&buf[..n]);
        }
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));

        stop.cancel();
        timeout(WAIT, server).await.expect("stops with a keep-alive connection open").unwrap();
        let n = timeout(WAIT, stream.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "the idle connection was closed");
    }
}
