//! Long files: `(key, tag)` rows make flags; `(key, field, value)` rows make values.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::infer::{Inferred, infer_text};
use super::keys::{self, KeyScratch, NO_ID};
use super::mapping::MappedKind;
use super::pages::Coded;
use super::sink::{self, Sink};
use super::source::{Batch, Cell, ColumnInfo, Data, Derive, Source, SourceType, Unit};
use super::{BATCH_ROWS, Ctx, LONG_SAMPLE};
use crate::catalog::{FieldKind, validate_path};
use crate::error::Result;
use crate::table::Load;

/// The columns of a long file besides the key: `(tag)` or `(field, value)`.
enum Layout {
    Tags { tag: usize },
    Values { field: usize, value: usize },
}

fn layout(columns: &[ColumnInfo], key: usize, ctx: &Ctx<'_, '_>) -> Result<Layout> {
    let find = |name: &str| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .filter(|&i| i != key)
    };
    if let Some(tag) = find("tag") {
        return Ok(Layout::Tags { tag });
    }
    if let (Some(field), Some(value)) = (find("field"), find("value")) {
        return Ok(Layout::Values { field, value });
    }
    let rest: Vec<usize> = (0..columns.len()).filter(|&i| i != key).collect();
    match rest[..] {
        [tag] => Ok(Layout::Tags { tag }),
        [field, value] => Ok(Layout::Values { field, value }),
        _ => Err(ctx.error(
            None,
            format!(
                "a long file has a key column and either a tag column or a field and a value \
                 column; this one has {} columns besides the key",
                rest.len()
            ),
        )),
    }
}

/// Imports one long file into `load`.
pub(crate) fn import(
    load: &mut Load<'_>,
    src: &mut dyn Source,
    ctx: &mut Ctx<'_, '_>,
) -> Result<()> {
    let columns = src.columns().to_vec();
    let key = ctx.key_column(&columns)?;
    let layout = layout(&columns, key, ctx)?;
    let names = match layout {
        Layout::Tags { tag } => tag,
        Layout::Values { field, .. } => field,
    };
    if columns[names].ty != SourceType::Text {
        return Err(ctx.error(
            None,
            format!(
                "column `{}` must hold strings (field names), not {} values",
                columns[names].name,
                columns[names].ty.name()
            ),
        ));
    }
    let mut wanted = vec![false; columns.len()];
    wanted[key] = true;
    wanted[names] = true;
    if let Layout::Values { value, .. } = layout {
        if let SourceType::Unsupported(why) = &columns[value].ty {
            return Err(ctx.error(
                None,
                format!(
                    "column `{}` is {why}, which cannot hold values",
                    columns[value].name
                ),
            ));
        }
        wanted[value] = true;
    }
    let mut fields = Fields::new(&columns, &layout);
    if let Layout::Tags { tag } = layout {
        // Runs of a user's rows, and their grouping by tag, come from the decoding.
        src.derive(Derive {
            runs_of: Some(key),
            groups_of: Some(tag),
        });
        // And the runs' ids, found there too.
        let _ = src.find_keys(std::sync::Arc::new(load.base_keys()), key);
    }
    let mut batch = Batch::default();
    let mut scratch = KeyScratch::default();
    let mut ids = Vec::new();
    let mut run_ids = Vec::new();
    let mut any = false;
    while src.next(&wanted, LONG_BATCH_ROWS, &mut batch, ctx.bad)? {
        any = true;
        if let Layout::Tags { tag } = layout
            && batch.groups.done
            && !batch.groups.nulls
            && keys::resolve_runs(load, &batch, key, ctx, &mut scratch, &mut run_ids)?
            && fields.grouped_tags(load, &batch, &run_ids, tag, ctx)?
        {
            fields.flush(load)?;
            ctx.advance(batch.len(), src)?;
            continue;
        }
        // Row by row, in pieces of the batch size of other shapes, so that bad rows are
        // reported in the order (and the first one is the one) they always were.
        for start in (0..batch.len()).step_by(BATCH_ROWS) {
            let rows = start..(start + BATCH_ROWS).min(batch.len());
            keys::resolve(load, &batch, rows.clone(), key, ctx, &mut scratch, &mut ids)?;
            match layout {
                Layout::Tags { tag } => fields.tags(load, &batch, start, &ids, tag, ctx)?,
                Layout::Values { field, value } => {
                    fields.values(load, &batch, start, &ids, field, value, ctx)?
                }
            }
            fields.flush(load)?;
            ctx.advance(rows.len(), src)?;
        }
    }
    if !any {
        return Err(ctx.error(None, "the file has no data rows"));
    }
    fields.finish(load, ctx)
}

