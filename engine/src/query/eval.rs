//! Evaluation of a planned expression on one shard: as a bitmap, as a count, or for one user.
//!
//! Leaves borrow zero-copy views from the segments ([`Bm::Borrowed`]); only operators allocate.
//! `AND` evaluates its operands over stored bitmaps first (sparsest first, then its negated
//! ones), then every computed operand *within* the running result ([`eval_within`]): a BSI
//! comparison, an `OR` or a `NOT` below an `AND` never computes more than the users still in
//! play, and a comparison over a few users reads their values from the stored column instead of
//! walking the slices. It stops as soon as the running result is empty, and its last step uses a
//! count-only kernel (`and_cardinality`) when only a count is wanted.

use std::borrow::Cow;

use croaring::Bitmap;

use super::plan::Node;
use crate::bitmap::bsi::BsiRef;
use crate::error::Result;
use crate::table::{FieldRef, TableSnapshot};

/// A shard-local result: borrowed from a segment or computed.
pub(crate) type Bm<'a> = Cow<'a, Bitmap>;

/// What evaluation needs about the shard it runs on.
pub(crate) struct Shard<'s> {
    pub(crate) snap: &'s TableSnapshot,
    pub(crate) shard: u32,
}

impl<'s> Shard<'s> {
    fn all(&self) -> Bitmap {
        self.snap.all_in(self.shard)
    }
    fn len(&self) -> u64 {
        let r = self.snap.shard_range(self.shard);
        (r.end - r.start) as u64
    }
}

fn users(s: &Shard<'_>) -> u64 {
    s.snap.users() as u64
}

fn bsi<'s>(f: &FieldRef<'s>, s: &Shard<'_>) -> Result<Option<BsiRef<'s>>> {
    f.bsi_in(s.shard)
}

/// The users of `node` in the shard.
pub(crate) fn eval<'s>(node: &Node<'s>, s: &Shard<'s>) -> Result<Bm<'s>> {
    Ok(match node {
        Node::All => Cow::Owned(s.all()),
        Node::Empty => Cow::Owned(Bitmap::new()),
        Node::Flag(f) => match f.flag_in(s.shard)? {
            Some(b) => Cow::Borrowed(b),
            None => Cow::Owned(Bitmap::new()),
        },
        Node::AnyValue(f, codes) => {
            let mut parts = Vec::with_capacity(codes.len());
            for &c in codes {
                if let Some(b) = f.value_in(s.shard, c)? {
                    parts.push(b);
                }
            }
            match parts.len() {
                0 => Cow::Owned(Bitmap::new()),
                1 => Cow::Borrowed(parts[0]),
                _ => Cow::Owned(Bitmap::fast_or(&parts)),
            }
        }
        Node::AllValues(f, codes) => {
            let mut parts = Vec::with_capacity(codes.len());
            for &c in codes {
                match f.value_in(s.shard, c)? {
                    Some(b) => parts.push(b),
                    None => return Ok(Cow::Owned(Bitmap::new())),
                }
            }
            parts.sort_by_key(|b| b.cardinality());
            let mut acc = parts[0].clone();
            for b in &parts[1..] {
                acc.and_inplace(b);
            }
            Cow::Owned(acc)
        }
        Node::Exists(f) => Cow::Owned(f.exists_in(s.shard)?),
        Node::Compare(f, op, c) => {
            Cow::Owned(bsi(f, s)?.map(|b| b.compare(*op, *c)).unwrap_or_default())
        }
        Node::Between(f, lo, hi) => {
            Cow::Owned(bsi(f, s)?.map(|b| b.between(*lo, *hi)).unwrap_or_default())
        }
        Node::Ids(ids) => {
            let r = s.snap.shard_range(s.shard);
            let mut b = (**ids).clone();
            b.and_inplace(&Bitmap::from_range(r));
            Cow::Owned(b)
        }
        Node::And { pos, neg } => run(&steps(pos, neg, s), s)?,
        Node::Or(xs) => {
            let parts: Vec<Bm<'s>> = xs.iter().map(|x| eval(x, s)).collect::<Result<_>>()?;
            let refs: Vec<&Bitmap> = parts.iter().map(|b| b.as_ref()).collect();
            Cow::Owned(Bitmap::fast_or(&refs))
        }
        Node::Xor(xs) => {
            let mut acc = eval(&xs[0], s)?.into_owned();
            for x in &xs[1..] {
                acc.xor_inplace(eval(x, s)?.as_ref());
            }
            Cow::Owned(acc)
        }
        Node::Not(x) => {
            let mut all = s.all();
            all.andnot_inplace(eval(x, s)?.as_ref());
            Cow::Owned(all)
        }
        Node::Did(d) => Cow::Owned(d.eval_in(s.snap, s.shard, None)?),
    })
}

