//! A `serde_json::Value` read from JSON text that this crate wrote or that the patch scan
//! accepted, for the JSON Schema check of the members a patch set: the text is known to be
//! JSON, so this reads it in one pass with no `serde` visitor in between, and builds each
//! object's map at its final size.

use serde_json::{Error, Map, Value};

use super::cursor::{Cursor, is_plain_integer, not_json};

/// The value `text` holds; the same `Value` `serde_json::from_slice` gives.
///
/// # Errors
/// When `text` is not a JSON value.
pub(crate) fn value_of(text: &[u8]) -> Result<Value, Error> {
    let mut cursor = Cursor::new(text);
    let value = value(&mut cursor)?;
    if cursor.at_end() {
        Ok(value)
    } else {
        Err(not_json())
    }
}

fn value(cursor: &mut Cursor<'_>) -> Result<Value, Error> {
    cursor.skip_space();
    match cursor.peek()? {
        b'"' => string(cursor).map(Value::String),
        b'{' => object(cursor),
        b'[' => array(cursor),
        b't' => cursor.word(b"true").map(|_| Value::Bool(true)),
        b'f' => cursor.word(b"false").map(|_| Value::Bool(false)),
        b'n' => cursor.word(b"null").map(|_| Value::Null),
        _ => number(cursor.number_literal()),
    }
}

fn string(cursor: &mut Cursor<'_>) -> Result<String, Error> {
    let (literal, escaped) = cursor.string_literal()?;
    if escaped {
        serde_json::from_slice(literal)
    } else {
        std::str::from_utf8(&literal[1..literal.len() - 1])
            .map(str::to_owned)
            .map_err(|_| not_json())
    }
}

fn number(literal: &[u8]) -> Result<Value, Error> {
    let exact = is_plain_integer(literal)
        .then(|| std::str::from_utf8(literal).ok())
        .flatten()
        .and_then(|digits| {
            if digits.starts_with('-') {
                digits.parse::<i64>().ok().map(Value::from)
            } else {
                digits.parse::<u64>().ok().map(Value::from)
            }
        });
    match exact {
        Some(value) => Ok(value),
        // Floats (and `-0`, which `serde_json` reads as one): as `serde_json` reads them.
        None => serde_json::from_slice::<serde_json::Number>(literal).map(Value::Number),
    }
}

fn object(cursor: &mut Cursor<'_>) -> Result<Value, Error> {
    cursor.at += 1;
    let mut entries = Vec::new();
    cursor.skip_space();
    if cursor.peek()? == b'}' {
        cursor.at += 1;
        return Ok(Value::Object(Map::new()));
    }
    loop {
        cursor.skip_space();
        let key = string(cursor)?;
        cursor.expect(b':')?;
        entries.push((key, value(cursor)?));
        cursor.skip_space();
        match cursor.peek()? {
            b',' => cursor.at += 1,
            b'}' => {
                cursor.at += 1;
                return Ok(Value::Object(entries.into_iter().collect()));
            }
            _ => return Err(not_json()),
        }
    }
}

fn array(cursor: &mut Cursor<'_>) -> Result<Value, Error> {
    cursor.at += 1;
    let mut items = Vec::new();
    cursor.skip_space();
    if cursor.peek()? == b']' {
        cursor.at += 1;
        return Ok(Value::Array(items));
    }
    loop {
        items.push(value(cursor)?);
        cursor.skip_space();
        match cursor.peek()? {
            b',' => cursor.at += 1,
            b']' => {
                cursor.at += 1;
                return Ok(Value::Array(items));
            }
            _ => return Err(not_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#""plain""#,
            r#""\u00e9\n\"\\\/\ud83d\ude00""#,
            r#"{"a":1,"b":[null,true,false,-5,18446744073709551615,-9223372036854775808],"c":{"d":{}}}"#,
            r#"[0,-0,1.5,-0.0,1E2,1e-7,2.50,-1.5e300]"#,
            r#" { "a" : [ 1 , 2 ] , "k\"ey" : "v" } "#,
            r#"{"a":1,"a":2}"#,
        ] {
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(value_of(text.as_bytes()).unwrap(), theirs, "{text}");
            assert_eq!(
                serde_json::to_string(&value_of(text.as_bytes()).unwrap()).unwrap(),
                serde_json::to_string(&theirs).unwrap(),
                "{text}"
            );
        }
        for text in ["", "{", "[1,", r#"{"a"}"#, "tru", "1 2", r#""x"#] {
            assert!(value_of(text.as_bytes()).is_err(), "{text}");
        }
    }
}
