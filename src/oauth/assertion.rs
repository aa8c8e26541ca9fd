//! JWT client assertions: `private_key_jwt` client authentication (RFC 7523 §2.2, §3;
//! OpenID Connect Core §9; MCP SEP-1046), signed with aws-lc.
//!
//! The key is a PEM private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
//! (`RSA PRIVATE KEY`). The JWS algorithm follows from the key (P-256 → ES256, P-384 →
//! ES384, RSA → RS256, Ed25519 → EdDSA) unless the operator names another one the key can
//! make (PS256 for an RSA key). Every assertion is new: its own `jti` from the system
//! CSPRNG, `iat` now and a short `exp`, so a captured assertion is worth little and a
//! server that tracks `jti` (RFC 7523 §3 item 7) never sees one twice.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::oauth::pkce::random_token;

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one token request, short enough that
/// a copy is useless soon after (RFC 7523 §3 item 4 leaves the length to the client).
const LIFETIME: Duration = Duration::from_secs(60);

/// A JWS algorithm an assertion key can sign with (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigningAlg {
    ES256,
    ES384,
    RS256,
    PS256,
    EdDSA,
}

impl SigningAlg {
    /// Every algorithm, by its JOSE name (the values `--remote-auth-client-assertion-alg` takes).
    pub(crate) const NAMES: [&'static str; 5] = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];

    pub(crate) fn from_name(name: &str) -> Option<SigningAlg> {
        Some(match name {
            "ES256" => SigningAlg::ES256,
            "ES384" => SigningAlg::ES384,
            "RS256" => SigningAlg::RS256,
            "PS256" => SigningAlg::PS256,
            "EdDSA" => SigningAlg::EdDSA,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::ES384 => "ES384",
            SigningAlg::RS256 => "RS256",
            SigningAlg::PS256 => "PS256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs client assertions. Its Debug shows the algorithm only.
pub(crate) struct AssertionKey {
    alg: SigningAlg,
    signer: Signer,
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionKey({}, [REDACTED])", self.alg.name())
    }
}

/// Why a key cannot be used. No variant carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum KeyError {
    #[error("holds no PEM private key (PKCS#8 \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\")")]
    NoKey,
    #[error("holds a private key of a kind that cannot sign assertions (supported: EC P-256, EC P-384, RSA, Ed25519)")]
    Unsupported,
    #[error("holds a {key} key, which cannot sign {alg}")]
    AlgMismatch { key: &'static str, alg: &'static str },
}

impl AssertionKey {
    /// Reads a PEM private key; `alg` overrides the algorithm the key implies.
    pub(crate) fn from_pem(pem: &[u8], alg: Option<SigningAlg>) -> Result<AssertionKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NoKey)?;
        let (signer, natural) = match &der {
            PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8(k.secret_pkcs8_der())?,
            PrivateKeyDer::Sec1(k) => Self::ecdsa(|a| EcdsaKeyPair::from_private_key_der(a, k.secret_sec1_der()))?,
            PrivateKeyDer::Pkcs1(k) => (
                Signer::Rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(|_| KeyError::Unsupported)?),
                SigningAlg::RS256,
            ),
            _ => return Err(KeyError::Unsupported),
        };
        let alg = alg.unwrap_or(natural);
        let fits = match natural {
            // An RSA key signs either padding; a curve fixes its algorithm.
            SigningAlg::RS256 | SigningAlg::PS256 => matches!(alg, SigningAlg::RS256 | SigningAlg::PS256),
            other => alg == other,
        };
        if !fits {
            let key = match natural {
                SigningAlg::ES256 => "EC P-256",
                SigningAlg::ES384 => "EC P-384",
                SigningAlg::EdDSA => "Ed25519",
                SigningAlg::RS256 | SigningAlg::PS256 => "RSA",
            };
            return Err(KeyError::AlgMismatch { key, alg: alg.name() });
        }
        Ok(AssertionKey { alg, signer })
    }

