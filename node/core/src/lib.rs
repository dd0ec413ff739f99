//! The pure core of Yimen: domain rules and protocol state machines.
//!
//! Nothing here performs IO, reads a clock or draws random numbers: time, randomness and
//! stored state are inputs; events, replies and timers are outputs. `tests/purity.rs` enforces
//! both the dependency list and the absence of clock reads.

pub mod calendar;
pub mod case;
pub mod catalog;
pub mod command;
pub mod deadline;
pub mod division;
pub mod holdback;
pub mod intake;
pub mod link;
pub mod numbering;
pub mod person;
pub mod routing;
pub mod sample;
pub mod time;
pub mod topology;
pub mod walkthrough;
