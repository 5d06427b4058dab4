//! An in-memory store: sharded maps, so writers to different objects rarely share a lock.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use super::{ObjectKey, SecurityStore, Snapshot, StoreError, SwapOutcome};

/// Power of two, comfortably above the core counts this runs on.
const SHARDS: usize = 64;

/// Keeps objects in memory; nothing survives the process. For tests, benches and embedding.
///
/// Objects are spread over 64 independently locked shards; a lock is held only to read or swap
/// one `Arc`, never while a patch is merged or validated, and never across an `.await`.
///
/// ```
/// use security_update::{MemoryStore, ObjectKey, SecurityStore, Snapshot, SwapOutcome};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let key = ObjectKey::new("tenant", "user");
/// let first = Snapshot::new(1, serde_json::Map::new()).unwrap();
/// assert_eq!(store.compare_and_swap(&key, 0, first.clone()).await.unwrap(), SwapOutcome::Swapped);
/// // A second writer that also started from "absent" loses, and learns what is current.
/// let late = store.compare_and_swap(&key, 0, first.clone()).await.unwrap();
/// assert_eq!(late, SwapOutcome::Conflict { current: Some(first) });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    shared: Arc<Shards>,
}

#[derive(Debug)]
struct Shards {
    hasher: RandomState,
    shards: Box<[RwLock<HashMap<ObjectKey, Snapshot>>]>,
    /// Objects per tenant, counted as they are created (objects are never deleted).
    tenants: std::sync::Mutex<HashMap<Box<str>, u64>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shards {
                hasher: RandomState::new(),
                shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
                tenants: std::sync::Mutex::default(),
            }),
        }
    }

    /// How many objects are stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .map_or_else(|p| p.into_inner().len(), |s| s.len())
            })
            .sum()
    }

    /// Every stored object, sorted by key: a consistent-enough view for tests and tools
    /// (each shard is read atomically, not the whole store).
    #[must_use]
    pub fn entries(&self) -> Vec<(ObjectKey, Snapshot)> {
        let mut all: Vec<_> = self
            .shared
            .shards
            .iter()
            .flat_map(|shard| {
                let shard = shard
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                shard
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &ObjectKey) -> &RwLock<HashMap<ObjectKey, Snapshot>> {
        let hash = self.shared.hasher.hash_one(key) as usize;
        &self.shared.shards[hash % SHARDS]
    }

    fn load_now(&self, key: &ObjectKey) -> Option<Snapshot> {
        // A poisoned lock only means another thread panicked mid-read or mid-swap; the map
        // itself is always consistent (swaps are single inserts), so keep serving.
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.get(key).cloned()
    }

    fn swap_now(&self, key: &ObjectKey, expected_version: u64, new: Snapshot) -> SwapOutcome {
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // `get_mut` first: an existing object is swapped without cloning its key.
        match shard.get_mut(key) {
            Some(current) if current.version() == expected_version => {
                *current = new;
                SwapOutcome::Swapped
            }
            Some(current) => SwapOutcome::Conflict {
                current: Some(current.clone()),
            },
            None if expected_version == 0 => {
                shard.insert(key.clone(), new);
                *self
                    .shared
                    .tenants
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(key.tenant_id().into())
                    .or_default() += 1;
                SwapOutcome::Swapped
            }
            None => SwapOutcome::Conflict { current: None },
        }
    }
}

impl SecurityStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn count_tenant(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        let tenants = self
            .shared
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Some(tenants.get(tenant_id).copied().unwrap_or(0)))
    }

    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.load_now(key))
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        Ok(self.swap_now(key, expected_version, new))
    }
}
