//! Import tests: inference and every shape against a naive model, over CSV and Parquet;
//! mappings; bad rows; malformed files (each: a typed error and the table unchanged).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use proptest::prelude::*;

use super::*;
use crate::testutil::proptest_config;
use crate::{Database, FieldKind, KeyKind, Table, Value};

/// A column to write to a test Parquet file.
pub(super) enum Pq {
    Bool(Vec<Option<bool>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
}

fn defs<T>(v: &[Option<T>]) -> Vec<i16> {
    v.iter().map(|x| i16::from(x.is_some())).collect()
}

/// Writes a Parquet file of `schema` (every column optional) in row groups of `group` rows.
pub(super) fn write_parquet(path: &Path, schema: &str, cols: &[Pq], group: usize) {
    write_parquet_with(
        path,
        schema,
        cols,
        group,
        WriterProperties::builder().build(),
    );
}

/// [`write_parquet`] with the writer's properties `props`.
fn write_parquet_with(
    path: &Path,
    schema: &str,
    cols: &[Pq],
    group: usize,
    props: WriterProperties,
) {
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let props = Arc::new(props);
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
    let rows = match &cols[0] {
        Pq::Bool(v) => v.len(),
        Pq::I32(v) => v.len(),
        Pq::I64(v) => v.len(),
        Pq::F64(v) => v.len(),
        Pq::Str(v) => v.len(),
    };
    let mut start = 0;
    while start < rows.max(1) {
        let end = (start + group).min(rows);
        let mut rg = w.next_row_group().unwrap();
        for c in cols {
            let mut cw = rg.next_column().unwrap().unwrap();
            macro_rules! put {
                ($t:ty, $v:expr, $f:expr) => {{
                    let part = &$v[start..end];
                    let values: Vec<_> = part.iter().flatten().map($f).collect();
                    cw.typed::<$t>()
                        .write_batch(&values, Some(&defs(part)), None)
                        .unwrap();
                }};
            }
            match c {
                Pq::Bool(v) => put!(BoolType, v, |x: &bool| *x),
                Pq::I32(v) => put!(Int32Type, v, |x: &i32| *x),
                Pq::I64(v) => put!(Int64Type, v, |x: &i64| *x),
                Pq::F64(v) => put!(DoubleType, v, |x: &f64| *x),
                Pq::Str(v) => put!(ByteArrayType, v, |x: &String| ByteArray::from(x.as_str())),
            }
            cw.close().unwrap();
        }
        rg.close().unwrap();
        start = end.max(start + 1);
    }
    w.close().unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    _db: Database,
    table: Arc<Table>,
}

fn fixture(kind: KeyKind) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let table = db.create_table("users", kind).unwrap();
    Fixture {
        dir,
        _db: db,
        table,
    }
}

impl Fixture {
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn import(
        &self,
        label: &str,
        files: &[PathBuf],
        o: &ImportOptions,
    ) -> crate::Result<ImportSummary> {
        import_files(&self.table, label, files, o)
    }

    /// Keys of the users with flag `path`.
    fn flag_keys(&self, path: &str) -> BTreeSet<String> {
        let snap = self.table.snapshot();
        let b = snap.field(path).unwrap().flag_bitmap().unwrap();
        b.iter().map(|id| key_str(&snap, id)).collect()
    }

    /// `key -> value` of field `path`.
    fn values(&self, path: &str) -> BTreeMap<String, Value> {
        let snap = self.table.snapshot();
        let f = snap.field(path).unwrap();
        (0..snap.users())
            .filter_map(|id| f.value_of(id).unwrap().map(|v| (key_str(&snap, id), v)))
            .collect()
    }

    fn kind(&self, path: &str) -> FieldKind {
        self.table.snapshot().field(path).unwrap().kind()
    }

    /// What must not change when an import fails.
    fn state(&self) -> (u64, u32, Vec<String>) {
        let snap = self.table.snapshot();
        (
            snap.generation(),
            snap.users(),
            snap.fields().map(|m| m.spec.path.clone()).collect(),
        )
    }
}

fn key_str(snap: &crate::TableSnapshot, id: u32) -> String {
    match snap.key_of(id).unwrap().unwrap() {
        crate::Key::Str(s) => s,
        crate::Key::U64(v) => v.to_string(),
    }
}

fn wide() -> ImportOptions {
    ImportOptions::new(Shape::Wide)
}

fn long() -> ImportOptions {
    ImportOptions::new(Shape::Long)
}

#[test]
fn wide_csv_infers_kinds_and_loads_values() {
    let f = fixture(KeyKind::Str);
    let csv = f.file(
        "users.csv",
        "user_id,vip,gender,age,spend,born,seen\n\
         u1,true,female,31,12.5,1990-05-01,2026-11-25T08:00:00Z\n\
         u2,false,male,17,3.25,2008-01-02,\n\
         u3,,female,,,,\n",
    );
    let s = f.import("d1", std::slice::from_ref(&csv), &wide()).unwrap();
    assert_eq!(s.rows, 3);
    assert_eq!(s.load.new_users, 3);
    assert_eq!(s.fields, ["age", "born", "gender", "seen", "spend", "vip"]);
    assert_eq!(f.kind("vip"), FieldKind::Flag);
    assert_eq!(f.kind("gender"), FieldKind::Enum);
    assert_eq!(f.kind("age"), FieldKind::Int);
    assert_eq!(f.kind("spend"), FieldKind::Decimal { scale: 2 });
    assert_eq!(f.kind("born"), FieldKind::Timestamp);
    assert_eq!(f.flag_keys("vip"), BTreeSet::from(["u1".to_owned()]));
    assert_eq!(f.values("gender")["u3"], Value::Str("female".into()));
    assert_eq!(f.values("age").len(), 2);
    assert_eq!(
        f.values("spend")["u2"],
        Value::Decimal {
            units: 325,
            scale: 2
        }
    );
    assert_eq!(
        f.values("seen")["u1"],
        Value::Timestamp(infer::days_from_civil(2026, 11, 25) * infer::DAY_MS + 8 * 3_600_000)
    );
}

