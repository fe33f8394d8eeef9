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
                packed_keys: true,
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
                    Ok(Some(mut batch)) => {
                        unpack_keys(&mut batch)?;
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

/// Moves the keys of a packed batch (`MembersBatch.packed_keys`: each key's length as a varint,
/// then its UTF-8 text) into `keys`, after any already there.
fn unpack_keys(batch: &mut v1::MembersBatch) -> Result<()> {
    if batch.packed_keys.is_empty() {
        return Ok(());
    }
    let packed = std::mem::take(&mut batch.packed_keys);
    let malformed =
        |why: &str| Error::Internal(format!("malformed packed keys from the server: {why}"));
    let mut rest = &packed[..];
    while !rest.is_empty() {
        let len = read_varint(&mut rest).ok_or_else(|| malformed("bad length"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or_else(|| malformed("a key runs past the end"))?;
        let (text, tail) = rest.split_at(len);
        let key = std::str::from_utf8(text).map_err(|_| malformed("a key is not UTF-8"))?;
        batch.keys.push(key.to_owned());
        rest = tail;
    }
    Ok(())
}

/// Reads a base-128 varint (at most 10 bytes, least significant group first) off the front of
/// `buf`; `None` if it is truncated or too long.
fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None;
            }
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(keys: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for k in keys {
            let mut n = k.len();
            while n >= 0x80 {
                out.push((n as u8) | 0x80);
                n >>= 7;
            }
            out.push(n as u8);
            out.extend_from_slice(k.as_bytes());
        }
        out
    }

    #[test]
    fn varints_read_like_protobuf() {
        for (bytes, value) in [
            (&[0u8][..], 0u64),
            (&[0x7f], 127),
            (&[0x80, 0x01], 128),
            (&[0xac, 0x02], 300),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                u64::MAX,
            ),
        ] {
            let mut buf = bytes;
            assert_eq!(read_varint(&mut buf), Some(value), "{bytes:?}");
            assert!(buf.is_empty());
        }
        for bad in [
            &[][..],
            &[0x80],
            &[0xff; 10],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        ] {
            let mut buf = bad;
            assert_eq!(read_varint(&mut buf), None, "{bad:?}");
        }
    }

    fn batch(packed_keys: Vec<u8>) -> v1::MembersBatch {
        v1::MembersBatch {
            packed_keys,
            ..Default::default()
        }
    }

    #[test]
    fn packed_keys_unpack_in_order() {
        let long = "ü".repeat(100);
        let keys = ["u0000000001", "", &long, "7"];
        let mut b = batch(packed(&keys));
        unpack_keys(&mut b).unwrap();
        assert_eq!(b.keys, keys);
        assert!(b.packed_keys.is_empty());
        let mut plain = v1::MembersBatch {
            keys: vec!["a".into()],
            ..Default::default()
        };
        unpack_keys(&mut plain).unwrap();
        assert_eq!(plain.keys, ["a"]);
    }

    #[test]
    fn malformed_packed_keys_are_errors() {
        let mut past_end = packed(&["abc"]);
        past_end.pop();
        let mut overlong = vec![0xff; 11];
        overlong.push(0);
        for bad in [past_end, vec![0x80], overlong, vec![2, 0xc3, 0x28]] {
            let error = unpack_keys(&mut batch(bad.clone())).unwrap_err();
            assert!(
                matches!(&error, Error::Internal(m) if m.contains("malformed packed keys")),
                "{bad:?}: {error:?}"
            );
        }
    }
}
