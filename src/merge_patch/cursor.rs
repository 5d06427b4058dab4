//! A cursor over JSON text that is already known to be JSON (the patch scan accepted it, or
//! this crate wrote it): the token reading that the compact writer (`canonical`) and the
//! `Value` reader (`value`) share. It fails, instead of guessing, where the text is not JSON.

use serde::de::Error as _;
use serde_json::Error;

/// The error for text that is not JSON.
pub(crate) fn not_json() -> Error {
    Error::custom("not a JSON value")
}

/// A position in a JSON text.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        Self { text, at: 0 }
    }

    /// The byte at the cursor.
    pub(crate) fn peek(&self) -> Result<u8, Error> {
        self.text.get(self.at).copied().ok_or_else(not_json)
    }

    pub(crate) fn skip_space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Past `byte`, after any space.
    pub(crate) fn expect(&mut self, byte: u8) -> Result<(), Error> {
        self.skip_space();
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(not_json())
        }
    }

    /// Whether the text ends at the cursor, after any space.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_space();
        self.at == self.text.len()
    }

    /// Past `word` (`true`, `false`, `null`), which must be at the cursor; the word.
    pub(crate) fn word<'w>(&mut self, word: &'w [u8]) -> Result<&'w [u8], Error> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(word)
        } else {
            Err(not_json())
        }
    }

    /// Past the string literal at the cursor: the literal, quotes included, and whether it
    /// holds an escape. Runs of plain characters are skipped a table lookup a byte.
    pub(crate) fn string_literal(&mut self) -> Result<(&'a [u8], bool), Error> {
        let text = self.text;
        let start = self.at;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i += text
                .get(i..)
                .and_then(super::scan::string_run_end)
                .ok_or_else(not_json)?;
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

    /// Past the number literal at the cursor: the literal.
    pub(crate) fn number_literal(&mut self) -> &'a [u8] {
        let text = self.text;
        let start = self.at;
        let end = text[start..]
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .map_or(text.len(), |n| start + n);
        self.at = end;
        &text[start..end]
    }
}

/// Whether a number literal is one `serde_json` reads as an integer and writes back the same:
/// digits and a sign, and not `-0` (which it reads as the float `-0.0`).
pub(crate) fn is_plain_integer(literal: &[u8]) -> bool {
    !literal.is_empty()
        && literal != b"-0"
        && literal.iter().all(|b| b.is_ascii_digit() || *b == b'-')
}
