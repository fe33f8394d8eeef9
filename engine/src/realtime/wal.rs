//! The write-ahead log of a table's real-time writes.
//!
//! ```text
//! <table>/wal-<n:016x>.log   n grows by one each time a compaction starts (the log rotates)
//!
//! file    := header record*
//! header  := magic "PRTWAL\0\0" (8) | format version u32 | reserved u32
//! record  := body length u32 | XXH3-64 of body u64 | body
//! body    := batch sequence u64 | write count u32 | write*
//! write   := key | field path (u32 length + UTF-8) | cell
//! key     := 0u8 + string (u32 length + UTF-8) | 1u8 + u64
//! cell    := 0u8 (clear) | 1u8 (flag) | 2u8 + string (enum value)
//!          | 3u8 + u32 count + string* (set values) | 4u8 + i64 (numeric, stored units)
//!          | 5u8 + i32 day + u32 total (an event's count for the user that day)
//!          | 6u8 + i32 day + u32 count (an event append not yet totalled; not written)
//! ```
//! All integers are little-endian. One record is one acknowledged batch: a batch is
//! acknowledged only after its record is written and (by default) `fdatasync`ed, and several
//! batches arriving together share one sync (group commit).
//!
//! Replaying a log is idempotent: every write sets a field of a user to an absolute value, so a
//! record applied on top of a segment that already contains it changes nothing. That is why
//! compaction needs no log sequence in the manifest: it rotates the log, merges the frozen
//! writes into segments, and only then deletes the older files.
//!
//! A crash can tear the last record of the newest file (its write or sync never finished, so it
//! was never acknowledged). Replay truncates such a tail — a record cut short or failing its
//! checksum — with a warning. Damage anywhere else, and a record whose checksum holds but whose
//! content does not decode, is corruption and refuses to open: it would mean losing
//! acknowledged writes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::Cell;
use crate::codec::{DecodeError, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::ids::{Key, KeyKind};
use crate::storage::{checksum, fs};

const MAGIC: &[u8; 8] = b"PRTWAL\0\0";
const WAL_FORMAT: u32 = 1;
const HEADER_LEN: usize = 16;
const RECORD_HEADER: usize = 12;
/// Largest record accepted on replay (a batch is limited well below this when written).
const MAX_RECORD: usize = 1 << 30;

/// One write as logged: the key, the field path and the normalized value (`None`: clear).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoggedWrite {
    pub(crate) key: Key,
    pub(crate) path: String,
    pub(crate) cell: Option<Cell>,
}

/// The name of log file `n`.
pub(crate) fn file_name(n: u64) -> String {
    format!("wal-{n:016x}.log")
}

