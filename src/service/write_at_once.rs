//! The first attempt of a write, or a read, made within `call` when the store answers at once
//! ([`AtOnce`]): the same steps, in the same order, as the async path of
//! [`write`](super::write), without its state machine. What would wait goes on in the
//! response future from where this left it: an object whose writers queue, a merge big
//! enough for the blocking pool, a lost race.

use super::conditional::Precondition;
use super::reply::{Reply, default_snapshot};
use super::write::{
    OFF_THE_WORKERS_FROM, Resumed, Write, begin_write, changes, next_snapshot, preconditions_hold,
};
use super::{Config, SecurityUpdateService};
use crate::error::GraphError;
use crate::observe::{StoreOperation, timed_now};
use crate::odata::representation::Representation;
use crate::store::{AtOnce, ObjectKey, SecurityStore, Snapshot, SwapOutcome};

/// What an attempt made at once came to, unless refused.
pub(crate) enum AtOnceOutcome {
    /// The answer (a refusal is the `Err` beside this).
    Answered(Reply),
    /// The write has to wait: it goes on in the response future, from `Resumed`.
    GoesOn(Write, Resumed),
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// The write's first attempt, on this thread. `Err` is the answer too: a refusal.
    pub(crate) fn write_at_once(
        &self,
        store: &dyn AtOnce,
        write: Write,
    ) -> Result<AtOnceOutcome, GraphError> {
        let config: &Config = &self.shared.config;
        if let Some(deadline) = &write.deadline {
            deadline.check()?;
        }
        if config.gates.is_fair(&write.key) {
            return Ok(AtOnceOutcome::GoesOn(write, Resumed::default()));
        }
        let current = self.load_at_once(store, &write.key)?;
        preconditions_hold(&write, &current)?;
        if write.patch.raw().len() + current.json().len() >= OFF_THE_WORKERS_FROM {
            let resumed = Resumed {
                loaded: Some(current),
                ..Resumed::default()
            };
            return Ok(AtOnceOutcome::GoesOn(write, resumed));
        }
        let limit = config.max_object_bytes;
        let next = next_snapshot(&config.schema, &current, &write.patch, limit)?;
        if !changes(&current, &next) {
            let reply = Reply::of(current, write.minimal, write.representation);
            return Ok(AtOnceOutcome::Answered(reply));
        }
        let observer = config.observer.as_ref();
        let kind = self.shared.store.kind();
        if current.version() == 0 {
            let count = || store.count_tenant_at_once(write.key.tenant_id());
            config.check_tenant_quota(timed_now(
                observer,
                kind,
                StoreOperation::CountTenant,
                count,
            )?)?;
        }
        let mut started = false;
        begin_write(&write, &mut started)?;
        let swap = || store.compare_and_swap_at_once(&write.key, current.version(), next.clone());
        match timed_now(observer, kind, StoreOperation::CompareAndSwap, swap)? {
            SwapOutcome::Swapped => {
                config.audit_accepted(&write, &current, &next);
                let reply = Reply::of(next, write.minimal, write.representation);
                Ok(AtOnceOutcome::Answered(reply))
            }
            SwapOutcome::Conflict { .. } => {
                if let Some(observer) = observer {
                    observer.write_conflict();
                }
                let resumed = Resumed {
                    losses: 1,
                    started,
                    loaded: None,
                };
                Ok(AtOnceOutcome::GoesOn(write, resumed))
            }
        }
    }

    /// A read, on this thread: as the async [`read`](Self::read).
    pub(crate) fn read_at_once(
        &self,
        store: &dyn AtOnce,
        key: &ObjectKey,
        representation: Representation,
        (if_match, if_none_match): &(Precondition, Precondition),
        head: bool,
    ) -> Result<Reply, GraphError> {
        let snapshot = self.load_at_once(store, key)?;
        Self::read_reply(snapshot, representation, if_match, if_none_match, head)
    }

    fn load_at_once(&self, store: &dyn AtOnce, key: &ObjectKey) -> Result<Snapshot, GraphError> {
        let observer = self.shared.config.observer.as_ref();
        let load = || store.load_at_once(key);
        match timed_now(
            observer,
            self.shared.store.kind(),
            StoreOperation::Load,
            load,
        ) {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => default_snapshot(key),
            Err(error) => Err(error.into()),
        }
    }
}
