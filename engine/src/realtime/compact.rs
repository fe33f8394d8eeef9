//! Compaction: folds the real-time delta into the segments of each changed field's current
//! version, without stopping readers or real-time writers.
//!
//! 1. Under the real-time commit lock (briefly): the active changes join the frozen ones, and
//!    the log rotates, so every write logged so far is in a file numbered `<= upto` and in
//!    `frozen`. New writes go to the next file and to `active`.
//! 2. For each frozen field, one at a time (memory stays bounded by one field): a load with
//!    the label of its current version, holding its full content — the stored version with the
//!    frozen changes merged — replaces that version. Its publish drops the field from `frozen`
//!    and re-merges what is left of the delta over the new segments in the same step, so
//!    readers never see a change vanish or apply twice.
//! 3. When `frozen` is empty, log files `<= upto` are deleted.
//!
//! A crash at any point loses nothing: the log files are deleted last, and replaying a write
//! over a segment that already holds it changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use croaring::Bitmap;

use super::overlay::{Overlay, OverlayData};
use super::{Cell, RtState, wal};
use crate::catalog::FieldKind;
use crate::error::{Error, Result};
use crate::storage::fs;
use crate::table::{FieldRef, Table, TableSnapshot};

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactSummary {
    /// Fields rewritten.
    pub fields: usize,
    /// `(field, user)` changes folded into segments.
    pub changes: u64,
    /// Log files deleted.
    pub wal_files_removed: usize,
}

/// Runs one compaction of `table` (see the module header).
pub(crate) fn run(table: &Table) -> Result<CompactSummary> {
    // One compaction at a time; bulk loads wait for each field's rewrite, not for the whole run.
    let _one = table.rt.compaction.lock();
    let (upto, fields) = {
        let mut st = table.rt.state.lock();
        let active = std::mem::take(&mut st.active);
        st.frozen.absorb(active);
        if st.frozen.len() == 0 {
            return Ok(CompactSummary::default());
        }
        let upto = st.wal.number();
        st.wal.rotate()?;
        st.compacting = true;
        (upto, st.frozen.field_ids())
    };
    let result = compact_fields(table, &fields);
    let mut st = table.rt.state.lock();
    st.compacting = false;
    let mut summary = result?;
    if st.frozen.len() == 0 {
        // Under the commit lock, so a backup never lists a file that then disappears.
        summary.wal_files_removed = remove_logs(table, upto)?;
    }
    drop(st);
    Ok(summary)
}

fn compact_fields(table: &Table, fields: &[u32]) -> Result<CompactSummary> {
    let mut summary = CompactSummary::default();
    for &fid in fields {
        // The field's label, read under the bulk-writer lock the load takes.
        let base = table.rt.state.lock().base.clone();
        let Some(label) = base.field_by_id(fid).map(|f| f.version().label.clone()) else {
            let mut st = table.rt.state.lock();
            tracing::warn!(
                field = fid,
                "real-time changes to a field without a current version dropped at compaction"
            );
            st.frozen.remove(fid);
            st.rebuild_overlay();
            table.store_visible(&st);
            continue;
        };
        let mut load = table.load(&label)?;
        // The load holds the bulk-writer lock: the base cannot change until it commits.
        let (base, changes, appends) = {
            let st = table.rt.state.lock();
            (
                st.base.clone(),
                st.frozen.fields.get(&fid).cloned().unwrap_or_default(),
                st.frozen.events.get(&fid).cloned().unwrap_or_default(),
            )
        };
        let Some(field) = base.field_by_id(fid) else {
            continue;
        };
        if field.version().label != label {
            // A load replaced the version between the two reads; the next run picks it up.
            continue;
        }
        if field.kind() == FieldKind::Event {
            stage_events(&mut load, &base, &field, &appends)?;
        } else {
            stage_field(&mut load, &base, &field, &changes)?;
        }
        load.compacts(fid);
        load.commit()?;
        summary.fields += 1;
        summary.changes += (changes.len() + appends.len()) as u64;
    }
    Ok(summary)
}

