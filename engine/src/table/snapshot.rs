//! A consistent, immutable view of a table, and the read primitives the query layer builds on.
//!
//! A [`TableSnapshot`] is what one published manifest describes: the user count, every field
//! with its versions, and the open segments those versions live in. Loads build a new snapshot
//! and swap it in; readers holding an old one keep reading it undisturbed.
//!
//! Primitives come in two shapes: per shard (`*_in(shard)`, borrowing zero-copy views, which is
//! what shard-parallel evaluation uses) and whole-table conveniences that combine the shards.

use std::collections::HashMap;
use std::sync::Arc;

use croaring::Bitmap;

use super::dict::LiveDict;
use crate::bitmap::bsi::BsiRef;
use crate::catalog::{FieldKind, FieldMeta, VersionInfo};
use crate::codec::{read_u32, read_u64};
use crate::error::{Error, Result};
use crate::expr::CmpOp;
use crate::ids::prefetch::prefetch_lines;
use crate::ids::{Key, KeyKind, KeyRef};
/// What errors name as the file of data that lives in the real-time delta.
const DELTA_PATH: &str = "(real-time delta)";

use crate::realtime::overlay::{MergedDay, Overlay, OverlayData, ShardOverlay};
use crate::storage::manifest::{Manifest, VersionRecord};
use crate::storage::segment::{BlobKey, FORWARD_FIELD, NULL_CODE, NULL_CODE8, Role, Segment};
use crate::{SHARD_BITS, shard_count};
use std::path::Path;

/// Field index by catalog id. A portrait looks one up per flag the user holds, so the hash is
/// one multiplication: ids are small numbers the catalog assigns, nothing an attacker picks.
type FieldIds = HashMap<u32, usize, std::hash::BuildHasherDefault<IdHasher>>;

/// The hasher of [`FieldIds`]: a Fibonacci multiplication of the id. Its low bits (the table's
/// bucket) are a bijection of the id's low bits, so consecutive ids never collide; its high
/// bits (the table's tag) mix every bit of the id.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A value of one field for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A flag the user has (flags the user lacks are absent, not `false`).
    Flag,
    /// An enum value.
    Str(String),
    /// The values of a set field.
    Strs(Vec<String>),
    /// An integer.
    Int(i64),
    /// A decimal: `units × 10^-scale`.
    Decimal {
        /// Integer count of `10^-scale`.
        units: i64,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

/// A stored column of value codes, one per user from id `first` on, as read from a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeColumn<'s> {
    /// The user id of the first row.
    pub(crate) first: i64,
    /// The rows, one byte each ([`NULL_CODE8`] for users without a value) when `narrow`,
    /// else a `u32` little-endian each ([`NULL_CODE`] for none).
    codes: &'s [u8],
    /// One byte a row (segment role `Codes8`), else four (`Codes`).
    narrow: bool,
    /// The segment file, for corruption errors.
    pub(crate) path: &'s Path,
}

impl CodeColumn<'_> {
    /// One byte a row (tests).
    #[cfg(test)]
    pub(crate) fn is_narrow(&self) -> bool {
        self.narrow
    }

    /// The code of user `id`: [`NULL_CODE`] when it has none or lies outside the column.
    #[inline(always)]
    pub(crate) fn code_of(&self, id: u32) -> u32 {
        let Ok(row) = usize::try_from(id as i64 - self.first) else {
            return NULL_CODE;
        };
        if self.narrow {
            match self.codes.get(row) {
                Some(&c) if c != NULL_CODE8 => u32::from(c),
                _ => NULL_CODE,
            }
        } else {
            let (rows, _) = self.codes.as_chunks::<4>();
            rows.get(row).map_or(NULL_CODE, |b| u32::from_le_bytes(*b))
        }
    }
}

/// A stored column of `i64` little-endian values, one per user from id `first` on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntColumn<'s> {
    /// The user id of the first row.
    pub(crate) first: i64,
    /// The rows, 8 bytes each.
    pub(crate) values: &'s [u8],
}

/// `[field][version][shard]`: the segment holding each shard of each version.
type FieldSegments = Vec<Vec<Vec<Option<Arc<Segment>>>>>;

/// An immutable, consistent view of one table.
#[derive(Debug)]
pub struct TableSnapshot {
    pub(crate) name: Arc<str>,
    pub(crate) manifest: Arc<Manifest>,
    /// `segments[f][v]`: the segment of each shard (by index) of version `v` of field `f`.
    segments: Arc<FieldSegments>,
    by_path: Arc<HashMap<String, usize>>,
    by_id: Arc<FieldIds>,
    /// `event_days[f][v]`: the days of version `v` of event field `f`, ascending (parsed once
    /// from the version's value dictionary; empty for other kinds).
    event_days: Arc<Vec<Vec<Vec<i32>>>>,
    /// Per shard: the distinct segments holding the current version of some flag.
    flag_segments: Arc<Vec<Vec<Arc<Segment>>>>,
    /// Fields that are not flags and have a current version.
    non_flags: Arc<Vec<usize>>,
    /// Each field's place in path order (by field index), so that a portrait is put in path
    /// order by comparing numbers rather than paths.
    path_rank: Arc<Vec<u32>>,
    /// The real-time changes not yet compacted, merged over the current versions.
    pub(crate) overlay: Arc<Overlay>,
    pub(crate) dict: Arc<LiveDict>,
    /// Results over all users that analyses reuse within this (immutable) snapshot.
    pub(crate) memo: crate::analysis::Memo,
}

