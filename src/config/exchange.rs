//! Token exchange settings (`--token-exchange-*`): RFC 8693 exchange of each validated
//! incoming token for one the target accepts (ToolHive's flags and defaults,
//! `pkg/oauthproto/tokenexchange`).
//!
//! The rules across groups live here: the exchange needs incoming authentication (it
//! trades the token `--oidc-*` validated; without a validated user there is nothing to
//! exchange), and it is refused beside `--remote-auth*`, which would put a second,
//! different credential on the same requests (ToolHive then exchanges the proxy's own
//! login instead; this proxy only ever exchanges the incoming token, and says so rather
//! than doing something else under the same flags).

use std::collections::BTreeSet;
use std::fmt;

use http::HeaderName;
use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Environment, non_empty, resolve_secret, url_refused};
use crate::oauth::exchange::{ACCESS_TOKEN, ID_TOKEN, JWT};

/// The flags that mean something only with `--token-exchange-url`.
const EXCHANGE_ONLY_FLAGS: &[&str] = &[
    "token-exchange-client-id",
    "token-exchange-client-secret",
    "token-exchange-client-secret-file",
    "token-exchange-audience",
    "token-exchange-scopes",
    "token-exchange-subject-token-type",
    "token-exchange-header-name",
];

/// Fields the proxy itself frames or manages: the exchanged token cannot go in them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "traceparent",
    "tracestate",
];

/// Validated `--token-exchange-*` settings.
#[derive(Clone)]
pub(crate) struct ExchangeConfig {
    /// `--token-exchange-url`: the RFC 8693 token endpoint.
    pub(crate) url: Url,
    pub(crate) client_id: Option<String>,
    /// Flag, then file, then `TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET`.
    pub(crate) client_secret: Option<SecretString>,
    pub(crate) audience: Option<String>,
    pub(crate) scopes: Vec<String>,
    /// The RFC 8693 URN of the incoming token's type (`access_token` by default).
    pub(crate) subject_token_type: &'static str,
    /// Where the exchanged token goes: `Authorization` (ToolHive's "replace"), or the
    /// `--token-exchange-header-name` field (ToolHive's "custom"); `Bearer <token>` either way.
    pub(crate) header: HeaderName,
}

impl fmt::Debug for ExchangeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeConfig")
            .field("url", &crate::oauth::http::redact(&self.url))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[REDACTED]"))
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .field("subject_token_type", &self.subject_token_type)
            .field("header", &self.header)
            .finish()
    }
}

/// ToolHive's `NormalizeTokenType`: the short names and the URNs they stand for.
fn subject_token_type(raw: Option<&str>) -> Result<&'static str, ConfigError> {
    match raw.map(str::trim).unwrap_or("") {
        "" | "access_token" | ACCESS_TOKEN => Ok(ACCESS_TOKEN),
        "id_token" | ID_TOKEN => Ok(ID_TOKEN),
        "jwt" | JWT => Ok(JWT),
        other => Err(ConfigError::new(
            "--token-exchange-subject-token-type",
            format!("{other:?} is not a token type; use access_token (the default), id_token or jwt"),
        )),
    }
}

