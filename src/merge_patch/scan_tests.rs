//! The patch scan against the `Value` parse it stands in for: what the scan accepts, the
//! parse accepts, and the canonical writer gives the bytes `serde_json` writes for it.

use serde_json::Value;

use super::canonical;
use super::parse::parse_value;
use super::scan::{scan, scan_noting_compact};

/// What the scan accepted: the parse accepts it too, as the same object, and writing the text
/// out compact gives `serde_json`'s bytes for that object.
fn agrees(text: &[u8]) -> bool {
    let Some(members) = scan(text, 64) else {
        return false;
    };
    let parsed = parse_value(text, 64)
        .unwrap_or_else(|error| panic!("scan accepted what the parse refuses ({error}): {text:?}"));
    let Value::Object(object) = &parsed else {
        panic!("scan accepted a non-object: {text:?}");
    };
    assert_eq!(members.len(), object.len(), "{text:?}");
    let mut written = Vec::new();
    canonical::write(&mut written, text, false).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&written),
        serde_json::to_string(&parsed).unwrap(),
        "{:?}",
        String::from_utf8_lossy(text)
    );
    // Every top-level object value has its members noted, as an index of its text finds
    // them, offsets from its `{`.
    let scanned = scan_noting_compact(text, 64).unwrap();
    let objects: Vec<usize> = members
        .iter()
        .filter(|m| text[m.value.start] == b'{')
        .map(|m| m.value.start)
        .collect();
    let noted: Vec<usize> = scanned.object_values.iter().map(|(at, _)| *at).collect();
    assert_eq!(noted, objects, "{:?}", String::from_utf8_lossy(text));
    for (member, (_, inner)) in members
        .iter()
        .filter(|m| text[m.value.start] == b'{')
        .zip(&scanned.object_values)
    {
        let walked = crate::store::members::index(&text[member.value.clone()]).unwrap();
        assert_eq!(**inner, walked[..], "{:?}", String::from_utf8_lossy(text));
    }
    // A text noted as compact is its own compact form.
    let compact = scanned.compact;
    if compact {
        assert_eq!(written, text, "{:?}", String::from_utf8_lossy(text));
    }
    true
}

