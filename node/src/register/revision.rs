//! Catalog, calendar and topology revisions (DESIGN.md "Catalog and calendar"): publishing one
//! authored at this node, and applying one received from a peer (event types 1-3, audience
//! the author's whole subtree).
//!
//! Invariants:
//! * A revision's state change moves in one batch with its event (log, identity, outboxes),
//!   like a case event's; memory follows only once the batch is applied.
//! * Who may author, checked when publishing and again, from the event's origin, when
//!   applying a received one: an item only its owner, a hub (the core's `Catalog::apply`
//!   holds the owner and never-more rules); the calendar the root or a county; the topology
//!   the root.
//! * A refusal lists every problem at once; a refused revision writes nothing.
//! * A received revision that fails a check is kept and relayed (hubs route on the envelope)
//!   but changes nothing here; it is logged by identity and kind only.
//! * A catalog revision adds a version and never replaces one: cases keep the item version
//!   they were accepted under.

use prost::Message;

use yimen_core::calendar::{Calendar, CalendarError};
use yimen_core::catalog::{Catalog, CatalogProblem, Increase, ItemVersion, NodeId};
use yimen_core::division::Tier;
use yimen_core::link::EventId;
use yimen_core::topology::{Topology, TopologyError};
use yimen_proto::pb;

use super::replica::{Envelope, Received};
use super::supervision::RefusedRevision;
use super::{PAYLOAD_SCHEMA_VERSION, Register, RegisterError, encode, key};
use crate::store::{Batch, Store};

/// A revision as authored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revision {
    /// One new version of one item.
    Catalog(Box<ItemVersion>),
    /// The years to add or replace, under a new version; published merged with the calendar
    /// the author holds, so the payload is always a whole calendar.
    Calendar(Calendar),
    /// A whole new version of the table.
    Topology(Topology),
}

/// The three kinds of revision, one event type each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevisionKind {
    Catalog,
    Calendar,
    Topology,
}

impl RevisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionKind::Catalog => "catalog",
            RevisionKind::Calendar => "calendar",
            RevisionKind::Topology => "topology",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            RevisionKind::Catalog => "事项",
            RevisionKind::Calendar => "工作日历",
            RevisionKind::Topology => "拓扑表",
        }
    }

    pub fn event_type(self) -> pb::EventType {
        match self {
            RevisionKind::Catalog => pb::EventType::CatalogRevision,
            RevisionKind::Calendar => pb::EventType::CalendarRevision,
            RevisionKind::Topology => pb::EventType::TopologyRevision,
        }
    }

    /// The kind of an envelope's event type; `None` for every other type.
    pub fn of_event_type(kind: i32) -> Option<RevisionKind> {
        [
            RevisionKind::Catalog,
            RevisionKind::Calendar,
            RevisionKind::Topology,
        ]
        .into_iter()
        .find(|k| k.event_type() as i32 == kind)
    }
}

impl Revision {
    pub fn kind(&self) -> RevisionKind {
        match self {
            Revision::Catalog(_) => RevisionKind::Catalog,
            Revision::Calendar(_) => RevisionKind::Calendar,
            Revision::Topology(_) => RevisionKind::Topology,
        }
    }
}

/// Who may author a kind of revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorRule {
    /// Items are owned by hubs (a village takes applications; it owns no item).
    Hub,
    /// The calendar is authored at the root or a county.
    RootOrCounty,
    /// The topology is authored at the root.
    Root,
}

/// One reason a revision is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionProblem {
    /// This node may not author this kind of revision.
    NotAuthor {
        kind: RevisionKind,
        node: NodeId,
        rule: AuthorRule,
    },
    /// The revision holds nothing to publish (a calendar naming no year).
    Empty {
        kind: RevisionKind,
    },
    Catalog(CatalogProblem),
    Calendar(CalendarError),
    Topology(TopologyError),
}

impl RevisionProblem {
    /// The field the problem is about, in the authoring file's terms (`materials`,
    /// `years.2027.working_weekends`, `nodes.430421105204.parent`); empty for the revision as
    /// a whole.
    pub fn field(&self) -> String {
        match self {
            RevisionProblem::NotAuthor { .. } => String::new(),
            RevisionProblem::Empty { kind } => match kind {
                RevisionKind::Calendar => "years".to_owned(),
                RevisionKind::Topology => "nodes".to_owned(),
                RevisionKind::Catalog => String::new(),
            },
            RevisionProblem::Catalog(p) => catalog_field(p).to_owned(),
            RevisionProblem::Calendar(e) => calendar_field(e),
            RevisionProblem::Topology(e) => topology_field(e),
        }
    }

    /// A sentence for the author, in Chinese.
    pub fn reason_zh(&self) -> String {
        match self {
            RevisionProblem::NotAuthor { kind, node, rule } => {
                let who = match rule {
                    AuthorRule::Hub => "乡镇、县级及以上枢纽（村（社区）节点不编制事项）",
                    AuthorRule::RootOrCounty => "根节点或县级枢纽",
                    AuthorRule::Root => "根节点",
                };
                format!("{}只能由{who}编制，本节点{node}无权发布", kind.name_zh())
            }
            RevisionProblem::Empty { kind } => match kind {
                RevisionKind::Calendar => "工作日历修订没有列出任何年份".to_owned(),
                _ => format!("{}修订没有内容", kind.name_zh()),
            },
            RevisionProblem::Catalog(p) => p.describe_zh(),
            RevisionProblem::Calendar(e) => e.reason_zh(),
            RevisionProblem::Topology(e) => e.reason_zh(),
        }
    }
}

