//! The server's audit trail: the library's audit records as log lines written directly
//! (`direct_lines`), the very lines `TracingAudit` writes through `tracing` (the tests
//! compare them for records of every kind), at a fraction of the cost.

use security_update::audit::{AuditOutcome, AuditRecord, AuditSink, TracingAudit};
use tracing::Level;

use crate::direct_lines::DirectLines;

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
}

impl AuditSink for AuditLines {
    fn enabled(&self) -> bool {
        tracing::enabled!(target: TARGET, Level::INFO)
    }

    fn record(&self, record: &AuditRecord) {
        // Callers may record without asking `enabled` first (the library's refused-access
        // record does): as `TracingAudit`'s event is, a record is filtered here.
        if !self.enabled() {
            return;
        }
        let common = |line: &mut crate::direct_lines::Line<'_>, outcome: &str| {
            line.text("outcome", outcome);
            line.time("at", record.at);
            line.text("actor_tenant", &record.actor_tenant_id);
            line.text("actor", &record.actor_object_id);
            line.text("actor_app", record.actor_app_id.as_deref().unwrap_or("-"));
            line.text("target_tenant", &record.target_tenant_id);
            line.text("target_user", &record.target_user);
        };
        match &record.outcome {
            AuditOutcome::Accepted {
                etag_before,
                etag_after,
                patch,
            } => self.lines.write(Level::INFO, TARGET, "audit", |line| {
                common(line, "accepted");
                line.shown("etag_before", etag_before);
                line.shown("etag_after", etag_after);
                line.text("patch", patch);
            }),
            AuditOutcome::Denied { status, reason } => {
                self.lines.write(Level::INFO, TARGET, "audit", |line| {
                    common(line, "denied");
                    line.number("status", u64::from(*status));
                    line.text("reason", reason);
                });
            }
            // An outcome this server does not know yet: as the library logs it.
            _ => TracingAudit.record(record),
        }
    }
}

#[cfg(test)]
#[path = "audit_lines_tests.rs"]
mod tests;
