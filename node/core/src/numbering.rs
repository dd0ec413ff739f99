//! Case numbers (办件编号): issued where a case is accepted, without coordination, as
//! `{node:012}{YYYYMMDD}{seq:04}` (24 digits).
//!
//! Invariants: a number is never issued twice by one node: the counter is per date and
//! persisted by the caller; it refuses to run when today is earlier than the last date used
//! (the clock went back) and when a day's 9999 numbers are used; a rebuilt store raises it
//! above every number its parent has seen. A refused call leaves the counter unchanged.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog::NodeId;
use crate::division::{DivisionCode, DivisionError};

/// Digits of a case number: node 12, date 8, sequence 4.
pub const CASE_NUMBER_DIGITS: usize = 24;
/// Highest sequence of a day: the sequence has four digits in the case number.
pub const SEQ_PER_DAY_MAX: u16 = 9999;
/// Latest year a case number can carry: the date has eight digits.
pub const YEAR_MAX: i32 = 9999;

/// Why a case number was refused or could not be issued. Messages are English (logs);
/// `reason_zh` is for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberingError {
    #[error("case number {number:?} must be exactly 24 ASCII digits, got {len} characters")]
    Length { number: String, len: usize },
    #[error("case number {number:?} contains a non-digit character")]
    NotDigits { number: String },
    #[error("case number {number:?}: node part is not a division code: {source}")]
    Node {
        number: String,
        source: DivisionError,
    },
    #[error("case number {number:?}: date part {date} is not a calendar date")]
    Date { number: String, date: String },
    #[error("case number {number:?}: sequence {seq:04} is outside 0001-9999")]
    Seq { number: String, seq: u16 },
    #[error("all {SEQ_PER_DAY_MAX} case numbers of {date} are used")]
    DayFull { date: NaiveDate },
    #[error("today {today} is earlier than the last numbering date {last}: the clock is behind")]
    ClockBehind { today: NaiveDate, last: NaiveDate },
    #[error("date {date} cannot be written with an 8-digit year-month-day")]
    DateOutOfRange { date: NaiveDate },
}

impl NumberingError {
    /// A sentence a clerk can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            NumberingError::Length { number, .. } => {
                format!("办件编号“{number}”应为24位数字")
            }
            NumberingError::NotDigits { number } => {
                format!("办件编号“{number}”只能包含数字")
            }
            NumberingError::Node { number, source } => {
                format!("办件编号“{number}”的受理地代码无效：{}", source.reason_zh())
            }
            NumberingError::Date { number, date } => {
                format!("办件编号“{number}”中的日期{date}不存在")
            }
            NumberingError::Seq { number, .. } => {
                format!("办件编号“{number}”的流水号应在0001至9999之间")
            }
            NumberingError::DayFull { date } => {
                format!("{date}当日办件编号已用完（{SEQ_PER_DAY_MAX}件），请次日再受理")
            }
            NumberingError::ClockBehind { today, last } => {
                format!("本机时钟（{today}）早于上次编号日期（{last}），请校准时钟后再受理")
            }
            NumberingError::DateOutOfRange { date } => {
                format!("日期{date}超出办件编号可表示的范围，请校准时钟后再受理")
            }
        }
    }
}

/// A case number. Ordered by (node, date, seq), which is also the order of its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseNumber {
    /// The accepting node.
    pub node: NodeId,
    /// The Beijing date of acceptance.
    pub date: NaiveDate,
    /// 1..=9999 within the node and date.
    pub seq: u16,
}

