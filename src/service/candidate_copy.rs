//! Copying the stored members a patch does not name into the merged object (`candidate`).

use std::sync::Arc;

use super::{Notes, ObjectText, begin_member, note, note_object_value};
use crate::store::members::Member;

/// Stored members copied as they are into the merged object.
pub(super) struct Copy<'o, 'r, 'n, 'v> {
    pub(super) out: &'o mut Vec<u8>,
    /// Where the merged object's first member starts.
    pub(super) first: usize,
    pub(super) record: &'o mut Option<Notes<'r>>,
    /// The stored object's noted values, walked forward, when they are noted.
    pub(super) noted: Option<&'n mut NotedValues<'v>>,
}

/// A stored object's noted values, walked in text order.
pub(super) type NotedValues<'v> = std::iter::Peekable<std::slice::Iter<'v, (usize, Arc<[Member]>)>>;

impl Copy<'_, '_, '_, '_> {
    /// Copies `members`, consecutive members of `stored`. Written compact in the stored text
    /// (as this crate writes: one comma between members, nothing around colons), they are
    /// copied with one copy and their places shifted: a big object's hundreds of untouched
    /// members cost a copy, not a write each. Otherwise member by member, as `key:value`.
    pub(super) fn run(&mut self, stored: &ObjectText<'_>, members: &[Member]) {
        let (Some(head), Some(tail)) = (members.first(), members.last()) else {
            return;
        };
        let text = head.key.start..tail.value.end;
        let compact_len: usize = members
            .iter()
            .map(|member| member.key.len() + 1 + member.value.len())
            .sum::<usize>()
            + members.len()
            - 1;
        if text.len() != compact_len {
            for member in members {
                self.member(stored, member);
            }
            return;
        }
        if self.out.len() > self.first {
            self.out.push(b',');
        }
        let out_start = self.out.len();
        self.out.extend_from_slice(&stored.json[text.clone()]);
        // A place in `stored` to one in `out`.
        let moved = |at: usize| at - text.start + out_start;
        if let Some(notes) = self.record.as_mut() {
            let origin = notes.origin;
            notes.members.extend(members.iter().map(|member| Member {
                key: moved(member.key.start) - origin..moved(member.key.end) - origin,
                value: moved(member.value.start) - origin..moved(member.value.end) - origin,
                escaped: member.escaped,
            }));
        }
        if let Some(noted) = self.noted.as_deref_mut() {
            for member in members {
                if noted.peek().is_none() {
                    break;
                }
                if let Some(values) = noted_at(noted, member.value.start) {
                    note_object_value(self.record, moved(member.value.start), Some(values.clone()));
                }
            }
        }
    }

    /// Copies one member as `key:value`.
    fn member(&mut self, stored: &ObjectText<'_>, member: &Member) {
        let key = stored.key(member);
        let start = begin_member(self.out, self.first, key);
        let value_at = self.out.len();
        self.out.extend_from_slice(stored.value(member));
        note(
            self.record,
            self.out,
            start,
            key.len(),
            member.escaped,
            false,
        );
        if let Some(noted) = self.noted.as_deref_mut()
            && noted.peek().is_some()
            && let Some(values) = noted_at(noted, member.value.start)
        {
            note_object_value(self.record, value_at, Some(values.clone()));
        }
    }
}

/// The noted members of the value starting at `at`, from `noted` walked forward (values
/// before `at` are passed by).
fn noted_at<'v>(noted: &mut NotedValues<'v>, at: usize) -> Option<&'v Arc<[Member]>> {
    while noted.next_if(|(start, _)| *start < at).is_some() {}
    noted
        .next_if(|(start, _)| *start == at)
        .map(|(_, members)| members)
}
