//! The proxy's metrics registry: ToolHive's instruments under ToolHive's names (dashboards
//! query them), the MCP semantic-convention operation histogram, and the proxy's own `thv_*`
//! counters. The request path records into it ([`Metrics::request`], [`Metrics::count`]);
//! the exporters read a [`Snapshot`] of it ([`Metrics::snapshot`]) and never the registry.
//!
//! Label values are bounded three ways: client-influenced words (MCP and HTTP methods) are
//! mapped onto fixed vocabularies ([`vocab`]); names arrive vetted by the caller; and every
//! labelled instrument enforces the OpenTelemetry metrics SDK cardinality limit
//! (<https://opentelemetry.io/docs/specs/otel/metrics/sdk/#cardinality-limits>), with
//! values cut to [`table::MAX_VALUE_BYTES`]. The fixed-vocabulary counters are plain
//! atomics indexed by position, without any map.

mod table;
#[cfg(test)]
mod tests;
pub(crate) mod vocab;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use self::table::{Bounds, Histogram, Sum, Table};
pub(crate) use self::vocab::{AUTH_REASONS, DENIAL_REASONS, INTROSPECTION_RESULTS};
use self::vocab::{OK_ERROR, SSE_CONNECTION};
use crate::telemetry::data::{Family, Kind, Point, Series, Snapshot};

/// ToolHive's request-duration buckets, in seconds (the Prometheus client defaults, which
/// ToolHive's dashboards were drawn against, rather than OpenTelemetry's millisecond ones).
const REQUEST_SECONDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
static REQUEST_BOUNDS: Bounds<14> = Bounds::new(REQUEST_SECONDS);

/// The MCP semantic conventions' advice for `mcp.server.operation.duration`.
const OPERATION_SECONDS: [f64; 14] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
static OPERATION_BOUNDS: Bounds<14> = Bounds::new(OPERATION_SECONDS);

/// No upstream token: stored as a NaN bit pattern no finite reading can have.
const NO_EXPIRY: u64 = u64::MAX;

/// What the request path knows about one finished request.
pub(crate) struct RequestFacts<'a> {
    pub(crate) http_method: &'a str,
    pub(crate) status: u16,
    /// Raw from the body, or `Some("sse_connection")`; normalised here.
    pub(crate) mcp_method: Option<&'a str>,
    /// The vetted tool name, resource URI or prompt name (the tool of a `tools/call`, the
    /// prompt of a `prompts/get`).
    pub(crate) resource_id: Option<&'a str>,
    pub(crate) duration: Duration,
}

