//! The audit event: its type, its outcome and what it carries (the line it becomes is
//! `line.rs`'s).
//!
//! Follows ToolHive's `pkg/audit/auditor.go` (`mapMCPMethodToEventType`,
//! `determineEventType`, `determineOutcome`, `extractSubjectsFromIdentity`,
//! `detectApplicationError`), `pkg/mcp/response.go` (`ParseMCPResponse`), `event.go` (the
//! `Outcome*` constants) and toolhive-core's `audit/mcp_events.go` (the event type names).

use std::net::IpAddr;
use std::time::Duration;

/// What happened, by ToolHive's names (toolhive-core `audit/mcp_events.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EventType {
    McpInitialize,
    SseConnection,
    McpToolCall,
    McpToolsList,
    McpResourceRead,
    McpResourcesList,
    McpPromptGet,
    McpPromptsList,
    McpNotification,
    McpPing,
    McpLogging,
    McpCompletion,
    McpRootsListChanged,
    /// The `vmcp_workflow_*` types are vMCP's; the proxy never emits them, but a ToolHive
    /// config that names them must still load.
    WorkflowStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowTimedOut,
    WorkflowStepStarted,
    WorkflowStepCompleted,
    WorkflowStepFailed,
    WorkflowStepSkipped,
    /// An MCP request whose method has no type of its own (or could not be parsed on the
    /// SSE transport's message endpoint).
    McpRequest,
    /// Anything else, including requests refused before MCP parsing (401s).
    HttpRequest,
}

impl EventType {
    /// Every type, in ToolHive's declaration order (the index is the filter bit).
    pub(crate) const ALL: [EventType; 23] = [
        EventType::McpInitialize,
        EventType::SseConnection,
        EventType::McpToolCall,
        EventType::McpToolsList,
        EventType::McpResourceRead,
        EventType::McpResourcesList,
        EventType::McpPromptGet,
        EventType::McpPromptsList,
        EventType::McpNotification,
        EventType::McpPing,
        EventType::McpLogging,
        EventType::McpCompletion,
        EventType::McpRootsListChanged,
        EventType::WorkflowStarted,
        EventType::WorkflowCompleted,
        EventType::WorkflowFailed,
        EventType::WorkflowTimedOut,
        EventType::WorkflowStepStarted,
        EventType::WorkflowStepCompleted,
        EventType::WorkflowStepFailed,
        EventType::WorkflowStepSkipped,
        EventType::McpRequest,
        EventType::HttpRequest,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::McpInitialize => "mcp_initialize",
            EventType::SseConnection => "sse_connection",
            EventType::McpToolCall => "mcp_tool_call",
            EventType::McpToolsList => "mcp_tools_list",
            EventType::McpResourceRead => "mcp_resource_read",
            EventType::McpResourcesList => "mcp_resources_list",
            EventType::McpPromptGet => "mcp_prompt_get",
            EventType::McpPromptsList => "mcp_prompts_list",
            EventType::McpNotification => "mcp_notification",
            EventType::McpPing => "mcp_ping",
            EventType::McpLogging => "mcp_logging",
            EventType::McpCompletion => "mcp_completion",
            EventType::McpRootsListChanged => "mcp_roots_list_changed",
            EventType::WorkflowStarted => "vmcp_workflow_started",
            EventType::WorkflowCompleted => "vmcp_workflow_completed",
            EventType::WorkflowFailed => "vmcp_workflow_failed",
            EventType::WorkflowTimedOut => "vmcp_workflow_timed_out",
            EventType::WorkflowStepStarted => "vmcp_workflow_step_started",
            EventType::WorkflowStepCompleted => "vmcp_workflow_step_completed",
            EventType::WorkflowStepFailed => "vmcp_workflow_step_failed",
            EventType::WorkflowStepSkipped => "vmcp_workflow_step_skipped",
            EventType::McpRequest => "mcp_request",
            EventType::HttpRequest => "http_request",
        }
    }

    /// The type named `name` in a config file (exact, case-sensitive: ToolHive compares with
    /// `==`).
    pub(crate) fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The bit of this type in the auditor's filter mask.
    pub(super) fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// ToolHive's type for a request (`determineEventType` and the stream-open path of
    /// `Middleware`). `is_sse_get`: the request opens an event stream (GET with
    /// `Accept: text/event-stream`, ToolHive's `isMCPStreamOpenRequest`), which ToolHive
    /// audits as `sse_connection` on both transports, before looking at anything else.
    /// `mcp_method`: the parsed JSON-RPC method, `None` when the body was not parsed as MCP.
    ///
    /// One case needs the transport and is the caller's: on the SSE transport an unparsed
    /// POST is `McpRequest` (and any other GET `SseConnection`), not `HttpRequest`.
    pub(crate) fn for_request(mcp_method: Option<&str>, is_sse_get: bool) -> EventType {
        if is_sse_get {
            return EventType::SseConnection;
        }
        match mcp_method {
            Some(method) if !method.is_empty() => EventType::for_mcp_method(method),
            _ => EventType::HttpRequest,
        }
    }

    /// `mapMCPMethodToEventType`: note that only `notifications/message` and
    /// `notifications/roots/list_changed` have types; every other method, other
    /// notifications included, is `mcp_request`.
    pub(crate) fn for_mcp_method(method: &str) -> EventType {
        match method {
            "initialize" => EventType::McpInitialize,
            "tools/call" => EventType::McpToolCall,
            "tools/list" => EventType::McpToolsList,
            "resources/read" => EventType::McpResourceRead,
            "resources/list" => EventType::McpResourcesList,
            "prompts/get" => EventType::McpPromptGet,
            "prompts/list" => EventType::McpPromptsList,
            "notifications/message" => EventType::McpNotification,
            "ping" => EventType::McpPing,
            "logging/setLevel" => EventType::McpLogging,
            "completion/complete" => EventType::McpCompletion,
            "notifications/roots/list_changed" => EventType::McpRootsListChanged,
            _ => EventType::McpRequest,
        }
    }

    /// `target.type` (`extractTarget`; `sse_endpoint` from `logSSEConnectionEvent`).
    pub(super) fn target_type(self) -> &'static str {
        match self {
            EventType::McpToolCall => "tool",
            EventType::McpResourceRead => "resource",
            EventType::McpPromptGet => "prompt",
            EventType::SseConnection => "sse_endpoint",
            _ => "endpoint",
        }
    }
}

