//! Portrait's side of the ClickHouse comparison (`benches/compare.sh` runs it; see
//! `benches/compare/README.md`).
//!
//! `compare --users N [--seed S] --data PARQUET_DIR --db DIR --portraitd PATH --out FILE
//! [--min-runs K]`
//!
//! 1. Loads the Parquet files ClickHouse loads (`gen-parquet`'s, in `PARQUET_DIR`) into a fresh
//!    database at `DIR` with the engine's importer and their mapping file, as
//!    `portrait load --mapping mapping.toml` does ([`portrait_benches::load_parquet`]), timed.
//! 2. Runs the query suite in-process (engine API), each query warmed up once and then repeated
//!    at least `K` (default 5) times, median reported; and the bare croaring kernel on the same
//!    operand bitmaps (owned, precomputed) for the bitmap-bound queries.
//! 3. Starts `portraitd` on a free loopback port against `DIR` and runs the same suite over gRPC
//!    with `portrait-client`.
//! 4. Writes every answer and time as JSON to `FILE`; the Python harness compares the answers with
//!    ClickHouse's. In-process and gRPC answers must agree, or the run fails here.
//!
//! Behaviour queries (retention, funnel, frequency, active users) run in-process and over
//! `BehaviourService`, and their in-process answers must also equal an oracle computed naively
//! from the generator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portrait_client::Client;
use portrait_client::proto as pb;
use portrait_datagen::{
    EVENT_DAY_COUNT, Event, FIRST_EVENT_DAY, Generator, REFERENCE_DAY, tag_index, tags,
};
use portrait_engine::behaviour::funnel::FunnelQuery;
use portrait_engine::behaviour::retention::RetentionQuery;
use portrait_engine::behaviour::{DayRange, Period};
use portrait_engine::expr::Measure;
use portrait_engine::{
    Bitmap, Buckets, Database, FieldRef, KeyKind, TableSnapshot, TopOrder, Value,
};
use serde_json::{Value as Json, json};

const TABLE: &str = "users";
const DAY_MS: i64 = 86_400_000;

/// The suite's crowds and parameters (ClickHouse's SQL for each is in `benches/compare/suite.py`).
const COUNT3: &str = "interest/sports AND device/android AND NOT risk/bot_suspect";
const COUNT10: &str = "demographic/gender = 'female' AND demographic/age BETWEEN 18 AND 35 \
     AND geo/city IN ('city_000', 'city_001', 'city_002', 'city_003') AND device/android \
     AND content/live_stream AND marketing/campaign AND model/cross_sell/low \
     AND marketing/email_opt_in AND NOT lifecycle/uninstalled AND NOT risk/bot_suspect";
const COUNT10_TAGS: [&str; 5] = [
    "device/android",
    "content/live_stream",
    "marketing/campaign",
    "model/cross_sell/low",
    "marketing/email_opt_in",
];
const COUNT10_NOT: [&str; 2] = ["lifecycle/uninstalled", "risk/bot_suspect"];
const COUNT10_CITIES: [&str; 4] = ["city_000", "city_001", "city_002", "city_003"];
const GROUP_CROWD: &str = "interest/sports";
const GROUP_DIMS: [&str; 2] = ["demographic/gender", "geo/province"];
const TOP_CROWD: &str = "demographic/age < 25 AND device/ios";
const TOP_PREFIX: &str = "interest";
const TOP_K: usize = 20;
const DIST_CROWD: &str = "interest/sports";
const DIST_FIELD: &str = "demographic/age";
const DIST_BOUNDS: [i64; 5] = [18, 25, 35, 45, 60];
const SAMPLE_N: usize = 1_000;
const SAMPLE_SEED: u64 = 7;
const LOOP_USERS: usize = 1_000;
/// The export crowd is the flag whose size is nearest this.
const EXPORT_TARGET: u64 = 100_000;

/// Behaviour queries.
const RETENTION_EVENT: Event = Event::Login;
const RETENTION_DAY0: i32 = REFERENCE_DAY - 14;
const RETENTION_DAYS: i32 = 7;
const FUNNEL: [Event; 4] = [Event::View, Event::AddCart, Event::Purchase, Event::Pay];
const FUNNEL_FIRST: (i32, i32) = (FIRST_EVENT_DAY, FIRST_EVENT_DAY + 13);
const FUNNEL_WINDOW: i32 = 7;
const FREQ_EVENT: Event = Event::Purchase;
const FREQ_CROWD: &str = "interest/sports";
const ACTIVE_EVENT: Event = Event::Login;

struct Args {
    users: u32,
    seed: u64,
    data: PathBuf,
    db: PathBuf,
    portraitd: PathBuf,
    out: PathBuf,
    min_runs: usize,
}

