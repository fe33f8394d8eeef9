//! Canonical text for crowd expressions.
//!
//! For every tree that passes [`Expr::check`], `parse(&expr.to_string()) == Ok(expr)` (given
//! limits that admit its nesting). The canonical form uses upper-case keywords, single spaces,
//! `!=` for inequality, `KEYS(...)` without a space, and parentheses only where the grammar
//! needs them: around an operand whose connective binds looser than its parent's, and around an
//! AND, OR or XOR that is a direct operand of the same connective (otherwise the parser would
//! flatten it into its parent).
//!
//! Paths are printed bare when every segment is an identifier and the path is not a single
//! reserved word; otherwise the whole path goes in backticks with ``` `` ``` for a backtick.
//! Strings are single-quoted with `''` for a quote. Decimals keep their scale (`12.50`).

use std::fmt::{self, Display, Formatter, Write as _};

use super::ast::{
    CmpOp, Date, Decimal, DidCount, Expr, HasMode, Literal, Measure, Occurrence, Path, When, Window,
};
use super::lexer::{Keyword, is_bare_segment};

/// Binding strength, loosest first; an operand binding looser than its slot needs parentheses.
fn precedence(expr: &Expr) -> u8 {
    match expr {
        Expr::Or(_) => 1,
        Expr::Xor(_) => 2,
        Expr::And(_) => 3,
        Expr::Not(_) => 4,
        _ => 5,
    }
}

/// Writes `expr`, in parentheses when it binds looser than `min`.
fn write_expr(f: &mut Formatter<'_>, expr: &Expr, min: u8) -> fmt::Result {
    if precedence(expr) < min {
        f.write_char('(')?;
        write_expr(f, expr, 0)?;
        return f.write_char(')');
    }
    match expr {
        Expr::All => f.write_str("ALL"),
        Expr::Field(path) => write!(f, "{path}"),
        Expr::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
        Expr::In {
            path,
            values,
            negated,
        } => {
            write!(f, "{path} {}IN ", if *negated { "NOT " } else { "" })?;
            write_list(f, values)
        }
        Expr::Between { path, low, high } => write!(f, "{path} BETWEEN {low} AND {high}"),
        Expr::Has {
            path,
            mode: HasMode::One,
            values,
        } => {
            write!(f, "{path} HAS ")?;
            match values.as_slice() {
                [value] => write!(f, "{value}"),
                // Not a valid tree (see `Expr::check`); printed so that the parser rejects it.
                _ => write_list(f, values),
            }
        }
        Expr::Has { path, mode, values } => {
            write!(f, "{path} HAS {mode} ")?;
            write_list(f, values)
        }
        Expr::Keys(keys) => {
            f.write_str("KEYS")?;
            write_list(f, keys)
        }
        Expr::Not(inner) => {
            f.write_str("NOT ")?;
            write_expr(f, inner, 4)
        }
        Expr::And(items) => write_chain(f, items, " AND ", 4),
        Expr::Xor(items) => write_chain(f, items, " XOR ", 3),
        Expr::Or(items) => write_chain(f, items, " OR ", 2),
        Expr::Did {
            event,
            window,
            count,
        } => {
            write!(f, "DID({event}, {window})")?;
            match count {
                Some(DidCount {
                    op,
                    n,
                    measure: Measure::Times,
                }) => write!(f, " {op} {n} TIMES"),
                Some(DidCount {
                    op,
                    n,
                    measure: Measure::Days,
                }) => write!(f, " ON {op} {n} DAYS"),
                None => Ok(()),
            }
        }
        Expr::Occurred { which, event, when } => {
            let name = match which {
                Occurrence::First => "FIRST_DID",
                Occurrence::Last => "LAST_DID",
            };
            write!(f, "{name}({event}) ")?;
            match when {
                When::DaysAgo { op, days } => write!(f, "{op} {days} DAYS AGO"),
                When::Date { op, date } => write!(f, "{op} DATE '{date}'"),
                When::Within(days) => write!(f, "WITHIN {days} DAYS"),
            }
        }
    }
}

impl Display for Window {
    /// `LAST 7 DAYS`, `LAST 7 DAYS ENDING DATE '2026-11-20'`, `DATE 'a' TO DATE 'b'`, `EVER`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Window::Last { days, ending } => {
                write!(f, "LAST {days} DAYS")?;
                match ending {
                    Some(d) => write!(f, " ENDING DATE '{d}'"),
                    None => Ok(()),
                }
            }
            Window::Range { from, to } => write!(f, "DATE '{from}' TO DATE '{to}'"),
            Window::Ever => f.write_str("EVER"),
        }
    }
}

