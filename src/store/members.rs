//! Where each top-level member of a stored object's JSON text lies, so a write can copy the
//! members a patch does not name as bytes instead of parsing, cloning and re-serializing them.
//!
//! The texts indexed here are ones this crate wrote (`serde_json`'s compact output) or that a
//! store gave back after they were parsed once ([`Snapshot::from_json`](super::Snapshot::from_json)),
//! so they are valid JSON objects; whitespace between tokens is allowed all the same. A text
//! that does not scan as an object gets no index, and its writes take the parsing path.

use std::ops::Range;
use std::sync::Arc;

/// One member: the byte ranges of its key (the string literal, quotes included) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) key: Range<usize>,
    pub(crate) value: Range<usize>,
    /// Whether the key literal holds an escape (then its text is not its name).
    pub(crate) escaped: bool,
}

impl Member {
    /// The member's name, unescaped; `None` only for a key that is not a valid literal.
    pub(crate) fn name<'a>(&self, json: &'a [u8]) -> Option<std::borrow::Cow<'a, str>> {
        crate::merge_patch::scan::name_of(&json[self.key.clone()], self.escaped)
    }
}

/// The members of some top-level object values of an object's text: for each, where the
/// value starts in the text, and where its members lie in the value's own text (offsets from
/// its `{`), in text order. Noted by the patch scan and by the merge as they go, and kept by
/// the versions a write made, so that a merge into a nested object does not index either side
/// again, and the schema check does not walk it. Only objects whose names are each there once
/// are noted. Shared, so that a member copied unchanged into the next version keeps its
/// index without a copy.
pub(crate) type ObjectValues = [(usize, Arc<[Member]>)];

/// [`ObjectValues`] as they are noted.
pub(crate) type NotedObjectValues = Vec<(usize, Arc<[Member]>)>;

/// The noted members of the object value starting at byte `at`, if noted.
pub(crate) fn object_value(values: &ObjectValues, at: usize) -> Option<&Arc<[Member]>> {
    values
        .binary_search_by_key(&at, |(start, _)| *start)
        .ok()
        .map(|found| &values[found].1)
}

/// The top-level members of the JSON object `json`, in order; `None` when `json` is not one.
pub(crate) fn index(json: &[u8]) -> Option<Vec<Member>> {
    let mut members = members(json);
    // Objects here are mostly small: one allocation for up to eight members.
    let mut found = Vec::with_capacity(8);
    found.extend(&mut members);
    members.complete().then_some(found)
}

/// The members of the JSON object `json`, one at a time and without allocating (for the
/// JSON Schema check, which walks the texts a write produced). It stops at the end of the
/// object, or at anything that is not a member.
pub(crate) fn members(json: &[u8]) -> Members<'_> {
    let at = skip_space(json, 0);
    if json.get(at) != Some(&b'{') {
        return Members {
            json,
            at,
            state: Walk::Broken,
        };
    }
    let at = skip_space(json, at + 1);
    if json.get(at) == Some(&b'}') {
        return Members {
            json,
            at: at + 1,
            state: Walk::Done,
        };
    }
    Members {
        json,
        at,
        state: Walk::Open,
    }
}

/// See [`members`].
#[derive(Debug, Clone)]
pub(crate) struct Members<'a> {
    json: &'a [u8],
    at: usize,
    state: Walk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Open,
    Done,
    Broken,
}

impl Members<'_> {
    fn member(&mut self) -> Option<Member> {
        let (json, at) = (self.json, self.at);
        if json.get(at) != Some(&b'"') {
            return None;
        }
        let (key_end, escaped) = string_end(json, at)?;
        let colon = skip_space(json, key_end);
        if json.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_space(json, colon + 1);
        let value_end = skip_value(json, value_start)?;
        let next = skip_space(json, value_end);
        match json.get(next) {
            Some(b',') => self.at = skip_space(json, next + 1),
            Some(b'}') => {
                self.at = next + 1;
                self.state = Walk::Done;
            }
            _ => return None,
        }
        Some(Member {
            key: at..key_end,
            value: value_start..value_end,
            escaped,
        })
    }

    /// Whether the walk reached the end of the object, with nothing but space after it.
    fn complete(&self) -> bool {
        self.state == Walk::Done && skip_space(self.json, self.at) == self.json.len()
    }
}

impl Iterator for Members<'_> {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        if self.state != Walk::Open {
            return None;
        }
        let member = self.member();
        if member.is_none() {
            self.state = Walk::Broken;
        }
        member
    }
}

