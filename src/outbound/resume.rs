//! The login across restarts, as the state machine sees it: resume a saved login with its
//! refresh token (RFC 6749 §6) at startup, save the login after every new token, forget a
//! dead refresh token but keep the registered client. The file format and its safety rules
//! are [`store`](super::store)'s.

use std::sync::Arc;

use secrecy::SecretString;
use tracing::{info, warn};

use crate::oauth::dpop::{Dpop, DpopKey, expose_stored};
use crate::oauth::token::{ClientAuth, Tokens};
use crate::outbound::client::Client;
use crate::outbound::store::{self, Saved};
use crate::outbound::{OAuth, Session};
use crate::telemetry::metrics::Count;

impl OAuth {
    /// The key of this login in the store: the authorization server, and the authorization
    /// request's extra parameters when there are any (`--remote-auth-authorize-param`): a
    /// token issued for one `audience` is not one for another, so each set is a login of
    /// its own (mcp-remote's rule). Without extras the key is the server alone, as before.
    pub(super) fn server_key(&self, session: &Session) -> Option<String> {
        let server = &session.discovery.as_ref()?.server;
        let key = server.issuer.clone().unwrap_or_else(|| server.token_endpoint.to_string());
        let extras = &self.cfg.authorize.params;
        if extras.is_empty() {
            return Some(key);
        }
        let params = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(extras).finish();
        Some(format!("{key} {params}"))
    }

    /// Uses a saved refresh token; true if that gave a token. A saved registered client is
    /// kept for the next login even when its refresh token is dead.
    pub(super) async fn resume_saved(&self, session: &mut Session) -> bool {
        self.try_resume_saved(session).await.unwrap_or(false)
    }

    async fn try_resume_saved(&self, session: &mut Session) -> Option<bool> {
        let (Some(store), Some(server)) = (&self.store, self.server_key(session)) else { return None };
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
        // A DPoP login's refresh token is bound to its key (RFC 9449 §5): without the key
        // it cannot be used, and a new login (with a new key) follows.
        session.dpop = match self.dpop_wanted(session) {
            Ok(false) => None,
            Ok(true) => match saved.dpop_key.as_deref().and_then(DpopKey::from_stored) {
                Some(key) => Some(Arc::new(Dpop::new(key))),
                None => {
                    info!("the saved login has no DPoP key; logging in again");
                    return Some(false);
                }
            },
            Err(_) => return Some(false),
        };
        let endpoint = self.token_endpoint(session, &client);
        // A resumed login is a refresh-token grant, and counted as one (not as a login).
        let refreshed = endpoint.refresh(&self.http, &refresh, Some(&self.resource(session))).await;
        self.count(Count::OutboundRefresh { ok: refreshed.is_ok() });
        match refreshed {
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
    pub(super) fn forget_refresh_token(&self, session: &Session) {
        if let (Some(store), Some(server)) = (&self.store, self.server_key(session))
            && let Some(mut saved) = store.load(&server, &self.cfg.resource, self.cfg.client_id.as_deref())
        {
            saved.refresh_token = None;
            store.save(&saved, self.cfg.client_id.as_deref());
        }
    }

    /// Saves the login that just produced `tokens`, if there is a store.
    pub(super) fn save(&self, session: &Session, tokens: &Tokens) {
        if let (Some(store), Some(server), Some(client)) = (&self.store, self.server_key(session), &session.client) {
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
                    dpop_key: session.dpop.as_ref().map(|d| expose_stored(d.key())),
                },
                self.cfg.client_id.as_deref(),
            );
        }
    }
}
