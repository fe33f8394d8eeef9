//! Bulk loads: a new version of one or several fields, published atomically.
//!
//! A [`Load`] holds the table's writer lock. It stages new keys in a private dictionary and field
//! data in memory; nothing is visible until [`Load::commit`], which:
//!
//! 1. writes one segment file per shard holding every loaded field (fsynced);
//! 2. writes an id-dictionary chunk with the new keys (fsynced), while step 1 runs;
//! 3. once both are done, replaces the manifest atomically — the commit point;
//! 4. appends the new keys to the live dictionary and swaps in the new snapshot;
//! 5. removes files that no version names any more.
//!
//! A failure before step 3 leaves the previous manifest, and so the previous versions, in force;
//! the files already written are unreferenced and removed the next time the table is opened.
//! Within one load, a user given two values for a single-valued field keeps the last one.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use croaring::Bitmap;
use parking_lot::MutexGuard;
use rayon::prelude::*;

use super::Table;
use super::snapshot::{TableSnapshot, Value};
use crate::bitmap::bsi::{BsiBuilt, ById};
use crate::catalog::{FieldKind, FieldMeta, FieldSpec, VersionInfo, validate_path};
use crate::error::{Error, Result};
use crate::ids::{IdDictionary, KeyRef, chunk};
use crate::storage::manifest::{ChunkRef, FieldRecord, VersionRecord};
use crate::storage::segment::{
    self, BlobKey, BlobSink, NULL_CODE, NULL_CODE8, Role, Segment, SegmentWriter,
};
use crate::{SHARD_BITS, now_ms, shard_count};

/// The most new users [`Load::reserve_users`] makes room for at once (a load with more grows
/// its dictionary as it goes beyond them): the index and offsets of this many keys take
/// 768 MiB of address space, which pages in only as keys arrive.
#[cfg(feature = "import")]
const MAX_RESERVED_USERS: u64 = 1 << 26;

/// The most key bytes per user [`Load::reserve_users`] makes room for.
#[cfg(feature = "import")]
const MAX_RESERVED_KEY_BYTES: u64 = 32;

/// A field being loaded, as returned by [`Load::field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadField(usize);

#[derive(Debug)]
enum Staged {
    Flag(Bitmap),
    /// Enum and set: staged value codes (in order of first appearance) and users' codes.
    Values {
        codes: HashMap<String, u32>,
        pairs: RunStage<u32>,
    },
    Ints(RunStage<i64>),
    /// Events: per day, the users who did the event and how often.
    Events(BTreeMap<i32, EventDay>),
}

/// The staged values of a field, in staging order: first the values of consecutive ids from
/// `first` (a file of one row per user, in id order, as a first load of new users is), alone;
/// then, from the first value that does not continue them, `(id, value)` pairs of any ids. An
/// int's 8 bytes or a code's 4 take 16 and 8 bytes as pairs.
#[derive(Debug, Default)]
struct RunStage<T> {
    first: u32,
    run: Vec<T>,
    pairs: Vec<(u32, T)>,
}

impl<T: Copy> RunStage<T> {
    /// Stages `(id, v)` after the values staged so far.
    #[inline]
    fn push(&mut self, id: u32, v: T) {
        if self.pairs.is_empty() {
            if self.run.is_empty() {
                self.first = id;
            }
            if u64::from(id) == u64::from(self.first) + self.run.len() as u64 {
                self.run.push(v);
                return;
            }
        }
        self.pairs.push((id, v));
    }

    /// Stages `pairs` after the values staged so far.
    fn extend(&mut self, pairs: &[(u32, T)]) {
        if self.pairs.is_empty() {
            if self.run.is_empty()
                && let Some(&(id, _)) = pairs.first()
            {
                self.first = id;
            }
            let next = u64::from(self.first) + self.run.len() as u64;
            let continues = pairs
                .iter()
                .enumerate()
                .all(|(i, p)| u64::from(p.0) == next + i as u64);
            if continues {
                self.run.extend(pairs.iter().map(|p| p.1));
                return;
            }
        }
        self.pairs.extend_from_slice(pairs);
    }

    /// Makes room for `n` more values (a hint; a refusal only means no head start), and gives
    /// the room past the values staged ([`crate::prefault::spare`]).
    fn reserve(&mut self, n: usize) -> (usize, usize) {
        if self.pairs.is_empty() {
            let _ = self.run.try_reserve_exact(n);
            crate::prefault::spare(&self.run)
        } else {
            let _ = self.pairs.try_reserve_exact(n);
            crate::prefault::spare(&self.pairs)
        }
    }

    /// Turns the run into pairs too, in front of the others (before renumbering ids).
    fn all_pairs(&mut self) -> &mut Vec<(u32, T)> {
        if !self.run.is_empty() {
            let mut all = self.to_pairs();
            self.run = Vec::new();
            std::mem::swap(&mut self.pairs, &mut all);
        }
        &mut self.pairs
    }

    /// Every staged `(id, value)`, in staging order.
    fn to_pairs(&self) -> Vec<(u32, T)> {
        let first = self.first;
        let run = self.run.iter().enumerate();
        run.map(|(i, &v)| (first + i as u32, v))
            .chain(self.pairs.iter().copied())
            .collect()
    }

    /// The run alone: staged in id order with one value per id.
    fn only_run(&self) -> Option<ById<'_, T>> {
        self.pairs.is_empty().then_some(ById::Run {
            first: self.first,
            values: &self.run,
        })
    }
}

impl RunStage<i64> {
    /// Each user's last value, by id: the staged values as they are when they are the run
    /// alone, or pairs sorted by id with one per id; else sorted and reduced anew.
    fn prepared(&self) -> PreparedInts<'_> {
        if let Some(run) = self.only_run() {
            return PreparedInts::View(run);
        }
        if self.run.is_empty() && self.pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            return PreparedInts::View(ById::Pairs(&self.pairs));
        }
        PreparedInts::Owned(last_value_per_user(self.to_pairs()))
    }
}

/// An int field's values for writing: each user's last value, by id.
enum PreparedInts<'a> {
    View(ById<'a, i64>),
    Owned(Vec<(u32, i64)>),
}

impl PreparedInts<'_> {
    fn view(&self) -> ById<'_, i64> {
        match self {
            PreparedInts::View(v) => *v,
            PreparedInts::Owned(pairs) => ById::Pairs(pairs),
        }
    }
}

/// An enum or set field's codes for writing, by id (a set's codes of one user ascending).
enum PreparedCodes {
    /// One code per user of `first..`.
    Run {
        first: u32,
        codes: Vec<u32>,
    },
    Pairs(Vec<(u32, u32)>),
}

impl PreparedCodes {
    fn view(&self) -> ById<'_, u32> {
        match self {
            PreparedCodes::Run { first, codes } => ById::Run {
                first: *first,
                values: codes,
            },
            PreparedCodes::Pairs(pairs) => ById::Pairs(pairs),
        }
    }

    /// Replaces every code `c` by `to[c]`.
    fn recode(&mut self, to: &[u32]) {
        match self {
            PreparedCodes::Run { codes, .. } => codes.iter_mut().for_each(|c| *c = to[*c as usize]),
            PreparedCodes::Pairs(pairs) => pairs.iter_mut().for_each(|p| p.1 = to[p.1 as usize]),
        }
    }
}

/// One day of a staged event.
#[derive(Debug, Default)]
struct EventDay {
    /// `(id, count)` pairs (a user may appear several times; counts add up).
    pairs: Vec<(u32, u32)>,
    /// Per shard, the day already built as a segment stores it: a run of increasing ids staged
    /// into an empty day (an import's run of one event and day from a file sorted by user) is
    /// built at once, so that the import reuses the run's memory for the next run instead of
    /// holding every pair until the commit.
    built: BTreeMap<u32, EventShard>,
}

impl EventDay {
    /// Moves the built shards back into `pairs` (before renumbering ids, or when more pairs
    /// came for the day after it was built).
    fn unbuild(&mut self) {
        for (_, shard) in std::mem::take(&mut self.built) {
            self.pairs.extend(shard.pairs());
        }
    }
}

/// One shard of one day of an event, as its segment stores it.
#[derive(Debug)]
struct EventShard {
    /// The users who did it.
    users: Bitmap,
    /// `(bit, users)`: the bit-sliced counts minus one, slices with nobody left out.
    counts: Vec<(u32, Bitmap)>,
}

impl EventShard {
    /// Builds the shard of `pairs`: ids increasing, counts above zero.
    fn build(pairs: &[(u32, u32)]) -> Self {
        let mut ids: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let mut users = crate::bitmap::from_sorted(&ids);
        users.run_optimize();
        // BSI of count - 1 over the day's users: per bit, the users whose count - 1 has it.
        // Both selections below write every item and move their end on only past those kept:
        // no branch on a condition as likely true as not (a filter's mispredictions cost most
        // of this function).
        let mut extra = vec![(0u32, 0u32); pairs.len()];
        let mut kept = 0;
        for &(id, c) in pairs {
            extra[kept] = (id, c.saturating_sub(1));
            kept += usize::from(c > 1);
        }
        extra.truncate(kept);
        let top = extra.iter().map(|p| p.1).max().unwrap_or(0);
        let mut counts = Vec::new();
        for bit in 0..(32 - top.leading_zeros()) {
            let mut n = 0;
            for &(id, c) in &extra {
                ids[n] = id;
                n += (c >> bit & 1) as usize;
            }
            if n > 0 {
                let mut s = crate::bitmap::from_sorted(&ids[..n]);
                s.run_optimize();
                counts.push((bit, s));
            }
        }
        Self { users, counts }
    }

    /// Builds the shards of `pairs` (ids increasing, counts above zero).
    #[cfg(feature = "import")]
    fn build_all(pairs: &[(u32, u32)]) -> BTreeMap<u32, Self> {
        let mut shards = BTreeMap::new();
        let mut rest = pairs;
        while let Some(&(first, _)) = rest.first() {
            let shard = first >> SHARD_BITS;
            let n = rest.partition_point(|p| p.0 >> SHARD_BITS == shard);
            shards.insert(shard, Self::build(&rest[..n]));
            rest = &rest[n..];
        }
        shards
    }

