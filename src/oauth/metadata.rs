//! Discovery documents: authorization server metadata (RFC 8414 §3, OpenID Connect
//! Discovery 1.0 §4) and protected resource metadata (RFC 9728 §3).
//!
//! The two AS specifications build the well-known URL differently for an issuer with a
//! path: RFC 8414 *inserts* `/.well-known/oauth-authorization-server` between host and
//! path, OIDC *appends* `/.well-known/openid-configuration`. URLs are tried in the order
//! MCP 2025-11-25 (Authorization §Authorization Server Metadata Discovery) prescribes. The
//! `issuer` in the document must equal the issuer the URL was built from (RFC 8414 §3.3,
//! OIDC Discovery §4.3); otherwise the document is not used.

use serde::Deserialize;
use url::Url;

use crate::oauth::http::{ControlClient, FetchError};

/// The fields of an authorization server's metadata that the proxy uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub(crate) authorization_endpoint: Option<String>,
    pub(crate) token_endpoint: Option<String>,
    pub(crate) registration_endpoint: Option<String>,
    /// RFC 8628 §4: where the device flow starts.
    pub(crate) device_authorization_endpoint: Option<String>,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) introspection_endpoint: Option<String>,
    pub(crate) scopes_supported: Option<Vec<String>>,
    pub(crate) code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 8414 §2; absent means the server did not say (not "none").
    pub(crate) grant_types_supported: Option<Vec<String>>,
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// RFC 8414 §2: the algorithms the token endpoint accepts for client assertions.
    pub(crate) token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// Client ID Metadata Documents (MCP 2025-11-25 §Client ID Metadata Documents).
    pub(crate) client_id_metadata_document_supported: Option<bool>,
    /// RFC 9207 §3.
    pub(crate) authorization_response_iss_parameter_supported: Option<bool>,
    /// RFC 9449 §5.1: the JWS algorithms the server accepts for DPoP proofs.
    pub(crate) dpop_signing_alg_values_supported: Option<Vec<String>>,
}

/// The fields of a protected resource's metadata the proxy uses (RFC 9728 §2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    pub(crate) scopes_supported: Option<Vec<String>>,
    /// RFC 9728 §2 (from RFC 9449 §5.2): the resource takes DPoP-bound tokens.
    pub(crate) dpop_signing_alg_values_supported: Option<Vec<String>>,
    pub(crate) dpop_bound_access_tokens_required: Option<bool>,
}

impl ProtectedResourceMetadata {
    /// Whether the document says the resource takes DPoP-bound tokens.
    pub(crate) fn takes_dpop(&self) -> bool {
        self.dpop_bound_access_tokens_required == Some(true)
            || self.dpop_signing_alg_values_supported.as_ref().is_some_and(|a| !a.is_empty())
    }
}

/// The RFC 9728 §3.1 well-known URLs for a resource, in the order MCP clients try them:
/// path-inserted, then root. (The root alone for a resource without a path.)
pub fn protected_resource_urls(resource: &Url) -> Vec<Url> {
    let path = resource.path().trim_end_matches('/');
    let mut root = resource.clone();
    root.set_path("/.well-known/oauth-protected-resource");
    root.set_query(None);
    root.set_fragment(None);
    if path.is_empty() {
        return vec![root];
    }
    let mut inserted = root.clone();
    inserted.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
    vec![inserted, root]
}

/// Fetches a protected resource metadata document.
pub(crate) async fn fetch_protected_resource(
    client: &ControlClient,
    url: &Url,
) -> Result<ProtectedResourceMetadata, DiscoveryError> {
    let answer = client.get_json(url).await?;
    let meta: ProtectedResourceMetadata = serde_json::from_value(answer.body)
        .map_err(|e| DiscoveryError::Invalid { url: url.to_string(), reason: e.to_string() })?;
    if meta.resource.is_empty() {
        return Err(DiscoveryError::Invalid { url: url.to_string(), reason: "no resource".to_owned() });
    }
    Ok(meta)
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// No well-known URL answered.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A document was found but names another issuer.
    #[error(
        "{url} describes issuer {found:?}, not {expected:?}; set the issuer flag to exactly {found:?} if that IdP is the one you mean"
    )]
    IssuerMismatch { url: String, found: String, expected: String },
    /// A document was found but is not valid metadata.
    #[error("{url} is not valid authorization server metadata ({reason})")]
    Invalid { url: String, reason: String },
}

