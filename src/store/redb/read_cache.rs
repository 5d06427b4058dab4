//! The objects most recently read or written, kept parsed in memory so a read does not open a
//! redb transaction and parse JSON again. Only this process writes the file (redb's lock), and
//! every write goes through the committer, which puts what it committed here before it answers
//! anyone: a read from the cache is never older than an acknowledged write.
//!
//! A read that missed fills the cache only if no commit touched its shard since the read
//! began (a per-shard epoch), so a slow reader cannot put back an object older than one just
//! committed. Bounded in objects and in bytes: objects over [`LARGEST_CACHED`] are never kept,
//! and a shard that reaches either bound is emptied (objects are read back from the file as
//! needed), so 65k objects near the object size limit cannot take the process's memory.

use std::sync::{Mutex, PoisonError};

use hashbrown::HashTable;

use crate::store::{ObjectKey, Snapshot};

const SHARDS: usize = 16;
/// Objects per shard: 16 × 4096 = 65,536 objects in all, at most.
const PER_SHARD: usize = 4096;
/// Bytes per shard, counted as three times each object's JSON (the bytes and the parsed
/// document): 16 × 4 MiB = 64 MiB in all, at most.
const BYTES_PER_SHARD: usize = 4 * 1024 * 1024;
/// Objects larger than this (serialized) are read from the file every time.
const LARGEST_CACHED: usize = 64 * 1024;

#[derive(Default)]
struct Shard {
    /// Bumped by every commit into this shard.
    epoch: u64,
    /// Found by a hash made once per access (the shard is picked by other bits of it),
    /// not hashed again by a map of its own.
    objects: HashTable<(ObjectKey, Snapshot)>,
    /// The counted size of `objects`.
    bytes: usize,
}

/// What an object counts for against [`BYTES_PER_SHARD`].
fn weight(snapshot: &Snapshot) -> usize {
    snapshot.json().len().saturating_mul(3)
}

/// See the [module docs](self).
pub(super) struct ReadCache {
    shards: Box<[Mutex<Shard>]>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").finish_non_exhaustive()
    }
}

/// What a missed read must show to fill the cache.
pub(super) struct Ticket {
    hash: u64,
    epoch: u64,
}

impl ReadCache {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The key's placement (`ObjectKey::placement`: made once per key).
    fn hash(&self, key: &ObjectKey) -> u64 {
        key.placement()
    }

