//! The contract every store keeps: [`SecurityStore`], the versioned compare-and-swap the
//! service writes through, and [`SwapOutcome`], what a swap answers.

use std::future::Future;
use std::sync::Arc;

use super::{AtOnce, ObjectKey, Snapshot, StoreError};

/// The outcome of [`SecurityStore::compare_and_swap`].
#[derive(Debug, Clone, PartialEq)]
pub enum SwapOutcome {
    /// The new snapshot is now current.
    Swapped,
    /// Another writer got there first; this is what is current now.
    Conflict {
        /// The current snapshot (`None` if the object is, after all, absent).
        current: Option<Snapshot>,
    },
}

/// A versioned store of security objects.
///
/// Implementations must make `compare_and_swap` atomic: of any number of concurrent calls with
/// the same `expected_version`, at most one returns [`SwapOutcome::Swapped`]. Everything else
/// (retrying, merging, validating) is the service's job.
pub trait SecurityStore: Send + Sync + 'static {
    /// A short name of the kind of store (`memory`, `redb`, `postgres`), for metrics labels.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// The current snapshot of `key`, or `None` if it was never saved.
    fn load(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Saves `new` (whose version is `expected_version + 1`) if the current version is
    /// `expected_version` (0: the object must be absent); otherwise reports what is current.
    fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> impl Future<Output = Result<SwapOutcome, StoreError>> + Send;

    /// How many objects `tenant_id` has, for the per-tenant quota; `None` when the store
    /// does not count (then no quota applies). Asked only before a first save.
    fn count_tenant(
        &self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        let _ = tenant_id;
        std::future::ready(Ok(None))
    }

    /// Whether the store can still take writes, as far as it knows without asking its
    /// backend: `Err` once it knows it cannot (the embedded store's committer has stopped).
    /// Readiness checks ask this as well as reading, since a store can answer reads and
    /// refuse every write. By default, `Ok`.
    ///
    /// # Errors
    /// Why writes cannot succeed.
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the store can serve now, asking its backend: readiness probes call it (the
    /// server's `/readyz`). By default, [`writable`](Self::writable), then a read of an
    /// object nobody has; the `PostgreSQL` store also asks whether the database takes
    /// writes (a standby after a failover answers reads and refuses every write).
    ///
    /// # Errors
    /// Why the store cannot serve now.
    fn check_ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            self.writable()?;
            self.load(&ObjectKey::new("readiness-probe", "readiness-probe"))
                .await
                .map(|_| ())
        }
    }

    /// The same operations done on the caller's thread, for a store that never waits (see
    /// [`AtOnce`]); the service then makes a write's first attempt without its async
    /// machinery, calling these instead of `load` and `compare_and_swap`. By default, `None`:
    /// the store's futures are awaited.
    fn at_once(&self) -> Option<&dyn AtOnce> {
        None
    }
}

impl<S: SecurityStore> SecurityStore for Arc<S> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn writable(&self) -> Result<(), StoreError> {
        (**self).writable()
    }

    fn check_ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).check_ready()
    }

    fn at_once(&self) -> Option<&dyn AtOnce> {
        (**self).at_once()
    }

    fn count_tenant(
        &self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        (**self).count_tenant(tenant_id)
    }

    fn load(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        (**self).load(key)
    }

    fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> impl Future<Output = Result<SwapOutcome, StoreError>> + Send {
        (**self).compare_and_swap(key, expected_version, new)
    }
}
