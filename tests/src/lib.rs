//! Harness of Portrait's end-to-end tests (the tests themselves live in `tests/e2e/`).
//!
//! - [`binaries`] finds `portraitd` and `portrait` in the target directory the tests were built
//!   into (`target/<profile>/`), building them once per test process when they are missing or
//!   older than their sources. A test in this package cannot use `CARGO_BIN_EXE_*` of other
//!   packages, hence the helper.
//! - [`Server`] runs one real `portraitd` on a free loopback port over a temporary data
//!   directory: it waits for the `portraitd listening on ADDR` line and for `grpc.health.v1` to
//!   answer `SERVING`, can be restarted on the same port and data, and is stopped when dropped.
//!   [`Server::leak`] keeps one alive for the whole test process (shared by read-only tests) and
//!   stops it when the process exits.
//! - [`cli`] runs the `portrait` command line against a server.
//!
//! Waiting is always for a signal (a line on stdout, a process exit, a `SERVING` health answer,
//! polled at a short interval) under a deadline whose expiry fails the test with the server's
//! stderr; never a fixed sleep.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response};

/// The line `portraitd` prints on stdout once it listens, followed by the address.
pub const LISTENING_PREFIX: &str = "portraitd listening on ";

/// How long a server may take from spawn to `SERVING` (a small demo load included).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// Paths of the two binaries under test.
#[derive(Debug)]
pub struct Binaries {
    /// The server, `portraitd`.
    pub portraitd: PathBuf,
    /// The command line, `portrait`.
    pub portrait: PathBuf,
}

/// The binaries next to the running test executable, built first if needed (once per process).
///
/// They are rebuilt with `$CARGO build -p portrait-server -p portrait-client --bins` (cargo's own
/// `CARGO` variable, `cargo` from `PATH` otherwise) into the same target directory and profile
/// as the tests, when either is missing or older than a source file of the crates it is made of.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let profile_dir = profile_dir();
        let exe = |name: &str| profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let binaries = Binaries {
            portraitd: exe("portraitd"),
            portrait: exe("portrait"),
        };
        let sources = newest_source();
        let stale = |path: &Path| modified(path).is_none_or(|built| built < sources);
        if stale(&binaries.portraitd) || stale(&binaries.portrait) {
            build(&profile_dir);
        }
        for path in [&binaries.portraitd, &binaries.portrait] {
            assert!(path.is_file(), "{} was not built", path.display());
        }
        binaries
    })
}

/// `target/<profile>`: the directory of the test executable, or of its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the test executable's directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files the two binaries are built from.
fn newest_source() -> SystemTime {
    fn walk(path: &Path, newest: &mut SystemTime) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(time) = meta.modified() {
            *newest = (*newest).max(time);
        }
    }
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for crate_dir in ["engine", "proto", "server", "client", "benches/datagen"] {
        walk(&root.join(crate_dir).join("src"), &mut newest);
        walk(&root.join(crate_dir).join("Cargo.toml"), &mut newest);
        walk(&root.join(crate_dir).join("build.rs"), &mut newest);
    }
    walk(&root.join("proto/proto"), &mut newest);
    walk(&root.join("Cargo.toml"), &mut newest);
    walk(&root.join("Cargo.lock"), &mut newest);
    newest
}

/// Builds both binaries into `profile_dir` with the profile it belongs to.
fn build(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace_root())
        .args([
            "build",
            "-p",
            "portrait-server",
            "-p",
            "portrait-client",
            "--bins",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    // `cargo test` builds into `debug/` with the `test` profile and `cargo test --release` into
    // `release/` with `bench`'s; building the binaries with the same settings shares the
    // dependencies already compiled for the tests.
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => command.args(["--profile", "test"]),
        Some("release") => command.arg("--release"),
        Some(other) => command.args(["--profile", other]),
        None => &mut command,
    };
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        status.success(),
        "building portraitd and portrait failed: {status}"
    );
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// How to start a [`Server`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Load the demo data set with this many users at the first start (`--demo --demo-users`).
    pub demo_users: Option<u32>,
    /// Contents of a `portraitd.toml` passed with `--config` (e.g. a `[limits]` table).
    pub config: Option<String>,
    /// Further flags.
    pub args: Vec<String>,
}