    /// The `(id, count)` pairs it was built from, by id.
    fn pairs(&self) -> Vec<(u32, u32)> {
        let mut pairs: Vec<(u32, u32)> = self.users.iter().map(|id| (id, 1)).collect();
        for (bit, s) in &self.counts {
            let mut at = 0;
            for id in s.iter() {
                // Every counted user is one of `users`, which are sorted like `s`.
                at += pairs[at..].partition_point(|p| p.0 < id);
                if let Some(p) = pairs.get_mut(at).filter(|p| p.0 == id) {
                    p.1 += 1 << bit;
                }
            }
        }
        pairs
    }
}

#[derive(Debug)]
struct StagedField {
    spec: FieldSpec,
    data: Staged,
}

/// What a committed load published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSummary {
    /// The version label.
    pub label: String,
    /// Fields that received a version.
    pub fields: usize,
    /// Users new to the table.
    pub new_users: u32,
    /// Users of the table after the load.
    pub users: u32,
    /// Bytes of segment files written.
    pub bytes: u64,
    /// The manifest generation published.
    pub generation: u64,
}

/// A bulk load in progress. Dropping it without [`Load::commit`] discards it.
pub struct Load<'t> {
    table: &'t Table,
    _writer: MutexGuard<'t, ()>,
    base: Arc<TableSnapshot>,
    label: String,
    new_keys: IdDictionary,
    fields: Vec<StagedField>,
    by_path: HashMap<String, usize>,
    /// Field ids whose frozen real-time changes this load (a compaction) folds in.
    compacts: Vec<u32>,
    /// What this load may still fault in ahead of use.
    prefault: crate::prefault::Prefault,
}

impl std::fmt::Debug for Load<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("table", &self.table.name())
            .field("label", &self.label)
            .field("fields", &self.fields.len())
            .field("new_keys", &self.new_keys.len())
            .finish()
    }
}

