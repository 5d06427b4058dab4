//! The next version of an object built from the stored version's JSON and the patch's JSON
//! text, with no `serde_json::Value` of either: the members a patch does not name are copied
//! as bytes, the members it names are merged (RFC 7396) and written in `serde_json`'s compact
//! form, and where they lie is handed back for the schema to check. The result is byte for
//! byte what merging into a parsed copy and serializing it gives (the tests below compare the
//! two on many objects and patches) for stored JSON in `serde_json`'s compact form, which is
//! what this crate's stores hold; a store of another crate that hands back other spacing or
//! spelling keeps it in the members a patch does not name, at every depth.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::merge_patch::scan::names_repeat;
use crate::merge_patch::value::value_of;
use crate::merge_patch::{apply_to_object, canonical};
use crate::store::members::{self, Member, NotedObjectValues, ObjectValues, object_value};

/// An object after a patch, as JSON, with where its members lie and which ones the patch set.
pub(crate) struct Merged {
    pub(crate) json: Vec<u8>,
    pub(crate) members: Vec<Member>,
    /// The members the patch set (not removed) to a value other than the stored one, in
    /// order: what the schema checks. A member set to the very bytes it had is left out, as
    /// the members the patch does not name are: the object is the same either way.
    pub(crate) touched: Vec<Member>,
    /// The members of top-level object values, where known ([`ObjectValues`]): of those
    /// the patch merged into, and of those copied unchanged from a stored version or from the
    /// patch that had them noted. The schema check reads them; the next write merges with them.
    pub(crate) object_values: NotedObjectValues,
}

impl Merged {
    /// The members the patch changed, with their values after the merge.
    #[cfg(test)]
    pub(crate) fn touched_values(&self) -> Result<Map<String, Value>, serde_json::Error> {
        self.touched
            .iter()
            .map(|member| {
                Ok((
                    member.name(&self.json).ok_or_else(unreadable)?.into_owned(),
                    value_of(&self.json[member.value.clone()])?,
                ))
            })
            .collect()
    }
}

fn unreadable() -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom("a member name cannot be read")
}

/// Nested objects merged as text at most this deep below the top. Each level indexes the
/// stored object it merges into, walking its whole subtree, so the text merge costs the
/// stored object's size once per level; below this depth the stored member is parsed once
/// and merged as a `Value` (linear), as every nested merge was before the text merge.
const MERGE_TEXT_LEVELS: usize = 8;

/// Merges the patch `patch` (a JSON object text the patch scan accepted) into the stored
/// object `stored`.
///
/// Member order is the merge's: stored members where they were, new ones after them in patch
/// order. `stored` names each member once ([`Snapshot::members`] refuses a text that names
/// one twice), and so does each object value it has noted.
///
/// [`Snapshot::members`]: crate::store::Snapshot
///
/// # Errors
/// When a stored object the patch merges into does not scan, or names a member twice (a
/// parser would keep one; copying would keep both): the caller merges a parsed copy instead.
/// Neither happens for JSON this crate wrote.
pub(crate) fn merge_onto_json(
    stored: &ObjectText<'_>,
    patch: &ObjectText<'_>,
) -> Result<Merged, serde_json::Error> {
    let mut merged = Merged {
        json: Vec::with_capacity(stored.json.len() + patch.json.len()),
        members: Vec::with_capacity(stored.members.len() + patch.members.len()),
        touched: Vec::with_capacity(patch.members.len()),
        object_values: Vec::new(),
    };
    let notes = Notes {
        members: &mut merged.members,
        origin: 0,
        set: Some(SetNotes {
            touched: &mut merged.touched,
            object_values: &mut merged.object_values,
        }),
    };
    merge_objects(
        &mut merged.json,
        stored,
        patch,
        MERGE_TEXT_LEVELS,
        Some(notes),
    )?;
    Ok(merged)
}

/// An object's JSON text, where its members lie, the members of those of its object values
/// that are noted ([`ObjectValues`]), and whether the text is in `serde_json`'s compact form
/// ([`scan_noting_compact`](crate::merge_patch::scan::scan_noting_compact); only a patch's
/// compact form is used: its new values are copied as they are).
#[derive(Clone, Copy)]
pub(crate) struct ObjectText<'a> {
    pub(crate) json: &'a [u8],
    pub(crate) members: &'a [Member],
    pub(crate) object_values: &'a ObjectValues,
    pub(crate) compact: bool,
}

