//! The own HTTP/1.1 engine's connection state machine (`thv::proxy::h1::conn::serve` and
//! inside it `Conn::run`, `Conn::serve`, `Conn::relay`), driven over real loopback sockets
//! through `thv::internals::OwnEngine`, which serves an accepted connection as the server's
//! accept loop does, up to where it would hand the connection to hyper (it is closed then).
//!
//! One run: a fake client connects to the engine and plays a script (bytes in arbitrary
//! writes, pauses, stalls, a half or full close, the start of a graceful shutdown) while
//! reading whatever comes back; a fake target accepts the engine's connections, reads
//! requests and answers each with a script of its own (bytes, pauses, stalls, an early
//! close). The configuration is the real one, parsed by `thv::cli` and
//! `Config::from_invocation`: `--header-timeout 10s`, `--upstream-timeout 20s`,
//! `--max-request-body 64KiB`, `--max-header-size 8KiB`; the request body timeout is the
//! built-in 30 s.
//!
//! Time: every run gets a new current-thread runtime whose clock starts paused. tokio then
//! advances the clock to the next timer whenever no task can run and no socket is ready,
//! so a 31 s stall, the 30 s body timeout or an idle keep-alive close cost microseconds,
//! and they fire in the same order on every replay. Loopback writes are delivered before
//! the writer's call returns, so the peer is always woken before the clock may move.
//! (Shorter real timeouts would need hooks into the constants and would still race the
//! scheduler; a paused clock tests the real values.)
//!
//! Input: sections separated by 0x1E. The first is the client's script, each further one
//! the target's answer to the request it receives in that order (the last answer is
//! reused; no answer at all: the target closes at once). In a script:
//! - 0x01: a pause of 1 ms (the bytes before it are one write, so the engine reads them
//!   apart from what follows);
//! - 0x02: a stall of 11 s (past the header timeout); 0x03: of 31 s (past every timeout);
//! - 0x04: half-close (shutdown of the write side; the target keeps reading but answers
//!   no more); 0x05: close; the rest of the section is ignored after either;
//! - 0x06 (client only): a graceful shutdown of the proxy begins (SIGTERM);
//! - 0x1B: the next byte is literal; every other byte is sent as is.
//!
//! Invariants:
//! - nothing panics, in this thread or in any task (tokio catches task panics, so a panic
//!   hook aborts the process first);
//! - every request the target receives is one the client sent whole: the head parses, has
//!   no `Transfer-Encoding` and at most one `Content-Length`, the body is exactly that long
//!   (a connection never ends inside a request), its method and request target were in the
//!   client's bytes, and its body followed a head's end in them, all before the target got
//!   it;
//! - a run ends by itself: every loop is bounded in turns, and the time after the client's
//!   script is bounded (virtual time; libFuzzer's `-timeout` catches a real hang).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::Duration;

use thv::internals::{Config, Environment, Invocation, OwnEngine, OwnProxy};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::ReadHalf;
use tokio::net::{TcpListener, TcpStream};

const PAUSE: Duration = Duration::from_millis(1);
const STALL_SHORT: Duration = Duration::from_secs(11);
const STALL_LONG: Duration = Duration::from_secs(31);
/// How long the engine may go on after the client's script (virtual): longer than any of
/// its timeouts, so a run ends early only on a stream that never ends.
const SETTLE: Duration = Duration::from_secs(120);
/// The port the engine believes it listens on (it only names itself with it); the real
/// listener's port changes from process to process, and seeds must not depend on it.
const PROXY_PORT: u16 = 8080;
const MAX_TARGET_CONNECTIONS: usize = 16;
const MAX_REQUESTS_PER_CONNECTION: usize = 64;
/// Bytes read from the engine by either side before it stops reading.
const MAX_READ: usize = 1 << 20;

const SPLIT: u8 = 0x01;
const SHORT: u8 = 0x02;
const LONG: u8 = 0x03;
const HALF_CLOSE: u8 = 0x04;
const CLOSE: u8 = 0x05;
const SHUTDOWN: u8 = 0x06;
const ESCAPE: u8 = 0x1b;
const SECTION: u8 = 0x1e;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Send(Vec<u8>),
    Sleep(Duration),
    HalfClose,
    Close,
    Shutdown,
}

