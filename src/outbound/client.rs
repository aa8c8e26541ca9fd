//! Which OAuth client the proxy logs in as (MCP 2025-11-25 §Client Registration
//! Approaches), in this order: the pre-registered client (`--remote-auth-client-id`), a
//! Client ID Metadata Document (`--remote-auth-client-metadata-url`, where the server
//! supports it), an earlier registration, or a new RFC 7591 Dynamic Client Registration;
//! and how it authenticates at the token endpoint (RFC 6749 §2.3.1, RFC 7591 §2
//! `token_endpoint_auth_method`), or with a signed assertion (`private_key_jwt`, RFC 7523
//! §2.2) when `--remote-auth-client-assertion-key-file` gives a key.

use secrecy::SecretString;
use tracing::info;

use crate::oauth::registration::register;
use crate::oauth::token::{ClientAuth, TokenEndpoint};
use crate::outbound::discover::Discovery;
use crate::outbound::scope::select_scope;
use crate::outbound::{LoginError, OAuth, Session};

/// A client as the authorization server knows it.
#[derive(Clone)]
pub(super) struct Client {
    pub(super) id: String,
    pub(super) auth: ClientAuth,
    pub(super) secret: Option<SecretString>,
    pub(super) method: Option<String>,
    /// The redirect URI it was registered with (dynamic registration only).
    pub(super) registered_redirect: Option<String>,
}

impl OAuth {
    /// The client to log in with: pre-registered, a Client ID Metadata Document, an earlier
    /// registration, or a new RFC 7591 registration, in that order.
    pub(super) async fn client(&self, session: &mut Session, redirect_uri: &str) -> Result<Client, LoginError> {
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
            return Err(LoginError::NoRegistration);
        };
        let scope = select_scope(&self.cfg.scopes, discovery, None, None);
        let reg =
            register(&self.http, &endpoint, redirect_uri, scope.as_deref()).await.map_err(LoginError::Registration)?;
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
    /// authorization server supports: basic, else post, with a secret; none without; a
    /// signed assertion with a key.
    pub(super) fn configured_client(&self, session: &Session) -> Option<Client> {
        let id = self.cfg.client_id.clone()?;
        if let Some(key) = &self.cfg.assertion_key {
            // The audience is the issuer when known (the identifier RFC 7523bis makes the
            // only valid one, and what MCP's SEP-1046 servers check), else the token
            // endpoint (RFC 7523 §3 item 3: "the token endpoint URL … MAY be used").
            let server = session.discovery.as_ref().map(|d| &d.server);
            let audience = server
                .and_then(|s| s.issuer.clone())
                .or_else(|| server.map(|s| s.token_endpoint.to_string()))
                .unwrap_or_else(|| self.target.to_string());
            return Some(Client {
                id,
                auth: ClientAuth::PrivateKeyJwt { key: key.clone(), audience },
                secret: None,
                method: Some("private_key_jwt".into()),
                registered_redirect: None,
            });
        }
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

    /// The token endpoint as `client` uses it (the target itself before any discovery).
    pub(super) fn token_endpoint(&self, session: &Session, client: &Client) -> TokenEndpoint {
        let url =
            session.discovery.as_ref().map(|d| d.server.token_endpoint.clone()).unwrap_or_else(|| self.target.clone());
        TokenEndpoint { url, client_id: client.id.clone(), auth: client.auth.clone(), dpop: session.dpop.clone() }
    }

    /// The RFC 8707 `resource` of this session's authorization and token requests
    /// ([`Discovery::resource`]).
    pub(super) fn resource(&self, session: &Session) -> String {
        Discovery::resource(session.discovery.as_ref(), &self.cfg.resource).to_owned()
    }
}
