//! Real-time write throughput, and portrait latency while a compaction runs, on a copy of the
//! benchmark dataset (the cached dataset itself is never written):
//!
//! `cargo run --release -p portrait-benches --example realtime`
//!
//! Environment: `PORTRAIT_BENCH_USERS` (10,000,000), `WRITERS` (4 threads), `BATCH` (1,000
//! writes, one log sync per group commit), `SECONDS` (10 of sustained writes).
//!
//! 1. **Sustained writes**: `WRITERS` threads send batches of `BATCH` writes for `SECONDS`: a
//!    purchase (decimal total spend), a last-active timestamp, a channel (enum) and a flag set or
//!    cleared, for random existing users plus 1% new users. Reports acknowledged writes/s and
//!    batch latency percentiles.
//! 2. **Compaction under load**: one thread compacts that delta; one keeps writing; one looks up
//!    portraits of random users. Reports the lookup latency percentiles while the compaction ran
//!    and without it, and the compaction's time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portrait_benches::{bench_users, dataset_dir, scattered_keys};
use portrait_engine::{Database, Options, Table, Value, Write};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn batch(rng: &mut Rng, users: u32, size: usize, flag: &str, fresh: &AtomicU64) -> Vec<Write> {
    const CHANNELS: [&str; 4] = ["qr-code", "app-store", "referral", "search"];
    (0..size)
        .map(|i| {
            let r = rng.next();
            let key = if r.is_multiple_of(100) {
                format!("rt{:010}", fresh.fetch_add(1, Ordering::Relaxed))
            } else {
                portrait_datagen::key((r >> 8) as u32 % users)
            };
            match i % 4 {
                0 => Write::set(
                    key,
                    "commerce/total_spend",
                    Value::Decimal {
                        units: (r >> 20) as i64 % 1_000_000,
                        scale: 2,
                    },
                ),
                1 => Write::set(
                    key,
                    "activity/last_active",
                    Value::Timestamp(1_764_000_000_000 + (r >> 24) as i64 % 86_400_000),
                ),
                2 => Write::set(
                    key,
                    "acquisition/channel",
                    Value::Str(CHANNELS[(r >> 12) as usize % 4].to_owned()),
                ),
                _ if r >> 40 & 1 == 0 => Write::set(key, flag, Value::Flag),
                _ => Write::clear(key, flag),
            }
        })
        .collect()
}

fn percentiles(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        v.len(),
        p(0.5),
        p(0.99),
        v[v.len() - 1]
    )
}

fn main() {
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let users = bench_users();
    let writers = env("WRITERS", 4);
    let size = env("BATCH", 1000) as usize;
    let seconds = env("SECONDS", 10);

    // A private copy: hard links of the cached dataset's immutable files.
    let source = dataset_dir(users);
    let work = source.with_file_name(format!("realtime-work-{users}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    {
        let db = Database::open(&source).expect("open the dataset");
        db.backup(work.join("backup")).expect("back the dataset up");
    }
    Database::restore(work.join("backup"), work.join("db")).expect("restore the copy");
    let db = Database::open_with(
        work.join("db"),
        Options {
            compact_after: 0,
            ..Options::default()
        },
    )
    .expect("open the copy");
    let table = db.table("users").expect("table users");
    let snap = table.snapshot();
    snap.id_of("warm-up").expect("dictionary");
    let flag = snap
        .fields()
        .find(|f| f.spec.kind == portrait_engine::FieldKind::Flag)
        .expect("a flag")
        .spec
        .path
        .clone();
    drop(snap);
    let fresh = AtomicU64::new(0);

    println!(
        "sustained writes: {users} users, {writers} writers, batches of {size}, {seconds} s, flag `{flag}`"
    );
    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let started = Instant::now();
    let latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (table, stop, acked, fresh, flag) = (&table, &stop, &acked, &fresh, &flag);
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9 + w);
                    let mut lat = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let b = batch(&mut rng, users, size, flag, fresh);
                        let t = Instant::now();
                        table.write(&b).expect("write");
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                        acked.fetch_add(b.len() as u64, Ordering::Relaxed);
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let n = acked.load(Ordering::Relaxed);
    println!(
        "  {n} writes acknowledged in {elapsed:.1} s: {:.0} writes/s",
        n as f64 / elapsed
    );
    println!("  batch latency: {}", percentiles(latencies));
    println!("  delta: {:?}", table.delta_stats());

    let keys = scattered_keys(users, 200_000, 7);
    let lookups = |table: &Table, stop: &AtomicBool| {
        let mut lat = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let key = keys[i % keys.len()].as_str();
            let t = Instant::now();
            let p = table.snapshot().portrait(key).expect("portrait");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(p);
            i += 1;
        }
        lat
    };
    let quiet = {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let h = s.spawn(|| lookups(&table, &stop));
            std::thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Relaxed);
            h.join().expect("reader")
        })
    };
    println!("portrait lookups, no compaction: {}", percentiles(quiet));

    let stop = AtomicBool::new(false);
    let (compaction, during, written) = std::thread::scope(|s| {
        let reader = s.spawn(|| lookups(&table, &stop));
        let writer = s.spawn(|| {
            let mut rng = Rng(0x5151);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let b = batch(&mut rng, users, size, &flag, &fresh);
                table.write(&b).expect("write during compaction");
                n += b.len() as u64;
            }
            n
        });
        let t = Instant::now();
        let summary = table.compact().expect("compact");
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        (
            (summary, took),
            reader.join().expect("reader"),
            writer.join().expect("writer"),
        )
    });
    println!(
        "compaction: {:?} in {:.2} s, {written} writes acknowledged meanwhile",
        compaction.0,
        compaction.1.as_secs_f64()
    );
    println!(
        "portrait lookups during compaction: {}",
        percentiles(during)
    );
    drop(table);
    drop(db);
    let _ = std::fs::remove_dir_all(&work);
}
