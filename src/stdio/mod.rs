//! `thv proxy stdio`: a client that speaks MCP over stdio, bridged to a remote server that
//! speaks Streamable HTTP.
//!
//! This module owns the bridge's lifecycle and the order of messages; it implements MCP
//! 2025-11-25 Transports §stdio (newline-delimited JSON-RPC, one message per line, nothing
//! but messages on stdout, logs on stderr) towards the client and §Streamable HTTP (§Sending
//! Messages to the Server, §Listening for Messages from the Server, §Session Management,
//! §Protocol Version Header) towards the server. Both revisions (2025-11-25 and 2026-07-28)
//! pass through as they are; the bridge adds only the transport's headers.
//!
//! The parts: [`lines`] (the stdin reader and the stdout writer, each a thread of its
//! own), [`message`] (what a line or a server's message is, and the bridge's own error
//! answers), [`remote`] (requests to the server, relaying its answers, the listen stream,
//! the session).
//!
//! Order: `initialize`, notifications and the client's answers to server requests are
//! sent one at a time, in the order read, each once the previous one's response headers
//! arrived (so the server sees `notifications/initialized` before the next request, and a
//! session exists before anything uses it); other requests run concurrently, so a long
//! tool call does not hold back a `ping` or a cancellation. Each response's messages are
//! relayed in the order the server sent them.
//!
//! Transports: Streamable HTTP, or the legacy HTTP+SSE transport ([`legacy`]) with
//! `--transport sse`, a target URL ending in `/sse`, or when `auto` is answered 404 or 405.
//! A session the server lost (404 to its id) is replaced by replaying the client's
//! `initialize`; the failed request is retried once ([`remote`]).
//!
//! Failures never cost the process: a request that cannot be delivered, or whose answer is
//! garbage, too large or missing, gets a JSON-RPC error answer with its id, and one warning
//! line on stderr names what failed. End of input, SIGTERM or SIGINT end the session with
//! DELETE and exit 0 within a second.

mod legacy;
mod lines;
mod message;
mod remote;
mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::StdioConfig;
use crate::error::Error;
use crate::proxy::respond::{INVALID_REQUEST, UPSTREAM_UNAVAILABLE};
use crate::server::shutdown_signal;
use lines::{Input, spawn_reader, spawn_writer};
use message::{ClientMessage, error_answer, read_client};
use remote::{Asked, Remote};

/// Requests in flight at most; past this, reading stdin waits.
const MAX_IN_FLIGHT: usize = 64;

/// At the end, how long answers still on their way may take before the session ends.
const FINISH_GRACE: Duration = Duration::from_millis(400);
/// How long the server may take to confirm the end of the session.
const DELETE_LIMIT: Duration = Duration::from_millis(300);
/// How long queued lines may take to reach stdout at the end.
const FLUSH_LIMIT: Duration = Duration::from_millis(100);