#[test]
fn wide_parquet_types_decide_kinds() {
    let f = fixture(KeyKind::Str);
    let p = f.path("users.parquet");
    let n = 5;
    write_parquet(
        &p,
        "message m { optional binary key (UTF8); optional boolean vip; optional int64 age; \
         optional int64 spend (DECIMAL(12,2)); optional int32 born (DATE); \
         optional int64 seen (TIMESTAMP_MICROS); optional double score; optional binary city (UTF8); }",
        &[
            Pq::Str((0..n).map(|i| Some(format!("k{i}"))).collect()),
            Pq::Bool(vec![Some(true), Some(false), None, Some(true), Some(true)]),
            Pq::I64(vec![Some(1), None, Some(-3), Some(4), Some(5)]),
            Pq::I64(vec![Some(1234), Some(5), None, None, None]),
            Pq::I32(vec![Some(1), None, None, None, None]),
            Pq::I64(vec![Some(2_500_000), None, None, None, None]),
            Pq::F64(vec![Some(1.239), Some(-0.5), None, None, None]),
            Pq::Str(vec![
                Some("bj".into()),
                Some("sh".into()),
                None,
                Some("bj".into()),
                None,
            ]),
        ],
        2,
    );
    f.import("d1", &[p], &wide()).unwrap();
    assert_eq!(
        f.flag_keys("vip"),
        BTreeSet::from(["k0".to_owned(), "k3".into(), "k4".into()])
    );
    assert_eq!(f.values("age")["k2"], Value::Int(-3));
    assert_eq!(f.kind("spend"), FieldKind::Decimal { scale: 2 });
    assert_eq!(
        f.values("spend")["k0"],
        Value::Decimal {
            units: 1234,
            scale: 2
        }
    );
    assert_eq!(f.values("born")["k0"], Value::Timestamp(infer::DAY_MS));
    assert_eq!(f.values("seen")["k0"], Value::Timestamp(2_500));
    assert_eq!(
        f.kind("score"),
        FieldKind::Decimal {
            scale: DEFAULT_FLOAT_SCALE
        }
    );
    assert_eq!(
        f.values("score")["k0"],
        Value::Decimal {
            units: 124,
            scale: 2
        }
    );
    assert_eq!(
        f.values("score")["k1"],
        Value::Decimal {
            units: -50,
            scale: 2
        }
    );
    assert_eq!(f.kind("city"), FieldKind::Enum);
    assert_eq!(f.values("city").len(), 3);
}

#[test]
fn mapping_renames_nests_sets_kinds_and_skips() {
    let f = fixture(KeyKind::Str);
    let csv = f.file(
        "u.tsv",
        "uid\tg\tinterests\tnote\tlevel\n\
         a\tf\tsports|travel\tx\t1\n\
         b\tm\tsports\ty\t2\n",
    );
    let mut o = wide();
    o.mapping = Mapping::from_toml(
        r#"
        key = "uid"
        prefix = "crm"
        [fields.g]
        path = "demographic/gender"
        kind = "enum"
        description = "gender"
        owner = "crm-team"
        [fields.interests]
        kind = "set"
        separator = "|"
        [fields.note]
        skip = true
        [fields.level]
        kind = "decimal"
        scale = 1
        "#,
    )
    .unwrap();
    let s = f.import("d1", &[csv], &o).unwrap();
    assert_eq!(
        s.fields,
        ["crm/demographic/gender", "crm/interests", "crm/level"]
    );
    let snap = f.table.snapshot();
    let meta = snap
        .fields()
        .find(|m| m.spec.path == "crm/demographic/gender")
        .unwrap();
    assert_eq!(meta.spec.owner, "crm-team");
    assert_eq!(
        f.values("crm/interests")["a"],
        Value::Strs(vec!["sports".into(), "travel".into()])
    );
    assert_eq!(
        f.values("crm/level")["b"],
        Value::Decimal {
            units: 20,
            scale: 1
        }
    );
    assert!(snap.field("crm/note").is_err());
}

#[test]
fn long_values_infer_enum_set_and_numbers_per_field() {
    let f = fixture(KeyKind::U64);
    let csv = f.file(
        "long.csv",
        "id,field,value\n\
         1,city,bj\n1,interest,sports\n1,interest,travel\n1,age,30\n\
         2,city,sh\n2,interest,sports\n2,age,41\n2,score,1.5\n",
    );
    f.import("d1", &[csv], &long()).unwrap();
    assert_eq!(f.kind("city"), FieldKind::Enum);
    assert_eq!(f.kind("interest"), FieldKind::Set);
    assert_eq!(f.kind("age"), FieldKind::Int);
    assert_eq!(f.kind("score"), FieldKind::Decimal { scale: 1 });
    assert_eq!(f.values("age")["2"], Value::Int(41));
    assert_eq!(
        f.values("interest")["1"],
        Value::Strs(vec!["sports".into(), "travel".into()])
    );
}

#[test]
fn rerunning_a_label_replaces_the_version() {
    let f = fixture(KeyKind::Str);
    let a = f.file("a.csv", "key,tag\nu1,vip\nu2,vip\n");
    let b = f.file("b.csv", "key,tag\nu3,vip\n");
    f.import("d1", &[a], &long()).unwrap();
    f.import("d1", &[b], &long()).unwrap();
    let snap = f.table.snapshot();
    assert_eq!(snap.versions("vip").unwrap().len(), 1);
    assert_eq!(f.flag_keys("vip"), BTreeSet::from(["u3".to_owned()]));
}

#[test]
fn bad_rows_fail_with_file_and_row_or_are_skipped_and_counted() {
    let f = fixture(KeyKind::Str);
    let csv = f.file(
        "bad.csv",
        "key,age,vip\nu1,30,1\n,31,1\nu3,abc,0\nu4,40\nu5,50,1\n",
    );
    let before = f.state();
    let mut o = wide();
    // Inferred from its sample (which holds `abc`), `age` would be an enum.
    o.mapping = Mapping::from_toml("[fields.age]\nkind = \"int\"").unwrap();
    let e = f.import("d1", std::slice::from_ref(&csv), &o).unwrap_err();
    match &e {
        Error::Import { path, row, reason } => {
            assert_eq!(path, &csv);
            assert_eq!(*row, Some(2), "{e}");
            assert!(reason.contains("missing key"), "{e}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(f.state(), before);

    o.skip_bad_rows = true;
    let s = f.import("d1", &[csv], &o).unwrap();
    assert_eq!(s.rows, 4, "a ragged row is not read");
    assert_eq!(s.skipped_rows(), 3, "{:?}", s.skipped);
    let reasons: BTreeMap<&str, u64> = s
        .skipped
        .iter()
        .map(|r| (r.reason.as_str(), r.rows))
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("invalid int for `age`", 1),
            ("missing key", 1),
            ("ragged row", 1)
        ])
    );
    // A bad row contributes nothing, not even its valid cells.
    assert_eq!(
        f.values("age").keys().cloned().collect::<Vec<_>>(),
        ["u1", "u5"]
    );
    assert_eq!(
        f.flag_keys("vip"),
        BTreeSet::from(["u1".to_owned(), "u5".into()])
    );
}

