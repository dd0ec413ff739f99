//! The working-day calendar (工作日历): State Council notices as data, versioned and
//! distributed down the tree like the catalog.
//!
//! Invariants: a date in a year the calendar does not hold is an error naming that year,
//! never a guess; counting starts the day after the triggering day (民法典 §201) and the result
//! is always a working day (§203).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// The rules of one year: which weekdays are off and which weekend days are worked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarYear {
    pub year: i32,
    /// Statutory holidays and bridge days off (may include weekend days).
    pub days_off: BTreeSet<NaiveDate>,
    /// Weekend days that are working days (调休上班).
    pub working_weekends: BTreeSet<NaiveDate>,
    /// Where the year's rules come from ("国办发明电〔2024〕12号").
    pub source: String,
}

/// A version of the calendar: every known year.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    /// Increases by one with each revision; recorded with every deadline computed from it.
    pub version: u32,
    pub years: BTreeMap<i32, CalendarYear>,
}

/// Most working days one count may add: a deadline is a committed limit (at most
/// `catalog::LIMIT_DAYS_MAX` = 1000 working days) and nothing real goes beyond it.
pub const WORKING_DAYS_MAX: u32 = 1000;

/// Most calendar days one count may scan: ten years, far beyond `WORKING_DAYS_MAX` working
/// days (about four years); bounds every loop whatever the calendar data says.
pub const SPAN_DAYS_MAX: i64 = 3660;

/// Why a calendar operation or revision was refused. Messages are English (logs);
/// `reason_zh` is for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("the calendar has no rules for {year}; load the {year} calendar")]
    MissingYear { year: i32 },
    #[error("the calendar entry filed under {key} holds the rules of {year}")]
    YearKeyMismatch { key: i32, year: i32 },
    #[error("year {year} is outside the supported date range")]
    YearOutOfRange { year: i32 },
    #[error("the {year} calendar does not name its source notice")]
    MissingSource { year: i32 },
    #[error("day off {date} is not in {year}, the year it is listed under")]
    DayOffOutsideYear { year: i32, date: NaiveDate },
    #[error("working weekend day {date} is not in {year}, the year it is listed under")]
    WorkingWeekendOutsideYear { year: i32, date: NaiveDate },
    #[error("working weekend day {date} is a {weekday}, not a Saturday or Sunday")]
    WorkingWeekendNotWeekend { date: NaiveDate, weekday: Weekday },
    #[error("{date} is listed both as a day off and as a working weekend day")]
    OffAndWorking { date: NaiveDate },
    #[error(
        "calendar revision version {revision} is not greater than the current version {current}"
    )]
    VersionNotIncreasing { current: u32, revision: u32 },
    #[error("cannot count {n} working days: at most {max} are allowed")]
    TooManyDays { n: u32, max: u32 },
    #[error("the range {from}..{to} spans more than {max} days")]
    SpanTooLong {
        from: NaiveDate,
        to: NaiveDate,
        max: i64,
    },
    #[error("counting past {date} leaves the supported date range")]
    DateOverflow { date: NaiveDate },
}

impl CalendarError {
    /// A sentence a clerk can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            CalendarError::MissingYear { year } => {
                format!("工作日历缺少{year}年的数据，请先加载{year}年日历")
            }
            CalendarError::YearKeyMismatch { key, year } => {
                format!("工作日历中登记为{key}年的条目实际是{year}年的规则，请核对日历数据")
            }
            CalendarError::YearOutOfRange { year } => {
                format!("工作日历中的年份{year}超出支持范围，请核对日历数据")
            }
            CalendarError::MissingSource { year } => {
                format!("{year}年工作日历未注明依据的通知，请补充来源")
            }
            CalendarError::DayOffOutsideYear { year, date } => {
                format!("{year}年工作日历中的休息日{date}不属于{year}年，请核对日历数据")
            }
            CalendarError::WorkingWeekendOutsideYear { year, date } => {
                format!("{year}年工作日历中的调休上班日{date}不属于{year}年，请核对日历数据")
            }
            CalendarError::WorkingWeekendNotWeekend { date, weekday } => format!(
                "调休上班日{date}是{}，不是周六或周日，请核对日历数据",
                weekday_zh(*weekday)
            ),
            CalendarError::OffAndWorking { date } => {
                format!("{date}同时被列为休息日和调休上班日，请核对日历数据")
            }
            CalendarError::VersionNotIncreasing { current, revision } => {
                format!("工作日历修订版本号{revision}不大于当前版本{current}，请使用更新的日历")
            }
            CalendarError::TooManyDays { n, max } => {
                format!("无法计算{n}个工作日的期限：最多{max}个工作日，请核对时限")
            }
            CalendarError::SpanTooLong { from, to, max } => {
                format!("{from}至{to}的区间超过{max}天，无法计算，请核对日期")
            }
            CalendarError::DateOverflow { date } => {
                format!("从{date}起计算的日期超出支持范围，请核对日期")
            }
        }
    }
}

