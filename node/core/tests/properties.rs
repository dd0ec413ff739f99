//! Property tests of cases driven at random: many actors, every kind of command, requests from
//! anyone, dates moving forward, two calendars. The properties are checked from the events
//! alone by code written here, not by the state machine's own checks: custody is one unbroken
//! chain, approvals come from the item's department, deadlines are what their recorded
//! calendar says, any delivery order converges through the hold-back buffer, requests change
//! nothing unless the custodian takes them up, and replay rebuilds the case.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use yimen_core::calendar::{Calendar, CalendarError, CalendarYear};
use yimen_core::case::{
    Case, CaseError, CaseEvent, CaseEventBody, CaseStatus, Correction, Request, RequestId,
    RequestKind, Rules,
};
use yimen_core::catalog::{CaseType, ItemVersion, MaterialCode, StepAction};
use yimen_core::command::{self, Actor, Application, Command};
use yimen_core::deadline::Deadline;
use yimen_core::division::{DivisionCode, Tier};
use yimen_core::holdback::{HoldBack, Offer, Sequenced};
use yimen_core::numbering::CaseNumber;
use yimen_core::person::{Applicant, IdNumber, PersonName, Status};
use yimen_core::routing::{self, Custodian};
use yimen_core::sample;
use yimen_core::topology::Topology;

/// 河泉村, where every case is accepted.
const HEQUAN: &str = "430421105204";
/// The 西渡镇 fixture village: a household registered away from the accepting village.
const XIDU_VILLAGE: &str = "430421100201";

/// The actors: the accepting village, both townships, the county's desks and a home village.
const POOL: [&str; 7] = [
    HEQUAN,
    "430421105000",
    "430421100000",
    "430421000000/ybj",
    "430421000000/mzj",
    "430421000000",
    XIDU_VILLAGE,
];

/// Bytes below this pick the current custodian as actor, so that cases make progress.
const CUSTODIAN_BIAS: u8 = 160;

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn cust(s: &str) -> Custodian {
    s.parse().unwrap()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn materials(codes: &[&str]) -> BTreeSet<MaterialCode> {
    codes
        .iter()
        .map(|c| MaterialCode((*c).to_owned()))
        .collect()
}

/// Everything the runs share.
struct World {
    topology: Topology,
    /// Version 1: 2025 and 2026.
    builtin: Calendar,
    /// Version 2: adds 2027.
    with_2027: Calendar,
    senior: ItemVersion,
    aid: ItemVersion,
    pool: Vec<Custodian>,
}

impl World {
    /// The calendar of a recorded version.
    fn calendar(&self, version: u32) -> &Calendar {
        match version {
            1 => &self.builtin,
            2 => &self.with_2027,
            other => panic!("no calendar version {other}"),
        }
    }
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let builtin = Calendar::builtin();
    let year = CalendarYear {
        year: 2027,
        days_off: BTreeSet::from([day("2027-01-01")]),
        working_weekends: BTreeSet::new(),
        source: "test".to_owned(),
    };
    let with_2027 = builtin
        .apply(Calendar {
            version: 2,
            years: BTreeMap::from([(2027, year)]),
        })
        .unwrap();
    let mut items = sample::items().into_iter();
    let senior = items.next().unwrap();
    let aid = items.next().unwrap();
    assert_eq!(senior.case_type, CaseType::Immediate);
    assert_eq!(aid.case_type, CaseType::Committed);
    World {
        topology: Topology::sample_hengyang(),
        builtin,
        with_2027,
        senior,
        aid,
        pool: POOL.iter().map(|s| cust(s)).collect(),
    }
});

