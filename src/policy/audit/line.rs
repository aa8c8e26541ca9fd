//! The NDJSON line an [`Event`] becomes: exactly what ToolHive's audit log holds for it.
//!
//! Follows ToolHive's `pkg/audit/event.go` (`AuditEvent.LogTo`: the attributes and their
//! order) and `auditor.go` (`extractSource`, `extractSubjects`, `extractTarget`,
//! `addMetadata`, `addEventData`, `logSSEConnectionEvent`), written through toolhive-core's
//! `NewAuditLogger` (Go's `slog.JSONHandler`, level rendered `AUDIT`, message `audit_event`).
//! This is `LogTo`'s rendering (`audit_id`, `logged_at` at the top level), not the
//! `AuditEvent` struct's JSON tags (`metadata.auditId`, `loggedAt`): ToolHive never writes
//! the struct itself to the audit log.

use std::time::SystemTime;

use super::event::{Event, EventType, Outcome, Transport};
use super::json::{Flavor, push_body, push_str, push_time};

/// What the line needs from the configuration.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) component: String,
    pub(super) transport: Transport,
    pub(super) include_request_data: bool,
    pub(super) include_response_data: bool,
    pub(super) max_data_size: usize,
}

/// A body as ToolHive captures it: only when configured, and only whole: one longer than
/// `maxDataSize` is left out (the request rule of `Middleware`; for responses ToolHive keeps
/// the whole `Write` calls that fit, which for a body sent in one write is the same). A body
/// cut at the limit would no longer be the JSON it was, nor the bytes that were sent.
fn captured(body: Option<&[u8]>, wanted: bool, limit: usize) -> Option<&[u8]> {
    body.filter(|b| wanted && !b.is_empty() && b.len() <= limit)
}

