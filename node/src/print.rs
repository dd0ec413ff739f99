//! Printable Chinese documents: the acceptance slip (受理单), the one-time notice
//! (一次性告知书), the public guide (办事指南) and a case's history.
//!
//! Invariants: applicants' ID numbers and names appear masked, except on the two documents
//! handed to the applicant themself (slip and notice), which carry the name in full so the
//! applicant can check it, and the ID number masked all the same.

use std::fmt::Write;

use yimen_core::case::Case;
use yimen_core::catalog::{ConditionRule, ItemVersion, TimeLimit};
use yimen_core::intake::IntakeReport;
use yimen_core::person::Applicant;

const RULE: &str = "────────────────────────────────────────";

/// 受理单: what the applicant takes home.
pub fn slip(case: &Case, item: &ItemVersion, node_name: &str) -> String {
    let a = &case.acceptance;
    let mut s = String::new();
    let _ = writeln!(s, "{RULE}");
    let _ = writeln!(s, "              {node_name} 受理单");
    let _ = writeln!(s, "{RULE}");
    let _ = writeln!(s, "办件编号：{}", case.number);
    let _ = writeln!(s, "事项名称：{}（{}）", a.item_name, item.code);
    let _ = writeln!(s, "办件类型：{}", a.case_type.name_zh());
    let _ = writeln!(s, "申 请 人：{}", a.applicant.name.expose());
    let _ = writeln!(s, "身份证号：{}", a.applicant.id_number.masked());
    if let Some(h) = &a.helper {
        let _ = writeln!(s, "代 办 人：{}（{}）", h.name.expose(), h.relation);
    }
    let _ = writeln!(s, "受理时间：{}", case.accepted_at.format("%Y-%m-%d %H:%M"));
    let _ = writeln!(s, "受理人员：{}", a.clerk);
    let _ = writeln!(s, "办结期限：{}", a.deadline.describe_zh());
    let _ = writeln!(s, "已收材料：");
    for req in &item.materials {
        for m in &req.options {
            if a.materials.contains(&m.code)
                || a.materials.contains(&req.code) && req.options.len() == 1
            {
                let _ = writeln!(s, "  · {}", m.name);
            }
        }
    }
    let _ = writeln!(
        s,
        "咨询电话：{}    监督电话：{}",
        item.service.hotline, item.service.supervision_phone
    );
    let _ = writeln!(s, "{RULE}");
    s
}

/// 一次性告知书: everything missing, at once.
pub fn notice(
    report: &IntakeReport,
    item: &ItemVersion,
    applicant: Option<&Applicant>,
    node_name: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{RULE}");
    let _ = writeln!(s, "            {node_name} 一次性告知书");
    let _ = writeln!(s, "{RULE}");
    if let Some(a) = applicant {
        let _ = writeln!(s, "{}：", a.name.expose());
    }
    let _ = writeln!(
        s,
        "您申请办理的“{}”尚不能受理，需补正以下全部内容（共{}项）：",
        item.name,
        report.problem_count()
    );
    for (i, line) in report.lines_zh().iter().enumerate() {
        let _ = writeln!(s, "  {}. {line}", i + 1);
    }
    let _ = writeln!(
        s,
        "补齐后请到任一村（社区）便民服务中心办理。咨询电话：{}",
        item.service.hotline
    );
    let _ = writeln!(s, "{RULE}");
    s
}

/// 办事指南: the public guide of an item version.
pub fn guide(item: &ItemVersion) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}（事项编码 {}，第{}版）",
        item.name, item.code, item.version
    );
    let _ = writeln!(s, "实施主体：{}", item.department.name);
    let conditions: Vec<String> = item
        .conditions
        .iter()
        .map(|c| match c.rule {
            ConditionRule::HouseholdInJurisdiction
            | ConditionRule::MinimumAge { .. }
            | ConditionRule::AnyStatus { .. } => c.text.clone(),
        })
        .collect();
    let _ = writeln!(
        s,
        "申报条件：{}",
        if conditions.is_empty() {
            "无".to_owned()
        } else {
            conditions.join("，")
        }
    );
    let _ = writeln!(s, "申报材料：");
    for req in &item.materials {
        let codes: Vec<&str> = req.options.iter().map(|m| m.code.0.as_str()).collect();
        let _ = writeln!(
            s,
            "  · {}{}（材料代码 {}）",
            req.name,
            if req.required { "" } else { "（非必备）" },
            codes.join(" 或 ")
        );
    }
    let steps: Vec<String> = item.steps.iter().map(|st| st.name.clone()).collect();
    let _ = writeln!(s, "办事程序：{}", steps.join("→"));
    let limit = match item.committed_limit {
        TimeLimit::Immediate => "即办".to_owned(),
        l => l.describe_zh(),
    };
    let _ = writeln!(s, "办理时限：{limit}");
    let _ = writeln!(
        s,
        "收费标准：{}",
        if item.fee.charged {
            format!(
                "{}元（{}）",
                item.fee.amount_fen as f64 / 100.0,
                item.fee.basis
            )
        } else {
            "免费".to_owned()
        }
    );
    let _ = writeln!(s, "办理地点：{}", item.service.place);
    let _ = writeln!(s, "办理时间：{}", item.service.hours);
    let _ = writeln!(s, "咨询电话：{}", item.service.hotline);
    if let Some(basis) = &item.legal_basis {
        let _ = writeln!(s, "修订依据：{basis}");
    }
    s
}
