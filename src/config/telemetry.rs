//! Telemetry settings (`--otel-*`, `--diagnostics-*`, `--log-format`), merged with the
//! standard `OTEL_*` environment variables (OpenTelemetry SDK configuration, "Environment
//! Variable Specification"; OTLP exporter configuration). Flags win over variables. Every
//! value is checked here, so a bad one stops the proxy at startup naming the flag or the
//! variable; a header value (often an API key) is never repeated in a message.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

use super::{ConfigError, Environment};
use crate::cli::TelemetryArgs;
use crate::telemetry::otlp::{Compression, SignalUrl, signal_url};

/// The OpenTelemetry specification's Prometheus exporter port, ToolHive's default.
pub(crate) const DIAGNOSTICS_PORT: u16 = 9464;

/// The validated telemetry: configured when an OTLP endpoint or the Prometheus path is.
#[derive(Clone)]
pub(crate) struct TelemetryConfig {
    pub(crate) service_name: String,
    /// Probability that a trace without a sampled parent is recorded.
    pub(crate) sampling_rate: f64,
    /// A parent's sampled flag decides for its children (`parentbased_*`, the default).
    pub(crate) follow_parent: bool,
    /// Where spans go (`…/v1/traces`) and how; `None`: no tracing.
    pub(crate) traces_url: Option<SignalUrl>,
    /// Where metrics go (`…/v1/metrics`) and how; `None`: no OTLP metric export.
    pub(crate) metrics_url: Option<SignalUrl>,
    /// Sent with every export; values are secrets (never logged, never in `Debug`).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Resource attributes besides `service.name`.
    pub(crate) resource: Vec<(String, String)>,
    /// `--otel-env-vars`: `environment.<NAME>` attributes on every span.
    pub(crate) span_env: Vec<(String, String)>,
    /// `--otel-enable-prometheus-metrics-path`: the diagnostics listener's address.
    pub(crate) diagnostics: Option<Diagnostics>,
    pub(crate) export_timeout: Duration,
    pub(crate) metric_interval: Duration,
    pub(crate) max_queue: usize,
    pub(crate) max_batch: usize,
    pub(crate) schedule_delay: Duration,
    /// ToolHive's `transport` label: `sse` for a legacy HTTP+SSE target.
    pub(crate) transport: &'static str,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Diagnostics {
    pub(crate) addr: SocketAddr,
    /// The port is the default one, not asked for: when it is taken, another is chosen
    /// (several proxies on one machine), as ToolHive does; an asked-for port is not moved.
    pub(crate) default_port: bool,
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("service_name", &self.service_name)
            .field("sampling_rate", &self.sampling_rate)
            .field("traces_url", &self.traces_url)
            .field("metrics_url", &self.metrics_url)
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("diagnostics", &self.diagnostics)
            .finish_non_exhaustive()
    }
}

/// `--log-format`.
pub(crate) fn log_json(args: &TelemetryArgs) -> Result<bool, ConfigError> {
    match args.log_format.trim() {
        "text" => Ok(false),
        "json" => Ok(true),
        other => Err(ConfigError::new("--log-format", format!("{other:?} is not a log format; use text or json"))),
    }
}

