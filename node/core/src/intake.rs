//! Intake, tell-all-at-once (一次性告知): given an item version, the applicant and the
//! materials presented, every missing material and every unmet condition in one answer.
//!
//! Invariants: intake never stops at the first problem; the answer depends only on its
//! inputs (the date is an input); the wording is Chinese a clerk can read out; nothing here
//! formats an ID number or a name whole.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::catalog::{Condition, ConditionRule, ItemVersion, MaterialCode, MaterialRequirement};
use crate::person::Applicant;

/// A required material not presented.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingMaterial {
    pub code: MaterialCode,
    pub name: String,
    /// For a "one of" requirement, the alternatives (any one will do); empty otherwise.
    pub one_of: Vec<String>,
    pub originals: u8,
    pub copies: u8,
}

impl MissingMaterial {
    fn from_requirement(req: &MaterialRequirement) -> MissingMaterial {
        let first = req.options.first();
        MissingMaterial {
            code: req.code.clone(),
            name: req.name.clone(),
            one_of: if req.is_one_of() {
                req.options.iter().map(|o| o.name.clone()).collect()
            } else {
                Vec::new()
            },
            originals: first.map_or(0, |m| m.originals),
            copies: first.map_or(0, |m| m.copies),
        }
    }

    /// "缺少材料：…" as the clerk reads it out.
    pub fn describe_zh(&self) -> String {
        let mut counts = Vec::new();
        if self.originals > 0 {
            counts.push(format!("原件{}份", self.originals));
        }
        if self.copies > 0 {
            counts.push(format!("复印件{}份", self.copies));
        }
        let mut notes = Vec::new();
        if !self.one_of.is_empty() {
            notes.push(format!("以下任选其一：{}", self.one_of.join("、")));
        }
        if !counts.is_empty() {
            notes.push(counts.join("，"));
        }
        if notes.is_empty() {
            format!("缺少材料：{}", self.name)
        } else {
            format!("缺少材料：{}（{}）", self.name, notes.join("；"))
        }
    }
}

/// A condition the applicant does not meet, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmetCondition {
    pub code: String,
    /// The guide's wording ("低保或五保人员").
    pub text: String,
    /// Why it is unmet, for this applicant.
    pub detail: String,
}

impl UnmetCondition {
    pub fn describe_zh(&self) -> String {
        format!("不符合申报条件：{}（{}）", self.text, self.detail)
    }
}

/// The whole answer of intake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeReport {
    pub missing: Vec<MissingMaterial>,
    pub unmet: Vec<UnmetCondition>,
    /// Codes presented that this item does not ask for (a typing slip, usually); not a
    /// problem, but the clerk is told.
    pub unrecognised: Vec<MaterialCode>,
}

impl IntakeReport {
    /// Complete: nothing missing and every condition met; the case can be accepted.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unmet.is_empty()
    }

    /// Number of problems (missing materials plus unmet conditions).
    pub fn problem_count(&self) -> usize {
        self.missing.len() + self.unmet.len()
    }

    /// Every problem as a line the clerk reads out, materials first.
    pub fn lines_zh(&self) -> Vec<String> {
        self.missing
            .iter()
            .map(MissingMaterial::describe_zh)
            .chain(self.unmet.iter().map(UnmetCondition::describe_zh))
            .collect()
    }
}

/// Checks an application against an item version on day `on` (Beijing time).
pub fn check(
    item: &ItemVersion,
    applicant: &Applicant,
    presented: &BTreeSet<MaterialCode>,
    on: NaiveDate,
) -> IntakeReport {
    let missing = item
        .materials
        .iter()
        .filter(|req| req.required && !req.satisfied_by(presented))
        .map(MissingMaterial::from_requirement)
        .collect();
    let unmet = item
        .conditions
        .iter()
        .filter_map(|c| unmet_condition(item, c, applicant, on))
        .collect();
    let known: BTreeSet<&MaterialCode> = item
        .materials
        .iter()
        .flat_map(|r| std::iter::once(&r.code).chain(r.options.iter().map(|o| &o.code)))
        .collect();
    let unrecognised = presented
        .iter()
        .filter(|c| !known.contains(c))
        .cloned()
        .collect();
    IntakeReport {
        missing,
        unmet,
        unrecognised,
    }
}

