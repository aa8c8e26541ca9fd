//! The proxy as an OAuth 2.1 client of the target (MCP 2025-11-25 Authorization): it logs
//! in once, holds the tokens, and puts `Authorization: Bearer` on every forwarded request
//! (`Authorization: DPoP` and a proof when the token is DPoP-bound, RFC 9449).
//!
//! This file owns the public handle, [`Outbound`], and its state machine (`Pending` →
//! `Ready` | `NotRequired` | `Failed`): which token requests get, single-flight renewal
//! after a 401, and a new login when the grant is dead instead of failing forever
//! (ToolHive #6556). The parts:
//!
//! - [`retry`]: one request sent with the proxy's token: on 401 one renewal and one retry,
//!   on `403 insufficient_scope` step-up, at most [`MAX_STEP_UPS`](retry::MAX_STEP_UPS) times per request
//!   ([`Outbound::send`]).
//! - `login`: discovery ([`discover`](mod@discover)), a client (`client`), then
//!   authorization code with PKCE through the loopback [`callback`] and the user's
//!   [`browser`]. The proxy already listens meanwhile; requests get 503 with `Retry-After`
//!   until the login completes.
//! - `grant`: the grants without a browser (client credentials, JWT bearer): the first
//!   token and a new one before expiry, the same way.
//! - `device`: the device flow (RFC 8628): a code shown on stderr, approved at a browser
//!   anywhere, while the proxy polls; requests get 503 meanwhile, as during the browser
//!   login.
//! - `tokens`: the token in use and its refresh before expiry (RFC 6749 §6).
//! - `dpop`: whether a login binds its tokens to a key (`--remote-auth-dpop`), and the
//!   proof each request to the target carries then (RFC 9449 §7.1, nonces §9).
//! - `scope`: which scope to ask for, and the step-up union.
//! - `resume` and [`store`]: the refresh token and registered client survive restarts.
//! - `error`: why setup or a login failed.
//!
//! The hot path reads the current token lock-free; only refreshes and logins take the
//! single-flight lock.
//!
//! With telemetry on, the lifecycle is counted where the state changes, never on the hot
//! path: logins by outcome (a success in `login`, a failure wherever the state becomes
//! `Failed`), refresh-token grants in `tokens` and `resume`, and the seconds left on the
//! token in use each time it changes ([`OAuth::set_state`]).

pub(crate) mod browser;
pub(crate) mod callback;
mod client;
mod device;
pub(crate) mod discover;
mod dpop;
mod error;
mod grant;
mod login;
mod resume;
pub(crate) mod retry;
mod scope;
pub(crate) mod store;
mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tracing::{error, info};
use url::Url;

use crate::config::{OAuthConfig, OAuthEndpoints, OutboundConfig, Target};
use crate::oauth::http::{ControlClient, UrlPolicy};
use crate::telemetry::metrics::{Count, Metrics};
use client::Client;
use discover::{Challenged, Discovery, discover, remote_policy};
use dpop::Credential;
use store::Store;
use tokens::Active;

pub(crate) use error::{LoginError, OutboundSetupError};
pub(crate) use retry::SendError;

/// After a failed login, wait this long before a request may start another one.
const RELOGIN_BACKOFF: Duration = Duration::from_secs(30);

/// Why no token can be sent right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// A login is under way (the user has to finish it in the browser).
    Pending,
    /// The last login failed; another starts on a later request.
    Failed(Arc<str>),
    /// The authorization server is briefly unavailable; the login is kept and the refresh
    /// is tried again on a later request.
    Retry,
}

/// What a client is told while there is no token: one text for `thv proxy`'s 503 and the
/// stdio bridge's JSON-RPC error.
impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Pending => f.write_str(
                "the proxy is logging in to the MCP server; finish the login in the browser (the URL, and a device login's code, are in the proxy's log) and retry",
            ),
            Unavailable::Failed(reason) => write!(
                f,
                "the proxy could not log in to the MCP server ({reason}); it will try again on a later request"
            ),
            Unavailable::Retry => f.write_str(
                "the authorization server of the MCP server is unavailable; the proxy keeps its login and retries",
            ),
        }
    }
}

enum State {
    /// A login (or the first discovery) is under way.
    Pending,
    /// The target does not need a token.
    NotRequired,
    Ready(Arc<Active>),
    Failed {
        reason: Arc<str>,
        at: Instant,
    },
}

/// What the single-flight lock protects: what was learned so far.
#[derive(Default)]
struct Session {
    discovery: Option<Discovery>,
    client: Option<Client>,
    /// The scope last requested (the base of a step-up union).
    scope: Option<String>,
    /// This login's DPoP key and the servers' nonces, with DPoP on (RFC 9449).
    dpop: Option<Arc<crate::oauth::dpop::Dpop>>,
}

/// Outgoing authentication.
#[derive(Clone)]
pub(crate) struct Outbound {
    inner: Arc<Inner>,
}

