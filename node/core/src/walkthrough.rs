//! The single-node walk-through: both sample guides run through the core alone on a fixed
//! date, every event and state recorded for printing (`yimen-node walkthrough`).
//!
//! Invariants: pure and deterministic: the same date gives the same story; every event goes
//! through `Case::propose` and `Case::apply` exactly as in the shell, so the story shows what
//! the core really does, not a script of it.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use serde::Serialize;

use crate::calendar::Calendar;
use crate::case::{Case, CaseError, CaseEvent, CaseStatus, Request, RequestId, RequestKind, Rules};
use crate::catalog::{Catalog, ItemVersion, MaterialCode};
use crate::command::{self, AcceptError, Actor, Application, Command};
use crate::division::DivisionCode;
use crate::intake::IntakeReport;
use crate::numbering::{CaseCounter, NumberingError};
use crate::person::{Applicant, IdNumber, PersonName, Status};
use crate::routing::{self, Custodian, RoutingError};
use crate::sample;
use crate::topology::Topology;

/// The default date of the walk-through.
pub const DEFAULT_DATE: &str = "2026-09-24";

/// The state of a case after one event.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub status: CaseStatus,
    pub status_zh: &'static str,
    pub custodian: String,
    /// The custodian's name in the topology ("演陂镇便民服务中心" style), with its department.
    pub custodian_name: String,
    pub received: bool,
    pub deadline: String,
    pub deadline_provisional: bool,
    pub next_step: Option<String>,
    pub audience: Vec<String>,
}

/// One line of the story.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub at: NaiveDateTime,
    pub author: String,
    pub author_name: String,
    pub operator: String,
    pub kind: &'static str,
    pub text_zh: String,
    pub state: Snapshot,
}

/// One case from intake to the end.
#[derive(Clone, Debug, Serialize)]
pub struct Story {
    pub item: String,
    pub item_code: String,
    pub number: String,
    /// The one-time notice (一次性告知) of a first, incomplete visit, if there was one.
    pub notice_zh: Vec<String>,
    pub entries: Vec<Entry>,
    pub status: CaseStatus,
    pub returns: u32,
    pub accepted_on: NaiveDate,
    pub completed_on: Option<NaiveDate>,
    #[serde(skip)]
    pub case: Case,
}

/// The whole walk-through.
#[derive(Clone, Debug, Serialize)]
pub struct Walkthrough {
    pub date: NaiveDate,
    pub calendar_version: u32,
    pub stories: Vec<Story>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkthroughError {
    #[error(transparent)]
    Accept(#[from] AcceptError),
    #[error(transparent)]
    Case(#[from] CaseError),
    #[error(transparent)]
    Numbering(#[from] NumberingError),
    #[error(transparent)]
    Routing(#[from] RoutingError),
    #[error("the sample catalog or topology is inconsistent: {0}")]
    Sample(String),
}

/// The village where both cases are accepted: 河泉村, 演陂镇, 衡阳县.
pub const VILLAGE: &str = "430421105204";

/// Runs both guides from `date` (Beijing time).
pub fn run(date: NaiveDate) -> Result<Walkthrough, WalkthroughError> {
    let calendar = Calendar::builtin();
    let topology = Topology::sample_hengyang();
    let mut catalog = Catalog::default();
    for item in sample::items() {
        catalog
            .apply(item.owner, item)
            .map_err(|p| WalkthroughError::Sample(format!("{p:?}")))?;
    }
    let village = code(VILLAGE)?;
    let mut counter = CaseCounter::default();
    let mut world = World {
        calendar: &calendar,
        topology: &topology,
        village,
    };

    let senior = find(&catalog, sample::SENIOR_CARD)?;
    let senior_story = world.senior_card(senior, &mut counter, date)?;
    let aid = find(&catalog, sample::MEDICAL_AID)?;
    let aid_story = world.medical_aid(aid, &mut counter, date)?;
    Ok(Walkthrough {
        date,
        calendar_version: calendar.version,
        stories: vec![senior_story, aid_story],
    })
}

fn code(s: &str) -> Result<DivisionCode, WalkthroughError> {
    DivisionCode::parse(s).map_err(|e| WalkthroughError::Sample(e.to_string()))
}

fn find<'c>(catalog: &'c Catalog, item: &str) -> Result<&'c ItemVersion, WalkthroughError> {
    catalog
        .find(item)
        .ok_or_else(|| WalkthroughError::Sample(format!("no item {item}")))
}

fn materials(codes: &[&str]) -> BTreeSet<MaterialCode> {
    codes
        .iter()
        .map(|c| MaterialCode((*c).to_owned()))
        .collect()
}

fn at(day: NaiveDate, hour: u32, minute: u32) -> NaiveDateTime {
    day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN))
}

struct World<'a> {
    calendar: &'a Calendar,
    topology: &'a Topology,
    village: DivisionCode,
}

