//! The token in use: the `Authorization` value put on requests, when to refresh it (before
//! expiry, RFC 6749 §6), the refresh itself, and making a new token current (and saved).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

use crate::oauth::token::{TokenError, Tokens};
use crate::outbound::{OAuth, Session, State};

/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Why a refresh gave no new token.
#[derive(Debug, thiserror::Error)]
pub(super) enum RefreshError {
    /// There is no refresh token (or no client to use it with): only a new login helps.
    #[error("no refresh token")]
    NoRefreshToken,
    /// The token endpoint refused or could not be asked.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl RefreshError {
    /// Whether the grant is dead, so the user has to log in again; otherwise the
    /// authorization server is only unavailable and the login is kept.
    pub(super) fn needs_login(&self) -> bool {
        match self {
            RefreshError::NoRefreshToken => true,
            RefreshError::Token(e) => e.is_invalid_grant(),
        }
    }
}

/// The token in use, ready to be put on requests.
pub(super) struct Active {
    pub(super) header: HeaderValue,
    pub(super) refresh_token: Option<SecretString>,
    expires_at: Option<Instant>,
    /// When to refresh: [`REFRESH_MARGIN`] before expiry, or a quarter of the lifetime for
    /// short-lived tokens (a 5 s token refreshed 30 s early would refresh on every request).
    refresh_at: Option<Instant>,
}

impl Active {
    pub(super) fn new(tokens: &Tokens) -> Active {
        let mut header = HeaderValue::try_from(format!("Bearer {}", tokens.access_token.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        // Sensitive: shown as "Sensitive" by Debug, so no log line can carry it.
        header.set_sensitive(true);
        let refresh_at = tokens.expires_at.map(|at| {
            let lifetime = at.saturating_duration_since(Instant::now());
            at - REFRESH_MARGIN.min(lifetime / 4)
        });
        Active { header, refresh_token: tokens.refresh_token.clone(), expires_at: tokens.expires_at, refresh_at }
    }

    pub(super) fn expiring(&self) -> bool {
        self.refresh_at.is_some_and(|at| at <= Instant::now())
    }

    pub(super) fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Instant::now())
    }
}

impl OAuth {
    /// Refreshes; on `invalid_grant` forgets the saved login. Updates the state.
    pub(super) async fn refresh(&self, session: &mut Session, active: &Active) -> Result<Arc<Active>, RefreshError> {
        let (Some(client), Some(refresh)) = (session.client.clone(), active.refresh_token.as_ref()) else {
            return Err(RefreshError::NoRefreshToken);
        };
        let endpoint = self.token_endpoint(session, &client);
        match endpoint.refresh(&self.http, refresh, Some(&self.cfg.resource)).await {
            Ok(tokens) => Ok(self.activate(session, &tokens)),
            Err(e) => {
                warn!(error = %e, "refreshing the access token failed");
                if e.is_invalid_grant() {
                    self.forget_refresh_token(session);
                }
                Err(e.into())
            }
        }
    }

    /// Makes `tokens` current and saves the login.
    pub(super) fn activate(&self, session: &Session, tokens: &Tokens) -> Arc<Active> {
        let active = Arc::new(Active::new(tokens));
        self.state.store(Arc::new(State::Ready(active.clone())));
        self.save(session, tokens);
        active
    }
}