/// Stages the full content of `field` with `changes` merged into `load`.
fn stage_field(
    load: &mut crate::table::Load<'_>,
    base: &TableSnapshot,
    field: &FieldRef<'_>,
    changes: &BTreeMap<u32, Option<Cell>>,
) -> Result<()> {
    let mut overlay = Overlay::default();
    for (&id, cell) in changes {
        super::apply(&mut overlay, field, id, cell.as_ref())?;
    }
    let fo = overlay.fields.get(&field.meta().id);
    let values: Vec<String> = match fo {
        Some(fo) if !fo.values.is_empty() => fo.values.clone(),
        _ => field.values().to_vec(),
    };
    let lf = load.field(field.meta().spec.clone())?;
    let shards = field
        .shards()
        .max(fo.map_or(0, |f| f.shards.len() as u32))
        .max(base.shards());
    for shard in 0..shards {
        let merged = fo
            .and_then(|f| f.shards.get(shard as usize))
            .and_then(|s| s.as_deref())
            .map(|s| &s.data);
        match field.kind() {
            FieldKind::Flag => {
                let bitmap = match merged {
                    Some(OverlayData::Flag(b)) => Some(&**b),
                    _ => field.flag_in(shard)?,
                };
                if let Some(b) = bitmap {
                    load.flag_bitmap(lf, b)?;
                }
            }
            k if k.has_values() => {
                let mut pairs: Vec<(u32, u32)> = Vec::new();
                for code in 0..values.len() as u32 {
                    let tracked = match merged {
                        Some(OverlayData::Values(map)) => map.get(&code).map(|b| &**b),
                        _ => None,
                    };
                    let bitmap = match tracked {
                        Some(b) => Some(b),
                        None if (code as usize) < field.values().len() => {
                            field.value_in(shard, code)?
                        }
                        None => None,
                    };
                    if let Some(b) = bitmap {
                        pairs.extend(b.iter().map(|id| (id, code)));
                    }
                }
                load.value_codes(lf, &values, &pairs)?;
            }
            k if k.is_numeric() => {
                let bsi = match merged {
                    Some(OverlayData::Bsi(p)) => {
                        let changed = fo
                            .and_then(|f| f.shards.get(shard as usize))
                            .and_then(|s| s.as_deref())
                            .map(|s| &s.changed)
                            .ok_or_else(|| Error::Internal("patch without its shard".into()))?;
                        let m = p.merged(field.bsi_in(shard)?, changed);
                        (!m.exists.is_empty()).then(|| m.as_ref())
                    }
                    _ => field.bsi_in(shard)?,
                };
                if let Some(bsi) = bsi {
                    load.value_units(lf, &decode_bsi(bsi.exists, bsi.base, &bsi.slices))?;
                }
            }
            _ => {
                return Err(Error::Internal(format!(
                    "real-time changes to event field `{}`",
                    field.path()
                )));
            }
        }
    }
    Ok(())
}

