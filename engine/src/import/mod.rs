//! File import: CSV, TSV and Parquet files loaded into a table as one new version (feature
//! `import`).
//!
//! Three shapes of file ([`Shape`]):
//!
//! - **wide**: one row per user, a key column, every other column a field. Kinds come from the
//!   mapping, else from the field's kind in the catalog, else from the column: Parquet types
//!   (BOOLEAN → flag; integers → int; DECIMAL → decimal at its own scale; FLOAT/DOUBLE → decimal
//!   at the float scale, default [`DEFAULT_FLOAT_SCALE`]; DATE, TIMESTAMP, INT96 → timestamp;
//!   strings → enum) or, for text, the rules of [`infer`](self#inference) applied to the first
//!   [`SAMPLE_ROWS`] rows. A `false` or missing flag leaves the user out of it.
//! - **long**: `(key, tag)` rows make flags (the tag is the field path); `(key, field, value)`
//!   rows make values (enum, set, int, decimal, timestamp). Each field's kind is decided from the
//!   mapping, the catalog, the value column's Parquet type, or its first [`LONG_SAMPLE`] values;
//!   a field any user has two values of within that sample is a set.
//! - **events**: `(key, event, timestamp or day[, count])` rows: behaviour events.
//!
//! Columns are found by name: the key column is `--key`, the mapping's `key`, or the first of
//! `key`, `user`, `user_id`, `id`; the other columns of a long or events file are taken in file
//! order (or by the names `tag`, `field`, `value`, `event`, `timestamp`, `day`, `count`).
//!
//! Every file of one import goes into one [`Load`](crate::Load): the version appears atomically when all of
//! them are read, or not at all. A row that does not fit (a missing key, a value that does not
//! parse as its field's kind, invalid UTF-8, a ragged CSV row) ends the import with an
//! [`Error::Import`] naming the file, the row and the reason, and nothing is published; with
//! [`ImportOptions::skip_bad_rows`] such rows are skipped and counted per reason
//! ([`ImportSummary::skipped`]). A malformed file (no header, truncated Parquet, a missing key
//! column, a column type that cannot be a field) always ends the import.
//!
//! Files are read in batches of rows (Parquet: row group by row group, only the columns
//! needed), so memory holds the load's staged data and a few batches, not the file. Parquet row
//! groups are decoded on worker threads, one per core, a few batches ahead of the import, which
//! takes their batches in file order (`ordered`): rows, errors and bad rows come exactly as a
//! sequential read gives them. Keys are
//! resolved a batch at a time ([`Load::users_many`](crate::Load::users_many)), consecutive repeats of a key once; for
//! long and events Parquet files the workers already look the keys up among the users the table
//! held before the load, so the import's thread resolves only batches holding new or bad keys.
//! Flags are gathered as sorted id batches into bitmaps.
//!
//! # Inference
//! Text columns (every CSV column, Parquet strings of long files) follow the rules of the
//! `infer` module: all booleans (`true/false/yes/no/t/f/y/n`, or all `0`/`1`) → flag; all
//! integers → int; all decimals → decimal with the largest sampled scale (exponents: the float
//! scale); all dates or date-times → timestamp (no offset: UTC); other strings → enum when at
//! most [`DEFAULT_ENUM_MAX_DISTINCT`] distinct values are sampled, otherwise the import asks for
//! a mapping.

mod events;
mod infer;
mod keys;
mod long;
mod mapping;
mod ordered;
mod pages;
mod sink;
mod source;
#[cfg(test)]
mod tests;
mod wide;

use std::path::{Path, PathBuf};

pub use mapping::{FieldMapping, Mapping};

use crate::error::{Error, Result};
use crate::table::{LoadSummary, Table};
use source::BadRows;

/// Scale of decimals loaded from floating point values unless the mapping sets one.
pub const DEFAULT_FLOAT_SCALE: u8 = 2;
/// Most distinct values a sampled string column may have to be inferred an enum.
pub const DEFAULT_ENUM_MAX_DISTINCT: usize = 1000;
/// Rows of a wide text file sampled to infer its column kinds.
pub const SAMPLE_ROWS: usize = 10_000;
/// Values of a long file's field sampled to infer its kind.
pub const LONG_SAMPLE: usize = 1000;
/// Names taken for the key column when none is given, in order.
pub const KEY_NAMES: [&str; 4] = ["key", "user", "user_id", "id"];

/// Rows per batch read from a file.
const BATCH_ROWS: usize = 16 * 1024;