    /// The shard of a key of hash `hash`: chosen by bits the table uses neither for buckets
    /// (the low ones) nor for its control bytes (the top seven), as the memory store does.
    fn lock(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(hash >> 32) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached object, or a ticket to fill the cache after reading the file.
    pub(super) fn get(&self, key: &ObjectKey) -> Result<Snapshot, Ticket> {
        let hash = self.hash(key);
        let guard = self.lock(hash);
        match guard.objects.find(hash, |(cached, _)| cached == key) {
            Some((_, snapshot)) => Ok(snapshot.clone()),
            None => Err(Ticket {
                hash,
                epoch: guard.epoch,
            }),
        }
    }

    /// Caches what a missed read found, unless a commit touched the shard since.
    pub(super) fn fill(&self, ticket: &Ticket, key: &ObjectKey, snapshot: &Snapshot) {
        debug_assert_eq!(ticket.hash, self.hash(key), "a ticket for another key");
        let mut guard = self.lock(ticket.hash);
        if guard.epoch == ticket.epoch {
            self.insert(&mut guard, ticket.hash, key, snapshot);
        }
    }

    /// Puts a committed object in place (before its writer is answered).
    pub(super) fn committed(&self, key: &ObjectKey, snapshot: &Snapshot) {
        let hash = self.hash(key);
        let mut guard = self.lock(hash);
        guard.epoch += 1;
        self.insert(&mut guard, hash, key, snapshot);
    }

    /// Drops `key`'s object, whatever it was: after a commit whose outcome is not known.
    pub(super) fn forget(&self, key: &ObjectKey) {
        let hash = self.hash(key);
        let mut guard = self.lock(hash);
        guard.epoch += 1;
        Self::remove(&mut guard, hash, key);
    }

    fn remove(shard: &mut Shard, hash: u64, key: &ObjectKey) {
        if let Ok(entry) = shard.objects.find_entry(hash, |(cached, _)| cached == key) {
            let ((_, old), _) = entry.remove();
            shard.bytes -= weight(&old);
        }
    }

    fn insert(&self, shard: &mut Shard, hash: u64, key: &ObjectKey, snapshot: &Snapshot) {
        // A write to an object already cached, the common case: its entry is replaced in
        // place, with no look-up to remove it and no copy of its key to insert it again.
        if snapshot.json().len() <= LARGEST_CACHED
            && let Some((_, cached)) = shard.objects.find_mut(hash, |(cached, _)| cached == key)
        {
            let bytes = shard.bytes - weight(cached) + weight(snapshot);
            if bytes <= BYTES_PER_SHARD {
                *cached = snapshot.clone();
                shard.bytes = bytes;
                return;
            }
        }
        Self::remove(shard, hash, key);
        if snapshot.json().len() > LARGEST_CACHED {
            return;
        }
        let weight = weight(snapshot);
        if shard.objects.len() >= PER_SHARD || shard.bytes + weight > BYTES_PER_SHARD {
            shard.objects.clear();
            shard.bytes = 0;
        }
        shard.bytes += weight;
        shard
            .objects
            .insert_unique(hash, (key.clone(), snapshot.clone()), |(cached, _)| {
                self.hash(cached)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn snapshot(version: u64, bytes: usize) -> Snapshot {
        let mut document = Map::new();
        document.insert("pad".to_owned(), Value::from("x".repeat(bytes)));
        Snapshot::new(version, document).unwrap()
    }

    /// Every shard within its byte budget, its count the sum of what it holds.
    fn assert_counted(cache: &ReadCache, after: &str) {
        for shard in cache.shards.iter() {
            let shard = shard.lock().unwrap();
            assert!(shard.bytes <= BYTES_PER_SHARD, "{after}: {}", shard.bytes);
            let counted: usize = shard.objects.iter().map(|(_, cached)| weight(cached)).sum();
            assert_eq!(counted, shard.bytes, "{after}");
        }
    }

    /// A missed read's object is found by the next read once filled in, unless a commit to
    /// its shard came between the read and the fill: then the older object stays out.
    #[test]
    fn a_missed_read_fills_the_cache_unless_a_commit_came_first() {
        let cache = ReadCache::new();
        let key = ObjectKey::new("t", "u");
        let ticket = cache.get(&key).expect_err("found in an empty cache");
        cache.fill(&ticket, &key, &snapshot(1, 10));
        assert_eq!(cache.get(&key).map(|s| s.version()).ok(), Some(1));
        let other = ObjectKey::new("t", "v");
        let stale = cache.get(&other).expect_err("found before it was cached");
        cache.committed(&other, &snapshot(2, 10));
        cache.fill(&stale, &other, &snapshot(1, 10));
        assert_eq!(cache.get(&other).map(|s| s.version()).ok(), Some(2));
        assert_counted(&cache, "fills");
    }

    #[test]
    fn bounded_in_bytes_and_large_objects_are_not_kept() {
        let cache = ReadCache::new();
        let big = ObjectKey::new("t", "big");
        cache.committed(&big, &snapshot(1, LARGEST_CACHED + 1));
        assert!(
            cache.get(&big).is_err(),
            "an object over the threshold was cached"
        );
        // Many mid-sized objects: every shard stays within its byte budget.
        for i in 0..2000 {
            let key = ObjectKey::new("t", &format!("u{i}"));
            cache.committed(&key, &snapshot(i + 1, 32 * 1024));
        }
        assert_counted(&cache, "2000 objects");
        // Each key finds its own object, or none (its shard was emptied at its bound).
        let mut found = 0;
        for i in 0..2000 {
            if let Ok(cached) = cache.get(&ObjectKey::new("t", &format!("u{i}"))) {
                assert_eq!(cached.version(), i + 1);
                found += 1;
            }
        }
        assert!(found > 0, "nothing was cached");
        // A replaced object is counted once, at its new size (in place, or evicted when it
        // grows past the limit).
        let key = ObjectKey::new("t", "again");
        for (version, bytes) in [
            (1, 100),
            (2, 100),
            (3, 5_000),
            (4, 10),
            (5, LARGEST_CACHED + 1),
        ] {
            cache.committed(&key, &snapshot(version, bytes));
            let cached = cache.get(&key).map(|s| s.version()).ok();
            let expected = (bytes <= LARGEST_CACHED).then_some(version);
            assert_eq!(cached, expected, "version {version}");
            assert_counted(&cache, &format!("version {version}"));
        }
    }
}
