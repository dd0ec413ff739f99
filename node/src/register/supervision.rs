//! Quarantine and the county's decisions (DESIGN.md "When an event is refused", "Custody"):
//! the record of a quarantined case (`q/`), the alarm a node raises when it quarantines one,
//! the county's release or void (`vd/`) and how each node applies them.
//!
//! Invariants:
//! * A quarantined case's received events are held (`hb/`), never dropped: a release applies
//!   them again in case sequence, and one that still fails quarantines the case again (with a
//!   new alarm).
//! * An alarm quarantines the case at every node that applies it (the custodian stops
//!   acting) and travels up to the root (the county's alarm) and to the case's audience and
//!   the quarantining node; a county decision travels to the same nodes.
//! * Only a county-tier node whose territory holds the case decides; a decision from anyone
//!   else is relayed but changes nothing. A void is final: no later event of the case applies.
//! * Alarms and decisions carry the case number, node ids and the kind of problem only, never
//!   applicant data. An alarm naming another node than its author is relayed, never applied.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use prost::Message;
use serde::{Deserialize, Serialize};

use yimen_core::case::{
    Case, CountyDecision, QuarantineAlarm, RevisionAlarm, TEXT_CHARS_MAX, Verdict,
};
use yimen_core::catalog::NodeId;
use yimen_core::link::{Digest, EventId};
use yimen_core::numbering::CaseNumber;
use yimen_proto::pb;

use super::replica::{Envelope, Received};
use super::{
    PAYLOAD_SCHEMA_VERSION, Register, RegisterError, decode, due_key, encode, key, status_key,
};
use crate::store::{Batch, Store};

/// What a received supervision event changed: the case's new state (a release applied held
/// events) and the history copied for a child that joined its audience.
type Changed = (Option<Case>, Vec<(u64, Digest)>);

/// The operator named on alarms a node raises by itself.
pub const ALARM_OPERATOR: &str = "系统隔离告警";

/// A case this node just quarantined: the node raises an alarm for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewQuarantine {
    pub case: CaseNumber,
    /// The case sequence of the event that failed.
    pub seq: u64,
    /// What failed (English, no applicant data).
    pub reason: String,
    /// Where the alarm goes besides the root: the case's audience and this node.
    pub audience: BTreeSet<NodeId>,
}

/// A received revision this node refused (kept and relayed, not applied): the node raises
/// an alarm for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedRevision {
    pub revision: EventId,
    /// "catalog", "calendar" or "topology".
    pub kind: &'static str,
    /// What failed (English, no content of the revision).
    pub reason: String,
}

/// Whether an alarm naming `node` was written by that node: a node raises alarms for its own
/// quarantines and refusals only; one naming another node is relayed, never applied.
fn raised_by_its_node(node: NodeId, env: &Envelope) -> bool {
    node.to_string() == env.id.origin
}

/// Where a hub keeps a revision alarm: by refusing node, then the revision's identity.
fn revision_alarm_key(node: NodeId, revision: &EventId) -> Vec<u8> {
    key::join(&[
        key::REVISION_ALARM,
        node.to_string().as_bytes(),
        b"/",
        revision.origin.as_bytes(),
        &revision.epoch.to_be_bytes(),
        &revision.seq.to_be_bytes(),
    ])
}

/// Why a case is quarantined here, and who must hear the county's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// "quarantined at NODE (event SEQ): what failed".
    pub reason: String,
    /// The case's audience and every node that quarantined it.
    pub audience: BTreeSet<NodeId>,
}

fn quarantine_key(case: &CaseNumber) -> Vec<u8> {
    key::join(&[key::QUARANTINE, case.to_string().as_bytes()])
}

fn void_key(case: &CaseNumber) -> Vec<u8> {
    key::join(&[key::VOID, case.to_string().as_bytes()])
}

impl<S: Store> Register<S> {
    /// Why `case` is quarantined here, if it is.
    pub fn quarantine_of(
        &self,
        case: &CaseNumber,
    ) -> Result<Option<QuarantineRecord>, RegisterError> {
        self.store
            .get(&quarantine_key(case))?
            .map(|b| decode("quarantine record", &b))
            .transpose()
    }

    /// The county's void of `case`, if it was voided.
    pub fn voided(&self, case: &CaseNumber) -> Result<Option<CountyDecision>, RegisterError> {
        self.store
            .get(&void_key(case))?
            .map(|b| decode("county decision", &b))
            .transpose()
    }

