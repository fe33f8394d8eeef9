//! Immutable segment files: the data of one load for one shard.
//!
//! A segment holds *blobs* — serialized roaring bitmaps and fixed-width little-endian columns —
//! addressed by `(field id, role, key)`. A segment is written once, fsynced, and then only ever
//! memory-mapped. Opening one reads and checks its header, footer and index (metadata only);
//! each blob's checksum is verified on its first use, before any view is built over it.
//!
//! # Layout (format version 1, all integers little-endian)
//! ```text
//! header (32 bytes)
//!   0   8  magic b"PRTSEG01"
//!   8   4  format version (u32)
//!   12  4  shard number (u32)
//!   16  8  segment id (u64), also in the file name
//!   24  8  reserved, zero
//! blobs: each starts at a 32-byte aligned offset, zero padding between them
//! index: `entry count` entries of 48 bytes, sorted by (field id, role, key), no duplicates
//!   0   4  field id (u32)
//!   4   2  role (u16, see `Role`)
//!   6   2  reserved, zero
//!   8   4  key (u32): value code, bit number, or 0 (field id 0xFFFFFFFF: the forward index)
//!   12  4  reserved, zero
//!   16  8  aux (i64): BSI base value; first id of a column
//!   24  8  blob offset (u64)
//!   32  8  blob length (u64)
//!   40  8  XXH3-64 of the blob bytes
//! footer (48 bytes, at the end of the file)
//!   0   8  index offset (u64)
//!   8   8  entry count (u64)
//!   16  8  XXH3-64 of the index bytes
//!   24  8  XXH3-64 of the 32 header bytes
//!   32  4  format version (u32)
//!   36  4  reserved, zero
//!   40  8  magic b"PRTSEGFT"
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use croaring::Bitmap;
use xxhash_rust::xxh3::Xxh3;

use super::mapped::MappedBlobs;
use super::{FORMAT_VERSION, OLDEST_SUPPORTED_FORMAT_VERSION, checksum};
use crate::codec::{read_u32, read_u64};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"PRTSEG01";
const FOOTER_MAGIC: &[u8; 8] = b"PRTSEGFT";
const HEADER_LEN: usize = 32;
const FOOTER_LEN: usize = 48;
const ENTRY_LEN: usize = 48;
const ALIGN: usize = 32;

/// What a blob holds for its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub(crate) enum Role {
    /// Bitmap of a flag's members; key 0.
    Flag = 1,
    /// Bitmap of the users holding value code `key` (enum, set).
    Value = 2,
    /// `u32` value code per user of the shard, `NULL_CODE` when absent; aux = first id.
    Codes = 3,
    /// `u32` offsets, one per user plus one, into `SetCodes`; aux = first id.
    SetOffsets = 4,
    /// Concatenated `u32` value codes of every user's set, in user order.
    SetCodes = 5,
    /// BSI existence bitmap; key = bit depth, aux = base value subtracted before slicing.
    BsiExists = 6,
    /// BSI slice for bit `key`.
    BsiSlice = 7,
    /// `i64` value per user of the shard (0 where absent; see the existence bitmap); aux = first id.
    Ints = 8,
    /// Forward index of flags, per user: `u32` offsets, one per user plus one, into
    /// `ForwardFlags`; aux = first id. Stored under field id [`FORWARD_FIELD`].
    ForwardOffsets = 9,
    /// Concatenated `u16` positions into `ForwardFields` of every user's flags, in user order.
    ForwardFlags = 10,
    /// `u32` field ids of the flags of this segment, ascending.
    ForwardFields = 11,
    /// Bitmap of the users who did an event on day `key` (days since 1970-01-01).
    EventDay = 12,
    /// Slice `key & 31` of the BSI of `count - 1` of day `key >> 5`, over that day's users
    /// (absent slices are empty; a user who did the event once that day is in none).
    EventCount = 13,
    /// `u8` value code per user of the shard, [`NULL_CODE8`] when absent; aux = first id.
    /// Written instead of `Codes` (format version 3 on) when every code is below 255: scans
    /// over many users read a quarter of the bytes.
    Codes8 = 14,
}

/// The pseudo field id under which a segment stores its forward index (sorts last).
pub(crate) const FORWARD_FIELD: u32 = u32::MAX;

