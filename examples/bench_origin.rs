//! Benchmark origin: a small, fast, single-threaded MCP-ish HTTP server for `bench/`.
//!
//! ```text
//! bench_origin --port 18090 [--jwks FILE] [--payload-bytes 200]
//! ```
//!
//! * `POST` (any path): a JSON-RPC request. `initialize`, `tools/list`, `tools/call`, `ping`
//!   are answered with a JSON body (`application/json`); `tools/list` names 100 tools (`echo`,
//!   `tool_001` … `tool_099`, each with a title, description, input schema and, for three in
//!   four, annotations: ~47 KB, the size of a real server's list) for the policy bench's
//!   filtered-list rows; with `?sse=1` in the query, or an
//!   `Accept` that names only `text/event-stream`, the same answer comes as one SSE event.
//!   Notifications (no `id`) get `202 Accepted`. The body may be large (the 5 MiB test).
//! * `GET` with `Accept: text/event-stream` (any path): an endless event stream, one event
//!   immediately and then one every `interval_ms` (query, default 10; successive streams get
//!   spread phases), each
//!   `data: {"seq":N,"t_ns":UNIX_NANOS}` stamped when the event is written, so a client can
//!   measure per-event latency as now − t_ns (same machine, same clock).
//! * `GET /jwks.json`: the file given with `--jwks` (a static JWKS for the JWT bench rows);
//!   `GET /.well-known/openid-configuration` (and `oauth-authorization-server`): metadata
//!   naming `http://127.0.0.1:PORT` as the issuer and that JWKS.
//! * any other `GET`: `200 ok`.
//!
//! One thread (a current-thread runtime), like nginx `worker_processes 1`: the bench pins it
//! to the same CPU as the proxy under test. The first line on stdout is
//! `bench_origin listening on 127.0.0.1:PORT`. Stops on SIGTERM/SIGINT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::time::{Interval, MissedTickBehavior};

type OriginBody = Either<Either<Full<Bytes>, Empty<Bytes>>, EventStream>;

struct Config {
    port: u16,
    jwks: Bytes,
    metadata: Bytes,
    tool_text: String,
    tools_list: String,
}

