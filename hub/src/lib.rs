//! The Yimen hub: what only township, county and city hubs do, on top of the node shell.
//!
//! Invariants: the hub adds no second store or clock: it runs the node shell's (children's
//! links, desks, authoring and backups are the shell's services), and its own commands (the
//! deployment's PKI, desk, author, backup and restore clients, the demo) call the node library
//! or those services.

pub mod author;
pub mod backup;
pub mod cli;
pub mod demo;
pub mod desk;
