//! Command-line forms of time: a start instant (RFC 3339 or seconds since the epoch) and a
//! duration with a unit (`60s`, `500ms`, `2m`).
//!
//! Both parse exactly to the nanosecond (no floating point), so `--start` values round-trip
//! through `Nanos`' RFC 3339 display.

use outpost_decode::{Duration, Nanos};

/// Why a time or duration argument was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeArgError {
    /// Not an RFC 3339 timestamp nor a number of seconds.
    #[error(
        "`{0}` is not a time: use RFC 3339 (2026-01-01T00:00:00Z, 2026-01-01T01:00:00.5+01:00) \
         or seconds since the epoch (1767225600)"
    )]
    BadTime(String),
    /// Not a number with an optional unit.
    #[error("`{0}` is not a duration: use a number and a unit (ns, us, ms, s, m, h), e.g. 60s or 500ms")]
    BadDuration(String),
    /// Before 1970 or after 2554 (what `Nanos` can hold).
    #[error("`{0}` is outside 1970-01-01 .. 2554")]
    OutOfRange(String),
}

/// Parses an instant: RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T` or a space
/// between date and time, up to nine fractional digits; leap second 60 is rejected) or seconds
/// since the Unix epoch with an optional fraction (`1767225600`, `1767225600.25`).
///
/// # Errors
/// [`TimeArgError`] when the text is neither form or the instant does not fit [`Nanos`].
pub fn parse_time(text: &str) -> Result<Nanos, TimeArgError> {
    let s = text.trim();
    let bad = || TimeArgError::BadTime(text.to_string());
    if s.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !s.contains('-') && !s.contains(':') {
        let ns = decimal_nanos(s, 1_000_000_000).ok_or_else(bad)?;
        return u64::try_from(ns).map(Nanos).map_err(|_| TimeArgError::OutOfRange(text.to_string()));
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let (year, month, day) =
        (num(0..4).ok_or_else(bad)?, num(5..7).ok_or_else(bad)?, num(8..10).ok_or_else(bad)?);
    let (hour, min, sec) =
        (num(11..13).ok_or_else(bad)?, num(14..16).ok_or_else(bad)?, num(17..19).ok_or_else(bad)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    if hour > 23 || min > 59 || sec > 59 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        frac_ns = f[..digits].parse::<i64>().map_err(|_| bad())? * 10i64.pow(9 - digits as u32);
        rest = &f[digits..];
    }
    let offset_secs = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(u8::is_ascii_digit) => {
            let (oh, om) =
                (i64::from((h1 - b'0') * 10 + (h2 - b'0')), i64::from((m1 - b'0') * 10 + (m2 - b'0')));
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let off = oh * 3600 + om * 60;
            if sign == b'-' { -off } else { off }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(frac_ns);
    u64::try_from(ns).map(Nanos).map_err(|_| TimeArgError::OutOfRange(text.to_string()))
}

/// Parses a duration: a decimal number and a unit, `ns`, `us` (or `µs`), `ms`, `s`, `m`
/// (or `min`) or `h`; a bare number is seconds. Exact to the nanosecond; finer fractions are
/// truncated.
///
/// # Errors
/// [`TimeArgError::BadDuration`] for anything else, or a value beyond `u64` nanoseconds.
pub fn parse_duration(text: &str) -> Result<Duration, TimeArgError> {
    let s = text.trim();
    let bad = || TimeArgError::BadDuration(text.to_string());
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_ns: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let ns = decimal_nanos(number, unit_ns).ok_or_else(bad)?;
    u64::try_from(ns).map(Duration).map_err(|_| bad())
}

/// `number * unit` for a non-negative decimal `number` (digits, optional `.` and digits),
/// truncated to an integer.
fn decimal_nanos(number: &str, unit: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) || int.len() > 20 {
        return None;
    }
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = whole.checked_mul(unit)?;
    let mut scale = unit;
    for digit in frac.bytes().take(18) {
        scale /= 10;
        value = value.checked_add(u128::from(digit - b'0') * scale)?;
        if scale == 0 {
            break;
        }
    }
    Some(value)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_nanos_display() {
        for text in [
            "1970-01-01T00:00:00.000000000Z",
            "2026-01-01T00:00:00.000000000Z",
            "2024-02-29T23:59:59.123456789Z",
            "2000-03-01T00:00:00.000000001Z",
            "2100-12-31T12:34:56.500000000Z",
        ] {
            assert_eq!(parse_time(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn rfc3339_accepts_offsets_short_fractions_and_a_space() {
        let base = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(base, Nanos::from_secs(1_767_225_600));
        assert_eq!(parse_time("2026-01-01T01:30:00+01:30").unwrap(), base);
        assert_eq!(parse_time("2025-12-31T23:00:00-01:00").unwrap(), base);
        assert_eq!(parse_time("2026-01-01 00:00:00.5z").unwrap(), Nanos(base.0 + 500_000_000));
    }

    #[test]
    fn epoch_seconds_with_and_without_fraction() {
        assert_eq!(parse_time("1767225600").unwrap(), Nanos::from_secs(1_767_225_600));
        assert_eq!(parse_time(" 1.25 ").unwrap(), Nanos(1_250_000_000));
        assert_eq!(parse_time("0").unwrap(), Nanos::ZERO);
    }

    #[test]
    fn bad_times_are_rejected() {
        for text in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "2026-1-01T00:00:00Z",
            "1.2.3",
        ] {
            assert!(parse_time(text).is_err(), "{text:?} accepted");
        }
        assert!(matches!(parse_time("1970-01-01T00:00:00+00:01"), Err(TimeArgError::OutOfRange(_))));
        assert!(matches!(parse_time("99999999999999999999"), Err(TimeArgError::OutOfRange(_))));
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250us").unwrap(), Duration(250_000));
        assert_eq!(parse_duration("7ns").unwrap(), Duration(7));
        assert_eq!(parse_duration(".5 s").unwrap(), Duration::from_millis(500));
        for text in ["", "s", "-1s", "1d", "1..5s", "ten seconds", "1e3s", "99999999999h"] {
            assert!(parse_duration(text).is_err(), "{text:?} accepted");
        }
    }
}
