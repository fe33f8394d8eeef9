//! Reading files as batches of columns: CSV/TSV with the `csv` crate, Parquet with the `parquet`
//! crate's typed column readers (no arrow).
//!
//! A [`Source`] yields [`Batch`]es of at most a given number of rows, reading only the columns
//! asked for. Parquet is read one row group at a time, page by page, so memory stays bounded by
//! the batch size whatever the size of the file. Values keep the unit their file gives them
//! ([`SourceType`]); converting them to a field's kind is the shapes' business.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as Physical};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{
    BoolType, ByteArrayType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
    Int96Type,
};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;

use super::ordered::{Emit, Failed, MIN_DEPTH, Ordered};
use super::pages::{self, Coded, DictColumn, IntColumn};
use super::{FileType, import_error};
use crate::error::Result;
use crate::table::KeyFinder;

/// What a column's values are, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceType {
    /// Booleans.
    Bool,
    /// Integers in a unit.
    Int(Unit),
    /// Floating point numbers.
    Float,
    /// Text (CSV cells, Parquet strings and binaries); UTF-8 is checked where it matters.
    Text,
    /// A column this importer cannot read, and why (nested, unsupported type).
    Unsupported(String),
}

/// The unit of an integer column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Plain integers.
    Plain,
    /// A decimal: units of `10^-scale`.
    Decimal(u8),
    /// Days since 1970-01-01 (Parquet DATE).
    Days,
    /// Milliseconds since the Unix epoch (Parquet timestamps, converted on read).
    Millis,
}

impl SourceType {
    /// Human name, for messages.
    pub(crate) fn name(&self) -> String {
        match self {
            SourceType::Bool => "boolean".into(),
            SourceType::Int(Unit::Plain) => "integer".into(),
            SourceType::Int(Unit::Decimal(s)) => format!("decimal(scale {s})"),
            SourceType::Int(Unit::Days) => "date".into(),
            SourceType::Int(Unit::Millis) => "timestamp".into(),
            SourceType::Float => "floating point".into(),
            SourceType::Text => "string".into(),
            SourceType::Unsupported(why) => why.clone(),
        }
    }
}

/// A column of a file.
#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
    pub(crate) name: String,
    pub(crate) ty: SourceType,
}

/// Text values stored back to back.
#[derive(Debug, Default)]
pub(crate) struct Texts {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Texts {
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn push(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
        self.ends.push(self.bytes.len());
    }

    /// Appends the first `len` bytes of `rest` (all of it if shorter). A value of at most 16
    /// bytes, with 16 bytes in `rest`, is copied as those 16 bytes and cut back: a copy of a
    /// size known when compiling is a few instructions, one of a size known only at run time
    /// a call (per key of a long file, a twentieth of its decoding).
    #[inline]
    pub(crate) fn push_prefix(&mut self, rest: &[u8], len: usize) {
        let len = len.min(rest.len());
        let end = self.bytes.len() + len;
        match rest.first_chunk::<16>() {
            Some(chunk) if len <= 16 => self.bytes.extend_from_slice(chunk),
            _ => self.bytes.extend_from_slice(&rest[..len]),
        }
        self.bytes.truncate(end);
        self.ends.push(self.bytes.len());
    }

    /// The byte range of value `i`.
    #[inline]
    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Value `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.range(i)]
    }
}

/// The values of a [`Texts`] as UTF-8: the whole buffer is validated once, on first use, instead
/// of each value on its own.
pub(crate) struct TextsAsStr<'a> {
    texts: &'a Texts,
    all: std::cell::OnceCell<Option<&'a str>>,
}

impl<'a> TextsAsStr<'a> {
    pub(crate) fn new(texts: &'a Texts) -> Self {
        Self {
            texts,
            all: std::cell::OnceCell::new(),
        }
    }

    /// Value `i`, or `None` if it is not UTF-8 on its own. Out of a valid buffer, a value is
    /// exactly when it starts and ends on character boundaries.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        let texts = self.texts;
        match self
            .all
            .get_or_init(|| std::str::from_utf8(&texts.bytes).ok())
        {
            Some(all) => all.get(texts.range(i)),
            None => std::str::from_utf8(texts.get(i)).ok(),
        }
    }
}

/// Booleans packed 64 to a word: row `i` is bit `i % 64` of word `i / 64`.
#[derive(Debug, Default)]
pub(crate) struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub(crate) fn clear(&mut self) {
        self.words.clear();
        self.len = 0;
    }

    /// The words; bits past the last value are 0.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    /// Value `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> bool {
        i < self.len && self.words[i / 64] >> (i % 64) & 1 == 1
    }

    pub(crate) fn push(&mut self, b: bool) {
        if self.len.is_multiple_of(64) {
            self.words.push(0);
        }
        if let Some(w) = self.words.last_mut() {
            *w |= u64::from(b) << (self.len % 64);
        }
        self.len += 1;
    }

    /// Appends `values`, eight at a time where the words line up.
    pub(crate) fn extend(&mut self, values: &[bool]) {
        let mut rest = values;
        while !self.len.is_multiple_of(64) && !rest.is_empty() {
            self.push(rest[0]);
            rest = &rest[1..];
        }
        let mut chunks = rest.chunks_exact(64);
        for chunk in &mut chunks {
            let mut word = 0u64;
            for (k, eight) in chunk.chunks_exact(8).enumerate() {
                let bytes: [u8; 8] = std::array::from_fn(|i| u8::from(eight[i]));
                // Gathers the low bit of each byte (0 or 1) into the top byte.
                let packed = u64::from_le_bytes(bytes).wrapping_mul(0x0102_0408_1020_4080) >> 56;
                word |= packed << (8 * k);
            }
            self.words.push(word);
            self.len += 64;
        }
        for &b in chunks.remainder() {
            self.push(b);
        }
    }
}

/// The values of one column in a batch. Missing values have `valid[i] == false` and a
/// placeholder in the data.
#[derive(Debug)]
pub(crate) enum Data {
    Bool(Bits),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Text(Texts),
    /// Text as codes into a dictionary (dictionary-encoded Parquet strings).
    Coded(Coded),
}

/// One column of a batch.
#[derive(Debug)]
pub(crate) struct Col {
    pub(crate) valid: Vec<bool>,
    pub(crate) data: Data,
}

/// One value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a [u8]),
}

impl Col {
    fn new(ty: &SourceType) -> Self {
        let data = match ty {
            SourceType::Bool => Data::Bool(Bits::default()),
            SourceType::Int(_) => Data::Int(Vec::new()),
            SourceType::Float => Data::Float(Vec::new()),
            SourceType::Text | SourceType::Unsupported(_) => Data::Text(Texts::default()),
        };
        Col {
            valid: Vec::new(),
            data,
        }
    }

    fn clear(&mut self) {
        self.valid.clear();
        match &mut self.data {
            Data::Bool(v) => v.clear(),
            Data::Int(v) => v.clear(),
            Data::Float(v) => v.clear(),
            Data::Text(t) => t.clear(),
            Data::Coded(c) => c.clear(),
        }
    }

