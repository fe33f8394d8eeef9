//! Write coalescing for served connections: the answers an I/O thread produces in one turn of
//! its event loop leave in one `write`.
//!
//! HTTP/2 (the `h2` crate under tonic) flushes its output before it buffers a frame behind a
//! `DATA` frame larger than 256 bytes: a portrait answer (a kilobyte or two) is flushed alone.
//! With 32 calls in flight on a connection, that was one `writev` per answer (1.05 per lookup)
//! while the requests of those calls arrived a dozen to a read; on loopback each write also runs
//! the receiver's TCP stack in the sender's time (a third of the server's profile).
//!
//! [`Corked`] wraps an accepted connection. Its writes (and flushes) only append to a buffer in
//! memory and wake the connection's *flusher*, a task of its own on the same single-threaded
//! runtime ([`crate::io_threads`]). Woken tasks run in the order they were woken, so the flusher
//! runs after the calls that were already due to run: by then their answers are in the buffer,
//! and it hands all of them to the socket at once (0.37 writes per lookup in that load). A call
//! that arrives alone is answered one task turn later than without the cork, in one write
//! where its headers, message and trailers took two.
//!
//! - **Back-pressure.** The buffer takes at most [`MAX_PENDING`] bytes; past that, writes wait
//!   until the flusher has taken it to hand to the socket, which waits for the peer to read. So
//!   a connection whose peer stalls holds at most twice that: the bytes being written and a
//!   full buffer. The socket's own send buffer stays the kernel's business.
//! - **Failure.** A failed socket write is kept: every later write, flush and shutdown of the
//!   connection fails with its kind, so the HTTP/2 connection ends as it would have.
//! - **Shutdown** waits until the buffer is written, then shuts the sending side down.
//! - **Drop.** When the connection goes away with bytes still buffered, the flusher writes what
//!   the socket takes at once and stops; it never waits on a peer that is gone or stalled.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Most bytes a connection buffers before its writes wait for the socket.
pub const MAX_PENDING: usize = 64 * 1024;

/// Most buffer capacity a connection keeps between writes: a connection that once sent a large
/// answer does not hold on to its room while it idles.
const KEPT_CAPACITY: usize = 16 * 1024;

/// An accepted connection whose writes are coalesced; see the module documentation.
#[derive(Debug)]
pub struct Corked {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    info: TcpConnectInfo,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still has a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bytes written by the connection, not yet handed to the socket.
    pending: Vec<u8>,
    /// The flusher, while it waits for bytes (or for the socket, or for the connection to go).
    flusher: Option<Waker>,
    /// The connection, while it waits for room in the buffer or for its shutdown to finish.
    writer: Option<Waker>,
    /// Why the socket failed; every later write fails the same way.
    failed: Option<(io::ErrorKind, String)>,
    /// The connection asked for its sending side to be shut down.
    shutdown: bool,
    /// The flusher has stopped: the sending side is shut down (or failed).
    finished: bool,
    /// The connection is gone.
    dropped: bool,
    /// Turns of the flusher: each hands all that was buffered to the socket (in one write,
    /// unless the socket takes it in parts).
    writes: u64,
}

impl State {
    fn error(&self) -> Option<io::Error> {
        let (kind, message) = self.failed.as_ref()?;
        Some(io::Error::new(*kind, message.clone()))
    }

    fn wake_flusher(&mut self) {
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

impl Corked {
    /// Wraps `stream` and starts its flusher on the current tokio runtime (so: call it on the
    /// runtime that serves the connection).
    pub fn new(stream: TcpStream) -> Self {
        let info = TcpConnectInfo {
            local_addr: stream.local_addr().ok(),
            remote_addr: stream.peer_addr().ok(),
        };
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared::default());
        tokio::spawn(flusher(shared.clone(), write));
        Self { read, shared, info }
    }

    /// Turns of the flusher so far, each a hand-over of all that was buffered to the socket
    /// (one write, unless the socket takes it in parts).
    pub fn socket_writes(&self) -> u64 {
        self.shared.lock().writes
    }
}

impl Connected for Corked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Corked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl Corked {
    /// Appends what fits of `bufs` to the buffer, in order.
    fn append(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut s = self.shared.lock();
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        if s.shutdown || s.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the connection's sending side was shut down",
            )));
        }
        let room = MAX_PENDING.saturating_sub(s.pending.len());
        if room == 0 {
            s.writer = Some(cx.waker().clone());
            s.wake_flusher();
            return Poll::Pending;
        }
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(room - taken);
            s.pending.extend_from_slice(&b[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        if taken > 0 {
            s.wake_flusher();
        }
        Poll::Ready(Ok(taken))
    }
}

impl AsyncWrite for Corked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.append(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Ready at once: the flusher is already woken for whatever is buffered.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shared.lock().error() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.shared.lock();
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        if s.finished {
            return Poll::Ready(Ok(()));
        }
        s.shutdown = true;
        s.writer = Some(cx.waker().clone());
        s.wake_flusher();
        Poll::Pending
    }
}

