//! Dense per-shard bit vectors for the counting kernels of behaviour analysis.
//!
//! Counting (how many days or times each user did something) and funnels combine tens of
//! day bitmaps per shard with many operations each. On roaring bitmaps every operation pays for
//! container dispatch and, when results hover around the array/bitset threshold, for scalar
//! set-bit extraction; on a plain `[u64; 16384]` per shard (2^20 bits, 128 KiB, in L2) the same
//! operations are straight-line loops the compiler vectorizes.
//!
//! Stored bitmaps are read straight from their serialized (portable) bytes (see
//! [`crate::bitmap::portable`]): bitset containers are copied, array and run containers set
//! their bits. Damage is reported as [`Error::Corruption`], never a panic.

use std::path::Path;

use croaring::{Bitmap, Portable};

use crate::SHARD_BITS;
use crate::bitmap::portable::{BLOCK_WORDS, Directory};
use crate::error::{Error, Result};

/// Words of a shard's bit vector.
pub(crate) const WORDS: usize = 1 << (SHARD_BITS - 6);
/// Bitmaps of at most this many members are added to counters member by member. A member
/// costs a few unpredictable branches and scattered reads; a dense addition a fixed pass over
/// the shard's words, cheaper from about this many members on.
const SPARSE_MEMBERS: u64 = 1 << 12;
/// Roaring containers (2^16 ids each) per shard.
const CONTAINERS: u32 = 1 << (SHARD_BITS - 16);

/// The bits of one shard: bit `i` is user `shard_base + i`.
#[derive(Clone)]
pub(crate) struct Dense {
    pub(crate) words: Box<[u64]>,
}

impl std::fmt::Debug for Dense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dense({} bits set)", self.count())
    }
}

impl Dense {
    /// No bit set.
    pub(crate) fn zero() -> Self {
        Self {
            words: vec![0u64; WORDS].into_boxed_slice(),
        }
    }

    /// The bits of `b`, a bitmap of ids of `shard`.
    pub(crate) fn from_bitmap(b: &Bitmap, shard: u32) -> Self {
        let mut d = Self::zero();
        let bytes = b.serialize::<Portable>();
        // Our own serialization: well-formed by construction.
        d.or_portable(&bytes, shard, Path::new("(memory)"))
            .expect("CRoaring's own serialization parses");
        d
    }

    /// Replaces the bits with those of the bitmap serialized in `bytes` (see
    /// [`Dense::or_portable`]), clearing only the containers the bitmap does not fill.
    pub(crate) fn set_portable(&mut self, bytes: &[u8], shard: u32, path: &Path) -> Result<()> {
        self.words.fill(0);
        self.or_portable(bytes, shard, path)
    }

    /// ORs in the bitmap serialized (portable format) in `bytes`, whose ids belong to `shard`;
    /// `path` names the file in errors.
    pub(crate) fn or_portable(&mut self, bytes: &[u8], shard: u32, path: &Path) -> Result<()> {
        let dir = Directory::parse(bytes)
            .map_err(|what| Error::corrupt(path, format!("event bitmap: {what}")))?;
        let first_key = shard * CONTAINERS;
        for (key, c) in dir.iter() {
            let Some(local) = u32::from(key)
                .checked_sub(first_key)
                .filter(|&k| k < CONTAINERS)
            else {
                continue;
            };
            let base = local as usize * BLOCK_WORDS;
            c.or_into(&mut self.words[base..base + BLOCK_WORDS]);
        }
        Ok(())
    }

    /// Bits set.
    pub(crate) fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Bits set in both.
    pub(crate) fn and_count(&self, other: &Dense) -> u64 {
        self.words
            .iter()
            .zip(other.words.iter())
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }

    /// The set bits as a bitmap of ids of `shard`: written in CRoaring's portable format
    /// (dense containers as bitsets, the others as arrays) and read back, so a dense result
    /// costs a copy, not one insertion per member.
    pub(crate) fn to_bitmap(&self, shard: u32) -> Bitmap {
        use crate::bitmap::Container;
        let mut containers = Vec::new();
        for c in 0..CONTAINERS as usize {
            let words = &self.words[c * 1024..(c + 1) * 1024];
            let card: u32 = words.iter().map(|w| w.count_ones()).sum();
            let key = (shard * CONTAINERS + c as u32) as u16;
            containers.extend(Container::of_words(words, card).map(|c| (key, c)));
        }
        // Well-formed by construction; should CRoaring disagree, insert the members one by one.
        crate::bitmap::from_containers(&containers).unwrap_or_else(|| {
            let base = shard << SHARD_BITS;
            let mut ids = Vec::new();
            for (i, &w) in self.words.iter().enumerate() {
                let mut w = w;
                while w != 0 {
                    ids.push(base + (i as u32) * 64 + w.trailing_zeros());
                    w &= w - 1;
                }
            }
            Bitmap::of(&ids)
        })
    }
}

/// A bit-sliced counter over a shard: `slices[i]` holds bit `i` of every user's count.
#[derive(Debug, Default)]
pub(crate) struct DenseCounter {
    pub(crate) slices: Vec<Dense>,
    /// Scratch space of `add_at`.
    carry: Option<Dense>,
}

impl DenseCounter {
    /// Adds `2^bit` to the count of every user whose bit is set in `add`: a ripple-carry
    /// addition, one slice at a time over all words (branch-free, vectorized loops), stopping
    /// as soon as no carry is left.
    #[cfg(test)]
    pub(crate) fn add_at(&mut self, add: &Dense, bit: usize) {
        self.add_masked(add, None, bit);
    }

    /// [`DenseCounter::add_at`] of `add & mask` (all of `add` without a mask), the mask
    /// applied on the fly.
    pub(crate) fn add_masked(&mut self, add: &Dense, mask: Option<&Dense>, bit: usize) {
        while self.slices.len() < bit {
            self.slices.push(Dense::zero());
        }
        let mut carry = self.carry.take().unwrap_or_else(Dense::zero);
        let mut i = bit;
        // The first slice reads the addend directly; later ones the carry.
        let mut left = 0u64;
        if i == self.slices.len() {
            self.slices.push(Dense::zero());
        }
        {
            let s = &mut self.slices[i].words;
            match mask {
                Some(m) => {
                    for w in 0..WORDS {
                        let c = add.words[w] & m.words[w];
                        let next = s[w] & c;
                        s[w] ^= c;
                        carry.words[w] = next;
                        left |= next;
                    }
                }
                None => {
                    for w in 0..WORDS {
                        let c = add.words[w];
                        let next = s[w] & c;
                        s[w] ^= c;
                        carry.words[w] = next;
                        left |= next;
                    }
                }
            }
        }
        while left != 0 {
            i += 1;
            if i == self.slices.len() {
                self.slices.push(carry.clone());
                break;
            }
            left = 0;
            for (s, c) in self.slices[i].words.iter_mut().zip(carry.words.iter_mut()) {
                let next = *s & *c;
                *s ^= *c;
                *c = next;
                left |= next;
            }
        }
        self.carry = Some(carry);
    }