/// Splits the input into scripts: the client's, then the target's answers.
fn decode(data: &[u8]) -> (Vec<Op>, Vec<Vec<Op>>) {
    let mut sections: Vec<Vec<Op>> = vec![Vec::new()];
    let mut bytes = Vec::new();
    let mut ended = false;
    let mut input = data.iter().copied();
    // Bounded: one byte (or an escaped pair) per turn.
    while let Some(b) = input.next() {
        let script = sections.last_mut().expect("at least one section");
        let op = match b {
            SECTION => {
                flush(script, &mut bytes, ended);
                sections.push(Vec::new());
                ended = false;
                continue;
            }
            ESCAPE => {
                bytes.extend(input.next());
                continue;
            }
            SPLIT => Op::Sleep(PAUSE),
            SHORT => Op::Sleep(STALL_SHORT),
            LONG => Op::Sleep(STALL_LONG),
            HALF_CLOSE => Op::HalfClose,
            CLOSE => Op::Close,
            SHUTDOWN => Op::Shutdown,
            _ => {
                bytes.push(b);
                continue;
            }
        };
        flush(script, &mut bytes, ended);
        if !ended {
            ended = matches!(op, Op::HalfClose | Op::Close);
            script.push(op);
        }
    }
    let script = sections.last_mut().expect("at least one section");
    flush(script, &mut bytes, ended);
    let answers = sections.split_off(1);
    (sections.pop().unwrap_or_default(), answers)
}

fn flush(script: &mut Vec<Op>, bytes: &mut Vec<u8>, ended: bool) {
    if !bytes.is_empty() && !ended {
        script.push(Op::Send(std::mem::take(bytes)));
    }
    bytes.clear();
}

/// What lives as long as the process: the listeners (so no run leaves ports in
/// `TIME_WAIT` for the next to trip over) and the configuration.
struct Fixture {
    proxy_listener: std::net::TcpListener,
    proxy_addr: SocketAddr,
    target_listener: std::net::TcpListener,
    config: Config,
    /// Loading the trust store costs milliseconds, so it is built once; rebuilt after a
    /// run that began a shutdown (its stream stops are spent).
    own: Mutex<Option<OwnProxy>>,
}

struct NoEnvironment;

impl Environment for NoEnvironment {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let listen = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            l.set_nonblocking(true).expect("a non-blocking listener");
            l
        };
        let (proxy_listener, target_listener) = (listen(), listen());
        let target_port = target_listener.local_addr().expect("its address").port();
        let argv = format!(
            "thv proxy fuzz --target-uri http://127.0.0.1:{target_port}/mcp --port 0 --header-timeout 10s \
             --upstream-timeout 20s --max-request-body 64KiB --max-header-size 8KiB"
        );
        let invocation = Invocation::parse_from(argv.split_whitespace()).expect("the fixed command line parses");
        let config = Config::from_invocation(&invocation, &NoEnvironment).expect("the fixed command line is valid");
        Fixture {
            proxy_addr: proxy_listener.local_addr().expect("its address"),
            proxy_listener,
            target_listener,
            config,
            own: Mutex::new(None),
        }
    })
}

/// tokio catches a panic in a task and reports it only to whoever awaits the task; the
/// panic must end the process for libFuzzer to see it. (libfuzzer-sys installs a hook
/// like this one today; the target does not rely on it.)
fn abort_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            std::process::abort();
        }));
    });
}

