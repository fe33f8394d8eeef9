//! The key column of a batch to user ids, a batch at a time.

use super::source::{Batch, Cell, Col, Data, TextsAsStr};
use super::{Ctx, import_error};
use crate::error::Result;
use crate::ids::{KeyKind, KeyRef};
use crate::table::{KeyFinder, Load};

/// Marks a row whose key is unusable.
pub(crate) const NO_ID: u32 = u32::MAX;

/// Reusable buffers of [`resolve`].
#[derive(Debug, Default)]
pub(crate) struct KeyScratch {
    /// Decimal renderings of integer keys of a string-keyed table.
    text: String,
    ends: Vec<usize>,
    uniq_ids: Vec<u32>,
    slots: Vec<u32>,
}

/// The id of every row of `rows` of `batch` (by the key column `col`) into `ids` (`ids[j]` for
/// row `rows.start + j`); [`NO_ID`] for rows whose key is missing or invalid, which are reported
/// to `ctx`'s bad-row accounting. Consecutive rows with the same key are looked up once.
pub(crate) fn resolve(
    load: &mut Load<'_>,
    batch: &Batch,
    rows: std::ops::Range<usize>,
    col: usize,
    ctx: &mut Ctx<'_, '_>,
    scratch: &mut KeyScratch,
    ids: &mut Vec<u32>,
) -> Result<()> {
    let key_col: &Col = &batch.cols[col];
    let kind = load.key_kind();
    let base = rows.start;
    let n = rows.len();
    // Integer keys of a string-keyed table are rendered in decimal first, so that the key
    // references below can borrow them.
    scratch.text.clear();
    scratch.ends.clear();
    if kind == KeyKind::Str {
        for i in rows.clone() {
            if let Cell::Int(v) = key_col.cell(i) {
                use std::fmt::Write as _;
                let _ = write!(scratch.text, "{v}");
            }
            scratch.ends.push(scratch.text.len());
        }
    }
    let mut uniq: Vec<KeyRef<'_>> = Vec::with_capacity(n / 2 + 1);
    scratch.slots.clear();
    if let (KeyKind::U64, Data::Int(values)) = (kind, &key_col.data) {
        // Integer keys of an integer-keyed table: compared and converted without cells.
        let mut last = 0i64;
        for (i, (&v, &valid)) in values[rows.clone()]
            .iter()
            .zip(&key_col.valid[rows.clone()])
            .enumerate()
        {
            let i = base + i;
            let previous = scratch.slots.last().copied().unwrap_or(NO_ID);
            if valid && v == last && previous != NO_ID {
                scratch.slots.push(previous);
                continue;
            }
            last = v;
            match u64::try_from(v) {
                Ok(k) if valid => {
                    scratch.slots.push(uniq.len() as u32);
                    uniq.push(KeyRef::U64(k));
                }
                _ => {
                    scratch.slots.push(NO_ID);
                    let (category, reason) = if valid {
                        ("invalid key", format!("key {v} is negative"))
                    } else {
                        ("missing key", "missing key".to_owned())
                    };
                    ctx.bad.report(batch.row(i), category, reason)?;
                }
            }
        }
        return finish(load, ctx, &scratch.slots, &mut scratch.uniq_ids, &uniq, ids);
    }
    let mut last: Option<Cell<'_>> = None;
    for i in rows {
        let cell = key_col.cell(i);
        let previous = scratch.slots.last().copied().unwrap_or(NO_ID);
        if last == Some(cell) && previous != NO_ID {
            scratch.slots.push(previous);
            continue;
        }
        last = Some(cell);
        let key = match (kind, cell) {
            (_, Cell::Null) => Err("missing key".to_owned()),
            (KeyKind::Str, Cell::Text(b)) => std::str::from_utf8(b)
                .map(KeyRef::Str)
                .map_err(|_| "key is not valid UTF-8".to_owned()),
            (KeyKind::Str, Cell::Int(_)) => {
                let j = i - base;
                let start = if j == 0 { 0 } else { scratch.ends[j - 1] };
                Ok(KeyRef::Str(&scratch.text[start..scratch.ends[j]]))
            }
            (KeyKind::U64, Cell::Int(v)) => u64::try_from(v)
                .map(KeyRef::U64)
                .map_err(|_| format!("key {v} is negative")),
            (KeyKind::U64, Cell::Text(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(KeyRef::U64)
                .ok_or_else(|| {
                    format!(
                        "key `{}` is not an unsigned integer (the table's keys are)",
                        String::from_utf8_lossy(b)
                    )
                }),
            (_, other) => Err(format!("a key cannot be {other:?}")),
        };
        match key {
            Ok(k) => {
                scratch.slots.push(uniq.len() as u32);
                uniq.push(k);
            }
            Err(reason) => {
                scratch.slots.push(NO_ID);
                let category = if reason.starts_with("missing") {
                    "missing key"
                } else {
                    "invalid key"
                };
                ctx.bad.report(batch.row(i), category, reason)?;
            }
        }
    }
    finish(load, ctx, &scratch.slots, &mut scratch.uniq_ids, &uniq, ids)
}

/// The ids of the runs' keys of `batch` (key column `col`, runs derived) among the table's
/// users, found on a decoding worker, off the import's thread: `out` (reused) holds each run's
/// id or `None` for a key that is not a user's. `None` when the keys need converting to the
/// table's kind, or some run's key is missing or invalid: the import's thread resolves such
/// batches itself, reporting bad rows in order.
pub(crate) fn find_runs(
    base: &KeyFinder,
    batch: &Batch,
    col: usize,
    mut out: Vec<Option<u32>>,
) -> Option<Vec<Option<u32>>> {
    // The keys go to the lookup as they are read, not collected first: a vector of them per
    // batch was a fresh allocation each time, faulted in anew.
    let keys = run_keys(base.kind(), batch, col)?;
    out.clear();
    let mut all = true;
    let keys = keys.map_while(|key| {
        all &= key.is_some();
        key
    });
    base.find(keys, &mut out).ok()?;
    all.then_some(out)
}

/// The number of text keys in the key column `col` of `batch` and their bytes in all (both 0
/// for other columns): what sizes the key dictionary of a load before it reads the file.
pub(crate) fn key_bytes(batch: &Batch, col: usize) -> (u64, u64) {
    let col = &batch.cols[col];
    (0..col.valid.len()).fold((0, 0), |(n, bytes), i| match col.cell(i) {
        Cell::Text(t) => (n + 1, bytes + t.len() as u64),
        _ => (n, bytes),
    })
}

/// Each run's key of `batch` (key column `col`, runs derived) for a table of `kind`, when the
/// column holds the table's kind already: integers of an integer-keyed table (read with the
/// runs) or strings of a string-keyed one. `None` for other columns, and when some run's key
/// is missing or invalid.
fn plain_run_keys(kind: KeyKind, batch: &Batch, col: usize) -> Option<Vec<KeyRef<'_>>> {
    let keys = run_keys(kind, batch, col)?;
    // Sized up front: collecting into an `Option<Vec>` would grow the vector as it goes.
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        out.push(key?);
    }
    Some(out)
}