/// The size of `node` in the shard when it is a stored leaf or a union of them (exact), or its
/// catalog estimate scaled to the shard.
pub(super) fn local_size<'s>(node: &Node<'s>, s: &Shard<'s>) -> u64 {
    fn exact<'s>(node: &Node<'s>, s: &Shard<'s>) -> Option<u64> {
        let size = |b: Result<Option<&Bitmap>>| b.ok().map(|b| b.map_or(0, |b| b.cardinality()));
        match node {
            Node::Flag(f) => size(f.flag_in(s.shard)),
            Node::AnyValue(f, codes) => codes.iter().map(|&c| size(f.value_in(s.shard, c))).sum(),
            Node::Or(xs) => xs.iter().map(|x| exact(x, s)).sum(),
            _ => None,
        }
    }
    exact(node, s).unwrap_or_else(|| {
        let scale = s.len() as f64 / users(s).max(1) as f64;
        (node.estimate(users(s)) as f64 * scale) as u64
    })
}

/// Whether `node` only combines stored bitmaps (no bit-sliced arithmetic, no behaviour
/// kernel, no complement): intersecting with it costs about what reading it costs.
fn is_stored_algebra(node: &Node<'_>) -> bool {
    match node {
        Node::All
        | Node::Empty
        | Node::Flag(_)
        | Node::AnyValue(..)
        | Node::AllValues(..)
        | Node::Ids(_) => true,
        Node::Or(xs) => xs.iter().all(is_stored_algebra),
        Node::And { pos, neg } => pos.iter().chain(neg).all(is_stored_algebra),
        _ => false,
    }
}

/// One step of an `AND`: keep the users of a positive operand, or drop those of a negated one.
#[derive(Clone, Copy)]
enum Step<'a, 's> {
    Keep(&'a Node<'s>),
    Drop(&'a Node<'s>),
}

/// The steps of `AND(pos) AND NOT(neg)`, in evaluation order. Operands over stored bitmaps
/// come first — positive ones sparsest first, then negated ones — because they are cheap and
/// shrink the users in play; computed operands (BSI comparisons, behaviours, complements)
/// follow, evaluated within those users only: positive ones sparsest first by estimate, then
/// negated ones. The first step always keeps (it is the starting set).
fn steps<'a, 's>(pos: &'a [Node<'s>], neg: &'a [Node<'s>], s: &Shard<'s>) -> Vec<Step<'a, 's>> {
    let mut sized: Vec<(u64, &'a Node<'s>)> = pos.iter().map(|n| (local_size(n, s), n)).collect();
    sized.sort_by_key(|e| e.0);
    let (cheap, dear): (Vec<_>, Vec<_>) = sized.into_iter().partition(|e| is_stored_algebra(e.1));
    let mut out = Vec::with_capacity(pos.len() + neg.len());
    let mut dear = dear.into_iter().map(|e| Step::Keep(e.1));
    out.extend(cheap.into_iter().map(|e| Step::Keep(e.1)));
    if out.is_empty() {
        out.extend(dear.next());
    }
    out.extend(neg.iter().filter(|n| is_stored_algebra(n)).map(Step::Drop));
    out.extend(dear);
    out.extend(neg.iter().filter(|n| !is_stored_algebra(n)).map(Step::Drop));
    out
}

