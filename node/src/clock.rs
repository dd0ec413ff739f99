//! The one source of time of the shell: real, or fixed/stepped for tests and the demo.
//!
//! Invariants: the core never reads a clock; everything it is told about time comes from a
//! `Clock` here, converted to Beijing time whatever the box's zone.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, Utc};

/// A source of the current instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// The current Beijing local time.
    fn beijing(&self) -> NaiveDateTime {
        yimen_core::time::beijing_datetime(self.now()).naive_local()
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(std::time::SystemTime::now())
    }
}

/// The system clock moved by a fixed offset: a box "days later" for tests and training
/// (`yimen-hub serve --clock-offset-secs`). Never for production: every event it dates is off
/// by the offset.
#[derive(Clone, Copy, Debug)]
pub struct OffsetClock {
    pub offset: chrono::Duration,
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + self.offset
    }
}

/// A clock that says what it is told: fixed, or moved by hand (tests, the demo).
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// A clock at this Beijing local time.
    pub fn at_beijing(local: NaiveDateTime) -> ManualClock {
        ManualClock::new(local.and_utc() - chrono::Duration::hours(8))
    }

    /// The instant this clock reads now.
    pub fn now_utc(&self) -> DateTime<Utc> {
        Clock::now(self)
    }

    pub fn set(&self, at: DateTime<Utc>) {
        // A poisoned lock only means another thread panicked mid-set; the value is a plain
        // instant and still usable.
        let mut guard = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *guard = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut guard = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *guard += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
