//! The next version of an object built from the stored version's JSON: the members a patch
//! does not name are copied as bytes (no parse, clone, re-serialization or drop of them), the
//! members it names are merged (RFC 7396) and written, and only those are handed back for the
//! schema to check. The result is byte for byte what merging into a parsed copy and
//! serializing it gives (the tests below compare the two on many objects and patches).

use serde::de::Error as _;
use serde_json::{Map, Value};

use crate::merge_patch::{apply_to_object, without_nulls};
use crate::store::members::Member;

/// An object after a patch, as JSON, with where its members lie and what the patch set.
pub(crate) struct Merged {
    pub(crate) json: Vec<u8>,
    pub(crate) members: Vec<Member>,
    /// The members the patch set (not removed), with their values after the merge, in order.
    pub(crate) touched: Map<String, Value>,
}

/// Patches of at most this many members are matched to stored members by comparing names
/// (a length check, then bytes): cheaper than hashing every stored name, and still linear in
/// the object. Bigger patches go through a hash map of their names, so that matching stays
/// linear for big objects and big patches alike.
const COMPARE_NAMES_UP_TO: usize = 8;

/// Merges `patch` into the object whose JSON is `json`, whose members lie at `members`.
///
/// Member order is the merge's: stored members where they were, new ones after them in patch
/// order. `members` names each member once ([`Snapshot::members`] refuses a text that names
/// one twice).
///
/// [`Snapshot::members`]: crate::store::Snapshot
///
/// # Errors
/// When a stored member that the patch merges into cannot be parsed, or a value cannot be
/// serialized: neither happens for JSON this crate wrote.
pub(crate) fn merge_onto_json(
    json: &[u8],
    members: &[Member],
    patch: Map<String, Value>,
) -> Result<Merged, serde_json::Error> {
    let mut entries: Vec<(String, Value)> = patch.into_iter().collect();
    let named_by = match_names(json, members, &entries)?;
    let mut matched = vec![false; entries.len()];
    let mut out = Vec::with_capacity(json.len() + 64);
    let mut spans = Vec::with_capacity(members.len() + entries.len());
    let mut touched = Map::new();
    out.push(b'{');
    for (member, named_by) in members.iter().zip(named_by) {
        let key = &json[member.key.clone()];
        let Some(entry) = named_by else {
            let start = begin_member(&mut out, key);
            out.extend_from_slice(&json[member.value.clone()]);
            spans.push(end_member(&out, start, member));
            continue;
        };
        matched[entry] = true;
        let (name, patch_value) = &mut entries[entry];
        let value = match std::mem::take(patch_value) {
            // Removed.
            Value::Null => continue,
            Value::Object(inner) if json[member.value.start] == b'{' => {
                let mut stored: Map<String, Value> =
                    serde_json::from_slice(&json[member.value.clone()])?;
                apply_to_object(&mut stored, inner);
                Value::Object(stored)
            }
            other => without_nulls(other),
        };
        let start = begin_member(&mut out, key);
        serde_json::to_writer(&mut out, &value)?;
        spans.push(end_member(&out, start, member));
        touched.insert(std::mem::take(name), value);
    }
    for ((name, value), matched) in entries.into_iter().zip(matched) {
        // New members; `null` for a member that is not there removes nothing.
        if matched || value.is_null() {
            continue;
        }
        let value = without_nulls(value);
        if out.len() > 1 {
            out.push(b',');
        }
        let start = out.len();
        serde_json::to_writer(&mut out, &name)?;
        let key_end = out.len();
        out.push(b':');
        serde_json::to_writer(&mut out, &value)?;
        spans.push(Member {
            key: start..key_end,
            value: key_end + 1..out.len(),
            escaped: out[start..key_end].contains(&b'\\'),
        });
        touched.insert(name, value);
    }
    out.push(b'}');
    Ok(Merged {
        json: out,
        members: spans,
        touched,
    })
}

/// For each stored member, the patch entry that names it, if any (each entry names at most
/// one member: the first of that name).
fn match_names(
    json: &[u8],
    members: &[Member],
    entries: &[(String, Value)],
) -> Result<Vec<Option<usize>>, serde_json::Error> {
    let mut named_by = vec![None; members.len()];
    if entries.len() <= COMPARE_NAMES_UP_TO {
        for (entry, (name, _)) in entries.iter().enumerate() {
            if let Some(at) = members
                .iter()
                .position(|member| member.is_named(json, name))
            {
                named_by[at] = Some(entry);
            }
        }
    } else {
        let mut by_name: std::collections::HashMap<&str, usize> = entries
            .iter()
            .enumerate()
            .map(|(entry, (name, _))| (name.as_str(), entry))
            .collect();
        for (at, member) in members.iter().enumerate() {
            let name = member
                .name(json)
                .ok_or_else(|| serde_json::Error::custom("a stored member name is not valid"))?;
            named_by[at] = by_name.remove(name.as_ref());
        }
    }
    Ok(named_by)
}

/// Writes the separator and `key:`; returns where the key starts.
fn begin_member(out: &mut Vec<u8>, key: &[u8]) -> usize {
    if out.len() > 1 {
        out.push(b',');
    }
    let start = out.len();
    out.extend_from_slice(key);
    out.push(b':');
    start
}

/// Where the member just written from `stored`'s key lies.
fn end_member(out: &[u8], start: usize, stored: &Member) -> Member {
    let key_len = stored.key.len();
    Member {
        key: start..start + key_len,
        value: start + key_len + 1..out.len(),
        escaped: stored.escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let merged = merge_onto_json(&json, &members, patch.clone()).unwrap();

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
            let mut touched: Vec<&String> = merged.touched.keys().collect();
            touched.sort();
            let mut set = set;
            set.sort();
            assert_eq!(touched, set, "case {case}");
            for (name, value) in &merged.touched {
                assert_eq!(Some(value), expected.get(name), "case {case}: {name}");
            }
        }
    }

    #[test]
    fn untouched_members_keep_their_bytes() {
        // Whitespace inside a value the patch does not name is kept as stored.
        let json = br#"{"keep":[1, 2],"set":1}"#;
        let members = index(json).unwrap();
        let patch = serde_json::json!({"set": 2, "new": {"x": null, "y": 1}});
        let Value::Object(patch) = patch else {
            unreachable!()
        };
        let merged = merge_onto_json(json, &members, patch).unwrap();
        assert_eq!(merged.json, br#"{"keep":[1, 2],"set":2,"new":{"y":1}}"#);
    }
}