    /// Value `i`.
    #[inline]
    pub(crate) fn cell(&self, i: usize) -> Cell<'_> {
        if !self.valid[i] {
            return Cell::Null;
        }
        match &self.data {
            Data::Bool(v) => Cell::Bool(v.get(i)),
            Data::Int(v) => Cell::Int(v[i]),
            Data::Float(v) => Cell::Float(v[i]),
            Data::Text(t) => Cell::Text(t.get(i)),
            Data::Coded(c) => Cell::Text(c.text(c.codes[i])),
        }
    }
}

/// Rows read from a file: the columns asked for (others stay empty).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// 1-based row numbers within the file (the CSV header is not a row).
    pub(crate) rows: Rows,
    pub(crate) cols: Vec<Col>,
    /// What [`Derive`] asked for: the first row of each run of equal keys, then the number of
    /// rows (empty when not asked).
    pub(crate) runs: Vec<u32>,
    /// For an integer key column, each run's key, or `None` if some run's key is missing
    /// (read together here: the import's thread then touches no row of the column).
    pub(crate) run_keys: Option<Vec<i64>>,
    /// What [`Derive`] asked for: the runs grouped by dictionary code.
    pub(crate) groups: Groups,
    /// Each run's id among the table's users, if a worker found them
    /// ([`Source::find_keys`], [`keys::find_runs`](super::keys::find_runs)).
    pub(crate) run_found: Option<Vec<Option<u32>>>,
}

impl Batch {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The 1-based file row number of row `i`.
    #[inline]
    pub(crate) fn row(&self, i: usize) -> u64 {
        self.rows.get(i)
    }
}

/// The file row numbers of a batch's rows: a range (Parquet), or listed one by one (CSV, which
/// skips blank and ragged lines).
#[derive(Debug, Default)]
pub(crate) struct Rows {
    first: u64,
    len: usize,
    list: Vec<u64>,
}

impl Rows {
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.list.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows `first..first + n`, after none.
    pub(crate) fn set_range(&mut self, first: u64, n: usize) {
        self.list.clear();
        self.first = first;
        self.len = n;
    }

    /// Appends row `row` (listed rows only).
    pub(crate) fn push(&mut self, row: u64) {
        self.list.push(row);
        self.len = self.list.len();
    }

    /// Row `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> u64 {
        if self.list.is_empty() {
            debug_assert!(i < self.len);
            self.first + i as u64
        } else {
            self.list[i]
        }
    }
}

/// What the decoding derives from every batch for a shape, where it decodes (for Parquet, on
/// the worker threads, off the import's own thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Derive {
    /// The key column whose runs of equal values to find ([`Batch::runs`]).
    pub(crate) runs_of: Option<usize>,
    /// A column of dictionary codes to group the runs by ([`Batch::groups`]); needs `runs_of`.
    pub(crate) groups_of: Option<usize>,
}

/// The runs of a batch grouped by the dictionary code of one column (rows without a code
/// left out): the runs holding code `c` are `runs[starts[c]..starts[c + 1]]`, in row order (a
/// run holding a code twice is there twice).
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// Whether the batch is grouped (the column held dictionary codes).
    pub(crate) done: bool,
    /// Whether some row had no code (a null).
    pub(crate) nulls: bool,
    pub(crate) starts: Vec<u32>,
    pub(crate) runs: Vec<u32>,
    /// Per code, the first row holding it (`u32::MAX`: none).
    pub(crate) first_row: Vec<u32>,
    /// Scratch of the grouping.
    at: Vec<u32>,
}

impl Derive {
    /// Fills in what is asked of `batch`.
    pub(crate) fn apply(self, batch: &mut Batch) {
        batch.runs.clear();
        batch.groups.done = false;
        let mut run_keys = batch.run_keys.take().unwrap_or_default();
        run_keys.clear();
        let Some(key) = self.runs_of else { return };
        let col = &batch.cols[key];
        let n = col.valid.len();
        let runs = &mut batch.runs;
        match &col.data {
            Data::Int(v) => {
                let (v, valid) = (&v[..n], &col.valid[..n]);
                if all_true(valid) {
                    // Every key present (the usual case): only values can differ.
                    if let Some(&first) = v.first() {
                        runs.push(0);
                        run_keys.push(first);
                    }
                    for (i, w) in v.windows(2).enumerate() {
                        if w[0] != w[1] {
                            runs.push(i as u32 + 1);
                            run_keys.push(w[1]);
                        }
                    }
                    batch.run_keys = Some(run_keys);
                } else {
                    for i in 0..n {
                        if i == 0 || v[i] != v[i - 1] || valid[i] != valid[i - 1] {
                            runs.push(i as u32);
                        }
                    }
                }
            }
            Data::Coded(c) => {
                for i in 0..n {
                    if i == 0 || c.codes[i] != c.codes[i - 1] || col.valid[i] != col.valid[i - 1] {
                        runs.push(i as u32);
                    }
                }
            }
            _ => {
                for i in 0..n {
                    if i == 0 || col.cell(i) != col.cell(i - 1) {
                        runs.push(i as u32);
                    }
                }
            }
        }
        runs.push(n as u32);
        let Some(tags) = self.groups_of else { return };
        let col = &batch.cols[tags];
        let Data::Coded(coded) = &col.data else {
            return;
        };
        let codes = coded.dict.texts.len() + coded.extra.len();
        let valid = &col.valid[..n];
        let g = &mut batch.groups;
        if all_true(valid) {
            g.group(&coded.codes[..n], None, runs, codes);
        } else {
            g.group(&coded.codes[..n], Some(valid), runs, codes);
        }
    }
}

/// Whether every one of `v` is true (a word of flags at a time, without stopping early).
pub(crate) fn all_true(v: &[bool]) -> bool {
    v.chunks(256)
        .all(|c| c.iter().fold(true, |all, &b| all & b))
}

impl Groups {
    /// Groups `runs` (first rows, then the number of rows) by the codes of their rows, rows
    /// with `valid` false left out; there are `codes` distinct codes. Specialized for all rows
    /// valid (`None`).
    #[inline(always)]
    fn group(&mut self, row_codes: &[u32], valid: Option<&[bool]>, runs: &[u32], codes: usize) {
        let present = |r: usize| valid.is_none_or(|v| v[r]);
        self.nulls = valid.is_some();
        self.starts.clear();
        self.starts.resize(codes + 1, 0);
        self.first_row.clear();
        self.first_row.resize(codes, u32::MAX);
        // Rows per code (in `starts[c + 1]`), noting the row of each code's first.
        let counts = &mut self.starts[1..];
        for (r, &c) in row_codes.iter().enumerate() {
            if !present(r) {
                continue;
            }
            let c = c as usize;
            let k = counts[c];
            if k == 0 {
                self.first_row[c] = r as u32;
            }
            counts[c] = k + 1;
        }
        for c in 1..=codes {
            self.starts[c] += self.starts[c - 1];
        }
        self.runs.clear();
        self.runs.resize(self.starts[codes] as usize, 0);
        // `at[c]`: where the next run of code `c` goes.
        self.at.clear();
        self.at.extend_from_slice(&self.starts[..codes]);
        for (run, rows) in runs.windows(2).enumerate() {
            let rows = rows[0] as usize..rows[1] as usize;
            for (r, &c) in rows.clone().zip(&row_codes[rows]) {
                if !present(r) {
                    continue;
                }
                let slot = &mut self.at[c as usize];
                self.runs[*slot as usize] = run as u32;
                *slot += 1;
            }
        }
        self.done = true;
    }
}

