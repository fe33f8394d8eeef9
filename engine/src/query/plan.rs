//! The planner: a crowd [`Expr`] resolved against one snapshot into a tree of bitmap operations.
//!
//! Resolution checks every name and kind (with "did you mean" suggestions for unknown fields)
//! and converts literals to stored units. Then, while building the tree, it
//!
//! - folds constants (`ALL`, values absent from the data, `NOT NOT x`);
//! - flattens `AND` and turns its `NOT` operands into an `ANDNOT` list, so negations never
//!   materialize the complement;
//! - lets evaluation order `AND` operands by estimated cardinality (sparsest first) and stop as
//!   soon as the running intersection is empty.
//!
//! A value absent from the data (`city = 'Atlantis'`) is not an error: nobody has it. An unknown
//! field, a wrong kind or an impossible literal is.

use std::sync::Arc;

use croaring::Bitmap;

use crate::behaviour::predicate::{DidNode, DidTest};
use crate::behaviour::{DayRange, day_of_date};
use crate::catalog::FieldKind;
use crate::error::{Error, Result};
use crate::expr::{CmpOp, Expr, HasMode, Literal, Occurrence, Path, When, Window};
use crate::ids::KeyRef;
use crate::table::{FieldRef, TableSnapshot};

/// A resolved expression node.
#[derive(Debug, Clone)]
pub(crate) enum Node<'s> {
    /// Every known user.
    All,
    /// Nobody.
    Empty,
    /// Members of a flag.
    Flag(FieldRef<'s>),
    /// Users holding any of these value codes (enum `=`/`IN`, set `HAS`/`HAS ANY`).
    AnyValue(FieldRef<'s>, Vec<u32>),
    /// Users holding all of these value codes (set `HAS ALL`).
    AllValues(FieldRef<'s>, Vec<u32>),
    /// Users with any value of the field.
    Exists(FieldRef<'s>),
    /// A numeric comparison, constant in stored units.
    Compare(FieldRef<'s>, CmpOp, i64),
    /// A numeric inclusive range in stored units.
    Between(FieldRef<'s>, i64, i64),
    /// An explicit set of user ids.
    Ids(Arc<Bitmap>),
    /// Users in every `pos` operand and no `neg` operand; `pos` is never empty.
    And {
        pos: Vec<Node<'s>>,
        neg: Vec<Node<'s>>,
    },
    /// Users in any operand.
    Or(Vec<Node<'s>>),
    /// Users in an odd number of operands.
    Xor(Vec<Node<'s>>),
    /// Known users not in the operand.
    Not(Box<Node<'s>>),
    /// A behaviour test: `did(...)` over some days of an event.
    Did(DidNode<'s>),
}

impl Node<'_> {
    /// Estimated number of users, from catalog statistics only (no data is read).
    pub(crate) fn estimate(&self, users: u64) -> u64 {
        match self {
            Node::All => users,
            Node::Empty => 0,
            Node::Flag(f) | Node::Exists(f) => f.version().users,
            Node::AnyValue(f, codes) => {
                let per = f.version().users / f.version().distinct.max(1);
                (per * codes.len() as u64).min(f.version().users)
            }
            Node::AllValues(f, _) => f.version().users / f.version().distinct.max(1),
            Node::Compare(f, op, c) => match bsi_share(f, |b| b.estimate_share(*op, *c)) {
                Some(share) => (f.version().users as f64 * share) as u64,
                None if *op == CmpOp::Eq => f.version().users / f.version().distinct.max(1),
                None => f.version().users / 2,
            },
            Node::Between(f, lo, hi) => {
                let share = |b: &crate::bitmap::bsi::BsiRef<'_>| {
                    b.estimate_share(CmpOp::Le, *hi) - b.estimate_share(CmpOp::Lt, *lo)
                };
                match bsi_share(f, share) {
                    Some(s) => (f.version().users as f64 * s.max(0.0)) as u64,
                    None => f.version().users / 4,
                }
            }
            Node::Ids(b) => b.cardinality(),
            Node::And { pos, .. } => pos.iter().map(|n| n.estimate(users)).min().unwrap_or(0),
            Node::Or(xs) | Node::Xor(xs) => {
                xs.iter().map(|n| n.estimate(users)).sum::<u64>().min(users)
            }
            Node::Not(x) => users.saturating_sub(x.estimate(users)),
            Node::Did(d) => d.estimate(users),
        }
    }

    /// A one-line description for `explain`.
    pub(crate) fn label(&self) -> String {
        let values = |f: &FieldRef<'_>, codes: &[u32]| {
            codes
                .iter()
                .filter_map(|&c| f.values().get(c as usize))
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Node::All => "ALL".into(),
            Node::Empty => "EMPTY".into(),
            Node::Flag(f) => format!("flag {}", f.path()),
            Node::AnyValue(f, codes) => format!("{} IN ({})", f.path(), values(f, codes)),
            Node::AllValues(f, codes) => format!("{} HAS ALL ({})", f.path(), values(f, codes)),
            Node::Exists(f) => format!("{} has a value", f.path()),
            Node::Compare(f, op, c) => format!("{} {} {c}", f.path(), op.symbol()),
            Node::Between(f, lo, hi) => format!("{} BETWEEN {lo} AND {hi}", f.path()),
            Node::Ids(b) => format!("KEYS ({} users)", b.cardinality()),
            Node::And { neg, .. } if neg.is_empty() => "AND".into(),
            Node::And { .. } => "AND NOT".into(),
            Node::Or(_) => "OR".into(),
            Node::Xor(_) => "XOR".into(),
            Node::Not(_) => "NOT".into(),
            Node::Did(d) => d.label(),
        }
    }

    /// Children, in evaluation order for `explain` (negated `AND` operands last).
    pub(crate) fn children(&self) -> Vec<&Self> {
        match self {
            Node::And { pos, neg } => pos.iter().chain(neg.iter()).collect(),
            Node::Or(xs) | Node::Xor(xs) => xs.iter().collect(),
            Node::Not(x) => vec![x],
            _ => Vec::new(),
        }
    }
}

/// Resolves names in `expr` at one snapshot (and, with `as_of`, one version label).
pub(crate) struct Planner<'s> {
    pub(crate) snap: &'s TableSnapshot,
    pub(crate) as_of: Option<&'s str>,
    /// The day `last N days` and `N days ago` count back from (`None`: no event data).
    pub(crate) reference: Option<i32>,
}

impl<'s> Planner<'s> {
    pub(crate) fn field(&self, path: &Path) -> Result<FieldRef<'s>> {
        self.snap.field_at(path.as_str(), self.as_of)
    }

    pub(crate) fn plan(&self, expr: &Expr) -> Result<Node<'s>> {
        Ok(match expr {
            Expr::All => Node::All,
            Expr::Field(path) => {
                let f = self.field(path)?;
                require(
                    &f,
                    f.kind() == FieldKind::Flag,
                    "a flag (name a value for other kinds)",
                )?;
                Node::Flag(f)
            }
            Expr::Compare { path, op, value } => self.compare(path, *op, value)?,
            Expr::In {
                path,
                values,
                negated,
            } => {
                let f = self.field(path)?;
                let node = if f.kind().is_numeric() {
                    let mut ors = Vec::with_capacity(values.len());
                    for v in values {
                        ors.push(self.numeric(&f, CmpOp::Eq, v)?);
                    }
                    or(ors)
                } else {
                    require(&f, f.kind().has_values(), "an enum, set or numeric field")?;
                    any_value(f, codes(&f, values)?.0)
                };
                if *negated {
                    and_not(self.exists(f), node)
                } else {
                    node
                }
            }
            Expr::Between { path, low, high } => {
                let f = self.field(path)?;
                require(&f, f.kind().is_numeric(), "a numeric field")?;
                let lo = to_units(&f, low)?;
                let hi = to_units(&f, high)?;
                // Inclusive bounds in stored units: round the lower bound up, the upper down.
                match (ceil_units(lo), floor_units(hi)) {
                    (Some(lo), Some(hi)) if lo <= hi => Node::Between(f, lo, hi),
                    _ => Node::Empty,
                }
            }
            Expr::Has { path, mode, values } => {
                let f = self.field(path)?;
                require(&f, f.kind().has_values(), "a set or enum field")?;
                let (resolved, missing) = codes(&f, values)?;
                match mode {
                    HasMode::One | HasMode::Any => any_value(f, resolved),
                    HasMode::All if missing => Node::Empty,
                    HasMode::All if f.kind() == FieldKind::Enum && resolved.len() > 1 => {
                        Node::Empty
                    }
                    HasMode::All => Node::AllValues(f, resolved),
                }
            }
            Expr::Keys(keys) => {
                let mut ids = Bitmap::new();
                for k in keys {
                    let id = match k {
                        Literal::Str(s) => self.snap.id_of(KeyRef::Str(s))?,
                        Literal::Int(i) if *i >= 0 => self.snap.id_of(KeyRef::U64(*i as u64))?,
                        other => {
                            return Err(Error::InvalidArgument(format!(
                                "user keys are strings or non-negative integers, found {other}"
                            )));
                        }
                    };
                    if let Some(id) = id {
                        ids.add(id);
                    }
                }
                if ids.is_empty() {
                    Node::Empty
                } else {
                    Node::Ids(Arc::new(ids))
                }
            }
            Expr::Did {
                event,
                window,
                count,
            } => {
                let f = self.event(event)?;
                let days = self.window_days(&f, window);
                let test = match count {
                    None => DidTest::Any,
                    Some(c) => DidTest::Count {
                        op: c.op,
                        n: c.n,
                        measure: c.measure,
                    },
                };
                let node = DidNode {
                    event: f,
                    days,
                    test,
                };
                if node.zero_passes() {
                    Node::Did(node)
                } else if node.days.is_empty() {
                    Node::Empty
                } else {
                    Node::Did(node)
                }
            }
            Expr::Occurred { which, event, when } => {
                let f = self.event(event)?;
                self.occurred(f, *which, when)?
            }
            Expr::Not(inner) => not(self.plan(inner)?),
            Expr::And(xs) => {
                let mut parts = Vec::with_capacity(xs.len());
                for x in xs {
                    parts.push(self.plan(x)?);
                }
                and(parts)
            }
            Expr::Or(xs) => {
                let mut parts = Vec::with_capacity(xs.len());
                for x in xs {
                    parts.push(self.plan(x)?);
                }
                or(parts)
            }
            Expr::Xor(xs) => {
                let mut parts = Vec::with_capacity(xs.len());
                for x in xs {
                    parts.push(self.plan(x)?);
                }
                let parts: Vec<Node<'s>> = parts
                    .into_iter()
                    .filter(|n| !matches!(n, Node::Empty))
                    .collect();
                match parts.len() {
                    0 => Node::Empty,
                    1 => parts.into_iter().next().expect("one"),
                    _ => Node::Xor(parts),
                }
            }
        })
    }

    /// Users with a value of `f`: every known user when the field covers them all (so
    /// `channel != 'organic'` costs one subtraction, not a union of every other value).
    fn exists(&self, f: FieldRef<'s>) -> Node<'s> {
        // The version's statistics describe the stored data only: real-time changes may have
        // cleared values or added users since.
        if !f.has_delta() && f.version().users >= u64::from(self.snap.users()) {
            Node::All
        } else {
            Node::Exists(f)
        }
    }

    fn event(&self, path: &Path) -> Result<FieldRef<'s>> {
        let f = self.field(path)?;
        require(&f, f.kind() == FieldKind::Event, "an event")?;
        Ok(f)
    }

    /// The stored days of `f` inside `window`.
    fn window_days(&self, f: &FieldRef<'s>, window: &Window) -> Vec<i32> {
        let range = match window {
            Window::Ever => return f.event_days().to_vec(),
            Window::Last { days, ending } => {
                let end = match ending {
                    Some(d) => Some(day_of_date(d.year(), d.month(), d.day())),
                    None => self.reference,
                };
                match end {
                    Some(end) => {
                        let first =
                            (i64::from(end) - i64::from(*days) + 1).max(i64::from(i32::MIN));
                        DayRange::new(first as i32, end)
                    }
                    None => return Vec::new(),
                }
            }
            Window::Range { from, to } => DayRange::new(
                day_of_date(from.year(), from.month(), from.day()),
                day_of_date(to.year(), to.month(), to.day()),
            ),
        };
        f.event_days()
            .iter()
            .copied()
            .filter(|&d| range.contains(d))
            .collect()
    }

    /// `first_did` / `last_did` as unions of days: "the last day is on or after D" is "did
    /// it on a day >= D", "on or before D" is "did it, and not on a day > D", and so on.
    fn occurred(&self, f: FieldRef<'s>, which: Occurrence, when: &When) -> Result<Node<'s>> {
        // The test as `day op d` on the occurrence's day.
        let (op, d) = match *when {
            When::Date { op, date } => (op, day_of_date(date.year(), date.month(), date.day())),
            When::DaysAgo { days, .. } | When::Within(days) => {
                let Some(reference) = self.reference else {
                    return Ok(Node::Empty);
                };
                let d = reference as i64 - days as i64;
                let d = d.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                // The age compares the other way round from the day.
                let op = match *when {
                    When::DaysAgo { op, .. } => match op {
                        CmpOp::Lt => CmpOp::Gt,
                        CmpOp::Le => CmpOp::Ge,
                        CmpOp::Gt => CmpOp::Lt,
                        CmpOp::Ge => CmpOp::Le,
                        other => other,
                    },
                    _ => CmpOp::Gt,
                };
                (op, d)
            }
        };
        let all = f.event_days();
        let any = |keep: &dyn Fn(i32) -> bool| -> Node<'s> {
            let days: Vec<i32> = all.iter().copied().filter(|&x| keep(x)).collect();
            if days.is_empty() {
                Node::Empty
            } else {
                Node::Did(DidNode {
                    event: f,
                    days,
                    test: DidTest::Any,
                })
            }
        };
        let ever = || any(&|_| true);
        // `at` holds for days at or past the occurrence in the direction of the test.
        let (on_or_beyond, beyond): (Node<'s>, Node<'s>) = match which {
            // Last day >= d: some day >= d.
            Occurrence::Last => (any(&|x| x >= d), any(&|x| x > d)),
            // First day <= d: some day <= d.
            Occurrence::First => (any(&|x| x <= d), any(&|x| x < d)),
        };
        let exactly = || and_not(any(&|x| x == d), beyond.clone());
        Ok(match (which, op) {
            (_, CmpOp::Eq) => exactly(),
            (_, CmpOp::Ne) => and_not(ever(), exactly()),
            (Occurrence::Last, CmpOp::Ge) | (Occurrence::First, CmpOp::Le) => on_or_beyond,
            (Occurrence::Last, CmpOp::Gt) | (Occurrence::First, CmpOp::Lt) => beyond,
            (Occurrence::Last, CmpOp::Le) | (Occurrence::First, CmpOp::Ge) => {
                and_not(ever(), beyond)
            }
            (Occurrence::Last, CmpOp::Lt) | (Occurrence::First, CmpOp::Gt) => {
                and_not(ever(), on_or_beyond)
            }
        })
    }

    fn compare(&self, path: &Path, op: CmpOp, value: &Literal) -> Result<Node<'s>> {
        let f = self.field(path)?;
        match f.kind() {
            FieldKind::Flag => {
                let Literal::Bool(b) = value else {
                    return Err(Error::InvalidArgument(format!(
                        "flag `{}` compares only with TRUE or FALSE",
                        f.path()
                    )));
                };
                let positive = match op {
                    CmpOp::Eq => *b,
                    CmpOp::Ne => !*b,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "flag `{}` supports only = and !=",
                            f.path()
                        )));
                    }
                };
                Ok(if positive {
                    Node::Flag(f)
                } else {
                    not(Node::Flag(f))
                })
            }
            FieldKind::Enum => {
                let node = any_value(f, codes(&f, std::slice::from_ref(value))?.0);
                match op {
                    CmpOp::Eq => Ok(node),
                    CmpOp::Ne => Ok(and_not(self.exists(f), node)),
                    _ => Err(Error::InvalidArgument(format!(
                        "enum `{}` supports =, !=, IN and NOT IN",
                        f.path()
                    ))),
                }
            }
            FieldKind::Set => Err(Error::InvalidArgument(format!(
                "set `{}` is tested with HAS, HAS ANY or HAS ALL",
                f.path()
            ))),
            _ => self.numeric(&f, op, value),
        }
    }

    fn numeric(&self, f: &FieldRef<'s>, op: CmpOp, value: &Literal) -> Result<Node<'s>> {
        let r = to_units(f, value)?;
        let f = *f;
        // `r` is a rational in stored units; compare integers with it exactly.
        Ok(match (op, r.exact()) {
            (_, Some(c)) => Node::Compare(f, op, c),
            (CmpOp::Eq, None) => Node::Empty,
            (CmpOp::Ne, None) => self.exists(f),
            (CmpOp::Lt | CmpOp::Le, None) => match floor_units(r) {
                Some(c) => Node::Compare(f, CmpOp::Le, c),
                None => Node::Empty,
            },
            (CmpOp::Gt | CmpOp::Ge, None) => match ceil_units(r) {
                Some(c) => Node::Compare(f, CmpOp::Ge, c),
                None => Node::Empty,
            },
        })
    }
}

