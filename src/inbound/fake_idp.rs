//! Unit-test support: an IdP on 127.0.0.1 that answers each request with the next canned
//! JSON answer (the last one repeats), and a reader of the registry's counters, so the
//! metrics of key fetches and introspection are checked against real HTTP exchanges.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use crate::telemetry::data::Point;
use crate::telemetry::metrics::Metrics;

/// A running fake IdP.
pub(crate) struct FakeIdp {
    /// `http://127.0.0.1:<port>/`.
    pub(crate) base: Url,
    served: Arc<AtomicUsize>,
}

impl FakeIdp {
    /// Answers `(status, JSON body)` in turn, each on its own connection.
    pub(crate) async fn start(answers: Vec<(u16, String)>) -> FakeIdp {
        assert!(!answers.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let base = Url::parse(&format!("http://{}/", listener.local_addr().expect("bound"))).expect("a URL");
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                read_request(&mut stream).await;
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = &answers[n.min(answers.len() - 1)];
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        FakeIdp { base, served }
    }

    /// `path` under the fake's base URL.
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a URL")
    }

    /// Requests answered so far.
    pub(crate) fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `content-length` body), so the answer does not race it.
async fn read_request(stream: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return;
        }
    }
}

/// The value of the counter `family` in the series labelled `key="word"` (or the only
/// series when `label` is `None`).
pub(crate) fn counted(metrics: &Metrics, family: &str, label: Option<(&str, &str)>) -> u64 {
    let snapshot = metrics.snapshot(&[]);
    let family = snapshot.families.iter().find(|f| f.name == family).expect("a family of the registry");
    let series = family
        .series
        .iter()
        .find(|s| label.is_none_or(|(k, w)| s.labels.iter().any(|(key, word)| *key == k && word == w)))
        .expect("a series");
    match series.point {
        Point::Count(n) => n,
        _ => panic!("{} is no counter", family.name),
    }
}