impl TableSnapshot {
    pub(crate) fn build(
        name: Arc<str>,
        manifest: Manifest,
        open: &HashMap<(u32, u64), Arc<Segment>>,
        dict: Arc<LiveDict>,
    ) -> Result<Self> {
        let mut segments = Vec::with_capacity(manifest.fields.len());
        let mut by_path = HashMap::with_capacity(manifest.fields.len());
        for (i, f) in manifest.fields.iter().enumerate() {
            by_path.insert(f.meta.spec.path.clone(), i);
            let mut versions = Vec::with_capacity(f.versions.len());
            for v in &f.versions {
                let mut shards: Vec<Option<Arc<Segment>>> = Vec::new();
                for &(shard, file) in &v.segments {
                    let seg = open.get(&(shard, file)).ok_or_else(|| {
                        Error::Internal(format!(
                            "segment {file}/{shard} of `{}` not open",
                            f.meta.spec.path
                        ))
                    })?;
                    let s = shard as usize;
                    if shards.len() <= s {
                        shards.resize(s + 1, None);
                    }
                    shards[s] = Some(seg.clone());
                }
                versions.push(shards);
            }
            segments.push(versions);
        }
        let event_days = manifest
            .fields
            .iter()
            .map(|f| {
                f.versions
                    .iter()
                    .map(|v| match f.meta.spec.kind {
                        FieldKind::Event => v
                            .values
                            .iter()
                            .filter_map(|d| crate::behaviour::parse_day(d))
                            .collect(),
                        _ => Vec::new(),
                    })
                    .collect()
            })
            .collect();
        let mut by_id =
            FieldIds::with_capacity_and_hasher(manifest.fields.len(), Default::default());
        let mut flag_segments: Vec<Vec<Arc<Segment>>> = Vec::new();
        let mut non_flags = Vec::new();
        for (i, f) in manifest.fields.iter().enumerate() {
            by_id.insert(f.meta.id, i);
            let Some(current) = segments[i].last() else {
                continue;
            };
            if f.meta.spec.kind != FieldKind::Flag {
                non_flags.push(i);
                continue;
            }
            for (shard, seg) in current.iter().enumerate() {
                let Some(seg) = seg else { continue };
                if flag_segments.len() <= shard {
                    flag_segments.resize(shard + 1, Vec::new());
                }
                if !flag_segments[shard].iter().any(|s| Arc::ptr_eq(s, seg)) {
                    flag_segments[shard].push(seg.clone());
                }
            }
        }
        let mut by_path_order: Vec<usize> = (0..manifest.fields.len()).collect();
        by_path_order.sort_unstable_by(|&a, &b| {
            manifest.fields[a]
                .meta
                .spec
                .path
                .cmp(&manifest.fields[b].meta.spec.path)
        });
        let mut path_rank = vec![0u32; manifest.fields.len()];
        for (rank, &fi) in by_path_order.iter().enumerate() {
            path_rank[fi] = rank as u32;
        }
        Ok(Self {
            name,
            manifest: Arc::new(manifest),
            segments: Arc::new(segments),
            by_path: Arc::new(by_path),
            by_id: Arc::new(by_id),
            event_days: Arc::new(event_days),
            flag_segments: Arc::new(flag_segments),
            non_flags: Arc::new(non_flags),
            path_rank: Arc::new(path_rank),
            overlay: Default::default(),
            dict,
            memo: Default::default(),
        })
    }

    /// This snapshot's stored versions with another real-time overlay (cheap: the stored parts
    /// are shared).
    pub(crate) fn with_overlay(&self, overlay: Arc<Overlay>) -> Self {
        Self {
            name: self.name.clone(),
            manifest: self.manifest.clone(),
            segments: self.segments.clone(),
            by_path: self.by_path.clone(),
            by_id: self.by_id.clone(),
            event_days: self.event_days.clone(),
            flag_segments: self.flag_segments.clone(),
            non_flags: self.non_flags.clone(),
            path_rank: self.path_rank.clone(),
            overlay,
            dict: self.dict.clone(),
            memo: Default::default(),
        }
    }

