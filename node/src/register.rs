//! The register (登记簿): the node's typed state over the narrow `Store`: the append-only
//! event log (in wire form, byte for byte what peers receive), the current state of cases,
//! catalog, calendar and topology, indexes by status, deadline and day, the per-date
//! case-number counter, and the high-water mark.
//!
//! Invariants:
//! * An event, its case state, its index entries and the counter move in one atomic batch.
//! * The log is append-only: positions increase by one, events are never rewritten.
//! * At open, the store must hold the event the high-water mark names, with the same digest;
//!   otherwise the node stops (`BehindMark` / `Corrupt`) rather than serve a store that lost
//!   acknowledged events.
//! * Nothing here logs an applicant's ID number or name.

use std::collections::HashMap;

use chrono::NaiveDate;
use prost::Message;
use serde::{Serialize, de::DeserializeOwned};

use yimen_core::calendar::Calendar;
use yimen_core::case::{Case, CaseEvent, CaseEventBody, CaseStatus};
use yimen_core::catalog::{Catalog, NodeId};
use yimen_core::numbering::{CaseCounter, CaseNumber};
use yimen_core::topology::Topology;
use yimen_proto::pb;

use crate::store::{Batch, Epoch, Mark, Opened, Store, StoreError};

mod inspect;
mod newer;
mod replica;
mod requests;
mod revision;
mod supervision;
pub use inspect::{InspectError, inspect, inspect_store};
pub use replica::{ReceiveError, Received};
pub use revision::{AuthorRule, Publication, Published, Revision, RevisionKind, RevisionProblem};
pub use supervision::{ALARM_OPERATOR, NewQuarantine, QuarantineRecord, RefusedRevision};

/// Cases kept decoded in memory; the rest are read from the store (sled's own cache keeps the
/// hot pages). A day's work at a village counter is tens of cases; this bounds memory at
/// about 2 MiB.
pub const CASE_CACHE_MAX: usize = 512;
/// Schema version of the payloads this node writes.
pub const PAYLOAD_SCHEMA_VERSION: u32 = 1;
/// Most entries one listing returns.
pub const LIST_MAX: usize = 1000;

mod key {
    pub const NODE: &[u8] = b"m/node";
    pub const EPOCH: &[u8] = b"m/epoch";
    pub const COUNTER: &[u8] = b"m/counter";
    pub const CALENDAR: &[u8] = b"m/calendar";
    pub const TOPOLOGY: &[u8] = b"m/topology";
    pub const CATALOG: &[u8] = b"m/catalog";
    pub const REQUEST_SEQ: &[u8] = b"m/request_seq";
    pub const EVENT: &[u8] = b"e/";
    pub const CASE: &[u8] = b"c/";
    pub const CASE_EVENT: &[u8] = b"ce/";
    pub const BY_STATUS: &[u8] = b"is/";
    pub const BY_DUE: &[u8] = b"id/";
    pub const BY_DAY: &[u8] = b"iday/";
    pub const REQUEST: &[u8] = b"rq/";
    pub const OWN_SEQ: &[u8] = b"m/own_seq";
    pub const REFILL: &[u8] = b"m/refill";
    pub const REFILL_OWED: &[u8] = b"m/refill_owed/";
    pub const EVENT_ID: &[u8] = b"x/";
    pub const OUTBOX: &[u8] = b"o/";
    pub const CURSOR: &[u8] = b"k/";
    pub const HELD: &[u8] = b"hb/";
    pub const QUARANTINE: &[u8] = b"q/";
    pub const VOID: &[u8] = b"vd/";
    pub const NEWER: &[u8] = b"ns/";
    pub const REVISION_AT: &[u8] = b"rv/";
    pub const PENDING_REQUEST: &[u8] = b"rp/";
    pub const SEEN_REQUEST: &[u8] = b"rs/";
    pub const REVISION_ALARM: &[u8] = b"ra/";

    pub fn join(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    pub fn day(d: chrono::NaiveDate) -> Vec<u8> {
        d.format("%Y%m%d").to_string().into_bytes()
    }
}

/// Errors of the register: the store's, or content that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("register {what} does not decode: {detail}")]
    Decode { what: String, detail: String },
    #[error("this store belongs to node {stored}, but the node is configured as {configured}")]
    WrongNode { stored: String, configured: String },
}

