//! Table-level tests: loads and read primitives against a naive model, versions, interrupted
//! loads, reopening, and damaged files.

use std::collections::{BTreeMap, BTreeSet};

use croaring::Bitmap;
use proptest::prelude::*;

use super::fail_next_commit_at;
use crate::{
    CmpOp, Database, Error, FieldKind, FieldSpec, KeyKind, KeyRef, Options, SHARD_BITS, Value,
};

const SHARD: u32 = 1 << SHARD_BITS;
/// Enough users for three shards, the last one partial.
const USERS: u32 = 2 * SHARD + 1000;

fn key(id: u32) -> u64 {
    id as u64 * 7 + 3
}

/// A database with one u64-keyed table whose users `0..USERS` are registered.
fn fixture(keep: u32) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(
        dir.path(),
        Options {
            keep_versions: keep,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.create_table("users", KeyKind::U64).unwrap();
    let mut load = t.load("init").unwrap();
    for id in 0..USERS {
        assert_eq!(load.user(KeyRef::U64(key(id))).unwrap(), id);
    }
    load.commit().unwrap();
    (dir, db)
}

/// The fixture with a `vip` flag (for a real-time write to set), and three keys the table does
/// not hold yet: two for a load to add, one for a real-time write to add before the load
/// commits, so that the load's new users are renumbered.
fn renumbering_fixture() -> (tempfile::TempDir, Database, [u64; 3]) {
    let (dir, db) = fixture(2);
    let t = db.table("users").unwrap();
    let mut first = t.load("vip").unwrap();
    let vip = first.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
    first.flag_id(vip, 0).unwrap();
    first.commit().unwrap();
    let a = 1u64 << 40;
    (dir, db, [a, a + 1, a + 2])
}

/// Ids that exercise shard boundaries as well as the middle of shards.
fn interesting_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..50,
        (SHARD - 20)..(SHARD + 20),
        (2 * SHARD - 20)..(2 * SHARD + 20),
        (USERS - 30)..USERS,
        0u32..USERS,
    ]
}

#[derive(Debug, Clone)]
struct Data {
    flag: BTreeSet<u32>,
    city: BTreeMap<u32, String>,
    interests: BTreeMap<u32, BTreeSet<String>>,
    age: BTreeMap<u32, i64>,
    spend: BTreeMap<u32, i64>,
}

fn data() -> impl Strategy<Value = Data> {
    let word = prop_oneof![Just("a"), Just("b"), Just("c"), Just("Zürich")].prop_map(str::to_owned);
    (
        proptest::collection::btree_set(interesting_id(), 0..60),
        proptest::collection::btree_map(interesting_id(), word.clone(), 0..60),
        proptest::collection::btree_map(
            interesting_id(),
            proptest::collection::btree_set(word, 1..3),
            0..40,
        ),
        proptest::collection::btree_map(
            interesting_id(),
            prop_oneof![-5i64..120, any::<i64>()],
            0..60,
        ),
        proptest::collection::btree_map(interesting_id(), 0i64..1_000_000, 0..40),
    )
        .prop_map(|(flag, city, interests, age, spend)| Data {
            flag,
            city,
            interests,
            age,
            spend,
        })
}

fn load_data(db: &Database, label: &str, d: &Data) {
    let t = db.table("users").unwrap();
    let mut load = t.load(label).unwrap();
    let vip = load
        .field(FieldSpec::new("tier/vip", FieldKind::Flag))
        .unwrap();
    let city = load
        .field(FieldSpec::new("geo/city", FieldKind::Enum))
        .unwrap();
    let interests = load
        .field(FieldSpec::new("interest", FieldKind::Set))
        .unwrap();
    let age = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
    let spend = load
        .field(FieldSpec::new("spend", FieldKind::Decimal { scale: 2 }))
        .unwrap();
    for &id in &d.flag {
        load.flag(vip, KeyRef::U64(key(id))).unwrap();
    }
    for (&id, v) in &d.city {
        // A first, overwritten value: the last one must win.
        load.value_id(city, id, Value::Str("overwritten".into()))
            .unwrap();
        load.value_id(city, id, Value::Str(v.clone())).unwrap();
    }
    for (&id, vs) in &d.interests {
        load.value_id(interests, id, Value::Strs(vs.iter().cloned().collect()))
            .unwrap();
    }
    for (&id, &v) in &d.age {
        load.value_id(age, id, Value::Int(v)).unwrap();
    }
    for (&id, &v) in &d.spend {
        load.value_id(spend, id, Value::Decimal { units: v, scale: 2 })
            .unwrap();
    }
    load.commit().unwrap();
}

