//! A bounded cache keyed by token digest in which each key is fetched by one task at a
//! time (single flight): concurrent requests for the same key wait for the one fetch in
//! progress and share its result, success or failure; requests for other keys never wait
//! for it. The map's lock is held only to look up or change an entry, never across an
//! await.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::watch;

/// How many fetches a request waits for before it fetches on its own, uncached: each wait
/// ends early only when the fetching request was cancelled (its client went away).
const MAX_WAITS: usize = 3;

enum Slot<V, E> {
    /// Fetched, and usable until `until`.
    Ready { value: V, until: Instant },
    /// Being fetched by flight `id`; its result is published on `done`.
    Pending { id: u64, done: watch::Receiver<Option<Result<V, E>>> },
}

/// The cache. `V` and `E` are cheap to clone (they are handed to every waiter).
pub(crate) struct Flights<V, E> {
    slots: Mutex<HashMap<[u8; 32], Slot<V, E>>>,
    capacity: usize,
    next_id: AtomicU64,
}

/// What a request found under its key.
enum Found<V, E> {
    Value(V),
    Wait(watch::Receiver<Option<Result<V, E>>>),
    Lead(u64, watch::Sender<Option<Result<V, E>>>),
}

impl<V: Clone, E: Clone> Flights<V, E> {
    /// A cache of at most `capacity` fetched values (fetches in progress come on top:
    /// they are bounded by the requests in progress).
    pub(crate) fn new(capacity: usize) -> Flights<V, E> {
        Flights { slots: Mutex::new(HashMap::new()), capacity, next_id: AtomicU64::new(0) }
    }

    /// The value under `key`: cached, or fetched by `fetch` (which says until when the
    /// value may be reused), once for all the requests that ask for it meanwhile.
    pub(crate) async fn get<F, Fut>(&self, key: [u8; 32], fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Instant), E>>,
    {
        for _ in 0..MAX_WAITS {
            match self.find(key) {
                Found::Value(value) => return Ok(value),
                Found::Wait(mut done) => {
                    if let Ok(result) = done.wait_for(Option::is_some).await
                        && let Some(result) = result.as_ref()
                    {
                        return result.clone();
                    }
                    // The fetching request was cancelled: look again (and maybe lead).
                }
                Found::Lead(id, tx) => return self.lead(key, id, tx, fetch).await,
            }
        }
        fetch().await.map(|(value, _)| value)
    }

    fn find(&self, key: [u8; 32]) -> Found<V, E> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&key) {
            Some(Slot::Ready { value, until }) if *until > now => return Found::Value(value.clone()),
            Some(Slot::Pending { done, .. }) if done.has_changed().is_ok() => return Found::Wait(done.clone()),
            _ => {}
        }
        if slots.len() >= self.capacity && !slots.contains_key(&key) {
            slots.retain(|_, s| match s {
                Slot::Ready { until, .. } => *until > now,
                Slot::Pending { .. } => true,
            });
            if slots.len() >= self.capacity {
                // A flood of distinct keys must not grow memory: start over.
                slots.retain(|_, s| matches!(s, Slot::Pending { .. }));
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, done) = watch::channel(None);
        slots.insert(key, Slot::Pending { id, done });
        Found::Lead(id, tx)
    }

    async fn lead<F, Fut>(
        &self,
        key: [u8; 32],
        id: u64,
        tx: watch::Sender<Option<Result<V, E>>>,
        fetch: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Instant), E>>,
    {
        let mut flight = Flight { flights: self, key, id, landed: false };
        let result = fetch().await;
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(slots.get(&key), Some(Slot::Pending { id: current, .. }) if *current == id) {
                match &result {
                    Ok((value, until)) if *until > Instant::now() => {
                        slots.insert(key, Slot::Ready { value: value.clone(), until: *until });
                    }
                    // Failures are not kept: the next request asks again.
                    _ => {
                        slots.remove(&key);
                    }
                }
            }
        }
        flight.landed = true;
        let result = result.map(|(value, _)| value);
        let _ = tx.send(Some(result.clone()));
        result
    }

    /// Number of entries, fetched or in progress.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().map_or(0, |s| s.len())
    }
}

