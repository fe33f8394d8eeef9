//! Fused BSI comparisons: every slice of a stored bit-sliced index read once, word by word.
//!
//! O'Neil's algorithm on roaring bitmaps (see [`super::bsi`]) builds and combines an
//! intermediate bitmap per slice. For an index read from a segment, the same comparison is a
//! handful of bit operations per 64 users once the slices' words sit side by side: the shard is
//! walked one container block (65,536 users) at a time with [`Blocks`], bitset containers read
//! in place, and the slices consumed from the most significant down while the words stay in
//! registers. A range is one pass; the counts below several bounds (a distribution) are one
//! pass too.
//!
//! Offsets here are the stored ones (`value - base`), already clamped to the representable
//! range by the caller.

use croaring::{Bitmap, Portable};

use super::portable::{BLOCK_BYTES, BLOCK_WORDS, Blocks, Directory, chunk_at, word, words_of};
use super::{Container, from_containers};

/// Words computed together: small enough to stay in registers, long enough to vectorize.
const CHUNK: usize = 64;

/// An all-zero block: a slice with no member in a block.
static ZERO_BLOCK: [u8; BLOCK_BYTES] = [0; BLOCK_BYTES];

/// The containers of a stored index and of an optional filter, parsed once per call.
pub(crate) struct Fused<'a> {
    exists: Directory<'a>,
    slices: Vec<Directory<'a>>,
}

/// A range of offsets, both ends inclusive and within `[0, 2^slices)`; `negate` keeps the
/// users with a value outside it instead (for `!=`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OffsetRange {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
    pub(crate) negate: bool,
}

