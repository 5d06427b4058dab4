//! The server's audit trail: the library's audit records as log lines written directly
//! (`direct_lines`), the very lines `TracingAudit` writes through `tracing` (the tests
//! compare them for records of every kind), at a fraction of the cost. An accepted change is
//! written from the references the service hands over (`record_accepted`), without the
//! owned copies of an `AuditRecord`.

use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;

use security_update::Principal;
use security_update::audit::{AcceptedChange, AuditOutcome, AuditRecord, AuditSink, TracingAudit};
use tracing::Level;

use crate::direct_lines::{DirectLines, Field, Line, field, head};
use crate::line_time;

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
        self.lines
            .write_at(head!(INFO, TARGET, "audit"), who.stamp(), |line| {
                who.write(line, field!("outcome" = "accepted"));
                line.shown(field!("etag_before"), etags.0);
                line.shown(field!("etag_after"), etags.1);
                line.text(field!("patch"), patch);
            });
    }
}

/// The fields every audit line starts with.
struct Who<'a> {
    /// When the record was made, since the epoch: its `at`.
    at: Duration,
    /// The change was handed over as it was made (`record_accepted`): the line is stamped
    /// with its `at`, without reading the clock again. A record made earlier and written now
    /// is stamped now, as `tracing` stamps its event.
    stamped_at: bool,
    /// The principal the actor's ids are from, when the service handed it over.
    principal: Option<&'a Principal>,
    actor_tenant: &'a str,
    actor: &'a str,
    actor_app: &'a str,
    target_tenant: &'a str,
    target_user: &'a str,
}

impl Who<'_> {
    /// The line's timestamp.
    fn stamp(&self) -> Duration {
        if self.stamped_at {
            self.at
        } else {
            line_time::since_epoch(std::time::SystemTime::now())
        }
    }

    /// The fields, `outcome` first (`field!("outcome" = ...)`).
    fn write(&self, line: &mut Line<'_>, outcome: &Field) {
        line.constant(outcome);
        line.time(field!("at"), self.at);
        // A user's change to their own object (`/me`) names the same ids twice: the second
        // time they are copied from the line, not escaped again; and the five fields, as the
        // last such line for the same principal wrote them, are copied whole.
        let same_tenant = self.target_tenant == self.actor_tenant;
        let same_user = self.target_user == self.actor;
        let own = same_tenant && same_user;
        if own && self.push_own_written(line) {
            return;
        }
        let start = line.len();
        let (tenant, actor) = self.write_actor(line);
        if same_tenant {
            line.repeat(field!("target_tenant"), tenant);
        } else {
            line.text(field!("target_tenant"), self.target_tenant);
        }
        if same_user {
            line.repeat(field!("target_user"), actor);
        } else {
            line.text(field!("target_user"), self.target_user);
        }
        if own {
            self.keep_own_written(line.is_json(), line.since(start));
        }
    }

    /// The five id fields of a change to the actor's own object, as the last one for the same
    /// principal on this thread wrote them, if it did.
    fn push_own_written(&self, line: &mut Line<'_>) -> bool {
        let Some(principal) = self.principal else {
            return false;
        };
        WRITTEN_ACTOR.with_borrow(|written| match written {
            Some(WrittenActor {
                principal: written,
                json,
                own: Some(own),
                ..
            }) if *json == line.is_json() && *written == *principal => {
                line.push_written(own);
                true
            }
            _ => false,
        })
    }

    /// Keeps `fields`, the five id fields of a change to the actor's own object, beside the
    /// actor's three ([`write_actor`](Self::write_actor) kept them just before).
    fn keep_own_written(&self, json: bool, fields: &[u8]) {
        let Some(principal) = self.principal else {
            return;
        };
        WRITTEN_ACTOR.with_borrow_mut(|written| {
            if let Some(written) = written
                && written.json == json
                && written.principal == *principal
            {
                written.own = Some(fields.to_vec());
            }
        });
    }

    /// The actor's three fields, and where in the line the tenant's and the actor's values
    /// went. The principal of a token is one shared value for as long as the validator caches
    /// it (`Principal` compares by identity first), so the fields last written for it on this
    /// thread are copied as they were.
    fn write_actor(&self, line: &mut Line<'_>) -> (Range<usize>, Range<usize>) {
        let start = line.len();
        let cached = self.principal.and_then(|principal| {
            WRITTEN_ACTOR.with_borrow(|written| {
                let written = written.as_ref()?;
                (written.json == line.is_json() && written.principal == *principal).then(|| {
                    line.push_written(&written.fields);
                    (
                        start + written.tenant.start..start + written.tenant.end,
                        start + written.actor.start..start + written.actor.end,
                    )
                })
            })
        });
        if let Some(ranges) = cached {
            return ranges;
        }
        let tenant = line.text_at(field!("actor_tenant"), self.actor_tenant);
        let actor = line.text_at(field!("actor"), self.actor);
        line.text(field!("actor_app"), self.actor_app);
        if let Some(principal) = self.principal {
            let written = WrittenActor {
                principal: principal.clone(),
                json: line.is_json(),
                fields: line.since(start).to_vec(),
                tenant: tenant.start - start..tenant.end - start,
                actor: actor.start - start..actor.end - start,
                own: None,
            };
            WRITTEN_ACTOR.set(Some(written));
        }
        (tenant, actor)
    }
}

