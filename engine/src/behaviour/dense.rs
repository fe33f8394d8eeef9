//! Dense bit vectors and the counting kernels of behaviour analysis.
//!
//! Counting (how many days or times each user did something) and funnels combine tens of
//! day bitmaps per shard with many operations each. On roaring bitmaps every operation pays for
//! container dispatch and, when results hover around the array/bitset threshold, for scalar
//! set-bit extraction; on plain words the same operations are straight-line loops that
//! vectorize. [`Dense`] holds a shard's bits (`[u64; 16384]`, 2^20 bits, 128 KiB);
//! [`BlockCounter`] counts one container block (1,024 words) at a time, every day's container
//! of the block added in turn into bit-sliced counters that stay in the L1 cache. Sparse events
//! (every day's container of a block an array) count in a byte per user instead
//! ([`ByteCounter`]): one increment per member costs less than expanding each day into words.
//!
//! Stored bitmaps are read straight from their serialized (portable) bytes (see
//! [`crate::bitmap::portable`]): bitset containers are copied, array and run containers set
//! their bits. Damage is reported as [`Error::Corruption`], never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use croaring::{Bitmap, Portable};

use super::latest::{Simd, nonzero_words};
use crate::SHARD_BITS;
use crate::bitmap::portable::{BLOCK_WORDS, Cont, Directory};
use crate::error::{Error, Result};

