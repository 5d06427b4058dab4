//! For tests of futures polled by hand: a waker that counts how often it is woken.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

/// Counts its wakes; [`waker`](Self::waker) makes a `Waker` of it.
#[derive(Default)]
pub(super) struct CountingWaker(AtomicUsize);

impl CountingWaker {
    pub(super) fn new() -> Arc<Self> {
        Arc::default()
    }

    pub(super) fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }

    pub(super) fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
