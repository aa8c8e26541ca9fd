//! Soak and load test of the real `thv` binary: many concurrent clients mixing POSTs and SSE
//! streams through the proxy with incoming JWT authentication on, then a SIGTERM under load.
//!
//! ```text
//! cargo run --release --example soak -- [--clients 1000] [--duration 5m] [--thv target/release/thv]
//!     [--pause-ms 100] [--slow-percent 5] [--log target/soak-thv.log] [--settle-ms 100]
//! ```
//!
//! `soak/run.sh` builds everything, raises the open-file limit and runs it (`--quick`: 100
//! clients for 20 s, the CI version). What it does:
//!
//! 1. An in-process origin on `127.0.0.1:0`: `POST /mcp` answers a JSON-RPC request with a
//!    JSON answer echoing its `id` and its text (after `delay_ms` when the request asks for
//!    it); `GET /mcp?soak_events=L` with `Accept: text/event-stream` streams `L` events
//!    `id: n` / `data: {"seq":n}`, one every 100 ms, then ends; `GET /jwks` serves the public
//!    half of a fresh ES256 key.
//! 2. Starts `thv proxy soak --target-uri http://127.0.0.1:ORIGIN/mcp --port 0
//!    --oidc-jwks-url http://127.0.0.1:ORIGIN/jwks --oidc-audience soak-audience
//!    --max-connections 4096` and reads the port from its startup line. Preflight: no token
//!    and a wrong-audience token get 401, a valid one gets the origin's answer, a short event
//!    stream arrives whole.
//! 3. N clients (one connection each, kept alive): every third holds an event stream open
//!    (a random length of 3–30 s; a quarter of them are abandoned by the client half-way, so
//!    the proxy must close the upstream stream) and opens the next when it ends; the others
//!    loop sending `tools/call` requests (numeric and string ids; `--slow-percent` of them
//!    ask the origin for a 500 ms delay) with a pause of `--pause-ms` ± 50 %. Every answer
//!    that is not `200` with the same `id` and text is an error; every stream must be `200
//!    text/event-stream` with events `seq` 1, 2, 3 … exactly once and in order, no gap
//!    longer than 5 s, and all `L` of them unless abandoned. The origin also counts requests
//!    that arrive with the client's `Authorization` header (the proxy must consume it).
//! 4. Samples the proxy's open file descriptors (`/proc/PID/fd`) and RSS (`VmRSS`) every 5 s
//!    (more often for runs under 50 s); the warm-up value is the one at 1 minute, or at 20 %
//!    of the duration for shorter runs; the end value is taken when the load phase ends.
//! 5. Shutdown: for the last second half of the POSTs are slow; then clients stop starting
//!    requests, 100 ms later (so every request in flight has been read by the proxy; a
//!    request sent onto an idle keep-alive connection at the very moment the server closes it
//!    is not in flight, HTTP/1.1's inherent race) the proxy gets SIGTERM. Every POST in
//!    flight at that moment must complete with its valid answer, every open event stream
//!    must end cleanly, and `thv` must exit 0 within its shutdown grace (10 s).
//! 6. Prints a table and `soak: N passed, M failed` for the checks: zero unexpected errors,
//!    SSE events once and in order, RSS flat and FD flat (end ≤ 1.2 × warm-up), clean
//!    SIGTERM. Exits 1 if any failed, 2 if the run could not be set up.
//!
//! Everything talks to 127.0.0.1 only; every loop is bounded by the duration plus fixed
//! timeouts; the only process started is `thv`, killed on drop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

const AUDIENCE: &str = "soak-audience";
const TOKENS: usize = 8;
const SLOW_MS: u64 = 500;
const SSE_INTERVAL: Duration = Duration::from_millis(100);
const SSE_STALL: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE_BEFORE_SIGTERM: Duration = Duration::from_millis(100);
const FINAL_SLOW_PHASE: Duration = Duration::from_secs(1);
/// thv's default `--shutdown-timeout`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const FLAT_FACTOR: f64 = 1.2;

// ---------------------------------------------------------------------------------------
// Arguments

struct Args {
    clients: usize,
    duration: Duration,
    thv: PathBuf,
    pause_ms: u64,
    slow_percent: u64,
    log: PathBuf,
    settle: Duration,
    inject: Inject,
    through_sigterm: bool,
}

