//! The listener and the process lifecycle: bind first, announce, serve connections,
//! and shut down gracefully on SIGINT/SIGTERM.
//!
//! Shutdown order: stop accepting; end standalone GET event streams (they never finish on
//! their own) cleanly; let every other in-flight request finish within
//! `--shutdown-timeout`; then end what is left cleanly, and close what still will not.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, DIAGNOSTICS_PORT, Diagnostics};
use crate::error::Error;
use crate::exchange::Exchanger;
use crate::inbound::Authenticator;
use crate::inbound::metadata::ProtectedResource;
use crate::outbound::Outbound;
use crate::policy::McpPolicy;
use crate::proxy::deadline::{Deadlines, Drain, Event, Tracked, Watchdog};
use crate::proxy::h1;
use crate::proxy::h1::conn::Outcome;
use crate::proxy::h1::rewind::Rewound;
use crate::proxy::respond::{self, ProxyBody};
use crate::proxy::{Inbound, Proxy, StreamStops};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{Telemetry, diagnostics};

/// After the grace period and the clean end of streams, how long connections get to close.
const FORCE_CLOSE_AFTER: Duration = Duration::from_secs(2);
/// How long the startup reachability probe of the target waits.
const STARTUP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long shutdown waits for the audit log's queue to be written.
const AUDIT_FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last telemetry export.
const TELEMETRY_FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// Runs the proxy until a shutdown signal arrives.
pub(crate) async fn serve(config: Config) -> Result<(), Error> {
    let listener = bind(&config).await?;
    let local = listener.local_addr().map_err(Error::Io)?;
    let stops = StreamStops::default();
    // First: incoming and outgoing auth count their events into its metrics.
    let telemetry = match &config.telemetry {
        Some(t) => {
            let tools = config.policy.as_ref().and_then(|p| p.tools.clone());
            Some(Telemetry::start(t, &config.server_name, tools).map_err(Error::Io)?)
        }
        None => None,
    };
    let metrics = telemetry.as_ref().map(|t| t.metrics().clone());
    let inbound = start_inbound(&config, local.port(), metrics.clone()).await?;
    let outbound = match &config.outbound {
        Some(o) => Some(Outbound::new(o, &config.target, metrics.clone())?),
        None => None,
    };
    let mcp = match &config.policy {
        Some(policy) => Some(McpPolicy::start(policy).map_err(|e| Error::Audit(e.to_string()))?.with_metrics(metrics)),
        None => None,
    };
    let proxy = Proxy::new(&config, local.port(), stops.clone(), inbound, outbound.clone(), mcp, telemetry.clone())?;
    announce(&config, local);
    if let (Some(telemetry), Some(diag)) = (&telemetry, config.telemetry.as_ref().and_then(|t| t.diagnostics)) {
        start_diagnostics(telemetry.clone(), diag, stops.all.clone()).await?;
    }
    // The login runs while the proxy already listens; requests wait with 503.
    if let Some(outbound) = &outbound {
        outbound.start();
    }
    tokio::spawn(probe_target(config.target.socket_authority(), config.target.display()));

    let drain = Drain::default();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let limits = ConnectionLimits { max_header_size: config.max_header_size, header_timeout: config.header_timeout };
    // At the connection limit the proxy stops accepting; new clients wait in the backlog
    // instead of starving the ones being served.
    let slots = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve_connection(stream, peer, proxy.clone(), &drain, limits, slot),
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    println!("Interrupt received, proxy is shutting down. Please wait for connections to close...");
    stops.listening.cancel();
    drain.start();
    // Every connection holds one slot until it has closed: all slots back means all closed.
    let all_closed = slots.acquire_many(u32::try_from(config.max_connections).unwrap_or(u32::MAX));
    tokio::pin!(all_closed);
    if tokio::time::timeout(config.shutdown_timeout, &mut all_closed).await.is_err() {
        warn!(grace = ?config.shutdown_timeout, "grace period over; ending the remaining streams");
        stops.all.cancel();
        if tokio::time::timeout(FORCE_CLOSE_AFTER, &mut all_closed).await.is_err() {
            warn!("closing the connections that are still open");
        }
    }
    if let Some(auditor) = proxy.policy().mcp.as_ref().and_then(McpPolicy::auditor) {
        // Every audit event of the served requests is written before the process ends.
        auditor.close(AUDIT_FLUSH_LIMIT).await;
        let dropped = auditor.dropped();
        if dropped > 0 {
            warn!(
                dropped,
                "audit events were lost (the writer fell behind, or writing failed); see the warnings above"
            );
        }
    }
    if let Some(telemetry) = telemetry {
        // The last spans and one last metric export, bounded: a dead collector cannot hold
        // the exit.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown(TELEMETRY_FLUSH_LIMIT)).await;
    }
    info!("proxy stopped");
    Ok(())
}

