//! Counting (and sampling) an `AND` of stored bitmaps and numeric comparisons one container
//! block (65,536 users) at a time, without building a bitmap.
//!
//! The step pipeline of [`super::eval`] materializes the running intersection after every
//! operand; for an `AND` of tag and value operands with bit-sliced comparisons, building those
//! intermediate bitmaps costs more than the comparisons themselves. Here each block of a shard
//! is one array of 1,024 words: the stored operands (flags, values, unions of them) are
//! intersected in it straight from their containers, read in place, the negated ones
//! subtracted, and then each comparison narrows it — over the slices of its index, or, once
//! few users are left in the block, by reading those users' values from the stored column. A
//! block is dropped as soon as nobody is left in it; the survivors are counted.
//!
//! It serves counts of an `AND` with at least one comparison and one stored operand, and
//! counts of `AND`s of three or more stored operands that the step pipeline would materialize
//! (see [`count_blocks`]), and picks the members at given ranks for samples
//! ([`select_blocks`]). An operand of another kind, an operand with real-time changes in the
//! shard, or an index without stored bytes leaves the count to the step pipeline (`None`).

use super::eval::{Shard, local_size};
use super::plan::Node;
use crate::bitmap::fused::{OffsetRange, narrow_block};
use crate::bitmap::portable::{BLOCK_BYTES, BLOCK_WORDS, Blocks, Cont, Directory, word, words_of};
use crate::error::Result;
use crate::expr::CmpOp;
use crate::ids::prefetch::prefetch;
use crate::table::IntColumn;

/// A comparison reads the stored column in a block whose users left are fewer than this many
/// per slice of its index: a column read costs a cache miss (and mostly a TLB miss) per user,
/// the slices one sequential pass over up to 8 KiB each, which costs about as much as 8 users'
/// reads. Measured at 10M users: with 64, an age comparison over about 100 users per block
/// read the column and took 0.45 ms where the slices take 0.28 ms; with 8, a 27-slice spend
/// comparison over as many users still reads the column (0.44 ms; 1.15 ms over its slices).
pub(crate) const COLUMN_USERS_PER_SLICE: u64 = 8;

/// An all-zero block: a slice with nobody in a block.
static ZERO_BLOCK: [u8; BLOCK_BYTES] = [0; BLOCK_BYTES];

/// A numeric comparison of an `AND`, resolved in one shard.
struct Comparison<'s> {
    exists: Directory<'s>,
    slices: Vec<Directory<'s>>,
    /// The offsets kept, for the slices.
    range: OffsetRange,
    /// The stored values, for blocks with few users left.
    column: Option<IntColumn<'s>>,
    /// The values kept, for the column.
    test: ValueTest,
}

#[derive(Clone, Copy)]
enum ValueTest {
    Compare(CmpOp, i64),
    Between(i64, i64),
}

impl ValueTest {
    fn holds(self, v: i64) -> bool {
        match self {
            ValueTest::Compare(op, c) => op.holds(v, c),
            ValueTest::Between(lo, hi) => lo <= v && v <= hi,
        }
    }
}

/// What a shard makes of an `AND`: nobody passes it, or it is read block by block, or it is
/// left to the step pipeline.
enum Resolved<'s> {
    /// Nobody in the shard passes an operand.
    Nobody,
    Blocks {
        /// Stored operands, each the union of its bitmaps, sparsest first.
        keep: Vec<Vec<Directory<'s>>>,
        /// Negated stored operands.
        drop: Vec<Vec<Directory<'s>>>,
        /// Comparisons, most selective first by catalog estimate.
        compare: Vec<Comparison<'s>>,
    },
    Unsupported,
}