/// One run: see the module header for the input and what is checked.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    abort_on_panic();
    let (client, answers) = decode(data);
    let fx = fixture();
    let own = {
        let mut own = lock(&fx.own);
        match own.as_ref() {
            Some(o) if !o.shut_down() => o.clone(),
            _ => own.insert(OwnProxy::new(&fx.config, PROXY_PORT).expect("the own path applies")).clone(),
        }
    };
    // Leftovers of an earlier run (connections it made that were never accepted) must not
    // reach this one. Bounded: the backlog is finite, and nobody connects now.
    for listener in [&fx.proxy_listener, &fx.target_listener] {
        while listener.accept().is_ok() {}
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("a runtime");
    runtime.block_on(exchange(fx, &own, client, answers));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the client sent, and how many requests the target got (the index of the answer).
#[derive(Default)]
struct Log {
    sent: Mutex<Vec<u8>>,
    received: AtomicUsize,
}

async fn exchange(fx: &Fixture, own: &OwnProxy, client: Vec<Op>, answers: Vec<Vec<Op>>) {
    let listener = |l: &std::net::TcpListener| {
        TcpListener::from_std(l.try_clone().expect("a listener clone")).expect("registered")
    };
    let (proxy_listener, target_listener) = (listener(&fx.proxy_listener), listener(&fx.target_listener));
    let engine = Arc::new(own.engine().expect("the own path applies"));
    let log = Arc::new(Log::default());
    let target = tokio::spawn(fake_target(target_listener, Arc::new(answers), log.clone()));

    let stream = TcpStream::connect(fx.proxy_addr).await.expect("a loopback connection");
    let (accepted, peer) = proxy_listener.accept().await.expect("the connection just made");
    let mut serving = tokio::spawn({
        let engine = engine.clone();
        async move { engine.serve(accepted, peer).await }
    });
    play_client(stream, &client, &engine, &log).await;
    if tokio::time::timeout(SETTLE, &mut serving).await.is_err() {
        // A stream that never ends: stop it.
        serving.abort();
        let _ = serving.await;
    }
    // The engine's pooled connections close with it; give the target a turn to see each
    // end (a request cut short would show there).
    drop(engine);
    tokio::time::sleep(PAUSE).await;
    target.abort();
}

/// The client's side: the script, reading all the while so that the engine's writes never
/// wait for us; then reading until the engine closes, for at most [`SETTLE`].
async fn play_client(stream: TcpStream, script: &[Op], engine: &OwnEngine, log: &Log) {
    let mut stream = Resets(Some(stream));
    let mut reader = Reader::default();
    let mut writing = true;
    // Bounded: one turn per operation.
    for op in script {
        let Some(s) = stream.0.as_mut() else { break };
        let (mut rd, mut wr) = s.split();
        match op {
            Op::Send(bytes) if writing => {
                writing = reader.alongside(&mut rd, send(&mut wr, bytes, log)).await;
            }
            Op::Send(_) => {}
            Op::Sleep(d) => reader.alongside(&mut rd, tokio::time::sleep(*d)).await,
            Op::HalfClose => {
                let _ = reader.alongside(&mut rd, wr.shutdown()).await;
                writing = false;
            }
            // A plain close (FIN), as a client that is done would.
            Op::Close => drop(stream.0.take()),
            Op::Shutdown => engine.begin_shutdown(),
        }
    }
    if let Some(s) = stream.0.as_mut() {
        let (mut rd, _) = s.split();
        let _ = tokio::time::timeout(SETTLE, reader.until_end(&mut rd)).await;
    }
}

/// Writes `bytes`, logging each part as the engine may now have it; whether all went.
async fn send(wr: &mut tokio::net::tcp::WriteHalf<'_>, bytes: &[u8], log: &Log) -> bool {
    let mut at = 0;
    // Bounded: every turn writes at least one byte or ends.
    while at < bytes.len() {
        match wr.write(&bytes[at..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                lock(&log.sent).extend_from_slice(&bytes[at..at + n]);
                at += n;
            }
        }
    }
    true
}

/// Reads and drops what the engine sends a side (its answers are not checked here; the
/// `h1` target checks the heads it writes).
#[derive(Default)]
struct Reader {
    total: usize,
    ended: bool,
}

impl Reader {
    /// Runs `step` while reading.
    async fn alongside<F: Future>(&mut self, rd: &mut ReadHalf<'_>, step: F) -> F::Output {
        let mut step = std::pin::pin!(step);
        let mut scratch = [0u8; 4096];
        // Bounded: every turn ends, or reads at least one byte of at most MAX_READ.
        loop {
            tokio::select! {
                biased;
                out = &mut step => return out,
                n = rd.read(&mut scratch), if !self.ended => self.note(n),
            }
        }
    }

    async fn until_end(&mut self, rd: &mut ReadHalf<'_>) {
        let mut scratch = [0u8; 4096];
        // Bounded as above.
        while !self.ended {
            let n = rd.read(&mut scratch).await;
            self.note(n);
        }
    }

    fn note(&mut self, n: std::io::Result<usize>) {
        match n {
            Ok(n) if n > 0 => {
                self.total += n;
                self.ended = self.total >= MAX_READ;
            }
            _ => self.ended = true,
        }
    }
}

/// A socket that is reset, not closed, when dropped at the end of a run, so that millions
/// of runs leave no `TIME_WAIT` behind; a scripted close takes it out first.
struct Resets(Option<TcpStream>);

impl Drop for Resets {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.set_zero_linger();
        }
    }
}

async fn fake_target(listener: TcpListener, answers: Arc<Vec<Vec<Op>>>, log: Arc<Log>) {
    // Bounded: MAX_TARGET_CONNECTIONS turns; later connections wait in the backlog, and
    // the engine's upstream timeout ends their requests.
    for _ in 0..MAX_TARGET_CONNECTIONS {
        let Ok((stream, _)) = listener.accept().await else { return };
        tokio::spawn(target_connection(stream, answers.clone(), log.clone()));
    }
}

/// How an answer left the target's connection.
enum After {
    Open,
    /// Half-closed: it reads (and checks) further requests but answers none.
    Mute,
    Close,
    Gone,
}

