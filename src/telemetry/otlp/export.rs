//! The export thread: takes finished spans from the request path without ever blocking it,
//! batches them, and POSTs spans and metric snapshots to the collector over OTLP/HTTP.
//!
//! Owns the queue, the batching (the batch span processor's knobs, OpenTelemetry SDK spec
//! "Batching processor"), the HTTP client and the handling of collector answers (OTLP spec
//! "OTLP/HTTP", opentelemetry.io/docs/specs/otlp/#otlphttp: §"OTLP/HTTP Response" for 2xx,
//! §"Failures" for which status codes may be retried, §"OTLP/HTTP Throttling" for
//! `Retry-After`), and the gzip of bodies when asked (OTLP spec, "OTLP/HTTP Request":
//! `Content-Encoding: gzip`).
//!
//! Everything runs on one dedicated thread with its own current-thread runtime, so a slow or
//! dead collector never takes a worker of the proxy's runtime. A collector that misbehaves
//! costs at most one request in flight per signal, one retry, and the bounded queue; spans
//! that do not fit are dropped and counted ([`ExportStats`]), never waited for.

use std::cell::Cell;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use url::Url;

use super::{Compression, ExportConfig, SignalUrl, encode, traces};
use crate::telemetry::data::{Resource, Snapshot, Span};