impl Role {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Role::Flag,
            2 => Role::Value,
            3 => Role::Codes,
            4 => Role::SetOffsets,
            5 => Role::SetCodes,
            6 => Role::BsiExists,
            7 => Role::BsiSlice,
            8 => Role::Ints,
            9 => Role::ForwardOffsets,
            10 => Role::ForwardFlags,
            11 => Role::ForwardFields,
            12 => Role::EventDay,
            13 => Role::EventCount,
            14 => Role::Codes8,
            _ => return None,
        })
    }
}

/// The code stored in a `Codes` column for a user without a value.
pub(crate) const NULL_CODE: u32 = u32::MAX;
/// The code stored in a `Codes8` column for a user without a value.
pub(crate) const NULL_CODE8: u8 = u8::MAX;

/// The address of a blob inside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BlobKey {
    pub field: u32,
    pub role: Role,
    pub key: u32,
}

/// Writes a segment file. Blobs must be added in strictly increasing [`BlobKey`] order.
pub(crate) struct SegmentWriter {
    out: BufWriter<File>,
    path: PathBuf,
    pos: u64,
    index: Vec<u8>,
    last: Option<BlobKey>,
    header_sum: u64,
    /// The `fdatasync` started by [`SegmentWriter::start_sync`], if running.
    syncing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl SegmentWriter {
    pub(crate) fn create(path: &Path, segment_id: u64, shard: u32) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            pos: 0,
            index: Vec::new(),
            last: None,
            header_sum: 0,
            syncing: None,
        };
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&shard.to_le_bytes());
        header[16..24].copy_from_slice(&segment_id.to_le_bytes());
        w.header_sum = checksum(&header);
        w.write(&header)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Checks that `key` comes after the last blob's and pads to the next blob's offset,
    /// which it returns.
    fn start_blob(&mut self, key: BlobKey) -> Result<u64> {
        if self.last.is_some_and(|last| last >= key) {
            return Err(Error::Internal(format!(
                "segment blobs out of order: {key:?} after {:?}",
                self.last
            )));
        }
        self.last = Some(key);
        let pad = (ALIGN - (self.pos as usize % ALIGN)) % ALIGN;
        self.write(&[0u8; ALIGN][..pad])?;
        Ok(self.pos)
    }

    /// Records the index entry of a blob written at `offset`.
    fn end_blob(&mut self, key: BlobKey, aux: i64, offset: u64, len: u64, sum: u64) {
        let e = &mut self.index;
        e.extend_from_slice(&key.field.to_le_bytes());
        e.extend_from_slice(&(key.role as u16).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&key.key.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&aux.to_le_bytes());
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(&sum.to_le_bytes());
    }

    /// Adds a raw blob.
    pub(crate) fn add_bytes(&mut self, key: BlobKey, aux: i64, bytes: &[u8]) -> Result<()> {
        let offset = self.start_blob(key)?;
        self.write(bytes)?;
        self.end_blob(key, aux, offset, bytes.len() as u64, checksum(bytes));
        Ok(())
    }

    /// Adds a blob whose bytes `fill` writes in pieces to the sink it is given (a large column
    /// encoded through a small buffer, say, rather than built whole first). Returns its length.
    pub(crate) fn add_streamed(
        &mut self,
        key: BlobKey,
        aux: i64,
        fill: impl FnOnce(&mut BlobSink<'_>) -> Result<()>,
    ) -> Result<u64> {
        let offset = self.start_blob(key)?;
        let mut sink = BlobSink {
            w: self,
            hasher: Xxh3::new(),
            len: 0,
        };
        fill(&mut sink)?;
        let (len, sum) = (sink.len, sink.hasher.digest());
        self.end_blob(key, aux, offset, len, sum);
        Ok(len)
    }

    /// Adds a bitmap in CRoaring's portable serialization (loads serialize their bitmaps
    /// themselves, in parallel, and add the bytes).
    #[cfg(test)]
    pub(crate) fn add_bitmap(&mut self, key: BlobKey, aux: i64, bitmap: &Bitmap) -> Result<()> {
        self.add_bytes(key, aux, &bitmap.serialize::<croaring::Portable>())
    }

    /// Starts writing what was added so far to the disk, on a thread of its own, while more
    /// is added: [`SegmentWriter::finish`]'s fsync then has less left to wait for. Does
    /// nothing if a sync is already running or no thread can be had.
    pub(crate) fn start_sync(&mut self) -> Result<()> {
        if self.syncing.is_some() {
            return Ok(());
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        let file = self
            .out
            .get_ref()
            .try_clone()
            .map_err(|e| Error::io(&self.path, e))?;
        self.syncing = std::thread::Builder::new()
            .name("portrait-sync".into())
            .spawn(move || file.sync_data())
            .ok();
        Ok(())
    }

    /// Writes the index and footer and fsyncs the file. Returns its size in bytes.
    pub(crate) fn finish(mut self) -> Result<u64> {
        let pad = (ALIGN - (self.pos as usize % ALIGN)) % ALIGN;
        self.write(&[0u8; ALIGN][..pad])?;
        let index_offset = self.pos;
        let index = std::mem::take(&mut self.index);
        self.write(&index)?;
        let count = (index.len() / ENTRY_LEN) as u64;
        let header_sum = self.header_sum;
        let mut footer = [0u8; FOOTER_LEN];
        footer[0..8].copy_from_slice(&index_offset.to_le_bytes());
        footer[8..16].copy_from_slice(&count.to_le_bytes());
        footer[16..24].copy_from_slice(&checksum(&index).to_le_bytes());
        footer[24..32].copy_from_slice(&header_sum.to_le_bytes());
        footer[32..36].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        footer[40..48].copy_from_slice(FOOTER_MAGIC);
        self.write(&footer)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        if let Some(syncing) = self.syncing.take() {
            syncing
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync thread panicked")))
                .map_err(|e| Error::io(&self.path, e))?;
        }
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        if self.pos >= HUGE_PAGE_WORTHY {
            super::mapped::drop_cached_pages(&file);
        }
        Ok(self.pos)
    }
}

/// Segments at least this large leave the page cache once written (see
/// [`super::mapped::drop_cached_pages`]).
const HUGE_PAGE_WORTHY: u64 = 32 << 20;

/// Where [`SegmentWriter::add_streamed`] writes a blob's pieces.
pub(crate) struct BlobSink<'w> {
    w: &'w mut SegmentWriter,
    hasher: Xxh3,
    len: u64,
}

