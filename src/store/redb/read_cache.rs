//! The objects most recently read or written, kept parsed in memory so a read does not open a
//! redb transaction and parse JSON again. Only this process writes the file (redb's lock), and
//! every write goes through the committer, which puts what it committed here before it answers
//! anyone: a read from the cache is never older than an acknowledged write.
//!
//! A read that missed fills the cache only if no commit touched its shard since the read
//! began (a per-shard epoch), so a slow reader cannot put back an object older than one just
//! committed. Bounded: a shard that reaches its capacity is emptied (objects are read back from
//! the file as needed).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::store::{ObjectKey, Snapshot};

const SHARDS: usize = 16;
/// Objects per shard: 16 × 4096 = 65,536 objects in all, at most.
const PER_SHARD: usize = 4096;

#[derive(Default)]
struct Shard {
    /// Bumped by every commit into this shard.
    epoch: u64,
    objects: HashMap<ObjectKey, Snapshot>,
}

/// See the [module docs](self).
pub(super) struct ReadCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").finish_non_exhaustive()
    }
}

/// What a missed read must show to fill the cache.
pub(super) struct Ticket {
    shard: usize,
    epoch: u64,
}

impl ReadCache {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &ObjectKey) -> usize {
        use std::hash::BuildHasher;
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached object, or a ticket to fill the cache after reading the file.
    pub(super) fn get(&self, key: &ObjectKey) -> Result<Snapshot, Ticket> {
        let shard = self.shard(key);
        let guard = self.lock(shard);
        match guard.objects.get(key) {
            Some(snapshot) => Ok(snapshot.clone()),
            None => Err(Ticket {
                shard,
                epoch: guard.epoch,
            }),
        }
    }

    /// Caches what a missed read found, unless a commit touched the shard since.
    pub(super) fn fill(&self, ticket: &Ticket, key: &ObjectKey, snapshot: &Snapshot) {
        let mut guard = self.lock(ticket.shard);
        if guard.epoch == ticket.epoch {
            Self::insert(&mut guard, key, snapshot);
        }
    }

    /// Puts a committed object in place (before its writer is answered).
    pub(super) fn committed(&self, key: &ObjectKey, snapshot: &Snapshot) {
        let mut guard = self.lock(self.shard(key));
        guard.epoch += 1;
        Self::insert(&mut guard, key, snapshot);
    }

    fn insert(shard: &mut Shard, key: &ObjectKey, snapshot: &Snapshot) {
        if shard.objects.len() >= PER_SHARD && !shard.objects.contains_key(key) {
            shard.objects.clear();
        }
        shard.objects.insert(key.clone(), snapshot.clone());
    }
}