/// Reads every metric; called on the export thread.
pub(crate) type SnapshotFn = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// A failing collector is worth one line a minute, not one per batch.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The longest a throttled export waits before its one retry: longer would hold up the
/// signal's next batch while the queue fills behind it.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);
/// An OTLP answer is a small protobuf; anything longer is not read (the connection is then
/// closed instead of reused).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROTOBUF: &str = "application/x-protobuf";
/// deflate's fastest level: the export thread shares the proxy's cores, and a protobuf
/// batch is mostly repeated attribute keys and values, which the fastest level already finds
/// (512 of the tests' sample spans, 93 KiB, release build: level 1 gives 9.5 KB in 0.17 ms,
/// level 6 8.7 KB in 0.78 ms).
const GZIP_LEVEL: flate2::Compression = flate2::Compression::fast();
/// Of the time given to [`Exporter::shutdown`], what is kept for the thread to wind down.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(50);
/// A deadline for `Duration::MAX`, which no `Instant` can add.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the export did, for the proxy's own metrics. Every span given to
/// [`Exporter::span`] while traces are exported ends in exactly one of `spans_exported`,
/// `spans_dropped` and `spans_failed` once the exporter has shut down.
#[derive(Debug, Default)]
pub(crate) struct ExportStats {
    /// Spans a collector accepted (2xx).
    pub(crate) spans_exported: AtomicU64,
    /// Spans refused at [`Exporter::span`]: the queue was full or the exporter had stopped.
    pub(crate) spans_dropped: AtomicU64,
    /// Spans that were queued but never reached a collector: their export failed, or
    /// shutdown cut it short.
    pub(crate) spans_failed: AtomicU64,
    /// Trace export requests that failed (after the one retry, if any).
    pub(crate) trace_exports_failed: AtomicU64,
    /// Metric exports a collector accepted.
    pub(crate) metric_exports: AtomicU64,
    /// Metric export requests that failed.
    pub(crate) metric_exports_failed: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// The handle the proxy keeps: hands spans to the export thread and stops it.
pub(crate) struct Exporter {
    /// `None` when traces are not exported.
    spans: Option<mpsc::Sender<Span>>,
    /// Wakes the export thread when a batch is full (otherwise its timer does: see
    /// [`TracePipe::run`]).
    batch_full: Arc<Notify>,
    /// The queue's size, and how many queued spans make a batch.
    max_queue: usize,
    max_batch: usize,
    stats: Arc<ExportStats>,
    /// Taken by the first [`Exporter::shutdown`].
    stop: std::sync::Mutex<Option<oneshot::Sender<Instant>>>,
    /// Disconnects when the thread ends (its sender is dropped with the thread's state);
    /// in a mutex only so that the handle is `Sync` and can be shared by request tasks.
    ended: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Exporter {
    /// Starts the export thread. `snapshot` is called on the export thread every
    /// `metric_interval` (and once at shutdown) when `metrics_url` is set; without either,
    /// no metrics are exported. Fails only if the thread, its runtime or the HTTP client
    /// (TLS roots) cannot be set up.
    pub(crate) fn start(config: ExportConfig, snapshot: Option<SnapshotFn>) -> io::Result<Exporter> {
        let client = client(&config)?;
        let stats = Arc::new(ExportStats::default());
        let batch_full = Arc::new(Notify::new());
        let max_queue = config.max_queue.max(1);
        let max_batch = config.max_batch.max(1);
        let (spans, traces) = match config.traces_url {
            Some(url) => {
                // tokio panics on a zero capacity; a queue of one is the least there is.
                let (tx, rx) = mpsc::channel(max_queue);
                let pipe = TracePipe {
                    target: Target::new(url, "traces"),
                    rx,
                    batch_full: batch_full.clone(),
                    batch: Vec::with_capacity(max_batch),
                    in_flight: 0,
                    max_batch,
                    delay: config.schedule_delay,
                };
                (Some(tx), Some(pipe))
            }
            None => (None, None),
        };
        let metrics = match (config.metrics_url, snapshot) {
            (Some(url), Some(snapshot)) => Some(MetricPipe {
                target: Target::new(url, "metrics"),
                snapshot,
                // `interval` panics on zero.
                interval: config.metric_interval.max(Duration::from_millis(1)),
            }),
            _ => None,
        };
        let worker =
            Worker { poster: Poster { client, stats: stats.clone() }, resource: config.resource, traces, metrics };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stop_rx) = oneshot::channel();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("thv-otlp".to_owned()).spawn(move || {
            let _ended = ended_tx;
            runtime.block_on(worker.run(stop_rx));
            // A DNS lookup stuck on a blocking thread must not hold up the exit.
            runtime.shutdown_background();
        })?;
        Ok(Exporter {
            spans,
            batch_full,
            max_queue,
            max_batch,
            stats,
            stop: std::sync::Mutex::new(Some(stop)),
            ended: std::sync::Mutex::new(ended),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a finished span for export. Never blocks and allocates nothing beyond the span
    /// itself (the channel's slots are reused); when the queue is full the span is dropped
    /// and counted in [`ExportStats::spans_dropped`]. A no-op when traces are not exported.
    pub(crate) fn span(&self, span: Span) {
        let Some(tx) = &self.spans else { return };
        if tx.try_send(span).is_err() {
            add(&self.stats.spans_dropped, 1);
        } else if self.max_queue - tx.capacity() == self.max_batch {
            // The span that made a batch: the export thread need not wait for its timer.
            self.batch_full.notify_one();
        }
    }

    /// The export's counters, for the proxy's own metrics; they stay readable after shutdown.
    pub(crate) fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Flushes the queued spans and makes one last metric export, waiting at most `within`;
    /// then the thread ends (or, past `within`, is left to end on its own at its deadline).
    /// Takes `&self` (the proxy's handle is shared by request tasks); a second call does
    /// nothing.
    pub(crate) fn shutdown(&self, within: Duration) {
        let start = std::time::Instant::now();
        let lock = |m| std::sync::Mutex::lock(m).unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(stop) = lock(&self.stop).take() else { return };
        // The thread stops exporting a little before `within` is up, so that it has the time
        // to count what it leaves unsent and end before this stops waiting for it.
        let margin = (within / 10).min(SHUTDOWN_MARGIN);
        // The thread may already be gone (a panic in `snapshot`); then there is nothing to wait for.
        let now = Instant::now();
        let _ = stop.send(now.checked_add(within - margin).unwrap_or(now + FOREVER));
        let ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = within.saturating_sub(start.elapsed());
        if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = ended.recv_timeout(left)
            && let Some(thread) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            let _ = thread.join();
        }
    }
}

/// The HTTP client of the exporter. No redirects: the headers carry the collector's
/// credentials, and a redirect would hand them to wherever it points. No proxy from the
/// environment: those variables are for the proxied traffic (as in `oauth::http`).
fn client(config: &ExportConfig) -> io::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let mut value = value.clone();
        // Keeps the value out of any `Debug` rendering of a request.
        value.set_sensitive(true);
        headers.append(name.clone(), value);
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
        // OTLP/HTTP: exporters SHOULD identify themselves in User-Agent.
        .user_agent(concat!("thv-otlp-exporter/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .no_proxy()
        .build()
        .map_err(io::Error::other)
}

/// The export thread's state.
struct Worker {
    poster: Poster,
    resource: Resource,
    traces: Option<TracePipe>,
    metrics: Option<MetricPipe>,
}

impl Worker {
    async fn run(self, stop: oneshot::Receiver<Instant>) {
        let Worker { poster, resource, mut traces, metrics } = self;
        let deadline = {
            // Each signal has its own loop, so a stuck trace export never delays metrics.
            let spans = async {
                if let Some(t) = traces.as_mut() {
                    t.run(&poster, &resource).await;
                }
                std::future::pending::<()>().await;
            };
            let metric_loop = async {
                if let Some(m) = &metrics {
                    m.run(&poster, &resource).await;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                // Dropped without `shutdown`: stop at once.
                deadline = stop => deadline.ok(),
                ((), ()) = async { tokio::join!(spans, metric_loop) } => None,
            }
        };
        let Some(deadline) = deadline else { return };
        let flush_spans = async {
            if let Some(t) = traces.as_mut() {
                t.flush(&poster, &resource).await;
            }
        };
        let flush_metrics = async {
            if let Some(m) = &metrics {
                m.export(&poster, &resource).await;
            }
        };
        let _ = tokio::time::timeout_at(deadline, async { tokio::join!(flush_spans, flush_metrics) }).await;
        if let Some(t) = traces.as_mut() {
            t.abandon(&poster.stats);
        }
    }
}

struct TracePipe {
    target: Target,
    rx: mpsc::Receiver<Span>,
    batch_full: Arc<Notify>,
    batch: Vec<Span>,
    /// Spans of the request in flight, to count them if shutdown cancels it.
    in_flight: usize,
    max_batch: usize,
    delay: Duration,
}

impl TracePipe {
    /// Exports what is queued every `delay`, or as soon as a batch is full; returns when
    /// every sender is gone. The queue is only ever read with `try_recv`, never awaited: a
    /// receiver waiting on it would be woken by every span, a thread switch per request on
    /// a busy proxy. Spans wait in the queue instead, and the thread wakes a few times a
    /// second.
    async fn run(&mut self, poster: &Poster, resource: &Resource) {
        loop {
            let _ = tokio::time::timeout(self.delay, self.batch_full.notified()).await;
            loop {
                let gone = self.drain();
                if !self.batch.is_empty() {
                    let full = self.batch.len() == self.max_batch;
                    self.export(poster, resource).await;
                    if full && !gone {
                        continue;
                    }
                }
                if gone {
                    return;
                }
                break;
            }
        }
    }

    /// Moves queued spans into the batch, up to its size; whether every sender is gone.
    fn drain(&mut self) -> bool {
        while self.batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(span) => self.batch.push(span),
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    async fn export(&mut self, poster: &Poster, resource: &Resource) {
        let body = traces::encode_traces(resource, &self.batch);
        self.in_flight = self.batch.len();
        self.batch.clear();
        let ok = poster.post(&self.target, body).await;
        let n = std::mem::take(&mut self.in_flight);
        if ok {
            add(&poster.stats.spans_exported, n);
        } else {
            add(&poster.stats.spans_failed, n);
            add(&poster.stats.trace_exports_failed, 1);
        }
    }

    /// At shutdown: the request that was in flight is lost (sending it again could
    /// duplicate spans); everything queued is exported.
    async fn flush(&mut self, poster: &Poster, resource: &Resource) {
        add(&poster.stats.spans_failed, std::mem::take(&mut self.in_flight));
        self.rx.close();
        loop {
            while self.batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(span) => self.batch.push(span),
                    Err(_) => break,
                }
            }
            if self.batch.is_empty() {
                return;
            }
            self.export(poster, resource).await;
        }
    }

    /// Counts what the shutdown deadline left unsent.
    fn abandon(&mut self, stats: &ExportStats) {
        self.rx.close();
        let mut n = std::mem::take(&mut self.in_flight) + self.batch.len();
        self.batch.clear();
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        add(&stats.spans_failed, n);
    }
}

struct MetricPipe {
    target: Target,
    snapshot: SnapshotFn,
    interval: Duration,
}

impl MetricPipe {
    async fn run(&self, poster: &Poster, resource: &Resource) {
        let mut tick = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        // After a slow export, the next one comes a full interval later, not in a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.export(poster, resource).await;
        }
    }

    async fn export(&self, poster: &Poster, resource: &Resource) {
        let body = encode::encode_metrics(resource, &(self.snapshot)());
        if poster.post(&self.target, body).await {
            add(&poster.stats.metric_exports, 1);
        } else {
            add(&poster.stats.metric_exports_failed, 1);
        }
    }
}

/// A signal's endpoint, its compression and the rate limit of its failure warnings.
struct Target {
    url: Url,
    compression: Compression,
    /// The URL as logged: no userinfo, query or fragment, which may hold credentials.
    shown: String,
    signal: &'static str,
    last_warn: Cell<Option<Instant>>,
}

impl Target {
    fn new(SignalUrl { url, compression }: SignalUrl, signal: &'static str) -> Target {
        Target { shown: shown_url(&url), url, compression, signal, last_warn: Cell::new(None) }
    }

    /// Logs the first failure, then at most one a minute. Names the URL and the status or
    /// the kind of error only: never a header value, never the response body.
    fn warn(&self, failure: &Failure) {
        let now = Instant::now();
        if let Some(last) = self.last_warn.get()
            && now.duration_since(last) < WARN_EVERY
        {
            return;
        }
        self.last_warn.set(Some(now));
        tracing::warn!(
            signal = self.signal,
            url = %self.shown,
            "OTLP export failed: {failure}; the data is dropped (further failures are logged at most once a minute)"
        );
    }
}

fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have userinfo, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Why an export failed.
#[derive(Debug, PartialEq)]
enum Failure {
    /// 429, 502, 503, 504: the collector asks to come back later, after this long (capped).
    Throttled(StatusCode, Duration),
    Status(StatusCode),
    Transport(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Throttled(status, _) => write!(f, "HTTP {} (after one retry)", status.as_u16()),
            Failure::Status(status) => write!(f, "HTTP {}", status.as_u16()),
            Failure::Transport(kind) => f.write_str(kind),
        }
    }
}

struct Poster {
    client: reqwest::Client,
    stats: Arc<ExportStats>,
}

impl Poster {
    /// Sends one export, retrying once if the collector asked to come back later. The body
    /// is compressed here, on the export thread, once for both tries.
    async fn post(&self, target: &Target, body: Vec<u8>) -> bool {
        let body = match target.compression {
            Compression::None => body,
            Compression::Gzip => match gzip(&body) {
                Ok(gzipped) => gzipped,
                Err(_) => {
                    target.warn(&Failure::Transport("cannot compress the body"));
                    return false;
                }
            },
        };
        let body = Bytes::from(body);
        let mut result = self.send(target, body.clone()).await;
        if let Err(Failure::Throttled(_, wait)) = result {
            tokio::time::sleep(wait).await;
            result = self.send(target, body).await;
        }
        match result {
            Ok(()) => true,
            Err(failure) => {
                target.warn(&failure);
                false
            }
        }
    }

