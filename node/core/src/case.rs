//! Cases (办件) as a pure state machine: acceptance, the item version's steps, custody
//! handoffs (转报) and receipts (签收), return for supplement (退回补正), requests from
//! non-custodians, assistance (协办), corrections, extensions, pauses, completion and the
//! applicant's evaluation.
//!
//! Invariants:
//! * Single writer: every event after acceptance is authored by the current custodian; a
//!   handoff makes the receiver custodian the moment it is applied, and the receiver's first
//!   event is its receipt. Custody is one unbroken chain.
//! * Order: events are applied in case sequence; `apply` validates an event completely before
//!   it changes anything, so a refused event leaves the case as it was.
//! * Steps are done in the item version's order, each by a custodian at the step's tier and of
//!   the step's department; the case follows the version it was accepted under.
//! * Deadlines are carried by the events that change them, computed once by their writer.
//! * Requests never change a case: only the custodian's events do.
//! * The audience only grows: accepting village, every custodian so far, and the home village
//!   once a notice is delivered there.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::catalog::{
    CaseType, ItemVersion, ItemVersionKey, MaterialCode, NodeId, StepAction, StepCode,
};
use crate::deadline::Deadline;
use crate::division::Tier;
use crate::numbering::CaseNumber;
use crate::person::{Applicant, PersonName};
use crate::routing::Custodian;

/// Position of an event in its case's sequence; the acceptance is 1.
pub type CaseSeq = u64;

/// Most events one case may hold: a real case has a few dozen; more means a loop or a broken
/// peer, and the case stops taking events (quarantine material for a later issue).
pub const CASE_EVENTS_MAX: usize = 512;
/// Longest free text (opinions, reasons, objections), in characters.
pub const TEXT_CHARS_MAX: usize = 2000;
/// Longest extension (延长审批) one event may grant, in working days.
pub const EXTENSION_DAYS_MAX: u16 = 60;

/// The person acting on the applicant's behalf (代办).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Helper {
    pub name: PersonName,
    /// 与申请人关系 (亲属, 村干部, 志愿者 …).
    pub relation: String,
}

/// What the acceptance slip (受理单) says; carried by the first event of every case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub item: ItemVersionKey,
    pub item_name: String,
    pub case_type: CaseType,
    pub applicant: Applicant,
    pub helper: Option<Helper>,
    /// Materials received, by code.
    pub materials: BTreeSet<MaterialCode>,
    /// The accepting clerk (受理人员, 首问责任人).
    pub clerk: String,
    pub deadline: Deadline,
    /// The resident's home village node, when the topology has one.
    pub home_village: Option<NodeId>,
}

/// Who changes a field, and to what, in a correction of a clerk's typo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Correction {
    ApplicantName(PersonName),
    Helper(Option<Helper>),
    /// A step's opinion text, identified by the event that carried it.
    Opinion(String),
}

/// Identity of a request: the node that raised it and its own counter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub origin: NodeId,
    pub seq: u64,
}

impl std::fmt::Display for RequestId {
    /// `ORIGIN-SEQ` ("430421105204-3").
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.origin, self.seq)
    }
}

impl std::str::FromStr for RequestId {
    type Err = String;

    /// `ORIGIN-SEQ`, as `Display` writes it.
    fn from_str(s: &str) -> Result<RequestId, String> {
        let (origin, seq) = s
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("申请编号“{s}”应为“节点编码-序号”"))?;
        let origin = crate::division::DivisionCode::parse(origin)
            .map_err(|e| format!("申请编号“{s}”：{}", e.reason_zh()))?;
        let seq = seq
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("申请编号“{s}”的序号应为正整数"))?;
        Ok(RequestId { origin, seq })
    }
}

/// What a non-custodian asks of the custodian.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    /// 撤回申请.
    Withdrawal { reason: String },
    /// 补充材料: material that arrived elsewhere.
    Supplement {
        materials: BTreeSet<MaterialCode>,
        arrived: NaiveDate,
    },
    /// 公示异议, taken at the home village while the notice runs.
    Objection { text: String },
    /// 协办意见: another village or department contributes without taking custody.
    Opinion { text: String },
}

impl RequestKind {
    /// A short stable name (for JSON).
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestKind::Withdrawal { .. } => "withdrawal",
            RequestKind::Supplement { .. } => "supplement",
            RequestKind::Objection { .. } => "objection",
            RequestKind::Opinion { .. } => "opinion",
        }
    }

    /// One line in Chinese for a desk.
    pub fn describe_zh(&self) -> String {
        match self {
            RequestKind::Withdrawal { reason } => format!("申请撤回：{reason}"),
            RequestKind::Supplement { materials, arrived } => {
                let codes: Vec<&str> = materials.iter().map(|m| m.0.as_str()).collect();
                format!("补充材料（{arrived}收到）：{}", codes.join("、"))
            }
            RequestKind::Objection { text } => format!("公示异议：{text}"),
            RequestKind::Opinion { text } => format!("协办意见：{text}"),
        }
    }
}

/// A request: outside the case sequence, addressed to the custodian, passed along the custody
/// chain by former custodians.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub case: CaseNumber,
    pub from: Custodian,
    pub operator: String,
    pub at: NaiveDateTime,
    pub kind: RequestKind,
}

