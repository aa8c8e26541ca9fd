//! What the proxy adds to what it sends upstream: header fields for the target
//! (`--remote-forward-headers`, `--remote-forward-headers-secret`; ToolHive #3452) and the
//! authorization request's scope parameter name and extra parameters
//! (`--remote-auth-scope-param-name`, ToolHive #4712; `--remote-auth-authorize-param`,
//! mcp-remote's `--authorize-param`).
//!
//! Header fields are checked here once, so the request path only copies them:
//! - `Name=Value`: the name an RFC 9110 §5.1 token, the value free of control characters
//!   (no line breaks: no header injection); ToolHive's syntax (the first `=` splits, the
//!   value is kept as given);
//! - `Name=env:VAR` or `Name=file:/path` for secrets, read now (trimmed, like every secret
//!   file here). ToolHive reads a name from its secrets manager instead; this thv has
//!   none, and says so;
//! - names the proxy owns are refused ([`refusal`]): ToolHive's restricted list (`Host`,
//!   hop-by-hop fields, framing, forwarding fields), the MCP transport's own fields, the
//!   trace context and `Accept-Encoding` (the proxy sets or withholds them per request),
//!   and `Authorization` while the proxy authenticates to the target itself;
//! - a name given twice is refused (ToolHive lets the last one win silently).
//!
//! Values never appear in a message: an error names the flag and the header only.

use std::collections::BTreeSet;

use http::{HeaderName, HeaderValue};

use super::outbound::OutboundConfig;
use super::{ConfigError, Environment, resolve_secret};
use crate::cli::ForwardArgs;
use crate::oauth::authorize::{AuthorizeExtras, PROTOCOL_PARAMS};
use crate::proxy::headers::{FORWARDING, ForwardHeaders, HOP_BY_HOP, is_disguised};

const PLAIN_FLAG: &str = "--remote-forward-headers";
const SECRET_FLAG: &str = "--remote-forward-headers-secret";

/// The validated `--remote-forward-headers*`; `None` when none is given (nothing to do per
/// request). `outbound` is the proxy's own authentication to the target, if any.
pub(super) fn forward_headers(
    args: &ForwardArgs,
    outbound: Option<&OutboundConfig>,
    env: &dyn Environment,
) -> Result<Option<ForwardHeaders>, ConfigError> {
    if args.headers.is_empty() && args.headers_secret.is_empty() {
        return Ok(None);
    }
    let mut fields = Vec::new();
    let mut seen = BTreeSet::new();
    for raw in &args.headers {
        let (name, value) = split(PLAIN_FLAG, raw)?;
        let name = checked_name(PLAIN_FLAG, name, outbound, &mut seen)?;
        fields.push((name.clone(), checked_value(PLAIN_FLAG, &name, value.as_bytes())?));
    }
    for raw in &args.headers_secret {
        let (name, reference) = split(SECRET_FLAG, raw)?;
        let name = checked_name(SECRET_FLAG, name, outbound, &mut seen)?;
        let secret = read_reference(&name, reference, env)?;
        let value = secrecy::ExposeSecret::expose_secret(&secret).as_bytes();
        fields.push((name.clone(), checked_value(SECRET_FLAG, &name, value)?));
    }
    Ok(Some(ForwardHeaders::new(fields)))
}

/// `Name=rest` at the first `=`; the name trimmed (ToolHive's syntax).
fn split<'a>(flag: &str, raw: &'a str) -> Result<(&'a str, &'a str), ConfigError> {
    let (name, rest) = raw.split_once('=').ok_or_else(|| {
        // The whole argument may be a secret pasted without its name: not repeated.
        ConfigError::new(flag, "expects Name=Value (e.g. X-API-Key=…); no `=` found in one of its values")
    })?;
    Ok((name.trim(), rest))
}

fn checked_name(
    flag: &str,
    name: &str,
    outbound: Option<&OutboundConfig>,
    seen: &mut BTreeSet<String>,
) -> Result<HeaderName, ConfigError> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        ConfigError::new(
            flag,
            format!("{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        )
    })?;
    if let Some(why) = refusal(&parsed, outbound) {
        return Err(ConfigError::new(flag, format!("header {name:?} cannot be configured: {why}")));
    }
    if !seen.insert(parsed.as_str().to_owned()) {
        return Err(ConfigError::new(
            flag,
            format!("header {name:?} is given twice (in either forward-headers flag); give it once"),
        ));
    }
    Ok(parsed)
}

