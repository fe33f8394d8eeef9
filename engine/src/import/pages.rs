//! Dictionary-encoded Parquet string columns read as dictionary codes.
//!
//! Hive and Spark write low-cardinality string columns (tags, field names, enum values) with a
//! dictionary page and data pages of RLE/bit-packed codes into it. The `parquet` crate's typed
//! reader expands every code into its string; this reader keeps the code, so that a shape can
//! decide what a dictionary entry means once per column chunk instead of once per row.
//!
//! The pages come decompressed from the crate's page reader; this module decodes only what
//! lies inside them:
//!
//! - data page v1: `[def levels: u32 LE length, RLE hybrid]` (optional columns only), then the
//!   values; data page v2: the definition levels (RLE hybrid, length in the header), then the
//!   values;
//! - values: `PLAIN_DICTIONARY`/`RLE_DICTIONARY` (one byte of bit width, then RLE hybrid codes)
//!   or `PLAIN` (`u32 LE length` + bytes per value; a writer falls back to it when the
//!   dictionary grows too large). Plain values get codes after the dictionary's.
//!
//! A column chunk using any other encoding is read by the typed reader instead
//! ([`chunk_supported`]). Malformed pages give errors, never panics or out-of-range codes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;

use super::source::Texts;

/// Whether a column chunk's pages can be read by [`DictColumn`]: dictionary-encoded, with
/// levels and values in encodings this module decodes.
pub(crate) fn chunk_supported(meta: &ColumnChunkMetaData) -> bool {
    let mut dictionary = false;
    for e in meta.encodings() {
        match e {
            Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => dictionary = true,
            Encoding::PLAIN | Encoding::RLE => {}
            _ => return false,
        }
    }
    dictionary
}

/// A column chunk's dictionary: its strings, and an id unique in the process so that a reader
/// can cache what it derived from the entries.
#[derive(Debug, Default)]
pub(crate) struct Dictionary {
    pub(crate) id: u64,
    pub(crate) texts: Texts,
}

static NEXT_DICTIONARY: AtomicU64 = AtomicU64::new(1);

fn bad(what: impl Into<String>) -> ParquetError {
    ParquetError::General(what.into())
}

/// An RLE / bit-packed hybrid run decoder (the Parquet encoding of levels and dictionary codes).
#[derive(Debug, Default)]
struct Hybrid {
    buf: Bytes,
    pos: usize,
    width: u32,
    /// Values left in the current RLE run, and its value.
    run_left: usize,
    run_value: u32,
    /// Values left in the current bit-packed run, and the bit offset of the next one.
    packed_left: usize,
    bit: usize,
}

impl Hybrid {
    fn new(buf: Bytes, width: u32) -> Result<Self> {
        if width > 32 {
            return Err(bad(format!("bit width {width} of an RLE run")));
        }
        Ok(Self {
            buf,
            width,
            ..Self::default()
        })
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("an RLE run header ends the page"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("an RLE run header is too long"))
    }

    /// Starts the next run; an error at the end of the data.
    fn next_run(&mut self) -> Result<()> {
        let header = self.varint()?;
        let count = usize::try_from(header >> 1).map_err(|_| bad("an RLE run is too long"))?;
        if header & 1 == 1 {
            // `count` groups of 8 values, `width` bytes per group.
            let bytes = count
                .checked_mul(self.width as usize)
                .ok_or_else(|| bad("a bit-packed run is too long"))?;
            let end = self.pos.saturating_add(bytes);
            if end > self.buf.len() {
                return Err(bad("a bit-packed run overruns its page"));
            }
            self.packed_left = count * 8;
            self.bit = self.pos * 8;
            self.pos = end;
        } else {
            let bytes = (self.width as usize).div_ceil(8);
            let raw = self
                .buf
                .get(self.pos..self.pos + bytes)
                .ok_or_else(|| bad("an RLE run overruns its page"))?;
            let mut v = 0u32;
            for (i, &b) in raw.iter().enumerate() {
                v |= u32::from(b) << (8 * i);
            }
            self.pos += bytes;
            self.run_left = count;
            self.run_value = v;
        }
        Ok(())
    }

