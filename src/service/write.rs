//! The write path: merge, validate, check `If-Match`, compare-and-swap; on a lost race, again
//! from the winner's object, queueing behind the object's other writers after a few losses
//! (see [`write_gate`](super::write_gate)). A write that has reached its first compare-and-swap is
//! past the point of no return: it finishes and is audited even if its request times out. A
//! patch that leaves the object as it is (`{}`, or the stored values again) is a no-op: no
//! store write, no new `ETag`, no audit record, and no object created for a never-stored user.

use super::candidate::{ObjectText, merge_onto_json};
use super::conditional::Precondition;
use super::reply::{Reply, serialization_failed};
use super::write_gate::GateGuard;
use super::{Config, SecurityUpdateService};
use crate::audit::{AcceptedChange, AuditRecord};
use crate::auth::Principal;
use crate::error::{ErrorKind, GraphError};
use crate::merge_patch::{MergePatch, apply_to_object};
use crate::observe::{StoreOperation, timed};
use crate::odata::representation::Representation;
use crate::schema::{InEffect, ResourceSchema};
use crate::store::{ObjectKey, SecurityStore, Snapshot, SwapOutcome, etag_str};
use crate::timeout::WriteDeadline;

/// A validated write request, ready for the store.
pub(crate) struct Write {
    pub(crate) key: ObjectKey,
    pub(crate) actor: Principal,
    /// Shared with the blocking pool for big merges.
    pub(crate) patch: MergePatch,
    pub(crate) precondition: Precondition,
    /// `If-None-Match`.
    pub(crate) unless: Precondition,
    pub(crate) minimal: bool,
    pub(crate) deadline: Option<WriteDeadline>,
    pub(crate) representation: Representation,
}

/// Lost races after which a writer queues at the object's gate: before, it retries at once
/// (after a yield). Queueing costs an async hand-off per writer, and when every writer queues,
/// worker threads park and wake for each write (the contention bench with 8 writers on one
/// object: 0.45 context switches per request and 1.27 of 2 cores busy), so it is kept for
/// writers that keep losing.
const QUEUE_AFTER_LOSSES: u32 = 4;
/// Lost races after which a writer at the gate has every new writer of the object queue
/// behind it, so that it cannot lose forever to newcomers (before the 503 of
/// `DEFAULT_MAX_ATTEMPTS`).
const FAIR_AFTER_LOSSES: u32 = 12;

/// Merges and validations of this many bytes (patch + stored object) or more run on tokio's
/// blocking pool: a megabyte patch must not hold an async worker thread (and every request
/// queued behind it) while it is merged, validated and serialized.
pub(crate) const OFF_THE_WORKERS_FROM: usize = 64 * 1024;

/// The object after `patch`: merged with `current`, validated against `schema`, serialized,
/// and no larger than `max_bytes`; or `current` itself (same version) when the patch changes
/// nothing.
///
/// When the schema judges members one by one (see
/// [`ResourceSchema::checks_members_alone`]) the patch's text is merged onto `current`'s
/// JSON ([`merge_as_text`]); otherwise the patch's document is merged into a parsed copy and
/// validated whole.
pub(crate) fn next_snapshot(
    schema: &ResourceSchema,
    current: &Snapshot,
    patch: &MergePatch,
    max_bytes: usize,
) -> Result<Snapshot, GraphError> {
    let schema = schema.in_effect();
    if let InEffect::Taken(taken) = &schema {
        // The request's patch was checked alone against the schema in effect when it came;
        // a reload since may have put another in: one schema judges the whole write.
        taken.check_patch_alone(patch)?;
    }
    let next = match merge_as_text(&schema, current, patch)? {
        Some(next) => next,
        None => {
            let stored = current.try_document().map_err(|_| {
                GraphError::new(ErrorKind::Internal, "the stored object could not be read")
            })?;
            let mut candidate = stored.clone();
            apply_to_object(&mut candidate, patch.document().clone());
            schema.check_merged(&mut candidate, stored)?;
            Snapshot::new(current.version() + 1, candidate).map_err(|_| serialization_failed())?
        }
    };
    // Equal bytes are equal objects: merging keeps the stored members' order and spelling.
    if next.json() == current.json() {
        return Ok(current.clone());
    }
    if next.json().len() > max_bytes {
        return Err(GraphError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "The object would be {} bytes after this patch, over the limit of {max_bytes} bytes; remove members instead.",
                next.json().len()
            ),
        ));
    }
    Ok(next)
}

