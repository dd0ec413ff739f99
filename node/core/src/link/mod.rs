//! The replication protocol of one link, as pure state machines (sans-IO, after quinn-proto).
//!
//! A link is one gRPC stream that the child dials (DESIGN.md "Architecture in one picture").
//! It carries two one-way streams: **up** (child → parent) and **down** (parent → child). Each
//! stream has a [`Sender`] at its source and a [`Receiver`] at its destination. A connection
//! opens with a handshake ([`ChildHandshake`], [`ParentHandshake`]) that negotiates the
//! protocol version and in which each *receiver states its cursor*: the sender's epoch it knew,
//! and the position and digest of the last event it made durable. Each sender then decides
//! where to continue with [`resume`]. [`Link`] tracks the connection for status reports and
//! reconnects with a capped exponential [`Backoff`].
//!
//! The shell does every read, write, fsync and socket operation: it feeds outbox entries and
//! frames in (`handle_*`, with `now_ms`), drains frames to send and events to persist
//! (`poll_*`), and reports group commits back. Per-case hold-back is the shell's apply step
//! ([`crate::holdback`]); this module only carries opaque events.
//!
//! Invariants:
//! * Durable before acknowledged: a receiver acknowledges only positions the shell reported
//!   durable, never beyond the last position it handed out to persist.
//! * Flow control: on one connection a sender never sends more bytes than the receiver
//!   granted (`sent ≤ credit limit`), nor keeps more than `in_flight_bytes_max` bytes
//!   unacknowledged.
//! * No skipping: a receiver takes a batch only if it has the sender's announced epoch and
//!   continues exactly where the last one ended (`after` = last position received, positions
//!   strictly increasing), so a lost or reordered batch is refused, never skipped by a cursor;
//!   a refused batch changes nothing. A sender continues after a stated cursor only when the
//!   cursor names its epoch and the digest at that position matches.
//! * Exactly once by identity: what a receiver hands out to persist holds no event whose id
//!   the shell has seen or that is already waiting to be persisted.
//! * A sender whose store is behind what a peer saw (or behind its own high-water mark, or
//!   restored from a copy) never sends nor writes: it must take a new epoch first
//!   ([`check_store`], [`NeedsNewEpoch`]).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod handshake;
pub mod receiver;
pub mod resume;
pub mod sender;
pub mod status;

pub use handshake::{
    Agreed, ChildHandshake, HandshakeError, Hello, HelloAccepted, ParentHandshake, VersionRange,
    Welcome, negotiate,
};
pub use receiver::{Accepted, Persist, Receiver};
pub use resume::{Behind, LogView, Mark, NeedsNewEpoch, Resume, check_store, resume};
pub use sender::Sender;
pub use status::{Backoff, BackoffPolicy, Link, LinkState, LinkStatus};

/// A digest of an event's stored bytes, computed by the shell (blake3).
pub type Digest = [u8; 32];

/// Digits of a node id: a node is named by its 12-digit division code.
pub const NODE_ID_DIGITS: usize = 12;

/// Wire bytes charged for an event besides its origin and payload: epoch, seq and position
/// (8 bytes each) and the digest (32).
pub const EVENT_FIXED_BYTES: u64 = 56;

/// Most payload bytes of one event: an event is an envelope and a record (a catalog revision
/// of a whole county is the largest); scans of materials travel out of band.
pub const EVENT_BYTES_MAX: u64 = 1 << 20;
/// Most events in one batch: bounds the work of one receive call and of one persist output.
pub const BATCH_EVENTS_MAX: usize = 512;
/// Most bytes in one batch: a frame stays under gRPC's default 4 MiB message limit.
pub const BATCH_BYTES_MAX: u64 = 2 << 20;
/// Bytes a receiver grants beyond what it made durable: what it buffers unpersisted per link.
pub const CREDIT_WINDOW_BYTES: u64 = 8 << 20;
/// Unacknowledged bytes a sender keeps outstanding: covers a slow 4G round trip, and bounds
/// what a reconnect re-sends.
pub const IN_FLIGHT_BYTES_MAX: u64 = 16 << 20;
/// Outbox entries a sender holds in memory, read but not yet sent.
pub const QUEUE_EVENTS_MAX: usize = 4096;
/// Outbox bytes a sender holds in memory, read but not yet sent.
pub const QUEUE_BYTES_MAX: u64 = 8 << 20;
/// Longest detail text of an error frame: enough for a sentence naming both version ranges.
pub const ERROR_DETAIL_BYTES_MAX: usize = 1024;

/// The identity of an event: its origin node, the origin store's epoch and the origin's
/// sequence in that epoch. Duplicates are detected by exact identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    /// The origin node's 12-digit id.
    pub origin: String,
    pub epoch: u64,
    pub seq: u64,
}

