//! The node: one owner of the register, driven by clerk operations on one thread, with group
//! commit (one fsync covers every operation that arrived while the previous one ran).
//!
//! Invariants:
//! * Durable before acknowledged: no reply leaves the node while anything it may have seen
//!   is unsynced; replies of a group are sent after the sync that covers them.
//! * After a failed sync the node refuses every further operation (its memory may be ahead
//!   of its disk): it stops rather than confirm what may be lost.
//! * One writer: only the node thread touches the register.
//! * A node being refilled by its parent writes nothing for a clerk (no case number, case
//!   event or request) until it is whole: its copy of a case may lack events the parent holds.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use tokio::sync::{mpsc, oneshot, watch};

use yimen_core::calendar::{Calendar, CalendarError};
use yimen_core::case::{
    Case, CaseError, CaseStatus, Correction, Helper, Request, RequestId, RequestKind, Rules,
};
use yimen_core::catalog::{ItemVersion, MaterialCode, NodeId, StepAction};
use yimen_core::command::{self, AcceptError, Actor, Application, Command};
use yimen_core::division::DivisionCode;
use yimen_core::intake::{self, IntakeReport};
use yimen_core::numbering::{CaseNumber, NumberingError};
use yimen_core::person::{Applicant, IdNumber, PersonName, Status};
use yimen_core::routing::{self, Custodian, RoutingError};

use crate::clock::Clock;
use yimen_core::link::{self, Cursor, Resume, WireEvent};
use yimen_core::topology::Topology;

use crate::register::{DayEntry, ReceiveError, Received, Register, RegisterError};
use crate::store::Store;

// Desk operations (township reviewers, county stations) and the custodian's timers.
mod desk;
pub use desk::{
    DESK_CASES_MAX, DeskActor, DeskOp, DeskReply, DeskScope, Hold, HoldKind, InTransit,
    PendingCase, TIMER_OPERATOR, TickReport,
};

/// Operations waiting for the node thread; beyond this, callers wait (backpressure).
pub const QUEUE_MAX: usize = 1024;
/// Most operations one group commit covers.
pub const GROUP_MAX: usize = 256;

/// The applicant as a clerk typed them, before validation.
#[derive(Clone, Debug, Default)]
pub struct ApplicantInput {
    pub id_number: String,
    pub name: String,
    pub household: String,
    pub statuses: Vec<String>,
}

/// What a request relayed by a clerk asks.
#[derive(Clone, Debug)]
pub enum RelayKind {
    Withdrawal { reason: String },
    Supplement { materials: Vec<String> },
    Objection { text: String },
}

/// A clerk operation.
#[derive(Clone, Debug)]
pub enum ClerkOp {
    ListItems,
    Guide {
        item_code: String,
    },
    Apply {
        operator: String,
        item_code: String,
        applicant: ApplicantInput,
        materials: Vec<String>,
        helper: Option<(String, String)>,
    },
    Precheck {
        operator: String,
        case: String,
        opinion: String,
    },
    Forward {
        operator: String,
        case: String,
        to: Option<(String, String)>,
        reason: String,
    },
    Supplement {
        operator: String,
        case: String,
        materials: Vec<String>,
    },
    Assist {
        operator: String,
        case: String,
        opinion: String,
    },
    Complete {
        operator: String,
        case: String,
        result: String,
    },
    Correct {
        operator: String,
        case: String,
        of: u64,
        correction: CorrectionInput,
        reason: String,
    },
    Relay {
        operator: String,
        case: String,
        kind: RelayKind,
    },
    Evaluate {
        operator: String,
        case: String,
        satisfaction: u32,
    },
    GetCase {
        case: String,
    },
    ListCases {
        status: Option<String>,
        overdue_only: bool,
        due_by: Option<NaiveDate>,
    },
    Register {
        day: Option<NaiveDate>,
    },
    Calendar,
    AddWorkingDays {
        from: NaiveDate,
        working_days: u32,
    },
    /// Authoring (register/revision.rs): check a catalog, calendar or topology revision and,
    /// unless `check_only`, publish it down this node's subtree.
    Publish {
        operator: String,
        revision: Box<crate::register::Revision>,
        check_only: bool,
    },
}