/// Faults the origin can inject, to show that the checks catch them.
#[derive(Clone, Copy, Default, PartialEq)]
enum Inject {
    #[default]
    None,
    /// Every 50th event of a stream is skipped (a lost event).
    SkipEvent,
    /// Every 1000th POST answer carries another id.
    BadId,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        clients: 1000,
        duration: Duration::from_secs(300),
        thv: PathBuf::from("target/release/thv"),
        pause_ms: 100,
        slow_percent: 5,
        log: PathBuf::from("target/soak-thv.log"),
        settle: SETTLE_BEFORE_SIGTERM,
        inject: Inject::None,
        through_sigterm: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => a.clients = val()?.parse().context("--clients")?,
            "--duration" => a.duration = parse_duration(&val()?).context("--duration")?,
            "--thv" => a.thv = PathBuf::from(val()?),
            "--pause-ms" => a.pause_ms = val()?.parse().context("--pause-ms")?,
            "--slow-percent" => a.slow_percent = val()?.parse().context("--slow-percent")?,
            "--log" => a.log = PathBuf::from(val()?),
            "--inject" => {
                a.inject = match val()?.as_str() {
                    "none" => Inject::None,
                    "skip-event" => Inject::SkipEvent,
                    "bad-id" => Inject::BadId,
                    other => bail!("--inject {other}: none, skip-event or bad-id"),
                }
            }
            "--load-through-sigterm" => a.through_sigterm = true,
            "--settle-ms" => a.settle = Duration::from_millis(val()?.parse().context("--settle-ms")?),
            "-h" | "--help" => {
                println!(
                    "soak [--clients N] [--duration 5m] [--thv PATH] [--pause-ms 100] [--slow-percent 5] [--log FILE] [--settle-ms 100] [--inject none|skip-event|bad-id] [--load-through-sigterm]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    if a.clients < 3 {
        bail!("--clients must be at least 3 (a third hold event streams)");
    }
    if a.duration < Duration::from_secs(5) || a.duration > Duration::from_secs(24 * 3600) {
        bail!("--duration must be between 5s and 24h");
    }
    if a.slow_percent > 100 {
        bail!("--slow-percent is a percentage");
    }
    Ok(a)
}

/// Go-style durations: `5m`, `20s`, `1m30s`, `500ms`, `1h`.
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().with_context(|| format!("{s:?} is not a duration like 5m or 20s"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            u => bail!("{s:?}: unknown unit {u:?} (h, m, s, ms)"),
        };
        total += Duration::from_secs_f64(n * secs);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// A small xorshift generator: load shapes need variety, not cryptographic quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------------------
// Shared counters

#[derive(Default)]
struct Stats {
    posts_ok: AtomicU64,
    posts_slow_ok: AtomicU64,
    errors: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
    error_examples: Mutex<Vec<String>>,
    reconnects: AtomicU64,
    retried: AtomicU64,
    sse_streams: AtomicU64,
    sse_completed: AtomicU64,
    sse_abandoned: AtomicU64,
    sse_open: AtomicI64,
    sse_shutdown_clean: AtomicU64,
    sse_shutdown_error: AtomicU64,
    events: AtomicU64,
    out_of_order: AtomicU64,
    order_examples: Mutex<Vec<String>>,
    max_event_gap_ms: AtomicU64,
    latency: Latency,
}

impl Stats {
    fn error(&self, kind: &str, detail: String) {
        self.errors.fetch_add(1, Relaxed);
        *self.error_kinds.lock().unwrap().entry(kind.to_owned()).or_default() += 1;
        let mut ex = self.error_examples.lock().unwrap();
        if ex.len() < 12 {
            ex.push(detail);
        }
    }
}

/// Latencies of the fast POSTs, in 100 µs buckets up to 10 s.
struct Latency {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

const LAT_BUCKET_US: u64 = 100;
const LAT_BUCKETS: usize = 100_000;

impl Default for Latency {
    fn default() -> Latency {
        Latency { buckets: (0..LAT_BUCKETS).map(|_| AtomicU64::new(0)).collect(), max_us: AtomicU64::new(0) }
    }
}

impl Latency {
    fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        self.max_us.fetch_max(us, Relaxed);
        self.buckets[((us / LAT_BUCKET_US) as usize).min(LAT_BUCKETS - 1)].fetch_add(1, Relaxed);
    }
    fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let want = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return ((i as u64 + 1) * LAT_BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

/// What the origin saw.
#[derive(Default)]
struct OriginState {
    jwks: Bytes,
    inject: Inject,
    /// Keys of POSTs that reached the origin and whose client has not finished yet: tells a
    /// failed request that never reached the origin from one lost on the way back.
    reached: Mutex<HashSet<u64>>,
    posts: AtomicU64,
    token_leaks: AtomicU64,
    bad_requests: AtomicU64,
    sse_open: AtomicI64,
    sse_total: AtomicU64,
    /// Streams that sent their last event (the others were ended by the proxy).
    sse_finished: AtomicU64,
}

/// Client-side state shared by all clients.
struct Ctx {
    addr: SocketAddr,
    host: String,
    tokens: Vec<String>,
    stats: Stats,
    origin: Arc<OriginState>,
    pause_ms: u64,
    slow_percent: AtomicU64,
    /// Clients start nothing new once set.
    stop: AtomicBool,
    stop_at: Mutex<Option<Instant>>,
    /// POSTs in flight: key → started.
    inflight: Mutex<HashMap<u64, Instant>>,
    /// Outcomes of POSTs that finished after `stop` was set.
    late_outcomes: Mutex<HashMap<u64, Result<(), String>>>,
    /// `--load-through-sigterm`: POST clients keep going after the stop until thv is gone.
    through_sigterm: bool,
    /// When SIGTERM was sent, and when thv was seen gone.
    term_at: Mutex<Option<Instant>>,
    thv_gone: AtomicBool,
    /// Outcomes of POSTs started after SIGTERM, by kind (informational).
    after_term: Mutex<BTreeMap<String, u64>>,
    /// Hard end for every client loop, whatever happens.
    deadline: Instant,
}

// ---------------------------------------------------------------------------------------
// Origin

type OriginBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<OriginBody> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()).boxed_unsync())
        .unwrap()
}

async fn start_origin(state: Arc<OriginState>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("soak: origin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| origin_handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(addr)
}

async fn origin_handle(state: Arc<OriginState>, req: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
    if req.headers().contains_key(AUTHORIZATION) {
        state.token_leaks.fetch_add(1, Relaxed);
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/jwks") => Ok(full(StatusCode::OK, "application/json", state.jwks.clone())),
        (Method::POST, "/mcp") => {
            state.posts.fetch_add(1, Relaxed);
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "body")),
            };
            let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                state.bad_requests.fetch_add(1, Relaxed);
                return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "not JSON"));
            };
            let args = &msg["params"]["arguments"];
            if let Some(key) = args["key"].as_u64() {
                state.reached.lock().unwrap().insert(key);
            }
            if let Some(ms) = args["delay_ms"].as_u64().filter(|&ms| ms > 0) {
                tokio::time::sleep(Duration::from_millis(ms.min(5000))).await;
            }
            let posts = state.posts.load(Relaxed);
            let id = if state.inject == Inject::BadId && posts.is_multiple_of(1000) {
                json!("injected")
            } else {
                msg["id"].clone()
            };
            let answer = json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {"content": [{"type": "text", "text": args["text"]}], "isError": false},
            });
            Ok(full(StatusCode::OK, "application/json", answer.to_string()))
        }
        (Method::GET, "/mcp")
            if req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/event-stream")) =>
        {
            let events = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("soak_events="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(100)
                .min(100_000);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "text/event-stream")
                .header("cache-control", "no-cache")
                .body(event_stream(state, events))
                .unwrap())
        }
        _ => Ok(full(StatusCode::NOT_FOUND, "text/plain", "not found")),
    }
}

