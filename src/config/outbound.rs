//! Outgoing authentication settings (`--remote-auth*`): how the proxy authenticates to
//! the target — a static bearer token, or OAuth 2.1 with PKCE against discovered or given
//! endpoints (MCP 2025-11-25 Authorization; RFC 8707 for the resource).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::grant::{DpopMode, Grant, device, grant_config, unattended};
use super::target::Target;
use super::{ConfigError, Environment, non_empty, resolve_secret, url_refused};
use crate::oauth::assertion::AssertionKey;
use crate::oauth::authorize::AuthorizeExtras;

/// How the proxy authenticates to the target.
#[derive(Clone)]
pub enum OutboundConfig {
    /// A static token (`--remote-auth-bearer-token[-file]`, `TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN`).
    Bearer(SecretString),
    /// OAuth 2.1 authorization code with PKCE.
    OAuth(Box<OAuthConfig>),
}

impl fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundConfig::Bearer(_) => f.write_str("Bearer([REDACTED])"),
            OutboundConfig::OAuth(c) => f.debug_tuple("OAuth").field(&c.endpoints).finish(),
        }
    }
}

/// Where the authorization server's endpoints come from.
#[derive(Debug, Clone)]
pub(crate) enum OAuthEndpoints {
    /// Discovered from the target (RFC 9728 → RFC 8414 / OIDC).
    Discover,
    /// `--remote-auth-issuer`: discovered from this issuer.
    Issuer(String),
    /// `--remote-auth-authorize-url` and `--remote-auth-token-url` (the token URL alone for
    /// a grant without a browser).
    Manual { authorize: Option<Url>, token: Url },
}

/// Validated `--remote-auth*` settings.
#[derive(Clone)]
pub struct OAuthConfig {
    pub(crate) endpoints: OAuthEndpoints,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<SecretString>,
    pub(crate) client_metadata_url: Option<String>,
    /// `--remote-auth-grant-type` and what it needs.
    pub(crate) grant: Grant,
    /// `--remote-auth-client-assertion-key-file`: `private_key_jwt` instead of a secret.
    pub(crate) assertion_key: Option<Arc<AssertionKey>>,
    /// `--remote-auth-dpop`.
    pub(crate) dpop: DpopMode,
    /// Scopes the user asked for; empty means "as the server says" (MCP scope selection).
    pub scopes: Vec<String>,
    pub callback_port: u16,
    pub(crate) skip_browser: bool,
    pub timeout: Duration,
    /// The RFC 8707 resource: `--remote-auth-resource` or the canonical target URI.
    pub resource: String,
    /// Where tokens are kept between runs; `None` keeps them in memory only.
    pub store_dir: Option<std::path::PathBuf>,
    /// `$BROWSER`, how to open the authorization page.
    pub(crate) browser: Option<String>,
    /// The scope's parameter name and extra parameters of the authorization request.
    pub(crate) authorize: AuthorizeExtras,
}

/// Remote-auth flags that only mean something when OAuth to the target is on.
const OAUTH_ONLY_FLAGS: &[&str] = &[
    "remote-auth-client-secret",
    "remote-auth-client-secret-file",
    "remote-auth-scopes",
    "remote-auth-skip-browser",
    "remote-auth-timeout",
    "remote-auth-callback-port",
    "remote-auth-resource",
    "remote-auth-client-metadata-url",
    "remote-auth-store",
    "remote-auth-store-dir",
    "remote-auth-scope-param-name",
    "remote-auth-authorize-param",
    "remote-auth-grant-type",
    "remote-auth-dpop",
    "remote-auth-client-assertion-key-file",
    "remote-auth-client-assertion-alg",
    "remote-auth-assertion-file",
    "remote-auth-idp-token-url",
    "remote-auth-idp-client-id",
    "remote-auth-idp-client-secret",
    "remote-auth-idp-client-secret-file",
    "remote-auth-subject-token-file",
];

/// Flags of the browser login, which a grant without a browser cannot use.
const BROWSER_ONLY_FLAGS: &[&str] =
    &["remote-auth-client-metadata-url", "remote-auth-callback-port", "remote-auth-skip-browser"];

