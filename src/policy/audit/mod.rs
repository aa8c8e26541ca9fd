//! The audit log behind `--enable-audit` and `--audit-config FILE`: one NDJSON line per
//! audited request, in ToolHive's format, written off the request path.
//!
//! Follows ToolHive's `pkg/audit` (`auditor.go`, `event.go`, `config.go`, `middleware.go`,
//! `docs/middleware.md`) and toolhive-core's `audit` package (event names, the `AUDIT`
//! level). Parts: `config` (the file and its defaults), `event` (types, outcomes, fields),
//! `line` (the NDJSON line), `json` (Go's byte-level JSON), `writer` (the writer thread);
//! this file owns the [`Auditor`], the handle the request path logs through.
//!
//! Where ToolHive writes each event synchronously on the request's goroutine, [`Auditor::log`]
//! renders the line and queues it without waiting: a slow disk never slows a request, and a
//! full queue drops the event and counts it instead.

mod config;
mod event;
mod json;
mod line;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::warn;

pub(crate) use config::{AuditConfig, load};
pub(crate) use event::{
    ERROR_DETECTION_PREFIX, Event, EventType, Outcome, Transport, application_error, user_from_claims,
};

use line::{Settings, render};

/// Renders deferred events on the writer's thread (see [`Auditor::log_later`]).
pub(crate) struct Render<'s>(&'s Settings);

impl Render<'_> {
    /// The line of `event`, logged at `at`, with a new audit id.
    pub(crate) fn line(&self, event: &Event<'_>, at: SystemTime) -> String {
        render(event, self.0, &json::uuid_v4(), at)
    }
}
use writer::{Msg, Sink, Writer};

/// Lines waiting for the writer; beyond this, events are dropped (and counted).
const QUEUE_CAPACITY: usize = 8192;
/// At most one "events dropped" warning per this many milliseconds.
const DROP_WARNING_INTERVAL_MS: u64 = 60_000;

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    #[error("the audit log must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot open the audit log {}: {source}", path.display())]
    Open { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot listen for SIGHUP to reopen the audit log: {0}")]
    Signal(std::io::Error),
    #[error("cannot start the audit log writer thread: {0}")]
    Thread(std::io::Error),
}

/// The audit log: filters, renders and queues events; a dedicated thread writes them.
pub(crate) struct Auditor {
    settings: Arc<Settings>,
    /// Bit `EventType as u32` set: audited (`ShouldAuditEvent`, precomputed).
    wanted: u32,
    detect_application_errors: bool,
    tx: mpsc::Sender<Msg>,
    closed: AtomicBool,
    /// Events lost: dropped on a full queue, after close, or on a failed write.
    lost: Arc<AtomicU64>,
    epoch: Instant,
    /// Milliseconds since `epoch` (plus one, so 0 is "never") of the last drop warning.
    last_drop_warning: AtomicU64,
    /// The SIGHUP listener, when logging to a file.
    hangup: Option<AbortHandle>,
}