#[test]
fn malformed_files_give_typed_errors_and_change_nothing() {
    let f = fixture(KeyKind::Str);
    f.import("d0", &[f.file("ok.csv", "key,vip\nu1,true\n")], &wide())
        .unwrap();
    let good = f.path("good.parquet");
    write_parquet(
        &good,
        "message m { optional binary key (UTF8); optional boolean vip; }",
        &[
            Pq::Str((0..2000).map(|i| Some(format!("k{i}"))).collect()),
            Pq::Bool((0..2000).map(|i| Some(i % 3 == 0)).collect()),
        ],
        500,
    );
    let bytes = std::fs::read(&good).unwrap();
    let truncated = f.path("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let chopped = f.path("chopped.parquet");
    let mut middle = bytes.clone();
    middle.drain(200..bytes.len() / 2);
    std::fs::write(&chopped, &middle).unwrap();
    let garbage = f.path("garbage.parquet");
    let mut g = bytes.clone();
    for b in g.iter_mut().skip(4).take(bytes.len() / 2) {
        *b ^= 0x5a;
    }
    std::fs::write(&garbage, &g).unwrap();
    let timestamps = f.path("ts.parquet");
    write_parquet(
        &timestamps,
        "message m { optional binary key (UTF8); optional int64 vip (TIMESTAMP_MILLIS); }",
        &[Pq::Str(vec![Some("u1".into())]), Pq::I64(vec![Some(5)])],
        10,
    );

    let cases: Vec<(&str, PathBuf, ImportOptions)> = vec![
        ("empty csv", f.file("empty.csv", ""), wide()),
        ("header only", f.file("header.csv", "key,vip\n"), wide()),
        (
            "no key column",
            f.file("nokey.csv", "who,vip\nu1,true\n"),
            wide(),
        ),
        (
            "ragged",
            f.file("ragged.csv", "key,vip\nu1,true,extra\n"),
            wide(),
        ),
        (
            "invalid utf-8 key",
            {
                let p = f.path("utf8.csv");
                std::fs::write(&p, b"key,vip\n\xff\xfe,true\n").unwrap();
                p
            },
            wide(),
        ),
        (
            "bad path column",
            f.file("path.csv", "key,Age Group\nu1,3\n"),
            wide(),
        ),
        ("empty parquet", f.file("empty.parquet", ""), wide()),
        (
            "not parquet",
            f.file("text.parquet", "key,vip\nu1,1\n"),
            wide(),
        ),
        ("truncated parquet", truncated, wide()),
        ("chopped parquet", chopped, wide()),
        ("garbled parquet", garbage, wide()),
        ("conflicting kind", timestamps, wide()),
        (
            "too many long columns",
            f.file("long.csv", "key,a,b,c\nu1,1,2,3\n"),
            long(),
        ),
        (
            "unknown type",
            f.file("data.bin", "key,vip\nu1,1\n"),
            wide(),
        ),
    ];
    let before = f.state();
    for (what, path, o) in cases {
        let e = f.import("d1", &[path], &o).unwrap_err();
        assert!(
            matches!(
                e.class(),
                crate::ErrorClass::BadInput | crate::ErrorClass::Conflict
            ),
            "{what}: {e}"
        );
        assert_eq!(f.state(), before, "{what} changed the table");
    }
}

/// The rows of the wide test file of [`parquet_row_groups_load_like_the_same_rows_in_csv`]:
/// `(key, age text, vip, city)`, keys in an order unlike their values, some repeated.
fn group_rows(n: usize) -> Vec<(String, String, Option<bool>, Option<String>)> {
    (0..n)
        .map(|i| {
            let k = (i * 7919) % (n - n / 10);
            let age = match i {
                530 | 2010 => "abc".to_owned(),
                _ => (i % 90).to_string(),
            };
            let vip = (i % 7 != 3).then_some(i % 3 == 0);
            let city = (i % 11 != 0).then(|| format!("c{}", i % 13));
            (format!("u{k}"), age, vip, city)
        })
        .collect()
}

/// A Parquet file of many row groups, decoded in parallel, loads exactly what the same rows
/// do as a CSV file read in order: the same users in the same id order, the same values, the
/// same bad rows (first ones named by file and row, then skipped and counted).
#[test]
fn parquet_row_groups_load_like_the_same_rows_in_csv() {
    let rows = group_rows(3700);
    let mut o = wide();
    o.mapping = Mapping::from_toml(
        "[fields.age]\nkind = \"int\"\n[fields.city]\nkind = \"enum\"\n[fields.vip]\nkind = \"flag\"",
    )
    .unwrap();
    let mut text = String::from("key,age,vip,city\n");
    for (k, age, vip, city) in &rows {
        let vip = vip.map(|v| v.to_string()).unwrap_or_default();
        text.push_str(&format!(
            "{k},{age},{vip},{}\n",
            city.as_deref().unwrap_or("")
        ));
    }
    let mut loaded = Vec::new();
    for parquet in [false, true] {
        let f = fixture(KeyKind::Str);
        let path = if parquet {
            let p = f.path("groups.parquet");
            write_parquet(
                &p,
                "message m { optional binary key (UTF8); optional binary age (UTF8); \
                 optional boolean vip; optional binary city (UTF8); }",
                &[
                    Pq::Str(rows.iter().map(|r| Some(r.0.clone())).collect()),
                    Pq::Str(rows.iter().map(|r| Some(r.1.clone())).collect()),
                    Pq::Bool(rows.iter().map(|r| r.2).collect()),
                    Pq::Str(rows.iter().map(|r| r.3.clone()).collect()),
                ],
                100,
            );
            p
        } else {
            f.file("groups.csv", &text)
        };
        let e = f.import("d1", std::slice::from_ref(&path), &o).unwrap_err();
        match &e {
            Error::Import {
                path: p,
                row,
                reason,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*row, Some(531), "{e}");
                assert!(reason.contains("invalid int for `age`"), "{e}");
            }
            other => panic!("{other}"),
        }
        assert_eq!(f.table.snapshot().users(), 0);
        let mut skip = o.clone();
        skip.skip_bad_rows = true;
        let s = f.import("d1", std::slice::from_ref(&path), &skip).unwrap();
        assert_eq!(s.rows, 3700);
        assert_eq!(
            s.skipped,
            [SkippedRows {
                reason: "invalid int for `age`".into(),
                rows: 2,
                first_file: path.clone(),
                first_row: 531,
            }]
        );
        let snap = f.table.snapshot();
        let keys: Vec<String> = (0..snap.users()).map(|id| key_str(&snap, id)).collect();
        loaded.push((keys, f.values("age"), f.values("city"), f.flag_keys("vip")));
    }
    assert_eq!(loaded[0], loaded[1]);
}

