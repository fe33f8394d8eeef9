//! The comparison's Portrait load reads the same Parquet files as ClickHouse
//! ([`load_parquet`]); this checks that the table it makes is the one `load::load` makes of the
//! same generator: the same fields (paths, kinds, metadata), every user's portrait, and every
//! event's users and counts per day.

use portrait_benches::load_parquet;
use portrait_datagen::{EVENTS, FIRST_EVENT_DAY, Generator, REFERENCE_DAY, key};
use portrait_engine::behaviour::{DayRange, Period};
use portrait_engine::expr::Measure;
use portrait_engine::{Database, Expr, KeyKind, KeyRef};

#[test]
fn parquet_files_load_into_the_table_load_makes() {
    // Over one shard (2^20 users) would make the test slow; 3,000 users with every tag and
    // event type still exercise every column, kind and mapping entry.
    let generator = Generator::new(11, 3_000);
    let files = tempfile::tempdir().unwrap();
    portrait_datagen::parquet_files::write_all(&generator, files.path()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    let direct = db.create_table("direct", KeyKind::Str).unwrap();
    portrait_datagen::load::load(&direct, &generator, "v1", |_| {}).unwrap();
    let imported = db.create_table("imported", KeyKind::Str).unwrap();
    let summaries = load_parquet(&imported, files.path(), "v1", |_| {}).unwrap();
    assert_eq!(summaries.len(), 3);
    assert_eq!(summaries[0].rows, 3_000);

    let (a, b) = (direct.snapshot(), imported.snapshot());
    assert_eq!(a.users(), b.users());
    let specs = |s: &portrait_engine::TableSnapshot| {
        let mut v: Vec<_> = s.fields().map(|f| f.spec.clone()).collect();
        v.sort_by(|x, y| x.path.cmp(&y.path));
        v
    };
    // A tag nobody of the 3,000 has gives no row in tags.parquet, so no field: `load` makes
    // it empty. Every other field is the same.
    let (fa, fb) = (specs(&a), specs(&b));
    assert!(fb.len() > 900, "{} fields", fb.len());
    for spec in &fa {
        if fb.contains(spec) {
            continue;
        }
        let field = a.field(&spec.path).unwrap();
        assert_eq!(
            field.flag_bitmap().unwrap().cardinality(),
            0,
            "{} is missing from the import",
            spec.path
        );
    }
    assert!(fb.iter().all(|s| fa.contains(s)));

    for u in 0..generator.users() {
        let k = key(u);
        let pa = a.portrait(KeyRef::Str(&k)).unwrap();
        let pb = b.portrait(KeyRef::Str(&k)).unwrap();
        assert!(!pa.is_empty());
        assert_eq!(pa, pb, "portrait of {k}");
    }

    let days = DayRange::new(FIRST_EVENT_DAY, REFERENCE_DAY);
    let (ea, eb) = (a.crowd(&Expr::All).unwrap(), b.crowd(&Expr::All).unwrap());
    let mut active_days = 0;
    for event in EVENTS {
        let ra = ea.active(event, days, Period::Day).unwrap();
        let rb = eb.active(event, days, Period::Day).unwrap();
        assert_eq!(ra, rb, "{event} per day");
        active_days += ra.iter().filter(|r| r.users > 0).count();
        let times = |c: &portrait_engine::Crowd<'_>| c.frequency(event, days, Measure::Times);
        assert_eq!(times(&ea).unwrap(), times(&eb).unwrap(), "{event} times");
    }
    assert!(active_days > 0);
}