/// The telemetry for `args` and `env`; `None` when nothing is exported or served (it then
/// costs nothing on the request path).
pub(crate) fn telemetry_config(
    args: &TelemetryArgs,
    given: &BTreeSet<String>,
    env: &dyn Environment,
    server_name: &str,
    legacy_sse: bool,
    warnings: &mut Vec<&'static str>,
) -> Result<Option<TelemetryConfig>, ConfigError> {
    let var = |name: &str| env.var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let diagnostics = diagnostics(args, given)?;
    // Checked even when nothing is exported: a bad value is a mistake either way.
    let (sampling_rate, follow_parent) = sampling(args, given, &var)?;
    if diagnostics.is_none() && (given.contains("diagnostics-host") || given.contains("diagnostics-port")) {
        warnings
            .push("--diagnostics-host/--diagnostics-port have no effect without --otel-enable-prometheus-metrics-path");
    }
    // The per-signal forms too: a signal sent with another protocol than it was set to
    // would be refused by the collector at every export.
    for name in
        ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"]
    {
        if let Some(protocol) = var(name).filter(|p| p != "http/protobuf") {
            return Err(ConfigError::new(
                name,
                format!("{protocol:?} is not supported; thv exports OTLP over HTTP with protobuf (http/protobuf)"),
            ));
        }
    }
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let endpoint = match args.otel_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => Some(endpoint_url(e, args.otel_insecure, "--otel-endpoint", warnings)?),
        None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(e) => Some(endpoint_url(&e, args.otel_insecure, "OTEL_EXPORTER_OTLP_ENDPOINT", warnings)?),
            None => None,
        },
    };
    let signal = |enabled: bool, exporter: &str, full: &str, path: &str, compression_var: &str| {
        if disabled || !enabled || var(exporter).is_some_and(|e| e == "none") {
            return Ok(None);
        }
        let url = match (var(full), endpoint.as_ref()) {
            (Some(url), _) => endpoint_url(&url, args.otel_insecure, full, &mut Vec::new())?,
            (None, Some(base)) => signal_url(base, path),
            (None, None) => return Ok(None),
        };
        Ok(Some(SignalUrl { url, compression: compression(&var, compression_var)? }))
    };
    if endpoint.is_some() && !args.otel_tracing_enabled && !args.otel_metrics_enabled {
        return Err(ConfigError::new(
            "--otel-endpoint",
            "is set but --otel-tracing-enabled and --otel-metrics-enabled are both false; enable one, or drop the endpoint",
        ));
    }
    let traces_url = signal(
        args.otel_tracing_enabled,
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    )?;
    let metrics_url = signal(
        args.otel_metrics_enabled,
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    )?;
    if traces_url.is_none() && metrics_url.is_none() && diagnostics.is_none() {
        for flag in
            ["otel-headers", "otel-service-name", "otel-sampling-rate", "otel-custom-attributes", "otel-env-vars"]
        {
            if given.contains(flag) {
                warnings.push(
                    "--otel-* flags have no effect without --otel-endpoint or --otel-enable-prometheus-metrics-path",
                );
                break;
            }
        }
        return Ok(None);
    }
    let mut headers = pairs_from_env(var("OTEL_EXPORTER_OTLP_HEADERS"), "OTEL_EXPORTER_OTLP_HEADERS")?;
    for raw in &args.otel_headers {
        headers.push(pair(raw, "--otel-headers")?);
    }
    let headers = headers
        .into_iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ConfigError::new("--otel-headers", format!("{k:?} is not an HTTP header name")))?;
            let mut value = HeaderValue::from_str(&v).map_err(|_| {
                ConfigError::new("--otel-headers", format!("the value of {k:?} is not a valid HTTP header value"))
            })?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let mut resource = pairs_from_env(var("OTEL_RESOURCE_ATTRIBUTES"), "OTEL_RESOURCE_ATTRIBUTES")?;
    for raw in args.otel_custom_attributes.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
        let (k, v) = pair(raw, "--otel-custom-attributes")?;
        resource.retain(|(key, _)| *key != k);
        resource.push((k, v));
    }
    let service_name = match args.otel_service_name.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => name.to_owned(),
        None => var("OTEL_SERVICE_NAME")
            .or_else(|| resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone()))
            .unwrap_or_else(|| format!("thv-{server_name}")),
    };
    resource.retain(|(k, _)| k != "service.name");
    let span_env = args
        .otel_env_vars
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .filter_map(|name| env.var(name).map(|value| (name.to_owned(), value)))
        .collect();
    Ok(Some(TelemetryConfig {
        service_name,
        sampling_rate,
        follow_parent,
        traces_url,
        metrics_url,
        headers,
        resource,
        span_env,
        diagnostics,
        export_timeout: millis(&var, "OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        metric_interval: millis(&var, "OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
        max_queue: count(&var, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)?,
        max_batch: count(&var, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?,
        schedule_delay: millis(&var, "OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
        transport: if legacy_sse { "sse" } else { "streamable-http" },
    }))
}

/// The diagnostics listener, when the Prometheus path is on.
fn diagnostics(args: &TelemetryArgs, given: &BTreeSet<String>) -> Result<Option<Diagnostics>, ConfigError> {
    let port: u16 = args.diagnostics_port.trim().parse().map_err(|_| {
        ConfigError::new(
            "--diagnostics-port",
            format!("{:?} is not a port; give 0 to 65535 (0 picks a free one)", args.diagnostics_port),
        )
    })?;
    let host = args.diagnostics_host.trim();
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| {
            ConfigError::new(
                "--diagnostics-host",
                format!("{host:?} is not an IP address; give one such as 127.0.0.1 or 0.0.0.0"),
            )
        })?,
    };
    Ok(args
        .otel_enable_prometheus_metrics_path
        .then_some(Diagnostics { addr: SocketAddr::new(ip, port), default_port: !given.contains("diagnostics-port") }))
}