/// Long rows of tags, as Parquet (tags dictionary-coded, grouped by tag on the decoding
/// threads) and as CSV (row by row): the same users in the same id order, the same fields in
/// the same order, the same flags; and the same first bad row, or skipped rows, when some
/// rows have a null tag, a tag that makes no field path, or a missing key.
#[test]
fn long_parquet_tags_load_like_the_same_rows_in_csv() {
    // Users in runs (mostly increasing, some coming back), 1 to 6 tags each, some repeated.
    let mut rows: Vec<(Option<String>, Option<String>)> = Vec::new();
    for u in 0..1500u64 {
        let user = if u % 97 == 5 { u / 3 } else { u };
        for t in 0..1 + (u * 7) % 6 {
            let tag = format!("tag/t{}", (u * 31 + t * 17) % 40);
            rows.push((Some(format!("u{user}")), Some(tag)));
        }
    }
    let clean = rows.clone();
    let mut dirty = rows;
    dirty[2100].0 = None;
    dirty[3333].1 = None;
    dirty[4000].1 = Some("Bad Tag".into());
    for (rows, bad) in [(clean, None), (dirty, Some(2101))] {
        let mut loaded = Vec::new();
        for parquet in [false, true] {
            let f = fixture(KeyKind::Str);
            let path = if parquet {
                let p = f.path("t.parquet");
                write_parquet(
                    &p,
                    "message m { optional binary user (UTF8); optional binary tag (UTF8); }",
                    &[
                        Pq::Str(rows.iter().map(|r| r.0.clone()).collect()),
                        Pq::Str(rows.iter().map(|r| r.1.clone()).collect()),
                    ],
                    700,
                );
                p
            } else {
                let mut text = String::from("user,tag\n");
                for (k, t) in &rows {
                    text.push_str(&format!(
                        "{},{}\n",
                        k.as_deref().unwrap_or(""),
                        t.as_deref().unwrap_or("")
                    ));
                }
                f.file("t.csv", &text)
            };
            let mut o = long();
            if let Some(row) = bad {
                let e = f.import("d1", std::slice::from_ref(&path), &o).unwrap_err();
                match &e {
                    Error::Import {
                        path: p, row: r, ..
                    } => {
                        assert_eq!(p, &path);
                        assert_eq!(*r, Some(row), "{e}");
                    }
                    other => panic!("{other}"),
                }
                assert_eq!(f.table.snapshot().users(), 0);
                o.skip_bad_rows = true;
            }
            let s = f.import("d1", std::slice::from_ref(&path), &o).unwrap();
            let skipped: Vec<(String, u64, u64)> = s
                .skipped
                .iter()
                .map(|r| (r.reason.clone(), r.rows, r.first_row))
                .collect();
            let snap = f.table.snapshot();
            let keys: Vec<String> = (0..snap.users()).map(|id| key_str(&snap, id)).collect();
            let fields: Vec<String> = snap.fields().map(|m| m.spec.path.clone()).collect();
            let flags: Vec<BTreeSet<String>> = fields.iter().map(|p| f.flag_keys(p)).collect();
            loaded.push((keys, fields, flags, skipped, s.rows));
        }
        assert_eq!(loaded[0], loaded[1]);
        assert_eq!(loaded[0].1.len(), 40);
    }
}

/// INT64 columns, read page by page by the import's own reader: plain and dictionary-encoded
/// (with a fallback to plain once the dictionary is full), required and optional, in data pages
/// v1 and v2, as keys and as values, timestamps in microseconds converted.
#[test]
fn int64_columns_load_whatever_their_encoding() {
    use parquet::basic::Encoding;
    use parquet::file::properties::WriterVersion;
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = (0..5000i64)
        .map(|i| {
            let n = (i % 7 != 3).then_some(if i < 2500 { i % 17 } else { i * 1_000_003 });
            let ts = (i % 5 != 0).then_some(1_700_000_000_000_000 + i * 1_000_123);
            (i * 3 + 1, n, ts)
        })
        .collect();
    for (dictionary, version, page_rows) in [
        (true, WriterVersion::PARQUET_1_0, 10_000),
        (false, WriterVersion::PARQUET_1_0, 333),
        (true, WriterVersion::PARQUET_2_0, 700),
    ] {
        let f = fixture(KeyKind::U64);
        let p = f.path("ints.parquet");
        let schema = Arc::new(
            parse_message_type(
                "message m { required int64 id; optional int64 n; \
                 optional int64 ts (TIMESTAMP(MICROS,true)); }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_writer_version(version)
                .set_dictionary_enabled(dictionary)
                .set_dictionary_page_size_limit(4096)
                .set_data_page_row_count_limit(page_rows)
                .set_encoding(Encoding::PLAIN)
                .build(),
        );
        let mut w =
            SerializedFileWriter::new(std::fs::File::create(&p).unwrap(), schema, props).unwrap();
        for part in rows.chunks(1800) {
            let mut rg = w.next_row_group().unwrap();
            let mut c = rg.next_column().unwrap().unwrap();
            let ids: Vec<i64> = part.iter().map(|r| r.0).collect();
            c.typed::<Int64Type>()
                .write_batch(&ids, None, None)
                .unwrap();
            c.close().unwrap();
            for which in 0..2 {
                let col: Vec<Option<i64>> = part
                    .iter()
                    .map(|r| if which == 0 { r.1 } else { r.2 })
                    .collect();
                let values: Vec<i64> = col.iter().flatten().copied().collect();
                let mut c = rg.next_column().unwrap().unwrap();
                c.typed::<Int64Type>()
                    .write_batch(&values, Some(&defs(&col)), None)
                    .unwrap();
                c.close().unwrap();
            }
            rg.close().unwrap();
        }
        w.close().unwrap();
        let s = f.import("d1", std::slice::from_ref(&p), &wide()).unwrap();
        assert_eq!(s.rows, 5000);
        let want_n: BTreeMap<String, Value> = rows
            .iter()
            .filter_map(|r| r.1.map(|n| ((r.0).to_string(), Value::Int(n))))
            .collect();
        let want_ts: BTreeMap<String, Value> = rows
            .iter()
            .filter_map(|r| {
                r.2.map(|t| ((r.0).to_string(), Value::Timestamp(t.div_euclid(1000))))
            })
            .collect();
        assert_eq!(
            f.values("n"),
            want_n,
            "dictionary {dictionary}, {version:?}"
        );
        assert_eq!(
            f.values("ts"),
            want_ts,
            "dictionary {dictionary}, {version:?}"
        );
    }
}

/// A Parquet file damaged inside a later row group: the import fails naming the file and
/// the first row of that group, and changes nothing.
#[test]
fn a_damaged_row_group_names_its_first_row() {
    let f = fixture(KeyKind::Str);
    let p = f.path("damaged.parquet");
    let rows = group_rows(2000);
    write_parquet(
        &p,
        "message m { optional binary key (UTF8); optional boolean vip; }",
        &[
            Pq::Str(rows.iter().map(|r| Some(r.0.clone())).collect()),
            Pq::Bool(rows.iter().map(|r| r.2).collect()),
        ],
        250,
    );
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
    let group = parquet::file::reader::FileReader::metadata(&reader).row_group(5);
    let vip = group.column(1);
    let at = vip
        .dictionary_page_offset()
        .unwrap_or(vip.data_page_offset()) as usize;
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[at..at + 12].fill(0xff);
    std::fs::write(&p, &bytes).unwrap();
    let before = f.state();
    let e = f
        .import("d1", std::slice::from_ref(&p), &wide())
        .unwrap_err();
    match &e {
        Error::Import { path, row, .. } => {
            assert_eq!(path, &p);
            assert_eq!(*row, Some(5 * 250 + 1), "{e}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(f.state(), before);
}

/// Damage done to a file's bytes by [`damaged_files_load_or_fail_cleanly`].
#[derive(Debug, Clone)]
enum Damage {
    /// Bytes XORed with a non-zero byte each.
    Flips(Vec<(prop::sample::Index, u8)>),
    /// A stretch of bytes zeroed.
    Zeros(prop::sample::Index, usize),
    /// The file cut short.
    Cut(prop::sample::Index),
}

impl Damage {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Damage::Flips(flips) => {
                for (at, x) in flips {
                    let at = at.index(bytes.len());
                    bytes[at] ^= x;
                }
            }
            Damage::Zeros(at, n) => {
                let at = at.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes[at..end].fill(0);
            }
            Damage::Cut(at) => bytes.truncate(at.index(bytes.len())),
        }
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..8)
            .prop_map(Damage::Flips),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(at, n)| Damage::Zeros(at, n)),
        any::<prop::sample::Index>().prop_map(Damage::Cut),
    ]
}

