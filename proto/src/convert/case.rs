//! Case events and requests: wire ([`pb::CaseEventPayload`], [`pb::RequestPayload`]) <->
//! domain (`yimen_core::case`).
//!
//! Invariants: as for the rest of [`crate::convert`] (every field parsed with the core's own
//! parsers, errors name the field path such as `body.accepted.applicant.id_number`, no
//! panic, domain → wire → domain is the identity), and in addition: ID numbers and names are
//! never echoed, neither in a [`WireError`] nor in the `Debug` of the wire messages that
//! carry them (`Applicant`, `Helper`, `Correction`: build.rs skips their derived `Debug`,
//! this module supplies a masked one). The wire checks what a value must be to exist in the
//! domain; whether an event may be applied to its case (text lengths, satisfaction 1..=5,
//! custody, order) is `yimen_core::case::Case::check`'s business.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use yimen_core::case::{
    Acceptance, CaseEvent, CaseEventBody, Correction, CountyDecision, Helper, QuarantineAlarm,
    Request, RequestId, RequestKind, RevisionAlarm, TEXT_CHARS_MAX, Verdict,
};
use yimen_core::catalog::{
    CODE_CHARS_MAX, CaseType, ItemCode, ItemVersionKey, MaterialCode, StepAction, StepCode,
};
use yimen_core::deadline::Deadline;
use yimen_core::numbering::CaseNumber;
use yimen_core::person::{Applicant, IdNumber, PERSON_NAME_CHARS_MAX, PersonName, Status};
use yimen_core::routing::Custodian;

use super::{Path, WireError, date, date_to_wire, division, required, small, text};
use crate::pb;
use crate::pb::case_event_payload as ev;
use crate::pb::request_payload as rq;

/// Seconds in a day: `LocalDateTime.seconds_of_day` is below this.
const SECONDS_PER_DAY: u32 = 86_400;

// ---------------------------------------------------------------------------------------
// Case events

impl TryFrom<pb::CaseEventPayload> for CaseEvent {
    type Error = WireError;
    fn try_from(w: pb::CaseEventPayload) -> Result<Self, WireError> {
        let root = Path::ROOT;
        let case = case_number(&root.field("case_number"), &w.case_number)?;
        if w.seq == 0 {
            return Err(root.field("seq").invalid("must be greater than 0"));
        }
        let author = custodian(&root.field("author"), w.author)?;
        let at = local_date_time(&root.field("at"), w.at)?;
        let body_path = root.field("body");
        let body = event_body(&body_path, required(&body_path, w.body)?)?;
        Ok(CaseEvent {
            case,
            seq: w.seq,
            author,
            operator: w.operator,
            at,
            body,
        })
    }
}

impl From<&CaseEvent> for pb::CaseEventPayload {
    fn from(e: &CaseEvent) -> Self {
        pb::CaseEventPayload {
            case_number: e.case.to_string(),
            seq: e.seq,
            author: Some(custodian_to_wire(&e.author)),
            operator: e.operator.clone(),
            at: Some(local_date_time_to_wire(e.at)),
            body: Some(event_body_to_wire(&e.body)),
        }
    }
}

impl From<CaseEvent> for pb::CaseEventPayload {
    fn from(e: CaseEvent) -> Self {
        (&e).into()
    }
}