/// The sampling rate and whether a parent decides: `--otel-sampling-rate` when given, else
/// `OTEL_TRACES_SAMPLER`(`_ARG`), else the flag's default.
fn sampling(
    args: &TelemetryArgs,
    given: &BTreeSet<String>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<(f64, bool), ConfigError> {
    let rate = |raw: &str, flag: &str| -> Result<f64, ConfigError> {
        match raw.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(ConfigError::new(flag, format!("{raw:?} is not a sampling rate; give a number from 0.0 to 1.0"))),
        }
    };
    let flag_rate = rate(&args.otel_sampling_rate, "--otel-sampling-rate")?;
    let Some(sampler) = var("OTEL_TRACES_SAMPLER") else { return Ok((flag_rate, true)) };
    let arg = || var("OTEL_TRACES_SAMPLER_ARG").map_or(Ok(1.0), |a| rate(&a, "OTEL_TRACES_SAMPLER_ARG"));
    let (env_rate, follow_parent) = match sampler.as_str() {
        "always_on" => (1.0, false),
        "always_off" => (0.0, false),
        "traceidratio" => (arg()?, false),
        "parentbased_always_on" => (1.0, true),
        "parentbased_always_off" => (0.0, true),
        "parentbased_traceidratio" => (arg()?, true),
        other => {
            return Err(ConfigError::new(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "{other:?} is not supported; use always_on, always_off, traceidratio or their parentbased_ forms"
                ),
            ));
        }
    };
    Ok(if given.contains("otel-sampling-rate") { (flag_rate, follow_parent) } else { (env_rate, follow_parent) })
}

/// An OTLP/HTTP endpoint: a URL, or `host[:port]` (HTTPS unless `insecure`, as ToolHive
/// reads `--otel-endpoint`).
fn endpoint_url(raw: &str, insecure: bool, flag: &str, warnings: &mut Vec<&'static str>) -> Result<Url, ConfigError> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("{}://{raw}", if insecure { "http" } else { "https" })
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        ConfigError::new(flag, format!("{raw:?} is not a URL ({e}); give one such as http://localhost:4318"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            flag,
            format!(
                "{raw:?} is not an OTLP/HTTP endpoint; give an http:// or https:// URL such as http://localhost:4318"
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            flag,
            "must not carry credentials in the URL; send them as a header with --otel-headers",
        ));
    }
    if insecure && url.scheme() == "https" && raw.contains("://") {
        warnings.push("--otel-insecure has no effect on an https:// OTLP endpoint: its certificate is still verified");
    }
    Ok(url)
}

/// `key=value`, both trimmed, the key not empty.
fn pair(raw: &str, flag: &str) -> Result<(String, String), ConfigError> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(ConfigError::new(flag, "expects key=value (the key not empty)")),
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C Baggage octets, as the spec's variables use).
fn pairs_from_env(raw: Option<String>, name: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = pair(p, name)?;
            let v = url::form_urlencoded::parse(format!("v={}", v.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            Ok((k, v))
        })
        .collect()
}

/// A signal's compression: its own variable (`OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`) wins
/// over `OTEL_EXPORTER_OTLP_COMPRESSION`; unset is none (OTLP exporter spec, "Compression").
/// Read case-insensitively, as the spec reads enum values (Environment Variable
/// Specification, "Enum"). An unknown value stops the proxy, as every bad value here does,
/// rather than being ignored with a warning: a collector that needs gzip would otherwise
/// refuse every export while the proxy looks healthy. A bad general value is refused even
/// where a signal's own variable overrides it: it is a mistake either way.
fn compression(var: &dyn Fn(&str) -> Option<String>, signal_var: &str) -> Result<Compression, ConfigError> {
    let read = |name: &str| -> Result<Option<Compression>, ConfigError> {
        let Some(value) = var(name) else { return Ok(None) };
        if value.eq_ignore_ascii_case("gzip") {
            Ok(Some(Compression::Gzip))
        } else if value.eq_ignore_ascii_case("none") {
            Ok(Some(Compression::None))
        } else {
            Err(ConfigError::new(name, format!("{value:?} is not a supported compression; use gzip or none")))
        }
    };
    let general = read("OTEL_EXPORTER_OTLP_COMPRESSION")?;
    Ok(read(signal_var)?.or(general).unwrap_or_default())
}