fn parse_args() -> Result<Args> {
    let mut users = portrait_datagen::DEFAULT_USERS;
    let mut seed = portrait_benches::SEED;
    let (mut data, mut db, mut portraitd, mut out) = (None, None, None, None);
    let mut min_runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--users" => users = v()?.replace('_', "").parse()?,
            "--seed" => seed = v()?.parse()?,
            "--data" => data = Some(PathBuf::from(v()?)),
            "--db" => db = Some(PathBuf::from(v()?)),
            "--portraitd" => portraitd = Some(PathBuf::from(v()?)),
            "--out" => out = Some(PathBuf::from(v()?)),
            "--min-runs" => min_runs = v()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        users,
        seed,
        data: data.context("--data PARQUET_DIR is required")?,
        db: db.context("--db DIR is required")?,
        portraitd: portraitd.context("--portraitd PATH is required")?,
        out: out.context("--out FILE is required")?,
        min_runs: min_runs.max(5),
    })
}

/// Median time of repeated runs of one query.
#[derive(Debug, Clone, Copy)]
struct Timing {
    median: Duration,
    runs: usize,
}

/// Runs `f` once to warm up, then at least `min_runs` times and until about a second has passed
/// (at most 2,000 runs); returns the last answer and the median.
fn measure<T>(min_runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(T, Timing)> {
    let mut answer = f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_runs
        || (start.elapsed() < Duration::from_secs(1) && times.len() < 2_000)
    {
        let t = Instant::now();
        answer = std::hint::black_box(f()?);
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let timing = Timing {
        median: times[times.len() / 2],
        runs: times.len(),
    };
    Ok((answer, timing))
}

fn timing_json(t: Option<Timing>) -> Json {
    match t {
        Some(t) => json!({"ns": t.median.as_nanos() as u64, "runs": t.runs}),
        None => Json::Null,
    }
}

fn date(ms: i64) -> String {
    civil(ms.div_euclid(DAY_MS) as i32)
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), proleptic Gregorian.
fn civil(days: i32) -> String {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn decimal(units: i64, scale: u8) -> String {
    if scale == 0 {
        return units.to_string();
    }
    let p = 10i64.pow(u32::from(scale));
    let sign = if units < 0 { "-" } else { "" };
    let (i, f) = ((units / p).abs(), (units % p).abs());
    format!("{sign}{i}.{f:0w$}", w = scale as usize)
}

/// A portrait as `{"key", "tags": [sorted paths], "attrs": {path: value}}`.
fn portrait_json(key: &str, values: impl IntoIterator<Item = (String, Json)>) -> Json {
    let mut tags = Vec::new();
    let mut attrs = BTreeMap::new();
    for (path, v) in values {
        if v == Json::Bool(true) {
            tags.push(path);
        } else {
            attrs.insert(path, v);
        }
    }
    tags.sort();
    json!({"key": key, "tags": tags, "attrs": attrs})
}

fn engine_value(v: Value) -> Json {
    match v {
        Value::Flag => Json::Bool(true),
        Value::Str(s) => Json::String(s),
        Value::Strs(s) => json!(s),
        Value::Int(i) => json!(i),
        Value::Decimal { units, scale } => Json::String(decimal(units, scale)),
        Value::Timestamp(ms) => Json::String(date(ms)),
    }
}

fn proto_value(v: Option<pb::Value>) -> Json {
    use pb::value::Kind;
    match v.and_then(|v| v.kind) {
        None => Json::Null,
        Some(Kind::FlagValue(b)) => Json::Bool(b),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::SetValue(s)) => json!(s.values),
        Some(Kind::IntValue(i)) => json!(i),
        Some(Kind::DecimalValue(s)) => Json::String(s),
        Some(Kind::TimestampUnixMs(ms)) => Json::String(date(ms)),
    }
}

/// FNV-1a 64 of `key\n` for every key, in order (the Python side computes the same).
fn fnv(keys: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in keys {
        for &b in k.as_ref().as_bytes().iter().chain(b"\n") {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn export_json(mut keys: Vec<String>) -> Json {
    keys.sort();
    json!({"count": keys.len(), "fnv": fnv(&keys), "first": &keys[..keys.len().min(5)]})
}

/// One query of the suite: what it is, and its answers and times.
struct Row {
    id: &'static str,
    title: &'static str,
    params: Json,
    answer: Json,
    in_process: Option<Timing>,
    grpc_answer: Json,
    grpc: Option<Timing>,
    kernel: Option<Timing>,
    kernel_note: &'static str,
}

impl Row {
    fn new(id: &'static str, title: &'static str, params: Json) -> Self {
        Self {
            id,
            title,
            params,
            answer: Json::Null,
            in_process: None,
            grpc_answer: Json::Null,
            grpc: None,
            kernel: None,
            kernel_note: "",
        }
    }

    fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "title": self.title,
            "params": self.params,
            "answer": self.answer,
            "in_process": timing_json(self.in_process),
            "grpc": timing_json(self.grpc),
            "kernel": timing_json(self.kernel),
            "kernel_note": self.kernel_note,
        })
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            total += if md.is_dir() {
                dir_bytes(&e.path())
            } else {
                md.len()
            };
        }
    }
    total
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    // SAFETY: first thing in `main`, before any bitmap exists.
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let args = parse_args()?;
    let generator = Generator::new(args.seed, args.users);

    if args.db.exists() {
        std::fs::remove_dir_all(&args.db)
            .with_context(|| format!("removing {}", args.db.display()))?;
    }
    let t = Instant::now();
    let mut files = Vec::new();
    {
        let db = Database::open(&args.db)?;
        let table = db.create_table(TABLE, KeyKind::Str)?;
        portrait_benches::load_parquet(&table, &args.data, "2026-11-25", |s| {
            eprintln!(
                "loaded {} rows ({:.1} MiB of Parquet) at {:.1?}",
                s.rows,
                s.bytes as f64 / (1 << 20) as f64,
                t.elapsed()
            );
            files.push(
                json!({"rows": s.rows, "bytes": s.bytes, "seconds": t.elapsed().as_secs_f64()}),
            );
        })?;
    }
    let load = t.elapsed();
    let bytes = dir_bytes(&args.db);
    eprintln!(
        "load: {load:.1?}, {:.1} MiB on disk",
        bytes as f64 / (1 << 20) as f64
    );

    let keys = portrait_benches::scattered_keys(args.users, LOOP_USERS, 7);
    let one_key = portrait_datagen::key((123_457 % u64::from(args.users)) as u32);
    let member_key = portrait_datagen::key((765_433 % u64::from(args.users)) as u32);

    let mut rows = {
        let db = Database::open(&args.db)?;
        let table = db.table(TABLE)?;
        let snap = table.snapshot();
        // Opening a table loads its key dictionary on a thread of its own; a key lookup waits
        // for it, so that nothing is timed while it still takes a core.
        snap.id_of(one_key.as_str())?;
        let export_tag = nearest_flag(&snap, EXPORT_TARGET)?;
        eprintln!("export crowd: {export_tag}");
        let mut rows = in_process(&snap, &args, &keys, &one_key, &member_key, &export_tag)?;
        behaviour(&generator, &snap, args.min_runs, &mut rows)?;
        rows
    };

    let server = Server::start(&args.portraitd, &args.db)?;
    let grpc_result = grpc(
        &server.address,
        &args,
        &keys,
        &one_key,
        &member_key,
        &mut rows,
    );
    drop(server);
    grpc_result?;

    let mut mismatches = Vec::new();
    for r in &rows {
        if r.answer != r.grpc_answer {
            mismatches.push(r.id);
        }
    }
    let out = json!({
        "users": args.users,
        "seed": args.seed,
        "load": {
            "seconds": load.as_secs_f64(),
            "bytes": bytes,
            "files": files,
            "tag_memberships": files[1]["rows"],
            "event_rows": files[2]["rows"],
        },
        "queries": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "grpc_answers": rows.iter().map(|r| (r.id, r.grpc_answer.clone())).collect::<BTreeMap<_, _>>(),
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&out)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if !mismatches.is_empty() {
        bail!(
            "in-process and gRPC answers differ for {mismatches:?} (see {})",
            args.out.display()
        );
    }
    Ok(())
}

/// The flag whose member count is nearest `target` (ties: the first in catalog order).
fn nearest_flag(snap: &TableSnapshot, target: u64) -> Result<String> {
    let mut best: Option<(u64, String)> = None;
    for t in tags() {
        let n = snap.field(&t.path)?.flag_bitmap()?.cardinality();
        let d = n.abs_diff(target);
        if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, t.path.clone()));
        }
    }
    Ok(best.context("no flags")?.1)
}