/// Flags of the browser login's redirect to the proxy, which the device flow (a browser,
/// but no redirect) cannot use.
const REDIRECT_ONLY_FLAGS: &[&str] = &["remote-auth-client-metadata-url", "remote-auth-callback-port"];

/// Validates the `--remote-auth*` flags. Secret precedence (ToolHive's): flag, then
/// file (trimmed, must not be empty), then environment variable.
pub(super) fn outbound_config(
    args: &crate::cli::RemoteAuthArgs,
    given: &BTreeSet<String>,
    env: &dyn Environment,
    target: &Target,
    warnings: &mut Vec<&'static str>,
) -> Result<Option<OutboundConfig>, ConfigError> {
    let bearer = resolve_secret(
        &args.remote_auth_bearer_token,
        ("--remote-auth-bearer-token-file", &args.remote_auth_bearer_token_file),
        env.var("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN"),
    )?;
    // A grant other than the default is a request to log in, like a client id.
    let oauth_on = args.remote_auth
        || unattended(&args.grant)
        || device(&args.grant)
        || [
            &args.remote_auth_client_id,
            &args.remote_auth_issuer,
            &args.remote_auth_authorize_url,
            &args.remote_auth_token_url,
        ]
        .iter()
        .any(|v| non_empty(v).is_some());
    if let Some(token) = bearer {
        if oauth_on {
            warnings.push(
                "a static bearer token is configured: it is used as is and the OAuth flags are ignored (ToolHive's precedence)",
            );
        }
        return Ok(Some(OutboundConfig::Bearer(token)));
    }
    if !oauth_on {
        if let Some(flag) = OAUTH_ONLY_FLAGS.iter().find(|f| given.contains(**f)) {
            return Err(ConfigError::new(
                format!("--{flag}"),
                "has no effect without --remote-auth; add --remote-auth to log in to the MCP server",
            ));
        }
        return Ok(None);
    }
    let endpoint_url = |flag: &str, raw: &str| -> Result<Url, ConfigError> {
        let url = Url::parse(raw).map_err(|e| ConfigError::new(flag, format!("{raw:?} is not a valid URL ({e})")))?;
        crate::oauth::http::UrlPolicy::default().check(&url).map_err(|why| {
            url_refused(flag, &why, None, "--remote-auth-client-id and --remote-auth-client-secret-file")
        })?;
        Ok(url)
    };
    let unattended = unattended(&args.grant);
    let device = device(&args.grant);
    let not_for_this_grant = match (unattended, device) {
        (true, _) => BROWSER_ONLY_FLAGS,
        (false, true) => REDIRECT_ONLY_FLAGS,
        (false, false) => &[],
    };
    if let Some(flag) = not_for_this_grant.iter().find(|f| given.contains(**f)) {
        return Err(ConfigError::new(
            format!("--{flag}"),
            format!(
                "is for the browser login and has no effect with --remote-auth-grant-type {}",
                args.grant.remote_auth_grant_type
            ),
        ));
    }
    if device
        && let Some((flag, _)) = [
            ("--remote-auth-token-url", &args.remote_auth_token_url),
            ("--remote-auth-authorize-url", &args.remote_auth_authorize_url),
        ]
        .into_iter()
        .find(|(_, v)| non_empty(v).is_some())
    {
        return Err(ConfigError::new(
            flag,
            "cannot be used with --remote-auth-grant-type device_code: the device authorization endpoint \
             comes from the authorization server's metadata (RFC 8628 §4); use --remote-auth-issuer, or \
             neither, to discover it from the MCP server",
        ));
    }
    let endpoints = match (
        non_empty(&args.remote_auth_issuer),
        non_empty(&args.remote_auth_authorize_url),
        non_empty(&args.remote_auth_token_url),
    ) {
        (Some(issuer), None, None) => {
            endpoint_url("--remote-auth-issuer", issuer)?;
            OAuthEndpoints::Issuer(issuer.to_owned())
        }
        (None, Some(authorize), Some(token)) => OAuthEndpoints::Manual {
            authorize: Some(endpoint_url("--remote-auth-authorize-url", authorize)?),
            token: endpoint_url("--remote-auth-token-url", token)?,
        },
        (None, None, Some(token)) if unattended => {
            OAuthEndpoints::Manual { authorize: None, token: endpoint_url("--remote-auth-token-url", token)? }
        }
        (None, Some(_), None) => {
            return Err(ConfigError::new("--remote-auth-token-url", "is required with --remote-auth-authorize-url"));
        }
        (None, None, Some(_)) => {
            return Err(ConfigError::new("--remote-auth-authorize-url", "is required with --remote-auth-token-url"));
        }
        (None, None, None) => OAuthEndpoints::Discover,
        (Some(_), _, _) => {
            return Err(ConfigError::new(
                "--remote-auth-issuer",
                "cannot be combined with --remote-auth-authorize-url/--remote-auth-token-url; choose one approach",
            ));
        }
    };
    let client_id = non_empty(&args.remote_auth_client_id).map(str::to_owned);
    // A JWT bearer grant may come without client authentication (RFC 7523 §3.1).
    let jwt_bearer = args.grant.remote_auth_grant_type == "jwt-bearer";
    if matches!(endpoints, OAuthEndpoints::Manual { .. }) && client_id.is_none() && !jwt_bearer {
        return Err(ConfigError::new(
            "--remote-auth-client-id",
            "is required with manual endpoints: without an issuer there is no registration endpoint to register a client at",
        ));
    }
    let client_secret = resolve_secret(
        &args.remote_auth_client_secret,
        ("--remote-auth-client-secret-file", &args.remote_auth_client_secret_file),
        env.var("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET"),
    )?;
    let grant = grant_config(&args.grant, client_id.as_deref(), client_secret.as_ref(), env)?;
    let client_metadata_url = non_empty(&args.remote_auth_client_metadata_url)
        .map(|raw| {
            let url = Url::parse(raw).map_err(|e| {
                ConfigError::new("--remote-auth-client-metadata-url", format!("{raw:?} is not a valid URL ({e})"))
            })?;
            if url.scheme() != "https" || url.path().len() <= 1 {
                return Err(ConfigError::new(
                    "--remote-auth-client-metadata-url",
                    "must be an https URL with a path (MCP 2025-11-25 §Client ID Metadata Documents)",
                ));
            }
            Ok(raw.to_owned())
        })
        .transpose()?;
    let resource = match non_empty(&args.remote_auth_resource) {
        Some(raw) => {
            let url = Url::parse(raw).map_err(|e| {
                ConfigError::new("--remote-auth-resource", format!("{raw:?} is not an absolute URI ({e})"))
            })?;
            if url.fragment().is_some() {
                return Err(ConfigError::new("--remote-auth-resource", "must not contain a #fragment (RFC 8707 §2)"));
            }
            raw.to_owned()
        }
        None => canonical_resource(target),
    };
    let scopes: Vec<String> =
        args.remote_auth_scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    // ToolHive's OIDC default is for a user's login; a workload asks for what it is given.
    let scopes = if scopes.is_empty() && matches!(endpoints, OAuthEndpoints::Issuer(_)) && !unattended {
        ["openid", "profile", "email"].map(str::to_owned).to_vec()
    } else {
        scopes
    };
    let store_dir = if args.remote_auth_store {
        match non_empty(&args.remote_auth_store_dir) {
            Some(dir) => Some(std::path::PathBuf::from(dir)),
            None => env
                .var("XDG_STATE_HOME")
                .filter(|v| v.starts_with('/'))
                .map(|d| std::path::PathBuf::from(d).join("thv"))
                .or_else(|| {
                    env.var("HOME")
                        .filter(|h| !h.is_empty())
                        .map(|h| std::path::PathBuf::from(h).join(".local/state/thv"))
                }),
        }
    } else {
        None
    };
    Ok(Some(OutboundConfig::OAuth(Box::new(OAuthConfig {
        endpoints,
        client_id,
        client_secret,
        client_metadata_url,
        grant: grant.grant,
        assertion_key: grant.assertion_key,
        dpop: grant.dpop,
        scopes,
        callback_port: args.remote_auth_callback_port,
        skip_browser: args.remote_auth_skip_browser,
        timeout: if args.remote_auth_timeout.is_zero() { Duration::from_secs(300) } else { args.remote_auth_timeout },
        resource,
        store_dir,
        browser: env.var("BROWSER"),
        authorize: super::forward::authorize_extras(&args.forward)?,
    }))))
}

