//! Text values and kind inference: parsing booleans, integers, decimals and times from text, and
//! choosing a field kind from a bounded sample of a column's values.
//!
//! The rules, applied to the non-empty values of the sample (empty values are missing values):
//!
//! 1. every value is one of `true false yes no t f y n` (any case) or every value is `0` or `1`
//!    → **flag** (`true`, `yes`, `t`, `y`, `1` make the user a member);
//! 2. every value is an integer that fits `i64` → **int**;
//! 3. every value is a decimal number (`-12.50`) → **decimal**, with the largest number of digits
//!    after the point seen in the sample as its scale (at most 18); numbers in exponent notation
//!    (`1.5e3`) make it a float column: scale [`super::DEFAULT_FLOAT_SCALE`] unless the mapping
//!    says otherwise. Later values with more digits are rounded half away from zero;
//! 4. every value is a date (`2026-11-25`) or a date and time (`2026-11-25 08:30:00`,
//!    `2026-11-25T08:30:00.250Z`, `…+08:00`; no offset means UTC) → **timestamp**;
//! 5. otherwise, strings: **enum** if the sample holds at most `enum_max_distinct` distinct
//!    values; a column with more is refused with a message asking for a mapping (an enum of
//!    that many values is more likely an identifier or free text than a tag).

use std::collections::HashSet;

use crate::catalog::FieldKind;

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Parses a boolean: `true false yes no t f y n 1 0`, any case.
pub(crate) fn parse_bool(s: &[u8]) -> Option<bool> {
    if s.len() > 5 {
        return None;
    }
    let mut buf = [0u8; 5];
    for (d, c) in buf.iter_mut().zip(s) {
        *d = c.to_ascii_lowercase();
    }
    match &buf[..s.len()] {
        b"true" | b"yes" | b"t" | b"y" | b"1" => Some(true),
        b"false" | b"no" | b"f" | b"n" | b"0" => Some(false),
        _ => None,
    }
}

/// Parses a decimal integer (optional sign).
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub((c - b'0') as i64)?;
    }
    if neg { Some(v) } else { v.checked_neg() }
}

/// A decimal literal `[-+]digits[.digits]` (no exponent): its units at its own scale, and that
/// scale. `None` if it is not one, or does not fit.
pub(crate) fn parse_fixed(s: &[u8]) -> Option<(i128, u8)> {
    let (neg, rest) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match rest.iter().position(|&c| c == b'.') {
        Some(p) => (&rest[..p], &rest[p + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if (int.is_empty() && frac.is_empty()) || int.len() + frac.len() > 36 || frac.len() > 18 {
        return None;
    }
    let mut v: i128 = 0;
    for &c in int.iter().chain(frac) {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i128;
    }
    Some((if neg { -v } else { v }, frac.len() as u8))
}

/// Rescales `units` at scale `from` to scale `to`, rounding half away from zero; `None` if the
/// result does not fit `i64`.
pub(crate) fn rescale(units: i128, from: u8, to: u8) -> Option<i64> {
    let v = if to >= from {
        units.checked_mul(10i128.checked_pow((to - from) as u32)?)?
    } else {
        let d = 10i128.pow((from - to) as u32);
        let q = units / d;
        let r = units % d;
        if r.abs() * 2 >= d {
            q + units.signum()
        } else {
            q
        }
    };
    i64::try_from(v).ok()
}

/// A float as units of `10^-scale`, rounded half away from zero.
pub(crate) fn float_units(x: f64, scale: u8) -> Option<i64> {
    let v = (x * 10f64.powi(scale as i32)).round();
    (v.is_finite() && v >= i64::MIN as f64 && v < i64::MAX as f64).then_some(v as i64)
}

/// Parses a decimal from text at `scale`: a fixed-point literal, or a float in exponent
/// notation; rounded half away from zero.
pub(crate) fn parse_decimal(s: &[u8], scale: u8) -> Option<i64> {
    if let Some((units, from)) = parse_fixed(s) {
        return rescale(units, from, scale);
    }
    let x: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    float_units(x, scale)
}

pub(crate) use crate::calendar::{civil_from_days, days_from_civil};

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A point in time parsed from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// A date alone: days since 1970-01-01.
    Day(i32),
    /// A date and time: milliseconds since the Unix epoch.
    Ms(i64),
}

impl When {
    /// Milliseconds since the epoch (a day starts at midnight UTC).
    pub(crate) fn ms(self) -> i64 {
        match self {
            When::Day(d) => d as i64 * DAY_MS,
            When::Ms(ms) => ms,
        }
    }
}

/// Parses `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM[:SS[.fff]]`, then
/// optionally `Z` or `±HH:MM` (no offset: UTC).
pub(crate) fn parse_when(s: &[u8]) -> Option<When> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i64, m) {
        return None;
    }
    let day = days_from_civil(y as i64, m, d);
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(When::Day(i32::try_from(day).ok()?));
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (hh, mm) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
    let mut rest = &rest[6..];
    let (mut ss, mut ms) = (0u32, 0u32);
    if rest.first() == Some(&b':') {
        ss = digits(rest.get(1..3)?)?;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            let frac = &rest[1..1 + n];
            let mut v = 0u32;
            for i in 0..3 {
                v = v * 10 + frac.get(i).map_or(0, |c| (c - b'0') as u32);
            }
            ms = v;
            rest = &rest[1 + n..];
        }
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let offset_min: i64 = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])? as i64;
            let m = digits(&[*m1, *m2])? as i64;
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    let secs = day * 86_400 + hh as i64 * 3600 + mm as i64 * 60 + ss as i64 - offset_min * 60;
    Some(When::Ms(secs * 1000 + ms as i64))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The kind inferred for a text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inferred {
    /// A field kind.
    Kind(FieldKind),
    /// No non-empty value in the sample: nothing to decide from.
    Empty,
    /// Strings with more distinct values than an enum may have.
    HighCardinality(usize),
}

