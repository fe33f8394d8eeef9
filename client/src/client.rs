//! The connection: [`Client`], its [`ClientBuilder`], and the unary-call machinery shared by all
//! request builders.
//!
//! A `Client` owns one HTTP/2 [`Channel`]; cloning the client clones the channel handle, so every
//! clone multiplexes its calls over the same connection. Create one client per server and share
//! it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use portrait_proto::v1::admin_service_client::AdminServiceClient;
use portrait_proto::v1::analysis_service_client::AnalysisServiceClient;
use portrait_proto::v1::behaviour_service_client::BehaviourServiceClient;
use portrait_proto::v1::catalog_service_client::CatalogServiceClient;
use portrait_proto::v1::ingest_service_client::IngestServiceClient;
use portrait_proto::v1::query_service_client::QueryServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

use crate::error::{Error, Result};
use crate::retry::{Idempotency, RetryPolicy};

/// The address `portraitd` listens on by default.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:7070";
/// The table requests go to unless they name another one.
pub const DEFAULT_TABLE: &str = "users";
/// Default deadline of a unary call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of the time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit of the size of one message, in either direction.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// HTTP/2 receive window of each call: what the server may send before the client has read it.
/// h2's default (64 KiB) would stop a `Members` export every 64 KiB (every ~5,000 keys) until
/// the client's window update arrived; 2 MiB holds two full batches.
const STREAM_WINDOW_BYTES: u32 = 2 << 20;
/// HTTP/2 receive window of the connection, shared by its calls.
const CONNECTION_WINDOW_BYTES: u32 = 4 << 20;

/// A handle to one Portrait server. Cheap to clone; clones share the connection.
///
/// Each method returns a request builder; set its options, then `.await` it (see the crate docs).
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    config: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    address: String,
    default_table: String,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    max_message_size: usize,
}

impl Client {
    /// Connects to `address` (e.g. `http://127.0.0.1:7070`) with default settings.
    pub async fn connect(address: impl Into<String>) -> Result<Client> {
        ClientBuilder::new(address).connect().await
    }

    /// Starts configuring a client for `address`.
    pub fn builder(address: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(address)
    }

    /// The server address this client talks to.
    pub fn address(&self) -> &str {
        &self.config.address
    }

