//! The crowd-expression syntax tree.
//!
//! One tree, two faces: the text form (`super::parse`, `super::print`) for people and, later,
//! protobuf messages for programs. The tree holds *unresolved* field paths: the planner resolves
//! them against the catalog, checks each field's kind (a bare [`Expr::Field`] must name a `flag`,
//! `HAS` needs a `set`, ranges need a numeric field, ...) and coerces literals where a field's kind
//! asks for it (for example a `'2026-11-25'` string compared with a `timestamp` field).
//!
//! Invariants that the parser guarantees and [`Expr::check`] verifies for trees built by hand:
//! n-ary connectives have at least two operands, value lists are not empty, `HAS` without `ANY` /
//! `ALL` has exactly one value and `KEYS` lists only strings and non-negative integers. Every tree
//! that passes `check` prints to text that parses back to the same tree.

use std::fmt;

/// The longest fraction a [`Decimal`] literal may carry (the SQL `DECIMAL(38, s)` limit).
pub const MAX_DECIMAL_SCALE: u8 = 38;

/// A hierarchical field path such as `interest/sports` or `risk/blacklist`.
///
/// A path is one or more non-empty segments separated by `/`. Segments may hold any character
/// except `/` and control characters; segments that are not plain identifiers
/// (`[A-Za-z_][A-Za-z0-9_]*`) are written in backticks in the text form (`` `app/2fa-enabled` ``).
/// Paths compare case-sensitively; they are resolved against the catalog by the planner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    /// The segments joined by `/`; never empty, no empty segment, no control character.
    text: String,
}

/// Why a string is not a valid [`Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path has no characters at all.
    Empty,
    /// The segment at this 0-based index is empty (`a//b`, `/a`, `a/`).
    EmptySegment {
        /// 0-based index of the empty segment.
        index: usize,
    },
    /// A segment contains a control character (newline, tab, NUL, ...).
    ControlChar {
        /// The offending character.
        ch: char,
    },
    /// A segment passed to [`Path::from_segments`] contains `/`.
    SlashInSegment {
        /// 0-based index of the offending segment.
        index: usize,
    },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => f.write_str("a field path cannot be empty"),
            PathError::EmptySegment { index } => {
                write!(f, "segment {} of the field path is empty", index + 1)
            }
            PathError::ControlChar { ch } => {
                write!(
                    f,
                    "a field path cannot contain the control character {ch:?}"
                )
            }
            PathError::SlashInSegment { index } => {
                write!(f, "segment {} of the field path contains '/'", index + 1)
            }
        }
    }
}

impl std::error::Error for PathError {}

impl Path {
    /// Validates `text` as a `/`-separated path (the catalog's spelling, without backticks).
    ///
    /// # Errors
    ///
    /// [`PathError`] when `text` is empty, has an empty segment or a control character.
    pub fn new(text: impl Into<String>) -> Result<Path, PathError> {
        let text = text.into();
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        for (index, segment) in text.split('/').enumerate() {
            if segment.is_empty() {
                return Err(PathError::EmptySegment { index });
            }
            if let Some(ch) = segment.chars().find(|c| c.is_control()) {
                return Err(PathError::ControlChar { ch });
            }
        }
        Ok(Path { text })
    }

    /// Builds a path from its segments, none of which may contain `/`.
    ///
    /// # Errors
    ///
    /// [`PathError`] when there is no segment, or a segment is empty, contains `/` or a
    /// control character.
    pub fn from_segments<I, S>(segments: I) -> Result<Path, PathError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut text = String::new();
        for (index, segment) in segments.into_iter().enumerate() {
            let segment = segment.as_ref();
            if segment.contains('/') {
                return Err(PathError::SlashInSegment { index });
            }
            if index > 0 {
                text.push('/');
            }
            if segment.is_empty() {
                return Err(PathError::EmptySegment { index });
            }
            text.push_str(segment);
        }
        Path::new(text)
    }

    /// The path as the catalog spells it: segments joined by `/`, no quoting.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.text.split('/')
    }

    /// The innermost segment (`sports` for `interest/sports`).
    pub fn last_segment(&self) -> &str {
        self.text.rsplit('/').next().unwrap_or(&self.text)
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::new(s)
    }
}

