//! The store chosen on the command line.

use security_update::store::AtOnce;
use security_update::{
    MemoryStore, ObjectKey, PostgresStore, RedbStore, SecurityStore, Snapshot, StoreError,
    SwapOutcome,
};

/// One of the stores the server can run on.
///
/// PostgreSQL's futures are boxed: tokio-postgres's are 1.6-2.2 KB, and unboxed they would
/// size every store future of this enum, so a write on the embedded store (whose writes the
/// service boxes, one allocation a request) would move and allocate PostgreSQL's size. A
/// PostgreSQL operation is a round trip over the network; its allocation is lost in it.
#[derive(Debug, Clone)]
pub(crate) enum AnyStore {
    Memory(MemoryStore),
    Redb(RedbStore),
    Postgres(PostgresStore),
}

impl SecurityStore for AnyStore {
    fn kind(&self) -> &'static str {
        match self {
            Self::Memory(store) => store.kind(),
            Self::Redb(store) => store.kind(),
            Self::Postgres(store) => store.kind(),
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.writable(),
            Self::Redb(store) => store.writable(),
            Self::Postgres(store) => store.writable(),
        }
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.check_ready().await,
            Self::Redb(store) => store.check_ready().await,
            Self::Postgres(store) => Box::pin(store.check_ready()).await,
        }
    }

    fn at_once(&self) -> Option<&dyn AtOnce> {
        match self {
            Self::Memory(store) => store.at_once(),
            Self::Redb(store) => store.at_once(),
            Self::Postgres(store) => store.at_once(),
        }
    }

    async fn count_tenant(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Memory(store) => store.count_tenant(tenant_id).await,
            Self::Redb(store) => store.count_tenant(tenant_id).await,
            Self::Postgres(store) => Box::pin(store.count_tenant(tenant_id)).await,
        }
    }

    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Self::Memory(store) => store.load(key).await,
            Self::Redb(store) => store.load(key).await,
            Self::Postgres(store) => Box::pin(store.load(key)).await,
        }
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        match self {
            Self::Memory(store) => store.compare_and_swap(key, expected_version, new).await,
            Self::Redb(store) => store.compare_and_swap(key, expected_version, new).await,
            Self::Postgres(store) => {
                Box::pin(store.compare_and_swap(key, expected_version, new)).await
            }
        }
    }
}
