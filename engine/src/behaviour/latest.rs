//! The per-user state of a funnel evaluated day by day: for each step, the latest start day
//! from which the user reached it, one byte per user of a container block (65,536 users).
//!
//! A byte holds the start day's offset from the funnel's first start day plus one, `0` for
//! none, so a funnel whose days span at most [`MAX_SPAN`] days fits. The funnel applies the
//! stored (step, day) containers in day order, steps in order within a day (see `funnel.rs`):
//! - [`Levels::start`]: the users of the crowd who did step 1 on a start day start there (the
//!   latest start so far);
//! - [`Levels::step`]: the users who did step `i` on a day and hold a start of step `i - 1`
//!   recent enough take that start for step `i`.
//!
//! A level never holds a later start than the level before it (a start reaching step `i`
//! reached step `i - 1`, and starts only grow), so taking the start of the level before never
//! moves a level back.
//!
//! Array containers (sparse days) are applied member by member. Bitset containers are applied
//! 64 users at a time with AVX-512BW, where a word of the bitmap is directly the mask of 64
//! byte lanes (a masked store updates them); elsewhere member by member from the words.
//!
//! Users are independent, so [`Levels::apply`] takes the block in slices of 4,096 users, and
//! applies every container's members of one slice before the next slice: the members of a
//! sparse day are spread over the whole block, so applied container by container they read
//! and write every cache line of two levels, from L2, for about one member per line.
//!
//! # Safety
//! The only `unsafe` is in the AVX-512BW kernels: they run only where [`Simd::detect`] saw
//! AVX-512F and AVX-512BW, and every load and store they make is of the 64 bytes at `64 * g`,
//! `g < 1,024` (checked by reading word `g` of a bitset block first), of a level or of a
//! block's byte counts (65,536 bytes each; [`nonzero_words`] also serves the byte counts of
//! `dense.rs`).

use std::hint::select_unpredictable;

use crate::bitmap::portable::{BLOCK_BYTES, BLOCK_WORDS, word};
use crate::ids::prefetch::{prefetch, prefetch_lines};

/// Users of a container block, one byte of each level each.
const USERS: usize = BLOCK_WORDS * 64;
/// Words of a slice of a block: the containers are applied slice by slice (4,096 users), so
/// that the levels' bytes of the slice stay in L1 (4 KiB per step).
const SLICE_WORDS: usize = 64;
/// The most days (from the first start day to the last day a step may happen) a funnel
/// evaluated with these levels may span: a byte holds a day's offset plus one.
pub(crate) const MAX_SPAN: usize = 255;

/// The kernels the CPU can run, found once per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    /// Plain Rust, member by member.
    Portable,
    /// AVX-512F and AVX-512BW: bitset words as masks of 64 byte lanes.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Simd {
    /// The fastest kernels this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Simd::Avx512;
            }
        }
        Simd::Portable
    }
}

/// A day's users of a block, as a container holds them; while they are applied slice by
/// slice, those of the slices not applied yet.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Members<'a> {
    /// The 1,024 little-endian words of a bitset (8,192 bytes), of which words `at..` are left.
    Words { bytes: &'a [u8], at: usize },
    /// Increasing little-endian `u16`s.
    Sorted(&'a [u8]),
}

impl<'a> Members<'a> {
    /// The users of a bitset block of 8,192 bytes.
    pub(crate) fn words(bytes: &'a [u8]) -> Self {
        Members::Words {
            bytes: &bytes[..BLOCK_BYTES],
            at: 0,
        }
    }

    /// Hints that the first of these members will be read at once.
    fn prefetch_first(&self) {
        match *self {
            Members::Words { bytes, at } => prefetch(bytes, 8 * at),
            Members::Sorted(values) => prefetch(values, 0),
        }
    }

    /// Hints that the members of the next slice will be read soon. Into L2: a whole pass over
    /// the block's containers comes first, and a container's members of one slice are too few
    /// for the hardware prefetcher to follow.
    fn prefetch_next(&self) {
        match *self {
            Members::Words { bytes, at } => prefetch_lines(bytes, 8 * at, 8 * (at + SLICE_WORDS)),
            // About the members of a slice of the densest array containers (measured best
            // among 128 to 1,024 bytes).
            Members::Sorted(values) => prefetch_lines(values, 0, values.len().min(256)),
        }
    }
}

/// A container to apply: step `i`'s users on day `t` (an offset from the first day).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Update<'a> {
    pub(crate) t: usize,
    pub(crate) i: usize,
    pub(crate) members: Members<'a>,
}

