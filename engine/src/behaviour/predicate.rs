//! `did(...)` in crowd expressions, evaluated on one shard's day bitmaps.
//!
//! The planner resolves a `did` to the event's stored days inside its window and one of two
//! tests: *at least once* (the union of the day bitmaps) or a *count* (`op n times` / `on op n
//! days`), which sums per-user counts over the window in a dense per-shard counter. `first_did`
//! and `last_did` are planned as unions of days and differences of unions (see
//! `query::plan`), so they need nothing here.

use croaring::Bitmap;

use crate::error::Result;
use crate::expr::{CmpOp, Measure};
use crate::table::{FieldRef, TableSnapshot};

/// What a planned `did(...)` tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DidTest {
    /// Did it at least once on one of the days.
    Any,
    /// The number of times (or days) over the days satisfies `op n`.
    Count { op: CmpOp, n: u64, measure: Measure },
}

/// A resolved `did(...)`: an event, the stored days of its window, and the test.
#[derive(Debug, Clone)]
pub(crate) struct DidNode<'s> {
    pub(crate) event: FieldRef<'s>,
    /// Days of the window the event holds, ascending.
    pub(crate) days: Vec<i32>,
    pub(crate) test: DidTest,
}

impl<'s> DidNode<'s> {
    /// Whether users who did nothing in the window pass the test (`did(e, w) < 2`).
    pub(crate) fn zero_passes(&self) -> bool {
        match self.test {
            DidTest::Any => false,
            DidTest::Count { op, n, .. } => holds(op, 0, n),
        }
    }

    /// Catalog estimate of the number of users.
    pub(crate) fn estimate(&self, users: u64) -> u64 {
        if self.zero_passes() {
            users
        } else {
            let stored = self.event.event_days().len().max(1) as u64;
            let share = (self.days.len() as u64).min(stored);
            (self.event.version().users * share / stored).min(users)
        }
    }

    /// A one-line description for `explain`.
    pub(crate) fn label(&self) -> String {
        let span = match (self.days.first(), self.days.last()) {
            (Some(&a), Some(&b)) => format!(
                "{} day(s) {}..{}",
                self.days.len(),
                super::format_day(a),
                super::format_day(b)
            ),
            _ => "no stored day".to_owned(),
        };
        match self.test {
            DidTest::Any => format!("did {} on {span}", self.event.path()),
            DidTest::Count { op, n, measure } => format!(
                "did {} {} {n} {} over {span}",
                self.event.path(),
                op.symbol(),
                match measure {
                    Measure::Times => "times",
                    Measure::Days => "days",
                }
            ),
        }
    }

    /// The users of the shard passing the test, among `within` when given.
    pub(crate) fn eval_in(
        &self,
        snap: &TableSnapshot,
        shard: u32,
        within: Option<&Bitmap>,
    ) -> Result<Bitmap> {
        let union = union_in(&self.event, shard, &self.days, within)?;
        let DidTest::Count { op, n, measure } = self.test else {
            return Ok(union);
        };
        // `>= 1` is the union itself; no counting needed.
        if matches!((op, n), (CmpOp::Ge, 1) | (CmpOp::Gt, 0) | (CmpOp::Ne, 0)) {
            return Ok(union);
        }
        let range = snap.shard_range(shard);
        let counts = ShardCounts::count(&self.event, shard, range, &self.days, measure, within)?;
        let mut passing = Vec::new();
        for id in union.iter() {
            if holds(op, counts.get(id), n) {
                passing.push(id);
            }
        }
        let passing = Bitmap::of(&passing);
        if !holds(op, 0, n) {
            return Ok(passing);
        }
        // Users without a single occurrence pass too: everyone in play minus the failing.
        let mut out = match within {
            Some(w) => w.clone(),
            None => snap.all_in(shard),
        };
        let mut failing = union;
        failing.andnot_inplace(&passing);
        out.andnot_inplace(&failing);
        Ok(out)
    }