impl DiscoveryError {
    /// Whether retrying later may help.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, DiscoveryError::Fetch(e) if e.is_transient())
    }
}

/// The well-known URLs for `issuer`, in the order they are tried (MCP 2025-11-25): for an
/// issuer with a path, RFC 8414 inserted, OIDC inserted, OIDC appended; without a path,
/// RFC 8414 then OIDC.
pub fn well_known_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let at = |p: String| {
        let mut u = issuer.clone();
        u.set_path(&p);
        u.set_query(None);
        u.set_fragment(None);
        u
    };
    if path.is_empty() {
        return vec![
            at("/.well-known/oauth-authorization-server".into()),
            at("/.well-known/openid-configuration".into()),
        ];
    }
    vec![
        at(format!("/.well-known/oauth-authorization-server{path}")),
        at(format!("/.well-known/openid-configuration{path}")),
        at(format!("{path}/.well-known/openid-configuration")),
    ]
}

/// Fetches and checks the metadata of `issuer` (the exact string the operator gave).
pub(crate) async fn discover(
    client: &ControlClient,
    issuer: &str,
) -> Result<AuthorizationServerMetadata, DiscoveryError> {
    let issuer_url =
        Url::parse(issuer).map_err(|e| DiscoveryError::Invalid { url: issuer.to_owned(), reason: e.to_string() })?;
    let mut last_error = None;
    for url in well_known_urls(&issuer_url) {
        match client.get_json(&url).await {
            Ok(answer) => {
                let meta: AuthorizationServerMetadata = serde_json::from_value(answer.body)
                    .map_err(|e| DiscoveryError::Invalid { url: url.to_string(), reason: e.to_string() })?;
                if meta.issuer != issuer {
                    return Err(DiscoveryError::IssuerMismatch {
                        url: url.to_string(),
                        found: meta.issuer,
                        expected: issuer.to_owned(),
                    });
                }
                return Ok(meta);
            }
            // Unreachable means the next URL on the same host will not do better.
            Err(e) if e.is_transient() => return Err(e.into()),
            // A document that exists but names another issuer is not a miss: stop.
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.map_or_else(
        || DiscoveryError::Invalid { url: issuer.to_owned(), reason: "no well-known URL".to_owned() },
        DiscoveryError::from,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(urls: Vec<Url>) -> Vec<String> {
        urls.into_iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn well_known_url_construction() {
        let urls = |i: &str| strings(well_known_urls(&Url::parse(i).unwrap()));
        assert_eq!(
            urls("https://idp.example"),
            [
                "https://idp.example/.well-known/oauth-authorization-server",
                "https://idp.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(urls("https://idp.example/"), urls("https://idp.example"));
        assert_eq!(
            urls("https://idp.example/tenant1/"),
            [
                "https://idp.example/.well-known/oauth-authorization-server/tenant1",
                "https://idp.example/.well-known/openid-configuration/tenant1",
                "https://idp.example/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("http://127.0.0.1:9000/realms/a?x=1")[2],
            "http://127.0.0.1:9000/realms/a/.well-known/openid-configuration"
        );
    }

    #[test]
    fn protected_resource_url_construction() {
        let urls = |r: &str| strings(protected_resource_urls(&Url::parse(r).unwrap()));
        assert_eq!(urls("https://rs.example"), ["https://rs.example/.well-known/oauth-protected-resource"]);
        assert_eq!(
            urls("https://rs.example/mcp/"),
            [
                "https://rs.example/.well-known/oauth-protected-resource/mcp",
                "https://rs.example/.well-known/oauth-protected-resource"
            ]
        );
    }
}
