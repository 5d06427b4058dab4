//! A strict scan of a patch's JSON text, instead of building a `serde_json::Value` of it: it
//! checks everything [`parse`](super::parse) checks and indexes the top-level members (and
//! those of top-level object values), with no allocation per string and no hashing of names. The write path merges the
//! text as it is (`service::candidate`); a `Value` is built only when something asks for one.
//!
//! The scan accepts a subset of what the `Value` parse accepts (never more): a text it
//! refuses goes to that parse, which either refuses it with its precise message or accepts
//! it (then the patch is written out again as compact JSON and scanned, see
//! [`MergePatch::parse`](super::MergePatch::parse)). The tests compare the two on many texts.

use std::borrow::Cow;

use std::sync::Arc;

use crate::store::members::{Member, NotedObjectValues};

/// Objects with more members than this find duplicate names through a hash set; smaller ones
/// compare each name with the ones before it.
const COMPARE_NAMES_UP_TO: usize = 16;

/// The top-level members of `text` when it is one JSON object nested at most `max_depth`
/// containers deep, with no member named twice in any object, no U+0000, no lone surrogate,
/// no number outside what a `Value` holds exactly (integers past 64 bits) or at all
/// (infinite), nothing after the object; `None` for anything else.
#[cfg(test)]
pub(crate) fn scan(text: &[u8], max_depth: usize) -> Option<Vec<Member>> {
    scan_noting_compact(text, max_depth).map(|scanned| scanned.members)
}

/// What [`scan_noting_compact`] finds.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The top-level members.
    pub(crate) members: Vec<Member>,
    /// The members of the top-level members' object values
    /// ([`ObjectValues`](crate::store::members::ObjectValues)).
    pub(crate) object_values: NotedObjectValues,
    /// The text is in `serde_json`'s compact form.
    pub(crate) compact: bool,
}

/// [`scan`], with the members of top-level object values, and whether `text` is already in
/// `serde_json`'s compact form: no space between tokens, no escape in a string, no float (nor
/// `-0`, which is read as one). Then writing it out compact gives it back unchanged.
pub(crate) fn scan_noting_compact(text: &[u8], max_depth: usize) -> Option<Scanned> {
    // Every byte sequence inside a string is valid UTF-8 once the whole text is.
    std::str::from_utf8(text).ok()?;
    let mut scanner = Scanner {
        text,
        at: 0,
        compact: true,
    };
    scanner.skip_space();
    if scanner.peek()? != b'{' {
        return None;
    }
    let mut object_values = Vec::new();
    let members = scanner.object(max_depth, Some(&mut object_values))?;
    scanner.skip_space();
    (scanner.at == text.len()).then_some(Scanned {
        members,
        object_values,
        compact: scanner.compact,
    })
}

/// The name a key literal (quotes included) spells: borrowed when it holds no escape.
pub(crate) fn name_of(literal: &[u8], escaped: bool) -> Option<Cow<'_, str>> {
    if escaped {
        #[cfg(test)]
        DECODED.with(|decoded| decoded.set(decoded.get() + 1));
        serde_json::from_slice::<String>(literal)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(&literal[1..literal.len() - 1])
            .ok()
            .map(Cow::Borrowed)
    }
}

/// The bytes that end a run of plain characters in a string literal: the closing quote, a
/// backslash, and the control characters JSON forbids there.
pub(crate) const STOPS_A_STRING_RUN: [bool; 256] = {
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

/// Where the first byte of `bytes` that ends a run of plain string characters
/// ([`STOPS_A_STRING_RUN`]) is; `None` when none does. Eight bytes at a time: a byte-by-byte
/// lookup cost ~7.5 instructions a byte on the patch scan's strings (callgrind).
pub(crate) fn string_run_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // A byte's high bit, for each of: it is a quote, a backslash, below 0x20. A borrow
        // can only flag bytes above one that is flagged rightly, so the lowest flag is the
        // first stop (little-endian: the lowest byte comes first).
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let stops = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGH_BITS;
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter()
        .position(|&b| STOPS_A_STRING_RUN[usize::from(b)])
        .map(|n| at + n)
}

