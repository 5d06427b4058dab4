//! The two lines every request writes, the access line and the audit record, formatted
//! straight into the log buffer: byte for byte what the event formats (`text_lines`,
//! `json_lines`) write for the same events through `tracing` (the tests compare the two),
//! without the trip through `tracing`'s field visitors and `core::fmt`.
//!
//! Profiled (callgrind, `scripts/server_instructions.py`), the two lines through `tracing`
//! cost 16.7k instructions a PATCH against 54.5k for all the rest: field values went one by
//! one through dynamic `fmt::Write` calls, each `%value` through `core::fmt`, and the audited
//! patch (JSON: a quote every few bytes) through an escaper called once per plain run.
//! `tracing` still decides whether a line is written (`RUST_LOG`, asked through
//! `line_gate` with the line's target, level and field names) and writes every other line.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cli::LogFormat;
use crate::escapes::{DebugAscii, Json, push_quoted};
use crate::line_buffer::{LineBuffer, PADDED, Padded, PushBytes};
use crate::line_time;

thread_local! {
    /// The line being built on this thread.
    static LINE: RefCell<LineBuffer> = const { RefCell::new(LineBuffer::new()) };
}

/// Line buffers longer than this are not kept between lines.
const KEEP_LINE_UP_TO: usize = 64 * 1024;

/// What every JSON line starts with.
static JSON_START: Padded = Padded::new("{\"timestamp\":\"");

/// Where whole lines go.
pub(crate) type LineSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Writes lines in one format to one sink.
#[derive(Clone)]
pub(crate) struct DirectLines {
    sink: LineSink,
    json: bool,
}

impl fmt::Debug for DirectLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectLines")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl DirectLines {
    pub(crate) fn new(format: LogFormat, sink: LineSink) -> Self {
        Self {
            sink,
            json: matches!(format, LogFormat::Json),
        }
    }

    /// Writes one line: what `tracing::event!(target: target, level, { fields }, message)`
    /// writes in this format, `head` naming the level, target and message ([`head!`]).
    /// Whether it is wanted is the caller's to ask (`line_gate`).
    pub(crate) fn write(&self, head: &Head, fields: impl FnOnce(&mut Line<'_>)) {
        self.write_at(head, line_time::since_epoch(SystemTime::now()), fields);
    }

    /// [`write`](Self::write), timestamped `since` the epoch: a line that records an event
    /// of its own time (an audit record) is stamped with it, without reading the clock again.
    pub(crate) fn write_at(
        &self,
        head: &Head,
        since: Duration,
        fields: impl FnOnce(&mut Line<'_>),
    ) {
        LINE.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear(KEEP_LINE_UP_TO);
            let mut line = Line {
                out: &mut buffer,
                json: self.json,
            };
            line.begin(head, since);
            fields(&mut line);
            line.end(head);
            (self.sink)(buffer.as_bytes());
            buffer.clear(KEEP_LINE_UP_TO);
        });
    }
}

/// What comes before a line's fields and after them, in each format, made once by [`head!`]
/// from the line's level, target and message (none of them with anything to escape): in text,
/// `  INFO target: message` after the timestamp; in JSON, the level and the message (the first
/// field) after the timestamp, the target after the fields.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) text: Padded<HEAD>,
    pub(crate) json: Padded<HEAD>,
    pub(crate) json_end: Padded<HEAD>,
}

/// The longest [`Head`] part.
const HEAD: usize = 96;

impl Head {
    /// The head of lines of `level` (`INFO`, ...), `target` and `message`; panics (at compile
    /// time in [`head!`]) when one of them needs an escape in either format.
    pub(crate) const fn new(level: &str, target: &str, message: &str) -> Self {
        assert!(
            Self::plain(target) && Self::plain(message),
            "nothing to escape"
        );
        // `tracing-subscriber` pads the level to five characters, on the left.
        let pad = if level.len() < 5 { " " } else { "" };
        Self {
            text: Padded::joined(&[" ", pad, level, " ", target, ": ", message]),
            json: Padded::joined(&[
                "\",\"level\":\"",
                level,
                "\",\"fields\":{\"message\":\"",
                message,
                "\"",
            ]),
            json_end: Padded::joined(&["},\"target\":\"", target, "\"}\n"]),
        }
    }

