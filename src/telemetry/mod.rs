//! Observability: logs ([`logs`]), and when configured (`--otel-endpoint`,
//! `--otel-enable-prometheus-metrics-path`), OpenTelemetry metrics and traces with
//! ToolHive's names ([`metrics`]), served to Prometheus on a diagnostics listener
//! ([`diagnostics`], never the MCP port) and exported over OTLP/HTTP ([`otlp`]).
//!
//! Both engines report to one place: an [`Observation`] opened when a request head is
//! accepted, told the body once it is whole (which may carry trace context in
//! `params._meta`), and finished with the exchange's record. Finishing counts the request
//! and, for a sampled trace, queues its spans; nothing is rendered or sent on the request
//! path. Unconfigured, none of this exists: the proxy holds `None`.
//!
//! Spans follow the OpenTelemetry HTTP and MCP semantic conventions as ToolHive emits them
//! (`docs/observability.md`): a SERVER span named `tools/call <tool>`, `initialize`, or
//! `<METHOD> <path>`, and a CLIENT child for the call to the target, whose id the target
//! receives as its parent in `traceparent` (and in `params._meta.traceparent` when the
//! client put one there: ToolHive's rule is that `_meta` wins over the header).

pub(crate) mod data;
pub(crate) mod diagnostics;
mod logs;
pub(crate) mod metrics;
mod names;
pub(crate) mod otlp;
pub(crate) mod prometheus;
mod spans;
pub(crate) mod trace;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::TelemetryConfig;
use crate::mcp::peek::{self, Peek};
use crate::policy::tools::ToolView;
use data::{Family, KeyValue, Resource};
pub(crate) use logs::init;
use metrics::{Metrics, RequestFacts};
pub(crate) use names::Learn;
use names::Names;
use otlp::ExportConfig;
use otlp::export::{ExportStats, Exporter};
use trace::{Sampler, TraceParent};

/// The telemetry of one proxy, made at startup.
pub(crate) struct Telemetry {
    metrics: Arc<Metrics>,
    exporter: Option<Exporter>,
    stats: Option<Arc<ExportStats>>,
    /// Tracing is on: a sampler decides per trace.
    sampler: Option<Sampler>,
    server: String,
    /// `--otel-env-vars`, as span attributes.
    span_env: Vec<KeyValue>,
    /// Tool, prompt and resource names the server's own lists gave: the only names that
    /// become metric labels (a client could otherwise mint a series per request).
    names: Names,
    /// `--tools`/`--tools-override`: the names the client sees, mapped back to the server's.
    tools: Option<Arc<ToolView>>,
}

/// What a sampled span reads of the request head, as either engine has it (made only for
/// a sampled request: see [`Observation::read_body`]).
pub(crate) struct Head<'a> {
    /// Without its query (a query may carry secrets).
    pub(crate) path: &'a [u8],
    pub(crate) tracestate: Option<&'a [u8]>,
    pub(crate) session: Option<&'a [u8]>,
    pub(crate) protocol: Option<&'a [u8]>,
}

/// The trace of one request: the client's context, and the proxy's two spans.
struct Traced {
    trace_id: [u8; 16],
    /// The client's span, when it sent one.
    parent: Option<[u8; 8]>,
    server_span: [u8; 8],
    client_span: [u8; 8],
    sampled: bool,
    tracestate: Option<String>,
}

/// What the target receives of the trace: the `traceparent` naming the proxy's client
/// span, and where the body's own `_meta.traceparent` string lies (quotes included), to be
/// replaced with the same value.
pub(crate) struct Propagate {
    pub(crate) traceparent: [u8; trace::TRACEPARENT_LEN],
    pub(crate) body_at: Option<(usize, usize)>,
    /// `Some` when the body's context won over the header's: the `tracestate` that goes with
    /// it replaces the client's header (`Some(None)`: none is sent). `None`: the client's
    /// `tracestate` passes as it came.
    pub(crate) meta_state: Option<Option<String>>,
}

impl Propagate {
    /// `body` with its `_meta.traceparent` (the string at `at`) replaced by the one the
    /// target receives in the header: the two copies never disagree. The same length unless
    /// the client escaped characters in its copy.
    pub(crate) fn in_body(&self, body: &[u8], (from, to): (usize, usize)) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 2);
        out.extend_from_slice(body.get(..from).unwrap_or_default());
        out.push(b'"');
        out.extend_from_slice(&self.traceparent);
        out.push(b'"');
        out.extend_from_slice(body.get(to..).unwrap_or_default());
        out
    }
}

