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

/// Bumped whenever the cached dataset's content changes (2: with events; 3: format version 3,
/// one-byte code columns), so stale caches are rebuilt rather than measured.
pub const DATASET_VERSION: u32 = 3;

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

/// The Parquet files of [`portrait_datagen::parquet_files`] in `dir`, each with the shape it is
/// loaded as, in load order: users (wide), tags (long), events.
pub fn parquet_files(dir: &Path) -> [(PathBuf, portrait_engine::import::Shape); 3] {
    use portrait_engine::import::Shape;
    [
        (dir.join("users.parquet"), Shape::Wide),
        (dir.join("tags.parquet"), Shape::Long),
        (dir.join("events.parquet"), Shape::Events),
    ]
}

/// Loads the Parquet files (and their mapping file) that `gen-parquet` wrote into `dir` into
/// `table`, as `portrait load --mapping mapping.toml` does: one import per file, each a version
/// labelled `label`. The result is the table [`portrait_datagen::load::load`] makes of the
/// same generator. `done` is called after each file.
pub fn load_parquet(
    table: &portrait_engine::Table,
    dir: &Path,
    label: &str,
    mut done: impl FnMut(&portrait_engine::import::ImportSummary),
) -> portrait_engine::Result<Vec<portrait_engine::import::ImportSummary>> {
    use portrait_engine::import::{ImportOptions, Mapping, import_files};
    let mapping_path = dir.join(portrait_datagen::mapping::MAPPING_FILE);
    let text = std::fs::read_to_string(&mapping_path).map_err(|e| {
        portrait_engine::Error::InvalidArgument(format!("{}: {e}", mapping_path.display()))
    })?;
    let mapping = Mapping::from_toml(&text)?;
    parquet_files(dir)
        .into_iter()
        .map(|(file, shape)| {
            let mut options = ImportOptions::new(shape);
            options.mapping = mapping.clone();
            let summary = import_files(table, label, &[file], &options)?;
            done(&summary);
            Ok(summary)
        })
        .collect()
}
