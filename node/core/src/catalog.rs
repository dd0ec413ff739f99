//! The catalog (事项清单): service items with the national data elements of GB/T 39046-2020,
//! machine-checkable conditions, materials with "one of" groups, and the process steps.
//!
//! Invariants: every item has exactly one owner (the hub that authored it) and versions
//! increase by one per revision; a revision is compared with the previous version by the
//! never-more rule (只减不增) and any increase without a legal basis is refused with every
//! problem listed at once; old versions are never mutated (cases follow the version they were
//! accepted under).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::division::{DivisionCode, Tier};
use crate::person::Status;

/// A node's identity: the division code it was commissioned with.
pub type NodeId = DivisionCode;

/// 实施编码: the code an item is implemented under. Opaque (≤50 chars); never parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemCode(pub String);

/// Code of a material within an item; compared by the never-more rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MaterialCode(pub String);

/// Code of a step within an item's process; compared by the never-more rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepCode(pub String);

/// A department's short ASCII key (`ybj` for 医保局), used in station identities
/// (`spiffe://<td>/station/<county>/<dept>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeptKey(pub String);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_inner!(ItemCode, MaterialCode, StepCode, DeptKey);

/// Maximum length of the opaque national codes (GB/T 39046-2020).
pub const CODE_CHARS_MAX: usize = 50;
/// Maximum length of an item name (GB/T 39046-2020).
pub const ITEM_NAME_CHARS_MAX: usize = 200;
/// Longest time limit we accept, in working days: about four working years; guards arithmetic.
pub const LIMIT_DAYS_MAX: u16 = 1000;

/// 事项类型 (two-digit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemType {
    /// 01 行政许可
    Licensing,
    /// 02 行政处罚
    Penalty,
    /// 03 行政强制
    Enforcement,
    /// 04 行政征收
    Levy,
    /// 05 行政给付
    Benefit,
    /// 06 行政检查
    Inspection,
    /// 07 行政确认
    Confirmation,
    /// 08 行政奖励
    Award,
    /// 09 行政裁决
    Adjudication,
    /// 10 其他
    Other,
    /// 20 公共服务
    PublicService,
}

impl ItemType {
    const TABLE: [(ItemType, &'static str, &'static str); 11] = [
        (ItemType::Licensing, "01", "行政许可"),
        (ItemType::Penalty, "02", "行政处罚"),
        (ItemType::Enforcement, "03", "行政强制"),
        (ItemType::Levy, "04", "行政征收"),
        (ItemType::Benefit, "05", "行政给付"),
        (ItemType::Inspection, "06", "行政检查"),
        (ItemType::Confirmation, "07", "行政确认"),
        (ItemType::Award, "08", "行政奖励"),
        (ItemType::Adjudication, "09", "行政裁决"),
        (ItemType::Other, "10", "其他"),
        (ItemType::PublicService, "20", "公共服务"),
    ];

    pub fn code(self) -> &'static str {
        Self::row(self).1
    }

    pub fn name_zh(self) -> &'static str {
        Self::row(self).2
    }

    pub fn from_code(code: &str) -> Option<ItemType> {
        Self::TABLE.iter().find(|r| r.1 == code).map(|r| r.0)
    }

    fn row(self) -> (ItemType, &'static str, &'static str) {
        // Every variant has a row in TABLE.
        Self::TABLE
            .iter()
            .copied()
            .find(|r| r.0 == self)
            .unwrap_or((self, "10", "其他"))
    }
}

/// 行使层级 (one digit, 1..=7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UseLevel {
    National,
    Provincial,
    Municipal,
    County,
    Township,
    Village,
    Graded,
}

impl UseLevel {
    const ALL: [UseLevel; 7] = [
        UseLevel::National,
        UseLevel::Provincial,
        UseLevel::Municipal,
        UseLevel::County,
        UseLevel::Township,
        UseLevel::Village,
        UseLevel::Graded,
    ];

    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    pub fn from_code(code: u8) -> Option<UseLevel> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// 办件类型: 即办件 (handled on the spot) or 承诺件 (committed deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseType {
    /// 1 即办件
    Immediate,
    /// 2 承诺件
    Committed,
    /// 9 其他
    Other,
}

impl CaseType {
    pub fn code(self) -> u8 {
        match self {
            CaseType::Immediate => 1,
            CaseType::Committed => 2,
            CaseType::Other => 9,
        }
    }

