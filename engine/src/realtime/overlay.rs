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
//! - numeric: a whole owned BSI (existence, base and slices), updated bit by bit.

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
    Bsi(OwnedBsi),
}

/// A BSI owned by the delta: offsets from `base`, one slice per bit.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedBsi {
    pub(crate) exists: Arc<Bitmap>,
    pub(crate) base: i64,
    pub(crate) slices: Vec<Arc<Bitmap>>,
}

impl OwnedBsi {
    /// A copy of a stored BSI.
    pub(crate) fn from_ref(b: &BsiRef<'_>) -> Self {
        Self {
            exists: Arc::new(b.exists.clone()),
            base: b.base,
            slices: b.slices.iter().map(|s| Arc::new((*s).clone())).collect(),
        }
    }

    /// Borrows it as the query layer's BSI.
    pub(crate) fn as_ref(&self) -> BsiRef<'_> {
        BsiRef {
            exists: &self.exists,
            base: self.base,
            slices: self.slices.iter().map(|s| &**s).collect(),
        }
    }

    /// The value of `id`, if it has one.
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
}