impl<'t> Load<'t> {
    pub(super) fn new(table: &'t Table, writer: MutexGuard<'t, ()>, label: &str) -> Result<Self> {
        if label.is_empty() || label.len() > 128 || label.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "version label {label:?} must be 1 to 128 printable characters"
            )));
        }
        let base = table.snapshot();
        // Key resolution needs the dictionary; load it now rather than on the first key.
        base.dict.get()?;
        Ok(Self {
            table,
            _writer: writer,
            new_keys: IdDictionary::new(base.key_kind(), base.users()).deferring_index(),
            base,
            label: label.to_owned(),
            fields: Vec::new(),
            by_path: HashMap::new(),
            compacts: Vec::new(),
            prefault: crate::prefault::Prefault::new(),
        })
    }

    /// Declares a field of this load. Loading a field replaces its whole content in the new
    /// version; fields not declared keep their current version.
    pub fn field(&mut self, spec: FieldSpec) -> Result<LoadField> {
        validate_path(&spec.path)?;
        if let Some(existing) = self
            .base
            .fields()
            .find(|m| m.spec.path == spec.path)
            .map(|m| m.spec.kind)
            && existing != spec.kind
        {
            return Err(Error::FieldKindConflict {
                path: spec.path.clone(),
                existing: existing.name(),
                requested: spec.kind.name(),
            });
        }
        if let Some(&i) = self.by_path.get(&spec.path) {
            if self.fields[i].spec.kind != spec.kind {
                return Err(Error::FieldKindConflict {
                    path: spec.path.clone(),
                    existing: self.fields[i].spec.kind.name(),
                    requested: spec.kind.name(),
                });
            }
            return Ok(LoadField(i));
        }
        let data = match spec.kind {
            FieldKind::Flag => Staged::Flag(Bitmap::new()),
            FieldKind::Enum | FieldKind::Set => Staged::Values {
                codes: HashMap::new(),
                pairs: RunStage::default(),
            },
            FieldKind::Event => Staged::Events(BTreeMap::new()),
            _ => Staged::Ints(RunStage::default()),
        };
        self.by_path.insert(spec.path.clone(), self.fields.len());
        self.fields.push(StagedField { spec, data });
        Ok(LoadField(self.fields.len() - 1))
    }

    /// The id of `key`, assigning a new one (visible after commit) if the user is new.
    pub fn user<'k>(&mut self, key: impl Into<KeyRef<'k>>) -> Result<u32> {
        let key = key.into();
        if let Some(id) = self.base.dict.get()?.read().get(key)
            && id < self.base.users()
        {
            return Ok(id);
        }
        self.new_keys.get_or_push(key)
    }

    /// Makes room for up to `users` new users whose keys take `key_bytes` bytes in all
    /// (strings): a bulk load that knows its row count grows its key dictionary once.
    #[cfg(feature = "import")]
    pub(crate) fn reserve_users(&mut self, users: u64, key_bytes: u64) {
        // A hint from a file's metadata, so bounded: never more than the table can hold, nor
        // more than the largest room a real load needs at once.
        let users = users.min(MAX_RESERVED_USERS);
        let key_bytes = key_bytes.min(users.saturating_mul(MAX_RESERVED_KEY_BYTES));
        self.new_keys.reserve(users as usize, key_bytes as usize);
        for spare in self.new_keys.spare() {
            self.prefault.range(spare);
        }
    }

    /// The ids of `keys` in order, assigning new ids (visible after commit) to new users: what
    /// [`Load::user`] does for each key, with the lookups in the table's dictionary batched so
    /// that their cache misses overlap.
    pub fn users_many(&mut self, keys: &[KeyRef<'_>], out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        out.reserve(keys.len());
        // Users numbered in increasing order above every user of the table and of this load
        // (a file sorted by user, with new users): all new, appended as they come. The first
        // may be the last user appended, whose rows the previous batch began.
        let first = self.new_keys.end();
        let (again, rest) = match keys.split_first() {
            Some((&k, rest))
                if self.new_keys.len() > 0 && self.new_keys.key(first - 1) == Some(k) =>
            {
                (Some(first - 1), rest)
            }
            _ => (None, keys),
        };
        if self.base.dict.get()?.read().all_beyond(rest) && self.new_keys.append_increasing(rest)? {
            out.extend(again);
            out.extend(first..first + rest.len() as u32);
            return Ok(());
        }
        let mut found = Vec::with_capacity(keys.len());
        self.base
            .dict
            .get()?
            .read()
            .get_many(keys.iter().copied(), &mut found);
        let known = self.base.users();
        let mut missing = Vec::new();
        for (i, id) in found.into_iter().enumerate() {
            match id {
                Some(id) if id < known => out.push(id),
                _ => {
                    missing.push(i);
                    out.push(u32::MAX);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // Keys new to the table: first among this load's new keys, then the rest appended in
        // one batch, in order of first appearance.
        let mut staged = Vec::with_capacity(missing.len());
        self.new_keys
            .get_many(missing.iter().map(|&i| keys[i]), &mut staged);
        let mut fresh = Vec::new();
        let mut fresh_at = Vec::new();
        for (&i, id) in missing.iter().zip(staged) {
            match id {
                Some(id) => out[i] = id,
                None => {
                    fresh.push(keys[i]);
                    fresh_at.push(i);
                }
            }
        }
        let first = self.new_keys.end();
        match self.new_keys.extend_new(&fresh)? {
            Ok(()) => {
                for (j, &i) in fresh_at.iter().enumerate() {
                    out[i] = first + j as u32;
                }
            }
            // A key repeated within the batch: one at a time.
            Err(_) => {
                for &i in &fresh_at {
                    out[i] = self.new_keys.get_or_push(keys[i])?;
                }
            }
        }
        Ok(())
    }

    #[cfg(feature = "import")]
    /// Lookups among the users the table held when this load began, for other threads.
    pub(crate) fn base_keys(&self) -> super::KeyFinder {
        self.base.key_finder()
    }

    /// Marks this load as the compaction of field `fid`: its publish also drops the field's
    /// frozen real-time changes, which the staged content already holds.
    pub(crate) fn compacts(&mut self, fid: u32) {
        self.compacts.push(fid);
    }

    #[cfg(feature = "import")]
    /// The paths of the fields declared so far.
    pub(crate) fn declared_paths(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.spec.path.clone()).collect()
    }

    #[cfg(feature = "import")]
    /// The kind of field `path` in the table's catalog, if it exists.
    pub(crate) fn catalog_kind(&self, path: &str) -> Option<FieldKind> {
        self.base
            .fields()
            .find(|m| m.spec.path == path)
            .map(|m| m.spec.kind)
    }

    #[cfg(feature = "import")]
    /// The day (in the table's time zone) instant `ms` falls on.
    pub(crate) fn day_of_ms(&self, ms: i64) -> i32 {
        crate::behaviour::day_of_ms(ms, self.base.utc_offset_minutes())
    }

    #[cfg(feature = "import")]
    /// How the table's keys are typed.
    pub(crate) fn key_kind(&self) -> crate::ids::KeyKind {
        self.base.key_kind()
    }

    /// Users known to the table once this load commits.
    pub fn users(&self) -> u32 {
        self.new_keys.end()
    }

    fn staged(&mut self, field: LoadField) -> Result<&mut StagedField> {
        self.fields
            .get_mut(field.0)
            .ok_or_else(|| Error::InvalidArgument("field handle of another load".into()))
    }

    fn check_id(&self, id: u32) -> Result<()> {
        if id >= self.users() {
            return Err(Error::InvalidArgument(format!(
                "user id {id} is not assigned (the table has {} users)",
                self.users()
            )));
        }
        Ok(())
    }

    /// Gives user `key` the flag `field`.
    pub fn flag<'k>(&mut self, field: LoadField, key: impl Into<KeyRef<'k>>) -> Result<()> {
        let id = self.user(key)?;
        self.flag_id(field, id)
    }

    /// Gives user `id` the flag `field`.
    pub fn flag_id(&mut self, field: LoadField, id: u32) -> Result<()> {
        self.check_id(id)?;
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Flag(b) => {
                b.add(id);
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "a flag")),
        }
    }

    /// Adds a ready bitmap of user ids to the flag `field`.
    pub fn flag_bitmap(&mut self, field: LoadField, ids: &Bitmap) -> Result<()> {
        if let Some(max) = ids.maximum() {
            self.check_id(max)?;
        }
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Flag(b) => {
                b.or_inplace(ids);
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "a flag")),
        }
    }

    /// [`Load::flag_bitmap`] for a bitmap the caller gives up: a flag with nothing staged yet
    /// takes it as it is, without copying its containers.
    #[cfg(feature = "import")]
    pub(crate) fn flag_bitmap_owned(&mut self, field: LoadField, ids: Bitmap) -> Result<()> {
        if let Some(max) = ids.maximum() {
            self.check_id(max)?;
        }
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Flag(b) if b.is_empty() => {
                *b = ids;
                Ok(())
            }
            Staged::Flag(b) => {
                b.or_inplace(&ids);
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "a flag")),
        }
    }

    /// Records that user `key` did event `field` `count` times on `day` (days since
    /// 1970-01-01, counted in the table's time zone). Counts of the same user and day add up.
    /// The load replaces every day it holds an event for and keeps the event's other days.
    pub fn event<'k>(
        &mut self,
        field: LoadField,
        key: impl Into<KeyRef<'k>>,
        day: i32,
        count: u32,
    ) -> Result<()> {
        let id = self.user(key)?;
        self.event_id(field, id, day, count)
    }

    /// Records that user `key` did event `field` once at `ms` (milliseconds since the Unix
    /// epoch), on the day that instant falls on in the table's time zone.
    pub fn event_at<'k>(
        &mut self,
        field: LoadField,
        key: impl Into<KeyRef<'k>>,
        ms: i64,
    ) -> Result<()> {
        let day = crate::behaviour::day_of_ms(ms, self.base.utc_offset_minutes());
        self.event(field, key, day, 1)
    }

    /// [`Load::event`] for user `id`.
    pub fn event_id(&mut self, field: LoadField, id: u32, day: i32, count: u32) -> Result<()> {
        self.check_id(id)?;
        crate::behaviour::check_day(day)?;
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Events(days) => {
                if count > 0 {
                    days.entry(day).or_default().pairs.push((id, count));
                }
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "an event")),
        }
    }

    /// Adds the `(id, count)` pairs of `pairs` to event `field` on `day`, leaving `pairs` empty:
    /// the bulk form of [`Load::event_id`] for an import's run of rows of one event and day.
    /// The first run of a day, when its ids increase, is built at once as the segment will
    /// store it, and `pairs` keeps its capacity for the next run; another first run is staged
    /// in `pairs`' own buffer, without a copy.
    #[cfg(feature = "import")]
    pub(crate) fn event_ids(
        &mut self,
        field: LoadField,
        day: i32,
        pairs: &mut Vec<(u32, u32)>,
    ) -> Result<()> {
        if let Some(max) = pairs.iter().map(|p| p.0).max() {
            self.check_id(max)?;
        }
        crate::behaviour::check_day(day)?;
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Events(days) => {
                pairs.retain(|p| p.1 > 0);
                // The load holds the day even when nobody did the event that day.
                let staged = days.entry(day).or_default();
                if pairs.is_empty() {
                    return Ok(());
                }
                let fresh = staged.pairs.is_empty() && staged.built.is_empty();
                if fresh && pairs.windows(2).all(|w| w[0].0 < w[1].0) {
                    staged.built = EventShard::build_all(pairs);
                    pairs.clear();
                } else if staged.pairs.is_empty() {
                    staged.pairs = std::mem::take(pairs);
                } else {
                    staged.pairs.append(pairs);
                }
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "an event")),
        }
    }

    /// Adds every user of `ids` to event `field` on `day`, once each: the bulk form of
    /// [`Load::event_id`] for users who did it once that day.
    pub fn event_day_bitmap(&mut self, field: LoadField, day: i32, ids: &Bitmap) -> Result<()> {
        if let Some(max) = ids.maximum() {
            self.check_id(max)?;
        }
        crate::behaviour::check_day(day)?;
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Events(days) => {
                days.entry(day)
                    .or_default()
                    .pairs
                    .extend(ids.iter().map(|id| (id, 1)));
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "an event")),
        }
    }

    /// Sets the value of `field` for user `key`.
    pub fn value<'k>(
        &mut self,
        field: LoadField,
        key: impl Into<KeyRef<'k>>,
        value: Value,
    ) -> Result<()> {
        let id = self.user(key)?;
        self.value_id(field, id, value)
    }

    /// Sets the value of `field` for user `id`. Enum: [`Value::Str`]; set: [`Value::Str`] adds
    /// one value, [`Value::Strs`] several; int: [`Value::Int`]; decimal: [`Value::Decimal`] with
    /// the field's scale (or [`Value::Int`] whole units); timestamp: [`Value::Timestamp`] or
    /// [`Value::Int`] milliseconds; flag: [`Value::Flag`].
    pub fn value_id(&mut self, field: LoadField, id: u32, value: Value) -> Result<()> {
        self.check_id(id)?;
        let f = self.staged(field)?;
        let kind = f.spec.kind;
        match (&mut f.data, value) {
            (Staged::Flag(b), Value::Flag) => {
                b.add(id);
            }
            (Staged::Values { codes, pairs }, Value::Str(s)) => {
                push_value(codes, pairs, id, s);
            }
            (Staged::Values { codes, pairs }, Value::Strs(list)) if kind == FieldKind::Set => {
                for s in list {
                    push_value(codes, pairs, id, s);
                }
            }
            (Staged::Ints(v), Value::Int(x)) => {
                let x = match kind {
                    FieldKind::Decimal { scale } => 10i64
                        .checked_pow(scale as u32)
                        .and_then(|m| x.checked_mul(m))
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "{x} overflows decimal `{}`",
                                f.spec.path
                            ))
                        })?,
                    _ => x,
                };
                v.push(id, x);
            }
            (Staged::Ints(v), Value::Decimal { units, scale }) => match kind {
                FieldKind::Decimal { scale: s } if s == scale => v.push(id, units),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "decimal with scale {scale} does not fit field `{}` ({})",
                        f.spec.path,
                        kind.name()
                    )));
                }
            },
            (Staged::Ints(v), Value::Timestamp(ms)) if kind == FieldKind::Timestamp => {
                v.push(id, ms)
            }
            (_, other) => {
                return Err(Error::InvalidArgument(format!(
                    "value {other:?} does not fit field `{}` ({})",
                    f.spec.path,
                    kind.name()
                )));
            }
        }
        Ok(())
    }

    /// Adds `(id, units)` pairs to the int, decimal or timestamp `field`, in its stored units
    /// (whole numbers, units of the field's scale, milliseconds): the batched form of
    /// [`Load::value_id`] with [`Value::Int`], [`Value::Decimal`] of the field's scale or
    /// [`Value::Timestamp`].
    pub fn value_units(&mut self, field: LoadField, pairs: &[(u32, i64)]) -> Result<()> {
        if let Some(&(id, _)) = pairs.iter().max_by_key(|p| p.0) {
            self.check_id(id)?;
        }
        let f = self.staged(field)?;
        match &mut f.data {
            Staged::Ints(v) => {
                v.extend(pairs);
                Ok(())
            }
            _ => Err(mismatch(&f.spec, "an int, decimal or timestamp")),
        }
    }

    /// Makes room for `values` more values of the enum, set, int, decimal or timestamp
    /// `field` (a hint: a bulk load that knows its row count stages without regrowing). Only a
    /// hint: room the allocator refuses (a file claiming more rows than memory holds) is not
    /// reserved, and staging then grows as it goes; flags and events ignore it.
    pub fn reserve_values(&mut self, field: LoadField, values: u64) -> Result<()> {
        let n = usize::try_from(values).unwrap_or(usize::MAX);
        let f = self.staged(field)?;
        // A refusal only means no head start.
        let spare = match &mut f.data {
            Staged::Ints(v) => Some(v.reserve(n)),
            Staged::Values { pairs, .. } => Some(pairs.reserve(n)),
            Staged::Flag(_) | Staged::Events(_) => None,
        };
        // The room is faulted in by another thread while this one stages into it.
        if let Some(spare) = spare {
            self.prefault.range(spare);
        }
        Ok(())
    }

    /// Adds `(id, i)` pairs to the enum or set `field`, meaning "user `id` has value
    /// `values[i]`": the batched form of [`Load::value_id`] with [`Value::Str`], which looks each
    /// distinct value up once per call instead of once per pair.
    pub fn value_codes(
        &mut self,
        field: LoadField,
        values: &[impl AsRef<str>],
        pairs: &[(u32, u32)],
    ) -> Result<()> {
        if let Some(&(id, _)) = pairs.iter().max_by_key(|p| p.0) {
            self.check_id(id)?;
        }
        let f = self.staged(field)?;
        let Staged::Values {
            codes,
            pairs: staged,
        } = &mut f.data
        else {
            return Err(mismatch(&f.spec, "an enum or a set"));
        };
        let mut remap = vec![None; values.len()];
        for &(id, i) in pairs {
            let slot = remap.get_mut(i as usize).ok_or_else(|| {
                Error::InvalidArgument(format!("value index {i} of {} values", values.len()))
            })?;
            let code = match *slot {
                Some(c) => c,
                None => {
                    let s = values[i as usize].as_ref();
                    let c = match codes.get(s) {
                        Some(&c) => c,
                        None => {
                            let c = codes.len() as u32;
                            codes.insert(s.to_owned(), c);
                            c
                        }
                    };
                    *slot = Some(c);
                    c
                }
            };
            staged.push(id, code);
        }
        Ok(())
    }

    /// Publishes the load atomically: all of its fields appear together, or none does.
    pub fn commit(mut self) -> Result<LoadSummary> {
        let table = self.table;
        // Real-time writes add users too. A load with new users of its own holds the real-time
        // commit lock from here to the publish, so that its ids follow theirs without a gap or
        // an overlap; a load without new users leaves real-time writes running.
        let mut rt_guard = (self.new_keys.len() > 0).then(|| table.rt.state.lock());
        let keys = self.settle_keys()?;
        let base = &self.base;
        let users = keys.own.end();
        let now = now_ms();
        let mut manifest = (*base.manifest).clone();
        let file_id = manifest.next_file_id;
        manifest.next_file_id += 1;

        // Assign field ids and sort fields by id: segment indexes are sorted by field id.
        let mut order: Vec<(u32, usize)> = Vec::with_capacity(self.fields.len());
        for (i, f) in self.fields.iter().enumerate() {
            let id = match manifest
                .fields
                .iter()
                .find(|r| r.meta.spec.path == f.spec.path)
            {
                Some(r) => r.meta.id,
                None => {
                    let id = manifest.next_field_id;
                    manifest.next_field_id += 1;
                    id
                }
            };
            order.push((id, i));
        }
        order.sort_unstable();

        let horizon = manifest.event_horizon_days;
        let fields = &mut self.fields;
        let new_chunk = keys.chunk();
        let chunk_path = table.dir.join(chunk::file_name(file_id));
        let chunk_path = &chunk_path;
        let write_chunk = move || -> Result<()> {
            if new_chunk.len() > 0 {
                chunk::write(chunk_path, new_chunk)?;
            }
            Ok(())
        };
        // Steps 1 and 2, side by side: one segment per shard (shards, and the fields of a
        // shard, prepared in parallel), and the new keys (real-time ones not yet in a chunk,
        // then this load's own), compressed and fsynced on a thread of its own, outside
        // rayon's pool, so that the pool keeps all its threads for the segments.
        let (fields, prepared, shards, chunk_written) = std::thread::scope(move |scope| {
            let chunk_writer = std::thread::Builder::new()
                .name("portrait-ids".into())
                .spawn_scoped(scope, write_chunk);
            // Flags are written run-optimized; done once, in place, in parallel.
            fields.par_iter_mut().for_each(|f| {
                if let Staged::Flag(b) = &mut f.data {
                    b.run_optimize();
                }
            });
            let fields = &*fields;
            let prepared: Vec<Prepared> = order
                .par_iter()
                .map(|&(id, i)| {
                    let staged = &fields[i];
                    // Events keep the days this load does not replace.
                    let previous = match staged.spec.kind {
                        FieldKind::Event => base.field(&staged.spec.path).ok(),
                        _ => None,
                    };
                    Prepared::new(id, i, staged, previous, horizon)
                })
                .collect();
            let shards = (0..shard_count(users))
                .into_par_iter()
                .map(|shard| {
                    let lo = shard << SHARD_BITS;
                    let hi = ((lo as u64 + (1 << SHARD_BITS)).min(users as u64)) as u32;
                    let path = table.dir.join(segment::file_name(file_id, shard));
                    write_segment(&path, file_id, shard, &prepared, lo..hi)
                })
                .collect::<Result<Vec<_>>>();
            let chunk_written = match chunk_writer {
                Ok(writer) => writer.join().unwrap_or_else(|_| {
                    Err(Error::Internal("the id chunk writer panicked".into()))
                }),
                // No thread to spare: written here, after the segments.
                Err(_) => write_chunk(),
            };
            (fields, prepared, shards, chunk_written)
        });
        let shards = shards?;
        chunk_written?;
        let mut written: Vec<(u32, u64)> = Vec::new();
        let mut field_segments: Vec<Vec<(u32, u64)>> = vec![Vec::new(); prepared.len()];
        let mut field_bytes = vec![0u64; prepared.len()];
        let mut event_users = vec![0u64; prepared.len()];
        let mut total_bytes = 0u64;
        for (shard, w) in shards.into_iter().enumerate() {
            let Some(w) = w else { continue };
            let shard = shard as u32;
            for (pi, f) in w.fields.iter().enumerate() {
                if f.bytes > 0 {
                    field_bytes[pi] += f.bytes;
                    field_segments[pi].push((shard, file_id));
                }
                event_users[pi] += f.event_users;
            }
            total_bytes += w.bytes;
            written.push((shard, file_id));
        }
        fail_point("after_segments")?;
        if new_chunk.len() > 0 {
            manifest.chunks.push(ChunkRef {
                file_id,
                first: new_chunk.first(),
                count: new_chunk.len(),
            });
        }
        fail_point("after_ids")?;

        // Step 3: the new manifest.
        manifest.users = users;
        manifest.generation += 1;
        for (pi, p) in prepared.iter().enumerate() {
            let spec = &fields[p.index].spec;
            let version = VersionRecord {
                info: VersionInfo {
                    label: self.label.clone(),
                    created_ms: now,
                    users: p.users + event_users[pi],
                    distinct: p.distinct,
                    bytes: field_bytes[pi],
                },
                values: p.values.clone(),
                segments: std::mem::take(&mut field_segments[pi]),
            };
            match manifest.fields.iter_mut().find(|r| r.meta.id == p.id) {
                Some(r) => {
                    merge_spec(&mut r.meta.spec, spec);
                    r.meta.updated_ms = now;
                    r.versions.retain(|v| v.info.label != self.label);
                    r.versions.push(version);
                    let keep = manifest.keep_versions.max(1) as usize;
                    if r.versions.len() > keep {
                        let excess = r.versions.len() - keep;
                        r.versions.drain(..excess);
                    }
                }
                None => manifest.fields.push(FieldRecord {
                    meta: FieldMeta {
                        id: p.id,
                        spec: spec.clone(),
                        created_ms: now,
                        updated_ms: now,
                    },
                    versions: vec![version],
                }),
            }
        }
        let mut open: HashMap<(u32, u64), Arc<Segment>> = table.open_segments();
        for &(shard, id) in &written {
            let path = table.dir.join(segment::file_name(id, shard));
            open.insert((shard, id), Arc::new(Segment::open(&path)?));
        }
        let live = manifest.segment_files();
        open.retain(|k, _| live.contains(k));
        let snapshot =
            TableSnapshot::build(table.name.clone(), manifest, &open, base.dict.clone())?;
        fail_point("before_manifest")?;
        table.write_manifest(&snapshot.manifest)?;

        // Step 4: publish.
        let new_users = keys.own.len();
        if new_users > 0 {
            base.dict.get()?.write().append_owned(keys.own)?;
        }
        let generation = snapshot.generation();
        let fields = prepared.len();
        let mut st = match rt_guard.take() {
            Some(st) => st,
            None => table.rt.state.lock(),
        };
        for &fid in &self.compacts {
            st.frozen.remove(fid);
        }
        table.publish_locked(&mut st, snapshot, open);
        drop(st);

        // Step 5: files no version names any more.
        table.remove_unreferenced();
        Ok(LoadSummary {
            label: self.label,
            fields,
            new_users,
            users,
            bytes: total_bytes,
            generation,
        })
    }
}