impl Auditor {
    /// Opens the log (`logFile`: created 0600 if missing, appended to with `O_APPEND`;
    /// stdout when unset, as in ToolHive) and starts the writer thread with a queue of 8192
    /// lines. Must be called inside a tokio runtime. When logging to a file, SIGHUP makes the
    /// writer reopen it (log rotation: rename, then signal); lines queued before the signal
    /// go to the renamed file, none is lost. Listening for SIGHUP also means SIGHUP no longer
    /// terminates the process.
    pub(crate) fn start(config: AuditConfig) -> Result<Auditor, AuditError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
        let sink = Sink::open(config.log_file.as_deref())
            .map_err(|source| AuditError::Open { path: config.log_file.clone().unwrap_or_default(), source })?;
        let listen_for_hangup = sink.is_file();
        let (mut auditor, writer) = Auditor::build(&config, sink, QUEUE_CAPACITY);
        if listen_for_hangup {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(AuditError::Signal)?;
            let tx = auditor.tx.clone();
            let task = runtime.spawn(async move {
                // `send` waits for room: a reopen request is never dropped.
                while hangup.recv().await.is_some() {
                    if tx.send(Msg::Reopen).await.is_err() {
                        break;
                    }
                }
            });
            auditor.hangup = Some(task.abort_handle());
        }
        std::thread::Builder::new()
            .name("thv-audit".to_owned())
            .spawn(move || writer.run())
            .map_err(AuditError::Thread)?;
        Ok(auditor)
    }

    /// The auditor and its (not yet running) writer.
    fn build(config: &AuditConfig, sink: Sink, capacity: usize) -> (Auditor, Writer) {
        let (tx, rx) = mpsc::channel(capacity);
        let lost = Arc::new(AtomicU64::new(0));
        let mut wanted = 0;
        for ty in EventType::ALL {
            let listed = config.event_types.is_empty() || config.event_types.contains(&ty);
            if listed && !config.exclude_event_types.contains(&ty) {
                wanted |= ty.bit();
            }
        }
        let auditor = Auditor {
            settings: Arc::new(Settings {
                component: config.component.clone(),
                transport: config.transport,
                include_request_data: config.include_request_data,
                include_response_data: config.include_response_data,
                max_data_size: config.max_data_size,
            }),
            wanted,
            detect_application_errors: config.detect_application_errors,
            tx,
            closed: AtomicBool::new(false),
            lost: Arc::clone(&lost),
            epoch: Instant::now(),
            last_drop_warning: AtomicU64::new(0),
            hangup: None,
        };
        let settings = Arc::clone(&auditor.settings);
        (auditor, Writer::new(rx, sink, lost, capacity, settings))
    }

    /// Whether events of this type are audited: not in `excludeEventTypes`, and in
    /// `eventTypes` when that is set.
    pub(crate) fn wants(&self, ty: EventType) -> bool {
        self.wanted & ty.bit() != 0
    }

    /// Whether to offer request bodies (`includeRequestData`).
    pub(crate) fn wants_request_data(&self) -> bool {
        self.settings.include_request_data
    }

    /// Whether to offer response bodies (`includeResponseData`).
    pub(crate) fn wants_response_data(&self) -> bool {
        self.settings.include_response_data
    }

    /// Whether to look for JSON-RPC errors in 2xx responses (`detectApplicationErrors`; see
    /// [`application_error`], which needs the first [`ERROR_DETECTION_PREFIX`] bytes).
    pub(crate) fn detects_application_errors(&self) -> bool {
        self.detect_application_errors
    }

    /// `maxDataSize`: longer bodies are left out of the event.
    pub(crate) fn max_data_size(&self) -> usize {
        self.settings.max_data_size
    }

    /// Queues one event, rendered now (tests: the proxy defers rendering, `log_later`).
    #[cfg(test)]
    pub(crate) fn log(&self, event: &Event<'_>) {
        let line = render(event, &self.settings, &json::uuid_v4(), SystemTime::now());
        self.log_later(event.ty, move |_| line);
    }

    /// Queues an event of type `ty` that `make` renders later, on the writer's thread: the
    /// request path pays for moving the owned event, not for its id, its JSON or reading
    /// the answer. `make` is handed a [`Render`] and the event's time is the caller's.
    /// Events of unwanted types are ignored; with the queue full (or after `close`) the event
    /// is dropped and counted, and a warning with the running count is logged at most once a
    /// minute.
    pub(crate) fn log_later(&self, ty: EventType, make: impl FnOnce(&Render<'_>) -> String + Send + 'static) {
        if !self.wants(ty) {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let render: writer::Deferred = Box::new(move |settings| make(&Render(settings)));
        if self.tx.try_send(Msg::Deferred(render)).is_err() {
            let total = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
            self.warn_dropped(total);
        }
    }

    fn warn_dropped(&self, total: u64) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < DROP_WARNING_INTERVAL_MS {
            return;
        }
        // One caller wins the minute; the others stay quiet.
        if self.last_drop_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            warn!(
                lost = total,
                "the audit log writer is behind: events are being dropped (warned at most once a minute)"
            );
        }
    }

    /// Events lost so far: dropped on a full queue or after `close`, or lost to a failed
    /// write.
    pub(crate) fn dropped(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// At shutdown: stops accepting events, has the writer write everything queued and
    /// fsync, and waits for it at most `limit`. Calling it again returns at once.
    pub(crate) async fn close(&self, limit: Duration) {
        self.closed.store(true, Ordering::Release);
        if let Some(hangup) = &self.hangup {
            hangup.abort();
        }
        let (done_tx, done_rx) = oneshot::channel();
        let drained = tokio::time::timeout(limit, async {
            // An error means the writer has already stopped.
            if self.tx.send(Msg::Close(done_tx)).await.is_ok() {
                let _ = done_rx.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(limit = ?limit, "the audit log did not finish writing in time; queued events may be lost");
        }
    }
}

impl Drop for Auditor {
    /// Without `close`, the writer still writes what is queued and stops once the last
    /// sender (the SIGHUP task's included) is gone.
    fn drop(&mut self) {
        if let Some(hangup) = &self.hangup {
            hangup.abort();
        }
    }
}

#[cfg(test)]
mod tests;
