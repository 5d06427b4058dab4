//! [`RedbStore`]: the embedded, durable default store of the server.
//!
//! One redb file in a data directory. Saves are committed with redb's default immediate
//! durability (fsync) before the service answers, so an acknowledged PATCH survives `kill -9`
//! and power loss; the saves waiting at the same moment share one transaction and one fsync
//! (group commit, on a committer thread of the store's own: see `group_commit`). redb allows
//! one writer process per file: a second server on the same directory fails to start with
//! [`RedbOpenError::InUse`].
//!
//! Reads are short and run inline; writes wait on the committer without holding a worker. A
//! writer on a multi-thread tokio runtime of one worker hears its commit's outcome from a task
//! the committer spawns there (one wake-up a commit for all its writers); if the runtime has
//! not run that task 0.1 s after the commit (its worker blocked), the committer answers it
//! itself. Other writers hear from the committer directly.

mod answers;
mod group_commit;
mod queue;
mod read_cache;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{ObjectKey, SecurityStore, Snapshot, StoreError, StoreErrorKind, SwapOutcome};
use group_commit::GroupCommit;
use read_cache::ReadCache;

/// (tenant, user) → (version, document JSON).
const OBJECTS: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("objects");
/// tenant → number of objects, kept in the same transaction as each first save.
const TENANTS: TableDefinition<&str, u64> = TableDefinition::new("tenants");
/// Store metadata; `format` is the layout version (1: objects; 2: and tenant counts).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT: u64 = 2;
const FILE_NAME: &str = "security-update.redb";
/// Written beside the file once a store exists in the directory: a later start that finds the
/// marker but no file, or an empty one (a failed restore, a truncation), refuses to start
/// instead of silently serving an empty store.
const MARKER_NAME: &str = "security-update.store";

/// Why a data directory could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedbOpenError {
    /// Another process (another server) has the data directory open.
    InUse(PathBuf),
    /// The directory or file could not be created or read.
    Io(PathBuf, std::io::Error),
    /// The file is not a store of this crate, or of a newer layout.
    Incompatible(PathBuf, String),
    /// The directory held a store whose file is now missing or empty.
    Damaged(PathBuf, String),
}

impl std::fmt::Display for RedbOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InUse(path) => write!(
                f,
                "data directory {} is in use by another security-update-server process",
                path.display()
            ),
            Self::Io(path, error) => {
                write!(f, "cannot open data directory {}: {error}", path.display())
            }
            Self::Damaged(path, why) => write!(
                f,
                "data directory {} held a store, but {why}; restore it from a backup (or remove \
                 the directory to start empty)",
                path.display()
            ),
            Self::Incompatible(path, why) => {
                write!(
                    f,
                    "data directory {} holds an incompatible store: {why}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for RedbOpenError {}

/// Writes the marker durably (file, then directory).
fn write_marker(marker: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(marker)?;
    file.write_all(format!("security-update store, format {FORMAT}\n").as_bytes())?;
    file.sync_all()?;
    if let Some(dir) = marker.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A durable store in one redb file; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: Arc<Path>,
    /// Where every compare-and-swap goes (see [`group_commit`]).
    committer: Arc<GroupCommit>,
    /// Objects recently read or committed (see [`read_cache`]).
    cache: Arc<ReadCache>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store in directory `dir`.
    ///
    /// # Errors
    /// [`RedbOpenError::InUse`] when another process holds it; I/O and layout errors otherwise.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, RedbOpenError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| RedbOpenError::Io(dir.clone(), e))?;
        let file = dir.join(FILE_NAME);
        let marker = dir.join(MARKER_NAME);
        let held_a_store = marker.exists();
        match std::fs::metadata(&file) {
            Ok(meta) if meta.len() == 0 => {
                return Err(RedbOpenError::Damaged(
                    dir,
                    format!("its file {FILE_NAME} is empty"),
                ));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && held_a_store => {
                return Err(RedbOpenError::Damaged(
                    dir,
                    format!("its file {FILE_NAME} is missing"),
                ));
            }
            _ => {}
        }
        let db = Database::create(&file).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => RedbOpenError::InUse(dir.clone()),
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                RedbOpenError::Io(dir.clone(), io)
            }
            other => RedbOpenError::Incompatible(dir.clone(), other.to_string()),
        })?;
        migrate(&db).map_err(|why| RedbOpenError::Incompatible(dir.clone(), why))?;
        if !held_a_store {
            write_marker(&marker).map_err(|e| RedbOpenError::Io(dir.clone(), e))?;
        }
        let db = Arc::new(db);
        let cache = Arc::new(ReadCache::new());
        let committer = GroupCommit::start(db.clone(), cache.clone())
            .map_err(|e| RedbOpenError::Io(dir.clone(), e))?;
        Ok(Self {
            db,
            path: Arc::from(dir),
            committer: Arc::new(committer),
            cache,
        })
    }

    /// The data directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the whole store, as of one moment, into the new data
    /// directory `target` (which must not exist yet), while the store keeps serving: open
    /// `target` with [`RedbStore::open`] (the server's `--data`) to start from it.
    ///
    /// The copy is made in `target` with a `.partial` suffix and renamed into place only when
    /// complete and on disk, so `target` never holds half a backup. Blocking: call it from a
    /// blocking thread. It reads under one read transaction, so writers are not held up.
    ///
    /// # Errors
    /// When `target` exists, or any read, write or sync fails (nothing is left at `target`).
    pub fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        let failed = |what: &str, error: &dyn std::fmt::Display| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("backup to {}: {what}: {error}", target.display()),
            )
        };
        if target.exists() {
            return Err(failed("the target", &"already exists"));
        }
        let mut partial = target.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .map_err(|e| failed("removing an old partial copy", &e))?;
        }
        std::fs::create_dir_all(&partial).map_err(|e| failed("creating the directory", &e))?;
        let copied = self.copy_into(&partial.join(FILE_NAME));
        let finished = copied.and_then(|()| {
            write_marker(&partial.join(MARKER_NAME)).map_err(|e| failed("the marker", &e))?;
            std::fs::rename(&partial, target).map_err(|e| failed("renaming into place", &e))?;
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|e| failed("syncing the parent directory", &e))?;
            }
            Ok(())
        });
        if finished.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        finished
    }

    /// Copies every table, as of one read transaction, into a new database at `file`.
    fn copy_into(&self, file: &Path) -> Result<(), StoreError> {
        let read = self.db.begin_read().map_err(storage)?;
        let copy = Database::create(file).map_err(storage)?;
        let write = copy.begin_write().map_err(storage)?;
        {
            let objects = read.open_table(OBJECTS).map_err(storage)?;
            let mut into = write.open_table(OBJECTS).map_err(storage)?;
            for entry in objects.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                into.insert(key.value(), value.value()).map_err(storage)?;
            }
            let tenants = read.open_table(TENANTS).map_err(storage)?;
            let mut into = write.open_table(TENANTS).map_err(storage)?;
            for entry in tenants.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                into.insert(key.value(), value.value()).map_err(storage)?;
            }
            let meta = read.open_table(META).map_err(storage)?;
            let mut into = write.open_table(META).map_err(storage)?;
            for entry in meta.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                into.insert(key.value(), value.value()).map_err(storage)?;
            }
        }
        // redb commits durably (fsync) by default.
        write.commit().map_err(storage)
    }

    fn load_now(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        let read = self.db.begin_read().map_err(storage)?;
        let table = read.open_table(OBJECTS).map_err(storage)?;
        let Some(entry) = table
            .get((key.tenant_id(), key.user_id()))
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let (version, json) = entry.value();
        Snapshot::from_json(version, Bytes::copy_from_slice(json))
            .map(Some)
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("stored object is not JSON: {e}"),
                )
            })
    }
}