/// The keys a commit writes: `chunk` for the new id-dictionary chunk (real-time users not yet
/// in a chunk, then the load's own; `None` when that is `own` alone), `own` for the load's own
/// new users (appended to the live dictionary at publish).
struct SettledKeys {
    chunk: Option<IdDictionary>,
    own: IdDictionary,
}

impl SettledKeys {
    fn chunk(&self) -> &IdDictionary {
        self.chunk.as_ref().unwrap_or(&self.own)
    }
}

impl Load<'_> {
    /// Fixes the ids of this load's new users after the real-time writes that happened while it
    /// was staged: a user a real-time write added meanwhile keeps that id; the others follow the
    /// last real-time id. Staged data is renumbered to match.
    fn settle_keys(&mut self) -> Result<SettledKeys> {
        let kind = self.base.key_kind();
        let persisted = self.base.manifest.users;
        let live = self.base.dict.get()?;
        let live = live.read();
        let live_end = live.end().max(self.base.users());
        let old_first = self.new_keys.first();
        let own = if live.end() == old_first {
            // No user was added to the live dictionary since the load began (it only grows, so
            // none of the staged keys is in it): the staged ids stand as they are.
            std::mem::replace(&mut self.new_keys, IdDictionary::new(kind, old_first))
        } else {
            let mut own = IdDictionary::new(kind, live_end);
            let mut map = Vec::with_capacity(self.new_keys.len() as usize);
            for id in old_first..self.new_keys.end() {
                let key = self
                    .new_keys
                    .key(id)
                    .ok_or_else(|| Error::Internal(format!("staged user {id} has no key")))?;
                map.push(match live.get(key) {
                    Some(existing) => existing,
                    None => own.push(key)?,
                });
            }
            let identity = map
                .iter()
                .enumerate()
                .all(|(i, &id)| id == old_first + i as u32);
            if !identity {
                for f in &mut self.fields {
                    remap_staged(&mut f.data, old_first, &map);
                }
            }
            own
        };
        if persisted == live_end {
            return Ok(SettledKeys { chunk: None, own });
        }
        let mut chunk = IdDictionary::new(kind, persisted);
        for id in persisted..live_end {
            let key = live
                .key(id)
                .ok_or_else(|| Error::Internal(format!("real-time user {id} has no key")))?;
            chunk.push(key)?;
        }
        chunk.append(&own)?;
        Ok(SettledKeys {
            chunk: Some(chunk),
            own,
        })
    }
}