fn flag(snap: &TableSnapshot, path: &str) -> Result<Bitmap> {
    Ok(snap.field(path)?.flag_bitmap()?)
}

fn in_process(
    snap: &TableSnapshot,
    args: &Args,
    keys: &[String],
    one_key: &str,
    member_key: &str,
    export_tag: &str,
) -> Result<Vec<Row>> {
    let k = args.min_runs;
    let mut rows = Vec::new();

    // Crowd counts.
    for (id, title, expr) in [
        ("count3", "crowd count, 3 terms", COUNT3),
        (
            "count10",
            "crowd count, 10 terms with a range and an IN",
            COUNT10,
        ),
    ] {
        let mut row = Row::new(id, title, json!({"expr": expr}));
        let (n, t) = measure(k, || Ok(snap.crowd_text(expr)?.count()?))?;
        row.answer = json!({"count": n});
        row.in_process = Some(t);
        rows.push(row);
    }
    {
        let (a, b, c) = (
            flag(snap, "interest/sports")?,
            flag(snap, "device/android")?,
            flag(snap, "risk/bot_suspect")?,
        );
        let (n, t) = measure(k, || Ok(a.and(&b).andnot_cardinality(&c)))?;
        check_kernel("count3", n, &rows[0].answer)?;
        rows[0].kernel = Some(t);
        rows[0].kernel_note = "(a AND b) ANDNOT c";

        let mut positive = vec![
            snap.field("demographic/gender")?.value_bitmap("female")?,
            snap.field("demographic/age")?.between(18, 35)?,
        ];
        let city = snap.field("geo/city")?;
        let mut cities = Bitmap::new();
        for c in COUNT10_CITIES {
            cities.or_inplace(&city.value_bitmap(c)?);
        }
        positive.push(cities);
        for p in COUNT10_TAGS {
            positive.push(flag(snap, p)?);
        }
        positive.sort_by_key(Bitmap::cardinality);
        let negative: Vec<Bitmap> = COUNT10_NOT
            .iter()
            .map(|p| flag(snap, p))
            .collect::<Result<_>>()?;
        let (n, t) = measure(k, || {
            let mut acc = positive[0].and(&positive[1]);
            for b in &positive[2..] {
                acc.and_inplace(b);
            }
            acc.andnot_inplace(&negative[0]);
            Ok(acc.andnot_cardinality(&negative[1]))
        })?;
        check_kernel("count10", n, &rows[1].answer)?;
        rows[1].kernel = Some(t);
        rows[1].kernel_note =
            "ANDs then ANDNOTs of 10 operands (age range and city IN precomputed)";
    }

    // Group by 2 dimensions.
    {
        let mut row = Row::new(
            "group2",
            "group by 2 dimensions",
            json!({"expr": GROUP_CROWD, "dims": GROUP_DIMS}),
        );
        let (groups, t) = measure(k, || {
            Ok(snap
                .crowd_text(GROUP_CROWD)?
                .group_count(&GROUP_DIMS, None, usize::MAX)?)
        })?;
        let mut g: Vec<(String, String, u64)> = groups
            .into_iter()
            .map(|r| (r.values[0].clone(), r.values[1].clone(), r.count))
            .collect();
        g.sort();
        row.answer = json!({"rows": g});
        row.in_process = Some(t);
        let crowd = snap.crowd_text(GROUP_CROWD)?.bitmap()?;
        let dim_bitmaps = |path: &str| -> Result<Vec<Bitmap>> {
            let f = snap.field(path)?;
            f.values().iter().map(|v| Ok(f.value_bitmap(v)?)).collect()
        };
        let (genders, provinces) = (dim_bitmaps(GROUP_DIMS[0])?, dim_bitmaps(GROUP_DIMS[1])?);
        let (n, t) = measure(k, || {
            let mut total = 0;
            for g in &genders {
                let cg = crowd.and(g);
                for p in &provinces {
                    total += cg.and_cardinality(p);
                }
            }
            Ok(total)
        })?;
        anyhow::ensure!(n == crowd.cardinality(), "group kernel total {n}");
        row.kernel = Some(t);
        row.kernel_note =
            "crowd AND gender, then and_cardinality with each province (crowd precomputed)";
        rows.push(row);
    }

    // Top-k tags by overlap.
    {
        let mut row = Row::new(
            "topk",
            "top-20 tags by overlap with a crowd",
            json!({"expr": TOP_CROWD, "prefix": TOP_PREFIX, "k": TOP_K}),
        );
        let (top, t) = measure(k, || {
            Ok(snap
                .crowd_text(TOP_CROWD)?
                .top_values(TOP_PREFIX, TOP_K, TopOrder::Count)?)
        })?;
        row.answer = top_json(top.into_iter().map(|r| (r.path, r.count)));
        row.in_process = Some(t);
        let crowd = snap.crowd_text(TOP_CROWD)?.bitmap()?;
        let candidates: Vec<(String, Bitmap)> = tags()
            .iter()
            .filter(|t| t.path.starts_with("interest/"))
            .map(|t| Ok((t.path.clone(), flag(snap, &t.path)?)))
            .collect::<Result<_>>()?;
        let (top, t) = measure(k, || {
            let mut counts: Vec<(u64, &str)> = candidates
                .iter()
                .map(|(p, b)| (crowd.and_cardinality(b), p.as_str()))
                .collect();
            counts.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            counts.truncate(TOP_K);
            Ok(counts)
        })?;
        check_kernel_top(&top, &row.answer)?;
        row.kernel = Some(t);
        row.kernel_note =
            "crowd and_cardinality with each candidate tag, sorted (crowd precomputed)";
        rows.push(row);
    }

    // Single-user portrait, one and a loop.
    {
        let mut row = Row::new("portrait1", "single-user portrait", json!({"key": one_key}));
        let (p, t) = measure(k, || Ok(snap.portrait(one_key)?))?;
        row.answer = portrait_json(one_key, p.into_iter().map(|(p, v)| (p, engine_value(v))));
        row.in_process = Some(t);
        rows.push(row);

        let mut row = Row::new(
            "portrait1000",
            "1,000 single-user portraits, one call each",
            json!({"keys": keys}),
        );
        let (ps, t) = measure(k, || {
            keys.iter()
                .map(|key| Ok(snap.portrait(key.as_str())?))
                .collect::<Result<Vec<_>>>()
        })?;
        row.answer = Json::Array(
            keys.iter()
                .zip(ps)
                .map(|(key, p)| {
                    portrait_json(key, p.into_iter().map(|(p, v)| (p, engine_value(v))))
                })
                .collect(),
        );
        row.in_process = Some(t);
        rows.push(row);
    }

    // Membership test.
    {
        let mut row = Row::new(
            "contains",
            "membership test (3-term crowd)",
            json!({"key": member_key, "expr": COUNT3}),
        );
        let (m, t) = measure(k, || Ok(snap.crowd_text(COUNT3)?.contains(member_key)?))?;
        row.answer = json!({"member": m});
        row.in_process = Some(t);
        let id = snap.id_of(member_key)?.context("member key")?;
        let (a, b, c) = (
            flag(snap, "interest/sports")?,
            flag(snap, "device/android")?,
            flag(snap, "risk/bot_suspect")?,
        );
        let (km, t) = measure(k, || {
            Ok(a.contains(std::hint::black_box(id)) && b.contains(id) && !c.contains(id))
        })?;
        anyhow::ensure!(km == m, "membership kernel disagrees");
        row.kernel = Some(t);
        row.kernel_note = "3 bitmap contains";
        rows.push(row);
    }

    // Numeric distribution.
    {
        let mut row = Row::new(
            "distribution",
            "numeric distribution (age buckets over a crowd)",
            json!({"expr": DIST_CROWD, "field": DIST_FIELD, "bounds": DIST_BOUNDS}),
        );
        let (d, t) = measure(k, || {
            Ok(snap
                .crowd_text(DIST_CROWD)?
                .distribution(DIST_FIELD, &Buckets::Bounds(DIST_BOUNDS.to_vec()))?)
        })?;
        row.answer = json!({"buckets": d.iter().map(|b| json!([b.lower, b.upper, b.count])).collect::<Vec<_>>()});
        row.in_process = Some(t);
        let crowd = snap.crowd_text(DIST_CROWD)?.bitmap()?;
        let f = snap.field(DIST_FIELD)?;
        let mut edges = vec![i64::MIN];
        edges.extend(DIST_BOUNDS);
        edges.push(i64::MAX);
        let buckets: Vec<Bitmap> = edges
            .windows(2)
            .map(|w| Ok(f.between(w[0], w[1].saturating_sub(1))?))
            .collect::<Result<_>>()?;
        let (counts, t) = measure(k, || {
            Ok(buckets
                .iter()
                .map(|b| crowd.and_cardinality(b))
                .collect::<Vec<_>>())
        })?;
        let expected: Vec<u64> = d.iter().map(|b| b.count).collect();
        let nonzero: Vec<u64> = counts.into_iter().filter(|&c| c > 0).collect();
        anyhow::ensure!(nonzero == expected, "distribution kernel disagrees");
        row.kernel = Some(t);
        row.kernel_note = "crowd and_cardinality with each bucket's bitmap (both precomputed)";
        rows.push(row);
    }

    // Export.
    {
        let mut row = Row::new(
            "export",
            "export a ~100k-member crowd (all keys)",
            json!({"expr": export_tag}),
        );
        let (keys, t) = measure(k, || {
            let page = snap.crowd_text(export_tag)?.members(None, usize::MAX)?;
            Ok(page
                .keys
                .into_iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>())
        })?;
        row.answer = export_json(keys);
        row.in_process = Some(t);
        let b = flag(snap, export_tag)?;
        let (ids, t) = measure(k, || Ok(b.to_vec()))?;
        anyhow::ensure!(ids.len() as u64 == b.cardinality());
        row.kernel = Some(t);
        row.kernel_note = "bitmap to id vector (no key lookup)";
        rows.push(row);
    }

    // Sample.
    {
        let mut row = Row::new(
            "sample",
            "sample 1,000 members of a crowd",
            json!({"expr": COUNT3, "n": SAMPLE_N, "seed": SAMPLE_SEED}),
        );
        let (s, t) = measure(k, || {
            Ok(snap.crowd_text(COUNT3)?.sample(SAMPLE_N, SAMPLE_SEED)?)
        })?;
        let mut s: Vec<String> = s.into_iter().map(|k| k.to_string()).collect();
        s.sort();
        row.answer = json!({"keys": s});
        row.in_process = Some(t);
        rows.push(row);
    }
    Ok(rows)
}

