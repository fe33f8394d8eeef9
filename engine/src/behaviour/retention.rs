//! Retention: of the users who did a *cohort event* in a period, how many did a *return event*
//! 0, 1, 2, … periods later.
//!
//! Semantics (exact, at day granularity):
//! - cohorts are the periods (day, week or month) starting in `[first, last]`; cohort `c` is
//!   the crowd's users who did the cohort event on some day of period `c` (a user can be in
//!   several cohorts);
//! - the cell (`c`, `k`) counts the users of cohort `c` who did the return event on some day of
//!   the `k`-th period after `c` (`k = 0` is the cohort's own period), for `k = 0..=periods`;
//! - cells whose period starts after the reference day (the newest event day, by default) are
//!   not observable yet and are left out of the row, so rows of recent cohorts are shorter;
//! - with a split dimension, each cohort row is computed per value of the dimension.
//!
//! Each shard computes its cohort and return bitmaps once per period and counts cells with the
//! count-only kernel `and_cardinality`; shards run in parallel and their counts add up. A
//! one-day period is its stored day bitmap, used in place (never copied), and the cohorts of
//! every user, unsplit, are counted without an AND with the crowd.

use std::borrow::Cow;

use croaring::Bitmap;
use rayon::prelude::*;

use super::predicate::{one_day_blobs, union_in};
use super::{DayRange, Period, Split, event_field};
use crate::error::{Error, Result};
use crate::query::Crowd;
use crate::query::plan::Node;
use crate::table::FieldRef;

/// A retention question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionQuery {
    /// The event that puts a user in a cohort.
    pub cohort_event: String,
    /// The event that counts as coming back.
    pub return_event: String,
    /// Cohorts are the periods starting from `first`'s period to `last`'s.
    pub cohorts: DayRange,
    /// The unit of cohorts and offsets.
    pub period: Period,
    /// Offsets computed: `0..=periods`.
    pub periods: u32,
    /// Optional enum or set dimension to split every cohort by.
    pub split: Option<String>,
    /// The last observable day (`None`: the table's reference day).
    pub reference: Option<i32>,
}

/// One cohort (of one split group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRow {
    /// The split group's value (`None` without a split).
    pub group: Option<String>,
    /// First day of the cohort's period.
    pub cohort: i32,
    /// Users in the cohort.
    pub size: u64,
    /// `retained[k]`: users of the cohort who came back `k` periods later; only observable
    /// periods are present.
    pub retained: Vec<u64>,
}

impl RetentionRow {
    /// `retained[k] / size` (0 for an empty cohort).
    pub fn rate(&self, k: usize) -> f64 {
        match (self.retained.get(k), self.size) {
            (Some(&r), s) if s > 0 => r as f64 / s as f64,
            _ => 0.0,
        }
    }
}

/// The most cohorts × offsets cells one query computes.
pub const MAX_RETENTION_CELLS: u64 = 1_000_000;

