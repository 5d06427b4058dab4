//! The next version of an object built from the stored version's JSON and the patch's JSON
//! text, with no `serde_json::Value` of either: the members a patch does not name are copied
//! as bytes, the members it names are merged (RFC 7396) and written in `serde_json`'s compact
//! form, and where they lie is handed back for the schema to check. The result is byte for
//! byte what merging into a parsed copy and serializing it gives (the tests below compare the
//! two on many objects and patches) for stored JSON in `serde_json`'s compact form, which is
//! what this crate's stores hold; a store of another crate that hands back other spacing or
//! spelling keeps it in the members a patch does not name, at every depth.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::merge_patch::scan::names_repeat;
use crate::merge_patch::value::value_of;
use crate::merge_patch::{apply_to_object, canonical};
use crate::store::members::{self, Member};

/// An object after a patch, as JSON, with where its members lie and which ones the patch set.
pub(crate) struct Merged {
    pub(crate) json: Vec<u8>,
    pub(crate) members: Vec<Member>,
    /// The members the patch set (not removed), in order: what the schema checks.
    pub(crate) touched: Vec<Member>,
}

impl Merged {
    /// The members the patch set, with their values after the merge.
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

/// Patches of at most this many members are matched to stored members by comparing names
/// (a length check, then bytes): cheaper than hashing every stored name, and still linear in
/// the object. Bigger patches go through a hash map of their names, so that matching stays
/// linear for big objects and big patches alike.
const COMPARE_NAMES_UP_TO: usize = 8;

/// Nested objects merged as text at most this deep below the top. Each level indexes the
/// stored object it merges into, walking its whole subtree, so the text merge costs the
/// stored object's size once per level; below this depth the stored member is parsed once
/// and merged as a `Value` (linear), as every nested merge was before the text merge.
const MERGE_TEXT_LEVELS: usize = 8;

/// Merges the patch `patch` (a JSON object text the patch scan accepted, whose members lie at
/// `patch_members`) into the object whose JSON is `json`, whose members lie at `members`.
///
/// Member order is the merge's: stored members where they were, new ones after them in patch
/// order. `members` names each member once ([`Snapshot::members`] refuses a text that names
/// one twice).
///
/// [`Snapshot::members`]: crate::store::Snapshot
///
/// # Errors
/// When a stored object the patch merges into does not scan, or names a member twice (a
/// parser would keep one; copying would keep both): the caller merges a parsed copy instead.
/// Neither happens for JSON this crate wrote.
pub(crate) fn merge_onto_json(
    json: &[u8],
    members: &[Member],
    patch: &[u8],
    patch_members: &[Member],
) -> Result<Merged, serde_json::Error> {
    let mut merged = Merged {
        json: Vec::with_capacity(json.len() + patch.len()),
        members: Vec::with_capacity(members.len() + patch_members.len()),
        touched: Vec::with_capacity(patch_members.len()),
    };
    let top = Object { json, members };
    let patch = Object {
        json: patch,
        members: patch_members,
    };
    merge_objects(
        &mut merged.json,
        &top,
        &patch,
        MERGE_TEXT_LEVELS,
        Some((&mut merged.members, &mut merged.touched)),
    )?;
    Ok(merged)
}

/// An object's JSON text and where its members lie in it.
struct Object<'a> {
    json: &'a [u8],
    members: &'a [Member],
}

impl Object<'_> {
    fn key(&self, member: &Member) -> &[u8] {
        &self.json[member.key.clone()]
    }

    fn value(&self, member: &Member) -> &[u8] {
        &self.json[member.value.clone()]
    }
}

