//! DPoP, Demonstrating Proof of Possession (RFC 9449): the client's key, its proofs, and
//! the nonces servers hand out.
//!
//! - [`DpopKey`]: an EC P-256 key (ES256, RFC 7518 §3.4) made per login from the system
//!   CSPRNG; its public half goes in every proof's `jwk` header (§4.2), its PKCS#8 form is
//!   what a token store keeps (a refreshed token stays bound to it, §5).
//! - [`Dpop::proof`]: a fresh proof JWT (§4.2): header `typ: dpop+jwt`, `alg`, `jwk`;
//!   claims `jti` (random), `htm`, `htu` (without query and fragment), `iat`, `ath` (the
//!   access token's base64url SHA-256, §4.2, on resource requests), `nonce` (§8, §9) when
//!   the server gave one.
//! - Nonces are remembered per server origin: the latest one a server sent (in a
//!   `DPoP-Nonce` header, §8.2, §9) goes in the next proof to it.
//!
//! Protocol only: when to use DPoP and when to retry is the caller's (`outbound`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

use crate::oauth::pkce::random_token;

/// The `DPoP` request header (RFC 9449 §4.1).
pub(crate) const DPOP_HEADER: &str = "dpop";
/// The `DPoP-Nonce` response header (RFC 9449 §8, §9).
pub(crate) const NONCE_HEADER: &str = "dpop-nonce";
/// The error a server answers with when it wants a (new) nonce (RFC 9449 §8, §9).
pub(crate) const USE_DPOP_NONCE: &str = "use_dpop_nonce";
/// The one algorithm the proxy signs proofs with.
pub(crate) const ALG: &str = "ES256";

/// Whether an authorization server's `dpop_signing_alg_values_supported` (RFC 9449 §5.1)
/// lets the proxy use DPoP: it lists [`ALG`].
pub(crate) fn supported(algs: &[String]) -> bool {
    algs.iter().any(|a| a == ALG)
}

/// A DPoP key: EC P-256. Debug shows nothing of it.
pub(crate) struct DpopKey {
    pair: EcdsaKeyPair,
    /// PKCS#8 of the private key, base64 (what a token store keeps).
    pkcs8: SecretString,
    /// The public JWK's `x` and `y` (RFC 7518 §6.2.1), base64url.
    x: String,
    y: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopKey(ES256, [REDACTED])")
    }
}

impl DpopKey {
    /// A new key from the system CSPRNG.
    pub(crate) fn generate() -> DpopKey {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("the system random source failed");
        Self::from_pkcs8(doc.as_ref()).expect("a key just made parses")
    }

    /// The key a store kept ([`DpopKey::stored`]); `None` if it is not one.
    pub(crate) fn from_stored(stored: &str) -> Option<DpopKey> {
        Self::from_pkcs8(&STANDARD.decode(stored).ok()?)
    }

    fn from_pkcs8(der: &[u8]) -> Option<DpopKey> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?;
        // An uncompressed point: 0x04 || x || y, 32 bytes each.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return None;
        }
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        Some(DpopKey { pair, pkcs8: SecretString::from(STANDARD.encode(der)), x, y })
    }

    /// The private key as a token store keeps it.
    pub(crate) fn stored(&self) -> &SecretString {
        &self.pkcs8
    }

    /// The public JWK in the canonical member order of RFC 7638 §3.2.
    fn jwk(&self) -> String {
        format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, self.x, self.y)
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), which a bound token's `cnf.jkt` names.
    #[cfg(test)]
    pub(crate) fn thumbprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.jwk().as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

/// `ath` for an access token (RFC 9449 §4.2): base64url SHA-256 of its ASCII.
pub(crate) fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes()).as_ref())
}

/// Where a proof is for: `htu` (the URI without query and fragment, RFC 9449 §4.2) and the
/// origin its server's nonce is kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Htu {
    pub(crate) htu: String,
    pub(crate) origin: String,
}

impl Htu {
    pub(crate) fn from_url(url: &url::Url) -> Htu {
        let origin = url.origin().ascii_serialization();
        Htu { htu: format!("{origin}{}", url.path()), origin }
    }
}

/// A login's DPoP state: its key and the latest nonce of each server.
pub(crate) struct Dpop {
    key: DpopKey,
    nonces: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dpop(ES256)")
    }
}

