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
//! several steps). A user's best level over all starts is the answer; shards add up. The day
//! bitmaps are expanded into dense per-shard bit vectors once, and the levels of 4,096 users at
//! a time stay in L1 (see `reached_in`).

use croaring::Bitmap;
use rayon::prelude::*;

use super::dense::{Dense, WORDS};
use super::{DayRange, Split, event_field};
use crate::error::{Error, Result};
use crate::query::Crowd;
use crate::table::FieldRef;

/// The most steps a funnel may have.
pub const MAX_FUNNEL_STEPS: usize = 32;
/// The longest window, in days.
pub const MAX_FUNNEL_WINDOW: u32 = 3_660;
/// The most (step, stored day) pairs one funnel expands per shard (128 KiB each): bounds the
/// memory of a funnel over many steps and a long span of days.
pub const MAX_FUNNEL_STEP_DAYS: usize = 2_048;

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
            .iter()
            .copied()
            .filter(|&d| q.starts.contains(d))
            .collect();
        if let (Some(&first), Some(&last)) = (start_days.first(), start_days.last()) {
            let end = last.saturating_add(q.window as i32);
            let step_days: usize = steps
                .iter()
                .map(|s| {
                    s.event_days()
                        .iter()
                        .filter(|&&d| first <= d && d <= end)
                        .count()
                })
                .sum();
            if step_days > MAX_FUNNEL_STEP_DAYS {
                return Err(Error::LimitExceeded(format!(
                    "the funnel spans {step_days} (step, day) pairs, more than {MAX_FUNNEL_STEP_DAYS}; narrow the start days or the window, or use fewer steps"
                )));
            }
        }
        let per_shard: Vec<Vec<Vec<u64>>> = (0..snap.shards())
            .into_par_iter()
            .map(|shard| -> Result<Vec<Vec<u64>>> {
                let crowd = self.shard_bitmap(shard)?;
                let reached = reached_in(&steps, shard, &start_days, q.window, &crowd)?;
                if q.split.is_none() {
                    return Ok(vec![reached.iter().map(Dense::count).collect()]);
                }
                split
                    .groups(shard, &crowd)?
                    .iter()
                    .map(|g| {
                        let g = Dense::from_bitmap(g, shard);
                        Ok(reached.iter().map(|r| r.and_count(&g)).collect())
                    })
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

/// Per step, the users of `crowd` in `shard` reaching it, as dense bit vectors.
///
/// Every (step, day) bitmap the funnel can touch is expanded once into a dense vector; the
/// chains are then followed 4,096 users at a time (64 words, in L1), start by start, so the
/// inner loop is a vectorized pass over 64 words.
fn reached_in(
    steps: &[FieldRef<'_>],
    shard: u32,
    start_days: &[i32],
    window: u32,
    crowd: &Bitmap,
) -> Result<Vec<Dense>> {
    const CHUNK: usize = 64;
    let k = steps.len();
    let mut reached: Vec<Dense> = (0..k).map(|_| Dense::zero()).collect();
    let (Some(&first_day), Some(&last_start)) = (start_days.first(), start_days.last()) else {
        return Ok(reached);
    };
    let last_day = last_start.saturating_add(window as i32);
    let span = (last_day - first_day + 1) as usize;
    // days[i][t - first_day]: step i's users on day t (None: nobody).
    let mut days: Vec<Vec<Option<Dense>>> = Vec::with_capacity(k);
    for (i, step) in steps.iter().enumerate() {
        let mut row = Vec::with_capacity(span);
        for t in first_day..=last_day {
            // Step 1 only matters on start days.
            let needed = i > 0 || start_days.binary_search(&t).is_ok();
            let blob = if needed {
                step.event_day_blob_in(shard, t)?
            } else {
                None
            };
            row.push(match blob {
                Some(blob) => {
                    let mut d = Dense::zero();
                    d.or_portable(blob.bytes, shard, blob.path)?;
                    Some(d)
                }
                None => None,
            });
        }
        days.push(row);
    }
    let crowd = Dense::from_bitmap(crowd, shard);
    let zero = [0u64; CHUNK];
    let chunk_of = |d: &Option<Dense>, at: usize| -> [u64; CHUNK] {
        match d {
            Some(d) => d.words[at..at + CHUNK].try_into().expect("chunk"),
            None => zero,
        }
    };
    let mut levels = vec![[0u64; CHUNK]; k];
    let mut best = vec![[0u64; CHUNK]; k];
    for at in (0..WORDS).step_by(CHUNK) {
        let c: [u64; CHUNK] = crowd.words[at..at + CHUNK].try_into().expect("chunk");
        if c.iter().all(|&x| x == 0) {
            continue;
        }
        for b in best.iter_mut() {
            *b = zero;
        }
        for &s in start_days {
            let si = (s - first_day) as usize;
            let mut l0 = chunk_of(&days[0][si], at);
            // Users who already reached the last step from another start cannot do better.
            let done = &best[k - 1];
            for j in 0..CHUNK {
                l0[j] &= c[j] & !done[j];
            }
            if l0.iter().all(|&x| x == 0) {
                continue;
            }
            levels[0] = l0;
            for l in levels[1..].iter_mut() {
                *l = zero;
            }
            // live[i]: level i holds somebody, so step i + 1 can gain from it.
            let mut live = [false; MAX_FUNNEL_STEPS];
            live[0] = true;
            let end = (si + window as usize).min(span - 1);
            // Days outer, steps inner (in order): one day can advance several steps.
            #[allow(clippy::needless_range_loop)]
            for t in si..=end {
                for i in 1..k {
                    if !live[i - 1] {
                        break;
                    }
                    let Some(d) = &days[i][t] else { continue };
                    let did: &[u64; CHUNK] = d.words[at..at + CHUNK].try_into().expect("chunk");
                    let (lower, upper) = levels.split_at_mut(i);
                    let prev = &lower[i - 1];
                    let mut any = 0u64;
                    for j in 0..CHUNK {
                        upper[0][j] |= prev[j] & did[j];
                        any |= upper[0][j];
                    }
                    live[i] = any != 0;
                }
            }
            for (b, l) in best.iter_mut().zip(&levels) {
                for j in 0..CHUNK {
                    b[j] |= l[j];
                }
            }
        }
        for (r, b) in reached.iter_mut().zip(&best) {
            r.words[at..at + CHUNK].copy_from_slice(b);
        }
    }
    Ok(reached)
}