fn ids(set: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut v: Vec<u32> = set.into_iter().collect();
    v.sort_unstable();
    v
}

fn check(db: &Database, d: &Data, consts: &[i64], filter: &Bitmap) -> Result<(), TestCaseError> {
    let snap = db.table("users").unwrap().snapshot();
    prop_assert_eq!(snap.users(), USERS);
    prop_assert_eq!(
        snap.field("tier/vip")
            .unwrap()
            .flag_bitmap()
            .unwrap()
            .to_vec(),
        ids(d.flag.iter().copied())
    );
    let city = snap.field("geo/city").unwrap();
    let mut values: Vec<&String> = d.city.values().collect();
    values.sort();
    values.dedup();
    prop_assert_eq!(city.values().iter().collect::<Vec<_>>(), values);
    for v in ["a", "b", "c", "Zürich", "overwritten", "nope"] {
        let want = ids(d.city.iter().filter(|e| e.1 == v).map(|e| *e.0));
        prop_assert_eq!(city.value_bitmap(v).unwrap().to_vec(), want);
        let want = ids(d.interests.iter().filter(|e| e.1.contains(v)).map(|e| *e.0));
        prop_assert_eq!(
            snap.field("interest")
                .unwrap()
                .value_bitmap(v)
                .unwrap()
                .to_vec(),
            want
        );
    }
    let age = snap.field("age").unwrap();
    for &c in consts {
        for op in [
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Ge,
            CmpOp::Gt,
        ] {
            let want = ids(d.age.iter().filter(|e| op.holds(*e.1, c)).map(|e| *e.0));
            prop_assert_eq!(
                age.compare(op, c).unwrap().to_vec(),
                want,
                "age {:?} {}",
                op,
                c
            );
        }
    }
    let sel: Vec<i64> = d
        .age
        .iter()
        .filter(|e| filter.contains(*e.0))
        .map(|e| *e.1)
        .collect();
    let (n, sum) = age.count_sum(Some(filter)).unwrap();
    prop_assert_eq!(n as usize, sel.len());
    prop_assert_eq!(sum, sel.iter().map(|&v| v as i128).sum::<i128>());
    prop_assert_eq!(
        age.extreme(Some(filter), false).unwrap(),
        sel.iter().copied().min()
    );
    prop_assert_eq!(
        age.extreme(Some(filter), true).unwrap(),
        sel.iter().copied().max()
    );
    let spend = snap.field("spend").unwrap();
    let want = ids(d
        .spend
        .iter()
        .filter(|e| (100..=50_000).contains(e.1))
        .map(|e| *e.0));
    prop_assert_eq!(spend.between(100, 50_000).unwrap().to_vec(), want);

    // Point lookups, through external keys, for every id the data mentions plus a few without.
    let probe: BTreeSet<u32> = d
        .flag
        .iter()
        .chain(d.city.keys())
        .chain(d.interests.keys())
        .chain(d.age.keys())
        .chain(d.spend.keys())
        .copied()
        .chain([0, SHARD, USERS - 1])
        .collect();
    for id in probe {
        prop_assert_eq!(snap.id_of(KeyRef::U64(key(id))).unwrap(), Some(id));
        prop_assert_eq!(snap.key_of(id).unwrap(), Some(crate::Key::U64(key(id))));
        let vip = snap.field("tier/vip").unwrap().value_of(id).unwrap();
        prop_assert_eq!(vip, d.flag.contains(&id).then_some(Value::Flag));
        prop_assert_eq!(
            city.value_of(id).unwrap(),
            d.city.get(&id).map(|v| Value::Str(v.clone()))
        );
        prop_assert_eq!(
            snap.field("interest").unwrap().value_of(id).unwrap(),
            d.interests
                .get(&id)
                .map(|v| Value::Strs(v.iter().cloned().collect()))
        );
        prop_assert_eq!(
            age.value_of(id).unwrap(),
            d.age.get(&id).map(|&v| Value::Int(v))
        );
        prop_assert_eq!(
            spend.value_of(id).unwrap(),
            d.spend
                .get(&id)
                .map(|&v| Value::Decimal { units: v, scale: 2 })
        );
    }
    prop_assert_eq!(snap.id_of(KeyRef::U64(1)).unwrap(), None);
    Ok(())
}

