//! The real-time delta as readers see it: per field and shard, the bitmaps the delta changed,
//! already merged with the stored version, so every read primitive just picks the merged bitmap
//! when there is one.
//!
//! An [`Overlay`] is immutable once a snapshot holds it. The writer keeps its own copy whose
//! bitmaps are shared (`Arc`) with the published one, and changes them copy-on-write: a batch
//! clones only the bitmaps it touches, never the whole delta.
//!
//! What each kind keeps per shard:
//! - flag: the merged member bitmap;
//! - enum and set: the merged bitmaps of the values the delta touched (other values read the
//!   segment), plus `changed`, the users whose value the delta set or cleared, so a point
//!   lookup knows when the stored column is stale;
//! - event: per day, a patch of each changed user's total count that day; the merged day (who,
//!   and the slices of `count - 1`, with their serialized bytes for the behaviour kernels) is
//!   built on first read like the numeric merge;
//! - numeric: a patch (the new value of each changed user), cheap to copy; the stored BSI with
//!   the patch merged is built on the first read that needs it and kept until the next write
//!   to that shard (readers pay for the merge once per change, writers never copy slices).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use croaring::Bitmap;

use crate::bitmap::bsi::BsiRef;

/// The delta of every field, as of one published batch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overlay {
    /// Users known to the table including those real-time writes added (0: none added).
    pub(crate) users: u32,
    /// By field id.
    pub(crate) fields: HashMap<u32, Arc<FieldOverlay>>,
}

impl Overlay {
    /// The overlay of `field` in `shard`, if the delta touched it there.
    pub(crate) fn shard(&self, field: u32, shard: u32) -> Option<&ShardOverlay> {
        self.fields
            .get(&field)?
            .shards
            .get(shard as usize)?
            .as_deref()
    }
}

/// One field's delta.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldOverlay {
    /// Enum and set: the stored version's sorted values followed by values only real-time
    /// writes introduced (codes `base_values..`). Empty when the delta added no value.
    pub(crate) values: Vec<String>,
    /// Number of values of the stored version (the sorted prefix of `values`).
    pub(crate) base_values: usize,
    /// Event fields: the stored days and the days real-time appends added, ascending. Empty
    /// when the delta added no day.
    pub(crate) event_days: Vec<i32>,
    /// By shard index.
    pub(crate) shards: Vec<Option<Arc<ShardOverlay>>>,
}

/// One field's delta in one shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardOverlay {
    /// Users whose value the delta set or cleared.
    pub(crate) changed: Bitmap,
    pub(crate) data: OverlayData,
}

/// The merged data of one field in one shard.
#[derive(Debug, Clone)]
pub(crate) enum OverlayData {
    Flag(Arc<Bitmap>),
    /// Merged bitmaps of the value codes the delta touched.
    Values(BTreeMap<u32, Arc<Bitmap>>),
    Bsi(BsiPatch),
    /// Event days the delta appended to, by day.
    Events(BTreeMap<i32, Arc<DayPatch>>),
}

/// Real-time appends to one event on one day in one shard: each changed user's total count
/// that day (stored count included), with the merged day lazily built for the behaviour
/// kernels, which read day bitmaps as serialized bytes.
#[derive(Debug, Default)]
pub(crate) struct DayPatch {
    log: PatchLog<u32>,
    merged: std::sync::OnceLock<MergedDay>,
}

impl Clone for DayPatch {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            merged: std::sync::OnceLock::new(),
        }
    }
}

/// One event day of one shard with the delta merged: who did it, and the slices of
/// `count - 1`, each with its portable serialization.
#[derive(Debug)]
pub(crate) struct MergedDay {
    pub(crate) users: Bitmap,
    pub(crate) users_bytes: Vec<u8>,
    /// `(bit, slice, bytes)`, ascending, non-empty slices only.
    pub(crate) counts: Vec<(u32, Bitmap, Vec<u8>)>,
}

impl DayPatch {
    /// Records `id`'s total count that day.
    pub(crate) fn record(&mut self, id: u32, total: u32) {
        self.merged = std::sync::OnceLock::new();
        self.log.record(id, total);
    }

