//! Requests on the wire (DESIGN.md "Custody"): a non-custodian's withdrawal, supplement,
//! objection or opinion travels as an event outside the case's sequence, addressed to the
//! custodian; a former custodian that receives it passes it along the custody chain; the
//! custodian keeps it pending (`rp/`) until one of its events decides it.
//!
//! Invariants:
//! * A request is pending at most once per custodian node, and never once decided (the
//!   case's decided set, and the deciding event's batch deletes it).
//! * Only the addressed node acts on a request; relays route it on the envelope alone.
//! * A node passes a request along only when it held the case before (a former custodian)
//!   or reassigned it away from the addressee (the county), towards the custodian after it;
//!   a request that reaches its addressee before the handoff to it waits there for the
//!   handoff, so a request never travels back.
//! * A county node keeps every undecided request of its territory's cases it relays (`rs/`,
//!   removed when an event decides it): when it reassigns a case (改派), it passes them to the
//!   new custodian, so one pending at the lost custodian is not lost with its box. A
//!   custodian keeps a request pending once, whichever ways it arrives.

use std::collections::BTreeSet;

use prost::Message;

use yimen_core::case::{Case, CaseEventBody, Request, RequestId};
use yimen_core::division::Tier;
use yimen_core::numbering::CaseNumber;
use yimen_core::routing::Custodian;
use yimen_proto::pb;

use super::replica::{Envelope, Received};
use super::{Register, RegisterError, decode, encode, key};
use crate::store::{Batch, Store};

/// Where the custodian keeps a request until it decides it.
pub(super) fn pending_key(case: &CaseNumber, id: &RequestId) -> Vec<u8> {
    request_key(key::PENDING_REQUEST, case, id)
}

/// Where a county node keeps an undecided request it relayed, until an event decides it.
pub(super) fn seen_key(case: &CaseNumber, id: &RequestId) -> Vec<u8> {
    request_key(key::SEEN_REQUEST, case, id)
}

/// `prefix`, the case, then the request's id: one case's requests sort together.
fn request_key(prefix: &[u8], case: &CaseNumber, id: &RequestId) -> Vec<u8> {
    key::join(&[
        &case_prefix(prefix, case),
        id.origin.to_string().as_bytes(),
        &id.seq.to_be_bytes(),
    ])
}

/// `prefix`, then the case number and a separator.
fn case_prefix(prefix: &[u8], case: &CaseNumber) -> Vec<u8> {
    key::join(&[prefix, case.to_string().as_bytes(), b"/"])
}

impl<S: Store> Register<S> {
    /// Sends a request raised here to `to` (the custodian as this node knows it): kept under
    /// `rq/` and written as an event that travels to `to`. Not durable until `sync`.
    pub fn send_request(
        &mut self,
        request: &Request,
        to: &Custodian,
    ) -> Result<u64, RegisterError> {
        self.send_request_with(request, to, Batch::default())
    }

    /// `send_request`, with `b` (other changes) in the event's batch.
    fn send_request_with(
        &mut self,
        request: &Request,
        to: &Custodian,
        mut b: Batch,
    ) -> Result<u64, RegisterError> {
        if request.id.origin == self.node {
            b.put(
                key::join(&[
                    key::REQUEST,
                    request.id.origin.to_string().as_bytes(),
                    &request.id.seq.to_be_bytes(),
                ]),
                encode(request),
            );
        }
        let payload = pb::RequestPayload::from(request).encode_to_vec();
        let wire = self.own_event_wire(
            pb::EventType::Request,
            Some(&request.case),
            &BTreeSet::from([to.node]),
            &request.operator,
            payload,
        );
        let position = self.append_own(wire, b)?;
        tracing::info!(case = %request.case, request = %request.id, %to, "request sent to the custodian");
        Ok(position)
    }

