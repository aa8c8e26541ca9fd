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
use crate::inbound::jwks::{JwksCache, RSA_ALGORITHMS, VerifyKey};

/// The claims the proxy reads from a valid token. Time and issuer claims are kept as raw
/// JSON so their *types* can be checked too (RFC 7519 §4.1: `iss` is a string, dates are
/// NumericDates, which may have a fraction).
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    pub exp: Value,
    pub iss: Option<Value>,
    pub iat: Option<Value>,
    pub nbf: Option<Value>,
    pub scope: Option<String>,
    /// Some IdPs (Azure AD, Okta) list scopes as `scp`, a string or an array.
    pub scp: Option<Value>,
}

impl Claims {
    /// `exp` in whole seconds (a fraction is dropped: the token expires no later).
    pub fn expires_at(&self) -> u64 {
        self.exp.as_f64().map_or(0, |e| e.max(0.0) as u64)
    }

    /// RFC 7519 type rules that the signature library does not enforce.
    fn check_types(&self) -> Result<(), TokenFailure> {
        let numeric = |v: &Value| v.as_f64().is_some_and(f64::is_finite);
        if !numeric(&self.exp)
            || self.iat.as_ref().is_some_and(|v| !numeric(v))
            || self.nbf.as_ref().is_some_and(|v| !numeric(v))
        {
            return Err(TokenFailure::Malformed);
        }
        if self.iss.as_ref().is_some_and(|v| !v.is_string()) {
            return Err(TokenFailure::Issuer);
        }
        Ok(())
    }
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

/// Every algorithm a token may use: asymmetric only (RFC 8725 §3.1); HMAC and `none`
/// never get a `Validation`, so they can never verify.
const NON_RSA: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

impl JwtValidator {
    /// `issuer`: required exact `iss` (if configured); `audiences`: accepted `aud` values.
    pub fn new(jwks: Arc<JwksCache>, issuer: Option<&str>, audiences: &[String], leeway_secs: u64) -> JwtValidator {
        let validations = RSA_ALGORITHMS
            .iter()
            .chain(&NON_RSA)
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
        let claims =
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
            })?;
        claims.check_types()?;
        Ok(claims)
    }

    fn find_key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerifyKey>> {
        let keys = self.jwks.current();
        match kid {
            Some(kid) => keys.get(kid).cloned(),
            // No kid: acceptable only when the IdP publishes exactly one key, so there is
            // no choice to get wrong (mcp-auth negative corpus: "no kid with two keys").
            None => match keys.all() {
                [only] if only.algorithms.contains(&alg) => Some(only.clone()),
                _ => None,
            },
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
