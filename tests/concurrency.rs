//! Concurrent writers never lose an update.

mod common;

use common::*;
use security_update::{MemoryStore, ObjectKey, ResourceSchema, SecurityStore, StackBuilder, stack};
use serde_json::json;

const WRITERS: usize = 64;

fn open_app() -> (App, MemoryStore) {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let store = MemoryStore::new();
    (
        stack(
            StackBuilder::new(store.clone())
                .with_schema(open)
                .into_service(),
            tokens(),
        ),
        store,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_to_one_object_all_land() {
    let (app, store) = open_app();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({ format!("p{i}"): {"writer": i, "drop": null} }).to_string();
                patch(&app, "/me/security", "alice", &body).await.status
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.version(),
        WRITERS as u64,
        "one version per acknowledged write"
    );
    for i in 0..WRITERS {
        assert_eq!(
            stored.document()[&format!("p{i}")],
            json!({"writer": i}),
            "p{i} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_to_many_objects_land_separately() {
    let (app, store) = open_app();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let user = format!("00000000-0000-4000-8000-{i:012}");
                let body = json!({ "n": i }).to_string();
                patch(&app, &format!("/users/{user}/security"), "app", &body)
                    .await
                    .status
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(store.len(), WRITERS);
    for (key, snapshot) in store.entries() {
        let n: usize = key.user_id()[24..].parse().unwrap();
        assert_eq!(snapshot.document()["n"], json!(n));
        assert_eq!(snapshot.version(), 1);
    }
}

/// A store whose first compare-and-swap loses to a rival write that lands just before it, so
/// the service's retry path runs deterministically.
struct RacingStore {
    inner: MemoryStore,
    raced: std::sync::atomic::AtomicBool,
}

impl SecurityStore for RacingStore {
    async fn load(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<security_update::Snapshot>, security_update::StoreError> {
        self.inner.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected: u64,
        new: security_update::Snapshot,
    ) -> Result<security_update::SwapOutcome, security_update::StoreError> {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut rival = new.document().clone();
            rival.retain(|k, _| k == "@odata.type" || k == "id");
            rival.insert("rival".into(), json!(true));
            let rival = security_update::Snapshot::new(expected + 1, rival).unwrap();
            let outcome = self.inner.compare_and_swap(key, expected, rival).await?;
            assert_eq!(outcome, security_update::SwapOutcome::Swapped);
        }
        self.inner.compare_and_swap(key, expected, new).await
    }
}

/// The stack over a [`RacingStore`], and the memory store underneath.
fn racing_app() -> (
    security_update::Stack<RacingStore, security_update::StaticTokens>,
    MemoryStore,
) {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let store = MemoryStore::new();
    let racing = RacingStore {
        inner: store.clone(),
        raced: Default::default(),
    };
    let app = stack(
        StackBuilder::new(racing).with_schema(open).into_service(),
        tokens(),
    );
    (app, store)
}

#[tokio::test]
async fn a_lost_race_is_retried_on_the_winners_object() {
    let (app, store) = racing_app();
    let reply = patch(
        &app,
        "/me/security",
        "alice",
        r#"{"mine":{"a":1,"b":null}}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("etag"), "\"2\"");
    let json = reply.json();
    assert_eq!(json["rival"], true, "the rival's write was lost: {json}");
    assert_eq!(json["mine"], json!({"a": 1}), "{json}");
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.document(), json.as_object().unwrap());
}

/// With `If-Match`, a lost race means the precondition no longer holds: 412, not a blind retry.
#[tokio::test]
async fn a_lost_race_under_if_match_is_412() {
    let (app, store) = racing_app();
    let request = request(http::Method::PATCH, "/me/security", Some("alice"))
        .header("if-match", "\"0\"")
        .body(http_body_util::Full::from(r#"{"mine":1}"#))
        .unwrap();
    let reply = send(app, request).await;
    assert_eq!(reply.status, 412);
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.document().get("mine").is_none());
    assert_eq!(stored.version(), 1, "only the rival's write landed");
}

/// Several writers per thread, each sending one PATCH after another to one object: a loser
/// must not keep its thread (starving its siblings) while the other thread wins every race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_sharing_threads_do_not_starve() {
    let (app, store) = open_app();
    const TASKS: usize = 16;
    const EACH: usize = 100;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let app = app.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let body = json!({ format!("t{t}n{n}"): true }).to_string();
                    let reply = patch(&app, "/me/security", "alice", &body).await;
                    assert_eq!(
                        reply.status,
                        200,
                        "{}",
                        String::from_utf8_lossy(&reply.body)
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version(), (TASKS * EACH) as u64);
}
