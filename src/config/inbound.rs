//! Incoming authentication settings (`--oidc-*`, `--resource-url`): the proxy as an
//! OAuth 2.1 resource server (RFC 9728, RFC 7662, MCP 2025-11-25 Authorization).

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Environment, non_empty, url_refused};

/// The flag that allows a plain-http or private-network IdP.
pub(crate) const CONSENT_FLAG: &str = "--oidc-allow-insecure";
/// Where the IdP credentials go instead of the URL.
pub(crate) const CREDENTIAL_FLAGS: &str = "--oidc-client-id/--oidc-client-secret";

/// Validated incoming-authentication settings: the proxy as an OAuth 2.1 resource server.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// `--oidc-issuer`, exactly as given (compared byte for byte with `iss`).
    pub(crate) issuer: Option<String>,
    /// `--oidc-jwks-url`; when absent the JWKS URL comes from the issuer's metadata.
    pub jwks_url: Option<Url>,
    /// `--oidc-introspection-url` and how to authenticate to it.
    pub introspection: Option<IntrospectionConfig>,
    /// `--oidc-audience`; when absent the resource URL is the audience.
    pub(crate) audience: Option<String>,
    /// `--resource-url`; when absent the proxy's own URL (as the client addressed it).
    pub resource_url: Option<Url>,
    /// `--oidc-scopes`: scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// `--oidc-leeway`.
    pub leeway: Duration,
    /// `--oidc-ca-bundle`, read at startup.
    pub(crate) ca_bundle: Option<Vec<u8>>,
    /// `--oidc-allow-insecure`.
    pub allow_insecure: bool,
}

/// Where and how to introspect opaque tokens (RFC 7662).
#[derive(Clone)]
pub struct IntrospectionConfig {
    pub url: Url,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// Google's tokeninfo dialect.
    pub(crate) google: bool,
    /// `--oidc-introspection-cache-ttl`.
    pub(crate) cache_ttl: Duration,
}

impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[REDACTED]"))
            .field("google", &self.google)
            .finish()
    }
}

