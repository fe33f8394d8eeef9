//! Generation time of every piece of the data set.
//!
//! `cargo run --release --example gen_stats -- [USERS] [SEED] [--all]`
//! (defaults: 1 000 000 users, seed 42). `--all` prints one line per tag; `--repeat K` times
//! each tag K times and keeps the fastest (for noisy machines).

use std::time::{Duration, Instant};

use portrait_datagen::{
    DEFAULT_USERS, EVENT_DAY_COUNT, Event, Generator, REFERENCE_DAY, TagRule, tags,
};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn main() {
    let mut positional = Vec::new();
    let mut all = false;
    let mut repeat = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--all" {
            all = true;
        } else if arg == "--repeat" {
            repeat = args
                .next()
                .and_then(|k| k.parse().ok())
                .expect("--repeat K");
        } else {
            positional.push(arg.replace('_', ""));
        }
    }
    let users: u32 = positional
        .first()
        .map_or(DEFAULT_USERS, |s| s.parse().expect("USERS"));
    let seed: u64 = positional.get(1).map_or(42, |s| s.parse().expect("SEED"));
    println!("users {users}, seed {seed}");

    let g = Generator::new(seed, users);
    let ((), t) = timed(|| g.warm_up());
    println!("latent cache (warm_up)          {:9.1} ms", ms(t));
    let (attrs, t) = timed(|| g.attributes());
    println!("attributes (all 9 columns)      {:9.1} ms", ms(t));
    drop(attrs);

    // (time, members, path, rule kind, density)
    let mut rows = Vec::new();
    let total = Instant::now();
    for (i, spec) in tags().iter().enumerate() {
        let (members, mut t) = timed(|| g.tag_members(i));
        for _ in 1..repeat {
            t = t.min(timed(|| g.tag_members(i)).1);
        }
        let kind = match (&spec.rule, spec.parent) {
            (TagRule::Demographic(_), _) => "demographic",
            (TagRule::Overlap { .. }, _) => "overlap",
            (TagRule::Bernoulli, Some(_)) => "nested",
            (TagRule::Bernoulli, None) => "independent",
        };
        rows.push((t, members.len(), spec.path.as_str(), kind, spec.density));
    }
    let total = total.elapsed();
    let (members, t) = timed(|| {
        let mut members = 0;
        g.for_each_tag(|_, m| members += m.len());
        members
    });
    println!(
        "for_each_tag (whole catalog, each tag generated once): {:.1} ms, {members} memberships",
        ms(t)
    );
    if all {
        println!(
            "{:>9} {:>10} {:>9}  {:<12} path",
            "ms", "members", "density", "rule"
        );
        for (t, n, path, kind, d) in &rows {
            println!("{:9.3} {n:10} {d:9.5}  {kind:<12} {path}", ms(*t));
        }
    }
    let sum: f64 = rows.iter().map(|r| ms(r.0)).sum();
    println!(
        "tag_members, one call per tag: {} tags, {:.1} ms wall, mean {:.2} ms/tag (best of {repeat})",
        rows.len(),
        ms(total),
        sum / rows.len() as f64
    );
    for (lo, hi) in [
        (0.0, 0.001),
        (0.001, 0.01),
        (0.01, 0.1),
        (0.1, 0.3),
        (0.3, 1.0),
    ] {
        let mut times: Vec<f64> = rows
            .iter()
            .filter(|r| (lo..hi).contains(&r.4))
            .map(|r| ms(r.0))
            .collect();
        if times.is_empty() {
            continue;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "  density [{lo}, {hi}): {:4} tags, median {:7.2} ms, max {:7.2} ms",
            times.len(),
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    for kind in ["independent", "nested", "overlap", "demographic"] {
        let times: Vec<f64> = rows
            .iter()
            .filter(|r| r.3 == kind)
            .map(|r| ms(r.0))
            .collect();
        let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
        let max = times.iter().copied().fold(0.0, f64::max);
        println!(
            "  {kind:<12} {:4} tags, mean {mean:7.2} ms, max {max:7.2} ms",
            times.len()
        );
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    println!("  slowest:");
    for (t, n, path, kind, d) in rows.iter().take(5) {
        println!(
            "    {:7.2} ms  {path} ({kind}, density {d:.3}, {n} members)",
            ms(*t)
        );
    }

    let mut event_total = Duration::ZERO;
    for e in Event::ALL {
        let (members, t) = timed(|| g.event_members(e, REFERENCE_DAY));
        let (_, t_counts) = timed(|| g.event_day(e, REFERENCE_DAY));
        println!(
            "event {:<9} one day: {:7.1} ms members, {:7.1} ms with counts, {:8} users",
            e.name(),
            ms(t),
            ms(t_counts),
            members.len()
        );
        event_total += t;
    }
    let (rows, t) = timed(|| {
        let mut rows = 0;
        g.for_each_event_day(|_, _, data| rows += data.len());
        rows
    });
    println!(
        "for_each_event_day (10 events x {EVENT_DAY_COUNT} days, with counts): {:.1} ms, \
         {rows} user-days ({:.1} ms per event-day)",
        ms(t),
        ms(t) / f64::from(EVENT_DAY_COUNT) / 10.0
    );
}
