//! DPoP policy (RFC 9449; MCP SEP-1932): whether a login binds its tokens to a key
//! (`--remote-auth-dpop` against the authorization server's
//! `dpop_signing_alg_values_supported`), a new key per login, and what a request to the
//! MCP server carries with a bound token: `Authorization: DPoP <token>` and a fresh proof
//! for its method and URI (§7.1), with the server's latest nonce (§9).
//!
//! The proofs themselves are [`crate::oauth::dpop`]'s. Nothing here runs when DPoP is
//! off: a bearer token's [`Credential`] has no binding, and a request then costs no
//! signature.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::config::{DpopMode, OAuthEndpoints};
use crate::oauth::dpop::{self, Dpop, DpopKey, Htu, NONCE_HEADER, USE_DPOP_NONCE};
use crate::outbound::{LoginError, OAuth, Session};

/// What a DPoP-bound token needs for each request: the login's key, the token's `ath`,
/// and the MCP server's origin (where the nonce is kept).
pub(super) struct Bound {
    dpop: Arc<Dpop>,
    ath: String,
    origin: String,
}

impl Bound {
    pub(super) fn new(dpop: Arc<Dpop>, access_token: &str, target: &url::Url) -> Bound {
        Bound { dpop, ath: dpop::ath(access_token), origin: target.origin().ascii_serialization() }
    }

    /// A fresh proof for a `method` request to `uri` (whose path is on the target).
    fn proof(&self, method: &Method, uri: &Uri) -> Option<HeaderValue> {
        let to = Htu { htu: format!("{}{}", self.origin, uri.path()), origin: self.origin.clone() };
        let mut value = HeaderValue::try_from(self.dpop.proof(method.as_str(), &to, Some(&self.ath))).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Keeps a `DPoP-Nonce` the MCP server sent (RFC 9449 §9: on a challenge or any answer).
    pub(super) fn remember_nonce(&self, headers: &HeaderMap) {
        if let Some(nonce) = headers.get(NONCE_HEADER).and_then(|v| v.to_str().ok()) {
            self.dpop.remember_nonce(&self.origin, nonce);
        }
    }
}

/// The credentials of one request: the `Authorization` value, and for a DPoP-bound token
/// what makes its proof.
#[derive(Clone)]
pub(crate) struct Credential {
    pub(crate) header: HeaderValue,
    pub(super) bound: Option<Arc<Bound>>,
}

impl Credential {
    pub(super) fn bearer(header: HeaderValue) -> Credential {
        Credential { header, bound: None }
    }