    /// Quarantined cases (case number, why), in case-number order, at most `limit` (the
    /// desk's list).
    pub fn quarantined(&self, limit: usize) -> Result<Vec<(String, String)>, RegisterError> {
        self.store
            .scan(key::QUARANTINE, None, limit)?
            .into_iter()
            .map(|(k, v)| {
                let record: QuarantineRecord = decode("quarantine record", &v)?;
                Ok((
                    String::from_utf8_lossy(&k[key::QUARANTINE.len()..]).into_owned(),
                    record.reason,
                ))
            })
            .collect()
    }

    /// Quarantines `case` here because `why` (into `b`): its events are held from now on.
    /// Returns whether it is new (the node then raises an alarm).
    pub(super) fn quarantine_ops(
        &mut self,
        b: &mut Batch,
        case: &CaseNumber,
        why: &str,
    ) -> Result<bool, RegisterError> {
        if self.quarantine_of(case)?.is_some() {
            return Ok(false);
        }
        // The case number and the kind of problem only: no applicant data in logs.
        tracing::warn!(%case, why, "case quarantined: a received event fails a domain check");
        let mut audience: BTreeSet<NodeId> =
            self.case(case)?.map(|c| c.audience).unwrap_or_default();
        audience.insert(self.node);
        let record = QuarantineRecord {
            reason: format!("quarantined at {}: {why}", self.node),
            audience,
        };
        b.put(quarantine_key(case), encode(&record));
        Ok(true)
    }

    /// The alarm for a case this node just quarantined because of the event of `env`.
    pub(super) fn new_quarantine(
        &self,
        case: &str,
        seq: u64,
        why: &str,
        env: &Envelope,
    ) -> Option<NewQuarantine> {
        let case = CaseNumber::parse(case).ok()?;
        let mut audience: BTreeSet<NodeId> = env.audience_members.iter().copied().collect();
        audience.insert(self.node);
        Some(NewQuarantine {
            case,
            seq,
            reason: why.to_owned(),
            audience,
        })
    }

    /// A received quarantine alarm or county decision (others change nothing here). The
    /// changes go into `b`; returns the case's new state (a release applied held events) and
    /// the history copied for a child that joined its audience.
    pub(super) fn offer_supervision(
        &mut self,
        b: &mut Batch,
        env: &Envelope,
        event: &pb::Event,
        first: u64,
        from: Option<NodeId>,
        report: &mut Received,
    ) -> Result<Changed, RegisterError> {
        let none = Ok((None, Vec::new()));
        if env.schema_version > self.readable_schema {
            return none;
        }
        if env.kind == pb::EventType::QuarantineAlarm as i32 {
            let alarm = pb::QuarantineAlarm::decode(event.payload.as_slice())
                .ok()
                .and_then(|w| QuarantineAlarm::try_from(w).ok());
            let Some(alarm) = alarm else {
                tracing::warn!(origin = %env.id.origin, "a quarantine alarm does not decode; relayed only");
                return none;
            };
            if !raised_by_its_node(alarm.node, env) {
                tracing::warn!(case = %alarm.case, origin = %env.id.origin, node = %alarm.node, "a quarantine alarm naming another node than its author; relayed only");
                return none;
            }
            self.apply_alarm(b, &alarm, &env.audience_members)?;
            return none;
        }
        if env.kind == pb::EventType::RevisionAlarm as i32 {
            self.offer_revision_alarm(b, env, event);
            return none;
        }
        if env.kind == pb::EventType::CountyDecision as i32 {
            let decision = pb::CountyDecision::decode(event.payload.as_slice())
                .ok()
                .and_then(|w| CountyDecision::try_from(w).ok());
            let Some(decision) = decision else {
                tracing::warn!(origin = %env.id.origin, "a county decision does not decode; relayed only");
                return none;
            };
            let author = yimen_core::division::DivisionCode::parse(&env.id.origin).ok();
            match author.map(|a| decision.check(a)) {
                Some(Ok(())) => {}
                _ => {
                    tracing::warn!(case = %decision.case, origin = %env.id.origin, "a county decision from a node that may not take it; relayed only");
                    return none;
                }
            }
            return self.apply_decision(b, &decision, first, from, report);
        }
        none
    }

    /// An alarm raised elsewhere: the case is quarantined here too (held until the county
    /// decides), and whoever must hear the decision is recorded.
    fn apply_alarm(
        &mut self,
        b: &mut Batch,
        alarm: &QuarantineAlarm,
        members: &[NodeId],
    ) -> Result<(), RegisterError> {
        if self.voided(&alarm.case)?.is_some() {
            return Ok(());
        }
        let mut record = match self.quarantine_of(&alarm.case)? {
            Some(r) => r,
            None => {
                let root = self.parent().is_none();
                if root {
                    tracing::error!(case = %alarm.case, node = %alarm.node, seq = alarm.seq, why = %alarm.reason, "quarantine alarm: a county decision is needed (yimen-hub desk quarantine)");
                } else {
                    tracing::warn!(case = %alarm.case, node = %alarm.node, seq = alarm.seq, why = %alarm.reason, "quarantine alarm: the case is held here until the county decides");
                }
                QuarantineRecord {
                    reason: format!(
                        "quarantined at {} (event {}): {}",
                        alarm.node, alarm.seq, alarm.reason
                    ),
                    audience: BTreeSet::new(),
                }
            }
        };
        record.audience.extend(members.iter().copied());
        record.audience.insert(alarm.node);
        if let Some(case) = self.case(&alarm.case)? {
            record.audience.extend(case.audience);
        }
        b.put(quarantine_key(&alarm.case), encode(&record));
        Ok(())
    }