/// Renumbers staged ids `old_first..` through `map`.
fn remap_staged(data: &mut Staged, old_first: u32, map: &[u32]) {
    let f = |id: u32| {
        if id >= old_first {
            map[(id - old_first) as usize]
        } else {
            id
        }
    };
    match data {
        Staged::Flag(b) => {
            let moved: Vec<u32> = b.iter().filter(|&id| id >= old_first).collect();
            if !moved.is_empty() {
                b.remove_range(old_first..);
                for id in moved {
                    b.add(f(id));
                }
            }
        }
        Staged::Values { pairs, .. } => pairs.all_pairs().iter_mut().for_each(|p| p.0 = f(p.0)),
        Staged::Ints(stage) => stage.all_pairs().iter_mut().for_each(|p| p.0 = f(p.0)),
        Staged::Events(days) => {
            for day in days.values_mut() {
                day.unbuild();
                day.pairs.iter_mut().for_each(|p| p.0 = f(p.0));
            }
        }
    }
}

fn mismatch(spec: &FieldSpec, expected: &'static str) -> Error {
    Error::KindMismatch {
        path: spec.path.clone(),
        actual: spec.kind.name(),
        expected,
    }
}

fn push_value(codes: &mut HashMap<String, u32>, pairs: &mut RunStage<u32>, id: u32, s: String) {
    let next = codes.len() as u32;
    let code = *codes.entry(s).or_insert(next);
    pairs.push(id, code);
}

/// Non-empty descriptive fields of a load overwrite the catalog's.
fn merge_spec(into: &mut FieldSpec, from: &FieldSpec) {
    for (dst, src) in [
        (&mut into.description, &from.description),
        (&mut into.owner, &from.owner),
        (&mut into.sensitivity, &from.sensitivity),
    ] {
        if !src.is_empty() {
            dst.clone_from(src);
        }
    }
    into.freshness = from.freshness;
}

/// `(id, value)` pairs sorted by id with one pair per id: the last one given (a stable sort
/// keeps arrival order within an id).
fn last_value_per_user<T>(mut pairs: Vec<(u32, T)>) -> Vec<(u32, T)> {
    if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        return pairs;
    }
    pairs.sort_by_key(|p| p.0);
    let mut out: Vec<(u32, T)> = Vec::with_capacity(pairs.len());
    for x in pairs {
        match out.last_mut() {
            Some(last) if last.0 == x.0 => *last = x,
            _ => out.push(x),
        }
    }
    out
}

/// How many distinct values `values` holds: counted in a bitset when they span less than
/// 2^24, else sorted.
fn distinct_values(values: impl Iterator<Item = i64> + Clone) -> u64 {
    let Some((min, max)) = values.clone().fold(None, |m, v| {
        Some(m.map_or((v, v), |(a, b): (i64, i64)| (a.min(v), b.max(v))))
    }) else {
        return 0;
    };
    let span = max.wrapping_sub(min) as u64;
    if span < 1 << 24 {
        let mut seen = vec![0u64; (span / 64 + 1) as usize];
        for v in values {
            let off = v.wrapping_sub(min) as u64;
            seen[(off / 64) as usize] |= 1 << (off % 64);
        }
        seen.iter().map(|w| u64::from(w.count_ones())).sum()
    } else {
        let mut all: Vec<i64> = values.collect();
        all.par_sort_unstable();
        all.dedup();
        all.len() as u64
    }
}

/// A staged field turned into its stored form: sorted values, deduplicated pairs.
struct Prepared<'a> {
    id: u32,
    index: usize,
    kind: FieldKind,
    /// Events: the new days.
    event_days: BTreeMap<i32, PreparedDay<'a>>,
    /// Events: days kept from the previous version, and that version.
    carried: Vec<i32>,
    previous: Option<crate::table::FieldRef<'a>>,
    flag: Option<&'a Bitmap>,
    /// Sorted value dictionary; codes in `pairs` refer to it.
    values: Vec<String>,
    /// Codes of enum/set, by id (then code), deduplicated.
    pairs: PreparedCodes,
    ints: PreparedInts<'a>,
    users: u64,
    distinct: u64,
}

impl<'a> Prepared<'a> {
    fn new(
        id: u32,
        index: usize,
        staged: &'a StagedField,
        previous: Option<crate::table::FieldRef<'a>>,
        horizon: u32,
    ) -> Self {
        let mut p = Prepared {
            id,
            index,
            kind: staged.spec.kind,
            event_days: BTreeMap::new(),
            carried: Vec::new(),
            previous: None,
            flag: None,
            values: Vec::new(),
            pairs: PreparedCodes::Pairs(Vec::new()),
            ints: PreparedInts::View(ById::Pairs(&[])),
            users: 0,
            distinct: 0,
        };
        match &staged.data {
            Staged::Flag(b) => {
                p.flag = Some(b);
                p.users = b.cardinality();
                p.distinct = u64::from(p.users > 0);
            }
            Staged::Values { codes, pairs } => {
                let mut by_name: Vec<(&String, u32)> = codes.iter().map(|(s, &c)| (s, c)).collect();
                by_name.sort_unstable();
                let mut remap = vec![0u32; by_name.len()];
                for (new, (_, old)) in by_name.iter().enumerate() {
                    remap[*old as usize] = new as u32;
                }
                let mut v = match pairs.only_run() {
                    // One code per user, in id order: nothing to sort or drop.
                    Some(ById::Run { first, values }) => PreparedCodes::Run {
                        first,
                        codes: values.iter().map(|&c| remap[c as usize]).collect(),
                    },
                    _ => {
                        let mut v = pairs.to_pairs();
                        for pair in &mut v {
                            pair.1 = remap[pair.1 as usize];
                        }
                        if staged.spec.kind == FieldKind::Enum {
                            v = last_value_per_user(v);
                        } else {
                            v.sort_unstable();
                            v.dedup();
                        }
                        PreparedCodes::Pairs(v)
                    }
                };
                // Values every pair dropped (overwritten) are not part of the version.
                let mut used = vec![false; by_name.len()];
                for c in v.view().values() {
                    used[c as usize] = true;
                }
                let mut compact = vec![NULL_CODE; by_name.len()];
                let mut values = Vec::new();
                for (code, (name, _)) in by_name.iter().enumerate() {
                    if used[code] {
                        compact[code] = values.len() as u32;
                        values.push((*name).clone());
                    }
                }
                v.recode(&compact);
                p.users = match &v {
                    PreparedCodes::Run { codes, .. } => codes.len() as u64,
                    // Sorted by id: a user's pairs are next to each other.
                    PreparedCodes::Pairs(v) => {
                        v.len() as u64 - v.windows(2).filter(|w| w[0].0 == w[1].0).count() as u64
                    }
                };
                p.distinct = values.len() as u64;
                p.values = values;
                p.pairs = v;
            }
            Staged::Events(days) => {
                for (&day, staged) in days {
                    if staged.pairs.is_empty() {
                        p.event_days.insert(day, PreparedDay::Built(&staged.built));
                        continue;
                    }
                    let pairs = &staged.pairs;
                    // A file sorted by user gives each day its users in order, once each: those
                    // pairs are used as they are, without a copy.
                    if staged.built.is_empty() && pairs.windows(2).all(|w| w[0].0 < w[1].0) {
                        p.event_days
                            .insert(day, PreparedDay::Pairs(Cow::Borrowed(&pairs[..])));
                        continue;
                    }
                    let mut v = pairs.clone();
                    v.extend(staged.built.values().flat_map(EventShard::pairs));
                    v.sort_unstable_by_key(|p| p.0);
                    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
                    for (id, c) in v {
                        match merged.last_mut() {
                            Some(last) if last.0 == id => last.1 = last.1.saturating_add(c),
                            _ => merged.push((id, c)),
                        }
                    }
                    p.event_days
                        .insert(day, PreparedDay::Pairs(Cow::Owned(merged)));
                }
                let previous_days = previous.map(|f| f.stored_event_days()).unwrap_or_default();
                let mut all: Vec<i32> = previous_days
                    .iter()
                    .copied()
                    .filter(|d| !p.event_days.contains_key(d))
                    .chain(p.event_days.keys().copied())
                    .collect();
                all.sort_unstable();
                // The horizon counts back from the newest day kept.
                if horizon > 0
                    && let Some(&newest) = all.last()
                {
                    let oldest = newest - horizon as i32 + 1;
                    all.retain(|&d| d >= oldest);
                    p.event_days.retain(|&d, _| d >= oldest);
                }
                p.carried = all
                    .iter()
                    .copied()
                    .filter(|d| !p.event_days.contains_key(d))
                    .collect();
                p.previous = previous.filter(|_| !p.carried.is_empty());
                p.distinct = all.len() as u64;
                p.values = all
                    .iter()
                    .map(|&d| crate::behaviour::format_day(d))
                    .collect();
            }
            Staged::Ints(stage) => {
                let ints = stage.prepared();
                p.users = ints.view().len() as u64;
                p.distinct = distinct_values(ints.view().values());
                p.ints = ints;
            }
        }
        p
    }