/// How it ended (`event.go`'s `Outcome*` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Denied,
    Error,
    /// HTTP 2xx carrying a JSON-RPC error (ToolHive's `detectApplicationErrors`).
    ApplicationError,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::ApplicationError => "application_error",
        }
    }

    /// `determineOutcome`: 2xx success, 401 and 403 denied, other 4xx failure, 5xx error,
    /// and anything else (1xx, 3xx) success.
    pub(crate) fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Success,
            401 | 403 => Outcome::Denied,
            400..=499 => Outcome::Failure,
            500.. => Outcome::Error,
            _ => Outcome::Success,
        }
    }
}

/// The transport of the proxied server, as ToolHive's `MiddlewareParams.TransportType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Transport {
    Sse,
    #[default]
    StreamableHttp,
}

impl Transport {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::StreamableHttp => "streamable-http",
        }
    }
}

/// One audited request, borrowed from the request path. It has no header values besides the
/// user agent and `X-Request-ID`: the caller never passes `Authorization`, cookies or tokens,
/// and passes bodies only (never headers) as `request_data` / `response_data`.
///
/// Empty strings count as absent, as in ToolHive (which tests `!= ""`).
#[derive(Debug, Clone)]
pub(crate) struct Event<'a> {
    pub(crate) ty: EventType,
    pub(crate) outcome: Outcome,
    /// `source.value`. ToolHive takes the first `X-Forwarded-For` entry, else `X-Real-IP`,
    /// else the peer, unverified; which one to trust is the caller's decision.
    pub(crate) source_ip: IpAddr,
    /// `source.extra.user_agent` (and, for `sse_connection`, `metadata.extra.user_agent`).
    pub(crate) user_agent: Option<&'a str>,
    /// `source.extra.request_id`: the `X-Request-ID` request header.
    pub(crate) request_id: Option<&'a str>,
    /// `subjects.user_id`: the token's `sub`; `None` when unauthenticated.
    pub(crate) subject: Option<&'a str>,
    /// `subjects.user`: the `name` claim, else `preferred_username`, else `email`
    /// ([`user_from_claims`]); `"anonymous"` when `None`.
    pub(crate) user_name: Option<&'a str>,
    /// `subjects.client_name` / `client_version`. ToolHive reads the `client_name` /
    /// `client_version` token claims.
    pub(crate) client_name: Option<&'a str>,
    pub(crate) client_version: Option<&'a str>,
    /// `target.endpoint`: the request path without the query.
    pub(crate) endpoint: &'a str,
    /// `target.method` when there is no MCP method (and always for `sse_connection`).
    pub(crate) http_method: &'a str,
    /// `target.method` when known.
    pub(crate) mcp_method: Option<&'a str>,
    /// `target.name`: the parsed resource id (tool name, resource URI, prompt name...).
    pub(crate) name: Option<&'a str>,
    /// The request body, offered for `data.request`. Only bodies of at most `maxDataSize`
    /// bytes are logged; a longer one is left out entirely, as ToolHive does, so the caller
    /// never needs to buffer more than `max_data_size() + 1` bytes to decide.
    pub(crate) request_data: Option<&'a [u8]>,
    /// The response body, offered for `data.response`, under the same size rule.
    pub(crate) response_data: Option<&'a [u8]>,
    /// The JSON-RPC error of an `ApplicationError` outcome (code, message), see
    /// [`application_error`].
    pub(crate) jsonrpc_error: Option<(i64, &'a str)>,
    /// `metadata.extra.duration_ms` (whole milliseconds, truncated as Go's
    /// `Duration.Milliseconds`). Not logged for `sse_connection`, which ToolHive logs when
    /// the stream opens.
    pub(crate) duration: Duration,
}

