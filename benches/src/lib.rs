//! Shared fixtures of Portrait's benchmarks.
//!
//! Benchmark databases are generated once by [`portrait_datagen`] and cached under
//! `target/portrait-bench/` (keyed by the number of users), so repeated runs measure queries,
//! not loads. Set `PORTRAIT_BENCH_USERS` (default 10,000,000) to change the size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use portrait_datagen::Generator;
use portrait_engine::{Database, KeyKind};

/// The generator seed every benchmark uses.
pub const SEED: u64 = 42;

/// Bumped whenever the cached dataset's content changes (2: with events), so stale caches are
/// rebuilt rather than measured.
pub const DATASET_VERSION: u32 = 2;

/// Users of the benchmark dataset: `PORTRAIT_BENCH_USERS`, 10M by default.
pub fn bench_users() -> u32 {
    std::env::var("PORTRAIT_BENCH_USERS")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(10_000_000)
}

fn cache_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("portrait-bench")
}

/// The directory of a database holding the generated dataset of `users` users in table
/// `users`, building it on first use.
pub fn dataset_dir(users: u32) -> PathBuf {
    let dir = cache_root().join(format!("db-{users}-seed{SEED}-v{DATASET_VERSION}"));
    let done = dir.join("READY");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the benchmark cache directory");
    eprintln!(
        "building the benchmark dataset of {users} users in {} (once)",
        dir.display()
    );
    let t = Instant::now();
    {
        let db = Database::open(&dir).expect("open benchmark database");
        let table = db
            .create_table("users", KeyKind::Str)
            .expect("create table");
        let generator = Generator::new(SEED, users);
        portrait_datagen::load::load(&table, &generator, "2026-11-25", |p| {
            eprintln!("  {p:?} at {:.1?}", t.elapsed())
        })
        .expect("load the dataset");
    }
    std::fs::write(&done, b"").expect("mark the dataset ready");
    eprintln!("dataset ready in {:.1?}", t.elapsed());
    dir
}

/// Opens the cached benchmark database of `users` users, and waits for its key dictionary to
/// load (it loads on a background thread after open, ~1 s at 10M users): a benchmark started
/// at once would share the cores with that load and measure it.
pub fn open_dataset(users: u32) -> Database {
    let db = Database::open(dataset_dir(users)).expect("open the benchmark database");
    let table = db.table("users").expect("the benchmark table");
    table
        .snapshot()
        .id_of(portrait_engine::KeyRef::Str("(warm-up)"))
        .expect("load the key dictionary");
    db
}

/// `n` keys of existing users of the `users`-user dataset, in a scattered (xorshift) order as a
/// service would ask; `seed` (non-zero) picks the sequence.
pub fn scattered_keys(users: u32, n: usize, seed: u64) -> Vec<String> {
    assert!(users > 0, "the dataset has no users");
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            portrait_datagen::key((x % u64::from(users)) as u32)
        })
        .collect()
}