/// Binds the diagnostics listener and serves `/metrics` on it. The default port, when
/// taken (several proxies on one machine), gives way to a free one, as ToolHive's does; a
/// port the user asked for does not move. Either way the address is logged.
async fn start_diagnostics(telemetry: Arc<Telemetry>, diag: Diagnostics, stop: CancellationToken) -> Result<(), Error> {
    let listener = match TcpListener::bind(diag.addr).await {
        Ok(l) => l,
        Err(e) if diag.default_port && e.kind() == std::io::ErrorKind::AddrInUse => {
            warn!(port = DIAGNOSTICS_PORT, "the diagnostics port is taken; using a free one (named below)");
            TcpListener::bind(SocketAddr::new(diag.addr.ip(), 0)).await.map_err(Error::Io)?
        }
        Err(e) => {
            return Err(Error::Config(ConfigError::new(
                "--diagnostics-port",
                format!("cannot listen on {}: {e}; choose another port, or 0 for a free one", diag.addr),
            )));
        }
    };
    let addr = listener.local_addr().map_err(Error::Io)?;
    info!(
        "prometheus metrics are served on a dedicated diagnostics port, not the application port: diagnostics listener on http://{addr}/metrics"
    );
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || telemetry.render_prometheus());
    tokio::spawn(diagnostics::serve(listener, render, stop));
    Ok(())
}

/// Binds the listen socket. A busy explicit `--port` is an error: silently moving to
/// another port (as ToolHive's proxy does) leaves clients talking to nothing.
async fn bind(config: &Config) -> Result<TcpListener, Error> {
    let addr = config.listen;
    TcpListener::bind(addr).await.map_err(|e| {
        let problem = match e.kind() {
            io::ErrorKind::AddrInUse => format!(
                "{addr} is already in use; stop what uses it, or choose another port (--port 0 picks a free one)"
            ),
            io::ErrorKind::PermissionDenied => {
                format!("not allowed to listen on {addr}; ports below 1024 need privileges, choose a higher port")
            }
            io::ErrorKind::AddrNotAvailable => {
                return Error::Bind {
                    flag: "--host",
                    problem: format!("{} is not an address of this machine ({e}); use 127.0.0.1 or 0.0.0.0", addr.ip()),
                };
            }
            _ => format!("cannot listen on {addr}: {e}"),
        };
        Error::Bind { flag: "--port", problem }
    })
}

/// Starts incoming authentication (discovery, keys) before the proxy reports ready, or
/// warns that every request is accepted. Its IdP traffic is counted in `metrics`.
async fn start_inbound(config: &Config, port: u16, metrics: Option<Arc<Metrics>>) -> Result<Option<Inbound>, Error> {
    let Some(inbound) = &config.inbound else {
        warn!(
            "no authentication configured: every request that reaches the proxy is accepted (protect it with --oidc-issuer)"
        );
        return Ok(None);
    };
    let resource = ProtectedResource::new(
        inbound.resource_url.clone(),
        &config.target.endpoint_path,
        inbound.issuer.clone(),
        inbound.required_scopes.clone(),
        config.server_name.clone(),
    );
    // Tokens must be meant for this proxy: by default its resource URL, under every name
    // a client may use to reach it.
    let audiences = match (&inbound.audience, &inbound.resource_url) {
        (Some(audience), _) => vec![audience.clone()],
        (None, Some(url)) => vec![url.as_str().to_owned()],
        (None, None) => {
            if !config.listen.ip().is_loopback() {
                warn!(
                    "--resource-url is not set: tokens must name http://{}:{port}{} as audience; set it to the public URL clients use",
                    config.listen_host, config.target.endpoint_path
                );
            }
            let mut names = vec![config.listen_host.clone(), config.listen.ip().to_string()];
            if config.listen.ip().is_loopback() {
                names.extend(["localhost", "127.0.0.1", "[::1]"].map(str::to_owned));
            }
            names.sort();
            names.dedup();
            names.iter().map(|h| resource.resource(&format!("{h}:{port}"))).collect()
        }
    };
    let mut authenticator = Authenticator::start(inbound, audiences, metrics).await?;
    if config.policy.as_ref().is_some_and(McpPolicy::needs_claims) {
        authenticator.keep_claims();
    }
    info!("incoming authentication is on");
    let exchange = match &config.exchange {
        Some(e) => {
            let exchanger = Exchanger::new(e, inbound.ca_bundle.as_deref()).map_err(|why| {
                crate::inbound::StartupError { flag: "--oidc-ca-bundle", problem: format!("the CA bundle {why}") }
            })?;
            info!(url = %crate::oauth::http::redact(&e.url), "each incoming token is exchanged (RFC 8693) for the MCP server");
            Some(exchanger)
        }
        None => None,
    };
    Ok(Some(Inbound { authenticator, resource, exchange }))
}

/// Prints the startup line on stdout (ToolHive's wording, plus the URL clients use).
fn announce(config: &Config, local: SocketAddr) {
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        config.listen_host.clone()
    };
    println!(
        "Transparent proxy started for server {} on port {} -> {} (MCP clients: http://{host}:{}{})",
        config.server_name,
        local.port(),
        config.target.display(),
        local.port(),
        config.target.endpoint_path,
    );
}