/// How a run starts.
#[derive(Clone, Debug)]
struct Setup {
    immediate: bool,
    /// The household: the accepting village itself or 西渡镇.
    household: &'static str,
    accepted: NaiveDateTime,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::bool::weighted(0.3),
        any::<bool>(),
        prop::bool::weighted(0.35),
        0u32..365,
        0u32..600,
    )
        .prop_map(|(immediate, away, late, offset, minutes)| {
            // Spread over 2026, or in its last two weeks (deadlines reaching into 2027).
            let date = if late {
                day("2026-12-18") + Duration::days(i64::from(offset % 14))
            } else {
                day("2026-01-01") + Duration::days(i64::from(offset))
            };
            let time =
                NaiveTime::from_hms_opt(8, 0, 0).unwrap() + Duration::minutes(i64::from(minutes));
            Setup {
                immediate,
                household: if away { XIDU_VILLAGE } else { HEQUAN },
                accepted: date.and_time(time),
            }
        })
}

/// (action, actor, param) bytes, one per attempted command.
fn seed() -> impl Strategy<Value = Vec<(u8, u8, u8)>> {
    prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..80)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// One decision on a request: who decided and whether the case changed.
#[derive(Clone, Debug)]
struct Decision {
    by_custodian: bool,
    changed: bool,
}

/// A driven run.
struct Driven {
    item: &'static ItemVersion,
    case: Case,
    decisions: Vec<Decision>,
}

impl Driven {
    fn rules(&self) -> Rules<'static> {
        Rules { item: self.item }
    }
}

/// The run's own state besides the case: the clock and the requests raised so far.
struct Driver {
    item: &'static ItemVersion,
    household: DivisionCode,
    home: Option<DivisionCode>,
    now: NaiveDateTime,
    requests: Vec<Request>,
    request_seq: u64,
}

impl Driver {
    /// What the custodian would sensibly do next: sign, do its step, forward to whoever is
    /// competent for the next step, end the notice, take in the material, resume, evaluate.
    fn guided(&self, case: &Case, param: u8) -> Command {
        let w = &*WORLD;
        if !case.received {
            return Command::Receive;
        }
        match case.status {
            CaseStatus::InNotice => return Command::EndNotice,
            CaseStatus::AwaitingSupplement => {
                return Command::Supplement {
                    materials: materials(&["dbz"]),
                };
            }
            CaseStatus::Paused => return Command::Resume,
            CaseStatus::Completed | CaseStatus::Refused | CaseStatus::Withdrawn => {
                return Command::Evaluate {
                    satisfaction: 1 + param % 5,
                };
            }
            CaseStatus::Processing => {}
        }
        let rules = Rules { item: self.item };
        let Some(step) = case.next_step(&rules) else {
            return Command::Complete {
                result: "办结".to_owned(),
            };
        };
        let competent = routing::competent_at(
            &w.topology,
            self.item,
            case.next_step,
            case.accepted_by.node,
            self.household,
        )
        .unwrap();
        if case.custodian != competent {
            return Command::Forward {
                to: competent,
                reason: "转报".to_owned(),
            };
        }
        match step.action {
            StepAction::Notice => Command::StartNotice {
                delivered_to: self.home.into_iter().collect(),
            },
            StepAction::Complete => Command::Complete {
                result: "办结".to_owned(),
            },
            _ => Command::DoStep {
                opinion: "同意".to_owned(),
            },
        }
    }

    /// A forward target: a pool member or the custodian competent for the next step.
    fn target(&self, case: &Case, param: u8) -> Custodian {
        let w = &*WORLD;
        let i = usize::from(param >> 2) % 8;
        if i < w.pool.len() {
            return w.pool[i].clone();
        }
        let index = case.next_step.min(self.item.steps.len() - 1);
        routing::competent_at(
            &w.topology,
            self.item,
            index,
            case.accepted_by.node,
            self.household,
        )
        .unwrap()
    }

