//! Raw HTTP/1.1 on both sides of the proxy for the differential tests: a recording target
//! that answers as the current case says, a client that sends exact bytes and reads one
//! response off the wire, and the parsing both need (heads, chunked bodies, trailers).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::support::upstream::raw_upstream;

/// How long the client waits for a whole answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long a target connection waits for its next request.
const IDLE_TARGET: Duration = Duration::from_secs(30);

/// What the target does with each request while a case runs.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// These bytes, keeping the connection open for the next request.
    Keep(&'static str),
    /// These bytes, then close.
    Close(&'static str),
    /// Close without answering.
    Hangup,
    /// Say nothing for 3 s (past `--upstream-timeout 1s`), then close.
    Stall,
    /// An endless event stream: one event every 50 ms (at most 200) until a write fails.
    Endless,
    /// A plain 200 on a connection's first request; on a reused one, close without answering.
    HangupIfReused,
}

/// The target's usual answer: 200 with a JSON body, connection kept.
pub const OK: Answer =
    Answer::Keep("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}");

/// One request as the target got it.
#[derive(Clone, Debug)]
pub struct Got {
    /// The request line, exactly.
    pub line: String,
    /// Field names lowercased, values trimmed, in arrival order.
    pub fields: Vec<(String, String)>,
    /// The body, de-chunked when chunked.
    pub body: Vec<u8>,
    /// How many requests came before it on its connection (0: a fresh connection).
    pub seq: usize,
}

/// A raw TCP target on 127.0.0.1 recording every request; both proxies of a pair use it.
pub struct Target {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Got>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Target {
    pub async fn start() -> Target {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(OK));
        let (log, slot) = (got.clone(), answer.clone());
        let (addr, _task) = raw_upstream(move |s| serve(s, log.clone(), slot.clone())).await;
        Target { addr, got, answer }
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn since(&self, from: usize) -> Vec<Got> {
        self.got.lock().unwrap()[from..].to_vec()
    }
}

/// One target connection: at most 100 requests, each within IDLE_TARGET.
async fn serve(mut s: TcpStream, log: Arc<Mutex<Vec<Got>>>, slot: Arc<Mutex<Answer>>) {
    let mut buf = Vec::new();
    for seq in 0..100 {
        let Some(mut got) = read_request(&mut s, &mut buf).await else { return };
        got.seq = seq;
        log.lock().unwrap().push(got);
        let answer = *slot.lock().unwrap();
        let written = match answer {
            Answer::Keep(bytes) => s.write_all(bytes.as_bytes()).await.is_ok(),
            Answer::Close(bytes) => {
                let _ = s.write_all(bytes.as_bytes()).await;
                false
            }
            Answer::Hangup => false,
            Answer::HangupIfReused if seq > 0 => false,
            Answer::HangupIfReused => s.write_all(ok_bytes()).await.is_ok(),
            Answer::Stall => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                false
            }
            Answer::Endless => {
                endless(&mut s).await;
                false
            }
        };
        if !written {
            return;
        }
    }
}

fn ok_bytes() -> &'static [u8] {
    match OK {
        Answer::Keep(bytes) => bytes.as_bytes(),
        _ => unreachable!(),
    }
}

async fn endless(s: &mut TcpStream) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for i in 0..200 {
        let event = format!("data: {i}\n\n");
        if s.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes()).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one request (Content-Length or chunked body), keeping extra bytes in `buf`;
/// `None` when the connection closes or stays idle too long.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Got> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(buf) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let fields = fields(&head);
            let body = if is_chunked(&fields) {
                match dechunk(&buf[end..]) {
                    (data, Some((_, used))) => Some((data, used)),
                    _ => None,
                }
            } else {
                let n = field(&fields, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                buf.get(end..end + n).map(|b| (b.to_vec(), n))
            };
            if let Some((body, used)) = body {
                buf.drain(..end + used);
                let line = head.split("\r\n").next().unwrap_or_default().to_owned();
                return Some(Got { line, fields, body, seq: 0 });
            }
        }
        let n = timeout(IDLE_TARGET, s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the head at the start of `buf`, empty line included.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The fields of a head (its first line skipped): names lowercased, values trimmed.
pub fn fields(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_ascii_lowercase(), v.trim().to_owned()),
            None => (format!("(no colon) {l}"), String::new()),
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn is_chunked(fields: &[(String, String)]) -> bool {
    fields.iter().any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"))
}

/// Header fields: (lowercased name, trimmed value).
type Fields = Vec<(String, String)>;

/// Decodes the chunked body at the start of `buf`: the data of every complete chunk, and
/// once the last chunk and trailer section are there, the trailers and the bytes used.
fn dechunk(buf: &[u8]) -> (Vec<u8>, Option<(Fields, usize)>) {
    let (mut data, mut at) = (Vec::new(), 0);
    // Bounded: every round consumes at least one line of `buf`.
    loop {
        let Some(line) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return (data, None) };
        let size = String::from_utf8_lossy(&buf[at..at + line]).into_owned();
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            return (data, None);
        };
        at += line + 2;
        if size == 0 {
            let rest = &buf[at..];
            if rest.starts_with(b"\r\n") {
                return (data, Some((Vec::new(), at + 2)));
            }
            return match head_end(rest) {
                Some(end) => {
                    let trailers = fields(&format!("-\r\n{}", String::from_utf8_lossy(&rest[..end])));
                    (data, Some((trailers, at + end)))
                }
                None => (data, None),
            };
        }
        match buf.get(at..at + size + 2) {
            Some(chunk) => data.extend_from_slice(&chunk[..size]),
            None => {
                data.extend_from_slice(&buf[at.min(buf.len())..(at + size).min(buf.len())]);
                return (data, None);
            }
        }
        at += size + 2;
    }
}

