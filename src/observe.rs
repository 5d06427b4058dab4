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
/// they run on the request's task. Nor may they panic: a panic unwinds out of the layer's
/// `call` or `poll` (see [`AuditSink`](crate::audit::AuditSink) for what the service answers
/// when it can, and `tower-http`'s `CatchPanicLayer` for the rest).
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
///
/// A named future rather than an `async fn`: an `async fn` keeps its argument `work` and the
/// `work` it awaits side by side in its state, so it was twice the store's future (4.6 KB
/// around the server's 2.3 KB compare-and-swap), and every write that awaits its store boxes
/// it.
pub(crate) fn timed<'a, F, T, E>(
    observer: Option<&'a SharedObserver>,
    store: &'static str,
    operation: StoreOperation,
    work: F,
) -> Timed<'a, F>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    Timed {
        work,
        observer,
        store,
        operation,
        started: None,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timed`]: the clock is read when it is first polled, as the work starts.
    pub(crate) struct Timed<'a, F> {
        #[pin]
        work: F,
        observer: Option<&'a SharedObserver>,
        store: &'static str,
        operation: StoreOperation,
        started: Option<std::time::Instant>,
    }
}

impl<F, T, E> std::future::Future for Timed<'_, F>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let Some(observer) = *this.observer else {
            return this.work.poll(cx);
        };
        let started = *this.started.get_or_insert_with(std::time::Instant::now);
        let result = std::task::ready!(this.work.poll(cx));
        observer.store_operation(
            this.store,
            *this.operation,
            started.elapsed(),
            result.is_err(),
        );
        std::task::Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Every report, as it came.
    #[derive(Default)]
    struct Reports(Mutex<Vec<(&'static str, StoreOperation, bool)>>);

    impl Observer for Reports {
        fn store_operation(
            &self,
            store: &'static str,
            operation: StoreOperation,
            _elapsed: Duration,
            failed: bool,
        ) {
            self.0.lock().unwrap().push((store, operation, failed));
        }
    }

    /// A store operation that is pending once, then ends with `outcome`.
    fn pending_once(outcome: Result<u8, ()>) -> impl Future<Output = Result<u8, ()>> {
        let mut polled = false;
        std::future::poll_fn(move |cx| {
            if polled {
                return Poll::Ready(outcome);
            }
            polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    /// `timed` reports an operation once, when it ends (not while it is pending), with its
    /// outcome; without an observer it only passes the outcome on.
    #[test]
    fn an_operation_is_reported_once_when_it_ends() {
        let reports = Arc::new(Reports::default());
        let observer: SharedObserver = reports.clone();
        let mut cx = Context::from_waker(Waker::noop());
        for (outcome, failed) in [(Ok(7), false), (Err(()), true)] {
            let mut timed = pin!(timed(
                Some(&observer),
                "redb",
                StoreOperation::CompareAndSwap,
                pending_once(outcome),
            ));
            let before = reports.0.lock().unwrap().len();
            assert_eq!(timed.as_mut().poll(&mut cx), Poll::Pending);
            assert_eq!(
                reports.0.lock().unwrap().len(),
                before,
                "reported while pending"
            );
            assert_eq!(timed.as_mut().poll(&mut cx), Poll::Ready(outcome));
            assert_eq!(
                reports.0.lock().unwrap().last(),
                Some(&("redb", StoreOperation::CompareAndSwap, failed))
            );
        }
        assert_eq!(reports.0.lock().unwrap().len(), 2);

        let mut unobserved = pin!(timed(
            None,
            "redb",
            StoreOperation::Load,
            pending_once(Ok(1))
        ));
        assert_eq!(unobserved.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(unobserved.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
        assert_eq!(reports.0.lock().unwrap().len(), 2);
    }

    /// The state `timed` adds to the store's future is a few words, not a second copy of it.
    #[test]
    fn timing_does_not_double_the_future() {
        let work = pending_once(Ok(0));
        let size = std::mem::size_of_val(&work);
        let padded = [0u8; 2048];
        let big = async move {
            let kept = padded;
            work.await.map(|n| n + kept[0])
        };
        let inner = std::mem::size_of_val(&big);
        let timed = timed(None, "redb", StoreOperation::Load, big);
        assert!(inner > 2048 + size);
        assert!(std::mem::size_of_val(&timed) < inner + 64);
    }
}
