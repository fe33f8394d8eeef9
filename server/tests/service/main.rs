//! In-process tests of the gRPC services: a server on a loopback port over a small demo table,
//! called through the generated stubs and compared with the engine's own answers.
//!
//! The end-to-end tests of the real `portraitd` binary live in the workspace's `tests/` crate.

mod behaviour;
mod harness;
mod platform;
mod query;
