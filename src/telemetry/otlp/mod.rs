//! OpenTelemetry export over OTLP/HTTP with protobuf bodies (OTLP spec, "OTLP/HTTP":
//! opentelemetry.io/docs/specs/otlp/#otlphttp): spans to `POST …/v1/traces`, metric
//! snapshots to `POST …/v1/metrics`, `Content-Type: application/x-protobuf`, gzipped with
//! `Content-Encoding: gzip` when asked (OTLP spec, "OTLP/HTTP Request"; OTLP exporter spec,
//! "Compression").
//!
//! This module owns the export's configuration ([`ExportConfig`]); [`proto`] owns the wire
//! format, [`export`] the thread that sends it. Reading the configuration from flags and
//! `OTEL_*` variables is `config`'s job; this module only gives the spec's defaults.
//! Export is off the request path: [`export::Exporter::span`] never blocks, and nothing here can
//! make a request wait for a collector.
//!
//! Use: `export::Exporter::start(config, snapshot)`, then `span()` per finished span and
//! `shutdown()` on the way out; `export::ExportStats` are the export's own counters.

mod encode;
pub(crate) mod export;
mod post;
mod proto;
mod traces;

use std::time::Duration;

use url::Url;

use crate::telemetry::data::Resource;

/// How a signal's bodies are sent (`OTEL_EXPORTER_OTLP_COMPRESSION` and its `_TRACES_` /
/// `_METRICS_` forms; OTLP exporter spec, "Compression"). The spec's default is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Compression {
    #[default]
    None,
    /// RFC 1952, sent with `Content-Encoding: gzip`; compressed on the export thread.
    Gzip,
}

/// Where a signal goes, and how its bodies are encoded: compression is per signal in the
/// spec, so it travels with the signal's URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SignalUrl {
    /// The full URL, `/v1/traces` or `/v1/metrics` included.
    pub(crate) url: Url,
    pub(crate) compression: Compression,
}

impl std::fmt::Debug for SignalUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalUrl").field("url", &self.url.as_str()).field("compression", &self.compression).finish()
    }
}

/// Where and how to export. Signals without a URL are not exported.
#[derive(Clone)]
pub(crate) struct ExportConfig {
    /// `None`: no trace export.
    pub(crate) traces_url: Option<SignalUrl>,
    /// `None`: no metric export.
    pub(crate) metrics_url: Option<SignalUrl>,
    /// Sent with every export (`--otel-headers`, `OTEL_EXPORTER_OTLP_HEADERS`). Secrets:
    /// never logged, and left out of `Debug`.
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Per export request, connecting included (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub(crate) timeout: Duration,
    /// `OTEL_METRIC_EXPORT_INTERVAL`.
    pub(crate) metric_interval: Duration,
    /// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`); more are dropped.
    pub(crate) max_queue: usize,
    /// Spans per export request at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub(crate) max_batch: usize,
    /// How long a span may wait for its batch to fill (`OTEL_BSP_SCHEDULE_DELAY`).
    pub(crate) schedule_delay: Duration,
    pub(crate) resource: Resource,
}

#[cfg(test)]
impl ExportConfig {
    /// The OpenTelemetry SDK defaults ("Environment Variable Specification": OTLP exporter,
    /// periodic metric reader, batch span processor), exporting nothing until URLs are set.
    pub(crate) fn new(resource: Resource) -> ExportConfig {
        ExportConfig {
            traces_url: None,
            metrics_url: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            metric_interval: Duration::from_secs(60),
            max_queue: 2048,
            max_batch: 512,
            schedule_delay: Duration::from_secs(5),
            resource,
        }
    }
}

impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ExportConfig")
            .field("traces_url", &self.traces_url)
            .field("metrics_url", &self.metrics_url)
            .field("header_names", &header_names)
            .field("timeout", &self.timeout)
            .field("metric_interval", &self.metric_interval)
            .field("max_queue", &self.max_queue)
            .field("max_batch", &self.max_batch)
            .field("schedule_delay", &self.schedule_delay)
            .field("resource", &self.resource)
            .finish()
    }
}

/// A signal's URL from the base `OTEL_EXPORTER_OTLP_ENDPOINT`: the base with `v1/traces`
/// or `v1/metrics` appended to its path (OTLP exporter spec, "Endpoint URLs for
/// OTLP/HTTP"). A per-signal endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is used as is.
pub(crate) fn signal_url(base: &Url, signal_path: &str) -> Url {
    let mut url = base.clone();
    let mut path = base.path().to_owned();
    if !path.ends_with('/') {
        path.push('/');
    }
    path.push_str(signal_path.trim_start_matches('/'));
    url.set_path(&path);
    url
}

