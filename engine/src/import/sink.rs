//! One field being filled from a file: converting cells to the field's kind and staging them
//! in the load in batches.

use std::collections::HashMap;

use super::infer::{self, DAY_MS};
use super::pages::Coded;
use super::source::{Cell, SourceType, Unit};
use crate::bitmap::Appender;
use crate::catalog::FieldKind;
use crate::error::Result;
use crate::table::{Load, LoadField, Value};

/// A cell converted to a field's kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Conv<'a> {
    /// No value.
    None,
    Flag(bool),
    Str(&'a str),
    Owned(String),
    /// Int, decimal units at the field's scale, or timestamp milliseconds.
    Int(i64),
}

/// Whether a column of type `ty` can fill a field of `kind` at all.
pub(crate) fn compatible(kind: FieldKind, ty: &SourceType) -> bool {
    use SourceType as T;
    match kind {
        FieldKind::Flag => matches!(ty, T::Bool | T::Int(Unit::Plain) | T::Text),
        FieldKind::Enum | FieldKind::Set => {
            matches!(ty, T::Bool | T::Int(Unit::Plain) | T::Text)
        }
        FieldKind::Int => matches!(
            ty,
            T::Int(Unit::Plain | Unit::Decimal(_)) | T::Float | T::Text
        ),
        FieldKind::Decimal { .. } => matches!(
            ty,
            T::Int(Unit::Plain | Unit::Decimal(_)) | T::Float | T::Text
        ),
        FieldKind::Timestamp => {
            matches!(
                ty,
                T::Int(Unit::Plain | Unit::Days | Unit::Millis) | T::Text
            )
        }
        // Events come from events files only.
        FieldKind::Event => false,
    }
}

/// The kind a typed (non-text) column gets when nothing else decides.
pub(crate) fn natural_kind(ty: &SourceType, float_scale: u8) -> Option<FieldKind> {
    Some(match ty {
        SourceType::Bool => FieldKind::Flag,
        SourceType::Int(Unit::Plain) => FieldKind::Int,
        SourceType::Int(Unit::Decimal(s)) => FieldKind::Decimal { scale: *s },
        SourceType::Int(Unit::Days | Unit::Millis) => FieldKind::Timestamp,
        SourceType::Float => FieldKind::Decimal { scale: float_scale },
        SourceType::Text | SourceType::Unsupported(_) => return None,
    })
}

/// Converts `cell` (of a column of `unit`, for integers) to `kind`; the error says why not.
pub(crate) fn convert(kind: FieldKind, unit: Unit, cell: Cell<'_>) -> Result<Conv<'_>, String> {
    let bad = |what: &str| Err(format!("{what} is not a valid {}", kind.name()));
    Ok(match (kind, cell) {
        (_, Cell::Null) => Conv::None,
        (FieldKind::Flag, Cell::Bool(b)) => Conv::Flag(b),
        (FieldKind::Flag, Cell::Int(x)) => match x {
            0 => Conv::Flag(false),
            1 => Conv::Flag(true),
            _ => return bad(&x.to_string()),
        },
        (FieldKind::Flag, Cell::Text(t)) => match infer::parse_bool(t) {
            Some(b) => Conv::Flag(b),
            None => return bad(&show(t)),
        },
        (FieldKind::Enum | FieldKind::Set, Cell::Text(t)) => match std::str::from_utf8(t) {
            Ok(s) => Conv::Str(s),
            Err(_) => return Err("invalid UTF-8".into()),
        },
        (FieldKind::Enum | FieldKind::Set, Cell::Int(x)) => Conv::Owned(x.to_string()),
        (FieldKind::Enum | FieldKind::Set, Cell::Bool(b)) => Conv::Owned(b.to_string()),
        (FieldKind::Int, Cell::Int(x)) => match unit {
            Unit::Decimal(s) => match infer::rescale(x as i128, s, 0) {
                Some(v) if (v as i128) * 10i128.pow(s as u32) == x as i128 => Conv::Int(v),
                _ => return bad("a fractional number"),
            },
            _ => Conv::Int(x),
        },
        (FieldKind::Int, Cell::Text(t)) => match infer::parse_int(t) {
            Some(v) => Conv::Int(v),
            None => return bad(&show(t)),
        },
        (FieldKind::Int, Cell::Float(f)) => {
            if f.fract() == 0.0 && f.abs() < 9.0e18 {
                Conv::Int(f as i64)
            } else {
                return bad(&f.to_string());
            }
        }
        (FieldKind::Decimal { scale }, Cell::Int(x)) => {
            let from = match unit {
                Unit::Decimal(s) => s,
                _ => 0,
            };
            match infer::rescale(x as i128, from, scale) {
                Some(v) => Conv::Int(v),
                None => return Err(format!("{x} overflows a decimal of scale {scale}")),
            }
        }
        (FieldKind::Decimal { scale }, Cell::Float(f)) => match infer::float_units(f, scale) {
            Some(v) => Conv::Int(v),
            None => return bad(&f.to_string()),
        },
        (FieldKind::Decimal { scale }, Cell::Text(t)) => match infer::parse_decimal(t, scale) {
            Some(v) => Conv::Int(v),
            None => return bad(&show(t)),
        },
        (FieldKind::Timestamp, Cell::Int(x)) => match unit {
            Unit::Days => Conv::Int(x.saturating_mul(DAY_MS)),
            _ => Conv::Int(x),
        },
        (FieldKind::Timestamp, Cell::Text(t)) => match infer::parse_when(t) {
            Some(w) => Conv::Int(w.ms()),
            None => return bad(&show(t)),
        },
        (FieldKind::Event, _) => return Err("events load from events files".into()),
        (_, Cell::Bool(b)) => return bad(&b.to_string()),
        (_, Cell::Float(f)) => return bad(&f.to_string()),
    })
}

/// A cell's text for a message: quoted, cut at 40 characters.
pub(crate) fn show(t: &[u8]) -> String {
    let s = String::from_utf8_lossy(t);
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("`{cut}…`")
    } else {
        format!("`{cut}`")
    }
}

