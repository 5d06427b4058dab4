//! Tests of `candidate`.

use super::*;
use crate::merge_patch::scan::{scan, scan_noting_compact};
use crate::merge_patch::scan_tests::Cases;
use crate::store::members::index;

/// Generated objects and patches, from the patch scan tests' fixed sequence of cases.
impl Cases {
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

/// `patch` (a text the patch scan accepts) merged onto `json`, as the write path does.
fn merge_text(json: &[u8], members: &[Member], patch: &[u8]) -> Merged {
    let stored = ObjectText {
        json,
        members,
        object_values: &[],
        compact: false,
    };
    merge_noted(&stored, patch)
}

/// `patch` merged onto `stored` (with what it has noted of its object values).
fn merge_noted(stored: &ObjectText<'_>, patch: &[u8]) -> Merged {
    let scanned = scan_noting_compact(patch, 100).unwrap();
    let patch = ObjectText {
        json: patch,
        members: &scanned.members,
        object_values: &scanned.object_values,
        compact: scanned.compact,
    };
    merge_onto_json(stored, &patch).unwrap()
}

/// A compact patch's new values are copied as they are, except an object with a `null`
/// member, which is written without it (RFC 7396); `:null` inside a string changes nothing.
#[test]
fn compact_values_are_copied_and_null_members_still_dropped() {
    let json = br#"{"a":1}"#;
    let members = index(json).unwrap();
    for (patch, merged) in [
        (
            &br#"{"b":{"x":null,"y":[null,{"z":null}]}}"#[..],
            &br#"{"a":1,"b":{"y":[null,{"z":null}]}}"#[..],
        ),
        (
            br#"{"b":"k:null","c":[1,null]}"#,
            br#"{"a":1,"b":"k:null","c":[1,null]}"#,
        ),
        (br#"{"b":{"s":"k:null"}}"#, br#"{"a":1,"b":{"s":"k:null"}}"#),
    ] {
        assert!(scan_noting_compact(patch, 8).unwrap().compact, "compact");
        assert_eq!(
            String::from_utf8_lossy(&merge_text(json, &members, patch).json),
            String::from_utf8_lossy(merged)
        );
    }
}

/// Checks that the members of each object value noted lie where noted (a walk of the
/// value finds the same), and that each one is a member's value; the number noted.
fn noted_members_lie_where_noted(merged: &Merged) -> usize {
    for (at, inner) in &merged.object_values {
        let member = merged.members.iter().find(|m| m.value.start == *at);
        let value = &member.expect("a member's value").value;
        assert_eq!(merged.json[value.start], b'{', "the value at {at}");
        let walked = index(&merged.json[value.clone()]).unwrap();
        assert_eq!(**inner, walked[..], "the value at {at}");
    }
    assert!(merged.object_values.is_sorted_by_key(|(at, _)| *at));
    merged.object_values.len()
}

/// On 5,000 generated objects and patches (nested objects, nulls at every level, names
/// that need escaping, members removed, replaced, merged and added), merging onto the JSON
/// gives the very bytes of merging into a parsed copy and serializing it, an index that
/// matches them, and as touched members exactly what the patch set to a new value (every
/// fourth patch sets one member to its stored value); and so does a second patch merged
/// onto the result with the members of object values the first one noted.
#[test]
fn same_bytes_as_merging_a_parsed_copy() {
    let mut cases = Cases(0x9e37_79b9_7f4a_7c15);
    let mut compact = 0;
    let mut nested_noted = 0;
    let mut carried = 0;
    let mut unchanged = 0;
    for case in 0..5_000 {
        let stored = cases.object(3, false);
        let mut patch = cases.object(3, true);
        if let (0, Some((name, value))) = (case % 4, stored.iter().next()) {
            patch.insert(name.clone(), value.clone());
        }
        let json = serde_json::to_vec(&stored).unwrap();
        let members = index(&json).unwrap();
        // Half the patches as sent with spaces and new lines, half compact.
        let text = if case % 2 == 0 {
            serde_json::to_vec_pretty(&patch).unwrap()
        } else {
            serde_json::to_vec(&patch).unwrap()
        };
        compact += usize::from(scan_noting_compact(&text, 100).unwrap().compact);
        let merged = merge_text(&json, &members, &text);
        let mut expected = stored.clone();
        apply_to_object(&mut expected, patch.clone());
        let expected_json = serde_json::to_vec(&expected).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&merged.json),
            String::from_utf8_lossy(&expected_json),
            "case {case}: {stored:?} + {patch:?}"
        );
        assert_eq!(index(&merged.json).unwrap(), merged.members, "case {case}");
        nested_noted += noted_members_lie_where_noted(&merged);
        // Set, and to something other than what was stored.
        let set: Vec<&String> = patch
            .iter()
            .filter(|(k, v)| !v.is_null() && stored.get(*k) != expected.get(*k))
            .map(|(k, _)| k)
            .collect();
        unchanged += patch
            .iter()
            .filter(|(k, v)| !v.is_null() && stored.get(*k) == expected.get(*k))
            .count();
        let touched = merged.touched_values().unwrap();
        let mut touched_names: Vec<&String> = touched.keys().collect();
        touched_names.sort();
        let mut set = set;
        set.sort();
        assert_eq!(touched_names, set, "case {case}");
        for (name, value) in &touched {
            assert_eq!(Some(value), expected.get(name), "case {case}: {name}");
        }
        // The next write merges onto this version with what it noted, as the write path
        // does: the same bytes again, its notes in place too.
        let next_patch = cases.object(3, true);
        let written = ObjectText {
            json: &merged.json,
            members: &merged.members,
            object_values: &merged.object_values,
            compact: false,
        };
        let next = merge_noted(&written, &serde_json::to_vec(&next_patch).unwrap());
        apply_to_object(&mut expected, next_patch.clone());
        assert_eq!(
            String::from_utf8_lossy(&next.json),
            serde_json::to_string(&expected).unwrap(),
            "case {case}: then {next_patch:?}"
        );
        assert_eq!(index(&next.json).unwrap(), next.members, "case {case}");
        carried += noted_members_lie_where_noted(&next);
    }
    // Compact patches take the copying path; enough of them to count.
    assert!(compact >= 100, "{compact} compact patches");
    assert!(nested_noted >= 40, "{nested_noted} merged objects noted");
    assert!(carried >= 40, "{carried} objects noted in a second write");
    assert!(
        unchanged >= 40,
        "{unchanged} members set to their stored value"
    );
}

