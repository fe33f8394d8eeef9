//! Wide files: one row per user, one column per field.

use rayon::prelude::*;

use super::infer::{Inferred, infer_text};
use super::keys::{self, KeyScratch, NO_ID};
use super::mapping::MappedKind;
use super::sink::{self, Conv, Sink};
use super::source::{BadRows, Batch, Bits, Cell, Data, Source, SourceType, Unit};
use super::{BATCH_ROWS, Ctx, SAMPLE_ROWS};
use crate::catalog::{FieldKind, validate_path};
use crate::error::Result;
use crate::table::Load;

/// Imports one wide file into `load`.
pub(crate) fn import(
    load: &mut Load<'_>,
    src: &mut dyn Source,
    ctx: &mut Ctx<'_, '_>,
) -> Result<()> {
    let columns = src.columns().to_vec();
    let key = ctx.key_column(&columns)?;
    let mapping = &ctx.options.mapping;
    let mut wanted = vec![false; columns.len()];
    wanted[key] = true;
    for (i, c) in columns.iter().enumerate() {
        if i == key || mapping.skips(&c.name) {
            continue;
        }
        if let SourceType::Unsupported(why) = &c.ty {
            return Err(ctx.error(
                None,
                format!(
                    "column `{}` is {why}, which cannot be a field; skip it in the mapping",
                    c.name
                ),
            ));
        }
        wanted[i] = true;
    }

    let mut batch = Batch::default();
    let rows = BATCH_ROWS.max(SAMPLE_ROWS);
    if !src.next(&wanted, rows, &mut batch, ctx.bad)? {
        return Err(ctx.error(None, "the file has no data rows"));
    }

    // Decide each column's field, from the first batch when the file does not say.
    let mut sinks: Vec<(usize, Sink)> = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        if !wanted[i] || i == key {
            continue;
        }
        let path = mapping.path_of(&c.name);
        validate_path(&path).map_err(|e| {
            ctx.error(
                None,
                format!(
                    "column `{}` does not make a valid field path ({e}); rename it in the \
                     mapping ([fields.\"{}\"] path = \"…\") or skip it",
                    c.name, c.name
                ),
            )
        })?;
        let mapped = match mapping.get(&c.name).map(|f| f.kind(&c.name)).transpose()? {
            Some(Some(MappedKind::Event)) => {
                return Err(ctx.error(
                    None,
                    format!(
                        "column `{}` is mapped to events; load events with the events shape",
                        c.name
                    ),
                ));
            }
            Some(Some(MappedKind::Field(k))) => Some(k),
            _ => None,
        };
        let kind = match mapped
            .or_else(|| load.catalog_kind(&path))
            .or_else(|| sink::natural_kind(&c.ty, ctx.options.float_scale()))
        {
            Some(k) => k,
            None => {
                let col = &batch.cols[i];
                let sample = (0..batch.len().min(SAMPLE_ROWS)).filter_map(|r| match col.cell(r) {
                    Cell::Text(t) => Some(t),
                    _ => None,
                });
                match infer_text(
                    sample,
                    ctx.options.float_scale(),
                    ctx.options.enum_max_distinct(),
                ) {
                    Inferred::Kind(k) => k,
                    Inferred::Empty => {
                        return Err(ctx.error(
                            None,
                            format!(
                                "column `{}` has no value in its first {} rows to infer a kind \
                                 from; give its kind in the mapping or skip it",
                                c.name,
                                batch.len()
                            ),
                        ));
                    }
                    Inferred::HighCardinality(n) => {
                        return Err(ctx.error(
                            None,
                            format!(
                                "column `{}` has over {} distinct strings in its first rows ({n} \
                                 seen): map it (kind = \"enum\") or skip it",
                                c.name,
                                ctx.options.enum_max_distinct()
                            ),
                        ));
                    }
                }
            }
        };
        if !sink::compatible(kind, &c.ty) {
            return Err(ctx.error(
                None,
                format!(
                    "column `{}` holds {} values, which cannot load into {} field `{path}`",
                    c.name,
                    c.ty.name(),
                    kind.name()
                ),
            ));
        }
        let field = load.field(mapping.spec(&c.name, kind))?;
        let unit = match c.ty {
            SourceType::Int(u) => u,
            _ => Unit::Plain,
        };
        let sep = (kind == FieldKind::Set).then(|| mapping.separator(&c.name));
        sinks.push((i, Sink::new(field, kind, unit, &path, sep)));
    }
    // Room for every row's value at once: staging grown by doubling copies each value about
    // twice and faults in twice the memory it keeps.
    if let Some(rows) = src.rows_hint() {
        for (_, s) in &sinks {
            load.reserve_values(s.field, rows)?;
        }
        // And for the file's new users: at least its rows beyond the table's users (all of
        // them on a first load), with keys as long as the first batch's.
        let new = rows.saturating_sub(u64::from(load.users()));
        if new > 0 {
            let (n, bytes) = keys::key_bytes(&batch, key);
            load.reserve_users(new, bytes.div_ceil(n.max(1)).saturating_mul(new));
        }
    }

    let mut scratch = KeyScratch::default();
    let mut ids = Vec::new();
    let mut row_scratch = RowScratch::default();
    loop {
        keys::resolve(
            load,
            &batch,
            0..batch.len(),
            key,
            ctx,
            &mut scratch,
            &mut ids,
        )?;
        rows_into(load, &batch, &ids, &mut row_scratch, &mut sinks, ctx.bad)?;
        ctx.advance(batch.len(), src)?;
        if !src.next(&wanted, rows, &mut batch, ctx.bad)? {
            break;
        }
    }
    sinks.par_iter_mut().for_each(|(_, s)| s.seal());
    for (_, s) in &mut sinks {
        s.finish(load)?;
    }
    Ok(())
}

