//! The timestamp at the start of each log line, as `tracing-subscriber`'s `SystemTime` writes
//! it (RFC 3339, UTC, microseconds: `2026-11-29T19:05:38.445008Z`), with the date and time
//! of day worked out once per second per thread instead of through `core::fmt` on every line.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::line_buffer::PushBytes;

thread_local! {
    /// The last second this thread wrote, and its text up to the seconds' dot.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes the current time.
pub(crate) fn write_now(out: &mut impl Write) -> fmt::Result {
    write_time(SystemTime::now(), out)
}

/// Appends the current time to a line's bytes, as [`write_now`] writes it.
pub(crate) fn push_now(out: &mut impl PushBytes) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let _ = with_second(since.as_secs(), |text| {
        out.push_bytes(text.as_bytes());
        Ok(())
    });
    out.push_bytes(&micros_text(since.subsec_micros()));
}

/// The six digits of the microseconds and the `Z`.
fn micros_text(micros: u32) -> [u8; 7] {
    let mut text = [b'0'; 7];
    let mut left = micros;
    for digit in text[..6].iter_mut().rev() {
        *digit = b'0' + (left % 10) as u8;
        left /= 10;
    }
    text[6] = b'Z';
    text
}

/// Appends `time` to the second, `YYYY-MM-DDTHH:MM:SS` (UTC, no zone), as the library's
/// audit records and error bodies write their times.
pub(crate) fn push_second(time: SystemTime, out: &mut impl PushBytes) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let _ = with_second(secs, |text| {
        out.push_bytes(text.strip_suffix('.').unwrap_or(text).as_bytes());
        Ok(())
    });
}

/// `f` with the text of second `secs` up to its dot, made once per second per thread.
fn with_second(secs: u64, f: impl FnOnce(&str) -> fmt::Result) -> fmt::Result {
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            second.1.clear();
            write_second(secs, &mut second.1)?;
            second.0 = secs;
        }
        f(&second.1)
    })
}

/// Writes `time` (times before 1970 as 1970: no clock here runs that late).
pub(crate) fn write_time(time: SystemTime, out: &mut impl Write) -> fmt::Result {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    with_second(secs, |text| out.write_str(text))?;
    let micros = micros_text(since.subsec_micros());
    out.write_str(std::str::from_utf8(&micros).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` after the epoch.
fn write_second(secs: u64, out: &mut String) -> fmt::Result {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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
    }

    /// The same text as `tracing-subscriber`'s clock, read at (nearly) the same moment, whether
    /// written (`write_now`) or appended (`push_now`).
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
            push_now(&mut pushed);
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
