//! The differential runner: each case goes through both engines — one `thv` with the
//! default engine, one with `THV_HTTP1=hyper`, same flags, same raw target — and what the
//! client got, what the target got and the request log line are compared. Field order and
//! name case are the only differences ignored (fields are compared as sorted lists of
//! lowercased names and values; `date` is left out); each process's own port reads
//! `{PORT}`. Every case also carries absolute checks, so both engines being wrong alike
//! fails too.

use std::time::Duration;

use tokio::time::Instant;

use super::wire::{Answer, Got, OK, Read, Reply, Target, exchange, lossy};
use crate::support::Thv;

/// How long a case waits for its request log line.
const LOG_WITHIN: Duration = Duration::from_millis(800);

/// One absolute check, applied to each engine's outcome (values after `{PORT}` substitution).
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// The client's status code.
    Status(u16),
    /// The target got exactly this many requests.
    Sent(usize),
    /// The target got the (first) request on a connection that had served one before.
    Reused,
    /// No request the target got has this field.
    TargetLacks(&'static str),
    /// Every request the target got has this field with exactly this value.
    TargetHas(&'static str, &'static str),
    /// No field value the target got contains this.
    TargetNoValue(&'static str),
    /// The body every request the target got had.
    TargetBody(&'static str),
    /// The request line the target got.
    TargetLine(&'static str),
    ClientLacks(&'static str),
    ClientHas(&'static str, &'static str),
    /// The client got this field, its value starting with this.
    ClientStarts(&'static str, &'static str),
    /// The client got this field exactly this many times.
    ClientCount(&'static str, usize),
    /// The body, exactly.
    Body(&'static str),
    BodyHas(&'static str),
    BodyLacks(&'static str),
    /// Every request the target got has a body containing this.
    TargetBodyHas(&'static str),
    /// The log line has this field with this value.
    Logs(&'static str, &'static str),
    /// Every request the target got carries a valid `traceparent` of this trace id (`new`:
    /// any trace but the client's) naming a span other than the client's as its parent,
    /// and any `_meta.traceparent` in its body is the same value.
    TargetTrace(&'static str),
}
pub use Check::*;

/// One row of a table: the exact bytes a client sends, how the target answers, checks.
pub struct Case {
    pub name: &'static str,
    /// With `{H}` for `Host: 127.0.0.1:PORT\r\n`, `{PORT}` for the proxy's port and the
    /// runner's other placeholders (tokens).
    pub send: &'static str,
    pub answer: Answer,
    pub checks: &'static [Check],
    pub read: Read,
    /// First a plain GET, so that the proxy holds an idle connection to the target.
    pub prime: bool,
}

pub const fn case(name: &'static str, send: &'static str, answer: Answer, checks: &'static [Check]) -> Case {
    Case { name, send, answer, checks, read: Read::Whole, prime: false }
}

impl Case {
    pub const fn first_event(mut self) -> Case {
        self.read = Read::FirstEvent;
        self
    }
    pub const fn reused(mut self) -> Case {
        self.prime = true;
        self
    }
}

/// One proxy of a pair, with the values of its placeholders.
pub struct Engine<'a> {
    pub name: &'static str,
    pub thv: &'a Thv,
    /// (placeholder, value) pairs substituted in `send`; `{H}` and `{PORT}` come first.
    pub vars: Vec<(&'static str, String)>,
}

impl<'a> Engine<'a> {
    pub fn new(name: &'static str, thv: &'a Thv) -> Engine<'a> {
        let vars = vec![("{H}", format!("Host: 127.0.0.1:{}\r\n", thv.port)), ("{PORT}", thv.port.to_string())];
        Engine { name, thv, vars }
    }
}

/// What one engine did with one case.
struct Outcome {
    reply: Reply,
    got: Vec<Got>,
    /// The request log lines written during the case.
    log: Vec<String>,
    /// The request's method and path (no query), for the log checks.
    method: String,
    path: String,
    /// The client left an endless stream after its first event.
    stream: bool,
}

/// Starts the pair: the default engine and hyper's, same flags, same target.
pub fn start_pair(target: &str, flags: &[&str]) -> (Thv, Thv) {
    (Thv::start_env(target, flags, &[]), Thv::start_env(target, flags, &[("THV_HTTP1", "hyper")]))
}

/// Runs every case through both engines, one after the other; returns the failures: each
/// case whose outcomes differ beyond the request log line in full, then one line per case
/// whose only fault is its log line.
pub async fn run(config: &str, target: &Target, engines: &[Engine<'_>; 2], cases: &[Case]) -> Vec<String> {
    let (mut failures, mut log_only) = (Vec::new(), Vec::new());
    for case in cases {
        let mut outcomes = Vec::new();
        for engine in engines {
            outcomes.push(run_one(target, engine, case).await);
        }
        let rendered: Vec<Vec<String>> = outcomes.iter().zip(engines).map(|(o, e)| render(o, e.thv.port)).collect();
        let (only_own, only_hyper) = (only(&rendered[0], &rendered[1]), only(&rendered[1], &rendered[0]));
        let wrong: Vec<Vec<String>> =
            outcomes.iter().zip(engines).map(|(o, e)| check(case, o, e.thv.port, target)).collect();
        let is_log = |l: &String| l.starts_with("log");
        if only_own.iter().chain(&only_hyper).chain(wrong.iter().flatten()).all(is_log) {
            if !only_own.is_empty() || !only_hyper.is_empty() || wrong.iter().any(|w| !w.is_empty()) {
                let logs = |r: &[String]| r.iter().filter(|l| is_log(l)).cloned().collect::<Vec<_>>().join(" / ");
                log_only.push(format!(
                    "  [{config}] {}: own {{{}}} hyper {{{}}}{}{}",
                    case.name,
                    logs(&rendered[0]),
                    logs(&rendered[1]),
                    problems(engines[0].name, &wrong[0]),
                    problems(engines[1].name, &wrong[1]),
                ));
            }
            continue;
        }
        if !only_own.is_empty() || !only_hyper.is_empty() {
            failures.push(format!(
                "[{config}] {}: the engines differ\n{}",
                case.name,
                side_by_side(&rendered, &only_own, &only_hyper, engines)
            ));
        }
        for (wrong, engine) in wrong.iter().zip(engines) {
            if !wrong.is_empty() {
                failures.push(format!("[{config}] {} [{}]: {}", case.name, engine.name, wrong.join("; ")));
            }
        }
    }
    if !log_only.is_empty() {
        failures.push(format!("{} case(s) whose only fault is the request log line:", log_only.len()));
        failures.extend(log_only);
    }
    failures
}

fn problems(engine: &str, wrong: &[String]) -> String {
    if wrong.is_empty() { String::new() } else { format!("; [{engine}] {}", wrong.join("; ")) }
}

async fn run_one(target: &Target, engine: &Engine<'_>, case: &Case) -> Outcome {
    let thv = engine.thv;
    if case.prime {
        let prime = format!("GET /prime HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", thv.port);
        let from = thv.stderr().len();
        exchange(thv.port, prime.as_bytes(), Read::Whole, false).await;
        wait_for_log(thv, from).await;
        // The connection goes back to the pool once the answer is through.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut raw = case.send.to_owned();
    for (name, value) in &engine.vars {
        raw = raw.replace(name, value);
    }
    let (method, path) = request_target(&raw);
    let (before, log_from) = (target.count(), thv.stderr().len());
    target.set(case.answer);
    let head_only = method == "HEAD";
    let reply = exchange(thv.port, raw.as_bytes(), case.read, head_only).await;
    let log = wait_for_log(thv, log_from).await;
    target.set(OK);
    let stream = case.read == Read::FirstEvent;
    Outcome { reply, got: target.since(before), log, method, path, stream }
}

/// Waits (bounded) until the log has at least one request line after `from`, and a
/// moment more for any further line; returns those lines.
async fn wait_for_log(thv: &Thv, from: usize) -> Vec<String> {
    let deadline = Instant::now() + LOG_WITHIN;
    loop {
        let lines = request_lines(&thv.stderr()[from..]);
        if !lines.is_empty() || Instant::now() >= deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return request_lines(&thv.stderr()[from..]);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The request log lines: the word `request` followed by `key=value` fields.
fn request_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.split_whitespace().any(|w| w == "request") && l.contains("method="))
        .map(str::to_owned)
        .collect()
}

/// The `key=value` fields of a log line, `elapsed` reduced to its presence.
fn log_fields(line: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), if k == "elapsed" { "…".to_owned() } else { v.to_owned() }))
        .collect();
    fields.sort();
    fields
}

/// The method and the path (without query) of the first line of `raw`.
fn request_target(raw: &str) -> (String, String) {
    let mut words = raw.split("\r\n").next().unwrap_or_default().split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default();
    (method, target.split('?').next().unwrap_or_default().to_owned())
}

/// Replaces `port` wherever it stands as a whole number.
fn unport(text: &str, port: u16) -> String {
    let port = port.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&port) {
        out.push_str(&rest[..at]);
        let after = rest[at + port.len()..].chars().next();
        let whole = !out.ends_with(|c: char| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit());
        out.push_str(if whole { "{PORT}" } else { &port });
        rest = &rest[at + port.len()..];
    }
    out.push_str(rest);
    out
}

fn sorted(fields: &[(String, String)], port: u16) -> Vec<(String, String)> {
    let mut fields: Vec<_> =
        fields.iter().filter(|(n, _)| n != "date").map(|(n, v)| (n.clone(), untrace(&unport(v, port)))).collect();
    fields.sort();
    fields
}

/// The client's span in the tables' `traceparent`s: the proxy must never name it as the
/// target's parent (the proxy's own span comes between).
pub const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) at the start of `s`: its trace and span.
fn traceparent_at(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(|c| c.is_ascii_hexdigit()));
    let ok = s.starts_with("00-")
        && hex(3..35)
        && b.get(35) == Some(&b'-')
        && hex(36..52)
        && b.get(52) == Some(&b'-')
        && hex(53..55);
    ok.then(|| (&s[3..35], &s[36..52]))
}

/// `s` with each proxy-made `traceparent` id written as a placeholder: the ids are random,
/// and their presence and shape (not their value) is what two engines must agree on.
fn untrace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("00-") {
        out.push_str(&rest[..at]);
        match traceparent_at(&rest[at..]) {
            Some((trace, span)) => {
                let trace =
                    if trace.starts_with("4bf92f35") || trace.starts_with("0af76519") { trace } else { "<new>" };
                let span = if span == CLIENT_SPAN { span } else { "<span>" };
                out.push_str(&format!("00-{trace}-{span}-{}", &rest[at + 53..at + 55]));
                rest = &rest[at + 55..];
            }
            None => {
                out.push_str("00-");
                rest = &rest[at + 3..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether the target got the proxy's `traceparent` of trace `trace` (see [`TargetTrace`]).
fn proxy_trace(g: &Got, trace: &str) -> bool {
    let mut values = g.fields.iter().filter(|(n, _)| n == "traceparent").map(|(_, v)| v.as_str());
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    let Some((got_trace, span)) = traceparent_at(value) else { return false };
    let body = String::from_utf8_lossy(&g.body);
    // A valid `_meta.traceparent` in the body must be the header's value; an invalid one
    // (which the server ignores too) is left as the client sent it.
    let meta_agrees = match body.find("\"traceparent\":\"") {
        Some(at) => traceparent_at(&body[at + 15..]).is_none() || body[at + 15..].starts_with(value),
        None => true,
    };
    value.len() == 55 && span != CLIENT_SPAN && (got_trace == trace || trace == "new") && meta_agrees
}

/// An outcome as comparable lines.
fn render(o: &Outcome, port: u16) -> Vec<String> {
    let u = |s: &str| unport(s, port);
    let mut lines: Vec<String> = o.reply.interim.iter().map(|l| format!("client interim: {l}")).collect();
    lines.push(format!("client: {}", u(&o.reply.status_line)));
    lines.extend(sorted(&o.reply.fields, port).iter().map(|(n, v)| format!("client field: {n}: {v}")));
    lines.push(format!("client body: {}", u(&lossy(&o.reply.body))));
    lines.extend(sorted(&o.reply.trailers, port).iter().map(|(n, v)| format!("client trailer: {n}: {v}")));
    lines.push(format!("client end: {}", o.reply.end));
    lines.push(format!("target: {} request(s)", o.got.len()));
    for (i, g) in o.got.iter().enumerate() {
        lines.push(format!("target #{i}: {}", u(&g.line)));
        for (n, v) in sorted(&g.fields, port) {
            lines.push(format!("target #{i} field: {n}: {v}"));
        }
        lines.push(format!("target #{i} body: {}", untrace(&u(&lossy(&g.body)))));
    }
    lines.push(format!("log: {} request line(s)", o.log.len()));
    for line in &o.log {
        let read = o.reply.body.len();
        let fields: Vec<String> = log_fields(&u(line))
            .iter()
            .map(|(k, v)| match v.parse::<usize>() {
                // A stream the client left: how much got out before the proxy noticed
                // depends on timing; at least what the client read is what counts.
                Ok(n) if k == "bytes" && o.stream && n >= read => format!("{k}=(at least the {read} read)"),
                // A new trace's id is random: that there is one is what compares.
                _ if k == "trace_id" => format!("{k}=(an id)"),
                _ => format!("{k}={v}"),
            })
            .collect();
        lines.push(format!("log fields: {}", fields.join(" ")));
    }
    lines
}

/// The lines of `x` that `y` lacks (as multisets).
fn only(x: &[String], y: &[String]) -> Vec<String> {
    let mut rest = y.to_vec();
    x.iter()
        .filter(|l| match rest.iter().position(|r| r == *l) {
            Some(at) => {
                rest.remove(at);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// Both sides' status lines, then the lines each side has alone; shared lines are counted.
fn side_by_side(rendered: &[Vec<String>], only_own: &[String], only_hyper: &[String], e: &[Engine<'_>; 2]) -> String {
    let status = |r: &[String]| r.iter().find(|l| l.starts_with("client: ")).cloned().unwrap_or_default();
    format!(
        "    {:<5} {}\n    {:<5} {}\n    only {}:\n      {}\n    only {}:\n      {}\n    ({} line(s) alike)",
        e[0].name,
        status(&rendered[0]),
        e[1].name,
        status(&rendered[1]),
        e[0].name,
        only_own.join("\n      "),
        e[1].name,
        only_hyper.join("\n      "),
        rendered[0].len() - only_own.len()
    )
}

/// The case's checks and the ones every case shares, on one engine's outcome.
fn check(case: &Case, o: &Outcome, port: u16, target: &Target) -> Vec<String> {
    let mut wrong = Vec::new();
    let client = sorted(&o.reply.fields, port);
    let targets: Vec<Vec<(String, String)>> = o.got.iter().map(|g| sorted(&g.fields, port)).collect();
    let body = unport(&String::from_utf8_lossy(&o.reply.body), port);
    let log = o.log.first().map(|l| log_fields(&unport(l, port))).unwrap_or_default();
    let logged = |k: &str| log.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim_matches('"').to_owned());
    let has = |fields: &[(String, String)], name: &str| fields.iter().any(|(n, _)| n == name);
    for c in case.checks {
        let ok = match *c {
            Status(s) => o.reply.status() == s,
            Sent(n) => o.got.len() == n,
            Reused => o.got.first().is_some_and(|g| g.seq > 0),
            TargetLacks(name) => targets.iter().all(|t| !has(t, name)),
            TargetHas(name, value) => {
                !targets.is_empty() && targets.iter().all(|t| t.iter().any(|(n, v)| n == name && v == value))
            }
            TargetNoValue(value) => targets.iter().all(|t| t.iter().all(|(_, v)| !v.contains(value))),
            TargetBody(b) => !o.got.is_empty() && o.got.iter().all(|g| g.body == b.as_bytes()),
            TargetLine(line) => !o.got.is_empty() && o.got.iter().all(|g| unport(&g.line, port) == line),
            ClientLacks(name) => !has(&client, name),
            ClientHas(name, value) => client.iter().any(|(n, v)| n == name && v == value),
            ClientStarts(name, value) => client.iter().any(|(n, v)| n == name && v.starts_with(value)),
            ClientCount(name, count) => client.iter().filter(|(n, _)| n == name).count() == count,
            Body(b) => body == b,
            BodyHas(b) => body.contains(b),
            BodyLacks(b) => !body.contains(b),
            TargetBodyHas(b) => !o.got.is_empty() && o.got.iter().all(|g| String::from_utf8_lossy(&g.body).contains(b)),
            Logs(k, v) => logged(k).as_deref() == Some(v),
            TargetTrace(trace) => !o.got.is_empty() && o.got.iter().all(|g| proxy_trace(g, trace)),
        };
        if !ok {
            let kind = if matches!(c, Logs(..)) { "log: " } else { "" };
            wrong.push(format!("{kind}{c:?} failed"));
        }
    }
    // Every forwarded request names the target as its Host.
    let authority = target.addr.to_string();
    if !targets.iter().all(|t| t.iter().any(|(n, v)| n == "host" && *v == authority)) {
        wrong.push(format!("a forwarded request's Host is not {authority}"));
    }
    // Exactly one request log line, with the fields the README names.
    if o.log.len() != 1 {
        wrong.push(format!("log: {} request log line(s), expected 1: {:?}", o.log.len(), o.log));
    } else {
        for key in ["method", "path", "status", "elapsed"] {
            if logged(key).is_none() {
                wrong.push(format!("log: the line lacks {key}=: {}", o.log[0]));
            }
        }
        let mut expect =
            vec![("method", o.method.clone()), ("path", o.path.clone()), ("status", o.reply.status().to_string())];
        // The body size, when the answer said it.
        if has(&client, "content-length") {
            expect.push(("bytes", o.reply.body.len().to_string()));
        }
        // A stream the client left: at least what the client read.
        let short = logged("bytes").and_then(|v| v.parse::<usize>().ok()).is_some_and(|n| n < o.reply.body.len());
        if o.stream && short {
            wrong.push(format!(
                "log: bytes={:?}, less than the {} bytes the client read",
                logged("bytes"),
                o.reply.body.len()
            ));
        }
        for (key, value) in expect {
            let missing = key == "bytes" && logged(key).is_none();
            if missing || logged(key).is_some_and(|v| v != value) {
                wrong.push(format!("log: the line says {key}={:?}, expected {value}", logged(key).unwrap_or_default()));
            }
        }
    }
    if wrong.iter().any(|w| !w.starts_with("log")) {
        let got: Vec<String> = o.got.iter().map(|g| format!("{} (seq {})", g.line, g.seq)).collect();
        wrong.push(format!("client got {} {}; target got {got:?}", o.reply.status_line, lossy(&o.reply.body)));
    }
    wrong
}
