//! Finding the target's authorization server: the whole MCP 2025-11-25 discovery chain
//! (Authorization §Protected Resource Metadata Discovery Requirements, §Authorization
//! Server Metadata Discovery), with the 2025-03-26 fallbacks last.
//!
//! 1. Probe the MCP endpoint; a 401 carries a `Bearer` challenge (full RFC 9110 parse)
//!    with `resource_metadata` and often `scope`.
//! 2. RFC 9728 metadata from `resource_metadata`, else the path-inserted, then the root
//!    well-known URL. Its `resource` must name the target (RFC 9728 §3.3).
//! 3. The first of its `authorization_servers` → RFC 8414 / OIDC metadata, exact issuer
//!    check.
//! 4. Without any RFC 9728 document: the target origin's RFC 8414 metadata, then the
//!    default `/authorize`, `/token`, `/register` endpoints (MCP 2025-03-26).

use http::header::WWW_AUTHENTICATE;
use tracing::{debug, info, warn};
use url::Url;

use crate::config::OAuthEndpoints;
use crate::oauth::challenge::find_bearer;
use crate::oauth::http::{ControlClient, UrlPolicy, UrlRefusal};
use crate::oauth::metadata::{
    self, AuthorizationServerMetadata, discover as discover_issuer, fetch_protected_resource, protected_resource_urls,
};
use crate::outbound::LoginError;