/// The users left after `steps` (the first keeps), stopping as soon as nobody is left.
fn run<'s>(steps: &[Step<'_, 's>], s: &Shard<'s>) -> Result<Bm<'s>> {
    let Some((Step::Keep(first), rest)) = steps.split_first() else {
        return Ok(Cow::Owned(s.all()));
    };
    let mut acc = eval(first, s)?;
    for step in rest {
        if acc.is_empty() {
            break;
        }
        acc = Cow::Owned(apply(*step, s, acc)?);
    }
    Ok(acc)
}

/// `acc` after one step.
fn apply<'s>(step: Step<'_, 's>, s: &Shard<'s>, acc: Bm<'s>) -> Result<Bitmap> {
    Ok(match step {
        Step::Keep(n) => eval_within(n, s, &acc)?,
        Step::Drop(n) => {
            let mut acc = acc.into_owned();
            match stored(n, s)? {
                Some(leaf) => {
                    if let Some(b) = leaf {
                        acc.andnot_inplace(b);
                    }
                }
                None => {
                    let drop = eval_within(n, s, &acc)?;
                    acc.andnot_inplace(&drop);
                }
            }
            acc
        }
    })
}

/// A leaf that is a stored bitmap, borrowed; `None` for computed nodes.
fn stored<'s>(node: &Node<'s>, s: &Shard<'s>) -> Result<Option<Option<&'s Bitmap>>> {
    Ok(match node {
        Node::Flag(f) => Some(f.flag_in(s.shard)?),
        Node::AnyValue(f, codes) if codes.len() == 1 => Some(f.value_in(s.shard, codes[0])?),
        _ => None,
    })
}

/// The users of `node` among `within` (`node AND within`), computing no more than that.
pub(crate) fn eval_within<'s>(node: &Node<'s>, s: &Shard<'s>, within: &Bitmap) -> Result<Bitmap> {
    if within.is_empty() {
        return Ok(Bitmap::new());
    }
    if let Some(leaf) = stored(node, s)? {
        return Ok(leaf.map(|b| within.and(b)).unwrap_or_default());
    }
    let union_within =
        |parts: &mut dyn Iterator<Item = Result<Option<&'s Bitmap>>>| -> Result<Bitmap> {
            let mut out = Bitmap::new();
            for p in parts {
                if let Some(b) = p? {
                    out.or_inplace(&within.and(b));
                }
            }
            Ok(out)
        };
    Ok(match node {
        Node::All => within.clone(),
        Node::Empty => Bitmap::new(),
        Node::AnyValue(f, codes) => {
            union_within(&mut codes.iter().map(|&c| f.value_in(s.shard, c)))?
        }
        Node::AllValues(f, codes) => {
            let mut acc = within.clone();
            for &c in codes {
                match f.value_in(s.shard, c)? {
                    Some(b) if !acc.is_empty() => acc.and_inplace(b),
                    _ => return Ok(Bitmap::new()),
                }
            }
            acc
        }
        Node::Exists(f) => match f.kind() {
            k if k.is_numeric() => bsi(f, s)?.map(|b| within.and(b.exists)).unwrap_or_default(),
            crate::FieldKind::Flag => f
                .flag_in(s.shard)?
                .map(|b| within.and(b))
                .unwrap_or_default(),
            _ => union_within(&mut (0..f.values().len() as u32).map(|c| f.value_in(s.shard, c)))?,
        },
        Node::Compare(f, op, c) => match few_values(f, s, within)? {
            Some(few) => few.filter(|v| op.holds(v, *c)),
            None => bsi(f, s)?
                .map(|b| b.compare_in(*op, *c, Some(within)))
                .unwrap_or_default(),
        },
        Node::Between(f, lo, hi) => match few_values(f, s, within)? {
            Some(few) => few.filter(|v| *lo <= v && v <= *hi),
            None => bsi(f, s)?
                .map(|b| b.between_in(*lo, *hi, Some(within)))
                .unwrap_or_default(),
        },
        Node::Ids(ids) => within.and(ids),
        Node::And { pos, neg } => {
            let mut acc: Bm<'_> = Cow::Borrowed(within);
            for step in steps(pos, neg, s) {
                if acc.is_empty() {
                    break;
                }
                acc = Cow::Owned(apply(step, s, acc)?);
            }
            acc.into_owned()
        }
        Node::Or(xs) => {
            let mut out = Bitmap::new();
            for x in xs {
                out.or_inplace(&eval_within(x, s, within)?);
            }
            out
        }
        Node::Xor(xs) => {
            let mut out = Bitmap::new();
            for x in xs {
                out.xor_inplace(&eval_within(x, s, within)?);
            }
            out
        }
        Node::Not(x) => within.andnot(&eval_within(x, s, within)?),
        Node::Did(d) => d.eval_in(s.snap, s.shard, Some(within))?,
        Node::Flag(_) => unreachable!("stored leaves are handled above"),
    })
}