    pub fn from_code(code: u8) -> Option<CaseType> {
        match code {
            1 => Some(CaseType::Immediate),
            2 => Some(CaseType::Committed),
            9 => Some(CaseType::Other),
            _ => None,
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            CaseType::Immediate => "即办件",
            CaseType::Committed => "承诺件",
            CaseType::Other => "其他",
        }
    }
}

/// 服务对象 (1 自然人, 2 企业法人, ...). Kept as its national digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerType(pub u8);

impl ServerType {
    pub const NATURAL_PERSON: ServerType = ServerType(1);
    pub const LEGAL_PERSON: ServerType = ServerType(2);
}

/// A time limit: on the spot, or a number of working days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeLimit {
    Immediate,
    WorkingDays(u16),
}

impl TimeLimit {
    /// Working days, with "immediate" as zero (for comparisons).
    pub fn days(self) -> u16 {
        match self {
            TimeLimit::Immediate => 0,
            TimeLimit::WorkingDays(n) => n,
        }
    }

    pub fn describe_zh(self) -> String {
        match self {
            TimeLimit::Immediate => "即办".to_owned(),
            TimeLimit::WorkingDays(n) => format!("{n}个工作日"),
        }
    }
}

/// The department that decides (实施主体).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub key: DeptKey,
    pub name: String,
    /// 统一社会信用代码 (18 chars, GB 32100), when known.
    pub credit_code: Option<String>,
}

/// A machine-checkable eligibility rule (申报条件) with the wording shown on the guide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub code: String,
    /// The guide's wording, read out when the condition is unmet ("低保或五保人员").
    pub text: String,
    pub rule: ConditionRule,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionRule {
    /// The registered household (户籍) lies within the owner's jurisdiction.
    HouseholdInJurisdiction,
    /// Aged at least `years` on the day of application.
    MinimumAge { years: u8 },
    /// The applicant declares at least one of these statuses.
    AnyStatus { statuses: BTreeSet<Status> },
}

/// One material of the guide (申报材料).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub code: MaterialCode,
    pub name: String,
    pub originals: u8,
    pub copies: u8,
}

/// A material requirement: one material, or "one of" several alternatives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialRequirement {
    /// The requirement's code: the material's own code, or the group's code.
    pub code: MaterialCode,
    /// What the guide calls it ("低保证或五保证复印件").
    pub name: String,
    pub required: bool,
    /// One entry: that material. Several: any one of them satisfies the requirement.
    pub options: Vec<Material>,
}

impl MaterialRequirement {
    pub fn is_one_of(&self) -> bool {
        self.options.len() > 1
    }

    pub fn satisfied_by(&self, presented: &BTreeSet<MaterialCode>) -> bool {
        self.options.iter().any(|m| presented.contains(&m.code)) || presented.contains(&self.code)
    }
}

/// What a step does (办理环节).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StepAction {
    /// 受理
    Accept,
    /// 初审
    PreCheck,
    /// 审核
    Review,
    /// 公示
    Notice,
    /// 审批
    Approve,
    /// 发放
    Disburse,
    /// 办结 (and 直接办理)
    Complete,
}

impl StepAction {
    pub const ALL: [StepAction; 7] = [
        StepAction::Accept,
        StepAction::PreCheck,
        StepAction::Review,
        StepAction::Notice,
        StepAction::Approve,
        StepAction::Disburse,
        StepAction::Complete,
    ];

    pub fn name_zh(self) -> &'static str {
        match self {
            StepAction::Accept => "受理",
            StepAction::PreCheck => "初审",
            StepAction::Review => "审核",
            StepAction::Notice => "公示",
            StepAction::Approve => "审批",
            StepAction::Disburse => "发放",
            StepAction::Complete => "办结",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepAction::Accept => "accept",
            StepAction::PreCheck => "precheck",
            StepAction::Review => "review",
            StepAction::Notice => "notice",
            StepAction::Approve => "approve",
            StepAction::Disburse => "disburse",
            StepAction::Complete => "complete",
        }
    }

    pub fn from_str_name(s: &str) -> Option<StepAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// 公示 rules of a notice step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRule {
    /// Length in working days (DOMAIN.md: default 7).
    pub working_days: u16,
    /// Whether the notice period counts toward the committed limit; when it does not, it
    /// extends the deadline as a pause.
    pub counts_toward_limit: bool,
}

/// Default 公示 length: the national social-assistance disclosure template (DOMAIN.md).
pub const NOTICE_WORKING_DAYS_DEFAULT: u16 = 7;

