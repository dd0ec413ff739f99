//! Deadlines (限时办结): the committed limit in working days, plus recorded pauses (公示 not
//! counted, hearings) and approved extensions (延长审批), counted on the holiday calendar.
//!
//! Invariants: a deadline is computed once, by the node that writes the event carrying it,
//! with the calendar version recorded; nobody recomputes it. When the calendar does not cover
//! the dates, the deadline is provisional (weekdays only) and flagged, until the custodian
//! confirms it with a later event. A 即办 case's deadline is its acceptance date.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, CalendarError, add_weekdays};

/// A committed deadline and how it was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// The last day of the period (办结期限).
    pub due: NaiveDate,
    /// The day the clock started; counting begins the day after (民法典 §201).
    pub start: NaiveDate,
    /// Working days counted from `start`: the limit plus pauses plus extensions.
    pub working_days: u32,
    /// Weekdays only, because the calendar did not cover the dates; to be confirmed.
    pub provisional: bool,
    /// The calendar version used (for a provisional deadline: the version that lacked the
    /// year).
    pub calendar_version: u32,
}

impl Deadline {
    /// Counts `working_days` after `start` on `calendar`; provisional (weekdays only) when the
    /// calendar lacks a year the count reaches. Other calendar errors (a count beyond the
    /// calendar's bound) are returned.
    pub fn compute(
        calendar: &Calendar,
        start: NaiveDate,
        working_days: u32,
    ) -> Result<Deadline, CalendarError> {
        let (due, provisional) = match calendar.add_working_days(start, working_days) {
            Ok(due) => (due, false),
            Err(CalendarError::MissingYear { .. }) => (add_weekdays(start, working_days), true),
            Err(other) => return Err(other),
        };
        Ok(Deadline {
            due,
            start,
            working_days,
            provisional,
            calendar_version: calendar.version,
        })
    }

    /// The deadline of a 即办 case: its acceptance day, never provisional.
    pub fn immediate(on: NaiveDate, calendar_version: u32) -> Deadline {
        Deadline {
            due: on,
            start: on,
            working_days: 0,
            provisional: false,
            calendar_version,
        }
    }

    /// The same period lengthened by `extra` working days (a pause or an extension).
    pub fn lengthened(&self, calendar: &Calendar, extra: u32) -> Result<Deadline, CalendarError> {
        if self.working_days == 0 && extra == 0 {
            return Ok(*self);
        }
        Deadline::compute(
            calendar,
            self.start,
            self.working_days.saturating_add(extra),
        )
    }

    /// For a provisional deadline, the confirmed one once `calendar` covers its dates.
    pub fn confirmation(&self, calendar: &Calendar) -> Option<Deadline> {
        if !self.provisional {
            return None;
        }
        Deadline::compute(calendar, self.start, self.working_days)
            .ok()
            .filter(|d| !d.provisional)
    }

    /// Overdue on `today`: past the due day.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        today > self.due
    }

    /// "2026-10-15" or "2027-01-11（暂定，待日历确认）".
    pub fn describe_zh(&self) -> String {
        if self.provisional {
            format!("{}（暂定，按工作日推算，待节假日安排公布后确认）", self.due)
        } else {
            self.due.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::CalendarYear;
    use std::collections::{BTreeMap, BTreeSet};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn with_2027() -> Calendar {
        let year = CalendarYear {
            year: 2027,
            days_off: BTreeSet::from([day("2027-01-01")]),
            working_weekends: BTreeSet::new(),
            source: "test".to_owned(),
        };
        Calendar::builtin()
            .apply(Calendar {
                version: 2,
                years: BTreeMap::from([(2027, year)]),
            })
            .unwrap()
    }

    #[test]
    fn table() {
        let builtin = Calendar::builtin();
        let cases = [
            ("2026-09-24", 10, "2026-10-15", false),
            ("2026-12-28", 10, "2027-01-11", true),
            ("2026-12-18", 5, "2026-12-25", false),
            ("2026-12-30", 0, "2026-12-30", false),
        ];
        for (start, n, due, provisional) in cases {
            let d = Deadline::compute(&builtin, day(start), n).unwrap();
            assert_eq!(
                (d.due, d.provisional),
                (day(due), provisional),
                "{start}+{n}"
            );
            assert_eq!(d.calendar_version, builtin.version);
        }
    }

    #[test]
    fn provisional_deadlines_are_confirmed_when_the_year_arrives() {
        let d = Deadline::compute(&Calendar::builtin(), day("2026-12-28"), 10).unwrap();
        assert_eq!(d.confirmation(&Calendar::builtin()), None);
        let confirmed = d.confirmation(&with_2027()).unwrap();
        assert_eq!(confirmed.due, day("2027-01-12"));
        assert!(!confirmed.provisional);
        assert_eq!(confirmed.calendar_version, 2);
        assert!(d.describe_zh().contains("暂定"));
        assert_eq!(confirmed.describe_zh(), "2027-01-12");
    }

    #[test]
    fn lengthening_counts_from_the_same_start() {
        let cal = Calendar::builtin();
        let d = Deadline::compute(&cal, day("2026-09-24"), 10).unwrap();
        let longer = d.lengthened(&cal, 7).unwrap();
        assert_eq!(longer.working_days, 17);
        assert_eq!(longer.start, d.start);
        assert_eq!(
            longer.due,
            cal.add_working_days(day("2026-09-24"), 17).unwrap()
        );
        assert!(longer.is_overdue(longer.due.succ_opt().unwrap()));
        assert!(!longer.is_overdue(longer.due));
    }
}
