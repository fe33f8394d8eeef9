//! Request logging: a tower layer that gives every call a request id and a tracing span, and
//! logs its method, status code and duration when its response ends.
//!
//! - The request id is the client's `x-request-id` header when it sends a sane one (1 to 64
//!   visible ASCII characters), otherwise one the server makes up; it is echoed in the response
//!   headers so a client can quote it.
//! - Everything logged while the call runs (including on the blocking pool, see
//!   [`crate::call::run_blocking`]) is inside the span `rpc{request_id, method}`.
//! - The outcome is logged once, when the response body ends (so a `Members` stream is timed to
//!   its last batch) or is dropped early (the client went away). Its status comes from the
//!   trailers, or from the headers of a trailers-only (error) response.
//!
//! Levels, under the target `portrait::rpc`: successes at `DEBUG` (so that the default `info`
//! filter costs nothing per lookup on the hot path), calls slower than one second and client
//! errors at `INFO`, server-side failures at `WARN`. `--log portrait::rpc=debug` shows every call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::Span;

use crate::idle_poll::IdlePoll;

/// Header carrying the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Calls at least this slow are logged at `INFO` even when they succeed.
const SLOW_CALL: Duration = Duration::from_secs(1);

/// The tower layer; see the module documentation. It also tells the idle-poll spinners, if
/// any, when calls start and end (see [`crate::idle_poll`]).
#[derive(Debug, Clone, Default)]
pub struct RequestLogLayer {
    idle_poll: Option<Arc<IdlePoll>>,
}

impl RequestLogLayer {
    /// A layer that also keeps `idle_poll`'s spinners spinning while calls come.
    pub fn new(idle_poll: Option<Arc<IdlePoll>>) -> Self {
        Self { idle_poll }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            idle_poll: self.idle_poll.clone(),
        }
    }
}

/// The service made by [`RequestLogLayer`].
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
    idle_poll: Option<Arc<IdlePoll>>,
}

/// The id of a request: the client's, or a fresh one.
///
/// A made-up id is the server's start time and a counter, in hex (`6561a1b2-00002a`): unique per
/// process run, and cheap to make.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers
        .get(REQUEST_ID_HEADER)
        .filter(|v| (1..=64).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic))
    {
        return id.clone();
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // `{epoch:08x}-{n:06x}`: at least 6 digits of the counter, more once it needs them.
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(6) as usize;
    let mut buf = [0u8; 8 + 1 + 16];
    hex(u64::from(epoch), &mut buf[..8]);
    buf[8] = b'-';
    hex(n, &mut buf[9..9 + digits]);
    HeaderValue::from_bytes(&buf[..9 + digits]).expect("hex digits are a valid header value")
}

/// Writes `v` as lower-case hex digits filling `out` (the high digits that do not fit are lost).
fn hex(mut v: u64, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The status code of a response's trailers (or of a trailers-only response's headers), read
/// without building the whole [`Status`] (whose message and details only a logged failure needs).
fn status_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    std::str::from_utf8(value.as_bytes())
        .ok()?
        .parse::<i32>()
        .ok()
        .map(Code::from_i32)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<LoggedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        if let Some(poll) = &self.idle_poll {
            poll.touch();
        }
        let mut id = request_id(req.headers());
        let span = tracing::info_span!(
            target: "portrait::rpc",
            "rpc",
            request_id = %id.to_str().unwrap_or("?"),
            method = %req.uri().path()
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        let idle_poll = self.idle_poll.clone();
        Box::pin(async move {
            let result = {
                let span = span.clone();
                tracing::Instrument::instrument(future, span).await
            };
            let outcome = Outcome {
                span,
                start,
                idle_poll,
            };
            match result {
                Ok(response) => {
                    let (mut parts, body) = response.into_parts();
                    // A value unique to each call would only evict useful entries from the
                    // HPACK tables of both ends: it is sent as never indexed.
                    id.set_sensitive(true);
                    parts.headers.insert(REQUEST_ID_HEADER, id);
                    let header_status = parts
                        .headers
                        .contains_key("grpc-status")
                        .then(|| parts.headers.clone());
                    Ok(Response::from_parts(
                        parts,
                        LoggedBody {
                            inner: body,
                            outcome: Some(outcome),
                            header_status,
                        },
                    ))
                }
                Err(err) => {
                    outcome.log(None, "the service failed before answering");
                    Err(err)
                }
            }
        })
    }
}

/// What is needed to log a call when its response ends.
#[derive(Debug)]
struct Outcome {
    span: Span,
    start: Instant,
    idle_poll: Option<Arc<IdlePoll>>,
}

impl Outcome {
    /// Logs the call with the status in `status` (trailers, or the headers of a trailers-only
    /// response; `None`: no status reached the client).
    fn log(self, status: Option<&HeaderMap>, note: &str) {
        if let Some(poll) = &self.idle_poll {
            poll.touch();
        }
        let elapsed = self.start.elapsed();
        let micros = elapsed.as_micros() as u64;
        // The span carries the request id and the method.
        let _entered = self.span.enter();
        let Some((code, headers)) = status.and_then(|h| Some((status_code(h)?, h))) else {
            tracing::info!(target: "portrait::rpc", micros, code = "none", "{note}");
            return;
        };
        let message = || Status::from_header_map(headers).map(|s| s.message().to_owned());
        match code {
            Code::Ok if elapsed >= SLOW_CALL => {
                tracing::info!(target: "portrait::rpc", micros, code = ?code, "slow call")
            }
            Code::Ok => tracing::debug!(target: "portrait::rpc", micros, code = ?code, "ok"),
            Code::Internal | Code::DataLoss | Code::Unknown | Code::Unavailable => {
                let message = message().unwrap_or_default();
                tracing::warn!(target: "portrait::rpc", micros, code = ?code, "{message}")
            }
            _ => {
                let message = message().unwrap_or_default();
                tracing::info!(target: "portrait::rpc", micros, code = ?code, "{message}")
            }
        }
    }
}

/// A response body that logs its call's outcome when it ends or is dropped.
#[derive(Debug)]
pub struct LoggedBody<B> {
    inner: B,
    outcome: Option<Outcome>,
    /// The headers of a trailers-only response, which hold its status.
    header_status: Option<HeaderMap>,
}

impl<B> LoggedBody<B> {
    fn finish(&mut self, status: Option<&HeaderMap>, note: &str) {
        if let Some(outcome) = self.outcome.take() {
            outcome.log(status, note);
        }
    }
}

impl<B: Body + Unpin> Body for LoggedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.finish(Some(trailers), "response ended without a status");
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(None, "the response body failed"),
            Poll::Ready(None) => {
                let status = this.header_status.take();
                this.finish(status.as_ref(), "response ended without a status");
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            match self.header_status.take() {
                Some(status) => self.finish(Some(&status), ""),
                None => self.finish(None, "the client went away before the response ended"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_from_the_client_or_made_up() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        let made_up = request_id(&headers);
        assert_ne!(made_up, "has space");
        assert_ne!(request_id(&HeaderMap::new()), made_up);
        let (epoch, counter) = made_up.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(epoch.len(), 8);
        assert!(counter.len() >= 6);
        assert!(
            [epoch, counter]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn hex_fills_its_buffer() {
        let mut buf = [0u8; 6];
        hex(0x2a, &mut buf);
        assert_eq!(&buf, b"00002a");
        let mut buf = [0u8; 9];
        hex(0x1_2345_6789, &mut buf);
        assert_eq!(&buf, b"123456789");
    }

    #[test]
    fn status_codes_come_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(status_code(&headers), Some(Code::NotFound));
        headers.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(status_code(&headers), None);
    }
}