impl Dpop {
    pub(crate) fn new(key: DpopKey) -> Dpop {
        Dpop { key, nonces: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn key(&self) -> &DpopKey {
        &self.key
    }

    /// Keeps `nonce` for later proofs to `origin`'s server. A value outside the nonce
    /// syntax (RFC 9449 §8.1: `1*NQCHAR`, printable ASCII but `"` and `\`) is not kept.
    pub(crate) fn remember_nonce(&self, origin: &str, nonce: &str) {
        let nqchar = |b: u8| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\';
        if nonce.is_empty() || nonce.len() > 1024 || !nonce.bytes().all(nqchar) {
            return;
        }
        let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        if nonces.get(origin).is_none_or(|n| n != nonce) {
            nonces.insert(origin.to_owned(), nonce.to_owned());
        }
    }

    /// The nonce last given by `origin`'s server.
    pub(crate) fn nonce(&self, origin: &str) -> Option<String> {
        self.nonces.lock().unwrap_or_else(|e| e.into_inner()).get(origin).cloned()
    }

    /// A fresh proof for a `htm` request to `to`, with `ath` on a resource request and the
    /// server's latest nonce if it gave one.
    pub(crate) fn proof(&self, htm: &str, to: &Htu, ath: Option<&str>) -> String {
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = format!(r#"{{"alg":"{ALG}","typ":"dpop+jwt","jwk":{}}}"#, self.key.jwk());
        let mut claims = serde_json::json!({"jti": random_token(), "htm": htm, "htu": to.htu, "iat": iat});
        if let Some(ath) = ath {
            claims["ath"] = ath.into();
        }
        if let Some(nonce) = self.nonce(&to.origin) {
            claims["nonce"] = nonce.into();
        }
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims.to_string()));
        // Signing with a key that parsed fails only if the system random source does.
        let signature = self.key.pair.sign(&SystemRandom::new(), input.as_bytes()).expect("ECDSA signing failed");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// The stored key, exposed only to be written to the 0600 store.
pub(crate) fn expose_stored(key: &DpopKey) -> String {
    key.stored().expose_secret().to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    use serde_json::Value;

    use super::*;

    /// Verifies `proof` as a server does (RFC 9449 §4.3): its header, the signature with
    /// the header's own `jwk`; returns header and claims.
    pub(crate) fn verify(proof: &str) -> (Value, Value) {
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("dpop+jwt"), Some("ES256")));
        let jwk = &header["jwk"];
        assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert!(jwk.get("d").is_none(), "no private key in the proof");
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the proof's signature verifies with its jwk");
        (header, claims)
    }

    fn to(url: &str) -> Htu {
        Htu::from_url(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn a_proof_is_signed_by_its_jwk_and_carries_the_claims() {
        let dpop = Dpop::new(DpopKey::generate());
        let token = "eyJ.token.x";
        let proof = dpop.proof("POST", &to("https://mcp.example/mcp?x=1#f"), Some(&ath(token)));
        let (header, claims) = verify(&proof);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://mcp.example/mcp", "no query, no fragment");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(claims["iat"].as_u64().unwrap().abs_diff(now) <= 2);
        let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        assert_eq!(claims["ath"].as_str().unwrap(), URL_SAFE_NO_PAD.encode(sha.as_ref()));
        assert!(claims.get("nonce").is_none());
        // The thumbprint is over the header's jwk (RFC 7638 canonical form).
        let jwk = &header["jwk"];
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        assert_eq!(dpop.key().thumbprint(), URL_SAFE_NO_PAD.encode(digest.as_ref()));
        // A token request's proof has no ath.
        let (_, claims) = verify(&dpop.proof("POST", &to("https://as.example/token"), None));
        assert!(claims.get("ath").is_none());
    }

    #[test]
    fn every_proof_has_its_own_jti() {
        let dpop = Dpop::new(DpopKey::generate());
        let target = to("https://mcp.example/mcp");
        let jtis: std::collections::HashSet<String> =
            (0..20).map(|_| verify(&dpop.proof("GET", &target, None)).1["jti"].as_str().unwrap().to_owned()).collect();
        assert_eq!(jtis.len(), 20);
    }

    #[test]
    fn nonces_are_per_server_and_the_latest_wins() {
        let dpop = Dpop::new(DpopKey::generate());
        let (rs, auth) = (to("https://mcp.example/mcp"), to("https://as.example:8443/token"));
        assert_eq!(auth.origin, "https://as.example:8443");
        dpop.remember_nonce(&rs.origin, "n1");
        dpop.remember_nonce(&rs.origin, "n2");
        dpop.remember_nonce(&rs.origin, "bad\"nonce");
        assert_eq!(verify(&dpop.proof("POST", &rs, None)).1["nonce"], "n2");
        assert!(verify(&dpop.proof("POST", &auth, None)).1.get("nonce").is_none(), "another server's");
    }

    #[test]
    fn a_stored_key_signs_as_the_same_key() {
        let key = DpopKey::generate();
        // interop/outbound/conformance_client.py searches thv's log for this prefix.
        assert!(expose_stored(&key).starts_with("MIGHAgEA"), "PKCS#8 of a P-256 key, base64");
        let again = DpopKey::from_stored(&expose_stored(&key)).unwrap();
        assert_eq!(key.thumbprint(), again.thumbprint());
        assert!(DpopKey::from_stored("not a key").is_none());
        assert_eq!(format!("{key:?}"), "DpopKey(ES256, [REDACTED])");
    }

    #[test]
    fn only_es256_is_supported() {
        assert!(supported(&["RS256".into(), "ES256".into()]));
        assert!(!supported(&["RS256".into()]));
        assert!(!supported(&[]));
    }
}
