//! Crowd analysis: breakdowns, over-indexing tags, numeric distributions and aggregates,
//! overlaps and samples — all exact, computed from bitmaps at one snapshot.
//!
//! Shares and TGI: a group's *share* is its count divided by the crowd's size; its *base share*
//! the same in the base population (the whole table, or another crowd); `TGI = share / base
//! share × 100` (100 = as common as in the base; >100 over-indexed). A group absent from the
//! base has no TGI (`None`).

use std::collections::HashMap;
use std::sync::Arc;

use croaring::Bitmap;
use rayon::prelude::*;

use crate::behaviour::dense::Dense;
use crate::bitmap::portable::{BLOCK_HALVES, Directory};
use crate::catalog::FieldKind;
use crate::error::{Error, Result};
use crate::query::Crowd;
use crate::storage::segment::NULL_CODE;
use crate::table::{CodeColumn, FieldRef, TableSnapshot};

/// Reading the forward-index entries of the crowd costs about as much as intersecting the crowd
/// with flag bitmaps holding this many times as many memberships: the forward index is read
/// when the crowd's entries are fewer than this share of the candidate flags' memberships
/// (measured with the `query/top_20_of_1000_tags_by_tgi` benchmark: at a crowd of 9% of the
/// users, reading its rows took two thirds of the time of the bitmaps).
const FORWARD_BREAK_EVEN: f64 = 0.125;

/// How `top_values` counts flags in the crowd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagCounting {
    /// Per shard, whichever of the two is cheaper for the crowd's size.
    Auto,
    /// Read the crowd members' forward-index rows.
    #[cfg_attr(not(test), allow(dead_code))]
    Forward,
    /// Intersect the crowd with every flag's bitmap.
    #[cfg_attr(not(test), allow(dead_code))]
    Bitmaps,
}

/// Group counts over all users, computed once per snapshot and dimension list. A snapshot never
/// changes, so reusing them is exact; a new snapshot starts empty.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    base_groups: parking_lot::Mutex<HashMap<Vec<String>, Arc<GroupCounts>>>,
}

/// Counts per combination of value codes (a [`Counts`] slot), and the population they were
/// taken over.
type GroupCounts = (HashMap<u64, u64>, u64);

/// Enum dimensions with more values than this are read from their code column in a shard that
/// has one (each of their values is a sparse bitmap the crowd would be intersected with); the
/// others split the crowd by their value bitmaps (few, dense values: cheap bitset intersections).
const COLUMN_ABOVE: usize = 8;

/// Most groups `group_count` may hold before it refuses (combinations of up to 3 dimensions).
pub const MAX_GROUPS: usize = 1_000_000;

/// One row of [`Crowd::group_count`].
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// One value per dimension, in the order the dimensions were given.
    pub values: Vec<String>,
    /// Crowd members in the group.
    pub count: u64,
    /// `count / crowd size`.
    pub share: f64,
    /// Base members in the group.
    pub base_count: u64,
    /// `base_count / base size`.
    pub base_share: f64,
    /// `share / base_share × 100`; `None` when the group is absent from the base.
    pub tgi: Option<f64>,
}

/// How [`Crowd::top_values`] orders its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopOrder {
    /// Most members of the crowd first.
    Count,
    /// Highest share of the crowd first (same order as count, kept for clarity in APIs).
    Share,
    /// Most over-indexed first.
    Tgi,
}

/// One row of [`Crowd::top_values`].
#[derive(Debug, Clone, PartialEq)]
pub struct TopRow {
    /// The field's path.
    pub path: String,
    /// The value (`None` for a flag).
    pub value: Option<String>,
    /// Crowd members having it.
    pub count: u64,
    /// `count / crowd size`.
    pub share: f64,
    /// Share in the crowd over share among all users, × 100.
    pub tgi: Option<f64>,
}

/// How [`Crowd::distribution`] cuts a numeric field into buckets.
#[derive(Debug, Clone, PartialEq)]
pub enum Buckets {
    /// Explicit ascending boundaries `b0 < b1 < … < bn` in stored units: buckets
    /// `(-∞, b0)`, `[b0, b1)`, …, `[bn, +∞)`; empty outer buckets are omitted.
    Bounds(Vec<i64>),
    /// `n` buckets of equal width between the crowd's minimum and maximum.
    EqualWidth(u32),
    /// `n` buckets holding about the same number of users.
    Quantiles(u32),
}

/// One bucket of a distribution: users with `lower <= value < upper` (`None` = unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRow {
    /// Inclusive lower bound.
    pub lower: Option<i64>,
    /// Exclusive upper bound.
    pub upper: Option<i64>,
    /// Users in the bucket.
    pub count: u64,
}

