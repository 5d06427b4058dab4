//! String escaping for log lines, in two ways: for the lines written directly
//! (`direct_lines`), sixteen bytes at a time straight into the line's buffer
//! ([`push_quoted`]); for the events formatted through `tracing`, a run
//! at a time: the plain runs between the bytes that need an escape are copied whole into a
//! per-thread scratch buffer, which then goes to the line with one `write_str`. Going through
//! the line's `fmt::Write` for every run (two calls per escape, and an audited patch is JSON
//! full of quotes) cost more than formatting the rest of the line.

use std::cell::RefCell;
use std::fmt::{self, Write};

use crate::line_buffer::{LineBuffer, PADDED, Padded, PushBytes};

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

/// The two-character escape `Debug` and JSON write alike for `byte`, if it has one
/// ([`SHORT`]).
fn short_escape(byte: u8) -> Option<[u8; 2]> {
    match SHORT[usize::from(byte)] {
        0 => None,
        second => Some([b'\\', second]),
    }
}

/// Lowercase hexadecimal digits, as `{:x}` writes them.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// How `<str as Debug>` writes `byte`, one of [`DEBUG_ESCAPES`].
pub(crate) fn debug_escape(byte: u8, out: &mut impl PushBytes) {
    match (short_escape(byte), byte) {
        (Some(escape), _) => out.push_bytes(&escape),
        (None, b'\0') => out.push_bytes(b"\\0"),
        // `\u{1f}`: as `{:x}` writes it, without leading zeros.
        (None, 0..0x10) => out.push_bytes(&[b'\\', b'u', b'{', HEX[usize::from(byte)], b'}']),
        (None, _) => out.push_bytes(&[
            b'\\',
            b'u',
            b'{',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
            b'}',
        ]),
    }
}

