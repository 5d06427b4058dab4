//! What a connection waits on beside the connection itself to hear that the server drains:
//! ready once the drain watch changes or its sender is gone, as `watch::Receiver::changed`
//! is, but cheap to poll again.
//!
//! A connection's task is woken for every request, and `select!` polls every branch on each
//! wake: `changed()` took the lock of the watch's waiter list to register the same waker again
//! each time, ~160 instructions a poll and two polls a request (callgrind). [`DrainSignal`]
//! registers once for each waker it is polled with, and otherwise reads the watch's version.
//! A poll made out of tokio's budget registers nothing, and is not taken for a registration.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// A wait for the drain watch's change, on a receiver of its own.
type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Ready when the drain watch has changed since it was handed over, or has no sender left.
pub(super) struct DrainSignal {
    receiver: watch::Receiver<bool>,
    /// The wait, made on the first poll that needs it.
    waiting: Option<Wait>,
    /// The waker the wait is registered with, if its last poll registered one.
    registered: Option<Waker>,
}

impl DrainSignal {
    pub(super) fn new(receiver: watch::Receiver<bool>) -> Self {
        Self {
            receiver,
            waiting: None,
            registered: None,
        }
    }
}

impl Future for DrainSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Changed since this receiver last looked, or the sender is gone: what ends
        // `changed()`, with a value or an error.
        if this.receiver.has_changed().unwrap_or(true) {
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            // Registered with this task: a change wakes it, and the check above sees it.
            return Poll::Pending;
        }
        // Its receiver is a clone of this one, which has seen nothing since it was handed
        // over: any change since makes the wait ready, so none is missed.
        let receiver = &this.receiver;
        let waiting = this.waiting.get_or_insert_with(|| {
            let mut own = receiver.clone();
            Box::pin(async move {
                let _ = own.changed().await;
            })
        });
        if waiting.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // Out of tokio's budget for this task, `changed()` registered nothing (tokio wakes the
        // task to poll again): then the next poll polls the wait again too.
        this.registered = tokio::task::coop::has_budget_remaining().then(|| cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::front_door::counting_waker::CountingWaker;

    fn poll(signal: &mut DrainSignal, task: &Arc<CountingWaker>) -> Poll<()> {
        Pin::new(signal).poll(&mut Context::from_waker(&task.waker()))
    }

    #[test]
    fn pending_until_the_drain_then_ready_and_the_task_woken() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let task = CountingWaker::new();
        for _ in 0..3 {
            assert!(poll(&mut signal, &task).is_pending());
        }
        assert_eq!(task.wakes(), 0);
        drain.send_replace(true);
        assert_eq!(task.wakes(), 1, "the waiting task is woken");
        assert!(poll(&mut signal, &task).is_ready());
        assert!(poll(&mut signal, &task).is_ready(), "and stays ready");
    }

    #[test]
    fn a_drain_before_the_first_poll_is_seen() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        drain.send_replace(true);
        assert!(poll(&mut signal, &CountingWaker::new()).is_ready());
    }

    #[test]
    fn a_sender_gone_is_a_drain() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let task = CountingWaker::new();
        assert!(poll(&mut signal, &task).is_pending());
        drop(drain);
        assert_eq!(task.wakes(), 1);
        assert!(poll(&mut signal, &task).is_ready());
    }

    /// A poll made when the task is out of tokio's budget registers nothing: the next one
    /// polls the wait again, and the drain wakes the task.
    #[tokio::test]
    async fn a_poll_out_of_budget_is_not_taken_for_a_registration() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let task = CountingWaker::new();
        while tokio::task::coop::has_budget_remaining() {
            tokio::task::coop::consume_budget().await;
        }
        assert!(poll(&mut signal, &task).is_pending());
        tokio::task::yield_now().await;
        let woken_before = task.wakes();
        assert!(poll(&mut signal, &task).is_pending());
        drain.send_replace(true);
        assert_eq!(task.wakes(), woken_before + 1, "the drain woke the task");
        assert!(poll(&mut signal, &task).is_ready());
    }

    /// Polled by another task (another waker), the drain wakes that one.
    #[test]
    fn a_new_waker_is_the_one_woken() {
        let (drain, receiver) = watch::channel(false);
        let mut signal = DrainSignal::new(receiver);
        let (first, second) = (CountingWaker::new(), CountingWaker::new());
        assert!(poll(&mut signal, &first).is_pending());
        assert!(poll(&mut signal, &second).is_pending());
        drain.send_replace(true);
        assert_eq!(second.wakes(), 1);
        assert!(poll(&mut signal, &second).is_ready());
    }
}
