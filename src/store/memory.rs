//! An in-memory store: sharded maps, so writers to different objects rarely share a lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hashbrown::HashTable;

use super::{AtOnce, ObjectKey, SecurityStore, Snapshot, StoreError, SwapOutcome};

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

/// The objects of one shard, found by the hash that chose the shard: the key's placement
/// (`ObjectKey::placement`, `SipHash` with keys random per process: keys are chosen by
/// callers), made once per key.
type Shard = HashTable<(ObjectKey, Snapshot)>;

#[derive(Debug)]
struct Shards {
    shards: Box<[RwLock<Shard>]>,
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
                shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect(),
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
                shard.iter().cloned().collect::<Vec<_>>()
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

    /// `key`'s hash and its shard. The shard is chosen by bits the table does not use for
    /// buckets (the low ones) nor for its control bytes (the top seven).
    fn shard(&self, key: &ObjectKey) -> (u64, &RwLock<Shard>) {
        let hash = key.placement();
        (hash, &self.shared.shards[(hash >> 32) as usize % SHARDS])
    }

    fn load_now(&self, key: &ObjectKey) -> Option<Snapshot> {
        let (hash, shard) = self.shard(key);
        // A poisoned lock only means another thread panicked mid-read or mid-swap; the map
        // itself is always consistent (swaps are single inserts), so keep serving.
        let shard = shard
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard
            .find(hash, |(stored, _)| stored == key)
            .map(|(_, snapshot)| snapshot.clone())
    }

    fn swap_now(&self, key: &ObjectKey, expected_version: u64, new: Snapshot) -> SwapOutcome {
        let (hash, shard) = self.shard(key);
        let mut shard = shard
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Found first: an existing object is swapped without cloning its key.
        match shard.find_mut(hash, |(stored, _)| stored == key) {
            Some((_, current)) if current.version() == expected_version => {
                *current = new;
                SwapOutcome::Swapped
            }
            Some((_, current)) => SwapOutcome::Conflict {
                current: Some(current.clone()),
            },
            None if expected_version == 0 => {
                shard.insert_unique(hash, (key.clone(), new), |(stored, _)| stored.placement());
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

    fn at_once(&self) -> Option<&dyn AtOnce> {
        Some(self)
    }

    async fn count_tenant(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        self.count_tenant_at_once(tenant_id)
    }

    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        self.load_at_once(key)
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        self.compare_and_swap_at_once(key, expected_version, new)
    }
}

/// Every operation of the memory store is a lookup under a shard's lock: nothing waits.
impl AtOnce for MemoryStore {
    fn load_at_once(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.load_now(key))
    }

    fn compare_and_swap_at_once(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        Ok(self.swap_now(key, expected_version, new))
    }

    fn count_tenant_at_once(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        let tenants = self
            .shared
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Some(tenants.get(tenant_id).copied().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of objects over every shard, each table grown (and rehashed) many times:
    /// each key finds its own object, swaps only its own, and the tenants are counted.
    #[test]
    fn every_key_finds_its_own_object_as_the_shards_grow() {
        let store = MemoryStore::new();
        let key = |i: usize| ObjectKey::new(&format!("tenant-{}", i % 3), &format!("user-{i}"));
        let snapshot = |version: u64, i: usize| {
            let mut document = serde_json::Map::new();
            document.insert("i".into(), i.into());
            Snapshot::new(version, document).unwrap()
        };
        for i in 0..10_000 {
            assert_eq!(
                store.swap_now(&key(i), 0, snapshot(1, i)),
                SwapOutcome::Swapped
            );
        }
        assert_eq!(store.len(), 10_000);
        for i in (0..10_000).step_by(7) {
            assert_eq!(
                store.swap_now(&key(i), 1, snapshot(2, i)),
                SwapOutcome::Swapped
            );
            // A second writer from the same version loses, and sees the first one's object.
            let lost = store.swap_now(&key(i), 1, snapshot(2, i + 1));
            assert_eq!(
                lost,
                SwapOutcome::Conflict {
                    current: Some(snapshot(2, i))
                }
            );
        }
        for i in 0..10_000 {
            let found = store.load_now(&key(i)).expect("stored");
            let version = if i % 7 == 0 { 2 } else { 1 };
            assert_eq!(found, snapshot(version, i), "object {i}");
        }
        assert_eq!(store.load_now(&ObjectKey::new("tenant-0", "user-1")), None);
        let counts = store.shared.tenants.lock().unwrap().clone();
        assert_eq!(counts.values().sum::<u64>(), 10_000);
        assert_eq!(counts.get("tenant-1"), Some(&3_333));
        let used = store
            .shared
            .shards
            .iter()
            .filter(|shard| !shard.read().unwrap().is_empty())
            .count();
        assert_eq!(used, SHARDS, "every shard holds objects");
    }
}
