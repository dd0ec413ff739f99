//! Beijing time (UTC+8). Dates in Yimen are Beijing dates whatever the box's zone
//! (DESIGN.md "Time"); the shell reads the clock and passes the instant in.
//!
//! Invariants: nothing here reads a clock or the box's zone; no input panics (at the far end
//! of chrono's range the date saturates instead of overflowing).

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

/// Seconds east of UTC of Beijing time: China has one zone and no daylight saving.
pub const BEIJING_OFFSET_SECS: i32 = 8 * 3600;

/// The UTC+8 offset.
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(BEIJING_OFFSET_SECS) {
    Some(offset) => offset,
    // Evaluated at compile time: 8 hours is within chrono's ±24 h, so this arm never runs.
    None => panic!("UTC+8 is a valid offset"),
};

/// The Beijing calendar date of an instant.
pub fn beijing_date(utc: DateTime<Utc>) -> NaiveDate {
    // `date_naive` on the converted value would panic in the last 8 hours of chrono's range.
    utc.naive_utc()
        .checked_add_offset(BEIJING)
        .map_or(NaiveDate::MAX, |local| local.date())
}

/// The instant as Beijing local time (offset +08:00).
pub fn beijing_datetime(utc: DateTime<Utc>) -> DateTime<FixedOffset> {
    utc.with_timezone(&BEIJING)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn beijing_date_table() {
        let cases = [
            (
                "2026-09-23T16:30:00Z",
                "2026-09-24",
                "2026-09-24T00:30:00+08:00",
            ),
            (
                "2026-09-23T15:59:59Z",
                "2026-09-23",
                "2026-09-23T23:59:59+08:00",
            ),
            (
                "2026-09-23T16:00:00Z",
                "2026-09-24",
                "2026-09-24T00:00:00+08:00",
            ),
            (
                "2026-12-31T16:00:00Z",
                "2027-01-01",
                "2027-01-01T00:00:00+08:00",
            ),
            (
                "2026-09-24T00:30:00+08:00",
                "2026-09-24",
                "2026-09-24T00:30:00+08:00",
            ),
            (
                "2026-09-23T12:00:00-05:00",
                "2026-09-24",
                "2026-09-24T01:00:00+08:00",
            ),
        ];
        for (instant, want_date, want_local) in cases {
            assert_eq!(beijing_date(utc(instant)), date(want_date), "{instant}");
            assert_eq!(
                beijing_datetime(utc(instant)).to_rfc3339(),
                want_local,
                "{instant}"
            );
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        assert_eq!(beijing_date(DateTime::<Utc>::MAX_UTC), NaiveDate::MAX);
        assert_eq!(
            beijing_date(DateTime::<Utc>::MIN_UTC),
            DateTime::<Utc>::MIN_UTC.date_naive()
        );
        assert_eq!(
            beijing_datetime(DateTime::<Utc>::MAX_UTC).offset(),
            &BEIJING
        );
    }
}