    fn from_pkcs8(der: &[u8]) -> Result<(Signer, SigningAlg), KeyError> {
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok((Signer::Ed25519(k), SigningAlg::EdDSA));
        }
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok((Signer::Rsa(k), SigningAlg::RS256));
        }
        Self::ecdsa(|a| EcdsaKeyPair::from_pkcs8(a, der))
    }

    /// Tries the curves in turn: a key parses only with its own.
    fn ecdsa<E>(
        parse: impl Fn(&'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> Result<EcdsaKeyPair, E>,
    ) -> Result<(Signer, SigningAlg), KeyError> {
        if let Ok(k) = parse(&ECDSA_P256_SHA256_FIXED_SIGNING) {
            return Ok((Signer::Ecdsa(k), SigningAlg::ES256));
        }
        if let Ok(k) = parse(&ECDSA_P384_SHA384_FIXED_SIGNING) {
            return Ok((Signer::Ecdsa(k), SigningAlg::ES384));
        }
        Err(KeyError::Unsupported)
    }

    pub(crate) fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// A fresh client assertion for `client_id` (RFC 7523 §3: `iss` = `sub` = the client,
    /// `aud` = the authorization server, `exp`, `iat`, a unique `jti`).
    pub(crate) fn client_assertion(&self, client_id: &str, audience: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = serde_json::json!({"alg": self.alg.name(), "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME.as_secs(),
            "jti": random_token(),
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        // Signing with a key that parsed fails only if the system random source does,
        // which leaves nothing sensible to do (as for PKCE verifiers).
        match &self.signer {
            Signer::Ecdsa(k) => k.sign(&rng, message).expect("ECDSA signing failed").as_ref().to_vec(),
            Signer::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            Signer::Rsa(k) => {
                let padding = if self.alg == SigningAlg::PS256 { &RSA_PSS_SHA256 } else { &RSA_PKCS1_SHA256 };
                let mut signature = vec![0u8; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut signature).expect("RSA signing failed");
                signature
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, KeyPair, RSA_PKCS1_2048_8192_SHA256,
        RSA_PSS_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
    };
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    use super::*;

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n")).into_bytes()
    }

    /// Splits a JWS, checks its signature with `public` and returns header and claims.
    fn verify(jwt: &str, alg: &'static dyn VerificationAlgorithm, public: &[u8]) -> (Value, Value) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(alg, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies with the public key");
        let json = |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        (json(parts[0]), json(parts[1]))
    }

    fn check_claims(header: &Value, claims: &Value, alg: &str) {
        assert_eq!(header["alg"], alg);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://as.example");
        let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(iat.abs_diff(now) <= 2 && exp == iat + 60, "iat {iat}, exp {exp}, now {now}");
        assert!(claims["jti"].as_str().unwrap().len() >= 43, "256 random bits");
    }

    /// Each supported key kind yields assertions whose signature verifies with its public
    /// key under the algorithm the key implies (or the override), with the RFC 7523 claims.
    #[test]
    fn assertions_verify_for_every_algorithm() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let p384 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let ed = Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa_der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&rsa).unwrap();
        let public = |pkcs8: &[u8], a| EcdsaKeyPair::from_pkcs8(a, pkcs8).unwrap().public_key().as_ref().to_vec();
        // (PEM, override, expected alg, verification, public key)
        type Case = (Vec<u8>, Option<SigningAlg>, &'static str, &'static dyn VerificationAlgorithm, Vec<u8>);
        let cases: Vec<Case> = vec![
            (
                pem("PRIVATE KEY", p256.as_ref()),
                None,
                "ES256",
                &ECDSA_P256_SHA256_FIXED,
                public(p256.as_ref(), &ECDSA_P256_SHA256_FIXED_SIGNING),
            ),
            (
                pem("PRIVATE KEY", p384.as_ref()),
                None,
                "ES384",
                &ECDSA_P384_SHA384_FIXED,
                public(p384.as_ref(), &ECDSA_P384_SHA384_FIXED_SIGNING),
            ),
            (
                pem("PRIVATE KEY", ed.as_ref()),
                None,
                "EdDSA",
                &ED25519,
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(ed.as_ref()).unwrap().public_key().as_ref().to_vec(),
            ),
            (
                pem("PRIVATE KEY", rsa_der.as_ref()),
                None,
                "RS256",
                &RSA_PKCS1_2048_8192_SHA256,
                rsa.public_key().as_ref().to_vec(),
            ),
            (
                pem("PRIVATE KEY", rsa_der.as_ref()),
                Some(SigningAlg::PS256),
                "PS256",
                &RSA_PSS_2048_8192_SHA256,
                rsa.public_key().as_ref().to_vec(),
            ),
        ];
        for (pem, alg, name, verification, public) in cases {
            let key = AssertionKey::from_pem(&pem, alg).unwrap();
            assert_eq!(key.alg().name(), name);
            let first = key.client_assertion("client-1", "https://as.example");
            let (header, claims) = verify(&first, verification, &public);
            check_claims(&header, &claims, name);
            let (_, again) = verify(&key.client_assertion("client-1", "https://as.example"), verification, &public);
            assert_ne!(claims["jti"], again["jti"], "{name}: a fresh jti for every assertion");
            assert!(!format!("{key:?}").contains(&STANDARD.encode(&pem)[..20]), "Debug shows no key");
        }
    }

    /// SEC1 EC keys parse; keys and overrides that do not fit are refused by name.
    #[test]
    fn key_formats_and_mismatches() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sec1 = p256.private_key().as_der().unwrap();
        let key = AssertionKey::from_pem(&pem("EC PRIVATE KEY", sec1.as_ref()), None).unwrap();
        assert_eq!(key.alg(), SigningAlg::ES256);
        let p8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        assert_eq!(
            AssertionKey::from_pem(&pem("PRIVATE KEY", p8.as_ref()), Some(SigningAlg::RS256)).unwrap_err(),
            KeyError::AlgMismatch { key: "EC P-256", alg: "RS256" }
        );
        assert_eq!(AssertionKey::from_pem(b"not a key", None).unwrap_err(), KeyError::NoKey);
        assert_eq!(
            AssertionKey::from_pem(&pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00"), None).unwrap_err(),
            KeyError::Unsupported
        );
        for name in SigningAlg::NAMES {
            assert_eq!(SigningAlg::from_name(name).unwrap().name(), name);
        }
    }
}
