//! Event time: capture timestamps as nanoseconds since the Unix epoch.
//!
//! Everything in the pipeline reads time from packets, never from the wall clock, so a replay
//! of a capture gives the same windows, timeouts and alerts as the live run that saw it.

use std::fmt;

/// A point in capture time: nanoseconds since 1970-01-01T00:00:00Z (UTC).
///
/// `u64` nanoseconds cover the years 1970..2554.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Nanos {
    /// The epoch itself; also used as "no time seen yet".
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable time.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// Builds a time from whole seconds and a nanosecond fraction (saturating).
    #[must_use]
    pub const fn from_parts(secs: u64, nanos: u32) -> Nanos {
        Nanos(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos as u64))
    }

    /// Builds a time from whole seconds (saturating).
    #[must_use]
    pub const fn from_secs(secs: u64) -> Nanos {
        Nanos(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Whole seconds since the epoch.
    #[must_use]
    pub const fn secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    /// The nanosecond part within the second (`0..1_000_000_000`).
    #[must_use]
    pub const fn subsec_nanos(self) -> u32 {
        // The remainder is below 10^9 and fits a u32.
        (self.0 % NANOS_PER_SEC) as u32
    }

    /// `self + d`, saturating at [`Nanos::MAX`].
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Nanos {
        Nanos(self.0.saturating_add(d.0))
    }

    /// `self - d`, saturating at [`Nanos::ZERO`].
    #[must_use]
    pub const fn saturating_sub(self, d: Duration) -> Nanos {
        Nanos(self.0.saturating_sub(d.0))
    }

    /// The time elapsed from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub const fn since(self, earlier: Nanos) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// Start of the tumbling window of length `width` that holds `self` (windows are aligned
    /// to the epoch). A zero width returns `self`.
    #[must_use]
    pub const fn window_start(self, width: Duration) -> Nanos {
        if width.0 == 0 {
            return self;
        }
        Nanos(self.0 - self.0 % width.0)
    }

    /// Formats as RFC 3339 in UTC with nine fractional digits,
    /// e.g. `2026-01-01T00:00:00.000000000Z`.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Nanos {
    /// RFC 3339, UTC, nanosecond precision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            self.subsec_nanos()
        )
    }
}

impl Nanos {
    /// Appends the RFC 3339 form [`fmt::Display`] writes (`2026-01-01T00:00:00.000000000Z`) to
    /// `out`, without going through `core::fmt` (flow records as JSON write two per record).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let secs = self.secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        if y < 10_000 {
            push_fixed(out, y, 4);
        } else {
            out.extend_from_slice(y.to_string().as_bytes());
        }
        out.push(b'-');
        push_fixed(out, m, 2);
        out.push(b'-');
        push_fixed(out, d, 2);
        out.push(b'T');
        push_fixed(out, rem / 3600, 2);
        out.push(b':');
        push_fixed(out, (rem / 60) % 60, 2);
        out.push(b':');
        push_fixed(out, rem % 60, 2);
        out.push(b'.');
        push_fixed(out, u64::from(self.subsec_nanos()), 9);
        out.push(b'Z');
    }
}

/// Appends the last `width` decimal digits of `v`, zero-padded.
fn push_fixed(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    if let Some(digits) = out.get_mut(start..) {
        for c in digits.iter_mut().rev() {
            *c = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
}

impl serde::Serialize for Nanos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts.
const fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A span of event time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Zero length.
    pub const ZERO: Duration = Duration(0);

    /// Whole seconds (saturating).
    #[must_use]
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Milliseconds (saturating).
    #[must_use]
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(ms.saturating_mul(1_000_000))
    }

    /// Length in nanoseconds.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Length in (fractional) seconds.
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
}

impl From<std::time::Duration> for Duration {
    /// Saturates at `u64::MAX` nanoseconds (about 584 years).
    fn from(d: std::time::Duration) -> Duration {
        Duration(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> std::time::Duration {
        std::time::Duration::from_nanos(d.0)
    }
}

/// Parses a span of time written as text in a configuration file: `30s`, `5m`, `1h 30m`,
/// `250ms`, `7days` (humantime syntax). The error names the text and gives examples.
///
/// # Errors
/// Text that is not a duration.
pub fn parse_config_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration `{text}` ({e}); write e.g. `30s`, `5m`, `250ms`"))
}

/// A span of time in a configuration file, written as text ([`parse_config_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ConfigDuration, D::Error> {
        let s = String::deserialize(d)?;
        parse_config_duration(&s).map(|d| ConfigDuration(Duration::from(d))).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_rfc3339_matches_display() {
        for t in [0u64, 1, 999_999_999, 1_764_000_000_123_456_789, 253_402_300_799_999_999, u64::MAX] {
            let mut v = Vec::new();
            Nanos(t).write_rfc3339(&mut v);
            assert_eq!(String::from_utf8(v).unwrap(), Nanos(t).to_string(), "{t}");
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = Vec::new();
            Nanos(x).write_rfc3339(&mut v);
            assert_eq!(String::from_utf8(v).unwrap(), Nanos(x).to_string());
        }
    }

    #[test]
    fn formats_epoch_and_known_dates_as_rfc3339() {
        assert_eq!(Nanos::ZERO.to_string(), "1970-01-01T00:00:00.000000000Z");
        // 2026-01-01T00:00:00Z = 1767225600
        assert_eq!(
            Nanos::from_parts(1_767_225_600, 123_456_789).to_string(),
            "2026-01-01T00:00:00.123456789Z"
        );
        // Leap day 2024-02-29T23:59:59Z = 1709251199
        assert_eq!(Nanos::from_secs(1_709_251_199).to_string(), "2024-02-29T23:59:59.000000000Z");
        // 2000-03-01 (after a 400-year leap day) = 951868800
        assert_eq!(Nanos::from_secs(951_868_800).to_string(), "2000-03-01T00:00:00.000000000Z");
    }

    #[test]
    fn window_start_aligns_to_epoch() {
        let w = Duration::from_secs(30);
        assert_eq!(Nanos::from_parts(61, 5).window_start(w), Nanos::from_secs(60));
        assert_eq!(Nanos::from_secs(60).window_start(w), Nanos::from_secs(60));
        assert_eq!(Nanos(7).window_start(Duration::ZERO), Nanos(7));
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Nanos(5).saturating_sub(Duration(9)), Nanos::ZERO);
        assert_eq!(Nanos::MAX.saturating_add(Duration(1)), Nanos::MAX);
        assert_eq!(Nanos(5).since(Nanos(9)), Duration::ZERO);
    }
}
