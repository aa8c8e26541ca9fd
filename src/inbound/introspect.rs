//! Opaque tokens: RFC 7662 introspection (and Google tokeninfo), with a cache.
//!
//! - `active: false` is a verdict (401), cached briefly so a client retrying a dead token
//!   does not hammer the IdP.
//! - An endpoint that errors, times out, answers garbage or refuses the proxy's own
//!   credentials is *not* a verdict: the request fails closed with 503 (saying which of
//!   these it was; a refused credential is logged as an ERROR for the operator) and is not
//!   cached (RFC 7662 §4: the resource server must not
//!   treat a failed introspection as an active token).
//! - Claims in the answer are checked: `exp`/`nbf` (with leeway) and `iss` when present;
//!   `aud` must be present and name this resource. An active token without an audience
//!   may be a refresh token or a token for any other service of the same IdP, and MCP
//!   forbids accepting tokens not issued for this server (MCP 2025-11-25 §Token Handling).
//!   Members of the wrong JSON type make the whole answer untrustworthy.
//!   Valid answers are reused until `min(exp, now + TTL)`.
//! - The identity is `sub`, or `client_id` for client-credentials tokens, which often have
//!   no `sub`.
//! - With telemetry on, every call is counted by its result and every verdict taken from
//!   the cache as a hit (`thv_inbound_introspections`, `…_cache_hits`): together they
//!   show the load put on the IdP and how much of it the cache saves.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tracing::{error, warn};
use url::Url;

use crate::config::IntrospectionConfig;
use crate::inbound::cache::{Cached, TokenCache, digest, now_secs};
use crate::inbound::{Identity, IdpTrouble, Rejection, TokenFailure};
use crate::oauth::http::ControlClient;
use crate::oauth::introspection::{Introspected, IntrospectionError, introspect};
use crate::telemetry::metrics::{Count, Metrics};

/// How long an inactive verdict is reused.
const NEGATIVE_TTL: u64 = 5;
/// Most tokens the cache holds.
const CACHE_CAPACITY: usize = 10_000;

/// Introspects tokens at one endpoint.
pub(crate) struct Introspector {
    client: ControlClient,
    endpoint: Url,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    google: bool,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    ttl: u64,
    cache: TokenCache,
    /// Keep each answer's claims in its identity (a policy reads them).
    keep_claims: bool,
    /// Where calls and cache hits are counted; `None` when telemetry is off.
    metrics: Option<Arc<Metrics>>,
}

