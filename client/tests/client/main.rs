//! Integration tests of `portrait-client` and the `portrait` binary against an in-process mock
//! of `QueryService` on loopback.
//!
//! The mock stands in for `portraitd` so that retries, stream resumption, error mapping and the
//! CLI's exit codes and JSON output are exercised over real gRPC; end-to-end tests against the
//! real server live in the workspace's `tests/` crate.

mod cli;
mod library;
mod mock;
