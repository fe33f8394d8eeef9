//! Zero-copy access to the containers of a bitmap in CRoaring's portable serialization.
//!
//! Kernels that combine many stored bitmaps word by word (funnels, fused BSI comparisons) work
//! one container block (2^16 ids, 1,024 words) at a time: a bitset container is read in place
//! from the mapped segment, and only array and run containers are expanded, into a scratch
//! block that stays in cache. Nothing is copied or zeroed per query at the size of a shard. [`Directory::parse`] indexes a serialized bitmap's containers
//! without copying them; [`Blocks`] resolves, for one block key, a list of such bitmaps to
//! word slices.
//!
//! # Layout read (CRoaring's portable format)
//! ```text
//! cookie u32: 12346 (no run containers), then size u32
//!           | 12347 + (size - 1) << 16, then a bit per container: is it a run container
//! size × (key u16, cardinality - 1 u16)
//! size × offset u32          (absent when there are runs and size < 4)
//! containers in key order:   run:    n u16, n × (start u16, length - 1 u16)
//!                            bitset: 1,024 × u64 (cardinality > 4,096)
//!                            array:  cardinality × u16, increasing
//! ```
//! Every length is checked against the input; damage is an error, never a panic or a read out
//! of bounds.

/// The cookie of the format with run containers (the size is in its high 16 bits).
const SERIAL_COOKIE: u32 = 12347;
/// With runs, the offsets are written only for this many containers or more.
const NO_OFFSET_THRESHOLD: usize = 4;
/// Words of one container block.
pub(crate) const BLOCK_WORDS: usize = 1024;
/// Bytes of one container block.
pub(crate) const BLOCK_BYTES: usize = BLOCK_WORDS * 8;

/// One container, borrowed from the serialized bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cont<'a> {
    /// 8,192 bytes: 1,024 little-endian words.
    Bitset(&'a [u8]),
    /// Members (low 16 bits), 2 bytes each.
    Array(&'a [u8]),
    /// Runs of (start, length - 1), 4 bytes each.
    Run(&'a [u8]),
}

impl Cont<'_> {
    /// ORs the container's members into a block of 1,024 words.
    pub(crate) fn or_into(&self, words: &mut [u64]) {
        let words = &mut words[..BLOCK_WORDS];
        match *self {
            Cont::Bitset(bytes) => {
                for (w, b) in words.iter_mut().zip(words_of(bytes)) {
                    *w |= b;
                }
            }
            Cont::Array(bytes) => {
                let words: &mut [u64; BLOCK_WORDS] = words.try_into().expect("a block");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("bmi2") {
                    // SAFETY: the CPU has BMI2, checked just above.
                    unsafe { or_array_bmi2(bytes, words) };
                    return;
                }
                or_array(bytes, words);
            }
            Cont::Run(bytes) => {
                for r in bytes.chunks_exact(4) {
                    let start = usize::from(u16::from_le_bytes([r[0], r[1]]));
                    let len = usize::from(u16::from_le_bytes([r[2], r[3]]));
                    // Checked by the parser: the run ends within the container.
                    set_range(words, start, start + len);
                }
            }
        }
    }

    /// Writes the container's members as a block of 8,192 bytes, the little-endian bytes of
    /// its 1,024 words (bit `v` is bit `v % 8` of byte `v / 8`). Not for bitsets, which are
    /// read in place.
    fn expand_into(&self, bytes: &mut [u8]) {
        let bytes = &mut bytes[..BLOCK_BYTES];
        bytes.fill(0);
        match *self {
            Cont::Bitset(b) => bytes.copy_from_slice(b),
            Cont::Array(values) => {
                for v in values.chunks_exact(2) {
                    let v = usize::from(u16::from_le_bytes([v[0], v[1]]));
                    bytes[v >> 3] |= 1u8 << (v & 7);
                }
            }
            Cont::Run(runs) => {
                for r in runs.chunks_exact(4) {
                    let start = usize::from(u16::from_le_bytes([r[0], r[1]]));
                    let end = start + usize::from(u16::from_le_bytes([r[2], r[3]]));
                    let (first, last) = (start >> 3, end >> 3);
                    let lo = 0xFFu8 << (start & 7);
                    let hi = 0xFFu8 >> (7 - (end & 7));
                    if first == last {
                        bytes[first] |= lo & hi;
                    } else {
                        bytes[first] |= lo;
                        bytes[first + 1..last].fill(0xFF);
                        bytes[last] |= hi;
                    }
                }
            }
        }
    }
}

/// Sets the bits of an array container's members (little-endian `u16`s) in a block.
#[inline(always)]
fn or_array(values: &[u8], words: &mut [u64; BLOCK_WORDS]) {
    let (values, _) = values.as_chunks::<2>();
    for v in values {
        let v = usize::from(u16::from_le_bytes(*v));
        words[v >> 6] |= 1u64 << (v & 63);
    }
}

/// [`or_array`] with BMI2's shifts by a register (no round trip through `cl`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn or_array_bmi2(values: &[u8], words: &mut [u64; BLOCK_WORDS]) {
    or_array(values, words)
}