/// The body of a case event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseEventBody {
    /// 受理.
    Accepted(Box<Acceptance>),
    /// A step of the process done (初审, 审核, 审批, 发放).
    StepDone {
        step: StepCode,
        action: StepAction,
        opinion: String,
    },
    /// 公示 begins; the notice is delivered to `delivered_to` (the home village).
    NoticeStarted {
        step: StepCode,
        from: NaiveDate,
        ends: NaiveDate,
        delivered_to: Vec<NodeId>,
        /// Present when the notice does not count toward the limit (a pause).
        deadline: Option<Deadline>,
    },
    /// 公示 ends (the custodian's timer, on or after `ends`).
    NoticeEnded { step: StepCode, objections: u32 },
    /// 转报: custody passes to `to` the moment this is applied.
    Forwarded { to: Custodian, reason: String },
    /// 签收: the receiver's receipt; its first event as custodian.
    Received,
    /// 退回补正: custody passes back to the accepting village for material.
    Returned {
        missing: Vec<String>,
        reason: String,
    },
    /// Material arrived: after a return, the clock restarts the day after `arrived`.
    Supplemented {
        materials: BTreeSet<MaterialCode>,
        arrived: NaiveDate,
        request: Option<RequestId>,
        deadline: Option<Deadline>,
    },
    /// 协办: an opinion contributed without custody, accepted from a request.
    Assisted {
        by: Custodian,
        opinion: String,
        request: RequestId,
    },
    /// A 公示 objection accepted from a request.
    ObjectionRecorded { request: RequestId, text: String },
    /// A request the custodian declined, with why (kept for the record).
    RequestDeclined { request: RequestId, reason: String },
    /// A correction of an earlier event's typo; the original stays in the log.
    Corrected {
        of: CaseSeq,
        correction: Correction,
        reason: String,
    },
    /// 延长审批.
    Extended {
        working_days: u16,
        reason: String,
        approved_by: String,
        deadline: Deadline,
    },
    /// The clock stops (hearing, inspection …).
    Paused { reason: String, from: NaiveDate },
    /// The clock runs again; the deadline grows by the paused working days.
    Resumed { on: NaiveDate, deadline: Deadline },
    /// A provisional deadline confirmed once the calendar covers it.
    DeadlineConfirmed { deadline: Deadline },
    /// 不予受理 / 不予批准: the case ends refused.
    Refused {
        step: Option<StepCode>,
        reason: String,
    },
    /// The case ends withdrawn, from the applicant's request.
    Withdrawn { request: RequestId },
    /// 办结.
    Completed { result: String },
    /// 评价: 1 非常满意 … 5 非常不满意.
    Evaluated { satisfaction: u8 },
    /// 改派: the county (the lowest common ancestor of every party of a case in its
    /// territory) hands a lost custodian's case to another, after the lost one's certificate
    /// is revoked. The only event not written by the custodian; the new custodian signs for
    /// it like a handoff.
    Reassigned {
        from: Custodian,
        to: Custodian,
        reason: String,
    },
}

/// One case event: who wrote it, when, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseEvent {
    pub case: CaseNumber,
    pub seq: CaseSeq,
    /// The custodian that wrote it (the accepting village for the acceptance).
    pub author: Custodian,
    /// The person who acted (首问责任制: every event names its operator).
    pub operator: String,
    /// Beijing time.
    pub at: NaiveDateTime,
    pub body: CaseEventBody,
}

/// Where a case stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CaseStatus {
    /// 办理中.
    Processing,
    /// 公示中.
    InNotice,
    /// 退回补正, waiting for material.
    AwaitingSupplement,
    /// 暂停计时.
    Paused,
    /// 已办结.
    Completed,
    /// 不予办理.
    Refused,
    /// 已撤回.
    Withdrawn,
}

impl CaseStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CaseStatus::Completed | CaseStatus::Refused | CaseStatus::Withdrawn
        )
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            CaseStatus::Processing => "办理中",
            CaseStatus::InNotice => "公示中",
            CaseStatus::AwaitingSupplement => "退回补正中",
            CaseStatus::Paused => "暂停计时",
            CaseStatus::Completed => "已办结",
            CaseStatus::Refused => "不予办理",
            CaseStatus::Withdrawn => "已撤回",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Processing => "processing",
            CaseStatus::InNotice => "in_notice",
            CaseStatus::AwaitingSupplement => "awaiting_supplement",
            CaseStatus::Paused => "paused",
            CaseStatus::Completed => "completed",
            CaseStatus::Refused => "refused",
            CaseStatus::Withdrawn => "withdrawn",
        }
    }
}

/// Why an event cannot be applied (or a command cannot be carried out).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("case {case}: expected event {expected}, got {got}")]
    Sequence {
        case: String,
        expected: CaseSeq,
        got: CaseSeq,
    },
    #[error("event belongs to case {got}, not {case}")]
    OtherCase { case: String, got: String },
    #[error("{author} is not the custodian of the case ({custodian} is)")]
    NotCustodian {
        author: Custodian,
        custodian: Custodian,
    },
    #[error("{custodian} must sign for the case (receipt) before acting on it")]
    NotReceived { custodian: Custodian },
    #[error("the case was already signed for by {custodian}")]
    AlreadyReceived { custodian: Custodian },
    #[error("the case is {status:?} and takes no more events of this kind")]
    Status { status: CaseStatus },
    #[error("step {got} is out of order: the next step is {expected:?}")]
    StepOrder {
        expected: Option<String>,
        got: String,
    },
    #[error("step {step} is done at {step_tier} tier, not by {author}")]
    StepTier {
        step: String,
        step_tier: Tier,
        author: Custodian,
    },
    #[error("step {step} belongs to department {department:?}, not {author}")]
    StepDepartment {
        step: String,
        department: Option<String>,
        author: Custodian,
    },
    #[error("step {step} is a {expected:?} step, not {got:?}")]
    StepAction {
        step: String,
        expected: StepAction,
        got: StepAction,
    },
    #[error("the notice runs until {ends}; it cannot end on {on}")]
    NoticeRunning { ends: NaiveDate, on: NaiveDate },
    #[error("the case is not in notice")]
    NotInNotice,
    #[error("the case cannot be handed to its own custodian {to}")]
    ForwardToSelf { to: Custodian },
    #[error("{what} is missing or invalid: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the case holds {CASE_EVENTS_MAX} events already")]
    TooManyEvents,
    #[error("the first event of a case must be its acceptance")]
    NotAcceptance,
    #[error("the acceptance names item {got:?}, not {expected:?}")]
    ItemMismatch {
        expected: ItemVersionKey,
        got: ItemVersionKey,
    },
    #[error("request {0:?} was already decided")]
    RequestDecided(RequestId),
}

