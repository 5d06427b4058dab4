//! [`PostgresStore`]: one `PostgreSQL` database shared by several server processes.
//!
//! One row per object — `(tenant_id, user_id)` → `(version, document json)` — and a
//! compare-and-swap that is a single statement: `INSERT ... ON CONFLICT DO NOTHING` for the
//! first save, `UPDATE ... WHERE version = $expected` after. `PostgreSQL`'s row locking makes
//! each statement atomic, so of several processes racing from the same version exactly one
//! wins and the others re-apply their patch to the winner's object: no lost update, and
//! versions (hence `ETags`) agree across processes.
//!
//! The table is created at start by a versioned, idempotent migration, run under an advisory
//! lock so several processes starting together do not trip over each other.
//!
//! A database that goes away makes requests fail fast with a 503 (pool wait and statement
//! timeouts bound every call); broken connections are dropped on recycle, so service resumes
//! by itself when the database is back. A database that stops answering without closing
//! anything (a host gone, a network dropping packets) cannot enforce its statement timeout:
//! every call also has a deadline of its own, past which it is 503 and its connection is
//! closed rather than handed to the next call, which would queue behind what it waits for.
//! A write whose answer was lost is settled once its session's backend process has ended
//! (see `postgres_settle.rs`): the store assumes one backend per connection for the
//! connection's life, which a pooler in transaction mode does not give.
//! Connections are plain TCP (`NoTls`): put TLS in front (a local proxy or a service mesh)
//! when the database is remote.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime};
use serde_json::{Map, Value};
use tokio_postgres::NoTls;

use super::{ObjectKey, SecurityStore, Snapshot, StoreError, StoreErrorKind, SwapOutcome};

#[path = "postgres_session.rs"]
mod session;
use session::{Backends, Pool, db_error, no_answer, pool_error, session_options};
#[path = "postgres_settle.rs"]
mod settle;
use settle::WriteId;

/// Each migration, in order; the index + 1 is its version.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS security_objects (
        tenant_id  text        NOT NULL,
        user_id    text        NOT NULL,
        version    bigint      NOT NULL CHECK (version > 0),
        document   jsonb       NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, user_id)
    )",
    // 2: objects per tenant, kept by the statement that creates an object (the quota check
    // reads one row instead of counting a tenant's rows); existing rows counted once.
    "CREATE TABLE IF NOT EXISTS security_tenant_counts (
        tenant_id text   PRIMARY KEY,
        objects   bigint NOT NULL CHECK (objects >= 0)
    );
    INSERT INTO security_tenant_counts (tenant_id, objects)
        SELECT tenant_id, count(*) FROM security_objects GROUP BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE SET objects = EXCLUDED.objects",
    // 3: which write made the row's version (see `WriteId`): a write whose answer was lost
    // is settled by its own id, not by content another writer may have written too. Rows
    // of earlier builds have none.
    "ALTER TABLE security_objects ADD COLUMN IF NOT EXISTS write_id bigint",
    // 4: the document as its text, not `jsonb`, which orders keys its own way (shortest
    // first, at every depth): a read answered other bytes than the write that made its
    // version, under the same strong ETag. Rewrites the table once.
    "ALTER TABLE security_objects ALTER COLUMN document TYPE json USING document::json",
];
/// Arbitrary, fixed key of the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x005e_c0b1_ec75;
/// Longest one statement of the migration may run, waiting for another process's included.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

const LOAD: &str =
    "SELECT version, document::text FROM security_objects WHERE tenant_id = $1 AND user_id = $2";
/// The first save and the tenant's count in one statement: it reports one row when the object
/// was created (and counted), none when it already existed.
const INSERT_FIRST: &str = "WITH created AS (
       INSERT INTO security_objects (tenant_id, user_id, version, document, write_id)
       VALUES ($1, $2, $3, $4::text::json, $5) ON CONFLICT (tenant_id, user_id) DO NOTHING
       RETURNING tenant_id)
     INSERT INTO security_tenant_counts (tenant_id, objects)
       SELECT tenant_id, 1 FROM created
       ON CONFLICT (tenant_id) DO UPDATE SET objects = security_tenant_counts.objects + 1";