enum State {
    Skipped,
    /// Values waiting for the field's kind to be decided: `(id, row, text)`.
    Pending(Vec<(u32, u64, Vec<u8>)>),
    Ready(Box<Sink>),
}

struct Fields {
    value_type: SourceType,
    value_unit: Unit,
    by_name: HashMap<Vec<u8>, usize>,
    names: Vec<String>,
    states: Vec<State>,
    /// The last name seen and its index: rows of one name usually come together.
    last: Option<(Vec<u8>, usize)>,
    /// The dictionary `by_code` belongs to, and per entry its field ([`UNMATCHED`] until used).
    dict_id: u64,
    by_code: Vec<u32>,
    /// Scratch of [`Fields::coded_tags`]: per row its field ([`UNMATCHED`]: none), rows per
    /// field, and the batch's ids grouped by field.
    slots: Vec<u32>,
    counts: Vec<usize>,
    grouped: Vec<u32>,
}

/// A dictionary entry not matched to a field yet (or naming no valid field).
const UNMATCHED: u32 = u32::MAX;

/// Rows per batch of a long file: larger than other shapes' (a long file has few columns), so
/// that each of many fields gets a good run of ids per batch.
const LONG_BATCH_ROWS: usize = 256 * 1024;

impl Fields {
    fn new(columns: &[ColumnInfo], layout: &Layout) -> Self {
        let value_type = match layout {
            Layout::Tags { .. } => SourceType::Bool,
            Layout::Values { value, .. } => columns[*value].ty.clone(),
        };
        let value_unit = match value_type {
            SourceType::Int(u) => u,
            _ => Unit::Plain,
        };
        Self {
            value_type,
            value_unit,
            by_name: HashMap::new(),
            names: Vec::new(),
            states: Vec::new(),
            last: None,
            dict_id: 0,
            by_code: Vec::new(),
            slots: Vec::new(),
            counts: Vec::new(),
            grouped: Vec::new(),
        }
    }

    /// The index of the field named `name`, declaring it on first sight; `Err(reason)` if the
    /// name cannot be a field (a bad row).
    fn index(
        &mut self,
        load: &mut Load<'_>,
        name: &[u8],
        tags: bool,
        ctx: &Ctx<'_, '_>,
    ) -> Result<std::result::Result<usize, (String, String)>> {
        if let Some((n, i)) = &self.last
            && n == name
        {
            return Ok(Ok(*i));
        }
        if let Some(&i) = self.by_name.get(name) {
            self.last = Some((name.to_vec(), i));
            return Ok(Ok(i));
        }
        let Ok(text) = std::str::from_utf8(name) else {
            return Ok(Err(("invalid name".into(), "not valid UTF-8".into())));
        };
        let mapping = &ctx.options.mapping;
        let path = mapping.path_of(text);
        let state = if mapping.skips(text) {
            State::Skipped
        } else {
            if validate_path(&path).is_err() {
                return Ok(Err((
                    "invalid field path".into(),
                    format!("`{text}` does not make a valid field path; rename it in the mapping"),
                )));
            }
            let mapped = match mapping.get(text).map(|f| f.kind(text)).transpose()? {
                Some(Some(MappedKind::Field(k))) => Some(k),
                Some(Some(MappedKind::Event)) => {
                    return Err(ctx.error(
                        None,
                        format!("`{text}` is mapped to events; load events with the events shape"),
                    ));
                }
                _ => None,
            };
            let kind = if tags {
                Some(FieldKind::Flag)
            } else {
                mapped
                    .or_else(|| load.catalog_kind(&path))
                    .or_else(|| sink::natural_kind(&self.value_type, ctx.options.float_scale()))
            };
            match kind {
                Some(kind) => State::Ready(Box::new(self.sink(load, text, kind, ctx)?)),
                None => State::Pending(Vec::new()),
            }
        };
        let i = self.states.len();
        self.states.push(state);
        self.names.push(text.to_owned());
        self.by_name.insert(name.to_vec(), i);
        self.last = Some((name.to_vec(), i));
        Ok(Ok(i))
    }

