//! The `Members` export: a server stream of key batches that resumes itself after transient
//! failures.
//!
//! Every batch carries the cursor that resumes right after it. [`MemberStream`] remembers the
//! last one; when the stream breaks with a transient error it reopens the call from that cursor
//! (with the remaining limit) under the client's retry policy, so callers see each key exactly
//! once. [`MemberStream::cursor`] also lets a program resume an export in a later process.

use std::future::Future;
use std::time::Duration;

use portrait_proto::v1;
use tonic::Streaming;

use super::{as_of_setter, request_builder, stream_request, table, table_setter};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::retry::{Idempotency, random_unit};

impl Client {
    /// Streams the keys of the users matching `expr`, in batches.
    ///
    /// ```no_run
    /// # async fn demo(client: portrait_client::Client) -> portrait_client::Result<()> {
    /// let mut members = client.members("vip AND age >= 30").limit(10_000).await?;
    /// while let Some(batch) = members.next_batch().await? {
    ///     for key in &batch.keys {
    ///         println!("{key}");
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn members(&self, expr: impl Into<Expr>) -> Members {
        Members::new(
            self,
            v1::MembersRequest {
                table: table(self),
                expr: Some(expr.into().into_proto()),
                cursor: String::new(),
                limit: 0,
                as_of: None,
            },
        )
    }
}

request_builder!(
    /// Opens a members export; resolves to a [`MemberStream`]. See [`Client::members`].
    ///
    /// Unlike unary calls, the stream has no deadline unless [`Members::timeout`] sets one.
    Members: v1::MembersRequest => MemberStream
);

impl Members {
    /// Resumes an earlier export right after the batch that returned this cursor.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.message.cursor = cursor.into();
        self
    }

    /// Returns at most `limit` keys in total (0: no limit but the server's export cap).
    pub fn limit(mut self, limit: u64) -> Self {
        self.message.limit = limit;
        self
    }

    /// Opens the stream (retrying transient failures).
    pub async fn send(self) -> Result<MemberStream> {
        let mut stream = MemberStream {
            client: self.client,
            limit: self.message.limit,
            request: self.message,
            timeout: self.timeout,
            stream: None,
            batches_in_stream: 0,
            received: 0,
            finished: false,
        };
        let policy = *stream.client.retry_policy();
        let opened = policy
            .run(Idempotency::Idempotent, || stream.open_call())
            .await?;
        stream.stream = Some(opened);
        Ok(stream)
    }
}

table_setter!(Members);
as_of_setter!(Members);

/// An open members export; read it with [`MemberStream::next_batch`].
#[derive(Debug)]
pub struct MemberStream {
    client: Client,
    /// The request that reopens the stream: its cursor and limit follow the batches received.
    request: v1::MembersRequest,
    /// The limit originally asked for (0: none).
    limit: u64,
    timeout: Option<Duration>,
    stream: Option<Streaming<v1::MembersBatch>>,
    /// Batches read from the currently open stream.
    batches_in_stream: u32,
    received: u64,
    finished: bool,
}

impl MemberStream {
    /// One attempt to open the stream at the current cursor.
    fn open_call(
        &self,
    ) -> impl Future<Output = Result<Streaming<v1::MembersBatch>>> + Send + 'static {
        let mut stub = self.client.query_stub();
        let call = stream_request(self.request.clone(), self.timeout);
        async move { Ok(stub.members(call).await?.into_inner()) }
    }

    /// The next batch of keys, or `None` once the export is complete.
    ///
    /// A transient failure in the middle of the stream is retried from the last cursor, as the
    /// client's retry policy allows; other failures are returned and end the stream.
    pub async fn next_batch(&mut self) -> Result<Option<v1::MembersBatch>> {
        let policy = *self.client.retry_policy();
        let mut retries = 0;
        loop {
            if self.finished {
                return Ok(None);
            }
            let error = match self.stream.as_mut() {
                None => match self.open_call().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.batches_in_stream = 0;
                        continue;
                    }
                    Err(error) => error,
                },
                Some(stream) => match stream.message().await {
                    Ok(Some(batch)) => {
                        self.accept(&batch);
                        return Ok(Some(batch));
                    }
                    // Nothing (more) to export: an empty crowd, or a cursor at its end.
                    Ok(None) if self.batches_in_stream == 0 => {
                        self.finish();
                        return Ok(None);
                    }
                    // A stream must end with a batch whose cursor is empty (`accept` finishes
                    // then); one that stops earlier lost its connection or its server, so it is
                    // resumed like one.
                    Ok(None) => Error::Unavailable(format!(
                        "the members stream ended before its last batch (cursor `{}`)",
                        self.request.cursor
                    )),
                    Err(status) => Error::from(status),
                },
            };
            self.stream = None;
            if !policy.should_retry(&error, Idempotency::Idempotent, retries) {
                self.finish();
                return Err(error);
            }
            tokio::time::sleep(policy.backoff(retries, random_unit())).await;
            retries += 1;
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.stream = None;
    }

    /// Records a received batch: the resume cursor and the remaining limit.
    fn accept(&mut self, batch: &v1::MembersBatch) {
        self.batches_in_stream += 1;
        self.received += batch.keys.len() as u64;
        self.request.cursor.clone_from(&batch.next_cursor);
        if self.limit > 0 {
            self.request.limit = self.limit.saturating_sub(self.received).max(1);
        }
        let limit_reached = self.limit > 0 && self.received >= self.limit;
        if batch.next_cursor.is_empty() || limit_reached {
            self.finish();
        }
    }

    /// The cursor that resumes right after the last batch returned (empty before the first
    /// batch, and after the last one).
    pub fn cursor(&self) -> &str {
        &self.request.cursor
    }

    /// Number of keys returned so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Reads the rest of the export into memory.
    pub async fn collect_keys(mut self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        while let Some(batch) = self.next_batch().await? {
            keys.extend(batch.keys);
        }
        Ok(keys)
    }
}
