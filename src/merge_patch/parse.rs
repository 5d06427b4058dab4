//! JSON parsing for patches: depth-bounded, duplicate keys rejected, trailing data rejected.
//!
//! `serde_json::Value`'s own deserializer keeps the last of two equal keys and only stops at a
//! fixed recursion limit of 128. A patch with `{"id":"a","id":"b"}` is ambiguous (which one did
//! the caller mean?) and so is rejected here, and the nesting bound is ours to configure.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// `serde_json`'s own recursion limit; a deeper bound could never be reached.
pub(crate) const SERDE_JSON_DEPTH_LIMIT: usize = 128;

/// [`parse_value_noting_floats`] without the note, for the tests.
#[cfg(test)]
pub(crate) fn parse_value(bytes: &[u8], max_depth: usize) -> Result<Value, serde_json::Error> {
    parse_value_noting_floats(bytes, max_depth).map(|(value, _)| value)
}

/// Parses `bytes` as one JSON value nested at most `max_depth` containers deep, and says
/// whether any number arrived as a float: only then can the text hold an integer literal past
/// 64 bits or a number that underflows (see [`out_of_range_number`]), so only then is it
/// scanned.
///
/// # Errors
/// `serde_json`'s error, whose message names the problem and its line and column.
pub(crate) fn parse_value_noting_floats(
    bytes: &[u8],
    max_depth: usize,
) -> Result<(Value, bool), serde_json::Error> {
    let saw_float = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = BoundedValue {
        depth_left: max_depth,
        saw_float: &saw_float,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok((value, saw_float.get()))
}

/// A `Value` seed that allows `depth_left` more levels of arrays and objects.
#[derive(Clone, Copy)]
struct BoundedValue<'a> {
    depth_left: usize,
    /// Set when a number is handed over as `f64`.
    saw_float: &'a Cell<bool>,
}