    /// A county decision (received, or taken here): release applies the held events again;
    /// void ends the case here for good.
    fn apply_decision(
        &mut self,
        b: &mut Batch,
        d: &CountyDecision,
        first: u64,
        from: Option<NodeId>,
        report: &mut Received,
    ) -> Result<Changed, RegisterError> {
        if self.voided(&d.case)?.is_some() {
            return Ok((None, Vec::new()));
        }
        let record = self.quarantine_of(&d.case)?;
        b.delete(quarantine_key(&d.case));
        let before = self.case(&d.case)?;
        match d.verdict {
            Verdict::Void => {
                b.put(void_key(&d.case), encode(d));
                let prefix = key::join(&[key::HELD, d.case.to_string().as_bytes(), b"/"]);
                for (k, _) in self.store.scan(&prefix, None, usize::MAX)? {
                    b.delete(k);
                }
                // Off the status and deadline indexes: no list shows it open, no timer acts on
                // it and it is never overdue (looked up, it shows as void).
                if let Some(case) = &before {
                    b.delete(due_key(case));
                    b.delete(status_key(case));
                }
                tracing::info!(case = %d.case, "case voided by the county");
                Ok((None, Vec::new()))
            }
            Verdict::Release => {
                tracing::info!(case = %d.case, "quarantine released by the county");
                let (after, failed) = self.apply_held(b, &d.case, before.clone())?;
                if let Some((seq, why)) = failed {
                    tracing::warn!(case = %d.case, seq, why, "a released case fails again: quarantined again");
                    let mut audience = record.map(|r| r.audience).unwrap_or_default();
                    audience.insert(self.node);
                    if let Some(a) = &after {
                        audience.extend(a.audience.iter().copied());
                    }
                    b.put(
                        quarantine_key(&d.case),
                        encode(&QuarantineRecord {
                            reason: format!("quarantined at {} again: {why}", self.node),
                            audience: audience.clone(),
                        }),
                    );
                    report.alarms.push(NewQuarantine {
                        case: d.case,
                        seq,
                        reason: why.to_owned(),
                        audience,
                    });
                }
                let changed =
                    after.as_ref().map(Case::last_seq) != before.as_ref().map(Case::last_seq);
                let Some(after) = after.filter(|_| changed) else {
                    return Ok((None, Vec::new()));
                };
                let audience_before = before.map(|c| c.audience).unwrap_or_default();
                let copies = self.after_change(b, &after, &audience_before, first, from, report)?;
                Ok((Some(after), copies))
            }
        }
    }

    /// The wire form of an event this node writes outside a case's sequence.
    pub(super) fn own_event_wire(
        &self,
        kind: pb::EventType,
        case: Option<&CaseNumber>,
        audience: &BTreeSet<NodeId>,
        author: &str,
        payload: Vec<u8>,
    ) -> Vec<u8> {
        pb::Event {
            envelope: Some(pb::EventEnvelope {
                id: Some(pb::EventId {
                    origin: self.node.to_string(),
                    epoch: self.epoch.0,
                    seq: self.own_seq + 1,
                }),
                case_id: case.map(ToString::to_string).unwrap_or_default(),
                case_seq: 0,
                r#type: kind as i32,
                schema_version: PAYLOAD_SCHEMA_VERSION,
                audience: Some(pb::Audience {
                    subtree: String::new(),
                    members: audience.iter().map(ToString::to_string).collect(),
                }),
                signature: None,
                materials: Vec::new(),
                author: author.to_owned(),
            }),
            payload,
        }
        .encode_to_vec()
    }