/// An event as a link carries it: opaque bytes with their identity, their position in the
/// *sender's* own apply order, and the digest of the stored bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub id: EventId,
    /// Position in the sender's log (1 for its first event); outboxes are sparse in it.
    pub position: u64,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl WireEvent {
    /// Bytes charged against batch limits and credit; sender and receiver agree on it.
    pub fn wire_bytes(&self) -> u64 {
        let origin = u64::try_from(self.id.origin.len()).unwrap_or(u64::MAX);
        let payload = u64::try_from(self.bytes.len()).unwrap_or(u64::MAX);
        EVENT_FIXED_BYTES
            .saturating_add(origin)
            .saturating_add(payload)
    }
}

impl fmt::Debug for WireEvent {
    // Payloads may hold personal data (names, ID numbers): never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireEvent")
            .field("id", &self.id)
            .field("position", &self.position)
            .field("digest", &short_hex(&self.digest))
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The first bytes of a digest in hex, for logs.
fn short_hex(d: &Digest) -> String {
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is a node id: exactly 12 ASCII digits.
pub fn is_node_id(s: &str) -> bool {
    s.len() == NODE_ID_DIGITS && s.bytes().all(|b| b.is_ascii_digit())
}

/// Where a receiver has durably applied a stream, stated by the receiver at every handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// The sender's epoch the receiver knew.
    pub epoch: u64,
    /// The sender-side position of the last event made durable.
    pub position: u64,
    /// The digest of the event at `position`.
    pub digest: Digest,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cursor({:016x}@{} {})",
            self.epoch,
            self.position,
            short_hex(&self.digest)
        )
    }
}

/// How far a sender is ahead of its receiver: events and bytes queued plus in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    pub events: u64,
    pub bytes: u64,
}

/// The ids the shell already holds durably; the receiver filters against them.
pub trait Seen {
    fn contains(&self, id: &EventId) -> bool;
}

impl Seen for BTreeSet<EventId> {
    fn contains(&self, id: &EventId) -> bool {
        BTreeSet::contains(self, id)
    }
}

impl<S: std::hash::BuildHasher> Seen for HashSet<EventId, S> {
    fn contains(&self, id: &EventId) -> bool {
        HashSet::contains(self, id)
    }
}

/// The limits of a link. Production uses [`Limits::DEFAULT`] at both ends; tests shrink them
/// to exercise flow control with few events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub event_bytes_max: u64,
    pub batch_events_max: usize,
    pub batch_bytes_max: u64,
    pub credit_window_bytes: u64,
    pub in_flight_bytes_max: u64,
    pub queue_events_max: usize,
    pub queue_bytes_max: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        event_bytes_max: EVENT_BYTES_MAX,
        batch_events_max: BATCH_EVENTS_MAX,
        batch_bytes_max: BATCH_BYTES_MAX,
        credit_window_bytes: CREDIT_WINDOW_BYTES,
        in_flight_bytes_max: IN_FLIGHT_BYTES_MAX,
        queue_events_max: QUEUE_EVENTS_MAX,
        queue_bytes_max: QUEUE_BYTES_MAX,
    };

    /// Wire bytes of the largest event these limits admit.
    pub fn event_wire_bytes_max(&self) -> u64 {
        // `NODE_ID_DIGITS` is 12: the conversion cannot fail.
        let origin = u64::try_from(NODE_ID_DIGITS).unwrap_or(u64::MAX);
        self.event_bytes_max
            .saturating_add(EVENT_FIXED_BYTES)
            .saturating_add(origin)
    }

    /// Checks that the limits cannot deadlock a link: the largest event fits in a batch, a
    /// batch fits in the credit window, in flight and in half the queue (a sender asks for
    /// more when its queue is half empty).
    pub fn check(&self) -> Result<(), LimitsError> {
        let event = self.event_wire_bytes_max();
        let problems = [
            (self.event_bytes_max == 0, "event_bytes_max is zero"),
            (self.batch_events_max == 0, "batch_events_max is zero"),
            (
                event > self.batch_bytes_max,
                "the largest event does not fit in batch_bytes_max",
            ),
            (
                self.batch_bytes_max > self.credit_window_bytes,
                "a full batch does not fit in credit_window_bytes",
            ),
            (
                event > self.in_flight_bytes_max,
                "the largest event does not fit in in_flight_bytes_max",
            ),
            (self.queue_events_max < 2, "queue_events_max is below 2"),
            (
                event.saturating_mul(2) > self.queue_bytes_max,
                "two of the largest events do not fit in queue_bytes_max",
            ),
        ];
        match problems.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(LimitsError(why)),
            None => Ok(()),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

// The defaults must pass their own check (tests/link.rs checks `Limits::DEFAULT` too).
const EVENT_WIRE_BYTES_MAX: u64 = EVENT_BYTES_MAX + EVENT_FIXED_BYTES + NODE_ID_DIGITS as u64;
const _: () = assert!(EVENT_WIRE_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= CREDIT_WINDOW_BYTES);
const _: () = assert!(BATCH_BYTES_MAX <= IN_FLIGHT_BYTES_MAX);
const _: () = assert!(2 * EVENT_WIRE_BYTES_MAX <= QUEUE_BYTES_MAX);

/// Limits that would deadlock a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("link limits are inconsistent: {0}")]
pub struct LimitsError(pub &'static str);

/// One frame of a link stream. On the child→parent direction a `Batch` belongs to the up
/// stream and `Ack`/`Credit` to the down stream; the other direction mirrors it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    Batch(Batch),
    Ack(Ack),
    Credit(Credit),
    Error(ErrorFrame),
}

impl Frame {
    /// The frame's kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Welcome(_) => "Welcome",
            Frame::Batch(_) => "Batch",
            Frame::Ack(_) => "Ack",
            Frame::Credit(_) => "Credit",
            Frame::Error(_) => "Error",
        }
    }
}