/// Operands joined by `separator`, each in parentheses unless it binds at least as tight as
/// `min` (one step tighter than the connective itself, so a same-connective child keeps them).
fn write_chain(f: &mut Formatter<'_>, items: &[Expr], separator: &str, min: u8) -> fmt::Result {
    if items.is_empty() {
        // Not a valid tree (see `Expr::check`); printed so that the parser rejects it.
        return f.write_str("()");
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write_expr(f, item, min)?;
    }
    Ok(())
}

/// `(v1, v2, ...)`.
fn write_list(f: &mut Formatter<'_>, values: &[Literal]) -> fmt::Result {
    f.write_char('(')?;
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{value}")?;
    }
    f.write_char(')')
}

/// Writes `text` between `quote`s, doubling each `quote` inside.
fn write_quoted(f: &mut Formatter<'_>, text: &str, quote: char) -> fmt::Result {
    f.write_char(quote)?;
    for (i, part) in text.split(quote).enumerate() {
        if i > 0 {
            f.write_char(quote)?;
            f.write_char(quote)?;
        }
        f.write_str(part)?;
    }
    f.write_char(quote)
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_expr(f, self, 0)
    }
}

impl Path {
    /// Whether the path can be written without backticks.
    pub fn is_bare(&self) -> bool {
        self.segments().all(is_bare_segment)
            && (self.as_str().contains('/') || Keyword::from_word(self.as_str()).is_none())
    }
}

impl Display for Path {
    /// The path as the text form writes it: `interest/sports`, `` `odd name` ``, `` `not` ``.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.is_bare() {
            f.write_str(self.as_str())
        } else {
            write_quoted(f, self.as_str(), '`')
        }
    }
}

impl Display for CmpOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl Display for HasMode {
    /// `ANY`, `ALL`, or nothing for a single value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HasMode::One => "",
            HasMode::Any => "ANY",
            HasMode::All => "ALL",
        })
    }
}

impl Display for Decimal {
    /// Plain notation with exactly `scale` fraction digits: `12.50`, `-0.05`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa().unsigned_abs().to_string();
        let scale = usize::from(self.scale());
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        let sign = if self.mantissa() < 0 { "-" } else { "" };
        write!(f, "{sign}{int}.{frac}")
    }
}

impl Display for Date {
    /// `YYYY-MM-DD`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.year(),
            self.month(),
            self.day()
        )
    }
}

impl Display for Literal {
    /// The literal as the text form writes it: `'it''s'`, `-3`, `12.50`, `TRUE`,
    /// `DATE '2026-11-25'`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => write_quoted(f, s, '\''),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Decimal(d) => write!(f, "{d}"),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Date(d) => write!(f, "DATE '{d}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ast::MAX_DECIMAL_SCALE;
    use super::super::{ParseLimits, parse, parse_with_limits};
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

    fn p(text: &str) -> Path {
        Path::new(text).unwrap()
    }

    fn field(text: &str) -> Expr {
        Expr::Field(p(text))
    }

    fn s(text: &str) -> Literal {
        Literal::Str(text.to_owned())
    }

    fn dec(m: i128, scale: u8) -> Literal {
        Literal::Decimal(Decimal::new(m, scale).unwrap())
    }

    /// Prints `expr`, checks the text, and checks that it parses back to `expr`.
    #[track_caller]
    fn assert_prints(expr: Expr, text: &str) {
        assert_eq!(expr.to_string(), text);
        assert_eq!(parse(text), Ok(expr), "{text}");
    }

    #[test]
    fn predicates() {
        assert_prints(Expr::All, "ALL");
        assert_prints(field("risk/blacklist"), "risk/blacklist");
        assert_prints(
            Expr::Compare {
                path: p("gender"),
                op: CmpOp::Ne,
                value: s("f"),
            },
            "gender != 'f'",
        );
        assert_prints(
            Expr::In {
                path: p("city"),
                values: vec![s("a"), Literal::Int(1)],
                negated: true,
            },
            "city NOT IN ('a', 1)",
        );
        assert_prints(
            Expr::Between {
                path: p("age"),
                low: Literal::Int(-1),
                high: dec(305, 1),
            },
            "age BETWEEN -1 AND 30.5",
        );
        assert_prints(
            Expr::Has {
                path: p("i"),
                mode: HasMode::One,
                values: vec![s("x")],
            },
            "i HAS 'x'",
        );
        assert_prints(
            Expr::Has {
                path: p("i"),
                mode: HasMode::Any,
                values: vec![s("x"), s("y")],
            },
            "i HAS ANY ('x', 'y')",
        );
        assert_prints(
            Expr::Has {
                path: p("i"),
                mode: HasMode::All,
                values: vec![s("x")],
            },
            "i HAS ALL ('x')",
        );
        assert_prints(Expr::Keys(vec![s("u1"), Literal::Int(2)]), "KEYS('u1', 2)");
    }