/// Stages the days of event `field` that `appends` touch, each whole (stored users and counts
/// with the appended totals merged); the load keeps the other days as they are.
fn stage_events(
    load: &mut crate::table::Load<'_>,
    base: &TableSnapshot,
    field: &FieldRef<'_>,
    appends: &BTreeMap<(u32, i32), u32>,
) -> Result<()> {
    let mut overlay = Overlay::default();
    for (&(id, day), &total) in appends {
        super::apply(
            &mut overlay,
            field,
            id,
            Some(&Cell::EventDay { day, total }),
        )?;
    }
    let lf = load.field(field.meta().spec.clone())?;
    let Some(fo) = overlay.fields.get(&field.meta().id) else {
        return Ok(());
    };
    let stored_days = field.event_days();
    for (shard, so) in fo.shards.iter().enumerate() {
        let Some(OverlayData::Events(days)) = so.as_deref().map(|s| &s.data) else {
            continue;
        };
        let shard = shard as u32;
        for (&day, patch) in days {
            let has_day = stored_days.binary_search(&day).is_ok();
            let stored = if has_day {
                field.event_day_in(shard, day)?
            } else {
                None
            };
            let counts = if has_day {
                field.event_count_slices_in(shard, day)?
            } else {
                Vec::new()
            };
            let merged = patch.merged(stored, &counts);
            stage_day(load, lf, day, &merged.users, &merged.counts)?;
        }
    }
    // Days a shard did not touch are still replaced whole by the load: stage their stored
    // content in the shards that kept it.
    let touched: std::collections::BTreeSet<i32> = fo
        .shards
        .iter()
        .flatten()
        .filter_map(|s| match &s.data {
            OverlayData::Events(days) => Some(days.keys().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    for &day in &touched {
        if stored_days.binary_search(&day).is_err() {
            continue;
        }
        for shard in 0..base.shards() {
            let in_patch = fo
                .shards
                .get(shard as usize)
                .and_then(|s| s.as_deref())
                .is_some_and(|s| matches!(&s.data, OverlayData::Events(d) if d.contains_key(&day)));
            if in_patch {
                continue;
            }
            let Some(users) = field.event_day_in(shard, day)? else {
                continue;
            };
            let counts: Vec<(u32, Bitmap, Vec<u8>)> = field
                .event_count_slices_in(shard, day)?
                .into_iter()
                .map(|(bit, b)| (bit, b.clone(), Vec::new()))
                .collect();
            stage_day(load, lf, day, users, &counts)?;
        }
    }
    Ok(())
}

/// Stages one day of one shard: every user of `users` with `1 + (count bits)` occurrences.
fn stage_day(
    load: &mut crate::table::Load<'_>,
    lf: crate::table::LoadField,
    day: i32,
    users: &Bitmap,
    counts: &[(u32, Bitmap, Vec<u8>)],
) -> Result<()> {
    for id in users.iter() {
        let mut extra = 0u32;
        for (bit, slice, _) in counts {
            if *bit < 32 && slice.contains(id) {
                extra |= 1 << bit;
            }
        }
        load.event_id(lf, id, day, extra.saturating_add(1))?;
    }
    Ok(())
}

/// Every `(id, value)` of a BSI, one pass over each slice.
fn decode_bsi(exists: &Bitmap, base: i64, slices: &[&Bitmap]) -> Vec<(u32, i64)> {
    let (Some(lo), Some(hi)) = (exists.minimum(), exists.maximum()) else {
        return Vec::new();
    };
    let mut offsets = vec![0u64; (hi - lo) as usize + 1];
    for (bit, s) in slices.iter().enumerate() {
        for id in s.iter() {
            if let Some(o) = offsets.get_mut(id.wrapping_sub(lo) as usize) {
                *o |= 1 << bit;
            }
        }
    }
    exists
        .iter()
        .map(|id| (id, base.wrapping_add(offsets[(id - lo) as usize] as i64)))
        .collect()
}

fn remove_logs(table: &Table, upto: u64) -> Result<usize> {
    let dir = table.dir();
    let mut removed = 0;
    for n in wal::list(dir)? {
        if n <= upto {
            let path = dir.join(wal::file_name(n));
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs::sync_dir(dir)?;
    }
    Ok(removed)
}

/// Opens the real-time state of a table: replays its log files over `base`, then opens the
/// newest file for appending.
pub(crate) fn recover(
    dir: &std::path::Path,
    base: Arc<TableSnapshot>,
    sync: super::WalSync,
) -> Result<RtState> {
    let files = wal::list(dir)?;
    let mut batches = Vec::new();
    for (i, &n) in files.iter().enumerate() {
        batches.extend(wal::read(dir, n, base.key_kind(), i + 1 == files.len())?);
    }
    let newest = files.last().copied().unwrap_or(0);
    let wal = wal::WalWriter::open(dir, newest, sync == super::WalSync::EveryCommit)?;
    let mut st = RtState {
        wal,
        seq: batches.last().map_or(0, |b| b.seq + 1),
        overlay: Overlay {
            users: base.users(),
            ..Overlay::default()
        },
        base,
        active: Default::default(),
        frozen: Default::default(),
        compacting: false,
    };
    let writes: usize = batches.iter().map(|b| b.writes.len()).sum();
    for b in &batches {
        super::apply_logged(&mut st, &b.writes).map_err(|e| match e {
            e @ (Error::Io { .. } | Error::Corruption { .. }) => e,
            e => Error::corrupt(
                dir.join(wal::file_name(newest)),
                format!("batch {} of the write-ahead log does not apply: {e}", b.seq),
            ),
        })?;
    }
    if !batches.is_empty() {
        tracing::info!(
            dir = %dir.display(),
            files = files.len(),
            batches = batches.len(),
            writes,
            "replayed the real-time write-ahead log"
        );
    }
    Ok(st)
}
