//! The server's settings, from four sources; the first that sets a value wins:
//!
//! 1. command-line flags (`--listen 0.0.0.0:7070`);
//! 2. environment variables (`PORTRAIT_LISTEN=0.0.0.0:7070`);
//! 3. the TOML file named by `--config FILE` (or `PORTRAIT_CONFIG`);
//! 4. the defaults below.
//!
//! ```toml
//! # portraitd.toml: every key is optional.
//! data_dir = "./portrait-data"       # --data-dir, PORTRAIT_DATA_DIR
//! listen = "127.0.0.1:7070"          # --listen, PORTRAIT_LISTEN
//! demo = false                       # --demo, PORTRAIT_DEMO
//! demo_users = 1000000               # --demo-users, PORTRAIT_DEMO_USERS
//! max_message_bytes = 16777216       # --max-message-bytes, PORTRAIT_MAX_MESSAGE_BYTES
//! log = "info"                       # --log, PORTRAIT_LOG (a tracing filter)
//! shutdown_grace_secs = 10           # --shutdown-grace-secs, PORTRAIT_SHUTDOWN_GRACE_SECS
//! wal_sync = "every-commit"          # --wal-sync, PORTRAIT_WAL_SYNC
//! compact_after = 1000000            # --compact-after, PORTRAIT_COMPACT_AFTER
//! idle_poll_us = 0                   # --idle-poll-us, PORTRAIT_IDLE_POLL_US (0: off)
//! io_threads = 0                     # --io-threads, PORTRAIT_IO_THREADS (0: one per core)
//!
//! [limits]                           # file only; see `limits::Limits`
//! members_batch_keys = 4096
//! max_export_keys = 100000000
//! max_batch_portrait_keys = 10000
//! max_overlap_crowds = 64
//! max_sample = 1000000
//! max_expr_bytes = 65536
//! max_expr_depth = 40
//! max_group_rows = 100000
//! max_top_k = 10000
//! max_buckets = 10000
//! max_write_batch = 100000           # writes of one real-time batch (at most 100000)
//! ```
//!
//! Unknown keys in the file are errors, so a typo does not silently fall back to a default.
//!
//! Real-time writes:
//!
//! - `wal_sync` says when an acknowledged real-time write is on disk. `every-commit` (the
//!   default) syncs the write-ahead log once per group commit before acknowledging: a write
//!   survives a power loss. `os` leaves syncing to the operating system: a write survives a crash
//!   of `portraitd`, not of the machine.
//! - `compact_after` is the number of pending real-time changes of a table that starts a
//!   background compaction (folding them into segments and removing their log files); `0`
//!   compacts only when asked (`IngestService/Compact`, `portrait admin compact`).
//!
//! `idle_poll_us` keeps one idle-priority spinner per core running for that many microseconds
//! after each call, so that the next call does not wait for halted cores to wake up (see
//! [`crate::idle_poll`]); off by default, Linux only.
//!
//! `io_threads` is the number of threads that serve connections, each with a single-threaded
//! runtime of its own (see [`crate::io_threads`]); `0`, the default, starts one per core.
//!
//! Restoring a backup: `--restore DIR` copies (or hard-links) the backup in `DIR`, written by
//! `AdminService/Backup` (`portrait admin backup`), into `--data-dir` before the database opens,
//! then serves it. The data directory must not exist or be empty; otherwise `portraitd` exits
//! with an error and touches nothing. It is a flag only, with no file key or environment
//! variable, because a setting that stays in place would try to restore again at every start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde::Deserialize;

use crate::limits::Limits;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./portrait-data";
/// Default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default size of the demo data set.
pub const DEFAULT_DEMO_USERS: u32 = 1_000_000;
/// Default maximum size of one gRPC message, either way.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Default tracing filter.
pub const DEFAULT_LOG: &str = "info";
/// Default time in-flight calls get to finish after SIGINT/SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Default number of pending real-time changes of a table that starts a background compaction.
pub const DEFAULT_COMPACT_AFTER: u64 = 1_000_000;

