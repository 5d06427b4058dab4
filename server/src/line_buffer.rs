//! The bytes of a log line being built: a buffer kept at its full length, zeros or old bytes
//! past what the line has written, so that a writer can be handed room to write into.
//!
//! Escaping a text into a `Vec` either pushes byte by byte (a capacity check each) or grows
//! the `Vec` first with `resize`, which fills the room with zeros only to overwrite them: a
//! `memset` call for every escaped field, eight a PATCH. Here the room is already there from
//! the lines before, and the line only moves its end.

use std::ops::Range;

/// Bytes appended to, as a line is: a `Vec<u8>` or a [`LineBuffer`].
pub(crate) trait PushBytes {
    fn push_bytes(&mut self, bytes: &[u8]);
}

impl PushBytes for Vec<u8> {
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A line's bytes: `bytes[..used]`, with `bytes` as long as the longest line yet. Past
/// `used` lie earlier lines' bytes (audit records among them): they never leave, neither
/// through [`as_bytes`](Self::as_bytes) nor through `Debug`, and a writer can take into the
/// line only what it was given room for.
#[derive(Default)]
pub(crate) struct LineBuffer {
    bytes: Vec<u8>,
    used: usize,
    /// The end of the room last given: [`advance`](Self::advance) stops there.
    room_end: usize,
}

impl std::fmt::Debug for LineBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineBuffer")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl LineBuffer {
    pub(crate) const fn new() -> Self {
        Self {
            bytes: Vec::new(),
            used: 0,
            room_end: 0,
        }
    }

    /// Starts a new line; a buffer grown past `keep` bytes by a long line is given back.
    pub(crate) fn clear(&mut self, keep: usize) {
        self.used = 0;
        self.room_end = 0;
        if self.bytes.len() > keep {
            self.bytes = Vec::new();
        }
    }

    /// How many bytes the line holds.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.used
    }

    /// Cuts the line back to its first `len` bytes.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.used = self.used.min(len);
        self.room_end = self.room_end.min(self.used);
    }

    /// What the line holds.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.used]
    }

    /// `len` bytes to write into, just past the line's end; [`advance`] then says
    /// how many of them the line now holds.
    ///
    /// [`advance`]: Self::advance
    #[inline]
    pub(crate) fn room(&mut self, len: usize) -> &mut [u8] {
        let needed = self.used + len;
        if needed > self.bytes.len() {
            self.grow(needed);
        }
        self.room_end = needed;
        &mut self.bytes[self.used..needed]
    }

    /// Doubling, so that a line that grows field by field is not copied on each.
    #[cold]
    fn grow(&mut self, needed: usize) {
        let grown = needed.max(2 * self.bytes.len()).max(256);
        self.bytes.resize(grown, 0);
    }

    /// Takes `len` bytes written into [`room`](Self::room) into the line.
    #[inline]
    pub(crate) fn advance(&mut self, len: usize) {
        assert!(self.used + len <= self.room_end, "past the room given");
        self.used += len;
    }

    #[inline]
    pub(crate) fn push(&mut self, byte: u8) {
        self.room(1)[0] = byte;
        self.used += 1;
    }
}

impl LineBuffer {
    /// Appends a short constant text in one fixed-size copy (a `memcpy` call for a dozen
    /// bytes costs as much as the rest of a field).
    #[inline]
    pub(crate) fn push_padded<const N: usize>(&mut self, text: &Padded<N>) {
        self.room(N)[..N].copy_from_slice(&text.bytes);
        self.used += usize::from(text.len);
    }
}

impl LineBuffer {
    /// Appends `prefix`, then again the line's own bytes at `earlier`.
    pub(crate) fn push_repeated<const N: usize>(
        &mut self,
        prefix: &Padded<N>,
        earlier: Range<usize>,
    ) {
        assert!(
            earlier.end <= self.used,
            "repeats the line's own bytes only"
        );
        let len = earlier.len();
        self.room(N + len)[..N].copy_from_slice(&prefix.bytes);
        let at = self.used + prefix.len();
        self.bytes.copy_within(earlier, at);
        self.advance(prefix.len() + len);
    }
}

/// The size of a field's [`Padded`] name.
pub(crate) const PADDED: usize = 32;

/// A constant text of at most `N` bytes, kept padded to that size.
#[derive(Debug)]
pub(crate) struct Padded<const N: usize = PADDED> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Padded<N> {
    /// `text`, checked (at compile time, where it is a constant) to fit.
    pub(crate) const fn new(text: &str) -> Self {
        Self::joined(&[text])
    }

    /// `parts` one after the other, checked (at compile time, where they are constants) to
    /// fit.
    pub(crate) const fn joined(parts: &[&str]) -> Self {
        assert!(N <= u8::MAX as usize, "a padded length fits a byte");
        let mut bytes = [0; N];
        let mut len = 0;
        let mut part = 0;
        while part < parts.len() {
            let from = parts[part].as_bytes();
            assert!(len + from.len() <= N, "too long to pad");
            let mut at = 0;
            while at < from.len() {
                bytes[len] = from[at];
                len += 1;
                at += 1;
            }
            part += 1;
        }
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// The text, then zeros up to `N` bytes.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8; N] {
        &self.bytes
    }

    /// How long the text is.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl PushBytes for LineBuffer {
    #[inline]
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.room(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_what_was_pushed_and_written_into_its_room() {
        let mut line = LineBuffer::new();
        line.push_bytes(b"time ");
        line.push(b'x');
        let room = line.room(3);
        room[..2].copy_from_slice(b"ab");
        // Room written but not advanced over is not the line's.
        room[2] = b'!';
        line.advance(2);
        assert_eq!(line.as_bytes(), b"time xab");
        // Longer than any room yet: the buffer grows, what was written stays.
        let long = vec![b'y'; 1000];
        line.push_bytes(&long);
        assert_eq!(line.as_bytes().len(), 1008);
        assert!(line.as_bytes().starts_with(b"time xaby"));
        // A new line starts empty; a buffer past what is kept is given back.
        line.clear(4096);
        assert_eq!(line.as_bytes(), b"");
        assert!(line.bytes.len() >= 1008);
        line.push_bytes(b"next");
        assert_eq!(line.as_bytes(), b"next");
        line.clear(16);
        assert_eq!(line.bytes.len(), 0);
    }

    #[test]
    fn padded_texts_push_their_own_bytes_only() {
        const FIELD: Padded = Padded::new(" target_tenant=");
        let longest = "x".repeat(PADDED);
        let mut line = LineBuffer::new();
        line.push_bytes(b"old bytes past the end of the next line, longer than the room");
        line.clear(4096);
        line.push_padded(&FIELD);
        line.push_padded(&Padded::<PADDED>::new(""));
        line.push_padded(&Padded::<PADDED>::new(&longest));
        line.push_padded(&Padded::<64>::joined(&["a", "", "bc"]));
        line.push(b'!');
        assert_eq!(
            line.as_bytes(),
            format!(" target_tenant={longest}abc!").as_bytes()
        );
    }

    #[test]
    #[should_panic(expected = "too long to pad")]
    fn a_text_too_long_to_pad_is_refused() {
        let _ = Padded::<PADDED>::new(&"x".repeat(PADDED + 1));
    }

    #[test]
    #[should_panic(expected = "past the room given")]
    fn advancing_past_the_room_is_refused() {
        let mut line = LineBuffer::new();
        let len = line.room(4).len();
        line.advance(len + 1);
    }
}
