//! A [`PostgresStore`]'s sessions: how they are set up, how long a call waits on one, when
//! one goes back to the pool, and what a failure of the database or the pool means to the
//! caller (503 or 500).

use std::time::Duration;

use deadpool::managed::{Metrics, Object, RecycleResult};
use deadpool_postgres::{ClientWrapper, PoolError};

use super::PostgresStore;
use crate::store::{StoreError, StoreErrorKind};

/// The store's pool: sessions that know their backend process.
pub(super) type Pool = deadpool::managed::Pool<Backends>;

/// Makes and recycles sessions as deadpool-postgres does, and asks each new one which
/// backend process serves it: a write whose answer is lost is settled only once that
/// process has ended (see `settle`), which takes its pid.
pub(super) struct Backends(pub(super) deadpool_postgres::Manager);

/// One session and the backend process serving it.
pub(super) struct Backend {
    pub(super) client: ClientWrapper,
    pub(super) id: BackendId,
}

/// A backend process: its pid, and when it started, in microseconds since the epoch (a pid
/// may be reused by a later backend; the pair is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BackendId {
    pub(super) pid: i32,
    pub(super) started: i64,
}

/// The start of the backend `pid` (an `int4`) in `pg_stat_activity`, as a `BackendId` has it.
pub(super) const BACKEND_STARTED: &str = "(extract(epoch FROM backend_start) * 1000000)::int8";

impl deadpool::managed::Manager for Backends {
    type Type = Backend;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Backend, tokio_postgres::Error> {
        let client = self.0.create().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT pid, {BACKEND_STARTED} FROM pg_stat_activity \
                     WHERE pid = pg_backend_pid()"
                ),
                &[],
            )
            .await?;
        let id = BackendId {
            pid: row.try_get(0)?,
            started: row.try_get(1)?,
        };
        Ok(Backend { client, id })
    }

    async fn recycle(
        &self,
        backend: &mut Backend,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        self.0.recycle(&mut backend.client, metrics).await
    }

    fn detach(&self, backend: &mut Backend) {
        self.0.detach(&mut backend.client);
    }
}

impl PostgresStore {
    /// A session from the pool, within the connect timeout.
    pub(super) async fn session(&self) -> Result<Session, StoreError> {
        let backend = self.pool.get().await.map_err(pool_error)?;
        Ok(Session(Some(backend)))
    }

    /// `answer`, the session then handed back (see [`Session::done_after`]); or 503 when the
    /// database gave none within the deadline, the session then closed.
    pub(super) fn finished<T>(
        &self,
        session: Session,
        answer: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match answer {
            Ok(answer) => {
                session.done_after(&answer);
                answer
            }
            Err(_) => Err(no_answer(self.deadline)),
        }
    }
}

/// A pooled session while its statements run. Only [`done`](Self::done) hands it back to
/// the pool: dropped before that (its deadline passed, its write failed half-way, or the
/// caller's future was dropped while it waited, as a readiness probe's own bound does), it
/// is closed, since a statement may still be pending on it and the next call to take it
/// would queue behind that.
pub(super) struct Session(Option<Object<Backends>>);

impl Session {
    pub(super) fn client(&self) -> &ClientWrapper {
        &self.backend().client
    }

    /// The backend process serving this session.
    pub(super) fn backend_id(&self) -> BackendId {
        self.backend().id
    }

    fn backend(&self) -> &Backend {
        match &self.0 {
            Some(backend) => backend,
            None => unreachable!("a session is held until it is done or dropped"),
        }
    }

    /// Back to the pool (whose recycling drops a session the database closed).
    pub(super) fn done(mut self) {
        drop(self.0.take());
    }

    /// Back to the pool after `answer`, unless it says the database could not serve (503): a
    /// session that a failover or a restart ended answers so, and the pool may not know it
    /// closed yet; handed back, it would fail the next call too. Closing one that was fine
    /// costs a new connection, on a path that is already failing.
    pub(super) fn done_after<T>(self, answer: &Result<T, StoreError>) {
        if !matches!(answer, Err(error) if error.kind() == StoreErrorKind::Unavailable) {
            self.done();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(backend) = self.0.take() {
            drop(Object::take(backend));
        }
    }
}

/// The database did not answer within `deadline`.
pub(super) fn no_answer(deadline: Duration) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!("PostgreSQL: no answer within {} ms", deadline.as_millis()),
    )
}

pub(super) fn pool_error(error: PoolError) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!("PostgreSQL: {}", with_causes(&error)),
    )
}

/// An error and its sources, "a: b: c", so "connection refused" is not hidden behind
/// "error connecting to server".
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) fn db_error(error: tokio_postgres::Error) -> StoreError {
    // A closed connection, an I/O error, a timeout, or a database going away, out of room or
    // taking no writes means "try again later" (503); a statement the database refused for
    // its content would be a bug, but is not the caller's fault either (500).
    let transient = error.is_closed() || error.code().is_none_or(|code| transient(code.code()));
    let kind = if transient {
        StoreErrorKind::Unavailable
    } else {
        StoreErrorKind::Other
    };
    StoreError::new(kind, format!("PostgreSQL: {}", with_causes(&error)))
}

/// Whether an SQLSTATE says the database cannot serve now but may soon (PostgreSQL's
/// "Appendix A. Error Codes"): a connection exception (class 08), a transaction rolled back
/// for a conflict or a deadlock (40), insufficient resources (53: a full disk, too many
/// connections), operator intervention (57: a statement cancelled by its timeout, a server
/// shutting down or restarting, `pg_terminate_backend`; not 57P04, the database dropped), a
/// system or I/O error (58000, 58030; not 58P01 / 58P02, a file missing or already there),
/// and a read-only transaction (25006: a standby after a failover).
pub(super) fn transient(code: &str) -> bool {
    match code.get(..2) {
        Some("08" | "40" | "53") => true,
        Some("57") => code != "57P04",
        _ => matches!(code, "58000" | "58030" | "25006"),
    }
}

/// The startup options of every session: the URL's own (`?options=...`), then the settings
/// the store relies on, which win over the URL's, the role's and the database's defaults:
/// the statements' timeout; `read committed`, under which a compare-and-swap that waited
/// for another writer's row finds no row of its version instead of failing (stricter
/// levels fail it with a serialization error); and `synchronous_commit = on`, under which a
/// commit returns once it is on disk (and on the synchronous standbys), as the store answers.
pub(super) fn session_options(url_options: Option<&str>, statement_timeout: Duration) -> String {
    let mut startup = url_options.map_or_else(String::new, |options| format!("{options} "));
    startup.push_str(&format!(
        "-c statement_timeout={} -c default_transaction_isolation=read\\ committed \
         -c synchronous_commit=on",
        statement_timeout.as_millis()
    ));
    startup
}
