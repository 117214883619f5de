//! Wall-clock time as milliseconds since the Unix epoch, written as RFC 3339 in UTC.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }

    /// From milliseconds since the epoch.
    pub fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub fn millis(&self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (what DynamoDB's TTL attribute holds).
    pub fn seconds(&self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time plus `seconds`.
    pub fn plus_seconds(&self, seconds: i64) -> Self {
        Timestamp(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T03:04:05.678Z`.
    pub fn rfc3339(&self) -> String {
        let secs = self.0.div_euclid(1000);
        let ms = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Seconds since 1970-01-01T00:00:00Z of a written instant, in UTC: Unix seconds (`1700000000`,
/// a fraction is dropped), `YYYY-MM-DD HH:MM:SS` as NAB writes it, or RFC 3339
/// (`YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)`). Years 1000 to 9999. `None` for anything
/// else.
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        return (all_digits(whole) && all_digits(fraction) && whole.len() <= 12)
            .then(|| whole.parse().ok())
            .flatten();
    }
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1000..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=days_in_month(y, m)).contains(&d)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &rest.as_bytes()[1..];
            if o.len() != 5
                || o[2] != b':'
                || !all_digits(rest.get(1..3)?)
                || !all_digits(rest.get(4..6)?)
            {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let mi: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || mi > 59 {
                return None;
            }
            sign * (h * 3600 + mi * 60)
        }
    };
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// Days in month `m` of year `y` (Gregorian).
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Howard Hinnant's civil-to-days conversion (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_written_instants() {
        // date -u -d '2014-04-01 00:00:00' +%s -> 1396310400
        assert_eq!(parse_instant("2014-04-01 00:00:00"), Some(1_396_310_400));
        assert_eq!(parse_instant("2014-04-01T00:00:00Z"), Some(1_396_310_400));
        assert_eq!(
            parse_instant("2014-04-01T02:00:00.250+02:00"),
            Some(1_396_310_400)
        );
        assert_eq!(
            parse_instant("2014-03-31T19:00:00-05:00"),
            Some(1_396_310_400)
        );
        assert_eq!(
            parse_instant("2013-12-02 21:15:00.000000"),
            Some(1_386_018_900)
        );
        assert_eq!(parse_instant("1396310400"), Some(1_396_310_400));
        assert_eq!(parse_instant("2016-02-29 00:00:00"), Some(1_456_704_000));
        assert_eq!(parse_instant("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_instant(" 1396310400.9 "), Some(1_396_310_400));
        for bad in [
            "",
            "yesterday",
            "2014-13-01 00:00:00",
            "2014-04-01",
            "2014-04-01 24:00:00",
            "2014-04-01T00:00:00+2",
            "2014-04-01T00:00:00.",
            "-5",
            "1234567890123",
            "2014-04-01 00:00:00 extra",
            "２０１４-04-01 00:00:00",
            "2014-02-29 00:00:00",
            "2014-04-31T00:00:00Z",
            "1.2.3",
            "1.",
            ".5",
            "2014-04-01T00:00:00++1:00",
            "2014-04-01T00:00:00+01:-0",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
        for (ms, _) in [(0i64, ()), (1_795_748_645_678, ()), (951_782_400_000, ())] {
            let written = Timestamp::from_millis(ms).rfc3339();
            assert_eq!(parse_instant(&written), Some(ms / 1000), "{written}");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            Timestamp::from_millis(0).rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        // date -u -d @1795748645 +%FT%T -> 2026-11-27T03:04:05
        assert_eq!(
            Timestamp::from_millis(1_795_748_645_123).rfc3339(),
            "2026-11-27T03:04:05.123Z"
        );
        assert_eq!(
            Timestamp::from_millis(951_782_400_000).rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(-1).rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(Timestamp::from_millis(1500).seconds(), 1);
    }
}