/// The next version merged from the patch's JSON text onto `current`'s JSON
/// ([`merge_onto_json`]: no `serde_json::Value` of either), with only the members the patch
/// sets checked; `None` when that does not apply: the schema judges members together, the
/// patch names `id`, `@odata.type` or a read-only property (compared with the stored
/// object), or either text does not index (then the parsed path decides).
fn merge_as_text(
    schema: &ResourceSchema,
    current: &Snapshot,
    patch: &MergePatch,
) -> Result<Option<Snapshot>, GraphError> {
    let (Some(members), Some(text), Some(names)) =
        (current.members(), patch.text(), patch.plain_names())
    else {
        return Ok(None);
    };
    if !schema.checks_members_alone(names) {
        return Ok(None);
    }
    let stored = ObjectText {
        json: current.json(),
        members,
        object_values: current.object_values(),
        compact: false,
    };
    let patch = ObjectText {
        json: patch.text_json(),
        members: &text.members,
        object_values: &text.object_values,
        compact: text.compact,
    };
    let Ok(merged) = merge_onto_json(&stored, &patch) else {
        return Ok(None);
    };
    schema.check_members(&merged.json, &merged.touched, &merged.object_values)?;
    Ok(Some(Snapshot::from_written(
        current.version() + 1,
        merged.json,
        merged.members,
        merged.object_values,
    )))
}

/// Runs `work` on tokio's blocking pool (in place outside a runtime).
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GraphError> + Send + 'static,
) -> Result<T, GraphError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
        Err(GraphError::new(
            ErrorKind::Internal,
            "merging the patch failed unexpectedly",
        ))
    })
}

/// Where a write stands when it goes on asynchronously: the races it lost, whether it has passed
/// the point of no return (its first compare-and-swap), and the object it loaded, if it
/// stopped before merging (a merge for the blocking pool): not loaded, nor counted, twice.
#[derive(Debug, Default)]
pub(crate) struct Resumed {
    pub(crate) losses: u32,
    pub(crate) started: bool,
    pub(crate) loaded: Option<Snapshot>,
}

/// 412 unless the request's preconditions hold for `current`: checked before the patch is
/// applied to it, since a server evaluates preconditions "just before it would process the
/// request content" (RFC 9110 §13.2.2), so a stale `If-Match` is 412 whatever the patch
/// would have come to (a 400 from the schema, a 413 from the object's size).
pub(crate) fn preconditions_hold(write: &Write, current: &Snapshot) -> Result<(), GraphError> {
    write.precondition.check(current)?;
    write.unless.check_none_match(current)
}

/// Whether `next` changes the object. A patch that changes nothing writes nothing: the answer
/// is the current object with its current `ETag`, and no audit record (nothing changed), as
/// Kubernetes answers a no-op patch without a new resourceVersion.
pub(crate) fn changes(current: &Snapshot, next: &Snapshot) -> bool {
    next.version() != current.version()
}

/// The point of no return: past here the write is never answered 408.
pub(crate) fn begin_write(write: &Write, started: &mut bool) -> Result<(), GraphError> {
    if let Some(deadline) = &write.deadline {
        deadline.begin_write(*started)?;
        *started = true;
    }
    Ok(())
}