#[test]
fn loads_read_back_like_the_model_across_shards_and_reopens() {
    let (dir, db) = fixture(3);
    let mut runner = proptest::test_runner::TestRunner::new(crate::testutil::proptest_config(12));
    let strategy = (
        data(),
        proptest::collection::vec(prop_oneof![-10i64..130, any::<i64>()], 4),
        proptest::collection::vec(interesting_id(), 0..200),
    );
    let db = std::cell::RefCell::new(Some(db));
    let case = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(d, consts, filter)| {
            let n = case.get();
            case.set(n + 1);
            let filter = Bitmap::of(&filter);
            let guard = db.borrow();
            let live = guard.as_ref().unwrap();
            load_data(live, &format!("v{n}"), &d);
            check(live, &d, &consts, &filter)?;
            drop(guard);
            if n % 4 == 3 {
                // Reopen from disk: the same answers.
                db.borrow_mut().take();
                let reopened = Database::open_with(
                    dir.path(),
                    Options {
                        keep_versions: 3,
                        ..Options::default()
                    },
                )
                .unwrap();
                check(&reopened, &d, &consts, &filter)?;
                reopened
                    .table("users")
                    .unwrap()
                    .snapshot()
                    .check_integrity()
                    .unwrap();
                *db.borrow_mut() = Some(reopened);
            }
            Ok(())
        })
        .unwrap();
}

