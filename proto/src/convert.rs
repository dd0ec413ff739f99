//! Checked conversions between wire messages ([`crate::pb`]) and domain types (`yimen_core`).
//!
//! Invariants: wire → domain is `TryFrom` and parses everything the domain type assumes
//! (division codes, tiers, step actions, national codes, calendar dates, string lengths,
//! numeric ranges); a malformed message becomes a [`WireError`] naming the field path
//! (`item.steps[2].tier`), never a panic. Domain → wire is `From` and total. A domain value
//! survives domain → wire → domain unchanged. Case events and requests live in [`case`]
//! (`TryFrom<pb::CaseEventPayload> for CaseEvent`, `TryFrom<pb::RequestPayload> for
//! Request` and back); their errors never echo an ID number or a name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{Datelike, NaiveDate, Weekday};
use prost::Message;
use yimen_core::calendar::{Calendar, CalendarYear};
use yimen_core::catalog::{
    CODE_CHARS_MAX, CaseType, Condition, ConditionRule, Department, DeptKey, Fee,
    ITEM_NAME_CHARS_MAX, ItemCode, ItemType, ItemVersion, LIMIT_DAYS_MAX, Material, MaterialCode,
    MaterialRequirement, NoticeRule, ServerType, Service, Step, StepAction, StepCode, TimeLimit,
    UseLevel,
};
use yimen_core::division::{DivisionCode, Tier};
use yimen_core::person::Status;
use yimen_core::topology::{Topology, TopologyNode};

use crate::pb;

pub mod case;
pub mod link;

/// Length of a blake3 digest in a material reference.
pub const BLAKE3_BYTES: usize = 32;
/// Length of a 统一社会信用代码 (GB 32100).
pub const CREDIT_CODE_CHARS: usize = 18;

