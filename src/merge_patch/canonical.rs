//! `serde_json`'s compact form of a JSON value given as text, written without building a
//! `Value`: what parsing the text and serializing the result would give, byte for byte.
//!
//! The text is one that [`scan`](super::scan::scan) accepted, or one this crate wrote; the
//! writer does not check it again, and fails (instead of guessing) where it is not JSON.
//! Strings without escapes and integers are copied as they are (`serde_json` writes them
//! back the same); strings with escapes, and floats, go through `serde_json`, which decides
//! how they are written.

use serde::de::Error as _;
use serde_json::Error;

/// Writes the value `text` to `out` in compact form. With `drop_nulls`, members whose value is
/// `null` are left out of every object that is not inside an array: RFC 7396's treatment of
/// a patch value that lands where nothing was.
///
/// # Errors
/// When `text` is not a JSON value.
pub(crate) fn write(out: &mut Vec<u8>, text: &[u8], drop_nulls: bool) -> Result<(), Error> {
    let mut writer = Writer { text, at: 0 };
    writer.value(out, drop_nulls)?;
    writer.skip_space();
    if writer.at == text.len() {
        Ok(())
    } else {
        Err(not_json())
    }
}

/// Whether the value `text` (a span with no space around it) is `null`.
pub(crate) fn is_null(text: &[u8]) -> bool {
    text == b"null"
}

fn not_json() -> Error {
    Error::custom("not a JSON value")
}

/// How many plain characters of a string literal start `text` (up to a quote, a backslash or
/// a control character, which must come).
fn run_length(text: &[u8]) -> Result<usize, Error> {
    text.iter()
        .position(|&b| super::scan::STOPS_A_STRING_RUN[usize::from(b)])
        .ok_or_else(not_json)
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

struct Writer<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    fn peek(&self) -> Result<u8, Error> {
        self.text.get(self.at).copied().ok_or_else(not_json)
    }

    fn skip_space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, drop_nulls: bool) -> Result<(), Error> {
        self.skip_space();
        match self.peek()? {
            b'"' => self.string(out),
            b'{' => self.object(out, drop_nulls),
            b'[' => self.array(out),
            b't' => self.copy(out, 4),
            b'f' => self.copy(out, 5),
            b'n' => self.copy(out, 4),
            _ => self.number(out),
        }
    }

    fn copy(&mut self, out: &mut Vec<u8>, len: usize) -> Result<(), Error> {
        let end = self.at + len;
        out.extend_from_slice(self.text.get(self.at..end).ok_or_else(not_json)?);
        self.at = end;
        Ok(())
    }

    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let (literal, escaped) = self.literal()?;
        write_string(out, literal, escaped)
    }

    /// Past the string literal at `at`: the literal, quotes included, and whether it holds an
    /// escape.
    fn literal(&mut self) -> Result<(&'a [u8], bool), Error> {
        let text: &'a [u8] = self.text;
        let start = self.at;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i += run_length(&text[i.min(text.len())..])?;
            match text[i] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                _ => return Err(not_json()),
            }
        }
        self.at = i + 1;
        Ok((&text[start..self.at], escaped))
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = self.at;
        let end = self.text[start..]
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .map_or(self.text.len(), |n| start + n);
        self.at = end;
        let literal = &self.text[start..end];
        // An integer is written back as it was; `-0` and floats are read as `f64` and
        // written as `serde_json` writes those (`-0.0`, `1e300`, `100.0` for `1E2`).
        if literal.is_empty()
            || literal == b"-0"
            || literal.iter().any(|b| !b.is_ascii_digit() && *b != b'-')
        {
            let number: serde_json::Number = serde_json::from_slice(literal)?;
            serde_json::to_writer(&mut *out, &number)
        } else {
            out.extend_from_slice(literal);
            Ok(())
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, drop_nulls: bool) -> Result<(), Error> {
        self.at += 1;
        out.push(b'{');
        let first = out.len();
        self.skip_space();
        if self.peek()? == b'}' {
            self.at += 1;
            out.push(b'}');
            return Ok(());
        }
        loop {
            self.skip_space();
            if self.peek()? != b'"' {
                return Err(not_json());
            }
            let (key, escaped) = self.literal()?;
            self.skip_space();
            if self.peek()? != b':' {
                return Err(not_json());
            }
            self.at += 1;
            self.skip_space();
            if drop_nulls && self.text[self.at..].starts_with(b"null") {
                self.at += 4;
            } else {
                if out.len() > first {
                    out.push(b',');
                }
                write_string(out, key, escaped)?;
                out.push(b':');
                self.value(out, drop_nulls)?;
            }
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    out.push(b'}');
                    return Ok(());
                }
                _ => return Err(not_json()),
            }
        }
    }

    fn array(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.at += 1;
        out.push(b'[');
        self.skip_space();
        if self.peek()? == b']' {
            self.at += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            // RFC 7396: an array is a value like any other; nulls in it are kept.
            self.value(out, false)?;
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    out.push(b',');
                }
                b']' => {
                    self.at += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(not_json()),
            }
        }
    }
}
