//! Server restarts, graceful (SIGTERM) and crashes (SIGKILL), on the same port and data
//! directory: a client with retries answers correctly afterwards, cursors stay valid, the data
//! persisted (the restarts do not load the demo again, and after the last stop the engine opens
//! the same directory and gives the same answers), and a client that keeps calling *while* the
//! server restarts recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use portrait_client::{Client, RetryPolicy};
use portrait_e2e::{Server, ServerOptions, Stop};
use portrait_engine::Database;
use tokio::sync::{mpsc, watch};

use crate::fixture::TABLE;

const USERS: u32 = 5_000;

const EXPRESSIONS: [&str; 3] = [
    "ALL",
    "device/ios",
    "demographic/age >= 30 AND NOT lifecycle/churned",
];

/// Starts a demo server on the blocking pool. Small `Members` batches, so that an export spans
/// many batches.
async fn start() -> Server {
    let options = ServerOptions::demo(USERS).config("[limits]\nmembers_batch_keys = 50\n");
    tokio::task::spawn_blocking(move || Server::start(options))
        .await
        .unwrap()
}

/// Restarts `server` with `how` on the blocking pool (other tasks keep running meanwhile).
async fn restart(mut server: Server, how: Stop) -> Server {
    tokio::task::spawn_blocking(move || {
        server.restart(how);
        server
    })
    .await
    .unwrap()
}

/// A client patient enough to wait through a restart (about ten seconds of retries).
async fn patient_client(server: &Server) -> Client {
    Client::builder(server.url())
        .retry_policy(RetryPolicy {
            max_retries: 60,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(250),
        })
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap()
}

async fn counts(client: &Client) -> Vec<u64> {
    let mut counts = Vec::new();
    for expr in EXPRESSIONS {
        counts.push(client.count(expr).await.unwrap());
    }
    counts
}

/// Stops `server` gracefully, checks it exited with 0, and returns what the engine answers on
/// its directory: the counts of [`EXPRESSIONS`] and every key.
async fn stop_and_read(mut server: Server) -> (Vec<u64>, Vec<String>) {
    let data_dir = server.data_dir();
    let (status, server) =
        tokio::task::spawn_blocking(move || (server.stop(Stop::Graceful), server))
            .await
            .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "a graceful stop exits with 0: {status:?}\n{}",
        server.stderr()
    );
    let db = Database::open(&data_dir).expect("the engine opens the server's directory");
    let snap = db.table(TABLE).unwrap().snapshot();
    let counts = EXPRESSIONS
        .iter()
        .map(|e| snap.crowd_text(e).unwrap().count().unwrap())
        .collect();
    let keys = snap
        .crowd_text("ALL")
        .unwrap()
        .bitmap()
        .unwrap()
        .iter()
        .map(|id| snap.key_of(id).unwrap().unwrap().to_string())
        .collect();
    (counts, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_recovers_after_restarts_and_the_data_persists() {
    let server = start().await;
    let client = patient_client(&server).await;
    let before = counts(&client).await;
    assert_eq!(before[0], u64::from(USERS));

    // The first batch of an export, whose cursor is used after the restarts.
    let mut stream = client.members("ALL").await.unwrap();
    let first = stream.next_batch().await.unwrap().expect("a first batch");
    drop(stream);
    assert_eq!(first.keys.len(), 50);

    let server = restart(server, Stop::Graceful).await;
    assert_eq!(counts(&client).await, before, "after a graceful restart");
    let server = restart(server, Stop::Kill).await;
    assert_eq!(counts(&client).await, before, "after a crash");
    let stderr = server.stderr();
    assert!(
        !stderr.contains("demo: loading"),
        "the demo loaded again:\n{stderr}"
    );

    let mut exported = first.keys;
    exported.extend(
        client
            .members("ALL")
            .cursor(first.next_cursor)
            .await
            .unwrap()
            .collect_keys()
            .await
            .unwrap(),
    );

    let (engine_counts, engine_keys) = stop_and_read(server).await;
    assert_eq!(engine_counts, before);
    assert_eq!(exported.len(), engine_keys.len());
    assert!(
        exported == engine_keys,
        "the export resumed after restarts differs"
    );
}

/// A caller keeps counting while the server restarts twice (gracefully, then by a crash), and an
/// export is open across both. Calls cut by the closing connection fail with
/// `Internal("transport error: connection error: connection reset")` or
/// `Cancelled("operation was canceled: transport error: connection closed")`, which the client
/// does not count as transient, so neither the unary call nor the export is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_calling_during_restarts_recovers() {
    let server = start().await;
    let client = patient_client(&server).await;
    let before = counts(&client).await;

    let mut export = client.members("ALL").await.unwrap();
    let mut exported = export.next_batch().await.unwrap().unwrap().keys;

    // A caller that counts in a loop and reports, for each answer, the restarts done before it
    // asked.
    let restarts = Arc::new(AtomicU32::new(0));
    let (stop_tx, stop) = watch::channel(false);
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let caller = {
        let client = client.clone();
        let restarts = restarts.clone();
        let before = before.clone();
        tokio::spawn(async move {
            while !*stop.borrow() {
                for (expr, want) in EXPRESSIONS.iter().zip(&before) {
                    let restarts_before = restarts.load(Ordering::SeqCst);
                    let got = client.count(*expr).await;
                    assert_eq!(
                        got.as_ref().ok(),
                        Some(want),
                        "count of {expr:?} after {restarts_before} restarts: {got:?}"
                    );
                    let _ = answers_tx.send(restarts_before);
                }
            }
        })
    };

    let server = restart(server, Stop::Graceful).await;
    restarts.store(1, Ordering::SeqCst);
    let server = restart(server, Stop::Kill).await;
    restarts.store(2, Ordering::SeqCst);

    // Answers to calls asked after both restarts.
    let mut after_both = 0;
    while after_both < 5 {
        let restarts_before = tokio::time::timeout(Duration::from_secs(30), answers.recv())
            .await
            .expect("the caller answers again after the restarts");
        match restarts_before {
            Some(2) => after_both += 1,
            Some(_) => {}
            None => {
                let failure = caller.await.expect_err("the caller stopped early");
                std::panic::resume_unwind(failure.into_panic());
            }
        }
    }
    stop_tx.send(true).unwrap();
    caller.await.expect("the caller failed");

    // The export opened before the restarts resumes from its cursor: every key exactly once.
    while let Some(batch) = export.next_batch().await.unwrap() {
        exported.extend(batch.keys);
    }
    let (_, engine_keys) = stop_and_read(server).await;
    assert!(exported == engine_keys, "the resumed export differs");
}