impl CaseNumber {
    /// Parses and validates a 24-digit case number.
    pub fn parse(s: &str) -> Result<CaseNumber, NumberingError> {
        let number = || s.to_owned();
        if s.len() != CASE_NUMBER_DIGITS {
            return Err(NumberingError::Length {
                number: number(),
                len: s.chars().count(),
            });
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberingError::NotDigits { number: number() });
        }
        // All ASCII digits, so every byte index is a char boundary.
        let (node, rest) = s.split_at(12);
        let (date_text, seq_text) = rest.split_at(8);
        let node = DivisionCode::parse(node).map_err(|source| NumberingError::Node {
            number: number(),
            source,
        })?;
        let digits = |t: &str| {
            t.bytes()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let date_value = digits(date_text);
        let (year, month, day) = (
            date_value / 10_000,
            date_value / 100 % 100,
            date_value % 100,
        );
        // year ≤ 9999 fits i32.
        let date = i32::try_from(year)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, month, day))
            .ok_or_else(|| NumberingError::Date {
                number: number(),
                date: date_text.to_owned(),
            })?;
        // Four digits: at most 9999, fits u16.
        let seq = u16::try_from(digits(seq_text)).unwrap_or(u16::MAX);
        if !(1..=SEQ_PER_DAY_MAX).contains(&seq) {
            return Err(NumberingError::Seq {
                number: number(),
                seq,
            });
        }
        Ok(CaseNumber { node, date, seq })
    }
}

impl fmt::Display for CaseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{:04}{:02}{:02}{:04}",
            self.node,
            self.date.year(),
            self.date.month(),
            self.date.day(),
            self.seq
        )
    }
}

impl FromStr for CaseNumber {
    type Err = NumberingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CaseNumber::parse(s)
    }
}

impl Serialize for CaseNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CaseNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CaseNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A node's per-date case counter. The caller persists it (durably, before handing out the
/// number) and passes today's Beijing date in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseCounter {
    last_date: Option<NaiveDate>,
    last_seq: u16,
}

impl CaseCounter {
    /// A counter that has issued nothing.
    pub fn new() -> CaseCounter {
        CaseCounter::default()
    }

    /// The date of the last number issued (or raised to), if any.
    pub fn last_date(&self) -> Option<NaiveDate> {
        self.last_date
    }

    /// The last sequence used on `last_date` (0 when none).
    pub fn last_seq(&self) -> u16 {
        self.last_seq
    }

    /// Issues the next number of `node` for `today`: a new day starts at 0001. Refuses, without
    /// changing the counter, when today is before the last date used, when the day's numbers
    /// are used up, or when the date has no 8-digit form.
    pub fn next(&mut self, node: NodeId, today: NaiveDate) -> Result<CaseNumber, NumberingError> {
        if !(0..=YEAR_MAX).contains(&today.year()) {
            return Err(NumberingError::DateOutOfRange { date: today });
        }
        let seq = match self.last_date {
            Some(last) if today < last => {
                return Err(NumberingError::ClockBehind { today, last });
            }
            Some(last) if today == last => {
                if self.last_seq >= SEQ_PER_DAY_MAX {
                    return Err(NumberingError::DayFull { date: today });
                }
                self.last_seq + 1
            }
            _ => 1,
        };
        self.last_date = Some(today);
        self.last_seq = seq;
        Ok(CaseNumber {
            node,
            date: today,
            seq,
        })
    }