/// Reusable buffers of [`rows_into`]: per row whether it is fine (also as bits), and the ids a
/// flag column gives the flag.
#[derive(Debug, Default)]
struct RowScratch {
    ok: Vec<bool>,
    ok_words: Bits,
    flagged: Vec<u32>,
}

/// Stages the rows of `batch` whose key resolved and whose every value converts; reports the
/// others.
fn rows_into(
    load: &mut Load<'_>,
    batch: &Batch,
    ids: &[u32],
    scratch: &mut RowScratch,
    sinks: &mut [(usize, Sink)],
    bad: &mut BadRows,
) -> Result<()> {
    let RowScratch {
        ok,
        ok_words,
        flagged,
    } = scratch;
    ok.clear();
    ok.extend(ids.iter().map(|&id| id != NO_ID));
    // First every value is checked, so that a bad row contributes nothing.
    for (c, s) in sinks.iter_mut() {
        let col = &batch.cols[*c];
        if matches!(col.data, Data::Bool(_)) && s.kind == FieldKind::Flag {
            continue;
        }
        if let Data::Coded(coded) = &col.data
            && s.by_codes()
        {
            for (r, fine) in ok.iter_mut().enumerate() {
                if *fine
                    && col.valid[r]
                    && let Err(why) = s.code_of(coded, coded.codes[r])
                {
                    bad.report(batch.row(r), &s.reason, why)?;
                    *fine = false;
                }
            }
            continue;
        }
        for (r, fine) in ok.iter_mut().enumerate() {
            if *fine && let Err(why) = s.convert(col.cell(r)) {
                bad.report(batch.row(r), &s.reason, why)?;
                *fine = false;
            }
        }
    }
    ok_words.clear();
    ok_words.extend(ok);
    for (c, s) in sinks.iter_mut() {
        let col = &batch.cols[*c];
        match &col.data {
            Data::Bool(values) if s.kind == FieldKind::Flag => {
                // 64 rows at a time: the rows that are true (a null is false) and fine, then
                // their ids (most rows of a flag column are usually false).
                flagged.clear();
                for (w, (&v, &fine)) in values.words().iter().zip(ok_words.words()).enumerate() {
                    let mut word = v & fine;
                    while word != 0 {
                        flagged.push(ids[w * 64 + word.trailing_zeros() as usize]);
                        word &= word - 1;
                    }
                }
                s.push_flags(flagged);
            }
            Data::Coded(coded) if s.by_codes() => {
                for r in 0..batch.len() {
                    if ok[r]
                        && col.valid[r]
                        && let Ok(c) = s.code_of(coded, coded.codes[r])
                    {
                        s.push_code(ids[r], c);
                    }
                }
            }
            _ => {
                for r in 0..batch.len() {
                    if ok[r] {
                        let v = s.convert(col.cell(r)).unwrap_or(Conv::None);
                        s.push(load, ids[r], v)?;
                    }
                }
            }
        }
        s.flush(load)?;
    }
    Ok(())
}
