//! The Yimen hub: what only township, county and city hubs do, on top of the node shell.
//!
//! Invariants: the hub adds no second store or clock: it runs the node shell's, and its own
//! duties (PKI for the deployment, later the children's links, desks and authoring) call the
//! node library.

pub mod author;
pub mod backup;
pub mod cli;
pub mod demo;
pub mod desk;
