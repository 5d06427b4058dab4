//! `serde_json`'s compact form of a JSON value given as text, written without building a
//! `Value`: what parsing the text and serializing the result would give, byte for byte.
//!
//! The text is one that [`scan`](super::scan::scan) accepted, or one this crate wrote; the
//! writer does not check it again, and fails (instead of guessing) where it is not JSON.
//! Strings without escapes and integers are copied as they are (`serde_json` writes them
//! back the same); strings with escapes, and floats, go through `serde_json`, which decides
//! how they are written.

use serde_json::Error;

use super::cursor::{Cursor, is_plain_integer, not_json};

/// Writes the value `text` to `out` in compact form. With `drop_nulls`, members whose value is
/// `null` are left out of every object that is not inside an array: RFC 7396's treatment of
/// a patch value that lands where nothing was.
///
/// # Errors
/// When `text` is not a JSON value.
pub(crate) fn write(out: &mut Vec<u8>, text: &[u8], drop_nulls: bool) -> Result<(), Error> {
    let mut writer = Writer(Cursor::new(text));
    writer.value(out, drop_nulls)?;
    if writer.0.at_end() {
        Ok(())
    } else {
        Err(not_json())
    }
}

/// Whether the value `text` (a span with no space around it) is `null`.
pub(crate) fn is_null(text: &[u8]) -> bool {
    text == b"null"
}

/// A string literal in compact form: as it is without escapes (`serde_json` escapes only `"`,
/// `\\` and control characters, which cannot appear unescaped), else decoded and written again.
fn write_string(out: &mut Vec<u8>, literal: &[u8], escaped: bool) -> Result<(), Error> {
    if escaped {
        let text: String = serde_json::from_slice(literal)?;
        serde_json::to_writer(out, &text)
    } else {
        out.extend_from_slice(literal);
        Ok(())
    }
}

struct Writer<'a>(Cursor<'a>);

impl Writer<'_> {
    fn value(&mut self, out: &mut Vec<u8>, drop_nulls: bool) -> Result<(), Error> {
        let cursor = &mut self.0;
        cursor.skip_space();
        match cursor.peek()? {
            b'"' => {
                let (literal, escaped) = cursor.string_literal()?;
                write_string(out, literal, escaped)
            }
            b'{' => self.object(out, drop_nulls),
            b'[' => self.array(out),
            first @ (b't' | b'f' | b'n') => {
                let word: &[u8] = match first {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                out.extend_from_slice(cursor.word(word)?);
                Ok(())
            }
            _ => {
                // An integer is written back as it was; `-0` and floats are read as `f64` and
                // written as `serde_json` writes those (`-0.0`, `1e300`, `100.0` for `1E2`).
                let literal = cursor.number_literal();
                if is_plain_integer(literal) {
                    out.extend_from_slice(literal);
                    Ok(())
                } else {
                    let number: serde_json::Number = serde_json::from_slice(literal)?;
                    serde_json::to_writer(&mut *out, &number)
                }
            }
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, drop_nulls: bool) -> Result<(), Error> {
        self.0.at += 1;
        out.push(b'{');
        let first = out.len();
        self.0.skip_space();
        if self.0.peek()? == b'}' {
            self.0.at += 1;
            out.push(b'}');
            return Ok(());
        }
        loop {
            self.0.skip_space();
            if self.0.peek()? != b'"' {
                return Err(not_json());
            }
            let (key, escaped) = self.0.string_literal()?;
            self.0.expect(b':')?;
            self.0.skip_space();
            if drop_nulls && self.0.text[self.0.at..].starts_with(b"null") {
                self.0.at += 4;
            } else {
                if out.len() > first {
                    out.push(b',');
                }
                write_string(out, key, escaped)?;
                out.push(b':');
                self.value(out, drop_nulls)?;
            }
            self.0.skip_space();
            match self.0.peek()? {
                b',' => self.0.at += 1,
                b'}' => {
                    self.0.at += 1;
                    out.push(b'}');
                    return Ok(());
                }
                _ => return Err(not_json()),
            }
        }
    }

    fn array(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.0.at += 1;
        out.push(b'[');
        self.0.skip_space();
        if self.0.peek()? == b']' {
            self.0.at += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            // RFC 7396: an array is a value like any other; nulls in it are kept.
            self.value(out, false)?;
            self.0.skip_space();
            match self.0.peek()? {
                b',' => {
                    self.0.at += 1;
                    out.push(b',');
                }
                b']' => {
                    self.0.at += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(not_json()),
            }
        }
    }
}