/// A case being driven, with its story.
struct Drive<'a> {
    rules: Rules<'a>,
    topology: &'a Topology,
    case: Case,
    entries: Vec<Entry>,
}

impl<'a> Drive<'a> {
    fn start(
        item: &'a ItemVersion,
        topology: &'a Topology,
        event: CaseEvent,
    ) -> Result<Drive<'a>, WalkthroughError> {
        let rules = Rules { item };
        let case = Case::open(event.clone(), &rules)?;
        let mut d = Drive {
            rules,
            topology,
            case,
            entries: Vec::new(),
        };
        d.record(&event);
        Ok(d)
    }

    fn act(
        &mut self,
        who: &Custodian,
        operator: &str,
        when: NaiveDateTime,
        calendar: &Calendar,
        command: Command,
    ) -> Result<(), WalkthroughError> {
        let actor = Actor {
            custodian: who.clone(),
            operator: operator.to_owned(),
            at: when,
            calendar,
        };
        let event = self.case.propose(command, &actor, &self.rules)?;
        self.case.apply(event.clone(), &self.rules)?;
        self.record(&event);
        Ok(())
    }

    fn record(&mut self, event: &CaseEvent) {
        let c = &self.case;
        self.entries.push(Entry {
            seq: event.seq,
            at: event.at,
            author: event.author.to_string(),
            author_name: name_of(self.topology, &event.author),
            operator: event.operator.clone(),
            kind: event.body.kind(),
            text_zh: event.body.describe_zh(),
            state: Snapshot {
                status: c.status,
                status_zh: c.status.name_zh(),
                custodian: c.custodian.to_string(),
                custodian_name: name_of(self.topology, &c.custodian),
                received: c.received,
                deadline: c.deadline.due.to_string(),
                deadline_provisional: c.deadline.provisional,
                next_step: c.next_step(&self.rules).map(|s| s.name.clone()),
                audience: c.audience.iter().map(ToString::to_string).collect(),
            },
        });
    }

    fn finish(self, item: &ItemVersion, notice_zh: Vec<String>) -> Story {
        let completed_on = self
            .case
            .events
            .iter()
            .find(|e| matches!(e.body, crate::case::CaseEventBody::Completed { .. }))
            .map(|e| e.at.date());
        Story {
            item: item.name.clone(),
            item_code: item.code.0.clone(),
            number: self.case.number.to_string(),
            notice_zh,
            status: self.case.status,
            returns: self.case.returns,
            accepted_on: self.case.accepted_at.date(),
            completed_on,
            entries: self.entries,
            case: self.case,
        }
    }
}

