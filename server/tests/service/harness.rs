//! A server over a temporary database holding the demo table.

use std::sync::Arc;
use std::time::Duration;

use portrait_engine::{Database, TableSnapshot};
use portrait_proto::v1::{
    self, analysis_service_client::AnalysisServiceClient,
    behaviour_service_client::BehaviourServiceClient, catalog_service_client::CatalogServiceClient,
    query_service_client::QueryServiceClient,
};
use portrait_server::Limits;
use portrait_server::server::Bound;
use portrait_server::service::State;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Users of the demo table the tests run against.
pub const USERS: u32 = 3_000;

/// A running server and a channel to it.
pub struct Harness {
    pub addr: std::net::SocketAddr,
    pub channel: Channel,
    pub db: Arc<Database>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a server with `limits` and a shutdown grace of `grace`.
    pub async fn start_with(limits: Limits, grace: Duration) -> Self {
        // Served as `portraitd` serves: connections on I/O threads of their own.
        Self::start_on(2, limits, grace).await
    }

    /// Starts a server serving its connections on `io_threads` I/O threads (0: on the calling
    /// runtime, shared), with `limits` and a shutdown grace of `grace`.
    pub async fn start_on(io_threads: usize, limits: Limits, grace: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(dir.path()).unwrap());
        let loaded = db.clone();
        tokio::task::spawn_blocking(move || portrait_server::demo::ensure(&loaded, USERS))
            .await
            .unwrap()
            .unwrap();
        let bound = Bound::bind("127.0.0.1:0".parse().unwrap())
            .unwrap()
            .io_threads(io_threads);
        let addr = bound.local_addr();
        let state = State::new(db.clone(), limits, 4 << 20);
        state.warm_up();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(bound.serve(state, 4 << 20, grace, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            addr,
            channel,
            db,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// Starts a server with default limits.
    pub async fn start() -> Self {
        Self::start_with(Limits::default(), Duration::from_secs(5)).await
    }

    /// The engine's view of the demo table.
    pub fn snapshot(&self) -> Arc<TableSnapshot> {
        self.db.table("users").unwrap().snapshot()
    }

    pub fn query(&self) -> QueryServiceClient<Channel> {
        QueryServiceClient::new(self.channel.clone())
    }

    pub fn analysis(&self) -> AnalysisServiceClient<Channel> {
        AnalysisServiceClient::new(self.channel.clone())
    }

    pub fn behaviour(&self) -> BehaviourServiceClient<Channel> {
        BehaviourServiceClient::new(self.channel.clone())
    }

    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel.clone())
    }

    /// Signals shutdown (as SIGTERM would).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits for the server to stop, failing the test if it has not
    /// within 5 s or stops with an error.
    pub async fn stop_and_wait(&mut self) {
        self.stop();
        let served = self.served.take().expect("the server was started");
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the server stops within 5 s")
            .expect("the server task did not panic")
            .expect("the server stops without an error");
    }
}

/// The engine's own count of `expr` in the demo table.
pub fn engine_count(h: &Harness, expr: &str) -> u64 {
    h.snapshot()
        .crowd(&portrait_engine::expr::parse(expr).unwrap())
        .unwrap()
        .count()
        .unwrap()
}

/// The text form of an expression.
pub fn text(expr: &str) -> Option<v1::Expr> {
    Some(v1::Expr {
        kind: Some(v1::expr::Kind::Text(expr.to_owned())),
    })
}

/// The structured form of an expression.
pub fn ast(node: v1::Node) -> Option<v1::Expr> {
    Some(v1::Expr {
        kind: Some(v1::expr::Kind::Ast(node)),
    })
}
