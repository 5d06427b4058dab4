//! Where security objects live: one async, versioned compare-and-swap trait and its stores.
//!
//! Every object has a version, starting at 1 when first saved (0 means "never saved"). A write
//! names the version it was computed from; the store saves it only if that is still the current
//! version, and otherwise answers with what is current, so the service can re-apply the patch
//! to the newer object. No update is ever lost, and no store-wide lock is held while a patch is
//! merged or validated.

mod at_once;
mod contract;
mod error;
pub(crate) mod members;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redb")]
pub mod redb;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "redb")]
pub use self::redb::{RedbOpenError, RedbStore};
pub use at_once::AtOnce;
pub use contract::{SecurityStore, SwapOutcome};
pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Map, Value};

/// Which object: a user of a tenant. Both ids are kept ASCII-lowercase, so GUIDs compare
/// case-insensitively.
pub struct ObjectKey {
    /// The tenant id then the user id, in one allocation: a key is built for every request.
    ids: Box<str>,
    /// Where the user id starts in `ids`.
    tenant_len: usize,
    /// [`placement`](Self::placement), made the first time it is asked for; 0 until then.
    /// A plain store, not a once-only initialization (`OnceLock`, two locked instructions a
    /// key): the value depends only on the ids, so two threads making it at once write the
    /// same value.
    placement: AtomicU64,
}

impl Clone for ObjectKey {
    fn clone(&self) -> Self {
        Self {
            ids: self.ids.clone(),
            tenant_len: self.tenant_len,
            placement: AtomicU64::new(self.placement.load(Ordering::Relaxed)),
        }
    }
}

/// Equal ids (the placement, made from them, follows).
impl PartialEq for ObjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.tenant_len == other.tenant_len && self.ids == other.ids
    }
}

impl Eq for ObjectKey {}

/// The keys of [`ObjectKey::placement`]: random per process, as `std`'s maps' are per map.
static PLACEMENT: LazyLock<RandomState> = LazyLock::new(RandomState::new);

impl ObjectKey {
    /// The key of `user_id`'s object in `tenant_id`.
    #[must_use]
    pub fn new(tenant_id: &str, user_id: &str) -> Self {
        let mut ids = String::with_capacity(tenant_id.len() + user_id.len());
        ids.push_str(tenant_id);
        ids.push_str(user_id);
        ids.make_ascii_lowercase();
        Self {
            ids: ids.into_boxed_str(),
            tenant_len: tenant_id.len(),
            placement: AtomicU64::new(0),
        }
    }

    /// Where the stores and caches of this process place the key: a keyed hash of it (`SipHash`
    /// with keys random per process: ids are chosen by callers), made once however many
    /// lookups the key serves (a write looks it up twice: the load, then the swap).
    pub(crate) fn placement(&self) -> u64 {
        match self.placement.load(Ordering::Relaxed) {
            0 => {
                // 0 means "not made yet": a hash of 0 is kept as 1 (one placement in 2^64
                // shared with another; placements only spread keys, equality decides).
                let placement = PLACEMENT.hash_one(self).max(1);
                self.placement.store(placement, Ordering::Relaxed);
                placement
            }
            made => made,
        }
    }

    /// The tenant id, lowercase.
    #[must_use]
    pub fn tenant_id(&self) -> &str {
        &self.ids[..self.tenant_len]
    }

    /// The user's object id, lowercase.
    #[must_use]
    pub fn user_id(&self) -> &str {
        &self.ids[self.tenant_len..]
    }
}

/// Hashed as where the user id starts and how long both ids are, then the ids in one run:
/// whole words first, so the keyed hash of the stores and caches takes the ids without
/// working through its partial block (the derived hash wrote the ids, an end marker, then the
/// number). The lengths come first, so a key hashed inside a larger value (a tuple of a key
/// and a string) stays prefix-free.
impl std::hash::Hash for ObjectKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.tenant_len);
        state.write_usize(self.ids.len());
        state.write(self.ids.as_bytes());
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectKey")
            .field("tenant_id", &self.tenant_id())
            .field("user_id", &self.user_id())
            .finish()
    }
}

/// By tenant, then by user.
impl Ord for ObjectKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.tenant_id(), self.user_id()).cmp(&(other.tenant_id(), other.user_id()))
    }
}

impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One version of an object: the document and its serialized JSON, shared, never mutated.
///
/// Keeping the JSON next to the document means a `GET` answers with bytes already made, and a
/// `PATCH` serializes once for both the store and the response. A version made by a write
/// holds only its JSON and where its members lie: the next write copies the members its patch
/// does not name as bytes, and the document is parsed only if someone asks for it.
#[derive(Clone)]
pub struct Snapshot {
    version: u64,
    json: Bytes,
    parsed: Arc<Parsed>,
}

