//! Tests of `group_commit` when a commit fails or panics: what each writer hears, what the
//! file and the read cache hold, and that the committer stops.

use super::*;

/// A committer over a fresh store writes one object, then a swap of `tenant` (whose commits
/// fail by a fault the tests inject) fails; the committer stops (what `RedbStore::writable`,
/// and so the server's `/readyz`, reports), a later write fails at once, and only the first
/// object is stored. The failure, the read cache and the failed key, for each test's checks.
async fn a_failing_commit(tenant: &str) -> (StoreError, Arc<ReadCache>, ObjectKey) {
    let scratch = Scratch::new(tenant);
    let cache = Arc::new(ReadCache::new());
    let committer = GroupCommit::start(scratch.1.clone(), cache.clone()).unwrap();
    assert_eq!(committer.running(), Ok(()));
    let first = |key: &ObjectKey| pending(key, 0).0.new;
    let fine = ObjectKey::new("t", "fine");
    assert_eq!(
        committer.swap(fine.clone(), 0, first(&fine)).await,
        Ok(SwapOutcome::Swapped)
    );
    let doomed = ObjectKey::new(tenant, "u");
    let failed = committer
        .swap(doomed.clone(), 0, first(&doomed))
        .await
        .unwrap_err();
    // The thread ends right after answering the batch.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while committer.running().is_ok() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(committer.running(), Err(stopped()));
    let later = ObjectKey::new("t", "later");
    assert_eq!(
        committer.swap(later.clone(), 0, first(&later)).await,
        Err(stopped())
    );
    drop(committer);
    assert_eq!(scratch.stored(&fine), Some(1));
    assert_eq!(scratch.stored(&doomed), None);
    assert_eq!(scratch.stored(&later), None);
    (failed, cache, doomed)
}

/// A commit that panics stops the committer and every later write.
#[tokio::test]
async fn a_panicking_commit_stops_the_committer_and_every_later_write() {
    let (failed, _, _) = a_failing_commit(PANICS_IN_COMMIT).await;
    assert!(failed.message().contains("panicked"), "{failed:?}");
}

/// A batch whose commit panicked is settled by what the file holds: a panic before the
/// commit fails every swap of it (none landed); one after the commit answers each swap with
/// the outcome it had in the transaction: `Swapped` to each that wrote, so its writer audits
/// it (two successive writes to one key included), and the conflict to one that lost its
/// race. The cache holds what the file holds.
#[test]
fn a_panicked_batch_is_answered_by_what_landed() {
    for (tenant, landed) in [(PANICS_IN_COMMIT, false), (PANICS_AFTER_COMMIT, true)] {
        // A directory of this test's own: `a_failing_commit` may run beside it with `tenant`.
        let scratch = Scratch::new(&format!("settled-{tenant}"));
        let cache = ReadCache::new();
        let (a, b, c) = (
            ObjectKey::new("t", "a"),
            ObjectKey::new(tenant, "b"),
            ObjectKey::new("t", "c"),
        );
        let (swap_a, mut answer_a) = pending(&a, 0);
        let (swap_b, mut answer_b) = pending(&b, 0);
        // From the same version as the one before it: loses its race inside the batch.
        let (late_b, mut answer_late_b) = pending(&b, 0);
        // Two writes to one key, the second over the first.
        let (first_c, mut answer_first_c) = pending(&c, 0);
        let (second_c, mut answer_second_c) = pending(&c, 1);
        run(
            &scratch.1,
            &cache,
            &queued(vec![swap_a, swap_b, late_b, first_c, second_c]),
            GRACE,
        );
        for (key, version) in [(&a, 1), (&b, 1), (&c, 2)] {
            let expected = landed.then_some(version);
            assert_eq!(scratch.stored(key), expected, "{tenant}: {key:?}");
            let cached = cache.get(key).ok().map(|snapshot| snapshot.version());
            assert_eq!(cached, expected, "{tenant}: {key:?} cached");
        }
        for answer in [
            &mut answer_a,
            &mut answer_b,
            &mut answer_first_c,
            &mut answer_second_c,
        ] {
            let answer = answer.try_recv().unwrap();
            if landed {
                assert_eq!(answer, Ok(SwapOutcome::Swapped), "{tenant}");
            } else {
                assert!(answer.is_err(), "{tenant}: {answer:?}");
            }
        }
        let late_b = answer_late_b.try_recv().unwrap();
        if landed {
            let Ok(SwapOutcome::Conflict {
                current: Some(current),
            }) = late_b
            else {
                panic!("not a conflict: {late_b:?}");
            };
            assert_eq!(current.version(), 1);
        } else {
            assert!(late_b.is_err(), "{tenant}: {late_b:?}");
        }
    }
}

/// A client that retries a change it already made sends a swap from the same version with
/// the same result: in a batch whose commit panicked once on disk, that swap is answered with
/// its conflict, not taken for the write the file holds (which an earlier batch made), so
/// nobody audits that write twice.
#[test]
fn a_retry_that_lost_is_not_taken_for_a_landed_write() {
    let scratch = Scratch::new("retry-after-panic");
    let cache = ReadCache::new();
    let (retried, other) = (
        ObjectKey::new("t", "retried"),
        ObjectKey::new(PANICS_AFTER_COMMIT, "other"),
    );
    let (first, mut first_answer) = pending(&retried, 0);
    commit_as_one_batch(&scratch.1, vec![first]);
    assert_eq!(first_answer.try_recv().unwrap(), Ok(SwapOutcome::Swapped));
    let (retry, mut retry_answer) = pending(&retried, 0);
    let (swap, mut answer) = pending(&other, 0);
    run(&scratch.1, &cache, &queued(vec![retry, swap]), GRACE);
    assert_eq!(answer.try_recv().unwrap(), Ok(SwapOutcome::Swapped));
    match retry_answer.try_recv().unwrap() {
        Ok(SwapOutcome::Conflict {
            current: Some(current),
        }) => assert_eq!(current.version(), 1),
        other => panic!("not a conflict: {other:?}"),
    }
    assert_eq!(scratch.stored(&retried), Some(1));
    assert_eq!(scratch.stored(&other), Some(1));
}

/// A commit that fails with an I/O error answers its writes with the error, leaves nothing
/// of them in the read cache (whether they reached the disk is not known), and stops the
/// committer: later writes fail at once and the store says it cannot write.
#[tokio::test]
async fn an_io_error_in_a_commit_stops_the_committer() {
    let (failed, cache, doomed) = a_failing_commit(IO_ERROR_IN_COMMIT).await;
    assert_eq!(failed.kind(), StoreErrorKind::Unavailable, "{failed:?}");
    assert!(cache.get(&doomed).is_err());
}

/// A commit that fails in any other way stops the committer as well: redb refuses every
/// later write after a failed commit (it discards its allocator state), so a committer that
/// went on would fail every write while the store said it could write.
#[tokio::test]
async fn a_commit_that_finds_the_file_corrupt_stops_the_committer() {
    let (failed, cache, doomed) = a_failing_commit(CORRUPT_IN_COMMIT).await;
    assert_eq!(failed.kind(), StoreErrorKind::Corrupt, "{failed:?}");
    assert!(
        failed.message().contains("a fault the tests inject"),
        "{failed:?}"
    );
    assert!(cache.get(&doomed).is_err());
}