    async fn send(&self, target: &Target, body: Bytes) -> Result<(), Failure> {
        let mut request = self.client.post(target.url.clone()).header(header::CONTENT_TYPE, PROTOBUF);
        if target.compression == Compression::Gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
        }
        let mut response = request.body(body).send().await.map_err(|e| Failure::Transport(error_kind(&e)))?;
        let status = response.status();
        let wait = retry_after(response.headers());
        // Read (a bounded amount of) the answer so the connection can be reused. A 2xx body
        // may carry `partial_success`, which is only informative; other bodies are ignored.
        let mut read = 0;
        while read <= MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        if status.is_success() {
            return Ok(());
        }
        match status.as_u16() {
            429 | 502 | 503 | 504 => {
                Err(Failure::Throttled(status, wait.unwrap_or(MAX_RETRY_WAIT).min(MAX_RETRY_WAIT)))
            }
            _ => Err(Failure::Status(status)),
        }
    }
}

/// `body` as one gzip member (RFC 1952). Writing into memory does not fail; the `Result` is
/// flate2's signature.
fn gzip(body: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 32), GZIP_LEVEL);
    encoder.write_all(body)?;
    encoder.finish()
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// A short, fixed description of a transport error. `reqwest`'s own message names the URL,
/// query included, so it is not logged.
fn error_kind(e: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused",
                io::ErrorKind::TimedOut => return "timed out",
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => return "connection closed",
                _ => {}
            }
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "bad response"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_can_be_shared_by_request_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Exporter>();
    }

    #[test]
    fn logged_urls_carry_no_credentials() {
        let url = Url::parse("https://user:pass@collector.example:4318/v1/traces?api_key=s3cret#x").unwrap();
        assert_eq!(shown_url(&url), "https://collector.example:4318/v1/traces");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_logged_once_a_minute() {
        let url = Url::parse("http://127.0.0.1:4318/v1/traces").unwrap();
        let target = Target::new(SignalUrl { url, compression: Compression::None }, "traces");
        target.warn(&Failure::Transport("connection refused"));
        let first = target.last_warn.get().expect("the first failure is logged");
        tokio::time::advance(WARN_EVERY / 2).await;
        target.warn(&Failure::Transport("connection refused"));
        assert_eq!(target.last_warn.get(), Some(first), "not again within the minute");
        tokio::time::advance(WARN_EVERY).await;
        target.warn(&Failure::Status(StatusCode::BAD_REQUEST));
        assert!(target.last_warn.get() > Some(first), "again after it");
    }

    /// Gunzipped (flate2's reader here; the interop suite's receiver uses Python's gzip), a
    /// gzip body is the exact bytes of the uncompressed encoding, for both signals; and it is
    /// smaller.
    #[test]
    fn a_gzip_body_is_the_exact_encoding() {
        use std::io::Read as _;
        let resource = Resource { attributes: vec![crate::telemetry::data::KeyValue::str("service.name", "thv-t")] };
        let spans: Vec<Span> = (0..64).map(|_| traces::tests::sample_span()).collect();
        let families = vec![crate::telemetry::data::Family {
            name: "toolhive_mcp_requests",
            help: "Requests",
            unit: "{request}",
            kind: crate::telemetry::data::Kind::Counter,
            series: vec![crate::telemetry::data::Series {
                labels: vec![("server", "s".to_owned())],
                point: crate::telemetry::data::Point::Count(3),
            }],
        }];
        let snapshot = Snapshot { start_unix_nanos: 1, time_unix_nanos: 2, families };
        for plain in [traces::encode_traces(&resource, &spans), encode::encode_metrics(&resource, &snapshot)] {
            let gzipped = gzip(&plain).expect("gzip");
            assert_eq!(&gzipped[..2], &[0x1f, 0x8b], "a gzip member (RFC 1952 magic)");
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(gzipped.as_slice()).read_to_end(&mut unzipped).expect("gunzip");
            assert_eq!(unzipped, plain);
        }
        let plain = traces::encode_traces(&resource, &spans);
        let gzipped = gzip(&plain).expect("gzip");
        assert!(gzipped.len() * 4 < plain.len(), "64 spans: {} bytes gzipped from {}", gzipped.len(), plain.len());
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a date in the past means now");
        headers.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn failures_name_the_status_or_the_kind_only() {
        assert_eq!(Failure::Status(StatusCode::UNAUTHORIZED).to_string(), "HTTP 401");
        let throttled = Failure::Throttled(StatusCode::SERVICE_UNAVAILABLE, MAX_RETRY_WAIT);
        assert_eq!(throttled.to_string(), "HTTP 503 (after one retry)");
        assert_eq!(Failure::Transport("connection refused").to_string(), "connection refused");
    }
}