/// An exact decimal literal: `mantissa * 10^-scale`, with the scale as written (`12.50` is
/// mantissa 1250, scale 2). Its scale is always `1..=MAX_DECIMAL_SCALE`: a number written
/// without a fraction is a [`Literal::Int`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

impl Decimal {
    /// `mantissa * 10^-scale`; `None` unless `1 <= scale <= MAX_DECIMAL_SCALE`.
    pub fn new(mantissa: i128, scale: u8) -> Option<Decimal> {
        (1..=MAX_DECIMAL_SCALE)
            .contains(&scale)
            .then_some(Decimal { mantissa, scale })
    }

    /// The unscaled digits with their sign.
    pub fn mantissa(self) -> i128 {
        self.mantissa
    }

    /// How many digits follow the decimal point.
    pub fn scale(self) -> u8 {
        self.scale
    }
}

/// A calendar date (proleptic Gregorian), written `DATE 'YYYY-MM-DD'` with a year in `0..=9999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// A valid date, or `None` (month outside 1-12, day past the month's end, year outside
    /// `0..=9999`).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(0..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        (day >= 1 && day <= days_in_month(year, month)).then_some(Date { year, month, day })
    }

    /// Parses exactly `YYYY-MM-DD` (four, two and two ASCII digits).
    pub fn parse_iso(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            bytes[range].iter().try_fold(0u32, |acc, &b| {
                b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
            })
        };
        let year = i32::try_from(number(0..4)?).ok()?;
        let month = u8::try_from(number(5..7)?).ok()?;
        let day = u8::try_from(number(8..10)?).ok()?;
        Date::new(year, month, day)
    }

    /// The year, `0..=9999`.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, `1..=12`.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, `1..=31`.
    pub fn day(self) -> u8 {
        self.day
    }
}

/// Days in `month` (1-12) of `year`.
pub(super) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// A constant in an expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Literal {
    /// `'text'`, with `''` standing for one quote inside.
    Str(String),
    /// A whole number, optionally negative: `18`, `-3`.
    Int(i64),
    /// A number with a fraction: `12.50`.
    Decimal(Decimal),
    /// `TRUE` or `FALSE`.
    Bool(bool),
    /// `DATE '2026-11-25'`. A plain `'2026-11-25'` stays a [`Literal::Str`].
    Date(Date),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The canonical spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// How `HAS` matches the values of a `set` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HasMode {
    /// `HAS 'x'`: the set contains the one value.
    One,
    /// `HAS ANY ('a', 'b')`: the set contains at least one of the values.
    Any,
    /// `HAS ALL ('a', 'b')`: the set contains every value.
    All,
}

/// The days a `did(...)` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// `last N days [ending DATE 'x']`: the `days` days ending at the reference day (or at
    /// `ending`), both ends included; `last 1 days` is the reference day alone.
    Last {
        /// How many days, at least 1.
        days: u32,
        /// The last day of the window; `None`: the query's reference day.
        ending: Option<Date>,
    },
    /// `DATE 'a' TO DATE 'b'`: the days from `from` to `to`, both included.
    Range {
        /// First day.
        from: Date,
        /// Last day.
        to: Date,
    },
    /// `ever`: every day kept.
    Ever,
}

/// What a `did(...)` count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// `>= n times`: occurrences, summed over the window's days.
    Times,
    /// `on >= n days`: days with at least one occurrence.
    Days,
}

/// The count test of a `did(...)`: `op n times` or `on op n days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DidCount {
    /// The comparison.
    pub op: CmpOp,
    /// The number compared with.
    pub n: u64,
    /// Times or days.
    pub measure: Measure,
}

/// Which occurrence `first_did` / `last_did` tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Occurrence {
    /// `first_did(...)`: the earliest day kept with the event.
    First,
    /// `last_did(...)`: the latest such day.
    Last,
}