    /// The day with the patch merged over the stored users and count slices.
    pub(crate) fn merged(&self, stored: Option<&Bitmap>, counts: &[(u32, &Bitmap)]) -> &MergedDay {
        self.merged.get_or_init(|| {
            let patch = self.log.all();
            let ids = Bitmap::of(&patch.keys().copied().collect::<Vec<u32>>());
            let mut users = stored.cloned().unwrap_or_default();
            users.or_inplace(&ids);
            let mut slices: Vec<Bitmap> = Vec::new();
            for &(bit, b) in counts {
                let bit = bit as usize;
                if slices.len() <= bit {
                    slices.resize_with(bit + 1, Bitmap::new);
                }
                slices[bit] = b.andnot(&ids);
            }
            for (&id, &total) in &patch {
                let mut c = total.saturating_sub(1);
                while c != 0 {
                    let bit = c.trailing_zeros() as usize;
                    if slices.len() <= bit {
                        slices.resize_with(bit + 1, Bitmap::new);
                    }
                    slices[bit].add(id);
                    c &= c - 1;
                }
            }
            let portable = |b: &Bitmap| b.serialize::<croaring::Portable>();
            MergedDay {
                users_bytes: portable(&users),
                users,
                counts: slices
                    .into_iter()
                    .enumerate()
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(bit, s)| {
                        let bytes = portable(&s);
                        (bit as u32, s, bytes)
                    })
                    .collect(),
            }
        })
    }
}

/// Folded into the sorted part once this many recent changes accumulate.
const RECENT_LIMIT: usize = 512;

/// The latest value per user, cheap to copy: a sorted part shared between snapshots and a
/// short list of newer changes, folded into the sorted part when it grows.
#[derive(Debug, Clone)]
pub(crate) struct PatchLog<V> {
    /// One value per id, sorted by id.
    sorted: Arc<Vec<(u32, V)>>,
    /// Newer values in arrival order (an id may repeat: the last one counts).
    recent: Vec<(u32, V)>,
}

impl<V> Default for PatchLog<V> {
    fn default() -> Self {
        Self {
            sorted: Arc::new(Vec::new()),
            recent: Vec::new(),
        }
    }
}

impl<V: Copy> PatchLog<V> {
    /// Records the new value of `id`.
    pub(crate) fn record(&mut self, id: u32, v: V) {
        self.recent.push((id, v));
        if self.recent.len() >= RECENT_LIMIT {
            // Last value per id (a stable sort keeps arrival order within an id), then one
            // linear merge with the sorted part, the recent value winning.
            let mut recent = std::mem::take(&mut self.recent);
            recent.sort_by_key(|c| c.0);
            recent.dedup_by(|later, earlier| {
                if later.0 == earlier.0 {
                    *earlier = *later;
                    true
                } else {
                    false
                }
            });
            let old = &self.sorted;
            let mut merged = Vec::with_capacity(old.len() + recent.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < recent.len() {
                match (old.get(i), recent.get(j)) {
                    (Some(a), Some(b)) if a.0 == b.0 => {
                        merged.push(*b);
                        i += 1;
                        j += 1;
                    }
                    (Some(a), Some(b)) if a.0 < b.0 => {
                        merged.push(*a);
                        i += 1;
                    }
                    (Some(a), None) => {
                        merged.push(*a);
                        i += 1;
                    }
                    (_, Some(b)) => {
                        merged.push(*b);
                        j += 1;
                    }
                    (None, None) => break,
                }
            }
            self.sorted = Arc::new(merged);
        }
    }

    /// The latest value of `id`, if it has one.
    pub(crate) fn get(&self, id: u32) -> Option<V> {
        if let Some(&(_, v)) = self.recent.iter().rev().find(|c| c.0 == id) {
            return Some(v);
        }
        self.sorted
            .binary_search_by_key(&id, |c| c.0)
            .ok()
            .map(|i| self.sorted[i].1)
    }

    /// The latest value of every id, by id.
    pub(crate) fn all(&self) -> BTreeMap<u32, V> {
        let mut all: BTreeMap<u32, V> = self.sorted.iter().copied().collect();
        all.extend(self.recent.iter().copied());
        all
    }
}

/// The real-time changes of a numeric field in one shard.
#[derive(Debug, Default)]
pub(crate) struct BsiPatch {
    log: PatchLog<Option<i64>>,
    /// The stored BSI with this patch merged, built on first use.
    merged: std::sync::OnceLock<OwnedBsi>,
}

impl Clone for BsiPatch {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            // A clone is about to change: its merge is built afresh when read.
            merged: std::sync::OnceLock::new(),
        }
    }
}