#[test]
fn accepts_what_the_parse_accepts_and_writes_it_as_serde_json_does() {
    for (text, compact) in [
        (r#"{"a":[1,-2,{"b":null}],"c":"x","d":true}"#, true),
        (r#"{"a":1.5}"#, false),
        (r#"{"a":-0}"#, false),
        (r#"{"a":"\u00e9"}"#, false),
        (r#"{"a": 1}"#, false),
        (r#" {"a":1}"#, false),
    ] {
        assert_eq!(
            scan_noting_compact(text.as_bytes(), 8).map(|scanned| scanned.compact),
            Some(compact),
            "{text}"
        );
        assert!(agrees(text.as_bytes()));
    }
    for text in [
        r#"{}"#,
        r#" { "a" : 1 , "b" : [ ] , "c" : { } } "#,
        r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,-0,-0.0,1E2,1e-7,2.50]}"#,
        r#"{"s":"plain","e":"\u00e9\n\t\"\\\/\b\f\r","pair":"\ud83d\ude00","ctl":"\u001f"}"#,
        r#"{"a\"b":1,"\u0063":2,"é":3,"c2":{"x":null,"y":[null,{"z":null}]}}"#,
        r#"{"t":true,"f":false,"n":null}"#,
        "{\"a\":\n\t[1,\r\n 2]}",
    ] {
        assert!(agrees(text.as_bytes()), "refused: {text}");
    }
}

#[test]
fn refuses_what_the_parse_refuses() {
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
    for text in [
        "",
        " ",
        "[]",
        "1",
        "\"x\"",
        "null",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":-}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":[1,]}",
        "{\"a\":[1 2]}",
        "{\"a\":1e400}",
        "{\"a\":18446744073709551616}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":{\"x\":1,\"x\":2}}",
        "{\"a\":1,\"\\u0061\":2}",
        "{\"a\":\"x\\u0000y\"}",
        "{\"a\\u0000\":1}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"tab\there\"}",
        "\u{feff}{}",
        &deep,
    ] {
        assert_eq!(scan(text.as_bytes(), 64), None, "accepted: {text:?}");
    }
    // Not valid UTF-8.
    assert_eq!(scan(b"{\"a\":\"\xff\"}", 64), None);
    // Many members: duplicates found through the hash set too.
    let wide: String = (0..40).map(|i| format!("\"m{i}\":{i},")).collect();
    assert!(scan(format!("{{{wide}\"m0\":1}}").as_bytes(), 64).is_none());
    assert!(agrees(format!("{{{wide}\"last\":1}}").as_bytes()));
}

/// xorshift64*: the same sequence of cases on every run.
pub(crate) struct Cases(pub(crate) u64);

impl Cases {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// 20,000 texts made from valid patches by changing, dropping or adding one byte: whatever
/// the scan accepts, the parse accepts and writes alike; and everything the parse refuses,
/// the scan refuses.
#[test]
fn mutated_texts_never_split_the_two() {
    const SEEDS: &[&str] = &[
        r#"{"riskProfile":{"level":"medium","score":42,"reasons":["a","b"],"reviewedBy":null},"notes":"x \u00e9","n":-1.5e3}"#,
        r#"{ "a" : [ 1 , { "b" : "\ud83d\ude00" } ] , "c" : true , "d" : null }"#,
        r#"{"k\"ey":"v\\","e":{},"f":[],"g":0,"h":-0}"#,
    ];
    const BYTES: &[u8] = b"{}[]\":,\\ 0123456789-+.eEtrufalsn\"u\x00\x1f\xc3\xa9x";
    let mut cases = Cases(0x2545_f491_4f6c_dd1d);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut text = SEEDS[cases.next(SEEDS.len() as u64) as usize]
            .as_bytes()
            .to_vec();
        let at = cases.next(text.len() as u64) as usize;
        let byte = BYTES[cases.next(BYTES.len() as u64) as usize];
        match cases.next(3) {
            0 => text[at] = byte,
            1 => {
                text.remove(at);
            }
            _ => text.insert(at, byte),
        }
        if agrees(&text) {
            accepted += 1;
        } else if let Ok(Value::Object(_)) = parse_value(&text, 64) {
            // The scan may be stricter than the parse only where the parse is lenient in
            // ways a patch never needs; none of these mutations should get there.
            panic!(
                "the parse accepts what the scan refuses: {:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }
    // Both kinds of case were seen.
    assert!(accepted > 1_000 && accepted < 19_000, "{accepted}");
}

/// The word-at-a-time search for the end of a run of plain string characters finds what a
/// byte-by-byte lookup finds: every byte value at every place in a word and in the tail,
/// after plain bytes of all kinds (ASCII, past ASCII, just above and below each stop).
#[test]
fn string_runs_end_where_a_byte_by_byte_lookup_says() {
    use super::scan::{STOPS_A_STRING_RUN, string_run_end};
    let by_byte = |bytes: &[u8]| {
        bytes
            .iter()
            .position(|&b| STOPS_A_STRING_RUN[usize::from(b)])
    };
    let plain: &[u8] = b"a \x21#[]\x7f\x80\xa0\xdc\xff\x5b\x5d\x1f\x20";
    let plain: Vec<u8> = plain
        .iter()
        .copied()
        .filter(|&b| !STOPS_A_STRING_RUN[usize::from(b)])
        .collect();
    let mut checked = 0;
    for len in 0..20 {
        for at in 0..=len {
            for stop in 0..=255u8 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|i| plain[(i * 7 + stop as usize) % plain.len()])
                    .collect();
                if at < len {
                    bytes[at] = stop;
                    // A second stop after the first must not hide it.
                    if at + 1 < len {
                        bytes[at + 1] = 0;
                    }
                }
                assert_eq!(string_run_end(&bytes), by_byte(&bytes), "{bytes:?}");
                checked += 1;
            }
        }
    }
    assert!(checked > 50_000);
}
