//! Events files: `(key, event, timestamp or day[, count])` rows.
//!
//! The `when` column is a Parquet DATE (a day) or TIMESTAMP/INT96 (a point in time), or text:
//! `YYYY-MM-DD` is a day, a date and time is a point in time. Plain integers are days since
//! 1970-01-01 when the column is named `day`, Unix milliseconds otherwise. `count` (optional,
//! default 1) is a non-negative integer.

use std::collections::HashMap;

use super::infer::{self, When};
use super::keys::{self, KeyScratch, NO_ID};
use super::mapping::MappedKind;
use super::source::{Batch, Cell, ColumnInfo, Data, Derive, Source, SourceType, Unit, all_true};
use super::{BATCH_ROWS, Ctx};
use crate::catalog::{FieldKind, validate_path};
use crate::error::Result;
use crate::table::{Load, LoadField};

/// The event fields of one import, over all its files.
#[derive(Debug, Default)]
pub(crate) struct Events {
    /// Per event name: its field, or `None` when the mapping skips it.
    fields: HashMap<String, Option<LoadField>>,
    /// The current run of rows of one event and day, over batches: staged together when it
    /// ends ([`Load::event_ids`]).
    run: Option<(LoadField, i32)>,
    pending: Vec<(u32, u32)>,
}

struct Layout {
    event: usize,
    when: usize,
    count: Option<usize>,
    /// Plain integers in `when` are days.
    int_days: bool,
    when_unit: Unit,
}

fn layout(columns: &[ColumnInfo], key: usize, ctx: &Ctx<'_, '_>) -> Result<Layout> {
    let find = |names: &[&str]| {
        columns
            .iter()
            .position(|c| names.iter().any(|n| c.name.eq_ignore_ascii_case(n)))
    };
    let rest: Vec<usize> = (0..columns.len()).filter(|&i| i != key).collect();
    let event = find(&["event"]).or(rest.first().copied());
    let when = find(&["timestamp", "time", "ts", "day", "date"]).or(rest.get(1).copied());
    let count = find(&["count"]).or(rest.get(2).copied());
    let (Some(event), Some(when)) = (event, when) else {
        return Err(ctx.error(
            None,
            "an events file has a key, an event and a timestamp or day column (and optionally a count)",
        ));
    };
    if rest.len() > 3 {
        return Err(ctx.error(
            None,
            format!(
                "an events file has at most 4 columns, this one has {}",
                columns.len()
            ),
        ));
    }
    for (i, what, ok) in [
        (event, "event names", columns[event].ty == SourceType::Text),
        (
            when,
            "timestamps or days",
            matches!(columns[when].ty, SourceType::Text | SourceType::Int(_)),
        ),
    ] {
        if !ok {
            return Err(ctx.error(
                None,
                format!(
                    "column `{}` must hold {what}, not {} values",
                    columns[i].name,
                    columns[i].ty.name()
                ),
            ));
        }
    }
    Ok(Layout {
        event,
        when,
        count,
        int_days: columns[when].name.eq_ignore_ascii_case("day"),
        when_unit: match columns[when].ty {
            SourceType::Int(u) => u,
            _ => Unit::Plain,
        },
    })
}

impl Events {
    /// Reads one events file.
    pub(crate) fn import(
        &mut self,
        load: &mut Load<'_>,
        src: &mut dyn Source,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        let columns = src.columns().to_vec();
        let key = ctx.key_column(&columns)?;
        let l = layout(&columns, key, ctx)?;
        let mut wanted = vec![false; columns.len()];
        for i in [Some(key), Some(l.event), Some(l.when), l.count]
            .into_iter()
            .flatten()
        {
            wanted[i] = true;
        }
        // A source decoding on other threads finds the runs of a user's rows and their ids
        // there, off this thread (the others would only find the runs, here, for nothing).
        if src.find_keys(std::sync::Arc::new(load.base_keys()), key) {
            src.derive(Derive {
                runs_of: Some(key),
                groups_of: None,
            });
        }
        // A run never spans files (nor an earlier file's failure).
        self.run = None;
        self.pending.clear();
        let mut batch = Batch::default();
        let mut scratch = KeyScratch::default();
        let mut ids = Vec::new();
        let mut run_ids = Vec::new();
        let mut any = false;
        while src.next(&wanted, BATCH_ROWS, &mut batch, ctx.bad)? {
            any = true;
            if !keys::found_rows(&batch, &mut run_ids, &mut ids) {
                keys::resolve(
                    load,
                    &batch,
                    0..batch.len(),
                    key,
                    ctx,
                    &mut scratch,
                    &mut ids,
                )?;
            }
            self.rows_of(load, &batch, &ids, &l, ctx)?;
            ctx.advance(batch.len(), src)?;
        }
        self.flush(load)?;
        if !any {
            return Err(ctx.error(None, "the file has no data rows"));
        }
        Ok(())
    }