impl<'s> Crowd<'s> {
    /// The retention matrix of this crowd (see the module documentation for the semantics).
    pub fn retention(&self, q: &RetentionQuery) -> Result<Vec<RetentionRow>> {
        let snap = self.snap;
        let cohort_event = event_field(snap, &q.cohort_event)?;
        let return_event = event_field(snap, &q.return_event)?;
        if q.cohorts.is_empty() {
            return Err(Error::InvalidArgument(
                "the cohort range ends before it starts".into(),
            ));
        }
        let Some(reference) = q.reference.or_else(|| snap.reference_day()) else {
            return Ok(Vec::new());
        };
        // Cohort period starts.
        let mut starts = Vec::new();
        let mut p = q.period.start_of(q.cohorts.first);
        while p <= q.cohorts.last && p <= reference {
            starts.push(p);
            p = q.period.next(p);
        }
        let cells = (starts.len() as u64).saturating_mul(q.periods as u64 + 1);
        if cells > MAX_RETENTION_CELLS {
            return Err(Error::LimitExceeded(format!(
                "{cells} retention cells exceed the limit of {MAX_RETENTION_CELLS}; ask for fewer cohorts or periods"
            )));
        }
        let split = Split::new(snap, q.split.as_deref(), self.as_of)?;
        let names = split.names();
        // Observable offsets per cohort.
        let offsets: Vec<Vec<i32>> = starts
            .iter()
            .map(|&c| {
                (0..=q.periods)
                    .map(|k| q.period.advance(c, k))
                    .take_while(|&start| start <= reference)
                    .collect()
            })
            .collect();
        let cohort_days = cohort_event.event_days();
        let return_days = return_event.event_days();
        let days_of = |all: &[i32], start: i32| -> Vec<i32> {
            let end = q.period.next(start);
            all.iter()
                .copied()
                .filter(|&d| d >= start && d < end && d <= reference)
                .collect()
        };
        // Distinct return periods, each one union per shard; the cells name them by position.
        let mut return_periods: Vec<i32> = offsets.iter().flatten().copied().collect();
        return_periods.sort_unstable();
        return_periods.dedup();
        let cell_periods: Vec<Vec<usize>> = offsets
            .iter()
            .map(|row| {
                row.iter()
                    .map(|p| return_periods.partition_point(|q| q < p))
                    .collect()
            })
            .collect();
        let return_period_days: Vec<Vec<i32>> = return_periods
            .iter()
            .map(|&p| days_of(return_days, p))
            .collect();
        let cohort_period_days: Vec<Vec<i32>> =
            starts.iter().map(|&c| days_of(cohort_days, c)).collect();

        // Every user, unsplit: cohorts need no AND with the crowd.
        let whole = matches!(self.root, Node::All) && split.is_whole();
        let per_shard: Vec<Vec<(u64, Vec<u64>)>> = (0..snap.shards())
            .into_par_iter()
            .map(|shard| -> Result<Vec<(u64, Vec<u64>)>> {
                let groups = if whole {
                    Vec::new()
                } else {
                    split.groups(shard, &self.shard_bitmap(shard)?)?
                };
                let returns = period_bitmaps(&return_event, shard, &return_period_days)?;
                let cohorts = period_bitmaps(&cohort_event, shard, &cohort_period_days)?;
                let mut out = Vec::with_capacity(starts.len() * groups.len().max(1));
                for (ci, cohort) in cohorts.iter().enumerate() {
                    let mut cell = |members: &Bitmap| {
                        let size = members.cardinality();
                        let retained = cell_periods[ci]
                            .iter()
                            .map(|&i| {
                                if size == 0 {
                                    0
                                } else {
                                    members.and_cardinality(&returns[i])
                                }
                            })
                            .collect();
                        out.push((size, retained));
                    };
                    if whole {
                        cell(cohort);
                    }
                    for g in &groups {
                        cell(&cohort.and(g));
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;

        let mut rows = Vec::with_capacity(starts.len() * names.len());
        for (ci, &c) in starts.iter().enumerate() {
            for (gi, name) in names.iter().enumerate() {
                let slot = ci * names.len() + gi;
                let mut size = 0;
                let mut retained = vec![0u64; offsets[ci].len()];
                for shard in &per_shard {
                    size += shard[slot].0;
                    for (acc, x) in retained.iter_mut().zip(&shard[slot].1) {
                        *acc += x;
                    }
                }
                rows.push(RetentionRow {
                    group: name.clone(),
                    cohort: c,
                    size,
                    retained,
                });
            }
        }
        Ok(rows)
    }
}

/// The users of `event` in `shard` on the days of each period (`days[p]` for period `p`): a
/// one-day period's stored bitmap in place (the stored days found together), a longer
/// period's union.
fn period_bitmaps<'s>(
    event: &FieldRef<'s>,
    shard: u32,
    days: &[Vec<i32>],
) -> Result<Vec<Cow<'s, Bitmap>>> {
    let mut single = one_day_blobs(event, shard, days)?;
    days.iter()
        .map(|d| {
            Ok(match d.as_slice() {
                [] => Cow::Owned(Bitmap::new()),
                [_] => single
                    .next()
                    .flatten()
                    .map_or_else(|| Cow::Owned(Bitmap::new()), |b| Cow::Borrowed(b.bitmap)),
                many => Cow::Owned(union_in(event, shard, many, None)?),
            })
        })
        .collect()
}
