//! End-to-end tests of Portrait: the real `portraitd` binary on a free loopback port over a
//! temporary data directory, driven through the Rust client (`portrait-client`) and the
//! `portrait` command line, with answers compared with the engine's own on the same data.
//!
//! One integration-test binary with a module per concern (one link, one shared server):
//!
//! - [`fixture`]: the shared demo server and the same data set loaded in-process (the expected
//!   answers);
//! - [`query`], [`analysis`], [`catalog`]: every RPC through the client, against the engine;
//! - [`behaviour`]: retention, funnels, frequency and activity through the CLI, and `did(...)`
//!   through the structured AST;
//! - [`cli`]: the command line's output and exit codes;
//! - [`errors`]: malformed expressions, unknown fields, tables and users;
//! - [`limits`]: oversized requests;
//! - [`deadline`]: deadlines that expire;
//! - [`restart`]: a server restart while a client keeps calling (its own server);
//! - [`ingest`]: `portrait load` of CSV and Parquet files, versions (its own server);
//! - [`realtime`]: real-time writes through the client and the CLI, refusals, SIGKILL rounds,
//!   a torn log tail, backup and restore (a server per test);
//! - [`reflection`]: gRPC server reflection.
//!
//! The harness (binaries, the `Server` guard) is the library of this crate, `tests/src/lib.rs`.

mod analysis;
mod behaviour;
mod catalog;
mod cli;
mod deadline;
mod errors;
mod fixture;
mod ingest;
mod limits;
mod query;
mod realtime;
mod reflection;
mod restart;