    /// Counts, for the users set in `within` (everyone when `None`), the times (or days) they
    /// did `event` on `days` in one shard.
    pub(crate) fn count(
        event: &crate::table::FieldRef<'_>,
        shard: u32,
        days: &[i32],
        measure: crate::expr::Measure,
        within: Option<&Dense>,
    ) -> Result<Self> {
        let mut c = DenseCounter::default();
        let mut scratch = Dense::zero();
        let base = shard << SHARD_BITS;
        // Sparse bitmaps (a rare event, count slices) are added member by member; dense ones
        // are expanded and added a word column at a time.
        let mut add =
            |c: &mut DenseCounter, view: &Bitmap, bytes: &[u8], path: &Path, bit: usize| {
                if view.cardinality() <= SPARSE_MEMBERS {
                    let mut buf = [0u32; 256];
                    let mut it = view.iter();
                    loop {
                        let n = it.next_many(&mut buf);
                        if n == 0 {
                            break;
                        }
                        for &id in &buf[..n] {
                            let Some(local) = id.checked_sub(base).filter(|&l| l < 1 << SHARD_BITS)
                            else {
                                continue;
                            };
                            let (w, b) = (local as usize >> 6, 1u64 << (local & 63));
                            if within.is_none_or(|m| m.words[w] & b != 0) {
                                c.add_one(w, b, bit);
                            }
                        }
                    }
                    return Ok(());
                }
                scratch.set_portable(bytes, shard, path)?;
                c.add_masked(&scratch, within, bit);
                Ok::<(), Error>(())
            };
        for &day in days {
            let Some(blob) = event.event_day_blob_in(shard, day)? else {
                continue;
            };
            add(&mut c, blob.bitmap, blob.bytes, blob.path, 0)?;
            if measure == crate::expr::Measure::Times {
                for (bit, slice) in event.event_count_blobs_in(shard, day)? {
                    add(&mut c, slice.bitmap, slice.bytes, slice.path, bit as usize)?;
                }
            }
        }
        Ok(c)
    }

    /// Adds `2^bit` to the count of the one user at bit `b` of word `w`.
    fn add_one(&mut self, w: usize, b: u64, bit: usize) {
        let mut i = bit;
        loop {
            if i == self.slices.len() {
                self.slices.push(Dense::zero());
            }
            let s = &mut self.slices[i].words[w];
            if *s & b == 0 {
                *s |= b;
                return;
            }
            *s &= !b;
            i += 1;
        }
    }

    /// Users with a count above zero.
    pub(crate) fn nonzero(&self) -> Dense {
        let mut out = Dense::zero();
        for s in &self.slices {
            for (a, b) in out.words.iter_mut().zip(s.words.iter()) {
                *a |= b;
            }
        }
        out
    }

    /// Users with a count `c > 0` such that `c op n`.
    pub(crate) fn passing(&self, op: crate::expr::CmpOp, n: u64) -> Dense {
        use crate::expr::CmpOp;
        let slices = self.slices.len();
        // Per word: users with count >= v (among users with any count).
        let at_least = |w: usize, any: u64, v: u64| -> u64 {
            if v == 0 {
                return any;
            }
            if slices < 64 && v >> slices != 0 {
                return 0;
            }
            let (mut gt, mut eq) = (0u64, any);
            for i in (0..slices).rev() {
                let s = self.slices[i].words[w];
                if v >> i & 1 == 1 {
                    eq &= s;
                } else {
                    gt |= eq & s;
                    eq &= !s;
                }
            }
            gt | eq
        };
        let mut out = Dense::zero();
        for w in 0..WORDS {
            let any = self.slices.iter().fold(0u64, |a, s| a | s.words[w]);
            if any == 0 {
                continue;
            }
            let ge = at_least(w, any, n);
            let gt = if n == u64::MAX {
                0
            } else {
                at_least(w, any, n + 1)
            };
            out.words[w] = match op {
                CmpOp::Ge => ge,
                CmpOp::Gt => gt,
                CmpOp::Lt => any & !ge,
                CmpOp::Le => any & !gt,
                CmpOp::Eq => ge & !gt,
                CmpOp::Ne => any & !(ge & !gt),
            };
        }
        out
    }

