//! Frequency and activity of a crowd.
//!
//! - [`Crowd::frequency`]: how many users of the crowd did an event on exactly 1, 2, … days
//!   (or times) of a window — per container block of a shard, a bit-sliced counter (the bits
//!   of each user's count) summing the window's day bitmaps (and, for times, their count
//!   slices), restricted to the crowd, then split by its slices into the histogram; or, where
//!   every day's container of the block is an array, a byte per user incremented member by
//!   member; histograms add up.
//! - [`Crowd::active`]: users of the crowd who did an event in each day, week or month of a
//!   range (DAU/WAU/MAU series), from unions of day bitmaps counted with `and_cardinality`
//!   (a one-day period's stored bitmap in place; for everyone, a cardinality without the AND).

use std::collections::BTreeMap;

use croaring::Bitmap;
use rayon::prelude::*;

use super::dense::{BlockCounter, Dense};
use super::predicate::{one_day_blobs, union_in};
use super::{DayRange, Period, event_field};
use crate::bitmap::portable;
use crate::error::{Error, Result};
use crate::expr::Measure;
use crate::query::Crowd;
use crate::query::plan::Node;
use crate::table::EventBlob;

/// How often the users of a crowd did an event in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frequency {
    /// Users of the crowd.
    pub crowd: u64,
    /// `(n, users)`: users who did it exactly `n` times (or on `n` days), `n >= 1`, ascending.
    pub histogram: Vec<(u64, u64)>,
}

impl Frequency {
    /// Users of the crowd who never did it in the window.
    pub fn inactive(&self) -> u64 {
        self.crowd - self.histogram.iter().map(|e| e.1).sum::<u64>()
    }
}

/// Users active in one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveRow {
    /// First day of the period.
    pub period: i32,
    /// Users of the crowd who did the event on some day of the period.
    pub users: u64,
}

/// The most periods an activity series may have.
pub const MAX_ACTIVE_PERIODS: usize = 100_000;

impl<'s> Crowd<'s> {
    /// The histogram of how many times (or days) each user of the crowd did `event` in `days`.
    pub fn frequency(&self, event: &str, days: DayRange, measure: Measure) -> Result<Frequency> {
        let snap = self.snap;
        let event = event_field(snap, event)?;
        if days.is_empty() {
            return Err(Error::InvalidArgument(
                "the day range ends before it starts".into(),
            ));
        }
        let window: Vec<i32> = event
            .event_days()
            .iter()
            .copied()
            .filter(|&d| days.contains(d))
            .collect();
        let parts: Vec<(u64, BTreeMap<u64, u64>)> = (0..snap.shards())
            .into_par_iter()
            .map(|shard| -> Result<(u64, BTreeMap<u64, u64>)> {
                let crowd = self.shard_bitmap(shard)?;
                let mut hist = BTreeMap::new();
                if crowd.is_empty() || window.is_empty() {
                    return Ok((crowd.cardinality(), hist));
                }
                let within = Dense::from_bitmap(&crowd, shard);
                BlockCounter::histogram(&event, shard, &window, measure, Some(&within), &mut hist)?;
                Ok((crowd.cardinality(), hist))
            })
            .collect::<Result<_>>()?;
        let mut crowd = 0;
        let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
        for (n, h) in parts {
            crowd += n;
            for (k, v) in h {
                *hist.entry(k).or_insert(0) += v;
            }
        }
        Ok(Frequency {
            crowd,
            histogram: hist.into_iter().collect(),
        })
    }

    /// Users of the crowd who did `event` in each `period` overlapping `days` (periods are
    /// whole: a week that starts before `days.first` still counts all its days).
    pub fn active(&self, event: &str, days: DayRange, period: Period) -> Result<Vec<ActiveRow>> {
        let snap = self.snap;
        let event = event_field(snap, event)?;
        if days.is_empty() {
            return Err(Error::InvalidArgument(
                "the day range ends before it starts".into(),
            ));
        }
        let mut starts = Vec::new();
        let mut p = period.start_of(days.first);
        while p <= days.last {
            if starts.len() == MAX_ACTIVE_PERIODS {
                return Err(Error::LimitExceeded(format!(
                    "an activity series has at most {MAX_ACTIVE_PERIODS} periods"
                )));
            }
            starts.push(p);
            p = period.next(p);
        }
        let stored = event.event_days();
        let period_days: Vec<Vec<i32>> = starts
            .iter()
            .map(|&s| {
                let end = period.next(s);
                stored
                    .iter()
                    .copied()
                    .filter(|&d| d >= s && d < end)
                    .collect()
            })
            .collect();
        // When the crowd is everyone, a period's count is its union's cardinality; a one-day
        // period is the stored day bitmap itself, counted in place, never copied.
        let everyone = matches!(self.root, Node::All);
        let per_shard = |shard: u32| -> Result<Vec<u64>> {
            let crowd = if everyone {
                None
            } else {
                Some(self.shard_bitmap(shard)?)
            };
            if crowd.as_ref().is_some_and(Bitmap::is_empty) {
                return Ok(vec![0; period_days.len()]);
            }
            // A shard's day bitmaps hold ids of its existing users only (the loader and the
            // real-time path file every user under its own shard), so for everyone a day's
            // count is its bitmap's cardinality.
            let count = |b: &Bitmap| match &crowd {
                Some(c) => b.and_cardinality(c),
                None => b.cardinality(),
            };
            // A stored day's, read from its serialized header (one cache line).
            let count_day = |b: EventBlob<'_>| match &crowd {
                Some(_) => count(b.bitmap),
                None => portable::cardinality(b.bytes).unwrap_or_else(|| count(b.bitmap)),
            };
            // The one-day periods' bitmaps, found together.
            let mut single = one_day_blobs(&event, shard, &period_days)?;
            period_days
                .iter()
                .map(|d| {
                    Ok(match d.as_slice() {
                        [] => 0,
                        [_] => single.next().flatten().map_or(0, count_day),
                        days => count(&union_in(&event, shard, days, None)?),
                    })
                })
                .collect()
        };
        // Counting stored days for everyone reads only container headers: microseconds, less
        // than handing the shards to other threads costs. Anything else runs shard-parallel.
        let in_place = everyone && period_days.iter().all(|d| d.len() <= 1);
        let parts: Vec<Vec<u64>> = if in_place {
            (0..snap.shards()).map(per_shard).collect::<Result<_>>()?
        } else {
            (0..snap.shards())
                .into_par_iter()
                .map(per_shard)
                .collect::<Result<_>>()?
        };
        Ok(starts
            .iter()
            .enumerate()
            .map(|(i, &period)| ActiveRow {
                period,
                users: parts.iter().map(|p| p[i]).sum(),
            })
            .collect())
    }
}