fn simple_load(db: &Database, label: &str, members: &[u32]) {
    let t = db.table("users").unwrap();
    let mut load = t.load(label).unwrap();
    let f = load.field(FieldSpec::new("tag", FieldKind::Flag)).unwrap();
    load.flag_bitmap(f, &Bitmap::of(members)).unwrap();
    load.commit().unwrap();
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("tables/users"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count()
}

#[test]
fn versions_are_kept_replaced_and_expired() {
    let (dir, db) = fixture(2);
    simple_load(&db, "d1", &[1]);
    simple_load(&db, "d2", &[2, SHARD + 2]);
    let snap = db.table("users").unwrap().snapshot();
    assert_eq!(
        snap.field_as_of("tag", "d1")
            .unwrap()
            .flag_bitmap()
            .unwrap()
            .to_vec(),
        vec![1]
    );
    // As of a label between two versions: the older one; before every version: not found.
    assert_eq!(
        snap.field_as_of("tag", "d15").unwrap().version().label,
        "d1"
    );
    assert_eq!(snap.field_as_of("tag", "d9").unwrap().version().label, "d2");
    assert!(matches!(
        snap.field_as_of("tag", "a"),
        Err(Error::VersionNotFound { .. })
    ));
    let expr = crate::expr::parse("tag").unwrap();
    assert_eq!(
        snap.crowd_as_of(&expr, Some("d1"))
            .unwrap()
            .count()
            .unwrap(),
        1
    );
    assert_eq!(
        snap.crowd_as_of(&expr, Some("d2"))
            .unwrap()
            .count()
            .unwrap(),
        2
    );
    let old = snap
        .crowd_as_of(&crate::expr::parse("ALL").unwrap(), Some("d1"))
        .unwrap();
    let top = old.top_values("tag", 5, crate::TopOrder::Count).unwrap();
    assert_eq!(
        top[0].count, 1,
        "analyses read fields as of the crowd's label"
    );
    assert_eq!(
        snap.portrait_of_id_as_of(SHARD + 2, "d2").unwrap(),
        vec![("tag".to_string(), Value::Flag)]
    );
    assert!(
        snap.portrait_of_id_as_of(SHARD + 2, "d1")
            .unwrap()
            .is_empty()
    );
    simple_load(&db, "d3", &[3]);
    let t = db.table("users").unwrap();
    let snap = t.snapshot();
    let labels: Vec<String> = snap
        .versions("tag")
        .unwrap()
        .into_iter()
        .map(|v| v.label)
        .collect();
    assert_eq!(labels, vec!["d2", "d3"]);
    assert!(matches!(
        snap.field_as_of("tag", "d1"),
        Err(Error::VersionNotFound { .. })
    ));
    assert_eq!(
        snap.field("tag").unwrap().flag_bitmap().unwrap().to_vec(),
        vec![3]
    );
    // Re-running a label replaces it.
    simple_load(&db, "d3", &[4]);
    let snap = t.snapshot();
    assert_eq!(snap.versions("tag").unwrap().len(), 2);
    assert_eq!(
        snap.field("tag").unwrap().flag_bitmap().unwrap().to_vec(),
        vec![4]
    );
    // Files of expired versions are gone: init has no segments; d2 spans 2 shards, d3' one.
    assert_eq!(segment_files(dir.path()), 3);
    t.drop_version("tag", "d2").unwrap();
    assert_eq!(segment_files(dir.path()), 1);
    assert!(matches!(
        t.drop_version("tag", "zz"),
        Err(Error::VersionNotFound { .. })
    ));
    // A snapshot taken before a load keeps answering from its own version.
    let before = t.snapshot();
    simple_load(&db, "d5", &[5]);
    assert_eq!(
        before.field("tag").unwrap().flag_bitmap().unwrap().to_vec(),
        vec![4]
    );
    assert_eq!(
        t.snapshot()
            .field("tag")
            .unwrap()
            .flag_bitmap()
            .unwrap()
            .to_vec(),
        vec![5]
    );
}

#[test]
fn interrupted_loads_leave_the_previous_version() {
    let (dir, db) = fixture(7);
    simple_load(&db, "good", &[10, 2 * SHARD + 5]);
    for step in ["after_segments", "after_ids", "before_manifest"] {
        let t = db.table("users").unwrap();
        let generation = t.snapshot().generation();
        let mut load = t.load("bad").unwrap();
        let f = load.field(FieldSpec::new("tag", FieldKind::Flag)).unwrap();
        let g = load
            .field(FieldSpec::new("other", FieldKind::Flag))
            .unwrap();
        load.flag(f, KeyRef::U64(999_999_999)).unwrap(); // a new user
        load.flag_id(g, 1).unwrap();
        fail_next_commit_at(step);
        assert!(matches!(load.commit(), Err(Error::Internal(_))), "{step}");
        let snap = t.snapshot();
        assert_eq!(snap.generation(), generation);
        assert_eq!(snap.users(), USERS);
        assert!(snap.field("other").is_err());
        assert_eq!(
            snap.field("tag").unwrap().flag_bitmap().unwrap().to_vec(),
            vec![10, 2 * SHARD + 5]
        );
        assert_eq!(snap.id_of(KeyRef::U64(999_999_999)).unwrap(), None);
    }
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    let snap = db.table("users").unwrap().snapshot();
    assert_eq!(
        snap.field("tag").unwrap().flag_bitmap().unwrap().to_vec(),
        vec![10, 2 * SHARD + 5]
    );
    assert!(snap.field("other").is_err());
    assert_eq!(
        segment_files(dir.path()),
        2,
        "orphaned segments are removed at open"
    );
    let ids = std::fs::read_dir(dir.path().join("tables/users"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".ids")
        })
        .count();
    assert_eq!(ids, 1, "orphaned id chunks are removed at open");
    // And the table still takes loads.
    simple_load(&db, "after", &[7]);
}

