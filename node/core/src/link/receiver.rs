//! The receiving end of one stream on one connection: checks batches, hands out events to
//! persist (deduplicated by identity) with the cursor to store beside them, and once the
//! shell reports them durable, acknowledges them and widens the credit window.
//!
//! Invariants: a refused batch changes nothing; an accepted batch continues exactly where the
//! last one ended, from the epoch announced at the handshake, within the granted credit; an
//! acknowledgement names a position the shell reported durable and that was handed out to
//! persist; the credit granted never exceeds durable bytes plus `credit_window_bytes`, so
//! what waits unpersisted is bounded by the window.

use std::collections::{BTreeSet, VecDeque};

use super::{
    Ack, Batch, Credit, Cursor, EventId, Frame, Limits, LinkError, Seen, WireEvent, is_node_id,
};

/// Events to make durable, in this order, atomically with the cursor: after the shell's group
/// commit holds them, it calls [`Receiver::handle_persisted`] with `cursor.position`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// The batch's events the shell has not seen, in position order (possibly none).
    pub events: Vec<WireEvent>,
    /// Where the stream stands once these are durable: the batch's last event.
    pub cursor: Cursor,
    /// Events of the batch dropped as already seen or already waiting.
    pub duplicates: usize,
}

/// What an accepted batch brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub fresh: usize,
    pub duplicates: usize,
}

/// A persist handed out and not yet reported durable.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Issued {
    position: u64,
    /// Stream bytes received up to and including this batch.
    offset: u64,
    ids: Vec<EventId>,
}

/// The receiving end of one stream for one connection; make a new one at every handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receiver {
    limits: Limits,
    /// The sender's epoch announced at the handshake.
    epoch: u64,
    /// Position of the last event received (the stated cursor's at first).
    received: u64,
    received_bytes: u64,
    /// The credit limit granted so far on this connection.
    granted: u64,
    /// Position the shell reported durable (the stated cursor's at first).
    durable: u64,
    durable_bytes: u64,
    issued: VecDeque<Issued>,
    persist: VecDeque<Persist>,
    /// Ids handed out to persist and not yet durable.
    pending_ids: BTreeSet<EventId>,
    ack_due: Option<Ack>,
    credit_due: Option<u64>,
    last_batch_ms: Option<u64>,
}

impl Receiver {
    /// A receiver for a connection whose sender announced `sender_epoch`; `stored` is the
    /// cursor the shell holds durably (and stated in the handshake). A cursor of another epoch
    /// means the sender starts from its beginning. Panics if the limits could deadlock.
    pub fn new(limits: Limits, sender_epoch: u64, stored: Option<&Cursor>) -> Receiver {
        assert!(
            limits.check().is_ok(),
            "inconsistent link limits {limits:?}"
        );
        let start = stored
            .filter(|c| c.epoch == sender_epoch)
            .map_or(0, |c| c.position);
        Receiver {
            limits,
            epoch: sender_epoch,
            received: start,
            received_bytes: 0,
            granted: limits.credit_window_bytes,
            durable: start,
            durable_bytes: 0,
            issued: VecDeque::new(),
            persist: VecDeque::new(),
            pending_ids: BTreeSet::new(),
            ack_due: None,
            credit_due: Some(limits.credit_window_bytes),
            last_batch_ms: None,
        }
    }

    /// A batch from the sender. Checked whole before anything changes; on error the
    /// connection must end (the link resumes from the stated cursor on the next one).
    pub fn handle_batch(
        &mut self,
        batch: Batch,
        seen: &impl Seen,
        now_ms: u64,
    ) -> Result<Accepted, LinkError> {
        self.check(&batch)?;
        let bytes = batch.wire_bytes();
        let Some(last) = batch.events.last() else {
            return Err(LinkError::EmptyBatch);
        };
        let cursor = Cursor {
            epoch: self.epoch,
            position: last.position,
            digest: last.digest,
        };
        let mut fresh = Vec::new();
        let mut ids = Vec::new();
        let mut duplicates = 0;
        for e in batch.events {
            if seen.contains(&e.id) || self.pending_ids.contains(&e.id) {
                duplicates += 1;
                continue;
            }
            self.pending_ids.insert(e.id.clone());
            ids.push(e.id.clone());
            fresh.push(e);
        }
        self.received = cursor.position;
        self.received_bytes += bytes;
        assert!(
            self.received_bytes <= self.granted,
            "received beyond credit"
        );
        self.issued.push_back(Issued {
            position: cursor.position,
            offset: self.received_bytes,
            ids,
        });
        let accepted = Accepted {
            fresh: fresh.len(),
            duplicates,
        };
        self.persist.push_back(Persist {
            events: fresh,
            cursor,
            duplicates,
        });
        self.last_batch_ms = Some(now_ms);
        Ok(accepted)
    }