impl CaseError {
    /// A sentence a clerk or reviewer can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            CaseError::Sequence { expected, got, .. } => {
                format!("办件事件顺序不符：应为第{expected}条，收到第{got}条")
            }
            CaseError::OtherCase { .. } => "事件不属于本办件".to_owned(),
            CaseError::NotCustodian { custodian, .. } => {
                format!("本办件当前由{custodian}办理，本机无权操作")
            }
            CaseError::NotReceived { .. } => "请先签收该办件再办理".to_owned(),
            CaseError::AlreadyReceived { .. } => "该办件已签收".to_owned(),
            CaseError::Status { status } => {
                format!("办件状态为“{}”，不能进行此操作", status.name_zh())
            }
            CaseError::StepOrder { expected, got } => match expected {
                Some(e) => format!("办理环节顺序不符：下一环节为“{e}”，不是“{got}”"),
                None => "办理环节均已完成".to_owned(),
            },
            CaseError::StepTier {
                step, step_tier, ..
            } => {
                format!("环节“{step}”应由{}办理", step_tier.name_zh())
            }
            CaseError::StepDepartment {
                step, department, ..
            } => format!(
                "环节“{step}”应由部门“{}”办理",
                department.as_deref().unwrap_or("本级")
            ),
            CaseError::StepAction { step, expected, .. } => {
                format!("环节“{step}”为“{}”环节", expected.name_zh())
            }
            CaseError::NoticeRunning { ends, .. } => format!("公示期至{ends}，尚未届满"),
            CaseError::NotInNotice => "办件不在公示期".to_owned(),
            CaseError::ForwardToSelf { .. } => "不能转报给本机".to_owned(),
            CaseError::Invalid { what, reason } => format!("{what}无效：{reason}"),
            CaseError::TooManyEvents => "办件事件数已达上限，请联系县级管理员".to_owned(),
            CaseError::NotAcceptance => "办件的第一条事件必须是受理".to_owned(),
            CaseError::ItemMismatch { .. } => "受理事项与事项版本不符".to_owned(),
            CaseError::RequestDecided(_) => "该申请已处理".to_owned(),
        }
    }
}

/// A case: the fold of its events over the item version it was accepted under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub number: CaseNumber,
    pub acceptance: Acceptance,
    /// The accepting village (first custodian).
    pub accepted_by: Custodian,
    pub accepted_at: NaiveDateTime,
    /// Current view of the applicant (after corrections).
    pub applicant: Applicant,
    pub helper: Option<Helper>,
    pub custodian: Custodian,
    /// Whether the current custodian has signed for the case.
    pub received: bool,
    /// Every custodian in order, the accepting village first (repeats when custody returns).
    pub custody_chain: Vec<Custodian>,
    pub audience: BTreeSet<NodeId>,
    /// Index into the item version's steps of the next step to do.
    pub next_step: usize,
    pub status: CaseStatus,
    /// Status before a pause, to resume to.
    paused_from: Option<(CaseStatus, NaiveDate)>,
    pub deadline: Deadline,
    pub notice_ends: Option<NaiveDate>,
    pub objections: u32,
    pub returns: u32,
    pub evaluation: Option<u8>,
    pub decided_requests: BTreeSet<RequestId>,
    pub events: Vec<CaseEvent>,
}

/// Context an event is checked in: the item version the case follows.
pub struct Rules<'a> {
    pub item: &'a ItemVersion,
}

impl Case {
    /// Starts a case from its acceptance event (sequence 1).
    pub fn open(event: CaseEvent, rules: &Rules<'_>) -> Result<Case, CaseError> {
        let CaseEventBody::Accepted(acceptance) = &event.body else {
            return Err(CaseError::NotAcceptance);
        };
        if event.seq != 1 {
            return Err(CaseError::Sequence {
                case: event.case.to_string(),
                expected: 1,
                got: event.seq,
            });
        }
        if acceptance.item != rules.item.key() {
            return Err(CaseError::ItemMismatch {
                expected: rules.item.key(),
                got: acceptance.item.clone(),
            });
        }
        if event.author.node.tier() != Tier::Village || event.author.node != event.case.node {
            return Err(CaseError::Invalid {
                what: "受理机构",
                reason: format!("{} 不是编号所属的村(社区)便民服务中心", event.author),
            });
        }
        text("受理人员", &event.operator)?;
        let immediate = rules.item.case_type == CaseType::Immediate;
        if immediate && acceptance.deadline.due != event.at.date() {
            return Err(CaseError::Invalid {
                what: "办结期限",
                reason: "即办件的办结期限应为受理当日".to_owned(),
            });
        }
        if !immediate && acceptance.deadline.due <= event.at.date() {
            return Err(CaseError::Invalid {
                what: "办结期限",
                reason: "承诺件的办结期限应晚于受理日".to_owned(),
            });
        }
        let accepted_by = event.author.clone();
        // The acceptance itself is the village's first step when the process opens with
        // one (受理); later steps follow in order.
        let next_step = usize::from(
            rules
                .item
                .steps
                .first()
                .is_some_and(|s| s.action == StepAction::Accept),
        );
        Ok(Case {
            number: event.case,
            accepted_by: accepted_by.clone(),
            accepted_at: event.at,
            applicant: acceptance.applicant.clone(),
            helper: acceptance.helper.clone(),
            custodian: accepted_by.clone(),
            received: true,
            custody_chain: vec![accepted_by.clone()],
            audience: BTreeSet::from([accepted_by.node]),
            next_step,
            status: CaseStatus::Processing,
            paused_from: None,
            deadline: acceptance.deadline,
            notice_ends: None,
            objections: 0,
            returns: 0,
            evaluation: None,
            decided_requests: BTreeSet::new(),
            acceptance: (**acceptance).clone(),
            events: vec![event],
        })
    }

    /// Rebuilds a case from its whole history, in order.
    pub fn replay(events: &[CaseEvent], rules: &Rules<'_>) -> Result<Case, CaseError> {
        let (first, rest) = events.split_first().ok_or(CaseError::NotAcceptance)?;
        let mut case = Case::open(first.clone(), rules)?;
        for e in rest {
            case.apply(e.clone(), rules)?;
        }
        Ok(case)
    }

    /// The sequence number the next event must carry.
    pub fn next_seq(&self) -> CaseSeq {
        self.events.len() as CaseSeq + 1
    }

    pub fn last_seq(&self) -> CaseSeq {
        self.events.len() as CaseSeq
    }