/// Each run's key of `batch` as [`plain_run_keys`] finds them, one at a time, without
/// collecting them: `None` for a run whose key is missing or invalid. `None` altogether for a
/// column of another kind than the table's.
fn run_keys(
    kind: KeyKind,
    batch: &Batch,
    col: usize,
) -> Option<impl ExactSizeIterator<Item = Option<KeyRef<'_>>>> {
    enum From<'b> {
        Ints(&'b [i64]),
        Coded {
            codes: &'b [u32],
            in_dict: usize,
            dict: TextsAsStr<'b>,
            extra: TextsAsStr<'b>,
        },
        Texts(TextsAsStr<'b>),
    }
    let (_, starts) = batch.runs.split_last()?;
    let key_col: &Col = &batch.cols[col];
    let valid = &key_col.valid[..];
    let from = match (kind, &key_col.data) {
        (KeyKind::U64, Data::Int(_)) => From::Ints(
            batch
                .run_keys
                .as_deref()
                .filter(|k| k.len() == starts.len())?,
        ),
        // The dictionary's and the plain pages' strings are validated a buffer at a time.
        (KeyKind::Str, Data::Coded(c)) => From::Coded {
            codes: &c.codes,
            in_dict: c.dict.texts.len(),
            dict: TextsAsStr::new(&c.dict.texts),
            extra: TextsAsStr::new(&c.extra),
        },
        (KeyKind::Str, Data::Text(t)) => From::Texts(TextsAsStr::new(t)),
        _ => return None,
    };
    Some(starts.iter().enumerate().map(move |(j, &i)| {
        let i = i as usize;
        match &from {
            From::Ints(keys) => u64::try_from(keys[j]).ok().map(KeyRef::U64),
            _ if !valid[i] => None,
            From::Coded {
                codes,
                in_dict,
                dict,
                extra,
            } => {
                let code = codes[i] as usize;
                match code.checked_sub(*in_dict) {
                    None => dict.get(code),
                    Some(e) => extra.get(e),
                }
                .map(KeyRef::Str)
            }
            From::Texts(texts) => texts.get(i).map(KeyRef::Str),
        }
    }))
}

