//! Times the count of each expression given on the command line on the benchmark dataset
//! (best of 10), for quick measurements while tuning:
//!
//! `PORTRAIT_BENCH_USERS=10000000 cargo run --release -p portrait-benches --example probe -- 'did(purchase, last 7 days) >= 2'`

use portrait_benches::{bench_users, open_dataset};
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let db = open_dataset(bench_users());
    let snap = db.table("users").unwrap().snapshot();
    // Wait for the dictionary to load, so that it does not compete for a core.
    snap.id_of("x").ok();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for text in args {
        let crowd = snap.crowd_text(&text).unwrap();
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..std::env::var("N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10)
        {
            let t = Instant::now();
            n = crowd.count().unwrap();
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("{best:8.2} ms  {n:>9}  {text}");
        if std::env::var_os("PROBE_EXPLAIN").is_some() {
            print!("{}", crowd.explain().unwrap().render());
        }
    }
}