fn top_json(rows: impl Iterator<Item = (String, u64)>) -> Json {
    json!({"rows": rows.map(|(p, c)| json!([p, c])).collect::<Vec<_>>()})
}

fn check_kernel(id: &str, n: u64, answer: &Json) -> Result<()> {
    anyhow::ensure!(
        answer["count"] == json!(n),
        "{id}: kernel counts {n}, the engine {}",
        answer["count"]
    );
    Ok(())
}

fn check_kernel_top(top: &[(u64, &str)], answer: &Json) -> Result<()> {
    let counts: Vec<u64> = top.iter().map(|r| r.0).collect();
    let engine: Vec<u64> = answer["rows"]
        .as_array()
        .context("rows")?
        .iter()
        .map(|r| r[1].as_u64().unwrap_or(0))
        .collect();
    anyhow::ensure!(
        counts == engine,
        "top-k kernel {counts:?} vs engine {engine:?}"
    );
    Ok(())
}

/// Behaviour queries, timed in-process; each answer must equal the oracle computed naively from
/// the generator.
fn behaviour(g: &Generator, snap: &TableSnapshot, k: usize, rows: &mut Vec<Row>) -> Result<()> {
    let members = |e: Event, d: i32| -> Vec<u32> { g.event_members(e, d) };

    let mut row = Row::new(
        "retention",
        "7-day retention of a day-0 cohort",
        json!({"event": RETENTION_EVENT.name(), "return_event": RETENTION_EVENT.name(),
               "day0": civil(RETENTION_DAY0), "days": RETENTION_DAYS}),
    );
    let cohort = members(RETENTION_EVENT, RETENTION_DAY0);
    let mut counts = vec![cohort.len() as u64];
    for k in 1..=RETENTION_DAYS {
        let back = members(RETENTION_EVENT, RETENTION_DAY0 + k);
        counts.push(
            cohort
                .iter()
                .filter(|u| back.binary_search(u).is_ok())
                .count() as u64,
        );
    }
    row.answer = json!({"counts": counts});
    let q = RetentionQuery {
        cohort_event: RETENTION_EVENT.name().to_owned(),
        return_event: RETENTION_EVENT.name().to_owned(),
        cohorts: DayRange::new(RETENTION_DAY0, RETENTION_DAY0),
        period: Period::Day,
        periods: RETENTION_DAYS as u32,
        split: None,
        reference: None,
    };
    let (r, t) = measure(k, || Ok(snap.crowd_text("ALL")?.retention(&q)?))?;
    let engine: Vec<u64> = r
        .first()
        .map(|r| {
            std::iter::once(r.size)
                .chain(r.retained[1..].iter().copied())
                .collect()
        })
        .unwrap_or_default();
    oracle_check("retention", &json!({"counts": engine}), &row.answer)?;
    row.in_process = Some(t);
    let event = snap.field(RETENTION_EVENT.name())?;
    let day_bitmap = |event: &FieldRef, d: i32| -> Result<Bitmap> {
        let mut b = Bitmap::new();
        for shard in 0..snap.shards() {
            if let Some(x) = event.event_day_in(shard, d)? {
                b.or_inplace(x);
            }
        }
        Ok(b)
    };
    let cohort = day_bitmap(&event, RETENTION_DAY0)?;
    let back: Vec<Bitmap> = (1..=RETENTION_DAYS)
        .map(|k| day_bitmap(&event, RETENTION_DAY0 + k))
        .collect::<Result<_>>()?;
    let (kc, t) = measure(k, || {
        let mut c = vec![cohort.cardinality()];
        c.extend(back.iter().map(|b| cohort.and_cardinality(b)));
        Ok(c)
    })?;
    anyhow::ensure!(kc == engine, "retention kernel {kc:?} vs engine {engine:?}");
    row.kernel = Some(t);
    row.kernel_note = "cohort day bitmap and_cardinality with each return day's bitmap";
    rows.push(row);

    let mut row = Row::new(
        "funnel",
        "4-step funnel, 7-day window",
        json!({"steps": FUNNEL.map(Event::name), "first_from": civil(FUNNEL_FIRST.0),
               "first_to": civil(FUNNEL_FIRST.1), "window_days": FUNNEL_WINDOW}),
    );
    row.answer = json!({"reached": funnel_oracle(g)});
    let q = FunnelQuery {
        steps: FUNNEL.iter().map(|e| e.name().to_owned()).collect(),
        window: FUNNEL_WINDOW as u32,
        starts: DayRange::new(FUNNEL_FIRST.0, FUNNEL_FIRST.1),
        split: None,
    };
    let (f, t) = measure(k, || Ok(snap.crowd_text("ALL")?.funnel(&q)?))?;
    let engine = f.first().map(|r| r.reached.clone()).unwrap_or_default();
    oracle_check("funnel", &json!({"reached": engine}), &row.answer)?;
    row.in_process = Some(t);
    rows.push(row);

    let mut row = Row::new(
        "frequency",
        "30-day frequency histogram of an event over a crowd",
        json!({"event": FREQ_EVENT.name(), "expr": FREQ_CROWD,
               "from": civil(FIRST_EVENT_DAY), "to": civil(REFERENCE_DAY)}),
    );
    let crowd = g.tag_members(tag_index(FREQ_CROWD).expect("frequency crowd is a tag"));
    let mut days = vec![0u32; g.users() as usize];
    for d in FIRST_EVENT_DAY..=REFERENCE_DAY {
        for u in members(FREQ_EVENT, d) {
            days[u as usize] += 1;
        }
    }
    let mut hist = vec![0u64; EVENT_DAY_COUNT as usize + 1];
    for &u in &crowd {
        hist[days[u as usize] as usize] += 1;
    }
    row.answer = json!({"histogram": hist});
    let (f, t) = measure(k, || {
        Ok(snap.crowd_text(FREQ_CROWD)?.frequency(
            FREQ_EVENT.name(),
            DayRange::new(FIRST_EVENT_DAY, REFERENCE_DAY),
            Measure::Days,
        )?)
    })?;
    let mut engine = vec![0u64; EVENT_DAY_COUNT as usize + 1];
    engine[0] = f.inactive();
    for (n, users) in f.histogram {
        *engine
            .get_mut(n as usize)
            .context("frequency beyond the window")? = users;
    }
    oracle_check("frequency", &json!({"histogram": engine}), &row.answer)?;
    row.in_process = Some(t);
    rows.push(row);

    let mut row = Row::new(
        "active",
        "daily active users over 30 days",
        json!({"event": ACTIVE_EVENT.name(), "from": civil(FIRST_EVENT_DAY),
               "to": civil(REFERENCE_DAY)}),
    );
    let dau: Vec<u64> = (FIRST_EVENT_DAY..=REFERENCE_DAY)
        .map(|d| members(ACTIVE_EVENT, d).len() as u64)
        .collect();
    row.answer = json!({"users": dau});
    let (a, t) = measure(k, || {
        Ok(snap.crowd_text("ALL")?.active(
            ACTIVE_EVENT.name(),
            DayRange::new(FIRST_EVENT_DAY, REFERENCE_DAY),
            Period::Day,
        )?)
    })?;
    let engine: Vec<u64> = a.iter().map(|r| r.users).collect();
    oracle_check("active", &json!({"users": engine}), &row.answer)?;
    row.in_process = Some(t);
    let event = snap.field(ACTIVE_EVENT.name())?;
    let days: Vec<Bitmap> = (FIRST_EVENT_DAY..=REFERENCE_DAY)
        .map(|d| day_bitmap(&event, d))
        .collect::<Result<_>>()?;
    let (kc, t) = measure(k, || {
        Ok(days.iter().map(Bitmap::cardinality).collect::<Vec<_>>())
    })?;
    anyhow::ensure!(kc == engine, "active kernel {kc:?} vs engine {engine:?}");
    row.kernel = Some(t);
    row.kernel_note = "cardinality of each day's bitmap (shards merged before timing)";
    rows.push(row);
    Ok(())
}

