//! The hash index of the id dictionary: open addressing over `u32` slots with linear probing.
//!
//! The index maps a key's hash to candidate *positions* in the key store (a position is an id
//! minus the dictionary's first id); the caller confirms a candidate by comparing keys, so a
//! hash never decides a lookup on its own.
//!
//! A slot is 0 when empty, else `tag | (i + 1)` for position `i`. The low bits under `id_mask`
//! hold `i + 1`: `id_mask` covers the bit width of the capacity and the load stays below 1, so
//! every stored position fits. The bits above hold a *tag*, the same bits of the key's hash, so
//! most slots of other keys are passed over without touching the key store. The tag narrows as
//! the table grows (8 bits at 10M keys) and only vanishes at the largest capacity, where every
//! probe compares keys and lookups stay exact.
//!
//! The home slot comes from the high 32 bits of the hash by multiply-shift range reduction, so
//! the capacity need not be a power of two: it grows by half when the load would pass 3/4,
//! which keeps the table at 5.3 to 8 bytes per key. A slot keeps too little of the hash to place
//! its key in a larger table, so growth rehashes every key, in position order: the key store is
//! read sequentially and the scattered writes into the new slots are prefetched in batches.

use std::ops::Range;

use super::prefetch::prefetch;

/// The largest capacity, 2^32 slots: a slot holds `i + 1` in 32 bits, and a dictionary holds at
/// most `u32::MAX` keys, so a table at this capacity still keeps an empty slot to end a probe.
const MAX_CAPACITY: usize = match 1usize.checked_shl(32) {
    Some(c) => c,
    None => usize::MAX,
};
const MIN_CAPACITY: usize = 16;
/// Keys hashed, and their home slots prefetched, ahead of their inserts when (re)indexing.
const INSERT_BATCH: usize = 32;

#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    slots: Vec<u32>,
    /// The low bits of a slot that hold `i + 1`; the bits above hold the tag.
    id_mask: u32,
}

/// Keys a table of `capacity` slots may hold.
fn max_len(capacity: usize) -> usize {
    if capacity >= MAX_CAPACITY {
        MAX_CAPACITY - 1
    } else {
        capacity - capacity / 4
    }
}

/// The smallest capacity whose `max_len` is at least `len`.
fn capacity_for(len: usize) -> usize {
    len.saturating_add(len / 3 + 1)
}

/// The slot bits that hold `i + 1` in a table of `capacity` slots: the bit width of the
/// capacity (all 32 bits, and no tag, at the largest).
fn id_mask(capacity: usize) -> u32 {
    (u64::MAX >> (capacity as u64).leading_zeros()) as u32
}

