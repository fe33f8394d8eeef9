//! Conversions between the `portrait.v1` messages and the engine's types.
//!
//! Inbound, the structured expression AST ([`v1::Node`]) becomes an engine [`Expr`]. The
//! conversion refuses, with `INVALID_ARGUMENT` naming the offending node, what the engine could
//! not evaluate: a node or literal without its `oneof`, an unspecified operator or `HAS` mode, a
//! bad path, decimal or date, `HAS ONE` without exactly one value, an empty `HAS ANY` / `HAS ALL`
//! or `NOT IN`, and trees nested deeper than the configured limit. Where the contract gives an
//! empty list a meaning, the conversion keeps it:
//!
//! | node | empty | one operand |
//! |---|---|---|
//! | `And` | every known user (`ALL`) | the operand |
//! | `Or`, `Xor` | nobody (`NOT ALL`) | the operand |
//! | `InList` (not negated), `Keys` | nobody | — |
//!
//! `Keys` follow the table's key kind: in a table keyed by `u64`, a key that is not a decimal
//! `u64` cannot name a user and is ignored, like any unknown key.
//!
//! Behaviour nodes (`Did`, `Occurred`) need their window, operator and test; their dates are
//! `YYYY-MM-DD`. [`node`] converts the other way, an engine [`Expr`] into the structured form.
//!
//! Real-time writes ([`writes`]) become engine [`Write`]s: the key parsed by the table's key
//! kind, `clear`, an event append (a count of 0 is 1) or a typed value (`flag_value: false`
//! clears a flag; a decimal keeps the scale it is written with, for the engine to fit to its
//! field).
//!
//! Outbound, engine values become [`v1::Value`]s; decimals travel as exact strings built from
//! their stored units (`units × 10^-scale`), timestamps as epoch milliseconds.

use portrait_engine::behaviour::{self, DayRange, Period};
use portrait_engine::expr::{
    self, CmpOp, Date, Decimal, DidCount, Expr, HasMode, Literal, Measure, Occurrence, ParseLimits,
    Path, When, Window,
};
use portrait_engine::{
    Change, ExplainNode, FieldKind, FieldMeta, Freshness, Key, KeyKind, KeyRef, Value, VersionInfo,
    Write,
};
use portrait_proto::v1::{self, node};
use tonic::Status;

use crate::limits::Limits;
use crate::status::to_status;

// ---------------------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------------------

/// The expression of a request, in either face, as an engine [`Expr`].
///
/// `what` names the request field (`expr`, `base`, `exprs[2]`) in error messages. Text is parsed
/// by the engine; its errors carry their position (see [`crate::status`]).
pub fn expr(
    message: Option<&v1::Expr>,
    what: &str,
    key_kind: KeyKind,
    limits: &Limits,
) -> Result<Expr, Status> {
    let kind = message.and_then(|m| m.kind.as_ref()).ok_or_else(|| {
        Status::invalid_argument(format!("{what} is required: set its `text` or `ast`"))
    })?;
    match kind {
        v1::expr::Kind::Text(text) => {
            if text.len() > limits.max_expr_bytes {
                return Err(Status::resource_exhausted(format!(
                    "{what}: the expression text is {} bytes; this server's limit is {}",
                    text.len(),
                    limits.max_expr_bytes
                )));
            }
            let parse_limits = ParseLimits {
                max_len: limits.max_expr_bytes,
                ..ParseLimits::DEFAULT
            };
            expr::parse_with_limits(text, parse_limits).map_err(|e| to_status(e.into()))
        }
        v1::expr::Kind::Ast(root) => ast(root, key_kind, limits.max_expr_depth),
    }
}

/// Converts a structured expression whose connectives nest at most `max_depth` deep.
pub fn ast(root: &v1::Node, key_kind: KeyKind, max_depth: usize) -> Result<Expr, Status> {
    let converter = AstConverter {
        key_kind,
        max_depth,
    };
    let expr = converter.node(root, 0)?;
    // The conversion builds only trees the parser could have built; keep the engine's own
    // check as the last word.
    expr.check()
        .map_err(|e| Status::invalid_argument(format!("malformed expression: {e}")))?;
    Ok(expr)
}

/// The expression that selects nobody.
fn nobody() -> Expr {
    Expr::Not(Box::new(Expr::All))
}

struct AstConverter {
    key_kind: KeyKind,
    max_depth: usize,
}

fn bad(message: String) -> Status {
    Status::invalid_argument(message)
}