impl RegisterError {
    pub fn reason_zh(&self) -> String {
        match self {
            RegisterError::Store(e) => e.reason_zh(),
            RegisterError::Decode { .. } => {
                "本机数据无法读取，节点已停止；请联系乡镇管理员从上级节点恢复".to_owned()
            }
            RegisterError::WrongNode { .. } => {
                "数据目录属于另一个节点，请检查配置文件中的节点编号和数据目录".to_owned()
            }
        }
    }
}

/// What a new store starts with.
pub struct Bootstrap {
    pub calendar: Calendar,
    pub topology: Topology,
    pub catalog: Catalog,
}

/// What to do with a store that is behind its own high-water mark (an older copy, or a new
/// store beside the mark of a lost one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Stop with an error naming the problem: a node without a parent has nothing to be
    /// refilled from.
    Stop,
    /// The node has peers to be refilled from: take a new epoch (above every one used, from
    /// this fresh value). With `from_parent`, ask the parent to refill it and number nothing
    /// until then; a new store waits for its parent too, as it may replace a lost one whose
    /// numbers only the parent knows. (A hub's children re-send their tails by themselves.)
    Refill { fresh_epoch: u64, from_parent: bool },
}

/// One entry of the register of a day.
#[derive(Clone, Debug)]
pub struct DayEntry {
    pub position: u64,
    pub event: CaseEvent,
}

