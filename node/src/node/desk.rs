//! Desk operations on the node thread: what township reviewers and county stations ask of
//! the cases in their custody, and the custodian's timers (公示 ends, provisional deadlines
//! confirmed, approaching deadlines surfaced).
//!
//! A desk acts on this node's register as custodian `(node, department)`: a station as its
//! department, an operator as the node's own desk. Every event goes through the core
//! (`Case::propose`, then `apply`), so the core's rules hold here as everywhere: only the
//! custodian writes, steps in order and of the step's tier and department.
//!
//! Invariants:
//! * An operation is planned whole before anything is written: the receipt (签收) it may need
//!   first, the command, and the handoff (转报) to the next step's competent custodian are
//!   proposed and applied to a copy of the case; a refusal at any point writes nothing.
//! * A node being refilled writes nothing for a desk or a timer (like the clerk).
//! * The timer writes only as the custodian of a case it holds, and never touches a case
//!   another node holds.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};

use yimen_core::case::{
    Case, CaseEvent, CaseEventBody, CaseStatus, CountyDecision, Due, Request, RequestId, Rules,
    Verdict,
};
use yimen_core::catalog::{DeptKey, ItemVersion, StepAction};
use yimen_core::command::{Actor, Command};
use yimen_core::division::Tier;
use yimen_core::numbering::CaseNumber;
use yimen_core::routing::{self, Custodian};

use super::{ClerkError, Node, checked_operator};
use crate::store::Store;

/// The operator recorded on events the custodian's timer writes.
pub const TIMER_OPERATOR: &str = "定时任务";
/// Most cases one pending list, transit list or timer pass examines per status (the
/// register's own listing bound).
pub const DESK_CASES_MAX: usize = crate::register::LIST_MAX;
/// Statuses of cases still open (the timer and the lists read these indexes).
const OPEN: [CaseStatus; 4] = [
    CaseStatus::Processing,
    CaseStatus::InNotice,
    CaseStatus::Paused,
    CaseStatus::AwaitingSupplement,
];

/// Who acts at a desk: the custodian it acts as and the person (首问责任制).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeskActor {
    pub custodian: Custodian,
    pub operator: String,
}

impl DeskActor {
    /// The custodian of a department's station at `node`, or the node's own desk.
    pub fn custodian_of(node: yimen_core::catalog::NodeId, department: Option<&str>) -> Custodian {
        Custodian {
            node,
            department: department.map(|d| DeptKey(d.to_owned())),
        }
    }
}

/// Which cases a desk may look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeskScope {
    /// Every case this node holds (the node's own operators: supervision of the subtree).
    Node,
    /// Cases whose custody chain names this custodian (a station: its department's cases).
    Custodian(Custodian),
}

impl DeskScope {
    fn sees(&self, case: &Case) -> bool {
        match self {
            DeskScope::Node => true,
            DeskScope::Custodian(c) => case.custody_chain.contains(c),
        }
    }
}

/// What a desk asks of the node thread.
#[derive(Clone, Debug)]
pub enum DeskOp {
    /// Open cases in `desk`'s custody (handed to it or signed for).
    Pending {
        desk: Custodian,
        limit: usize,
    },
    Show {
        scope: DeskScope,
        case: String,
    },
    /// Do the next step, which must be a step of `action` (审核, 审批, 发放).
    Step {
        actor: DeskActor,
        case: String,
        action: StepAction,
        opinion: String,
    },
    /// Start the next step's 公示, delivered to the resident's home village.
    Notice {
        actor: DeskActor,
        case: String,
    },
    Refuse {
        actor: DeskActor,
        case: String,
        reason: String,
    },
    /// 退回补正.
    Return {
        actor: DeskActor,
        case: String,
        missing: Vec<String>,
        reason: String,
    },
    /// 延长审批.
    Extend {
        actor: DeskActor,
        case: String,
        working_days: u32,
        reason: String,
        approved_by: String,
    },
    /// Cases handed off and not signed for since longer than `older_than`.
    Transit {
        scope: DeskScope,
        older_than: Duration,
    },
    /// Cases quarantined here, with why.
    Quarantined,
    /// Requests (withdrawal, supplement, objection, opinion) waiting for `desk`'s decision.
    Requests {
        desk: Custodian,
        limit: usize,
    },
    /// Decide a pending request: accepted, it becomes the case's event (撤回, 补正, 异议, 协办
    /// 意见); declined, the reason is recorded.
    DecideRequest {
        actor: DeskActor,
        case: String,
        request: String,
        accept: bool,
        reason: String,
    },
    /// The county's decision on a quarantined case (a county operator).
    Decide {
        actor: DeskActor,
        case: String,
        verdict: Verdict,
        reason: String,
    },
    /// 改派: the county hands the cases of a lost custodian (one, or every open one it holds)
    /// to another. The caller has checked that the lost one is revoked.
    Reassign {
        actor: DeskActor,
        from: Custodian,
        to: Custodian,
        case: Option<String>,
        reason: String,
    },
    /// One pass of the custodian's timers.
    Tick,
}