/// Rows that cannot be loaded: counted per reason when skipping, the end of the load otherwise.
#[derive(Debug)]
pub(crate) struct BadRows {
    pub(crate) skip: bool,
    pub(crate) file: PathBuf,
    /// Per reason: rows skipped, and the first (file, row) skipped.
    pub(crate) counts: BTreeMap<String, (u64, PathBuf, u64)>,
}

impl BadRows {
    /// Reports row `row` as bad: an error unless bad rows are skipped.
    pub(crate) fn report(
        &mut self,
        row: u64,
        reason: &str,
        detail: impl std::fmt::Display,
    ) -> Result<()> {
        if !self.skip {
            return Err(import_error(
                &self.file,
                Some(row),
                format!("{reason}: {detail}"),
            ));
        }
        match self.counts.get_mut(reason) {
            Some(c) => c.0 += 1,
            None => {
                self.counts
                    .insert(reason.to_owned(), (1, self.file.clone(), row));
            }
        }
        Ok(())
    }
}

/// A file being read.
pub(crate) trait Source {
    /// The file's columns, in file order.
    fn columns(&self) -> &[ColumnInfo];
    /// Reads the next rows (at most `max_rows`) of the columns whose `wanted` entry is true into
    /// `batch`; `false` at the end of the file.
    fn next(
        &mut self,
        wanted: &[bool],
        max_rows: usize,
        batch: &mut Batch,
        bad: &mut BadRows,
    ) -> Result<bool>;
    /// Bytes of the file consumed so far (approximately).
    fn bytes_read(&self) -> u64;
    /// The number of data rows the file holds, when its metadata says (Parquet).
    fn rows_hint(&self) -> Option<u64> {
        None
    }
    /// Asks for `derive` to be applied to every batch from now on.
    fn derive(&mut self, derive: Derive);
    /// Asks for the runs' keys of column `col` (runs derived) to be looked up among `base`
    /// where the batches are decoded ([`Batch::run_found`]); `false` from sources that decode
    /// on the import's own thread, which leave it to the import.
    fn find_keys(&mut self, base: Arc<KeyFinder>, col: usize) -> bool {
        let _ = (base, col);
        false
    }
}

/// Opens `path` as `file_type`.
pub(crate) fn open(path: &Path, file_type: FileType, delimiter: u8) -> Result<Box<dyn Source>> {
    match file_type {
        FileType::Csv | FileType::Tsv => Ok(Box::new(CsvSource::open(path, delimiter)?)),
        FileType::Parquet => Ok(Box::new(ParquetSource::open(path)?)),
    }
}

fn prepare(batch: &mut Batch, columns: &[ColumnInfo], wanted: &[bool]) {
    if batch.cols.len() != columns.len() {
        batch.cols = columns.iter().map(|c| Col::new(&c.ty)).collect();
    }
    batch.rows.clear();
    for (c, &w) in batch.cols.iter_mut().zip(wanted) {
        if w {
            c.clear();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CSV / TSV

struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<File>,
    columns: Vec<ColumnInfo>,
    record: csv::ByteRecord,
    row: u64,
    /// A ragged row met after some good rows of a batch: reported at the start of the next
    /// batch, so that bad rows are reported in file order.
    ragged: Option<(u64, usize)>,
    derive: Derive,
}

impl CsvSource {
    fn open(path: &Path, delimiter: u8) -> Result<Self> {
        let file = File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(file);
        let header = reader
            .byte_headers()
            .map_err(|e| csv_error(path, None, e))?
            .clone();
        if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
            return Err(import_error(
                path,
                None,
                "the file is empty: a header row is required",
            ));
        }
        let mut columns = Vec::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            let name = std::str::from_utf8(name).map_err(|_| {
                import_error(
                    path,
                    None,
                    format!("header column {} is not valid UTF-8", i + 1),
                )
            })?;
            let name = name.trim().trim_start_matches('\u{feff}').to_owned();
            if columns.iter().any(|c: &ColumnInfo| c.name == name) {
                return Err(import_error(
                    path,
                    None,
                    format!("the header names column `{name}` twice"),
                ));
            }
            columns.push(ColumnInfo {
                name,
                ty: SourceType::Text,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            reader,
            columns,
            record: csv::ByteRecord::new(),
            row: 0,
            ragged: None,
            derive: Derive::default(),
        })
    }
}

fn csv_error(path: &Path, row: Option<u64>, e: csv::Error) -> crate::error::Error {
    match e.kind() {
        csv::ErrorKind::Io(_) => {
            let csv::ErrorKind::Io(io) = e.into_kind() else {
                unreachable!("matched above")
            };
            crate::error::Error::io(path, io)
        }
        _ => import_error(path, row, e.to_string()),
    }
}

impl Source for CsvSource {
    fn columns(&self) -> &[ColumnInfo] {
        &self.columns
    }

    fn next(
        &mut self,
        wanted: &[bool],
        max_rows: usize,
        batch: &mut Batch,
        bad: &mut BadRows,
    ) -> Result<bool> {
        prepare(batch, &self.columns, wanted);
        let width = self.columns.len();
        if let Some((row, fields)) = self.ragged.take() {
            bad.report(
                row,
                "ragged row",
                format!("{fields} fields, the header has {width}"),
            )?;
        }
        while batch.rows.len() < max_rows {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| csv_error(&self.path, Some(self.row + 1), e))?;
            if !more {
                break;
            }
            self.row += 1;
            if self.record.len() != width {
                // A blank line at the end of a file is not a row.
                if self.record.len() == 1 && self.record[0].is_empty() {
                    continue;
                }
                if !bad.skip && !batch.rows.is_empty() {
                    // The rows before it may hold a bad row of their own, to be reported first.
                    self.ragged = Some((self.row, self.record.len()));
                    break;
                }
                bad.report(
                    self.row,
                    "ragged row",
                    format!("{} fields, the header has {width}", self.record.len()),
                )?;
                continue;
            }
            batch.rows.push(self.row);
            for ((col, &w), value) in batch.cols.iter_mut().zip(wanted).zip(self.record.iter()) {
                if !w {
                    continue;
                }
                let Data::Text(t) = &mut col.data else {
                    unreachable!("CSV columns are text")
                };
                col.valid.push(!value.is_empty());
                t.push(value);
            }
        }
        self.derive.apply(batch);
        Ok(!batch.rows.is_empty())
    }

    fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    fn derive(&mut self, derive: Derive) {
        self.derive = derive;
    }
}

// ---------------------------------------------------------------------------------------------
// Parquet