    /// The next step of the process, if any remains.
    pub fn next_step<'i>(&self, rules: &Rules<'i>) -> Option<&'i crate::catalog::Step> {
        rules.item.steps.get(self.next_step)
    }

    /// Whether the case is past its deadline on `today` (a paused clock is not overdue).
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        !self.status.is_terminal()
            && self.status != CaseStatus::Paused
            && self.deadline.is_overdue(today)
    }

    /// A 即办 case: handled on the spot, its deadline fixed at its acceptance day.
    pub fn is_immediate(&self) -> bool {
        self.acceptance.case_type == CaseType::Immediate
    }

    /// Handed off but not yet signed for.
    pub fn in_transit(&self) -> bool {
        !self.received
    }

    /// The custodian after `me` in the chain: where a former custodian passes a request.
    /// `None` when `me` is the custodian or never held the case.
    pub fn successor_of(&self, me: &Custodian) -> Option<&Custodian> {
        if *me == self.custodian {
            return None;
        }
        let last = self.custody_chain.iter().rposition(|c| c == me)?;
        self.custody_chain.get(last + 1)
    }

    /// Checks `event` completely, then applies it. A refused event changes nothing.
    pub fn apply(&mut self, event: CaseEvent, rules: &Rules<'_>) -> Result<(), CaseError> {
        self.check(&event, rules)?;
        self.mutate(event, rules);
        Ok(())
    }

    /// Validates an event against the current state without applying it.
    pub fn check(&self, event: &CaseEvent, rules: &Rules<'_>) -> Result<(), CaseError> {
        if event.case != self.number {
            return Err(CaseError::OtherCase {
                case: self.number.to_string(),
                got: event.case.to_string(),
            });
        }
        if event.seq != self.next_seq() {
            return Err(CaseError::Sequence {
                case: self.number.to_string(),
                expected: self.next_seq(),
                got: event.seq,
            });
        }
        if self.events.len() >= CASE_EVENTS_MAX {
            return Err(CaseError::TooManyEvents);
        }
        if let CaseEventBody::Reassigned { from, to, reason } = &event.body {
            return self.check_reassigned(event, from, to, reason);
        }
        if event.author != self.custodian {
            return Err(CaseError::NotCustodian {
                author: event.author.clone(),
                custodian: self.custodian.clone(),
            });
        }
        text("经办人", &event.operator)?;
        if event.at < self.events.last().map_or(self.accepted_at, |e| e.at) {
            return Err(CaseError::Invalid {
                what: "事件时间",
                reason: "早于上一条事件".to_owned(),
            });
        }
        match (&event.body, self.received) {
            (CaseEventBody::Received, true) => {
                return Err(CaseError::AlreadyReceived {
                    custodian: self.custodian.clone(),
                });
            }
            (CaseEventBody::Received, false) => return Ok(()),
            (_, false) => {
                return Err(CaseError::NotReceived {
                    custodian: self.custodian.clone(),
                });
            }
            _ => {}
        }
        let terminal = self.status.is_terminal();
        let status_err = || CaseError::Status {
            status: self.status,
        };
        match &event.body {
            CaseEventBody::Accepted(_) => Err(CaseError::NotAcceptance),
            CaseEventBody::Received => Ok(()),
            // Checked by `check_reassigned` before custody is.
            CaseEventBody::Reassigned { from, to, reason } => {
                self.check_reassigned(event, from, to, reason)
            }
            CaseEventBody::Evaluated { satisfaction } => {
                if self.status != CaseStatus::Completed || self.evaluation.is_some() {
                    return Err(status_err());
                }
                if !(1..=5).contains(satisfaction) {
                    return Err(CaseError::Invalid {
                        what: "满意度",
                        reason: "应为1（非常满意）至5（非常不满意）".to_owned(),
                    });
                }
                Ok(())
            }
            _ if terminal => Err(status_err()),
            CaseEventBody::StepDone {
                step,
                action,
                opinion,
            } => {
                text_any("意见", opinion)?;
                if !matches!(self.status, CaseStatus::Processing) {
                    return Err(status_err());
                }
                if matches!(action, StepAction::Notice | StepAction::Complete) {
                    return Err(CaseError::Invalid {
                        what: "环节",
                        reason: format!("{}环节有专门的操作", action.name_zh()),
                    });
                }
                self.check_step(step, *action, &event.author, rules)
            }
            CaseEventBody::NoticeStarted {
                step,
                from,
                ends,
                delivered_to,
                deadline,
            } => {
                if self.status != CaseStatus::Processing {
                    return Err(status_err());
                }
                self.check_step(step, StepAction::Notice, &event.author, rules)?;
                if ends < from || *from < event.at.date() {
                    return Err(CaseError::Invalid {
                        what: "公示期",
                        reason: format!("{from}至{ends}"),
                    });
                }
                if delivered_to.len() > 8 {
                    return Err(CaseError::Invalid {
                        what: "公示送达",
                        reason: "送达节点过多".to_owned(),
                    });
                }
                let counted = self
                    .next_step(rules)
                    .and_then(|s| s.notice)
                    .is_some_and(|n| n.counts_toward_limit);
                self.check_new_deadline(deadline.as_ref(), !counted)
            }
            CaseEventBody::NoticeEnded { step, .. } => {
                if self.status != CaseStatus::InNotice {
                    return Err(CaseError::NotInNotice);
                }
                let expected = self.next_step(rules).map(|s| &s.code);
                if expected != Some(step) {
                    return Err(CaseError::StepOrder {
                        expected: expected.map(|c| c.0.clone()),
                        got: step.0.clone(),
                    });
                }
                match self.notice_ends {
                    Some(ends) if event.at.date() < ends => Err(CaseError::NoticeRunning {
                        ends,
                        on: event.at.date(),
                    }),
                    _ => Ok(()),
                }
            }
            CaseEventBody::Forwarded { to, reason } => {
                text_any("转报说明", reason)?;
                if !matches!(self.status, CaseStatus::Processing) {
                    return Err(status_err());
                }
                if *to == self.custodian {
                    return Err(CaseError::ForwardToSelf { to: to.clone() });
                }
                Ok(())
            }
            CaseEventBody::Returned { missing, reason } => {
                text("退回理由", reason)?;
                if missing.is_empty() {
                    return Err(CaseError::Invalid {
                        what: "补正内容",
                        reason: "应列明需要补正的全部内容".to_owned(),
                    });
                }
                for m in missing {
                    text("补正内容", m)?;
                }
                if !matches!(self.status, CaseStatus::Processing) {
                    return Err(status_err());
                }
                if self.custodian == self.accepted_by {
                    return Err(CaseError::ForwardToSelf {
                        to: self.accepted_by.clone(),
                    });
                }
                Ok(())
            }
            CaseEventBody::Supplemented {
                materials,
                arrived,
                request,
                deadline,
            } => {
                if materials.is_empty() {
                    return Err(CaseError::Invalid {
                        what: "补正材料",
                        reason: "未列出收到的材料".to_owned(),
                    });
                }
                if *arrived > event.at.date() {
                    return Err(CaseError::Invalid {
                        what: "材料到达日期",
                        reason: "晚于登记时间".to_owned(),
                    });
                }
                // Material cannot arrive before the case asked for it: before the return
                // while one is pending, before the acceptance otherwise.
                let asked = match self.status {
                    CaseStatus::AwaitingSupplement => self
                        .events
                        .iter()
                        .rev()
                        .find(|e| matches!(e.body, CaseEventBody::Returned { .. }))
                        .map_or(self.accepted_at.date(), |e| e.at.date()),
                    _ => self.accepted_at.date(),
                };
                if *arrived < asked {
                    return Err(CaseError::Invalid {
                        what: "材料到达日期",
                        reason: format!("早于{asked}"),
                    });
                }
                if self.is_immediate() && deadline.is_some() {
                    return Err(immediate_fixed());
                }
                self.check_request(request.as_ref())?;
                match self.status {
                    CaseStatus::AwaitingSupplement if self.is_immediate() => Ok(()),
                    CaseStatus::AwaitingSupplement => {
                        let d = deadline.ok_or(CaseError::Invalid {
                            what: "办结期限",
                            reason: "补正后应重新计算办结期限".to_owned(),
                        })?;
                        let limit = u32::from(rules.item.committed_limit.days());
                        if d.start != *arrived || d.working_days < limit {
                            return Err(CaseError::Invalid {
                                what: "办结期限",
                                reason: "补正后的期限应自材料到达次日起重新计算".to_owned(),
                            });
                        }
                        Ok(())
                    }
                    CaseStatus::Processing | CaseStatus::InNotice | CaseStatus::Paused => {
                        self.check_new_deadline(deadline.as_ref(), false)
                    }
                    _ => Err(status_err()),
                }
            }
            CaseEventBody::Assisted {
                opinion, request, ..
            } => {
                text("协办意见", opinion)?;
                self.check_request(Some(request))
            }
            CaseEventBody::ObjectionRecorded { request, text: t } => {
                text("异议内容", t)?;
                if self.status != CaseStatus::InNotice {
                    return Err(CaseError::NotInNotice);
                }
                self.check_request(Some(request))
            }
            CaseEventBody::RequestDeclined { request, reason } => {
                text("不予采纳理由", reason)?;
                self.check_request(Some(request))
            }
            CaseEventBody::Corrected {
                of,
                correction,
                reason,
            } => {
                text("更正理由", reason)?;
                let target = usize::try_from(*of)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| self.events.get(i))
                    .ok_or(CaseError::Invalid {
                        what: "更正对象",
                        reason: format!("第{of}条事件不存在"),
                    })?;
                let fits = match correction {
                    Correction::ApplicantName(_) | Correction::Helper(_) => {
                        matches!(target.body, CaseEventBody::Accepted(_))
                    }
                    Correction::Opinion(t) => {
                        text("意见", t)?;
                        matches!(target.body, CaseEventBody::StepDone { .. })
                    }
                };
                if !fits {
                    return Err(CaseError::Invalid {
                        what: "更正对象",
                        reason: format!("第{of}条事件没有可更正的该项内容"),
                    });
                }
                Ok(())
            }
            CaseEventBody::Extended { .. }
            | CaseEventBody::Paused { .. }
            | CaseEventBody::Resumed { .. }
                if self.is_immediate() =>
            {
                Err(immediate_fixed())
            }
            CaseEventBody::Extended {
                working_days,
                reason,
                approved_by,
                deadline,
            } => {
                text("延长理由", reason)?;
                text("批准人", approved_by)?;
                if !(1..=EXTENSION_DAYS_MAX).contains(working_days) {
                    return Err(CaseError::Invalid {
                        what: "延长天数",
                        reason: format!("应为1至{EXTENSION_DAYS_MAX}个工作日"),
                    });
                }
                if deadline.working_days != self.deadline.working_days + u32::from(*working_days)
                    || deadline.start != self.deadline.start
                {
                    return Err(CaseError::Invalid {
                        what: "办结期限",
                        reason: "延长后的期限与延长天数不符".to_owned(),
                    });
                }
                Ok(())
            }
            CaseEventBody::Paused { reason, from } => {
                text("暂停理由", reason)?;
                if !matches!(self.status, CaseStatus::Processing | CaseStatus::InNotice) {
                    return Err(status_err());
                }
                if *from > event.at.date() {
                    return Err(CaseError::Invalid {
                        what: "暂停日期",
                        reason: "晚于登记时间".to_owned(),
                    });
                }
                Ok(())
            }
            CaseEventBody::Resumed { on, deadline } => {
                let Some((_, from)) = self.paused_from else {
                    return Err(status_err());
                };
                if *on < from {
                    return Err(CaseError::Invalid {
                        what: "恢复日期",
                        reason: "早于暂停日期".to_owned(),
                    });
                }
                self.check_new_deadline(Some(deadline), true)
            }
            CaseEventBody::DeadlineConfirmed { deadline } => {
                if !self.deadline.provisional
                    || deadline.provisional
                    || deadline.start != self.deadline.start
                    || deadline.working_days != self.deadline.working_days
                {
                    return Err(CaseError::Invalid {
                        what: "期限确认",
                        reason: "只能确认暂定期限，且计算依据不变".to_owned(),
                    });
                }
                Ok(())
            }
            CaseEventBody::Refused { reason, .. } => text("不予办理理由", reason),
            CaseEventBody::Withdrawn { request } => self.check_request(Some(request)),
            CaseEventBody::Completed { result } => {
                text_any("办理结果", result)?;
                if self.status != CaseStatus::Processing {
                    return Err(status_err());
                }
                let step = self.next_step(rules).ok_or(CaseError::StepOrder {
                    expected: None,
                    got: "办结".to_owned(),
                })?;
                if self.next_step + 1 != rules.item.steps.len() {
                    return Err(CaseError::StepOrder {
                        expected: Some(step.code.0.clone()),
                        got: "办结".to_owned(),
                    });
                }
                self.check_step(&step.code, StepAction::Complete, &event.author, rules)
            }
        }
    }

    fn check_step(
        &self,
        step: &StepCode,
        action: StepAction,
        author: &Custodian,
        rules: &Rules<'_>,
    ) -> Result<(), CaseError> {
        let Some(expected) = self.next_step(rules) else {
            return Err(CaseError::StepOrder {
                expected: None,
                got: step.0.clone(),
            });
        };
        if expected.code != *step {
            return Err(CaseError::StepOrder {
                expected: Some(expected.code.0.clone()),
                got: step.0.clone(),
            });
        }
        if expected.action != action {
            return Err(CaseError::StepAction {
                step: step.0.clone(),
                expected: expected.action,
                got: action,
            });
        }
        // Village steps (pre-check, completion) stay at the accepting village: another
        // village may assist, never act.
        let wrong_village = expected.tier == Tier::Village && author.node != self.accepted_by.node;
        if author.node.tier() != expected.tier || wrong_village {
            return Err(CaseError::StepTier {
                step: step.0.clone(),
                step_tier: expected.tier,
                author: author.clone(),
            });
        }
        if author.department != expected.department {
            return Err(CaseError::StepDepartment {
                step: step.0.clone(),
                department: expected.department.as_ref().map(|d| d.0.clone()),
                author: author.clone(),
            });
        }
        Ok(())
    }

    fn check_request(&self, request: Option<&RequestId>) -> Result<(), CaseError> {
        match request {
            Some(r) if self.decided_requests.contains(r) => {
                Err(CaseError::RequestDecided(r.clone()))
            }
            _ => Ok(()),
        }
    }

    /// A deadline carried by an event must keep the period's start and not shorten it;
    /// `required` says whether the event must carry one.
    fn check_new_deadline(&self, d: Option<&Deadline>, required: bool) -> Result<(), CaseError> {
        match d {
            None if required && self.deadline.working_days > 0 => Err(CaseError::Invalid {
                what: "办结期限",
                reason: "此操作应同时记录顺延后的期限".to_owned(),
            }),
            Some(d)
                if d.start != self.deadline.start
                    || d.working_days < self.deadline.working_days =>
            {
                Err(CaseError::Invalid {
                    what: "办结期限",
                    reason: "期限的起算日不得改变，天数不得减少".to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Applies a checked event.
    fn mutate(&mut self, event: CaseEvent, rules: &Rules<'_>) {
        match &event.body {
            CaseEventBody::Accepted(_) => {}
            CaseEventBody::StepDone { .. } => self.next_step += 1,
            CaseEventBody::NoticeStarted {
                ends,
                delivered_to,
                deadline,
                ..
            } => {
                self.status = CaseStatus::InNotice;
                self.notice_ends = Some(*ends);
                self.audience.extend(delivered_to.iter().copied());
                if let Some(d) = deadline {
                    self.deadline = *d;
                }
            }
            CaseEventBody::NoticeEnded { objections, .. } => {
                self.status = CaseStatus::Processing;
                self.notice_ends = None;
                self.objections = self.objections.max(*objections);
                self.next_step += 1;
            }
            CaseEventBody::Forwarded { to, .. } | CaseEventBody::Reassigned { to, .. } => {
                self.hand_to(to.clone())
            }
            CaseEventBody::Received => self.received = true,
            CaseEventBody::Returned { .. } => {
                self.returns += 1;
                self.status = CaseStatus::AwaitingSupplement;
                let back = self.accepted_by.clone();
                self.hand_to(back);
            }
            CaseEventBody::Supplemented {
                request, deadline, ..
            } => {
                if self.status == CaseStatus::AwaitingSupplement {
                    self.status = CaseStatus::Processing;
                }
                if let Some(d) = deadline {
                    self.deadline = *d;
                }
                if let Some(r) = request {
                    self.decided_requests.insert(r.clone());
                }
            }
            CaseEventBody::Assisted { request, .. }
            | CaseEventBody::RequestDeclined { request, .. }
            | CaseEventBody::Withdrawn { request } => {
                self.decided_requests.insert(request.clone());
                if matches!(event.body, CaseEventBody::Withdrawn { .. }) {
                    self.status = CaseStatus::Withdrawn;
                }
            }
            CaseEventBody::ObjectionRecorded { request, .. } => {
                self.decided_requests.insert(request.clone());
                self.objections += 1;
            }
            CaseEventBody::Corrected { correction, .. } => match correction {
                Correction::ApplicantName(name) => self.applicant.name = name.clone(),
                Correction::Helper(helper) => self.helper = helper.clone(),
                Correction::Opinion(_) => {}
            },
            CaseEventBody::Extended { deadline, .. }
            | CaseEventBody::DeadlineConfirmed { deadline } => self.deadline = *deadline,
            CaseEventBody::Paused { from, .. } => {
                self.paused_from = Some((self.status, *from));
                self.status = CaseStatus::Paused;
            }
            CaseEventBody::Resumed { deadline, .. } => {
                if let Some((before, _)) = self.paused_from.take() {
                    self.status = before;
                }
                self.deadline = *deadline;
            }
            CaseEventBody::Refused { .. } => self.status = CaseStatus::Refused,
            CaseEventBody::Completed { .. } => {
                self.status = CaseStatus::Completed;
                self.next_step = rules.item.steps.len();
            }
            CaseEventBody::Evaluated { satisfaction } => self.evaluation = Some(*satisfaction),
        }
        self.events.push(event);
    }

    /// A county's 改派: written by a county-tier node's own desk whose territory holds the
    /// case's accepting village and the new custodian, naming the current custodian as the
    /// lost one; never on a closed case.
    fn check_reassigned(
        &self,
        event: &CaseEvent,
        from: &Custodian,
        to: &Custodian,
        reason: &str,
    ) -> Result<(), CaseError> {
        let county = event.author.node;
        if county.tier() != Tier::County
            || event.author.department.is_some()
            || !self.number.node.is_within(county)
            || !to.node.is_within(county)
        {
            return Err(CaseError::Invalid {
                what: "改派",
                reason: format!("{} 不是本件所在县（市、区）的县级节点", event.author),
            });
        }
        text("经办人", &event.operator)?;
        text("改派理由", reason)?;
        if event.at < self.events.last().map_or(self.accepted_at, |e| e.at) {
            return Err(CaseError::Invalid {
                what: "事件时间",
                reason: "早于上一条事件".to_owned(),
            });
        }
        if *from != self.custodian {
            return Err(CaseError::NotCustodian {
                author: from.clone(),
                custodian: self.custodian.clone(),
            });
        }
        if *to == self.custodian {
            return Err(CaseError::ForwardToSelf { to: to.clone() });
        }
        if self.status.is_terminal() {
            return Err(CaseError::Status {
                status: self.status,
            });
        }
        Ok(())
    }

    fn hand_to(&mut self, to: Custodian) {
        self.audience.insert(to.node);
        self.custody_chain.push(to.clone());
        self.custodian = to;
        self.received = false;
    }
}

/// A 即办 case's deadline is its acceptance day: nothing lengthens or pauses it.
fn immediate_fixed() -> CaseError {
    CaseError::Invalid {
        what: "办结期限",
        reason: "即办件的办结期限为受理当日，不能延长、暂停或重新计时".to_owned(),
    }
}

/// A node quarantined a case: a received event of it failed a domain check there (DESIGN.md
/// "When an event is refused"). Outside the case's sequence; never carries applicant data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineAlarm {
    pub case: CaseNumber,
    /// The node that quarantined it.
    pub node: NodeId,
    /// The case sequence of the event that failed.
    pub seq: CaseSeq,
    /// What failed, in English (never applicant data).
    pub reason: String,
    /// Beijing time.
    pub at: NaiveDateTime,
}

/// A node refused a received catalog, calendar or topology revision: it fails a check there
/// (DESIGN.md "When an event is refused"), so it is kept and relayed but not applied there.
/// Goes up to the root and to the revision's author; carries identities and the kind of
/// problem only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionAlarm {
    /// The node that refused it.
    pub node: NodeId,
    /// The refused revision's identity (its origin is the author).
    pub revision: crate::link::EventId,
    /// "catalog", "calendar" or "topology".
    pub kind: String,
    /// What failed, in English.
    pub reason: String,
    /// Beijing time.
    pub at: NaiveDateTime,
}

/// What the county decided about a quarantined case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The case's held events apply again; one that still fails quarantines it again.
    Release,
    /// 作废: no further event of the case applies anywhere.
    Void,
}

impl Verdict {
    pub fn name_zh(self) -> &'static str {
        match self {
            Verdict::Release => "解除隔离",
            Verdict::Void => "作废",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Release => "release",
            Verdict::Void => "void",
        }
    }
}

