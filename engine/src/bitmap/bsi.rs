//! Bit-sliced index (BSI) over a shard: ranges and aggregates of a numeric field as bitmap algebra.
//!
//! A shard's values are stored as unsigned offsets `v - base` (where `base` is the shard's
//! minimum), sliced into `depth` bitmaps: slice `i` holds the users whose offset has bit `i` set.
//! An existence bitmap holds the users with a value at all. Comparisons use O'Neil and Quass's
//! algorithm, walking the slices from the most significant bit and keeping the users still equal
//! to the constant; aggregates weigh each slice's intersection with the filter by its power of two.

use std::borrow::Cow;

use croaring::Bitmap;

use super::fused::{Fused, OffsetRange};
use super::portable::{self, Directory};
use super::{Container, from_containers};

pub use crate::expr::CmpOp;

impl CmpOp {
    /// Applies the comparison to two integers.
    pub fn holds(self, a: i64, b: i64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Ge => a >= b,
            CmpOp::Gt => a > b,
        }
    }
}

/// The slices of one shard's BSI, borrowed from a segment or owned by a builder.
#[derive(Debug, Clone)]
pub struct BsiRef<'a> {
    /// Users with a value.
    pub exists: &'a Bitmap,
    /// Value subtracted before slicing.
    pub base: i64,
    /// `slices[i]`: users whose offset has bit `i` set.
    pub slices: Vec<&'a Bitmap>,
    /// The serialized (portable) bytes of `exists` and then of each slice, for an index read
    /// from a segment: comparisons then run the fused kernels of [`super::fused`] on them.
    pub(crate) portable: Option<Vec<&'a [u8]>>,
}

/// Values by user id, in id order with one value per id: `(id, value)` pairs, or the values
/// of consecutive ids from `first` (what a load stages for a file of one row per user, at half
/// the memory of pairs).
#[derive(Debug)]
pub(crate) enum ById<'a, T> {
    Pairs(&'a [(u32, T)]),
    Run { first: u32, values: &'a [T] },
}

impl<T> Clone for ById<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ById<'_, T> {}

impl<'a, T: Copy> ById<'a, T> {
    /// How many ids have a value.
    pub(crate) fn len(self) -> usize {
        match self {
            ById::Pairs(p) => p.len(),
            ById::Run { values, .. } => values.len(),
        }
    }

    /// The ids of `range` and their values.
    pub(crate) fn within(self, range: std::ops::Range<u32>) -> Self {
        match self {
            ById::Pairs(p) => {
                let lo = p.partition_point(|x| x.0 < range.start);
                let hi = p.partition_point(|x| x.0 < range.end);
                ById::Pairs(&p[lo..hi.max(lo)])
            }
            ById::Run { first, values } => {
                let at = |id: u32| (id.saturating_sub(first) as usize).min(values.len());
                let (lo, hi) = (at(range.start), at(range.end));
                ById::Run {
                    first: first + lo as u32,
                    values: &values[lo..hi.max(lo)],
                }
            }
        }
    }

    /// Every `(id, value)`, in id order.
    pub(crate) fn iter(self) -> impl Iterator<Item = (u32, T)> + 'a {
        let (pairs, run) = match self {
            ById::Pairs(p) => (p, None),
            ById::Run { first, values } => (&[][..], Some((first, values))),
        };
        let run = run.into_iter().flat_map(|(first, values)| {
            values
                .iter()
                .enumerate()
                .map(move |(i, &v)| (first + i as u32, v))
        });
        pairs.iter().copied().chain(run)
    }

    /// Every value, in id order.
    pub(crate) fn values(self) -> impl Iterator<Item = T> + Clone + 'a {
        let (pairs, run) = match self {
            ById::Pairs(p) => (p, &[][..]),
            ById::Run { values, .. } => (&[][..], values),
        };
        pairs.iter().map(|p| p.1).chain(run.iter().copied())
    }
}

/// An owned BSI, as built for one shard before it is written.
#[derive(Debug, Clone)]
pub struct BsiBuilt {
    /// Users with a value.
    pub exists: Bitmap,
    /// Value subtracted before slicing (the minimum).
    pub base: i64,
    /// One bitmap per bit of `max - base`.
    pub slices: Vec<Bitmap>,
}

