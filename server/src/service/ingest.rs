//! `IngestService`: file loads (streamed or by server-side path), field versions, and real-time
//! writes with their compaction.
//!
//! A streamed load spills the file's bytes to a temporary file under `<data-dir>/tmp/` (removed
//! when the call ends, whatever its outcome), then runs the engine's import on the blocking pool
//! like any other engine call: a client that goes away, a passed deadline or a shutdown stops the
//! import at its next batch, and nothing is published. Each message is bounded by the server's
//! message size limit; a file is as large as the data directory's disk allows.
//!
//! A real-time `Write` batch is checked against `limits.max_write_batch` before anything else,
//! converted ([`crate::convert::writes`]) and committed by the engine on the blocking pool; the
//! engine acknowledges it only once it is durable and visible. `Compact` and `DeltaStats` are
//! the engine's calls of the same names.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use portrait_engine::import::{self, FileType, ImportOptions, ImportSummary, Mapping, Shape};
use portrait_proto::v1::{self, ingest_service_server::IngestService, load_request};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::State;
use crate::call::{Call, run_blocking};
use crate::status::OrStatus;
use crate::{convert, limits};

/// The ingest service over the shared [`State`].
#[derive(Debug, Clone)]
pub struct IngestApi {
    state: Arc<State>,
}

