//! A bounded cache of verified tokens, so the same token is not verified (or introspected)
//! again on every request. Keys are SHA-256 digests of the token: the cache never holds a
//! usable token, and a lookup costs one hash of a few hundred bytes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::inbound::Identity;

/// What a cached token resolved to.
#[derive(Clone)]
pub(crate) enum Cached {
    /// Valid until the entry's deadline.
    Valid(Arc<Identity>),
    /// Known bad (negative cache, short-lived).
    Invalid,
}

struct Entry {
    value: Cached,
    /// Unix seconds after which the entry is ignored.
    until: u64,
}

/// A token-digest → verdict map with a size bound.
pub(crate) struct TokenCache {
    map: RwLock<HashMap<[u8; 32], Entry>>,
    capacity: usize,
}

/// The cache key for `token`.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens.
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache { map: RwLock::new(HashMap::new()), capacity }
    }

    /// The live entry for `key`, if any, with the Unix second it ends.
    pub(crate) fn get(&self, key: &[u8; 32], now: u64) -> Option<(Cached, u64)> {
        let map = self.map.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(key).filter(|e| e.until > now).map(|e| (e.value.clone(), e.until))
    }

    /// Stores a verdict until `until` (Unix seconds). When full, expired entries go first;
    /// if that is not enough the cache starts over (a flood of distinct tokens must not
    /// grow memory without bound).
    pub(crate) fn insert(&self, key: [u8; 32], value: Cached, until: u64, now: u64) {
        if until <= now {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| e.until > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, Entry { value, until });
    }

    /// Number of entries (live or not).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Arc<Identity> {
        Arc::new(Identity { subject: "u".into(), scopes: vec![], claims: Default::default(), until: 0 })
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let cache = TokenCache::new(2);
        cache.insert(digest("a"), Cached::Valid(identity()), 100, 10);
        assert!(matches!(cache.get(&digest("a"), 50), Some((Cached::Valid(_), 100))));
        assert!(cache.get(&digest("a"), 100).is_none(), "expired at its deadline");
        cache.insert(digest("b"), Cached::Invalid, 20, 10);
        cache.insert(digest("c"), Cached::Invalid, 200, 30); // b expired: evicted first
        assert_eq!(cache.len(), 2);
        cache.insert(digest("d"), Cached::Invalid, 200, 30);
        assert!(cache.len() <= 2);
        cache.insert(digest("e"), Cached::Invalid, 5, 10);
        assert!(cache.get(&digest("e"), 10).is_none(), "already-expired verdicts are not stored");
    }
}