impl BlobSink<'_> {
    /// Appends `bytes` to the blob.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        self.w.write(bytes)
    }
}

/// The file name of segment `id` for `shard`.
pub(crate) fn file_name(id: u64, shard: u32) -> String {
    format!("seg-{id:016x}-{shard}.seg")
}

/// A blob's index entry, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub key: BlobKey,
    pub aux: i64,
    range: (usize, usize),
    sum: u64,
}

impl Entry {
    fn range(&self) -> Range<usize> {
        self.range.0..self.range.1
    }

    /// Length of the blob in bytes.
    pub(crate) fn len(&self) -> usize {
        self.range.1 - self.range.0
    }
}

/// An open, validated segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    blobs: MappedBlobs,
    entries: Vec<Entry>,
    shard: u32,
    id: u64,
}

impl Segment {
    /// Opens and validates a segment: header, footer, index checksum, entry order and bounds.
    /// Blob contents are verified lazily, on first access.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let blobs = MappedBlobs::open(path)?;
        let b = blobs.bytes();
        let corrupt = |reason: String| Error::corrupt(path, reason);
        if b.len() < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(format!("file too short ({} bytes)", b.len())));
        }
        let footer = &b[b.len() - FOOTER_LEN..];
        if &b[..8] != MAGIC || &footer[40..48] != FOOTER_MAGIC {
            return Err(corrupt("wrong magic number".into()));
        }
        let version = read_u32(footer, 32).unwrap_or(0);
        let header_version = read_u32(b, 8).unwrap_or(0);
        for v in [version, header_version] {
            if !(OLDEST_SUPPORTED_FORMAT_VERSION..=FORMAT_VERSION).contains(&v) {
                return Err(Error::UnsupportedFormatVersion {
                    path: path.to_path_buf(),
                    found: v,
                    oldest: OLDEST_SUPPORTED_FORMAT_VERSION,
                    current: FORMAT_VERSION,
                });
            }
        }
        if checksum(&b[..HEADER_LEN]) != read_u64(footer, 24).unwrap_or(0) {
            return Err(corrupt("header checksum mismatch".into()));
        }
        let shard = read_u32(b, 12).unwrap_or(0);
        let id = read_u64(b, 16).unwrap_or(0);
        let index_offset = read_u64(footer, 0).unwrap_or(u64::MAX);
        let count = read_u64(footer, 8).unwrap_or(u64::MAX);
        let index_end = (b.len() - FOOTER_LEN) as u64;
        let index_len = count.checked_mul(ENTRY_LEN as u64);
        if index_len.is_none_or(|l| index_offset.checked_add(l) != Some(index_end))
            || index_offset < HEADER_LEN as u64
        {
            return Err(corrupt(format!(
                "index at {index_offset} with {count} entries does not fit the file"
            )));
        }
        let index = &b[index_offset as usize..index_end as usize];
        if checksum(index) != read_u64(footer, 16).unwrap_or(0) {
            return Err(corrupt("index checksum mismatch".into()));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for raw in index.chunks_exact(ENTRY_LEN) {
            let field = read_u32(raw, 0).unwrap_or(0);
            let role_raw = u16::from_le_bytes([raw[4], raw[5]]);
            let role = Role::from_u16(role_raw)
                .ok_or_else(|| corrupt(format!("unknown blob role {role_raw}")))?;
            let key = BlobKey {
                field,
                role,
                key: read_u32(raw, 8).unwrap_or(0),
            };
            let aux = read_u64(raw, 16).unwrap_or(0) as i64;
            let offset = read_u64(raw, 24).unwrap_or(u64::MAX);
            let len = read_u64(raw, 32).unwrap_or(u64::MAX);
            let sum = read_u64(raw, 40).unwrap_or(0);
            let end = offset.checked_add(len);
            if offset < HEADER_LEN as u64 || end.is_none_or(|e| e > index_offset) {
                return Err(corrupt(format!("blob {key:?} out of bounds")));
            }
            if entries.last().is_some_and(|e: &Entry| e.key >= key) {
                return Err(corrupt(format!("index not sorted at {key:?}")));
            }
            entries.push(Entry {
                key,
                aux,
                range: (offset as usize, (offset + len) as usize),
                sum,
            });
        }
        Ok(Self {
            blobs: blobs.with_slots(entries.len()),
            entries,
            shard,
            id,
        })
    }

    pub(crate) fn shard(&self) -> u32 {
        self.shard
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn path(&self) -> &Path {
        self.blobs.path()
    }

    /// Position of the entry with exactly this key.
    pub(crate) fn find(&self, key: BlobKey) -> Option<usize> {
        self.entries.binary_search_by(|e| e.key.cmp(&key)).ok()
    }

    /// Positions of every entry of `field` with `role`, in key order.
    pub(crate) fn range_of(&self, field: u32, role: Role) -> Range<usize> {
        let lo = self
            .entries
            .partition_point(|e| (e.key.field, e.key.role) < (field, role));
        let hi = self
            .entries
            .partition_point(|e| (e.key.field, e.key.role) <= (field, role));
        lo..hi
    }

    pub(crate) fn entry(&self, slot: usize) -> &Entry {
        &self.entries[slot]
    }

    /// The bitmap stored at `slot`, as a zero-copy view verified on first access.
    pub(crate) fn bitmap(&self, slot: usize) -> Result<&Bitmap> {
        let e = &self.entries[slot];
        self.blobs.bitmap(slot, e.range(), e.sum)
    }

    /// The raw bytes stored at `slot`, verified on first access.
    pub(crate) fn bytes(&self, slot: usize) -> Result<&[u8]> {
        let e = &self.entries[slot];
        self.blobs.verified_bytes(slot, e.range(), e.sum)
    }

    /// Number of entries of the segment.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Reads every blob and checks it (checksums; bitmaps also structurally).
    pub(crate) fn check_integrity(&self) -> Result<()> {
        for slot in 0..self.entries.len() {
            match self.entries[slot].key.role {
                Role::Flag
                | Role::Value
                | Role::BsiExists
                | Role::BsiSlice
                | Role::EventDay
                | Role::EventCount => {
                    self.bitmap(slot)?;
                }
                Role::Codes
                | Role::Codes8
                | Role::SetOffsets
                | Role::SetCodes
                | Role::Ints
                | Role::ForwardOffsets
                | Role::ForwardFlags
                | Role::ForwardFields => {
                    self.bytes(slot)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(field: u32, role: Role, key: u32) -> BlobKey {
        BlobKey { field, role, key }
    }

    fn write_sample(dir: &Path) -> PathBuf {
        let path = dir.join(file_name(7, 2));
        let mut w = SegmentWriter::create(&path, 7, 2).unwrap();
        w.add_bitmap(key(1, Role::Flag, 0), 0, &Bitmap::of(&[3, 9, 2_100_000]))
            .unwrap();
        w.add_bytes(key(1, Role::Codes, 0), 2 << 20, &[1, 2, 3, 4])
            .unwrap();
        w.add_bitmap(key(2, Role::Value, 5), 0, &Bitmap::from_range(0..100_000))
            .unwrap();
        w.finish().unwrap();
        path
    }

    #[test]
    fn written_segments_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sample(dir.path());
        let s = Segment::open(&path).unwrap();
        assert_eq!((s.shard(), s.id(), s.len()), (2, 7, 3));
        let slot = s.find(key(1, Role::Flag, 0)).unwrap();
        assert_eq!(s.bitmap(slot).unwrap().to_vec(), vec![3, 9, 2_100_000]);
        let slot = s.find(key(1, Role::Codes, 0)).unwrap();
        assert_eq!(s.bytes(slot).unwrap(), &[1, 2, 3, 4]);
        assert_eq!(s.entry(slot).aux, 2 << 20);
        assert_eq!(s.range_of(2, Role::Value), 2..3);
        assert_eq!(s.bitmap(2).unwrap().cardinality(), 100_000);
        assert!(s.find(key(3, Role::Flag, 0)).is_none());
        s.check_integrity().unwrap();
    }

    /// A blob written in pieces is the blob written at once: same bytes, same checksum.
    #[test]
    fn streamed_blobs_read_back_like_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = dir.path().join("whole.seg");
        let pieces = dir.path().join("pieces.seg");
        let mut w = SegmentWriter::create(&whole, 1, 0).unwrap();
        w.add_bytes(key(1, Role::Flag, 0), 0, &body[..5]).unwrap();
        w.add_bytes(key(2, Role::Ints, 0), 9, &body).unwrap();
        w.finish().unwrap();
        let mut w = SegmentWriter::create(&pieces, 1, 0).unwrap();
        w.add_streamed(key(1, Role::Flag, 0), 0, |s| s.write(&body[..5]))
            .unwrap();
        let len = w
            .add_streamed(key(2, Role::Ints, 0), 9, |s| {
                for part in body.chunks(7_001) {
                    s.write(part)?;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(len, body.len() as u64);
        w.finish().unwrap();
        assert_eq!(
            std::fs::read(&whole).unwrap(),
            std::fs::read(&pieces).unwrap()
        );
        let seg = Segment::open(&pieces).unwrap();
        let slot = seg.find(key(2, Role::Ints, 0)).unwrap();
        assert_eq!(seg.bytes(slot).unwrap(), &body[..]);
    }

    #[test]
    fn out_of_order_blobs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(&dir.path().join(file_name(1, 0)), 1, 0).unwrap();
        w.add_bytes(key(2, Role::Flag, 0), 0, b"x").unwrap();
        assert!(w.add_bytes(key(1, Role::Flag, 0), 0, b"x").is_err());
    }

    #[test]
    fn every_flipped_byte_is_detected_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_sample(dir.path());
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let p = dir.path().join(file_name(8, 2));
            std::fs::write(&p, &bad).unwrap();
            let damaged = Segment::open(&p).and_then(|s| s.check_integrity());
            // Padding bytes are not covered by any checksum; everything else must be.
            let covered = !is_padding(&good, i);
            if covered {
                assert!(damaged.is_err(), "flip at byte {i} went unnoticed");
            }
        }
        for cut in [0, 10, 40, good.len() / 2, good.len() - 1] {
            let p = dir.path().join(file_name(9, 2));
            std::fs::write(&p, &good[..cut]).unwrap();
            assert!(Segment::open(&p).and_then(|s| s.check_integrity()).is_err());
        }
    }

    /// Bytes that are alignment padding or reserved zero fields in the sample file.
    fn is_padding(file: &[u8], i: usize) -> bool {
        let s = {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("x.seg"), file).unwrap();
            Segment::open(&dir.path().join("x.seg")).unwrap()
        };
        let index_offset = read_u64(&file[file.len() - FOOTER_LEN..], 0).unwrap() as usize;
        if i >= file.len() - FOOTER_LEN {
            let o = i - (file.len() - FOOTER_LEN);
            return (36..40).contains(&o);
        }
        if i >= index_offset {
            return false;
        }
        if i < HEADER_LEN {
            return false;
        }
        !s.entries.iter().any(|e| e.range().contains(&i))
    }
}
