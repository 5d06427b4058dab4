//! The timestamp at the start of each log line, as `tracing-subscriber`'s `SystemTime` writes
//! it (RFC 3339, UTC, microseconds: `2026-11-29T19:05:38.445008Z`), with the date and time
//! of day worked out once per second per thread instead of through `core::fmt` on every line.

use std::cell::Cell;
use std::fmt::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::line_buffer::PushBytes;

/// `YYYY-MM-DDTHH:MM:SS.`: a second's text, with the dot before the microseconds.
type SecondText = [u8; 20];

thread_local! {
    /// The last second this thread wrote, and its text.
    static SECOND: Cell<(u64, SecondText)> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// The last second of year 9999: the second's text of later times is not the fixed
/// [`SecondText`] (more digits in the year) and is made on its own ([`far_second`]).
const LAST_SECOND: u64 = 253_402_300_799;

/// How long after the epoch `time` is (times before 1970 as 1970: no clock here runs that
/// early either).
pub(crate) fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Writes the current time.
pub(crate) fn write_now(out: &mut impl Write) -> fmt::Result {
    write_time(SystemTime::now(), out)
}

/// Appends the time `since` the epoch, as [`write_now`] writes it: one fixed-size copy of
/// the second's text (made once per second per thread) and the microseconds.
pub(crate) fn push_time(since: Duration, out: &mut impl PushBytes) {
    match time_text(since) {
        Some(text) => out.push_bytes(&text),
        None => out.push_bytes(far_time(since).as_bytes()),
    }
}

/// The text of the time `since` the epoch, up to year 9999.
fn time_text(since: Duration) -> Option<[u8; 27]> {
    let secs = since.as_secs();
    if secs > LAST_SECOND {
        return None;
    }
    let mut text = [0; 27];
    text[..20].copy_from_slice(&second_text(secs));
    text[20..].copy_from_slice(&micros_text(since.subsec_micros()));
    Some(text)
}

/// A time past year 9999 as `tracing-subscriber` writes it: the year with a `+`.
fn far_time(since: Duration) -> String {
    let micros = micros_text(since.subsec_micros());
    let micros = std::str::from_utf8(&micros).unwrap_or_default();
    format!("+{}.{micros}", far_second(since.as_secs()))
}

/// `YYYYY-MM-DDTHH:MM:SS` for a second past year 9999, as many digits in the year as it takes.
fn far_second(secs: u64) -> String {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The six digits of the microseconds and the `Z`, two digits at a time.
fn micros_text(micros: u32) -> [u8; 7] {
    let mut text = [b'Z'; 7];
    let micros = micros.min(999_999) as usize;
    text[..2].copy_from_slice(&TWO_DIGITS[micros / 10_000]);
    text[2..4].copy_from_slice(&TWO_DIGITS[micros / 100 % 100]);
    text[4..6].copy_from_slice(&TWO_DIGITS[micros % 100]);
    text
}

/// `00` to `99`.
const TWO_DIGITS: [[u8; 2]; 100] = {
    let mut digits = [[0; 2]; 100];
    let mut n = 0;
    while n < 100 {
        digits[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    digits
};

/// Appends the second `secs` after the epoch, `YYYY-MM-DDTHH:MM:SS` (UTC, no zone), as the
/// library's audit records and error bodies write their times (past year 9999, with the
/// year's every digit and no `+`).
pub(crate) fn push_second(secs: u64, out: &mut impl PushBytes) {
    if secs > LAST_SECOND {
        out.push_bytes(far_second(secs).as_bytes());
    } else {
        out.push_bytes(&second_text(secs)[..19]);
    }
}

/// The text of second `secs`, made once per second per thread.
fn second_text(secs: u64) -> SecondText {
    debug_assert!(secs <= LAST_SECOND, "a four-digit year");
    SECOND.with(|second| {
        let (cached, text) = second.get();
        if cached == secs {
            return text;
        }
        let text = make_second_text(secs);
        second.set((secs, text));
        text
    })
}

/// Writes `time` (times before 1970 as 1970).
pub(crate) fn write_time(time: SystemTime, out: &mut impl Write) -> fmt::Result {
    let since = since_epoch(time);
    match time_text(since) {
        Some(text) => out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?),
        None => out.write_str(&far_time(since)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` (at most [`LAST_SECOND`]) after the epoch.
fn make_second_text(secs: u64) -> SecondText {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let year = year as usize;
    let mut text = *b"0000-00-00T00:00:00.";
    text[..2].copy_from_slice(&TWO_DIGITS[year / 100]);
    text[2..4].copy_from_slice(&TWO_DIGITS[year % 100]);
    for (at, value) in [
        (5, month as usize),
        (8, day as usize),
        (11, (rem / 3600) as usize),
        (14, (rem % 3600 / 60) as usize),
        (17, (rem % 60) as usize),
    ] {
        text[at..at + 2].copy_from_slice(&TWO_DIGITS[value]);
    }
    text
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, as the library's error timestamps use.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    use super::*;

    fn at(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        let time = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into());
        write_time(time, &mut out).unwrap();
        out
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_795_633_538, 445_008), "2026-11-25T19:05:38.445008Z");
        assert_eq!(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
        // The cached second is replaced when the second changes, in either direction.
        assert_eq!(at(4_102_444_800, 1), "2100-01-01T00:00:00.000001Z");
        assert_eq!(at(0, 10), "1970-01-01T00:00:00.000010Z");
        // Around the end of year 9999: past it, a `+` and five digits, as
        // `tracing-subscriber` writes them.
        assert_eq!(at(LAST_SECOND, 5), "9999-12-31T23:59:59.000005Z");
        assert_eq!(
            at(LAST_SECOND + 1, 999_999),
            "+10000-01-01T00:00:00.999999Z"
        );
        assert_eq!(
            at(LAST_SECOND + 86_400 + 61, 5),
            "+10000-01-02T00:01:00.000005Z"
        );
        let mut pushed = Vec::new();
        push_time(Duration::new(LAST_SECOND + 1, 7_000), &mut pushed);
        assert_eq!(pushed, b"+10000-01-01T00:00:00.000007Z");
    }

    /// The same text as `tracing-subscriber`'s clock, read at (nearly) the same moment, whether
    /// written (`write_now`) or appended (`push_time`).
    #[test]
    fn the_format_of_tracing_subscriber() {
        for _ in 0..100 {
            let mut ours = String::new();
            write_now(&mut ours).unwrap();
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            let mut pushed = Vec::new();
            push_time(since_epoch(SystemTime::now()), &mut pushed);
            let pushed = String::from_utf8(pushed).unwrap();
            // Equal up to the microseconds, unless a second passed in between: then again.
            if ours[..20] == theirs[..20] && pushed[..20] == theirs[..20] {
                assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
                assert_eq!(pushed.len(), theirs.len(), "{pushed} {theirs}");
                assert!(ours.ends_with('Z') && theirs.ends_with('Z') && pushed.ends_with('Z'));
                return;
            }
        }
        panic!("never read the same second as tracing-subscriber");
    }
}