/// Half-words (`u32`) of one container block.
pub(crate) const BLOCK_HALVES: usize = BLOCK_WORDS * 2;

impl Cont<'_> {
    /// How many of the container's members are set in `block`, a block of 2,048 `u32`s (bit
    /// `v` of the block, member `v`, is bit `v % 32` of `block[v / 32]`): bitsets ANDed and
    /// counted word by word, arrays by looking each member up (16 at a time with one gather,
    /// in the AVX-512 build, hence half-words), runs by counting the block's bits over each.
    pub(crate) fn and_count(&self, block: &[u32]) -> u64 {
        let block: &[u32; BLOCK_HALVES] = block[..BLOCK_HALVES].try_into().expect("a block");
        match *self {
            Cont::Bitset(bytes) => and_count_bitset(bytes, block),
            Cont::Array(values) => and_count_array(values, block),
            Cont::Run(runs) => runs
                .chunks_exact(4)
                .map(|r| {
                    let start = usize::from(u16::from_le_bytes([r[0], r[1]]));
                    let end = start + usize::from(u16::from_le_bytes([r[2], r[3]]));
                    count_range(block, start, end)
                })
                .sum(),
        }
    }
}

/// Bits set in `block` from `start` to `end` (both below 65,536, inclusive).
fn count_range(block: &[u32; BLOCK_HALVES], start: usize, end: usize) -> u64 {
    let (first, last) = (start >> 5, end >> 5);
    let lo = !0u32 << (start & 31);
    let hi = !0u32 >> (31 - (end & 31));
    if first == last {
        return u64::from((block[first] & lo & hi).count_ones());
    }
    let middle: u64 = block[first + 1..last]
        .iter()
        .map(|w| u64::from(w.count_ones()))
        .sum();
    u64::from((block[first] & lo).count_ones())
        + middle
        + u64::from((block[last] & hi).count_ones())
}

/// Bits set in both a bitset container's 8,192 bytes and `block`.
#[inline(always)]
fn and_count_bitset_generic(bytes: &[u8], block: &[u32; BLOCK_HALVES]) -> u64 {
    let (halves, _) = bytes.as_chunks::<4>();
    halves
        .iter()
        .zip(block.iter())
        .map(|(w, b)| u64::from((u32::from_le_bytes(*w) & b).count_ones()))
        .sum()
}

/// Members of an array container (little-endian `u16`s) set in `block`.
#[inline(always)]
fn and_count_array_generic(values: &[u8], block: &[u32; BLOCK_HALVES]) -> u64 {
    let (values, _) = values.as_chunks::<2>();
    let hits: u32 = values
        .iter()
        .map(|v| {
            let v = u32::from(u16::from_le_bytes(*v));
            block[(v >> 5) as usize] >> (v & 31) & 1
        })
        .sum();
    u64::from(hits)
}

super::dispatched!(
    /// [`and_count_bitset_generic`], in the widest build the CPU runs.
    fn and_count_bitset / and_count_bitset_avx512 / and_count_bitset_avx2 = and_count_bitset_generic(
        bytes: &[u8], block: &[u32; BLOCK_HALVES]) -> u64
);
super::dispatched!(
    /// [`and_count_array_generic`], in the widest build the CPU runs.
    fn and_count_array / and_count_array_avx512 / and_count_array_avx2 = and_count_array_generic(
        values: &[u8], block: &[u32; BLOCK_HALVES]) -> u64
);

/// Sets bits `start..=end` (both below 65,536) of a block of 1,024 words.
pub(crate) fn set_range(words: &mut [u64], start: usize, end: usize) {
    let (first, last) = (start >> 6, end >> 6);
    let lo = !0u64 << (start & 63);
    let hi = !0u64 >> (63 - (end & 63));
    if first == last {
        words[first] |= lo & hi;
        return;
    }
    words[first] |= lo;
    for w in &mut words[first + 1..last] {
        *w = !0;
    }
    words[last] |= hi;
}