/// End to end: the exporter against loopback collectors that answer, stall, or are absent.
#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::mpsc;
    use std::time::Instant;

    use prost::Message as _;

    use super::export::{Exporter, SnapshotFn};
    use super::*;
    use crate::telemetry::data::{Family, KeyValue, Kind, Point, Series, Snapshot};

    const OK: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    /// Every wait in these tests ends by then at the latest.
    const PATIENCE: Duration = Duration::from_secs(4);

    struct Request {
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    fn listener() -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        // Polled, so that the serving thread stops by itself at its deadline.
        listener.set_nonblocking(true).expect("nonblocking");
        listener
    }

    fn accept(listener: &TcpListener, until: Instant) -> Option<TcpStream> {
        while Instant::now() < until {
            if let Ok((stream, _)) = listener.accept() {
                stream.set_nonblocking(false).ok()?;
                stream.set_read_timeout(Some(PATIENCE)).ok()?;
                return Some(stream);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// A collector that answers one request per connection with the next of `answers`, and
    /// hands each request to the test.
    fn collector(answers: Vec<&'static str>) -> (SocketAddr, mpsc::Receiver<Request>) {
        let listener = listener();
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let until = Instant::now() + PATIENCE;
            for answer in answers {
                let Some(mut stream) = accept(&listener, until) else { return };
                let Some(request) = read_request(&mut stream) else { return };
                let _ = stream.write_all(answer.as_bytes());
                let _ = tx.send(request);
            }
        });
        (addr, rx)
    }

    fn read_request(stream: &mut TcpStream) -> Option<Request> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(head) = req.parse(&buf).ok()? {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let path = req.path?.to_owned();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())?;
                while buf.len() < head + length {
                    let n = stream.read(&mut chunk).ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                return Some(Request { path, headers, body: buf[head..head + length].to_vec() });
            }
        }
    }

    fn config(addr: SocketAddr) -> ExportConfig {
        let base = Url::parse(&format!("http://{addr}")).expect("url");
        let mut config = ExportConfig::new(Resource { attributes: vec![KeyValue::str("service.name", "thv-test")] });
        let plain = |path| Some(SignalUrl { url: signal_url(&base, path), compression: Compression::None });
        config.traces_url = plain("v1/traces");
        config.metrics_url = plain("v1/metrics");
        config.headers = vec![(http::HeaderName::from_static("x-otlp-key"), http::HeaderValue::from_static("s3cret"))];
        config.timeout = Duration::from_secs(3);
        config.schedule_delay = Duration::from_millis(10);
        // Metrics only at shutdown unless a test says otherwise.
        config.metric_interval = Duration::from_secs(3600);
        config
    }

    fn snapshot() -> SnapshotFn {
        Box::new(|| Snapshot {
            start_unix_nanos: 1,
            time_unix_nanos: 2,
            families: vec![Family {
                name: "toolhive_mcp_requests",
                help: "Requests",
                unit: "{request}",
                kind: Kind::Counter,
                series: vec![Series { labels: vec![], point: Point::Count(3) }],
            }],
        })
    }

    fn span() -> crate::telemetry::data::Span {
        traces::tests::sample_span()
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let until = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn signal_urls_append_to_the_base_path() {
        let base = Url::parse("http://collector:4318").unwrap();
        assert_eq!(signal_url(&base, "v1/traces").as_str(), "http://collector:4318/v1/traces");
        let base = Url::parse("https://gw.example/otlp/").unwrap();
        assert_eq!(signal_url(&base, "v1/metrics").as_str(), "https://gw.example/otlp/v1/metrics");
    }

    #[test]
    fn debug_leaves_header_values_out() {
        let rendered = format!("{:?}", config("127.0.0.1:4318".parse().unwrap()));
        assert!(rendered.contains("x-otlp-key"));
        assert!(!rendered.contains("s3cret"), "{rendered}");
    }

    #[test]
    fn exports_spans_and_metrics_to_a_collector() {
        let (addr, requests) = collector(vec![OK, OK]);
        let exporter = Exporter::start(config(addr), Some(snapshot())).expect("start");
        exporter.span(span());

        let request = requests.recv_timeout(PATIENCE).expect("a trace export");
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(request.header("x-otlp-key"), Some("s3cret"));
        let traces = proto::ExportTraceServiceRequest::decode(request.body.as_slice()).expect("decodes");
        let spans = &traces.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "POST /mcp");

        let stats = exporter.stats();
        wait_for("the export to be counted", || stats.spans_exported.load(Relaxed) == 1);
        // Shutdown makes the last metric export.
        exporter.shutdown(PATIENCE);
        let request = requests.recv_timeout(PATIENCE).expect("a metric export");
        assert_eq!(request.path, "/v1/metrics");
        assert_eq!(request.header("x-otlp-key"), Some("s3cret"));
        let metrics = proto::ExportMetricsServiceRequest::decode(request.body.as_slice()).expect("decodes");
        assert_eq!(metrics.resource_metrics[0].scope_metrics[0].metrics[0].name, "toolhive_mcp_requests");
        assert_eq!(stats.metric_exports.load(Relaxed), 1);
        assert_eq!(stats.trace_exports_failed.load(Relaxed) + stats.metric_exports_failed.load(Relaxed), 0);
    }

    /// With gzip, each signal's body arrives with `Content-Encoding: gzip` and decompresses
    /// to a request the official messages decode; a signal left at none is sent plain.
    #[test]
    fn gzip_bodies_say_so_and_decompress() {
        use std::io::Read as _;
        let (addr, requests) = collector(vec![OK, OK]);
        let mut config = config(addr);
        config.traces_url.as_mut().expect("traces").compression = Compression::Gzip;
        let exporter = Exporter::start(config, Some(snapshot())).expect("start");
        exporter.span(span());
        let request = requests.recv_timeout(PATIENCE).expect("a trace export");
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(request.body.as_slice()).read_to_end(&mut body).expect("gunzip");
        let traces = proto::ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        assert_eq!(traces.resource_spans[0].scope_spans[0].spans[0].name, "POST /mcp");
        exporter.shutdown(PATIENCE);
        let request = requests.recv_timeout(PATIENCE).expect("a metric export");
        assert_eq!(request.path, "/v1/metrics");
        assert_eq!(request.header("content-encoding"), None, "metrics were left uncompressed");
        proto::ExportMetricsServiceRequest::decode(request.body.as_slice()).expect("plain protobuf");
    }

    #[test]
    fn a_throttled_export_is_retried_once() {
        let (addr, requests) = collector(vec![UNAVAILABLE, OK]);
        let mut config = config(addr);
        config.metrics_url = None;
        let exporter = Exporter::start(config, None).expect("start");
        exporter.span(span());
        for _ in 0..2 {
            let request = requests.recv_timeout(PATIENCE).expect("the export, then its retry");
            assert_eq!(request.path, "/v1/traces");
        }
        let stats = exporter.stats();
        wait_for("the retry to be counted", || stats.spans_exported.load(Relaxed) == 1);
        exporter.shutdown(Duration::from_secs(1));
        assert_eq!(stats.trace_exports_failed.load(Relaxed), 0);
    }

    /// A collector that accepts connections and never answers: `span()` stays instant, the
    /// queue fills, the excess is dropped and counted, and shutdown keeps its deadline.
    #[test]
    fn a_stalled_collector_never_blocks_span() {
        let listener = listener();
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let hole = std::thread::spawn(move || {
            let mut held = Vec::new();
            let until = Instant::now() + PATIENCE;
            while stop_rx.try_recv().is_err() && Instant::now() < until {
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut config = config(addr);
        config.max_queue = 4;
        config.max_batch = 2;
        let exporter = Exporter::start(config, Some(snapshot())).expect("start");
        let stats = exporter.stats();

        const SPANS: u64 = 200;
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        for _ in 0..SPANS {
            let one = Instant::now();
            exporter.span(span());
            slowest = slowest.max(one.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(1), "200 spans took {:?}", started.elapsed());
        assert!(slowest < Duration::from_millis(200), "one span() took {slowest:?}");
        // At most one batch in flight, one being gathered and a full queue are accepted.
        assert!(stats.spans_dropped.load(Relaxed) >= SPANS - 8, "dropped {stats:?}");

        let shutdown = Instant::now();
        exporter.shutdown(Duration::from_millis(300));
        assert!(shutdown.elapsed() < Duration::from_secs(1), "shutdown took {:?}", shutdown.elapsed());
        let _ = stop_tx.send(());
        let _ = hole.join();
        let (exported, dropped, failed) =
            (stats.spans_exported.load(Relaxed), stats.spans_dropped.load(Relaxed), stats.spans_failed.load(Relaxed));
        assert_eq!(exported, 0);
        assert!(failed >= 1, "the stalled batch counts as failed: {stats:?}");
        assert_eq!(exported + dropped + failed, SPANS, "every span is accounted for: {stats:?}");
    }

    #[test]
    fn an_absent_collector_is_counted_as_failures() {
        // A port that was just free: nothing listens there any more.
        let addr = listener().local_addr().expect("addr");
        let mut config = config(addr);
        config.metric_interval = Duration::from_millis(20);
        let exporter = Exporter::start(config, Some(snapshot())).expect("start");
        let stats = exporter.stats();
        exporter.span(span());
        wait_for("both signals to fail", || {
            stats.trace_exports_failed.load(Relaxed) >= 1 && stats.metric_exports_failed.load(Relaxed) >= 1
        });
        assert_eq!(stats.spans_failed.load(Relaxed), 1);
        exporter.shutdown(Duration::from_millis(500));
        assert_eq!(stats.spans_exported.load(Relaxed) + stats.metric_exports.load(Relaxed), 0);
    }

    #[test]
    fn nothing_is_exported_without_urls() {
        let mut config = config("127.0.0.1:9".parse().unwrap());
        config.traces_url = None;
        config.metrics_url = None;
        let exporter = Exporter::start(config, Some(snapshot())).expect("start");
        exporter.span(span());
        let stats = exporter.stats();
        let shutdown = Instant::now();
        // Nothing to flush: even an unbounded shutdown returns at once.
        exporter.shutdown(Duration::MAX);
        assert!(shutdown.elapsed() < Duration::from_millis(500));
        assert_eq!(stats.spans_dropped.load(Relaxed) + stats.metric_exports_failed.load(Relaxed), 0);
    }
}