/// One request as telemetry follows it.
pub(crate) struct Observation {
    telemetry: Arc<Telemetry>,
    started: Instant,
    method: Cow<'static, str>,
    path: String,
    peer: SocketAddr,
    session: Option<String>,
    protocol: Option<String>,
    header_parent: Option<TraceParent>,
    /// As sent when the request is sampled; else the label (`other` for an unknown one).
    mcp_method: Option<Cow<'static, str>>,
    jsonrpc_id: Option<String>,
    /// `params.name` or `params.uri`, as the client sent it (spans only).
    target: Option<String>,
    /// The label of what a call, read or get is about (`other` until the server listed it).
    label: Option<names::Label>,
    /// `initialize`'s `clientInfo.name` (spans only).
    client_name: Option<String>,
    trace: Option<Traced>,
    /// When the request went to the target (a span's wall-clock times are derived from
    /// these at its end: an unsampled request never reads the wall clock).
    upstream_started: Option<Instant>,
    /// The answer is an event stream: one span for its life, its events counted.
    event_stream: bool,
    events: u64,
    /// The end of the previous chunk, for an event boundary split across chunks.
    tail: [u8; 3],
    /// The answer is a list whose names the metrics learn.
    learn: Option<Learn>,
    /// The body was a JSON-RPC batch (`mcp.is_batch`).
    batch: bool,
}