/// Aggregates of a numeric field over a crowd, in stored units.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Members with a value.
    pub count: u64,
    /// Sum of their values.
    pub sum: i128,
    /// `sum / count`.
    pub avg: Option<f64>,
    /// Smallest value.
    pub min: Option<i64>,
    /// Largest value.
    pub max: Option<i64>,
    /// `(p, value)` for each requested percentile `p` in `[0, 100]` (nearest rank).
    pub percentiles: Vec<(f64, i64)>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn tgi(share: f64, base_share: f64) -> Option<f64> {
    (base_share > 0.0).then(|| share / base_share * 100.0)
}

/// A dimension of a breakdown: an enum or set field's values.
struct Dim<'s> {
    field: FieldRef<'s>,
}

impl<'s> Dim<'s> {
    fn new(snap: &'s TableSnapshot, path: &str, as_of: Option<&'s str>) -> Result<Self> {
        let field = snap.field_at(path, as_of)?;
        if !field.kind().has_values() {
            return Err(Error::KindMismatch {
                path: path.to_owned(),
                actual: field.kind().name(),
                expected: "an enum or set field (a dimension)",
            });
        }
        Ok(Self { field })
    }
    fn values(&self) -> usize {
        self.field.values().len()
    }
}

/// Group counts in one shard: one slot per combination of value codes, `code_0 + n_0 × (code_1 +
/// n_1 × …)` for dimensions with `n_i` values.
enum Counts {
    /// Every combination has a slot (few combinations).
    Dense(Vec<u64>),
    /// Only combinations met have a slot.
    Sparse(HashMap<u64, u64>),
}

/// Combinations up to which [`Counts::Dense`] is used.
const DENSE_GROUPS: usize = 1 << 16;

impl Counts {
    fn new(combos: usize) -> Self {
        if combos <= DENSE_GROUPS {
            Counts::Dense(vec![0; combos])
        } else {
            Counts::Sparse(HashMap::new())
        }
    }

    fn add(&mut self, slot: u64, n: u64) {
        match self {
            Counts::Dense(v) => v[slot as usize] += n,
            Counts::Sparse(m) => *m.entry(slot).or_insert(0) += n,
        }
    }

    fn merge(mut self, other: Counts) -> Counts {
        match (&mut self, other) {
            (Counts::Dense(a), Counts::Dense(b)) => {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
            }
            (_, other) => {
                for (slot, n) in other.into_nonzero() {
                    self.add(slot, n);
                }
            }
        }
        self
    }

    /// `(slot, count)` of every combination with members.
    fn into_nonzero(self) -> Box<dyn Iterator<Item = (u64, u64)>> {
        match self {
            Counts::Dense(v) => Box::new(
                v.into_iter()
                    .enumerate()
                    .filter(|e| e.1 > 0)
                    .map(|(i, n)| (i as u64, n)),
            ),
            Counts::Sparse(m) => Box::new(m.into_iter().filter(|e| e.1 > 0)),
        }
    }
}

/// The slot multiplier of each dimension in [`Counts`].
fn strides(dims: &[Dim<'_>]) -> Vec<u64> {
    let mut out = Vec::with_capacity(dims.len());
    let mut stride = 1u64;
    for d in dims {
        out.push(stride);
        stride *= d.values().max(1) as u64;
    }
    out
}

/// A dimension read from its code column in one shard.
struct ColumnDim<'a, 's> {
    dim: &'a Dim<'s>,
    column: CodeColumn<'s>,
    stride: u64,
}

/// Members of `crowd` handed out in batches (CRoaring's bulk iteration).
fn for_each_batch(crowd: &Bitmap, mut f: impl FnMut(&[u32]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u32; 1024];
    let mut it = crowd.iter();
    loop {
        let n = it.next_many(&mut buf);
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n])?;
    }
}

/// Adds to `out`, at `base` plus each member's combination of codes, the members of `crowd`,
/// reading their rows in the code columns of `dims`: the cost follows the crowd's size.
fn count_by_columns(
    dims: &[ColumnDim<'_, '_>],
    crowd: &Bitmap,
    base: u64,
    out: &mut Counts,
) -> Result<()> {
    /// The slot of a member lacking a value of some dimension.
    const NONE: u64 = u64::MAX;
    if let [d] = dims {
        return count_one_column(d, crowd, base, out);
    }
    let mut slots = vec![0u64; 1024];
    for_each_batch(crowd, |ids| {
        let slots = &mut slots[..ids.len()];
        slots.fill(base);
        for d in dims {
            let limit = d.dim.values() as u32;
            let mut bad = false;
            for (slot, &id) in slots.iter_mut().zip(ids) {
                let code = d.column.code_of(id);
                bad |= code >= limit && code != NULL_CODE;
                *slot = if *slot == NONE || code >= limit {
                    NONE
                } else {
                    *slot + code as u64 * d.stride
                };
            }
            if bad {
                return Err(Error::corrupt(
                    d.column.path,
                    format!("a value code of `{}` is out of range", d.dim.field.path()),
                ));
            }
        }
        match out {
            Counts::Dense(v) => {
                for &slot in slots.iter().filter(|&&s| s != NONE) {
                    v[slot as usize] += 1;
                }
            }
            Counts::Sparse(_) => {
                for &slot in slots.iter().filter(|&&s| s != NONE) {
                    out.add(slot, 1);
                }
            }
        }
        Ok(())
    })
}

