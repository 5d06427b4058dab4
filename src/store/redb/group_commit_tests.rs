//! Tests of `group_commit`: the committer run over hand-built batches.

use super::settle::stored;
use super::*;
use redb::ReadableDatabase;
use serde_json::json;

/// A database in a directory of its own, removed afterwards.
struct Scratch(std::path::PathBuf, Arc<Database>);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "security-update-group-commit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::create(dir.join("store.redb")).unwrap();
        Self(dir, Arc::new(db))
    }

    fn stored(&self, key: &ObjectKey) -> Option<u64> {
        stored(&self.1, key).unwrap().map(|(version, _)| version)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Answer = oneshot::Receiver<Outcome>;

fn pending(key: &ObjectKey, expected: u64) -> (Pending, Answer) {
    let (reply, answer) = oneshot::channel();
    let new = Snapshot::new(
        expected + 1,
        json!({"n": expected + 1}).as_object().unwrap().clone(),
    )
    .unwrap();
    let pending = Pending {
        key: key.clone(),
        expected,
        new,
        reply,
        runtime: None,
    };
    (pending, answer)
}

/// Runs the committer over `swaps`, queued before it starts: one batch.
fn commit_as_one_batch(db: &Database, swaps: Vec<Pending>) {
    run(db, &ReadCache::new(), &queued(swaps), GRACE);
}

/// A closed queue holding `swaps`.
fn queued(swaps: Vec<Pending>) -> Queue<Pending> {
    let queue = Queue::new(MAX_QUEUED);
    for swap in swaps {
        assert!(queue.push(swap).is_ok());
    }
    queue.close();
    queue
}

/// A writer whose future was dropped before its batch was taken (a runtime shut down
/// past its drain timeout) cannot audit its write: the write is not applied, and the
/// others of the batch are.
#[test]
fn a_swap_whose_writer_is_gone_is_not_applied() {
    let scratch = Scratch::new("gone");
    let (gone, kept) = (ObjectKey::new("t", "gone"), ObjectKey::new("t", "kept"));
    let (abandoned, answer) = pending(&gone, 0);
    drop(answer);
    let (swap, mut answer) = pending(&kept, 0);
    commit_as_one_batch(&scratch.1, vec![abandoned, swap]);
    assert_eq!(answer.try_recv().unwrap(), Ok(SwapOutcome::Swapped));
    assert_eq!(scratch.stored(&gone), None, "an unaudited write landed");
    assert_eq!(scratch.stored(&kept), Some(1));
    let read = scratch.1.begin_read().unwrap();
    let tenants = read.open_table(TENANTS).unwrap();
    assert_eq!(tenants.get("t").unwrap().unwrap().value(), 1);
}

/// A swap that loses its race leaves nothing of its write: the stored object stays as it
/// was, bytes and all, whether it existed or not, and whether the batch commits (another
/// swap of it won) or not (every swap lost).
#[test]
fn a_swap_that_loses_leaves_the_stored_object_as_it_was() {
    let scratch = Scratch::new("lost");
    let (raced, missing) = (ObjectKey::new("t", "raced"), ObjectKey::new("t", "missing"));
    let conflict_version = |answer: &mut Answer| match answer.try_recv().unwrap() {
        Ok(SwapOutcome::Conflict { current }) => current.map(|current| current.version()),
        other => panic!("not a conflict: {other:?}"),
    };
    let (first, mut answer) = pending(&raced, 0);
    commit_as_one_batch(&scratch.1, vec![first]);
    assert_eq!(answer.try_recv().unwrap(), Ok(SwapOutcome::Swapped));
    let at_one = stored(&scratch.1, &raced).unwrap().unwrap();
    assert_eq!(at_one.0, 1);

    // Every swap of the batch loses: from a version neither object has.
    let (stale, mut stale_answer) = pending(&raced, 5);
    let (ghost, mut ghost_answer) = pending(&missing, 5);
    commit_as_one_batch(&scratch.1, vec![stale, ghost]);
    assert_eq!(conflict_version(&mut stale_answer), Some(1));
    assert_eq!(conflict_version(&mut ghost_answer), None);
    assert_eq!(stored(&scratch.1, &raced).unwrap(), Some(at_one.clone()));
    assert_eq!(scratch.stored(&missing), None);

    // One wins, then one loses on the same object (its write, version 1, differs from the
    // winner's) and one on an object that does not exist, in one batch that commits.
    let (wins, mut wins_answer) = pending(&raced, 1);
    let (loses, mut loses_answer) = pending(&raced, 0);
    let (ghost, mut ghost_answer) = pending(&missing, 3);
    commit_as_one_batch(&scratch.1, vec![wins, loses, ghost]);
    assert_eq!(wins_answer.try_recv().unwrap(), Ok(SwapOutcome::Swapped));
    assert_eq!(conflict_version(&mut loses_answer), Some(2));
    assert_eq!(conflict_version(&mut ghost_answer), None);
    let (version, json) = stored(&scratch.1, &raced).unwrap().unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
        json!({"n": 2})
    );
    assert_eq!(
        scratch.stored(&missing),
        None,
        "a lost swap created its object"
    );
    let read = scratch.1.begin_read().unwrap();
    let tenants = read.open_table(TENANTS).unwrap();
    assert_eq!(tenants.get("t").unwrap().unwrap().value(), 1);
}