/// Listen streams that fail or end quickly in a row before the bridge stops reopening.
const MAX_LISTEN_FAILURES: u32 = 5;
/// A listen stream that lasted this long was healthy: the failure count starts again.
const LISTEN_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Runs the bridge until end of input, a signal, or stdout closing.
pub(crate) async fn run(config: StdioConfig) -> Result<(), Error> {
    let stdout_closed = CancellationToken::new();
    let (out, writer) = spawn_writer(config.max_message, stdout_closed.clone());
    let remote = Arc::new(Remote::new(&config, out)?);
    info!(server = %config.server_name, target = %remote.target, "stdio bridge started");
    let mut input = spawn_reader(config.max_message);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut requests = JoinSet::new();
    let listening = Arc::new(AtomicBool::new(false));
    let stop_listening = CancellationToken::new();
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        // Finished requests are reaped as they go, so the set stays as small as what runs.
        while requests.try_join_next().is_some() {}
        let next = tokio::select! {
            next = input.recv() => next,
            () = &mut stop => { info!("signal received; ending the session"); break; }
            () = stdout_closed.cancelled() => break,
        };
        let Some(next) = next else {
            debug!("end of input; ending the session");
            break;
        };
        let line = match next {
            Input::Line(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Input::Line(line) => line,
            Input::TooLong => {
                warn!("a message larger than --max-request-body was refused");
                let refusal = "Invalid Request: the message is larger than --max-request-body";
                remote.out.line(error_answer(None, INVALID_REQUEST, refusal)).await;
                continue;
            }
        };
        let msg = match read_client(&line) {
            Ok(msg) => msg,
            Err(refusal) => {
                debug!(code = refusal.code, "a line that is not a JSON-RPC message was refused");
                remote.out.line(error_answer(None, refusal.code, refusal.message)).await;
                continue;
            }
        };
        let body = Bytes::from(line);
        let in_order = !msg.is_request() || msg.method.as_deref() == Some("initialize");
        if in_order {
            exchange(&remote, &msg, body).await;
            if msg.method.as_deref() == Some("notifications/initialized")
                && remote.has_session()
                && !listening.swap(true, Ordering::AcqRel)
            {
                tokio::spawn(listen(remote.clone(), stop_listening.clone()));
            }
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let remote = remote.clone();
        requests.spawn(async move {
            exchange(&remote, &msg, body).await;
            drop(slot);
        });
    }
    // Answers on their way get a moment; then the session ends whatever is left.
    let _ = tokio::time::timeout(FINISH_GRACE, async { while requests.join_next().await.is_some() {} }).await;
    requests.abort_all();
    stop_listening.cancel();
    remote.end_session(DELETE_LIMIT).await;
    drop(remote);
    // Every Output is gone with the tasks: the writer writes what is queued and stops.
    tokio::task::spawn_blocking(move || writer.finish(FLUSH_LIMIT)).await.ok();
    info!("stdio bridge stopped");
    Ok(())
}

/// Sends one client message and relays what comes back; a request that gets no answer
/// gets the bridge's error answer instead.
async fn exchange(remote: &Remote, msg: &ClientMessage, body: Bytes) {
    let asked = msg.id.as_deref().filter(|_| msg.is_request());
    let outcome = remote
        .post(msg, body, asked.map(|id| Asked { id, initialize: msg.method.as_deref() == Some("initialize") }))
        .await;
    let why = match outcome {
        Ok(true) => return,
        Ok(false) if asked.is_none() => return,
        Ok(false) => "the MCP server ended its answer without a response to this request".to_owned(),
        Err(why) => why,
    };
    warn!(target = %remote.target, method = msg.method.as_deref().unwrap_or("(response)"), "{why}");
    if let Some(id) = asked {
        remote.answer_error(id, UPSTREAM_UNAVAILABLE, &why).await;
    }
}

/// The GET listen stream (MCP 2025-11-25 §Listening for Messages from the Server): the
/// server's own requests and notifications, relayed as they come. A server that offers
/// none (405) is left alone; one whose streams keep failing is given up on after
/// [`MAX_LISTEN_FAILURES`] in a row, with a pause that doubles each time.
async fn listen(remote: Arc<Remote>, stop: CancellationToken) {
    let mut failures = 0;
    while failures < MAX_LISTEN_FAILURES && remote.has_session() {
        let opened = tokio::time::Instant::now();
        let outcome = tokio::select! {
            outcome = listen_once(&remote) => outcome,
            () = stop.cancelled() => return,
        };
        match outcome {
            Ok(ListenEnd::NotOffered) => {
                debug!("the MCP server offers no listen stream");
                return;
            }
            Ok(ListenEnd::Ended) if opened.elapsed() >= LISTEN_HEALTHY_AFTER => failures = 0,
            Ok(ListenEnd::Ended) => failures += 1,
            Err(why) => {
                warn!(target = %remote.target, "listen stream: {why}");
                failures += 1;
            }
        }
        let pause = Duration::from_millis(500) * 2u32.pow(failures.min(6));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
    if failures >= MAX_LISTEN_FAILURES {
        warn!(target = %remote.target, "the listen stream keeps failing; server-initiated messages now arrive only with answers");
    }
}

enum ListenEnd {
    NotOffered,
    Ended,
}

async fn listen_once(remote: &Remote) -> Result<ListenEnd, String> {
    let sent = remote.session();
    let resp = remote.send(Method::GET, Bytes::new(), &[]).await?;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        return Ok(ListenEnd::NotOffered);
    }
    if resp.status() == StatusCode::NOT_FOUND && sent.is_some() {
        // The server lost the session: the listen stream goes on in a new one.
        drop(resp);
        remote.reinitialize(sent.as_ref()).await?;
        return Ok(ListenEnd::Ended);
    }
    remote.relay(resp, None).await.map(|_| ListenEnd::Ended)
}