/// A wire message that does not make a valid domain value. `field` is the path of the
/// offending field from the converted message (`item.steps[2].tier`, `years[0].days_off[3]`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{field}: missing")]
    Missing { field: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{what}: cannot decode: {reason}")]
    Decode { what: &'static str, reason: String },
}

impl WireError {
    /// The path of the offending field (for `Decode`, what was being decoded).
    pub fn field(&self) -> &str {
        match self {
            WireError::Missing { field } | WireError::Invalid { field, .. } => field,
            WireError::Decode { what, .. } => what,
        }
    }
}

/// Encodes a payload message for [`pb::Event::payload`].
pub fn encode_payload<M: Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

/// Decodes a payload; `what` names it in the error ("catalog revision").
pub fn decode_payload<M: Message + Default>(
    bytes: &[u8],
    what: &'static str,
) -> Result<M, WireError> {
    M::decode(bytes).map_err(|e| WireError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// The domain-free checks of an envelope that every relay makes before storing an event.
pub fn check_envelope(envelope: &pb::EventEnvelope) -> Result<(), WireError> {
    let root = Path::ROOT;
    let id_path = root.field("id");
    let id = required(&id_path, envelope.id.as_ref())?;
    division(&id_path.field("origin"), &id.origin)?;
    if id.epoch == 0 {
        return Err(id_path.field("epoch").invalid("must be greater than 0"));
    }
    if id.seq == 0 {
        return Err(id_path.field("seq").invalid("must be greater than 0"));
    }
    // A request names its case but stands outside the case's sequence (DESIGN.md "Custody");
    // so do a quarantine alarm and a county decision.
    let request = [
        pb::EventType::Request,
        pb::EventType::QuarantineAlarm,
        pb::EventType::CountyDecision,
    ]
    .iter()
    .any(|t| envelope.r#type == *t as i32);
    match (envelope.case_id.is_empty(), envelope.case_seq, request) {
        (true, 0, false) | (false, 1.., false) | (false, 0, true) => {}
        (false, _, true) => {
            return Err(root.field("case_seq").invalid(
                "must be 0 for a request, alarm or decision (they are outside the case sequence)",
            ));
        }
        (true, _, true) => {
            return Err(root
                .field("case_id")
                .invalid("a request, alarm or decision must name its case"));
        }
        (true, n, false) => {
            return Err(root
                .field("case_seq")
                .invalid(format!("is {n} but case_id is empty")));
        }
        (false, 0, false) => {
            return Err(root
                .field("case_seq")
                .invalid("must be greater than 0 when case_id is set"));
        }
    }
    if envelope.r#type == pb::EventType::Unspecified as i32 {
        return Err(root.field("type").invalid("EVENT_TYPE_UNSPECIFIED"));
    }
    if envelope.schema_version == 0 {
        return Err(root
            .field("schema_version")
            .invalid("must be greater than 0"));
    }
    let audience_path = root.field("audience");
    let audience = required(&audience_path, envelope.audience.as_ref())?;
    if audience.subtree.is_empty() && audience.members.is_empty() {
        return Err(audience_path.invalid("names neither a subtree nor members"));
    }
    if !audience.subtree.is_empty() {
        division(&audience_path.field("subtree"), &audience.subtree)?;
    }
    for (i, member) in audience.members.iter().enumerate() {
        division(&audience_path.at("members", i), member)?;
    }
    for (i, material) in envelope.materials.iter().enumerate() {
        if material.blake3.len() != BLAKE3_BYTES {
            return Err(root.at("materials", i).field("blake3").invalid(format!(
                "must be {BLAKE3_BYTES} bytes, got {}",
                material.blake3.len()
            )));
        }
    }
    Ok(())
}

/// An optional department key: empty on the wire means none.
fn dept_key(p: &Path<'_>, w: String) -> Result<Option<DeptKey>, WireError> {
    if w.is_empty() {
        return Ok(None);
    }
    Ok(Some(DeptKey(text(p, w, 1, CODE_CHARS_MAX)?)))
}

// ---------------------------------------------------------------------------------------
// Catalog

impl TryFrom<pb::CatalogRevision> for ItemVersion {
    type Error = WireError;
    fn try_from(wire: pb::CatalogRevision) -> Result<Self, WireError> {
        let path = Path::ROOT.field("item");
        item_version(&path, required(&path, wire.item)?)
    }
}

impl TryFrom<pb::ItemVersion> for ItemVersion {
    type Error = WireError;
    fn try_from(wire: pb::ItemVersion) -> Result<Self, WireError> {
        item_version(&Path::ROOT, wire)
    }
}

impl From<ItemVersion> for pb::CatalogRevision {
    fn from(item: ItemVersion) -> Self {
        pb::CatalogRevision {
            item: Some(item.into()),
        }
    }
}

impl From<ItemVersion> for pb::ItemVersion {
    fn from(item: ItemVersion) -> Self {
        pb::ItemVersion {
            owner: item.owner.to_string(),
            code: item.code.0,
            version: item.version,
            name: item.name,
            catalog_code: item.catalog_code,
            handle_item_code: item.handle_item_code,
            item_type: item.item_type.code().to_owned(),
            use_level: item.use_level.code().into(),
            department: Some(pb::Department {
                key: item.department.key.0,
                name: item.department.name,
                credit_code: item.department.credit_code,
            }),
            statutory_limit: Some(time_limit_to_wire(item.statutory_limit)),
            committed_limit: Some(time_limit_to_wire(item.committed_limit)),
            case_type: item.case_type.code().into(),
            server_type: item.server_type.0.into(),
            conditions: item.conditions.into_iter().map(condition_to_wire).collect(),
            materials: item
                .materials
                .into_iter()
                .map(|r| pb::MaterialRequirement {
                    code: r.code.0,
                    name: r.name,
                    required: r.required,
                    options: r
                        .options
                        .into_iter()
                        .map(|m| pb::Material {
                            code: m.code.0,
                            name: m.name,
                            originals: m.originals.into(),
                            copies: m.copies.into(),
                        })
                        .collect(),
                })
                .collect(),
            steps: item
                .steps
                .into_iter()
                .map(|s| pb::Step {
                    code: s.code.0,
                    name: s.name,
                    tier: s.tier.as_str().to_owned(),
                    department: s.department.map(|d| d.0).unwrap_or_default(),
                    action: s.action.as_str().to_owned(),
                    limit: s.limit.map(time_limit_to_wire),
                    notice: s.notice.map(|n| pb::NoticeRule {
                        working_days: n.working_days.into(),
                        counts_toward_limit: n.counts_toward_limit,
                    }),
                })
                .collect(),
            fee: Some(pb::Fee {
                charged: item.fee.charged,
                amount_fen: item.fee.amount_fen,
                basis: item.fee.basis,
            }),
            service: Some(pb::Service {
                place: item.service.place,
                hours: item.service.hours,
                hotline: item.service.hotline,
                supervision_phone: item.service.supervision_phone,
            }),
            legal_basis: item.legal_basis,
        }
    }
}

fn item_version(p: &Path<'_>, w: pb::ItemVersion) -> Result<ItemVersion, WireError> {
    let item_type_path = p.field("item_type");
    let use_level_path = p.field("use_level");
    let case_type_path = p.field("case_type");
    Ok(ItemVersion {
        owner: division(&p.field("owner"), &w.owner)?,
        code: ItemCode(text(&p.field("code"), w.code, 1, CODE_CHARS_MAX)?),
        version: w.version,
        name: text(&p.field("name"), w.name, 1, ITEM_NAME_CHARS_MAX)?,
        catalog_code: text(&p.field("catalog_code"), w.catalog_code, 0, CODE_CHARS_MAX)?,
        handle_item_code: text(
            &p.field("handle_item_code"),
            w.handle_item_code,
            0,
            CODE_CHARS_MAX,
        )?,
        item_type: ItemType::from_code(&w.item_type).ok_or_else(|| {
            item_type_path.invalid(format!("unknown item type {:?}", w.item_type))
        })?,
        use_level: small::<u8>(&use_level_path, w.use_level)
            .ok()
            .and_then(UseLevel::from_code)
            .ok_or_else(|| use_level_path.invalid(format!("unknown use level {}", w.use_level)))?,
        department: department(&p.field("department"), w.department)?,
        statutory_limit: time_limit(&p.field("statutory_limit"), w.statutory_limit)?,
        committed_limit: time_limit(&p.field("committed_limit"), w.committed_limit)?,
        case_type: small::<u8>(&case_type_path, w.case_type)
            .ok()
            .and_then(CaseType::from_code)
            .ok_or_else(|| case_type_path.invalid(format!("unknown case type {}", w.case_type)))?,
        server_type: ServerType(small(&p.field("server_type"), w.server_type)?),
        conditions: w
            .conditions
            .into_iter()
            .enumerate()
            .map(|(i, c)| condition(&p.at("conditions", i), c))
            .collect::<Result<_, _>>()?,
        materials: w
            .materials
            .into_iter()
            .enumerate()
            .map(|(i, r)| material_requirement(&p.at("materials", i), r))
            .collect::<Result<_, _>>()?,
        steps: w
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| step(&p.at("steps", i), s))
            .collect::<Result<_, _>>()?,
        fee: {
            let f = required(&p.field("fee"), w.fee)?;
            Fee {
                charged: f.charged,
                amount_fen: f.amount_fen,
                basis: f.basis,
            }
        },
        service: {
            let s = required(&p.field("service"), w.service)?;
            Service {
                place: s.place,
                hours: s.hours,
                hotline: s.hotline,
                supervision_phone: s.supervision_phone,
            }
        },
        legal_basis: w.legal_basis,
    })
}

fn department(p: &Path<'_>, w: Option<pb::Department>) -> Result<Department, WireError> {
    let w = required(p, w)?;
    let credit_code = match w.credit_code {
        None => None,
        Some(code) => {
            let ok = code.len() == CREDIT_CODE_CHARS
                && code
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
            if !ok {
                return Err(p.field("credit_code").invalid(format!(
                    "{code:?} is not {CREDIT_CODE_CHARS} digits or capital letters"
                )));
            }
            Some(code)
        }
    };
    Ok(Department {
        key: DeptKey(text(&p.field("key"), w.key, 1, CODE_CHARS_MAX)?),
        name: w.name,
        credit_code,
    })
}

fn time_limit(p: &Path<'_>, w: Option<pb::TimeLimit>) -> Result<TimeLimit, WireError> {
    match required(p, w)?.kind {
        None => Err(p.field("kind").missing()),
        Some(pb::time_limit::Kind::Immediate(true)) => Ok(TimeLimit::Immediate),
        Some(pb::time_limit::Kind::Immediate(false)) => Err(p
            .field("immediate")
            .invalid("is false: set working_days instead")),
        Some(pb::time_limit::Kind::WorkingDays(n)) => Ok(TimeLimit::WorkingDays(working_days(
            &p.field("working_days"),
            n,
        )?)),
    }
}

fn working_days(p: &Path<'_>, n: u32) -> Result<u16, WireError> {
    u16::try_from(n)
        .ok()
        .filter(|d| *d <= LIMIT_DAYS_MAX)
        .ok_or_else(|| {
            p.invalid(format!(
                "{n} working days is more than the limit of {LIMIT_DAYS_MAX}"
            ))
        })
}

fn time_limit_to_wire(limit: TimeLimit) -> pb::TimeLimit {
    pb::TimeLimit {
        kind: Some(match limit {
            TimeLimit::Immediate => pb::time_limit::Kind::Immediate(true),
            TimeLimit::WorkingDays(n) => pb::time_limit::Kind::WorkingDays(n.into()),
        }),
    }
}

fn condition(p: &Path<'_>, w: pb::Condition) -> Result<Condition, WireError> {
    use pb::condition::Rule;
    let rule = match w.rule {
        None => return Err(p.field("rule").missing()),
        Some(Rule::HouseholdInJurisdiction(_)) => ConditionRule::HouseholdInJurisdiction,
        Some(Rule::MinimumAge(m)) => ConditionRule::MinimumAge {
            years: small(&p.field("minimum_age").field("years"), m.years)?,
        },
        Some(Rule::AnyStatus(a)) => {
            let path = p.field("any_status");
            let statuses = a
                .statuses
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Status::parse(s).ok_or_else(|| {
                        path.at("statuses", i)
                            .invalid(format!("unknown status {s:?}"))
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()?;
            ConditionRule::AnyStatus { statuses }
        }
    };
    Ok(Condition {
        code: text(&p.field("code"), w.code, 0, CODE_CHARS_MAX)?,
        text: w.text,
        rule,
    })
}

fn condition_to_wire(c: Condition) -> pb::Condition {
    use pb::condition::{AnyStatus, HouseholdInJurisdiction, MinimumAge, Rule};
    pb::Condition {
        code: c.code,
        text: c.text,
        rule: Some(match c.rule {
            ConditionRule::HouseholdInJurisdiction => {
                Rule::HouseholdInJurisdiction(HouseholdInJurisdiction {})
            }
            ConditionRule::MinimumAge { years } => Rule::MinimumAge(MinimumAge {
                years: years.into(),
            }),
            ConditionRule::AnyStatus { statuses } => Rule::AnyStatus(AnyStatus {
                statuses: statuses.iter().map(|s| s.as_str().to_owned()).collect(),
            }),
        }),
    }
}

fn material_requirement(
    p: &Path<'_>,
    w: pb::MaterialRequirement,
) -> Result<MaterialRequirement, WireError> {
    Ok(MaterialRequirement {
        code: MaterialCode(text(&p.field("code"), w.code, 0, CODE_CHARS_MAX)?),
        name: w.name,
        required: w.required,
        options: w
            .options
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let p = p.at("options", i);
                Ok(Material {
                    code: MaterialCode(text(&p.field("code"), m.code, 0, CODE_CHARS_MAX)?),
                    name: m.name,
                    originals: small(&p.field("originals"), m.originals)?,
                    copies: small(&p.field("copies"), m.copies)?,
                })
            })
            .collect::<Result<_, WireError>>()?,
    })
}

fn step(p: &Path<'_>, w: pb::Step) -> Result<Step, WireError> {
    let tier = w.tier.parse::<Tier>().map_err(|_| {
        p.field("tier")
            .invalid(format!("unknown tier {:?}", w.tier))
    })?;
    let action = StepAction::from_str_name(&w.action).ok_or_else(|| {
        p.field("action")
            .invalid(format!("unknown step action {:?}", w.action))
    })?;
    let department = dept_key(&p.field("department"), w.department)?;
    let limit = match w.limit {
        None => None,
        Some(limit) => Some(time_limit(&p.field("limit"), Some(limit))?),
    };
    let notice = match w.notice {
        None => None,
        Some(n) => Some(NoticeRule {
            working_days: working_days(&p.field("notice").field("working_days"), n.working_days)?,
            counts_toward_limit: n.counts_toward_limit,
        }),
    };
    Ok(Step {
        code: StepCode(text(&p.field("code"), w.code, 0, CODE_CHARS_MAX)?),
        name: w.name,
        tier,
        department,
        action,
        limit,
        notice,
    })
}

// ---------------------------------------------------------------------------------------
// Calendar

impl TryFrom<pb::CalendarRevision> for Calendar {
    type Error = WireError;
    fn try_from(wire: pb::CalendarRevision) -> Result<Self, WireError> {
        let mut years = BTreeMap::new();
        for (i, y) in wire.years.into_iter().enumerate() {
            let p = Path::ROOT.at("years", i);
            let year = calendar_year(&p, y)?;
            if years.contains_key(&year.year) {
                return Err(p
                    .field("year")
                    .invalid(format!("year {} appears twice", year.year)));
            }
            years.insert(year.year, year);
        }
        Ok(Calendar {
            version: wire.version,
            years,
        })
    }
}

impl TryFrom<pb::CalendarYear> for CalendarYear {
    type Error = WireError;
    fn try_from(wire: pb::CalendarYear) -> Result<Self, WireError> {
        calendar_year(&Path::ROOT, wire)
    }
}

impl From<Calendar> for pb::CalendarRevision {
    fn from(calendar: Calendar) -> Self {
        pb::CalendarRevision {
            version: calendar.version,
            years: calendar.years.into_values().map(Into::into).collect(),
        }
    }
}

impl From<CalendarYear> for pb::CalendarYear {
    fn from(year: CalendarYear) -> Self {
        pb::CalendarYear {
            year: year.year,
            days_off: year.days_off.into_iter().map(date_to_wire).collect(),
            working_weekends: year
                .working_weekends
                .into_iter()
                .map(date_to_wire)
                .collect(),
            source: year.source,
        }
    }
}

fn calendar_year(p: &Path<'_>, w: pb::CalendarYear) -> Result<CalendarYear, WireError> {
    let in_year = |name: &'static str, i: usize, d: &pb::Date| -> Result<NaiveDate, WireError> {
        let p = p.at(name, i);
        let date = date(&p, d)?;
        if date.year() != w.year {
            return Err(p.invalid(format!("{date} lies outside year {}", w.year)));
        }
        Ok(date)
    };
    let mut days_off = BTreeSet::new();
    for (i, d) in w.days_off.iter().enumerate() {
        days_off.insert(in_year("days_off", i, d)?);
    }
    let mut working_weekends = BTreeSet::new();
    for (i, d) in w.working_weekends.iter().enumerate() {
        let date = in_year("working_weekends", i, d)?;
        let p = p.at("working_weekends", i);
        if !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Err(p.invalid(format!("{date} is not a Saturday or Sunday")));
        }
        if days_off.contains(&date) {
            return Err(p.invalid(format!("{date} is also a day off")));
        }
        working_weekends.insert(date);
    }
    Ok(CalendarYear {
        year: w.year,
        days_off,
        working_weekends,
        source: w.source,
    })
}