const UPDATE_IF_VERSION: &str = "UPDATE security_objects
     SET version = $3, document = $4::text::json, write_id = $6, updated_at = now()
     WHERE tenant_id = $1 AND user_id = $2 AND version = $5";
/// Pool and timeout settings of a [`PostgresStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Most connections held open.
    pub max_connections: usize,
    /// Longest one statement may run (`PostgreSQL`'s `statement_timeout`).
    pub statement_timeout: Duration,
    /// Longest to wait for a connection, new or from the pool.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    /// 16 connections, 5 s statements, 3 s to get a connection.
    fn default() -> Self {
        Self {
            max_connections: 16,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// A store in `PostgreSQL`; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Longest a call waits for the database's answer (see `Session`).
    deadline: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("max_connections", &status.max_size)
            .field("open_connections", &status.size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), and creates or migrates the table.
    ///
    /// # Errors
    /// When the URL is invalid, the database is unreachable, or the migration fails.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("invalid PostgreSQL URL: {e}"),
            )
        })?;
        let startup = session_options(config.get_options(), options.statement_timeout);
        config
            .options(startup)
            .connect_timeout(options.connect_timeout)
            .application_name("security-update");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(Backends(manager))
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("connection pool: {e}")))?;
        let store = Self {
            pool,
            // The statement timeout, and as long again as a connection may take for the
            // answer saying it ran out to come back.
            deadline: options.statement_timeout + options.connect_timeout,
        };
        tokio::time::timeout(MIGRATION_TIMEOUT + options.connect_timeout, store.migrate())
            .await
            .map_err(|_| no_answer(MIGRATION_TIMEOUT))??;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut backend = self.pool.get().await.map_err(pool_error)?;
        let tx = backend.client.transaction().await.map_err(db_error)?;
        // A migration may count a big table, or wait for another process's: the request
        // statements' timeout would fail every start; it gets its own, longer bound.
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            MIGRATION_TIMEOUT.as_millis()
        ))
        .await
        .map_err(db_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS security_update_migrations (
                version    integer     PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db_error)?;
        let applied: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM security_update_migrations",
                &[],
            )
            .await
            .map_err(db_error)?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if applied > known {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("the database is at migration {applied}, newer than this build's {known}"),
            ));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            tx.batch_execute(sql).await.map_err(db_error)?;
            tx.execute(
                "INSERT INTO security_update_migrations (version) VALUES ($1)",
                &[&(index as i32 + 1)],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    /// The migration version the database is at after [`connect`](Self::connect).
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn migration_version(&self) -> Result<i32, StoreError> {
        let backend = self.pool.get().await.map_err(pool_error)?;
        let row = backend
            .client
            .query_one("SELECT max(version) FROM security_update_migrations", &[])
            .await
            .map_err(db_error)?;
        Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
    }

    async fn load_with(
        client: &deadpool_postgres::ClientWrapper,
        key: &ObjectKey,
    ) -> Result<Option<Snapshot>, StoreError> {
        let statement = client.prepare_cached(LOAD).await.map_err(db_error)?;
        let Some(row) = client
            .query_opt(&statement, &[&key.tenant_id(), &key.user_id()])
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let corrupt = |e: tokio_postgres::Error| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("unexpected column type: {e}"),
            )
        };
        let version: i64 = row.try_get(0).map_err(corrupt)?;
        let text: String = row.try_get(1).map_err(corrupt)?;
        snapshot_from_text(version, &text).map(Some)
    }
}

/// A stored document: its text as written since migration 4; a row last written before it
/// has `jsonb`'s key order (shortest first), so Graph's `@odata.type` and `id` go back in
/// front, as every store answers them (the text of a later write already has them there).
fn snapshot_from_text(version: i64, text: &str) -> Result<Snapshot, StoreError> {
    let corrupt = |why: String| StoreError::new(StoreErrorKind::Corrupt, why);
    let version =
        u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))?;
    let mut stored: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| corrupt(format!("stored object is not a JSON object: {e}")))?;
    let mut document = Map::with_capacity(stored.len());
    for key in ["@odata.type", "id"] {
        if let Some(value) = stored.shift_remove(key) {
            document.insert(key.to_owned(), value);
        }
    }
    document.extend(stored);
    Snapshot::new(version, document).map_err(|e| corrupt(e.to_string()))
}