fn catalog_field(p: &CatalogProblem) -> &'static str {
    match p {
        CatalogProblem::NotOwner { .. } => "owner",
        CatalogProblem::Version { .. } => "version",
        CatalogProblem::Field { field, .. } => field,
        CatalogProblem::DuplicateCode { what, .. } => {
            if *what == "环节" {
                "steps"
            } else {
                "materials"
            }
        }
        CatalogProblem::CommittedOverStatutory { .. } => "committed_limit",
        CatalogProblem::CaseTypeLimit { .. } => "case_type",
        CatalogProblem::LimitTooLong { .. } => "",
        CatalogProblem::Increase(i) => match i {
            Increase::MaterialAdded { .. }
            | Increase::MaterialNowRequired { .. }
            | Increase::MaterialOptionRemoved { .. }
            | Increase::MaterialCountRaised { .. } => "materials",
            Increase::StepAdded { .. }
            | Increase::StepLimitRaised { .. }
            | Increase::NoticeLengthened { .. }
            | Increase::NoticeNoLongerCounted { .. } => "steps",
            Increase::StatutoryLimitRaised { .. } => "statutory_limit",
            Increase::CommittedLimitRaised { .. } => "committed_limit",
            Increase::FeeRaised { .. } => "fee",
        },
    }
}

fn calendar_field(e: &CalendarError) -> String {
    match e {
        CalendarError::VersionNotIncreasing { .. } => "version".to_owned(),
        CalendarError::MissingSource { year } => format!("years.{year}.source"),
        CalendarError::DayOffOutsideYear { year, .. } => format!("years.{year}.days_off"),
        CalendarError::WorkingWeekendOutsideYear { year, .. } => {
            format!("years.{year}.working_weekends")
        }
        CalendarError::WorkingWeekendNotWeekend { date, .. } => {
            use chrono::Datelike;
            format!("years.{}.working_weekends", date.year())
        }
        CalendarError::OffAndWorking { date } => {
            use chrono::Datelike;
            format!("years.{}", date.year())
        }
        CalendarError::YearKeyMismatch { key, .. } => format!("years.{key}"),
        CalendarError::YearOutOfRange { year } | CalendarError::MissingYear { year } => {
            format!("years.{year}")
        }
        CalendarError::TooManyDays { .. }
        | CalendarError::SpanTooLong { .. }
        | CalendarError::DateOverflow { .. } => String::new(),
    }
}

fn topology_field(e: &TopologyError) -> String {
    match e {
        TopologyError::VersionNotIncreasing { .. } => "version".to_owned(),
        TopologyError::Empty | TopologyError::NoRoot => "nodes".to_owned(),
        TopologyError::UnknownNode { id }
        | TopologyError::DuplicateNode { id }
        | TopologyError::KeyMismatch { id, .. } => format!("nodes.{id}"),
        TopologyError::TierMismatch { node, .. } => format!("nodes.{node}.tier"),
        TopologyError::MissingParent { node, .. }
        | TopologyError::ParentNotAbove { node, .. }
        | TopologyError::Cycle { node } => format!("nodes.{node}.parent"),
        TopologyError::TwoRoots { second, .. } => format!("nodes.{second}.parent"),
        TopologyError::ServesAbove { node, .. } | TopologyError::RouteMismatch { node, .. } => {
            format!("nodes.{node}.serves")
        }
        TopologyError::ServedTwice { second, .. } => format!("nodes.{second}.serves"),
        TopologyError::Unserved { .. } => String::new(),
    }
}

/// A revision published here (or, checked only, found publishable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub kind: RevisionKind,
    /// The item's, the calendar's or the table's version.
    pub version: u32,
    /// The event's identity and position in the log; `None` when only checked.
    pub event: Option<(EventId, u64)>,
    /// The node whose whole subtree receives it: this one.
    pub subtree: NodeId,
    /// One line for the operator, in Chinese.
    pub summary_zh: String,
}

/// What became of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publication {
    Published(Published),
    /// Every problem; nothing was written.
    Refused(Vec<RevisionProblem>),
}

/// The state a revision leaves, to be put in memory once its batch is applied.
pub(super) enum Revised {
    Catalog(Catalog),
    Calendar(Calendar),
    Topology(Topology),
}

