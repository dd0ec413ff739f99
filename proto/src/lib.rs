//! The Yimen wire contract: the protobuf types and services generated from `proto/`, the
//! compatibility checker that guards them against breaking changes, and the checked
//! conversions between wire and domain types.
//!
//! Invariants: domain types never derive prost (only this crate knows the wire); a malformed
//! message becomes a [`convert::WireError`] naming the field, never a panic; a released field,
//! enum value, message or method is never removed, renumbered or retyped (`compat`,
//! `tests/descriptors.rs`).

pub mod compat;
pub mod convert;

/// Generated protobuf types and gRPC services of package `yimen.v1`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod pb {
    tonic::include_proto!("yimen.v1");
}

/// The encoded `prost_types::FileDescriptorSet` of every `.proto` file of the contract
/// (with source info), as compiled by `build.rs`.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/yimen_descriptor.bin"));