#[test]
fn bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert!(matches!(
        db.create_table("bad name", KeyKind::Str),
        Err(Error::InvalidName { .. })
    ));
    let t = db.create_table("t", KeyKind::Str).unwrap();
    assert!(matches!(
        db.create_table("t", KeyKind::Str),
        Err(Error::TableExists(_))
    ));
    assert!(matches!(t.load(""), Err(Error::InvalidArgument(_))));
    let mut load = t.load("v").unwrap();
    let f = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
    assert!(matches!(
        load.field(FieldSpec::new("age", FieldKind::Flag)),
        Err(Error::FieldKindConflict { .. })
    ));
    assert!(matches!(
        load.field(FieldSpec::new("a//b", FieldKind::Flag)),
        Err(Error::InvalidName { .. })
    ));
    assert!(
        load.user(KeyRef::U64(1)).is_err(),
        "u64 key in a string table"
    );
    assert!(load.value(f, "u1", Value::Str("x".into())).is_err());
    assert!(load.flag(f, "u1").is_err());
    assert!(load.flag_id(f, 99).is_err(), "unassigned id");
    load.value(f, "u1", Value::Int(3)).unwrap();
    load.commit().unwrap();
    let mut load = t.load("v2").unwrap();
    assert!(matches!(
        load.field(FieldSpec::new("age", FieldKind::Enum)),
        Err(Error::FieldKindConflict { .. })
    ));
    drop(load);
    let snap = t.snapshot();
    assert!(matches!(
        snap.field("agee"),
        Err(Error::FieldNotFound { .. })
    ));
    assert!(matches!(
        snap.field("age").unwrap().flag_bitmap(),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(db.table("nope"), Err(Error::TableNotFound(_))));
    assert!(matches!(Database::open(dir.path()), Err(Error::Locked(_))));
    db.drop_table("t").unwrap();
    assert!(db.tables().is_empty());
    drop(db);
    assert!(Database::open(dir.path()).unwrap().tables().is_empty());
}