/// The test of a `first_did` / `last_did`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum When {
    /// `op N days ago`: compares the occurrence's *age* in days (0 on the reference day), so
    /// `last_did(e) > 30 days ago` is "last did it more than 30 days ago".
    DaysAgo {
        /// The comparison of the age with `days`.
        op: CmpOp,
        /// Days before the reference day.
        days: u32,
    },
    /// `op DATE 'x'`: compares the occurrence's *date*, so `> DATE 'x'` is "after x".
    Date {
        /// The comparison of the date with `date`.
        op: CmpOp,
        /// The date compared with.
        date: Date,
    },
    /// `within N days`: the occurrence is one of the last `N` days (age below `N`).
    Within(u32),
}

/// A crowd expression: a set of users of one table.
///
/// Future predicates get their own variants, which is why the enum is `#[non_exhaustive]`; the
/// parser already reserves their keywords and rejects them with "not supported yet".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expr {
    /// `ALL`: every known user of the table.
    All,
    /// A bare path: users with a `flag` tag set (the planner checks the field's kind).
    Field(Path),
    /// `path op value`, e.g. `age >= 18`, `gender = 'female'`.
    Compare {
        /// The field compared.
        path: Path,
        /// The comparison.
        op: CmpOp,
        /// The constant it is compared with.
        value: Literal,
    },
    /// `path IN (v, ...)` or, when `negated`, `path NOT IN (v, ...)`.
    In {
        /// The field tested.
        path: Path,
        /// The accepted (or, when negated, rejected) values; never empty.
        values: Vec<Literal>,
        /// `NOT IN`: users whose value is none of `values`.
        negated: bool,
    },
    /// `path BETWEEN low AND high`, both bounds inclusive.
    Between {
        /// The field tested.
        path: Path,
        /// Inclusive lower bound.
        low: Literal,
        /// Inclusive upper bound.
        high: Literal,
    },
    /// `path HAS v`, `path HAS ANY (v, ...)`, `path HAS ALL (v, ...)` on a `set` field.
    Has {
        /// The set field tested.
        path: Path,
        /// One value, any of the values, or all of them.
        mode: HasMode,
        /// Exactly one value for [`HasMode::One`], at least one otherwise.
        values: Vec<Literal>,
    },
    /// `KEYS('u1', 'u2')` or `KEYS(1, 2)`: an explicit list of external user keys (strings or
    /// non-negative integers); keys unknown to the table select nobody.
    Keys(Vec<Literal>),
    /// `NOT e`: the known users not in `e`.
    Not(Box<Expr>),
    /// `a AND b AND ...`: at least two operands; a chain parses into one node, parentheses nest.
    And(Vec<Expr>),
    /// `a OR b OR ...`: at least two operands.
    Or(Vec<Expr>),
    /// `a XOR b XOR ...`: users in an odd number of the operands; at least two operands.
    Xor(Vec<Expr>),
    /// `did(event, window)`: users who did `event` at least once in `window`; with `count`,
    /// users whose number of times (or of days) in the window satisfies it. A count that holds
    /// for zero (`did(e, w) < 2`) includes the known users who never did it.
    Did {
        /// The event field.
        event: Path,
        /// The days looked at.
        window: Window,
        /// `op n times` / `on op n days`; `None`: at least once.
        count: Option<DidCount>,
    },
    /// `first_did(event) ...` / `last_did(event) ...`: users whose first (or last) occurrence of
    /// `event` among the days kept satisfies `when`. Users who never did it match no such test.
    Occurred {
        /// First or last occurrence.
        which: Occurrence,
        /// The event field.
        event: Path,
        /// The test on the occurrence's day.
        when: When,
    },
    // Seam: saved crowds. `crowd('name')` will become `Crowd(String)`, resolved by the planner
    // against the saved-crowd registry; CROWD is reserved.
    //
    // Seam: time travel. `<expr> AS OF 'label'` will become `AsOf { expr: Box<Expr>, label:
    // String }` (reading field versions by label) binding looser than OR; AS and OF are reserved.
}

