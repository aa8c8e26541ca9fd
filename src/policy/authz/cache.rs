//! Remembered decisions (ToolHive decides afresh each time; the result is the same). A
//! decision is a pure function of what the request entities and the context hold (the
//! policies and `entities_json` are fixed at startup, and Cedar has no clock), so the same
//! inputs may reuse it: a client that calls the same tool with the same token, as clients
//! do, then pays a lookup (< 1 µs) instead of Cedar's entity building and evaluation
//! (~15 µs, against the proxy's ~20 µs of work per request).
//!
//! The key is the exact bytes of the inputs, encoded by the same walk that builds the Cedar
//! request (see `model`), after pruning to what the policies can see: equal keys mean equal
//! Cedar requests. It is compared in full (no hash-only keys). Bounded: a few thousand entries
//! in shards (≤ 2 MiB), a full shard is emptied; an oversized key is not cached.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::model::Encode;

const SHARDS: usize = 8;
const ENTRIES_PER_SHARD: usize = 256;
/// Larger inputs (long argument strings) are decided afresh each time.
const MAX_KEY_BYTES: usize = 1024;

pub(super) struct DecisionCache {
    shards: [Mutex<HashMap<Box<[u8]>, bool>>; SHARDS],
}

impl DecisionCache {
    pub(super) fn new() -> Self {
        DecisionCache { shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<bool> {
        self.shard(key).get(key).copied()
    }

    pub(super) fn insert(&self, key: Vec<u8>, allowed: bool) {
        if key.len() > MAX_KEY_BYTES {
            return;
        }
        let mut shard = self.shard(&key);
        if shard.len() >= ENTRIES_PER_SHARD {
            shard.clear();
        }
        shard.insert(key.into_boxed_slice(), allowed);
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, HashMap<Box<[u8]>, bool>> {
        // FNV-1a picks the shard; the map inside hashes with a random key (flooding-safe).
        let hash =
            key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        let shard = &self.shards[(hash % SHARDS as u64) as usize];
        // A panic while holding the lock leaves a map that is still consistent.
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An unambiguous byte encoding of Cedar values (tag, length-prefixed contents).
pub(super) struct KeyBytes;

impl KeyBytes {
    pub(super) fn push_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
}

impl Encode for KeyBytes {
    type Value = Vec<u8>;
    fn string(s: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + s.len());
        out.push(b's');
        KeyBytes::push_str(&mut out, s);
        out
    }
    fn boolean(b: bool) -> Vec<u8> {
        vec![if b { b't' } else { b'f' }]
    }
    fn decimal(units: i64) -> Vec<u8> {
        let mut out = vec![b'd'];
        out.extend_from_slice(&units.to_le_bytes());
        out
    }
    fn set(items: Vec<Vec<u8>>) -> Vec<u8> {
        let mut out = vec![b'['];
        out.extend_from_slice(&(items.len() as u64).to_le_bytes());
        items.iter().for_each(|item| out.extend_from_slice(item));
        out
    }
    fn record(fields: Vec<(String, Vec<u8>)>) -> Option<Vec<u8>> {
        let mut out = vec![b'{'];
        out.extend_from_slice(&(fields.len() as u64).to_le_bytes());
        for (key, value) in &fields {
            KeyBytes::push_str(&mut out, key);
            out.extend_from_slice(value);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_bounded_and_exact() {
        let cache = DecisionCache::new();
        cache.insert(b"a".to_vec(), true);
        cache.insert(b"b".to_vec(), false);
        assert_eq!(cache.get(b"a"), Some(true));
        assert_eq!(cache.get(b"b"), Some(false));
        assert_eq!(cache.get(b"c"), None);
        cache.insert(vec![0; MAX_KEY_BYTES + 1], true);
        assert_eq!(cache.get(&vec![0; MAX_KEY_BYTES + 1]), None);
        for i in 0..(SHARDS * ENTRIES_PER_SHARD * 3) as u64 {
            cache.insert(i.to_le_bytes().to_vec(), true);
        }
        let total: usize = cache.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum();
        assert!(total <= SHARDS * ENTRIES_PER_SHARD);
    }

    #[test]
    fn encoding_is_unambiguous() {
        // "ab" + "c" and "a" + "bc" must differ; so must a set of two and a record of one.
        let one = [KeyBytes::string("ab"), KeyBytes::string("c")].concat();
        let two = [KeyBytes::string("a"), KeyBytes::string("bc")].concat();
        assert_ne!(one, two);
        let set = KeyBytes::set(vec![KeyBytes::string("k"), KeyBytes::boolean(true)]);
        let record = KeyBytes::record(vec![("k".to_owned(), KeyBytes::boolean(true))]);
        assert_ne!(Some(set), record);
    }
}