    #[test]
    fn literals() {
        assert_eq!(s("it's").to_string(), "'it''s'");
        assert_eq!(s("''").to_string(), "''''''");
        assert_eq!(s("").to_string(), "''");
        assert_eq!(Literal::Int(i64::MIN).to_string(), "-9223372036854775808");
        assert_eq!(dec(1250, 2).to_string(), "12.50");
        assert_eq!(dec(-5, 2).to_string(), "-0.05");
        assert_eq!(dec(0, 3).to_string(), "0.000");
        assert_eq!(dec(-123, 3).to_string(), "-0.123");
        assert_eq!(
            dec(1, MAX_DECIMAL_SCALE).to_string(),
            format!("0.{}1", "0".repeat(37))
        );
        assert_eq!(
            dec(i128::MIN, 1).to_string(),
            "-17014118346046923173168730371588410572.8"
        );
        assert_eq!(Literal::Bool(false).to_string(), "FALSE");
        assert_eq!(
            Literal::Date(Date::new(7, 3, 9).unwrap()).to_string(),
            "DATE '0007-03-09'"
        );
    }

    #[test]
    fn paths_are_quoted_when_needed() {
        assert_eq!(p("interest/sports").to_string(), "interest/sports");
        assert_eq!(p("and").to_string(), "`and`");
        assert_eq!(p("Crowd").to_string(), "`Crowd`");
        assert_eq!(p("not/x").to_string(), "not/x");
        assert_eq!(p("a b/c").to_string(), "`a b/c`");
        assert_eq!(p("2fa").to_string(), "`2fa`");
        assert_eq!(p("a`b").to_string(), "`a``b`");
        assert!(!p("did").is_bare());
        for text in ["and", "a b/c", "a`b", "x/北京", "`", "a'b"] {
            assert_prints(field(text), &p(text).to_string());
        }
    }

    #[test]
    fn parentheses_only_where_needed() {
        let (a, b, c) = (field("a"), field("b"), field("c"));
        let not = |e: Expr| Expr::Not(Box::new(e));
        assert_prints(
            Expr::And(vec![a.clone(), b.clone(), c.clone()]),
            "a AND b AND c",
        );
        assert_prints(
            Expr::And(vec![a.clone(), Expr::And(vec![b.clone(), c.clone()])]),
            "a AND (b AND c)",
        );
        assert_prints(
            Expr::Or(vec![Expr::Or(vec![a.clone(), b.clone()]), c.clone()]),
            "(a OR b) OR c",
        );
        assert_prints(
            Expr::Xor(vec![a.clone(), Expr::Xor(vec![b.clone(), c.clone()])]),
            "a XOR (b XOR c)",
        );
        assert_prints(
            Expr::Or(vec![
                a.clone(),
                Expr::Xor(vec![b.clone(), Expr::And(vec![c.clone(), not(a.clone())])]),
            ]),
            "a OR b XOR c AND NOT a",
        );
        assert_prints(
            Expr::And(vec![
                Expr::Or(vec![a.clone(), b.clone()]),
                Expr::Xor(vec![b.clone(), c.clone()]),
            ]),
            "(a OR b) AND (b XOR c)",
        );
        assert_prints(not(not(a.clone())), "NOT NOT a");
        assert_prints(not(Expr::And(vec![a.clone(), b.clone()])), "NOT (a AND b)");
        assert_prints(
            Expr::And(vec![
                Expr::Between {
                    path: p("x"),
                    low: Literal::Int(1),
                    high: Literal::Int(2),
                },
                b.clone(),
            ]),
            "x BETWEEN 1 AND 2 AND b",
        );
    }

