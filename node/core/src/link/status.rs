//! What a link reports (DESIGN.md "Lessons": stalls nobody sees; a child resumes as soon as
//! its parent answers): its state (connecting, connected, stalled, backing off,
//! disconnected), its lag in events and bytes, and its last success time; and when the dialer
//! retries.
//!
//! Invariants: a retry is never later than `max_ms` after a failure nor earlier than half the
//! capped delay; the backoff resets as soon as a handshake succeeds; a link is `Stalled` only
//! while connected with lag and no acknowledgement for `stall_after_ms`.

use serde::{Deserialize, Serialize};

use super::sender::Sender;

/// First retry delay: most 4G drops are momentary, retry soon.
pub const BACKOFF_INITIAL_MS: u64 = 500;
/// Longest retry delay: a village reconnects within a minute of its link coming back.
pub const BACKOFF_MAX_MS: u64 = 60_000;
/// Lag without an acknowledgement this long is a stall: a healthy link acknowledges a batch
/// within seconds even on 4G.
pub const STALL_AFTER_MS: u64 = 120_000;

/// Capped exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl BackoffPolicy {
    pub const DEFAULT: BackoffPolicy = BackoffPolicy {
        initial_ms: BACKOFF_INITIAL_MS,
        max_ms: BACKOFF_MAX_MS,
    };

    /// The delay after `failures` consecutive failures (1 for the first): the capped delay
    /// `min(max, initial · 2^(failures-1))`, of which the upper half is jittered by `jitter`
    /// (an input: the core draws no random numbers), so many villages that lost the same
    /// township do not redial in step.
    pub fn delay_ms(&self, failures: u32, jitter: u64) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        let capped = self
            .initial_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms);
        let half = capped / 2;
        let spread = capped - half;
        half + jitter % spread.saturating_add(1)
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy::DEFAULT
    }
}

/// Consecutive failures and the retry they call for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        assert!(policy.initial_ms <= policy.max_ms, "backoff {policy:?}");
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// A dial or connection failed: when to retry.
    pub fn handle_failure(&mut self, now_ms: u64, jitter: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        now_ms.saturating_add(self.policy.delay_ms(self.failures, jitter))
    }

    /// A handshake succeeded: the next failure starts from the initial delay.
    pub fn handle_success(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The state a link reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkState {
    /// Dialed (or accepted), handshake not complete.
    Connecting,
    Connected,
    /// Connected, with lag and no acknowledgement for `stall_after_ms`.
    Stalled,
    /// The dialer waits until `retry_at_ms`.
    BackingOff {
        retry_at_ms: u64,
    },
    /// The accepting side has no connection from the child.
    Disconnected,
}

/// A link's report, for the clerk's screen and the hubs' supervision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub state: LinkState,
    pub lag_events: u64,
    pub lag_bytes: u64,
    /// The last handshake or acknowledgement.
    pub last_success_ms: Option<u64>,
    /// The protocol version negotiated at the last handshake.
    pub version: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    Connected,
    BackingOff { retry_at_ms: u64 },
    Disconnected,
}

/// One end's view of a link's connection: when to dial, and what to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    backoff: Backoff,
    stall_after_ms: u64,
    phase: Phase,
    last_handshake_ms: Option<u64>,
    version: Option<u32>,
}

impl Link {
    pub fn new(policy: BackoffPolicy, stall_after_ms: u64) -> Link {
        Link {
            backoff: Backoff::new(policy),
            stall_after_ms,
            phase: Phase::Idle,
            last_handshake_ms: None,
            version: None,
        }
    }

    /// Whether the dialer should dial now: never dialed, or its backoff has passed.
    pub fn poll_dial(&self, now_ms: u64) -> bool {
        match self.phase {
            Phase::Idle => true,
            Phase::BackingOff { retry_at_ms } => now_ms >= retry_at_ms,
            Phase::Connecting | Phase::Connected | Phase::Disconnected => false,
        }
    }

    /// A dial started (or a connection was accepted).
    pub fn handle_connecting(&mut self) {
        self.phase = Phase::Connecting;
    }

    /// The handshake succeeded on protocol `version`: reset the backoff.
    pub fn handle_handshake(&mut self, now_ms: u64, version: u32) {
        self.phase = Phase::Connected;
        self.backoff.handle_success();
        self.last_handshake_ms = Some(now_ms);
        self.version = Some(version);
    }

    /// The dialer's connection failed or ended: back off. Returns the retry time.
    pub fn handle_failure(&mut self, now_ms: u64, jitter: u64) -> u64 {
        let retry_at_ms = self.backoff.handle_failure(now_ms, jitter);
        self.phase = Phase::BackingOff { retry_at_ms };
        retry_at_ms
    }

    /// The accepting side's connection ended: wait for the child to dial.
    pub fn handle_disconnected(&mut self) {
        self.phase = Phase::Disconnected;
    }

    /// The report, from this end's sender of the link's stream.
    pub fn status(&self, sender: &Sender, now_ms: u64) -> LinkStatus {
        let lag = sender.lag();
        let state = match self.phase {
            Phase::Idle | Phase::Connecting => LinkState::Connecting,
            Phase::Connected if self.is_stalled(sender, now_ms) => LinkState::Stalled,
            Phase::Connected => LinkState::Connected,
            Phase::BackingOff { retry_at_ms } => LinkState::BackingOff { retry_at_ms },
            Phase::Disconnected => LinkState::Disconnected,
        };
        let last_success_ms = match (self.last_handshake_ms, sender.last_ack_ms()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        LinkStatus {
            state,
            lag_events: lag.events,
            lag_bytes: lag.bytes,
            last_success_ms,
            version: self.version,
        }
    }

    /// Connected, with lag and no acknowledgement for `stall_after_ms`. The shell reports it
    /// and may end the connection to resume afresh.
    pub fn is_stalled(&self, sender: &Sender, now_ms: u64) -> bool {
        self.phase == Phase::Connected
            && sender
                .waiting_since_ms()
                .is_some_and(|since| now_ms.saturating_sub(since) >= self.stall_after_ms)
    }
}
