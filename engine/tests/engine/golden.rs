//! Golden databases: one small database written by each format version is committed under
//! `engine/tests/golden/v<N>/`, and every build must open and read all of them.
//!
//! To write the golden database of the current format version (only when `FORMAT_VERSION`
//! changes): `PORTRAIT_WRITE_GOLDEN=1 cargo test -p portrait-engine --test engine golden`.

use std::path::{Path, PathBuf};

use portrait_engine::storage::FORMAT_VERSION;
use portrait_engine::{Database, FieldKind, FieldSpec, KeyKind, KeyRef, Value};

const USERS: u32 = 120;

fn golden_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/v{version}"))
}

/// The content of the golden database, as a function of the user number.
fn has_flag(i: u32) -> bool {
    i.is_multiple_of(3)
}
fn city(i: u32) -> Option<&'static str> {
    ["beijing", "shanghai", "shenzhen"]
        .get((i % 4) as usize)
        .copied()
}
fn interests(i: u32) -> Vec<String> {
    ["music", "sports"]
        .iter()
        .enumerate()
        .filter(|(b, _)| i & (1 << b) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}
fn age(i: u32) -> Option<i64> {
    (!i.is_multiple_of(5)).then_some(14 + (i as i64 * 7) % 60)
}
fn spend(i: u32) -> i64 {
    i as i64 * 1234 - 5000
}
fn registered(i: u32) -> i64 {
    1_700_000_000_000 + i as i64 * 86_400_000
}

/// Events (format version 2 on): user `i` logged in on one day, `login_count(i)` times.
fn login_day(i: u32) -> i32 {
    portrait_engine::behaviour::day_of_date(2026, 11, 20) + (i % 5) as i32
}
fn login_count(i: u32) -> u32 {
    i % 3 + 1
}

fn write(dir: &Path) {
    let db = Database::open(dir).unwrap();
    let t = db.create_table("users", KeyKind::Str).unwrap();
    // Version 1 of `risk/blacklist` is superseded by version 2 below.
    let mut load = t.load("2026-11-24").unwrap();
    let f = load
        .field(FieldSpec::new("risk/blacklist", FieldKind::Flag))
        .unwrap();
    load.flag(f, "u0").unwrap();
    load.commit().unwrap();

    let mut load = t.load("2026-11-25").unwrap();
    let flag = load
        .field(
            FieldSpec::new("risk/blacklist", FieldKind::Flag)
                .description("fraud team list")
                .owner("risk"),
        )
        .unwrap();
    let c = load
        .field(FieldSpec::new("geo/city", FieldKind::Enum))
        .unwrap();
    let s = load
        .field(FieldSpec::new("interest", FieldKind::Set))
        .unwrap();
    let a = load
        .field(FieldSpec::new("demographic/age", FieldKind::Int))
        .unwrap();
    let d = load
        .field(FieldSpec::new(
            "commerce/spend",
            FieldKind::Decimal { scale: 2 },
        ))
        .unwrap();
    let r = load
        .field(FieldSpec::new("account/registered", FieldKind::Timestamp))
        .unwrap();
    for i in 0..USERS {
        let key = format!("u{i}");
        let key = key.as_str();
        load.user(key).unwrap();
        if has_flag(i) {
            load.flag(flag, key).unwrap();
        }
        if let Some(v) = city(i) {
            load.value(c, key, Value::Str(v.into())).unwrap();
        }
        if !interests(i).is_empty() {
            load.value(s, key, Value::Strs(interests(i))).unwrap();
        }
        if let Some(v) = age(i) {
            load.value(a, key, Value::Int(v)).unwrap();
        }
        load.value(
            d,
            key,
            Value::Decimal {
                units: spend(i),
                scale: 2,
            },
        )
        .unwrap();
        load.value(r, key, Value::Timestamp(registered(i))).unwrap();
    }
    load.commit().unwrap();

    t.set_time_options(8 * 60, 30).unwrap();
    let mut load = t.load("2026-11-25").unwrap();
    let login = load
        .field(FieldSpec::new("login", FieldKind::Event))
        .unwrap();
    for i in 0..USERS {
        load.event(
            login,
            format!("u{i}").as_str(),
            login_day(i),
            login_count(i),
        )
        .unwrap();
    }
    load.commit().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn golden_databases_of_every_format_version_open() {
    let current = golden_dir(FORMAT_VERSION);
    if std::env::var_os("PORTRAIT_WRITE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&current);
        write(&current);
        std::fs::remove_file(current.join("LOCK")).unwrap();
    }
    for version in portrait_engine::storage::OLDEST_SUPPORTED_FORMAT_VERSION..=FORMAT_VERSION {
        let src = golden_dir(version);
        assert!(
            src.exists(),
            "golden database v{version} is missing at {}",
            src.display()
        );
        // Opening may tidy files; work on a copy so the committed bytes never change.
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&src, tmp.path());
        let db = Database::open(tmp.path()).unwrap();
        let snap = db.table("users").unwrap().snapshot();
        snap.check_integrity().unwrap();
        assert_eq!(snap.users(), USERS);
        let flag = snap.field("risk/blacklist").unwrap();
        assert_eq!(flag.meta().spec.owner, "risk");
        assert_eq!(
            flag.flag_bitmap().unwrap().cardinality(),
            (0..USERS).filter(|&i| has_flag(i)).count() as u64
        );
        assert_eq!(snap.versions("risk/blacklist").unwrap().len(), 2);
        assert_eq!(
            snap.field_as_of("risk/blacklist", "2026-11-24")
                .unwrap()
                .flag_bitmap()
                .unwrap()
                .to_vec(),
            vec![0]
        );
        for i in 0..USERS {
            let key = format!("u{i}");
            let id = snap.id_of(KeyRef::Str(&key)).unwrap().unwrap();
            let portrait = snap.portrait(KeyRef::Str(&key)).unwrap();
            let get = |p: &str| {
                portrait
                    .iter()
                    .find(|(k, _)| k == p)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(get("risk/blacklist"), has_flag(i).then_some(Value::Flag));
            assert_eq!(get("geo/city"), city(i).map(|c| Value::Str(c.into())));
            let set = interests(i);
            assert_eq!(
                get("interest"),
                (!set.is_empty()).then_some(Value::Strs(set))
            );
            assert_eq!(get("demographic/age"), age(i).map(Value::Int));
            assert_eq!(
                get("commerce/spend"),
                Some(Value::Decimal {
                    units: spend(i),
                    scale: 2
                })
            );
            assert_eq!(
                get("account/registered"),
                Some(Value::Timestamp(registered(i)))
            );
            assert_eq!(
                snap.key_of(id).unwrap(),
                Some(portrait_engine::Key::Str(key))
            );
        }
        let adults = snap
            .crowd_text("demographic/age >= 18 AND geo/city IN ('beijing', 'shenzhen')")
            .unwrap();
        let want = (0..USERS)
            .filter(|&i| {
                age(i).is_some_and(|a| a >= 18) && matches!(city(i), Some("beijing" | "shenzhen"))
            })
            .count() as u64;
        assert_eq!(adults.count().unwrap(), want, "format v{version}");
        if version >= 2 {
            assert_eq!(snap.utc_offset_minutes(), 8 * 60);
            assert_eq!(snap.event_horizon_days(), 30);
            let twice = snap
                .crowd_text("did(login, DATE '2026-11-20' TO DATE '2026-11-22') >= 2 times")
                .unwrap();
            let want = (0..USERS)
                .filter(|&i| login_day(i) <= login_day(2) && login_count(i) >= 2)
                .count() as u64;
            assert_eq!(twice.count().unwrap(), want);
        }
    }
}
