//! The slot behind a reloadable schema ([`ResourceSchema::reloadable`]): what replaces the
//! schema in it, and how a check holds the schema in effect.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use super::ResourceSchema;

/// Replaces the schema behind a [`ResourceSchema::reloadable`]; clones share the slot.
#[derive(Clone)]
pub struct SchemaReloader {
    pub(super) slot: Arc<RwLock<ResourceSchema>>,
}

impl std::fmt::Debug for SchemaReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaReloader")
            .field("current", &current(&self.slot))
            .finish()
    }
}

impl SchemaReloader {
    /// Puts `schema` in effect for every check that starts from now on.
    pub fn replace(&self, schema: ResourceSchema) {
        let schema = schema.resolved();
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        let replaced = std::mem::replace(&mut *slot, schema);
        drop(slot);
        // Dropped once the lock is free: a compiled JSON Schema can take a while to free.
        drop(replaced);
    }
}

/// The schema a slot holds now, held for one check (or one write's checks,
/// [`ResourceSchema::in_effect`]) under the slot's read lock. Held rather than cloned out: a
/// clone and its drop were four more atomic instructions a check, eight a write
/// (`scripts/atomics.py`). A replacement waits for the checks under way, and checks that
/// start meanwhile wait behind it (`std`'s lock lets a waiting writer in first): a reload
/// stalls checks for as long as the longest check under way, which is why a merge big enough
/// for the blocking pool takes its schema owned ([`ResourceSchema::in_effect_owned`]). Never
/// taken twice on one thread: the slot holds a schema already resolved, never another
/// reloadable one.
pub(super) fn current(slot: &RwLock<ResourceSchema>) -> RwLockReadGuard<'_, ResourceSchema> {
    slot.read().unwrap_or_else(PoisonError::into_inner)
}

/// [`ResourceSchema::in_effect`]: the schema itself, or what its slot holds, held.
pub(crate) enum InEffect<'a> {
    Itself(&'a ResourceSchema),
    Held(RwLockReadGuard<'a, ResourceSchema>),
}

impl std::ops::Deref for InEffect<'_> {
    type Target = ResourceSchema;

    fn deref(&self) -> &ResourceSchema {
        match self {
            Self::Itself(schema) => schema,
            Self::Held(guard) => guard,
        }
    }
}