impl BsiBuilt {
    /// Builds a BSI from `(id, value)` pairs with distinct ids.
    ///
    /// Pairs sorted by id (as a load stages them) are built as they are
    /// ([`BsiBuilt::build_sorted`]); others are sorted first.
    pub fn build(pairs: &[(u32, i64)]) -> Self {
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            let mut sorted = pairs.to_vec();
            sorted.sort_unstable_by_key(|p| p.0);
            return Self::build_sorted(ById::Pairs(&sorted));
        }
        Self::build_sorted(ById::Pairs(pairs))
    }

    /// Builds a BSI from values by id, sliced a container (2^16 ids) at a time into one bitset
    /// per slice, each then stored as a bitset or an array container: a few bit operations per
    /// set bit, and no per-member insertion.
    pub(crate) fn build_sorted(values: ById<'_, i64>) -> Self {
        let base = values.values().min().unwrap_or(0);
        let max_off = values
            .values()
            .map(|v| v.wrapping_sub(base) as u64)
            .max()
            .unwrap_or(0);
        let depth = (64 - max_off.leading_zeros()) as usize;
        // Slot 0: existence; slot 1 + i: bit i of the offset. The slots of one word lie
        // together (word-major), so that setting a value's bits touches one or two cache lines
        // rather than one line per slice.
        let slots = depth + 1;
        let mut words = vec![0u64; slots * 1024];
        let mut bits = vec![0u64; 1024];
        let mut containers: Vec<Vec<(u16, Container<'static>)>> =
            (0..slots).map(|_| Vec::new()).collect();
        // Moves the words of container `key` into `containers`, leaving them zero.
        let mut flush = |key: u32, words: &mut [u64]| {
            for (slot, out) in containers.iter_mut().enumerate() {
                let mut card = 0u32;
                for (i, b) in bits.iter_mut().enumerate() {
                    let w = &mut words[i * slots + slot];
                    *b = std::mem::take(w);
                    card += b.count_ones();
                }
                if card > 4096 {
                    out.push((
                        key as u16,
                        Container::Bitset(Cow::Owned(bits.clone()), card),
                    ));
                } else if card > 0 {
                    let mut low = Vec::with_capacity(card as usize);
                    for (i, w) in bits.iter().enumerate() {
                        let mut w = *w;
                        while w != 0 {
                            low.push((i * 64) as u16 | w.trailing_zeros() as u16);
                            w &= w - 1;
                        }
                    }
                    out.push((key as u16, Container::Array(low)));
                }
            }
        };
        let mut current = None;
        for (id, v) in values.iter() {
            let key = id >> 16;
            if current != Some(key) {
                if let Some(done) = current {
                    flush(done, &mut words);
                }
                current = Some(key);
            }
            let low = (id & 0xffff) as usize;
            let (at, bit) = ((low / 64) * slots, 1u64 << (low % 64));
            words[at] |= bit;
            let mut off = v.wrapping_sub(base) as u64;
            while off != 0 {
                words[at + 1 + off.trailing_zeros() as usize] |= bit;
                off &= off - 1;
            }
        }
        if let Some(done) = current {
            flush(done, &mut words);
        }
        let mut bitmaps = containers.into_iter().map(|c| {
            let mut b = from_containers(&c).unwrap_or_default();
            b.run_optimize();
            b
        });
        let exists = bitmaps.next().unwrap_or_default();
        Self {
            exists,
            base,
            slices: bitmaps.collect(),
        }
    }

    /// Borrows this BSI for querying.
    pub fn as_ref(&self) -> BsiRef<'_> {
        BsiRef {
            exists: &self.exists,
            base: self.base,
            slices: self.slices.iter().collect(),
            portable: None,
        }
    }
}