/// One field being filled.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) field: LoadField,
    pub(crate) kind: FieldKind,
    /// The column's integer unit.
    pub(crate) unit: Unit,
    /// The bad-row reason of this field's values.
    pub(crate) reason: String,
    separator: Option<String>,
    flags: Appender,
    /// The flag's bitmap once [`Sink::seal`] built it.
    sealed: Option<croaring::Bitmap>,
    local: HashMap<String, u32>,
    values: Vec<String>,
    pairs: Vec<(u32, u32)>,
    /// Numbers in the field's stored units, waiting for [`Sink::flush`].
    ints: Vec<(u32, i64)>,
    /// The code of the last value staged: values often repeat from one row to the next.
    last: Option<u32>,
    /// The dictionary `by_code` belongs to, and per entry its value code ([`UNSEEN`] until
    /// used).
    dict_id: u64,
    by_code: Vec<u32>,
}

/// A dictionary entry not converted yet.
const UNSEEN: u32 = u32::MAX;
/// The code of an empty string, which stages nothing.
pub(crate) const EMPTY: u32 = u32::MAX - 1;

impl Sink {
    pub(crate) fn new(
        field: LoadField,
        kind: FieldKind,
        unit: Unit,
        path: &str,
        separator: Option<String>,
    ) -> Self {
        Self {
            field,
            kind,
            unit,
            reason: format!("invalid {} for `{path}`", kind.name()),
            separator: separator.filter(|_| kind == FieldKind::Set),
            flags: Appender::default(),
            sealed: None,
            local: HashMap::new(),
            values: Vec::new(),
            pairs: Vec::new(),
            ints: Vec::new(),
            last: None,
            dict_id: 0,
            by_code: Vec::new(),
        }
    }

