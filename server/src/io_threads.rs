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
//! The trade-off: one connection's calls are served by one core, and what runs on an I/O thread
//! itself (a point lookup, which may wait for a page of the data to be read from disk;
//! decoding a large upload chunk; encoding a large answer) holds up the other connections of
//! that thread until it is done, where a shared runtime would let another worker take them.
//! Clients that want both cores for many small calls open a connection per core (as gRPC load
//! balancing does anyway).
//!
//! Each connection's writes go through [`crate::cork::Corked`]: the answers its calls produce in
//! one turn of the thread's event loop leave in one socket write, not one each.
//!
//! Shutdown: the listener closes and so does each thread's lane of new connections; every
//! thread takes what its lane still holds, then drains (finishing open calls, telling each
//! connection to go away) for the grace period, then closes what is still open; each thread
//! ends once the work its calls run on its blocking pool has stopped.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::server::{Router, TcpIncoming};
use tower::layer::util::{Identity, Stack};

use crate::cork::Corked;
use crate::observe::RequestLogLayer;

/// The server's routes, as [`crate::server::Bound::serve`] builds them.
pub type AppRouter = Router<Stack<RequestLogLayer, Identity>>;

/// How long the accept loop waits after an accept error that is not about one connection
/// (too many open files, say), so that it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections from `incoming` and serves them on `threads` I/O threads until `drain`
/// turns true (or a thread fails); then stops accepting, gives open calls `grace` to finish,
/// closes what is still open and returns once every thread has stopped, including the work
/// its calls run on its blocking pool (which stops at its next check, the server's shutdown
/// flag being raised by then).
pub async fn serve(
    router: AppRouter,
    mut incoming: TcpIncoming,
    threads: usize,
    drain: watch::Receiver<bool>,
    grace: Duration,
) -> anyhow::Result<()> {
    let threads = threads.max(1);
    // Ends every thread's server at once, with its open calls: the grace period is over.
    let (force, forced) = watch::channel(false);
    // Each thread's result, as it ends.
    let (done, mut finished) = mpsc::channel::<anyhow::Result<()>>(threads);
    let mut lanes = Vec::with_capacity(threads);
    for k in 0..threads {
        // Built here, so that a thread that cannot start fails the server at once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("portraitd-b{k}"))
            // The blocking pools together stay within tokio's default for one runtime.
            .max_blocking_threads((512 / threads).max(8))
            .build()
            .context("cannot build an I/O thread's runtime")?;
        let (lane, connections) = mpsc::unbounded_channel::<std::net::TcpStream>();
        let (router, done) = (router.clone(), done.clone());
        let mut forced = forced.clone();
        std::thread::Builder::new()
            .name(format!("portraitd-io-{k}"))
            .spawn(move || {
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let result = runtime.block_on(async move {
                        // Registered with this thread's reactor: the connection's readiness
                        // wakes this thread and no other. One that cannot be registered (the
                        // reactor is out of room, say) is dropped alone, with a warning.
                        let connections =
                            UnboundedReceiverStream::new(connections).filter_map(|stream| {
                                match tokio::net::TcpStream::from_std(stream) {
                                    Ok(stream) => {
                                        Some(Ok::<_, std::io::Error>(Corked::new(stream)))
                                    }
                                    Err(e) => {
                                        tracing::warn!(
                                            error = %e,
                                            "cannot serve an accepted connection"
                                        );
                                        None
                                    }
                                }
                            });
                        // The graceful shutdown starts when the lane closes, once the
                        // thread has taken every connection queued on it: each of them, even
                        // one accepted at the last instant, is told to go away (an HTTP/2
                        // GOAWAY) rather than closed unanswered. A shutdown signal racing
                        // the lane would drop the connections still queued. The signal itself
                        // only makes the server graceful: it never fires.
                        let serving = router.serve_with_incoming_shutdown(
                            connections,
                            std::future::pending::<()>(),
                        );
                        tokio::select! {
                            result = serving => result.context("the server failed"),
                            _ = forced.wait_for(|f| *f) => Ok(()),
                        }
                    });
                    // Waits for the work this thread's calls run on its blocking pool.
                    drop(runtime);
                    result
                }));
                let result =
                    served.unwrap_or_else(|_| Err(anyhow::anyhow!("an I/O thread panicked")));
                let _ = done.blocking_send(result);
            })
            .context("cannot start an I/O thread")?;
        lanes.push(lane);
    }
    drop(done);

    let mut drain = drain;
    let mut failed = None;
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = incoming.next() => accepted,
            _ = drain.wait_for(|d| *d) => break,
            // A thread ended while serving: it failed.
            ended = finished.recv() => {
                failed = Some(match ended {
                    Some(Err(e)) => e,
                    Some(Ok(())) | None => anyhow::anyhow!("an I/O thread stopped serving"),
                });
                break;
            }
        };
        match accepted {
            Some(Ok(stream)) => {
                // `into_std` deregisters the socket from this runtime's reactor.
                match stream.into_std() {
                    Ok(stream) => {
                        // A closed lane is a thread that ended: the branch above hears why.
                        let _ = lanes[next % lanes.len()].send(stream);
                        next = next.wrapping_add(1);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot hand over an accepted connection"),
                }
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
    // Close the listener and the lanes (every thread then drains what it has) for the grace
    // period, then close what is still open.
    drop(incoming);
    drop(lanes);
    let running = threads - usize::from(failed.is_some());
    let ended = async {
        let mut error = None;
        for _ in 0..running {
            match finished.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    error.get_or_insert(e);
                }
                None => break,
            }
        }
        error
    };
    tokio::pin!(ended);
    let error = match tokio::time::timeout(grace, &mut ended).await {
        Ok(error) => error,
        Err(_) => {
            tracing::warn!("calls still open after the grace period; closing them");
            let _ = force.send(true);
            ended.await
        }
    };
    match failed.or(error) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Accept errors that concern one connection only (it was reset before we took it, say).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | BrokenPipe | Interrupted | WouldBlock | TimedOut
    )
}