enum Typed {
    Bool(ColumnReaderImpl<BoolType>),
    I32(ColumnReaderImpl<Int32Type>),
    I64(ColumnReaderImpl<Int64Type>),
    I96(ColumnReaderImpl<Int96Type>),
    F32(ColumnReaderImpl<FloatType>),
    F64(ColumnReaderImpl<DoubleType>),
    Bytes(ColumnReaderImpl<ByteArrayType>),
    Fixed(ColumnReaderImpl<FixedLenByteArrayType>),
    /// A dictionary-encoded string column read as codes.
    Dict(DictColumn),
    /// A plain or dictionary-encoded INT64 column read straight into the batch.
    Ints(IntColumn),
}

impl Typed {
    fn new(r: ColumnReader) -> Self {
        match r {
            ColumnReader::BoolColumnReader(r) => Typed::Bool(r),
            ColumnReader::Int32ColumnReader(r) => Typed::I32(r),
            ColumnReader::Int64ColumnReader(r) => Typed::I64(r),
            ColumnReader::Int96ColumnReader(r) => Typed::I96(r),
            ColumnReader::FloatColumnReader(r) => Typed::F32(r),
            ColumnReader::DoubleColumnReader(r) => Typed::F64(r),
            ColumnReader::ByteArrayColumnReader(r) => Typed::Bytes(r),
            ColumnReader::FixedLenByteArrayColumnReader(r) => Typed::Fixed(r),
        }
    }
}

/// How a Parquet leaf column's raw values become a [`Col`].
#[derive(Debug, Clone, Copy)]
enum Decode {
    Plain,
    /// Raw integers divided by this give milliseconds (timestamps in micro- or nanoseconds).
    TimestampDiv(i64),
    /// Big-endian two's complement bytes of a decimal.
    BigEndianDecimal,
}

struct ParquetSource {
    path: PathBuf,
    reader: Arc<SerializedFileReader<PreadFile>>,
    columns: Vec<ColumnInfo>,
    decode: Vec<Decode>,
    max_def: Vec<i16>,
    /// Columns that may be read as dictionary codes (strings).
    codes_ok: Vec<bool>,
    /// INT64 columns, which may be read by [`IntColumn`].
    int64: Vec<bool>,
    /// The row groups being decoded, once the first batch is asked for.
    decoding: Option<Decoding>,
    bytes_done: u64,
    derive: Derive,
    finder: Option<(Arc<KeyFinder>, usize)>,
}

/// The row groups of a file being decoded on worker threads ([`Ordered`]).
struct Decoding {
    wanted: Vec<bool>,
    max_rows: usize,
    batches: Ordered<Result<Batch>>,
    /// Per row group with rows: its index in the file, its rows and compressed bytes.
    groups: Vec<(usize, u64, u64)>,
    /// The group batches come from, and the rows received from it.
    current: Option<usize>,
    rows_seen: u64,
}

/// What the workers decoding row groups share.
struct GroupPlan {
    path: PathBuf,
    reader: Arc<SerializedFileReader<PreadFile>>,
    columns: Vec<ColumnInfo>,
    decode: Vec<Decode>,
    max_def: Vec<i16>,
    codes_ok: Vec<bool>,
    int64: Vec<bool>,
    wanted: Vec<bool>,
    max_rows: usize,
    derive: Derive,
    finder: Option<(Arc<KeyFinder>, usize)>,
    /// Per row group with rows: its index in the file, its first row (0-based) and its rows.
    groups: Vec<(usize, u64, u64)>,
}

/// A file read with positioned reads, so that several threads can read it at once (the
/// `parquet` crate reads a `File` by seeking a shared file offset).
struct PreadFile {
    file: Arc<File>,
    len: u64,
}

/// A reader of a [`PreadFile`] from some offset on.
struct PreadReader {
    file: Arc<File>,
    pos: u64,
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "positioned reads are not available on this platform",
        ))
    }
}

impl std::io::Read for PreadReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = read_at(&self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl parquet::file::reader::Length for PreadFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for PreadFile {
    type T = std::io::BufReader<PreadReader>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::BufReader::new(PreadReader {
            file: self.file.clone(),
            pos: start,
        }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        // A length from damaged metadata may be anything: checked against the file before
        // anything is allocated for it.
        let end = start.checked_add(length as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "expected {length} bytes at offset {start} of a file of {} bytes",
                self.len
            )));
        }
        let mut buf = vec![0u8; length];
        let mut at = 0;
        while at < length {
            let n = read_at(&self.file, &mut buf[at..], start + at as u64)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
            if n == 0 {
                return Err(parquet::errors::ParquetError::EOF(format!(
                    "expected {length} bytes at offset {start}, the file ends after {at}"
                )));
            }
            at += n;
        }
        Ok(buf.into())
    }
}

/// Whether every column chunk of `meta` lies within a file of `len` bytes: damaged metadata
/// would otherwise reach the decoder as a negative or outlying offset, on which the `parquet`
/// crate panics (caught, but with a worse message and a panic in the log).
fn check_chunks(meta: &parquet::file::metadata::ParquetMetaData, len: u64) -> Result<(), String> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        for c in group.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let size = c.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(size).ok())
                .and_then(|(start, size)| start.checked_add(size));
            if end.is_none_or(|end| end > len) {
                return Err(format!(
                    "invalid Parquet: column `{}` of row group {g} lies outside the file \
                     ({size} bytes at offset {start}, in a file of {len} bytes)",
                    c.column_path().string()
                ));
            }
        }
    }
    Ok(())
}

fn parquet_error(
    path: &Path,
    row: Option<u64>,
    e: parquet::errors::ParquetError,
) -> crate::error::Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                // A read past the end, or bytes the decoder refused: the file's fault, which
                // no retry mends (unlike a failing disk).
                Ok(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                    ) =>
                {
                    import_error(
                        path,
                        row,
                        format!("invalid Parquet (truncated or corrupt): {io}"),
                    )
                }
                Ok(io) => crate::error::Error::io(path, *io),
                Err(other) => import_error(path, row, format!("invalid Parquet: {other}")),
            }
        }
        other => import_error(path, row, format!("invalid Parquet: {other}")),
    }
}