impl AstConverter {
    /// `depth` counts the connectives above `n`.
    fn node(&self, n: &v1::Node, depth: usize) -> Result<Expr, Status> {
        let kind = n.kind.as_ref().ok_or_else(|| {
            bad("expression node has no kind set (an unknown or missing node kind)".into())
        })?;
        Ok(match kind {
            node::Kind::All(_) => Expr::All,
            node::Kind::Flag(f) => Expr::Field(path("flag", &f.path)?),
            node::Kind::Compare(c) => {
                let path = path("compare", &c.path)?;
                let op = compare_op(c.op, "compare", &path)?;
                let value = literal(c.value.as_ref(), "compare", &path)?;
                Expr::Compare { path, op, value }
            }
            node::Kind::InList(l) => {
                let path = path("in_list", &l.path)?;
                if l.values.is_empty() {
                    if l.negated {
                        return Err(bad(format!(
                            "in_list on `{path}`: NOT IN needs at least one value"
                        )));
                    }
                    return Ok(nobody());
                }
                let values = l
                    .values
                    .iter()
                    .map(|v| literal(Some(v), "in_list", &path))
                    .collect::<Result<_, _>>()?;
                Expr::In {
                    path,
                    values,
                    negated: l.negated,
                }
            }
            node::Kind::Between(b) => {
                let path = path("between", &b.path)?;
                let low = literal(b.low.as_ref(), "between (low)", &path)?;
                let high = literal(b.high.as_ref(), "between (high)", &path)?;
                Expr::Between { path, low, high }
            }
            node::Kind::Has(h) => {
                let path = path("has", &h.path)?;
                let mode = match v1::HasMode::try_from(h.mode) {
                    Ok(v1::HasMode::One) => HasMode::One,
                    Ok(v1::HasMode::Any) => HasMode::Any,
                    Ok(v1::HasMode::All) => HasMode::All,
                    Ok(v1::HasMode::Unspecified) | Err(_) => {
                        return Err(bad(format!(
                            "has on `{path}`: mode must be ONE, ANY or ALL, got {}",
                            h.mode
                        )));
                    }
                };
                match (mode, h.values.len()) {
                    (HasMode::One, 1) => {}
                    (HasMode::One, n) => {
                        return Err(bad(format!(
                            "has on `{path}`: mode ONE takes exactly one value, got {n}"
                        )));
                    }
                    (_, 0) => {
                        return Err(bad(format!(
                            "has on `{path}`: modes ANY and ALL need at least one value"
                        )));
                    }
                    _ => {}
                }
                let values = h
                    .values
                    .iter()
                    .map(|v| literal(Some(v), "has", &path))
                    .collect::<Result<_, _>>()?;
                Expr::Has { path, mode, values }
            }
            node::Kind::Keys(k) => {
                let keys = self.keys(&k.keys)?;
                if keys.is_empty() {
                    nobody()
                } else {
                    Expr::Keys(keys)
                }
            }
            node::Kind::LogicalAnd(a) => {
                let operands = self.operands(&a.operands, depth, "logical_and")?;
                match operands.len() {
                    0 => Expr::All,
                    1 => operands.into_iter().next().expect("one operand"),
                    _ => Expr::And(operands),
                }
            }
            node::Kind::LogicalOr(o) => {
                let operands = self.operands(&o.operands, depth, "logical_or")?;
                match operands.len() {
                    0 => nobody(),
                    1 => operands.into_iter().next().expect("one operand"),
                    _ => Expr::Or(operands),
                }
            }
            node::Kind::LogicalXor(x) => {
                let operands = self.operands(&x.operands, depth, "logical_xor")?;
                match operands.len() {
                    0 => nobody(),
                    1 => operands.into_iter().next().expect("one operand"),
                    _ => Expr::Xor(operands),
                }
            }
            node::Kind::LogicalNot(n) => {
                self.check_depth(depth, "logical_not")?;
                let operand = n
                    .operand
                    .as_deref()
                    .ok_or_else(|| bad("logical_not has no operand".into()))?;
                Expr::Not(Box::new(self.node(operand, depth + 1)?))
            }
            node::Kind::Did(d) => {
                let event = path("did", &d.event)?;
                let window = window(d.window.as_ref(), &event)?;
                let count = d
                    .count
                    .as_ref()
                    .map(|c| -> Result<DidCount, Status> {
                        Ok(DidCount {
                            op: compare_op(c.op, "did", &event)?,
                            n: c.n,
                            measure: match v1::Measure::try_from(c.measure) {
                                Ok(v1::Measure::Days) => Measure::Days,
                                Ok(v1::Measure::Times | v1::Measure::Unspecified) | Err(_) => {
                                    Measure::Times
                                }
                            },
                        })
                    })
                    .transpose()?;
                Expr::Did {
                    event,
                    window,
                    count,
                }
            }
            node::Kind::Occurred(o) => {
                let event = path("occurred", &o.event)?;
                let which = match v1::Occurrence::try_from(o.which) {
                    Ok(v1::Occurrence::First) => Occurrence::First,
                    Ok(v1::Occurrence::Last) => Occurrence::Last,
                    Ok(v1::Occurrence::Unspecified) | Err(_) => {
                        return Err(bad(format!(
                            "occurred on `{event}`: which must be FIRST or LAST, got {}",
                            o.which
                        )));
                    }
                };
                use node::occurred::Test;
                let when = match &o.test {
                    Some(Test::DaysAgo(a)) => When::DaysAgo {
                        op: compare_op(a.op, "occurred (days_ago)", &event)?,
                        days: a.days,
                    },
                    Some(Test::OnDate(d)) => When::Date {
                        op: compare_op(d.op, "occurred (on_date)", &event)?,
                        date: date(&d.date)
                            .map_err(|e| bad(format!("occurred on `{event}`: on_date: {e}")))?,
                    },
                    Some(Test::WithinDays(0)) => {
                        return Err(bad(format!(
                            "occurred on `{event}`: within_days must be at least 1"
                        )));
                    }
                    Some(Test::WithinDays(n)) => When::Within(*n),
                    None => {
                        return Err(bad(format!(
                            "occurred on `{event}`: set one test (days_ago, on_date or \
                             within_days)"
                        )));
                    }
                };
                Expr::Occurred { which, event, when }
            }
        })
    }