enum Inner {
    Static(HeaderValue),
    OAuth(Box<OAuth>),
}

struct OAuth {
    cfg: OAuthConfig,
    http: ControlClient,
    /// For URLs the target names.
    policy: UrlPolicy,
    target: Url,
    browser: Option<String>,
    store: Option<Store>,
    /// Changed only through [`OAuth::set_state`], which keeps the expiry gauge in step.
    state: ArcSwap<State>,
    session: Mutex<Session>,
    /// Where the login lifecycle is counted; `None` when telemetry is off.
    metrics: Option<Arc<Metrics>>,
}

impl Outbound {
    /// Builds outgoing auth for `target`; an OAuth login counts its lifecycle in `metrics`
    /// (a static token has none to count).
    pub(crate) fn new(
        config: &OutboundConfig,
        target: &Target,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Outbound, OutboundSetupError> {
        let inner = match config {
            OutboundConfig::Bearer(token) => {
                let mut header = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                    .map_err(OutboundSetupError::BearerHeader)?;
                header.set_sensitive(true);
                Inner::Static(header)
            }
            OutboundConfig::OAuth(cfg) => {
                let target_url = Url::parse(&target.display())?;
                let policy = remote_policy(&target_url);
                // A public target's metadata may not steer the proxy into the user's
                // network, by address or by DNS name.
                let discovering = matches!(cfg.endpoints, OAuthEndpoints::Discover);
                let http = if policy.block_internal && discovering {
                    ControlClient::untrusted()
                } else {
                    ControlClient::new(None)
                }?;
                Inner::OAuth(Box::new(OAuth {
                    http,
                    policy,
                    target: target_url,
                    browser: cfg.browser.clone(),
                    // A grant without a browser gets a token again at any time: nothing
                    // is kept on disk for it.
                    store: if cfg.grant.unattended().is_some() { None } else { cfg.store_dir.clone().map(Store::new) },
                    state: ArcSwap::from_pointee(State::Pending),
                    session: Mutex::new(Session::default()),
                    cfg: (**cfg).clone(),
                    metrics,
                }))
            }
        };
        Ok(Outbound { inner: Arc::new(inner) })
    }

    /// Starts the first login in the background (OAuth only).
    pub(crate) fn start(&self) {
        if let Inner::OAuth(_) = &*self.inner {
            let this = self.clone();
            tokio::spawn(async move {
                let Inner::OAuth(oauth) = &*this.inner else { return };
                let mut session = oauth.session.lock().await;
                oauth.first_login(&mut session).await;
            });
        }
    }

    /// The `Authorization` value for the next upstream request; `Ok(None)` when the target
    /// needs none. Refreshes first when the token is about to expire.
    pub(crate) async fn authorization(&self) -> Result<Option<HeaderValue>, Unavailable> {
        self.credential().await.map(|c| c.map(|c| c.header))
    }

    /// [`Outbound::authorization`] with what a DPoP-bound token's proofs need.
    async fn credential(&self) -> Result<Option<Credential>, Unavailable> {
        let oauth = match &*self.inner {
            Inner::Static(header) => return Ok(Some(Credential::bearer(header.clone()))),
            Inner::OAuth(oauth) => oauth,
        };
        let active = match &**oauth.state.load() {
            State::Ready(active) => active.clone(),
            State::NotRequired => return Ok(None),
            State::Pending => return Err(Unavailable::Pending),
            State::Failed { reason, at } => {
                if at.elapsed() >= RELOGIN_BACKOFF {
                    self.relogin_in_background();
                    return Err(Unavailable::Pending);
                }
                return Err(Unavailable::Failed(reason.clone()));
            }
        };
        if !active.expiring() {
            return Ok(Some(active.credential()));
        }
        if active.refresh_token.is_none() {
            if let Some(grant) = oauth.cfg.grant.unattended() {
                return oauth.renew_unattended(&active, grant).await.map(Some);
            }
            return Ok(Some(active.credential()));
        }
        let mut session = oauth.session.lock().await;
        match &**oauth.state.load() {
            State::Ready(current) if !Arc::ptr_eq(current, &active) => return Ok(Some(current.credential())),
            _ => {}
        }
        match Box::pin(oauth.refresh(&mut session, &active)).await {
            Ok(fresh) => Ok(Some(fresh.credential())),
            // Only a dead grant needs the user again; an IdP outage does not throw the login
            // away: the current token is used while it lasts, then requests wait.
            Err(e) if e.needs_login() => {
                drop(session);
                self.relogin_in_background();
                Err(Unavailable::Pending)
            }
            Err(_) if !active.expired() => Ok(Some(active.credential())),
            Err(_) => Err(Unavailable::Retry),
        }
    }

    /// After the target answered 401 (with `challenged`) to a request sent with `used`:
    /// refresh (or log in again); `Ok` means a retry with the new token makes sense.
    async fn recover_unauthorized(
        &self,
        used: Option<&HeaderValue>,
        challenged: Challenged,
    ) -> Result<(), Unavailable> {
        let Inner::OAuth(oauth) = &*self.inner else { return Err(Unavailable::Retry) };
        oauth.recover_unauthorized(used, challenged).await.then_some(()).ok_or_else(|| oauth.unavailable())
    }

    /// After `403 insufficient_scope` with `scope`: log in again asking for the union of
    /// the scopes so far and `scope` (MCP 2026-07-28 §Step-Up).
    async fn step_up(&self, scope: &str) -> Result<(), Unavailable> {
        let Inner::OAuth(oauth) = &*self.inner else { return Err(Unavailable::Retry) };
        let mut session = oauth.session.lock().await;
        oauth.interactive(&mut session, Some(scope)).await.then_some(()).ok_or_else(|| oauth.unavailable())
    }

    /// For `/health`.
    pub(crate) fn status(&self) -> &'static str {
        match &*self.inner {
            Inner::Static(_) => "static-token",
            Inner::OAuth(oauth) => match &**oauth.state.load() {
                State::Pending => "login-pending",
                State::NotRequired => "not-required",
                State::Ready(_) => "authenticated",
                State::Failed { .. } => "login-failed",
            },
        }
    }