/// The HTTP method, without a copy for the ones MCP uses.
fn static_method(method: &str) -> Cow<'static, str> {
    match method {
        "POST" => Cow::Borrowed("POST"),
        "GET" => Cow::Borrowed("GET"),
        "DELETE" => Cow::Borrowed("DELETE"),
        other => Cow::Owned(other.to_owned()),
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Telemetry {
    /// Starts the exporter thread when an OTLP endpoint is configured.
    pub(crate) fn start(
        config: &TelemetryConfig,
        server_name: &str,
        tools: Option<Arc<ToolView>>,
    ) -> std::io::Result<Arc<Telemetry>> {
        let metrics = Arc::new(Metrics::new(server_name, config.transport));
        let mut resource = Resource { attributes: vec![KeyValue::str("service.name", config.service_name.clone())] };
        resource.attributes.push(KeyValue::str("service.version", env!("CARGO_PKG_VERSION")));
        for (k, v) in &config.resource {
            resource.attributes.push(KeyValue { key: k.clone().into(), value: data::Value::Str(v.clone().into()) });
        }
        let exporter = if config.traces_url.is_some() || config.metrics_url.is_some() {
            let export = ExportConfig {
                traces_url: config.traces_url.clone(),
                metrics_url: config.metrics_url.clone(),
                headers: config.headers.clone(),
                timeout: config.export_timeout,
                metric_interval: config.metric_interval,
                max_queue: config.max_queue,
                max_batch: config.max_batch,
                schedule_delay: config.schedule_delay,
                resource,
            };
            let snapshot: Option<Box<dyn Fn() -> data::Snapshot + Send + Sync>> = match config.metrics_url {
                Some(_) => {
                    let metrics = metrics.clone();
                    Some(Box::new(move || metrics.snapshot(&[])))
                }
                None => None,
            };
            Some(Exporter::start(export, snapshot)?)
        } else {
            None
        };
        let stats = exporter.as_ref().map(Exporter::stats);
        Ok(Arc::new(Telemetry {
            metrics,
            exporter,
            stats,
            sampler: config.traces_url.as_ref().map(|_| Sampler::new(config.sampling_rate, config.follow_parent)),
            server: server_name.to_owned(),
            span_env: config
                .span_env
                .iter()
                .map(|(k, v)| KeyValue {
                    key: format!("environment.{k}").into(),
                    value: data::Value::Str(v.clone().into()),
                })
                .collect(),
            names: Names::default(),
            tools,
        }))
    }

    /// The counters the rest of the proxy adds to (authentication, upstream, policy).
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether spans are made and trace context is passed on.
    pub(crate) fn tracing(&self) -> bool {
        self.sampler.is_some()
    }

    /// Opens the observation of a request whose head was accepted: its method, the client's
    /// address, and the client's `traceparent` header.
    pub(crate) fn observe(
        self: &Arc<Self>,
        method: &str,
        peer: SocketAddr,
        traceparent: Option<&[u8]>,
    ) -> Box<Observation> {
        let tracing = self.tracing();
        // ToolHive's active connections: requests in flight (closed when the observation ends).
        self.metrics.connection(false, true);
        Box::new(Observation {
            telemetry: self.clone(),
            started: Instant::now(),
            method: static_method(method),
            path: String::new(),
            peer,
            session: None,
            protocol: None,
            header_parent: traceparent.filter(|_| tracing).and_then(TraceParent::parse),
            mcp_method: None,
            jsonrpc_id: None,
            target: None,
            label: None,
            client_name: None,
            trace: None,
            upstream_started: None,
            event_stream: false,
            events: 0,
            tail: [0; 3],
            learn: None,
            batch: false,
        })
    }

    /// Prometheus text of every metric, for the diagnostics listener.
    pub(crate) fn render_prometheus(&self) -> String {
        prometheus::render(&self.metrics.snapshot(&self.export_families()))
    }

    /// The exporter's own counters, as metric families.
    fn export_families(&self) -> Vec<Family> {
        let Some(stats) = &self.stats else { return Vec::new() };
        let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let dropped = read(&stats.spans_dropped) + read(&stats.spans_failed);
        metrics::exporter_families(dropped, read(&stats.trace_exports_failed), read(&stats.metric_exports_failed))
            .into()
    }

    /// Flushes what is queued, waiting at most `within`.
    pub(crate) fn shutdown(&self, within: Duration) {
        if let Some(exporter) = &self.exporter {
            exporter.shutdown(within);
        }
    }
}

impl Observation {
    /// The request body is whole (after the MCP policy, as the target will get it): its
    /// MCP facts are read, the trace decided, and what the target receives of it returned.
    /// `head` is called only for a sampled span (its path, session and protocol, the
    /// client's `tracestate`): an unsampled request reads and copies none of them.
    pub(crate) fn read_body<'h>(&mut self, head: impl FnOnce() -> Option<Head<'h>>, body: &[u8]) -> Option<Propagate> {
        let peeked = peek::peek(body);
        self.batch = peeked.is_none() && body.trim_ascii_start().first() == Some(&b'[');
        let meta_parent = peeked.as_ref().and_then(meta_trace);
        let propagate = self.telemetry.tracing().then(|| {
            // ToolHive's rule: the MCP-level context wins over the HTTP header, and the
            // `tracestate` that goes with it is the body's too.
            let meta_state = meta_parent.map(|_| {
                let state = peeked.as_ref().and_then(|p| p.tracestate.as_deref());
                state.filter(|s| trace::valid_tracestate(s)).map(str::to_owned)
            });
            let traced = self.decide(meta_parent.map(|(t, _)| t).or(self.header_parent));
            let traceparent =
                TraceParent { trace_id: traced.trace_id, parent_id: traced.client_span, sampled: traced.sampled }
                    .render();
            if traced.sampled {
                self.sampled_head(head(), meta_state.as_ref());
            }
            Propagate { traceparent, body_at: meta_parent.map(|(_, at)| at), meta_state }
        });
        if let Some(p) = &peeked {
            self.note(p);
        }
        propagate
    }

    /// What a sampled span keeps of the head, and the `tracestate` of its trace (the body's
    /// when its context won, else the client's header).
    fn sampled_head(&mut self, head: Option<Head<'_>>, meta_state: Option<&Option<String>>) {
        let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
        let state = match meta_state {
            Some(state) => state.clone(),
            None => {
                head.as_ref().and_then(|h| h.tracestate).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned)
            }
        };
        if let Some(t) = self.trace.as_mut() {
            t.tracestate = state;
        }
        let Some(head) = head else { return };
        self.session = text(head.session);
        self.protocol = text(head.protocol);
        self.path = String::from_utf8_lossy(head.path).into_owned();
    }

    /// The proxy answered the request itself (the MCP policy refused it): what the body
    /// says still labels the request's metrics, as it would had the target answered.
    pub(crate) fn answered_here(&mut self, body: &[u8]) {
        if let Some(p) = peek::peek(body) {
            self.note(&p);
        }
    }

    /// What the body says, for the metrics and (when sampled) the spans.
    fn note(&mut self, p: &Peek<'_>) {
        let sampled = self.trace.as_ref().is_some_and(|t| t.sampled);
        self.mcp_method = p.method.as_deref().map(|m| match sampled {
            // A span names the method as sent; a label only ever reads the known ones.
            true => Cow::Owned(m.to_owned()),
            false => Cow::Borrowed(metrics::vocab::mcp_method(Some(m))),
        });
        // The name labels metrics (once the server has listed it) and names spans.
        if let (Some(kind), Some(subject)) = (p.method.as_deref().and_then(names::Kind::of_method), &p.subject) {
            self.label = Some(self.telemetry.names.label(kind, subject));
        }
        if sampled {
            self.target = p.subject.as_deref().map(str::to_owned);
        }
        if sampled {
            self.jsonrpc_id = p.id.map(|id| id.trim_matches('"').to_owned());
            self.client_name = p.client_name.as_deref().map(str::to_owned);
        }
        self.learn = p.method.as_deref().and_then(Learn::for_method);
    }

    /// The trace, decided once: its ids and whether it is recorded.
    fn decide(&mut self, parent: Option<TraceParent>) -> &Traced {
        let sampler = self.telemetry.sampler.unwrap_or(Sampler::new(0.0, true));
        self.trace.get_or_insert_with(|| {
            let trace_id = parent.map_or_else(trace::trace_id, |p| p.trace_id);
            let sampled = sampler.sampled(parent.as_ref(), &trace_id);
            Traced {
                trace_id,
                parent: parent.map(|p| p.parent_id),
                // Only a recorded trace has a server span; the target's parent is the
                // client span either way.
                server_span: if sampled { trace::span_id() } else { [0; 8] },
                client_span: trace::span_id(),
                sampled,
                tracestate: None,
            }
        })
    }

    /// Decides the trace now when no body will (a request refused before its body was
    /// read), so that the lines logged about the request carry the trace id of its span.
    pub(crate) fn settle_trace(&mut self) -> &Self {
        if self.telemetry.tracing() && self.trace.is_none() {
            self.decide(self.header_parent);
        }
        self
    }

    /// The request is being sent to the target now.
    pub(crate) fn upstream_started(&mut self) {
        // Only a sampled span reads it (a request without a body is decided at the end).
        if self.telemetry.tracing() && self.trace.as_ref().is_none_or(|t| t.sampled) {
            self.upstream_started = Some(Instant::now());
        }
    }

    /// The answer is an event stream: its events are counted as they pass.
    pub(crate) fn event_stream(&mut self) {
        if !self.event_stream {
            self.event_stream = true;
            // Counted from now on as an SSE connection.
            self.telemetry.metrics.connection(false, false);
            self.telemetry.metrics.connection(true, true);
        }
    }

    /// Whether the answer's bytes should be shown to [`Observation::answer_bytes`].
    pub(crate) fn reads_answer(&self) -> bool {
        self.event_stream || self.learn.is_some()
    }

    /// The next bytes of the answer, as the client gets them.
    pub(crate) fn answer_bytes(&mut self, data: &[u8]) {
        if self.event_stream {
            let (events, tail) = count_events(self.tail, data);
            self.events += events;
            self.tail = tail;
        }
        if let Some(learn) = &mut self.learn {
            learn.feed(data);
        }
    }

    /// The trace id, when this request is sampled (for the request's log line).
    pub(crate) fn sampled_trace_id(&self) -> Option<String> {
        self.trace.as_ref().filter(|t| t.sampled).map(|t| trace::hex_string(&t.trace_id))
    }

    /// The exchange ended with `status`, `bytes` of answer passed to the client.
    pub(crate) fn finish(mut self: Box<Self>, status: u16, bytes: u64) {
        let tel = self.telemetry.clone();
        if let Some(learn) = self.learn.take().filter(|_| (200..300).contains(&status)) {
            learn.finish(&tel.names, tel.tools.as_deref());
        }
        if self.events > 0 {
            tel.metrics.count(metrics::Count::SseEvents(self.events));
        }
        let mcp_method = match (&self.mcp_method, self.event_stream && self.method == "GET") {
            (_, true) => Some("sse_connection"),
            (m, false) => m.as_deref(),
        };
        let vetted = self.label.as_ref().map(names::Label::as_str);
        let facts = RequestFacts {
            http_method: &self.method,
            status,
            mcp_method,
            resource_id: vetted,
            duration: self.started.elapsed(),
        };
        tel.metrics.request(&facts);
        if self.settle_trace().trace.as_ref().is_some_and(|t| t.sampled) {
            self.spans(&tel, status, bytes);
        }
    }
}

