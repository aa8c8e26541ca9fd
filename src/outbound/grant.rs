//! Logins without a browser: the client credentials grant (RFC 6749 §4.4; MCP SEP-1046),
//! the JWT bearer grant (RFC 7523 §2.1; MCP SEP-1933 workload identity) and the ID-JAG
//! grant (an RFC 8693 exchange at the enterprise IdP, then a JWT bearer grant; MCP
//! SEP-990), after the same discovery as the browser login, and whether the authorization
//! server offers the grant at all (RFC 8414 §2 `grant_types_supported`).
//!
//! Such a token is obtained again the same way when it is about to expire (unless the
//! server gave a refresh token, which `tokens` uses), or after the MCP server's 401
//! (through the state machine in `mod.rs`, as a new login). A refused grant is reported
//! with the server's own `error` and `error_description` and not retried here, and never
//! replaced by another grant: the next attempt is a later login, after
//! [`RELOGIN_BACKOFF`](super::RELOGIN_BACKOFF).

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{IdJagConfig, Unattended, read_assertion};
use crate::oauth::id_jag::{IdJagRequest, exchange_id_token_for_id_jag};
use crate::oauth::token::{ClientAuth, TokenEndpoint, TokenError};
use crate::outbound::client::Client;
use crate::outbound::dpop::Credential;
use crate::outbound::scope::select_scope;
use crate::outbound::tokens::Active;
use crate::outbound::{LoginError, OAuth, Session, State, Unavailable};
use crate::telemetry::metrics::Count;

impl OAuth {
    /// Refuses a grant the authorization server's metadata does not list (when it lists
    /// any: RFC 8414 §2 makes the field optional).
    pub(super) fn check_grant_supported(&self, session: &Session) -> Result<(), LoginError> {
        let Some(server) = session.discovery.as_ref().map(|d| &d.server) else { return Ok(()) };
        let Some(listed) = &server.metadata.grant_types_supported else { return Ok(()) };
        let grant = self.cfg.grant.wire_name();
        if listed.iter().any(|g| g == grant) {
            return Ok(());
        }
        Err(LoginError::GrantNotSupported { grant, server: server.name(), listed: listed.join(", ") })
    }

    /// Refuses a client assertion key the server's metadata says it does not accept: the
    /// method `private_key_jwt`, or the key's algorithm (each checked only where listed).
    pub(super) fn check_client_auth_supported(&self, session: &Session) -> Result<(), LoginError> {
        let (Some(key), Some(server)) = (&self.cfg.assertion_key, session.discovery.as_ref().map(|d| &d.server)) else {
            return Ok(());
        };
        let meta = &server.metadata;
        let alg = key.alg().name();
        let refused = |listed: Option<&Vec<String>>, wanted: &str| {
            listed.filter(|l| !l.iter().any(|x| x == wanted)).map(|l| l.join(", "))
        };
        let refusal = refused(meta.token_endpoint_auth_methods_supported.as_ref(), "private_key_jwt")
            .map(|listed| ("private_key_jwt client authentication".to_owned(), listed))
            .or_else(|| {
                refused(meta.token_endpoint_auth_signing_alg_values_supported.as_ref(), alg)
                    .map(|listed| (format!("client assertions signed with {alg}"), listed))
            });
        match refusal {
            None => Ok(()),
            Some((what, listed)) => Err(LoginError::ClientAuthNotSupported { server: server.name(), what, listed }),
        }
    }

