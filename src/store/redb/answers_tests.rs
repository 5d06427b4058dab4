//! Tests of `answers`: outcomes delivered through runtimes' tasks, or by the committer.

use super::*;
use crate::store::Snapshot;
use serde_json::json;

type Heard = oneshot::Receiver<Outcome>;

/// `n` answers for writers on `runtime`, each its own outcome (a conflict with a stored
/// object of version `i + 1`), and their receivers.
fn answers(runtime: Option<&Handle>, n: u64) -> (Vec<Answer>, Vec<Heard>) {
    (0..n)
        .map(|i| {
            let (reply, heard) = oneshot::channel();
            ((runtime.cloned(), reply, expected(i)), heard)
        })
        .unzip()
}

fn expected(i: u64) -> Outcome {
    let current = Snapshot::new(i + 1, json!({"n": i}).as_object().unwrap().clone()).unwrap();
    Ok(SwapOutcome::Conflict {
        current: Some(current),
    })
}

fn not_yet(heard: &mut Heard) -> bool {
    heard.try_recv() == Err(oneshot::error::TryRecvError::Empty)
}

fn each_heard(heard: &mut [Heard], whose: &str) {
    for (i, heard) in heard.iter_mut().enumerate() {
        assert_eq!(
            heard.try_recv(),
            Ok(expected(i as u64)),
            "{whose} writer {i}"
        );
    }
}

/// A runtime that runs only when the test drives it.
fn idle_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Outcomes for `n` writers on `runtime`, handed to a committer's side that keeps them: the
/// committer's side and the writers' receivers, none of which has heard yet.
fn handed_to(runtime: &tokio::runtime::Runtime, n: u64) -> (Handed, Vec<Heard>) {
    let (sent, mut heard) = answers(Some(runtime.handle()), n);
    let mut handed = Handed::new(GRACE);
    handed.answer(sent);
    assert!(
        heard.iter_mut().all(not_yet),
        "answered from the committer's thread"
    );
    (handed, heard)
}

/// The outcomes of writers on a runtime are delivered by one task of that runtime, not by
/// the committer's thread: nothing arrives until the runtime runs, then each writer gets
/// its own, whether or not another writer has read its answer.
#[test]
fn outcomes_reach_writers_through_one_task_of_their_runtime() {
    let runtime = idle_runtime();
    let (mut handed, mut heard) = handed_to(&runtime, 4);
    assert_eq!(
        runtime.metrics().num_alive_tasks(),
        1,
        "one task, not one a writer"
    );
    runtime.block_on(tokio::task::yield_now());
    // Read last first: no writer waits on another's being read (or polled).
    for (i, heard) in heard.iter_mut().enumerate().rev() {
        assert_eq!(heard.try_recv(), Ok(expected(i as u64)), "writer {i}");
    }
    // The task is done with its slot: nothing is left for the committer to deliver.
    handed.sweep(Instant::now());
    assert_eq!(handed.next_due(), None);
}

/// Writers of two runtimes each hear through their own; a writer on none hears at once.
#[test]
fn each_runtime_delivers_its_own_writers_outcomes() {
    let (first, second) = (idle_runtime(), idle_runtime());
    let (mut sent, mut on_first) = answers(Some(first.handle()), 2);
    let (more, mut on_second) = answers(Some(second.handle()), 2);
    let (none, mut on_none) = answers(None, 2);
    sent.extend(more);
    sent.extend(none);
    let mut handed = Handed::new(GRACE);
    handed.answer(sent);
    each_heard(&mut on_none, "no runtime's");
    assert!(on_first.iter_mut().chain(&mut on_second).all(not_yet));
    second.block_on(tokio::task::yield_now());
    assert!(
        on_first.iter_mut().all(not_yet),
        "delivered by the other runtime"
    );
    each_heard(&mut on_second, "the second runtime's");
    first.block_on(tokio::task::yield_now());
    each_heard(&mut on_first, "the first runtime's");
}

/// A runtime gone before its writers' outcomes could be delivered there (shut down past its
/// drain, or dropped) loses none of them: its task is dropped, and dropping delivers.
#[test]
fn outcomes_outlive_their_runtime() {
    let runtime = idle_runtime();
    let handle = runtime.handle().clone();
    let (sent, mut heard) = answers(Some(&handle), 3);
    drop(runtime);
    let mut handed = Handed::new(GRACE);
    handed.answer(sent);
    // Heard while the committer still holds its slot: the spawn itself delivered.
    each_heard(&mut heard, "a dropped runtime's");
    drop(handed);
    // Spawned, then the runtime dropped with the task still queued; the committer keeps
    // waiting for nothing.
    let runtime = idle_runtime();
    let (mut handed, mut heard) = handed_to(&runtime, 3);
    drop(runtime);
    each_heard(&mut heard, "a runtime dropped later's");
    handed.sweep(Instant::now());
    assert_eq!(handed.next_due(), None);
}

/// A runtime that does not run the task (every worker blocked) delays its writers by the
/// grace period at most: then the committer delivers what it handed out, once; the task, if
/// it runs later, finds nothing.
#[test]
fn the_committer_delivers_what_a_runtime_did_not() {
    let runtime = idle_runtime();
    let (sent, mut heard) = answers(Some(runtime.handle()), 3);
    let mut handed = Handed::new(GRACE);
    let before = Instant::now();
    handed.answer(sent);
    let due = handed.next_due().expect("a slot handed out");
    assert!(due >= before + GRACE);
    handed.sweep(due - Duration::from_millis(1));
    assert!(
        heard.iter_mut().all(not_yet),
        "delivered before its due time"
    );
    handed.sweep(due);
    each_heard(&mut heard, "a blocked runtime's");
    assert_eq!(handed.next_due(), None);
    runtime.block_on(tokio::task::yield_now());
    assert_eq!(runtime.metrics().num_alive_tasks(), 0);
}

/// A committer that stops (its queue closed, a fatal error) delivers everything it still
/// holds for runtimes that have not run their tasks.
#[test]
fn a_committer_that_stops_delivers_what_it_holds() {
    let runtime = idle_runtime();
    let (handed, mut heard) = handed_to(&runtime, 2);
    drop(handed);
    each_heard(&mut heard, "a stopped committer's");
}
