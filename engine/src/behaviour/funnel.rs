//! Funnels: how many users go through ordered steps within a window of days.
//!
//! # Semantics (exact at day granularity)
//! A user *reaches step i* (1-based) when there are days `d1 <= d2 <= … <= di` such that
//! - the user did step `j`'s event on day `dj`, for every `j <= i`;
//! - `d1` is in the query's range of start days `[first, last]`;
//! - `di - d1 <= window` (the window counts days *after* the first step).
//!
//! Several steps may fall on the same day, in step order. This is what ClickHouse's
//! `windowFunnel(window)(day, e = s1, e = s2, …)` computes on `Date` timestamps with rows per
//! (user, event, day), when the first condition also requires `day BETWEEN first AND last`:
//! it sorts a user's events by (timestamp, step) and keeps, per step, the latest start that
//! reached it, which reaches a step exactly when some chain as above exists. Counts are of
//! users reaching *at least* step i, so they never grow from one step to the next.
//!
//! # Evaluation
//! Per shard, for each start day `s`: the users who did step 1 on `s` (within the crowd) are
//! level 1; then for each day `t` from `s` to `s + window`, level `i` gains the users of level
//! `i-1` who did step `i` on `t` (levels are updated in step order, so one day can advance
//! several steps). A user's best level over all starts is the answer; shards add up.

use croaring::Bitmap;
use rayon::prelude::*;

use super::{DayRange, Split, event_field};
use crate::error::{Error, Result};
use crate::query::Crowd;
use crate::table::FieldRef;

/// The most steps a funnel may have.
pub const MAX_FUNNEL_STEPS: usize = 32;
/// The longest window, in days.
pub const MAX_FUNNEL_WINDOW: u32 = 3_660;

/// A funnel question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelQuery {
    /// The event of each step, in order (2 to [`MAX_FUNNEL_STEPS`]).
    pub steps: Vec<String>,
    /// Days the last step may come after the first.
    pub window: u32,
    /// The days the first step may happen on.
    pub starts: DayRange,
    /// Optional enum or set dimension to break the funnel down by.
    pub split: Option<String>,
}

/// The funnel of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelRow {
    /// The split group's value (`None` without a split).
    pub group: Option<String>,
    /// `reached[i]`: users reaching at least step `i + 1`.
    pub reached: Vec<u64>,
}

impl FunnelRow {
    /// Share of the previous step's users reaching step `i` (1 for the first step with users).
    pub fn conversion(&self, i: usize) -> f64 {
        match i {
            0 => f64::from(u8::from(self.reached.first().is_some_and(|&n| n > 0))),
            _ => ratio(self.reached[i], self.reached[i - 1]),
        }
    }

    /// Share of the first step's users reaching step `i`.
    pub fn overall(&self, i: usize) -> f64 {
        ratio(self.reached[i], self.reached[0])
    }

    /// Users of step `i` who did not reach step `i + 1` (0 for the last step).
    pub fn drop_off(&self, i: usize) -> u64 {
        match self.reached.get(i + 1) {
            Some(&next) => self.reached[i] - next,
            None => 0,
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl<'s> Crowd<'s> {
    /// The funnel of this crowd (see the module documentation for the semantics).
    pub fn funnel(&self, q: &FunnelQuery) -> Result<Vec<FunnelRow>> {
        let snap = self.snap;
        if q.steps.len() < 2 || q.steps.len() > MAX_FUNNEL_STEPS {
            return Err(Error::InvalidArgument(format!(
                "a funnel has 2 to {MAX_FUNNEL_STEPS} steps, got {}",
                q.steps.len()
            )));
        }
        if q.window > MAX_FUNNEL_WINDOW {
            return Err(Error::InvalidArgument(format!(
                "a funnel window is at most {MAX_FUNNEL_WINDOW} days, got {}",
                q.window
            )));
        }
        if q.starts.is_empty() {
            return Err(Error::InvalidArgument(
                "the range of start days ends before it starts".into(),
            ));
        }
        let steps: Vec<FieldRef<'s>> = q
            .steps
            .iter()
            .map(|e| event_field(snap, e))
            .collect::<Result<_>>()?;
        let split = Split::new(snap, q.split.as_deref(), self.as_of)?;
        let names = split.names();
        let start_days: Vec<i32> = steps[0]
            .event_days()
            .into_iter()
            .filter(|&d| q.starts.contains(d))
            .collect();
        let per_shard: Vec<Vec<Vec<u64>>> = (0..snap.shards())
            .into_par_iter()
            .map(|shard| -> Result<Vec<Vec<u64>>> {
                let crowd = self.shard_bitmap(shard)?;
                let reached = reached_in(&steps, shard, &start_days, q.window, &crowd)?;
                split
                    .groups(shard, &crowd)?
                    .iter()
                    .map(|g| Ok(reached.iter().map(|r| r.and_cardinality(g)).collect()))
                    .collect()
            })
            .collect::<Result<_>>()?;
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(gi, group)| FunnelRow {
                group,
                reached: (0..steps.len())
                    .map(|i| per_shard.iter().map(|s| s[gi][i]).sum())
                    .collect(),
            })
            .collect())
    }
}

/// Per step, the users of `crowd` in `shard` reaching it.
fn reached_in(
    steps: &[FieldRef<'_>],
    shard: u32,
    start_days: &[i32],
    window: u32,
    crowd: &Bitmap,
) -> Result<Vec<Bitmap>> {
    let k = steps.len();
    let mut reached = vec![Bitmap::new(); k];
    // Days each later step has data for, to skip days without any.
    let step_days: Vec<Vec<i32>> = steps.iter().map(FieldRef::event_days).collect();
    for &s in start_days {
        let Some(first) = steps[0].event_day_in(shard, s)? else {
            continue;
        };
        let mut levels = vec![Bitmap::new(); k];
        levels[0] = first.and(crowd);
        if levels[0].is_empty() {
            continue;
        }
        let end = s.saturating_add(window as i32);
        for t in s..=end {
            for i in 1..k {
                if levels[i - 1].is_empty() || step_days[i].binary_search(&t).is_err() {
                    continue;
                }
                let Some(did) = steps[i].event_day_in(shard, t)? else {
                    continue;
                };
                // Users of the previous level not yet at this one who did step i on day t.
                let mut gain = levels[i - 1].andnot(&levels[i]);
                gain.and_inplace(did);
                if !gain.is_empty() {
                    levels[i].or_inplace(&gain);
                }
            }
        }
        for (r, l) in reached.iter_mut().zip(&levels) {
            r.or_inplace(l);
        }
    }
    Ok(reached)
}
