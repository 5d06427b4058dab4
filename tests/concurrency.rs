//! Concurrent writers never lose an update.

mod common;

use common::*;
use security_update::audit::{AuditOutcome, AuditRecord, AuditSink};
use security_update::store::AtOnce;
use security_update::{
    MemoryStore, ObjectKey, ResourceSchema, SecurityStore, Snapshot, StackBuilder, StoreError,
    SwapOutcome, stack,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
/// the service's retry path runs deterministically. With `at_once`, it offers its operations
/// at once too (as the memory store does): the service's first attempt then runs within
/// `call`, loses there, and the write goes on asynchronously.
struct RacingStore {
    inner: MemoryStore,
    raced: AtomicBool,
    at_once: bool,
    /// Calls: loads and compare-and-swaps, at once and awaited.
    calls: Arc<Calls>,
}

#[derive(Debug, Default)]
struct Calls {
    loads_at_once: AtomicUsize,
    loads: AtomicUsize,
    swaps_at_once: AtomicUsize,
    swaps: AtomicUsize,
}

impl Calls {
    /// (loads at once, loads awaited, swaps at once, swaps awaited).
    fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.loads_at_once.load(Ordering::SeqCst),
            self.loads.load(Ordering::SeqCst),
            self.swaps_at_once.load(Ordering::SeqCst),
            self.swaps.load(Ordering::SeqCst),
        )
    }
}

impl RacingStore {
    /// The rival's write, the first time only.
    fn race(&self, key: &ObjectKey, expected: u64, new: &Snapshot) {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let mut rival = new.document().clone();
            rival.retain(|k, _| k == "@odata.type" || k == "id");
            rival.insert("rival".into(), json!(true));
            let rival = Snapshot::new(expected + 1, rival).unwrap();
            let outcome = self.inner.compare_and_swap_at_once(key, expected, rival);
            assert_eq!(outcome, Ok(SwapOutcome::Swapped));
        }
    }
}

impl SecurityStore for RacingStore {
    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        self.calls.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        self.calls.swaps.fetch_add(1, Ordering::SeqCst);
        self.race(key, expected, &new);
        self.inner.compare_and_swap(key, expected, new).await
    }

    fn at_once(&self) -> Option<&dyn AtOnce> {
        self.at_once.then_some(self as &dyn AtOnce)
    }
}

impl AtOnce for RacingStore {
    fn load_at_once(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        self.calls.loads_at_once.fetch_add(1, Ordering::SeqCst);
        self.inner.load_at_once(key)
    }

    fn compare_and_swap_at_once(
        &self,
        key: &ObjectKey,
        expected: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        self.calls.swaps_at_once.fetch_add(1, Ordering::SeqCst);
        self.race(key, expected, &new);
        self.inner.compare_and_swap_at_once(key, expected, new)
    }

    fn count_tenant_at_once(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.count_tenant_at_once(tenant_id)
    }
}

/// Collects audit records.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<AuditRecord>>);