    /// Raises the alarm for a case quarantined here: an event that goes up to the root and
    /// to the case's audience. Not durable until `sync`.
    pub fn raise_alarm(
        &mut self,
        q: &NewQuarantine,
        at: NaiveDateTime,
    ) -> Result<u64, RegisterError> {
        let alarm = QuarantineAlarm {
            case: q.case,
            node: self.node,
            seq: q.seq,
            reason: q.reason.clone(),
            at,
        };
        let payload = pb::QuarantineAlarm::from(&alarm).encode_to_vec();
        let wire = self.own_event_wire(
            pb::EventType::QuarantineAlarm,
            Some(&q.case),
            &q.audience,
            ALARM_OPERATOR,
            payload,
        );
        let position = self.append_own(wire, Batch::default())?;
        tracing::warn!(case = %q.case, seq = q.seq, "quarantine alarm raised to the county");
        Ok(position)
    }

    /// Raises the alarm for a revision refused here: kept here too, and an event that goes
    /// up to the root and to the revision's author. Not durable until `sync`.
    pub fn raise_revision_alarm(
        &mut self,
        r: &RefusedRevision,
        at: NaiveDateTime,
    ) -> Result<u64, RegisterError> {
        let alarm = RevisionAlarm {
            node: self.node,
            revision: r.revision.clone(),
            kind: r.kind.to_owned(),
            reason: r.reason.chars().take(TEXT_CHARS_MAX).collect(),
            at,
        };
        let author: BTreeSet<NodeId> = NodeId::parse(&r.revision.origin).into_iter().collect();
        let payload = pb::RevisionAlarm::from(&alarm).encode_to_vec();
        let wire = self.own_event_wire(
            pb::EventType::RevisionAlarm,
            None,
            &author,
            ALARM_OPERATOR,
            payload,
        );
        let mut b = Batch::default();
        b.put(
            revision_alarm_key(self.node, &alarm.revision),
            encode(&alarm),
        );
        let position = self.append_own(wire, b)?;
        tracing::warn!(revision = ?r.revision, kind = r.kind, "revision alarm raised to the county and the author");
        Ok(position)
    }

    /// A revision alarm raised elsewhere: kept (into `b`) at the root, which is the county's
    /// alarm, and at the revision's author; relayed only elsewhere.
    fn offer_revision_alarm(&self, b: &mut Batch, env: &Envelope, event: &pb::Event) {
        let addressed = env.audience_members.contains(&self.node);
        let root = self.parent().is_none();
        if !addressed && !root {
            return;
        }
        let alarm = pb::RevisionAlarm::decode(event.payload.as_slice())
            .ok()
            .and_then(|w| RevisionAlarm::try_from(w).ok());
        let Some(alarm) = alarm else {
            tracing::warn!(origin = %env.id.origin, "a revision alarm does not decode; relayed only");
            return;
        };
        if !raised_by_its_node(alarm.node, env) {
            tracing::warn!(origin = %env.id.origin, node = %alarm.node, "a revision alarm naming another node than its author; relayed only");
            return;
        }
        if root {
            tracing::error!(node = %alarm.node, revision = ?alarm.revision, kind = alarm.kind, reason = alarm.reason, "a node refused a revision: kept and relayed there, not applied");
        }
        b.put(
            revision_alarm_key(alarm.node, &alarm.revision),
            encode(&alarm),
        );
    }

    /// Revision alarms kept here (by refusing node), at most `limit`.
    pub fn revision_alarms(&self, limit: usize) -> Result<Vec<RevisionAlarm>, RegisterError> {
        self.store
            .scan(key::REVISION_ALARM, None, limit)?
            .into_iter()
            .map(|(_, v)| decode("revision alarm", &v))
            .collect()
    }

    /// Takes a county decision here (this node is the county): the decision event, to every
    /// node that holds or quarantined the case, and its effect here, in one batch. The caller
    /// checked `d.check(self.node)` and that the case is quarantined here. Returns what the
    /// release did (cases handed here, cases quarantined again). Not durable until `sync`.
    pub fn decide(&mut self, d: &CountyDecision) -> Result<Received, RegisterError> {
        let mut audience = self
            .quarantine_of(&d.case)?
            .map(|r| r.audience)
            .unwrap_or_default();
        if let Some(case) = self.case(&d.case)? {
            audience.extend(case.audience);
        }
        audience.insert(self.node);
        let payload = pb::CountyDecision::from(d).encode_to_vec();
        let wire = self.own_event_wire(
            pb::EventType::CountyDecision,
            Some(&d.case),
            &audience,
            &d.operator,
            payload,
        );
        let mut report = Received::default();
        let mut b = Batch::default();
        let first = self.next_position + 1;
        let (after, copies) = self.apply_decision(&mut b, d, first, None, &mut report)?;
        self.append_own(wire, b)?;
        self.advance_past_copies(&copies);
        report.backfilled = copies.len();
        match after {
            Some(after) => self.cache(after),
            // A void or a release that changed nothing: drop any cached copy so reads see
            // the store.
            None => {
                self.cases.remove(&d.case);
            }
        }
        Ok(report)
    }
}