    /// Whether user `id` passes the test, reading only that user's bits.
    pub(crate) fn contains(&self, snap: &TableSnapshot, id: u32) -> Result<bool> {
        if id >= snap.users() {
            return Ok(false);
        }
        let shard = id >> crate::SHARD_BITS;
        let mut total = 0u64;
        for &day in &self.days {
            if !self
                .event
                .event_day_in(shard, day)?
                .is_some_and(|b| b.contains(id))
            {
                continue;
            }
            match self.test {
                DidTest::Any => return Ok(true),
                DidTest::Count {
                    measure: Measure::Days,
                    ..
                } => total += 1,
                DidTest::Count {
                    measure: Measure::Times,
                    ..
                } => {
                    total += 1;
                    for (bit, slice) in self.event.event_count_slices_in(shard, day)? {
                        if slice.contains(id) {
                            total += 1u64 << bit;
                        }
                    }
                }
            }
        }
        Ok(match self.test {
            DidTest::Any => false,
            DidTest::Count { op, n, .. } => holds(op, total, n),
        })
    }
}

/// `a op b` on counts.
pub(crate) fn holds(op: CmpOp, a: u64, b: u64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// Users of the shard who did `event` on one of `days`, among `within` when given.
pub(crate) fn union_in(
    event: &FieldRef<'_>,
    shard: u32,
    days: &[i32],
    within: Option<&Bitmap>,
) -> Result<Bitmap> {
    let mut parts = Vec::with_capacity(days.len());
    for &day in days {
        if let Some(b) = event.event_day_in(shard, day)? {
            parts.push(b);
        }
    }
    let mut out = Bitmap::fast_or(&parts);
    if let Some(w) = within {
        out.and_inplace(w);
    }
    Ok(out)
}

/// Calls `f` with the members of `b` in ascending batches (bulk reads, not one call per id).
pub(crate) fn for_each_batch(b: &Bitmap, mut f: impl FnMut(&[u32])) {
    let mut buf = [0u32; 1024];
    let mut it = b.iter();
    loop {
        let n = it.next_many(&mut buf);
        if n == 0 {
            break;
        }
        f(&buf[..n]);
    }
}

/// Per-user counts of one shard over a set of days: occurrences or active days.
pub(crate) struct ShardCounts {
    first: u32,
    counts: Vec<u32>,
}

impl ShardCounts {
    /// Counts, for every user of `range` (the shard's ids) in `within` (everyone when `None`),
    /// the times (or days) they did `event` on `days`.
    pub(crate) fn count(
        event: &FieldRef<'_>,
        shard: u32,
        range: std::ops::Range<u32>,
        days: &[i32],
        measure: Measure,
        within: Option<&Bitmap>,
    ) -> Result<Self> {
        let first = range.start;
        let mut counts = vec![0u32; (range.end - range.start) as usize];
        let mut add = |b: &Bitmap, weight: u32| {
            let mut bump = |ids: &[u32]| {
                for &id in ids {
                    if let Some(c) = counts.get_mut((id - first) as usize) {
                        *c = c.saturating_add(weight);
                    }
                }
            };
            match within {
                Some(w) => for_each_batch(&b.and(w), &mut bump),
                None => for_each_batch(b, &mut bump),
            }
        };
        for &day in days {
            let Some(members) = event.event_day_in(shard, day)? else {
                continue;
            };
            add(members, 1);
            if measure == Measure::Times {
                for (bit, slice) in event.event_count_slices_in(shard, day)? {
                    add(slice, 1u32.checked_shl(bit).unwrap_or(u32::MAX));
                }
            }
        }
        Ok(Self { first, counts })
    }

    /// The count of user `id` (0 outside the shard).
    pub(crate) fn get(&self, id: u32) -> u64 {
        id.checked_sub(self.first)
            .and_then(|i| self.counts.get(i as usize))
            .map_or(0, |&c| u64::from(c))
    }

    /// Every user's count, in id order from the shard's first id.
    pub(crate) fn all(&self) -> &[u32] {
        &self.counts
    }
}