/// Most connection-serving threads (`io_threads`).
pub const MAX_IO_THREADS: usize = 1024;

/// Longest idle-poll window: one second.
pub const MAX_IDLE_POLL_US: u64 = 1_000_000;

/// When an acknowledged real-time write reaches the disk (the engine's `WalSync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WalSync {
    /// Sync the write-ahead log once per group commit, before acknowledging (survives power
    /// loss).
    #[default]
    EveryCommit,
    /// Leave syncing to the operating system (survives a crash of the process only).
    Os,
}

impl From<WalSync> for portrait_engine::WalSync {
    fn from(sync: WalSync) -> Self {
        match sync {
            WalSync::EveryCommit => portrait_engine::WalSync::EveryCommit,
            WalSync::Os => portrait_engine::WalSync::Os,
        }
    }
}

/// The settings `portraitd` runs with, every source merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Directory of the database (created if missing).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    pub listen: SocketAddr,
    /// Create and load the demo table `users` if the database has none.
    pub demo: bool,
    /// Users of the demo data set.
    pub demo_users: u32,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// The tracing filter (`info`, `portrait::rpc=debug,info`, ...).
    pub log: String,
    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// When acknowledged real-time writes are synced to disk.
    pub wal_sync: WalSync,
    /// Pending real-time changes of a table that start a background compaction (0: never).
    pub compact_after: u64,
    /// A backup to restore into the (empty) data directory before opening it.
    pub restore: Option<PathBuf>,
    /// Microseconds the cores are kept awake after each call (0: off; see [`crate::idle_poll`]).
    pub idle_poll_us: u64,
    /// Threads serving connections (0: one per core; see [`crate::io_threads`]).
    pub io_threads: usize,
    /// Per-request limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            demo: false,
            demo_users: DEFAULT_DEMO_USERS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            log: DEFAULT_LOG.to_owned(),
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            wal_sync: WalSync::default(),
            compact_after: DEFAULT_COMPACT_AFTER,
            restore: None,
            idle_poll_us: 0,
            io_threads: 0,
            limits: Limits::default(),
        }
    }
}

/// Command-line flags; each also reads its `PORTRAIT_*` environment variable.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "portraitd",
    version,
    about = "The Portrait server: a bitmap-index database for user profiling, over gRPC",
    after_help = "Flags win over PORTRAIT_* environment variables, which win over the config file."
)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "PORTRAIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database directory [default: ./portrait-data].
    #[arg(long, env = "PORTRAIT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "PORTRAIT_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Create the demo table `users` if it does not exist (`--demo=false` turns it off).
    #[arg(
        long,
        env = "PORTRAIT_DEMO",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub demo: Option<bool>,
    /// Users in the demo data set [default: 1000000].
    #[arg(long, env = "PORTRAIT_DEMO_USERS", value_name = "N", value_parser = parse_count::<u32>)]
    pub demo_users: Option<u32>,
    /// Largest gRPC message accepted or sent, in bytes [default: 16777216].
    #[arg(long, env = "PORTRAIT_MAX_MESSAGE_BYTES", value_name = "BYTES", value_parser = parse_count::<usize>)]
    pub max_message_bytes: Option<usize>,
    /// Log filter, e.g. `info` or `portrait::rpc=debug,info` [default: info].
    #[arg(long, env = "PORTRAIT_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM [default: 10].
    #[arg(long, env = "PORTRAIT_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// When acknowledged real-time writes are synced to disk [default: every-commit].
    #[arg(long, env = "PORTRAIT_WAL_SYNC", value_enum, value_name = "WHEN")]
    pub wal_sync: Option<WalSync>,
    /// Pending real-time changes of a table that start a background compaction; 0: only on
    /// request [default: 1000000].
    #[arg(long, env = "PORTRAIT_COMPACT_AFTER", value_name = "N", value_parser = parse_count::<u64>)]
    pub compact_after: Option<u64>,
    /// Restore the backup in DIR into the data directory (which must be empty) before serving.
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,
    /// Keep the cores awake for US microseconds after each call with idle-priority spinners,
    /// trading idle CPU time for latency; 0: off (Linux only) [default: 0].
    #[arg(long, env = "PORTRAIT_IDLE_POLL_US", value_name = "US", value_parser = parse_count::<u64>)]
    pub idle_poll_us: Option<u64>,
    /// Threads serving connections, each with a single-threaded runtime; 0: one per core
    /// [default: 0].
    #[arg(long, env = "PORTRAIT_IO_THREADS", value_name = "N", value_parser = parse_count::<usize>)]
    pub io_threads: Option<usize>,
}

