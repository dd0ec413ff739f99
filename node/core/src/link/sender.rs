//! The sending end of one stream: reads the receiver's outbox from the shell, sends batches
//! pipelined within the receiver's credit, and forgets what the receiver acknowledged.
//!
//! Invariants: batches leave in position order, each continuing where the previous ended
//! (`after`); on a connection, the bytes sent never exceed the credit limit received, and the
//! bytes unacknowledged never exceed `in_flight_bytes_max`; an acknowledgement beyond what was
//! sent is refused; a sender whose resume decision is `SenderBehind` stays disconnected.
//! Memory is bounded by `queue_events_max`/`queue_bytes_max` plus one small record per event
//! in flight.

use std::collections::VecDeque;

use super::resume::{NeedsNewEpoch, Resume};
use super::{Ack, Batch, Frame, Lag, Limits, LinkError, WireEvent, is_node_id};

/// An event sent and not yet acknowledged: what a reconnect re-sends and lag counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    position: u64,
    bytes: u64,
}

/// The sending end of one stream of one link; it outlives connections (its lag and last
/// acknowledgement feed the link status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    limits: Limits,
    epoch: u64,
    connected: bool,
    /// Outbox entries read, not yet sent, in position order.
    queue: VecDeque<WireEvent>,
    queued_bytes: u64,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: u64,
    /// Position of the last event sent (or the resume point): the next batch's `after`.
    last_sent: u64,
    /// Position the receiver acknowledged (or stated at the handshake).
    acked: u64,
    /// The outbox position the next read starts at.
    next_needed: u64,
    /// A read of the outbox is outstanding.
    requested: bool,
    /// The last read returned nothing: wait for `handle_appended`.
    caught_up: bool,
    /// Wire bytes sent on this connection.
    sent_bytes: u64,
    /// The highest credit limit received on this connection.
    credit_limit: u64,
    last_ack_ms: Option<u64>,
    /// Since when the sender has had lag without an acknowledgement.
    waiting_since_ms: Option<u64>,
}

impl Sender {
    /// A disconnected sender. Panics if the limits could deadlock (a configuration defect).
    pub fn new(limits: Limits) -> Sender {
        assert!(
            limits.check().is_ok(),
            "inconsistent link limits {limits:?}"
        );
        Sender {
            limits,
            epoch: 0,
            connected: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            last_sent: 0,
            acked: 0,
            next_needed: 1,
            requested: false,
            caught_up: false,
            sent_bytes: 0,
            credit_limit: 0,
            last_ack_ms: None,
            waiting_since_ms: None,
        }
    }

    /// A handshake succeeded: start over from the resume decision for store epoch `epoch`.
    /// Everything unacknowledged will be read and sent again. A `SenderBehind` decision is
    /// refused and leaves the sender unchanged and disconnected.
    pub fn handle_connected(&mut self, epoch: u64, resume: &Resume) -> Result<(), NeedsNewEpoch> {
        if let Some(needs) = resume.needs_new_epoch(epoch) {
            return Err(needs);
        }
        // `start` is None only for SenderBehind, returned above.
        let from = resume.start().unwrap_or(1);
        assert!(from >= 1, "positions start at 1");
        self.epoch = epoch;
        self.connected = true;
        self.queue.clear();
        self.queued_bytes = 0;
        self.in_flight.clear();
        self.in_flight_bytes = 0;
        self.last_sent = from - 1;
        self.acked = from - 1;
        self.next_needed = from;
        self.requested = false;
        self.caught_up = false;
        self.sent_bytes = 0;
        self.credit_limit = 0;
        self.waiting_since_ms = None;
        Ok(())
    }

