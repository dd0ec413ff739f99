//! Division codes (行政区划代码): 12-digit statistical codes, province 2, city 2, county 2,
//! township 3, village 3 (NBS 2023; see DOMAIN.md).
//!
//! Invariants: a `DivisionCode` value is always well formed (validated at parse, never after);
//! a zero level is followed only by zero levels; township and village parts lie in the ranges
//! DOMAIN.md gives. Retired codes stay parseable: nothing here knows which codes exist.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The tiers of the division tree, root first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    Province,
    City,
    County,
    Township,
    Village,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Province,
        Tier::City,
        Tier::County,
        Tier::Township,
        Tier::Village,
    ];

    /// Depth below the province (province = 0).
    pub fn depth(self) -> usize {
        self as usize
    }

    /// Number of leading digits that are significant at this tier.
    pub fn digits(self) -> usize {
        DIGITS_AT_DEPTH[self.depth()]
    }

    pub fn parent(self) -> Option<Tier> {
        self.depth().checked_sub(1).map(|d| Tier::ALL[d])
    }

    pub fn child(self) -> Option<Tier> {
        Tier::ALL.get(self.depth() + 1).copied()
    }

    /// Chinese name shown to clerks.
    pub fn name_zh(self) -> &'static str {
        match self {
            Tier::Province => "省级",
            Tier::City => "市级",
            Tier::County => "县级",
            Tier::Township => "乡镇(街道)级",
            Tier::Village => "村(社区)级",
        }
    }

    /// Stable lowercase name used in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Province => "province",
            Tier::City => "city",
            Tier::County => "county",
            Tier::Township => "township",
            Tier::Village => "village",
        }
    }
}

impl FromStr for Tier {
    type Err = DivisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| DivisionError::UnknownTier(s.to_owned()))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cumulative digit count of each level: province 2, city 2, county 2, township 3, village 3.
const DIGITS_AT_DEPTH: [usize; 5] = [2, 4, 6, 9, 12];

/// Why a division code was refused. Messages are English (logs); `reason_zh` is for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DivisionError {
    #[error("division code {code:?} must be exactly 12 ASCII digits, got {len} characters")]
    Length { code: String, len: usize },
    #[error("division code {code:?} contains a non-digit character")]
    NotDigits { code: String },
    #[error("division code {code:?}: province part {part} is not a province (11..=82)")]
    Province { code: String, part: u32 },
    #[error("division code {code:?}: {level} part is zero but a lower level is not")]
    Gap { code: String, level: &'static str },
    #[error(
        "division code {code:?}: township part {part:03} is outside 001-099 (街道), 100-199 (镇), 200-399 (乡)"
    )]
    TownshipRange { code: String, part: u32 },
    #[error(
        "division code {code:?}: village part {part:03} is outside 001-199 (社区/居委会), 200-399 (村委会)"
    )]
    VillageRange { code: String, part: u32 },
    #[error("unknown tier {0:?}: expected province, city, county, township or village")]
    UnknownTier(String),
}

impl DivisionError {
    /// A sentence a clerk can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            DivisionError::Length { code, .. } => format!("行政区划代码“{code}”应为12位数字"),
            DivisionError::NotDigits { code } => format!("行政区划代码“{code}”只能包含数字"),
            DivisionError::Province { code, .. } => {
                format!("行政区划代码“{code}”的省级代码无效")
            }
            DivisionError::Gap { code, .. } => {
                format!("行政区划代码“{code}”的上级层次为零而下级不为零")
            }
            DivisionError::TownshipRange { code, .. } => {
                format!("行政区划代码“{code}”的乡镇(街道)代码超出范围")
            }
            DivisionError::VillageRange { code, .. } => {
                format!("行政区划代码“{code}”的村(社区)代码超出范围")
            }
            DivisionError::UnknownTier(t) => format!("未知的层级“{t}”"),
        }
    }
}

/// A validated 12-digit division code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DivisionCode(u64);

/// Kind of a township-level unit, by its code range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TownshipKind {
    /// 街道 (001-099)
    Subdistrict,
    /// 镇 (100-199)
    Town,
    /// 乡 (200-399)
    Xiang,
}

/// Kind of a village-level unit, by its code range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VillageKind {
    /// 社区/居委会 (001-199)
    Community,
    /// 村委会 (200-399)
    Village,
}