fn oracle_check(id: &str, engine: &Json, oracle: &Json) -> Result<()> {
    anyhow::ensure!(
        engine == oracle,
        "{id}: the engine answers {engine}, the generator's oracle {oracle}"
    );
    Ok(())
}

/// Users reaching each step of the funnel, by ClickHouse's `windowFunnel(window)` (default mode)
/// on day timestamps: per user, events sorted by (day, step); a first step restarts the chain's
/// start; step i > 0 extends a chain that reached step i - 1 if its day is at most the chain's
/// start + window; the answer is the deepest step ever reached.
fn funnel_oracle(g: &Generator) -> Vec<u64> {
    let last = FUNNEL_FIRST.1 + FUNNEL_WINDOW;
    let mut per_user: BTreeMap<u32, Vec<(i32, usize)>> = BTreeMap::new();
    for d in FUNNEL_FIRST.0..=last.min(REFERENCE_DAY) {
        for (step, e) in FUNNEL.iter().enumerate() {
            if step == 0 && d > FUNNEL_FIRST.1 {
                continue;
            }
            for u in g.event_members(*e, d) {
                per_user.entry(u).or_default().push((d, step));
            }
        }
    }
    let mut reached = vec![0u64; FUNNEL.len()];
    for (_, mut events) in per_user {
        events.sort_unstable();
        let mut start: Vec<Option<i32>> = vec![None; FUNNEL.len()];
        let mut level = 0;
        for (day, step) in events {
            if step == 0 {
                start[0] = Some(day);
            } else if let Some(s) = start[step - 1]
                && day <= s + FUNNEL_WINDOW
            {
                start[step] = Some(s);
            }
            if start[step].is_some() {
                level = level.max(step + 1);
            }
            if level == FUNNEL.len() {
                break;
            }
        }
        for r in reached.iter_mut().take(level) {
            *r += 1;
        }
    }
    reached
}