/// A numeric field's values for a few users, read from its stored column.
struct FewValues {
    /// The users among those asked for who have a value, ascending.
    ids: Vec<u32>,
    /// Their values.
    values: Vec<i64>,
}

impl FewValues {
    /// The users whose value passes `keep`.
    fn filter(&self, keep: impl Fn(i64) -> bool) -> Bitmap {
        let kept: Vec<u32> = self
            .ids
            .iter()
            .zip(&self.values)
            .filter(|(_, v)| keep(**v))
            .map(|(id, _)| *id)
            .collect();
        Bitmap::of(&kept)
    }
}

/// A shard's users are read one by one from a numeric column, rather than through the
/// bit-sliced index, when they are fewer than the shard's size divided by this: a comparison
/// walks every slice's containers however few users it keeps.
const FEW_USERS_DIVISOR: u64 = 64;

/// The values of `f` for the users of `within` when they are few and the shard has a stored
/// column (`None`: use the bit-sliced index).
fn few_values<'s>(f: &FieldRef<'s>, s: &Shard<'s>, within: &Bitmap) -> Result<Option<FewValues>> {
    if within.cardinality() * FEW_USERS_DIVISOR >= s.len() {
        return Ok(None);
    }
    let (Some(column), Some(bsi)) = (f.stored_ints_in(s.shard)?, bsi(f, s)?) else {
        return Ok(None);
    };
    let (rows, _) = column.values.as_chunks::<8>();
    let ids = within.and(bsi.exists).to_vec();
    let mut values = Vec::with_capacity(ids.len());
    for &id in &ids {
        let row = usize::try_from(id as i64 - column.first)
            .ok()
            .and_then(|r| rows.get(r));
        match row {
            Some(b) => values.push(i64::from_le_bytes(*b)),
            // A user with a value but no row: the column does not cover the index.
            None => return Ok(None),
        }
    }
    Ok(Some(FewValues { ids, values }))
}

/// Whether an `AND`'s negated operands are small next to its positive ones (by exact sizes of
/// stored leaves, catalog estimates otherwise), so subtracting their overlap is cheaper than
/// materializing the positive intersection.
fn negations_are_small<'s>(pos: &[Node<'s>], neg: &[Node<'s>], s: &Shard<'s>) -> bool {
    let smallest_pos = pos.iter().map(|n| shard_size(n, s)).min().unwrap_or(0);
    let negs: u64 = neg.iter().map(|n| shard_size(n, s)).sum();
    negs.saturating_mul(8) < smallest_pos
}

/// The exact size of a stored leaf in the shard, or its scaled catalog estimate.
fn shard_size<'s>(n: &Node<'s>, s: &Shard<'s>) -> u64 {
    let scale = s.len() as f64 / users(s).max(1) as f64;
    match stored(n, s) {
        Ok(Some(b)) => b.map_or(0, |b| b.cardinality()),
        _ => (n.estimate(users(s)) as f64 * scale) as u64,
    }
}