/// The actor's fields of the last accepted change this thread wrote (see
/// [`Who::write_actor`]), the ranges of the tenant's and the actor's values in them, and the
/// five id fields of a change to the actor's own object once one was written.
struct WrittenActor {
    principal: Principal,
    json: bool,
    fields: Vec<u8>,
    tenant: Range<usize>,
    actor: Range<usize>,
    own: Option<Vec<u8>>,
}

thread_local! {
    static WRITTEN_ACTOR: RefCell<Option<WrittenActor>> = const { RefCell::new(None) };
}

/// Whether `TracingAudit`'s event for an accepted change would be written: its target, level
/// and field names (a directive may name fields).
fn accepted_wanted() -> bool {
    crate::line_gate::wanted!(
        target: TARGET,
        Level::INFO,
        fields: [
            "message", "outcome", "at", "actor_tenant", "actor", "actor_app", "target_tenant",
            "target_user", "etag_before", "etag_after", "patch",
        ]
    )
}

/// Whether `TracingAudit`'s event for a refused attempt would be written.
fn denied_wanted() -> bool {
    crate::line_gate::wanted!(
        target: TARGET,
        Level::INFO,
        fields: [
            "message", "outcome", "at", "actor_tenant", "actor", "actor_app", "target_tenant",
            "target_user", "status", "reason",
        ]
    )
}

impl AuditSink for AuditLines {
    /// Whether an accepted change would be written: the service asks before it hands one over.
    fn enabled(&self) -> bool {
        accepted_wanted()
    }

    fn record(&self, record: &AuditRecord) {
        // Callers may record without asking `enabled` first (the library's refused-access
        // record does): as `TracingAudit`'s events are, each record is filtered here.
        let who = Who {
            at: line_time::since_epoch(record.at),
            stamped_at: false,
            principal: None,
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
            } => {
                if accepted_wanted() {
                    self.accepted(&who, (etag_before, etag_after), patch);
                }
            }
            AuditOutcome::Denied { status, reason } => {
                if denied_wanted() {
                    self.lines
                        .write_at(head!(INFO, TARGET, "audit"), who.stamp(), |line| {
                            who.write(line, field!("outcome" = "denied"));
                            line.number(field!("status"), u64::from(*status));
                            line.text(field!("reason"), reason);
                        });
                }
            }
            // An outcome this server does not know yet: as the library logs it.
            _ => TracingAudit.record(record),
        }
    }

    fn record_accepted(&self, change: &AcceptedChange<'_>) {
        // Not asked again (a filter lookup, ~100 instructions a PATCH): the service, this
        // sink's one caller, asks `enabled` before it makes the change.
        let who = Who {
            at: line_time::since_epoch(change.at),
            stamped_at: true,
            principal: Some(change.actor),
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