impl Drop for Corked {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.dropped = true;
        s.wake_flusher();
    }
}

/// What the flusher found in the buffer.
enum Turn {
    /// Bytes to write (now in the flusher's own buffer); the connection is gone if `true`.
    Write(bool),
    /// Nothing left, and the connection wants its sending side shut down.
    Shutdown,
    /// Nothing left, and the connection is gone.
    Stop,
}

/// Hands the buffered bytes to `socket` until the connection shuts down or goes away, or the
/// socket fails.
async fn flusher(shared: Arc<Shared>, mut socket: OwnedWriteHalf) {
    let mut out = Vec::new();
    let failure = loop {
        let turn = poll_fn(|cx| {
            let mut s = shared.lock();
            if !s.pending.is_empty() {
                std::mem::swap(&mut s.pending, &mut out);
                s.writes += 1;
                // Room again for a connection that waits for it.
                s.wake_writer();
                return Poll::Ready(Turn::Write(s.dropped));
            }
            if s.dropped {
                return Poll::Ready(Turn::Stop);
            }
            if s.shutdown {
                return Poll::Ready(Turn::Shutdown);
            }
            s.flusher = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match turn {
            Turn::Write(false) => {
                if let Err(e) = write_all(&shared, &mut socket, &out).await {
                    break Some(e);
                }
                out.clear();
                if out.capacity() > KEPT_CAPACITY {
                    out = Vec::new();
                }
            }
            // The connection is gone: what the socket takes now, and no more (best effort: there
            // is no one left to tell whether it arrived).
            Turn::Write(true) => {
                let mut at = 0;
                while at < out.len() {
                    match socket.try_write(&out[at..]) {
                        Ok(n) if n > 0 => at += n,
                        _ => break,
                    }
                }
                break None;
            }
            Turn::Shutdown => {
                break poll_fn(|cx| Pin::new(&mut socket).poll_shutdown(cx))
                    .await
                    .err();
            }
            Turn::Stop => break None,
        }
    };
    let mut s = shared.lock();
    if let Some(e) = failure {
        s.failed = Some((e.kind(), e.to_string()));
    }
    s.finished = true;
    s.pending = Vec::new();
    s.wake_writer();
}

/// Writes all of `bytes` to `socket`, unless the connection goes away while the socket is full
/// (an error then: the bytes have no one left to reach).
async fn write_all(shared: &Shared, socket: &mut OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
    let mut at = 0;
    poll_fn(|cx| {
        while at < bytes.len() {
            match Pin::new(&mut *socket).poll_write(cx, &bytes[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let mut s = shared.lock();
                    if s.dropped {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the connection went away while its answers waited for the socket",
                        )));
                    }
                    s.flusher = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A corked server side and the plain client side of one loopback connection.
    async fn pair() -> (Corked, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (server, _) = accepted.unwrap();
        (Corked::new(server), client.unwrap())
    }

    /// Runs `test` on a current-thread runtime, failing it (instead of hanging) after 60 s: a
    /// lost wake-up shows as a timeout.
    fn run(test: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                // Biased to the timer: polling `test` again when the time is up could let it
                // finish, hiding the lost wake-up.
                tokio::select! {
                    biased;
                    () = tokio::time::sleep(Duration::from_secs(60)) => panic!("the test hung"),
                    () = test => {}
                }
            });
    }

    /// Deterministic bytes: `len` of them, from `seed`.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn bytes_arrive_whole_and_in_order() {
        run(async {
            let (mut server, mut client) = pair().await;
            // Sizes around the buffer's bound, and far past it.
            let sizes = [
                1,
                255,
                4096,
                MAX_PENDING - 1,
                MAX_PENDING,
                3 * MAX_PENDING + 7,
                0,
                17,
            ];
            let chunks: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| bytes(i as u64, n))
                .collect();
            // Then a vectored write, whose slices must keep their order too.
            let (a, b) = (bytes(100, 300), bytes(101, 70_000));
            let expected: Vec<u8> = [chunks.concat(), a.clone(), b.clone()].concat();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                got
            });
            for c in &chunks {
                server.write_all(c).await.unwrap();
                server.flush().await.unwrap();
            }
            let mut slices = [io::IoSlice::new(&a), io::IoSlice::new(&b)];
            let mut left: &mut [io::IoSlice<'_>] = &mut slices;
            while !left.is_empty() {
                let n = server.write_vectored(left).await.unwrap();
                io::IoSlice::advance_slices(&mut left, n);
            }
            server.shutdown().await.unwrap();
            assert!(reader.await.unwrap() == expected, "bytes lost or reordered");
        });
    }

    #[test]
    fn writes_of_one_turn_leave_in_one_socket_write() {
        run(async {
            let (mut server, mut client) = pair().await;
            // Ten answers written and flushed without the task yielding in between.
            for i in 0..10u8 {
                assert!(matches!(
                    futures_poll(&mut server, &[i; 300]),
                    Poll::Ready(Ok(300))
                ));
            }
            let mut got = vec![0; 3000];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(server.socket_writes(), 1);
            for (i, chunk) in got.chunks(300).enumerate() {
                assert!(chunk.iter().all(|&b| b == i as u8));
            }
            // A lone answer later goes out on its own, promptly.
            server.write_all(b"again").await.unwrap();
            let mut five = [0; 5];
            client.read_exact(&mut five).await.unwrap();
            assert_eq!(&five, b"again");
            assert_eq!(server.socket_writes(), 2);
        });
    }

    /// One `poll_write` and one `poll_flush`, without yielding.
    fn futures_poll(server: &mut Corked, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let written = Pin::new(&mut *server).poll_write(&mut cx, bytes);
        assert!(matches!(
            Pin::new(&mut *server).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        written
    }

    #[test]
    fn a_peer_that_does_not_read_holds_writes_back() {
        run(async {
            let (mut server, mut client) = pair().await;
            let chunk = bytes(7, 16 * 1024);
            let mut accepted = 0usize;
            // Write until the writes wait: the kernel's buffers and ours fill up.
            loop {
                match tokio::time::timeout(Duration::from_millis(200), server.write(&chunk)).await {
                    Ok(n) => accepted += n.unwrap(),
                    Err(_) => break,
                }
                assert!(accepted < 256 << 20, "writes never waited");
            }
            // Ours is full: exactly its bound, no more.
            assert_eq!(server.shared.lock().pending.len(), MAX_PENDING);
            assert!(accepted >= MAX_PENDING, "{accepted}");
            // Once the peer reads, the writes go on and every byte arrives.
            let reader = tokio::spawn(async move {
                let mut n = 0usize;
                let mut buf = vec![0; 64 * 1024];
                loop {
                    match client.read(&mut buf).await.unwrap() {
                        0 => break n,
                        k => n += k,
                    }
                }
            });
            for _ in 0..8 {
                server.write_all(&chunk).await.unwrap();
                accepted += chunk.len();
            }
            server.shutdown().await.unwrap();
            assert_eq!(reader.await.unwrap(), accepted);
        });
    }

    #[test]
    fn a_write_waiting_for_room_fails_when_the_peer_resets() {
        run(async {
            let (mut server, client) = pair().await;
            let chunk = bytes(13, 16 * 1024);
            // Fill the kernel's buffers and ours; the last write waits for room.
            let waiting = loop {
                let mut write = Box::pin(server.write_all(&chunk));
                tokio::select! {
                    done = &mut write => done.unwrap(),
                    () = tokio::time::sleep(Duration::from_millis(200)) => break write,
                }
            };
            // The peer goes away with a reset (linger 0), its unread bytes discarded.
            client.set_zero_linger().unwrap();
            drop(client);
            // Woken by the failure, not found failed when polled for another reason.
            let mut waiting = waiting;
            let e = tokio::select! {
                biased;
                () = tokio::time::sleep(Duration::from_secs(10)) => panic!("the write was not woken"),
                result = &mut waiting => result.unwrap_err(),
            };
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{e:?}"
            );
        });
    }

    #[test]
    fn a_closed_peer_fails_the_writes() {
        run(async {
            let (mut server, client) = pair().await;
            drop(client);
            let chunk = bytes(9, 8 * 1024);
            let mut failed = None;
            for _ in 0..10_000 {
                if let Err(e) = server.write_all(&chunk).await {
                    failed = Some(e);
                    break;
                }
                tokio::task::yield_now().await;
            }
            let e = failed.expect("writes to a closed peer kept succeeding");
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{e:?}"
            );
            // The failure sticks, for flushes and shutdowns too.
            assert_eq!(server.flush().await.unwrap_err().kind(), e.kind());
            assert_eq!(server.shutdown().await.unwrap_err().kind(), e.kind());
        });
    }

    #[test]
    fn dropping_a_stalled_connection_stops_its_flusher() {
        run(async {
            let (mut server, _client) = pair().await;
            let chunk = bytes(11, 16 * 1024);
            while tokio::time::timeout(Duration::from_millis(200), server.write(&chunk))
                .await
                .is_ok()
            {}
            let flusher = Arc::downgrade(&server.shared);
            drop(server);
            // The flusher lets go of the shared state when it stops.
            for _ in 0..100 {
                if flusher.upgrade().is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the flusher of a dropped connection still runs");
        });
    }

    #[test]
    fn shutdown_after_shutdown_and_writes_after_it() {
        run(async {
            let (mut server, mut client) = pair().await;
            server.write_all(b"last").await.unwrap();
            server.shutdown().await.unwrap();
            server.shutdown().await.unwrap();
            assert_eq!(
                server.write(b"late").await.unwrap_err().kind(),
                io::ErrorKind::BrokenPipe
            );
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"last");
        });
    }
}