/// The `tools/list` result: 100 tools. bench/callgrind.py builds the same list (`tools_list()`).
fn tools_list() -> String {
    let tools: Vec<String> = (0..100)
        .map(|i| {
            let name = if i == 0 { "echo".to_owned() } else { format!("tool_{i:03}") };
            let annotations = if i % 4 == 3 {
                String::new()
            } else {
                format!(
                    r#","annotations":{{"readOnlyHint":{},"destructiveHint":{},"idempotentHint":true,"openWorldHint":false}}"#,
                    i % 2 == 0,
                    i % 3 == 0
                )
            };
            format!(
                concat!(
                    r#"{{"name":"{name}","title":"Tool {i}","description":"Bench tool {i}: takes a message and a count "#,
                    r#"and returns the message repeated; one of 100 that size a realistic tools/list answer.","#,
                    r#""inputSchema":{{"type":"object","properties":{{"message":{{"type":"string","description":"#,
                    r#""The text to echo"}},"count":{{"type":"integer","minimum":1,"maximum":10,"description":"#,
                    r#""How many times"}}}},"required":["message"]}}{annotations}}}"#
                ),
                name = name,
                i = i,
                annotations = annotations
            )
        })
        .collect();
    format!(r#"{{"tools":[{}]}}"#, tools.join(","))
}

fn parse_args() -> Result<Config, String> {
    let mut port = 18090u16;
    let mut jwks = Bytes::from_static(br#"{"keys":[]}"#);
    let mut payload = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--jwks" => {
                let path = val()?;
                jwks = Bytes::from(std::fs::read(&path).map_err(|e| format!("--jwks {path}: {e}"))?);
            }
            "--payload-bytes" => payload = val()?.parse().map_err(|e| format!("--payload-bytes: {e}"))?,
            "-h" | "--help" => {
                println!("bench_origin --port PORT [--jwks FILE] [--payload-bytes N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Config { port, jwks, metadata: Bytes::new(), tool_text: "x".repeat(payload), tools_list: tools_list() })
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench_origin: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(serve(cfg));
}

async fn serve(mut cfg: Config) {
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], cfg.port))).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench_origin: cannot listen on 127.0.0.1:{}: {e}", cfg.port);
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("local addr");
    println!("bench_origin listening on {local}");
    let issuer = format!("http://{local}");
    cfg.metadata = Bytes::from(
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks.json"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string(),
    );
    let cfg: &'static Config = Box::leak(Box::new(cfg));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| async move { Ok::<_, Infallible>(handle(req, cfg).await) });
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    });
                }
                // Out of descriptors (the stream-holding test): wait for some to close.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
}

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<OriginBody> {
    let mut resp = Response::new(Either::Left(Either::Left(Full::new(body.into()))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

fn wants_only_sse(req: &Request<Incoming>) -> bool {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("text/event-stream") && !accept.contains("application/json")
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn handle(req: Request<Incoming>, cfg: &'static Config) -> Response<OriginBody> {
    match *req.method() {
        Method::POST => post(req, cfg).await,
        Method::GET if req.uri().path() == "/jwks.json" => full(StatusCode::OK, "application/json", cfg.jwks.clone()),
        Method::GET
            if matches!(
                req.uri().path(),
                "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server"
            ) =>
        {
            full(StatusCode::OK, "application/json", cfg.metadata.clone())
        }
        Method::GET if wants_only_sse(&req) => {
            let ms = query_param(&req, "interval_ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(10).max(1);
            let mut resp = Response::new(Either::Right(EventStream::new(Duration::from_millis(ms))));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        Method::GET | Method::HEAD => full(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        Method::DELETE => {
            let mut resp = Response::new(Either::Left(Either::Right(Empty::new())));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        _ => full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::from_static(b"method not allowed\n")),
    }
}

#[derive(serde::Deserialize)]
struct RpcRequest<'a> {
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

async fn post(req: Request<Incoming>, cfg: &'static Config) -> Response<OriginBody> {
    let sse = query_param(&req, "sse") == Some("1") || wants_only_sse(&req);
    let body = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return full(StatusCode::BAD_REQUEST, "text/plain", Bytes::from_static(b"bad body\n")),
    };
    let rpc: RpcRequest<'_> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return full(
                StatusCode::BAD_REQUEST,
                "application/json",
                Bytes::from_static(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#),
            );
        }
    };
    let Some(id) = rpc.id else {
        let mut resp = Response::new(Either::Left(Either::Right(Empty::new())));
        *resp.status_mut() = StatusCode::ACCEPTED;
        return resp;
    };
    let result = match rpc.method {
        "initialize" => concat!(
            r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":false}},"#,
            r#""serverInfo":{"name":"bench_origin","version":"0.1.0"}}"#
        )
        .to_owned(),
        "tools/list" => cfg.tools_list.clone(),
        "tools/call" => format!(r#"{{"content":[{{"type":"text","text":"{}"}}],"isError":false}}"#, cfg.tool_text),
        "ping" => "{}".to_owned(),
        _ => {
            let msg = format!(
                r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32601,"message":"method not found"}}}}"#,
                id.get()
            );
            return full(StatusCode::OK, "application/json", msg);
        }
    };
    let msg = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get());
    if sse {
        full(StatusCode::OK, "text/event-stream", format!("event: message\ndata: {msg}\n\n"))
    } else {
        full(StatusCode::OK, "application/json", msg)
    }
}

/// Streams opened so far: spreads the phases of their ticks.
static STREAMS: AtomicU64 = AtomicU64::new(0);

/// An endless event stream: an event right away, then one per tick, stamped when written.
/// The ticks of successive streams are spread over the interval (golden-ratio phases), so
/// many streams opened together do not all fire in the same timer tick.
struct EventStream {
    first: bool,
    tick: Interval,
    seq: u64,
}

impl EventStream {
    fn new(every: Duration) -> EventStream {
        let n = STREAMS.fetch_add(1, Ordering::Relaxed);
        let phase = every.mul_f64((n as f64 * 0.618_033_988_75).fract());
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every + phase, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        EventStream { first: true, tick, seq: 0 }
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !std::mem::take(&mut this.first) && this.tick.poll_tick(cx).is_pending() {
            return Poll::Pending;
        }
        let t_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let ev = format!("id: {0}\ndata: {{\"seq\":{0},\"t_ns\":{t_ns}}}\n\n", this.seq);
        this.seq += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(ev)))))
    }
}