/// [`count_by_columns`] of one dimension: each member's code counted straight into one of
/// four interleaved tables, so that members in a row with the same code (most of them, for a
/// skewed dimension) do not wait for each other's increment.
fn count_one_column(
    d: &ColumnDim<'_, '_>,
    crowd: &Bitmap,
    base: u64,
    out: &mut Counts,
) -> Result<()> {
    const LANES: usize = 4;
    let values = d.dim.values();
    let mut lanes = vec![0u64; LANES * values];
    let mut bad = false;
    let mut add = |lane: usize, id: u32| {
        let code = d.column.code_of(id) as usize;
        if code < values {
            lanes[lane * values + code] += 1;
        } else {
            bad |= code != NULL_CODE as usize;
        }
    };
    for_each_batch(crowd, |ids| {
        let (quads, rest) = ids.as_chunks::<LANES>();
        for quad in quads {
            for (lane, &id) in quad.iter().enumerate() {
                add(lane, id);
            }
        }
        for &id in rest {
            add(0, id);
        }
        Ok(())
    })?;
    if bad {
        return Err(Error::corrupt(
            d.column.path,
            format!("a value code of `{}` is out of range", d.dim.field.path()),
        ));
    }
    for code in 0..values {
        let n: u64 = (0..LANES).map(|l| lanes[l * values + code]).sum();
        if n > 0 {
            out.add(base + code as u64 * d.stride, n);
        }
    }
    Ok(())
}

/// Crowds with at least this many members in a shard are counted against stored bitmaps as
/// a bit vector ([`and_count_dense`]): an array container's members are then looked up in
/// place, where CRoaring would merge two sorted lists (of a crowd this large, mostly bitsets
/// anyway) one container pair at a time.
const DENSE_CROWD: u64 = 1 << 14;

/// The bits of `crowd` (ids of shard `shard`) as half-words, for [`and_count_dense`].
fn crowd_halves(crowd: &Bitmap, shard: u32) -> Vec<u32> {
    Dense::from_bitmap(crowd, shard)
        .words
        .iter()
        .flat_map(|&w| [w as u32, (w >> 32) as u32])
        .collect()
}

/// Members of the stored bitmap `dir` (ids of shard `shard`) set in `halves`, the shard's bits
/// from [`crowd_halves`].
fn and_count_dense(dir: &Directory<'_>, halves: &[u32], shard: u32) -> u64 {
    dir.in_shard(shard)
        .map(|(block, c)| {
            let at = block * BLOCK_HALVES;
            c.and_count(&halves[at..at + BLOCK_HALVES])
        })
        .sum()
}

/// Adds to `counts[code]` the users of `members` (ids of the shard) holding value `code` of
/// enum field `f`, read from its code column in the shard.
fn count_codes(
    f: &FieldRef<'_>,
    column: &CodeColumn<'_>,
    members: &[u32],
    counts: &mut [u64],
) -> Result<()> {
    let mut bad = false;
    for &id in members {
        let code = column.code_of(id);
        match counts.get_mut(code as usize) {
            Some(n) => *n += 1,
            None => bad |= code != NULL_CODE,
        }
    }
    if bad {
        return Err(Error::corrupt(
            column.path,
            format!("a value code of `{}` is out of range", f.path()),
        ));
    }
    Ok(())
}