fn event_body(p: &Path<'_>, w: ev::Body) -> Result<CaseEventBody, WireError> {
    use ev::Body as B;
    Ok(match w {
        B::Accepted(a) => CaseEventBody::Accepted(Box::new(acceptance(&p.field("accepted"), a)?)),
        B::StepDone(s) => {
            let p = p.field("step_done");
            CaseEventBody::StepDone {
                step: step_code(&p.field("step"), s.step)?,
                action: step_action(&p.field("action"), &s.action)?,
                opinion: s.opinion,
            }
        }
        B::NoticeStarted(n) => {
            let p = p.field("notice_started");
            CaseEventBody::NoticeStarted {
                step: step_code(&p.field("step"), n.step)?,
                from: required_date(&p.field("from"), n.from.as_ref())?,
                ends: required_date(&p.field("ends"), n.ends.as_ref())?,
                delivered_to: n
                    .delivered_to
                    .iter()
                    .enumerate()
                    .map(|(i, s)| division(&p.at("delivered_to", i), s))
                    .collect::<Result<_, _>>()?,
                deadline: optional_deadline(&p.field("deadline"), n.deadline)?,
            }
        }
        B::NoticeEnded(n) => CaseEventBody::NoticeEnded {
            step: step_code(&p.field("notice_ended").field("step"), n.step)?,
            objections: n.objections,
        },
        B::Forwarded(f) => CaseEventBody::Forwarded {
            to: custodian(&p.field("forwarded").field("to"), f.to)?,
            reason: f.reason,
        },
        B::Received(ev::Received {}) => CaseEventBody::Received,
        B::Returned(r) => CaseEventBody::Returned {
            missing: r.missing,
            reason: r.reason,
        },
        B::Supplemented(s) => {
            let p = p.field("supplemented");
            CaseEventBody::Supplemented {
                materials: material_codes(&p, s.materials)?,
                arrived: required_date(&p.field("arrived"), s.arrived.as_ref())?,
                request: match s.request {
                    None => None,
                    Some(r) => Some(request_id(&p.field("request"), Some(r))?),
                },
                deadline: optional_deadline(&p.field("deadline"), s.deadline)?,
            }
        }
        B::Assisted(a) => {
            let p = p.field("assisted");
            CaseEventBody::Assisted {
                by: custodian(&p.field("by"), a.by)?,
                opinion: a.opinion,
                request: request_id(&p.field("request"), a.request)?,
            }
        }
        B::ObjectionRecorded(o) => CaseEventBody::ObjectionRecorded {
            request: request_id(&p.field("objection_recorded").field("request"), o.request)?,
            text: o.text,
        },
        B::RequestDeclined(d) => CaseEventBody::RequestDeclined {
            request: request_id(&p.field("request_declined").field("request"), d.request)?,
            reason: d.reason,
        },
        B::Corrected(c) => {
            let p = p.field("corrected");
            CaseEventBody::Corrected {
                of: c.of,
                correction: correction(&p.field("correction"), c.correction)?,
                reason: c.reason,
            }
        }
        B::Extended(x) => {
            let p = p.field("extended");
            CaseEventBody::Extended {
                working_days: small(&p.field("working_days"), x.working_days)?,
                reason: x.reason,
                approved_by: x.approved_by,
                deadline: deadline(&p.field("deadline"), x.deadline)?,
            }
        }
        B::Paused(x) => CaseEventBody::Paused {
            from: required_date(&p.field("paused").field("from"), x.from.as_ref())?,
            reason: x.reason,
        },
        B::Resumed(r) => {
            let p = p.field("resumed");
            CaseEventBody::Resumed {
                on: required_date(&p.field("on"), r.on.as_ref())?,
                deadline: deadline(&p.field("deadline"), r.deadline)?,
            }
        }
        B::DeadlineConfirmed(d) => CaseEventBody::DeadlineConfirmed {
            deadline: deadline(&p.field("deadline_confirmed").field("deadline"), d.deadline)?,
        },
        B::Refused(r) => CaseEventBody::Refused {
            step: match r.step {
                None => None,
                Some(s) => Some(step_code(&p.field("refused").field("step"), s)?),
            },
            reason: r.reason,
        },
        B::Withdrawn(x) => CaseEventBody::Withdrawn {
            request: request_id(&p.field("withdrawn").field("request"), x.request)?,
        },
        B::Completed(c) => CaseEventBody::Completed { result: c.result },
        B::Evaluated(e) => CaseEventBody::Evaluated {
            satisfaction: small(&p.field("evaluated").field("satisfaction"), e.satisfaction)?,
        },
        B::Reassigned(r) => {
            let p = p.field("reassigned");
            CaseEventBody::Reassigned {
                from: custodian(&p.field("from"), r.from)?,
                to: custodian(&p.field("to"), r.to)?,
                reason: r.reason,
            }
        }
    })
}