    /// The current version of the field with catalog id `id`.
    pub(crate) fn field_by_id(&self, id: u32) -> Option<FieldRef<'_>> {
        let &i = self.by_id.get(&id)?;
        let n = self.manifest.fields[i].versions.len();
        (n > 0).then_some(FieldRef {
            snap: self,
            field: i,
            version: n - 1,
        })
    }

    /// Adds to `counts[slot]` the number of users of `crowd` (ids of `shard`) holding each flag
    /// for which `slot_of(field index)` gives a slot, reading the forward index: the cost grows
    /// with the crowd, not with the number of flags. Only current versions count. `members`
    /// are the ids of `crowd`, ascending.
    pub(crate) fn count_flags_forward(
        &self,
        shard: u32,
        crowd: &Bitmap,
        members: &[u32],
        slot_of: &dyn Fn(usize) -> Option<usize>,
        counts: &mut [u64],
    ) -> Result<()> {
        for seg in self.flag_segments.get(shard as usize).into_iter().flatten() {
            let Some((o, p, f)) = forward_blobs(seg) else {
                return Err(Error::corrupt(
                    seg.path(),
                    "segment with flags lacks its forward index",
                ));
            };
            // Position in this segment's flag list -> slot, for current versions only.
            let fields = seg.bytes(f)?;
            let slots: Vec<usize> = fields
                .chunks_exact(4)
                .map(|b| {
                    let fid = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if self.overlay.shard(fid, shard).is_some() {
                        // Counted from the merged bitmap below.
                        return usize::MAX;
                    }
                    self.by_id
                        .get(&fid)
                        .filter(|&&fi| {
                            self.current_segment(fi, shard)
                                .is_some_and(|s| Arc::ptr_eq(s, seg))
                        })
                        .and_then(|&fi| slot_of(fi))
                        .unwrap_or(usize::MAX)
                })
                .collect();
            if slots.iter().all(|&s| s == usize::MAX) {
                continue;
            }
            let (offsets, _) = seg.bytes(o)?.as_chunks::<4>();
            let (positions, _) = seg.bytes(p)?.as_chunks::<2>();
            let first = seg.entry(o).aux;
            let bad = || Error::corrupt(seg.path(), "forward index is malformed");
            // Members per position first (any u16 indexes it), slots after: the inner loop is
            // one load and one increment per entry. Members come in batches whose rows are
            // located first; each row is then counted while the rows `ROWS_AHEAD` members
            // further on are prefetched, so that memory serves many rows at once and the
            // counting never waits for the row it reads.
            const ROWS_AHEAD: usize = 16;
            let mut per_position = vec![0u32; 1 << 16];
            let mut spans = vec![(0usize, 0usize); 1024];
            for ids in members.chunks(1024) {
                let spans = &mut spans[..ids.len()];
                for (span, &id) in spans.iter_mut().zip(ids) {
                    *span = usize::try_from(id as i64 - first)
                        .ok()
                        .and_then(|row| Some((offsets.get(row)?, offsets.get(row + 1)?)))
                        .map_or((0, 0), |(lo, hi)| {
                            (
                                u32::from_le_bytes(*lo) as usize,
                                u32::from_le_bytes(*hi) as usize,
                            )
                        });
                }
                for &(lo, hi) in spans.iter().take(ROWS_AHEAD) {
                    prefetch_lines(positions, lo, hi);
                }
                for (i, &(lo, hi)) in spans.iter().enumerate() {
                    if let Some(&(lo, hi)) = spans.get(i + ROWS_AHEAD) {
                        prefetch_lines(positions, lo, hi);
                    }
                    for pos in positions.get(lo..hi).ok_or_else(bad)? {
                        per_position[u16::from_le_bytes(*pos) as usize] += 1;
                    }
                }
            }
            for (pos, &n) in per_position.iter().enumerate().filter(|e| *e.1 > 0) {
                let slot = *slots.get(pos).ok_or_else(bad)?;
                if slot != usize::MAX {
                    counts[slot] += u64::from(n);
                }
            }
        }
        for (fi, b) in self.overlaid_flags(shard) {
            if let Some(slot) = slot_of(fi) {
                counts[slot] += crowd.and_cardinality(b);
            }
        }
        Ok(())
    }

    /// Flags with a real-time overlay in `shard`: `(field index, merged members)`.
    fn overlaid_flags(&self, shard: u32) -> impl Iterator<Item = (usize, &Bitmap)> {
        self.overlay.fields.iter().filter_map(move |(fid, fo)| {
            let &fi = self.by_id.get(fid)?;
            if self.manifest.fields[fi].meta.spec.kind != FieldKind::Flag {
                return None;
            }
            match fo.shards.get(shard as usize)?.as_deref()? {
                ShardOverlay {
                    data: OverlayData::Flag(b),
                    ..
                } => Some((fi, &**b)),
                _ => None,
            }
        })
    }

    /// Average number of flags per user in the forward rows of `shard` (0 without flags).
    pub(crate) fn flags_per_user(&self, shard: u32) -> f64 {
        let mut total = 0.0;
        for seg in self.flag_segments.get(shard as usize).into_iter().flatten() {
            if let Some((o, p, _)) = forward_blobs(seg) {
                let rows = (seg.entry(o).len() / 4).saturating_sub(1).max(1);
                total += (seg.entry(p).len() / 2) as f64 / rows as f64;
            }
        }
        total
    }

    fn current_segment(&self, field: usize, shard: u32) -> Option<&Arc<Segment>> {
        self.segments[field].last()?.get(shard as usize)?.as_ref()
    }

    /// Every field value of user `id` (current versions), in path order. Flags come from each
    /// segment's forward index: one row read per segment, not one test per flag.
    pub fn portrait_of_id(&self, id: u32) -> Result<Vec<(String, Value)>> {
        let mut found: Vec<(usize, Value)> = Vec::new();
        if id >= self.users() {
            return Ok(Vec::new());
        }
        let shard = id >> SHARD_BITS;
        for seg in self.flag_segments.get(shard as usize).into_iter().flatten() {
            match forward_row(seg, id)? {
                Some((fields, positions)) => {
                    for pos in positions.chunks_exact(2) {
                        let pos = u16::from_le_bytes([pos[0], pos[1]]) as usize;
                        let fid = read_u32(fields, pos * 4).ok_or_else(|| {
                            Error::corrupt(seg.path(), "forward index points past its field list")
                        })?;
                        if let Some(&fi) = self.by_id.get(&fid)
                            && self
                                .current_segment(fi, shard)
                                .is_some_and(|s| Arc::ptr_eq(s, seg))
                            && self.overlay.shard(fid, shard).is_none()
                        {
                            found.push((fi, Value::Flag));
                        }
                    }
                }
                None => {
                    return Err(Error::corrupt(
                        seg.path(),
                        "segment with flags lacks its forward index",
                    ));
                }
            }
        }
        for (fi, b) in self.overlaid_flags(shard) {
            if b.contains(id) {
                found.push((fi, Value::Flag));
            }
        }
        for &fi in self.non_flags.iter() {
            let f = FieldRef {
                snap: self,
                field: fi,
                version: self.segments[fi].len() - 1,
            };
            if let Some(v) = f.value_of(id)? {
                found.push((fi, v));
            }
        }
        Ok(self.in_path_order(found))
    }

    /// A portrait's values (by field index) in path order, named by their paths.
    fn in_path_order(&self, mut found: Vec<(usize, Value)>) -> Vec<(String, Value)> {
        found.sort_unstable_by_key(|e| self.path_rank[e.0]);
        found
            .into_iter()
            .map(|(fi, v)| (self.manifest.fields[fi].meta.spec.path.clone(), v))
            .collect()
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.name
    }

    /// Number of known users; their ids are `0..users()`.
    pub fn users(&self) -> u32 {
        self.manifest.users.max(self.overlay.users)
    }

    /// When the table was created (ms since the Unix epoch).
    pub fn created_ms(&self) -> i64 {
        self.manifest.created_ms
    }

    /// The manifest generation this snapshot shows (grows with every published change).
    pub fn generation(&self) -> u64 {
        self.manifest.generation
    }

    /// Offset from UTC, in minutes, of the time zone in which the table counts event days.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.manifest.utc_offset_minutes
    }

    /// The default reference day of behaviour windows: the newest day any event field holds
    /// in its current version (`None` without event data).
    pub fn reference_day(&self) -> Option<i32> {
        let appended = self
            .overlay
            .fields
            .values()
            .filter_map(|f| f.event_days.last().copied());
        self.manifest
            .fields
            .iter()
            .filter(|f| f.meta.spec.kind == FieldKind::Event)
            .filter_map(|f| f.versions.last())
            .filter_map(|v| v.values.last())
            .filter_map(|d| crate::behaviour::parse_day(d))
            .chain(appended)
            .max()
    }

    /// Days of events kept per event, counting back from its newest day (0: all).
    pub fn event_horizon_days(&self) -> u32 {
        self.manifest.event_horizon_days
    }

    /// The type of the table's keys.
    pub fn key_kind(&self) -> KeyKind {
        self.manifest.key_kind
    }

    /// Number of shards spanned by the users.
    pub fn shards(&self) -> u32 {
        shard_count(self.users())
    }

    /// The ids of shard `shard` that exist in this snapshot.
    pub fn shard_range(&self, shard: u32) -> std::ops::Range<u32> {
        let lo = shard << SHARD_BITS;
        let hi = (lo as u64 + (1u64 << SHARD_BITS)).min(self.users() as u64) as u32;
        lo..hi.max(lo)
    }

    /// The existence bitmap: every known user.
    pub fn all(&self) -> Bitmap {
        Bitmap::from_range(0..self.users())
    }

    /// The existence bitmap of one shard.
    pub fn all_in(&self, shard: u32) -> Bitmap {
        Bitmap::from_range(self.shard_range(shard))
    }

    /// Every field's metadata, in creation order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldMeta> {
        self.manifest.fields.iter().map(|f| &f.meta)
    }

    /// The versions of a field, oldest first.
    pub fn versions(&self, path: &str) -> Result<Vec<VersionInfo>> {
        let i = self.index_of(path)?;
        Ok(self.manifest.fields[i]
            .versions
            .iter()
            .map(|v| v.info.clone())
            .collect())
    }

    fn index_of(&self, path: &str) -> Result<usize> {
        self.by_path
            .get(path)
            .copied()
            .ok_or_else(|| Error::FieldNotFound {
                path: path.to_owned(),
                suggestion: crate::expr::closest(path, self.by_path.keys().map(String::as_str))
                    .map(str::to_owned),
            })
    }

    /// The current version of field `path`.
    pub fn field(&self, path: &str) -> Result<FieldRef<'_>> {
        let i = self.index_of(path)?;
        let n = self.manifest.fields[i].versions.len();
        if n == 0 {
            return Err(Error::VersionNotFound {
                path: path.to_owned(),
                label: "(current)".into(),
            });
        }
        Ok(FieldRef {
            snap: self,
            field: i,
            version: n - 1,
        })
    }

    /// Field `path` as of `label`: its newest kept version whose label sorts at or before
    /// `label` (labels are compared as strings, so date labels `YYYY-MM-DD` compare by date).
    /// A field loaded on the 24th and not since is read at that version for `as of the 25th`.
    pub fn field_as_of(&self, path: &str, label: &str) -> Result<FieldRef<'_>> {
        self.field_at_index_as_of(self.index_of(path)?, label)
    }

    /// [`TableSnapshot::field_as_of`] for the field at `i` of the manifest.
    fn field_at_index_as_of(&self, i: usize, label: &str) -> Result<FieldRef<'_>> {
        let field = &self.manifest.fields[i];
        let version = field
            .versions
            .iter()
            .enumerate()
            .filter(|(_, v)| v.info.label.as_str() <= label)
            .max_by(|a, b| a.1.info.label.cmp(&b.1.info.label))
            .map(|(i, _)| i)
            .ok_or_else(|| Error::VersionNotFound {
                path: field.meta.spec.path.clone(),
                label: label.to_owned(),
            })?;
        Ok(FieldRef {
            snap: self,
            field: i,
            version,
        })
    }

    /// Field `path` at the current version, or as of `label` when given.
    pub fn field_at(&self, path: &str, as_of: Option<&str>) -> Result<FieldRef<'_>> {
        match as_of {
            Some(label) => self.field_as_of(path, label),
            None => self.field(path),
        }
    }

    /// Every field value of user `id` as of `label`, in path order: each field read at its
    /// version for that label; fields with no version that old are left out. When no field at
    /// all has one, the label predates everything the table keeps: [`Error::VersionNotFound`].
    pub fn portrait_of_id_as_of(&self, id: u32, label: &str) -> Result<Vec<(String, Value)>> {
        let mut found = Vec::new();
        let mut any_version = false;
        for fi in 0..self.manifest.fields.len() {
            let f = match self.field_at_index_as_of(fi, label) {
                Ok(f) => f,
                Err(Error::VersionNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            any_version = true;
            if let Some(v) = f.value_of(id)? {
                found.push((fi, v));
            }
        }
        if !any_version && !self.manifest.fields.is_empty() {
            return Err(Error::VersionNotFound {
                path: format!("(every field of `{}`)", self.name),
                label: label.to_owned(),
            });
        }
        Ok(self.in_path_order(found))
    }

    /// The id of an external key, if the user is known to this snapshot.
    pub fn id_of<'k>(&self, key: impl Into<KeyRef<'k>>) -> Result<Option<u32>> {
        let key = key.into();
        let dict = self.dict.get()?.read();
        Ok(dict.get(key).filter(|&id| id < self.users()))
    }

    /// Looks up many keys at once (one lock acquisition); `out[i]` is the id of `keys[i]`.
    pub fn ids_of<'k>(
        &self,
        keys: impl IntoIterator<Item = KeyRef<'k>>,
        out: &mut Vec<Option<u32>>,
    ) -> Result<()> {
        self.dict.get()?.read().get_many(keys, out);
        forget_from(out, self.users());
        Ok(())
    }

    /// A [`KeyFinder`] for the users of this snapshot: for looking up many keys, faster than
    /// [`TableSnapshot::ids_of`] when they come in the order of the users' ids (each tag's
    /// users of a file sorted by tag), and usable from any thread.
    pub fn key_finder(&self) -> KeyFinder {
        KeyFinder {
            dict: self.dict.clone(),
            known: self.users(),
            words: Arc::default(),
        }
    }

    /// The external key of a user id.
    pub fn key_of(&self, id: u32) -> Result<Option<Key>> {
        if id >= self.users() {
            return Ok(None);
        }
        let dict = self.dict.get()?.read();
        Ok(dict.key(id).map(KeyRef::to_owned))
    }

    /// Calls `f` with the key of every id of `ids` in order (one lock acquisition; the cache
    /// misses of consecutive keys overlap).
    pub fn for_each_key(
        &self,
        ids: impl IntoIterator<Item = u32>,
        mut f: impl FnMut(u32, KeyRef<'_>),
    ) -> Result<()> {
        let users = self.users();
        let ids: Vec<u32> = ids.into_iter().filter(|&id| id < users).collect();
        let dict = self.dict.get()?.read();
        dict.for_each_key_of(&ids, &mut f);
        Ok(())
    }

    /// Approximate heap bytes of the table's in-memory id dictionary (loading it if needed).
    pub fn dictionary_bytes(&self) -> Result<usize> {
        Ok(self.dict.get()?.read().heap_bytes())
    }

    /// Verifies every blob of every live segment (checksums and bitmap structure).
    pub fn check_integrity(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for seg in self.segments.iter().flatten().flatten().flatten() {
            if seen.insert(Arc::as_ptr(seg)) {
                seg.check_integrity()?;
            }
        }
        self.dict.get().map(|_| ())
    }
}