    /// Fills `out` completely; an error if the data ends first.
    fn fill(&mut self, out: &mut [u32]) -> Result<()> {
        let mut at = 0;
        while at < out.len() {
            if self.run_left > 0 {
                let n = self.run_left.min(out.len() - at);
                out[at..at + n].fill(self.run_value);
                self.run_left -= n;
                at += n;
            } else if self.packed_left > 0 {
                let n = self.packed_left.min(out.len() - at);
                self.unpack(&mut out[at..at + n]);
                self.packed_left -= n;
                at += n;
            } else {
                self.next_run()?;
            }
        }
        Ok(())
    }

    /// Unpacks `out.len()` values of the current bit-packed run (checked to lie in `buf`).
    #[inline]
    fn unpack(&mut self, out: &mut [u32]) {
        let w = self.width as usize;
        if w == 0 {
            out.fill(0);
            return;
        }
        let mask = if w == 32 { u32::MAX } else { (1u32 << w) - 1 };
        let buf = &self.buf[..];
        let mut bit = self.bit;
        for o in out.iter_mut() {
            let byte = bit / 8;
            let word = match buf.get(byte..byte + 8) {
                Some(b) => u64::from_le_bytes(b.try_into().unwrap_or_default()),
                // The last bytes of the page: read what there is.
                None => {
                    let mut word = [0u8; 8];
                    let avail = buf.len().saturating_sub(byte).min(8);
                    word[..avail].copy_from_slice(&buf[byte..byte + avail]);
                    u64::from_le_bytes(word)
                }
            };
            *o = (word >> (bit % 8)) as u32 & mask;
            bit += w;
        }
        self.bit = bit;
    }
}

/// How the values of the current data page are encoded.
#[derive(Debug)]
enum Values {
    Codes(Hybrid),
    Plain { buf: Bytes, pos: usize },
}

#[derive(Debug)]
struct DataPage {
    /// Records (levels) left in the page.
    left: usize,
    defs: Option<Hybrid>,
    values: Values,
}

impl DataPage {
    /// Takes up to `n` of the page's rows, pushing for each whether it has a value (its
    /// definition level is `max_def`) onto `valid`: returns (rows taken, values present).
    /// `levels` is scratch space.
    fn take(
        &mut self,
        n: usize,
        levels: &mut Vec<u32>,
        max_def: i16,
        valid: &mut Vec<bool>,
    ) -> Result<(usize, usize)> {
        let take = self.left.min(n);
        self.left -= take;
        let present = match &mut self.defs {
            None => {
                valid.resize(valid.len() + take, true);
                take
            }
            Some(defs) => {
                levels.resize(take, 0);
                defs.fill(levels)?;
                let max = max_def as u32;
                let mut present = 0;
                for &l in levels.iter() {
                    valid.push(l == max);
                    present += usize::from(l == max);
                }
                present
            }
        };
        Ok((take, present))
    }
}

/// A dictionary-encoded byte-array column chunk being read (see the module docs).
pub(crate) struct DictColumn {
    pages: Box<dyn PageReader>,
    max_def: i16,
    dict: Arc<Dictionary>,
    page: Option<DataPage>,
    levels: Vec<u32>,
    codes: Vec<u32>,
}

/// Codes read by [`DictColumn::read`]: per record, an index into the dictionary, or past its
/// end into `extra` (values of plain pages).
#[derive(Debug, Default)]
pub(crate) struct Coded {
    pub(crate) dict: Arc<Dictionary>,
    pub(crate) extra: Texts,
    pub(crate) codes: Vec<u32>,
}

impl Coded {
    pub(crate) fn clear(&mut self) {
        self.extra.clear();
        self.codes.clear();
    }

    /// The value of code `c`.
    #[inline]
    pub(crate) fn text(&self, c: u32) -> &[u8] {
        let n = self.dict.texts.len();
        let c = c as usize;
        if c < n {
            self.dict.texts.get(c)
        } else {
            self.extra.get(c - n)
        }
    }
}

impl DictColumn {
    pub(crate) fn new(pages: Box<dyn PageReader>, max_def: i16) -> Self {
        Self {
            pages,
            max_def,
            dict: Arc::new(Dictionary::default()),
            page: None,
            levels: Vec::new(),
            codes: Vec::new(),
        }
    }

