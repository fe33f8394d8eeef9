//! [`CoalescedWrites`]: a connection that sends what one burst of HTTP/2 frames writes as one
//! TCP segment, shared by `portraitd` and `portrait-client`.
//!
//! A unary gRPC call costs each side two writes with the `h2` crate, each a segment that wakes
//! the other side:
//!
//! - the client writes the request's `HEADERS` as soon as the stream opens, and its `DATA` a task
//!   switch later (hyper sends the body from a task of its own once `h2` grants the new stream
//!   flow-control capacity);
//! - the server writes `HEADERS` and `DATA`, then the trailers separately (`h2` sends a `DATA`
//!   payload of 256 bytes or more in place, and flushes it before it can encode anything after
//!   it).
//!
//! On loopback every segment is a wake-up of the peer, which costs it more CPU than the frames
//! themselves. [`CoalescedWrites`] keeps what is written in a buffer, and on the first flush of a
//! burst yields once to the runtime (waking its own task at once) so that the tasks already woken
//! (hyper's body task, the rest of a response) add their frames; the next flush writes the whole
//! burst with one `writev`. A flush never waits for anything but the runtime's run queue, so no
//! timer or latency bound is involved: a lone frame goes out one scheduling round later.
//!
//! Writes larger than [`DIRECT_WRITE_BYTES`] go straight to the socket once the buffer is empty,
//! and the buffer never holds more than that before it is written, so memory per connection is
//! bounded.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes at least this large bypass the buffer when it is empty, and the buffer is written out
/// before it would grow past this size.
pub const DIRECT_WRITE_BYTES: usize = 64 * 1024;

/// A connection whose writes are gathered into one segment per burst; see the module
/// documentation. Reads pass straight through.
#[derive(Debug)]
pub struct CoalescedWrites<T> {
    inner: T,
    /// Bytes accepted from the writer and not yet written to `inner`.
    buf: Vec<u8>,
    /// How much of `buf` has already gone to `inner`.
    sent: usize,
    /// The current burst's first flush has yielded to the runtime already.
    yielded: bool,
}