/// One of six small files (`which`, 0 to 5), with the options that import it. Three are
/// Parquet files that take every decoding path between them: a long file of tags
/// (dictionary-encoded strings that fall back to plain pages, keys in runs of a tag), an events
/// file (dictionary names, DATE days, int64 counts) and a wide file (ints, strings and
/// booleans, with nulls, Snappy), each of several row groups of many small pages. Three are
/// CSV files of the same shapes: a wide one with a quoted field, a long one and an events one
/// with timestamps.
fn shaped_file(f: &Fixture, which: usize) -> (PathBuf, ImportOptions) {
    if which >= 3 {
        let (text, options) = match which {
            3 => (
                (0..300).fold(String::from("key,age,city,vip\n"), |t, i| {
                    t + &format!("u{i},{},\"c, {}\",{}\n", i % 80, i % 7, i % 2 == 0)
                }),
                wide(),
            ),
            4 => (
                (0..300).fold(String::from("key,tag\n"), |t, i| {
                    t + &format!("u{},tag{}\n", i % 100, i % 4)
                }),
                long(),
            ),
            _ => (
                (0..300).fold(String::from("key,event,timestamp,count\n"), |t, i| {
                    t + &format!(
                        "u{},ev{},2026-11-{:02}T10:00:00Z,{}\n",
                        i % 90,
                        i % 3,
                        1 + i % 9,
                        1 + i % 4
                    )
                }),
                ImportOptions::new(Shape::Events),
            ),
        };
        return (f.file("good.csv", &text), options);
    }
    let small_pages = || {
        WriterProperties::builder()
            .set_dictionary_page_size_limit(256)
            .set_data_page_size_limit(512)
            .set_write_batch_size(64)
    };
    let key = |i: usize| Some(format!("u{:05}", i * 7 % 1000));
    let p = f.path("good.parquet");
    match which {
        0 => {
            let mut rows: Vec<_> = (0..1500)
                .map(|i| (Some(format!("tag{}", i % 4)), key(i)))
                .collect();
            rows.sort();
            let (tags, keys) = rows.into_iter().unzip();
            write_parquet_with(
                &p,
                "message m { optional binary tag (UTF8); optional binary key (UTF8); }",
                &[Pq::Str(tags), Pq::Str(keys)],
                400,
                small_pages().build(),
            );
            (p, long())
        }
        1 => {
            write_parquet_with(
                &p,
                "message m { optional binary key (UTF8); optional binary event (UTF8); \
                 optional int32 day (DATE); optional int64 count; }",
                &[
                    Pq::Str((0..1200).map(key).collect()),
                    Pq::Str((0..1200).map(|i| Some(format!("ev{}", i % 3))).collect()),
                    Pq::I32((0..1200).map(|i| Some(20_000 + i % 5)).collect()),
                    Pq::I64((0..1200).map(|i| Some(1 + (i % 4) as i64)).collect()),
                ],
                300,
                small_pages().build(),
            );
            (p, ImportOptions::new(Shape::Events))
        }
        _ => {
            write_parquet_with(
                &p,
                "message m { optional binary key (UTF8); optional int64 age; \
                 optional binary city (UTF8); optional boolean vip; }",
                &[
                    Pq::Str((0..1000).map(key).collect()),
                    Pq::I64(
                        (0..1000)
                            .map(|i| (i % 9 != 0).then_some(i as i64 % 80))
                            .collect(),
                    ),
                    Pq::Str(
                        (0..1000)
                            .map(|i| (i % 5 != 0).then(|| format!("c{}", i % 7)))
                            .collect(),
                    ),
                    Pq::Bool(
                        (0..1000)
                            .map(|i| (i % 6 != 0).then_some(i % 2 == 0))
                            .collect(),
                    ),
                ],
                250,
                small_pages()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build(),
            );
            (p, wide())
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(400))]
    /// A file of any shape and format damaged anywhere (bytes flipped, a stretch zeroed, the
    /// file cut) either loads or fails with a typed error naming the file, never a panic or a
    /// hang; a failed import leaves the table as it was, and the undamaged file loads after it.
    #[test]
    fn damaged_files_load_or_fail_cleanly(which in 0usize..6, damage in damage()) {
        let f = fixture(KeyKind::Str);
        let (good, options) = shaped_file(&f, which);
        let mut bytes = std::fs::read(&good).unwrap();
        damage.apply(&mut bytes);
        let extension = good.extension().unwrap().to_str().unwrap();
        let bad = f.path(&format!("damaged.{extension}"));
        std::fs::write(&bad, &bytes).unwrap();
        let before = f.state();
        // (A load of damaged values may well succeed: a flipped byte inside a value is data.)
        if let Err(e) = f.import("d1", std::slice::from_ref(&bad), &options) {
            prop_assert_eq!(e.class(), crate::ErrorClass::BadInput, "{}", e);
            // Not a decoder panic caught on the way (the checks come first).
            prop_assert!(!e.to_string().contains("reader failed"), "{}", e);
            prop_assert!(
                matches!(&e, Error::Import { path, .. } if path == &bad),
                "{}",
                e
            );
            prop_assert_eq!(f.state(), before);
            let summary = f.import("d2", std::slice::from_ref(&good), &options).unwrap();
            prop_assert!(summary.load.users > 0, "{:?}", summary);
        }
    }
}