/// Why discovery found no usable authorization server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("the challenge's resource_metadata {raw:?} is not a URL ({source})")]
    ResourceMetadataUrl { raw: String, source: url::ParseError },
    /// A URL the target named is not allowed by its [`remote_policy`].
    #[error(transparent)]
    Refused(#[from] UrlRefusal),
    /// RFC 9728 §3.3.
    #[error(
        "the MCP server's metadata is for resource {declared:?}, not {wanted:?}; refusing to use it (RFC 9728 §3.3)"
    )]
    ResourceMismatch { declared: String, wanted: String },
    #[error("the MCP server's metadata names no authorization server")]
    NoAuthorizationServer,
    /// The issuer's RFC 8414 / OIDC metadata could not be had.
    #[error(transparent)]
    Issuer(#[from] metadata::DiscoveryError),
    /// MCP 2025-11-25 §Authorization Code Protection.
    #[error("{issuer} does not advertise PKCE S256 (code_challenge_methods_supported); refusing to log in without it")]
    NoPkceS256 { issuer: String },
    #[error("{name} {raw:?} is not a URL ({source})")]
    EndpointUrl { name: &'static str, raw: String, source: url::ParseError },
    #[error("{name}: {source}")]
    EndpointRefused { name: &'static str, source: UrlRefusal },
    /// The metadata lacks a required endpoint (named).
    #[error("the authorization server metadata has no {0}")]
    NoEndpoint(&'static str),
    /// The 2025-03-26 default endpoints cannot be built on the target's origin.
    #[error(transparent)]
    TargetOrigin(#[from] url::ParseError),
}

/// An authorization server ready to be used.
#[derive(Debug, Clone)]
pub(crate) struct AuthServer {
    /// The issuer, when known (not for manual endpoints or the default-endpoint fallback).
    pub(crate) issuer: Option<String>,
    pub(crate) metadata: AuthorizationServerMetadata,
    /// Only the browser login needs one (RFC 8414 §2: required only for grants that use it).
    pub(crate) authorization_endpoint: Option<Url>,
    /// Discovered from an issuer whose metadata does not advertise PKCE S256: the browser
    /// login refuses it (the other grants use no PKCE).
    pub(crate) no_pkce_s256: bool,
    pub(crate) token_endpoint: Url,
    pub(crate) registration_endpoint: Option<Url>,
    /// Only the device login needs one (RFC 8628 §4).
    pub(crate) device_authorization_endpoint: Option<Url>,
}

impl AuthServer {
    /// How errors name the server: its issuer, else (manual endpoints, the 2025-03-26
    /// defaults) its token endpoint.
    pub(crate) fn name(&self) -> String {
        self.issuer.clone().unwrap_or_else(|| self.token_endpoint.to_string())
    }
}

/// What discovery learned.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    pub(crate) server: AuthServer,
    /// The MCP server said it takes DPoP-bound tokens: its 401 offered the `DPoP` scheme,
    /// or its RFC 9728 document lists DPoP. `--remote-auth-dpop auto` needs this as well as
    /// the authorization server's support: an authorization server that can bind tokens
    /// says nothing of what this resource accepts.
    pub(crate) resource_takes_dpop: bool,
    /// `scope` of the target's 401 challenge (authoritative, MCP §Scope Selection).
    pub(crate) challenge_scope: Option<String>,
    /// `scopes_supported` of the target's RFC 9728 document.
    pub(crate) resource_scopes: Option<Vec<String>>,
    /// `resource` of the target's RFC 9728 document, exactly as published (it covers the
    /// configured resource, see [`resource_matches`]); see [`Discovery::resource`].
    pub(crate) published_resource: Option<String>,
}

impl Discovery {
    /// The RFC 8707 `resource` for authorization and token requests: the one the target's
    /// RFC 9728 document publishes, byte for byte (MCP 2026-07-28 Authorization: the client
    /// sends the identifier as published, so an authorization server that compares strings
    /// recognises it; a pathless `http://host` must not become `http://host/mcp` or
    /// `http://host/`). Without such a document, the configured one.
    pub(crate) fn resource<'a>(discovery: Option<&'a Discovery>, configured: &'a str) -> &'a str {
        discovery.and_then(|d| d.published_resource.as_deref()).unwrap_or(configured)
    }
}

/// Runs discovery as configured. `challenged` is the target's own 401 challenge when a
/// real request got one (some servers let `initialize` through unauthenticated and only
/// challenge later calls); otherwise the target is probed. `policy` applies to every URL
/// the target names (see [`remote_policy`]).
pub(crate) async fn discover(
    http: &ControlClient,
    policy: UrlPolicy,
    endpoints: &OAuthEndpoints,
    target: &Url,
    resource: &str,
    challenged: Option<Challenged>,
) -> Result<Discovery, LoginError> {
    match endpoints {
        OAuthEndpoints::Manual { authorize, token } => Ok(Discovery {
            server: AuthServer {
                issuer: None,
                metadata: AuthorizationServerMetadata::default(),
                authorization_endpoint: authorize.clone(),
                no_pkce_s256: false,
                token_endpoint: token.clone(),
                registration_endpoint: None,
                device_authorization_endpoint: None,
            },
            challenge_scope: None,
            resource_scopes: None,
            published_resource: None,
            resource_takes_dpop: false,
        }),
        OAuthEndpoints::Issuer(issuer) => {
            let probe = match challenged {
                Some(c) => Some(c),
                None => probe(http, target).await,
            };
            Ok(Discovery {
                // The operator named this issuer: its metadata is trusted like a flag.
                server: server_from_issuer(http, UrlPolicy::default(), issuer).await?,
                challenge_scope: probe.as_ref().and_then(|p| p.scope.clone()),
                resource_scopes: None,
                published_resource: None,
                resource_takes_dpop: probe.as_ref().is_some_and(|p| p.dpop),
            })
        }
        OAuthEndpoints::Discover => discover_from_target(http, policy, target, resource, challenged).await,
    }
}

/// What a target's 401 said in its `Bearer` challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Challenged {
    pub(crate) scope: Option<String>,
    pub(crate) resource_metadata: Option<String>,
    /// The 401 offered the `DPoP` scheme (RFC 9449 §7.1): the server takes DPoP tokens.
    pub(crate) dpop: bool,
}

impl Challenged {
    /// Reads the `Bearer` challenge of a 401's headers (any number of field lines), or
    /// failing that a `DPoP` one (RFC 9449 §7.1: a server that takes only DPoP tokens
    /// challenges with that scheme, with the same parameters).
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Challenged {
        let lines: Vec<&str> = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).collect();
        let dpop_challenge = || {
            crate::oauth::challenge::parse_challenges(lines.iter().copied())
                .ok()?
                .into_iter()
                .find(|c| c.scheme.eq_ignore_ascii_case("dpop"))
        };
        let dpop = dpop_challenge().is_some();
        let bearer = find_bearer(lines.iter().copied()).or_else(dpop_challenge);
        Challenged {
            scope: bearer.as_ref().and_then(|c| c.param("scope")).map(str::to_owned),
            resource_metadata: bearer.as_ref().and_then(|c| c.param("resource_metadata")).map(str::to_owned),
            dpop,
        }
    }
}

/// POSTs an `initialize` to the MCP endpoint and reads a 401's `Bearer` challenge.
/// `None` when the target does not answer 401.
async fn probe(http: &ControlClient, target: &Url) -> Option<Challenged> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "thv-proxy-auth-probe", "version": env!("CARGO_PKG_VERSION")}}
    });
    let answer = http.probe_post(target, &body).await.ok()?;
    if answer.status != 401 {
        debug!(status = answer.status, "the MCP server did not ask for authentication");
        return None;
    }
    Some(Challenged::from_headers(&answer.headers))
}

/// The policy for URLs a target names: a public target may not point the proxy into a
/// private network; a target on this machine or network (development) may.
pub(crate) fn remote_policy(target: &Url) -> UrlPolicy {
    let local = target.host_str().is_some_and(crate::net::is_local_host);
    UrlPolicy { allow_insecure: false, block_internal: !local }
}