/// Infers the kind of a column from the sampled non-empty `values` (see the module docs).
/// `float_scale` is the scale of float columns.
pub(crate) fn infer_text<'a>(
    values: impl Iterator<Item = &'a [u8]> + Clone,
    float_scale: u8,
    enum_max_distinct: usize,
) -> Inferred {
    let mut any = false;
    let (mut bools, mut bits, mut ints, mut fixed, mut floats, mut times) =
        (true, true, true, true, true, true);
    let mut scale = 0u8;
    for v in values.clone() {
        any = true;
        bits &= v == b"0" || v == b"1";
        bools &= !v.is_empty() && !v[0].is_ascii_digit() && parse_bool(v).is_some();
        ints &= parse_int(v).is_some();
        match parse_fixed(v) {
            Some((_, s)) => scale = scale.max(s),
            None => fixed = false,
        }
        floats &= std::str::from_utf8(v)
            .ok()
            .is_some_and(|s| s.parse::<f64>().is_ok_and(f64::is_finite));
        times &= parse_when(v).is_some();
        if !(bools || bits || ints || fixed || floats || times) {
            break;
        }
    }
    if !any {
        return Inferred::Empty;
    }
    let kind = if bools || bits {
        FieldKind::Flag
    } else if ints {
        FieldKind::Int
    } else if fixed {
        FieldKind::Decimal { scale }
    } else if floats {
        FieldKind::Decimal { scale: float_scale }
    } else if times {
        FieldKind::Timestamp
    } else {
        let mut distinct = HashSet::new();
        for v in values {
            distinct.insert(v);
            if distinct.len() > enum_max_distinct {
                return Inferred::HighCardinality(distinct.len());
            }
        }
        FieldKind::Enum
    };
    Inferred::Kind(kind)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testutil::proptest_config;

    fn infer(values: &[&str]) -> Inferred {
        infer_text(values.iter().map(|s| s.as_bytes()), 2, 3)
    }

    #[test]
    fn kinds_follow_the_documented_rules() {
        assert_eq!(
            infer(&["true", "FALSE", "y"]),
            Inferred::Kind(FieldKind::Flag)
        );
        assert_eq!(infer(&["1", "0", "1"]), Inferred::Kind(FieldKind::Flag));
        assert_eq!(infer(&["1", "2", "-3"]), Inferred::Kind(FieldKind::Int));
        assert_eq!(
            infer(&["1", "2.5", "-3.125"]),
            Inferred::Kind(FieldKind::Decimal { scale: 3 })
        );
        assert_eq!(
            infer(&["1e3", "2.5"]),
            Inferred::Kind(FieldKind::Decimal { scale: 2 })
        );
        assert_eq!(
            infer(&["2026-11-25", "2026-11-25T08:00:00Z"]),
            Inferred::Kind(FieldKind::Timestamp)
        );
        assert_eq!(
            infer(&["a", "b", "a", "c"]),
            Inferred::Kind(FieldKind::Enum)
        );
        assert_eq!(infer(&["a", "b", "c", "d"]), Inferred::HighCardinality(4));
        assert_eq!(infer(&[]), Inferred::Empty);
        // One odd value makes the column strings.
        assert_eq!(infer(&["1", "x"]), Inferred::Kind(FieldKind::Enum));
    }

    #[test]
    fn times_parse_with_offsets_and_fractions() {
        assert_eq!(parse_when(b"1970-01-02"), Some(When::Day(1)));
        assert_eq!(parse_when(b"1970-01-01T00:00:01.5Z"), Some(When::Ms(1500)));
        assert_eq!(parse_when(b"1970-01-01 08:00:00+08:00"), Some(When::Ms(0)));
        assert_eq!(parse_when(b"1970-01-01 00:01"), Some(When::Ms(60_000)));
        for bad in ["2026-02-30", "2026-13-01", "2026-1-01", "2026-01-01X", "x"] {
            assert_eq!(parse_when(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn decimals_round_half_away_from_zero() {
        assert_eq!(parse_decimal(b"1.005", 2), Some(101));
        assert_eq!(parse_decimal(b"-1.005", 2), Some(-101));
        assert_eq!(parse_decimal(b"-1.004", 2), Some(-100));
        assert_eq!(parse_decimal(b"12", 2), Some(1200));
        assert_eq!(parse_decimal(b"1.5e2", 1), Some(1500));
        assert_eq!(parse_decimal(b"abc", 2), None);
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775808"), None);
    }

    proptest! {
        #![proptest_config(proptest_config(256))]

        #[test]
        fn civil_dates_round_trip(day in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(day);
            prop_assert_eq!(days_from_civil(y, m, d), day);
        }

        #[test]
        fn integers_round_trip(x in any::<i64>()) {
            prop_assert_eq!(parse_int(x.to_string().as_bytes()), Some(x));
        }

        #[test]
        fn dates_round_trip(day in 0i64..2_000_000) {
            let (y, m, d) = civil_from_days(day);
            prop_assume!(y < 10_000);
            let text = format!("{y:04}-{m:02}-{d:02}");
            prop_assert_eq!(parse_when(text.as_bytes()), Some(When::Day(day as i32)));
        }
    }
}