/// Counts the open upstream streams.
struct StreamGuard {
    state: Arc<OriginState>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state.sse_open.fetch_sub(1, Relaxed);
    }
}

fn event_stream(state: Arc<OriginState>, events: u64) -> OriginBody {
    state.sse_open.fetch_add(1, Relaxed);
    state.sse_total.fetch_add(1, Relaxed);
    let guard = StreamGuard { state };
    let mut interval = tokio::time::interval(SSE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((1u64, interval, guard), move |(n, mut interval, guard)| async move {
        if n > events {
            guard.state.sse_finished.fetch_add(1, Relaxed);
            return None;
        }
        interval.tick().await;
        let n = if guard.state.inject == Inject::SkipEvent && n.is_multiple_of(50) { n + 1 } else { n };
        let frame = Frame::data(Bytes::from(format!("id: {n}\ndata: {{\"seq\":{n}}}\n\n")));
        Some((Ok::<_, Infallible>(frame), (n + 1, interval, guard)))
    });
    StreamBody::new(stream).boxed_unsync()
}

// ---------------------------------------------------------------------------------------
// Keys and tokens

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh ES256 key: the JWKS for the origin and tokens signed with it.
fn keys_and_tokens(issuer: &str) -> anyhow::Result<(Bytes, Vec<String>, String)> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| anyhow!("{e}"))?;
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).map_err(|e| anyhow!("{e}"))?;
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let kid = "soak-key";
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    let now = now_secs();
    let sign = |sub: &str, aud: &str| {
        let claims =
            json!({"iss": issuer, "aud": aud, "sub": sub, "iat": now, "exp": now + 3600, "scope": "mcp:tools"});
        jsonwebtoken::encode(&header, &claims, &key)
    };
    let tokens = (0..TOKENS).map(|i| sign(&format!("soak-user-{i}"), AUDIENCE)).collect::<Result<Vec<_>, _>>()?;
    let wrong_audience = sign("soak-intruder", "some-other-audience")?;
    Ok((Bytes::from(jwks.to_string()), tokens, wrong_audience))
}

// ---------------------------------------------------------------------------------------
// The thv child

struct Thv {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
    log_lines: Arc<Mutex<LogSummary>>,
}

#[derive(Default)]
struct LogSummary {
    warn: u64,
    error: u64,
    panics: u64,
    examples: Vec<String>,
    stdout_after_start: Vec<String>,
}

async fn start_thv(args: &Args, origin: SocketAddr) -> anyhow::Result<Thv> {
    let target = format!("http://{origin}/mcp");
    let jwks = format!("http://{origin}/jwks");
    let mut child = tokio::process::Command::new(&args.thv)
        .args(["proxy", "soak", "--target-uri", &target, "--port", "0", "--oidc-jwks-url", &jwks])
        .args(["--oidc-audience", AUDIENCE, "--max-connections", "4096"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} (build it: cargo build --release --bin thv)", args.thv.display()))?;
    let pid = child.id().context("thv has no pid")?;
    let log_lines = Arc::new(Mutex::new(LogSummary::default()));
    if let Some(dir) = args.log.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ok();
    }
    let mut log = tokio::fs::File::create(&args.log).await.with_context(|| format!("{}", args.log.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let summary = log_lines.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            let mut s = summary.lock().unwrap();
            let level_warn = line.contains(" WARN ");
            let level_error = line.contains(" ERROR ");
            let panic = line.contains("panic");
            s.warn += u64::from(level_warn);
            s.error += u64::from(level_error);
            s.panics += u64::from(panic);
            if (level_warn || level_error || panic) && s.examples.len() < 8 {
                s.examples.push(line.chars().take(300).collect());
            }
        }
        let _ = log.flush().await;
    });
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.split(" on port ").nth(1)
                && let Some(port) = rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok())
            {
                return Ok(port);
            }
        }
        bail!("thv exited before its startup line (see {})", args.log.display())
    })
    .await
    .context("no startup line from thv within 20 s")??;
    let summary = log_lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            summary.lock().unwrap().stdout_after_start.push(line);
        }
    });
    Ok(Thv { child, pid, port, log_lines })
}

#[derive(Clone, Copy, Default)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
}

fn sample_proc(pid: u32, at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample { at, rss_kib, fds })
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Busy CPU seconds of the whole machine (all cores), from `/proc/stat`.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle) as f64 / 100.0)
}

/// Least-squares slope of RSS over the samples from `from` on, in KiB per minute.
fn rss_slope_kib_per_min(samples: &[Sample], from: Duration) -> Option<f64> {
    let pts: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.at >= from).map(|s| (s.at.as_secs_f64() / 60.0, s.rss_kib as f64)).collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn nofile_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Clients

type Sender = SendRequest<Full<Bytes>>;