fn weekday_zh(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "周一",
        Weekday::Tue => "周二",
        Weekday::Wed => "周三",
        Weekday::Thu => "周四",
        Weekday::Fri => "周五",
        Weekday::Sat => "周六",
        Weekday::Sun => "周日",
    }
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// A closed range of days in one year, as (month, day, month, day).
type DayRange = (u32, u32, u32, u32);

/// A built-in year: the State Council notice as ranges.
struct BuiltinYear {
    year: i32,
    days_off: &'static [DayRange],
    /// Single days (month, day).
    working_weekends: &'static [(u32, u32)],
    source: &'static str,
}

const BUILTIN_VERSION: u32 = 1;

/// DOMAIN.md "Working-day calendar" [V].
const BUILTIN_YEARS: [BuiltinYear; 2] = [
    BuiltinYear {
        year: 2025,
        days_off: &[
            (1, 1, 1, 1),
            (1, 28, 2, 4),
            (4, 4, 4, 6),
            (5, 1, 5, 5),
            (5, 31, 6, 2),
            (10, 1, 10, 8),
        ],
        working_weekends: &[(1, 26), (2, 8), (4, 27), (9, 28), (10, 11)],
        source: "国办发明电〔2024〕12号",
    },
    BuiltinYear {
        year: 2026,
        days_off: &[
            (1, 1, 1, 3),
            (2, 15, 2, 23),
            (4, 4, 4, 6),
            (5, 1, 5, 5),
            (6, 19, 6, 21),
            (9, 25, 9, 27),
            (10, 1, 10, 7),
        ],
        working_weekends: &[(1, 4), (2, 14), (2, 28), (5, 9), (9, 20), (10, 10)],
        // The document number 国办发明电〔2025〕7号 is not verified: cite the notice by title.
        source: "国务院办公厅关于2026年部分节假日安排的通知（2025-11-04）",
    },
];

impl BuiltinYear {
    /// Expands the ranges. A range whose ends are not real dates yields nothing; the tests
    /// check the day counts, so such a typo cannot go unnoticed.
    fn expand(&self) -> CalendarYear {
        let y = self.year;
        let days_off = self
            .days_off
            .iter()
            .filter_map(|&(m1, d1, m2, d2)| {
                Some((
                    NaiveDate::from_ymd_opt(y, m1, d1)?,
                    NaiveDate::from_ymd_opt(y, m2, d2)?,
                ))
            })
            .flat_map(|(from, to)| from.iter_days().take_while(move |d| *d <= to))
            .collect();
        let working_weekends = self
            .working_weekends
            .iter()
            .filter_map(|&(m, d)| NaiveDate::from_ymd_opt(y, m, d))
            .collect();
        CalendarYear {
            year: y,
            days_off,
            working_weekends,
            source: self.source.to_owned(),
        }
    }
}

impl CalendarYear {
    /// Every problem of this year's data (the map key is checked by `Calendar::validate`).
    fn problems(&self) -> Vec<CalendarError> {
        let year = self.year;
        let mut out = Vec::new();
        if NaiveDate::from_ymd_opt(year, 1, 1).is_none()
            || NaiveDate::from_ymd_opt(year, 12, 31).is_none()
        {
            out.push(CalendarError::YearOutOfRange { year });
        }
        if self.source.trim().is_empty() {
            out.push(CalendarError::MissingSource { year });
        }
        for &date in &self.days_off {
            if date.year() != year {
                out.push(CalendarError::DayOffOutsideYear { year, date });
            }
        }
        for &date in &self.working_weekends {
            if date.year() != year {
                out.push(CalendarError::WorkingWeekendOutsideYear { year, date });
            }
            if !is_weekend(date) {
                out.push(CalendarError::WorkingWeekendNotWeekend {
                    date,
                    weekday: date.weekday(),
                });
            }
        }
        for &date in self.days_off.intersection(&self.working_weekends) {
            out.push(CalendarError::OffAndWorking { date });
        }
        out
    }
}