    fn check_depth(&self, depth: usize, what: &str) -> Result<(), Status> {
        if depth >= self.max_depth {
            return Err(bad(format!(
                "{what}: the expression nests more than {} connectives deep",
                self.max_depth
            )));
        }
        Ok(())
    }

    fn operands(&self, nodes: &[v1::Node], depth: usize, what: &str) -> Result<Vec<Expr>, Status> {
        self.check_depth(depth, what)?;
        nodes.iter().map(|n| self.node(n, depth + 1)).collect()
    }

    fn keys(&self, keys: &[String]) -> Result<Vec<Literal>, Status> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match self.key_kind {
                KeyKind::Str => out.push(Literal::Str(k.clone())),
                // A key that is not a u64 names no user of this table: it is ignored.
                KeyKind::U64 => {
                    if let Ok(v) = k.parse::<u64>() {
                        let v = i64::try_from(v).map_err(|_| {
                            bad(format!(
                                "keys: key {v} is above 9223372036854775807, which KEYS cannot \
                                 name yet"
                            ))
                        })?;
                        out.push(Literal::Int(v));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn path(what: &str, text: &str) -> Result<Path, Status> {
    Path::new(text).map_err(|e| bad(format!("{what}: invalid path {text:?}: {e}")))
}

/// The window of a `did` on `event`.
fn window(w: Option<&v1::Window>, event: &Path) -> Result<Window, Status> {
    use v1::window::Kind;
    let kind = w.and_then(|w| w.kind.as_ref()).ok_or_else(|| {
        bad(format!(
            "did on `{event}`: the window is missing (set last, range or ever)"
        ))
    })?;
    let in_did = |e: String| bad(format!("did on `{event}`: {e}"));
    Ok(match kind {
        Kind::Last(l) => {
            if l.days == 0 {
                return Err(in_did("a window of the last 0 days holds no day".into()));
            }
            let ending = if l.ending.is_empty() {
                None
            } else {
                Some(date(&l.ending).map_err(|e| in_did(format!("ending: {e}")))?)
            };
            Window::Last {
                days: l.days,
                ending,
            }
        }
        Kind::Range(r) => {
            let from = date(&r.first).map_err(|e| in_did(format!("range.first: {e}")))?;
            let to = date(&r.last).map_err(|e| in_did(format!("range.last: {e}")))?;
            if from > to {
                return Err(in_did(format!(
                    "range ends ({}) before it starts ({})",
                    r.last, r.first
                )));
            }
            Window::Range { from, to }
        }
        Kind::Ever(_) => Window::Ever,
    })
}

/// A calendar date `YYYY-MM-DD`; the error says what is wrong with it.
pub fn date(text: &str) -> Result<Date, String> {
    Date::parse_iso(text).ok_or_else(|| {
        if text.is_empty() {
            "the date is missing (YYYY-MM-DD)".to_owned()
        } else {
            format!("{text:?} is not a calendar date YYYY-MM-DD")
        }
    })
}

fn compare_op(op: i32, what: &str, path: &Path) -> Result<CmpOp, Status> {
    Ok(match v1::CompareOp::try_from(op) {
        Ok(v1::CompareOp::Eq) => CmpOp::Eq,
        Ok(v1::CompareOp::Ne) => CmpOp::Ne,
        Ok(v1::CompareOp::Lt) => CmpOp::Lt,
        Ok(v1::CompareOp::Le) => CmpOp::Le,
        Ok(v1::CompareOp::Gt) => CmpOp::Gt,
        Ok(v1::CompareOp::Ge) => CmpOp::Ge,
        Ok(v1::CompareOp::Unspecified) | Err(_) => {
            return Err(bad(format!(
                "{what} on `{path}`: op must be one of EQ, NE, LT, LE, GT, GE, got {op}"
            )));
        }
    })
}

/// Converts a literal of the node `what` on `path`.
fn literal(l: Option<&v1::Literal>, what: &str, path: &Path) -> Result<Literal, Status> {
    let value = l
        .and_then(|l| l.value.as_ref())
        .ok_or_else(|| bad(format!("{what} on `{path}`: the value is missing")))?;
    literal_value(value).map_err(|e| bad(format!("{what} on `{path}`: {e}")))
}

/// Converts one literal value; the error says what is wrong with it.
pub fn literal_value(value: &v1::literal::Value) -> Result<Literal, String> {
    use v1::literal::Value as V;
    Ok(match value {
        V::StringValue(s) => Literal::Str(s.clone()),
        V::IntValue(i) => Literal::Int(*i),
        V::BoolValue(b) => Literal::Bool(*b),
        V::DecimalValue(s) => parse_decimal(s)?,
        V::DateValue(s) => Literal::Date(
            Date::parse_iso(s).ok_or_else(|| format!("{s:?} is not a calendar date YYYY-MM-DD"))?,
        ),
    })
}

/// Parses an exact decimal in plain notation (`-12.50`): an [`Literal::Int`] without a fraction,
/// a [`Literal::Decimal`] with the scale as written otherwise.
pub fn parse_decimal(text: &str) -> Result<Literal, String> {
    let invalid = || format!("{text:?} is not a decimal number in plain notation (like -12.50)");
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(invalid());
    }
    let fraction = fraction.unwrap_or("");
    let too_large = || format!("{text:?} has too many digits");
    let mut mantissa: i128 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    if negative {
        mantissa = -mantissa;
    }
    if fraction.is_empty() {
        return i64::try_from(mantissa)
            .map(Literal::Int)
            .map_err(|_| too_large());
    }
    let scale = u8::try_from(fraction.len())
        .ok()
        .filter(|s| *s <= expr::MAX_DECIMAL_SCALE)
        .ok_or_else(|| {
            format!(
                "{text:?} has more than {} digits after the point",
                expr::MAX_DECIMAL_SCALE
            )
        })?;
    Decimal::new(mantissa, scale)
        .map(Literal::Decimal)
        .ok_or_else(invalid)
}

/// A literal as stored units of a numeric field of `kind` (decimal units, epoch milliseconds),
/// rounded up: the smallest stored value `v` with `v >= literal`, which is what an inclusive
/// lower bound needs. `None` when the literal does not fit the field.
pub fn ceil_units(kind: FieldKind, literal: &Literal) -> Option<i64> {
    let (num, den): (i128, i128) = match (kind, literal) {
        (FieldKind::Int, Literal::Int(i)) => (i128::from(*i), 1),
        (FieldKind::Int, Literal::Decimal(d)) => {
            (d.mantissa(), 10i128.checked_pow(d.scale().into())?)
        }
        (FieldKind::Decimal { scale }, Literal::Int(i)) => (
            i128::from(*i).checked_mul(10i128.checked_pow(scale.into())?)?,
            1,
        ),
        (FieldKind::Decimal { scale }, Literal::Decimal(d)) if d.scale() <= scale => (
            d.mantissa()
                .checked_mul(10i128.checked_pow((scale - d.scale()).into())?)?,
            1,
        ),
        (FieldKind::Decimal { scale }, Literal::Decimal(d)) => (
            d.mantissa(),
            10i128.checked_pow((d.scale() - scale).into())?,
        ),
        (FieldKind::Timestamp, Literal::Int(ms)) => (i128::from(*ms), 1),
        (FieldKind::Timestamp, Literal::Date(d)) => (
            i128::from(days_from_civil(d.year(), d.month(), d.day())) * 86_400_000,
            1,
        ),
        _ => return None,
    };
    let ceil = -((-num).div_euclid(den));
    i64::try_from(ceil).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    portrait_engine::calendar::days_from_civil(i64::from(year), u32::from(month), u32::from(day))
}

/// The structured form of an engine expression, the inverse of [`ast`] on the trees the parser
/// builds: `ast(&node(e)?, kind, depth) == e` for an expression `e` that parses on a table whose
/// keys are of kind `kind`.
///
/// # Errors
///
/// `INVALID_ARGUMENT` for a kind of expression the structured form has no node for yet.
pub fn node(e: &Expr) -> Result<v1::Node, Status> {
    let wrap = |kind| v1::Node { kind: Some(kind) };
    let nodes = |items: &[Expr]| items.iter().map(node).collect::<Result<Vec<_>, _>>();
    let lit = |l: &Literal| v1::Literal {
        value: Some(wire_literal(l)),
    };
    Ok(wrap(match e {
        Expr::All => node::Kind::All(node::All {}),
        Expr::Field(p) => node::Kind::Flag(node::Flag {
            path: p.as_str().to_owned(),
        }),
        Expr::Compare { path, op, value } => node::Kind::Compare(node::Compare {
            path: path.as_str().to_owned(),
            op: wire_op(*op).into(),
            value: Some(lit(value)),
        }),
        Expr::In {
            path,
            values,
            negated,
        } => node::Kind::InList(node::InList {
            path: path.as_str().to_owned(),
            values: values.iter().map(lit).collect(),
            negated: *negated,
        }),
        Expr::Between { path, low, high } => node::Kind::Between(node::Between {
            path: path.as_str().to_owned(),
            low: Some(lit(low)),
            high: Some(lit(high)),
        }),
        Expr::Has { path, mode, values } => node::Kind::Has(node::Has {
            path: path.as_str().to_owned(),
            mode: match mode {
                HasMode::One => v1::HasMode::One,
                HasMode::Any => v1::HasMode::Any,
                HasMode::All => v1::HasMode::All,
            }
            .into(),
            values: values.iter().map(lit).collect(),
        }),
        Expr::Keys(keys) => node::Kind::Keys(node::Keys {
            keys: keys
                .iter()
                .map(|k| match k {
                    Literal::Str(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        }),
        Expr::Not(inner) => node::Kind::LogicalNot(Box::new(node::Not {
            operand: Some(Box::new(node(inner)?)),
        })),
        Expr::And(items) => node::Kind::LogicalAnd(node::And {
            operands: nodes(items)?,
        }),
        Expr::Or(items) => node::Kind::LogicalOr(node::Or {
            operands: nodes(items)?,
        }),
        Expr::Xor(items) => node::Kind::LogicalXor(node::Xor {
            operands: nodes(items)?,
        }),
        Expr::Did {
            event,
            window,
            count,
        } => {
            use v1::window::Kind as W;
            let window = match window {
                Window::Last { days, ending } => W::Last(v1::window::LastDays {
                    days: *days,
                    ending: ending.map(date_text).unwrap_or_default(),
                }),
                Window::Range { from, to } => W::Range(v1::DateRange {
                    first: date_text(*from),
                    last: date_text(*to),
                }),
                Window::Ever => W::Ever(v1::window::Ever {}),
            };
            node::Kind::Did(node::Did {
                event: event.as_str().to_owned(),
                window: Some(v1::Window { kind: Some(window) }),
                count: count.map(|c| v1::DidCount {
                    op: wire_op(c.op).into(),
                    n: c.n,
                    measure: wire_measure(c.measure).into(),
                }),
            })
        }
        Expr::Occurred { which, event, when } => {
            use node::occurred::{DaysAgo, OnDate, Test};
            node::Kind::Occurred(node::Occurred {
                which: match which {
                    Occurrence::First => v1::Occurrence::First,
                    Occurrence::Last => v1::Occurrence::Last,
                }
                .into(),
                event: event.as_str().to_owned(),
                test: Some(match when {
                    When::DaysAgo { op, days } => Test::DaysAgo(DaysAgo {
                        op: wire_op(*op).into(),
                        days: *days,
                    }),
                    When::Date { op, date } => Test::OnDate(OnDate {
                        op: wire_op(*op).into(),
                        date: date_text(*date),
                    }),
                    When::Within(n) => Test::WithinDays(*n),
                }),
            })
        }
        other => {
            return Err(bad(format!(
                "`{other}` has no structured form in this version of the contract"
            )));
        }
    }))
}

fn wire_op(op: CmpOp) -> v1::CompareOp {
    match op {
        CmpOp::Eq => v1::CompareOp::Eq,
        CmpOp::Ne => v1::CompareOp::Ne,
        CmpOp::Lt => v1::CompareOp::Lt,
        CmpOp::Le => v1::CompareOp::Le,
        CmpOp::Gt => v1::CompareOp::Gt,
        CmpOp::Ge => v1::CompareOp::Ge,
    }
}

/// A measure on the wire.
pub fn wire_measure(m: Measure) -> v1::Measure {
    match m {
        Measure::Times => v1::Measure::Times,
        Measure::Days => v1::Measure::Days,
    }
}

fn wire_literal(l: &Literal) -> v1::literal::Value {
    use v1::literal::Value as V;
    match l {
        Literal::Str(s) => V::StringValue(s.clone()),
        Literal::Int(i) => V::IntValue(*i),
        Literal::Decimal(d) => V::DecimalValue(decimal_string(d.mantissa(), d.scale())),
        Literal::Bool(b) => V::BoolValue(*b),
        Literal::Date(d) => V::DateValue(date_text(*d)),
    }
}

/// `YYYY-MM-DD` of a date.
fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

// ---------------------------------------------------------------------------------------------
// Behaviour requests
// ---------------------------------------------------------------------------------------------

/// The day number (days since 1970-01-01, in the table's time zone) of the request field `what`,
/// a date `YYYY-MM-DD`.
pub fn day(text: &str, what: &str) -> Result<i32, Status> {
    let d = date(text).map_err(|e| bad(format!("{what}: {e}")))?;
    Ok(behaviour::day_of_date(d.year(), d.month(), d.day()))
}

/// The optional reference date of a behaviour request: `None` when absent or empty.
pub fn reference_day(text: &Option<String>) -> Result<Option<i32>, Status> {
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => day(t, "reference_date").map(Some),
    }
}

/// The required inclusive range of days of the request field `what`.
pub fn day_range(range: Option<&v1::DateRange>, what: &str) -> Result<DayRange, Status> {
    let r = range.ok_or_else(|| {
        bad(format!(
            "{what} is required: a range of dates `first` to `last` (YYYY-MM-DD)"
        ))
    })?;
    let first = day(&r.first, &format!("{what}.first"))?;
    let last = day(&r.last, &format!("{what}.last"))?;
    if last < first {
        return Err(bad(format!(
            "{what} ends ({}) before it starts ({})",
            r.last, r.first
        )));
    }
    Ok(DayRange::new(first, last))
}

/// The period of a behaviour request; unspecified means a day.
pub fn period(p: i32) -> Result<Period, Status> {
    match v1::Period::try_from(p) {
        Ok(v1::Period::Unspecified | v1::Period::Day) => Ok(Period::Day),
        Ok(v1::Period::Week) => Ok(Period::Week),
        Ok(v1::Period::Month) => Ok(Period::Month),
        Err(_) => Err(bad(format!("period must be DAY, WEEK or MONTH, got {p}"))),
    }
}

/// The measure of a frequency request; unspecified means days.
pub fn frequency_measure(m: i32) -> Result<Measure, Status> {
    match v1::Measure::try_from(m) {
        Ok(v1::Measure::Unspecified | v1::Measure::Days) => Ok(Measure::Days),
        Ok(v1::Measure::Times) => Ok(Measure::Times),
        Err(_) => Err(bad(format!("measure must be TIMES or DAYS, got {m}"))),
    }
}

/// `YYYY-MM-DD` of a day number.
pub fn day_text(day: i32) -> String {
    behaviour::format_day(day)
}

/// `part / whole`, 0 when `whole` is 0.
pub fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and cursors
// ---------------------------------------------------------------------------------------------

/// The engine key for a wire key of a table keyed by `kind`; `None` if no user can have it (a
/// `u64` table's key that is not a decimal `u64`).
pub fn key(kind: KeyKind, text: &str) -> Option<Key> {
    match kind {
        KeyKind::Str => Some(Key::Str(text.to_owned())),
        KeyKind::U64 => text.parse().ok().map(Key::U64),
    }
}

/// A wire key as a lookup key of a table whose keys are of `kind`, without copying it; `None`
/// if it cannot be one (a `u64` table's key that is not a number).
pub fn key_ref(kind: KeyKind, text: &str) -> Option<KeyRef<'_>> {
    match kind {
        KeyKind::Str => Some(KeyRef::Str(text)),
        KeyKind::U64 => text.parse().ok().map(KeyRef::U64),
    }
}

/// Prefix of `Members` cursors, which also versions their format.
const CURSOR_PREFIX: &str = "m1.";

/// The opaque cursor resuming after member id `last`.
pub fn encode_cursor(last: u64) -> String {
    format!("{CURSOR_PREFIX}{last:x}")
}

/// The member id a cursor resumes after; `None` for the empty cursor (start at the beginning).
pub fn decode_cursor(cursor: &str) -> Result<Option<u64>, Status> {
    if cursor.is_empty() {
        return Ok(None);
    }
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .map(Some)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "cursor {cursor:?} is not a cursor returned by Members"
            ))
        })
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// An exact decimal string of `units × 10^-scale` (`1250, 2` → `"12.50"`).
pub fn decimal_string(units: i128, scale: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

fn value_of(kind: v1::value::Kind) -> v1::Value {
    v1::Value { kind: Some(kind) }
}

/// A stored value on the wire.
pub fn value(v: &Value) -> v1::Value {
    use v1::value::Kind as K;
    value_of(match v {
        Value::Flag => K::FlagValue(true),
        Value::Str(s) => K::StringValue(s.clone()),
        Value::Strs(values) => K::SetValue(v1::StringSet {
            values: values.clone(),
        }),
        Value::Int(i) => K::IntValue(*i),
        Value::Decimal { units, scale } => K::DecimalValue(decimal_string((*units).into(), *scale)),
        Value::Timestamp(ms) => K::TimestampUnixMs(*ms),
    })
}

/// A value on the wire, moving its strings instead of copying them.
pub fn into_value(v: Value) -> v1::Value {
    use v1::value::Kind as K;
    value_of(match v {
        Value::Str(s) => K::StringValue(s),
        Value::Strs(values) => K::SetValue(v1::StringSet { values }),
        other => return value(&other),
    })
}

/// A number in the stored units of a numeric field of `kind`, on the wire.
pub fn numeric_value(kind: FieldKind, units: i64) -> v1::Value {
    use v1::value::Kind as K;
    value_of(match kind {
        FieldKind::Decimal { scale } => K::DecimalValue(decimal_string(units.into(), scale)),
        FieldKind::Timestamp => K::TimestampUnixMs(units),
        _ => K::IntValue(units),
    })
}

/// The exact sum of a numeric field of `kind`: `int` if it fits (INT), `decimal` otherwise or for
/// DECIMAL fields, absent for TIMESTAMP fields.
pub fn sum_value(kind: FieldKind, sum: i128) -> Option<v1::Value> {
    use v1::value::Kind as K;
    match kind {
        FieldKind::Timestamp => None,
        FieldKind::Decimal { scale } => Some(value_of(K::DecimalValue(decimal_string(sum, scale)))),
        _ => Some(value_of(match i64::try_from(sum) {
            Ok(i) => K::IntValue(i),
            Err(_) => K::DecimalValue(decimal_string(sum, 0)),
        })),
    }
}

/// A string value (an ENUM or SET value) on the wire.
pub fn string_value(s: &str) -> v1::Value {
    value_of(v1::value::Kind::StringValue(s.to_owned()))
}

/// `units` of a field of `kind` in the field's own unit (decimals divided by `10^scale`).
pub fn in_field_units(kind: FieldKind, units: f64) -> f64 {
    match kind {
        FieldKind::Decimal { scale } => units / 10f64.powi(i32::from(scale)),
        _ => units,
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------------

/// The wire kind of a field.
pub fn field_kind(kind: FieldKind) -> v1::FieldKind {
    match kind {
        FieldKind::Flag => v1::FieldKind::Flag,
        FieldKind::Enum => v1::FieldKind::Enum,
        FieldKind::Set => v1::FieldKind::Set,
        FieldKind::Int => v1::FieldKind::Int,
        FieldKind::Decimal { .. } => v1::FieldKind::Decimal,
        FieldKind::Timestamp => v1::FieldKind::Timestamp,
        FieldKind::Event => v1::FieldKind::Event,
    }
}

/// The wire kind of a table's keys.
pub fn key_kind(kind: KeyKind) -> v1::KeyKind {
    match kind {
        KeyKind::Str => v1::KeyKind::String,
        KeyKind::U64 => v1::KeyKind::U64,
    }
}

/// The engine kind of a table's keys; `KEY_KIND_UNSPECIFIED` and unknown values are refused.
pub fn key_kind_from_wire(kind: i32) -> Result<KeyKind, Status> {
    match v1::KeyKind::try_from(kind) {
        Ok(v1::KeyKind::String) => Ok(KeyKind::Str),
        Ok(v1::KeyKind::U64) => Ok(KeyKind::U64),
        Ok(v1::KeyKind::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "key_kind must be KEY_KIND_STRING or KEY_KIND_U64, got {kind}"
        ))),
    }
}

/// The sensitivity label an engine field carries, on the wire: no label is public, `internal`
/// is internal, any other label is sensitive.
pub fn sensitivity(label: &str) -> v1::Sensitivity {
    match label {
        "" | "public" => v1::Sensitivity::Public,
        "internal" => v1::Sensitivity::Internal,
        _ => v1::Sensitivity::Sensitive,
    }
}

/// A field's catalog entry; `versions` oldest first, as the engine lists them.
pub fn field(meta: &FieldMeta, versions: &[VersionInfo]) -> v1::Field {
    let spec = &meta.spec;
    v1::Field {
        path: spec.path.clone(),
        kind: field_kind(spec.kind).into(),
        description: spec.description.clone(),
        owner: spec.owner.clone(),
        freshness: match spec.freshness {
            Freshness::Offline => v1::Freshness::Offline,
            Freshness::Realtime => v1::Freshness::Realtime,
        }
        .into(),
        sensitivity: sensitivity(&spec.sensitivity).into(),
        created_unix_ms: meta.created_ms,
        updated_unix_ms: meta.updated_ms,
        versions: versions
            .iter()
            .rev()
            .map(|v| v1::FieldVersion {
                label: v.label.clone(),
                created_unix_ms: v.created_ms,
                rows: v.users,
            })
            .collect(),
        stats: versions.last().map(|v| v1::FieldStats {
            users_covered: v.users,
            distinct_values: v.distinct,
        }),
    }
}

/// Whether `path` equals `prefix` or lies under it, segment-wise (`interest` covers
/// `interest/sports`, not `interests`). The empty prefix covers everything.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The catalog tree under `prefix` of the fields `(path, kind)`; `None` if no field lies under
/// the prefix.
pub fn tree<'a>(
    fields: impl IntoIterator<Item = (&'a str, FieldKind)>,
    prefix: &str,
) -> Option<v1::TreeNode> {
    let prefix = prefix.trim_end_matches('/');
    let mut root = v1::TreeNode {
        name: prefix.rsplit('/').next().unwrap_or_default().to_owned(),
        path: prefix.to_owned(),
        ..Default::default()
    };
    let mut any = false;
    for (path, kind) in fields {
        if !under_prefix(path, prefix) {
            continue;
        }
        any = true;
        let rest = if prefix.is_empty() {
            path
        } else {
            path[prefix.len()..].trim_start_matches('/')
        };
        let mut node = &mut root;
        if !rest.is_empty() {
            for segment in rest.split('/') {
                let i = match node.children.iter().position(|c| c.name == segment) {
                    Some(i) => i,
                    None => {
                        let child_path = if node.path.is_empty() {
                            segment.to_owned()
                        } else {
                            format!("{}/{segment}", node.path)
                        };
                        node.children.push(v1::TreeNode {
                            name: segment.to_owned(),
                            path: child_path,
                            ..Default::default()
                        });
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[i];
            }
        }
        node.is_field = true;
        node.kind = field_kind(kind).into();
    }
    fn sort(node: &mut v1::TreeNode) {
        node.children.sort_by(|a, b| a.name.cmp(&b.name));
        node.children.iter_mut().for_each(sort);
    }
    sort(&mut root);
    any.then_some(root)
}

// ---------------------------------------------------------------------------------------------
// Explain
// ---------------------------------------------------------------------------------------------

/// A plan tree on the wire; actual cardinalities and times only when `analyze`.
pub fn plan_node(n: &ExplainNode, analyze: bool) -> v1::PlanNode {
    v1::PlanNode {
        label: n.label.clone(),
        estimated_cardinality: n.estimated,
        actual_cardinality: analyze.then_some(n.actual),
        time_us: analyze.then_some(n.micros),
        children: n.children.iter().map(|c| plan_node(c, analyze)).collect(),
    }
}

/// The plan as indented text, one operator per line.
pub fn plan_text(n: &ExplainNode, analyze: bool) -> String {
    if analyze {
        return n.render();
    }
    fn go(n: &ExplainNode, depth: usize, out: &mut String) {
        out.push_str(&format!(
            "{:indent$}{}  (estimated {})\n",
            "",
            n.label,
            n.estimated,
            indent = depth * 2
        ));
        for c in &n.children {
            go(c, depth + 1, out);
        }
    }
    let mut out = String::new();
    go(n, 0, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Real-time writes
// ---------------------------------------------------------------------------------------------

/// The engine writes of a `Write` batch to a table keyed by `kind`. A write that cannot become
/// an engine write (no change, `clear: false`, a key that no user of the table can have, a
/// malformed decimal) fails the batch with `INVALID_ARGUMENT` starting `write N:`, the way the
/// engine reports the writes it refuses; whether a value fits its field is the engine's check.
pub fn writes(kind: KeyKind, writes: Vec<v1::FieldWrite>) -> Result<Vec<Write>, Status> {
    writes
        .into_iter()
        .enumerate()
        .map(|(i, w)| write(kind, w).map_err(|e| bad(format!("write {i}: {e}"))))
        .collect()
}

fn write(kind: KeyKind, w: v1::FieldWrite) -> Result<Write, String> {
    use v1::field_write::Change as C;
    use v1::value::Kind as K;
    let key = self::key(kind, &w.key).ok_or_else(|| {
        format!(
            "key {:?} does not fit a table keyed by {} (keys are decimal numbers)",
            w.key,
            kind.name()
        )
    })?;
    let change = match w.change {
        None => {
            return Err(format!(
                "no change for `{}`: set `value` or `clear`",
                w.path
            ));
        }
        Some(C::Clear(true)) => Change::Clear,
        Some(C::Event(e)) => Change::Event {
            at_ms: e.at_unix_ms,
            count: e.count.max(1),
        },
        Some(C::Clear(false)) => {
            return Err(format!(
                "`clear` of `{}` is false: send `clear: true` to remove a value",
                w.path
            ));
        }
        Some(C::Value(v1::Value { kind: None })) => {
            return Err(format!("the value of `{}` has no kind set", w.path));
        }
        Some(C::Value(v1::Value { kind: Some(value) })) => match value {
            K::FlagValue(true) => Change::Set(Value::Flag),
            K::FlagValue(false) => Change::Clear,
            K::StringValue(s) => Change::Set(Value::Str(s)),
            K::SetValue(set) => Change::Set(Value::Strs(set.values)),
            K::IntValue(i) => Change::Set(Value::Int(i)),
            K::DecimalValue(text) => Change::Set(decimal_value(&text)?),
            K::TimestampUnixMs(ms) => Change::Set(Value::Timestamp(ms)),
        },
    };
    Ok(Write {
        key,
        path: w.path,
        change,
    })
}

/// An exact decimal string as an engine decimal value with the scale as written (`"12"` has
/// scale 0): the engine rescales it to its field's scale, exactly or not at all.
fn decimal_value(text: &str) -> Result<Value, String> {
    let (units, scale) = match parse_decimal(text)? {
        Literal::Int(i) => (i, 0),
        Literal::Decimal(d) => (
            i64::try_from(d.mantissa()).map_err(|_| format!("{text:?} has too many digits"))?,
            d.scale(),
        ),
        _ => return Err(format!("{text:?} is not a decimal number")),
    };
    Ok(Value::Decimal { units, scale })
}

#[cfg(test)]
mod tests;