/// The ids of `keys` into `out`, new keys added to the load; a key the table cannot take is an
/// import error of the file.
fn users_of(
    load: &mut Load<'_>,
    ctx: &Ctx<'_, '_>,
    keys: &[KeyRef<'_>],
    out: &mut Vec<u32>,
) -> Result<()> {
    load.users_many(keys, out).map_err(|e| match e {
        crate::Error::InvalidArgument(m) => import_error(ctx.path, None, m),
        other => other,
    })
}

/// The runs' ids of `batch` into `run_ids` when a worker found every run's key among the
/// table's users ([`find_runs`]); `false` otherwise.
fn found_runs(batch: &Batch, run_ids: &mut Vec<u32>) -> bool {
    let runs = batch.runs.len().saturating_sub(1);
    match &batch.run_found {
        Some(found) if runs > 0 && found.len() == runs && found.iter().all(Option::is_some) => {
            run_ids.clear();
            // Mapped, not flattened: an iterator of known length extends the vector in one
            // tight loop (every one is `Some`, checked above).
            run_ids.extend(found.iter().map(|id| id.unwrap_or(NO_ID)));
            true
        }
        _ => false,
    }
}

/// Every row's id of `batch` into `ids` when a worker found every run's key among the table's
/// users ([`find_runs`]); `false`, with `ids` cleared, otherwise.
pub(crate) fn found_rows(batch: &Batch, run_ids: &mut Vec<u32>, ids: &mut Vec<u32>) -> bool {
    ids.clear();
    if !found_runs(batch, run_ids) {
        return false;
    }
    for (w, &id) in batch.runs.windows(2).zip(run_ids.iter()) {
        ids.extend(std::iter::repeat_n(id, (w[1] - w[0]) as usize));
    }
    ids.len() == batch.len()
}

/// [`resolve`] for a batch whose runs of equal keys were derived ([`Batch::runs`]): the id of
/// each run into `run_ids` (the workers' [`find_runs`], when they found them all). `false`,
/// with nothing resolved or reported, when some run's key is missing or invalid: [`resolve`]
/// then goes row by row, reporting the bad rows in order.
pub(crate) fn resolve_runs(
    load: &mut Load<'_>,
    batch: &Batch,
    col: usize,
    ctx: &mut Ctx<'_, '_>,
    scratch: &mut KeyScratch,
    run_ids: &mut Vec<u32>,
) -> Result<bool> {
    let Some((_, starts)) = batch.runs.split_last() else {
        return Ok(false);
    };
    if found_runs(batch, run_ids) {
        return Ok(true);
    }
    let key_col: &Col = &batch.cols[col];
    let kind = load.key_kind();
    if let Some(uniq) = plain_run_keys(kind, batch, col) {
        users_of(load, ctx, &uniq, run_ids)?;
        return Ok(true);
    }
    if matches!(
        (kind, &key_col.data),
        (KeyKind::U64, Data::Int(_)) | (KeyKind::Str, Data::Text(_) | Data::Coded(_))
    ) {
        // Some run's key is missing or invalid.
        return Ok(false);
    }
    // Keys to convert: integers of a string-keyed table (rendered in decimal first, so that
    // the key references below can borrow them), strings of an integer-keyed one.
    scratch.text.clear();
    scratch.ends.clear();
    if kind == KeyKind::Str {
        for &i in starts {
            if let Cell::Int(v) = key_col.cell(i as usize) {
                use std::fmt::Write as _;
                let _ = write!(scratch.text, "{v}");
            }
            scratch.ends.push(scratch.text.len());
        }
    }
    let mut uniq: Vec<KeyRef<'_>> = Vec::with_capacity(starts.len());
    for (j, &i) in starts.iter().enumerate() {
        let key = match (kind, key_col.cell(i as usize)) {
            (KeyKind::U64, Cell::Text(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(KeyRef::U64),
            (KeyKind::Str, Cell::Int(_)) => {
                let start = if j == 0 { 0 } else { scratch.ends[j - 1] };
                Some(KeyRef::Str(&scratch.text[start..scratch.ends[j]]))
            }
            _ => None,
        };
        match key {
            Some(k) => uniq.push(k),
            None => return Ok(false),
        }
    }
    users_of(load, ctx, &uniq, run_ids)?;
    Ok(true)
}

/// Resolves the distinct keys `uniq` and spreads their ids over the rows (`scratch.slots`).
fn finish(
    load: &mut Load<'_>,
    ctx: &Ctx<'_, '_>,
    slots: &[u32],
    uniq_ids: &mut Vec<u32>,
    uniq: &[KeyRef<'_>],
    ids: &mut Vec<u32>,
) -> Result<()> {
    users_of(load, ctx, uniq, uniq_ids)?;
    ids.clear();
    ids.extend(slots.iter().map(|&s| {
        if s == NO_ID {
            NO_ID
        } else {
            uniq_ids[s as usize]
        }
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::import::pages::{Coded, Dictionary};
    use crate::import::source::{Col, Texts};

    fn texts(values: &[&[u8]]) -> Texts {
        let mut t = Texts::default();
        for v in values {
            t.push(v);
        }
        t
    }

    /// A batch of one dictionary-coded key column: codes below the dictionary's length are its
    /// strings, the others the plain pages' `extra`; every row starts a run.
    fn coded(dict: &[&[u8]], extra: &[&[u8]], codes: &[u32]) -> Batch {
        Batch {
            cols: vec![Col {
                valid: vec![true; codes.len()],
                data: Data::Coded(Coded {
                    dict: Arc::new(Dictionary {
                        id: 1,
                        texts: texts(dict),
                    }),
                    extra: texts(extra),
                    codes: codes.to_vec(),
                }),
            }],
            runs: (0..=codes.len() as u32).collect(),
            ..Batch::default()
        }
    }

    fn keys_of(batch: &Batch) -> Option<Vec<String>> {
        plain_run_keys(KeyKind::Str, batch, 0).map(|keys| {
            keys.iter()
                .map(|k| match k {
                    KeyRef::Str(s) => s.to_string(),
                    KeyRef::U64(v) => v.to_string(),
                })
                .collect()
        })
    }

    /// Run keys come from the dictionary and the plain pages alike, each value validated as
    /// UTF-8 on its own even though the buffers are validated whole: a value that is not
    /// UTF-8, or only the half of a character whose other half is the next value, refuses the
    /// batch (the import's thread then reports its rows), wherever it is.
    #[test]
    fn run_keys_are_each_values_own_utf8() {
        let dict: &[&[u8]] = &[b"u1", "é".as_bytes(), b"u3"];
        let batch = coded(dict, &[b"u4", b"u5"], &[0, 3, 1, 4, 2]);
        assert_eq!(
            keys_of(&batch),
            Some(["u1", "u4", "é", "u5", "u3"].map(String::from).to_vec())
        );
        // Not UTF-8 in the plain pages, and in the dictionary.
        assert_eq!(keys_of(&coded(dict, &[b"u4", b"\xff"], &[0, 4])), None);
        assert_eq!(keys_of(&coded(&[b"u1", b"\xfe"], &[b"u4"], &[2, 1])), None);
        // "é" split over two values: the buffer is UTF-8, neither value is.
        let split: &[&[u8]] = &[b"\xc3", b"\xa9"];
        assert_eq!(keys_of(&coded(dict, split, &[3])), None);
        assert_eq!(keys_of(&coded(split, &[b"u4"], &[2, 1])), None);
        // Plain text columns (CSV) the same way.
        let text = |values: &[&[u8]]| Batch {
            cols: vec![Col {
                valid: vec![true; values.len()],
                data: Data::Text(texts(values)),
            }],
            runs: (0..=values.len() as u32).collect(),
            ..Batch::default()
        };
        assert_eq!(
            keys_of(&text(&[b"u1", "é".as_bytes()])),
            Some(["u1", "é"].map(String::from).to_vec())
        );
        assert_eq!(keys_of(&text(split)), None);
        assert_eq!(keys_of(&text(&[b"u1", b"\xff"])), None);
        // Invalid values no run starts at are never read.
        assert_eq!(
            keys_of(&coded(&[b"\xff", b"u2"], &[b"u4", b"\xfe"], &[1, 2])),
            Some(["u2", "u4"].map(String::from).to_vec())
        );
        // One at a time (as the decoding workers look them up), an invalid key is a `None` in
        // its place, among the others.
        let each = |batch: &Batch| -> Vec<Option<String>> {
            run_keys(KeyKind::Str, batch, 0)
                .unwrap()
                .map(|k| k.map(|k| format!("{k:?}")))
                .collect()
        };
        assert_eq!(
            each(&coded(dict, &[b"u4", b"\xff"], &[0, 4, 2])),
            [
                Some(format!("{:?}", KeyRef::Str("u1"))),
                None,
                Some(format!("{:?}", KeyRef::Str("u3")))
            ]
        );
    }
}
