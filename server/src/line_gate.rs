//! Whether a directly written line (`direct_lines`) is wanted: what `tracing` decides for the
//! event the line stands for (its target, level and field names), without asking the
//! subscriber's filter again when it has already said, for the line's callsite, that it always
//! wants it.
//!
//! `tracing`'s event macros skip the subscriber's `enabled` when the callsite's cached
//! interest is `always`; its `enabled!` macro does not (the filter's directives are matched on
//! every call, ~145 instructions a line by callgrind, two lines a PATCH). [`wanted!`] makes a
//! callsite of its own, an event with the same field names as the line's event (a directive
//! may name fields: `security_update::audit[{outcome}]=info`), registered with `tracing-core`
//! as the macros' callsites are, so a filter set up or replaced later (a new dispatcher,
//! `rebuild_interest_cache`) reaches it the same way.

use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing_core::callsite::{Callsite, DefaultCallsite};

/// Whether the event of `callsite` would be written now (see [`wanted!`]).
///
/// `always` is taken as it is, without asking the current dispatcher: every registered
/// dispatcher wants the event, and every thread's dispatcher is a registered one once a
/// global default is set, which `logs::install` does before it hands out the lines. Where
/// the current dispatcher is one never registered (none set anywhere, before that; the empty
/// one `tracing` hands a subscriber's own callbacks, or one set with
/// `dispatcher::with_default(&Dispatch::none(), ..)`; neither happens in this server),
/// `tracing` would drop the event and the line is written all the same. Telling those
/// cases apart would cost a downcast through every layer (`Dispatch::is`, ~100 instructions
/// a line with the dispatcher lookup).
#[inline]
pub(crate) fn ask(callsite: &'static DefaultCallsite) -> bool {
    let metadata = callsite.metadata();
    let level = *metadata.level();
    if level > STATIC_MAX_LEVEL || level > LevelFilter::current() {
        return false;
    }
    let interest = callsite.interest();
    if interest.is_always() {
        return true;
    }
    !interest.is_never() && tracing::dispatcher::get_default(|dispatch| dispatch.enabled(metadata))
}

/// Whether the event of a line written here is wanted now: `target`, `level`, and the names of
/// its fields, `message` first, as `tracing`'s macros would declare them. A static callsite
/// named after this place in the source, asked through [`ask`].
macro_rules! wanted {
    (target: $target:expr, $level:expr, fields: [$($field:literal),* $(,)?]) => {{
        static CALLSITE: tracing_core::callsite::DefaultCallsite =
            tracing_core::callsite::DefaultCallsite::new(&METADATA);
        static METADATA: tracing_core::Metadata<'static> = tracing_core::Metadata::new(
            concat!("line ", file!(), ":", line!()),
            $target,
            $level,
            Some(file!()),
            Some(line!()),
            Some(module_path!()),
            tracing_core::field::FieldSet::new(
                &[$($field),*],
                tracing_core::identify_callsite!(&CALLSITE),
            ),
            tracing_core::metadata::Kind::EVENT,
        );
        $crate::line_gate::ask(&CALLSITE)
    }};
}
pub(crate) use wanted;

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use crate::logs::CapturedLines;

    /// Under `filter`: (whether `wanted!` says the event of `target` with `fields` is wanted,
    /// whether `tracing` writes that very event).
    fn answers(filter: &str, target: &'static str) -> [(bool, bool); 2] {
        let written = CapturedLines::default();
        let sink = written.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(filter))
            .with(tracing_subscriber::fmt::layer().with_writer(move || sink.clone()));
        let was_written = || {
            let mut lines = written.0.lock().unwrap();
            let any = !lines.is_empty();
            lines.clear();
            any
        };
        tracing::subscriber::with_default(subscriber, || {
            // Two events of one target, with a field each of them has and one only it has.
            let accepted = if target == "gate_test::audit" {
                wanted!(target: "gate_test::audit", Level::INFO, fields: ["message", "outcome", "patch"])
            } else {
                wanted!(target: "gate_test::other", Level::INFO, fields: ["message", "outcome", "patch"])
            };
            if target == "gate_test::audit" {
                tracing::info!(target: "gate_test::audit", outcome = "accepted", patch = "{}", "audit");
            } else {
                tracing::info!(target: "gate_test::other", outcome = "accepted", patch = "{}", "audit");
            }
            let accepted = (accepted, was_written());
            let denied = if target == "gate_test::audit" {
                wanted!(target: "gate_test::audit", Level::DEBUG, fields: ["message", "outcome", "reason"])
            } else {
                wanted!(target: "gate_test::other", Level::DEBUG, fields: ["message", "outcome", "reason"])
            };
            if target == "gate_test::audit" {
                tracing::debug!(target: "gate_test::audit", outcome = "denied", reason = "r", "audit");
            } else {
                tracing::debug!(target: "gate_test::other", outcome = "denied", reason = "r", "audit");
            }
            [accepted, (denied, was_written())]
        })
    }

    /// The answer is whether `tracing` writes the same event, under filters that enable it,
    /// disable it, name its target or another, and name fields one event has and the other
    /// has not (which `enabled!`, a hint with no fields, matches whatever the event's fields).
    #[test]
    fn a_line_is_wanted_when_its_event_would_be_written() {
        for filter in [
            "info",
            "off",
            "debug",
            "warn,gate_test::audit=info",
            "info,gate_test::audit=off",
            "gate_test::other=debug",
            "warn,gate_test::audit[{outcome}]=debug",
            "warn,gate_test::audit[{patch}]=info",
            "warn,gate_test::audit[{reason}]=debug",
            "debug,gate_test::audit[{patch}]=off",
        ] {
            for target in ["gate_test::audit", "gate_test::other"] {
                for (wanted, written) in answers(filter, target) {
                    assert_eq!(wanted, written, "{filter} {target}");
                }
            }
        }
        // The filters that name fields tell the two events apart.
        let split = answers("warn,gate_test::audit[{reason}]=debug", "gate_test::audit");
        assert_eq!(split, [(false, false), (true, true)]);
    }
}