fn date(p: &Path<'_>, d: &pb::Date) -> Result<NaiveDate, WireError> {
    NaiveDate::from_ymd_opt(d.year, d.month, d.day).ok_or_else(|| {
        p.invalid(format!(
            "{:04}-{:02}-{:02} is not a calendar date",
            d.year, d.month, d.day
        ))
    })
}

fn date_to_wire(d: NaiveDate) -> pb::Date {
    pb::Date {
        year: d.year(),
        month: d.month(),
        day: d.day(),
    }
}

// ---------------------------------------------------------------------------------------
// Topology

impl TryFrom<pb::TopologyRevision> for Topology {
    type Error = WireError;
    fn try_from(wire: pb::TopologyRevision) -> Result<Self, WireError> {
        let mut nodes = BTreeMap::new();
        for (i, n) in wire.nodes.into_iter().enumerate() {
            let p = Path::ROOT.at("nodes", i);
            let node = topology_node(&p, n)?;
            if nodes.contains_key(&node.id) {
                return Err(p
                    .field("id")
                    .invalid(format!("node {} appears twice", node.id)));
            }
            nodes.insert(node.id, node);
        }
        Ok(Topology {
            version: wire.version,
            vintage: wire.vintage,
            nodes,
        })
    }
}

impl TryFrom<pb::TopologyNode> for TopologyNode {
    type Error = WireError;
    fn try_from(wire: pb::TopologyNode) -> Result<Self, WireError> {
        topology_node(&Path::ROOT, wire)
    }
}

