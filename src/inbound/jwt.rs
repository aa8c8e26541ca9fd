//! JWT access-token validation (RFC 7519, RFC 9068, with the RFC 8725 best current
//! practices):
//!
//! - header: only asymmetric algorithms; `jku`, `x5u`, `jwk` and `x5c` are refused (keys
//!   come from the configured JWKS only); `crit` other than RFC 7797 `b64: true` is
//!   refused (RFC 7515 §4.1.11); `typ` must be absent, `JWT` or `at+jwt`;
//! - key: by `kid`, and the token's `alg` must be one the key is bound to; the signature
//!   is checked with the key parsed at JWKS load ([`crate::inbound::jwks`]);
//! - claims, read only once the signature holds: `iss` exact, `aud` must contain an
//!   accepted audience, `exp` required, `nbf` honoured, both with the configured leeway.
//!
//! The header's type is [`crate::inbound::jose`]'s; decoding, verification (aws-lc) and
//! the claim checks are here, so that each part of a token is decoded once and no key is
//! rebuilt per token (a JWT library's `decode` decodes the header twice and the claims
//! twice, and jsonwebtoken's aws-lc backend rebuilds an RSA key from (n, e) for every
//! signature).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::Value;

use crate::inbound::TokenFailure;
use crate::inbound::cache::now_secs;
use crate::inbound::jose::{Algorithm, Header};
use crate::inbound::jwks::{JwksCache, RSA_ALGORITHMS, VerifyKey};

/// Every claim of a token `validate` has accepted, for a policy that reads them (the
/// payload is decoded a second time only then, so tokens cost nothing more without one).
pub(crate) fn payload_claims(token: &str) -> serde_json::Map<String, Value> {
    token
        .split('.')
        .nth(1)
        .and_then(|payload| B64.decode(payload).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}

/// The claims the proxy reads from a valid token. Time and issuer claims are kept as raw
/// JSON so their *types* can be checked too (RFC 7519 §4.1: `iss` is a string, dates are
/// NumericDates, which may have a fraction).
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub(crate) sub: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) azp: Option<String>,
    pub(crate) exp: Option<Value>,
    pub(crate) iss: Option<Value>,
    pub(crate) iat: Option<Value>,
    pub(crate) nbf: Option<Value>,
    pub(crate) scope: Option<String>,
    /// A string or an array of strings (RFC 7519 §4.1.3).
    pub(crate) aud: Option<Value>,
    /// Some IdPs (Azure AD, Okta) list scopes as `scp`, a string or an array.
    pub(crate) scp: Option<Value>,
}