fn event_body_to_wire(body: &CaseEventBody) -> ev::Body {
    use ev::Body as B;
    match body {
        CaseEventBody::Accepted(a) => B::Accepted(acceptance_to_wire(a)),
        CaseEventBody::StepDone {
            step,
            action,
            opinion,
        } => B::StepDone(ev::StepDone {
            step: step.0.clone(),
            action: action.as_str().to_owned(),
            opinion: opinion.clone(),
        }),
        CaseEventBody::NoticeStarted {
            step,
            from,
            ends,
            delivered_to,
            deadline,
        } => B::NoticeStarted(ev::NoticeStarted {
            step: step.0.clone(),
            from: Some(date_to_wire(*from)),
            ends: Some(date_to_wire(*ends)),
            delivered_to: delivered_to.iter().map(ToString::to_string).collect(),
            deadline: deadline.as_ref().map(deadline_to_wire),
        }),
        CaseEventBody::NoticeEnded { step, objections } => B::NoticeEnded(ev::NoticeEnded {
            step: step.0.clone(),
            objections: *objections,
        }),
        CaseEventBody::Forwarded { to, reason } => B::Forwarded(ev::Forwarded {
            to: Some(custodian_to_wire(to)),
            reason: reason.clone(),
        }),
        CaseEventBody::Received => B::Received(ev::Received {}),
        CaseEventBody::Returned { missing, reason } => B::Returned(ev::Returned {
            missing: missing.clone(),
            reason: reason.clone(),
        }),
        CaseEventBody::Supplemented {
            materials,
            arrived,
            request,
            deadline,
        } => B::Supplemented(ev::Supplemented {
            materials: material_codes_to_wire(materials),
            arrived: Some(date_to_wire(*arrived)),
            request: request.as_ref().map(request_id_to_wire),
            deadline: deadline.as_ref().map(deadline_to_wire),
        }),
        CaseEventBody::Assisted {
            by,
            opinion,
            request,
        } => B::Assisted(ev::Assisted {
            by: Some(custodian_to_wire(by)),
            opinion: opinion.clone(),
            request: Some(request_id_to_wire(request)),
        }),
        CaseEventBody::ObjectionRecorded { request, text } => {
            B::ObjectionRecorded(ev::ObjectionRecorded {
                request: Some(request_id_to_wire(request)),
                text: text.clone(),
            })
        }
        CaseEventBody::RequestDeclined { request, reason } => {
            B::RequestDeclined(ev::RequestDeclined {
                request: Some(request_id_to_wire(request)),
                reason: reason.clone(),
            })
        }
        CaseEventBody::Corrected {
            of,
            correction,
            reason,
        } => B::Corrected(ev::Corrected {
            of: *of,
            correction: Some(correction_to_wire(correction)),
            reason: reason.clone(),
        }),
        CaseEventBody::Extended {
            working_days,
            reason,
            approved_by,
            deadline,
        } => B::Extended(ev::Extended {
            working_days: (*working_days).into(),
            reason: reason.clone(),
            approved_by: approved_by.clone(),
            deadline: Some(deadline_to_wire(deadline)),
        }),
        CaseEventBody::Paused { reason, from } => B::Paused(ev::Paused {
            reason: reason.clone(),
            from: Some(date_to_wire(*from)),
        }),
        CaseEventBody::Resumed { on, deadline } => B::Resumed(ev::Resumed {
            on: Some(date_to_wire(*on)),
            deadline: Some(deadline_to_wire(deadline)),
        }),
        CaseEventBody::DeadlineConfirmed { deadline } => {
            B::DeadlineConfirmed(ev::DeadlineConfirmed {
                deadline: Some(deadline_to_wire(deadline)),
            })
        }
        CaseEventBody::Refused { step, reason } => B::Refused(ev::Refused {
            step: step.as_ref().map(|s| s.0.clone()),
            reason: reason.clone(),
        }),
        CaseEventBody::Withdrawn { request } => B::Withdrawn(ev::Withdrawn {
            request: Some(request_id_to_wire(request)),
        }),
        CaseEventBody::Completed { result } => B::Completed(ev::Completed {
            result: result.clone(),
        }),
        CaseEventBody::Evaluated { satisfaction } => B::Evaluated(ev::Evaluated {
            satisfaction: (*satisfaction).into(),
        }),
        CaseEventBody::Reassigned { from, to, reason } => B::Reassigned(ev::Reassigned {
            from: Some(custodian_to_wire(from)),
            to: Some(custodian_to_wire(to)),
            reason: reason.clone(),
        }),
    }
}