/// How a JSON string writes `byte`, one of [`JSON_ESCAPES`].
pub(crate) fn json_escape(byte: u8, out: &mut impl PushBytes) {
    match short_escape(byte) {
        Some(escape) => out.push_bytes(&escape),
        // As `serde_json` (and so `tracing-subscriber`'s JSON lines) writes them.
        None if byte == 0x08 => out.push_bytes(b"\\b"),
        None if byte == 0x0c => out.push_bytes(b"\\f"),
        None => out.push_bytes(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
    }
}

/// How a byte is escaped, a block at a time: which bytes need it and how one is written.
pub(crate) trait Escapes {
    /// `Debug`'s escapes: `DEL` too, and nothing past ASCII, where `Debug` escapes by
    /// character, not by byte (the text is then not escaped here at all).
    const DEBUG: bool;
    fn escape(byte: u8, out: &mut impl PushBytes);
}

/// As `<str as Debug>` escapes ASCII text.
pub(crate) struct DebugAscii;

impl Escapes for DebugAscii {
    const DEBUG: bool = true;
    fn escape(byte: u8, out: &mut impl PushBytes) {
        debug_escape(byte, out);
    }
}

/// As a JSON string (RFC 8259 §7).
pub(crate) struct Json;

impl Escapes for Json {
    const DEBUG: bool = false;
    fn escape(byte: u8, out: &mut impl PushBytes) {
        json_escape(byte, out);
    }
}

/// The high bit of every byte.
const HIGHS: u128 = u128::from_ne_bytes([0x80; 16]);

/// The bytes of `block` that `E` escapes, each marked by its high bit (byte `i` of the block is
/// byte `i` of the number, little-endian). Written a byte at a time with no branch, so that the
/// compiler makes it a few vector instructions for all sixteen (SSE2, in every x86-64 CPU;
/// the objdump of a release build shows `pminub`, four `pcmpeqb`, no loop: 18 instructions a
/// block with the call, by callgrind). The eight-byte arithmetic it replaced (`0x7f` masks,
/// sums that reach a byte's high bit) cost twice as many instructions a byte. Never inlined:
/// inlined into the loops that call it, it was left scalar (`push_quoted`: 7.9k instructions a
/// PATCH against 2.3k).
#[inline(never)]
fn marks<E: Escapes>(block: &[u8; 16]) -> u128 {
    let mut flags = [0u8; 16];
    for at in 0..16 {
        flags[at] = u8::from(escaped::<E>(block[at])).wrapping_neg();
    }
    u128::from_le_bytes(flags) & HIGHS
}

/// Whether `E` escapes `byte` (or, for `Debug`, stops at it: past ASCII), without a branch
/// (see [`marks`]).
fn escaped<E: Escapes>(byte: u8) -> bool {
    (byte < 0x20) | (byte == b'"') | (byte == b'\\') | (E::DEBUG & (byte >= 0x7f))
}

/// `text` was not ASCII: nothing was written.
#[derive(Debug)]
pub(crate) struct PastAscii;

/// Appends `prefix` (a field's name and what comes before its value) and `text` between
/// quotes, escaped as `E` says; when `E` is `Debug` and `text` is not ASCII, appends nothing
/// and says so.
///
/// Most fields (ids, names, values the server made) have nothing to escape: the prefix, the
/// quote and the text are copied into one room (the prefix in one fixed-size copy, the text
/// in one `memcpy`), then the text is looked over where it landed, a block at a time with
/// nothing stored per block. The room holds the text rounded up to a block, so the last block
/// read is whole: its bytes past the text are not the text's, and a mark there is not taken
/// for one. A text with an escape goes on from its first ([`escape_rest`]).
pub(crate) fn push_quoted<E: Escapes>(
    out: &mut LineBuffer,
    prefix: &Padded,
    text: &str,
) -> Result<(), PastAscii> {
    let start = out.len();
    let text = text.as_bytes();
    let lead = prefix.len() + 1;
    // The prefix padded, the quote, the text rounded up to a block and its closing quote.
    let room = out.room(PADDED + 1 + 2 * text.len() + 17);
    room[..PADDED].copy_from_slice(prefix.bytes());
    room[lead - 1] = b'"';
    let value = &mut room[lead..];
    value[..text.len()].copy_from_slice(text);
    let plain = plain_prefix::<E>(value, text.len());
    if plain == text.len() {
        value[plain] = b'"';
        out.advance(lead + plain + 1);
        return Ok(());
    }
    out.advance(lead + plain);
    if escape_rest::<E>(out, &text[plain..]).is_err() {
        out.truncate(start);
        return Err(PastAscii);
    }
    out.push(b'"');
    Ok(())
}

/// Appends `rest` escaped as `E` says (its first byte, if any, is one to escape), sixteen
/// bytes at a time: each block is read once and its bytes to escape found at once. An audited
/// patch is JSON with a quote every few bytes, and a copy per plain run between them (a call
/// each) or a push per byte (a capacity check each) cost more than the rest of the line. So
/// the blocks are stored at a fixed size into the room past the line's end (as much as the
/// common escapes, a backslash and one character, can write), each over the unused tail of
/// the last, and the line then takes what was written; a longer escape (`\u{1}`, `\u0001`) is
/// pushed on its own, then the rest goes on.
fn escape_rest<E: Escapes>(out: &mut LineBuffer, mut rest: &[u8]) -> Result<(), PastAscii> {
    while let Some((&byte, after)) = rest.split_first() {
        if E::DEBUG && !byte.is_ascii() {
            return Err(PastAscii);
        }
        E::escape(byte, out);
        rest = after;
        // Each byte writes at most two, and the last block's window reaches past them.
        let (read, written) = escape_short::<E>(rest, out.room(2 * rest.len() + WINDOW));
        out.advance(written);
        rest = &rest[read..];
    }
    Ok(())
}

/// How many of the first `len` bytes of `written` come before the first that `E` escapes;
/// `written` is `len` rounded up to a block, or longer.
#[inline]
fn plain_prefix<E: Escapes>(written: &[u8], len: usize) -> usize {
    let mut at = 0;
    while at < len {
        let mut block = [0; 16];
        block.copy_from_slice(&written[at..at + 16]);
        let marked = marks::<E>(&block);
        if marked != 0 {
            return len.min(at + (marked.trailing_zeros() / 8) as usize);
        }
        at += 16;
    }
    len
}

/// Escapes `text` into `to` up to its end or its first byte with a longer escape than a
/// backslash and one character: how many bytes were read and written. `to` holds twice
/// `text`'s length and a [`WINDOW`] more (the last block's window starts at most at twice
/// the bytes before it).
fn escape_short<E: Escapes>(text: &[u8], to: &mut [u8]) -> (usize, usize) {
    if text.len() < 16 {
        return escape_bytes::<E>(text, to);
    }
    let mut read = 0;
    let mut written = 0;
    let mut blocks = text.chunks_exact(16);
    for chunk in blocks.by_ref() {
        let mut block = [0; 16];
        block.copy_from_slice(chunk);
        match escape_block(block, marks::<E>(&block), to, written) {
            Ok(end) => written = end,
            Err((at, end)) => return (read + at, end),
        }
        read += 16;
    }
    let tail = blocks.remainder().len();
    if tail > 0 {
        // The last sixteen bytes, the tail at their end, shifted down to the tail: the bytes
        // shifted in at the top are zeros, not marked, cut off after.
        let mut block = [0; 16];
        block.copy_from_slice(&text[text.len() - 16..]);
        let shift = 8 * (16 - tail as u32);
        let value = u128::from_le_bytes(block) >> shift;
        let marked = marks::<E>(&block) >> shift;
        match escape_block(value.to_le_bytes(), marked, to, written) {
            Ok(end) => written = end - (16 - tail),
            Err((at, end)) => return (read + at, end),
        }
        read += tail;
    }
    (read, written)
}

/// [`escape_short`] for a text shorter than a block, a byte at a time.
fn escape_bytes<E: Escapes>(text: &[u8], to: &mut [u8]) -> (usize, usize) {
    let mut written = 0;
    for (read, &byte) in text.iter().enumerate() {
        if escaped::<E>(byte) {
            let second = SHORT[usize::from(byte)];
            if second == 0 {
                return (read, written);
            }
            to[written] = b'\\';
            to[written + 1] = second;
            written += 2;
        } else {
            to[written] = byte;
            written += 1;
        }
    }
    (text.len(), written)
}

/// How many bytes a block's escapes may reach past where the block starts: the sixteen bytes
/// doubled, and the eight-byte store of a word's rest after the last of them.
const WINDOW: usize = 48;

/// Writes `block` into `to` at `at`, its `marked` bytes (high bits) escaped: where the next
/// block goes, or, at a byte with a longer escape, where it is in the block and where the
/// bytes before it end. `to` holds [`WINDOW`] bytes from `at`: one bounds check for the block,
/// none for each escape (their places in the window are masked to what they can be).
#[inline(always)]
fn escape_block(
    block: [u8; 16],
    marked: u128,
    to: &mut [u8],
    at: usize,
) -> Result<usize, (usize, usize)> {
    let window: &mut [u8; WINDOW] = (&mut to[at..at + WINDOW])
        .try_into()
        .expect("a window's room");
    window[..16].copy_from_slice(&block);
    if marked == 0 {
        return Ok(at + 16);
    }
    // Half by half: a bit count and a shift of a `u64` are one instruction each, of a `u128`
    // four or five.
    let (low, high) = block.split_at(8);
    let end =
        escape_word(low, marked as u64, window, 0).map_err(|(escaped, end)| (escaped, at + end))?;
    escape_word(high, (marked >> 64) as u64, window, end)
        .map(|end| at + end)
        .map_err(|(escaped, end)| (8 + escaped, at + end))
}

/// [`escape_block`] for eight bytes written at `at` in the block's window (at most sixteen:
/// the first word's eight bytes, each doubled).
#[inline(always)]
fn escape_word(
    word: &[u8],
    mut marked: u64,
    window: &mut [u8; WINDOW],
    at: usize,
) -> Result<usize, (usize, usize)> {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(word);
    // Every place below is under 32 (a block's sixteen bytes, each doubled): the masks change
    // nothing but let the compiler see the stores stay in the window.
    let mut at = at & 31;
    window[at..at + 8].copy_from_slice(&bytes);
    if marked == 0 {
        return Ok(at + 8);
    }
    let value = u64::from_le_bytes(bytes);
    let mut from = 0;
    while marked != 0 {
        let escaped = (marked.trailing_zeros() / 8) as usize;
        // The plain bytes before the escape are in place already (the eight stored last).
        at = (at + escaped - from) & 31;
        let second = SHORT[usize::from(bytes[escaped & 7])];
        if second == 0 {
            return Err((escaped, at));
        }
        window[at] = b'\\';
        window[at + 1] = second;
        at += 2;
        from = escaped + 1;
        if from < 8 {
            // The rest of the word, moved down past the escape.
            window[at..at + 8].copy_from_slice(&(value >> (8 * from)).to_le_bytes());
        }
        marked &= marked - 1;
    }
    Ok(at + 8 - from)
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
#[path = "escapes_tests.rs"]
mod tests;