impl<'a> Fused<'a> {
    /// Indexes the serialized bytes of an index: `bytes[0]` is the existence bitmap, then one
    /// per slice. `None` if any fails to parse (the caller then uses the bitmap algorithm).
    pub(crate) fn new(bytes: &[&'a [u8]]) -> Option<Self> {
        let (exists, slices) = bytes.split_first()?;
        Some(Self {
            exists: Directory::parse(exists).ok()?,
            slices: slices
                .iter()
                .map(|b| Directory::parse(b).ok())
                .collect::<Option<_>>()?,
        })
    }

    /// Users of `filter` (all when `None`) with an offset in `range`.
    pub(crate) fn range(&self, range: OffsetRange, filter: Option<&Bitmap>) -> Bitmap {
        let mut containers: Vec<(u16, Container<'static>)> = Vec::new();
        let mut out = [0u64; BLOCK_WORDS];
        self.walk(filter, |key, exists, slices| {
            let card = range_block(exists, slices, range, &mut out);
            containers.extend(Container::of_words(&out, card).map(|c| (key, c.into_owned())));
        });
        from_containers(&containers).unwrap_or_else(|| {
            // Never for well-formed containers; should CRoaring disagree, add them one by one.
            let mut b = Bitmap::new();
            for (key, c) in &containers {
                let high = u32::from(*key) << 16;
                match c {
                    Container::Array(values) => b.add_many(
                        &values
                            .iter()
                            .map(|&v| high | u32::from(v))
                            .collect::<Vec<_>>(),
                    ),
                    Container::Bitset(words, _) => {
                        for (i, &w) in words.iter().enumerate() {
                            for bit in 0..64 {
                                if w >> bit & 1 == 1 {
                                    b.add(high | (i as u32 * 64 + bit));
                                }
                            }
                        }
                    }
                }
            }
            b
        })
    }

    /// For each offset `bounds[i]` (each below `2^slices`), how many users of `filter` (all
    /// when `None`) have an offset below it; and how many have a value at all.
    pub(crate) fn count_below(&self, bounds: &[u64], filter: Option<&Bitmap>) -> (Vec<u64>, u64) {
        let mut below = vec![0u64; bounds.len()];
        let mut total = 0u64;
        self.walk(filter, |_, exists, slices| {
            total += count_below_block(exists, slices, bounds, &mut below);
        });
        (below, total)
    }

    /// [`Fused::count_below`] for the members of a serialized bitmap, read in place (a stored
    /// crowd, without building its bitmap and serializing it again).
    pub(crate) fn count_below_in(&self, bounds: &[u64], filter: &Directory<'_>) -> (Vec<u64>, u64) {
        let mut below = vec![0u64; bounds.len()];
        let mut total = 0u64;
        self.walk_in(Some(filter), |_, exists, slices| {
            total += count_below_block(exists, slices, bounds, &mut below);
        });
        (below, total)
    }

    /// Calls `f(key, exists, slices)` for every block of the index with members in `filter`:
    /// `exists` already narrowed to the filter (as words), `slices` the slices' blocks.
    fn walk(&self, filter: Option<&Bitmap>, f: impl FnMut(u16, &[u64; BLOCK_WORDS], &[&[u8]])) {
        let filter_bytes = filter.map(|b| b.serialize::<Portable>());
        match filter_bytes.as_deref().map(Directory::parse) {
            None => self.walk_in(None, f),
            Some(Ok(d)) => self.walk_in(Some(&d), f),
            // CRoaring's own serialization always parses; treat the impossible as empty.
            Some(Err(_)) => {}
        }
    }

    /// [`Fused::walk`] with the filter's containers already indexed.
    fn walk_in(
        &self,
        filter_dir: Option<&Directory<'_>>,
        mut f: impl FnMut(u16, &[u64; BLOCK_WORDS], &[&[u8]]),
    ) {
        let mut inputs: Vec<&Directory<'_>> = vec![&self.exists];
        inputs.extend(filter_dir);
        let first_slice = inputs.len();
        inputs.extend(self.slices.iter());
        let mut blocks = Blocks::default();
        let mut exists = [0u64; BLOCK_WORDS];
        for key in self.exists.keys() {
            if filter_dir.as_ref().is_some_and(|d| d.get(key).is_none()) {
                continue;
            }
            let loaded = blocks.load(&inputs, key);
            let Some(e) = loaded[0] else { continue };
            match filter_dir.as_ref().map(|_| loaded[1]) {
                // In whole words, so that the loops are vectorized.
                None => {
                    for (w, e) in exists.iter_mut().zip(words_of(e)) {
                        *w = e;
                    }
                }
                Some(None) => continue,
                Some(Some(m)) => {
                    for ((w, e), m) in exists.iter_mut().zip(words_of(e)).zip(words_of(m)) {
                        *w = e & m;
                    }
                }
            }
            let slices: Vec<&[u8]> = loaded[first_slice..]
                .iter()
                .map(|s| s.unwrap_or(&ZERO_BLOCK[..]))
                .collect();
            f(key, &exists, &slices);
        }
    }
}

/// Per word: the users whose offset is `>= c` (`ge`) and `<= c` (`le`), among all users.
#[inline(always)]
fn compare_chunk(
    slices: &[&[u8]],
    at: usize,
    c: u64,
    ge: &mut [u64; CHUNK],
    le: &mut [u64; CHUNK],
) {
    let mut gt = [0u64; CHUNK];
    let mut lt = [0u64; CHUNK];
    let mut eq = [!0u64; CHUNK];
    for (i, s) in slices.iter().enumerate().rev() {
        let s = chunk_at::<{ CHUNK * 8 }>(s, at);
        if c >> i & 1 == 1 {
            for j in 0..CHUNK {
                let w = word(s, j);
                lt[j] |= eq[j] & !w;
                eq[j] &= w;
            }
        } else {
            for j in 0..CHUNK {
                let w = word(s, j);
                gt[j] |= eq[j] & w;
                eq[j] &= !w;
            }
        }
    }
    for j in 0..CHUNK {
        ge[j] = gt[j] | eq[j];
        le[j] = lt[j] | eq[j];
    }
}

dispatched! {
    /// Fills `out` with the users of `exists` in a block whose offset is in `range`; returns
    /// how many there are.
    fn range_block / range_block_avx512 / range_block_avx2 = range_block_generic(
        exists: &[u64; BLOCK_WORDS],
        slices: &[&[u8]],
        range: OffsetRange,
        out: &mut [u64; BLOCK_WORDS]
    ) -> u32
}

#[inline(always)]
fn range_block_generic(
    exists: &[u64; BLOCK_WORDS],
    slices: &[&[u8]],
    range: OffsetRange,
    out: &mut [u64; BLOCK_WORDS],
) -> u32 {
    let max = if slices.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << slices.len()) - 1
    };
    let mut card = 0u32;
    let mut ge_lo = [0u64; CHUNK];
    let mut le_lo = [0u64; CHUNK];
    let mut ge_hi = [0u64; CHUNK];
    let mut le_hi = [0u64; CHUNK];
    for at in (0..BLOCK_WORDS).step_by(CHUNK) {
        let e: &[u64; CHUNK] = exists[at..at + CHUNK].try_into().expect("a chunk");
        let o: &mut [u64; CHUNK] = (&mut out[at..at + CHUNK]).try_into().expect("a chunk");
        if e.iter().all(|&w| w == 0) {
            *o = [0; CHUNK];
            continue;
        }
        // An end at the edge of the offsets bounds nobody: skip its comparison.
        if range.lo == 0 {
            ge_lo = [!0; CHUNK];
        } else {
            compare_chunk(slices, at, range.lo, &mut ge_lo, &mut le_lo);
        }
        if range.hi == range.lo && range.lo != 0 {
            le_hi = le_lo;
        } else if range.hi == max {
            le_hi = [!0; CHUNK];
        } else {
            compare_chunk(slices, at, range.hi, &mut ge_hi, &mut le_hi);
        }
        for j in 0..CHUNK {
            let inside = ge_lo[j] & le_hi[j];
            o[j] = e[j] & if range.negate { !inside } else { inside };
            card += o[j].count_ones();
        }
    }
    card
}

