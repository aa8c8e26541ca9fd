//! The IdP's signing keys (RFC 7517), kept fresh without ever blocking the hot path.
//!
//! - Readers load the current key set lock-free ([`ArcSwap`]).
//! - A token with an unknown `kid` triggers one refetch (OIDC Core §10.1.1: key
//!   rotation), single-flight and at most once per [`REFETCH_INTERVAL`], so a flood of
//!   made-up `kid`s cannot turn the proxy into a load generator against the IdP.
//! - A background task refreshes on the IdP's `Cache-Control: max-age`, within bounds.
//! - A failed refresh keeps the last good keys (an IdP outage must not lock users out).
//! - Every fetch (startup, refresh, refetch) is counted in the metrics when telemetry is
//!   on (`thv_inbound_jwks_fetches`): a failing IdP shows there before users are refused.
//!
//! Each key is bound to the algorithms it may verify (RFC 8725 §3.1): its `alg` if the JWK
//! names one, else those its type and curve allow. Symmetric (`oct`) keys are never
//! loaded, so HMAC-with-the-public-key confusion is impossible, and RSA keys under 2048
//! bits are refused (RFC 7518 §3.3).
//!
//! Keys are parsed once, when the set is loaded, into one aws-lc verifier per algorithm
//! the key is bound to: jsonwebtoken's aws-lc backend rebuilt an RSA key from its (n, e)
//! for every signature (16.4 µs per RS256 verification against 13.8 µs with a parsed key,
//! bench/RESULTS.md), and an EC or Ed25519 key that does not decode is refused here, at
//! load time, instead of failing each token that names it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

use crate::inbound::jose::Algorithm;
use crate::oauth::http::{ControlClient, FetchError};
use crate::telemetry::metrics::{Count, Metrics};

/// Least time between two fetches caused by unknown `kid`s.
pub(crate) const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Bounds for the background refresh period taken from `Cache-Control`.
const MIN_REFRESH: Duration = Duration::from_secs(60);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// Retry period of the background refresh after a failure.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The algorithms an RSA key may verify (RFC 7518 §3.3, §3.5).
pub(crate) const RSA_ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// One verification key and what it may verify.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The algorithms this key may verify, in the order of `verifiers`.
    pub algorithms: Vec<Algorithm>,
    /// The parsed key, once per algorithm (aws-lc binds a parsed key to one algorithm).
    verifiers: Vec<ParsedPublicKey>,
}

impl VerifyKey {
    /// The key parsed for `alg`, or `None` when the key is not bound to `alg`.
    pub(crate) fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.algorithms.iter().position(|a| *a == alg).map(|i| &self.verifiers[i])
    }
}