impl ClerkOp {
    /// Whether the operation writes (an event, a request, a number): refused while the node
    /// is being refilled.
    pub fn writes(&self) -> bool {
        match self {
            ClerkOp::Apply { .. }
            | ClerkOp::Precheck { .. }
            | ClerkOp::Forward { .. }
            | ClerkOp::Supplement { .. }
            | ClerkOp::Assist { .. }
            | ClerkOp::Complete { .. }
            | ClerkOp::Correct { .. }
            | ClerkOp::Relay { .. }
            | ClerkOp::Evaluate { .. }
            | ClerkOp::Publish { .. } => true,
            ClerkOp::ListItems
            | ClerkOp::Guide { .. }
            | ClerkOp::GetCase { .. }
            | ClerkOp::ListCases { .. }
            | ClerkOp::Register { .. }
            | ClerkOp::Calendar
            | ClerkOp::AddWorkingDays { .. } => false,
        }
    }
}

/// A correction as typed.
#[derive(Clone, Debug)]
pub enum CorrectionInput {
    ApplicantName(String),
    Helper(Option<(String, String)>),
    Opinion(String),
}

/// What an operation answers.
#[derive(Clone, Debug)]
pub enum ClerkReply {
    Items(Vec<ItemVersion>),
    Guide(Box<ItemVersion>),
    Accepted(Box<Case>, Box<ItemVersion>),
    Incomplete(IntakeReport, Box<ItemVersion>),
    Case(Box<Case>),
    /// A case looked up, with its hold when it is quarantined or void here.
    Shown(Box<Case>, Option<Hold>),
    Request {
        id: RequestId,
        addressed_to: Custodian,
        decided_here: bool,
        case: Box<Case>,
    },
    Cases(Vec<Case>),
    Register(Vec<DayEntry>),
    Calendar(Box<Calendar>),
    Date(NaiveDate, u32),
    /// What became of a revision (published, or refused with every problem).
    Publication(Box<crate::register::Publication>),
}

