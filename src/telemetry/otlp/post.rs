//! One export's trip to the collector over OTLP/HTTP (opentelemetry.io/docs/specs/otlp/#otlphttp):
//! the HTTP client, the body's gzip when asked ("OTLP/HTTP Request": `Content-Encoding:
//! gzip`), the collector's answer (§"OTLP/HTTP Response" for 2xx, §"Failures" for the status
//! codes that may be retried, §"OTLP/HTTP Throttling" for `Retry-After`) and the one warning
//! a minute a failing collector is worth. The export thread ([`super::export`]) decides what
//! to send and when.

use std::cell::Cell;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use tokio::time::Instant;
use url::Url;

use super::export::ExportStats;
use super::{Compression, ExportConfig, SignalUrl};

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

/// The HTTP client of the exporter. No redirects: the headers carry the collector's
/// credentials, and a redirect would hand them to wherever it points. No proxy from the
/// environment: those variables are for the proxied traffic (as in `oauth::http`).
pub(super) fn client(config: &ExportConfig) -> io::Result<reqwest::Client> {
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

/// A signal's endpoint, its compression and the rate limit of its failure warnings.
pub(super) struct Target {
    url: Url,
    compression: Compression,
    /// The URL as logged: no userinfo, query or fragment, which may hold credentials.
    shown: String,
    signal: &'static str,
    last_warn: Cell<Option<Instant>>,
}

impl Target {
    pub(super) fn new(SignalUrl { url, compression }: SignalUrl, signal: &'static str) -> Target {
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

pub(super) struct Poster {
    pub(super) client: reqwest::Client,
    pub(super) stats: Arc<ExportStats>,
}

impl Poster {
    /// Sends one export, retrying once if the collector asked to come back later. The body
    /// is compressed here, on the export thread, once for both tries.
    pub(super) async fn post(&self, target: &Target, body: Vec<u8>) -> bool {
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
    use crate::telemetry::data::{Resource, Snapshot, Span};
    use crate::telemetry::otlp::{encode, traces};

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