/// A stored object that is not JSON fails the swap that needed to read it; the other
/// writers of its batch are committed and answered.
#[test]
fn an_unreadable_object_fails_its_own_swap_not_its_batch() {
    let scratch = Scratch::new("corrupt");
    let (broken, fine) = (ObjectKey::new("t", "broken"), ObjectKey::new("t", "fine"));
    let write = scratch.1.begin_write().unwrap();
    write
        .open_table(OBJECTS)
        .unwrap()
        .insert(
            (broken.tenant_id(), broken.user_id()),
            (3, &b"not json"[..]),
        )
        .unwrap();
    write.commit().unwrap();
    // From version 1: a conflict, whose current object must be read back.
    let (conflicting, mut broken_answer) = pending(&broken, 1);
    let (swap, mut fine_answer) = pending(&fine, 0);
    commit_as_one_batch(&scratch.1, vec![conflicting, swap]);
    let refused = broken_answer.try_recv().unwrap().unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Corrupt, "{refused:?}");
    assert_eq!(fine_answer.try_recv().unwrap(), Ok(SwapOutcome::Swapped));
    assert_eq!(scratch.stored(&fine), Some(1));
    assert_eq!(
        stored(&scratch.1, &broken).unwrap(),
        Some((3, b"not json".to_vec())),
        "the broken object was touched"
    );
}

/// Through the committer thread and a runtime: many writers at once, each its own object,
/// all hear `Swapped` and all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_hear_their_commit() {
    let scratch = Scratch::new("concurrent");
    let committer =
        Arc::new(GroupCommit::start(scratch.1.clone(), Arc::new(ReadCache::new())).unwrap());
    let keys: Vec<ObjectKey> = (0..64)
        .map(|i| ObjectKey::new("t", &format!("u{i}")))
        .collect();
    let writers: Vec<_> = keys
        .iter()
        .cloned()
        .map(|key| {
            let committer = committer.clone();
            tokio::spawn(async move {
                let new = pending(&key, 0).0.new;
                committer.swap(key, 0, new).await
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.await.unwrap(), Ok(SwapOutcome::Swapped));
    }
    for key in &keys {
        assert_eq!(scratch.stored(key), Some(1), "{key:?}");
    }
}

/// The runtime a swap's outcome is to go through: a one-worker multi-thread runtime's; none
/// for a runtime of more workers (they take the committer's wake-ups as they come), for a
/// current-thread runtime (which may not be driven while its handle is current) or outside
/// any runtime.
#[test]
fn a_swap_names_only_a_one_worker_multi_thread_runtime() {
    let queued = |enter: Option<&tokio::runtime::Runtime>| {
        let committer = GroupCommit {
            queue: Arc::new(Queue::new(1)),
            thread: None,
        };
        let key = ObjectKey::new("t", "u");
        let _entered = enter.map(tokio::runtime::Runtime::enter);
        let swap = std::pin::pin!(committer.swap(key.clone(), 0, pending(&key, 0).0.new));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(swap.poll(&mut context).is_pending());
        let mut taken = Vec::new();
        committer.queue.take(&mut taken, 1);
        taken.pop().unwrap().runtime.map(|runtime| runtime.id())
    };
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    assert_eq!(queued(Some(&multi)), Some(multi.handle().id()));
    let two = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    assert_eq!(queued(Some(&two)), None);
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(queued(Some(&current)), None);
    assert_eq!(queued(None), None);
}

/// A writer that blocks its runtime's only worker waiting for its own swap (another
/// executor's `block_on` inside a task) still hears its outcome: the task meant to answer it
/// cannot run there, and the committer answers it once the grace period has passed.
#[test]
fn a_writer_that_blocks_its_runtime_still_hears() {
    /// A minimal `block_on`: polls on this thread, parks between wake-ups.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut context = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::park();
        }
    }
    let scratch = Scratch::new("blocked");
    let committer =
        Arc::new(GroupCommit::start(scratch.1.clone(), Arc::new(ReadCache::new())).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let key = ObjectKey::new("t", "blocked");
    let new = pending(&key, 0).0.new;
    let (done, heard) = std::sync::mpsc::channel();
    let writer = committer.clone();
    runtime.spawn(async move {
        let _ = done.send(block_on(writer.swap(key, 0, new)));
    });
    let outcome = heard.recv_timeout(std::time::Duration::from_secs(30));
    // Not waiting for the worker: if the writer never heard, it is blocked for good.
    runtime.shutdown_background();
    assert_eq!(
        outcome.expect("the blocked writer never heard"),
        Ok(SwapOutcome::Swapped)
    );
    assert_eq!(scratch.stored(&ObjectKey::new("t", "blocked")), Some(1));
}