impl Calendar {
    /// Version 1: the years DOMAIN.md lists (2025 and 2026).
    pub fn builtin() -> Calendar {
        Calendar {
            version: BUILTIN_VERSION,
            years: BUILTIN_YEARS.iter().map(|b| (b.year, b.expand())).collect(),
        }
    }

    fn year(&self, year: i32) -> Result<&CalendarYear, CalendarError> {
        self.years
            .get(&year)
            .ok_or(CalendarError::MissingYear { year })
    }

    /// Whether `d` is a working day: a weekday not listed as a day off, or a listed working
    /// weekend day. A year the calendar does not hold is an error, never a guess.
    pub fn is_working_day(&self, d: NaiveDate) -> Result<bool, CalendarError> {
        let rules = self.year(d.year())?;
        if rules.working_weekends.contains(&d) {
            return Ok(true);
        }
        Ok(!is_weekend(d) && !rules.days_off.contains(&d))
    }

    /// The `n`-th working day after `start` (counting starts the day after, 民法典 §201);
    /// `n = 0` is `start` itself. Every inspected date must lie in a year the calendar holds.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        if n > WORKING_DAYS_MAX {
            return Err(CalendarError::TooManyDays {
                n,
                max: WORKING_DAYS_MAX,
            });
        }
        let mut day = start;
        let mut counted = 0;
        let mut scanned: i64 = 0;
        while counted < n {
            if scanned >= SPAN_DAYS_MAX {
                return Err(CalendarError::SpanTooLong {
                    from: start,
                    to: day,
                    max: SPAN_DAYS_MAX,
                });
            }
            day = day
                .succ_opt()
                .ok_or(CalendarError::DateOverflow { date: day })?;
            scanned += 1;
            if self.is_working_day(day)? {
                counted += 1;
            }
        }
        Ok(day)
    }

    /// The number of working days in `(from_exclusive, to_inclusive]`; zero when the range is
    /// empty. Every date in the range must lie in a year the calendar holds.
    pub fn working_days_between(
        &self,
        from_exclusive: NaiveDate,
        to_inclusive: NaiveDate,
    ) -> Result<u32, CalendarError> {
        if to_inclusive <= from_exclusive {
            return Ok(0);
        }
        if (to_inclusive - from_exclusive).num_days() > SPAN_DAYS_MAX {
            return Err(CalendarError::SpanTooLong {
                from: from_exclusive,
                to: to_inclusive,
                max: SPAN_DAYS_MAX,
            });
        }
        let mut count = 0;
        // The range is non-empty and short, and `to_inclusive` exists, so every date in it
        // exists too: `iter_days` stops only at the end of the supported range.
        for day in from_exclusive
            .iter_days()
            .skip(1)
            .take_while(|d| *d <= to_inclusive)
        {
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The number of working days in `year`.
    pub fn working_days_in_year(&self, year: i32) -> Result<u32, CalendarError> {
        self.year(year)?;
        let (Some(first), Some(last)) = (
            NaiveDate::from_ymd_opt(year, 1, 1),
            NaiveDate::from_ymd_opt(year, 12, 31),
        ) else {
            return Err(CalendarError::YearOutOfRange { year });
        };
        let mut count = 0;
        for day in first.iter_days().take_while(|d| *d <= last) {
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Whether the calendar holds the rules of `d`'s year.
    pub fn covers(&self, d: NaiveDate) -> bool {
        self.years.contains_key(&d.year())
    }

    /// The last year the calendar holds, if any.
    pub fn last_year(&self) -> Option<i32> {
        self.years.keys().next_back().copied()
    }

    /// Every problem of the calendar's data, all at once.
    pub fn validate(&self) -> Result<(), Vec<CalendarError>> {
        let mut out = Vec::new();
        for (&key, rules) in &self.years {
            if key != rules.year {
                out.push(CalendarError::YearKeyMismatch {
                    key,
                    year: rules.year,
                });
            }
            out.extend(rules.problems());
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Applies a revision: its version must be greater; its years replace or add years; years
    /// it does not hold are kept. The result is validated; the first problem is returned
    /// (call `validate` on the revision to see them all).
    pub fn apply(&self, revision: Calendar) -> Result<Calendar, CalendarError> {
        if revision.version <= self.version {
            return Err(CalendarError::VersionNotIncreasing {
                current: self.version,
                revision: revision.version,
            });
        }
        let mut years = self.years.clone();
        years.extend(revision.years);
        let next = Calendar {
            version: revision.version,
            years,
        };
        if let Err(problems) = next.validate()
            && let Some(first) = problems.into_iter().next()
        {
            return Err(first);
        }
        Ok(next)
    }
}

/// The provisional rule used when the calendar does not cover a date: the `n`-th weekday
/// (Monday to Friday, no holidays) after `start`; counting starts the day after; `n = 0` is
/// `start`. Saturates at the last supported date (far beyond any real deadline) instead of
/// panicking.
pub fn add_weekdays(start: NaiveDate, n: u32) -> NaiveDate {
    if n == 0 {
        return start;
    }
    // Any seven consecutive days after a date hold exactly five weekdays. Leave the last
    // one to five weekdays to a step-by-step walk so the result always lands on a weekday.
    let weeks = (n - 1) / 5;
    let rest = n - weeks * 5;
    let Some(mut day) = start.checked_add_days(Days::new(u64::from(weeks) * 7)) else {
        return NaiveDate::MAX;
    };
    let mut counted = 0;
    while counted < rest {
        let Some(next) = day.succ_opt() else {
            return NaiveDate::MAX;
        };
        day = next;
        if !is_weekend(day) {
            counted += 1;
        }
    }
    day
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test that unwraps fails loudly, which is the point"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn dates(list: &[&str]) -> BTreeSet<NaiveDate> {
        list.iter().map(|s| date(s)).collect()
    }

    /// A test-only 2027 year (not a real notice): only 2027-01-01 off.
    fn revision_2027() -> Calendar {
        let year = CalendarYear {
            year: 2027,
            days_off: dates(&["2027-01-01"]),
            working_weekends: BTreeSet::new(),
            source: "测试用2027年日历（非真实通知）".to_owned(),
        };
        Calendar {
            version: 2,
            years: BTreeMap::from([(2027, year)]),
        }
    }

    #[test]
    fn builtin_data_matches_domain() {
        let cal = Calendar::builtin();
        assert_eq!(cal.version, 1);
        assert_eq!(cal.validate(), Ok(()));
        // (year, days off, working weekend days, working days, source)
        let cases = [
            (2025, 28, 5, 248, "国办发明电〔2024〕12号"),
            (
                2026,
                33,
                6,
                248,
                "国务院办公厅关于2026年部分节假日安排的通知（2025-11-04）",
            ),
        ];
        assert_eq!(cal.years.len(), cases.len());
        for (year, off, worked, working, source) in cases {
            let rules = &cal.years[&year];
            assert_eq!(rules.days_off.len(), off, "{year} days off");
            assert_eq!(
                rules.working_weekends.len(),
                worked,
                "{year} working weekends"
            );
            assert_eq!(cal.working_days_in_year(year), Ok(working), "{year}");
            assert_eq!(rules.source, source);
        }
        assert_eq!(cal.last_year(), Some(2026));
        assert_eq!(
            cal.working_days_in_year(2027),
            Err(CalendarError::MissingYear { year: 2027 })
        );
    }

    #[test]
    fn is_working_day_table() {
        let cal = Calendar::builtin();
        let cases: &[(&str, Result<bool, i32>)] = &[
            ("2026-02-14", Ok(true)),  // Saturday, Spring Festival make-up day
            ("2026-02-28", Ok(true)),  // Saturday, Spring Festival make-up day
            ("2026-02-15", Ok(false)), // Sunday and day off
            ("2026-02-16", Ok(false)), // Monday, Spring Festival
            ("2026-02-24", Ok(true)),  // Tuesday after the festival
            ("2026-01-04", Ok(true)),  // Sunday, make-up day
            ("2026-10-10", Ok(true)),  // Saturday, make-up day
            ("2026-10-11", Ok(false)), // ordinary Sunday
            ("2026-10-12", Ok(true)),  // ordinary Monday
            ("2025-05-31", Ok(false)), // Saturday, Dragon Boat
            ("2025-06-02", Ok(false)), // Monday, Dragon Boat
            ("2025-09-28", Ok(true)),  // Sunday, make-up day
            ("2025-10-08", Ok(false)), // Wednesday, National Day
            ("2027-01-04", Err(2027)),
            ("2024-12-31", Err(2024)),
        ];
        for (d, expect) in cases {
            let got = cal.is_working_day(date(d));
            let want = expect.map_err(|year| CalendarError::MissingYear { year });
            assert_eq!(got, want, "{d}");
            assert_eq!(cal.covers(date(d)), expect.is_ok(), "{d} covered");
        }
    }

    #[test]
    fn add_working_days_table() {
        let cal = Calendar::builtin();
        let missing = |year| CalendarError::MissingYear { year };
        let cases: &[(&str, u32, Result<&str, CalendarError>)] = &[
            ("2026-09-24", 10, Ok("2026-10-15")),
            ("2026-02-13", 1, Ok("2026-02-14")),
            ("2026-02-13", 2, Ok("2026-02-24")),
            ("2026-02-27", 1, Ok("2026-02-28")),
            ("2026-02-13", 0, Ok("2026-02-13")),
            ("2026-02-15", 0, Ok("2026-02-15")), // n = 0 is the start, even on a day off
            ("2025-12-31", 1, Ok("2026-01-04")),
            ("2025-09-26", 1, Ok("2025-09-28")),
            ("2025-09-30", 1, Ok("2025-10-09")),
            ("2024-12-31", 1, Ok("2025-01-02")), // the start itself is never inspected
            ("2024-12-30", 1, Err(missing(2024))),
            ("2026-12-25", 10, Err(missing(2027))),
            ("2026-12-31", 1, Err(missing(2027))),
            (
                "2025-01-01",
                WORKING_DAYS_MAX + 1,
                Err(CalendarError::TooManyDays {
                    n: WORKING_DAYS_MAX + 1,
                    max: WORKING_DAYS_MAX,
                }),
            ),
        ];
        for (start, n, expect) in cases {
            let got = cal.add_working_days(date(start), *n);
            let want = expect.clone().map(date);
            assert_eq!(got, want, "{start} + {n}");
        }
    }

    #[test]
    fn missing_year_is_named() {
        let cal = Calendar::builtin();
        let cases = [
            cal.add_working_days(date("2026-12-25"), 10),
            cal.is_working_day(date("2027-01-04"))
                .map(|_| date("2027-01-04")),
        ];
        for got in cases {
            let err = got.unwrap_err();
            assert_eq!(err, CalendarError::MissingYear { year: 2027 });
            assert!(err.to_string().contains("2027"), "{err}");
            assert_eq!(
                err.reason_zh(),
                "工作日历缺少2027年的数据，请先加载2027年日历"
            );
        }
    }

    #[test]
    fn working_days_between_table() {
        let cal = Calendar::builtin();
        let cases: &[(&str, &str, Result<u32, CalendarError>)] = &[
            ("2026-09-24", "2026-10-15", Ok(10)),
            ("2026-02-13", "2026-02-14", Ok(1)),
            ("2026-02-13", "2026-02-13", Ok(0)),
            ("2026-02-14", "2026-02-13", Ok(0)),
            ("2025-12-31", "2026-12-31", Ok(248)),
            ("2024-12-31", "2025-12-31", Ok(248)),
            (
                "2026-12-30",
                "2027-01-02",
                Err(CalendarError::MissingYear { year: 2027 }),
            ),
            (
                "2015-01-01",
                "2026-01-01",
                Err(CalendarError::SpanTooLong {
                    from: date("2015-01-01"),
                    to: date("2026-01-01"),
                    max: SPAN_DAYS_MAX,
                }),
            ),
        ];
        for (from, to, expect) in cases {
            assert_eq!(
                cal.working_days_between(date(from), date(to)),
                *expect,
                "({from}, {to}]"
            );
        }
    }

    #[test]
    fn add_weekdays_table() {
        let cases = [
            ("2026-12-28", 10, "2027-01-11"),
            ("2026-12-28", 0, "2026-12-28"),
            ("2026-12-26", 5, "2027-01-01"), // from a Saturday
            ("2026-12-26", 0, "2026-12-26"),
            ("2026-12-25", 1, "2026-12-28"), // Friday to Monday
            ("2026-12-25", 5, "2027-01-01"),
            ("2026-12-27", 6, "2027-01-04"), // from a Sunday
        ];
        for (start, n, expect) in cases {
            assert_eq!(add_weekdays(date(start), n), date(expect), "{start} + {n}");
        }
        // Never panics: saturates at the end of the supported range.
        assert_eq!(add_weekdays(date("2026-01-01"), u32::MAX), NaiveDate::MAX);
        assert_eq!(add_weekdays(NaiveDate::MAX, 1), NaiveDate::MAX);
    }

    #[test]
    fn apply_adds_and_replaces_years() {
        let cal = Calendar::builtin();
        let next = cal.apply(revision_2027()).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(next.last_year(), Some(2027));
        assert_eq!(
            next.years[&2026], cal.years[&2026],
            "years not revised are kept"
        );
        let cases = [
            ("2026-12-28", 10, "2027-01-12"),
            ("2026-12-25", 10, "2027-01-11"),
            ("2026-09-24", 10, "2026-10-15"),
        ];
        for (start, n, expect) in cases {
            assert_eq!(next.add_working_days(date(start), n), Ok(date(expect)));
        }
        // A later revision replaces a whole year.
        let mut rev = revision_2027();
        rev.version = 3;
        if let Some(y) = rev.years.get_mut(&2027) {
            y.days_off = dates(&["2027-01-01", "2027-01-04"]);
        }
        let third = next.apply(rev).unwrap();
        assert_eq!(
            third.add_working_days(date("2026-12-28"), 10),
            Ok(date("2027-01-13"))
        );
    }

    #[test]
    fn apply_refuses() {
        let cal = Calendar::builtin();
        let with = |version: u32, edit: fn(&mut CalendarYear)| {
            let mut rev = revision_2027();
            rev.version = version;
            if let Some(y) = rev.years.get_mut(&2027) {
                edit(y);
            }
            rev
        };
        let cases = [
            (
                with(1, |_| {}),
                CalendarError::VersionNotIncreasing {
                    current: 1,
                    revision: 1,
                },
            ),
            (
                with(0, |_| {}),
                CalendarError::VersionNotIncreasing {
                    current: 1,
                    revision: 0,
                },
            ),
            (
                with(2, |y| {
                    y.days_off.insert(date("2026-12-31"));
                }),
                CalendarError::DayOffOutsideYear {
                    year: 2027,
                    date: date("2026-12-31"),
                },
            ),
        ];
        for (rev, want) in cases {
            assert_eq!(cal.apply(rev), Err(want));
        }
    }

    #[test]
    fn validate_reports_every_problem() {
        let mon = date("2026-01-05");
        // (edit of the builtin 2026 year, expected problems)
        type Edit = fn(&mut Calendar);
        let cases: Vec<(Edit, Vec<CalendarError>)> = vec![
            (
                |c| {
                    if let Some(y) = c.years.get_mut(&2026) {
                        y.days_off.insert(date("2025-12-31"));
                    }
                },
                vec![CalendarError::DayOffOutsideYear {
                    year: 2026,
                    date: date("2025-12-31"),
                }],
            ),
            (
                |c| {
                    if let Some(y) = c.years.get_mut(&2026) {
                        y.working_weekends.insert(date("2027-01-02"));
                    }
                },
                vec![CalendarError::WorkingWeekendOutsideYear {
                    year: 2026,
                    date: date("2027-01-02"),
                }],
            ),
            (
                |c| {
                    if let Some(y) = c.years.get_mut(&2026) {
                        y.working_weekends.insert(date("2026-01-05"));
                    }
                },
                vec![CalendarError::WorkingWeekendNotWeekend {
                    date: mon,
                    weekday: Weekday::Mon,
                }],
            ),
            (
                |c| {
                    if let Some(y) = c.years.get_mut(&2026) {
                        y.days_off.insert(date("2026-02-14"));
                    }
                },
                vec![CalendarError::OffAndWorking {
                    date: date("2026-02-14"),
                }],
            ),
            (
                |c| {
                    if let Some(y) = c.years.remove(&2026) {
                        c.years.insert(2024, y);
                    }
                },
                vec![CalendarError::YearKeyMismatch {
                    key: 2024,
                    year: 2026,
                }],
            ),
            (
                |c| {
                    if let Some(y) = c.years.get_mut(&2025) {
                        y.source = " ".to_owned();
                    }
                },
                vec![CalendarError::MissingSource { year: 2025 }],
            ),
            (
                |c| {
                    c.years.insert(
                        300_000,
                        CalendarYear {
                            year: 300_000,
                            source: "x".to_owned(),
                            ..CalendarYear::default()
                        },
                    );
                },
                vec![CalendarError::YearOutOfRange { year: 300_000 }],
            ),
            // Several problems at once, in year order.
            (
                |c| {
                    if let Some(y) = c.years.get_mut(&2025) {
                        y.source.clear();
                    }
                    if let Some(y) = c.years.get_mut(&2026) {
                        y.working_weekends.insert(date("2026-01-05"));
                        y.days_off.insert(date("2026-02-28"));
                    }
                },
                vec![
                    CalendarError::MissingSource { year: 2025 },
                    CalendarError::WorkingWeekendNotWeekend {
                        date: mon,
                        weekday: Weekday::Mon,
                    },
                    CalendarError::OffAndWorking {
                        date: date("2026-02-28"),
                    },
                ],
            ),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            let mut cal = Calendar::builtin();
            edit(&mut cal);
            let got = cal.validate();
            assert_eq!(got, Err(want.clone()), "case {i}");
            for e in want {
                assert!(!e.to_string().is_empty() && !e.reason_zh().is_empty());
            }
        }
    }

    #[test]
    fn every_error_has_messages() {
        let d = date("2026-01-05");
        let errors = [
            CalendarError::MissingYear { year: 2027 },
            CalendarError::YearKeyMismatch { key: 1, year: 2 },
            CalendarError::YearOutOfRange { year: 300_000 },
            CalendarError::MissingSource { year: 2026 },
            CalendarError::DayOffOutsideYear {
                year: 2026,
                date: d,
            },
            CalendarError::WorkingWeekendOutsideYear {
                year: 2026,
                date: d,
            },
            CalendarError::WorkingWeekendNotWeekend {
                date: d,
                weekday: Weekday::Mon,
            },
            CalendarError::OffAndWorking { date: d },
            CalendarError::VersionNotIncreasing {
                current: 2,
                revision: 1,
            },
            CalendarError::TooManyDays { n: 1001, max: 1000 },
            CalendarError::SpanTooLong {
                from: d,
                to: d,
                max: SPAN_DAYS_MAX,
            },
            CalendarError::DateOverflow { date: d },
        ];
        for e in errors {
            let zh = e.reason_zh();
            assert!(zh.contains('请'), "{e}: {zh}");
            assert!(!e.to_string().contains('请'), "English message: {e}");
        }
    }

    /// Start dates 2025-01-01 ..= 2026-12-31.
    fn start_date() -> impl Strategy<Value = NaiveDate> {
        (0u64..730).prop_map(|k| {
            date("2025-01-01")
                .checked_add_days(Days::new(k))
                .unwrap_or(NaiveDate::MIN)
        })
    }

    /// A calendar with no holidays for 2024..=2030: working days are the weekdays.
    fn weekdays_only() -> Calendar {
        Calendar {
            version: 1,
            years: (2024..=2030)
                .map(|year| {
                    let rules = CalendarYear {
                        year,
                        source: "test".to_owned(),
                        ..CalendarYear::default()
                    };
                    (year, rules)
                })
                .collect(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn result_is_a_later_working_day(start in start_date(), n in 0u32..300) {
            let cal = Calendar::builtin();
            match cal.add_working_days(start, n) {
                Ok(end) => {
                    if n >= 1 {
                        prop_assert!(end > start);
                        prop_assert_eq!(cal.is_working_day(end), Ok(true));
                    } else {
                        prop_assert_eq!(end, start);
                    }
                    prop_assert_eq!(cal.working_days_between(start, end), Ok(n));
                }
                Err(e) => prop_assert_eq!(e, CalendarError::MissingYear { year: 2027 }),
            }
        }

        #[test]
        fn monotone_in_n(start in start_date(), n in 0u32..250, extra in 1u32..50) {
            let cal = Calendar::builtin();
            let a = cal.add_working_days(start, n);
            let b = cal.add_working_days(start, n + extra);
            if let (Ok(a), Ok(b)) = (&a, &b) {
                prop_assert!(a < b, "{} + {} = {}, + {} = {}", start, n, a, n + extra, b);
            } else {
                // Whatever fails at n fails at n + extra too.
                prop_assert!(b.is_err(), "{:?} then {:?}", a, b);
            }
        }

        #[test]
        fn add_weekdays_matches_a_plain_calendar(start in start_date(), n in 0u32..300) {
            let plain = weekdays_only();
            prop_assert_eq!(plain.add_working_days(start, n), Ok(add_weekdays(start, n)));
        }
    }
}
