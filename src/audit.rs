//! The audit trail: one record for every accepted change, and one for every refused attempt at
//! another user's object, through a pluggable [`AuditSink`]. [`TracingAudit`] (the default)
//! writes them as `tracing` events with target `security_update::audit`.
//!
//! A record says who (tenant, object id, app id), when, which object, what (the patch as the
//! caller sent it) and the `ETag` before and after. It never holds the token.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use security_update::audit::{AuditRecord, AuditSink};
//!
//! #[derive(Debug, Default)]
//! struct Collect(Mutex<Vec<AuditRecord>>);
//!
//! impl AuditSink for Collect {
//!     fn record(&self, record: &AuditRecord) {
//!         self.0.lock().unwrap().push(record.clone());
//!     }
//! }
//!
//! let service = security_update::StackBuilder::new(security_update::MemoryStore::new())
//!     .with_audit(Arc::new(Collect::default()))
//!     .into_service();
//! # let _ = service;
//! ```

use std::fmt::Debug;

/// Longest patch text an audit record carries; longer ones are cut, with their size and a
/// digest. A 1 MiB patch must not write 1 MiB of log per accepted request.
pub const MAX_AUDITED_PATCH: usize = 2048;

/// FNV-1a, 64 bits: a stable digest to tell cut patches apart in logs (not a security hash).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
use std::time::SystemTime;

use crate::auth::{Principal, PrincipalKind};
use crate::store::ObjectKey;

/// What happened.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutcome {
    /// The change was saved.
    Accepted {
        /// The object's `ETag` before the change.
        etag_before: String,
        /// Its `ETag` after.
        etag_after: String,
        /// The merge patch as parsed, compactly re-serialized (never the raw bytes, whose
        /// whitespace a caller controls), cut at [`MAX_AUDITED_PATCH`] bytes with its full size
        /// and a digest when longer.
        patch: String,
    },
    /// The caller was refused access to this object.
    Denied {
        /// The status answered (403, ...).
        status: u16,
        /// Why.
        reason: String,
    },
}

/// One audited event.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it happened.
    pub at: SystemTime,
    /// The caller's tenant.
    pub actor_tenant_id: String,
    /// The caller's object id (a user, or an application's service principal).
    pub actor_object_id: String,
    /// The caller's application id, when the token named one.
    pub actor_app_id: Option<String>,
    /// Delegated user or application.
    pub actor_kind: PrincipalKind,
    /// The object acted on, or attempted: its tenant.
    pub target_tenant_id: String,
    /// The object acted on, or attempted: its user, as requested (lowercased when a GUID).
    pub target_user: String,
    /// What happened.
    pub outcome: AuditOutcome,
}

/// An accepted change, by reference: what [`AuditSink::record_accepted`] is given, so that a
/// sink that writes it out at once need not copy the caller's ids, the `ETag`s and the patch
/// into an [`AuditRecord`] first ([`to_record`](Self::to_record) makes that record).
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub struct AcceptedChange<'a> {
    /// When it happened.
    pub at: SystemTime,
    /// Who made it.
    pub actor: &'a Principal,
    /// The object changed.
    pub target: &'a ObjectKey,
    /// The object's `ETag` before the change.
    pub etag_before: &'a str,
    /// Its `ETag` after.
    pub etag_after: &'a str,
    /// The patch, as [`AuditOutcome::Accepted`] holds it: compact, cut when long.
    pub patch: &'a str,
}

impl<'a> AcceptedChange<'a> {
    /// A change, as the service makes one when a write lands (for sinks' tests).
    #[must_use]
    pub fn new(
        at: SystemTime,
        actor: &'a Principal,
        target: &'a ObjectKey,
        (etag_before, etag_after): (&'a str, &'a str),
        patch: &'a str,
    ) -> Self {
        Self {
            at,
            actor,
            target,
            etag_before,
            etag_after,
            patch,
        }
    }

    /// The record of this change, owning its text.
    #[must_use]
    pub fn to_record(&self) -> AuditRecord {
        AuditRecord {
            at: self.at,
            ..AuditRecord::new(
                self.actor,
                self.target.tenant_id(),
                self.target.user_id(),
                AuditOutcome::Accepted {
                    etag_before: self.etag_before.to_owned(),
                    etag_after: self.etag_after.to_owned(),
                    patch: self.patch.to_owned(),
                },
            )
        }
    }
}

impl AuditRecord {
    pub(crate) fn new(
        actor: &Principal,
        target_tenant_id: &str,
        target_user: &str,
        outcome: AuditOutcome,
    ) -> Self {
        Self {
            at: SystemTime::now(),
            actor_tenant_id: actor.tenant_id().to_owned(),
            actor_object_id: actor.object_id().to_owned(),
            actor_app_id: actor.app_id().map(str::to_owned),
            actor_kind: actor.kind(),
            target_tenant_id: target_tenant_id.to_owned(),
            target_user: target_user.to_owned(),
            outcome,
        }
    }

    /// `full` cut at [`MAX_AUDITED_PATCH`] bytes with its size and digest, when longer.
    pub(crate) fn cut_patch(full: &str) -> Option<String> {
        if full.len() <= MAX_AUDITED_PATCH {
            return None;
        }
        let mut cut = MAX_AUDITED_PATCH;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        Some(format!(
            "{}... (cut: {} bytes in all, fnv1a64 {:016x})",
            &full[..cut],
            full.len(),
            fnv1a64(full.as_bytes())
        ))
    }
}