/// 503 once every attempt lost its race.
#[cold]
pub(crate) fn too_many_writers() -> GraphError {
    GraphError::new(
        ErrorKind::ServiceUnavailable,
        "The object is being updated by too many writers at once; retry later.",
    )
    .with_retry_after(1)
}

impl Config {
    /// 507 when the tenant already has `count` objects, as many as it may. Concurrent first
    /// saves in one tenant may overshoot the limit by their number; the bound is on growth,
    /// not exact. `None`: the store does not count, and no quota applies.
    pub(crate) fn check_tenant_quota(&self, count: Option<u64>) -> Result<(), GraphError> {
        let limit = self.max_objects_per_tenant;
        match count {
            Some(count) if count >= limit => Err(GraphError::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "The tenant already has {count} security objects, the limit of \
                     {limit}; existing objects can still be updated."
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The audit record of a write that landed (when the audit sink wants it), handed to the
    /// sink by reference: a sink that writes it out at once copies nothing first.
    pub(crate) fn audit_accepted(&self, write: &Write, current: &Snapshot, next: &Snapshot) {
        if !self.audit.enabled() {
            return;
        }
        let (mut before, mut after) = ([0; 22], [0; 22]);
        let patch = write.patch.compact_text();
        let cut = AuditRecord::cut_patch(&patch);
        self.audit.record_accepted(&AcceptedChange::new(
            std::time::SystemTime::now(),
            &write.actor,
            &write.key,
            (
                etag_str(current.version(), &mut before),
                etag_str(next.version(), &mut after),
            ),
            cut.as_deref().unwrap_or(&patch),
        ));
        if let Some(observer) = &self.observer {
            observer.audit_written();
        }
    }
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// The patch is kept for every attempt: a lost race merges the same text again onto the
    /// winner's object. `resumed` is where an attempt made at once
    /// ([`write_at_once`](Self::write_at_once)) left the write.
    ///
    /// An `async` block owning the service (two `Arc`s) rather than an `async fn` of `&self`:
    /// an `async fn` keeps each argument twice in its state (as passed, and as the local it is
    /// moved to; the block still does so for `resumed`, which it takes apart, but no longer for
    /// the 200-byte `write`), and a borrowing future could not be boxed beside the service it
    /// borrows.
    /// This future is boxed for every write that awaits its store (`-Zprint-type-sizes`:
    /// 1,080 bytes as an `async fn`).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn holds its arguments twice (above)"
    )]
    pub(crate) fn write(
        self,
        write: Write,
        resumed: Resumed,
    ) -> impl std::future::Future<Output = Result<Reply, GraphError>> + Send {
        async move {
            let config: &Config = &self.shared.config;
            if let Some(deadline) = &write.deadline {
                deadline.check()?;
            }
            let key = &write.key;
            let Resumed {
                mut losses,
                mut started,
                loaded,
            } = resumed;
            // Queue behind writers already queueing for this object, if one of them has waited
            // too long.
            let mut gate = if config.gates.is_fair(key) {
                Some(config.gates.enter(key).await)
            } else {
                None
            };
            if losses > 0 {
                self.after_a_loss(&mut gate, key, losses).await;
            }
            // What an attempt made at once loaded, unless the object's gate was waited for since.
            let mut current = match loaded {
                Some(loaded) if gate.is_none() => loaded,
                _ => self.load_or_default(key).await?,
            };
            // A race lost at once counts as an attempt.
            while losses < config.max_attempts {
                preconditions_hold(&write, &current)?;
                let limit = config.max_object_bytes;
                let next = if write.patch.raw().len() + current.json().len() >= OFF_THE_WORKERS_FROM
                {
                    let (schema, base, patch) =
                        (config.schema.clone(), current.clone(), write.patch.clone());
                    off_the_workers(move || next_snapshot(&schema, &base, &patch, limit)).await?
                } else {
                    next_snapshot(&config.schema, &current, &write.patch, limit)?
                };
                if !changes(&current, &next) {
                    return Ok(Reply::of(current, write.minimal, write.representation));
                }
                // A first save creates an object: the tenant's quota must have room for it.
                if current.version() == 0 {
                    let count = self.shared.store.count_tenant(key.tenant_id());
                    let observer = config.observer.as_ref();
                    let kind = self.shared.store.kind();
                    let count = timed(observer, kind, StoreOperation::CountTenant, count).await?;
                    config.check_tenant_quota(count)?;
                }
                begin_write(&write, &mut started)?;
                let swap = self
                    .shared
                    .store
                    .compare_and_swap(key, current.version(), next.clone());
                let observer = config.observer.as_ref();
                match timed(
                    observer,
                    self.shared.store.kind(),
                    StoreOperation::CompareAndSwap,
                    swap,
                )
                .await
                {
                    Ok(SwapOutcome::Swapped) => {
                        config.audit_accepted(&write, &current, &next);
                        return Ok(Reply::of(next, write.minimal, write.representation));
                    }
                    Ok(SwapOutcome::Conflict { .. }) => {
                        if let Some(observer) = observer {
                            observer.write_conflict();
                        }
                    }
                    Err(error) => return Err(error.into()),
                }
                losses += 1;
                self.after_a_loss(&mut gate, key, losses).await;
                current = self.load_or_default(key).await?;
            }
            Err(too_many_writers())
        }
    }

    /// After a lost race: let the other tasks on this thread run (tokio's yield: a task that
    /// wakes itself lands in tokio's LIFO slot and is polled again at once, which yields
    /// nothing); after a few losses queue at the object's gate, so that losers retry one at a
    /// time; after many, have every new writer queue too (see `write_gate`). The caller then
    /// starts again from what is current by then.
    async fn after_a_loss<'a>(
        &'a self,
        gate: &mut Option<GateGuard<'a>>,
        key: &ObjectKey,
        losses: u32,
    ) {
        match gate {
            None if losses >= QUEUE_AFTER_LOSSES => {
                *gate = Some(self.shared.config.gates.enter(key).await);
            }
            Some(held) if losses >= FAIR_AFTER_LOSSES => {
                held.insist_on_fairness();
                tokio::task::yield_now().await;
            }
            _ => tokio::task::yield_now().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema replaced between a request's arrival and its write: the write is judged by
    /// one schema, the one in effect when it starts, its patch's names included. Graph's
    /// schema refuses every other name, so a patch that removes one is refused, as it would
    /// be had it come after the replacement; before it, the same write removes the member.
    /// Both kinds of patch: names all plain (checked by name), and one naming `@odata.type`
    /// (checked as a parsed document).
    #[test]
    fn a_write_checks_its_patch_again_under_the_schema_that_judges_it() {
        let current = super::super::reply::default_snapshot(&ObjectKey::new("t", "u")).unwrap();
        let mut document = current.document().clone();
        document.insert("x".into(), 1.into());
        let current = Snapshot::new(1, document).unwrap();
        for text in [
            r#"{"x":null}"#,
            r##"{"@odata.type":"#microsoft.graph.security.security","x":null}"##,
        ] {
            let patch = MergePatch::parse(bytes::Bytes::from(text), 64).unwrap();
            let (schema, reloader) = ResourceSchema::open_type().reloadable();
            schema.check_patch_alone(&patch).unwrap();
            let next = next_snapshot(&schema, &current, &patch, 1 << 20).unwrap();
            assert!(
                next.document().get("x").is_none(),
                "{text}: removed under the open type"
            );

            reloader.replace(ResourceSchema::graph());
            let refused = next_snapshot(&schema, &current, &patch, 1 << 20).unwrap_err();
            assert_eq!(refused.status(), http::StatusCode::BAD_REQUEST, "{text}");
            assert!(
                refused.message().contains("'x'"),
                "{text}: {}",
                refused.message()
            );
        }
    }
}
