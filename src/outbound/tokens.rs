//! The token in use: the `Authorization` value put on requests, when to refresh it (before
//! expiry, RFC 6749 §6), the refresh itself (counted, with telemetry on), and making a new
//! token current (and saved).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

use crate::oauth::dpop::Dpop;
use crate::oauth::token::{TokenError, Tokens};
use crate::outbound::dpop::{Bound, Credential};
use crate::outbound::{OAuth, Session, State};
use crate::telemetry::metrics::Count;

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
    /// A DPoP-bound token's key and `ath` (RFC 9449 §7.1); `None` for a bearer token.
    bound: Option<Arc<Bound>>,
    pub(super) refresh_token: Option<SecretString>,
    expires_at: Option<Instant>,
    /// When to refresh: [`REFRESH_MARGIN`] before expiry, or a quarter of the lifetime for
    /// short-lived tokens (a 5 s token refreshed 30 s early would refresh on every request).
    refresh_at: Option<Instant>,
}

impl Active {
    /// The token of `tokens`; bound to `dpop` (the login's key, for requests to `target`)
    /// when the server said it is a DPoP token.
    pub(super) fn new(tokens: &Tokens, dpop: Option<&Arc<Dpop>>, target: &url::Url) -> Active {
        let token = tokens.access_token.expose_secret();
        let bound = dpop.filter(|_| tokens.dpop_bound).map(|d| Arc::new(Bound::new(d.clone(), token, target)));
        let scheme = if bound.is_some() { "DPoP" } else { "Bearer" };
        let mut header = HeaderValue::try_from(format!("{scheme} {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        // Sensitive: shown as "Sensitive" by Debug, so no log line can carry it.
        header.set_sensitive(true);
        let refresh_at = tokens.expires_at.map(|at| {
            let lifetime = at.saturating_duration_since(Instant::now());
            at - REFRESH_MARGIN.min(lifetime / 4)
        });
        Active { header, bound, refresh_token: tokens.refresh_token.clone(), expires_at: tokens.expires_at, refresh_at }
    }

    /// What a request carries.
    pub(super) fn credential(&self) -> Credential {
        Credential { header: self.header.clone(), bound: self.bound.clone() }
    }

    pub(super) fn expiring(&self) -> bool {
        self.refresh_at.is_some_and(|at| at <= Instant::now())
    }

    pub(super) fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Instant::now())
    }

    /// Seconds until the token expires, if the server said when.
    pub(super) fn seconds_left(&self) -> Option<f64> {
        self.expires_at.map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64())
    }
}

impl OAuth {
    /// Refreshes; on `invalid_grant` forgets the saved login. Updates the state.
    pub(super) async fn refresh(&self, session: &mut Session, active: &Active) -> Result<Arc<Active>, RefreshError> {
        let (Some(client), Some(refresh)) = (session.client.clone(), active.refresh_token.as_ref()) else {
            return Err(RefreshError::NoRefreshToken);
        };
        let endpoint = self.token_endpoint(session, &client);
        let refreshed = endpoint.refresh(&self.http, refresh, Some(&self.resource(session))).await;
        self.count(Count::OutboundRefresh { ok: refreshed.is_ok() });
        match refreshed {
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
        let active = Arc::new(Active::new(tokens, session.dpop.as_ref(), &self.target));
        // Saved before any request may use it: a login that answered a request survives a
        // stop that follows at once.
        self.save(session, tokens);
        self.set_state(State::Ready(active.clone()));
        active
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use url::Url;

    use super::*;
    use crate::config::{Config, NoEnv};
    use crate::oauth::token::ClientAuth;
    use crate::outbound::client::Client;
    use crate::outbound::discover::discover;
    use crate::outbound::{Inner, LoginError, Outbound};
    use crate::telemetry::data::Point;
    use crate::telemetry::metrics::Metrics;

    /// A token endpoint on 127.0.0.1 that gives one answer, then is gone.
    async fn answering_once(status: u16, body: &'static str) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // The form is small: one read holds the whole request.
            let _ = stream.read(&mut [0u8; 8192]).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
        });
        url
    }

