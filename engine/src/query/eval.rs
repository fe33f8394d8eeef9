//! Evaluation of a planned expression on one shard: as a bitmap, as a count, or for one user.
//!
//! Leaves borrow zero-copy views from the segments ([`Bm::Borrowed`]); only operators allocate.
//! `AND` evaluates its sparsest operand, then every further operand *within* the running result
//! ([`eval_within`]): a BSI comparison, an `OR` or a `NOT` below an `AND` never computes more
//! than the users still in play. It stops as soon as the running result is empty, and its last
//! step uses a count-only kernel (`and_cardinality`) when only a count is wanted.

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
        Node::And { pos, neg } => {
            let mut acc = intersect(pos, s, None)?;
            for n in neg {
                if acc.is_empty() {
                    break;
                }
                let drop = eval_within(n, s, &acc)?;
                acc.andnot_inplace(&drop);
            }
            Cow::Owned(acc)
        }
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

/// Operands of an `AND`, sparsest first: stored leaves by their exact size in this shard, other
/// nodes by their catalog estimate scaled to the shard.
fn ordered<'a, 's>(pos: &'a [Node<'s>], s: &Shard<'s>) -> Vec<&'a Node<'s>> {
    let scale = s.len() as f64 / users(s).max(1) as f64;
    let mut v: Vec<(u64, &Node<'s>)> = pos
        .iter()
        .map(|n| {
            let local = match n {
                Node::Flag(f) => f
                    .flag_in(s.shard)
                    .ok()
                    .map(|b| b.map_or(0, |b| b.cardinality())),
                Node::AnyValue(f, codes) => codes
                    .iter()
                    .map(|&c| {
                        f.value_in(s.shard, c)
                            .ok()
                            .map(|b| b.map_or(0, |b| b.cardinality()))
                    })
                    .sum::<Option<u64>>(),
                _ => None,
            };
            (
                local.unwrap_or_else(|| (n.estimate(users(s)) as f64 * scale) as u64),
                n,
            )
        })
        .collect();
    v.sort_by_key(|e| e.0);
    v.into_iter().map(|e| e.1).collect()
}

/// Intersection of `pos`, sparsest first, stopping early on empty. With `skip_last`, leaves the
/// last (densest) operand out and returns it for a count-only final step.
fn intersect<'a, 's>(
    pos: &'a [Node<'s>],
    s: &Shard<'s>,
    skip_last: Option<&mut Option<&'a Node<'s>>>,
) -> Result<Bitmap> {
    let mut order = ordered(pos, s);
    if let Some(slot) = skip_last {
        *slot = order.pop();
    }
    let Some((first, rest)) = order.split_first() else {
        return Ok(s.all());
    };
    let mut acc = eval(first, s)?.into_owned();
    for n in rest {
        if acc.is_empty() {
            break;
        }
        acc = eval_within(n, s, &acc)?;
    }
    Ok(acc)
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
        Node::Compare(f, op, c) => bsi(f, s)?
            .map(|b| b.compare_in(*op, *c, Some(within)))
            .unwrap_or_default(),
        Node::Between(f, lo, hi) => bsi(f, s)?
            .map(|b| b.between_in(*lo, *hi, Some(within)))
            .unwrap_or_default(),
        Node::Ids(ids) => within.and(ids),
        Node::And { pos, neg } => {
            let mut acc = within.clone();
            for p in ordered(pos, s) {
                if acc.is_empty() {
                    return Ok(acc);
                }
                acc = eval_within(p, s, &acc)?;
            }
            for n in neg {
                if acc.is_empty() {
                    break;
                }
                let drop = eval_within(n, s, &acc)?;
                acc.andnot_inplace(&drop);
            }
            acc
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

/// `|node AND within|`, with a count-only kernel for stored leaves.
fn count_within<'s>(node: &Node<'s>, s: &Shard<'s>, within: &Bitmap) -> Result<u64> {
    match stored(node, s)? {
        Some(leaf) => Ok(leaf.map(|b| within.and_cardinality(b)).unwrap_or(0)),
        None => Ok(eval_within(node, s, within)?.cardinality()),
    }
}

/// The number of users of `node` in the shard, materializing as little as possible.
pub(crate) fn count<'s>(node: &Node<'s>, s: &Shard<'s>) -> Result<u64> {
    Ok(match node {
        Node::All => s.len(),
        Node::Empty => 0,
        Node::And { pos, neg } => {
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
                let mut last = None;
                let acc = intersect(pos, s, Some(&mut last))?;
                let last = last.expect("AND has operands");
                if acc.is_empty() {
                    return Ok(0);
                }
                count_within(last, s, &acc)?
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
            } else {
                let mut acc = intersect(pos, s, None)?;
                let (last, rest) = neg.split_last().expect("non-empty");
                for n in rest {
                    if acc.is_empty() {
                        return Ok(0);
                    }
                    let drop = eval_within(n, s, &acc)?;
                    acc.andnot_inplace(&drop);
                }
                if acc.is_empty() {
                    return Ok(0);
                }
                acc.cardinality() - count_within(last, s, &acc)?
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