    /// A request from a random pool member, or one raised before (decided again).
    fn request(&mut self, case: &Case, param: u8) -> Request {
        let w = &*WORLD;
        if param & 0x40 != 0
            && let Some(old) = self.requests.get(usize::from(param) % 8)
        {
            return old.clone();
        }
        let from = w.pool[usize::from(param >> 3) % w.pool.len()].clone();
        self.request_seq += 1;
        let kind = match (param >> 1) % 8 {
            0 => RequestKind::Withdrawal {
                reason: "不再申请".to_owned(),
            },
            1 | 2 => RequestKind::Supplement {
                materials: materials(&["dbz", "czybpj"]),
                arrived: self.now.date() - Duration::days(i64::from((param >> 4) & 3)),
            },
            3..=5 => RequestKind::Objection {
                text: "有异议".to_owned(),
            },
            _ => RequestKind::Opinion {
                text: "协办意见".to_owned(),
            },
        };
        let request = Request {
            id: RequestId {
                origin: from.node,
                seq: self.request_seq,
            },
            case: case.number,
            from,
            operator: "请求经办人".to_owned(),
            at: self.now,
            kind,
        };
        self.requests.push(request.clone());
        request
    }

    fn command(&mut self, case: &Case, action: u8, param: u8) -> Command {
        let text = |s: &str| s.to_owned();
        match action % 32 {
            0..=13 => self.guided(case, param),
            14 => Command::Receive,
            15 => Command::DoStep {
                opinion: text("意见"),
            },
            16 => Command::StartNotice {
                delivered_to: if param & 4 == 0 {
                    self.home.into_iter().collect()
                } else {
                    vec![WORLD.pool[usize::from(param >> 3) % 7].node]
                },
            },
            17 => Command::EndNotice,
            18 | 19 => Command::Forward {
                to: self.target(case, param),
                reason: text("转报"),
            },
            20 => Command::Return {
                missing: vec![text("低保证复印件")],
                reason: text("不清晰"),
            },
            21 => Command::Supplement {
                materials: materials(&["dbz"]),
            },
            22..=24 => {
                let request = self.request(case, param);
                Command::Decide {
                    request,
                    accept: param & 1 == 0,
                    reason: text("不予采纳"),
                }
            }
            25 => Command::Correct {
                of: u64::from(param % 6),
                correction: match param % 3 {
                    0 => Correction::ApplicantName(PersonName::parse("李思").unwrap()),
                    1 => Correction::Helper(None),
                    _ => Correction::Opinion(text("更正意见")),
                },
                reason: text("笔误"),
            },
            26 => Command::Extend {
                working_days: u16::from(param % 64),
                reason: text("情况复杂"),
                approved_by: text("负责人"),
            },
            27 => Command::Pause {
                reason: text("听证"),
            },
            28 => Command::Resume,
            29 => Command::ConfirmDeadline,
            30 => Command::Complete {
                result: text("办结"),
            },
            _ => {
                if param.is_multiple_of(4) {
                    Command::Refuse {
                        reason: text("不符合条件"),
                    }
                } else {
                    Command::Evaluate {
                        satisfaction: param % 7,
                    }
                }
            }
        }
    }
}

fn actor<'a>(who: &Custodian, at: NaiveDateTime, calendar: &'a Calendar) -> Actor<'a> {
    Actor {
        custodian: who.clone(),
        operator: format!("{who} 经办人"),
        at,
        calendar,
    }
}

