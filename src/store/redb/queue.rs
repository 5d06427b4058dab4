//! The swaps waiting for the committer: a bounded first-in, first-out queue that writers push
//! onto and the committer empties a batch at a time.
//!
//! A ring reused at the size the load needs rather than `std::sync::mpsc::sync_channel`'s,
//! which allocates every slot of its bound up front (8,192 of ~120 bytes): each write then
//! landed in a slot last touched ~8,000 writes before, out of every cache, where this queue's
//! ring stays as large as the largest backlog so far (the batch in flight, normally) and
//! warm. The committer takes a whole batch under one lock instead of one receive a swap.
//! `soak --durable` on one core, four rounds alternated with the channel it replaces: 1.2%
//! more writes a second, 1.6% less CPU a write (a 256-slot channel, tried first: 1.6% and
//! 2.5%; benches/README.md, twenty-ninth session).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// See the [module docs](self).
pub(super) struct Queue<T> {
    state: Mutex<Waiting<T>>,
    /// Signalled when a swap arrives while the committer sleeps, and when the queue closes.
    arrived: Condvar,
    /// Most swaps waiting: past it a push is refused.
    bound: usize,
}

struct Waiting<T> {
    items: VecDeque<T>,
    /// No more pushes: the store is gone, or the committer has stopped.
    closed: bool,
    /// The committer sleeps on `arrived`: the next push wakes it.
    sleeping: bool,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// `bound` swaps are waiting already.
    Full,
    /// The queue is closed.
    Closed,
}

impl<T> Queue<T> {
    pub(super) fn new(bound: usize) -> Self {
        Self {
            state: Mutex::new(Waiting {
                items: VecDeque::new(),
                closed: false,
                sleeping: false,
            }),
            arrived: Condvar::new(),
            bound,
        }
    }

    /// Nothing panics while holding the lock but an allocation failure, which aborts: a
    /// poisoned lock still guards a queue in order.
    fn lock(&self) -> MutexGuard<'_, Waiting<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` behind the others, waking the committer if it sleeps; `item` comes back
    /// with the refusal (dropped by the caller, outside the lock).
    pub(super) fn push(&self, item: T) -> Result<(), (Refused, T)> {
        let mut waiting = self.lock();
        if waiting.closed {
            return Err((Refused::Closed, item));
        }
        if waiting.items.len() >= self.bound {
            return Err((Refused::Full, item));
        }
        waiting.items.push_back(item);
        let wake = std::mem::take(&mut waiting.sleeping);
        drop(waiting);
        if wake {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Waits until an item is queued, the queue closes, or `until` (if any) has passed;
    /// `false` once the queue is closed and empty. `true` does not promise an item: the time
    /// may be up, or the wake-up spurious (the caller takes what there is and comes back).
    pub(super) fn wait(&self, until: Option<Instant>) -> bool {
        let mut waiting = self.lock();
        if !waiting.items.is_empty() {
            return true;
        }
        if waiting.closed {
            return false;
        }
        waiting.sleeping = true;
        let mut waiting = match until {
            None => self
                .arrived
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner),
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                self.arrived
                    .wait_timeout(waiting, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        waiting.sleeping = false;
        !(waiting.closed && waiting.items.is_empty())
    }

    /// Moves up to `most` of the oldest items, in order, onto `into`.
    pub(super) fn take(&self, into: &mut Vec<T>, most: usize) {
        let mut waiting = self.lock();
        let count = waiting.items.len().min(most);
        into.extend(waiting.items.drain(..count));
    }

    /// Refuses every later push and wakes the committer, which takes what is queued still.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_one();
    }

    /// Closes the queue and hands back what is waiting in it (for the caller to drop outside
    /// the lock: the committer has stopped, and their writers hear so).
    pub(super) fn close_and_empty(&self) -> VecDeque<T> {
        let mut waiting = self.lock();
        waiting.closed = true;
        std::mem::take(&mut waiting.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Past its bound a push is refused, with its item, and leaves the queue as it was; taking
    /// makes room again. Items come out oldest first, at most as many as asked.
    #[test]
    fn a_full_queue_refuses_and_keeps_its_order() {
        let queue = Queue::new(3);
        for item in 0..3 {
            queue.push(item).unwrap();
        }
        assert_eq!(queue.push(3), Err((Refused::Full, 3)));
        let mut taken = Vec::new();
        queue.take(&mut taken, 2);
        assert_eq!(taken, [0, 1]);
        queue.push(4).unwrap();
        queue.take(&mut taken, 10);
        assert_eq!(taken, [0, 1, 2, 4], "the refused item was not queued");
    }

    /// A closed queue refuses pushes; what was queued before is still taken, and then
    /// waiting says the queue is done.
    #[test]
    fn a_closed_queue_gives_what_it_holds_then_ends() {
        let queue = Queue::new(8);
        queue.push("before").unwrap();
        queue.close();
        assert_eq!(queue.push("after"), Err((Refused::Closed, "after")));
        assert!(queue.wait(None), "an item is still waiting");
        let mut taken = Vec::new();
        queue.take(&mut taken, 8);
        assert_eq!(taken, ["before"]);
        assert!(!queue.wait(None), "closed and empty");
    }

    /// Emptied on close, the queue hands back what it held, and refuses what comes after.
    #[test]
    fn closing_and_emptying_hands_back_what_waited() {
        let queue = Queue::new(8);
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        assert_eq!(queue.close_and_empty(), [1, 2]);
        assert_eq!(queue.push(3), Err((Refused::Closed, 3)));
        assert!(!queue.wait(None));
    }

    /// A sleeping committer is woken by a push from another thread, and by a close. Without
    /// either, it wakes when its time is up, with nothing to take.
    #[test]
    fn a_sleeping_committer_wakes_for_a_push_or_a_close() {
        let queue = Arc::new(Queue::new(8));
        assert!(queue.wait(Some(Instant::now() + Duration::from_millis(1))));
        let mut taken = Vec::new();
        queue.take(&mut taken, 8);
        assert!(taken.is_empty());

        for push in [true, false] {
            let other = {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    // Once the committer sleeps.
                    while !queue.lock().sleeping {
                        std::thread::yield_now();
                    }
                    if push {
                        queue.push(7).unwrap();
                    } else {
                        queue.close();
                    }
                })
            };
            // A wake-up that never comes fails here, after a minute, instead of hanging.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut open = queue.wait(Some(deadline));
            while open && queue.lock().items.is_empty() && Instant::now() < deadline {
                // A spurious wake-up: the condition variable may give them.
                open = queue.wait(Some(deadline));
            }
            assert!(Instant::now() < deadline, "never woken (push: {push})");
            other.join().unwrap();
            assert_eq!(open, push, "a push leaves it open, a close ends it");
            taken.clear();
            queue.take(&mut taken, 8);
            let expected: &[i32] = if push { &[7] } else { &[] };
            assert_eq!(taken, expected, "push: {push}");
        }
    }
}