impl<'a> ObjectText<'a> {
    fn key(&self, member: &Member) -> &'a [u8] {
        &self.json[member.key.clone()]
    }

    fn value(&self, member: &Member) -> &'a [u8] {
        &self.json[member.value.clone()]
    }

    /// Writes the value of patch member `member` where nothing was (RFC 7396: a `null` member
    /// of an object in it is left out); whether it was copied as it is. A compact text is
    /// already what the writer would write, unless it holds an object with a `null` member
    /// (`:null`: one inside a string only sends the value the long way); the rest goes
    /// through the writer.
    fn write_new_value(
        &self,
        out: &mut Vec<u8>,
        member: &Member,
    ) -> Result<bool, serde_json::Error> {
        let value = self.value(member);
        let verbatim = self.compact
            && (value.first() != Some(&b'{') || !value.windows(5).any(|w| w == b":null"));
        if verbatim {
            out.extend_from_slice(value);
        } else {
            canonical::write(out, value, true)?;
        }
        Ok(verbatim)
    }

    /// The noted members of `member`'s value, if noted.
    fn noted(&self, member: &Member) -> Option<&'a Arc<[Member]>> {
        object_value(self.object_values, member.value.start)
    }

    /// The members of `member`'s value (an object): as noted, else indexed now, and then,
    /// when `check_names`, refused if a name is there twice (a stored text of another
    /// writer; a patch's objects were checked by its scan).
    fn members_of(
        &self,
        member: &Member,
        check_names: bool,
    ) -> Result<Cow<'a, [Member]>, serde_json::Error> {
        if let Some(noted) = self.noted(member) {
            return Ok(Cow::Borrowed(&noted[..]));
        }
        let json = self.value(member);
        let found = members::index(json).ok_or_else(unreadable)?;
        if check_names && names_repeat(json, &found) != Some(false) {
            return Err(unreadable());
        }
        Ok(Cow::Owned(found))
    }
}

/// Where [`merge_objects`] notes what it writes: where each member lands in `out` (as offsets
/// from `origin`, where the object starts); at the top, also which members the patch set and
/// the members of object values.
struct Notes<'r> {
    members: &'r mut Vec<Member>,
    origin: usize,
    set: Option<SetNotes<'r>>,
}

/// What [`Merged::touched`] and [`Merged::object_values`] are made of.
struct SetNotes<'r> {
    touched: &'r mut Vec<Member>,
    object_values: &'r mut NotedObjectValues,
}

impl Notes<'_> {
    /// Whether this is the top, where object values are noted.
    fn notes_object_values(&self) -> bool {
        self.set.is_some()
    }
}

