//! The life of one call: its deadline, its cancellation, and running its engine work off the
//! async threads.
//!
//! Engine calls are CPU-bound and may block on I/O, so they run off the async threads: queries
//! that parallelize over shards on a rayon worker ([`run_parallel`]), the rest on tokio's
//! blocking pool ([`run_blocking`]). A [`Call`] travels with the work and tells it when to stop:
//!
//! - the client's deadline (the `grpc-timeout` request header) has passed;
//! - the client went away: the handler's future was dropped (tonic drops it when the client
//!   resets the stream or when the server-side timeout fires), which trips the cancel flag;
//! - the server is shutting down.
//!
//! Work checks [`Call::check`] between its steps (shards, pages, keys). An engine call that is
//! already running finishes its current step; nothing after it starts.
//!
//! Point lookups whose cost is known to be microseconds run inline instead ([`run_point`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::metadata::MetadataMap;

/// A flag raised once, shared by everything that must stop when it is.
#[derive(Debug, Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    /// Raises the flag.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the flag was raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What a call's work needs to know to stop in time.
#[derive(Debug, Clone)]
pub struct Call {
    deadline: Option<Instant>,
    cancelled: Flag,
    shutdown: Flag,
}

impl Call {
    /// A call with the deadline of `metadata` (if any), stopping also when `shutdown` is raised.
    pub fn new(metadata: &MetadataMap, shutdown: &Flag) -> Self {
        let deadline = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| Instant::now() + d);
        Self {
            deadline,
            cancelled: Flag::default(),
            shutdown: shutdown.clone(),
        }
    }

    /// A call without deadline (for work the server starts itself, and tests).
    pub fn unbounded() -> Self {
        Self {
            deadline: None,
            cancelled: Flag::default(),
            shutdown: Flag::default(),
        }
    }

    /// The flag that cancels this call.
    pub fn cancel_flag(&self) -> &Flag {
        &self.cancelled
    }

    /// `Ok` while the work should go on; otherwise the status that ends the call.
    pub fn check(&self) -> Result<(), Status> {
        if self.cancelled.is_raised() {
            return Err(Status::cancelled("the request was cancelled"));
        }
        if self.shutdown.is_raised() {
            return Err(Status::unavailable("the server is shutting down; retry"));
        }
        if let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            return Err(Status::deadline_exceeded(
                "the request's deadline passed before the work finished",
            ));
        }
        Ok(())
    }
}

/// Raises a flag when dropped: the handler's future owns one, so dropping the future cancels the
/// work it started.
#[derive(Debug)]
pub struct CancelOnDrop(pub Flag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

/// Runs `work` on the blocking pool inside the current tracing span. If the caller stops waiting
/// (its future is dropped), `call` is cancelled so that `work` stops at its next check.
pub async fn run_blocking<T, F>(call: Call, work: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&Call) -> Result<T, Status> + Send + 'static,
{
    let _guard = CancelOnDrop(call.cancelled.clone());
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        call.check()?;
        work(&call)
    });
    match task.await {
        Ok(result) => result,
        Err(join) => {
            tracing::error!(error = %join, "request worker panicked");
            Err(Status::internal(
                "the server failed while answering this request",
            ))
        }
    }
}

/// Runs CPU-bound `work` that parallelizes itself on rayon (counts, analyses and behaviour
/// queries: shards in parallel) on a rayon worker, like [`run_blocking`] otherwise (span,
/// cancellation, panics). From a rayon worker the engine's parallel loops start at once; from
/// the blocking pool every loop would hand over twice more (into rayon's queue, and back to the
/// waiting thread), which costs tens of microseconds when each thread has to be woken up, and
/// an analysis runs several loops (a sample two, a top-k or a group more).
///
/// `work` must not hold a lock across a parallel loop: a worker waiting for its loop may run
/// another call's work meanwhile, which would then wait for a lock its own thread holds. The
/// engine's query paths take their locks (the id dictionary, the group memo) only around
/// sequential code.
pub async fn run_parallel<T, F>(call: Call, work: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&Call) -> Result<T, Status> + Send + 'static,
{
    let _guard = CancelOnDrop(call.cancelled.clone());
    let span = tracing::Span::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _entered = span.enter();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            call.check()?;
            work(&call)
        }));
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) | Err(_) => {
            tracing::error!("request worker panicked");
            Err(Status::internal(
                "the server failed while answering this request",
            ))
        }
    }
}

/// Runs a point lookup (a portrait, a membership test): inline on the async thread when `inline`
/// (the caller knows the work takes microseconds and cannot wait on I/O), otherwise as
/// [`run_blocking`]. Inline saves the hand-off to the blocking pool, which costs as much as the
/// lookup itself.
pub async fn run_point<T, F>(call: Call, inline: bool, work: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&Call) -> Result<T, Status> + Send + 'static,
{
    if inline {
        call.check()?;
        return work(&call);
    }
    run_blocking(call, work).await
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("3H"), Some(Duration::from_secs(10_800)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "5", "123456789S", "5s", "-5S", "5 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn check_reports_why_work_stops() {
        let shutdown = Flag::default();
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "1H".parse().unwrap());
        let call = Call::new(&metadata, &shutdown);
        call.check().unwrap();
        shutdown.raise();
        assert_eq!(call.check().unwrap_err().code(), Code::Unavailable);
        call.cancel_flag().raise();
        assert_eq!(call.check().unwrap_err().code(), Code::Cancelled);

        metadata.insert("grpc-timeout", "0n".parse().unwrap());
        let expired = Call::new(&metadata, &Flag::default());
        assert_eq!(expired.check().unwrap_err().code(), Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn parallel_work_answers_and_survives_panics() {
        let answer = run_parallel(Call::unbounded(), |_| Ok(6 * 7)).await;
        assert_eq!(answer.unwrap(), 42);
        let panicked: Result<(), Status> =
            run_parallel(Call::unbounded(), |_| panic!("a bug")).await;
        assert_eq!(panicked.unwrap_err().code(), tonic::Code::Internal);
        let call = Call::unbounded();
        call.cancel_flag().raise();
        let cancelled = run_parallel(call, |_| Ok(())).await;
        assert_eq!(cancelled.unwrap_err().code(), tonic::Code::Cancelled);
    }

    #[tokio::test]
    async fn dropping_the_caller_cancels_the_work() {
        let call = Call::unbounded();
        let flag = call.cancel_flag().clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        let fut = run_blocking(call, move |call| {
            started_tx.send(()).unwrap();
            while call.check().is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
            stopped_tx.send(()).unwrap();
            Ok(())
        });
        let handle = tokio::spawn(fut);
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        handle.abort();
        tokio::task::spawn_blocking(move || {
            stopped_rx.recv_timeout(Duration::from_secs(5)).unwrap()
        })
        .await
        .unwrap();
        assert!(flag.is_raised());
    }
}
