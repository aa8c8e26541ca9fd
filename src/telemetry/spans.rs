//! How a finished [`Observation`] becomes spans: the SERVER span of the request and, when
//! the target was called, its CLIENT child, with the attributes of the OpenTelemetry HTTP
//! and MCP semantic conventions as ToolHive emits them (`docs/observability.md`).

use std::time::SystemTime;

use super::data::{self, KeyValue, Span, SpanKind, Status};
use super::{Observation, Telemetry, unix_nanos};

impl Observation {
    /// Queues the server span and, when the target was called, its client child. The
    /// request is over: its strings are moved into the spans, not copied.
    pub(super) fn spans(&mut self, tel: &Telemetry, status: u16, bytes: u64) {
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
        let http_name = joined(&self.method, &self.path);
        let name = match (&self.mcp_method, &self.target) {
            (Some(m), Some(target)) if !self.event_stream => joined(m, target),
            (Some(m), None) if !self.event_stream => m.to_string(),
            // A request refused before its body was read has no path recorded.
            _ if self.path.is_empty() => self.method.to_string(),
            _ => http_name.clone(),
        };
        // Room for every attribute a request can have: the vector is never regrown.
        let mut attributes = Vec::with_capacity(21 + tel.span_env.len());
        attributes.extend([
            KeyValue::str("http.request.method", self.method.clone()),
            KeyValue::str("url.path", std::mem::take(&mut self.path)),
            KeyValue::int("http.response.status_code", i64::from(status)),
            KeyValue::int("http.response.body.size", bytes as i64),
            KeyValue::str("client.address", address(self.peer.ip())),
            KeyValue::int("client.port", i64::from(self.peer.port())),
            KeyValue::str("network.protocol.name", "http"),
            KeyValue::str("network.transport", "tcp"),
            KeyValue::str("mcp.server.name", tel.server.clone()),
        ]);
        if let Some(m) = &self.mcp_method {
            attributes.push(KeyValue::str("mcp.method.name", m.clone()));
            attributes.push(KeyValue::str("rpc.system.name", "jsonrpc"));
            attributes.push(KeyValue::str("jsonrpc.protocol.version", "2.0"));
            let about = self.target.take().unwrap_or_default();
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
        if let Some(client) = self.client_name.take() {
            attributes.push(KeyValue::str("mcp.client.name", client));
        }
        if let Some(id) = self.jsonrpc_id.take() {
            attributes.push(KeyValue::str("jsonrpc.request.id", id));
        }
        if let Some(s) = self.session.take() {
            attributes.push(KeyValue::str("mcp.session.id", s));
        }
        if let Some(v) = self.protocol.take() {
            attributes.push(KeyValue::str("mcp.protocol.version", v));
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
                name: http_name,
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

/// `"<a> <b>"`, sized once (`format!` costs several times more on a sampled request).
fn joined(a: &str, b: &str) -> String {
    let mut out = String::with_capacity(a.len() + 1 + b.len());
    out.push_str(a);
    out.push(' ');
    out.push_str(b);
    out
}

/// `client.address`: an IPv4 address written digit by digit, which costs a tenth of its
/// `Display` (a sampled request's largest single cost on the request path).
fn address(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_read_as_display_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.100.255", "255.255.255.255", "1.10.100.9", "::1", "::ffff:1.2.3.4"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::address(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            assert_eq!(super::address(ip), ip.to_string());
        }
    }
}