/// Whether a positive stored operand of an `AND` has few users in the shard (as
/// [`FEW_USERS_DIVISOR`] counts them): the step pipeline then starts from it and reads those
/// users' values from columns, which costs less than walking every block of the shard.
fn has_few_stored<'s>(pos: &[Node<'s>], s: &Shard<'s>) -> bool {
    pos.iter()
        .filter(|n| is_stored_algebra(n))
        .any(|n| local_size(n, s).saturating_mul(FEW_USERS_DIVISOR) < s.len())
}

/// A container holds a bitset above this share of its 65,536 users (4,096 of them).
const BITSET_DIVISOR: u64 = 16;

/// Whether every positive operand of an `AND` is dense enough for bitset containers (by
/// [`shard_size`]).
fn dense_positives<'s>(pos: &[Node<'s>], s: &Shard<'s>) -> bool {
    pos.iter()
        .filter(|n| !matches!(n, Node::All))
        .all(|n| shard_size(n, s).saturating_mul(BITSET_DIVISOR) >= s.len())
}

/// `|node AND within|`, with a count-only kernel for stored leaves.
fn count_within<'s>(node: &Node<'s>, s: &Shard<'s>, within: &Bitmap) -> Result<u64> {
    match stored(node, s)? {
        Some(leaf) => Ok(leaf.map(|b| within.and_cardinality(b)).unwrap_or(0)),
        None => Ok(eval_within(node, s, within)?.cardinality()),
    }
}

/// The number of users left after `steps`, the last one counted without materializing it
/// when it is a stored leaf.
fn count_steps<'s>(steps: &[Step<'_, 's>], s: &Shard<'s>) -> Result<u64> {
    let Some((last, init)) = steps.split_last() else {
        return Ok(s.len());
    };
    if init.is_empty() {
        let Step::Keep(n) = last else {
            unreachable!("the first step keeps")
        };
        return count(n, s);
    }
    let acc = run(init, s)?;
    if acc.is_empty() {
        return Ok(0);
    }
    Ok(match *last {
        Step::Keep(n) => count_within(n, s, &acc)?,
        Step::Drop(n) => acc.cardinality() - count_within(n, s, &acc)?,
    })
}

/// Adds to `out` the ids of the shard's members of `node` at `ranks` (sorted, distinct; 0 is
/// the shard's first member; ranks past its last member are skipped). An `AND` of stored
/// bitmaps and comparisons is read block by block, nothing materialized.
pub(crate) fn select<'s>(
    node: &Node<'s>,
    s: &Shard<'s>,
    ranks: &[u64],
    out: &mut Vec<u32>,
) -> Result<()> {
    if let Node::And { pos, neg } = node
        && super::blockwise::select_blocks(pos, neg, s, ranks, out)?
    {
        return Ok(());
    }
    let b = eval(node, s)?;
    out.extend(
        ranks
            .iter()
            .map_while(|&r| u32::try_from(r).ok().and_then(|r| b.select(r))),
    );
    Ok(())
}

