//! `QueryService`: crowd counts and exports, membership tests, single-user portraits.
//!
//! `Portrait` and `Contains` (with a small expression) are point lookups of a few microseconds:
//! once the table's id dictionary is in memory they run inline on the async threads, which
//! roughly doubles their throughput; everything else runs on the blocking pool.
//!
//! `Members` is a server stream fed by one blocking producer per call: it evaluates the crowd a
//! shard at a time, cuts batches of at most [`Limits::members_batch_keys`] keys (or 1 MiB), and
//! hands them over through a small channel, so a slow client slows the producer instead of
//! filling memory. The producer stops as soon as the client goes away (the channel closes), the
//! deadline passes (the stream ends with `DEADLINE_EXCEEDED` after the batches already sent) or
//! the server shuts down (`UNAVAILABLE`), also while it waits on a client that stopped reading.
//!
//! [`Limits::members_batch_keys`]: crate::limits::Limits::members_batch_keys

use std::collections::HashSet;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use portrait_engine::{Error, KeyRef, TableSnapshot, Value};
use portrait_proto::v1::{self, query_service_server::QueryService};
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{State, as_of, plan};
use crate::call::{Call, run_blocking, run_parallel, run_point};
use crate::convert;
use crate::limits::{self, MEMBERS_BATCH_BYTES};
use crate::status::OrStatus;

/// The query service over the shared [`State`].
#[derive(Debug, Clone)]
pub struct QueryApi {
    state: Arc<State>,
}

impl QueryApi {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// `Contains` runs inline (see [`run_point`]) when its expression is at most this large.
const INLINE_EXPR_BYTES: usize = 1024;

/// Batches in flight between the producer and the connection.
const MEMBERS_CHANNEL_BATCHES: usize = 2;

/// One user's values, restricted to `prefixes` (all when empty), ordered by path.
fn portrait_message(
    key: String,
    mut values: Vec<(String, Value)>,
    prefixes: &[String],
) -> v1::Portrait {
    if !prefixes.is_empty() {
        values.retain(|(path, _)| prefixes.iter().any(|p| convert::under_prefix(path, p)));
    }
    // The engine gives them in path order.
    v1::Portrait {
        key,
        values: values
            .into_iter()
            .map(|(path, value)| v1::FieldValue {
                path,
                value: Some(convert::into_value(value)),
            })
            .collect(),
    }
}

/// Every value of user `id`, each field read at its newest version labelled `<= as_of`
/// (current versions when `as_of` is `None`); fields with no version that old are left out.
fn values_of(
    snap: &TableSnapshot,
    id: u32,
    as_of: Option<&str>,
) -> Result<Vec<(String, Value)>, Status> {
    match as_of {
        None => snap.portrait_of_id(id).or_status(),
        Some(label) => snap.portrait_of_id_as_of(id, label).or_status(),
    }
}

/// The engine id of a wire key, if the table knows the user.
fn id_of(snap: &TableSnapshot, key: &str) -> Result<Option<u32>, Status> {
    match convert::key_ref(snap.key_kind(), key) {
        Some(k) => snap.id_of(k).or_status(),
        None => Ok(None),
    }
}

/// The response stream of `Members`: the producer's batches, then its final status.
///
/// The producer hands batches over a bounded channel and its final error (if any) over a oneshot
/// that never blocks, so that a producer whose client stopped reading can still end the call
/// with the right status and free its thread.
#[derive(Debug)]
pub struct MemberBatches {
    batches: mpsc::Receiver<v1::MembersBatch>,
    end: Option<oneshot::Receiver<Status>>,
}

impl Stream for MemberBatches {
    type Item = Result<v1::MembersBatch, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(batch) = ready!(self.batches.poll_recv(cx)) {
            return Poll::Ready(Some(Ok(batch)));
        }
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        let status = ready!(Pin::new(end).poll(cx));
        self.end = None;
        // A producer that finished cleanly drops its sender without a status.
        Poll::Ready(status.ok().map(Err))
    }
}

