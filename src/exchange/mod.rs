//! The proxy trading each validated user's token for one the target accepts (RFC 8693
//! token exchange of the incoming token; ToolHive's `--token-exchange-*`), so that every
//! user reaches the target as themselves.
//!
//! The protocol is [`crate::oauth::exchange`]'s; this module owns the policy around it:
//! - exchanged tokens are cached by the SHA-256 digest of the subject token (the cache
//!   never holds a usable incoming token), until the earlier of the two ends: the incoming
//!   token's verdict ([`Identity::until`]: its `exp`, or introspection's reuse limit) and
//!   the exchanged token's `expires_in`, less [`EARLY`];
//! - one exchange per subject at a time ([`flight`]): concurrent requests with the same
//!   token wait for it; other users' requests never do;
//! - failures are classified for the answer: the exchange server refused the subject
//!   ([`Failure::Refused`], 401) or could not be used ([`Failure::Unavailable`], 503).
//!
//! Secrets (the client secret, subject and exchanged tokens) never reach a log line or a
//! `Debug` output: the exchanged token is kept as a sensitive header value.

mod flight;

use std::fmt;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use tracing::{debug, error, warn};

use crate::config::ExchangeConfig;
use crate::inbound::Identity;
use crate::inbound::cache::{digest, now_secs};
use crate::oauth::exchange::{ACCESS_TOKEN, ExchangeRequest, exchange};
use crate::oauth::http::{ClientSetupError, ControlClient};
use crate::oauth::token::{ClientAuth, TokenEndpoint, TokenError};
use flight::Flights;

/// Most exchanged tokens kept.
const CACHE_CAPACITY: usize = 10_000;
/// An exchanged token is not used in its last seconds (golang.org/x/oauth2's
/// `expiryDelta`, which ToolHive's token source has too): clocks differ, and a request
/// takes time to arrive.
pub(crate) const EARLY: Duration = Duration::from_secs(10);

/// Why a token could not be exchanged. The texts carry the server's error code and
/// description, never a token.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Failure {
    /// The exchange server refused the subject token (`invalid_grant`, `invalid_target`,
    /// …): the client's token will not do.
    #[error("the token exchange server refused the token: {0}")]
    Refused(String),
    /// The exchange server could not be reached, failed, answered unusably, or refused the
    /// proxy's own credentials: not the client's fault.
    #[error("the token exchange server is unavailable: {0}")]
    Unavailable(String),
}

/// Exchanges incoming tokens, and keeps the results.
pub(crate) struct Exchanger {
    endpoint: TokenEndpoint,
    http: ControlClient,
    subject_token_type: &'static str,
    audience: Option<String>,
    scope: Option<String>,
    header: HeaderName,
    cache: Flights<HeaderValue, Failure>,
}

impl fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchanger").field("endpoint", &self.endpoint).field("header", &self.header).finish()
    }
}

impl Exchanger {
    /// The exchanger for `config`; `ca_bundle` is `--oidc-ca-bundle` (the exchange server
    /// is the operator's IdP).
    pub(crate) fn new(config: &ExchangeConfig, ca_bundle: Option<&[u8]>) -> Result<Exchanger, ClientSetupError> {
        let auth = ClientAuth::from_method(None, config.client_secret.clone());
        Ok(Exchanger {
            endpoint: TokenEndpoint {
                url: config.url.clone(),
                client_id: config.client_id.clone().unwrap_or_default(),
                auth,
                dpop: None,
            },
            http: ControlClient::new(ca_bundle)?,
            subject_token_type: config.subject_token_type,
            audience: config.audience.clone(),
            scope: (!config.scopes.is_empty()).then(|| config.scopes.join(" ")),
            header: config.header.clone(),
            cache: Flights::new(CACHE_CAPACITY),
        })
    }

    /// The field the exchanged token goes in (`Authorization` unless
    /// `--token-exchange-header-name` says otherwise).
    pub(crate) fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The value for [`Self::header`] (`Bearer <exchanged token>`) standing for `subject`,
    /// the bearer token `who` was authenticated by.
    pub(crate) async fn exchanged(&self, subject: &str, who: &Identity) -> Result<HeaderValue, Failure> {
        self.cache.get(digest(subject), || self.exchange(subject, who)).await
    }

