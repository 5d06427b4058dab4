//! The server's audit trail: the library's audit records as log lines written directly
//! (`direct_lines`), the very lines `TracingAudit` writes through `tracing` (the tests
//! compare them for records of every kind), at a fraction of the cost. An accepted change is
//! written from the references the service hands over (`record_accepted`), without the
//! owned copies of an `AuditRecord`.

use std::time::SystemTime;

use security_update::audit::{AcceptedChange, AuditOutcome, AuditRecord, AuditSink, TracingAudit};
use tracing::Level;

use crate::direct_lines::{DirectLines, Line, field, head};

/// The target and level of the audit trail, as `TracingAudit` logs it: `RUST_LOG` names it.
const TARGET: &str = "security_update::audit";

/// An [`AuditSink`] writing `TracingAudit`'s lines directly.
#[derive(Debug, Clone)]
pub(crate) struct AuditLines {
    lines: DirectLines,
}

impl AuditLines {
    pub(crate) fn new(lines: DirectLines) -> Self {
        Self { lines }
    }

    fn accepted(&self, who: &Who<'_>, etags: (&str, &str), patch: &str) {
        self.lines.write(head!(INFO, TARGET, "audit"), |line| {
            who.write(line, "accepted");
            line.shown(field!("etag_before"), etags.0);
            line.shown(field!("etag_after"), etags.1);
            line.text(field!("patch"), patch);
        });
    }
}

/// The fields every audit line starts with.
struct Who<'a> {
    at: SystemTime,
    actor_tenant: &'a str,
    actor: &'a str,
    actor_app: &'a str,
    target_tenant: &'a str,
    target_user: &'a str,
}

impl Who<'_> {
    fn write(&self, line: &mut Line<'_>, outcome: &str) {
        line.text(field!("outcome"), outcome);
        line.time(field!("at"), self.at);
        line.text(field!("actor_tenant"), self.actor_tenant);
        line.text(field!("actor"), self.actor);
        line.text(field!("actor_app"), self.actor_app);
        line.text(field!("target_tenant"), self.target_tenant);
        line.text(field!("target_user"), self.target_user);
    }
}

impl AuditSink for AuditLines {
    fn enabled(&self) -> bool {
        crate::line_gate::wanted!(target: TARGET, Level::INFO)
    }

    fn record(&self, record: &AuditRecord) {
        // Callers may record without asking `enabled` first (the library's refused-access
        // record does): as `TracingAudit`'s event is, a record is filtered here.
        if !self.enabled() {
            return;
        }
        let who = Who {
            at: record.at,
            actor_tenant: &record.actor_tenant_id,
            actor: &record.actor_object_id,
            actor_app: record.actor_app_id.as_deref().unwrap_or("-"),
            target_tenant: &record.target_tenant_id,
            target_user: &record.target_user,
        };
        match &record.outcome {
            AuditOutcome::Accepted {
                etag_before,
                etag_after,
                patch,
            } => self.accepted(&who, (etag_before, etag_after), patch),
            AuditOutcome::Denied { status, reason } => {
                self.lines.write(head!(INFO, TARGET, "audit"), |line| {
                    who.write(line, "denied");
                    line.number(field!("status"), u64::from(*status));
                    line.text(field!("reason"), reason);
                });
            }
            // An outcome this server does not know yet: as the library logs it.
            _ => TracingAudit.record(record),
        }
    }

    fn record_accepted(&self, change: &AcceptedChange<'_>) {
        // Not asked again (a filter lookup, ~100 instructions a PATCH): the service, this
        // sink's one caller, asks `enabled` before it makes the change.
        let who = Who {
            at: change.at,
            actor_tenant: change.actor.tenant_id(),
            actor: change.actor.object_id(),
            actor_app: change.actor.app_id().unwrap_or("-"),
            target_tenant: change.target.tenant_id(),
            target_user: change.target.user_id(),
        };
        self.accepted(&who, (change.etag_before, change.etag_after), change.patch);
    }
}

#[cfg(test)]
#[path = "audit_lines_tests.rs"]
mod tests;
