//! Tests of `postgres` against a real server (`SECURITY_UPDATE_TEST_POSTGRES`; CI sets it,
//! elsewhere they say they skipped), where the store's own sessions must be looked at: what
//! a session is set to, and what a statement cut or held up by another session answers.
//! Each test has a database of its own.

use std::time::Instant;

use serde_json::json;

use super::session::transient;
use super::*;

#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/common/pg.rs"]
mod pg;

fn snapshot(version: u64, document: &Value) -> Snapshot {
    Snapshot::new(version, document.as_object().unwrap().clone()).unwrap()
}

/// `url` with startup `options` (spaces and `=` escaped for the URL).
fn with_options(url: &str, options: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let escaped = options.replace(' ', "%20").replace('=', "%3D");
    format!("{url}{separator}options={escaped}")
}

/// Waits until a session of the store other than `except` (0: none) has waited on the session
/// `blocker` (its pid) for at least `waited`; its pid.
async fn waiting_on(
    admin: &tokio_postgres::Client,
    blocker: i32,
    waited: Duration,
    except: i32,
) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = 'security-update' AND $1 = ANY(pg_blocking_pids(pid))
                   AND now() - query_start >= make_interval(secs => $2) AND pid <> $3",
                &[&blocker, &waited.as_secs_f64(), &except],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            Instant::now() < deadline,
            "no session of the store waited on the blocker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// A store on `url` holding one object, `{"n": 1}` at version 1; its key.
async fn one_object(url: &str, options: PostgresOptions) -> (PostgresStore, ObjectKey) {
    let store = PostgresStore::connect(url, options).await.unwrap();
    let key = ObjectKey::new("t", "u");
    store
        .compare_and_swap(&key, 0, snapshot(1, &json!({"n": 1})))
        .await
        .unwrap();
    (store, key)
}

/// Another session on `url` that changes the object's row (`set`) and does not commit: it
/// holds the row until told to. The session and its pid.
async fn holding_the_row(url: &str, set: &str) -> (tokio_postgres::Client, i32) {
    let blocker = pg::connect(url).await;
    blocker
        .batch_execute(&format!(
            "BEGIN; UPDATE security_objects SET {set} WHERE tenant_id = 't' AND user_id = 'u'"
        ))
        .await
        .unwrap();
    let pid = backend_pid(&blocker).await;
    (blocker, pid)
}

/// The store's swap of `key` from version 1 to `{"n": n}` at version 2, in a task of its own.
fn swap_to_two(
    store: &PostgresStore,
    key: &ObjectKey,
    n: u64,
) -> tokio::task::JoinHandle<Result<SwapOutcome, StoreError>> {
    let (store, key) = (store.clone(), key.clone());
    tokio::spawn(async move {
        store
            .compare_and_swap(&key, 1, snapshot(2, &json!({"n": n})))
            .await
    })
}

/// The URL's own startup options are kept (here its schema), and the settings the store
/// relies on win over the URL's: statements' timeout, `read committed`, a commit on disk
/// before it returns.
#[tokio::test]
async fn a_session_keeps_the_urls_options_and_pins_what_the_store_relies_on() {
    let Some(db) = pg::TestDb::create("pg-session-options").await else {
        return;
    };
    let admin = pg::connect(&db.url).await;
    admin.batch_execute("CREATE SCHEMA custom").await.unwrap();
    let url = with_options(
        &db.url,
        "-c search_path=custom -c default_transaction_isolation=serializable \
         -c synchronous_commit=off -c statement_timeout=0",
    );
    let store = PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap();
    let session = store.session().await.unwrap();
    for (setting, expected) in [
        ("search_path", "custom"),
        ("default_transaction_isolation", "read committed"),
        ("synchronous_commit", "on"),
        ("statement_timeout", "5s"),
    ] {
        let row = session
            .client()
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "{setting}");
    }
    let key = ObjectKey::new("t", "u");
    store
        .compare_and_swap(&key, 0, snapshot(1, &json!({"n": 1})))
        .await
        .unwrap();
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM custom.security_objects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

/// A swap that waited for another writer's uncommitted change of its row is a conflict
/// with that writer's object once it commits, even where the database's default isolation
/// is stricter (there the waiting `UPDATE` would fail with a serialization error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_that_waited_for_another_writer_is_a_conflict_under_any_default_isolation() {
    let Some(db) = pg::TestDb::create("pg-waited-swap").await else {
        return;
    };
    let url = with_options(&db.url, "-c default_transaction_isolation=serializable");
    let (store, key) = one_object(&url, PostgresOptions::default()).await;
    let admin = pg::connect(&db.url).await;
    let (blocker, pid) = holding_the_row(&db.url, "version = 2, document = '{\"n\": 2}'").await;
    let swap = swap_to_two(&store, &key, 3);
    waiting_on(&admin, pid, Duration::ZERO, 0).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    match swap.await.unwrap() {
        Ok(SwapOutcome::Conflict {
            current: Some(current),
        }) => {
            assert_eq!(current.version(), 2);
            assert_eq!(current.document()["n"], 2);
        }
        other => panic!("not a conflict with the other writer's object: {other:?}"),
    }
}

