//! Builders of `IngestService` calls: file loads and field versions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portrait_proto::v1;
use tokio_stream::wrappers::ReceiverStream;

use super::{request_builder, table_setter};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::Idempotency;

/// Bytes per streamed message of a load: well under the default 16 MiB message limit.
pub const LOAD_CHUNK_BYTES: usize = 1024 * 1024;

/// The shape of a file to load.
pub use v1::LoadFormat;

impl Client {
    /// Loads a local file by streaming it to the server (see [`Load`]).
    ///
    /// ```no_run
    /// # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
    /// use portrait_client::request::LoadFormat;
    ///
    /// let summary = client
    ///     .load(LoadFormat::Long)
    ///     .version("2026-11-25")
    ///     .send_file("tags.parquet", |bytes| eprintln!("{bytes} bytes sent"))
    ///     .await?;
    /// println!("{} rows, {} new users", summary.rows, summary.new_users);
    /// # Ok(())
    /// # }
    /// ```
    pub fn load(&self, format: LoadFormat) -> Load {
        Load {
            client: self.clone(),
            options: v1::LoadOptions {
                table: super::table(self),
                format: format.into(),
                ..Default::default()
            },
            timeout: None,
        }
    }

    /// Loads files the server reads from its own file system, as one version.
    pub fn load_path<I, S>(&self, format: LoadFormat, paths: I) -> LoadPath
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LoadPath::new(
            self,
            v1::LoadPathRequest {
                options: Some(v1::LoadOptions {
                    table: super::table(self),
                    format: format.into(),
                    ..Default::default()
                }),
                paths: paths.into_iter().map(Into::into).collect(),
            },
        )
    }

    /// The kept versions of field `path`, newest first.
    pub fn versions(&self, path: impl Into<String>) -> ListVersions {
        ListVersions::new(
            self,
            v1::ListVersionsRequest {
                table: super::table(self),
                path: path.into(),
            },
        )
    }

    /// Drops version `label` of field `path`.
    pub fn drop_version(&self, path: impl Into<String>, label: impl Into<String>) -> DropVersion {
        DropVersion::new(
            self,
            v1::DropVersionRequest {
                table: super::table(self),
                path: path.into(),
                label: label.into(),
            },
        )
    }
}

/// Options shared by [`Load`] and [`LoadPath`].
macro_rules! load_options {
    ($name:ident, $($options:tt)+) => {
        impl $name {
            /// The table to load into, instead of the client's default table.
            pub fn table(mut self, table: impl Into<String>) -> Self {
                self.$($options)+.table = table.into();
                self
            }
            /// The file type, instead of guessing it from the file name or content.
            pub fn file_type(mut self, file_type: v1::FileType) -> Self {
                self.$($options)+.file_type = file_type.into();
                self
            }
            /// The key column (default: `key`, `user`, `user_id` or `id`).
            pub fn key_column(mut self, column: impl Into<String>) -> Self {
                self.$($options)+.key_column = column.into();
                self
            }
            /// A mapping file's TOML text.
            pub fn mapping(mut self, toml: impl Into<String>) -> Self {
                self.$($options)+.mapping_toml = toml.into();
                self
            }
            /// The version label (default: today's date, UTC).
            pub fn version(mut self, label: impl Into<String>) -> Self {
                self.$($options)+.version = label.into();
                self
            }
            /// Skip rows that do not fit instead of failing the load.
            pub fn skip_bad_rows(mut self, skip: bool) -> Self {
                self.$($options)+.skip_bad_rows = skip;
                self
            }
        }
    };
}

/// Streams one file to the server and loads it. See [`Client::load`].
#[derive(Debug, Clone)]
#[must_use = "a load does nothing until it is sent"]
pub struct Load {
    client: Client,
    options: v1::LoadOptions,
    timeout: Option<Duration>,
}

load_options!(Load, options);

impl Load {
    /// Deadline of the whole load (upload and import); none by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The options as they will be sent.
    pub fn options(&self) -> &v1::LoadOptions {
        &self.options
    }