/// Bytes from one scratch block to the next: a cache line more than a block, so that the same
/// chunk of many blocks, which kernels read together, falls in different sets of the cache
/// (at a whole number of pages apart, they would compete for the ways of the same sets).
const SCRATCH_STRIDE: usize = BLOCK_BYTES + 64;

/// The cardinality of a serialized bitmap, from its descriptive header alone (every container's
/// `cardinality - 1` sits there, runs included): one cache line for a shard's bitmap, without
/// visiting its containers. `None` when the header is malformed or cut short.
pub(crate) fn cardinality(bytes: &[u8]) -> Option<u64> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let cookie = u32_at(0)?;
    let (size, header_at) = if cookie & 0xFFFF == SERIAL_COOKIE {
        let size = (cookie >> 16) as usize + 1;
        (size, 4 + size.div_ceil(8))
    } else if cookie == super::NO_RUN_COOKIE {
        (u32_at(4)? as usize, 8)
    } else {
        return None;
    };
    let header = bytes.get(header_at..header_at.checked_add(size.checked_mul(4)?)?)?;
    Some(
        header
            .chunks_exact(4)
            .map(|e| u64::from(u16::from_le_bytes([e[2], e[3]])) + 1)
            .sum(),
    )
}

/// The containers of one serialized bitmap, by key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory<'a> {
    keys: Vec<u16>,
    conts: Vec<Cont<'a>>,
}

impl<'a> Directory<'a> {
    /// Indexes the containers of `bytes`; the error says what is wrong with them.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, &'static str> {
        let mut pos = 0usize;
        let mut take = |n: usize| -> Result<&'a [u8], &'static str> {
            let end = pos.checked_add(n).filter(|&e| e <= bytes.len());
            let end = end.ok_or("truncated")?;
            let s = &bytes[pos..end];
            pos = end;
            Ok(s)
        };
        let u16_at = |s: &[u8], i: usize| u16::from_le_bytes([s[2 * i], s[2 * i + 1]]);
        let cookie = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        let (size, run_flags) = if cookie & 0xFFFF == SERIAL_COOKIE {
            let size = (cookie >> 16) as usize + 1;
            (size, Some(take(size.div_ceil(8))?))
        } else if cookie == super::NO_RUN_COOKIE {
            let size = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            (size, None)
        } else {
            return Err("unknown cookie");
        };
        if size > 1 << 16 {
            return Err("too many containers");
        }
        let header = take(size * 4)?;
        if run_flags.is_none() || size >= NO_OFFSET_THRESHOLD {
            take(size * 4)?;
        }
        let mut keys = Vec::with_capacity(size);
        let mut conts = Vec::with_capacity(size);
        for i in 0..size {
            let key = u16_at(header, 2 * i);
            if keys.last().is_some_and(|&k| k >= key) {
                return Err("container keys out of order");
            }
            let card = usize::from(u16_at(header, 2 * i + 1)) + 1;
            let is_run = run_flags.is_some_and(|f| f[i / 8] >> (i % 8) & 1 == 1);
            let cont = if is_run {
                let n = usize::from(u16_at(take(2)?, 0));
                let runs = take(n * 4)?;
                for r in runs.chunks_exact(4) {
                    let start = u16::from_le_bytes([r[0], r[1]]);
                    let len = u16::from_le_bytes([r[2], r[3]]);
                    if start.checked_add(len).is_none() {
                        return Err("run past its container");
                    }
                }
                Cont::Run(runs)
            } else if card > 4096 {
                Cont::Bitset(take(8192)?)
            } else {
                Cont::Array(take(card * 2)?)
            };
            keys.push(key);
            conts.push(cont);
        }
        Ok(Self { keys, conts })
    }

    /// How many containers the bitmap has.
    pub(crate) fn containers(&self) -> usize {
        self.keys.len()
    }

    /// The container of `key`, if the bitmap has members there.
    pub(crate) fn get(&self, key: u16) -> Option<Cont<'a>> {
        self.keys.binary_search(&key).ok().map(|i| self.conts[i])
    }

    /// Every container, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, Cont<'a>)> + '_ {
        self.keys.iter().copied().zip(self.conts.iter().copied())
    }

    /// The containers holding ids of `shard`, each with its block's index in the shard (its
    /// key less the shard's first key); containers of other shards are skipped.
    pub(crate) fn in_shard(&self, shard: u32) -> impl Iterator<Item = (usize, Cont<'a>)> + '_ {
        let blocks = 1u32 << (crate::SHARD_BITS - 16);
        let first = shard * blocks;
        self.iter().filter_map(move |(key, c)| {
            let local = u32::from(key).checked_sub(first).filter(|&k| k < blocks)?;
            Some((local as usize, c))
        })
    }
}

