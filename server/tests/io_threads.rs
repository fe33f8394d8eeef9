//! The thread-per-core serving: connections are spread over the I/O threads, and each thread
//! serves its connections' calls itself.
//!
//! A binary of its own, so that its server's threads (`portraitd-io-N`) are the only ones of
//! their names in the process: the test reads their CPU times from `/proc`.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portrait_engine::Database;
use portrait_proto::v1::{self, admin_service_client::AdminServiceClient};
use portrait_server::Limits;
use portrait_server::server::Bound;
use portrait_server::service::State;
use tonic::transport::Channel;

/// Calls made on each connection.
const CALLS: usize = 3_000;

/// CPU time (user + system, in clock ticks) of each thread of this process named `portraitd-io-*`.
fn io_thread_ticks() -> BTreeMap<String, u64> {
    let mut ticks = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // The thread ended meanwhile.
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if !name.starts_with("portraitd-io-") {
            continue;
        }
        // After the name: state, then fields 4.. of proc(5); utime and stime are 14 and 15.
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let cpu: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        *ticks.entry(name.to_owned()).or_default() += cpu;
    }
    ticks
}

/// Two connections to a server on two I/O threads, each making many small calls: both threads
/// do a fair share of the serving (each well over a quarter of their CPU time), where a server
/// handing every connection to one thread, or serving them all on the accepting one, would
/// leave a thread idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_are_served_by_two_io_threads() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path()).unwrap());
    let bound = Bound::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .io_threads(2);
    let url = format!("http://{}", bound.local_addr());
    let state = State::new(db, Limits::default(), 4 << 20);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(bound.serve(state, 4 << 20, Duration::from_secs(5), async {
        let _ = stopped.await;
    }));
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let channel = Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        connections.spawn(async move {
            let mut admin = AdminServiceClient::new(channel);
            for _ in 0..CALLS {
                let v = admin.version(v1::VersionRequest {}).await.unwrap();
                assert_eq!(v.into_inner().api_version, "v1");
            }
        });
    }
    while let Some(done) = connections.join_next().await {
        done.unwrap();
    }

    // The threads started with the server: what they used is all this test's serving.
    let used = io_thread_ticks();
    assert_eq!(
        used.keys().collect::<Vec<_>>(),
        ["portraitd-io-0", "portraitd-io-1"]
    );
    let total: u64 = used.values().sum();
    assert!(total > 0, "the I/O threads used no CPU time at all");
    for (name, &t) in &used {
        assert!(
            t * 4 > total,
            "{name} used {t} of the I/O threads' {total} ticks: {used:?}"
        );
    }
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