/// One step of the process (办事程序).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub code: StepCode,
    pub name: String,
    pub tier: Tier,
    /// The department acting at this step; `None` means the node's own desk (village clerk,
    /// township reviewer).
    pub department: Option<DeptKey>,
    pub action: StepAction,
    pub limit: Option<TimeLimit>,
    pub notice: Option<NoticeRule>,
}

/// 收费.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fee {
    pub charged: bool,
    /// In fen (分); zero when free.
    pub amount_fen: u64,
    pub basis: String,
}

impl Fee {
    pub fn free() -> Fee {
        Fee {
            charged: false,
            amount_fen: 0,
            basis: String::new(),
        }
    }
}

/// The public, where-and-when part of the guide.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub place: String,
    pub hours: String,
    pub hotline: String,
    pub supervision_phone: String,
}

/// One version of one item: everything the guide says and the process follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemVersion {
    pub owner: NodeId,
    /// 实施编码; the item's key within its owner.
    pub code: ItemCode,
    pub version: u32,
    pub name: String,
    /// 基本编码
    pub catalog_code: String,
    /// 业务办理项编码 (may be empty)
    pub handle_item_code: String,
    pub item_type: ItemType,
    pub use_level: UseLevel,
    pub department: Department,
    pub statutory_limit: TimeLimit,
    pub committed_limit: TimeLimit,
    pub case_type: CaseType,
    pub server_type: ServerType,
    pub conditions: Vec<Condition>,
    pub materials: Vec<MaterialRequirement>,
    pub steps: Vec<Step>,
    pub fee: Fee,
    pub service: Service,
    /// The legal basis a revision named to justify an increase (只减不增 exception).
    pub legal_basis: Option<String>,
}

/// `(owner, code, version)`: how cases refer to the version they were accepted under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemVersionKey {
    pub owner: NodeId,
    pub code: ItemCode,
    pub version: u32,
}

impl ItemVersion {
    pub fn key(&self) -> ItemVersionKey {
        ItemVersionKey {
            owner: self.owner,
            code: self.code.clone(),
            version: self.version,
        }
    }
}

/// Why a catalog revision was refused. Every problem of a revision is reported at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogProblem {
    /// The author is not the item's owner (one owner per item).
    NotOwner { owner: NodeId, author: NodeId },
    /// The version is not the next one.
    Version { expected: u32, got: u32 },
    /// A text field is empty or too long.
    Field { field: &'static str, reason: String },
    /// Two materials or two steps share a code.
    DuplicateCode { what: &'static str, code: String },
    /// The committed limit exceeds the statutory one (承诺 ≤ 法定).
    CommittedOverStatutory {
        committed: TimeLimit,
        statutory: TimeLimit,
    },
    /// 即办件 must have an immediate committed limit, and only 即办件 may.
    CaseTypeLimit {
        case_type: CaseType,
        committed: TimeLimit,
    },
    /// A limit exceeds `LIMIT_DAYS_MAX`.
    LimitTooLong { what: String, days: u16 },
    /// A never-more (只减不增) increase without a legal basis.
    Increase(Increase),
}

/// One increase found by the never-more comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Increase {
    MaterialAdded {
        code: MaterialCode,
        name: String,
    },
    MaterialNowRequired {
        code: MaterialCode,
        name: String,
    },
    MaterialOptionRemoved {
        code: MaterialCode,
        option: MaterialCode,
    },
    MaterialCountRaised {
        code: MaterialCode,
        option: MaterialCode,
    },
    StepAdded {
        code: StepCode,
        name: String,
    },
    StepLimitRaised {
        code: StepCode,
        from: Option<TimeLimit>,
        to: Option<TimeLimit>,
    },
    StatutoryLimitRaised {
        from: TimeLimit,
        to: TimeLimit,
    },
    CommittedLimitRaised {
        from: TimeLimit,
        to: TimeLimit,
    },
    NoticeLengthened {
        code: StepCode,
        from: u16,
        to: u16,
    },
    NoticeNoLongerCounted {
        code: StepCode,
    },
    FeeRaised {
        from_fen: u64,
        to_fen: u64,
    },
}