    /// `(count, users)` for every count above zero, ascending.
    pub(crate) fn histogram(&self) -> Vec<(u64, u64)> {
        let n = self.slices.len();
        if n == 0 {
            return Vec::new();
        }
        if n > 16 {
            // Counts beyond 65,535 in one window: split value by value would be too slow;
            // fall back to per-user extraction.
            let mut map = std::collections::BTreeMap::new();
            for w in 0..WORDS {
                for b in 0..64 {
                    let mut c = 0u64;
                    for (i, s) in self.slices.iter().enumerate() {
                        c |= (s.words[w] >> b & 1) << i;
                    }
                    if c > 0 {
                        *map.entry(c).or_insert(0u64) += 1;
                    }
                }
            }
            return map.into_iter().collect();
        }
        let mut counts = vec![0u64; 1 << n];
        for w in 0..WORDS {
            let any = self.slices.iter().fold(0u64, |a, s| a | s.words[w]);
            if any == 0 {
                continue;
            }
            // Split the word's users by their count, one slice at a time (at most 64 groups:
            // one per user of the word).
            let mut buf = [[(0u64, 0usize); 64]; 2];
            buf[0][0] = (any, 0);
            let mut len = 1;
            let mut cur = 0;
            for (i, s) in self.slices.iter().enumerate() {
                let bits = s.words[w];
                let (a, b) = buf.split_at_mut(1);
                let (from, to) = if cur == 0 {
                    (&a[0], &mut b[0])
                } else {
                    (&b[0], &mut a[0])
                };
                let mut n = 0;
                for &(mask, value) in &from[..len] {
                    let with = mask & bits;
                    let without = mask & !bits;
                    if with != 0 {
                        to[n] = (with, value | 1 << i);
                        n += 1;
                    }
                    if without != 0 {
                        to[n] = (without, value);
                        n += 1;
                    }
                }
                len = n;
                cur ^= 1;
            }
            let groups = &buf[cur];
            for &(mask, value) in &groups[..len] {
                counts[value] += u64::from(mask.count_ones());
            }
        }
        counts
            .into_iter()
            .enumerate()
            .skip(1)
            .filter(|e| e.1 > 0)
            .map(|(v, c)| (v as u64, c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bitmap_strategy() -> impl Strategy<Value = Bitmap> {
        // Sparse, dense and runny shapes, in shard 1 with strays in other shards.
        let base = 1u32 << SHARD_BITS;
        prop_oneof![
            prop::collection::vec(0u32..(1 << SHARD_BITS), 0..200)
                .prop_map(move |v| v.iter().map(|x| base + x).collect::<Bitmap>()),
            (0u32..(1 << SHARD_BITS) - 70_000, 1u32..70_000).prop_map(move |(a, n)| {
                let mut b = Bitmap::from_range(base + a..base + a + n);
                b.add(5);
                b.run_optimize();
                b
            }),
            (0u32..16, 0u64..u64::MAX).prop_map(move |(c, seed)| {
                let mut x = seed | 1;
                let lo = base + c * 65_536;
                let ids: Vec<u32> = (0..6000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        lo + (x % 65_536) as u32
                    })
                    .collect();
                let mut b = Bitmap::of(&ids);
                b.add(base * 3);
                b
            }),
        ]
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]

        #[test]
        fn dense_round_trips_bitmaps(b in bitmap_strategy()) {
            let shard = 1;
            let d = Dense::from_bitmap(&b, shard);
            let mut in_shard = b.clone();
            in_shard.and_inplace(&Bitmap::from_range(1 << SHARD_BITS..2 << SHARD_BITS));
            prop_assert_eq!(d.count(), in_shard.cardinality());
            prop_assert_eq!(d.to_bitmap(shard), in_shard);
        }

        #[test]
        fn counter_histogram_matches_naive(adds in prop::collection::vec((bitmap_strategy(), 0usize..3), 1..6)) {
            let mut c = DenseCounter::default();
            let mut naive = std::collections::BTreeMap::<u32, u64>::new();
            for (b, bit) in &adds {
                c.add_at(&Dense::from_bitmap(b, 1), *bit);
                for id in b.iter().filter(|&id| id >> SHARD_BITS == 1) {
                    *naive.entry(id).or_default() += 1 << bit;
                }
            }
            let mut hist = std::collections::BTreeMap::<u64, u64>::new();
            for v in naive.values() {
                *hist.entry(*v).or_default() += 1;
            }
            prop_assert_eq!(c.histogram(), hist.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let b = Bitmap::from_range(0..100_000);
        let bytes = b.serialize::<Portable>();
        let p = Path::new("x");
        for cut in [0, 3, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(Dense::zero().or_portable(&bytes[..cut], 0, p).is_err());
        }
        assert!(Dense::zero().or_portable(&[9, 9, 9, 9], 0, p).is_err());
    }
}