    /// Streams the file at `path`, calling `progress` with the bytes read so far; resolves
    /// when the server has published the load. Not retried: a failed load published nothing
    /// and can be sent again.
    pub async fn send_file(
        self,
        path: impl AsRef<Path>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<v1::LoadResponse> {
        self.send_files(vec![path.as_ref().to_owned()], progress)
            .await
    }

    /// Streams several files, loaded together as one version (see [`Load::send_file`]).
    pub async fn send_files(
        mut self,
        paths: Vec<PathBuf>,
        progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<v1::LoadResponse> {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let first = paths
            .first()
            .ok_or_else(|| local_error("no file to load".into()))?;
        if self.options.file_name.is_empty() {
            self.options.file_name = name(first);
        }
        let mut files = Vec::with_capacity(paths.len());
        for p in &paths {
            let f = std::fs::File::open(p)
                .map_err(|e| local_error(format!("cannot open {}: {e}", p.display())))?;
            files.push((name(p), f));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<v1::LoadRequest>(4);
        tx.send(v1::LoadRequest {
            kind: Some(v1::load_request::Kind::Options(self.options.clone())),
        })
        .await
        .map_err(|_| Error::Internal("the upload stream closed".into()))?;
        // Files are read on a blocking thread; the channel's bound keeps memory to a few chunks.
        let reader = tokio::task::spawn_blocking(move || read_chunks(files, tx, progress));
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = self.timeout {
            request.set_timeout(t);
        }
        let outcome = self.client.ingest_stub().load(request).await;
        let read = reader
            .await
            .map_err(|e| Error::Internal(format!("file reader failed: {e}")))?;
        let response = outcome.map_err(Error::from)?;
        read.map_err(|e| local_error(format!("cannot read a file: {e}")))?;
        Ok(response.into_inner())
    }
}

/// A problem with the local file, reported like a bad argument.
fn local_error(message: String) -> Error {
    Error::InvalidArgument {
        message,
        position: None,
    }
}

fn read_chunks(
    files: Vec<(String, std::fs::File)>,
    tx: tokio::sync::mpsc::Sender<v1::LoadRequest>,
    mut progress: impl FnMut(u64),
) -> std::io::Result<()> {
    use std::io::Read as _;
    let mut sent = 0u64;
    for (i, (name, mut file)) in files.into_iter().enumerate() {
        if i > 0 {
            let next = v1::LoadRequest {
                kind: Some(v1::load_request::Kind::NextFile(name)),
            };
            if tx.blocking_send(next).is_err() {
                return Ok(());
            }
        }
        loop {
            let mut chunk = vec![0u8; LOAD_CHUNK_BYTES];
            let mut filled = 0;
            while filled < chunk.len() {
                match file.read(&mut chunk[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            let message = v1::LoadRequest {
                kind: Some(v1::load_request::Kind::Chunk(chunk)),
            };
            if tx.blocking_send(message).is_err() {
                // The call ended early; its status says why.
                return Ok(());
            }
            sent += filled as u64;
            progress(sent);
        }
    }
    Ok(())
}

request_builder!(
    /// Loads server-side files. See [`Client::load_path`].
    LoadPath: v1::LoadPathRequest => v1::LoadResponse
);

impl LoadPath {
    fn opts(&mut self) -> &mut v1::LoadOptions {
        self.message.options.get_or_insert_with(Default::default)
    }
}

macro_rules! load_path_options {
    ($($method:ident: $ty:ty => $field:ident $(as $conv:ident)?;)*) => {
        impl LoadPath {
            $(
                #[doc = concat!("Sets `", stringify!($field), "` (as [`Load`] does).")]
                pub fn $method(mut self, value: $ty) -> Self {
                    self.opts().$field = value$(.$conv())?;
                    self
                }
            )*
        }
    };
}

load_path_options! {
    table: &str => table as to_owned;
    file_type: v1::FileType => file_type as into;
    key_column: &str => key_column as to_owned;
    mapping: &str => mapping_toml as to_owned;
    version: &str => version as to_owned;
    skip_bad_rows: bool => skip_bad_rows;
}

impl LoadPath {
    /// Sends the request.
    pub async fn send(self) -> Result<v1::LoadResponse> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::NonIdempotent,
                |c, r| {
                    let mut stub = c.ingest_stub();
                    async move { stub.load_path(r).await }
                },
            )
            .await
    }
}

request_builder!(
    /// Lists a field's versions; resolves to them, newest first. See [`Client::versions`].
    ListVersions: v1::ListVersionsRequest => Vec<v1::VersionInfo>
);

impl ListVersions {
    /// Sends the request.
    pub async fn send(self) -> Result<Vec<v1::VersionInfo>> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.ingest_stub();
                    async move { stub.list_versions(r).await }
                },
            )
            .await?;
        Ok(response.versions)
    }
}

request_builder!(
    /// Drops a field version. See [`Client::drop_version`].
    DropVersion: v1::DropVersionRequest => ()
);

impl DropVersion {
    /// Sends the request.
    pub async fn send(self) -> Result<()> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::NonIdempotent,
                |c, r| {
                    let mut stub = c.ingest_stub();
                    async move { stub.drop_version(r).await }
                },
            )
            .await?;
        Ok(())
    }
}

table_setter!(ListVersions, DropVersion);