#[test]
fn events_load_per_day_and_replace_only_their_days() {
    let f = fixture(KeyKind::Str);
    let csv = f.file(
        "ev.csv",
        "key,event,timestamp,count\n\
         u1,login,2026-11-25,2\n\
         u2,login,2026-11-24T23:30:00Z,\n\
         u1,buy,2026-11-25T10:00:00Z,1\n",
    );
    f.import("d1", &[csv], &ImportOptions::new(Shape::Events))
        .unwrap();
    assert_eq!(f.kind("login"), FieldKind::Event);
    let d25 = infer::days_from_civil(2026, 11, 25) as i32;
    let members = |path: &str, day: i32| -> BTreeSet<String> {
        let snap = f.table.snapshot();
        let field = snap.field(path).unwrap();
        match field.event_day_in(0, day).unwrap() {
            Some(b) => b.iter().map(|id| key_str(&snap, id)).collect(),
            None => BTreeSet::new(),
        }
    };
    assert_eq!(
        f.table.snapshot().field("login").unwrap().event_days(),
        [d25 - 1, d25]
    );
    assert_eq!(members("login", d25), BTreeSet::from(["u1".to_owned()]));
    assert_eq!(members("login", d25 - 1), BTreeSet::from(["u2".to_owned()]));
    // A Parquet file with DATE days replaces day 25 and keeps day 24.
    let p = f.path("ev.parquet");
    write_parquet(
        &p,
        "message m { optional binary key (UTF8); optional binary event (UTF8); \
         optional int32 day (DATE); }",
        &[
            Pq::Str(vec![Some("u3".into())]),
            Pq::Str(vec![Some("login".into())]),
            Pq::I32(vec![Some(d25)]),
        ],
        10,
    );
    f.import("d2", &[p], &ImportOptions::new(Shape::Events))
        .unwrap();
    assert_eq!(members("login", d25), BTreeSet::from(["u3".to_owned()]));
    assert_eq!(members("login", d25 - 1), BTreeSet::from(["u2".to_owned()]));

    let before = f.state();
    let bad = f.file("ev2.csv", "key,event,day\nu1,login,yesterday\n");
    let e = f
        .import("d3", &[bad], &ImportOptions::new(Shape::Events))
        .unwrap_err();
    assert!(matches!(e, Error::Import { row: Some(1), .. }), "{e}");
    assert_eq!(f.state(), before);
}

/// Event names in runs and alternating, one the mapping skips and one that makes no field
/// path: every row of a bad name is reported (not only the first of its run), skipped names
/// load nothing, and the others land on their own fields.
#[test]
fn event_names_in_runs_each_row_decided() {
    let f = fixture(KeyKind::Str);
    let csv = f.file(
        "ev.csv",
        "key,event,day\n\
         u1,login,2026-11-25\n\
         u2,login,2026-11-25\n\
         u3,bad//name,2026-11-25\n\
         u4,bad//name,2026-11-25\n\
         u1,noise,2026-11-25\n\
         u2,buy,2026-11-25\n\
         u3,login,2026-11-25\n\
         u4,buy,2026-11-25\n\
         u5,bad//name,2026-11-25\n",
    );
    let mut o = ImportOptions::new(Shape::Events);
    o.skip_bad_rows = true;
    o.mapping = Mapping::from_toml("[fields.noise]\nskip = true\n").unwrap();
    let s = f.import("d1", &[csv], &o).unwrap();
    assert_eq!(s.skipped_rows(), 3, "{:?}", s.skipped);
    let d25 = infer::days_from_civil(2026, 11, 25) as i32;
    let snap = f.table.snapshot();
    let members = |path: &str| -> BTreeSet<String> {
        let b = snap
            .field(path)
            .unwrap()
            .event_day_in(0, d25)
            .unwrap()
            .unwrap();
        b.iter().map(|id| key_str(&snap, id)).collect()
    };
    assert_eq!(
        members("login"),
        BTreeSet::from(["u1", "u2", "u3"].map(String::from))
    );
    assert_eq!(
        members("buy"),
        BTreeSet::from(["u2", "u4"].map(String::from))
    );
    assert!(snap.field("noise").is_err());
}

