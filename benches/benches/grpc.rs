//! `portraitd` over loopback gRPC, at `PORTRAIT_BENCH_USERS` users (10M by default).
//!
//! `cargo bench -p portrait-benches --bench grpc` — the first run builds the dataset.
//!
//! The server runs in this process, served by [`portrait_server::server::Bound`] exactly as
//! `portraitd` serves it: connections on I/O threads of their own (`portraitd-io-N`, one per
//! core, each a single-threaded runtime; see `portrait_server::io_threads`), the accept loop on a
//! runtime of its own (threads named `portraitd`) driven by a thread as `portraitd`'s `block_on`,
//! and the daemon's default
//! `info` log filter (so each call's `rpc` span is live, as in production). The client is
//! `portrait-client` on a second runtime. **Client and server share the machine's cores**: the
//! numbers are those of a client and a server on one host, and the thread CPU times in the
//! summary say who used what.
//!
//! 1. Portrait lookups of random existing users, closed loop: 64 tasks over 2 shared connections
//!    (one per core: 28.0–30.0k lookups/s against 25.6–28.5k over 4, alternated runs)
//!    for 10 s after a 2 s warm-up: throughput, p50, p99 (latencies sorted, exact).
//! 2. The same lookups open loop at a fixed 10,000/s: latency from each request's scheduled start
//!    (no coordinated omission) and from its actual send.
//! 3. A 3-tag count over gRPC vs in-process (`crowd_text(..).count()`, parse included on both
//!    sides), interleaved, medians; the same for one portrait lookup. These sequential calls go
//!    through a client of their own on a current-thread runtime, as a program that makes one
//!    call at a time would (and as the ClickHouse comparison's `compare` binary does): from a
//!    multi-thread runtime, `block_on` would add two thread hand-overs per call that belong to
//!    the benchmark, not to the server. Then criterion benches of
//!    both for regression tracking.
//!
//! A summary table goes to stdout at the end. Knobs (environment variables):
//! `PORTRAIT_BENCH_USERS`, `PORTRAIT_BENCH_SECS` (measured seconds per load run, 10),
//! `PORTRAIT_BENCH_CONCURRENCY` (64), `PORTRAIT_BENCH_CHANNELS` (2), `PORTRAIT_BENCH_RATE`
//! (10,000), `PORTRAIT_BENCH_SERVER_THREADS` (I/O threads; one per core, as `portraitd`),
//! `PORTRAIT_BENCH_SHARED_RUNTIME` (1: serve on one multi-threaded runtime with that many workers
//! instead, as `portraitd` did before its I/O threads; for comparisons),
//! `PORTRAIT_BENCH_CLIENT_THREADS` (2), `PORTRAIT_BENCH_LOG` (`info`, as `portraitd`),
//! `PORTRAIT_BENCH_IDLE_POLL_US` (0: off, as `portraitd`; see `portrait_server::idle_poll`).
//! Without `--bench` (e.g. `cargo test --benches`) every phase runs briefly, as a smoke test.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::Criterion;
use portrait_benches::{bench_users, dataset_dir, scattered_keys};
use portrait_client::Client;
use portrait_engine::{Database, KeyRef};
use portrait_server::Config;
use portrait_server::server::Bound;
use portrait_server::service::State;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

const TABLE: &str = "users";
const THREE_TAGS: &str = "interest/sports AND device/android AND NOT risk/blacklist";
/// Distinct keys the load runs cycle through.
const KEYS: usize = 1 << 16;