/// Where each element of the JSON array `json` (its text, brackets included) lies, one at a
/// time; it stops at the end of the array, or at anything that is not an element.
#[cfg(any(feature = "json-schema", test))]
pub(crate) fn elements(json: &[u8]) -> Elements<'_> {
    let at = skip_space(json, 1);
    let open = json.first() == Some(&b'[') && json.get(at) != Some(&b']');
    Elements { json, at, open }
}

/// See [`elements`].
#[cfg(any(feature = "json-schema", test))]
#[derive(Debug, Clone)]
pub(crate) struct Elements<'a> {
    json: &'a [u8],
    at: usize,
    open: bool,
}

#[cfg(any(feature = "json-schema", test))]
impl Iterator for Elements<'_> {
    type Item = std::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.open {
            return None;
        }
        self.open = false;
        let start = self.at;
        let end = skip_value(self.json, start)?;
        let next = skip_space(self.json, end);
        match self.json.get(next) {
            Some(b',') => {
                self.at = skip_space(self.json, next + 1);
                self.open = true;
            }
            Some(b']') => {}
            _ => return None,
        }
        Some(start..end)
    }
}

fn skip_space(json: &[u8], mut at: usize) -> usize {
    while matches!(json.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The end (past the closing quote) of the string literal starting at `at`.
fn skip_string(json: &[u8], at: usize) -> Option<usize> {
    string_end(json, at).map(|(end, _)| end)
}

/// [`skip_string`], and whether the literal holds an escape.
#[inline]
fn string_end(json: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i += crate::merge_patch::scan::string_run_end(json.get(i..)?)?;
        match json[i] {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            // A control character: not JSON this crate wrote; skipped as before.
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `at`.
fn skip_value(json: &[u8], at: usize) -> Option<usize> {
    match json.get(at)? {
        b'"' => skip_string(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = skip_string(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            // A number or a literal: up to the next delimiter.
            let end = json[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(json.len(), |n| at + n);
            (end > at).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_and_members_walk_without_allocating() {
        let json = br#"[1, "a,]", {"b":[2]} ,[],null]"#;
        let found: Vec<&[u8]> = elements(json).map(|at| &json[at]).collect();
        assert_eq!(
            found,
            [&b"1"[..], b"\"a,]\"", br#"{"b":[2]}"#, b"[]", b"null"]
        );
        assert_eq!(elements(b"[]").count(), 0);
        assert_eq!(elements(b"[ ]").count(), 0);
        let object = br#"{"a":1,"b":{"c":2}}"#;
        assert_eq!(members(object).count(), 2);
        assert_eq!(members(b"{}").count(), 0);
        // A walk stops at what is not a member.
        assert_eq!(members(br#"{"a":1,2}"#).count(), 1);
    }

    fn names_and_values(json: &str) -> Option<Vec<(String, String)>> {
        let bytes = json.as_bytes();
        index(bytes).map(|members| {
            members
                .iter()
                .map(|m| {
                    (
                        m.name(bytes).unwrap().into_owned(),
                        json[m.value.clone()].to_owned(),
                    )
                })
                .collect()
        })
    }

    #[test]
    fn finds_each_member_whatever_it_holds() {
        let json =
            r#"{"a":1,"b\"c":"x,}]","d":{"e":[1,{"f":"}"}]},"g":null,"h":-1.5e3,"\u00e9":true}"#;
        let found = names_and_values(json).unwrap();
        let expected = [
            ("a", "1"),
            ("b\"c", r#""x,}]""#),
            ("d", r#"{"e":[1,{"f":"}"}]}"#),
            ("g", "null"),
            ("h", "-1.5e3"),
            ("é", "true"),
        ];
        assert_eq!(found.len(), expected.len());
        for ((name, value), (want_name, want_value)) in found.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
        }
    }

    #[test]
    fn whitespace_between_tokens_is_allowed() {
        let found = names_and_values(" { \"a\" : [1, 2] ,\n\"b\":{} } ").unwrap();
        assert_eq!(
            found,
            [("a".into(), "[1, 2]".into()), ("b".into(), "{}".into())]
        );
        assert_eq!(names_and_values("{}").unwrap(), []);
        assert_eq!(names_and_values(" { } ").unwrap(), []);
    }

    #[test]
    fn what_is_not_one_object_has_no_index() {
        for text in [
            "",
            "[]",
            "1",
            "{",
            "{\"a\"}",
            "{\"a\":1",
            "{\"a\":1}x",
            "{\"a\":1,}",
            "{\"a\":}",
        ] {
            assert_eq!(index(text.as_bytes()), None, "{text:?}");
        }
    }
}