fn require(f: &FieldRef<'_>, ok: bool, expected: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::KindMismatch {
            path: f.path().to_owned(),
            actual: f.kind().name(),
            expected,
        })
    }
}

/// Value codes of `values` in `f`'s dictionary, without duplicates; values nobody has are
/// skipped, and reported by the flag.
fn codes(f: &FieldRef<'_>, values: &[Literal]) -> Result<(Vec<u32>, bool)> {
    let mut out = Vec::with_capacity(values.len());
    let mut missing = false;
    for v in values {
        let text = match v {
            Literal::Str(s) => s.clone(),
            Literal::Int(i) => i.to_string(),
            Literal::Bool(b) => b.to_string(),
            Literal::Decimal(d) => Literal::Decimal(*d).to_string(),
            Literal::Date(d) => format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
        };
        match f.code_of(&text) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => missing = true,
        }
    }
    out.sort_unstable();
    Ok((out, missing))
}

fn any_value<'s>(f: FieldRef<'s>, codes: Vec<u32>) -> Node<'s> {
    if codes.is_empty() {
        Node::Empty
    } else {
        Node::AnyValue(f, codes)
    }
}

/// A value in stored units as the fraction `num / den` (`den` a power of ten, > 0).
#[derive(Debug, Clone, Copy)]
struct Units {
    num: i128,
    den: i128,
}