impl CatalogProblem {
    /// A sentence for the author, in Chinese.
    pub fn describe_zh(&self) -> String {
        match self {
            CatalogProblem::NotOwner { owner, author } => {
                format!("事项归属{owner}，{author}无权修订")
            }
            CatalogProblem::Version { expected, got } => {
                format!("版本号应为{expected}，实际为{got}")
            }
            CatalogProblem::Field { field, reason } => format!("字段{field}：{reason}"),
            CatalogProblem::DuplicateCode { what, code } => format!("{what}编码“{code}”重复"),
            CatalogProblem::CommittedOverStatutory {
                committed,
                statutory,
            } => format!(
                "承诺办结时限（{}）不得超过法定办结时限（{}）",
                committed.describe_zh(),
                statutory.describe_zh()
            ),
            CatalogProblem::CaseTypeLimit {
                case_type,
                committed,
            } => format!(
                "办件类型为{}，承诺办结时限却为{}",
                case_type.name_zh(),
                committed.describe_zh()
            ),
            CatalogProblem::LimitTooLong { what, days } => {
                format!("{what}时限{days}个工作日超过上限{LIMIT_DAYS_MAX}")
            }
            CatalogProblem::Increase(i) => {
                format!("只减不增：{}，且未注明法律依据", i.describe_zh())
            }
        }
    }
}

impl Increase {
    pub fn describe_zh(&self) -> String {
        let limit = |l: &Option<TimeLimit>| l.map_or("无".to_owned(), |l| l.describe_zh());
        match self {
            Increase::MaterialAdded { name, .. } => format!("新增申报材料“{name}”"),
            Increase::MaterialNowRequired { name, .. } => format!("申报材料“{name}”改为必备"),
            Increase::MaterialOptionRemoved { code, option } => {
                format!("申报材料“{code}”删去了可选项“{option}”")
            }
            Increase::MaterialCountRaised { code, option } => {
                format!("申报材料“{code}”中“{option}”的份数增加")
            }
            Increase::StepAdded { name, .. } => format!("新增办理环节“{name}”"),
            Increase::StepLimitRaised { code, from, to } => {
                format!("环节“{code}”时限由{}延长为{}", limit(from), limit(to))
            }
            Increase::StatutoryLimitRaised { from, to } => format!(
                "法定办结时限由{}延长为{}",
                from.describe_zh(),
                to.describe_zh()
            ),
            Increase::CommittedLimitRaised { from, to } => format!(
                "承诺办结时限由{}延长为{}",
                from.describe_zh(),
                to.describe_zh()
            ),
            Increase::NoticeLengthened { code, from, to } => {
                format!("环节“{code}”公示期由{from}个工作日延长为{to}个工作日")
            }
            Increase::NoticeNoLongerCounted { code } => {
                format!("环节“{code}”公示期改为不计入办理时限")
            }
            Increase::FeeRaised { from_fen, to_fen } => {
                format!("收费由{from_fen}分提高为{to_fen}分")
            }
        }
    }
}

