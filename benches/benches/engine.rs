//! Engine benchmarks at `PORTRAIT_BENCH_USERS` users (10M by default) × 1,000 tags.
//!
//! `cargo bench -p portrait-benches --bench engine` — the first run builds the dataset.
//! Groups: storage (open), bitmap kernels from the mmap'd store vs owned bitmaps, BSI ranges,
//! the id dictionary, and the crowd query suite of the expressions issue.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use portrait_benches::{bench_users, dataset_dir, open_dataset};
use portrait_engine::{Bitmap, Buckets, Database, KeyRef, Options, TopOrder};

fn storage(c: &mut Criterion) {
    let users = bench_users();
    let dir = dataset_dir(users);
    let mut g = c.benchmark_group("storage");
    g.sample_size(20);
    // Opening reads metadata only; the id dictionary (data) loads on first use, measured below.
    let options = Options {
        warm_dictionary: false,
        ..Options::default()
    };
    g.bench_function(format!("open_{users}_users_1000_tags"), |b| {
        b.iter(|| {
            let db = Database::open_with(&dir, options.clone()).unwrap();
            black_box(db.table("users").unwrap().snapshot().users());
        })
    });
    g.sample_size(10);
    g.bench_function(format!("open_and_load_dictionary_{users}_users"), |b| {
        b.iter(|| {
            let db = Database::open_with(&dir, options.clone()).unwrap();
            let snap = db.table("users").unwrap().snapshot();
            black_box(snap.id_of(KeyRef::Str("u0000000001")).unwrap());
        })
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let db = open_dataset(bench_users());
    let snap = db.table("users").unwrap().snapshot();
    // Two dense tags: the mmap'd views, and owned copies of the same per-shard bitmaps.
    let a = snap.field("interest/sports").unwrap();
    let b = snap
        .field("device/android")
        .or_else(|_| snap.field("lifecycle/active"))
        .unwrap();
    let shards = snap.shards();
    let views: Vec<(&Bitmap, &Bitmap)> = (0..shards)
        .filter_map(|s| Some((a.flag_in(s).ok()??, b.flag_in(s).ok()??)))
        .collect();
    let owned: Vec<(Bitmap, Bitmap)> = views
        .iter()
        .map(|(x, y)| ((*x).clone(), (*y).clone()))
        .collect();
    eprintln!(
        "and_cardinality operands: {} and {} members",
        a.version().users,
        b.version().users
    );
    let mut g = c.benchmark_group("bitmap");
    g.bench_function("and_cardinality_mmap_views", |bench| {
        bench.iter(|| views.iter().map(|(x, y)| x.and_cardinality(y)).sum::<u64>())
    });
    g.bench_function("and_cardinality_owned", |bench| {
        bench.iter(|| owned.iter().map(|(x, y)| x.and_cardinality(y)).sum::<u64>())
    });
    g.bench_function("and_mmap_views", |bench| {
        bench.iter(|| {
            views
                .iter()
                .map(|(x, y)| x.and(y).cardinality())
                .sum::<u64>()
        })
    });
    g.bench_function("and_owned", |bench| {
        bench.iter(|| {
            owned
                .iter()
                .map(|(x, y)| x.and(y).cardinality())
                .sum::<u64>()
        })
    });
    g.finish();

    let age = snap.field("demographic/age").unwrap();
    let mut g = c.benchmark_group("bsi");
    g.bench_function("range_age_between_18_30_one_core", |bench| {
        bench.iter(|| black_box(age.between(18, 30).unwrap().cardinality()))
    });
    let spend = snap.field("commerce/total_spend").unwrap();
    g.bench_function("range_spend_gt_1000_yuan_one_core", |bench| {
        bench.iter(|| {
            black_box(
                spend
                    .compare(portrait_engine::CmpOp::Gt, 100_000)
                    .unwrap()
                    .cardinality(),
            )
        })
    });
    g.finish();
}

fn dictionary(c: &mut Criterion) {
    let users = bench_users();
    let db = open_dataset(users);
    let snap = db.table("users").unwrap().snapshot();
    let bytes = snap.dictionary_bytes().unwrap();
    eprintln!(
        "id dictionary: {users} keys, {bytes} bytes in memory, {:.1} bytes per key",
        bytes as f64 / users as f64
    );
    // Keys in a scattered order, as a service would ask.
    let n = 1_000_000usize.min(users as usize);
    let mut x = 0x9e37_79b9u64;
    let keys: Vec<String> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            portrait_datagen::key((x % users as u64) as u32)
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut g = c.benchmark_group("ids");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("batch_lookup_1m_random_keys", |b| {
        b.iter(|| {
            snap.ids_of(keys.iter().map(|k| KeyRef::Str(k)), &mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    // Keys in id order, as a long file sorted by tag gives them (each tag's members in user
    // order): every `1 / density`-th user on average, the gaps scattered.
    for (name, per_mille) in [
        ("dense_40pct", 400u64),
        ("mid_8pct", 80),
        ("sparse_1pct", 10),
    ] {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let ordered: Vec<String> = (0..users)
            .filter(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 1000 < per_mille
            })
            .take(n)
            .map(portrait_datagen::key)
            .collect();
        g.throughput(Throughput::Elements(ordered.len() as u64));
        g.bench_function(format!("batch_lookup_ordered_keys_{name}"), |b| {
            b.iter(|| {
                snap.ids_of(ordered.iter().map(|k| KeyRef::Str(k)), &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
        // The same through a `KeyFinder`, as an import's workers look keys up (its key
        // numbers built once, before timing).
        let finder = snap.key_finder();
        finder.find([], &mut out).unwrap();
        g.bench_function(format!("finder_ordered_keys_{name}"), |b| {
            b.iter(|| {
                finder
                    .find(ordered.iter().map(|k| KeyRef::Str(k)), &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// The crowd query suite of the expressions issue, in-process.
fn queries(c: &mut Criterion) {
    let users = bench_users();
    let db = open_dataset(users);
    let snap = db.table("users").unwrap().snapshot();
    let three = "interest/sports AND device/android AND NOT risk/blacklist";
    let ten = "demographic/gender = 'female' AND demographic/age BETWEEN 18 AND 30 \
        AND geo/city IN ('city_000', 'city_001', 'city_002', 'city_003', 'city_004') \
        AND (interest/sports OR interest/beauty) AND NOT risk/blacklist AND account/vip_level >= 1 \
        AND acquisition/channel != 'organic' AND commerce/total_spend > 100.00";
    let mut g = c.benchmark_group("query");
    for (name, text) in [("count_3_tags", three), ("count_10_terms_range_in", ten)] {
        let crowd = match snap.crowd_text(text) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        eprintln!("{name}: {} users", crowd.count().unwrap());
        g.bench_function(name, |b| b.iter(|| black_box(crowd.count().unwrap())));
    }
    let crowd = snap
        .crowd_text("interest/sports AND demographic/age < 35")
        .unwrap();
    g.bench_function("group_by_gender_province_tgi", |b| {
        b.iter(|| {
            black_box(
                crowd
                    .group_count(&["demographic/gender", "geo/province"], None, 200)
                    .unwrap(),
            )
        })
    });
    g.bench_function("top_20_of_1000_tags_by_tgi", |b| {
        b.iter(|| black_box(crowd.top_values("", 20, TopOrder::Tgi).unwrap()))
    });
    g.bench_function("distribution_10_buckets", |b| {
        let bounds = Buckets::Bounds(vec![18, 25, 30, 35, 40, 45, 50, 55, 60]);
        b.iter(|| black_box(crowd.distribution("demographic/age", &bounds).unwrap()))
    });
    let keys: Vec<String> = (0..1000u32)
        .map(|i| portrait_datagen::key(i * 7919 % users))
        .collect();
    let mut i = 0;
    g.bench_function("portrait", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(snap.portrait(KeyRef::Str(&keys[i])).unwrap().len())
        })
    });
    let ten_crowd = snap.crowd_text(ten).unwrap();
    g.bench_function("contains_10_leaf_expression", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(ten_crowd.contains(KeyRef::Str(&keys[i])).unwrap())
        })
    });
    let three_crowd = snap.crowd_text(three).unwrap();
    g.bench_function("sample_1000_of_3_tags", |b| {
        b.iter(|| black_box(three_crowd.sample(1000, 7).unwrap()))
    });
    g.bench_function("members_first_page_1000", |b| {
        b.iter_batched(
            || (),
            |_| black_box(crowd.members(None, 1000).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = storage, kernels, dictionary, queries
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
