//! The cases issue's Done-when tests: 同城通办 within the county and across counties, the
//! provisional deadline and its confirmation, return for supplement, the table of refused
//! events, case numbers across a day, 代办, corrections, extensions and pauses.
//!
//! Everything runs on fixed dates with the builtin calendar (or a test calendar for 2027);
//! every event goes through `Case::propose` and `Case::apply`, as in the shell.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use yimen_core::calendar::{Calendar, CalendarYear};
use yimen_core::case::{
    Case, CaseError, CaseEvent, CaseEventBody, CaseStatus, Correction, Due, Helper, Request,
    RequestId, RequestKind, Rules,
};
use yimen_core::catalog::{DeptKey, ItemVersion, MaterialCode, StepAction, StepCode};
use yimen_core::command::{self, Actor, Application, Command};
use yimen_core::division::DivisionCode;
use yimen_core::numbering::{CaseCounter, CaseNumber, NumberingError, SEQ_PER_DAY_MAX};
use yimen_core::person::{Applicant, IdNumber, PersonName, Status};
use yimen_core::routing::{self, Custodian, RoutingError};
use yimen_core::sample;
use yimen_core::topology::Topology;

/// 河泉村, 演陂镇: where every case here is accepted.
const HEQUAN: &str = "430421105204";
/// 演陂镇.
const YANPI: &str = "430421105000";
/// 西渡镇.
const XIDU: &str = "430421100000";
/// The 西渡镇 fixture village: the applicant's household and home village.
const XIDU_VILLAGE: &str = "430421100201";
/// 衡阳县.
const COUNTY: &str = "430421000000";
/// 衡阳市 (only in the city topology).
const CITY: &str = "430400000000";
/// 衡南县's township and community (only in the city topology).
const HENGNAN_TOWNSHIP: &str = "430422001000";
const HENGNAN_VILLAGE: &str = "430422001001";

const CLERK: &str = "河泉村便民服务中心 王芳";

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

/// "node" or "node/dept".
fn cust(s: &str) -> Custodian {
    s.parse().unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn at(d: &str, hour: u32, minute: u32) -> NaiveDateTime {
    day(d).and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap())
}

fn materials(codes: &[&str]) -> BTreeSet<MaterialCode> {
    codes
        .iter()
        .map(|c| MaterialCode((*c).to_owned()))
        .collect()
}

fn items() -> (ItemVersion, ItemVersion) {
    let mut items = sample::items().into_iter();
    let senior = items.next().unwrap();
    let aid = items.next().unwrap();
    assert_eq!(senior.code.0, sample::SENIOR_CARD);
    assert_eq!(aid.code.0, sample::MEDICAL_AID);
    (senior, aid)
}

/// A 2027 calendar (version 2): only New Year's Day off, no working weekends.
fn calendar_2027() -> Calendar {
    let year = CalendarYear {
        year: 2027,
        days_off: BTreeSet::from([day("2027-01-01")]),
        working_weekends: BTreeSet::new(),
        source: "test".to_owned(),
    };
    Calendar::builtin()
        .apply(Calendar {
            version: 2,
            years: BTreeMap::from([(2027, year)]),
        })
        .unwrap()
}

/// A 低保 applicant registered in `household`, with everything 医疗救助 asks for.
fn aid_application(topology: &Topology, household: &str, helper: Option<Helper>) -> Application {
    let household = code(household);
    Application {
        applicant: Applicant {
            id_number: IdNumber::parse("430421199001011233").unwrap(),
            name: PersonName::parse("李四").unwrap(),
            household,
            statuses: BTreeSet::from([Status::Dibao]),
        },
        helper,
        presented: materials(&["zyfp", "xnhpj", "dbz"]),
        home_village: routing::home_village(topology, household),
    }
}

/// A case being driven, with the rules and calendar it is driven with.
struct Run<'a> {
    rules: Rules<'a>,
    case: Case,
    calendar: &'a Calendar,
}

impl<'a> Run<'a> {
    /// Accepts at 河泉村 with case number 0001 of the day.
    fn accept(
        item: &'a ItemVersion,
        application: Application,
        when: NaiveDateTime,
        calendar: &'a Calendar,
    ) -> Run<'a> {
        let number = CaseCounter::new().next(code(HEQUAN), when.date()).unwrap();
        let actor = Actor {
            custodian: cust(HEQUAN),
            operator: CLERK.to_owned(),
            at: when,
            calendar,
        };
        let event = command::accept(item, application, number, &actor).unwrap();
        let rules = Rules { item };
        let case = Case::open(event, &rules).unwrap();
        Run {
            rules,
            case,
            calendar,
        }
    }

    fn propose(
        &self,
        who: &Custodian,
        when: NaiveDateTime,
        command: Command,
    ) -> Result<CaseEvent, CaseError> {
        self.propose_with(who, when, command, self.calendar)
    }

    fn propose_with(
        &self,
        who: &Custodian,
        when: NaiveDateTime,
        command: Command,
        calendar: &Calendar,
    ) -> Result<CaseEvent, CaseError> {
        let actor = Actor {
            custodian: who.clone(),
            operator: format!("{who} 经办人"),
            at: when,
            calendar,
        };
        self.case.propose(command, &actor, &self.rules)
    }

    /// Proposes and applies; panics with the reason when refused.
    fn act(&mut self, who: &Custodian, when: NaiveDateTime, command: Command) -> CaseEvent {
        let shown = format!("{command:?}");
        let event = self
            .propose(who, when, command)
            .unwrap_or_else(|e| panic!("{who} {shown} at {when}: {e}"));
        self.case.apply(event.clone(), &self.rules).unwrap();
        event
    }

    fn request(
        &self,
        from: &Custodian,
        seq: u64,
        when: NaiveDateTime,
        kind: RequestKind,
    ) -> Request {
        Request {
            id: RequestId {
                origin: from.node,
                seq,
            },
            case: self.case.number,
            from: from.clone(),
            operator: format!("{from} 经办人"),
            at: when,
            kind,
        }
    }
}

fn decide(request: Request, accept: bool) -> Command {
    Command::Decide {
        request,
        accept,
        reason: if accept {
            String::new()
        } else {
            "经核实不予采纳".to_owned()
        },
    }
}