/// Warns early when the target is not reachable, so the user does not first learn it from
/// a client's 502.
async fn probe_target(socket: String, upstream: String) {
    match tokio::time::timeout(STARTUP_PROBE_TIMEOUT, TcpStream::connect(&socket)).await {
        Ok(Ok(_)) => debug!(upstream = %upstream, "the MCP server accepts connections"),
        Ok(Err(e)) => {
            warn!(upstream = %upstream, error = %e, "the MCP server is not reachable yet; requests get 502 until it is")
        }
        Err(_) => {
            warn!(upstream = %upstream, "the MCP server did not accept a connection within 2s; requests may fail")
        }
    }
}

/// Per-connection limits from the configuration.
#[derive(Clone, Copy)]
struct ConnectionLimits {
    max_header_size: usize,
    header_timeout: Duration,
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Proxy,
    drain: &Drain,
    limits: ConnectionLimits,
    slot: OwnedSemaphorePermit,
) {
    // Small writes (one SSE event) must leave at once.
    let _ = stream.set_nodelay(true);
    // The header timeout is the watchdog's, not hyper's: hyper's arms a timer per request.
    let (deadlines, mut watchdog) = Deadlines::new(limits.header_timeout, drain);
    tokio::spawn(async move {
        let for_hyper = match proxy.fast_path() {
            Some(fast) => {
                match h1::conn::serve(
                    stream,
                    peer,
                    proxy.policy(),
                    fast,
                    &deadlines,
                    &mut watchdog,
                    limits.max_header_size,
                )
                .await
                {
                    Outcome::Closed => None,
                    Outcome::Fallback(io, draining) => Some((io, draining)),
                }
            }
            None => Some((Rewound::new(bytes::Bytes::new(), stream), false)),
        };
        if let Some((io, draining)) = for_hyper {
            serve_with_hyper(io, peer, proxy, deadlines, watchdog, limits, draining).await;
        }
        drop(slot);
    });
}

/// Serves a connection with hyper until it closes.
async fn serve_with_hyper(
    io: Rewound,
    peer: SocketAddr,
    proxy: Proxy,
    deadlines: Deadlines,
    mut watchdog: Watchdog,
    limits: ConnectionLimits,
    mut draining: bool,
) {
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        let busy = deadlines.begin();
        async move {
            let resp = answer_panics(proxy.handle(req, peer, busy.deadlines())).await;
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, busy)))
        }
    });
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_size)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let ended = std::future::poll_fn(|cx| {
        match watchdog.poll_event(cx) {
            Poll::Ready(Event::Idle) => return Poll::Ready(None),
            Poll::Ready(Event::Drain) => draining = true,
            Poll::Pending => {}
        }
        let polled = conn.as_mut().poll(cx);
        if polled.is_pending() && std::mem::take(&mut draining) {
            // Finish the response in progress, then close (hyper sends `Connection:
            // close` on it). Only after a first poll: a connection handed over from the
            // own path has a request to read, which hyper would drop if told to shut
            // down before it started reading.
            conn.as_mut().graceful_shutdown();
            return conn.as_mut().poll(cx).map(Some);
        }
        polled.map(Some)
    })
    .await;
    match ended {
        None => debug!(%peer, "no complete request head within the header timeout; closed"),
        Some(Err(e)) => debug!(%peer, error = %e, "connection ended with an error"),
        Some(Ok(())) => {}
    }
}

/// Runs one request's handler. A bug must cost one request, not the connection or the
/// process: a panic becomes a 500 with a JSON-RPC error (the panic hook installed by
/// [`crate::telemetry::init`] has already logged it, once, with its location).
///
/// A plain function returning a combinator rather than an `async fn`: an `async fn` would
/// keep its argument and the future it awaits side by side, doubling the size of every
/// request's future (to 5.9 KB) and copying it once more per request.
fn answer_panics(handler: impl Future<Output = Response<ProxyBody>>) -> impl Future<Output = Response<ProxyBody>> {
    AssertUnwindSafe(handler).catch_unwind().map(|answer| {
        answer.unwrap_or_else(|_| {
            respond::jsonrpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                respond::REQUEST_REFUSED,
                "internal error in the proxy",
                None,
            )
            .into_response()
        })
    })
}

/// Resolves on SIGINT or SIGTERM (the proxy's and the stdio bridge's end).
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Incoming;

    /// A handler that panics on `/boom`, served by hyper over a real socket exactly as
    /// `serve_connection` serves the proxy: the client gets a 500 and the same
    /// connection goes on serving.
    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_and_the_connection_survives() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(|req: Request<Incoming>| async move {
                let handler = async move {
                    assert_ne!(req.uri().path(), "/boom", "a bug in a handler");
                    respond::json(StatusCode::OK, r#"{"ok":true}"#.to_owned()).into_response()
                };
                Ok::<_, Infallible>(answer_panics(handler).await)
            });
            http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let get = |path: &str| Request::get(path).header("host", "x").body(Empty::<Bytes>::new()).unwrap();

        let resp = sender.send_request(get("/boom")).await.expect("an answer, not a closed connection");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], respond::REQUEST_REFUSED, "{error}");

        sender.ready().await.expect("the connection is still open");
        let resp = sender.send_request(get("/ok")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    }
}