/// A statement cut by its session's end (a server shutting down, `pg_terminate_backend`)
/// is 503 (the client may retry), not 500, and changes nothing; the store goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_whose_session_is_terminated_is_unavailable_and_the_store_goes_on() {
    let Some(db) = pg::TestDb::create("pg-terminated-swap").await else {
        return;
    };
    let (store, key) = one_object(&db.url, PostgresOptions::default()).await;
    let admin = pg::connect(&db.url).await;
    // Holds the row, changing nothing, so that the store's statement is in flight.
    let (blocker, pid) = holding_the_row(&db.url, "updated_at = now()").await;
    let swap = swap_to_two(&store, &key, 2);
    let waiting = waiting_on(&admin, pid, Duration::ZERO, 0).await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&waiting])
        .await
        .unwrap();
    let refused = swap.await.unwrap().unwrap_err();
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    assert_eq!(store.load(&key).await.unwrap().unwrap().version(), 1);
    assert_eq!(
        store
            .compare_and_swap(&key, 1, snapshot(2, &json!({"n": 2})))
            .await,
        Ok(SwapOutcome::Swapped)
    );
}

/// A process starting while another migrates waits for it past the statements' timeout
/// (a migration may count a big table): its start does not fail for the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_another_processs_migration_past_the_statement_timeout() {
    let Some(db) = pg::TestDb::create("pg-migration-wait").await else {
        return;
    };
    let (admin, blocker) = (pg::connect(&db.url).await, pg::connect(&db.url).await);
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
        ))
        .await
        .unwrap();
    let options = PostgresOptions {
        statement_timeout: Duration::from_millis(100),
        ..PostgresOptions::default()
    };
    let start = tokio::spawn({
        let url = db.url.clone();
        async move { PostgresStore::connect(&url, options).await }
    });
    // Ten times the statements' timeout: a wait bounded by it would have failed by now.
    waiting_on(
        &admin,
        backend_pid(&blocker).await,
        Duration::from_secs(1),
        0,
    )
    .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let store = start.await.unwrap().unwrap();
    assert_eq!(store.migration_version().await.unwrap(), 4);
}

/// Options under which the store holds one session, so that settling a lost answer takes
/// a new one, and waits at most 3 s for an answer.
const ONE_SESSION: PostgresOptions = PostgresOptions {
    max_connections: 1,
    statement_timeout: Duration::from_secs(2),
    connect_timeout: Duration::from_secs(1),
};

/// A write whose answer is lost is settled by its own id, not by content: another writer
/// that brought the row to the same version and content made a change of its own, which
/// this writer must not claim (both would be answered as saved, and the change audited
/// twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_settled_by_the_writes_own_id_not_by_equal_content() {
    let Some(db) = pg::TestDb::create("pg-settle-by-id").await else {
        return;
    };
    let proxy = pg::Proxy::start(db.upstream()).await;
    let (store, key) = one_object(&db.url_via(proxy.addr), ONE_SESSION).await;
    let admin = pg::connect(&db.url).await;
    // The same change this test's writer makes, by another, not yet committed.
    let (blocker, pid) = holding_the_row(&db.url, "version = 2, document = '{\"n\": 2}'").await;
    let swap = swap_to_two(&store, &key, 2);
    // The store's statement waits for the other writer: hang its connection, then let the
    // other writer commit. The statement finds no row of version 1; that answer is lost.
    waiting_on(&admin, pid, Duration::ZERO, 0).await;
    proxy.hang();
    blocker.batch_execute("COMMIT").await.unwrap();
    let refused = swap.await.unwrap().unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!((stored.version(), &stored.document()["n"]), (2, &json!(2)));
}

/// The store's sessions on `db` as the database lists them: their backends' pids.
async fn store_backends(admin: &tokio_postgres::Client, db: &pg::TestDb) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'security-update' AND datname = $1 ORDER BY pid",
            &[&db.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A write whose statement is held on its way to the database is answered 503 only once
/// it can never land: the backend of its session has been ended, so the statement is never
/// read (else the caller would hear 503 for a change made later, and never audited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_held_on_its_way_is_refused_only_once_it_can_never_land() {
    let Some(db) = pg::TestDb::create("pg-settle-held").await else {
        return;
    };
    let proxy = pg::Proxy::start(db.upstream()).await;
    let (store, key) = one_object(&db.url_via(proxy.addr), ONE_SESSION).await;
    let admin = pg::connect(&db.url).await;
    // A first swap prepares the statement on the session, so the next sends only its run.
    swap_to_two(&store, &key, 2).await.unwrap().unwrap();
    held_and_refused(&store, &admin, &db, &proxy, &key, 2, json!({"n": 3})).await;
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!((stored.version(), &stored.document()["n"]), (2, &json!(2)));
    // The same for a first save (another statement, which also counts the tenant's objects).
    let other = ObjectKey::new("t", "other");
    held_and_refused(&store, &admin, &db, &proxy, &other, 0, json!({"n": 1})).await;
    assert_eq!(store.load(&other).await.unwrap(), None);
    assert_eq!(store.count_tenant("t").await.unwrap(), Some(1));
}