impl<S: Store> Register<S> {
    /// Checks a revision authored here against what this node holds and, unless
    /// `check_only`, appends it to the log with its state change in one batch (durable with
    /// the next sync). A refusal carries every problem and writes nothing. `operator` is
    /// recorded as the event's author.
    pub fn publish(
        &mut self,
        revision: Revision,
        operator: &str,
        check_only: bool,
    ) -> Result<Publication, RegisterError> {
        let kind = revision.kind();
        let mut problems = Vec::new();
        if let Err(p) = self.may_author(kind, self.node) {
            problems.push(p);
        }
        let (revised, payload, version, what) = match revision {
            Revision::Catalog(item) => {
                problems.extend(
                    self.catalog
                        .check_revision(self.node, &item)
                        .into_iter()
                        .map(RevisionProblem::Catalog),
                );
                let what = format!("事项“{}”（{}）第{}版", item.name, item.code, item.version);
                let version = item.version;
                let mut catalog = self.catalog.clone();
                let payload = pb::CatalogRevision::from((*item).clone()).encode_to_vec();
                if problems.is_empty()
                    && let Err(refused) = catalog.apply(self.node, *item)
                {
                    problems.extend(refused.into_iter().map(RevisionProblem::Catalog));
                }
                (Revised::Catalog(catalog), payload, version, what)
            }
            Revision::Calendar(years) => {
                if years.years.is_empty() {
                    problems.push(RevisionProblem::Empty { kind });
                }
                if years.version <= self.calendar.version {
                    problems.push(RevisionProblem::Calendar(
                        CalendarError::VersionNotIncreasing {
                            current: self.calendar.version,
                            revision: years.version,
                        },
                    ));
                }
                if let Err(errors) = years.validate() {
                    problems.extend(errors.into_iter().map(RevisionProblem::Calendar));
                }
                let mut whole = self.calendar.clone();
                whole.version = years.version;
                whole.years.extend(years.years);
                let listed: Vec<String> = whole.years.keys().map(ToString::to_string).collect();
                let what = format!("工作日历第{}版（{}年）", whole.version, listed.join("、"));
                let payload = pb::CalendarRevision::from(whole.clone()).encode_to_vec();
                (Revised::Calendar(whole), payload, years.version, what)
            }
            Revision::Topology(table) => {
                if table.node(self.node).is_none() {
                    problems.push(RevisionProblem::Topology(TopologyError::UnknownNode {
                        id: self.node,
                    }));
                }
                if let Err(errors) = self.topology.apply(table.clone()) {
                    problems.extend(errors.into_iter().map(RevisionProblem::Topology));
                }
                let what = format!("拓扑表第{}版（{}个节点）", table.version, table.nodes.len());
                let version = table.version;
                let payload = pb::TopologyRevision::from(table.clone()).encode_to_vec();
                (Revised::Topology(table), payload, version, what)
            }
        };
        if !problems.is_empty() {
            tracing::info!(node = %self.node, kind = kind.as_str(), problems = problems.len(), "revision refused");
            return Ok(Publication::Refused(problems));
        }
        let place = self.topology.node(self.node).map_or_else(
            || self.node.to_string(),
            |n| format!("{}（{}）", n.name, n.id),
        );
        if check_only {
            return Ok(Publication::Published(Published {
                kind,
                version,
                event: None,
                subtree: self.node,
                summary_zh: format!(
                    "{what}检查通过，可以发布（本次未发布）；发布后下发至{place}所辖全部节点"
                ),
            }));
        }
        let id = EventId {
            origin: self.node.to_string(),
            epoch: self.epoch.0,
            seq: self.own_seq + 1,
        };
        let wire = pb::Event {
            envelope: Some(pb::EventEnvelope {
                id: Some(pb::EventId {
                    origin: id.origin.clone(),
                    epoch: id.epoch,
                    seq: id.seq,
                }),
                case_id: String::new(),
                case_seq: 0,
                r#type: kind.event_type() as i32,
                schema_version: PAYLOAD_SCHEMA_VERSION,
                audience: Some(pb::Audience {
                    subtree: self.node.to_string(),
                    members: Vec::new(),
                }),
                signature: None,
                materials: Vec::new(),
                author: operator.to_owned(),
            }),
            payload,
        }
        .encode_to_vec();
        let mut b = Batch::default();
        revised_ops(&mut b, &revised);
        let len = wire.len();
        self.revision_ops(&mut b, &revised, self.next_position, self.node, len)?;
        let position = self.append_own(wire, b)?;
        self.commit_revision(revised);
        tracing::info!(node = %self.node, kind = kind.as_str(), version, position, "revision published");
        Ok(Publication::Published(Published {
            kind,
            version,
            event: Some((id, position)),
            subtree: self.node,
            summary_zh: format!("{what}已发布，下发至{place}所辖全部节点"),
        }))
    }

    /// Whether `author` may author revisions of `kind`, by this node's topology.
    fn may_author(&self, kind: RevisionKind, author: NodeId) -> Result<(), RevisionProblem> {
        let tier = self.topology.node(author).map_or(author.tier(), |n| n.tier);
        let root = self.topology.root().map(|n| n.id);
        let (allowed, rule) = match kind {
            RevisionKind::Catalog => (tier < Tier::Village, AuthorRule::Hub),
            RevisionKind::Calendar => (
                root == Some(author) || tier == Tier::County,
                AuthorRule::RootOrCounty,
            ),
            RevisionKind::Topology => (root == Some(author), AuthorRule::Root),
        };
        if allowed {
            Ok(())
        } else {
            Err(RevisionProblem::NotAuthor {
                kind,
                node: author,
                rule,
            })
        }
    }