    /// Raises the counter above `seen` (a number the parent has seen from this node, after the
    /// store was rebuilt). The caller passes only this node's numbers; the node part is not
    /// compared. Never lowers the counter.
    pub fn raise_above(&mut self, seen: &CaseNumber) {
        match self.last_date {
            Some(last) if last > seen.date => {}
            Some(last) if last == seen.date => self.last_seq = self.last_seq.max(seen.seq),
            _ => {
                self.last_date = Some(seen.date);
                self.last_seq = seen.seq;
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(s: &str) -> NodeId {
        DivisionCode::parse(s).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    const HEQUAN: &str = "430421105204";

    #[test]
    fn display_and_parse_round_trip() {
        let cases = [
            (HEQUAN, "2026-09-24", 1, "430421105204202609240001"),
            (HEQUAN, "2026-09-24", 9999, "430421105204202609249999"),
            ("430421000000", "2024-02-29", 42, "430421000000202402290042"),
            ("430422001001", "0999-01-01", 7, "430422001001099901010007"),
        ];
        for (n, d, seq, text) in cases {
            let number = CaseNumber {
                node: node(n),
                date: date(d),
                seq,
            };
            assert_eq!(number.to_string(), text);
            assert_eq!(CaseNumber::parse(text), Ok(number), "{text}");
            assert_eq!(text.parse::<CaseNumber>(), Ok(number), "{text}");
        }
    }

    #[test]
    fn parse_refuses() {
        let cases = [
            ("43042110520420260924000", "exactly 24"),
            ("4304211052042026092400011", "exactly 24"),
            ("", "exactly 24"),
            ("43042110520420260924000a", "non-digit"),
            ("43042110520420260924000１", "exactly 24"),
            ("-30421105204202609240001", "non-digit"),
            ("000421105204202609240001", "node part"),
            ("430421000204202609240001", "node part"),
            ("430421105204202602300001", "date part 20260230"),
            ("430421105204202613010001", "date part 20261301"),
            ("430421105204202609000001", "date part 20260900"),
            ("430421105204202502290001", "date part 20250229"),
            ("430421105204202609240000", "sequence 0000"),
        ];
        for (input, needle) in cases {
            let e = CaseNumber::parse(input).unwrap_err();
            assert!(e.to_string().contains(needle), "{input}: {e}");
            assert!(!e.reason_zh().is_empty(), "{input}");
        }
    }

    #[test]
    fn order_is_node_date_seq_and_matches_text() {
        let numbers = [
            "430421105200202612310009",
            "430421105204202609230002",
            "430421105204202609240001",
            "430421105204202609240010",
            "430421105204202609250001",
        ];
        for pair in numbers.windows(2) {
            let (a, b) = (
                CaseNumber::parse(pair[0]).unwrap(),
                CaseNumber::parse(pair[1]).unwrap(),
            );
            assert!(a < b, "{a} < {b}");
        }
    }

    /// One call on a counter and what it must answer.
    enum Op {
        Next(&'static str, Result<u16, &'static str>),
        Raise(&'static str, u16),
    }

    fn check(name: &str, ops: &[Op]) {
        let mut counter = CaseCounter::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Next(today, want) => {
                    let before = counter;
                    let got = counter.next(node(HEQUAN), date(today));
                    match (got, want) {
                        (Ok(number), Ok(seq)) => {
                            assert_eq!(number.seq, *seq, "{name} #{i}");
                            assert_eq!(number.date, date(today), "{name} #{i}");
                            assert_eq!(number.node, node(HEQUAN), "{name} #{i}");
                        }
                        (Err(e), Err(needle)) => {
                            assert_eq!(counter, before, "{name} #{i}: refused call changed it");
                            assert!(e.reason_zh().contains(needle), "{name} #{i}: {e:?}");
                        }
                        (got, want) => panic!("{name} #{i}: expected {want:?}, got {got:?}"),
                    }
                }
                Op::Raise(d, seq) => counter.raise_above(&CaseNumber {
                    node: node(HEQUAN),
                    date: date(d),
                    seq: *seq,
                }),
            }
        }
    }

    #[test]
    fn counter_table() {
        use Op::{Next, Raise};
        let behind = "本机时钟（2026-09-23）早于上次编号日期（2026-09-24），请校准时钟后再受理";
        check(
            "a new day starts at 0001",
            &[
                Next("2026-09-24", Ok(1)),
                Next("2026-09-24", Ok(2)),
                Next("2026-09-25", Ok(1)),
                Next("2026-10-01", Ok(1)),
                Next("2026-10-01", Ok(2)),
            ],
        );
        check(
            "clock behind is refused and changes nothing",
            &[
                Next("2026-09-24", Ok(1)),
                Next("2026-09-24", Ok(2)),
                Next("2026-09-23", Err(behind)),
                Next("2026-09-24", Ok(3)),
            ],
        );
        check(
            "raise above a number the parent saw",
            &[
                Raise("2026-09-24", 17),
                Next("2026-09-24", Ok(18)),
                Next("2026-09-23", Err(behind)),
                Next("2026-09-25", Ok(1)),
            ],
        );
        check(
            "raise never lowers: same day",
            &[
                Next("2026-09-24", Ok(1)),
                Next("2026-09-24", Ok(2)),
                Next("2026-09-24", Ok(3)),
                Raise("2026-09-24", 2),
                Next("2026-09-24", Ok(4)),
                Raise("2026-09-24", 8),
                Next("2026-09-24", Ok(9)),
            ],
        );
        check(
            "raise never lowers: earlier day",
            &[
                Next("2026-09-25", Ok(1)),
                Raise("2026-09-24", 500),
                Next("2026-09-25", Ok(2)),
                Next("2026-09-24", Err("早于上次编号日期（2026-09-25）")),
            ],
        );
        check(
            "raise to a full day",
            &[
                Raise("2026-09-24", 9999),
                Next("2026-09-24", Err("2026-09-24当日办件编号已用完（9999件）")),
                Next("2026-09-25", Ok(1)),
            ],
        );
        check(
            "dates without an 8-digit form",
            &[
                Next("+10000-01-01", Err("超出办件编号可表示的范围")),
                Next("-0001-12-31", Err("超出办件编号可表示的范围")),
                Next("2026-09-24", Ok(1)),
            ],
        );
    }

    #[test]
    fn day_full_after_9999() {
        let mut counter = CaseCounter::new();
        let today = date("2026-09-24");
        for want in 1..=SEQ_PER_DAY_MAX {
            assert_eq!(counter.next(node(HEQUAN), today).map(|n| n.seq), Ok(want));
        }
        let before = counter;
        let e = counter.next(node(HEQUAN), today).unwrap_err();
        assert_eq!(e, NumberingError::DayFull { date: today });
        assert_eq!(
            e.reason_zh(),
            "2026-09-24当日办件编号已用完（9999件），请次日再受理"
        );
        assert_eq!(counter, before);
        let tomorrow = counter.next(node(HEQUAN), date("2026-09-25")).unwrap();
        assert_eq!(tomorrow.to_string(), "430421105204202609250001");
    }

    #[test]
    fn a_counter_from_a_bad_store_does_not_panic() {
        // A persisted counter can carry any u16; the day must still be full, not wrap.
        let mut counter = CaseCounter {
            last_date: Some(date("2026-09-24")),
            last_seq: u16::MAX,
        };
        assert_eq!(
            counter.next(node(HEQUAN), date("2026-09-24")),
            Err(NumberingError::DayFull {
                date: date("2026-09-24")
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn issued_numbers_strictly_increase(
            steps in proptest::collection::vec((0u32..3, 1usize..40), 1..30),
            raise in proptest::option::of((0u32..60, 1u16..=SEQ_PER_DAY_MAX)),
        ) {
            let start = date("2026-09-20");
            let mut counter = CaseCounter::new();
            let mut issued: Vec<CaseNumber> = Vec::new();
            let mut day = start;
            let raise_at = steps.len() / 2;
            let mut raised_to: Option<CaseNumber> = None;
            for (i, (gap, count)) in steps.iter().enumerate() {
                day = day + chrono::Days::new(u64::from(*gap));
                if i == raise_at
                    && let Some((offset, seq)) = raise
                {
                        let seen = CaseNumber {
                            node: node(HEQUAN),
                            date: start + chrono::Days::new(u64::from(offset)),
                            seq,
                        };
                        counter.raise_above(&seen);
                        raised_to = Some(seen);
                }
                for _ in 0..*count {
                    match counter.next(node(HEQUAN), day) {
                        Ok(number) => {
                            // Everything issued after a raise lies above the number seen.
                            if let Some(seen) = raised_to {
                                prop_assert!(number > seen, "{} not above {}", number, seen);
                            }
                            issued.push(number);
                        }
                        // Only a raise can put the counter ahead of the dates or fill a day.
                        Err(NumberingError::ClockBehind { .. } | NumberingError::DayFull { .. })
                            if raise.is_some() => {}
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
            }
            for pair in issued.windows(2) {
                prop_assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
                prop_assert!(pair[0].to_string() < pair[1].to_string());
            }
            for number in &issued {
                prop_assert_eq!(CaseNumber::parse(&number.to_string()), Ok(*number));
            }
        }
    }
}