impl From<Topology> for pb::TopologyRevision {
    fn from(topology: Topology) -> Self {
        pb::TopologyRevision {
            version: topology.version,
            vintage: topology.vintage,
            nodes: topology.nodes.into_values().map(Into::into).collect(),
        }
    }
}

impl From<TopologyNode> for pb::TopologyNode {
    fn from(node: TopologyNode) -> Self {
        pb::TopologyNode {
            id: node.id.to_string(),
            tier: node.tier.as_str().to_owned(),
            parent: node.parent.map(|c| c.to_string()).unwrap_or_default(),
            name: node.name,
            serves: node.serves.iter().map(ToString::to_string).collect(),
        }
    }
}

fn topology_node(p: &Path<'_>, w: pb::TopologyNode) -> Result<TopologyNode, WireError> {
    Ok(TopologyNode {
        id: division(&p.field("id"), &w.id)?,
        tier: w.tier.parse::<Tier>().map_err(|_| {
            p.field("tier")
                .invalid(format!("unknown tier {:?}", w.tier))
        })?,
        parent: if w.parent.is_empty() {
            None
        } else {
            Some(division(&p.field("parent"), &w.parent)?)
        },
        name: w.name,
        serves: w
            .serves
            .iter()
            .enumerate()
            .map(|(i, s)| division(&p.at("serves", i), s))
            .collect::<Result<_, _>>()?,
    })
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A field path, rendered only when an error is made.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    name: &'static str,
    index: Option<usize>,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        name: "",
        index: None,
    };

    fn field(&'a self, name: &'static str) -> Path<'a> {
        Path {
            parent: Some(self),
            name,
            index: None,
        }
    }

    fn at(&'a self, name: &'static str, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            name,
            index: Some(index),
        }
    }

    fn missing(&self) -> WireError {
        WireError::Missing {
            field: self.to_string(),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> WireError {
        WireError::Invalid {
            field: self.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}")?;
            if parent.parent.is_some() || !parent.name.is_empty() {
                f.write_str(".")?;
            }
        }
        f.write_str(self.name)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

fn required<T>(p: &Path<'_>, value: Option<T>) -> Result<T, WireError> {
    value.ok_or_else(|| p.missing())
}

fn division(p: &Path<'_>, s: &str) -> Result<DivisionCode, WireError> {
    DivisionCode::parse(s).map_err(|e| p.invalid(e.to_string()))
}

/// A string of `min..=max` characters.
fn text(p: &Path<'_>, s: String, min: usize, max: usize) -> Result<String, WireError> {
    let chars = s.chars().count();
    if chars < min {
        return Err(p.invalid("must not be empty"));
    }
    if chars > max {
        return Err(p.invalid(format!("{chars} characters, at most {max} allowed")));
    }
    Ok(s)
}

/// A wire `uint32` that must fit a smaller domain integer (`u8`, `u16`).
fn small<T: TryFrom<u32>>(p: &Path<'_>, n: u32) -> Result<T, WireError> {
    T::try_from(n).map_err(|_| {
        p.invalid(format!(
            "{n} is out of range for {}",
            std::any::type_name::<T>()
        ))
    })
}