/// `portraitd` serving the database on a free loopback port; killed on drop.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(bin: &Path, db: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(db)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--demo=false")
            .arg("--log")
            .arg("warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn grpc(
    address: &str,
    args: &Args,
    keys: &[String],
    one_key: &str,
    member_key: &str,
    rows: &mut [Row],
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = Client::builder(address)
                .max_message_size(1 << 30)
                .no_timeout()
                .connect()
                .await;
            match attempt {
                Ok(c) if c.count("ALL").await.is_ok() => return Ok(c),
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(_) => bail!("portraitd at {address} does not answer"),
                Err(e) => bail!("cannot connect to portraitd at {address}: {e}"),
            }
        }
    })?;
    // The server loads the table's key dictionary on a thread of its own after it starts
    // (counts answer meanwhile); a portrait waits for it, so that no call is timed while that
    // load still takes a core. Without this, the first queries timed (count10) shared the two
    // cores with it in some runs and took twice their time.
    rt.block_on(client.portrait(one_key).send())?;
    let k = args.min_runs;
    let c = &client;
    for row in rows.iter_mut() {
        let (answer, t) = match row.id {
            "count3" | "count10" => {
                let expr = row.params["expr"].as_str().context("expr")?.to_owned();
                let (n, t) = measure(k, || Ok(rt.block_on(c.count(expr.as_str()).send())?))?;
                (json!({"count": n}), t)
            }
            "group2" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(c.group(GROUP_CROWD, GROUP_DIMS).send())?)
                })?;
                let mut g: Vec<(String, String, u64)> = resp
                    .rows
                    .into_iter()
                    .map(|r| {
                        let mut v = r.values.into_iter().map(|v| match proto_value(Some(v)) {
                            Json::String(s) => s,
                            other => other.to_string(),
                        });
                        (
                            v.next().unwrap_or_default(),
                            v.next().unwrap_or_default(),
                            r.count,
                        )
                    })
                    .collect();
                g.sort();
                (json!({"rows": g}), t)
            }
            "topk" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(
                        c.top(TOP_CROWD, TOP_PREFIX)
                            .k(TOP_K as u32)
                            .order(pb::TopOrder::Count)
                            .send(),
                    )?)
                })?;
                (
                    top_json(resp.rows.into_iter().map(|r| (r.path, r.count))),
                    t,
                )
            }
            "portrait1" => {
                let (p, t) = measure(k, || Ok(rt.block_on(c.portrait(one_key).send())?))?;
                (proto_portrait(one_key, p), t)
            }
            "portrait1000" => {
                let (ps, t) = measure(k, || {
                    rt.block_on(async {
                        let mut out = Vec::with_capacity(keys.len());
                        for key in keys {
                            out.push(c.portrait(key.as_str()).send().await?);
                        }
                        Ok::<_, portrait_client::Error>(out)
                    })
                    .map_err(Into::into)
                })?;
                let answer = keys
                    .iter()
                    .zip(ps)
                    .map(|(key, p)| proto_portrait(key, p))
                    .collect();
                (Json::Array(answer), t)
            }
            "contains" => {
                let (m, t) = measure(
                    k,
                    || Ok(rt.block_on(c.contains(member_key, COUNT3).send())?),
                )?;
                (json!({"member": m}), t)
            }
            "distribution" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(
                        c.distribution(DIST_CROWD, DIST_FIELD)
                            .bounds(DIST_BOUNDS)
                            .send(),
                    )?)
                })?;
                let buckets: Vec<Json> = resp
                    .buckets
                    .into_iter()
                    .map(|b| json!([proto_value(b.lower), proto_value(b.upper), b.count]))
                    .collect();
                (json!({"buckets": buckets}), t)
            }
            "export" => {
                let expr = row.params["expr"].as_str().context("expr")?.to_owned();
                let (keys, t) = measure(k, || {
                    Ok(rt.block_on(async {
                        c.members(expr.as_str())
                            .limit(u64::from(args.users))
                            .send()
                            .await?
                            .collect_keys()
                            .await
                    })?)
                })?;
                (export_json(keys), t)
            }
            "sample" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(c.sample(COUNT3, SAMPLE_N as u32).seed(SAMPLE_SEED).send())?)
                })?;
                let mut s = resp.keys;
                s.sort();
                (json!({"keys": s}), t)
            }
            "retention" => {
                let (resp, t) = measure(k, || {
                    let day0 = civil(RETENTION_DAY0);
                    Ok(rt.block_on(
                        c.retention(RETENTION_EVENT.name(), RETENTION_EVENT.name(), &day0, &day0)
                            .periods(RETENTION_DAYS as u32)
                            .send(),
                    )?)
                })?;
                let counts: Vec<u64> = resp
                    .rows
                    .first()
                    .map(|r| {
                        std::iter::once(r.size)
                            .chain(r.retained.iter().skip(1).copied())
                            .collect()
                    })
                    .unwrap_or_default();
                (json!({"counts": counts}), t)
            }
            "funnel" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(
                        c.funnel(
                            FUNNEL.map(Event::name),
                            civil(FUNNEL_FIRST.0),
                            civil(FUNNEL_FIRST.1),
                        )
                        .window_days(FUNNEL_WINDOW as u32)
                        .send(),
                    )?)
                })?;
                let reached: Vec<u64> = resp
                    .groups
                    .first()
                    .map(|g| g.steps.iter().map(|s| s.users).collect())
                    .unwrap_or_default();
                (json!({"reached": reached}), t)
            }
            "frequency" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(
                        c.frequency(
                            FREQ_EVENT.name(),
                            civil(FIRST_EVENT_DAY),
                            civil(REFERENCE_DAY),
                        )
                        .crowd(FREQ_CROWD)
                        .send(),
                    )?)
                })?;
                let mut hist = vec![0u64; EVENT_DAY_COUNT as usize + 1];
                hist[0] = resp.inactive;
                for b in resp.histogram {
                    *hist
                        .get_mut(b.n as usize)
                        .context("frequency beyond the window")? = b.users;
                }
                (json!({"histogram": hist}), t)
            }
            "active" => {
                let (resp, t) = measure(k, || {
                    Ok(rt.block_on(
                        c.active(
                            ACTIVE_EVENT.name(),
                            civil(FIRST_EVENT_DAY),
                            civil(REFERENCE_DAY),
                        )
                        .send(),
                    )?)
                })?;
                let users: Vec<u64> = resp.periods.iter().map(|p| p.users).collect();
                (json!({"users": users}), t)
            }
            other => bail!("no gRPC form for query {other}"),
        };
        row.grpc_answer = answer;
        row.grpc = Some(t);
        eprintln!(
            "{:<14} in-process {:>12.1?}  gRPC {:>12.1?}",
            row.id,
            row.in_process.map_or(Duration::ZERO, |t| t.median),
            t.median
        );
    }
    Ok(())
}

fn proto_portrait(key: &str, p: pb::Portrait) -> Json {
    portrait_json(
        key,
        p.values.into_iter().map(|v| (v.path, proto_value(v.value))),
    )
}