fn present(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Appends a `"key":"value"` entry of a Go map (`json.Encoder` escaping), preceded by a
/// comma unless `first`.
fn field(out: &mut String, first: &mut bool, key: &str, value: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    push_str(out, key, Flavor::Encoder);
    out.push(':');
    push_str(out, value, Flavor::Encoder);
}

/// The NDJSON line (without its newline) ToolHive's slog handler writes for this event. Key
/// order is slog's: the record's `time`, `level`, `msg`, then `LogTo`'s attributes in order;
/// the maps inside (`extra`, `subjects`, `target`) have their keys sorted, as Go's JSON
/// encoder sorts map keys.
pub(super) fn render(event: &Event<'_>, settings: &Settings, audit_id: &str, now: SystemTime) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"time\":");
    // ToolHive's record time is local time; a proxy in a container runs in UTC, and UTC is
    // what `logged_at` always is.
    push_time(&mut out, now);
    out.push_str(",\"level\":\"AUDIT\",\"msg\":\"audit_event\",\"audit_id\":");
    push_str(&mut out, audit_id, Flavor::Slog);
    out.push_str(",\"type\":");
    push_str(&mut out, event.ty.as_str(), Flavor::Slog);
    out.push_str(",\"logged_at\":");
    push_time(&mut out, now);
    out.push_str(",\"outcome\":");
    push_str(&mut out, event.outcome.as_str(), Flavor::Slog);
    out.push_str(",\"component\":");
    let component = if settings.component.is_empty() { "toolhive-api" } else { &settings.component };
    push_str(&mut out, component, Flavor::Slog);

    // Go prints an IPv4-mapped IPv6 peer as plain IPv4.
    let ip = event.source_ip.to_canonical().to_string();
    out.push_str(",\"source\":{\"type\":\"network\",\"value\":");
    push_str(&mut out, &ip, Flavor::Slog);
    out.push_str(",\"extra\":{");
    let mut first = true;
    if let Some(id) = present(event.request_id) {
        field(&mut out, &mut first, "request_id", id);
    }
    if let Some(ua) = present(event.user_agent) {
        field(&mut out, &mut first, "user_agent", ua);
    }
    out.push_str("}}");

    out.push_str(",\"subjects\":{");
    let mut first = true;
    if let Some(name) = present(event.client_name) {
        field(&mut out, &mut first, "client_name", name);
    }
    if let Some(version) = present(event.client_version) {
        field(&mut out, &mut first, "client_version", version);
    }
    field(&mut out, &mut first, "user", present(event.user_name).unwrap_or("anonymous"));
    if let Some(sub) = present(event.subject) {
        field(&mut out, &mut first, "user_id", sub);
    }
    out.push('}');

    let sse = event.ty == EventType::SseConnection;
    out.push_str(",\"target\":{");
    let mut first = true;
    field(&mut out, &mut first, "endpoint", event.endpoint);
    let method = if sse { event.http_method } else { present(event.mcp_method).unwrap_or(event.http_method) };
    field(&mut out, &mut first, "method", method);
    if let Some(name) = present(event.name).filter(|_| !sse) {
        field(&mut out, &mut first, "name", name);
    }
    field(&mut out, &mut first, "type", event.ty.target_type());
    out.push('}');

    out.push_str(",\"metadata\":{\"extra\":{");
    if sse {
        // `logSSEConnectionEvent`: the transport's own name and the user agent, "" if none.
        let mut first = true;
        field(&mut out, &mut first, "transport", settings.transport.as_str());
        field(&mut out, &mut first, "user_agent", event.user_agent.unwrap_or(""));
        out.push_str("}}}");
        return out;
    }
    out.push_str("\"duration_ms\":");
    out.push_str(&event.duration.as_millis().to_string());
    if let (Outcome::ApplicationError, Some((code, message))) = (event.outcome, event.jsonrpc_error) {
        out.push_str(",\"jsonrpc_error_code\":");
        out.push_str(&code.to_string());
        out.push_str(",\"jsonrpc_error_message\":");
        push_str(&mut out, message, Flavor::Encoder);
    }
    let request = captured(event.request_data, settings.include_request_data, settings.max_data_size);
    let response = captured(event.response_data, settings.include_response_data, settings.max_data_size);
    if settings.include_response_data {
        // ToolHive reports the size of what it captured: 0 when nothing was.
        out.push_str(",\"response_size_bytes\":");
        out.push_str(&response.map_or(0, <[u8]>::len).to_string());
    }
    out.push_str(",\"transport\":");
    // `addMetadata`'s binary choice, unlike the SSE connection event's.
    push_str(&mut out, if settings.transport == Transport::Sse { "sse" } else { "http" }, Flavor::Encoder);
    out.push_str("}}");

    if request.is_some() || response.is_some() {
        out.push_str(",\"data\":{");
        if let Some(body) = request {
            out.push_str("\"request\":");
            push_body(&mut out, body);
        }
        if let Some(body) = response {
            if request.is_some() {
                out.push(',');
            }
            out.push_str("\"response\":");
            push_body(&mut out, body);
        }
        out.push('}');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, UNIX_EPOCH};

    const ID: &str = "01be8d47-3ab0-4aa9-ad14-bd5bb408005d";

    /// docs/middleware.md's example time, 2025-12-15T10:38:32.164124Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_765_795_112, 164_124_000)
    }

    fn settings() -> Settings {
        Settings {
            component: "test-component".into(),
            transport: Transport::Sse,
            include_request_data: false,
            include_response_data: false,
            max_data_size: 1024,
        }
    }

    /// The event of ToolHive's `TestAuditEventLogTo` (pkg/audit/event_test.go).
    fn tool_call() -> Event<'static> {
        Event {
            ty: EventType::McpToolCall,
            outcome: Outcome::Success,
            source_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100)),
            user_agent: Some("test-agent"),
            request_id: None,
            subject: Some("user123"),
            user_name: Some("testuser"),
            client_name: None,
            client_version: None,
            endpoint: "/api/tools/calculator",
            http_method: "POST",
            mcp_method: Some("tools/call"),
            name: Some("calculator"),
            request_data: None,
            response_data: None,
            jsonrpc_error: None,
            duration: Duration::from_micros(150_900),
        }
    }

    fn line(event: &Event<'_>, settings: &Settings) -> String {
        render(event, settings, ID, now())
    }

    #[test]
    fn matches_toolhive_log_to_fixture() {
        // What ToolHive's slog handler writes for event_test.go's event (slog's key order;
        // Go's sorted map keys; `target.method` is the MCP method, `extractTarget`).
        let expected = concat!(
            r#"{"time":"2025-12-15T10:38:32.164124Z","level":"AUDIT","msg":"audit_event","#,
            r#""audit_id":"01be8d47-3ab0-4aa9-ad14-bd5bb408005d","type":"mcp_tool_call","#,
            r#""logged_at":"2025-12-15T10:38:32.164124Z","outcome":"success","component":"test-component","#,
            r#""source":{"type":"network","value":"192.168.1.100","extra":{"user_agent":"test-agent"}},"#,
            r#""subjects":{"user":"testuser","user_id":"user123"},"#,
            r#""target":{"endpoint":"/api/tools/calculator","method":"tools/call","name":"calculator","type":"tool"},"#,
            r#""metadata":{"extra":{"duration_ms":150,"transport":"sse"}}}"#,
        );
        assert_eq!(line(&tool_call(), &settings()), expected);
        // The assertions of `TestAuditEventLogTo`, on the parsed line.
        let v: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(v["msg"], "audit_event");
        assert_eq!(v["level"], "AUDIT");
        assert_eq!(v["audit_id"], ID);
        assert_eq!(v["source"]["type"], "network");
        assert_eq!(v["subjects"]["user_id"], "user123");
        assert_eq!(v["target"]["type"], "tool");
    }

    #[test]
    fn every_field_of_the_docs_example() {
        let event = Event {
            ty: EventType::McpToolCall,
            source_ip: IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
            request_id: Some("req-12345"),
            user_agent: Some("mcp-client/1.0"),
            user_name: Some("john.doe@example.com"),
            client_name: Some("my-mcp-client"),
            client_version: Some("1.0.0"),
            endpoint: "/messages",
            name: Some("weather_tool"),
            request_data: Some(br#"{"location": "New York"}"#),
            response_data: Some("{\"temperature\": \"22°C\", \"humidity\": \"65%\"}".as_bytes()),
            ..tool_call()
        };
        let settings = Settings {
            component: String::new(),
            transport: Transport::StreamableHttp,
            include_request_data: true,
            include_response_data: true,
            ..settings()
        };
        let line = line(&event, &settings);
        let tail = concat!(
            r#""outcome":"success","component":"toolhive-api","#,
            r#""source":{"type":"network","value":"10.0.0.1","extra":{"request_id":"req-12345","user_agent":"mcp-client/1.0"}},"#,
            r#""subjects":{"client_name":"my-mcp-client","client_version":"1.0.0","user":"john.doe@example.com","user_id":"user123"},"#,
            r#""target":{"endpoint":"/messages","method":"tools/call","name":"weather_tool","type":"tool"},"#,
            r#""metadata":{"extra":{"duration_ms":150,"response_size_bytes":43,"transport":"http"}},"#,
            r#""data":{"request":{"location":"New York"},"response":{"humidity":"65%","temperature":"22°C"}}}"#,
        );
        assert!(line.ends_with(tail), "{line}");
    }

    #[test]
    fn anonymous_http_request_without_mcp() {
        let event = Event {
            ty: EventType::HttpRequest,
            outcome: Outcome::of_status(401),
            source_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            user_agent: None,
            subject: None,
            user_name: Some(""),
            mcp_method: None,
            name: None,
            endpoint: "/mcp",
            ..tool_call()
        };
        let line = line(&event, &settings());
        let tail = concat!(
            r#""type":"http_request","logged_at":"2025-12-15T10:38:32.164124Z","outcome":"denied","#,
            r#""component":"test-component","source":{"type":"network","value":"::1","extra":{}},"#,
            r#""subjects":{"user":"anonymous"},"target":{"endpoint":"/mcp","method":"POST","type":"endpoint"},"#,
            r#""metadata":{"extra":{"duration_ms":150,"transport":"sse"}}}"#,
        );
        assert!(line.ends_with(tail), "{line}");
    }

    #[test]
    fn sse_connection_has_its_own_shape() {
        let event = Event {
            ty: EventType::SseConnection,
            http_method: "GET",
            mcp_method: None,
            endpoint: "/sse",
            request_data: Some(b"{}"),
            ..tool_call()
        };
        let all = Settings { include_request_data: true, include_response_data: true, ..settings() };
        let tail = concat!(
            r#""target":{"endpoint":"/sse","method":"GET","type":"sse_endpoint"},"#,
            r#""metadata":{"extra":{"transport":"sse","user_agent":"test-agent"}}}"#,
        );
        assert!(line(&event, &all).ends_with(tail), "{}", line(&event, &all));
        let streamable = Settings { transport: Transport::StreamableHttp, ..settings() };
        let event = Event { user_agent: None, ..event };
        assert!(
            line(&event, &streamable).ends_with(r#""extra":{"transport":"streamable-http","user_agent":""}}}"#),
            "{}",
            line(&event, &streamable)
        );
    }

    #[test]
    fn data_only_when_configured_and_only_whole() {
        let small: &[u8] = br#"{"b":1,"a":2}"#;
        let event = Event { request_data: Some(small), response_data: Some(b"plain text"), ..tool_call() };
        assert!(!line(&event, &settings()).contains("\"data\""), "off by default");
        assert!(!line(&event, &settings()).contains("response_size_bytes"));

        let request_only = Settings { include_request_data: true, ..settings() };
        assert!(line(&event, &request_only).ends_with(r#""transport":"sse"}},"data":{"request":{"a":2,"b":1}}}"#));

        let response_only = Settings { include_response_data: true, ..settings() };
        assert!(line(&event, &response_only).ends_with(
            r#""extra":{"duration_ms":150,"response_size_bytes":10,"transport":"sse"}},"data":{"response":"plain text"}}"#
        ));

        // maxDataSize: a body of exactly the limit is kept, one byte more and it is left out
        // (not cut: a cut body would no longer be the JSON that was sent).
        let both =
            Settings { include_request_data: true, include_response_data: true, max_data_size: 13, ..settings() };
        assert!(line(&event, &both).contains(r#""data":{"request":{"a":2,"b":1},"response":"plain text"}"#));
        let tight = Settings { max_data_size: 12, ..both.clone() };
        let cut = line(&event, &tight);
        assert!(
            cut.ends_with(r#""response_size_bytes":10,"transport":"sse"}},"data":{"response":"plain text"}}"#),
            "{cut}"
        );
        let tiny = Settings { max_data_size: 5, ..both.clone() };
        let none = line(&event, &tiny);
        assert!(none.ends_with(r#""response_size_bytes":0,"transport":"sse"}}}"#), "nothing captured: {none}");
        let empty = Event { request_data: Some(b""), response_data: None, ..tool_call() };
        assert!(!line(&empty, &both).contains("\"data\""), "empty bodies are not data");
    }

    #[test]
    fn application_error_details_in_metadata() {
        let event = Event {
            outcome: Outcome::ApplicationError,
            jsonrpc_error: Some((-32603, "expired \"token\"")),
            ..tool_call()
        };
        let line = line(&event, &settings());
        assert!(line.contains(r#""outcome":"application_error""#));
        assert!(line.ends_with(
            r#""extra":{"duration_ms":150,"jsonrpc_error_code":-32603,"jsonrpc_error_message":"expired \"token\"","transport":"sse"}}}"#
        ), "{line}");
        // The details go with that outcome only.
        let denied = Event { outcome: Outcome::Denied, ..event };
        assert!(!render(&denied, &settings(), ID, now()).contains("jsonrpc_error"));
    }

    #[test]
    fn lines_are_single_line_json_whatever_the_input() {
        let event = Event {
            user_agent: Some("evil\n{\"forged\":true}\u{2028}"),
            name: Some("tool\r\n"),
            request_data: Some(b"{\n  \"pretty\": [1,\n 2]\n}"),
            response_data: Some(b"\xff\xfe\n"),
            ..tool_call()
        };
        let all = Settings { include_request_data: true, include_response_data: true, ..settings() };
        let line = line(&event, &all);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["source"]["extra"]["user_agent"], "evil\n{\"forged\":true}\u{2028}");
        assert_eq!(v["data"]["request"]["pretty"][1], 2.0);
        assert_eq!(v["data"]["response"], "\u{fffd}\u{fffd}\n");
    }
}