/// How much of the answer the client reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Read {
    /// The whole response, as framed.
    Whole,
    /// The head and the first event (up to the first blank line), then the client closes.
    FirstEvent,
}

/// What the client got: interim responses, the final one, and how the exchange ended.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub interim: Vec<String>,
    /// The status line, or a note in parentheses when no response came.
    pub status_line: String,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// `complete`, `first event`, `cut short` or `timeout`.
    pub end: &'static str,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// Sends `raw` on a fresh connection to `port` and reads one response.
pub async fn exchange(port: u16, raw: &[u8], read: Read, head_only: bool) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to thv");
    let _ = s.write_all(raw).await;
    let deadline = Instant::now() + ANSWER_WITHIN;
    let (mut buf, mut chunk, mut reply) = (Vec::new(), [0u8; 8192], Reply::default());
    let mut eof = false;
    // Bounded by the deadline: every round reads or ends.
    loop {
        if let Some(done) = parse_reply(&mut buf, &mut reply, eof, read, head_only) {
            reply.end = done;
            return reply;
        }
        if eof {
            reply.end = "cut short";
            if reply.status_line.is_empty() {
                reply.status_line = if buf.is_empty() { "(closed without an answer)".into() } else { lossy(&buf) };
            }
            return reply;
        }
        match timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                reply.end = "timeout";
                if reply.status_line.is_empty() {
                    reply.status_line = "(no answer in time)".into();
                }
                return reply;
            }
        }
    }
}

/// Parses what `buf` holds into `reply`; `Some(end)` once the answer is complete.
fn parse_reply(buf: &mut Vec<u8>, reply: &mut Reply, eof: bool, read: Read, head_only: bool) -> Option<&'static str> {
    // Bounded: each round drains one interim head.
    loop {
        let end = head_end(buf)?;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let line = head.split("\r\n").next().unwrap_or_default().to_owned();
        reply.status_line = line;
        reply.fields = fields(&head);
        let status = reply.status();
        if (100..200).contains(&status) && status != 101 {
            reply.interim.push(reply.status_line.clone());
            buf.drain(..end);
            continue;
        }
        let rest = &buf[end..];
        if head_only || status == 204 || status == 304 || status == 101 {
            return Some("complete");
        }
        let (data, done) = if is_chunked(&reply.fields) {
            let (data, done) = dechunk(rest);
            if let Some((trailers, _)) = &done {
                reply.trailers = trailers.clone();
            }
            (data, done.is_some())
        } else if let Some(n) = field(&reply.fields, "content-length").and_then(length) {
            (rest[..rest.len().min(n)].to_vec(), rest.len() >= n)
        } else {
            (rest.to_vec(), eof)
        };
        reply.body = data;
        if read == Read::FirstEvent
            && let Some(at) = reply.body.windows(2).position(|w| w == b"\n\n")
        {
            reply.body.truncate(at + 2);
            return Some("first event");
        }
        return done.then_some("complete");
    }
}

/// A Content-Length value; a list of one repeated value counts as that value, so that a
/// relayed `2, 2` is read by its length rather than waited on until the connection closes.
fn length(value: &str) -> Option<usize> {
    let mut values = value.split(',').map(|v| v.trim().parse::<usize>().ok());
    let first = values.next()??;
    values.all(|v| v == Some(first)).then_some(first)
}

pub fn lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let short: String = text.chars().take(400).collect();
    let more = if text.chars().count() > 400 { "…" } else { "" };
    format!("{:?}{more}", short)
}
