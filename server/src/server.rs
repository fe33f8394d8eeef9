//! Building the gRPC server and running it until SIGINT/SIGTERM.
//!
//! Served on one address: the six `portrait.v1` services, `grpc.health.v1.Health` and server
//! reflection (`grpc.reflection.v1` and, for older tools, `v1alpha`). Every service has explicit
//! maximum decoding and encoding message sizes ([`Config::max_message_bytes`]).
//!
//! Shutdown: on the first SIGINT or SIGTERM the health status turns `NOT_SERVING`, the listener
//! closes, running work stops at its next check (answering `UNAVAILABLE`, which clients retry
//! elsewhere or later) and open calls get [`Config::shutdown_grace_secs`] to finish before the
//! process exits anyway.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portrait_proto::v1::{
    admin_service_server::AdminServiceServer, analysis_service_server::AnalysisServiceServer,
    behaviour_service_server::BehaviourServiceServer, catalog_service_server::CatalogServiceServer,
    ingest_service_server::IngestServiceServer, query_service_server::QueryServiceServer,
};
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::idle_poll::IdlePoll;
use crate::observe::RequestLogLayer;
use crate::service::State;
use crate::service::admin::AdminApi;
use crate::service::analysis::AnalysisApi;
use crate::service::behaviour::BehaviourApi;
use crate::service::catalog::CatalogApi;
use crate::service::ingest::IngestApi;
use crate::service::query::QueryApi;

/// Fully qualified names of the Portrait services, as the health service knows them.
pub const SERVICE_NAMES: [&str; 6] = [
    "portrait.v1.CatalogService",
    "portrait.v1.QueryService",
    "portrait.v1.AnalysisService",
    "portrait.v1.BehaviourService",
    "portrait.v1.AdminService",
    "portrait.v1.IngestService",
];

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Bound {
    incoming: TcpIncoming,
    addr: SocketAddr,
    idle_poll: Duration,
    io_threads: usize,
}

