//! Crowd expressions: the syntax tree, its text form and name suggestions.
//!
//! ```text
//! gender = 'female' AND age BETWEEN 18 AND 30 AND city IN ('Beijing', 'Shanghai')
//!   AND (interest HAS 'sports' OR vip) AND NOT risk/blacklist
//! ```
//!
//! - `ast`: [`Expr`] and its parts. Paths stay unresolved; the planner resolves them against the
//!   catalog and checks field kinds.
//! - `lexer`, `parse`: text to tree, with errors that point at the offending token; the grammar
//!   is written in EBNF at the top of `parse.rs`.
//! - `print`: tree to canonical text (`Display`), such that parsing the text gives the tree back.
//! - `suggest`: the closest known name for an unknown one ("did you mean ...?").
//!
//! The module uses only `std` so that it can be embedded and fuzzed on its own.

mod ast;
mod lexer;
mod parse;
mod print;
mod suggest;

pub use ast::{
    CmpOp, Date, Decimal, DidCount, Expr, HasMode, InvalidExpr, Literal, MAX_DECIMAL_SCALE,
    Measure, Occurrence, Path, PathError, When, Window,
};
pub use parse::{ParseError, ParseLimits};
pub use suggest::closest;

/// Parses a crowd expression under the default [`ParseLimits`] (64 KiB, 256 levels of nesting).
///
/// ```text
/// parse("vip AND NOT risk/blacklist")  ->  Ok(And[Field(vip), Not(Field(risk/blacklist))])
/// parse("age >=")                      ->  Err("line 1, column 7: expected a value after '>=',
///                                                found end of input")
/// ```
///
/// # Errors
///
/// A [`ParseError`] at the first offending token in reading order, or at the limit when the
/// text is longer than 64 KiB.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    parse::parse_text(text, ParseLimits::DEFAULT)
}

/// Parses a crowd expression under explicit limits on input length and nesting depth.
///
/// # Errors
///
/// As [`parse`], with `limits` in place of the defaults.
pub fn parse_with_limits(text: &str, limits: ParseLimits) -> Result<Expr, ParseError> {
    parse::parse_text(text, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_entry_points() {
        let expr = parse("vip AND NOT risk/blacklist").unwrap();
        let field = |text: &str| Expr::Field(Path::new(text).unwrap());
        assert_eq!(
            expr,
            Expr::And(vec![
                field("vip"),
                Expr::Not(Box::new(field("risk/blacklist")))
            ])
        );
        assert_eq!(expr.to_string(), "vip AND NOT risk/blacklist");

        let err = parse("age >=").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1, column 7: expected a value after '>=', found end of input"
        );

        let limits = ParseLimits {
            max_len: 3,
            max_depth: 1,
        };
        assert!(parse_with_limits("vip", limits).is_ok());
        assert!(parse_with_limits("vip2", limits).is_err());
        assert!(parse_with_limits("vip", ParseLimits::default()).is_ok());
    }

    #[test]
    fn suggestion_for_an_unknown_field() {
        // What the planner does with a path it cannot resolve.
        let catalog = ["interest/sports", "risk/blacklist", "vip"];
        let Expr::And(items) = parse("intrest/sports AND vip").unwrap() else {
            panic!("not an AND");
        };
        let Expr::Field(path) = &items[0] else {
            panic!("not a field");
        };
        assert!(!catalog.contains(&path.as_str()));
        let hint = closest(path.as_str(), catalog).map(|c| format!("; did you mean `{c}`?"));
        assert_eq!(
            format!("unknown field `{path}`{}", hint.unwrap_or_default()),
            "unknown field `intrest/sports`; did you mean `interest/sports`?"
        );
    }
}