/// Slots of a segment's forward-index blobs: (offsets, flag positions, field ids).
fn forward_blobs(seg: &Segment) -> Option<(usize, usize, usize)> {
    let key = |role| BlobKey {
        field: FORWARD_FIELD,
        role,
        key: 0,
    };
    Some((
        seg.find(key(Role::ForwardOffsets))?,
        seg.find(key(Role::ForwardFlags))?,
        seg.find(key(Role::ForwardFields))?,
    ))
}

/// The forward-index row of `id` in `seg`: (the segment's flag field ids, the user's u16
/// positions into them). `None` when the segment has no forward index.
fn forward_row(seg: &Segment, id: u32) -> Result<Option<(&[u8], &[u8])>> {
    let Some((o, p, f)) = forward_blobs(seg) else {
        return Ok(None);
    };
    let offsets = seg.bytes(o)?;
    let row = id as i64 - seg.entry(o).aux;
    let rows = (offsets.len() / 4).saturating_sub(1) as i64;
    if row < 0 || row >= rows {
        return Ok(Some((&[], &[])));
    }
    let bad = || Error::corrupt(seg.path(), "forward index offsets are malformed");
    let lo = read_u32(offsets, row as usize * 4).ok_or_else(bad)? as usize;
    let hi = read_u32(offsets, row as usize * 4 + 4).ok_or_else(bad)? as usize;
    let positions = seg.bytes(p)?.get(lo * 2..hi * 2).ok_or_else(bad)?;
    Ok(Some((seg.bytes(f)?, positions)))
}

/// A stored event bitmap: the zero-copy view, and its verified bytes for the dense kernels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventBlob<'s> {
    pub(crate) bitmap: &'s Bitmap,
    pub(crate) bytes: &'s [u8],
    /// The segment file, for errors.
    pub(crate) path: &'s std::path::Path,
}

impl<'s> EventBlob<'s> {
    fn at(seg: &'s Segment, slot: usize) -> Result<Self> {
        Ok(Self {
            bitmap: seg.bitmap(slot)?,
            bytes: seg.bytes(slot)?,
            path: seg.path(),
        })
    }
}

/// One version of one field, resolved in a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct FieldRef<'s> {
    snap: &'s TableSnapshot,
    field: usize,
    version: usize,
}

