//! Applicants: ID numbers (GB 11643, with the ISO 7064 MOD 11-2 check digit), names, the
//! registered household division and declared statuses.
//!
//! Invariants: an `IdNumber` is always valid (check digit and birth date verified at parse);
//! `Debug` and `Display` of ID numbers and names are masked, so they never reach a log whole.
//! The household division is an input from the household register, never derived from the ID
//! number (people move; the ID keeps the place of first registration).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::division::DivisionCode;

/// A declared status relevant to eligibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// 低保 (minimum living allowance)
    Dibao,
    /// 五保 / 特困 (five guarantees, extreme poverty support)
    Wubao,
    /// 残疾 (disability)
    Disabled,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Dibao, Status::Wubao, Status::Disabled];

    pub fn name_zh(self) -> &'static str {
        match self {
            Status::Dibao => "低保",
            Status::Wubao => "五保",
            Status::Disabled => "残疾",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Dibao => "dibao",
            Status::Wubao => "wubao",
            Status::Disabled => "disabled",
        }
    }

    /// Accepts the English key or the Chinese name (`dibao` or `低保`).
    pub fn parse(s: &str) -> Option<Status> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s || st.name_zh() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("ID number must have 18 characters, got {0}")]
    Length(usize),
    #[error("ID number: the first 17 characters must be digits and the last a digit or X")]
    Characters,
    // Messages never quote the number, or any part of it: they reach logs.
    #[error("ID number: the birth-date part is not a calendar date")]
    BirthDate,
    #[error("ID number: the check digit does not match (a digit was mistyped)")]
    CheckDigit,
}

impl IdNumberError {
    pub fn reason_zh(&self) -> String {
        match self {
            IdNumberError::Length(n) => format!("身份证号码应为18位，实际为{n}位"),
            IdNumberError::Characters => "身份证号码前17位应为数字，末位为数字或X".to_owned(),
            IdNumberError::BirthDate => "身份证号码中的出生日期无效".to_owned(),
            IdNumberError::CheckDigit => "身份证号码校验位不正确，请核对".to_owned(),
        }
    }
}

/// A validated 18-character resident ID number (居民身份证号码, ID type 111).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdNumber(String);

const CHECK_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

impl IdNumber {
    pub fn parse(s: &str) -> Result<IdNumber, IdNumberError> {
        let s = s.trim().to_ascii_uppercase();
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != 18 {
            return Err(IdNumberError::Length(chars.len()));
        }
        let (body, last) = chars.split_at(17);
        if !body.iter().all(char::is_ascii_digit) || !(last[0].is_ascii_digit() || last[0] == 'X') {
            return Err(IdNumberError::Characters);
        }
        let sum: u32 = body
            .iter()
            .zip(CHECK_WEIGHTS)
            .map(|(d, w)| d.to_digit(10).unwrap_or(0) * w)
            .sum();
        let expected = CHECK_CHARS[(sum % 11) as usize];
        if last[0] != expected {
            return Err(IdNumberError::CheckDigit);
        }
        let id = IdNumber(s);
        id.birth_date()?;
        Ok(id)
    }

    /// The birth date encoded in positions 7..=14.
    pub fn birth_date(&self) -> Result<NaiveDate, IdNumberError> {
        let digits = &self.0[6..14];
        NaiveDate::parse_from_str(digits, "%Y%m%d").map_err(|_| IdNumberError::BirthDate)
    }

    /// Age in whole years on `on` (the birthday counts from its day).
    pub fn age_on(&self, on: NaiveDate) -> Option<u32> {
        let born = self.birth_date().ok()?;
        let mut age = on.year() - born.year();
        if (on.month(), on.day()) < (born.month(), born.day()) {
            age -= 1;
        }
        u32::try_from(age).ok()
    }

    /// The whole number, for storage and the wire only. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 6 and last 4 characters, the rest starred: safe for logs and lists.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }
}

impl TryFrom<String> for IdNumber {
    type Error = IdNumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IdNumber::parse(&s)
    }
}

impl From<IdNumber> for String {
    fn from(id: IdNumber) -> String {
        id.0
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A person's name; `Debug`/`Display` show the first character only.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonName(String);

/// Longest name we accept, in characters (minority names can be long).
pub const PERSON_NAME_CHARS_MAX: usize = 64;

impl PersonName {
    pub fn parse(s: &str) -> Option<PersonName> {
        let s = s.trim();
        let n = s.chars().count();
        (n > 0 && n <= PERSON_NAME_CHARS_MAX && !s.chars().any(char::is_control))
            .then(|| PersonName(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        let mut chars = self.0.chars();
        let first = chars.next().unwrap_or('?');
        let rest = chars.count();
        format!("{first}{}", "*".repeat(rest.max(1)))
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonName({})", self.masked())
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The applicant as intake sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    pub id_number: IdNumber,
    pub name: PersonName,
    /// Registered household division (户籍所在地), from the household register.
    pub household: DivisionCode,
    pub statuses: BTreeSet<Status>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("430421199001011233", Ok("1990-01-01")),
            (" 430421199001011233 ", Ok("1990-01-01")),
            ("11010519491231002x", Ok("1949-12-31")),
            ("430421199001011234", Err("check digit does not match")),
            ("43042119900101123", Err("18 characters, got 17")),
            ("43042119900101123A", Err("digits")),
            ("430421199002301232", Err("birth-date part")),
        ];
        for (input, expect) in cases {
            match (IdNumber::parse(input), expect) {
                (Ok(id), Ok(date)) => assert_eq!(id.birth_date().unwrap().to_string(), *date),
                (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{input}: {e}"),
                (got, _) => panic!("{input}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn id_numbers_never_print_whole() {
        let id = IdNumber::parse("430421199001011233").unwrap();
        assert_eq!(id.masked(), "430421********1233");
        assert!(!format!("{id:?} {id}").contains("19900101"));
        let name = PersonName::parse("张三丰").unwrap();
        assert_eq!(format!("{name} {name:?}"), "张** PersonName(张**)");
    }

    #[test]
    fn ages() {
        let id = IdNumber::parse("430421199001011233").unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(id.age_on(d("2026-09-24")), Some(36));
        assert_eq!(id.age_on(d("2055-12-31")), Some(65));
        assert_eq!(id.age_on(d("2054-12-31")), Some(64));
        assert_eq!(id.age_on(d("2055-01-01")), Some(65));
    }

    #[test]
    fn statuses_parse_both_ways() {
        assert_eq!(Status::parse("低保"), Some(Status::Dibao));
        assert_eq!(Status::parse("wubao"), Some(Status::Wubao));
        assert_eq!(Status::parse("特困"), None);
    }
}