fn acceptance(p: &Path<'_>, w: pb::Acceptance) -> Result<Acceptance, WireError> {
    let case_type_path = p.field("case_type");
    Ok(Acceptance {
        item: item_version_key(&p.field("item"), w.item)?,
        item_name: w.item_name,
        case_type: small::<u8>(&case_type_path, w.case_type)
            .ok()
            .and_then(CaseType::from_code)
            .ok_or_else(|| case_type_path.invalid(format!("unknown case type {}", w.case_type)))?,
        applicant: applicant(&p.field("applicant"), w.applicant)?,
        helper: match w.helper {
            None => None,
            Some(h) => Some(helper(&p.field("helper"), h)?),
        },
        materials: material_codes(p, w.materials)?,
        clerk: w.clerk,
        deadline: deadline(&p.field("deadline"), w.deadline)?,
        home_village: if w.home_village.is_empty() {
            None
        } else {
            Some(division(&p.field("home_village"), &w.home_village)?)
        },
    })
}

fn acceptance_to_wire(a: &Acceptance) -> pb::Acceptance {
    pb::Acceptance {
        item: Some(pb::ItemVersionKey {
            owner: a.item.owner.to_string(),
            code: a.item.code.0.clone(),
            version: a.item.version,
        }),
        item_name: a.item_name.clone(),
        case_type: a.case_type.code().into(),
        applicant: Some(pb::Applicant {
            id_number: a.applicant.id_number.expose().to_owned(),
            name: a.applicant.name.expose().to_owned(),
            household: a.applicant.household.to_string(),
            statuses: a
                .applicant
                .statuses
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        }),
        helper: a.helper.as_ref().map(helper_to_wire),
        materials: material_codes_to_wire(&a.materials),
        clerk: a.clerk.clone(),
        deadline: Some(deadline_to_wire(&a.deadline)),
        home_village: a.home_village.map(|v| v.to_string()).unwrap_or_default(),
    }
}

fn item_version_key(
    p: &Path<'_>,
    w: Option<pb::ItemVersionKey>,
) -> Result<ItemVersionKey, WireError> {
    let w = required(p, w)?;
    Ok(ItemVersionKey {
        owner: division(&p.field("owner"), &w.owner)?,
        code: ItemCode(text(&p.field("code"), w.code, 1, CODE_CHARS_MAX)?),
        version: w.version,
    })
}

fn applicant(p: &Path<'_>, w: Option<pb::Applicant>) -> Result<Applicant, WireError> {
    let w = required(p, w)?;
    Ok(Applicant {
        id_number: id_number(&p.field("id_number"), &w.id_number)?,
        name: person_name(&p.field("name"), &w.name)?,
        household: division(&p.field("household"), &w.household)?,
        statuses: w
            .statuses
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Status::parse(s)
                    .ok_or_else(|| p.at("statuses", i).invalid(format!("unknown status {s:?}")))
            })
            .collect::<Result<BTreeSet<_>, _>>()?,
    })
}

fn helper(p: &Path<'_>, w: pb::Helper) -> Result<Helper, WireError> {
    Ok(Helper {
        name: person_name(&p.field("name"), &w.name)?,
        relation: w.relation,
    })
}

fn helper_to_wire(h: &Helper) -> pb::Helper {
    pb::Helper {
        name: h.name.expose().to_owned(),
        relation: h.relation.clone(),
    }
}