    /// Converts `cell`; the error says why it does not fit.
    #[inline]
    pub(crate) fn convert<'c>(&self, cell: Cell<'c>) -> Result<Conv<'c>, String> {
        convert(self.kind, self.unit, cell)
    }

    /// Gives user `id` the flag (fast path for boolean columns).
    #[inline]
    pub(crate) fn push_flag(&mut self, id: u32) {
        self.flags.push(id);
    }

    /// Gives every user of `ids` the flag.
    pub(crate) fn push_flags(&mut self, ids: &[u32]) {
        self.flags.extend(ids);
    }

    /// Stages value `v` (converted by [`Sink::convert`]) for user `id`.
    pub(crate) fn push(&mut self, load: &mut Load<'_>, id: u32, v: Conv<'_>) -> Result<()> {
        match v {
            Conv::None | Conv::Flag(false) => {}
            Conv::Flag(true) => self.flags.push(id),
            Conv::Str(s) => self.push_str(id, s),
            Conv::Owned(s) => self.push_str(id, &s),
            Conv::Int(x) => match self.kind {
                FieldKind::Int | FieldKind::Decimal { .. } | FieldKind::Timestamp => {
                    self.ints.push((id, x));
                }
                _ => load.value_id(self.field, id, Value::Int(x))?,
            },
        }
        Ok(())
    }

    fn push_str(&mut self, id: u32, s: &str) {
        match self.separator.take() {
            Some(sep) => {
                for part in s.split(sep.as_str()) {
                    let part = part.trim();
                    if !part.is_empty() {
                        self.push_one(id, part);
                    }
                }
                self.separator = Some(sep);
            }
            None => {
                if !s.is_empty() {
                    self.push_one(id, s);
                }
            }
        }
    }

    /// Whether values can be staged by dictionary code ([`Sink::code_of`]): enums, and sets
    /// without a separator.
    pub(crate) fn by_codes(&self) -> bool {
        matches!(self.kind, FieldKind::Enum | FieldKind::Set) && self.separator.is_none()
    }

    /// The value code of dictionary entry `code` of `coded` ([`EMPTY`] for an empty string),
    /// converted once per dictionary; the error says why the entry does not fit.
    pub(crate) fn code_of(&mut self, coded: &Coded, code: u32) -> Result<u32, String> {
        if self.dict_id != coded.dict.id {
            self.dict_id = coded.dict.id;
            self.by_code.clear();
            self.by_code.resize(coded.dict.texts.len(), UNSEEN);
        }
        if let Some(&c) = self.by_code.get(code as usize)
            && c != UNSEEN
        {
            return Ok(c);
        }
        let s = std::str::from_utf8(coded.text(code)).map_err(|_| "invalid UTF-8".to_owned())?;
        let c = if s.is_empty() { EMPTY } else { self.intern(s) };
        if let Some(slot) = self.by_code.get_mut(code as usize) {
            *slot = c;
        }
        Ok(c)
    }

    /// Stages value code `c` (from [`Sink::code_of`]) for user `id`.
    #[inline]
    pub(crate) fn push_code(&mut self, id: u32, c: u32) {
        if c != EMPTY {
            self.pairs.push((id, c));
        }
    }

    #[inline]
    fn push_one(&mut self, id: u32, s: &str) {
        let code = self.intern(s);
        self.pairs.push((id, code));
    }

    /// The code of value `s`, assigning the next one to a new value.
    #[inline]
    fn intern(&mut self, s: &str) -> u32 {
        match self.last {
            Some(c) if self.values[c as usize] == s => c,
            _ => {
                let next = self.values.len() as u32;
                let c = *self.local.entry(s.to_owned()).or_insert(next);
                if c == next {
                    self.values.push(s.to_owned());
                }
                self.last = Some(c);
                c
            }
        }
    }

    /// Moves what is pending into the load (call after each batch).
    pub(crate) fn flush(&mut self, load: &mut Load<'_>) -> Result<()> {
        if !self.pairs.is_empty() {
            load.value_codes(self.field, &self.values, &self.pairs)?;
            self.pairs.clear();
        }
        if !self.ints.is_empty() {
            load.value_units(self.field, &self.ints)?;
            self.ints.clear();
        }
        Ok(())
    }

    /// Builds the flag's bitmap from its ids (call once, at the end, before
    /// [`Sink::finish`]); sinks can be sealed in parallel, which the load cannot.
    pub(crate) fn seal(&mut self) {
        if self.kind == FieldKind::Flag {
            self.sealed = Some(std::mem::take(&mut self.flags).finish());
        }
    }

    /// Moves everything into the load (call once, at the end).
    pub(crate) fn finish(&mut self, load: &mut Load<'_>) -> Result<()> {
        self.flush(load)?;
        if self.kind == FieldKind::Flag {
            let flags = match self.sealed.take() {
                Some(b) => b,
                None => std::mem::take(&mut self.flags).finish(),
            };
            load.flag_bitmap_owned(self.field, flags)?;
        }
        Ok(())
    }
}