/// Words of a shard's bit vector.
pub(crate) const WORDS: usize = 1 << (SHARD_BITS - 6);
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

    /// ORs in the bitmap serialized (portable format) in `bytes`, whose ids belong to `shard`;
    /// `path` names the file in errors.
    pub(crate) fn or_portable(&mut self, bytes: &[u8], shard: u32, path: &Path) -> Result<()> {
        let dir = Directory::parse(bytes)
            .map_err(|what| Error::corrupt(path, format!("event bitmap: {what}")))?;
        for (block, c) in dir.in_shard(shard) {
            let base = block * BLOCK_WORDS;
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

/// Array containers of at most this many members are added to a block's counters member by
/// member. A member costs a test of the crowd's bit and, when set, a short ripple; a dense
/// addition expands the container and makes a fixed pass over the block's 1,024 words.
const SPARSE_MEMBERS: usize = 256;
/// Words with at most this many users with a count read each one's count; more are split
/// into groups slice by slice.
const FEW_USERS: u32 = 4;
/// A block's histogram is split into an array of this many bits of count; blocks with larger
/// counts fall back to reading each user's count.
const HISTOGRAM_BITS: usize = 10;

/// `s += a & m` on one bit slice: `s ^= a & m`, the carry out in `carry`; returns the OR of
/// the carry (zero: nothing left to ripple). Loops over zipped slices of one length, without
/// bounds checks, so they vectorize.
#[inline(always)]
fn add_masked_generic(s: &mut [u64], carry: &mut [u64], add: &[u64], mask: &[u64]) -> u64 {
    let mut left = 0u64;
    for (((s, c), &a), &m) in s.iter_mut().zip(carry.iter_mut()).zip(add).zip(mask) {
        let a = a & m;
        let next = *s & a;
        *s ^= a;
        *c = next;
        left |= next;
    }
    left
}

/// [`add_masked_generic`] without a mask.
#[inline(always)]
fn add_plain_generic(s: &mut [u64], carry: &mut [u64], add: &[u64]) -> u64 {
    let mut left = 0u64;
    for ((s, c), &a) in s.iter_mut().zip(carry.iter_mut()).zip(add) {
        let next = *s & a;
        *s ^= a;
        *c = next;
        left |= next;
    }
    left
}

/// `s += carry` on the next bit slice, the carry out replacing the carry in; returns its OR.
#[inline(always)]
fn ripple_generic(s: &mut [u64], carry: &mut [u64]) -> u64 {
    let mut left = 0u64;
    for (s, c) in s.iter_mut().zip(carry.iter_mut()) {
        let next = *s & *c;
        *s ^= *c;
        *c = next;
        left |= next;
    }
    left
}

crate::bitmap::dispatched!(
    /// [`add_masked_generic`], in the widest build the CPU runs.
    fn add_masked / add_masked_avx512 / add_masked_avx2 = add_masked_generic(
        s: &mut [u64], carry: &mut [u64], add: &[u64], mask: &[u64]) -> u64
);
crate::bitmap::dispatched!(
    /// [`add_plain_generic`], in the widest build the CPU runs.
    fn add_plain / add_plain_avx512 / add_plain_avx2 = add_plain_generic(
        s: &mut [u64], carry: &mut [u64], add: &[u64]) -> u64
);
crate::bitmap::dispatched!(
    /// [`ripple_generic`], in the widest build the CPU runs.
    fn ripple / ripple_avx512 / ripple_avx2 = ripple_generic(s: &mut [u64], carry: &mut [u64]) -> u64
);

/// Bit-sliced counters over one container block (65,536 users): slice `i` holds bit `i` of
/// every user's count. Counting works a block at a time, so the slices, the carry and the
/// addend stay in the L1 cache however many days are added; whole-shard counters would
/// stream 128 KiB per slice through the cache once per day.
#[derive(Debug, Default)]
pub(crate) struct BlockCounter {
    /// Allocated slices, reused from block to block; those from `used` on are all zero.
    slices: Vec<Vec<u64>>,
    /// Slices holding a bit of some count in this block.
    used: usize,
    /// Scratch space of `add_words`.
    carry: Vec<u64>,
}

impl BlockCounter {
    /// Every count back to zero.
    fn clear(&mut self) {
        for s in &mut self.slices[..self.used] {
            s.fill(0);
        }
        self.used = 0;
    }

    /// Makes slices `..=i` usable.
    fn reach(&mut self, i: usize) {
        while self.slices.len() <= i {
            self.slices.push(vec![0; BLOCK_WORDS]);
        }
        self.used = self.used.max(i + 1);
    }

    /// The slices in use, lowest bit first.
    pub(crate) fn slices(&self) -> &[Vec<u64>] {
        &self.slices[..self.used]
    }

    /// Adds `2^bit` to the count of every user whose bit is set in `add & mask` (all of `add`
    /// without a mask): a ripple-carry addition, one slice at a time (branch-free loops over
    /// zipped slices of one length, which vectorize), stopping as soon as no carry is left.
    pub(crate) fn add_words(&mut self, add: &[u64], mask: Option<&[u64]>, bit: usize) {
        let (add, mask) = (&add[..BLOCK_WORDS], mask.map(|m| &m[..BLOCK_WORDS]));
        self.reach(bit);
        let carry = &mut self.carry;
        carry.resize(BLOCK_WORDS, 0);
        // The first slice reads the addend directly; later ones the carry.
        let s = &mut self.slices[bit];
        let mut left = match mask {
            Some(m) => add_masked(s, carry, add, m),
            None => add_plain(s, carry, add),
        };
        let mut i = bit;
        while left != 0 {
            i += 1;
            self.reach(i);
            left = ripple(&mut self.slices[i], &mut self.carry);
        }
    }

    /// Adds `2^bit` to the count of the one user at bit `b` of word `w` of the block.
    pub(crate) fn add_one(&mut self, w: usize, b: u64, bit: usize) {
        let mut i = bit;
        loop {
            self.reach(i);
            let s = &mut self.slices[i][w];
            if *s & b == 0 {
                *s |= b;
                return;
            }
            *s &= !b;
            i += 1;
        }
    }

    /// Counts, for the users set in `within` (everyone when `None`), the times (or days) they
    /// did `event` on `days` in one shard, one container block at a time, and hands each
    /// block's counts to `visit` with its index in the shard and its words of `within`. Blocks
    /// where `within` has nobody are skipped; elsewhere the counts may all be zero.
    ///
    /// A block where every container added is an array (a sparse event) is counted in bytes
    /// ([`ByteCounter`], counts capped at 255) when no count can pass 255 (days of at most 255
    /// days; times whose count slices add up to at most that), or when the caller accepts
    /// capped counts (`capped_ok`: a comparison with a number below 255 tells a capped count
    /// from the true one exactly): one addition per member. The others are added
    /// into bit-sliced counters (the users of `within` only), which take a dense day's 65,536
    /// users a word (64 users) at a time rather than one by one: small arrays member by member,
    /// the other containers expanded (bitsets copied) and added word by word. A byte counter
    /// counts everyone in its block: `visit` narrows its counts to `within` itself, and must
    /// drain it ([`ByteCounter::drain_into`], [`ByteCounter::drain_passing`]).
    pub(crate) fn count<'s>(
        event: &crate::table::FieldRef<'s>,
        shard: u32,
        days: &[i32],
        measure: crate::expr::Measure,
        within: Option<&Dense>,
        capped_ok: bool,
        mut visit: impl FnMut(usize, Option<&[u64]>, Counts<'_>),
    ) -> Result<()> {
        let addends = addends(event, shard, days, measure)?;
        // Every addend adds `2^bit` to each of its members once: when they add up to at most
        // 255, every count fits in a byte. Bits past 7 add more than a byte holds.
        let fit = addends
            .iter()
            .try_fold(0u32, |sum, (_, bit)| {
                sum.checked_add(1u32.checked_shl(*bit as u32)?)
            })
            .is_some_and(|sum| sum <= u32::from(u8::MAX));
        let bytes_fit = fit || (capped_ok && addends.iter().all(|(_, bit)| *bit < 8));
        let cap = !fit;
        let mut c = BlockCounter::default();
        let mut scratch = vec![0u64; BLOCK_WORDS];
        let mut bytes: Option<ByteCounter> = None;
        let mut arrays = Vec::with_capacity(addends.len());
        for (block, key, mask) in blocks(shard, within) {
            arrays.clear();
            let all_arrays = bytes_fit
                && addends.iter().all(|(dir, bit)| match dir.get(key) {
                    None => true,
                    Some(Cont::Array(members)) => {
                        arrays.push((members, 1u8 << bit));
                        true
                    }
                    Some(_) => false,
                });
            if all_arrays {
                let b = bytes.get_or_insert_with(ByteCounter::new);
                for &(members, add) in &arrays {
                    b.add_array(members, add, cap);
                }
                visit(block, mask, Counts::Bytes(b));
            } else {
                c.clear();
                c.add_block(&addends, key, mask, &mut scratch);
                visit(block, mask, Counts::Sliced(&c));
            }
        }
        Ok(())
    }

    /// Adds the containers of block `key` of every addend (see [`addends`]) to the cleared
    /// counters, for the users of `mask` (everyone when `None`).
    fn add_block(
        &mut self,
        addends: &[(Directory<'_>, usize)],
        key: u16,
        mask: Option<&[u64]>,
        scratch: &mut [u64],
    ) {
        for (dir, bit) in addends {
            match dir.get(key) {
                None => {}
                Some(Cont::Array(members)) if members.len() <= 2 * SPARSE_MEMBERS => {
                    for v in members.as_chunks::<2>().0 {
                        let v = usize::from(u16::from_le_bytes(*v));
                        let (w, b) = (v >> 6, 1u64 << (v & 63));
                        if mask.is_none_or(|m| m[w] & b != 0) {
                            self.add_one(w, b, *bit);
                        }
                    }
                }
                Some(cont) => {
                    scratch.fill(0);
                    cont.or_into(scratch);
                    self.add_words(scratch, mask, *bit);
                }
            }
        }
    }

    /// Adds to `hist` how many users of `within` (everyone when `None`) did `event` exactly
    /// `n` times (or on `n` days) of `days` in one shard, for every `n > 0`.
    pub(crate) fn histogram(
        event: &crate::table::FieldRef<'_>,
        shard: u32,
        days: &[i32],
        measure: crate::expr::Measure,
        within: Option<&Dense>,
        hist: &mut BTreeMap<u64, u64>,
    ) -> Result<()> {
        let mut table = [0u64; 256];
        Self::count(
            event,
            shard,
            days,
            measure,
            within,
            false,
            |_, mask, counts| match counts {
                Counts::Bytes(b) => b.drain_into(mask, &mut table),
                Counts::Sliced(c) => c.histogram_into(hist),
            },
        )?;
        for (n, &users) in table.iter().enumerate().skip(1) {
            if users > 0 {
                *hist.entry(n as u64).or_insert(0) += users;
            }
        }
        Ok(())
    }

    /// Users with a count above zero, into the block's `out` words.
    pub(crate) fn nonzero_into(&self, out: &mut [u64]) {
        for s in self.slices() {
            for (a, b) in out.iter_mut().zip(s) {
                *a |= b;
            }
        }
    }

    /// Users with a count `c > 0` such that `c op n`, into the block's `out` words.
    pub(crate) fn passing_into(&self, op: crate::expr::CmpOp, n: u64, out: &mut [u64]) {
        use crate::expr::CmpOp;
        let slices = self.slices();
        let k = slices.len();
        // Per word: users with count >= v (among users with any count).
        let at_least = |w: usize, any: u64, v: u64| -> u64 {
            if v == 0 {
                return any;
            }
            if k < 64 && v >> k != 0 {
                return 0;
            }
            let (mut gt, mut eq) = (0u64, any);
            for i in (0..k).rev() {
                let s = slices[i][w];
                if v >> i & 1 == 1 {
                    eq &= s;
                } else {
                    gt |= eq & s;
                    eq &= !s;
                }
            }
            gt | eq
        };
        for (w, o) in out.iter_mut().enumerate().take(BLOCK_WORDS) {
            let any = slices.iter().fold(0u64, |a, s| a | s[w]);
            if any == 0 {
                continue;
            }
            let ge = at_least(w, any, n);
            let gt = if n == u64::MAX {
                0
            } else {
                at_least(w, any, n + 1)
            };
            *o = match op {
                CmpOp::Ge => ge,
                CmpOp::Gt => gt,
                CmpOp::Lt => any & !ge,
                CmpOp::Le => any & !gt,
                CmpOp::Eq => ge & !gt,
                CmpOp::Ne => any & !(ge & !gt),
            };
        }
    }

    /// Adds to `hist` the users of the block with each count above zero.
    pub(crate) fn histogram_into(&self, hist: &mut BTreeMap<u64, u64>) {
        let slices = self.slices();
        let k = slices.len();
        if k > HISTOGRAM_BITS {
            // Counts of a thousand and more in one window: read each user's count.
            for w in 0..BLOCK_WORDS {
                for b in 0..64 {
                    let c = slices
                        .iter()
                        .enumerate()
                        .fold(0u64, |c, (i, s)| c | (s[w] >> b & 1) << i);
                    if c > 0 {
                        *hist.entry(c).or_insert(0) += 1;
                    }
                }
            }
            return;
        }
        let mut counts = [0u64; 1 << HISTOGRAM_BITS];
        // Groups of users of one word with the same bits so far, (users, count); only the
        // entries written for the word are read, so it is set up once, not per word.
        let mut buf = [[(0u64, 0usize); 64]; 2];
        for w in 0..BLOCK_WORDS {
            let any = slices.iter().fold(0u64, |a, s| a | s[w]);
            if any == 0 {
                continue;
            }
            if any.count_ones() <= FEW_USERS {
                // A few users: each one's count read bit by bit from the slices.
                let mut users = any;
                while users != 0 {
                    let b = users.trailing_zeros();
                    let value = slices
                        .iter()
                        .enumerate()
                        .fold(0usize, |v, (i, s)| v | ((s[w] >> b & 1) as usize) << i);
                    counts[value] += 1;
                    users &= users - 1;
                }
                continue;
            }
            // Split the word's users by their count, one slice at a time (at most 64 groups:
            // one per user of the word).
            buf[0][0] = (any, 0);
            let mut len = 1;
            let mut cur = 0;
            for (i, s) in slices.iter().enumerate() {
                let bits = s[w];
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
            for &(mask, value) in &buf[cur][..len] {
                counts[value] += u64::from(mask.count_ones());
            }
        }
        for (v, &n) in counts.iter().enumerate().skip(1) {
            if n > 0 {
                *hist.entry(v as u64).or_insert(0) += n;
            }
        }
    }
}

/// The serialized bitmaps a count adds, each with the bit of the count it adds to: every day's
/// bitmap of `days` in `shard` (bit 0), and for times each day's count slices.
fn addends<'s>(
    event: &crate::table::FieldRef<'s>,
    shard: u32,
    days: &[i32],
    measure: crate::expr::Measure,
) -> Result<Vec<(Directory<'s>, usize)>> {
    let mut addends: Vec<(Directory<'s>, usize)> = Vec::new();
    let mut push = |b: crate::table::EventBlob<'s>, bit: usize| {
        let dir = Directory::parse(b.bytes)
            .map_err(|what| Error::corrupt(b.path, format!("event bitmap: {what}")))?;
        addends.push((dir, bit));
        Ok::<(), Error>(())
    };
    for &day in days {
        let Some(blob) = event.event_day_blob_in(shard, day)? else {
            continue;
        };
        push(blob, 0)?;
        if measure == crate::expr::Measure::Times {
            for (bit, slice) in event.event_count_blobs_in(shard, day)? {
                push(slice, bit as usize)?;
            }
        }
    }
    Ok(addends)
}

/// The container blocks of `shard` a count visits: `(block, key, mask)`, its index in the
/// shard, its container key and its words of `within`; blocks where `within` has no user are
/// skipped.
fn blocks(
    shard: u32,
    within: Option<&Dense>,
) -> impl Iterator<Item = (usize, u16, Option<&[u64]>)> {
    (0..CONTAINERS as usize).filter_map(move |block| {
        let at = block * BLOCK_WORDS;
        let mask = within.map(|m| &m.words[at..at + BLOCK_WORDS]);
        if mask.is_some_and(|m| m.iter().all(|&w| w == 0)) {
            return None;
        }
        let key = u16::try_from((shard * CONTAINERS) as usize + block).ok()?;
        Some((block, key, mask))
    })
}

/// Users of a container block.
const BLOCK_USERS: usize = BLOCK_WORDS * 64;

/// Counts of one container block in a byte per user, for events sparse enough that each day
/// holds an array container: adding a day costs one increment per member, where bit-sliced
/// counters ([`BlockCounter`]) expand it into 1,024 words and add them with carries. A block's
/// counts are then drained into a histogram or a `did(...)` test: the users with a count are
/// found 64 at a time ([`nonzero_words`]: one AVX-512BW test of 64 bytes where the CPU has
/// it), and only theirs are read.
pub(crate) struct ByteCounter {
    /// Each user's count; all zero between blocks.
    counts: Box<[u8; BLOCK_USERS]>,
    /// Users with a count, found when a block is drained.
    nonzero: Box<[u64; BLOCK_WORDS]>,
    simd: Simd,
}

/// The counts of one block, as [`BlockCounter::count`] hands them over.
pub(crate) enum Counts<'c> {
    /// A byte per user, of everyone in the block; to be drained.
    Bytes(&'c mut ByteCounter),
    /// Bit-sliced, of the users of `within` only.
    Sliced(&'c BlockCounter),
}

impl ByteCounter {
    pub(crate) fn new() -> Self {
        Self {
            counts: Box::new([0; BLOCK_USERS]),
            nonzero: Box::new([0; BLOCK_WORDS]),
            simd: Simd::detect(),
        }
    }

    /// Adds `add` to the count of every member of an array container, `members` its
    /// little-endian 16-bit values (ascending, so the increments sweep the block's counts in
    /// order). With `cap`, counts stop at 255; without, they wrap (a plain add, the cheaper
    /// loop), so callers make sure they stay below.
    pub(crate) fn add_array(&mut self, members: &[u8], add: u8, cap: bool) {
        let counts = &mut *self.counts;
        let members = members.as_chunks::<2>().0;
        if cap {
            for v in members {
                let v = usize::from(u16::from_le_bytes(*v));
                counts[v] = counts[v].saturating_add(add);
            }
        } else {
            for v in members {
                let v = usize::from(u16::from_le_bytes(*v));
                counts[v] = counts[v].wrapping_add(add);
            }
        }
    }

    /// Adds to `table[n]` the users of `mask` (everyone when `None`) counted `n` times, and
    /// sets every count back to zero.
    pub(crate) fn drain_into(&mut self, mask: Option<&[u64]>, table: &mut [u64; 256]) {
        // Four tables, a user's by its bit in the word, so that runs of equal counts do not
        // wait on each other's increment.
        let mut lanes = [[0u32; 256]; 4];
        self.drain(mask, |_, users, chunk| {
            let mut users = users;
            while users != 0 {
                let b = users.trailing_zeros() as usize;
                lanes[b & 3][usize::from(chunk[b])] += 1;
                users &= users - 1;
            }
        });
        for (n, t) in table.iter_mut().enumerate() {
            *t += lanes.iter().map(|l| u64::from(l[n])).sum::<u64>();
        }
    }

    /// Writes into the block's words the users of `mask` (everyone when `None`) with a count
    /// `c > 0` such that `c op n` (`passing`), and with any count (`nonzero`), and sets every
    /// count back to zero. Words where nobody has a count are left as they are.
    pub(crate) fn drain_passing(
        &mut self,
        mask: Option<&[u64]>,
        op: crate::expr::CmpOp,
        n: u64,
        passing: &mut [u64],
        nonzero: &mut [u64],
    ) {
        let (passing, nonzero) = (&mut passing[..BLOCK_WORDS], &mut nonzero[..BLOCK_WORDS]);
        self.drain(mask, |w, users, chunk| {
            nonzero[w] = users;
            let mut pass = 0u64;
            let mut left = users;
            while left != 0 {
                let b = left.trailing_zeros();
                let c = u64::from(chunk[b as usize]);
                pass |= u64::from(super::predicate::holds(op, c, n)) << b;
                left &= left - 1;
            }
            passing[w] = pass;
        });
    }

    /// Calls `f(w, users, counts)` for each word `w` of the block with the users of `mask`
    /// (everyone when `None`) who have a count, `counts` the word's 64 counts; then sets every
    /// count back to zero.
    fn drain(&mut self, mask: Option<&[u64]>, mut f: impl FnMut(usize, u64, &[u8; 64])) {
        nonzero_words(self.simd, &self.counts, &mut self.nonzero);
        for (w, (&nonzero, chunk)) in self
            .nonzero
            .iter()
            .zip(self.counts.as_chunks::<64>().0)
            .enumerate()
        {
            let users = mask.map_or(u64::MAX, |m| m[w]) & nonzero;
            if users != 0 {
                f(w, users, chunk);
            }
        }
        self.counts.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::predicate::holds;
    use crate::expr::CmpOp;
    use proptest::prelude::*;

    /// The words of a block with the bits of `users` set.
    fn block_words(users: impl IntoIterator<Item = u16>) -> Vec<u64> {
        let mut w = vec![0u64; BLOCK_WORDS];
        for v in users {
            w[usize::from(v) >> 6] |= 1 << (v & 63);
        }
        w
    }

    /// Whether user `v` is set in `words` (everyone when `None`).
    fn in_words(words: Option<&[u64]>, v: u16) -> bool {
        words.is_none_or(|w| w[usize::from(v) >> 6] >> (v & 63) & 1 == 1)
    }

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
        fn block_counter_matches_naive(
            adds in prop::collection::vec(
                (prop::collection::vec(0u16..=u16::MAX, 0..3000), 0usize..12, any::<bool>()),
                1..8,
            ),
            mask in prop::option::of(prop::collection::vec(0u16..=u16::MAX, 0..40_000)),
            op_n in (0usize..6, 0u64..40),
        ) {
            // Users of one block: each addend added densely or member by member (as `count`
            // does for small arrays), its members' counts raised by 2^bit, within the mask.
            let mask_words = mask.as_ref().map(|m| block_words(m.iter().copied()));
            let mut c = BlockCounter::default();
            let mut naive = BTreeMap::<u16, u64>::new();
            for (members, bit, dense) in &adds {
                let mut set = members.clone();
                set.sort_unstable();
                set.dedup();
                if *dense {
                    c.add_words(&block_words(set.iter().copied()), mask_words.as_deref(), *bit);
                } else {
                    for &v in &set {
                        if in_words(mask_words.as_deref(), v) {
                            c.add_one(usize::from(v) >> 6, 1u64 << (v & 63), *bit);
                        }
                    }
                }
                for &v in &set {
                    if in_words(mask_words.as_deref(), v) {
                        *naive.entry(v).or_default() += 1 << bit;
                    }
                }
            }
            let mut hist = BTreeMap::new();
            c.histogram_into(&mut hist);
            let mut want = BTreeMap::<u64, u64>::new();
            for &n in naive.values() {
                *want.entry(n).or_default() += 1;
            }
            prop_assert_eq!(hist, want);

            let ops = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
            let (op, n) = (ops[op_n.0], op_n.1);
            let mut passing = vec![0u64; BLOCK_WORDS];
            c.passing_into(op, n, &mut passing);
            let mut nonzero = vec![0u64; BLOCK_WORDS];
            c.nonzero_into(&mut nonzero);
            let want_passing = block_words(naive.iter().filter(|e| holds(op, *e.1, n)).map(|e| *e.0));
            prop_assert_eq!(passing, want_passing);
            prop_assert_eq!(nonzero, block_words(naive.keys().copied()));
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(32))]

        /// Every build of the adder kernels (generic, AVX2, AVX-512) gives the same slice,
        /// carry and carry summary.
        #[test]
        fn adder_builds_agree(seed in any::<u64>(), sparse in any::<bool>()) {
            let mut x = seed | 1;
            let mut word = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if sparse { x & x.rotate_left(7) & x.rotate_left(19) } else { x }
            };
            let s: Vec<u64> = (0..BLOCK_WORDS).map(|_| word()).collect();
            let add: Vec<u64> = (0..BLOCK_WORDS).map(|_| word()).collect();
            let mask: Vec<u64> = (0..BLOCK_WORDS).map(|_| word()).collect();
            type Builds = Vec<(&'static str, fn(&mut [u64], &mut [u64], &[u64], &[u64]) -> u64, fn(&mut [u64], &mut [u64], &[u64]) -> u64, fn(&mut [u64], &mut [u64]) -> u64)>;
            let mut builds: Builds = vec![("generic", add_masked_generic, add_plain_generic, ripple_generic)];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY (each call below): the CPU has AVX2, checked just above.
                builds.push(("avx2", |s, c, a, m| unsafe { add_masked_avx2(s, c, a, m) },
                    |s, c, a| unsafe { add_plain_avx2(s, c, a) }, |s, c| unsafe { ripple_avx2(s, c) }));
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
                // SAFETY (each call below): the CPU has both features, checked just above.
                builds.push(("avx512", |s, c, a, m| unsafe { add_masked_avx512(s, c, a, m) },
                    |s, c, a| unsafe { add_plain_avx512(s, c, a) }, |s, c| unsafe { ripple_avx512(s, c) }));
            }
            let want_masked: Vec<(u64, u64)> = s.iter().zip(&add).zip(&mask)
                .map(|((&s, &a), &m)| (s ^ (a & m), s & a & m)).collect();
            let want_plain: Vec<(u64, u64)> = s.iter().zip(&add).map(|(&s, &a)| (s ^ a, s & a)).collect();
            for (name, masked, plain, rip) in builds {
                let (mut got_s, mut carry) = (s.clone(), vec![0u64; BLOCK_WORDS]);
                let left = masked(&mut got_s, &mut carry, &add, &mask);
                let got: Vec<(u64, u64)> = got_s.iter().copied().zip(carry.iter().copied()).collect();
                prop_assert_eq!(&got, &want_masked, "{} masked", name);
                prop_assert_eq!(left, want_masked.iter().fold(0, |a, e| a | e.1), "{} masked left", name);
                let (mut got_s, mut carry) = (s.clone(), vec![0u64; BLOCK_WORDS]);
                let left = plain(&mut got_s, &mut carry, &add);
                let got: Vec<(u64, u64)> = got_s.iter().copied().zip(carry.iter().copied()).collect();
                prop_assert_eq!(&got, &want_plain, "{} plain", name);
                prop_assert_eq!(left, want_plain.iter().fold(0, |a, e| a | e.1), "{} plain left", name);
                let (mut got_s, mut carry) = (s.clone(), add.clone());
                let left = rip(&mut got_s, &mut carry);
                let got: Vec<(u64, u64)> = got_s.iter().copied().zip(carry.iter().copied()).collect();
                prop_assert_eq!(&got, &want_plain, "{} ripple", name);
                prop_assert_eq!(left, want_plain.iter().fold(0, |a, e| a | e.1), "{} ripple left", name);
            }
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]

        /// Byte counts of arrays tally like a naive count, within a mask or not, and two blocks
        /// drained in turn add up (draining leaves every count at zero).
        #[test]
        fn byte_counter_matches_naive(
            blocks in prop::collection::vec(
                (
                    // Arrays, each added with 2^bit: without a cap, bits below 5 (at most 192
                    // per user); with it, up to 7 (past 255).
                    prop::collection::vec(
                        (prop::collection::vec(0u16..=u16::MAX, 0..3000), 0usize..8),
                        0..12,
                    ),
                    prop::option::of(prop::collection::vec(0u16..=u16::MAX, 0..40_000)),
                    (0usize..6, 0u64..40),
                    any::<bool>(),
                ),
                1..3,
            ),
        ) {
            // Each block drained twice over: tallied, then tested against `op n` (the counts
            // added again in between), both against a naive count.
            let mut b = ByteCounter::new();
            let mut table = [0u64; 256];
            let mut want = [0u64; 256];
            for (arrays, mask, (op, n), cap) in &blocks {
                let mut naive = BTreeMap::<u16, u64>::new();
                let mut lists = Vec::new();
                for (members, bit) in arrays {
                    let bit = if *cap { *bit } else { bit % 5 };
                    let mut set = members.clone();
                    set.sort_unstable();
                    set.dedup();
                    lists.push((set.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(), 1u8 << bit));
                    for &v in &set {
                        *naive.entry(v).or_default() += 1 << bit;
                    }
                }
                for n in naive.values_mut() {
                    *n = (*n).min(255);
                }
                let mask_words = mask.as_ref().map(|m| block_words(m.iter().copied()));
                for (bytes, add) in &lists {
                    b.add_array(bytes, *add, *cap);
                }
                b.drain_into(mask_words.as_deref(), &mut table);
                prop_assert!(b.counts.iter().all(|&c| c == 0));
                let counted: Vec<(u16, u64)> = naive
                    .iter()
                    .filter(|e| in_words(mask_words.as_deref(), *e.0))
                    .map(|(&v, &n)| (v, n))
                    .collect();
                for &(_, n) in &counted {
                    want[n as usize] += 1;
                }

                let ops = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
                for (bytes, add) in &lists {
                    b.add_array(bytes, *add, *cap);
                }
                let (mut passing, mut nonzero) = (vec![0u64; BLOCK_WORDS], vec![0u64; BLOCK_WORDS]);
                b.drain_passing(mask_words.as_deref(), ops[*op], *n, &mut passing, &mut nonzero);
                prop_assert!(b.counts.iter().all(|&c| c == 0));
                let want_passing = block_words(counted
                    .iter()
                    .filter(|e| holds(ops[*op], e.1, *n))
                    .map(|e| e.0));
                prop_assert_eq!(passing, want_passing);
                prop_assert_eq!(nonzero, block_words(counted.iter().map(|e| e.0)));
            }
            prop_assert_eq!(table, want);
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