fn correction(p: &Path<'_>, w: Option<pb::Correction>) -> Result<Correction, WireError> {
    use pb::correction::Kind;
    match required(p, w)?.kind {
        None => Err(p.field("kind").missing()),
        Some(Kind::ApplicantName(name)) => Ok(Correction::ApplicantName(person_name(
            &p.field("applicant_name"),
            &name,
        )?)),
        Some(Kind::Helper(change)) => Ok(Correction::Helper(match change.helper {
            None => None,
            Some(h) => Some(helper(&p.field("helper").field("helper"), h)?),
        })),
        Some(Kind::Opinion(text)) => Ok(Correction::Opinion(text)),
    }
}

fn correction_to_wire(c: &Correction) -> pb::Correction {
    use pb::correction::{HelperChange, Kind};
    pb::Correction {
        kind: Some(match c {
            Correction::ApplicantName(name) => Kind::ApplicantName(name.expose().to_owned()),
            Correction::Helper(h) => Kind::Helper(HelperChange {
                helper: h.as_ref().map(helper_to_wire),
            }),
            Correction::Opinion(text) => Kind::Opinion(text.clone()),
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Requests

impl TryFrom<pb::RequestPayload> for Request {
    type Error = WireError;
    fn try_from(w: pb::RequestPayload) -> Result<Self, WireError> {
        let root = Path::ROOT;
        let id = request_id(&root.field("id"), w.id)?;
        let case = case_number(&root.field("case_number"), &w.case_number)?;
        let from = custodian(&root.field("from"), w.from)?;
        let at = local_date_time(&root.field("at"), w.at)?;
        let kind_path = root.field("kind");
        let kind = match required(&kind_path, w.kind)? {
            rq::Kind::Withdrawal(x) => RequestKind::Withdrawal { reason: x.reason },
            rq::Kind::Supplement(s) => {
                let p = kind_path.field("supplement");
                RequestKind::Supplement {
                    materials: material_codes(&p, s.materials)?,
                    arrived: required_date(&p.field("arrived"), s.arrived.as_ref())?,
                }
            }
            rq::Kind::Objection(o) => RequestKind::Objection { text: o.text },
            rq::Kind::Opinion(o) => RequestKind::Opinion { text: o.text },
        };
        Ok(Request {
            id,
            case,
            from,
            operator: w.operator,
            at,
            kind,
        })
    }
}

impl From<&Request> for pb::RequestPayload {
    fn from(r: &Request) -> Self {
        pb::RequestPayload {
            id: Some(request_id_to_wire(&r.id)),
            case_number: r.case.to_string(),
            from: Some(custodian_to_wire(&r.from)),
            operator: r.operator.clone(),
            at: Some(local_date_time_to_wire(r.at)),
            kind: Some(match &r.kind {
                RequestKind::Withdrawal { reason } => rq::Kind::Withdrawal(rq::Withdrawal {
                    reason: reason.clone(),
                }),
                RequestKind::Supplement { materials, arrived } => {
                    rq::Kind::Supplement(rq::Supplement {
                        materials: material_codes_to_wire(materials),
                        arrived: Some(date_to_wire(*arrived)),
                    })
                }
                RequestKind::Objection { text } => {
                    rq::Kind::Objection(rq::Objection { text: text.clone() })
                }
                RequestKind::Opinion { text } => {
                    rq::Kind::Opinion(rq::Opinion { text: text.clone() })
                }
            }),
        }
    }
}

impl From<Request> for pb::RequestPayload {
    fn from(r: Request) -> Self {
        (&r).into()
    }
}

// ---------------------------------------------------------------------------------------
// Shared pieces

// ---------------------------------------------------------------------------------------
// Supervision: quarantine alarms and county decisions

impl TryFrom<pb::QuarantineAlarm> for QuarantineAlarm {
    type Error = WireError;
    fn try_from(w: pb::QuarantineAlarm) -> Result<Self, WireError> {
        let root = Path::ROOT;
        if w.seq == 0 {
            return Err(root.field("seq").invalid("must be greater than 0"));
        }
        Ok(QuarantineAlarm {
            case: case_number(&root.field("case_number"), &w.case_number)?,
            node: division(&root.field("node"), &w.node)?,
            seq: w.seq,
            reason: text(&root.field("reason"), w.reason, 1, TEXT_CHARS_MAX)?,
            at: local_date_time(&root.field("at"), w.at)?,
        })
    }
}

impl From<&QuarantineAlarm> for pb::QuarantineAlarm {
    fn from(a: &QuarantineAlarm) -> Self {
        pb::QuarantineAlarm {
            case_number: a.case.to_string(),
            node: a.node.to_string(),
            seq: a.seq,
            reason: a.reason.clone(),
            at: Some(local_date_time_to_wire(a.at)),
        }
    }
}

/// The revision kinds an alarm may name.
const REVISION_KINDS: [&str; 3] = ["catalog", "calendar", "topology"];

impl TryFrom<pb::RevisionAlarm> for RevisionAlarm {
    type Error = WireError;
    fn try_from(w: pb::RevisionAlarm) -> Result<Self, WireError> {
        let root = Path::ROOT;
        let origin = division(&root.field("revision_origin"), &w.revision_origin)?;
        if w.revision_epoch == 0 || w.revision_seq == 0 {
            return Err(root
                .field("revision_seq")
                .invalid("epoch and seq must be greater than 0"));
        }
        if !REVISION_KINDS.contains(&w.kind.as_str()) {
            return Err(root
                .field("kind")
                .invalid(format!("must be one of {}", REVISION_KINDS.join(", "))));
        }
        Ok(RevisionAlarm {
            node: division(&root.field("node"), &w.node)?,
            revision: yimen_core::link::EventId {
                origin: origin.to_string(),
                epoch: w.revision_epoch,
                seq: w.revision_seq,
            },
            kind: w.kind,
            reason: text(&root.field("reason"), w.reason, 1, TEXT_CHARS_MAX)?,
            at: local_date_time(&root.field("at"), w.at)?,
        })
    }
}

impl From<&RevisionAlarm> for pb::RevisionAlarm {
    fn from(a: &RevisionAlarm) -> Self {
        pb::RevisionAlarm {
            node: a.node.to_string(),
            revision_origin: a.revision.origin.clone(),
            revision_epoch: a.revision.epoch,
            revision_seq: a.revision.seq,
            kind: a.kind.clone(),
            reason: a.reason.clone(),
            at: Some(local_date_time_to_wire(a.at)),
        }
    }
}

impl TryFrom<pb::CountyDecision> for CountyDecision {
    type Error = WireError;
    fn try_from(w: pb::CountyDecision) -> Result<Self, WireError> {
        let root = Path::ROOT;
        let verdict = match pb::QuarantineVerdict::try_from(w.verdict) {
            Ok(pb::QuarantineVerdict::Release) => Verdict::Release,
            Ok(pb::QuarantineVerdict::Void) => Verdict::Void,
            _ => {
                return Err(root
                    .field("verdict")
                    .invalid(format!("unknown verdict {}", w.verdict)));
            }
        };
        Ok(CountyDecision {
            case: case_number(&root.field("case_number"), &w.case_number)?,
            verdict,
            reason: w.reason,
            operator: w.operator,
            at: local_date_time(&root.field("at"), w.at)?,
        })
    }
}

impl From<&CountyDecision> for pb::CountyDecision {
    fn from(d: &CountyDecision) -> Self {
        pb::CountyDecision {
            case_number: d.case.to_string(),
            verdict: match d.verdict {
                Verdict::Release => pb::QuarantineVerdict::Release,
                Verdict::Void => pb::QuarantineVerdict::Void,
            } as i32,
            reason: d.reason.clone(),
            operator: d.operator.clone(),
            at: Some(local_date_time_to_wire(d.at)),
        }
    }
}

fn case_number(p: &Path<'_>, s: &str) -> Result<CaseNumber, WireError> {
    CaseNumber::parse(s).map_err(|e| p.invalid(e.to_string()))
}

fn custodian(p: &Path<'_>, w: Option<pb::Custodian>) -> Result<Custodian, WireError> {
    let w = required(p, w)?;
    Ok(Custodian {
        node: division(&p.field("node"), &w.node)?,
        department: super::dept_key(&p.field("department"), w.department)?,
    })
}

fn custodian_to_wire(c: &Custodian) -> pb::Custodian {
    pb::Custodian {
        node: c.node.to_string(),
        department: c
            .department
            .as_ref()
            .map(|d| d.0.clone())
            .unwrap_or_default(),
    }
}

fn request_id(p: &Path<'_>, w: Option<pb::RequestId>) -> Result<RequestId, WireError> {
    let w = required(p, w)?;
    Ok(RequestId {
        origin: division(&p.field("origin"), &w.origin)?,
        seq: w.seq,
    })
}

fn request_id_to_wire(r: &RequestId) -> pb::RequestId {
    pb::RequestId {
        origin: r.origin.to_string(),
        seq: r.seq,
    }
}

fn deadline(p: &Path<'_>, w: Option<pb::Deadline>) -> Result<Deadline, WireError> {
    let w = required(p, w)?;
    let due = required_date(&p.field("due"), w.due.as_ref())?;
    let start = required_date(&p.field("start"), w.start.as_ref())?;
    if due < start {
        return Err(p
            .field("due")
            .invalid(format!("{due} is before the start {start}")));
    }
    Ok(Deadline {
        due,
        start,
        working_days: w.working_days,
        provisional: w.provisional,
        calendar_version: w.calendar_version,
    })
}

fn optional_deadline(p: &Path<'_>, w: Option<pb::Deadline>) -> Result<Option<Deadline>, WireError> {
    match w {
        None => Ok(None),
        Some(d) => Ok(Some(deadline(p, Some(d))?)),
    }
}

fn deadline_to_wire(d: &Deadline) -> pb::Deadline {
    pb::Deadline {
        due: Some(date_to_wire(d.due)),
        start: Some(date_to_wire(d.start)),
        working_days: d.working_days,
        provisional: d.provisional,
        calendar_version: d.calendar_version,
    }
}

fn required_date(p: &Path<'_>, w: Option<&pb::Date>) -> Result<NaiveDate, WireError> {
    date(p, required(p, w)?)
}

fn local_date_time(p: &Path<'_>, w: Option<pb::LocalDateTime>) -> Result<NaiveDateTime, WireError> {
    let w = required(p, w)?;
    let day = required_date(&p.field("date"), w.date.as_ref())?;
    if w.seconds_of_day >= SECONDS_PER_DAY {
        return Err(p.field("seconds_of_day").invalid(format!(
            "{} is not below {SECONDS_PER_DAY}",
            w.seconds_of_day
        )));
    }
    let time = NaiveTime::from_num_seconds_from_midnight_opt(w.seconds_of_day, w.nanos)
        .ok_or_else(|| {
            p.field("nanos").invalid(format!(
                "{} is not a sub-second part (a leap second only at :59)",
                w.nanos
            ))
        })?;
    Ok(day.and_time(time))
}

fn local_date_time_to_wire(at: NaiveDateTime) -> pb::LocalDateTime {
    pb::LocalDateTime {
        date: Some(date_to_wire(at.date())),
        seconds_of_day: at.time().num_seconds_from_midnight(),
        nanos: at.time().nanosecond(),
    }
}

fn step_code(p: &Path<'_>, s: String) -> Result<StepCode, WireError> {
    Ok(StepCode(text(p, s, 0, CODE_CHARS_MAX)?))
}

fn step_action(p: &Path<'_>, s: &str) -> Result<StepAction, WireError> {
    StepAction::from_str_name(s).ok_or_else(|| p.invalid(format!("unknown step action {s:?}")))
}

/// The `materials` of `p`, each a material code.
fn material_codes(p: &Path<'_>, w: Vec<String>) -> Result<BTreeSet<MaterialCode>, WireError> {
    w.into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(MaterialCode(text(
                &p.at("materials", i),
                m,
                0,
                CODE_CHARS_MAX,
            )?))
        })
        .collect()
}

fn material_codes_to_wire(m: &BTreeSet<MaterialCode>) -> Vec<String> {
    m.iter().map(|c| c.0.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// Personal data: parsed, never echoed

/// An ID number; the error says what is wrong without any part of the number
/// (`IdNumberError`'s messages never quote it).
fn id_number(p: &Path<'_>, s: &str) -> Result<IdNumber, WireError> {
    IdNumber::parse(s).map_err(|e| p.invalid(e.to_string()))
}

/// A person's name; the error never repeats it.
fn person_name(p: &Path<'_>, s: &str) -> Result<PersonName, WireError> {
    PersonName::parse(s).ok_or_else(|| {
        p.invalid(format!(
            "invalid name: must have 1 to {PERSON_NAME_CHARS_MAX} characters and no control \
             characters"
        ))
    })
}

/// A wire ID number as `Debug` shows it: masked like `IdNumber`, or only its length when it
/// is not a valid ID number.
struct MaskedId<'a>(&'a str);

impl fmt::Debug for MaskedId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match IdNumber::parse(self.0) {
            Ok(id) => write!(f, "{:?}", id.masked()),
            Err(_) => write!(f, "<invalid, {} characters>", self.0.chars().count()),
        }
    }
}

/// A wire name as `Debug` shows it: its first character and stars, like `PersonName`.
struct MaskedName<'a>(&'a str);

