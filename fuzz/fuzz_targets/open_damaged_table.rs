//! A table whose files were damaged in arbitrary ways opens with a typed error or reads
//! correctly; it never panics and never reads out of bounds (views are built only over
//! checksummed bytes).
//!
//! The input picks one file of the committed golden database and replaces a byte range of it.
//! `cargo fuzz run open_damaged_table` (from `fuzz/`).
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use portrait_engine::Database;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/golden/v1")
}

fn copy_dir(from: &Path, to: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files.extend(copy_dir(&e.path(), &dst));
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            files.push(dst);
        }
    }
    files.sort();
    files
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = copy_dir(&golden(), dir.path());
    let file = &files[data[0] as usize % files.len()];
    let mut bytes = std::fs::read(file).unwrap();
    let at = u16::from_le_bytes([data[1], data[2]]) as usize % (bytes.len() + 1);
    let truncate = data[3] & 1 == 1;
    let patch = &data[4..];
    if truncate {
        bytes.truncate(at);
    }
    for (i, b) in patch.iter().enumerate() {
        if let Some(x) = bytes.get_mut(at + i) {
            *x = *b;
        }
    }
    std::fs::write(file, &bytes).unwrap();
    let Ok(db) = Database::open(dir.path()) else { return };
    let Ok(table) = db.table("users") else { return };
    let snap = table.snapshot();
    let _ = snap.check_integrity();
    if let Ok(crowd) = snap.crowd_text("risk/blacklist OR demographic/age >= 30") {
        let _ = crowd.count();
        let _ = crowd.members(None, 10);
    }
    let _ = snap.portrait("u7");
});
