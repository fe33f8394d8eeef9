//! The gRPC services, one file each: [`catalog`], [`query`], [`analysis`], [`behaviour`],
//! [`admin`], [`ingest`].
//!
//! Handlers stay thin: take the request apart, run the engine work on the blocking pool with
//! [`crate::call::run_blocking`], convert the result with [`crate::convert`]. Engine errors become
//! statuses only through [`crate::status`].

pub mod admin;
pub mod analysis;
pub mod behaviour;
pub mod catalog;
pub mod ingest;
pub mod query;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use portrait_engine::expr::Expr;
use portrait_engine::{Crowd, Database, TableSnapshot};
use tonic::{Request, Status};

use crate::call::{Call, Flag};
use crate::convert;
use crate::limits::Limits;
use crate::status::OrStatus;

/// What every handler shares: the database, the limits and the shutdown flag.
#[derive(Debug)]
pub struct State {
    /// The open database.
    pub db: Arc<Database>,
    /// Per-request limits.
    pub limits: Limits,
    /// Largest message the server sends; bigger responses are refused before encoding.
    pub max_message_bytes: usize,
    /// Raised when the server starts shutting down; running work stops at its next check.
    pub shutdown: Flag,
    /// Tables whose id dictionary is in memory, so that a key lookup never waits for it to load.
    warm: RwLock<HashSet<String>>,
}

impl State {
    /// Shared state over an open database.
    pub fn new(db: Arc<Database>, limits: Limits, max_message_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            db,
            limits,
            max_message_bytes,
            shutdown: Flag::default(),
            warm: RwLock::default(),
        })
    }

    /// Loads the id dictionary of every table, in the background; point lookups on a table run
    /// on the async threads (see [`crate::call::run_point`]) once its dictionary is in memory.
    pub fn warm_up(self: &Arc<Self>) {
        for name in self.db.tables() {
            let state = self.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let Ok(table) = state.db.table(&name) else {
                    return;
                };
                match table.snapshot().dictionary_bytes() {
                    Ok(bytes) => {
                        tracing::info!(
                            table = %name,
                            bytes,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "id dictionary loaded"
                        );
                        state.set_warm(&name, true);
                    }
                    Err(e) => {
                        tracing::warn!(table = %name, error = %e, "cannot load the id dictionary")
                    }
                }
            });
        }
    }

    /// Records whether table `name`'s id dictionary is known to be in memory.
    pub fn set_warm(&self, name: &str, warm: bool) {
        let mut set = self.warm.write().unwrap_or_else(|e| e.into_inner());
        if warm {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
        }
    }

    /// Whether table `name`'s id dictionary is known to be in memory.
    pub fn is_warm(&self, name: &str) -> bool {
        self.warm
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// The call context of a request: its deadline, and this server's shutdown flag.
    pub fn call<T>(&self, request: &Request<T>) -> Call {
        Call::new(request.metadata(), &self.shutdown)
    }

    /// The current snapshot of table `name`.
    pub fn snapshot(&self, name: &str) -> Result<Arc<TableSnapshot>, Status> {
        if name.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        Ok(self.db.table(name).or_status()?.snapshot())
    }

    /// Refuses a response larger than the largest message the server may send, with a status
    /// that says how to ask for less (`hint`), rather than failing while encoding it.
    pub fn fits<M: prost::Message>(&self, response: M, hint: &str) -> Result<M, Status> {
        let len = response.encoded_len();
        if len > self.max_message_bytes {
            return Err(Status::resource_exhausted(format!(
                "the response would be {len} bytes, over this server's message limit of {} \
                 bytes; {hint}",
                self.max_message_bytes
            )));
        }
        Ok(response)
    }

    /// The expression `message` of a request on table `snap`, converted.
    pub fn expr(
        &self,
        snap: &TableSnapshot,
        message: Option<&portrait_proto::v1::Expr>,
        what: &str,
    ) -> Result<Expr, Status> {
        convert::expr(message, what, snap.key_kind(), &self.limits)
    }
}

/// The `as_of` label of a request: `None` when absent or empty.
pub fn as_of(label: &Option<String>) -> Option<&str> {
    label.as_deref().filter(|l| !l.is_empty())
}

/// Plans `expr` at `snap`, reading fields at version `as_of` when given.
pub fn plan<'s>(
    snap: &'s TableSnapshot,
    expr: &Expr,
    as_of: Option<&'s str>,
) -> Result<Crowd<'s>, Status> {
    snap.crowd_as_of(expr, as_of).or_status()
}