/// The number of users of `node` in the shard, materializing as little as possible.
pub(crate) fn count<'s>(node: &Node<'s>, s: &Shard<'s>) -> Result<u64> {
    Ok(match node {
        Node::All => s.len(),
        Node::Empty => 0,
        Node::And { pos, neg } => {
            let few = has_few_stored(pos, s);
            if !few
                && let Some(n) = super::blockwise::count_and(
                    pos,
                    neg,
                    s,
                    super::blockwise::COLUMN_USERS_PER_SLICE,
                )?
            {
                return Ok(n);
            }
            // The step pipeline starts from the smallest positive operand: when even that one
            // fills its blocks' bitsets, the intersections it materializes are dense, and the
            // count goes block by block instead.
            let blocks_or_steps = || -> Result<u64> {
                if !few
                    && dense_positives(pos, s)
                    && let Some(n) = super::blockwise::count_blocks(
                        pos,
                        neg,
                        s,
                        super::blockwise::COLUMN_USERS_PER_SLICE,
                    )?
                {
                    return Ok(n);
                }
                count_steps(&steps(pos, neg, s), s)
            };
            if neg.is_empty() {
                if pos.len() == 1 {
                    return count(&pos[0], s);
                }
                // Two stored bitmaps: the count-only kernel, nothing materialized.
                if let [a, b] = pos.as_slice()
                    && let (Some(a), Some(b)) = (stored(a, s)?, stored(b, s)?)
                {
                    return Ok(match (a, b) {
                        (Some(a), Some(b)) => a.and_cardinality(b),
                        _ => 0,
                    });
                }
                blocks_or_steps()?
            } else if negations_are_small(pos, neg, s) {
                // |P AND NOT N| = |P| - |P AND N|: the first term by count-only kernels, the
                // second evaluated from the (small) negated operands outwards.
                let positive = Node::And {
                    pos: pos.clone(),
                    neg: Vec::new(),
                };
                let mut within = pos.clone();
                within.push(Node::Or(neg.clone()));
                let overlap = Node::And {
                    pos: within,
                    neg: Vec::new(),
                };
                count(&positive, s)? - count(&overlap, s)?
            } else if let [p] = pos.as_slice()
                && let [n] = neg.as_slice()
                && let (Some(p), Some(n)) = (stored(p, s)?, stored(n, s)?)
            {
                // Two stored bitmaps: the count-only kernel.
                match (p, n) {
                    (Some(p), Some(n)) => p.andnot_cardinality(n),
                    (Some(p), None) => p.cardinality(),
                    _ => 0,
                }
            } else {
                blocks_or_steps()?
            }
        }
        Node::Or(xs) if xs.len() == 2 => eval(&xs[0], s)?.or_cardinality(eval(&xs[1], s)?.as_ref()),
        Node::Xor(xs) if xs.len() == 2 => {
            eval(&xs[0], s)?.xor_cardinality(eval(&xs[1], s)?.as_ref())
        }
        Node::Not(x) => s.len() - count(x, s)?,
        other => eval(other, s)?.cardinality(),
    })
}

/// Whether user `id` belongs to `node`, reading only that user's data.
pub(crate) fn contains(node: &Node<'_>, snap: &TableSnapshot, id: u32) -> Result<bool> {
    let shard = id >> crate::SHARD_BITS;
    Ok(match node {
        Node::All => id < snap.users(),
        Node::Empty => false,
        Node::Flag(f) => f.flag_in(shard)?.is_some_and(|b| b.contains(id)),
        Node::AnyValue(f, codes) => {
            for &c in codes {
                if f.value_in(shard, c)?.is_some_and(|b| b.contains(id)) {
                    return Ok(true);
                }
            }
            false
        }
        Node::AllValues(f, codes) => {
            for &c in codes {
                if !f.value_in(shard, c)?.is_some_and(|b| b.contains(id)) {
                    return Ok(false);
                }
            }
            true
        }
        Node::Exists(f) => f.value_of(id)?.is_some(),
        Node::Compare(f, op, c) => numeric_value(f, id)?.is_some_and(|v| op.holds(v, *c)),
        Node::Between(f, lo, hi) => numeric_value(f, id)?.is_some_and(|v| *lo <= v && v <= *hi),
        Node::Ids(ids) => ids.contains(id),
        Node::And { pos, neg } => {
            for p in pos {
                if !contains(p, snap, id)? {
                    return Ok(false);
                }
            }
            for n in neg {
                if contains(n, snap, id)? {
                    return Ok(false);
                }
            }
            true
        }
        Node::Or(xs) => {
            for x in xs {
                if contains(x, snap, id)? {
                    return Ok(true);
                }
            }
            false
        }
        Node::Xor(xs) => {
            let mut odd = false;
            for x in xs {
                odd ^= contains(x, snap, id)?;
            }
            odd
        }
        Node::Not(x) => id < snap.users() && !contains(x, snap, id)?,
        Node::Did(d) => d.contains(snap, id)?,
    })
}

fn numeric_value(f: &FieldRef<'_>, id: u32) -> Result<Option<i64>> {
    use crate::table::Value;
    Ok(match f.value_of(id)? {
        Some(Value::Int(v)) | Some(Value::Timestamp(v)) | Some(Value::Decimal { units: v, .. }) => {
            Some(v)
        }
        _ => None,
    })
}