impl World<'_> {
    fn village(&self) -> Custodian {
        Custodian {
            node: self.village,
            department: None,
        }
    }

    fn actor(&self, when: NaiveDateTime) -> Actor<'_> {
        Actor {
            custodian: self.village(),
            operator: "河泉村便民服务中心 王芳".to_owned(),
            at: when,
            calendar: self.calendar,
        }
    }

    /// The next working day after `day` (weekdays when the calendar lacks the year).
    fn next_working_day(&self, day: NaiveDate) -> NaiveDate {
        self.calendar.add_working_days(day, 1).unwrap_or_else(|_| {
            let mut d = day.succ_opt().unwrap_or(day);
            while matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
                d = d.succ_opt().unwrap_or(d);
            }
            d
        })
    }

    fn senior_card(
        &mut self,
        item: &ItemVersion,
        counter: &mut CaseCounter,
        date: NaiveDate,
    ) -> Result<Story, WalkthroughError> {
        // Born 1949-12-31, registered in 河泉村: 76 on the default date.
        let applicant = Applicant {
            id_number: IdNumber::parse("11010519491231002X")
                .map_err(|e| WalkthroughError::Sample(e.to_string()))?,
            name: person("张桂英")?,
            household: self.village,
            statuses: BTreeSet::new(),
        };
        let number = counter.next(self.village, date)?;
        let event = command::accept(
            item,
            Application {
                applicant,
                helper: Some(crate::case::Helper {
                    name: person("张建国")?,
                    relation: "儿子".to_owned(),
                }),
                presented: materials(&["sfzfyj", "zp"]),
                home_village: routing::home_village(self.topology, self.village),
            },
            number,
            &self.actor(at(date, 9, 0)),
        )?;
        let mut d = Drive::start(item, self.topology, event)?;
        let v = self.village();
        d.act(
            &v,
            "河泉村便民服务中心 王芳",
            at(date, 9, 10),
            self.calendar,
            Command::Complete {
                result: "当场制发老年优待证".to_owned(),
            },
        )?;
        d.act(
            &v,
            "河泉村便民服务中心 王芳",
            at(date, 9, 12),
            self.calendar,
            Command::Evaluate { satisfaction: 1 },
        )?;
        Ok(d.finish(item, Vec::new()))
    }

    fn medical_aid(
        &mut self,
        item: &ItemVersion,
        counter: &mut CaseCounter,
        date: NaiveDate,
    ) -> Result<Story, WalkthroughError> {
        let household = self.village;
        let mut applicant = Applicant {
            id_number: IdNumber::parse("430421199001011233")
                .map_err(|e| WalkthroughError::Sample(e.to_string()))?,
            name: person("李四")?,
            household,
            statuses: BTreeSet::new(),
        };
        // First visit: only the hospital invoice, no status declared: told everything at once.
        let first = command::accept(
            item,
            Application {
                applicant: applicant.clone(),
                helper: None,
                presented: materials(&["zyfp"]),
                home_village: None,
            },
            // Never used: intake refuses before the number matters, and the counter is not
            // advanced for a refused intake.
            crate::numbering::CaseNumber {
                node: self.village,
                date,
                seq: 9999,
            },
            &self.actor(at(date, 10, 0)),
        );
        let notice_zh = match first {
            Err(AcceptError::Incomplete(report)) => notice_lines(&report),
            Err(other) => return Err(other.into()),
            Ok(_) => {
                return Err(WalkthroughError::Sample(
                    "incomplete intake was accepted".to_owned(),
                ));
            }
        };

        // Second visit, the same day: everything but a clear 低保证 copy (found at review).
        applicant.statuses.insert(Status::Dibao);
        let number = counter.next(self.village, date)?;
        let event = command::accept(
            item,
            Application {
                applicant,
                helper: None,
                presented: materials(&["zyfp", "xnhpj", "dbz"]),
                home_village: routing::home_village(self.topology, household),
            },
            number,
            &self.actor(at(date, 15, 0)),
        )?;
        let mut d = Drive::start(item, self.topology, event)?;
        let cal = self.calendar;
        let v = self.village();
        let clerk = "河泉村便民服务中心 王芳";
        let reviewer = "演陂镇便民服务中心 审核员 刘洋";
        let station = "衡阳县医疗保障局 审批员 陈静";
        let township = routing::competent_at(self.topology, item, 1, self.village, household)?;
        let county = routing::competent_at(self.topology, item, 3, self.village, household)?;

        d.act(
            &v,
            clerk,
            at(date, 15, 20),
            cal,
            Command::DoStep {
                opinion: "材料齐全，符合申报条件".to_owned(),
            },
        )?;
        d.act(
            &v,
            clerk,
            at(date, 15, 30),
            cal,
            Command::Forward {
                to: township.clone(),
                reason: "报乡镇审核".to_owned(),
            },
        )?;
        let day1 = self.next_working_day(date);
        d.act(&township, reviewer, at(day1, 9, 0), cal, Command::Receive)?;
        d.act(
            &township,
            reviewer,
            at(day1, 9, 30),
            cal,
            Command::Return {
                missing: vec!["低保证复印件（原件复印不清晰，请重新复印）".to_owned()],
                reason: "材料不清晰".to_owned(),
            },
        )?;
        d.act(&v, clerk, at(day1, 10, 0), cal, Command::Receive)?;
        let day2 = self.next_working_day(day1);
        d.act(
            &v,
            clerk,
            at(day2, 9, 0),
            cal,
            Command::Supplement {
                materials: materials(&["dbz"]),
            },
        )?;
        d.act(
            &v,
            clerk,
            at(day2, 9, 10),
            cal,
            Command::Forward {
                to: township.clone(),
                reason: "补正后重新报送".to_owned(),
            },
        )?;
        d.act(&township, reviewer, at(day2, 11, 0), cal, Command::Receive)?;
        d.act(
            &township,
            reviewer,
            at(day2, 14, 0),
            cal,
            Command::DoStep {
                opinion: "经入户核查，情况属实".to_owned(),
            },
        )?;
        let home: Vec<_> = d.case.acceptance.home_village.into_iter().collect();
        d.act(
            &township,
            reviewer,
            at(day2, 14, 30),
            cal,
            Command::StartNotice { delivered_to: home },
        )?;
        // An objection taken at the home village, relayed as a request, recorded by the
        // township (the custodian) and weighed at the end of the notice.
        let objection = Request {
            id: RequestId {
                origin: self.village,
                seq: 1,
            },
            case: d.case.number,
            from: v.clone(),
            operator: clerk.to_owned(),
            at: at(day2, 16, 0),
            kind: RequestKind::Objection {
                text: "村民反映申请人家中另有收入（经核实不影响救助资格）".to_owned(),
            },
        };
        d.act(
            &township,
            reviewer,
            at(day2, 16, 30),
            cal,
            Command::Decide {
                request: objection,
                accept: true,
                reason: String::new(),
            },
        )?;
        let ends = d.case.notice_ends.unwrap_or(day2);
        d.act(
            &township,
            "演陂镇便民服务中心（定时任务）",
            at(ends, 17, 30),
            cal,
            Command::EndNotice,
        )?;
        d.act(
            &township,
            reviewer,
            at(ends, 17, 40),
            cal,
            Command::Forward {
                to: county.clone(),
                reason: "公示无有效异议，报县医保局审批".to_owned(),
            },
        )?;
        let day3 = self.next_working_day(ends);
        d.act(&county, station, at(day3, 9, 0), cal, Command::Receive)?;
        d.act(
            &county,
            station,
            at(day3, 10, 0),
            cal,
            Command::DoStep {
                opinion: "同意救助3000元".to_owned(),
            },
        )?;
        d.act(
            &county,
            station,
            at(day3, 15, 0),
            cal,
            Command::DoStep {
                opinion: "救助资金3000元已拨付至申请人社保卡".to_owned(),
            },
        )?;
        d.act(
            &county,
            station,
            at(day3, 15, 10),
            cal,
            Command::Forward {
                to: v.clone(),
                reason: "办理结果反馈申请人".to_owned(),
            },
        )?;
        let day4 = self.next_working_day(day3);
        d.act(&v, clerk, at(day4, 9, 0), cal, Command::Receive)?;
        d.act(
            &v,
            clerk,
            at(day4, 9, 30),
            cal,
            Command::Complete {
                result: "医疗救助3000元已发放，已告知申请人".to_owned(),
            },
        )?;
        d.act(
            &v,
            clerk,
            at(day4, 9, 35),
            cal,
            Command::Evaluate { satisfaction: 2 },
        )?;
        Ok(d.finish(item, notice_zh))
    }
}