/// One event of a fixed-vocabulary counter. The `&'static str` arguments are words of
/// [`AUTH_REASONS`], [`INTROSPECTION_RESULTS`] and [`DENIAL_REASONS`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    InboundAccepted,
    InboundRefused(&'static str),
    JwksFetch { ok: bool },
    Introspection(&'static str),
    IntrospectionCacheHit,
    OutboundLogin { ok: bool },
    OutboundRefresh { ok: bool },
    UpstreamConnectFailure,
    UpstreamRetry,
    SseEvents(u64),
    PolicyDenial(&'static str),
}

/// The registry. `Send + Sync`; shared through an `Arc`.
pub(crate) struct Metrics {
    server: Box<str>,
    transport: &'static str,
    start_unix_nanos: u64,
    /// method, status_code, status, mcp_method, mcp_resource_id: one histogram serves both
    /// `toolhive_mcp_requests` (its count) and `toolhive_mcp_request_duration`, which have
    /// the same label sets, so a request costs one lookup for both.
    requests: Table<5, Histogram<15>>,
    /// tool, status.
    tool_calls: Table<2, Sum>,
    /// mcp.method.name, error.type, gen_ai.operation.name, gen_ai.tool.name, gen_ai.prompt.name.
    operations: Table<5, Histogram<15>>,
    /// HTTP method, status code, MCP method, name → the series of the three tables above
    /// that such a request records into, found once: a request then costs one lookup, not
    /// three.
    routes: Table<4, Route>,
    /// By `connection_type`: "" and "sse".
    active: [AtomicI64; 2],
    sse_open: AtomicI64,
    /// Index 0 is accepted/ok; index i > 0 is refused with `AUTH_REASONS[i]`.
    auth: [AtomicU64; 9],
    jwks: [AtomicU64; 2],
    introspections: [AtomicU64; 3],
    introspection_cache_hits: AtomicU64,
    logins: [AtomicU64; 2],
    refreshes: [AtomicU64; 2],
    connect_failures: AtomicU64,
    retries: AtomicU64,
    sse_events: AtomicU64,
    denials: [AtomicU64; 6],
    token_expiry: AtomicU64,
}

impl Metrics {
    /// A registry for the proxy in front of `server` (ToolHive's `server` label), reached
    /// over `transport` (`streamable-http` or `sse`).
    pub(crate) fn new(server: &str, transport: &'static str) -> Metrics {
        Metrics {
            server: table::truncate(server).into(),
            transport,
            start_unix_nanos: unix_nanos(),
            requests: Table::new(["method", "status_code", "status", "mcp_method", "mcp_resource_id"], false),
            tool_calls: Table::new(["tool", "status"], false),
            operations: Table::new(
                ["mcp.method.name", "error.type", "gen_ai.operation.name", "gen_ai.tool.name", "gen_ai.prompt.name"],
                true,
            ),
            routes: Table::new(["method", "status_code", "mcp_method", "name"], false),
            active: Default::default(),
            sse_open: AtomicI64::new(0),
            auth: Default::default(),
            jwks: Default::default(),
            introspections: Default::default(),
            introspection_cache_hits: AtomicU64::new(0),
            logins: Default::default(),
            refreshes: Default::default(),
            connect_failures: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            sse_events: AtomicU64::new(0),
            denials: Default::default(),
            token_expiry: AtomicU64::new(NO_EXPIRY),
        }
    }

    /// Records one finished request: ToolHive's request counter and duration, its tool-call
    /// counter for `tools/call`, and the semantic-convention operation duration for requests
    /// that carried an MCP message.
    pub(crate) fn request(&self, facts: &RequestFacts<'_>) {
        let mcp_method = vocab::mcp_method(facts.mcp_method);
        let mut digits = [0u8; 5];
        let code = vocab::status_code(facts.status, &mut digits);
        let nanos = u64::try_from(facts.duration.as_nanos()).unwrap_or(u64::MAX);
        let kind = [vocab::http_method(facts.http_method), code, mcp_method, facts.resource_id.unwrap_or("")];
        self.routes.visit(kind, |route| match route {
            Some(route) => route.0.get_or_init(|| self.route(kind, facts.status)).record(nanos),
            // Past the limit of kinds (each of the three tables has its own overflow).
            None => self.route(kind, facts.status).record(nanos),
        });
    }

    /// The series a request of `kind` (see [`Metrics::routes`]) records into.
    fn route(&self, [http_method, code, mcp_method, name]: [&str; 4], status_code: u16) -> Routes {
        // ToolHive: an HTTP status of 400 or more is an error.
        let status = if status_code >= 400 { "error" } else { "success" };
        let request = self.requests.shared([http_method, code, status, mcp_method, name]);
        let is_call = mcp_method == "tools/call";
        let tool_call = (is_call && !name.is_empty()).then(|| self.tool_calls.shared([name, status]));
        // An SSE stream's GET or a body-less request is no MCP operation.
        let operation = (!mcp_method.is_empty() && mcp_method != SSE_CONNECTION).then(|| {
            // Semantic conventions: `error.type` on server errors only; a 4xx is the client's.
            let error_type = if status_code >= 500 { code } else { "" };
            let (operation, tool) = if is_call { ("execute_tool", name) } else { ("", "") };
            let prompt = if mcp_method == "prompts/get" { name } else { "" };
            self.operations.shared([mcp_method, error_type, operation, tool, prompt])
        });
        Routes { request, tool_call, operation }
    }

    /// Counts one event of a fixed-vocabulary counter.
    pub(crate) fn count(&self, what: Count) {
        let (cell, n) = match what {
            Count::InboundAccepted => (&self.auth[0], 1),
            // Refused with "ok" is a caller bug; counted as "invalid" in release builds.
            Count::InboundRefused(reason) => (&self.auth[1 + vocab::position(&AUTH_REASONS[1..], reason, 1)], 1),
            Count::JwksFetch { ok } => (&self.jwks[usize::from(!ok)], 1),
            Count::Introspection(result) => {
                (&self.introspections[vocab::position(&INTROSPECTION_RESULTS, result, 2)], 1)
            }
            Count::IntrospectionCacheHit => (&self.introspection_cache_hits, 1),
            Count::OutboundLogin { ok } => (&self.logins[usize::from(!ok)], 1),
            Count::OutboundRefresh { ok } => (&self.refreshes[usize::from(!ok)], 1),
            Count::UpstreamConnectFailure => (&self.connect_failures, 1),
            Count::UpstreamRetry => (&self.retries, 1),
            Count::SseEvents(n) => (&self.sse_events, n),
            Count::PolicyDenial(reason) => (&self.denials[vocab::position(&DENIAL_REASONS, reason, 0)], 1),
        };
        cell.fetch_add(n, Relaxed);
    }

    /// A connection opened or closed: ToolHive's active connections, and the open SSE
    /// streams when it is one.
    pub(crate) fn connection(&self, sse: bool, opened: bool) {
        let delta = if opened { 1 } else { -1 };
        self.active[usize::from(sse)].fetch_add(delta, Relaxed);
        if sse {
            self.sse_open.fetch_add(delta, Relaxed);
        }
    }

    /// Seconds left on the current upstream token, or `None` when there is none.
    ///
    /// Kept as the deadline it makes, so that a scrape reads the seconds left at that
    /// moment, not at the last change (a token nobody refreshes counts down to 0).
    pub(crate) fn set_token_expiry(&self, seconds_left: Option<f64>) {
        let deadline = seconds_left
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(NO_EXPIRY, |s| unix_nanos().saturating_add((s * 1e9) as u64).min(NO_EXPIRY - 1));
        self.token_expiry.store(deadline, Relaxed);
    }

    /// Every family with its series, then `extra` (the exporters' own statistics, see
    /// [`exporter_families`]).
    pub(crate) fn snapshot(&self, extra: &[Family]) -> Snapshot {
        let server = &*self.server;
        let mut families = Vec::with_capacity(20 + extra.len());

        let base = [("server", server), ("transport", self.transport)];
        let mut series = Vec::new();
        self.requests.series_with(&base, &mut series, |h| Point::Count(h.count()));
        families.push(family(
            "toolhive_mcp_requests",
            "Total number of MCP requests",
            "{request}",
            Kind::Counter,
            series,
        ));
        let mut series = Vec::new();
        self.requests.series(&base, &mut series);
        families.push(family(
            "toolhive_mcp_request_duration",
            "Duration of MCP requests in seconds",
            "s",
            Kind::Histogram(&REQUEST_BOUNDS.seconds),
            series,
        ));
        let mut series = Vec::new();
        self.tool_calls.series(&[("server", server)], &mut series);
        families.push(family(
            "toolhive_mcp_tool_calls",
            "Total number of MCP tool calls",
            "{call}",
            Kind::Counter,
            series,
        ));
        let series = ["", "sse"]
            .iter()
            .zip(&self.active)
            .map(|(kind, level)| {
                let labels = [("server", server), ("transport", self.transport), ("connection_type", kind)];
                Series { labels: owned(&labels), point: Point::Level(level.load(Relaxed)) }
            })
            .collect();
        families.push(family(
            "toolhive_mcp_active_connections",
            "Number of active MCP connections",
            "{connection}",
            Kind::UpDown,
            series,
        ));
        let constant = [
            ("jsonrpc.protocol.version", "2.0"),
            ("network.transport", "tcp"),
            ("network.protocol.name", "http"),
            ("network.protocol.version", "1.1"),
        ];
        let mut series = Vec::new();
        self.operations.series(&constant, &mut series);
        families.push(family(
            "mcp.server.operation.duration",
            "Duration of MCP requests and notifications as observed by the proxy, from receipt to the answer",
            "s",
            Kind::Histogram(&OPERATION_BOUNDS.seconds),
            series,
        ));

        let auth = self.auth.iter().enumerate().map(|(i, cell)| {
            let result = if i == 0 { "accepted" } else { "refused" };
            (vec![("result", result), ("reason", AUTH_REASONS[i])], cell)
        });
        families.push(counter("thv_inbound_auth", "Inbound token checks by outcome", "{request}", auth));
        families.push(counter(
            "thv_inbound_jwks_fetches",
            "JWKS fetches by result",
            "{fetch}",
            by("result", &OK_ERROR, &self.jwks),
        ));
        families.push(counter(
            "thv_inbound_introspections",
            "Token introspection calls (RFC 7662) by result",
            "{call}",
            by("result", &INTROSPECTION_RESULTS, &self.introspections),
        ));
        families.push(counter(
            "thv_inbound_introspection_cache_hits",
            "Token checks answered from the introspection cache",
            "{hit}",
            [(Vec::new(), &self.introspection_cache_hits)],
        ));
        families.push(counter(
            "thv_outbound_logins",
            "Upstream logins by result",
            "{login}",
            by("result", &OK_ERROR, &self.logins),
        ));
        families.push(counter(
            "thv_outbound_refreshes",
            "Upstream token refreshes by result",
            "{refresh}",
            by("result", &OK_ERROR, &self.refreshes),
        ));
        let expiry = self.token_expiry.load(Relaxed);
        let series = if expiry == NO_EXPIRY {
            Vec::new()
        } else {
            let left = expiry.saturating_sub(unix_nanos()) as f64 / 1e9;
            vec![Series { labels: Vec::new(), point: Point::Gauge(left) }]
        };
        families.push(family(
            "thv_outbound_token_expiry",
            "Seconds left on the current upstream access token",
            "s",
            Kind::Gauge,
            series,
        ));
        families.push(counter(
            "thv_upstream_connect_failures",
            "Connections to the MCP server that could not be made",
            "{connection}",
            [(Vec::new(), &self.connect_failures)],
        ));
        families.push(counter(
            "thv_upstream_retries",
            "Requests retried on a fresh upstream connection",
            "{retry}",
            [(Vec::new(), &self.retries)],
        ));
        families.push(family(
            "thv_sse_streams_open",
            "SSE streams open through the proxy",
            "{stream}",
            Kind::UpDown,
            vec![Series { labels: Vec::new(), point: Point::Level(self.sse_open.load(Relaxed)) }],
        ));
        families.push(counter(
            "thv_sse_events_relayed",
            "SSE events relayed to clients",
            "{event}",
            [(Vec::new(), &self.sse_events)],
        ));
        families.push(counter(
            "thv_policy_denials",
            "Requests refused by policy, by reason",
            "{request}",
            by("reason", &DENIAL_REASONS, &self.denials),
        ));
        families.extend_from_slice(extra);
        Snapshot { start_unix_nanos: self.start_unix_nanos, time_unix_nanos: unix_nanos(), families }
    }
}

/// The exporters' own statistics, as families for [`Metrics::snapshot`]'s `extra`: spans
/// dropped (queue full) and failed exports per signal.
pub(crate) fn exporter_families(spans_dropped: u64, trace_failures: u64, metric_failures: u64) -> [Family; 2] {
    let count = |labels: Vec<(&'static str, String)>, n| Series { labels, point: Point::Count(n) };
    [
        family(
            "thv_telemetry_spans_dropped",
            "Finished spans dropped because the export queue was full",
            "{span}",
            Kind::Counter,
            vec![count(Vec::new(), spans_dropped)],
        ),
        family(
            "thv_telemetry_export_failures",
            "OTLP exports that failed, by signal",
            "{export}",
            Kind::Counter,
            vec![
                count(vec![("signal", "traces".to_owned())], trace_failures),
                count(vec![("signal", "metrics".to_owned())], metric_failures),
            ],
        ),
    ]
}

fn family(name: &'static str, help: &'static str, unit: &'static str, kind: Kind, series: Vec<Series>) -> Family {
    Family { name, help, unit, kind, series }
}

/// A counter family with one series per fixed label set, zeros included (so that `rate()`
/// sees the first increment).
fn counter<'a>(
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    cells: impl IntoIterator<Item = (Vec<(&'static str, &'static str)>, &'a AtomicU64)>,
) -> Family {
    let series = cells
        .into_iter()
        .map(|(labels, cell)| Series { labels: owned(&labels), point: Point::Count(cell.load(Relaxed)) });
    family(name, help, unit, Kind::Counter, series.collect())
}

fn by<'a>(
    key: &'static str,
    words: &'a [&'static str],
    cells: &'a [AtomicU64],
) -> impl Iterator<Item = (Vec<(&'static str, &'static str)>, &'a AtomicU64)> {
    words.iter().zip(cells).map(move |(word, cell)| (vec![(key, *word)], cell))
}

fn owned(labels: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    labels.iter().map(|&(k, v)| (k, v.to_owned())).collect()
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The series one kind of request records into ([`Metrics::routes`]), found at its first
/// sight.
#[derive(Default)]
struct Route(OnceLock<Routes>);

struct Routes {
    /// `toolhive_mcp_requests` and `toolhive_mcp_request_duration`.
    request: Arc<Histogram<15>>,
    /// `toolhive_mcp_tool_calls`, for a `tools/call` with a name.
    tool_call: Option<Arc<Sum>>,
    /// `mcp.server.operation.duration`, for a request that carried an MCP message.
    operation: Option<Arc<Histogram<15>>>,
}

impl Routes {
    fn record(&self, nanos: u64) {
        self.request.record(REQUEST_BOUNDS.bucket(nanos), nanos);
        if let Some(calls) = &self.tool_call {
            calls.add(1);
        }
        if let Some(operation) = &self.operation {
            operation.record(OPERATION_BOUNDS.bucket(nanos), nanos);
        }
    }
}