impl Introspector {
    /// Introspects at `config.url`; answers must name `issuer` (when given and present)
    /// and one of `audiences` (when present). Calls and cache hits are counted in
    /// `metrics`.
    pub(crate) fn new(
        client: ControlClient,
        config: &IntrospectionConfig,
        issuer: Option<String>,
        audiences: Vec<String>,
        leeway: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> Introspector {
        Introspector {
            client,
            endpoint: config.url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            google: config.google,
            issuer,
            audiences,
            leeway: leeway.as_secs(),
            ttl: config.cache_ttl.as_secs(),
            cache: TokenCache::new(CACHE_CAPACITY),
            keep_claims: false,
            metrics,
        }
    }

    /// Keeps every answer's claims in its identity.
    pub(crate) fn keep_claims(&mut self) {
        self.keep_claims = true;
    }

    /// Resolves `token` to an identity, and the Unix second until which it holds.
    pub(crate) async fn check(&self, token: &str) -> Result<(Arc<Identity>, u64), Rejection> {
        let key = digest(token);
        let now = now_secs();
        if let Some(cached) = self.cache.get(&key, now) {
            if let Some(metrics) = &self.metrics {
                metrics.count(Count::IntrospectionCacheHit);
            }
            return match cached {
                (Cached::Valid(identity), until) => Ok((identity, until)),
                (Cached::Invalid, _) => Err(Rejection::Invalid(TokenFailure::Inactive)),
            };
        }
        let auth =
            self.client_id.as_deref().map(|id| (id, self.client_secret.as_ref().map_or("", |s| s.expose_secret())));
        let answer = introspect(&self.client, &self.endpoint, token, auth, self.google).await;
        if let Some(metrics) = &self.metrics {
            metrics.count(Count::Introspection(answer.as_ref().map_or("error", result_word)));
        }
        let answer = answer.map_err(|e| {
            let trouble = match &e {
                IntrospectionError::ClientRefused { .. } => {
                    error!(error = %e, "token introspection refuses the proxy's credentials; check --oidc-client-id and --oidc-client-secret (or TOOLHIVE_OIDC_CLIENT_SECRET); refusing the request");
                    return Rejection::Unavailable(IdpTrouble::CredentialsRefused);
                }
                IntrospectionError::Fetch(f) if f.is_transient() => IdpTrouble::Unreachable,
                IntrospectionError::Fetch(_) => IdpTrouble::BadAnswer,
            };
            warn!(error = %e, "token introspection failed; refusing the request");
            Rejection::Unavailable(trouble)
        })?;
        match self.judge(&answer, now) {
            Ok(mut identity) => {
                let until = answer.exp.map_or(now + self.ttl, |exp| exp.min(now + self.ttl));
                identity.until = until;
                let identity = Arc::new(identity);
                self.cache.insert(key, Cached::Valid(identity.clone()), until, now);
                Ok((identity, until))
            }
            Err(failure) => {
                self.cache.insert(key, Cached::Invalid, now + NEGATIVE_TTL, now);
                Err(Rejection::Invalid(failure))
            }
        }
    }

    fn judge(&self, answer: &Introspected, now: u64) -> Result<Identity, TokenFailure> {
        // `result_word` follows these first two checks, in this order.
        if !answer.active {
            return Err(TokenFailure::Inactive);
        }
        if answer.malformed {
            return Err(TokenFailure::Malformed);
        }
        if answer.exp.is_some_and(|exp| exp + self.leeway <= now) {
            return Err(TokenFailure::Expired);
        }
        if answer.nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(TokenFailure::NotYetValid);
        }
        if let (Some(iss), Some(expected)) = (&answer.iss, &self.issuer)
            && iss != expected
        {
            return Err(TokenFailure::Issuer);
        }
        if !answer.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(TokenFailure::Audience);
        }
        let subject = answer.sub.clone().or_else(|| answer.client_id.clone()).unwrap_or_else(|| "unknown".to_owned());
        let scopes = answer.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_owned).collect();
        let claims = if self.keep_claims { answer.claims.clone() } else { serde_json::Map::new() };
        Ok(Identity { subject, scopes, claims, until: 0 })
    }
}

