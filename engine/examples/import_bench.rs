//! Import throughput: generates a long and a wide Parquet file with the parquet writer, then
//! times `portrait_engine::import` from file to published version.
//!
//! ```sh
//! cargo run --release -p portrait-engine --features import --example import_bench -- 1000000
//! ```
//!
//! A second argument, `long` or `wide`, runs only that file.
//!
//! Long: `(user: INT64, tag: UTF8)` rows, users sorted, 20 tags per user out of 1,000.
//! Wide: one row per user, 200 BOOLEAN columns (each true for ~10% of users) and 10 attribute
//! columns (INT64, DOUBLE, UTF8 enums). Files are cached in `target/import-bench/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use portrait_engine::import::{ImportOptions, Shape, import_files};
use portrait_engine::{Database, KeyKind};

const TAGS_PER_USER: u64 = 20;
const TAGS: u64 = 1000;
const GROUP_ROWS: u64 = 1 << 20;

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn props() -> Arc<WriterProperties> {
    Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    )
}

fn write_long(path: &Path, users: u64) {
    let schema = Arc::new(
        parse_message_type("message m { required int64 user; required binary tag (UTF8); }")
            .unwrap(),
    );
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props()).unwrap();
    let names: Vec<ByteArray> = (0..TAGS)
        .map(|t| ByteArray::from(format!("tag/t{t:04}").as_str()))
        .collect();
    let rows = users * TAGS_PER_USER;
    let mut start = 0;
    while start < rows {
        let end = (start + GROUP_ROWS).min(rows);
        let mut keys = Vec::with_capacity((end - start) as usize);
        let mut tags = Vec::with_capacity((end - start) as usize);
        for r in start..end {
            let user = r / TAGS_PER_USER;
            keys.push(user as i64 * 7 + 1);
            tags.push(names[(mix(r) % TAGS) as usize].clone());
        }
        let mut rg = w.next_row_group().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int64Type>()
            .write_batch(&keys, None, None)
            .unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(&tags, None, None)
            .unwrap();
        c.close().unwrap();
        rg.close().unwrap();
        start = end;
    }
    w.close().unwrap();
}

fn write_wide(path: &Path, users: u64) {
    let mut schema = String::from("message m { required int64 id; ");
    for f in 0..200 {
        schema.push_str(&format!("required boolean f{f:03}; "));
    }
    for a in 0..4 {
        schema.push_str(&format!("optional int64 n{a}; "));
    }
    for a in 0..3 {
        schema.push_str(&format!("optional double d{a}; "));
    }
    for a in 0..3 {
        schema.push_str(&format!("optional binary e{a} (UTF8); "));
    }
    schema.push('}');
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props()).unwrap();
    let cities: Vec<ByteArray> = (0..300)
        .map(|c| ByteArray::from(format!("city_{c:03}").as_str()))
        .collect();
    let mut start = 0;
    while start < users {
        let end = (start + GROUP_ROWS / 4).min(users);
        let n = (end - start) as usize;
        let mut rg = w.next_row_group().unwrap();
        let ids: Vec<i64> = (start..end).map(|u| u as i64).collect();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int64Type>()
            .write_batch(&ids, None, None)
            .unwrap();
        c.close().unwrap();
        for f in 0..200u64 {
            let v: Vec<bool> = (start..end)
                .map(|u| mix(u * 256 + f).is_multiple_of(10))
                .collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<BoolType>().write_batch(&v, None, None).unwrap();
            c.close().unwrap();
        }
        let defs: Vec<i16> = vec![1; n];
        for a in 0..4u64 {
            let v: Vec<i64> = (start..end)
                .map(|u| (mix(u ^ (a << 40)) % 100) as i64)
                .collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<Int64Type>()
                .write_batch(&v, Some(&defs), None)
                .unwrap();
            c.close().unwrap();
        }
        for a in 0..3u64 {
            let v: Vec<f64> = (start..end)
                .map(|u| (mix(u ^ (a << 44)) % 100_000) as f64 / 100.0)
                .collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<DoubleType>()
                .write_batch(&v, Some(&defs), None)
                .unwrap();
            c.close().unwrap();
        }
        for a in 0..3u64 {
            let v: Vec<ByteArray> = (start..end)
                .map(|u| cities[(mix(u ^ (a << 48)) % 300) as usize].clone())
                .collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<ByteArrayType>()
                .write_batch(&v, Some(&defs), None)
                .unwrap();
            c.close().unwrap();
        }
        rg.close().unwrap();
        start = end;
    }
    w.close().unwrap();
}

fn cached(name: &str, users: u64, write: fn(&Path, u64)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/import-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{users}.parquet"));
    if !path.exists() {
        let t = Instant::now();
        let tmp = path.with_extension("tmp");
        write(&tmp, users);
        std::fs::rename(&tmp, &path).unwrap();
        eprintln!(
            "generated {} in {:.1} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    path
}

fn main() {
    // SAFETY: first thing in main, before any bitmap exists.
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    let users: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a number of users"))
        .unwrap_or(1_000_000);
    let only = std::env::args().nth(2);
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    if run("long") {
        bench_long(&db, users);
    }
    if run("wide") {
        bench_wide(&db, users);
    }
}

fn bench_long(db: &Database, users: u64) {
    let long = cached("long", users, write_long);
    let t = db.create_table("long", KeyKind::U64).unwrap();
    let started = Instant::now();
    let s = import_files(
        &t,
        "d1",
        std::slice::from_ref(&long),
        &ImportOptions::new(Shape::Long),
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "long: {} pairs, {} users, {} fields in {:.2} s = {:.1} M pairs/s (file {:.0} MB)",
        s.rows,
        s.load.users,
        s.fields.len(),
        secs,
        s.rows as f64 / secs / 1e6,
        std::fs::metadata(&long).unwrap().len() as f64 / 1e6
    );
}

fn bench_wide(db: &Database, users: u64) {
    let wide = cached("wide", users, write_wide);
    let t = db.create_table("wide", KeyKind::U64).unwrap();
    let started = Instant::now();
    let s = import_files(
        &t,
        "d1",
        std::slice::from_ref(&wide),
        &ImportOptions::new(Shape::Wide),
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wide: {} rows x {} fields in {:.2} s = {:.2} M rows/s (file {:.0} MB)",
        s.rows,
        s.fields.len(),
        secs,
        s.rows as f64 / secs / 1e6,
        std::fs::metadata(&wide).unwrap().len() as f64 / 1e6
    );
}