    fn sink(
        &self,
        load: &mut Load<'_>,
        name: &str,
        kind: FieldKind,
        ctx: &Ctx<'_, '_>,
    ) -> Result<Sink> {
        let mapping = &ctx.options.mapping;
        let path = mapping.path_of(name);
        if !sink::compatible(kind, &self.value_type) {
            return Err(ctx.error(
                None,
                format!(
                    "the value column holds {} values, which cannot load into {} field `{path}`",
                    self.value_type.name(),
                    kind.name()
                ),
            ));
        }
        let field = load.field(mapping.spec(name, kind))?;
        let sep = (kind == FieldKind::Set).then(|| mapping.separator(name));
        // A long file gives a set one value per row unless the mapping names a separator.
        let sep = sep.filter(|_| mapping.get(name).is_some_and(|f| f.separator.is_some()));
        Ok(Sink::new(field, kind, self.value_unit, &path, sep))
    }

    /// Gives each row of `batch` from row `base` on its tag's flag, `ids[r]` being the id of
    /// row `base + r`.
    fn tags(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        base: usize,
        ids: &[u32],
        tag: usize,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        let col = &batch.cols[tag];
        if let Data::Coded(coded) = &col.data {
            return self.coded_tags(load, batch, base, ids, coded, &col.valid, ctx);
        }
        for (r, &id) in ids.iter().enumerate() {
            let r = base + r;
            if id == NO_ID {
                continue;
            }
            let Cell::Text(name) = col.cell(r) else {
                ctx.bad
                    .report(batch.row(r), "missing tag", "the tag is empty")?;
                continue;
            };
            match self.index(load, name, true, ctx)? {
                Ok(i) => {
                    if let State::Ready(s) = &mut self.states[i] {
                        s.push_flag(id);
                    }
                }
                Err((reason, detail)) => ctx.bad.report(batch.row(r), &reason, detail)?,
            }
        }
        Ok(())
    }

