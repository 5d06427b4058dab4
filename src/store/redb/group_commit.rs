//! Group commit: every compare-and-swap of a [`RedbStore`](super::RedbStore) goes to one
//! committer thread, which applies all the swaps waiting at that moment in one write
//! transaction and one fsync, then answers each writer once that commit is durable.
//!
//! One fsync per transaction is the embedded store's wall (a few thousand a second on a
//! common disk); with one transaction per batch, writers that arrive while a commit is in
//! flight share the next one, so throughput grows with concurrency instead of queueing on the
//! disk. Nothing is answered before it is on disk: a writer hears `Swapped` only after the
//! commit that holds its write returned, and if that commit fails, every writer of the batch
//! gets the error (none of their writes happened). The outcomes of a batch reach the writers
//! of a one-worker runtime through one task spawned there, and the others directly (see
//! `answers` and `answered_through`): one wake-up from the committer a commit, instead of one
//! a writer, where every wake-up would preempt it.
//!
//! Swaps in one batch are applied in arrival order, each against what the ones before it left:
//! two writers racing from the same version get `Swapped` and `Conflict` exactly as with one
//! transaction each, and the loser, retrying after the answer, reads the winner's committed
//! object. A stored object that cannot be read fails the swap that needed it, not its batch.
//!
//! A commit that panics (a bug in redb or here: nothing known does) stops the committer: the
//! state of a database whose writer panicked mid-transaction is not worth betting the next
//! writes on. The panic may have come before the commit or after it was on disk, so the batch
//! is settled by reading back an object it wrote: if the transaction landed, each swap gets
//! the outcome it had in it (a `Swapped` writer audits its write, the cache gets it); if not,
//! or if that cannot be told, every swap gets an error and the cache forgets their objects.
//! A commit that fails stops the committer too (see `BatchFailed`). From then on every write
//! fails at once, and the store says it is not writable
//! ([`SecurityStore::writable`](crate::SecurityStore::writable)), so a readiness probe takes
//! the process out of rotation until it is restarted.
//!
//! A write is audited by its writer once it hears `Swapped`, so a write nobody will hear of
//! should not land. A swap whose writer has gone by the time its batch is taken (its future
//! dropped) is not applied. One whose writer goes while its batch commits lands unaudited:
//! the service never drops a write that has started (it moves it to a task of its own, see
//! `ResponseFuture::run_to_the_end`), so only a runtime shut down past `--shutdown-timeout`
//! in that window leaves one.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, ReadableTable};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use super::answers::{GRACE, Handed, Outcome};
use super::queue::{Queue, Refused};
use super::read_cache::ReadCache;
use super::{OBJECTS, TENANTS, storage};
use crate::store::{ObjectKey, Snapshot, StoreError, StoreErrorKind, SwapOutcome};

#[path = "settle.rs"]
mod settle;
use settle::settle_after_panic;

/// Most swaps in one transaction: bounds the time one commit holds its writers (and the
/// memory of one batch) under a flood.
const MAX_BATCH: usize = 512;
/// Most swaps waiting for the committer: past it (a stalled disk) a write is refused at once
/// with 503 instead of queueing without bound (writes run on after their client leaves).
const MAX_QUEUED: usize = 8192;

/// One writer's compare-and-swap, waiting for its commit.
struct Pending {
    key: ObjectKey,
    expected: u64,
    new: Snapshot,
    reply: oneshot::Sender<Outcome>,
    /// The runtime whose task delivers the writer's outcome, if any (see `answered_through`).
    runtime: Option<Handle>,
}

/// The committer thread and the queue to it. Dropping the last handle closes the queue and
/// waits for the thread to finish what it holds, so the file is closed cleanly.
pub(super) struct GroupCommit {
    queue: Arc<Queue<Pending>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the committer of `db`.
    pub(super) fn start(db: Arc<Database>, cache: Arc<ReadCache>) -> std::io::Result<Self> {
        Self::start_with_grace(db, cache, GRACE)
    }

