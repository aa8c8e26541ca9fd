//! The proxy as an OAuth 2.1 resource server (MCP 2025-11-25 Authorization; RFC 6750,
//! RFC 9728, RFC 9068, RFC 7662).
//!
//! [`Authenticator::authenticate`] turns a request's `Authorization` header into an
//! [`Identity`] or a [`Rejection`]; [`crate::proxy::respond`] turns rejections into 401,
//! 403 or 503 answers with the right `WWW-Authenticate` challenge. JWTs are validated
//! locally against the IdP's keys; other tokens go to introspection. Verdicts are cached by
//! token digest, so repeating a token costs a hash and a map lookup; on the own HTTP/1.1
//! path a connection also remembers its last accepted token ([`LastToken`]), so repeating
//! it there costs one comparison.
//!
//! With telemetry on, the IdP traffic is counted where it happens (key fetches in
//! [`jwks`], introspection calls and cache hits in [`introspect`]); accepted and refused
//! requests are counted by the caller, under [`Rejection::metric_reason`]. With telemetry
//! off nothing is counted and the request path does no extra work.

pub(crate) mod bearer;
pub(crate) mod cache;
#[cfg(test)]
mod fake_idp;
pub(crate) mod introspect;
pub(crate) mod jose;
pub(crate) mod jwks;
pub(crate) mod jwt;
pub(crate) mod metadata;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice};
use tracing::{info, warn};
use url::Url;

use crate::config::InboundConfig;
use crate::oauth::http::{ControlClient, FetchError, UrlPolicy};
use crate::oauth::metadata::{DiscoveryError, discover};
use crate::oauth::pkce::constant_time_eq;
use crate::telemetry::metrics::Metrics;
use bearer::{BearerProblem, bearer_token_of};
use cache::{Cached, TokenCache, digest, now_secs};
use introspect::Introspector;
use jwks::JwksCache;
use jwt::JwtValidator;

/// How long startup keeps retrying an IdP that is not up yet.
const STARTUP_RETRY_WINDOW: Duration = Duration::from_secs(15);
/// Most JWTs the verified-token cache holds.
const JWT_CACHE_CAPACITY: usize = 10_000;

/// Who made a request, as far as the token says.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `sub`, or the client ID for tokens without a subject.
    pub(crate) subject: String,
    /// Granted scopes.
    pub(crate) scopes: Vec<String>,
    /// Every claim of the token (or of the introspection answer), kept only when a policy
    /// reads them (`--authz-config`); empty otherwise, which costs no allocation.
    pub(crate) claims: serde_json::Map<String, serde_json::Value>,
    /// Unix second the verdict ends: the token's `exp`, or for an introspected token the
    /// end of its reuse. Whatever is derived from the token (an exchanged token) ends then too.
    pub(crate) until: u64,
}

/// Why a token was refused. The descriptions are fixed, short and safe to send: internal
/// error text never reaches a client (ToolHive leaks raw errors into `error_description`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    Malformed,
    ForbiddenHeader,
    WrongType,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    MissingClaim,
    Inactive,
}

impl TokenFailure {
    /// The `error_description` sent to the client.
    pub(crate) fn description(self) -> &'static str {
        match self {
            TokenFailure::Malformed => "the token is malformed",
            TokenFailure::ForbiddenHeader => {
                "the token header names its own key (jku, x5u, jwk or x5c), which is not accepted"
            }
            TokenFailure::WrongType => "the token type is not an access token",
            TokenFailure::Algorithm => "the token's signing algorithm is not accepted",
            TokenFailure::UnknownKey => "the token was signed with an unknown key",
            TokenFailure::Signature => "the token signature is invalid",
            TokenFailure::Expired => "the token has expired",
            TokenFailure::NotYetValid => "the token is not valid yet",
            TokenFailure::Issuer => "the token was issued by another authorization server",
            TokenFailure::Audience => "the token is not meant for this resource",
            TokenFailure::MissingClaim => "the token lacks a required claim (exp, aud or iss)",
            TokenFailure::Inactive => "the token is not active",
        }
    }
}

/// The outcome of a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No bearer token: 401 with a challenge telling the client where to get one.
    Missing,
    /// Unusable credentials (several, or empty): 400 `invalid_request`.
    Malformed,
    /// 401 `invalid_token`.
    Invalid(TokenFailure),
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// The IdP gave no verdict: 503, fail closed.
    Unavailable(IdpTrouble),
}