/// Cores this process may run on (1 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A count that may be written with `_` separators (`1_000_000`).
fn parse_count<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}

/// The configuration file; every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    demo: Option<bool>,
    demo_users: Option<u32>,
    max_message_bytes: Option<usize>,
    log: Option<String>,
    shutdown_grace_secs: Option<u64>,
    wal_sync: Option<WalSync>,
    compact_after: Option<u64>,
    idle_poll_us: Option<u64>,
    io_threads: Option<usize>,
    limits: Option<Limits>,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

impl Config {
    /// The configuration of this process: its flags and environment, and the file they name.
    pub fn load() -> anyhow::Result<Self> {
        let args = Args::parse();
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Merges flags (and environment, which clap folds into them) over a file over defaults.
    pub fn merge(args: Args, file: FileConfig) -> anyhow::Result<Self> {
        let d = Config::default();
        let config = Config {
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            demo: args.demo.or(file.demo).unwrap_or(d.demo),
            demo_users: args.demo_users.or(file.demo_users).unwrap_or(d.demo_users),
            max_message_bytes: args
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(d.max_message_bytes),
            log: args.log.or(file.log).unwrap_or(d.log),
            shutdown_grace_secs: args
                .shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .unwrap_or(d.shutdown_grace_secs),
            wal_sync: args.wal_sync.or(file.wal_sync).unwrap_or(d.wal_sync),
            compact_after: args
                .compact_after
                .or(file.compact_after)
                .unwrap_or(d.compact_after),
            restore: args.restore,
            idle_poll_us: args
                .idle_poll_us
                .or(file.idle_poll_us)
                .unwrap_or(d.idle_poll_us),
            io_threads: args.io_threads.or(file.io_threads).unwrap_or(d.io_threads),
            limits: file.limits.unwrap_or(d.limits),
        };
        config.validate()?;
        Ok(config)
    }

    /// Threads that serve connections: `io_threads`, or one per core when it is 0.
    pub fn serving_threads(&self) -> usize {
        match self.io_threads {
            0 => cores(),
            n => n,
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.demo_users == 0 {
            bail!("demo_users must be at least 1");
        }
        if self.max_message_bytes < 1024 {
            bail!(
                "max_message_bytes must be at least 1024, got {}",
                self.max_message_bytes
            );
        }
        if self.idle_poll_us > MAX_IDLE_POLL_US {
            bail!(
                "idle_poll_us must be at most {MAX_IDLE_POLL_US} (one second), got {}",
                self.idle_poll_us
            );
        }
        if self.io_threads > MAX_IO_THREADS {
            bail!(
                "io_threads must be at most {MAX_IO_THREADS}, got {}",
                self.io_threads
            );
        }
        self.limits
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid [limits]: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("portraitd").chain(flags.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::merge(Args::default(), FileConfig::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.data_dir, PathBuf::from("./portrait-data"));
        assert_eq!(c.max_message_bytes, 16 << 20);
        assert!(!c.demo);
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = FileConfig::parse(
            r#"
            data_dir = "/from/file"
            listen = "0.0.0.0:9000"
            demo = true
            demo_users = 5000
            [limits]
            max_sample = 10
            "#,
        )
        .unwrap();
        let c = Config::merge(
            args(&[
                "--listen",
                "127.0.0.1:7171",
                "--demo=false",
                "--demo-users",
                "1_000",
            ]),
            file,
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:7171");
        assert!(!c.demo);
        assert_eq!(c.demo_users, 1_000);
        assert_eq!(c.limits.max_sample, 10);
        assert_eq!(
            c.limits.max_overlap_crowds, 64,
            "unset limits keep defaults"
        );
    }

    #[test]
    fn realtime_settings_come_from_flags_or_the_file() {
        let file = FileConfig::parse("wal_sync = \"os\"\ncompact_after = 500\n").unwrap();
        let c = Config::merge(Args::default(), file.clone()).unwrap();
        assert_eq!((c.wal_sync, c.compact_after), (WalSync::Os, 500));
        assert_eq!(c.restore, None);
        let c = Config::merge(
            args(&[
                "--wal-sync",
                "every-commit",
                "--compact-after",
                "0",
                "--restore",
                "/backups/monday",
            ]),
            file,
        )
        .unwrap();
        assert_eq!((c.wal_sync, c.compact_after), (WalSync::EveryCommit, 0));
        assert_eq!(c.restore, Some(PathBuf::from("/backups/monday")));
        assert_eq!(
            portrait_engine::WalSync::from(WalSync::Os),
            portrait_engine::WalSync::Os
        );
        let d = Config::default();
        assert_eq!(
            (d.wal_sync, d.compact_after),
            (WalSync::EveryCommit, 1_000_000)
        );
        assert!(FileConfig::parse("wal_sync = \"always\"").is_err());
        assert!(FileConfig::parse("restore = \"/backups/monday\"").is_err());
        assert!(Args::try_parse_from(["portraitd", "--wal-sync", "never"]).is_err());
    }

    #[test]
    fn idle_poll_from_file_and_flag_and_bounded() {
        assert_eq!(Config::default().idle_poll_us, 0);
        let file = FileConfig::parse("idle_poll_us = 200").unwrap();
        let c = Config::merge(Args::default(), file.clone()).unwrap();
        assert_eq!(c.idle_poll_us, 200);
        let c = Config::merge(args(&["--idle-poll-us", "1_000"]), file).unwrap();
        assert_eq!(c.idle_poll_us, 1000);
        let long = FileConfig::parse("idle_poll_us = 1000001").unwrap();
        let e = Config::merge(Args::default(), long).unwrap_err();
        assert!(e.to_string().contains("idle_poll_us"), "{e}");
    }

    #[test]
    fn io_threads_from_file_and_flag_and_bounded() {
        assert_eq!(Config::default().io_threads, 0);
        assert_eq!(Config::default().serving_threads(), cores());
        let file = FileConfig::parse("io_threads = 3").unwrap();
        let c = Config::merge(Args::default(), file.clone()).unwrap();
        assert_eq!((c.io_threads, c.serving_threads()), (3, 3));
        let c = Config::merge(args(&["--io-threads", "1"]), file).unwrap();
        assert_eq!(c.serving_threads(), 1);
        let many = FileConfig::parse("io_threads = 1025").unwrap();
        let e = Config::merge(Args::default(), many).unwrap_err();
        assert!(e.to_string().contains("io_threads"), "{e}");
    }

    #[test]
    fn bare_demo_flag_means_true() {
        let c = Config::merge(args(&["--demo"]), FileConfig::default()).unwrap();
        assert!(c.demo);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(FileConfig::parse("dataa_dir = \"x\"").is_err());
        assert!(FileConfig::parse("[limits]\nmax_smaple = 1").is_err());
        assert!(FileConfig::parse("listen = \"not an address\"").is_err());
        let zero = FileConfig::parse("demo_users = 0").unwrap();
        assert!(Config::merge(Args::default(), zero).is_err());
    }
}