impl DeskOp {
    /// Whether the operation may write (refused while the node is being refilled; a timer
    /// pass then does nothing).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            DeskOp::Pending { .. }
                | DeskOp::Show { .. }
                | DeskOp::Transit { .. }
                | DeskOp::Quarantined
                | DeskOp::Requests { .. }
        )
    }
}

/// One open case at a desk, with what is due on it.
#[derive(Clone, Debug)]
pub struct PendingCase {
    pub case: Case,
    /// The next step's code and action, when a step remains.
    pub next: Option<(String, StepAction)>,
    pub due: Vec<Due>,
}

/// A case handed off and not yet signed for.
#[derive(Clone, Debug)]
pub struct InTransit {
    pub number: CaseNumber,
    pub item_name: String,
    pub from: Custodian,
    pub to: Custodian,
    pub since: NaiveDateTime,
    pub waited: Duration,
}

/// What one timer pass did and found.
#[derive(Clone, Debug, Default)]
pub struct TickReport {
    /// 公示 ended, and the custodian the case was then handed to.
    pub notices_ended: Vec<(CaseNumber, Option<Custodian>)>,
    /// Provisional deadlines confirmed on the current calendar.
    pub confirmed: Vec<CaseNumber>,
    /// Cases of this node's custody whose deadline is near, and those past it.
    pub approaching: Vec<(CaseNumber, NaiveDate)>,
    pub overdue: Vec<(CaseNumber, NaiveDate)>,
    /// Cases the timer could not act on, with why (English, for the log).
    pub failed: Vec<(CaseNumber, String)>,
}

/// Why a case is shown held here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldKind {
    /// Quarantined until the county decides: nobody acts on it.
    Quarantined,
    /// Voided by the county: nobody acts on it again.
    Void,
    /// This node's view stops before an event of a newer payload schema it cannot read: the
    /// later events wait here until its software is upgraded (they are relayed meanwhile).
    NewerSchema,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Quarantined => "quarantined",
            HoldKind::Void => "void",
            HoldKind::NewerSchema => "newer_schema",
        }
    }
}

/// A case shown held: quarantined, void, or waiting for newer software here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub kind: HoldKind,
    /// The kind of problem, the county's reason, or the unreadable event.
    pub reason: String,
}

/// What a desk operation answers.
#[derive(Clone, Debug)]
pub enum DeskReply {
    Pending(Vec<PendingCase>),
    Case {
        case: Box<Case>,
        /// The item version the case follows (for the next step's name).
        item: Box<ItemVersion>,
        /// Handed to this custodian after the step.
        forwarded_to: Option<Custodian>,
        /// Signed for (签收) by this operation first.
        received_here: bool,
        /// Quarantined or void here (`show` only: nothing else succeeds on a held case).
        hold: Option<Hold>,
    },
    Transit(Vec<InTransit>),
    /// (case number, why) of each quarantined case, and the revision alarms kept here.
    Quarantined(Vec<(String, String)>, Vec<yimen_core::case::RevisionAlarm>),
    /// A county decision taken: the case's state here afterwards, if this hub holds it.
    Decided {
        case: CaseNumber,
        verdict: Verdict,
        state: Option<Box<Case>>,
        /// A release whose held events still fail: quarantined again.
        quarantined_again: bool,
    },
    /// The cases reassigned.
    Reassigned(Vec<CaseNumber>),
    /// Requests waiting for a decision.
    Requests(Vec<Request>),
    Ticked(TickReport),
}

type Reply = Result<DeskReply, ClerkError>;

/// The events an operation will write, each with the case state after it.
struct Plan {
    before: Case,
    steps: Vec<(CaseEvent, Case)>,
}

impl Plan {
    fn new(case: Case) -> Plan {
        Plan {
            before: case,
            steps: Vec::new(),
        }
    }

    fn state(&self) -> &Case {
        self.steps.last().map_or(&self.before, |(_, c)| c)
    }

    /// Proposes `command` on the planned state and applies it to a copy.
    fn push(
        &mut self,
        command: Command,
        actor: &Actor<'_>,
        rules: &Rules<'_>,
    ) -> Result<(), ClerkError> {
        let event = self.state().propose(command, actor, rules)?;
        let mut after = self.state().clone();
        after.apply(event.clone(), rules)?;
        self.steps.push((event, after));
        Ok(())
    }
}

