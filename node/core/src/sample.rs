//! The source document's two guides (附件1, 村（社区）政务服务事项办事指南) as the built-in
//! sample catalog, owned by 衡阳县 (430421000000).
//!
//! Invariants: the guides say what the seed says; where the seed is silent the choice is
//! marked here and configurable (the senior-card age, the 公示 rules). Item codes are our
//! fixtures (the seed gives none); the national codes are opaque strings anyway.

use std::collections::BTreeSet;

use crate::catalog::{
    CaseType, Condition, ConditionRule, Department, DeptKey, Fee, ItemCode, ItemType, ItemVersion,
    Material, MaterialCode, MaterialRequirement, NOTICE_WORKING_DAYS_DEFAULT, NodeId, NoticeRule,
    ServerType, Service, Step, StepAction, StepCode, TimeLimit, UseLevel,
};
use crate::division::{DivisionCode, Tier};
use crate::person::Status;

/// 衡阳县, the owner of the sample catalog.
pub const COUNTY: &str = "430421000000";
/// Item code of 办理老年优待证.
pub const SENIOR_CARD: &str = "430421-MZ-0001";
/// Item code of 医疗救助申请.
pub const MEDICAL_AID: &str = "430421-YB-0001";
/// Department key of 衡阳县医疗保障局 (the station that approves 医疗救助).
pub const DEPT_MEDICAL_INSURANCE: &str = "ybj";
/// Department key of 衡阳县民政局.
pub const DEPT_CIVIL_AFFAIRS: &str = "mzj";

/// Choices the seed leaves open (DOMAIN.md marks them [U]: configurable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleOptions {
    /// Minimum age for the senior card: 衡阳 sources say 65; some provinces use 60.
    pub senior_card_age: u8,
    /// 公示 length of 医疗救助 in working days.
    pub notice_working_days: u16,
    /// Whether 医疗救助's 公示 counts toward its 10 working days. The seed is silent; we
    /// default to "not counted" (it is a pause, like hearings under 行政许可法 §45), so the
    /// county's own working time is not eaten by the notice.
    pub notice_counts_toward_limit: bool,
}

impl Default for SampleOptions {
    fn default() -> SampleOptions {
        SampleOptions {
            senior_card_age: 65,
            notice_working_days: NOTICE_WORKING_DAYS_DEFAULT,
            notice_counts_toward_limit: false,
        }
    }
}

/// The county that owns the sample items.
pub fn county() -> NodeId {
    // COUNTY is a valid literal, checked by the tests below.
    DivisionCode::parse(COUNTY).unwrap_or_else(|_| unreachable!("COUNTY is a valid code"))
}

/// Both guides with the default options.
pub fn items() -> Vec<ItemVersion> {
    items_with(SampleOptions::default())
}

pub fn items_with(options: SampleOptions) -> Vec<ItemVersion> {
    vec![senior_card(options), medical_aid(options)]
}

fn material(code: &str, name: &str, originals: u8, copies: u8) -> Material {
    Material {
        code: MaterialCode(code.to_owned()),
        name: name.to_owned(),
        originals,
        copies,
    }
}

fn single(m: Material) -> MaterialRequirement {
    MaterialRequirement {
        code: m.code.clone(),
        name: m.name.clone(),
        required: true,
        options: vec![m],
    }
}

fn one_of(code: &str, name: &str, options: Vec<Material>) -> MaterialRequirement {
    MaterialRequirement {
        code: MaterialCode(code.to_owned()),
        name: name.to_owned(),
        required: true,
        options,
    }
}

#[allow(clippy::too_many_arguments)]
fn step(
    code: &str,
    name: &str,
    tier: Tier,
    department: Option<&str>,
    action: StepAction,
    limit: Option<TimeLimit>,
    notice: Option<NoticeRule>,
) -> Step {
    Step {
        code: StepCode(code.to_owned()),
        name: name.to_owned(),
        tier,
        department: department.map(|d| DeptKey(d.to_owned())),
        action,
        limit,
        notice,
    }
}

fn service() -> Service {
    Service {
        place: "户籍所在地或居住地村（社区）便民服务中心".to_owned(),
        hours: "工作日 上午8:30-12:00 下午14:30-17:30".to_owned(),
        // 12345 is the national government-service hotline; the seed names none.
        hotline: "12345".to_owned(),
        supervision_phone: "12345".to_owned(),
    }
}