impl Bound {
    /// Binds `addr` (port 0 picks a free port), to serve on one I/O thread per core, as
    /// `portraitd` does by default ([`Bound::io_threads`] to change it).
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let incoming = TcpIncoming::bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr().context("no local address")?;
        Ok(Self {
            incoming,
            addr,
            idle_poll: Duration::ZERO,
            io_threads: crate::config::cores(),
        })
    }

    /// Serves connections on `n` threads of their own, each running a single-threaded runtime
    /// ([`crate::io_threads`]); zero: on the runtime that runs [`Bound::serve`].
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n;
        self
    }

    /// Keeps the cores awake for `window` after each call ([`crate::idle_poll`]); zero: never.
    pub fn idle_poll(mut self, window: Duration) -> Self {
        self.idle_poll = window;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `state` until `shutdown` resolves, then drains for at most `grace`.
    pub async fn serve(
        self,
        state: Arc<State>,
        max_message_bytes: usize,
        grace: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let m = max_message_bytes;
        let idle_poll = if self.idle_poll.is_zero() {
            None
        } else {
            let cores = crate::config::cores();
            let poll = IdlePoll::start(self.idle_poll, cores)
                .context("cannot start the idle-poll threads (--idle-poll-us)")?;
            tracing::info!(
                window_us = self.idle_poll.as_micros() as u64,
                threads = cores,
                "idle polling on"
            );
            Some(Arc::new(poll))
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in SERVICE_NAMES {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(portrait_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building the reflection service")?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(portrait_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building the reflection service")?;

        let router = Server::builder()
            // Bounded streams per connection: with tonic's unlimited default, a backlog of
            // thousands of small requests trips h2's flood protection, which closes the
            // connection and fails every call on it; with a bound, clients queue instead.
            .max_concurrent_streams(Some(256))
            .layer(RequestLogLayer::new(idle_poll.clone()))
            .add_service(
                CatalogServiceServer::new(CatalogApi::new(state.clone()))
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                QueryServiceServer::new(QueryApi::new(state.clone()))
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                AnalysisServiceServer::new(AnalysisApi::new(state.clone()))
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                BehaviourServiceServer::new(BehaviourApi::new(state.clone()))
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                AdminServiceServer::new(AdminApi::new(state.clone()))
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                IngestServiceServer::new(IngestApi::new(state.clone()))
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                health_service
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                reflection_v1
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            )
            .add_service(
                reflection_v1alpha
                    .max_decoding_message_size(m)
                    .max_encoding_message_size(m),
            );

        let (drain_tx, drain_rx) = watch::channel(false);
        let io_threads = self.io_threads;
        let serving = async move {
            if io_threads == 0 {
                let mut drain_rx = drain_rx;
                router
                    .serve_with_incoming_shutdown(self.incoming, async move {
                        let _ = drain_rx.wait_for(|d| *d).await;
                    })
                    .await
                    .context("the server failed")
            } else {
                crate::io_threads::serve(router, self.incoming, io_threads, drain_rx, grace).await
            }
        };
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => return result,
            () = shutdown => {}
        }
        tracing::info!(grace_secs = grace.as_secs_f64(), "shutting down");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in SERVICE_NAMES {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        state.shutdown.raise();
        let _ = drain_tx.send(true);
        if io_threads > 0 {
            // The I/O threads keep the grace period themselves, then close what is open and
            // wait for work in flight to stop.
            return serving
                .await
                .context("the server failed while shutting down");
        }
        match tokio::time::timeout(grace, serving).await {
            Ok(result) => result.context("the server failed while shutting down")?,
            Err(_) => tracing::warn!("calls still open after the grace period; exiting anyway"),
        }
        Ok(())
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = term => tracing::info!("received SIGTERM"),
    }
}

/// Restores the backup in `backup` into the empty data directory `data_dir`.
pub async fn restore(backup: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (from, to) = (backup.to_path_buf(), data_dir.to_path_buf());
    let stats = tokio::task::spawn_blocking(move || portrait_engine::Database::restore(&from, &to))
        .await
        .context("restoring the backup")?
        .with_context(|| {
            format!(
                "cannot restore the backup {} into the data directory {}",
                backup.display(),
                data_dir.display()
            )
        })?;
    tracing::info!(
        backup = %backup.display(),
        data_dir = %data_dir.display(),
        files = stats.files,
        linked = stats.linked,
        bytes = stats.bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "backup restored"
    );
    Ok(())
}

/// Restores a backup if asked, opens the database, loads the demo data if asked, and serves
/// until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if let Some(backup) = &config.restore {
        restore(backup, &config.data_dir).await?;
    }
    let dir = config.data_dir.clone();
    let options = portrait_engine::Options {
        wal_sync: config.wal_sync.into(),
        compact_after: config.compact_after,
        ..portrait_engine::Options::default()
    };
    let db =
        tokio::task::spawn_blocking(move || portrait_engine::Database::open_with(&dir, options))
            .await
            .context("opening the database")?
            .with_context(|| {
                format!("cannot open the database in {}", config.data_dir.display())
            })?;
    let db = Arc::new(db);
    // Uploads spilled by loads that were running when the process last stopped.
    let _ = std::fs::remove_dir_all(crate::service::ingest::spill_dir(&config.data_dir));
    tracing::info!(data_dir = %config.data_dir.display(), tables = ?db.tables(), "database open");
    if config.demo {
        let db = db.clone();
        let users = config.demo_users;
        tokio::task::spawn_blocking(move || crate::demo::ensure(&db, users))
            .await
            .context("loading the demo data")??;
    }
    let bound = Bound::bind(config.listen)?
        .idle_poll(Duration::from_micros(config.idle_poll_us))
        .io_threads(config.serving_threads());
    let addr = bound.local_addr();
    tracing::info!(
        %addr,
        io_threads = config.serving_threads(),
        ready_after_ms = started.elapsed().as_millis() as u64,
        "portraitd listening"
    );
    // One plain line on stdout, for scripts and tests that start the server on port 0.
    println!("portraitd listening on {addr}");
    let state = State::new(db, config.limits.clone(), config.max_message_bytes);
    state.warm_up();
    bound
        .serve(
            state,
            config.max_message_bytes,
            Duration::from_secs(config.shutdown_grace_secs),
            shutdown_signal(),
        )
        .await?;
    tracing::info!("stopped");
    Ok(())
}