/// Per step, the latest start of each user of one container block. They start empty, and
/// are empty again once [`Levels::take`] has taken every step.
pub(crate) struct Levels {
    /// 65,536 bytes per step.
    bytes: Box<[u8]>,
    simd: Simd,
}

impl Levels {
    /// The levels of a funnel of `steps` steps, run with `simd`.
    pub(crate) fn new(steps: usize, simd: Simd) -> Self {
        Self {
            bytes: vec![0; steps * USERS].into_boxed_slice(),
            simd,
        }
    }

    fn level_mut(&mut self, i: usize) -> &mut [u8; USERS] {
        (&mut self.bytes[i * USERS..(i + 1) * USERS])
            .try_into()
            .expect("a level")
    }

    /// Levels `i - 1` and `i`.
    fn pair(&mut self, i: usize) -> (&[u8; USERS], &mut [u8; USERS]) {
        let (lower, upper) = self.bytes.split_at_mut(i * USERS);
        (
            lower[(i - 1) * USERS..].try_into().expect("a level"),
            (&mut upper[..USERS]).try_into().expect("a level"),
        )
    }

    /// Applies `updates` (days in order, steps in order within a day; see the module
    /// documentation) with a window of `window` days, for the crowd `crowd` (a block of 8,192
    /// bytes).
    ///
    /// They are applied slice by slice, each slice's members in that order: users are
    /// independent, and the levels of a slice stay in L1 while every container's members of
    /// the slice are applied, where a whole block's levels would be read from L2 for every
    /// container.
    pub(crate) fn apply(&mut self, updates: &mut [Update<'_>], crowd: &[u8], window: usize) {
        for u in updates.iter() {
            u.members.prefetch_next();
        }
        for end in (1..=BLOCK_WORDS / SLICE_WORDS).map(|s| s * SLICE_WORDS * 64) {
            for n in 0..updates.len() {
                // The first line of the next container's slice into L1, from L2.
                if let Some(next) = updates.get(n + 1) {
                    next.members.prefetch_first();
                }
                let Update { t, i, members } = &mut updates[n];
                // Day offsets plus one, at most `MAX_SPAN`.
                let now = *t + 1;
                if *i == 0 {
                    self.start(members, crowd, now as u8, end);
                } else {
                    // Starts on or after day `t - window` are recent enough.
                    let lo = now.saturating_sub(window).max(1);
                    self.step(*i, members, lo as u8, end);
                }
                members.prefetch_next();
            }
        }
    }

    /// The users of `did` below user `end` (the end of a slice) who are in `crowd` (a block
    /// of 8,192 bytes) start at `now` (`1..=MAX_SPAN`); `did` is left with the others.
    fn start(&mut self, did: &mut Members<'_>, crowd: &[u8], now: u8, end: usize) {
        let simd = self.simd;
        let level: &mut [u8; USERS] = (&mut self.bytes[..USERS]).try_into().expect("a level");
        let crowd = &crowd[..BLOCK_BYTES];
        match did {
            Members::Sorted(values) => {
                *values = for_members_below(values, end, level, |level, u, below| {
                    let member = crowd[u >> 3] >> (u & 7) & 1 == 1;
                    level[u] = select_unpredictable(member & below, now, level[u]);
                });
            }
            Members::Words { bytes, at } => {
                let words = *at..end / 64;
                *at = words.end;
                match simd {
                    Simd::Portable => {
                        for g in words {
                            let mut m = word(bytes, g) & word(crowd, g);
                            while m != 0 {
                                level[g * 64 + m.trailing_zeros() as usize] = now;
                                m &= m - 1;
                            }
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Simd::Avx512` is only detected on CPUs with both features.
                    Simd::Avx512 => unsafe { avx512::start(level, bytes, crowd, now, words) },
                }
            }
        }
    }

    /// Step `i` (`1..`): the users of `did` below user `end` (the end of a slice) whose start
    /// of step `i - 1` is at least `lo` (`>= 1`) take it for step `i`; `did` is left with the
    /// others.
    fn step(&mut self, i: usize, did: &mut Members<'_>, lo: u8, end: usize) {
        debug_assert!(lo >= 1);
        let simd = self.simd;
        let (prev, cur) = self.pair(i);
        match did {
            Members::Sorted(values) => {
                *values = for_members_below(values, end, cur, |cur, u, below| {
                    let p = prev[u];
                    cur[u] = select_unpredictable((p >= lo) & below, p, cur[u]);
                });
            }
            Members::Words { bytes, at } => {
                let words = *at..end / 64;
                *at = words.end;
                match simd {
                    Simd::Portable => {
                        for g in words {
                            let mut m = word(bytes, g);
                            while m != 0 {
                                let u = g * 64 + m.trailing_zeros() as usize;
                                if prev[u] >= lo {
                                    cur[u] = prev[u];
                                }
                                m &= m - 1;
                            }
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Simd::Avx512` is only detected on CPUs with both features.
                    Simd::Avx512 => unsafe { avx512::step(prev, cur, bytes, lo, words) },
                }
            }
        }
    }

    /// The users holding a start of step `i`, as the 1,024 words of a block; returns how many.
    /// Level `i` is left empty: once every level is taken, the levels are ready for the next
    /// block.
    pub(crate) fn take(&mut self, i: usize, out: &mut [u64; BLOCK_WORDS]) -> u64 {
        let simd = self.simd;
        let level = self.level_mut(i);
        nonzero_words(simd, level, out);
        level.fill(0);
        out.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// The users of a block whose byte in `bytes` is not zero, as the block's 1,024 words.
pub(crate) fn nonzero_words(simd: Simd, bytes: &[u8; USERS], out: &mut [u64; BLOCK_WORDS]) {
    match simd {
        Simd::Portable => {
            for (w, bytes) in out.iter_mut().zip(bytes.as_chunks::<64>().0) {
                *w = nonzero_bytes(bytes);
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Simd::Avx512` is only detected on CPUs with both features.
        Simd::Avx512 => unsafe { avx512::nonzero(bytes, out) },
    }
}

/// Bit `i` set when byte `i` of `bytes` is not zero, eight bytes a word at a time.
#[inline]
fn nonzero_bytes(bytes: &[u8; 64]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    bytes
        .as_chunks::<8>()
        .0
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, b)| {
            let x = u64::from_le_bytes(*b);
            // A byte's high bit: set if its own high bit is, or its low seven bits carry into
            // it.
            let high = ((x & LOW7).wrapping_add(LOW7) | x) & HIGH;
            // The eight high bits gathered into one byte, lowest byte lowest.
            let bits = (high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            acc | bits << (8 * i)
        })
}

/// Applies `f` to `levels` and each of the sorted members `values` below user `end`; returns
/// the members from `end` on. `f` is also called with `false` on some members from `end`
/// on, and must then leave the levels as they are: the members of a slice end in a group of
/// eight with no branch per member (it would be mispredicted at every slice's end).
#[inline(always)]
fn for_members_below<'v, L: ?Sized>(
    mut values: &'v [u8],
    end: usize,
    levels: &mut L,
    mut f: impl FnMut(&mut L, usize, bool),
) -> &'v [u8] {
    let user = |v: &[u8]| usize::from(u16::from_le_bytes([v[0], v[1]]));
    // Eight members at a time while the eighth is below `end`, then the eight that hold the
    // end of the slice.
    while let Some(eight) = values.get(..16) {
        if user(&eight[14..]) >= end {
            let mut below = 0;
            for v in eight.chunks_exact(2) {
                let u = user(v);
                f(levels, u, u < end);
                below += usize::from(u < end);
            }
            return &values[2 * below..];
        }
        for v in eight.chunks_exact(2) {
            f(levels, user(v), true);
        }
        values = &values[16..];
    }
    // The last members of the container.
    while let Some(v) = values.get(..2) {
        let u = user(v);
        if u >= end {
            break;
        }
        f(levels, u, true);
        values = &values[2..];
    }
    values
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_cmpge_epu8_mask, _mm512_loadu_si512, _mm512_mask_storeu_epi8,
        _mm512_set1_epi8, _mm512_test_epi8_mask,
    };

    use std::ops::Range;

    use super::USERS;
    use crate::bitmap::portable::{BLOCK_BYTES, BLOCK_WORDS, word};

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn start(
        level: &mut [u8; USERS],
        did: &[u8],
        crowd: &[u8],
        now: u8,
        words: Range<usize>,
    ) {
        let (did, crowd) = (&did[..BLOCK_BYTES], &crowd[..BLOCK_BYTES]);
        let now = _mm512_set1_epi8(now as i8);
        for g in words {
            let m = word(did, g) & word(crowd, g);
            // SAFETY: bytes `64 * g..64 * g + 64` of `level`: `word` above checked
            // `g < 1,024`.
            unsafe { _mm512_mask_storeu_epi8(level.as_mut_ptr().add(64 * g).cast(), m, now) };
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn step(
        prev: &[u8; USERS],
        cur: &mut [u8; USERS],
        did: &[u8],
        lo: u8,
        words: Range<usize>,
    ) {
        let did = &did[..BLOCK_BYTES];
        let lo = _mm512_set1_epi8(lo as i8);
        for g in words {
            let m = word(did, g);
            if m == 0 {
                continue;
            }
            // SAFETY: bytes `64 * g..64 * g + 64` of `prev` and `cur`: `word` above checked
            // `g < 1,024`.
            unsafe {
                let p = _mm512_loadu_si512(prev.as_ptr().add(64 * g).cast::<__m512i>());
                let take = m & _mm512_cmpge_epu8_mask(p, lo);
                _mm512_mask_storeu_epi8(cur.as_mut_ptr().add(64 * g).cast(), take, p);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn nonzero(bytes: &[u8; USERS], out: &mut [u64; BLOCK_WORDS]) {
        for (g, w) in out.iter_mut().enumerate() {
            // SAFETY: bytes `64 * g..64 * g + 64` of `bytes`, `g < 1,024`.
            unsafe {
                let v = _mm512_loadu_si512(bytes.as_ptr().add(64 * g).cast::<__m512i>());
                *w = _mm512_test_epi8_mask(v, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Users of a block: random ones (`density` in 1,000), and each user next to a slice
    /// boundary or an end of the block with probability one half.
    fn users(seed: u64, density: u64) -> Vec<u16> {
        let mut x = seed | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let edges = (0..USERS / (SLICE_WORDS * 64))
            .map(|s| s * SLICE_WORDS * 64)
            .flat_map(|b| [b.saturating_sub(1), b, b + 1, b + 63, b + 64])
            .chain([USERS - 1]);
        let mut users: Vec<u16> = edges
            .filter(|_| next() % 2 == 0)
            .map(|u| u as u16)
            .collect();
        users.extend(
            (0..USERS)
                .filter(|_| next() % 1000 < density)
                .map(|u| u as u16),
        );
        users.sort_unstable();
        users.dedup();
        users
    }

    fn bitset(users: &[u16]) -> Vec<u8> {
        let mut bytes = vec![0u8; BLOCK_BYTES];
        for &u in users {
            bytes[usize::from(u) / 8] |= 1 << (u % 8);
        }
        bytes
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(32))]

        /// Every build finds exactly the nonzero bytes of a block.
        #[test]
        fn nonzero_words_mark_every_nonzero_byte(
            seed in any::<u64>(),
            density in prop_oneof![0u64..20, 20u64..1000],
        ) {
            let mut bytes = [0u8; USERS];
            // Bytes with only the high bit, only low bits, or any value.
            let values = [0x80u8, 1, 0x7f, 0xff, (seed >> 8) as u8 | 1];
            for (i, u) in users(seed, density).into_iter().enumerate() {
                bytes[usize::from(u)] = values[i % values.len()];
            }
            let want: Vec<u64> = bytes
                .as_chunks::<64>()
                .0
                .iter()
                .map(|c| (0..64).filter(|&j| c[j] != 0).fold(0u64, |w, j| w | 1 << j))
                .collect();
            let mut simds = vec![Simd::Portable, Simd::detect()];
            simds.dedup();
            for simd in simds {
                let mut out = [0u64; BLOCK_WORDS];
                nonzero_words(simd, &bytes, &mut out);
                prop_assert!(out.as_slice() == want.as_slice(), "{:?}", simd);
            }
        }

        /// Days of containers applied slice by slice (bitsets and arrays, with every build of
        /// the kernels, funnels of 2 to 8 steps) leave each step the users of a model applied
        /// member by member, container by container; taking them leaves the levels empty.
        #[test]
        fn levels_agree_with_a_model(
            k in 2usize..9,
            span in 1usize..6,
            window in 0usize..5,
            seed in any::<u64>(),
            densities in prop::collection::vec(prop_oneof![0u64..20, 20u64..500], 1..6),
            kinds in any::<u64>(),
            crowd_density in prop_oneof![Just(1000u64), 200u64..1000],
        ) {
            let (lists, crowd): (Vec<Vec<u16>>, Vec<u16>) = (
                (0..k * span)
                    .map(|x| users(seed.wrapping_add(x as u64 * 7919), densities[x % densities.len()]))
                    .collect(),
                users(!seed, crowd_density),
            );
            let crowd = bitset(&crowd);
            let bitsets: Vec<Vec<u8>> = lists.iter().map(|l| bitset(l)).collect();
            let arrays: Vec<Vec<u8>> = lists
                .iter()
                .map(|l| l.iter().flat_map(|u| u.to_le_bytes()).collect())
                .collect();
            // The model: per step, the latest start of each user.
            let mut want = vec![vec![0u8; USERS]; k];
            let mut updates = Vec::new();
            for t in 0..span {
                for i in 0..k {
                    let x = i * span + t;
                    let now = (t + 1) as u8;
                    let lo = (t + 1).saturating_sub(window).max(1) as u8;
                    for &u in &lists[x] {
                        let u = usize::from(u);
                        if i == 0 && crowd[u / 8] >> (u % 8) & 1 == 1 {
                            want[0][u] = now;
                        } else if i > 0 && want[i - 1][u] >= lo {
                            want[i][u] = want[i - 1][u];
                        }
                    }
                    let members = if kinds >> (x % 64) & 1 == 1 {
                        Members::words(&bitsets[x])
                    } else {
                        Members::Sorted(&arrays[x])
                    };
                    updates.push(Update { t, i, members });
                }
            }
            let mut simds = vec![Simd::Portable, Simd::detect()];
            simds.dedup();
            for simd in simds {
                let mut levels = Levels::new(k, simd);
                // Twice: the levels are empty again once every step is taken.
                for _ in 0..2 {
                    levels.apply(&mut updates.clone(), &crowd, window);
                    let mut out = [0u64; BLOCK_WORDS];
                    for (i, want) in want.iter().enumerate() {
                        let n = levels.take(i, &mut out);
                        let held: Vec<bool> = (0..USERS).map(|u| out[u / 64] >> (u % 64) & 1 == 1).collect();
                        let wanted: Vec<bool> = want.iter().map(|&b| b != 0).collect();
                        prop_assert!(held == wanted, "{:?}: step {}", simd, i);
                        prop_assert_eq!(n, wanted.iter().filter(|&&b| b).count() as u64);
                    }
                }
            }
        }
    }
}