/// Writers on a one-worker runtime hear their commits through the committer's task, not its
/// fallback: with a grace of an hour, every one of many concurrent writers hears.
#[test]
fn writers_of_a_one_worker_runtime_hear_through_its_task() {
    let scratch = Scratch::new("one-worker");
    let committer = Arc::new(
        GroupCommit::start_with_grace(
            scratch.1.clone(),
            Arc::new(ReadCache::new()),
            Duration::from_secs(3600),
        )
        .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let keys: Vec<ObjectKey> = (0..64)
        .map(|i| ObjectKey::new("t", &format!("u{i}")))
        .collect();
    let (done, heard) = std::sync::mpsc::channel();
    for key in keys.iter().cloned() {
        let (committer, done) = (committer.clone(), done.clone());
        runtime.spawn(async move {
            let new = pending(&key, 0).0.new;
            let _ = done.send(committer.swap(key, 0, new).await);
        });
    }
    for _ in &keys {
        let outcome = heard.recv_timeout(Duration::from_secs(30));
        assert_eq!(
            outcome.expect("a writer did not hear within 30 s"),
            Ok(SwapOutcome::Swapped)
        );
    }
    runtime.shutdown_background();
    for key in &keys {
        assert_eq!(scratch.stored(key), Some(1), "{key:?}");
    }
}

/// Past `MAX_QUEUED` writes waiting for the disk (one here), a write is refused at once as
/// unavailable (503), and is not queued: only the first is there for the committer.
#[test]
fn a_write_past_the_queues_bound_is_refused_at_once() {
    let committer = GroupCommit {
        queue: Arc::new(Queue::new(1)),
        thread: None,
    };
    let (first, second) = (ObjectKey::new("t", "first"), ObjectKey::new("t", "second"));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    let waiting = std::pin::pin!(committer.swap(first.clone(), 0, pending(&first, 0).0.new));
    assert!(waiting.poll(&mut context).is_pending());
    let refused = std::pin::pin!(committer.swap(second.clone(), 0, pending(&second, 0).0.new));
    match refused.poll(&mut context) {
        std::task::Poll::Ready(Err(error)) => {
            assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error:?}");
        }
        other => panic!("not refused at once: {other:?}"),
    }
    let mut taken = Vec::new();
    committer.queue.take(&mut taken, 8);
    let keys: Vec<_> = taken.iter().map(|pending| pending.key.clone()).collect();
    assert_eq!(keys, [first]);
}

#[path = "group_commit_failure_tests.rs"]
mod failures;