    /// [`start`](Self::start), with how long outcomes handed to a runtime's task wait for it
    /// before the committer delivers them itself.
    fn start_with_grace(
        db: Arc<Database>,
        cache: Arc<ReadCache>,
        grace: Duration,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::new(MAX_QUEUED));
        let thread = {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("redb-commit".to_owned())
                .spawn(move || {
                    // However the committer ends, writes queued then hear that it stopped, and
                    // later ones are refused at once.
                    let _stopped = Stopped(&queue);
                    run(&db, &cache, &queue, grace);
                })?
        };
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }

    /// `Ok` while the committer runs; the error writes get once it has stopped.
    pub(super) fn running(&self) -> Result<(), StoreError> {
        match &self.thread {
            Some(thread) if !thread.is_finished() => Ok(()),
            _ => Err(stopped()),
        }
    }

    /// Queues a swap; the answer comes once its transaction is committed (or failed).
    pub(super) async fn swap(
        &self,
        key: ObjectKey,
        expected: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            key,
            expected,
            new,
            reply,
            runtime: Handle::try_current().ok().filter(answered_through),
        };
        match self.queue.push(pending) {
            Ok(()) => {}
            Err((Refused::Full, _)) => {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "redb: too many writes are waiting for the disk",
                ));
            }
            Err((Refused::Closed, _)) => return Err(stopped()),
        }
        // Dropping this future withdraws the swap only while it is queued: once its batch is
        // taken, it is committed (or failed) all the same.
        answer.await.map_err(|_| stopped())?
    }
}

/// Whether a writer on `runtime` hears its outcome through a task the committer spawns there
/// (see `answers`) rather than from the committer itself: on a multi-thread runtime with one
/// worker. Every wake-up from the committer lands on that worker, parked between batches, and
/// where the two share a core (a server pinned to one) each preempts the committer: ~10 round
/// trips a commit. With several workers the committer's wake-ups spread over them as they
/// come, and one task answering a whole batch from one worker showed no gain (two unpinned
/// cores, nine alternating `soak --durable` rounds: 0.96× the throughput, within the noise of
/// those runs), so those writers keep the direct answer. A one-worker runtime with cores to
/// spare (`--worker-threads 1` on a larger machine, a CPU quota) takes the task too, unmeasured:
/// there it costs a spawn a commit and saves the committer's wake-ups. A current-thread
/// runtime may not be driven at all while its handle is current (`Runtime::enter` under
/// another executor).
fn answered_through(runtime: &Handle) -> bool {
    runtime.runtime_flavor() == RuntimeFlavor::MultiThread && runtime.metrics().num_workers() == 1
}

fn stopped() -> StoreError {
    StoreError::new(StoreErrorKind::Other, "redb: the committer has stopped")
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Closes the queue when the committer ends, dropping what waits in it: their writers hear
/// that the committer stopped (their reply channels close).
struct Stopped<'a>(&'a Queue<Pending>);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        drop(self.0.close_and_empty());
    }
}

/// The committer: waits for a swap, takes every one queued by then (up to [`MAX_BATCH`]),
/// commits them together, answers each. Ends when the queue is closed and empty.
fn run(db: &Database, cache: &ReadCache, queue: &Queue<Pending>, grace: Duration) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Outcomes handed to runtimes' tasks; whatever is left when this returns is delivered.
    let mut handed = Handed::new(grace);
    while next_batch(queue, &mut batch, &mut handed) {
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        // Filled as the batch is applied, so that a panic leaves what each swap did.
        let mut outcomes = Vec::with_capacity(batch.len());
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit(db, &batch, &mut outcomes)
        }));
        let Ok(committed) = committed else {
            settle_after_panic(db, cache, &mut batch, outcomes, &mut handed);
            return;
        };
        match committed {
            Ok(()) => {
                // The cache first: once a writer is answered, every read sees its write.
                for (pending, outcome) in batch.iter().zip(&outcomes) {
                    if matches!(outcome, Ok(SwapOutcome::Swapped)) {
                        cache.committed(&pending.key, &pending.new);
                    }
                }
                handed.answer(
                    batch
                        .drain(..)
                        .zip(outcomes)
                        .map(|(pending, outcome)| (pending.runtime, pending.reply, outcome)),
                );
            }
            Err(BatchFailed { error, stops }) => {
                // Every swap of the batch is answered with the error. A batch that failed
                // before its commit changed nothing, and the next goes on. One whose commit
                // failed may have reached the disk or not (an fsync that failed says nothing
                // of what it wrote): none of its objects is left in the cache, and the
                // committer stops (see `BatchFailed`), so that the store says it cannot write
                // (`/readyz` 503) instead of failing every write while it looks ready.
                if stops {
                    for pending in &batch {
                        cache.forget(&pending.key);
                    }
                }
                handed.answer(
                    batch
                        .drain(..)
                        .map(|pending| (pending.runtime, pending.reply, Err(error.clone()))),
                );
                if stops {
                    return;
                }
            }
        }
    }
}