impl Rejection {
    /// The `reason` a refusal is counted under (a word of the registry's `AUTH_REASONS`):
    /// coarser than [`TokenFailure`], whose kinds an operator reads in the logs; what a
    /// dashboard separates is what someone acts on (a clock, the audience or issuer
    /// configuration, scopes, the IdP).
    pub(crate) fn metric_reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed => "invalid",
            Rejection::Invalid(TokenFailure::Expired | TokenFailure::NotYetValid) => "expired",
            Rejection::Invalid(TokenFailure::Audience) => "audience",
            Rejection::Invalid(TokenFailure::Issuer) => "issuer",
            Rejection::Invalid(TokenFailure::Inactive) => "inactive",
            Rejection::Invalid(_) => "invalid",
            Rejection::InsufficientScope => "scope",
            Rejection::Unavailable(_) => "unavailable",
        }
    }
}

/// Why the IdP gave no verdict on a token, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdpTrouble {
    /// It could not be reached, or did not answer in time.
    Unreachable,
    /// It answered, but not with a verdict.
    BadAnswer,
    /// It refuses the proxy's own credentials: the operator must fix them.
    CredentialsRefused,
}

/// A startup failure of incoming auth, naming the flag to fix.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct StartupError {
    pub(crate) flag: &'static str,
    pub(crate) problem: String,
}

/// Checks tokens for the proxy's own endpoint.
pub(crate) struct Authenticator {
    jwt: Option<JwtValidator>,
    introspector: Option<Introspector>,
    required_scopes: Vec<String>,
    jwt_cache: TokenCache,
    /// Keep each token's claims in its [`Identity`] (a policy reads them).
    keep_claims: bool,
}