/// Validates the `--token-exchange-*` flags against the incoming (`inbound`) and outgoing
/// (`outbound`) authentication already configured.
pub(super) fn exchange_config(
    args: &crate::cli::TokenExchangeArgs,
    given: &BTreeSet<String>,
    env: &dyn Environment,
    inbound: Option<&super::InboundConfig>,
    outbound: bool,
) -> Result<Option<ExchangeConfig>, ConfigError> {
    let Some(raw) = non_empty(&args.token_exchange_url) else {
        if let Some(flag) = EXCHANGE_ONLY_FLAGS.iter().find(|f| given.contains(**f)) {
            return Err(ConfigError::new(
                format!("--{flag}"),
                "has no effect without --token-exchange-url; add the token exchange endpoint's URL",
            ));
        }
        return Ok(None);
    };
    const FLAG: &str = "--token-exchange-url";
    let Some(inbound) = inbound else {
        return Err(ConfigError::new(
            FLAG,
            "needs incoming authentication: the proxy exchanges the token it validated; add --oidc-issuer (or --oidc-jwks-url / --oidc-introspection-url)",
        ));
    };
    if outbound {
        return Err(ConfigError::new(
            FLAG,
            "cannot be combined with --remote-auth/--remote-auth-bearer-token: the exchanged token is the upstream credential; remove the --remote-auth* flags",
        ));
    }
    let url = Url::parse(raw).map_err(|e| ConfigError::new(FLAG, format!("{raw:?} is not a valid URL ({e})")))?;
    // The exchange server is the operator's IdP, trusted as `--oidc-*`'s is.
    let policy = crate::oauth::http::UrlPolicy { allow_insecure: inbound.allow_insecure, block_internal: false };
    policy.check(&url).map_err(|why| {
        url_refused(
            FLAG,
            &why,
            Some(super::CONSENT_FLAG),
            "--token-exchange-client-id and --token-exchange-client-secret-file",
        )
    })?;
    let client_id = non_empty(&args.token_exchange_client_id).map(str::to_owned);
    let client_secret = resolve_secret(
        &args.token_exchange_client_secret,
        ("--token-exchange-client-secret-file", &args.token_exchange_client_secret_file),
        env.var("TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET"),
    )?;
    if client_secret.is_some() && client_id.is_none() {
        return Err(ConfigError::new(
            "--token-exchange-client-id",
            "is required when a token exchange client secret is given: the proxy authenticates as that client",
        ));
    }
    let header = match non_empty(&args.token_exchange_header_name) {
        None => http::header::AUTHORIZATION,
        Some(name) => {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new(
                    "--token-exchange-header-name",
                    format!("{name:?} is not an HTTP field name; use letters, digits and '-', e.g. X-Upstream-Token"),
                )
            })?;
            if RESERVED_HEADERS.contains(&header.as_str()) || crate::proxy::headers::is_disguised(name) {
                return Err(ConfigError::new(
                    "--token-exchange-header-name",
                    format!("{name:?} is a field the proxy manages; choose another name, e.g. X-Upstream-Token"),
                ));
            }
            header
        }
    };
    Ok(Some(ExchangeConfig {
        url,
        client_id,
        client_secret,
        audience: non_empty(&args.token_exchange_audience).map(str::to_owned),
        scopes: args
            .token_exchange_scopes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        subject_token_type: subject_token_type(args.token_exchange_subject_token_type.as_deref())?,
        header,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    const OIDC: [&str; 4] = ["--target-uri", "http://127.0.0.1:9/mcp", "--oidc-issuer", "https://idp.example"];

    fn exchange(args: &[&str], env: &[(&'static str, &'static str)]) -> Result<ExchangeConfig, ConfigError> {
        let all = [&OIDC[..], &["--token-exchange-url", "https://sts.example/token"], args].concat();
        config(&all, env).map(|c| c.exchange.expect("configured"))
    }

    #[test]
    fn defaults_are_toolhives() {
        let c = exchange(&[], &[]).unwrap();
        assert_eq!(c.subject_token_type, ACCESS_TOKEN);
        assert_eq!(c.header, http::header::AUTHORIZATION);
        assert!(c.client_id.is_none() && c.client_secret.is_none() && c.audience.is_none() && c.scopes.is_empty());
        assert!(config(&OIDC, &[]).unwrap().exchange.is_none(), "not configured: nothing");
    }

    #[test]
    fn a_forwarded_field_may_not_be_the_exchanged_tokens() {
        for (flags, field) in [
            (&["--remote-forward-headers", "authorization=Bearer fixed"][..], "authorization"),
            (
                &["--token-exchange-header-name", "X-Upstream-Token", "--remote-forward-headers", "x-upstream-token=v"],
                "x-upstream-token",
            ),
        ] {
            let err = exchange(flags, &[]).unwrap_err().to_string();
            assert!(err.contains("--remote-forward-headers") && err.contains(field), "{err}");
            assert!(!err.contains("fixed"), "no value in the error: {err}");
        }
        let other = exchange(&["--remote-forward-headers", "x-api-key=k"], &[]);
        assert!(other.is_ok(), "another field is fine: {other:?}");
    }

    #[test]
    fn token_types_short_and_urn() {
        for (given, want) in
            [("access_token", ACCESS_TOKEN), ("id_token", ID_TOKEN), ("jwt", JWT), (ID_TOKEN, ID_TOKEN)]
        {
            let c = exchange(&["--token-exchange-subject-token-type", given], &[]).unwrap();
            assert_eq!(c.subject_token_type, want, "{given}");
        }
        let err = exchange(&["--token-exchange-subject-token-type", "saml2"], &[]).unwrap_err();
        assert_eq!(err.flag, "--token-exchange-subject-token-type");
    }

    #[test]
    fn secret_precedence_and_redaction() {
        use secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("thv-exchange-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, " from-file\n").unwrap();
        let file = file.to_str().unwrap();
        let env = [("TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET", "from-env")];
        let secret = |args: &[&str]| {
            let all = [&["--token-exchange-client-id", "proxy"][..], args].concat();
            let c = exchange(&all, &env).unwrap();
            assert!(!format!("{c:?}").contains("from-"), "{c:?}");
            c.client_secret.map(|s| s.expose_secret().to_owned())
        };
        assert_eq!(secret(&["--token-exchange-client-secret", "from-flag"]).as_deref(), Some("from-flag"));
        assert_eq!(secret(&["--token-exchange-client-secret-file", file]).as_deref(), Some("from-file"));
        assert_eq!(secret(&[]).as_deref(), Some("from-env"));
        let err = exchange(&["--token-exchange-client-secret", "s"], &[]).unwrap_err();
        assert_eq!(err.flag, "--token-exchange-client-id");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cross_group_rules() {
        let err = config(&["--target-uri", "http://x", "--token-exchange-url", "https://sts.example/token"], &[])
            .unwrap_err();
        assert_eq!(err.flag, "--token-exchange-url");
        assert!(err.problem.contains("--oidc-issuer"), "{err}");
        let err = exchange(&["--remote-auth-bearer-token", "t"], &[]).unwrap_err();
        assert!(err.problem.contains("--remote-auth"), "{err}");
        let err = exchange(&["--remote-auth"], &[]).unwrap_err();
        assert_eq!(err.flag, "--token-exchange-url");
        let err = config(&[&OIDC[..], &["--token-exchange-audience", "a"]].concat(), &[]).unwrap_err();
        assert_eq!(err.flag, "--token-exchange-audience");
        let err =
            config(&[&OIDC[..], &["--token-exchange-url", "http://sts.example/token"]].concat(), &[]).unwrap_err();
        assert!(err.problem.contains("https") && err.problem.contains("--oidc-allow-insecure"), "{err}");
        assert!(config(&[&OIDC[..], &["--token-exchange-url", "http://127.0.0.1:1/token"]].concat(), &[]).is_ok());
    }

    #[test]
    fn header_names() {
        let c = exchange(&["--token-exchange-header-name", "X-Upstream-Token"], &[]).unwrap();
        assert_eq!(c.header.as_str(), "x-upstream-token");
        for bad in ["Host", "content-length", "X_Forwarded_For", "bad name", "Mcp-Session-Id"] {
            let err = exchange(&["--token-exchange-header-name", bad], &[]).unwrap_err();
            assert_eq!(err.flag, "--token-exchange-header-name", "{bad}");
        }
        let c = exchange(&["--token-exchange-scopes", "a,b", "--token-exchange-scopes", "c"], &[]).unwrap();
        assert_eq!(c.scopes, ["a", "b", "c"]);
    }
}