impl SecurityStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// One row of `security_tenant_counts`, kept by the statement that creates objects.
    async fn count_tenant(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        let session = self.session().await?;
        let client = session.client();
        let read = tokio::time::timeout(self.deadline, async {
            let statement = client
                .prepare_cached("SELECT objects FROM security_tenant_counts WHERE tenant_id = $1")
                .await
                .map_err(db_error)?;
            let row = client
                .query_opt(&statement, &[&tenant_id])
                .await
                .map_err(db_error)?;
            let count: i64 = row.map_or(0, |row| row.get(0));
            Ok(Some(u64::try_from(count).unwrap_or(0)))
        })
        .await;
        self.finished(session, read)
    }

    /// A read, on a session that takes writes: a standby after a failover (or a database
    /// set to `default_transaction_read_only`) answers reads and refuses every write.
    async fn check_ready(&self) -> Result<(), StoreError> {
        let session = self.session().await?;
        let client = session.client();
        let answer = tokio::time::timeout(self.deadline, async {
            let statement = client
                .prepare_cached("SELECT current_setting('transaction_read_only')")
                .await
                .map_err(db_error)?;
            let read_only: String = client
                .query_one(&statement, &[])
                .await
                .map_err(db_error)?
                .get(0);
            if read_only == "on" {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    "PostgreSQL: the database takes no writes (transaction_read_only = on: \
                     a standby, or default_transaction_read_only)",
                ));
            }
            let probe = ObjectKey::new("readiness-probe", "readiness-probe");
            Self::load_with(client, &probe).await.map(|_| ())
        })
        .await;
        self.finished(session, answer)
    }

    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        let session = self.session().await?;
        let read =
            tokio::time::timeout(self.deadline, Self::load_with(session.client(), key)).await;
        self.finished(session, read)
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        let session = self.session().await?;
        let client = session.client();
        let version = i64::try_from(new.version())
            .map_err(|_| StoreError::new(StoreErrorKind::Other, "version out of range"))?;
        let expected = i64::try_from(expected_version)
            .map_err(|_| StoreError::new(StoreErrorKind::Other, "version out of range"))?;
        let json = std::str::from_utf8(new.json())
            .map_err(|_| StoreError::new(StoreErrorKind::Other, "document is not UTF-8"))?;
        let (tenant, user) = (key.tenant_id(), key.user_id());
        let (write_id, backend) = (WriteId::new(), session.backend_id());
        let (sql, params): (&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]) =
            if expected_version == 0 {
                (
                    INSERT_FIRST,
                    &[&tenant, &user, &version, &json, &write_id.0],
                )
            } else {
                (
                    UPDATE_IF_VERSION,
                    &[&tenant, &user, &version, &json, &expected, &write_id.0],
                )
            };
        // `Err((sent, error))`: whether the write may have reached the database.
        let write = tokio::time::timeout(self.deadline, async {
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|error| (false, error))?;
            client
                .execute(&statement, params)
                .await
                .map_err(|error| (true, error))
        })
        .await;
        let changed = match write {
            Ok(Ok(changed)) => changed,
            Ok(Err((false, error))) => {
                let refused = Err(db_error(error));
                session.done_after(&refused);
                return refused;
            }
            Ok(Err((true, error))) => {
                // Closed, not handed back: a session whose write failed half-way (often one
                // the database ended) would be the settling read's next, and fail it too.
                drop(session);
                return self
                    .settle_ambiguous_write(key, &new, write_id, backend, db_error(error))
                    .await;
            }
            Err(_) => {
                drop(session);
                let original = no_answer(self.deadline);
                return self
                    .settle_ambiguous_write(key, &new, write_id, backend, original)
                    .await;
            }
        };
        if changed == 1 {
            session.done();
            return Ok(SwapOutcome::Swapped);
        }
        let read =
            tokio::time::timeout(self.deadline, Self::load_with(session.client(), key)).await;
        let current = self.finished(session, read)?;
        Ok(SwapOutcome::Conflict { current })
    }
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;