pub struct Register<S: Store> {
    store: S,
    pub node: NodeId,
    pub epoch: Epoch,
    next_position: u64,
    last_mark: Mark,
    synced_mark: Mark,
    pub counter: CaseCounter,
    pub calendar: Calendar,
    pub topology: Topology,
    pub catalog: Catalog,
    request_seq: u64,
    /// The origin sequence of the last event this node wrote in its current epoch.
    own_seq: u64,
    /// The node waits for its parent to refill it (it numbers no case meanwhile).
    refill: bool,
    /// Something other than an event (a request, the calendar, a counter) was applied since
    /// the last sync: the next reply must wait for a sync too.
    unsynced_writes: bool,
    /// The newest payload schema this build reads (`PAYLOAD_SCHEMA_VERSION`; set otherwise
    /// only by tests, to play another build).
    readable_schema: u32,
    cases: HashMap<CaseNumber, Case>,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // postcard serialises our plain data types without failing (no maps with non-string
    // keys issues, no unsized streams); an error here would be a programming error, so it is
    // surfaced as an empty value that fails to decode loudly on read rather than a panic.
    postcard::to_allocvec(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, RegisterError> {
    postcard::from_bytes(bytes).map_err(|e| RegisterError::Decode {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

fn status_byte(s: CaseStatus) -> u8 {
    s as u8
}

impl<S: Store> Register<S> {
    /// Opens the register over an opened store: a new store is initialised from `bootstrap`;
    /// an existing one must belong to `node` and hold the event its high-water mark names
    /// (else `recovery` says whether to stop or to take a new epoch and be refilled).
    pub fn open(
        store: S,
        opened: Opened,
        node: NodeId,
        bootstrap: Bootstrap,
        recovery: Recovery,
    ) -> Result<Register<S>, RegisterError> {
        let stored_node = store.get(key::NODE)?;
        let mut reg = Register {
            store,
            node,
            epoch: opened.epoch,
            next_position: 1,
            last_mark: Mark::default(),
            synced_mark: Mark::default(),
            counter: CaseCounter::default(),
            calendar: bootstrap.calendar,
            topology: bootstrap.topology,
            catalog: bootstrap.catalog,
            request_seq: 0,
            own_seq: 0,
            refill: false,
            unsynced_writes: false,
            readable_schema: PAYLOAD_SCHEMA_VERSION,
            cases: HashMap::new(),
        };
        match stored_node {
            None => {
                let mut b = Batch::default();
                b.put(key::NODE, node.to_string().into_bytes());
                b.put(key::EPOCH, opened.epoch.0.to_be_bytes().to_vec());
                b.put(key::COUNTER, encode(&reg.counter));
                b.put(key::CALENDAR, encode(&reg.calendar));
                b.put(key::TOPOLOGY, encode(&reg.topology));
                b.put(key::CATALOG, encode(&reg.catalog));
                reg.store.apply(&b)?;
                let lost = opened.mark.filter(|m| m.position > 0);
                match (recovery, lost) {
                    (Recovery::Stop, Some(m)) => {
                        return Err(StoreError::BehindMark {
                            path: reg.label(),
                            mark_position: m.position,
                            store_position: 0,
                        }
                        .into());
                    }
                    (Recovery::Stop, None) => {}
                    (
                        Recovery::Refill {
                            fresh_epoch,
                            from_parent,
                        },
                        lost,
                    ) => {
                        if let Some(m) = lost {
                            tracing::warn!(node = %node, lost_position = m.position, "a new store beside the high-water mark of a lost one: waiting for its peers to refill it");
                            if m.epoch >= reg.epoch.0 {
                                // The new store's epoch came out at or below the lost one's (a
                                // clock set back): take one above every epoch used.
                                let needs = yimen_core::link::NeedsNewEpoch {
                                    behind: yimen_core::link::Behind::HighWaterMark {
                                        mark: yimen_core::link::Mark {
                                            epoch: m.epoch,
                                            position: m.position,
                                            digest: m.digest,
                                        },
                                        have: 0,
                                    },
                                    floor: m.epoch,
                                };
                                reg.take_new_epoch(&needs, fresh_epoch, from_parent)?;
                            }
                        }
                        if from_parent {
                            reg.start_refill()?;
                        }
                    }
                }
                reg.store.sync(Mark {
                    epoch: reg.epoch.0,
                    ..Mark::default()
                })?;
                reg.unsynced_writes = false;
            }
            Some(bytes) => {
                let stored = String::from_utf8_lossy(&bytes).into_owned();
                if stored != node.to_string() {
                    return Err(RegisterError::WrongNode {
                        stored,
                        configured: node.to_string(),
                    });
                }
                reg.counter = decode("counter", &reg.require(key::COUNTER)?)?;
                reg.calendar = decode("calendar", &reg.require(key::CALENDAR)?)?;
                reg.topology = decode("topology", &reg.require(key::TOPOLOGY)?)?;
                reg.catalog = decode("catalog", &reg.require(key::CATALOG)?)?;
                if let Some(b) = reg.store.get(key::REQUEST_SEQ)? {
                    reg.request_seq = decode("request counter", &b)?;
                }
                if let Some(b) = reg.store.get(key::REFILL)? {
                    reg.refill = decode("refill flag", &b)?;
                }
                if let Some((k, v)) = reg.store.last(key::EVENT)? {
                    let position = position_of(&k)?;
                    reg.next_position = position + 1;
                    reg.last_mark = Mark {
                        epoch: reg.epoch.0,
                        position,
                        digest: *blake3::hash(&v).as_bytes(),
                    };
                }
                // Stores written before origin sequences were counted apart numbered their
                // own events by position.
                reg.own_seq = match reg.store.get(key::OWN_SEQ)? {
                    Some(b) => decode("own sequence", &b)?,
                    None => reg.last_mark.position,
                };
                reg.synced_mark = reg.last_mark;
                let mark = opened.mark.map(|m| yimen_core::link::Mark {
                    epoch: m.epoch,
                    position: m.position,
                    digest: m.digest,
                });
                let behind = yimen_core::link::check_store(&reg, mark.as_ref(), None);
                match (recovery, behind) {
                    (
                        Recovery::Refill {
                            fresh_epoch,
                            from_parent,
                        },
                        Err(needs),
                    ) => {
                        reg.take_new_epoch(&needs, fresh_epoch, from_parent)?;
                    }
                    _ => reg.check_mark(opened.mark)?,
                }
                // Events this build could not read before (an upgrade since): apply them now.
                reg.catch_up_newer()?;
            }
        }
        Ok(reg)
    }

    fn require(&self, k: &[u8]) -> Result<Vec<u8>, RegisterError> {
        self.store.get(k)?.ok_or_else(|| RegisterError::Decode {
            what: String::from_utf8_lossy(k).into_owned(),
            detail: "missing".to_owned(),
        })
    }

    /// The store must hold the acknowledged event the mark names, unchanged.
    fn check_mark(&self, mark: Option<Mark>) -> Result<(), RegisterError> {
        let Some(mark) = mark else {
            if self.last_mark.position > 0 {
                return Err(StoreError::Corrupt {
                    path: self.label(),
                    detail: "the store holds events but its high-water mark is missing".to_owned(),
                }
                .into());
            }
            return Ok(());
        };
        if mark.epoch != self.epoch.0 && (mark.position > 0 || self.last_mark.position > 0) {
            return Err(StoreError::Corrupt {
                path: self.label(),
                detail: format!(
                    "the high-water mark was written under epoch {}, but the store has epoch {}: it is a copy from before the node took a new epoch",
                    Epoch(mark.epoch),
                    self.epoch
                ),
            }
            .into());
        }
        if mark.position == 0 {
            return Ok(());
        }
        if self.last_mark.position < mark.position {
            return Err(StoreError::BehindMark {
                path: self.label(),
                mark_position: mark.position,
                store_position: self.last_mark.position,
            }
            .into());
        }
        let at =
            self.store
                .get(&event_key(mark.position))?
                .ok_or_else(|| StoreError::BehindMark {
                    path: self.label(),
                    mark_position: mark.position,
                    store_position: self.last_mark.position,
                })?;
        if *blake3::hash(&at).as_bytes() != mark.digest {
            return Err(StoreError::Corrupt {
                path: self.label(),
                detail: format!(
                    "the event at the high-water mark (position {}) differs from the one acknowledged",
                    mark.position
                ),
            }
            .into());
        }
        Ok(())
    }

    fn label(&self) -> String {
        format!("node {}", self.node)
    }

    /// Position of the last event appended (0 when none).
    pub fn last_position(&self) -> u64 {
        self.next_position - 1
    }

    /// Whether events were applied since the last sync.
    pub fn dirty(&self) -> bool {
        self.unsynced_writes || self.last_mark != self.synced_mark
    }

    /// Makes everything applied durable (group commit: one call covers a burst).
    pub fn sync(&mut self) -> Result<(), RegisterError> {
        self.store.sync(self.last_mark)?;
        self.synced_mark = self.last_mark;
        self.unsynced_writes = false;
        Ok(())
    }

    /// A case, from the cache or the store.
    pub fn case(&mut self, number: &CaseNumber) -> Result<Option<Case>, RegisterError> {
        if let Some(c) = self.cases.get(number) {
            return Ok(Some(c.clone()));
        }
        let Some(bytes) = self
            .store
            .get(&key::join(&[key::CASE, number.to_string().as_bytes()]))?
        else {
            return Ok(None);
        };
        let case: Case = decode("case", &bytes)?;
        self.cache(case.clone());
        Ok(Some(case))
    }

    fn cache(&mut self, case: Case) {
        if self.cases.len() >= CASE_CACHE_MAX {
            // Cheap bound: drop everything; hot cases come back on their next read.
            self.cases.clear();
        }
        self.cases.insert(case.number, case);
    }

    /// Appends a case event with the case's new state, its indexes and (for an acceptance)
    /// the advanced counter, in one atomic batch. Not durable until `sync`.
    pub fn append_case_event(
        &mut self,
        event: &CaseEvent,
        before: Option<&Case>,
        after: &Case,
    ) -> Result<u64, RegisterError> {
        let payload: pb::CaseEventPayload = event.into();
        let position = self.next_position;
        let wire = pb::Event {
            envelope: Some(pb::EventEnvelope {
                id: Some(pb::EventId {
                    origin: self.node.to_string(),
                    epoch: self.epoch.0,
                    seq: self.own_seq + 1,
                }),
                case_id: event.case.to_string(),
                case_seq: event.seq,
                r#type: pb::EventType::CaseEvent as i32,
                schema_version: PAYLOAD_SCHEMA_VERSION,
                audience: Some(pb::Audience {
                    subtree: String::new(),
                    members: after.audience.iter().map(ToString::to_string).collect(),
                }),
                signature: None,
                materials: Vec::new(),
                author: event.operator.clone(),
            }),
            payload: payload.encode_to_vec(),
        }
        .encode_to_vec();
        let mut b = Batch::default();
        self.case_ops(&mut b, position, event, before, after);
        let mut copies = Vec::new();
        match before {
            None => b.put(key::COUNTER, encode(&self.counter)),
            Some(before) => {
                copies = self.backfill_ops(&mut b, after, &before.audience, position + 1, None)?;
            }
        }
        let position = self.append_own(wire, b)?;
        self.advance_past_copies(&copies);
        self.cache(after.clone());
        if after.custodian.node != self.node {
            self.hand_on_pending(after)?;
        }
        if matches!(event.body, CaseEventBody::Reassigned { .. }) {
            self.pass_on_seen(after)?;
        }
        Ok(position)
    }

    /// The case-state part of a case event's batch: the state, the case-event index, the
    /// status, deadline and day indexes.
    fn case_ops(
        &self,
        b: &mut Batch,
        position: u64,
        event: &CaseEvent,
        before: Option<&Case>,
        after: &Case,
    ) {
        let number = event.case.to_string();
        b.put(
            key::join(&[key::CASE_EVENT, number.as_bytes(), &event.seq.to_be_bytes()]),
            position.to_be_bytes().to_vec(),
        );
        if let Some(request) = event.body.decides_request() {
            b.delete(requests::pending_key(&event.case, request));
            b.delete(requests::seen_key(&event.case, request));
        }
        b.put(key::join(&[key::CASE, number.as_bytes()]), encode(after));
        if let Some(before) = before {
            b.delete(status_key(before));
            b.delete(due_key(before));
        }
        b.put(status_key(after), Vec::new());
        if !after.status.is_terminal() {
            b.put(due_key(after), Vec::new());
        }
        b.put(
            key::join(&[
                key::BY_DAY,
                &key::day(event.at.date()),
                &position.to_be_bytes(),
            ]),
            number.into_bytes(),
        );
    }

    /// The next request id of this node, persisted at once (with the group's sync) so that
    /// no id is issued twice, whatever becomes of the request.
    pub fn next_request_seq(&mut self) -> Result<u64, RegisterError> {
        let next = self.request_seq + 1;
        let mut b = Batch::default();
        b.put(key::REQUEST_SEQ, encode(&next));
        self.store.apply(&b)?;
        self.request_seq = next;
        self.unsynced_writes = true;
        Ok(next)
    }

    /// Persists the calendar (after a revision).
    pub fn put_calendar(&mut self, calendar: Calendar) -> Result<(), RegisterError> {
        let mut b = Batch::default();
        b.put(key::CALENDAR, encode(&calendar));
        self.store.apply(&b)?;
        self.unsynced_writes = true;
        self.calendar = calendar;
        Ok(())
    }

    /// Cases with this status, in case-number order.
    pub fn cases_by_status(&mut self, status: CaseStatus) -> Result<Vec<Case>, RegisterError> {
        let prefix = key::join(&[key::BY_STATUS, &[status_byte(status)]]);
        let keys = self.store.scan(&prefix, None, LIST_MAX)?;
        self.cases_for(keys.into_iter().map(|(k, _)| k[prefix.len()..].to_vec()))
    }

    /// Open cases due on or before `day`, earliest first.
    pub fn cases_due_by(&mut self, day: NaiveDate) -> Result<Vec<Case>, RegisterError> {
        let limit = key::day(day);
        let keys = self.store.scan(key::BY_DUE, None, LIST_MAX)?;
        let numbers: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|(k, _)| k[key::BY_DUE.len()..].to_vec())
            .take_while(|rest| rest.len() > 8 && rest[..8] <= limit[..])
            .map(|rest| rest[8..].to_vec())
            .collect();
        self.cases_for(numbers.into_iter())
    }

    /// Every case held, in case-number order (bounded by `LIST_MAX`).
    pub fn all_cases(&mut self) -> Result<Vec<Case>, RegisterError> {
        let entries = self.store.scan(key::CASE, None, LIST_MAX)?;
        entries
            .into_iter()
            .map(|(_, v)| decode::<Case>("case", &v))
            .collect()
    }

    fn cases_for(
        &mut self,
        numbers: impl Iterator<Item = Vec<u8>>,
    ) -> Result<Vec<Case>, RegisterError> {
        let mut out = Vec::new();
        for n in numbers {
            let s = String::from_utf8_lossy(&n).into_owned();
            let number = CaseNumber::parse(&s).map_err(|e| RegisterError::Decode {
                what: "case index".to_owned(),
                detail: e.to_string(),
            })?;
            if let Some(c) = self.case(&number)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The register of a day: every case event written on it, in log order.
    pub fn day(&mut self, day: NaiveDate) -> Result<Vec<DayEntry>, RegisterError> {
        let prefix = key::join(&[key::BY_DAY, &key::day(day)]);
        let mut out = Vec::new();
        for (k, _) in self.store.scan(&prefix, None, LIST_MAX)? {
            let position = u64::from_be_bytes(k[prefix.len()..].try_into().map_err(|_| {
                RegisterError::Decode {
                    what: "day index".to_owned(),
                    detail: "bad position".to_owned(),
                }
            })?);
            if let Some(event) = self.event(position)? {
                out.push(DayEntry { position, event });
            }
        }
        Ok(out)
    }

    /// The case event at a log position, decoded from its wire form.
    pub fn event(&self, position: u64) -> Result<Option<CaseEvent>, RegisterError> {
        let Some(bytes) = self.store.get(&event_key(position))? else {
            return Ok(None);
        };
        let wire = pb::Event::decode(bytes.as_slice()).map_err(|e| RegisterError::Decode {
            what: format!("event {position}"),
            detail: e.to_string(),
        })?;
        let payload = pb::CaseEventPayload::decode(wire.payload.as_slice()).map_err(|e| {
            RegisterError::Decode {
                what: format!("event {position} payload"),
                detail: e.to_string(),
            }
        })?;
        CaseEvent::try_from(payload)
            .map(Some)
            .map_err(|e| RegisterError::Decode {
                what: format!("event {position} payload"),
                detail: e.to_string(),
            })
    }

    /// The raw wire bytes of the event at a position (what peers receive).
    pub fn raw_event(&self, position: u64) -> Result<Option<Vec<u8>>, RegisterError> {
        Ok(self.store.get(&event_key(position))?)
    }

    pub fn size_on_disk(&self) -> Result<u64, RegisterError> {
        Ok(self.store.size_on_disk()?)
    }

    /// The store, to read (a backup copies it whole: `crate::backup`). Writes go through
    /// the register only.
    pub fn store(&self) -> &S {
        &self.store
    }
}

fn event_key(position: u64) -> Vec<u8> {
    key::join(&[key::EVENT, &position.to_be_bytes()])
}

fn position_of(k: &[u8]) -> Result<u64, RegisterError> {
    k.get(key::EVENT.len()..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| RegisterError::Decode {
            what: "event key".to_owned(),
            detail: "not 8 bytes".to_owned(),
        })
}

fn status_key(c: &Case) -> Vec<u8> {
    key::join(&[
        key::BY_STATUS,
        &[status_byte(c.status)],
        c.number.to_string().as_bytes(),
    ])
}

fn due_key(c: &Case) -> Vec<u8> {
    key::join(&[
        key::BY_DUE,
        &key::day(c.deadline.due),
        c.number.to_string().as_bytes(),
    ])
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    fn beside_lost_mark(store_epoch: u64, lost_epoch: u64) -> Register<MemStore> {
        let node: NodeId = "430421105204".parse().unwrap();
        let (store, opened) = MemStore::new(Epoch(store_epoch));
        let opened = Opened {
            mark: Some(Mark {
                epoch: lost_epoch,
                position: 3,
                digest: [7; 32],
            }),
            ..opened
        };
        let recovery = Recovery::Refill {
            fresh_epoch: store_epoch,
            from_parent: true,
        };
        Register::open(
            store,
            opened,
            node,
            crate::server::bootstrap(node),
            recovery,
        )
        .unwrap()
    }

    #[test]
    fn a_new_store_beside_a_lost_mark_takes_an_epoch_above_the_lost_one() {
        let reg = beside_lost_mark(5, 1 << 40);
        assert!(reg.epoch.0 > 1 << 40, "epoch {}", reg.epoch);
        assert!(reg.refilling());
        let reg = beside_lost_mark(1 << 40, 5);
        assert_eq!(reg.epoch, Epoch(1 << 40), "already above: kept");
        assert!(reg.refilling());
    }
}