/// The numbers of the log files in `dir`, ascending.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| u64::from_str_radix(n, 16).ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Encodes one batch as a record (header included).
pub(crate) fn encode(seq: u64, writes: &[LoggedWrite]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u64(seq);
    e.u32(writes.len() as u32);
    for w in writes {
        match &w.key {
            Key::Str(s) => {
                e.u8(0);
                e.str(s);
            }
            Key::U64(k) => {
                e.u8(1);
                e.u64(*k);
            }
        }
        e.str(&w.path);
        match &w.cell {
            None => e.u8(0),
            Some(Cell::Flag) => e.u8(1),
            Some(Cell::Str(s)) => {
                e.u8(2);
                e.str(s);
            }
            Some(Cell::Strs(list)) => {
                e.u8(3);
                e.u32(list.len() as u32);
                for s in list {
                    e.str(s);
                }
            }
            Some(Cell::Units(v)) => {
                e.u8(4);
                e.i64(*v);
            }
            Some(Cell::EventDay { day, total }) => {
                e.u8(5);
                e.i32(*day);
                e.u32(*total);
            }
            Some(Cell::EventAdd { day, count }) => {
                e.u8(6);
                e.i32(*day);
                e.u32(*count);
            }
        }
    }
    let body = e.buf;
    let mut out = Vec::with_capacity(RECORD_HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn decode_body(
    body: &[u8],
    kind: KeyKind,
) -> std::result::Result<(u64, Vec<LoggedWrite>), DecodeError> {
    let mut d = Decoder::new(body);
    let seq = d.u64()?;
    let n = d.count(6)?;
    let mut writes = Vec::with_capacity(n);
    for _ in 0..n {
        let key = match d.u8()? {
            0 => Key::Str(d.str()?),
            1 => Key::U64(d.u64()?),
            t => return Err(DecodeError(format!("unknown key tag {t}"))),
        };
        let matches = matches!(
            (&key, kind),
            (Key::Str(_), KeyKind::Str) | (Key::U64(_), KeyKind::U64)
        );
        if !matches {
            return Err(DecodeError("key of the wrong kind for the table".into()));
        }
        let path = d.str()?;
        let cell = match d.u8()? {
            0 => None,
            1 => Some(Cell::Flag),
            2 => Some(Cell::Str(d.str()?)),
            3 => {
                let m = d.count(4)?;
                let mut list = Vec::with_capacity(m);
                for _ in 0..m {
                    list.push(d.str()?);
                }
                Some(Cell::Strs(list))
            }
            4 => Some(Cell::Units(d.i64()?)),
            5 => Some(Cell::EventDay {
                day: d.i32()?,
                total: d.u32()?,
            }),
            6 => Some(Cell::EventAdd {
                day: d.i32()?,
                count: d.u32()?,
            }),
            t => return Err(DecodeError(format!("unknown value tag {t}"))),
        };
        writes.push(LoggedWrite { key, path, cell });
    }
    if d.remaining() != 0 {
        return Err(DecodeError("trailing bytes after the writes".into()));
    }
    Ok((seq, writes))
}

/// A batch read back from a log.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub(crate) seq: u64,
    pub(crate) writes: Vec<LoggedWrite>,
}

/// Reads every record of log file `n` in `dir`. `last` says whether it is the newest file,
/// whose torn tail is truncated (with a warning) rather than reported as corruption.
pub(crate) fn read(dir: &Path, n: u64, kind: KeyKind, last: bool) -> Result<Vec<Replayed>> {
    let path = dir.join(file_name(n));
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if bytes.len() < HEADER_LEN {
        if last {
            // Created but its header never reached the disk: nothing was acknowledged in it.
            truncate(&path, 0, bytes.len())?;
            write_header(&path)?;
            return Ok(Vec::new());
        }
        return Err(Error::corrupt(
            &path,
            "write-ahead log shorter than its header",
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::corrupt(&path, "wrong magic number"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != WAL_FORMAT {
        return Err(Error::UnsupportedFormatVersion {
            path: path.clone(),
            found: version,
            oldest: WAL_FORMAT,
            current: WAL_FORMAT,
        });
    }
    let mut out = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let problem = match record_at(&bytes, pos) {
            // A whole record (its checksum holds) that does not decode was written wrong, not
            // torn: refuse rather than drop what may have been acknowledged.
            Ok((body, next)) => match decode_body(body, kind) {
                Ok((seq, writes)) => {
                    out.push(Replayed { seq, writes });
                    pos = next;
                    continue;
                }
                Err(e) => {
                    return Err(Error::corrupt(
                        &path,
                        format!("record at byte {pos} does not decode: {}", e.0),
                    ));
                }
            },
            Err(e) => e,
        };
        if !last {
            return Err(Error::corrupt(
                &path,
                format!("record at byte {pos}: {problem}"),
            ));
        }
        tracing::warn!(
            file = %path.display(),
            offset = pos,
            dropped_bytes = bytes.len() - pos,
            reason = %problem,
            "truncating a torn write-ahead log tail (never acknowledged)"
        );
        truncate(&path, pos, bytes.len())?;
        break;
    }
    Ok(out)
}

fn record_at(bytes: &[u8], pos: usize) -> std::result::Result<(&[u8], usize), String> {
    let head = bytes
        .get(pos..pos + RECORD_HEADER)
        .ok_or_else(|| "record header cut short".to_owned())?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let sum = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
    if len > MAX_RECORD {
        return Err(format!("record length {len} is implausible"));
    }
    let start = pos + RECORD_HEADER;
    let body = bytes
        .get(start..start + len)
        .ok_or_else(|| "record body cut short".to_owned())?;
    if checksum(body) != sum {
        return Err("record checksum mismatch".into());
    }
    Ok((body, start + len))
}

fn truncate(path: &Path, at: usize, _len: usize) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(at as u64).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn write_header(path: &Path) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(&header()).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&WAL_FORMAT.to_le_bytes());
    h
}

/// The open, newest log file, appended to by the committing writer.
#[derive(Debug)]
pub(crate) struct WalWriter {
    dir: PathBuf,
    n: u64,
    file: File,
    /// Whether each commit is synced to disk before it is acknowledged.
    sync: bool,
    /// Bytes of the file that hold whole, accepted records.
    len: u64,
    /// Set when a failed append could not be undone: the file's tail is unknown, so every
    /// later append is refused until the table is reopened (and the log replayed).
    poisoned: bool,
}

impl WalWriter {
    /// Opens log file `n` for appending, creating it (with its header) if needed.
    pub(crate) fn open(dir: &Path, n: u64, sync: bool) -> Result<Self> {
        let path = dir.join(file_name(n));
        let exists = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if !exists {
            file.write_all(&header()).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            fs::sync_dir(dir)?;
        }
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            n,
            file,
            sync,
            len,
            poisoned: false,
        })
    }

    /// The number of the file being appended to.
    pub(crate) fn number(&self) -> u64 {
        self.n
    }

    /// Bytes of the file being appended to.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends encoded records and makes them durable (unless syncing is off). On failure the
    /// file is cut back to its previous end, so that a later append never follows a torn
    /// record; if even that fails, or the sync itself failed (the kernel may have dropped the
    /// pages), the log refuses further appends.
    pub(crate) fn append(&mut self, records: &[u8]) -> Result<()> {
        let path = self.dir.join(file_name(self.n));
        if self.poisoned {
            return Err(Error::io(
                &path,
                std::io::Error::other(
                    "an earlier write-ahead log failure left the log unusable; reopen the database",
                ),
            ));
        }
        if let Err(e) = self.file.write_all(records) {
            let undone = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            self.poisoned = undone.is_err();
            return Err(Error::io(&path, e));
        }
        if self.sync
            && let Err(e) = self.file.sync_data()
        {
            self.poisoned = true;
            return Err(Error::io(&path, e));
        }
        self.len += records.len() as u64;
        Ok(())
    }

    /// Starts the next file; the current one is complete from now on.
    pub(crate) fn rotate(&mut self) -> Result<u64> {
        if self.poisoned {
            // The file's tail is unknown: it must stay the newest, whose tail replay truncates.
            return Err(Error::io(
                self.dir.join(file_name(self.n)),
                std::io::Error::other("the write-ahead log failed earlier; reopen the database"),
            ));
        }
        let next = Self::open(&self.dir, self.n + 1, self.sync)?;
        *self = next;
        Ok(self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(i: u64) -> Vec<LoggedWrite> {
        vec![
            LoggedWrite {
                key: Key::Str(format!("user-{i}")),
                path: "vip".into(),
                cell: Some(Cell::Flag),
            },
            LoggedWrite {
                key: Key::Str(format!("user-{i}")),
                path: "tags".into(),
                cell: Some(Cell::Strs(vec!["a".into(), "é".into()])),
            },
            LoggedWrite {
                key: Key::Str("x".into()),
                path: "age".into(),
                cell: i.is_multiple_of(2).then_some(Cell::Units(-(i as i64))),
            },
        ]
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_truncated_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 0, true).unwrap();
        for i in 0..3 {
            w.append(&encode(i, &batch(i))).unwrap();
        }
        drop(w);
        let path = dir.path().join(file_name(0));
        let full = std::fs::read(&path).unwrap();
        let read_all = || read(dir.path(), 0, KeyKind::Str, true).unwrap();
        let got = read_all();
        assert_eq!(got.len(), 3);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.seq, i as u64);
            assert_eq!(r.writes, batch(i as u64));
        }
        let record_ends: Vec<usize> = {
            let mut ends = vec![HEADER_LEN];
            let mut pos = HEADER_LEN;
            while pos < full.len() {
                pos = record_at(&full, pos).unwrap().1;
                ends.push(pos);
            }
            ends
        };
        // Cut the file at every byte of the last two records: whole records survive, the torn
        // one goes, and the file is left ending at the last whole record.
        for cut in record_ends[1]..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let whole = record_ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(read_all().len(), whole, "cut at {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                record_ends[whole],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn damage_in_an_older_file_is_corruption_not_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::open(dir.path(), 7, true).unwrap();
        w.append(&encode(1, &batch(1))).unwrap();
        drop(w);
        let path = dir.path().join(file_name(7));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = read(dir.path(), 7, KeyKind::Str, false).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
        assert_eq!(list(dir.path()).unwrap(), vec![7]);
        // A key of the wrong kind is corruption too, not a silent skip.
        let mut w = WalWriter::open(dir.path(), 8, true).unwrap();
        w.append(&encode(2, &batch(2))).unwrap();
        drop(w);
        assert!(read(dir.path(), 8, KeyKind::U64, false).is_err());
    }
}