impl<'s> FieldRef<'s> {
    fn record(&self) -> &'s VersionRecord {
        &self.snap.manifest.fields[self.field].versions[self.version]
    }

    /// Position of the field in the snapshot's catalog.
    pub(crate) fn index(&self) -> usize {
        self.field
    }

    /// The field's catalog entry.
    pub fn meta(&self) -> &'s FieldMeta {
        &self.snap.manifest.fields[self.field].meta
    }

    /// The field's kind.
    pub fn kind(&self) -> FieldKind {
        self.meta().spec.kind
    }

    /// The field's path.
    pub fn path(&self) -> &'s str {
        &self.meta().spec.path
    }

    /// This version's label, time and statistics.
    pub fn version(&self) -> &'s VersionInfo {
        &self.record().info
    }

    /// This version's value dictionary (enum and set fields): the stored values, sorted,
    /// followed by any value only real-time writes introduced (in order of arrival).
    pub fn values(&self) -> &'s [String] {
        match self.field_overlay() {
            Some(fo) if !fo.values.is_empty() => &fo.values,
            _ => &self.record().values,
        }
    }

    /// The code of `value` in this version, if any user has it.
    pub fn code_of(&self, value: &str) -> Option<u32> {
        let stored = &self.record().values;
        if let Ok(i) = stored.binary_search_by(|v| v.as_str().cmp(value)) {
            return Some(i as u32);
        }
        let all = self.values();
        all.get(stored.len()..)?
            .iter()
            .position(|v| v == value)
            .map(|i| (stored.len() + i) as u32)
    }

    /// Whether real-time changes not yet compacted apply to this version of the field.
    pub fn has_delta(&self) -> bool {
        self.field_overlay().is_some()
    }

    fn is_current(&self) -> bool {
        self.version + 1 == self.snap.manifest.fields[self.field].versions.len()
    }

    fn field_overlay(&self) -> Option<&'s crate::realtime::overlay::FieldOverlay> {
        if !self.is_current() {
            return None;
        }
        self.snap.overlay.fields.get(&self.meta().id).map(|f| &**f)
    }

    /// The real-time overlay of this field in `shard` (current version only).
    fn overlay(&self, shard: u32) -> Option<&'s ShardOverlay> {
        self.field_overlay()?.shards.get(shard as usize)?.as_deref()
    }

    fn segment(&self, shard: u32) -> Option<&'s Segment> {
        self.snap.segments[self.field][self.version]
            .get(shard as usize)
            .and_then(|s| s.as_deref())
    }

    fn expect(&self, ok: bool, expected: &'static str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(Error::KindMismatch {
                path: self.path().to_owned(),
                actual: self.kind().name(),
                expected,
            })
        }
    }

    fn blob(&self, shard: u32, role: Role, key: u32) -> Result<Option<&'s Bitmap>> {
        let Some(seg) = self.segment(shard) else {
            return Ok(None);
        };
        let key = BlobKey {
            field: self.meta().id,
            role,
            key,
        };
        match seg.find(key) {
            Some(slot) => seg.bitmap(slot).map(Some),
            None => Ok(None),
        }
    }

    /// Members of a flag in one shard (`None`: nobody in that shard).
    pub fn flag_in(&self, shard: u32) -> Result<Option<&'s Bitmap>> {
        self.expect(self.kind() == FieldKind::Flag, "a flag")?;
        if let Some(ShardOverlay {
            data: OverlayData::Flag(b),
            ..
        }) = self.overlay(shard)
        {
            return Ok(Some(b));
        }
        self.blob(shard, Role::Flag, 0)
    }

    /// Users holding value `code` in one shard (enum and set fields).
    pub fn value_in(&self, shard: u32, code: u32) -> Result<Option<&'s Bitmap>> {
        self.expect(self.kind().has_values(), "an enum or set field")?;
        if let Some(ShardOverlay {
            data: OverlayData::Values(map),
            ..
        }) = self.overlay(shard)
            && let Some(b) = map.get(&code)
        {
            return Ok(Some(b));
        }
        if code as usize >= self.record().values.len() {
            return Ok(None);
        }
        self.blob(shard, Role::Value, code)
    }

    /// The serialized (CRoaring portable) bytes of the stored bitmap of a flag (`code` `None`)
    /// or of value `code` in one shard, for kernels that read containers in place: `None` when
    /// real-time changes overlay the field in that shard (callers then use [`Self::flag_in`] or
    /// [`Self::value_in`]), `Some(None)` when nobody in the shard has it.
    pub(crate) fn stored_bytes_in(
        &self,
        shard: u32,
        code: Option<u32>,
    ) -> Result<Option<Option<&'s [u8]>>> {
        let (role, key) = match code {
            None => {
                self.expect(self.kind() == FieldKind::Flag, "a flag")?;
                (Role::Flag, 0)
            }
            Some(c) => {
                self.expect(self.kind().has_values(), "an enum or set field")?;
                if c as usize >= self.record().values.len() {
                    return Ok((self.overlay(shard).is_none()).then_some(None));
                }
                (Role::Value, c)
            }
        };
        if self.overlay(shard).is_some() {
            return Ok(None);
        }
        let Some(seg) = self.segment(shard) else {
            return Ok(Some(None));
        };
        let key = BlobKey {
            field: self.meta().id,
            role,
            key,
        };
        match seg.find(key) {
            Some(slot) => Ok(Some(Some(seg.bytes(slot)?))),
            None => Ok(Some(None)),
        }
    }

    /// The stored column of value codes of an enum field in one shard, for scans over many
    /// users. `None` when the shard has no such column or real-time changes overlay it: callers
    /// then read the value bitmaps, which see those changes.
    pub(crate) fn stored_codes_in(&self, shard: u32) -> Result<Option<CodeColumn<'s>>> {
        self.expect(self.kind() == FieldKind::Enum, "an enum field")?;
        if self.overlay(shard).is_some() {
            return Ok(None);
        }
        match self.segment(shard) {
            Some(seg) => self.codes_in_segment(seg),
            None => Ok(None),
        }
    }

    /// The code column of this enum field in `seg`, one byte a row (`Codes8`) or four
    /// (`Codes`, format versions before 3), if the segment has one.
    fn codes_in_segment(&self, seg: &'s Segment) -> Result<Option<CodeColumn<'s>>> {
        for (role, narrow) in [(Role::Codes8, true), (Role::Codes, false)] {
            let key = BlobKey {
                field: self.meta().id,
                role,
                key: 0,
            };
            if let Some(slot) = seg.find(key) {
                return Ok(Some(CodeColumn {
                    first: seg.entry(slot).aux,
                    codes: seg.bytes(slot)?,
                    narrow,
                    path: seg.path(),
                }));
            }
        }
        Ok(None)
    }

    /// The stored column of a numeric field in one shard, for reading a few users' values: `i64`
    /// little-endian per user from id `first` on (0 where the user has no value; see the BSI's
    /// existence bitmap). `None` when the shard has no such column or real-time changes overlay
    /// it.
    pub(crate) fn stored_ints_in(&self, shard: u32) -> Result<Option<IntColumn<'s>>> {
        self.expect(self.kind().is_numeric(), "a numeric field")?;
        Ok(self
            .stored_column_in(shard, Role::Ints)?
            .map(|(first, values, _)| IntColumn { first, values }))
    }

    /// A stored column (`role`) of one shard as (first row's id, bytes, segment file), unless
    /// the shard has none or real-time changes overlay it.
    fn stored_column_in(
        &self,
        shard: u32,
        role: Role,
    ) -> Result<Option<(i64, &'s [u8], &'s Path)>> {
        if self.overlay(shard).is_some() {
            return Ok(None);
        }
        let Some(seg) = self.segment(shard) else {
            return Ok(None);
        };
        let key = BlobKey {
            field: self.meta().id,
            role,
            key: 0,
        };
        let Some(slot) = seg.find(key) else {
            return Ok(None);
        };
        Ok(Some((seg.entry(slot).aux, seg.bytes(slot)?, seg.path())))
    }

    /// Users with any value of the field in one shard (flag: its members).
    pub fn exists_in(&self, shard: u32) -> Result<Bitmap> {
        match self.kind() {
            FieldKind::Flag => Ok(self.flag_in(shard)?.cloned().unwrap_or_default()),
            FieldKind::Event => self.event_exists_in(shard),
            k if k.is_numeric() => Ok(self
                .bsi_in(shard)?
                .map(|b| b.exists.clone())
                .unwrap_or_default()),
            _ => {
                let mut parts = Vec::new();
                for code in 0..self.values().len() as u32 {
                    if let Some(b) = self.value_in(shard, code)? {
                        parts.push(b);
                    }
                }
                Ok(Bitmap::fast_or(&parts))
            }
        }
    }

    /// Users of one shard who did the event on any day of this version.
    fn event_exists_in(&self, shard: u32) -> Result<Bitmap> {
        let mut parts = Vec::new();
        for &day in self.event_days() {
            if let Some(b) = self.event_day_in(shard, day)? {
                parts.push(b);
            }
        }
        Ok(Bitmap::fast_or(&parts))
    }

    /// The bit-sliced index of a numeric field in one shard.
    pub fn bsi_in(&self, shard: u32) -> Result<Option<BsiRef<'s>>> {
        self.expect(self.kind().is_numeric(), "a numeric field")?;
        if let Some(ShardOverlay {
            data: OverlayData::Bsi(p),
            changed,
        }) = self.overlay(shard)
        {
            let merged = p.merged(self.stored_bsi_in(shard)?, changed);
            return Ok((!merged.exists.is_empty()).then(|| merged.as_ref()));
        }
        self.stored_bsi_in(shard)
    }

    /// The bit-sliced index of the stored version in one shard.
    fn stored_bsi_in(&self, shard: u32) -> Result<Option<BsiRef<'s>>> {
        let Some(seg) = self.segment(shard) else {
            return Ok(None);
        };
        let id = self.meta().id;
        let Some(slot) = seg.find(BlobKey {
            field: id,
            role: Role::BsiExists,
            key: 0,
        }) else {
            return Ok(None);
        };
        let entry = seg.entry(slot);
        let exists = seg.bitmap(slot)?;
        let slices_range = seg.range_of(id, Role::BsiSlice);
        let mut slices = Vec::with_capacity(slices_range.len());
        let mut portable = Vec::with_capacity(slices_range.len() + 1);
        portable.push(seg.bytes(slot)?);
        for (bit, s) in slices_range.enumerate() {
            if seg.entry(s).key.key != bit as u32 {
                return Err(Error::corrupt(
                    seg.path(),
                    format!("BSI slices of `{}` have a gap", self.path()),
                ));
            }
            slices.push(seg.bitmap(s)?);
            portable.push(seg.bytes(s)?);
        }
        Ok(Some(BsiRef {
            exists,
            base: entry.aux,
            slices,
            portable: Some(portable),
        }))
    }

    /// The days (since 1970-01-01) this version of an event field holds, ascending.
    pub fn event_days(&self) -> &'s [i32] {
        match self.field_overlay() {
            Some(fo) if !fo.event_days.is_empty() => &fo.event_days,
            _ => &self.snap.event_days[self.field][self.version],
        }
    }

    /// The days the stored version holds (without days only real-time appends added).
    pub(crate) fn stored_event_days(&self) -> &'s [i32] {
        &self.snap.event_days[self.field][self.version]
    }

    /// The real-time appends to `day` in `shard` merged with the stored day, if any.
    fn merged_day(&self, shard: u32, day: i32) -> Result<Option<&'s MergedDay>> {
        let Some(ShardOverlay {
            data: OverlayData::Events(days),
            ..
        }) = self.overlay(shard)
        else {
            return Ok(None);
        };
        let Some(patch) = days.get(&day) else {
            return Ok(None);
        };
        let stored = self.stored_day_blob_in(shard, day)?.map(|b| b.bitmap);
        let counts: Vec<(u32, &Bitmap)> = self
            .stored_count_blobs_in(shard, day)?
            .into_iter()
            .map(|(bit, b)| (bit, b.bitmap))
            .collect();
        Ok(Some(patch.merged(stored, &counts)))
    }

    /// Users of one shard who did the event on `day` (`None`: nobody).
    pub fn event_day_in(&self, shard: u32, day: i32) -> Result<Option<&'s Bitmap>> {
        Ok(self.event_day_blob_in(shard, day)?.map(|b| b.bitmap))
    }

    /// [`FieldRef::event_day_blob_in`] for each of `days`: the field's stored days in the
    /// shard's segment are located once, not searched for among all its blobs day by day.
    pub(crate) fn event_days_in(
        &self,
        shard: u32,
        days: &[i32],
    ) -> Result<Vec<Option<EventBlob<'s>>>> {
        self.expect(self.kind() == FieldKind::Event, "an event")?;
        let Some(seg) = self
            .segment(shard)
            .filter(|_| self.overlay(shard).is_none())
        else {
            // Merged real-time days (or none stored): day by day.
            return days
                .iter()
                .map(|&d| self.event_day_blob_in(shard, d))
                .collect();
        };
        let field = self.meta().id;
        let stored = seg.range_of(field, Role::EventDay);
        let mut next = stored.start;
        let mut out = Vec::with_capacity(days.len());
        for &day in days {
            let Ok(key) = u32::try_from(day) else {
                out.push(None);
                continue;
            };
            // Ascending days walk the stored ones forward; a smaller day searches again.
            if next > stored.start && seg.entry(next - 1).key.key >= key {
                next = stored.start;
            }
            while next < stored.end && seg.entry(next).key.key < key {
                next += 1;
            }
            out.push(if next < stored.end && seg.entry(next).key.key == key {
                Some(EventBlob::at(seg, next)?)
            } else {
                None
            });
        }
        Ok(out)
    }

    /// The BSI slices of `count - 1` for `day` in one shard, as `(bit, slice)`, ascending.
    pub fn event_count_slices_in(&self, shard: u32, day: i32) -> Result<Vec<(u32, &'s Bitmap)>> {
        Ok(self
            .event_count_blobs_in(shard, day)?
            .into_iter()
            .map(|(bit, b)| (bit, b.bitmap))
            .collect())
    }

    /// The users of one shard who did the event on `day`, as a view and as its verified
    /// serialized bytes (`None`: nobody).
    pub(crate) fn event_day_blob_in(&self, shard: u32, day: i32) -> Result<Option<EventBlob<'s>>> {
        self.expect(self.kind() == FieldKind::Event, "an event")?;
        if let Some(m) = self.merged_day(shard, day)? {
            return Ok(Some(EventBlob {
                bitmap: &m.users,
                bytes: &m.users_bytes,
                path: Path::new(DELTA_PATH),
            }));
        }
        self.stored_day_blob_in(shard, day)
    }

    fn stored_day_blob_in(&self, shard: u32, day: i32) -> Result<Option<EventBlob<'s>>> {
        let Some(seg) = self.segment(shard) else {
            return Ok(None);
        };
        if day < 0 {
            return Ok(None);
        }
        let key = BlobKey {
            field: self.meta().id,
            role: Role::EventDay,
            key: day as u32,
        };
        seg.find(key)
            .map(|slot| EventBlob::at(seg, slot))
            .transpose()
    }

    /// The count slices of `day` in one shard, as `(bit, blob)`, ascending.
    pub(crate) fn event_count_blobs_in(
        &self,
        shard: u32,
        day: i32,
    ) -> Result<Vec<(u32, EventBlob<'s>)>> {
        self.expect(self.kind() == FieldKind::Event, "an event")?;
        if let Some(m) = self.merged_day(shard, day)? {
            return Ok(m
                .counts
                .iter()
                .map(|(bit, b, bytes)| {
                    (
                        *bit,
                        EventBlob {
                            bitmap: b,
                            bytes,
                            path: Path::new(DELTA_PATH),
                        },
                    )
                })
                .collect());
        }
        self.stored_count_blobs_in(shard, day)
    }

    fn stored_count_blobs_in(&self, shard: u32, day: i32) -> Result<Vec<(u32, EventBlob<'s>)>> {
        let Some(seg) = self.segment(shard) else {
            return Ok(Vec::new());
        };
        self.count_slots(seg, day)
            .map(|slot| Ok((seg.entry(slot).key.key & 31, EventBlob::at(seg, slot)?)))
            .collect()
    }

    /// Slots of the count slices of `day` in `seg`.
    fn count_slots(&self, seg: &Segment, day: i32) -> std::ops::Range<usize> {
        if day < 0 {
            return 0..0;
        }
        let range = seg.range_of(self.meta().id, Role::EventCount);
        let first = (day as u32) << 5;
        let find = |bound: u32| {
            let (mut lo, mut hi) = (range.start, range.end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if seg.entry(mid).key.key < bound {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        find(first)..find(first + 32)
    }

    /// The stored blobs of `days` in one shard, verified, as they are on disk (for a load that
    /// carries those days over into a new version).
    pub(crate) fn event_raw_blobs(
        &self,
        shard: u32,
        days: &[i32],
    ) -> Result<Vec<(BlobKey, &'s [u8])>> {
        let Some(seg) = self.segment(shard) else {
            return Ok(Vec::new());
        };
        let id = self.meta().id;
        let mut out = Vec::new();
        for role in [Role::EventDay, Role::EventCount] {
            for slot in seg.range_of(id, role) {
                let k = seg.entry(slot).key;
                let day = if role == Role::EventDay {
                    k.key
                } else {
                    k.key >> 5
                } as i32;
                if days.binary_search(&day).is_ok() {
                    out.push((k, seg.bytes(slot)?));
                }
            }
        }
        Ok(out)
    }

    /// Shards that may hold data of this version.
    pub fn shards(&self) -> u32 {
        let stored = self.snap.segments[self.field][self.version].len();
        let delta = self.field_overlay().map_or(0, |fo| fo.shards.len());
        stored.max(delta) as u32
    }

    fn combine(&self, per_shard: impl Fn(u32) -> Result<Option<Bitmap>>) -> Result<Bitmap> {
        let mut out = Bitmap::new();
        for shard in 0..self.shards() {
            if let Some(b) = per_shard(shard)? {
                out.or_inplace(&b);
            }
        }
        Ok(out)
    }

    /// All members of a flag.
    pub fn flag_bitmap(&self) -> Result<Bitmap> {
        self.combine(|s| Ok(self.flag_in(s)?.cloned()))
    }

    /// All users holding `value` (an unknown value gives an empty bitmap).
    pub fn value_bitmap(&self, value: &str) -> Result<Bitmap> {
        self.expect(self.kind().has_values(), "an enum or set field")?;
        match self.code_of(value) {
            Some(code) => self.combine(|s| Ok(self.value_in(s, code)?.cloned())),
            None => Ok(Bitmap::new()),
        }
    }

    /// Users whose value `op c` holds; `c` is in stored units (decimal units, timestamp ms).
    pub fn compare(&self, op: CmpOp, c: i64) -> Result<Bitmap> {
        self.combine(|s| Ok(self.bsi_in(s)?.map(|b| b.compare(op, c))))
    }

    /// Users of `filter` whose value `op c` holds, computing within the filter only.
    pub fn compare_in(&self, op: CmpOp, c: i64, filter: &Bitmap) -> Result<Bitmap> {
        self.combine(|s| Ok(self.bsi_in(s)?.map(|b| b.compare_in(op, c, Some(filter)))))
    }

    /// Users with `lo <= value <= hi`, in stored units.
    pub fn between(&self, lo: i64, hi: i64) -> Result<Bitmap> {
        self.combine(|s| Ok(self.bsi_in(s)?.map(|b| b.between(lo, hi))))
    }

    /// Count and sum of the values of the users of `filter` (all users when `None`).
    pub fn count_sum(&self, filter: Option<&Bitmap>) -> Result<(u64, i128)> {
        let mut acc = (0u64, 0i128);
        for s in 0..self.shards() {
            if let Some(b) = self.bsi_in(s)? {
                let (n, sum) = b.count_sum(filter);
                acc.0 += n;
                acc.1 += sum;
            }
        }
        Ok(acc)
    }

    /// Minimum (`max = false`) or maximum value among the users of `filter`.
    pub fn extreme(&self, filter: Option<&Bitmap>, max: bool) -> Result<Option<i64>> {
        let mut best: Option<i64> = None;
        for s in 0..self.shards() {
            if let Some(b) = self.bsi_in(s)?
                && let Some(v) = b.extreme(filter, max)
            {
                best = Some(match best {
                    Some(x) if max => x.max(v),
                    Some(x) => x.min(v),
                    None => v,
                });
            }
        }
        Ok(best)
    }

    /// The value of this field for user `id` (`None`: the user has no value).
    pub fn value_of(&self, id: u32) -> Result<Option<Value>> {
        let shard = id >> SHARD_BITS;
        let Some(so) = self.overlay(shard) else {
            return self.stored_value_of(id);
        };
        match &so.data {
            OverlayData::Flag(b) => Ok(b.contains(id).then_some(Value::Flag)),
            OverlayData::Bsi(p) => match p.get(id) {
                Some(change) => Ok(change.map(|v| self.number(v))),
                None => self.stored_value_of(id),
            },
            OverlayData::Values(map) if so.changed.contains(id) => {
                // Tracked codes from the overlay, the others from the stored column.
                let mut codes: Vec<u32> = map
                    .iter()
                    .filter(|(_, b)| b.contains(id))
                    .map(|(&c, _)| c)
                    .collect();
                let stored = match self.stored_value_of(id)? {
                    Some(Value::Str(s)) => vec![s],
                    Some(Value::Strs(list)) => list,
                    _ => Vec::new(),
                };
                for s in stored {
                    if let Some(c) = self.code_of(&s)
                        && !map.contains_key(&c)
                    {
                        codes.push(c);
                    }
                }
                let mut strs: Vec<String> = codes
                    .iter()
                    .filter_map(|&c| self.values().get(c as usize).cloned())
                    .collect();
                strs.sort_unstable();
                Ok(match (self.kind(), strs.len()) {
                    (_, 0) => None,
                    (FieldKind::Enum, _) => strs.into_iter().next().map(Value::Str),
                    _ => Some(Value::Strs(strs)),
                })
            }
            OverlayData::Values(_) => self.stored_value_of(id),
            // A behaviour is not a value: portraits leave events out.
            OverlayData::Events(_) => Ok(None),
        }
    }

    /// A stored number as the field's kind of value.
    fn number(&self, v: i64) -> Value {
        match self.kind() {
            FieldKind::Decimal { scale } => Value::Decimal { units: v, scale },
            FieldKind::Timestamp => Value::Timestamp(v),
            _ => Value::Int(v),
        }
    }

    /// The value of user `id` in the stored version (flags see the overlay).
    fn stored_value_of(&self, id: u32) -> Result<Option<Value>> {
        let shard = id >> SHARD_BITS;
        let Some(seg) = self.segment(shard) else {
            return Ok(None);
        };
        let fid = self.meta().id;
        let find = |role| {
            seg.find(BlobKey {
                field: fid,
                role,
                key: 0,
            })
        };
        let column_entry = |slot: usize, width: usize| -> Result<Option<usize>> {
            let first = seg.entry(slot).aux;
            let row = id as i64 - first;
            let len = seg.bytes(slot)?.len() / width;
            Ok((row >= 0 && (row as usize) < len).then_some(row as usize))
        };
        let corrupt = || {
            Error::corrupt(
                seg.path(),
                format!("column of `{}` is malformed", self.path()),
            )
        };
        match self.kind() {
            // A behaviour is not a value: portraits leave events out.
            FieldKind::Event => Ok(None),
            FieldKind::Flag => Ok(self
                .flag_in(shard)?
                .is_some_and(|b| b.contains(id))
                .then_some(Value::Flag)),
            FieldKind::Enum => {
                let Some(column) = self.codes_in_segment(seg)? else {
                    return Ok(None);
                };
                let code = column.code_of(id);
                if code == NULL_CODE {
                    return Ok(None);
                }
                let v = self.values().get(code as usize).ok_or_else(corrupt)?;
                Ok(Some(Value::Str(v.clone())))
            }
            FieldKind::Set => {
                let (Some(off_slot), Some(codes_slot)) =
                    (find(Role::SetOffsets), find(Role::SetCodes))
                else {
                    return Ok(None);
                };
                let offsets = seg.bytes(off_slot)?;
                let first = seg.entry(off_slot).aux;
                let row = id as i64 - first;
                let rows = (offsets.len() / 4).saturating_sub(1);
                if row < 0 || row as usize >= rows {
                    return Ok(None);
                }
                let row = row as usize;
                let lo = read_u32(offsets, row * 4).ok_or_else(corrupt)? as usize;
                let hi = read_u32(offsets, row * 4 + 4).ok_or_else(corrupt)? as usize;
                if lo == hi {
                    return Ok(None);
                }
                let codes = seg.bytes(codes_slot)?;
                let mut out = Vec::with_capacity(hi.saturating_sub(lo));
                for i in lo..hi {
                    let code = read_u32(codes, i * 4).ok_or_else(corrupt)?;
                    out.push(
                        self.values()
                            .get(code as usize)
                            .ok_or_else(corrupt)?
                            .clone(),
                    );
                }
                Ok(Some(Value::Strs(out)))
            }
            kind => {
                // Only the existence bitmap and the value column: the slices are for crowds.
                let Some(exists) = find(Role::BsiExists) else {
                    return Ok(None);
                };
                if !seg.bitmap(exists)?.contains(id) {
                    return Ok(None);
                }
                let Some(slot) = find(Role::Ints) else {
                    return Err(corrupt());
                };
                let Some(row) = column_entry(slot, 8)? else {
                    return Err(corrupt());
                };
                let v = read_u64(seg.bytes(slot)?, row * 8).ok_or_else(corrupt)? as i64;
                Ok(Some(match kind {
                    FieldKind::Decimal { scale } => Value::Decimal { units: v, scale },
                    FieldKind::Timestamp => Value::Timestamp(v),
                    _ => Value::Int(v),
                }))
            }
        }
    }
}

/// Lookups of many keys among the users of one snapshot ([`TableSnapshot::key_finder`]), on
/// any thread (an import's decoding workers find the ids of a batch's keys while the import
/// stages the batch before). Users the table gains later are not among them.
///
/// Where every key has one length and the keys differ only in their last 8 bytes and
/// increase with the ids (a table first loaded from a file sorted by user), the first lookup
/// numbers the keys (8 bytes per user, once), and keys that come in id order are then found by
/// comparing those numbers, eight at a time, from the previous key's position on.
#[derive(Debug, Clone)]
pub struct KeyFinder {
    dict: Arc<LiveDict>,
    known: u32,
    /// The keys as numbers, built by the first lookup (the dictionary's keys below its length
    /// never change, so they stay right however the dictionary grows meanwhile).
    words: Arc<std::sync::OnceLock<Option<crate::ids::KeyWords>>>,
}

impl KeyFinder {
    /// How the table's keys are typed.
    pub fn kind(&self) -> KeyKind {
        self.dict.kind()
    }

    /// The id of each of `keys` (`out[i]` for the `i`-th), `None` for a key that is not one of
    /// the users.
    pub fn find<'k>(
        &self,
        keys: impl IntoIterator<Item = KeyRef<'k>>,
        out: &mut Vec<Option<u32>>,
    ) -> Result<()> {
        let dict = self.dict.get()?.read();
        let words = self.words.get_or_init(|| dict.key_words()).as_ref();
        dict.get_many_with(keys, out, words);
        forget_from(out, self.known);
        Ok(())
    }
}

/// Makes ids from `users` on (users a snapshot does not know) `None`.
fn forget_from(ids: &mut [Option<u32>], users: u32) {
    for id in ids {
        if id.is_some_and(|i| i >= users) {
            *id = None;
        }
    }
}