async fn connect(ctx: &Ctx) -> Result<Sender, String> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(ctx.addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// The client's connection, ready for a request: the kept-alive one, or a new one when the
/// proxy closed it.
async fn ready<'a>(conn: &'a mut Option<Sender>, ctx: &Ctx) -> Result<&'a mut Sender, String> {
    let usable = match conn.as_mut() {
        Some(s) => tokio::time::timeout(REQUEST_TIMEOUT, s.ready()).await.is_ok_and(|r| r.is_ok()),
        None => false,
    };
    if !usable {
        if conn.is_some() {
            ctx.stats.reconnects.fetch_add(1, Relaxed);
        }
        *conn = Some(connect(ctx).await?);
    }
    Ok(conn.as_mut().expect("connected above"))
}

fn stopped(ctx: &Ctx) -> bool {
    ctx.stop.load(Relaxed) || Instant::now() >= ctx.deadline
}

async fn pause(ctx: &Ctx, rng: &mut Rng) {
    let ms = if ctx.pause_ms == 0 { 0 } else { rng.range(ctx.pause_ms / 2, ctx.pause_ms * 3 / 2) };
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn post_client(idx: usize, ctx: Arc<Ctx>) {
    let mut rng = Rng::new(idx as u64 + 1);
    let mut conn: Option<Sender> = None;
    let token = format!("Bearer {}", ctx.tokens[idx % ctx.tokens.len()]);
    let mut seq = 0u64;
    while !post_stopped(&ctx) && seq < u32::MAX as u64 {
        seq += 1;
        let key = ((idx as u64) << 32) | seq;
        let slow = rng.range(1, 100) <= ctx.slow_percent.load(Relaxed);
        let id = if seq.is_multiple_of(2) { json!(key) } else { json!(format!("soak-{key}")) };
        let text = format!("client {idx} request {seq}");
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo",
            "arguments": {"text": text, "key": key, "delay_ms": if slow { SLOW_MS } else { 0 }}}})
        .to_string();
        let started = Instant::now();
        ctx.inflight.lock().unwrap().insert(key, started);
        let outcome = post_once(&mut conn, &ctx, &token, Bytes::from(body), &id, &text).await;
        let elapsed = started.elapsed();
        ctx.inflight.lock().unwrap().remove(&key);
        let reached = ctx.origin.reached.lock().unwrap().remove(&key);
        if ctx.term_at.lock().unwrap().is_some_and(|t| started >= t) {
            // Sent after SIGTERM (--load-through-sigterm): refused or answered, counted apart.
            let kind = match &outcome {
                Ok(()) => "answered correctly".to_owned(),
                Err(e) => format!(
                    "{}{}",
                    e.split(':').next().unwrap_or(e),
                    if reached { " (reached the origin)" } else { "" }
                ),
            };
            *ctx.after_term.lock().unwrap().entry(kind).or_default() += 1;
            if outcome.is_err() {
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        if ctx.stop.load(Relaxed) {
            ctx.late_outcomes.lock().unwrap().insert(key, outcome.clone());
        }
        match outcome {
            Ok(()) => {
                ctx.stats.posts_ok.fetch_add(1, Relaxed);
                if slow {
                    ctx.stats.posts_slow_ok.fetch_add(1, Relaxed);
                } else {
                    ctx.stats.latency.record(elapsed);
                }
            }
            Err(kind) => {
                conn = None;
                let at = ctx.stop_at.lock().unwrap().map(|t| {
                    let rel = Instant::now().saturating_duration_since(t).as_millis();
                    format!(", {rel} ms after stop")
                });
                ctx.stats.error(
                    &format!("POST: {kind}"),
                    format!(
                        "POST key {key} (slow {slow}, {} ms{}): {kind}; {} the origin",
                        elapsed.as_millis(),
                        at.unwrap_or_default(),
                        if reached { "reached" } else { "did not reach" }
                    ),
                );
            }
        }
        if post_stopped(&ctx) {
            break;
        }
        pause(&ctx, &mut rng).await;
    }
}

fn post_stopped(ctx: &Ctx) -> bool {
    if ctx.through_sigterm { ctx.thv_gone.load(Relaxed) || Instant::now() >= ctx.deadline } else { stopped(ctx) }
}

async fn post_once(
    conn: &mut Option<Sender>,
    ctx: &Ctx,
    token: &str,
    body: Bytes,
    id: &Value,
    text: &str,
) -> Result<(), String> {
    let mut attempts = 0;
    let response = loop {
        attempts += 1;
        let sender = ready(conn, ctx).await?;
        let req = Request::post("/mcp")
            .header(HOST, &ctx.host)
            .header(AUTHORIZATION, token)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(Full::new(body.clone()))
            .unwrap();
        match tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req)).await {
            Err(_) => return Err("no response within 30 s".into()),
            // Never sent: the connection closed under it; safe to send again.
            Ok(Err(e)) if e.is_canceled() && attempts < 3 => {
                ctx.stats.retried.fetch_add(1, Relaxed);
                *conn = None;
            }
            Ok(Err(e)) => return Err(format!("transport error: {e}")),
            Ok(Ok(r)) => break r,
        }
    };
    let status = response.status();
    let ctype = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect()).await {
        Err(_) => return Err(format!("status {status}: body not complete within 30 s")),
        Ok(Err(e)) => return Err(format!("status {status}: body error: {e}")),
        Ok(Ok(b)) => b.to_bytes(),
    };
    if status != StatusCode::OK {
        let snippet: String = String::from_utf8_lossy(&bytes).chars().take(160).collect();
        return Err(format!("status {status}: {snippet}"));
    }
    if !ctype.starts_with("application/json") {
        return Err(format!("content-type {ctype:?}"));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))?;
    if &v["id"] != id {
        return Err(format!("answer id {} for request id {id}", v["id"]));
    }
    if v["result"]["content"][0]["text"] != text {
        return Err("answer text differs from the request's".into());
    }
    Ok(())
}

