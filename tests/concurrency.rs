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
    let json = reply.object();
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

/// Big merges run on the blocking pool: with a single async worker thread busy with nothing
/// else, a small GET is answered while two large `PATCH` requests are still being merged, validated
/// and serialized. (Before, they ran inside `call` on the worker and the GET waited.)
#[tokio::test(flavor = "current_thread")]
async fn a_small_get_is_answered_while_big_merges_run() {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let store = MemoryStore::new();
    let app = StackBuilder::new(store.clone())
        .with_schema(open)
        .with_body_limit(8 * 1024 * 1024)
        .with_max_object_bytes(64 * 1024 * 1024)
        .build(tokens());
    // A large object for Alice and for Bob: 60,000 members of ~40 bytes.
    let members = |tag: &str| {
        let map: serde_json::Map<String, serde_json::Value> = (0..60_000)
            .map(|i| (format!("member-{i:06}"), json!(format!("{tag}-{i:030}"))))
            .collect();
        serde_json::Value::Object(map).to_string()
    };
    for token in ["alice", "bob"] {
        let reply = patch(&app, "/me/security", token, &members("first")).await;
        assert_eq!(reply.status, 200);
    }
    // Two big rewrites, started first; then a GET of a third, small object.
    let writers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|token| {
            let (app, body) = (app.clone(), members("second"));
            tokio::spawn(async move { patch(&app, "/me/security", token, &body).await.status })
        })
        .collect();
    tokio::task::yield_now().await;
    let read = get(&app, "/users/me-does-not-matter/security", "admin").await;
    assert!(read.status.is_client_error() || read.status.is_success());
    let still_running = writers.iter().filter(|w| !w.is_finished()).count();
    for writer in writers {
        assert_eq!(writer.await.unwrap(), 200);
    }
    assert!(
        still_running > 0,
        "the GET waited for both big merges to finish"
    );
}
