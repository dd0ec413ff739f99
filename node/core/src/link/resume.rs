//! Where a sender continues after a handshake, and when a store must take a new epoch
//! (DESIGN.md "Events: one log, routed on a tree"; "Lessons": checkpoints silently lost send
//! clients back to zero, a server restored from backup never gets its documents back).
//!
//! Epochs are ordered: a store that must take a new epoch takes one above its own and above
//! every epoch a peer stated for it ([`NeedsNewEpoch::choose`]). So a stated epoch below the
//! sender's names an older store of the sender (resume from the start), and one above it means
//! the sender's store is behind what the peer saw (an old copy, or a new box whose fresh epoch
//! came out lower): it takes a new epoch above the stated one.
//!
//! Invariants: [`resume`] continues after a cursor only when the cursor names the sender's
//! epoch and the sender holds the very event (same digest) at that position; it never answers
//! `From` a position beyond the sender's log. An older epoch or no cursor resumes from the
//! start (re-delivery is harmless: receivers deduplicate by identity).

use serde::{Deserialize, Serialize};

use super::{Cursor, Digest, LinkError};

/// Spread of a new epoch taken above a floor: two stores that take a new epoch above the
/// same floor with different fresh values still differ.
pub const EPOCH_STRIDE: u64 = 1 << 32;

/// What the sender's log says, for resume decisions and store checks.
pub trait LogView {
    /// The store's epoch.
    fn epoch(&self) -> u64;
    /// The position of the last event in the log (0 when empty).
    fn last_position(&self) -> u64;
    /// The digest of the event at `position`, if the log holds one there.
    fn digest_at(&self, position: u64) -> Option<Digest>;
}

/// Where a sender continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    /// With the first outbox entry at or after this position.
    From(u64),
    /// From the first outbox entry: the receiver has nothing of this epoch.
    FromStart,
    /// The sender's store is behind what the receiver saw: it must take a new epoch before it
    /// writes or numbers anything, and be refilled. It sends nothing.
    SenderBehind { stated: Cursor, have: u64 },
}

impl Resume {
    /// The first position to send, or `None` when the sender is behind.
    pub fn start(&self) -> Option<u64> {
        match self {
            Resume::From(p) => Some(*p),
            Resume::FromStart => Some(1),
            Resume::SenderBehind { .. } => None,
        }
    }

    /// What a sender with store epoch `epoch` must do before sending, if anything.
    pub fn needs_new_epoch(&self, epoch: u64) -> Option<NeedsNewEpoch> {
        match self {
            Resume::SenderBehind { stated, have } => Some(NeedsNewEpoch {
                behind: Behind::Peer {
                    stated: *stated,
                    have: *have,
                },
                floor: epoch.max(stated.epoch),
            }),
            Resume::From(_) | Resume::FromStart => None,
        }
    }
}

/// Decides where the sender continues, from the cursor its receiver stated at the handshake
/// and the sender's own log.
pub fn resume(stated: Option<&Cursor>, log: &impl LogView) -> Resume {
    let Some(c) = stated else {
        return Resume::FromStart;
    };
    let epoch = log.epoch();
    let have = log.last_position();
    if c.epoch < epoch {
        return Resume::FromStart;
    }
    let behind = Resume::SenderBehind { stated: *c, have };
    if c.epoch > epoch || c.position > have {
        return behind;
    }
    if c.position == 0 {
        return Resume::FromStart;
    }
    if log.digest_at(c.position) != Some(c.digest) {
        return behind;
    }
    // `c.position <= have`, and a log never holds u64::MAX events: the add cannot saturate.
    Resume::From(c.position.saturating_add(1))
}

/// The high-water mark: the store's epoch and the position and digest of the last event it
/// made durable, kept beside the store and compared after it opens. The shell rewrites it
/// when it takes a new epoch: a copy of the store from before that epoch change then fails
/// the check even when it holds the marked event (after a rollback the position alone is
/// stale).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub epoch: u64,
    pub position: u64,
    pub digest: Digest,
}

/// Checks a store against its own high-water mark and against what a peer stated at a
/// handshake; a store behind either, or holding events without a mark, must take a new
/// epoch. (A store without a mark and without events passes: the shell must not reopen an
/// old empty store as if it were new.)
pub fn check_store(
    log: &impl LogView,
    mark: Option<&Mark>,
    stated: Option<&Cursor>,
) -> Result<(), NeedsNewEpoch> {
    let have = log.last_position();
    if mark.is_none() && have > 0 {
        return Err(NeedsNewEpoch {
            behind: Behind::MarkMissing { have },
            floor: log.epoch(),
        });
    }
    if let Some(m) = mark {
        let moved = m.position > 0 && log.digest_at(m.position) != Some(m.digest);
        if m.epoch != log.epoch() || m.position > have || moved {
            return Err(NeedsNewEpoch {
                behind: Behind::HighWaterMark { mark: *m, have },
                floor: log.epoch().max(m.epoch),
            });
        }
    }
    match resume(stated, log).needs_new_epoch(log.epoch()) {
        Some(needs) => Err(needs),
        None => Ok(()),
    }
}

/// What a store is behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behind {
    /// Its own high-water mark names another epoch or an event it does not hold.
    HighWaterMark { mark: Mark, have: u64 },
    /// It holds events but its high-water mark is gone: it cannot tell what it lost.
    MarkMissing { have: u64 },
    /// It was restored from a copy: events of its epoch that no peer saw may survive in
    /// another copy, so it never writes in that epoch again.
    Restored { have: u64 },
    /// A peer stated a cursor the store cannot match.
    Peer { stated: Cursor, have: u64 },
}

/// The store must take a new epoch above `floor` before it writes or numbers anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the store is behind ({behind:?}): it needs an epoch above {floor:016x}")]
pub struct NeedsNewEpoch {
    pub behind: Behind,
    /// Every epoch the store or a peer has used for it; the new one must be above.
    pub floor: u64,
}

impl NeedsNewEpoch {
    /// For a store the shell knows was restored from a copy: a new epoch above its own and
    /// above the one a peer stated (call it at the first handshake, before writing).
    pub fn restored(log: &impl LogView, stated: Option<&Cursor>) -> NeedsNewEpoch {
        let epoch = log.epoch();
        NeedsNewEpoch {
            behind: Behind::Restored {
                have: log.last_position(),
            },
            floor: stated.map_or(epoch, |c| c.epoch.max(epoch)),
        }
    }

    /// The new epoch from a fresh value the shell drew (clock and process mixed): the fresh
    /// value itself when it is above the floor, else a value spread above the floor by it.
    pub fn choose(&self, fresh: u64) -> Result<u64, LinkError> {
        if fresh > self.floor {
            return Ok(fresh);
        }
        let step = 1 + fresh % EPOCH_STRIDE;
        self.floor
            .checked_add(step)
            .or_else(|| self.floor.checked_add(1))
            .ok_or(LinkError::EpochExhausted { floor: self.floor })
    }
}
