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
use std::sync::{Arc, Mutex};

use crate::store::ObjectKey;

const SHARDS: usize = 64;

type Gate = Arc<tokio::sync::Mutex<()>>;

/// The gates of objects that writers are queueing for.
#[derive(Debug)]
pub(crate) struct WriteGates {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<ObjectKey, Gate>>]>,
}

/// A writer's place at a gate; leaving removes the gate when nobody else waits.
pub(crate) struct GateGuard<'a> {
    gates: &'a WriteGates,
    key: ObjectKey,
    gate: Gate,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteGates {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: &ObjectKey) -> &Mutex<HashMap<ObjectKey, Gate>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Whether writers are queueing for `key` (then a new writer should queue too).
    pub(crate) fn is_busy(&self, key: &ObjectKey) -> bool {
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        shard.contains_key(key)
    }

    /// Waits for `key`'s gate, creating it if needed.
    pub(crate) async fn enter(&self, key: &ObjectKey) -> GateGuard<'_> {
        let gate = {
            let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
            shard.entry(key.clone()).or_default().clone()
        };
        let held = gate.clone().lock_owned().await;
        GateGuard {
            gates: self,
            key: key.clone(),
            gate,
            _held: held,
        }
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut shard = self
            .gates
            .shard(&self.key)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The map's reference and ours: nobody else holds or waits for this gate.
        if Arc::strong_count(&self.gate) == 2 {
            shard.remove(&self.key);
        }
    }
}