/// Writes `patch` merged into `stored` to `out`, noting what it wrote in `record`.
fn merge_objects(
    out: &mut Vec<u8>,
    stored: &ObjectText<'_>,
    patch: &ObjectText<'_>,
    levels_left: usize,
    mut record: Option<Notes<'_>>,
) -> Result<(), serde_json::Error> {
    let mut names = PatchNames::new(patch)?;
    let mut matched = Matched::new(patch.members.len());
    let noting_values = record.as_ref().is_some_and(Notes::notes_object_values);
    // The stored object's noted values, walked in step with its members (both in text
    // order): a big object copies hundreds of members, each asked for at no search.
    let mut stored_noted = stored.object_values.iter().peekable();
    out.push(b'{');
    let first = out.len();
    // Stored members the patch does not name, not copied yet (by their places in `stored`).
    let mut unnamed: Option<std::ops::Range<usize>> = None;
    let copy_unnamed = |out: &mut Vec<u8>,
                        record: &mut Option<Notes<'_>>,
                        noted: &mut NotedValues<'_>,
                        run: std::ops::Range<usize>| {
        Copy {
            out,
            first,
            record,
            noted: noting_values.then_some(noted),
        }
        .run(stored, &stored.members[run]);
    };
    for (at, member) in stored.members.iter().enumerate() {
        let Some(entry) = names.naming(stored, member, patch)? else {
            unnamed = Some(unnamed.map_or(at..at + 1, |run| run.start..at + 1));
            continue;
        };
        if let Some(run) = unnamed.take() {
            copy_unnamed(out, &mut record, &mut stored_noted, run);
        }
        let key = stored.key(member);
        matched.set(entry);
        let patch_member = &patch.members[entry];
        let value = patch.value(patch_member);
        if canonical::is_null(value) {
            // Removed.
            continue;
        }
        let start = begin_member(out, first, key);
        let value_at = out.len();
        let stored_value = stored.value(member);
        let mut known = None;
        if value.first() == Some(&b'{') && stored_value.first() == Some(&b'{') {
            match levels_left.checked_sub(1) {
                Some(levels_left) => {
                    let stored_members = stored.members_of(member, true)?;
                    let patch_members = patch.members_of(patch_member, false)?;
                    let inner_stored = ObjectText {
                        json: stored_value,
                        members: &stored_members,
                        object_values: &[],
                        compact: false,
                    };
                    let inner_patch = ObjectText {
                        json: value,
                        members: &patch_members,
                        object_values: &[],
                        compact: patch.compact,
                    };
                    // At the top, where the merged object's members land is noted too.
                    let mut inner = noting_values.then(|| Vec::with_capacity(8));
                    let notes = inner.as_mut().map(|members| Notes {
                        members,
                        origin: value_at,
                        set: None,
                    });
                    merge_objects(out, &inner_stored, &inner_patch, levels_left, notes)?;
                    known = inner.map(Arc::from);
                }
                None => merge_parsed(out, stored_value, value)?,
            }
        } else if patch.write_new_value(out, patch_member)? {
            known = patch.noted(patch_member).cloned();
        }
        // At the top, a member whose merged value is the stored one's bytes is unchanged.
        let changed = !noting_values || out[value_at..] != *stored_value;
        note(&mut record, out, start, key.len(), member.escaped, changed);
        note_object_value(&mut record, value_at, known);
    }
    if let Some(run) = unnamed.take() {
        copy_unnamed(out, &mut record, &mut stored_noted, run);
    }
    for (entry, member) in patch.members.iter().enumerate() {
        // New members; `null` for a member that is not there removes nothing.
        let value = patch.value(member);
        if matched.get(entry) || canonical::is_null(value) {
            continue;
        }
        if out.len() > first {
            out.push(b',');
        }
        let start = out.len();
        canonical::write(out, patch.key(member), false)?;
        let key_len = out.len() - start;
        out.push(b':');
        let value_at = out.len();
        let verbatim = patch.write_new_value(out, member)?;
        let escaped = out[start..start + key_len].contains(&b'\\');
        note(&mut record, out, start, key_len, escaped, true);
        note_object_value(
            &mut record,
            value_at,
            verbatim.then(|| patch.noted(member).cloned()).flatten(),
        );
    }
    out.push(b'}');
    Ok(())
}

/// A patch object merged into a stored object member the parsed way: past
/// [`MERGE_TEXT_LEVELS`].
fn merge_parsed(out: &mut Vec<u8>, stored: &[u8], patch: &[u8]) -> Result<(), serde_json::Error> {
    let mut stored: Map<String, Value> = serde_json::from_slice(stored)?;
    let Value::Object(patch) = value_of(patch)? else {
        return Err(unreadable());
    };
    apply_to_object(&mut stored, patch);
    serde_json::to_writer(out, &stored)
}

/// Records the member just written at `start` (a key of `key_len` bytes, a colon, the value).
fn note(
    record: &mut Option<Notes<'_>>,
    out: &[u8],
    start: usize,
    key_len: usize,
    escaped: bool,
    touched: bool,
) {
    if let Some(notes) = record {
        let start = start - notes.origin;
        let member = Member {
            key: start..start + key_len,
            value: start + key_len + 1..out.len() - notes.origin,
            escaped,
        };
        if let (true, Some(set)) = (touched, &mut notes.set) {
            set.touched.push(member.clone());
        }
        notes.members.push(member);
    }
}

/// Records the members of the object value just written at `value_at`, when known, at the
/// top.
#[inline]
fn note_object_value(
    record: &mut Option<Notes<'_>>,
    value_at: usize,
    members: Option<Arc<[Member]>>,
) {
    if let (Some(members), Some(Notes { set: Some(set), .. })) = (members, record) {
        set.object_values.push((value_at, members));
    }
}

/// Writes the separator and `key:`; returns where the key starts.
fn begin_member(out: &mut Vec<u8>, first: usize, key: &[u8]) -> usize {
    if out.len() > first {
        out.push(b',');
    }
    let start = out.len();
    out.extend_from_slice(key);
    out.push(b':');
    start
}

#[path = "candidate_copy.rs"]
mod copy;
use copy::{Copy, NotedValues};

#[path = "candidate_names.rs"]
mod names;
use names::{Matched, PatchNames};

#[cfg(test)]
#[path = "candidate_tests.rs"]
mod tests;