    /// The connection ended. What was queued and in flight still counts as lag.
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
        self.requested = false;
    }

    /// The position to read the outbox from, when the sender wants more: at most one read is
    /// outstanding; answer with [`Sender::handle_outbox`].
    pub fn poll_need_outbox(&mut self) -> Option<u64> {
        let low_water = self.queue.len() <= self.limits.queue_events_max / 2
            && self.queued_bytes <= self.limits.queue_bytes_max / 2;
        if !self.connected || self.requested || self.caught_up || !low_water {
            return None;
        }
        self.requested = true;
        Some(self.next_needed)
    }

    /// The answer to a read from `from`: the receiver's outbox entries at positions from
    /// `from` on, in order and without skipping any. An empty answer means caught up. An
    /// answer to an older read (another `from`, or of an earlier connection) is ignored.
    /// Entries beyond the queue limits are not taken; they will be asked for again. Returns
    /// how many entries were taken.
    pub fn handle_outbox(
        &mut self,
        from: u64,
        entries: Vec<WireEvent>,
        now_ms: u64,
    ) -> Result<usize, LinkError> {
        if !self.connected || !self.requested || from != self.next_needed {
            return Ok(0);
        }
        let mut previous = from.saturating_sub(1);
        for e in &entries {
            if e.position <= previous {
                return Err(LinkError::OutboxOrder {
                    from,
                    position: e.position,
                });
            }
            previous = e.position;
            let bytes = u64::try_from(e.bytes.len()).unwrap_or(u64::MAX);
            if bytes > self.limits.event_bytes_max {
                return Err(LinkError::EventTooLarge {
                    position: e.position,
                    bytes,
                    max: self.limits.event_bytes_max,
                });
            }
            if !is_node_id(&e.id.origin) {
                return Err(LinkError::BadOrigin {
                    position: e.position,
                });
            }
        }
        self.requested = false;
        if entries.is_empty() {
            self.caught_up = true;
            return Ok(0);
        }
        let lagging = self.lag().events > 0;
        let mut taken = 0;
        for e in entries {
            let bytes = e.wire_bytes();
            let room = self.queue.len() < self.limits.queue_events_max
                && self.queued_bytes.saturating_add(bytes) <= self.limits.queue_bytes_max;
            if !room {
                break;
            }
            self.next_needed = e.position.saturating_add(1);
            self.queued_bytes += bytes;
            self.queue.push_back(e);
            taken += 1;
        }
        if !lagging && taken > 0 {
            self.waiting_since_ms = Some(now_ms);
        }
        Ok(taken)
    }

    /// The log gained an entry of this receiver's outbox: read again even if caught up.
    pub fn handle_appended(&mut self) {
        self.caught_up = false;
    }

    /// A credit frame: the absolute limit of bytes this connection may carry.
    pub fn handle_credit(&mut self, limit_bytes: u64) {
        if self.connected {
            self.credit_limit = self.credit_limit.max(limit_bytes);
        }
    }

    /// A cumulative acknowledgement. A stale one is ignored; one of another epoch or beyond
    /// what was sent is a protocol error (the sender is unchanged).
    pub fn handle_ack(&mut self, ack: Ack, now_ms: u64) -> Result<(), LinkError> {
        if !self.connected {
            return Ok(());
        }
        if ack.epoch != self.epoch {
            return Err(LinkError::AckEpoch {
                expected: self.epoch,
                got: ack.epoch,
            });
        }
        if ack.position > self.last_sent {
            return Err(LinkError::AckBeyondSent {
                ack: ack.position,
                sent: self.last_sent,
            });
        }
        if ack.position <= self.acked {
            return Ok(());
        }
        self.acked = ack.position;
        while let Some(f) = self.in_flight.front().copied() {
            if f.position > ack.position {
                break;
            }
            self.in_flight.pop_front();
            self.in_flight_bytes -= f.bytes;
        }
        self.last_ack_ms = Some(now_ms);
        self.waiting_since_ms = (self.lag().events > 0).then_some(now_ms);
        Ok(())
    }

    /// An `Ack` or `Credit` frame from the receiver; any other frame is a protocol error.
    pub fn handle_frame(&mut self, frame: Frame, now_ms: u64) -> Result<(), LinkError> {
        match frame {
            Frame::Ack(ack) => self.handle_ack(ack, now_ms),
            Frame::Credit(c) => {
                self.handle_credit(c.limit_bytes);
                Ok(())
            }
            other => Err(LinkError::UnexpectedFrame { got: other.kind() }),
        }
    }

    /// The next batch, if the queue, the credit and the in-flight limit allow one. Call
    /// repeatedly: batches are pipelined, not sent one at a time.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if !self.connected {
            return None;
        }
        let mut events = Vec::new();
        let mut bytes = 0u64;
        while let Some(front) = self.queue.front() {
            let w = front.wire_bytes();
            let total = bytes.saturating_add(w);
            if events.len() >= self.limits.batch_events_max
                || total > self.limits.batch_bytes_max
                || self.sent_bytes.saturating_add(total) > self.credit_limit
                || self.in_flight_bytes.saturating_add(total) > self.limits.in_flight_bytes_max
            {
                break;
            }
            bytes = total;
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= w;
            self.in_flight.push_back(InFlight {
                position: e.position,
                bytes: w,
            });
            events.push(e);
        }
        let last = events.last()?.position;
        let after = self.last_sent;
        self.last_sent = last;
        self.sent_bytes += bytes;
        self.in_flight_bytes += bytes;
        assert!(self.sent_bytes <= self.credit_limit, "sent beyond credit");
        assert!(
            self.in_flight_bytes <= self.limits.in_flight_bytes_max,
            "in flight beyond limit"
        );
        Some(Frame::Batch(Batch {
            epoch: self.epoch,
            after,
            events,
        }))
    }

    /// Events and bytes queued plus in flight. The shell adds what it has not yet read.
    pub fn lag(&self) -> Lag {
        let events = self.queue.len().saturating_add(self.in_flight.len());
        Lag {
            events: u64::try_from(events).unwrap_or(u64::MAX),
            bytes: self.queued_bytes.saturating_add(self.in_flight_bytes),
        }
    }

    /// When the last acknowledgement that advanced arrived.
    pub fn last_ack_ms(&self) -> Option<u64> {
        self.last_ack_ms
    }

    /// Since when the sender has had lag and no acknowledgement; `None` without lag.
    pub fn waiting_since_ms(&self) -> Option<u64> {
        if self.lag().events == 0 {
            return None;
        }
        self.waiting_since_ms
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The store epoch batches carry on this connection.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Position the receiver acknowledged or stated.
    pub fn acked_position(&self) -> u64 {
        self.acked
    }

    /// Position of the last event sent.
    pub fn sent_position(&self) -> u64 {
        self.last_sent
    }

    /// Wire bytes sent on this connection.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    /// The credit limit received on this connection.
    pub fn credit_limit(&self) -> u64 {
        self.credit_limit
    }

    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }

    /// Connected, with nothing queued, in flight or to read: the receiver has everything.
    pub fn is_caught_up(&self) -> bool {
        self.connected
            && self.caught_up
            && !self.requested
            && self.queue.is_empty()
            && self.in_flight.is_empty()
    }
}
