//! Behaviour analyses on the generated dataset (10 event types × 30 days, about a fifth of the
//! users active on a day): the targets of issue 6.
//!
//! `PORTRAIT_BENCH_USERS=10000000 cargo bench -p portrait-benches --bench behaviour`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use portrait_benches::{bench_users, dataset_dir, open_dataset};
use portrait_datagen::{FIRST_EVENT_DAY, REFERENCE_DAY};
use portrait_engine::Expr;
use portrait_engine::behaviour::funnel::FunnelQuery;
use portrait_engine::behaviour::retention::RetentionQuery;
use portrait_engine::behaviour::{DayRange, Period};
use portrait_engine::expr::Measure;

fn behaviour(c: &mut Criterion) {
    let db = open_dataset(bench_users());
    let snap = db.table("users").unwrap().snapshot();
    let everyone = snap.crowd(&Expr::All).unwrap();
    let mut g = c.benchmark_group("behaviour");

    let retention = RetentionQuery {
        cohort_event: "login".into(),
        return_event: "login".into(),
        cohorts: DayRange::new(FIRST_EVENT_DAY, FIRST_EVENT_DAY),
        period: Period::Day,
        periods: 7,
        split: None,
        reference: None,
    };
    let rows = everyone.retention(&retention).unwrap();
    eprintln!(
        "retention: cohort {} -> {:?}",
        rows[0].size, rows[0].retained
    );
    g.bench_function("retention_7_days_of_a_day_0_cohort", |b| {
        b.iter(|| black_box(everyone.retention(&retention).unwrap()))
    });

    let funnel = FunnelQuery {
        steps: ["view", "add_cart", "purchase", "pay"]
            .map(String::from)
            .to_vec(),
        window: 7,
        starts: DayRange::new(FIRST_EVENT_DAY, REFERENCE_DAY - 7),
        split: None,
    };
    let rows = everyone.funnel(&funnel).unwrap();
    eprintln!("funnel: {:?}", rows[0].reached);
    g.bench_function("funnel_4_steps_7_day_window_23_start_days", |b| {
        b.iter(|| black_box(everyone.funnel(&funnel).unwrap()))
    });

    let young = snap
        .crowd_text("demographic/age BETWEEN 18 AND 30")
        .unwrap();
    let days = DayRange::new(FIRST_EVENT_DAY, REFERENCE_DAY);
    let f = young.frequency("login", days, Measure::Days).unwrap();
    eprintln!(
        "frequency: crowd {}, {:?}",
        f.crowd,
        &f.histogram[..5.min(f.histogram.len())]
    );
    g.bench_function("frequency_30_days_login_over_a_crowd", |b| {
        b.iter(|| black_box(young.frequency("login", days, Measure::Days).unwrap()))
    });
    g.bench_function("frequency_30_days_purchase_times_over_a_crowd", |b| {
        b.iter(|| black_box(young.frequency("purchase", days, Measure::Times).unwrap()))
    });

    let text = "did(purchase, last 7 days) >= 2 AND NOT did(login, last 30 days)";
    let crowd = snap.crowd_text(text).unwrap();
    eprintln!("did count: {}", crowd.count().unwrap());
    g.bench_function("count_did_purchase_2_times_and_not_did_login", |b| {
        b.iter(|| black_box(crowd.count().unwrap()))
    });
    let text = "did(purchase, last 7 days) >= 2 AND NOT did(share, last 30 days)";
    let crowd = snap.crowd_text(text).unwrap();
    eprintln!("did count (share): {}", crowd.count().unwrap());
    g.bench_function("count_did_purchase_2_times_and_not_did_share", |b| {
        b.iter(|| black_box(crowd.count().unwrap()))
    });

    g.bench_function("daily_active_login_30_days", |b| {
        b.iter(|| black_box(everyone.active("login", days, Period::Day).unwrap()))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = behaviour
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: first thing in main, before any bitmap exists.
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let t = Instant::now();
    let _ = dataset_dir(bench_users());
    eprintln!("dataset available after {:.1?}", t.elapsed());
    benches();
    Criterion::default().configure_from_args().final_summary();
}