    /// The table used by requests that do not call `.table(..)`.
    pub fn default_table(&self) -> &str {
        &self.config.default_table
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    pub(crate) fn catalog_stub(&self) -> CatalogServiceClient<Channel> {
        let size = self.config.max_message_size;
        CatalogServiceClient::new(self.channel.clone())
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    pub(crate) fn query_stub(&self) -> QueryServiceClient<Channel> {
        let size = self.config.max_message_size;
        QueryServiceClient::new(self.channel.clone())
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    pub(crate) fn analysis_stub(&self) -> AnalysisServiceClient<Channel> {
        let size = self.config.max_message_size;
        AnalysisServiceClient::new(self.channel.clone())
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    pub(crate) fn ingest_stub(&self) -> IngestServiceClient<Channel> {
        let size = self.config.max_message_size;
        IngestServiceClient::new(self.channel.clone())
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    pub(crate) fn behaviour_stub(&self) -> BehaviourServiceClient<Channel> {
        let size = self.config.max_message_size;
        BehaviourServiceClient::new(self.channel.clone())
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    pub(crate) fn admin_stub(&self) -> AdminServiceClient<Channel> {
        let size = self.config.max_message_size;
        AdminServiceClient::new(self.channel.clone())
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    /// Wraps `message` in a `tonic::Request` carrying the call's deadline: `timeout` if given,
    /// else the client's default.
    pub(crate) fn grpc_request<T>(
        &self,
        message: T,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = timeout.or(self.config.timeout) {
            request.set_timeout(deadline);
        }
        request
    }

    /// Runs a unary call under the retry policy. `call` is invoked once per attempt with a fresh
    /// `tonic::Request` holding a copy of `message`.
    pub(crate) async fn unary<Req, Resp, F, Fut>(
        &self,
        message: Req,
        timeout: Option<Duration>,
        idempotency: Idempotency,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(&Client, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        self.config
            .retry
            .run(idempotency, || {
                let attempt = call(self, self.grpc_request(message.clone(), timeout));
                async move { attempt.await.map(Response::into_inner).map_err(Error::from) }
            })
            .await
    }
}

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn demo() -> portrait_client::Result<()> {
/// use std::time::Duration;
///
/// let client = portrait_client::Client::builder("http://127.0.0.1:7070")
///     .default_table("devices")
///     .timeout(Duration::from_secs(5))
///     .retries(5)
///     .connect()
///     .await?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect` is called"]
pub struct ClientBuilder {
    address: String,
    default_table: String,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    retry: RetryPolicy,
    max_message_size: usize,
}

impl ClientBuilder {
    /// A builder for `address` with the defaults: table [`DEFAULT_TABLE`], call deadline
    /// [`DEFAULT_TIMEOUT`], connect timeout [`DEFAULT_CONNECT_TIMEOUT`], retry policy
    /// [`RetryPolicy::default`], message limit [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn new(address: impl Into<String>) -> Self {
        ClientBuilder {
            address: address.into(),
            default_table: DEFAULT_TABLE.to_owned(),
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// The table used by requests that do not call `.table(..)`.
    pub fn default_table(mut self, table: impl Into<String>) -> Self {
        self.default_table = table.into();
        self
    }

    /// Deadline of each unary call attempt, sent to the server as `grpc-timeout` so it stops
    /// working on calls nobody waits for. Streams (`members`) have no deadline unless their
    /// request sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Removes the default call deadline.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Limit of the time to establish the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of a transiently failed call after the first attempt (0 disables retrying).
    pub fn retries(mut self, max_retries: u32) -> Self {
        self.retry.max_retries = max_retries;
        self
    }

    /// The whole retry policy, including its backoff.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Limit of the size of one message, sent or received, in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    fn endpoint(&self) -> Result<Endpoint> {
        Ok(Endpoint::from_shared(self.address.clone())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true))
    }

    fn build(self, channel: Channel) -> Client {
        Client {
            channel,
            config: Arc::new(Config {
                address: self.address,
                default_table: self.default_table,
                timeout: self.timeout,
                retry: self.retry,
                max_message_size: self.max_message_size,
            }),
        }
    }

    /// Connects now, failing with [`Error::Transport`] if the server cannot be reached.
    pub async fn connect(self) -> Result<Client> {
        let channel = self.endpoint()?.connect().await?;
        Ok(self.build(channel))
    }

    /// Returns a client that connects on its first call (and reconnects after failures). Only
    /// an invalid address fails here; an unreachable server shows up as [`Error::Unavailable`]
    /// on calls, which are retried.
    pub fn connect_lazy(self) -> Result<Client> {
        let channel = self.endpoint()?.connect_lazy();
        Ok(self.build(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_addresses_are_transport_errors() {
        let error = ClientBuilder::new("not a uri").connect_lazy().unwrap_err();
        assert!(matches!(error, Error::Transport(_)), "{error:?}");
    }

    #[tokio::test]
    async fn builder_settings_reach_the_client() {
        let client = Client::builder("http://127.0.0.1:1")
            .default_table("devices")
            .retries(7)
            .connect_lazy()
            .unwrap();
        assert_eq!(client.default_table(), "devices");
        assert_eq!(client.address(), "http://127.0.0.1:1");
        assert_eq!(client.retry_policy().max_retries, 7);
    }

    #[tokio::test]
    async fn requests_carry_the_deadline() {
        let client = Client::builder("http://127.0.0.1:1")
            .timeout(Duration::from_secs(2))
            .connect_lazy()
            .unwrap();
        let request = client.grpc_request((), None);
        assert_eq!(request.metadata().get("grpc-timeout").unwrap(), "2000000u");
        let request = client.grpc_request((), Some(Duration::from_millis(5)));
        assert_eq!(request.metadata().get("grpc-timeout").unwrap(), "5000000n");
        let client = Client::builder("http://127.0.0.1:1")
            .no_timeout()
            .connect_lazy()
            .unwrap();
        assert!(
            client
                .grpc_request((), None)
                .metadata()
                .get("grpc-timeout")
                .is_none()
        );
    }
}