    /// This field's blobs for `shard` (ids `range`), in key order.
    fn shard_blobs(&self, shard: u32, range: std::ops::Range<u32>) -> Result<FieldBlobs<'_>> {
        let mut blobs: Vec<(BlobKey, i64, BlobData<'_>)> = Vec::new();
        let mut event_users = 0;
        let key = |role, key| BlobKey {
            field: self.id,
            role,
            key,
        };
        let rows = (range.end - range.start) as usize;
        match self.kind {
            FieldKind::Flag => {
                // Run-optimized before preparing: written as it is when the shard holds all of
                // it (as the optimized part would be), else its part.
                let flag = self.flag.expect("flag data");
                let within = flag.minimum().is_some_and(|m| m >= range.start)
                    && flag.maximum().is_some_and(|m| m < range.end);
                if within {
                    blobs.push((key(Role::Flag, 0), 0, BlobData::Whole(flag)));
                } else {
                    let mut b = flag.and(&Bitmap::from_range(range.clone()));
                    if !b.is_empty() {
                        b.run_optimize();
                        blobs.push((key(Role::Flag, 0), 0, BlobData::Bitmap(b)));
                    }
                }
            }
            FieldKind::Enum | FieldKind::Set => {
                let part = self.pairs.view().within(range.clone());
                if part.len() > 0 {
                    let mut per_code: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
                    for (id, c) in part.iter() {
                        per_code.entry(c).or_default().push(id);
                    }
                    for (c, ids) in per_code {
                        let mut b = crate::bitmap::from_sorted(&ids);
                        b.run_optimize();
                        blobs.push((key(Role::Value, c), 0, BlobData::Bitmap(b)));
                    }
                    if self.kind == FieldKind::Enum {
                        // One byte a user when every code fits below the byte's null.
                        let narrow = part.values().all(|c| c < u32::from(NULL_CODE8));
                        let role = if narrow { Role::Codes8 } else { Role::Codes };
                        blobs.push((
                            key(role, 0),
                            range.start as i64,
                            BlobData::Codes(part, range.clone(), narrow),
                        ));
                    } else {
                        let mut offsets = Vec::with_capacity(rows + 1);
                        let mut codes = Vec::with_capacity(part.len());
                        let mut it = part.iter().peekable();
                        offsets.push(0u32);
                        for id in range.clone() {
                            while let Some(&(pid, c)) = it.peek() {
                                if pid != id {
                                    break;
                                }
                                codes.push(c);
                                it.next();
                            }
                            offsets.push(codes.len() as u32);
                        }
                        blobs.push((
                            key(Role::SetOffsets, 0),
                            range.start as i64,
                            BlobData::U32(offsets),
                        ));
                        blobs.push((
                            key(Role::SetCodes, 0),
                            range.start as i64,
                            BlobData::U32(codes),
                        ));
                    }
                }
            }
            FieldKind::Event => {
                let mut union = Bitmap::new();
                for (&day, data) in &self.event_days {
                    let day_key = day as u32;
                    let mut push = |users, counts: Vec<(u32, BlobData<'a>)>| {
                        blobs.push((key(Role::EventDay, day_key), 0, users));
                        for (bit, s) in counts {
                            blobs.push((key(Role::EventCount, day_key << 5 | bit), 0, s));
                        }
                    };
                    match data {
                        PreparedDay::Pairs(pairs) => {
                            let lo = pairs.partition_point(|p| p.0 < range.start);
                            let hi = pairs.partition_point(|p| p.0 < range.end);
                            if lo == hi {
                                continue;
                            }
                            let built = EventShard::build(&pairs[lo..hi]);
                            union.or_inplace(&built.users);
                            let counts = built.counts.into_iter();
                            push(
                                BlobData::Bitmap(built.users),
                                counts.map(|(bit, s)| (bit, BlobData::Bitmap(s))).collect(),
                            );
                        }
                        PreparedDay::Built(shards) => {
                            let Some(built) = shards.get(&shard) else {
                                continue;
                            };
                            union.or_inplace(&built.users);
                            let counts = built.counts.iter();
                            push(
                                BlobData::Whole(&built.users),
                                counts.map(|(bit, s)| (*bit, BlobData::Whole(s))).collect(),
                            );
                        }
                    }
                }
                if let Some(prev) = &self.previous {
                    for (k, bytes) in prev.event_raw_blobs(shard, &self.carried)? {
                        if k.role == Role::EventDay {
                            union.or_inplace(
                                prev.event_day_in(shard, k.key as i32)?
                                    .unwrap_or(&Bitmap::new()),
                            );
                        }
                        blobs.push((key(k.role, k.key), 0, BlobData::Raw(bytes)));
                    }
                }
                event_users = union.cardinality();
                blobs.sort_by_key(|b| b.0);
            }
            _ => {
                let part = self.ints.view().within(range.clone());
                if part.len() > 0 {
                    let bsi = BsiBuilt::build_sorted(part);
                    blobs.push((
                        key(Role::BsiExists, 0),
                        bsi.base,
                        BlobData::Bitmap(bsi.exists),
                    ));
                    for (bit, s) in bsi.slices.into_iter().enumerate() {
                        blobs.push((key(Role::BsiSlice, bit as u32), 0, BlobData::Bitmap(s)));
                    }
                    blobs.push((
                        key(Role::Ints, 0),
                        range.start as i64,
                        BlobData::Ints(part, range.clone()),
                    ));
                }
            }
        }
        let blobs = blobs
            .into_iter()
            .map(|(key, aux, data)| Blob {
                key,
                aux,
                bytes: data.into_bytes(),
            })
            .collect();
        Ok(FieldBlobs { blobs, event_users })
    }
}

/// One new day of an event field, prepared for writing.
enum PreparedDay<'a> {
    /// `(id, count)` pairs, sorted by id with counts summed.
    Pairs(Cow<'a, [(u32, u32)]>),
    /// Built per shard while staging.
    Built(&'a BTreeMap<u32, EventShard>),
}

/// A blob ready to be written to a segment.
struct Blob<'a> {
    key: BlobKey,
    aux: i64,
    bytes: BlobBytes<'a>,
}