/// Brings the file to layout [`FORMAT`]: 1 had no tenant counts (they are counted once, in
/// the same transaction that marks the file 2, so an older build refuses it from then on
/// instead of writing objects without counting them).
fn migrate(db: &Database) -> Result<(), String> {
    let error = |e: &dyn std::fmt::Display| e.to_string();
    let write = db.begin_write().map_err(|e| error(&e))?;
    {
        let mut meta = write.open_table(META).map_err(|e| error(&e))?;
        let format = meta
            .get("format")
            .map_err(|e| error(&e))?
            .map(|v| v.value());
        let objects = write.open_table(OBJECTS).map_err(|e| error(&e))?;
        let mut tenants = write.open_table(TENANTS).map_err(|e| error(&e))?;
        match format {
            None => {}
            Some(1) => {
                let mut counts: std::collections::HashMap<String, u64> = Default::default();
                for entry in objects.iter().map_err(|e| error(&e))? {
                    let (key, _) = entry.map_err(|e| error(&e))?;
                    *counts.entry(key.value().0.to_owned()).or_default() += 1;
                }
                for (tenant, count) in counts {
                    tenants
                        .insert(tenant.as_str(), count)
                        .map_err(|e| error(&e))?;
                }
            }
            Some(FORMAT) => return Ok(()),
            Some(other) => {
                return Err(format!("layout version {other}, this build reads {FORMAT}"));
            }
        }
        meta.insert("format", FORMAT).map_err(|e| error(&e))?;
    }
    write.commit().map_err(|e| error(&e))
}

/// I/O trouble (a full or failing disk) may pass: 503. Anything else from redb is a 500.
fn storage(error: impl Into<redb::Error>) -> StoreError {
    let error: redb::Error = error.into();
    let kind = match &error {
        // Both mean the file cannot take writes until it is opened again.
        redb::Error::Io(_) | redb::Error::PreviousIo => StoreErrorKind::Unavailable,
        redb::Error::Corrupted(_) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Other,
    };
    StoreError::new(kind, format!("redb: {error}"))
}

impl SecurityStore for RedbStore {
    fn kind(&self) -> &'static str {
        "redb"
    }

    /// `Err` once the committer has stopped (a commit panicked or failed): every write would
    /// fail.
    fn writable(&self) -> Result<(), StoreError> {
        self.committer.running()
    }

    async fn count_tenant(&self, tenant_id: &str) -> Result<Option<u64>, StoreError> {
        let read = self.db.begin_read().map_err(storage)?;
        let tenants = match read.open_table(TENANTS) {
            Ok(tenants) => tenants,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Some(0)),
            Err(error) => return Err(storage(error)),
        };
        Ok(Some(
            tenants
                .get(tenant_id)
                .map_err(storage)?
                .map_or(0, |count| count.value()),
        ))
    }

    async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
        match self.cache.get(key) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(ticket) => {
                let loaded = self.load_now(key)?;
                if let Some(snapshot) = &loaded {
                    self.cache.fill(&ticket, key, snapshot);
                }
                Ok(loaded)
            }
        }
    }

    async fn compare_and_swap(
        &self,
        key: &ObjectKey,
        expected_version: u64,
        new: Snapshot,
    ) -> Result<SwapOutcome, StoreError> {
        self.committer
            .swap(key.clone(), expected_version, new)
            .await
    }
}
