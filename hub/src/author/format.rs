//! The authoring files (`docs/authoring/{catalog,calendar,topology}.toml` are the documented
//! examples): TOML → the core's revision types.
//!
//! Invariants: an unknown key is refused, naming it (serde `deny_unknown_fields`); once the
//! file has the right shape, every problem of its values (missing fields included) is
//! reported at once, each with its field path (`steps[3].tier`, `years.2027.days_off[1]`,
//! `nodes.430421105204.parent`); a file of the right shape is then checked on its own by the
//! core (`validate_item`, `Calendar::validate`, `Topology::validate`), every problem at once
//! again, so that nothing the wire would refuse one problem at a time is sent; what needs the
//! hub's state (owner, versions, never-more) the hub checks, answering every problem at once
//! too.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Deserialize;

use yimen_core::calendar::{Calendar, CalendarYear};
use yimen_core::catalog::{
    CaseType, Condition, ConditionRule, Department, DeptKey, Fee, ItemCode, ItemType, ItemVersion,
    Material, MaterialCode, MaterialRequirement, NoticeRule, ServerType, Service, Step, StepAction,
    StepCode, TimeLimit, UseLevel, validate_item,
};
use yimen_core::division::{DivisionCode, Tier};
use yimen_core::person::Status;
use yimen_core::topology::{Topology, TopologyNode};
use yimen_node::register::RevisionProblem;

/// Longest range of days one `days_off` entry may span: a year.
pub const RANGE_DAYS_MAX: i64 = 366;

/// One problem of an authoring file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    /// The field's path in the file; empty for the file as a whole.
    pub field: String,
    /// What is wrong, in Chinese.
    pub message_zh: String,
}

/// Every problem found so far.
#[derive(Default)]
struct Problems(Vec<FileProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message_zh: impl Into<String>) {
        self.0.push(FileProblem {
            field: field.into(),
            message_zh: message_zh.into(),
        });
    }

    /// The value of a required field, or a problem naming it.
    fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.push(field, "缺少此字段");
        }
        value
    }

    /// An integer field in `range`.
    fn int<T: TryFrom<i64>>(&mut self, field: &str, value: i64, what: &str) -> Option<T> {
        let v = T::try_from(value).ok();
        if v.is_none() {
            self.push(field, format!("{value}超出范围：应为{what}"));
        }
        v
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FileProblem>> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ if self.0.is_empty() => Err(vec![FileProblem {
                field: String::new(),
                message_zh: "文件内容无法解析".to_owned(),
            }]),
            _ => Err(self.0),
        }
    }
}

/// `value` if the core found no problem in it on its own; else every problem, by field.
fn own_checks<T>(value: T, problems: Vec<RevisionProblem>) -> Result<T, Vec<FileProblem>> {
    if problems.is_empty() {
        return Ok(value);
    }
    Err(problems
        .iter()
        .map(|p| FileProblem {
            field: p.field(),
            message_zh: p.reason_zh(),
        })
        .collect())
}

/// Parses TOML into `T`, refusing unknown keys and wrong types with the TOML parser's message
/// (which names the key and its line).
fn shape<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, Vec<FileProblem>> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_owned();
        // "unknown field `foo`, expected …" / "invalid type: …, expected …": name the key when
        // the parser does.
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("unknown field") || message.starts_with("missing"))
            .unwrap_or_default()
            .to_owned();
        let location = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("（第{line}行）")
            })
            .unwrap_or_default();
        vec![FileProblem {
            field,
            message_zh: format!("文件格式不符{location}：{message}"),
        }]
    })
}