/// Why the operator may not set this field on the target's requests, if they may not.
fn refusal(name: &HeaderName, outbound: Option<&OutboundConfig>) -> Option<&'static str> {
    let n = name.as_str();
    if n == "host" {
        return Some("the proxy sends the target's own Host");
    }
    if HOP_BY_HOP.contains(&n) || n == "http2-settings" {
        return Some("it is hop-by-hop (RFC 9110 §7.6.1): it describes one connection, not the request");
    }
    if matches!(n, "content-length" | "expect") || is_disguised(n) {
        return Some("the proxy frames each request's body itself");
    }
    if FORWARDING.contains(&n) {
        return Some("only the proxy describes the client to the target");
    }
    if n.starts_with("mcp-") || n == "last-event-id" {
        return Some("MCP's transport fields belong to each session and request, never a fixed value");
    }
    if matches!(n, "traceparent" | "tracestate") {
        return Some("trace context belongs to each request");
    }
    if n == "accept-encoding" {
        return Some("the proxy withholds it when it must read an answer (filtered lists)");
    }
    if n == "authorization" && outbound.is_some() {
        return Some("the proxy authenticates to the target itself (--remote-auth*); drop one of the two");
    }
    None
}

/// A value for `name`: no control characters (so no line breaks); empty is allowed.
fn checked_value(flag: &str, name: &HeaderName, value: &[u8]) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_bytes(value).map_err(|_| {
        ConfigError::new(flag, format!("the value of {name} has a control character or line break; remove it"))
    })
}

/// Reads `env:VAR` or `file:/path`.
fn read_reference(
    name: &HeaderName,
    reference: &str,
    env: &dyn Environment,
) -> Result<secrecy::SecretString, ConfigError> {
    let reference = reference.trim();
    if let Some(var) = reference.strip_prefix("env:").filter(|v| !v.is_empty()) {
        return resolve_secret(&None, (SECRET_FLAG, &None), env.var(var)).and_then(|found| {
            found.ok_or_else(|| {
                ConfigError::new(SECRET_FLAG, format!("{name}: environment variable {var} is not set or is empty"))
            })
        });
    }
    if let Some(path) = reference.strip_prefix("file:").filter(|p| !p.is_empty()) {
        let found = resolve_secret(&None, (SECRET_FLAG, &Some(path.to_owned())), None)?;
        return found.ok_or_else(|| ConfigError::new(SECRET_FLAG, format!("{name}: {path:?} is empty")));
    }
    Err(ConfigError::new(
        SECRET_FLAG,
        format!(
            "{name}: the value must be env:VAR or file:/path (this thv has no secrets manager, so ToolHive's secret names are not accepted)"
        ),
    ))
}