fn millis(var: &dyn Fn(&str) -> Option<String>, name: &str, default: u64) -> Result<Duration, ConfigError> {
    let ms = match var(name) {
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&ms| ms > 0)
            .ok_or_else(|| ConfigError::new(name, format!("{v:?} is not a number of milliseconds above 0")))?,
        None => default,
    };
    Ok(Duration::from_millis(ms))
}

fn count(var: &dyn Fn(&str) -> Option<String>, name: &str, default: usize) -> Result<usize, ConfigError> {
    match var(name) {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=1 << 20).contains(&n))
            .ok_or_else(|| ConfigError::new(name, format!("{v:?} is not a count from 1 to 1048576"))),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::config;

    fn with(args: &[&'static str], env: &[(&'static str, &'static str)]) -> Option<super::TelemetryConfig> {
        let mut all = vec!["--target-uri", "http://127.0.0.1:8080/mcp"];
        all.extend_from_slice(args);
        config(&all, env).expect("valid").telemetry
    }

    fn flag_of(args: &[&'static str], env: &[(&'static str, &'static str)]) -> String {
        let mut all = vec!["--target-uri", "http://127.0.0.1:8080/mcp"];
        all.extend_from_slice(args);
        config(&all, env).expect_err("refused").flag
    }

    #[test]
    fn nothing_configured_is_nothing() {
        assert!(with(&[], &[]).is_none());
        assert!(with(&["--otel-service-name", "x"], &[]).is_none(), "a name alone exports nothing");
    }

    #[test]
    fn endpoints_become_signal_urls() {
        let t = with(&["--otel-endpoint", "collector:4318", "--otel-insecure"], &[]).unwrap();
        assert_eq!(t.traces_url.unwrap().url.as_str(), "http://collector:4318/v1/traces");
        assert_eq!(t.metrics_url.unwrap().url.as_str(), "http://collector:4318/v1/metrics");
        assert_eq!(t.service_name, "thv-srv");
        assert!((t.sampling_rate - 0.1).abs() < 1e-9 && t.follow_parent);
        let t = with(&["--otel-endpoint", "collector:4318"], &[]).unwrap();
        assert_eq!(t.traces_url.unwrap().url.scheme(), "https", "host:port is HTTPS unless --otel-insecure");
        let t = with(&["--otel-endpoint", "http://c:4318/base/", "--otel-metrics-enabled=false"], &[]).unwrap();
        assert_eq!(t.traces_url.unwrap().url.as_str(), "http://c:4318/base/v1/traces");
        assert!(t.metrics_url.is_none());
        assert!(t.diagnostics.is_none());
    }

    #[test]
    fn the_environment_fills_in_and_flags_win() {
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,x=1"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment=ci,team=a"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ];
        let t = with(&[], &env).unwrap();
        assert_eq!(t.traces_url.as_ref().unwrap().url.as_str(), "http://env:4318/v1/traces");
        assert_eq!(t.service_name, "from-env");
        assert_eq!(t.headers[0].0.as_str(), "api-key");
        assert_eq!(t.headers[0].1.to_str().unwrap(), "s=cret", "values are percent-decoded");
        assert!(t.headers[0].1.is_sensitive());
        assert!((t.sampling_rate - 0.5).abs() < 1e-9);
        assert_eq!(t.metric_interval.as_millis(), 1000);
        let t = with(
            &[
                "--otel-endpoint",
                "http://flag:4318",
                "--otel-service-name",
                "flag",
                "--otel-sampling-rate",
                "1",
                "--otel-custom-attributes",
                "team=b",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(t.traces_url.as_ref().unwrap().url.host_str(), Some("flag"));
        assert_eq!(t.service_name, "flag");
        assert!((t.sampling_rate - 1.0).abs() < 1e-9);
        assert!(t.resource.contains(&("team".to_owned(), "b".to_owned())));
        assert!(t.resource.contains(&("deployment".to_owned(), "ci".to_owned())));
        assert!(!format!("{t:?}").contains("cret"), "Debug never shows a header value");
        let off = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"), ("OTEL_SDK_DISABLED", "true")];
        assert!(with(&[], &off).is_none());
    }

    #[test]
    fn compression_is_per_signal_and_the_signal_variable_wins() {
        use crate::telemetry::otlp::Compression::{Gzip, None as Plain};
        let of = |env: &[(&'static str, &'static str)]| {
            let t = with(&["--otel-endpoint", "http://c:4318"], env).unwrap();
            (t.traces_url.unwrap().compression, t.metrics_url.unwrap().compression)
        };
        assert_eq!(of(&[]), (Plain, Plain), "the spec's default is none");
        assert_eq!(of(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]), (Gzip, Gzip));
        assert_eq!(of(&[("OTEL_EXPORTER_OTLP_COMPRESSION", " GZip ")]), (Gzip, Gzip), "enum values ignore case");
        assert_eq!(of(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "")]), (Plain, Plain), "empty is unset");
        let traces_off =
            [("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"), ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none")];
        assert_eq!(of(&traces_off), (Plain, Gzip));
        assert_eq!(of(&[("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip")]), (Plain, Gzip));
        let t = with(
            &[],
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/x"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
        )
        .unwrap();
        assert_eq!(t.traces_url.unwrap().compression, Gzip, "a per-signal endpoint is compressed too");
    }

    #[test]
    fn prometheus_alone_serves_metrics_on_the_diagnostics_port() {
        let t = with(&["--otel-enable-prometheus-metrics-path"], &[]).unwrap();
        let d = t.diagnostics.unwrap();
        assert_eq!(d.addr.to_string(), "127.0.0.1:9464");
        assert!(d.default_port);
        assert!(t.traces_url.is_none() && t.metrics_url.is_none());
        let t = with(&["--otel-enable-prometheus-metrics-path", "--diagnostics-port", "0"], &[]).unwrap();
        assert!(!t.diagnostics.unwrap().default_port);
    }

    #[test]
    fn bad_values_name_their_flag() {
        assert_eq!(flag_of(&["--otel-sampling-rate", "2"], &[]), "--otel-sampling-rate");
        assert_eq!(flag_of(&["--diagnostics-port", "70000"], &[]), "--diagnostics-port");
        assert_eq!(flag_of(&["--diagnostics-host", "example.com"], &[]), "--diagnostics-host");
        assert_eq!(flag_of(&["--otel-endpoint", "ftp://x"], &[]), "--otel-endpoint");
        assert_eq!(flag_of(&["--otel-endpoint", "http://u:p@x"], &[]), "--otel-endpoint");
        assert_eq!(flag_of(&["--otel-endpoint", "http://x", "--otel-headers", "novalue"], &[]), "--otel-headers");
        assert_eq!(flag_of(&["--otel-endpoint", "http://x", "--otel-headers", "bad name=v"], &[]), "--otel-headers");
        let both_off = ["--otel-endpoint", "http://x", "--otel-tracing-enabled=false", "--otel-metrics-enabled=false"];
        assert_eq!(flag_of(&both_off, &[]), "--otel-endpoint");
        assert_eq!(flag_of(&["--log-format", "xml"], &[]), "--log-format");
        assert_eq!(flag_of(&[], &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]), "OTEL_EXPORTER_OTLP_PROTOCOL");
        let traces_grpc = [("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")];
        assert_eq!(flag_of(&[], &traces_grpc), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
        let metrics_json = [("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")];
        assert_eq!(flag_of(&[], &metrics_json), "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL");
        assert_eq!(flag_of(&[], &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]), "OTEL_TRACES_SAMPLER");
        let bad_interval = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e"), ("OTEL_METRIC_EXPORT_INTERVAL", "0")];
        assert_eq!(flag_of(&[], &bad_interval), "OTEL_METRIC_EXPORT_INTERVAL");
        for name in [
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        ] {
            let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e"), (name, "zstd")];
            let e = config(&["--target-uri", "http://127.0.0.1:8080/mcp"], &env).expect_err("refused");
            assert_eq!(e.flag, name);
            assert!(e.problem.contains("\"zstd\"") && e.problem.contains("gzip or none"), "{}", e.problem);
        }
        // A bad general value is refused even where each signal's own variable overrides it.
        let overridden = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "deflate"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        ];
        assert_eq!(flag_of(&[], &overridden), "OTEL_EXPORTER_OTLP_COMPRESSION");
    }
}