#[cfg(test)]
thread_local! {
    /// Escaped names decoded on this thread: the tests check that merges and scans decode
    /// each name a bounded number of times, not once per other member.
    pub(crate) static DECODED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    /// Nothing seen so far that `serde_json`'s compact form writes otherwise.
    compact: bool,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
            self.compact = false;
        }
    }

    fn value(&mut self, depth_left: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth_left, None).map(drop),
            b'[' => self.array(depth_left),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.text.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The object at `at`, and its members; the members of its object values noted in
    /// `values` (with offsets into each value's text) when given.
    fn object(
        &mut self,
        depth_left: usize,
        mut values: Option<&mut NotedObjectValues>,
    ) -> Option<Vec<Member>> {
        let depth_left = depth_left.checked_sub(1)?;
        self.at += 1;
        self.skip_space();
        let mut members = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(members);
        }
        let mut seen: Option<std::collections::HashSet<Cow<'a, str>>> = None;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key_start = self.at;
            let escaped = self.string()?;
            let key = key_start..self.at;
            self.skip_space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.skip_space();
            let value_start = self.at;
            match values.as_deref_mut() {
                Some(values) if self.peek() == Some(b'{') => {
                    let inner = self.object(depth_left, None)?;
                    values.push((value_start, shifted(inner, value_start)));
                }
                _ => self.value(depth_left)?,
            }
            let member = Member {
                key,
                value: value_start..self.at,
                escaped,
            };
            if named_before(self.text, &members, &member, &mut seen)? {
                return None;
            }
            members.push(member);
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.skip_space();
                }
                b'}' => {
                    self.at += 1;
                    return Some(members);
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth_left: usize) -> Option<()> {
        let depth_left = depth_left.checked_sub(1)?;
        self.at += 1;
        self.skip_space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.value(depth_left)?;
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.skip_space();
                }
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Past the string literal at `at`; whether it holds an escape.
    fn string(&mut self) -> Option<bool> {
        let text = self.text;
        let mut i = self.at + 1;
        let mut escaped = false;
        loop {
            i += string_run_end(text.get(i..)?)?;
            match text[i] {
                b'"' => {
                    self.at = i + 1;
                    self.compact &= !escaped;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    i = escape_end(text, i)?;
                }
                _ => return None,
            }
        }
    }

    /// Past the number at `at`: JSON's grammar, an integer that `i64` or `u64` holds, or a
    /// finite float that is not a number other than zero read as 0.
    fn number(&mut self) -> Option<()> {
        let text = self.text;
        let start = self.at;
        let mut i = start;
        if text.get(i) == Some(&b'-') {
            i += 1;
        }
        match *text.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits_end(text, i),
            _ => return None,
        }
        let mut float = false;
        if text.get(i) == Some(&b'.') {
            let end = digits_end(text, i + 1);
            if end == i + 1 {
                return None;
            }
            (i, float) = (end, true);
        }
        if matches!(text.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(text.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits_end(text, i);
            if end == i {
                return None;
            }
            (i, float) = (end, true);
        }
        let literal = &text[start..i];
        let exact = if float {
            // serde_json's own reading of the literal: it refuses what overflows to infinity,
            // and reads what underflows as 0, which the parse then refuses by name.
            serde_json::from_slice::<serde_json::Number>(literal).is_ok()
                && !std::str::from_utf8(literal).is_ok_and(super::parse::underflows)
        } else {
            let digits = std::str::from_utf8(literal).ok()?;
            if literal[0] == b'-' {
                digits.parse::<i64>().is_ok()
            } else {
                digits.parse::<u64>().is_ok()
            }
        };
        self.compact &= !float && literal != b"-0";
        exact.then(|| self.at = i)
    }
}

/// `members`, with offsets from `origin` instead of from the start of the text.
fn shifted(members: Vec<Member>, origin: usize) -> Arc<[Member]> {
    members
        .into_iter()
        .map(|member| Member {
            key: member.key.start - origin..member.key.end - origin,
            value: member.value.start - origin..member.value.end - origin,
            escaped: member.escaped,
        })
        .collect()
}

/// Whether two of `members` (members of `text`) have the same name; `None` if a name cannot
/// be read.
pub(crate) fn names_repeat(text: &[u8], members: &[Member]) -> Option<bool> {
    let mut seen = None;
    for (at, member) in members.iter().enumerate() {
        if named_before(text, &members[..at], member, &mut seen)? {
            return Some(true);
        }
    }
    Some(false)
}

/// Whether `member`'s name is one of `earlier`'s; `None` if a name cannot be read.
fn named_before<'t>(
    text: &'t [u8],
    earlier: &[Member],
    member: &Member,
    seen: &mut Option<std::collections::HashSet<Cow<'t, str>>>,
) -> Option<bool> {
    let name = |m: &Member| name_of(&text[m.key.clone()], m.escaped);
    // Plain keys are compared as they are; once a name holds an escape, every name goes
    // through the set, decoded once (comparing decoded names pairwise would decode a long
    // escaped name again for every member after it).
    if seen.is_none()
        && earlier.len() < COMPARE_NAMES_UP_TO
        && !member.escaped
        && earlier.iter().all(|m| !m.escaped)
    {
        let own = &text[member.key.clone()];
        return Some(earlier.iter().any(|m| &text[m.key.clone()] == own));
    }
    let seen = match seen {
        Some(seen) => seen,
        None => seen.insert(earlier.iter().map(name).collect::<Option<_>>()?),
    };
    Some(!seen.insert(name(member)?))
}

fn digits_end(text: &[u8], mut i: usize) -> usize {
    while text.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Past the escape at `at` (a backslash); `None` for an unknown escape, `\u0000`, or a
/// surrogate that is not a high one followed by a low one.
fn escape_end(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' => match hex4(text, at + 2)? {
            0 | 0xdc00..=0xdfff => None,
            0xd800..=0xdbff => {
                let low = (text.get(at + 6..at + 8)? == b"\\u").then(|| hex4(text, at + 8))??;
                (0xdc00..=0xdfff).contains(&low).then_some(at + 12)
            }
            _ => Some(at + 6),
        },
        _ => None,
    }
}

fn hex4(text: &[u8], at: usize) -> Option<u32> {
    text.get(at..at + 4)?.iter().try_fold(0, |unit, &digit| {
        Some(unit * 16 + char::from(digit).to_digit(16)?)
    })
}