impl BsiPatch {
    /// Records the new value of `id` (`None`: cleared).
    pub(crate) fn record(&mut self, id: u32, v: Option<i64>) {
        self.merged = std::sync::OnceLock::new();
        self.log.record(id, v);
    }

    /// The latest change of `id`: `Some(None)` when it was cleared, `None` when unchanged.
    pub(crate) fn get(&self, id: u32) -> Option<Option<i64>> {
        self.log.get(id)
    }

    /// The final change of every changed user, by id.
    pub(crate) fn changes(&self) -> BTreeMap<u32, Option<i64>> {
        self.log.all()
    }

    /// The stored BSI (`stored`, of this shard) with the patch merged; `changed` holds every
    /// id the patch touches. Built once, on first use.
    pub(crate) fn merged(&self, stored: Option<BsiRef<'_>>, changed: &Bitmap) -> &OwnedBsi {
        self.merged.get_or_init(|| {
            let mut out = match stored {
                Some(s) => OwnedBsi {
                    exists: Arc::new(s.exists.andnot(changed)),
                    base: s.base,
                    slices: s
                        .slices
                        .iter()
                        .map(|x| Arc::new(x.andnot(changed)))
                        .collect(),
                },
                None => OwnedBsi::default(),
            };
            let changes = self.changes();
            // Rebase once for the smallest new value rather than once per smaller value.
            if let Some(min) = changes.values().flatten().min().copied()
                && !out.exists.is_empty()
                && min < out.base
            {
                out.add_to_all((out.base as i128 - min as i128) as u64);
                out.base = min;
            }
            for (id, v) in changes {
                if let Some(v) = v {
                    out.set(id, v);
                }
            }
            out
        })
    }
}

/// A BSI owned by the delta: offsets from `base`, one slice per bit.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedBsi {
    pub(crate) exists: Arc<Bitmap>,
    pub(crate) base: i64,
    pub(crate) slices: Vec<Arc<Bitmap>>,
}