impl Authenticator {
    /// Discovers the issuer, loads its keys and prepares introspection: everything that
    /// can fail is done here, before the proxy reports ready. `audiences` are the `aud`
    /// values accepted as "this resource". Key fetches and introspection are counted in
    /// `metrics` (`None`: telemetry is off).
    pub(crate) async fn start(
        config: &InboundConfig,
        audiences: Vec<String>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Authenticator, StartupError> {
        let client = ControlClient::new(config.ca_bundle.as_deref())
            .map_err(|why| StartupError { flag: "--oidc-ca-bundle", problem: format!("the CA bundle {why}") })?;
        let policy = UrlPolicy { allow_insecure: config.allow_insecure, block_internal: false };
        for url in [
            config.issuer.as_deref(),
            config.jwks_url.as_ref().map(Url::as_str),
            config.introspection.as_ref().map(|i| i.url.as_str()),
        ]
        .into_iter()
        .flatten()
        {
            if url.starts_with("http://") {
                warn!(url, "the IdP is reached over plain http; use https outside local development");
            }
        }
        let jwks_url = match (&config.jwks_url, &config.issuer) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(issuer)) => {
                let meta = with_retry(|| discover(&client, issuer), DiscoveryError::is_transient)
                    .await
                    .map_err(|e| StartupError { flag: "--oidc-issuer", problem: e.to_string() })?;
                info!(issuer, "discovered the issuer's metadata");
                match meta.jwks_uri {
                    Some(raw) => {
                        let url = Url::parse(&raw).map_err(|e| StartupError {
                            flag: "--oidc-issuer",
                            problem: format!("the metadata's jwks_uri {raw:?} is not a URL ({e})"),
                        })?;
                        policy.check(&url).map_err(|why| {
                            let refused = crate::config::url_refused(
                                "--oidc-issuer",
                                &why,
                                Some(crate::config::CONSENT_FLAG),
                                crate::config::CREDENTIAL_FLAGS,
                            );
                            StartupError {
                                flag: "--oidc-issuer",
                                problem: format!("the metadata's jwks_uri is refused: {}", refused.problem),
                            }
                        })?;
                        Some(url)
                    }
                    None if config.introspection.is_some() => None,
                    None => {
                        return Err(StartupError {
                            flag: "--oidc-jwks-url",
                            problem: format!("the metadata of {issuer} has no jwks_uri; pass the JWKS URL explicitly"),
                        });
                    }
                }
            }
            (None, None) => None,
        };
        let jwt = match jwks_url {
            None => None,
            Some(url) => {
                // Each attempt is a fetch, and counted: an IdP that is slow to come up shows.
                let load = || JwksCache::load_counted(client.clone(), url.clone(), metrics.clone());
                let (jwks, refresh) = with_retry(load, FetchError::is_transient)
                    .await
                    .map_err(|e| StartupError { flag: "--oidc-jwks-url", problem: e.to_string() })?;
                jwks.spawn_refresh(refresh);
                Some(JwtValidator::new(jwks, config.issuer.as_deref(), &audiences, config.leeway.as_secs()))
            }
        };
        let introspector = config.introspection.as_ref().map(|i| {
            let audiences = config.audience.iter().cloned().chain(audiences.iter().cloned()).collect();
            Introspector::new(client.clone(), i, config.issuer.clone(), audiences, config.leeway, metrics.clone())
        });
        Ok(Authenticator {
            jwt,
            introspector,
            required_scopes: config.required_scopes.clone(),
            jwt_cache: TokenCache::new(JWT_CACHE_CAPACITY),
            keep_claims: false,
        })
    }

    /// Keeps every token's claims in its [`Identity`], for a policy that reads them. Set
    /// before the first request; without it no claim is copied.
    pub(crate) fn keep_claims(&mut self) {
        self.keep_claims = true;
        if let Some(i) = &mut self.introspector {
            i.keep_claims();
        }
    }

    /// Authenticates a request by its headers (hyper's path).
    pub(crate) async fn authenticate<'a>(
        &self,
        authorization: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Arc<Identity>, Rejection> {
        let token = bearer(authorization)?;
        self.check(token).await.map(|(identity, _)| identity)
    }

    /// Authenticates a request on the own HTTP/1.1 path by its raw `Authorization` values
    /// (read in place, with no header map). The connection remembers its last accepted
    /// token in `last`: the same token again, before its verdict ends, costs one comparison
    /// instead of a digest and a shared-cache lookup.
    pub(crate) async fn authenticate_on_connection<'a>(
        &self,
        mut authorization: impl Iterator<Item = &'a [u8]>,
        last: &mut Option<LastToken>,
    ) -> Result<Arc<Identity>, Rejection> {
        // The memo holds the whole `Authorization` value that was accepted: the same bytes
        // again are the same token, so they need no parsing either.
        let (first, second) = (authorization.next(), authorization.next());
        if let (Some(value), None) = (first, second)
            && let Some(identity) = last.as_ref().and_then(|l| l.identity_for(value, now_secs()))
        {
            return Ok(identity);
        }
        let token = bearer(first.into_iter().chain(second).chain(authorization))?;
        let (identity, until) = self.check(token).await?;
        // `bearer` accepted exactly one value, so `first` is it.
        let value = first.unwrap_or_default();
        *last = Some(LastToken { token: SecretSlice::from(value.to_vec()), identity: identity.clone(), until });
        Ok(identity)
    }

    /// The identity `token` stands for, with the Unix second the verdict ends; refused
    /// unless it grants every required scope.
    async fn check(&self, token: &str) -> Result<(Arc<Identity>, u64), Rejection> {
        // JWTs are checked locally; anything else goes to introspection when configured.
        let (identity, until) = match (&self.jwt, &self.introspector) {
            (Some(jwt), None) => self.check_jwt(jwt, token).await?,
            (Some(jwt), Some(_)) if JwtValidator::looks_like_jwt(token) => self.check_jwt(jwt, token).await?,
            // Boxed, as is JWT validation below: their network calls (key refresh,
            // introspection) are large futures that every request would otherwise carry.
            (_, Some(intro)) => Box::pin(intro.check(token)).await?,
            (None, None) => return Err(Rejection::Invalid(TokenFailure::Malformed)),
        };
        if self.required_scopes.iter().all(|s| identity.scopes.iter().any(|g| g == s)) {
            Ok((identity, until))
        } else {
            Err(Rejection::InsufficientScope)
        }
    }

    async fn check_jwt(&self, jwt: &JwtValidator, token: &str) -> Result<(Arc<Identity>, u64), Rejection> {
        let key = digest(token);
        let now = now_secs();
        if let Some((Cached::Valid(identity), until)) = self.jwt_cache.get(&key, now) {
            return Ok((identity, until));
        }
        let claims = Box::pin(jwt.validate(token)).await.map_err(Rejection::Invalid)?;
        let scopes = claims.scopes();
        let expires_at = claims.expires_at();
        let subject = claims.sub.or(claims.client_id).or(claims.azp).unwrap_or_else(|| "unknown".to_owned());
        let claims = if self.keep_claims { jwt::payload_claims(token) } else { serde_json::Map::new() };
        let identity = Arc::new(Identity { subject, scopes, claims, until: expires_at });
        self.jwt_cache.insert(key, Cached::Valid(identity.clone()), expires_at, now);
        Ok((identity, expires_at))
    }
}

/// The bearer token of a request's `Authorization` values (RFC 6750 §2.1).
fn bearer<'a>(authorization: impl Iterator<Item = &'a [u8]>) -> Result<&'a str, Rejection> {
    bearer_token_of(authorization).map_err(|p| match p {
        BearerProblem::Missing => Rejection::Missing,
        BearerProblem::Malformed => Rejection::Malformed,
    })
}