    /// Printable ASCII without quotes or backslashes: the same in both formats as it is.
    pub(crate) const fn plain(text: &str) -> bool {
        let bytes = text.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let b = bytes[at];
            if (!b.is_ascii_graphic() && b != b' ') || b == b'"' || b == b'\\' {
                return false;
            }
            at += 1;
        }
        true
    }
}

/// The [`Head`] of lines at level `$level` (`INFO`, ...) of `$target` with `$message`.
macro_rules! head {
    ($level:ident, $target:expr, $message:expr) => {{
        // The level is one `tracing` has.
        const _: tracing::Level = tracing::Level::$level;
        static HEAD: $crate::direct_lines::Head =
            $crate::direct_lines::Head::new(stringify!($level), $target, $message);
        &HEAD
    }};
}
pub(crate) use head;

/// A field's name with what comes before its value, in each format (` name=`, `,"name":`),
/// made once by [`field!`] from a plain name (letters, digits, `_`: nothing to escape).
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) text: Padded,
    pub(crate) json: Padded,
}

impl Field {
    /// Checks, at compile time where [`field!`] is used, that `name` needs no escape.
    pub(crate) const fn plain(name: &str) -> bool {
        let bytes = name.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let b = bytes[at];
            if !(b.is_ascii_alphanumeric() || b == b'_') {
                return false;
            }
            at += 1;
        }
        !bytes.is_empty()
    }
}

/// The [`Field`] named `$name`; or the whole field, name and value, of a constant string
/// value (`$name = $value`, quoted in both formats) or a constant shown value
/// (`$name = %$value`, as it is in text), for [`Line::constant`].
macro_rules! field {
    ($name:literal = $value:literal) => {{
        const _: () = assert!($crate::direct_lines::Field::plain($name));
        const _: () = assert!($crate::direct_lines::Head::plain($value));
        static FIELD: $crate::direct_lines::Field = $crate::direct_lines::Field {
            text: $crate::line_buffer::Padded::new(concat!(" ", $name, "=\"", $value, "\"")),
            json: $crate::line_buffer::Padded::new(concat!(",\"", $name, "\":\"", $value, "\"")),
        };
        &FIELD
    }};
    ($name:literal = % $value:literal) => {{
        const _: () = assert!($crate::direct_lines::Field::plain($name));
        const _: () = assert!($crate::direct_lines::Head::plain($value));
        static FIELD: $crate::direct_lines::Field = $crate::direct_lines::Field {
            text: $crate::line_buffer::Padded::new(concat!(" ", $name, "=", $value)),
            json: $crate::line_buffer::Padded::new(concat!(",\"", $name, "\":\"", $value, "\"")),
        };
        &FIELD
    }};
    ($name:literal) => {{
        const _: () = assert!($crate::direct_lines::Field::plain($name));
        static FIELD: $crate::direct_lines::Field = $crate::direct_lines::Field {
            text: $crate::line_buffer::Padded::new(concat!(" ", $name, "=")),
            json: $crate::line_buffer::Padded::new(concat!(",\"", $name, "\":")),
        };
        &FIELD
    }};
}
pub(crate) use field;

/// A line being written: its fields are added in order.
pub(crate) struct Line<'b> {
    out: &'b mut LineBuffer,
    json: bool,
}