    /// A received event of a revision type: its state change goes into `b` (nothing is
    /// written here) and is returned for [`Register::commit_revision`] once `b` is applied.
    /// `None` when the event is no revision, of a payload schema newer than this node's, or
    /// fails a check (kept and relayed all the same; logged without content, and listed in
    /// `report` for the node's alarm).
    pub(super) fn offer_revision(
        &self,
        b: &mut Batch,
        env: &Envelope,
        position: u64,
        event: &pb::Event,
        report: &mut Received,
    ) -> Option<Revised> {
        let kind = RevisionKind::of_event_type(env.kind)?;
        if env.schema_version > self.readable_schema {
            tracing::info!(
                position,
                kind = kind.as_str(),
                schema_version = env.schema_version,
                "a revision of a newer payload schema: kept and relayed, not applied here"
            );
            return None;
        }
        let origin = env.id.origin.as_str();
        let mut refuse = |why: String| {
            tracing::warn!(node = %self.node, position, origin, kind = kind.as_str(), %why, "a received revision fails a check: kept and relayed, not applied here");
            report.refused_revisions.push(RefusedRevision {
                revision: env.id.clone(),
                kind: kind.as_str(),
                reason: why,
            });
            None
        };
        let Ok(author) = origin.parse::<NodeId>() else {
            return refuse("malformed origin".to_owned());
        };
        if self.may_author(kind, author).is_err() {
            return refuse(format!(
                "{author} may not author a {} revision",
                kind.as_str()
            ));
        }
        let revised = match kind {
            RevisionKind::Catalog => {
                let item = match pb::CatalogRevision::decode(event.payload.as_slice())
                    .map_err(|e| e.to_string())
                    .and_then(|p| ItemVersion::try_from(p).map_err(|e| e.to_string()))
                {
                    Ok(item) => item,
                    Err(e) => return refuse(e),
                };
                let mut catalog = self.catalog.clone();
                if let Err(problems) = catalog.apply(author, item) {
                    return refuse(format!("{} problem(s)", problems.len()));
                }
                Revised::Catalog(catalog)
            }
            RevisionKind::Calendar => {
                let whole = match pb::CalendarRevision::decode(event.payload.as_slice())
                    .map_err(|e| e.to_string())
                    .and_then(|p| Calendar::try_from(p).map_err(|e| e.to_string()))
                {
                    Ok(c) => c,
                    Err(e) => return refuse(e),
                };
                if whole == self.calendar {
                    return None;
                }
                match self.calendar.apply(whole) {
                    Ok(next) => Revised::Calendar(next),
                    Err(e) => return refuse(e.to_string()),
                }
            }
            RevisionKind::Topology => {
                let table = match pb::TopologyRevision::decode(event.payload.as_slice())
                    .map_err(|e| e.to_string())
                    .and_then(|p| Topology::try_from(p).map_err(|e| e.to_string()))
                {
                    Ok(t) => t,
                    Err(e) => return refuse(e),
                };
                if table == self.topology {
                    return None;
                }
                match self.topology.apply(table) {
                    Ok(next) => Revised::Topology(next),
                    Err(errors) => return refuse(format!("{} problem(s)", errors.len())),
                }
            }
        };
        revised_ops(b, &revised);
        tracing::info!(node = %self.node, position, origin, kind = kind.as_str(), "revision applied");
        Some(revised)
    }

    /// Indexes an applied revision (`rv/<position>`: the author's subtree), and when it is a
    /// topology that gives this node new children, enters for each of them every revision
    /// applied here whose subtree holds it, this one included, in the children's outboxes
    /// (into `b`): a node added later starts from the catalog, calendar and topology its
    /// subtree has reached (DESIGN.md invariant 7), not from its built-in defaults.
    pub(super) fn revision_ops(
        &self,
        b: &mut Batch,
        revised: &Revised,
        position: u64,
        subtree: NodeId,
        len: usize,
    ) -> Result<(), RegisterError> {
        b.put(revision_key(position), subtree.to_string().into_bytes());
        let Revised::Topology(next) = revised else {
            return Ok(());
        };
        let before: std::collections::BTreeSet<NodeId> = self.children().into_iter().collect();
        let joined: Vec<NodeId> = next
            .children(self.node)
            .map(|n| n.id)
            .filter(|c| !before.contains(c))
            .collect();
        if joined.is_empty() {
            return Ok(());
        }
        let mut revisions = Vec::new();
        for (k, v) in self.store.scan(key::REVISION_AT, None, usize::MAX)? {
            let Some(at) = k[key::REVISION_AT.len()..]
                .try_into()
                .ok()
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            let Ok(subtree) = String::from_utf8_lossy(&v).parse::<NodeId>() else {
                continue;
            };
            let Some(bytes) = self.store.get(&super::event_key(at))? else {
                continue;
            };
            revisions.push((at, subtree, bytes.len()));
        }
        revisions.push((position, subtree, len));
        for child in &joined {
            let mut entered = 0;
            for (at, subtree, len) in &revisions {
                if next.is_in_subtree(*child, *subtree) || child.is_within(*subtree) {
                    b.put(
                        super::replica::outbox_key(*child, *at),
                        super::replica::outbox_entry(*len),
                    );
                    entered += 1;
                }
            }
            tracing::info!(node = %self.node, %child, revisions = entered, "a new child: the revisions applied here are entered for it");
        }
        Ok(())
    }

