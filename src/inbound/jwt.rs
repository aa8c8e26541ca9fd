//! JWT access-token validation (RFC 7519, RFC 9068, with the RFC 8725 best current
//! practices):
//!
//! - header: only asymmetric algorithms; `jku`, `x5u`, `jwk` and `x5c` are refused (keys
//!   come from the configured JWKS only); unknown `crit` is refused (jsonwebtoken);
//!   `typ` must be absent, `JWT` or `at+jwt`;
//! - key: by `kid`, and the token's `alg` must be one the key is bound to;
//! - claims: `iss` exact, `aud` must contain an accepted audience, `exp` required, `nbf`
//!   honoured, both with the configured leeway.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::inbound::TokenFailure;
use crate::inbound::jwks::{JwksCache, VerifyKey};

/// The claims the proxy reads from a valid token.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    pub exp: u64,
    pub scope: Option<String>,
    /// Some IdPs (Azure AD, Okta) list scopes as `scp`, a string or an array.
    pub scp: Option<Value>,
}

impl Claims {
    /// Granted scopes from `scope` and `scp`.
    pub fn scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = self.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_owned).collect();
        match &self.scp {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
            _ => {}
        }
        out
    }
}

/// Validates JWTs against one issuer's keys.
pub struct JwtValidator {
    jwks: Arc<JwksCache>,
    /// One prepared `Validation` per algorithm: cloning one per request would allocate.
    validations: HashMap<Algorithm, Validation>,
}

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl JwtValidator {
    /// `issuer`: required exact `iss` (if configured); `audiences`: accepted `aud` values.
    pub fn new(jwks: Arc<JwksCache>, issuer: Option<&str>, audiences: &[String], leeway_secs: u64) -> JwtValidator {
        let validations = ASYMMETRIC
            .iter()
            .map(|alg| {
                let mut v = Validation::new(*alg);
                v.leeway = leeway_secs;
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.set_audience(audiences);
                let mut required = vec!["exp", "aud"];
                if let Some(iss) = issuer {
                    v.set_issuer(&[iss]);
                    required.push("iss");
                }
                v.set_required_spec_claims(&required);
                (*alg, v)
            })
            .collect();
        JwtValidator { jwks, validations }
    }

    /// Whether `token` looks like a JWS compact serialisation (three base64url parts) and
    /// so belongs to this validator rather than to introspection.
    pub fn looks_like_jwt(token: &str) -> bool {
        let mut parts = token.split('.');
        let well_formed = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        };
        well_formed(parts.next()) && well_formed(parts.next()) && parts.next().is_some() && parts.next().is_none()
    }

    /// Validates `token` and returns its claims.
    pub async fn validate(&self, token: &str) -> Result<Claims, TokenFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenFailure::Malformed)?;
        if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() || header.x5c.is_some() {
            return Err(TokenFailure::ForbiddenHeader);
        }
        if let Some(typ) = header.typ.as_deref() {
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt") {
                return Err(TokenFailure::WrongType);
            }
        }
        let validation = self.validations.get(&header.alg).ok_or(TokenFailure::Algorithm)?;
        let key = match self.find_key(header.kid.as_deref(), header.alg) {
            Some(key) => key,
            None => {
                self.jwks.refetch_for_unknown_kid().await;
                self.find_key(header.kid.as_deref(), header.alg).ok_or(TokenFailure::UnknownKey)?
            }
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(TokenFailure::Algorithm);
        }
        jsonwebtoken::decode::<Claims>(token, &key.key, validation).map(|data| data.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenFailure::Expired,
                ErrorKind::ImmatureSignature => TokenFailure::NotYetValid,
                ErrorKind::InvalidAudience => TokenFailure::Audience,
                ErrorKind::InvalidIssuer => TokenFailure::Issuer,
                ErrorKind::InvalidSignature => TokenFailure::Signature,
                ErrorKind::MissingRequiredClaim(_) => TokenFailure::MissingClaim,
                ErrorKind::InvalidAlgorithm => TokenFailure::Algorithm,
                _ => TokenFailure::Malformed,
            }
        })
    }

    fn find_key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerifyKey>> {
        let keys = self.jwks.current();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            // No kid: acceptable only if exactly one key could have signed it.
            None => {
                let mut fitting = keys.all().iter().filter(|k| k.algorithms.contains(&alg));
                let first = fitting.next().cloned();
                if fitting.next().is_some() { None } else { first }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(JwtValidator::looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(JwtValidator::looks_like_jwt("eyJh.eyJz.")); // unsigned: still a JWT, refused later
        assert!(!JwtValidator::looks_like_jwt("opaque-token"));
        assert!(!JwtValidator::looks_like_jwt("a.b"));
        assert!(!JwtValidator::looks_like_jwt("a.b.c.d"));
        assert!(!JwtValidator::looks_like_jwt("a+b.c.d"));
    }
}
