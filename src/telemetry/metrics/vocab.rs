//! The fixed label vocabularies: MCP method names, HTTP methods, and the reasons and
//! results of the proxy's own counters. Everything a client can influence is mapped onto a
//! `&'static str` from these lists before it becomes a label, so the label space is bounded
//! by the code, not by traffic.

/// MCP method names of the 2025-11-25 revision (with the tasks utility) and the 2026-07-28
/// revision (`server/discover`, `subscriptions/listen`), requests and notifications.
/// Anything else is counted as [`OTHER_METHOD`].
const MCP_METHODS: [&str; 36] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "server/discover",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
    "notifications/subscriptions/acknowledged",
    // What the caller passes for a GET that opens the SSE stream (ToolHive's label).
    SSE_CONNECTION,
    // Kept last: not a method name, but must normalise to itself.
    OTHER_METHOD,
];

/// The `mcp_method` of a GET that opens an SSE stream.
pub(crate) const SSE_CONNECTION: &str = "sse_connection";
/// The `mcp_method` of a method name outside [`MCP_METHODS`].
pub(crate) const OTHER_METHOD: &str = "other";

/// The label for a raw method name: itself if the spec knows it, `other` if not, and ""
/// for a request without a JSON-RPC body.
pub(crate) fn mcp_method(raw: Option<&str>) -> &'static str {
    match raw {
        None => "",
        Some(raw) => MCP_METHODS.iter().copied().find(|known| *known == raw).unwrap_or(OTHER_METHOD),
    }
}

/// The label for an HTTP method: the standard methods (RFC 9110 §9, RFC 5789), and the
/// OpenTelemetry semantic conventions' `_OTHER` for extension methods, which a client can
/// make up freely.
pub(crate) fn http_method(raw: &str) -> &'static str {
    const METHODS: [&str; 9] = ["GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH", "CONNECT", "TRACE"];
    METHODS.iter().copied().find(|known| *known == raw).unwrap_or("_OTHER")
}

/// `reason` of `thv_inbound_auth`; `ok` only with `result="accepted"`.
pub(crate) const AUTH_REASONS: [&str; 9] =
    ["ok", "missing", "invalid", "expired", "audience", "issuer", "scope", "inactive", "unavailable"];

/// `result` of `thv_inbound_introspections`.
pub(crate) const INTROSPECTION_RESULTS: [&str; 3] = ["active", "inactive", "error"];

/// `reason` of `thv_policy_denials`.
pub(crate) const DENIAL_REASONS: [&str; 6] =
    ["denied", "unknown_tool", "batch", "unreadable", "params", "header_mismatch"];

/// `result` of the ok/error counters.
pub(crate) const OK_ERROR: [&str; 2] = ["ok", "error"];

/// The position of `word` in `vocabulary`. A word outside it is a bug in the caller (the
/// API takes `&'static str` so that callers name the vocabulary's words): debug builds
/// stop there, release builds count it under `fallback` rather than lose it.
pub(crate) fn position(vocabulary: &[&'static str], word: &str, fallback: usize) -> usize {
    let found = vocabulary.iter().position(|known| *known == word);
    debug_assert!(found.is_some(), "{word:?} is not one of {vocabulary:?}");
    found.unwrap_or(fallback)
}

/// Formats a status code into `buf` without allocating.
pub(crate) fn status_code(status: u16, buf: &mut [u8; 5]) -> &str {
    // The common answers without formatting: every request writes one.
    match status {
        200 => return "200",
        202 => return "202",
        204 => return "204",
        400 => return "400",
        401 => return "401",
        403 => return "403",
        404 => return "404",
        500 => return "500",
        502 => return "502",
        503 => return "503",
        _ => {}
    }
    let mut n = status;
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[start..]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_status_code_reads_as_its_digits() {
        for status in (0..=999u16).chain([u16::MAX]) {
            let mut buf = [0u8; 5];
            assert_eq!(super::status_code(status, &mut buf), status.to_string());
        }
    }
}
