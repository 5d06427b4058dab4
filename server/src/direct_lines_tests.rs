//! Tests of `direct_lines`: the same lines as the event formats write through `tracing`.

use std::sync::{Arc, Mutex};

use tracing::Level;

use super::*;
use crate::access_log::ShownPath;
use crate::logs::CapturedLines;

/// The lines `events` logs through `tracing` in `format`, their timestamps cut out.
pub(crate) fn through_tracing(format: LogFormat, events: impl FnOnce()) -> Vec<String> {
    let lines = CapturedLines::default();
    let sink = lines.clone();
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(Level::TRACE)
        .with_writer(move || sink.clone());
    match format {
        LogFormat::Text => tracing::subscriber::with_default(
            builder.event_format(crate::text_lines::TextLines).finish(),
            events,
        ),
        LogFormat::Json => tracing::subscriber::with_default(
            builder.event_format(crate::json_lines::JsonLines).finish(),
            events,
        ),
    }
    let bytes = lines.0.lock().unwrap().clone();
    untimed(&bytes)
}

/// The lines `write` writes directly in `format`, their timestamps cut out; every level of
/// every target enabled (for the writers that ask `tracing`), unless `write` says otherwise.
pub(crate) fn direct(format: LogFormat, write: impl FnOnce(&DirectLines)) -> Vec<String> {
    untimed(&direct_bytes(format, write))
}

/// What [`direct`] writes, timestamps and all.
pub(crate) fn direct_bytes(format: LogFormat, write: impl FnOnce(&DirectLines)) -> Vec<u8> {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let sink = bytes.clone();
    let lines = DirectLines::new(
        format,
        Arc::new(move |line: &[u8]| sink.lock().unwrap().extend_from_slice(line)),
    );
    let everything = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(everything, || write(&lines));
    bytes.lock().unwrap().clone()
}

/// Each line without its timestamp (which differs between two writes), every byte else kept.
fn untimed(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|line| match line.strip_prefix("{\"timestamp\":\"") {
            Some(rest) => {
                let (time, rest) = rest.split_once('"').unwrap();
                assert!(time.ends_with('Z'), "{line}");
                rest.to_owned()
            }
            None => {
                let (time, rest) = line.split_once(' ').unwrap();
                assert!(time.ends_with('Z'), "{line}");
                rest.to_owned()
            }
        })
        .collect()
}

const FORMATS: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

/// The access line with every kind of value, and text that needs escaping in each format:
/// quotes, backslashes, control characters, non-ASCII, empty; paths kept in place (shown as
/// they are) and escaped.
#[test]
fn access_lines_are_the_events_lines() {
    let values = [
        (
            "PATCH",
            "/beta/me/security",
            200u16,
            1234u64,
            "0a1b-request",
        ),
        ("GET", "/a\\u{a0}b", 404, 0, "quote\"back\\slash\nline\u{1}"),
        ("DELETE", "", 405, u64::MAX, "é \u{2028} \u{202e} \u{301}"),
        ("PATCH", "/x", 503, 7, ""),
        // Plain, but longer than is kept in place.
        (
            "GET",
            "/users/0123456789abcdef0123456789abcdef0123456789abcdef0123456789/security",
            200,
            1,
            "id",
        ),
    ];
    for format in FORMATS {
        for (method, path, status, latency_us, request_id) in values {
            let theirs = through_tracing(format, || {
                tracing::info!(
                    target: "security_update_server::access_log",
                    method = %method,
                    path = %ShownPath::of(path).as_str(),
                    status,
                    latency_us,
                    request_id,
                    "request"
                );
            });
            let ours = direct(format, |lines| {
                lines.write(
                    head!(INFO, "security_update_server::access_log", "request"),
                    |line| {
                        line.shown(field!("method"), method);
                        ShownPath::of(path).show(line, field!("path"));
                        line.number(field!("status"), u64::from(status));
                        line.number(field!("latency_us"), latency_us);
                        line.text(field!("request_id"), request_id);
                    },
                );
            });
            assert_eq!(ours, theirs, "{format:?}");
            assert_eq!(ours.len(), 1);
        }
    }
}

/// Every level, padded in text as `tracing-subscriber` pads it.
#[test]
fn levels_are_written_alike() {
    for format in FORMATS {
        let theirs = through_tracing(format, || {
            tracing::trace!(target: "a::b", "m n");
            tracing::debug!(target: "a::b", "m n");
            tracing::info!(target: "a::b", "m n");
            tracing::warn!(target: "a::b", "m n");
            tracing::error!(target: "a::b", "m n");
        });
        let ours = direct(format, |lines| {
            lines.write(head!(TRACE, "a::b", "m n"), |_| {});
            lines.write(head!(DEBUG, "a::b", "m n"), |_| {});
            lines.write(head!(INFO, "a::b", "m n"), |_| {});
            lines.write(head!(WARN, "a::b", "m n"), |_| {});
            lines.write(head!(ERROR, "a::b", "m n"), |_| {});
        });
        assert_eq!(ours, theirs, "{format:?}");
        assert_eq!(ours.len(), 5);
    }
}

/// A head is refused when its target or message would need an escape in either format.
#[test]
fn heads_with_anything_to_escape_are_refused() {
    for (target, message) in [("a\"b", "m"), ("t", "a\\b"), ("t", "line\n"), ("t", "é")] {
        let refused = std::panic::catch_unwind(|| Head::new("INFO", target, message));
        assert!(refused.is_err(), "{target:?} {message:?}");
    }
    let _ = Head::new("INFO", "security_update::audit", "audit");
}

/// A JSON line is one JSON object that reads back what was written.
#[test]
fn json_lines_read_back() {
    let tricky = "a \"q\" \\ \n\r\t\u{0}\u{1f} é \u{2028}";
    let ours = direct(LogFormat::Json, |lines| {
        lines.write(head!(INFO, "t", "json line"), |line| {
            line.text(field!("text"), tricky);
            line.shown(field!("shown"), tricky);
            line.number(field!("n"), 42);
        });
    });
    let value: serde_json::Value =
        serde_json::from_str(&format!("{{\"timestamp\":\"x\"{}", ours[0]))
            .unwrap_or_else(|e| panic!("{e}: {}", ours[0]));
    assert_eq!(value["fields"]["message"], "json line");
    assert_eq!(value["fields"]["text"], tricky);
    assert_eq!(value["fields"]["shown"], tricky);
    assert_eq!(value["fields"]["n"], 42);
    assert_eq!(value["level"], "INFO");
}
