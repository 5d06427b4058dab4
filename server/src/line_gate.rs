//! Whether a directly written line (`direct_lines`) is wanted: what `tracing::enabled!`
//! answers, without asking the subscriber when it has already said, for the line's callsite,
//! that it always wants it.
//!
//! `tracing`'s event macros skip the subscriber's `enabled` when the callsite's cached
//! interest is `always`; its `enabled!` macro does not (it asks the subscriber every time: the
//! dispatcher lookup, then the filter's directives, ~145 instructions a line by callgrind, two
//! lines a PATCH). [`wanted!`] makes a callsite of its own, registered with `tracing-core` as the
//! macros' callsites are, so a filter set up or replaced later (`rebuild_interest_cache`, a
//! new dispatcher) reaches it the same way, and it asks only when the interest is
//! `sometimes`.

use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing_core::Interest;
use tracing_core::callsite::{Callsite, DefaultCallsite};

/// Whether a line of `callsite`'s target and level is wanted now (see [`wanted!`]).
#[inline]
pub(crate) fn ask(callsite: &'static DefaultCallsite) -> bool {
    let metadata = callsite.metadata();
    let level = *metadata.level();
    if level > STATIC_MAX_LEVEL || level > LevelFilter::current() {
        return false;
    }
    let interest: Interest = callsite.interest();
    if interest.is_always() {
        return true;
    }
    !interest.is_never() && tracing::dispatcher::get_default(|dispatch| dispatch.enabled(metadata))
}

/// Whether a line of `target` at `level` written here is wanted now: a static callsite named
/// after this place in the source, asked through [`ask`].
macro_rules! wanted {
    (target: $target:expr, $level:expr) => {{
        static CALLSITE: tracing_core::callsite::DefaultCallsite =
            tracing_core::callsite::DefaultCallsite::new(&METADATA);
        static METADATA: tracing_core::Metadata<'static> = tracing_core::Metadata::new(
            concat!("line ", file!(), ":", line!()),
            $target,
            $level,
            Some(file!()),
            Some(line!()),
            Some(module_path!()),
            tracing_core::field::FieldSet::new(&[], tracing_core::identify_callsite!(&CALLSITE)),
            tracing_core::metadata::Kind::EVENT,
        );
        $crate::line_gate::ask(&CALLSITE)
    }};
}
pub(crate) use wanted;

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use tracing::Level;

    fn with_filter<T>(filter: &str, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(filter))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
        tracing::subscriber::with_default(subscriber, f)
    }

    /// The answer is `enabled!`'s as `enabled!` does for the same target and level, under filters
    /// that enable it, disable it, name its target or another, and with no subscriber.
    #[test]
    fn a_gate_answers_as_enabled_does() {
        let answers = |filter: &str| {
            with_filter(filter, || {
                (
                    wanted!(target: "gate_test::audit", Level::INFO),
                    tracing::enabled!(target: "gate_test::audit", Level::INFO),
                    wanted!(target: "gate_test::other", Level::DEBUG),
                    tracing::enabled!(target: "gate_test::other", Level::DEBUG),
                )
            })
        };
        for (filter, audit, other) in [
            ("info", true, false),
            ("off", false, false),
            ("debug", true, true),
            ("warn,gate_test::audit=info", true, false),
            ("info,gate_test::audit=off", false, false),
            ("gate_test::other=debug", false, true),
        ] {
            let (gate_audit, enabled_audit, gate_other, enabled_other) = answers(filter);
            assert_eq!((gate_audit, gate_other), (audit, other), "{filter}");
            assert_eq!((enabled_audit, enabled_other), (audit, other), "{filter}");
        }
    }
}