    /// Puts a revision's state in memory, after its batch was applied.
    pub(super) fn commit_revision(&mut self, revised: Revised) {
        match revised {
            Revised::Catalog(c) => self.catalog = c,
            Revised::Calendar(c) => self.calendar = c,
            Revised::Topology(t) => self.topology = t,
        }
    }
}

fn revision_key(position: u64) -> Vec<u8> {
    key::join(&[key::REVISION_AT, &position.to_be_bytes()])
}

/// The stored state of a revision, into its event's batch.
fn revised_ops(b: &mut Batch, revised: &Revised) {
    match revised {
        Revised::Catalog(c) => b.put(key::CATALOG, encode(c)),
        Revised::Calendar(c) => b.put(key::CALENDAR, encode(c)),
        Revised::Topology(t) => b.put(key::TOPOLOGY, encode(t)),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use chrono::NaiveDate;

    use yimen_core::calendar::CalendarYear;
    use yimen_core::case::{Case, Rules};
    use yimen_core::catalog::{Material, MaterialCode, MaterialRequirement, TimeLimit};
    use yimen_core::command::{Actor, Command};
    use yimen_core::link::Cursor;
    use yimen_core::sample::{self, SampleOptions};

    use super::*;
    use crate::clock::ManualClock;
    use crate::node::{ApplicantInput, ClerkOp, ClerkReply, Node};
    use crate::register::Recovery;
    use crate::store::Epoch;
    use crate::store::mem::MemStore;

    const COUNTY: &str = "430421000000";
    const TOWNSHIP: &str = "430421105000";
    const VILLAGE: &str = "430421105204";

    fn id(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A node on the model store, its clock at 09:00 Beijing time on `on`.
    fn open(node: &str, epoch: u64, on: &str) -> Node<MemStore> {
        let (store, opened) = MemStore::new(Epoch(epoch));
        let reg = Register::open(
            store,
            opened,
            id(node),
            crate::server::bootstrap(id(node)),
            Recovery::Stop,
        )
        .unwrap();
        let clock = Arc::new(ManualClock::at_beijing(
            day(on).and_hms_opt(9, 0, 0).unwrap(),
        ));
        Node::new(reg, clock)
    }

    /// Everything in `from`'s outbox for `to`, received by `to` (duplicates are dropped).
    fn relay(from: &mut Node<MemStore>, to: &mut Node<MemStore>) -> crate::register::Received {
        from.sync().unwrap();
        let events = from
            .register
            .outbox(to.register.node, 1, false, 10_000, u64::MAX)
            .unwrap();
        let Some(last) = events.last() else {
            return crate::register::Received::default();
        };
        let cursor = Cursor {
            epoch: from.register.epoch.0,
            position: last.position,
            digest: last.digest,
        };
        let received = to
            .register
            .receive(from.register.node, events, cursor)
            .unwrap();
        to.sync().unwrap();
        received
    }

    /// A test-only 2027 (not a real notice): New Year's Day off.
    fn year_2027(version: u32) -> Calendar {
        Calendar {
            version,
            years: [(
                2027,
                CalendarYear {
                    year: 2027,
                    days_off: BTreeSet::from([day("2027-01-01")]),
                    working_weekends: BTreeSet::new(),
                    source: "测试用2027年日历（非真实通知）".to_owned(),
                },
            )]
            .into(),
        }
    }

    fn publish(node: &mut Node<MemStore>, revision: Revision) -> Publication {
        let reply = node
            .handle(ClerkOp::Publish {
                operator: "县政务服务中心 张三".to_owned(),
                revision: Box::new(revision),
                check_only: false,
            })
            .unwrap();
        node.sync().unwrap();
        match reply {
            ClerkReply::Publication(p) => *p,
            other => panic!("not a publication: {other:?}"),
        }
    }

    fn published(p: Publication) -> Published {
        match p {
            Publication::Published(p) => p,
            Publication::Refused(problems) => panic!("refused: {problems:?}"),
        }
    }

    fn refused(p: Publication) -> Vec<(String, String)> {
        match p {
            Publication::Refused(problems) => problems
                .iter()
                .map(|p| (p.field(), p.reason_zh()))
                .collect(),
            Publication::Published(p) => panic!("published: {p:?}"),
        }
    }

    /// A 医疗救助 application at the village; returns the case.
    fn apply_medical_aid(village: &mut Node<MemStore>, materials: &[&str]) -> Case {
        let reply = village
            .handle(ClerkOp::Apply {
                operator: "测试员".to_owned(),
                item_code: sample::MEDICAL_AID.to_owned(),
                applicant: ApplicantInput {
                    id_number: "11010519491231002X".to_owned(),
                    name: "张桂英".to_owned(),
                    household: VILLAGE.to_owned(),
                    statuses: vec!["dibao".to_owned()],
                },
                materials: materials.iter().map(|m| (*m).to_owned()).collect(),
                helper: None,
            })
            .unwrap();
        village.sync().unwrap();
        match reply {
            ClerkReply::Accepted(case, _) => *case,
            other => panic!("not accepted: {other:?}"),
        }
    }

    fn medical_aid_v2_without(code: &str) -> ItemVersion {
        let mut item = sample::medical_aid(SampleOptions::default());
        item.version = 2;
        item.materials.retain(|m| m.code.0 != code);
        item
    }

    #[test]
    fn a_calendar_authored_at_the_county_reaches_the_village_through_the_township() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let mut township = open(TOWNSHIP, 2, "2026-12-24");
        let mut village = open(VILLAGE, 3, "2026-12-24");
        let before = county.register.last_position();
        let p = published(publish(&mut county, Revision::Calendar(year_2027(2))));
        assert_eq!(p.kind, RevisionKind::Calendar);
        assert_eq!(p.version, 2);
        assert_eq!(p.subtree, id(COUNTY));
        let (event_id, position) = p.event.clone().unwrap();
        assert_eq!(position, before + 1);
        assert_eq!(event_id.origin, COUNTY);
        assert!(
            p.summary_zh.contains("2025、2026、2027"),
            "{}",
            p.summary_zh
        );
        // The whole calendar, merged: the built-in years are kept.
        let years: Vec<i32> = county.register.calendar.years.keys().copied().collect();
        assert_eq!(years, vec![2025, 2026, 2027]);

        assert_eq!(relay(&mut county, &mut township).stored, 1);
        assert_eq!(township.register.calendar, county.register.calendar);
        assert_eq!(relay(&mut township, &mut village).stored, 1);
        assert_eq!(village.register.calendar, county.register.calendar);
        // The other township's outbox holds it too (the county's whole subtree).
        let other = county
            .register
            .outbox(id("430421100000"), 1, false, 10, u64::MAX)
            .unwrap();
        assert_eq!(other.len(), 1);
        // Again: a duplicate changes nothing.
        assert_eq!(relay(&mut county, &mut township).duplicates, 1);
    }

    #[test]
    fn the_state_is_stored_with_the_event() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        published(publish(&mut county, Revision::Calendar(year_2027(2))));
        let stored: Calendar = super::super::decode(
            "calendar",
            &county.register.store.get(key::CALENDAR).unwrap().unwrap(),
        )
        .unwrap();
        assert_eq!(stored, county.register.calendar);
    }

    #[test]
    fn only_the_owner_the_root_or_a_county_may_author() {
        let mut township = open(TOWNSHIP, 2, "2026-12-24");
        let mut village = open(VILLAGE, 3, "2026-12-24");
        let mut county = open(COUNTY, 1, "2026-12-24");
        let problems = refused(publish(&mut township, Revision::Calendar(year_2027(2))));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].1.contains("根节点或县级枢纽"), "{problems:?}");
        let problems = refused(publish(
            &mut township,
            Revision::Topology(Topology::sample_hengyang()),
        ));
        assert!(
            problems
                .iter()
                .any(|p| p.1.contains("拓扑表只能由根节点编制"))
        );
        let item = medical_aid_v2_without("dbwbz");
        let problems = refused(publish(
            &mut village,
            Revision::Catalog(Box::new(item.clone())),
        ));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].1.contains("村（社区）节点不编制事项"));
        assert_eq!(problems[1].0, "owner");
        assert!(problems[1].1.contains("无权修订"));
        assert_eq!(township.register.last_position(), 0, "nothing written");
        assert_eq!(village.register.last_position(), 0, "nothing written");
        published(publish(&mut county, Revision::Catalog(Box::new(item))));
    }

    #[test]
    fn a_never_more_refusal_lists_every_increase_and_writes_nothing() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let mut item = sample::medical_aid(SampleOptions::default());
        item.version = 2;
        item.materials.push(MaterialRequirement {
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
        item.statutory_limit = TimeLimit::WorkingDays(12);
        item.committed_limit = TimeLimit::WorkingDays(12);
        let catalog = county.register.catalog.clone();
        let problems = refused(publish(
            &mut county,
            Revision::Catalog(Box::new(item.clone())),
        ));
        let fields: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            fields,
            vec!["materials", "statutory_limit", "committed_limit"]
        );
        assert!(
            problems[0]
                .1
                .contains("新增申报材料“医疗救助申请表”，且未注明法律依据")
        );
        assert_eq!(county.register.catalog, catalog);
        assert_eq!(county.register.last_position(), 0);
        // Naming the legal basis lets it through.
        item.legal_basis = Some("《社会救助暂行办法》（测试用）".to_owned());
        assert_eq!(
            published(publish(&mut county, Revision::Catalog(Box::new(item)))).version,
            2
        );
    }

    #[test]
    fn checking_only_publishes_nothing() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let reply = county
            .handle(ClerkOp::Publish {
                operator: "张三".to_owned(),
                revision: Box::new(Revision::Calendar(year_2027(2))),
                check_only: true,
            })
            .unwrap();
        let ClerkReply::Publication(p) = reply else {
            panic!("not a publication");
        };
        let p = published(*p);
        assert_eq!(p.event, None);
        assert!(p.summary_zh.contains("本次未发布"));
        assert_eq!(county.register.last_position(), 0);
        assert_eq!(county.register.calendar, Calendar::builtin());
    }

    #[test]
    fn a_calendar_version_must_increase_and_its_years_be_valid() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let mut bad = year_2027(1);
        if let Some(y) = bad.years.get_mut(&2027) {
            y.source = String::new();
            y.working_weekends.insert(day("2027-01-04"));
        }
        let problems = refused(publish(&mut county, Revision::Calendar(bad)));
        let fields: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "version",
                "years.2027.source",
                "years.2027.working_weekends"
            ]
        );
    }

    /// An event as another node would have written it, and the cursor just past it.
    fn forged(
        origin: &str,
        event_type: pb::EventType,
        schema_version: u32,
        payload: Vec<u8>,
    ) -> (yimen_core::link::WireEvent, Cursor) {
        let wire = pb::Event {
            envelope: Some(pb::EventEnvelope {
                id: Some(pb::EventId {
                    origin: origin.to_owned(),
                    epoch: 9,
                    seq: 1,
                }),
                case_id: String::new(),
                case_seq: 0,
                r#type: event_type as i32,
                schema_version,
                audience: Some(pb::Audience {
                    subtree: origin.to_owned(),
                    members: Vec::new(),
                }),
                signature: None,
                materials: Vec::new(),
                author: "x".to_owned(),
            }),
            payload,
        }
        .encode_to_vec();
        let digest = *blake3::hash(&wire).as_bytes();
        let event = yimen_core::link::WireEvent {
            id: EventId {
                origin: origin.to_owned(),
                epoch: 9,
                seq: 1,
            },
            position: 1,
            digest,
            bytes: wire,
        };
        let cursor = Cursor {
            epoch: 9,
            position: 1,
            digest,
        };
        (event, cursor)
    }

    #[test]
    fn a_revision_from_a_node_that_may_not_author_it_is_kept_not_applied_and_alarmed() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let mut township = open(TOWNSHIP, 2, "2026-12-24");
        let mut village = open(VILLAGE, 3, "2026-12-24");
        // A township-authored change to the county's item (the township's own check
        // refuses to write it: forged).
        let payload = pb::CatalogRevision::from(medical_aid_v2_without("dbwbz")).encode_to_vec();
        let (event, cursor) = forged(TOWNSHIP, pb::EventType::CatalogRevision, 1, payload);
        let forged_id = event.id.clone();
        let catalog = village.register.catalog.clone();
        let crate::node::LinkReply::Received(received) = village
            .handle_link(crate::node::LinkOp::Receive {
                peer: id(TOWNSHIP),
                events: vec![event],
                cursor,
            })
            .unwrap()
        else {
            panic!("not received");
        };
        assert_eq!(received.stored, 1);
        assert_eq!(village.register.catalog, catalog, "not applied");
        assert_eq!(received.refused_revisions.len(), 1, "{received:?}");

        // The village's alarm: kept there, at the author (addressed) and at the root (the
        // county's alarm), naming the refusing node and the revision.
        relay(&mut village, &mut township);
        relay(&mut township, &mut county);
        for node in [&village, &township, &county] {
            let alarms = node.register.revision_alarms(10).unwrap();
            assert_eq!(alarms.len(), 1, "{}: {alarms:?}", node.register.node);
            assert_eq!(alarms[0].node, id(VILLAGE));
            assert_eq!(alarms[0].revision, forged_id);
            assert_eq!(alarms[0].kind, "catalog");
        }
        // An alarm naming another node than its author is relayed only.
        let mut claimed = county.register.revision_alarms(10).unwrap().remove(0);
        claimed.revision.seq = 99;
        let payload = pb::RevisionAlarm::from(&claimed).encode_to_vec();
        let (event, cursor) = forged(TOWNSHIP, pb::EventType::RevisionAlarm, 1, payload);
        let received = county
            .register
            .receive(id(TOWNSHIP), vec![event], cursor)
            .unwrap();
        assert_eq!(received.stored, 1);
        assert_eq!(county.register.revision_alarms(10).unwrap().len(), 1);
    }

    #[test]
    fn a_revision_of_a_newer_schema_is_relayed_but_not_read() {
        let mut township = open(TOWNSHIP, 2, "2026-12-24");
        let mut village = open(VILLAGE, 3, "2026-12-24");
        let (event, cursor) = forged(
            COUNTY,
            pb::EventType::CalendarRevision,
            PAYLOAD_SCHEMA_VERSION + 1,
            b"a payload this node cannot read".to_vec(),
        );
        let received = township
            .register
            .receive(id(COUNTY), vec![event], cursor)
            .unwrap();
        assert_eq!(received.stored, 1);
        assert_eq!(township.register.calendar, Calendar::builtin());
        assert_eq!(relay(&mut township, &mut village).stored, 1, "relayed");
        assert_eq!(village.register.calendar, Calendar::builtin());
    }

    #[test]
    fn cases_keep_the_item_version_they_were_accepted_under() {
        let mut county = open(COUNTY, 1, "2026-09-24");
        let mut township = open(TOWNSHIP, 2, "2026-09-24");
        let mut village = open(VILLAGE, 3, "2026-09-24");
        let old = apply_medical_aid(&mut village, &["zyfp", "xnhpj", "dbz"]);
        assert_eq!(old.acceptance.item.version, 1);
        published(publish(
            &mut county,
            Revision::Catalog(Box::new(medical_aid_v2_without("dbwbz"))),
        ));
        relay(&mut county, &mut township);
        relay(&mut township, &mut village);
        let latest = village
            .register
            .catalog
            .find(sample::MEDICAL_AID)
            .unwrap()
            .version;
        assert_eq!(latest, 2);
        // Version 1 stays for the case accepted under it, and the case goes on under it.
        let number = old.number.to_string();
        let case = village.register.case(&old.number).unwrap().unwrap();
        assert_eq!(case.acceptance.item.version, 1);
        assert!(
            village
                .register
                .catalog
                .get(&case.acceptance.item)
                .is_some()
        );
        let reply = village
            .handle(ClerkOp::Precheck {
                operator: "测试员".to_owned(),
                case: number,
                opinion: "材料齐全".to_owned(),
            })
            .unwrap();
        assert!(matches!(reply, ClerkReply::Case(_)));
        // A new application follows version 2: no 低保证/五保证 copy is asked for.
        let new = apply_medical_aid(&mut village, &["zyfp", "xnhpj"]);
        assert_eq!(new.acceptance.item.version, 2);
    }

    #[test]
    fn a_provisional_deadline_can_be_confirmed_once_the_year_arrives() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let mut township = open(TOWNSHIP, 2, "2026-12-24");
        let mut village = open(VILLAGE, 3, "2026-12-24");
        let case = apply_medical_aid(&mut village, &["zyfp", "xnhpj", "dbz"]);
        // Ten working days from 2026-12-24 reach 2027, which the built-in calendar lacks:
        // weekdays only.
        assert!(case.deadline.provisional);
        assert_eq!(case.deadline.due, day("2027-01-07"));
        let item = village
            .register
            .catalog
            .get(&case.acceptance.item)
            .unwrap()
            .clone();
        let rules = Rules { item: &item };
        let confirm = |calendar: &Calendar| {
            let actor = Actor {
                custodian: case.custodian.clone(),
                operator: "测试员".to_owned(),
                at: day("2026-12-28").and_hms_opt(9, 0, 0).unwrap(),
                calendar,
            };
            case.propose(Command::ConfirmDeadline, &actor, &rules)
        };
        assert!(confirm(&village.register.calendar).is_err(), "not yet");

        published(publish(&mut county, Revision::Calendar(year_2027(2))));
        relay(&mut county, &mut township);
        relay(&mut township, &mut village);
        let event = confirm(&village.register.calendar).unwrap();
        let mut after = case.clone();
        after.apply(event, &rules).unwrap();
        assert!(!after.deadline.provisional);
        // 2027-01-01 is a day off in the authored year.
        assert_eq!(after.deadline.due, day("2027-01-08"));
        assert_eq!(after.deadline.calendar_version, 2);
    }

    #[test]
    fn a_topology_authored_at_the_root_reaches_the_township() {
        let mut county = open(COUNTY, 1, "2026-12-24");
        let mut township = open(TOWNSHIP, 2, "2026-12-24");
        let mut table = Topology::sample_hengyang();
        table.version = 2;
        if let Some(n) = table.nodes.get_mut(&id(VILLAGE)) {
            n.name = "河泉村（更名测试）".to_owned();
        }
        let problems = refused(publish(
            &mut county,
            Revision::Topology(Topology::sample_hengyang()),
        ));
        assert_eq!(problems[0].0, "version");
        published(publish(&mut county, Revision::Topology(table.clone())));
        assert_eq!(county.register.topology, table);
        relay(&mut county, &mut township);
        assert_eq!(township.register.topology, table);
    }

    /// A township added by a topology revision gets every revision its county applied
    /// before, not only later ones: it starts from the county's catalog (invariant 7).
    #[test]
    fn a_node_added_later_starts_from_the_revisions_already_published() {
        const JIBING: &str = "430421101000";
        let mut county = open(COUNTY, 1, "2026-12-24");
        let v2 = medical_aid_v2_without("dbz");
        published(publish(
            &mut county,
            Revision::Catalog(Box::new(v2.clone())),
        ));
        assert!(
            county
                .register
                .outbox(id(JIBING), 1, false, 100, u64::MAX)
                .unwrap()
                .is_empty()
        );
        let mut table = Topology::sample_hengyang();
        table.version = 2;
        table.nodes.insert(
            id(JIBING),
            yimen_core::topology::TopologyNode {
                id: id(JIBING),
                tier: yimen_core::division::Tier::Township,
                parent: Some(id(COUNTY)),
                name: "集兵镇".to_owned(),
                serves: vec![id(JIBING)],
            },
        );
        published(publish(&mut county, Revision::Topology(table.clone())));
        let entered = county
            .register
            .outbox(id(JIBING), 1, false, 100, u64::MAX)
            .unwrap();
        assert_eq!(entered.len(), 2, "the catalog revision, then the topology");

        let mut jibing = open(JIBING, 3, "2026-12-24");
        assert!(jibing.register.catalog.get(&v2.key()).is_none());
        relay(&mut county, &mut jibing);
        assert_eq!(jibing.register.catalog.get(&v2.key()), Some(&v2));
        assert_eq!(jibing.register.topology, table);
        // An existing township got the catalog revision once, when it was published.
        let township_entries = county
            .register
            .outbox(id(TOWNSHIP), 1, false, 100, u64::MAX)
            .unwrap();
        assert_eq!(
            township_entries.len(),
            2,
            "the catalog and the topology, once each"
        );
    }
}