impl ServerOptions {
    /// A server over the demo data set of `users` users.
    pub fn demo(users: u32) -> Self {
        Self {
            demo_users: Some(users),
            ..Self::default()
        }
    }

    /// Adds the configuration file `toml`.
    pub fn config(mut self, toml: impl Into<String>) -> Self {
        self.config = Some(toml.into());
        self
    }
}

/// How to stop a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, then wait for the graceful shutdown (SIGKILL after [`STOP_TIMEOUT`]).
    Graceful,
    /// SIGKILL: a crash.
    Kill,
}

/// A running `portraitd` over a temporary data directory; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    options: ServerOptions,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts a server on a free loopback port and waits until it is `SERVING`.
    ///
    /// Blocks the calling thread (up to [`START_TIMEOUT`]); from async code call it on the
    /// blocking pool when other tasks must keep running.
    pub fn start(options: ServerOptions) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("portrait-e2e-")
            .tempdir()
            .expect("a temporary directory");
        if let Some(config) = &options.config {
            std::fs::write(dir.path().join("portraitd.toml"), config).expect("write the config");
        }
        let mut server = Server {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            options,
            stderr: Arc::default(),
            stderr_reader: None,
        };
        let demo = server.options.demo_users;
        server.spawn(demo);
        server
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a URL for clients (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The database directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the current (or last) server process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (see [`Stop`]) and returns how it exited; `None` if it was not running.
    pub fn stop(&mut self, how: Stop) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id();
        let (exited_tx, exited) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait().expect("wait for the server process");
            let _ = exited_tx.send(());
            status
        });
        let timeout = match how {
            Stop::Graceful => {
                signal(pid, libc::SIGTERM);
                STOP_TIMEOUT
            }
            Stop::Kill => Duration::ZERO,
        };
        if exited.recv_timeout(timeout).is_err() {
            if how == Stop::Graceful {
                eprintln!("portraitd ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
            }
            // The waiter has not reaped the process yet, so `pid` is still our child.
            signal(pid, libc::SIGKILL);
        }
        let status = waiter.join().expect("the process waiter panicked");
        self.join_stderr();
        Some(status)
    }

    /// Stops the server with `how` and starts it again on the same address and data directory,
    /// without loading the demo data again; returns once the new process is `SERVING`.
    pub fn restart(&mut self, how: Stop) {
        self.stop(how);
        self.spawn(None);
    }

    /// Starts the stopped server again on the same address and data directory.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn(None);
    }

    /// Keeps the server running until the test process exits, then kills it and removes its
    /// directory: for one server shared by many tests (statics are never dropped).
    pub fn leak(self) -> &'static Server {
        let server: &'static Server = Box::leak(Box::new(self));
        if let Some(pid) = server.pid() {
            at_exit(Cleanup::Kill(pid));
        }
        at_exit(Cleanup::RemoveDir(server.dir.path().to_path_buf()));
        server
    }

    /// Spawns the process and waits for its listening line and a `SERVING` health answer.
    fn spawn(&mut self, demo_users: Option<u32>) {
        // Building the binaries (the first time, or after a source changed) is not part of the
        // start-up the deadline measures.
        let portraitd = &binaries().portraitd;
        let started = Instant::now();
        let mut command = Command::new(portraitd);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(["--shutdown-grace-secs", "5"]);
        match demo_users {
            Some(users) => command.args(["--demo", "--demo-users", &users.to_string()]),
            None => command.arg("--demo=false"),
        };
        if self.options.config.is_some() {
            command
                .arg("--config")
                .arg(self.dir.path().join("portraitd.toml"));
        }
        command.args(&self.options.args);
        // The environment must not change what the flags say.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PORTRAIT_") {
                command.env_remove(name);
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binaries().portraitd.display()));

        self.stderr = Arc::default();
        let stderr_sink = self.stderr.clone();
        let mut stderr = child.stderr.take().expect("piped stderr");
        self.stderr_reader = Some(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                stderr_sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        }));

        let (addr_tx, addr_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                    let _ = addr_tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
        });
        self.child = Some(child);

        let line = match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!(
                "portraitd did not print `{LISTENING_PREFIX}ADDR` within {START_TIMEOUT:?}"
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => self.fail(&format!(
                "portraitd closed stdout without printing `{LISTENING_PREFIX}ADDR`"
            )),
        };
        self.addr = match line.parse() {
            Ok(addr) => addr,
            Err(e) => self.fail(&format!("bad listening address {line:?}: {e}")),
        };
        let deadline = started + START_TIMEOUT;
        if let Err(last) = wait_serving(self.addr, deadline) {
            self.fail(&format!(
                "portraitd at {} never answered SERVING: {last}",
                self.addr
            ));
        }
    }

    /// Kills the process and panics with `message` and everything it wrote on stderr.
    fn fail(&mut self, message: &str) -> ! {
        let status = self.stop(Stop::Kill);
        panic!(
            "{message}; exit status {status:?}; stderr:\n{}",
            self.stderr()
        );
    }

    fn join_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Stop::Kill);
    }
}

