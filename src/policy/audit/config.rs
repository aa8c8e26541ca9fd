//! The audit configuration: ToolHive's `audit.Config` file (`--audit-config FILE`) and its
//! defaults (`--enable-audit` alone). Follows ToolHive's `pkg/audit/config.go`
//! (`DefaultConfig`, `LoadFromFile`, `Validate`, `ShouldAuditEvent`).
//!
//! ToolHive reads the file with Go's `json.Decoder`, so this parser keeps Go's rules: field
//! names match case-insensitively (an exact match wins), unknown fields are ignored (here
//! with a warning), `null` leaves the default, only the first JSON value counts, and numbers
//! must be integers. YAML is accepted as well (an extension: the Kubernetes operator writes
//! the same struct as YAML); a file whose first character is `{` is read as JSON.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::event::{EventType, Transport};

/// ToolHive's `DefaultConfig().MaxDataSize`, also what `Validate` puts in place of 0.
pub(crate) const DEFAULT_MAX_DATA_SIZE: usize = 1024;

/// A validated audit configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditConfig {
    /// `component`; empty means ToolHive's `toolhive-api`. (`thv run` puts the server name
    /// here when the file has none; the caller may do the same.)
    pub(crate) component: String,
    /// `logFile`; `None` is stdout.
    pub(crate) log_file: Option<PathBuf>,
    /// `eventTypes`: when not empty, only these are audited.
    pub(crate) event_types: Vec<EventType>,
    /// `excludeEventTypes`: never audited, whatever `eventTypes` says.
    pub(crate) exclude_event_types: Vec<EventType>,
    pub(crate) include_request_data: bool,
    pub(crate) include_response_data: bool,
    /// `detectApplicationErrors` (default true): classify a 2xx carrying a JSON-RPC error as
    /// `application_error`.
    pub(crate) detect_application_errors: bool,
    /// `maxDataSize` in bytes (0 in the file means the default, 1024).
    pub(crate) max_data_size: usize,
    /// `maxDelegationDepth`, validated (positive) but unused: the proxy does not record RFC
    /// 8693 delegation chains yet.
    pub(crate) max_delegation_depth: Option<u32>,
    /// Not from the file: the proxied transport, set by the caller (ToolHive's
    /// `MiddlewareParams.TransportType`).
    pub(crate) transport: Transport,
}

impl Default for AuditConfig {
    /// `DefaultConfig()` after `Validate()`: what `--enable-audit` alone means.
    fn default() -> AuditConfig {
        AuditConfig {
            component: String::new(),
            log_file: None,
            event_types: Vec::new(),
            exclude_event_types: Vec::new(),
            include_request_data: false,
            include_response_data: false,
            detect_application_errors: true,
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            max_delegation_depth: None,
            transport: Transport::default(),
        }
    }
}

/// Why an audit config file was refused; both name the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditConfigError {
    #[error("cannot read the audit config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid audit config {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The configuration for `--audit-config FILE` (`Some`) or `--enable-audit` alone (`None`).
pub(crate) fn load(path: Option<&Path>) -> Result<AuditConfig, AuditConfigError> {
    let Some(path) = path else {
        return Ok(AuditConfig::default());
    };
    let bytes = std::fs::read(path).map_err(|source| AuditConfigError::Read { path: path.to_owned(), source })?;
    parse(&bytes).map_err(|reason| AuditConfigError::Invalid { path: path.to_owned(), reason })
}

/// The field names of ToolHive's `Config`, in declaration order.
const FIELDS: [&str; 10] = [
    "enabled",
    "component",
    "eventTypes",
    "excludeEventTypes",
    "includeRequestData",
    "includeResponseData",
    "detectApplicationErrors",
    "maxDataSize",
    "maxDelegationDepth",
    "logFile",
];

