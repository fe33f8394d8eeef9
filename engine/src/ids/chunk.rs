//! Id-dictionary chunk files: the keys of one contiguous id range, as appended by one load.
//!
//! # Layout (format version 1)
//! An envelope (see `storage::fs`) with magic `b"PRTIDS01"` whose body is zstd-compressed:
//! ```text
//! 0   1  key kind (1 = string, 2 = u64)
//! 1   4  first id (u32 LE)
//! 5   4  key count n (u32 LE)
//! u64 keys:    n × u64 LE
//! string keys: n × u32 LE byte lengths, then the concatenated UTF-8 bytes
//! ```

use std::path::{Path, PathBuf};

use super::{IdDictionary, KeyKind, KeyRef};
use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::storage::fs;

const MAGIC: &[u8; 8] = b"PRTIDS01";
/// Upper bound of a decompressed chunk body (a corrupt length field must not allocate wildly).
const MAX_BODY: usize = 64 << 30;

/// File name of the chunk written with file id `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("ids-{id:016x}.ids")
}

/// Writes the keys of `dict` as one chunk file at `path`, fsynced.
pub(crate) fn write(path: &Path, dict: &IdDictionary) -> Result<u64> {
    // Sized exactly: grown by doubling, a table's keys were copied and faulted in anew at
    // every step (hundreds of megabytes at 10M keys).
    let lengths = match dict.kind() {
        KeyKind::U64 => 0,
        KeyKind::Str => 4 * dict.len() as usize,
    };
    let mut e = Encoder::with_capacity(9 + lengths + dict.key_bytes());
    e.u8(dict.kind().to_u8());
    e.u32(dict.first());
    e.u32(dict.len());
    let ids = dict.first()..dict.end();
    match dict.kind() {
        KeyKind::U64 => {
            for id in ids {
                if let Some(KeyRef::U64(k)) = dict.key(id) {
                    e.u64(k);
                }
            }
        }
        KeyKind::Str => {
            for id in ids.clone() {
                if let Some(KeyRef::Str(s)) = dict.key(id) {
                    e.u32(s.len() as u32);
                }
            }
            for id in ids {
                if let Some(KeyRef::Str(s)) = dict.key(id) {
                    e.bytes(s.as_bytes());
                }
            }
        }
    }
    let file = fs::seal(MAGIC, &e.buf, true);
    fs::write_synced(path, &file)?;
    Ok(file.len() as u64)
}

/// Reads a chunk file and appends its keys to `dict`, checking that its id range and key kind
/// continue `dict` exactly.
pub(crate) fn read_into(
    path: &Path,
    expect_first: u32,
    expect_count: u32,
    dict: &mut IdDictionary,
) -> Result<()> {
    let bytes = fs::read(path)?;
    let body = fs::unseal(path, MAGIC, &bytes, MAX_BODY)?;
    let bad = |reason: String| Error::corrupt(PathBuf::from(path), reason);
    let mut d = Decoder::new(&body);
    let kind = d
        .u8()
        .ok()
        .and_then(KeyKind::from_u8)
        .ok_or_else(|| bad("unknown key kind".into()))?;
    let first = d.u32().map_err(|e| bad(e.0))?;
    let count = d.u32().map_err(|e| bad(e.0))?;
    if kind != dict.kind() || first != expect_first || count != expect_count || first != dict.end()
    {
        return Err(bad(format!(
            "chunk holds {count} {} keys from id {first}; the manifest expects {expect_count} from {expect_first}",
            kind.name()
        )));
    }
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    match kind {
        KeyKind::U64 => {
            for _ in 0..count {
                let k = d.u64().map_err(|e| bad(e.0))?;
                batch.push(KeyRef::U64(k));
                if batch.len() == LOAD_BATCH {
                    extend_new(dict, &mut batch, &bad)?;
                }
            }
        }
        KeyKind::Str => {
            let lens = d.take(count as usize * 4).map_err(|e| bad(e.0))?;
            for len in lens.chunks_exact(4) {
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let raw = d.take(len).map_err(|e| bad(e.0))?;
                let s = std::str::from_utf8(raw).map_err(|_| bad("key is not UTF-8".into()))?;
                batch.push(KeyRef::Str(s));
                if batch.len() == LOAD_BATCH {
                    extend_new(dict, &mut batch, &bad)?;
                }
            }
        }
    }
    extend_new(dict, &mut batch, &bad)?;
    if d.remaining() != 0 {
        return Err(bad(format!("{} trailing bytes", d.remaining())));
    }
    Ok(())
}

/// Keys appended to the dictionary at a time.
const LOAD_BATCH: usize = 4096;

/// Appends the keys of `batch` (emptying it), refusing a key the dictionary already holds.
fn extend_new(
    dict: &mut IdDictionary,
    batch: &mut Vec<KeyRef<'_>>,
    bad: &impl Fn(String) -> Error,
) -> Result<()> {
    if let Err(j) = dict.extend_new(batch)? {
        return Err(bad(format!("key `{}` appears twice", batch[j])));
    }
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut base = IdDictionary::new(KeyKind::Str, 0);
        base.push(KeyRef::Str("first")).unwrap();
        let mut add = IdDictionary::new(KeyKind::Str, 1);
        for k in ["b", "", "ünïcode", "d"] {
            add.push(KeyRef::Str(k)).unwrap();
        }
        let p = dir.path().join(file_name(3));
        write(&p, &add).unwrap();

        let mut loaded = base.clone();
        read_into(&p, 1, 4, &mut loaded).unwrap();
        assert_eq!(loaded.get(KeyRef::Str("ünïcode")), Some(3));
        assert_eq!(loaded.key(2), Some(KeyRef::Str("")));

        let mut wrong = base.clone();
        assert!(read_into(&p, 1, 5, &mut wrong).is_err(), "count mismatch");
        let mut empty = IdDictionary::new(KeyKind::Str, 0);
        assert!(read_into(&p, 1, 4, &mut empty).is_err(), "gap in ids");

        let mut again = IdDictionary::new(KeyKind::Str, 0);
        again.push(KeyRef::Str("d")).unwrap();
        assert!(
            matches!(
                read_into(&p, 1, 4, &mut again),
                Err(Error::Corruption { .. })
            ),
            "a key the dictionary holds already"
        );
        assert_eq!(again.len(), 1);

        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let mut again = base.clone();
        assert!(matches!(
            read_into(&p, 1, 4, &mut again),
            Err(Error::Corruption { .. })
        ));
    }
}