/// 1、办理老年优待证: 户籍在本辖区内，年满65周岁以上; 身份证复印件、免冠红底一寸彩照一张;
/// 直接办理; 即办; 免费.
pub fn senior_card(options: SampleOptions) -> ItemVersion {
    ItemVersion {
        owner: county(),
        code: ItemCode(SENIOR_CARD.to_owned()),
        version: 1,
        name: "办理老年优待证".to_owned(),
        catalog_code: "LNYDZ".to_owned(),
        handle_item_code: String::new(),
        item_type: ItemType::PublicService,
        use_level: UseLevel::Village,
        department: Department {
            key: DeptKey(DEPT_CIVIL_AFFAIRS.to_owned()),
            name: "衡阳县民政局".to_owned(),
            credit_code: None,
        },
        statutory_limit: TimeLimit::Immediate,
        committed_limit: TimeLimit::Immediate,
        case_type: CaseType::Immediate,
        server_type: ServerType::NATURAL_PERSON,
        conditions: vec![
            Condition {
                code: "hj".to_owned(),
                text: "户籍在本辖区内".to_owned(),
                rule: ConditionRule::HouseholdInJurisdiction,
            },
            Condition {
                code: "nl".to_owned(),
                text: format!("年满{}周岁以上", options.senior_card_age),
                rule: ConditionRule::MinimumAge {
                    years: options.senior_card_age,
                },
            },
        ],
        materials: vec![
            single(material("sfzfyj", "本人身份证复印件", 0, 1)),
            single(material("zp", "免冠红底一寸彩照一张", 1, 0)),
        ],
        steps: vec![step(
            "zjbl",
            "直接办理",
            Tier::Village,
            None,
            StepAction::Complete,
            None,
            None,
        )],
        fee: Fee::free(),
        service: service(),
        legal_basis: None,
    }
}

/// 2、医疗救助申请: 低保、五保人员; 住院发票、参加新农合或城镇医疗保险报销凭据复印件、低保、五保证
/// 复印件; 填写申请表→村（社区）受理初审→乡（街道）审核→公示→县医保局审批→发放救助资金;
/// 10个工作日; 免费.
pub fn medical_aid(options: SampleOptions) -> ItemVersion {
    let days = |n| Some(TimeLimit::WorkingDays(n));
    ItemVersion {
        owner: county(),
        code: ItemCode(MEDICAL_AID.to_owned()),
        version: 1,
        name: "医疗救助申请".to_owned(),
        catalog_code: "YLJZ".to_owned(),
        handle_item_code: String::new(),
        item_type: ItemType::Benefit,
        use_level: UseLevel::County,
        department: Department {
            key: DeptKey(DEPT_MEDICAL_INSURANCE.to_owned()),
            name: "衡阳县医疗保障局".to_owned(),
            credit_code: None,
        },
        statutory_limit: TimeLimit::WorkingDays(10),
        committed_limit: TimeLimit::WorkingDays(10),
        case_type: CaseType::Committed,
        server_type: ServerType::NATURAL_PERSON,
        conditions: vec![Condition {
            code: "dbwb".to_owned(),
            text: "低保或五保人员".to_owned(),
            rule: ConditionRule::AnyStatus {
                statuses: BTreeSet::from([Status::Dibao, Status::Wubao]),
            },
        }],
        materials: vec![
            single(material("zyfp", "住院发票", 1, 0)),
            one_of(
                "bxpj",
                "参加新农合或城镇医疗保险报销凭据复印件",
                vec![
                    material("xnhpj", "新农合报销凭据复印件", 0, 1),
                    material("czybpj", "城镇医疗保险报销凭据复印件", 0, 1),
                ],
            ),
            one_of(
                "dbwbz",
                "低保证或五保证复印件",
                vec![
                    material("dbz", "低保证复印件", 0, 1),
                    material("wbz", "五保证复印件", 0, 1),
                ],
            ),
        ],
        steps: vec![
            step(
                "cs",
                "填写申请表，村（社区）受理初审",
                Tier::Village,
                None,
                StepAction::PreCheck,
                None,
                None,
            ),
            step(
                "sh",
                "乡（街道）审核",
                Tier::Township,
                None,
                StepAction::Review,
                None,
                None,
            ),
            step(
                "gs",
                "公示",
                Tier::Township,
                None,
                StepAction::Notice,
                None,
                Some(NoticeRule {
                    working_days: options.notice_working_days,
                    counts_toward_limit: options.notice_counts_toward_limit,
                }),
            ),
            step(
                "sp",
                "县医保局审批",
                Tier::County,
                Some(DEPT_MEDICAL_INSURANCE),
                StepAction::Approve,
                days(5),
                None,
            ),
            step(
                "ff",
                "发放救助资金",
                Tier::County,
                Some(DEPT_MEDICAL_INSURANCE),
                StepAction::Disburse,
                None,
                None,
            ),
            step(
                "bj",
                "办结，结果反馈申请人",
                Tier::Village,
                None,
                StepAction::Complete,
                None,
                None,
            ),
        ],
        fee: Fee::free(),
        service: service(),
        legal_basis: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, validate_item};

    #[test]
    fn sample_items_are_valid_and_load_into_a_catalog() {
        let mut catalog = Catalog::default();
        for item in items() {
            assert_eq!(validate_item(&item), vec![], "{}", item.name);
            catalog.apply(county(), item).unwrap();
        }
        assert_eq!(catalog.latest_items().count(), 2);
        assert_eq!(catalog.find(MEDICAL_AID).unwrap().name, "医疗救助申请");
    }

    #[test]
    fn senior_card_age_is_configurable() {
        let item = senior_card(SampleOptions {
            senior_card_age: 60,
            ..SampleOptions::default()
        });
        assert!(item.conditions.iter().any(
            |c| c.text == "年满60周岁以上" && c.rule == ConditionRule::MinimumAge { years: 60 }
        ));
    }
}