    /// Gets a token with `grant` (the configured one); no browser, no callback listener.
    pub(super) async fn unattended_login(
        &self,
        session: &mut Session,
        step_up: Option<&str>,
        grant: &Unattended,
    ) -> Result<(), LoginError> {
        // A JWT bearer grant may come from a client that does not authenticate and has no
        // id (RFC 7523 §3.1); the others have a configured client (config checks it).
        let client = self.configured_client(session).unwrap_or(Client {
            id: String::new(),
            auth: ClientAuth::None,
            secret: None,
            method: None,
            registered_redirect: None,
        });
        session.client = Some(client.clone());
        let discovery = session.discovery.as_ref().ok_or(LoginError::NotRequired)?;
        let scope = select_scope(&self.cfg.scopes, discovery, session.scope.as_deref(), step_up);
        let endpoint = self.token_endpoint(session, &client);
        let published = self.resource(session);
        let resource = Some(published.as_str());
        let tokens = match grant {
            Unattended::ClientCredentials => {
                endpoint.client_credentials(&self.http, scope.as_deref(), resource).await?
            }
            Unattended::JwtBearer { assertion_file } => {
                // Read now, not at startup: a projected token file is rotated in place.
                let assertion = read_assertion(assertion_file)?;
                endpoint.jwt_bearer(&self.http, &assertion, scope.as_deref(), resource).await?
            }
            Unattended::IdJag(idp) => {
                let server = &discovery.server;
                // The ID-JAG is for the authorization server, named by its issuer; with a
                // token URL alone there is none, and the token endpoint stands in.
                let audience = server.issuer.clone().unwrap_or_else(|| server.token_endpoint.to_string());
                let want = IdJagRequest {
                    audience: &audience,
                    resource: &published,
                    scope: scope.as_deref(),
                    client_id: &client.id,
                };
                let jag = self.id_jag(idp, &want).await?;
                endpoint.jwt_bearer(&self.http, &jag, scope.as_deref(), resource).await?
            }
        };
        session.scope = scope;
        self.activate(session, &tokens);
        self.count(Count::OutboundLogin { ok: true });
        info!(grant = self.cfg.grant.wire_name(), client_auth = ?client.auth, "obtained a token for the MCP server");
        Ok(())
    }

    /// The user's ID token (read now: it is renewed outside the proxy) exchanged at the
    /// enterprise IdP for an ID-JAG that is checked against `want`.
    async fn id_jag(&self, idp: &IdJagConfig, want: &IdJagRequest<'_>) -> Result<secrecy::SecretString, LoginError> {
        let id_token = read_assertion(&idp.subject_token_file)?;
        // No metadata is fetched for the IdP: with a secret, client_secret_basic, which
        // every server supports (RFC 6749 §2.3.1); without, a public client.
        let endpoint = TokenEndpoint {
            url: idp.token_url.clone(),
            client_id: idp.client_id.clone(),
            auth: ClientAuth::from_method(None, idp.client_secret.clone()),
            // The ID-JAG is no access token: only the final grant is bound (RFC 9449 §5).
            dpop: None,
        };
        let jag = exchange_id_token_for_id_jag(&endpoint, &self.http, &id_token, want).await?;
        info!(idp = %crate::oauth::http::redact(&idp.token_url), "the identity provider issued an ID-JAG");
        Ok(jag)
    }

    /// The token in use (`active`, from a grant without a browser and with no refresh
    /// token) is about to expire: get a new one the same way, once for all waiting
    /// requests. An unreachable server keeps the current token while it lasts; a refusal
    /// ends it (the login has failed, and says why).
    pub(super) async fn renew_unattended(
        &self,
        active: &Arc<Active>,
        grant: &Unattended,
    ) -> Result<Credential, Unavailable> {
        let mut session = self.session.lock().await;
        match &**self.state.load() {
            State::Ready(current) if !Arc::ptr_eq(current, active) => return Ok(current.credential()),
            State::Ready(_) => {}
            State::Pending | State::NotRequired | State::Failed { .. } => return Err(self.unavailable()),
        }
        match self.unattended_login(&mut session, None, grant).await {
            Ok(()) => match &**self.state.load() {
                State::Ready(current) => Ok(current.credential()),
                _ => Err(self.unavailable()),
            },
            Err(LoginError::Token(TokenError::Fetch(e))) if e.is_transient() && !active.expired() => {
                warn!(error = %e, "getting a new token failed; using the current one while it lasts");
                Ok(active.credential())
            }
            Err(e) => {
                self.fail(e);
                Err(self.unavailable())
            }
        }
    }
}
