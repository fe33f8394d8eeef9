//! Times the count of each expression given on the command line on the benchmark dataset
//! (best of 10, `N` to change), for quick measurements while tuning. The arguments `funnel`,
//! `freq:login`, `freq:purchase`, `active:login` and `retention` time those analyses of the behaviour
//! benchmark instead; `lookup:G` (`lookup:random`) the key lookups of 1M users, every G-th in
//! id order (scattered); `portrait` 1,000 portrait lookups; `top:<expression>` the top 20 tags by TGI of that crowd (the
//! engine benchmark's `top_20_of_1000_tags_by_tgi` is `top:interest/sports AND demographic/age < 35`);
//! `suite` (`suite:NAME`) the comparison's group2, topk, distribution, export and frequency
//! queries, median of the runs; and `members:PREFIX` the flags under a prefix and their
//! memberships. `GAP_US` sleeps that many microseconds between runs (as a server's engine
//! threads idle between calls):
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for text in args {
        if text == "funnel" {
            let everyone = snap.crowd(&portrait_engine::Expr::All).unwrap();
            let q = portrait_engine::behaviour::funnel::FunnelQuery {
                steps: ["view", "add_cart", "purchase", "pay"]
                    .map(String::from)
                    .to_vec(),
                window: 7,
                starts: portrait_engine::behaviour::DayRange::new(
                    portrait_datagen::FIRST_EVENT_DAY,
                    portrait_datagen::REFERENCE_DAY - 7,
                ),
                split: None,
            };
            let (best, reached) = best_ms(runs, || everyone.funnel(&q).unwrap()[0].reached.clone());
            println!("{best:8.3} ms  {reached:?}  funnel");
            continue;
        }
        if text == "retention" {
            // The behaviour benchmark's 7-day retention of a day-0 login cohort.
            let everyone = snap.crowd(&portrait_engine::Expr::All).unwrap();
            let q = portrait_engine::behaviour::retention::RetentionQuery {
                cohort_event: "login".into(),
                return_event: "login".into(),
                cohorts: portrait_engine::behaviour::DayRange::new(
                    portrait_datagen::FIRST_EVENT_DAY,
                    portrait_datagen::FIRST_EVENT_DAY,
                ),
                period: portrait_engine::behaviour::Period::Day,
                periods: 7,
                split: None,
                reference: None,
            };
            let (best, retained) =
                best_ms(runs, || everyone.retention(&q).unwrap()[0].retained.clone());
            println!("{best:8.3} ms  {retained:?}  retention");
            continue;
        }
        if let Some(gap) = text.strip_prefix("lookup:") {
            // Key lookups (`ids_of`) of 1M existing keys: `lookup:3` every third user in id
            // order (a sorted file), `lookup:random` scattered.
            let users = snap.users();
            let ids: Vec<u32> = match gap.parse::<u32>() {
                Ok(g) => (0..users)
                    .step_by(g.max(1) as usize)
                    .take(1 << 20)
                    .collect(),
                Err(_) => portrait_benches::scattered_keys(users, 1 << 20, 7)
                    .iter()
                    .map(|k| snap.id_of(k.as_str()).unwrap().unwrap())
                    .collect(),
            };
            let keys: Vec<String> = ids
                .iter()
                .map(|&id| snap.key_of(id).unwrap().unwrap().to_string())
                .collect();
            let mut out = Vec::new();
            let (best, ()) = best_ms(runs, || {
                snap.ids_of(
                    keys.iter().map(|k| portrait_engine::KeyRef::Str(k)),
                    &mut out,
                )
                .unwrap()
            });
            assert!(out.iter().zip(&ids).all(|(o, &id)| *o == Some(id)));
            println!("{best:8.3} ms  {:>9}  {text}", keys.len());
            continue;
        }
        if let Some(event) = text.strip_prefix("active:") {
            // The daily active users of everyone over the benchmark's 30 days, `active:login`.
            let everyone = snap.crowd(&portrait_engine::Expr::All).unwrap();
            let days = portrait_engine::behaviour::DayRange::new(
                portrait_datagen::FIRST_EVENT_DAY,
                portrait_datagen::REFERENCE_DAY,
            );
            let (best, first) = best_ms(runs, || {
                everyone
                    .active(event, days, portrait_engine::behaviour::Period::Day)
                    .unwrap()[0]
                    .users
            });
            println!("{best:8.3} ms  {first:>9}  {text}");
            continue;
        }
        if let Some(event) = text.strip_prefix("freq:") {
            // The frequency histogram of the behaviour benchmark, `freq:login` or
            // `freq:purchase` (times).
            let young = snap
                .crowd_text("demographic/age BETWEEN 18 AND 30")
                .unwrap();
            let days = portrait_engine::behaviour::DayRange::new(
                portrait_datagen::FIRST_EVENT_DAY,
                portrait_datagen::REFERENCE_DAY,
            );
            let measure = if event == "login" {
                portrait_engine::expr::Measure::Days
            } else {
                portrait_engine::expr::Measure::Times
            };
            let (best, users) = best_ms(runs, || {
                young.frequency(event, days, measure).unwrap().crowd
            });
            println!("{best:8.3} ms  {users:>9}  {text}");
            continue;
        }
        if let Some(prefix) = text.strip_prefix("members:") {
            // How many flags lie under a prefix, and their memberships in all.
            let (mut flags, mut members) = (0u64, 0u64);
            for meta in snap.fields() {
                if meta.spec.path.starts_with(prefix) {
                    let f = snap.field(&meta.spec.path).unwrap();
                    if f.kind() == portrait_engine::FieldKind::Flag {
                        flags += 1;
                        members += f.version().users;
                    }
                }
            }
            println!("{flags} flags, {members} memberships under {prefix}");
            continue;
        }
        if let Some(only) = text.strip_prefix("suite") {
            // The comparison's slowest analyses (`benches/src/bin/compare.rs`), median of the
            // runs; `suite:NAME` for one of them.
            let only = only.strip_prefix(':');
            let run = |name: &str| only.is_none_or(|o| o == name);
            let med = |name: &str, f: &mut dyn FnMut() -> usize| {
                if run(name) {
                    let (times, n) = times_ms(runs, f);
                    println!("{:8.3} ms  {n:>9}  {name}", times[times.len() / 2]);
                }
            };
            med("group2", &mut || {
                snap.crowd_text("interest/sports")
                    .unwrap()
                    .group_count(&["demographic/gender", "geo/province"], None, usize::MAX)
                    .unwrap()
                    .len()
            });
            med("topk", &mut || {
                snap.crowd_text("demographic/age < 25 AND device/ios")
                    .unwrap()
                    .top_values("interest", 20, portrait_engine::analysis::TopOrder::Count)
                    .unwrap()
                    .len()
            });
            med("distribution", &mut || {
                snap.crowd_text("interest/sports")
                    .unwrap()
                    .distribution(
                        "demographic/age",
                        &portrait_engine::Buckets::Bounds(vec![18, 25, 35, 45, 60]),
                    )
                    .unwrap()
                    .len()
            });
            med("export", &mut || {
                snap.crowd_text("purchase/home")
                    .unwrap()
                    .members(None, usize::MAX)
                    .unwrap()
                    .keys
                    .len()
            });
            let days = portrait_engine::behaviour::DayRange::new(
                portrait_datagen::FIRST_EVENT_DAY,
                portrait_datagen::REFERENCE_DAY,
            );
            med("frequency", &mut || {
                snap.crowd_text("interest/sports")
                    .unwrap()
                    .frequency("purchase", days, portrait_engine::expr::Measure::Days)
                    .unwrap()
                    .histogram
                    .len()
            });
            continue;
        }
        if text == "portrait" {
            // One portrait lookup by key, cycling through 1,000 users as the engine benchmark does.
            let keys: Vec<String> = (0..1000u32)
                .map(|i| portrait_datagen::key(i * 7919 % snap.users()))
                .collect();
            let (best, values) = best_ms(runs, || {
                keys.iter()
                    .map(|k| {
                        snap.portrait(portrait_engine::KeyRef::Str(k))
                            .unwrap()
                            .len()
                    })
                    .sum::<usize>()
            });
            println!("{best:8.3} ms  {values:>9}  portrait x1000");
            continue;
        }
        if let Some(expr) = text.strip_prefix("top:") {
            let crowd = snap.crowd_text(expr).unwrap();
            let (best, rows) = best_ms(runs, || {
                crowd
                    .top_values("", 20, portrait_engine::analysis::TopOrder::Tgi)
                    .unwrap()
            });
            let first = rows.first().map(|r| (r.path.as_str(), r.count));
            println!("{best:8.3} ms  {first:?}  {text}");
            continue;
        }
        if let Some(expr) = text.strip_prefix("sample:") {
            // 1,000 members of the crowd, seed 7 (the comparison's `sample`).
            let (best, keys) = best_ms(runs, || {
                snap.crowd_text(expr).unwrap().sample(1000, 7).unwrap()
            });
            println!("{best:8.3} ms  {:>9}  {text}", keys.len());
            continue;
        }
        if let Some(expr) = text.strip_prefix("export:") {
            // Every member's key (the comparison's `export`).
            let (best, n) = best_ms(runs, || {
                let page = snap.crowd_text(expr).unwrap();
                page.members(None, usize::MAX).unwrap().keys.len()
            });
            println!("{best:8.3} ms  {n:>9}  {text}");
            continue;
        }
        if let Some(expr) = text.strip_prefix("call:") {
            // A count as the server answers one: a fresh snapshot, parse, plan and count per
            // run; the median as well as the best.
            let table = db.table("users").unwrap();
            let (times, n) = times_ms(runs, || {
                table.snapshot().crowd_text(expr).unwrap().count().unwrap()
            });
            let (best, median) = (times[0], times[times.len() / 2]);
            println!("{best:8.3} ms  {n:>9}  {text} (median {median:.3} ms)");
            continue;
        }
        let crowd = snap.crowd_text(&text).unwrap();
        let (best, n) = best_ms(runs, || crowd.count().unwrap());
        println!("{best:8.3} ms  {n:>9}  {text}");
        if std::env::var_os("PROBE_EXPLAIN").is_some() {
            print!("{}", crowd.explain().unwrap().render());
        }
    }
}

/// `runs` (at least one) timings of `f` in milliseconds, sorted, and its last result.
fn times_ms<T>(runs: usize, mut f: impl FnMut() -> T) -> (Vec<f64>, T) {
    let mut times = Vec::with_capacity(runs.max(1));
    let mut last = None;
    let gap = std::time::Duration::from_micros(
        std::env::var("GAP_US")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    times.sort_by(f64::total_cmp);
    (times, last.expect("at least one run"))
}

/// The best of `runs` timings of `f` in milliseconds, and its last result.
fn best_ms<T>(runs: usize, f: impl FnMut() -> T) -> (f64, T) {
    let (times, last) = times_ms(runs, f);
    (times[0], last)
}