async fn discover_from_target(
    http: &ControlClient,
    policy: UrlPolicy,
    target: &Url,
    resource: &str,
    challenged: Option<Challenged>,
) -> Result<Discovery, LoginError> {
    let probe = match challenged {
        Some(c) => Some(c),
        None => probe(http, target).await,
    };
    let Some(probe) = probe else {
        return Err(LoginError::NotRequired);
    };
    // RFC 9728 document: from the challenge, else the well-known URLs in order.
    let mut candidates = Vec::new();
    if let Some(raw) = &probe.resource_metadata {
        let url = Url::parse(raw).map_err(|source| DiscoveryError::ResourceMetadataUrl { raw: raw.clone(), source })?;
        policy.check(&url).map_err(DiscoveryError::from)?;
        candidates.push(url);
    } else {
        candidates.extend(protected_resource_urls(target));
    }
    let mut prm = None;
    for url in &candidates {
        match fetch_protected_resource(http, url).await {
            Ok(doc) => {
                prm = Some(doc);
                break;
            }
            Err(e) => debug!(%url, error = %e, "no protected resource metadata here"),
        }
    }
    let Some(prm) = prm else {
        warn!("the MCP server publishes no RFC 9728 metadata; trying the 2025-03-26 conventions");
        return Ok(Discovery {
            server: legacy_server(http, policy, target).await?,
            challenge_scope: probe.scope,
            resource_scopes: None,
            published_resource: None,
            resource_takes_dpop: probe.dpop,
        });
    };
    if !resource_matches(&prm.resource, resource) {
        return Err(DiscoveryError::ResourceMismatch { declared: prm.resource, wanted: resource.to_owned() }.into());
    }
    let issuer = prm.authorization_servers.first().ok_or(DiscoveryError::NoAuthorizationServer)?;
    if let Ok(url) = Url::parse(issuer) {
        policy.check(&url).map_err(DiscoveryError::from)?;
    }
    info!(issuer, "the MCP server uses this authorization server");
    let resource_takes_dpop = probe.dpop || prm.takes_dpop();
    Ok(Discovery {
        server: server_from_issuer(http, policy, issuer).await?,
        challenge_scope: probe.scope,
        resource_scopes: prm.scopes_supported.filter(|s| !s.is_empty()),
        published_resource: Some(prm.resource),
        resource_takes_dpop,
    })
}

/// Whether a metadata `resource` names the target: identical, or a prefix of it on a
/// path boundary (SDKs accept a resource that covers the endpoint; anything else, such as
/// another host or a sibling path, is refused).
pub fn resource_matches(declared: &str, wanted: &str) -> bool {
    let (d, w) = (declared.trim_end_matches('/'), wanted.trim_end_matches('/'));
    if d.eq_ignore_ascii_case(w) {
        return true;
    }
    let (Ok(du), Ok(wu)) = (Url::parse(declared), Url::parse(wanted)) else { return false };
    du.origin() == wu.origin() && du.query().is_none() && {
        let dp = du.path().trim_end_matches('/');
        wu.path().starts_with(dp) && matches!(wu.path()[dp.len()..].chars().next(), None | Some('/'))
    }
}

/// An issuer's metadata, checked: exact issuer, https endpoints (loopback excepted), and
/// whether it supports PKCE S256 (MCP 2025-11-25 §Authorization Code Protection: without
/// it the browser login must not proceed; see [`AuthServer::no_pkce_s256`]).
async fn server_from_issuer(
    http: &ControlClient,
    policy: UrlPolicy,
    issuer: &str,
) -> Result<AuthServer, DiscoveryError> {
    let metadata = discover_issuer(http, issuer).await?;
    let s256 = metadata.code_challenge_methods_supported.as_ref().is_some_and(|m| m.iter().any(|x| x == "S256"));
    let mut server = server_from_metadata(policy, Some(issuer.to_owned()), metadata)?;
    server.no_pkce_s256 = !s256;
    Ok(server)
}

fn server_from_metadata(
    policy: UrlPolicy,
    issuer: Option<String>,
    metadata: AuthorizationServerMetadata,
) -> Result<AuthServer, DiscoveryError> {
    let endpoint = |name: &'static str, raw: Option<&String>| -> Result<Option<Url>, DiscoveryError> {
        raw.map(|raw| {
            let url =
                Url::parse(raw).map_err(|source| DiscoveryError::EndpointUrl { name, raw: raw.clone(), source })?;
            policy.check(&url).map_err(|source| DiscoveryError::EndpointRefused { name, source })?;
            Ok(url)
        })
        .transpose()
    };
    let authorization_endpoint = endpoint("authorization_endpoint", metadata.authorization_endpoint.as_ref())?;
    let token_endpoint = endpoint("token_endpoint", metadata.token_endpoint.as_ref())?
        .ok_or(DiscoveryError::NoEndpoint("token_endpoint"))?;
    let registration_endpoint = endpoint("registration_endpoint", metadata.registration_endpoint.as_ref())?;
    let device_authorization_endpoint =
        endpoint("device_authorization_endpoint", metadata.device_authorization_endpoint.as_ref())?;
    Ok(AuthServer {
        issuer,
        metadata,
        authorization_endpoint,
        no_pkce_s256: false,
        token_endpoint,
        registration_endpoint,
        device_authorization_endpoint,
    })
}