/// The never-more comparison (只减不增) of a revision with the previous version, item by
/// item: required materials by material code, steps by step code, statutory, committed and
/// step limits, 公示 length and counting, and the fee. Returns every increase.
pub fn never_more(previous: &ItemVersion, revision: &ItemVersion) -> Vec<Increase> {
    let mut out = Vec::new();
    let before: BTreeMap<&MaterialCode, &MaterialRequirement> =
        previous.materials.iter().map(|m| (&m.code, m)).collect();
    for req in revision.materials.iter().filter(|m| m.required) {
        let Some(old) = before.get(&req.code) else {
            out.push(Increase::MaterialAdded {
                code: req.code.clone(),
                name: req.name.clone(),
            });
            continue;
        };
        if !old.required {
            out.push(Increase::MaterialNowRequired {
                code: req.code.clone(),
                name: req.name.clone(),
            });
        }
        let new_options: BTreeMap<&MaterialCode, &Material> =
            req.options.iter().map(|o| (&o.code, o)).collect();
        for option in &old.options {
            match new_options.get(&option.code) {
                None => out.push(Increase::MaterialOptionRemoved {
                    code: req.code.clone(),
                    option: option.code.clone(),
                }),
                Some(new) if new.originals > option.originals || new.copies > option.copies => out
                    .push(Increase::MaterialCountRaised {
                        code: req.code.clone(),
                        option: option.code.clone(),
                    }),
                Some(_) => {}
            }
        }
    }
    let steps_before: BTreeMap<&StepCode, &Step> =
        previous.steps.iter().map(|s| (&s.code, s)).collect();
    for step in &revision.steps {
        let Some(old) = steps_before.get(&step.code) else {
            out.push(Increase::StepAdded {
                code: step.code.clone(),
                name: step.name.clone(),
            });
            continue;
        };
        let raised = match (old.limit, step.limit) {
            (Some(a), Some(b)) => b > a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if raised {
            out.push(Increase::StepLimitRaised {
                code: step.code.clone(),
                from: old.limit,
                to: step.limit,
            });
        }
        if let (Some(a), Some(b)) = (old.notice, step.notice) {
            if b.working_days > a.working_days {
                out.push(Increase::NoticeLengthened {
                    code: step.code.clone(),
                    from: a.working_days,
                    to: b.working_days,
                });
            }
            if a.counts_toward_limit && !b.counts_toward_limit {
                out.push(Increase::NoticeNoLongerCounted {
                    code: step.code.clone(),
                });
            }
        }
    }
    if revision.statutory_limit > previous.statutory_limit {
        out.push(Increase::StatutoryLimitRaised {
            from: previous.statutory_limit,
            to: revision.statutory_limit,
        });
    }
    if revision.committed_limit > previous.committed_limit {
        out.push(Increase::CommittedLimitRaised {
            from: previous.committed_limit,
            to: revision.committed_limit,
        });
    }
    let fee = |f: &Fee| if f.charged { f.amount_fen } else { 0 };
    if fee(&revision.fee) > fee(&previous.fee) {
        out.push(Increase::FeeRaised {
            from_fen: fee(&previous.fee),
            to_fen: fee(&revision.fee),
        });
    }
    out
}

/// Checks an item version on its own (no history): fields, codes, limits, case type.
pub fn validate_item(item: &ItemVersion) -> Vec<CatalogProblem> {
    let mut out = Vec::new();
    let mut text = |field: &'static str, value: &str, max: usize, required: bool| {
        let n = value.chars().count();
        if required && value.trim().is_empty() {
            out.push(CatalogProblem::Field {
                field,
                reason: "不能为空".to_owned(),
            });
        } else if n > max {
            out.push(CatalogProblem::Field {
                field,
                reason: format!("长度{n}超过上限{max}"),
            });
        }
    };
    text("name", &item.name, ITEM_NAME_CHARS_MAX, true);
    text("code", &item.code.0, CODE_CHARS_MAX, true);
    text("catalog_code", &item.catalog_code, CODE_CHARS_MAX, false);
    text(
        "handle_item_code",
        &item.handle_item_code,
        CODE_CHARS_MAX,
        false,
    );
    text(
        "department.name",
        &item.department.name,
        ITEM_NAME_CHARS_MAX,
        true,
    );
    if !is_dept_key(&item.department.key.0) {
        out.push(CatalogProblem::Field {
            field: "department.key",
            reason: "部门代号应为1至32位小写字母、数字或连字符".to_owned(),
        });
    }
    if let Some(code) = &item.department.credit_code
        && code.chars().count() != 18
    {
        out.push(CatalogProblem::Field {
            field: "department.credit_code",
            reason: "统一社会信用代码应为18位".to_owned(),
        });
    }
    if item.steps.is_empty() {
        out.push(CatalogProblem::Field {
            field: "steps",
            reason: "办事程序至少包含一个环节".to_owned(),
        });
    }
    for step in &item.steps {
        if let Some(key) = &step.department
            && !is_dept_key(&key.0)
        {
            out.push(CatalogProblem::Field {
                field: "steps.department",
                reason: format!("环节“{}”的部门代号无效", step.code),
            });
        }
        if step.action == StepAction::Notice && step.notice.is_none() {
            out.push(CatalogProblem::Field {
                field: "steps.notice",
                reason: format!("公示环节“{}”缺少公示期", step.code),
            });
        }
        for (what, days) in [
            ("环节", step.limit.map_or(0, TimeLimit::days)),
            ("公示", step.notice.map_or(0, |n| n.working_days)),
        ] {
            if days > LIMIT_DAYS_MAX {
                out.push(CatalogProblem::LimitTooLong {
                    what: format!("{what}“{}”", step.code),
                    days,
                });
            }
        }
    }
    for req in &item.materials {
        if req.options.is_empty() {
            out.push(CatalogProblem::Field {
                field: "materials.options",
                reason: format!("材料“{}”没有可提交的材料", req.name),
            });
        }
    }
    let mut seen = BTreeSet::new();
    // Requirement codes are unique, and so are option codes (a single-option requirement
    // may share its option's code).
    for req in &item.materials {
        if !seen.insert(&req.code) {
            out.push(CatalogProblem::DuplicateCode {
                what: "材料",
                code: req.code.0.clone(),
            });
        }
    }
    let option_count: usize = item.materials.iter().map(|m| m.options.len()).sum();
    let distinct_options: BTreeSet<_> = item
        .materials
        .iter()
        .flat_map(|m| m.options.iter().map(|o| &o.code))
        .collect();
    if distinct_options.len() != option_count {
        out.push(CatalogProblem::DuplicateCode {
            what: "材料",
            code: "(可选项)".to_owned(),
        });
    }
    let mut steps = BTreeSet::new();
    for step in &item.steps {
        if !steps.insert(&step.code) {
            out.push(CatalogProblem::DuplicateCode {
                what: "环节",
                code: step.code.0.clone(),
            });
        }
    }
    for (what, limit) in [
        ("法定办结", item.statutory_limit),
        ("承诺办结", item.committed_limit),
    ] {
        if limit.days() > LIMIT_DAYS_MAX {
            out.push(CatalogProblem::LimitTooLong {
                what: what.to_owned(),
                days: limit.days(),
            });
        }
    }
    if item.committed_limit > item.statutory_limit {
        out.push(CatalogProblem::CommittedOverStatutory {
            committed: item.committed_limit,
            statutory: item.statutory_limit,
        });
    }
    let immediate = item.committed_limit == TimeLimit::Immediate;
    if (item.case_type == CaseType::Immediate) != immediate {
        out.push(CatalogProblem::CaseTypeLimit {
            case_type: item.case_type,
            committed: item.committed_limit,
        });
    }
    out
}