/// Scratch space that turns containers into blocks of bytes, one block key at a time.
///
/// [`Blocks::load`] resolves one block key for a list of directories: bitset containers are
/// borrowed in place (at any alignment: kernels read their words with `u64::from_le_bytes`,
/// which compiles to plain unaligned loads), the others expanded into scratch blocks reused
/// from call to call (so they stay in cache), absent ones are `None`.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    scratch: Vec<u8>,
}

impl Blocks {
    /// The 8,192 bytes of block `key` of each of `dirs` (`None` where a bitmap has no members
    /// there).
    pub(crate) fn load<'b>(
        &'b mut self,
        dirs: &[&'b Directory<'b>],
        key: u16,
    ) -> Vec<Option<&'b [u8]>> {
        let conts: Vec<Option<Cont<'b>>> = dirs.iter().map(|d| d.get(key)).collect();
        let expanded = conts
            .iter()
            .filter(|c| matches!(c, Some(Cont::Array(_) | Cont::Run(_))))
            .count();
        if self.scratch.len() < expanded * SCRATCH_STRIDE {
            self.scratch.resize(expanded * SCRATCH_STRIDE, 0);
        }
        let mut free = self.scratch.chunks_exact_mut(SCRATCH_STRIDE);
        let mut filled = Vec::with_capacity(expanded);
        for c in conts.iter().flatten() {
            if !matches!(c, Cont::Bitset(_)) {
                let block = free.next().expect("a scratch block per expanded container");
                let block = &mut block[..BLOCK_BYTES];
                c.expand_into(block);
                filled.push(&*block);
            }
        }
        let mut filled = filled.into_iter();
        conts
            .into_iter()
            .map(|c| match c {
                None => None,
                Some(Cont::Bitset(bytes)) => Some(bytes),
                Some(_) => filled.next(),
            })
            .collect()
    }
}

/// The `BYTES` bytes of a block from word `at` on: a chunk of `BYTES / 8` words that kernels
/// index with constant bounds.
#[inline(always)]
pub(crate) fn chunk_at<const BYTES: usize>(block: &[u8], at: usize) -> &[u8; BYTES] {
    block[at * 8..at * 8 + BYTES]
        .try_into()
        .expect("a chunk within its block")
}

/// The words of a block of bytes, in order: for loops over whole blocks, which the compiler
/// vectorizes where [`word`]'s bounds check per word keeps them scalar.
#[inline(always)]
pub(crate) fn words_of(block: &[u8]) -> impl Iterator<Item = u64> + '_ {
    block
        .as_chunks::<8>()
        .0
        .iter()
        .map(|b| u64::from_le_bytes(*b))
}