    fn relogin_in_background(&self) {
        let Inner::OAuth(oauth) = &*self.inner else { return };
        oauth.set_state(State::Pending);
        let this = self.clone();
        tokio::spawn(async move {
            let Inner::OAuth(oauth) = &*this.inner else { return };
            let mut session = oauth.session.lock().await;
            oauth.interactive(&mut session, None).await;
        });
    }
}

impl OAuth {
    /// See [`Outbound::recover_unauthorized`]; true if a retry makes sense.
    async fn recover_unauthorized(&self, used: Option<&HeaderValue>, challenged: Challenged) -> bool {
        let mut session = self.session.lock().await;
        // A challenge that names metadata may mean the metadata changed (RFC 9728 §5.2):
        // discover again, and if the authorization server changed, forget the client
        // registered with the old one (MCP 2026-07-28 §Authorization Server Binding).
        if session.discovery.is_none() || challenged.resource_metadata.is_some() {
            let previous = session.discovery.as_ref().and_then(|d| d.server.issuer.clone());
            let first = session.discovery.is_none();
            if first {
                self.set_state(State::Pending);
            }
            match discover(
                &self.http,
                self.policy,
                &self.cfg.endpoints,
                &self.target,
                &self.cfg.resource,
                Some(challenged),
            )
            .await
            {
                Ok(d) => {
                    if !first && d.server.issuer != previous {
                        info!(issuer = ?d.server.issuer, "the MCP server moved to another authorization server; registering again");
                        session.client = None;
                        session.scope = None;
                        self.set_state(State::Pending);
                    }
                    session.discovery = Some(d);
                }
                Err(e) => {
                    self.fail(e);
                    return false;
                }
            }
            if first && self.resume_saved(&mut session).await {
                return true;
            }
        }
        if let State::Ready(current) = &**self.state.load()
            && used.is_none_or(|u| u != current.header)
        {
            return true; // someone else already refreshed
        }
        if let State::Ready(current) = &**self.state.load()
            && current.refresh_token.is_some()
        {
            match self.refresh(&mut session, &current.clone()).await {
                Ok(_) => return true,
                Err(e) if !e.needs_login() => return false, // the IdP is down: keep the login
                Err(_) => {}
            }
        }
        self.interactive(&mut session, None).await
    }

    /// Why requests cannot get a token right now.
    fn unavailable(&self) -> Unavailable {
        match &**self.state.load() {
            State::Pending => Unavailable::Pending,
            State::Failed { reason, .. } => Unavailable::Failed(reason.clone()),
            State::Ready(_) | State::NotRequired => Unavailable::Retry,
        }
    }

    /// A login failed (at any step, discovery included): requests are told why.
    fn fail(&self, e: LoginError) {
        error!("logging in to the MCP server failed: {e}");
        self.count(Count::OutboundLogin { ok: false });
        self.set_state(State::Failed { reason: Arc::from(e.to_string()), at: Instant::now() });
    }

    /// Makes `state` current, with the token-expiry gauge in step: the seconds left on a
    /// new token, none once requests get no token (or one without a known expiry).
    fn set_state(&self, state: State) {
        if let Some(metrics) = &self.metrics {
            let left = match &state {
                State::Ready(active) => active.seconds_left(),
                State::Pending | State::NotRequired | State::Failed { .. } => None,
            };
            metrics.set_token_expiry(left);
        }
        self.state.store(Arc::new(state));
    }

    /// Counts a lifecycle event when telemetry is on.
    fn count(&self, what: Count) {
        if let Some(metrics) = &self.metrics {
            metrics.count(what);
        }
    }
}