/// The county's decision on a quarantined case, outside the case's sequence (the node that
/// quarantined it could not apply anything after the event that failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountyDecision {
    pub case: CaseNumber,
    pub verdict: Verdict,
    pub reason: String,
    /// The county operator who decided.
    pub operator: String,
    /// Beijing time.
    pub at: NaiveDateTime,
}

impl CountyDecision {
    /// Whether `author` may take this decision: a county-tier node whose territory holds the
    /// case's accepting village; with a reason and an operator.
    pub fn check(&self, author: NodeId) -> Result<(), CaseError> {
        if author.tier() != Tier::County || !self.case.node.is_within(author) {
            return Err(CaseError::Invalid {
                what: "县级决定",
                reason: format!("{author} 不是本件所在县（市、区）的县级节点"),
            });
        }
        text("经办人", &self.operator)?;
        text("决定理由", &self.reason)
    }
}

fn text(what: &'static str, s: &str) -> Result<(), CaseError> {
    if s.trim().is_empty() {
        return Err(CaseError::Invalid {
            what,
            reason: "不能为空".to_owned(),
        });
    }
    text_any(what, s)
}

fn text_any(what: &'static str, s: &str) -> Result<(), CaseError> {
    if s.chars().count() > TEXT_CHARS_MAX {
        return Err(CaseError::Invalid {
            what,
            reason: format!("超过{TEXT_CHARS_MAX}字"),
        });
    }
    Ok(())
}

