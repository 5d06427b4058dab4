//! The two lines every request writes, the access line and the audit record, formatted
//! straight into the log buffer: byte for byte what the event formats (`text_lines`,
//! `json_lines`) write for the same events through `tracing` (the tests compare the two),
//! without the trip through `tracing`'s field visitors and `core::fmt`.
//!
//! Profiled (callgrind, `scripts/server_instructions.py`), the two lines through `tracing`
//! cost 16.7k instructions a PATCH against 54.5k for all the rest: field values went one by
//! one through dynamic `fmt::Write` calls, each `%value` through `core::fmt`, and the audited
//! patch (JSON: a quote every few bytes) through an escaper called once per plain run.
//! `tracing` still decides whether a line is written (`RUST_LOG`, through `enabled!` on
//! the line's target and level) and writes every other line.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use tracing::Level;

use crate::cli::LogFormat;
use crate::escapes::{push_debug_ascii, push_json};
use crate::line_buffer::{LineBuffer, Padded, PushBytes};

thread_local! {
    /// The line being built on this thread.
    static LINE: RefCell<LineBuffer> = const { RefCell::new(LineBuffer::new()) };
}

/// Line buffers longer than this are not kept between lines.
const KEEP_LINE_UP_TO: usize = 64 * 1024;

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
    /// writes in this format. Whether it is wanted is the caller's to ask (`enabled!`).
    pub(crate) fn write(
        &self,
        level: Level,
        target: &str,
        message: &str,
        fields: impl FnOnce(&mut Line<'_>),
    ) {
        LINE.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear(KEEP_LINE_UP_TO);
            let mut line = Line {
                out: &mut buffer,
                json: self.json,
                first: true,
            };
            line.begin(level, target);
            // The message is the first field, as `tracing`'s macros declare it.
            line.message(message);
            fields(&mut line);
            line.end(target);
            (self.sink)(buffer.as_bytes());
            buffer.clear(KEEP_LINE_UP_TO);
        });
    }
}

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

/// The [`Field`] named `$name`.
macro_rules! field {
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
    first: bool,
}

impl Line<'_> {
    fn begin(&mut self, level: Level, target: &str) {
        if self.json {
            self.out.push_bytes(b"{\"timestamp\":\"");
            crate::line_time::push_now(self.out);
            self.out.push_bytes(b"\",\"level\":\"");
            self.out.push_bytes(level.as_str().as_bytes());
            self.out.push_bytes(b"\",\"fields\":{");
        } else {
            crate::line_time::push_now(self.out);
            self.out.push_bytes(match level {
                Level::TRACE => b" TRACE ",
                Level::DEBUG => b" DEBUG ",
                Level::INFO => b"  INFO ",
                Level::WARN => b"  WARN ",
                Level::ERROR => b" ERROR ",
            });
            self.out.push_bytes(target.as_bytes());
        }
    }

    fn end(&mut self, target: &str) {
        if self.json {
            self.out.push_bytes(b"},\"target\":\"");
            push_json(self.out, target);
            self.out.push_bytes(b"\"}\n");
        } else {
            self.out.push(b'\n');
        }
    }

    /// The message: the first field in JSON, the text after the target in text.
    fn message(&mut self, message: &str) {
        if self.json {
            self.name("message");
            self.json_string(message);
        } else {
            self.first = false;
            self.out.push_bytes(b": ");
            self.out.push_bytes(message.as_bytes());
        }
    }

    /// A field's separator and name, written whole: every field follows the message.
    fn field(&mut self, field: &Field) {
        self.out
            .push_padded(if self.json { &field.json } else { &field.text });
        self.first = false;
    }

    /// A field's separator and name.
    fn name(&mut self, name: &str) {
        if self.json {
            self.out.push_bytes(if self.first { b"\"" } else { b",\"" });
            push_json(self.out, name);
            self.out.push_bytes(b"\":");
        } else {
            if !self.first {
                self.out.push(b' ');
            }
            self.out.push_bytes(name.as_bytes());
            self.out.push(b'=');
        }
        self.first = false;
    }

    fn json_string(&mut self, value: &str) {
        self.out.push(b'"');
        push_json(self.out, value);
        self.out.push(b'"');
    }

    /// A string field (`name = value` in `tracing`'s macros): quoted and escaped as `Debug`
    /// escapes it in text, a JSON string in JSON.
    pub(crate) fn text(&mut self, field: &Field, value: &str) {
        self.field(field);
        if self.json {
            self.json_string(value);
        } else {
            self.out.push(b'"');
            if push_debug_ascii(self.out, value).is_ok() {
                self.out.push(b'"');
            } else {
                // What `Debug` does past ASCII (which characters it escapes) is its own.
                self.out.truncate(self.out.len() - 1);
                let _ = fmt::Write::write_fmt(&mut Appender(self.out), format_args!("{value:?}"));
            }
        }
    }

    /// A displayed field (`name = %value`): as it displays in text, a JSON string in JSON.
    pub(crate) fn shown(&mut self, field: &Field, value: &str) {
        self.field(field);
        if self.json {
            self.json_string(value);
        } else {
            self.out.push_bytes(value.as_bytes());
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
        self.field(field);
        if self.json {
            self.out.push(b'"');
            self.out.push_bytes(value);
            self.out.push(b'"');
        } else {
            self.out.push_bytes(value);
        }
    }

    /// A time to the second as a string field (`name = utc_timestamp(time)`): quoted in
    /// both formats, nothing in it to escape.
    pub(crate) fn time(&mut self, field: &Field, time: std::time::SystemTime) {
        self.field(field);
        self.out.push(b'"');
        crate::line_time::push_second(time, self.out);
        self.out.push(b'"');
    }

    /// A number field.
    pub(crate) fn number(&mut self, field: &Field, value: u64) {
        self.field(field);
        self.out
            .push_bytes(itoa::Buffer::new().format(value).as_bytes());
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