impl<S: Store> Node<S> {
    /// Carries out one desk operation (not yet durable: `sync` follows, per group).
    pub fn handle_desk(&mut self, op: DeskOp) -> Reply {
        if let Some(why) = &self.stopped {
            return Err(ClerkError::Stopped(why.clone()));
        }
        if self.register.refilling() && op.writes() {
            if matches!(op, DeskOp::Tick) {
                return Ok(DeskReply::Ticked(TickReport::default()));
            }
            return Err(ClerkError::Refilling);
        }
        let now = self.clock.beijing();
        match op {
            DeskOp::Pending { desk, limit } => self.pending(&desk, now.date(), limit),
            DeskOp::Show { scope, case } => {
                let c = self.load(&case)?;
                if !scope.sees(&c) {
                    // Said like an unknown case: a station learns nothing of other
                    // departments' cases.
                    return Err(ClerkError::NotFound(format!("本窗口经办的办件“{case}”")));
                }
                let item = self.item_of(&c)?;
                let hold = self.hold_of(&c.number)?;
                Ok(DeskReply::Case {
                    case: Box::new(c),
                    item: Box::new(item),
                    forwarded_to: None,
                    received_here: false,
                    hold,
                })
            }
            DeskOp::Step {
                actor,
                case,
                action,
                opinion,
            } => self.desk_act(&actor, &case, now, |c, rules| {
                let next = c.next_step(rules);
                match next {
                    Some(s) if s.action == action => Ok(Command::DoStep { opinion }),
                    Some(s) => Err(ClerkError::Invalid {
                        field: "环节",
                        reason: format!(
                            "该办件的下一环节是“{}”（{}），不是{}",
                            s.name,
                            s.action.name_zh(),
                            action.name_zh()
                        ),
                    }),
                    None => Err(ClerkError::Invalid {
                        field: "环节",
                        reason: "该办件的办理环节均已完成".to_owned(),
                    }),
                }
            }),
            DeskOp::Notice { actor, case } => self.desk_act(&actor, &case, now, |c, _| {
                // The notice is posted where the resident lives (户籍地); without a home
                // village in the topology, at the accepting village.
                let home = c.acceptance.home_village.unwrap_or(c.accepted_by.node);
                Ok(Command::StartNotice {
                    delivered_to: vec![home],
                })
            }),
            DeskOp::Refuse {
                actor,
                case,
                reason,
            } => self.desk_act(&actor, &case, now, |_, _| {
                Ok(Command::Refuse {
                    reason: required("不予办理理由", reason)?,
                })
            }),
            DeskOp::Return {
                actor,
                case,
                missing,
                reason,
            } => self.desk_act(&actor, &case, now, |_, _| {
                let missing: Vec<String> = missing
                    .into_iter()
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                Ok(Command::Return {
                    missing,
                    reason: required("退回理由", reason)?,
                })
            }),
            DeskOp::Extend {
                actor,
                case,
                working_days,
                reason,
                approved_by,
            } => self.desk_act(&actor, &case, now, |_, _| {
                let working_days = u16::try_from(working_days)
                    .ok()
                    .filter(|d| (1..=yimen_core::case::EXTENSION_DAYS_MAX).contains(d))
                    .ok_or_else(|| ClerkError::Invalid {
                        field: "延长天数",
                        reason: format!("应为1至{}个工作日", yimen_core::case::EXTENSION_DAYS_MAX),
                    })?;
                Ok(Command::Extend {
                    working_days,
                    reason: required("延长理由", reason)?,
                    approved_by: required("批准人", approved_by)?,
                })
            }),
            DeskOp::Transit { scope, older_than } => self.transit(&scope, now, older_than),
            DeskOp::Quarantined => Ok(DeskReply::Quarantined(
                self.register.quarantined(DESK_CASES_MAX)?,
                self.register.revision_alarms(DESK_CASES_MAX)?,
            )),
            DeskOp::Requests { desk, limit } => Ok(DeskReply::Requests(
                self.register
                    .pending_requests(&desk, limit.clamp(1, DESK_CASES_MAX))?,
            )),
            DeskOp::DecideRequest {
                actor,
                case,
                request,
                accept,
                reason,
            } => {
                let number = parse_number(&case)?;
                let id: RequestId = request.parse().map_err(|reason| ClerkError::Invalid {
                    field: "申请编号",
                    reason,
                })?;
                let pending = self
                    .register
                    .pending_request(&number, &id)?
                    .ok_or_else(|| ClerkError::NotFound(format!("办件{case}待处理的申请{id}")))?;
                self.desk_act(&actor, &case, now, |_, _| {
                    Ok(Command::Decide {
                        request: pending,
                        accept,
                        reason: if accept {
                            reason.trim().to_owned()
                        } else {
                            required("不予采纳理由", reason)?
                        },
                    })
                })
            }
            DeskOp::Decide {
                actor,
                case,
                verdict,
                reason,
            } => self.decide(&actor, &case, verdict, reason, now),
            DeskOp::Reassign {
                actor,
                from,
                to,
                case,
                reason,
            } => self.reassign(&actor, &from, &to, case.as_deref(), reason, now),
            DeskOp::Tick => Ok(DeskReply::Ticked(self.tick(now)?)),
        }
    }

