//! Serving connections thread per core: each I/O thread runs a single-threaded tokio runtime
//! of its own, and every connection lives on one of them from accept to close.
//!
//! On a shared multi-threaded runtime, a call's tasks (the connection's, the stream's) wake
//! whichever worker is idle to steal them, so a lone call crosses cores twice or more; where
//! waking a halted core is expensive (virtual machines), those wake-ups cost more CPU than the
//! call. Here the accept loop hands each new connection to the next thread in turn, and the
//! connection's frames, its streams' handlers and point lookups run there; work that takes
//! longer (queries, analyses, loads) still leaves the I/O thread for rayon or the blocking pool
//! of that thread's runtime ([`crate::call`]), so one heavy call does not stall the others on
//! its thread.
//!
//! The trade-off: one connection's calls are served by one core. Clients that want both cores
//! for many small calls open a connection per core (as gRPC load balancing does anyway).

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::server::{Router, TcpIncoming};
use tower::layer::util::{Identity, Stack};

use crate::observe::RequestLogLayer;

/// The server's routes, as [`crate::server::Bound::serve`] builds them.
pub type AppRouter = Router<Stack<RequestLogLayer, Identity>>;

/// How long the accept loop waits after an accept error that is not about one connection
/// (too many open files, say), so that it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections from `incoming` and serves them on `threads` I/O threads until `drain`
/// turns true; then stops accepting and returns once every thread has drained its connections.
pub async fn serve(
    router: AppRouter,
    mut incoming: TcpIncoming,
    threads: usize,
    drain: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let threads = threads.max(1);
    let mut lanes = Vec::with_capacity(threads);
    // Each thread's result, as it ends.
    let (done, mut finished) = mpsc::channel::<anyhow::Result<()>>(threads);
    for k in 0..threads {
        let (lane, connections) = mpsc::unbounded_channel::<std::net::TcpStream>();
        let done = done.clone();
        let router = router.clone();
        let mut drain = drain.clone();
        std::thread::Builder::new()
            .name(format!("portraitd-io-{k}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot build an I/O thread's runtime")
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            // Registered with this thread's reactor: the connection's readiness
                            // wakes this thread and no other.
                            // A connection that cannot be registered (the reactor is out of
                            // room, say) is dropped alone: an error in the stream would stop
                            // this thread's server.
                            let connections = UnboundedReceiverStream::new(connections)
                                .filter_map(|stream| match tokio::net::TcpStream::from_std(stream) {
                                    Ok(stream) => Some(Ok::<_, std::io::Error>(stream)),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "cannot serve an accepted connection");
                                        None
                                    }
                                });
                            router
                                .serve_with_incoming_shutdown(connections, async move {
                                    let _ = drain.wait_for(|d| *d).await;
                                })
                                .await
                                .context("the server failed")
                        })
                    });
                let _ = done.blocking_send(result);
            })
            .context("cannot start an I/O thread")?;
        lanes.push(lane);
    }
    drop(done);

    let mut stop = drain;
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = incoming.next() => accepted,
            _ = stop.wait_for(|d| *d) => break,
        };
        match accepted {
            Some(Ok(stream)) => {
                // `into_std` deregisters the socket from this runtime's reactor.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hand over an accepted connection");
                        continue;
                    }
                };
                if lanes[next % lanes.len()].send(stream).is_err() {
                    // The thread ended: its result says why.
                    break;
                }
                next = next.wrapping_add(1);
            }
            Some(Err(e)) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            None => break,
        }
    }
    // Close the listener first, then let every thread drain what it has; a thread that
    // failed fails the server at once.
    drop(incoming);
    drop(lanes);
    for _ in 0..threads {
        match finished.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => anyhow::bail!("an I/O thread panicked"),
        }
    }
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before we took it, say).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | BrokenPipe | Interrupted | WouldBlock | TimedOut
    )
}