/// Where audit records go. Called synchronously on the request path: keep it quick (hand off
/// to a channel for slow sinks).
///
/// A sink must not panic. An accepted change is recorded after it is stored, so a panic
/// there leaves the change stored and unrecorded whatever happens next; where the request
/// waited for its store, the service answers it 500, and where it did not (a store that
/// answers at once, such as [`MemoryStore`](crate::MemoryStore), and a refused attempt
/// recorded by the preflight) the panic unwinds out of `call` or `poll` as any service's
/// does: put `tower-http`'s `CatchPanicLayer` outside the stack to answer those 500 too.
pub trait AuditSink: Debug + Send + Sync + 'static {
    /// Records one event.
    fn record(&self, record: &AuditRecord);

    /// Records an accepted change. By default, [`record`](Self::record)s its
    /// [`to_record`](AcceptedChange::to_record); a sink that writes the change out at once can
    /// write it from the references instead.
    fn record_accepted(&self, change: &AcceptedChange<'_>) {
        self.record(&change.to_record());
    }

    /// Whether the record of an accepted change is wanted; when not, none is even built. The
    /// service asks before it hands over each accepted change; a refused attempt is recorded
    /// without asking ([`record`](Self::record) filters it, if the sink filters).
    fn enabled(&self) -> bool {
        true
    }
}

/// Audit records as `tracing` events (target `security_update::audit`, level INFO).
///
/// Caller-controlled text (the patch, the requested user, and the caller's ids, which come
/// from token claims) is logged as string values, which text formats quote and escape as
/// `Debug` does, so a newline in it cannot forge a second log line or a field; a JSON format
/// writes them as JSON strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    /// Whether the event of an accepted change would be written: the service asks before it
    /// hands one over. Asked as that event (its field names: a `RUST_LOG` directive may name
    /// fields, `security_update::audit[{reason}]=off`), not as a hint with no fields, which
    /// such a directive would match whatever the event's fields.
    fn enabled(&self) -> bool {
        tracing::event_enabled!(
            target: "security_update::audit",
            tracing::Level::INFO,
            message,
            outcome,
            at,
            actor_tenant,
            actor,
            actor_app,
            target_tenant,
            target_user,
            etag_before,
            etag_after,
            patch
        )
    }

    fn record_accepted(&self, change: &AcceptedChange<'_>) {
        let etags = (change.etag_before, change.etag_after);
        accepted_event(change.at, &Ids::of_change(change), etags, change.patch);
    }

    fn record(&self, record: &AuditRecord) {
        let at = crate::error::utc_timestamp(record.at);
        match &record.outcome {
            AuditOutcome::Accepted {
                etag_before,
                etag_after,
                patch,
            } => accepted_event(
                record.at,
                &Ids::of_record(record),
                (etag_before, etag_after),
                patch,
            ),
            AuditOutcome::Denied { status, reason } => tracing::info!(
                target: "security_update::audit",
                outcome = "denied",
                at,
                actor_tenant = record.actor_tenant_id.as_str(),
                actor = record.actor_object_id.as_str(),
                actor_app = record.actor_app_id.as_deref().unwrap_or("-"),
                target_tenant = record.target_tenant_id.as_str(),
                target_user = record.target_user.as_str(),
                status,
                reason = reason.as_str(),
                "audit"
            ),
        }
    }
}

/// Who acted on which object, as an audit line names them.
struct Ids<'a> {
    actor_tenant: &'a str,
    actor: &'a str,
    actor_app: &'a str,
    target_tenant: &'a str,
    target_user: &'a str,
}

impl<'a> Ids<'a> {
    fn of_record(record: &'a AuditRecord) -> Self {
        Self {
            actor_tenant: &record.actor_tenant_id,
            actor: &record.actor_object_id,
            actor_app: record.actor_app_id.as_deref().unwrap_or("-"),
            target_tenant: &record.target_tenant_id,
            target_user: &record.target_user,
        }
    }

    fn of_change(change: &AcceptedChange<'a>) -> Self {
        Self {
            actor_tenant: change.actor.tenant_id(),
            actor: change.actor.object_id(),
            actor_app: change.actor.app_id().unwrap_or("-"),
            target_tenant: change.target.tenant_id(),
            target_user: change.target.user_id(),
        }
    }
}

/// `TracingAudit`'s event for an accepted change.
fn accepted_event(at: SystemTime, ids: &Ids<'_>, etags: (&str, &str), patch: &str) {
    let at = crate::error::utc_timestamp(at);
    tracing::info!(
        target: "security_update::audit",
        outcome = "accepted",
        at,
        actor_tenant = ids.actor_tenant,
        actor = ids.actor,
        actor_app = ids.actor_app,
        target_tenant = ids.target_tenant,
        target_user = ids.target_user,
        etag_before = %etags.0,
        etag_after = %etags.1,
        patch,
        "audit"
    );
}

#[cfg(test)]
mod bounded_patch_tests {
    use super::*;

    #[test]
    fn the_audited_patch_is_compact_and_bounded() {
        let small =
            crate::MergePatch::parse(bytes::Bytes::from_static(b"{ \"a\" :   1 }"), 8).unwrap();
        assert_eq!(small.compact_text(), r#"{"a":1}"#);
        assert_eq!(AuditRecord::cut_patch(r#"{"a":1}"#), None);
        let big: serde_json::Map<String, serde_json::Value> = (0..10_000)
            .map(|i| (format!("member{i}"), serde_json::Value::from(i)))
            .collect();
        let text = AuditRecord::cut_patch(&serde_json::to_string(&big).unwrap()).unwrap();
        let full = serde_json::to_string(&big).unwrap();
        assert!(text.len() < MAX_AUDITED_PATCH + 80, "{} bytes", text.len());
        assert!(
            text.contains(&format!("{} bytes in all", full.len())),
            "{text}"
        );
        assert!(text.contains("fnv1a64"), "{text}");
    }
}
