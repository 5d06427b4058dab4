//! The default log format: `tracing-subscriber`'s text layout (`{timestamp} {level} {target}:
//! {message} key=value ...`, string values quoted and escaped as `Debug` escapes them), written
//! with less machinery.
//!
//! `tracing-subscriber`'s own text format paints every field name and `=` through its ANSI
//! styles (plain when colours are off, but through the formatting machinery all the same) and
//! escapes strings a character at a time; with two lines per PATCH that cost a tenth of the
//! server's throughput. Here a string is copied in runs between the characters that need
//! escaping. No colours: the lines are for log files and shippers.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of `--log-format text`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TextLines;

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        crate::line_time::write_now(&mut writer)?;
        let level = match *meta.level() {
            Level::TRACE => "TRACE",
            Level::DEBUG => "DEBUG",
            Level::INFO => " INFO",
            Level::WARN => " WARN",
            Level::ERROR => "ERROR",
        };
        writer.write_char(' ')?;
        writer.write_str(level)?;
        writer.write_char(' ')?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes an event's fields: the message as it is, the others as ` name=value`.
struct Fields<'w, 'a> {
    out: &'w mut Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name();
        self.result = if name == "message" {
            self.out.write_str(separator).and_then(|()| value(self.out))
        } else {
            self.out
                .write_str(separator)
                .and_then(|()| self.out.write_str(name))
                .and_then(|()| self.out.write_char('='))
                .and_then(|()| value(self.out))
        };
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |out| out.write_str(value));
        } else {
            self.field(field, |out| quoted(out, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| write!(out, "{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| write!(out, "{value}"));
    }
}

/// `text` quoted and escaped exactly as `<str as Debug>` does. ASCII text (the usual case) is
/// escaped in runs (`escapes`); anything else goes through `Debug` itself.
fn quoted(out: &mut impl Write, text: &str) -> fmt::Result {
    if !text.is_ascii() {
        return write!(out, "{text:?}");
    }
    out.write_char('"')?;
    crate::escapes::write_debug_ascii(out, text)?;
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::CapturedLines as Lines;

    fn logged(format: impl Fn() + Copy, ours: bool) -> String {
        let lines = Lines::default();
        let sink = lines.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        if ours {
            tracing::subscriber::with_default(builder.event_format(TextLines).finish(), format);
        } else {
            tracing::subscriber::with_default(builder.finish(), format);
        }
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        // Without the timestamps, which differ.
        text.lines()
            .map(|line| line.split_once(' ').unwrap().1.to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The same events give the same lines as `tracing-subscriber`'s text format without
    /// colours, escapes included: quotes, backslashes, newlines, control characters (ASCII
    /// text, escaped here), and line separators, bidi overrides, non-ASCII (escaped by
    /// `Debug`).
    #[test]
    fn lines_are_the_text_format_of_tracing_subscriber() {
        let ascii = "a \"quoted\" \\ 'path'\nwith\r\ttabs \u{1}\u{0}\u{7f}\u{1b}[31m end";
        let tricky = "x \"y\" é \u{2028} \u{202e} \u{a0} \u{301}\n";
        let events = || {
            tracing::info!(
                method = %"PATCH",
                path = ascii,
                other = tricky,
                status = 200u16,
                delta = -3i64,
                ok = true,
                request_id = ?"abc",
                "request"
            );
            tracing::warn!(detail = "x", "request failed in the store");
            tracing::error!("bye");
        };
        let ours = logged(events, true);
        let theirs = logged(events, false);
        assert_eq!(ours, theirs);
        assert!(ours.contains(" INFO "), "{ours}");
        assert!(
            ours.contains(
                r#"path="a \"quoted\" \\ 'path'\nwith\r\ttabs \u{1}\0\u{7f}\u{1b}[31m end""#
            ),
            "{ours}"
        );
    }
}
