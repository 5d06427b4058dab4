//! Fair queueing for writers of one object within this process.
//!
//! Writes are optimistic: read, merge, compare-and-swap. A writer that loses a race retries
//! at once a few times; one that keeps losing queues at the object's gate (a FIFO async
//! mutex) and retries holding it, so that losers retry one at a time. If even the gate's
//! holder keeps losing (to writers that never lost, which do not queue), it marks the gate
//! *fair*: until that writer is done, every new writer of the object queues too, and the
//! holder's next attempts meet only the writers already in flight. Pure retrying is
//! unfair (the contention bench once saw a writer lose 64 races in a row); queueing everyone
//! from the first loss is fair but slow (each write then waits for an async hand-off, and
//! worker threads park and wake for each). Uncontended writes never touch a gate beyond one
//! atomic load; other processes still meet at the store's compare-and-swap.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::ObjectKey;

const SHARDS: usize = 64;

type Gate = Arc<GateState>;

/// One object's gate.
#[derive(Debug, Default)]
struct GateState {
    queue: Arc<tokio::sync::Mutex<()>>,
    /// Every new writer must queue (a holder kept losing).
    fair: AtomicBool,
}

/// The gates of objects that writers are queueing for.
#[derive(Debug)]
pub(crate) struct WriteGates {
    /// How many gates exist: when none do (the common case), no lookup is needed.
    open: AtomicUsize,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<ObjectKey, Gate>>]>,
}

/// A writer's place at a gate; leaving removes the gate when nobody else waits.
pub(crate) struct GateGuard<'a> {
    gates: &'a WriteGates,
    key: ObjectKey,
    gate: Gate,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// This writer made the gate fair (and ends that when it leaves).
    insisted: bool,
}

impl WriteGates {
    pub(crate) fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: &ObjectKey) -> &Mutex<HashMap<ObjectKey, Gate>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Whether `key`'s gate is fair now: then a new writer must queue too.
    pub(crate) fn is_fair(&self, key: &ObjectKey) -> bool {
        if self.open.load(Ordering::Acquire) == 0 {
            return false;
        }
        let shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard
            .get(key)
            .is_some_and(|gate| gate.fair.load(Ordering::Acquire))
    }

    /// Waits for `key`'s gate, creating it if needed.
    pub(crate) async fn enter(&self, key: &ObjectKey) -> GateGuard<'_> {
        let gate = {
            let mut shard = self
                .shard(key)
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shard
                .entry(key.clone())
                .or_insert_with(|| {
                    self.open.fetch_add(1, Ordering::AcqRel);
                    Gate::default()
                })
                .clone()
        };
        // The guard exists before the wait, so a writer cancelled while queueing still runs
        // the cleanup in `drop`.
        let queue = gate.queue.clone();
        let mut guard = GateGuard {
            gates: self,
            key: key.clone(),
            gate,
            held: None,
            insisted: false,
        };
        guard.held = Some(queue.lock_owned().await);
        guard
    }
}

impl GateGuard<'_> {
    /// Makes every new writer of this object queue behind the gate until this writer is done.
    pub(crate) fn insist_on_fairness(&mut self) {
        self.insisted = true;
        self.gate.fair.store(true, Ordering::Release);
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        if self.insisted {
            self.gate.fair.store(false, Ordering::Release);
        }
        // Let the next writer in first.
        drop(self.held.take());
        let mut shard = self
            .gates
            .shard(&self.key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's reference and ours: nobody else holds or waits for this gate.
        if Arc::strong_count(&self.gate) <= 2 && shard.remove(&self.key).is_some() {
            self.gates.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn open(gates: &WriteGates) -> usize {
        gates.open.load(Ordering::Acquire)
    }

    #[tokio::test]
    async fn gates_exist_only_while_writers_queue_and_are_fair_only_when_asked() {
        let gates = WriteGates::new();
        let key = ObjectKey::new("t", "u");
        let mut first = gates.enter(&key).await;
        assert_eq!(open(&gates), 1);
        assert!(!gates.is_fair(&key), "a new gate lets new writers through");
        first.insist_on_fairness();
        assert!(gates.is_fair(&key));
        assert!(!gates.is_fair(&ObjectKey::new("t", "other")));
        drop(first);
        assert_eq!(open(&gates), 0, "the gate outlived its last writer");
        assert!(!gates.is_fair(&key));
        let again = gates.enter(&key).await;
        assert!(!gates.is_fair(&key), "fairness outlived its gate");
        drop(again);
    }

    #[tokio::test]
    async fn a_writer_cancelled_while_queueing_leaves_no_gate() {
        let gates = WriteGates::new();
        let key = ObjectKey::new("t", "u");
        let mut first = gates.enter(&key).await;
        first.insist_on_fairness();
        // A second writer starts waiting; the first leaves (the gate stays: someone waits);
        // then the waiter is cancelled before it ever runs again.
        let mut waiting = Box::pin(gates.enter(&key));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drop(first);
        assert_eq!(open(&gates), 1, "the gate left while a writer waited");
        assert!(
            !gates.is_fair(&key),
            "fairness outlived the writer that asked for it"
        );
        drop(waiting);
        assert_eq!(open(&gates), 0, "a cancelled waiter left the gate behind");
        assert!(!gates.is_fair(&key));
    }
}
