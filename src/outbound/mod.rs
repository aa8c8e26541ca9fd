//! The proxy as an OAuth 2.1 client of the target (MCP 2025-11-25 Authorization): it logs
//! in once, holds the tokens, and puts `Authorization: Bearer` on every forwarded request.
//!
//! - **Login** ([`Outbound::start`]): discovery ([`discover`]), a client (pre-registered,
//!   a Client ID Metadata Document, or RFC 7591 registration), then authorization code with
//!   PKCE S256, `state`, RFC 8707 `resource` and RFC 9207 `iss` checks, through the loopback
//!   [`callback`] and the user's [`browser`]. The proxy already listens meanwhile; requests
//!   get 503 with `Retry-After` until the login completes.
//! - **Tokens for the life of the process**: refreshed before expiry, single-flight; an
//!   upstream 401 leads to one refresh and one retry; a dead refresh token
//!   (`invalid_grant`) leads to a new login instead of failing forever (ToolHive #6556);
//!   `403 insufficient_scope` leads to step-up with the union of scopes, at most
//!   [`MAX_STEP_UPS`] times per request.
//! - **Persistence** ([`store`]): the refresh token and registered client survive restarts.
//!
//! The hot path reads the current token lock-free; only refreshes and logins take the
//! single-flight lock.

pub mod browser;
pub mod callback;
pub mod discover;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tracing::{error, info, warn};
use url::Url;

use crate::config::{OAuthConfig, OutboundConfig, Target};
use crate::oauth::http::ControlClient;
use crate::oauth::http::UrlPolicy;
use crate::oauth::pkce::{Pkce, random_token, verifier};
use crate::oauth::registration::register;
use crate::oauth::token::{ClientAuth, TokenEndpoint, TokenError, Tokens};
use callback::{Callback, CallbackError, Expectation};
use discover::{Challenged, Discovery, discover, remote_policy};
use store::{Saved, Store};

/// Most re-authorizations for more scope on behalf of one request. With the login that
/// got the first token, an operation costs at most three authorizations (MCP 2025-11-25
/// §Step-Up Authorization Flow: retry "no more than a few times"; the conformance suite's
/// `auth/scope-retry-limit` allows three).
pub const MAX_STEP_UPS: usize = 2;
/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// After a failed login, wait this long before a request may start another one.
const RELOGIN_BACKOFF: Duration = Duration::from_secs(30);

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The target did not ask for authentication.
    #[error("the MCP server did not ask for authentication")]
    NotRequired,
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("{0}")]
    NoClient(String),
    #[error("client registration failed: {0}")]
    Registration(String),
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Why no token can be sent right now.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// A login is under way (the user has to finish it in the browser).
    Pending,
    /// The last login failed; another starts on a later request.
    Failed(Arc<str>),
    /// The authorization server is briefly unavailable; the login is kept and the refresh
    /// is tried again on a later request.
    Retry,
}

/// The token in use, ready to be put on requests.
struct Active {
    header: HeaderValue,
    refresh_token: Option<SecretString>,
    expires_at: Option<Instant>,
    /// When to refresh: [`REFRESH_MARGIN`] before expiry, or a quarter of the lifetime for
    /// short-lived tokens (a 5 s token refreshed 30 s early would refresh on every request).
    refresh_at: Option<Instant>,
}

impl Active {
    fn new(tokens: &Tokens) -> Active {
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

    fn expiring(&self) -> bool {
        self.refresh_at.is_some_and(|at| at <= Instant::now())
    }

    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Instant::now())
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

/// A client as the authorization server knows it.
#[derive(Clone)]
struct Client {
    id: String,
    auth: ClientAuth,
    secret: Option<SecretString>,
    method: Option<String>,
    /// The redirect URI it was registered with (dynamic registration only).
    registered_redirect: Option<String>,
}

/// What the single-flight lock protects: what was learned so far.
#[derive(Default)]
struct Session {
    discovery: Option<Discovery>,
    client: Option<Client>,
    /// The scope last requested (the base of a step-up union).
    scope: Option<String>,
}

/// Outgoing authentication.
#[derive(Clone)]
pub struct Outbound {
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
    state: ArcSwap<State>,
    session: Mutex<Session>,
}

impl Outbound {
    /// Builds outgoing auth for `target`.
    pub fn new(config: &OutboundConfig, target: &Target) -> Result<Outbound, String> {
        let inner = match config {
            OutboundConfig::Bearer(token) => {
                let mut header = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| "the static bearer token contains characters not allowed in a header".to_owned())?;
                header.set_sensitive(true);
                Inner::Static(header)
            }
            OutboundConfig::OAuth(cfg) => {
                let target_url = Url::parse(&target.display()).map_err(|e| e.to_string())?;
                let policy = remote_policy(&target_url);
                // A public target's metadata may not steer the proxy into the user's
                // network, by address or by DNS name.
                let discovering = matches!(cfg.endpoints, crate::config::OAuthEndpoints::Discover);
                let http = if policy.block_internal && discovering {
                    ControlClient::untrusted()?
                } else {
                    ControlClient::new(None)?
                };
                Inner::OAuth(Box::new(OAuth {
                    http,
                    policy,
                    target: target_url,
                    browser: cfg.browser.clone(),
                    store: cfg.store_dir.clone().map(Store::new),
                    state: ArcSwap::from_pointee(State::Pending),
                    session: Mutex::new(Session::default()),
                    cfg: (**cfg).clone(),
                }))
            }
        };
        Ok(Outbound { inner: Arc::new(inner) })
    }