/// The aws-lc verification parameters of an RSA JWS algorithm (RFC 7518 §3.3, §3.5).
fn rsa_parameters(alg: Algorithm) -> Option<&'static lc::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// A snapshot of the IdP's keys.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    all: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// Every key, for tokens without a `kid`.
    pub fn all(&self) -> &[Arc<VerifyKey>] {
        &self.all
    }

    /// Parses a JWKS document, skipping (and logging) keys that cannot be used safely.
    pub fn parse(doc: &Value) -> KeySet {
        let mut set = KeySet::default();
        let Some(keys) = doc.get("keys").and_then(Value::as_array) else { return set };
        for raw in keys {
            match parse_key(raw) {
                Ok(Some(key)) => {
                    let key = Arc::new(key);
                    if let Some(kid) = &key.kid {
                        set.by_kid.insert(kid.clone(), key.clone());
                    }
                    set.all.push(key);
                }
                Ok(None) => {}
                Err(why) => {
                    let kid = raw.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
                    warn!(kid, "ignoring a JWKS key: {why}");
                }
            }
        }
        set
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are no usable keys.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// `Ok(None)` for keys that are not for signatures (encryption keys, `oct`).
fn parse_key(raw: &Value) -> Result<Option<VerifyKey>, String> {
    let text = |k: &str| raw.get(k).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    // RFC 7517 §4.3: a key whose operations do not include verification must not verify.
    if let Some(ops) = raw.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|op| op.as_str() == Some("verify"))
    {
        return Ok(None);
    }
    let kty = text("kty").ok_or("no kty")?;
    let part = |k: &str| -> Result<Vec<u8>, String> {
        let value = text(k).ok_or_else(|| format!("{kty} key without {k}"))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| format!("{k} is not base64url"))
    };
    // What the key's type and curve allow, and how to parse it for one algorithm.
    let (allowed, public): (Vec<Algorithm>, PublicKey) = match (kty, text("crv")) {
        ("RSA", _) => {
            let mut n = part("n")?;
            let e = part("e")?;
            // RFC 7518 §6.3.1.1 forbids leading zero octets; some IdPs send one anyway.
            let zeros = n.iter().take_while(|b| **b == 0).count();
            n.drain(..zeros);
            let bits = n.len() * 8;
            if bits < 2048 {
                return Err(format!("RSA key of {bits} bits is too small (2048 is the minimum)"));
            }
            (RSA_ALGORITHMS.to_vec(), PublicKey::Rsa { n, e })
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (alg, width) = if crv == "P-256" { (Algorithm::ES256, 32) } else { (Algorithm::ES384, 48) };
            let (x, y) = (part("x")?, part("y")?);
            if x.len() != width || y.len() != width {
                return Err(format!("{crv} coordinates must be {width} bytes each"));
            }
            // SEC 1 §2.3.3 uncompressed point: 0x04 || x || y.
            let point = [&[4u8][..], &x, &y].concat();
            (vec![alg], PublicKey::Point(point))
        }
        ("OKP", Some("Ed25519")) => (vec![Algorithm::EdDSA], PublicKey::Point(part("x")?)),
        ("oct", _) => return Ok(None),
        (kty, crv) => return Err(format!("unsupported key type {kty} {}", crv.unwrap_or(""))),
    };
    let algorithms = match text("alg") {
        None => allowed,
        Some(alg) => {
            let alg: Algorithm = alg.parse().map_err(|_| format!("unknown alg {alg}"))?;
            if !allowed.contains(&alg) {
                return Err(format!("alg {alg:?} does not fit a {kty} key"));
            }
            vec![alg]
        }
    };
    let verifiers = algorithms
        .iter()
        .map(|alg| public.parse_for(*alg))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unusable key ({e})"))?;
    Ok(Some(VerifyKey { kid: text("kid").map(str::to_owned), algorithms, verifiers }))
}

/// A JWK's public key material, decoded.
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An EC point (SEC 1 uncompressed) or an Ed25519 public key.
    Point(Vec<u8>),
}

impl PublicKey {
    /// The key parsed for `alg` (already checked to fit the key's type). ECDSA verifies
    /// the fixed-width `r || s` signature that JWS uses (RFC 7518 §3.4), not ASN.1 DER.
    fn parse_for(&self, alg: Algorithm) -> Result<ParsedPublicKey, String> {
        let parsed = match (self, alg) {
            (PublicKey::Rsa { n, e }, alg) => {
                let params = rsa_parameters(alg).ok_or_else(|| format!("{alg:?} with an RSA key"))?;
                RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.to_parsed_public_key(params)
            }
            (PublicKey::Point(p), Algorithm::ES256) => ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, p),
            (PublicKey::Point(p), Algorithm::ES384) => ParsedPublicKey::new(&lc::ECDSA_P384_SHA384_FIXED, p),
            (PublicKey::Point(p), Algorithm::EdDSA) => ParsedPublicKey::new(&lc::ED25519, p),
            (PublicKey::Point(_), alg) => return Err(format!("{alg:?} with an EC or OKP key")),
        };
        parsed.map_err(|e| e.to_string())
    }
}

/// The cached key set of one JWKS URL.
pub struct JwksCache {
    url: Url,
    client: ControlClient,
    keys: ArcSwap<KeySet>,
    /// When the last fetch started; held across a fetch, which makes fetches single-flight.
    last_fetch: Mutex<Instant>,
    /// Where fetches are counted; `None` when telemetry is off.
    metrics: Option<Arc<Metrics>>,
}

impl JwksCache {
    /// Fetches the key set for the first time; fails if the IdP has no usable key.
    pub async fn load(client: ControlClient, url: Url) -> Result<(Arc<JwksCache>, Duration), FetchError> {
        JwksCache::load_counted(client, url, None).await
    }