fn leaf_type(d: &ColumnDescriptor) -> (SourceType, Decode) {
    if d.max_rep_level() > 0 || d.path().parts().len() > 1 {
        return (
            SourceType::Unsupported("a nested or repeated column".into()),
            Decode::Plain,
        );
    }
    let scale = d.type_scale().clamp(0, 18) as u8;
    let decimal = matches!(d.logical_type_ref(), Some(LogicalType::Decimal(_)))
        || d.converted_type() == ConvertedType::DECIMAL;
    let timestamp = match d.logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => Some(match t.unit {
            TimeUnit::MILLIS => 1,
            TimeUnit::MICROS => 1_000,
            TimeUnit::NANOS => 1_000_000,
        }),
        _ => match d.converted_type() {
            ConvertedType::TIMESTAMP_MILLIS => Some(1),
            ConvertedType::TIMESTAMP_MICROS => Some(1_000),
            _ => None,
        },
    };
    let date = matches!(d.logical_type_ref(), Some(LogicalType::Date))
        || d.converted_type() == ConvertedType::DATE;
    match d.physical_type() {
        Physical::BOOLEAN => (SourceType::Bool, Decode::Plain),
        Physical::INT32 | Physical::INT64 => {
            if decimal && d.type_scale() > 18 {
                (
                    SourceType::Unsupported(format!("a decimal of scale {}", d.type_scale())),
                    Decode::Plain,
                )
            } else if decimal {
                (SourceType::Int(Unit::Decimal(scale)), Decode::Plain)
            } else if let Some(div) = timestamp {
                (SourceType::Int(Unit::Millis), Decode::TimestampDiv(div))
            } else if date {
                (SourceType::Int(Unit::Days), Decode::Plain)
            } else {
                (SourceType::Int(Unit::Plain), Decode::Plain)
            }
        }
        Physical::INT96 => (SourceType::Int(Unit::Millis), Decode::Plain),
        Physical::FLOAT | Physical::DOUBLE => (SourceType::Float, Decode::Plain),
        Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY => {
            if decimal && d.type_scale() <= 18 {
                (
                    SourceType::Int(Unit::Decimal(scale)),
                    Decode::BigEndianDecimal,
                )
            } else if decimal {
                (
                    SourceType::Unsupported(format!("a decimal of scale {}", d.type_scale())),
                    Decode::Plain,
                )
            } else {
                (SourceType::Text, Decode::Plain)
            }
        }
    }
}

impl ParquetSource {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| crate::error::Error::io(path, e))?
            .len();
        if len == 0 {
            return Err(import_error(path, None, "the file is empty"));
        }
        let file = PreadFile {
            file: Arc::new(file),
            len,
        };
        let reader = SerializedFileReader::new(file).map_err(|e| parquet_error(path, None, e))?;
        check_chunks(reader.metadata(), len).map_err(|why| import_error(path, None, why))?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let mut columns = Vec::new();
        let mut decode = Vec::new();
        let mut max_def = Vec::new();
        let mut codes_ok = Vec::new();
        let mut int64 = Vec::new();
        for d in schema.columns() {
            let (ty, dec) = leaf_type(d);
            codes_ok.push(ty == SourceType::Text && d.physical_type() == Physical::BYTE_ARRAY);
            int64.push(matches!(ty, SourceType::Int(_)) && d.physical_type() == Physical::INT64);
            columns.push(ColumnInfo {
                name: d.path().string(),
                ty,
            });
            decode.push(dec);
            max_def.push(d.max_def_level());
        }
        Ok(Self {
            path: path.to_owned(),
            reader: Arc::new(reader),
            columns,
            decode,
            max_def,
            codes_ok,
            int64,
            decoding: None,
            bytes_done: 0,
            derive: Derive::default(),
            finder: None,
        })
    }

    /// Starts decoding the row groups with rows, on as many threads as the machine has cores
    /// (and the file row groups).
    fn start(&self, wanted: &[bool], max_rows: usize) -> Result<Decoding> {
        let meta = self.reader.metadata();
        let mut groups = Vec::new();
        let mut first = 0u64;
        for g in 0..meta.num_row_groups() {
            let rows = u64::try_from(meta.row_group(g).num_rows()).unwrap_or(0);
            if rows > 0 {
                groups.push((g, first, rows));
            }
            first += rows;
        }
        let plan = GroupPlan {
            path: self.path.clone(),
            reader: self.reader.clone(),
            columns: self.columns.clone(),
            decode: self.decode.clone(),
            max_def: self.max_def.clone(),
            codes_ok: self.codes_ok.clone(),
            int64: self.int64.clone(),
            wanted: wanted.to_vec(),
            max_rows: max_rows.max(1),
            derive: self.derive,
            finder: self.finder.clone(),
            groups: groups.clone(),
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most_rows = groups.iter().map(|&(_, _, rows)| rows).max().unwrap_or(0);
        let depth = decode_depth(most_rows, max_rows, wanted, threads);
        let batches = Ordered::start(groups.len(), threads, depth, move |i, emit| {
            plan.decode(i, emit)
        })
        .map_err(|e| crate::error::Error::io(&self.path, e))?;
        Ok(Decoding {
            wanted: wanted.to_vec(),
            max_rows,
            batches,
            groups: groups
                .iter()
                .map(|&(g, _, rows)| {
                    let bytes = u64::try_from(meta.row_group(g).compressed_size()).unwrap_or(0);
                    (g, rows, bytes)
                })
                .collect(),
            current: None,
            rows_seen: 0,
        })
    }
}

/// Decoded cells (rows times wanted columns) the decoding workers may hold ahead of an import,
/// all workers together: 16 Mi cells are a few hundred MiB at most.
const CELLS_AHEAD: u64 = 16 << 20;

/// How many batches of `max_rows` rows a worker may decode ahead of the import, per row group
/// of at most `group_rows` rows of `wanted` columns, with `threads` workers: the whole group
/// when [`CELLS_AHEAD`] shared by the workers allows it, so that a worker decodes the next
/// group while the import still reads the current one (a shallower channel leaves it blocked,
/// a core idle); never fewer than [`MIN_DEPTH`], nor more than [`MAX_DEPTH`] (a channel's
/// slots are allocated up front).
fn decode_depth(group_rows: u64, max_rows: usize, wanted: &[bool], threads: usize) -> usize {
    let columns = wanted.iter().filter(|&&w| w).count().max(1) as u64;
    let rows_ahead = CELLS_AHEAD / threads.max(1) as u64 / columns;
    let batches = group_rows.min(rows_ahead).div_ceil(max_rows.max(1) as u64);
    usize::try_from(batches)
        .unwrap_or(MAX_DEPTH)
        .clamp(MIN_DEPTH, MAX_DEPTH)
}

/// The most batches a worker decodes ahead of the import, per row group.
const MAX_DEPTH: usize = 256;

impl GroupPlan {
    /// Decodes row group `i` (of `self.groups`) into batches of at most `max_rows` rows.
    fn decode(&self, i: usize, emit: &mut Emit<Result<Batch>>) {
        let (g, first, rows) = self.groups[i];
        let mut readers = match self.open(g, first) {
            Ok(r) => r,
            Err(e) => {
                emit.send(Err(e));
                return;
            }
        };
        let mut defs = Vec::new();
        let mut done = 0u64;
        while done < rows {
            let mut batch = emit.spare().and_then(|b| b.ok()).unwrap_or_default();
            prepare(&mut batch, &self.columns, &self.wanted);
            let n = ((rows - done) as usize).min(self.max_rows);
            let row = first + done;
            if let Err(e) = self.read(&mut readers, n, row, &mut defs, &mut batch) {
                emit.send(Err(e));
                return;
            }
            batch.rows.set_range(row + 1, n);
            self.derive.apply(&mut batch);
            let reuse = batch.run_found.take().unwrap_or_default();
            if let Some((base, col)) = &self.finder {
                batch.run_found = super::keys::find_runs(base, &batch, *col, reuse);
            }
            done += n as u64;
            if !emit.send(Ok(batch)) {
                return;
            }
        }
    }

