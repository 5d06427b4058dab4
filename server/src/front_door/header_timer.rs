//! [`HeaderTimer`]: hyper's timer for one HTTP/1 connection, whose sleeps share one entry in
//! tokio's timer wheel for the connection's life.
//!
//! hyper arms its header-read deadline (`--header-read-timeout`) for every request head, from
//! the moment it starts waiting for one, and drops it once the head is in. With hyper-util's
//! `TokioTimer` each of those is a boxed tokio `Sleep`: allocated, put in the runtime's timer
//! wheel when first polled (under the wheel's lock) and taken out again when dropped (the lock
//! again), every request. Here a connection's sleeps all wait on one tokio `Sleep`, which is
//! only moved when it fires before the deadline of the sleep being polled (that sleep's head
//! started later than the one the entry was set for): once per timeout on a busy connection,
//! not once per request. The entry is never later than the deadline of any
//! sleep polled: one asking for an earlier deadline moves it back at once. So every sleep is
//! due exactly when asked, as hyper's own; what changes is that an entry set for an earlier
//! head may wake the connection's task once, needlessly, when it fires. By callgrind
//! (`scripts/server_instructions.py`), −298 instructions a keep-alive PATCH.
//!
//! For hyper's HTTP/1 server only, which has at most one such sleep at a time, polled from the
//! connection's task. HTTP/2's keep-alive pings keep hyper-util's timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// The one timer entry a connection's sleeps share; `None` until one is first polled.
type Entry = Arc<Mutex<Option<Shared>>>;

/// The entry, and the waker it will wake when it fires, if it has been polled since it last
/// fired or moved.
#[derive(Debug)]
struct Shared {
    sleep: Pin<Box<tokio::time::Sleep>>,
    registered: Option<Waker>,
}

/// hyper's [`Timer`] for one HTTP/1 connection: see the [module docs](self).
///
/// One per connection, never shared: the entry wakes only the task that polled it last, so a
/// timer shared by two connections would leave one of them without its deadline. Hence no
/// `Clone`.
#[derive(Debug, Default)]
pub(crate) struct HeaderTimer {
    entry: Entry,
}

impl Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(SharedSleep {
            deadline: tokio::time::Instant::from_std(deadline),
            entry: self.entry.clone(),
        })
    }

    /// tokio's clock, which the entry keeps (the same as `Instant::now` unless the runtime's
    /// time is paused, as in tests).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One of a connection's sleeps: due at `deadline`, waiting on the connection's entry.
struct SharedSleep {
    deadline: tokio::time::Instant,
    entry: Entry,
}

impl Future for SharedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut entry = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = entry.get_or_insert_with(|| Shared {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            registered: None,
        });
        if shared.sleep.deadline() > deadline {
            shared.sleep.as_mut().reset(deadline);
            shared.registered = None;
        }
        // Polled already by this task, registered, and not fired since: it wakes this task
        // when it fires, and a poll now would only register the same waker again (hyper polls
        // the sleep twice a request; tokio's poll re-registers each time: ~100 instructions).
        if shared
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
            && !shared.sleep.is_elapsed()
        {
            return Poll::Pending;
        }
        loop {
            if shared.sleep.as_mut().poll(cx).is_pending() {
                // Out of tokio's budget for this task, the poll registered nothing (tokio
                // wakes the task to poll again): then the next poll is a real one too.
                shared.registered =
                    tokio::task::coop::has_budget_remaining().then(|| cx.waker().clone());
                return Poll::Pending;
            }
            shared.registered = None;
            if shared.sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // Set for an earlier head, and fired: on to this one's deadline.
            shared.sleep.as_mut().reset(deadline);
        }
    }
}

impl Sleep for SharedSleep {}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;
    use crate::front_door::counting_waker::CountingWaker;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Whether `sleep` is due now (polling it once).
    async fn due(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_is_due_at_its_deadline_and_not_before() {
        let timer = HeaderTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        assert!(!due(&mut sleep).await);
        tokio::time::advance(TIMEOUT - Duration::from_millis(1)).await;
        assert!(!due(&mut sleep).await);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(due(&mut sleep).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_heads_sleep_outlives_the_entry_set_for_an_earlier_one() {
        let timer = HeaderTimer::default();
        let mut first = timer.sleep(TIMEOUT);
        assert!(!due(&mut first).await);
        drop(first);
        // The next head starts 4 s later: due 4 s after the first would have been.
        tokio::time::advance(Duration::from_secs(4)).await;
        let mut second = timer.sleep(TIMEOUT);
        assert!(!due(&mut second).await);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!due(&mut second).await, "due at the first head's deadline");
        tokio::time::advance(Duration::from_secs(4) - Duration::from_millis(1)).await;
        assert!(!due(&mut second).await);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(due(&mut second).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_earlier_than_the_entry_is_due_at_its_own_deadline() {
        let timer = HeaderTimer::default();
        let mut long = timer.sleep(3 * TIMEOUT);
        assert!(!due(&mut long).await);
        let mut short = timer.sleep(TIMEOUT);
        assert!(!due(&mut short).await);
        tokio::time::advance(TIMEOUT).await;
        assert!(due(&mut short).await);
        assert!(
            !due(&mut long).await,
            "the short sleep's deadline is not the long one's"
        );
        tokio::time::advance(2 * TIMEOUT).await;
        assert!(due(&mut long).await);
    }

    /// The entry is polled again, not taken as registered, when the waker is another: then
    /// the other one is woken when it fires. Polled again with the same waker, it is woken
    /// once.
    #[tokio::test(start_paused = true)]
    async fn a_sleep_polled_with_another_waker_wakes_that_one() {
        let timer = HeaderTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        let (first, second) = (CountingWaker::new(), CountingWaker::new());
        let mut poll = |task: &Arc<CountingWaker>| {
            sleep
                .as_mut()
                .poll(&mut Context::from_waker(&task.waker()))
                .is_ready()
        };
        assert!(!poll(&first));
        assert!(!poll(&first));
        assert!(!poll(&second));
        assert!(!poll(&second));
        tokio::time::advance(TIMEOUT).await;
        assert_eq!((first.wakes(), second.wakes()), (0, 1));
        assert!(poll(&second));
    }

    /// A poll made when the task is out of tokio's budget registers nothing: the next one
    /// polls the entry again, and the sleep is due at its deadline.
    #[tokio::test(start_paused = true)]
    async fn a_poll_out_of_budget_is_not_taken_for_a_registration() {
        let timer = HeaderTimer::default();
        let mut sleep = timer.sleep(TIMEOUT);
        while tokio::task::coop::has_budget_remaining() {
            tokio::task::coop::consume_budget().await;
        }
        assert!(!due(&mut sleep).await);
        tokio::task::yield_now().await;
        assert!(!due(&mut sleep).await);
        tokio::time::advance(TIMEOUT).await;
        assert!(due(&mut sleep).await, "the entry was never registered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_wakes_its_task_when_due() {
        let timer = HeaderTimer::default();
        let mut earlier = timer.sleep(TIMEOUT);
        assert!(!due(&mut earlier).await);
        drop(earlier);
        tokio::time::advance(Duration::from_secs(5)).await;
        let started = tokio::time::Instant::now();
        // Awaited, not polled by hand: only a wake-up from the entry (first at the earlier
        // sleep's deadline, then at this one's) lets it finish.
        timer.sleep(TIMEOUT).await;
        assert_eq!(started.elapsed(), TIMEOUT);
    }
}