impl DivisionCode {
    /// Parses and validates a 12-digit code.
    pub fn parse(s: &str) -> Result<DivisionCode, DivisionError> {
        let code = || s.to_owned();
        if s.len() != 12 {
            return Err(DivisionError::Length {
                code: code(),
                len: s.chars().count(),
            });
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DivisionError::NotDigits { code: code() });
        }
        let part = |a: usize, b: usize| -> u32 {
            s.as_bytes()[a..b]
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let parts = [part(0, 2), part(2, 4), part(4, 6), part(6, 9), part(9, 12)];
        if !(11..=82).contains(&parts[0]) {
            return Err(DivisionError::Province {
                code: code(),
                part: parts[0],
            });
        }
        const LEVEL: [&str; 5] = ["province", "city", "county", "township", "village"];
        for depth in 1..5 {
            if parts[depth] == 0 && parts[depth + 1..].iter().any(|p| *p != 0) {
                return Err(DivisionError::Gap {
                    code: code(),
                    level: LEVEL[depth],
                });
            }
        }
        if parts[3] != 0 && parts[3] > 399 {
            return Err(DivisionError::TownshipRange {
                code: code(),
                part: parts[3],
            });
        }
        if parts[4] != 0 && parts[4] > 399 {
            return Err(DivisionError::VillageRange {
                code: code(),
                part: parts[4],
            });
        }
        let value = s
            .bytes()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        Ok(DivisionCode(value))
    }

    /// The tier of the unit this code names (the deepest non-zero level).
    pub fn tier(self) -> Tier {
        let s = self.digits();
        let mut tier = Tier::Province;
        for t in [Tier::City, Tier::County, Tier::Township, Tier::Village] {
            let from = t.parent().map_or(0, Tier::digits);
            if s[from..t.digits()].iter().any(|d| *d != b'0') {
                tier = t;
            }
        }
        tier
    }

    /// The code of the unit directly above, or `None` for a province.
    pub fn parent(self) -> Option<DivisionCode> {
        self.tier().parent().map(|t| self.truncate(t))
    }

    /// Ancestors from the parent up to the province, nearest first.
    pub fn ancestors(self) -> impl Iterator<Item = DivisionCode> {
        std::iter::successors(self.parent(), |c| c.parent())
    }

    /// The code of this unit's ancestor (or itself) at `tier`, or `None` when `tier` is below
    /// this unit's own tier.
    pub fn at_tier(self, tier: Tier) -> Option<DivisionCode> {
        (tier <= self.tier()).then(|| self.truncate(tier))
    }

    /// Whether `self` is `other` or lies below it.
    pub fn is_within(self, other: DivisionCode) -> bool {
        self.at_tier(other.tier()) == Some(other)
    }

    /// The lowest common ancestor-or-self of two codes; `None` when they are in different
    /// provinces (the tree has no common unit).
    pub fn lowest_common_ancestor(self, other: DivisionCode) -> Option<DivisionCode> {
        let deepest = self.tier().min(other.tier());
        Tier::ALL[..=deepest.depth()]
            .iter()
            .rev()
            .map(|t| (self.truncate(*t), other.truncate(*t)))
            .find(|(a, b)| a == b)
            .map(|(a, _)| a)
    }

    pub fn township_kind(self) -> Option<TownshipKind> {
        let part = self.part(Tier::Township);
        match part {
            1..=99 => Some(TownshipKind::Subdistrict),
            100..=199 => Some(TownshipKind::Town),
            200..=399 => Some(TownshipKind::Xiang),
            _ => None,
        }
    }

    pub fn village_kind(self) -> Option<VillageKind> {
        match self.part(Tier::Village) {
            1..=199 => Some(VillageKind::Community),
            200..=399 => Some(VillageKind::Village),
            _ => None,
        }
    }

    /// The numeric value of the code (12 digits, leading digit never zero).
    pub fn value(self) -> u64 {
        self.0
    }