    /// A received request: kept pending if this node is the custodian, listed to be passed
    /// along if this node was addressed but custody has moved on; relayed only otherwise.
    pub(super) fn offer_request(
        &mut self,
        b: &mut Batch,
        env: &Envelope,
        event: &pb::Event,
        report: &mut Received,
    ) -> Result<(), RegisterError> {
        if env.kind != pb::EventType::Request as i32 || env.schema_version > self.readable_schema {
            return Ok(());
        }
        let addressed = env.audience_members.contains(&self.node);
        let county = self.node.tier() == Tier::County;
        // A county that reassigned a case away from a lost custodian answers for it: requests
        // addressed to the lost one (by nodes that had not heard) go to the new custodian.
        let me = self.node;
        let lost = |case: &yimen_core::case::Case| {
            case.events.iter().any(|e| {
                e.author.node == me
                    && matches!(&e.body, CaseEventBody::Reassigned { from, .. }
                        if env.audience_members.contains(&from.node))
            }) && !env.audience_members.contains(&case.custodian.node)
        };
        let Some(number) = env
            .case
            .as_ref()
            .and_then(|(c, _)| CaseNumber::parse(c).ok())
        else {
            return Ok(());
        };
        let Some(case) = self.case(&number)? else {
            if addressed {
                tracing::warn!(case = %number, "a request for a case this node does not hold");
            }
            return Ok(());
        };
        if !addressed && !county {
            return Ok(());
        }
        let request = pb::RequestPayload::decode(event.payload.as_slice())
            .ok()
            .and_then(|w| Request::try_from(w).ok())
            .filter(|r| r.case == number);
        let Some(request) = request else {
            tracing::warn!(origin = %env.id.origin, "a request addressed here does not decode; relayed only");
            return Ok(());
        };
        if case.decided_requests.contains(&request.id) {
            return Ok(());
        }
        if county {
            b.put(seen_key(&request.case, &request.id), encode(&request));
        }
        if !addressed && !lost(&case) {
            return Ok(());
        }
        // Kept here when this node is the custodian, or when it was addressed before the
        // handoff to it arrived here (never held the case yet): it waits for the handoff
        // rather than travel back.
        let former = case.custody_chain.iter().any(|c| c.node == self.node);
        if case.custodian.node == self.node || (addressed && !former) {
            let k = pending_key(&request.case, &request.id);
            if self.store.get(&k)?.is_none() {
                tracing::info!(case = %request.case, request = %request.id, kind = request.kind.as_str(), "request arrived for the custodian");
                b.put(k, encode(&request));
                report.requests += 1;
            }
            return Ok(());
        }
        // Addressed to a former custodian (or to a lost one, at the county that reassigned
        // the case): pass it to the custodian after it.
        report.pass_along.push((request, case.custodian.clone()));
        Ok(())
    }

    /// The case left this node's custody with requests undecided: each goes on to the new
    /// custodian (as a former custodian passes along one that arrives later).
    pub(super) fn hand_on_pending(&mut self, case: &Case) -> Result<(), RegisterError> {
        let prefix = case_prefix(key::PENDING_REQUEST, &case.number);
        for (k, v) in self.store.scan(&prefix, None, usize::MAX)? {
            let request: Request = decode("pending request", &v)?;
            let mut b = Batch::default();
            b.delete(k);
            self.send_request_with(&request, &case.custodian, b)?;
        }
        Ok(())
    }

    /// 改派 written here: every undecided request this county node relayed for the case goes
    /// to the new custodian (kept pending here when the county takes the case itself). One
    /// pending at the lost custodian would otherwise be lost with its box.
    pub(super) fn pass_on_seen(&mut self, case: &Case) -> Result<(), RegisterError> {
        let prefix = case_prefix(key::SEEN_REQUEST, &case.number);
        for (_, v) in self.store.scan(&prefix, None, usize::MAX)? {
            let request: Request = decode("relayed request", &v)?;
            if case.decided_requests.contains(&request.id) {
                continue;
            }
            if case.custodian.node == self.node {
                let mut b = Batch::default();
                b.put(pending_key(&case.number, &request.id), encode(&request));
                self.store.apply(&b)?;
                self.unsynced_writes = true;
            } else {
                self.send_request(&request, &case.custodian)?;
            }
            tracing::info!(case = %case.number, request = %request.id, to = %case.custodian, "a request relayed before the reassignment passed to the new custodian");
        }
        Ok(())
    }

    /// Requests waiting for a decision at this node for cases `custodian` holds, oldest
    /// case first, at most `limit`.
    pub fn pending_requests(
        &mut self,
        custodian: &Custodian,
        limit: usize,
    ) -> Result<Vec<Request>, RegisterError> {
        let mut out = Vec::new();
        for (_, v) in self.store.scan(key::PENDING_REQUEST, None, usize::MAX)? {
            if out.len() >= limit {
                break;
            }
            let request: Request = decode("pending request", &v)?;
            if self
                .case(&request.case)?
                .is_some_and(|c| c.custodian == *custodian)
            {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// One pending request of a case.
    pub fn pending_request(
        &self,
        case: &CaseNumber,
        id: &RequestId,
    ) -> Result<Option<Request>, RegisterError> {
        self.store
            .get(&pending_key(case, id))?
            .map(|v| decode("pending request", &v))
            .transpose()
    }
}