/// `|AND(pos) AND NOT(neg)|` in the shard, block by block, for an `AND` with a comparison;
/// `None` when the operands are not all stored bitmaps and comparisons (see the module's
/// documentation) or none is a comparison.
pub(super) fn count_and<'s>(
    pos: &[Node<'s>],
    neg: &[Node<'s>],
    s: &Shard<'s>,
    column_users_per_slice: u64,
) -> Result<Option<u64>> {
    if !pos
        .iter()
        .any(|n| matches!(n, Node::Compare(..) | Node::Between(..)))
    {
        return Ok(None);
    }
    count_blocks(pos, neg, s, column_users_per_slice)
}

/// [`count_and`] for any `AND` of stored operands and comparisons, comparison or not. The step
/// pipeline counts an `AND` of two stored bitmaps with one count-only kernel, but for three or
/// more it materializes the intersection of the first ones: in dense blocks whose
/// intersection is sparse, turning a bitset back into an array costs more than intersecting
/// and counting the block's words here.
pub(super) fn count_blocks<'s>(
    pos: &[Node<'s>],
    neg: &[Node<'s>],
    s: &Shard<'s>,
    column_users_per_slice: u64,
) -> Result<Option<u64>> {
    let mut total = 0u64;
    let done = for_each_block(pos, neg, s, column_users_per_slice, |_, words| {
        total += popcount(words);
        true
    })?;
    Ok(done.then_some(total))
}

/// Adds to `out` the ids of the members of `AND(pos) AND NOT(neg)` in the shard at `ranks`
/// (0 is the shard's first member; sorted, distinct; ranks past the last member are skipped),
/// reading the blocks as [`count_blocks`] does; `false` (and `out` untouched) when the operands
/// are not all stored bitmaps and comparisons.
pub(super) fn select_blocks<'s>(
    pos: &[Node<'s>],
    neg: &[Node<'s>],
    s: &Shard<'s>,
    ranks: &[u64],
    out: &mut Vec<u32>,
) -> Result<bool> {
    let start = out.len();
    let (mut before, mut next) = (0u64, 0usize);
    let done = for_each_block(pos, neg, s, COLUMN_USERS_PER_SLICE, |key, words| {
        let mut seen = before;
        for (i, &w) in words.iter().enumerate() {
            let n = u64::from(w.count_ones());
            while next < ranks.len() && ranks[next] < seen + n {
                let bit = nth_set_bit(w, (ranks[next] - seen) as u32);
                out.push((u32::from(key) << 16) | (i as u32 * 64 + bit));
                next += 1;
            }
            seen += n;
        }
        before = seen;
        next < ranks.len()
    })?;
    if !done {
        out.truncate(start);
    }
    Ok(done)
}

/// The position of the `n`-th (from 0) set bit of `w`, which has more than `n`.
fn nth_set_bit(mut w: u64, n: u32) -> u32 {
    for _ in 0..n {
        w &= w - 1;
    }
    w.trailing_zeros()
}

fn popcount(words: &[u64; BLOCK_WORDS]) -> u64 {
    words.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// Calls `visit` with each block of the shard (its key and its 1,024 words) in which somebody
/// is left after every operand, in key order, until it returns `false`; `false` when the
/// operands are not all stored bitmaps and comparisons (nothing visited then).
fn for_each_block<'s>(
    pos: &[Node<'s>],
    neg: &[Node<'s>],
    s: &Shard<'s>,
    column_users_per_slice: u64,
    mut visit: impl FnMut(u16, &[u64; BLOCK_WORDS]) -> bool,
) -> Result<bool> {
    let (keep, drop, compare) = match resolve(pos, neg, s)? {
        Resolved::Nobody => return Ok(true),
        Resolved::Unsupported => return Ok(false),
        Resolved::Blocks {
            keep,
            drop,
            compare,
        } => (keep, drop, compare),
    };
    let range = s.snap.shard_range(s.shard);
    if range.is_empty() {
        return Ok(true);
    }
    let Some((first, rest)) = keep.split_first() else {
        return Ok(false);
    };
    let mut words = vec![0u64; BLOCK_WORDS];
    let mut scratch = vec![0u64; BLOCK_WORDS];
    let words: &mut [u64; BLOCK_WORDS] = words.as_mut_slice().try_into().expect("a block");
    let scratch: &mut [u64; BLOCK_WORDS] = scratch.as_mut_slice().try_into().expect("a block");
    let mut blocks = Blocks::default();
    'block: for key in range.start >> 16..=(range.end - 1) >> 16 {
        let key = key as u16;
        if !load_union(first, key, words) {
            continue;
        }
        for u in rest {
            if !and_union(u, key, words, scratch, false) {
                continue 'block;
            }
        }
        for u in &drop {
            if !and_union(u, key, words, scratch, true) {
                continue 'block;
            }
        }
        for c in &compare {
            if !narrow(c, key, words, &mut blocks, column_users_per_slice) {
                continue 'block;
            }
        }
        if !visit(key, words) {
            break;
        }
    }
    Ok(true)
}

/// The operands of an `AND` in one shard.
fn resolve<'s>(pos: &[Node<'s>], neg: &[Node<'s>], s: &Shard<'s>) -> Result<Resolved<'s>> {
    let parse = |bytes: Vec<&'s [u8]>| -> Option<Vec<Directory<'s>>> {
        bytes
            .into_iter()
            .map(|b| Directory::parse(b).ok())
            .collect()
    };
    let users = s.snap.users() as u64;
    let mut keep: Vec<(u64, Vec<Directory<'s>>)> = Vec::new();
    let mut compare: Vec<(u64, Comparison<'s>)> = Vec::new();
    for n in pos {
        match n {
            Node::All => {}
            Node::Compare(..) | Node::Between(..) => match comparison(n, s)? {
                Some(Some(c)) => compare.push((n.estimate(users), c)),
                // Nobody in the shard passes it.
                Some(None) => return Ok(Resolved::Nobody),
                None => return Ok(Resolved::Unsupported),
            },
            _ => {
                let mut bytes = Vec::new();
                if !stored_union(n, s, &mut bytes)? {
                    return Ok(Resolved::Unsupported);
                }
                if bytes.is_empty() {
                    return Ok(Resolved::Nobody);
                }
                let Some(dirs) = parse(bytes) else {
                    return Ok(Resolved::Unsupported);
                };
                keep.push((local_size(n, s), dirs));
            }
        }
    }
    if keep.is_empty() {
        return Ok(Resolved::Unsupported);
    }
    let mut drop = Vec::new();
    for n in neg {
        let mut bytes = Vec::new();
        if !stored_union(n, s, &mut bytes)? {
            return Ok(Resolved::Unsupported);
        }
        let Some(dirs) = parse(bytes) else {
            return Ok(Resolved::Unsupported);
        };
        if !dirs.is_empty() {
            drop.push(dirs);
        }
    }
    keep.sort_by_key(|e| e.0);
    compare.sort_by_key(|e| e.0);
    Ok(Resolved::Blocks {
        keep: keep.into_iter().map(|e| e.1).collect(),
        drop,
        compare: compare.into_iter().map(|e| e.1).collect(),
    })
}

/// Adds to `out` the stored bytes of the bitmaps whose union `node` is (none for a bitmap
/// nobody in the shard has); `false` when `node` is not such a union or real-time changes
/// overlay one of its fields in the shard.
fn stored_union<'s>(node: &Node<'s>, s: &Shard<'s>, out: &mut Vec<&'s [u8]>) -> Result<bool> {
    let mut add = |b: Option<Option<&'s [u8]>>| match b {
        None => false,
        Some(b) => {
            out.extend(b);
            true
        }
    };
    Ok(match node {
        Node::Flag(f) => add(f.stored_bytes_in(s.shard, None)?),
        Node::AnyValue(f, codes) => {
            for &c in codes {
                if !add(f.stored_bytes_in(s.shard, Some(c))?) {
                    return Ok(false);
                }
            }
            true
        }
        Node::Or(xs) => {
            for x in xs {
                if !stored_union(x, s, out)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => false,
    })
}

/// A comparison in the shard: `Some(None)` when nobody passes it, `None` when the index has
/// no stored bytes (real-time changes) or they do not parse.
fn comparison<'s>(node: &Node<'s>, s: &Shard<'s>) -> Result<Option<Option<Comparison<'s>>>> {
    let (f, test) = match node {
        Node::Compare(f, op, c) => (f, ValueTest::Compare(*op, *c)),
        Node::Between(f, lo, hi) => (f, ValueTest::Between(*lo, *hi)),
        _ => return Ok(None),
    };
    let Some(bsi) = f.bsi_in(s.shard)? else {
        return Ok(Some(None));
    };
    let Some(bytes) = bsi.portable.as_deref() else {
        return Ok(None);
    };
    let Some(range) = offset_range(test, bsi.base, bsi.slices.len()) else {
        return Ok(Some(None));
    };
    let Some((exists, slices)) = bytes.split_first() else {
        return Ok(None);
    };
    let (Ok(exists), Some(slices)) = (
        Directory::parse(exists),
        slices
            .iter()
            .map(|b| Directory::parse(b).ok())
            .collect::<Option<Vec<_>>>(),
    ) else {
        return Ok(None);
    };
    Ok(Some(Some(Comparison {
        exists,
        slices,
        range,
        column: f.stored_ints_in(s.shard)?,
        test,
    })))
}

/// The offsets (`value - base`, `depth` slices) a test keeps; `None` when it keeps none.
fn offset_range(test: ValueTest, base: i64, depth: usize) -> Option<OffsetRange> {
    let max = if depth >= 64 {
        u64::MAX
    } else {
        (1u64 << depth) - 1
    };
    let range = |lo: u64, hi: u64, negate: bool| Some(OffsetRange { lo, hi, negate });
    match test {
        ValueTest::Between(lo, hi) => {
            let lo = (i128::from(lo) - i128::from(base)).max(0);
            let hi = (i128::from(hi) - i128::from(base)).min(i128::from(max));
            if lo > hi {
                return None;
            }
            range(lo as u64, hi as u64, false)
        }
        ValueTest::Compare(op, c) => {
            let off = i128::from(c) - i128::from(base);
            if off < 0 {
                return match op {
                    CmpOp::Gt | CmpOp::Ge | CmpOp::Ne => range(0, max, false),
                    CmpOp::Lt | CmpOp::Le | CmpOp::Eq => None,
                };
            }
            if off > i128::from(max) {
                return match op {
                    CmpOp::Lt | CmpOp::Le | CmpOp::Ne => range(0, max, false),
                    CmpOp::Gt | CmpOp::Ge | CmpOp::Eq => None,
                };
            }
            let off = off as u64;
            match op {
                CmpOp::Eq => range(off, off, false),
                CmpOp::Ne => range(off, off, true),
                CmpOp::Le => range(0, off, false),
                CmpOp::Ge => range(off, max, false),
                CmpOp::Lt if off == 0 => None,
                CmpOp::Lt => range(0, off - 1, false),
                CmpOp::Gt if off == max => None,
                CmpOp::Gt => range(off + 1, max, false),
            }
        }
    }
}

/// Sets `words` to the union of `dirs` in block `key`; `false` when it is empty there.
fn load_union(dirs: &[Directory<'_>], key: u16, words: &mut [u64; BLOCK_WORDS]) -> bool {
    if let [d] = dirs
        && let Some(Cont::Bitset(bytes)) = d.get(key)
    {
        // One bitset: copied in whole words.
        let mut any = 0;
        for (w, b) in words.iter_mut().zip(words_of(bytes)) {
            *w = b;
            any |= b;
        }
        return any != 0;
    }
    words.fill(0);
    let mut any = false;
    for c in dirs.iter().filter_map(|d| d.get(key)) {
        c.or_into(words);
        any = true;
    }
    any && words.iter().any(|&w| w != 0)
}

/// Intersects `words` with the union of `dirs` in block `key` (subtracts it when `negate`);
/// `false` when nobody is left.
fn and_union(
    dirs: &[Directory<'_>],
    key: u16,
    words: &mut [u64; BLOCK_WORDS],
    scratch: &mut [u64; BLOCK_WORDS],
    negate: bool,
) -> bool {
    let mut conts = dirs.iter().filter_map(|d| d.get(key));
    match (conts.next(), conts.next()) {
        (None, _) if negate => return words.iter().any(|&w| w != 0),
        (None, _) => {
            words.fill(0);
            return false;
        }
        // One bitset: read in place, in whole words (no bounds check per word, so the loop
        // is vectorized), noting on the way whether anybody is left.
        (Some(Cont::Bitset(bytes)), None) => {
            let flip = if negate { !0 } else { 0 };
            let mut left = 0;
            for (w, b) in words.iter_mut().zip(words_of(bytes)) {
                *w &= b ^ flip;
                left |= *w;
            }
            return left != 0;
        }
        // One array to subtract: clear its members.
        (Some(Cont::Array(values)), None) if negate => {
            for v in values.chunks_exact(2) {
                let v = usize::from(u16::from_le_bytes([v[0], v[1]]));
                words[v >> 6] &= !(1u64 << (v & 63));
            }
        }
        (Some(a), b) => {
            scratch.fill(0);
            for c in [a].into_iter().chain(b).chain(conts) {
                c.or_into(scratch);
            }
            let flip = if negate { !0 } else { 0 };
            let mut left = 0;
            for (w, s) in words.iter_mut().zip(scratch.iter()) {
                *w &= s ^ flip;
                left |= *w;
            }
            return left != 0;
        }
    }
    words.iter().any(|&w| w != 0)
}

/// Narrows `words` (block `key`) to the users passing `c`; `false` when nobody is left.
fn narrow(
    c: &Comparison<'_>,
    key: u16,
    words: &mut [u64; BLOCK_WORDS],
    blocks: &mut Blocks,
    column_users_per_slice: u64,
) -> bool {
    let Some(exists) = c.exists.get(key) else {
        words.fill(0);
        return false;
    };
    let users: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
    let few = users < column_users_per_slice.saturating_mul(c.slices.len().max(1) as u64);
    if let Some(column) = c.column.as_ref().filter(|_| few) {
        // Users with a value, then their values one by one.
        match exists {
            Cont::Bitset(bytes) => {
                for (j, w) in words.iter_mut().enumerate().filter(|(_, w)| **w != 0) {
                    *w &= word(bytes, j);
                }
            }
            _ => {
                let mut scratch = [0u64; BLOCK_WORDS];
                exists.or_into(&mut scratch);
                for (w, e) in words.iter_mut().zip(scratch.iter()) {
                    *w &= e;
                }
            }
        }
        if read_values(column, c.test, key, words) {
            return words.iter().any(|&w| w != 0);
        }
    }
    let mut inputs: Vec<&Directory<'_>> = Vec::with_capacity(c.slices.len() + 1);
    inputs.push(&c.exists);
    inputs.extend(c.slices.iter());
    let loaded = blocks.load(&inputs, key);
    let Some(Some(e)) = loaded.first() else {
        words.fill(0);
        return false;
    };
    let slices: Vec<&[u8]> = loaded[1..]
        .iter()
        .map(|s| s.unwrap_or(&ZERO_BLOCK[..]))
        .collect();
    narrow_block(words, e, &slices, c.range);
    words.iter().any(|&w| w != 0)
}

/// Keeps in `words` (block `key`, users with a value) those whose stored value passes `test`;
/// `false`, leaving `words` untouched, when the column lacks a row for one of them.
fn read_values(column: &IntColumn<'_>, test: ValueTest, key: u16, words: &mut [u64]) -> bool {
    let (rows, _) = column.values.as_chunks::<8>();
    let base = i64::from(key) << 16;
    let row_of = |j: usize, bit: u32| {
        usize::try_from(base + (j as i64) * 64 + i64::from(bit) - column.first).ok()
    };
    // Rows are contiguous: the first and last users' rows cover every user between.
    let first = words.iter().position(|&w| w != 0);
    let last = words.iter().rposition(|&w| w != 0);
    let (Some(first), Some(last)) = (first, last) else {
        return true;
    };
    let covered = |r: Option<usize>| r.is_some_and(|r| r < rows.len());
    if !covered(row_of(first, words[first].trailing_zeros()))
        || !covered(row_of(last, 63 - words[last].leading_zeros()))
    {
        return false;
    }
    // Every row is requested before any is read, so that their misses overlap.
    for (j, &w) in words.iter().enumerate().skip(first).take(last + 1 - first) {
        let mut rest = w;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            rest &= rest - 1;
            if let Some(r) = row_of(j, bit) {
                prefetch(rows, r);
            }
        }
    }
    for (j, w) in words
        .iter_mut()
        .enumerate()
        .skip(first)
        .take(last + 1 - first)
    {
        let mut rest = *w;
        let mut kept = 0u64;
        while rest != 0 {
            let bit = rest.trailing_zeros();
            rest &= rest - 1;
            let value = row_of(j, bit)
                .and_then(|r| rows.get(r))
                .map(|b| i64::from_le_bytes(*b));
            if value.is_some_and(|v| test.holds(v)) {
                kept |= 1 << bit;
            }
        }
        *w = kept;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use croaring::{Bitmap, Portable};
    use proptest::prelude::*;

    /// Bitmaps over blocks 0 to 2 with array, bitset and run containers, full and empty blocks.
    fn bitmap() -> impl Strategy<Value = Bitmap> {
        prop_oneof![
            proptest::collection::vec(0u32..200_000, 0..300).prop_map(|v| Bitmap::of(&v)),
            (0u32..3, any::<u64>(), 4100u32..30_000).prop_map(|(block, seed, n)| {
                let mut x = seed | 1;
                let ids: Vec<u32> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        block * 65_536 + (x % 65_536) as u32
                    })
                    .collect();
                Bitmap::of(&ids)
            }),
            (0u32..140_000, 1u32..140_000, any::<bool>()).prop_map(|(a, n, runs)| {
                let mut b = Bitmap::from_range(a..a + n);
                if runs {
                    b.run_optimize();
                }
                b
            }),
            Just(Bitmap::from_range(65_536..131_072)),
            Just(Bitmap::new()),
        ]
    }

    fn block_of(b: &Bitmap, key: u16) -> Vec<u64> {
        let mut words = vec![0u64; BLOCK_WORDS];
        for id in b.iter().filter(|id| id >> 16 == u32::from(key)) {
            let low = (id & 0xffff) as usize;
            words[low / 64] |= 1 << (low % 64);
        }
        words
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(64))]

        /// `first AND (union of keep) AND NOT (union of drop)`, block by block, as CRoaring
        /// computes it.
        #[test]
        fn block_unions_match_croaring(
            first in proptest::collection::vec(bitmap(), 1..3),
            keep in proptest::collection::vec(bitmap(), 1..3),
            drop in proptest::collection::vec(bitmap(), 1..3),
        ) {
            let bytes = |bs: &[Bitmap]| -> Vec<Vec<u8>> {
                bs.iter().map(|b| b.serialize::<Portable>()).collect()
            };
            let (fb, kb, db) = (bytes(&first), bytes(&keep), bytes(&drop));
            fn dirs(bs: &[Vec<u8>]) -> Vec<Directory<'_>> {
                bs.iter().map(|b| Directory::parse(b).unwrap()).collect()
            }
            let (fd, kd, dd) = (dirs(&fb), dirs(&kb), dirs(&db));
            let union = |bs: &[Bitmap]| Bitmap::fast_or(&bs.iter().collect::<Vec<_>>());
            let mut want = union(&first);
            let first_want = want.clone();
            want.and_inplace(&union(&keep));
            let kept = want.clone();
            want.andnot_inplace(&union(&drop));
            let mut words = [0u64; BLOCK_WORDS];
            let mut scratch = [0u64; BLOCK_WORDS];
            for key in 0u16..4 {
                let any = load_union(&fd, key, &mut words);
                prop_assert_eq!(&words[..], &block_of(&first_want, key)[..]);
                prop_assert_eq!(any, words.iter().any(|&w| w != 0));
                let any = and_union(&kd, key, &mut words, &mut scratch, false);
                prop_assert_eq!(&words[..], &block_of(&kept, key)[..]);
                prop_assert_eq!(any, words.iter().any(|&w| w != 0));
                let any = and_union(&dd, key, &mut words, &mut scratch, true);
                prop_assert_eq!(&words[..], &block_of(&want, key)[..]);
                prop_assert_eq!(any, words.iter().any(|&w| w != 0));
            }
        }
    }

    /// Offsets kept by each test, against every offset of a small index.
    #[test]
    fn offset_ranges_keep_exactly_the_passing_values() {
        let ops = [
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Ge,
            CmpOp::Gt,
        ];
        for depth in 0..4usize {
            let base = -3i64;
            let max = (1i64 << depth) - 1;
            for c in -6i64..12 {
                let mut tests: Vec<ValueTest> =
                    ops.iter().map(|&op| ValueTest::Compare(op, c)).collect();
                tests.extend((-6i64..12).map(|hi| ValueTest::Between(c, hi)));
                for test in tests {
                    let range = offset_range(test, base, depth);
                    for off in 0..=max {
                        let kept = range.is_some_and(|r| {
                            let inside = r.lo <= off as u64 && off as u64 <= r.hi;
                            inside != r.negate
                        });
                        assert_eq!(
                            kept,
                            test.holds(base + off),
                            "depth {depth}, offset {off}, {:?}",
                            range.map(|r| (r.lo, r.hi, r.negate))
                        );
                    }
                }
            }
        }
    }
}