fn objection(text: &str) -> RequestKind {
    RequestKind::Objection {
        text: text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. 同城通办 within the county.

#[test]
fn same_city_within_the_county_follows_the_household_and_keeps_one_custodian() {
    let topology = Topology::sample_hengyang();
    let cal = Calendar::builtin();
    let (_, aid) = items();
    let accepting = code(HEQUAN);
    let household = code(XIDU_VILLAGE);

    // Routing: 西渡镇 reviews and posts the notice; 衡阳县医保局 approves.
    let route = |index| routing::competent_at(&topology, &aid, index, accepting, household);
    let village = cust(HEQUAN);
    let township = cust(XIDU);
    let county = cust(&format!("{COUNTY}/ybj"));
    assert_eq!(route(0).unwrap(), village, "precheck");
    assert_eq!(route(1).unwrap(), township, "review");
    assert_eq!(route(2).unwrap(), township, "notice");
    assert_eq!(route(3).unwrap(), county, "approval");
    assert_eq!(
        route(3).unwrap().department,
        Some(DeptKey(sample::DEPT_MEDICAL_INSURANCE.to_owned()))
    );
    assert_eq!(route(2).unwrap().department, None);
    assert_eq!(route(5).unwrap(), village, "completion");
    let home_node = routing::home_village(&topology, household).unwrap();
    assert_eq!(home_node, code(XIDU_VILLAGE));
    let home = Custodian {
        node: home_node,
        department: None,
    };

    let mut run = Run::accept(
        &aid,
        aid_application(&topology, XIDU_VILLAGE, None),
        at("2026-09-24", 15, 0),
        &cal,
    );
    assert_eq!(run.case.acceptance.home_village, Some(home_node));
    assert_eq!(run.case.deadline.due, day("2026-10-15"));
    assert_eq!(run.case.custodian, village);

    let e = run.act(
        &village,
        at("2026-09-24", 15, 20),
        Command::DoStep {
            opinion: "材料齐全".to_owned(),
        },
    );
    assert!(matches!(
        e.body,
        CaseEventBody::StepDone { action: StepAction::PreCheck, ref step, .. } if step.0 == "cs"
    ));
    run.act(
        &village,
        at("2026-09-24", 15, 30),
        Command::Forward {
            to: route(1).unwrap(),
            reason: "报乡镇审核".to_owned(),
        },
    );
    assert_eq!(run.case.custodian, township);
    assert!(!run.case.received);
    run.act(&township, at("2026-09-28", 9, 0), Command::Receive);
    run.act(
        &township,
        at("2026-09-28", 9, 30),
        Command::DoStep {
            opinion: "情况属实".to_owned(),
        },
    );
    assert!(
        !run.case.audience.contains(&home_node),
        "the home village hears of the case only through the notice"
    );
    let audience_before = run.case.audience.clone();
    assert_eq!(
        audience_before,
        BTreeSet::from([code(HEQUAN), code(XIDU)]),
        "accepting village and every custodian so far"
    );

    let notice_day = day("2026-09-28");
    run.act(
        &township,
        at("2026-09-28", 10, 0),
        Command::StartNotice {
            delivered_to: vec![home_node],
        },
    );
    // 7 working days after 09-28, across the National Day holiday (10-10 is worked).
    let ends = day("2026-10-13");
    assert_eq!(run.case.notice_ends, Some(ends));
    assert_eq!(cal.add_working_days(notice_day, 7).unwrap(), ends);
    assert_eq!(run.case.status, CaseStatus::InNotice);
    assert_eq!(
        run.case.custodian, township,
        "the township holds the case during 公示"
    );
    assert!(run.case.audience.contains(&home_node));
    assert!(audience_before.is_subset(&run.case.audience));
    // The notice is not counted toward the limit: 10 + 7 working days from 09-24.
    assert_eq!(run.case.deadline.working_days, 17);
    assert_eq!(run.case.deadline.due, day("2026-10-26"));

    // The township's timer: nothing to end before `ends`, EndNotice on it.
    for d in notice_day.iter_days().take_while(|d| *d < ends) {
        let due = run.case.due(d, &cal);
        assert!(
            !due.iter().any(|x| matches!(x, Due::EndNotice { .. })),
            "{d}: {due:?}"
        );
    }
    assert!(run.case.due(ends, &cal).contains(&Due::EndNotice { ends }));

    // An objection taken at the home village is a request, not an event.
    let request = run.request(
        &home,
        1,
        at("2026-09-29", 10, 0),
        objection("村民反映申请人家中另有收入"),
    );
    let before = run.case.clone();
    for command in [
        decide(request.clone(), true),
        Command::DoStep {
            opinion: "异议".to_owned(),
        },
        Command::EndNotice,
    ] {
        let shown = format!("{command:?}");
        let err = run
            .propose(&home, at("2026-09-29", 10, 5), command)
            .unwrap_err();
        assert!(
            matches!(err, CaseError::NotCustodian { ref custodian, .. } if *custodian == township),
            "{shown}: {err:?}"
        );
    }
    // The same event forged with the home village as author is refused by `apply` too.
    let mut forged = run
        .propose(
            &township,
            at("2026-09-29", 10, 5),
            decide(request.clone(), true),
        )
        .unwrap();
    forged.author = home.clone();
    let err = run.case.apply(forged, &run.rules).unwrap_err();
    assert!(matches!(err, CaseError::NotCustodian { .. }), "{err:?}");
    assert_eq!(run.case, before, "a refused event changes nothing");
    // The home village never held the case: it has nobody to pass a request to, and the
    // accepting village passes it to the township.
    assert_eq!(run.case.successor_of(&home), None);
    assert_eq!(run.case.successor_of(&village), Some(&township));
    assert_eq!(
        run.case.successor_of(&township),
        None,
        "the custodian itself"
    );

    let e = run.act(
        &township,
        at("2026-09-29", 10, 30),
        decide(request.clone(), true),
    );
    assert!(matches!(e.body, CaseEventBody::ObjectionRecorded { .. }));
    assert_eq!(e.author, township);
    assert_eq!(run.case.objections, 1);
    assert!(run.case.decided_requests.contains(&request.id));

    let e = run.act(&township, at("2026-10-13", 17, 30), Command::EndNotice);
    assert_eq!(
        e.body,
        CaseEventBody::NoticeEnded {
            step: StepCode("gs".to_owned()),
            objections: 1
        }
    );
    assert_eq!(run.case.status, CaseStatus::Processing);
    run.act(
        &township,
        at("2026-10-13", 17, 40),
        Command::Forward {
            to: route(3).unwrap(),
            reason: "报县医保局审批".to_owned(),
        },
    );
    // Requests travel the chain: village → township → county.
    assert_eq!(run.case.custodian, county);
    assert_eq!(run.case.successor_of(&township), Some(&county));
    assert_eq!(run.case.successor_of(&village), Some(&township));
    assert_eq!(run.case.successor_of(&county), None);
    assert_eq!(run.case.successor_of(&home), None);

    run.act(&county, at("2026-10-14", 9, 0), Command::Receive);
    let e = run.act(
        &county,
        at("2026-10-14", 10, 0),
        Command::DoStep {
            opinion: "同意救助".to_owned(),
        },
    );
    assert!(matches!(
        e.body,
        CaseEventBody::StepDone {
            action: StepAction::Approve,
            ..
        }
    ));
    run.act(
        &county,
        at("2026-10-14", 15, 0),
        Command::DoStep {
            opinion: "已拨付".to_owned(),
        },
    );
    run.act(
        &county,
        at("2026-10-14", 15, 10),
        Command::Forward {
            to: route(5).unwrap(),
            reason: "结果反馈".to_owned(),
        },
    );
    assert_eq!(run.case.successor_of(&county), Some(&village));
    run.act(&village, at("2026-10-15", 9, 0), Command::Receive);
    run.act(
        &village,
        at("2026-10-15", 9, 30),
        Command::Complete {
            result: "已发放".to_owned(),
        },
    );
    assert_eq!(run.case.status, CaseStatus::Completed);
    assert_eq!(
        run.case.custody_chain,
        vec![village.clone(), township, county, village]
    );
    assert!(!run.case.is_overdue(day("2026-10-15")));
    assert_eq!(
        Case::replay(&run.case.events, &run.rules).unwrap(),
        run.case
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Across counties.

#[test]
fn across_counties_routes_through_the_city_or_is_refused_without_it() {
    let (_, aid) = items();
    let accepting = code(HEQUAN);
    let household = code(HENGNAN_VILLAGE);

    let city = Topology::sample_hengyang_city();
    let review = routing::competent_at(&city, &aid, 1, accepting, household).unwrap();
    assert_eq!(review, cust(HENGNAN_TOWNSHIP));
    let approval = routing::competent_at(&city, &aid, 3, accepting, household).unwrap();
    assert_eq!(approval, cust("430422000000/ybj"));
    let path = routing::path(&city, accepting, review.node).unwrap();
    assert!(path.contains(&code(CITY)), "{path:?}");
    assert_eq!(path.first(), Some(&accepting));
    assert_eq!(path.last(), Some(&code(HENGNAN_TOWNSHIP)));
    assert_eq!(
        routing::home_village(&city, household),
        Some(code(HENGNAN_VILLAGE))
    );

    let county_only = Topology::sample_hengyang();
    for index in 1..=4 {
        let err =
            routing::competent_at(&county_only, &aid, index, accepting, household).unwrap_err();
        assert!(
            matches!(err, RoutingError::Unserved { code: c, .. } if c == household),
            "step {index}: {err:?}"
        );
        assert!(!err.reason_zh().trim().is_empty());
    }
    // The village steps stay at the accepting village either way.
    assert_eq!(
        routing::competent_at(&county_only, &aid, 0, accepting, household).unwrap(),
        cust(HEQUAN)
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Provisional deadline.

#[test]
fn a_provisional_deadline_is_confirmed_by_the_custodian_once_the_calendar_arrives() {
    let topology = Topology::sample_hengyang();
    let builtin = Calendar::builtin();
    let cal2027 = calendar_2027();
    let (_, aid) = items();
    let mut run = Run::accept(
        &aid,
        aid_application(&topology, HEQUAN, None),
        at("2026-12-28", 9, 0),
        &builtin,
    );
    let acceptance = run.case.acceptance.deadline;
    assert_eq!(acceptance.due, day("2027-01-11"));
    assert!(acceptance.provisional);
    assert_eq!(acceptance.calendar_version, 1);
    assert!(acceptance.describe_zh().contains("暂定"));

    // The builtin calendar cannot confirm it; the 2027 one can.
    let today = day("2026-12-30");
    assert!(
        !run.case
            .due(today, &builtin)
            .iter()
            .any(|d| matches!(d, Due::ConfirmDeadline { .. }))
    );
    let due = run.case.due(today, &cal2027);
    assert!(
        due.iter().any(|d| matches!(
            d,
            Due::ConfirmDeadline { deadline } if deadline.due == day("2027-01-12")
        )),
        "{due:?}"
    );
    assert!(
        run.propose(
            &cust(HEQUAN),
            at("2026-12-30", 9, 0),
            Command::ConfirmDeadline
        )
        .is_err(),
        "nothing to confirm with a calendar that still lacks 2027"
    );

    let first = run.case.events[0].clone();
    // Only the custodian confirms.
    for other in [
        cust(YANPI),
        cust(&format!("{COUNTY}/ybj")),
        cust(XIDU_VILLAGE),
    ] {
        let err = run
            .propose_with(
                &other,
                at("2026-12-30", 9, 0),
                Command::ConfirmDeadline,
                &cal2027,
            )
            .unwrap_err();
        assert!(
            matches!(err, CaseError::NotCustodian { .. }),
            "{other}: {err:?}"
        );
    }
    let event = run
        .propose_with(
            &cust(HEQUAN),
            at("2026-12-30", 9, 0),
            Command::ConfirmDeadline,
            &cal2027,
        )
        .unwrap();
    let CaseEventBody::DeadlineConfirmed { deadline } = event.body else {
        panic!("{event:?}");
    };
    assert_eq!(deadline.due, day("2027-01-12"));
    assert_eq!(deadline.calendar_version, 2);
    assert!(!deadline.provisional);
    assert_eq!(deadline.start, acceptance.start);
    assert_eq!(deadline.working_days, acceptance.working_days);
    run.case.apply(event, &run.rules).unwrap();
    assert_eq!(run.case.deadline, deadline);
    assert!(!run.case.deadline.provisional);
    assert_eq!(
        run.case.events[0], first,
        "the acceptance is never rewritten"
    );
    assert_eq!(run.case.acceptance.deadline, acceptance);
    assert!(
        !run.case
            .due(today, &cal2027)
            .iter()
            .any(|d| matches!(d, Due::ConfirmDeadline { .. }))
    );
    // Confirmed once: a second confirmation is refused.
    let err = run
        .propose_with(
            &cust(HEQUAN),
            at("2026-12-30", 9, 5),
            Command::ConfirmDeadline,
            &cal2027,
        )
        .unwrap_err();
    assert!(matches!(err, CaseError::Invalid { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. Return for supplement restarts the clock.

/// How the material arrives after the return.
#[derive(Clone, Copy, Debug)]
enum Arrival {
    /// At the village counter, registered the same day.
    Counter,
    /// As a request from another node, decided by the village `registered` later.
    Request {
        from: &'static str,
        registered: &'static str,
    },
}

#[test]
fn return_for_supplement_restarts_the_clock_on_arrival() {
    let topology = Topology::sample_hengyang();
    let cal = Calendar::builtin();
    let (_, aid) = items();
    // (returned on, material arrives on, how, due).
    let rows: &[(&str, &str, Arrival, &str)] = &[
        ("2026-09-28", "2026-09-29", Arrival::Counter, "2026-10-19"),
        ("2026-09-28", "2026-09-30", Arrival::Counter, "2026-10-20"),
        ("2026-09-28", "2026-10-12", Arrival::Counter, "2026-10-26"),
        ("2026-11-02", "2026-11-06", Arrival::Counter, "2026-11-20"),
        (
            "2026-09-28",
            "2026-09-29",
            Arrival::Request {
                from: XIDU_VILLAGE,
                registered: "2026-10-09",
            },
            "2026-10-19",
        ),
        (
            "2026-11-02",
            "2026-11-03",
            Arrival::Request {
                from: YANPI,
                registered: "2026-11-05",
            },
            "2026-11-17",
        ),
    ];
    for &(returned, arrived, how, due) in rows {
        let name = format!("returned {returned}, arrived {arrived} {how:?}");
        let mut run = Run::accept(
            &aid,
            aid_application(&topology, HEQUAN, None),
            at("2026-09-24", 9, 0),
            &cal,
        );
        let village = cust(HEQUAN);
        let township = cust(YANPI);
        run.act(
            &village,
            at("2026-09-24", 9, 10),
            Command::DoStep {
                opinion: String::new(),
            },
        );
        run.act(
            &village,
            at("2026-09-24", 9, 20),
            Command::Forward {
                to: township.clone(),
                reason: String::new(),
            },
        );
        run.act(&township, at(returned, 9, 0), Command::Receive);
        run.act(
            &township,
            at(returned, 9, 30),
            Command::Return {
                missing: vec!["低保证复印件".to_owned()],
                reason: "复印件不清晰".to_owned(),
            },
        );
        assert_eq!(run.case.status, CaseStatus::AwaitingSupplement, "{name}");
        assert_eq!(run.case.custodian, village, "{name}");
        assert_eq!(run.case.returns, 1, "{name}");
        run.act(&village, at(returned, 10, 0), Command::Receive);

        let x = day(arrived);
        let event = match how {
            Arrival::Counter => run.act(
                &village,
                at(arrived, 11, 0),
                Command::Supplement {
                    materials: materials(&["dbz"]),
                },
            ),
            Arrival::Request { from, registered } => {
                let request = run.request(
                    &cust(from),
                    7,
                    at(registered, 8, 0),
                    RequestKind::Supplement {
                        materials: materials(&["dbz"]),
                        arrived: x,
                    },
                );
                run.act(&village, at(registered, 11, 0), decide(request, true))
            }
        };
        let CaseEventBody::Supplemented {
            deadline: Some(d),
            arrived: got_arrived,
            ..
        } = event.body
        else {
            panic!("{name}: {event:?}");
        };
        assert_eq!(got_arrived, x, "{name}");
        assert_eq!(d.start, x, "{name}");
        assert_eq!(d.due, cal.add_working_days(x, 10).unwrap(), "{name}");
        assert_eq!(d.due, day(due), "{name}");
        assert_eq!(d.working_days, 10, "{name}");
        assert!(!d.provisional, "{name}");
        assert_eq!(run.case.deadline, d, "{name}");
        assert_eq!(run.case.status, CaseStatus::Processing, "{name}");

        // Material arriving later, with no return pending, leaves the deadline alone.
        let e = run.act(
            &village,
            at(due, 8, 0),
            Command::Supplement {
                materials: materials(&["czybpj"]),
            },
        );
        assert!(
            matches!(e.body, CaseEventBody::Supplemented { deadline: None, .. }),
            "{name}"
        );
        assert_eq!(run.case.deadline, d, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Refused events.

/// One action: a command proposed as usual, or an event body applied as it stands (what a
/// broken or hostile peer could send).
#[derive(Clone, Debug)]
enum Act {
    Cmd(Command),
    Raw(CaseEventBody),
}

/// One scripted action of the happy path.
type Scripted = (Custodian, NaiveDateTime, Command);

/// Stages of the happy path: how many scripted actions have run.
const ACCEPTED: usize = 0;
const PRECHECKED: usize = 1;
const TO_TOWNSHIP: usize = 2;
const AT_TOWNSHIP: usize = 3;
const REVIEWED: usize = 4;
const IN_NOTICE: usize = 5;
const NOTICE_ENDED: usize = 6;
const AT_COUNTY: usize = 8;
const DISBURSED: usize = 10;
const COMPLETED: usize = 13;
const EVALUATED: usize = 14;

/// 医疗救助 for a 西渡镇 household accepted at 河泉村 on 2026-09-24, from precheck to the
/// evaluation.
fn happy_path() -> Vec<Scripted> {
    let v = cust(HEQUAN);
    let t = cust(XIDU);
    let c = cust(&format!("{COUNTY}/ybj"));
    let step = |opinion: &str| Command::DoStep {
        opinion: opinion.to_owned(),
    };
    vec![
        (v.clone(), at("2026-09-24", 15, 20), step("初审通过")),
        (
            v.clone(),
            at("2026-09-24", 15, 30),
            Command::Forward {
                to: t.clone(),
                reason: "报乡镇审核".to_owned(),
            },
        ),
        (t.clone(), at("2026-09-28", 9, 0), Command::Receive),
        (t.clone(), at("2026-09-28", 9, 30), step("审核通过")),
        (
            t.clone(),
            at("2026-09-28", 10, 0),
            Command::StartNotice {
                delivered_to: vec![code(XIDU_VILLAGE)],
            },
        ),
        (t.clone(), at("2026-10-13", 17, 30), Command::EndNotice),
        (
            t,
            at("2026-10-13", 17, 40),
            Command::Forward {
                to: c.clone(),
                reason: "报县医保局审批".to_owned(),
            },
        ),
        (c.clone(), at("2026-10-14", 9, 0), Command::Receive),
        (c.clone(), at("2026-10-14", 10, 0), step("同意")),
        (c.clone(), at("2026-10-14", 15, 0), step("已拨付")),
        (
            c,
            at("2026-10-14", 15, 10),
            Command::Forward {
                to: v.clone(),
                reason: "结果反馈".to_owned(),
            },
        ),
        (v.clone(), at("2026-10-15", 9, 0), Command::Receive),
        (
            v.clone(),
            at("2026-10-15", 9, 30),
            Command::Complete {
                result: "已发放".to_owned(),
            },
        ),
        (
            v,
            at("2026-10-15", 9, 35),
            Command::Evaluate { satisfaction: 1 },
        ),
    ]
}

/// An objection from the home village to `number`, raised during the notice.
fn objection_to(number: CaseNumber) -> Request {
    Request {
        id: RequestId {
            origin: code(XIDU_VILLAGE),
            seq: 1,
        },
        case: number,
        from: cust(XIDU_VILLAGE),
        operator: "示范村 村干部".to_owned(),
        at: at("2026-09-29", 9, 0),
        kind: objection("有异议"),
    }
}

fn opinion_from_yanpi(number: CaseNumber) -> Request {
    Request {
        id: RequestId {
            origin: code(YANPI),
            seq: 3,
        },
        case: number,
        from: cust(YANPI),
        operator: "演陂镇 协办人".to_owned(),
        at: at("2026-10-15", 9, 40),
        kind: RequestKind::Opinion {
            text: "协办意见".to_owned(),
        },
    }
}

/// (name, stage reached, further setup, actor, action, expected refusal).
type RefusalRow = (
    &'static str,
    usize,
    Vec<Scripted>,
    Custodian,
    Act,
    fn(&CaseError) -> bool,
);

fn refusal_rows(number: CaseNumber) -> Vec<RefusalRow> {
    let v = cust(HEQUAN);
    let t = cust(XIDU);
    let c = cust(&format!("{COUNTY}/ybj"));
    let mzj = cust(&format!("{COUNTY}/mzj"));
    let county_desk = cust(COUNTY);
    let step_cmd = Act::Cmd(Command::DoStep {
        opinion: "意见".to_owned(),
    });
    let forward_to = |to: &Custodian| {
        Act::Cmd(Command::Forward {
            to: to.clone(),
            reason: String::new(),
        })
    };
    let to_county_as = |who: &Custodian| {
        vec![
            (
                t.clone(),
                at("2026-10-13", 17, 40),
                Command::Forward {
                    to: who.clone(),
                    reason: String::new(),
                },
            ),
            (who.clone(), at("2026-10-14", 9, 0), Command::Receive),
        ]
    };
    let raw_step = |code: &str, action| {
        Act::Raw(CaseEventBody::StepDone {
            step: StepCode(code.to_owned()),
            action,
            opinion: String::new(),
        })
    };
    let objection_decided = vec![(
        t.clone(),
        at("2026-09-29", 10, 0),
        decide(objection_to(number), true),
    )];
    let after_completion: Vec<(&'static str, Act)> = vec![
        ("forward", forward_to(&t)),
        (
            "return",
            Act::Cmd(Command::Return {
                missing: vec!["x".to_owned()],
                reason: "x".to_owned(),
            }),
        ),
        (
            "pause",
            Act::Cmd(Command::Pause {
                reason: "听证".to_owned(),
            }),
        ),
        (
            "extend",
            Act::Cmd(Command::Extend {
                working_days: 5,
                reason: "复杂".to_owned(),
                approved_by: "县医保局".to_owned(),
            }),
        ),
        (
            "refuse",
            Act::Cmd(Command::Refuse {
                reason: "不符合".to_owned(),
            }),
        ),
        (
            "complete again",
            Act::Cmd(Command::Complete {
                result: "再次办结".to_owned(),
            }),
        ),
        (
            "correct",
            Act::Cmd(Command::Correct {
                of: 1,
                correction: Correction::ApplicantName(PersonName::parse("李肆").unwrap()),
                reason: "笔误".to_owned(),
            }),
        ),
        (
            "supplement",
            Act::Cmd(Command::Supplement {
                materials: materials(&["dbz"]),
            }),
        ),
        ("assist", Act::Cmd(decide(opinion_from_yanpi(number), true))),
        (
            "decline a request",
            Act::Cmd(decide(opinion_from_yanpi(number), false)),
        ),
        ("a step", raw_step("bj", StepAction::Complete)),
        (
            "a notice",
            Act::Raw(CaseEventBody::NoticeStarted {
                step: StepCode("gs".to_owned()),
                from: day("2026-10-16"),
                ends: day("2026-10-27"),
                delivered_to: vec![],
                deadline: None,
            }),
        ),
    ];

    let is_status: fn(&CaseError) -> bool = |e| matches!(e, CaseError::Status { .. });
    let mut rows: Vec<RefusalRow> = vec![
        (
            "not custodian: the township acts while the village holds the case",
            PRECHECKED,
            vec![],
            t.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::NotCustodian { .. }),
        ),
        (
            "not custodian: the county forwards a case it never held",
            REVIEWED,
            vec![],
            c.clone(),
            forward_to(&v),
            |e| matches!(e, CaseError::NotCustodian { .. }),
        ),
        (
            "not custodian: the former custodian acts after forwarding",
            TO_TOWNSHIP,
            vec![],
            v.clone(),
            forward_to(&c),
            |e| matches!(e, CaseError::NotCustodian { .. }),
        ),
        (
            "not custodian: the ybj desk is not the county's mzj desk",
            AT_COUNTY,
            vec![],
            mzj.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::NotCustodian { .. }),
        ),
        (
            "acting before signing: a step",
            TO_TOWNSHIP,
            vec![],
            t.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::NotReceived { .. }),
        ),
        (
            "acting before signing: forwarding on",
            TO_TOWNSHIP,
            vec![],
            t.clone(),
            forward_to(&c),
            |e| matches!(e, CaseError::NotReceived { .. }),
        ),
        (
            "receiving twice",
            AT_TOWNSHIP,
            vec![],
            t.clone(),
            Act::Cmd(Command::Receive),
            |e| matches!(e, CaseError::AlreadyReceived { .. }),
        ),
        (
            "the accepting village signs for its own acceptance",
            ACCEPTED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Receive),
            |e| matches!(e, CaseError::AlreadyReceived { .. }),
        ),
        (
            "step out of order: approval before review",
            AT_TOWNSHIP,
            vec![],
            t.clone(),
            raw_step("sp", StepAction::Approve),
            |e| matches!(e, CaseError::StepOrder { .. }),
        ),
        (
            "step out of order: the precheck again",
            AT_TOWNSHIP,
            vec![],
            t.clone(),
            raw_step("cs", StepAction::PreCheck),
            |e| matches!(e, CaseError::StepOrder { .. }),
        ),
        (
            "the right step with the wrong action",
            AT_TOWNSHIP,
            vec![],
            t.clone(),
            raw_step("sh", StepAction::Approve),
            |e| matches!(e, CaseError::StepAction { .. }),
        ),
        (
            "wrong department at the approval step: mzj instead of ybj",
            NOTICE_ENDED,
            to_county_as(&mzj),
            mzj.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::StepDepartment { .. }),
        ),
        (
            "wrong department at the approval step: the county's own desk",
            NOTICE_ENDED,
            to_county_as(&county_desk),
            county_desk.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::StepDepartment { .. }),
        ),
        (
            "approval attempted by the township",
            NOTICE_ENDED,
            vec![],
            t.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::StepTier { .. }),
        ),
        (
            "review attempted by the accepting village",
            PRECHECKED,
            vec![],
            v.clone(),
            step_cmd.clone(),
            |e| matches!(e, CaseError::StepTier { .. }),
        ),
        (
            "ending the notice before it ends",
            IN_NOTICE,
            vec![],
            t.clone(),
            Act::Cmd(Command::EndNotice),
            |e| matches!(e, CaseError::NoticeRunning { .. }),
        ),
        (
            "ending a notice that never started",
            REVIEWED,
            vec![],
            t.clone(),
            Act::Cmd(Command::EndNotice),
            |e| matches!(e, CaseError::NotInNotice),
        ),
        (
            "a step while the notice runs",
            IN_NOTICE,
            vec![],
            t.clone(),
            raw_step("gs", StepAction::Notice),
            |e| matches!(e, CaseError::Status { .. }),
        ),
        (
            "completing at acceptance",
            ACCEPTED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Complete {
                result: "办结".to_owned(),
            }),
            |e| matches!(e, CaseError::StepOrder { .. }),
        ),
        (
            "completing after the precheck",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Complete {
                result: "办结".to_owned(),
            }),
            |e| matches!(e, CaseError::StepOrder { .. }),
        ),
        (
            "completing at the county after disbursement",
            DISBURSED,
            vec![],
            c.clone(),
            Act::Cmd(Command::Complete {
                result: "办结".to_owned(),
            }),
            |e| matches!(e, CaseError::StepTier { .. }),
        ),
        (
            "evaluating before completion",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Evaluate { satisfaction: 1 }),
            |e| matches!(e, CaseError::Status { .. }),
        ),
        (
            "evaluating with satisfaction 0",
            COMPLETED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Evaluate { satisfaction: 0 }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "evaluating with satisfaction 6",
            COMPLETED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Evaluate { satisfaction: 6 }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "evaluating twice",
            EVALUATED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Evaluate { satisfaction: 2 }),
            |e| matches!(e, CaseError::Status { .. }),
        ),
        (
            "an extension of 0 days",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Extend {
                working_days: 0,
                reason: "复杂".to_owned(),
                approved_by: "县医保局".to_owned(),
            }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "an extension of 61 days",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Extend {
                working_days: 61,
                reason: "复杂".to_owned(),
                approved_by: "县医保局".to_owned(),
            }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "forwarding to oneself",
            PRECHECKED,
            vec![],
            v.clone(),
            forward_to(&v),
            |e| matches!(e, CaseError::ForwardToSelf { .. }),
        ),
        (
            "a return from the accepting village itself",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Return {
                missing: vec!["低保证复印件".to_owned()],
                reason: "不清晰".to_owned(),
            }),
            |e| matches!(e, CaseError::ForwardToSelf { .. }),
        ),
        (
            "correcting a non-existent event",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Correct {
                of: 99,
                correction: Correction::ApplicantName(PersonName::parse("李肆").unwrap()),
                reason: "笔误".to_owned(),
            }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "correcting event 0",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Correct {
                of: 0,
                correction: Correction::Opinion("更正".to_owned()),
                reason: "笔误".to_owned(),
            }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "correcting the applicant's name on a step event",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Correct {
                of: 2,
                correction: Correction::ApplicantName(PersonName::parse("李肆").unwrap()),
                reason: "笔误".to_owned(),
            }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "a second decision on the same request: declined after accepted",
            IN_NOTICE,
            objection_decided.clone(),
            t.clone(),
            Act::Cmd(decide(objection_to(number), false)),
            |e| matches!(e, CaseError::RequestDecided(_)),
        ),
        (
            "a second decision on the same request: accepted twice",
            IN_NOTICE,
            objection_decided,
            t.clone(),
            Act::Cmd(decide(objection_to(number), true)),
            |e| matches!(e, CaseError::RequestDecided(_)),
        ),
        (
            "an objection accepted outside the notice",
            REVIEWED,
            vec![],
            t.clone(),
            Act::Cmd(decide(objection_to(number), true)),
            |e| matches!(e, CaseError::NotInNotice),
        ),
        (
            "resuming a clock that never stopped",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Resume),
            |e| matches!(e, CaseError::Status { .. }),
        ),
        (
            "confirming a deadline that is not provisional",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::ConfirmDeadline),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "a supplement listing no material",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Cmd(Command::Supplement {
                materials: BTreeSet::new(),
            }),
            |e| matches!(e, CaseError::Invalid { .. }),
        ),
        (
            "a second acceptance",
            PRECHECKED,
            vec![],
            v.clone(),
            Act::Raw(CaseEventBody::Accepted(Box::new(happy_case_acceptance()))),
            |e| matches!(e, CaseError::NotAcceptance),
        ),
    ];
    for (what, act) in after_completion {
        let name: &'static str = Box::leak(format!("after completion: {what}").into_boxed_str());
        rows.push((name, COMPLETED, vec![], v.clone(), act.clone(), is_status));
        let name: &'static str = Box::leak(format!("after evaluation: {what}").into_boxed_str());
        rows.push((name, EVALUATED, vec![], v.clone(), act, is_status));
    }
    rows.push((
        "after completion: signing again",
        COMPLETED,
        vec![],
        v,
        Act::Cmd(Command::Receive),
        |e| matches!(e, CaseError::AlreadyReceived { .. }),
    ));
    rows
}