    #[test]
    fn invalid_trees_print_text_that_does_not_parse() {
        let bad = [
            Expr::And(vec![]),
            Expr::In {
                path: p("x"),
                values: vec![],
                negated: false,
            },
            Expr::Has {
                path: p("x"),
                mode: HasMode::One,
                values: vec![s("a"), s("b")],
            },
            Expr::Keys(vec![]),
        ];
        for expr in bad {
            assert!(expr.check().is_err());
            assert!(parse(&expr.to_string()).is_err(), "{expr}");
        }
    }

    #[test]
    fn trees_within_the_depth_limit_print_to_parsable_text() {
        let max = ParseLimits::DEFAULT.max_depth;
        // Alternating AND / OR: every level below the root is parenthesised.
        let mut alternating = field("leaf");
        for level in 0..max {
            let items = vec![field("x"), alternating];
            alternating = if level % 2 == 0 {
                Expr::And(items)
            } else {
                Expr::Or(items)
            };
        }
        let mut nots = field("leaf");
        for _ in 0..max {
            nots = Expr::Not(Box::new(nots));
        }
        for tree in [alternating, nots.clone()] {
            assert_eq!(tree.depth(), max);
            assert!(parse(&tree.to_string()) == Ok(tree), "does not round-trip");
        }
        // Each NOT counts one level in the text as in the tree.
        let too_deep = Expr::Not(Box::new(nots));
        let e = parse(&too_deep.to_string()).unwrap_err();
        assert!(e.message.contains("nests deeper than 256 levels"), "{e}");
    }

    fn path_strategy() -> impl Strategy<Value = Path> {
        let segment = prop_oneof![
            4 => "[a-z_][a-z0-9_]{0,6}",
            1 => prop::sample::select(vec!["and", "NOT", "keys", "Did", "null", "as"]).prop_map(str::to_owned),
            1 => "[^/\\p{Cc}]{1,6}",
        ];
        prop::collection::vec(segment, 1..4)
            .prop_map(|segments| Path::from_segments(segments).unwrap())
    }

    fn literal_strategy() -> impl Strategy<Value = Literal> {
        prop_oneof![
            "\\PC{0,8}".prop_map(Literal::Str),
            "['a-z ]{0,5}".prop_map(Literal::Str),
            any::<i64>().prop_map(Literal::Int),
            (any::<i128>(), 1..=MAX_DECIMAL_SCALE).prop_map(|(m, s)| dec(m, s)),
            (-1000i128..1000, 1u8..4).prop_map(|(m, s)| dec(m, s)),
            any::<bool>().prop_map(Literal::Bool),
            (0i32..=9999, 1u8..=12, 1u8..=31).prop_filter_map("no such day", |(y, m, d)| {
                Date::new(y, m, d).map(Literal::Date)
            }),
        ]
    }

    fn key_strategy() -> impl Strategy<Value = Literal> {
        prop_oneof![
            "\\PC{0,6}".prop_map(Literal::Str),
            (0..=i64::MAX).prop_map(Literal::Int)
        ]
    }

