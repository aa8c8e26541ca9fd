//! `thv::inbound::jwks::KeySet::parse`: the IdP's JWKS document.
//!
//! Input: the JWKS JSON.
//!
//! Invariants: never panics; never more usable keys than the document has; every key is
//! bound to at least one asymmetric algorithm; a key found by `kid` has that kid; and a
//! key whose `kid` is unique in the document is a signature key (`use` absent or `sig`,
//! `key_ops` absent or with `verify`) of type RSA, EC or OKP, whose algorithms are
//! exactly its `alg` when it names one.

use serde_json::Value;
use thv::internals::Algorithm;
use thv::internals::KeySet;

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

pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Ok(doc) = serde_json::from_slice::<Value>(data) else { return };
    let set = KeySet::parse(&doc);
    assert_eq!(set.len(), set.all().len());
    assert_eq!(set.is_empty(), set.all().is_empty());
    let raw_keys: &[Value] = doc.get("keys").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    assert!(set.len() <= raw_keys.len(), "more keys than the document has");
    for key in set.all() {
        assert!(!key.algorithms.is_empty(), "a key bound to no algorithm");
        for alg in &key.algorithms {
            assert!(ASYMMETRIC.contains(alg), "a key usable with {alg:?}");
        }
        if let Some(kid) = &key.kid {
            assert_eq!(set.get(kid).and_then(|k| k.kid.as_deref()), Some(kid.as_str()));
        }
    }
    for raw in raw_keys {
        let Some(kid) = raw.get("kid").and_then(Value::as_str) else { continue };
        let same_kid = raw_keys.iter().filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid)).count();
        let Some(key) = set.get(kid) else { continue };
        if same_kid != 1 {
            continue;
        }
        let text = |k: &str| raw.get(k).and_then(Value::as_str);
        assert!(text("use").is_none_or(|u| u == "sig"), "kept a key with use {:?}", raw.get("use"));
        if let Some(ops) = raw.get("key_ops").and_then(Value::as_array) {
            assert!(ops.iter().any(|o| o.as_str() == Some("verify")), "kept a key whose key_ops lack verify");
        }
        assert!(matches!(text("kty"), Some("RSA" | "EC" | "OKP")), "kept a key of type {:?}", raw.get("kty"));
        if let Some(alg) = text("alg") {
            let alg: Algorithm = alg.parse().expect("kept a key with an unknown alg");
            assert_eq!(key.algorithms, [alg], "the key is not bound to its alg");
        }
    }
}
