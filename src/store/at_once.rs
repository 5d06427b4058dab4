//! [`AtOnce`]: a store's operations done on the caller's thread, for stores that never wait.
//!
//! The service runs a write as an async state machine because most stores wait (a commit's
//! fsync, a round trip to `PostgreSQL`). A store that answers at once (the memory store) pays
//! for that machinery all the same: the state machine of a write is over a kilobyte, built,
//! moved into a box too big for the allocator's per-thread cache, and polled through every
//! `await`. Profiled in process (callgrind, `profile_pipeline`, per request, side by side),
//! the memory store's writes went from 59.5k to 57.1k instructions (`ours`) and from 60.9k
//! to 57.8k (`ours-jwt`) once the service stopped going through it. A store that offers
//! [`AtOnce`] has the service make a write's first attempt, or a read, within `call`;
//! whatever would wait (an object whose writers queue, a merge big enough for the blocking
//! pool, a lost race) goes on asynchronously, as before.
//!
//! A write's first attempt calls a store's `AtOnce` operations; a write that goes on
//! asynchronously (a lost race, a queue at the object) calls its async ones. A store that
//! wraps another passes the inner store's `AtOnce` on only if it adds nothing to the
//! operations themselves (else the first attempts would bypass what it adds), as this one,
//! which only names itself for metrics:
//!
//! ```
//! use security_update::store::AtOnce;
//! use security_update::{MemoryStore, ObjectKey, SecurityStore, Snapshot, StoreError, SwapOutcome};
//!
//! struct Sessions(MemoryStore);
//!
//! impl SecurityStore for Sessions {
//!     fn kind(&self) -> &'static str {
//!         "sessions"
//!     }
//!     async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
//!         self.0.load(key).await
//!     }
//!     async fn compare_and_swap(
//!         &self,
//!         key: &ObjectKey,
//!         expected_version: u64,
//!         new: Snapshot,
//!     ) -> Result<SwapOutcome, StoreError> {
//!         self.0.compare_and_swap(key, expected_version, new).await
//!     }
//!     fn at_once(&self) -> Option<&dyn AtOnce> {
//!         self.0.at_once()
//!     }
//! }
//!
//! assert!(Sessions(MemoryStore::new()).at_once().is_some());
//! ```

use super::{ObjectKey, Snapshot, StoreError, SwapOutcome};

/// The operations of [`SecurityStore`](super::SecurityStore), done now: each must give exactly
/// what awaiting the store's own future would, with the same atomicity, and must not block on
/// I/O or on anything held across an `await`.
pub trait AtOnce: Send + Sync {
    /// As [`SecurityStore::load`](super::SecurityStore::load).
    ///
    /// # Errors
    /// As the store's `load`.
    fn load_at_once(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError>;

    /// As [`SecurityStore::compare_and_swap`](super::SecurityStore::compare_and_swap).
    ///
    /// # Errors
    /// As the store's `compare_and_swap`.
    fn compare_and_swap_at_once(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError>;

    /// As [`SecurityStore::count_tenant`](super::SecurityStore::count_tenant).
    ///
    /// # Errors
    /// As the store's `count_tenant`.
    fn count_tenant_at_once(&self, tenant_id: &str) -> Result<Option<u64>, StoreError>;
}