    /// The county's release or void of a case quarantined here.
    fn decide(
        &mut self,
        actor: &DeskActor,
        number: &str,
        verdict: Verdict,
        reason: String,
        now: NaiveDateTime,
    ) -> Reply {
        let case = parse_number(number)?;
        if self.register.quarantine_of(&case)?.is_none() {
            return Err(ClerkError::NotFound(format!("隔离中的办件“{number}”")));
        }
        let decision = CountyDecision {
            case,
            verdict,
            reason: required("决定理由", reason)?,
            operator: checked_operator(actor.operator.clone())?,
            at: now,
        };
        decision.check(self.register.node)?;
        let report = self.register.decide(&decision)?;
        self.after_received(&report);
        tracing::info!(%case, verdict = verdict.as_str(), "county decision on a quarantined case");
        Ok(DeskReply::Decided {
            case,
            verdict,
            state: self.register.case(&case)?.map(Box::new),
            quarantined_again: !report.alarms.is_empty(),
        })
    }

    /// 改派 at the county: each case (the one named, or every open one `from` holds here) gets
    /// a `Reassigned` event written by the county's own desk; the new custodian signs for it.
    /// Nothing is written unless every case can be reassigned.
    fn reassign(
        &mut self,
        actor: &DeskActor,
        from: &Custodian,
        to: &Custodian,
        number: Option<&str>,
        reason: String,
        now: NaiveDateTime,
    ) -> Reply {
        let operator = checked_operator(actor.operator.clone())?;
        let reason = required("改派理由", reason)?;
        if self.register.topology.node(to.node).is_none() {
            return Err(ClerkError::Invalid {
                field: "新办理人",
                reason: format!("拓扑表中没有节点{}", to.node),
            });
        }
        let cases = match number {
            Some(n) => {
                let case = self.load(n)?;
                if case.custodian != *from {
                    return Err(ClerkError::Invalid {
                        field: "原办理人",
                        reason: format!("办件{n}当前由{}办理，不是{from}", case.custodian),
                    });
                }
                vec![case]
            }
            None => {
                let mut cases = Vec::new();
                for status in OPEN {
                    cases.extend(
                        self.register
                            .cases_by_status(status)?
                            .into_iter()
                            .filter(|c| c.custodian == *from),
                    );
                }
                if cases.is_empty() {
                    return Err(ClerkError::NotFound(format!("{from}经办的未办结办件")));
                }
                cases
            }
        };
        let me = Custodian {
            node: self.register.node,
            department: None,
        };
        let mut planned = Vec::with_capacity(cases.len());
        for case in cases {
            self.not_held(&case.number)?;
            let item = self.item_of(&case)?;
            let event = CaseEvent {
                case: case.number,
                seq: case.next_seq(),
                author: me.clone(),
                operator: operator.clone(),
                at: now,
                body: CaseEventBody::Reassigned {
                    from: from.clone(),
                    to: to.clone(),
                    reason: reason.clone(),
                },
            };
            let mut after = case.clone();
            after.apply(event.clone(), &Rules { item: &item })?;
            planned.push((event, case, after));
        }
        let mut done = Vec::with_capacity(planned.len());
        for (event, before, after) in planned {
            self.register
                .append_case_event(&event, Some(&before), &after)?;
            tracing::info!(case = %after.number, %from, %to, "case reassigned by the county");
            if after.custodian.node == self.register.node {
                self.sign_for(&after.number);
            }
            done.push(after.number);
        }
        Ok(DeskReply::Reassigned(done))
    }

