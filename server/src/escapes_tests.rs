//! Tests of `escapes`: every way of escaping against a byte-at-a-time reference.

use super::*;

/// `text` escaped for a JSON string into `out`, without the quotes.
fn push_json(out: &mut LineBuffer, text: &str) {
    push_debug_or_json::<Json>(out, text).unwrap();
}

/// `text` escaped as `Debug` escapes ASCII into `out`, without the quotes; refused past
/// ASCII, with `out` as it was.
fn push_debug_ascii(out: &mut LineBuffer, text: &str) -> Result<(), PastAscii> {
    push_debug_or_json::<DebugAscii>(out, text)
}

/// [`push_quoted`] with no prefix, its quotes taken off again.
fn push_debug_or_json<E: Escapes>(out: &mut LineBuffer, text: &str) -> Result<(), PastAscii> {
    let start = out.len();
    let before = out.as_bytes().to_vec();
    if let Err(refused) = push_quoted::<E>(out, &Padded::new(""), text) {
        assert_eq!(out.as_bytes(), before, "refused, and nothing written");
        return Err(refused);
    }
    let written = out.as_bytes()[start..].to_vec();
    assert_eq!((written[0], written[written.len() - 1]), (b'"', b'"'));
    out.truncate(start);
    out.push_bytes(&written[1..written.len() - 1]);
    Ok(())
}

/// Every byte to escape, at every offset of a word and next to every other, as the byte at
/// a time loop escapes it.
#[test]
fn word_at_a_time_escapes_as_byte_at_a_time() {
    fn one_by_one(text: &str, table: &[bool; 256], escape: fn(u8, &mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in text.as_bytes() {
            if table[usize::from(byte)] {
                escape(byte, &mut out);
            } else {
                out.push(byte);
            }
        }
        out
    }
    let specials: Vec<char> = (0u8..0x20)
        .chain([b'"', b'\\', 0x7f, b'a', b' ', b'~', b'!', b'#', b'[', b']'])
        .map(char::from)
        .collect();
    let mut texts = vec![
        String::new(),
        "plain text, long enough for words".to_owned(),
    ];
    for (i, &special) in specials.iter().enumerate() {
        for offset in 0..33 {
            let mut text = "x".repeat(offset);
            text.push(special);
            text.push(specials[(i * 7 + offset) % specials.len()]);
            text.push_str("tail of it");
            texts.push(text);
        }
    }
    // The same after a first escape and with a tail of a block or more, so that the rest is
    // escaped in whole blocks (the block and word path, not the byte path of a text shorter
    // than a block), the escapes at every offset of two blocks.
    for (i, &special) in specials.iter().enumerate() {
        for offset in 0..32 {
            let mut text = "\"".to_owned();
            text.push_str(&"p".repeat(offset));
            text.push(special);
            text.push(specials[(i * 5 + offset) % specials.len()]);
            text.push_str("and a tail that fills a block or two");
            texts.push(text);
        }
    }
    // Runs of two-character escapes, whole words of them, at every offset.
    for offset in 0..17 {
        texts.push(format!(
            "\"{}{}",
            "x".repeat(offset),
            "\"\\\n\r\t\"\"\\".repeat(9)
        ));
    }
    texts.push(specials.iter().collect());
    // Long texts, escapes everywhere and nowhere.
    let every_special: String = specials.iter().collect();
    texts.push(every_special.repeat(40));
    texts.push("plain ".repeat(100));
    texts.push(format!("{}\"{}\u{1}", "q\"".repeat(300), "x".repeat(500)));
    texts.push("é \u{2028} \"q\" \\ \u{1f600}\n".to_owned());
    // Past ASCII after escapes of both lengths, at every offset.
    for offset in 0..33 {
        texts.push(format!(
            "{}\"\u{1}{}é",
            "q".repeat(offset),
            "x".repeat(offset)
        ));
    }
    // One buffer for every line, so that the room past each line's end holds the bytes
    // of the lines before, as it does in the server.
    let mut line = LineBuffer::new();
    let mut pushed = |escape: fn(&mut LineBuffer, &str), text: &str| {
        line.clear(usize::MAX);
        line.push(b'x');
        escape(&mut line, text);
        line.as_bytes()[1..].to_vec()
    };
    for text in &texts {
        let json = pushed(push_json, text);
        assert_eq!(
            json,
            one_by_one(text, &JSON_ESCAPES, json_escape),
            "{text:?}"
        );
        if text.is_ascii() {
            let debug = pushed(|line, text| push_debug_ascii(line, text).unwrap(), text);
            let expected = one_by_one(text, &DEBUG_ESCAPES, debug_escape);
            assert_eq!(debug, expected, "{text:?}");
            assert_eq!(
                format!("\"{}\"", String::from_utf8(expected).unwrap()),
                format!("{text:?}")
            );
        } else {
            // Not ASCII: refused, and the line is as it was.
            let refused = pushed(
                |line, text| assert!(push_debug_ascii(line, text).is_err()),
                text,
            );
            assert!(refused.is_empty(), "{text:?}");
        }
    }
}

/// The marks of a block are exactly the bytes the tables escape, at every position,
/// whatever their neighbours: every pair of bytes, side by side and apart.
#[test]
fn marks_are_exactly_the_bytes_to_escape() {
    fn expected(block: [u8; 16], table: &[bool; 256]) -> u128 {
        (0..16)
            .filter(|&i| table[usize::from(block[i])])
            .map(|i| 0x80u128 << (8 * i))
            .sum()
    }
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            let block = [b'x', a, b, 0x20, a, a, b, b, a, b'"', b, 0x7f, b, a, 0, a];
            assert_eq!(
                marks::<Json>(&block),
                expected(block, &JSON_ESCAPES),
                "{a:#x} {b:#x}"
            );
            // Past ASCII too: `Debug`'s table marks every such byte, where the escaping
            // stops.
            let debug = expected(block, &DEBUG_ESCAPES);
            assert_eq!(marks::<DebugAscii>(&block), debug, "{a:#x} {b:#x}");
        }
    }
}