impl Claims {
    /// `exp` in whole seconds (a fraction is dropped: the token expires no later).
    pub fn expires_at(&self) -> u64 {
        self.exp.as_ref().and_then(Value::as_f64).map_or(0, |e| e.max(0.0) as u64)
    }

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

/// The asymmetric algorithms besides RSA's that a token may use (RFC 8725 §3.1).
const NON_RSA: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

/// RFC 7515 §4.1.11: a `crit` header names extensions the recipient must understand or
/// refuse the token. The one understood here is RFC 7797 `b64`, and only as `true` (the
/// payload is base64url, as everywhere else); `b64` must then be present, and named once.
fn check_critical(header: &Header) -> Result<(), TokenFailure> {
    let b64 = header.b64;
    if b64 == Some(false) {
        return Err(TokenFailure::Malformed);
    }
    match &header.crit {
        None => Ok(()),
        Some(crit) if crit.len() == 1 && crit[0] == "b64" && b64.is_some() => Ok(()),
        Some(_) => Err(TokenFailure::Malformed),
    }
}

/// A NumericDate (RFC 7519 §2) in whole seconds: a non-negative number, its fraction
/// rounded. `None` for anything else.
fn numeric_date(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// Whether `aud` (one string or an array of strings, RFC 7519 §4.1.3) names one of
/// `accepted`; `None` when it is absent or of another shape.
fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> Option<bool> {
    let accepts = |aud: &str| accepted.iter().any(|a| a == aud);
    match aud? {
        Value::String(one) => Some(accepts(one)),
        Value::Array(many) => {
            let mut found = false;
            for aud in many {
                found |= accepts(aud.as_str()?);
            }
            Some(found)
        }
        _ => None,
    }
}

/// Validates JWTs against one issuer's keys.
pub struct JwtValidator {
    jwks: Arc<JwksCache>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway_secs: u64,
}

impl JwtValidator {
    /// `issuer`: required exact `iss` (if configured); `audiences`: accepted `aud` values.
    pub fn new(jwks: Arc<JwksCache>, issuer: Option<&str>, audiences: &[String], leeway_secs: u64) -> JwtValidator {
        JwtValidator { jwks, issuer: issuer.map(str::to_owned), audiences: audiences.to_vec(), leeway_secs }
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
    ///
    /// The order is the JWS one (RFC 7515 §5.2): header, key, signature, and only then the
    /// claims, so nothing an attacker wrote into the payload is read before it is known
    /// to come from the IdP. Each part is decoded once.
    pub async fn validate(&self, token: &str) -> Result<Claims, TokenFailure> {
        // Exactly three parts: the signing input is everything before the last dot.
        let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
        let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
            return Err(TokenFailure::Malformed);
        };
        // base64url, then serde, on the part already found.
        let header = B64.decode(&token[..first]).map_err(|_| TokenFailure::Malformed)?;
        let header: Header = serde_json::from_slice(&header).map_err(|_| TokenFailure::Malformed)?;
        if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() || header.x5c.is_some() {
            return Err(TokenFailure::ForbiddenHeader);
        }
        check_critical(&header)?;
        if let Some(typ) = header.typ.as_deref() {
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt") {
                return Err(TokenFailure::WrongType);
            }
        }
        // Asymmetric algorithms only (RFC 8725 §3.1): HMAC and `none` are no key's.
        if !RSA_ALGORITHMS.contains(&header.alg) && !NON_RSA.contains(&header.alg) {
            return Err(TokenFailure::Algorithm);
        }
        let key = match self.find_key(header.kid.as_deref(), header.alg) {
            Some(key) => key,
            None => {
                self.jwks.refetch_for_unknown_kid().await;
                self.find_key(header.kid.as_deref(), header.alg).ok_or(TokenFailure::UnknownKey)?
            }
        };
        let verifier = key.verifier(header.alg).ok_or(TokenFailure::Algorithm)?;
        let signature = B64.decode(&token[second + 1..]).map_err(|_| TokenFailure::Malformed)?;
        if verifier.verify_sig(&token.as_bytes()[..second], &signature).is_err() {
            return Err(TokenFailure::Signature);
        }
        let payload = B64.decode(&token[first + 1..second]).map_err(|_| TokenFailure::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenFailure::Malformed)?;
        self.check_claims(&claims, now_secs())?;
        Ok(claims)
    }

    /// RFC 7519 §4.1 claim checks: `exp`, `aud` (and `iss` when configured) required;
    /// `exp` and `nbf` with the leeway; `iss` exact; `aud` naming this resource; and the
    /// claims' types (`iss` a string, dates NumericDates). A token with several faults is
    /// refused for the first in this order, the order jsonwebtoken used before.
    fn check_claims(&self, claims: &Claims, now: u64) -> Result<(), TokenFailure> {
        let exp = claims.exp.as_ref().and_then(numeric_date).ok_or(TokenFailure::MissingClaim)?;
        let audience = audience_matches(claims.aud.as_ref(), &self.audiences).ok_or(TokenFailure::MissingClaim)?;
        let issuer = match (&self.issuer, &claims.iss) {
            (None, _) => true,
            (Some(_), None) => return Err(TokenFailure::MissingClaim),
            // `iss` is one StringOrURI (RFC 7519 §4.1.1): an array never matches.
            (Some(expected), Some(Value::String(iss))) => iss == expected,
            (Some(_), Some(Value::Array(_))) => false,
            (Some(_), Some(_)) => return Err(TokenFailure::MissingClaim),
        };
        if exp < now.saturating_sub(self.leeway_secs) {
            return Err(TokenFailure::Expired);
        }
        if let Some(nbf) = &claims.nbf {
            let nbf = numeric_date(nbf).ok_or(TokenFailure::Malformed)?;
            if nbf > now.saturating_add(self.leeway_secs) {
                return Err(TokenFailure::NotYetValid);
            }
        }
        if !issuer {
            return Err(TokenFailure::Issuer);
        }
        if !audience {
            return Err(TokenFailure::Audience);
        }
        if claims.iat.as_ref().is_some_and(|iat| !iat.as_f64().is_some_and(f64::is_finite)) {
            return Err(TokenFailure::Malformed);
        }
        // Without a configured issuer `iss` is not compared, but its type still counts.
        if claims.iss.as_ref().is_some_and(|iss| !iss.is_string()) {
            return Err(TokenFailure::Issuer);
        }
        Ok(())
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
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        self as lc, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair,
    };
    use serde_json::json;

    use super::*;
    use crate::inbound::jwks::KeySet;

    const ISS: &str = "https://idp.test";
    const AUD: &str = "https://mcp.test/mcp";
    const LEEWAY: u64 = 60;

    fn b64(bytes: &[u8]) -> String {
        B64.encode(bytes)
    }

    /// Signing keys made for this test run: one RSA key (no `alg`: any RSA algorithm), one
    /// P-256 key, published under the kids `rsa` and `ec`.
    struct Keys {
        rsa: RsaKeyPair,
        ec: EcdsaKeyPair,
        ec_der: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Keys {
        fn new() -> Keys {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            let ec_der = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
            Keys { rsa: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(), ec, ec_der, rng }
        }

        fn validator(&self) -> JwtValidator {
            self.validator_for(Some(ISS))
        }

        fn validator_for(&self, issuer: Option<&str>) -> JwtValidator {
            let public = self.rsa.public_key();
            let point = self.ec.public_key().as_ref();
            let jwks = json!({"keys": [
                {"kty": "RSA", "kid": "rsa", "n": b64(public.modulus().big_endian_without_leading_zero()),
                 "e": b64(public.exponent().big_endian_without_leading_zero())},
                {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            ]});
            let keys = KeySet::parse(&jwks);
            assert_eq!(keys.len(), 2);
            JwtValidator::new(JwksCache::holding(keys), issuer, &[AUD.to_owned()], LEEWAY)
        }

        /// A token of `header` and `claims` signed as `how` says.
        fn token(&self, header: &Value, claims: &Value, how: Sign) -> String {
            let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
            let sig = match how {
                Sign::Rsa(padding) => {
                    let mut sig = vec![0; self.rsa.public_modulus_len()];
                    self.rsa.sign(padding, &self.rng, input.as_bytes(), &mut sig).unwrap();
                    sig
                }
                Sign::Ec => self.ec.sign(&self.rng, input.as_bytes()).unwrap().as_ref().to_vec(),
                Sign::EcDer => self.ec_der.sign(&self.rng, input.as_bytes()).unwrap().as_ref().to_vec(),
                Sign::Hmac(secret) => {
                    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
                    aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
                }
                Sign::Nothing => vec![],
            };
            format!("{input}.{}", b64(&sig))
        }
    }

    #[derive(Clone, Copy)]
    enum Sign {
        Rsa(&'static dyn lc::RsaEncoding),
        Ec,
        EcDer,
        Hmac(&'static [u8]),
        Nothing,
    }

    fn good_claims() -> Value {
        let now = now_secs();
        json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": now + 300, "iat": now, "scope": "a b"})
    }

    fn with(mut value: Value, key: &str, new: Value) -> Value {
        if new.is_null() {
            value.as_object_mut().unwrap().remove(key);
        } else {
            value[key] = new;
        }
        value
    }

    #[tokio::test]
    async fn tokens_are_verified_with_parsed_keys_and_their_claims_checked() {
        let keys = Keys::new();
        let v = keys.validator();
        let rs256 = json!({"alg": "RS256", "kid": "rsa", "typ": "at+jwt"});
        let rsa = Sign::Rsa(&lc::RSA_PKCS1_SHA256);
        let now = now_secs();
        let claims = good_claims();

        let ok = v.validate(&keys.token(&rs256, &claims, rsa)).await.expect("a good RS256 token");
        assert_eq!((ok.sub.as_deref(), ok.scopes()), (Some("alice"), vec!["a".to_owned(), "b".to_owned()]));
        let good: [(Value, Sign); 5] = [
            (json!({"alg": "PS256", "kid": "rsa"}), Sign::Rsa(&lc::RSA_PSS_SHA256)),
            (json!({"alg": "RS512", "kid": "rsa"}), Sign::Rsa(&lc::RSA_PKCS1_SHA512)),
            (json!({"alg": "ES256", "kid": "ec", "typ": "JWT"}), Sign::Ec),
            // RFC 7797 `b64: true` is the one critical extension understood.
            (json!({"alg": "ES256", "kid": "ec", "crit": ["b64"], "b64": true}), Sign::Ec),
            (json!({"alg": "RS256", "kid": "rsa"}), rsa),
        ];
        for (header, how) in good {
            assert!(v.validate(&keys.token(&header, &claims, how)).await.is_ok(), "{header}");
        }
        let fine_claims = [
            with(claims.clone(), "aud", json!(["other", AUD])),
            with(claims.clone(), "exp", json!(now - LEEWAY + 5)),
            with(claims.clone(), "exp", json!((now + 300) as f64 + 0.5)),
            with(claims.clone(), "nbf", json!(now + LEEWAY - 5)),
        ];
        for c in fine_claims {
            assert!(v.validate(&keys.token(&rs256, &c, rsa)).await.is_ok(), "{c}");
        }

        use TokenFailure::*;
        let bad_claims = [
            (with(claims.clone(), "exp", json!(now - LEEWAY - 5)), Expired),
            (with(claims.clone(), "exp", Value::Null), MissingClaim),
            (with(claims.clone(), "exp", json!("soon")), MissingClaim),
            (with(claims.clone(), "exp", json!(-1)), MissingClaim),
            (with(claims.clone(), "nbf", json!(now + LEEWAY + 30)), NotYetValid),
            (with(claims.clone(), "nbf", json!("later")), Malformed),
            (with(claims.clone(), "iat", json!("then")), Malformed),
            (with(claims.clone(), "aud", json!("https://other.test/mcp")), Audience),
            (with(claims.clone(), "aud", json!([])), Audience),
            (with(claims.clone(), "aud", json!([AUD, 7])), MissingClaim),
            (with(claims.clone(), "aud", Value::Null), MissingClaim),
            (with(claims.clone(), "iss", json!("https://evil.test")), Issuer),
            (with(claims.clone(), "iss", json!([ISS])), Issuer),
            (with(claims.clone(), "iss", Value::Null), MissingClaim),
            (with(claims.clone(), "iss", json!(1)), MissingClaim),
        ];
        for (c, want) in bad_claims {
            assert_eq!(v.validate(&keys.token(&rs256, &c, rsa)).await.err(), Some(want), "{c}");
        }
        // Without a configured issuer `iss` is optional and not compared, but still typed.
        let any_issuer = keys.validator_for(None);
        for (c, want) in [
            (with(claims.clone(), "iss", Value::Null), None),
            (with(claims.clone(), "iss", json!("https://elsewhere.test")), None),
            (with(claims.clone(), "iss", json!([ISS])), Some(Issuer)),
            (with(claims.clone(), "iss", json!(1)), Some(Issuer)),
        ] {
            assert_eq!(any_issuer.validate(&keys.token(&rs256, &c, rsa)).await.err(), want, "{c}");
        }

        let hmac_secret = b"the public key, as HMAC secret";
        let bad_headers: [(Value, Sign, TokenFailure); 13] = [
            (json!({"alg": "HS256", "kid": "rsa"}), Sign::Hmac(hmac_secret), Algorithm),
            (json!({"alg": "none", "kid": "rsa"}), Sign::Nothing, Malformed),
            (json!({"alg": "ES256", "kid": "rsa"}), Sign::Ec, Algorithm),
            (json!({"alg": "RS256", "kid": "ec"}), rsa, Algorithm),
            (json!({"alg": "RS256", "kid": "gone"}), rsa, UnknownKey),
            // Two keys and no kid: no choice is made for the token.
            (json!({"alg": "RS256"}), rsa, UnknownKey),
            (json!({"alg": "ES256", "kid": "ec"}), Sign::EcDer, Signature),
            (json!({"alg": "PS256", "kid": "rsa"}), rsa, Signature),
            (json!({"alg": "RS256", "kid": "rsa", "jku": "https://evil.test/jwks"}), rsa, ForbiddenHeader),
            (json!({"alg": "RS256", "kid": "rsa", "typ": "JOSE+JSON"}), rsa, WrongType),
            (json!({"alg": "RS256", "kid": "rsa", "crit": ["exp"], "exp": 1}), rsa, Malformed),
            (json!({"alg": "ES256", "kid": "ec", "crit": ["b64"], "b64": false}), Sign::Ec, Malformed),
            (json!({"alg": "ES256", "kid": "ec", "crit": ["b64"]}), Sign::Ec, Malformed),
        ];
        for (header, how, want) in bad_headers {
            assert_eq!(v.validate(&keys.token(&header, &claims, how)).await.err(), Some(want), "{header}");
        }

        // The signature covers the header and the payload: swap either and it fails.
        let token = keys.token(&rs256, &claims, rsa);
        let (input, sig) = token.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();
        let forged = with(claims.clone(), "sub", json!("mallory"));
        let swapped = format!("{header}.{}.{sig}", b64(forged.to_string().as_bytes()));
        assert_eq!(v.validate(&swapped).await.err(), Some(Signature));
        let ps256 = b64(json!({"alg": "PS256", "kid": "rsa"}).to_string().as_bytes());
        assert_eq!(v.validate(&token.replacen(header, &ps256, 1)).await.err(), Some(Signature));
        for shape in [format!("{token}.x"), format!("{token}="), token[..token.len() - 4].to_owned(), "a.b".to_owned()]
        {
            let got = v.validate(&shape).await.err();
            assert!(matches!(got, Some(Malformed | Signature)), "{shape}: {got:?}");
        }
        assert_eq!(v.validate(&format!("{token}.x")).await.err(), Some(Malformed), "four parts");
    }

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