    /// Reads up to `n` records into `out` (codes; a placeholder 0 for nulls) and `valid`;
    /// returns how many (fewer only at the end of the chunk).
    pub(crate) fn read(
        &mut self,
        n: usize,
        out: &mut Coded,
        valid: &mut Vec<bool>,
    ) -> Result<usize> {
        let mut got = 0;
        while got < n {
            let Some(page) = self.page.as_mut().filter(|p| p.left > 0) else {
                if !self.next_page()? {
                    break;
                }
                continue;
            };
            if !Arc::ptr_eq(&out.dict, &self.dict) {
                if !out.codes.is_empty() {
                    return Err(bad("a second dictionary page within a column chunk"));
                }
                out.dict = self.dict.clone();
            }
            let (take, present) = page.take(n - got, &mut self.levels, self.max_def, valid)?;
            got += take;
            let dict_len = self.dict.texts.len();
            self.codes.resize(present, 0);
            match &mut page.values {
                Values::Codes(h) => {
                    h.fill(&mut self.codes)?;
                    if let Some(c) = self.codes.iter().find(|&&c| c as usize >= dict_len) {
                        return Err(bad(format!(
                            "dictionary code {c} of a dictionary of {dict_len} values"
                        )));
                    }
                }
                Values::Plain { buf, pos } => {
                    for c in self.codes.iter_mut() {
                        let (rest, len) = plain_at(buf, pos)?;
                        *c = (dict_len + out.extra.len()) as u32;
                        out.extra.push_prefix(rest, len);
                    }
                }
            }
            if page.defs.is_none() {
                out.codes.extend_from_slice(&self.codes);
            } else {
                let start = valid.len() - take;
                let mut it = self.codes.iter();
                for &v in &valid[start..] {
                    out.codes.push(if v { *it.next().unwrap_or(&0) } else { 0 });
                }
            }
        }
        Ok(got)
    }

    /// Moves to the next data page (reading dictionary pages on the way); `false` at the end.
    fn next_page(&mut self) -> Result<bool> {
        loop {
            let Some(page) = self.pages.get_next_page()? else {
                self.page = None;
                return Ok(false);
            };
            match read_page(page, self.max_def)? {
                Read::Dictionary {
                    buf,
                    num_values,
                    encoding,
                } => {
                    if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
                        return Err(bad(format!("a dictionary page encoded {encoding}")));
                    }
                    let mut texts = Texts::default();
                    let mut pos = 0;
                    for _ in 0..num_values {
                        let (rest, len) = plain_at(&buf, &mut pos)?;
                        texts.push_prefix(rest, len);
                    }
                    self.dict = Arc::new(Dictionary {
                        id: NEXT_DICTIONARY.fetch_add(1, Ordering::Relaxed),
                        texts,
                    });
                }
                Read::Data(page) => {
                    self.page = Some(page);
                    return Ok(true);
                }
            }
        }
    }
}

/// A page of a column chunk, as this module reads it.
enum Read {
    Dictionary {
        buf: Bytes,
        num_values: u32,
        encoding: Encoding,
    },
    Data(DataPage),
}

/// Splits a page of a column whose definition levels go up to `max_def` (no repetition) into
/// its levels and values.
fn read_page(page: Page, max_def: i16) -> Result<Read> {
    let def_width = 16 - (max_def as u16).leading_zeros();
    match page {
        Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            ..
        } => Ok(Read::Dictionary {
            buf,
            num_values,
            encoding,
        }),
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            ..
        } => {
            let mut rest = buf;
            let defs = if max_def > 0 {
                if def_level_encoding != Encoding::RLE {
                    return Err(bad(format!(
                        "definition levels encoded {def_level_encoding}"
                    )));
                }
                let len = rest
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .filter(|&l| 4 + l <= rest.len())
                    .ok_or_else(|| bad("definition levels overrun their page"))?;
                let levels = rest.slice(4..4 + len);
                rest = rest.slice(4 + len..);
                Some(Hybrid::new(levels, def_width)?)
            } else {
                None
            };
            Ok(Read::Data(DataPage {
                left: num_values as usize,
                defs,
                values: values(encoding, rest)?,
            }))
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let start = rep_levels_byte_len as usize;
            let end = start + def_levels_byte_len as usize;
            if end > buf.len() {
                return Err(bad("definition levels overrun their page"));
            }
            let defs = if max_def > 0 {
                Some(Hybrid::new(buf.slice(start..end), def_width)?)
            } else {
                None
            };
            Ok(Read::Data(DataPage {
                left: num_values as usize,
                defs,
                values: values(encoding, buf.slice(end..))?,
            }))
        }
    }
}