/// Word `j` of a block of bytes.
#[inline(always)]
pub(crate) fn word(block: &[u8], j: usize) -> u64 {
    u64::from_le_bytes(block[j * 8..j * 8 + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use croaring::{Bitmap, Portable};
    use proptest::prelude::*;

    fn bitmap_strategy() -> impl Strategy<Value = Bitmap> {
        prop_oneof![
            prop::collection::vec(0u32..300_000, 0..300).prop_map(|v| Bitmap::of(&v)),
            (0u32..200_000, 1u32..140_000, any::<bool>()).prop_map(|(a, n, runs)| {
                let mut b = Bitmap::from_range(a..a + n);
                b.add(a + n + 70_000);
                if runs {
                    b.run_optimize();
                }
                b
            }),
            (0u32..4, any::<u64>()).prop_map(|(c, seed)| {
                let mut x = seed | 1;
                let ids: Vec<u32> = (0..7000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        c * 65_536 + (x % 65_536) as u32
                    })
                    .collect();
                Bitmap::of(&ids)
            }),
        ]
    }

    /// The block's bits from the directory, as ids.
    fn ids_of(words: &[u64], key: u16) -> Vec<u32> {
        let mut ids = Vec::new();
        for (i, &w) in words.iter().enumerate() {
            for b in 0..64 {
                if w >> b & 1 == 1 {
                    ids.push(u32::from(key) << 16 | (i as u32 * 64 + b));
                }
            }
        }
        ids
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]

        #[test]
        fn header_cardinality_is_the_bitmaps(b in bitmap_strategy()) {
            let bytes = b.serialize::<Portable>();
            prop_assert_eq!(cardinality(&bytes), Some(b.cardinality()));
            // Cut inside the header: no answer rather than a wrong one.
            for cut in [0, 3, 7, bytes.len().min(9)] {
                if cut < bytes.len() && cut < 8 {
                    prop_assert_eq!(cardinality(&bytes[..cut]), None);
                }
            }
        }

        #[test]
        fn blocks_hold_exactly_the_members(bitmaps in prop::collection::vec(bitmap_strategy(), 1..4)) {
            let bytes: Vec<Vec<u8>> = bitmaps.iter().map(|b| b.serialize::<Portable>()).collect();
            let dirs: Vec<Directory<'_>> =
                bytes.iter().map(|b| Directory::parse(b).unwrap()).collect();
            let refs: Vec<&Directory<'_>> = dirs.iter().collect();
            let mut blocks = Blocks::default();
            for key in 0u16..6 {
                let out = blocks.load(&refs, key);
                for (b, block) in bitmaps.iter().zip(&out) {
                    let want: Vec<u32> = b.iter().filter(|id| id >> 16 == u32::from(key)).collect();
                    let words: Option<Vec<u64>> =
                        block.map(|bytes| (0..BLOCK_WORDS).map(|j| word(bytes, j)).collect());
                    let got = words.map(|w| ids_of(&w, key)).unwrap_or_default();
                    prop_assert_eq!(got, want);
                }
            }
        }

        /// Every container's count against a block of bits equals CRoaring's intersection
        /// count, in every build of the kernels.
        #[test]
        fn and_counts_match_croaring(b in bitmap_strategy(), other in bitmap_strategy()) {
            let bytes = b.serialize::<Portable>();
            let dir = Directory::parse(&bytes).unwrap();
            for (key, c) in dir.iter() {
                let lo = u32::from(key) << 16;
                let block_ids = Bitmap::from_range(lo..lo + (1 << 16));
                let mut halves = vec![0u32; BLOCK_HALVES];
                for id in other.and(&block_ids).iter() {
                    let v = (id - lo) as usize;
                    halves[v >> 5] |= 1 << (v & 31);
                }
                let want = b.and(&block_ids).and_cardinality(&other);
                prop_assert_eq!(c.and_count(&halves), want);
                let block: &[u32; BLOCK_HALVES] = halves.as_slice().try_into().unwrap();
                type Count = fn(&[u8], &[u32; BLOCK_HALVES]) -> u64;
                let mut builds: Vec<(&str, Count, Count)> =
                    vec![("generic", and_count_bitset_generic, and_count_array_generic)];
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY (both calls): the CPU has AVX2, checked just above.
                    builds.push((
                        "avx2",
                        |b, k| unsafe { and_count_bitset_avx2(b, k) },
                        |v, k| unsafe { and_count_array_avx2(v, k) },
                    ));
                }
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
                {
                    // SAFETY (both calls): the CPU has both features, checked just above.
                    builds.push((
                        "avx512",
                        |b, k| unsafe { and_count_bitset_avx512(b, k) },
                        |v, k| unsafe { and_count_array_avx512(v, k) },
                    ));
                }
                for (name, bitset, array) in builds {
                    let got = match c {
                        Cont::Bitset(bytes) => bitset(bytes, block),
                        Cont::Array(values) => array(values, block),
                        // Runs have one build, checked above.
                        Cont::Run(_) => want,
                    };
                    prop_assert_eq!(got, want, "{}", name);
                }
            }
        }
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let mut b = Bitmap::from_range(0..100_000);
        b.add(500_000);
        for runs in [false, true] {
            if runs {
                b.run_optimize();
            }
            let bytes = b.serialize::<Portable>();
            assert!(Directory::parse(&bytes).is_ok());
            for cut in [0, 3, 7, bytes.len() / 2, bytes.len() - 1] {
                assert!(Directory::parse(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        assert_eq!(
            Directory::parse(&[9, 9, 9, 9]).unwrap_err(),
            "unknown cookie"
        );
        // Keys out of order.
        let mut bad = Vec::new();
        bad.extend_from_slice(&super::super::NO_RUN_COOKIE.to_le_bytes());
        bad.extend_from_slice(&2u32.to_le_bytes());
        for key in [5u16, 5] {
            bad.extend_from_slice(&key.to_le_bytes());
            bad.extend_from_slice(&0u16.to_le_bytes());
        }
        bad.extend_from_slice(&[0; 8]);
        bad.extend_from_slice(&[1, 0, 2, 0]);
        assert_eq!(
            Directory::parse(&bad).unwrap_err(),
            "container keys out of order"
        );
    }
}