impl<T> CoalescedWrites<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Bytes accepted and not yet written to the connection.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.sent
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes the buffer out; `Ready(Ok)` once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: writes the buffer out first if they would take it past
    /// [`DIRECT_WRITE_BYTES`].
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.buffered() > 0 && self.buffered() + len > DIRECT_WRITE_BYTES {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx, data.len()))?;
        if this.buffered() == 0 && data.len() >= DIRECT_WRITE_BYTES {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = slices.iter().map(|s| s.len()).sum::<usize>();
        ready!(this.poll_room(cx, len))?;
        if this.buffered() == 0 && len >= DIRECT_WRITE_BYTES {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, slices);
        }
        for slice in slices {
            this.buf.extend_from_slice(slice);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered() > 0 && !this.yielded {
            // Let the tasks woken meanwhile add their frames first: this task runs again after
            // them.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for CoalescedWrites<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the mock socket does on its next write: take up to `n` bytes (0: `Pending`).
    type Script = VecDeque<usize>;

    /// A socket that records each write it takes as one segment, following a script of short
    /// writes and `Pending`s (taking everything once the script runs out).
    #[derive(Default)]
    struct Socket {
        segments: Vec<Vec<u8>>,
        script: Script,
        flushes: usize,
        shut: bool,
    }

    impl Socket {
        fn received(&self) -> Vec<u8> {
            self.segments.concat()
        }
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let take = match this.script.pop_front() {
                Some(0) => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(n) => n.min(data.len()),
                None => data.len(),
            };
            this.segments.push(data[..take].to_vec());
            Poll::Ready(Ok(take))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Polls until ready, as a runtime would after each wake-up; returns the value and the
    /// number of polls it took.
    fn drive<T>(
        wakes: &Arc<Wakes>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> (T, usize) {
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        for polls in 1..1000 {
            let before = wakes.0.load(Ordering::Relaxed);
            match poll(&mut cx) {
                Poll::Ready(result) => return (result.expect("the mock never fails"), polls),
                Poll::Pending => assert!(
                    wakes.0.load(Ordering::Relaxed) > before,
                    "Pending without a wake-up would hang the task"
                ),
            }
        }
        panic!("never ready");
    }

    fn write(io: &mut CoalescedWrites<Socket>, wakes: &Arc<Wakes>, data: &[u8]) -> usize {
        drive(wakes, |cx| Pin::new(&mut *io).poll_write(cx, data)).0
    }

    fn flush(io: &mut CoalescedWrites<Socket>, wakes: &Arc<Wakes>) -> usize {
        drive(wakes, |cx| Pin::new(&mut *io).poll_flush(cx)).1
    }

    #[test]
    fn a_burst_goes_out_as_one_segment_after_one_yield() {
        let wakes = Arc::new(Wakes::default());
        let mut io = CoalescedWrites::new(Socket::default());
        assert_eq!(write(&mut io, &wakes, b"HEADERS"), 7);
        let slices = [IoSlice::new(b"DATA"), IoSlice::new(b"+EOS")];
        let (n, _) = drive(&wakes, |cx| {
            Pin::new(&mut io).poll_write_vectored(cx, &slices)
        });
        assert_eq!(n, 8);
        assert!(
            io.get_ref().segments.is_empty(),
            "nothing is sent before a flush"
        );
        assert_eq!(io.buffered(), 15);

        // The first flush yields once; the frames written meanwhile join the burst.
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            1,
            "the flush wakes its own task"
        );
        assert_eq!(write(&mut io, &wakes, b"TRAILERS"), 8);
        assert_eq!(flush(&mut io, &wakes), 1, "the second flush writes at once");

        assert_eq!(
            io.get_ref().segments,
            vec![b"HEADERSDATA+EOSTRAILERS".to_vec()]
        );
        assert_eq!(io.buffered(), 0);
        assert_eq!(io.get_ref().flushes, 1);

        // The next burst yields again, and a flush with nothing buffered does not.
        write(&mut io, &wakes, b"PING");
        assert_eq!(flush(&mut io, &wakes), 2);
        assert_eq!(flush(&mut io, &wakes), 1);
        assert_eq!(io.get_ref().segments.len(), 2);
    }

    #[test]
    fn large_writes_bypass_the_buffer_and_the_buffer_stays_bounded() {
        let wakes = Arc::new(Wakes::default());
        let mut io = CoalescedWrites::new(Socket::default());
        let big = vec![7u8; DIRECT_WRITE_BYTES];
        assert_eq!(write(&mut io, &wakes, &big), big.len());
        assert_eq!(io.get_ref().segments, vec![big.clone()], "sent in place");
        assert_eq!(io.buffered(), 0);

        // Three writes of 40 KiB: the first is sent before the second would overfill.
        let chunk = vec![1u8; 40 * 1024];
        for _ in 0..3 {
            write(&mut io, &wakes, &chunk);
            assert!(io.buffered() <= DIRECT_WRITE_BYTES);
        }
        assert_eq!(io.get_ref().segments.len(), 3);
        assert_eq!(io.buffered(), chunk.len());
        flush(&mut io, &wakes);
        assert_eq!(io.get_ref().received().len(), big.len() + 3 * chunk.len());
    }

    #[test]
    fn shutdown_sends_what_is_buffered_first() {
        let wakes = Arc::new(Wakes::default());
        let mut io = CoalescedWrites::new(Socket::default());
        write(&mut io, &wakes, b"GOAWAY");
        drive(&wakes, |cx| Pin::new(&mut io).poll_shutdown(cx));
        assert_eq!(io.get_ref().received(), b"GOAWAY");
        assert!(io.get_ref().shut);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(Vec<u8>),
        Vectored(Vec<Vec<u8>>),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => proptest::collection::vec(any::<u8>(), 30_000..70_000),
        ];
        prop_oneof![
            3 => bytes.clone().prop_map(Op::Write),
            2 => proptest::collection::vec(bytes, 0..4).prop_map(Op::Vectored),
            2 => Just(Op::Flush),
        ]
    }

    proptest! {
        #![proptest_config(Config {
            cases: 200,
            rng_seed: RngSeed::Fixed(0x0c0a_1e5c_ed00_0001),
            failure_persistence: None,
            ..Config::default()
        })]

        /// Against a model (the concatenation of everything accepted): the socket receives
        /// exactly those bytes in order, whatever its short writes and `Pending`s, nothing stays
        /// buffered after a completed flush, and the buffer never passes its bound.
        #[test]
        fn bytes_arrive_whole_and_in_order(
            ops in proptest::collection::vec(op(), 1..40),
            script in proptest::collection::vec(0usize..5000, 0..60),
        ) {
            let wakes = Arc::new(Wakes::default());
            let mut io = CoalescedWrites::new(Socket { script: script.into(), ..Socket::default() });
            let mut accepted = Vec::new();
            for op in ops.iter().chain([&Op::Flush]) {
                match op {
                    Op::Write(data) => {
                        let n = write(&mut io, &wakes, data);
                        accepted.extend_from_slice(&data[..n]);
                    }
                    Op::Vectored(parts) => {
                        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                        let (n, _) = drive(&wakes, |cx| Pin::new(&mut io).poll_write_vectored(cx, &slices));
                        let all = parts.concat();
                        prop_assert!(n <= all.len());
                        accepted.extend_from_slice(&all[..n]);
                    }
                    Op::Flush => {
                        flush(&mut io, &wakes);
                        prop_assert_eq!(io.buffered(), 0);
                        prop_assert_eq!(io.get_ref().received(), accepted.clone());
                    }
                }
                prop_assert!(io.buffered() <= DIRECT_WRITE_BYTES);
            }
        }
    }
}
