//! The principal cache: each token's signature is checked once, and its principal remembered
//! until the token expires. Bounded; emptied whenever the keys change.

use std::sync::RwLock;

use hashbrown::HashTable;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::unix_now;
use crate::auth::Principal;

/// Principals of validated tokens, until each token expires. Bounded: when full, expired
/// entries go first, then everything (the next request for each token re-verifies it).
pub(super) struct TokenCache {
    pub(super) capacity: AtomicUsize,
    /// Entries by a keyed hash of the token's last 64 bytes (inside the signature, so as
    /// varied as a hash needs), found by that hash alone (no second hash of it); each entry
    /// keeps the whole token and is compared in full. `SipHash` over a whole 1-2 KB token on
    /// every request cost more than everything else in the lookup.
    entries: RwLock<HashTable<Cached>>,
    /// foldhash, seeded at random per cache: only verified tokens are inserted, whose
    /// signatures nobody without the issuer's key can choose, so nobody can fill a bucket at
    /// will and `SipHash`'s flooding resistance buys nothing here. It cost ~350 instructions
    /// a request on the 64 bytes (callgrind), foldhash a tenth of it.
    hasher: foldhash::fast::RandomState,
    len: AtomicUsize,
}

struct Cached {
    /// [`TokenCache::bucket_of`] the token.
    bucket: u64,
    token: Box<str>,
    principal: Principal,
    exp: u64,
    nbf: u64,
}

impl TokenCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: AtomicUsize::new(capacity),
            entries: RwLock::new(HashTable::new()),
            hasher: foldhash::fast::RandomState::default(),
            len: AtomicUsize::new(0),
        }
    }

    fn bucket_of(&self, bytes: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher
            .hash_one(&bytes[bytes.len().saturating_sub(64)..])
    }

    pub(super) fn get(&self, token: &[u8], now: u64, leeway: u64) -> Option<Principal> {
        if self.capacity.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let bucket = self.bucket_of(token);
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cached = entries.find(bucket, |c| c.token.as_bytes() == token)?;
        let valid =
            now < cached.exp.saturating_add(leeway) && now.saturating_add(leeway) >= cached.nbf;
        valid.then(|| cached.principal.clone())
    }

    /// Inserts unless `still_valid`, checked under the cache lock, says no.
    pub(super) fn insert_if(
        &self,
        token: &str,
        principal: &Principal,
        exp: u64,
        nbf: u64,
        still_valid: impl FnOnce() -> bool,
    ) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 {
            return;
        }
        let bucket = self.bucket_of(token.as_bytes());
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !still_valid() {
            return;
        }
        if self.len.load(Ordering::Relaxed) >= capacity {
            let now = unix_now();
            entries.retain(|cached| cached.exp > now);
            let mut len = entries.len();
            if len >= capacity {
                entries.clear();
                len = 0;
            }
            self.len.store(len, Ordering::Relaxed);
        }
        if let Some(existing) = entries.find_mut(bucket, |c| &*c.token == token) {
            existing.exp = exp;
            existing.nbf = nbf;
            existing.principal = principal.clone();
            return;
        }
        let cached = Cached {
            bucket,
            token: token.into(),
            principal: principal.clone(),
            exp,
            nbf,
        };
        entries.insert_unique(bucket, cached, |c| c.bucket);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.len.store(0, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}