    fn rows_of(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        ids: &[u32],
        l: &Layout,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        if self.stretches_of(load, batch, ids, l, ctx)? {
            return Ok(());
        }
        let mut last: Option<(String, Option<LoadField>)> = None;
        // The field and day of the last row decided whose event and time have a signature
        // (`signature`): a row with the same signature has the same field and day, which it
        // takes without reading its cells again. In a file sorted by event and day, as event
        // exports usually are, that is nearly every row.
        let mut known: Option<((u32, i64), Option<LoadField>, i32)> = None;
        let counts = l.count.map(|c| &batch.cols[c]);
        for (r, &id) in ids.iter().enumerate() {
            if id == NO_ID {
                continue;
            }
            let sig = signature(batch, l, r);
            let (field, day) = match known {
                Some((k, field, day)) if sig == Some(k) => (field, day),
                _ => {
                    let Some((field, day)) = self.decide(load, batch, r, l, &mut last, ctx)? else {
                        continue;
                    };
                    known = sig.map(|s| (s, field, day));
                    (field, day)
                }
            };
            let count = match counts.map(|col| col.cell(r)) {
                None | Some(Cell::Null) => Some(1),
                Some(Cell::Int(x)) => u32::try_from(x).ok(),
                Some(Cell::Text(t)) => std::str::from_utf8(t).ok().and_then(|s| s.parse().ok()),
                Some(_) => None,
            };
            let Some(count) = count else {
                ctx.bad.report(
                    batch.row(r),
                    "invalid count",
                    "not a count from 0 to 4294967295",
                )?;
                continue;
            };
            if let Some(field) = field {
                if self.run != Some((field, day)) {
                    self.flush(load)?;
                    self.run = Some((field, day));
                }
                self.pending.push((id, count));
            }
        }
        Ok(())
    }