// ---------------------------------------------------------------------------------------
// Catalog

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFile {
    owner: Option<String>,
    code: Option<String>,
    version: Option<i64>,
    name: Option<String>,
    #[serde(default)]
    catalog_code: String,
    #[serde(default)]
    handle_item_code: String,
    item_type: Option<String>,
    use_level: Option<i64>,
    case_type: Option<toml::Value>,
    server_type: Option<i64>,
    statutory_limit: Option<toml::Value>,
    committed_limit: Option<toml::Value>,
    legal_basis: Option<String>,
    department: Option<DepartmentFile>,
    fee: Option<FeeFile>,
    #[serde(default)]
    service: ServiceFile,
    #[serde(default)]
    conditions: Vec<ConditionFile>,
    #[serde(default)]
    materials: Vec<MaterialFile>,
    #[serde(default)]
    steps: Vec<StepFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    key: Option<String>,
    name: Option<String>,
    credit_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeeFile {
    charged: Option<bool>,
    amount_fen: Option<i64>,
    #[serde(default)]
    basis: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    #[serde(default)]
    place: String,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    hotline: String,
    #[serde(default)]
    supervision_phone: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    code: Option<String>,
    text: Option<String>,
    rule: Option<String>,
    years: Option<i64>,
    statuses: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaterialFile {
    code: Option<String>,
    name: Option<String>,
    required: Option<bool>,
    originals: Option<i64>,
    copies: Option<i64>,
    options: Option<Vec<OptionFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionFile {
    code: Option<String>,
    name: Option<String>,
    originals: Option<i64>,
    copies: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    code: Option<String>,
    name: Option<String>,
    tier: Option<String>,
    department: Option<String>,
    action: Option<String>,
    limit: Option<toml::Value>,
    notice: Option<NoticeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeFile {
    working_days: Option<i64>,
    counts_toward_limit: Option<bool>,
}

/// A catalog file: one version of one item.
pub fn catalog(text: &str) -> Result<ItemVersion, Vec<FileProblem>> {
    let file: ItemFile = shape(text)?;
    let mut p = Problems::default();
    let owner = p
        .required("owner", file.owner)
        .and_then(|s| division(&mut p, "owner", &s));
    let code = p.required("code", file.code);
    let version = p
        .required("version", file.version)
        .and_then(|v| p.int::<u32>("version", v, "正整数"));
    let name = p.required("name", file.name);
    let item_type = p
        .required("item_type", file.item_type)
        .and_then(|s| item_type(&mut p, &s));
    let use_level = p.required("use_level", file.use_level).and_then(|v| {
        let level = u8::try_from(v).ok().and_then(UseLevel::from_code);
        if level.is_none() {
            p.push("use_level", format!("{v}无效：应为1（国家级）至7（分级）"));
        }
        level
    });
    let case_type = p
        .required("case_type", file.case_type)
        .and_then(|v| case_type(&mut p, &v));
    let server_type = file
        .server_type
        .map_or(Some(ServerType::NATURAL_PERSON), |v| {
            p.int::<u8>("server_type", v, "服务对象的国家代码（1至255）")
                .map(ServerType)
        });
    let statutory_limit = p
        .required("statutory_limit", file.statutory_limit)
        .and_then(|v| limit(&mut p, "statutory_limit", &v));
    let committed_limit = p
        .required("committed_limit", file.committed_limit)
        .and_then(|v| limit(&mut p, "committed_limit", &v));
    let department = p
        .required("department", file.department)
        .and_then(|d| department(&mut p, d));
    let fee = match file.fee {
        None => Some(Fee::free()),
        Some(f) => fee(&mut p, f),
    };
    let conditions: Vec<Option<Condition>> = file
        .conditions
        .into_iter()
        .enumerate()
        .map(|(i, c)| condition(&mut p, &format!("conditions[{i}]"), c))
        .collect();
    let materials: Vec<Option<MaterialRequirement>> = file
        .materials
        .into_iter()
        .enumerate()
        .map(|(i, m)| material(&mut p, &format!("materials[{i}]"), m))
        .collect();
    if file.steps.is_empty() {
        p.push("steps", "办事程序至少包含一个环节（[[steps]]）");
    }
    let steps: Vec<Option<Step>> = file
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| step(&mut p, &format!("steps[{i}]"), s))
        .collect();
    let service = Service {
        place: file.service.place,
        hours: file.service.hours,
        hotline: file.service.hotline,
        supervision_phone: file.service.supervision_phone,
    };
    let item = (|| {
        Some(ItemVersion {
            owner: owner?,
            code: ItemCode(code?),
            version: version?,
            name: name?,
            catalog_code: file.catalog_code,
            handle_item_code: file.handle_item_code,
            item_type: item_type?,
            use_level: use_level?,
            department: department?,
            statutory_limit: statutory_limit?,
            committed_limit: committed_limit?,
            case_type: case_type?,
            server_type: server_type?,
            conditions: conditions.into_iter().collect::<Option<_>>()?,
            materials: materials.into_iter().collect::<Option<_>>()?,
            steps: steps.into_iter().collect::<Option<_>>()?,
            fee: fee?,
            service,
            legal_basis: file.legal_basis.filter(|b| !b.trim().is_empty()),
        })
    })();
    let item = p.finish(item)?;
    let problems = validate_item(&item)
        .into_iter()
        .map(RevisionProblem::Catalog)
        .collect();
    own_checks(item, problems)
}

fn division(p: &mut Problems, field: &str, s: &str) -> Option<DivisionCode> {
    match DivisionCode::parse(s.trim()) {
        Ok(c) => Some(c),
        Err(e) => {
            p.push(field, e.reason_zh());
            None
        }
    }
}

fn item_type(p: &mut Problems, s: &str) -> Option<ItemType> {
    let s = s.trim();
    let found = ItemType::from_code(s).or_else(|| {
        [
            "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "20",
        ]
        .into_iter()
        .filter_map(ItemType::from_code)
        .find(|t| t.name_zh() == s)
    });
    if found.is_none() {
        p.push(
            "item_type",
            format!("“{s}”不是事项类型的国家代码或名称（如“05”或“行政给付”）"),
        );
    }
    found
}

fn case_type(p: &mut Problems, v: &toml::Value) -> Option<CaseType> {
    let found = match v {
        toml::Value::Integer(n) => u8::try_from(*n).ok().and_then(CaseType::from_code),
        toml::Value::String(s) => [CaseType::Immediate, CaseType::Committed, CaseType::Other]
            .into_iter()
            .find(|t| t.name_zh() == s.trim() || t.code().to_string() == s.trim()),
        _ => None,
    };
    if found.is_none() {
        p.push(
            "case_type",
            format!("{v}无效：应为“即办件”“承诺件”“其他”之一（或1、2、9）"),
        );
    }
    found
}

fn limit(p: &mut Problems, field: &str, v: &toml::Value) -> Option<TimeLimit> {
    let found = match v {
        toml::Value::Integer(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(TimeLimit::WorkingDays),
        toml::Value::String(s) if matches!(s.trim(), "即办" | "immediate") => {
            Some(TimeLimit::Immediate)
        }
        _ => None,
    };
    if found.is_none() {
        p.push(field, format!("{v}无效：应为工作日数（正整数）或“即办”"));
    }
    found
}

fn department(p: &mut Problems, d: DepartmentFile) -> Option<Department> {
    let key = p.required("department.key", d.key);
    let name = p.required("department.name", d.name);
    Some(Department {
        key: DeptKey(key?),
        name: name?,
        credit_code: d.credit_code.filter(|c| !c.trim().is_empty()),
    })
}

fn fee(p: &mut Problems, f: FeeFile) -> Option<Fee> {
    let charged = f.charged.unwrap_or(false);
    let amount_fen = match f.amount_fen {
        None => 0,
        Some(v) => p.int::<u64>("fee.amount_fen", v, "以分计的非负整数")?,
    };
    if !charged && amount_fen > 0 {
        p.push("fee.amount_fen", "不收费（charged = false）时金额应为0");
        return None;
    }
    if charged && amount_fen == 0 {
        p.push("fee.amount_fen", "收费（charged = true）时应写明金额（分）");
        return None;
    }
    Some(Fee {
        charged,
        amount_fen,
        basis: f.basis,
    })
}

fn condition(p: &mut Problems, at: &str, c: ConditionFile) -> Option<Condition> {
    let code = p.required(&format!("{at}.code"), c.code);
    let text = p.required(&format!("{at}.text"), c.text);
    let rule_name = p.required(&format!("{at}.rule"), c.rule);
    let rule = match rule_name.as_deref().map(str::trim) {
        None => None,
        Some("household_in_jurisdiction") => Some(ConditionRule::HouseholdInJurisdiction),
        Some("minimum_age") => match c.years {
            None => {
                p.push(format!("{at}.years"), "年龄条件（minimum_age）须写明 years");
                None
            }
            Some(y) => p
                .int::<u8>(&format!("{at}.years"), y, "0至255周岁")
                .map(|years| ConditionRule::MinimumAge { years }),
        },
        Some("any_status") => {
            let listed = c.statuses.clone().unwrap_or_default();
            if listed.is_empty() {
                p.push(
                    format!("{at}.statuses"),
                    "身份条件（any_status）须列出至少一个身份（dibao、wubao、disabled）",
                );
            }
            let mut statuses = BTreeSet::new();
            let mut ok = !listed.is_empty();
            for (i, s) in listed.iter().enumerate() {
                match Status::parse(s.trim()) {
                    Some(st) => {
                        statuses.insert(st);
                    }
                    None => {
                        ok = false;
                        p.push(
                            format!("{at}.statuses[{i}]"),
                            format!("“{s}”不是已知身份（dibao 低保、wubao 五保、disabled 残疾）"),
                        );
                    }
                }
            }
            ok.then_some(ConditionRule::AnyStatus { statuses })
        }
        Some(other) => {
            p.push(
                format!("{at}.rule"),
                format!(
                    "“{other}”不是已知规则（household_in_jurisdiction、minimum_age、any_status）"
                ),
            );
            None
        }
    };
    let rule_name = rule_name.unwrap_or_default();
    if c.years.is_some() && rule_name.trim() != "minimum_age" {
        p.push(
            format!("{at}.years"),
            "只有年龄条件（minimum_age）可写 years",
        );
    }
    if c.statuses.is_some() && rule_name.trim() != "any_status" {
        p.push(
            format!("{at}.statuses"),
            "只有身份条件（any_status）可写 statuses",
        );
    }
    Some(Condition {
        code: code?,
        text: text?,
        rule: rule?,
    })
}

fn counts(
    p: &mut Problems,
    at: &str,
    originals: Option<i64>,
    copies: Option<i64>,
) -> Option<(u8, u8)> {
    let o = p.int::<u8>(
        &format!("{at}.originals"),
        originals.unwrap_or(0),
        "0至255份",
    );
    let c = p.int::<u8>(&format!("{at}.copies"), copies.unwrap_or(0), "0至255份");
    let (o, c) = (o?, c?);
    if o == 0 && c == 0 {
        p.push(
            at.to_owned(),
            "原件份数（originals）与复印件份数（copies）不能都为0",
        );
        return None;
    }
    Some((o, c))
}

fn material(p: &mut Problems, at: &str, m: MaterialFile) -> Option<MaterialRequirement> {
    let code = p.required(&format!("{at}.code"), m.code);
    let name = p.required(&format!("{at}.name"), m.name);
    let options = match m.options {
        None => {
            let (originals, copies) = counts(p, at, m.originals, m.copies)?;
            vec![Material {
                code: MaterialCode(code.clone()?),
                name: name.clone()?,
                originals,
                copies,
            }]
        }
        Some(list) => {
            if m.originals.is_some() || m.copies.is_some() {
                p.push(
                    at.to_owned(),
                    "“任选其一”的材料组把份数写在各选项（options）中，不写在组上",
                );
            }
            if list.is_empty() {
                p.push(format!("{at}.options"), "选项不能为空");
            }
            let converted: Vec<Option<Material>> = list
                .into_iter()
                .enumerate()
                .map(|(i, o)| {
                    let oat = format!("{at}.options[{i}]");
                    let code = p.required(&format!("{oat}.code"), o.code);
                    let name = p.required(&format!("{oat}.name"), o.name);
                    let (originals, copies) = counts(p, &oat, o.originals, o.copies)?;
                    Some(Material {
                        code: MaterialCode(code?),
                        name: name?,
                        originals,
                        copies,
                    })
                })
                .collect();
            converted.into_iter().collect::<Option<Vec<_>>>()?
        }
    };
    Some(MaterialRequirement {
        code: MaterialCode(code?),
        name: name?,
        required: m.required.unwrap_or(true),
        options,
    })
}

fn step(p: &mut Problems, at: &str, s: StepFile) -> Option<Step> {
    let code = p.required(&format!("{at}.code"), s.code);
    let name = p.required(&format!("{at}.name"), s.name);
    let tier = p.required(&format!("{at}.tier"), s.tier).and_then(|t| {
        let parsed = t.trim().parse::<Tier>().ok();
        if parsed.is_none() {
            p.push(
                format!("{at}.tier"),
                format!("“{t}”不是已知层级（village、township、county、city、province）"),
            );
        }
        parsed
    });
    let action = p.required(&format!("{at}.action"), s.action).and_then(|a| {
        let parsed = StepAction::from_str_name(a.trim());
        if parsed.is_none() {
            let all: Vec<&str> = StepAction::ALL.iter().map(|a| a.as_str()).collect();
            p.push(
                format!("{at}.action"),
                format!("“{a}”不是已知环节动作（{}）", all.join("、")),
            );
        }
        parsed
    });
    let limit = match &s.limit {
        None => Some(None),
        Some(v) => limit(p, &format!("{at}.limit"), v).map(Some),
    };
    let notice = match s.notice {
        None => Some(None),
        Some(n) => {
            if action.is_some_and(|a| a != StepAction::Notice) {
                p.push(
                    format!("{at}.notice"),
                    "只有公示环节（action = \"notice\"）可以设置 notice",
                );
            }
            let days = p
                .required(&format!("{at}.notice.working_days"), n.working_days)
                .and_then(|d| p.int::<u16>(&format!("{at}.notice.working_days"), d, "工作日数"));
            let counts = p.required(
                &format!("{at}.notice.counts_toward_limit"),
                n.counts_toward_limit,
            );
            match (days, counts) {
                (Some(working_days), Some(counts_toward_limit)) => Some(Some(NoticeRule {
                    working_days,
                    counts_toward_limit,
                })),
                _ => None,
            }
        }
    };
    Some(Step {
        code: StepCode(code?),
        name: name?,
        tier: tier?,
        department: s
            .department
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .map(DeptKey),
        action: action?,
        limit: limit?,
        notice: notice?,
    })
}

// ---------------------------------------------------------------------------------------
// Calendar

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    version: Option<i64>,
    #[serde(default)]
    years: BTreeMap<String, YearFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    source: Option<String>,
    #[serde(default)]
    days_off: Vec<toml::Value>,
    #[serde(default)]
    working_weekends: Vec<toml::Value>,
}

/// A calendar file: the years to add or replace, under a new version.
pub fn calendar(text: &str) -> Result<Calendar, Vec<FileProblem>> {
    let file: CalendarFile = shape(text)?;
    let mut p = Problems::default();
    let version = p
        .required("version", file.version)
        .and_then(|v| p.int::<u32>("version", v, "正整数"));
    if file.years.is_empty() {
        p.push("years", "没有列出任何年份（[years.YYYY]）");
    }
    let mut years = BTreeMap::new();
    for (key, y) in file.years {
        let at = format!("years.{key}");
        let year = key
            .parse::<i32>()
            .ok()
            .filter(|y| (1..=9999).contains(y) && key.len() == 4);
        let Some(year) = year else {
            p.push(at, format!("“{key}”不是四位年份"));
            continue;
        };
        let source = p.required(&format!("{at}.source"), y.source);
        let days_off = dates(&mut p, &format!("{at}.days_off"), &y.days_off, true);
        let working_weekends = dates(
            &mut p,
            &format!("{at}.working_weekends"),
            &y.working_weekends,
            false,
        );
        if let (Some(source), Some(days_off), Some(working_weekends)) =
            (source, days_off, working_weekends)
        {
            years.insert(
                year,
                CalendarYear {
                    year,
                    days_off,
                    working_weekends,
                    source,
                },
            );
        }
    }
    let calendar = p.finish(version.map(|version| Calendar { version, years }))?;
    let problems = match calendar.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(RevisionProblem::Calendar).collect(),
    };
    own_checks(calendar, problems)
}

/// Dates as "YYYY-MM-DD", TOML dates, or (with `ranges`) "YYYY-MM-DD..YYYY-MM-DD".
fn dates(
    p: &mut Problems,
    at: &str,
    values: &[toml::Value],
    ranges: bool,
) -> Option<BTreeSet<NaiveDate>> {
    let mut out = BTreeSet::new();
    let mut ok = true;
    for (i, v) in values.iter().enumerate() {
        let field = format!("{at}[{i}]");
        let parsed = match v {
            toml::Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => dt
                .date
                .and_then(|d| {
                    NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
                })
                .map(|d| (d, d)),
            toml::Value::String(s) => match s.split_once("..") {
                Some((a, b)) if ranges => day(a).zip(day(b)),
                Some(_) => None,
                None => day(s).map(|d| (d, d)),
            },
            _ => None,
        };
        let Some((from, to)) = parsed else {
            ok = false;
            let form = if ranges {
                "“YYYY-MM-DD”或区间“YYYY-MM-DD..YYYY-MM-DD”"
            } else {
                "“YYYY-MM-DD”"
            };
            p.push(field, format!("{v}不是有效日期：应为{form}"));
            continue;
        };
        if to < from || (to - from).num_days() >= RANGE_DAYS_MAX {
            ok = false;
            p.push(
                field,
                format!(
                    "区间{from}..{to}无效：终止日期不得早于起始日期，且不超过{RANGE_DAYS_MAX}天"
                ),
            );
            continue;
        }
        out.extend(from.iter_days().take_while(|d| *d <= to));
    }
    ok.then_some(out)
}

fn day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

// ---------------------------------------------------------------------------------------
// Topology

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    version: Option<i64>,
    vintage: Option<String>,
    #[serde(default)]
    nodes: BTreeMap<String, NodeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: Option<String>,
    parent: Option<String>,
    tier: Option<String>,
    serves: Option<Vec<String>>,
}

/// A topology file: a whole new version of the node table.
pub fn topology(text: &str) -> Result<Topology, Vec<FileProblem>> {
    let file: TopologyFile = shape(text)?;
    let mut p = Problems::default();
    let version = p
        .required("version", file.version)
        .and_then(|v| p.int::<u32>("version", v, "正整数"));
    let vintage = p.required("vintage", file.vintage);
    if file.nodes.is_empty() {
        p.push("nodes", "没有列出任何节点（[nodes.<节点编码>]）");
    }
    let mut nodes = BTreeMap::new();
    for (key, n) in file.nodes {
        let at = format!("nodes.{key}");
        let id = division(&mut p, &at, &key);
        let name = p.required(&format!("{at}.name"), n.name);
        let parent = match n.parent {
            None => Some(None),
            Some(s) => division(&mut p, &format!("{at}.parent"), &s).map(Some),
        };
        let tier = match (n.tier, id) {
            (Some(t), _) => {
                let parsed = t.trim().parse::<Tier>().ok();
                if parsed.is_none() {
                    p.push(
                        format!("{at}.tier"),
                        format!("“{t}”不是已知层级（village、township、county、city、province）"),
                    );
                }
                parsed
            }
            (None, id) => id.map(DivisionCode::tier),
        };
        let serves = match n.serves {
            None => id.map(|id| vec![id]),
            Some(list) => {
                if list.is_empty() {
                    p.push(
                        format!("{at}.serves"),
                        "服务范围不能为空（省略则为节点本身的代码）",
                    );
                }
                let parsed: Vec<Option<DivisionCode>> = list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| division(&mut p, &format!("{at}.serves[{i}]"), s))
                    .collect();
                parsed.into_iter().collect::<Option<Vec<_>>>()
            }
        };
        if let (Some(id), Some(name), Some(parent), Some(tier), Some(serves)) =
            (id, name, parent, tier, serves)
        {
            nodes.insert(
                id,
                TopologyNode {
                    id,
                    tier,
                    parent,
                    name,
                    serves,
                },
            );
        }
    }
    let table = match (version, vintage) {
        (Some(version), Some(vintage)) => Some(Topology {
            version,
            vintage,
            nodes,
        }),
        _ => None,
    };
    let table = p.finish(table)?;
    let problems = match table.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(RevisionProblem::Topology).collect(),
    };
    own_checks(table, problems)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;
    use yimen_core::catalog::{Catalog, never_more};
    use yimen_core::sample::{self, SampleOptions};

    const CATALOG_EXAMPLE: &str = include_str!("../../../docs/authoring/catalog.toml");
    const CALENDAR_EXAMPLE: &str = include_str!("../../../docs/authoring/calendar.toml");
    const TOPOLOGY_EXAMPLE: &str = include_str!("../../../docs/authoring/topology.toml");

    /// The fields of the problems, in order, and whether each message holds its needle.
    fn check(problems: &[FileProblem], expect: &[(&str, &str)]) {
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.message_zh.as_str()))
            .collect();
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for ((field, message), (want_field, needle)) in got.iter().zip(expect) {
            assert_eq!(field, want_field, "{got:#?}");
            assert!(message.contains(needle), "{message} lacks {needle}");
        }
    }

    #[test]
    fn the_catalog_example_is_the_sample_item_less_one_material() {
        let item = catalog(CATALOG_EXAMPLE).unwrap();
        assert_eq!(validate_item(&item), vec![]);
        let v1 = sample::medical_aid(SampleOptions::default());
        let mut expected = v1.clone();
        expected.version = 2;
        expected.materials.retain(|m| m.code.0 != "dbwbz");
        assert_eq!(item, expected);
        assert_eq!(never_more(&v1, &item), vec![], "a decrease only");
        let mut catalog = Catalog::default();
        catalog.apply(v1.owner, v1.clone()).unwrap();
        assert_eq!(catalog.apply(v1.owner, item).unwrap().version, 2);
    }

    #[test]
    fn the_calendar_example_is_a_valid_2027() {
        let cal = calendar(CALENDAR_EXAMPLE).unwrap();
        assert_eq!(cal.version, 2);
        assert_eq!(cal.years.keys().copied().collect::<Vec<_>>(), vec![2027]);
        cal.validate().unwrap();
        let merged = Calendar::builtin().apply(cal.clone()).unwrap();
        assert_eq!(merged.years.len(), 3);
        let year = &cal.years[&2027];
        // Seven ranges: 3 + 9 + 3 + 5 + 1 + 1 + 7 days.
        assert_eq!(year.days_off.len(), 29);
        assert_eq!(year.working_weekends.len(), 5);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(merged.is_working_day(d("2027-01-01")), Ok(false));
        assert_eq!(merged.is_working_day(d("2027-02-14")), Ok(true));
        // 10 working days from 2026-12-24: Jan 1 is off, so Jan 8 rather than Jan 7.
        assert_eq!(
            merged.add_working_days(d("2026-12-24"), 10),
            Ok(d("2027-01-08"))
        );
    }

    #[test]
    fn the_topology_example_merges_a_village() {
        let table = topology(TOPOLOGY_EXAMPLE).unwrap();
        let current = Topology::sample_hengyang();
        let next = current.apply(table).unwrap();
        assert_eq!(next.version, 2);
        let code = |s: &str| DivisionCode::parse(s).unwrap();
        assert!(next.node(code("430421105200")).is_none());
        assert_eq!(
            next.serving(code("430421105200"), Tier::Village),
            Ok(code("430421105204"))
        );
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it() {
        let text = CALENDAR_EXAMPLE.replace("version = 2", "version = 2\nversoin = 3");
        check(
            &calendar(&text).unwrap_err(),
            &[("versoin", "unknown field")],
        );
        let text = CATALOG_EXAMPLE.replace("code = \"cs\"", "code = \"cs\"\nlimt = 2");
        let problems = catalog(&text).unwrap_err();
        check(&problems, &[("limt", "unknown field")]);
        assert!(problems[0].message_zh.contains("行"), "{problems:?}");
    }

    #[test]
    fn every_value_problem_of_a_catalog_is_reported_at_once() {
        let text = CATALOG_EXAMPLE
            .replace("owner = \"430421000000\"", "owner = \"4304210000\"")
            .replace("version = 2 ", "")
            .replace("case_type = \"承诺件\"", "case_type = \"加急件\"")
            .replace("committed_limit = 10", "committed_limit = 0")
            .replace(
                "tier = \"township\"\naction = \"review\"",
                "tier = \"town\"\naction = \"review\"",
            )
            .replace(
                "statuses = [\"dibao\", \"wubao\"]",
                "statuses = [\"dibao\", \"poor\"]",
            )
            .replace("limit = 5", "limit = \"5天\"")
            .replace("originals = 1\ncopies = 0", "originals = 0\ncopies = 0");
        check(
            &catalog(&text).unwrap_err(),
            &[
                ("owner", "应为12位数字"),
                ("version", "缺少此字段"),
                ("case_type", "加急件"),
                ("committed_limit", "“即办”"),
                ("conditions[0].statuses[1]", "“poor”不是已知身份"),
                ("materials[0]", "不能都为0"),
                ("steps[1].tier", "“town”不是已知层级"),
                ("steps[3].limit", "应为工作日数"),
            ],
        );
    }

    #[test]
    fn the_item_the_calendar_and_the_table_are_checked_on_their_own_too() {
        let text = CATALOG_EXAMPLE
            .replace("name = \"医疗救助申请\"", "name = \"\"")
            .replace("committed_limit = 10", "committed_limit = 12")
            .replace("key = \"ybj\"", "key = \"YB J\"");
        check(
            &catalog(&text).unwrap_err(),
            &[
                ("name", "不能为空"),
                ("department.key", "部门代号"),
                ("committed_limit", "不得超过法定办结时限"),
            ],
        );
        let text = CALENDAR_EXAMPLE
            .replace("\"2027-06-09\",", "\"2028-06-09\",")
            .replace("\"2027-02-20\",", "\"2027-02-22\",");
        check(
            &calendar(&text).unwrap_err(),
            &[
                ("years.2027.days_off", "不属于2027年"),
                ("years.2027.working_weekends", "不是周六或周日"),
            ],
        );
        let text = TOPOLOGY_EXAMPLE.replace(
            "name = \"西渡镇\"\nparent = \"430421000000\"",
            "name = \"西渡镇\"",
        );
        check(
            &topology(&text).unwrap_err(),
            &[("nodes.430421100000.parent", "两个根节点")],
        );
    }

    #[test]
    fn limits_and_codes_take_their_documented_forms() {
        let text = CATALOG_EXAMPLE
            .replace("statutory_limit = 10", "statutory_limit = \"即办\"")
            .replace("committed_limit = 10", "committed_limit = \"即办\"")
            .replace("case_type = \"承诺件\"", "case_type = 1")
            .replace("item_type = \"05\"", "item_type = \"公共服务\"");
        let item = catalog(&text).unwrap();
        assert_eq!(item.statutory_limit, TimeLimit::Immediate);
        assert_eq!(item.committed_limit, TimeLimit::Immediate);
        assert_eq!(item.case_type, CaseType::Immediate);
        assert_eq!(item.item_type, ItemType::PublicService);
        assert_eq!(item.fee, Fee::free());
    }

    #[test]
    fn every_problem_of_a_calendar_is_reported_at_once() {
        let text = CALENDAR_EXAMPLE
            .replace("source = ", "# source = ")
            .replace("\"2027-06-09\"", "\"2027-06-31\"")
            .replace("\"2027-10-01..2027-10-07\"", "\"2027-10-07..2027-10-01\"")
            .replace("\"2027-05-08\"", "\"2027-05-08..2027-05-09\"");
        check(
            &calendar(&text).unwrap_err(),
            &[
                ("years.2027.source", "缺少此字段"),
                ("years.2027.days_off[4]", "不是有效日期"),
                ("years.2027.days_off[6]", "终止日期不得早于起始日期"),
                ("years.2027.working_weekends[2]", "不是有效日期"),
            ],
        );
        let text = "version = 2\n[years.27]\nsource = \"x\"\n";
        check(&calendar(text).unwrap_err(), &[("years.27", "四位年份")]);
    }

    #[test]
    fn toml_dates_are_taken_unquoted() {
        let text = "version = 3\n[years.2028]\nsource = \"x\"\ndays_off = [2028-01-01]\nworking_weekends = [\"2028-01-08\"]\n";
        let cal = calendar(text).unwrap();
        assert_eq!(cal.years[&2028].days_off.len(), 1);
    }

    #[test]
    fn every_problem_of_a_topology_is_reported_at_once() {
        let text = TOPOLOGY_EXAMPLE
            .replace("vintage = ", "# vintage = ")
            .replace("[nodes.430421100000]", "[nodes.43042110000]")
            .replace(
                "parent = \"430421000000\"\n\n[nodes.43042110000]",
                "parent = \"430421000000\"\ntier = \"town\"\n\n[nodes.43042110000]",
            )
            .replace("\"430421105200\"]", "\"4304211052\"]");
        check(
            &topology(&text).unwrap_err(),
            &[
                ("vintage", "缺少此字段"),
                ("nodes.43042110000", "应为12位数字"),
                ("nodes.430421105000.tier", "“town”不是已知层级"),
                ("nodes.430421105204.serves[1]", "应为12位数字"),
            ],
        );
    }
}
