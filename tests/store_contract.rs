//! One contract, every store: memory, embedded (redb) and `PostgreSQL` behave the same.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pg::{Proxy, TestDb};
use common::process::TempDir;
use security_update::store::{PostgresOptions, StoreErrorKind};
use security_update::{
    MemoryStore, ObjectKey, PostgresStore, RedbStore, SecurityStore, Snapshot, SwapOutcome,
};
use serde_json::{Map, Value, json};

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn snapshot(version: u64, value: Value) -> Snapshot {
    Snapshot::new(version, doc(value)).unwrap()
}

/// The whole contract, against one store.
async fn contract<S: SecurityStore>(store: Arc<S>, name: &str) {
    let key = ObjectKey::new("Tenant-A", "User-1");
    assert_eq!(
        store.load(&key).await.unwrap(),
        None,
        "{name}: absent at first"
    );

    // First save only from "absent".
    // Members in an order no store may change, at any depth (`jsonb` would sort each
    // object's keys shortest first): a read must answer the very bytes of the write that
    // made its version, since both carry the same strong ETag.
    let first = snapshot(
        1,
        json!({"@odata.type": "#t", "id": "x", "n": 1,
               "zeta": {"longest": 1, "b": [{"yy": 1, "x": 2}]}, "aa": true}),
    );
    let outcome = store
        .compare_and_swap(&key, 5, first.clone())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        SwapOutcome::Conflict { current: None },
        "{name}: swap from a version that never was"
    );
    assert_eq!(
        store
            .compare_and_swap(&key, 0, first.clone())
            .await
            .unwrap(),
        SwapOutcome::Swapped,
        "{name}"
    );
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        (loaded.version(), loaded.document()),
        (1, first.document()),
        "{name}"
    );
    assert_eq!(
        loaded.json(),
        first.json(),
        "{name}: same bytes back, @odata.type and id first"
    );

    // A writer that also started from "absent" loses and learns what is current.
    let late = snapshot(1, json!({"@odata.type": "#t", "id": "x", "late": true}));
    match store.compare_and_swap(&key, 0, late).await.unwrap() {
        SwapOutcome::Conflict {
            current: Some(current),
        } => assert_eq!(current.version(), 1, "{name}"),
        other => panic!("{name}: {other:?}"),
    }

    // Versioned updates.
    let second = snapshot(2, json!({"@odata.type": "#t", "id": "x", "n": 2}));
    assert_eq!(
        store
            .compare_and_swap(&key, 1, second.clone())
            .await
            .unwrap(),
        SwapOutcome::Swapped,
        "{name}"
    );
    let stale = snapshot(2, json!({"@odata.type": "#t", "id": "x", "n": 99}));
    match store.compare_and_swap(&key, 1, stale).await.unwrap() {
        SwapOutcome::Conflict {
            current: Some(current),
        } => {
            assert_eq!(current.version(), 2, "{name}");
            assert_eq!(
                current.document()["n"],
                2,
                "{name}: a stale swap changed the object"
            );
        }
        other => panic!("{name}: {other:?}"),
    }

    // A version far larger than the one before and one that shrinks back: each reads back
    // whole, and a neighbour stored beside them is untouched.
    let (neighbour, growing) = (ObjectKey::new("grow", "a"), ObjectKey::new("grow", "b"));
    let beside = snapshot(1, json!({"@odata.type": "#t", "id": "a", "n": 0}));
    let versions = [
        snapshot(1, json!({"@odata.type": "#t", "id": "b", "n": 1})),
        snapshot(
            2,
            json!({"@odata.type": "#t", "id": "b", "pad": "p".repeat(100_000)}),
        ),
        snapshot(3, json!({"@odata.type": "#t", "id": "b", "n": 3})),
    ];
    assert_eq!(
        store.compare_and_swap(&neighbour, 0, beside).await.unwrap(),
        SwapOutcome::Swapped,
        "{name}"
    );
    for next in versions {
        let expected = next.version() - 1;
        assert_eq!(
            store
                .compare_and_swap(&growing, expected, next.clone())
                .await
                .unwrap(),
            SwapOutcome::Swapped,
            "{name}"
        );
        let loaded = store.load(&growing).await.unwrap().unwrap();
        assert_eq!(
            (loaded.version(), loaded.json()),
            (next.version(), next.json()),
            "{name}: version {expected} + 1 read back whole"
        );
        let other = store.load(&neighbour).await.unwrap().unwrap();
        assert_eq!(
            (other.version(), &other.document()["n"]),
            (1, &json!(0)),
            "{name}"
        );
    }

    // Keys: case-normalized, and tenants apart.
    let same = ObjectKey::new("tenant-a", "USER-1");
    assert_eq!(
        store.load(&same).await.unwrap().unwrap().version(),
        2,
        "{name}: keys ignore ASCII case"
    );
    let other_tenant = ObjectKey::new("tenant-b", "user-1");
    assert_eq!(
        store.load(&other_tenant).await.unwrap(),
        None,
        "{name}: tenants are apart"
    );

    // Documents round-trip whatever JSON they hold.
    let rich = json!({
        "@odata.type": "#t", "id": "y",
        "nested": {"deep": {"deeper": [1, 2.5, -3, true, null, "é✓\u{1F600}"]}},
        "null": null, "big": 9007199254740993u64, "neg": -9007199254740993i64, "float": 1.0e-7,
        "quote\"key": "line\nbreak", "empty": {}, "list": []
    });
    let rich_key = ObjectKey::new("tenant-a", "user-2");
    store
        .compare_and_swap(&rich_key, 0, snapshot(1, rich.clone()))
        .await
        .unwrap();
    let back = store.load(&rich_key).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(back.document().clone()),
        rich,
        "{name}: document changed in the store"
    );

    // Racing writers from the same version: exactly one wins.
    let race_key = ObjectKey::new("tenant-a", "user-3");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let key = race_key.clone();
            tokio::spawn(async move {
                let mine = snapshot(1, json!({"@odata.type": "#t", "id": "z", "winner": i}));
                store.compare_and_swap(&key, 0, mine).await.unwrap() == SwapOutcome::Swapped
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "{name}: {winners} writers won the same version");

    // Load-modify-swap loops from many tasks never lose an increment.
    let counter = ObjectKey::new("tenant-a", "counter");
    let (tasks_n, rounds) = (4, 10);
    let tasks: Vec<_> = (0..tasks_n)
        .map(|_| {
            let store = store.clone();
            let key = counter.clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    loop {
                        let current = store.load(&key).await.unwrap();
                        let (version, n) = current.as_ref().map_or((0, 0), |s| {
                            (s.version(), s.document()["n"].as_u64().unwrap())
                        });
                        let next = snapshot(
                            version + 1,
                            json!({"@odata.type": "#t", "id": "c", "n": n + 1}),
                        );
                        if store.compare_and_swap(&key, version, next).await.unwrap()
                            == SwapOutcome::Swapped
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = store.load(&counter).await.unwrap().unwrap();
    assert_eq!(
        total.document()["n"],
        tasks_n * rounds,
        "{name}: lost increments"
    );
    assert_eq!(total.version(), (tasks_n * rounds) as u64, "{name}");

    // Objects per tenant: first saves count, updates and lost races do not.
    assert_eq!(
        store.count_tenant("quota").await.unwrap(),
        Some(0),
        "{name}"
    );
    for user in ["a", "b"] {
        let key = ObjectKey::new("quota", user);
        store
            .compare_and_swap(&key, 0, snapshot(1, json!({"n": 1})))
            .await
            .unwrap();
        store
            .compare_and_swap(&key, 1, snapshot(2, json!({"n": 2})))
            .await
            .unwrap();
        let lost = store
            .compare_and_swap(&key, 0, snapshot(1, json!({"n": 9})))
            .await
            .unwrap();
        assert!(matches!(lost, SwapOutcome::Conflict { .. }), "{name}");
    }
    assert_eq!(
        store.count_tenant("quota").await.unwrap(),
        Some(2),
        "{name}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_keeps_the_contract() {
    contract(Arc::new(MemoryStore::new()), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_store_keeps_the_contract() {
    let dir = TempDir::new("contract-redb");
    contract(Arc::new(RedbStore::open(&dir.0).unwrap()), "redb").await;
}

#[test]
fn redb_refuses_a_directory_whose_store_file_is_empty_or_gone() {
    use security_update::store::RedbOpenError;
    let dir = TempDir::new("redb-damaged");
    let file = dir.0.join("security-update.redb");
    // A new directory gets a fresh store, and from then on is known to hold one.
    drop(RedbStore::open(&dir.0).unwrap());
    // A failed restore that left a zero-length file.
    std::fs::write(&file, b"").unwrap();
    let error = RedbStore::open(&dir.0).unwrap_err();
    assert!(matches!(error, RedbOpenError::Damaged(..)), "{error}");
    assert!(error.to_string().contains("is empty"), "{error}");
    // The file gone altogether.
    std::fs::remove_file(&file).unwrap();
    let error = RedbStore::open(&dir.0).unwrap_err();
    assert!(error.to_string().contains("is missing"), "{error}");
    // Nothing was created in its place.
    assert!(!file.exists());
    // An empty file in a directory that never held a store is refused too.
    let fresh = TempDir::new("redb-empty-file");
    std::fs::create_dir_all(&fresh.0).unwrap();
    std::fs::write(fresh.0.join("security-update.redb"), b"").unwrap();
    assert!(RedbStore::open(&fresh.0).is_err());
}

/// Group commit: many writers at once share transactions; every swap answered `Swapped` is in
/// the file after the store is dropped and opened again, first saves in one batch are all
/// counted, and writers racing from one version still have exactly one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_group_commit_keeps_every_acknowledged_swap_and_one_winner_per_race() {
    let dir = TempDir::new("redb-group-commit");
    let store = RedbStore::open(&dir.0).unwrap();
    let writers: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = ObjectKey::new("burst", &format!("user-{i}"));
                let swapped = store
                    .compare_and_swap(&key, 0, snapshot(1, json!({"n": i})))
                    .await
                    .unwrap();
                // Racers on one shared object, from the same version.
                let race = ObjectKey::new("burst", "shared");
                let won = store
                    .compare_and_swap(&race, 0, snapshot(1, json!({"winner": i})))
                    .await
                    .unwrap();
                (swapped == SwapOutcome::Swapped, won == SwapOutcome::Swapped)
            })
        })
        .collect();
    let mut winners = 0;
    for writer in writers {
        let (swapped, won) = writer.await.unwrap();
        assert!(swapped, "a first save of its own key was refused");
        winners += usize::from(won);
    }
    assert_eq!(winners, 1, "{winners} writers won the same version");
    drop(store);
    let store = RedbStore::open(&dir.0).unwrap();
    for i in 0..200 {
        let key = ObjectKey::new("burst", &format!("user-{i}"));
        let saved = store
            .load(&key)
            .await
            .unwrap()
            .expect("an acknowledged save is kept");
        assert_eq!(saved.document()["n"], i);
    }
    assert_eq!(store.count_tenant("burst").await.unwrap(), Some(201));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_backup_is_a_consistent_store_that_opens_with_counts_and_versions() {
    let dir = TempDir::new("redb-backup-source");
    let backups = TempDir::new("redb-backup-target");
    std::fs::create_dir_all(&backups.0).unwrap();
    let store = RedbStore::open(&dir.0).unwrap();
    for user in ["a", "b", "c"] {
        let key = ObjectKey::new("t", user);
        store
            .compare_and_swap(&key, 0, snapshot(1, json!({"n": 1})))
            .await
            .unwrap();
    }
    let a = ObjectKey::new("t", "a");
    store
        .compare_and_swap(&a, 1, snapshot(2, json!({"n": 2})))
        .await
        .unwrap();
    let target = backups.0.join("copy");
    store.backup_to(&target).unwrap();
    // The source keeps serving, and changes after the copy do not reach it.
    store
        .compare_and_swap(&a, 2, snapshot(3, json!({"n": 3})))
        .await
        .unwrap();
    // A second backup to the same place is refused and leaves the first one whole.
    assert!(store.backup_to(&target).is_err());
    assert!(!backups.0.join("copy.partial").exists());
    drop(store);
    let restored = RedbStore::open(&target).unwrap();
    let copy = restored.load(&a).await.unwrap().unwrap();
    assert_eq!(
        (copy.version(), copy.document()["n"].clone()),
        (2, json!(2))
    );
    assert_eq!(restored.count_tenant("t").await.unwrap(), Some(3));
    // The restored store is a store in its own right: the next write continues its versions.
    let next = restored
        .compare_and_swap(&a, 2, snapshot(3, json!({"n": 30})))
        .await
        .unwrap();
    assert!(matches!(next, security_update::store::SwapOutcome::Swapped));
}

#[test]
fn redb_refuses_a_store_of_a_newer_layout() {
    use security_update::store::RedbOpenError;
    let dir = TempDir::new("redb-newer");
    drop(RedbStore::open(&dir.0).unwrap());
    // A later build's file: the layout version it records is past what this build reads.
    {
        let db = redb::Database::create(dir.0.join("security-update.redb")).unwrap();
        let write = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut table = write.open_table(meta).unwrap();
            table.insert("format", 99).unwrap();
        }
        write.commit().unwrap();
    }
    let error = RedbStore::open(&dir.0).unwrap_err();
    assert!(matches!(error, RedbOpenError::Incompatible(..)), "{error}");
    assert!(error.to_string().contains("layout version 99"), "{error}");
}

/// Objects that grow far past a page and shrink back, among neighbours on either side in
/// key order: every object reads back whole from the file once the store is opened again
/// (no read cache left to answer for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_objects_that_grow_and_shrink_keep_their_neighbours_on_disk() {
    let dir = TempDir::new("redb-grow-shrink");
    let keys: Vec<ObjectKey> = (0..40)
        .map(|i| ObjectKey::new("grow", &format!("user-{i:02}")))
        .collect();
    let mut latest: Vec<Snapshot> = (0..keys.len())
        .map(|i| snapshot(1, json!({"id": i, "n": 1})))
        .collect();
    {
        let store = RedbStore::open(&dir.0).unwrap();
        // Every object first, so each that grows has neighbours on both sides.
        for (key, first) in keys.iter().zip(&latest) {
            let outcome = store.compare_and_swap(key, 0, first.clone()).await;
            assert_eq!(outcome.unwrap(), SwapOutcome::Swapped, "{key:?}");
        }
        for (i, key) in keys.iter().enumerate().filter(|(i, _)| i % 7 == 3) {
            let pad = "p".repeat(100_000 + i);
            let grown = snapshot(2, json!({"id": i, "pad": pad}));
            let shrunk = snapshot(3, json!({"id": i, "n": 3}));
            for next in [grown, shrunk] {
                let outcome = store
                    .compare_and_swap(key, next.version() - 1, next.clone())
                    .await;
                assert_eq!(outcome.unwrap(), SwapOutcome::Swapped, "{key:?}");
                latest[i] = next;
            }
        }
    }
    let store = RedbStore::open(&dir.0).unwrap();
    for (key, expected) in keys.iter().zip(&latest) {
        let loaded = store.load(key).await.unwrap().unwrap();
        assert_eq!(
            (loaded.version(), loaded.json()),
            (expected.version(), expected.json()),
            "{key:?}"
        );
    }
    assert_eq!(store.count_tenant("grow").await.unwrap(), Some(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_store_keeps_data_across_reopen() {
    let dir = TempDir::new("contract-redb-reopen");
    let key = ObjectKey::new("t", "u");
    {
        let store = RedbStore::open(&dir.0).unwrap();
        store
            .compare_and_swap(&key, 0, snapshot(1, json!({"n": 1})))
            .await
            .unwrap();
    }
    let store = RedbStore::open(&dir.0).unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().document()["n"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_keeps_the_contract() {
    let Some(db) = TestDb::create("postgres_store_keeps_the_contract").await else {
        return;
    };
    let store = PostgresStore::connect(&db.url, PostgresOptions::default())
        .await
        .unwrap();
    contract(Arc::new(store), "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migration_is_versioned_and_idempotent() {
    let Some(db) = TestDb::create("postgres_migration_is_versioned_and_idempotent").await else {
        return;
    };
    let first = PostgresStore::connect(&db.url, PostgresOptions::default())
        .await
        .unwrap();
    let key = ObjectKey::new("t", "u");
    first
        .compare_and_swap(&key, 0, snapshot(1, json!({"kept": true})))
        .await
        .unwrap();
    // Several processes starting at once each run the migration: all succeed, data stays.
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(
                async move { PostgresStore::connect(&url, PostgresOptions::default()).await },
            )
        })
        .collect();
    for start in starts {
        let store = start.await.unwrap().unwrap();
        assert_eq!(store.migration_version().await.unwrap(), 4);
    }
    assert_eq!(
        first.load(&key).await.unwrap().unwrap().document()["kept"],
        true
    );
}

/// A database made by a build before tenants were counted (migration 1 only, rows in it):
/// migration 2 counts the existing rows once, and creating objects keeps counting.
#[tokio::test]
async fn postgres_counts_tenants_of_a_database_from_before_counting() {
    let Some(db) = TestDb::create("pg-count-upgrade").await else {
        return;
    };
    let client = common::pg::connect(&db.url).await;
    client
        .batch_execute(
            "CREATE TABLE security_update_migrations (version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO security_update_migrations (version) VALUES (1);
             CREATE TABLE security_objects (tenant_id text NOT NULL, user_id text NOT NULL,
                 version bigint NOT NULL CHECK (version > 0), document jsonb NOT NULL,
                 updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, user_id));
             INSERT INTO security_objects (tenant_id, user_id, version, document) VALUES
                 ('t', 'a', 1, '{}'), ('t', 'b', 3, '{}'), ('other', 'c', 1, '{}');",
        )
        .await
        .unwrap();
    let store = PostgresStore::connect(&db.url, PostgresOptions::default())
        .await
        .unwrap();
    assert_eq!(store.migration_version().await.unwrap(), 4);
    assert_eq!(store.count_tenant("t").await.unwrap(), Some(2));
    assert_eq!(store.count_tenant("other").await.unwrap(), Some(1));
    store
        .compare_and_swap(&ObjectKey::new("t", "d"), 0, snapshot(1, json!({})))
        .await
        .unwrap();
    assert_eq!(store.count_tenant("t").await.unwrap(), Some(3));
}

#[tokio::test]
async fn postgres_down_at_start_is_a_clear_error() {
    let error = PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        PostgresOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        error.kind(),
        security_update::store::StoreErrorKind::Unavailable
    );
    assert!(error.message().contains("onnect"), "{}", error.message());
}

/// A PostgreSQL store through the tests' proxy, with one connection and the given statement
/// and connect timeouts, holding `{"n": 1}` at version 1: the database (dropped with it), the
/// proxy, the store and the object's key.
async fn one_object_behind_a_proxy(
    test: &str,
    statement_timeout: Duration,
    connect_timeout: Duration,
) -> Option<(TestDb, Proxy, PostgresStore, ObjectKey)> {
    let db = TestDb::create(test).await?;
    let proxy = Proxy::start(db.upstream()).await;
    let options = PostgresOptions {
        max_connections: 1,
        statement_timeout,
        connect_timeout,
    };
    let store = PostgresStore::connect(&db.url_via(proxy.addr), options)
        .await
        .unwrap();
    let key = ObjectKey::new("t", "u");
    store
        .compare_and_swap(&key, 0, snapshot(1, json!({"n": 1})))
        .await
        .unwrap();
    Some((db, proxy, store, key))
}

/// A database that stops answering without closing anything (a host gone, packets dropped)
/// cannot enforce its statement timeout: each call has a deadline of its own and is then
/// unavailable (503), a write whose answer never came is settled by reading back (here it
/// never reached the database: nothing changed), and the session left waiting is closed, not
/// handed to the next call, which goes on at once on a new one (one connection in the pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_calls_to_a_database_that_stops_answering_end_at_their_deadline() {
    let Some((_db, proxy, store, key)) = one_object_behind_a_proxy(
        "pg-no-answer",
        Duration::from_millis(300),
        Duration::from_millis(500),
    )
    .await
    else {
        return;
    };
    // Without a deadline of their own these calls would wait for ever: the test's bound.
    async fn bounded<F: std::future::Future>(call: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("a call to a database that stopped answering never ended")
    }

    proxy.hang();
    let refused = bounded(store.load(&key)).await.unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    assert!(refused.message().contains("no answer"), "{refused:?}");
    assert_eq!(
        bounded(store.load(&key)).await.unwrap().unwrap().version(),
        1
    );

    proxy.hang();
    let refused = bounded(store.compare_and_swap(&key, 1, snapshot(2, json!({"n": 2}))))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    let stored = bounded(store.load(&key)).await.unwrap().unwrap();
    assert_eq!((stored.version(), &stored.document()["n"]), (1, &json!(1)));

    proxy.hang();
    let refused = bounded(store.count_tenant("t")).await.unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    assert_eq!(
        bounded(store.compare_and_swap(&key, 1, snapshot(2, json!({"n": 2})))).await,
        Ok(SwapOutcome::Swapped)
    );
    assert_eq!(bounded(store.count_tenant("t")).await, Ok(Some(1)));
}

/// A call its caller gives up on (its future dropped while the database does not answer, as
/// the readiness probe's own 2-second bound does) leaves its session closed, not in the
/// pool, where the next call would take it and wait behind the statement pending on it (one
/// connection in the pool; the store's own deadline here is far past the caller's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_call_given_up_by_its_caller_leaves_no_stuck_session_behind() {
    let Some((_db, proxy, store, key)) = one_object_behind_a_proxy(
        "pg-given-up",
        Duration::from_secs(20),
        Duration::from_secs(2),
    )
    .await
    else {
        return;
    };
    proxy.hang();
    let given_up = tokio::time::timeout(Duration::from_millis(200), store.load(&key)).await;
    assert!(
        given_up.is_err(),
        "the hung database answered: {given_up:?}"
    );
    let loaded = tokio::time::timeout(Duration::from_secs(15), store.load(&key))
        .await
        .expect("the next call waited behind the given-up one");
    assert_eq!(loaded.unwrap().unwrap().version(), 1);
}