    /// [`Events::rows_of`] a stretch of rows at a time, for the usual batch: event names as
    /// dictionary codes, integer times and counts (or none), every one present and every count
    /// valid. A stretch of rows of one event code and time is decided once and its `(id,
    /// count)` pairs staged in one loop, without reading a cell per row. `false`, having done
    /// nothing, for other batches.
    fn stretches_of(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        ids: &[u32],
        l: &Layout,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<bool> {
        let n = ids.len();
        let (event, when) = (&batch.cols[l.event], &batch.cols[l.when]);
        let (Data::Coded(coded), Data::Int(times)) = (&event.data, &when.data) else {
            return Ok(false);
        };
        let (Some(codes), Some(times), Some(ev_valid), Some(when_valid)) = (
            coded.codes.get(..n),
            times.get(..n),
            event.valid.get(..n),
            when.valid.get(..n),
        ) else {
            return Ok(false);
        };
        if !all_true(ev_valid) || !all_true(when_valid) {
            return Ok(false);
        }
        let counts = match l.count.map(|c| &batch.cols[c]) {
            None => None,
            Some(col) => match (&col.data, col.valid.get(..n)) {
                (Data::Int(v), Some(valid)) if all_true(valid) => match v.get(..n) {
                    Some(v) if v.iter().all(|&x| u32::try_from(x).is_ok()) => Some(v),
                    _ => return Ok(false),
                },
                _ => return Ok(false),
            },
        };
        let mut last: Option<(String, Option<LoadField>)> = None;
        let mut r = 0;
        while r < n {
            let sig = (codes[r], times[r]);
            let len = 1 + codes[r + 1..]
                .iter()
                .zip(&times[r + 1..])
                .take_while(|&(&c, &t)| (c, t) == sig)
                .count();
            let stretch = r..r + len;
            r += len;
            // Decided by its first row with a key; a bad name or time is reported for every
            // row with a key, as row by row.
            let mut rows = stretch.clone().filter(|&i| ids[i] != NO_ID);
            let Some(first) = rows.next() else { continue };
            let Some((field, day)) = self.decide(load, batch, first, l, &mut last, ctx)? else {
                for i in rows {
                    self.decide(load, batch, i, l, &mut last, ctx)?;
                }
                continue;
            };
            let Some(field) = field else { continue };
            if self.run != Some((field, day)) {
                self.flush(load)?;
                self.run = Some((field, day));
            }
            let pairs = stretch.filter(|&i| ids[i] != NO_ID);
            match counts {
                // Valid counts, checked above.
                Some(c) => self
                    .pending
                    .extend(pairs.map(|i| (ids[i], u32::try_from(c[i]).unwrap_or(1)))),
                None => self.pending.extend(pairs.map(|i| (ids[i], 1))),
            }
        }
        Ok(true)
    }

    /// The field (`None` when the mapping skips the event) and day of row `r` of `batch`, from
    /// its event name and time; `None` for a row whose name or time is bad, reported to `ctx`.
    /// `last` is the last name looked up and its field: files are usually grouped by event.
    fn decide(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        r: usize,
        l: &Layout,
        last: &mut Option<(String, Option<LoadField>)>,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<(Option<LoadField>, i32)>> {
        let row = batch.row(r);
        let Cell::Text(name) = batch.cols[l.event].cell(r) else {
            ctx.bad
                .report(row, "missing event", "the event name is empty")?;
            return Ok(None);
        };
        let Ok(name) = std::str::from_utf8(name) else {
            ctx.bad
                .report(row, "invalid event", "the event name is not valid UTF-8")?;
            return Ok(None);
        };
        let when = match batch.cols[l.when].cell(r) {
            Cell::Int(x) => match l.when_unit {
                Unit::Days => i32::try_from(x).ok().map(When::Day),
                Unit::Millis => Some(When::Ms(x)),
                _ if l.int_days => i32::try_from(x).ok().map(When::Day),
                _ => Some(When::Ms(x)),
            },
            Cell::Text(t) => infer::parse_when(t),
            _ => None,
        };
        let Some(when) = when else {
            ctx.bad
                .report(row, "invalid time", "not a day or a timestamp")?;
            return Ok(None);
        };
        let day = match when {
            When::Day(d) => d,
            When::Ms(ms) => load.day_of_ms(ms),
        };
        match crate::behaviour::check_day(day) {
            Ok(()) => {}
            Err(crate::Error::InvalidArgument(why)) => {
                ctx.bad.report(row, "invalid day", why)?;
                return Ok(None);
            }
            Err(other) => return Err(other),
        }
        let field = match last.as_ref().filter(|(n, _)| n.as_str() == name) {
            Some(&(_, f)) => f,
            None => match self.field_of(load, name, row, ctx)? {
                Some(f) => {
                    *last = Some((name.to_owned(), f));
                    f
                }
                // A name that makes no path, reported: the row is skipped.
                None => return Ok(None),
            },
        };
        Ok(Some((field, day)))
    }

    /// Stages the pending run of rows. A run is staged when it ends (at another event or day,
    /// or at the end of the file), not a batch at a time: the load then builds a run of
    /// increasing ids (a file sorted by user) at once and `pending` keeps its memory for the
    /// next run, and another run starts its day's staging at its full length, instead of
    /// regrowing (copying and faulting in fresh memory) batch by batch.
    fn flush(&mut self, load: &mut Load<'_>) -> Result<()> {
        if let Some((field, day)) = self.run.take() {
            load.event_ids(field, day, &mut self.pending)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// The field of event `name`: `Some(None)` when the mapping skips it, `None` when the name
    /// makes no valid path (reported as a bad row).
    fn field_of(
        &mut self,
        load: &mut Load<'_>,
        name: &str,
        row: u64,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<Option<Option<LoadField>>> {
        Ok(Some(match self.fields.get(name) {
            Some(f) => *f,
            None => {
                let mapping = &ctx.options.mapping;
                let field = if mapping.skips(name) {
                    None
                } else {
                    let path = mapping.path_of(name);
                    if validate_path(&path).is_err() {
                        ctx.bad.report(
                                row,
                                "invalid field path",
                                format!(
                                    "`{name}` does not make a valid field path; rename it in the mapping"
                                ),
                            )?;
                        return Ok(None);
                    }
                    if let Some(f) = mapping.get(name)
                        && !matches!(f.kind(name)?, None | Some(MappedKind::Event))
                    {
                        return Err(ctx.error(
                            Some(row),
                            format!("event `{name}` is mapped to another kind"),
                        ));
                    }
                    Some(load.field(mapping.spec(name, FieldKind::Event))?)
                };
                self.fields.insert(name.to_owned(), field);
                field
            }
        }))
    }
}

/// What decides row `r`'s field and day, when it can be compared cheaply: its event's code in
/// the batch's dictionary of names and its integer time. Rows of equal signatures have the same
/// event name and time, hence the same field and day (or the same fault). `None` for a row
/// whose event is not dictionary-coded, whose time is not an integer, or either is missing.
#[inline]
fn signature(batch: &Batch, l: &Layout, r: usize) -> Option<(u32, i64)> {
    let (event, when) = (&batch.cols[l.event], &batch.cols[l.when]);
    match (&event.data, &when.data) {
        (Data::Coded(c), Data::Int(v)) if event.valid[r] && when.valid[r] => {
            Some((c.codes[r], v[r]))
        }
        _ => None,
    }
}