/// Why a hand-built [`Expr`] is not one the parser could have produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidExpr {
    /// An AND, OR or XOR with fewer than two operands.
    TooFewOperands {
        /// `"AND"`, `"OR"` or `"XOR"`.
        operator: &'static str,
        /// How many operands it has.
        found: usize,
    },
    /// An empty value list in `IN`, `HAS ANY`, `HAS ALL` or `KEYS`.
    EmptyList {
        /// The construct with the empty list.
        construct: &'static str,
    },
    /// `HAS` without `ANY` / `ALL` must have exactly one value.
    HasArity {
        /// How many values it has.
        found: usize,
    },
    /// A `KEYS` entry that is neither a string nor a non-negative integer.
    InvalidKey {
        /// The offending literal.
        key: Literal,
    },
    /// A behaviour window without days: `last 0 days`, `within 0 days` or a range that ends
    /// before it starts.
    EmptyWindow,
}

impl fmt::Display for InvalidExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidExpr::TooFewOperands { operator, found } => {
                write!(f, "{operator} needs at least two operands, found {found}")
            }
            InvalidExpr::EmptyList { construct } => {
                write!(f, "{construct} needs at least one value")
            }
            InvalidExpr::HasArity { found } => {
                write!(
                    f,
                    "HAS without ANY or ALL takes exactly one value, found {found}"
                )
            }
            InvalidExpr::EmptyWindow => {
                write!(f, "a behaviour window must hold at least one day")
            }
            InvalidExpr::InvalidKey { key } => {
                write!(
                    f,
                    "user keys are strings or non-negative integers, found {key}"
                )
            }
        }
    }
}

impl std::error::Error for InvalidExpr {}

impl Expr {
    /// Checks the invariants the parser guarantees (see the module documentation). Trees built
    /// from protobuf messages or by hand should pass it before they reach the planner.
    ///
    /// # Errors
    ///
    /// The first broken invariant found, as an [`InvalidExpr`].
    pub fn check(&self) -> Result<(), InvalidExpr> {
        let mut stack = vec![self];
        while let Some(expr) = stack.pop() {
            match expr {
                Expr::All | Expr::Field(_) | Expr::Compare { .. } | Expr::Between { .. } => {}
                Expr::Did { window, .. } => match window {
                    Window::Last { days: 0, .. } => {
                        return Err(InvalidExpr::EmptyWindow);
                    }
                    Window::Range { from, to } if from > to => {
                        return Err(InvalidExpr::EmptyWindow);
                    }
                    _ => {}
                },
                Expr::Occurred { when, .. } => {
                    if matches!(when, When::Within(0)) {
                        return Err(InvalidExpr::EmptyWindow);
                    }
                }
                Expr::In { values, .. } => {
                    if values.is_empty() {
                        return Err(InvalidExpr::EmptyList { construct: "IN" });
                    }
                }
                Expr::Has { mode, values, .. } => match mode {
                    HasMode::One if values.len() != 1 => {
                        return Err(InvalidExpr::HasArity {
                            found: values.len(),
                        });
                    }
                    HasMode::Any if values.is_empty() => {
                        return Err(InvalidExpr::EmptyList {
                            construct: "HAS ANY",
                        });
                    }
                    HasMode::All if values.is_empty() => {
                        return Err(InvalidExpr::EmptyList {
                            construct: "HAS ALL",
                        });
                    }
                    _ => {}
                },
                Expr::Keys(keys) => {
                    if keys.is_empty() {
                        return Err(InvalidExpr::EmptyList { construct: "KEYS" });
                    }
                    if let Some(key) = keys.iter().find(|k| !is_valid_key(k)) {
                        return Err(InvalidExpr::InvalidKey { key: key.clone() });
                    }
                }
                Expr::Not(inner) => stack.push(inner),
                Expr::And(items) | Expr::Or(items) | Expr::Xor(items) => {
                    if items.len() < 2 {
                        let operator = match expr {
                            Expr::And(_) => "AND",
                            Expr::Or(_) => "OR",
                            _ => "XOR",
                        };
                        return Err(InvalidExpr::TooFewOperands {
                            operator,
                            found: items.len(),
                        });
                    }
                    stack.extend(items.iter());
                }
            }
        }
        Ok(())
    }
}

