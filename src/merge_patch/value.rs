//! A `serde_json::Value` read from JSON text that this crate wrote or that the patch scan
//! accepted, for the JSON Schema check of the members a patch set: the text is known to be
//! JSON, so this reads it in one pass with no `serde` visitor in between, and builds each
//! object's map at its final size.

use serde::de::Error as _;
use serde_json::{Error, Map, Value};

/// The value `text` holds; the same `Value` `serde_json::from_slice` gives.
///
/// # Errors
/// When `text` is not a JSON value.
pub(crate) fn value_of(text: &[u8]) -> Result<Value, Error> {
    let mut reader = Reader { text, at: 0 };
    let value = reader.value()?;
    reader.skip_space();
    if reader.at == text.len() {
        Ok(value)
    } else {
        Err(not_json())
    }
}

fn not_json() -> Error {
    Error::custom("not a JSON value")
}

/// How many plain characters of a string literal start `text` (up to a quote, a backslash or
/// a control character, which must come).
fn run_length(text: &[u8]) -> Result<usize, Error> {
    text.iter()
        .position(|&b| super::scan::STOPS_A_STRING_RUN[usize::from(b)])
        .ok_or_else(not_json)
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Result<u8, Error> {
        self.text.get(self.at).copied().ok_or_else(not_json)
    }

    fn skip_space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Past `byte`, after any space.
    fn expect(&mut self, byte: u8) -> Result<(), Error> {
        self.skip_space();
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(not_json())
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.skip_space();
        match self.peek()? {
            b'"' => self.string().map(Value::String),
            b'{' => self.object(),
            b'[' => self.array(),
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'n' => self.word(b"null", Value::Null),
            _ => self.number(),
        }
    }

    fn word(&mut self, word: &[u8], value: Value) -> Result<Value, Error> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(not_json())
        }
    }

    fn string(&mut self) -> Result<String, Error> {
        let start = self.at;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i += run_length(&self.text[i.min(self.text.len())..])?;
            match self.text[i] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                _ => return Err(not_json()),
            }
        }
        self.at = i + 1;
        if escaped {
            serde_json::from_slice(&self.text[start..self.at])
        } else {
            std::str::from_utf8(&self.text[start + 1..i])
                .map(str::to_owned)
                .map_err(|_| not_json())
        }
    }

    fn number(&mut self) -> Result<Value, Error> {
        let start = self.at;
        let end = self.text[start..]
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .map_or(self.text.len(), |n| start + n);
        self.at = end;
        let literal = &self.text[start..end];
        let integer = std::str::from_utf8(literal).ok().filter(|digits| {
            *digits != "-0" && digits.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        });
        let exact = integer.and_then(|digits| {
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

    fn object(&mut self) -> Result<Value, Error> {
        self.at += 1;
        let mut entries = Vec::new();
        self.skip_space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(Value::Object(Map::new()));
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            self.expect(b':')?;
            entries.push((key, self.value()?));
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(Value::Object(entries.into_iter().collect()));
                }
                _ => return Err(not_json()),
            }
        }
    }

    fn array(&mut self) -> Result<Value, Error> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(not_json()),
            }
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