impl BsiRef<'_> {
    /// The estimated share (0 to 1) of the users with a value for whom `value op c` holds,
    /// from the slices' sizes alone (each bit taken as independent): no bitmap is combined,
    /// so the planner can afford it for every comparison. Exact for one-slice indexes.
    pub fn estimate_share(&self, op: CmpOp, c: i64) -> f64 {
        let n = self.exists.cardinality();
        if n == 0 {
            return 0.0;
        }
        let p: Vec<f64> = self
            .slices
            .iter()
            .map(|s| s.cardinality() as f64 / n as f64)
            .collect();
        // P(offset > k) and P(offset == k) for an offset k within range, under independence.
        let greater_equal = |k: u64| -> (f64, f64) {
            let mut greater = 0.0;
            let mut equal = 1.0;
            for i in (0..p.len()).rev() {
                if k >> i & 1 == 1 {
                    equal *= p[i];
                } else {
                    greater += equal * p[i];
                    equal *= 1.0 - p[i];
                }
            }
            (greater, equal)
        };
        let off = i128::from(c) - i128::from(self.base);
        let max = i128::from(self.max_offset());
        let (gt, eq) = if off < 0 {
            (1.0, 0.0)
        } else if off > max {
            (0.0, 0.0)
        } else {
            greater_equal(off as u64)
        };
        let lt = (1.0 - gt - eq).max(0.0);
        let share = match op {
            CmpOp::Gt => gt,
            CmpOp::Ge => gt + eq,
            CmpOp::Lt => lt,
            CmpOp::Le => lt + eq,
            CmpOp::Eq => eq,
            CmpOp::Ne => 1.0 - eq,
        };
        share.clamp(0.0, 1.0)
    }

    fn max_offset(&self) -> u64 {
        if self.slices.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.slices.len()) - 1
        }
    }

    /// Users whose value satisfies `value op c`.
    pub fn compare(&self, op: CmpOp, c: i64) -> Bitmap {
        self.compare_in(op, c, None)
    }

    /// Users of `filter` (all users when `None`) whose value satisfies `value op c`. Every
    /// intermediate bitmap stays within the filter, so a small filter makes this cheap.
    pub fn compare_in(&self, op: CmpOp, c: i64, filter: Option<&Bitmap>) -> Bitmap {
        let candidates = || match filter {
            Some(f) => self.exists.and(f),
            None => self.exists.clone(),
        };
        if self.exists.is_empty() || filter.is_some_and(|f| f.is_empty()) {
            return Bitmap::new();
        }
        // Position of `c` relative to the representable offsets [0, max_offset].
        let off = (c as i128) - (self.base as i128);
        if off < 0 {
            return match op {
                CmpOp::Gt | CmpOp::Ge | CmpOp::Ne => candidates(),
                CmpOp::Lt | CmpOp::Le | CmpOp::Eq => Bitmap::new(),
            };
        }
        if off > self.max_offset() as i128 {
            return match op {
                CmpOp::Lt | CmpOp::Le | CmpOp::Ne => candidates(),
                CmpOp::Gt | CmpOp::Ge | CmpOp::Eq => Bitmap::new(),
            };
        }
        let off = off as u64;
        if let Some(fused) = self.fused_for(filter) {
            let max = self.max_offset();
            let (lo, hi, negate) = match op {
                CmpOp::Eq => (off, off, false),
                CmpOp::Ne => (off, off, true),
                CmpOp::Le => (0, off, false),
                CmpOp::Ge => (off, max, false),
                CmpOp::Lt if off == 0 => return Bitmap::new(),
                CmpOp::Lt => (0, off - 1, false),
                CmpOp::Gt if off == max => return Bitmap::new(),
                CmpOp::Gt => (off + 1, max, false),
            };
            return fused.range(OffsetRange { lo, hi, negate }, filter);
        }
        let mut eq = candidates();
        let mut lt = Bitmap::new();
        let mut gt = Bitmap::new();
        let want_lt = matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Ne);
        let want_gt = matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Ne);
        for (i, slice) in self.slices.iter().enumerate().rev() {
            if eq.is_empty() {
                break;
            }
            if (off >> i) & 1 == 1 {
                if want_lt {
                    lt.or_inplace(&eq.andnot(slice));
                }
                eq.and_inplace(slice);
            } else {
                if want_gt {
                    gt.or_inplace(&eq.and(slice));
                }
                eq.andnot_inplace(slice);
            }
        }
        match op {
            CmpOp::Eq => eq,
            CmpOp::Lt => lt,
            CmpOp::Gt => gt,
            CmpOp::Le => {
                lt.or_inplace(&eq);
                lt
            }
            CmpOp::Ge => {
                gt.or_inplace(&eq);
                gt
            }
            CmpOp::Ne => {
                lt.or_inplace(&gt);
                lt
            }
        }
    }

    /// Users with `lo <= value <= hi`.
    pub fn between(&self, lo: i64, hi: i64) -> Bitmap {
        self.between_in(lo, hi, None)
    }

    /// Users of `filter` (all users when `None`) with `lo <= value <= hi`.
    pub fn between_in(&self, lo: i64, hi: i64, filter: Option<&Bitmap>) -> Bitmap {
        if lo > hi || self.exists.is_empty() {
            return Bitmap::new();
        }
        if let Some(fused) = self.fused_for(filter) {
            // Clamp both ends to the representable offsets [0, max].
            let max = i128::from(self.max_offset());
            let lo = (i128::from(lo) - i128::from(self.base)).max(0);
            let hi = (i128::from(hi) - i128::from(self.base)).min(max);
            if lo > hi {
                return Bitmap::new();
            }
            let range = OffsetRange {
                lo: lo as u64,
                hi: hi as u64,
                negate: false,
            };
            return fused.range(range, filter);
        }
        let r = self.compare_in(CmpOp::Ge, lo, filter);
        if r.is_empty() {
            return r;
        }
        self.compare_in(CmpOp::Le, hi, Some(&r))
    }

    /// For each of `bounds`, how many users of `filter` (all when `None`) have a value below
    /// it; and how many have a value at all. One pass over the slices for every bound when the
    /// index is stored.
    pub fn count_below(&self, bounds: &[i64], filter: Option<&Bitmap>) -> (Vec<u64>, u64) {
        if self.exists.is_empty() || filter.is_some_and(|f| f.is_empty()) {
            return (vec![0; bounds.len()], 0);
        }
        if let Some(fused) = self.fused_for(filter) {
            return self.below_fused(bounds, |inside| fused.count_below(inside, filter));
        }
        let within = match filter {
            Some(f) => self.exists.and(f),
            None => self.exists.clone(),
        };
        let below = bounds
            .iter()
            .map(|&b| self.compare_in(CmpOp::Lt, b, Some(&within)).cardinality())
            .collect();
        (below, within.cardinality())
    }

    /// [`BsiRef::count_below`] for the members of a stored (serialized) bitmap, read in place:
    /// `None` when the fused kernels do not apply (the index has no stored bytes, or the
    /// filter is too sparse for them, or its bytes do not parse), and the caller builds the
    /// filter's bitmap for [`BsiRef::count_below`] instead.
    pub(crate) fn count_below_stored(
        &self,
        bounds: &[i64],
        filter: &[u8],
    ) -> Option<(Vec<u64>, u64)> {
        let members = portable::cardinality(filter)?;
        if self.exists.is_empty() || members == 0 {
            return Some((vec![0; bounds.len()], 0));
        }
        let dir = Directory::parse(filter).ok()?;
        if !fused_pays(members, dir.containers()) {
            return None;
        }
        let fused = self.fused()?;
        Some(self.below_fused(bounds, |inside| fused.count_below_in(inside, &dir)))
    }

    /// `count_below` from a fused count over the bounds within the offsets (`count` takes
    /// them, as offsets, and returns their counts and the total): bounds at or below the
    /// smallest offset have nobody below them, bounds above the largest everybody.
    fn below_fused(
        &self,
        bounds: &[i64],
        count: impl FnOnce(&[u64]) -> (Vec<u64>, u64),
    ) -> (Vec<u64>, u64) {
        let max = i128::from(self.max_offset());
        let offsets: Vec<i128> = bounds
            .iter()
            .map(|&b| i128::from(b) - i128::from(self.base))
            .collect();
        let inside: Vec<u64> = offsets
            .iter()
            .filter(|&&o| 0 < o && o <= max)
            .map(|&o| o as u64)
            .collect();
        let (counts, total) = count(&inside);
        let mut counts = counts.into_iter();
        let below = offsets
            .iter()
            .map(|&o| match o {
                o if o <= 0 => 0,
                o if o > max => total,
                _ => counts.next().expect("one count per bound within range"),
            })
            .collect();
        (below, total)
    }

    /// The fused kernels over this index's stored bytes, if it has them and they pay off for
    /// `filter` ([`fused_pays`]).
    fn fused_for(&self, filter: Option<&Bitmap>) -> Option<Fused<'_>> {
        if let Some(f) = filter
            && !fused_pays(f.cardinality(), f.statistics().n_containers as usize)
        {
            return None;
        }
        self.fused()
    }

    /// The fused kernels over this index's stored bytes, if it has them.
    fn fused(&self) -> Option<Fused<'_>> {
        Fused::new(self.portable.as_deref()?)
    }

    /// Number of users of `filter` with a value, and the sum of their values.
    pub fn count_sum(&self, filter: Option<&Bitmap>) -> (u64, i128) {
        let count = match filter {
            Some(f) => self.exists.and_cardinality(f),
            None => self.exists.cardinality(),
        };
        let mut sum = self.base as i128 * count as i128;
        for (i, slice) in self.slices.iter().enumerate() {
            let n = match filter {
                Some(f) => slice.and_cardinality(f),
                None => slice.cardinality(),
            };
            sum += (n as i128) << i;
        }
        (count, sum)
    }

    /// The minimum (`max = false`) or maximum value among users of `filter`.
    pub fn extreme(&self, filter: Option<&Bitmap>, max: bool) -> Option<i64> {
        let mut cand = match filter {
            Some(f) => self.exists.and(f),
            None => self.exists.clone(),
        };
        if cand.is_empty() {
            return None;
        }
        let mut off: u64 = 0;
        for (i, slice) in self.slices.iter().enumerate().rev() {
            let narrowed = if max {
                cand.and(slice)
            } else {
                cand.andnot(slice)
            };
            if !narrowed.is_empty() {
                cand = narrowed;
                if max {
                    off |= 1 << i;
                }
            } else if !max {
                off |= 1 << i;
            }
        }
        Some((self.base as i128 + off as i128) as i64)
    }

    /// The `k`-th smallest value (0-based) among users of `filter`, if there are more than `k`.
    pub fn kth_smallest(&self, filter: Option<&Bitmap>, mut k: u64) -> Option<i64> {
        let mut cand = match filter {
            Some(f) => self.exists.and(f),
            None => self.exists.clone(),
        };
        if cand.cardinality() <= k {
            return None;
        }
        let mut off: u64 = 0;
        for (i, slice) in self.slices.iter().enumerate().rev() {
            let zeros = cand.andnot(slice);
            let n0 = zeros.cardinality();
            if k < n0 {
                cand = zeros;
            } else {
                k -= n0;
                cand.and_inplace(slice);
                off |= 1 << i;
            }
        }
        Some((self.base as i128 + off as i128) as i64)
    }
}