/// Targets of the server issue, for the verdict column.
const TARGET_LOOKUPS_PER_SEC: f64 = 30_000.0;
const TARGET_OPEN_LOOP_P99: Duration = Duration::from_millis(1);
const TARGET_COUNT_OVERHEAD: Duration = Duration::from_micros(150);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// What to run, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    users: u32,
    warm_up: Duration,
    measure: Duration,
    concurrency: usize,
    channels: usize,
    rate: f64,
    server_threads: usize,
    /// Serve on one shared multi-threaded runtime instead of I/O threads.
    shared_runtime: bool,
    client_threads: usize,
    log: String,
    /// The server's idle-poll window (`--idle-poll-us`; zero: off, as `portraitd` by default).
    idle_poll: Duration,
    /// Interleaved samples of each in-process / gRPC pair.
    pairs: usize,
    /// Run as `cargo bench` (otherwise: a brief smoke run).
    full: bool,
}

impl Settings {
    fn from_env() -> Self {
        let full = std::env::args().any(|a| a == "--bench");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            users: bench_users(),
            warm_up: if full {
                Duration::from_secs(2)
            } else {
                Duration::from_millis(100)
            },
            measure: if full {
                Duration::from_secs_f64(env_or("PORTRAIT_BENCH_SECS", 10.0))
            } else {
                Duration::from_millis(200)
            },
            concurrency: env_or("PORTRAIT_BENCH_CONCURRENCY", 64usize).max(1),
            channels: env_or("PORTRAIT_BENCH_CHANNELS", 2usize).max(1),
            rate: env_or("PORTRAIT_BENCH_RATE", 10_000.0f64).max(1.0),
            server_threads: env_or("PORTRAIT_BENCH_SERVER_THREADS", cores).max(1),
            shared_runtime: env_or("PORTRAIT_BENCH_SHARED_RUNTIME", 0u8) == 1,
            client_threads: env_or("PORTRAIT_BENCH_CLIENT_THREADS", 2usize).max(1),
            log: std::env::var("PORTRAIT_BENCH_LOG")
                .unwrap_or_else(|_| portrait_server::config::DEFAULT_LOG.to_owned()),
            idle_poll: Duration::from_micros(env_or("PORTRAIT_BENCH_IDLE_POLL_US", 0u64)),
            pairs: if full { 3_000 } else { 20 },
            full,
        }
    }
}

/// The in-process server: its runtime, its address, and how to stop it.
struct Server {
    runtime: Runtime,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    main: Option<JoinHandle<Result<(), String>>>,
}

impl Server {
    /// Serves `db` on a free loopback port, once its id dictionary is in memory (as `portraitd`
    /// does after `warm_up`, so that lookups run inline).
    fn start(db: Arc<Database>, threads: usize, shared: bool, idle_poll: Duration) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .thread_name("portraitd")
            .build()
            .expect("build the server runtime");
        let config = Config::default();
        let state = {
            let _entered = runtime.enter();
            let state = State::new(db, config.limits.clone(), config.max_message_bytes);
            state.warm_up();
            state
        };
        let t = Instant::now();
        while !state.is_warm(TABLE) {
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "the id dictionary did not load"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let bound = {
            let _entered = runtime.enter();
            Bound::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .expect("bind a loopback port")
                .idle_poll(idle_poll)
                .io_threads(if shared { 0 } else { threads })
        };
        let addr = bound.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = runtime.handle().clone();
        let main = std::thread::Builder::new()
            .name("portraitd-main".into())
            .spawn(move || {
                handle
                    .block_on(bound.serve(
                        state,
                        config.max_message_bytes,
                        Duration::from_secs(1),
                        async {
                            let _ = stopped.await;
                        },
                    ))
                    .map_err(|e| format!("{e:#}"))
            })
            .expect("start the server thread");
        Self {
            runtime,
            addr,
            stop: Some(stop),
            main: Some(main),
        }
    }

    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(main) = self.main.take() {
            match main.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("the server failed: {e}"),
                Err(_) => eprintln!("the server thread panicked"),
            }
        }
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// CPU time (user + system) of this process's live threads, by who they work for.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    /// Threads named `portraitd*`: the server's workers, blocking pool and accept loop.
    server: Duration,
    /// Threads named `bench-client*`: the client runtime, and the open loop's paced client.
    client: Duration,
    /// Everything else (the main thread).
    other: Duration,
    /// The server's idle-poll spinners (`portraitd-idle`), which run only on otherwise idle
    /// cores: not work done for the lookups, so kept out of the per-lookup costs.
    spin: Duration,
}