/// Something the custodian's timers should act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Due {
    /// The 公示 has run its course: end it.
    EndNotice { ends: NaiveDate },
    /// The calendar now covers a provisional deadline: confirm it.
    ConfirmDeadline { deadline: Deadline },
    /// The deadline is near (within `DEADLINE_WARNING_DAYS` calendar days).
    DeadlineApproaching { due: NaiveDate },
    /// Past the deadline (逾期).
    Overdue { due: NaiveDate },
}

/// How many calendar days ahead a deadline is surfaced as approaching.
pub const DEADLINE_WARNING_DAYS: i64 = 2;

impl Case {
    /// What the custodian's timers should do about this case on `today`.
    pub fn due(&self, today: NaiveDate, calendar: &crate::calendar::Calendar) -> Vec<Due> {
        let mut out = Vec::new();
        if self.status.is_terminal() {
            return out;
        }
        if let Some(ends) = self.notice_ends
            && self.status == CaseStatus::InNotice
            && today >= ends
        {
            out.push(Due::EndNotice { ends });
        }
        if let Some(deadline) = self.deadline.confirmation(calendar) {
            out.push(Due::ConfirmDeadline { deadline });
        }
        if self.is_overdue(today) {
            out.push(Due::Overdue {
                due: self.deadline.due,
            });
        } else if self.status != CaseStatus::Paused
            && (self.deadline.due - today).num_days() <= DEADLINE_WARNING_DAYS
        {
            out.push(Due::DeadlineApproaching {
                due: self.deadline.due,
            });
        }
        out
    }
}

