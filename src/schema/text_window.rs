//! Where the members a schema check reads lie, as UTF-8 text (`text_json`).

use std::borrow::Cow;

use crate::store::members::Member;

/// Part of an object's text, as UTF-8 (checked once), and where it starts in the text: the
/// members' offsets are into the whole text. Only the part the members span is checked, so
/// a small patch to a big object costs what it touches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window<'a> {
    pub(crate) text: &'a str,
    pub(crate) base: usize,
}

impl<'a> Window<'a> {
    /// A whole text.
    pub(crate) fn whole(text: &'a str) -> Self {
        Self { text, base: 0 }
    }

    /// The part at `at` (offsets into the whole text): token boundaries, so character ones
    /// (empty if not, which a walk of the same text never gives).
    pub(super) fn part(&self, at: &std::ops::Range<usize>) -> &'a str {
        at.start
            .checked_sub(self.base)
            .and_then(|start| self.text.get(start..at.end - self.base))
            .unwrap_or_default()
    }

    /// `member`'s name: borrowed with no check of its bytes when plain.
    pub(super) fn name(&self, member: &Member) -> Option<Cow<'a, str>> {
        let literal = self.part(&member.key);
        if member.escaped {
            serde_json::from_str(literal).ok().map(Cow::Owned)
        } else {
            literal
                .get(1..literal.len().checked_sub(1)?)
                .map(Cow::Borrowed)
        }
    }
}

/// Where chosen members' text is: one window on the part of the text they span, or a window
/// on each member when they lie far apart in a big text (then checking the text as UTF-8
/// costs what the members hold, not what lies between them).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Windows<'a> {
    One(Window<'a>),
    /// The window of each member, by its place in the members.
    Each(&'a [Window<'a>]),
}

impl<'a> Windows<'a> {
    /// The window of the member at `entry`.
    pub(super) fn of(&self, entry: usize) -> Window<'a> {
        match self {
            Self::One(window) => *window,
            Self::Each(windows) => windows.get(entry).copied().unwrap_or(Window::whole("")),
        }
    }
}