/// Whether the fused kernels pay off for a filter of `members` in `containers` containers:
/// they read every word of each block the filter touches, which costs more than intersecting a
/// few members per block (fewer than 1 in 32 on average) bitmap-wise.
fn fused_pays(members: u64, containers: usize) -> bool {
    members >= containers as u64 * 2048
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_ids(pairs: &[(u32, i64)], pred: impl Fn(i64) -> bool) -> Vec<u32> {
        let mut v: Vec<u32> = pairs.iter().filter(|p| pred(p.1)).map(|p| p.0).collect();
        v.sort_unstable();
        v
    }

    /// Pairs over several containers, some of them dense (bitset containers).
    fn spread_pairs_strategy() -> impl Strategy<Value = Vec<(u32, i64)>> {
        prop_oneof![
            proptest::collection::btree_map(
                0u32..300_000,
                prop_oneof![-50i64..50, any::<i64>(), 0i64..1000],
                0..300
            )
            .prop_map(|m| m.into_iter().collect()),
            (
                0u32..100_000,
                5_000u32..80_000,
                any::<u64>(),
                prop_oneof![Just(7i64), Just(1000), Just(i64::MAX)]
            )
                .prop_map(|(start, len, seed, spread)| {
                    let mut x = seed | 1;
                    (start..start + len)
                        .filter_map(|id| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            // About one id in ten left without a value.
                            (x % 10 != 0).then(|| (id, (x >> 8) as i64 % spread))
                        })
                        .collect()
                }),
        ]
    }

    fn pairs_strategy() -> impl Strategy<Value = Vec<(u32, i64)>> {
        let values = prop_oneof![
            -50i64..50,
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>(),
            0i64..5,
        ];
        proptest::collection::btree_map(0u32..3000, values, 0..200)
            .prop_map(|m| m.into_iter().collect())
    }

    /// The slices as the per-member definition gives them.
    fn naive(pairs: &[(u32, i64)]) -> BsiBuilt {
        let base = pairs.iter().map(|p| p.1).min().unwrap_or(0);
        let max_off = pairs
            .iter()
            .map(|p| p.1.wrapping_sub(base) as u64)
            .max()
            .unwrap_or(0);
        let depth = (64 - max_off.leading_zeros()) as usize;
        BsiBuilt {
            exists: pairs.iter().map(|p| p.0).collect(),
            base,
            slices: (0..depth)
                .map(|bit| {
                    pairs
                        .iter()
                        .filter(|p| (p.1.wrapping_sub(base) as u64) >> bit & 1 == 1)
                        .map(|p| p.0)
                        .collect()
                })
                .collect(),
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        /// Values of consecutive ids (`ById::Run`, crossing containers or not) build the same
        /// BSI as their pairs by the definition; any range of them holds exactly the pairs
        /// whose ids it contains, as runs and as pairs alike.
        #[test]
        fn runs_build_and_cut_like_their_pairs(
            first in prop_oneof![0u32..10, 65_000u32..66_000, Just(u32::MAX - 30_000)],
            values in proptest::collection::vec(prop_oneof![0i64..300, any::<i64>(), -5i64..5], 0..9_000),
            stretch in 1usize..4,
            lo in 0u32..80_000,
            len in 0u32..80_000,
        ) {
            // Stretched so that runs reach into two or three containers.
            let values: Vec<i64> = values.iter().cycle().take(values.len() * stretch).copied().collect();
            let pairs: Vec<(u32, i64)> =
                values.iter().enumerate().map(|(i, &v)| (first + i as u32, v)).collect();
            let run = ById::Run { first, values: &values };
            let want = naive(&pairs);
            let got = BsiBuilt::build_sorted(run);
            prop_assert_eq!(got.base, want.base);
            prop_assert_eq!(&got.exists, &want.exists);
            prop_assert_eq!(&got.slices, &want.slices);
            let start = first.saturating_add(lo).saturating_sub(40_000);
            let range = start..start.saturating_add(len);
            let inside: Vec<(u32, i64)> =
                pairs.iter().copied().filter(|p| range.contains(&p.0)).collect();
            let cut = run.within(range.clone());
            prop_assert_eq!(cut.len(), inside.len());
            prop_assert_eq!(cut.iter().collect::<Vec<_>>(), inside.clone());
            prop_assert_eq!(
                cut.values().collect::<Vec<_>>(),
                inside.iter().map(|p| p.1).collect::<Vec<_>>()
            );
            prop_assert_eq!(ById::Pairs(&pairs).within(range).iter().collect::<Vec<_>>(), inside);
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        /// Sparse and dense containers (arrays and bitsets), several containers, sorted or
        /// shuffled pairs: the same slices as the definition.
        #[test]
        fn build_matches_the_definition(
            ids in proptest::collection::btree_set(
                prop_oneof![0u32..70_000, 130_000u32..140_000, Just(u32::MAX)],
                0..12_000,
            ),
            values in proptest::collection::vec(prop_oneof![0i64..300, any::<i64>(), -5i64..5], 1..20),
            shuffle in any::<u64>(),
        ) {
            let mut pairs: Vec<(u32, i64)> = ids
                .into_iter()
                .enumerate()
                .map(|(i, id)| (id, values[i % values.len()]))
                .collect();
            let want = naive(&pairs);
            if shuffle % 2 == 1 {
                let n = pairs.len();
                for i in 0..n {
                    let j = (shuffle as usize).wrapping_mul(i + 7) % n;
                    pairs.swap(i, j);
                }
            }
            let got = BsiBuilt::build(&pairs);
            prop_assert_eq!(got.base, want.base);
            prop_assert_eq!(&got.exists, &want.exists);
            prop_assert_eq!(got.slices.len(), want.slices.len());
            for (g, w) in got.slices.iter().zip(&want.slices) {
                prop_assert_eq!(g, w);
            }
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(128))]
        #[test]
        fn fused_kernels_match_a_model(
            pairs in spread_pairs_strategy(),
            c in prop_oneof![-60i64..60, any::<i64>(), 0i64..1000],
            c2 in prop_oneof![-60i64..60, 0i64..1000],
            bounds in proptest::collection::vec(prop_oneof![-60i64..60, any::<i64>(), 0i64..1000], 0..6),
            filter_mod in 1u32..5,
        ) {
            let bsi = BsiBuilt::build(&pairs);
            let plain = bsi.as_ref();
            let bytes: Vec<Vec<u8>> = std::iter::once(&bsi.exists)
                .chain(&bsi.slices)
                .map(|b| b.serialize::<croaring::Portable>())
                .collect();
            let mut fused = bsi.as_ref();
            fused.portable = Some(bytes.iter().map(|b| b.as_slice()).collect());
            prop_assert!(fused.fused().is_some());
            for op in [CmpOp::Lt, CmpOp::Le, CmpOp::Eq, CmpOp::Ne, CmpOp::Ge, CmpOp::Gt] {
                prop_assert_eq!(fused.compare(op, c).to_vec(), model_ids(&pairs, |v| op.holds(v, c)), "op {:?}", op);
            }
            let (lo, hi) = (c.min(c2), c.max(c2));
            prop_assert_eq!(fused.between(lo, hi).to_vec(), model_ids(&pairs, |v| lo <= v && v <= hi));
            prop_assert_eq!(fused.between(hi, lo).to_vec(), model_ids(&pairs, |v| hi <= v && v <= lo));
            let filter = Bitmap::of(&pairs.iter().map(|p| p.0).filter(|id| id % filter_mod != 0).chain([500_000]).collect::<Vec<_>>());
            for op in [CmpOp::Lt, CmpOp::Eq, CmpOp::Ne, CmpOp::Ge] {
                prop_assert_eq!(fused.compare_in(op, c, Some(&filter)), plain.compare(op, c).and(&filter));
            }
            prop_assert_eq!(fused.between_in(lo, hi, Some(&filter)), plain.between(lo, hi).and(&filter));
            for f in [None, Some(&filter)] {
                let want_total = pairs.iter().filter(|p| f.is_none_or(|f| f.contains(p.0))).count() as u64;
                let want: Vec<u64> = bounds
                    .iter()
                    .map(|&b| pairs.iter().filter(|p| p.1 < b && f.is_none_or(|f| f.contains(p.0))).count() as u64)
                    .collect();
                prop_assert_eq!(fused.count_below(&bounds, f), (want.clone(), want_total));
                prop_assert_eq!(plain.count_below(&bounds, f), (want, want_total));
            }
            // A filter read in place from its serialized bytes: the same counts, whenever the
            // fused kernels take it; dense filters they always take.
            let mut dense = Bitmap::from_range(0..180_000);
            dense.remove_range(70_000..70_000 + filter_mod * 1000);
            for f in [&filter, &dense, &Bitmap::new()] {
                let bytes = f.serialize::<croaring::Portable>();
                let want_total = pairs.iter().filter(|p| f.contains(p.0)).count() as u64;
                let want: Vec<u64> = bounds
                    .iter()
                    .map(|&b| pairs.iter().filter(|p| p.1 < b && f.contains(p.0)).count() as u64)
                    .collect();
                let stored = fused.count_below_stored(&bounds, &bytes);
                if f == &dense && !pairs.is_empty() {
                    prop_assert!(stored.is_some(), "a dense filter is read in place");
                }
                if let Some(got) = stored {
                    prop_assert_eq!(got, (want.clone(), want_total));
                }
                // Without stored slices, only a filter or index with nobody is answered.
                if let Some(got) = plain.count_below_stored(&bounds, &bytes) {
                    prop_assert!(f.is_empty() || pairs.is_empty());
                    prop_assert_eq!(got, (want, want_total));
                }
            }
        }

        #[test]
        fn comparisons_match_a_model(pairs in pairs_strategy(), c in prop_oneof![-60i64..60, any::<i64>()], c2 in -60i64..60) {
            let bsi = BsiBuilt::build(&pairs);
            let r = bsi.as_ref();
            for op in [CmpOp::Lt, CmpOp::Le, CmpOp::Eq, CmpOp::Ne, CmpOp::Ge, CmpOp::Gt] {
                prop_assert_eq!(r.compare(op, c).to_vec(), model_ids(&pairs, |v| op.holds(v, c)), "op {:?}", op);
            }
            let (lo, hi) = (c.min(c2), c.max(c2));
            prop_assert_eq!(r.between(lo, hi).to_vec(), model_ids(&pairs, |v| lo <= v && v <= hi));
            // Restricted to a filter: the same answer intersected with it.
            let filter = Bitmap::of(&pairs.iter().map(|p| p.0).filter(|id| id % 3 != 0).chain([5000]).collect::<Vec<_>>());
            for op in [CmpOp::Lt, CmpOp::Eq, CmpOp::Ne, CmpOp::Ge] {
                prop_assert_eq!(r.compare_in(op, c, Some(&filter)), r.compare(op, c).and(&filter));
            }
            prop_assert_eq!(r.between_in(lo, hi, Some(&filter)), r.between(lo, hi).and(&filter));
        }

        #[test]
        fn aggregates_match_a_model(pairs in pairs_strategy(), filter in proptest::collection::vec(0u32..3000, 0..400)) {
            let bsi = BsiBuilt::build(&pairs);
            let r = bsi.as_ref();
            let f = Bitmap::of(&filter);
            let sel: Vec<i64> = pairs.iter().filter(|p| f.contains(p.0)).map(|p| p.1).collect();
            let (n, sum) = r.count_sum(Some(&f));
            prop_assert_eq!(n as usize, sel.len());
            prop_assert_eq!(sum, sel.iter().map(|&v| v as i128).sum::<i128>());
            prop_assert_eq!(r.extreme(Some(&f), false), sel.iter().copied().min());
            prop_assert_eq!(r.extreme(Some(&f), true), sel.iter().copied().max());
            let mut sorted = sel.clone();
            sorted.sort_unstable();
            for k in [0u64, 1, 7, sorted.len() as u64 / 2, sorted.len() as u64] {
                prop_assert_eq!(r.kth_smallest(Some(&f), k), sorted.get(k as usize).copied());
            }
            let (n_all, _) = r.count_sum(None);
            prop_assert_eq!(n_all as usize, pairs.len());
        }
    }

    #[test]
    fn estimate_share_is_exact_for_one_slice_and_bounded() {
        // Values 10 and 11: one slice.
        let pairs: Vec<(u32, i64)> = (0..100).map(|i| (i, 10 + i64::from(i % 4 == 0))).collect();
        let built = BsiBuilt::build(&pairs);
        let b = built.as_ref();
        assert!((b.estimate_share(CmpOp::Ge, 11) - 0.25).abs() < 1e-9);
        assert!((b.estimate_share(CmpOp::Lt, 11) - 0.75).abs() < 1e-9);
        assert_eq!(b.estimate_share(CmpOp::Gt, 99), 0.0);
        assert_eq!(b.estimate_share(CmpOp::Ge, -5), 1.0);
        // Many slices: every estimate is a share.
        let pairs: Vec<(u32, i64)> = (0..1000).map(|i| (i, i64::from(i * i % 977))).collect();
        let built = BsiBuilt::build(&pairs);
        for op in [
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Ge,
            CmpOp::Gt,
        ] {
            for c in [-1, 0, 13, 500, 976, 5000] {
                let share = built.as_ref().estimate_share(op, c);
                assert!((0.0..=1.0).contains(&share), "{op:?} {c}: {share}");
            }
        }
    }
}
