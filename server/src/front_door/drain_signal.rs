//! What a connection waits on beside the connection itself to hear that the server drains:
//! ready once the drain watch changes or its sender is gone, as `watch::Receiver::changed`
//! is, but cheap to poll again.
//!
//! A connection's task is woken for every request, and `select!` polls every branch on each
//! wake: `changed()` took the watch's lock to register the same waker again each time, ~160
//! instructions a poll and two polls a request (callgrind). [`DrainSignal`] registers once
//! for each waker it is polled with, and otherwise reads the watch's version.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// A wait for the drain watch's change, on a receiver of its own.
type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Ready when the drain watch has changed since it was handed over, or has no sender left.
pub(super) struct DrainSignal {
    receiver: watch::Receiver<bool>,
    /// The wait, registered with the waker beside it.
    waiting: Option<(Wait, Waker)>,
}

impl DrainSignal {
    pub(super) fn new(receiver: watch::Receiver<bool>) -> Self {
        Self {
            receiver,
            waiting: None,
        }
    }
}

impl Future for DrainSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Changed since this receiver last looked, or the sender is gone: what ends
        // `changed()`, with a value or an error.
        if self.receiver.has_changed().unwrap_or(true) {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &self.waiting
            && waker.will_wake(cx.waker())
        {
            // Registered with this task: a change wakes it, and the check above sees it.
            return Poll::Pending;
        }
        // A clone has seen what this receiver has: a change made since the check above makes
        // the wait ready at once, so none is missed.
        let mut own = self.receiver.clone();
        let mut waiting: Wait = Box::pin(async move {
            let _ = own.changed().await;
        });
        if waiting.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        self.waiting = Some((waiting, cx.waker().clone()));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(signal: &mut DrainSignal, waker: &Arc<Counted>) -> Poll<()> {
        let waker = Waker::from(waker.clone());
        Pin::new(signal).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn pending_until_the_drain_then_ready_and_the_task_woken() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let task = Arc::new(Counted::default());
        for _ in 0..3 {
            assert!(poll(&mut signal, &task).is_pending());
        }
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
        drain.send_replace(true);
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "the waiting task is woken"
        );
        assert!(poll(&mut signal, &task).is_ready());
        assert!(poll(&mut signal, &task).is_ready(), "and stays ready");
    }

    #[test]
    fn a_drain_before_the_first_poll_is_seen() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        drain.send_replace(true);
        assert!(poll(&mut signal, &Arc::new(Counted::default())).is_ready());
    }

    #[test]
    fn a_sender_gone_is_a_drain() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let task = Arc::new(Counted::default());
        assert!(poll(&mut signal, &task).is_pending());
        drop(drain);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut signal, &task).is_ready());
    }

    /// Polled by another task (another waker), the drain wakes that one.
    #[test]
    fn a_new_waker_is_the_one_woken() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let (first, second) = (Arc::new(Counted::default()), Arc::new(Counted::default()));
        assert!(poll(&mut signal, &first).is_pending());
        assert!(poll(&mut signal, &second).is_pending());
        drain.send_replace(true);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut signal, &second).is_ready());
    }
}