    /// [`JwksCache::load`], counting this fetch and every later one in `metrics`.
    pub(crate) async fn load_counted(
        client: ControlClient,
        url: Url,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<(Arc<JwksCache>, Duration), FetchError> {
        let (keys, max_age) = fetch(&client, &url, metrics.as_deref()).await?;
        if keys.is_empty() {
            return Err(FetchError::BadAnswer {
                url: url.to_string(),
                what: "a JWKS without any usable signing key".to_owned(),
            });
        }
        info!(url = %url, keys = keys.len(), "loaded the IdP's signing keys");
        // The startup fetch does not count against the rate limit: a key rotated right
        // after startup must still be found by the first token that uses it.
        let allow_refetch = Instant::now().checked_sub(REFETCH_INTERVAL).unwrap_or_else(Instant::now);
        let cache = Arc::new(JwksCache {
            url,
            client,
            keys: ArcSwap::from_pointee(keys),
            last_fetch: Mutex::new(allow_refetch),
            metrics,
        });
        Ok((cache, max_age.unwrap_or(DEFAULT_REFRESH)))
    }

    /// The current keys (lock-free).
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Called when a token names an unknown `kid`: refetches unless a fetch started less
    /// than [`REFETCH_INTERVAL`] ago. Concurrent callers wait for the one fetch.
    pub(crate) async fn refetch_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() < REFETCH_INTERVAL {
            return;
        }
        *last = Instant::now();
        debug!(url = %self.url, "unknown kid: refetching the JWKS");
        self.refresh().await;
    }

    /// Refreshes now; keeps the old keys if the IdP fails. Returns the next period.
    async fn refresh(&self) -> Duration {
        match fetch(&self.client, &self.url, self.metrics.as_deref()).await {
            Ok((keys, _)) if keys.is_empty() => {
                warn!(url = %self.url, "the JWKS has no usable key now; keeping the previous keys");
                RETRY_AFTER_FAILURE
            }
            Ok((keys, max_age)) => {
                self.keys.store(Arc::new(keys));
                max_age.unwrap_or(DEFAULT_REFRESH).clamp(MIN_REFRESH, MAX_REFRESH)
            }
            Err(e) => {
                warn!(error = %e, "refreshing the JWKS failed; keeping the previous keys");
                RETRY_AFTER_FAILURE
            }
        }
    }

    /// Refreshes in the background for the life of the process.
    pub(crate) fn spawn_refresh(self: &Arc<Self>, first: Duration) {
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut wait = first.clamp(MIN_REFRESH, MAX_REFRESH);
            loop {
                tokio::time::sleep(wait).await;
                let Some(cache) = cache.upgrade() else { return };
                *cache.last_fetch.lock().await = Instant::now();
                wait = cache.refresh().await;
            }
        });
    }
}

#[cfg(test)]
impl JwksCache {
    /// A cache that holds `keys` and will not refetch for a while (unit tests).
    pub(crate) fn holding(keys: KeySet) -> Arc<JwksCache> {
        Arc::new(JwksCache {
            url: Url::parse("http://127.0.0.1:9/jwks").expect("a URL"),
            client: ControlClient::new(None).expect("a control client"),
            keys: ArcSwap::from_pointee(keys),
            last_fetch: Mutex::new(Instant::now()),
            metrics: None,
        })
    }
}