fn is_dept_key(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every version of every item a node knows. Old versions stay while cases refer to them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    items: BTreeMap<(NodeId, ItemCode), BTreeMap<u32, ItemVersion>>,
}

impl Catalog {
    /// Checks a revision authored by `author` against the latest version of its item: the
    /// owner must author it, its version must be the next, the item must be valid on its own,
    /// and the never-more rule must hold unless it names a legal basis. Returns every problem.
    pub fn check_revision(&self, author: NodeId, revision: &ItemVersion) -> Vec<CatalogProblem> {
        let mut out = Vec::new();
        if author != revision.owner {
            out.push(CatalogProblem::NotOwner {
                owner: revision.owner,
                author,
            });
        }
        let previous = self.latest(revision.owner, &revision.code);
        let expected = previous.map_or(1, |p| p.version.saturating_add(1));
        if revision.version != expected {
            out.push(CatalogProblem::Version {
                expected,
                got: revision.version,
            });
        }
        out.extend(validate_item(revision));
        let has_basis = revision
            .legal_basis
            .as_deref()
            .is_some_and(|b| !b.trim().is_empty());
        if let Some(previous) = previous
            && !has_basis
        {
            out.extend(
                never_more(previous, revision)
                    .into_iter()
                    .map(CatalogProblem::Increase),
            );
        }
        out
    }

    /// Applies a revision after `check_revision` found nothing. Applying the same version
    /// again is a no-op (duplicates change nothing).
    pub fn apply(
        &mut self,
        author: NodeId,
        revision: ItemVersion,
    ) -> Result<&ItemVersion, Vec<CatalogProblem>> {
        let key = (revision.owner, revision.code.clone());
        let version = revision.version;
        let already = self
            .items
            .get(&key)
            .and_then(|v| v.get(&version))
            .is_some_and(|existing| *existing == revision);
        if !already {
            let problems = self.check_revision(author, &revision);
            if !problems.is_empty() {
                return Err(problems);
            }
        }
        let versions = self.items.entry(key).or_default();
        Ok(versions.entry(version).or_insert(revision))
    }

    pub fn latest(&self, owner: NodeId, code: &ItemCode) -> Option<&ItemVersion> {
        self.items
            .get(&(owner, code.clone()))
            .and_then(|v| v.values().next_back())
    }

    pub fn get(&self, key: &ItemVersionKey) -> Option<&ItemVersion> {
        self.items
            .get(&(key.owner, key.code.clone()))
            .and_then(|v| v.get(&key.version))
    }

    /// The latest version of every item.
    pub fn latest_items(&self) -> impl Iterator<Item = &ItemVersion> {
        self.items.values().filter_map(|v| v.values().next_back())
    }

    /// The latest version of the item with this code, whoever owns it (codes are unique in
    /// practice; the first owner in code order wins if not).
    pub fn find(&self, code: &str) -> Option<&ItemVersion> {
        self.latest_items().find(|i| i.code.0 == code)
    }