/// A fetch in progress: when its request is cancelled before it lands, its entry goes, so
/// that the waiters (woken as its sender drops) fetch again instead of waiting forever.
struct Flight<'a, V, E> {
    flights: &'a Flights<V, E>,
    key: [u8; 32],
    id: u64,
    landed: bool,
}

impl<V, E> Drop for Flight<'_, V, E> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        let mut slots = self.flights.slots.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(slots.get(&self.key), Some(Slot::Pending { id, .. }) if *id == self.id) {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    type Cache = Flights<String, String>;

    fn later(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn one_fetch_per_key_at_a_time_and_other_keys_do_not_wait() {
        let cache = Arc::new(Cache::new(100));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, gate) = watch::channel(false);
        let mut waiting = Vec::new();
        for _ in 0..8 {
            let (cache, fetches, mut gate) = (cache.clone(), fetches.clone(), gate.clone());
            waiting.push(tokio::spawn(async move {
                cache
                    .get([1; 32], || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(("A".to_owned(), later(60)))
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Key 1's fetch is stuck; key 2 is served meanwhile.
        let other = tokio::time::timeout(
            Duration::from_secs(2),
            cache.get([2; 32], || async { Ok(("B".to_owned(), later(60))) }),
        )
        .await
        .expect("another key does not wait for key 1's fetch");
        assert_eq!(other.unwrap(), "B");
        release.send(true).unwrap();
        for w in waiting {
            assert_eq!(w.await.unwrap().unwrap(), "A");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "eight requests, one fetch");
        let again = cache.get([1; 32], || async { Ok(("C".to_owned(), later(60))) }).await.unwrap();
        assert_eq!(again, "A", "reused until its end");
    }

    #[tokio::test]
    async fn failures_are_shared_by_waiters_but_not_kept() {
        let cache = Arc::new(Cache::new(100));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut all = Vec::new();
        for _ in 0..4 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            all.push(tokio::spawn(async move {
                cache
                    .get([3; 32], || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err::<(String, Instant), _>("refused".to_owned())
                    })
                    .await
            }));
        }
        for a in all {
            assert_eq!(a.await.unwrap().unwrap_err(), "refused");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(cache.len(), 0, "a failure is not cached");
        let ok = cache.get([3; 32], || async { Ok(("D".to_owned(), later(60))) }).await;
        assert_eq!(ok.unwrap(), "D", "the next request asks again");
    }

    #[tokio::test]
    async fn expired_values_are_fetched_again_and_a_cancelled_fetch_frees_its_waiters() {
        let cache = Arc::new(Cache::new(100));
        let v =
            cache.get([4; 32], || async { Ok(("old".to_owned(), Instant::now() + Duration::from_millis(30))) }).await;
        assert_eq!(v.unwrap(), "old");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let v = cache.get([4; 32], || async { Ok(("new".to_owned(), later(60))) }).await;
        assert_eq!(v.unwrap(), "new", "past its end, fetched again");

        let stuck = {
            let cache = cache.clone();
            tokio::spawn(
                async move { cache.get([5; 32], std::future::pending::<Result<(String, Instant), String>>).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get([5; 32], || async { Ok(("mine".to_owned(), later(60))) }).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        stuck.abort();
        let got = tokio::time::timeout(Duration::from_secs(2), waiter).await.expect("the waiter is freed");
        assert_eq!(got.unwrap().unwrap(), "mine");
    }

    #[tokio::test]
    async fn the_size_is_bounded() {
        let cache = Cache::new(4);
        for i in 0..20u8 {
            let _ = cache.get([i; 32], || async { Ok(("v".to_owned(), later(60))) }).await;
            assert!(cache.len() <= 4, "{}", cache.len());
        }
    }
}