/// Counts, per combination of value codes, the users of `crowd` in shard `shard`.
///
/// Dimensions with few values split the crowd by their value bitmaps, those with many values
/// first (each of their sparse bitmaps is probed against the crowd); the last of them is
/// counted with the count-only kernel. Enum dimensions with many values are read instead from
/// their code columns, for the members of each part: their cost follows the crowd's size.
fn group_shard(
    dims: &[Dim<'_>],
    strides: &[u64],
    column_above: usize,
    crowd: &Bitmap,
    shard: u32,
    out: &mut Counts,
) -> Result<()> {
    #[allow(clippy::too_many_arguments)]
    fn go(
        dims: &[Dim<'_>],
        strides: &[u64],
        split: &[usize],
        columns: &[ColumnDim<'_, '_>],
        acc: &Bitmap,
        shard: u32,
        slot: u64,
        out: &mut Counts,
    ) -> Result<()> {
        let Some((&d, rest)) = split.split_first() else {
            return count_by_columns(columns, acc, slot, out);
        };
        let dim = &dims[d];
        for code in 0..dim.values() as u32 {
            let Some(v) = dim.field.value_in(shard, code)? else {
                continue;
            };
            let slot = slot + code as u64 * strides[d];
            if rest.is_empty() && columns.is_empty() {
                let n = acc.and_cardinality(v);
                if n > 0 {
                    out.add(slot, n);
                }
            } else {
                let next = acc.and(v);
                if !next.is_empty() {
                    go(dims, strides, rest, columns, &next, shard, slot, out)?;
                }
            }
        }
        Ok(())
    }
    if crowd.is_empty() {
        return Ok(());
    }
    let mut split = Vec::new();
    let mut columns = Vec::new();
    for (d, dim) in dims.iter().enumerate() {
        let column = if dim.field.kind() == FieldKind::Enum && dim.values() > column_above {
            dim.field.stored_codes_in(shard)?
        } else {
            None
        };
        match column {
            Some(column) => columns.push(ColumnDim {
                dim,
                column,
                stride: strides[d],
            }),
            None => split.push(d),
        }
    }
    split.sort_by_key(|&d| std::cmp::Reverse(dims[d].values()));
    go(dims, strides, &split, &columns, crowd, shard, 0, out)
}

impl<'s> Crowd<'s> {
    pub(crate) fn per_shard<T: Send>(
        &self,
        f: impl Fn(u32, Bitmap) -> Result<T> + Sync + Send,
    ) -> Result<Vec<T>> {
        (0..self.snap.shards())
            .into_par_iter()
            .map(|s| f(s, self.shard_bitmap(s)?))
            .collect()
    }

    /// Counts of the crowd per combination of 1 to 3 enum/set dimensions, with each group's share
    /// and TGI against `base` (all users when `None`), largest first, at most `limit` rows.
    pub fn group_count(
        &self,
        dims: &[&str],
        base: Option<&Crowd<'s>>,
        limit: usize,
    ) -> Result<Vec<GroupRow>> {
        self.group_count_with(dims, base, limit, COLUMN_ABOVE)
    }

    /// [`Crowd::group_count`], reading enum dimensions with more than `column_above` values
    /// from their code columns.
    pub(crate) fn group_count_with(
        &self,
        dims: &[&str],
        base: Option<&Crowd<'s>>,
        limit: usize,
        column_above: usize,
    ) -> Result<Vec<GroupRow>> {
        if dims.is_empty() || dims.len() > 3 {
            return Err(Error::InvalidArgument(format!(
                "group by takes 1 to 3 dimensions, got {}",
                dims.len()
            )));
        }
        let dims: Vec<Dim<'s>> = dims
            .iter()
            .map(|d| Dim::new(self.snap, d, self.as_of))
            .collect::<Result<_>>()?;
        let combos: usize = dims.iter().map(Dim::values).product();
        if combos > MAX_GROUPS {
            return Err(Error::LimitExceeded(format!(
                "{combos} possible groups exceed the limit of {MAX_GROUPS}; group by fewer or smaller dimensions"
            )));
        }
        let strides = strides(&dims);
        let group = |c: &Crowd<'s>| -> Result<GroupCounts> {
            let parts = c.per_shard(|s, b| {
                let mut counts = Counts::new(combos);
                group_shard(&dims, &strides, column_above, &b, s, &mut counts)?;
                Ok((counts, b.cardinality()))
            })?;
            let (counts, total) = parts
                .into_iter()
                .reduce(|(a, t), (b, t2)| (a.merge(b), t + t2))
                .unwrap_or((Counts::new(0), 0));
            Ok((counts.into_nonzero().collect(), total))
        };
        let base_counts: Arc<GroupCounts> = match base {
            Some(b) => Arc::new(group(b)?),
            None => {
                // Keyed by each dimension's path and version label.
                let key: Vec<String> = dims
                    .iter()
                    .map(|d| format!("{}@{}", d.field.path(), d.field.version().label))
                    .collect();
                let cached = self.snap.memo.base_groups.lock().get(&key).cloned();
                match cached {
                    Some(c) => c,
                    None => {
                        let all = Crowd {
                            snap: self.snap,
                            root: crate::query::plan::Node::All,
                            as_of: self.as_of,
                        };
                        let c = Arc::new(group(&all)?);
                        self.snap.memo.base_groups.lock().insert(key, c.clone());
                        c
                    }
                }
            }
        };
        let (groups, total) = group(self)?;
        let (base_map, base_total) = (&base_counts.0, base_counts.1);
        let mut rows: Vec<GroupRow> = groups
            .into_iter()
            .map(|(slot, count)| {
                let base_count = base_map.get(&slot).copied().unwrap_or(0);
                let share = ratio(count, total);
                let base_share = ratio(base_count, base_total);
                GroupRow {
                    values: dims
                        .iter()
                        .zip(&strides)
                        .map(|(d, &stride)| {
                            let code = slot / stride % d.values().max(1) as u64;
                            d.field.values()[code as usize].clone()
                        })
                        .collect(),
                    count,
                    share,
                    base_count,
                    base_share,
                    tgi: tgi(share, base_share),
                }
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.values.cmp(&b.values)));
        rows.truncate(limit);
        Ok(rows)
    }

    /// The `k` tags (flags, and values of enum/set fields) under `prefix` most common in the
    /// crowd, or most over-indexed against all users. Exact: every candidate is counted.
    pub fn top_values(&self, prefix: &str, k: usize, order: TopOrder) -> Result<Vec<TopRow>> {
        self.top_values_with(prefix, k, order, FlagCounting::Auto, COLUMN_ABOVE)
    }

    /// [`Crowd::top_values`] counting flags as `counting` says, and the values of enum fields
    /// with more than `column_above` values from their code columns.
    pub(crate) fn top_values_with(
        &self,
        prefix: &str,
        k: usize,
        order: TopOrder,
        counting: FlagCounting,
        column_above: usize,
    ) -> Result<Vec<TopRow>> {
        let snap = self.snap;
        let prefix = prefix.trim_end_matches('/');
        let mut candidates: Vec<(FieldRef<'s>, Option<u32>)> = Vec::new();
        for meta in snap.fields() {
            let p = meta.spec.path.as_str();
            let under = prefix.is_empty()
                || p == prefix
                || p.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'));
            if !under {
                continue;
            }
            let Ok(f) = snap.field_at(p, self.as_of) else {
                continue;
            };
            match f.kind() {
                FieldKind::Flag => candidates.push((f, None)),
                FieldKind::Enum | FieldKind::Set => {
                    candidates.extend((0..f.values().len() as u32).map(|c| (f, Some(c))));
                }
                _ => {}
            }
        }
        if candidates.is_empty() {
            return Err(Error::FieldNotFound {
                path: prefix.to_owned(),
                suggestion: crate::expr::closest(
                    prefix,
                    snap.fields().map(|m| m.spec.path.as_str()),
                )
                .map(str::to_owned),
            });
        }
        // Flags are counted from the forward index when the crowd is small enough that reading
        // its members' rows beats intersecting every flag's bitmap.
        let flag_slot: HashMap<usize, usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, (_, code))| code.is_none())
            .map(|(i, (f, _))| (f.index(), i))
            .collect();
        let flag_members: u64 = candidates
            .iter()
            .filter(|(_, code)| code.is_none())
            .map(|(f, _)| f.version().users)
            .sum();
        let all_users = snap.users().max(1) as f64;
        // Enum fields with many values, by their first candidate: counted from their code
        // columns, one read per member instead of one intersection per value.
        let by_column: Vec<(FieldRef<'s>, usize)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, (f, code))| {
                *code == Some(0) && f.kind() == FieldKind::Enum && f.values().len() > column_above
            })
            .map(|(i, (f, _))| (*f, i))
            .collect();
        let per_shard: Vec<(Vec<u64>, u64)> = self.per_shard(|s, crowd| {
            let mut inside = vec![0u64; candidates.len()];
            let size = crowd.cardinality();
            if size == 0 {
                return Ok((inside, 0));
            }
            let mut counted = vec![false; candidates.len()];
            // The crowd's ids, listed once for every column and the forward index.
            let mut members: Option<Vec<u32>> = None;
            for &(f, first) in &by_column {
                if let Some(column) = f.stored_codes_in(s)? {
                    let n = f.values().len();
                    let ids = members.get_or_insert_with(|| crowd.to_vec());
                    count_codes(&f, &column, ids, &mut inside[first..first + n])?;
                    counted[first..first + n].fill(true);
                }
            }
            // The forward index describes current versions only.
            let forward = self.as_of.is_none()
                && match counting {
                    FlagCounting::Auto => {
                        // The candidates' memberships in this shard, by catalog statistics.
                        let in_shard = snap.shard_range(s).len() as f64 / all_users;
                        (size as f64) * snap.flags_per_user(s)
                            < flag_members as f64 * in_shard * FORWARD_BREAK_EVEN
                    }
                    FlagCounting::Forward => true,
                    FlagCounting::Bitmaps => false,
                };
            if forward {
                snap.count_flags_forward(
                    s,
                    &crowd,
                    members.get_or_insert_with(|| crowd.to_vec()),
                    &|fi| flag_slot.get(&fi).copied(),
                    &mut inside,
                )?;
            }
            // A crowd with many members in the shard is spread into a bit vector once, and
            // each stored candidate counted against it container by container, in place.
            let dense = (size >= DENSE_CROWD).then(|| crowd_halves(&crowd, s));
            for (i, (f, code)) in candidates.iter().enumerate() {
                if counted[i] || (code.is_none() && forward) {
                    continue;
                }
                if let Some(dense) = &dense
                    && let Some(stored) = f.stored_bytes_in(s, *code)?
                {
                    let parsed = stored.map(Directory::parse);
                    match parsed {
                        None => continue,
                        Some(Ok(dir)) => {
                            inside[i] = and_count_dense(&dir, dense, s);
                            continue;
                        }
                        // CRoaring's own reading of the bytes below reports the damage.
                        Some(Err(_)) => {}
                    }
                }
                let b = match code {
                    None => f.flag_in(s)?,
                    Some(c) => f.value_in(s, *c)?,
                };
                if let Some(b) = b {
                    inside[i] = crowd.and_cardinality(b);
                }
            }
            Ok((inside, size))
        })?;
        let mut inside = vec![0u64; candidates.len()];
        let mut total = 0;
        for (i2, t) in per_shard {
            for j in 0..candidates.len() {
                inside[j] += i2[j];
            }
            total += t;
        }
        // Population counts: flags from the catalog, values from their bitmaps.
        let mut all = vec![0u64; candidates.len()];
        for (i, (f, code)) in candidates.iter().enumerate() {
            all[i] = match code {
                None => f.version().users,
                Some(c) => {
                    let mut n = 0;
                    for s in 0..f.shards() {
                        n += f.value_in(s, *c)?.map_or(0, |b| b.cardinality());
                    }
                    n
                }
            };
        }
        let users = snap.users() as u64;
        let mut rows: Vec<TopRow> = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| inside[*i] > 0)
            .map(|(i, (f, code))| {
                let share = ratio(inside[i], total);
                TopRow {
                    path: f.path().to_owned(),
                    value: code.map(|c| f.values()[c as usize].clone()),
                    count: inside[i],
                    share,
                    tgi: tgi(share, ratio(all[i], users)),
                }
            })
            .collect();
        match order {
            TopOrder::Count | TopOrder::Share => {
                rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)))
            }
            TopOrder::Tgi => rows.sort_by(|a, b| {
                b.tgi
                    .unwrap_or(0.0)
                    .total_cmp(&a.tgi.unwrap_or(0.0))
                    .then_with(|| b.count.cmp(&a.count))
                    .then_with(|| a.path.cmp(&b.path))
            }),
        }
        rows.truncate(k);
        Ok(rows)
    }

    fn numeric(&self, path: &str) -> Result<FieldRef<'s>> {
        let f = self.snap.field_at(path, self.as_of)?;
        if !f.kind().is_numeric() {
            return Err(Error::KindMismatch {
                path: path.to_owned(),
                actual: f.kind().name(),
                expected: "a numeric field",
            });
        }
        Ok(f)
    }

    /// Count, sum, average, minimum, maximum and percentiles of a numeric field over the crowd.
    pub fn aggregate(&self, path: &str, percentiles: &[f64]) -> Result<Aggregate> {
        let f = self.numeric(path)?;
        if let Some(p) = percentiles.iter().find(|p| !(0.0..=100.0).contains(*p)) {
            return Err(Error::InvalidArgument(format!(
                "percentile {p} is outside 0..=100"
            )));
        }
        let crowd = self.bitmap()?;
        let (count, sum) = f.count_sum(Some(&crowd))?;
        let mut out = Aggregate {
            count,
            sum,
            avg: (count > 0).then(|| sum as f64 / count as f64),
            min: f.extreme(Some(&crowd), false)?,
            max: f.extreme(Some(&crowd), true)?,
            percentiles: Vec::with_capacity(percentiles.len()),
        };
        for &p in percentiles {
            if count == 0 {
                break;
            }
            let rank = ((p / 100.0 * count as f64).ceil() as u64).clamp(1, count) - 1;
            if let Some(v) = kth(&f, &crowd, rank)? {
                out.percentiles.push((p, v));
            }
        }
        Ok(out)
    }

    /// The numeric distribution of `path` over the crowd.
    pub fn distribution(&self, path: &str, buckets: &Buckets) -> Result<Vec<BucketRow>> {
        let f = self.numeric(path)?;
        // Derived bounds need the whole crowd; explicit ones are counted shard by shard.
        let whole = || self.bitmap();
        let bounds: Vec<i64> = match buckets {
            Buckets::Bounds(b) => {
                if b.is_empty() || b.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::InvalidArgument(
                        "bucket bounds must be non-empty and strictly ascending".into(),
                    ));
                }
                b.clone()
            }
            Buckets::EqualWidth(n) | Buckets::Quantiles(n) if *n == 0 || *n > 10_000 => {
                return Err(Error::InvalidArgument(format!(
                    "bucket count {n} must be 1 to 10000"
                )));
            }
            Buckets::EqualWidth(n) => {
                let crowd = whole()?;
                let (Some(lo), Some(hi)) = (
                    f.extreme(Some(&crowd), false)?,
                    f.extreme(Some(&crowd), true)?,
                ) else {
                    return Ok(Vec::new());
                };
                // At most `n` buckets of equal integer width covering [lo, hi]; fewer when the
                // range holds fewer than `n` distinct values, never one past the maximum.
                let span = hi as i128 - lo as i128 + 1;
                let width = (span + *n as i128 - 1) / *n as i128;
                let mut b: Vec<i64> = Vec::with_capacity(*n as usize + 1);
                let mut edge = lo as i128;
                while edge <= hi as i128 {
                    b.push(edge as i64);
                    edge += width;
                }
                b.push(edge.min(i64::MAX as i128) as i64);
                b
            }
            Buckets::Quantiles(n) => {
                let crowd = whole()?;
                let (count, _) = f.count_sum(Some(&crowd))?;
                if count == 0 {
                    return Ok(Vec::new());
                }
                let mut b = Vec::with_capacity(*n as usize + 1);
                for i in 0..*n as u64 {
                    if let Some(v) = kth(&f, &crowd, i * count / *n as u64)? {
                        b.push(v);
                    }
                }
                if let Some(max) = f.extreme(Some(&crowd), true)? {
                    b.push(max.saturating_add(1));
                }
                b.dedup();
                b
            }
        };
        // below[i] = members with a value < bounds[i]: per shard in parallel, every bound in
        // one pass over the shard's slices (see `BsiRef::count_below`). A crowd that is one
        // stored bitmap is read in place.
        let nobody = || (vec![0; bounds.len()], 0);
        let parts: Vec<(Vec<u64>, u64)> = (0..self.snap.shards())
            .into_par_iter()
            .map(|s| {
                let Some(bsi) = f.bsi_in(s)? else {
                    return Ok(nobody());
                };
                match self.stored_in(s)? {
                    Some(None) => return Ok(nobody()),
                    Some(Some(stored)) => {
                        if let Some(counts) = bsi.count_below_stored(&bounds, stored) {
                            return Ok(counts);
                        }
                    }
                    None => {}
                }
                Ok(bsi.count_below(&bounds, Some(&self.shard_bitmap(s)?)))
            })
            .collect::<Result<_>>()?;
        let mut below = vec![0u64; bounds.len()];
        let mut total = 0u64;
        for (b, t) in parts {
            total += t;
            for (acc, x) in below.iter_mut().zip(b) {
                *acc += x;
            }
        }
        let mut rows = Vec::with_capacity(bounds.len() + 1);
        if below[0] > 0 {
            rows.push(BucketRow {
                lower: None,
                upper: Some(bounds[0]),
                count: below[0],
            });
        }
        for i in 0..bounds.len() - 1 {
            rows.push(BucketRow {
                lower: Some(bounds[i]),
                upper: Some(bounds[i + 1]),
                count: below[i + 1] - below[i],
            });
        }
        let last = total - below[bounds.len() - 1];
        if last > 0 {
            rows.push(BucketRow {
                lower: bounds.last().copied(),
                upper: None,
                count: last,
            });
        }
        Ok(rows)
    }

    /// A deterministic sample of `n` members (all of them when the crowd is smaller): the same
    /// seed on the same snapshot gives the same users. The crowd is counted shard by shard, then
    /// the shards holding a chosen rank are read again for its member (an `AND` of stored
    /// bitmaps and comparisons block by block, without building its bitmap).
    pub fn sample(&self, n: usize, seed: u64) -> Result<Vec<crate::ids::Key>> {
        let counts: Vec<u64> = (0..self.snap.shards())
            .into_par_iter()
            .map(|s| {
                crate::query::eval::count(
                    &self.root,
                    &crate::query::eval::Shard {
                        snap: self.snap,
                        shard: s,
                    },
                )
            })
            .collect::<Result<_>>()?;
        let total: u64 = counts.iter().sum();
        let ranks = pick_ranks(total, n as u64, seed);
        // The shards holding a chosen rank: (shard, rank of its first member, its ranks).
        let mut picks = Vec::new();
        let (mut first, mut ri) = (0u64, 0usize);
        for (s, &c) in counts.iter().enumerate() {
            let from = ri;
            while ri < ranks.len() && ranks[ri] < first + c {
                ri += 1;
            }
            if ri > from {
                picks.push((s as u32, first, &ranks[from..ri]));
            }
            first += c;
        }
        // The shards are read on whichever core is free; their ids come back in shard order,
        // so the sample is the same on any number of cores.
        let per_shard: Vec<Vec<u32>> = picks
            .into_par_iter()
            .map(|(s, first, ranks)| {
                let local: Vec<u64> = ranks.iter().map(|&r| r - first).collect();
                let mut ids = Vec::with_capacity(local.len());
                let shard = crate::query::eval::Shard {
                    snap: self.snap,
                    shard: s,
                };
                crate::query::eval::select(&self.root, &shard, &local, &mut ids)?;
                Ok(ids)
            })
            .collect::<Result<_>>()?;
        let ids: Vec<u32> = per_shard.into_iter().flatten().collect();
        let mut keys = Vec::with_capacity(ids.len());
        self.snap
            .for_each_key(ids, |_, k| keys.push(k.to_owned()))?;
        Ok(keys)
    }
}