    /// Puts the credentials on a `method` request to `uri`.
    pub(super) fn apply(self, method: &Method, uri: &Uri, headers: &mut HeaderMap) {
        headers.insert(http::header::AUTHORIZATION, self.header);
        if let Some(proof) = self.bound.as_ref().and_then(|b| b.proof(method, uri)) {
            headers.insert(dpop::DPOP_HEADER, proof);
        }
    }
}

/// Whether a 401's challenge asks for a DPoP nonce (RFC 9449 §9: `WWW-Authenticate: DPoP
/// error="use_dpop_nonce"` with a `DPoP-Nonce` header).
pub(super) fn nonce_challenge(headers: &HeaderMap) -> bool {
    if !headers.contains_key(NONCE_HEADER) {
        return false;
    }
    let lines = headers.get_all(http::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
    crate::oauth::challenge::parse_challenges(lines).is_ok_and(|challenges| {
        challenges.iter().any(|c| c.scheme.eq_ignore_ascii_case("dpop") && c.param("error") == Some(USE_DPOP_NONCE))
    })
}

impl OAuth {
    /// Whether this login uses DPoP, from `--remote-auth-dpop`, the authorization server's
    /// metadata and (for `auto`) the MCP server's word that it takes DPoP;
    /// `always` with a server that lists no algorithm the proxy signs with fails.
    /// With the endpoints given by flags there is no metadata: `always` is the operator's
    /// word that the server takes DPoP, `auto` finds nothing listed.
    pub(super) fn dpop_wanted(&self, session: &Session) -> Result<bool, LoginError> {
        let Some(discovery) = session.discovery.as_ref() else { return Ok(false) };
        let server = &discovery.server;
        let listed = server.metadata.dpop_signing_alg_values_supported.as_deref().unwrap_or_default();
        let manual = matches!(self.cfg.endpoints, OAuthEndpoints::Manual { .. });
        match self.cfg.dpop {
            DpopMode::Never => Ok(false),
            DpopMode::Always if manual => Ok(true),
            // Both sides must take it: a bound token is refused by a resource that only
            // knows Bearer (many authorization servers list DPoP for every resource).
            DpopMode::Auto => Ok(dpop::supported(listed) && discovery.resource_takes_dpop),
            DpopMode::Always if dpop::supported(listed) => Ok(true),
            DpopMode::Always => Err(LoginError::DpopNotSupported {
                server: server.issuer.clone().unwrap_or_else(|| server.token_endpoint.to_string()),
                listed: if listed.is_empty() { "none".to_owned() } else { listed.join(", ") },
            }),
        }
    }

    /// A new login: a new key when DPoP applies (RFC 9449 §2: the key is the client's,
    /// one per login here, so no two logins share a binding).
    pub(super) fn start_dpop(&self, session: &mut Session) -> Result<(), LoginError> {
        session.dpop = self.dpop_wanted(session)?.then(|| Arc::new(Dpop::new(DpopKey::generate())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dpop_use_dpop_nonce_challenge_with_a_nonce_asks_for_one() {
        let with = |challenge: &str, nonce: bool| {
            let mut h = HeaderMap::new();
            h.insert(http::header::WWW_AUTHENTICATE, challenge.parse().unwrap());
            if nonce {
                h.insert(NONCE_HEADER, HeaderValue::from_static("n"));
            }
            nonce_challenge(&h)
        };
        assert!(with(r#"DPoP error="use_dpop_nonce", resource_metadata="https://x""#, true));
        assert!(with(r#"Bearer realm="a", dpop error="use_dpop_nonce""#, true));
        assert!(!with(r#"DPoP error="use_dpop_nonce""#, false), "no nonce given");
        assert!(!with(r#"DPoP error="invalid_token""#, true));
        assert!(!with(r#"Bearer error="use_dpop_nonce""#, true), "not a DPoP challenge");
    }

    #[test]
    fn a_bound_credential_adds_a_fresh_proof_for_the_request() {
        let dpop = Arc::new(Dpop::new(DpopKey::generate()));
        let target = url::Url::parse("http://127.0.0.1:9/mcp").unwrap();
        let bound = Arc::new(Bound::new(dpop, "tok", &target));
        let mut challenge = HeaderMap::new();
        challenge.insert(NONCE_HEADER, HeaderValue::from_static("rs-nonce"));
        bound.remember_nonce(&challenge);
        let credential = Credential { header: HeaderValue::from_static("DPoP tok"), bound: Some(bound) };
        let mut headers = HeaderMap::new();
        credential.apply(&Method::GET, &"http://127.0.0.1:9/mcp?x=1".parse().unwrap(), &mut headers);
        assert_eq!(headers[http::header::AUTHORIZATION], "DPoP tok");
        assert!(headers[dpop::DPOP_HEADER].is_sensitive());
        let proof = headers[dpop::DPOP_HEADER].to_str().unwrap();
        let (_, claims) = crate::oauth::dpop::tests::verify(proof);
        assert_eq!((claims["htm"].as_str(), claims["htu"].as_str()), (Some("GET"), Some("http://127.0.0.1:9/mcp")));
        assert_eq!(claims["ath"].as_str(), Some(dpop::ath("tok").as_str()));
        assert_eq!(claims["nonce"], "rs-nonce");
        // A bearer credential adds no proof.
        let mut headers = HeaderMap::new();
        Credential::bearer(HeaderValue::from_static("Bearer t")).apply(&Method::GET, &target_uri(), &mut headers);
        assert!(!headers.contains_key(dpop::DPOP_HEADER));
    }

    fn target_uri() -> Uri {
        "http://127.0.0.1:9/mcp".parse().unwrap()
    }
}
