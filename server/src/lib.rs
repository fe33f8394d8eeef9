//! # portrait-server
//!
//! `portraitd`, the gRPC server of Portrait: a thin translation layer between the `portrait.v1`
//! contract (crate `portrait-proto`) and the embeddable engine (crate `portrait-engine`).
//!
//! A request flows through the modules in this order:
//!
//! ```text
//! TCP ─▶ observe (request id, method, duration, status log)
//!     ─▶ tonic router ─▶ service::{catalog, query, analysis, behaviour, admin, ingest}   thin handlers
//!            convert    proto request  ─▶ engine types  (expressions, literals, keys)
//!            call       engine work on tokio's blocking pool, deadline- and cancel-aware
//!            convert    engine result  ─▶ proto response
//!            status     engine Error   ─▶ tonic::Status (the one mapping)
//! ```
//!
//! Next to the six Portrait services the server offers `grpc.health.v1` and gRPC server
//! reflection (v1 and v1alpha), so generic tools can discover and call the API.
//!
//! - [`config`]: the settings, from a TOML file, `PORTRAIT_*` environment variables and flags.
//! - [`limits`]: the per-request caps (batch sizes, export cap, expression size).
//! - [`server`]: builds the services and runs them until SIGINT/SIGTERM.
//! - [`demo`]: the `--demo` data set.
//! - [`io_threads`]: connections served thread per core; [`cork`]: their answers coalesced into
//!   one socket write per turn of the thread's event loop.
//! - [`idle_poll`]: optional spinners that keep the cores awake between calls (`--idle-poll-us`).

pub mod call;
pub mod config;
pub mod convert;
pub mod cork;
pub mod demo;
pub mod idle_poll;
pub mod io_threads;
pub mod limits;
pub mod observe;
pub mod server;
pub mod service;
pub mod status;

pub use config::Config;
pub use limits::Limits;
