//! How a finished [`Observation`] becomes spans: the SERVER span of the request and, when
//! the target was called, its CLIENT child, with the attributes of the OpenTelemetry HTTP
//! and MCP semantic conventions as ToolHive emits them (`docs/observability.md`).

use std::time::SystemTime;

use super::data::{self, KeyValue, Span, SpanKind, Status};
use super::{Observation, Telemetry, unix_nanos};

impl Observation {
    /// Queues the server span and, when the target was called, its client child.
    pub(super) fn spans(&self, tel: &Telemetry, status: u16, bytes: u64) {
        let Some(exporter) = &tel.exporter else { return };
        let Some(t) = &self.trace else { return };
        // The wall clock is read once, here; the starts are the monotonic clock's intervals
        // back from it.
        let now = SystemTime::now();
        let end = unix_nanos(now);
        let before = |at: std::time::Instant| unix_nanos(now.checked_sub(at.elapsed()).unwrap_or(now));
        let status_of = |code: u16| match code {
            500.. => Status::Error(format!("HTTP {code}")),
            400.. => Status::Unset,
            _ => Status::Ok,
        };
        let name = match (&self.mcp_method, &self.target) {
            (Some(m), Some(target)) if !self.event_stream => format!("{m} {target}"),
            (Some(m), None) if !self.event_stream => m.to_string(),
            // A request refused before its body was read has no path recorded.
            _ if self.path.is_empty() => self.method.to_string(),
            _ => format!("{} {}", self.method, self.path),
        };
        let mut attributes = vec![
            KeyValue::str("http.request.method", self.method.clone()),
            KeyValue::str("url.path", self.path.clone()),
            KeyValue::int("http.response.status_code", i64::from(status)),
            KeyValue::int("http.response.body.size", bytes as i64),
            KeyValue::str("client.address", self.peer.ip().to_string()),
            KeyValue::int("client.port", i64::from(self.peer.port())),
            KeyValue::str("network.protocol.name", "http"),
            KeyValue::str("network.transport", "tcp"),
            KeyValue::str("mcp.server.name", tel.server.clone()),
        ];
        if let Some(m) = &self.mcp_method {
            attributes.push(KeyValue::str("mcp.method.name", m.clone()));
            attributes.push(KeyValue::str("rpc.system.name", "jsonrpc"));
            attributes.push(KeyValue::str("jsonrpc.protocol.version", "2.0"));
            let about = self.target.clone().unwrap_or_default();
            match m.as_ref() {
                "tools/call" => {
                    attributes.push(KeyValue::str("gen_ai.tool.name", about));
                    attributes.push(KeyValue::str("gen_ai.operation.name", "execute_tool"));
                }
                "prompts/get" => attributes.push(KeyValue::str("gen_ai.prompt.name", about)),
                m if m.starts_with("resources/") || m == "notifications/resources/updated" => {
                    attributes.push(KeyValue::str("mcp.resource.uri", about));
                }
                _ => {}
            }
        }
        if self.batch {
            attributes.push(KeyValue { key: "mcp.is_batch".into(), value: data::Value::Bool(true) });
        }
        if let Some(client) = &self.client_name {
            attributes.push(KeyValue::str("mcp.client.name", client.clone()));
        }
        if let Some(id) = &self.jsonrpc_id {
            attributes.push(KeyValue::str("jsonrpc.request.id", id.clone()));
        }
        if let Some(s) = &self.session {
            attributes.push(KeyValue::str("mcp.session.id", s.clone()));
        }
        if let Some(v) = &self.protocol {
            attributes.push(KeyValue::str("mcp.protocol.version", v.clone()));
        }
        if status >= 500 {
            attributes.push(KeyValue::str("error.type", status.to_string()));
        }
        if self.event_stream {
            attributes.push(KeyValue::int("sse.events", self.events as i64));
        }
        attributes.extend(tel.span_env.iter().cloned());
        if let Some(upstream_start) = self.upstream_started.map(before) {
            exporter.span(Span {
                trace_id: t.trace_id,
                span_id: t.client_span,
                parent_span_id: Some(t.server_span),
                trace_state: t.tracestate.clone(),
                name: format!("{} {}", self.method, self.path),
                kind: SpanKind::Client,
                start_unix_nanos: upstream_start,
                end_unix_nanos: end,
                attributes: vec![
                    KeyValue::str("http.request.method", self.method.clone()),
                    KeyValue::int("http.response.status_code", i64::from(status)),
                ],
                status: status_of(status),
            });
        }
        exporter.span(Span {
            trace_id: t.trace_id,
            span_id: t.server_span,
            parent_span_id: t.parent,
            trace_state: t.tracestate.clone(),
            name,
            kind: SpanKind::Server,
            start_unix_nanos: before(self.started),
            end_unix_nanos: end,
            attributes,
            status: status_of(status),
        });
    }
}