/// What is known of a snapshot's JSON beyond its bytes, each part made at most once.
#[derive(Default)]
struct Parsed {
    document: OnceLock<Map<String, Value>>,
    /// Where the members lie, noted by the write that made this version. Not a `OnceLock`
    /// made full: setting one is a once-only initialization, two locked instructions on
    /// every write's path (`scripts/atomics.py`).
    written_members: Option<Vec<members::Member>>,
    /// Where the members lie, found the first time asked for (versions not made by a write).
    members: OnceLock<Option<Vec<members::Member>>>,
    /// The members of object values, noted by the write that made this version (none for
    /// other versions: a write indexes what it merges into).
    object_values: members::NotedObjectValues,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("json", &self.json)
            .finish()
    }
}

/// Same version, same bytes: the document is made from the bytes or the bytes from the
/// document, so they agree too.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.json == other.json
    }
}

impl Snapshot {
    /// A snapshot of `document` at `version`.
    ///
    /// # Errors
    /// When `document` cannot be serialized (never, for documents made of JSON values).
    pub fn new(version: u64, document: Map<String, Value>) -> Result<Self, serde_json::Error> {
        let json = Bytes::from(serde_json::to_vec(&document)?);
        Ok(Self::with_document(version, json, document))
    }

    /// A snapshot read back from stored JSON.
    ///
    /// # Errors
    /// When `json` is not a JSON object.
    pub fn from_json(version: u64, json: Bytes) -> Result<Self, serde_json::Error> {
        let document: Map<String, Value> = serde_json::from_slice(&json)?;
        Ok(Self::with_document(version, json, document))
    }

    fn with_document(version: u64, json: Bytes, document: Map<String, Value>) -> Self {
        let parsed = Parsed::default();
        let _ = parsed.document.set(document);
        Self {
            version,
            json,
            parsed: Arc::new(parsed),
        }
    }

    /// A snapshot of JSON this crate just wrote as a compact object, with where its members
    /// lie and those of object values it noted; the document is parsed from it when first
    /// asked for.
    pub(crate) fn from_written(
        version: u64,
        json: Vec<u8>,
        members: Vec<members::Member>,
        object_values: members::NotedObjectValues,
    ) -> Self {
        let parsed = Parsed {
            object_values,
            written_members: Some(members),
            ..Parsed::default()
        };
        Self {
            version,
            json: Bytes::from(json),
            parsed: Arc::new(parsed),
        }
    }

    /// The version: 1 for the first save, one more for each later one; 0 for never saved.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The document.
    ///
    /// # Panics
    /// Never for a snapshot made by [`new`](Self::new), [`from_json`](Self::from_json) or a
    /// write of this crate: their JSON is an object that parsed or was just serialized.
    pub fn document(&self) -> &Map<String, Value> {
        self.try_document()
            .expect("a snapshot's JSON is an object this crate parsed or wrote")
    }

    /// The document, parsed from the JSON the first time it is asked for; the write path uses
    /// this so that a text that does not parse is an error, never an empty object merged into.
    pub(crate) fn try_document(&self) -> Result<&Map<String, Value>, serde_json::Error> {
        if let Some(document) = self.parsed.document.get() {
            return Ok(document);
        }
        let document = serde_json::from_slice(&self.json)?;
        Ok(self.parsed.document.get_or_init(|| document))
    }

    /// Where the top-level members of the JSON lie; `None` if it does not scan as an object,
    /// or names a member twice (a parser keeps one of them; copying bytes would keep both).
    pub(crate) fn members(&self) -> Option<&[members::Member]> {
        if let Some(written) = &self.parsed.written_members {
            return Some(written);
        }
        self.parsed
            .members
            .get_or_init(|| {
                let members = members::index(&self.json)?;
                // Every snapshot not made by a write has its document: the same number of
                // members means no name is there twice.
                let distinct = self.parsed.document.get().map_or(members.len(), Map::len);
                (distinct == members.len()).then_some(members)
            })
            .as_deref()
    }

    /// The members of object values noted when this version was written
    /// ([`members::ObjectValues`]).
    pub(crate) fn object_values(&self) -> &members::ObjectValues {
        &self.parsed.object_values
    }

    /// The document serialized as JSON.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The strong `ETag` of this version.
    pub fn etag(&self) -> HeaderValue {
        etag_of(self.version)
    }
}

pub(crate) fn etag_of(version: u64) -> HeaderValue {
    let mut buffer = [0u8; 22];
    HeaderValue::from_bytes(etag_bytes(version, &mut buffer))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The `ETag` of `version` (`"7"`), written into `buffer`: no allocation.
pub(crate) fn etag_str(version: u64, buffer: &mut [u8; 22]) -> &str {
    // Quotes and decimal digits: ASCII.
    std::str::from_utf8(etag_bytes(version, buffer)).unwrap_or("\"?\"")
}

/// `"<decimal>"` written by hand into a stack buffer: no `format!` on every response.
fn etag_bytes(version: u64, buffer: &mut [u8; 22]) -> &[u8] {
    let mut at = buffer.len() - 1;
    buffer[at] = b'"';
    let mut rest = version;
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    at -= 1;
    buffer[at] = b'"';
    &buffer[at..]
}

#[cfg(test)]
mod tests;
