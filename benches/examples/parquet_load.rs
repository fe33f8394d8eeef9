//! Times [`portrait_benches::load_parquet`]: loads the files `gen-parquet` wrote into `DIR` into
//! a fresh database at `DB` (deleted first), one import per file, and prints each one's time:
//!
//! `cargo run --release -p portrait-benches --example parquet_load -- DIR DB`

use std::path::PathBuf;
use std::time::Instant;

use portrait_engine::{Database, KeyKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // SAFETY: first thing in `main`, before any bitmap exists.
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(data), Some(db_dir)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: parquet_load DIR DB");
    };
    let _ = std::fs::remove_dir_all(&db_dir);
    let t = Instant::now();
    let db = Database::open(&db_dir)?;
    let table = db.create_table("users", KeyKind::Str)?;
    portrait_benches::load_parquet(&table, &data, "2026-11-25", |s| {
        println!(
            "{:>12} rows  {:>4} fields  at {:.2?}",
            s.rows,
            s.fields.len(),
            t.elapsed()
        )
    })?;
    println!("loaded in {:.2?}", t.elapsed());
    Ok(())
}