/// The validated `--remote-auth-scope-param-name` and `--remote-auth-authorize-param`.
pub(super) fn authorize_extras(args: &ForwardArgs) -> Result<AuthorizeExtras, ConfigError> {
    const SCOPE_FLAG: &str = "--remote-auth-scope-param-name";
    const PARAM_FLAG: &str = "--remote-auth-authorize-param";
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b'&');
    let scope_param = match args.scope_param_name.as_deref().map(str::trim) {
        None | Some("" | "scope") => None,
        Some(name) if !plain(name) => {
            return Err(ConfigError::new(
                SCOPE_FLAG,
                format!("{name:?} is not a parameter name (no spaces, `=` or `&`); e.g. user_scope"),
            ));
        }
        Some(name) if PROTOCOL_PARAMS.contains(&name) => {
            return Err(ConfigError::new(
                SCOPE_FLAG,
                format!(
                    "{name:?} is a parameter the login sets itself; name the provider's scope parameter, e.g. user_scope"
                ),
            ));
        }
        Some(name) => Some(name.to_owned()),
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for raw in &args.authorize_params {
        let Some((key, value)) = raw.split_once('=') else {
            return Err(ConfigError::new(PARAM_FLAG, format!("{raw:?} is not key=value; e.g. access_type=offline")));
        };
        let key = key.trim();
        if !plain(key) {
            return Err(ConfigError::new(
                PARAM_FLAG,
                format!("{key:?} is not a parameter name (no spaces, `=` or `&`)"),
            ));
        }
        if PROTOCOL_PARAMS.contains(&key) || scope_param.as_deref() == Some(key) {
            let fix = match key {
                "scope" => "; use --remote-auth-scopes",
                "resource" => "; use --remote-auth-resource",
                k if scope_param.as_deref() == Some(k) => "; it carries --remote-auth-scopes",
                _ => "",
            };
            return Err(ConfigError::new(
                PARAM_FLAG,
                format!("{key:?} cannot be set: the login sets it itself, per request{fix}"),
            ));
        }
        if params.iter().any(|(k, _)| k == key) {
            return Err(ConfigError::new(PARAM_FLAG, format!("{key:?} is given twice; give it once")));
        }
        params.push((key.to_owned(), value.to_owned()));
    }
    Ok(AuthorizeExtras { scope_param, params })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::config;
    use crate::config::{ConfigError, OutboundConfig};

    const T: [&str; 2] = ["--target-uri", "http://127.0.0.1:9/mcp"];

    fn with(args: &[&str], env: &[(&'static str, &'static str)]) -> Result<crate::config::Config, ConfigError> {
        config(&[&T[..], args].concat(), env)
    }

    fn fails(args: &[&str], env: &[(&'static str, &'static str)]) -> ConfigError {
        with(args, env).expect_err("must be refused")
    }

    #[test]
    fn plain_and_secret_headers_are_read_at_startup() {
        let dir = std::env::temp_dir().join(format!("thv-forward-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let file_ref = format!("X-File=file:{}", file.display());
        let c = with(
            &[
                "--remote-forward-headers",
                "X-Tenant=acme corp",
                "--remote-forward-headers=X-Empty=",
                "--remote-forward-headers-secret",
                "X-Api-Key=env:THV_TEST_KEY",
                "--remote-forward-headers-secret",
                &file_ref,
            ],
            &[("THV_TEST_KEY", " from-env ")],
        )
        .unwrap();
        let fwd = c.forward.as_ref().expect("configured");
        let mut h = http::HeaderMap::new();
        fwd.apply(&mut h);
        assert_eq!(h["x-tenant"], "acme corp");
        assert_eq!(h["x-empty"], "");
        assert_eq!(h["x-api-key"], "from-env", "secrets are trimmed like every secret");
        assert_eq!(h["x-file"], "from-file");
        assert!(h["x-api-key"].is_sensitive());
        let shown = format!("{c:?}");
        assert!(!shown.contains("from-env") && !shown.contains("from-file") && !shown.contains("acme"), "{shown}");
        assert!(with(&[], &[]).unwrap().forward.is_none(), "nothing configured, nothing to do");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_headers_name_the_flag_and_never_the_value() {
        let plain = "--remote-forward-headers";
        let secret = "--remote-forward-headers-secret";
        for (args, flag, needle) in [
            (&[plain, "no-equals-s3cret"][..], plain, "Name=Value"),
            (&[plain, "bad name=s3cret"], plain, "not a valid header name"),
            (&[plain, "X-A=s3cret\r\nX-B: 1"], plain, "control character"),
            (&[plain, "X-A=1", plain, "x-a=s3cret"], plain, "twice"),
            (&[plain, "X-A=1", secret, "x-a=env:THV_SET"], secret, "twice"),
            (&[secret, "X-A=s3cret"], secret, "no secrets manager"),
            (&[secret, "X-A=env:THV_UNSET"], secret, "THV_UNSET is not set"),
            (&[secret, "X-A=env:THV_EMPTY"], secret, "THV_EMPTY is not set or is empty"),
            (&[secret, "X-A=env:THV_BAD"], secret, "control character"),
            (&[secret, "X-A=file:/nonexistent/s3cret-file"], secret, "cannot read"),
            (&[secret, "X-A=file:"], secret, "env:VAR or file:/path"),
        ] {
            let err = fails(args, &[("THV_SET", "s3cret"), ("THV_EMPTY", " "), ("THV_BAD", "s3cret\u{7}")]);
            let text = err.to_string();
            assert_eq!(err.flag, flag, "{args:?}: {text}");
            assert!(text.contains(needle), "{args:?}: {text}");
            assert!(!text.contains("s3cret") || needle == "cannot read", "{args:?} leaks the value: {text}");
        }
    }

    #[test]
    fn fields_the_proxy_owns_are_refused() {
        for name in [
            "Host",
            "Connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Upgrade",
            "Http2-Settings",
            "Proxy-Authorization",
            "Proxy-Authenticate",
            "Proxy-Connection",
            "Transfer-Encoding",
            "Content-Length",
            "Content_Length",
            "Expect",
            "Forwarded",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
            "X-Real-IP",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Mcp-Method",
            "Mcp-Name",
            "Mcp-Param-Region",
            "Last-Event-ID",
            "traceparent",
            "tracestate",
            "Accept-Encoding",
        ] {
            let arg = format!("{name}=v");
            let err = fails(&["--remote-forward-headers", &arg], &[]);
            assert_eq!(err.flag, "--remote-forward-headers", "{name}");
            assert!(err.to_string().contains(name), "{name}: {err}");
            let arg = format!("{name}=env:V");
            let err = fails(&["--remote-forward-headers-secret", &arg], &[("V", "v")]);
            assert_eq!(err.flag, "--remote-forward-headers-secret", "{name}");
        }
        // Authorization: the operator's own static credential, unless the proxy logs in.
        let c = with(&["--remote-forward-headers", "Authorization=Bearer k"], &[]).unwrap();
        assert!(c.forward.is_some());
        let err =
            fails(&["--remote-forward-headers", "Authorization=Bearer k", "--remote-auth-bearer-token", "t"], &[]);
        assert!(err.to_string().contains("authenticates to the target itself"), "{err}");
        let err = fails(&["--remote-forward-headers-secret", "authorization=env:V", "--remote-auth"], &[("V", "v")]);
        assert_eq!(err.flag, "--remote-forward-headers-secret");
    }

    fn extras(args: &[&str]) -> Result<crate::oauth::authorize::AuthorizeExtras, ConfigError> {
        match with(&[args, &["--remote-auth"]].concat(), &[])?.outbound {
            Some(OutboundConfig::OAuth(o)) => Ok(o.authorize),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authorize_extras_are_checked() {
        let e = extras(&[
            "--remote-auth-scope-param-name",
            "user_scope",
            "--remote-auth-authorize-param",
            "access_type=offline",
            "--remote-auth-authorize-param",
            "audience=https://api.example.com/?a=b",
        ])
        .unwrap();
        assert_eq!(e.scope_param.as_deref(), Some("user_scope"));
        assert_eq!(
            e.params,
            [("access_type".into(), "offline".into()), ("audience".into(), "https://api.example.com/?a=b".into())]
        );
        assert_eq!(extras(&["--remote-auth-scope-param-name", "scope"]).unwrap().scope_param, None);
        for (args, flag, needle) in [
            (&["--remote-auth-authorize-param", "state=x"][..], "--remote-auth-authorize-param", "\"state\""),
            (
                &["--remote-auth-authorize-param", "code_challenge_method=plain"],
                "--remote-auth-authorize-param",
                "code_challenge_method",
            ),
            (
                &["--remote-auth-authorize-param", "resource=x"],
                "--remote-auth-authorize-param",
                "--remote-auth-resource",
            ),
            (&["--remote-auth-authorize-param", "scope=x"], "--remote-auth-authorize-param", "--remote-auth-scopes"),
            (
                &["--remote-auth-scope-param-name", "user_scope", "--remote-auth-authorize-param", "user_scope=x"],
                "--remote-auth-authorize-param",
                "user_scope",
            ),
            (&["--remote-auth-authorize-param", "noequals"], "--remote-auth-authorize-param", "key=value"),
            (&["--remote-auth-authorize-param", "a b=c"], "--remote-auth-authorize-param", "not a parameter name"),
            (
                &["--remote-auth-authorize-param", "k=1", "--remote-auth-authorize-param", "k=2"],
                "--remote-auth-authorize-param",
                "twice",
            ),
            (&["--remote-auth-scope-param-name", "client_id"], "--remote-auth-scope-param-name", "client_id"),
            (&["--remote-auth-scope-param-name", "a&b"], "--remote-auth-scope-param-name", "not a parameter name"),
        ] {
            let err = extras(args).expect_err("refused");
            assert_eq!(err.flag, flag, "{args:?}: {err}");
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
        // Without OAuth to the target they would do nothing: refused, as the other OAuth flags.
        let err = fails(&["--remote-auth-authorize-param", "access_type=offline"], &[]);
        assert_eq!(err.flag, "--remote-auth-authorize-param");
        let err = fails(&["--remote-auth-scope-param-name", "user_scope"], &[]);
        assert_eq!(err.flag, "--remote-auth-scope-param-name");
    }
}