    fn reading(metrics: &Metrics, family: &str, result: Option<&str>) -> Option<Point> {
        let snapshot = metrics.snapshot(&[]);
        let family = snapshot.families.into_iter().find(|f| f.name == family).unwrap();
        let series = family
            .series
            .into_iter()
            .find(|s| result.is_none_or(|r| s.labels.iter().any(|(key, word)| *key == "result" && word == r)));
        series.map(|s| s.point)
    }

    fn count(metrics: &Metrics, family: &str, result: &str) -> u64 {
        match reading(metrics, family, Some(result)) {
            Some(Point::Count(n)) => n,
            other => panic!("{family}: {other:?}"),
        }
    }

    fn expiry(metrics: &Metrics) -> Option<f64> {
        match reading(metrics, "thv_outbound_token_expiry", None) {
            Some(Point::Gauge(seconds)) => Some(seconds),
            None => None,
            other => panic!("{other:?}"),
        }
    }

    /// Refresh grants are counted by outcome, failed logins too, and the expiry gauge
    /// follows the token in use: set by a new token, kept by a failed refresh (the token
    /// is still used), gone when requests get no token.
    #[tokio::test]
    async fn the_token_lifecycle_is_counted() {
        let token_url =
            answering_once(200, r#"{"access_token": "new", "token_type": "Bearer", "expires_in": 300}"#).await;
        let args = [
            "thv",
            "proxy",
            "s",
            "--target-uri",
            "http://127.0.0.1:1/mcp",
            "--remote-auth",
            "--remote-auth-authorize-url",
            "http://127.0.0.1:1/authorize",
            "--remote-auth-token-url",
            token_url.as_str(),
            "--remote-auth-client-id",
            "c",
        ];
        let config = Config::from_invocation(&crate::cli::Invocation::parse_from(args).unwrap(), &NoEnv).unwrap();
        let metrics = Arc::new(Metrics::new("s", "streamable-http"));
        let outbound = Outbound::new(config.outbound.as_ref().unwrap(), &config.target, Some(metrics.clone())).unwrap();
        let Inner::OAuth(oauth) = &*outbound.inner else { panic!("an OAuth login") };
        let mut session = oauth.session.lock().await;
        let found = discover(&oauth.http, oauth.policy, &oauth.cfg.endpoints, &oauth.target, &oauth.cfg.resource, None);
        session.discovery = Some(found.await.unwrap());
        session.client = Some(Client {
            id: "c".into(),
            auth: ClientAuth::None,
            secret: None,
            method: None,
            registered_redirect: None,
        });
        assert_eq!(expiry(&metrics), None, "no token yet");

        let tokens = |expires_in: Option<u64>| Tokens {
            access_token: SecretString::from("old"),
            refresh_token: Some(SecretString::from("refresh")),
            expires_at: expires_in.map(|s| Instant::now() + Duration::from_secs(s)),
            scope: None,
            dpop_bound: false,
        };
        let first = oauth.activate(&session, &tokens(Some(120)));
        assert!(expiry(&metrics).is_some_and(|s| (119.0..=120.0).contains(&s)));

        let fresh = oauth.refresh(&mut session, &first).await.expect("the endpoint's token");
        assert_eq!(count(&metrics, "thv_outbound_refreshes", "ok"), 1);
        assert!(expiry(&metrics).is_some_and(|s| (299.0..=300.0).contains(&s)), "the new token's");
        // The endpoint is gone now: the refresh fails and the token in use stays.
        assert!(oauth.refresh(&mut session, &fresh).await.is_err());
        assert_eq!(count(&metrics, "thv_outbound_refreshes", "error"), 1);
        assert!(expiry(&metrics).is_some_and(|s| s > 290.0), "still the token in use");

        oauth.fail(LoginError::NoRegistration);
        assert_eq!((count(&metrics, "thv_outbound_logins", "error"), expiry(&metrics)), (1, None));
        oauth.activate(&session, &tokens(None));
        assert_eq!(expiry(&metrics), None, "a token without a known expiry");
        assert_eq!(count(&metrics, "thv_outbound_logins", "ok"), 0, "activating is no login");
    }
}