/// Writes `patch` merged into `stored` to `out`; with `record`, where each member lands in
/// `out` and which ones the patch set.
fn merge_objects(
    out: &mut Vec<u8>,
    stored: &Object<'_>,
    patch: &Object<'_>,
    levels_left: usize,
    mut record: Option<(&mut Vec<Member>, &mut Vec<Member>)>,
) -> Result<(), serde_json::Error> {
    let mut names = PatchNames::new(patch)?;
    let mut matched = Matched::new(patch.members.len());
    out.push(b'{');
    let first = out.len();
    for member in stored.members {
        let key = stored.key(member);
        let Some(entry) = names.naming(stored, member, patch)? else {
            let start = begin_member(out, first, key);
            out.extend_from_slice(stored.value(member));
            note(&mut record, out, start, key.len(), member.escaped, false);
            continue;
        };
        matched.set(entry);
        let value = patch.value(&patch.members[entry]);
        if canonical::is_null(value) {
            // Removed.
            continue;
        }
        let start = begin_member(out, first, key);
        let stored_value = stored.value(member);
        if value.first() == Some(&b'{') && stored_value.first() == Some(&b'{') {
            match levels_left.checked_sub(1) {
                Some(levels_left) => merge_nested(out, stored_value, value, levels_left)?,
                None => merge_parsed(out, stored_value, value)?,
            }
        } else {
            canonical::write(out, value, true)?;
        }
        note(&mut record, out, start, key.len(), member.escaped, true);
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
        canonical::write(out, value, true)?;
        let escaped = out[start..start + key_len].contains(&b'\\');
        note(&mut record, out, start, key_len, escaped, true);
    }
    out.push(b'}');
    Ok(())
}

/// A patch object merged into a stored object member: both indexed, then merged.
fn merge_nested(
    out: &mut Vec<u8>,
    stored: &[u8],
    patch: &[u8],
    levels_left: usize,
) -> Result<(), serde_json::Error> {
    let stored_members = members::index(stored).ok_or_else(unreadable)?;
    if names_repeat(stored, &stored_members) != Some(false) {
        return Err(unreadable());
    }
    let patch_members = members::index(patch).ok_or_else(unreadable)?;
    let stored = Object {
        json: stored,
        members: &stored_members,
    };
    let patch = Object {
        json: patch,
        members: &patch_members,
    };
    merge_objects(out, &stored, &patch, levels_left, None)
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
    record: &mut Option<(&mut Vec<Member>, &mut Vec<Member>)>,
    out: &[u8],
    start: usize,
    key_len: usize,
    escaped: bool,
    touched: bool,
) {
    if let Some((members, set)) = record {
        let member = Member {
            key: start..start + key_len,
            value: start + key_len + 1..out.len(),
            escaped,
        };
        if touched {
            set.push(member.clone());
        }
        members.push(member);
    }
}

