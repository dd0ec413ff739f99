//! Commands: what a clerk, reviewer or station asks of a case, turned into the next event.
//!
//! The writer of an event computes any deadline in it here, once, with its calendar; the
//! event is then checked by `Case::check` exactly as a peer's copy will be.
//!
//! Invariants: a command never changes a case by itself: it returns an event for the shell
//! to persist and then apply; an incomplete intake never yields an acceptance.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;

use crate::calendar::{Calendar, CalendarError};
use crate::case::{
    Acceptance, Case, CaseError, CaseEvent, CaseEventBody, CaseStatus, Correction, Helper, Request,
    RequestId, RequestKind, Rules,
};
use crate::catalog::{CaseType, ItemVersion, MaterialCode, NodeId, StepAction};
use crate::deadline::Deadline;
use crate::intake::{self, IntakeReport};
use crate::numbering::CaseNumber;
use crate::person::Applicant;
use crate::routing::Custodian;

/// Who acts, when, with which calendar.
pub struct Actor<'a> {
    pub custodian: Custodian,
    pub operator: String,
    /// Beijing time.
    pub at: NaiveDateTime,
    pub calendar: &'a Calendar,
}

/// What can be asked of a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Sign for a case handed over (签收).
    Receive,
    /// Do the next step (初审, 审核, 审批, 发放).
    DoStep {
        opinion: String,
    },
    /// Start the next step's 公示, delivered to the resident's home village.
    StartNotice {
        delivered_to: Vec<NodeId>,
    },
    /// End the running 公示 (the custodian's timer).
    EndNotice,
    /// 转报.
    Forward {
        to: Custodian,
        reason: String,
    },
    /// 退回补正.
    Return {
        missing: Vec<String>,
        reason: String,
    },
    /// Material arrived at the custodian's counter.
    Supplement {
        materials: BTreeSet<MaterialCode>,
    },
    /// Accept or decline a request addressed to this custodian.
    Decide {
        request: Request,
        accept: bool,
        reason: String,
    },
    Correct {
        of: u64,
        correction: Correction,
        reason: String,
    },
    Extend {
        working_days: u16,
        reason: String,
        approved_by: String,
    },
    Pause {
        reason: String,
    },
    Resume,
    ConfirmDeadline,
    Refuse {
        reason: String,
    },
    Complete {
        result: String,
    },
    Evaluate {
        satisfaction: u8,
    },
}

/// Why an acceptance was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    #[error("intake incomplete: {} problem(s)", .0.problem_count())]
    Incomplete(IntakeReport),
    #[error("calendar: {0}")]
    Calendar(CalendarError),
    #[error(transparent)]
    Case(CaseError),
}

impl AcceptError {
    pub fn reason_zh(&self) -> String {
        match self {
            AcceptError::Incomplete(r) => {
                format!(
                    "材料或条件不齐，一次性告知如下：\n{}",
                    r.lines_zh().join("\n")
                )
            }
            AcceptError::Calendar(e) => e.reason_zh(),
            AcceptError::Case(e) => e.reason_zh(),
        }
    }
}

/// Everything acceptance needs besides the item and the actor.
pub struct Application {
    pub applicant: Applicant,
    pub helper: Option<Helper>,
    pub presented: BTreeSet<MaterialCode>,
    pub home_village: Option<NodeId>,
}

/// Intake, and when complete the acceptance event (sequence 1) with the committed deadline.
pub fn accept(
    item: &ItemVersion,
    application: Application,
    number: CaseNumber,
    actor: &Actor<'_>,
) -> Result<CaseEvent, AcceptError> {
    let today = actor.at.date();
    let report = intake::check(item, &application.applicant, &application.presented, today);
    if !report.is_complete() {
        return Err(AcceptError::Incomplete(report));
    }
    let deadline = match item.case_type {
        CaseType::Immediate => Deadline::immediate(today, actor.calendar.version),
        CaseType::Committed | CaseType::Other => Deadline::compute(
            actor.calendar,
            today,
            u32::from(item.committed_limit.days()),
        )
        .map_err(AcceptError::Calendar)?,
    };
    let event = CaseEvent {
        case: number,
        seq: 1,
        author: actor.custodian.clone(),
        operator: actor.operator.clone(),
        at: actor.at,
        body: CaseEventBody::Accepted(Box::new(Acceptance {
            item: item.key(),
            item_name: item.name.clone(),
            case_type: item.case_type,
            applicant: application.applicant,
            helper: application.helper,
            materials: application.presented,
            clerk: actor.operator.clone(),
            deadline,
            home_village: application.home_village,
        })),
    };
    // Checked as every peer will check it.
    Case::open(event.clone(), &Rules { item }).map_err(AcceptError::Case)?;
    Ok(event)
}