impl OwnedBsi {
    /// Borrows it as the query layer's BSI.
    pub(crate) fn as_ref(&self) -> BsiRef<'_> {
        BsiRef {
            exists: &self.exists,
            base: self.base,
            slices: self.slices.iter().map(|s| &**s).collect(),
            portable: None,
        }
    }

    /// The value of `id`, if it has one.
    #[cfg(test)]
    pub(crate) fn get(&self, id: u32) -> Option<i64> {
        if !self.exists.contains(id) {
            return None;
        }
        let mut off = 0u64;
        for (bit, s) in self.slices.iter().enumerate() {
            if s.contains(id) {
                off |= 1 << bit;
            }
        }
        Some(self.base.wrapping_add(off as i64))
    }

    /// Removes the value of `id`.
    pub(crate) fn clear(&mut self, id: u32) {
        if !self.exists.contains(id) {
            return;
        }
        Arc::make_mut(&mut self.exists).remove(id);
        for s in &mut self.slices {
            if s.contains(id) {
                Arc::make_mut(s).remove(id);
            }
        }
    }

    /// Gives `id` the value `v`, rebasing or widening the index when `v` falls outside it.
    pub(crate) fn set(&mut self, id: u32, v: i64) {
        self.clear(id);
        if self.exists.is_empty() {
            self.base = v;
            self.slices.clear();
        } else if v < self.base {
            // Every stored offset grows by `base - v` so that `v` becomes offset 0.
            self.add_to_all((self.base as i128 - v as i128) as u64);
            self.base = v;
        }
        let off = (v as i128 - self.base as i128) as u64;
        let depth = (64 - off.leading_zeros()) as usize;
        while self.slices.len() < depth {
            self.slices.push(Arc::new(Bitmap::new()));
        }
        let mut rest = off;
        while rest != 0 {
            let bit = rest.trailing_zeros() as usize;
            Arc::make_mut(&mut self.slices[bit]).add(id);
            rest &= rest - 1;
        }
        Arc::make_mut(&mut self.exists).add(id);
    }

    /// Adds `c` to the offset of every user with a value: a ripple-carry adder over the
    /// slices, one bitmap operation per bit.
    fn add_to_all(&mut self, c: u64) {
        let mut carry = Bitmap::new();
        let mut bit = 0usize;
        while bit < 64 && (c >> bit != 0 || !carry.is_empty()) {
            if self.slices.len() <= bit {
                self.slices.push(Arc::new(Bitmap::new()));
            }
            let addend: &Bitmap = if c >> bit & 1 == 1 {
                &self.exists
            } else {
                &Bitmap::new()
            };
            let slice = &self.slices[bit];
            // sum = s ^ a ^ carry; carry' = (s & a) | (carry & (s ^ a))
            let s_xor_a = slice.xor(addend);
            let sum = s_xor_a.xor(&carry);
            let next_carry = slice.and(addend).or(&carry.and(&s_xor_a));
            self.slices[bit] = Arc::new(sum);
            carry = next_carry;
            bit += 1;
        }
        while self.slices.last().is_some_and(|s| s.is_empty()) {
            self.slices.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(b: &OwnedBsi, ids: std::ops::Range<u32>) -> Vec<Option<i64>> {
        ids.map(|id| b.get(id)).collect()
    }

    #[test]
    fn owned_bsi_tracks_values_through_rebases_and_widening() {
        let mut b = OwnedBsi::default();
        let mut model = vec![None; 8];
        let ops: [(u32, Option<i64>); 12] = [
            (0, Some(10)),
            (1, Some(12)),
            (2, Some(3)),
            (3, Some(1 << 40)),
            (1, None),
            (4, Some(-5)),
            (5, Some(i64::MAX)),
            (6, Some(i64::MIN)),
            (5, None),
            (0, Some(0)),
            (7, Some(-5)),
            (6, None),
        ];
        for (id, v) in ops {
            match v {
                Some(v) => b.set(id, v),
                None => b.clear(id),
            }
            model[id as usize] = v;
            assert_eq!(values(&b, 0..8), model, "after setting {id} to {v:?}");
        }
    }

    #[test]
    fn a_patch_merges_over_a_stored_bsi_through_folds_rebases_and_clears() {
        let stored_pairs: Vec<(u32, i64)> = (0..3000u32)
            .step_by(3)
            .map(|id| (id, id as i64 % 97))
            .collect();
        let stored = crate::bitmap::bsi::BsiBuilt::build(&stored_pairs);
        let mut model: BTreeMap<u32, i64> = stored_pairs.iter().copied().collect();
        let mut patch = BsiPatch::default();
        let mut changed = Bitmap::new();
        let mut x = 0x2545_f491u64;
        for step in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 3000) as u32;
            let v = match x >> 60 {
                0 => None,
                1 => Some(-((x >> 20) as i64 % 1_000_000)),
                _ => Some((x >> 30) as i64 % 500),
            };
            patch.record(id, v);
            changed.add(id);
            match v {
                Some(v) => model.insert(id, v),
                None => model.remove(&id),
            };
            if step % 250 == 249 {
                let merged = patch.merged(Some(stored.as_ref()), &changed);
                for id in 0..3000u32 {
                    assert_eq!(
                        merged.get(id),
                        model.get(&id).copied(),
                        "step {step}, id {id}"
                    );
                }
                let clone = patch.clone();
                assert_eq!(clone.changes(), patch.changes());
            }
        }
        for (&id, &v) in &model {
            if changed.contains(id) {
                assert_eq!(patch.get(id), Some(Some(v)));
            }
        }
    }
}
