//! `AdminService`: table sizes and versions of the server, its storage format and its API.

use std::path::Path;
use std::sync::Arc;

use portrait_engine::storage::{FORMAT_VERSION, OLDEST_SUPPORTED_FORMAT_VERSION};
use portrait_proto::v1::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use super::State;
use crate::call::run_blocking;

/// The admin service over the shared [`State`].
#[derive(Debug, Clone)]
pub struct AdminApi {
    state: Arc<State>,
}

impl AdminApi {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// Bytes of the regular files in `dir` and below; unreadable entries count as 0.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn stats(
        &self,
        request: Request<v1::StatsRequest>,
    ) -> Result<Response<v1::StatsResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        run_blocking(call, move |call| {
            let mut tables = Vec::new();
            for name in state.db.tables() {
                call.check()?;
                let Ok(table) = state.db.table(&name) else {
                    // Dropped since `tables()` listed it.
                    continue;
                };
                let snap = table.snapshot();
                tables.push(v1::TableStats {
                    users: snap.users().into(),
                    fields: snap.fields().count() as u64,
                    // The table's directory, as laid out by the engine's `Database`.
                    bytes_on_disk: bytes_under(&state.db.dir().join("tables").join(&name)),
                    name,
                });
            }
            Ok(Response::new(v1::StatsResponse { tables }))
        })
        .await
    }

    async fn version(
        &self,
        _request: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(v1::VersionResponse {
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            format_version: FORMAT_VERSION,
            oldest_supported_format_version: OLDEST_SUPPORTED_FORMAT_VERSION,
            api_version: "v1".to_owned(),
        }))
    }
}