/// Whether a 64-bit integer column chunk can be read by [`IntColumn`]: plain or
/// dictionary-encoded values, levels in RLE.
pub(crate) fn int_chunk_supported(meta: &ColumnChunkMetaData) -> bool {
    meta.encodings().all(|e| {
        matches!(
            e,
            Encoding::PLAIN | Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY | Encoding::RLE
        )
    })
}

/// A 64-bit integer column chunk (plain or dictionary-encoded) being read straight into a
/// batch's column, without the typed reader's zero-filled staging of every value.
pub(crate) struct IntColumn {
    pages: Box<dyn PageReader>,
    max_def: i16,
    dict: Vec<i64>,
    page: Option<DataPage>,
    levels: Vec<u32>,
    codes: Vec<u32>,
    present: Vec<i64>,
}

impl IntColumn {
    pub(crate) fn new(pages: Box<dyn PageReader>, max_def: i16) -> Self {
        Self {
            pages,
            max_def,
            dict: Vec::new(),
            page: None,
            levels: Vec::new(),
            codes: Vec::new(),
            present: Vec::new(),
        }
    }

    /// Reads up to `n` records into `out` (a placeholder 0 for nulls) and `valid`; returns how
    /// many (fewer only at the end of the chunk).
    pub(crate) fn read(
        &mut self,
        n: usize,
        out: &mut Vec<i64>,
        valid: &mut Vec<bool>,
    ) -> Result<usize> {
        let mut got = 0;
        while got < n {
            let Some(page) = self.page.as_mut().filter(|p| p.left > 0) else {
                if !self.next_page()? {
                    break;
                }
                continue;
            };
            let (take, present) = page.take(n - got, &mut self.levels, self.max_def, valid)?;
            got += take;
            // The present values go straight to `out` when there are no nulls.
            let dense = page.defs.is_none() || present == take;
            let dst = if dense {
                &mut *out
            } else {
                self.present.clear();
                &mut self.present
            };
            match &mut page.values {
                Values::Codes(h) => {
                    self.codes.resize(present, 0);
                    h.fill(&mut self.codes)?;
                    let dict = &self.dict;
                    if let Some(c) = self.codes.iter().find(|&&c| c as usize >= dict.len()) {
                        return Err(bad(format!(
                            "dictionary code {c} of a dictionary of {} values",
                            dict.len()
                        )));
                    }
                    dst.extend(self.codes.iter().map(|&c| dict[c as usize]));
                }
                Values::Plain { buf, pos } => {
                    let bytes = buf
                        .get(*pos..*pos + present * 8)
                        .ok_or_else(|| bad("integer values overrun their page"))?;
                    dst.extend(
                        bytes
                            .chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())),
                    );
                    *pos += present * 8;
                }
            }
            if !dense {
                let start = valid.len() - take;
                let mut it = self.present.iter();
                for &v in &valid[start..] {
                    out.push(if v { *it.next().unwrap_or(&0) } else { 0 });
                }
            }
        }
        Ok(got)
    }

    /// Moves to the next data page (reading dictionary pages on the way); `false` at the end.
    fn next_page(&mut self) -> Result<bool> {
        loop {
            let Some(page) = self.pages.get_next_page()? else {
                self.page = None;
                return Ok(false);
            };
            match read_page(page, self.max_def)? {
                Read::Dictionary {
                    buf,
                    num_values,
                    encoding,
                } => {
                    if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
                        return Err(bad(format!("a dictionary page encoded {encoding}")));
                    }
                    let n = num_values as usize;
                    let bytes = buf
                        .get(..n.saturating_mul(8))
                        .ok_or_else(|| bad("a dictionary page overruns itself"))?;
                    self.dict.clear();
                    self.dict.extend(
                        bytes
                            .chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())),
                    );
                }
                Read::Data(page) => {
                    self.page = Some(page);
                    return Ok(true);
                }
            }
        }
    }
}