impl CaseEventBody {
    /// The request this event decides, if it decides one.
    pub fn decides_request(&self) -> Option<&RequestId> {
        match self {
            CaseEventBody::Supplemented { request, .. } => request.as_ref(),
            CaseEventBody::Assisted { request, .. }
            | CaseEventBody::ObjectionRecorded { request, .. }
            | CaseEventBody::RequestDeclined { request, .. }
            | CaseEventBody::Withdrawn { request } => Some(request),
            _ => None,
        }
    }

    /// A short stable name of the kind of event (for JSON and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            CaseEventBody::Accepted(_) => "accepted",
            CaseEventBody::StepDone { .. } => "step_done",
            CaseEventBody::NoticeStarted { .. } => "notice_started",
            CaseEventBody::NoticeEnded { .. } => "notice_ended",
            CaseEventBody::Forwarded { .. } => "forwarded",
            CaseEventBody::Received => "received",
            CaseEventBody::Returned { .. } => "returned",
            CaseEventBody::Supplemented { .. } => "supplemented",
            CaseEventBody::Assisted { .. } => "assisted",
            CaseEventBody::ObjectionRecorded { .. } => "objection_recorded",
            CaseEventBody::RequestDeclined { .. } => "request_declined",
            CaseEventBody::Corrected { .. } => "corrected",
            CaseEventBody::Extended { .. } => "extended",
            CaseEventBody::Paused { .. } => "paused",
            CaseEventBody::Resumed { .. } => "resumed",
            CaseEventBody::DeadlineConfirmed { .. } => "deadline_confirmed",
            CaseEventBody::Refused { .. } => "refused",
            CaseEventBody::Withdrawn { .. } => "withdrawn",
            CaseEventBody::Completed { .. } => "completed",
            CaseEventBody::Evaluated { .. } => "evaluated",
            CaseEventBody::Reassigned { .. } => "reassigned",
        }
    }

    /// One line in Chinese for registers, desks and the walk-through. Applicants' names and
    /// ID numbers appear masked only.
    pub fn describe_zh(&self) -> String {
        match self {
            CaseEventBody::Accepted(a) => format!(
                "受理“{}”（{}），申请人{}（{}），{}办结期限{}",
                a.item_name,
                a.case_type.name_zh(),
                a.applicant.name,
                a.applicant.id_number,
                a.helper
                    .as_ref()
                    .map(|h| format!("代办人{}（{}），", h.name, h.relation))
                    .unwrap_or_default(),
                a.deadline.describe_zh()
            ),
            CaseEventBody::StepDone {
                action, opinion, ..
            } => {
                if opinion.is_empty() {
                    format!("{}通过", action.name_zh())
                } else {
                    format!("{}通过：{opinion}", action.name_zh())
                }
            }
            CaseEventBody::NoticeStarted {
                from,
                ends,
                delivered_to,
                deadline,
                ..
            } => {
                let to: Vec<String> = delivered_to.iter().map(ToString::to_string).collect();
                let mut s = format!("公示开始：{from}至{ends}");
                if !to.is_empty() {
                    s.push_str(&format!("，公示送达户籍地{}", to.join("、")));
                }
                if let Some(d) = deadline {
                    s.push_str(&format!(
                        "；公示期不计入办理时限，办结期限顺延至{}",
                        d.describe_zh()
                    ));
                }
                s
            }
            CaseEventBody::NoticeEnded { objections, .. } => {
                format!("公示期满，收到异议{objections}件")
            }
            CaseEventBody::Forwarded { to, reason } => {
                if reason.is_empty() {
                    format!("转报至{to}")
                } else {
                    format!("转报至{to}：{reason}")
                }
            }
            CaseEventBody::Received => "签收".to_owned(),
            CaseEventBody::Returned { missing, reason } => {
                format!("退回补正（{reason}），需补正：{}", missing.join("、"))
            }
            CaseEventBody::Supplemented {
                materials,
                arrived,
                deadline,
                ..
            } => {
                let codes: Vec<&str> = materials.iter().map(|m| m.0.as_str()).collect();
                let mut s = format!("补正材料{arrived}到达：{}", codes.join("、"));
                if let Some(d) = deadline {
                    s.push_str(&format!("；自次日起重新计时，办结期限{}", d.describe_zh()));
                }
                s
            }
            CaseEventBody::Assisted { by, opinion, .. } => format!("{by}协办意见：{opinion}"),
            CaseEventBody::ObjectionRecorded { text, .. } => format!("受理公示异议：{text}"),
            CaseEventBody::RequestDeclined { reason, .. } => format!("申请不予采纳：{reason}"),
            CaseEventBody::Corrected { of, reason, .. } => {
                format!("更正第{of}条记录（原记录保留）：{reason}")
            }
            CaseEventBody::Extended {
                working_days,
                reason,
                approved_by,
                deadline,
            } => format!(
                "延长审批{working_days}个工作日（{reason}，批准人{approved_by}），办结期限{}",
                deadline.describe_zh()
            ),
            CaseEventBody::Paused { reason, from } => format!("{from}起暂停计时：{reason}"),
            CaseEventBody::Resumed { on, deadline } => {
                format!("{on}恢复计时，办结期限{}", deadline.describe_zh())
            }
            CaseEventBody::DeadlineConfirmed { deadline } => format!(
                "按工作日历（版本{}）确认办结期限{}",
                deadline.calendar_version, deadline.due
            ),
            CaseEventBody::Refused { reason, .. } => format!("不予办理：{reason}"),
            CaseEventBody::Withdrawn { .. } => "申请人撤回申请".to_owned(),
            CaseEventBody::Completed { result } => format!("办结：{result}"),
            CaseEventBody::Reassigned { from, to, reason } => {
                format!("县级改派：由{from}改由{to}办理（{reason}）")
            }
            CaseEventBody::Evaluated { satisfaction } => {
                const NAMES: [&str; 5] = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"];
                let name = NAMES
                    .get(usize::from(*satisfaction).saturating_sub(1))
                    .unwrap_or(&"?");
                format!("申请人评价：{name}")
            }
        }
    }
}