/// The `result` an answer is counted under (a word of `INTROSPECTION_RESULTS`): the IdP's
/// `active`, except that an answer with wrongly typed members is no trustworthy verdict
/// (refused as malformed by `judge`), so it counts as an error of the IdP. The claim
/// checks that follow do not change it: an active token for another audience is the
/// client's fault, and is counted as a refusal elsewhere.
fn result_word(answer: &Introspected) -> &'static str {
    match (answer.active, answer.malformed) {
        (false, _) => "inactive",
        (true, true) => "error",
        (true, false) => "active",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::fake_idp::{FakeIdp, counted};

    fn introspector(google: bool) -> Introspector {
        introspector_at(Url::parse("https://idp.example/introspect").unwrap(), google, None)
    }

    fn introspector_at(url: Url, google: bool, metrics: Option<Arc<Metrics>>) -> Introspector {
        let config = IntrospectionConfig {
            url,
            client_id: None,
            client_secret: None,
            google,
            cache_ttl: Duration::from_secs(60),
        };
        let issuer = Some("https://idp.example".into());
        Introspector::new(
            ControlClient::new(None).unwrap(),
            &config,
            issuer,
            vec!["https://mcp.example/mcp".into()],
            Duration::from_secs(60),
            metrics,
        )
    }

    #[test]
    fn judging_answers() {
        let i = introspector(false);
        let now = 1_000_000;
        let ours = vec!["https://mcp.example/mcp".to_owned()];
        let ok = Introspected {
            active: true,
            sub: Some("alice".into()),
            exp: Some(now + 10),
            scope: Some("a b".into()),
            aud: ours.clone(),
            ..Default::default()
        };
        let id = i.judge(&ok, now).unwrap();
        assert_eq!((id.subject.as_str(), id.scopes.len()), ("alice", 2));
        let svc = Introspected { active: true, client_id: Some("svc".into()), aud: ours, ..Default::default() };
        assert_eq!(i.judge(&svc, now).unwrap().subject, "svc", "client_id stands in for a missing sub");
        let cases = [
            (Introspected { active: false, ..ok.clone() }, TokenFailure::Inactive),
            (Introspected { exp: Some(now - 61), ..ok.clone() }, TokenFailure::Expired),
            (Introspected { nbf: Some(now + 61), ..ok.clone() }, TokenFailure::NotYetValid),
            (Introspected { iss: Some("https://evil.example".into()), ..ok.clone() }, TokenFailure::Issuer),
            (Introspected { aud: vec!["other".into()], ..ok.clone() }, TokenFailure::Audience),
            (Introspected { aud: vec![], ..ok.clone() }, TokenFailure::Audience),
            (Introspected { malformed: true, ..ok.clone() }, TokenFailure::Malformed),
        ];
        for (answer, want) in cases {
            assert_eq!(i.judge(&answer, now).unwrap_err(), want);
        }
        assert!(i.judge(&Introspected { exp: Some(now - 30), ..ok.clone() }, now).is_ok(), "within leeway");
    }

    #[test]
    fn google_requires_our_audience() {
        let i = introspector(true);
        let answer = Introspected { active: true, sub: Some("1".into()), ..Default::default() };
        assert_eq!(i.judge(&answer, 0).unwrap_err(), TokenFailure::Audience);
    }

    /// Each call is counted by its result, each verdict from the cache as a hit; a call
    /// that gave no verdict is not cached, so asking again is another call.
    #[tokio::test]
    async fn calls_and_cache_hits_are_counted() {
        let answers = [
            (200, r#"{"active": true, "sub": "alice", "aud": "https://mcp.example/mcp"}"#),
            (200, r#"{"active": false}"#),
            (500, "{}"),
            (200, r#"{"active": true, "sub": "alice", "aud": 12345}"#),
            (200, r#"{"active": true, "sub": "alice", "aud": "https://mcp.example/mcp"}"#),
        ];
        let idp = FakeIdp::start(answers.iter().map(|(status, body)| (*status, (*body).to_owned())).collect()).await;
        let metrics = Arc::new(Metrics::new("s", "streamable-http"));
        let i = introspector_at(idp.url("introspect"), false, Some(metrics.clone()));
        let calls = |result| counted(&metrics, "thv_inbound_introspections", Some(("result", result)));
        let hits = || counted(&metrics, "thv_inbound_introspection_cache_hits", None);

        assert_eq!(i.check("tok-a").await.unwrap().0.subject, "alice");
        assert_eq!(i.check("tok-a").await.unwrap().0.subject, "alice");
        assert_eq!((calls("active"), hits(), idp.served()), (1, 1, 1), "the second check was answered by the cache");
        for _ in 0..2 {
            assert_eq!(i.check("tok-b").await.unwrap_err(), Rejection::Invalid(TokenFailure::Inactive));
        }
        assert_eq!((calls("inactive"), hits()), (1, 2), "inactive verdicts are cached too");
        assert!(matches!(i.check("tok-c").await, Err(Rejection::Unavailable(_))));
        assert_eq!(i.check("tok-d").await.unwrap_err(), Rejection::Invalid(TokenFailure::Malformed));
        assert_eq!(calls("error"), 2, "no answer, and an untrustworthy one");
        assert!(i.check("tok-c").await.is_ok(), "a failed call was not cached");
        assert_eq!((calls("active"), calls("inactive"), calls("error"), hits()), (2, 1, 2, 2));
    }
}
