//! The slot behind a reloadable schema ([`ResourceSchema::reloadable`]): what replaces the
//! schema in it, and how a check takes the schema in effect.

use std::sync::{Arc, PoisonError, RwLock};

use super::ResourceSchema;

/// Replaces the schema behind a [`ResourceSchema::reloadable`]; clones share the slot.
#[derive(Clone)]
pub struct SchemaReloader {
    pub(super) slot: Arc<RwLock<Arc<ResourceSchema>>>,
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
        let schema = Arc::new(schema.resolved());
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        let replaced = std::mem::replace(&mut *slot, schema);
        drop(slot);
        // Dropped once the lock is free (if no check holds it still): a compiled JSON Schema
        // can take a while to free.
        drop(replaced);
    }
}

/// The schema a slot holds now, for one check (or one write's checks,
/// [`ResourceSchema::in_effect`]). The slot holds it in an `Arc`, and the read lock is held
/// only to count one more holder: three atomic instructions and a drop, where cloning the
/// schema itself out (two `Arc`s inside) was six. Holding the lock for the whole check was
/// fewer still, but a reload then waited for the checks under way while checks that started
/// meanwhile waited behind it (`std`'s lock lets a waiting writer in first), stalling worker
/// threads for as long as the longest check. A reload here waits only for those counts.
pub(super) fn current(slot: &RwLock<Arc<ResourceSchema>>) -> Arc<ResourceSchema> {
    slot.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// [`ResourceSchema::in_effect`]: the schema itself, or what its slot held when asked.
pub(crate) enum InEffect<'a> {
    Itself(&'a ResourceSchema),
    Taken(Arc<ResourceSchema>),
}

impl std::ops::Deref for InEffect<'_> {
    type Target = ResourceSchema;

    fn deref(&self) -> &ResourceSchema {
        match self {
            Self::Itself(schema) => schema,
            Self::Taken(schema) => schema,
        }
    }
}