#[test]
fn damaged_files_are_corruption_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let t = db.create_table("users", KeyKind::Str).unwrap();
        let mut load = t.load("v").unwrap();
        let f = load.field(FieldSpec::new("tag", FieldKind::Flag)).unwrap();
        let a = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
        for i in 0..3000 {
            let k = format!("u{i}");
            if i % 3 == 0 {
                load.flag(f, k.as_str()).unwrap();
            }
            load.value(a, k.as_str(), Value::Int(i % 90)).unwrap();
        }
        load.commit().unwrap();
    }
    let table_dir = dir.path().join("tables/users");
    let files: Vec<_> = std::fs::read_dir(&table_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for file in files {
        let good = std::fs::read(&file).unwrap();
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for i in (0..good.len()).step_by((good.len() / 40).max(1)) {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            cases.push(bad);
        }
        cases.push(good[..good.len() / 2].to_vec());
        cases.push(Vec::new());
        for bad in cases {
            std::fs::write(&file, &bad).unwrap();
            let outcome = Database::open(dir.path()).and_then(|db| {
                let snap = db.table("users")?.snapshot();
                snap.check_integrity()?;
                snap.field("tag")?.flag_bitmap()?;
                Ok(())
            });
            match outcome {
                Err(e) => assert!(
                    matches!(e.class(), crate::ErrorClass::Corruption),
                    "{} damaged: expected corruption, got {e}",
                    file.display()
                ),
                Ok(()) => {
                    // Only bytes no checksum covers (alignment padding) may go unnoticed, and a
                    // write-ahead log cut short: a torn tail is truncated, never refused.
                    let wal = file.extension().is_some_and(|e| e == "log");
                    assert!(bad.len() == good.len() || wal, "{}", file.display());
                }
            }
        }
        std::fs::write(&file, &good).unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    db.table("users")
        .unwrap()
        .snapshot()
        .check_integrity()
        .unwrap();
}

/// Each user's count of event `path` on `day` in `shard`, by id.
#[cfg(feature = "import")]
fn event_counts(
    snap: &crate::TableSnapshot,
    path: &str,
    shard: u32,
    day: i32,
) -> BTreeMap<u32, u32> {
    crate::testutil::event_counts(&snap.field(path).unwrap(), shard, day)
}

/// Runs of an event staged with `Load::event_ids`: runs of increasing ids into an empty day
/// are built while staging, other runs staged as pairs, and more runs and single events for
/// a day already built merged with it. Every user's count on every day, in every shard, reads
/// back as the sum the model keeps.
#[cfg(feature = "import")]
#[test]
fn event_runs_read_back_like_the_model() {
    const DAY: i32 = 20_000;
    let (_dir, db) = fixture(2);
    let t = db.table("users").unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(crate::testutil::proptest_config(24));
    let run = (
        0i32..3,
        proptest::collection::vec((interesting_id(), 0u32..600), 0..60),
        any::<bool>(),
    );
    let strategy = (
        proptest::collection::vec(run, 1..8),
        proptest::collection::vec((0i32..3, interesting_id(), 1u32..5), 0..10),
    );
    let case = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(runs, singles)| {
            let n = case.get();
            case.set(n + 1);
            // A field of its own per case: no days carried from an earlier case.
            let path = format!("visits_{n}");
            let mut load = t.load(&format!("v{n}")).unwrap();
            let f = load
                .field(FieldSpec::new(path.as_str(), FieldKind::Event))
                .unwrap();
            let mut model: BTreeMap<(i32, u32), u32> = BTreeMap::new();
            let mut buffer = Vec::new();
            for (day, mut pairs, increasing) in runs {
                if increasing {
                    pairs.sort_by_key(|p| p.0);
                    pairs.dedup_by_key(|p| p.0);
                }
                for &(id, c) in pairs.iter().filter(|p| p.1 > 0) {
                    *model.entry((DAY + day, id)).or_default() += c;
                }
                buffer.clear();
                buffer.extend_from_slice(&pairs);
                load.event_ids(f, DAY + day, &mut buffer).unwrap();
                prop_assert!(buffer.is_empty());
            }
            for (day, id, c) in singles {
                load.event_id(f, id, DAY + day, c).unwrap();
                *model.entry((DAY + day, id)).or_default() += c;
            }
            load.commit().unwrap();
            let snap = t.snapshot();
            for day in DAY..DAY + 3 {
                for shard in 0..3 {
                    let want: BTreeMap<u32, u32> = model
                        .range((day, shard * SHARD)..(day, (shard + 1) * SHARD))
                        .map(|(&(_, id), &c)| (id, c))
                        .collect();
                    prop_assert_eq!(event_counts(&snap, &path, shard, day), want);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A run built while staging names users the load added, and a real-time write adds a user
/// before the load commits, so the load's new users get other ids: the run's counts follow
/// their users' keys.
#[cfg(feature = "import")]
#[test]
fn event_runs_built_while_staging_follow_renumbered_users() {
    const DAY: i32 = 20_000;
    let (_dir, db, [a, b, live]) = renumbering_fixture();
    let t = db.table("users").unwrap();
    let mut load = t.load("events").unwrap();
    let f = load
        .field(FieldSpec::new("visits", FieldKind::Event))
        .unwrap();
    let ia = load.user(KeyRef::U64(a)).unwrap();
    let ib = load.user(KeyRef::U64(b)).unwrap();
    assert_eq!((ia, ib), (USERS, USERS + 1));
    let mut run = vec![(5, 2), (ia, 3), (ib, 1)];
    load.event_ids(f, DAY, &mut run).unwrap();
    // Meanwhile a real-time write adds a user: it takes the load's first new id.
    t.write(&[crate::realtime::Write::set(live, "vip", Value::Flag)])
        .unwrap();
    load.commit().unwrap();

    let snap = t.snapshot();
    let id = |k: u64| snap.id_of(KeyRef::U64(k)).unwrap().unwrap();
    assert_eq!(id(live), USERS);
    assert_ne!(id(a), ia, "the load's users were renumbered");
    let want: BTreeMap<u32, u32> = [(id(a), 3), (id(b), 1)].into_iter().collect();
    assert_eq!(event_counts(&snap, "visits", 2, DAY), want);
    let want: BTreeMap<u32, u32> = [(5, 2)].into_iter().collect();
    assert_eq!(event_counts(&snap, "visits", 0, DAY), want);
}

/// A run whose counts are all zero still makes the load hold its day: the day the previous
/// version stored is replaced (by nobody), as a run with events would replace it.
#[cfg(feature = "import")]
#[test]
fn an_event_run_of_zero_counts_replaces_its_day() {
    const DAY: i32 = 20_000;
    let (_dir, db) = fixture(2);
    let t = db.table("users").unwrap();
    let mut first = t.load("v1").unwrap();
    let f = first
        .field(FieldSpec::new("visits", FieldKind::Event))
        .unwrap();
    first.event_ids(f, DAY, &mut vec![(3, 2), (9, 1)]).unwrap();
    first.event_ids(f, DAY + 1, &mut vec![(4, 1)]).unwrap();
    first.commit().unwrap();
    let want: BTreeMap<u32, u32> = [(3, 2), (9, 1)].into_iter().collect();
    assert_eq!(event_counts(&t.snapshot(), "visits", 0, DAY), want);

    let mut second = t.load("v2").unwrap();
    let f = second
        .field(FieldSpec::new("visits", FieldKind::Event))
        .unwrap();
    second.event_ids(f, DAY, &mut vec![(3, 0), (5, 0)]).unwrap();
    second.commit().unwrap();
    let snap = t.snapshot();
    assert_eq!(event_counts(&snap, "visits", 0, DAY), BTreeMap::new());
    // The day the load did not hold is kept.
    let want: BTreeMap<u32, u32> = [(4, 1)].into_iter().collect();
    assert_eq!(event_counts(&snap, "visits", 0, DAY + 1), want);
}

/// The ids of one staged batch of the two tests below: `len` consecutive ids from `start`, or
/// as many scattered over the users, those past the last user left out.
fn batch_ids(start: u32, len: u32, scattered: bool) -> impl Iterator<Item = u32> {
    (0..len)
        .map(move |i| {
            if scattered {
                (start + i * 7919) % USERS
            } else {
                start + i
            }
        })
        .filter(|&id| id < USERS)
}

/// Int values staged in any mix of runs of consecutive ids (kept as values alone) and
/// scattered ids, one at a time or in batches, read back as each user's last value, from the
/// column and from the bit-sliced index alike.
#[test]
fn int_values_staged_in_runs_and_pairs_read_back_like_the_model() {
    // Per batch: first id, length, scattered or consecutive, one call per value or one call.
    let batches = proptest::collection::vec(
        (interesting_id(), 0u32..300, any::<bool>(), any::<bool>()),
        1..6,
    );
    proptest!(crate::testutil::proptest_config(16), |(batches in batches)| {
        let (_dir, db) = fixture(2);
        let t = db.table("users").unwrap();
        let mut load = t.load("scores").unwrap();
        let f = load.field(FieldSpec::new("score", FieldKind::Int)).unwrap();
        let mut model: BTreeMap<u32, i64> = BTreeMap::new();
        let mut value = -40i64;
        for &(start, len, scattered, single) in &batches {
            let pairs: Vec<(u32, i64)> = batch_ids(start, len, scattered)
                .map(|id| {
                    value += 3;
                    (id, value % 50)
                })
                .collect();
            if single {
                for &(id, v) in &pairs {
                    load.value_id(f, id, Value::Int(v)).unwrap();
                }
            } else {
                load.value_units(f, &pairs).unwrap();
            }
            model.extend(pairs);
        }
        load.commit().unwrap();
        let snap = t.snapshot();
        let score = snap.field("score").unwrap();
        let probes = model.keys().copied().chain([0, 1, SHARD - 1, SHARD, USERS - 1]);
        for id in probes {
            prop_assert_eq!(score.value_of(id).unwrap(), model.get(&id).map(|&v| Value::Int(v)), "user {}", id);
        }
        for c in [-10, 0, 7, 49] {
            let want = ids(model.iter().filter(|e| *e.1 >= c).map(|e| *e.0));
            prop_assert_eq!(score.compare(CmpOp::Ge, c).unwrap().to_vec(), want);
        }
    });
}

/// Enum and set values staged in any mix of runs of consecutive ids (codes kept alone) and
/// scattered ids, batched or one at a time, read back as the model's: an enum's last value, a
/// set's every value, from the columns and the value bitmaps alike.
#[test]
fn codes_staged_in_runs_and_pairs_read_back_like_the_model() {
    const NAMES: [&str; 4] = ["d", "b", "a", "c"];
    // Per batch: set or enum, first id, length, scattered or consecutive, one call per value.
    let batches = proptest::collection::vec(
        (
            any::<bool>(),
            interesting_id(),
            0u32..300,
            any::<bool>(),
            any::<bool>(),
        ),
        1..6,
    );
    proptest!(crate::testutil::proptest_config(16), |(batches in batches)| {
        let (_dir, db) = fixture(2);
        let t = db.table("users").unwrap();
        let mut load = t.load("codes").unwrap();
        let tier = load.field(FieldSpec::new("tier", FieldKind::Enum)).unwrap();
        let tags = load.field(FieldSpec::new("tags", FieldKind::Set)).unwrap();
        let mut tier_model: BTreeMap<u32, &str> = BTreeMap::new();
        let mut tags_model: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        let mut n = 0usize;
        for &(set, start, len, scattered, single) in &batches {
            let pairs: Vec<(u32, u32)> = batch_ids(start, len, scattered)
                .map(|id| {
                    n += 1;
                    (id, (n % NAMES.len()) as u32)
                })
                .collect();
            let field = if set { tags } else { tier };
            if single {
                for &(id, c) in &pairs {
                    load.value_id(field, id, Value::Str(NAMES[c as usize].to_owned())).unwrap();
                }
            } else {
                load.value_codes(field, &NAMES, &pairs).unwrap();
            }
            for (id, c) in pairs {
                if set {
                    tags_model.entry(id).or_default().insert(NAMES[c as usize]);
                } else {
                    tier_model.insert(id, NAMES[c as usize]);
                }
            }
        }
        load.commit().unwrap();
        let snap = t.snapshot();
        let (tier, tags) = (snap.field("tier").unwrap(), snap.field("tags").unwrap());
        let probes: BTreeSet<u32> = tier_model
            .keys()
            .chain(tags_model.keys())
            .copied()
            .chain([0, 1, SHARD - 1, SHARD, USERS - 1])
            .collect();
        for &id in &probes {
            let want = tier_model.get(&id).map(|v| Value::Str(v.to_string()));
            prop_assert_eq!(tier.value_of(id).unwrap(), want, "tier of {}", id);
            let want = tags_model
                .get(&id)
                .map(|v| Value::Strs(v.iter().map(|s| s.to_string()).collect()));
            prop_assert_eq!(tags.value_of(id).unwrap(), want, "tags of {}", id);
        }
        for name in NAMES {
            let want = ids(tier_model.iter().filter(|e| *e.1 == name).map(|e| *e.0));
            prop_assert_eq!(tier.value_bitmap(name).unwrap().to_vec(), want);
            let want = ids(tags_model.iter().filter(|e| e.1.contains(name)).map(|e| *e.0));
            prop_assert_eq!(tags.value_bitmap(name).unwrap().to_vec(), want);
        }
    });
}

/// A run of int values of the load's new users keeps its values with their keys when a
/// real-time write adds a user before the commit and the load's users are renumbered.
#[test]
fn int_runs_follow_renumbered_users() {
    let (_dir, db, [a, b, live]) = renumbering_fixture();
    let t = db.table("users").unwrap();
    let mut load = t.load("scores").unwrap();
    let f = load.field(FieldSpec::new("score", FieldKind::Int)).unwrap();
    let ia = load.user(KeyRef::U64(a)).unwrap();
    let ib = load.user(KeyRef::U64(b)).unwrap();
    load.value_units(f, &[(USERS - 1, 5), (ia, 7), (ib, 9)])
        .unwrap();
    t.write(&[crate::realtime::Write::set(live, "vip", Value::Flag)])
        .unwrap();
    load.commit().unwrap();

    let snap = t.snapshot();
    let id = |k: u64| snap.id_of(KeyRef::U64(k)).unwrap().unwrap();
    assert_ne!(id(a), ia, "the load's users were renumbered");
    let score = snap.field("score").unwrap();
    assert_eq!(score.value_of(USERS - 1).unwrap(), Some(Value::Int(5)));
    assert_eq!(score.value_of(id(a)).unwrap(), Some(Value::Int(7)));
    assert_eq!(score.value_of(id(b)).unwrap(), Some(Value::Int(9)));
    assert_eq!(score.value_of(id(live)).unwrap(), None);
}