impl Expr {
    /// How deeply operators nest: the most `NOT`, `AND`, `OR` and `XOR` nodes on one path from
    /// the root down (0 for a lone predicate). The printed text of a tree nests at most this
    /// deep, so a tree whose depth is within [`ParseLimits::max_depth`](super::ParseLimits)
    /// prints to text that parses under those limits. Trees far deeper than any parse limit can
    /// exhaust the stack in recursive traversals (printing, comparing, dropping); bound the depth
    /// of trees built from untrusted input.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 0)];
        while let Some((expr, above)) = stack.pop() {
            match expr {
                Expr::Not(inner) => stack.push((inner, above + 1)),
                Expr::And(items) | Expr::Or(items) | Expr::Xor(items) => {
                    stack.extend(items.iter().map(|item| (item, above + 1)));
                    deepest = deepest.max(above + 1);
                }
                _ => deepest = deepest.max(above),
            }
        }
        deepest
    }
}

/// Whether `key` may appear in `KEYS(...)`: a string or a non-negative integer.
pub(super) fn is_valid_key(key: &Literal) -> bool {
    matches!(key, Literal::Str(_)) || matches!(key, Literal::Int(n) if *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Path {
        Path::new(text).unwrap()
    }

    #[test]
    fn path_accepts_segments_and_exposes_them() {
        let p = path("interest/sports");
        assert_eq!(p.as_str(), "interest/sports");
        assert_eq!(p.segments().collect::<Vec<_>>(), ["interest", "sports"]);
        assert_eq!(p.last_segment(), "sports");
        assert_eq!(path("vip").last_segment(), "vip");
        assert_eq!(path("odd name/2fa-enabled").segments().count(), 2);
        assert_eq!("a/b".parse::<Path>(), Ok(path("a/b")));
    }

    #[test]
    fn path_rejects_empty_and_control_characters() {
        assert_eq!(Path::new(""), Err(PathError::Empty));
        assert_eq!(Path::new("/a"), Err(PathError::EmptySegment { index: 0 }));
        assert_eq!(Path::new("a//b"), Err(PathError::EmptySegment { index: 1 }));
        assert_eq!(Path::new("a/"), Err(PathError::EmptySegment { index: 1 }));
        assert_eq!(Path::new("a\nb"), Err(PathError::ControlChar { ch: '\n' }));
        assert_eq!(
            Path::new("a/").unwrap_err().to_string(),
            "segment 2 of the field path is empty"
        );
    }

    #[test]
    fn path_from_segments_joins_and_validates() {
        assert_eq!(Path::from_segments(["a", "b c"]), Ok(path("a/b c")));
        assert_eq!(
            Path::from_segments(["a", "b/c"]),
            Err(PathError::SlashInSegment { index: 1 })
        );
        assert_eq!(
            Path::from_segments(["a", ""]),
            Err(PathError::EmptySegment { index: 1 })
        );
        assert_eq!(
            Path::from_segments(Vec::<&str>::new()),
            Err(PathError::Empty)
        );
    }

    #[test]
    fn decimal_scale_must_be_written() {
        assert_eq!(Decimal::new(1250, 0), None);
        assert_eq!(Decimal::new(1, MAX_DECIMAL_SCALE + 1), None);
        let d = Decimal::new(1250, 2).unwrap();
        assert_eq!((d.mantissa(), d.scale()), (1250, 2));
        assert!(Decimal::new(i128::MIN, MAX_DECIMAL_SCALE).is_some());
    }

    #[test]
    fn date_validates_calendar() {
        assert!(Date::new(2024, 2, 29).is_some());
        assert!(Date::new(2023, 2, 29).is_none());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
        assert!(Date::new(2026, 4, 31).is_none());
        assert!(Date::new(2026, 13, 1).is_none());
        assert!(Date::new(2026, 0, 1).is_none());
        assert!(Date::new(2026, 1, 0).is_none());
        assert!(Date::new(10_000, 1, 1).is_none());
        assert!(Date::new(-1, 1, 1).is_none());
        let d = Date::new(2026, 11, 25).unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2026, 11, 25));
        assert!(Date::new(2026, 1, 31) < Date::new(2026, 2, 1));
    }

    #[test]
    fn date_parse_iso_is_strict() {
        assert_eq!(Date::parse_iso("2026-11-25"), Date::new(2026, 11, 25));
        assert_eq!(Date::parse_iso("0000-01-01"), Date::new(0, 1, 1));
        for bad in [
            "2026-1-25",
            "2026/11/25",
            "26-11-25",
            "2026-11-25 ",
            "2026-02-30",
            "２026-11-2",
        ] {
            assert_eq!(Date::parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn check_accepts_valid_trees() {
        let e = Expr::And(vec![
            Expr::Field(path("vip")),
            Expr::Not(Box::new(Expr::Keys(vec![
                Literal::Int(0),
                Literal::Str("u".into()),
            ]))),
            Expr::Has {
                path: path("interest"),
                mode: HasMode::One,
                values: vec![Literal::Str("sports".into())],
            },
        ]);
        assert_eq!(e.check(), Ok(()));
    }

    #[test]
    fn check_rejects_each_broken_invariant() {
        let vip = || Expr::Field(path("vip"));
        let cases = [
            (
                Expr::Or(vec![vip()]),
                InvalidExpr::TooFewOperands {
                    operator: "OR",
                    found: 1,
                },
            ),
            (
                Expr::Not(Box::new(Expr::And(vec![]))),
                InvalidExpr::TooFewOperands {
                    operator: "AND",
                    found: 0,
                },
            ),
            (
                Expr::Xor(vec![vip(), Expr::Xor(vec![vip()])]),
                InvalidExpr::TooFewOperands {
                    operator: "XOR",
                    found: 1,
                },
            ),
            (
                Expr::In {
                    path: path("c"),
                    values: vec![],
                    negated: true,
                },
                InvalidExpr::EmptyList { construct: "IN" },
            ),
            (
                Expr::Has {
                    path: path("i"),
                    mode: HasMode::One,
                    values: vec![],
                },
                InvalidExpr::HasArity { found: 0 },
            ),
            (
                Expr::Has {
                    path: path("i"),
                    mode: HasMode::All,
                    values: vec![],
                },
                InvalidExpr::EmptyList {
                    construct: "HAS ALL",
                },
            ),
            (
                Expr::Keys(vec![]),
                InvalidExpr::EmptyList { construct: "KEYS" },
            ),
            (
                Expr::Keys(vec![Literal::Int(-1)]),
                InvalidExpr::InvalidKey {
                    key: Literal::Int(-1),
                },
            ),
            (
                Expr::Keys(vec![Literal::Bool(true)]),
                InvalidExpr::InvalidKey {
                    key: Literal::Bool(true),
                },
            ),
        ];
        for (expr, expected) in cases {
            assert_eq!(expr.check(), Err(expected), "{expr:?}");
        }
    }

    #[test]
    fn depth_counts_operators() {
        let vip = || Expr::Field(path("vip"));
        assert_eq!(vip().depth(), 0);
        assert_eq!(Expr::Not(Box::new(vip())).depth(), 1);
        let nested = Expr::And(vec![
            vip(),
            Expr::Or(vec![vip(), Expr::Not(Box::new(Expr::Not(Box::new(vip()))))]),
        ]);
        assert_eq!(nested.depth(), 4);
        assert_eq!(Expr::And(vec![]).depth(), 1);
    }

    #[test]
    fn cmp_op_symbols() {
        let all = [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ];
        let symbols: Vec<_> = all.iter().map(|op| op.symbol()).collect();
        assert_eq!(symbols, ["=", "!=", "<", "<=", ">", ">="]);
    }
}