/// Finds the patch member that names a stored member: by comparing names for small patches
/// (no allocation, no hashing), through a map of the patch's names for big ones. Each name is
/// decoded at most once per object, whatever its escapes: decoding a long escaped patch name
/// again for every stored member would make one small patch cost minutes of CPU against a
/// wide object.
enum PatchNames<'a> {
    /// Compare; the patch's names decoded once when one of them holds an escape.
    Compare(Option<Vec<Cow<'a, str>>>),
    Map(std::collections::HashMap<Cow<'a, str>, usize>),
}

impl<'a> PatchNames<'a> {
    fn new(patch: &Object<'a>) -> Result<Self, serde_json::Error> {
        if patch.members.len() <= COMPARE_NAMES_UP_TO {
            if patch.members.iter().all(|member| !member.escaped) {
                return Ok(Self::Compare(None));
            }
            let decoded = patch
                .members
                .iter()
                .map(|member| name(patch, member))
                .collect::<Result<_, _>>()?;
            return Ok(Self::Compare(Some(decoded)));
        }
        let mut by_name = std::collections::HashMap::with_capacity(patch.members.len());
        for (entry, member) in patch.members.iter().enumerate() {
            by_name.insert(name(patch, member)?, entry);
        }
        Ok(Self::Map(by_name))
    }

    /// The patch member naming `member` (a member of `stored`), if any. The stored object
    /// names each member once, and so does the patch.
    fn naming(
        &mut self,
        stored: &Object<'_>,
        member: &Member,
        patch: &Object<'_>,
    ) -> Result<Option<usize>, serde_json::Error> {
        match self {
            // Both plain: the key literals are the names.
            Self::Compare(None) if !member.escaped => {
                let key = stored.key(member);
                Ok(patch
                    .members
                    .iter()
                    .position(|wanted| patch.key(wanted) == key))
            }
            Self::Compare(decoded) => {
                let own = name(stored, member)?;
                Ok(match decoded {
                    Some(names) => names.iter().position(|wanted| *wanted == own),
                    None => patch.members.iter().position(|wanted| {
                        let key = patch.key(wanted);
                        key[1..key.len() - 1] == *own.as_bytes()
                    }),
                })
            }
            Self::Map(by_name) => Ok(by_name.remove(name(stored, member)?.as_ref())),
        }
    }
}

/// Which patch members named a stored member: bits for up to 64 of them.
enum Matched {
    Bits(u64),
    Flags(Vec<bool>),
}

impl Matched {
    fn new(len: usize) -> Self {
        if len <= 64 {
            Self::Bits(0)
        } else {
            Self::Flags(vec![false; len])
        }
    }

    fn set(&mut self, entry: usize) {
        match self {
            Self::Bits(bits) => *bits |= 1 << entry,
            Self::Flags(flags) => flags[entry] = true,
        }
    }

    fn get(&self, entry: usize) -> bool {
        match self {
            Self::Bits(bits) => bits & (1 << entry) != 0,
            Self::Flags(flags) => flags[entry],
        }
    }
}

fn name<'a>(object: &Object<'a>, member: &Member) -> Result<Cow<'a, str>, serde_json::Error> {
    member.name(object.json).ok_or_else(unreadable)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge_patch::scan::scan;
    use crate::store::members::index;

    /// xorshift64*: a fixed sequence of cases, the same on every run.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
        }

        /// A name from a small set, so patches and objects share names; some need escaping.
        fn name(&mut self) -> String {
            const NAMES: &[&str] = &["a", "b", "notes", "risk\"Profile", "é", "x\ny", "id2", "k"];
            match self.next(NAMES.len() as u64 + 2) as usize {
                n if n < NAMES.len() => NAMES[n].to_owned(),
                _ => format!("m{}", self.next(60)),
            }
        }

        fn value(&mut self, depth: u32, nulls: bool) -> Value {
            match self.next(if depth == 0 { 5 } else { 7 }) {
                0 if nulls => Value::Null,
                0 | 1 => Value::from(self.next(1000) as i64 - 500),
                2 => Value::from(format!("s{}\"\\\u{1}", self.next(10))),
                3 => Value::Bool(self.next(2) == 0),
                4 => Value::from(1.5),
                5 => Value::Array(
                    (0..self.next(3))
                        .map(|_| self.value(depth - 1, false))
                        .collect(),
                ),
                _ => Value::Object(self.object(depth - 1, nulls)),
            }
        }

        fn object(&mut self, depth: u32, nulls: bool) -> Map<String, Value> {
            // Mostly small objects (names compared), sometimes wide ones (names hashed).
            let width = if self.next(8) == 0 { 40 } else { 5 };
            (0..self.next(width))
                .map(|_| (self.name(), self.value(depth, nulls)))
                .collect()
        }
    }

    /// On 5,000 generated objects and patches (nested objects, nulls at every level, names
    /// that need escaping, members removed, replaced, merged and added), merging onto the JSON
    /// gives the very bytes of merging into a parsed copy and serializing it, an index that
    /// matches them, and as touched members exactly what the patch set.
    #[test]
    fn same_bytes_as_merging_a_parsed_copy() {
        let mut cases = Cases(0x9e37_79b9_7f4a_7c15);
        for case in 0..5_000 {
            let stored = cases.object(3, false);
            let patch = cases.object(3, true);
            let json = serde_json::to_vec(&stored).unwrap();
            let members = index(&json).unwrap();
            // Half the patches as sent with spaces and new lines, half compact.
            let text = if case % 2 == 0 {
                serde_json::to_vec_pretty(&patch).unwrap()
            } else {
                serde_json::to_vec(&patch).unwrap()
            };
            let patch_members = scan(&text, 100).unwrap();
            let merged = merge_onto_json(&json, &members, &text, &patch_members).unwrap();
            let mut expected = stored.clone();
            apply_to_object(&mut expected, patch.clone());
            let expected_json = serde_json::to_vec(&expected).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&merged.json),
                String::from_utf8_lossy(&expected_json),
                "case {case}: {stored:?} + {patch:?}"
            );
            assert_eq!(index(&merged.json).unwrap(), merged.members, "case {case}");
            let set: Vec<&String> = patch
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect();
            let touched = merged.touched_values().unwrap();
            let mut touched_names: Vec<&String> = touched.keys().collect();
            touched_names.sort();
            let mut set = set;
            set.sort();
            assert_eq!(touched_names, set, "case {case}");
            for (name, value) in &touched {
                assert_eq!(Some(value), expected.get(name), "case {case}: {name}");
            }
        }
    }

    #[test]
    fn untouched_members_keep_their_bytes() {
        // Whitespace inside a value the patch does not name is kept as stored.
        let json = br#"{"keep":[1, 2],"set":1}"#;
        let members = index(json).unwrap();
        let patch = br#"{"set": 2, "new": {"x": null, "y": 1}}"#;
        let merged = merge_onto_json(json, &members, patch, &scan(patch, 8).unwrap()).unwrap();
        assert_eq!(merged.json, br#"{"keep":[1, 2],"set":2,"new":{"y":1}}"#);
    }

    /// Nested merges past the text merge's depth are merged parsed: the bytes are the
    /// parsed merge's at every depth.
    #[test]
    fn deep_patches_give_the_parsed_merges_bytes() {
        let nest = |levels: usize, inner: &str| {
            format!("{}{inner}{}", "{\"a\":".repeat(levels), "}".repeat(levels))
        };
        for levels in [1, MERGE_TEXT_LEVELS - 1, MERGE_TEXT_LEVELS, 30] {
            let stored = format!("{{\"top\":{}}}", nest(levels, "{\"x\":1,\"z\":[1,2]}"));
            let patch = format!(
                "{{\"top\":{}}}",
                nest(levels, "{\"y\":{\"n\":null},\"x\":null}")
            );
            let members = index(stored.as_bytes()).unwrap();
            let patch_members = scan(patch.as_bytes(), 100).unwrap();
            let merged = merge_onto_json(
                stored.as_bytes(),
                &members,
                patch.as_bytes(),
                &patch_members,
            )
            .unwrap();
            let mut expected: Map<String, Value> = serde_json::from_str(&stored).unwrap();
            apply_to_object(&mut expected, serde_json::from_str(&patch).unwrap());
            assert_eq!(
                String::from_utf8(merged.json).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "{levels} levels"
            );
        }
    }

    /// Escaped names are decoded a bounded number of times each: one long escaped patch name
    /// against a wide object, and a wide object of escaped names against a patch of them.
    #[test]
    fn names_are_decoded_once_each_not_once_per_pair() {
        use crate::merge_patch::scan::DECODED;
        let decoded = |f: &dyn Fn()| {
            DECODED.with(|d| d.set(0));
            f();
            DECODED.with(std::cell::Cell::get)
        };
        let wide = |escaped: bool| {
            let members: Vec<String> = (0..2_000)
                .map(|i| {
                    if escaped {
                        format!("\"m\\n{i}\":0")
                    } else {
                        format!("\"m{i}\":0")
                    }
                })
                .collect();
            format!("{{{}}}", members.join(","))
        };
        let long_name = format!("{{\"{}\\n\":1}}", "a".repeat(10_000));
        for (stored, patch, most) in [
            (wide(false), long_name.clone(), 3),
            (wide(true), long_name, 2_000 + 3),
            (
                wide(true),
                r#"{"m\n5":1,"m\n7":2,"z\n":3}"#.to_owned(),
                2_000 + 3 * 3,
            ),
        ] {
            let members = index(stored.as_bytes()).unwrap();
            let count = decoded(&|| {
                let patch_members = scan(patch.as_bytes(), 100).unwrap();
                merge_onto_json(
                    stored.as_bytes(),
                    &members,
                    patch.as_bytes(),
                    &patch_members,
                )
                .unwrap();
            });
            assert!(count <= most, "{count} decodes, at most {most} expected");
        }
        // The scan's duplicate check: 16 escaped names, each decoded at most twice.
        let escaped: Vec<String> = (0..16).map(|i| format!("\"k\\n{i}\":{i}")).collect();
        let text = format!("{{{}}}", escaped.join(","));
        let count = decoded(&|| {
            scan(text.as_bytes(), 10).unwrap();
        });
        assert!(count <= 32, "{count} decodes");
    }
}
