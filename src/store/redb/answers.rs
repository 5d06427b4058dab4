//! How a committed batch's outcomes reach the writers of a one-worker tokio runtime: with
//! one wake-up from the committer thread, or, if that runtime does not run the task it was
//! given, from the committer about a grace period after the commit (once the commit then in
//! flight, if any, has returned).
//!
//! A wake-up from outside a runtime is a write to an idle worker's eventfd, and on a busy core
//! the woken worker preempts the committer at once, runs the one writer, and parks again
//! before the next outcome is sent: answering each writer from the committer made ~10 such
//! round trips a commit of ~61 (`perf stat` of `soak --durable --server-cpu 0`;
//! benches/README.md). So the committer spawns one task on the runtime, and that task
//! delivers their outcomes: from inside the runtime a wake-up is a push on the worker's own
//! queue (one task for each such runtime a batch's writers run on). Which writers go through
//! a task is `group_commit`'s choice (`answered_through`: those of one-worker runtimes); the
//! others are answered directly.
//!
//! A task depends on its runtime running it. One whose threads are all blocked (a writer that
//! blocks a worker waiting for its own swap, with another executor's `block_on`) would never
//! run it, so the committer keeps what it handed out and delivers it itself once [`GRACE`]
//! has passed: whoever takes the outcomes first delivers them, the other finds nothing. A
//! task dropped unrun (its runtime shut down) delivers them as it is dropped.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::store::{StoreError, SwapOutcome};

/// What a writer hears of its swap.
pub(super) type Outcome = Result<SwapOutcome, StoreError>;

/// A writer's runtime (if its outcome is to go through one), its reply channel, its outcome.
pub(super) type Answer = (Option<Handle>, oneshot::Sender<Outcome>, Outcome);

/// How long outcomes handed to a runtime's task wait for it before the committer delivers
/// them itself: far past a busy runtime's scheduling delay, short enough that a blocked one
/// turns into a delay rather than a hang.
pub(super) const GRACE: Duration = Duration::from_millis(100);

/// Outcomes still to deliver; dropping it delivers them, on the dropping thread.
#[derive(Default)]
struct Relay(Vec<(oneshot::Sender<Outcome>, Outcome)>);

impl Drop for Relay {
    fn drop(&mut self) {
        for (reply, outcome) in self.0.drain(..) {
            let _ = reply.send(outcome);
        }
    }
}

/// Outcomes handed to a task and kept by the committer: whoever takes them delivers them.
type Slot = Arc<Mutex<Option<Relay>>>;

fn deliver(slot: &Slot) {
    let relay = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(relay);
}

/// The task's part of a slot: delivers it when dropped, whether the task ran or not.
struct Delivery(Slot);

impl Drop for Delivery {
    fn drop(&mut self) {
        deliver(&self.0);
    }
}

/// The committer's side: slots handed to tasks and not yet known to be delivered, each with
/// the moment the committer delivers it itself. Dropping it delivers every one left (the
/// committer stops).
pub(super) struct Handed {
    grace: Duration,
    slots: Vec<(Instant, Slot)>,
}

impl Handed {
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            slots: Vec::new(),
        }
    }

    /// Delivers `answers`: through one task for each runtime named, directly for the others.
    pub(super) fn answer(&mut self, answers: impl IntoIterator<Item = Answer>) {
        let mut by_runtime: Vec<(Handle, Relay)> = Vec::new();
        for (runtime, reply, outcome) in answers {
            let Some(runtime) = runtime else {
                let _ = reply.send(outcome);
                continue;
            };
            let id = runtime.id();
            match by_runtime.iter_mut().find(|(known, _)| known.id() == id) {
                Some((_, relay)) => relay.0.push((reply, outcome)),
                None => by_runtime.push((runtime, Relay(vec![(reply, outcome)]))),
            }
        }
        let due = Instant::now() + self.grace;
        for (runtime, relay) in by_runtime {
            let slot: Slot = Arc::new(Mutex::new(Some(relay)));
            let delivery = Delivery(slot.clone());
            self.slots.push((due, slot));
            // A runtime that has shut down drops the task here, at once: delivered.
            drop(runtime.spawn(async move { drop(delivery) }));
        }
    }

    /// Forgets the slots whose task is done with them, and delivers those due by `now`.
    pub(super) fn sweep(&mut self, now: Instant) {
        self.slots.retain(|(due, slot)| {
            // One holder left, this one: the task's `Delivery` is gone, and took the outcomes.
            if Arc::strong_count(slot) == 1 {
                return false;
            }
            if *due <= now {
                deliver(slot);
                return false;
            }
            true
        });
    }

    /// When the next slot falls due, if any is left.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.slots.iter().map(|(due, _)| *due).min()
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        for (_, slot) in self.slots.drain(..) {
            deliver(&slot);
        }
    }
}

#[cfg(test)]
#[path = "answers_tests.rs"]
mod tests;
