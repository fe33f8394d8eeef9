//! A table whose write-ahead log was damaged, or holds a well-checksummed record with arbitrary
//! content, opens with a typed error or reads consistently; replay never panics.
//!
//! The first input byte picks the mode: damage a byte range of the log (as a crash or a bad
//! disk would), or append the rest of the input as the body of a record with a valid length
//! and checksum (as a writer with a bug would), which exercises every decoding and applying
//! path. `cargo fuzz run replay_log` (from `fuzz/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portrait_engine::{Change, Database, FieldKind, FieldSpec, KeyKind, Value, Write};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let t = db.create_table("users", KeyKind::Str).unwrap();
        let mut load = t.load("v1").unwrap();
        let vip = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
        load.field(FieldSpec::new("city", FieldKind::Enum)).unwrap();
        load.field(FieldSpec::new("n", FieldKind::Int)).unwrap();
        load.field(FieldSpec::new("visits", FieldKind::Event)).unwrap();
        load.flag(vip, "a").unwrap();
        load.commit().unwrap();
        t.write(&[
            Write::set("a", "city", Value::Str("bj".into())),
            Write::set("b", "n", Value::Int(-7)),
            Write::clear("a", "vip"),
            Write {
                key: "c".into(),
                path: "visits".into(),
                change: Change::Event {
                    at_ms: 1_764_000_000_000,
                    count: 2,
                },
            },
        ])
        .unwrap();
    }
    let log = dir
        .path()
        .join("tables/users")
        .join(format!("wal-{:016x}.log", 0));
    let mut bytes = std::fs::read(&log).unwrap();
    if mode & 1 == 0 {
        if rest.len() < 3 {
            return;
        }
        let at = u16::from_le_bytes([rest[0], rest[1]]) as usize % (bytes.len() + 1);
        if rest[2] & 1 == 1 {
            bytes.truncate(at);
        }
        for (i, b) in rest[3..].iter().enumerate() {
            if let Some(x) = bytes.get_mut(at + i) {
                *x = *b;
            }
        }
    } else {
        bytes.extend_from_slice(&(rest.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(rest).to_le_bytes());
        bytes.extend_from_slice(rest);
    }
    std::fs::write(&log, &bytes).unwrap();
    let Ok(db) = Database::open(dir.path()) else {
        return;
    };
    let Ok(table) = db.table("users") else { return };
    let snap = table.snapshot();
    for text in ["vip", "city = 'bj'", "n < 0", "did(visits, ever) >= 2 times"] {
        if let Ok(crowd) = snap.crowd_text(text) {
            let _ = crowd.count();
        }
    }
    let _ = snap.portrait("a");
    let _ = table.compact();
});