/// The bytes of a [`Blob`]: ready, or (columns) encoded as they are written, through a small
/// buffer, rather than built whole beforehand.
enum BlobBytes<'a> {
    Ready(std::borrow::Cow<'a, [u8]>),
    /// Pieces written one after the other.
    Parts(Vec<Vec<u8>>),
    /// A bitmap, serialized into the writer's scratch buffer as it is written (while the
    /// bytes are in cache, and with no buffer of its own).
    Bitmap(&'a Bitmap),
    /// An `i64` per user of the range: its value, 0 for the others.
    Ints(ById<'a, i64>, std::ops::Range<u32>),
    /// A code per user of the range: its code, [`NULL_CODE`] for the others; a `u8` each
    /// when narrow (every code below [`NULL_CODE8`], which stands for none), else a `u32`.
    Codes(ById<'a, u32>, std::ops::Range<u32>, bool),
}

impl Blob<'_> {
    /// The bytes of a ready or pieced blob (tests).
    #[cfg(test)]
    fn ready_bytes(&self) -> Vec<u8> {
        match &self.bytes {
            BlobBytes::Ready(b) => b.to_vec(),
            BlobBytes::Parts(parts) => parts.concat(),
            BlobBytes::Bitmap(b) => b.serialize::<croaring::Portable>(),
            BlobBytes::Ints(..) | BlobBytes::Codes(..) => unreachable!("a column blob"),
        }
    }

    /// Writes this blob to `w`; returns its length.
    fn write(&self, w: &mut SegmentWriter, scratch: &mut Vec<u8>) -> Result<u64> {
        match &self.bytes {
            BlobBytes::Ready(b) => {
                w.add_bytes(self.key, self.aux, b)?;
                Ok(b.len() as u64)
            }
            BlobBytes::Bitmap(b) => {
                scratch.clear();
                let _ = b.serialize_into_vec::<croaring::Portable>(scratch);
                w.add_bytes(self.key, self.aux, scratch)?;
                Ok(scratch.len() as u64)
            }
            BlobBytes::Parts(parts) => w.add_streamed(self.key, self.aux, |s| {
                parts.iter().try_for_each(|p| s.write(p))
            }),
            BlobBytes::Ints(values, range) => w.add_streamed(self.key, self.aux, |s| {
                stream_column(s, *values, range.clone(), 0, |v, out| {
                    out.extend_from_slice(&v.to_le_bytes())
                })
            }),
            BlobBytes::Codes(pairs, range, false) => w.add_streamed(self.key, self.aux, |s| {
                stream_column(s, *pairs, range.clone(), NULL_CODE, |v, out| {
                    out.extend_from_slice(&v.to_le_bytes())
                })
            }),
            BlobBytes::Codes(pairs, range, true) => w.add_streamed(self.key, self.aux, |s| {
                stream_column(s, *pairs, range.clone(), NULL_CODE, |v, out| {
                    out.push(u8::try_from(v).unwrap_or(NULL_CODE8))
                })
            }),
        }
    }
}

/// Writes to `s` the column of the ids of `range`: each id's value in `values`, `absent` for
/// the others, each encoded by `encode`, through a small buffer.
fn stream_column<T: Copy>(
    s: &mut BlobSink<'_>,
    values: ById<'_, T>,
    range: std::ops::Range<u32>,
    absent: T,
    encode: impl Fn(T, &mut Vec<u8>),
) -> Result<()> {
    const FLUSH: usize = 64 * 1024;
    let mut buf = Vec::with_capacity(FLUSH + 64);
    let mut next = range.start;
    let mut pairs = values.within(range.clone()).iter().peekable();
    while next < range.end {
        match pairs.peek() {
            Some(&(id, v)) if id == next => {
                encode(v, &mut buf);
                pairs.next();
            }
            _ => encode(absent, &mut buf),
        }
        next += 1;
        if buf.len() >= FLUSH {
            s.write(&buf)?;
            buf.clear();
        }
    }
    s.write(&buf)
}

/// One field's blobs for one shard.
struct FieldBlobs<'a> {
    blobs: Vec<Blob<'a>>,
    /// Events: users who did the event on some kept day in the shard.
    event_users: u64,
}

/// What one field wrote to one segment.
struct FieldWritten {
    bytes: u64,
    event_users: u64,
}

/// A segment written by [`write_segment`].
struct SegmentWritten {
    /// Per field of `prepared`, in order.
    fields: Vec<FieldWritten>,
    bytes: u64,
}

/// Writes the segment of `shard` (ids `range`) at `path`, fsynced: every field's blobs, then
/// the forward index of flags. The blobs are built in parallel (fields, and blocks of the
/// forward index) and written in key order. `None` (and no file) when no field has data in
/// the shard.
fn write_segment(
    path: &std::path::Path,
    file_id: u64,
    shard: u32,
    prepared: &[Prepared<'_>],
    range: std::ops::Range<u32>,
) -> Result<Option<SegmentWritten>> {
    // Fields are built a few at a time in parallel and written at once, while their bytes
    // are still in cache, beside the forward index (whose blobs come last).
    let (fields, forward) = rayon::join(
        || -> Result<(Option<SegmentWriter>, Vec<FieldWritten>)> {
            let mut w: Option<SegmentWriter> = None;
            let mut scratch = Vec::new();
            let mut written = Vec::with_capacity(prepared.len());
            for chunk in prepared.chunks(4 * rayon::current_num_threads()) {
                let built = chunk
                    .par_iter()
                    .map(|p| p.shard_blobs(shard, range.clone()))
                    .collect::<Result<Vec<_>>>()?;
                for f in built {
                    let mut bytes = 0u64;
                    for b in &f.blobs {
                        if w.is_none() {
                            w = Some(SegmentWriter::create(path, file_id, shard)?);
                        }
                        bytes += b.write(w.as_mut().expect("created above"), &mut scratch)?;
                    }
                    written.push(FieldWritten {
                        bytes,
                        event_users: f.event_users,
                    });
                }
            }
            // The fields reach the disk while the forward index is built.
            if let Some(w) = &mut w {
                w.start_sync()?;
            }
            Ok((w, written))
        },
        || {
            let flags: Vec<(u32, &Bitmap)> = prepared
                .iter()
                .filter_map(|p| p.flag.map(|b| (p.id, b)))
                .collect();
            forward_index(&flags, range.clone())
        },
    );
    let (w, written) = fields?;
    let forward = forward?;
    let Some(mut w) = w else {
        return Ok(None);
    };
    let mut scratch = Vec::new();
    for b in &forward {
        b.write(&mut w, &mut scratch)?;
    }
    let bytes = w.finish()?;
    Ok(Some(SegmentWritten {
        fields: written,
        bytes,
    }))
}

/// Rows of a shard whose forward index is built as one piece (one bitmap container).
const FORWARD_BLOCK: u32 = 1 << 16;

/// The shard's forward index of flags: for each user, the flags of this load it has, so that
/// a portrait reads one row instead of testing every flag's bitmap. `flags` are the load's
/// flags as `(field id, members)`, by field id; the index covers those with members in the
/// shard (none: no blobs). Blocks of [`FORWARD_BLOCK`] rows are built in parallel.
fn forward_index(
    flags: &[(u32, &Bitmap)],
    range: std::ops::Range<u32>,
) -> Result<Vec<Blob<'static>>> {
    let flags: Vec<(u32, &Bitmap)> = flags
        .iter()
        .copied()
        .filter(|(_, b)| b.intersect_with_range(range.clone()))
        .collect();
    if flags.is_empty() {
        return Ok(Vec::new());
    }
    if flags.len() > u16::MAX as usize + 1 {
        return Err(Error::LimitExceeded(format!(
            "one load holds at most 65,536 flags per shard, got {}",
            flags.len()
        )));
    }
    let blocks: Vec<std::ops::Range<u32>> = range
        .clone()
        .step_by(FORWARD_BLOCK as usize)
        .map(|lo| lo..lo.saturating_add(FORWARD_BLOCK).min(range.end))
        .collect();
    // Per block: the number of flags of each row, and the rows' flag positions in row order.
    let parts: Vec<(Vec<u32>, Vec<u8>)> = blocks
        .into_par_iter()
        .map_init(Vec::new, |members, block| {
            forward_block(&flags, block, members)
        })
        .collect();
    let rows = (range.end - range.start) as usize;
    let mut offsets = Vec::with_capacity((rows + 1) * 4);
    let mut at = 0u32;
    offsets.extend_from_slice(&at.to_le_bytes());
    let mut positions = Vec::with_capacity(parts.len());
    for (counts, pos) in parts {
        for c in counts {
            at += c;
            offsets.extend_from_slice(&at.to_le_bytes());
        }
        positions.push(pos);
    }
    let key = |role| BlobKey {
        field: segment::FORWARD_FIELD,
        role,
        key: 0,
    };
    let fields: Vec<u8> = flags.iter().flat_map(|(id, _)| id.to_le_bytes()).collect();
    Ok(vec![
        Blob {
            key: key(Role::ForwardOffsets),
            aux: range.start as i64,
            bytes: BlobBytes::Ready(offsets.into()),
        },
        Blob {
            key: key(Role::ForwardFlags),
            aux: range.start as i64,
            bytes: BlobBytes::Parts(positions),
        },
        Blob {
            key: key(Role::ForwardFields),
            aux: 0,
            bytes: BlobBytes::Ready(fields.into()),
        },
    ])
}

/// Rows of a [`forward_block`] whose positions are placed together: their part of the
/// output stays in cache while every flag's members among them are scattered into it.
const FORWARD_STRIPE: u32 = 2048;

/// One block of [`forward_index`]: per row of `block`, how many of `flags` it has, and the
/// positions (in `flags`) of each row's flags, ascending, rows in order, as `u16` LE bytes.
/// `members` is scratch, reused from block to block (fresh memory costs a page fault every 4
/// KiB).
fn forward_block(
    flags: &[(u32, &Bitmap)],
    block: std::ops::Range<u32>,
    members: &mut Vec<u32>,
) -> (Vec<u32>, Vec<u8>) {
    let rows = (block.end - block.start) as usize;
    // The members of every flag within the block, flag after flag.
    members.clear();
    let mut ends: Vec<usize> = Vec::with_capacity(flags.len());
    for (_, b) in flags {
        let n = b.range_cardinality(block.clone()) as usize;
        if n > 0 {
            let at = members.len();
            members.resize(at + n, 0);
            let mut it = b.iter();
            it.reset_at_or_after(block.start);
            let got = it.next_many(&mut members[at..]);
            members.truncate(at + got);
        }
        ends.push(members.len());
    }
    let mut counts = vec![0u32; rows];
    let mut raw = vec![0u8; members.len() * 2];
    // A stripe of rows at a time, so that what a stripe touches stays in cache: each flag's
    // members in the stripe are counted per row, then placed flag after flag (so each row's
    // positions ascend). `from[pos]`: flag `pos`'s first member not placed yet; `to[pos]`:
    // past its last member in the stripe; `fill[r]`: where row `r` of the stripe puts its next
    // position.
    let mut from: Vec<usize> = Vec::with_capacity(flags.len());
    from.push(0);
    from.extend_from_slice(&ends[..ends.len().saturating_sub(1)]);
    let mut to = vec![0usize; flags.len()];
    let mut fill = vec![0u32; FORWARD_STRIPE as usize];
    let mut placed = 0u32;
    let mut stripe = block.start;
    while stripe < block.end {
        let stripe_end = stripe.saturating_add(FORWARD_STRIPE).min(block.end);
        let first = (stripe - block.start) as usize;
        let stripe_counts = &mut counts[first..(stripe_end - block.start) as usize];
        for ((&start, &end), to) in from.iter().zip(&ends).zip(&mut to) {
            let mut m = start;
            while m < end && members[m] < stripe_end {
                stripe_counts[(members[m] - stripe) as usize] += 1;
                m += 1;
            }
            *to = m;
        }
        for (f, &c) in fill.iter_mut().zip(stripe_counts.iter()) {
            *f = placed;
            placed += c;
        }
        for (pos, (start, &end)) in from.iter_mut().zip(&to).enumerate() {
            let bytes = (pos as u16).to_le_bytes();
            for &id in &members[*start..end] {
                let slot = &mut fill[(id - stripe) as usize];
                let i = *slot as usize * 2;
                raw[i..i + 2].copy_from_slice(&bytes);
                *slot += 1;
            }
            *start = end;
        }
        stripe = stripe_end;
    }
    (counts, raw)
}

/// `v` as little-endian bytes.
fn le_u32(v: &[u32]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(v.len() * 4);
    for x in v {
        raw.extend_from_slice(&x.to_le_bytes());
    }
    raw
}

enum BlobData<'a> {
    /// Bytes copied as they are from a previous version's segment (already verified).
    Raw(&'a [u8]),
    Bitmap(Bitmap),
    /// A staged bitmap written whole, serialized as it is written.
    Whole(&'a Bitmap),
    U32(Vec<u32>),
    /// See [`BlobBytes::Ints`].
    Ints(ById<'a, i64>, std::ops::Range<u32>),
    /// See [`BlobBytes::Codes`].
    Codes(ById<'a, u32>, std::ops::Range<u32>, bool),
}

impl<'a> BlobData<'a> {
    /// The bytes written to the segment: bitmaps in CRoaring's portable format, columns as
    /// little-endian integers.
    fn into_bytes(self) -> BlobBytes<'a> {
        match self {
            BlobData::Raw(raw) => BlobBytes::Ready(raw.into()),
            BlobData::Bitmap(b) => BlobBytes::Ready(b.serialize::<croaring::Portable>().into()),
            BlobData::Whole(b) => BlobBytes::Bitmap(b),
            BlobData::U32(v) => BlobBytes::Ready(le_u32(&v).into()),
            BlobData::Ints(pairs, range) => BlobBytes::Ints(pairs, range),
            BlobData::Codes(pairs, range, narrow) => BlobBytes::Codes(pairs, range, narrow),
        }
    }
}

#[cfg(test)]
thread_local! {
    static FAIL_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Makes the next commit on this thread fail at the named step (tests only).
#[cfg(test)]
pub(crate) fn fail_next_commit_at(step: &'static str) {
    FAIL_AT.with(|f| f.set(Some(step)));
}

#[cfg(test)]
fn fail_point(step: &'static str) -> Result<()> {
    if FAIL_AT.with(|f| f.get()) == Some(step) {
        FAIL_AT.with(|f| f.set(None));
        return Err(Error::Internal(format!("injected failure at {step}")));
    }
    Ok(())
}

#[cfg(not(test))]
#[inline(always)]
fn fail_point(_step: &'static str) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use croaring::Bitmap;
    use proptest::prelude::*;

    use super::{FORWARD_BLOCK, forward_index};
    use crate::storage::segment::Role;
    use crate::{Database, FieldKind, FieldSpec, KeyKind, Value, Write};

    /// Reserving is only a hint: any size (even more than memory holds) is accepted, on every
    /// kind of field, and what is staged afterwards is published unchanged.
    #[test]
    fn reserving_values_is_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let t = db.create_table("users", KeyKind::U64).unwrap();
        let mut load = t.load("v1").unwrap();
        let age = load.field(FieldSpec::new("age", FieldKind::Int)).unwrap();
        let city = load.field(FieldSpec::new("city", FieldKind::Enum)).unwrap();
        let vip = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
        for (f, n) in [(age, u64::MAX), (city, 1 << 62), (vip, 10), (age, 3)] {
            load.reserve_values(f, n).unwrap();
        }
        let ids: Vec<u32> = (0..3u64)
            .map(|k| load.user(crate::KeyRef::U64(k)).unwrap())
            .collect();
        load.value_units(age, &[(ids[0], 30), (ids[2], 41)])
            .unwrap();
        load.value_codes(city, &["Paris"], &[(ids[1], 0)]).unwrap();
        load.commit().unwrap();
        let snap = t.snapshot();
        let age = snap.field("age").unwrap();
        assert_eq!(age.value_of(ids[0]).unwrap(), Some(Value::Int(30)));
        assert_eq!(age.value_of(ids[1]).unwrap(), None);
        assert_eq!(age.value_of(ids[2]).unwrap(), Some(Value::Int(41)));
        let city = snap.field("city").unwrap();
        assert_eq!(
            city.value_of(ids[1]).unwrap(),
            Some(Value::Str("Paris".into()))
        );
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        #[test]
        fn distinct_values_match_a_set(
            values in proptest::collection::vec(
                prop_oneof![-40i64..40, any::<i64>(), Just(i64::MIN), Just(i64::MAX)],
                0..300,
            ),
            narrow in any::<bool>(),
        ) {
            let values: Vec<i64> = if narrow {
                values.into_iter().map(|v| v % 1000).collect()
            } else {
                values
            };
            let want = values.iter().collect::<std::collections::BTreeSet<_>>().len() as u64;
            prop_assert_eq!(super::distinct_values(values.iter().copied()), want);
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(32))]
        /// The forward index of a shard, built in blocks, against its definition: per row of
        /// the range, the positions of the flags (among those with members in the range) that
        /// hold it, ascending.
        #[test]
        fn forward_index_matches_its_definition(
            flags in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![0u32..3 * FORWARD_BLOCK + 50, Just(FORWARD_BLOCK - 1), 4 * FORWARD_BLOCK..5 * FORWARD_BLOCK],
                    0..3000,
                ),
                1..12,
            ),
            dense in any::<bool>(),
            start in 0u32..2,
        ) {
            let base = 1u32 << 20;
            let mut bitmaps: Vec<Bitmap> = flags
                .iter()
                .map(|ids| ids.iter().map(|&i| base + i).collect())
                .collect();
            if dense {
                bitmaps[0].add_range(base..base + FORWARD_BLOCK + 9000);
            }
            let flags: Vec<(u32, &Bitmap)> = bitmaps.iter().enumerate().map(|(i, b)| (i as u32 * 3 + 1, b)).collect();
            let range = base + start * 7..base + 3 * FORWARD_BLOCK + 17;
            let blobs = forward_index(&flags, range.clone()).unwrap();
            let present: Vec<&(u32, &Bitmap)> = flags.iter().filter(|(_, b)| b.range_cardinality(range.clone()) > 0).collect();
            if present.is_empty() {
                prop_assert!(blobs.is_empty());
                return Ok(());
            }
            let mut offsets = vec![0u32];
            let mut positions = Vec::new();
            for id in range.clone() {
                for (pos, (_, b)) in present.iter().enumerate() {
                    if b.contains(id) {
                        positions.push(pos as u16);
                    }
                }
                offsets.push(positions.len() as u32);
            }
            let le32 = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            let le16 = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            let fields: Vec<u32> = present.iter().map(|(id, _)| *id).collect();
            prop_assert_eq!(blobs.len(), 3);
            prop_assert_eq!(blobs[0].key.role, Role::ForwardOffsets);
            prop_assert_eq!(blobs[0].aux, range.start as i64);
            prop_assert_eq!(blobs[0].ready_bytes(), le32(&offsets));
            prop_assert_eq!(blobs[1].key.role, Role::ForwardFlags);
            prop_assert_eq!(blobs[1].ready_bytes(), le16(&positions));
            prop_assert_eq!(blobs[2].key.role, Role::ForwardFields);
            prop_assert_eq!(blobs[2].ready_bytes(), le32(&fields));
        }
    }

    fn keys_of(db: &Database) -> Vec<String> {
        let snap = db.table("users").unwrap().snapshot();
        (0..snap.users())
            .map(|id| snap.key_of(id).unwrap().unwrap().to_string())
            .collect()
    }

    fn vip(db: &Database) -> Vec<u32> {
        let snap = db.table("users").unwrap().snapshot();
        snap.field("vip").unwrap().flag_bitmap().unwrap().to_vec()
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(48))]
        /// `users_many` gives the ids `user` gives one key at a time, whatever the batches:
        /// new keys in increasing order (appended without lookups), repeats, keys the table
        /// already holds, keys going back.
        #[test]
        fn users_many_is_user_one_at_a_time(
            table_keys in proptest::collection::vec(0u64..400, 0..50),
            batches in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![0u64..400, 400u64..800], 0..40),
                1..8,
            ),
            sort in any::<bool>(),
            straddle in any::<bool>(),
            strings in any::<bool>(),
        ) {
            // `straddle`: each batch but the first begins with the last key of the one before,
            // as batches of a file sorted by user cut a user's rows.
            let mut batches = batches;
            if sort {
                for b in &mut batches {
                    b.sort_unstable();
                    b.dedup();
                }
            }
            if straddle {
                for i in 1..batches.len() {
                    if let Some(&last) = batches[i - 1].last() {
                        batches[i].insert(0, last);
                    }
                }
            }
            // String keys whose order is the numbers' (`strings`), so that sorted batches of
            // new users take the increasing-strings path.
            let texts: Vec<String> = (0..800u64).map(|k| format!("k{k:04}")).collect();
            let key = |k: u64| if strings {
                crate::KeyRef::Str(&texts[k as usize])
            } else {
                crate::KeyRef::U64(k)
            };
            let dir = tempfile::tempdir().unwrap();
            let db = Database::open(dir.path()).unwrap();
            let kind = if strings { KeyKind::Str } else { KeyKind::U64 };
            let t = db.create_table("users", kind).unwrap();
            let mut load = t.load("v0").unwrap();
            for &k in &table_keys {
                load.user(key(k)).unwrap();
            }
            load.commit().unwrap();
            let mut many = t.load("v1").unwrap();
            let mut got = Vec::new();
            for batch in &batches {
                let keys: Vec<crate::KeyRef<'_>> = batch.iter().map(|&k| key(k)).collect();
                let mut ids = Vec::new();
                many.users_many(&keys, &mut ids).unwrap();
                got.extend(ids);
            }
            drop(many);
            let mut one = t.load("v1").unwrap();
            let mut want = Vec::new();
            for batch in &batches {
                for &k in batch {
                    want.push(one.user(key(k)).unwrap());
                }
            }
            prop_assert_eq!(got, want);
        }
    }

    /// The three ways a load's new users settle: nothing happened meanwhile; real-time users
    /// came before the load and are not in a chunk yet; real-time writes added users (one of
    /// them a key the load staged) while the load was staged. Ids, chunks and flags must agree,
    /// before and after a reopen.
    #[test]
    fn new_users_settle_around_real_time_users() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::open(dir.path()).unwrap();
            let t = db.create_table("users", KeyKind::Str).unwrap();
            let mut load = t.load("v1").unwrap();
            let f = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
            load.flag(f, "a").unwrap();
            load.flag(f, "b").unwrap();
            load.commit().unwrap();
            assert_eq!(keys_of(&db), ["a", "b"]);

            // A real-time user not in a chunk yet, then a load of new users.
            t.write(&[Write::set("rt1", "vip", Value::Flag)]).unwrap();
            let mut load = t.load("v2").unwrap();
            let f = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
            load.flag(f, "c").unwrap();
            load.flag(f, "a").unwrap();
            load.commit().unwrap();
            assert_eq!(keys_of(&db), ["a", "b", "rt1", "c"]);

            // Real-time users added while a load is staged, one of them a staged key.
            let mut load = t.load("v3").unwrap();
            let f = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
            load.flag(f, "d").unwrap();
            load.flag(f, "e").unwrap();
            t.write(&[
                Write::set("e", "vip", Value::Flag),
                Write::set("rt2", "vip", Value::Flag),
            ])
            .unwrap();
            load.flag(f, "f").unwrap();
            load.commit().unwrap();
            assert_eq!(keys_of(&db), ["a", "b", "rt1", "c", "e", "rt2", "d", "f"]);
            // The load replaced the flag; the real-time changes stay on top.
            assert_eq!(vip(&db), [2, 4, 5, 6, 7]);

            // Nothing meanwhile, real-time users already in a chunk: the staged ids stand.
            let mut load = t.load("v4").unwrap();
            let f = load.field(FieldSpec::new("vip", FieldKind::Flag)).unwrap();
            load.flag(f, "g").unwrap();
            load.flag(f, "a").unwrap();
            load.commit().unwrap();
            assert_eq!(
                keys_of(&db),
                ["a", "b", "rt1", "c", "e", "rt2", "d", "f", "g"]
            );
        }
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(
            keys_of(&db),
            ["a", "b", "rt1", "c", "e", "rt2", "d", "f", "g"]
        );
        db.table("users")
            .unwrap()
            .snapshot()
            .check_integrity()
            .unwrap();
    }
}