    /// One exchange, and until when its result may be reused.
    async fn exchange(&self, subject: &str, who: &Identity) -> Result<(HeaderValue, Instant), Failure> {
        let request = ExchangeRequest {
            subject_token: subject,
            subject_token_type: self.subject_token_type,
            // What the target gets as a bearer token.
            requested_token_type: ACCESS_TOKEN,
            audience: self.audience.as_deref(),
            resource: None,
            scope: self.scope.as_deref(),
        };
        let tokens = exchange(&self.endpoint, &self.http, &request).await.map_err(|e| {
            let failure = classify(&e);
            match &failure {
                Failure::Refused(_) => debug!(subject = %who.subject, error = %e, "token exchange refused"),
                Failure::Unavailable(_) if is_client_refused(&e) => error!(error = %e, "the token exchange server refuses the proxy's credentials; check --token-exchange-client-id and --token-exchange-client-secret (or its file / TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET)"),
                Failure::Unavailable(_) => warn!(error = %e, "token exchange failed"),
            }
            failure
        })?;
        let mut value = HeaderValue::try_from(format!("Bearer {}", tokens.access_token.expose_secret()))
            .map_err(|_| Failure::Unavailable("the exchanged token is not usable in an HTTP field".to_owned()))?;
        value.set_sensitive(true);
        debug!(subject = %who.subject, "token exchanged");
        Ok((value, reuse_until(Instant::now(), now_secs(), who.until, tokens.expires_at)))
    }
}

/// Until when an exchanged token is reused: the earlier of the subject's end (`until`, a
/// Unix second; `now_unix` is the same moment as `now`) and the exchanged token's
/// (`expires_at`, when the server said), less [`EARLY`] for the latter.
fn reuse_until(now: Instant, now_unix: u64, until: u64, expires_at: Option<Instant>) -> Instant {
    let subject_end = now + Duration::from_secs(until.saturating_sub(now_unix));
    match expires_at {
        Some(at) => subject_end.min(at.checked_sub(EARLY).unwrap_or(now).max(now)),
        None => subject_end,
    }
}

/// A refusal of the proxy as a client (its credentials or its permission to exchange).
fn is_client_refused(e: &TokenError) -> bool {
    matches!(e, TokenError::Refused { error, .. } if error == "invalid_client" || error == "unauthorized_client")
}

/// Whose problem a failed exchange is.
fn classify(e: &TokenError) -> Failure {
    match e {
        TokenError::Refused { status, .. } if *status >= 500 => Failure::Unavailable(e.to_string()),
        TokenError::Refused { .. } if is_client_refused(e) => Failure::Unavailable(e.to_string()),
        TokenError::Refused { error, .. } => Failure::Refused(error.clone()),
        TokenError::NoAccessToken
        | TokenError::UnsupportedTokenType(_)
        | TokenError::Incomplete(_)
        | TokenError::Fetch(_) => Failure::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::http::FetchError;

    #[test]
    fn reuse_ends_at_the_earlier_expiry() {
        let now = Instant::now();
        let unix = 1_000_000;
        // The subject ends first.
        assert_eq!(
            reuse_until(now, unix, unix + 30, Some(now + Duration::from_secs(3600))),
            now + Duration::from_secs(30)
        );
        // The exchanged token ends first (less the early margin).
        assert_eq!(
            reuse_until(now, unix, unix + 3600, Some(now + Duration::from_secs(300))),
            now + Duration::from_secs(290)
        );
        // No expires_in: the subject's end.
        assert_eq!(reuse_until(now, unix, unix + 45, None), now + Duration::from_secs(45));
        // Either already over: not reused at all.
        assert_eq!(reuse_until(now, unix, unix - 5, None), now);
        assert_eq!(reuse_until(now, unix, unix + 60, Some(now + Duration::from_secs(5))), now);
    }

    #[test]
    fn failures_are_the_clients_or_the_servers() {
        let refused = |status, error: &str| TokenError::Refused { status, error: error.to_owned(), description: None };
        assert!(matches!(classify(&refused(400, "invalid_grant")), Failure::Refused(e) if e == "invalid_grant"));
        assert!(matches!(classify(&refused(400, "invalid_target")), Failure::Refused(_)));
        assert!(matches!(classify(&refused(500, "server_error")), Failure::Unavailable(_)));
        assert!(matches!(classify(&refused(503, "HTTP 503")), Failure::Unavailable(_)));
        assert!(matches!(classify(&refused(401, "invalid_client")), Failure::Unavailable(_)), "the proxy's fault");
        assert!(matches!(classify(&refused(400, "unauthorized_client")), Failure::Unavailable(_)));
        assert!(matches!(classify(&TokenError::NoAccessToken), Failure::Unavailable(_)));
        assert!(matches!(classify(&TokenError::Incomplete("issued_token_type")), Failure::Unavailable(_)));
        let garbage = TokenError::Fetch(FetchError::BadAnswer { url: "u".into(), what: "invalid JSON".into() });
        assert!(matches!(classify(&garbage), Failure::Unavailable(_)));
    }
}