#[test]
fn ascii_is_escaped_as_debug_escapes_it() {
    let every: String = (0u8..0x80).map(char::from).collect();
    for text in [every.as_str(), "plain", "", "\"", "a\"b\\c\u{7f}"] {
        let mut ours = String::from("\"");
        write_debug_ascii(&mut ours, text).unwrap();
        ours.push('"');
        assert_eq!(ours, format!("{text:?}"));
    }
}

#[test]
fn json_strings_are_escaped_as_serde_json_reads_them_back() {
    let every: String = (0u32..0x80).filter_map(char::from_u32).collect();
    for text in [
        every.as_str(),
        "plain",
        "",
        "é \u{2028} \"q\" \\ \u{1f600}\n",
    ] {
        let mut ours = String::from("\"");
        write_json(&mut ours, text).unwrap();
        ours.push('"');
        let back: String = serde_json::from_str(&ours).unwrap();
        assert_eq!(back, text);
        // Byte for byte as serde_json writes it (tracing-subscriber's JSON lines do).
        assert_eq!(ours, serde_json::to_string(text).unwrap());
        let mut words = LineBuffer::new();
        words.push(b'"');
        push_json(&mut words, text);
        words.push(b'"');
        assert_eq!(String::from_utf8(words.as_bytes().to_vec()).unwrap(), ours);
        assert!(!ours[1..ours.len() - 1].bytes().any(|b| b < 0x20));
    }
}

/// Random texts over an alphabet heavy in what is escaped (quotes, backslashes, newlines,
/// control characters with long escapes, `DEL`, non-ASCII) and of every length up to 200,
/// written one after the other into one buffer with random field names before them, escape
/// as `Debug` and `serde_json` do: the block and word path, its window and its masks, at
/// every mix of offsets the alphabet makes. A fixed seed, so a failure repeats.
#[test]
fn random_texts_escape_as_debug_and_serde_json_do() {
    const ALPHABET: [&str; 14] = [
        "a", "b", " ", "\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é", "x", "\"\"",
    ];
    const NAMES: [&str; 3] = ["", " actor=", ",\"patch\":"];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut line = LineBuffer::new();
    for _ in 0..4000 {
        let len = (next() % 200) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let name = NAMES[(next() % NAMES.len() as u64) as usize];
        let prefix = Padded::<PADDED>::new(name);
        let start = line.len();
        let json = push_quoted::<Json>(&mut line, &prefix, &text);
        assert!(json.is_ok());
        let written = String::from_utf8(line.as_bytes()[start..].to_vec()).unwrap();
        assert_eq!(
            written,
            format!("{name}{}", serde_json::to_string(&text).unwrap())
        );
        let start = line.len();
        match push_quoted::<DebugAscii>(&mut line, &prefix, &text) {
            Ok(()) => {
                let written = String::from_utf8(line.as_bytes()[start..].to_vec()).unwrap();
                assert_eq!(written, format!("{name}{text:?}"));
            }
            Err(PastAscii) => {
                assert!(!text.is_ascii(), "{text:?}");
                assert_eq!(line.len(), start, "refused, nothing written");
            }
        }
        if line.len() > 16 * 1024 {
            line.clear(usize::MAX);
        }
    }
}