async fn sse_client(idx: usize, ctx: Arc<Ctx>) {
    let mut rng = Rng::new(idx as u64 + 7_777_777);
    let mut conn: Option<Sender> = None;
    let token = format!("Bearer {}", ctx.tokens[idx % ctx.tokens.len()]);
    let mut n = 0u64;
    while !stopped(&ctx) && n < 1_000_000 {
        n += 1;
        let len = rng.range(30, 300);
        let abandon_at = (rng.range(1, 4) == 1).then(|| rng.range(1, len - 1));
        if let Err((kind, detail)) = sse_once(&mut conn, &ctx, &token, len, abandon_at).await {
            conn = None;
            ctx.stats.error(&format!("SSE: {kind}"), format!("SSE client {idx} stream {n} (len {len}): {detail}"));
            // Do not hammer a failing proxy.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if abandon_at.is_some() {
            conn = None;
        }
        if stopped(&ctx) {
            break;
        }
        pause(&ctx, &mut rng).await;
    }
}

struct OpenGauge<'a>(&'a AtomicI64);

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn sse_once(
    conn: &mut Option<Sender>,
    ctx: &Ctx,
    token: &str,
    len: u64,
    abandon_at: Option<u64>,
) -> Result<(), (String, String)> {
    let err = |kind: &str, detail: String| (kind.to_owned(), detail);
    let sender = ready(conn, ctx).await.map_err(|e| err("connect", e))?;
    let req = Request::get(format!("/mcp?soak_events={len}"))
        .header(HOST, &ctx.host)
        .header(AUTHORIZATION, token)
        .header(ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req)).await {
        Err(_) => return Err(err("no response", "no response head within 30 s".into())),
        Ok(Err(e)) if e.is_canceled() => {
            // Never sent; the next round reconnects.
            ctx.stats.retried.fetch_add(1, Relaxed);
            *conn = None;
            return Ok(());
        }
        Ok(Err(e)) => return Err(err("transport error", format!("{e}"))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let ctype = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if status != StatusCode::OK || !ctype.starts_with("text/event-stream") {
        let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await;
        let snippet = body.ok().and_then(|b| b.ok()).map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
        return Err(err(
            &format!("status {status}"),
            format!("status {status}, content-type {ctype:?}: {}", snippet.unwrap_or_default()),
        ));
    }
    ctx.stats.sse_streams.fetch_add(1, Relaxed);
    ctx.stats.sse_open.fetch_add(1, Relaxed);
    let _open = OpenGauge(&ctx.stats.sse_open);
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    let mut last = 0u64;
    let mut last_event = Instant::now();
    loop {
        // After the stop, the proxy's SIGTERM must end the stream well within its grace.
        let wait = match *ctx.stop_at.lock().unwrap() {
            Some(t) => (t + SHUTDOWN_GRACE + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
            None => SSE_STALL,
        }
        .min(SSE_STALL);
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) if ctx.stop.load(Relaxed) => {
                return Err(err("not ended by shutdown", format!("still open after SIGTERM, {last} events")));
            }
            Err(_) => return Err(err("stall", format!("no event for 5 s after event {last}"))),
            Ok(None) => break,
            Ok(Some(Err(e))) if ctx.stop.load(Relaxed) => {
                ctx.stats.sse_shutdown_error.fetch_add(1, Relaxed);
                return Err(err("error at shutdown", format!("{e} after {last} events")));
            }
            Ok(Some(Err(e))) => return Err(err("stream error", format!("{e} after {last} events"))),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(end) = find_event_end(&buf) {
            let event = buf.split_to(end.0 + end.1);
            let text = std::str::from_utf8(&event[..end.0]).map_err(|_| err("bad event", "not UTF-8".into()))?;
            let (mut id, mut seq) = (None, None);
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    seq = serde_json::from_str::<Value>(v.trim()).ok().and_then(|d| d["seq"].as_u64());
                }
            }
            let Some(seq) = seq else {
                return Err(err("bad event", format!("no seq in {text:?}")));
            };
            ctx.stats.events.fetch_add(1, Relaxed);
            let gap = last_event.elapsed();
            last_event = Instant::now();
            if last > 0 {
                ctx.stats.max_event_gap_ms.fetch_max(gap.as_millis() as u64, Relaxed);
            }
            if seq != last + 1 || id != Some(seq) {
                ctx.stats.out_of_order.fetch_add(1, Relaxed);
                let mut ex = ctx.stats.order_examples.lock().unwrap();
                if ex.len() < 8 {
                    ex.push(format!("expected seq {} got seq {seq} id {id:?}", last + 1));
                }
            }
            last = seq;
            if abandon_at == Some(seq) {
                ctx.stats.sse_abandoned.fetch_add(1, Relaxed);
                return Ok(()); // dropping the body and the connection closes it
            }
        }
    }
    if !buf.is_empty() && !ctx.stop.load(Relaxed) {
        return Err(err("truncated event", format!("{} bytes of an unfinished event after {last}", buf.len())));
    }
    if last == len {
        ctx.stats.sse_completed.fetch_add(1, Relaxed);
        Ok(())
    } else if ctx.stop.load(Relaxed) {
        ctx.stats.sse_shutdown_clean.fetch_add(1, Relaxed);
        Ok(())
    } else {
        Err(err("ended early", format!("stream ended after {last} of {len} events")))
    }
}