/// Holds every statement on the store's one session (`proxy.hang()`), then swaps `key` from
/// `expected` to `document`: the swap must be 503, and the session's backend gone by then.
async fn held_and_refused(
    store: &PostgresStore,
    admin: &tokio_postgres::Client,
    db: &pg::TestDb,
    proxy: &pg::Proxy,
    key: &ObjectKey,
    expected: u64,
    document: Value,
) {
    let lost = store_backends(admin, db).await;
    assert_eq!(lost.len(), 1, "one session: {lost:?}");
    proxy.hang();
    let refused = store
        .compare_and_swap(key, expected, snapshot(expected + 1, &document))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    let left = store_backends(admin, db).await;
    assert!(
        !left.contains(&lost[0]),
        "the lost session's backend is still there: {left:?}"
    );
}

/// Ends every session of the store on `db` (as a failover does) and changes whether the
/// database takes writes for the sessions that come after.
async fn fail_over(admin: &tokio_postgres::Client, db: &pg::TestDb, read_only: bool) {
    let setting = if read_only { "on" } else { "off" };
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = {setting}",
            db.name
        ))
        .await
        .unwrap();
    for pid in store_backends(admin, db).await {
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
}

/// The store's readiness after its sessions were ended: the first check may still take the
/// ended session from the pool before the pool knows it closed (it fails, and is closed);
/// the next has a new one.
async fn ready_after_failover(store: &PostgresStore) -> Result<(), StoreError> {
    match store.check_ready().await {
        Ok(()) => Ok(()),
        Err(_) => store.check_ready().await,
    }
}

/// A database that answers reads and takes no writes (a standby after a failover) is not
/// ready, though every read still works; once it takes writes again, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_takes_no_writes_is_not_ready() {
    let Some(db) = pg::TestDb::create("pg-read-only").await else {
        return;
    };
    let (store, key) = one_object(&db.url, ONE_SESSION).await;
    let admin = pg::connect(&db.url).await;
    assert_eq!(store.check_ready().await, Ok(()));
    fail_over(&admin, &db, true).await;
    let refused = ready_after_failover(&store).await.unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused:?}");
    assert!(refused.to_string().contains("takes no writes"), "{refused}");
    assert_eq!(store.load(&key).await.unwrap().unwrap().version(), 1);
    let write = swap_to_two(&store, &key, 2).await.unwrap().unwrap_err();
    assert_eq!(write.kind(), StoreErrorKind::Unavailable, "{write:?}");
    fail_over(&admin, &db, false).await;
    assert_eq!(ready_after_failover(&store).await, Ok(()));
    assert_eq!(store.load(&key).await.unwrap().unwrap().version(), 1);
}

/// A write that committed while its answer was lost (the connection hung after the
/// statement reached the database) is settled by reading back its own id: "saved", so its
/// writer audits it, rather than a 503 for a change that happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_is_lost_after_it_committed_is_saved() {
    let Some(db) = pg::TestDb::create("pg-settle-saved").await else {
        return;
    };
    let proxy = pg::Proxy::start(db.upstream()).await;
    let (store, key) = one_object(&db.url_via(proxy.addr), ONE_SESSION).await;
    let admin = pg::connect(&db.url).await;
    let (blocker, pid) = holding_the_row(&db.url, "updated_at = now()").await;
    let swap = swap_to_two(&store, &key, 2);
    // The statement is at the database, waiting for the row: hang its connection, then let
    // it run. It commits; its answer never comes back.
    waiting_on(&admin, pid, Duration::ZERO, 0).await;
    proxy.hang();
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(swap.await.unwrap(), Ok(SwapOutcome::Swapped));
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!((stored.version(), &stored.document()["n"]), (2, &json!(2)));
}

/// The SQLSTATEs that say "not now" are told from those that say "never".
#[test]
fn transient_codes_are_the_ones_that_may_pass() {
    for code in [
        "08006", "40001", "40P01", "53100", "53300", "57014", "57P01", "57P03", "58030", "25006",
    ] {
        assert!(transient(code), "{code}");
    }
    for code in [
        "23505", "42P01", "22P02", "25001", "XX000", "0", "57P04", "58P01", "58P02",
    ] {
        assert!(!transient(code), "{code}");
    }
}
