//! A table-driven corpus of hostile HTTP/1.1: request smuggling shapes, odd framings and
//! header spellings, spoofed `Host` values, request targets in the wrong form, broken
//! bodies, and one hostile target answer (an unrequested `101`). Every case runs on a
//! fresh connection against both request engines — the own HTTP/1.1 path and hyper's
//! (`THV_HTTP1=hyper`) — and the cases whose answer must not depend on incoming auth run
//! again with it on (a scripted IdP, no token sent). A case names the exact bytes the
//! client sends, optionally the raw bytes the target answers with, the answer the client
//! gets and what the target saw. The target is a raw TCP server that records each request
//! as sent on the wire (header spellings, duplicates and all).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::support::Thv;
use crate::support::upstream::{ScriptedUpstream, raw_upstream, reply};

/// How long one exchange may take before the case fails with `timeout`.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);
/// How long the target may take to see a forwarded request after the client's answer.
const SETTLE: Duration = Duration::from_millis(40);

/// How the client ends its side once the bytes are sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Keeps the connection open and reads the answer.
    Open,
    /// Shuts down its write side, then reads the answer.
    HalfClose,
    /// Closes the connection at once; the answer is not read.
    Drop,
}

/// What the target must have seen of a case (all requests it got during the case).
enum Target {
    /// Exactly this many requests.
    Requests(usize),
    /// No request carried a field of this name (compared lowercase).
    Absent(&'static str),
    /// Every request carried this field, its value starting with this.
    Has(&'static str, &'static str),
    /// Every request carried exactly one `Content-Length`, with this value.
    OneLength(&'static str),
    /// The request bodies, in order.
    Bodies(&'static [&'static str]),
}
use Target::{Absent, Bodies, Has, OneLength, Requests};

const NOTHING: &[Target] = &[Requests(0)];
const ONE: &[Target] = &[Requests(1)];

/// One row of the corpus.
struct Case {
    name: &'static str,
    /// The raw bytes, with `{H}` for `Host: 127.0.0.1:PORT\r\n`, `{PORT}` for thv's port
    /// `{BIG}` for 200 KiB of `a` and `{MID}` for 80 KiB (both over the default 64 KiB
    /// `--max-header-size`).
    send: &'static str,
    /// The client's answer: the statuses in order, `closed` (no response at all), `4xx`
    /// for any client error; alternatives separated by `|`.
    answer: &'static str,
    target: &'static [Target],
    /// The answer with incoming auth on and no token (the target then sees nothing);
    /// `None`: the case is not run with incoming auth.
    auth: Option<&'static str>,
    /// The raw bytes the target answers with (then closes), instead of a plain 200.
    reply: Option<&'static str>,
    end: End,
    repeat: usize,
    /// thv's stderr must name no `panic` and no `ERROR` after the case.
    quiet: bool,
}

const fn c(name: &'static str, send: &'static str, answer: &'static str, target: &'static [Target]) -> Case {
    Case { name, send, answer, target, auth: None, reply: None, end: End::Open, repeat: 1, quiet: false }
}

impl Case {
    const fn auth(mut self, answer: &'static str) -> Case {
        self.auth = Some(answer);
        self
    }
    const fn reply(mut self, raw: &'static str) -> Case {
        self.reply = Some(raw);
        self
    }
    /// Sent `repeat` times, ended as `end`; thv must log no panic and no error meanwhile.
    const fn ended(mut self, end: End, repeat: usize) -> Case {
        self.end = end;
        self.repeat = repeat;
        self.quiet = true;
        self
    }
}

/// `POST /mcp` from a client addressing the proxy as `127.0.0.1:PORT`, then `$rest`.
macro_rules! post {
    ($rest:literal) => {
        concat!("POST /mcp HTTP/1.1\r\n{H}", $rest)
    };
}

/// The corpus. The groups marked `fix n` are hostile-input defects of the code before
/// them (their answer after the fix); the rest records the answers both engines gave.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    const JSON: &[Target] = &[Requests(1), OneLength("2"), Absent("transfer-encoding"), Bodies(&["{}"])];
    const HELLO: &[Target] = &[Requests(1), OneLength("5"), Absent("transfer-encoding"), Bodies(&["hello"])];
    vec![
        // fix 1: a body shorter than its Content-Length, then the client goes away (20
        // connections); no panic, and the proxy keeps serving.
        c("short body, half-close", post!("Content-Length: 10\r\n\r\nabc"), "closed|4xx", NOTHING)
            .ended(End::HalfClose, 10).auth("closed|4xx"),
        c("short body, close", post!("Content-Length: 10\r\n\r\nabc"), "-", NOTHING).ended(End::Drop, 10).auth("-"),
        c("a request after the short bodies", post!("Content-Length: 2\r\n\r\n{}"), "200", JSON).auth("401"),
        // fix 2: Host values that only look like bracketed IPv6 literals; checked before auth.
        c("Host [::1]@evil.example", "GET /mcp HTTP/1.1\r\nHost: [::1]@evil.example\r\n\r\n", "400", NOTHING)
            .auth("400"),
        c("Host [::1]evil", "GET /mcp HTTP/1.1\r\nHost: [::1]evil\r\n\r\n", "400", NOTHING).auth("400"),
        c("Host [::1].evil.example:443", "GET /mcp HTTP/1.1\r\nHost: [::1].evil.example:443\r\n\r\n", "400", NOTHING)
            .auth("400"),
        c("Host [::1]:PORT:80", "GET /mcp HTTP/1.1\r\nHost: [::1]:{PORT}:80\r\n\r\n", "400", NOTHING).auth("400"),
        c("RFC 9728 document, Host [::1]@evil.example",
          "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: [::1]@evil.example\r\n\r\n", "400", NOTHING)
            .auth("400"),
        c("RFC 9728 document, Host [::1]:PORT:80",
          "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: [::1]:{PORT}:80\r\n\r\n", "400", NOTHING)
            .auth("400"),
        c("Host [::1]:PORT", "GET /mcp HTTP/1.1\r\nHost: [::1]:{PORT}\r\n\r\n", "200",
          &[Requests(1), Has("x-forwarded-host", "[::1]:")]).auth("401"),
        c("Host 127.0.0.1:PORT", "GET /mcp HTTP/1.1\r\n{H}\r\n", "200", ONE).auth("401"),
        c("Host localhost:PORT", "GET /mcp HTTP/1.1\r\nHost: localhost:{PORT}\r\n\r\n", "200", ONE).auth("401"),
        c("Host evil.example", "GET /mcp HTTP/1.1\r\nHost: evil.example\r\n\r\n", "403", NOTHING).auth("403"),
        // fix 3: an unrequested 101 from the target.
        c("target answers 101", "GET /mcp HTTP/1.1\r\n{H}\r\n", "502", ONE)
            .reply("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"),
        // fix 4: X-Real-IP is the proxy's business, never the client's.
        c("X-Real-IP", post!("X-Real-IP: 6.6.6.6\r\nContent-Length: 2\r\n\r\n{}"), "200",
          &[Requests(1), Absent("x-real-ip")]),
        // fix 5: underscore spellings of framing, hop-by-hop and forwarding fields.
        c("Content_Length", post!("Content_Length: 5\r\nContent-Length: 2\r\n\r\n{}"), "200",
          &[Requests(1), Absent("content_length"), OneLength("2"), Bodies(&["{}"])]),
        c("Transfer_Encoding", post!("Transfer_Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}"), "200",
          &[Requests(1), Absent("transfer_encoding"), OneLength("2"), Bodies(&["{}"])]),
        c("X_Forwarded_For", post!("X_Forwarded_For: 6.6.6.6\r\nContent-Length: 2\r\n\r\n{}"), "200",
          &[Requests(1), Absent("x_forwarded_for")]),
        c("Proxy_Connection", post!("Proxy_Connection: x\r\nContent-Length: 2\r\n\r\n{}"), "200",
          &[Requests(1), Absent("proxy_connection")]),
        c("Keep_Alive", post!("Keep_Alive: 1\r\nContent-Length: 2\r\n\r\n{}"),
          "200", &[Requests(1), Absent("keep_alive")]),
        c("X_Real_IP", post!("X_Real_IP: 1.2.3.4\r\nContent-Length: 2\r\n\r\n{}"),
          "200", &[Requests(1), Absent("x_real_ip")]),
        c("X_Custom passes", post!("X_Custom: 1\r\nContent-Length: 2\r\n\r\n{}"),
          "200", &[Requests(1), Has("x_custom", "1")]),
        // fix 6: authority-form outside CONNECT.
        c("POST in authority-form", "POST 127.0.0.1:{PORT} HTTP/1.1\r\n{H}Content-Length: 2\r\n\r\n{}", "400", NOTHING),
        c("GET in authority-form", "GET 127.0.0.1:{PORT} HTTP/1.1\r\n{H}\r\n", "400", NOTHING),
        // fix 7: malformed chunk sizes (408 before).
        c("chunk size overflows", post!("Transfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
          "400", NOTHING),
        c("chunk size 0x10", post!("Transfer-Encoding: chunked\r\n\r\n0x10\r\nhello\r\n0\r\n\r\n"), "400", NOTHING),
        c("chunk size -1", post!("Transfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n"), "400", NOTHING),
        c("chunk size +2", post!("Transfer-Encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n"), "400", NOTHING),
        c("chunk size ended by a bare LF", post!("Transfer-Encoding: chunked\r\n\r\n2\n{}\r\n0\r\n\r\n"),
          "400", NOTHING),
        c("chunk size zz", post!("Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), "400", NOTHING),
        // Framing: one unambiguous body, or refused.
        c("duplicate Content-Length", post!("Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), "400", NOTHING),
        c("same Content-Length twice", post!("Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"), "200", JSON),
        c("Content-Length list", post!("Content-Length: 2, 2\r\n\r\n{}"), "400", NOTHING),
        c("CL then TE", post!("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          "200", HELLO),
        c("TE then CL", post!("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
          "200", HELLO),
        c("TE chunked, identity", post!("Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
          "400", NOTHING),
        c("TE identity, chunked", post!("Transfer-Encoding: identity, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
          "200", JSON),
        c("TE chunked twice",
          post!("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), "200", JSON),
        c("TE xchunked", post!("Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), "400", NOTHING),
        c("TE Chunked", post!("Transfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), "200", JSON),
        c("TE on HTTP/1.0", "POST /mcp HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
          "400", NOTHING),
        // Field syntax.
        c("obs-fold", post!("X-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}"), "400", NOTHING),
        c("bare CR in a value", post!("X-A: a\rb\r\nContent-Length: 2\r\n\r\n{}"), "400", NOTHING),
        c("space before the colon", post!("Content-Length : 2\r\n\r\n{}"), "400", NOTHING),
        c("bare LF between fields", post!("X-A: a\nX-B: c\r\nContent-Length: 2\r\n\r\n{}"), "200",
          &[Requests(1), Has("x-a", "a"), Has("x-b", "c")]),
        // Addressing.
        c("duplicate Host, same", "GET /mcp HTTP/1.1\r\n{H}{H}\r\n", "403", NOTHING),
        c("duplicate Host, foreign second", "GET /mcp HTTP/1.1\r\n{H}Host: evil.example\r\n\r\n", "403", NOTHING),
        c("no Host", "GET /mcp HTTP/1.1\r\n\r\n", "403", NOTHING),
        c("absolute-form, foreign authority", "GET http://evil.example/mcp HTTP/1.1\r\n{H}\r\n", "403", NOTHING),
        c("CONNECT elsewhere", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", "403", NOTHING),
        c("CONNECT to the proxy", "CONNECT 127.0.0.1:{PORT} HTTP/1.1\r\n{H}\r\n", "405", NOTHING),
        // Message boundaries.
        c("pipelined", post!("Content-Length: 5\r\n\r\nhelloPOST /mcp HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nworld"),
          "200 200", &[Requests(2), Bodies(&["hello", "world"])]),
        c("a request smuggled in a body",
          post!("Content-Length: 45\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"), "200",
          &[Requests(1), Bodies(&["GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"])]),
        c("oversized head", "GET /mcp HTTP/1.1\r\n{H}X-Big: {BIG}\r\n\r\n", "431|closed", NOTHING),
        c("head of 80 KiB, over the 64 KiB limit", "GET /mcp HTTP/1.1\r\n{H}X-Big: {MID}\r\n\r\n", "431", NOTHING),
    ]
}

/// One request as the target got it.
#[derive(Debug, Clone)]
struct Got {
    /// Field names lowercase, values as sent.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A raw target recording every request; it answers 200 `ok` with keep-alive, or the
/// current case's raw reply (then closes).
struct Recorder {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    reply: Arc<Mutex<Option<&'static str>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let got = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(None::<&'static str>));
        let (log, slot) = (got.clone(), reply.clone());
        let (addr, _task) = raw_upstream(move |mut s| {
            let (log, slot) = (log.clone(), slot.clone());
            async move {
                let mut buf = Vec::new();
                // Bounded: at most 100 requests per connection.
                for _ in 0..100 {
                    let Some(req) = read_request(&mut s, &mut buf).await else { return };
                    log.lock().unwrap().push(req);
                    let answer = *slot.lock().unwrap();
                    let bytes = answer.unwrap_or("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    if s.write_all(bytes.as_bytes()).await.is_err() || answer.is_some() {
                        return;
                    }
                }
            }
        })
        .await;
        Recorder { addr, got, reply }
    }
}

/// Reads one request (Content-Length or chunked body) from `s`, keeping extra bytes in
/// `buf`; `None` when the connection closes, or stays silent for a minute.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Got> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((got, used)) = parse_request(buf) {
            buf.drain(..used);
            return Some(got);
        }
        let n = timeout(Duration::from_secs(60), s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_request(buf: &[u8]) -> Option<(Got, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let fields: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let (body, used) = if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(&buf[end..])?
    } else {
        let length: usize = field("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        (buf.get(end..end + length)?.to_vec(), length)
    };
    Some((Got { fields, body }, end + used))
}

/// Decodes a complete chunked body at the start of `buf` (trailers skipped): the data and
/// the bytes used; `None` while incomplete.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut data, mut at) = (Vec::new(), 0);
    loop {
        let line = buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = String::from_utf8_lossy(&buf[at..at + line]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).ok()?;
        at += line + 2;
        if size == 0 {
            let rest = &buf[at..];
            let trailers =
                if rest.starts_with(b"\r\n") { 2 } else { rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4 };
            return Some((data, at + trailers));
        }
        data.extend_from_slice(buf.get(at..at + size)?);
        at += size + 2;
    }
}

/// The first complete response in `buf`: its status and length. At `eof` a response
/// without framing ends there; a head that is no status line counts as status 0.
fn parse_response(buf: &[u8], eof: bool) -> Option<(u16, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let field = |name: &str| head.split("\r\n").find_map(|l| l.strip_prefix(name)).map(str::trim);
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((status, end));
    }
    if field("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        return dechunk(&buf[end..]).map(|(_, used)| (status, end + used));
    }
    match field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => (buf.len() >= end + n).then_some((status, end + n)),
        None => eof.then_some((status, buf.len())),
    }
}

/// Sends `raw` on a fresh connection, ends it as told, and reads up to `want` responses.
/// Returns e.g. `400`, `200 200`, `closed`, `-` (not read), with `truncated` or `timeout`
/// appended when the answer stopped half-way or never came.
async fn exchange(port: u16, raw: &[u8], end: End, want: usize) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to thv");
    let _ = s.write_all(raw).await;
    match end {
        End::Drop => return "-".to_owned(),
        End::HalfClose => {
            let _ = s.shutdown().await;
        }
        End::Open => {}
    }
    let deadline = Instant::now() + ANSWER_WITHIN;
    let (mut buf, mut chunk, mut statuses) = (Vec::new(), [0u8; 4096], Vec::new());
    let (mut eof, mut late) = (false, false);
    while statuses.len() < want {
        if let Some((status, used)) = parse_response(&buf, eof) {
            statuses.push(status.to_string());
            buf.drain(..used);
            continue;
        }
        if eof {
            break;
        }
        match timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                late = true;
                break;
            }
        }
    }
    if statuses.is_empty() && eof && buf.is_empty() {
        statuses.push("closed".to_owned());
    }
    if !buf.is_empty() && statuses.len() < want {
        statuses.push("truncated".to_owned());
    }
    if late {
        statuses.push("timeout".to_owned());
    }
    statuses.join(" ")
}

/// Whether `observed` is one of the `|`-separated alternatives (`4xx`: any client error).
fn matches(expected: &str, observed: &str) -> bool {
    expected.split('|').any(|alt| {
        let (a, b): (Vec<&str>, Vec<&str>) = (alt.split(' ').collect(), observed.split(' ').collect());
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| x == y || (*x == "4xx" && y.len() == 3 && y.starts_with('4')))
    })
}

/// How many responses to wait for: the most any alternative names (at least one).
fn wanted(expected: &str) -> usize {
    expected.split('|').map(|alt| alt.split(' ').filter(|t| *t != "closed").count()).max().unwrap_or(0).max(1)
}

/// What is wrong with what the target got, measured against `expect`.
fn check_target(expect: &[Target], got: &[Got]) -> Vec<String> {
    let lengths =
        |g: &Got| g.fields.iter().filter(|(n, _)| n == "content-length").map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let mut wrong = Vec::new();
    for t in expect {
        let ok = match t {
            Requests(n) => got.len() == *n,
            Absent(name) => got.iter().all(|g| g.fields.iter().all(|(n, _)| n != name)),
            Has(name, value) => got.iter().all(|g| g.fields.iter().any(|(n, v)| n == name && v.starts_with(value))),
            OneLength(v) => got.iter().all(|g| lengths(g) == [v.to_string()]),
            Bodies(b) => got.iter().map(|g| g.body.as_slice()).eq(b.iter().map(|b| b.as_bytes())),
        };
        if !ok {
            let short = |v: &str| v.chars().take(40).collect::<String>();
            let seen: Vec<_> = got
                .iter()
                .map(|g| {
                    (
                        g.fields.iter().map(|(n, v)| format!("{n}: {}", short(v))).collect::<Vec<_>>(),
                        short(&String::from_utf8_lossy(&g.body)),
                    )
                })
                .collect();
            wrong.push(format!("target: {} failed; it got {} request(s): {seen:?}", describe(t), got.len()));
        }
    }
    wrong
}

fn describe(t: &Target) -> String {
    match t {
        Requests(n) => format!("exactly {n} request(s)"),
        Absent(name) => format!("no {name}"),
        Has(name, value) => format!("{name}: {value}"),
        OneLength(v) => format!("exactly one content-length: {v}"),
        Bodies(b) => format!("bodies {b:?}"),
    }
}

/// Runs every case (with `auth`: only those that name an answer for it) against one
/// proxy, one after the other on fresh connections; returns the failures.
async fn run_all(engine: &str, thv: &Thv, target: &Recorder, auth: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let big = "a".repeat(200 * 1024);
    for case in cases() {
        let (answer, expect) = match (auth, case.auth) {
            (false, _) => (case.answer, case.target),
            (true, Some(answer)) => (answer, NOTHING),
            (true, None) => continue,
        };
        let raw = case
            .send
            .replace("{H}", &format!("Host: 127.0.0.1:{}\r\n", thv.port))
            .replace("{PORT}", &thv.port.to_string())
            .replace("{BIG}", &big)
            .replace("{MID}", &big[..80 * 1024]);
        let before = target.got.lock().unwrap().len();
        let log_before = thv.stderr().len();
        *target.reply.lock().unwrap() = case.reply;
        let mut wrong = Vec::new();
        for i in 0..case.repeat {
            let observed = exchange(thv.port, raw.as_bytes(), case.end, wanted(answer)).await;
            if case.end != End::Drop && !matches(answer, &observed) {
                wrong.push(format!("answered {observed}, expected {answer} (connection {})", i + 1));
                break;
            }
        }
        tokio::time::sleep(if case.quiet { SETTLE * 5 } else { SETTLE }).await;
        *target.reply.lock().unwrap() = None;
        let got = target.got.lock().unwrap()[before..].to_vec();
        wrong.extend(check_target(expect, &got));
        if case.quiet {
            let log = thv.stderr();
            let log = &log[log_before..];
            if log.contains("panic") || log.contains("ERROR") {
                wrong.push(format!("thv's stderr: {log}"));
            }
        }
        let config = if auth { "+auth" } else { "" };
        failures.extend(wrong.into_iter().map(|w| format!("[{engine}{config}] {}: {w}", case.name)));
    }
    failures
}

/// Starts one proxy per engine, each before its own recording target, and runs the
/// corpus against both at once.
async fn both_engines(extra: &[&str], auth: bool) {
    let (own_target, hyper_target) = (Recorder::start().await, Recorder::start().await);
    let own = Thv::start_env(&format!("http://{}/mcp", own_target.addr), extra, &[]);
    let hyper = Thv::start_env(&format!("http://{}/mcp", hyper_target.addr), extra, &[("THV_HTTP1", "hyper")]);
    let (a, b) = tokio::join!(run_all("own", &own, &own_target, auth), run_all("hyper", &hyper, &hyper_target, auth));
    let failures: Vec<String> = a.into_iter().chain(b).collect();
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_on_both_engines() {
    both_engines(&[], false).await;
}

/// A scripted IdP with one EC signing key: enough for thv to start with incoming auth.
async fn idp() -> ScriptedUpstream {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine as _;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    ScriptedUpstream::start(move |seen| {
        let issuer = format!("http://{}", seen.headers["host"].to_str().unwrap());
        let doc = match seen.uri.path() {
            "/.well-known/openid-configuration" => {
                serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
            }
            "/jwks" => serde_json::json!({"keys": [jwk.clone()]}),
            _ => return reply(404, &[], ""),
        };
        reply(200, &[("content-type", "application/json")], &doc.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_with_incoming_auth_on_both_engines() {
    let idp = idp().await;
    let issuer = format!("http://{}", idp.addr);
    both_engines(&["--oidc-issuer", &issuer], true).await;
}
