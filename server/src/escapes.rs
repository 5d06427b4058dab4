//! String escaping for log lines, a run at a time: the plain runs between the bytes that need
//! an escape are copied whole into a per-thread scratch buffer, which then goes to the line
//! with one `write_str`. Going through the line's `fmt::Write` for every run (two calls per
//! escape, and an audited patch is JSON full of quotes) cost more than formatting the rest of
//! the line.

use std::cell::RefCell;
use std::fmt::{self, Write};

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Scratch strings longer than this are not kept between lines.
const KEEP_SCRATCH_UP_TO: usize = 64 * 1024;

/// Bytes that `<str as Debug>` escapes in ASCII text.
pub(crate) const DEBUG_ESCAPES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] =
            !(byte >= 0x20 && byte < 0x7f) || byte == b'"' as usize || byte == b'\\' as usize;
        byte += 1;
    }
    table
};

/// Bytes a JSON string escapes (RFC 8259 §7): quotes, backslashes, control characters.
pub(crate) const JSON_ESCAPES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// `text` (ASCII) escaped exactly as `<str as Debug>` escapes it, without the quotes.
pub(crate) fn write_debug_ascii(out: &mut impl Write, text: &str) -> fmt::Result {
    write_escaped(out, text, &DEBUG_ESCAPES, debug_escape)
}

/// `text` escaped for a JSON string, without the quotes.
pub(crate) fn write_json(out: &mut impl Write, text: &str) -> fmt::Result {
    write_escaped(out, text, &JSON_ESCAPES, json_escape)
}

/// The two-character escapes `Debug` and JSON write alike.
fn short_escape(byte: u8) -> Option<&'static [u8]> {
    match byte {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        _ => None,
    }
}

/// How `<str as Debug>` writes `byte`, one of [`DEBUG_ESCAPES`].
pub(crate) fn debug_escape(byte: u8, out: &mut Vec<u8>) {
    match (short_escape(byte), byte) {
        (Some(escape), _) => out.extend_from_slice(escape),
        (None, b'\0') => out.extend_from_slice(b"\\0"),
        (None, _) => {
            let _ = std::io::Write::write_fmt(out, format_args!("\\u{{{byte:x}}}"));
        }
    }
}

/// How a JSON string writes `byte`, one of [`JSON_ESCAPES`].
pub(crate) fn json_escape(byte: u8, out: &mut Vec<u8>) {
    match short_escape(byte) {
        Some(escape) => out.extend_from_slice(escape),
        None => {
            let _ = std::io::Write::write_fmt(out, format_args!("\\u{byte:04x}"));
        }
    }
}

/// `text` with each byte `escapes` marks replaced by what `escape` writes. Only ASCII bytes
/// may be marked: the runs between them are then whole characters.
fn write_escaped(
    out: &mut impl Write,
    text: &str,
    escapes: &[bool; 256],
    escape: fn(u8, &mut Vec<u8>),
) -> fmt::Result {
    let bytes = text.as_bytes();
    let Some(first) = bytes.iter().position(|&b| escapes[usize::from(b)]) else {
        return out.write_str(text);
    };
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        scratch.reserve(text.len() + 16);
        let mut plain = 0;
        let mut at = first;
        loop {
            scratch.extend_from_slice(&bytes[plain..at]);
            escape(bytes[at], &mut scratch);
            plain = at + 1;
            match bytes[plain..].iter().position(|&b| escapes[usize::from(b)]) {
                Some(next) => at = plain + next,
                None => break,
            }
        }
        scratch.extend_from_slice(&bytes[plain..]);
        let written = std::str::from_utf8(&scratch)
            .map_err(|_| fmt::Error)
            .and_then(|escaped| out.write_str(escaped));
        if scratch.capacity() > KEEP_SCRATCH_UP_TO {
            *scratch = Vec::new();
        }
        written
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_escaped_as_debug_escapes_it() {
        let every: String = (0u8..0x80).map(char::from).collect();
        for text in [every.as_str(), "plain", "", "\"", "a\"b\\c\u{7f}"] {
            let mut ours = String::from("\"");
            write_debug_ascii(&mut ours, text).unwrap();
            ours.push('"');
            assert_eq!(ours, format!("{text:?}"));
        }
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_reads_them_back() {
        let every: String = (0u32..0x80).filter_map(char::from_u32).collect();
        for text in [
            every.as_str(),
            "plain",
            "",
            "é \u{2028} \"q\" \\ \u{1f600}\n",
        ] {
            let mut ours = String::from("\"");
            write_json(&mut ours, text).unwrap();
            ours.push('"');
            let back: String = serde_json::from_str(&ours).unwrap();
            assert_eq!(back, text);
            assert!(!ours[1..ours.len() - 1].bytes().any(|b| b < 0x20));
        }
    }
}
