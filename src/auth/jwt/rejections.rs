//! Recently refused tokens: a token refused for a reason that cannot change (a bad signature,
//! another audience, expired, malformed) costs a hash lookup the next time, not a signature
//! check. Entries live briefly, the cache is bounded, and it is emptied when the keys change.
//! Tokens refused for an unknown `kid` or an `nbf` in the future are never remembered: a key
//! refresh or the clock may make them valid.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::TokenRejection;

/// How long a refusal is remembered.
const TTL: Duration = Duration::from_secs(60);
/// How many refusals are remembered at most.
const CAPACITY: usize = 10_000;

/// Refusals by a keyed hash of the whole token and its length (random keys per process: no
/// one can aim a collision at someone else's token).
pub(super) struct RejectionCache {
    entries: Mutex<HashMap<(u64, usize), (Instant, TokenRejection)>>,
    hasher: RandomState,
}

impl RejectionCache {
    pub(super) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    fn key(&self, token: &str) -> (u64, usize) {
        (self.hasher.hash_one(token.as_bytes()), token.len())
    }

    pub(super) fn get(&self, token: &str) -> Option<TokenRejection> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (until, rejection) = entries.get(&self.key(token))?;
        (Instant::now() < *until).then(|| rejection.clone())
    }

    /// Remembers `rejection` unless `still_valid`, checked under the cache's lock, says the
    /// keys it was decided with have been replaced meanwhile (the replacement clears the cache
    /// after swapping the keys, so no stale refusal survives it).
    pub(super) fn insert_if(
        &self,
        token: &str,
        rejection: &TokenRejection,
        still_valid: impl FnOnce() -> bool,
    ) {
        let key = self.key(token);
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !still_valid() {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (now + TTL, rejection.clone()));
    }

    pub(super) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}