/// The last token one client connection had accepted, and what it stood for.
///
/// MCP clients send the same bearer token on every request of a session, and a keep-alive
/// connection carries many of them: comparing the token with the one before is cheaper than
/// the SHA-256 digest and shared-cache lookup it would cost otherwise (issue 5, same-token
/// throughput). Unlike [`TokenCache`], which keeps only digests, this holds the token
/// itself, as the connection's read buffer already does, for no longer than the connection
/// lives; it is wiped when replaced or dropped. A verdict ends when the shared cache's
/// would, so a token is never accepted here after it would be refused there.
pub(crate) struct LastToken {
    /// The accepted request's whole `Authorization` value (scheme and token).
    token: SecretSlice<u8>,
    identity: Arc<Identity>,
    /// Unix second the verdict ends (the token's `exp`, or introspection's cache limit).
    until: u64,
}

impl LastToken {
    /// The identity if `token` is the remembered one and its verdict still holds at `now`.
    fn identity_for(&self, token: &[u8], now: u64) -> Option<Arc<Identity>> {
        // Compared in time that depends only on the lengths: a front proxy may carry several
        // users' requests on one connection, so how far another user's token matches must
        // not show in the answer's timing.
        (self.until > now && constant_time_eq(self.token.expose_secret(), token)).then(|| self.identity.clone())
    }
}

/// Runs `attempt` until it succeeds, fails for good, or [`STARTUP_RETRY_WINDOW`] passes:
/// an IdP started alongside the proxy may take a moment.
async fn with_retry<T, E: std::fmt::Display, F, Fut>(mut attempt: F, transient: fn(&E) -> bool) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + STARTUP_RETRY_WINDOW;
    let mut pause = Duration::from_millis(200);
    loop {
        match attempt().await {
            Err(e) if transient(&e) && tokio::time::Instant::now() + pause < deadline => {
                warn!(error = %e, "the IdP is not reachable yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remembered(token: &str, until: u64) -> LastToken {
        let identity =
            Arc::new(Identity { subject: "alice".into(), scopes: vec![], claims: Default::default(), until });
        LastToken { token: SecretSlice::from(token.as_bytes().to_vec()), identity, until }
    }

    #[test]
    fn every_rejection_has_a_reason_of_the_registry() {
        use crate::telemetry::metrics::AUTH_REASONS;
        use TokenFailure::*;
        let cases = [
            (Rejection::Missing, "missing"),
            (Rejection::Malformed, "invalid"),
            (Rejection::Invalid(Expired), "expired"),
            (Rejection::Invalid(NotYetValid), "expired"),
            (Rejection::Invalid(Audience), "audience"),
            (Rejection::Invalid(Issuer), "issuer"),
            (Rejection::Invalid(Inactive), "inactive"),
            (Rejection::InsufficientScope, "scope"),
            (Rejection::Unavailable(IdpTrouble::Unreachable), "unavailable"),
            (Rejection::Unavailable(IdpTrouble::BadAnswer), "unavailable"),
            (Rejection::Unavailable(IdpTrouble::CredentialsRefused), "unavailable"),
        ];
        let other_failures = [Malformed, ForbiddenHeader, WrongType, Algorithm, UnknownKey, Signature, MissingClaim];
        let all = cases.into_iter().chain(other_failures.map(|f| (Rejection::Invalid(f), "invalid")));
        let mut used = Vec::new();
        for (rejection, want) in all {
            assert_eq!(rejection.metric_reason(), want, "{rejection:?}");
            used.push(want);
        }
        // Every refusal word of the registry is reachable, and "ok" is never a refusal's.
        for word in &AUTH_REASONS[1..] {
            assert!(used.contains(word), "{word}");
        }
        assert!(!used.contains(&AUTH_REASONS[0]));
    }

    #[test]
    fn a_connection_reuses_only_the_same_token_while_its_verdict_holds() {
        let last = remembered("eyJhbGciOi.payload.signature", 100);
        let hit = last.identity_for(b"eyJhbGciOi.payload.signature", 99).expect("same token, verdict live");
        assert_eq!(hit.subject, "alice");
        assert!(last.identity_for(b"eyJhbGciOi.payload.signaturf", 99).is_none(), "last byte differs");
        assert!(last.identity_for(b"fyJhbGciOi.payload.signature", 99).is_none(), "first byte differs");
        assert!(last.identity_for(b"eyJhbGciOi.payload.signatur", 99).is_none(), "a prefix");
        assert!(last.identity_for(b"eyJhbGciOi.payload.signature.", 99).is_none(), "an extension");
        assert!(last.identity_for(b"", 99).is_none(), "empty");
        assert!(last.identity_for(b"eyJhbGciOi.payload.signature", 100).is_none(), "ended at its deadline");
    }
}