impl fmt::Debug for MaskedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PersonName::parse(self.0) {
            Some(name) => write!(f, "{:?}", name.masked()),
            None => write!(f, "<invalid, {} characters>", self.0.chars().count()),
        }
    }
}

impl fmt::Debug for pb::Applicant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applicant")
            .field("id_number", &MaskedId(&self.id_number))
            .field("name", &MaskedName(&self.name))
            .field("household", &self.household)
            .field("statuses", &self.statuses)
            .finish()
    }
}

impl fmt::Debug for pb::Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper")
            .field("name", &MaskedName(&self.name))
            .field("relation", &self.relation)
            .finish()
    }
}

impl fmt::Debug for pb::Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Correction")
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Debug for pb::correction::Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pb::correction::Kind;
        match self {
            Kind::ApplicantName(name) => f
                .debug_tuple("ApplicantName")
                .field(&MaskedName(name))
                .finish(),
            Kind::Helper(change) => f.debug_tuple("Helper").field(change).finish(),
            Kind::Opinion(text) => f.debug_tuple("Opinion").field(text).finish(),
        }
    }
}

impl fmt::Debug for pb::correction::HelperChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperChange")
            .field("helper", &self.helper)
            .finish()
    }
}

// The clerk API's inputs carry the same personal data: masked the same way.

impl fmt::Debug for pb::ApplicantInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicantInput")
            .field("id_number", &MaskedId(&self.id_number))
            .field("name", &MaskedName(&self.name))
            .field("household", &self.household)
            .field("statuses", &self.statuses)
            .finish()
    }
}

impl fmt::Debug for pb::HelperInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperInput")
            .field("name", &MaskedName(&self.name))
            .field("relation", &self.relation)
            .finish()
    }
}

impl fmt::Debug for pb::CorrectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorrectRequest")
            .field("operator", &self.operator)
            .field("case_number", &self.case_number)
            .field("of_seq", &self.of_seq)
            .field("correction", &self.correction)
            .field("reason", &self.reason)
            .finish()
    }
}

impl fmt::Debug for pb::correct_request::Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use pb::correct_request::Correction;
        match self {
            Correction::ApplicantName(name) => f
                .debug_tuple("ApplicantName")
                .field(&MaskedName(name))
                .finish(),
            Correction::Helper(h) => f.debug_tuple("Helper").field(h).finish(),
            Correction::Opinion(text) => f.debug_tuple("Opinion").field(text).finish(),
        }
    }
}