/// The `rank`-th smallest value over `crowd`, across shards.
fn kth(f: &FieldRef<'_>, crowd: &Bitmap, rank: u64) -> Result<Option<i64>> {
    // Merge per-shard BSIs by binary search on the value: count users <= mid.
    let (Some(lo), Some(hi)) = (
        f.extreme(Some(crowd), false)?,
        f.extreme(Some(crowd), true)?,
    ) else {
        return Ok(None);
    };
    if f.shards() <= 1 {
        return Ok(match f.bsi_in(0)? {
            Some(b) => b.kth_smallest(Some(crowd), rank),
            None => None,
        });
    }
    let (mut lo, mut hi) = (lo as i128, hi as i128);
    while lo < hi {
        let mid = lo + (hi - lo).div_euclid(2);
        let n = f
            .compare(crate::expr::CmpOp::Le, mid as i64)?
            .and_cardinality(crowd);
        if n > rank { hi = mid } else { lo = mid + 1 }
    }
    Ok(Some(lo as i64))
}

/// `n` distinct ranks in `0..total`, sorted, chosen by Floyd's algorithm with a seeded RNG.
pub(crate) fn pick_ranks(total: u64, n: u64, seed: u64) -> Vec<u64> {
    if n >= total {
        return (0..total).collect();
    }
    let mut rng = SplitMix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut chosen = std::collections::BTreeSet::new();
    for j in (total - n)..total {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2^-64 · n).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// The N×N matrix of intersection counts of `crowds` (row-major), shard-parallel.
pub fn overlap(snap: &TableSnapshot, crowds: &[Crowd<'_>]) -> Result<Vec<Vec<u64>>> {
    let n = crowds.len();
    let per_shard: Vec<Vec<u64>> = (0..snap.shards())
        .into_par_iter()
        .map(|s| {
            let bms: Vec<Bitmap> = crowds
                .iter()
                .map(|c| c.shard_bitmap(s))
                .collect::<Result<_>>()?;
            let mut m = vec![0u64; n * n];
            for i in 0..n {
                m[i * n + i] = bms[i].cardinality();
                for j in i + 1..n {
                    let c = bms[i].and_cardinality(&bms[j]);
                    m[i * n + j] = c;
                    m[j * n + i] = c;
                }
            }
            Ok(m)
        })
        .collect::<Result<_>>()?;
    let mut total = vec![0u64; n * n];
    for m in per_shard {
        for (t, v) in total.iter_mut().zip(m) {
            *t += v;
        }
    }
    Ok(total
        .chunks(n.max(1))
        .map(|r| r.to_vec())
        .collect::<Vec<_>>()
        .into_iter()
        .take(n)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn dense_and_sparse_counts_merge_alike() {
        let adds = [(3u64, 2u64), (0, 1), (3, 5), (9, 1), (7, 0)];
        let fill = |mut c: Counts| {
            for &(slot, n) in &adds {
                c.add(slot, n);
            }
            c
        };
        let sorted = |c: Counts| {
            let mut v: Vec<(u64, u64)> = c.into_nonzero().collect();
            v.sort_unstable();
            v
        };
        let want = vec![(0, 1), (3, 7), (9, 1)];
        let dense = || fill(Counts::Dense(vec![0; 10]));
        let sparse = || fill(Counts::Sparse(Default::default()));
        assert_eq!(sorted(dense()), want);
        assert_eq!(sorted(sparse()), want);
        let twice = vec![(0, 2), (3, 14), (9, 2)];
        assert_eq!(sorted(dense().merge(dense())), twice);
        assert_eq!(sorted(dense().merge(sparse())), twice);
        assert_eq!(sorted(sparse().merge(dense())), twice);
        assert_eq!(sorted(sparse().merge(sparse())), twice);
    }
}