/// Parses and validates a config document.
pub(super) fn parse(bytes: &[u8]) -> Result<AuditConfig, String> {
    let document = read_document(bytes)?;
    let object = match document {
        // Go decodes `null` into the zero Config.
        Value::Null => Map::new(),
        Value::Object(object) => object,
        other => return Err(format!("expected an object, found {}", kind(&other))),
    };
    let fields = match_fields(object);
    let mut config = AuditConfig::default();
    let mut max_data_size: i64 = 0;
    for (field, value) in &fields {
        if value.is_null() {
            continue;
        }
        match *field {
            // ToolHive ignores `enabled` in a file too: naming the file is what enables audit.
            "enabled" => {
                boolean(field, value)?;
            }
            "component" => config.component = string(field, value)?.to_owned(),
            "eventTypes" => config.event_types = event_types(field, value)?,
            "excludeEventTypes" => config.exclude_event_types = event_types(field, value)?,
            "includeRequestData" => config.include_request_data = boolean(field, value)?,
            "includeResponseData" => config.include_response_data = boolean(field, value)?,
            "detectApplicationErrors" => config.detect_application_errors = boolean(field, value)?,
            "maxDataSize" => max_data_size = integer(field, value)?,
            "maxDelegationDepth" => {
                let depth = integer(field, value)?;
                let depth = u32::try_from(depth)
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| format!("maxDelegationDepth must be positive, found {depth}"))?;
                config.max_delegation_depth = Some(depth);
            }
            "logFile" => {
                let file = string(field, value)?;
                config.log_file = (!file.is_empty()).then(|| PathBuf::from(file));
            }
            _ => {}
        }
    }
    config.max_data_size = match max_data_size {
        0 => DEFAULT_MAX_DATA_SIZE,
        n => usize::try_from(n).map_err(|_| format!("maxDataSize cannot be negative, found {n}"))?,
    };
    Ok(config)
}

/// The first JSON value of the document (Go's `Decoder.Decode` stops there), or the YAML
/// document when it does not start like JSON.
fn read_document(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err("the file is empty".to_owned());
    }
    if trimmed.starts_with('{') {
        let mut values = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
        return match values.next() {
            Some(Ok(value)) => Ok(value),
            Some(Err(json)) => match serde_yaml_ng::from_str::<Value>(text) {
                // A YAML flow mapping (`{a: 1}`) also starts with `{`.
                Ok(value) => Ok(value),
                Err(_) => Err(format!("not valid JSON: {json}")),
            },
            None => Err("the file is empty".to_owned()),
        };
    }
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| format!("neither JSON nor valid YAML: {e}"))
}

/// Assigns each key to a known field as Go's decoder does: an exact match, else a
/// case-insensitive one; later keys win. Unknown keys are warned about and ignored.
fn match_fields(object: Map<String, Value>) -> Vec<(&'static str, Value)> {
    let mut fields: Vec<(&'static str, Value)> = Vec::new();
    for (key, value) in object {
        let known = FIELDS.iter().find(|f| **f == key).or_else(|| FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&key)));
        match known {
            Some(field) => {
                fields.retain(|(f, _)| f != field);
                fields.push((field, value));
            }
            None => tracing::warn!(field = %key, "audit config: unknown field ignored (as ToolHive does)"),
        }
    }
    fields
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string<'v>(field: &str, value: &'v Value) -> Result<&'v str, String> {
    value.as_str().ok_or_else(|| format!("{field} must be a string, found {}", kind(value)))
}

fn boolean(field: &str, value: &Value) -> Result<bool, String> {
    value.as_bool().ok_or_else(|| format!("{field} must be true or false, found {}", kind(value)))
}

fn integer(field: &str, value: &Value) -> Result<i64, String> {
    // Go's `int` takes neither `1024.0` nor `1e3`.
    value.as_i64().ok_or_else(|| format!("{field} must be an integer, found {value}"))
}

