//! The register's side of replication (DESIGN.md "Events: one log, routed on a tree"): the
//! identity index that deduplicates events, the per-peer outbox index, the cursors a node
//! holds of its peers' streams, applying events received from a peer (stored byte for byte,
//! case state through a durable per-case hold-back), and taking a new epoch.
//!
//! Invariants:
//! * An event and its identity-index entry, its outbox entries and its case-state change move
//!   in one batch; the cursor of a received batch is written after its events (a crash in
//!   between states an older cursor: the sender re-sends, the identity index drops them).
//! * Outbox entries are written when an event is applied, for the parent (events authored in
//!   this node's subtree) and each child whose subtree holds an audience member, except the
//!   peer the event came from; a child's own subtree's events are entered for it marked
//!   "refill only", and so is, for the parent, every event the parent sent (a parent that
//!   later loses its store, or a root restored from a backup, needs them again).
//! * A case's events change its state in case sequence; a later one waits under `hb/`
//!   (durable, like every received event) until its predecessor arrives.
//! * An event whose case change fails a domain check is kept and relayed (hubs route on the
//!   envelope) but quarantines its case here; nothing about the applicant is logged.
//! * A node being refilled numbers no case, and raises its counter above every number of its
//!   own it receives back (and its request counter above every request id of its own).

use std::collections::BTreeSet;

use prost::Message;

use yimen_core::case::{Case, CaseEvent, CaseEventBody, Rules};
use yimen_core::catalog::NodeId;
use yimen_core::division::DivisionCode;
use yimen_core::link::{Cursor, Digest, EventId, LogView, NeedsNewEpoch, WireEvent};
use yimen_core::numbering::CaseNumber;
use yimen_proto::pb;

use super::supervision::{NewQuarantine, RefusedRevision};
use super::{Register, RegisterError, decode, encode, event_key, key};
use crate::store::{Batch, Epoch, Mark, Store};

/// An outbox entry delivered on every connection.
const ROUTE_ALWAYS: u8 = 0;
/// An outbox entry delivered only to a child being refilled (its own subtree's events).
const ROUTE_REFILL_ONLY: u8 = 1;

/// What applying a received batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Events stored (new identities).
    pub stored: usize,
    /// Events dropped: their identity was already held.
    pub duplicates: usize,
    /// Case events waiting for a predecessor.
    pub held: usize,
    /// Case events whose case change failed a domain check.
    pub quarantined: usize,
    /// Cases handed to this node (custodian here, not yet signed for): the node signs for
    /// them (签收).
    pub arrived: Vec<CaseNumber>,
    /// Earlier events copied for a child whose subtree joined a case's audience.
    pub backfilled: usize,
    /// Cases quarantined here by this batch (a received event failed a domain check, or two
    /// events claim one case sequence): the node raises an alarm for each.
    pub alarms: Vec<NewQuarantine>,
    /// Requests that arrived for cases this node holds as custodian (now pending).
    pub requests: usize,
    /// Requests addressed here for cases whose custody has moved on: the node passes each to
    /// the custodian named.
    pub pass_along: Vec<(yimen_core::case::Request, yimen_core::routing::Custodian)>,
    /// Revisions refused here (kept and relayed, not applied): the node raises an alarm for
    /// each.
    pub refused_revisions: Vec<RefusedRevision>,
}

/// Why a received batch was refused before anything was stored.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("event at position {position}: its digest does not match its bytes")]
    Digest { position: u64 },
    #[error("event at position {position} is not an Event message: {detail}")]
    Malformed { position: u64, detail: String },
    #[error("event at position {position}: its identity differs from its envelope's")]
    IdMismatch { position: u64 },
    #[error(transparent)]
    Register(#[from] RegisterError),
}

impl From<crate::store::StoreError> for ReceiveError {
    fn from(e: crate::store::StoreError) -> Self {
        ReceiveError::Register(e.into())
    }
}

/// The routing part of an envelope.
pub(super) struct Envelope {
    pub(super) id: EventId,
    pub(super) case: Option<(String, u64)>,
    pub(super) kind: i32,
    pub(super) schema_version: u32,
    pub(super) audience_subtree: Option<DivisionCode>,
    pub(super) audience_members: Vec<DivisionCode>,
}