/// How long a producer waits on a full channel before it checks its call again.
const SEND_RECHECK: Duration = Duration::from_millis(50);

/// The producing side of [`MemberBatches`].
struct MemberSink<'c> {
    batches: mpsc::Sender<v1::MembersBatch>,
    end: Option<oneshot::Sender<Status>>,
    call: &'c Call,
    runtime: tokio::runtime::Handle,
}

impl MemberSink<'_> {
    /// Sends one batch, waiting while the client is slow; `false` once the call is over (the
    /// client went away, or the call was stopped, whose status is then sent).
    fn send(&mut self, batch: v1::MembersBatch) -> bool {
        let mut batch = batch;
        loop {
            match self
                .runtime
                .block_on(self.batches.send_timeout(batch, SEND_RECHECK))
            {
                Ok(()) => return true,
                Err(SendTimeoutError::Closed(_)) => {
                    tracing::debug!("members: the client went away");
                    return false;
                }
                Err(SendTimeoutError::Timeout(back)) => {
                    if let Err(status) = self.call.check() {
                        self.fail(status);
                        return false;
                    }
                    batch = back;
                }
            }
        }
    }

    /// Ends the call with `status` after the batches already sent.
    fn fail(&mut self, status: Status) {
        if let Some(end) = self.end.take() {
            let _ = end.send(status);
        }
    }
}