impl Case {
    /// Turns a command into the next event, checked against the current state.
    pub fn propose(
        &self,
        command: Command,
        actor: &Actor<'_>,
        rules: &Rules<'_>,
    ) -> Result<CaseEvent, CaseError> {
        let calendar_err = |e: CalendarError| CaseError::Invalid {
            what: "工作日历",
            reason: e.reason_zh(),
        };
        let today = actor.at.date();
        let body = match command {
            Command::Receive => CaseEventBody::Received,
            Command::DoStep { opinion } => {
                let step = self.next_step(rules).ok_or(CaseError::StepOrder {
                    expected: None,
                    got: "?".to_owned(),
                })?;
                CaseEventBody::StepDone {
                    step: step.code.clone(),
                    action: step.action,
                    opinion,
                }
            }
            Command::StartNotice { delivered_to } => {
                let step = self.next_step(rules).ok_or(CaseError::StepOrder {
                    expected: None,
                    got: "公示".to_owned(),
                })?;
                let rule = step.notice.ok_or(CaseError::StepAction {
                    step: step.code.0.clone(),
                    expected: step.action,
                    got: StepAction::Notice,
                })?;
                let days = u32::from(rule.working_days);
                // Like a deadline, the end of a notice that runs past the calendar's last
                // year is counted on weekdays only (provisional, DESIGN.md "Time").
                let ends = Deadline::compute(actor.calendar, today, days)
                    .map_err(calendar_err)?
                    .due;
                let deadline = if rule.counts_toward_limit {
                    None
                } else {
                    Some(
                        self.deadline
                            .lengthened(actor.calendar, days)
                            .map_err(calendar_err)?,
                    )
                };
                CaseEventBody::NoticeStarted {
                    step: step.code.clone(),
                    from: today,
                    ends,
                    delivered_to,
                    deadline,
                }
            }
            Command::EndNotice => {
                let step = self.next_step(rules).ok_or(CaseError::NotInNotice)?;
                CaseEventBody::NoticeEnded {
                    step: step.code.clone(),
                    objections: self.objections,
                }
            }
            Command::Forward { to, reason } => CaseEventBody::Forwarded { to, reason },
            Command::Return { missing, reason } => CaseEventBody::Returned { missing, reason },
            Command::Supplement { materials } => {
                self.supplement_body(materials, today, None, actor, rules)?
            }
            Command::Decide {
                request,
                accept,
                reason,
            } => {
                if request.case != self.number {
                    return Err(CaseError::OtherCase {
                        case: self.number.to_string(),
                        got: request.case.to_string(),
                    });
                }
                if !accept {
                    CaseEventBody::RequestDeclined {
                        request: request.id,
                        reason,
                    }
                } else {
                    match request.kind {
                        RequestKind::Withdrawal { .. } => CaseEventBody::Withdrawn {
                            request: request.id,
                        },
                        RequestKind::Supplement { materials, arrived } => self.supplement_body(
                            materials,
                            arrived,
                            Some(request.id),
                            actor,
                            rules,
                        )?,
                        RequestKind::Objection { text } => CaseEventBody::ObjectionRecorded {
                            request: request.id,
                            text,
                        },
                        RequestKind::Opinion { text } => CaseEventBody::Assisted {
                            by: request.from,
                            opinion: text,
                            request: request.id,
                        },
                    }
                }
            }
            Command::Correct {
                of,
                correction,
                reason,
            } => CaseEventBody::Corrected {
                of,
                correction,
                reason,
            },
            Command::Extend {
                working_days,
                reason,
                approved_by,
            } => CaseEventBody::Extended {
                working_days,
                reason,
                approved_by,
                deadline: self
                    .deadline
                    .lengthened(actor.calendar, u32::from(working_days))
                    .map_err(calendar_err)?,
            },
            Command::Pause { reason } => CaseEventBody::Paused {
                reason,
                from: today,
            },
            Command::Resume => {
                let from = self
                    .events
                    .iter()
                    .rev()
                    .find_map(|e| match e.body {
                        CaseEventBody::Paused { from, .. } => Some(from),
                        _ => None,
                    })
                    .ok_or(CaseError::Status {
                        status: self.status,
                    })?;
                let paused = actor
                    .calendar
                    .working_days_between(from, today)
                    .map_err(calendar_err)?;
                CaseEventBody::Resumed {
                    on: today,
                    deadline: self
                        .deadline
                        .lengthened(actor.calendar, paused)
                        .map_err(calendar_err)?,
                }
            }
            Command::ConfirmDeadline => CaseEventBody::DeadlineConfirmed {
                deadline: self
                    .deadline
                    .confirmation(actor.calendar)
                    .ok_or(CaseError::Invalid {
                        what: "期限确认",
                        reason: "期限不是暂定的，或日历仍未覆盖".to_owned(),
                    })?,
            },
            Command::Refuse { reason } => CaseEventBody::Refused {
                step: self.next_step(rules).map(|s| s.code.clone()),
                reason,
            },
            Command::Complete { result } => CaseEventBody::Completed { result },
            Command::Evaluate { satisfaction } => CaseEventBody::Evaluated { satisfaction },
        };
        let event = CaseEvent {
            case: self.number,
            seq: self.next_seq(),
            author: actor.custodian.clone(),
            operator: actor.operator.clone(),
            at: actor.at,
            body,
        };
        self.check(&event, rules)?;
        Ok(event)
    }

    fn supplement_body(
        &self,
        materials: BTreeSet<MaterialCode>,
        arrived: chrono::NaiveDate,
        request: Option<RequestId>,
        actor: &Actor<'_>,
        rules: &Rules<'_>,
    ) -> Result<CaseEventBody, CaseError> {
        // After a return the clock restarts the day after the material arrives, with the
        // whole committed limit (重新计算); pauses still to come add themselves. Otherwise the
        // deadline stands.
        let deadline = if self.status == CaseStatus::AwaitingSupplement && !self.is_immediate() {
            let limit = u32::from(rules.item.committed_limit.days());
            Some(
                Deadline::compute(actor.calendar, arrived, limit).map_err(|e| {
                    CaseError::Invalid {
                        what: "工作日历",
                        reason: e.reason_zh(),
                    }
                })?,
            )
        } else {
            None
        };
        Ok(CaseEventBody::Supplemented {
            materials,
            arrived,
            request,
            deadline,
        })
    }
}
