//! The export thread: takes finished spans from the request path without ever blocking it,
//! batches them, and POSTs spans and metric snapshots to the collector over OTLP/HTTP.
//!
//! Owns the queue and the batching (the batch span processor's knobs, OpenTelemetry SDK
//! spec "Batching processor"); each export's trip to the collector is [`super::post`]'s.
//!
//! Everything runs on one dedicated thread with its own current-thread runtime, so a slow or
//! dead collector never takes a worker of the proxy's runtime. A collector that misbehaves
//! costs at most one request in flight per signal, one retry, and the bounded queue; spans
//! that do not fit are dropped and counted ([`ExportStats`]), never waited for.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::post::{Poster, Target, client};
use super::{ExportConfig, encode, traces};
use crate::telemetry::data::{Resource, Snapshot, Span};

/// Reads every metric; called on the export thread.
pub(crate) type SnapshotFn = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// Of the time given to [`Exporter::shutdown`], what is kept for the thread to wind down.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(50);
/// A deadline for `Duration::MAX`, which no `Instant` can add.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the export did, for the proxy's own metrics. Every span given to
/// [`Exporter::span`] while traces are exported ends in exactly one of `spans_exported`,
/// `spans_dropped` and `spans_failed` once the exporter has shut down.
#[derive(Debug, Default)]
pub(crate) struct ExportStats {
    /// Spans a collector accepted (2xx).
    pub(crate) spans_exported: AtomicU64,
    /// Spans refused at [`Exporter::span`]: the queue was full or the exporter had stopped.
    pub(crate) spans_dropped: AtomicU64,
    /// Spans that were queued but never reached a collector: their export failed, or
    /// shutdown cut it short.
    pub(crate) spans_failed: AtomicU64,
    /// Trace export requests that failed (after the one retry, if any).
    pub(crate) trace_exports_failed: AtomicU64,
    /// Metric exports a collector accepted.
    pub(crate) metric_exports: AtomicU64,
    /// Metric export requests that failed.
    pub(crate) metric_exports_failed: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// The handle the proxy keeps: hands spans to the export thread and stops it.
pub(crate) struct Exporter {
    /// `None` when traces are not exported.
    spans: Option<mpsc::Sender<Span>>,
    /// Wakes the export thread when a batch is full (otherwise its timer does: see
    /// [`TracePipe::run`]).
    batch_full: Arc<Notify>,
    /// The queue's size, and how many queued spans make a batch.
    max_queue: usize,
    max_batch: usize,
    stats: Arc<ExportStats>,
    /// Taken by the first [`Exporter::shutdown`].
    stop: std::sync::Mutex<Option<oneshot::Sender<Instant>>>,
    /// Disconnects when the thread ends (its sender is dropped with the thread's state);
    /// in a mutex only so that the handle is `Sync` and can be shared by request tasks.
    ended: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Exporter {
    /// Starts the export thread. `snapshot` is called on the export thread every
    /// `metric_interval` (and once at shutdown) when `metrics_url` is set; without either,
    /// no metrics are exported. Fails only if the thread, its runtime or the HTTP client
    /// (TLS roots) cannot be set up.
    pub(crate) fn start(config: ExportConfig, snapshot: Option<SnapshotFn>) -> io::Result<Exporter> {
        let client = client(&config)?;
        let stats = Arc::new(ExportStats::default());
        let batch_full = Arc::new(Notify::new());
        let max_queue = config.max_queue.max(1);
        let max_batch = config.max_batch.max(1);
        let (spans, traces) = match config.traces_url {
            Some(url) => {
                // tokio panics on a zero capacity; a queue of one is the least there is.
                let (tx, rx) = mpsc::channel(max_queue);
                let pipe = TracePipe {
                    target: Target::new(url, "traces"),
                    rx,
                    batch_full: batch_full.clone(),
                    batch: Vec::with_capacity(max_batch),
                    in_flight: 0,
                    max_batch,
                    delay: config.schedule_delay,
                };
                (Some(tx), Some(pipe))
            }
            None => (None, None),
        };
        let metrics = match (config.metrics_url, snapshot) {
            (Some(url), Some(snapshot)) => Some(MetricPipe {
                target: Target::new(url, "metrics"),
                snapshot,
                // `interval` panics on zero.
                interval: config.metric_interval.max(Duration::from_millis(1)),
            }),
            _ => None,
        };
        let worker =
            Worker { poster: Poster { client, stats: stats.clone() }, resource: config.resource, traces, metrics };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stop_rx) = oneshot::channel();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("thv-otlp".to_owned()).spawn(move || {
            let _ended = ended_tx;
            runtime.block_on(worker.run(stop_rx));
            // A DNS lookup stuck on a blocking thread must not hold up the exit.
            runtime.shutdown_background();
        })?;
        Ok(Exporter {
            spans,
            batch_full,
            max_queue,
            max_batch,
            stats,
            stop: std::sync::Mutex::new(Some(stop)),
            ended: std::sync::Mutex::new(ended),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues a finished span for export. Never blocks and allocates nothing beyond the span
    /// itself (the channel's slots are reused); when the queue is full the span is dropped
    /// and counted in [`ExportStats::spans_dropped`]. A no-op when traces are not exported.
    pub(crate) fn span(&self, span: Span) {
        let Some(tx) = &self.spans else { return };
        if tx.try_send(span).is_err() {
            add(&self.stats.spans_dropped, 1);
        } else if self.max_queue - tx.capacity() == self.max_batch {
            // The span that made a batch: the export thread need not wait for its timer.
            self.batch_full.notify_one();
        }
    }

    /// The export's counters, for the proxy's own metrics; they stay readable after shutdown.
    pub(crate) fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Flushes the queued spans and makes one last metric export, waiting at most `within`;
    /// then the thread ends (or, past `within`, is left to end on its own at its deadline).
    /// Takes `&self` (the proxy's handle is shared by request tasks); a second call does
    /// nothing.
    pub(crate) fn shutdown(&self, within: Duration) {
        let start = std::time::Instant::now();
        let lock = |m| std::sync::Mutex::lock(m).unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(stop) = lock(&self.stop).take() else { return };
        // The thread stops exporting a little before `within` is up, so that it has the time
        // to count what it leaves unsent and end before this stops waiting for it.
        let margin = (within / 10).min(SHUTDOWN_MARGIN);
        // The thread may already be gone (a panic in `snapshot`); then there is nothing to wait for.
        let now = Instant::now();
        let _ = stop.send(now.checked_add(within - margin).unwrap_or(now + FOREVER));
        let ended = self.ended.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = within.saturating_sub(start.elapsed());
        if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = ended.recv_timeout(left)
            && let Some(thread) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            let _ = thread.join();
        }
    }
}

/// The export thread's state.
struct Worker {
    poster: Poster,
    resource: Resource,
    traces: Option<TracePipe>,
    metrics: Option<MetricPipe>,
}

impl Worker {
    async fn run(self, stop: oneshot::Receiver<Instant>) {
        let Worker { poster, resource, mut traces, metrics } = self;
        let deadline = {
            // Each signal has its own loop, so a stuck trace export never delays metrics.
            let spans = async {
                if let Some(t) = traces.as_mut() {
                    t.run(&poster, &resource).await;
                }
                std::future::pending::<()>().await;
            };
            let metric_loop = async {
                if let Some(m) = &metrics {
                    m.run(&poster, &resource).await;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                // Dropped without `shutdown`: stop at once.
                deadline = stop => deadline.ok(),
                ((), ()) = async { tokio::join!(spans, metric_loop) } => None,
            }
        };
        let Some(deadline) = deadline else { return };
        let flush_spans = async {
            if let Some(t) = traces.as_mut() {
                t.flush(&poster, &resource).await;
            }
        };
        let flush_metrics = async {
            if let Some(m) = &metrics {
                m.export(&poster, &resource).await;
            }
        };
        let _ = tokio::time::timeout_at(deadline, async { tokio::join!(flush_spans, flush_metrics) }).await;
        if let Some(t) = traces.as_mut() {
            t.abandon(&poster.stats);
        }
    }
}

struct TracePipe {
    target: Target,
    rx: mpsc::Receiver<Span>,
    batch_full: Arc<Notify>,
    batch: Vec<Span>,
    /// Spans of the request in flight, to count them if shutdown cancels it.
    in_flight: usize,
    max_batch: usize,
    delay: Duration,
}

impl TracePipe {
    /// Exports what is queued every `delay`, or as soon as a batch is full; returns when
    /// every sender is gone. The queue is only ever read with `try_recv`, never awaited: a
    /// receiver waiting on it would be woken by every span, a thread switch per request on
    /// a busy proxy. Spans wait in the queue instead, and the thread wakes a few times a
    /// second.
    async fn run(&mut self, poster: &Poster, resource: &Resource) {
        loop {
            let _ = tokio::time::timeout(self.delay, self.batch_full.notified()).await;
            loop {
                let gone = self.drain();
                if !self.batch.is_empty() {
                    let full = self.batch.len() == self.max_batch;
                    self.export(poster, resource).await;
                    if full && !gone {
                        continue;
                    }
                }
                if gone {
                    return;
                }
                break;
            }
        }
    }

    /// Moves queued spans into the batch, up to its size; whether every sender is gone.
    fn drain(&mut self) -> bool {
        while self.batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(span) => self.batch.push(span),
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    async fn export(&mut self, poster: &Poster, resource: &Resource) {
        let body = traces::encode_traces(resource, &self.batch);
        self.in_flight = self.batch.len();
        self.batch.clear();
        let ok = poster.post(&self.target, body).await;
        let n = std::mem::take(&mut self.in_flight);
        if ok {
            add(&poster.stats.spans_exported, n);
        } else {
            add(&poster.stats.spans_failed, n);
            add(&poster.stats.trace_exports_failed, 1);
        }
    }

    /// At shutdown: the request that was in flight is lost (sending it again could
    /// duplicate spans); everything queued is exported.
    async fn flush(&mut self, poster: &Poster, resource: &Resource) {
        add(&poster.stats.spans_failed, std::mem::take(&mut self.in_flight));
        self.rx.close();
        loop {
            while self.batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(span) => self.batch.push(span),
                    Err(_) => break,
                }
            }
            if self.batch.is_empty() {
                return;
            }
            self.export(poster, resource).await;
        }
    }

    /// Counts what the shutdown deadline left unsent.
    fn abandon(&mut self, stats: &ExportStats) {
        self.rx.close();
        let mut n = std::mem::take(&mut self.in_flight) + self.batch.len();
        self.batch.clear();
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        add(&stats.spans_failed, n);
    }
}

struct MetricPipe {
    target: Target,
    snapshot: SnapshotFn,
    interval: Duration,
}

impl MetricPipe {
    async fn run(&self, poster: &Poster, resource: &Resource) {
        let mut tick = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        // After a slow export, the next one comes a full interval later, not in a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.export(poster, resource).await;
        }
    }

    async fn export(&self, poster: &Poster, resource: &Resource) {
        let body = encode::encode_metrics(resource, &(self.snapshot)());
        if poster.post(&self.target, body).await {
            add(&poster.stats.metric_exports, 1);
        } else {
            add(&poster.stats.metric_exports_failed, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_can_be_shared_by_request_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Exporter>();
    }
}
