//! `did(...)` in crowd expressions, evaluated on one shard's day bitmaps.
//!
//! The planner resolves a `did` to the event's stored days inside its window and one of two
//! tests: *at least once* (the union of the day bitmaps) or a *count* (`op n times` / `on op n
//! days`), which sums per-user counts over the window in a bit-sliced counter over dense
//! per-shard bit vectors (see `dense`). `first_did`
//! and `last_did` are planned as unions of days and differences of unions (see
//! `query::plan`), so they need nothing here.

use croaring::Bitmap;

use super::dense::{BlockCounter, Counts, Dense};
use crate::bitmap::portable::BLOCK_WORDS;
use crate::error::Result;
use crate::expr::{CmpOp, Measure};
use crate::table::{EventBlob, FieldRef, TableSnapshot};

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
        let (op, n, measure) = match self.test {
            // `>= 1` is the union itself; no counting needed.
            DidTest::Any
            | DidTest::Count {
                op: CmpOp::Ge,
                n: 1,
                ..
            }
            | DidTest::Count {
                op: CmpOp::Gt | CmpOp::Ne,
                n: 0,
                ..
            } => return union_in(&self.event, shard, &self.days, within),
            DidTest::Count { op, n, measure } => (op, n, measure),
        };
        let within_bits = within.map(|w| Dense::from_bitmap(w, shard));
        let (mut passing, mut nonzero) = (Dense::zero(), Dense::zero());
        BlockCounter::count(
            &self.event,
            shard,
            &self.days,
            measure,
            within_bits.as_ref(),
            // A count capped at 255 compares with `n` below 255 as the true count does.
            n < u64::from(u8::MAX),
            |block, mask, counts| {
                let words = block * BLOCK_WORDS..(block + 1) * BLOCK_WORDS;
                let (passing, nonzero) =
                    (&mut passing.words[words.clone()], &mut nonzero.words[words]);
                match counts {
                    Counts::Bytes(b) => b.drain_passing(mask, op, n, passing, nonzero),
                    Counts::Sliced(c) => {
                        c.passing_into(op, n, passing);
                        c.nonzero_into(nonzero);
                    }
                }
            },
        )?;
        let passing = passing.to_bitmap(shard);
        if !holds(op, 0, n) {
            return Ok(passing);
        }
        // Users without a single occurrence pass too: everyone in play minus the failing.
        let mut out = match within {
            Some(w) => w.clone(),
            None => snap.all_in(shard),
        };
        let mut failing = nonzero.to_bitmap(shard);
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

/// The stored days of the one-day periods among `periods` (each period's days), in period
/// order, found together in one walk over the shard's stored days (`None`: nobody that day).
pub(crate) fn one_day_blobs<'s>(
    event: &FieldRef<'s>,
    shard: u32,
    periods: &[Vec<i32>],
) -> Result<std::vec::IntoIter<Option<EventBlob<'s>>>> {
    let days: Vec<i32> = periods
        .iter()
        .filter_map(|d| match d.as_slice() {
            &[day] => Some(day),
            _ => None,
        })
        .collect();
    Ok(event.event_days_in(shard, &days)?.into_iter())
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