dispatched! {
    /// Adds, for each bound, the users of `exists` in a block with an offset below it; returns
    /// how many users `exists` holds in the block.
    fn count_below_block / count_below_avx512 / count_below_avx2 = count_below_generic(
        exists: &[u64; BLOCK_WORDS],
        slices: &[&[u8]],
        bounds: &[u64],
        below: &mut [u64]
    ) -> u64
}

#[inline(always)]
fn count_below_generic(
    exists: &[u64; BLOCK_WORDS],
    slices: &[&[u8]],
    bounds: &[u64],
    below: &mut [u64],
) -> u64 {
    let mut total = 0u64;
    let mut ge = [0u64; CHUNK];
    let mut le = [0u64; CHUNK];
    for at in (0..BLOCK_WORDS).step_by(CHUNK) {
        let e: &[u64; CHUNK] = exists[at..at + CHUNK].try_into().expect("a chunk");
        let n: u64 = e.iter().map(|w| u64::from(w.count_ones())).sum();
        if n == 0 {
            continue;
        }
        total += n;
        for (acc, &b) in below.iter_mut().zip(bounds) {
            compare_chunk(slices, at, b, &mut ge, &mut le);
            // Below `b`: has a value, and not `>= b`.
            *acc += (0..CHUNK)
                .map(|j| u64::from((e[j] & !ge[j]).count_ones()))
                .sum::<u64>();
        }
    }
    total
}

/// Narrows `words`, the users of one block, to those of `exists` (a block of bytes, as
/// [`Blocks::load`] gives) whose offset in `slices` is in `range`: the kernel of an `AND` that
/// counts block by block. Chunks of `words` with nobody left are skipped.
pub(crate) fn narrow_block(
    words: &mut [u64; BLOCK_WORDS],
    exists: &[u8],
    slices: &[&[u8]],
    range: OffsetRange,
) {
    narrow_dispatched(words, exists, slices, range)
}

dispatched! {
    /// [`narrow_block`] in the best build for the CPU.
    fn narrow_dispatched / narrow_avx512 / narrow_avx2 = narrow_generic(
        words: &mut [u64; BLOCK_WORDS],
        exists: &[u8],
        slices: &[&[u8]],
        range: OffsetRange
    )
}

#[inline(always)]
fn narrow_generic(
    words: &mut [u64; BLOCK_WORDS],
    exists: &[u8],
    slices: &[&[u8]],
    range: OffsetRange,
) {
    let max = if slices.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << slices.len()) - 1
    };
    let mut ge_lo = [0u64; CHUNK];
    let mut le_lo = [0u64; CHUNK];
    let mut ge_hi = [0u64; CHUNK];
    let mut le_hi = [0u64; CHUNK];
    for at in (0..BLOCK_WORDS).step_by(CHUNK) {
        let o: &mut [u64; CHUNK] = (&mut words[at..at + CHUNK]).try_into().expect("a chunk");
        if o.iter().all(|&w| w == 0) {
            continue;
        }
        let e = chunk_at::<{ CHUNK * 8 }>(exists, at);
        if range.lo == 0 {
            ge_lo = [!0; CHUNK];
        } else {
            compare_chunk(slices, at, range.lo, &mut ge_lo, &mut le_lo);
        }
        if range.hi == range.lo && range.lo != 0 {
            le_hi = le_lo;
        } else if range.hi == max {
            le_hi = [!0; CHUNK];
        } else {
            compare_chunk(slices, at, range.hi, &mut ge_hi, &mut le_hi);
        }
        for j in 0..CHUNK {
            let inside = ge_lo[j] & le_hi[j];
            o[j] &= word(e, j) & if range.negate { !inside } else { inside };
        }
    }
}

