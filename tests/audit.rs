//! The audit trail: one record per accepted change, one per refused attempt at another user's
//! object, never a token.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use security_update::audit::{AuditOutcome, AuditRecord, AuditSink};
use security_update::{
    MemoryStore, PrincipalKind, ResourceSchema, SecurityStore, StackBuilder, stack,
};

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<AuditRecord>>);

impl AuditSink for Collect {
    fn record(&self, record: &AuditRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

fn audited() -> (App, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let service = StackBuilder::new(MemoryStore::new())
        .with_schema(ResourceSchema::open_type())
        .with_audit(sink.clone())
        .into_service();
    (stack(service, tokens()), sink)
}

#[tokio::test]
async fn accepted_changes_are_recorded_with_etags_and_patch() {
    let (app, sink) = audited();
    let body = r##"{"@odata.type": "#microsoft.graph.security.security", "revision": 1}"##;
    assert_eq!(patch(&app, "/me/security", "alice", body).await.status, 200);
    assert_eq!(
        patch(&app, "/me/security", "alice", &revision(2))
            .await
            .status,
        200
    );
    // A no-op changes nothing, so it is not an audited change.
    assert_eq!(
        patch(&app, "/me/security", "alice", &revision(2))
            .await
            .status,
        200
    );
    assert_eq!(patch(&app, "/me/security", "alice", "{}").await.status, 200);
    let records = sink.0.lock().unwrap().clone();
    assert_eq!(records.len(), 2, "{records:?}");
    let first = &records[0];
    assert_eq!(first.actor_tenant_id, TENANT);
    assert_eq!(first.actor_object_id, ALICE);
    assert_eq!(first.actor_kind, PrincipalKind::Delegated);
    assert_eq!(
        (first.target_tenant_id.as_str(), first.target_user.as_str()),
        (TENANT, ALICE)
    );
    assert_eq!(
        first.outcome,
        AuditOutcome::Accepted {
            etag_before: "\"0\"".into(),
            etag_after: "\"1\"".into(),
            // The parsed patch, compactly re-serialized: never the caller's raw bytes.
            patch: r##"{"@odata.type":"#microsoft.graph.security.security","revision":1}"##.into()
        }
    );
    match &records[1].outcome {
        AuditOutcome::Accepted {
            etag_before,
            etag_after,
            ..
        } => {
            assert_eq!(
                (etag_before.as_str(), etag_after.as_str()),
                ("\"1\"", "\"2\"")
            );
        }
        other => panic!("{other:?}"),
    }
    let debug = format!("{records:?}");
    assert!(
        !debug.contains("Bearer") && !debug.contains("\"alice\""),
        "a token in the audit: {debug}"
    );
}

#[tokio::test]
async fn refused_attempts_at_another_users_object_are_recorded() {
    let (app, sink) = audited();
    let bob = format!("/users/{}/security", BOB.to_uppercase());
    assert_eq!(patch(&app, &bob, "alice", "{}").await.status, 403);
    assert_eq!(get(&app, &bob, "alice").await.status, 403);
    let records = sink.0.lock().unwrap().clone();
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(record.actor_object_id, ALICE);
        assert_eq!(record.target_user, BOB);
        assert!(
            matches!(record.outcome, AuditOutcome::Denied { status: 403, .. }),
            "{record:?}"
        );
    }
}

#[tokio::test]
async fn rejected_bodies_and_reads_are_not_changes() {
    let (app, sink) = audited();
    assert_eq!(
        patch(&app, "/me/security", "alice", r#"{"id":"not-the-id"}"#)
            .await
            .status,
        400
    );
    assert_eq!(get(&app, "/me/security", "alice").await.status, 200);
    assert!(sink.0.lock().unwrap().is_empty());
}

/// A store whose saves wait until the test lets them through, so a request can be cancelled
/// while its save is under way.
#[derive(Debug)]
struct SlowSaves {
    inner: MemoryStore,
    started: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl SecurityStore for SlowSaves {
    async fn load(
        &self,
        key: &security_update::ObjectKey,
    ) -> Result<Option<security_update::Snapshot>, security_update::StoreError> {
        self.inner.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &security_update::ObjectKey,
        expected: u64,
        new: security_update::Snapshot,
    ) -> Result<security_update::SwapOutcome, security_update::StoreError> {
        self.started.notify_one();
        self.release.notified().await;
        self.inner.compare_and_swap(key, expected, new).await
    }
}

/// The stack over a store whose saves wait for `release`, auditing into a sink.
fn slow_saves() -> (
    security_update::Stack<Arc<SlowSaves>, security_update::StaticTokens>,
    Arc<SlowSaves>,
    MemoryStore,
    Arc<Collect>,
) {
    let sink = Arc::new(Collect::default());
    let memory = MemoryStore::new();
    let store = Arc::new(SlowSaves {
        inner: memory.clone(),
        started: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let service = StackBuilder::new(store.clone())
        .with_schema(ResourceSchema::open_type())
        .with_audit(sink.clone())
        .into_service();
    (stack(service, tokens()), store, memory, sink)
}

/// Once the request is gone and its save waiting: nothing audited yet; released, the save
/// lands and is audited as accepted.
async fn released_save_lands_audited(store: &SlowSaves, memory: &MemoryStore, sink: &Collect) {
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "audited before the save landed"
    );
    store.release.notify_one();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sink.0.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the save was never audited"
        );
        tokio::task::yield_now().await;
    }
    let saved = memory
        .load(&security_update::ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap();
    assert_eq!(saved.map(|s| s.version()), Some(1), "the save landed");
    assert!(matches!(
        sink.0.lock().unwrap()[0].outcome,
        AuditOutcome::Accepted { .. }
    ));
}

/// A client that gives up (or a timeout) while the save is under way must not leave a saved
/// change without its audit record: the write finishes on its own task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_outlives_its_request_is_still_audited() {
    let (app, store, memory, sink) = slow_saves();
    let request =
        tokio::spawn(async move { patch(&app, "/me/security", "alice", &revision(1)).await });
    tokio::time::timeout(std::time::Duration::from_secs(30), store.started.notified())
        .await
        .expect("the save started");
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    released_save_lands_audited(&store, &memory, &sink).await;
}

/// The same when the request's future, polled once, is dropped on a thread outside the
/// runtime (a caller that hands futures between threads): the save goes on, on the runtime
/// the request was made in, and is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_future_is_dropped_off_the_runtime_is_still_audited() {
    let (app, store, memory, sink) = slow_saves();
    let request = request(http::Method::PATCH, "/me/security", Some("alice"))
        .body(http_body_util::Full::from(revision(1)))
        .unwrap();
    let mut response = Box::pin(tower::ServiceExt::oneshot(app, request));
    // One poll takes the request through the layers to the save, which waits.
    std::future::poll_fn(|cx| {
        assert!(response.as_mut().poll(cx).is_pending(), "the save waits");
        std::task::Poll::Ready(())
    })
    .await;
    tokio::time::timeout(std::time::Duration::from_secs(30), store.started.notified())
        .await
        .expect("the save started");
    std::thread::spawn(move || drop(response)).join().unwrap();
    released_save_lands_audited(&store, &memory, &sink).await;
}

/// Writers on several threads patching one saved object (racing compare-and-swaps, retried
/// from the winner's object): every accepted write has one record, and their `ETag`s chain
/// without a gap or a repeat, ending at the stored version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_object_are_each_audited_once_in_version_order() {
    const WRITERS: u64 = 48;
    let (app, sink) = audited();
    assert_eq!(
        patch(&app, "/me/security", "alice", &revision(0))
            .await
            .status,
        200
    );
    let tasks: Vec<_> = (1..=WRITERS)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                let reply = patch(&app, "/me/security", "alice", &revision(n)).await;
                (reply.status, reply.header("etag").to_owned())
            })
        })
        .collect();
    let mut answered = Vec::new();
    for task in tasks {
        let (status, etag) = task.await.unwrap();
        assert_eq!(status, 200);
        answered.push(etag);
    }
    let records = sink.0.lock().unwrap().clone();
    assert_eq!(
        records.len() as u64,
        WRITERS + 1,
        "one record per accepted write"
    );
    let mut steps: Vec<(u64, u64)> = records
        .iter()
        .map(|record| match &record.outcome {
            AuditOutcome::Accepted {
                etag_before,
                etag_after,
                ..
            } => (
                etag_before.trim_matches('"').parse().unwrap(),
                etag_after.trim_matches('"').parse().unwrap(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    steps.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..=WRITERS).map(|v| (v, v + 1)).collect();
    assert_eq!(steps, expected);
    answered.sort();
    answered.dedup();
    assert_eq!(
        answered.len() as u64,
        WRITERS,
        "two writers answered with one ETag"
    );
    let last = get(&app, "/me/security", "alice").await;
    assert_eq!(last.header("etag"), format!("\"{}\"", WRITERS + 1));
}

/// Each request of a `$batch` is audited as a request of its own would be: an accepted
/// change once (in the order its `dependsOn` gives), a refused attempt at another user's
/// object once; a refused body, a no-op and a read not at all.
#[tokio::test]
async fn a_batchs_requests_are_audited_each_as_a_request_of_its_own() {
    let sink = Arc::new(Collect::default());
    let app = StackBuilder::new(MemoryStore::new())
        .with_schema(ResourceSchema::open_type())
        .with_audit(sink.clone())
        .build(tokens());
    let json = serde_json::json!({"Content-Type": "application/json"});
    let patch_of = |id: &str, depends: &[&str], url: &str, body: serde_json::Value| {
        serde_json::json!({"id": id, "method": "PATCH", "url": url, "dependsOn": depends,
            "headers": json, "body": body})
    };
    let bob = format!("/users/{BOB}/security");
    let body = serde_json::json!({"requests": [
        patch_of("first", &[], "/me/security", serde_json::json!({"revision": 1})),
        patch_of("second", &["first"], "/me/security", serde_json::json!({"revision": 2})),
        patch_of("no-op", &["second"], "/me/security", serde_json::json!({"revision": 2})),
        patch_of("refused", &[], "/me/security", serde_json::json!({"id": "not-the-id"})),
        patch_of("bobs", &[], &bob, serde_json::json!({"revision": 1})),
        {"id": "read", "method": "GET", "url": "/me/security"}
    ]});
    let request = request(http::Method::POST, "/$batch", Some("alice"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::from(body.to_string()))
        .unwrap();
    let reply = send(app, request).await;
    assert_eq!(reply.status, 200);
    let statuses: Vec<_> = reply.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    for (id, status) in [
        ("first", 200),
        ("second", 200),
        ("no-op", 200),
        ("refused", 400),
        ("bobs", 403),
        ("read", 200),
    ] {
        assert!(
            statuses.contains(&(id.to_owned(), status)),
            "{id}: {statuses:?}"
        );
    }
    let records = sink.0.lock().unwrap().clone();
    let accepted: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.outcome {
            AuditOutcome::Accepted {
                etag_before,
                etag_after,
                ..
            } => Some((etag_before.as_str(), etag_after.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, [("\"0\"", "\"1\""), ("\"1\"", "\"2\"")]);
    let denied: Vec<_> = records
        .iter()
        .filter(|record| matches!(record.outcome, AuditOutcome::Denied { status: 403, .. }))
        .collect();
    assert_eq!(denied.len(), 1, "{records:?}");
    assert_eq!(denied[0].target_user, BOB);
    assert_eq!(records.len(), 3, "{records:?}");
}
