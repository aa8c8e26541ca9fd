//! The JOSE header of a signed JWT (RFC 7515 §4.1) and the algorithm names of RFC 7518
//! §3.1 / RFC 8037: the two types incoming authentication needs from a JWT library, so
//! none is linked in (decoding, verification with aws-lc and the claim checks are in
//! [`crate::inbound::jwt`]).
//!
//! Every header parameter RFC 7515 registers is typed as it defines it, so a header with
//! a registered parameter of the wrong JSON type does not decode (the token is
//! malformed); parameters of other specifications (JWE's `enc`, `zip`, …) are ignored,
//! as RFC 7515 §4 lets a recipient ignore what it does not understand unless `crit`
//! names it.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A JWS algorithm (`alg`). Names outside this list do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

impl std::str::FromStr for Algorithm {
    type Err = ();

    /// The exact, case-sensitive name (RFC 7515 §4.1.1: `alg` is case-sensitive).
    fn from_str(name: &str) -> Result<Algorithm, ()> {
        Algorithm::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name)).map_err(|_| ())
    }
}

/// The header parameters of a JWS (RFC 7515 §4.1), plus RFC 7797's `b64`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) jku: Option<String>,
    /// A key the token carries itself: never trusted, only noticed.
    pub(crate) jwk: Option<Map<String, Value>>,
    pub(crate) kid: Option<String>,
    pub(crate) x5u: Option<String>,
    pub(crate) x5c: Option<Vec<String>>,
    /// Read by no rule: typed so that a malformed value makes the header malformed.
    #[allow(dead_code)]
    pub(crate) x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    #[allow(dead_code)]
    pub(crate) x5t_s256: Option<String>,
    pub(crate) typ: Option<String>,
    #[allow(dead_code)]
    pub(crate) cty: Option<String>,
    pub(crate) crit: Option<Vec<String>>,
    /// RFC 7797 §3: whether the payload is base64url-encoded.
    pub(crate) b64: Option<bool>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn header(v: Value) -> Option<Header> {
        serde_json::from_value(v).ok()
    }

    #[test]
    fn registered_parameters_decode_only_with_their_types() {
        let h = header(json!({"alg": "ES256", "kid": "k", "typ": "at+jwt", "crit": ["b64"], "b64": true})).unwrap();
        assert_eq!((h.alg, h.kid.as_deref(), h.b64), (Algorithm::ES256, Some("k"), Some(true)));
        assert!(header(json!({"alg": "ES256", "enc": 5, "zip": [1]})).is_some(), "JWE parameters are ignored");
        assert!(header(json!({"alg": "ES256", "jwk": {"kty": "EC"}})).unwrap().jwk.is_some());
        for bad in [
            json!({}),
            json!({"alg": "none"}),
            json!({"alg": "es256"}),
            json!({"alg": 1}),
            json!({"alg": "ES256", "kid": 7}),
            json!({"alg": "ES256", "x5c": "one"}),
            json!({"alg": "ES256", "crit": "b64"}),
            json!({"alg": "ES256", "b64": "true"}),
            json!({"alg": "ES256", "jwk": "key"}),
            json!({"alg": "ES256", "x5t#S256": 1}),
        ] {
            assert!(header(bad.clone()).is_none(), "{bad}");
        }
        assert!(serde_json::from_str::<Header>(r#"{"alg":"ES256","alg":"RS256"}"#).is_err(), "duplicate member");
    }

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!("EdDSA".parse(), Ok(Algorithm::EdDSA));
        assert_eq!("PS512".parse(), Ok(Algorithm::PS512));
        assert_eq!("rs256".parse::<Algorithm>(), Err(()));
        assert_eq!("none".parse::<Algorithm>(), Err(()));
    }
}
