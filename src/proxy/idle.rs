//! Idle connections to the target, kept for reuse (RFC 9112 §9.3), for both hyper's pool
//! ([`pool`](super::pool)) and the own path's ([`h1::upstream`](super::h1::upstream)).
//!
//! A stack: the most recently used connection, whose socket and buffers are warm, is
//! taken first; the oldest goes when the stack is full; a background task drops those
//! idle for longer than [`IDLE_TIMEOUT`] or found dead.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long an idle connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most idle connections kept: enough for steady load, while a burst of clients does not
/// leave hundreds of idle upstream connections behind.
pub(crate) const MAX_IDLE: usize = 256;

/// Idle connections of type `C`, oldest first.
pub(crate) struct IdleStack<C> {
    idle: Mutex<VecDeque<(C, Instant)>>,
}

impl<C> Default for IdleStack<C> {
    fn default() -> Self {
        IdleStack { idle: Mutex::new(VecDeque::new()) }
    }
}

impl<C> IdleStack<C> {
    /// The most recently returned connection.
    pub(crate) fn pop(&self) -> Option<C> {
        // Its own statement at every call site: the lock is released before any await.
        self.lock().pop_back().map(|(c, _)| c)
    }

    /// Returns a connection; the oldest is dropped when the stack is full.
    pub(crate) fn push(&self, conn: C) {
        let mut idle = self.lock();
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back((conn, Instant::now()));
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(C, Instant)>> {
        // Plain pushes and pops: a panic cannot leave the deque half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Inside a Tokio runtime, starts the task that drops connections of `owner`'s stack idle
/// for longer than [`IDLE_TIMEOUT`] (or `dead`), until `owner` is gone.
pub(crate) fn spawn_reaper<T, C>(owner: Weak<T>, stack: fn(&T) -> &IdleStack<C>, dead: fn(&C) -> bool)
where
    T: Send + Sync + 'static,
    C: 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(owner) = owner.upgrade() else { return };
            let now = Instant::now();
            stack(&owner).lock().retain(|(c, since)| !dead(c) && now.duration_since(*since) <= IDLE_TIMEOUT);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_comes_first_and_the_oldest_goes_when_full() {
        let stack = IdleStack::default();
        for i in 0..MAX_IDLE + 2 {
            stack.push(i);
        }
        assert_eq!(stack.pop(), Some(MAX_IDLE + 1));
        let mut rest = Vec::new();
        while let Some(c) = stack.pop() {
            rest.push(c);
        }
        assert_eq!(rest.len(), MAX_IDLE - 1);
        assert_eq!(rest.last(), Some(&2), "the two oldest were dropped");
    }
}