/// Untouched members of a stored text with space between its members (another store's
/// spelling) are written `key:value`, as the parsed merge writes them; in a compact text
/// they are copied in runs; either way the index matches the bytes.
#[test]
fn untouched_runs_are_copied_only_where_the_text_is_compact() {
    for (json, patch, merged) in [
        (
            &br#"{"a": 1 , "b" :2,"c":3}"#[..],
            &br#"{"c":4}"#[..],
            &br#"{"a":1,"b":2,"c":4}"#[..],
        ),
        (
            br#"{"a":1,"b":[1, 2],"c":3}"#,
            br#"{"b":null}"#,
            br#"{"a":1,"c":3}"#,
        ),
        (
            br#"{"a":1,"b":2,"c":3}"#,
            br#"{"b":5,"d":6}"#,
            br#"{"a":1,"b":5,"c":3,"d":6}"#,
        ),
        (br#"{"a":1,"b":2}"#, br#"{"a":null,"b":null}"#, br#"{}"#),
        (
            br#"{ "a":1,"b":2 }"#,
            br#"{"z":0}"#,
            br#"{"a":1,"b":2,"z":0}"#,
        ),
    ] {
        let members = index(json).unwrap();
        let result = merge_text(json, &members, patch);
        assert_eq!(
            String::from_utf8_lossy(&result.json),
            String::from_utf8_lossy(merged)
        );
        assert_eq!(index(&result.json).unwrap(), result.members);
    }
}

#[test]
fn untouched_members_keep_their_bytes() {
    // Whitespace inside a value the patch does not name is kept as stored.
    let json = br#"{"keep":[1, 2],"set":1}"#;
    let members = index(json).unwrap();
    let patch = br#"{"set": 2, "new": {"x": null, "y": 1}}"#;
    let merged = merge_text(json, &members, patch);
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
        let merged = merge_text(stored.as_bytes(), &members, patch.as_bytes());
        // `top` was merged into, at every depth: its members are noted.
        assert_eq!(noted_members_lie_where_noted(&merged), 1, "{levels} levels");
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
            merge_text(stored.as_bytes(), &members, patch.as_bytes());
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
