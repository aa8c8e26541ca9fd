//! Benchmark SSE client for `bench/`: opens K event streams and measures per-event latency,
//! or holds as many streams open as it can.
//!
//! ```text
//! sse_client latency --url URL --streams K --duration-s S [--skip-first 1]
//! sse_client hold    --url URL --streams N --hold-s S [--connect-concurrency 200]
//! ```
//!
//! The URL is a `GET` event stream whose events carry `"t_ns":UNIX_NANOS` (see
//! `bench_origin`); each event's latency is now − t_ns. The first event(s) of each stream
//! are dropped (`--skip-first`, default 1): they include connection start-up.
//!
//! `latency` prints one JSON object at the end: events, errors, p50/p90/p99/p99.9/max in µs.
//! `hold` opens the streams (a stream counts as held once its first event arrived), prints
//! `{"phase":"held","held":N,"failed":M,...}` as soon as every stream is held or failed,
//! keeps them open for `--hold-s` seconds, then prints `{"phase":"done","alive":N,...}`.
//! The bench samples the proxy's RSS between the two lines. Runs on one thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{ACCEPT, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

struct Args {
    mode: String,
    url: String,
    streams: usize,
    duration: Duration,
    hold: Duration,
    skip_first: u64,
    connect_concurrency: usize,
    headers: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: sse_client latency|hold --url URL --streams N ...")?;
    if mode != "latency" && mode != "hold" {
        return Err(format!("unknown mode {mode} (latency or hold)"));
    }
    let mut a = Args {
        mode,
        url: String::new(),
        streams: 1,
        duration: Duration::from_secs(5),
        hold: Duration::from_secs(2),
        skip_first: 1,
        connect_concurrency: 200,
        headers: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => a.url = val()?,
            "--streams" => a.streams = num(val()?)? as usize,
            "--duration-s" => a.duration = Duration::from_secs_f64(num(val()?)?),
            "--hold-s" => a.hold = Duration::from_secs_f64(num(val()?)?),
            "--skip-first" => a.skip_first = num(val()?)? as u64,
            "--connect-concurrency" => a.connect_concurrency = (num(val()?)? as usize).max(1),
            "--header" => {
                let v = val()?;
                let (k, v) = v.split_once(':').ok_or("--header needs 'Name: value'")?;
                a.headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !a.url.starts_with("http://") {
        return Err("--url must be an http:// URL".to_owned());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sse_client: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args));
}

#[derive(Default)]
struct Shared {
    latencies_ns: Vec<u64>,
    held: usize,
    failed: usize,
    alive: usize,
    errors: Vec<String>,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

async fn run(args: Args) {
    let started = Instant::now();
    let rest = &args.url["http://".len()..];
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let shared = Rc::new(RefCell::new(Shared::default()));
    let gate = Rc::new(Semaphore::new(args.connect_concurrency));
    let record = args.mode == "latency";
    let stop_at = Instant::now()
        + if record {
            args.duration
        } else {
            args.hold + Duration::from_secs(120) /* bounded by the phases below */
        };
    let headers = Rc::new(args.headers.clone());
    let mut tasks = Vec::with_capacity(args.streams);
    for _ in 0..args.streams {
        let (shared, gate, authority, path, headers) =
            (shared.clone(), gate.clone(), authority.clone(), path.clone(), headers.clone());
        let skip = args.skip_first;
        tasks.push(tokio::task::spawn_local(async move {
            let permit = gate.acquire().await.ok();
            let res = stream(&authority, &path, &headers, skip, record, &shared, stop_at, permit).await;
            let mut s = shared.borrow_mut();
            if let Err(e) = res
                && s.errors.len() < 5
            {
                s.errors.push(e);
            }
        }));
    }
    if record {
        for t in tasks {
            let _ = t.await;
        }
        let s = shared.borrow();
        let mut v = s.latencies_ns.clone();
        v.sort_unstable();
        let pct = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
            v[i.min(v.len() - 1)] as f64 / 1000.0
        };
        let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0 };
        let out = serde_json::json!({
            "mode": "latency", "streams": args.streams, "held": s.held, "failed": s.failed,
            "events": v.len(), "p50_us": pct(50.0), "p90_us": pct(90.0), "p99_us": pct(99.0),
            "p999_us": pct(99.9), "max_us": pct(100.0), "mean_us": mean,
            "errors": s.errors, "elapsed_s": started.elapsed().as_secs_f64(),
        });
        println!("{out}");
        return;
    }
    // hold: wait until every stream is held or failed (bounded), report, hold, report.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (h, f) = {
            let s = shared.borrow();
            (s.held, s.failed)
        };
        if h + f >= args.streams || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let s = shared.borrow();
        let out = serde_json::json!({"phase": "held", "streams": args.streams, "held": s.held, "failed": s.failed,
            "errors": s.errors, "elapsed_s": started.elapsed().as_secs_f64()});
        println!("{out}");
    }
    tokio::time::sleep(args.hold).await;
    let s = shared.borrow();
    let out = serde_json::json!({"phase": "done", "streams": args.streams, "held": s.held, "failed": s.failed,
        "alive": s.alive, "errors": s.errors, "elapsed_s": started.elapsed().as_secs_f64()});
    println!("{out}");
    // Exit without waiting for the stream tasks: the process end closes every connection.
    std::process::exit(0);
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    skip: u64,
    record: bool,
    shared: &Rc<RefCell<Shared>>,
    stop_at: Instant,
    permit: Option<tokio::sync::SemaphorePermit<'_>>,
) -> Result<(), String> {
    let fail = |e: String| {
        shared.borrow_mut().failed += 1;
        e
    };
    let tcp = TcpStream::connect(authority).await.map_err(|e| fail(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| fail(format!("handshake: {e}")))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(path).header(HOST, authority).header(ACCEPT, "text/event-stream");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| fail(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| fail(format!("request: {e}")))?;
    if !resp.status().is_success() {
        return Err(fail(format!("status {}", resp.status())));
    }
    let mut body = resp.into_body();
    let mut buf = BytesMut::with_capacity(256);
    let mut seen = 0u64;
    let mut permit = permit;
    loop {
        let next = tokio::time::timeout_at(stop_at.into(), body.frame()).await;
        let frame = match next {
            Err(_) => break, // time is up
            Ok(None) => {
                if seen == 0 {
                    return Err(fail("stream ended before its first event".to_owned()));
                }
                shared.borrow_mut().alive -= 1;
                return Err("stream ended early".to_owned());
            }
            Ok(Some(Err(e))) => {
                if seen == 0 {
                    return Err(fail(format!("body: {e}")));
                }
                shared.borrow_mut().alive -= 1;
                return Err(format!("body: {e}"));
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        let at = now_ns();
        buf.extend_from_slice(&data);
        while let Some(end) = memchr_event_end(&buf) {
            let event = buf.split_to(end + 2);
            if seen == 0 {
                let mut s = shared.borrow_mut();
                s.held += 1;
                s.alive += 1;
                drop(permit.take()); // let the next connection start
            }
            seen += 1;
            if record
                && seen > skip
                && let Some(t) = t_ns(&event)
            {
                shared.borrow_mut().latencies_ns.push(at.saturating_sub(t));
            }
        }
    }
    Ok(())
}

/// Index of the first "\n\n" (end of an event) in `buf`.
fn memchr_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// The `"t_ns":N` value of an event.
fn t_ns(event: &[u8]) -> Option<u64> {
    let key = b"\"t_ns\":";
    let i = event.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = event[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&event[i..i + digits]).ok()?.parse().ok()
}