    /// Every version held, oldest first per item.
    pub fn all_versions(&self) -> impl Iterator<Item = &ItemVersion> {
        self.items.values().flat_map(|v| v.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{self, SampleOptions};

    fn loaded() -> (Catalog, ItemVersion) {
        let mut catalog = Catalog::default();
        let aid = sample::medical_aid(SampleOptions::default());
        catalog.apply(aid.owner, aid.clone()).unwrap();
        (catalog, aid)
    }

    fn next(aid: &ItemVersion, change: impl FnOnce(&mut ItemVersion)) -> ItemVersion {
        let mut rev = aid.clone();
        rev.version += 1;
        change(&mut rev);
        rev
    }

    fn add_material(rev: &mut ItemVersion) {
        rev.materials.push(MaterialRequirement {
            code: MaterialCode("sqb".to_owned()),
            name: "医疗救助申请表".to_owned(),
            required: true,
            options: vec![Material {
                code: MaterialCode("sqb".to_owned()),
                name: "医疗救助申请表".to_owned(),
                originals: 1,
                copies: 0,
            }],
        });
    }

    #[test]
    fn adding_a_material_needs_a_legal_basis() {
        let (mut catalog, aid) = loaded();
        let rev = next(&aid, add_material);
        let problems = catalog.apply(aid.owner, rev.clone()).unwrap_err();
        assert_eq!(
            problems,
            vec![CatalogProblem::Increase(Increase::MaterialAdded {
                code: MaterialCode("sqb".to_owned()),
                name: "医疗救助申请表".to_owned(),
            })]
        );
        assert!(
            problems[0]
                .describe_zh()
                .contains("新增申报材料“医疗救助申请表”")
        );
        assert_eq!(catalog.latest(aid.owner, &aid.code).unwrap().version, 1);

        let basis = "《社会救助暂行办法》第二十九条（示例）";
        let with_basis = next(&aid, |r| {
            add_material(r);
            r.legal_basis = Some(basis.to_owned());
        });
        let stored = catalog.apply(aid.owner, with_basis).unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(stored.legal_basis.as_deref(), Some(basis));
        // The old version stays for the cases accepted under it.
        assert!(catalog.get(&aid.key()).is_some());
    }

    #[test]
    fn shortening_the_limit_is_accepted() {
        let (mut catalog, aid) = loaded();
        let rev = next(&aid, |r| {
            r.committed_limit = TimeLimit::WorkingDays(8);
        });
        assert_eq!(catalog.apply(aid.owner, rev).unwrap().version, 2);
    }

    /// Each change, expected increases (as their Chinese description's key phrase).
    #[test]
    fn never_more_table() {
        type Change = fn(&mut ItemVersion);
        let cases: Vec<(&str, Change, Vec<&str>)> = vec![
            ("no change", |_| {}, vec![]),
            (
                "optional material added",
                |r| {
                    add_material(r);
                    if let Some(m) = r.materials.last_mut() {
                        m.required = false;
                    }
                },
                vec![],
            ),
            (
                "material removed",
                |r| {
                    r.materials.remove(0);
                },
                vec![],
            ),
            (
                "option removed from a one-of",
                |r| {
                    r.materials[1].options.pop();
                },
                vec!["删去了可选项“czybpj”"],
            ),
            (
                "option added to a one-of",
                |r| {
                    let mut extra = r.materials[1].options[0].clone();
                    extra.code = MaterialCode("syxpj".to_owned());
                    r.materials[1].options.push(extra);
                },
                vec![],
            ),
            (
                "more copies",
                |r| {
                    r.materials[1].options[0].copies = 2;
                },
                vec!["份数增加"],
            ),
            (
                "step added",
                |r| {
                    let mut s = r.steps[1].clone();
                    s.code = StepCode("fh".to_owned());
                    s.name = "复核".to_owned();
                    r.steps.insert(2, s);
                },
                vec!["新增办理环节“复核”"],
            ),
            (
                "step removed",
                |r| {
                    r.steps.remove(1);
                },
                vec![],
            ),
            (
                "step limit raised",
                |r| {
                    r.steps[3].limit = Some(TimeLimit::WorkingDays(6));
                },
                vec!["环节“sp”时限由5个工作日延长为6个工作日"],
            ),
            (
                "step limit dropped",
                |r| {
                    r.steps[3].limit = None;
                },
                vec!["环节“sp”时限由5个工作日延长为无"],
            ),
            (
                "longer notice and no longer counted",
                |r| {
                    r.steps[2].notice = Some(NoticeRule {
                        working_days: 10,
                        counts_toward_limit: false,
                    });
                },
                vec!["公示期由7个工作日延长为10个工作日"],
            ),
            (
                "both limits raised",
                |r| {
                    r.statutory_limit = TimeLimit::WorkingDays(20);
                    r.committed_limit = TimeLimit::WorkingDays(15);
                },
                vec![
                    "法定办结时限由10个工作日延长为20个工作日",
                    "承诺办结时限由10个工作日延长为15个工作日",
                ],
            ),
            (
                "fee introduced",
                |r| {
                    r.fee = Fee {
                        charged: true,
                        amount_fen: 500,
                        basis: "x".to_owned(),
                    };
                },
                vec!["收费由0分提高为500分"],
            ),
        ];
        let aid = sample::medical_aid(SampleOptions::default());
        for (name, change, expect) in cases {
            let rev = next(&aid, change);
            let got: Vec<String> = never_more(&aid, &rev)
                .iter()
                .map(Increase::describe_zh)
                .collect();
            assert_eq!(got.len(), expect.len(), "{name}: {got:?}");
            for (g, e) in got.iter().zip(&expect) {
                assert!(g.contains(e), "{name}: {g} lacks {e}");
            }
        }
    }

    #[test]
    fn counted_notice_becoming_uncounted_is_an_increase() {
        let aid = sample::medical_aid(SampleOptions {
            notice_counts_toward_limit: true,
            ..SampleOptions::default()
        });
        let rev = next(&aid, |r| {
            if let Some(n) = r.steps[2].notice.as_mut() {
                n.counts_toward_limit = false;
            }
        });
        assert_eq!(
            never_more(&aid, &rev),
            vec![Increase::NoticeNoLongerCounted {
                code: StepCode("gs".to_owned())
            }]
        );
    }

    #[test]
    fn revisions_report_every_problem_at_once() {
        let (catalog, aid) = loaded();
        let other = crate::division::DivisionCode::parse("430421105000").unwrap();
        let mut rev = next(&aid, add_material);
        rev.version = 5;
        rev.name = String::new();
        rev.committed_limit = TimeLimit::WorkingDays(12);
        rev.steps.push(rev.steps[0].clone());
        let problems = catalog.check_revision(other, &rev);
        let text: Vec<String> = problems.iter().map(CatalogProblem::describe_zh).collect();
        for needle in [
            "无权修订",
            "版本号应为2，实际为5",
            "字段name：不能为空",
            "环节编码“cs”重复",
            "承诺办结时限（12个工作日）不得超过法定办结时限（10个工作日）",
            "新增申报材料",
            "承诺办结时限由10个工作日延长为12个工作日",
        ] {
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "{needle} not in {text:?}"
            );
        }
        assert_eq!(problems.len(), 7, "{text:?}");
    }

    #[test]
    fn immediate_items_must_have_immediate_limits() {
        let mut senior = sample::senior_card(SampleOptions::default());
        senior.committed_limit = TimeLimit::WorkingDays(1);
        senior.statutory_limit = TimeLimit::WorkingDays(1);
        let problems = validate_item(&senior);
        assert!(matches!(
            problems.as_slice(),
            [CatalogProblem::CaseTypeLimit { .. }]
        ));
    }

    #[test]
    fn reapplying_the_same_version_is_a_no_op() {
        let (mut catalog, aid) = loaded();
        assert!(catalog.apply(aid.owner, aid.clone()).is_ok());
        assert_eq!(catalog.all_versions().count(), 1);
        let mut changed = aid.clone();
        changed.name = "改名".to_owned();
        assert!(
            catalog.apply(aid.owner, changed).is_err(),
            "same version, other content"
        );
    }

    #[test]
    fn codes_round_trip_through_national_digits() {
        for code in ["01", "05", "10", "20"] {
            assert_eq!(ItemType::from_code(code).map(ItemType::code), Some(code));
        }
        assert_eq!(ItemType::from_code("11"), None);
        for n in 1..=7 {
            assert_eq!(UseLevel::from_code(n).map(UseLevel::code), Some(n));
        }
        assert_eq!(UseLevel::from_code(0), None);
        assert_eq!(UseLevel::from_code(8), None);
        assert_eq!(CaseType::from_code(3), None);
    }
}