    fn leaf_strategy() -> impl Strategy<Value = Expr> {
        let values = || prop::collection::vec(literal_strategy(), 1..4);
        let op = prop::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ]);
        prop_oneof![
            Just(Expr::All),
            path_strategy().prop_map(Expr::Field),
            (path_strategy(), op, literal_strategy()).prop_map(|(path, op, value)| Expr::Compare {
                path,
                op,
                value
            }),
            (path_strategy(), values(), any::<bool>()).prop_map(|(path, values, negated)| {
                Expr::In {
                    path,
                    values,
                    negated,
                }
            }),
            (path_strategy(), literal_strategy(), literal_strategy())
                .prop_map(|(path, low, high)| Expr::Between { path, low, high }),
            (path_strategy(), literal_strategy()).prop_map(|(path, value)| Expr::Has {
                path,
                mode: HasMode::One,
                values: vec![value]
            }),
            (path_strategy(), prop::bool::ANY, values()).prop_map(|(path, any, values)| {
                Expr::Has {
                    path,
                    mode: if any { HasMode::Any } else { HasMode::All },
                    values,
                }
            }),
            prop::collection::vec(key_strategy(), 1..4).prop_map(Expr::Keys),
            (path_strategy(), window_strategy(), count_strategy()).prop_map(
                |(event, window, count)| Expr::Did {
                    event,
                    window,
                    count
                }
            ),
            (path_strategy(), any::<bool>(), when_strategy()).prop_map(|(event, first, when)| {
                Expr::Occurred {
                    which: if first {
                        Occurrence::First
                    } else {
                        Occurrence::Last
                    },
                    event,
                    when,
                }
            }),
        ]
    }

    fn op_strategy() -> impl Strategy<Value = CmpOp> {
        prop::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ])
    }

    fn date_strategy() -> impl Strategy<Value = Date> {
        (0i32..=9999, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| Date::new(y, m, d).unwrap())
    }

    fn window_strategy() -> impl Strategy<Value = Window> {
        prop_oneof![
            (1u32..=u32::MAX, proptest::option::of(date_strategy()))
                .prop_map(|(days, ending)| Window::Last { days, ending }),
            (date_strategy(), date_strategy()).prop_map(|(a, b)| Window::Range {
                from: a.min(b),
                to: a.max(b)
            }),
            Just(Window::Ever),
        ]
    }

    fn count_strategy() -> impl Strategy<Value = Option<DidCount>> {
        proptest::option::of((op_strategy(), any::<u64>(), any::<bool>()).prop_map(
            |(op, n, days)| DidCount {
                op,
                n: n >> 1,
                measure: if days { Measure::Days } else { Measure::Times },
            },
        ))
    }

    fn when_strategy() -> impl Strategy<Value = When> {
        prop_oneof![
            (op_strategy(), any::<u32>()).prop_map(|(op, days)| When::DaysAgo { op, days }),
            (op_strategy(), date_strategy()).prop_map(|(op, date)| When::Date { op, date }),
            (1u32..=u32::MAX).prop_map(When::Within),
        ]
    }

    /// Valid trees up to depth 6 (well inside the default nesting limit).
    fn expr_strategy() -> impl Strategy<Value = Expr> {
        leaf_strategy().prop_recursive(6, 64, 4, |inner| {
            let items = || prop::collection::vec(inner.clone(), 2..5);
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                items().prop_map(Expr::And),
                items().prop_map(Expr::Or),
                items().prop_map(Expr::Xor),
            ]
        })
    }

    fn config(cases: u32, seed: u64) -> Config {
        Config {
            cases,
            rng_algorithm: RngAlgorithm::ChaCha,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        }
    }

    proptest! {
        #![proptest_config(config(1000, 0x5eed_1001))]

        #[test]
        fn print_then_parse_is_identity(expr in expr_strategy()) {
            prop_assert_eq!(expr.check(), Ok(()));
            prop_assert!(expr.depth() <= 6);
            // The depth bounds the nesting of the printed text.
            let tight = ParseLimits { max_len: usize::MAX, max_depth: expr.depth() };
            prop_assert_eq!(parse_with_limits(&expr.to_string(), tight), Ok(expr.clone()));
            let text = expr.to_string();
            prop_assert_eq!(parse(&text), Ok(expr.clone()), "text: {}", text);
            // Printing is canonical: the text of the parsed tree is the same text.
            prop_assert_eq!(parse(&text).map(|e| e.to_string()), Ok(text.clone()));
        }

        #[test]
        fn print_then_parse_survives_reformatting(expr in expr_strategy()) {
            // Keywords are case-insensitive and whitespace is free: lower-case every keyword
            // spelled in the canonical text outside quotes and spread the tokens over lines.
            let text = expr.to_string();
            let relaxed = relax(&text);
            let limits = ParseLimits { max_len: usize::MAX, ..ParseLimits::DEFAULT };
            prop_assert_eq!(parse_with_limits(&relaxed, limits), Ok(expr), "relaxed: {}", relaxed);
        }
    }

    /// Lower-cases every keyword and turns each single space into a comment and a line break,
    /// outside quotes and backticks.
    fn relax(text: &str) -> String {
        let mut out = String::with_capacity(text.len() * 2);
        let mut quote: Option<char> = None;
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if Keyword::from_word(word).is_some() {
                word.make_ascii_lowercase();
            }
            out.push_str(word);
            word.clear();
        };
        for c in text.chars() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                out.push(c);
            } else if c.is_ascii_alphanumeric() || c == '_' || c == '/' {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                match c {
                    '\'' | '`' => {
                        quote = Some(c);
                        out.push(c);
                    }
                    ' ' => out.push_str(" -- note\n\t"),
                    c => out.push(c),
                }
            }
        }
        flush(&mut word, &mut out);
        out
    }

    #[test]
    fn relax_changes_the_text() {
        let expr = parse("A AND NOT b/OR IN ('X Y')").unwrap();
        assert_eq!(
            relax(&expr.to_string()),
            "A -- note\n\tand -- note\n\tnot -- note\n\tb/OR -- note\n\tin -- note\n\t('X Y')"
        );
    }
}
