//! Case events and requests on the wire: every body variant and request kind round-trips, the
//! core's own walk-through survives the wire, malformed payloads name their field, ID numbers
//! and names are never echoed (errors, `Debug`), and random bytes never panic.

// Helpers outside #[test] functions may panic too: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use proptest::prelude::*;
use yimen_core::calendar::Calendar;
use yimen_core::case::{
    Acceptance, Case, CaseEvent, CaseEventBody, Correction, Helper, Request, RequestId,
    RequestKind, Rules,
};
use yimen_core::catalog::{CaseType, DeptKey, ItemVersion, MaterialCode, StepAction, StepCode};
use yimen_core::deadline::Deadline;
use yimen_core::division::DivisionCode;
use yimen_core::numbering::CaseNumber;
use yimen_core::person::{Applicant, IdNumber, PersonName, Status};
use yimen_core::routing::Custodian;
use yimen_core::sample;
use yimen_proto::convert::{WireError, decode_payload, encode_payload};
use yimen_proto::pb;
use yimen_proto::pb::case_event_payload as ev;

const ID: &str = "430421199001011233";
const NAME: &str = "张三丰";
const HELPER: &str = "李四";

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(d: NaiveDate, h: u32, m: u32) -> NaiveDateTime {
    d.and_hms_opt(h, m, 0).unwrap()
}

fn item(code: &str) -> ItemVersion {
    sample::items()
        .into_iter()
        .find(|i| i.code.0 == code)
        .unwrap()
}

fn village() -> Custodian {
    Custodian {
        node: code("430421105204"),
        department: None,
    }
}

fn station() -> Custodian {
    Custodian {
        node: sample::county(),
        department: Some(DeptKey(sample::DEPT_MEDICAL_INSURANCE.to_owned())),
    }
}

fn number() -> CaseNumber {
    CaseNumber::parse("430421105204202609240001").unwrap()
}

fn deadline(start: NaiveDate, working_days: u32) -> Deadline {
    Deadline::compute(&Calendar::builtin(), start, working_days).unwrap()
}

fn request_id(seq: u64) -> RequestId {
    RequestId {
        origin: code("430421105209"),
        seq,
    }
}

fn helper() -> Helper {
    Helper {
        name: PersonName::parse(HELPER).unwrap(),
        relation: "亲属".to_owned(),
    }
}

fn materials(codes: &[&str]) -> BTreeSet<MaterialCode> {
    codes
        .iter()
        .map(|c| MaterialCode((*c).to_owned()))
        .collect()
}

/// 医疗救助 accepted with a helper and a home village; 老年优待证 (即办) without either.
fn acceptance(full: bool) -> Acceptance {
    let accepted = day(2026, 9, 24);
    if full {
        let aid = item(sample::MEDICAL_AID);
        Acceptance {
            item: aid.key(),
            item_name: aid.name.clone(),
            case_type: aid.case_type,
            applicant: Applicant {
                id_number: IdNumber::parse(ID).unwrap(),
                name: PersonName::parse(NAME).unwrap(),
                household: code("430421105209"),
                statuses: BTreeSet::from([Status::Dibao, Status::Disabled]),
            },
            helper: Some(helper()),
            materials: materials(&["zyfp", "xnhpj", "dbz"]),
            clerk: "王芳".to_owned(),
            deadline: deadline(accepted, 10),
            home_village: Some(code("430421105209")),
        }
    } else {
        let card = item(sample::SENIOR_CARD);
        Acceptance {
            item: card.key(),
            item_name: card.name.clone(),
            case_type: CaseType::Immediate,
            applicant: Applicant {
                id_number: IdNumber::parse("11010519491231002x").unwrap(),
                name: PersonName::parse("阿依古丽·买买提").unwrap(),
                household: code("430421105204"),
                statuses: BTreeSet::new(),
            },
            helper: None,
            materials: BTreeSet::new(),
            clerk: "王芳".to_owned(),
            deadline: Deadline::immediate(accepted, Calendar::builtin().version),
            home_village: None,
        }
    }
}