/// Events of one stream, continuing exactly after position `after`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The sender's epoch: positions are numbered in it.
    pub epoch: u64,
    /// The position of the last event sent before this batch on this connection (the resume
    /// point for the first batch): lets the receiver refuse a batch after a lost one.
    pub after: u64,
    /// Non-empty, positions strictly increasing and above `after`.
    pub events: Vec<WireEvent>,
}

impl Batch {
    /// Bytes charged for the batch: the sum of its events' wire bytes.
    pub fn wire_bytes(&self) -> u64 {
        self.events
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.wire_bytes()))
    }
}

/// Cumulative: the receiver made every event up to `position` of the sender's `epoch` durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub epoch: u64,
    pub position: u64,
}

/// Absolute flow-control limit (like QUIC's MAX_STREAM_DATA): the sender may have sent at
/// most `limit_bytes` wire bytes on this connection. Absolute, so a duplicated or reordered
/// credit frame never grants more than the receiver meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub limit_bytes: u64,
}

/// Why the peer ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    /// English, for the log; at most [`ERROR_DETAIL_BYTES_MAX`] bytes.
    pub detail: String,
}

impl ErrorFrame {
    /// An error frame, its detail cut to [`ERROR_DETAIL_BYTES_MAX`] bytes on a char boundary.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ErrorFrame {
        let mut detail = detail.into();
        if detail.len() > ERROR_DETAIL_BYTES_MAX {
            let mut cut = ERROR_DETAIL_BYTES_MAX;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        ErrorFrame { code, detail }
    }
}

/// What an error frame means for the dialer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No common protocol version: retrying will not help until one side is upgraded.
    Version,
    /// A frame broke the protocol; reconnect and resume from the stated cursors.
    Protocol,
    /// The sender is taking a new epoch: reconnect at once.
    NewEpoch,
    /// The handshake did not complete in time.
    Timeout,
}

/// Errors of the sender and receiver: bad frames from the peer (the connection must end and
/// the link resume from stated cursors), and shell inputs that break the contract.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("batch from epoch {got:016x}, expected {expected:016x}")]
    UnexpectedEpoch { expected: u64, got: u64 },
    #[error("empty batch")]
    EmptyBatch,
    #[error("batch continues after position {after}, but {received} was already received")]
    Backwards { after: u64, received: u64 },
    #[error("batch continues after position {after}, but only {received} was received")]
    Gap { after: u64, received: u64 },
    #[error("position {position} does not follow {previous}")]
    NotIncreasing { previous: u64, position: u64 },
    #[error("batch of {events} events and {bytes} bytes is over the limits")]
    BatchTooLarge { events: usize, bytes: u64 },
    #[error("event at position {position} has {bytes} bytes, over the {max} allowed")]
    EventTooLarge { position: u64, bytes: u64, max: u64 },
    #[error("event at position {position} has an origin that is not a 12-digit node id")]
    BadOrigin { position: u64 },
    #[error("batch would reach {offset} bytes, over the granted {limit}")]
    OverCredit { offset: u64, limit: u64 },
    #[error("acknowledgement of epoch {got:016x}, expected {expected:016x}")]
    AckEpoch { expected: u64, got: u64 },
    #[error("acknowledgement of position {ack}, but only {sent} was sent")]
    AckBeyondSent { ack: u64, sent: u64 },
    #[error("unexpected {got} frame")]
    UnexpectedFrame { got: &'static str },
    #[error("outbox answer for position {from} starts at position {position}")]
    OutboxOrder { from: u64, position: u64 },
    #[error("persisted up to {up_to}, but only {issued} was handed out to persist")]
    PersistedBeyondIssued { up_to: u64, issued: u64 },
    #[error("no epoch above {floor:016x} is left")]
    EpochExhausted { floor: u64 },
}

impl LinkError {
    /// The error frame telling the peer why the connection ends.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(ErrorFrame::new(ErrorCode::Protocol, self.to_string()))
    }
}