/// A custodian as people say it: the node's name from the topology, and the department.
fn name_of(topology: &Topology, c: &Custodian) -> String {
    let node = topology
        .node(c.node)
        .map_or_else(|| c.node.to_string(), |n| n.name.clone());
    match &c.department {
        Some(d) if d.0 == sample::DEPT_MEDICAL_INSURANCE => format!("{node}医保局"),
        Some(d) if d.0 == sample::DEPT_CIVIL_AFFAIRS => format!("{node}民政局"),
        Some(d) => format!("{node}/{d}"),
        None => node,
    }
}

fn person(name: &str) -> Result<PersonName, WalkthroughError> {
    PersonName::parse(name).ok_or_else(|| WalkthroughError::Sample(format!("bad name {name}")))
}

fn notice_lines(report: &IntakeReport) -> Vec<String> {
    report.lines_zh()
}

/// The story as text in Chinese, for the terminal.
pub fn render_zh(w: &Walkthrough) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "一门 · 单节点演示：两份办事指南在核心状态机中走完全程（日期 {}，工作日历版本 {}）\n",
        w.date, w.calendar_version
    ));
    for s in &w.stories {
        out.push_str(&format!(
            "\n══ {}（{}）办件编号 {}\n",
            s.item, s.item_code, s.number
        ));
        if !s.notice_zh.is_empty() {
            out.push_str("  首次申请材料不齐，出具一次性告知书：\n");
            for line in &s.notice_zh {
                out.push_str(&format!("    · {line}\n"));
            }
        }
        for e in &s.entries {
            out.push_str(&format!(
                "  [{:>2}] {} {}（{}）{}\n       经办：{}；状态：{}；办理人：{}{}；期限：{}{}\n",
                e.seq,
                e.at.format("%Y-%m-%d %H:%M"),
                e.author_name,
                e.author,
                e.text_zh,
                e.operator,
                e.state.status_zh,
                e.state.custodian_name,
                if e.state.received {
                    ""
                } else {
                    "（待签收）"
                },
                e.state.deadline,
                if e.state.deadline_provisional {
                    "（暂定）"
                } else {
                    ""
                },
            ));
        }
        out.push_str(&format!(
            "  结果：{}，退回补正{}次，受理于{}{}\n",
            s.status.name_zh(),
            s.returns,
            s.accepted_on,
            s.completed_on
                .map(|d| format!("，办结于{d}"))
                .unwrap_or_default()
        ));
    }
    out
}
