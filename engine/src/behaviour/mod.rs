//! Behaviour analysis: events stored as per-day bitmaps, and the analyses built on them.
//!
//! An *event* field (`FieldKind::Event`) stores, for every day it has data for, the bitmap of
//! the users who did it that day (segment role `EventDay`, key = the day) and the bit-sliced
//! index of how many times beyond the first each of them did it (role `EventCount`). Days are
//! numbered from 1970-01-01 in the table's time zone (a fixed UTC offset, see
//! [`Table::set_time_options`](crate::Table::set_time_options)).
//!
//! On top of those bitmaps:
//! - crowd predicates (`did(...)`, `first_did(...)`, `last_did(...)`), evaluated per shard by
//!   [`predicate`];
//! - [`retention`]: cohort × period matrices;
//! - [`funnel`]: ordered steps within a window of days;
//! - [`frequency`]: how many days or times users did an event, and active users over time.
//!
//! Windows are resolved against a *reference day*: by default the newest day any event of the
//! table holds (the data date of a T+1 pipeline), or one given with the query.

pub(crate) mod dense;
pub mod frequency;
pub mod funnel;
mod latest;
pub(crate) mod predicate;
pub mod retention;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The largest day number an event may be stored under (year 185,000 or so).
pub const MAX_DAY: i32 = (1 << 26) - 1;

/// Checks that `day` can be stored: `0..=MAX_DAY` (1970-01-01 onwards).
pub(crate) fn check_day(day: i32) -> Result<()> {
    if (0..=MAX_DAY).contains(&day) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "event day {day} is outside 0..={MAX_DAY} (days since 1970-01-01)"
        )))
    }
}

/// The day (since 1970-01-01) that instant `ms` falls on at UTC offset `utc_offset_minutes`.
pub fn day_of_ms(ms: i64, utc_offset_minutes: i32) -> i32 {
    let local = ms.saturating_add(i64::from(utc_offset_minutes) * 60_000);
    local
        .div_euclid(DAY_MS)
        .clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Day number of a civil date.
pub fn day_of_date(year: i32, month: u8, day: u8) -> i32 {
    crate::query::plan::days_from_civil(year as i64, month as i64, day as i64) as i32
}

/// The civil date `(year, month, day)` of a day number.
pub fn date_of_day(day: i32) -> (i32, u8, u8) {
    let (y, m, d) = crate::calendar::civil_from_days(i64::from(day));
    (y as i32, m as u8, d as u8)
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i32) -> String {
    let (y, m, d) = date_of_day(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<i32> {
    let d = crate::expr::Date::parse_iso(text)?;
    Some(day_of_date(d.year(), d.month(), d.day()))
}

/// An inclusive range of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DayRange {
    /// First day.
    pub first: i32,
    /// Last day (inclusive); `last < first` is an empty range.
    pub last: i32,
}

impl DayRange {
    /// The days `first..=last`.
    pub fn new(first: i32, last: i32) -> Self {
        Self { first, last }
    }

    /// Whether `day` is in the range.
    pub fn contains(&self, day: i32) -> bool {
        self.first <= day && day <= self.last
    }

    /// Number of days (0 when empty).
    pub fn len(&self) -> u32 {
        (self.last as i64 - self.first as i64 + 1).max(0) as u32
    }

    /// Whether the range holds no day.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A calendar period: the unit of retention offsets, cohorts and activity series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One day.
    Day,
    /// A week, Monday to Sunday (ISO 8601).
    Week,
    /// A calendar month.
    Month,
}

impl Period {
    /// The first day of the period holding `day`.
    pub fn start_of(self, day: i32) -> i32 {
        match self {
            Period::Day => day,
            // 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) mod 7.
            Period::Week => day - (day + 3).rem_euclid(7),
            Period::Month => {
                let (y, m, _) = date_of_day(day);
                day_of_date(y, m, 1)
            }
        }
    }

    /// The first day of the period after the one starting at `start`.
    pub fn next(self, start: i32) -> i32 {
        match self {
            Period::Day => start + 1,
            Period::Week => start + 7,
            Period::Month => {
                let (y, m, _) = date_of_day(start);
                if m == 12 {
                    day_of_date(y + 1, 1, 1)
                } else {
                    day_of_date(y, m + 1, 1)
                }
            }
        }
    }

    /// The period `k` periods after the one starting at `start`.
    pub fn advance(self, start: i32, k: u32) -> i32 {
        match self {
            Period::Day => start.saturating_add(k.min(i32::MAX as u32) as i32),
            Period::Week => start.saturating_add((k.min(i32::MAX as u32 / 7) * 7) as i32),
            Period::Month => {
                let (y, m, _) = date_of_day(start);
                let months = (y as i64) * 12 + (m as i64 - 1) + k as i64;
                let (y, m) = (months.div_euclid(12), months.rem_euclid(12) + 1);
                day_of_date(y.clamp(0, 200_000) as i32, m as u8, 1)
            }
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// The groups an analysis is split into: one group of everyone, or one per value of an enum
/// or set dimension (a set puts a user in each of its values' groups).
pub(crate) struct Split<'s> {
    dim: Option<crate::table::FieldRef<'s>>,
}

impl<'s> Split<'s> {
    pub(crate) fn new(
        snap: &'s crate::table::TableSnapshot,
        path: Option<&str>,
        as_of: Option<&'s str>,
    ) -> Result<Self> {
        let dim = match path {
            None => None,
            Some(p) => {
                let f = snap.field_at(p, as_of)?;
                if !f.kind().has_values() {
                    return Err(Error::KindMismatch {
                        path: p.to_owned(),
                        actual: f.kind().name(),
                        expected: "an enum or set field (a dimension)",
                    });
                }
                if f.values().len() > MAX_SPLIT_GROUPS {
                    return Err(Error::LimitExceeded(format!(
                        "`{p}` has {} values; a behaviour analysis splits into at most {MAX_SPLIT_GROUPS} groups",
                        f.values().len()
                    )));
                }
                Some(f)
            }
        };
        Ok(Self { dim })
    }

    /// Whether this is the single group of everyone (no dimension).
    pub(crate) fn is_whole(&self) -> bool {
        self.dim.is_none()
    }

    /// The group names, in group order (`None`: the single group of everyone).
    pub(crate) fn names(&self) -> Vec<Option<String>> {
        match &self.dim {
            None => vec![None],
            Some(f) => f.values().iter().map(|v| Some(v.clone())).collect(),
        }
    }

    /// The members of each group among `crowd` (ids of `shard`), in group order.
    pub(crate) fn groups(
        &self,
        shard: u32,
        crowd: &croaring::Bitmap,
    ) -> Result<Vec<croaring::Bitmap>> {
        match &self.dim {
            None => Ok(vec![crowd.clone()]),
            Some(f) => (0..f.values().len() as u32)
                .map(|code| {
                    Ok(f.value_in(shard, code)?
                        .map(|b| b.and(crowd))
                        .unwrap_or_default())
                })
                .collect(),
        }
    }
}

/// The most groups a split may produce.
pub const MAX_SPLIT_GROUPS: usize = 1_000;

/// The event field `path` of `snap`, checked.
pub(crate) fn event_field<'s>(
    snap: &'s crate::table::TableSnapshot,
    path: &str,
) -> Result<crate::table::FieldRef<'s>> {
    let f = snap.field(path)?;
    if f.kind() != crate::FieldKind::Event {
        return Err(Error::KindMismatch {
            path: path.to_owned(),
            actual: f.kind().name(),
            expected: "an event",
        });
    }
    Ok(f)
}