/// Sends `signal` to process `pid`, a child of ours that was not reaped yet.
fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: `kill` has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

/// Polls `grpc.health.v1.Health/Check` (the whole server: service `""`) until it answers
/// `SERVING` or `deadline` passes; the error describes the last answer.
fn wait_serving(addr: SocketAddr, deadline: Instant) -> Result<(), String> {
    // A private runtime on a private thread, so that this works from sync and async callers.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                runtime.block_on(async {
                    let mut last = String::from("no answer yet");
                    while Instant::now() < deadline {
                        match health(addr, "").await {
                            Ok(ServingStatus::Serving) => return Ok(()),
                            Ok(status) => last = format!("status {status:?}"),
                            Err(e) => last = e,
                        }
                        // Health has no push signal for a server still loading; poll it.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(last)
                })
            })
            .join()
            .expect("the health poller panicked")
    })
}

/// One `grpc.health.v1.Health/Check` of `service` (`""`: the whole server) at `addr`.
pub async fn health(addr: SocketAddr, service: &str) -> Result<ServingStatus, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(Duration::from_secs(5));
    let response = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(
        health_check_response::ServingStatus::try_from(response.into_inner().status)
            .unwrap_or(ServingStatus::Unknown),
    )
}

// ---------------------------------------------------------------------------------------------
// Clean-up at process exit
// ---------------------------------------------------------------------------------------------

/// Something to undo when the test process exits.
#[derive(Debug, Clone)]
pub enum Cleanup {
    /// Kill and reap this child process.
    Kill(u32),
    /// Remove this directory tree.
    RemoveDir(PathBuf),
}

static CLEANUPS: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());

/// Registers `cleanup` to run when the process exits normally (the test harness returns from
/// `main` or calls `std::process::exit`), in reverse order of registration.
pub fn at_exit(cleanup: Cleanup) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: `run_cleanups` is an `extern "C" fn()` that never unwinds.
        let rc = unsafe { libc::atexit(run_cleanups) };
        assert_eq!(rc, 0, "atexit failed");
    });
    CLEANUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(cleanup);
}

extern "C" fn run_cleanups() {
    let _ = std::panic::catch_unwind(|| {
        let cleanups = std::mem::take(&mut *CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()));
        for cleanup in cleanups.into_iter().rev() {
            match cleanup {
                Cleanup::Kill(pid) => {
                    let Ok(pid) = libc::pid_t::try_from(pid) else {
                        continue;
                    };
                    // SAFETY: plain system calls on our own child; a null status pointer is
                    // allowed by `waitpid`.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
                Cleanup::RemoveDir(dir) => {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// Runs `portrait --addr URL ARGS…` to completion. `PORTRAIT_*` variables of the environment are
/// removed so that only the arguments count.
pub fn cli(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(&binaries().portrait);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PORTRAIT_") {
            command.env_remove(name);
        }
    }
    command
        .arg("--addr")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binaries().portrait.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "unknown field `no_such_key`")]
    fn a_server_that_cannot_start_fails_with_its_stderr() {
        Server::start(ServerOptions::default().config("no_such_key = 1\n"));
    }

    #[test]
    fn a_stopped_server_resumes_on_its_address() {
        let mut server = Server::start(ServerOptions::default());
        let addr = server.addr();
        assert_ne!(addr.port(), 0);
        let status = server.stop(Stop::Graceful).expect("it was running");
        assert!(status.success(), "{status:?}\n{}", server.stderr());
        assert_eq!(server.stop(Stop::Kill), None, "already stopped");
        server.resume();
        assert_eq!(server.addr(), addr);
        assert!(
            server.stderr().contains("portraitd listening"),
            "{}",
            server.stderr()
        );
    }
}
