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
        // As `serde_json` (and so `tracing-subscriber`'s JSON lines) writes them.
        None if byte == 0x08 => out.extend_from_slice(b"\\b"),
        None if byte == 0x0c => out.extend_from_slice(b"\\f"),
        None => {
            let _ = std::io::Write::write_fmt(out, format_args!("\\u{byte:04x}"));
        }
    }
}

/// How a byte is escaped, eight bytes at a time: which bytes need it (`DEL` too, as `Debug`
/// escapes it), how one is written, and the table for the last few bytes.
pub(crate) trait Escapes {
    const DEL: bool;
    const TABLE: &'static [bool; 256];
    fn escape(byte: u8, out: &mut Vec<u8>);
}

/// As `<str as Debug>` escapes ASCII text.
pub(crate) struct DebugAscii;

impl Escapes for DebugAscii {
    const DEL: bool = true;
    const TABLE: &'static [bool; 256] = &DEBUG_ESCAPES;
    fn escape(byte: u8, out: &mut Vec<u8>) {
        debug_escape(byte, out);
    }
}

/// As a JSON string (RFC 8259 §7).
pub(crate) struct Json;

impl Escapes for Json {
    const DEL: bool = false;
    const TABLE: &'static [bool; 256] = &JSON_ESCAPES;
    fn escape(byte: u8, out: &mut Vec<u8>) {
        json_escape(byte, out);
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `word` below `LIMIT` (1 to 0x80), and of no other: the seven
/// low bits plus `0x80 - LIMIT` reach the high bit exactly when they are `LIMIT` or more, and
/// never carry into the next byte.
const fn below<const LIMIT: u64>(word: u64) -> u64 {
    !(((word & LOWS) + ONES * (0x80 - LIMIT)) | word) & HIGHS
}

/// The high bit of every byte of `word` equal to `BYTE`, and of no other.
const fn equal<const BYTE: u64>(word: u64) -> u64 {
    below::<1>(word ^ (ONES * BYTE))
}

/// The bytes of `word` that `E` escapes, each marked by its high bit.
fn marks<E: Escapes>(word: u64) -> u64 {
    below::<0x20>(word)
        | equal::<{ b'"' as u64 }>(word)
        | equal::<{ b'\\' as u64 }>(word)
        | if E::DEL { equal::<0x7f>(word) } else { 0 }
}

/// Appends the bytes of `word` from `from` to `to` (at most eight): all eight are copied, at
/// a fixed size, and the line is cut back.
fn push_part(out: &mut Vec<u8>, word: u64, from: usize, to: usize) {
    let start = out.len();
    out.extend_from_slice(&(word >> (from * 8)).to_le_bytes());
    out.truncate(start + to - from);
}

/// Appends `text` escaped as `E` says, eight bytes at a time: each word is read once, its
/// bytes to escape found at once, and the plain parts around them copied at a fixed size. An
/// audited patch is JSON with a quote every few bytes, and a copy per plain run between them
/// (a call each) or a push per byte (a capacity check each) cost more than the rest of the
/// line.
pub(crate) fn push_escaped<E: Escapes>(out: &mut Vec<u8>, text: &str) {
    // Debug's escapes past ASCII are per character, not per byte: the caller sees to it.
    debug_assert!(
        !E::DEL || text.is_ascii(),
        "DebugAscii escapes ASCII text only"
    );
    let bytes = text.as_bytes();
    out.reserve(2 * bytes.len() + 16);
    let mut words = bytes.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let value = u64::from_le_bytes(word);
        let mut marked = marks::<E>(value);
        if marked == 0 {
            out.extend_from_slice(&word);
            continue;
        }
        let mut from = 0;
        while marked != 0 {
            let at = (marked.trailing_zeros() / 8) as usize;
            push_part(out, value, from, at);
            push_escape::<E>(word[at], out);
            from = at + 1;
            marked &= marked - 1;
        }
        if from < 8 {
            push_part(out, value, from, 8);
        }
    }
    for &byte in words.remainder() {
        if E::TABLE[usize::from(byte)] {
            push_escape::<E>(byte, out);
        } else {
            out.push(byte);
        }
    }
}

/// The escapes both formats write as a backslash and one character.
const SHORT: [u8; 256] = {
    let mut table = [0; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table
};

fn push_escape<E: Escapes>(byte: u8, out: &mut Vec<u8>) {
    match SHORT[usize::from(byte)] {
        0 => E::escape(byte, out),
        second => out.extend_from_slice(&[b'\\', second]),
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

    /// Every byte to escape, at every offset of a word and next to every other, as the byte at
    /// a time loop escapes it.
    #[test]
    fn word_at_a_time_escapes_as_byte_at_a_time() {
        fn one_by_one(text: &str, table: &[bool; 256], escape: fn(u8, &mut Vec<u8>)) -> Vec<u8> {
            let mut out = Vec::new();
            for &byte in text.as_bytes() {
                if table[usize::from(byte)] {
                    escape(byte, &mut out);
                } else {
                    out.push(byte);
                }
            }
            out
        }
        let specials: Vec<char> = (0u8..0x20)
            .chain([b'"', b'\\', 0x7f, b'a', b' ', b'~', b'!', b'#', b'[', b']'])
            .map(char::from)
            .collect();
        let mut texts = vec![
            String::new(),
            "plain text, long enough for words".to_owned(),
        ];
        for (i, &special) in specials.iter().enumerate() {
            for offset in 0..17 {
                let mut text = "x".repeat(offset);
                text.push(special);
                text.push(specials[(i * 7 + offset) % specials.len()]);
                text.push_str("tail of it");
                texts.push(text);
            }
        }
        texts.push(specials.iter().collect());
        // Long texts, escapes everywhere and nowhere.
        let every_special: String = specials.iter().collect();
        texts.push(every_special.repeat(40));
        texts.push("plain ".repeat(100));
        texts.push(format!("{}\"{}\u{1}", "q\"".repeat(300), "x".repeat(500)));
        texts.push("é \u{2028} \"q\" \\ \u{1f600}\n".to_owned());
        for text in &texts {
            let mut json = b"x".to_vec();
            push_escaped::<Json>(&mut json, text);
            assert_eq!(
                json[1..],
                one_by_one(text, &JSON_ESCAPES, json_escape),
                "{text:?}"
            );
            if text.is_ascii() {
                let mut debug = b"x".to_vec();
                push_escaped::<DebugAscii>(&mut debug, text);
                let expected = one_by_one(text, &DEBUG_ESCAPES, debug_escape);
                assert_eq!(debug[1..], expected, "{text:?}");
                assert_eq!(
                    format!("\"{}\"", String::from_utf8(expected).unwrap()),
                    format!("{text:?}")
                );
            }
        }
    }

    /// The marks of a word are exactly the bytes the tables escape, whatever their neighbours
    /// (no borrow or carry runs from one byte into the next): every pair of bytes, side by side.
    #[test]
    fn marks_are_exactly_the_bytes_to_escape() {
        fn expected(word: [u8; 8], table: &[bool; 256]) -> u64 {
            (0..8)
                .filter(|&i| table[usize::from(word[i])])
                .map(|i| 0x80u64 << (8 * i))
                .sum()
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let word = [b'x', a, b, 0x20, a, a, b, b];
                let value = u64::from_le_bytes(word);
                assert_eq!(
                    marks::<Json>(value),
                    expected(word, &JSON_ESCAPES),
                    "{a:#x} {b:#x}"
                );
                if a.is_ascii() && b.is_ascii() {
                    let debug = expected(word, &DEBUG_ESCAPES);
                    assert_eq!(marks::<DebugAscii>(value), debug, "{a:#x} {b:#x}");
                }
            }
        }
    }

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
            // Byte for byte as serde_json writes it (tracing-subscriber's JSON lines do).
            assert_eq!(ours, serde_json::to_string(text).unwrap());
            let mut words = b"\"".to_vec();
            push_escaped::<Json>(&mut words, text);
            words.push(b'"');
            assert_eq!(String::from_utf8(words).unwrap(), ours);
            assert!(!ours[1..ours.len() - 1].bytes().any(|b| b < 0x20));
        }
    }
}
