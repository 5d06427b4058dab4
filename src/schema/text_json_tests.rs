//! Tests of `text_json`.

use super::*;

/// `jsonschema`'s own check of a representation's accessors, on its conformance document
/// written compact (as this crate writes objects), as the text and as chosen members.
#[test]
fn conforms_to_jsonschemas_contract() {
    let document = jsonschema::json::conformance::document();
    let text = serde_json::to_vec(&document).unwrap();
    jsonschema::json::conformance::assert_conformance::<TextJson>(&TextNode::Text(str_of(&text)));
    let chosen = members::index(&text).unwrap();
    jsonschema::json::conformance::assert_conformance::<TextJson>(&TextNode::Chosen {
        json: Windows::One(Window::whole(str_of(&text))),
        members: &chosen,
        nested: &[],
        whole: false,
    });
    let nested = nested_of(&text, &chosen);
    assert!(!nested.is_empty());
    // An indexed object value is the same node as its text: same identity.
    let top = TextNode::Chosen {
        json: Windows::One(Window::whole(str_of(&text))),
        members: &chosen,
        nested: &nested,
        whole: false,
    };
    let object = top.as_object().unwrap();
    let (at, _) = &nested[0];
    let member = chosen.iter().find(|m| m.value.start == *at).unwrap();
    let indexed = object
        .get(&TextJson::prepare_key(&member.name(&text).unwrap()))
        .unwrap();
    assert!(matches!(indexed, TextNode::Chosen { whole: true, .. }));
    assert_eq!(
        indexed.identity(),
        TextNode::Text(&str_of(&text)[member.value.clone()]).identity()
    );
    jsonschema::json::conformance::assert_conformance::<TextJson>(&TextNode::Chosen {
        json: Windows::One(Window::whole(str_of(&text))),
        members: &chosen,
        nested: &nested,
        whole: false,
    });
}

/// The members of each object value among `members` of `json`, as the merge notes them.
fn nested_of(json: &[u8], members: &[Member]) -> Vec<(usize, std::sync::Arc<[Member]>)> {
    members
        .iter()
        .filter(|member| json[member.value.start] == b'{')
        .map(|member| {
            let inner = members::index(&json[member.value.clone()]).unwrap();
            (member.value.start, inner.into())
        })
        .collect()
}

/// Draft 4 decides `type: integer` by how a number is written; huge floats count as
/// integers for a `serde_json` number, and so they do here.
#[test]
fn draft_4_integers_as_for_a_value() {
    let schema = serde_json::json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "properties": {"n": {"type": "integer"}}
    });
    let by_value = jsonschema::validator_for(&schema).unwrap();
    let by_text = jsonschema::options_for::<TextJson>()
        .build(&schema)
        .unwrap();
    for instance in [
        r#"{"n":1e19}"#,
        r#"{"n":-1e19}"#,
        r#"{"n":1e18}"#,
        r#"{"n":1.0}"#,
        r#"{"n":-0}"#,
        r#"{"n":42}"#,
        r#"{"n":18446744073709551615}"#,
        r#"{"n":2.5}"#,
    ] {
        let value: Value = serde_json::from_str(instance).unwrap();
        let text = serde_json::to_vec(&value).unwrap();
        assert_eq!(
            by_text.is_valid(TextNode::Text(str_of(&text))),
            by_value.is_valid(&value),
            "{instance} written {}",
            String::from_utf8_lossy(&text)
        );
    }
}