    fn check(&self, batch: &Batch) -> Result<(), LinkError> {
        if batch.epoch != self.epoch {
            return Err(LinkError::UnexpectedEpoch {
                expected: self.epoch,
                got: batch.epoch,
            });
        }
        if batch.events.is_empty() {
            return Err(LinkError::EmptyBatch);
        }
        if batch.after < self.received {
            return Err(LinkError::Backwards {
                after: batch.after,
                received: self.received,
            });
        }
        if batch.after > self.received {
            return Err(LinkError::Gap {
                after: batch.after,
                received: self.received,
            });
        }
        let bytes = batch.wire_bytes();
        if batch.events.len() > self.limits.batch_events_max || bytes > self.limits.batch_bytes_max
        {
            return Err(LinkError::BatchTooLarge {
                events: batch.events.len(),
                bytes,
            });
        }
        let mut previous = batch.after;
        for e in &batch.events {
            if e.position <= previous {
                return Err(LinkError::NotIncreasing {
                    previous,
                    position: e.position,
                });
            }
            previous = e.position;
            let payload = u64::try_from(e.bytes.len()).unwrap_or(u64::MAX);
            if payload > self.limits.event_bytes_max {
                return Err(LinkError::EventTooLarge {
                    position: e.position,
                    bytes: payload,
                    max: self.limits.event_bytes_max,
                });
            }
            if !is_node_id(&e.id.origin) {
                return Err(LinkError::BadOrigin {
                    position: e.position,
                });
            }
        }
        let offset = self.received_bytes.saturating_add(bytes);
        if offset > self.granted {
            return Err(LinkError::OverCredit {
                offset,
                limit: self.granted,
            });
        }
        Ok(())
    }

    /// The next events to make durable, with their cursor.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.persist.pop_front()
    }

    /// The shell's group commit made everything handed out up to `up_to_position` durable:
    /// acknowledge the last handed-out cursor at or below it and widen the credit window. A
    /// position beyond what was handed out is a shell defect and changes nothing.
    pub fn handle_persisted(&mut self, up_to_position: u64) -> Result<(), LinkError> {
        let handed_out = self.issued.back().map_or(self.durable, |i| i.position);
        if up_to_position > handed_out {
            return Err(LinkError::PersistedBeyondIssued {
                up_to: up_to_position,
                issued: handed_out,
            });
        }
        let mut advanced = false;
        while let Some(front) = self.issued.front() {
            if front.position > up_to_position {
                break;
            }
            let Some(done) = self.issued.pop_front() else {
                break;
            };
            for id in &done.ids {
                self.pending_ids.remove(id);
            }
            self.durable = done.position;
            self.durable_bytes = done.offset;
            advanced = true;
        }
        if !advanced {
            return Ok(());
        }
        assert!(self.durable <= self.received, "durable beyond received");
        self.ack_due = Some(Ack {
            epoch: self.epoch,
            position: self.durable,
        });
        let limit = self
            .durable_bytes
            .saturating_add(self.limits.credit_window_bytes);
        if limit > self.granted {
            self.granted = limit;
            self.credit_due = Some(limit);
        }
        Ok(())
    }

    /// The next acknowledgement or credit frame for the sender.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if let Some(ack) = self.ack_due.take() {
            return Some(Frame::Ack(ack));
        }
        self.credit_due
            .take()
            .map(|limit_bytes| Frame::Credit(Credit { limit_bytes }))
    }

    /// The sender's epoch this receiver expects.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Position of the last event received.
    pub fn received_position(&self) -> u64 {
        self.received
    }

    /// Position the shell reported durable (the stated cursor's at first).
    pub fn durable_position(&self) -> u64 {
        self.durable
    }

    /// The credit limit granted so far on this connection.
    pub fn granted_bytes(&self) -> u64 {
        self.granted
    }

    /// Bytes received and not yet durable.
    pub fn unpersisted_bytes(&self) -> u64 {
        self.received_bytes - self.durable_bytes
    }

    /// When the last batch arrived.
    pub fn last_batch_ms(&self) -> Option<u64> {
        self.last_batch_ms
    }
}