/// MCP 2025-03-26: metadata at the target origin, else the default endpoints there.
async fn legacy_server(http: &ControlClient, policy: UrlPolicy, target: &Url) -> Result<AuthServer, DiscoveryError> {
    let origin = target.origin().ascii_serialization();
    let base = Url::parse(&origin)?;
    let mut well_known = base.clone();
    well_known.set_path("/.well-known/oauth-authorization-server");
    if let Ok(answer) = http.get_json(&well_known).await
        && let Ok(metadata) = serde_json::from_value::<AuthorizationServerMetadata>(answer.body)
    {
        let issuer = (!metadata.issuer.is_empty()).then(|| metadata.issuer.clone());
        return server_from_metadata(policy, issuer, metadata);
    }
    let join = |p: &str| base.join(p);
    Ok(AuthServer {
        issuer: None,
        metadata: AuthorizationServerMetadata::default(),
        authorization_endpoint: Some(join("/authorize")?),
        no_pkce_s256: false,
        token_endpoint: join("/token")?,
        registration_endpoint: Some(join("/register")?),
        device_authorization_endpoint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A public MCP server may not send the proxy into the user's network: URLs it names
    /// that point at loopback, private or link-local addresses are refused before any
    /// request is made (the addresses below would fail to connect anyway, so an accepted
    /// URL would show up as a different error).
    #[tokio::test]
    async fn a_public_target_cannot_name_internal_urls() {
        let http = ControlClient::untrusted().unwrap();
        let target = Url::parse("https://mcp.example.com/mcp").unwrap();
        let policy = remote_policy(&target);
        assert!(policy.block_internal);
        for internal in [
            "http://127.0.0.1:1/.well-known/oauth-protected-resource",
            "https://10.0.0.7/prm",
            "https://169.254.169.254/latest/meta-data",
        ] {
            let challenged = Challenged { scope: None, resource_metadata: Some(internal.to_owned()), dpop: false };
            let err = discover(&http, policy, &OAuthEndpoints::Discover, &target, target.as_str(), Some(challenged))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("private network"), "{internal}: {err}");
        }
        // A local target (development) may name local URLs.
        assert!(!remote_policy(&Url::parse("http://127.0.0.1:8080/mcp").unwrap()).block_internal);
    }

    /// The resource sent is the RFC 9728 document's, byte for byte, even where it only
    /// covers the configured one (a pathless origin for a `/mcp` target); the configured
    /// one without a document.
    #[test]
    fn the_published_resource_is_sent_as_published() {
        let discovery = |published: Option<&str>| Discovery {
            resource_takes_dpop: false,
            server: AuthServer {
                issuer: None,
                metadata: AuthorizationServerMetadata::default(),
                authorization_endpoint: None,
                no_pkce_s256: false,
                token_endpoint: Url::parse("http://127.0.0.1:1/token").unwrap(),
                registration_endpoint: None,
                device_authorization_endpoint: None,
            },
            challenge_scope: None,
            resource_scopes: None,
            published_resource: published.map(str::to_owned),
        };
        let configured = "http://localhost:8080/mcp";
        let pathless = discovery(Some("http://localhost:8080"));
        assert_eq!(Discovery::resource(Some(&pathless), configured), "http://localhost:8080");
        let slash = discovery(Some("http://localhost:8080/mcp/"));
        assert_eq!(Discovery::resource(Some(&slash), configured), "http://localhost:8080/mcp/");
        assert_eq!(Discovery::resource(Some(&discovery(None)), configured), configured);
        assert_eq!(Discovery::resource(None, configured), configured);
    }

    #[test]
    fn resource_matching() {
        assert!(resource_matches("https://mcp.example/mcp", "https://mcp.example/mcp"));
        assert!(resource_matches("https://mcp.example/mcp/", "https://mcp.example/mcp"));
        assert!(resource_matches("https://mcp.example", "https://mcp.example/mcp"));
        assert!(!resource_matches("https://mcp.example/other", "https://mcp.example/mcp"));
        assert!(!resource_matches("https://mcp.example/mc", "https://mcp.example/mcp"));
        assert!(!resource_matches("https://evil.example/mcp", "https://mcp.example/mcp"));
        assert!(!resource_matches("http://mcp.example/mcp", "https://mcp.example/mcp"));
    }
}