impl BoundedValue<'_> {
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(Self { depth_left, ..self }),
            None => Err(E::custom("the JSON is nested too deeply")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.saw_float.set(true);
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        no_nul(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        no_nul(&v)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let child = self.enter()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            no_nul(&key)?;
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(access.next_value_seed(child)?);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member {:?}",
                        slot.key()
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// U+0000 cannot be stored by every store (`PostgreSQL`'s text and jsonb refuse it), so no store
/// gets it: one behaviour everywhere, and a precise 400 instead of a 500.
fn no_nul<E: de::Error>(text: &str) -> Result<(), E> {
    if text.contains('\0') {
        Err(E::custom("strings may not contain U+0000"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_what_serde_json_parses() {
        let text = br#"{"a":[1,-2,3.5,true,null,"x\u00e9"],"b":{"c":{}}}"#;
        let ours = parse_value(text, 8).unwrap();
        let theirs: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_the_key_named() {
        let err = parse_value(br#"{"a":1,"b":{"x":1,"x":2}}"#, 8).unwrap_err();
        assert!(err.to_string().contains("duplicate member \"x\""), "{err}");
    }

    #[test]
    fn depth_bound_counts_containers() {
        assert!(parse_value(br#"{"a":{"b":[1]}}"#, 3).is_ok());
        let err = parse_value(br#"{"a":{"b":[1]}}"#, 2).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
        assert_eq!(parse_value(b"7", 0).unwrap(), json!(7));
    }

    #[test]
    fn trailing_data_is_rejected() {
        assert!(parse_value(br#"{"a":1} x"#, 8).is_err());
        assert!(parse_value(br#"{"a":1}{}"#, 8).is_err());
        assert!(parse_value(b"{\"a\":1}  \n", 8).is_ok());
    }

    #[test]
    fn hostile_scalars_are_rejected() {
        assert!(parse_value(br#"{"a":1e400}"#, 8).is_err());
        assert!(parse_value(br#"{"a":"\ud800"}"#, 8).is_err());
        assert!(parse_value(b"\xef\xbb\xbf{}", 8).is_err());
        assert!(parse_value(b"{\"a\":\"\xff\"}", 8).is_err());
        let nul = parse_value(br#"{"a":"x\u0000y"}"#, 8).unwrap_err();
        assert!(nul.to_string().contains("U+0000"), "{nul}");
        assert!(parse_value(br#"{"a\u0000":1}"#, 8).is_err());
    }
}

/// How a number literal would change if it were stored as parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// An integer past 64 bits, rounded to the nearest `f64`.
    Rounded,
    /// A number other than zero too small for an `f64`, stored as 0 (`1e-400`).
    Zeroed,
}

/// The first number literal in `bytes` (a JSON text that already parsed) whose value would
/// change if stored, with the member it belongs to and how: an integer that fits neither `i64`
/// nor `u64`, or a number other than zero that underflows to 0. `serde_json` (without
/// `arbitrary_precision`) hands the first to `visit_f64`, exactly like `1.5`, and keeps a
/// rounded approximation: `2^64` would be stored as `18446744073709552000`; the second arrives
/// as `0.0`. Only the text tells them apart, so this scans it once, linearly — and only when
/// the parse saw a float ([`parse_value_noting_floats`]): both always arrive as one.
pub(crate) fn out_of_range_number(bytes: &[u8]) -> Option<(String, String, Lost)> {
    let mut i = 0;
    let mut last_string: (usize, usize) = (0, 0);
    let mut member: (usize, usize) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                last_string = (start, i.min(bytes.len()));
                i += 1;
            }
            b':' => {
                member = last_string;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
                let integer = !literal.contains(['.', 'e', 'E']);
                let lost = if integer {
                    (literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err())
                        .then_some(Lost::Rounded)
                } else {
                    underflows(literal).then_some(Lost::Zeroed)
                };
                if let Some(lost) = lost {
                    let name = String::from_utf8_lossy(&bytes[member.0..member.1]).into_owned();
                    return Some((name, literal.chars().take(40).collect(), lost));
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether the float literal `literal` names a number other than zero that an `f64` cannot
/// hold, so that it would be read as 0 (`1e-400`; `0e-999` is a zero).
pub(crate) fn underflows(literal: &str) -> bool {
    let mantissa = literal.split(['e', 'E']).next().unwrap_or_default();
    literal.parse::<f64>() == Ok(0.0) && mantissa.bytes().any(|digit| matches!(digit, b'1'..=b'9'))
}

#[cfg(test)]
mod range_tests {
    use super::{Lost, out_of_range_number};

    #[test]
    fn integers_past_64_bits_are_found_with_their_member() {
        let found = |text: &str| out_of_range_number(text.as_bytes());
        assert_eq!(found(r#"{"n": 1, "m": -5, "f": 1.5e300}"#), None);
        assert_eq!(
            found(r#"{"max": 18446744073709551615, "min": -9223372036854775808}"#),
            None
        );
        assert_eq!(
            found(r#"{"a": "x:1", "n": 18446744073709551616}"#),
            Some(("n".into(), "18446744073709551616".into(), Lost::Rounded))
        );
        assert_eq!(
            found(r#"{"o": {"deep\"er": [1, -9223372036854775809]}}"#),
            Some((
                "deep\\\"er".into(),
                "-9223372036854775809".into(),
                Lost::Rounded
            ))
        );
        assert_eq!(found(r#"{"s": "123456789012345678901234567890"}"#), None);
    }

    #[test]
    fn numbers_that_underflow_to_zero_are_found_and_zeros_are_not() {
        let found = |text: &str| out_of_range_number(text.as_bytes());
        assert_eq!(
            found(r#"{"z": 0.0, "e": 0e-999, "n": -0.000E+5, "s": 5e-324, "x": 1.5e-300}"#),
            None
        );
        assert_eq!(
            found(r#"{"a": 1, "tiny": 1e-400}"#),
            Some(("tiny".into(), "1e-400".into(), Lost::Zeroed))
        );
        assert_eq!(
            found(r#"{"neg": -0.0001E-330}"#),
            Some(("neg".into(), "-0.0001E-330".into(), Lost::Zeroed))
        );
    }
}
