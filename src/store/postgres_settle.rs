//! A [`PostgresStore`] write whose answer was lost: did it land?
//!
//! A write sent on a session whose answer never came (the connection cut or hung, the
//! deadline passed) may have committed, may still commit (its statement still on its way,
//! or committing), or may never. The store ends the session's backend process and waits
//! until it is gone, so that what it wrote is all it will ever write; then it reads the
//! row. The write landed when the row holds its version made by its own id ([`WriteId`]):
//! then the caller hears "saved" and audits it, rather than a 503 for a change that
//! happened. Anything else (another writer's row, or a backend this role may not end) is the
//! original 503, and then the write did not land.

use super::session::{BACKEND_STARTED, BackendId, db_error};
use super::{ObjectKey, PostgresStore, Snapshot, StoreError, SwapOutcome};

/// The version and write of a row, read once the lost write's backend has ended. A plain
/// read, not `FOR UPDATE`: a writer holding the row now is another one, whose change, once
/// it commits, would hide that ours had landed before it.
const SETTLE: &str =
    "SELECT version, write_id FROM security_objects WHERE tenant_id = $1 AND user_id = $2";

/// The longest pause between two looks at whether a backend has ended.
const LOOK_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

impl PostgresStore {
    /// Settles the write `write_id` of `new`, sent on the session of backend `lost`: see the
    /// [module docs](self). `original` is the caller's answer when it did not land, or
    /// when that cannot be known within the deadline.
    pub(super) async fn settle_ambiguous_write(
        &self,
        key: &ObjectKey,
        new: &Snapshot,
        write_id: WriteId,
        lost: BackendId,
        original: StoreError,
    ) -> Result<SwapOutcome, StoreError> {
        let Ok(session) = self.session().await else {
            return Err(original);
        };
        let client = session.client();
        let read = tokio::time::timeout(self.deadline, async {
            end_backend(client, lost).await?;
            let statement = client.prepare_cached(SETTLE).await.map_err(db_error)?;
            client
                .query_opt(&statement, &[&key.tenant_id(), &key.user_id()])
                .await
                .map_err(db_error)
        })
        .await;
        let Ok(Some(row)) = self.finished(session, read) else {
            return Err(original);
        };
        let version: Option<i64> = row.try_get(0).ok();
        let written_by: Option<i64> = row.try_get(1).ok().flatten();
        let ours = version.and_then(|version| u64::try_from(version).ok()) == Some(new.version())
            && written_by == Some(write_id.0);
        if ours {
            Ok(SwapOutcome::Swapped)
        } else {
            Err(original)
        }
    }
}

/// Ends the backend process `lost` (`pg_terminate_backend`: a role may end its own) and
/// returns once it is gone. Its transaction is then committed or rolled back for good, and
/// a statement still on its way to it is never read: a terminated backend aborts what it
/// has not committed before it leaves `pg_stat_activity`.
async fn end_backend(
    client: &deadpool_postgres::ClientWrapper,
    lost: BackendId,
) -> Result<(), StoreError> {
    let this_backend = format!("pid = $1 AND {BACKEND_STARTED} = $2");
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&lost.pid, &lost.started];
    client
        .query_opt(
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {this_backend}"),
            &params,
        )
        .await
        .map_err(db_error)?;
    let alive = format!("SELECT 1 FROM pg_stat_activity WHERE {this_backend}");
    let mut pause = std::time::Duration::from_millis(1);
    while client
        .query_opt(&alive, &params)
        .await
        .map_err(db_error)?
        .is_some()
    {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LOOK_AT_MOST_EVERY);
    }
    Ok(())
}

/// A write's id, stored with the row it wrote: random, so that no other write (of this
/// process or another) has it.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriteId(pub(super) i64);

impl WriteId {
    pub(super) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static WRITES: AtomicU64 = AtomicU64::new(0);
        // std's hasher keys are random per process (and per thread), the count unique in it.
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u64(WRITES.fetch_add(1, Ordering::Relaxed));
        Self(hasher.finish().cast_signed())
    }
}