/// Accepts a case and drives it with `seed`. Along the way: a proposed event is applied and
/// must apply; an actor that is not the custodian is refused, and the custodian's event forged
/// in its name is refused by `apply` and changes nothing.
fn drive(setup: &Setup, seed: &[(u8, u8, u8)]) -> Driven {
    let w = &*WORLD;
    let item = if setup.immediate { &w.senior } else { &w.aid };
    let rules = Rules { item };
    let household = code(setup.household);
    let home = routing::home_village(&w.topology, household);
    let village = cust(HEQUAN);
    let (id, statuses, presented) = if setup.immediate {
        (
            "11010519491231002X",
            BTreeSet::new(),
            materials(&["sfzfyj", "zp"]),
        )
    } else {
        (
            "430421199001011233",
            BTreeSet::from([Status::Dibao]),
            materials(&["zyfp", "xnhpj", "dbz"]),
        )
    };
    let application = Application {
        applicant: Applicant {
            id_number: IdNumber::parse(id).unwrap(),
            name: PersonName::parse("李四").unwrap(),
            household,
            statuses,
        },
        helper: None,
        presented,
        home_village: home,
    };
    let number = CaseNumber {
        node: village.node,
        date: setup.accepted.date(),
        seq: 1,
    };
    let first = command::accept(
        item,
        application,
        number,
        &actor(&village, setup.accepted, &w.builtin),
    )
    .unwrap();
    let mut case = Case::open(first, &rules).unwrap();
    let mut driver = Driver {
        item,
        household,
        home,
        now: setup.accepted,
        requests: Vec::new(),
        request_seq: 0,
    };
    let mut decisions = Vec::new();

    for &(action, actor_byte, param) in seed {
        driver.now += Duration::days(i64::from(param & 3)) + Duration::minutes(7);
        let calendar = if param & 0x80 == 0 {
            &w.builtin
        } else {
            &w.with_2027
        };
        let who = if actor_byte < CUSTODIAN_BIAS {
            case.custodian.clone()
        } else {
            w.pool[usize::from(actor_byte) % w.pool.len()].clone()
        };
        let command = driver.command(&case, action, param);
        let is_decision = matches!(command, Command::Decide { .. });
        let by_custodian = who == case.custodian;
        let before = case.clone();
        match case.propose(command.clone(), &actor(&who, driver.now, calendar), &rules) {
            Ok(event) => {
                assert!(
                    by_custodian,
                    "{who} wrote {event:?} while {} holds the case",
                    before.custodian
                );
                case.apply(event.clone(), &rules)
                    .unwrap_or_else(|e| panic!("proposed but refused: {event:?}: {e}"));
            }
            Err(_) if !by_custodian => {
                // The custodian's own event, forged in the actor's name, is refused too.
                if let Ok(mut forged) = case.propose(
                    command,
                    &actor(&case.custodian, driver.now, calendar),
                    &rules,
                ) {
                    forged.author = who.clone();
                    let mut copy = case.clone();
                    let err = copy.apply(forged, &rules).unwrap_err();
                    assert!(matches!(err, CaseError::NotCustodian { .. }), "{err:?}");
                    assert!(copy == before, "a forged event changed the case");
                }
            }
            Err(_) => {}
        }
        assert!(before.events.len() <= case.events.len());
        if is_decision {
            decisions.push(Decision {
                by_custodian,
                changed: case != before,
            });
        }
    }
    Driven {
        item,
        case,
        decisions,
    }
}

// ---------------------------------------------------------------------------------------------
// Independent checks, from the events alone.

