//! One login, start to finish (MCP 2025-11-25 Authorization; OAuth 2.1 §4.1): discovery
//! ([`discover`](super::discover)), a client ([`client`](super::client)), then the
//! authorization code grant with PKCE S256 (RFC 7636), `state`, RFC 8707 `resource` and
//! RFC 9207 `iss` checks (the request itself: [`crate::oauth::authorize`]), through the
//! loopback [`callback`](super::callback) (RFC 8252) and the user's
//! [`browser`](super::browser), and the code exchanged for tokens. The grants without a
//! browser ([`grant`](super::grant)) and the device flow ([`device`](super::device))
//! branch off after discovery.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Grant;
use crate::oauth::authorize::AuthorizeRequest;
use crate::oauth::pkce::{Pkce, random_token, verifier};
use crate::outbound::callback::{Callback, Expectation};
use crate::outbound::discover::{DiscoveryError, discover};
use crate::outbound::scope::select_scope;
use crate::outbound::store::LoginLock;
use crate::outbound::{LoginError, OAuth, Session, State, browser};
use crate::telemetry::metrics::Count;

/// How often a process waiting for another's login looks at the lock again.
const LOCK_POLL: Duration = Duration::from_millis(200);

impl OAuth {
    /// Discovery, then a saved login if there is one, else the browser.
    pub(super) async fn first_login(&self, session: &mut Session) {
        match self.ensure_discovery(session).await {
            Ok(()) => {}
            Err(LoginError::NotRequired) => {
                info!("the MCP server did not ask for authentication; forwarding without a token until it does");
                self.set_state(State::NotRequired);
                return;
            }
            Err(e) => return self.fail(e),
        }
        if self.resume_saved(session).await {
            return;
        }
        // Held through the login: another process waiting on it resumes the saved result.
        let (_lock, waited) = self.login_lock(session).await;
        if waited && self.resume_saved(session).await {
            return;
        }
        self.interactive(session, None).await;
    }

    /// Takes the store's lock for this login, waiting (bounded by
    /// `--remote-auth-timeout`) while another process holds it; true in the second place
    /// when it waited, so the other's login may be in the store now. Without a store, or
    /// when the lock cannot be had, the login goes ahead without it.
    async fn login_lock(&self, session: &Session) -> (Option<LoginLock>, bool) {
        let (Some(store), Some(server)) = (&self.store, self.server_key(session)) else { return (None, false) };
        let deadline = Instant::now() + self.cfg.timeout;
        let mut waited = false;
        loop {
            match store.try_lock(&server, &self.cfg.resource, self.cfg.client_id.as_deref(), self.cfg.timeout) {
                Ok(Some(lock)) => return (Some(lock), waited),
                Ok(None) if Instant::now() < deadline => {
                    if !waited {
                        self.set_state(State::Pending);
                        info!(store = %store.dir().display(), "another thv is logging in to this MCP server; waiting for its login");
                    }
                    waited = true;
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Ok(None) => {
                    warn!("another thv is still logging in after --remote-auth-timeout; logging in here too");
                    return (None, waited);
                }
                Err(e) => {
                    warn!(error = %e, "could not take the login lock in the token store; logging in without it");
                    return (None, waited);
                }
            }
        }
    }

    async fn ensure_discovery(&self, session: &mut Session) -> Result<(), LoginError> {
        if session.discovery.is_none() {
            session.discovery = Some(
                discover(&self.http, self.policy, &self.cfg.endpoints, &self.target, &self.cfg.resource, None).await?,
            );
        }
        Ok(())
    }

    /// A full login (at the browser, or with the configured grant when it needs none);
    /// true if it produced a token. `step_up` adds scopes.
    pub(super) async fn interactive(&self, session: &mut Session, step_up: Option<&str>) -> bool {
        self.set_state(State::Pending);
        match self.login(session, step_up).await {
            Ok(()) => true,
            Err(LoginError::NotRequired) => {
                self.set_state(State::NotRequired);
                false
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    async fn login(&self, session: &mut Session, step_up: Option<&str>) -> Result<(), LoginError> {
        self.ensure_discovery(session).await?;
        self.check_grant_supported(session)?;
        self.check_client_auth_supported(session)?;
        self.start_dpop(session)?;
        if let Some(grant) = self.cfg.grant.unattended() {
            return self.unattended_login(session, step_up, grant).await;
        }
        if self.cfg.grant == Grant::DeviceCode {
            return self.device_login(session, step_up).await;
        }
        let server = &session.discovery.as_ref().ok_or(LoginError::NotRequired)?.server;
        if server.no_pkce_s256 {
            let issuer = server.issuer.clone().unwrap_or_default();
            return Err(DiscoveryError::NoPkceS256 { issuer }.into());
        }
        let endpoint =
            server.authorization_endpoint.clone().ok_or(DiscoveryError::NoEndpoint("authorization_endpoint"))?;
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
        let resource = self.resource(session);
        let request = AuthorizeRequest {
            client_id: &client.id,
            redirect_uri: &callback.redirect_uri,
            state: &state,
            code_challenge: &pkce.challenge,
            resource: &resource,
            scope: scope.as_deref(),
        };
        let url = request.url(&endpoint, &self.cfg.authorize);
        eprintln!("Waiting for the login to the MCP server (up to {:?})…", self.cfg.timeout);
        browser::open(&url, self.cfg.skip_browser, self.browser.as_deref());
        let expect = Expectation {
            state,
            issuer: server.issuer.clone(),
            iss_required: server.metadata.authorization_response_iss_parameter_supported == Some(true),
        };
        let code = callback.wait(expect, self.cfg.timeout).await?;
        let endpoint = self.token_endpoint(session, &client);
        let tokens = endpoint.exchange_code(&self.http, &code, verifier(&pkce), &redirect_uri, Some(&resource)).await?;
        session.scope = scope;
        self.activate(session, &tokens);
        self.count(Count::OutboundLogin { ok: true });
        info!("logged in to the MCP server");
        Ok(())
    }
}