impl Index {
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
    }

    /// The home slot of hash `h`; meaningless while the table has no slots.
    #[inline]
    pub(super) fn home(&self, h: u64) -> usize {
        (((h >> 32) * self.slots.len() as u64) >> 32) as usize
    }

    #[inline]
    fn tag(&self, h: u64) -> u32 {
        h as u32 & !self.id_mask
    }

    #[inline]
    fn next(&self, pos: usize) -> usize {
        if pos + 1 >= self.slots.len() {
            0
        } else {
            pos + 1
        }
    }

    #[inline]
    pub(super) fn prefetch_slot(&self, pos: usize) {
        prefetch(&self.slots, pos);
    }

    /// From slot `pos` on, the first slot carrying the tag of `h`, as `(slot, position)`; `None`
    /// when an empty slot comes first.
    #[inline]
    pub(super) fn candidate(&self, h: u64, mut pos: usize) -> Option<(usize, u32)> {
        let tag = self.tag(h);
        for _ in 0..self.slots.len() {
            let s = *self.slots.get(pos)?;
            if s == 0 {
                return None;
            }
            if s & !self.id_mask == tag {
                return Some((pos, (s & self.id_mask).wrapping_sub(1)));
            }
            pos = self.next(pos);
        }
        None
    }

    /// The position `i` carrying the tag of `h` for which `eq(i)` holds, probing from the home
    /// slot.
    #[inline]
    pub(super) fn find(&self, h: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.find_from(h, self.home(h), eq)
    }

    /// As [`Index::find`], probing from slot `pos`; used to carry on after a candidate at
    /// `pos - 1` turned out to be another key.
    #[inline]
    pub(super) fn find_after(
        &self,
        h: u64,
        pos: usize,
        eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        self.find_from(h, self.next(pos), eq)
    }

    #[inline]
    fn find_from(&self, h: u64, mut pos: usize, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = self.tag(h);
        for _ in 0..self.slots.len() {
            let s = *self.slots.get(pos)?;
            if s == 0 {
                return None;
            }
            if s & !self.id_mask == tag && eq((s & self.id_mask).wrapping_sub(1)) {
                return Some((s & self.id_mask).wrapping_sub(1));
            }
            pos = self.next(pos);
        }
        None
    }

    /// Makes room for `len` positions in all. If the table must grow, it is rebuilt from
    /// positions `0..present`, `hash_of(i)` giving the hash of the key at position `i`.
    pub(super) fn reserve(&mut self, len: usize, present: usize, hash_of: impl Fn(usize) -> u64) {
        let capacity = self.slots.len();
        if len <= max_len(capacity) {
            return;
        }
        let want = (capacity + capacity / 2)
            .max(capacity_for(len))
            .clamp(MIN_CAPACITY, MAX_CAPACITY);
        if want <= capacity {
            return;
        }
        // Free the old slots before allocating the new ones: a smaller peak.
        self.slots = Vec::new();
        self.slots = vec![0; want];
        self.id_mask = id_mask(want);
        self.insert_range(0..present, hash_of);
    }

    /// Indexes positions `range`, none of them indexed yet; [`Index::reserve`] made room.
    pub(super) fn insert_range(&mut self, range: Range<usize>, hash_of: impl Fn(usize) -> u64) {
        if self.slots.is_empty() {
            return;
        }
        let mut hashes = [0u64; INSERT_BATCH];
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + INSERT_BATCH);
            for (h, i) in hashes.iter_mut().zip(start..end) {
                *h = hash_of(i);
                self.prefetch_slot(self.home(*h));
            }
            for (h, i) in hashes.iter().zip(start..end) {
                self.insert(*h, i as u32);
            }
            start = end;
        }
    }

    /// Whether hashes `a` and `b` have the same home slot and tag, so that each key's probe
    /// meets the other's slot as a candidate.
    #[cfg(test)]
    pub(super) fn collide(&self, a: u64, b: u64) -> bool {
        self.home(a) == self.home(b) && self.tag(a) == self.tag(b)
    }

    /// As [`Index::insert_range`], for positions whose keys must be new: `same(i, j)` says
    /// whether positions `i` (indexed) and `j` (being indexed) hold the same key. Stops at the
    /// first key already indexed, or repeating an earlier one of `range`, and returns its position
    /// (positions before it are indexed, it and those after are not). `known_new(j)`, asked
    /// once per position in order, may vouch that position `j`'s key is neither indexed nor
    /// earlier in `range`, which spares its search. [`Index::reserve`] made room.
    pub(super) fn insert_range_new(
        &mut self,
        range: Range<usize>,
        hash_of: impl Fn(usize) -> u64,
        mut same: impl FnMut(u32, usize) -> bool,
        mut known_new: impl FnMut(usize) -> bool,
    ) -> Result<(), usize> {
        let mut hashes = [0u64; INSERT_BATCH];
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + INSERT_BATCH);
            for (h, i) in hashes.iter_mut().zip(start..end) {
                *h = hash_of(i);
                self.prefetch_slot(self.home(*h));
            }
            for (h, j) in hashes.iter().zip(start..end) {
                if !known_new(j) && self.find(*h, |i| same(i, j)).is_some() {
                    return Err(j);
                }
                self.insert(*h, j as u32);
            }
            start = end;
        }
        Ok(())
    }

    /// Empties the table and indexes positions `0..present` again.
    pub(super) fn reindex(&mut self, present: usize, hash_of: impl Fn(usize) -> u64) {
        self.slots.fill(0);
        self.insert_range(0..present, hash_of);
    }

    fn insert(&mut self, h: u64, i: u32) {
        let slot = self.tag(h) | (i + 1);
        let mut pos = self.home(h);
        for _ in 0..self.slots.len() {
            match self.slots.get_mut(pos) {
                Some(s) if *s == 0 => {
                    *s = slot;
                    return;
                }
                _ => pos = self.next(pos),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]
        /// Hashes drawn from a handful of values (full collisions, long clusters, wrap-around)
        /// or from anywhere: every position is found exactly once, through `eq` alone.
        #[test]
        fn finds_every_position_under_colliding_hashes(
            hashes in proptest::collection::vec(
                prop_oneof![
                    (0u64..4).prop_map(|x| x.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                    Just(u64::MAX),
                    any::<u64>(),
                ],
                0..2000,
            )
        ) {
            let mut index = Index::default();
            for n in 0..hashes.len() {
                index.reserve(n + 1, n, |i| hashes[i]);
                index.insert_range(n..n + 1, |i| hashes[i]);
            }
            prop_assert!(hashes.len() <= max_len(index.slots.len()));
            for (i, &h) in hashes.iter().enumerate() {
                let mut seen = 0;
                let found = index.find(h, |c| {
                    seen += 1;
                    c as usize == i
                });
                prop_assert_eq!(found, Some(i as u32));
                prop_assert!(seen <= hashes.len());
                // The batched path: the first candidate, then probing on past it.
                let (pos, c) = index.candidate(h, index.home(h)).unwrap();
                let found = if c as usize == i {
                    Some(c)
                } else {
                    index.find_after(h, pos, |c| c as usize == i)
                };
                prop_assert_eq!(found, Some(i as u32));
            }
            prop_assert_eq!(index.find(0x1234_5678_9abc_def0, |_| false), None);
        }
    }

    #[test]
    fn capacity_keeps_the_load_at_most_three_quarters() {
        for len in [0, 1, 2, 3, 11, 12, 13, 1000, 1 << 20, 3_000_000_000] {
            assert!(max_len(capacity_for(len)) >= len, "{len}");
        }
        assert_eq!(max_len(MAX_CAPACITY), MAX_CAPACITY - 1);
        assert_eq!(id_mask(16), 0b1_1111);
        assert_eq!(id_mask(MAX_CAPACITY), u32::MAX);
        for capacity in [
            16,
            17,
            31,
            32,
            1000,
            1 << 24,
            (1 << 24) + 1,
            3 << 30,
            MAX_CAPACITY,
        ] {
            // Every stored `i + 1` (at most the number of keys) fits under the mask.
            assert!(
                max_len(capacity) <= id_mask(capacity) as usize,
                "{capacity}"
            );
        }
    }
}