/// A list of event type names; every unknown name is reported, with the valid ones. The
/// valid names are ToolHive `Validate`'s plus `sse_connection`, which ToolHive emits but
/// forgot in its list: accepting it refuses no file ToolHive accepts.
fn event_types(field: &str, value: &Value) -> Result<Vec<EventType>, String> {
    let items =
        value.as_array().ok_or_else(|| format!("{field} must be a list of event types, found {}", kind(value)))?;
    let mut types = Vec::with_capacity(items.len());
    let mut unknown = Vec::new();
    for item in items {
        match item.as_str().map(|name| (name, EventType::from_name(name))) {
            Some((_, Some(ty))) => types.push(ty),
            Some((name, None)) => unknown.push(format!("{name:?}")),
            None => unknown.push(item.to_string()),
        }
    }
    if unknown.is_empty() {
        return Ok(types);
    }
    let valid: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    Err(format!(
        "unknown event type{} in {field}: {} (valid: {})",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.join(", "),
        valid.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_toolhives() {
        let config = load(None).unwrap();
        assert_eq!(config, AuditConfig::default());
        assert_eq!(config.max_data_size, 1024);
        assert!(config.detect_application_errors);
        assert!(!config.include_request_data && !config.include_response_data);
        assert!(config.log_file.is_none() && config.component.is_empty());
        assert!(config.event_types.is_empty() && config.exclude_event_types.is_empty());
    }

    /// docs/middleware.md's example file.
    const DOC_JSON: &str = r#"{
      "component": "my-service",
      "logFile": "/var/log/audit/audit.log",
      "eventTypes": ["mcp_tool_call", "mcp_resource_read"],
      "excludeEventTypes": ["mcp_ping"],
      "includeRequestData": true,
      "includeResponseData": true,
      "maxDataSize": 4096
    }"#;

    fn doc_config() -> AuditConfig {
        AuditConfig {
            component: "my-service".into(),
            log_file: Some("/var/log/audit/audit.log".into()),
            event_types: vec![EventType::McpToolCall, EventType::McpResourceRead],
            exclude_event_types: vec![EventType::McpPing],
            include_request_data: true,
            include_response_data: true,
            max_data_size: 4096,
            ..AuditConfig::default()
        }
    }

    #[test]
    fn json_and_yaml_files() {
        assert_eq!(parse(DOC_JSON.as_bytes()).unwrap(), doc_config());
        let yaml = "component: my-service\nlogFile: /var/log/audit/audit.log\neventTypes:\n  - mcp_tool_call\n  - mcp_resource_read\nexcludeEventTypes: [mcp_ping]\nincludeRequestData: true\nincludeResponseData: true\nmaxDataSize: 4096\n";
        assert_eq!(parse(yaml.as_bytes()).unwrap(), doc_config());
        assert_eq!(parse(b"{component: x}").unwrap().component, "x", "a YAML flow mapping");
    }

    #[test]
    fn go_decoder_rules() {
        // Case-insensitive names, exact match preferred, unknown fields and nulls ignored,
        // trailing content after the first JSON value ignored.
        let config = parse(br#"{"LOGFILE": "/a", "MaxDataSize": 0, "unknown": 1, "component": null, "detectApplicationErrors": false, "enabled": true} trailing"#).unwrap();
        assert_eq!(config.log_file.as_deref(), Some(Path::new("/a")));
        assert_eq!(config.max_data_size, 1024, "0 means the default");
        assert!(!config.detect_application_errors);
        assert_eq!(parse(br#"{"logfile": "/a", "logFile": "/b"}"#).unwrap().log_file.as_deref(), Some(Path::new("/b")));
        assert_eq!(parse(br#"{"logFile": ""}"#).unwrap().log_file, None, "empty is stdout");
        assert_eq!(parse(b"null").unwrap(), AuditConfig::default());
        assert_eq!(parse(br#"{"maxDelegationDepth": 3}"#).unwrap().max_delegation_depth, Some(3));
    }

    #[test]
    fn invalid_values() {
        let err = |doc: &str| parse(doc.as_bytes()).unwrap_err();
        assert!(err(r#"{"maxDataSize": -1}"#).contains("maxDataSize cannot be negative"));
        assert!(err(r#"{"maxDataSize": 1024.0}"#).contains("maxDataSize must be an integer"));
        assert!(err(r#"{"maxDelegationDepth": 0}"#).contains("must be positive"));
        assert!(err(r#"{"includeRequestData": "yes"}"#).contains("includeRequestData must be true or false"));
        assert!(err(r#"{"component": 1}"#).contains("component must be a string"));
        assert!(err(r#"["mcp_ping"]"#).contains("expected an object"));
        assert!(err(r#"{"component": "#).contains("not valid JSON"));
        assert!(err("  \n").contains("empty"));
        assert!(err("a: [unclosed").contains("neither JSON nor valid YAML"));
    }

    #[test]
    fn unknown_event_types_are_named_with_the_valid_ones() {
        let e = parse(br#"{"eventTypes": ["mcp_tool_call", "tool_call", 7], "excludeEventTypes": []}"#).unwrap_err();
        assert!(e.starts_with(r#"unknown event types in eventTypes: "tool_call", 7 (valid: mcp_initialize, sse_connection, mcp_tool_call,"#), "{e}");
        assert!(e.ends_with("mcp_request, http_request)"), "{e}");
        let e = parse(br#"{"excludeEventTypes": ["MCP_PING"]}"#).unwrap_err();
        assert!(
            e.starts_with(r#"unknown event type in excludeEventTypes: "MCP_PING""#),
            "names are case-sensitive: {e}"
        );
        // Every name ToolHive's Validate accepts loads.
        for ty in EventType::ALL {
            let doc = format!(r#"{{"eventTypes": ["{}"]}}"#, ty.as_str());
            assert_eq!(parse(doc.as_bytes()).unwrap().event_types, [ty]);
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("thv-audit-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        let e = load(Some(&missing)).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the audit config ") && e.contains("missing.json"), "{e}");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "eventTypes: [nope]\n").unwrap();
        let e = load(Some(&bad)).unwrap_err().to_string();
        assert!(e.contains("bad.yaml") && e.contains(r#"unknown event type in eventTypes: "nope""#), "{e}");
        let good = dir.join("audit.json");
        std::fs::write(&good, DOC_JSON).unwrap();
        assert_eq!(load(Some(&good)).unwrap(), doc_config());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
