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
//! # Safety
//! The only `unsafe` is in the AVX-512BW kernels: they run only where [`Simd::detect`] saw
//! AVX-512F and AVX-512BW, and every load and store they make is of the 64 bytes at `64 * g`,
//! `g < 1,024`, of a level (65,536 bytes).

use std::hint::select_unpredictable;

use crate::bitmap::portable::{BLOCK_BYTES, BLOCK_WORDS, word};
use crate::ids::prefetch::prefetch;

/// Users of a container block, one byte of each level each.
const USERS: usize = BLOCK_WORDS * 64;
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

/// A day's users of a block, as a container holds them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Members<'a> {
    /// 8,192 bytes: 1,024 little-endian words.
    Words(&'a [u8]),
    /// Increasing little-endian `u16`s.
    Sorted(&'a [u8]),
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

    /// The users of `did` who are in `crowd` (a block of 8,192 bytes) start at `now`
    /// (`1..=MAX_SPAN`).
    pub(crate) fn start(&mut self, did: Members<'_>, crowd: &[u8], now: u8) {
        let simd = self.simd;
        let level: &mut [u8; USERS] = (&mut self.bytes[..USERS]).try_into().expect("a level");
        let crowd = &crowd[..BLOCK_BYTES];
        match did {
            Members::Sorted(values) => {
                for v in values.chunks_exact(2) {
                    let u = usize::from(u16::from_le_bytes([v[0], v[1]]));
                    let member = crowd[u >> 3] >> (u & 7) & 1 == 1;
                    level[u] = select_unpredictable(member, now, level[u]);
                }
            }
            Members::Words(did) => {
                let did = &did[..BLOCK_BYTES];
                match simd {
                    Simd::Portable => {
                        for g in 0..BLOCK_WORDS {
                            let mut m = word(did, g) & word(crowd, g);
                            while m != 0 {
                                level[g * 64 + m.trailing_zeros() as usize] = now;
                                m &= m - 1;
                            }
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Simd::Avx512` is only detected on CPUs with both features.
                    Simd::Avx512 => unsafe { avx512::start(level, did, crowd, now) },
                }
            }
        }
    }

    /// Step `i` (`1..`): the users of `did` whose start of step `i - 1` is at least `lo`
    /// (`>= 1`) take it for step `i`.
    ///
    /// While sorted members are applied, the lines of `ahead` are prefetched, one for every
    /// 16 members (and `ahead` shortened by them): the containers read next are short streams
    /// scattered in memory, which the hardware prefetcher picks up only part way through.
    pub(crate) fn step(&mut self, i: usize, did: Members<'_>, lo: u8, ahead: &mut &[u8]) {
        debug_assert!(lo >= 1);
        let simd = self.simd;
        let (prev, cur) = self.pair(i);
        match did {
            Members::Sorted(values) => {
                let user = |v: &[u8]| usize::from(u16::from_le_bytes([v[0], v[1]]));
                // Four members at a time, their reads first: they are independent.
                let mut quads = values.chunks_exact(8);
                for (n, q) in (&mut quads).enumerate() {
                    if n % 4 == 0 && !ahead.is_empty() {
                        prefetch(ahead, 0);
                        *ahead = ahead.get(64..).unwrap_or_default();
                    }
                    let u: [usize; 4] = std::array::from_fn(|j| user(&q[2 * j..]));
                    let p: [u8; 4] = std::array::from_fn(|j| prev[u[j]]);
                    let c: [u8; 4] = std::array::from_fn(|j| cur[u[j]]);
                    for j in 0..4 {
                        cur[u[j]] = select_unpredictable(p[j] >= lo, p[j], c[j]);
                    }
                }
                for v in quads.remainder().chunks_exact(2) {
                    let u = user(v);
                    let p = prev[u];
                    cur[u] = select_unpredictable(p >= lo, p, cur[u]);
                }
            }
            Members::Words(did) => {
                let did = &did[..BLOCK_BYTES];
                match simd {
                    Simd::Portable => {
                        for g in 0..BLOCK_WORDS {
                            let mut m = word(did, g);
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
                    Simd::Avx512 => unsafe { avx512::step(prev, cur, did, lo) },
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
        match simd {
            Simd::Portable => {
                for (w, bytes) in out.iter_mut().zip(level.chunks_exact_mut(64)) {
                    *w = bytes
                        .iter()
                        .enumerate()
                        .fold(0, |w, (j, &b)| w | u64::from(b != 0) << j);
                    bytes.fill(0);
                }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Simd::Avx512` is only detected on CPUs with both features.
            Simd::Avx512 => unsafe { avx512::take(level, out) },
        }
        out.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_cmpge_epu8_mask, _mm512_loadu_si512, _mm512_mask_storeu_epi8,
        _mm512_set1_epi8, _mm512_setzero_si512, _mm512_storeu_si512, _mm512_test_epi8_mask,
    };

    use super::USERS;
    use crate::bitmap::portable::{BLOCK_BYTES, BLOCK_WORDS, word};

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn start(level: &mut [u8; USERS], did: &[u8], crowd: &[u8], now: u8) {
        let (did, crowd) = (&did[..BLOCK_BYTES], &crowd[..BLOCK_BYTES]);
        let now = _mm512_set1_epi8(now as i8);
        for g in 0..BLOCK_WORDS {
            let m = word(did, g) & word(crowd, g);
            // SAFETY: bytes `64 * g..64 * g + 64` of `level`, `g < 1,024`.
            unsafe { _mm512_mask_storeu_epi8(level.as_mut_ptr().add(64 * g).cast(), m, now) };
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn step(prev: &[u8; USERS], cur: &mut [u8; USERS], did: &[u8], lo: u8) {
        let did = &did[..BLOCK_BYTES];
        let lo = _mm512_set1_epi8(lo as i8);
        for g in 0..BLOCK_WORDS {
            let m = word(did, g);
            if m == 0 {
                continue;
            }
            // SAFETY: bytes `64 * g..64 * g + 64` of `prev` and `cur`, `g < 1,024`.
            unsafe {
                let p = _mm512_loadu_si512(prev.as_ptr().add(64 * g).cast::<__m512i>());
                let take = m & _mm512_cmpge_epu8_mask(p, lo);
                _mm512_mask_storeu_epi8(cur.as_mut_ptr().add(64 * g).cast(), take, p);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn take(level: &mut [u8; USERS], out: &mut [u64; BLOCK_WORDS]) {
        for (g, w) in out.iter_mut().enumerate() {
            // SAFETY: bytes `64 * g..64 * g + 64` of `level`, `g < 1,024`.
            unsafe {
                let at = level.as_mut_ptr().add(64 * g).cast::<__m512i>();
                let v = _mm512_loadu_si512(at);
                *w = _mm512_test_epi8_mask(v, v);
                _mm512_storeu_si512(at, _mm512_setzero_si512());
            }
        }
    }
}