fn envelope_of(position: u64, bytes: &[u8]) -> Result<(Envelope, pb::Event), ReceiveError> {
    let malformed = |detail: String| ReceiveError::Malformed { position, detail };
    let event = pb::Event::decode(bytes).map_err(|e| malformed(e.to_string()))?;
    let env = event
        .envelope
        .as_ref()
        .ok_or_else(|| malformed("no envelope".to_owned()))?;
    let id = env
        .id
        .as_ref()
        .ok_or_else(|| malformed("no envelope.id".to_owned()))?;
    let audience = env.audience.clone().unwrap_or_default();
    let envelope = Envelope {
        id: EventId {
            origin: id.origin.clone(),
            epoch: id.epoch,
            seq: id.seq,
        },
        case: (!env.case_id.is_empty()).then(|| (env.case_id.clone(), env.case_seq)),
        kind: env.r#type,
        schema_version: env.schema_version,
        audience_subtree: DivisionCode::parse(&audience.subtree).ok(),
        audience_members: audience
            .members
            .iter()
            .filter_map(|m| DivisionCode::parse(m).ok())
            .collect(),
    };
    Ok((envelope, event))
}

fn id_key(id: &EventId) -> Vec<u8> {
    key::join(&[
        key::EVENT_ID,
        id.origin.as_bytes(),
        &id.epoch.to_be_bytes(),
        &id.seq.to_be_bytes(),
    ])
}

/// An outbox entry delivered on every connection, with the event's length (lag is counted
/// from the index alone).
pub(super) fn outbox_entry(len: usize) -> Vec<u8> {
    outbox_value(ROUTE_ALWAYS, len)
}

fn outbox_value(flag: u8, len: usize) -> Vec<u8> {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    vec![flag, len[0], len[1], len[2], len[3]]
}

/// An outbox entry's key: `o/<peer>/<position>`.
pub(super) fn outbox_key(peer: NodeId, position: u64) -> Vec<u8> {
    key::join(&[
        key::OUTBOX,
        peer.to_string().as_bytes(),
        &position.to_be_bytes(),
    ])
}

fn refill_owed_key(peer: NodeId) -> Vec<u8> {
    key::join(&[key::REFILL_OWED, peer.to_string().as_bytes()])
}

fn cursor_key(peer: NodeId) -> Vec<u8> {
    key::join(&[key::CURSOR, peer.to_string().as_bytes()])
}

pub(super) fn held_key(case: &str, seq: u64) -> Vec<u8> {
    key::join(&[key::HELD, case.as_bytes(), b"/", &seq.to_be_bytes()])
}

fn digest(bytes: &[u8]) -> Digest {
    *blake3::hash(bytes).as_bytes()
}

impl<S: Store> Register<S> {
    /// Whether `node` is `root` or below it: by the topology's parent links, or by division
    /// codes for a node the topology does not name.
    fn within(&self, node: NodeId, root: NodeId) -> bool {
        if self.topology.node(node).is_some() {
            self.topology.is_in_subtree(node, root)
        } else {
            node.is_within(root)
        }
    }

    /// This node's parent in the topology.
    pub fn parent(&self) -> Option<NodeId> {
        self.topology.node(self.node).and_then(|n| n.parent)
    }

    /// This node's children in the topology.
    pub fn children(&self) -> Vec<NodeId> {
        self.topology.children(self.node).map(|n| n.id).collect()
    }

    /// The outbox entries of an event: the parent for what was authored in this subtree,
    /// each child whose subtree holds an audience member; never the peer it came from,
    /// except as "refill only".
    fn routes(&self, env: &Envelope, from: Option<NodeId>) -> Vec<(NodeId, u8)> {
        let mut out = Vec::new();
        let origin = DivisionCode::parse(&env.id.origin).ok();
        if let Some(parent) = self.parent() {
            if from == Some(parent) {
                // Every event from the parent, whoever wrote it: the parent had it, but may
                // lose it with its store (a root restored from a backup older than the events
                // it wrote since); a sender whose parent lost its stream sends these too
                // (`sync.rs`, the child's connect), so this subtree gives back what only it
                // still holds.
                out.push((parent, ROUTE_REFILL_ONLY));
            } else if origin.is_some_and(|o| self.within(o, self.node)) {
                out.push((parent, ROUTE_ALWAYS));
            }
        }
        for child in self.children() {
            let own = origin.is_some_and(|o| self.within(o, child));
            let member = env.audience_members.iter().any(|m| self.within(*m, child))
                || env
                    .audience_subtree
                    .is_some_and(|s| self.within(child, s) || self.within(s, child));
            if own || from == Some(child) {
                if member || own {
                    out.push((child, ROUTE_REFILL_ONLY));
                }
            } else if member {
                out.push((child, ROUTE_ALWAYS));
            }
        }
        out
    }