    /// Starts the first login in the background (OAuth only).
    pub fn start(&self) {
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
    pub async fn authorization(&self) -> Result<Option<HeaderValue>, Unavailable> {
        let oauth = match &*self.inner {
            Inner::Static(header) => return Ok(Some(header.clone())),
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
        if !active.expiring() || active.refresh_token.is_none() {
            return Ok(Some(active.header.clone()));
        }
        let mut session = oauth.session.lock().await;
        match &**oauth.state.load() {
            State::Ready(current) if !Arc::ptr_eq(current, &active) => return Ok(Some(current.header.clone())),
            _ => {}
        }
        match Box::pin(oauth.refresh(&mut session, &active)).await {
            Ok(fresh) => Ok(Some(fresh.header.clone())),
            // Only a dead grant needs the user again; an IdP outage does not throw the login
            // away: the current token is used while it lasts, then requests wait.
            Err(e) if e.is_invalid_grant() => {
                drop(session);
                self.relogin_in_background();
                Err(Unavailable::Pending)
            }
            Err(_) if !active.expired() => Ok(Some(active.header.clone())),
            Err(_) => Err(Unavailable::Retry),
        }
    }

    /// After the target answered 401 (with `challenged`) to a request sent with `used`:
    /// refresh (or log in again); `Ok` means a retry with the new token makes sense.
    pub async fn recover_unauthorized(
        &self,
        used: Option<&HeaderValue>,
        challenged: Challenged,
    ) -> Result<(), Unavailable> {
        let Inner::OAuth(oauth) = &*self.inner else { return Err(Unavailable::Retry) };
        oauth.recover_unauthorized(used, challenged).await.then_some(()).ok_or_else(|| oauth.unavailable())
    }

    /// After `403 insufficient_scope` with `scope`: log in again asking for the union of
    /// the scopes so far and `scope` (MCP 2026-07-28 §Step-Up).
    pub async fn step_up(&self, scope: &str) -> Result<(), Unavailable> {
        let Inner::OAuth(oauth) = &*self.inner else { return Err(Unavailable::Retry) };
        let mut session = oauth.session.lock().await;
        oauth.interactive(&mut session, Some(scope)).await.then_some(()).ok_or_else(|| oauth.unavailable())
    }

    /// For `/health`.
    pub fn status(&self) -> &'static str {
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

    /// Whether this is OAuth (tokens can be renewed), not a static token.
    pub fn renewable(&self) -> bool {
        matches!(&*self.inner, Inner::OAuth(_))
    }

    fn relogin_in_background(&self) {
        let Inner::OAuth(oauth) = &*self.inner else { return };
        oauth.state.store(Arc::new(State::Pending));
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
                self.state.store(Arc::new(State::Pending));
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
                        self.state.store(Arc::new(State::Pending));
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
                Err(e) if !e.is_invalid_grant() => return false, // the IdP is down: keep the login
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

    /// Discovery, then a saved login if there is one, else the browser.
    async fn first_login(&self, session: &mut Session) {
        match self.ensure_discovery(session).await {
            Ok(()) => {}
            Err(LoginError::NotRequired) => {
                info!("the MCP server did not ask for authentication; forwarding without a token until it does");
                self.state.store(Arc::new(State::NotRequired));
                return;
            }
            Err(e) => return self.fail(e),
        }
        if self.resume_saved(session).await {
            return;
        }
        self.interactive(session, None).await;
    }

    async fn ensure_discovery(&self, session: &mut Session) -> Result<(), LoginError> {
        if session.discovery.is_none() {
            session.discovery = Some(
                discover(&self.http, self.policy, &self.cfg.endpoints, &self.target, &self.cfg.resource, None).await?,
            );
        }
        Ok(())
    }

    /// The key of this login in the store.
    fn server_key(session: &Session) -> Option<String> {
        let server = &session.discovery.as_ref()?.server;
        Some(server.issuer.clone().unwrap_or_else(|| server.token_endpoint.to_string()))
    }

    /// Uses a saved refresh token; true if that gave a token. A saved registered client is
    /// kept for the next login even when its refresh token is dead.
    async fn resume_saved(&self, session: &mut Session) -> bool {
        self.try_resume_saved(session).await.unwrap_or(false)
    }

    async fn try_resume_saved(&self, session: &mut Session) -> Option<bool> {
        let (Some(store), Some(server)) = (&self.store, Self::server_key(session)) else { return None };
        let saved = store.load(&server, &self.cfg.resource, self.cfg.client_id.as_deref())?;
        // A configured client authenticates with the configured secret (the user may have
        // rotated it); only a registered client's own secret comes from the store.
        let client = match &self.cfg.client_id {
            Some(_) => self.configured_client(session)?,
            None => {
                let secret = saved.client_secret.clone().map(SecretString::from);
                Client {
                    id: saved.client_id.clone(),
                    auth: ClientAuth::from_method(saved.token_endpoint_auth_method.as_deref(), secret.clone()),
                    secret,
                    method: saved.token_endpoint_auth_method.clone(),
                    registered_redirect: saved.redirect_uri.clone(),
                }
            }
        };
        session.client = Some(client.clone());
        let refresh = saved.refresh_token.clone().map(SecretString::from)?;
        let endpoint = self.token_endpoint(session, &client);
        match endpoint.refresh(&self.http, &refresh, Some(&self.cfg.resource)).await {
            Ok(tokens) => {
                info!(store = %store.dir().display(), "resumed the saved login; no browser needed");
                session.scope = saved.scope.clone();
                self.activate(session, &tokens);
                Some(true)
            }
            Err(e) => {
                warn!(error = %e, "the saved login is no longer valid; logging in again");
                self.forget_refresh_token(session);
                Some(false)
            }
        }
    }

    /// Drops the saved refresh token but keeps the registered client.
    fn forget_refresh_token(&self, session: &Session) {
        if let (Some(store), Some(server)) = (&self.store, Self::server_key(session))
            && let Some(mut saved) = store.load(&server, &self.cfg.resource, self.cfg.client_id.as_deref())
        {
            saved.refresh_token = None;
            store.save(&saved, self.cfg.client_id.as_deref());
        }
    }

    /// Refreshes; on `invalid_grant` forgets the saved login. Updates the state.
    async fn refresh(&self, session: &mut Session, active: &Active) -> Result<Arc<Active>, TokenError> {
        let (Some(client), Some(refresh)) = (session.client.clone(), active.refresh_token.as_ref()) else {
            return Err(TokenError::Refused {
                error: "invalid_grant".to_owned(),
                description: Some("no refresh token".to_owned()),
            });
        };
        let endpoint = self.token_endpoint(session, &client);
        match endpoint.refresh(&self.http, refresh, Some(&self.cfg.resource)).await {
            Ok(tokens) => Ok(self.activate(session, &tokens)),
            Err(e) => {
                warn!(error = %e, "refreshing the access token failed");
                if e.is_invalid_grant() {
                    self.forget_refresh_token(session);
                }
                Err(e)
            }
        }
    }

    /// A full browser login; true if it produced a token. `step_up` adds scopes.
    async fn interactive(&self, session: &mut Session, step_up: Option<&str>) -> bool {
        self.state.store(Arc::new(State::Pending));
        match self.login(session, step_up).await {
            Ok(()) => true,
            Err(LoginError::NotRequired) => {
                self.state.store(Arc::new(State::NotRequired));
                false
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&self, e: LoginError) {
        error!("logging in to the MCP server failed: {e}");
        self.state.store(Arc::new(State::Failed { reason: Arc::from(e.to_string()), at: Instant::now() }));
    }

    async fn login(&self, session: &mut Session, step_up: Option<&str>) -> Result<(), LoginError> {
        self.ensure_discovery(session).await?;
        let pre_registered = self.cfg.client_id.is_some();
        let callback = Callback::bind(self.cfg.callback_port, pre_registered).await?;
        let client = self.client(session, &callback.redirect_uri).await?;
        // Kept even if this login fails: the next attempt reuses the registration.
        session.client = Some(client.clone());
        let discovery = session.discovery.as_ref().ok_or(LoginError::NotRequired)?;
        let server = &discovery.server;
        let scope = select_scope(&self.cfg.scopes, discovery, session.scope.as_deref(), step_up);
        let redirect_uri = callback.redirect_uri.clone();
        let pkce = Pkce::generate();
        let state = random_token();
        let mut url = server.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &client.id)
                .append_pair("redirect_uri", &callback.redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &pkce.challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", &self.cfg.resource);
            if let Some(scope) = &scope {
                q.append_pair("scope", scope);
                // OIDC Core §11: an OpenID provider grants offline_access (a refresh token)
                // only with explicit consent.
                if scope.split(' ').any(|s| s == "offline_access") {
                    q.append_pair("prompt", "consent");
                }
            }
        }
        eprintln!("Waiting for the login to the MCP server (up to {:?})…", self.cfg.timeout);
        browser::open(&url, self.cfg.skip_browser, self.browser.as_deref());
        let expect = Expectation {
            state,
            issuer: server.issuer.clone(),
            iss_required: server.metadata.authorization_response_iss_parameter_supported == Some(true),
        };
        let code = callback.wait(expect, self.cfg.timeout).await?;
        let endpoint = self.token_endpoint(session, &client);
        let tokens =
            endpoint.exchange_code(&self.http, &code, verifier(&pkce), &redirect_uri, Some(&self.cfg.resource)).await?;
        session.scope = scope;
        self.activate(session, &tokens);
        info!("logged in to the MCP server");
        Ok(())
    }

    /// The client to log in with: pre-registered, a Client ID Metadata Document, an earlier
    /// registration, or a new RFC 7591 registration, in that order (MCP 2025-11-25 §Client
    /// Registration Approaches).
    async fn client(&self, session: &mut Session, redirect_uri: &str) -> Result<Client, LoginError> {
        let discovery = session.discovery.as_ref().ok_or(LoginError::NotRequired)?;
        let meta = &discovery.server.metadata;
        if let Some(client) = self.configured_client(session) {
            return Ok(client);
        }
        if let Some(url) = &self.cfg.client_metadata_url
            && meta.client_id_metadata_document_supported == Some(true)
        {
            return Ok(Client {
                id: url.clone(),
                auth: ClientAuth::None,
                secret: None,
                method: Some("none".into()),
                registered_redirect: None,
            });
        }
        if let Some(existing) = &session.client
            && existing.registered_redirect.as_deref().is_none_or(|r| r == redirect_uri)
        {
            return Ok(existing.clone());
        }
        let Some(endpoint) = discovery.server.registration_endpoint.clone() else {
            return Err(LoginError::NoClient(
                "the authorization server offers no dynamic client registration; register a client with it and pass --remote-auth-client-id (and --remote-auth-client-secret-file for a confidential client)".to_owned(),
            ));
        };
        let scope = select_scope(&self.cfg.scopes, discovery, None, None);
        let reg = register(&self.http, &endpoint, redirect_uri, scope.as_deref())
            .await
            .map_err(|e| LoginError::Registration(e.to_string()))?;
        info!(client_id = %reg.client_id, "registered a client with the authorization server");
        Ok(Client {
            id: reg.client_id,
            auth: ClientAuth::from_method(reg.token_endpoint_auth_method.as_deref(), reg.client_secret.clone()),
            secret: reg.client_secret,
            method: reg.token_endpoint_auth_method,
            registered_redirect: Some(redirect_uri.to_owned()),
        })
    }

    /// The pre-registered client (`--remote-auth-client-id`), authenticating as the
    /// authorization server supports: basic, else post, with a secret; none without.
    fn configured_client(&self, session: &Session) -> Option<Client> {
        let id = self.cfg.client_id.clone()?;
        let secret = self.cfg.client_secret.clone();
        let supported = session
            .discovery
            .as_ref()
            .and_then(|d| d.server.metadata.token_endpoint_auth_methods_supported.as_deref())
            .unwrap_or_default();
        let method = match &secret {
            None => "none",
            Some(_) if supported.is_empty() || supported.iter().any(|m| m == "client_secret_basic") => {
                "client_secret_basic"
            }
            Some(_) if supported.iter().any(|m| m == "client_secret_post") => "client_secret_post",
            Some(_) => "client_secret_basic",
        };
        Some(Client {
            id,
            auth: ClientAuth::from_method(Some(method), secret.clone()),
            secret,
            method: Some(method.to_owned()),
            registered_redirect: None,
        })
    }

    fn token_endpoint(&self, session: &Session, client: &Client) -> TokenEndpoint {
        let url =
            session.discovery.as_ref().map(|d| d.server.token_endpoint.clone()).unwrap_or_else(|| self.target.clone());
        TokenEndpoint { url, client_id: client.id.clone(), auth: client.auth.clone() }
    }

    /// Makes `tokens` current and saves the login.
    fn activate(&self, session: &Session, tokens: &Tokens) -> Arc<Active> {
        let active = Arc::new(Active::new(tokens));
        self.state.store(Arc::new(State::Ready(active.clone())));
        if let (Some(store), Some(server), Some(client)) = (&self.store, Self::server_key(session), &session.client) {
            store.save(
                &Saved {
                    server,
                    resource: self.cfg.resource.clone(),
                    client_id: client.id.clone(),
                    // A configured secret stays where the user keeps it (flag, file, env).
                    client_secret: if self.cfg.client_id.is_some() { None } else { store::expose(&client.secret) },
                    token_endpoint_auth_method: client.method.clone(),
                    redirect_uri: client.registered_redirect.clone(),
                    refresh_token: store::expose(&tokens.refresh_token),
                    scope: session.scope.clone().or_else(|| tokens.scope.clone()),
                },
                self.cfg.client_id.as_deref(),
            );
        }
        active
    }
}

/// MCP 2025-11-25 §Scope Selection Strategy: explicit scopes; else the challenge's; else the
/// resource's `scopes_supported`; else none. A step-up asks for the union of what was asked
/// before and what the challenge names. `offline_access` is added only where the server
/// lists it (MCP 2026-07-28 §Refresh Tokens).
fn select_scope(
    explicit: &[String],
    discovery: &Discovery,
    previous: Option<&str>,
    step_up: Option<&str>,
) -> Option<String> {
    let base: Option<String> = if !explicit.is_empty() {
        Some(explicit.join(" "))
    } else {
        discovery.challenge_scope.clone().or_else(|| discovery.resource_scopes.as_ref().map(|s| s.join(" ")))
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in previous.or(base.as_deref()).into_iter().chain(step_up).flat_map(str::split_whitespace) {
        if !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_owned());
        }
    }
    let offline =
        discovery.server.metadata.scopes_supported.as_ref().is_some_and(|s| s.iter().any(|x| x == "offline_access"));
    if offline && !scopes.is_empty() && !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".to_owned());
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::metadata::AuthorizationServerMetadata;
    use discover::AuthServer;

    fn discovery(challenge: Option<&str>, resource: Option<&[&str]>, offline: bool) -> Discovery {
        let url = Url::parse("https://as.example/x").unwrap();
        Discovery {
            server: AuthServer {
                issuer: Some("https://as.example".into()),
                metadata: AuthorizationServerMetadata {
                    scopes_supported: offline.then(|| vec!["offline_access".to_owned()]),
                    ..Default::default()
                },
                authorization_endpoint: url.clone(),
                token_endpoint: url,
                registration_endpoint: None,
            },
            challenge_scope: challenge.map(str::to_owned),
            resource_scopes: resource.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            required: true,
        }
    }

    #[test]
    fn scope_selection_follows_the_mcp_order() {
        let d = discovery(Some("a b"), Some(&["c"]), false);
        assert_eq!(select_scope(&["x".into()], &d, None, None).as_deref(), Some("x"));
        assert_eq!(select_scope(&[], &d, None, None).as_deref(), Some("a b"), "the challenge is authoritative");
        let d = discovery(None, Some(&["c", "d"]), false);
        assert_eq!(select_scope(&[], &d, None, None).as_deref(), Some("c d"));
        let d = discovery(None, None, false);
        assert_eq!(select_scope(&[], &d, None, None), None, "no scope parameter when nothing defines one");
        assert_eq!(
            select_scope(&[], &d, Some("a b"), Some("b c")).as_deref(),
            Some("a b c"),
            "step-up asks for the union"
        );
        let d = discovery(Some("a"), None, true);
        assert_eq!(select_scope(&[], &d, None, None).as_deref(), Some("a offline_access"));
    }
}
