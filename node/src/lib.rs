//! The Yimen node shell: what every tier runs around the pure core.
//!
//! Invariants: only this shell (and the hub's) reads the clock, touches the disk or opens
//! sockets; the core receives time and state as inputs.

pub mod author;
pub mod backup;
pub mod clerk;
pub mod cli;
pub mod clock;
pub mod config;
pub mod desk;
pub mod node;
pub mod pki;
pub mod print;
pub mod register;
pub mod server;
pub mod store;
pub mod sync;
pub mod tls;