/// The canonical URI of the target for RFC 8707 (MCP 2025-11-25 §Canonical Server URI):
/// lowercase scheme and host, no fragment, no trailing slash on a bare origin.
fn canonical_resource(target: &Target) -> String {
    let scheme = target.scheme.as_str().to_ascii_lowercase();
    let authority = target.authority.as_str().to_ascii_lowercase();
    let path = if target.endpoint_path == "/" { "" } else { target.endpoint_path.as_str() };
    match &target.query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    #[test]
    fn oauth_only_flags_need_remote_auth() {
        let err = config(&["--target-uri", "http://x", "--remote-auth-callback-port", "9000"], &[]).unwrap_err();
        assert_eq!(err.flag, "--remote-auth-callback-port");
        let c =
            config(&["--target-uri", "http://x", "--remote-auth-callback-port", "9000", "--remote-auth"], &[]).unwrap();
        assert!(matches!(c.outbound, Some(OutboundConfig::OAuth(_))));
    }

    #[test]
    fn outbound_modes_and_secret_precedence() {
        use secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("thv-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "  from-file\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let file = file.to_str().unwrap();
        let env = [("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET", "from-env")];
        let secret = |args: &[&str]| match config(args, &env).unwrap().outbound {
            Some(OutboundConfig::OAuth(c)) => c.client_secret.map(|s| s.expose_secret().to_owned()),
            other => panic!("{other:?}"),
        };
        let base = ["--target-uri", "https://api.example.com/mcp", "--remote-auth"];
        assert_eq!(
            secret(&[&base[..], &["--remote-auth-client-secret", "from-flag"]].concat()).as_deref(),
            Some("from-flag")
        );
        assert_eq!(
            secret(&[&base[..], &["--remote-auth-client-secret-file", file]].concat()).as_deref(),
            Some("from-file")
        );
        assert_eq!(secret(&base).as_deref(), Some("from-env"));
        let err = config(&[&base[..], &["--remote-auth-client-secret-file", empty.to_str().unwrap()]].concat(), &[])
            .unwrap_err();
        assert_eq!(err.flag, "--remote-auth-client-secret-file");
        assert!(err.to_string().contains("empty"));
        let err = config(&[&base[..], &["--remote-auth-client-secret-file", "/nonexistent/secret"]].concat(), &[])
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/secret"));

        let c = config(
            &["--target-uri", "https://API.example.com/mcp", "--remote-auth-issuer", "https://idp.example"],
            &[],
        )
        .unwrap();
        let Some(OutboundConfig::OAuth(o)) = c.outbound else { panic!() };
        assert_eq!(o.resource, "https://api.example.com/mcp");
        assert_eq!(o.scopes, ["openid", "profile", "email"], "ToolHive's OIDC default scopes");
        let c = config(&["--target-uri", "http://x"], &[("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN", "tok")]).unwrap();
        assert!(matches!(c.outbound, Some(OutboundConfig::Bearer(_))));
        assert!(!format!("{:?}", c.outbound).contains("tok\""));
        let err = config(&["--target-uri", "http://x", "--remote-auth-authorize-url", "https://a/authorize"], &[])
            .unwrap_err();
        assert_eq!(err.flag, "--remote-auth-token-url");
        let err = config(&["--target-uri", "http://x", "--remote-auth-issuer", "http://idp.example"], &[]).unwrap_err();
        assert_eq!(err.flag, "--remote-auth-issuer");
        // The incoming side's opt-in does nothing here: not advised.
        assert!(err.problem.contains("use https") && !err.problem.contains("oidc-allow-insecure"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