/// Streams the members of a request's crowd; see the module documentation.
fn produce_members(
    state: &State,
    call: &Call,
    r: v1::MembersRequest,
    ready: oneshot::Sender<Result<(), Status>>,
    mut sink: MemberSink<'_>,
) {
    let limits = &state.limits;
    let prepared = (|| {
        limits::check("limit of Members", r.limit, limits.max_export_keys)?;
        let cursor = convert::decode_cursor(&r.cursor)?;
        let snap = state.snapshot(&r.table)?;
        let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
        Ok((snap, expr, cursor))
    })();
    let (snap, expr, cursor) = match prepared {
        Ok(p) => p,
        Err(status) => {
            let _ = ready.send(Err(status));
            return;
        }
    };
    let crowd = match plan(&snap, &expr, as_of(&r.as_of)) {
        Ok(crowd) => crowd,
        Err(status) => {
            let _ = ready.send(Err(status));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let (budget, capped) = match r.limit {
        0 => (limits.max_export_keys, true),
        n => (n, false),
    };
    let mut ids = crowd.member_ids(cursor).peekable();
    let mut sent: u64 = 0;
    let mut batch = Vec::new();
    loop {
        if let Err(status) = call.check() {
            sink.fail(status);
            return;
        }
        let want = (limits.members_batch_keys as u64).min(budget - sent) as usize;
        batch.clear();
        batch.reserve(want);
        while batch.len() < want {
            match ids.next() {
                Some(Ok(id)) => batch.push(id),
                Some(Err(e)) => {
                    sink.fail(crate::status::to_status(e));
                    return;
                }
                None => break,
            }
        }
        let mut chunks = Chunks::new(r.packed_keys, batch.len(), MEMBERS_BATCH_BYTES);
        if let Err(e) = snap.for_each_key(batch.iter().copied(), |id, k| chunks.push(id, k)) {
            sink.fail(crate::status::to_status(e));
            return;
        }
        let (chunks, keys) = chunks.finish();
        sent += keys;
        let exhausted = ids.peek().is_none();
        let budget_left = sent < budget;
        let last_chunk = chunks.len().saturating_sub(1);
        let mut ended = chunks.is_empty();
        for (i, (mut batch, last_id)) in chunks.into_iter().enumerate() {
            // Every batch but the crowd's very last carries a cursor, including the one that
            // reaches the requested limit: the export can continue from it.
            let resumable = i < last_chunk || !exhausted;
            let next_cursor = if resumable {
                convert::encode_cursor(u64::from(last_id))
            } else {
                String::new()
            };
            ended = next_cursor.is_empty();
            batch.next_cursor = next_cursor;
            if !sink.send(batch) {
                return;
            }
        }
        if ended {
            if sent == 0 && exhausted {
                // An empty crowd: one empty, final batch.
                sink.send(v1::MembersBatch::default());
            }
            return;
        }
        if !budget_left && !capped {
            // The requested limit is reached; the last batch's cursor continues the export.
            return;
        }
        if !budget_left {
            // An unlimited export reached the export cap with members left.
            sink.fail(Status::resource_exhausted(format!(
                "Members stops after {} keys per call (this server's export cap); resume \
                 from the last batch's cursor",
                limits.max_export_keys
            )));
            return;
        }
    }
}

/// Keys cut into batches of at most `max_bytes` of key text (at least one key each), as
/// strings or packed (`MembersRequest.packed_keys`), each batch with the id of its last key.
#[derive(Debug)]
struct Chunks {
    packed: bool,
    done: Vec<(v1::MembersBatch, u32)>,
    current: v1::MembersBatch,
    /// Keys in `current`.
    keys: usize,
    /// Keys in all batches.
    total: u64,
    /// Bytes of key text in `current`.
    bytes: usize,
    last: u32,
    max_bytes: usize,
}

impl Chunks {
    /// Chunks for about `keys` keys.
    fn new(packed: bool, keys: usize, max_bytes: usize) -> Self {
        let mut chunks = Self {
            packed,
            done: Vec::new(),
            current: v1::MembersBatch::default(),
            keys: 0,
            total: 0,
            bytes: 0,
            last: 0,
            max_bytes,
        };
        chunks.reserve(keys);
        chunks
    }

    fn reserve(&mut self, keys: usize) {
        if self.packed {
            // Most keys are short: a length byte and about a dozen bytes of text.
            self.current.packed_keys.reserve(keys * 13);
        } else {
            self.current.keys.reserve(keys);
        }
    }

    fn push(&mut self, id: u32, key: KeyRef<'_>) {
        let mut digits = [0u8; 20];
        let text: &str = match key {
            KeyRef::Str(s) => s,
            KeyRef::U64(v) => decimal(v, &mut digits),
        };
        if self.keys > 0 && self.bytes + text.len() > self.max_bytes {
            let full = std::mem::take(&mut self.current);
            self.done.push((full, self.last));
            self.keys = 0;
            self.bytes = 0;
        }
        if self.packed {
            let out = &mut self.current.packed_keys;
            prost::encoding::encode_varint(text.len() as u64, out);
            out.extend_from_slice(text.as_bytes());
        } else {
            self.current.keys.push(text.to_owned());
        }
        self.keys += 1;
        self.total += 1;
        self.bytes += text.len();
        self.last = id;
    }

    /// The batches, each without its cursor, and the number of keys in all.
    fn finish(mut self) -> (Vec<(v1::MembersBatch, u32)>, u64) {
        if self.keys > 0 {
            self.done.push((self.current, self.last));
        }
        (self.done, self.total)
    }
}

/// The decimal digits of `v`, written at the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn count(
        &self,
        request: Request<v1::CountRequest>,
    ) -> Result<Response<v1::CountResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_parallel(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let count = plan(&snap, &expr, as_of(&r.as_of))?.count().or_status()?;
            Ok(Response::new(v1::CountResponse { count }))
        })
        .await
    }

    type MembersStream = MemberBatches;

    async fn members(
        &self,
        request: Request<v1::MembersRequest>,
    ) -> Result<Response<Self::MembersStream>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let (batches_tx, batches) = mpsc::channel(MEMBERS_CHANNEL_BATCHES);
        let (end_tx, end) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let span = tracing::Span::current();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let sink = MemberSink {
                batches: batches_tx,
                end: Some(end_tx),
                call: &call,
                runtime,
            };
            produce_members(&state, &call, r, ready_tx, sink);
        });
        match ready_rx.await {
            Ok(Ok(())) => Ok(Response::new(MemberBatches {
                batches,
                end: Some(end),
            })),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::internal(
                "the server failed while answering this request",
            )),
        }
    }

    async fn contains(
        &self,
        request: Request<v1::ContainsRequest>,
    ) -> Result<Response<v1::ContainsResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let inline = state.is_warm(&r.table)
            && r.expr.as_ref().map_or(0, prost::Message::encoded_len) <= INLINE_EXPR_BYTES;
        run_point(call, inline, move |_| {
            let snap = state.snapshot(&r.table)?;
            let expr = state.expr(&snap, r.expr.as_ref(), "expr")?;
            let crowd = plan(&snap, &expr, as_of(&r.as_of))?;
            let (contains, known) = match id_of(&snap, &r.key)? {
                Some(id) => (crowd.contains_id(id).or_status()?, true),
                None => (false, false),
            };
            Ok(Response::new(v1::ContainsResponse { contains, known }))
        })
        .await
    }

    async fn portrait(
        &self,
        request: Request<v1::PortraitRequest>,
    ) -> Result<Response<v1::PortraitResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let inline = state.is_warm(&r.table) && as_of(&r.as_of).is_none();
        run_point(call, inline, move |_| {
            let snap = state.snapshot(&r.table)?;
            let id = id_of(&snap, &r.key)?
                .ok_or_else(|| crate::status::to_status(Error::KeyNotFound(r.key.clone())))?;
            let values = values_of(&snap, id, as_of(&r.as_of))?;
            Ok(Response::new(v1::PortraitResponse {
                portrait: Some(portrait_message(r.key, values, &r.prefixes)),
            }))
        })
        .await
    }

    async fn batch_portrait(
        &self,
        request: Request<v1::BatchPortraitRequest>,
    ) -> Result<Response<v1::BatchPortraitResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        limits::check(
            "keys of BatchPortrait",
            r.keys.len() as u64,
            state.limits.max_batch_portrait_keys as u64,
        )?;
        run_blocking(call, move |call| {
            let snap = state.snapshot(&r.table)?;
            let mut seen = HashSet::with_capacity(r.keys.len());
            let mut portraits = Vec::new();
            let mut missing_keys = Vec::new();
            for (i, key) in r.keys.into_iter().enumerate() {
                if i % 256 == 255 {
                    call.check()?;
                }
                if !seen.insert(key.clone()) {
                    continue;
                }
                match id_of(&snap, &key)? {
                    Some(id) => {
                        let values = values_of(&snap, id, as_of(&r.as_of))?;
                        portraits.push(portrait_message(key, values, &r.prefixes));
                    }
                    None => missing_keys.push(key),
                }
            }
            let response = v1::BatchPortraitResponse {
                portraits,
                missing_keys,
            };
            Ok(Response::new(state.fits(
                response,
                "ask for fewer keys, or only some fields with `prefixes`",
            )?))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio_stream::StreamExt as _;
    use tonic::Code;
    use tonic::metadata::MetadataMap;

    use super::*;
    use crate::limits::Limits;

    /// A state over a small demo table, exporting one key per batch.
    fn state() -> (Arc<State>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = portrait_engine::Database::open(dir.path()).unwrap();
        crate::demo::ensure(&db, 3_000).unwrap();
        let limits = Limits {
            members_batch_keys: 1,
            ..Limits::default()
        };
        (State::new(Arc::new(db), limits, 4 << 20), dir)
    }

    /// Starts a producer of all members under `timeout`; returns its stream and its thread.
    async fn export(
        state: Arc<State>,
        timeout: &str,
    ) -> (MemberBatches, tokio::task::JoinHandle<()>) {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", timeout.parse().unwrap());
        let call = Call::new(&metadata, &state.shutdown);
        let (batches_tx, batches) = mpsc::channel(MEMBERS_CHANNEL_BATCHES);
        let (end_tx, end) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        let request = v1::MembersRequest {
            table: "users".into(),
            expr: Some(v1::Expr {
                kind: Some(v1::expr::Kind::Text("ALL".into())),
            }),
            ..Default::default()
        };
        let producer = tokio::task::spawn_blocking(move || {
            let sink = MemberSink {
                batches: batches_tx,
                end: Some(end_tx),
                call: &call,
                runtime,
            };
            produce_members(&state, &call, request, ready_tx, sink);
        });
        ready_rx.await.unwrap().unwrap();
        let stream = MemberBatches {
            batches,
            end: Some(end),
        };
        (stream, producer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_export_stops_at_its_deadline() {
        let (state, _dir) = state();
        let started = Instant::now();
        let (stream, producer) = export(state, "200m").await;
        // Nobody reads: the producer must give up once the deadline passes.
        tokio::time::timeout(Duration::from_secs(3), producer)
            .await
            .expect("the producer stops")
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        let items: Vec<_> = stream.collect().await;
        assert!(
            items.len() <= MEMBERS_CHANNEL_BATCHES + 1,
            "{}",
            items.len()
        );
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), Code::DeadlineExceeded);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_stops_when_the_client_goes_away() {
        let (state, _dir) = state();
        let (mut stream, producer) = export(state, "1H").await;
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        tokio::time::timeout(Duration::from_secs(3), producer)
            .await
            .expect("the producer stops")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_stops_at_shutdown() {
        let (state, _dir) = state();
        let shutdown = state.shutdown.clone();
        let (stream, producer) = export(state, "1H").await;
        shutdown.raise();
        tokio::time::timeout(Duration::from_secs(3), producer)
            .await
            .expect("the producer stops")
            .unwrap();
        let items: Vec<_> = stream.collect().await;
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), Code::Unavailable);
    }

    /// The keys of `batch`, unpacked if packed.
    fn keys_of(batch: &v1::MembersBatch) -> Vec<String> {
        let mut keys = batch.keys.clone();
        let mut rest = &batch.packed_keys[..];
        while !rest.is_empty() {
            let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
            keys.push(String::from_utf8(rest[..len].to_vec()).unwrap());
            rest = &rest[len..];
        }
        keys
    }

    #[test]
    fn batches_split_by_bytes() {
        let cut = |packed: bool, keys: &[(u32, String)], max| {
            let mut chunks = Chunks::new(packed, keys.len(), max);
            for (id, key) in keys {
                chunks.push(*id, KeyRef::Str(key));
            }
            let (batches, total) = chunks.finish();
            assert_eq!(
                total,
                batches
                    .iter()
                    .map(|(b, _)| keys_of(b).len() as u64)
                    .sum::<u64>()
            );
            batches
                .iter()
                .map(|(b, last)| (keys_of(b), *last))
                .collect::<Vec<_>>()
        };
        for packed in [false, true] {
            let keys: Vec<(u32, String)> = (0..25).map(|i| (i * 3, format!("k{i:09}"))).collect();
            let split = cut(packed, &keys, 100);
            let sizes: Vec<usize> = split.iter().map(|(k, _)| k.len()).collect();
            assert_eq!(sizes, [10, 10, 5]);
            let lasts: Vec<u32> = split.iter().map(|(_, last)| *last).collect();
            assert_eq!(lasts, [27, 57, 72]);
            let all: Vec<String> = split.into_iter().flat_map(|(k, _)| k).collect();
            assert_eq!(all, keys.iter().map(|(_, k)| k.clone()).collect::<Vec<_>>());
            // A key longer than a batch goes alone; one over 127 bytes has a 2-byte length.
            let long = vec![(4, "é".repeat(250))];
            assert_eq!(cut(packed, &long, 100), [(vec!["é".repeat(250)], 4)]);
            assert!(cut(packed, &[], 100).is_empty());
        }
    }

    #[test]
    fn packed_batches_hold_lengths_and_text() {
        let mut chunks = Chunks::new(true, 2, 1 << 20);
        chunks.push(7, KeyRef::Str("ab"));
        chunks.push(9, KeyRef::U64(1_234));
        let (batches, total) = chunks.finish();
        assert_eq!(total, 2);
        assert_eq!(batches[0].0.packed_keys, b"\x02ab\x041234");
        assert!(batches[0].0.keys.is_empty());
        assert_eq!(batches[0].1, 9);
    }

    #[test]
    fn u64_keys_are_written_in_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(42, &mut buf), "42");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string());
    }
}