/// The shape of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One row per user, one column per field.
    Wide,
    /// `(key, tag)` or `(key, field, value)` rows.
    Long,
    /// `(key, event, timestamp or day[, count])` rows.
    Events,
}

impl Shape {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Wide => "wide",
            Shape::Long => "long",
            Shape::Events => "events",
        }
    }
}

/// The format of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// Apache Parquet.
    Parquet,
}

impl FileType {
    /// The type named by a file's extension (`.csv`, `.tsv`/`.tab`, `.parquet`/`.parq`/`.pq`).
    pub fn from_path(path: &Path) -> Option<FileType> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(FileType::Csv),
            "tsv" | "tab" => Some(FileType::Tsv),
            "parquet" | "parq" | "pq" => Some(FileType::Parquet),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Csv => "csv",
            FileType::Tsv => "tsv",
            FileType::Parquet => "parquet",
        }
    }
}

/// How to import files.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The shape of the files.
    pub shape: Shape,
    /// The format of the files; `None`: from each file's extension, else its first bytes.
    pub file_type: Option<FileType>,
    /// The CSV delimiter; `None`: `,` for CSV and `\t` for TSV.
    pub delimiter: Option<u8>,
    /// The key column; `None`: the mapping's, else the first of [`KEY_NAMES`] present.
    pub key: Option<String>,
    /// Renames, kinds, metadata and skipped columns.
    pub mapping: Mapping,
    /// Skip rows that do not fit (counting them per reason) instead of failing.
    pub skip_bad_rows: bool,
}

impl ImportOptions {
    /// Options for files of `shape`, everything else by default.
    pub fn new(shape: Shape) -> Self {
        Self {
            shape,
            file_type: None,
            delimiter: None,
            key: None,
            mapping: Mapping::default(),
            skip_bad_rows: false,
        }
    }

    fn float_scale(&self) -> u8 {
        self.mapping.float_scale.unwrap_or(DEFAULT_FLOAT_SCALE)
    }

    fn enum_max_distinct(&self) -> usize {
        self.mapping
            .enum_max_distinct
            .unwrap_or(DEFAULT_ENUM_MAX_DISTINCT)
    }
}

/// Rows skipped for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRows {
    /// Why (e.g. "missing key", "invalid int for `age`").
    pub reason: String,
    /// How many rows.
    pub rows: u64,
    /// The file of the first such row.
    pub first_file: PathBuf,
    /// The first such row (1-based within its file).
    pub first_row: u64,
}

/// What an import read and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The published load.
    pub load: LoadSummary,
    /// Files read.
    pub files: usize,
    /// Data rows read.
    pub rows: u64,
    /// Rows skipped, per reason (empty unless [`ImportOptions::skip_bad_rows`]).
    pub skipped: Vec<SkippedRows>,
    /// Bytes of the files read.
    pub bytes: u64,
    /// Paths of the fields loaded, sorted.
    pub fields: Vec<String>,
}

impl ImportSummary {
    /// Rows skipped in all.
    pub fn skipped_rows(&self) -> u64 {
        self.skipped.iter().map(|s| s.rows).sum()
    }
}

/// How far an import is, as given to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportProgress {
    /// Files finished.
    pub files_done: usize,
    /// Data rows read so far.
    pub rows: u64,
    /// Bytes of the files read so far (approximate within a file).
    pub bytes: u64,
}

/// Imports `files` into `table` as version `label` (see the module docs).
pub fn import_files(
    table: &Table,
    label: &str,
    files: &[PathBuf],
    options: &ImportOptions,
) -> Result<ImportSummary> {
    import_files_with(table, label, files, options, &mut |_| true)
}