/// Rows of one user, event and day add up whatever their order (unsorted, or sorted with
/// repeats), a zero count stages nothing, a day out of range is a bad row counted in its place,
/// and runs of one event and day that switch back and forth each land on their own day.
#[test]
fn event_counts_add_up_in_any_row_order() {
    let f = fixture(KeyKind::Str);
    let csv = f.file(
        "ev.csv",
        "key,event,day,count\n\
         u2,login,2026-11-25,3\n\
         u1,login,2026-11-25,1\n\
         u1,login,2026-11-24,4\n\
         u2,login,2026-11-25,2\n\
         u3,login,2026-11-24,0\n\
         u3,login,1960-01-01,1\n\
         u1,login,2026-11-25,5\n\
         u3,login,2026-11-25,1\n\
         u4,buy,2026-11-25,2\n\
         u4,buy,2026-11-25,1\n\
         u5,buy,2026-11-25,1\n",
    );
    let mut o = ImportOptions::new(Shape::Events);
    o.skip_bad_rows = true;
    let s = f.import("d1", &[csv], &o).unwrap();
    assert_eq!(s.skipped_rows(), 1, "{:?}", s.skipped);
    assert_eq!(
        (s.skipped[0].reason.as_str(), s.skipped[0].first_row),
        ("invalid day", 6)
    );
    let d25 = infer::days_from_civil(2026, 11, 25) as i32;
    let snap = f.table.snapshot();
    // Each user's count on a day: 1 for being in the day's bitmap, plus its count slices.
    let counts = |path: &str, day: i32| -> BTreeMap<String, u32> {
        let field = snap.field(path).unwrap();
        crate::testutil::event_counts(&field, 0, day)
            .into_iter()
            .map(|(id, c)| (key_str(&snap, id), c))
            .collect()
    };
    let want = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
        pairs.iter().map(|&(k, c)| (k.to_owned(), c)).collect()
    };
    assert_eq!(
        counts("login", d25),
        want(&[("u1", 6), ("u2", 5), ("u3", 1)])
    );
    assert_eq!(counts("login", d25 - 1), want(&[("u1", 4)]));
    // In id order but with a user twice: merged, not taken as it is.
    assert_eq!(counts("buy", d25), want(&[("u4", 3), ("u5", 1)]));
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Events Parquet files whose names are dictionary-coded and whose days are DATEs, so that
    /// the import decides a run of rows of one name and day once: in runs (sorted by event and
    /// day) or scattered, in row groups of any size, with every kind of bad row among them (a
    /// missing key, a missing name, a name that makes no path, a day out of range, a negative
    /// count), each reported once, and a name the mapping skips: every user's count on every
    /// day is the model's.
    #[test]
    fn coded_event_rows_match_the_model(
        rows in prop::collection::vec(
            (0u32..40, 0usize..5, 0usize..4, prop::option::of(-1i64..4)),
            1..400,
        ),
        sorted in any::<bool>(),
        group in 1usize..60,
    ) {
        const NAMES: [Option<&str>; 5] = [Some("login"), Some("buy"), Some("noise"), Some("bad//name"), None];
        let d0 = infer::days_from_civil(2026, 11, 1) as i32;
        let days = [d0, d0 + 1, d0 + 2, infer::days_from_civil(1960, 1, 1) as i32];
        let mut rows = rows;
        if sorted {
            rows.sort_by_key(|&(k, e, d, _)| (e, d, k));
        }
        let f = fixture(KeyKind::Str);
        let p = f.path("ev.parquet");
        write_parquet(
            &p,
            "message m { optional binary key (UTF8); optional binary event (UTF8); \
             optional int32 day (DATE); optional int64 count; }",
            &[
                // User 39 has no key: a bad row, reported once whatever else is bad in it.
                Pq::Str(rows.iter().map(|r| (r.0 != 39).then(|| format!("u{}", r.0))).collect()),
                Pq::Str(rows.iter().map(|r| NAMES[r.1].map(str::to_owned)).collect()),
                Pq::I32(rows.iter().map(|r| Some(days[r.2])).collect()),
                Pq::I64(rows.iter().map(|r| r.3).collect()),
            ],
            group,
        );
        let mut o = ImportOptions::new(Shape::Events);
        o.skip_bad_rows = true;
        o.mapping = Mapping::from_toml("[fields.noise]\nskip = true\n").unwrap();
        let s = f.import("d1", &[p], &o).unwrap();

        let mut bad = 0;
        let mut want: BTreeMap<(&str, i32), BTreeMap<String, u32>> = BTreeMap::new();
        for &(k, e, d, c) in &rows {
            let count = c.unwrap_or(1);
            if k == 39 || NAMES[e].is_none() || e == 3 || d == 3 || count < 0 {
                bad += 1;
            } else if e < 2 && count > 0 {
                *want
                    .entry((NAMES[e].unwrap(), days[d]))
                    .or_default()
                    .entry(format!("u{k}"))
                    .or_default() += count as u32;
            }
        }
        prop_assert_eq!(s.skipped_rows(), bad, "{:?}", s.skipped);
        let snap = f.table.snapshot();
        let mut got: BTreeMap<(&str, i32), BTreeMap<String, u32>> = BTreeMap::new();
        for name in ["login", "buy"] {
            let Ok(field) = snap.field(name) else { continue };
            for &day in field.event_days() {
                for shard in 0..snap.shards() {
                    for (id, c) in crate::testutil::event_counts(&field, shard, day) {
                        got.entry((name, day))
                            .or_default()
                            .insert(key_str(&snap, id), c);
                    }
                }
            }
        }
        prop_assert_eq!(got, want);
        prop_assert!(snap.field("noise").is_err());
    }
}

/// A row with no key that also has a bad name is reported once (for its key), though it
/// starts a stretch of rows of one name and day decided together; the stretch's other rows
/// are decided as usual.
#[test]
fn a_keyless_row_starting_a_stretch_is_reported_once() {
    let f = fixture(KeyKind::Str);
    let p = f.path("ev.parquet");
    let d0 = infer::days_from_civil(2026, 11, 1);
    write_parquet(
        &p,
        "message m { optional binary key (UTF8); optional binary event (UTF8); \
         optional int32 day (DATE); optional int64 count; }",
        &[
            Pq::Str(vec![
                None,
                Some("u1".into()),
                Some("u2".into()),
                Some("u3".into()),
            ]),
            Pq::Str(
                ["bad//name", "bad//name", "login", "login"]
                    .map(|s| Some(s.into()))
                    .into(),
            ),
            Pq::I32(vec![Some(d0 as i32); 4]),
            Pq::I64(vec![Some(1), Some(1), Some(2), Some(1)]),
        ],
        10,
    );
    let mut o = ImportOptions::new(Shape::Events);
    o.skip_bad_rows = true;
    let s = f.import("d1", &[p], &o).unwrap();
    assert_eq!(s.skipped_rows(), 2, "{:?}", s.skipped);
    let first = |reason: &str| {
        s.skipped
            .iter()
            .find(|k| k.reason == reason)
            .map(|k| (k.rows, k.first_row))
    };
    assert_eq!(first("missing key"), Some((1, 1)), "{:?}", s.skipped);
    assert_eq!(first("invalid field path"), Some((1, 2)), "{:?}", s.skipped);
    let snap = f.table.snapshot();
    let login = snap.field("login").unwrap();
    let got: BTreeMap<String, u32> = crate::testutil::event_counts(&login, 0, d0 as i32)
        .into_iter()
        .map(|(id, c)| (key_str(&snap, id), c))
        .collect();
    assert_eq!(got, BTreeMap::from([("u2".into(), 2), ("u3".into(), 1)]));
}

#[test]
fn a_stopped_import_publishes_nothing() {
    let f = fixture(KeyKind::Str);
    let csv = f.file("a.csv", "key,tag\nu1,vip\n");
    let before = f.state();
    let e = import_files_with(&f.table, "d1", &[csv], &long(), &mut |_| false).unwrap_err();
    assert!(matches!(e, Error::Import { .. }), "{e}");
    assert_eq!(f.state(), before);
}