/// The display name ToolHive puts in `subjects.user` (`extractSubjectsFromIdentity`): the
/// `name` claim, else `preferred_username`, else `email`, the first that is a non-empty
/// string.
pub(crate) fn user_from_claims(claims: &serde_json::Map<String, serde_json::Value>) -> Option<&str> {
    ["name", "preferred_username", "email"]
        .into_iter()
        .find_map(|claim| claims.get(claim).and_then(|v| v.as_str()).filter(|s| !s.is_empty()))
}

/// How many bytes of the response ToolHive inspects for a JSON-RPC error
/// (`errorDetectionBufferSize`).
pub(crate) const ERROR_DETECTION_PREFIX: usize = 512;
/// ToolHive's cap on a logged JSON-RPC error message (`maxAuditErrorMessageLength`).
const MAX_ERROR_MESSAGE: usize = 256;

/// ToolHive's JSON-RPC error detection in a 2xx response (`detectApplicationError` and
/// `mcp.ParseMCPResponse`): only the first 512 bytes are looked at, they must start with
/// `{` and parse as a whole as an object whose top-level `error` is an object with an
/// integer `code` and a string `message` (either may be missing). A longer response is
/// therefore never classified, exactly as in ToolHive. The message comes back cut at 256
/// bytes (on a character boundary).
pub(crate) fn application_error(response_prefix: &[u8]) -> Option<(i64, String)> {
    let prefix = response_prefix.get(..ERROR_DETECTION_PREFIX).unwrap_or(response_prefix);
    if prefix.first() != Some(&b'{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(prefix).ok()?;
    let error = value.as_object()?.get("error")?;
    if error.is_null() {
        return None;
    }
    let error = error.as_object()?;
    let code = match error.get("code") {
        None | Some(serde_json::Value::Null) => 0,
        Some(c) => c.as_i64()?,
    };
    let mut message = match error.get("message") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(m) => m.as_str()?.to_owned(),
    };
    if message.len() > MAX_ERROR_MESSAGE {
        let mut end = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mcp_method_maps_as_in_toolhive() {
        let table = [
            ("initialize", EventType::McpInitialize, "mcp_initialize"),
            ("tools/call", EventType::McpToolCall, "mcp_tool_call"),
            ("tools/list", EventType::McpToolsList, "mcp_tools_list"),
            ("resources/read", EventType::McpResourceRead, "mcp_resource_read"),
            ("resources/list", EventType::McpResourcesList, "mcp_resources_list"),
            ("prompts/get", EventType::McpPromptGet, "mcp_prompt_get"),
            ("prompts/list", EventType::McpPromptsList, "mcp_prompts_list"),
            ("notifications/message", EventType::McpNotification, "mcp_notification"),
            ("ping", EventType::McpPing, "mcp_ping"),
            ("logging/setLevel", EventType::McpLogging, "mcp_logging"),
            ("completion/complete", EventType::McpCompletion, "mcp_completion"),
            ("notifications/roots/list_changed", EventType::McpRootsListChanged, "mcp_roots_list_changed"),
            // Everything else is the generic MCP request, other notifications included.
            ("resources/templates/list", EventType::McpRequest, "mcp_request"),
            ("resources/subscribe", EventType::McpRequest, "mcp_request"),
            ("notifications/initialized", EventType::McpRequest, "mcp_request"),
            ("notifications/cancelled", EventType::McpRequest, "mcp_request"),
            ("sampling/createMessage", EventType::McpRequest, "mcp_request"),
            ("tasks/get", EventType::McpRequest, "mcp_request"),
            ("Tools/Call", EventType::McpRequest, "mcp_request"),
        ];
        for (method, ty, name) in table {
            assert_eq!(EventType::for_request(Some(method), false), ty, "{method}");
            assert_eq!(ty.as_str(), name);
        }
        assert_eq!(EventType::for_request(None, false), EventType::HttpRequest);
        assert_eq!(EventType::for_request(Some(""), false), EventType::HttpRequest);
        assert_eq!(EventType::for_request(None, true), EventType::SseConnection);
        assert_eq!(EventType::for_request(Some("tools/call"), true), EventType::SseConnection);
    }

    #[test]
    fn names_round_trip_and_bits_are_distinct() {
        let mut mask = 0u32;
        for ty in EventType::ALL {
            assert_eq!(EventType::from_name(ty.as_str()), Some(ty));
            assert_eq!(mask & ty.bit(), 0);
            mask |= ty.bit();
        }
        assert_eq!(mask.count_ones(), 23);
        assert_eq!(EventType::from_name("MCP_PING"), None);
    }

    #[test]
    fn outcomes_follow_determine_outcome() {
        let table = [
            (100, Outcome::Success),
            (200, Outcome::Success),
            (202, Outcome::Success),
            (299, Outcome::Success),
            (302, Outcome::Success),
            (400, Outcome::Failure),
            (401, Outcome::Denied),
            (403, Outcome::Denied),
            (404, Outcome::Failure),
            (429, Outcome::Failure),
            (499, Outcome::Failure),
            (500, Outcome::Error),
            (502, Outcome::Error),
            (599, Outcome::Error),
        ];
        for (status, outcome) in table {
            assert_eq!(Outcome::of_status(status), outcome, "{status}");
        }
        let names: Vec<&str> =
            [Outcome::Success, Outcome::Failure, Outcome::Denied, Outcome::Error, Outcome::ApplicationError]
                .map(Outcome::as_str)
                .to_vec();
        assert_eq!(names, ["success", "failure", "denied", "error", "application_error"]);
    }

    #[test]
    fn user_name_falls_back_like_toolhive() {
        let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
        let all = claims(serde_json::json!({"name": "Ada", "preferred_username": "ada", "email": "ada@x"}));
        assert_eq!(user_from_claims(&all), Some("Ada"));
        let no_name = claims(serde_json::json!({"name": "", "preferred_username": "ada", "email": "ada@x"}));
        assert_eq!(user_from_claims(&no_name), Some("ada"));
        let email = claims(serde_json::json!({"preferred_username": 7, "email": "ada@x"}));
        assert_eq!(user_from_claims(&email), Some("ada@x"));
        assert_eq!(user_from_claims(&claims(serde_json::json!({"sub": "u1"}))), None);
    }

    #[test]
    fn application_errors_as_parse_mcp_response() {
        let err = |b: &[u8]| application_error(b);
        assert_eq!(
            err(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}"#),
            Some((-32603, "boom".to_owned()))
        );
        assert_eq!(err(br#"{"error":{}}"#), Some((0, String::new())));
        assert_eq!(err(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), None);
        assert_eq!(err(br#"{"error":null}"#), None);
        assert_eq!(err(br#"{"error":{"code":"x"}}"#), None, "Go's decode fails: no detection");
        assert_eq!(err(br#"{"error":{"code":1.5}}"#), None);
        assert_eq!(err(br#" {"error":{"code":1}}"#), None, "must start with {{");
        assert_eq!(err(b"event: message\ndata: {}\n\n"), None, "SSE bodies are not inspected");
        assert_eq!(err(b""), None);
        // Only 512 bytes are looked at: a longer response no longer parses.
        let long = format!(r#"{{"error":{{"code":1,"message":"{}"}}}}"#, "x".repeat(600));
        assert_eq!(err(long.as_bytes()), None);
        let limit = format!(r#"{{"error":{{"code":7,"message":"{}"}}}}"#, "é".repeat(200));
        assert!(limit.len() <= ERROR_DETECTION_PREFIX);
        let (code, message) = err(limit.as_bytes()).unwrap();
        assert_eq!(code, 7);
        assert_eq!(message, "é".repeat(128), "cut at 256 bytes");
    }
}