/// Why a batch failed, and whether the committer stops. It stops when the transaction could
/// not begin or its commit failed, and on any I/O error: redb then refuses every later write
/// until the file is opened again (an I/O error latches as `PreviousIo`; a failed commit of
/// any kind discards redb's allocator state, after which `begin_write` fails as `Corrupted`:
/// `AllocatorStateLatch` in redb 4's `transactions.rs`). A swap that fails to read or write
/// its own entry fails its batch, whose transaction is dropped unwritten, and the next batch
/// goes on.
struct BatchFailed {
    error: StoreError,
    stops: bool,
}

impl BatchFailed {
    fn stopping(error: impl Into<redb::Error>) -> Self {
        Self {
            error: storage(error),
            stops: true,
        }
    }
}

impl From<StoreError> for BatchFailed {
    fn from(error: StoreError) -> Self {
        let stops = error.kind() == StoreErrorKind::Unavailable;
        Self { error, stops }
    }
}

/// Fills `batch` with the swaps to commit next, once one is queued: `false` once the queue
/// is closed and empty. Before each wait it delivers the outcomes handed to runtimes whose
/// tasks have not run by their due time, and forgets those delivered (see `answers`).
fn next_batch(queue: &Queue<Pending>, batch: &mut Vec<Pending>, handed: &mut Handed) -> bool {
    while batch.is_empty() {
        handed.sweep(Instant::now());
        if !queue.wait(handed.next_due()) {
            return false;
        }
        // The writer that queued first woke this thread, which the scheduler tends to run at
        // once: on a busy core (the server's workers and this thread on one) the batch would
        // be that writer and whoever queued during the last fsync. Yielding once lets the
        // runnable workers queue what they hold first, so one commit (its pages and its
        // fsync) serves more writers; with a core to spare it returns at once. (`soak
        // --durable`, one core: 5-16% more writes a second, p99 lower; benches/README.md.)
        std::thread::yield_now();
        queue.take(batch, MAX_BATCH);
    }
    true
}