    /// The readers of the wanted columns of row group `g`, whose first row is `first`.
    fn open(&self, g: usize, first: u64) -> Result<Vec<Option<Typed>>> {
        let err = |e| parquet_error(&self.path, Some(first + 1), e);
        let rg = self.reader.get_row_group(g).map_err(err)?;
        let rg_meta = self.reader.metadata().row_group(g);
        let mut readers = Vec::with_capacity(self.wanted.len());
        for (i, &w) in self.wanted.iter().enumerate() {
            readers.push(
                if w && self.codes_ok[i] && pages::chunk_supported(rg_meta.column(i)) {
                    let pages = rg.get_column_page_reader(i).map_err(err)?;
                    Some(Typed::Dict(DictColumn::new(pages, self.max_def[i])))
                } else if w && self.int64[i] && pages::int_chunk_supported(rg_meta.column(i)) {
                    let pages = rg.get_column_page_reader(i).map_err(err)?;
                    Some(Typed::Ints(IntColumn::new(pages, self.max_def[i])))
                } else if w {
                    Some(Typed::new(rg.get_column_reader(i).map_err(err)?))
                } else {
                    None
                },
            );
        }
        Ok(readers)
    }

    /// Reads the next `n` rows (the first of them 0-based row `row` of the file) of every
    /// wanted column into `batch`.
    fn read(
        &self,
        readers: &mut [Option<Typed>],
        n: usize,
        row: u64,
        defs: &mut Vec<i16>,
        batch: &mut Batch,
    ) -> Result<()> {
        for (i, reader) in readers.iter_mut().enumerate() {
            let Some(reader) = reader else { continue };
            let got = read_column(
                reader,
                n,
                self.max_def[i],
                self.decode[i],
                defs,
                &mut batch.cols[i],
            )
            .map_err(|e| parquet_error(&self.path, Some(row + 1), e))?;
            if got != n {
                return Err(import_error(
                    &self.path,
                    Some(row + got as u64 + 1),
                    format!(
                        "column `{}` ends before its row group does (truncated or corrupt file)",
                        self.columns[i].name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Reads exactly `n` records of one column into `col` (nulls spread out with placeholders).
fn read_column(
    reader: &mut Typed,
    n: usize,
    max_def: i16,
    decode: Decode,
    defs: &mut Vec<i16>,
    col: &mut Col,
) -> parquet::errors::Result<usize> {
    macro_rules! read {
        ($r:expr, $values:expr) => {{
            let mut got = 0usize;
            defs.clear();
            while got < n {
                let (records, _, _) =
                    $r.read_records(n - got, (max_def > 0).then_some(&mut *defs), None, $values)?;
                if records == 0 {
                    break;
                }
                got += records;
            }
            got
        }};
    }
    let valid_from = col.valid.len();
    let got;
    match (reader, &mut col.data) {
        (Typed::Bool(r), Data::Bool(out)) => {
            let mut v = Vec::with_capacity(n);
            got = read!(r, &mut v);
            if max_def == 0 || v.len() == got {
                let got = got.min(v.len());
                out.extend(&v[..got]);
                col.valid.resize(col.valid.len() + got, true);
            } else {
                let mut it = v.iter();
                for &d in &defs[..got.min(defs.len())] {
                    let present = d == max_def;
                    out.push(present && it.next().copied().unwrap_or(false));
                    col.valid.push(present);
                }
            }
        }
        (Typed::I32(r), Data::Int(out)) => {
            let mut v: Vec<i32> = Vec::with_capacity(n);
            got = read!(r, &mut v);
            let v: Vec<i64> = v
                .into_iter()
                .map(|x| decode_int(x as i64, decode))
                .collect();
            spread(&v, defs, max_def, got, 0, out, &mut col.valid);
        }
        (Typed::Ints(r), Data::Int(out)) => {
            let start = out.len();
            got = r.read(n, out, &mut col.valid)?;
            if !matches!(decode, Decode::Plain) {
                for x in &mut out[start..] {
                    *x = decode_int(*x, decode);
                }
            }
        }
        (Typed::I64(r), Data::Int(out)) if max_def == 0 => {
            // A required column: every record is a value, read in place.
            let start = out.len();
            out.reserve(n);
            got = read!(r, out);
            if !matches!(decode, Decode::Plain) {
                for x in &mut out[start..] {
                    *x = decode_int(*x, decode);
                }
            }
            col.valid
                .resize(col.valid.len() + (out.len() - start), true);
        }
        (Typed::I64(r), Data::Int(out)) => {
            let mut v: Vec<i64> = Vec::with_capacity(n);
            got = read!(r, &mut v);
            if !matches!(decode, Decode::Plain) {
                for x in &mut v {
                    *x = decode_int(*x, decode);
                }
            }
            spread(&v, defs, max_def, got, 0, out, &mut col.valid);
        }
        (Typed::I96(r), Data::Int(out)) => {
            let mut v = Vec::with_capacity(n);
            got = read!(r, &mut v);
            let v: Vec<i64> = v.iter().map(|x| x.to_millis()).collect();
            spread(&v, defs, max_def, got, 0, out, &mut col.valid);
        }
        (Typed::F32(r), Data::Float(out)) => {
            let mut v: Vec<f32> = Vec::with_capacity(n);
            got = read!(r, &mut v);
            let v: Vec<f64> = v.into_iter().map(f64::from).collect();
            spread(&v, defs, max_def, got, 0.0, out, &mut col.valid);
        }
        (Typed::F64(r), Data::Float(out)) => {
            let mut v: Vec<f64> = Vec::with_capacity(n);
            got = read!(r, &mut v);
            spread(&v, defs, max_def, got, 0.0, out, &mut col.valid);
        }
        (Typed::Dict(r), data) => {
            if !matches!(data, Data::Coded(_)) {
                *data = Data::Coded(Coded::default());
            }
            let Data::Coded(coded) = data else {
                unreachable!("set above")
            };
            got = r.read(n, coded, &mut col.valid)?;
        }
        (Typed::Bytes(r), data) => {
            if matches!(data, Data::Coded(_)) {
                *data = Data::Text(Texts::default());
            }
            let mut v = Vec::with_capacity(n);
            got = read!(r, &mut v);
            spread_bytes(
                v.iter().map(|b| b.data()),
                defs,
                max_def,
                got,
                data,
                &mut col.valid,
            );
        }
        (Typed::Fixed(r), data) => {
            let mut v = Vec::with_capacity(n);
            got = read!(r, &mut v);
            spread_bytes(
                v.iter().map(|b| b.data()),
                defs,
                max_def,
                got,
                data,
                &mut col.valid,
            );
        }
        _ => {
            return Err(parquet::errors::ParquetError::General(
                "column reader and column type disagree".into(),
            ));
        }
    }
    debug_assert!(col.valid.len() - valid_from == got);
    Ok(got)
}

#[inline]
fn decode_int(x: i64, decode: Decode) -> i64 {
    match decode {
        Decode::TimestampDiv(d) => x.div_euclid(d),
        _ => x,
    }
}

/// Appends `got` records to `out`/`valid`: `values` holds the non-null ones.
fn spread<T: Copy>(
    values: &[T],
    defs: &[i16],
    max_def: i16,
    got: usize,
    null: T,
    out: &mut Vec<T>,
    valid: &mut Vec<bool>,
) {
    if max_def == 0 || values.len() == got {
        out.extend_from_slice(&values[..got.min(values.len())]);
        valid.resize(valid.len() + got.min(values.len()), true);
        return;
    }
    let mut it = values.iter();
    for &d in &defs[..got.min(defs.len())] {
        if d == max_def {
            out.push(*it.next().unwrap_or(&null));
            valid.push(true);
        } else {
            out.push(null);
            valid.push(false);
        }
    }
}

fn spread_bytes<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    defs: &[i16],
    max_def: i16,
    got: usize,
    data: &mut Data,
    valid: &mut Vec<bool>,
) {
    let mut next = |present: bool, data: &mut Data| {
        let v = if present { values.next() } else { None };
        match data {
            Data::Text(t) => {
                t.push(v.unwrap_or_default());
                valid.push(v.is_some());
            }
            Data::Int(out) => {
                // A big-endian two's complement decimal.
                match v.and_then(be_decimal) {
                    Some(x) => {
                        out.push(x);
                        valid.push(true);
                    }
                    None => {
                        out.push(0);
                        valid.push(false);
                    }
                }
            }
            _ => valid.push(false),
        }
    };
    if max_def == 0 {
        for _ in 0..got {
            next(true, data);
        }
    } else {
        for &d in &defs[..got.min(defs.len())] {
            next(d == max_def, data);
        }
    }
}

fn be_decimal(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut v: i128 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for &x in b {
        v = (v << 8) | x as i128;
    }
    i64::try_from(v).ok()
}

impl Source for ParquetSource {
    fn columns(&self) -> &[ColumnInfo] {
        &self.columns
    }

    fn next(
        &mut self,
        wanted: &[bool],
        max_rows: usize,
        batch: &mut Batch,
        _bad: &mut BadRows,
    ) -> Result<bool> {
        if self.decoding.is_none() {
            self.decoding = Some(self.start(wanted, max_rows)?);
        }
        let d = self.decoding.as_mut().expect("started above");
        if d.wanted != wanted || d.max_rows != max_rows {
            return Err(crate::error::Error::Internal(
                "a Parquet file is read with the same columns and batch size throughout".into(),
            ));
        }
        let next = d.batches.next();
        let group = next.as_ref().map(|(i, _)| *i);
        if group != d.current {
            // Every row of the group just finished must have come through.
            if let Some(c) = d.current
                && d.rows_seen != d.groups[c].1
            {
                return Err(import_error(
                    &self.path,
                    None,
                    format!(
                        "row group {} ended after {} of its {} rows",
                        d.groups[c].0, d.rows_seen, d.groups[c].1
                    ),
                ));
            }
            // And every group must come, one after the other.
            let expected = d.current.map_or(0, |c| c + 1);
            if group.unwrap_or(d.groups.len()) != expected {
                let g = d.groups.get(expected).map_or(0, |g| g.0);
                return Err(import_error(
                    &self.path,
                    None,
                    format!("row group {g} yielded no rows"),
                ));
            }
            if let Some(i) = group {
                self.bytes_done += d.groups[i].2;
            }
            d.current = group;
            d.rows_seen = 0;
        }
        match next {
            None => {
                prepare(batch, &self.columns, wanted);
                Ok(false)
            }
            Some((_, Err(Failed))) => Err(import_error(
                &self.path,
                None,
                "the file could not be decoded (its reader failed)",
            )),
            Some((_, Ok(Err(e)))) => Err(e),
            Some((_, Ok(Ok(mut b)))) => {
                d.rows_seen += b.len() as u64;
                std::mem::swap(batch, &mut b);
                d.batches.recycle(Ok(b));
                Ok(true)
            }
        }
    }

    fn rows_hint(&self) -> Option<u64> {
        u64::try_from(self.reader.metadata().file_metadata().num_rows()).ok()
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_done
    }

    fn derive(&mut self, derive: Derive) {
        // Batches already decoding keep what they were started with.
        if self.decoding.is_none() {
            self.derive = derive;
        }
    }

    fn find_keys(&mut self, base: Arc<KeyFinder>, col: usize) -> bool {
        // Batches already decoding keep what they were started with.
        if self.decoding.is_some() {
            return false;
        }
        self.finder = Some((base, col));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{
        Batch, Bits, Col, Data, Derive, MAX_DEPTH, PreadFile, Texts, check_chunks, decode_depth,
        parquet_error,
    };
    use crate::import::ordered::MIN_DEPTH;
    use crate::import::pages::{Coded, Dictionary};
    use parquet::errors::ParquetError;
    use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
    use proptest::prelude::*;

    /// A one-column Parquet file of a few int64 values, in `dir`.
    fn small_file(dir: &std::path::Path) -> std::path::PathBuf {
        use crate::import::tests::{Pq, write_parquet};
        let p = dir.join("small.parquet");
        let values = [1, 2, 3, 4].map(Some).to_vec();
        write_parquet(
            &p,
            "message m { optional int64 v; }",
            &[Pq::I64(values)],
            10,
        );
        p
    }

    /// Column chunks that damaged metadata places before the file, past its end or at a
    /// negative size are refused before anything decodes them; the file's own chunks pass.
    #[test]
    fn column_chunks_outside_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = small_file(dir.path());
        let len = std::fs::metadata(&p).unwrap().len();
        let reader = SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        let meta = reader.metadata().clone();
        assert_eq!(check_chunks(&meta, len), Ok(()));
        // The same metadata over a file cut short.
        let chunk = meta.row_group(0).column(0);
        let end = chunk
            .dictionary_page_offset()
            .unwrap_or(chunk.data_page_offset())
            + chunk.compressed_size();
        assert!(check_chunks(&meta, end as u64 - 1).is_err());
        for (offset, size) in [(-1, 10), (4, -1), (i64::MAX, 10), (len as i64, 1)] {
            let group = meta.row_group(0).clone();
            let column = group
                .column(0)
                .clone()
                .into_builder()
                .set_dictionary_page_offset(None)
                .set_data_page_offset(offset)
                .set_total_compressed_size(size)
                .build()
                .unwrap();
            let group = group
                .into_builder()
                .set_column_metadata(vec![column])
                .build()
                .unwrap();
            let damaged = parquet::file::metadata::ParquetMetaData::new(
                meta.file_metadata().clone(),
                vec![group],
            );
            let why = check_chunks(&damaged, len).unwrap_err();
            assert!(why.contains("lies outside the file"), "{why}");
        }
    }

    /// A byte range past the file's end is an error, however long: nothing is allocated for
    /// a length damaged metadata made up.
    #[test]
    fn byte_ranges_past_the_end_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = small_file(dir.path());
        let bytes = std::fs::read(&p).unwrap();
        let file = PreadFile {
            file: Arc::new(std::fs::File::open(&p).unwrap()),
            len: bytes.len() as u64,
        };
        assert_eq!(file.get_bytes(0, bytes.len()).unwrap(), bytes[..]);
        assert_eq!(file.get_bytes(3, 2).unwrap(), bytes[3..5]);
        for (start, length) in [
            (0, bytes.len() + 1),
            (bytes.len() as u64 - 1, 2),
            (0, usize::MAX),
            (u64::MAX, 1),
        ] {
            assert!(
                matches!(file.get_bytes(start, length), Err(ParquetError::EOF(_))),
                "{start} + {length}"
            );
        }
    }

    /// A read past the end (or bytes the reader refused) is the file's fault, an import error
    /// that no retry mends; other I/O failures stay I/O errors, which a retry may mend.
    #[test]
    fn reads_past_the_end_are_import_errors() {
        let path = std::path::Path::new("f.parquet");
        let io = |kind| ParquetError::External(Box::new(std::io::Error::from(kind)));
        for kind in [
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::InvalidData,
        ] {
            let e = parquet_error(path, Some(3), io(kind));
            assert!(
                matches!(&e, crate::Error::Import { row: Some(3), .. }),
                "{e}"
            );
            assert_eq!(e.class(), crate::ErrorClass::BadInput);
        }
        let e = parquet_error(path, None, io(std::io::ErrorKind::PermissionDenied));
        assert!(matches!(&e, crate::Error::Io { .. }), "{e}");
        assert_eq!(e.class(), crate::ErrorClass::Unavailable);
    }

    #[test]
    fn decode_depth_holds_a_whole_group_of_few_columns() {
        let cols = |n: usize| vec![true; n];
        // A long file's two columns, or an events file's four: the whole 2^20-row group.
        assert_eq!(decode_depth(1 << 20, 256 * 1024, &cols(2), 2), 4);
        assert_eq!(decode_depth(1 << 20, 16 * 1024, &cols(4), 2), 64);
        // Unwanted columns take no room; a short group needs only its own batches.
        assert_eq!(
            decode_depth(1 << 20, 16 * 1024, &[true, false, true], 2),
            64
        );
        assert_eq!(decode_depth(100_000, 16 * 1024, &cols(4), 2), 7);
        // Many columns, or many workers, share the budget: fewer batches ahead.
        assert_eq!(decode_depth(1 << 20, 16 * 1024, &cols(40), 2), 13);
        assert_eq!(decode_depth(1 << 20, 16 * 1024, &cols(1000), 64), MIN_DEPTH);
        // Never more than the channel's slots, whatever the batches.
        assert_eq!(decode_depth(u64::MAX, 1, &cols(1), 1), MAX_DEPTH);
        assert_eq!(decode_depth(0, 0, &[], 0), MIN_DEPTH);
    }

    /// A batch of a key column (integers, or texts of varying length naming them) and a column
    /// of codes into a dictionary of `codes` entries (`None`: null).
    fn batch_of(rows: &[(Option<i64>, Option<u32>)], codes: usize, text_keys: bool) -> Batch {
        let mut texts = Texts::default();
        for c in 0..codes {
            texts.push(format!("t{c}").as_bytes());
        }
        let data = if text_keys {
            let mut keys = Texts::default();
            for r in rows {
                // Distinct for 0..6, sharing prefixes and lengths: "k0", "k10", "k110", "k1", ...
                let k = r.0.unwrap_or(0);
                keys.push(
                    format!("k{}", "1".repeat(k as usize % 3) + &(k / 3).to_string()).as_bytes(),
                );
            }
            Data::Text(keys)
        } else {
            Data::Int(rows.iter().map(|r| r.0.unwrap_or(0)).collect())
        };
        let keys = Col {
            valid: rows.iter().map(|r| r.0.is_some()).collect(),
            data,
        };
        let tags = Col {
            valid: rows.iter().map(|r| r.1.is_some()).collect(),
            data: Data::Coded(Coded {
                dict: Arc::new(Dictionary { id: 7, texts }),
                extra: Texts::default(),
                codes: rows.iter().map(|r| r.1.unwrap_or(0)).collect(),
            }),
        };
        let mut batch = Batch {
            cols: vec![keys, tags],
            ..Batch::default()
        };
        batch.rows.set_range(1, rows.len());
        batch
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(128))]
        /// Runs of equal keys (a missing key differs from every key), their keys when none is
        /// missing, and the runs holding each code in row order, with each code's first row:
        /// what a row-by-row reading gives.
        #[test]
        fn derived_runs_and_groups_match_the_rows(
            rows in proptest::collection::vec(
                (prop::option::weighted(0.95, 0i64..6), prop::option::weighted(0.95, 0u32..9)),
                0..400,
            ),
            sorted in any::<bool>(),
            text_keys in any::<bool>(),
        ) {
            let mut rows = rows;
            if sorted {
                rows.sort_by_key(|r| r.0);
            }
            let codes = 9;
            let mut batch = batch_of(&rows, codes, text_keys);
            // Apply twice: the second reuses what the first left in the batch.
            for _ in 0..2 {
                Derive { runs_of: Some(0), groups_of: Some(1) }.apply(&mut batch);
                let mut runs = Vec::new();
                for i in 0..rows.len() {
                    if i == 0 || rows[i].0 != rows[i - 1].0 {
                        runs.push(i as u32);
                    }
                }
                runs.push(rows.len() as u32);
                prop_assert_eq!(&batch.runs, &runs);
                let keys: Option<Vec<i64>> = runs[..runs.len() - 1].iter().map(|&r| rows[r as usize].0).collect();
                // Integer keys only: text keys are resolved run by run from their rows.
                prop_assert_eq!(&batch.run_keys, if text_keys { &None } else { &keys });
                let g = &batch.groups;
                prop_assert!(g.done);
                prop_assert_eq!(g.nulls, rows.iter().any(|r| r.1.is_none()));
                for c in 0..codes as u32 {
                    let mut want = Vec::new();
                    for (run, w) in runs.windows(2).enumerate() {
                        for r in w[0]..w[1] {
                            if rows[r as usize].1 == Some(c) {
                                want.push(run as u32);
                            }
                        }
                    }
                    let got = &g.runs[g.starts[c as usize] as usize..g.starts[c as usize + 1] as usize];
                    prop_assert_eq!(got, &want[..]);
                    let first = rows.iter().position(|r| r.1 == Some(c)).map_or(u32::MAX, |r| r as u32);
                    prop_assert_eq!(g.first_row[c as usize], first);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(128))]
        /// Pushed one at a time or packed eight at a time, from any starting offset: the
        /// same values, and zero bits past the last.
        #[test]
        fn bits_hold_what_was_appended(parts in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 0..200), 0..6)) {
            let mut bits = Bits::default();
            let mut model = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                if i % 2 == 0 {
                    bits.extend(part);
                } else {
                    part.iter().for_each(|&b| bits.push(b));
                }
                model.extend_from_slice(part);
            }
            for (i, &b) in model.iter().enumerate() {
                prop_assert_eq!(bits.get(i), b);
            }
            prop_assert!(!bits.get(model.len()));
            prop_assert_eq!(bits.words().len(), model.len().div_ceil(64));
            if let Some(last) = bits.words().last() && model.len() % 64 != 0 {
                prop_assert_eq!(last >> (model.len() % 64), 0);
            }
        }
    }
}
