//! Telemetry flags, as ToolHive's `thv run` names them (`--otel-*`), plus the diagnostics
//! listener that serves `/metrics` (ToolHive PR #6296) and the log format. Parsing only:
//! [`crate::config`] checks the values and merges the `OTEL_*` environment variables.

use clap::{ArgAction, Args};

use super::go_bool;

/// OpenTelemetry, Prometheus and logs.
#[derive(Debug, Args)]
pub(crate) struct TelemetryArgs {
    /// OpenTelemetry OTLP/HTTP endpoint (e.g. http://localhost:4318, or host:port, which is
    /// HTTPS unless --otel-insecure); telemetry export is off when empty
    #[arg(long, value_name = "URL")]
    pub(crate) otel_endpoint: Option<String>,

    /// OpenTelemetry OTLP headers in key=value format (e.g. x-honeycomb-team=your-api-key)
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append, allow_hyphen_values = true)]
    pub(crate) otel_headers: Vec<String>,

    /// Use HTTP instead of HTTPS for an OTLP endpoint given as host:port
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true, value_parser = go_bool)]
    pub(crate) otel_insecure: bool,

    /// OpenTelemetry service name (default thv-<SERVER_NAME>)
    #[arg(long, value_name = "NAME")]
    pub(crate) otel_service_name: Option<String>,

    /// OpenTelemetry trace sampling rate (0.0-1.0); a sampled parent is always followed
    #[arg(long, value_name = "RATE", default_value = "0.1")]
    pub(crate) otel_sampling_rate: String,

    /// Export traces to the OTLP endpoint
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "true", require_equals = true, value_parser = go_bool)]
    pub(crate) otel_tracing_enabled: bool,

    /// Export metrics to the OTLP endpoint
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "true", require_equals = true, value_parser = go_bool)]
    pub(crate) otel_metrics_enabled: bool,

    /// Custom resource attributes (key1=value1,key2=value2); repeatable
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) otel_custom_attributes: Vec<String>,

    /// Environment variables whose values are added to spans as environment.<NAME>
    /// (comma-separated names)
    #[arg(long, value_name = "NAMES", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) otel_env_vars: Vec<String>,

    /// Serve Prometheus /metrics on the diagnostics listener (never on the MCP port)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true, value_parser = go_bool)]
    pub(crate) otel_enable_prometheus_metrics_path: bool,

    /// Host of the diagnostics listener (/metrics)
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub(crate) diagnostics_host: String,

    /// Port of the diagnostics listener (/metrics); 0 picks a free one, named at startup
    #[arg(long, value_name = "PORT", default_value = "9464")]
    pub(crate) diagnostics_port: String,

    /// Log line format: text or json
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: String,
}