impl Units {
    fn exact(self) -> Option<i64> {
        (self.num % self.den == 0)
            .then(|| i64::try_from(self.num / self.den).ok())
            .flatten()
    }
}

fn floor_units(u: Units) -> Option<i64> {
    i64::try_from(u.num.div_euclid(u.den)).ok()
}

fn ceil_units(u: Units) -> Option<i64> {
    i64::try_from(-((-u.num).div_euclid(u.den))).ok()
}

/// Converts a literal to the stored units of numeric field `f`.
fn to_units(f: &FieldRef<'_>, v: &Literal) -> Result<Units> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{v} is not a value for {} field `{}`",
            f.kind().name(),
            f.path()
        ))
    };
    let pow10 = |e: u32| 10i128.checked_pow(e);
    match (f.kind(), v) {
        (FieldKind::Int, Literal::Int(i)) => Ok(Units { num: *i as i128, den: 1 }),
        (FieldKind::Int, Literal::Decimal(d)) => Ok(Units {
            num: d.mantissa(),
            den: pow10(d.scale() as u32).ok_or_else(bad)?,
        }),
        (FieldKind::Decimal { scale }, Literal::Int(i)) => Ok(Units {
            num: (*i as i128).checked_mul(pow10(scale as u32).ok_or_else(bad)?).ok_or_else(bad)?,
            den: 1,
        }),
        (FieldKind::Decimal { scale }, Literal::Decimal(d)) => {
            if d.scale() <= scale {
                let m = pow10((scale - d.scale()) as u32).ok_or_else(bad)?;
                Ok(Units {
                    num: d.mantissa().checked_mul(m).ok_or_else(bad)?,
                    den: 1,
                })
            } else {
                Ok(Units {
                    num: d.mantissa(),
                    den: pow10((d.scale() - scale) as u32).ok_or_else(bad)?,
                })
            }
        }
        (FieldKind::Timestamp, Literal::Int(ms)) => Ok(Units { num: *ms as i128, den: 1 }),
        (FieldKind::Timestamp, Literal::Date(d)) => Ok(Units {
            num: date_ms(d.year(), d.month(), d.day()) as i128,
            den: 1,
        }),
        (FieldKind::Timestamp, Literal::Str(s)) => parse_timestamp(s)
            .map(|ms| Units { num: ms as i128, den: 1 })
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "'{s}' is not a time for `{}`: write 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS' (UTC)",
                    f.path()
                ))
            }),
        _ => Err(bad()),
    }
}