    /// Plans and writes one desk command on a case in `actor`'s custody: the receipt first
    /// when the case was not signed for, the command, then the handoff to the next step's
    /// competent custodian when that is another.
    fn desk_act(
        &mut self,
        actor: &DeskActor,
        number: &str,
        now: NaiveDateTime,
        command: impl FnOnce(&Case, &Rules<'_>) -> Result<Command, ClerkError>,
    ) -> Reply {
        let operator = checked_operator(actor.operator.clone())?;
        let case = self.load(number)?;
        if case.custodian != actor.custodian {
            // A station learns nothing of cases its department never held.
            if actor.custodian.department.is_some()
                && !case.custody_chain.contains(&actor.custodian)
            {
                return Err(ClerkError::NotFound(format!("本窗口经办的办件“{number}”")));
            }
            return Err(ClerkError::Case(
                yimen_core::case::CaseError::NotCustodian {
                    author: actor.custodian.clone(),
                    custodian: case.custodian.clone(),
                },
            ));
        }
        let item = self.item_of(&case)?;
        let rules = Rules { item: &item };
        let core_actor = Actor {
            custodian: actor.custodian.clone(),
            operator,
            at: now,
            calendar: &self.register.calendar,
        };
        let mut plan = Plan::new(case);
        let received_here = !plan.state().received;
        if received_here {
            plan.push(Command::Receive, &core_actor, &rules)?;
        }
        let command = command(plan.state(), &rules)?;
        plan.push(command, &core_actor, &rules)?;
        let forwarded_to = self.plan_route_on(&mut plan, &core_actor, &rules, &item)?;
        let after = self.write(plan)?;
        Ok(DeskReply::Case {
            case: Box::new(after),
            item: Box::new(item),
            forwarded_to,
            received_here,
            hold: None,
        })
    }

    /// Whether a case is quarantined, void, or waiting for newer software here, and why.
    pub(crate) fn hold_of(&self, case: &CaseNumber) -> Result<Option<Hold>, ClerkError> {
        if let Some(d) = self.register.voided(case)? {
            return Ok(Some(Hold {
                kind: HoldKind::Void,
                reason: d.reason,
            }));
        }
        if let Some(q) = self.register.quarantine_of(case)? {
            return Ok(Some(Hold {
                kind: HoldKind::Quarantined,
                reason: q.reason,
            }));
        }
        Ok(self.register.newer_schema_of(case)?.map(|(seq, schema)| Hold {
            kind: HoldKind::NewerSchema,
            reason: format!(
                "第{seq}条事件由新版本软件写入（数据格式第{schema}版），本机软件升级后才能显示此后的办理情况"
            ),
        }))
    }

    /// Adds the handoff (转报) to the next step's competent custodian when the case is open,
    /// in progress, and that custodian is another; returns it.
    fn plan_route_on(
        &self,
        plan: &mut Plan,
        actor: &Actor<'_>,
        rules: &Rules<'_>,
        item: &ItemVersion,
    ) -> Result<Option<Custodian>, ClerkError> {
        let state = plan.state();
        if state.status != CaseStatus::Processing || !state.received {
            return Ok(None);
        }
        let Some(step) = state.next_step(rules) else {
            return Ok(None);
        };
        let to = routing::competent_at(
            &self.register.topology,
            item,
            state.next_step,
            state.accepted_by.node,
            state.applicant.household,
        )?;
        if to == state.custodian {
            return Ok(None);
        }
        let reason = format!("转{}", step.name);
        plan.push(
            Command::Forward {
                to: to.clone(),
                reason,
            },
            actor,
            rules,
        )?;
        Ok(Some(to))
    }

    /// Writes a plan's events in order; returns the case after the last.
    fn write(&mut self, plan: Plan) -> Result<Case, ClerkError> {
        self.not_held(&plan.before.number)?;
        let mut before = plan.before;
        for (event, after) in plan.steps {
            self.register
                .append_case_event(&event, Some(&before), &after)?;
            tracing::debug!(case = %after.number, kind = event.body.kind(), author = %event.author, "desk event");
            before = after;
        }
        Ok(before)
    }

    /// Open cases whose custodian is `desk`, earliest deadline first.
    fn pending(&mut self, desk: &Custodian, today: NaiveDate, limit: usize) -> Reply {
        let limit = limit.clamp(1, DESK_CASES_MAX);
        let mut out = Vec::new();
        for status in OPEN {
            for case in self.register.cases_by_status(status)? {
                if case.custodian != *desk {
                    continue;
                }
                // A case whose item version is missing here is still listed (without its
                // next step): the desk must see it to ask for the catalog.
                let next = self.item_of(&case).ok().and_then(|item| {
                    case.next_step(&Rules { item: &item })
                        .map(|s| (s.code.0.clone(), s.action))
                });
                let due = case.due(today, &self.register.calendar);
                out.push(PendingCase { case, next, due });
            }
        }
        out.sort_by(|a, b| {
            (a.case.deadline.due, a.case.number.to_string())
                .cmp(&(b.case.deadline.due, b.case.number.to_string()))
        });
        out.truncate(limit);
        Ok(DeskReply::Pending(out))
    }

    /// Cases handed off and not signed for since longer than `older_than`, longest first.
    fn transit(&mut self, scope: &DeskScope, now: NaiveDateTime, older_than: Duration) -> Reply {
        let mut out = Vec::new();
        for status in [CaseStatus::Processing, CaseStatus::AwaitingSupplement] {
            for case in self.register.cases_by_status(status)? {
                if !case.in_transit() {
                    continue;
                }
                if let DeskScope::Custodian(c) = scope
                    && case.custodian != *c
                {
                    continue;
                }
                let Some(handoff) = case.events.last() else {
                    continue;
                };
                // A clock behind the sender's counts as no wait yet.
                let waited = (now - handoff.at).to_std().unwrap_or(Duration::ZERO);
                if waited < older_than {
                    continue;
                }
                out.push(InTransit {
                    number: case.number,
                    item_name: case.acceptance.item_name.clone(),
                    from: handoff.author.clone(),
                    to: case.custodian.clone(),
                    since: handoff.at,
                    waited,
                });
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.waited));
        Ok(DeskReply::Transit(out))
    }

    /// One pass of the custodian's timers over the open cases this node holds custody of (any
    /// department): ends every 公示 that has run its course and, when no objection was
    /// recorded, hands the case on to the next step; confirms provisional deadlines the
    /// calendar now covers; lists deadlines that are near or past. A case the timer cannot
    /// act on is reported and skipped; a storage failure ends the pass.
    fn tick(&mut self, now: NaiveDateTime) -> Result<TickReport, ClerkError> {
        let today = now.date();
        let me = self.register.node;
        let hub = me.tier() != Tier::Village;
        let mut report = TickReport::default();
        for status in OPEN {
            for case in self.register.cases_by_status(status)? {
                if case.custodian.node != me {
                    continue;
                }
                if !case.received {
                    // Handed here without a receipt yet (the node signs on arrival; this
                    // catches one applied at start, after an upgrade).
                    if self.not_held(&case.number).is_ok() {
                        self.sign_for(&case.number);
                    }
                    continue;
                }
                let number = case.number;
                if self.not_held(&number).is_err() {
                    // Waits for the county's decision; the desk's quarantine list shows it.
                    continue;
                }
                let (mut end_notice, mut confirm) = (false, false);
                for due in case.due(today, &self.register.calendar) {
                    match due {
                        Due::DeadlineApproaching { due } => report.approaching.push((number, due)),
                        Due::Overdue { due } => report.overdue.push((number, due)),
                        Due::EndNotice { .. } => end_notice = true,
                        Due::ConfirmDeadline { .. } => confirm = true,
                    }
                }
                if !end_notice && !confirm {
                    continue;
                }
                match self.timer_act(case, now, (end_notice, confirm, hub), &mut report) {
                    Ok(()) => {}
                    Err(e @ (ClerkError::Register(_) | ClerkError::Stopped(_))) => return Err(e),
                    Err(e) => report.failed.push((number, e.to_string())),
                }
            }
        }
        Ok(report)
    }

    /// The timer's events on one case: the deadline confirmation, the end of the notice and
    /// (at a hub, with no objection) the handoff to the next step; once written, entered in
    /// `report`.
    fn timer_act(
        &mut self,
        case: Case,
        now: NaiveDateTime,
        (end_notice, confirm, hub): (bool, bool, bool),
        report: &mut TickReport,
    ) -> Result<(), ClerkError> {
        let number = case.number;
        let item = self.item_of(&case)?;
        let rules = Rules { item: &item };
        let actor = Actor {
            custodian: case.custodian.clone(),
            operator: TIMER_OPERATOR.to_owned(),
            at: now,
            calendar: &self.register.calendar,
        };
        let mut plan = Plan::new(case);
        if confirm {
            plan.push(Command::ConfirmDeadline, &actor, &rules)?;
        }
        let mut handed_to = None;
        if end_notice {
            plan.push(Command::EndNotice, &actor, &rules)?;
            let objections = matches!(
                plan.state().events.last().map(|e| &e.body),
                Some(CaseEventBody::NoticeEnded { objections, .. }) if *objections > 0
            );
            // Objections are for the reviewer to weigh: the case waits at the desk.
            if hub && !objections {
                handed_to = self.plan_route_on(&mut plan, &actor, &rules, &item)?;
            }
        }
        self.write(plan)?;
        if confirm {
            report.confirmed.push(number);
        }
        if end_notice {
            report.notices_ended.push((number, handed_to));
        }
        Ok(())
    }
}

fn parse_number(s: &str) -> Result<CaseNumber, ClerkError> {
    CaseNumber::parse(s.trim()).map_err(|e| ClerkError::Invalid {
        field: "办件编号",
        reason: e.reason_zh(),
    })
}

fn required(field: &'static str, s: String) -> Result<String, ClerkError> {
    let s = s.trim().to_owned();
    if s.is_empty() {
        return Err(ClerkError::Invalid {
            field,
            reason: "不能为空".to_owned(),
        });
    }
    Ok(s)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use std::sync::Arc;

    use chrono::NaiveDate;
    use yimen_core::case::CaseStatus;
    use yimen_core::catalog::{MaterialCode, NodeId};
    use yimen_core::command::{self, Application};
    use yimen_core::person::{Applicant, IdNumber, PersonName, Status};
    use yimen_core::sample;

    use super::*;
    use crate::clock::ManualClock;
    use crate::register::{Recovery, Register};
    use crate::store::Epoch;
    use crate::store::mem::MemStore;

    const VILLAGE: &str = "430421105204";
    const TOWNSHIP: &str = "430421105000";
    const COUNTY: &str = "430421000000";

    fn code(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    /// A township node on a fresh in-memory store, its clock on a Thursday morning.
    fn township() -> (Node<MemStore>, ManualClock) {
        let node = code(TOWNSHIP);
        let (store, opened) = MemStore::new(Epoch(1));
        let register = Register::open(
            store,
            opened,
            node,
            crate::server::bootstrap(node),
            Recovery::Stop,
        )
        .unwrap();
        let at = NaiveDate::from_ymd_opt(2026, 9, 24)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        let clock = ManualClock::at_beijing(at);
        (Node::new(register, Arc::new(clock.clone())), clock)
    }

    fn reviewer() -> DeskActor {
        DeskActor {
            custodian: DeskActor::custodian_of(code(TOWNSHIP), None),
            operator: "王丽".to_owned(),
        }
    }

    fn station() -> DeskActor {
        DeskActor {
            custodian: DeskActor::custodian_of(code(COUNTY), Some(sample::DEPT_MEDICAL_INSURANCE)),
            operator: "李四".to_owned(),
        }
    }

    /// A 医疗救助 case of the village, pre-checked and handed to the township, as the
    /// township holds it once its events have arrived (written here directly); `seq`
    /// numbers it.
    fn arrive(node: &mut Node<MemStore>, seq: u16) -> String {
        let item = sample::medical_aid(sample::SampleOptions::default());
        let rules = Rules { item: &item };
        let at = node.clock.beijing() - chrono::Duration::hours(1);
        let calendar = node.register.calendar.clone();
        let village = Actor {
            custodian: DeskActor::custodian_of(code(VILLAGE), None),
            operator: "村办事员".to_owned(),
            at,
            calendar: &calendar,
        };
        let mut statuses = BTreeSet::new();
        statuses.insert(Status::Dibao);
        let applicant = Applicant {
            id_number: IdNumber::parse("430421199001011233").unwrap(),
            name: PersonName::parse("王秀兰").unwrap(),
            household: code(VILLAGE),
            statuses,
        };
        let number =
            yimen_core::numbering::CaseNumber::parse(&format!("{VILLAGE}20260924{seq:04}"))
                .unwrap();
        let accepted = command::accept(
            &item,
            Application {
                applicant,
                helper: None,
                presented: ["zyfp", "xnhpj", "dbz"]
                    .into_iter()
                    .map(|m| MaterialCode(m.to_owned()))
                    .collect(),
                home_village: Some(code(VILLAGE)),
            },
            number,
            &village,
        )
        .unwrap();
        let case = Case::open(accepted.clone(), &rules).unwrap();
        node.register
            .append_case_event(&accepted, None, &case)
            .unwrap();
        let mut plan = Plan::new(case);
        plan.push(
            Command::DoStep {
                opinion: "初审通过".to_owned(),
            },
            &village,
            &rules,
        )
        .unwrap();
        plan.push(
            Command::Forward {
                to: DeskActor::custodian_of(code(TOWNSHIP), None),
                reason: "转乡镇审核".to_owned(),
            },
            &village,
            &rules,
        )
        .unwrap();
        node.write(plan).unwrap();
        number.to_string()
    }

    fn case_of(reply: DeskReply) -> (Case, Option<Custodian>, bool) {
        match reply {
            DeskReply::Case {
                case,
                forwarded_to,
                received_here,
                ..
            } => (*case, forwarded_to, received_here),
            other => panic!("not a case: {other:?}"),
        }
    }

    fn tick(node: &mut Node<MemStore>) -> TickReport {
        match node.handle_desk(DeskOp::Tick).unwrap() {
            DeskReply::Ticked(r) => r,
            other => panic!("not a tick: {other:?}"),
        }
    }

    fn step(actor: DeskActor, case: &str, action: StepAction) -> DeskOp {
        DeskOp::Step {
            actor,
            case: case.to_owned(),
            action,
            opinion: "同意".to_owned(),
        }
    }

    #[test]
    fn review_signs_for_the_case_first_and_the_timer_ends_the_notice_and_hands_it_on() {
        let (mut node, clock) = township();
        let number = arrive(&mut node, 1);
        match node
            .handle_desk(DeskOp::Pending {
                desk: reviewer().custodian,
                limit: 10,
            })
            .unwrap()
        {
            DeskReply::Pending(p) => {
                assert_eq!(p.len(), 1);
                assert!(!p[0].case.received, "handed here, not yet signed for");
                assert_eq!(p[0].next, Some(("sh".to_owned(), StepAction::Review)));
            }
            other => panic!("{other:?}"),
        }
        let (case, to, received_here) = case_of(
            node.handle_desk(step(reviewer(), &number, StepAction::Review))
                .unwrap(),
        );
        assert!(received_here);
        assert_eq!(to, None, "公示 is the township's too");
        let kinds: Vec<&str> = case.events.iter().map(|e| e.body.kind()).collect();
        assert_eq!(
            kinds,
            [
                "accepted",
                "step_done",
                "forwarded",
                "received",
                "step_done"
            ]
        );
        let (case, _, _) = case_of(
            node.handle_desk(DeskOp::Notice {
                actor: reviewer(),
                case: number.clone(),
            })
            .unwrap(),
        );
        assert_eq!(case.status, CaseStatus::InNotice);
        let ends = case.notice_ends.unwrap();
        // Before the notice has run its course the timer leaves it.
        let report = tick(&mut node);
        assert!(report.notices_ended.is_empty(), "{report:?}");
        clock.set((ends.and_hms_opt(8, 0, 0).unwrap() - chrono::Duration::hours(8)).and_utc());
        let report = tick(&mut node);
        let ybj = station().custodian;
        assert_eq!(report.notices_ended, vec![(case.number, Some(ybj.clone()))]);
        let after = node.register.case(&case.number).unwrap().unwrap();
        assert_eq!(after.custodian, ybj);
        assert!(after.in_transit());
        let ended = &after.events[after.events.len() - 2];
        assert_eq!(ended.operator, TIMER_OPERATOR);
        // A second pass finds nothing more to do.
        assert!(tick(&mut node).notices_ended.is_empty());
        // Supervision: handed off an hour ago, listed beyond 30 minutes, not beyond 2 hours.
        clock.advance(chrono::Duration::hours(1));
        let listed = |node: &mut Node<MemStore>, older_than| match node
            .handle_desk(DeskOp::Transit {
                scope: DeskScope::Node,
                older_than,
            })
            .unwrap()
        {
            DeskReply::Transit(t) => t,
            other => panic!("{other:?}"),
        };
        let t = listed(&mut node, Duration::from_secs(1800));
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].from.clone(), t[0].to.clone()),
            (reviewer().custodian, ybj)
        );
        assert!(listed(&mut node, Duration::from_secs(7200)).is_empty());
    }

    #[test]
    fn a_desk_acts_only_on_its_own_cases_and_steps() {
        let (mut node, _) = township();
        let number = arrive(&mut node, 2);
        // Not the next step: nothing is written, not even the receipt.
        let err = node
            .handle_desk(step(reviewer(), &number, StepAction::Approve))
            .unwrap_err();
        assert!(err.reason_zh().contains("下一环节"), "{}", err.reason_zh());
        let err = node
            .handle_desk(DeskOp::Notice {
                actor: reviewer(),
                case: number.clone(),
            })
            .unwrap_err();
        assert!(matches!(err, ClerkError::Case(_)), "{err}");
        let case = node
            .register
            .case(&number.parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(case.events.len(), 3, "nothing written");
        // A station of a department that never held it does not see it.
        let err = node
            .handle_desk(step(station(), &number, StepAction::Approve))
            .unwrap_err();
        assert!(matches!(err, ClerkError::NotFound(_)), "{err}");
        let err = node
            .handle_desk(DeskOp::Show {
                scope: DeskScope::Custodian(station().custodian),
                case: number.clone(),
            })
            .unwrap_err();
        assert!(matches!(err, ClerkError::NotFound(_)), "{err}");
        // Every write names its operator.
        let nobody = DeskActor {
            operator: " ".to_owned(),
            ..reviewer()
        };
        let err = node
            .handle_desk(step(nobody, &number, StepAction::Review))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClerkError::Invalid {
                    field: "经办人",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn return_refuse_and_extend_are_checked_and_recorded() {
        let (mut node, _) = township();
        let returned = arrive(&mut node, 3);
        let err = node
            .handle_desk(DeskOp::Return {
                actor: reviewer(),
                case: returned.clone(),
                missing: vec![" ".to_owned()],
                reason: "材料不清".to_owned(),
            })
            .unwrap_err();
        assert!(matches!(err, ClerkError::Case(_)), "{err}");
        let (case, to, _) = case_of(
            node.handle_desk(DeskOp::Return {
                actor: reviewer(),
                case: returned,
                missing: vec!["住院发票原件".to_owned(), "住院发票原件".to_owned()],
                reason: "发票为复印件".to_owned(),
            })
            .unwrap(),
        );
        assert_eq!(to, None, "退回 hands custody back by itself");
        assert_eq!(case.status, CaseStatus::AwaitingSupplement);
        assert_eq!(case.custodian, case.accepted_by);
        assert!(matches!(
            &case.events.last().unwrap().body,
            CaseEventBody::Returned { missing, .. } if missing.len() == 1
        ));

        let refused = arrive(&mut node, 4);
        let err = node
            .handle_desk(DeskOp::Refuse {
                actor: reviewer(),
                case: refused.clone(),
                reason: String::new(),
            })
            .unwrap_err();
        assert!(matches!(err, ClerkError::Invalid { .. }), "{err}");
        let err = node
            .handle_desk(DeskOp::Extend {
                actor: reviewer(),
                case: refused.clone(),
                working_days: 0,
                reason: "核实".to_owned(),
                approved_by: "镇长".to_owned(),
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClerkError::Invalid {
                    field: "延长天数",
                    ..
                }
            ),
            "{err}"
        );
        let before = node
            .register
            .case(&refused.parse().unwrap())
            .unwrap()
            .unwrap()
            .deadline;
        let (case, _, _) = case_of(
            node.handle_desk(DeskOp::Extend {
                actor: reviewer(),
                case: refused.clone(),
                working_days: 3,
                reason: "核实".to_owned(),
                approved_by: "镇长".to_owned(),
            })
            .unwrap(),
        );
        assert_eq!(case.deadline.working_days, before.working_days + 3);
        let (case, _, _) = case_of(
            node.handle_desk(DeskOp::Refuse {
                actor: reviewer(),
                case: refused,
                reason: "不符合救助条件".to_owned(),
            })
            .unwrap(),
        );
        assert_eq!(case.status, CaseStatus::Refused);
        match node
            .handle_desk(DeskOp::Pending {
                desk: reviewer().custodian,
                limit: 10,
            })
            .unwrap()
        {
            DeskReply::Pending(p) => assert!(p.is_empty(), "{p:?}"),
            other => panic!("{other:?}"),
        }
    }
}