    /// Puts an event's log entry, identity index and outbox entries into `b`.
    fn log_ops(
        &self,
        b: &mut Batch,
        position: u64,
        bytes: Vec<u8>,
        env: &Envelope,
        from: Option<NodeId>,
    ) {
        b.put(id_key(&env.id), position.to_be_bytes().to_vec());
        // The entry carries the event's length, so lag is counted from the index alone.
        for (peer, flag) in self.routes(env, from) {
            b.put(outbox_key(peer, position), outbox_value(flag, bytes.len()));
        }
        b.put(event_key(position), bytes);
    }

    /// Appends an event this node wrote (its wire bytes): log, identity and outbox entries,
    /// plus `extra` (the case state), in one batch. Returns the position.
    pub(super) fn append_own(&mut self, wire: Vec<u8>, mut b: Batch) -> Result<u64, RegisterError> {
        let position = self.next_position;
        let (env, _) = envelope_of(position, &wire).map_err(|e| RegisterError::Decode {
            what: "own event".to_owned(),
            detail: e.to_string(),
        })?;
        let d = digest(&wire);
        self.log_ops(&mut b, position, wire, &env, None);
        b.put(key::OWN_SEQ, encode(&env.id.seq));
        self.store.apply(&b)?;
        self.own_seq = env.id.seq;
        self.next_position += 1;
        self.last_mark = Mark {
            epoch: self.epoch.0,
            position,
            digest: d,
        };
        Ok(position)
    }

    /// The cursor this node holds durably of `peer`'s stream.
    pub fn cursor(&self, peer: NodeId) -> Result<Option<Cursor>, RegisterError> {
        self.store
            .get(&cursor_key(peer))?
            .map(|b| decode::<Cursor>("link cursor", &b))
            .transpose()
    }

    /// Whether an event of this identity is held.
    pub fn holds(&self, id: &EventId) -> Result<bool, RegisterError> {
        Ok(self.store.get(&id_key(id))?.is_some())
    }

    /// Outbox entries for `peer` at positions from `from` on, durable ones only, at most
    /// `max_events` and about `max_bytes`; entries marked "refill only" are included only
    /// when `refill`.
    pub fn outbox(
        &self,
        peer: NodeId,
        from: u64,
        refill: bool,
        max_events: usize,
        max_bytes: u64,
    ) -> Result<Vec<WireEvent>, RegisterError> {
        Ok(self
            .outbox_scan(peer, from, refill, max_events, max_bytes)?
            .0)
    }