impl Line<'_> {
    /// The timestamp and the head: everything before the fields.
    fn begin(&mut self, head: &Head, since: Duration) {
        if self.json {
            self.out.push_padded(&JSON_START);
            line_time::push_time(since, self.out);
            self.out.push_padded(&head.json);
        } else {
            line_time::push_time(since, self.out);
            self.out.push_padded(&head.text);
        }
    }

    fn end(&mut self, head: &Head) {
        if self.json {
            self.out.push_padded(&head.json_end);
        } else {
            self.out.push(b'\n');
        }
    }

    /// A field's separator and name, written whole: every field follows the message.
    fn field(&mut self, field: &Field) {
        self.out.push_padded(self.prefix(field));
    }

    /// A string field (`name = value` in `tracing`'s macros): quoted and escaped as `Debug`
    /// escapes it in text, a JSON string in JSON.
    pub(crate) fn text(&mut self, field: &Field, value: &str) {
        if self.json {
            let pushed = push_quoted::<Json>(self.out, &field.json, value);
            debug_assert!(pushed.is_ok(), "JSON escapes any text");
        } else if push_quoted::<DebugAscii>(self.out, &field.text, value).is_err() {
            // What `Debug` does past ASCII (which characters it escapes) is its own.
            self.out.push_padded(&field.text);
            let _ = fmt::Write::write_fmt(&mut Appender(self.out), format_args!("{value:?}"));
        }
    }

    /// [`text`](Self::text), saying where in the line the value (its quotes included) went:
    /// a field that repeats it can copy it from there ([`repeat`](Self::repeat)).
    pub(crate) fn text_at(&mut self, field: &Field, value: &str) -> Range<usize> {
        let start = self.out.len() + self.prefix(field).len();
        self.text(field, value);
        start..self.out.len()
    }

    /// A field whose value is the same text as one written earlier in this line at `value`
    /// ([`text_at`](Self::text_at)): copied from there, not escaped again.
    pub(crate) fn repeat(&mut self, field: &Field, value: Range<usize>) {
        self.out.push_repeated(self.prefix(field), value);
    }

    /// How many bytes the line holds: where the next field starts.
    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    /// The bytes written since `start`.
    pub(crate) fn since(&self, start: usize) -> &[u8] {
        &self.out.as_bytes()[start..]
    }

    /// Fields written before, by [`since`](Self::since) of a line in the same format, again.
    pub(crate) fn push_written(&mut self, fields: &[u8]) {
        self.out.push_bytes(fields);
    }

    /// Whether the line is JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// The name of `field` and what comes before its value, in the line's format.
    fn prefix<'f>(&self, field: &'f Field) -> &'f Padded {
        if self.json { &field.json } else { &field.text }
    }

    /// A whole field made by `field!(name = value)` or `field!(name = %value)`.
    pub(crate) fn constant(&mut self, field: &Field) {
        self.out.push_padded(self.prefix(field));
    }

    /// A displayed field (`name = %value`): as it displays in text, a JSON string in JSON.
    pub(crate) fn shown(&mut self, field: &Field, value: &str) {
        if self.json {
            let pushed = push_quoted::<Json>(self.out, &field.json, value);
            debug_assert!(pushed.is_ok(), "JSON escapes any text");
        } else {
            self.put(&field.text, value.as_bytes(), false);
        }
    }

    /// [`shown`](Self::shown) for a value that is its own escape in both formats: printable
    /// ASCII without quotes or backslashes (checked when it was made, so it is not checked
    /// again, nor made a `&str` again, here).
    pub(crate) fn shown_plain(&mut self, field: &Field, value: &[u8]) {
        debug_assert!(
            value
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
            "not plain: {value:?}"
        );
        if self.json {
            self.put(&field.json, value, true);
        } else {
            self.put(&field.text, value, false);
        }
    }

    /// `prefix` then `value` as it is, between quotes if `quoted`, in one room.
    fn put(&mut self, prefix: &Padded, value: &[u8], quoted: bool) {
        let quote = usize::from(quoted);
        let room = self.out.room(PADDED + value.len() + 2);
        room[..PADDED].copy_from_slice(prefix.bytes());
        let start = prefix.len() + quote;
        let end = start + value.len();
        // Unquoted, the two quotes land where the value and the room past the line go: the
        // value overwrites the first, the line never takes the second.
        room[start - quote] = b'"';
        room[start..end].copy_from_slice(value);
        room[end] = b'"';
        self.out.advance(end + quote);
    }

    /// A time to the second as a string field (`name = utc_timestamp(time)`), `since` the
    /// epoch: quoted in both formats, nothing in it to escape.
    pub(crate) fn time(&mut self, field: &Field, since: Duration) {
        self.field(field);
        self.out.push(b'"');
        line_time::push_second(since.as_secs(), self.out);
        self.out.push(b'"');
    }

    /// A number field, its digits (`itoa`'s, two at a time) copied in with its name.
    pub(crate) fn number(&mut self, field: &Field, value: u64) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value).as_bytes();
        self.put(self.prefix(field), digits, false);
    }
}

/// `fmt::Write` into a line's bytes.
struct Appender<'a>(&'a mut LineBuffer);

impl fmt::Write for Appender<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.push_bytes(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[path = "direct_lines_tests.rs"]
pub(crate) mod tests;