/// Milliseconds since the epoch at midnight UTC of a proleptic Gregorian date.
pub(crate) fn date_ms(year: i32, month: u8, day: u8) -> i64 {
    days_from_civil(year as i64, month as i64, day as i64) * 86_400_000
}

/// Days since 1970-01-01 of a civil date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    crate::calendar::days_from_civil(y, m as u32, d as u32)
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` (also with `T`), as UTC milliseconds.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let (date, time) = match s.len() {
        10 => (s, None),
        19 => (&s[..10], Some(&s[11..])),
        _ => return None,
    };
    if s.len() == 19 && !matches!(s.as_bytes()[10], b' ' | b'T') {
        return None;
    }
    let d = crate::expr::Date::parse_iso(date)?;
    let mut ms = date_ms(d.year(), d.month(), d.day());
    if let Some(t) = time {
        let b = t.as_bytes();
        if b.len() != 8 || b[2] != b':' || b[5] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
        let (h, m, sec) = (num(0..2)?, num(3..5)?, num(6..8)?);
        if h > 23 || m > 59 || sec > 59 {
            return None;
        }
        ms += ((h * 60 + m) * 60 + sec) * 1000;
    }
    Some(ms)
}

/// The share of a numeric field's users a comparison keeps, estimated from the slice sizes of
/// the first shard holding the field (cheap: no bitmap is combined).
fn bsi_share(
    f: &FieldRef<'_>,
    share: impl Fn(&crate::bitmap::bsi::BsiRef<'_>) -> f64,
) -> Option<f64> {
    (0..f.shards()).find_map(|s| f.bsi_in(s).ok().flatten().map(|b| share(&b)))
}

/// `NOT x`, folded.
pub(crate) fn not(x: Node<'_>) -> Node<'_> {
    match x {
        Node::All => Node::Empty,
        Node::Empty => Node::All,
        Node::Not(inner) => *inner,
        other => Node::Not(Box::new(other)),
    }
}

fn and_not<'s>(a: Node<'s>, b: Node<'s>) -> Node<'s> {
    and(vec![a, not(b)])
}

/// `AND` of `parts`: flattened, negations collected, constants folded.
pub(crate) fn and(parts: Vec<Node<'_>>) -> Node<'_> {
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    let mut stack = parts;
    while let Some(p) = stack.pop() {
        match p {
            Node::Empty => return Node::Empty,
            Node::All => {}
            Node::And { pos: p2, neg: n2 } => {
                stack.extend(p2);
                neg.extend(n2);
            }
            Node::Not(inner) => match *inner {
                Node::Empty => {}
                Node::All => return Node::Empty,
                other => neg.push(other),
            },
            other => pos.push(other),
        }
    }
    pos.reverse();
    if pos.is_empty() {
        pos.push(Node::All);
    }
    if neg.is_empty() && pos.len() == 1 {
        return pos.pop().expect("one");
    }
    Node::And { pos, neg }
}

/// `OR` of `parts`, constants folded.
pub(crate) fn or(parts: Vec<Node<'_>>) -> Node<'_> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            Node::Empty => {}
            Node::All => return Node::All,
            Node::Or(xs) => out.extend(xs),
            other => out.push(other),
        }
    }
    match out.len() {
        0 => Node::Empty,
        1 => out.pop().expect("one"),
        _ => Node::Or(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_and_timestamps() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(parse_timestamp("2026-11-25"), Some(date_ms(2026, 11, 25)));
        assert_eq!(
            parse_timestamp("1970-01-02 00:00:01"),
            Some(86_400_000 + 1000)
        );
        assert_eq!(parse_timestamp("1970-01-01T01:00:00"), Some(3_600_000));
        for bad in [
            "2026-13-01",
            "2026-11-25 24:00:00",
            "2026-11-25x00:00:00",
            "yesterday",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn rounding_of_fractional_bounds() {
        let u = Units {
            num: 12345,
            den: 10,
        }; // 1234.5 units
        assert_eq!(
            (floor_units(u), ceil_units(u), u.exact()),
            (Some(1234), Some(1235), None)
        );
        let n = Units {
            num: -12345,
            den: 10,
        };
        assert_eq!((floor_units(n), ceil_units(n)), (Some(-1235), Some(-1234)));
        assert_eq!(Units { num: 30, den: 10 }.exact(), Some(3));
    }
}