/// Where the first event in `buf` ends: (length of the event, length of the blank-line
/// separator).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    for i in 0..buf.len() {
        for sep in [&b"\n\n"[..], b"\r\n\r\n", b"\r\r"] {
            if buf[i..].starts_with(sep) {
                return Some((i, sep.len()));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Preflight: auth is really on, the answer and a short stream come through.

async fn preflight(ctx: &Ctx, wrong_audience: &str) -> anyhow::Result<()> {
    let mut conn = None;
    let body = |key: u64| {
        json!({"jsonrpc":"2.0","id":"pre","method":"tools/call","params":{"name":"echo","arguments":{"text":"pre","key":key}}})
            .to_string()
    };
    for (label, auth) in [("no token", None), ("a token for another audience", Some(wrong_audience))] {
        let sender = ready(&mut conn, ctx).await.map_err(|e| anyhow!(e))?;
        let mut req = Request::post("/mcp").header(HOST, &ctx.host).header(CONTENT_TYPE, "application/json");
        if let Some(t) = auth {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender.send_request(req.body(Full::new(Bytes::from(body(1))))?).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status != StatusCode::UNAUTHORIZED {
            bail!("preflight: a POST with {label} got {status}, expected 401: incoming auth is not on");
        }
    }
    let token = format!("Bearer {}", ctx.tokens[0]);
    post_once(&mut conn, ctx, &token, Bytes::from(body(2)), &json!("pre"), "pre")
        .await
        .map_err(|e| anyhow!("preflight: a valid POST failed: {e}"))?;
    ctx.origin.reached.lock().unwrap().clear();
    let before = ctx.stats.events.load(Relaxed);
    sse_once(&mut conn, ctx, &token, 3, None).await.map_err(|(k, d)| anyhow!("preflight: event stream: {k}: {d}"))?;
    let got = ctx.stats.events.load(Relaxed) - before;
    if got != 3 || ctx.stats.sse_completed.load(Relaxed) != 1 {
        bail!("preflight: a 3-event stream delivered {got} events");
    }
    if ctx.origin.token_leaks.load(Relaxed) > 0 {
        bail!("preflight: the client's Authorization header reached the origin");
    }
    // Start the counts from zero.
    ctx.stats.events.store(0, Relaxed);
    ctx.stats.sse_streams.store(0, Relaxed);
    ctx.stats.sse_completed.store(0, Relaxed);
    ctx.stats.posts_ok.store(0, Relaxed);
    ctx.stats.max_event_gap_ms.store(0, Relaxed);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The run

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = rt.block_on(async {
        match run(args).await {
            Ok(failed) => i32::from(failed > 0),
            Err(e) => {
                eprintln!("soak: setup failed: {e:#}");
                println!("soak: 0 passed, 5 failed");
                2
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}

async fn run(args: Args) -> anyhow::Result<usize> {
    let need = 2 * args.clients as u64 + 256;
    match nofile_soft_limit() {
        Some(n) if n < need => {
            bail!(
                "the open-file limit is {n}; {} clients need at least {need}: run `ulimit -n {}` first (soak/run.sh does)",
                args.clients,
                need.max(8192)
            )
        }
        _ => {}
    }
    // thv runs with --oidc-jwks-url and no --oidc-issuer, so `iss` is informational.
    let (jwks, tokens, wrong_audience) = keys_and_tokens("https://soak.invalid")?;
    let origin_state = Arc::new(OriginState { jwks, inject: args.inject, ..OriginState::default() });
    let origin_addr = start_origin(origin_state.clone()).await?;

    let mut thv = start_thv(&args, origin_addr).await?;
    let addr: SocketAddr = ([127, 0, 0, 1], thv.port).into();
    eprintln!(
        "soak: origin {origin_addr}, thv pid {} on port {}, {} clients for {}, log {}",
        thv.pid,
        thv.port,
        args.clients,
        fmt_duration(args.duration),
        args.log.display()
    );
    let hard_deadline = Instant::now() + args.duration + Duration::from_secs(60);
    let ctx = Arc::new(Ctx {
        addr,
        host: format!("127.0.0.1:{}", thv.port),
        tokens,
        stats: Stats::default(),
        origin: origin_state.clone(),
        pause_ms: args.pause_ms,
        slow_percent: AtomicU64::new(args.slow_percent),
        stop: AtomicBool::new(false),
        stop_at: Mutex::new(None),
        inflight: Mutex::new(HashMap::new()),
        late_outcomes: Mutex::new(HashMap::new()),
        through_sigterm: args.through_sigterm,
        term_at: Mutex::new(None),
        thv_gone: AtomicBool::new(false),
        after_term: Mutex::new(BTreeMap::new()),
        deadline: hard_deadline,
    });
    tokio::time::timeout(Duration::from_secs(30), preflight(&ctx, &wrong_audience))
        .await
        .map_err(|_| anyhow!("preflight: no answer from thv within 30 s"))??;

    // Load.
    let start = Instant::now();
    let ramp = (args.duration / 10).min(Duration::from_secs(5));
    let mut tasks = Vec::with_capacity(args.clients);
    let (mut n_sse, mut n_post) = (0, 0);
    for i in 0..args.clients {
        let ctx = ctx.clone();
        let delay = ramp.mul_f64(i as f64 / args.clients as f64);
        let sse = i % 3 == 0;
        if sse {
            n_sse += 1;
        } else {
            n_post += 1;
        }
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if sse { sse_client(i, ctx).await } else { post_client(i, ctx).await }
        }));
    }

    // Samples: every 5 s (every duration/10 for runs under 50 s), plus warm-up and end.
    let warmup_at = (args.duration / 5).min(Duration::from_secs(60));
    let every = (args.duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut times: Vec<Duration> = (1..).map(|k| every * k).take_while(|t| *t < args.duration).collect();
    times.push(warmup_at);
    times.push(args.duration);
    times.sort();
    times.dedup();
    let mut samples: Vec<Sample> = Vec::new();
    let (mut warm, mut end) = (None, None);
    let cpu_start = cpu_secs(thv.pid).unwrap_or(0.0);
    let own_cpu_start = cpu_secs(std::process::id()).unwrap_or(0.0);
    let machine_start = machine_busy_secs().unwrap_or(0.0);
    for t in times {
        tokio::time::sleep_until((start + t).into()).await;
        if let Ok(Some(status)) = thv.child.try_wait() {
            eprintln!("soak: thv exited during the load phase: {status}");
            break;
        }
        let Some(s) = sample_proc(thv.pid, t) else { continue };
        let st = &ctx.stats;
        eprintln!(
            "soak: {:>6} rss {:>7} KiB fds {:>5} | posts {:>9} errors {:>5} | sse open {:>4} (upstream {:>4}) events {:>9} ooo {} | load {}",
            fmt_duration(t),
            s.rss_kib,
            s.fds,
            st.posts_ok.load(Relaxed),
            st.errors.load(Relaxed),
            st.sse_open.load(Relaxed),
            ctx.origin.sse_open.load(Relaxed),
            st.events.load(Relaxed),
            st.out_of_order.load(Relaxed),
            std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
                .unwrap_or_default(),
        );
        if t == warmup_at {
            warm = Some(s);
        }
        if t == args.duration {
            end = Some(s);
        }
        samples.push(s);
    }
    let load_elapsed = start.elapsed();
    let cpu_load = cpu_secs(thv.pid).unwrap_or(0.0) - cpu_start;
    let own_cpu_load = cpu_secs(std::process::id()).unwrap_or(0.0) - own_cpu_start;
    let other_cpu = (machine_busy_secs().unwrap_or(0.0) - machine_start - cpu_load - own_cpu_load).max(0.0);
    let client_sse_open_end = ctx.stats.sse_open.load(Relaxed);
    let origin_sse_open_end = ctx.origin.sse_open.load(Relaxed);
    let posts_at_end = ctx.stats.posts_ok.load(Relaxed);

    // Shutdown under load: a slow-heavy last second, stop, settle, SIGTERM.
    ctx.slow_percent.store(50, Relaxed);
    tokio::time::sleep(FINAL_SLOW_PHASE).await;
    *ctx.stop_at.lock().unwrap() = Some(Instant::now());
    ctx.stop.store(true, Relaxed);
    tokio::time::sleep(args.settle).await;
    let in_flight: Vec<(u64, Instant)> = ctx.inflight.lock().unwrap().iter().map(|(k, v)| (*k, *v)).collect();
    let sse_open_at_term = ctx.stats.sse_open.load(Relaxed);
    let term_sent = Instant::now();
    *ctx.term_at.lock().unwrap() = Some(term_sent);
    let thv_alive = thv.child.try_wait().ok().flatten().is_none();
    let kill = std::process::Command::new("kill").args(["-TERM", &thv.pid.to_string()]).status();
    let exit = match kill {
        Ok(s) if s.success() && thv_alive => {
            tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), thv.child.wait()).await
        }
        _ => Ok(thv.child.try_wait().map(|s| s.unwrap_or_default())),
    };
    let exit_after = term_sent.elapsed();
    ctx.thv_gone.store(true, Relaxed);
    let exit_status = match exit {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = thv.child.start_kill();
            None
        }
    };
    // Let the clients see their answers and stream ends.
    let join_deadline = Instant::now() + Duration::from_secs(20);
    for t in tasks {
        let left = join_deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, t).await.is_err() {
            eprintln!("soak: a client did not finish within 20 s of the shutdown");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let origin_sse_open_after = ctx.origin.sse_open.load(Relaxed);

    // Shutdown results.
    let outcomes = ctx.late_outcomes.lock().unwrap().clone();
    let (mut inflight_ok, mut inflight_failed, mut inflight_unknown) = (0, 0, 0);
    let mut inflight_failures = Vec::new();
    let mut oldest_inflight = Duration::ZERO;
    for (key, started) in &in_flight {
        oldest_inflight = oldest_inflight.max(term_sent.saturating_duration_since(*started));
        match outcomes.get(key) {
            Some(Ok(())) => inflight_ok += 1,
            Some(Err(e)) => {
                inflight_failed += 1;
                if inflight_failures.len() < 5 {
                    inflight_failures.push(format!("key {key}: {e}"));
                }
            }
            None => inflight_unknown += 1,
        }
    }
    let sse_clean = ctx.stats.sse_shutdown_clean.load(Relaxed);
    let sse_term_err = ctx.stats.sse_shutdown_error.load(Relaxed);
    let exited_ok = exit_status.is_some_and(|s| s.success()) && exit_after <= SHUTDOWN_GRACE;

    // Report.
    let st = &ctx.stats;
    let errors =
        st.errors.load(Relaxed) + origin_state.token_leaks.load(Relaxed) + origin_state.bad_requests.load(Relaxed);
    let ooo = st.out_of_order.load(Relaxed);
    let (warm, end) = (warm.unwrap_or_default(), end.unwrap_or_default());
    let ratio = |a: u64, b: u64| if b == 0 { f64::INFINITY } else { a as f64 / b as f64 };
    let rss_ratio = ratio(end.rss_kib, warm.rss_kib);
    let fd_ratio = ratio(end.fds, warm.fds);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let (fd_max, fd_max_at) = samples.iter().map(|s| (s.fds, s.at)).max().unwrap_or_default();
    let log = thv.log_lines.lock().unwrap();
    let secs = load_elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k:<28} | {v} |");
    };
    row("clients", format!("{} ({n_post} POST loops, {n_sse} SSE)", args.clients));
    row("duration", format!("{} (+1 s slow-heavy, then SIGTERM)", fmt_duration(args.duration)));
    row(
        "requests (POST, ok)",
        format!(
            "{} ({} slow, {:.0}/s in the load phase)",
            st.posts_ok.load(Relaxed),
            st.posts_slow_ok.load(Relaxed),
            posts_at_end as f64 / secs
        ),
    );
    row(
        "latency, fast POSTs",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
            st.latency.quantile_ms(0.5),
            st.latency.quantile_ms(0.99),
            st.latency.quantile_ms(0.999),
            st.latency.max_us.load(Relaxed) as f64 / 1000.0
        ),
    );
    row("errors", errors.to_string());
    row(
        "SSE streams",
        format!(
            "{} ({} complete, {} abandoned by the client, {} ended by the shutdown)",
            st.sse_streams.load(Relaxed),
            st.sse_completed.load(Relaxed),
            st.sse_abandoned.load(Relaxed),
            sse_clean
        ),
    );
    row("SSE events", format!("{} (largest gap {} ms)", st.events.load(Relaxed), st.max_event_gap_ms.load(Relaxed)));
    row("out-of-order/duplicate", ooo.to_string());
    row(
        "open upstream / client SSE",
        format!(
            "{origin_sse_open_end} / {client_sse_open_end} at the end of load, {origin_sse_open_after} upstream after exit"
        ),
    );
    row("reconnects / resent", format!("{} / {}", st.reconnects.load(Relaxed), st.retried.load(Relaxed)));
    row(
        &format!("RSS warm-up ({}) / end", fmt_duration(warm.at)),
        format!(
            "{:.1} MiB / {:.1} MiB ({rss_ratio:.2}×; max {:.1} MiB)",
            warm.rss_kib as f64 / 1024.0,
            end.rss_kib as f64 / 1024.0,
            rss_max as f64 / 1024.0
        ),
    );
    let after_warm: Vec<u64> = samples.iter().filter(|s| s.at >= warm.at).map(|s| s.rss_kib).collect();
    row(
        "RSS after warm-up",
        format!(
            "min {:.1} MiB, max {:.1} MiB; slope over the 2nd half {}",
            after_warm.iter().min().copied().unwrap_or(0) as f64 / 1024.0,
            after_warm.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
            rss_slope_kib_per_min(&samples, args.duration / 2)
                .filter(|_| args.duration >= Duration::from_secs(60))
                .map_or("n/a (runs under 1 min)".to_owned(), |k| format!("{k:+.0} KiB/min")),
        ),
    );
    row(
        &format!("FDs warm-up ({}) / end", fmt_duration(warm.at)),
        format!("{} / {} ({fd_ratio:.2}×; max {fd_max} at {})", warm.fds, end.fds, fmt_duration(fd_max_at)),
    );
    row(
        "CPU in the load phase",
        format!(
            "thv {cpu_load:.1} s ({:.0} % of one core), soak clients + origin {own_cpu_load:.1} s ({:.0} %), other processes {other_cpu:.1} s ({:.0} %); {} cores",
            100.0 * cpu_load / secs,
            100.0 * own_cpu_load / secs,
            100.0 * other_cpu / secs,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
    );
    row(
        "shutdown",
        format!(
            "SIGTERM with {} POSTs in flight (oldest {} ms): {inflight_ok} ok, {inflight_failed} failed, {inflight_unknown} unfinished; {sse_open_at_term} SSE open: {sse_clean} ended cleanly, {sse_term_err} with an error; thv {} after {:.2} s",
            in_flight.len(),
            oldest_inflight.as_millis(),
            match exit_status {
                Some(s) => format!("exit {}", s.code().map_or("by signal".to_owned(), |c| c.to_string())),
                None => "did not exit (killed)".to_owned(),
            },
            exit_after.as_secs_f64()
        ),
    );
    let after_term = ctx.after_term.lock().unwrap().clone();
    if args.through_sigterm {
        let list: Vec<String> = after_term.iter().map(|(k, n)| format!("{n} {k}")).collect();
        row("POSTs sent after SIGTERM", if list.is_empty() { "none".to_owned() } else { list.join("; ") });
    }
    row(
        "thv log",
        format!("{} WARN, {} ERROR, {} panic lines ({})", log.warn, log.error, log.panics, args.log.display()),
    );
    println!("\n| metric                       | value |\n|---|---|");
    print!("{out}");
    let kinds = st.error_kinds.lock().unwrap();
    if errors > 0 {
        println!("\nerrors by kind:");
        for (k, n) in kinds.iter() {
            println!("  {n:>8}  {k}");
        }
        if origin_state.token_leaks.load(Relaxed) > 0 {
            println!(
                "  {:>8}  the client's Authorization header reached the origin",
                origin_state.token_leaks.load(Relaxed)
            );
        }
        if origin_state.bad_requests.load(Relaxed) > 0 {
            println!("  {:>8}  the origin received a body that is not JSON", origin_state.bad_requests.load(Relaxed));
        }
        for e in st.error_examples.lock().unwrap().iter() {
            println!("  e.g. {e}");
        }
    }
    for e in st.order_examples.lock().unwrap().iter() {
        println!("  order: {e}");
    }
    for e in &inflight_failures {
        println!("  in-flight failure: {e}");
    }
    for l in &log.examples {
        println!("  thv: {l}");
    }

    let checks = [
        ("zero unexpected errors", errors == 0),
        ("SSE events once and in order", ooo == 0 && st.events.load(Relaxed) > 0),
        ("RSS flat (end ≤ 1.2× warm-up)", warm.rss_kib > 0 && rss_ratio <= FLAT_FACTOR),
        ("FD flat (end ≤ 1.2× warm-up)", warm.fds > 0 && fd_ratio <= FLAT_FACTOR),
        (
            "clean SIGTERM (in-flight POSTs answered, streams ended, exit 0 in grace)",
            exited_ok
                && inflight_failed == 0
                && inflight_unknown == 0
                && sse_term_err == 0
                && origin_sse_open_after == 0
                && log.panics == 0,
        ),
    ];
    println!();
    for (name, ok) in &checks {
        println!("[{}] {name}", if *ok { "pass" } else { "FAIL" });
    }
    let failed = checks.iter().filter(|(_, ok)| !ok).count();
    println!("soak: {} passed, {failed} failed", checks.len() - failed);
    Ok(failed)
}
