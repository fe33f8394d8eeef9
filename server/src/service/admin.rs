//! `AdminService`: table sizes, versions of the server, its storage format and its API, and
//! online backups.
//!
//! A backup goes to a directory on the server's own file system. The path must be absolute (a
//! relative one would depend on the server's working directory, which callers cannot see) and
//! outside the data directory (the engine would otherwise find the backup's files among its
//! own); the engine refuses a directory that is not empty.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use portrait_engine::storage::{FORMAT_VERSION, OLDEST_SUPPORTED_FORMAT_VERSION};
use portrait_proto::v1::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use super::State;
use crate::call::run_blocking;
use crate::status::OrStatus;

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

/// `path` with every existing ancestor resolved through symbolic links (the rest kept as
/// written), so that two spellings of one place compare equal.
fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Checks the directory of a backup of the database in `data_dir` (see the module header).
pub fn check_backup_dir(dir: &str, data_dir: &Path) -> Result<PathBuf, Status> {
    let path = PathBuf::from(dir);
    if dir.is_empty() || !path.is_absolute() {
        return Err(Status::invalid_argument(format!(
            "the backup directory must be an absolute path on the server, got {dir:?}"
        )));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Status::invalid_argument(format!(
            "the backup directory {dir:?} must not contain `..`"
        )));
    }
    let (to, data) = (resolved(&path), resolved(data_dir));
    if to.starts_with(&data) || data.starts_with(&to) {
        return Err(Status::invalid_argument(format!(
            "the backup directory {dir:?} overlaps the data directory {}",
            data_dir.display()
        )));
    }
    Ok(path)
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

    async fn backup(
        &self,
        request: Request<v1::BackupRequest>,
    ) -> Result<Response<v1::BackupResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let dir = check_backup_dir(&request.get_ref().dir, state.db.dir())?;
        let started = Instant::now();
        run_blocking(call, move |_| {
            let stats = state.db.backup(&dir).or_status()?;
            tracing::info!(
                dir = %dir.display(),
                files = stats.files,
                linked = stats.linked,
                bytes = stats.bytes,
                "backup written"
            );
            Ok(Response::new(v1::BackupResponse {
                files: stats.files,
                linked: stats.linked,
                bytes: stats.bytes,
                elapsed_us: started.elapsed().as_micros() as u64,
            }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_dirs_are_absolute_and_apart_from_the_data() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let ok = root.path().join("backups/monday");
        let ok_text = ok.to_str().unwrap();
        assert_eq!(check_backup_dir(ok_text, &data).unwrap(), ok);
        let refused = |dir: &str| {
            let status = check_backup_dir(dir, &data).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{dir}");
            status.message().to_owned()
        };
        assert!(refused("").contains("absolute"));
        assert!(refused("backups/monday").contains("absolute"));
        let inside = data.join("tables/backup");
        assert!(refused(inside.to_str().unwrap()).contains("overlaps"));
        assert!(refused(root.path().to_str().unwrap()).contains("overlaps"));
        let sneaky = format!("{}/../data/x", ok_text);
        assert!(refused(&sneaky).contains("`..`"));
        #[cfg(unix)]
        {
            let link = root.path().join("link");
            std::os::unix::fs::symlink(&data, &link).unwrap();
            let through = link.join("b");
            assert!(refused(through.to_str().unwrap()).contains("overlaps"));
        }
    }
}