fn unmet_condition(
    item: &ItemVersion,
    condition: &Condition,
    applicant: &Applicant,
    on: NaiveDate,
) -> Option<UnmetCondition> {
    let detail = match &condition.rule {
        ConditionRule::HouseholdInJurisdiction => (!applicant.household.is_within(item.owner))
            .then(|| {
                format!(
                    "户籍所在地{}不在本辖区{}内",
                    applicant.household, item.owner
                )
            }),
        ConditionRule::MinimumAge { years } => match applicant.id_number.age_on(on) {
            Some(age) if age >= u32::from(*years) => None,
            Some(age) => Some(format!("申请人现年{age}周岁，未满{years}周岁")),
            None => Some("无法从身份证号码确定年龄".to_owned()),
        },
        ConditionRule::AnyStatus { statuses } => {
            (applicant.statuses.is_disjoint(statuses)).then(|| {
                let names: Vec<&str> = statuses.iter().map(|s| s.name_zh()).collect();
                format!("申请人未申报{}身份", names.join("或"))
            })
        }
    }?;
    Some(UnmetCondition {
        code: condition.code.clone(),
        text: condition.text.clone(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::division::DivisionCode;
    use crate::person::{IdNumber, PersonName, Status};
    use crate::sample;

    fn applicant(id: &str, household: &str, statuses: &[Status]) -> Applicant {
        Applicant {
            id_number: IdNumber::parse(id).unwrap(),
            name: PersonName::parse("李四").unwrap(),
            household: DivisionCode::parse(household).unwrap(),
            statuses: statuses.iter().copied().collect(),
        }
    }

    fn codes(list: &[&str]) -> BTreeSet<MaterialCode> {
        list.iter().map(|c| MaterialCode((*c).to_owned())).collect()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// The foundation issue's case, word for word.
    #[test]
    fn medical_aid_tells_all_three_problems_at_once() {
        let item = sample::medical_aid(sample::SampleOptions::default());
        let who = applicant("430421199001011233", "430421105204", &[]);
        let report = check(&item, &who, &codes(&["zyfp"]), day("2026-09-24"));
        assert_eq!(
            report.lines_zh(),
            [
                "缺少材料：参加新农合或城镇医疗保险报销凭据复印件（以下任选其一：新农合报销凭据复印件、城镇医疗保险报销凭据复印件；复印件1份）",
                "缺少材料：低保证或五保证复印件（以下任选其一：低保证复印件、五保证复印件；复印件1份）",
                "不符合申报条件：低保或五保人员（申请人未申报低保或五保身份）",
            ]
        );
        assert_eq!(report.problem_count(), 3);
        assert!(!report.is_complete());
        assert!(report.unrecognised.is_empty());
    }

    struct Case {
        name: &'static str,
        item: ItemVersion,
        id: &'static str,
        household: &'static str,
        statuses: &'static [Status],
        presented: &'static [&'static str],
        on: &'static str,
        expect_missing: &'static [&'static str],
        expect_unmet: &'static [&'static str],
    }

    #[test]
    fn intake_table() {
        let senior = sample::senior_card(sample::SampleOptions::default());
        let aid = sample::medical_aid(sample::SampleOptions::default());
        // Born 1949-12-31: 76 on 2026-09-24.
        let old = "11010519491231002X";
        let cases = [
            Case {
                name: "senior complete",
                item: senior.clone(),
                id: old,
                household: "430421105204",
                statuses: &[],
                presented: &["sfzfyj", "zp"],
                on: "2026-09-24",
                expect_missing: &[],
                expect_unmet: &[],
            },
            Case {
                name: "senior too young, from elsewhere, nothing presented",
                item: senior.clone(),
                id: "430421199001011233",
                household: "430422001001",
                statuses: &[],
                presented: &[],
                on: "2026-09-24",
                expect_missing: &["sfzfyj", "zp"],
                expect_unmet: &["hj", "nl"],
            },
            Case {
                name: "medical aid complete with the other options",
                item: aid.clone(),
                id: "430421199001011233",
                household: "430421100201",
                statuses: &[Status::Wubao],
                presented: &["zyfp", "czybpj", "wbz"],
                on: "2026-09-24",
                expect_missing: &[],
                expect_unmet: &[],
            },
            Case {
                name: "medical aid, group code presented counts",
                item: aid.clone(),
                id: "430421199001011233",
                household: "430421100201",
                statuses: &[Status::Dibao, Status::Disabled],
                presented: &["bxpj", "dbz"],
                on: "2026-09-24",
                expect_missing: &["zyfp"],
                expect_unmet: &[],
            },
        ];
        for case in cases {
            let who = applicant(case.id, case.household, case.statuses);
            let report = check(&case.item, &who, &codes(case.presented), day(case.on));
            let missing: Vec<&str> = report.missing.iter().map(|m| m.code.0.as_str()).collect();
            let unmet: Vec<&str> = report.unmet.iter().map(|u| u.code.as_str()).collect();
            assert_eq!(missing, case.expect_missing, "{}", case.name);
            assert_eq!(unmet, case.expect_unmet, "{}", case.name);
            assert_eq!(
                report.is_complete(),
                case.expect_missing.is_empty() && case.expect_unmet.is_empty()
            );
        }
    }

    #[test]
    fn the_65th_birthday_counts() {
        let item = sample::senior_card(sample::SampleOptions::default());
        let who = applicant("430421199001011233", "430421105204", &[]);
        let presented = codes(&["sfzfyj", "zp"]);
        assert!(!check(&item, &who, &presented, day("2054-12-31")).is_complete());
        assert!(check(&item, &who, &presented, day("2055-01-01")).is_complete());
        let report = check(&item, &who, &presented, day("2054-12-31"));
        assert_eq!(
            report.lines_zh(),
            ["不符合申报条件：年满65周岁以上（申请人现年64周岁，未满65周岁）"]
        );
    }

    #[test]
    fn unknown_codes_are_told_not_counted() {
        let item = sample::senior_card(sample::SampleOptions::default());
        let who = applicant("11010519491231002X", "430421105204", &[]);
        let report = check(
            &item,
            &who,
            &codes(&["sfzfyj", "zp", "hukou"]),
            day("2026-09-24"),
        );
        assert!(report.is_complete());
        assert_eq!(report.unrecognised, vec![MaterialCode("hukou".to_owned())]);
    }
}