impl AuditSink for Collect {
    fn record(&self, record: &AuditRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

/// The stack over a [`RacingStore`], the memory store underneath, and the audit trail.
fn racing_app(
    at_once: bool,
    max_attempts: u32,
) -> (
    security_update::Stack<RacingStore, security_update::StaticTokens>,
    MemoryStore,
    Arc<Collect>,
    Arc<Calls>,
) {
    let open = ResourceSchema::from_json_schema(&json!({"type": "object"})).unwrap();
    let store = MemoryStore::new();
    let racing = RacingStore {
        inner: store.clone(),
        raced: AtomicBool::default(),
        at_once,
        calls: Arc::default(),
    };
    let calls = racing.calls.clone();
    let audit = Arc::new(Collect::default());
    let app = stack(
        StackBuilder::new(racing)
            .with_schema(open)
            .with_audit(audit.clone())
            .with_max_attempts(max_attempts)
            .into_service(),
        tokens(),
    );
    (app, store, audit, calls)
}

/// Whether the store answers at once (the attempt made within `call` loses, the write goes on
/// asynchronously) or not (every attempt is awaited), the write lands once, on the rival's object,
/// and is audited once, from the rival's version.
#[tokio::test]
async fn a_lost_race_is_retried_on_the_winners_object() {
    for at_once in [false, true] {
        let (app, store, audit, calls) = racing_app(at_once, 64);
        let reply = patch(
            &app,
            "/me/security",
            "alice",
            r#"{"mine":{"a":1,"b":null}}"#,
        )
        .await;
        assert_eq!(reply.status, 200, "at once: {at_once}");
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
        let records = audit.0.lock().unwrap();
        let [record] = records.as_slice() else {
            panic!("at once: {at_once}: {records:?}");
        };
        let AuditOutcome::Accepted {
            etag_before,
            etag_after,
            patch,
        } = &record.outcome
        else {
            panic!("{record:?}");
        };
        assert_eq!(
            (etag_before.as_str(), etag_after.as_str()),
            ("\"1\"", "\"2\"")
        );
        assert_eq!(patch, r#"{"mine":{"a":1,"b":null}}"#);
        // At once: the first attempt within `call`, the retry awaited; else both awaited.
        let expected = if at_once { (1, 1, 1, 1) } else { (0, 2, 0, 2) };
        assert_eq!(calls.counts(), expected, "at once: {at_once}");
    }
}

/// Only the rival's write is stored, and nothing of ours was audited.
async fn only_the_rival_landed(store: &MemoryStore, audit: &Collect) {
    let stored = store
        .load(&ObjectKey::new(TENANT, ALICE))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.document().get("mine").is_none());
    assert_eq!(stored.version(), 1, "only the rival's write landed");
    assert!(audit.0.lock().unwrap().is_empty(), "nothing of ours landed");
}

/// A lost race means the request's precondition is checked again on the winner's object: with
/// `If-Match: "0"` it no longer holds (412, not a blind retry); `If-None-Match: "1"` held for
/// the object at `"0"` when the request first tried, not for the rival's `"1"`: 412 too. Nothing
/// of ours lands either way.
#[tokio::test]
async fn a_lost_race_under_a_precondition_is_412() {
    for (header, etag) in [("if-match", "\"0\""), ("if-none-match", "\"1\"")] {
        for at_once in [false, true] {
            let (app, store, audit, _) = racing_app(at_once, 64);
            let request = request(http::Method::PATCH, "/me/security", Some("alice"))
                .header(header, etag)
                .body(http_body_util::Full::from(r#"{"mine":1}"#))
                .unwrap();
            let reply = send(app, request).await;
            assert_eq!(reply.status, 412, "{header}, at once: {at_once}");
            only_the_rival_landed(&store, &audit).await;
        }
    }
}

/// A patch that the rival's write made a no-op while they raced (the rival set what it sets)
/// is answered with the rival's object and `ETag`, and writes and audits nothing: the change
/// is there, and it is the rival's.
#[tokio::test]
async fn a_patch_that_a_lost_race_made_a_no_op_writes_nothing() {
    for at_once in [false, true] {
        let (app, store, audit, _) = racing_app(at_once, 64);
        let reply = patch(&app, "/me/security", "alice", r#"{"rival":true}"#).await;
        assert_eq!(reply.status, 200, "at once: {at_once}");
        assert_eq!(reply.header("etag"), "\"1\"", "at once: {at_once}");
        assert_eq!(reply.object()["rival"], true);
        only_the_rival_landed(&store, &audit).await;
    }
}

/// A merge big enough for the blocking pool goes on asynchronously from the object the attempt
/// made at once loaded: loaded once, then again only after the lost race.
#[tokio::test]
async fn a_big_merge_goes_on_from_the_object_loaded_at_once() {
    for at_once in [false, true] {
        let (app, store, audit, calls) = racing_app(at_once, 64);
        let big = format!(r#"{{"mine":"{}"}}"#, "x".repeat(70 * 1024));
        let reply = patch(&app, "/me/security", "alice", &big).await;
        assert_eq!(reply.status, 200, "at once: {at_once}");
        assert_eq!(reply.object()["rival"], true);
        let expected = if at_once { (1, 1, 0, 2) } else { (0, 2, 0, 2) };
        assert_eq!(calls.counts(), expected, "at once: {at_once}");
        let stored = store
            .load(&ObjectKey::new(TENANT, ALICE))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version(), 2);
        assert_eq!(audit.0.lock().unwrap().len(), 1);
    }
}

/// A lost race counts as an attempt on either path: with one attempt allowed, the loser is
/// 503 with `Retry-After`, and nothing of its patch landed.
#[tokio::test]
async fn a_lost_race_spends_an_attempt_on_either_path() {
    for at_once in [false, true] {
        let (app, store, audit, _) = racing_app(at_once, 1);
        let reply = patch(&app, "/me/security", "alice", r#"{"mine":1}"#).await;
        assert_eq!(reply.status, 503, "at once: {at_once}");
        assert_eq!(reply.header("retry-after"), "1");
        only_the_rival_landed(&store, &audit).await;
    }
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