    fn digits(self) -> [u8; 12] {
        let mut out = [b'0'; 12];
        let mut v = self.0;
        for slot in out.iter_mut().rev() {
            // Each digit is < 10, so the cast cannot truncate.
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out
    }

    fn part(self, tier: Tier) -> u64 {
        let from = tier.parent().map_or(0, Tier::digits);
        let s = self.digits();
        s[from..tier.digits()]
            .iter()
            .fold(0, |acc, d| acc * 10 + u64::from(d - b'0'))
    }

    /// Zeroes every level below `tier`.
    fn truncate(self, tier: Tier) -> DivisionCode {
        let scale = 10u64.pow((12 - tier.digits()) as u32);
        DivisionCode(self.0 / scale * scale)
    }
}

impl FromStr for DivisionCode {
    type Err = DivisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DivisionCode::parse(s)
    }
}

impl fmt::Display for DivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012}", self.0)
    }
}

impl fmt::Debug for DivisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DivisionCode({:012})", self.0)
    }
}

impl Serialize for DivisionCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DivisionCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DivisionCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    #[test]
    fn parse_accepts_and_refuses() {
        let cases: &[(&str, Result<Tier, &str>)] = &[
            ("430000000000", Ok(Tier::Province)),
            ("430400000000", Ok(Tier::City)),
            ("430421000000", Ok(Tier::County)),
            ("430421105000", Ok(Tier::Township)),
            ("430421105204", Ok(Tier::Village)),
            ("430422001001", Ok(Tier::Village)),
            ("43042110520", Err("exactly 12")),
            ("4304211052040", Err("exactly 12")),
            ("43042110520a", Err("non-digit")),
            ("４30421105204", Err("exactly 12")),
            ("000421105204", Err("province")),
            ("990421105204", Err("province")),
            ("430021105204", Err("city part is zero")),
            ("430400105204", Err("county part is zero")),
            ("430421000204", Err("township part is zero")),
            ("430421400000", Err("township part 400")),
            ("430421105400", Err("village part 400")),
        ];
        for (input, expect) in cases {
            match (DivisionCode::parse(input), expect) {
                (Ok(c), Ok(tier)) => {
                    assert_eq!(c.tier(), *tier, "{input}");
                    assert_eq!(c.to_string(), *input);
                }
                (Err(e), Err(needle)) => {
                    assert!(e.to_string().contains(needle), "{input}: {e}");
                    assert!(!e.reason_zh().is_empty());
                }
                (got, _) => panic!("{input}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn parents_and_ancestors() {
        let v = code("430421105204");
        assert_eq!(v.parent(), Some(code("430421105000")));
        let up: Vec<String> = v.ancestors().map(|c| c.to_string()).collect();
        assert_eq!(
            up,
            [
                "430421105000",
                "430421000000",
                "430400000000",
                "430000000000"
            ]
        );
        assert_eq!(code("430000000000").parent(), None);
        assert_eq!(v.at_tier(Tier::County), Some(code("430421000000")));
        assert_eq!(code("430421000000").at_tier(Tier::Village), None);
        assert!(v.is_within(code("430421000000")));
        assert!(v.is_within(v));
        assert!(!v.is_within(code("430422000000")));
        assert!(!code("430421000000").is_within(v));
    }

    #[test]
    fn lowest_common_ancestor() {
        let cases = [
            ("430421105204", "430421105209", Some("430421105000")),
            ("430421105204", "430421100201", Some("430421000000")),
            ("430421105204", "430422001001", Some("430400000000")),
            ("430421105204", "430421105000", Some("430421105000")),
            ("430421105204", "430421105204", Some("430421105204")),
            ("430421105204", "440100000000", None),
        ];
        for (a, b, expect) in cases {
            let got = code(a).lowest_common_ancestor(code(b));
            assert_eq!(got, expect.map(code), "{a} ^ {b}");
            assert_eq!(got, code(b).lowest_common_ancestor(code(a)), "symmetric");
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(
            code("430422001000").township_kind(),
            Some(TownshipKind::Subdistrict)
        );
        assert_eq!(
            code("430421105000").township_kind(),
            Some(TownshipKind::Town)
        );
        assert_eq!(
            code("430421200000").township_kind(),
            Some(TownshipKind::Xiang)
        );
        assert_eq!(
            code("430421105001").village_kind(),
            Some(VillageKind::Community)
        );
        assert_eq!(
            code("430421105204").village_kind(),
            Some(VillageKind::Village)
        );
        assert_eq!(code("430421000000").township_kind(), None);
    }
}