/// One fetch of the key set. Counted as ok only when it gave a usable key: a set without
/// one is refused at startup and kept from use on refresh, like a failed fetch.
async fn fetch(
    client: &ControlClient,
    url: &Url,
    metrics: Option<&Metrics>,
) -> Result<(KeySet, Option<Duration>), FetchError> {
    let fetched = client.get_json(url).await.map(|answer| (KeySet::parse(&answer.body), answer.max_age));
    if let Some(metrics) = metrics {
        metrics.count(Count::JwksFetch { ok: fetched.as_ref().is_ok_and(|(keys, _)| !keys.is_empty()) });
    }
    fetched
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::inbound::fake_idp::{FakeIdp, counted};

    const N_2048: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn keys_are_bound_to_their_algorithms() {
        let set = KeySet::parse(&json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": N_2048, "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-ps", "alg": "PS256", "n": N_2048, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N_2048, "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "bad-alg", "crv": "P-256", "alg": "RS256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]}));
        assert_eq!(set.len(), 3, "oct, enc, small and mismatched keys are dropped");
        assert!(set.get("rsa").unwrap().algorithms.contains(&Algorithm::RS256));
        assert_eq!(set.get("rsa-ps").unwrap().algorithms, [Algorithm::PS256]);
        assert_eq!(set.get("ec").unwrap().algorithms, [Algorithm::ES256]);
        for gone in ["hmac", "enc", "small", "bad-alg"] {
            assert!(set.get(gone).is_none(), "{gone}");
        }
        // Each kept key is parsed for exactly the algorithms it is bound to.
        let rsa = set.get("rsa").unwrap();
        assert!(RSA_ALGORITHMS.iter().all(|alg| rsa.verifier(*alg).is_some()));
        assert!(rsa.verifier(Algorithm::ES256).is_none() && rsa.verifier(Algorithm::HS256).is_none());
        assert!(set.get("rsa-ps").unwrap().verifier(Algorithm::RS256).is_none());
    }

    #[test]
    fn keys_that_do_not_decode_are_refused_at_load() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut n = vec![0u8];
        n.extend(b64.decode(N_2048).unwrap());
        let (x, y) = ("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
        let shifted_y = b64.decode(y).unwrap();
        let shifted_x = [b64.decode(x).unwrap(), vec![shifted_y[0]]].concat();
        let set = KeySet::parse(&json!({"keys": [
            // RFC 7518 forbids the leading zero octet, but it is still a 2048-bit key.
            {"kty": "RSA", "kid": "zero", "n": b64.encode(&n), "e": "AQAB"},
            {"kty": "RSA", "kid": "no-e", "n": N_2048},
            {"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": x, "y": y.replace("a0", "a4")},
            // The right 64 bytes, split 33 + 31: each coordinate must have the curve's width
            // (RFC 7518 §6.2.1.2), even where the concatenated point would be valid.
            {"kty": "EC", "kid": "split", "crv": "P-256", "x": b64.encode(&shifted_x), "y": b64.encode(&shifted_y[1..])},
            {"kty": "EC", "kid": "no-y", "crv": "P-256", "x": x},
            {"kty": "OKP", "kid": "ed-short", "crv": "Ed25519", "x": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": x, "y": y},
        ]}));
        assert!(set.get("zero").is_some_and(|k| k.verifier(Algorithm::RS256).is_some()));
        assert_eq!(set.len(), 1, "every other key is refused when the set is loaded");
    }

    /// Every fetch is counted, by whether it gave usable keys: the startup load, a refetch
    /// for an unknown kid (not a second one within the interval: that is no fetch), and
    /// refreshes that fail or find no usable key.
    #[tokio::test]
    async fn every_fetch_is_counted() {
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "rsa", "n": N_2048, "e": "AQAB"}]}).to_string();
        let keyless = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
        let idp = FakeIdp::start(vec![(200, jwks.clone()), (200, jwks), (500, "{}".into()), (200, keyless)]).await;
        let metrics = Arc::new(Metrics::new("s", "streamable-http"));
        let client = ControlClient::new(None).unwrap();
        let fetches = |result| counted(&metrics, "thv_inbound_jwks_fetches", Some(("result", result)));

        let (cache, _) = JwksCache::load_counted(client.clone(), idp.url("jwks"), Some(metrics.clone())).await.unwrap();
        assert_eq!((fetches("ok"), fetches("error")), (1, 0));
        cache.refetch_for_unknown_kid().await;
        cache.refetch_for_unknown_kid().await;
        assert_eq!(idp.served(), 2, "the second refetch is rate-limited");
        assert_eq!((fetches("ok"), fetches("error")), (2, 0));
        cache.refresh().await;
        cache.refresh().await;
        assert_eq!((fetches("ok"), fetches("error")), (2, 2), "an HTTP 500 and a set without a usable key");
        assert_eq!(cache.current().len(), 1, "failed refreshes keep the keys");
        assert!(JwksCache::load_counted(client, idp.url("jwks"), Some(metrics.clone())).await.is_err());
        assert_eq!(fetches("error"), 3, "a failed startup load counts too");
    }
}