/// Why an operation failed. Each maps to one gRPC code in `clerk.rs`.
#[derive(Debug, thiserror::Error)]
pub enum ClerkError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("case: {0}")]
    Case(#[from] CaseError),
    #[error("numbering: {0}")]
    Numbering(#[from] NumberingError),
    #[error("routing: {0}")]
    Routing(#[from] RoutingError),
    #[error("calendar: {0}")]
    Calendar(#[from] CalendarError),
    #[error("register: {0}")]
    Register(#[from] RegisterError),
    #[error("the node has stopped after a storage failure: {0}")]
    Stopped(String),
    #[error("the node is being refilled by its parent and numbers no case until it is whole")]
    Refilling,
    /// The case is quarantined or void: nobody acts on it until the county decides.
    #[error("case {case} is {}", if *.voided { "void" } else { "quarantined" })]
    Held { case: CaseNumber, voided: bool },
}

impl ClerkError {
    /// The message a clerk reads.
    pub fn reason_zh(&self) -> String {
        match self {
            ClerkError::NotFound(what) => format!("未找到{what}"),
            ClerkError::Invalid { field, reason } => format!("{field}：{reason}"),
            ClerkError::Case(e) => e.reason_zh(),
            ClerkError::Numbering(e) => e.reason_zh(),
            ClerkError::Routing(e) => e.reason_zh(),
            ClerkError::Calendar(e) => e.reason_zh(),
            ClerkError::Register(e) => e.reason_zh(),
            ClerkError::Stopped(_) => {
                "本机数据存储故障，节点已停止受理；请联系乡镇管理员".to_owned()
            }
            ClerkError::Refilling => {
                "本机正在从上级节点恢复数据，恢复完成前暂不能受理新办件；请保持网络连通，稍后再试"
                    .to_owned()
            }
            ClerkError::Held { case, voided: true } => {
                format!("办件{case}已由县级决定作废，不能再办理")
            }
            ClerkError::Held {
                case,
                voided: false,
            } => format!(
                "办件{case}因数据校验未通过已被隔离，县级作出处置决定前不能办理；请联系县级管理员"
            ),
        }
    }
}

type Reply = Result<ClerkReply, ClerkError>;

/// The state one node thread owns.
pub struct Node<S: Store> {
    pub register: Register<S>,
    clock: Arc<dyn Clock>,
    stopped: Option<String>,
}

impl<S: Store> Node<S> {
    pub fn new(register: Register<S>, clock: Arc<dyn Clock>) -> Node<S> {
        Node {
            register,
            clock,
            stopped: None,
        }
    }

    fn me(&self) -> Custodian {
        Custodian {
            node: self.register.node,
            department: None,
        }
    }

    /// Carries out one operation (not yet durable: `sync` follows, per group).
    pub fn handle(&mut self, op: ClerkOp) -> Reply {
        if let Some(why) = &self.stopped {
            return Err(ClerkError::Stopped(why.clone()));
        }
        if self.register.refilling() && op.writes() {
            // A store being refilled may lack events of its cases (a lost store, an older
            // copy): an event written on such a case would fork it from what the parent
            // holds, and a request id could repeat one already issued. Reads are served.
            return Err(ClerkError::Refilling);
        }
        let now = self.clock.beijing();
        match op {
            ClerkOp::ListItems => Ok(ClerkReply::Items(
                self.register.catalog.latest_items().cloned().collect(),
            )),
            ClerkOp::Guide { item_code } => Ok(ClerkReply::Guide(Box::new(self.item(&item_code)?))),
            ClerkOp::Apply {
                operator,
                item_code,
                applicant,
                materials,
                helper,
            } => self.apply(now, operator, &item_code, applicant, materials, helper),
            ClerkOp::Precheck {
                operator,
                case,
                opinion,
            } => {
                let c = self.load_for_write(&case)?;
                let item = self.item_of(&c)?;
                let is_precheck = c
                    .next_step(&Rules { item: &item })
                    .is_some_and(|s| s.action == StepAction::PreCheck);
                if !is_precheck {
                    return Err(ClerkError::Invalid {
                        field: "环节",
                        reason: "该办件的下一环节不是初审".to_owned(),
                    });
                }
                self.act(c, &item, operator, now, Command::DoStep { opinion })
            }
            ClerkOp::Forward {
                operator,
                case,
                to,
                reason,
            } => {
                let c = self.load_for_write(&case)?;
                let item = self.item_of(&c)?;
                let to = match to {
                    Some((node, dept)) => Custodian {
                        node: parse_code("接收节点", &node)?,
                        department: (!dept.is_empty())
                            .then_some(yimen_core::catalog::DeptKey(dept)),
                    },
                    None => routing::competent_at(
                        &self.register.topology,
                        &item,
                        c.next_step,
                        c.accepted_by.node,
                        c.applicant.household,
                    )?,
                };
                self.act(c, &item, operator, now, Command::Forward { to, reason })
            }
            ClerkOp::Supplement {
                operator,
                case,
                materials,
            } => {
                let c = self.load_for_write(&case)?;
                let item = self.item_of(&c)?;
                let materials = material_set(materials);
                self.act(c, &item, operator, now, Command::Supplement { materials })
            }
            ClerkOp::Complete {
                operator,
                case,
                result,
            } => {
                let c = self.load_for_write(&case)?;
                let item = self.item_of(&c)?;
                self.act(c, &item, operator, now, Command::Complete { result })
            }
            ClerkOp::Evaluate {
                operator,
                case,
                satisfaction,
            } => {
                let c = self.load_for_write(&case)?;
                let item = self.item_of(&c)?;
                let satisfaction = u8::try_from(satisfaction).unwrap_or(u8::MAX);
                self.act(c, &item, operator, now, Command::Evaluate { satisfaction })
            }
            ClerkOp::Correct {
                operator,
                case,
                of,
                correction,
                reason,
            } => {
                let c = self.load_for_write(&case)?;
                let item = self.item_of(&c)?;
                let correction = match correction {
                    CorrectionInput::ApplicantName(n) => {
                        Correction::ApplicantName(parse_name("申请人姓名", &n)?)
                    }
                    CorrectionInput::Helper(h) => Correction::Helper(parse_helper(h)?),
                    CorrectionInput::Opinion(o) => Correction::Opinion(o),
                };
                self.act(
                    c,
                    &item,
                    operator,
                    now,
                    Command::Correct {
                        of,
                        correction,
                        reason,
                    },
                )
            }
            ClerkOp::Assist {
                operator,
                case,
                opinion,
            } => self.request(now, operator, &case, RequestKind::Opinion { text: opinion }),
            ClerkOp::Relay {
                operator,
                case,
                kind,
            } => {
                let kind = match kind {
                    RelayKind::Withdrawal { reason } => RequestKind::Withdrawal { reason },
                    RelayKind::Supplement { materials } => RequestKind::Supplement {
                        materials: material_set(materials),
                        arrived: now.date(),
                    },
                    RelayKind::Objection { text } => RequestKind::Objection { text },
                };
                self.request(now, operator, &case, kind)
            }
            ClerkOp::GetCase { case } => {
                let case = self.load(&case)?;
                let hold = self.hold_of(&case.number)?;
                Ok(ClerkReply::Shown(Box::new(case), hold))
            }
            ClerkOp::ListCases {
                status,
                overdue_only,
                due_by,
            } => self.list(now.date(), status, overdue_only, due_by),
            ClerkOp::Register { day } => Ok(ClerkReply::Register(
                self.register.day(day.unwrap_or(now.date()))?,
            )),
            ClerkOp::Calendar => Ok(ClerkReply::Calendar(Box::new(
                self.register.calendar.clone(),
            ))),
            ClerkOp::AddWorkingDays { from, working_days } => {
                let cal = &self.register.calendar;
                Ok(ClerkReply::Date(
                    cal.add_working_days(from, working_days)?,
                    cal.version,
                ))
            }
            ClerkOp::Publish {
                operator,
                revision,
                check_only,
            } => {
                let operator = checked_operator(operator)?;
                let publication = self.register.publish(*revision, &operator, check_only)?;
                Ok(ClerkReply::Publication(Box::new(publication)))
            }
        }
    }

    /// Makes the group durable; on failure the node stops.
    pub fn sync(&mut self) -> Result<(), ClerkError> {
        if !self.register.dirty() {
            return Ok(());
        }
        self.register.sync().map_err(|e| {
            let why = e.to_string();
            tracing::error!(error = %why, "sync failed; the node stops taking operations");
            self.stopped = Some(why.clone());
            ClerkError::Stopped(why)
        })
    }

    fn item(&self, code: &str) -> Result<ItemVersion, ClerkError> {
        self.register
            .catalog
            .find(code)
            .cloned()
            .ok_or_else(|| ClerkError::NotFound(format!("事项“{code}”")))
    }

    fn item_of(&self, case: &Case) -> Result<ItemVersion, ClerkError> {
        self.register
            .catalog
            .get(&case.acceptance.item)
            .cloned()
            .ok_or_else(|| {
                ClerkError::NotFound(format!(
                    "办件所依据的事项版本（{} 第{}版）",
                    case.acceptance.item.code, case.acceptance.item.version
                ))
            })
    }

    fn load(&mut self, number: &str) -> Result<Case, ClerkError> {
        let parsed = CaseNumber::parse(number.trim()).map_err(|e| ClerkError::Invalid {
            field: "办件编号",
            reason: e.reason_zh(),
        })?;
        self.register
            .case(&parsed)?
            .ok_or_else(|| ClerkError::NotFound(format!("办件“{number}”")))
    }

    /// A case the clerk is about to change: refused while quarantined or once void.
    fn load_for_write(&mut self, number: &str) -> Result<Case, ClerkError> {
        let case = self.load(number)?;
        self.not_held(&case.number)?;
        Ok(case)
    }

    fn actor(&self, operator: String, now: chrono::NaiveDateTime) -> Result<Actor<'_>, ClerkError> {
        let operator = checked_operator(operator)?;
        Ok(Actor {
            custodian: self.me(),
            operator,
            at: now,
            calendar: &self.register.calendar,
        })
    }

    /// Refuses to act on a quarantined or void case.
    pub(crate) fn not_held(&self, case: &CaseNumber) -> Result<(), ClerkError> {
        let voided = if self.register.voided(case)?.is_some() {
            true
        } else if self.register.quarantine_of(case)?.is_some() {
            false
        } else {
            return Ok(());
        };
        Err(ClerkError::Held {
            case: *case,
            voided,
        })
    }

    fn act(
        &mut self,
        case: Case,
        item: &ItemVersion,
        operator: String,
        now: chrono::NaiveDateTime,
        command: Command,
    ) -> Reply {
        self.not_held(&case.number)?;
        let rules = Rules { item };
        let event = {
            let actor = self.actor(operator, now)?;
            case.propose(command, &actor, &rules)?
        };
        let mut after = case.clone();
        after.apply(event.clone(), &rules)?;
        self.register
            .append_case_event(&event, Some(&case), &after)?;
        tracing::debug!(case = %after.number, kind = event.body.kind(), "case event");
        Ok(ClerkReply::Case(Box::new(after)))
    }

    fn apply(
        &mut self,
        now: chrono::NaiveDateTime,
        operator: String,
        item_code: &str,
        input: ApplicantInput,
        materials: Vec<String>,
        helper: Option<(String, String)>,
    ) -> Reply {
        let operator = checked_operator(operator)?;
        let item = self.item(item_code)?;
        let applicant = parse_applicant(input)?;
        let helper = parse_helper(helper)?;
        let presented = material_set(materials);
        let report = intake::check(&item, &applicant, &presented, now.date());
        if !report.is_complete() {
            tracing::debug!(
                item = item_code,
                problems = report.problem_count(),
                "intake incomplete"
            );
            return Ok(ClerkReply::Incomplete(report, Box::new(item)));
        }
        let mut counter = self.register.counter;
        let number = counter.next(self.register.node, now.date())?;
        let home_village = routing::home_village(&self.register.topology, applicant.household);
        let event = {
            let actor = self.actor(operator, now)?;
            command::accept(
                &item,
                Application {
                    applicant,
                    helper,
                    presented,
                    home_village,
                },
                number,
                &actor,
            )
            .map_err(|e| match e {
                AcceptError::Case(c) => ClerkError::Case(c),
                AcceptError::Calendar(c) => ClerkError::Calendar(c),
                AcceptError::Incomplete(_) => ClerkError::Invalid {
                    field: "申请",
                    reason: e.reason_zh(),
                },
            })?
        };
        let case = Case::open(event.clone(), &Rules { item: &item })?;
        self.register.counter = counter;
        self.register.append_case_event(&event, None, &case)?;
        tracing::info!(case = %case.number, item = item_code, "accepted");
        Ok(ClerkReply::Accepted(Box::new(case), Box::new(item)))
    }

    fn request(
        &mut self,
        now: chrono::NaiveDateTime,
        operator: String,
        number: &str,
        kind: RequestKind,
    ) -> Reply {
        let case = self.load(number)?;
        let me = self.me();
        let operator_checked = self.actor(operator.clone(), now)?.operator;
        let id = RequestId {
            origin: self.register.node,
            seq: self.register.next_request_seq()?,
        };
        let request = Request {
            id: id.clone(),
            case: case.number,
            from: me.clone(),
            operator: operator_checked,
            at: now,
            kind,
        };
        if case.custodian == me {
            // The custodian's own clerk raising it is the custodian accepting it.
            let item = self.item_of(&case)?;
            let reply = self.act(
                case,
                &item,
                operator,
                now,
                Command::Decide {
                    request,
                    accept: true,
                    reason: String::new(),
                },
            )?;
            let ClerkReply::Case(case) = reply else {
                return Err(ClerkError::NotFound("办件".to_owned()));
            };
            return Ok(ClerkReply::Request {
                id,
                addressed_to: me,
                decided_here: true,
                case,
            });
        }
        let addressed_to = case.custodian.clone();
        self.register.send_request(&request, &addressed_to)?;
        Ok(ClerkReply::Request {
            id,
            addressed_to,
            decided_here: false,
            case: Box::new(case),
        })
    }

    fn list(
        &mut self,
        today: NaiveDate,
        status: Option<String>,
        overdue_only: bool,
        due_by: Option<NaiveDate>,
    ) -> Reply {
        let status = match status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(parse_status(s)?),
        };
        let mut cases = if overdue_only {
            let yesterday = today.pred_opt().unwrap_or(today);
            self.register
                .cases_due_by(yesterday)?
                .into_iter()
                .filter(|c| c.is_overdue(today))
                .collect()
        } else if let Some(day) = due_by {
            self.register.cases_due_by(day)?
        } else if let Some(s) = status {
            self.register.cases_by_status(s)?
        } else {
            self.register.all_cases()?
        };
        if let Some(s) = status {
            cases.retain(|c| c.status == s);
        }
        Ok(ClerkReply::Cases(cases))
    }
}

/// Every operation that writes names its operator (首问责任制).
fn checked_operator(operator: String) -> Result<String, ClerkError> {
    let operator = operator.trim().to_owned();
    if operator.is_empty() {
        return Err(ClerkError::Invalid {
            field: "经办人",
            reason: "请填写经办人姓名（首问责任制）".to_owned(),
        });
    }
    Ok(operator)
}

fn parse_code(field: &'static str, s: &str) -> Result<DivisionCode, ClerkError> {
    DivisionCode::parse(s.trim()).map_err(|e| ClerkError::Invalid {
        field,
        reason: e.reason_zh(),
    })
}

fn parse_name(field: &'static str, s: &str) -> Result<PersonName, ClerkError> {
    PersonName::parse(s).ok_or(ClerkError::Invalid {
        field,
        reason: "姓名不能为空，且不超过64个字".to_owned(),
    })
}

fn parse_helper(h: Option<(String, String)>) -> Result<Option<Helper>, ClerkError> {
    h.map(|(name, relation)| {
        Ok(Helper {
            name: parse_name("代办人姓名", &name)?,
            relation: relation.trim().to_owned(),
        })
    })
    .transpose()
}

fn parse_applicant(input: ApplicantInput) -> Result<Applicant, ClerkError> {
    let id_number = IdNumber::parse(&input.id_number).map_err(|e| ClerkError::Invalid {
        field: "身份证号码",
        reason: e.reason_zh(),
    })?;
    let name = parse_name("申请人姓名", &input.name)?;
    let household = parse_code("户籍所在地行政区划代码", &input.household)?;
    let statuses = input
        .statuses
        .iter()
        .map(|s| {
            Status::parse(s.trim()).ok_or_else(|| ClerkError::Invalid {
                field: "身份类别",
                reason: format!("“{s}”不是已知的身份类别（低保、五保、残疾）"),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Applicant {
        id_number,
        name,
        household,
        statuses,
    })
}

fn parse_status(s: &str) -> Result<CaseStatus, ClerkError> {
    const ALL: [CaseStatus; 7] = [
        CaseStatus::Processing,
        CaseStatus::InNotice,
        CaseStatus::AwaitingSupplement,
        CaseStatus::Paused,
        CaseStatus::Completed,
        CaseStatus::Refused,
        CaseStatus::Withdrawn,
    ];
    ALL.into_iter()
        .find(|c| c.as_str() == s || c.name_zh() == s)
        .ok_or_else(|| ClerkError::Invalid {
            field: "状态",
            reason: format!(
                "“{s}”不是已知状态（{}）",
                ALL.map(CaseStatus::as_str).join("、")
            ),
        })
}

fn material_set(codes: Vec<String>) -> BTreeSet<MaterialCode> {
    codes
        .into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .map(MaterialCode)
        .collect()
}

/// What the sync driver asks of the node thread (the register's side of a link).
#[derive(Debug)]
pub enum LinkOp {
    /// What this node states at a handshake with `peer`.
    State { peer: NodeId },
    /// Where to resume sending to `peer`, which stated `stated`; a store behind what the peer
    /// saw takes a new epoch first (and the connection must start over).
    Resume {
        peer: NodeId,
        stated: Option<Cursor>,
    },
    /// Durable outbox entries for `peer` from position `from`.
    Outbox {
        peer: NodeId,
        from: u64,
        refill: bool,
        max_events: usize,
        max_bytes: u64,
    },
    /// Events of `peer`'s stream to apply, then the cursor; answered after the group commit.
    Receive {
        peer: NodeId,
        events: Vec<WireEvent>,
        cursor: Cursor,
    },
    /// The parent's down stream reached what it held at a refilling handshake.
    RefillDone,
    /// Records (durably) what `peer` is owed of this node's "refill only" entries.
    RefillOwed { peer: NodeId, owed: Option<u64> },
    /// Events and bytes of `peer`'s outbox after `after`.
    Lag {
        peer: NodeId,
        after: u64,
        refill: bool,
    },
    /// The topology in force (for authorising peers).
    Topology,
    /// A consistent copy of the store into `out` after a group commit (`crate::backup`).
    Backup { out: std::path::PathBuf },
}

/// What the node states at a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub epoch: u64,
    /// Where this node stands in the peer's stream.
    pub cursor: Option<Cursor>,
    /// This node waits for its parent to refill it.
    pub refill: bool,
    /// The last position of the peer's outbox (refill-only entries included).
    pub outbox_end: u64,
    /// This node's parent in the topology.
    pub parent: Option<NodeId>,
    /// The peer (a parent whose store is new or restored) is owed this node's "refill only"
    /// entries up to this position of its outbox.
    pub refill_owed: Option<u64>,
}

/// The node thread's answers to the sync driver.
#[derive(Debug)]
pub enum LinkReply {
    State(LinkState),
    Resume(Resume),
    /// The store was behind: it took this new epoch; start the connection over.
    NewEpoch(u64),
    /// Entries, and the last position examined.
    Outbox(Vec<WireEvent>, u64),
    Received(Received),
    Done,
    Lag(u64, u64),
    Topology(Box<Topology>),
    Backup(crate::backup::Copied),
}

/// Why a link operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkOpError {
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("the node has stopped: {0}")]
    Stopped(String),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

type LinkResult = Result<LinkReply, LinkOpError>;

impl<S: Store> Node<S> {
    /// Carries out one link operation (not yet durable: `sync` follows, per group).
    pub fn handle_link(&mut self, op: LinkOp) -> LinkResult {
        if let Some(why) = &self.stopped {
            return Err(LinkOpError::Stopped(why.clone()));
        }
        let reg = &mut self.register;
        Ok(match op {
            LinkOp::State { peer } => LinkReply::State(LinkState {
                epoch: reg.epoch.0,
                cursor: reg.cursor(peer)?,
                refill: reg.refilling(),
                outbox_end: reg.outbox_end(peer)?,
                parent: reg.parent(),
                refill_owed: reg.refill_owed(peer)?,
            }),
            LinkOp::Resume { peer, stated } => {
                let decision = link::resume(stated.as_ref(), &*reg);
                match decision.needs_new_epoch(reg.epoch.0) {
                    None => LinkReply::Resume(decision),
                    Some(needs) => {
                        tracing::warn!(node = %reg.node, %peer, "a peer saw more of this store than it holds");
                        let refill = reg.parent().is_some();
                        let epoch =
                            reg.take_new_epoch(&needs, crate::server::new_epoch(), refill)?;
                        LinkReply::NewEpoch(epoch.0)
                    }
                }
            }
            LinkOp::Outbox {
                peer,
                from,
                refill,
                max_events,
                max_bytes,
            } => {
                let (entries, scanned) =
                    reg.outbox_scan(peer, from, refill, max_events, max_bytes)?;
                LinkReply::Outbox(entries, scanned)
            }
            LinkOp::Receive {
                peer,
                events,
                cursor,
            } => {
                let received = reg.receive(peer, events, cursor)?;
                self.after_received(&received);
                LinkReply::Received(received)
            }
            LinkOp::RefillDone => {
                reg.refill_done()?;
                LinkReply::Done
            }
            LinkOp::RefillOwed { peer, owed } => {
                reg.set_refill_owed(peer, owed)?;
                LinkReply::Done
            }
            LinkOp::Lag {
                peer,
                after,
                refill,
            } => {
                let (events, bytes) = reg.outbox_lag(peer, after, refill)?;
                LinkReply::Lag(events, bytes)
            }
            LinkOp::Topology => LinkReply::Topology(Box::new(reg.topology.clone())),
            LinkOp::Backup { out } => LinkReply::Backup(crate::backup::copy(reg, &out)?),
        })
    }
}

/// The operator named on receipts the node writes by itself (首问责任制: every event names
/// who acted; here the node, on the custodian's behalf).
pub const AUTO_RECEIPT_OPERATOR: &str = "系统自动签收";

impl<S: Store> Node<S> {
    /// What a received batch (or a county decision taken here) asks of this node: signing for
    /// the cases handed to it, raising an alarm for each case it quarantined and each revision
    /// it refused. A failure is
    /// logged; it never fails the link.
    pub(crate) fn after_received(&mut self, received: &Received) {
        for number in &received.arrived {
            self.sign_for(number);
        }
        for (request, to) in &received.pass_along {
            match self.register.send_request(request, to) {
                Ok(_) => {
                    tracing::info!(case = %request.case, request = %request.id, %to, "request passed along the custody chain");
                }
                Err(e) => {
                    tracing::error!(case = %request.case, request = %request.id, error = %e, "could not pass a request along");
                }
            }
        }
        for q in &received.alarms {
            if let Err(e) = self.register.raise_alarm(q, self.clock.beijing()) {
                tracing::error!(case = %q.case, error = %e, "could not raise a quarantine alarm");
            }
        }
        for r in &received.refused_revisions {
            if let Err(e) = self.register.raise_revision_alarm(r, self.clock.beijing()) {
                tracing::error!(revision = ?r.revision, error = %e, "could not raise a revision alarm");
            }
        }
    }

    /// Signs for (签收) a case handed to this node, as its custodian: the receipt travels
    /// back along the case's audience. A failure is logged and leaves the case in transit
    /// (supervision lists it); it never fails the link.
    pub(crate) fn sign_for(&mut self, number: &CaseNumber) {
        let result = (|| -> Result<(), ClerkError> {
            let Some(case) = self.register.case(number)? else {
                return Ok(());
            };
            if case.custodian.node != self.register.node || case.received {
                return Ok(());
            }
            self.not_held(number)?;
            let item = self.item_of(&case)?;
            let rules = Rules { item: &item };
            let actor = Actor {
                custodian: case.custodian.clone(),
                operator: AUTO_RECEIPT_OPERATOR.to_owned(),
                at: self.clock.beijing(),
                calendar: &self.register.calendar,
            };
            let event = case.propose(Command::Receive, &actor, &rules)?;
            let mut after = case.clone();
            after.apply(event.clone(), &rules)?;
            self.register
                .append_case_event(&event, Some(&case), &after)?;
            tracing::info!(case = %number, custodian = %after.custodian, "signed for a case handed here");
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(case = %number, error = %e, "could not sign for a case handed here");
        }
    }
}

/// A desk operation's answer.
pub type DeskResult = Result<DeskReply, ClerkError>;

enum Msg {
    Clerk(ClerkOp, oneshot::Sender<Reply>),
    Link(LinkOp, oneshot::Sender<LinkResult>),
    Desk(DeskOp, oneshot::Sender<DeskResult>),
}

enum Done {
    Clerk(oneshot::Sender<Reply>, Reply),
    Link(oneshot::Sender<LinkResult>, LinkResult),
    Desk(oneshot::Sender<DeskResult>, DeskResult),
}

/// A handle to a running node thread.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Msg>,
    pub id: NodeId,
    /// The position of the last durable event: link senders read up to it.
    pub durable: watch::Receiver<u64>,
}

impl NodeHandle {
    /// Runs an operation and waits for its durable reply.
    pub async fn call(&self, op: ClerkOp) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Clerk(op, tx))
            .await
            .map_err(|_| ClerkError::Stopped("the node thread has ended".to_owned()))?;
        rx.await
            .map_err(|_| ClerkError::Stopped("the node thread has ended".to_owned()))?
    }

    /// Runs a desk operation and waits for its durable reply.
    pub async fn desk(&self, op: DeskOp) -> DeskResult {
        let (tx, rx) = oneshot::channel();
        let ended = || ClerkError::Stopped("the node thread has ended".to_owned());
        self.tx.send(Msg::Desk(op, tx)).await.map_err(|_| ended())?;
        rx.await.map_err(|_| ended())?
    }

    /// Runs a link operation and waits for its durable reply.
    pub async fn link(&self, op: LinkOp) -> LinkResult {
        let (tx, rx) = oneshot::channel();
        let ended = || LinkOpError::Stopped("the node thread has ended".to_owned());
        self.tx.send(Msg::Link(op, tx)).await.map_err(|_| ended())?;
        rx.await.map_err(|_| ended())?
    }
}

/// Starts the node thread. It ends when every handle is dropped.
pub fn spawn<S: Store>(
    mut node: Node<S>,
) -> std::io::Result<(NodeHandle, std::thread::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE_MAX);
    let id = node.register.node;
    let (durable_tx, durable) = watch::channel(node.register.durable_position());
    let thread = std::thread::Builder::new()
        .name(format!("node-{id}"))
        .spawn(move || {
            let mut pending: Vec<Done> = Vec::with_capacity(GROUP_MAX);
            let run = |node: &mut Node<S>, msg: Msg| match msg {
                Msg::Clerk(op, reply) => Done::Clerk(reply, node.handle(op)),
                Msg::Link(op, reply) => Done::Link(reply, node.handle_link(op)),
                Msg::Desk(op, reply) => Done::Desk(reply, node.handle_desk(op)),
            };
            while let Some(msg) = rx.blocking_recv() {
                pending.push(run(&mut node, msg));
                while pending.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(msg) => pending.push(run(&mut node, msg)),
                        Err(_) => break,
                    }
                }
                let synced = node.sync();
                if synced.is_ok() {
                    durable_tx.send_if_modified(|d| {
                        let now = node.register.durable_position();
                        let changed = *d != now;
                        *d = now;
                        changed
                    });
                }
                for done in pending.drain(..) {
                    // The caller may have gone away (client hung up): nothing to do.
                    match done {
                        Done::Clerk(reply, result) => {
                            let result = match (&synced, result) {
                                (Err(e), _) => Err(ClerkError::Stopped(e.to_string())),
                                (Ok(()), r) => r,
                            };
                            let _ = reply.send(result);
                        }
                        Done::Link(reply, result) => {
                            let result = match (&synced, result) {
                                (Err(e), _) => Err(LinkOpError::Stopped(e.to_string())),
                                (Ok(()), r) => r,
                            };
                            let _ = reply.send(result);
                        }
                        Done::Desk(reply, result) => {
                            let result = match (&synced, result) {
                                (Err(e), _) => Err(ClerkError::Stopped(e.to_string())),
                                (Ok(()), r) => r,
                            };
                            let _ = reply.send(result);
                        }
                    }
                }
            }
            // Every handle dropped: make sure the last group is durable (it already is,
            // replies wait for it), and end.
            let _ = node.sync();
        })?;
    Ok((NodeHandle { tx, id, durable }, thread))
}