/// [`import_files`], calling `progress` after every batch of rows; when it returns `false` the
/// import stops with an error and publishes nothing.
pub fn import_files_with(
    table: &Table,
    label: &str,
    files: &[PathBuf],
    options: &ImportOptions,
    progress: &mut dyn FnMut(&ImportProgress) -> bool,
) -> Result<ImportSummary> {
    if files.is_empty() {
        return Err(Error::InvalidArgument("no file to import".into()));
    }
    let mut load = table.load(label)?;
    let mut bad = BadRows {
        skip: options.skip_bad_rows,
        file: PathBuf::new(),
        counts: Default::default(),
    };
    let mut state = Progressing {
        done: ImportProgress::default(),
        bytes_before: 0,
        callback: progress,
    };
    let mut events = events::Events::default();
    for path in files {
        bad.file.clone_from(path);
        if !path.is_file() {
            return Err(import_error(path, None, "no such file"));
        }
        let file_type = match options.file_type {
            Some(t) => t,
            None => detect(path)?,
        };
        let delimiter = options.delimiter.unwrap_or(match file_type {
            FileType::Tsv => b'\t',
            _ => b',',
        });
        // The Parquet decoder is a large body of third-party code: a panic on hostile bytes
        // must fail this import, not the process.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut src = source::open(path, file_type, delimiter)?;
            let mut ctx = Ctx {
                path,
                options,
                bad: &mut bad,
                progress: &mut state,
            };
            match options.shape {
                Shape::Wide => wide::import(&mut load, &mut *src, &mut ctx),
                Shape::Long => long::import(&mut load, &mut *src, &mut ctx),
                Shape::Events => events.import(&mut load, &mut *src, &mut ctx),
            }?;
            Ok::<u64, Error>(src.bytes_read())
        }));
        let bytes = match outcome {
            Ok(r) => r?,
            Err(_) => {
                return Err(import_error(
                    path,
                    None,
                    "the file could not be decoded (its reader failed)",
                ));
            }
        };
        state.done.files_done += 1;
        state.bytes_before += bytes;
        state.done.bytes = state.bytes_before;
    }
    let mut fields = load.declared_paths();
    fields.sort();
    let rows = state.done.rows;
    let bytes = state.bytes_before;
    let summary = load.commit()?;
    let skipped = bad
        .counts
        .into_iter()
        .map(|(reason, (rows, first_file, first_row))| SkippedRows {
            reason,
            rows,
            first_file,
            first_row,
        })
        .collect();
    Ok(ImportSummary {
        load: summary,
        files: files.len(),
        rows,
        skipped,
        bytes,
        fields,
    })
}

/// The file type of `path` from its extension, else from its first bytes (`PAR1`: Parquet).
fn detect(path: &Path) -> Result<FileType> {
    if let Some(t) = FileType::from_path(path) {
        return Ok(t);
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if std::io::Read::read_exact(&mut f, &mut magic).is_ok() && &magic == b"PAR1" {
        return Ok(FileType::Parquet);
    }
    Err(import_error(
        path,
        None,
        "cannot tell the file type from its name; give it (csv, tsv or parquet)",
    ))
}

/// An [`Error::Import`].
pub(crate) fn import_error(path: &Path, row: Option<u64>, reason: impl Into<String>) -> Error {
    Error::Import {
        path: path.to_owned(),
        row,
        reason: reason.into(),
    }
}

/// The label of a version loaded today: the UTC date, `YYYY-MM-DD`.
pub fn default_label() -> String {
    let (y, m, d) = infer::civil_from_days(crate::now_ms().div_euclid(infer::DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

struct Progressing<'p> {
    done: ImportProgress,
    bytes_before: u64,
    callback: &'p mut dyn FnMut(&ImportProgress) -> bool,
}

/// What a shape's reader shares with the import: the file, the options, bad-row accounting,
/// progress.
pub(crate) struct Ctx<'a, 'p> {
    path: &'a Path,
    options: &'a ImportOptions,
    bad: &'a mut BadRows,
    progress: &'a mut Progressing<'p>,
}

impl Ctx<'_, '_> {
    /// Counts `rows` more rows read and reports progress; an error if the caller stops.
    fn advance(&mut self, rows: usize, src: &dyn source::Source) -> Result<()> {
        let p = &mut *self.progress;
        p.done.rows += rows as u64;
        p.done.bytes = p.bytes_before + src.bytes_read();
        if !(p.callback)(&p.done) {
            return Err(import_error(self.path, None, "the import was stopped"));
        }
        Ok(())
    }

    fn error(&self, row: Option<u64>, reason: impl Into<String>) -> Error {
        import_error(self.path, row, reason)
    }

    /// The index of the key column.
    fn key_column(&self, columns: &[source::ColumnInfo]) -> Result<usize> {
        let wanted = self
            .options
            .key
            .as_deref()
            .or(self.options.mapping.key.as_deref());
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let found = match wanted {
            Some(k) => names.iter().position(|n| *n == k),
            None => KEY_NAMES
                .iter()
                .find_map(|k| names.iter().position(|n| n.eq_ignore_ascii_case(k))),
        };
        found.ok_or_else(|| {
            let what = match wanted {
                Some(k) => format!("no key column `{k}`"),
                None => format!(
                    "no key column (looked for {}; name it with --key)",
                    KEY_NAMES.join(", ")
                ),
            };
            self.error(
                None,
                format!("{what}; the columns are {}", names.join(", ")),
            )
        })
    }
}