impl Cpu {
    /// Reads `/proc/self/task/*/stat` (zero on systems without it).
    fn now() -> Self {
        /// Linux reports thread times in USER_HZ, 100 on every mainstream architecture.
        const TICK: Duration = Duration::from_millis(10);
        let mut cpu = Cpu::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = &stat[open + 1..close];
            // After the name: state (field 3) first; utime and stime are fields 14 and 15.
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks: u32 = [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i)?.parse::<u32>().ok())
                .sum();
            let time = TICK * ticks;
            if name.starts_with("portraitd-idle") {
                cpu.spin += time;
            } else if name.starts_with("portraitd") {
                cpu.server += time;
            } else if name.starts_with("bench-client") {
                cpu.client += time;
            } else {
                cpu.other += time;
            }
        }
        cpu
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(earlier.server),
            client: self.client.saturating_sub(earlier.client),
            other: self.other.saturating_sub(earlier.other),
            spin: self.spin.saturating_sub(earlier.spin),
        }
    }
}

/// Latencies in nanoseconds, sorted.
#[derive(Debug, Default)]
struct Latencies(Vec<u64>);

impl Latencies {
    fn new(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        Self(ns)
    }

    /// The `p`th percentile (nearest rank).
    fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        Duration::from_nanos(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    fn median(&self) -> Duration {
        self.pct(50.0)
    }

    fn max(&self) -> Duration {
        Duration::from_nanos(self.0.last().copied().unwrap_or(0))
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Failed calls, counted by message.
#[derive(Debug, Default)]
struct Errors(std::collections::BTreeMap<String, u64>);

impl Errors {
    fn add(&mut self, error: &portrait_client::Error) {
        let mut message = error.to_string();
        message.truncate(160);
        *self.0.entry(message).or_default() += 1;
    }

    fn merge(&mut self, other: Errors) {
        for (message, n) in other.0 {
            *self.0.entry(message).or_default() += n;
        }
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Result of a load run.
#[derive(Debug, Default)]
struct Load {
    /// Successful lookups in the measured window.
    done: u64,
    errors: Errors,
    window: Duration,
    latency: Latencies,
    /// Open loop only: latency from the scheduled start.
    from_schedule: Latencies,
    cpu: Cpu,
}

impl Load {
    fn per_sec(&self) -> f64 {
        self.done as f64 / self.window.as_secs_f64()
    }

    /// CPU per successful lookup.
    fn cpu_per_lookup(&self, time: Duration) -> Duration {
        time / self.done.max(1) as u32
    }
}

/// CPU use of the threads during `[from, until)`, sampled by sleeping on this thread.
fn cpu_during(from: Instant, until: Instant) -> Cpu {
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let before = Cpu::now();
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    Cpu::now().since(before)
}

/// `concurrency` tasks, each looking up one portrait after the other, round-robin over the
/// clients; calls completing within the measured window count.
fn closed_loop(
    rt: &Runtime,
    clients: &[Client],
    keys: &Arc<Vec<String>>,
    concurrency: usize,
    warm_up: Duration,
    measure: Duration,
) -> Load {
    let from = Instant::now() + warm_up;
    let until = from + measure;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let client = clients[t % clients.len()].clone();
            let keys = keys.clone();
            rt.spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 14);
                let mut errors = Errors::default();
                let mut i = t * keys.len() / concurrency;
                loop {
                    let key = keys[i % keys.len()].clone();
                    i += 1;
                    let start = Instant::now();
                    if start >= until {
                        break;
                    }
                    let result = client.portrait(key).await;
                    let end = Instant::now();
                    if end >= from && end < until {
                        match result {
                            Ok(_) => latencies.push(nanos(end - start)),
                            Err(e) => errors.add(&e),
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let cpu = cpu_during(from, until);
    let mut all = Vec::new();
    let mut errors = Errors::default();
    for task in tasks {
        let (latencies, e) = rt.block_on(task).expect("a load task panicked");
        all.extend(latencies);
        errors.merge(e);
    }
    Load {
        done: all.len() as u64,
        errors,
        window: measure,
        latency: Latencies::new(all),
        from_schedule: Latencies::default(),
        cpu,
    }
}

/// Lookups started at a fixed `rate` whatever the answers do; calls scheduled within the
/// measured window count.
///
/// The pacing and the calls share one client thread (`bench-client-paced`, on a current-thread
/// runtime with `channels` connections of its own): it sleeps until the next call is due on a
/// timer of microsecond resolution ([`PaceTimer`]), starts the call as a task, and handles the
/// answers in between. A pacer thread handing each call to the multi-thread client runtime woke
/// two client threads per call instead of one; on the shared cores that cost the server time.
fn open_loop(
    address: &str,
    channels: usize,
    keys: &Arc<Vec<String>>,
    rate: f64,
    warm_up: Duration,
    measure: Duration,
) -> Load {
    let period = Duration::from_secs_f64(1.0 / rate);
    // Time to connect before the first call is due.
    let start = Instant::now() + Duration::from_millis(200);
    let from = start + warm_up;
    let until = from + measure;
    let address = address.to_owned();
    let keys = keys.clone();
    let pacer = std::thread::Builder::new()
        .name("bench-client-paced".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build the paced client's runtime");
            rt.block_on(async move {
                let mut clients = Vec::with_capacity(channels);
                for _ in 0..channels.max(1) {
                    clients.push(
                        Client::connect(address.clone())
                            .await
                            .expect("connect to the server"),
                    );
                }
                let timer = PaceTimer::new().expect("a pacing timer");
                let mut pending =
                    Vec::with_capacity((rate * (until - start).as_secs_f64()) as usize + 1);
                for i in 0u64.. {
                    let due = start + Duration::from_nanos(nanos(period) * i);
                    if due >= until {
                        break;
                    }
                    timer.sleep_until(due).await.expect("the pacing timer");
                    let client = clients[i as usize % clients.len()].clone();
                    let key = keys[i as usize % keys.len()].clone();
                    let sent = Instant::now();
                    let call = tokio::spawn(async move {
                        let result = client.portrait(key).await.map(drop);
                        (sent, Instant::now(), result)
                    });
                    pending.push((due, call));
                }
                let mut done = Vec::with_capacity(pending.len());
                for (due, call) in pending {
                    done.push((due, call.await.expect("a lookup task panicked")));
                }
                done
            })
        })
        .expect("start the paced client");
    let cpu = cpu_during(from, until);
    let calls = pacer.join().expect("the paced client panicked");
    let mut from_send = Vec::with_capacity(calls.len());
    let mut from_schedule = Vec::with_capacity(calls.len());
    let mut errors = Errors::default();
    for (due, (sent, done, result)) in calls {
        if due < from {
            continue;
        }
        match result {
            Ok(()) => {
                from_send.push(nanos(done - sent));
                from_schedule.push(nanos(done - due));
            }
            Err(e) => errors.add(&e),
        }
    }
    Load {
        done: from_send.len() as u64,
        errors,
        window: measure,
        latency: Latencies::new(from_send),
        from_schedule: Latencies::new(from_schedule),
        cpu,
    }
}

/// Sleeps of microsecond resolution on a tokio runtime: a `timerfd` the runtime polls with its
/// sockets (tokio's own timer rounds up to whole milliseconds, which would bunch the calls).
#[cfg(target_os = "linux")]
struct PaceTimer(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

#[cfg(target_os = "linux")]
impl PaceTimer {
    fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which keeps it open (and the same
        // descriptor) until the `AsyncFd` is dropped.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }?;
        Ok(Self(fd))
    }

    /// Returns at `due` (at once when it has passed).
    async fn sleep_until(&self, due: Instant) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(wait) = due
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        else {
            return Ok(());
        };
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let spec = libc::itimerspec {
            it_interval: zero,
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let r =
            unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut ready = self.0.readable().await?;
            let mut expirations = [0u8; 8];
            let read = ready.try_io(|fd| {
                // SAFETY: reads at most 8 bytes into an 8-byte buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(result) => return result,
                // Not expired yet (readiness was stale): wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Elsewhere, tokio's timer (millisecond resolution).
#[cfg(not(target_os = "linux"))]
struct PaceTimer;

#[cfg(not(target_os = "linux"))]
impl PaceTimer {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn sleep_until(&self, due: Instant) -> std::io::Result<()> {
        tokio::time::sleep_until(due.into()).await;
        Ok(())
    }
}

/// `n` interleaved timings of `a` and of `b`.
fn pairs(n: usize, mut a: impl FnMut(usize), mut b: impl FnMut(usize)) -> (Latencies, Latencies) {
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t = Instant::now();
        a(i);
        ta.push(nanos(t.elapsed()));
        let t = Instant::now();
        b(i);
        tb.push(nanos(t.elapsed()));
    }
    (Latencies::new(ta), Latencies::new(tb))
}

fn in_process_count(db: &Database) -> u64 {
    let snap = db.table(TABLE).unwrap().snapshot();
    snap.crowd_text(THREE_TAGS).unwrap().count().unwrap()
}

fn in_process_portrait(db: &Database, key: &str) -> usize {
    let snap = db.table(TABLE).unwrap().snapshot();
    snap.portrait(KeyRef::Str(key)).unwrap().len()
}

fn fmt_d(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

fn fmt_n(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: first thing in main, before any bitmap exists.
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let s = Settings::from_env();
    // The daemon's logging: with its default `info` filter every call opens an `rpc` span.
    let filter =
        tracing_subscriber::EnvFilter::try_new(&s.log).expect("a valid PORTRAIT_BENCH_LOG");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let load_before = load_average();
    let t = Instant::now();
    let dir = dataset_dir(s.users);
    let db = Arc::new(Database::open(&dir).expect("open the benchmark database"));
    let server = Server::start(db.clone(), s.server_threads, s.shared_runtime, s.idle_poll);
    eprintln!(
        "server on {} ({} threads) after {:.1?}",
        server.addr,
        s.server_threads,
        t.elapsed()
    );

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.client_threads)
        .enable_all()
        .thread_name("bench-client")
        .build()
        .expect("build the client runtime");
    let address = format!("http://{}", server.addr);
    let clients: Vec<Client> = (0..s.channels)
        .map(|_| {
            client_rt
                .block_on(Client::connect(address.clone()))
                .expect("connect to the server")
        })
        .collect();
    let client = &clients[0];
    let keys = Arc::new(scattered_keys(s.users, KEYS, 0x9e37_79b9));

    // Both sides must agree before anything is timed.
    let expected = in_process_count(&db);
    let over_grpc = client_rt
        .block_on(client.count(THREE_TAGS).send())
        .expect("count over gRPC");
    assert_eq!(over_grpc, expected, "gRPC and in-process counts differ");
    let portrait = client_rt
        .block_on(client.portrait(keys[0].clone()).send())
        .expect("portrait over gRPC");
    assert_eq!(portrait.values.len(), in_process_portrait(&db, &keys[0]));
    eprintln!(
        "3-tag count: {expected} users; portrait of {}: {} values",
        keys[0],
        portrait.values.len()
    );

    // 3. One call at a time: gRPC vs in-process, interleaved, on a current-thread client.
    let seq_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build the sequential client's runtime");
    let seq_client = seq_rt
        .block_on(Client::connect(address.clone()))
        .expect("connect to the server");
    let (count_local, count_grpc) = pairs(
        s.pairs,
        |_| {
            black_box(in_process_count(&db));
        },
        |_| {
            black_box(
                seq_rt
                    .block_on(seq_client.count(THREE_TAGS).send())
                    .unwrap(),
            );
        },
    );
    let (portrait_local, portrait_grpc) = pairs(
        s.pairs,
        |i| {
            black_box(in_process_portrait(&db, &keys[i % keys.len()]));
        },
        |i| {
            black_box(
                seq_rt
                    .block_on(seq_client.portrait(keys[i % keys.len()].clone()).send())
                    .unwrap(),
            );
        },
    );

    // 1. Closed loop.
    eprintln!(
        "closed loop: {} in flight over {} connections, {:?} + {:?} warm-up",
        s.concurrency, s.channels, s.measure, s.warm_up
    );
    let closed = closed_loop(
        &client_rt,
        &clients,
        &keys,
        s.concurrency,
        s.warm_up,
        s.measure,
    );
    eprintln!("  {} lookups/s", fmt_n(closed.per_sec()));

    // 2. Open loop.
    eprintln!("open loop: {} lookups/s", fmt_n(s.rate));
    let open = open_loop(&address, s.channels, &keys, s.rate, s.warm_up, s.measure);
    eprintln!("  p99 {}", fmt_d(open.from_schedule.pct(99.0)));

    // Criterion, for regression tracking (`target/criterion`).
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("grpc");
        g.bench_function("count_3_tags/in_process", |b| {
            b.iter(|| black_box(in_process_count(&db)))
        });
        g.bench_function("count_3_tags/grpc", |b| {
            b.iter(|| {
                black_box(
                    seq_rt
                        .block_on(seq_client.count(THREE_TAGS).send())
                        .unwrap(),
                )
            })
        });
        let mut i = 0;
        g.bench_function("portrait/in_process", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(in_process_portrait(&db, &keys[i]))
            })
        });
        g.bench_function("portrait/grpc", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(
                    seq_rt
                        .block_on(seq_client.portrait(keys[i].clone()).send())
                        .unwrap(),
                )
            })
        });
        g.finish();
    }
    c.final_summary();

    drop(clients);
    drop(seq_client);
    drop(seq_rt);
    client_rt.shutdown_timeout(Duration::from_secs(1));
    server.stop();
    let load_after = load_average();

    // The summary.
    let count_overhead = count_grpc.median().saturating_sub(count_local.median());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let closed_cpu = closed.cpu.server + closed.cpu.client + closed.cpu.other;
    println!();
    println!(
        "portraitd over loopback gRPC: {} users; client and server in one process, sharing {} cores",
        fmt_n(f64::from(s.users)),
        cores
    );
    println!(
        "server: {} {}, log filter {:?}, idle poll {}; client: portrait-client, {} tokio workers, {} connections (sequential calls: one more, on a current-thread runtime)",
        s.server_threads,
        if s.shared_runtime {
            "workers of one shared tokio runtime"
        } else {
            "I/O threads"
        },
        s.log,
        if s.idle_poll.is_zero() {
            "off".to_owned()
        } else {
            format!(
                "{} µs (spinners used {:.2} cores in the closed loop, {:.2} in the open loop)",
                s.idle_poll.as_micros(),
                closed.cpu.spin.as_secs_f64() / closed.window.as_secs_f64(),
                open.cpu.spin.as_secs_f64() / open.window.as_secs_f64()
            )
        },
        s.client_threads,
        s.channels
    );
    println!("load average (1, 5, 15 min): {load_before} before, {load_after} after");
    println!();
    println!("| measurement | result | target |");
    println!("|---|---|---|");
    println!(
        "| portrait lookups, closed loop, {} in flight, {:.0} s | {} /s; p50 {}, p99 {}, max {}; {} errors | ≥ {} /s: {} |",
        s.concurrency,
        closed.window.as_secs_f64(),
        fmt_n(closed.per_sec()),
        fmt_d(closed.latency.median()),
        fmt_d(closed.latency.pct(99.0)),
        fmt_d(closed.latency.max()),
        closed.errors.total(),
        fmt_n(TARGET_LOOKUPS_PER_SEC),
        verdict(closed.per_sec() >= TARGET_LOOKUPS_PER_SEC),
    );
    println!(
        "| CPU per lookup, closed loop | server {}, client {}, other {} ({:.2} of {} cores busy; \
         at this CPU cost {} cores fully ours would give ≈ {} /s) | |",
        fmt_d(closed.cpu_per_lookup(closed.cpu.server)),
        fmt_d(closed.cpu_per_lookup(closed.cpu.client)),
        fmt_d(closed.cpu_per_lookup(closed.cpu.other)),
        closed_cpu.as_secs_f64() / closed.window.as_secs_f64(),
        cores,
        cores,
        fmt_n(cores as f64 / closed.cpu_per_lookup(closed_cpu).as_secs_f64().max(1e-9)),
    );
    println!(
        "| portrait lookups, open loop at {} /s, {:.0} s | completed {} /s; from schedule p50 {}, p99 {}, p99.9 {}, max {}; from send p50 {}, p99 {}; {} errors | p99 ≤ {}: {} |",
        fmt_n(s.rate),
        open.window.as_secs_f64(),
        fmt_n(open.per_sec()),
        fmt_d(open.from_schedule.median()),
        fmt_d(open.from_schedule.pct(99.0)),
        fmt_d(open.from_schedule.pct(99.9)),
        fmt_d(open.from_schedule.max()),
        fmt_d(open.latency.median()),
        fmt_d(open.latency.pct(99.0)),
        open.errors.total(),
        fmt_d(TARGET_OPEN_LOOP_P99),
        verdict(open.from_schedule.pct(99.0) <= TARGET_OPEN_LOOP_P99),
    );
    println!(
        "| CPU per lookup, open loop | server {}, client {}, other {} ({:.2} of {} cores busy) | |",
        fmt_d(open.cpu_per_lookup(open.cpu.server)),
        fmt_d(open.cpu_per_lookup(open.cpu.client)),
        fmt_d(open.cpu_per_lookup(open.cpu.other)),
        (open.cpu.server + open.cpu.client + open.cpu.other).as_secs_f64()
            / open.window.as_secs_f64(),
        cores,
    );
    println!(
        "| 3-tag count, in-process, {} runs | median {}, p99 {} | |",
        s.pairs,
        fmt_d(count_local.median()),
        fmt_d(count_local.pct(99.0)),
    );
    println!(
        "| 3-tag count, gRPC, {} runs | median {}, p99 {} | |",
        s.pairs,
        fmt_d(count_grpc.median()),
        fmt_d(count_grpc.pct(99.0)),
    );
    println!(
        "| gRPC overhead on the 3-tag count (difference of medians) | {} | ≤ {}: {} |",
        fmt_d(count_overhead),
        fmt_d(TARGET_COUNT_OVERHEAD),
        verdict(count_overhead <= TARGET_COUNT_OVERHEAD),
    );
    println!(
        "| one portrait, in-process vs gRPC, {} runs | median {} vs {} (overhead {}) | |",
        s.pairs,
        fmt_d(portrait_local.median()),
        fmt_d(portrait_grpc.median()),
        fmt_d(
            portrait_grpc
                .median()
                .saturating_sub(portrait_local.median())
        ),
    );
    for (what, load) in [("closed loop", &closed), ("open loop", &open)] {
        for (message, n) in &load.errors.0 {
            println!("{what}: {n} × {message}");
        }
    }
    if !s.full {
        println!("(smoke run without --bench: the numbers above mean nothing)");
    }
}