fn happy_case_acceptance() -> yimen_core::case::Acceptance {
    let topology = Topology::sample_hengyang();
    let cal = Calendar::builtin();
    let (_, aid) = items();
    let run = Run::accept(
        &aid,
        aid_application(&topology, XIDU_VILLAGE, None),
        at("2026-09-24", 15, 0),
        &cal,
    );
    run.case.acceptance
}

#[test]
fn refused_events_change_nothing() {
    let topology = Topology::sample_hengyang();
    let cal = Calendar::builtin();
    let (_, aid) = items();
    let script = happy_path();
    let start = || {
        Run::accept(
            &aid,
            aid_application(&topology, XIDU_VILLAGE, None),
            at("2026-09-24", 15, 0),
            &cal,
        )
    };
    // The whole script runs, and the stages are where the rows think they are.
    let mut whole = start();
    for (i, (who, when, command)) in script.iter().cloned().enumerate() {
        whole.act(&who, when, command);
        let stage = i + 1;
        let status = whole.case.status;
        match stage {
            TO_TOWNSHIP => assert!(!whole.case.received),
            IN_NOTICE => assert_eq!(status, CaseStatus::InNotice),
            COMPLETED => assert_eq!(status, CaseStatus::Completed),
            EVALUATED => assert_eq!(whole.case.evaluation, Some(1)),
            _ => {}
        }
    }
    let number = whole.case.number;

    let rows = refusal_rows(number);
    assert!(rows.len() >= 40, "{}", rows.len());
    for (name, stage, extra, actor, act, expected) in rows {
        let mut run = start();
        for (who, when, command) in script.iter().take(stage).cloned().chain(extra) {
            run.act(&who, when, command);
        }
        let when = run.case.events.last().unwrap().at + chrono::Duration::minutes(1);
        let before = run.case.clone();
        let result = match act.clone() {
            Act::Cmd(command) => run.propose(&actor, when, command).map(|_| ()),
            Act::Raw(body) => {
                let event = CaseEvent {
                    case: run.case.number,
                    seq: run.case.next_seq(),
                    author: actor.clone(),
                    operator: "经办人".to_owned(),
                    at: when,
                    body,
                };
                run.case.apply(event, &run.rules)
            }
        };
        match result {
            Err(e) => assert!(expected(&e), "{name}: refused with {e:?}"),
            Ok(()) => panic!("{name}: {act:?} by {actor} was accepted"),
        }
        assert_eq!(run.case, before, "{name}: a refusal changed the case");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Case numbers across a day.

#[test]
fn case_numbers_run_per_day_and_refuse_a_clock_set_back_or_a_full_day() {
    let node = code(HEQUAN);
    let mut counter = CaseCounter::new();
    for expected in 1..=3u16 {
        let n = counter.next(node, day("2026-09-24")).unwrap();
        assert_eq!(n.seq, expected);
        assert_eq!(
            n.to_string(),
            format!("430421105204{}{expected:04}", "20260924")
        );
        assert_eq!(CaseNumber::parse(&n.to_string()).unwrap(), n);
    }
    // The clock set back a day: refused, the counter unchanged.
    let before = counter;
    assert_eq!(
        counter.next(node, day("2026-09-23")),
        Err(NumberingError::ClockBehind {
            today: day("2026-09-23"),
            last: day("2026-09-24"),
        })
    );
    assert_eq!(counter, before);
    // Same day again continues; the next day starts over at 0001.
    assert_eq!(counter.next(node, day("2026-09-24")).unwrap().seq, 4);
    let next_day = counter.next(node, day("2026-09-25")).unwrap();
    assert_eq!(next_day.seq, 1);
    assert!(next_day.to_string().ends_with("202609250001"));

    // A whole day's numbers: 0001..9999, never twice; the 10,000th is refused.
    let mut counter = CaseCounter::new();
    let mut seen = BTreeSet::new();
    for expected in 1..=SEQ_PER_DAY_MAX {
        let n = counter.next(node, day("2026-09-24")).unwrap();
        assert_eq!(n.seq, expected);
        assert!(seen.insert(n.to_string()));
    }
    assert_eq!(seen.len(), 9999);
    let before = counter;
    assert_eq!(
        counter.next(node, day("2026-09-24")),
        Err(NumberingError::DayFull {
            date: day("2026-09-24")
        })
    );
    assert_eq!(counter, before);
    assert_eq!(counter.next(node, day("2026-09-25")).unwrap().seq, 1);
}

// ---------------------------------------------------------------------------------------------
// 7. 代办, corrections, extensions and pauses.

#[test]
fn a_helper_is_recorded_and_corrections_keep_the_original() {
    let topology = Topology::sample_hengyang();
    let cal = Calendar::builtin();
    let (senior, aid) = items();
    let helper = Helper {
        name: PersonName::parse("张建国").unwrap(),
        relation: "儿子".to_owned(),
    };

    // 代办 on the 即办 item: completed at the village on the day.
    let household = code(HEQUAN);
    let application = Application {
        applicant: Applicant {
            id_number: IdNumber::parse("11010519491231002X").unwrap(),
            name: PersonName::parse("张桂英").unwrap(),
            household,
            statuses: BTreeSet::new(),
        },
        helper: Some(helper.clone()),
        presented: materials(&["sfzfyj", "zp"]),
        home_village: routing::home_village(&topology, household),
    };
    let mut run = Run::accept(&senior, application, at("2026-09-24", 9, 0), &cal);
    assert_eq!(run.case.helper.as_ref(), Some(&helper));
    assert_eq!(run.case.acceptance.helper.as_ref(), Some(&helper));
    assert_eq!(run.case.deadline.due, day("2026-09-24"));
    assert!(run.case.events[0].body.describe_zh().contains("代办人"));
    run.act(
        &cust(HEQUAN),
        at("2026-09-24", 9, 10),
        Command::Complete {
            result: "当场制发".to_owned(),
        },
    );
    assert_eq!(run.case.status, CaseStatus::Completed);

    // Corrections on 医疗救助: the current view changes, the acceptance stays.
    let mut run = Run::accept(
        &aid,
        aid_application(&topology, HEQUAN, Some(helper.clone())),
        at("2026-09-24", 9, 0),
        &cal,
    );
    let v = cust(HEQUAN);
    let first = run.case.events[0].clone();
    let fixed = PersonName::parse("李思").unwrap();
    let e = run.act(
        &v,
        at("2026-09-24", 9, 5),
        Command::Correct {
            of: 1,
            correction: Correction::ApplicantName(fixed.clone()),
            reason: "受理时姓名录入错误".to_owned(),
        },
    );
    assert_eq!(e.seq, 2);
    assert_eq!(run.case.applicant.name, fixed);
    assert_eq!(run.case.events[0], first);
    assert_eq!(
        run.case.acceptance.applicant.name,
        PersonName::parse("李四").unwrap()
    );
    run.act(
        &v,
        at("2026-09-24", 9, 6),
        Command::Correct {
            of: 1,
            correction: Correction::Helper(None),
            reason: "本人办理，非代办".to_owned(),
        },
    );
    assert_eq!(run.case.helper, None);
    assert_eq!(run.case.acceptance.helper, Some(helper));
    assert_eq!(run.case.events[0], first);
    // An opinion correction names the step event it corrects.
    run.act(
        &v,
        at("2026-09-24", 9, 10),
        Command::DoStep {
            opinion: "材料齐合".to_owned(),
        },
    );
    let step_event = run.case.events[3].clone();
    run.act(
        &v,
        at("2026-09-24", 9, 12),
        Command::Correct {
            of: 4,
            correction: Correction::Opinion("材料齐全".to_owned()),
            reason: "错字".to_owned(),
        },
    );
    assert_eq!(run.case.events[3], step_event);
    assert_eq!(
        Case::replay(&run.case.events, &run.rules).unwrap(),
        run.case
    );
}

#[test]
fn extensions_and_pauses_lengthen_the_deadline_by_their_working_days() {
    let topology = Topology::sample_hengyang();
    let cal = Calendar::builtin();
    let (_, aid) = items();
    let v = cust(HEQUAN);

    // Extensions: (accepted, days, due).
    let extensions: &[(&str, u16, &str)] = &[
        ("2026-09-24", 5, "2026-10-22"),
        ("2026-09-24", 1, "2026-10-16"),
        ("2026-11-02", 5, "2026-11-23"),
        ("2026-11-02", 60, "2027-02-08"),
    ];
    for &(accepted, n, due) in extensions {
        let name = format!("accepted {accepted}, extended {n}");
        let mut run = Run::accept(
            &aid,
            aid_application(&topology, HEQUAN, None),
            at(accepted, 9, 0),
            &cal,
        );
        let before = run.case.deadline;
        let e = run.act(
            &v,
            at(accepted, 10, 0),
            Command::Extend {
                working_days: n,
                reason: "情况复杂".to_owned(),
                approved_by: "县医保局负责人".to_owned(),
            },
        );
        assert!(matches!(e.body, CaseEventBody::Extended { .. }), "{name}");
        let after = run.case.deadline;
        assert_eq!(after.start, before.start, "{name}");
        assert_eq!(
            after.working_days,
            before.working_days + u32::from(n),
            "{name}"
        );
        assert_eq!(after.due, day(due), "{name}");
        // Within 2026 the extension adds exactly `n` working days after the old due day.
        if !after.provisional {
            assert_eq!(
                cal.working_days_between(before.due, after.due).unwrap(),
                u32::from(n),
                "{name}"
            );
        }
        assert_eq!(after.provisional, day(due) > day("2026-12-31"), "{name}");
    }

    // Pauses: (accepted, paused, resumed, working days paused, due).
    let pauses: &[(&str, &str, &str, u32, &str)] = &[
        ("2026-11-02", "2026-11-02", "2026-11-05", 3, "2026-11-19"),
        ("2026-11-02", "2026-11-06", "2026-11-09", 1, "2026-11-17"),
        ("2026-11-02", "2026-11-02", "2026-11-02", 0, "2026-11-16"),
        // Across the National Day holiday: 09-29, 09-30, 10-08, 10-09.
        ("2026-09-24", "2026-09-28", "2026-10-09", 4, "2026-10-21"),
    ];
    for &(accepted, paused, resumed, n, due) in pauses {
        let name = format!("accepted {accepted}, paused {paused}, resumed {resumed}");
        let mut run = Run::accept(
            &aid,
            aid_application(&topology, HEQUAN, None),
            at(accepted, 8, 0),
            &cal,
        );
        let before = run.case.deadline;
        run.act(
            &v,
            at(paused, 9, 0),
            Command::Pause {
                reason: "入户调查".to_owned(),
            },
        );
        assert_eq!(run.case.status, CaseStatus::Paused, "{name}");
        assert!(
            !run.case.is_overdue(day("2027-06-01")),
            "{name}: a paused clock"
        );
        let e = run.act(&v, at(resumed, 16, 0), Command::Resume);
        let CaseEventBody::Resumed { on, deadline } = e.body else {
            panic!("{name}: {e:?}");
        };
        assert_eq!(on, day(resumed), "{name}");
        assert_eq!(deadline.working_days, before.working_days + n, "{name}");
        assert_eq!(deadline.start, before.start, "{name}");
        assert_eq!(deadline.due, day(due), "{name}");
        assert_eq!(
            deadline.due,
            cal.add_working_days(before.due, n).unwrap(),
            "{name}"
        );
        assert_eq!(run.case.deadline, deadline, "{name}");
        assert_eq!(run.case.status, CaseStatus::Processing, "{name}");
    }
}

// Regression tests for three defects the first property runs found (village steps done by
// another village, 即办 deadlines moved, material "arriving" before it was asked for).
fn senior_application(t: &Topology) -> Application {
    let h = code(HEQUAN);
    Application {
        applicant: Applicant {
            id_number: IdNumber::parse("11010519491231002X").unwrap(),
            name: PersonName::parse("张桂英").unwrap(),
            household: h,
            statuses: BTreeSet::new(),
        },
        helper: None,
        presented: materials(&["sfzfyj", "zp"]),
        home_village: routing::home_village(t, h),
    }
}

#[test]
fn only_the_accepting_village_completes_an_immediate_case() {
    let (topology, cal, (senior, _)) = (Topology::sample_hengyang(), Calendar::builtin(), items());
    let mut run = Run::accept(
        &senior,
        senior_application(&topology),
        at("2026-09-24", 9, 0),
        &cal,
    );
    let other = cust(XIDU_VILLAGE);
    run.act(
        &cust(HEQUAN),
        at("2026-09-24", 9, 1),
        Command::Forward {
            to: other.clone(),
            reason: "转".to_owned(),
        },
    );
    run.act(&other, at("2026-09-24", 9, 2), Command::Receive);
    let got = run.propose(
        &other,
        at("2026-09-24", 9, 3),
        Command::Complete {
            result: "办结".to_owned(),
        },
    );
    assert!(matches!(got, Err(CaseError::StepTier { .. })), "{got:?}");
}

#[test]
fn an_immediate_case_keeps_its_deadline() {
    let (topology, cal, (senior, _)) = (Topology::sample_hengyang(), Calendar::builtin(), items());
    let run = Run::accept(
        &senior,
        senior_application(&topology),
        at("2026-09-24", 9, 0),
        &cal,
    );
    for command in [
        Command::Extend {
            working_days: 3,
            reason: "x".to_owned(),
            approved_by: "y".to_owned(),
        },
        Command::Pause {
            reason: "x".to_owned(),
        },
    ] {
        let got = run.propose(&cust(HEQUAN), at("2026-09-24", 9, 1), command);
        assert!(
            matches!(
                got,
                Err(CaseError::Invalid {
                    what: "办结期限",
                    ..
                })
            ),
            "{got:?}"
        );
    }
}

#[test]
fn material_cannot_arrive_before_the_return() {
    let (topology, cal, (_, aid)) = (Topology::sample_hengyang(), Calendar::builtin(), items());
    let mut run = Run::accept(
        &aid,
        aid_application(&topology, HEQUAN, None),
        at("2026-11-02", 9, 0),
        &cal,
    );
    let (v, t) = (cust(HEQUAN), cust(YANPI));
    run.act(
        &v,
        at("2026-11-02", 9, 1),
        Command::DoStep {
            opinion: String::new(),
        },
    );
    run.act(
        &v,
        at("2026-11-02", 9, 2),
        Command::Forward {
            to: t.clone(),
            reason: String::new(),
        },
    );
    run.act(&t, at("2026-11-03", 9, 0), Command::Receive);
    run.act(
        &t,
        at("2026-11-03", 9, 1),
        Command::Return {
            missing: vec!["低保证".to_owned()],
            reason: "不清晰".to_owned(),
        },
    );
    run.act(&v, at("2026-11-03", 9, 2), Command::Receive);
    let kind = RequestKind::Supplement {
        materials: materials(&["dbz"]),
        arrived: day("2026-09-01"),
    };
    let request = run.request(&t, 1, at("2026-11-04", 9, 0), kind);
    let got = run.propose(&v, at("2026-11-04", 9, 1), decide(request, true));
    assert!(
        matches!(
            got,
            Err(CaseError::Invalid {
                what: "材料到达日期",
                ..
            })
        ),
        "{:?}",
        got.map(|e| e.body)
    );
}