/// The custodian tracked event by event: every event's author is the custodian of that moment,
/// and every handoff is followed by the receiver's receipt (or nothing).
fn check_custody(events: &[CaseEvent]) -> Result<(), String> {
    let accepting = events[0].author.clone();
    let mut holder = accepting.clone();
    let mut awaiting_receipt = false;
    for e in &events[1..] {
        if e.author != holder {
            return Err(format!(
                "event {} by {} while {holder} holds the case",
                e.seq, e.author
            ));
        }
        let receipt = matches!(e.body, CaseEventBody::Received);
        if awaiting_receipt != receipt {
            return Err(format!(
                "event {} ({}): receipt expected {awaiting_receipt}",
                e.seq,
                e.body.kind()
            ));
        }
        awaiting_receipt = false;
        match &e.body {
            CaseEventBody::Forwarded { to, .. } => {
                holder = to.clone();
                awaiting_receipt = true;
            }
            CaseEventBody::Returned { .. } => {
                holder = accepting.clone();
                awaiting_receipt = true;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Events naming a request are the custodian's of that moment, one per request.
fn check_requests(events: &[CaseEvent]) -> Result<(), String> {
    let accepting = events[0].author.clone();
    let mut holder = accepting.clone();
    let mut seen = BTreeSet::new();
    for e in events {
        if let Some(id) = e.body.decides_request() {
            if e.author != holder {
                return Err(format!(
                    "event {} takes up {id:?} by {}, custodian {holder}",
                    e.seq, e.author
                ));
            }
            if !seen.insert(id.clone()) {
                return Err(format!("request {id:?} decided twice (event {})", e.seq));
            }
        }
        match &e.body {
            CaseEventBody::Forwarded { to, .. } => holder = to.clone(),
            CaseEventBody::Returned { .. } => holder = accepting.clone(),
            _ => {}
        }
    }
    Ok(())
}

/// Every deadline an event carries.
fn deadlines(events: &[CaseEvent]) -> Vec<(u64, Deadline)> {
    events
        .iter()
        .filter_map(|e| {
            let d = match &e.body {
                CaseEventBody::Accepted(a) => Some(a.deadline),
                CaseEventBody::NoticeStarted { deadline, .. }
                | CaseEventBody::Supplemented { deadline, .. } => *deadline,
                CaseEventBody::Extended { deadline, .. }
                | CaseEventBody::Resumed { deadline, .. }
                | CaseEventBody::DeadlineConfirmed { deadline } => Some(*deadline),
                _ => None,
            };
            d.map(|d| (e.seq, d))
        })
        .collect()
}

fn is_weekday(d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The `n`-th Monday-to-Friday after `start`, counted one day at a time.
fn weekdays_after(start: NaiveDate, n: u32) -> NaiveDate {
    let mut d = start;
    let mut counted = 0;
    while counted < n {
        d = d.succ_opt().unwrap();
        if is_weekday(d) {
            counted += 1;
        }
    }
    d
}

/// Every deadline is what the calendar of its recorded version says: a confirmed one is
/// exactly `working_days` after its start; a provisional one is flagged because that calendar
/// lacked a year the count reaches, and is the weekday count, on a weekday.
fn check_deadline_counts(events: &[CaseEvent]) -> Result<(), String> {
    let w = &*WORLD;
    for (seq, d) in deadlines(events) {
        let counted = w
            .calendar(d.calendar_version)
            .add_working_days(d.start, d.working_days);
        if d.provisional {
            if !is_weekday(d.due) {
                return Err(format!("event {seq}: provisional {d:?} is not a weekday"));
            }
            if d.due != weekdays_after(d.start, d.working_days) {
                return Err(format!(
                    "event {seq}: provisional {d:?} is not a weekday count"
                ));
            }
            if !matches!(counted, Err(CalendarError::MissingYear { .. })) {
                return Err(format!(
                    "event {seq}: {d:?} flagged though the calendar covers it"
                ));
            }
        } else if counted != Ok(d.due) {
            return Err(format!(
                "event {seq}: {d:?} but its calendar counts {counted:?}"
            ));
        }
    }
    Ok(())
}

/// Deadlines of a 承诺 case: a confirmed one is a working day after the acceptance date (on
/// the calendar of its version), and none is shorter than the committed limit.
fn check_committed_deadlines(events: &[CaseEvent], limit: u32) -> Result<(), String> {
    let w = &*WORLD;
    let accepted = events[0].at.date();
    for (seq, d) in deadlines(events) {
        if d.working_days < limit {
            return Err(format!(
                "event {seq}: {d:?} shorter than the committed limit"
            ));
        }
        if d.provisional {
            continue;
        }
        if d.due <= accepted {
            return Err(format!(
                "event {seq}: {d:?} not after acceptance {accepted}"
            ));
        }
        if w.calendar(d.calendar_version).is_working_day(d.due) != Ok(true) {
            return Err(format!("event {seq}: {d:?} is not a working day"));
        }
    }
    Ok(())
}

/// A case event with its position, for the hold-back buffer.
#[derive(Clone, Debug, PartialEq)]
struct Held(CaseEvent);

impl Sequenced for Held {
    fn seq(&self) -> u64 {
        self.0.seq
    }
}

/// A small deterministic generator for permutations (SplitMix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Offers events 2.. in a shuffled order with duplicates; applies each ready batch.
fn through_holdback(driven: &Driven, shuffle: u64, dups: &[u8]) -> Result<Case, String> {
    let rules = driven.rules();
    let events = &driven.case.events;
    let rest = &events[1..];
    let mut order: Vec<usize> = (0..rest.len()).collect();
    if !rest.is_empty() {
        order.extend(dups.iter().map(|d| usize::from(*d) % rest.len()));
    }
    let mut state = shuffle;
    for i in (1..order.len()).rev() {
        let j = usize::try_from(splitmix(&mut state) % (i as u64 + 1)).unwrap();
        order.swap(i, j);
    }
    let mut case = Case::open(events[0].clone(), &rules).map_err(|e| e.to_string())?;
    let mut buffer: HoldBack<Held> = HoldBack::starting_at(2);
    let mut offered = BTreeSet::new();
    for i in order {
        let e = rest[i].clone();
        let first_time = offered.insert(i);
        match buffer.offer(Held(e)) {
            Offer::Ready(batch) => {
                if !first_time {
                    return Err(format!("a duplicate of {} was released", i + 2));
                }
                for Held(e) in batch {
                    case.apply(e, &rules).map_err(|e| e.to_string())?;
                }
            }
            Offer::Held if first_time => {}
            Offer::Duplicate if !first_time => {}
            other => {
                return Err(format!(
                    "event {}: {other:?} (first time {first_time})",
                    i + 2
                ));
            }
        }
    }
    if buffer.held() != 0 {
        return Err(format!("{} events still held", buffer.held()));
    }
    Ok(case)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn custody_is_one_unbroken_chain(setup in setup(), seed in seed()) {
        let d = drive(&setup, &seed);
        prop_assert_eq!(check_custody(&d.case.events), Ok(()));
        // The case's own view agrees with the chain walked here.
        let handoffs = d.case.events.iter().filter(|e| matches!(
            e.body,
            CaseEventBody::Forwarded { .. } | CaseEventBody::Returned { .. }
        )).count();
        prop_assert_eq!(d.case.custody_chain.len(), handoffs + 1);
        prop_assert_eq!(d.case.custody_chain.last(), Some(&d.case.custodian));
    }

    #[test]
    fn a_completed_case_was_approved_by_the_items_department(setup in setup(), seed in seed()) {
        let d = drive(&setup, &seed);
        let events = &d.case.events;
        let completed = events.iter().find(|e| matches!(e.body, CaseEventBody::Completed { .. }));
        prop_assert_eq!(completed.is_some(), d.case.status == CaseStatus::Completed);
        if let Some(done) = completed {
            if d.item.steps.iter().any(|s| s.action == StepAction::Approve) {
                let approvals: Vec<&CaseEvent> = events.iter().filter(|e| matches!(
                    e.body,
                    CaseEventBody::StepDone { action: StepAction::Approve, .. }
                )).collect();
                prop_assert_eq!(approvals.len(), 1);
                prop_assert_eq!(
                    approvals[0].author.department.as_ref(),
                    Some(&d.item.department.key)
                );
                prop_assert!(approvals[0].seq < done.seq);
                // Every step of the process was done, in order, before completion.
                let steps: Vec<String> = events.iter().filter_map(|e| match &e.body {
                    CaseEventBody::StepDone { step, .. }
                    | CaseEventBody::NoticeStarted { step, .. } => Some(step.0.clone()),
                    _ => None,
                }).collect();
                prop_assert_eq!(steps, vec!["cs", "sh", "gs", "sp", "ff"]);
            } else {
                // 即办: done at a village desk, by whoever holds the case there.
                prop_assert_eq!(done.author.node.tier(), Tier::Village);
                prop_assert_eq!(&done.author.department, &None);
                let steps = events
                    .iter()
                    .filter(|e| matches!(e.body, CaseEventBody::StepDone { .. }))
                    .count();
                prop_assert_eq!(steps, 0);
            }
        }
    }

    #[test]
    fn deadlines_are_what_their_recorded_calendar_says(setup in setup(), seed in seed()) {
        let d = drive(&setup, &seed);
        let events = &d.case.events;
        prop_assert_eq!(check_deadline_counts(events), Ok(()));
        let accepted = events[0].at.date();
        let first = d.case.acceptance.deadline;
        if d.item.case_type == CaseType::Immediate {
            prop_assert_eq!(first.due, accepted);
            prop_assert_eq!(first.working_days, 0);
            prop_assert!(!first.provisional);
        } else {
            let limit = u32::from(d.item.committed_limit.days());
            prop_assert_eq!(check_committed_deadlines(events, limit), Ok(()));
            // Provisional exactly when the builtin calendar cannot count the limit.
            prop_assert_eq!(
                first.provisional,
                WORLD.builtin.add_working_days(accepted, limit).is_err()
            );
        }
        // The case's deadline is the last one an event carried.
        prop_assert_eq!(Some(d.case.deadline), deadlines(events).last().map(|(_, d)| *d));
    }

    #[test]
    fn any_delivery_order_converges_through_the_holdback(
        setup in setup(),
        seed in seed(),
        shuffle in any::<u64>(),
        dups in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let d = drive(&setup, &seed);
        let rebuilt = through_holdback(&d, shuffle, &dups);
        prop_assert_eq!(rebuilt.as_ref().map_err(Clone::clone), Ok(&d.case));
    }

    #[test]
    fn requests_change_nothing_unless_the_custodian_takes_them_up(
        setup in setup(),
        seed in seed(),
    ) {
        let d = drive(&setup, &seed);
        for (i, decision) in d.decisions.iter().enumerate() {
            prop_assert!(
                decision.by_custodian || !decision.changed,
                "decision {i}: changed by a non-custodian"
            );
        }
        prop_assert_eq!(check_requests(&d.case.events), Ok(()));
    }

    #[test]
    fn replay_rebuilds_the_driven_case(setup in setup(), seed in seed()) {
        let d = drive(&setup, &seed);
        let rules = d.rules();
        let replayed = Case::replay(&d.case.events, &rules);
        prop_assert_eq!(replayed.as_ref(), Ok(&d.case));
        // Re-applying an applied event changes nothing.
        let mut again = d.case.clone();
        let last = d.case.events.last().unwrap().clone();
        if last.seq > 1 {
            let refused = again.apply(last, &rules);
            prop_assert!(
                matches!(refused, Err(CaseError::Sequence { .. })),
                "{:?}",
                refused
            );
            prop_assert_eq!(&again, &d.case);
        }
    }
}

/// The driver is not vacuous: over a fixed sample of runs, cases of both items complete,
/// travel, are returned, pause, run notices with objections, get refused and withdrawn, and
/// provisional deadlines get confirmed.
#[test]
fn the_random_driver_reaches_every_corner() {
    let mut runner = TestRunner::deterministic();
    let strategy = (setup(), seed());
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let runs = 256;
    for _ in 0..runs {
        let (s, sd) = strategy.new_tree(&mut runner).unwrap().current();
        let d = drive(&s, &sd);
        let item = if s.immediate {
            "immediate"
        } else {
            "committed"
        };
        let mut mark = |k: &'static str| *seen.entry(k).or_default() += 1;
        if d.case.status == CaseStatus::Completed {
            mark(if item == "immediate" {
                "completed immediate"
            } else {
                "completed committed"
            });
        }
        for e in &d.case.events {
            match &e.body {
                CaseEventBody::Returned { .. } => mark("returned"),
                CaseEventBody::Paused { .. } => mark("paused"),
                CaseEventBody::ObjectionRecorded { .. } => mark("objection"),
                CaseEventBody::DeadlineConfirmed { .. } => mark("confirmed"),
                CaseEventBody::Refused { .. } => mark("refused"),
                CaseEventBody::Withdrawn { .. } => mark("withdrawn"),
                CaseEventBody::Extended { .. } => mark("extended"),
                CaseEventBody::Supplemented {
                    request: Some(_), ..
                } => mark("supplement request"),
                CaseEventBody::Assisted { .. } => mark("assisted"),
                CaseEventBody::Evaluated { .. } => mark("evaluated"),
                _ => {}
            }
        }
        if d.decisions.iter().any(|x| !x.by_custodian) {
            mark("decision by a non-custodian");
        }
    }
    eprintln!("driver coverage over {runs} runs: {seen:?}");
    for (key, least) in [
        ("completed immediate", 10),
        ("completed committed", 10),
        ("returned", 5),
        ("paused", 5),
        ("objection", 5),
        ("confirmed", 3),
        ("refused", 3),
        ("withdrawn", 3),
        ("extended", 5),
        ("supplement request", 3),
        ("assisted", 5),
        ("evaluated", 5),
        ("decision by a non-custodian", 10),
    ] {
        let got = seen.get(key).copied().unwrap_or(0);
        assert!(got >= least, "{key}: {got} < {least} in {seen:?}");
    }
}

/// The independent checkers are able to fail: a guided run passes them, and each corruption
/// of its log is caught.
#[test]
fn the_checkers_catch_broken_logs() {
    let setup = Setup {
        immediate: false,
        household: XIDU_VILLAGE,
        accepted: day("2026-03-02").and_hms_opt(9, 0, 0).unwrap(),
    };
    // Guided actions by the custodian, three days apart.
    let d = drive(&setup, &[(0, 0, 3); 40]);
    assert_eq!(d.case.status, CaseStatus::Completed);
    let events = d.case.events.clone();
    assert_eq!(check_custody(&events), Ok(()));
    assert_eq!(check_requests(&events), Ok(()));
    assert_eq!(check_deadline_counts(&events), Ok(()));
    assert_eq!(check_committed_deadlines(&events, 10), Ok(()));

    let position = |kind: &str| events.iter().position(|e| e.body.kind() == kind).unwrap();
    // An event by someone other than the custodian.
    let mut log = events.clone();
    log[1].author = cust("430421000000/ybj");
    assert!(check_custody(&log).is_err());
    // A handoff not followed by the receiver's receipt.
    let mut log = events.clone();
    log.remove(position("forwarded") + 1);
    assert!(check_custody(&log).is_err());
    // A receipt without a handoff.
    let mut log = events.clone();
    let receipt = CaseEvent {
        body: CaseEventBody::Received,
        ..log[1].clone()
    };
    log.insert(2, receipt);
    assert!(check_custody(&log).is_err());
    // A deadline a day off its count, or flagged provisional though the calendar covers it.
    let mut log = events.clone();
    if let CaseEventBody::Accepted(a) = &mut log[0].body {
        a.deadline.due = a.deadline.due.succ_opt().unwrap();
    }
    assert!(check_deadline_counts(&log).is_err());
    let mut log = events.clone();
    if let CaseEventBody::Accepted(a) = &mut log[0].body {
        a.deadline.provisional = true;
    }
    assert!(check_deadline_counts(&log).is_err());
    // A deadline not after the acceptance date.
    let mut log = events.clone();
    let accepted = log[0].at.date();
    if let CaseEventBody::Accepted(a) = &mut log[0].body {
        a.deadline.due = accepted;
    }
    assert!(check_committed_deadlines(&log, 10).is_err());
    // A request taken up by a former custodian, or twice.
    let id = RequestId {
        origin: code(XIDU_VILLAGE),
        seq: 1,
    };
    let declined = |author: Custodian| CaseEvent {
        author,
        body: CaseEventBody::RequestDeclined {
            request: id.clone(),
            reason: "x".to_owned(),
        },
        ..events[1].clone()
    };
    let mut log = events.clone();
    log.insert(position("received") + 1, declined(cust(HEQUAN)));
    assert!(check_requests(&log).is_err());
    let mut log = events.clone();
    log.insert(1, declined(cust(HEQUAN)));
    log.insert(2, declined(cust(HEQUAN)));
    assert!(check_requests(&log).is_err());
}