/// One event per body variant (and per shape of its optional parts), written by hand.
fn events() -> Vec<CaseEvent> {
    let d = day(2026, 9, 24);
    let later = day(2026, 10, 9);
    let supplemented_deadline = deadline(day(2026, 10, 12), 10);
    let bodies: Vec<(Custodian, NaiveDateTime, CaseEventBody)> = vec![
        (
            village(),
            at(d, 9, 30),
            CaseEventBody::Accepted(Box::new(acceptance(true))),
        ),
        (
            village(),
            at(d, 9, 31),
            CaseEventBody::Accepted(Box::new(acceptance(false))),
        ),
        (
            village(),
            at(d, 10, 0),
            CaseEventBody::StepDone {
                step: StepCode("cs".to_owned()),
                action: StepAction::PreCheck,
                opinion: "材料齐全，同意上报".to_owned(),
            },
        ),
        (
            village(),
            at(d, 10, 1),
            CaseEventBody::StepDone {
                step: StepCode("sh".to_owned()),
                action: StepAction::Review,
                opinion: String::new(),
            },
        ),
        (
            station(),
            at(d, 11, 0),
            CaseEventBody::NoticeStarted {
                step: StepCode("gs".to_owned()),
                from: day(2026, 9, 25),
                ends: later,
                delivered_to: vec![code("430421105209"), code("430421105000")],
                deadline: Some(deadline(d, 17)),
            },
        ),
        (
            station(),
            at(d, 11, 1),
            CaseEventBody::NoticeStarted {
                step: StepCode("gs".to_owned()),
                from: d,
                ends: d,
                delivered_to: vec![],
                deadline: None,
            },
        ),
        (
            station(),
            at(later, 17, 0),
            CaseEventBody::NoticeEnded {
                step: StepCode("gs".to_owned()),
                objections: 2,
            },
        ),
        (
            village(),
            at(d, 12, 0),
            CaseEventBody::Forwarded {
                to: station(),
                reason: "乡镇审核通过，转县医保局审批".to_owned(),
            },
        ),
        (
            village(),
            at(d, 12, 1),
            CaseEventBody::Forwarded {
                to: Custodian {
                    node: code("430421105000"),
                    department: None,
                },
                reason: String::new(),
            },
        ),
        (
            station(),
            // A sub-second time: the wire keeps it exactly.
            d.and_time(NaiveTime::from_hms_nano_opt(13, 0, 0, 123_456_789).unwrap()),
            CaseEventBody::Received,
        ),
        (
            station(),
            at(d, 14, 0),
            CaseEventBody::Returned {
                missing: vec!["住院发票原件".to_owned(), "低保证复印件".to_owned()],
                reason: "发票为复印件".to_owned(),
            },
        ),
        (
            village(),
            at(day(2026, 10, 12), 9, 0),
            CaseEventBody::Supplemented {
                materials: materials(&["zyfp"]),
                arrived: day(2026, 10, 12),
                request: Some(request_id(3)),
                deadline: Some(supplemented_deadline),
            },
        ),
        (
            village(),
            at(d, 15, 0),
            CaseEventBody::Supplemented {
                materials: materials(&["dbz", "wbz"]),
                arrived: d,
                request: None,
                deadline: None,
            },
        ),
        (
            station(),
            at(d, 15, 30),
            CaseEventBody::Assisted {
                by: Custodian {
                    node: code("430421000000"),
                    department: Some(DeptKey("mzj".to_owned())),
                },
                opinion: "经核实该户为低保户".to_owned(),
                request: request_id(4),
            },
        ),
        (
            station(),
            at(d, 16, 0),
            CaseEventBody::ObjectionRecorded {
                request: request_id(5),
                text: "村民反映申请人另有收入".to_owned(),
            },
        ),
        (
            station(),
            at(d, 16, 1),
            CaseEventBody::RequestDeclined {
                request: request_id(6),
                reason: "材料已齐".to_owned(),
            },
        ),
        (
            village(),
            at(d, 16, 2),
            CaseEventBody::Corrected {
                of: 1,
                correction: Correction::ApplicantName(PersonName::parse("张三峰").unwrap()),
                reason: "姓名录入错误".to_owned(),
            },
        ),
        (
            village(),
            at(d, 16, 3),
            CaseEventBody::Corrected {
                of: 1,
                correction: Correction::Helper(Some(helper())),
                reason: "代办人录入错误".to_owned(),
            },
        ),
        (
            village(),
            at(d, 16, 4),
            CaseEventBody::Corrected {
                of: 1,
                correction: Correction::Helper(None),
                reason: "本人办理，无代办人".to_owned(),
            },
        ),
        (
            village(),
            at(d, 16, 5),
            CaseEventBody::Corrected {
                of: 2,
                correction: Correction::Opinion("材料齐全，同意上报乡镇".to_owned()),
                reason: "意见录入错误".to_owned(),
            },
        ),
        (
            station(),
            at(d, 16, 6),
            CaseEventBody::Extended {
                working_days: 5,
                reason: "需入户核查".to_owned(),
                approved_by: "赵局长".to_owned(),
                deadline: deadline(d, 15),
            },
        ),
        (
            station(),
            at(d, 16, 7),
            CaseEventBody::Paused {
                reason: "听证".to_owned(),
                from: d,
            },
        ),
        (
            station(),
            at(later, 9, 0),
            CaseEventBody::Resumed {
                on: later,
                deadline: deadline(d, 20),
            },
        ),
        (
            station(),
            at(d, 16, 8),
            CaseEventBody::DeadlineConfirmed {
                // A provisional deadline: the built-in calendar ends with 2026.
                deadline: deadline(day(2026, 12, 28), 10),
            },
        ),
        (
            station(),
            at(d, 16, 9),
            CaseEventBody::Refused {
                step: Some(StepCode("sp".to_owned())),
                reason: "不符合救助条件".to_owned(),
            },
        ),
        (
            village(),
            at(d, 9, 35),
            CaseEventBody::Refused {
                step: None,
                reason: "户籍不在本县".to_owned(),
            },
        ),
        (
            village(),
            at(d, 16, 10),
            CaseEventBody::Withdrawn {
                request: request_id(7),
            },
        ),
        (
            station(),
            at(d, 16, 11),
            CaseEventBody::Completed {
                result: "救助资金已发放".to_owned(),
            },
        ),
        (
            station(),
            at(d, 16, 12),
            CaseEventBody::Completed {
                result: String::new(),
            },
        ),
        (
            village(),
            // Sub-second time, and a leap second: the wire keeps both exactly.
            d.and_time(NaiveTime::from_hms_nano_opt(23, 59, 59, 1_250_000_000).unwrap()),
            CaseEventBody::Evaluated { satisfaction: 1 },
        ),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (author, at, body))| CaseEvent {
            case: number(),
            seq: u64::try_from(i).unwrap() + 1,
            author,
            operator: format!("operator-{i}"),
            at,
            body,
        })
        .collect()
}

