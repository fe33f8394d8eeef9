//! Builders of `AdminService` calls: statistics, versions and backups.

use portrait_proto::v1;

use super::request_builder;
use crate::client::Client;
use crate::error::Result;
use crate::retry::Idempotency;

impl Client {
    /// Size statistics of every table.
    pub fn stats(&self) -> Stats {
        Stats::new(self, v1::StatsRequest {})
    }

    /// The server's release and storage-format versions.
    pub fn version(&self) -> Version {
        Version::new(self, v1::VersionRequest {})
    }

    /// Writes a consistent online backup of every table into `dir`, an absolute path on the
    /// *server's* file system that must not exist or be empty. Restore it with
    /// `portraitd --restore DIR`. Not retried on deadline expiry; a large database may need a
    /// longer `.timeout(..)` than the client's default.
    pub fn backup(&self, dir: impl Into<String>) -> Backup {
        Backup::new(self, v1::BackupRequest { dir: dir.into() })
    }
}

request_builder!(
    /// Writes an online backup. See [`Client::backup`].
    Backup: v1::BackupRequest => v1::BackupResponse
);

impl Backup {
    /// Sends the request.
    pub async fn send(self) -> Result<v1::BackupResponse> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::NonIdempotent,
                |c, r| {
                    let mut stub = c.admin_stub();
                    async move { stub.backup(r).await }
                },
            )
            .await
    }
}

request_builder!(
    /// Fetches table statistics; resolves to one entry per table. See [`Client::stats`].
    Stats: v1::StatsRequest => Vec<v1::TableStats>
);

impl Stats {
    /// Sends the request.
    pub async fn send(self) -> Result<Vec<v1::TableStats>> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.admin_stub();
                    async move { stub.stats(r).await }
                },
            )
            .await?;
        Ok(response.tables)
    }
}

request_builder!(
    /// Fetches the server's versions. See [`Client::version`].
    Version: v1::VersionRequest => v1::VersionResponse
);

impl Version {
    /// Sends the request.
    pub async fn send(self) -> Result<v1::VersionResponse> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.admin_stub();
                    async move { stub.version(r).await }
                },
            )
            .await
    }
}
