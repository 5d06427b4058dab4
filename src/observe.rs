//! [`Observer`]: what the layers cannot see from outside, reported as it happens.
//!
//! A tower layer around the stack sees requests and statuses, not whether a token came from
//! the cache, how long the store took, or how many compare-and-swap races a write lost. The
//! pieces that know report here: the service (store operations, conflicts, audit records), the
//! [`JwtValidator`](crate::JwtValidator) (token outcomes) and the rate limit (refusals). Every
//! method has an empty default, so an observer implements only what it counts; with no
//! observer configured nothing is measured at all (not even the clock is read).
//!
//! The `prometheus` feature's `PrometheusMetrics` is one observer; a library user can write
//! their own for another metrics system:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use security_update::observe::Observer;
//!
//! #[derive(Default)]
//! struct Conflicts(AtomicU64);
//!
//! impl Observer for Conflicts {
//!     fn write_conflict(&self) {
//!         self.0.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let conflicts = Arc::new(Conflicts::default());
//! let store = security_update::MemoryStore::new();
//! let builder = security_update::StackBuilder::new(store).with_observer(conflicts.clone());
//! # let _ = builder;
//! ```

use std::sync::Arc;
use std::time::Duration;

/// Receives what happens inside the stack. Implementations must be cheap and must not block:
/// they run on the request's task.
pub trait Observer: Send + Sync + 'static {
    /// A bearer token was checked.
    fn token(&self, outcome: TokenOutcome) {
        let _ = outcome;
    }

    /// A store operation finished, after `elapsed`; `failed` when the store answered an error
    /// (a lost compare-and-swap is not a failure: see [`write_conflict`](Self::write_conflict)).
    fn store_operation(
        &self,
        store: &'static str,
        operation: StoreOperation,
        elapsed: Duration,
        failed: bool,
    ) {
        let _ = (store, operation, elapsed, failed);
    }

    /// A write lost its compare-and-swap to another writer and will retry (or give up with
    /// 503 after the last attempt).
    fn write_conflict(&self) {}

    /// A request was refused by the per-caller rate limit (429).
    fn rate_limited(&self) {}

    /// An audit record of an accepted change was written.
    fn audit_written(&self) {}
}

/// What became of a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenOutcome {
    /// Accepted from the cache of validated tokens (no signature check).
    CacheHit,
    /// Accepted after a full signature and claims check.
    Verified,
    /// Refused; `reason` is a short, fixed label (`expired`, `signature`, `audience`, ...).
    Rejected {
        /// One of a small fixed set of labels, safe as a metric label.
        reason: &'static str,
    },
}

/// Which store operation [`Observer::store_operation`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Reading an object.
    Load,
    /// Writing an object if its version is still the one read.
    CompareAndSwap,
    /// Counting a tenant's objects (its quota, on a first save).
    CountTenant,
}

impl StoreOperation {
    /// The label: `load`, `compare_and_swap`, `count_tenant`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::CompareAndSwap => "compare_and_swap",
            Self::CountTenant => "count_tenant",
        }
    }
}

/// A shared observer, as the pieces hold it.
pub type SharedObserver = Arc<dyn Observer>;

/// [`timed`] for an operation done at once (`AtOnce`).
pub(crate) fn timed_now<T, E>(
    observer: Option<&SharedObserver>,
    store: &'static str,
    operation: StoreOperation,
    work: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    match observer {
        None => work(),
        Some(observer) => {
            let started = std::time::Instant::now();
            let result = work();
            observer.store_operation(store, operation, started.elapsed(), result.is_err());
            result
        }
    }
}

/// Runs `operation` against the store, timing it for `observer` if there is one.
pub(crate) async fn timed<T, E>(
    observer: Option<&SharedObserver>,
    store: &'static str,
    operation: StoreOperation,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match observer {
        None => work.await,
        Some(observer) => {
            let started = std::time::Instant::now();
            let result = work.await;
            observer.store_operation(store, operation, started.elapsed(), result.is_err());
            result
        }
    }
}