impl IngestApi {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The directory of spilled uploads.
pub fn spill_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

/// A spilled upload, removed when dropped, and the name its client gave it.
#[derive(Debug)]
struct Spill(PathBuf, String);

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Engine import options from the wire options (the label is returned apart).
fn import_options(o: &v1::LoadOptions) -> Result<(ImportOptions, String), Status> {
    let shape = match v1::LoadFormat::try_from(o.format) {
        Ok(v1::LoadFormat::Wide) => Shape::Wide,
        Ok(v1::LoadFormat::Long) => Shape::Long,
        Ok(v1::LoadFormat::Events) => Shape::Events,
        _ => {
            return Err(Status::invalid_argument(
                "format is required: wide, long or events",
            ));
        }
    };
    let mut options = ImportOptions::new(shape);
    options.file_type = match v1::FileType::try_from(o.file_type) {
        Ok(v1::FileType::Csv) => Some(FileType::Csv),
        Ok(v1::FileType::Tsv) => Some(FileType::Tsv),
        Ok(v1::FileType::Parquet) => Some(FileType::Parquet),
        // Each file's extension (kept by its spilled copy) or first bytes decide.
        _ => None,
    };
    options.key = Some(o.key_column.clone()).filter(|k| !k.is_empty());
    if !o.mapping_toml.is_empty() {
        options.mapping = Mapping::from_toml(&o.mapping_toml).or_status()?;
    }
    options.skip_bad_rows = o.skip_bad_rows;
    let label = if o.version.is_empty() {
        import::default_label()
    } else {
        o.version.clone()
    };
    Ok((options, label))
}

fn response(s: ImportSummary, started: Instant) -> v1::LoadResponse {
    v1::LoadResponse {
        version: s.load.label,
        rows: s.rows,
        skipped: s
            .skipped
            .into_iter()
            .map(|r| v1::SkippedRows {
                reason: r.reason,
                rows: r.rows,
                first_file: r
                    .first_file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                first_row: r.first_row,
            })
            .collect(),
        fields: s.fields,
        new_users: s.load.new_users.into(),
        users: s.load.users.into(),
        bytes_read: s.bytes,
        bytes_written: s.load.bytes,
        elapsed_us: started.elapsed().as_micros() as u64,
    }
}

/// Runs the import of `paths` into `table` on the blocking pool, stopping when `call` says so.
async fn run_import(
    state: Arc<State>,
    call: Call,
    table: String,
    paths: Vec<PathBuf>,
    options: ImportOptions,
    label: String,
    spills: Vec<Spill>,
) -> Result<v1::LoadResponse, Status> {
    let started = Instant::now();
    let result = run_blocking(call, move |call| {
        let names: Vec<(String, String)> = spills
            .iter()
            .map(|s| (s.0.display().to_string(), s.1.clone()))
            .collect();
        let _spills = spills;
        // Messages name the files as the client knows them, not their spilled copies.
        let rename = |status: Status| {
            let mut message = status.message().to_owned();
            for (spilled, name) in &names {
                message = message.replace(spilled.as_str(), name);
            }
            Status::new(status.code(), message)
        };
        let t = state.db.table(&table).or_status()?;
        let outcome =
            import::import_files_with(&t, &label, &paths, &options, &mut |_| call.check().is_ok());
        // Loading resolved keys, so the dictionary is in memory now.
        state.set_warm(&table, true);
        match outcome {
            Ok(mut summary) => {
                for skipped in &mut summary.skipped {
                    let spilled = skipped.first_file.display().to_string();
                    if let Some((_, name)) = names.iter().find(|(s, _)| *s == spilled) {
                        skipped.first_file = PathBuf::from(name);
                    }
                }
                Ok(summary)
            }
            // A stopped import reports why it stopped, not that it stopped.
            Err(e) => Err(call
                .check()
                .err()
                .unwrap_or_else(|| rename(crate::status::to_status(e)))),
        }
    })
    .await?;
    Ok(response(result, started))
}

static SPILLS: AtomicU64 = AtomicU64::new(0);

/// What the upload writer is told.
enum Spilled {
    Chunk(Vec<u8>),
    Next(PathBuf),
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn load(
        &self,
        request: Request<Streaming<v1::LoadRequest>>,
    ) -> Result<Response<v1::LoadResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream is empty: options come first"))?;
        let Some(load_request::Kind::Options(o)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first message of a load must carry its options",
            ));
        };
        let (options, label) = import_options(&o)?;
        if o.table.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        // Fail before the upload, not after it, when the table does not exist.
        state.db.table(&o.table).or_status()?;

        let dir = spill_dir(state.db.dir());
        let spill_path = |name: &str| {
            let ext = Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(|e| format!(".{e}"))
                .unwrap_or_default();
            dir.join(format!(
                "load-{}-{}{ext}",
                std::process::id(),
                SPILLS.fetch_add(1, Ordering::Relaxed)
            ))
        };
        let first = spill_path(&o.file_name);
        let mut spills = vec![Spill(first.clone(), o.file_name.clone())];

        // A blocking writer drains the chunks, so that the async thread never waits on the disk.
        let (tx, mut rx) = mpsc::channel::<Spilled>(8);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            std::fs::create_dir_all(first.parent().unwrap_or(Path::new(".")))?;
            let create = |p: &Path| std::fs::File::create(p).map(std::io::BufWriter::new);
            let finish = |f: std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
                f.into_inner().map_err(|e| e.into_error())?.sync_data()
            };
            let mut f = create(&first)?;
            while let Some(m) = rx.blocking_recv() {
                match m {
                    Spilled::Chunk(bytes) => f.write_all(&bytes)?,
                    Spilled::Next(path) => {
                        finish(f)?;
                        f = create(&path)?;
                    }
                }
            }
            finish(f)
        });
        let mut sent = Ok(());
        loop {
            call.check()?;
            let message = match stream.message().await? {
                None => break,
                Some(v1::LoadRequest {
                    kind: Some(load_request::Kind::Chunk(bytes)),
                }) => Spilled::Chunk(bytes),
                Some(v1::LoadRequest {
                    kind: Some(load_request::Kind::NextFile(name)),
                }) => {
                    let path = spill_path(&name);
                    let name = name.clone();
                    spills.push(Spill(path.clone(), name));
                    Spilled::Next(path)
                }
                Some(_) => {
                    return Err(Status::invalid_argument(
                        "only the first message of a load carries options",
                    ));
                }
            };
            if tx.send(message).await.is_err() {
                // The writer failed; its error is reported below.
                sent = Err(());
                break;
            }
        }
        drop(tx);
        match writer.await {
            Ok(Ok(())) if sent.is_ok() => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot spill an upload");
                return Err(Status::unavailable(format!(
                    "the server cannot store the upload: {e}"
                )));
            }
            Ok(Ok(())) => return Err(Status::internal("upload writer stopped early")),
            Err(e) => return Err(Status::internal(format!("upload writer failed: {e}"))),
        }
        let paths = spills.iter().map(|s| s.0.clone()).collect();
        let response =
            run_import(state, call, o.table.clone(), paths, options, label, spills).await?;
        Ok(Response::new(response))
    }

    async fn load_path(
        &self,
        request: Request<v1::LoadPathRequest>,
    ) -> Result<Response<v1::LoadResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let o = r
            .options
            .ok_or_else(|| Status::invalid_argument("options are required"))?;
        if o.table.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        if r.paths.is_empty() {
            return Err(Status::invalid_argument("at least one path is required"));
        }
        // Without a file type, each file's own extension decides.
        let (options, label) = import_options(&o)?;
        let paths = r.paths.into_iter().map(PathBuf::from).collect();
        let response = run_import(state, call, o.table, paths, options, label, Vec::new()).await?;
        Ok(Response::new(response))
    }

    async fn list_versions(
        &self,
        request: Request<v1::ListVersionsRequest>,
    ) -> Result<Response<v1::ListVersionsResponse>, Status> {
        let snap = self.state.snapshot(&request.get_ref().table)?;
        let versions = snap.versions(&request.get_ref().path).or_status()?;
        Ok(Response::new(v1::ListVersionsResponse {
            versions: versions
                .into_iter()
                .rev()
                .map(|v| v1::VersionInfo {
                    label: v.label,
                    created_unix_ms: v.created_ms,
                    users: v.users,
                    distinct_values: v.distinct,
                    bytes: v.bytes,
                })
                .collect(),
        }))
    }

    async fn drop_version(
        &self,
        request: Request<v1::DropVersionRequest>,
    ) -> Result<Response<v1::DropVersionResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        if r.table.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        run_blocking(call, move |_| {
            let table = state.db.table(&r.table).or_status()?;
            table.drop_version(&r.path, &r.label).or_status()?;
            Ok(Response::new(v1::DropVersionResponse {}))
        })
        .await
    }

    async fn write(
        &self,
        request: Request<v1::WriteRequest>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        if r.table.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        limits::check(
            "writes of one Write batch",
            r.writes.len() as u64,
            state.limits.max_write_batch as u64,
        )?;
        run_blocking(call, move |_| {
            let table = state.db.table(&r.table).or_status()?;
            let writes = convert::writes(table.snapshot().key_kind(), r.writes)?;
            // Once the engine has the batch it commits it whatever happens to the call: a
            // client that went away meanwhile just does not hear that it was acknowledged.
            let summary = table.write(&writes).or_status()?;
            if summary.writes > 0 {
                // Committing resolved the keys, so the dictionary is in memory now.
                state.set_warm(&r.table, true);
            }
            Ok(Response::new(v1::WriteResponse {
                writes: summary.writes as u64,
                new_users: summary.new_users.into(),
                seq: summary.seq,
            }))
        })
        .await
    }

    async fn compact(
        &self,
        request: Request<v1::CompactRequest>,
    ) -> Result<Response<v1::CompactResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        if r.table.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        let started = Instant::now();
        run_blocking(call, move |_| {
            let table = state.db.table(&r.table).or_status()?;
            let summary = table.compact().or_status()?;
            tracing::info!(
                table = %r.table,
                fields = summary.fields,
                changes = summary.changes,
                wal_files_removed = summary.wal_files_removed,
                "compacted on request"
            );
            Ok(Response::new(v1::CompactResponse {
                fields: summary.fields as u64,
                changes: summary.changes,
                wal_files_removed: summary.wal_files_removed as u64,
                elapsed_us: started.elapsed().as_micros() as u64,
            }))
        })
        .await
    }

    async fn delta_stats(
        &self,
        request: Request<v1::DeltaStatsRequest>,
    ) -> Result<Response<v1::DeltaStatsResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        if r.table.is_empty() {
            return Err(Status::invalid_argument("table is required"));
        }
        // The stats take the commit lock, which a commit holds across its log sync: off the
        // async threads.
        run_blocking(call, move |_| {
            let stats = state.db.table(&r.table).or_status()?.delta_stats();
            Ok(Response::new(v1::DeltaStatsResponse {
                pending: stats.pending,
                compacting: stats.compacting,
                fields: stats.fields as u64,
                wal_file: stats.wal_file,
                wal_bytes: stats.wal_bytes,
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(format: v1::LoadFormat) -> v1::LoadOptions {
        v1::LoadOptions {
            table: "users".into(),
            format: format.into(),
            file_name: "x.parquet".into(),
            ..Default::default()
        }
    }

    #[test]
    fn wire_options_become_import_options() {
        let (o, label) = import_options(&options(v1::LoadFormat::Long)).unwrap();
        assert_eq!(o.shape, Shape::Long);
        assert_eq!(o.file_type, None);
        assert_eq!(label.len(), 10, "{label}");
        let mut w = options(v1::LoadFormat::Wide);
        w.file_type = v1::FileType::Tsv.into();
        w.version = "v7".into();
        w.key_column = "uid".into();
        w.mapping_toml = "[fields.a]\nskip = true".into();
        let (o, label) = import_options(&w).unwrap();
        assert_eq!(
            (o.file_type, label.as_str(), o.key.as_deref()),
            (Some(FileType::Tsv), "v7", Some("uid"))
        );
        assert!(o.mapping.fields["a"].skip);
        let e = import_options(&options(v1::LoadFormat::Unspecified)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let mut bad = options(v1::LoadFormat::Wide);
        bad.mapping_toml = "[fields.a]\nkind = \"float\"".into();
        assert_eq!(
            import_options(&bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