/// The same schema judges the same instances alike, and says the same thing about them,
/// whether given a `Value` or the text.
#[test]
fn judges_as_the_value_validator_does() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "level": {"enum": ["low", "medium", "high"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "ratio": {"type": "number", "exclusiveMaximum": 1.5},
            "reasons": {"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": true},
            "nested": {"type": "object", "properties": {"a": {"const": {"x": [1, 2.5]}}}, "additionalProperties": false},
            "flag": {"type": ["boolean", "null"]}
        },
        "patternProperties": {"^x-": {"type": "string", "pattern": "^[a-z]+$"}},
        "propertyNames": {"maxLength": 8},
        "additionalProperties": false
    });
    let by_value = jsonschema::validator_for(&schema).unwrap();
    let by_text = jsonschema::options_for::<TextJson>()
        .build(&schema)
        .unwrap();
    let mut windows = 0;
    for instance in [
        r#"{"level":"medium","score":42,"reasons":["a","bc"],"flag":null}"#,
        r#"{"level":"urgent"}"#,
        r#"{"score":42.0}"#,
        r#"{"score":42.5}"#,
        r#"{"score":-1}"#,
        r#"{"score":1e2}"#,
        r#"{"ratio":1.5}"#,
        r#"{"ratio":-0.0}"#,
        r#"{"reasons":["a","a"]}"#,
        r#"{"reasons":["abcd"]}"#,
        r#"{"reasons":["\u00e9\u00e9\u00e9"]}"#,
        r#"{"nested":{"a":{"x":[1,2.5]}}}"#,
        r#"{"nested":{"a":{"x":[1,2.50]}},"flag":true}"#,
        r#"{"nested":{"b":1}}"#,
        r#"{"x-tag":"abc","x-bad":"ABC"}"#,
        r#"{"toolongname":1}"#,
        r#"{"flag":"yes"}"#,
        r#"{"other":1}"#,
        r#"{"le\"vel":"low"}"#,
        r#"{"level":"low","nested":{"b":1},"x-bad":"ABC"}"#,
        r#"{"flag":true,"reasons":["\u00e9\u00e9\u00e9\u00e9"],"score":7}"#,
    ] {
        let value: Value = serde_json::from_str(instance).unwrap();
        let text = serde_json::to_vec(&value).unwrap();
        let expected = by_value
            .validate(&value)
            .map_err(|e| (e.instance_path().to_string(), e.to_string()));
        let got = by_text
            .validate(TextNode::Text(str_of(&text)))
            .map_err(|e| (e.instance_path().to_string(), e.to_string()));
        assert_eq!(got, expected, "{instance}");
        let chosen = members::index(&text).unwrap();
        let got = by_text
            .validate(TextNode::Chosen {
                json: Windows::One(Window::whole(str_of(&text))),
                members: &chosen,
                nested: &[],
                whole: false,
            })
            .map_err(|e| (e.instance_path().to_string(), e.to_string()));
        assert_eq!(got, expected, "{instance} (chosen members)");
        let nested = nested_of(&text, &chosen);
        let got = by_text
            .validate(TextNode::Chosen {
                json: Windows::One(Window::whole(str_of(&text))),
                members: &chosen,
                nested: &nested,
                whole: false,
            })
            .map_err(|e| (e.instance_path().to_string(), e.to_string()));
        assert_eq!(
            got, expected,
            "{instance} (chosen members, objects indexed)"
        );
        // All members but the first, read from the part of the text they span only.
        if chosen.len() > 1 {
            let rest: serde_json::Map<String, Value> = value
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .skip(1)
                .collect();
            let expected = by_value
                .validate(&Value::Object(rest))
                .map_err(|e| (e.instance_path().to_string(), e.to_string()));
            let base = chosen[1].key.start;
            let got = by_text
                .validate(TextNode::Chosen {
                    json: Windows::One(Window {
                        text: &str_of(&text)[base..],
                        base,
                    }),
                    members: &chosen[1..],
                    nested: &nested,
                    whole: false,
                })
                .map_err(|e| (e.instance_path().to_string(), e.to_string()));
            assert_eq!(got, expected, "{instance} (a part of the text)");
            // And from each member's own part.
            let each: Vec<Window<'_>> = chosen[1..]
                .iter()
                .map(|m| Window {
                    text: &str_of(&text)[m.key.start..m.value.end],
                    base: m.key.start,
                })
                .collect();
            let got = by_text
                .validate(TextNode::Chosen {
                    json: Windows::Each(&each),
                    members: &chosen[1..],
                    nested: &nested,
                    whole: false,
                })
                .map_err(|e| (e.instance_path().to_string(), e.to_string()));
            assert_eq!(got, expected, "{instance} (each member's part)");
            windows += 1;
        }
    }
    assert!(windows >= 5, "{windows} parts");
}

fn str_of(text: &[u8]) -> &str {
    std::str::from_utf8(text).unwrap()
}

/// `minLength` and `maxLength` answer for a literal as for the `serde_json` string it holds,
/// at and around every bound the byte length decides by, for one- to four-byte characters,
/// escapes, and what is not a string.
#[test]
fn string_lengths_are_judged_as_for_a_value() {
    let strings = [
        "",
        "a",
        "abcd",
        "abcde",
        "é",
        "éé",
        "aé",
        "€",
        "€€a",
        "😀",
        "😀😀",
        "a😀b",
        "\u{7f}",
        "tab\there",
        "quote\"",
        "back\\slash",
        "é\n😀",
    ];
    let mut decided = 0;
    for string in strings {
        let value = serde_json::Value::from(string);
        let literal = serde_json::to_string(&value).unwrap();
        let node = TextNode::Text(&literal);
        let bytes = string.len() as u64;
        let bounds = [
            0,
            1,
            bytes.div_ceil(4),
            string.chars().count() as u64,
            bytes,
        ];
        for min in bounds.iter().flat_map(|b| [b.saturating_sub(1), *b, b + 1]) {
            for max in bounds.iter().flat_map(|b| [b.saturating_sub(1), *b, b + 1]) {
                let expected =
                    <&Value as Node<'_, jsonschema::json::SerdeJson>>::string_length_within(
                        &&value, min, max,
                    );
                assert_eq!(
                    node.string_length_within(min, max),
                    expected,
                    "{literal} in {min}..={max}"
                );
                decided += usize::from(expected == Some(true));
            }
        }
    }
    assert!(decided > 100, "{decided} lengths within bounds");
    for other in ["1", "null", "[\"a\"]", "{\"a\":\"b\"}", "true"] {
        assert_eq!(
            TextNode::Text(other).string_length_within(0, 10),
            None,
            "{other}"
        );
    }
    assert_eq!(TextNode::Name("ab").string_length_within(2, 2), Some(true));
}