/// Validates the `--oidc-*` flags. Incoming auth is on when any of issuer, JWKS URL or
/// introspection URL is given (ToolHive's rule).
pub(super) fn inbound_config(
    args: &crate::cli::OidcArgs,
    env: &dyn Environment,
) -> Result<Option<InboundConfig>, ConfigError> {
    let issuer = non_empty(&args.oidc_issuer);
    let jwks = non_empty(&args.oidc_jwks_url);
    let introspection = non_empty(&args.oidc_introspection_url);
    if issuer.is_none() && jwks.is_none() && introspection.is_none() {
        for (given, flag) in [
            (&args.oidc_audience, "--oidc-audience"),
            (&args.resource_url, "--resource-url"),
            (&args.oidc_client_id, "--oidc-client-id"),
            (&args.oidc_client_secret, "--oidc-client-secret"),
        ] {
            if non_empty(given).is_some() {
                return Err(ConfigError::new(
                    flag,
                    "has no effect without --oidc-issuer, --oidc-jwks-url or --oidc-introspection-url; add one of them",
                ));
            }
        }
        if !args.oidc_scopes.is_empty() {
            return Err(ConfigError::new(
                "--oidc-scopes",
                "has no effect without --oidc-issuer, --oidc-jwks-url or --oidc-introspection-url; add one of them",
            ));
        }
        return Ok(None);
    }
    let policy = crate::oauth::http::UrlPolicy { allow_insecure: args.oidc_allow_insecure, block_internal: false };
    let idp_url = |flag: &str, raw: &str| -> Result<Url, ConfigError> {
        let url = Url::parse(raw).map_err(|e| ConfigError::new(flag, format!("{raw:?} is not a valid URL ({e})")))?;
        policy.check(&url).map_err(|why| url_refused(flag, &why, Some(CONSENT_FLAG), CREDENTIAL_FLAGS))?;
        Ok(url)
    };
    if let Some(issuer) = issuer {
        idp_url("--oidc-issuer", issuer)?;
    }
    let jwks_url = jwks.map(|raw| idp_url("--oidc-jwks-url", raw)).transpose()?;
    let audience = non_empty(&args.oidc_audience).map(str::to_owned);
    let introspection = match introspection {
        None => None,
        Some(raw) => {
            let url = idp_url("--oidc-introspection-url", raw)?;
            let google = raw.trim_end_matches('/') == crate::oauth::introspection::GOOGLE_TOKENINFO;
            if google && audience.is_none() {
                return Err(ConfigError::new(
                    "--oidc-audience",
                    "is required with Google's tokeninfo endpoint: without it any Google token for any app would be accepted; set it to your OAuth client ID",
                ));
            }
            let client_secret = non_empty(&args.oidc_client_secret)
                .map(str::to_owned)
                .or_else(|| env.var("TOOLHIVE_OIDC_CLIENT_SECRET").filter(|v| !v.trim().is_empty()))
                .map(SecretString::from);
            let client_id = non_empty(&args.oidc_client_id).map(str::to_owned);
            if client_secret.is_some() && client_id.is_none() {
                return Err(ConfigError::new(
                    "--oidc-client-id",
                    "is required when a client secret is given: introspection authenticates as that client",
                ));
            }
            Some(IntrospectionConfig {
                url,
                client_id,
                client_secret,
                google,
                cache_ttl: args.oidc_introspection_cache_ttl,
            })
        }
    };
    let resource_url = non_empty(&args.resource_url)
        .map(|raw| {
            let url = Url::parse(raw).map_err(|e| {
                ConfigError::new(
                    "--resource-url",
                    format!(
                        "{raw:?} is not a valid URL ({e}); use the URL clients use, e.g. https://mcp.example.com/mcp"
                    ),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.fragment().is_some() {
                return Err(ConfigError::new(
                    "--resource-url",
                    format!("{raw:?} must be an http(s) URL with a host and no #fragment (RFC 8707 §2)"),
                ));
            }
            Ok(url)
        })
        .transpose()?;
    let required_scopes: Vec<String> =
        args.oidc_scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if required_scopes.iter().any(|s| s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')) {
        return Err(ConfigError::new(
            "--oidc-scopes",
            "scopes are single tokens without spaces or quotes; separate them with commas",
        ));
    }
    if args.oidc_leeway > Duration::from_secs(600) {
        return Err(ConfigError::new(
            "--oidc-leeway",
            "more than 10m would accept long-expired tokens; clocks should agree within a minute",
        ));
    }
    let ca_bundle = non_empty(&args.oidc_ca_bundle)
        .map(|path| {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::new("--oidc-ca-bundle", format!("cannot read {path:?}: {e}")))?;
            crate::oauth::http::ControlClient::new(Some(&pem))
                .map_err(|why| ConfigError::new("--oidc-ca-bundle", format!("{path:?} {why}")))?;
            Ok(pem)
        })
        .transpose()?;
    Ok(Some(InboundConfig {
        issuer: issuer.map(str::to_owned),
        jwks_url,
        introspection,
        audience,
        resource_url,
        required_scopes,
        leeway: args.oidc_leeway,
        ca_bundle,
        allow_insecure: args.oidc_allow_insecure,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    #[test]
    fn incoming_auth_settings() {
        let c = config(
            &["--target-uri", "http://x", "--oidc-issuer", "http://127.0.0.1:9000", "--oidc-scopes", "a,b"],
            &[],
        )
        .unwrap();
        let inbound = c.inbound.unwrap();
        assert_eq!(inbound.issuer.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(inbound.required_scopes, ["a", "b"]);
        assert_eq!(inbound.leeway, Duration::from_secs(60));
        assert!(config(&["--target-uri", "http://x"], &[]).unwrap().inbound.is_none());

        let secret = [("TOOLHIVE_OIDC_CLIENT_SECRET", "s3cret")];
        let args = [
            "--target-uri",
            "http://x",
            "--oidc-introspection-url",
            "https://idp.example/introspect",
            "--oidc-client-id",
            "proxy",
        ];
        let inbound = config(&args, &secret).unwrap().inbound.unwrap();
        let intro = inbound.introspection.unwrap();
        assert!(intro.client_secret.is_some(), "the env var is the fallback");
        assert!(!format!("{intro:?}").contains("s3cret"), "Debug never shows the secret");
    }

    #[test]
    fn incoming_auth_errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--oidc-issuer", "http://idp.example"], "--oidc-issuer"),
            (&["--oidc-issuer", "not a url"], "--oidc-issuer"),
            (&["--oidc-jwks-url", "https://10.1.2.3/jwks"], "--oidc-jwks-url"),
            (&["--oidc-introspection-url", "https://oauth2.googleapis.com/tokeninfo"], "--oidc-audience"),
            (&["--oidc-audience", "aud"], "--oidc-audience"),
            (&["--oidc-issuer", "https://idp.example", "--resource-url", "ftp://x"], "--resource-url"),
            (&["--oidc-issuer", "https://idp.example", "--oidc-leeway", "1h"], "--oidc-leeway"),
            (&["--oidc-issuer", "https://idp.example", "--oidc-ca-bundle", "/nonexistent.pem"], "--oidc-ca-bundle"),
        ];
        for (args, flag) in cases {
            let mut full = vec!["--target-uri", "http://x"];
            full.extend_from_slice(args);
            let err = config(&full, &[]).unwrap_err();
            assert_eq!(err.flag, *flag, "{args:?}: {err}");
        }
        let c =
            config(&["--target-uri", "http://x", "--oidc-issuer", "http://idp.example", "--oidc-allow-insecure"], &[]);
        assert!(c.is_ok(), "the opt-in allows a plain-http IdP");
    }
}