fn values(encoding: Encoding, buf: Bytes) -> Result<Values> {
    match encoding {
        Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
            let width = *buf
                .first()
                .ok_or_else(|| bad("a dictionary-coded page without a bit width"))?;
            Ok(Values::Codes(Hybrid::new(
                buf.slice(1..),
                u32::from(width),
            )?))
        }
        Encoding::PLAIN => Ok(Values::Plain { buf, pos: 0 }),
        other => Err(bad(format!("values encoded {other}"))),
    }
}

/// The next value of a PLAIN byte-array buffer (a `u32` little-endian length, then the bytes) at
/// `*pos`, which moves past it: the bytes from its start to the end of `buf`, and its length.
#[inline]
fn plain_at<'b>(buf: &'b [u8], pos: &mut usize) -> Result<(&'b [u8], usize)> {
    let len = buf
        .get(*pos..*pos + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("a string value overruns its page"))?;
    let start = *pos + 4;
    let rest = buf
        .get(start..)
        .filter(|rest| rest.len() >= len)
        .ok_or_else(|| bad("a string value overruns its page"))?;
    *pos = start + len;
    Ok((rest, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        /// PLAIN byte arrays of every length read back whole into [`Texts`] (short ones copied
        /// 16 bytes at a time and cut back, also where fewer than 16 bytes are left); a buffer
        /// cut anywhere inside its last value is an error.
        #[test]
        fn plain_values_read_back(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
            cut in 1usize..44,
        ) {
            let mut buf = Vec::new();
            for v in &values {
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v);
            }
            let mut texts = Texts::default();
            let mut pos = 0;
            for _ in &values {
                let (rest, len) = plain_at(&buf, &mut pos).unwrap();
                texts.push_prefix(rest, len);
            }
            prop_assert_eq!(pos, buf.len());
            prop_assert_eq!(texts.len(), values.len());
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(texts.get(i), v.as_slice());
            }
            if let Some(last) = values.last() {
                let cut = cut.min(last.len() + 4);
                let short = &buf[..buf.len() - cut];
                let mut pos = 0;
                let read: Vec<bool> = values.iter().map(|_| plain_at(short, &mut pos).is_ok()).collect();
                prop_assert!(!read[values.len() - 1], "a cut last value must be an error");
            }
        }
    }

    /// Encodes `values` as one bit-packed run then one RLE run of `rle` repeated `times`.
    fn encode(values: &[u32], width: u32, rle: u32, times: usize) -> Vec<u8> {
        let groups = values.len().div_ceil(8);
        let mut out = vec![((groups as u8) << 1) | 1];
        let mut bits = vec![0u8; groups * width as usize];
        for (i, &v) in values.iter().enumerate() {
            for b in 0..width as usize {
                if v >> b & 1 == 1 {
                    let at = i * width as usize + b;
                    bits[at / 8] |= 1 << (at % 8);
                }
            }
        }
        out.extend(bits);
        out.push((times as u8) << 1);
        out.extend(&rle.to_le_bytes()[..(width as usize).div_ceil(8)]);
        out
    }

    #[test]
    fn hybrid_runs_decode_at_every_width() {
        for width in [1u32, 3, 7, 8, 9, 13, 17, 31, 32] {
            let mask = if width == 32 {
                u32::MAX
            } else {
                (1 << width) - 1
            };
            let values: Vec<u32> = (0..21u32)
                .map(|i| i.wrapping_mul(2_654_435_761) & mask)
                .collect();
            let rle = 5 & mask;
            let bytes = encode(&values, width, rle, 9);
            let mut h = Hybrid::new(Bytes::from(bytes), width).unwrap();
            let mut out = vec![0u32; 24 + 9];
            h.fill(&mut out).unwrap();
            assert_eq!(&out[..21], &values[..], "width {width}");
            assert_eq!(&out[24..], &[rle; 9][..], "width {width}");
            let mut more = [0u32; 1];
            assert!(h.fill(&mut more).is_err());
        }
    }

    #[test]
    fn truncated_runs_are_errors() {
        let bytes = encode(&[1, 2, 3], 5, 1, 3);
        for cut in 0..bytes.len() - 1 {
            let mut h = Hybrid::new(Bytes::copy_from_slice(&bytes[..cut]), 5).unwrap();
            let mut out = vec![0u32; 11];
            assert!(h.fill(&mut out).is_err(), "cut at {cut}");
        }
        assert!(Hybrid::new(Bytes::new(), 33).is_err());
    }
}
