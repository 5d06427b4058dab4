//! Fair queueing for writers of one object within this process.
//!
//! Writes are optimistic: read, merge, compare-and-swap. When writers on one object keep
//! colliding, pure retrying is unfair: a writer whose attempts are always a little later than
//! another thread's never wins (the contention bench saw 64 straight losses). So after a lost
//! race a writer queues at the object's gate (a FIFO async mutex) and retries holding it, and
//! while anyone is queued, new writers of that object queue too. Uncontended writes never
//! touch a gate beyond one map lookup; other processes still meet at the store's
//! compare-and-swap.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::ObjectKey;

const SHARDS: usize = 64;

type Gate = Arc<tokio::sync::Mutex<()>>;

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

    /// Whether writers are queueing for `key` (then a new writer should queue too).
    pub(crate) fn is_busy(&self, key: &ObjectKey) -> bool {
        if self.open.load(Ordering::Acquire) == 0 {
            return false;
        }
        let shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.contains_key(key)
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
        let mut guard = GateGuard {
            gates: self,
            key: key.clone(),
            gate: gate.clone(),
            held: None,
        };
        guard.held = Some(gate.lock_owned().await);
        guard
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        // Release the gate first: its guard holds a reference to the gate too.
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

    #[tokio::test]
    async fn gates_exist_only_while_writers_queue() {
        let gates = WriteGates::new();
        let key = ObjectKey::new("t", "u");
        assert!(!gates.is_busy(&key));
        let first = gates.enter(&key).await;
        assert!(gates.is_busy(&key));
        assert!(!gates.is_busy(&ObjectKey::new("t", "other")));
        drop(first);
        assert!(!gates.is_busy(&key), "the gate outlived its last writer");
        assert_eq!(gates.open.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_writer_cancelled_while_queueing_leaves_no_gate() {
        let gates = WriteGates::new();
        let key = ObjectKey::new("t", "u");
        let first = gates.enter(&key).await;
        // A second writer starts waiting; the first leaves (the gate stays: someone waits);
        // then the waiter is cancelled before it ever runs again.
        let mut waiting = Box::pin(gates.enter(&key));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drop(first);
        assert!(gates.is_busy(&key));
        drop(waiting);
        assert!(
            !gates.is_busy(&key),
            "a cancelled waiter left the gate behind"
        );
        assert_eq!(gates.open.load(Ordering::Acquire), 0);
    }
}