async fn target_connection(stream: TcpStream, answers: Arc<Vec<Vec<Op>>>, log: Arc<Log>) {
    let mut stream = Resets(Some(stream));
    let mut buf = Vec::new();
    let mut mute = false;
    // Bounded: MAX_REQUESTS_PER_CONNECTION turns.
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(s) = stream.0.as_mut() else { return };
        let Some(request) = read_request(s, &mut buf).await else { return };
        check_request(&request, &lock(&log.sent));
        let index = log.received.fetch_add(1, Ordering::Relaxed);
        if mute {
            continue;
        }
        let after = match answers.get(index).or(answers.last()) {
            Some(answer) => play_answer(s, answer).await,
            None => After::Close,
        };
        match after {
            After::Open => {}
            After::Mute => mute = true,
            // A plain close (FIN): a close-delimited body ends with it.
            After::Close => drop(stream.0.take()),
            After::Gone => return,
        }
    }
}

async fn play_answer(s: &mut TcpStream, answer: &[Op]) -> After {
    // Bounded: one turn per operation.
    for op in answer {
        match op {
            Op::Send(bytes) => {
                if s.write_all(bytes).await.is_err() {
                    return After::Gone;
                }
            }
            Op::Sleep(d) => tokio::time::sleep(*d).await,
            Op::HalfClose => {
                let _ = s.shutdown().await;
                return After::Mute;
            }
            Op::Close => return After::Close,
            Op::Shutdown => {}
        }
    }
    After::Open
}

/// One request the target received.
struct Received {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// The next whole request on the connection; `None` when it ends (between requests).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    // Bounded: every turn reads at least one byte or ends, and `buf` stays under MAX_READ.
    loop {
        if let Some(request) = parse_request(buf) {
            return Some(request);
        }
        assert!(buf.len() < MAX_READ, "the target got {} bytes and no whole request", buf.len());
        match s.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ => {
                assert!(
                    buf.is_empty(),
                    "the connection to the target ended inside a request: {:?}",
                    String::from_utf8_lossy(buf)
                );
                return None;
            }
        }
    }
}

/// Takes a whole request off the front of `buf`.
fn parse_request(buf: &mut Vec<u8>) -> Option<Received> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(e) => panic!("the target cannot read the request it got ({e}): {:?}", String::from_utf8_lossy(buf)),
    };
    let named = |name: &str| -> Vec<&[u8]> {
        req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value).collect()
    };
    assert!(named("transfer-encoding").is_empty(), "the own path re-frames bodies with Content-Length");
    let lengths = named("content-length");
    assert!(lengths.len() <= 1, "two Content-Length fields");
    let body_len = lengths.first().map_or(0, |v| {
        std::str::from_utf8(v).ok().and_then(|v| v.parse::<usize>().ok()).expect("a Content-Length that is a number")
    });
    if buf.len() < head_len + body_len {
        return None;
    }
    let received = Received {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        body: buf[head_len..head_len + body_len].to_vec(),
    };
    buf.drain(..head_len + body_len);
    Some(received)
}

/// The target got `request`: the client must have sent all of it already.
fn check_request(request: &Received, sent: &[u8]) {
    let line = format!("{} {} ", request.method, request.target);
    assert!(
        memchr::memmem::find(sent, line.as_bytes()).is_some(),
        "the target got {line:?}, which the client never sent; it sent {:?}",
        String::from_utf8_lossy(sent)
    );
    if request.body.is_empty() {
        return;
    }
    let follows_a_head = [&b"\r\n\r\n"[..], b"\n\n"].iter().any(|end| {
        let needle = [*end, &request.body[..]].concat();
        memchr::memmem::find(sent, &needle).is_some()
    });
    assert!(
        follows_a_head,
        "the target got a body the client had not sent (whole, after a head): {:?}; the client sent {:?}",
        String::from_utf8_lossy(&request.body),
        String::from_utf8_lossy(sent)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_decode_with_markers_escapes_and_ends() {
        let (client, answers) = decode(b"ab\x01c\x1b\x01\x03\x05ignored\x1eX\x04Y\x1e\x1eZ");
        assert_eq!(
            client,
            [Op::Send(b"ab".to_vec()), Op::Sleep(PAUSE), Op::Send(b"c\x01".to_vec()), Op::Sleep(STALL_LONG), Op::Close]
        );
        assert_eq!(answers, [vec![Op::Send(b"X".to_vec()), Op::HalfClose], vec![], vec![Op::Send(b"Z".to_vec())]]);
        assert_eq!(decode(b""), (vec![], vec![]));
    }
}