/// Random `(key, tag)` rows, split into files.
fn tag_rows() -> impl Strategy<Value = Vec<(u16, u8)>> {
    prop::collection::vec((0u16..300, 0u8..6), 1..400)
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Long `(key, tag)` files, as CSV and as Parquet, against a map from tag to keys.
    #[test]
    fn long_tags_match_the_model(rows in tag_rows(), parquet in any::<bool>(), group in 1usize..64) {
        let f = fixture(KeyKind::Str);
        let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, t) in &rows {
            model.entry(format!("tag{t}")).or_default().insert(format!("u{k}"));
        }
        let path = if parquet {
            let p = f.path("t.parquet");
            write_parquet(
                &p,
                "message m { optional binary user (UTF8); optional binary tag (UTF8); }",
                &[
                    Pq::Str(rows.iter().map(|r| Some(format!("u{}", r.0))).collect()),
                    Pq::Str(rows.iter().map(|r| Some(format!("tag{}", r.1))).collect()),
                ],
                group,
            );
            p
        } else {
            let mut text = String::from("user,tag\n");
            for (k, t) in &rows {
                text.push_str(&format!("u{k},tag{t}\n"));
            }
            f.file("t.csv", &text)
        };
        let s = f.import("d1", &[path], &long()).unwrap();
        prop_assert_eq!(s.rows, rows.len() as u64);
        for (tag, keys) in &model {
            prop_assert_eq!(&f.flag_keys(tag), keys);
        }
        prop_assert_eq!(s.fields.len(), model.len());
    }

    /// Wide Parquet files with flags, ints and enums (with nulls) against per-column maps;
    /// a user given twice keeps the last values and the union of flags.
    #[test]
    fn wide_parquet_matches_the_model(
        rows in prop::collection::vec(
            (0u16..200, any::<Option<bool>>(), any::<Option<i32>>(), prop::option::of(0u8..4)),
            1..300,
        ),
        group in 1usize..100,
    ) {
        let f = fixture(KeyKind::U64);
        let p = f.path("w.parquet");
        write_parquet(
            &p,
            "message m { optional int64 id; optional boolean vip; optional int32 n; \
             optional binary city (UTF8); }",
            &[
                Pq::I64(rows.iter().map(|r| Some(r.0 as i64)).collect()),
                Pq::Bool(rows.iter().map(|r| r.1).collect()),
                Pq::I32(rows.iter().map(|r| r.2).collect()),
                Pq::Str(rows.iter().map(|r| r.3.map(|c| format!("c{c}"))).collect()),
            ],
            group,
        );
        let mut vip = BTreeSet::new();
        let mut n = BTreeMap::new();
        let mut city = BTreeMap::new();
        for (k, v, x, c) in &rows {
            if *v == Some(true) {
                vip.insert(k.to_string());
            }
            if let Some(x) = x {
                n.insert(k.to_string(), Value::Int(*x as i64));
            }
            if let Some(c) = c {
                city.insert(k.to_string(), Value::Str(format!("c{c}")));
            }
        }
        let mut o = wide();
        // A column whose sample holds no value cannot be inferred: name the kinds.
        o.mapping = Mapping::from_toml("[fields.city]\nkind = \"enum\"").unwrap();
        f.import("d1", &[p], &o).unwrap();
        prop_assert_eq!(f.flag_keys("vip"), vip);
        prop_assert_eq!(f.values("n"), n);
        prop_assert_eq!(f.values("city"), city);
    }
}

proptest! {
    #![proptest_config(proptest_config(24))]

    /// Long tag and event Parquet files naming users an earlier version loaded (whose ids the
    /// decoding workers find) and new ones (which the import adds, in order of first
    /// appearance), string and integer keys, sorted by tag (or day) then key or not, in row
    /// groups of any size: every flag and event day holds exactly the model's keys, and the
    /// new users come after the old in the order they first appear.
    #[test]
    fn files_of_known_and_new_users_match_the_model(
        base in prop::collection::btree_set(0u32..400, 1..200),
        rows in prop::collection::vec((0u32..500, 0u8..4), 1..600),
        sorted in any::<bool>(),
        ints in any::<bool>(),
        group in 1usize..80,
    ) {
        let f = fixture(if ints { KeyKind::U64 } else { KeyKind::Str });
        let key = |k: u32| if ints { k.to_string() } else { format!("u{k}") };
        let users = f.file(
            "users.csv",
            &std::iter::once("key,n".to_owned())
                .chain(base.iter().map(|&k| format!("{},{k}", key(k))))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        f.import("users", &[users], &wide()).unwrap();
        let mut rows = rows;
        if sorted {
            rows.sort_by_key(|&(k, t)| (t, k));
        }
        let key_col = || -> Pq {
            if ints {
                Pq::I64(rows.iter().map(|r| Some(i64::from(r.0))).collect())
            } else {
                Pq::Str(rows.iter().map(|r| Some(key(r.0))).collect())
            }
        };
        let key_type = if ints { "int64" } else { "binary" };
        let key_ann = if ints { "" } else { " (UTF8)" };
        let tags = f.path("tags.parquet");
        write_parquet(
            &tags,
            &format!(
                "message m {{ optional {key_type} key{key_ann}; optional binary tag (UTF8); }}"
            ),
            &[key_col(), Pq::Str(rows.iter().map(|r| Some(format!("tag{}", r.1))).collect())],
            group,
        );
        let d0 = infer::days_from_civil(2026, 11, 1) as i32;
        let events = f.path("events.parquet");
        write_parquet(
            &events,
            &format!(
                "message m {{ optional {key_type} key{key_ann}; optional binary event (UTF8); \
                 optional int32 day (DATE); }}"
            ),
            &[
                key_col(),
                Pq::Str(rows.iter().map(|_| Some("login".to_owned())).collect()),
                Pq::I32(rows.iter().map(|r| Some(d0 + i32::from(r.1))).collect()),
            ],
            group,
        );
        f.import("tags", &[tags], &long()).unwrap();
        f.import("events", &[events], &ImportOptions::new(Shape::Events)).unwrap();

        let mut flags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut days: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        let mut order: Vec<String> = base.iter().map(|&k| key(k)).collect();
        for &(k, t) in &rows {
            flags.entry(format!("tag{t}")).or_default().insert(key(k));
            days.entry(d0 + i32::from(t)).or_default().insert(key(k));
            if !base.contains(&k) && !order.contains(&key(k)) {
                order.push(key(k));
            }
        }
        let snap = f.table.snapshot();
        let keys: Vec<String> = (0..snap.users()).map(|id| key_str(&snap, id)).collect();
        prop_assert_eq!(keys, order);
        for (tag, want) in &flags {
            prop_assert_eq!(&f.flag_keys(tag), want);
        }
        let login = snap.field("login").unwrap();
        for (&day, want) in &days {
            let got: BTreeSet<String> = (0..snap.shards())
                .filter_map(|s| login.event_day_in(s, day).unwrap())
                .flat_map(|b| b.iter().map(|id| key_str(&snap, id)).collect::<Vec<_>>())
                .collect();
            prop_assert_eq!(&got, want);
        }
    }
}