/// A valid `params._meta.traceparent` and where its string lies in the body.
pub(crate) fn meta_trace(p: &Peek<'_>) -> Option<(TraceParent, (usize, usize))> {
    p.traceparent.as_ref().and_then(|(tp, at)| TraceParent::parse(tp.as_bytes()).map(|t| (t, *at)))
}

impl Drop for Observation {
    /// The request is over, answered or not (a client that left, a panic): it no longer
    /// counts as an active connection.
    fn drop(&mut self) {
        self.telemetry.metrics.connection(self.event_stream, false);
    }
}

/// SSE events completed in `data` (an event ends at a blank line: `\n\n`, `\r\r` or
/// `\r\n\r\n`, WHATWG HTML §9.2.6), given the last bytes of the previous chunk; and the
/// last bytes of this one.
fn count_events(tail: [u8; 3], data: &[u8]) -> (u64, [u8; 3]) {
    let mut events = 0;
    let mut last = tail;
    for &b in data {
        if b == b'\n' && (last[2] == b'\n' || (last[2] == b'\r' && last[1] == b'\n')) {
            events += 1;
            last = [0, 0, 0];
            continue;
        }
        if b == b'\r' && last[2] == b'\r' {
            events += 1;
            last = [0, 0, 0];
            continue;
        }
        last = [last[1], last[2], b];
    }
    (events, last)
}

#[cfg(test)]
mod tests;