impl Directory<'_> {
    /// The keys of the bitmap's containers, ascending.
    pub(crate) fn keys(&self) -> impl Iterator<Item = u16> + '_ {
        self.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..BLOCK_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(24))]

        /// The generic, AVX2 and AVX-512 builds of the kernels agree.
        #[test]
        fn kernel_builds_agree(
            depth in 1usize..10,
            seed in any::<u64>(),
            lo in 0u64..600,
            len in 0u64..600,
            negate in any::<bool>(),
            bounds in proptest::collection::vec(0u64..600, 0..5),
        ) {
            let max = (1u64 << depth) - 1;
            let range = OffsetRange { lo: lo.min(max), hi: (lo + len).min(max), negate };
            let slices: Vec<Vec<u8>> = (0..depth as u64).map(|i| block(seed ^ ((i + 1) * 7919))).collect();
            let slices: Vec<&[u8]> = slices.iter().map(|s| s.as_slice()).collect();
            let e = block(!seed);
            let exists: [u64; BLOCK_WORDS] = std::array::from_fn(|j| word(&e, j));
            let bounds: Vec<u64> = bounds.into_iter().map(|b| b.min(max)).collect();
            let mut want = [0u64; BLOCK_WORDS];
            let want_card = range_block_generic(&exists, &slices, range, &mut want);
            let mut want_below = vec![0; bounds.len()];
            let want_total = count_below_generic(&exists, &slices, &bounds, &mut want_below);
            // The model: each user's offset from its bits.
            for j in [0, 77, BLOCK_WORDS - 1] {
                for b in 0..64 {
                    let off: u64 = slices.iter().enumerate().map(|(i, s)| (word(s, j) >> b & 1) << i).sum();
                    let inside = range.lo <= off && off <= range.hi;
                    let expect = exists[j] >> b & 1 == 1 && inside != range.negate;
                    prop_assert_eq!(want[j] >> b & 1 == 1, expect);
                }
            }
            // Narrowing a block of users: the users of both it and the range.
            let users = block(seed.rotate_left(17));
            let users: [u64; BLOCK_WORDS] = std::array::from_fn(|j| word(&users, j) & if j % 192 < 64 { 0 } else { !0 });
            let narrowed_want: [u64; BLOCK_WORDS] = std::array::from_fn(|j| users[j] & want[j]);
            let mut narrowed = users;
            narrow_generic(&mut narrowed, &e, &slices, range);
            prop_assert_eq!(narrowed, narrowed_want);
            let mut narrowed = users;
            narrow_block(&mut narrowed, &e, &slices, range);
            prop_assert_eq!(narrowed, narrowed_want);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut narrowed = users;
                // SAFETY: the CPU has AVX2.
                unsafe { narrow_avx2(&mut narrowed, &e, &slices, range) };
                prop_assert_eq!(narrowed, narrowed_want);
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                let mut narrowed = users;
                // SAFETY: the CPU has AVX-512F and VPOPCNTDQ.
                unsafe { narrow_avx512(&mut narrowed, &e, &slices, range) };
                prop_assert_eq!(narrowed, narrowed_want);
            }
            let mut got = [0u64; BLOCK_WORDS];
            let mut below = vec![0; bounds.len()];
            prop_assert_eq!(range_block(&exists, &slices, range, &mut got), want_card);
            prop_assert_eq!(got, want);
            prop_assert_eq!(count_below_block(&exists, &slices, &bounds, &mut below), want_total);
            prop_assert_eq!(&below, &want_below);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut got = [0u64; BLOCK_WORDS];
                let mut below = vec![0; bounds.len()];
                // SAFETY: the CPU has AVX2.
                unsafe {
                    prop_assert_eq!(range_block_avx2(&exists, &slices, range, &mut got), want_card);
                    prop_assert_eq!(count_below_avx2(&exists, &slices, &bounds, &mut below), want_total);
                }
                prop_assert_eq!(got, want);
                prop_assert_eq!(&below, &want_below);
            }
        }
    }
}