/// Applies `batch` in order in one write transaction, and commits it if anything changed:
/// an outcome per swap in `outcomes`, pushed as each is applied (a stored object that cannot
/// be read fails its swap alone), or the error that failed the transaction (every swap of it).
fn commit(
    db: &Database,
    batch: &[Pending],
    outcomes: &mut Vec<Result<SwapOutcome, StoreError>>,
) -> Result<(), BatchFailed> {
    let write = db.begin_write().map_err(BatchFailed::stopping)?;
    let mut changed = false;
    {
        let mut table = write.open_table(OBJECTS).map_err(storage)?;
        // Opened only for a batch that creates an object: opening a table is a walk of the
        // table tree (~5k instructions), in every commit otherwise.
        let mut tenants = None;
        for pending in batch {
            let key = &pending.key;
            #[cfg(test)]
            assert_ne!(
                key.tenant_id(),
                PANICS_IN_COMMIT,
                "a fault the tests inject"
            );
            let id = (key.tenant_id(), key.user_id());
            let current = table.get(id).map_err(storage)?.map(|entry| {
                let (version, json) = entry.value();
                // The bytes are needed only to report a conflict.
                let json = (version != pending.expected).then(|| Bytes::copy_from_slice(json));
                (version, json)
            });
            let current_version = current.as_ref().map_or(0, |(version, _)| *version);
            // `insert`, not a replacement through `get_mut`'s guard (one walk down the tree
            // fewer): the guard rebuilds a leaf that outgrows its page into one bigger page
            // instead of splitting it, and keeps a page grown that way when the value shrinks
            // back, so every later write to any object of that leaf would copy all of it.
            // Nor `insert` first, comparing the old value it hands back (one walk fewer
            // too): a swap that lost would put the old value back, and if its write was the
            // larger, its leaf would stay rebuilt into a bigger page, or split, the same way.
            if current_version == pending.expected {
                table
                    .insert(id, (pending.new.version(), pending.new.json().as_ref()))
                    .map_err(storage)?;
                if current.is_none() {
                    let tenants = match &mut tenants {
                        Some(tenants) => tenants,
                        None => tenants.insert(write.open_table(TENANTS).map_err(storage)?),
                    };
                    let count = tenants
                        .get(key.tenant_id())
                        .map_err(storage)?
                        .map_or(0, |count| count.value());
                    tenants
                        .insert(key.tenant_id(), count + 1)
                        .map_err(storage)?;
                }
                changed = true;
                outcomes.push(Ok(SwapOutcome::Swapped));
            } else {
                outcomes.push(
                    current
                        .map(|(version, json)| {
                            Snapshot::from_json(version, json.unwrap_or_default())
                        })
                        .transpose()
                        .map(|current| SwapOutcome::Conflict { current })
                        .map_err(|e| {
                            StoreError::new(
                                StoreErrorKind::Corrupt,
                                format!("stored object is not JSON: {e}"),
                            )
                        }),
                );
            }
        }
    }
    if changed {
        // redb's default durability: the commit returns once the data is on disk.
        #[cfg(test)]
        let committed = match injected_commit_error(batch) {
            Some(error) => Err(error),
            None => write.commit(),
        };
        #[cfg(not(test))]
        let committed = write.commit();
        committed.map_err(BatchFailed::stopping)?;
        #[cfg(test)]
        assert!(
            batch
                .iter()
                .all(|p| p.key.tenant_id() != PANICS_AFTER_COMMIT),
            "a fault the tests inject"
        );
    } else {
        write.abort().map_err(BatchFailed::stopping)?;
    }
    Ok(())
}

/// A tenant whose swaps make a commit panic before it is committed, in this crate's tests.
#[cfg(test)]
const PANICS_IN_COMMIT: &str = "panics-in-commit";
/// A tenant whose swaps make a commit panic once it is on disk, in this crate's tests.
#[cfg(test)]
const PANICS_AFTER_COMMIT: &str = "panics-after-commit";
/// A tenant whose swaps make a commit fail with an I/O error, in this crate's tests.
#[cfg(test)]
const IO_ERROR_IN_COMMIT: &str = "io-error-in-commit";
/// A tenant whose swaps make a commit fail as redb does on finding the file corrupt, in this
/// crate's tests.
#[cfg(test)]
const CORRUPT_IN_COMMIT: &str = "corrupt-in-commit";

/// The error a commit of `batch` fails with in place of committing, if the tests inject one.
#[cfg(test)]
fn injected_commit_error(batch: &[Pending]) -> Option<redb::CommitError> {
    let injected = |tenant| batch.iter().any(|p| p.key.tenant_id() == tenant);
    let fault = "a fault the tests inject";
    if injected(IO_ERROR_IN_COMMIT) {
        Some(redb::StorageError::Io(std::io::Error::other(fault)).into())
    } else if injected(CORRUPT_IN_COMMIT) {
        Some(redb::StorageError::Corrupted(fault.to_owned()).into())
    } else {
        None
    }
}

#[cfg(test)]
#[path = "group_commit_tests.rs"]
mod tests;