fn event(kind: &str) -> CaseEvent {
    events()
        .into_iter()
        .find(|e| e.body.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
}

fn through_the_wire(e: &CaseEvent) -> Result<CaseEvent, WireError> {
    let bytes = encode_payload(&pb::CaseEventPayload::from(e));
    let wire: pb::CaseEventPayload = decode_payload(&bytes, "case event")?;
    CaseEvent::try_from(wire)
}

#[test]
fn every_case_event_body_round_trips() {
    let events = events();
    let kinds: BTreeSet<&str> = events.iter().map(|e| e.body.kind()).collect();
    assert_eq!(
        kinds.len(),
        20,
        "one event per CaseEventBody variant: {kinds:?}"
    );
    for e in &events {
        assert_eq!(&through_the_wire(e).unwrap(), e, "{}", e.body.kind());
        // The owned conversion says the same.
        assert_eq!(
            pb::CaseEventPayload::from(e.clone()),
            pb::CaseEventPayload::from(e)
        );
    }
}

#[test]
fn the_walkthrough_survives_the_wire() {
    // Events the core itself wrote, replayed from their wire form, make the same cases.
    let story = yimen_core::walkthrough::run(day(2026, 9, 24)).unwrap();
    assert!(!story.stories.is_empty());
    for s in &story.stories {
        let events: Vec<CaseEvent> = s
            .case
            .events
            .iter()
            .map(|e| through_the_wire(e).unwrap())
            .collect();
        assert_eq!(events, s.case.events, "{}", s.item);
        let item = item(&s.case.acceptance.item.code.0);
        let replayed = Case::replay(&events, &Rules { item: &item }).unwrap();
        assert_eq!(replayed, s.case, "{}", s.item);
    }
}

fn requests() -> Vec<Request> {
    let kinds = [
        RequestKind::Withdrawal {
            reason: "已在外地办理".to_owned(),
        },
        RequestKind::Withdrawal {
            reason: String::new(),
        },
        RequestKind::Supplement {
            materials: materials(&["zyfp", "dbz"]),
            arrived: day(2026, 10, 12),
        },
        RequestKind::Objection {
            text: "村民反映申请人另有收入".to_owned(),
        },
        RequestKind::Opinion {
            text: "经核实该户为低保户".to_owned(),
        },
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Request {
            id: request_id(u64::try_from(i).unwrap()),
            case: number(),
            from: if i % 2 == 0 { village() } else { station() },
            operator: format!("operator-{i}"),
            at: at(day(2026, 10, 12), 10, u32::try_from(i).unwrap()),
            kind,
        })
        .collect()
}

#[test]
fn every_request_kind_round_trips() {
    for r in requests() {
        let bytes = encode_payload(&pb::RequestPayload::from(&r));
        let wire: pb::RequestPayload = decode_payload(&bytes, "request").unwrap();
        assert_eq!(Request::try_from(wire).unwrap(), r, "{:?}", r.kind);
        assert_eq!(
            pb::RequestPayload::from(r.clone()),
            pb::RequestPayload::from(&r)
        );
    }
}

#[test]
fn event_types_have_their_ranges() {
    assert_eq!(pb::EventType::CaseEvent as i32, 100);
    assert_eq!(pb::EventType::Request as i32, 200);
}

/// Expected error: the field path and a fragment of the message.
fn expect<T: std::fmt::Debug>(got: Result<T, WireError>, what: &str, field: &str, needle: &str) {
    let err = match got {
        Ok(v) => panic!("{what}: accepted {v:?}"),
        Err(e) => e,
    };
    assert_eq!(err.field(), field, "{what}: {err}");
    assert!(
        err.to_string().contains(needle),
        "{what}: {needle:?} not in {err}"
    );
}

fn wire(kind: &str) -> pb::CaseEventPayload {
    pb::CaseEventPayload::from(event(kind))
}

fn accepted(w: &mut pb::CaseEventPayload) -> &mut pb::Acceptance {
    match w.body.as_mut() {
        Some(ev::Body::Accepted(a)) => a,
        other => panic!("not an acceptance: {other:?}"),
    }
}

fn applicant(w: &mut pb::CaseEventPayload) -> &mut pb::Applicant {
    accepted(w).applicant.as_mut().unwrap()
}

fn date(year: i32, month: u32, day: u32) -> Option<pb::Date> {
    Some(pb::Date { year, month, day })
}

#[test]
fn malformed_case_events_name_the_field() {
    type Mutation = fn(&mut pb::CaseEventPayload);
    let table: &[(&str, &str, Mutation, &str, &str)] = &[
        (
            "bad case number",
            "accepted",
            |w| w.case_number = "43042110520420260924001".to_owned(),
            "case_number",
            "24 ASCII digits",
        ),
        (
            "case number on 2026-02-30",
            "received",
            |w| w.case_number = "430421105204202602300001".to_owned(),
            "case_number",
            "not a calendar date",
        ),
        ("seq 0", "received", |w| w.seq = 0, "seq", "greater than 0"),
        (
            "missing body",
            "received",
            |w| w.body = None,
            "body",
            "missing",
        ),
        (
            "missing author",
            "received",
            |w| w.author = None,
            "author",
            "missing",
        ),
        (
            "bad custodian node",
            "received",
            |w| w.author.as_mut().unwrap().node = "430421105400".to_owned(),
            "author.node",
            "village part 400",
        ),
        (
            "custodian department too long",
            "received",
            |w| w.author.as_mut().unwrap().department = "d".repeat(51),
            "author.department",
            "51 characters",
        ),
        ("missing time", "received", |w| w.at = None, "at", "missing"),
        (
            "time without a date",
            "received",
            |w| w.at.as_mut().unwrap().date = None,
            "at.date",
            "missing",
        ),
        (
            "time on 2026-02-30",
            "received",
            |w| w.at.as_mut().unwrap().date = date(2026, 2, 30),
            "at.date",
            "2026-02-30 is not a calendar date",
        ),
        (
            "second 86400",
            "received",
            |w| w.at.as_mut().unwrap().seconds_of_day = 86_400,
            "at.seconds_of_day",
            "86400",
        ),
        (
            "leap nanos off :59",
            "received",
            |w| {
                let at = w.at.as_mut().unwrap();
                at.seconds_of_day = 3600;
                at.nanos = 1_500_000_000;
            },
            "at.nanos",
            "1500000000",
        ),
        (
            "nanos beyond a leap second",
            "received",
            |w| {
                let at = w.at.as_mut().unwrap();
                at.seconds_of_day = 86_399;
                at.nanos = 2_000_000_000;
            },
            "at.nanos",
            "2000000000",
        ),
        (
            "missing applicant",
            "accepted",
            |w| accepted(w).applicant = None,
            "body.accepted.applicant",
            "missing",
        ),
        (
            "empty name",
            "accepted",
            |w| applicant(w).name = "  ".to_owned(),
            "body.accepted.applicant.name",
            "invalid name",
        ),
        (
            "bad household",
            "accepted",
            |w| applicant(w).household = "4304211052".to_owned(),
            "body.accepted.applicant.household",
            "exactly 12",
        ),
        (
            "unknown status",
            "accepted",
            |w| applicant(w).statuses = vec!["dibao".to_owned(), "rich".to_owned()],
            "body.accepted.applicant.statuses[1]",
            "unknown status \"rich\"",
        ),
        (
            "helper without a name",
            "accepted",
            |w| accepted(w).helper.as_mut().unwrap().name = String::new(),
            "body.accepted.helper.name",
            "invalid name",
        ),
        (
            "unknown case type",
            "accepted",
            |w| accepted(w).case_type = 3,
            "body.accepted.case_type",
            "unknown case type 3",
        ),
        (
            "case type beyond u8",
            "accepted",
            |w| accepted(w).case_type = 257,
            "body.accepted.case_type",
            "unknown case type 257",
        ),
        (
            "missing item",
            "accepted",
            |w| accepted(w).item = None,
            "body.accepted.item",
            "missing",
        ),
        (
            "empty item code",
            "accepted",
            |w| accepted(w).item.as_mut().unwrap().code = String::new(),
            "body.accepted.item.code",
            "empty",
        ),
        (
            "bad item owner",
            "accepted",
            |w| accepted(w).item.as_mut().unwrap().owner = "x".to_owned(),
            "body.accepted.item.owner",
            "exactly 12",
        ),
        (
            "material code too long",
            "accepted",
            |w| accepted(w).materials[2] = "m".repeat(51),
            "body.accepted.materials[2]",
            "51 characters",
        ),
        (
            "bad home village",
            "accepted",
            |w| accepted(w).home_village = "000000000000".to_owned(),
            "body.accepted.home_village",
            "province",
        ),
        (
            "acceptance without a deadline",
            "accepted",
            |w| accepted(w).deadline = None,
            "body.accepted.deadline",
            "missing",
        ),
        (
            "deadline due before its start",
            "accepted",
            |w| accepted(w).deadline.as_mut().unwrap().due = date(2026, 9, 1),
            "body.accepted.deadline.due",
            "before the start",
        ),
        (
            "unknown step action",
            "step_done",
            |w| {
                if let Some(ev::Body::StepDone(s)) = w.body.as_mut() {
                    s.action = "stamp".to_owned();
                }
            },
            "body.step_done.action",
            "unknown step action \"stamp\"",
        ),
        (
            "step code too long",
            "step_done",
            |w| {
                if let Some(ev::Body::StepDone(s)) = w.body.as_mut() {
                    s.step = "s".repeat(51);
                }
            },
            "body.step_done.step",
            "51 characters",
        ),
        (
            "notice delivered to a bad node",
            "notice_started",
            |w| {
                if let Some(ev::Body::NoticeStarted(n)) = w.body.as_mut() {
                    n.delivered_to[1] = "43042110500".to_owned();
                }
            },
            "body.notice_started.delivered_to[1]",
            "exactly 12",
        ),
        (
            "notice without an end",
            "notice_started",
            |w| {
                if let Some(ev::Body::NoticeStarted(n)) = w.body.as_mut() {
                    n.ends = None;
                }
            },
            "body.notice_started.ends",
            "missing",
        ),
        (
            "forwarded to nobody",
            "forwarded",
            |w| {
                if let Some(ev::Body::Forwarded(f)) = w.body.as_mut() {
                    f.to = None;
                }
            },
            "body.forwarded.to",
            "missing",
        ),
        (
            "forwarded to a bad node",
            "forwarded",
            |w| {
                if let Some(ev::Body::Forwarded(f)) = w.body.as_mut() {
                    f.to.as_mut().unwrap().node = "43042100000a".to_owned();
                }
            },
            "body.forwarded.to.node",
            "non-digit",
        ),
        (
            "supplemented deadline due on 2026-13-01",
            "supplemented",
            |w| {
                if let Some(ev::Body::Supplemented(s)) = w.body.as_mut() {
                    s.deadline.as_mut().unwrap().due = date(2026, 13, 1);
                }
            },
            "body.supplemented.deadline.due",
            "2026-13-01 is not a calendar date",
        ),
        (
            "supplemented deadline without a start",
            "supplemented",
            |w| {
                if let Some(ev::Body::Supplemented(s)) = w.body.as_mut() {
                    s.deadline.as_mut().unwrap().start = None;
                }
            },
            "body.supplemented.deadline.start",
            "missing",
        ),
        (
            "supplemented request from a bad node",
            "supplemented",
            |w| {
                if let Some(ev::Body::Supplemented(s)) = w.body.as_mut() {
                    s.request.as_mut().unwrap().origin = "4304".to_owned();
                }
            },
            "body.supplemented.request.origin",
            "exactly 12",
        ),
        (
            "assisted without a request",
            "assisted",
            |w| {
                if let Some(ev::Body::Assisted(a)) = w.body.as_mut() {
                    a.request = None;
                }
            },
            "body.assisted.request",
            "missing",
        ),
        (
            "correction without a kind",
            "corrected",
            |w| {
                if let Some(ev::Body::Corrected(c)) = w.body.as_mut() {
                    c.correction = Some(pb::Correction { kind: None });
                }
            },
            "body.corrected.correction.kind",
            "missing",
        ),
        (
            "corrected name with a control character",
            "corrected",
            |w| {
                if let Some(ev::Body::Corrected(c)) = w.body.as_mut() {
                    c.correction = Some(pb::Correction {
                        kind: Some(pb::correction::Kind::ApplicantName("张\u{7}三".to_owned())),
                    });
                }
            },
            "body.corrected.correction.applicant_name",
            "invalid name",
        ),
        (
            "extension of 70000 days",
            "extended",
            |w| {
                if let Some(ev::Body::Extended(x)) = w.body.as_mut() {
                    x.working_days = 70_000;
                }
            },
            "body.extended.working_days",
            "out of range",
        ),
        (
            "resumed without a deadline",
            "resumed",
            |w| {
                if let Some(ev::Body::Resumed(r)) = w.body.as_mut() {
                    r.deadline = None;
                }
            },
            "body.resumed.deadline",
            "missing",
        ),
        (
            "withdrawn by a bad request",
            "withdrawn",
            |w| {
                if let Some(ev::Body::Withdrawn(x)) = w.body.as_mut() {
                    x.request.as_mut().unwrap().origin = String::new();
                }
            },
            "body.withdrawn.request.origin",
            "exactly 12",
        ),
        (
            "refused at an overlong step",
            "refused",
            |w| {
                if let Some(ev::Body::Refused(r)) = w.body.as_mut() {
                    r.step = Some("s".repeat(60));
                }
            },
            "body.refused.step",
            "60 characters",
        ),
        (
            "satisfaction 300",
            "evaluated",
            |w| {
                if let Some(ev::Body::Evaluated(e)) = w.body.as_mut() {
                    e.satisfaction = 300;
                }
            },
            "body.evaluated.satisfaction",
            "300 is out of range",
        ),
    ];
    for (what, kind, mutate, field, needle) in table {
        let mut w = wire(kind);
        let before = w.clone();
        mutate(&mut w);
        assert_ne!(w, before, "{what}: the mutation changed nothing");
        expect(CaseEvent::try_from(w), what, field, needle);
    }
}

#[test]
fn bad_id_numbers_name_the_field_and_never_echo_the_number() {
    let table = [
        ("430421199001011234", "check digit"),
        ("430421199002301232", "birth-date part"),
        ("43042119900101123A", "the first 17 characters"),
        ("43042119900101123", "got 17"),
        ("4304211990010112331", "got 19"),
    ];
    for (id, needle) in table {
        let mut w = wire("accepted");
        applicant(&mut w).id_number = id.to_owned();
        let err = CaseEvent::try_from(w).unwrap_err();
        assert_eq!(err.field(), "body.accepted.applicant.id_number", "{id}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(needle), "{id}: {needle:?} not in {shown}");
        // No run of four characters of the number appears (not even the birth date).
        let chars: Vec<char> = id.chars().collect();
        for run in chars.windows(4) {
            let run: String = run.iter().collect();
            assert!(!shown.contains(&run), "{id}: {run:?} echoed in {shown}");
        }
    }
}

#[test]
fn names_are_never_echoed() {
    let bad = "名".repeat(65);
    let mut w = wire("accepted");
    applicant(&mut w).name = bad.clone();
    let err = CaseEvent::try_from(w).unwrap_err();
    assert_eq!(err.field(), "body.accepted.applicant.name");
    assert!(!format!("{err} {err:?}").contains("名名"), "{err}");
}

#[test]
fn debug_of_wire_messages_masks_id_numbers_and_names() {
    for kind in ["accepted", "corrected"] {
        for e in events().iter().filter(|e| e.body.kind() == kind) {
            let shown = format!(
                "{:?} {:#?}",
                pb::CaseEventPayload::from(e),
                pb::CaseEventPayload::from(e)
            );
            for secret in [ID, NAME, HELPER, "张三峰", "19900101", "阿依古丽"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }
    let shown = format!("{:?}", wire("accepted"));
    assert!(shown.contains("430421********1233"), "{shown}");
    assert!(shown.contains("张**"), "{shown}");
    assert!(shown.contains("李*"), "{shown}");
    let mut w = wire("accepted");
    applicant(&mut w).id_number = "430421199001011234".to_owned();
    let shown = format!("{w:?}");
    assert!(shown.contains("<invalid, 18 characters>"), "{shown}");
    assert!(!shown.contains("4304211990"), "{shown}");
}

#[test]
fn malformed_requests_name_the_field() {
    type Mutation = fn(&mut pb::RequestPayload);
    let table: &[(&str, Mutation, &str, &str)] = &[
        ("missing id", |w| w.id = None, "id", "missing"),
        (
            "bad origin",
            |w| w.id.as_mut().unwrap().origin = "99".to_owned(),
            "id.origin",
            "exactly 12",
        ),
        (
            "bad case number",
            |w| w.case_number = "43042110520420260924000a".to_owned(),
            "case_number",
            "non-digit",
        ),
        ("missing from", |w| w.from = None, "from", "missing"),
        (
            "bad from node",
            |w| w.from.as_mut().unwrap().node = "430421105400".to_owned(),
            "from.node",
            "village part 400",
        ),
        ("missing time", |w| w.at = None, "at", "missing"),
        ("missing kind", |w| w.kind = None, "kind", "missing"),
        (
            "supplement arrived on 2026-02-29",
            |w| {
                if let Some(pb::request_payload::Kind::Supplement(s)) = w.kind.as_mut() {
                    s.arrived = date(2026, 2, 29);
                }
            },
            "kind.supplement.arrived",
            "2026-02-29 is not a calendar date",
        ),
        (
            "supplement material code too long",
            |w| {
                if let Some(pb::request_payload::Kind::Supplement(s)) = w.kind.as_mut() {
                    s.materials[0] = "m".repeat(51);
                }
            },
            "kind.supplement.materials[0]",
            "51 characters",
        ),
    ];
    let supplement = requests()
        .into_iter()
        .find(|r| matches!(r.kind, RequestKind::Supplement { .. }))
        .unwrap();
    for (what, mutate, field, needle) in table {
        let mut w = pb::RequestPayload::from(&supplement);
        let before = w.clone();
        mutate(&mut w);
        assert_ne!(w, before, "{what}: the mutation changed nothing");
        expect(Request::try_from(w), what, field, needle);
    }
}

/// A revision alarm round-trips; one naming no known revision kind, or a zero identity, is
/// refused naming its field.
#[test]
fn revision_alarms_round_trip_and_malformed_ones_name_the_field() {
    let alarm = yimen_core::case::RevisionAlarm {
        node: code("430421105204"),
        revision: yimen_core::link::EventId {
            origin: "430421105000".to_owned(),
            epoch: 7,
            seq: 3,
        },
        kind: "catalog".to_owned(),
        reason: "1 problem(s)".to_owned(),
        at: at(day(2026, 12, 24), 9, 0),
    };
    let w = pb::RevisionAlarm::from(&alarm);
    assert_eq!(
        yimen_core::case::RevisionAlarm::try_from(w.clone()).unwrap(),
        alarm
    );
    type Mutation = fn(&mut pb::RevisionAlarm);
    let table: [(&str, Mutation, &str, &str); 4] = [
        (
            "unknown kind",
            |w| w.kind = "budget".to_owned(),
            "kind",
            "catalog",
        ),
        (
            "zero seq",
            |w| w.revision_seq = 0,
            "revision_seq",
            "greater than 0",
        ),
        (
            "bad origin",
            |w| w.revision_origin = "43".to_owned(),
            "revision_origin",
            "",
        ),
        ("empty reason", |w| w.reason.clear(), "reason", ""),
    ];
    for (what, mutate, field, needle) in table {
        let mut bad = w.clone();
        mutate(&mut bad);
        expect(
            yimen_core::case::RevisionAlarm::try_from(bad),
            what,
            field,
            needle,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(w) = decode_payload::<pb::CaseEventPayload>(&bytes, "case event") {
            let _ = format!("{w:?}");
            let _ = CaseEvent::try_from(w);
        }
        if let Ok(w) = decode_payload::<pb::RequestPayload>(&bytes, "request") {
            let _ = format!("{w:?}");
            let _ = Request::try_from(w);
        }
    }

    /// Valid case events with one byte changed.
    #[test]
    fn corrupted_case_events_never_panic(
        which in any::<prop::sample::Index>(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let events = events();
        let e = &events[which.index(events.len())];
        let mut bytes = encode_payload(&pb::CaseEventPayload::from(e));
        let at = index.index(bytes.len());
        bytes[at] = byte;
        if let Ok(w) = decode_payload::<pb::CaseEventPayload>(&bytes, "case event") {
            let _ = format!("{w:?}");
            let _ = CaseEvent::try_from(w);
        }
    }

    /// Any date and time fields: accepted exactly when chrono has that instant, and then
    /// round-tripped.
    #[test]
    fn any_local_date_time_is_checked(
        year in any::<i32>(),
        month in 0u32..14,
        day in 0u32..33,
        seconds_of_day in prop_oneof![0u32..86_401, any::<u32>()],
        nanos in prop_oneof![Just(0u32), 0u32..2_000_000_001, any::<u32>()],
    ) {
        let mut w = wire("received");
        w.at = Some(pb::LocalDateTime {
            date: Some(pb::Date { year, month, day }),
            seconds_of_day,
            nanos,
        });
        let expected = NaiveDate::from_ymd_opt(year, month, day).and_then(|d| {
            NaiveTime::from_num_seconds_from_midnight_opt(seconds_of_day, nanos)
                .filter(|_| seconds_of_day < 86_400)
                .map(|t| d.and_time(t))
        });
        match (CaseEvent::try_from(w.clone()), expected) {
            (Ok(e), Some(at)) => {
                prop_assert_eq!(e.at, at);
                prop_assert_eq!(pb::CaseEventPayload::from(&e), w);
            }
            (Err(err), None) => prop_assert!(err.field().starts_with("at."), "{}", err),
            (got, expected) => prop_assert!(false, "{:?} vs {:?}", got, expected),
        }
    }
}