    /// [`Fields::tags`] for a column of dictionary codes: each dictionary entry is matched to
    /// its field once per dictionary, on its first use (so fields are declared in the order
    /// rows name them, as for plain text). The batch's ids are then grouped by field (a
    /// counting sort, row order kept within a field) and each field takes its run at once.
    #[allow(clippy::too_many_arguments)]
    fn coded_tags(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        base: usize,
        ids: &[u32],
        coded: &Coded,
        valid: &[bool],
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        let entries = coded.dict.texts.len();
        if self.dict_id != coded.dict.id {
            self.dict_id = coded.dict.id;
            self.by_code.clear();
            self.by_code.resize(entries, UNMATCHED);
        }
        let mut slots = std::mem::take(&mut self.slots);
        slots.clear();
        for (r, (&id, &code)) in ids.iter().zip(&coded.codes[base..]).enumerate() {
            let r = base + r;
            if id == NO_ID {
                slots.push(UNMATCHED);
                continue;
            }
            if !valid[r] {
                slots.push(UNMATCHED);
                ctx.bad
                    .report(batch.row(r), "missing tag", "the tag is empty")?;
                continue;
            }
            let i = match self.by_code.get(code as usize) {
                Some(&i) if i != UNMATCHED => i,
                _ => match self.index(load, coded.text(code), true, ctx)? {
                    Ok(i) => {
                        if let Some(slot) = self.by_code.get_mut(code as usize) {
                            *slot = i as u32;
                        }
                        i as u32
                    }
                    Err((reason, detail)) => {
                        slots.push(UNMATCHED);
                        ctx.bad.report(batch.row(r), &reason, detail)?;
                        continue;
                    }
                },
            };
            slots.push(i);
        }
        let counts = &mut self.counts;
        counts.clear();
        counts.resize(self.states.len() + 1, 0);
        for &i in &slots {
            if i != UNMATCHED {
                counts[i as usize + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        // `counts[i]` is now where field `i`'s ids start; it is advanced past them below.
        let grouped = &mut self.grouped;
        grouped.clear();
        grouped.resize(counts[self.states.len()], 0);
        for (&i, &id) in slots.iter().zip(ids) {
            if i != UNMATCHED {
                let at = &mut counts[i as usize];
                grouped[*at] = id;
                *at += 1;
            }
        }
        let mut start = 0;
        for (state, &end) in self.states.iter_mut().zip(counts.iter()) {
            if end > start
                && let State::Ready(s) = state
            {
                s.push_flags(&grouped[start..end]);
            }
            start = end;
        }
        self.slots = slots;
        Ok(())
    }

    /// [`Fields::coded_tags`] for a batch whose runs of a user's rows are grouped by tag
    /// ([`Batch::groups`]), every run's id in `run_ids`: tags not matched yet are matched in
    /// the order rows first name them, then each field takes the ids of its runs at once.
    /// `false`, with no flag given, when some tag does not make a field (its rows must be
    /// reported in order by [`Fields::coded_tags`]).
    fn grouped_tags(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        run_ids: &[u32],
        tag: usize,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<bool> {
        let Data::Coded(coded) = &batch.cols[tag].data else {
            return Ok(false);
        };
        let g = &batch.groups;
        if self.dict_id != coded.dict.id {
            self.dict_id = coded.dict.id;
            self.by_code.clear();
            self.by_code.resize(coded.dict.texts.len(), UNMATCHED);
        }
        let codes = g.first_row.len();
        let mut field_of = vec![UNMATCHED; codes];
        let mut fresh: Vec<(u32, u32)> = Vec::new();
        for (c, &first) in g.first_row.iter().enumerate() {
            if first == u32::MAX {
                continue;
            }
            match self.by_code.get(c) {
                Some(&i) if i != UNMATCHED => field_of[c] = i,
                _ => fresh.push((first, c as u32)),
            }
        }
        fresh.sort_unstable();
        for (_, c) in fresh {
            match self.index(load, coded.text(c), true, ctx)? {
                Ok(i) => {
                    field_of[c as usize] = i as u32;
                    if let Some(slot) = self.by_code.get_mut(c as usize) {
                        *slot = i as u32;
                    }
                }
                Err(_) => return Ok(false),
            }
        }
        let mut ids = std::mem::take(&mut self.grouped);
        for (c, &i) in field_of.iter().enumerate() {
            let runs = &g.runs[g.starts[c] as usize..g.starts[c + 1] as usize];
            if runs.is_empty() {
                continue;
            }
            if let Some(State::Ready(s)) = self.states.get_mut(i as usize) {
                ids.clear();
                ids.extend(runs.iter().map(|&r| run_ids[r as usize]));
                s.push_flags(&ids);
            }
        }
        self.grouped = ids;
        Ok(true)
    }

    /// Stages each row's value of `batch` from row `base` on, `ids[r]` being the id of row
    /// `base + r`.
    #[allow(clippy::too_many_arguments)]
    fn values(
        &mut self,
        load: &mut Load<'_>,
        batch: &Batch,
        base: usize,
        ids: &[u32],
        field: usize,
        value: usize,
        ctx: &mut Ctx<'_, '_>,
    ) -> Result<()> {
        let names = &batch.cols[field];
        let values = &batch.cols[value];
        for (r, &id) in ids.iter().enumerate() {
            let r = base + r;
            if id == NO_ID {
                continue;
            }
            let row = batch.row(r);
            let Cell::Text(name) = names.cell(r) else {
                ctx.bad
                    .report(row, "missing field name", "the field name is empty")?;
                continue;
            };
            let i = match self.index(load, name, false, ctx)? {
                Ok(i) => i,
                Err((reason, detail)) => {
                    ctx.bad.report(row, &reason, detail)?;
                    continue;
                }
            };
            let cell = values.cell(r);
            if cell == Cell::Null {
                ctx.bad.report(
                    row,
                    "missing value",
                    format!("no value for `{}`", self.names[i]),
                )?;
                continue;
            }
            match &mut self.states[i] {
                State::Skipped => {}
                State::Ready(s) => match s.convert(cell) {
                    Ok(v) => s.push(load, id, v)?,
                    Err(why) => ctx.bad.report(row, &s.reason, why)?,
                },
                State::Pending(sample) => {
                    let Cell::Text(t) = cell else {
                        return Err(crate::Error::Internal(
                            "a pending field with typed values".into(),
                        ));
                    };
                    sample.push((id, row, t.to_vec()));
                    if sample.len() >= LONG_SAMPLE {
                        self.decide(load, i, ctx)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Decides the kind of pending field `i` from its sample and stages the sample.
    fn decide(&mut self, load: &mut Load<'_>, i: usize, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        if !matches!(self.states[i], State::Pending(_)) {
            return Ok(());
        }
        let State::Pending(sample) = std::mem::replace(&mut self.states[i], State::Skipped) else {
            unreachable!("checked above")
        };
        let name = self.names[i].clone();
        let inferred = infer_text(
            sample.iter().map(|s| s.2.as_slice()),
            ctx.options.float_scale(),
            ctx.options.enum_max_distinct(),
        );
        let kind = match inferred {
            Inferred::Kind(FieldKind::Enum) => {
                let mut seen = HashSet::new();
                if sample.iter().all(|s| seen.insert(s.0)) {
                    FieldKind::Enum
                } else {
                    FieldKind::Set
                }
            }
            Inferred::Kind(k) => k,
            Inferred::Empty => return Ok(()),
            Inferred::HighCardinality(n) => {
                return Err(ctx.error(
                    None,
                    format!(
                        "field `{name}` has {n} distinct strings in its first {} values: map it \
                         (kind = \"enum\" or \"set\") or skip it",
                        sample.len()
                    ),
                ));
            }
        };
        let mut s = self.sink(load, &name, kind, ctx)?;
        for (id, row, text) in &sample {
            match s.convert(Cell::Text(text)) {
                Ok(v) => s.push(load, *id, v)?,
                Err(why) => ctx.bad.report(*row, &s.reason, why)?,
            }
        }
        self.states[i] = State::Ready(Box::new(s));
        Ok(())
    }

    fn flush(&mut self, load: &mut Load<'_>) -> Result<()> {
        for s in &mut self.states {
            if let State::Ready(s) = s {
                s.flush(load)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, load: &mut Load<'_>, ctx: &mut Ctx<'_, '_>) -> Result<()> {
        self.states.par_iter_mut().for_each(|s| {
            if let State::Ready(s) = s {
                s.seal();
            }
        });
        for i in 0..self.states.len() {
            self.decide(load, i, ctx)?;
            if let State::Ready(s) = &mut self.states[i] {
                s.finish(load)?;
            }
        }
        Ok(())
    }
}