    /// [`Register::outbox`], also returning the last position examined: a caller that got
    /// nothing may start its next read for the same `from` after it (entries skipped as
    /// "refill only" are not scanned again and again).
    pub fn outbox_scan(
        &self,
        peer: NodeId,
        from: u64,
        refill: bool,
        max_events: usize,
        max_bytes: u64,
    ) -> Result<(Vec<WireEvent>, u64), RegisterError> {
        let prefix = key::join(&[key::OUTBOX, peer.to_string().as_bytes()]);
        let durable = self.synced_mark.position;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut scanned = from.saturating_sub(1);
        let mut after = (from > 1).then(|| outbox_key(peer, from - 1));
        'scan: loop {
            let page = self
                .store
                .scan(&prefix, after.as_deref(), max_events.max(64))?;
            let Some((last_key, _)) = page.last() else {
                break;
            };
            after = Some(last_key.clone());
            for (k, flag) in &page {
                let position = k
                    .get(prefix.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| RegisterError::Decode {
                        what: "outbox key".to_owned(),
                        detail: "not 8 bytes".to_owned(),
                    })?;
                if position > durable || out.len() >= max_events || bytes >= max_bytes {
                    break 'scan;
                }
                scanned = position;
                if flag.first() == Some(&ROUTE_REFILL_ONLY) && !refill {
                    continue;
                }
                let Some(raw) = self.store.get(&event_key(position))? else {
                    return Err(RegisterError::Decode {
                        what: format!("event {position}"),
                        detail: "in the outbox but not in the log".to_owned(),
                    });
                };
                let (env, _) = envelope_of(position, &raw).map_err(|e| RegisterError::Decode {
                    what: format!("event {position}"),
                    detail: e.to_string(),
                })?;
                bytes = bytes.saturating_add(raw.len() as u64);
                out.push(WireEvent {
                    id: env.id,
                    position,
                    digest: digest(&raw),
                    bytes: raw,
                });
            }
        }
        if out.is_empty() {
            // Every entry up to the durable end was examined (new ones come after it).
            scanned = scanned.max(durable);
        }
        Ok((out, scanned))
    }

    /// The position of the last entry of `peer`'s outbox (refill-only entries included); 0
    /// when empty.
    pub fn outbox_end(&self, peer: NodeId) -> Result<u64, RegisterError> {
        let prefix = key::join(&[key::OUTBOX, peer.to_string().as_bytes()]);
        Ok(self
            .store
            .last(&prefix)?
            .and_then(|(k, _)| k.get(prefix.len()..).and_then(|b| b.try_into().ok()))
            .map_or(0, u64::from_be_bytes))
    }

    /// Events and bytes of `peer`'s outbox after position `after` (durable or not): the lag
    /// a link reports.
    pub fn outbox_lag(
        &self,
        peer: NodeId,
        after: u64,
        refill: bool,
    ) -> Result<(u64, u64), RegisterError> {
        let prefix = key::join(&[key::OUTBOX, peer.to_string().as_bytes()]);
        let mut start = Some(outbox_key(peer, after));
        let (mut events, mut bytes) = (0u64, 0u64);
        loop {
            let page = self.store.scan(&prefix, start.as_deref(), 1024)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = Some(last.clone());
            for (k, flag) in &page {
                if flag.first() == Some(&ROUTE_REFILL_ONLY) && !refill {
                    continue;
                }
                let position = k
                    .get(prefix.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                events += 1;
                match flag.get(1..5).and_then(|b| b.try_into().ok()) {
                    Some(len) => bytes += u64::from(u32::from_be_bytes(len)),
                    // An entry written before lengths were recorded.
                    None => {
                        if let Some(raw) = self.store.get(&event_key(position))? {
                            bytes += raw.len() as u64;
                        }
                    }
                }
            }
        }
        Ok((events, bytes))
    }

    /// Applies events received from `peer` (new identities, in the sender's order), then
    /// records `cursor` as where this node stands in `peer`'s stream. Checked whole first: a
    /// bad digest or envelope refuses the batch and stores nothing. Not durable until `sync`.
    pub fn receive(
        &mut self,
        peer: NodeId,
        events: Vec<WireEvent>,
        cursor: Cursor,
    ) -> Result<Received, ReceiveError> {
        let mut checked = Vec::with_capacity(events.len());
        for e in events {
            if digest(&e.bytes) != e.digest {
                return Err(ReceiveError::Digest {
                    position: e.position,
                });
            }
            let (env, event) = envelope_of(e.position, &e.bytes)?;
            if env.id != e.id {
                return Err(ReceiveError::IdMismatch {
                    position: e.position,
                });
            }
            checked.push((e, env, event));
        }
        let mut report = Received::default();
        for (e, env, event) in checked {
            if self.holds(&env.id)? {
                report.duplicates += 1;
                continue;
            }
            let position = self.next_position;
            // The event, its identity entry, its outbox entries and its case-state change in
            // one batch: were they apart, a crash between them would leave an event whose
            // identity is held (a re-sent copy is dropped as a duplicate) but whose change
            // never reaches its case.
            let mut b = Batch::default();
            let len = e.bytes.len();
            self.log_ops(&mut b, position, e.bytes, &env, Some(peer));
            let mut applied = None;
            let mut copies = Vec::new();
            if let Some((case, seq)) = &env.case {
                let audience_before = match CaseNumber::parse(case) {
                    Ok(n) => self.case(&n)?.map(|c| c.audience).unwrap_or_default(),
                    Err(_) => BTreeSet::new(),
                };
                self.raise_counter_for(&mut b, case);
                // A newer payload schema is held like any case event: `apply_held` stops
                // before it, and the case's later events wait behind it until an upgrade.
                if env.kind == pb::EventType::CaseEvent as i32 {
                    let (offer, after) = self.offer_case_event(&mut b, case, *seq, position)?;
                    match offer {
                        Offer::Applied | Offer::Void => {}
                        Offer::Held => report.held += 1,
                        Offer::Quarantined(new) => {
                            report.quarantined += 1;
                            if let Some((seq, reason)) = new {
                                report
                                    .alarms
                                    .extend(self.new_quarantine(case, seq, reason, &env));
                            }
                        }
                    }
                    if let Some(after) = &after {
                        copies = self.after_change(
                            &mut b,
                            after,
                            &audience_before,
                            position + 1,
                            Some(peer),
                            &mut report,
                        )?;
                    }
                    applied = after;
                }
            }
            // Quarantine alarms and county decisions (supervision.rs): their changes join the
            // event's batch too.
            self.offer_request(&mut b, &env, &event, &mut report)?;
            if env.kind != pb::EventType::CaseEvent as i32 {
                let (after, more) = self.offer_supervision(
                    &mut b,
                    &env,
                    &event,
                    position + 1,
                    Some(peer),
                    &mut report,
                )?;
                applied = after;
                copies = more;
            }
            // Catalog, calendar and topology revisions (revision.rs): their state change joins
            // the event's batch, and reaches memory once the batch is applied.
            let revised = self.offer_revision(&mut b, &env, position, &event, &mut report);
            if let Some(revised) = &revised {
                let subtree = env.audience_subtree.unwrap_or(self.node);
                self.revision_ops(&mut b, revised, position, subtree, len)?;
            }
            self.store.apply(&b)?;
            if let Some(revised) = revised {
                self.commit_revision(revised);
            }
            if let Some(after) = applied {
                self.cache(after);
            }
            self.next_position += 1;
            self.last_mark = Mark {
                epoch: self.epoch.0,
                position,
                digest: e.digest,
            };
            self.advance_past_copies(&copies);
            report.backfilled += copies.len();
            report.stored += 1;
        }
        let mut b = Batch::default();
        b.put(cursor_key(peer), encode(&cursor));
        self.store.apply(&b)?;
        self.unsynced_writes = true;
        Ok(report)
    }

    /// One of this node's own case numbers came back (from its parent, after a refill): never
    /// number at or below it again, whatever becomes of the event (applied, held for a
    /// predecessor, or quarantined).
    fn raise_counter_for(&mut self, b: &mut Batch, case: &str) {
        let Ok(number) = CaseNumber::parse(case) else {
            return;
        };
        if number.node != self.node {
            return;
        }
        let before = self.counter;
        self.counter.raise_above(&number);
        if self.counter != before {
            b.put(key::COUNTER, encode(&self.counter));
        }
    }

    /// A request this node raised came back inside a case event (from its parent, after a
    /// refill): never issue its id again.
    fn raise_request_seq_for(&mut self, b: &mut Batch, body: &CaseEventBody) {
        if let Some(r) = body.decides_request()
            && r.origin == self.node
            && r.seq > self.request_seq
        {
            self.request_seq = r.seq;
            b.put(key::REQUEST_SEQ, encode(&r.seq));
        }
    }

    /// After a case changed by something received: a case handed here is listed for its
    /// receipt, and a child whose subtree joined the audience gets the history (its copies'
    /// positions and digests are returned).
    pub(super) fn after_change(
        &self,
        b: &mut Batch,
        after: &Case,
        audience_before: &BTreeSet<NodeId>,
        first: u64,
        from: Option<NodeId>,
        report: &mut Received,
    ) -> Result<Vec<(u64, Digest)>, RegisterError> {
        if after.custodian.node == self.node
            && !after.received
            && !report.arrived.contains(&after.number)
        {
            report.arrived.push(after.number);
        }
        self.backfill_ops(b, after, audience_before, first, from)
    }

    /// When `after`'s audience gained a member in the subtree of a child that held no member
    /// before (a handoff across subtrees, a notice delivered to the home village), the child
    /// gets the case's whole history: every earlier event of the case is copied, byte for
    /// byte (same identity), to the log at positions from `first`, with an outbox entry for
    /// that child only. The copies go into `b`, beside the event that grew the audience, so a
    /// crash keeps both or neither. Returns the copies' positions and digests.
    pub(super) fn backfill_ops(
        &self,
        b: &mut Batch,
        after: &Case,
        audience_before: &BTreeSet<NodeId>,
        first: u64,
        from: Option<NodeId>,
    ) -> Result<Vec<(u64, Digest)>, RegisterError> {
        let joined: Vec<NodeId> = self
            .children()
            .into_iter()
            .filter(|c| Some(*c) != from)
            .filter(|c| after.audience.iter().any(|m| self.within(*m, *c)))
            .filter(|c| !audience_before.iter().any(|m| self.within(*m, *c)))
            .collect();
        if joined.is_empty() || audience_before.is_empty() {
            return Ok(Vec::new());
        }
        let number = after.number.to_string();
        let mut copies = Vec::new();
        // Every event of the case but the last (the one that grew the audience, routed to
        // the child by its own outbox entry).
        for seq in 1..after.last_seq() {
            let k = key::join(&[key::CASE_EVENT, number.as_bytes(), &seq.to_be_bytes()]);
            let Some(at) = self.get_through(b, &k)? else {
                continue;
            };
            let Some(at) = at.as_slice().try_into().ok().map(u64::from_be_bytes) else {
                continue;
            };
            let Some(bytes) = self.get_through(b, &event_key(at))? else {
                continue;
            };
            let position = first + copies.len() as u64;
            for child in &joined {
                b.put(outbox_key(*child, position), outbox_entry(bytes.len()));
            }
            copies.push((position, digest(&bytes)));
            b.put(event_key(position), bytes);
        }
        if !copies.is_empty() {
            tracing::info!(case = %after.number, children = ?joined, events = copies.len(), "history copied for a new audience member");
        }
        Ok(copies)
    }

    /// A value as it will be once `b` is applied: the batch's last put or delete of the key,
    /// else the store's.
    pub(super) fn get_through(
        &self,
        b: &Batch,
        k: &[u8],
    ) -> Result<Option<Vec<u8>>, RegisterError> {
        for op in b.ops.iter().rev() {
            match op {
                crate::store::Op::Put(key, value) if key.as_slice() == k => {
                    return Ok(Some(value.clone()));
                }
                crate::store::Op::Delete(key) if key.as_slice() == k => return Ok(None),
                _ => {}
            }
        }
        Ok(self.store.get(k)?)
    }

    /// The log grew by the copies written after an event: move the end and the mark past them.
    pub(super) fn advance_past_copies(&mut self, copies: &[(u64, Digest)]) {
        if let Some((position, d)) = copies.last() {
            self.next_position = position + 1;
            self.last_mark = Mark {
                epoch: self.epoch.0,
                position: *position,
                digest: *d,
            };
        }
    }

    /// A received case event: applied if it is the case's next, held if a predecessor is
    /// missing, ignored if already applied; then held successors are released. The changes go
    /// into `b` (nothing is written here); the case's new state, if it changed, is returned
    /// for the cache once `b` is applied. A quarantined case holds every event it receives
    /// (a county release applies them again); a void one applies none.
    fn offer_case_event(
        &mut self,
        b: &mut Batch,
        case: &str,
        seq: u64,
        position: u64,
    ) -> Result<(Offer, Option<Case>), RegisterError> {
        let Ok(number) = CaseNumber::parse(case) else {
            tracing::warn!(
                position,
                "received a case event with a malformed case number"
            );
            return Ok((Offer::Quarantined(None), None));
        };
        if self.voided(&number)?.is_some() {
            return Ok((Offer::Void, None));
        }
        let before = self.case(&number)?;
        let next = before.as_ref().map_or(1, Case::next_seq);
        // Identities were deduplicated before: a new event at a sequence already applied or
        // already held is a second event claiming that place (a fork), never a copy.
        let fork =
            seq < next || (seq > next && self.get_through(b, &held_key(case, seq))?.is_some());
        if fork {
            tracing::warn!(case = %number, seq, position, "two different events claim one case sequence");
            let new = self.quarantine_ops(b, &number, FORK)?;
            return Ok((Offer::Quarantined(new.then_some((seq, FORK))), None));
        }
        b.put(held_key(case, seq), position.to_be_bytes().to_vec());
        if self.quarantine_of(&number)?.is_some() {
            return Ok((Offer::Quarantined(None), None));
        }
        if seq > next {
            return Ok((Offer::Held, None));
        }
        let (after, failed) = self.apply_held(b, &number, before.clone())?;
        let changed = after.as_ref().map(Case::last_seq) != before.as_ref().map(Case::last_seq);
        let after = if changed { after } else { None };
        match failed {
            // Held before an event of a newer schema (`newer.rs`).
            None if !changed => Ok((Offer::Held, None)),
            None => Ok((Offer::Applied, after)),
            Some((seq, why)) => {
                let new = self.quarantine_ops(b, &number, why)?;
                Ok((Offer::Quarantined(new.then_some((seq, why))), after))
            }
        }
    }

    /// Applies the held events of `number` in case sequence from `state`'s next on, until
    /// one is missing or fails a domain check (it stays held). Returns the state reached and
    /// the failed event's sequence and why.
    pub(super) fn apply_held(
        &mut self,
        b: &mut Batch,
        number: &CaseNumber,
        mut state: Option<Case>,
    ) -> Result<(Option<Case>, Option<Failed>), RegisterError> {
        let case = number.to_string();
        loop {
            let seq = state.as_ref().map_or(1, Case::next_seq);
            let k = held_key(&case, seq);
            let Some(at) = self.get_through(b, &k)? else {
                return Ok((state, None));
            };
            let at = u64::from_be_bytes(at.as_slice().try_into().map_err(|_| {
                RegisterError::Decode {
                    what: "held event".to_owned(),
                    detail: "not 8 bytes".to_owned(),
                }
            })?);
            let Some(raw) = self.get_through(b, &event_key(at))? else {
                return Ok((state, None));
            };
            let held = pb::Event::decode(raw.as_slice()).map_err(|e| RegisterError::Decode {
                what: format!("event {at}"),
                detail: e.to_string(),
            })?;
            let schema = held.envelope.as_ref().map_or(0, |e| e.schema_version);
            if schema > self.readable_schema {
                self.wait_for_newer_software(b, number, seq, schema)?;
                return Ok((state, None));
            }
            match self.apply_case_event(b, number, at, &held, state.clone())? {
                Ok(next) => {
                    b.delete(k);
                    state = Some(next);
                }
                Err(why) => return Ok((state, Some((seq, why)))),
            }
        }
    }

    /// Puts into `b` the change of one case event to the case's state `before`; returns the
    /// new state, or why the event fails a domain check (nothing about the applicant).
    fn apply_case_event(
        &mut self,
        b: &mut Batch,
        number: &CaseNumber,
        position: u64,
        event: &pb::Event,
        before: Option<Case>,
    ) -> Result<Result<Case, &'static str>, RegisterError> {
        let payload = match pb::CaseEventPayload::decode(event.payload.as_slice()) {
            Ok(p) => p,
            Err(_) => return Ok(Err("payload does not decode")),
        };
        let case_event = match CaseEvent::try_from(payload) {
            Ok(e) => e,
            Err(_) => return Ok(Err("payload fails its checks")),
        };
        if case_event.case != *number {
            return Ok(Err("payload names another case than its envelope"));
        }
        self.raise_request_seq_for(b, &case_event.body);
        let item_key = match &before {
            Some(c) => c.acceptance.item.clone(),
            None => match &case_event.body {
                CaseEventBody::Accepted(a) => a.item.clone(),
                _ => return Ok(Err("first event is not an acceptance")),
            },
        };
        let Some(item) = self.catalog.get(&item_key).cloned() else {
            return Ok(Err("item version unknown here"));
        };
        let rules = Rules { item: &item };
        let after = match &before {
            None => Case::open(case_event.clone(), &rules),
            Some(c) => {
                let mut next = c.clone();
                next.apply(case_event.clone(), &rules).map(|()| next)
            }
        };
        let after = match after {
            Ok(a) => a,
            Err(_) => return Ok(Err("the case state machine refuses it")),
        };
        self.case_ops(b, position, &case_event, before.as_ref(), &after);
        Ok(Ok(after))
    }

    /// Takes a new epoch above `needs.floor` (from the fresh value `fresh`): nothing is
    /// written or numbered in the old one again; with `refill`, the node asks its parent to
    /// refill it (and numbers nothing until then). Durable at once.
    pub fn take_new_epoch(
        &mut self,
        needs: &NeedsNewEpoch,
        fresh: u64,
        refill: bool,
    ) -> Result<Epoch, RegisterError> {
        let epoch = needs.choose(fresh).map_err(|e| RegisterError::Decode {
            what: "new epoch".to_owned(),
            detail: e.to_string(),
        })?;
        self.store.set_epoch(Epoch(epoch))?;
        let mut b = Batch::default();
        b.put(key::EPOCH, epoch.to_be_bytes().to_vec());
        b.put(key::OWN_SEQ, encode(&0u64));
        let refill = refill || self.refill;
        b.put(key::REFILL, encode(&refill));
        self.store.apply(&b)?;
        tracing::warn!(node = %self.node, old = %self.epoch, new = %Epoch(epoch), behind = ?needs.behind, "the store is behind: took a new epoch; asking the parent to refill it");
        self.epoch = Epoch(epoch);
        self.own_seq = 0;
        self.refill = refill;
        self.last_mark.epoch = epoch;
        self.sync()?;
        Ok(self.epoch)
    }

    /// Whether the node waits for its parent to refill it (it numbers no case meanwhile).
    pub fn refilling(&self) -> bool {
        self.refill
    }

    /// What `peer` is owed of this node's "refill only" entries (see `sync.rs`): kept in the
    /// store, so a restart in the middle of a restored parent's refill goes on with it.
    pub fn refill_owed(&self, peer: NodeId) -> Result<Option<u64>, RegisterError> {
        self.store
            .get(&refill_owed_key(peer))?
            .map(|b| decode("refill owed", &b))
            .transpose()
    }

    /// Records what `peer` is owed (`None`: nothing). Durable with the next sync.
    pub fn set_refill_owed(
        &mut self,
        peer: NodeId,
        owed: Option<u64>,
    ) -> Result<(), RegisterError> {
        let mut b = Batch::default();
        match owed {
            Some(end) => b.put(refill_owed_key(peer), encode(&end)),
            None => b.delete(refill_owed_key(peer)),
        }
        self.store.apply(&b)?;
        self.unsynced_writes = true;
        Ok(())
    }

    /// The parent's down stream reached what it held at a refilling handshake: whole again.
    pub fn refill_done(&mut self) -> Result<(), RegisterError> {
        if !self.refill {
            return Ok(());
        }
        let mut b = Batch::default();
        b.put(key::REFILL, encode(&false));
        self.store.apply(&b)?;
        self.refill = false;
        self.unsynced_writes = true;
        tracing::info!(node = %self.node, "refilled from the parent");
        Ok(())
    }

    /// Marks the node as waiting for a refill (a new store beside a parent). Durable with the
    /// next sync.
    pub fn start_refill(&mut self) -> Result<(), RegisterError> {
        let mut b = Batch::default();
        b.put(key::REFILL, encode(&true));
        self.store.apply(&b)?;
        self.refill = true;
        self.unsynced_writes = true;
        Ok(())
    }

    /// The last durable position.
    pub fn durable_position(&self) -> u64 {
        self.synced_mark.position
    }
}

/// A held event that failed a domain check: its case sequence and why.
pub(super) type Failed = (u64, &'static str);

/// Why a case is quarantined when two events claim one place in its sequence.
const FORK: &str = "two different events claim one case sequence";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offer {
    Applied,
    Held,
    /// With the failed event's sequence and why, when this event quarantined the case.
    Quarantined(Option<Failed>),
    /// The county voided the case: kept and relayed, never applied.
    Void,
}

impl<S: Store> LogView for Register<S> {
    fn epoch(&self) -> u64 {
        self.epoch.0
    }

    fn last_position(&self) -> u64 {
        self.next_position - 1
    }

    fn digest_at(&self, position: u64) -> Option<Digest> {
        self.store
            .get(&event_key(position))
            .ok()
            .flatten()
            .map(|b| digest(&b))
    }
}
