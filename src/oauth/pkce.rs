//! PKCE (RFC 7636) and the `state` parameter (RFC 6749 §10.12): random values from the
//! system CSPRNG, S256 only (RFC 7636 §4.2: a client able to use S256 must).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

/// A PKCE verifier and its S256 challenge.
pub(crate) struct Pkce {
    /// 43 characters from 32 random bytes (RFC 7636 §4.1); secret until the token request.
    pub(crate) verifier: SecretString,
    /// `BASE64URL(SHA256(verifier))`.
    pub(crate) challenge: String,
}

impl Pkce {
    /// A fresh verifier and challenge.
    pub(crate) fn generate() -> Pkce {
        let verifier = random_token();
        let challenge = challenge_for(&verifier);
        Pkce { verifier: SecretString::from(verifier), challenge }
    }
}

/// The S256 challenge for `verifier`.
pub(crate) fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()))
}

/// 32 random bytes, base64url: for verifiers and `state` (256 bits, well above the 128
/// RFC 6749 asks of `state`).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time that depends only on their lengths, not on where they
/// differ (aws-lc's `CRYPTO_memcmp`).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// The verifier of a [`Pkce`], for the token request.
pub(crate) fn verifier(p: &Pkce) -> &str {
    p.verifier.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_values() {
        let p = Pkce::generate();
        let v = verifier(&p);
        assert_eq!(v.len(), 43);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(p.challenge, challenge_for(v));
        assert_ne!(random_token(), random_token());
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab")
        );
        assert!(constant_time_eq(b"", b"") && !constant_time_eq(b"", b"a") && !constant_time_eq(b"\x00", b"\x80"));
    }
}
