//! The write path: merge, validate, check `If-Match`, compare-and-swap; on a lost race, again
//! from the winner's object, queued fairly behind the object's other writers (see
//! [`write_gate`](super::write_gate)). A write that has reached its first compare-and-swap is
//! past the point of no return: it finishes and is audited even if its request times out.

use super::conditional::{Precondition, etag_text};
use super::reply::{Reply, serialization_failed};
use super::{Config, SecurityUpdateService};
use crate::audit::AuditRecord;
use crate::auth::Principal;
use crate::error::{ErrorKind, GraphError};
use crate::merge_patch::{MergePatch, apply_to_object};
use crate::store::{ObjectKey, SecurityStore, Snapshot, SwapOutcome};
use crate::timeout::WriteDeadline;

/// A validated write request, ready for the store.
pub(crate) struct Write {
    pub(crate) key: ObjectKey,
    pub(crate) actor: Principal,
    pub(crate) patch: MergePatch,
    pub(crate) precondition: Precondition,
    pub(crate) minimal: bool,
    pub(crate) deadline: Option<WriteDeadline>,
}

impl<S: SecurityStore> SecurityUpdateService<S> {
    /// The patch is moved into the first attempt and re-parsed from its raw bytes only when a
    /// race is lost.
    pub(crate) async fn write(&self, write: Write) -> Result<Reply, GraphError> {
        let Write {
            key,
            actor,
            patch,
            precondition,
            minimal,
            deadline,
        } = write;
        let config: &Config = &self.config;
        let raw = patch.raw().clone();
        let mut patch = Some(patch.into_document());
        // Queue behind writers already queueing for this object.
        let mut gate = if config.gates.is_busy(&key) {
            Some(config.gates.enter(&key).await)
        } else {
            None
        };
        let mut current = self.load_or_default(&key).await?;
        for _ in 0..config.max_attempts {
            let document = match patch.take() {
                Some(document) => document,
                None => MergePatch::parse(raw.clone(), usize::MAX)?.into_document(),
            };
            let mut candidate = current.document().clone();
            apply_to_object(&mut candidate, document);
            config
                .schema
                .check_merged(&mut candidate, current.document())?;
            precondition.check(&current)?;
            let next = Snapshot::new(current.version() + 1, candidate)
                .map_err(|_| serialization_failed())?;
            // The point of no return: past here the write is never answered 408.
            if let Some(deadline) = &deadline {
                deadline.begin_write()?;
            }
            match self
                .store
                .compare_and_swap(&key, current.version(), next.clone())
                .await
            {
                Ok(SwapOutcome::Swapped) => {
                    if config.audit.enabled() {
                        config.audit.record(&AuditRecord::accepted(
                            &actor,
                            &key,
                            etag_text(&current),
                            etag_text(&next),
                            String::from_utf8_lossy(&raw).into_owned(),
                        ));
                    }
                    return Ok(Reply {
                        snapshot: next,
                        minimal,
                    });
                }
                Ok(SwapOutcome::Conflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
            // Lost a race. Queue at the object's gate (once) so that retries are fair, or at
            // least let the other tasks on this thread run (tokio's yield: a task that wakes
            // itself lands in tokio's LIFO slot and is polled again at once, which yields
            // nothing); then start again from what is current by then.
            if gate.is_none() {
                gate = Some(config.gates.enter(&key).await);
            } else {
                tokio::task::yield_now().await;
            }
            current = self.load_or_default(&key).await?;
        }
        Err(GraphError::new(
            ErrorKind::ServiceUnavailable,
            "The object is being updated by too many writers at once; retry later.",
        )
        .with_retry_after(1))
    }
}
